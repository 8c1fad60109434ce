"use strict";
// Soak (issue 9): a moleculer 0.14 producer on a real nats-server emits `--rate` events/s for
// `--minutes`, mixed over global, tenant, personal and record rooms, to the product binary
// (build/steedos-socket) serving `--clients` Steedos users of five tenants (the fixture's mock auth
// service). The clients are bench/load_client.cpp in --plan mode (bench/steedos_load.js says who
// subscribes what): each knows which events it must get and checks every one it receives.
//
//   bench/soak.sh [--minutes 10] [--clients 10000] [--rate 1000]
//
// Mix per 1,000 events: 1 global (every client), 4 tenant (`<tenant>-space`, a fifth of the
// clients), 495 personal (`$broadcast.$notification.users`, the user's tabs in that tenant), 500
// record (`<tenant>-record:orders:change-<id>`, ~5 clients); at 10,000 clients and 1,000 events/s
// that is ~21,000 deliveries/s. (A first mix of 2 global and 18 tenant, ~58,000 deliveries/s, was
// more than the node could send on this 2-core machine while other builds ran, at ~40 % of a core:
// the backlog grew in nats-server's queue for the node, 7.5 MB after 70 s; the node's time went
// to one send() per delivery, in the kernel.)
// RSS of the node from /proc/<pid>/status every second. Growth = median RSS over the last 10 % of
// the run against the median over 20-30 % (the first 20 % is the warm-up: connections made,
// allocator pools and socket buffers at their working size).
// Last line: `soak: <delivered> delivered, <lost> lost, <duplicated> duplicated, <leaked> leaked,
// rss growth <x>%, p99 <ms> ms` (p99 of producer emit to client receipt over every delivery).
// Exit code 1 when anything was lost, duplicated or leaked, a client was dropped, or growth >= 5 %.
const os = require("os");
const { startCluster, h } = require("../tests/interop/steedos/fixture");
const { population, emitTo, startLoadClient, rssKb, median, arg, rng, now, targetPicker } = require("./steedos_load");

const MINUTES = Number(arg("minutes", 10));
const CLIENTS = Number(arg("clients", 10000));
const RATE = Number(arg("rate", 1000));

// --inject-faults: proves the checks can fail. One record event is counted but not emitted (lost
// at each of its subscribers), one is emitted twice (duplicated), and one record's marker is sent
// to a tenant room (leaked at every client of the tenant not subscribed to that record).
const INJECT = process.argv.includes("--inject-faults");

function injectFaults(producer, pop) {
	const [lostId, dupId, leakId] = pop.byKind.record;
	pop.targets[lostId].seq++;
	emitTo(producer, pop.targets, dupId);
	pop.targets[dupId].seq--;
	emitTo(producer, pop.targets, dupId);
	const leak = pop.targets[leakId];
	producer.emit("$socket.emit", { eventName: "soak", eventParams: { m: `~${leakId}~${leak.seq++}~${now()}~` }, room: `${leak.tenant}-space` });
	log(`injected: target ${lostId} lost, ${dupId} duplicated, ${leakId} sent to ${leak.tenant}-space`);
}

const log = text => process.stderr.write(`soak: ${text}\n`);

async function main() {
	const started = Date.now();
	const cluster = await startCluster({ logLevel: "info" });
	const { node, port, producer } = cluster;
	log(`nats ${cluster.nats.url}, steedos-socket pid ${node.pid} on port ${port}`);
	const pop = population({ clients: CLIENTS });
	log(`${CLIENTS} clients, ${pop.targets.length} targets (${Object.entries(pop.byKind).map(([k, v]) => `${v.length} ${k}`).join(", ")})`);
	const lc = await startLoadClient({ port, clients: CLIENTS, planFile: pop.planFile, args: ["--concurrency", "256"] });
	log(`all connected and subscribed in ${lc.connectSeconds.toFixed(1)} s; emitting ${RATE}/s for ${MINUTES} min`);

	const pick = targetPicker(pop, rng(7));
	const durationMs = MINUTES * 60000;
	const samples = []; // { t (ms since the start of emission), rss }
	let emitted = 0;
	const t0 = Date.now();
	let nextSample = t0;
	let nextReport = t0 + 30000;
	while (Date.now() - t0 < durationMs) {
		const due = Math.floor(((Date.now() - t0) / 1000) * RATE);
		for (; emitted < due; emitted++) emitTo(producer, pop.targets, pick());
		const now = Date.now();
		if (now >= nextSample) {
			samples.push({ t: now - t0, rss: rssKb(node.pid).rss });
			nextSample += 1000;
		}
		if (now >= nextReport) {
			nextReport += 30000;
			const s = await lc.command("soak", "RESULT soak");
			const st = await cluster.stats().catch(() => ({ events: {} }));
			log(`${Math.round((now - t0) / 1000)} s: ${emitted} emitted, ${st.events.in} received by the node, ${st.events.out} sent by it, ` +
				`${s.delivered} delivered, ${s.duplicated} duplicated, ${s.leaked} leaked, ${s.closed} closed, p99 ${s.p99_ms} ms, ` +
				`rss ${samples[samples.length - 1].rss} KiB, load ${os.loadavg()[0].toFixed(1)}`);
		}
		await h.sleep(5);
	}
	if (INJECT) injectFaults(producer, pop);
	log(`emission done: ${emitted} events; waiting for the last deliveries`);
	for (let id = 0; id < pop.targets.length; id++) lc.send(`total ${id} ${pop.targets[id].seq}`);
	// A machine shared with other work can leave a backlog (in the producer, NATS or the node): wait
	// for it while deliveries still come, up to half the run's length.
	const drainMs = Math.max(120000, durationMs / 2);
	const r = await lc.command(`check 10000 ${drainMs}`, "RESULT check_soak", drainMs + 60000);
	log(`latency p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms, max ${r.max_ms} ms over ${r.samples} deliveries`);
	log(`last deliveries in ${((Date.now() - t0 - durationMs) / 1000).toFixed(0)} s after the last emit`);
	const stats = await cluster.stats().catch(() => null);
	await lc.stop();
	await cluster.stop();

	const window = (from, to) => median(samples.filter(s => s.t >= from * durationMs && s.t < to * durationMs).map(s => s.rss));
	const base = window(0.2, 0.3);
	const end = window(0.9, 1.01);
	const growth = base ? ((end - base) / base) * 100 : 0;
	log(`rss KiB: after connect ${samples.length ? samples[0].rss : 0}, median 20-30 % ${base}, last 10 % ${end}, ` +
		`max ${Math.max(...samples.map(s => s.rss))}; clients closed during the run: ${r.closed}`);
	if (stats) log(`node stats: events ${JSON.stringify(stats.events)}`);
	log(`load average ${os.loadavg().map(x => x.toFixed(2)).join(" ")}, ${os.cpus().length} CPUs, total ${((Date.now() - started) / 1000).toFixed(0)} s`);
	console.log(`soak: ${r.delivered} delivered, ${r.lost} lost, ${r.duplicated} duplicated, ${r.leaked} leaked, ` +
		`rss growth ${growth.toFixed(1)}%, p99 ${r.p99_ms} ms`);
	return r.lost || r.duplicated || r.leaked || r.closed || growth >= 5 ? 1 : 0;
}

main().then(
	code => process.exit(code),
	err => {
		console.error(err);
		process.exit(2);
	}
);
