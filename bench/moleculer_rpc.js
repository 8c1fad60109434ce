"use strict";
// Request/response and event throughput of the C++ node against a JS node, side by side on one
// bus (a nats-server or a redis-server) in one run. Each target is a process of its own; a JS (moleculer 0.14) caller in
// this process drives both with the same load:
//   - round trips: `echo` calls at concurrency 1 (latency) and at concurrency C (throughput);
//   - events: N `bench.tick` emits, timed until the receiver has counted all of them.
// Prints a table and the C++/JS ratios. Usage (after scripts/build.sh and scripts/setup.sh):
//   node bench/moleculer_rpc.js [--transporter nats|redis|both] [--calls 20000] [--concurrency 32]
//                               [--events 50000] [--rounds 3]
// --transporter (default nats): the bus both targets and the caller join, a nats-server or a
// redis-server started for the run (tests/interop/lib/harness.js); `both` runs the NATS table,
// then the Redis table, each on its own bus with fresh nodes, and prints both at the end.
const h = require("../tests/interop/lib/harness");

function arg(name, fallback) {
	const i = process.argv.indexOf(`--${name}`);
	return i > 0 ? Number(process.argv[i + 1]) : fallback;
}
function stringArg(name, fallback) {
	const i = process.argv.indexOf(`--${name}`);
	return i > 0 ? String(process.argv[i + 1]) : fallback;
}
const TRANSPORTER = stringArg("transporter", "nats").toLowerCase();
if (!["nats", "redis", "both"].includes(TRANSPORTER)) {
	console.error(`--transporter must be nats, redis or both, not ${TRANSPORTER}`);
	process.exit(2);
}
const CALLS = arg("calls", 20000);
const CONCURRENCY = arg("concurrency", 32);
const EVENTS = arg("events", 50000);
// The machine's noise (other processes, a VM's neighbours) moves single runs by ±20 %: each
// figure is the median of this many rounds, the two targets taking turns within each round.
const ROUNDS = arg("rounds", 3);

/** CPU seconds (user + system) the process `pid` has used so far. */
function cpuSeconds(pid) {
	const fields = require("fs").readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
	const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14, 15)
	return ticks / 100; // USER_HZ
}

/** Runs `phase` and adds the target's CPU time per operation (µs) to its result. */
async function measured(pid, operations, phase) {
	const before = cpuSeconds(pid);
	const result = await phase();
	const cpu = cpuSeconds(pid) - before;
	return Object.assign(typeof result === "number" ? { rate: result } : result, { cpuUs: (cpu * 1e6) / operations });
}

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

/** The JS target node in its own process, so that both targets are scheduled alike. */
async function startJsTarget(bus, nodeID) {
	const { spawn } = require("child_process");
	const child = spawn(process.execPath, [require.resolve("./js_target_node"), bus.url, nodeID], {
		stdio: ["ignore", "pipe", "inherit"]
	});
	await new Promise((resolve, reject) => {
		child.once("exit", code => reject(new Error(`JS target exited with ${code}`)));
		child.stdout.on("data", chunk => {
			if (String(chunk).includes("ready")) resolve();
		});
	});
	return {
		pid: child.pid,
		stop: () =>
			new Promise(resolve => {
				child.removeAllListeners("exit");
				child.once("exit", resolve);
				child.kill("SIGTERM");
			})
	};
}

/** One table: both targets and the caller on a fresh bus of `kind` ("nats" or "redis"). */
async function measureOn(kind) {
	const bus = kind === "redis" ? await h.startRedis() : await h.startNats();
	const cpp = await h.startCppNode({
		transporter: bus.url,
		nodeID: "bench-cpp",
		logLevel: "warn",
		heartbeatInterval: 5,
		heartbeatTimeout: 15
	});
	const js = await startJsTarget(bus, "bench-js");
	const caller = h.createBroker("0.14", { transporter: bus.url, nodeID: "bench-caller", heartbeatInterval: 5, heartbeatTimeout: 15 });
	await caller.start();
	await h.waitForRemoteNode(caller, "bench-cpp", ["cpptest.echo", "cppbench.count"], 15000);
	await h.waitForRemoteNode(caller, "bench-js", ["jsbench.echo"], 15000);

	const targets = [
		{ name: "C++ node", pid: cpp.pid, nodeID: "bench-cpp", echo: "cpptest.echo", count: "cppbench.count", reset: "cppbench.reset" },
		{ name: "JS node", pid: js.pid, nodeID: "bench-js", echo: "jsbench.echo", count: "jsbench.count", reset: "jsbench.reset" }
	];
	const serialCalls = Math.min(CALLS, 5000);
	const runs = Object.fromEntries(targets.map(t => [t.name, []]));
	for (const t of targets) await roundTrips(caller, t.echo, t.nodeID, 1000, 8); // warm-up
	for (let round = 0; round < ROUNDS; round++) {
		const order = round % 2 === 0 ? targets : targets.slice().reverse();
		for (const t of order) {
			const serial = await measured(t.pid, serialCalls, () => roundTrips(caller, t.echo, t.nodeID, serialCalls, 1));
			const parallel = await measured(t.pid, CALLS, () => roundTrips(caller, t.echo, t.nodeID, CALLS, CONCURRENCY));
			const events = await measured(t.pid, EVENTS, () => eventRate(caller, t.count, t.reset, t.nodeID, EVENTS));
			runs[t.name].push({ serial, parallel, events });
		}
	}
	const median = values => values.slice().sort((a, b) => a - b)[Math.floor(values.length / 2)];
	const results = {};
	for (const [name, list] of Object.entries(runs)) {
		const pick = (phase, field) => median(list.map(r => r[phase][field]));
		results[name] = {};
		for (const phase of ["serial", "parallel", "events"]) {
			results[name][phase] = Object.fromEntries(Object.keys(list[0][phase]).map(f => [f, pick(phase, f)]));
		}
	}

	await h.stopBrokers(caller);
	await js.stop();
	await h.stopCppNodes(cpp);
	await bus.stop();
	return { kind, results, load: require("os").loadavg()[0] };
}

function printTable({ kind, results, load }) {
	const bus = kind === "redis" ? "one redis-server" : "one nats-server";
	const fmt = (n, d = 0) => n.toFixed(d).padStart(8);
	console.log(
		`[${kind}] moleculer 0.14 caller -> target, ${bus}, ${CALLS} calls at concurrency ${CONCURRENCY}, ${EVENTS} events; median of ${ROUNDS} rounds`
	);
	console.log("(cpu: the target process's CPU time per call or event, in microseconds)");
	console.log(
		"target      | calls/s c=1 | p50 ms | p99 ms | calls/s c=" + String(CONCURRENCY).padEnd(3) + "| p50 ms | p99 ms | cpu us | events/s | cpu us"
	);
	for (const [name, r] of Object.entries(results)) {
		console.log(
			`${name.padEnd(11)} |  ${fmt(r.serial.rps)}   |${fmt(r.serial.p50, 2)}|${fmt(r.serial.p99, 2)}|  ${fmt(r.parallel.rps)}   |` +
				`${fmt(r.parallel.p50, 2)}|${fmt(r.parallel.p99, 2)}|${fmt(r.parallel.cpuUs, 1)}|${fmt(r.events.rate)}  |${fmt(r.events.cpuUs, 1)}`
		);
	}
	const c = results["C++ node"], j = results["JS node"];
	console.log(
		`ratio C++/JS: calls/s c=1 ${(c.serial.rps / j.serial.rps).toFixed(2)}x, ` +
			`calls/s c=${CONCURRENCY} ${(c.parallel.rps / j.parallel.rps).toFixed(2)}x, ` +
			`p99 c=${CONCURRENCY} ${(c.parallel.p99 / j.parallel.p99).toFixed(2)}x (lower is better), ` +
			`events/s ${(c.events.rate / j.events.rate).toFixed(2)}x; ` +
			`CPU per call ${(c.parallel.cpuUs / j.parallel.cpuUs).toFixed(2)}x, per event ${(c.events.cpuUs / j.events.cpuUs).toFixed(2)}x (lower is better)`
	);
	console.log(`(1-min load average at the end: ${load.toFixed(2)}; ${require("os").cpus().length} CPUs)`);
}

async function main() {
	process.env.STEEDOS_FIXTURE_BENCH = "1"; // the fixture then adds its `cppbench` counter service
	const kinds = TRANSPORTER === "both" ? ["nats", "redis"] : [TRANSPORTER];
	const tables = [];
	for (const kind of kinds) {
		tables.push(await measureOn(kind));
		if (kinds.length > 1) printTable(tables[tables.length - 1]); // progress, reprinted below
	}
	if (kinds.length > 1) console.log("\n=== summary ===");
	for (const t of tables) printTable(t);
	const redis = tables.find(t => t.kind === "redis");
	if (redis) {
		const r = redis.results["C++ node"].parallel.rps / redis.results["JS node"].parallel.rps;
		console.log(`goal on Redis: C++ >= 1.2x the JS node's calls/s at c=${CONCURRENCY}: ${r.toFixed(2)}x ${r >= 1.2 ? "MET" : "MISSED"}`);
	}
}
main().then(
	() => process.exit(0),
	err => {
		console.error(err);
		process.exit(1);
	}
);
