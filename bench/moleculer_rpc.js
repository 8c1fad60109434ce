"use strict";
// Request/response and event throughput of the C++ node against a JS node, side by side on one
// nats-server in one run. A JS (moleculer 0.14) caller drives both targets with the same load:
//   - round trips: `echo` calls at concurrency 1 (latency) and at concurrency C (throughput);
//   - events: N `bench.tick` emits, timed until the receiver has counted all of them.
// Prints a table and the C++/JS ratios. Usage (after scripts/build.sh and scripts/setup.sh):
//   node bench/moleculer_rpc.js [--calls 20000] [--concurrency 32] [--events 50000]
const h = require("../tests/interop/lib/harness");

function arg(name, fallback) {
	const i = process.argv.indexOf(`--${name}`);
	return i > 0 ? Number(process.argv[i + 1]) : fallback;
}
const CALLS = arg("calls", 20000);
const CONCURRENCY = arg("concurrency", 32);
const EVENTS = arg("events", 50000);

function percentile(sorted, p) {
	return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function roundTrips(caller, action, nodeID, calls, concurrency) {
	const latencies = new Array(calls);
	let next = 0;
	const started = process.hrtime.bigint();
	async function worker() {
		while (next < calls) {
			const i = next++;
			const t0 = process.hrtime.bigint();
			await caller.call(action, { i, text: "hello" }, { nodeID });
			latencies[i] = Number(process.hrtime.bigint() - t0) / 1e6;
		}
	}
	await Promise.all(Array.from({ length: concurrency }, worker));
	const seconds = Number(process.hrtime.bigint() - started) / 1e9;
	latencies.sort((a, b) => a - b);
	return { rps: calls / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

async function eventRate(caller, countAction, resetAction, nodeID, events) {
	await caller.call(resetAction, {}, { nodeID });
	const started = process.hrtime.bigint();
	for (let i = 0; i < events; i++) {
		caller.emit("bench.tick", { i });
		// Yield now and then so the transporter can flush instead of buffering everything.
		if (i % 1000 === 999) await new Promise(r => setImmediate(r));
	}
	await h.waitFor(
		async () => (await caller.call(countAction, {}, { nodeID })) >= events,
		120000,
		{ interval: 20, what: `${events} events counted on ${nodeID}` }
	);
	const seconds = Number(process.hrtime.bigint() - started) / 1e9;
	return events / seconds;
}

function jsTarget(nats) {
	const broker = h.createBroker("0.14", { nats, nodeID: "bench-js", heartbeatInterval: 5, heartbeatTimeout: 15 });
	let count = 0;
	broker.createService({
		name: "jsbench",
		actions: {
			// The same reply shape as the C++ fixture's cpptest.echo.
			echo(ctx) {
				return {
					params: ctx.params,
					meta: ctx.meta,
					nodeID: ctx.nodeID,
					level: ctx.level,
					requestID: ctx.requestID,
					parentID: ctx.parentID || null,
					caller: ctx.caller || null
				};
			},
			count: () => count,
			reset() {
				count = 0;
			}
		},
		events: { "bench.tick": () => void count++ }
	});
	return broker;
}

async function main() {
	process.env.STEEDOS_FIXTURE_BENCH = "1"; // the fixture then adds its `cppbench` counter service
	const nats = await h.startNats();
	const cpp = await h.startCppNode({
		nats,
		nodeID: "bench-cpp",
		logLevel: "warn",
		heartbeatInterval: 5,
		heartbeatTimeout: 15
	});
	const js = jsTarget(nats);
	const caller = h.createBroker("0.14", { nats, nodeID: "bench-caller", heartbeatInterval: 5, heartbeatTimeout: 15 });
	await Promise.all([js.start(), caller.start()]);
	await h.waitForRemoteNode(caller, "bench-cpp", ["cpptest.echo", "cppbench.count"], 15000);
	await h.waitForRemoteNode(caller, "bench-js", ["jsbench.echo"], 15000);

	const targets = [
		{ name: "C++ node", nodeID: "bench-cpp", echo: "cpptest.echo", count: "cppbench.count", reset: "cppbench.reset" },
		{ name: "JS node", nodeID: "bench-js", echo: "jsbench.echo", count: "jsbench.count", reset: "jsbench.reset" }
	];
	const results = {};
	for (const t of targets) {
		await roundTrips(caller, t.echo, t.nodeID, 1000, 8);  // warm-up
		const serial = await roundTrips(caller, t.echo, t.nodeID, Math.min(CALLS, 5000), 1);
		const parallel = await roundTrips(caller, t.echo, t.nodeID, CALLS, CONCURRENCY);
		const events = await eventRate(caller, t.count, t.reset, t.nodeID, EVENTS);
		results[t.name] = { serial, parallel, events };
	}

	const fmt = (n, d = 0) => n.toFixed(d).padStart(10);
	console.log(`moleculer 0.14 caller -> target, one nats-server, ${CALLS} calls at concurrency ${CONCURRENCY}, ${EVENTS} events`);
	console.log("target      | calls/s c=1 | p50 ms | p99 ms | calls/s c=" + String(CONCURRENCY).padEnd(3) + "| p50 ms | p99 ms | events/s");
	for (const [name, r] of Object.entries(results)) {
		console.log(
			`${name.padEnd(11)} |${fmt(r.serial.rps)}   |${fmt(r.serial.p50, 2)}|${fmt(r.serial.p99, 2)}|${fmt(r.parallel.rps)}   |` +
				`${fmt(r.parallel.p50, 2)}|${fmt(r.parallel.p99, 2)}|${fmt(r.events)}`
		);
	}
	const c = results["C++ node"], j = results["JS node"];
	console.log(
		`ratio C++/JS: calls/s c=1 ${(c.serial.rps / j.serial.rps).toFixed(2)}x, ` +
			`calls/s c=${CONCURRENCY} ${(c.parallel.rps / j.parallel.rps).toFixed(2)}x, ` +
			`p99 c=${CONCURRENCY} ${(c.parallel.p99 / j.parallel.p99).toFixed(2)}x (lower is better), ` +
			`events/s ${(c.events / j.events).toFixed(2)}x`
	);
	await h.stopBrokers(caller, js);
	await h.stopCppNodes(cpp);
	await nats.stop();
}

main().then(
	() => process.exit(0),
	err => {
		console.error(err);
		process.exit(1);
	}
);
