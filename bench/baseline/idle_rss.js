"use strict";
// Idle memory of the baseline with N Steedos-like clients (issue 11, "idle memory" workload):
// nats-server, the fixture's mock auth service, bench/baseline (startBaseline), and
// build/load-client in --plan mode: client i sends the cookies of user u<i mod users> (a login
// in tenant S<1 + (u mod 5)>) and subscribes `space`, `me` (individual) and
// `notification-change` (individual), each with an ack. Prints VmRSS of the baseline before the
// clients and after they are all subscribed and idle, and the bytes per client.
//
//   STEEDOS_BUILD_DIR=$PWD/build node bench/baseline/idle_rss.js [--clients 2000] [--users 50]
//                                                              [--settle-ms 15000] [--concurrency 256]
const fs = require("fs");
const path = require("path");
const { h, authService, login, AUTH_ACTION } = require("../../tests/interop/steedos/fixture");
const { startLoadClient, rssKb, arg } = require("../steedos_load");
const { startBaseline } = require("./start");

async function main() {
	const clients = Number(arg("clients", 2000));
	const users = Number(arg("users", 50));
	const settleMs = Number(arg("settle-ms", 15000)); // V8 shrinks its heap only some seconds after the burst
	const concurrency = Number(arg("concurrency", 256)); // connects in flight in the load client
	const nats = await h.startNats();
	const auth = h.createBroker("0.14", { nats });
	auth.createService(authService([]));
	await auth.start();
	const baseline = await startBaseline({ port: 0, transporter: nats.url, nodeArgs: ["--expose-gc"], config: { logLevel: "warn", heartbeatInterval: 1, heartbeatTimeout: 3 } });
	let lc;
	try {
		await h.waitForCppSees(auth, baseline.nodeID, AUTH_ACTION, auth.nodeID, 15000);
		const cookies = Array.from({ length: users }, (_, u) => login(`u${u}`, `S${1 + (u % 5)}`).cookies[0]);
		const lines = Array.from({ length: clients }, (_, i) => [cookies[i % users], "1,0,space", "2,1,me", "3,1,notification-change"].join("\t"));
		const dir = h.makeTempDir("baseline-rss-");
		const planFile = path.join(dir, "plan.txt");
		fs.writeFileSync(planFile, lines.join("\n") + "\n");

		await h.sleep(settleMs); // deliberate: let the freshly started process settle before the 0-client reading
		process.kill(baseline.pid, "SIGUSR2");
		await h.sleep(1000); // deliberate: as after the clients, so both readings are taken alike
		const before = rssKb(baseline.pid).rss;
		lc = await startLoadClient({ port: baseline.port, clients, planFile, args: ["--concurrency", String(concurrency)] });
		const ready = await lc.command(`ready ${clients} 120000`, "RESULT ready", 130000);
		if (Number(ready.count) !== clients) throw new Error(`only ${ready.count} of ${clients} clients ready`);
		await h.sleep(settleMs); // deliberate: idle period before the N-client reading
		const after = rssKb(baseline.pid).rss;
		process.kill(baseline.pid, "SIGUSR2"); // full GC (node --expose-gc), then the same reading
		await h.sleep(1000); // deliberate: the collection and the kernel's RSS update
		const afterGc = rssKb(baseline.pid).rss;
		const memory = baseline.logs.filter(l => l.line.startsWith("memory ")).map(l => l.line);
		console.log(`baseline process.memoryUsage() after GC, 0 then ${clients} clients:\n  ${memory.join("\n  ")}`);
		const per = kb => (((kb - before) * 1024) / clients);
		console.log(`RESULT baseline_idle clients=${clients} users=${users} concurrency=${concurrency} rss_before_kb=${before} rss_after_kb=${after} ` +
			`per_client_bytes=${Math.round(per(after))} per_client_kib=${(per(after) / 1024).toFixed(1)} ` +
			`rss_after_gc_kb=${afterGc} per_client_after_gc_kib=${(per(afterGc) / 1024).toFixed(1)} connect_s=${lc.connectSeconds}`);
	} finally {
		if (lc) await lc.stop();
		await baseline.stop();
		await h.stopBrokers(auth);
		await nats.stop();
	}
}

main().then(() => process.exit(0), err => {
	console.error(err.stack || err.message);
	process.exit(1);
});
