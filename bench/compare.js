"use strict";
// The issue-11 benchmark in one command: the product (build/steedos-socket) and then the Node.js
// baseline (bench/baseline: socket.io 4.8 + moleculer 0.14), workload by workload, each
// figure for both and the ratio, the targets met or not; writes bench/results/<date>.md (table,
// command, machine, commit) and bench/results/<date>.png (gnuplot).
//
//   bench/compare.sh [--quick] [--only a,b,c,d,e,g] [--impl product|baseline|both] [--out BASE]
//                    [--io-threads N] [--no-pin] [--no-chart]
//
// Every workload of every implementation gets a fresh nats-server, a fresh server and a moleculer
// 0.14 broker in this process that runs the fixture's mock auth service
// (tests/interop/steedos/fixture.js authService: `@steedos/service-accounts.getUserSession`) and
// produces the events. Clients: build/load-client (bench/load_client.cpp, C++, one thread, epoll)
// with a --plan of Steedos-like clients: cookies `X-Space-Id` / `X-Auth-Token` of a fixture
// login(), the Steedos subscribe calls with acks; every event carries the marker
// `~<target>~<seq>~<t>~` (t: CLOCK_MONOTONIC ns at the producer's emit) that the load client checks
// (lost, duplicated, leaked) and times. Server on CPU 0, load clients on CPU 1 (taskset), this
// process (producer, auth) and nats-server float.
//
// Workloads:
//   a  idle RSS per Steedos-like client (cookies of 50 users in 5 tenants, subscribes `space`,
//      individual `me` and `notification-change`) at 2,000, 10,000 and 19,000 clients (split over
//      two load clients above 9,500: one process may hold 20,000 descriptors). (VmRSS with N -
//      VmRSS with 0) / N after a settle period; the baseline also after a full GC (node
//      --expose-gc, SIGUSR2), the lower of the two is compared.
//   b  fan-out to 1,000 clients in one room (`S1-space`, `$socket.emit` with `room`) at rising
//      rates (10, 20, 50, 100, ... 20,000 ev/s, 3 s or 6,000 events each) until p99 > 50 ms or an
//      event is lost, twice in a row (100 ev/s is always measured): p50/p99/max emit->receipt,
//      deliveries/s, lost;
//      f  the server's CPU µs per delivery over each step (/proc/<pid>/stat), reported at 100 ev/s.
//   c  one event to 10,000 Steedos-like clients (`$socket.emit`, no room): until the last client
//      received it, and the server-side write time (product: delta of
//      steedos_socket_emit_to_write_seconds on /metrics; baseline: BENCH_EMIT_TIMING in
//      bench/baseline/server.js); median of 5 events.
//   d  10,000 users, one client each in its personal room (individual `notification-change`),
//      `$broadcast.$notification.users` to a random user at 2,000/s: p50/p99/max, lost.
//   e  connects per second with authentication (a distinct login per client, WebSocket only),
//      cold auth cache (fresh server) then warm (the same logins again): per second, p50/p99.
//   g  the product alone: one event to 10,000 clients with gateway.ioThreads 1, then 2, twice in
//      turn (5 events each), nothing pinned, the load client at nice 19: the server write time
//      (as in c) of 2 threads against 1.
// Workloads a-e run the product with gateway.ioThreads 1 on CPU 0, as the single-threaded
// baseline (--io-threads 2: the product with two write threads, nothing pinned).
// Limits a deployment keeps are lifted where they would refuse the generator
// (gateway.maxHandshakesPerSecond 0, auth.maxInFlight 1,000,000); the baseline has no such limits.
const fs = require("fs");
const os = require("os");
const path = require("path");
const { spawn } = require("child_process");
const { h, authService, login, AUTH_ACTION } = require("../tests/interop/steedos/fixture");
const { issuePlan, startLoadClient, checkAndWindow, paced, rssKb, median, arg, now } = require("./steedos_load");
const { startBaseline } = require("./baseline/start");
const proc = require("./lib/proc");
const { machineLine, gitLine } = proc;
const report = require("./lib/compare_report");

const QUICK = process.argv.includes("--quick");
const ONLY = new Set(String(arg("only", "a,b,c,d,e,g")).split(","));
if (ONLY.has("b")) ONLY.add("f");
const IMPL = arg("impl", "both");
// gateway.ioThreads of the product in workloads a-e. 1 (default): the product, pinned to CPU 0 like
// the baseline. More: nothing is pinned (the write threads need the other core).
const IO_THREADS = Number(arg("io-threads", "1"));
const IMPLS = IMPL === "both" ? ["product", "baseline"] : [IMPL];
const PIN = !process.argv.includes("--no-pin") && proc.canPin();
const CHART = !process.argv.includes("--no-chart");
// Other jobs on the machine (builds) would take CPU 0 from the pinned server: the benchmark and
// everything it starts (children inherit it) run at this nice value when allowed (root).
const NICE = process.argv.includes("--no-nice") ? null : -10;
const DATE = new Date().toISOString().slice(0, 10);
const OUT = arg("out", path.join(__dirname, "results", QUICK ? `${DATE}-quick` : DATE));
const LOAD_CLIENT = path.join(h.BUILD_DIR, "load-client");

const SIZES = QUICK
	? { idle: [1000], fanoutClients: 500, rates: [20, 100, 1000, 5000], stepS: 1, one: 2000, oneReps: 3, personal: 2000, personalRate: 2000, personalS: 2, connects: 2000 }
	: { idle: [2000, 10000, 19000], fanoutClients: 1000, rates: [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000], stepS: 3, one: 10000, oneReps: 5, personal: 10000, personalRate: 2000, personalS: 5, connects: 10000 };
const MAX_STEP_EVENTS = 6000; // a fan-out step emits rate * stepS events, at most this many
const P99_LIMIT_MS = 50;
// Deliberate idle periods before an RSS reading: the product's RSS is flat after the connects;
// V8 shrinks its heap only some seconds after the burst (bench/baseline/idle_rss.js: 15 s).
const SETTLE_MS = QUICK ? { product: 2000, baseline: 3000 } : { product: 5000, baseline: 15000 };
const PER_LOAD_CLIENT = 9500; // clients per load-client process (20,000 descriptors each)

const log = text => process.stderr.write(`compare: ${text}\n`);
const sleep = h.sleep;

// --- set-up ------------------------------------------------------------------------------------

/** A fresh nats-server, a producer broker with the mock auth service, and one server (`impl`). */
async function setUp(impl, { emitTiming = false, ioThreads = IO_THREADS, pin = IO_THREADS > 1 ? false : PIN, niceClients = false } = {}) {
	const nats = await h.startNats();
	const authCalls = [];
	const broker = h.createBroker("0.14", { nats, heartbeatInterval: 5, heartbeatTimeout: 15 });
	broker.createService(authService(authCalls));
	await broker.start();
	const nodeID = `${impl}-${process.pid}-${Date.now().toString(36)}`;
	const common = { serviceName: "socket", heartbeatInterval: 5, heartbeatTimeout: 15 };
	let server;
	if (impl === "product") {
		server = await h.startCppNode({
			binary: "steedos-socket",
			nats,
			nodeID,
			logLevel: "info", // the port is read from the info line `gateway listening on`
			heartbeatInterval: 5,
			heartbeatTimeout: 15,
			extra: Object.assign({}, common, {
				// One write thread unless asked: the server is pinned to one CPU, as the baseline.
				gateway: { host: "127.0.0.1", port: 0, maxHandshakesPerSecond: 0, ioThreads },
				auth: { timeout: 10000, maxInFlight: 1000000 }
			})
		});
		const hit = await server.waitForLog(/gateway listening on [^\s]+:(\d+)/, 15000);
		server.port = Number(/gateway listening on [^\s]+:(\d+)/.exec(hit.line)[1]);
	} else {
		server = await startBaseline({
			port: 0,
			transporter: nats.url,
			nodeID,
			nodeArgs: ["--expose-gc"],
			env: emitTiming ? { BENCH_EMIT_TIMING: "1" } : {},
			config: Object.assign({}, common, { logLevel: "warn", auth: { timeout: 10000 } })
		});
		h.track(server.proc);
	}
	if (pin) proc.pin(server.pid, 0);
	await h.waitForRemoteNode(broker, nodeID, ["socket.stats"], 20000);
	await h.waitForCppSees(broker, nodeID, AUTH_ACTION, broker.nodeID, 20000);
	const env = {
		impl,
		pin,
		niceClients,
		nats,
		broker,
		server,
		authCalls,
		port: server.port,
		pid: server.pid,
		stats: () => broker.call("socket.stats", {}, { nodeID, timeout: 10000 }),
		async waitConnections(n, ms = 60000) {
			await h.waitFor(async () => (await env.stats()).connections.total === n, ms, { interval: 200, what: `${impl}: ${n} connections` });
		},
		async stop() {
			await h.stopBrokers(broker);
			await server.stop("SIGTERM", 8000).catch(() => server.stop("SIGKILL"));
			await nats.stop();
		}
	};
	return env;
}

/** The [first, count] slices of `clients` for load-client processes of PER_LOAD_CLIENT each. */
function slices(clients) {
	const out = [];
	for (let first = 0; first < clients; first += PER_LOAD_CLIENT) out.push([first, Math.min(PER_LOAD_CLIENT, clients - first)]);
	return out;
}

/** Load clients in --plan mode for `clients` (split by slices()), pinned. `plan`: a plan file
 * (each process reads its first lines) or a function (first, count) -> plan file. */
async function startClients(env, clients, plan, args = []) {
	const started = await Promise.all(slices(clients).map(async ([first, n]) => {
		const planFile = typeof plan === "function" ? plan(first, n) : plan;
		const lc = await startLoadClient({ port: env.port, clients: n, planFile, args: ["--concurrency", "256", ...args] });
		if (env.pin) proc.pin(lc.pid, 1);
		// Workload g: the server's write threads come first. Its figure is the server's write
		// time, and a load client busy with receipts would otherwise take a core from them.
		if (env.niceClients) os.setPriority(lc.pid, 19);
		return lc;
	}));
	return started;
}

// --- workloads ---------------------------------------------------------------------------------

/** a: idle RSS per Steedos-like client at each size. */
async function idleMemory(impl) {
	const rows = [];
	for (const clients of SIZES.idle) {
		const env = await setUp(impl);
		try {
			let before = rssKb(env.pid).rss;
			if (impl === "baseline") {
				await sleep(SETTLE_MS.baseline); // deliberate: the fresh process settles before the 0-client reading
				before = await gcReading(env);
			}
			const { planFile } = issuePlan({ clients });
			const t0 = Date.now();
			const lcs = await startClients(env, clients, planFile);
			const connectS = (Date.now() - t0) / 1000;
			await env.waitConnections(clients);
			await sleep(SETTLE_MS[impl]); // deliberate idle period before the N-client reading
			const settled = rssKb(env.pid).rss;
			const afterGc = impl === "baseline" ? await gcReading(env) : settled;
			const per = kb => ((kb - before) * 1024) / clients;
			const row = { clients, before, settled, afterGc, perSettled: per(settled), perGc: per(afterGc), bytes: Math.min(per(settled), per(afterGc)), connectS, authCalls: env.authCalls.length };
			log(`${impl} idle ${clients}: ${Math.round(row.bytes)} B/client (settled ${Math.round(row.perSettled)}, after GC ${Math.round(row.perGc)}), connect ${connectS.toFixed(1)} s`);
			rows.push(row);
			await Promise.all(lcs.map(lc => lc.stop()));
		} finally {
			await env.stop();
		}
	}
	return rows;
}

/** The baseline's RSS after a full collection (SIGUSR2 with --expose-gc prints `memory ...`). */
async function gcReading(env) {
	const seen = env.server.logs.filter(l => l.line.startsWith("memory ")).length;
	process.kill(env.pid, "SIGUSR2");
	await h.waitFor(() => env.server.logs.filter(l => l.line.startsWith("memory ")).length > seen, 10000, { what: "baseline GC" });
	await sleep(1000); // deliberate: as idle_rss.js, the collection and the kernel's RSS update
	return rssKb(env.pid).rss;
}

/** b + f: fan-out to one room at rising rates until p99 > 50 ms or a loss. */
async function fanout(impl) {
	const env = await setUp(impl);
	const steps = [];
	try {
		const clients = SIZES.fanoutClients;
		const { planFile } = issuePlan({ clients, tenants: 1, subscriptions: ["1,0,space"] });
		const [lc] = await startClients(env, clients, planFile);
		await env.waitConnections(clients);
		let seq = 0;
		const emitOne = () => env.broker.emit("$socket.emit", { eventName: "bench", eventParams: { m: `~1~${seq++}~${now()}~` }, room: "S1-space" });
		// warm-up (and proof that events reach every client), not measured
		await paced(200, 50, emitOne);
		lc.send(`total 1 ${seq}`);
		await checkAndWindow(lc, 2000, 20000);
		/** One step of the ladder: `rate` ev/s for stepS seconds (at most MAX_STEP_EVENTS events). */
		const runStep = async rate => {
			const count = Math.min(MAX_STEP_EVENTS, Math.round(rate * SIZES.stepS));
			const cpu0 = proc.cpuSeconds(env.pid);
			await lc.command("window", "RESULT window"); // starts the step's window and CPU meter
			const t0 = await paced(rate, count, emitOne);
			const emitS = (now() - t0) / 1e9;
			lc.send(`total 1 ${seq}`);
			const { check, window } = await checkAndWindow(lc, 3000, 120000);
			const cpu = proc.cpuSeconds(env.pid) - cpu0;
			const delivered = window.samples;
			const spanS = window.last_ns > t0 ? (window.last_ns - t0) / 1e9 : emitS;
			const lost = Math.max(0, clients * count - delivered);
			const step = {
				rate, count, emitS, achievedRate: count / emitS, delivered, lost, lostTotal: check.lost, p50: window.p50_ms, p99: window.p99_ms, max: window.max_ms,
				deliveriesPerS: delivered / spanS, serverCpuUs: (cpu * 1e6) / Math.max(delivered, 1), clientCpu: check.client_cpu_pct,
				genBound: check.client_cpu_pct >= 90
			};
			// The producer (this process) could not emit at the rate: the step measured less.
			step.producerBound = step.achievedRate < 0.9 * rate;
			step.ok = step.lost === 0 && step.lostTotal === 0 && step.p99 <= P99_LIMIT_MS;
			log(`${impl} fan-out ${rate} ev/s (${count} events, emitted at ${Math.round(step.achievedRate)}/s): p50 ${step.p50} p99 ${step.p99} max ${step.max} ms, ` +
				`${Math.round(step.deliveriesPerS)} deliveries/s, lost ${lost}, server ${step.serverCpuUs.toFixed(2)} µs/delivery, load client ${step.clientCpu}% CPU`);
			return step;
		};
		for (const rate of SIZES.rates) {
			let step = await runStep(rate);
			if (!step.ok) {
				// Once more: on a shared machine one disturbed step should not end the ladder.
				const first = step;
				step = await runStep(rate);
				step.firstTry = { p99: first.p99, lost: first.lost };
			}
			steps.push(step);
			// The ladder ends at the first step that fails twice, but always measures 100 ev/s (a
			// reported figure and the rate of the CPU per delivery).
			if (!step.ok && rate >= 100) break;
		}
		await lc.stop();
	} finally {
		await env.stop();
	}
	return steps;
}

/** Sum and count of a Prometheus histogram on the product's /metrics. */
async function histogram(port, name) {
	const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
	const value = suffix => Number((new RegExp(`^${name}_${suffix}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text) || [])[1]);
	return { sum: value("sum"), count: value("count") };
}

/** c: one event to every one of N Steedos-like clients, several times. */
async function oneEvent(impl, { ioThreads = IO_THREADS, pin = IO_THREADS > 1 ? false : PIN, niceClients = false } = {}) {
	const env = await setUp(impl, { emitTiming: true, ioThreads, pin, niceClients });
	const reps = [];
	try {
		const clients = SIZES.one;
		const { planFile } = issuePlan({ clients });
		const lcs = await startClients(env, clients, planFile);
		await env.waitConnections(clients);
		for (let rep = 0; rep < SIZES.oneReps; rep++) {
			await Promise.all(lcs.map(lc => lc.command("window", "RESULT window")));
			const before = impl === "product" ? await histogram(env.port, "steedos_socket_emit_to_write_seconds") : null;
			const timings = env.server.logs.filter(l => l.line.startsWith("bench emit_to_write_ms=")).length;
			const t0 = now();
			env.broker.emit("$socket.emit", { eventName: "one", eventParams: { m: `~0~${rep}~${t0}~` } });
			for (const lc of lcs) lc.send(`total 0 ${rep + 1}`);
			const results = await Promise.all(lcs.map(lc => checkAndWindow(lc, 3000, 60000)));
			const delivered = results.reduce((a, r) => a + r.window.samples, 0);
			const lastNs = Math.max(...results.map(r => r.window.last_ns));
			let writeMs = null;
			if (impl === "product") {
				const after = await histogram(env.port, "steedos_socket_emit_to_write_seconds");
				if (after.count - before.count === 1) writeMs = (after.sum - before.sum) * 1000;
			} else {
				await h.waitFor(() => env.server.logs.filter(l => l.line.startsWith("bench emit_to_write_ms=")).length > timings, 5000, { what: "baseline emit timing" });
				const line = env.server.logs.filter(l => l.line.startsWith("bench emit_to_write_ms="))[timings].line;
				writeMs = Number(/emit_to_write_ms=(\S+)/.exec(line)[1]);
			}
			const r = {
				// With a loss, the last receipt is not that of the last client: no figure.
				delivered, lost: clients - delivered, lastMs: delivered === clients ? (lastNs - t0) / 1e6 : null, p50: median(results.map(x => x.window.p50_ms)), writeMs,
				genBound: results.some(x => x.check.client_cpu_pct >= 90)
			};
			log(`${impl}${pin ? "" : ` (${ioThreads} write thread(s), unpinned)`} one event to ${clients}: last received after ${r.lastMs.toFixed(2)} ms, written in ${writeMs == null ? "n/a" : writeMs.toFixed(2)} ms, lost ${r.lost}`);
			reps.push(r);
			await sleep(300); // deliberate gap between the events
		}
		await Promise.all(lcs.map(lc => lc.stop()));
	} finally {
		await env.stop();
	}
	return {
		clients: SIZES.one, reps, lastMs: reps.every(r => r.lastMs != null) ? median(reps.map(r => r.lastMs)) : null, writeMs: reps.every(r => r.writeMs != null) ? median(reps.map(r => r.writeMs)) : null,
		lost: reps.reduce((a, r) => a + r.lost, 0), genBound: reps.some(r => r.genBound)
	};
}

/**
 * g: the product's time to write one event to N clients with gateway.ioThreads 1 and 2, nothing
 * pinned (a second write thread needs the second core), each setting in turn several times.
 * Server-side write completion (emit_to_write), since the load client shares the cores.
 */
async function writeScaling(impl) {
	if (impl !== "product") return null;
	const rounds = QUICK ? 1 : 2;
	const runs = { 1: [], 2: [] };
	for (let round = 0; round < rounds; round++) {
		for (const ioThreads of [1, 2]) runs[ioThreads].push(await oneEvent(impl, { ioThreads, pin: false, niceClients: true }));
	}
	const writeMs = threads => median(runs[threads].flatMap(r => r.reps.map(x => x.writeMs)));
	const lastMs = threads => median(runs[threads].flatMap(r => r.reps.map(x => x.lastMs)));
	const result = {
		clients: SIZES.one, reps: runs[1].reduce((a, r) => a + r.reps.length, 0),
		one: { writeMs: writeMs(1), lastMs: lastMs(1) }, two: { writeMs: writeMs(2), lastMs: lastMs(2) },
		lost: [...runs[1], ...runs[2]].reduce((a, r) => a + r.lost, 0)
	};
	result.ratio = result.two.writeMs / result.one.writeMs;
	log(`product write scaling to ${SIZES.one}: 1 thread ${result.one.writeMs.toFixed(1)} ms, 2 threads ${result.two.writeMs.toFixed(1)} ms (${result.ratio.toFixed(2)}x), last receipt ${result.one.lastMs.toFixed(1)} vs ${result.two.lastMs.toFixed(1)} ms`);
	return result;
}

/** d: N users in personal rooms, notifications to random users at a fixed rate. */
async function personal(impl) {
	const env = await setUp(impl);
	try {
		const users = SIZES.personal;
		// User u is client u % PER_LOAD_CLIENT of load client u / PER_LOAD_CLIENT, where its room
		// is target u % PER_LOAD_CLIENT + 1.
		const local = u => (u % PER_LOAD_CLIENT) + 1;
		const dir = h.makeTempDir("compare-personal-");
		const lcs = await startClients(env, users, (first, n) => {
			const lines = [];
			for (let u = first; u < first + n; u++) lines.push([login(`p${u}`, "S1").cookies[0], `${local(u)},1,notification-change`].join("\t"));
			const planFile = path.join(dir, `plan-${first}.txt`);
			fs.writeFileSync(planFile, lines.join("\n") + "\n");
			return planFile;
		});
		await env.waitConnections(users);
		const seqs = new Array(users).fill(0);
		let state = 12345;
		const random = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 4294967296);
		const count = SIZES.personalRate * SIZES.personalS;
		await Promise.all(lcs.map(lc => lc.command("window", "RESULT window")));
		const t0 = await paced(SIZES.personalRate, count, () => {
			const u = Math.floor(random() * users);
			env.broker.broadcast("$broadcast.$notification.users", { data: { tenantId: "S1", users: [`p${u}`], message: `~${local(u)}~${seqs[u]++}~${now()}~` } });
		});
		const emitS = (now() - t0) / 1e9;
		// Each load client holds its own slice of the users: it is told the totals of its targets.
		slices(users).forEach(([first, n], k) => {
			for (let u = first; u < first + n; u++) if (seqs[u]) lcs[k].send(`total ${local(u)} ${seqs[u]}`);
		});
		const results = await Promise.all(lcs.map(lc => checkAndWindow(lc, 3000, 60000)));
		const delivered = results.reduce((a, r) => a + r.window.samples, 0);
		const r = {
			users, rate: SIZES.personalRate, count, achievedRate: count / emitS, delivered, lost: count - delivered,
			p50: Math.max(...results.map(x => x.window.p50_ms)), p99: Math.max(...results.map(x => x.window.p99_ms)), max: Math.max(...results.map(x => x.window.max_ms)),
			genBound: results.some(x => x.check.client_cpu_pct >= 90)
		};
		log(`${impl} personal rooms ${users} users, ${r.rate}/s: p50 ${r.p50} p99 ${r.p99} max ${r.max} ms, lost ${r.lost}`);
		await Promise.all(lcs.map(lc => lc.stop()));
		return r;
	} finally {
		await env.stop();
	}
}

/** One load-client --connect-bench run; resolves its `RESULT connects` line as an object. */
async function connectBench(env, clients, planFile, args = []) {
	const child = spawn(LOAD_CLIENT, ["--port", String(env.port), "--clients", String(clients), "--plan", planFile, "--connect-bench", "--concurrency", "512", "--timeout-s", "120", ...args], { stdio: ["ignore", "pipe", "pipe"] });
	h.track(child);
	if (env.pin) proc.pin(child.pid, 1);
	child.stderr.setEncoding("utf8");
	child.stderr.on("data", chunk => process.stderr.write(chunk.replace(/^(?=.)/gm, "  [load-client] ")));
	const { next } = h.resultLines(child, { name: "load-client --connect-bench" });
	const line = await h.withTimeout(next("RESULT connects"), 150000, "connect bench");
	await new Promise(r => (child.exitCode !== null ? r() : child.once("exit", r)));
	return h.parseResult(line);
}

/** e: connects per second with auth, per transport: cold cache (logins the server has not seen)
 * then warm (the same logins again, within auth.cacheTtl). */
async function connects(impl) {
	const env = await setUp(impl);
	try {
		const clients = SIZES.connects;
		const dir = h.makeTempDir("compare-connects-");
		const plans = {};
		for (const transport of ["websocket", "polling"]) {
			const lines = [];
			for (let i = 0; i < clients; i++) lines.push(login(`c${i}`, `S${1 + (i % 5)}`).cookies[0]);
			plans[transport] = path.join(dir, `plan-${transport}.txt`);
			fs.writeFileSync(plans[transport], lines.join("\n") + "\n");
		}
		const out = {};
		for (const round of ["cold", "warm", "polling-cold", "polling-warm"]) {
			const calls = env.authCalls.length;
			const polling = round.startsWith("polling");
			const r = await connectBench(env, clients, plans[polling ? "polling" : "websocket"], polling ? ["--polling-upgrade"] : []);
			r.authCalls = env.authCalls.length - calls;
			r.genBound = r.client_cpu_pct >= 90;
			log(`${impl} connects ${round}: ${r.per_s}/s (${r.connects} in ${r.seconds} s), p50 ${r.p50_ms} p99 ${r.p99_ms} ms, failed ${r.failed}, auth calls ${r.authCalls}, load client ${r.client_cpu_pct}% CPU`);
			out[round] = r;
			await env.waitConnections(0); // the load client reset them all
		}
		return out;
	} finally {
		await env.stop();
	}
}

// --- main --------------------------------------------------------------------------------------

async function main() {
	for (const impl of IMPLS) if (!["product", "baseline"].includes(impl)) throw new Error(`--impl ${IMPL}: product, baseline or both`);
	for (const f of ["steedos-socket", "load-client"]) {
		if (!fs.existsSync(path.join(h.BUILD_DIR, f))) throw new Error(`${path.join(h.BUILD_DIR, f)} missing: cmake --build build --target steedos-socket load-client`);
	}
	if (IMPLS.includes("baseline") && !fs.existsSync(path.join(__dirname, "baseline", "node_modules", "socket.io"))) {
		throw new Error("bench/baseline/node_modules missing: (cd bench/baseline && npm ci)");
	}
	proc.raisePriority(NICE, log);
	const started = Date.now();
	const meta = { command: process.env.BENCH_COMMAND || `node bench/compare.js ${process.argv.slice(2).join(" ")}`.trim(), machine: machineLine(), git: gitLine(), date: DATE, quick: QUICK, sizes: SIZES, pin: PIN && IO_THREADS === 1, ioThreads: IO_THREADS, impls: IMPLS };
	log(`${meta.git}; ${meta.machine}; pinning ${meta.pin ? "servers CPU 0, load clients CPU 1" : "off"}`);
	// The benchmark itself keeps about one core busy; more than that at the start is someone else.
	if (os.loadavg()[0] > 1) log(`WARN load average ${os.loadavg()[0].toFixed(2)} before the run: other jobs share the 2 cores, the figures will be noisy`);
	const results = {};
	const load = () => os.loadavg()[0].toFixed(2);
	for (const impl of IMPLS) results[impl] = { load: {} };
	const workloads = [["a", "idle", idleMemory], ["b", "fanout", fanout], ["c", "one", oneEvent], ["d", "personal", personal], ["e", "connects", connects], ["g", "writeScaling", writeScaling]];
	// Workload by workload, each implementation in turn: the two figures of a row are taken
	// minutes apart at most, under about the same load of the machine.
	for (const [letter, key, run] of workloads) {
		if (!ONLY.has(letter)) continue;
		for (const impl of IMPLS) {
			const r = results[impl];
			r.load[key] = load();
			log(`${impl}: workload ${letter} (${key}), load average ${r.load[key]}`);
			r[key] = await run(impl);
		}
	}
	meta.seconds = (Date.now() - started) / 1000;
	meta.loadEnd = os.loadavg().map(x => x.toFixed(2)).join(" ");
	meta.nice = os.getPriority(0);
	const markdown = report.markdown(meta, results);
	fs.mkdirSync(path.dirname(OUT), { recursive: true });
	fs.writeFileSync(`${OUT}.md`, markdown);
	fs.writeFileSync(`${OUT}.json`, JSON.stringify({ meta, results }, null, 1) + "\n");
	let chart = "";
	if (CHART) chart = report.chart(results, `${OUT}.png`);
	console.log(report.readmeTable(meta, results));
	log(`wrote ${OUT}.md, ${OUT}.json${chart ? `, ${chart}` : " (no chart)"}; ${Math.round(meta.seconds)} s`);
}

main().then(
	() => process.exit(0),
	err => {
		console.error(err.stack || err.message);
		process.exit(1);
	}
);
