"use strict";
// Issue 12's benchmark: gateway nodes as a cluster on one nats-server, in one command.
//
//   bench/cluster.sh [--only through,idle] [--clients N] [--rounds 3] [--events 100] [--rate 100]
//                    [--seconds 3] [--nodes 5] [--per-load-client 9500] [--reps 3]
//                    [--settle-ms 5000] [--pin] [--no-nice] [--out-dir bench/results] [--tag -small]
//
// through  THREE steedos-socket nodes against ONE, same clients and same rate, in one run. One
//          nats-server; each setup in its own Moleculer namespace (so a balanced emit of one setup
//          never reaches the other's nodes), with its own moleculer 0.14 producer in this process.
//          Setup "one": one node, setup "three": three nodes; N clients (--clients, default
//          3,000) in both, from the same load clients: three processes of N/3 (more when N/3 >
//          --per-load-client), all on the one node, or one per node. The producer emits balanced
//          `$socket.emit` { eventName, eventParams } without a room: in "three" the event reaches
//          one node, which forwards it to the other two (gateway-contract.md §7), so each event
//          reaches every client once. Both setups are up at once and measured in turns (the order
//          flips every round, as steedos_fanout.js does); each figure is the median over --rounds:
//            - burst: --events K back to back; deliveries/s = delivered / (first emit until the last
//              receipt); p99 of emit -> receipt (the highest of the load clients' p99s); lost and
//              duplicated per client;
//            - paced: --rate R ev/s for --seconds S; p50/p99 (highest of the load clients');
//            - the nodes' CPU time per delivery in the burst (sum over the setup's nodes).
//          Writes bench/results/<date>-cluster<tag>.md and .json.
// idle     --nodes (5) steedos-socket nodes on one nats-server hold --clients (95,000) idle
//          Steedos-like clients together: compare.js workload a's clients (cookies of 50 users in
//          5 tenants of the fixture's mock auth service, login(); subscribes `space`, individual
//          `me` and `notification-change`), spread evenly over the nodes, each node's share from
//          load clients of at most --per-load-client (9,500) connections, because each process
//          may open about 20,000 files (`ulimit -Hn`). Measures: the time until every client is
//          connected and subscribed; after --settle-ms, RSS per client = sum over the nodes of
//          (VmRSS with clients - VmRSS before) / clients; then ONE balanced `$socket.emit` (no
//          room) from the producer, --reps (3) times: the time from the emit until every client
//          received it, exactly once (the load clients count lost and duplicated), median.
//          Writes bench/results/<date>-cluster-idle<tag>.md and .json.
//
// Clients: build/load-client (bench/load_client.cpp, one thread, epoll) in --plan mode; every event
// carries steedos_load.js's marker `~<target>~<seq>~<t>~` (target 0, the global one; t the
// producer's CLOCK_MONOTONIC ns), which the load client checks (lost, duplicated) and times.
// Limits that would refuse the generator are lifted as compare.js does (gateway.maxHandshakesPerSecond
// 0, auth.maxInFlight 1,000,000); gateway.maxConnections stays null: each node derives it from its
// open-file limit (20,000 - 64 here), which is checked against the node's share before connecting.
// The machine has 2 cores: the nodes, the load clients, nats-server and this process share them, so
// three nodes do not have three times the CPU of one; nothing is pinned unless --pin (nodes on
// CPU 0, load clients on CPU 1); everything runs at nice -10 (as compare.js) unless --no-nice.
// Every phase is logged with the time, so a long run shows its pace. Durations on the shared 2-core
// machine: through at the defaults ~30 s; idle with 6,000 clients ~15 s (connects at 6,000-10,000/s
// there; 95,000 clients: expect ~1-2 min, not measured here).
const fs = require("fs");
const os = require("os");
const path = require("path");
const { h, authService, AUTH_ACTION, startGateway, gatewayPort, waitGatewaysKnowEachOther } = require("../tests/interop/steedos/fixture");
const { issuePlan, ISSUE_SUBSCRIPTIONS, startLoadClient, checkAndWindow, paced, rssKb, median, arg, now } = require("./steedos_load");
const proc = require("./lib/proc");

const ONLY = new Set(String(arg("only", "through,idle")).split(","));
const CLIENTS = arg("clients", null); // the size of whichever part runs
const PER_LOAD_CLIENT = Number(arg("per-load-client", 9500));
const THROUGH = {
	clients: Number(CLIENTS || 3000),
	events: Number(arg("events", 100)),
	rate: Number(arg("rate", 100)),
	seconds: Number(arg("seconds", 3)),
	rounds: Number(arg("rounds", 3))
};
const IDLE = {
	clients: Number(CLIENTS || 95000),
	nodes: Number(arg("nodes", 5)),
	reps: Number(arg("reps", 3)),
	settleMs: Number(arg("settle-ms", 5000))
};
const PIN = process.argv.includes("--pin") && proc.canPin();
// As compare.js: other jobs on the machine (builds, tests) would take the cores from the nodes and
// load clients; the benchmark and everything it starts (children inherit it) run at this nice
// value when allowed (root).
const NICE = process.argv.includes("--no-nice") ? null : -10;
const DATE = new Date().toISOString().slice(0, 10);
const OUT_DIR = arg("out-dir", path.join(__dirname, "results"));
const TAG = arg("tag", "");
const COMMAND = process.env.BENCH_COMMAND || `node bench/cluster.js ${process.argv.slice(2).join(" ")}`.trim();
const HEARTBEAT = { heartbeatInterval: 5, heartbeatTimeout: 15 };
// A check waits this long without a new marked frame before it counts the missing ones as lost.
const QUIET_MS = 3000;

// compare.js workload a's subscriptions (ISSUE_SUBSCRIPTIONS), as target 1 instead of 0: no event
// is emitted to those rooms, so the load client expects nothing of them, and target 0 (the global
// one, the only one emitted) is tracked once per client, so its lost count is exact.
const ROOMS_NOT_EMITTED_TO = ISSUE_SUBSCRIPTIONS.map(sub => sub.replace(/^0,/, "1,"));

const STARTED = Date.now();
const log = text => process.stderr.write(`${new Date().toISOString().slice(11, 19)} +${((Date.now() - STARTED) / 1000).toFixed(1)}s cluster: ${text}\n`);
const sum = values => values.reduce((a, b) => a + b, 0);
const max = values => Math.max(...values);

/** `total` split into `parts` near-equal integers. */
function split(total, parts) {
	return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));
}

// --- nodes, load clients, measurements (both parts) -----------------------------------------------

/** `count` steedos-socket nodes in `namespace`, with their gateway ports; limits lifted as compare.js. */
async function startNodes(nats, namespace, count, name) {
	const nodes = [];
	for (let i = 0; i < count; i++) {
		const node = await startGateway({
			nats,
			namespace,
			nodeID: `${name}-${i}-${process.pid}`,
			logLevel: "info", // the port and the derived gateway.maxConnections are read from the log
			...HEARTBEAT,
			extra: { gateway: { maxHandshakesPerSecond: 0 }, auth: { timeout: 10000, maxInFlight: 1000000 } }
		});
		node.port = await gatewayPort(node);
		const hit = await node.waitForLog(/gateway\.maxConnections null: (\d+)/, 10000).catch(() => null);
		node.maxConnections = hit ? Number(/null: (\d+)/.exec(hit.line)[1]) : Infinity;
		if (PIN) proc.pin(node.pid, 0);
		nodes.push(node);
	}
	return nodes;
}

/** Waits until `producer` sees every node's `socket` service and the nodes see each other's (§7). */
async function waitNodesReady(producer, nodes, { auth = null } = {}) {
	for (const node of nodes) {
		await h.waitForRemoteNode(producer, node.nodeID, ["socket.stats"], 30000);
		if (auth) await h.waitForCppSees(producer, node.nodeID, AUTH_ACTION, auth.nodeID, 30000);
	}
	await waitGatewaysKnowEachOther({ producer }, nodes, 30000);
}

/** nats-server's message counters (/varz): every publish it received, every copy it sent. */
async function natsMessages(nats) {
	const varz = await (await fetch(`http://127.0.0.1:${nats.monitorPort}/varz`)).json();
	return { in: varz.in_msgs, out: varz.out_msgs };
}

/** Sum of socket.stats connections.total over `nodes`. */
async function connectionsOf(producer, nodes) {
	const stats = await Promise.all(nodes.map(n => producer.call("socket.stats", {}, { nodeID: n.nodeID, timeout: 10000 })));
	return stats.map(s => s.connections.total);
}

/** The load clients for `shares[i]` clients on `nodes[i]`: processes of at most PER_LOAD_CLIENT. */
function jobsFor(nodes, shares) {
	const jobs = [];
	shares.forEach((share, i) => {
		for (const n of split(share, Math.ceil(share / PER_LOAD_CLIENT))) if (n > 0) jobs.push({ node: nodes[i], n });
	});
	return jobs;
}

/**
 * Starts load clients for `jobs` ([{ node, n }]: n clients on node), all at once. Resolves
 * { lcs, seconds } (until every client is connected and subscribed, from the start of the first).
 */
async function startClients(jobs, planFile, readyMs) {
	const t0 = Date.now();
	const lcs = await Promise.all(jobs.map(async ({ node, n }) => {
		const lc = await startLoadClient({ port: node.port, clients: n, planFile, readyMs, args: ["--concurrency", "256"] });
		if (PIN) proc.pin(lc.pid, 1);
		lc.clients = n;
		lc.node = node.nodeID;
		return lc;
	}));
	return { lcs, seconds: (Date.now() - t0) / 1000 };
}

/**
 * One measured batch on `s` ({ producer, lcs, clients, seq, lost, duplicated, nodes, nats }): `emitAll(
 * emitOne)` emits the batch through emitOne() and resolves the first emit's CLOCK_MONOTONIC; the
 * load clients are told the new total of target 0 and checked. Resolves the batch's figures.
 */
async function measure(s, count, emitAll, timeoutMs = 120000) {
	await Promise.all(s.lcs.map(lc => lc.command("window", "RESULT window")));
	const cpu0 = sum(s.nodes.map(n => proc.cpuNs(n.pid)));
	const natsCpu0 = proc.cpuNs(s.nats.proc.pid);
	const msgs0 = await natsMessages(s.nats);
	const first = s.seq;
	const t0 = await emitAll(i => s.producer.emit("$socket.emit", { eventName: "bench", eventParams: { m: `~0~${first + i}~${now()}~` } }));
	s.seq += count;
	for (const lc of s.lcs) lc.send(`total 0 ${s.seq}`);
	const results = await Promise.all(s.lcs.map(lc => checkAndWindow(lc, QUIET_MS, timeoutMs)));
	const cpu = sum(s.nodes.map(n => proc.cpuNs(n.pid))) - cpu0;
	const natsCpu = proc.cpuNs(s.nats.proc.pid) - natsCpu0;
	const msgs = await natsMessages(s.nats);
	const delivered = sum(results.map(r => r.window.samples));
	// The load clients' lost and duplicated counts are totals since their start: this batch's share.
	const lostNow = sum(results.map(r => r.check.lost));
	const duplicatedNow = sum(results.map(r => r.check.duplicated));
	const r = {
		expected: s.clients * count,
		delivered,
		lost: lostNow - s.lost,
		duplicated: duplicatedNow - s.duplicated,
		lastMs: (max(results.map(x => x.window.last_ns)) - t0) / 1e6,
		p50: max(results.map(x => x.window.p50_ms)),
		p99: max(results.map(x => x.window.p99_ms)),
		max: max(results.map(x => x.window.max_ms)),
		cpuUs: cpu / 1e3 / Math.max(delivered, 1),
		// The bus's CPU per event (the setups are measured in turns: the other one is idle).
		natsCpuUsPerEvent: natsCpu / 1e3 / count,
		// Messages through nats-server per event: 1 in / 1 out is the producer's emit alone; with
		// forwarding one more publish (in) reaching the other nodes (out). Heartbeats add ~1/s.
		natsInPerEvent: (msgs.in - msgs0.in) / count,
		natsOutPerEvent: (msgs.out - msgs0.out) / count,
		generatorBound: results.some(x => x.check.client_cpu_pct >= 90)
	};
	s.lost = lostNow;
	s.duplicated = duplicatedNow;
	r.rate = delivered / (r.lastMs / 1000);
	return r;
}

/** K events back to back (yielding to the transporter every 50, as steedos_fanout.js). */
const burstOf = k => async emitOne => {
	const t0 = now();
	for (let i = 0; i < k; i++) {
		emitOne(i);
		if (i % 50 === 49) await new Promise(r => setImmediate(r));
	}
	return t0;
};

// --- through: three nodes against one -------------------------------------------------------------

async function startSetup(nats, name, nodeCount) {
	const namespace = `cluster-${name}-${process.pid}`;
	const producer = h.createBroker("0.14", { nats, namespace, nodeID: `producer-${name}-${process.pid}`, ...HEARTBEAT });
	await producer.start();
	const nodes = await startNodes(nats, namespace, nodeCount, name);
	await waitNodesReady(producer, nodes);
	// The same load clients in both setups: 3 (or a multiple of 3) processes of equal size.
	const processes = 3 * Math.ceil(THROUGH.clients / (3 * PER_LOAD_CLIENT));
	const parts = split(THROUGH.clients, processes);
	const { planFile } = issuePlan({ clients: max(parts), plain: true });
	const s = { name, producer, nodes, nats, clients: THROUGH.clients, lcs: [], seq: 0, lost: 0, duplicated: 0 };
	// Load client k on node k % nodes: all three on the one node, or one per node.
	const started = await startClients(parts.map((n, k) => ({ node: nodes[k % nodeCount], n })), planFile, 120000);
	s.lcs = started.lcs;
	await h.waitFor(async () => sum(await connectionsOf(producer, nodes)) === THROUGH.clients, 30000, { interval: 200, what: `${name}: ${THROUGH.clients} connections` });
	const warm = await measure(s, 20, burstOf(20)); // warm-up, and proof that every event reaches every client
	if (warm.delivered !== warm.expected || warm.duplicated) throw new Error(`${name}: warm-up delivered ${warm.delivered} of ${warm.expected}, ${warm.duplicated} duplicated`);
	log(`${name}: ${nodeCount} node(s) (${nodes.map(n => n.pid).join(", ")}), ${THROUGH.clients} clients from ${s.lcs.length} load clients (${started.seconds.toFixed(1)} s), warm-up ok`);
	return s;
}

async function stopSetup(s) {
	await Promise.all(s.lcs.map(lc => lc.stop()));
	await h.stopBrokers(s.producer);
	await h.stopCppNodes(s.nodes);
}

async function through() {
	const { clients, events, rate, seconds, rounds } = THROUGH;
	const paced_ = Math.round(rate * seconds);
	log(`through: ${clients} clients, burst ${events} events, paced ${rate} ev/s for ${seconds} s, ${rounds} rounds; ` +
		`expected about ${Math.round(10 + rounds * 2 * (seconds + 2))} s`);
	const nats = await h.startNats();
	const setups = [];
	try {
		setups.push(await startSetup(nats, "one", 1));
		setups.push(await startSetup(nats, "three", 3));
		const runs = { one: { burst: [], paced: [] }, three: { burst: [], paced: [] } };
		for (let round = 0; round < rounds; round++) {
			const order = round % 2 === 0 ? setups : setups.slice().reverse();
			for (const s of order) runs[s.name].burst.push(await measure(s, events, burstOf(events)));
			for (const s of order) runs[s.name].paced.push(await measure(s, paced_, emitOne => paced(rate, paced_, emitOne)));
			log(`round ${round + 1}/${rounds}: ` + setups.map(s => {
				const b = runs[s.name].burst[round], p = runs[s.name].paced[round];
				return `${s.name}: burst ${Math.round(b.rate)}/s p99 ${b.p99} ms lost ${b.lost} dup ${b.duplicated}, paced p50 ${p.p50} p99 ${p.p99} ms`;
			}).join("; "));
		}
		const result = {};
		for (const name of ["one", "three"]) {
			const b = runs[name].burst, p = runs[name].paced;
			const pick = (list, f) => median(list.map(r => r[f]));
			result[name] = {
				nodes: name === "one" ? 1 : 3, rate: pick(b, "rate"), burstP50: pick(b, "p50"), burstP99: pick(b, "p99"), cpuUs: pick(b, "cpuUs"), natsUs: pick(b, "natsCpuUsPerEvent"), natsIn: pick(b, "natsInPerEvent"), natsOut: pick(b, "natsOutPerEvent"),
				pacedP50: pick(p, "p50"), pacedP99: pick(p, "p99"), pacedMax: pick(p, "max"),
				lost: sum([...b, ...p].map(r => r.lost)), duplicated: sum([...b, ...p].map(r => r.duplicated)),
				generatorBound: [...b, ...p].some(r => r.generatorBound), runs: runs[name]
			};
		}
		return result;
	} finally {
		for (const s of setups) await stopSetup(s);
		await nats.stop();
	}
}

function throughReport(meta, r) {
	const one = r.one, three = r.three;
	const q = (a, b) => (a / b).toFixed(2);
	const f = (n, d = 2) => Number(n).toFixed(d);
	const lines = [
		`# Three gateway nodes against one (${meta.date})`,
		"",
		`Command: \`${meta.command}\`  `,
		`Machine: ${meta.machine}  `,
		`Commit: ${meta.git}; run time ${Math.round(meta.runS)} s`,
		"",
		`${meta.clients} Socket.IO clients (bench/load_client.cpp, ${meta.loadClients} processes) on one nats-server; a moleculer 0.14 producer emits balanced ` +
			"`$socket.emit` without a room, so in setup three each event reaches one node and is forwarded to the other two. " +
			`Burst: ${meta.events} events back to back; paced: ${meta.rate} ev/s for ${meta.seconds} s. Median of ${meta.rounds} rounds, the setups measured in turns. ` +
			`p50/p99: emit -> receipt, the highest of the load clients'. **${os.cpus().length} cores for everything**: ` +
			`the nodes, the load clients, nats-server and the producer share them (pinning ${meta.pin ? "nodes CPU 0, load clients CPU 1" : "off"}; nice ${meta.nice}), ` +
			"so three nodes here measure the cost of forwarding, not the gain of three machines.",
		"",
		"| setup | nodes | deliveries/s | burst p50 ms | burst p99 ms | node CPU µs/delivery | nats-server CPU µs/event | NATS msgs in/out per event | paced p50 ms | paced p99 ms | lost (all rounds) | duplicated (all rounds) |",
		"|---|---|---|---|---|---|---|---|---|---|---|---|"
	];
	for (const [name, x] of [["one", one], ["three", three]]) {
		lines.push(`| ${name} | ${x.nodes} | ${Math.round(x.rate)} | ${f(x.burstP50)} | ${f(x.burstP99)} | ${f(x.cpuUs, 3)} | ${f(x.natsUs, 1)} | ${f(x.natsIn)} / ${f(x.natsOut)} | ${f(x.pacedP50)} | ${f(x.pacedP99)} | ${x.lost} | ${x.duplicated} |`);
	}
	lines.push(`| three/one | | ${q(three.rate, one.rate)}x | ${q(three.burstP50, one.burstP50)}x | ${q(three.burstP99, one.burstP99)}x | ${q(three.cpuUs, one.cpuUs)}x | ${q(three.natsUs, one.natsUs)}x | | ` +
		`${q(three.pacedP50, one.pacedP50)}x | ${q(three.pacedP99, one.pacedP99)}x | | |`);
	lines.push("", "three/one: above 1 is more (deliveries/s) or slower and costlier (latency, CPU). Node CPU: the sum over the setup's nodes " +
		"(/proc/<pid>/task/*/schedstat) during the burst, per delivery; nats-server CPU: during the burst, per event (the other setup is idle meanwhile). " +
		"NATS msgs: nats-server's /varz in_msgs / out_msgs during the burst, per event (heartbeats of both setups included, about 1/s).", "");
	if (one.generatorBound || three.generatorBound) lines.push("WARN a load client was at >= 90 % CPU during a measurement: the generator may have set the pace.", "");
	lines.push(`Load average at the end: ${meta.loadEnd}.`, "");
	return lines.join("\n");
}

// --- idle: many idle clients on five nodes ----------------------------------------------------------

async function idle() {
	const { clients, nodes: nodeCount, reps, settleMs } = IDLE;
	const shares = split(clients, nodeCount);
	log(`idle: ${clients} clients on ${nodeCount} nodes (${shares.join(", ")}), load clients of at most ${PER_LOAD_CLIENT}; ` +
		`expected: start ~${2 + nodeCount} s, connects ~${Math.ceil(clients / 3000)} s at ~3,000/s, settle 2 x ${settleMs / 1000} s, ${reps} events ~${reps * 2} s`);
	const nats = await h.startNats();
	const authCalls = [];
	const producer = h.createBroker("0.14", { nats, nodeID: `producer-idle-${process.pid}`, ...HEARTBEAT });
	producer.createService(authService(authCalls));
	await producer.start();
	let nodes = [];
	let lcs = [];
	try {
		nodes = await startNodes(nats, "", nodeCount, "idle");
		await waitNodesReady(producer, nodes, { auth: producer });
		nodes.forEach((n, i) => {
			if (shares[i] > n.maxConnections) throw new Error(`${n.nodeID}: ${shares[i]} clients over its gateway.maxConnections ${n.maxConnections} (raise ulimit -n, or more --nodes)`);
		});
		log(`${nodeCount} nodes up (pids ${nodes.map(n => n.pid).join(", ")}; derived gateway.maxConnections ${nodes[0].maxConnections}); settling ${settleMs / 1000} s before the 0-client RSS`);
		await h.sleep(settleMs); // deliberate idle period before the 0-client reading
		const before = nodes.map(n => rssKb(n.pid).rss);
		const { planFile } = issuePlan({ clients: Math.min(PER_LOAD_CLIENT, max(shares)), subscriptions: ROOMS_NOT_EMITTED_TO });
		log("connecting");
		const started = await startClients(jobsFor(nodes, shares), planFile, 900000);
		lcs = started.lcs;
		log(`${clients} clients connected and subscribed in ${started.seconds.toFixed(1)} s (${lcs.length} load clients: ${lcs.map(lc => lc.clients).join(", ")}); auth calls ${authCalls.length}`);
		await h.waitFor(async () => sum(await connectionsOf(producer, nodes)) === clients, 60000, { interval: 500, what: `${clients} connections` });
		const perNode = await connectionsOf(producer, nodes);
		await h.sleep(settleMs); // deliberate idle period before the N-client reading
		const after = nodes.map(n => rssKb(n.pid).rss);
		const rssPerClient = (sum(after) - sum(before)) * 1024 / clients;
		log(`RSS ${Math.round(sum(before) / 1024)} MiB before, ${Math.round(sum(after) / 1024)} MiB with clients: ${Math.round(rssPerClient)} B per client`);
		const s = { producer, nodes, nats, lcs, clients, seq: 0, lost: 0, duplicated: 0 };
		const events = [];
		for (let rep = 0; rep < reps; rep++) {
			const r = await measure(s, 1, burstOf(1), 300000);
			r.complete = r.delivered === clients && r.lost === 0 && r.duplicated === 0;
			events.push(r);
			log(`event ${rep + 1}/${reps}: ${r.delivered}/${clients} received, last after ${r.lastMs.toFixed(1)} ms (p50 ${r.p50} ms), lost ${r.lost}, duplicated ${r.duplicated}`);
			await h.sleep(300); // deliberate gap between the events
		}
		return {
			clients, nodes: nodeCount, shares, perNode, loadClients: lcs.map(lc => ({ node: lc.node, clients: lc.clients, connectS: lc.connectSeconds })),
			connectS: started.seconds, connectPerS: clients / started.seconds, authCalls: authCalls.length,
			rssBeforeKb: before, rssAfterKb: after, rssPerClient,
			events, lastMs: events.every(e => e.complete) ? median(events.map(e => e.lastMs)) : null,
			lost: sum(events.map(e => e.lost)), duplicated: sum(events.map(e => e.duplicated)),
			generatorBound: events.some(e => e.generatorBound)
		};
	} finally {
		await Promise.all(lcs.map(lc => lc.stop()));
		await h.stopBrokers(producer);
		await h.stopCppNodes(nodes);
		await nats.stop();
	}
}

function idleReport(meta, r) {
	const mib = kb => (kb / 1024).toFixed(1);
	const lines = [
		`# ${r.clients} idle Steedos-like clients on ${r.nodes} gateway nodes (${meta.date})`,
		"",
		`Command: \`${meta.command}\`  `,
		`Machine: ${meta.machine}  `,
		`Commit: ${meta.git}; run time ${Math.round(meta.runS)} s`,
		"",
		`${r.nodes} steedos-socket processes on one nats-server; clients: bench/load_client.cpp, ${r.loadClients.length} processes of at most ${meta.perLoadClient} ` +
			"connections (each process may open about 20,000 files), as compare.js workload a: cookies of 50 users in 5 tenants " +
			"(mock auth service), subscribes `space`, individual `me` and `notification-change`. One event: a balanced `$socket.emit` " +
			`without a room from a moleculer 0.14 producer, received by every client exactly once; median of ${r.events.length}. ` +
			`**${os.cpus().length} cores for everything** (nodes, load clients, nats-server, producer; pinning ${meta.pin ? "on" : "off"}; nice ${meta.nice}).`,
		"",
		"| clients | nodes | connect s (all) | connects/s | RSS per client B | one event to all: last receipt ms (median) | lost | duplicated |",
		"|---|---|---|---|---|---|---|---|",
		`| ${r.clients} | ${r.nodes} | ${r.connectS.toFixed(1)} | ${Math.round(r.connectPerS)} | ${Math.round(r.rssPerClient)} | ` +
			`${r.lastMs == null ? "n/a (not all received)" : r.lastMs.toFixed(1)} | ${r.lost} | ${r.duplicated} |`,
		"",
		"Per node: clients / RSS before / RSS with clients (MiB): " +
			r.perNode.map((n, i) => `${n} / ${mib(r.rssBeforeKb[i])} / ${mib(r.rssAfterKb[i])}`).join("; ") + ".  ",
		"Each event (last receipt ms, p50 ms, received): " + r.events.map(e => `${e.lastMs.toFixed(1)}, ${e.p50}, ${e.delivered}`).join("; ") + ".",
		""
	];
	if (r.generatorBound) lines.push("WARN a load client was at >= 90 % CPU during an event: the generator may have set the pace.", "");
	lines.push(`Load average at the end: ${meta.loadEnd}.`, "");
	return lines.join("\n");
}

// --- main ------------------------------------------------------------------------------------------

function write(base, markdown, json) {
	fs.mkdirSync(OUT_DIR, { recursive: true });
	fs.writeFileSync(path.join(OUT_DIR, `${base}.md`), markdown);
	fs.writeFileSync(path.join(OUT_DIR, `${base}.json`), JSON.stringify(json, null, 1) + "\n");
	log(`wrote ${path.join(OUT_DIR, base)}.md and .json`);
}

async function main() {
	for (const part of ONLY) if (!["through", "idle"].includes(part)) throw new Error(`--only ${[...ONLY].join(",")}: through, idle`);
	const sizes = { clients: THROUGH.clients, "idle clients": IDLE.clients, events: THROUGH.events, rate: THROUGH.rate, seconds: THROUGH.seconds, rounds: THROUGH.rounds,
		nodes: IDLE.nodes, reps: IDLE.reps, "per-load-client": PER_LOAD_CLIENT };
	for (const [name, v] of Object.entries(sizes)) if (!(v > 0)) throw new Error(`--${name.replace("idle ", "")}: a positive number (got ${v})`);
	for (const f of ["steedos-socket", "load-client"]) {
		if (!fs.existsSync(path.join(h.BUILD_DIR, f))) throw new Error(`${path.join(h.BUILD_DIR, f)} missing: cmake --build build --target steedos-socket load-client`);
	}
	proc.raisePriority(NICE, log);
	const machine = proc.machineLine();
	const git = proc.gitLine();
	log(`${git}; ${machine}; pinning ${PIN ? "nodes CPU 0, load clients CPU 1" : "off"}`);
	if (os.loadavg()[0] > 1) log(`WARN load average ${os.loadavg()[0].toFixed(2)} before the run: other jobs share the cores, the figures will be noisy`);
	const common = () => ({ command: COMMAND, machine, git, date: DATE, pin: PIN, nice: os.getPriority(0), loadEnd: os.loadavg().map(x => x.toFixed(2)).join(" ") });
	const summaries = [];
	if (ONLY.has("through")) {
		const t = Date.now();
		const r = await through();
		const meta = Object.assign(common(), THROUGH, { runS: (Date.now() - t) / 1000, loadClients: 3 * Math.ceil(THROUGH.clients / (3 * PER_LOAD_CLIENT)) });
		const md = throughReport(meta, r);
		write(`${DATE}-cluster${TAG}`, md, { meta, results: r });
		summaries.push(md);
	}
	if (ONLY.has("idle")) {
		const t = Date.now();
		const r = await idle();
		const meta = Object.assign(common(), IDLE, { runS: (Date.now() - t) / 1000, perLoadClient: PER_LOAD_CLIENT });
		const md = idleReport(meta, r);
		write(`${DATE}-cluster-idle${TAG}`, md, { meta, results: r });
		summaries.push(md);
	}
	console.log(summaries.join("\n"));
	log(`done in ${Math.round((Date.now() - STARTED) / 1000)} s`);
}

main().then(
	() => process.exit(0),
	err => {
		console.error(err.stack || err.message);
		process.exit(1); // the harness's exit handler kills every node, load client and nats-server started
	}
);
