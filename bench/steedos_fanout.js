"use strict";
// The Steedos fan-out over Redis against NATS, in one run (issue 15, "Run and measure"): a JS
// producer (moleculer 0.14) emits `$socket.emit` { eventName, eventParams } (no room: every socket,
// so no auth service is needed, gateway-contract.md §5) through the bus to the product binary
// build/steedos-socket, which delivers each event to N Socket.IO clients.
//
// For each transport: its own bus (nats-server / redis-server from Debian), its own steedos-socket
// node, a producer broker in this process and its own load client. Both setups are up at once and
// measured in turns (the order flips every round), so both see the same machine load; each figure is
// the median over the rounds.
//   - burst: K events emitted back to back; deliveries/s = N*K / (time from the first emit until
//     the client has received all N*K frames); p99 = 99th percentile over the N*K deliveries of
//     (receipt - emit) (queueing included);
//   - paced: P events one every --interval ms; p50/p99 of (receipt - emit) over the N*P deliveries,
//     the latency of a lightly loaded gateway;
//   - the product's CPU time per delivery in the burst (/proc/<pid>/task/*/schedstat).
// Clients: bench/load_client.cpp (build target `load-client`, one thread, epoll) in --no-control
// mode: it opens N WebSocket Socket.IO connections to the product, counts `42["bench",...]` frames
// and measures each frame's latency from the CLOCK_MONOTONIC stamp the producer puts in it
// (process.hrtime is CLOCK_MONOTONIC too). A socket.io-client load generator in Node would be the
// bottleneck on these 2 cores long before the gateway.
//
//   node bench/steedos_fanout.js [--clients 1000] [--events 300] [--paced 40] [--interval 10]
//                                [--rounds 5] [--transports nats,redis] [--subjects] [--no-pin]
//   node bench/steedos_fanout.js --metrics-cost [...]
// --metrics-cost: the cost of the Prometheus metrics instead: two NATS setups, one with the
// default configuration, scraped on /metrics every second as Prometheus would, and one with
// `metrics.enabled: false` (no endpoint, no histogram work); ratios metrics/none.
// Setup names (--transports): nats, redis, nats-nometrics (NATS with metrics disabled) and
// nats-recovery (NATS with `gateway.connectionStateRecovery: { store: "memory" }`: every event
// frame then carries its offset as a trailing argument, `42["bench",{...},"<offset>"]`, and is
// recorded in the node's history) and nats-jetstream (the `jetstream` store, on a nats-server of
// its own started with JetStream, `-js -sd <temp dir>`: every event is published to the stream and
// reaches the node's sockets through its consumer, the offset being the stream sequence); the
// setups are started in the order given (--transports nats-nometrics,nats swaps them).
// `--transports nats,nats-recovery,nats-jetstream` prints the ratios recovery/off (the memory
// store), jetstream/off and jetstream/memory, and the socket.stats `recovery` of both stores. For
// every NATS setup: nats-server's /varz in_msgs/out_msgs and in_bytes/out_bytes per event over the
// bursts, and nats-server's CPU per event (each setup has its own nats-server; the heartbeats of
// its two brokers, one each per 5 s, are included), then the same net of the setup's idle traffic
// (5 s without events after the setups are up, all at once) over the bursts' windows, and that
// idle traffic per second: the jetstream store's 1 s sweep of the sessions bucket is not per event.
// --subjects: after the rounds, one more burst per NATS setup with a `>` subscriber on its
// nats-server (a separate pass: the subscriber's copies would count in /varz), printing the
// messages per event by subject and reply subject, tokens after the first two (four for
// $JS.API) folded into `*` (the JetStream publish, its ack to an _INBOX, the consumer's delivery,
// the sessions bucket's reads).
// Every burst checks that the load client timed every delivery (its `"t":` stamp parser must
// still find the stamp ahead of a trailing offset).
//
//   node bench/steedos_fanout.js --restore [--store memory|jetstream] [--clients 1000] [--missed 100]
//                                [--history 20000] [--waves 3] [--subjects]
// --restore: connection state recovery at scale instead (one NATS setup with recovery on, the
// `memory` store or, with --store jetstream, the `jetstream` one on a nats-server -js; clients
// are socket.io-client 4.8 in this process, WebSocket only: the load client cannot send the
// pid/offset CONNECT; with pinning, this process on CPU 1). See restore() below.
// Pinning (unless --no-pin, with 2+ CPUs): steedos-socket nodes on CPU 0, load clients on CPU 1;
// the buses and this process float.
const path = require("path");
const fs = require("fs");
const os = require("os");
const { spawn } = require("child_process");
const h = require("../tests/interop/lib/harness");
const proc = require("./lib/proc");

function arg(name, fallback) {
	const i = process.argv.indexOf(`--${name}`);
	return i > 0 ? process.argv[i + 1] : fallback;
}
const CLIENTS = Number(arg("clients", 1000));
const EVENTS = Number(arg("events", 300));
const PACED = Number(arg("paced", 40));
const INTERVAL_MS = Number(arg("interval", 10));
const ROUNDS = Number(arg("rounds", 5));
const METRICS_COST = process.argv.includes("--metrics-cost");
const SUBJECTS = process.argv.includes("--subjects");
const RESTORE = process.argv.includes("--restore");
const MISSED = Number(arg("missed", 100));
const HISTORY = Number(arg("history", 20000));
const WAVES = Math.max(2, Number(arg("waves", 3)));
const STORE = String(arg("store", "memory"));
const KINDS = String(arg("transports", METRICS_COST ? "nats,nats-nometrics" : "nats,redis")).split(",");
const SCRAPE_MS = 1000;
const PIN = !process.argv.includes("--no-pin") && proc.canPin();
const NATS_SERVER = process.env.NATS_SERVER_BIN || "/usr/sbin/nats-server";
const LOAD_CLIENT = path.join(process.env.STEEDOS_BUILD_DIR || path.join(__dirname, "..", "build"), "load-client");

const sleep = ms => new Promise(r => setTimeout(r, ms));
const now = () => Number(process.hrtime.bigint()); // CLOCK_MONOTONIC ns (< 2^53 for ~100 days of uptime)

// CPU from /proc/<pid>/task/*/schedstat (ns, exact; /proc/<pid>/stat counts 10 ms ticks).
const cpuSeconds = pid => proc.cpuNs(pid) / 1e9;

function canConnect(port) {
	return new Promise(resolve => {
		const sock = require("net").connect(port, "127.0.0.1");
		sock.once("connect", () => (sock.destroy(), resolve(true)));
		sock.once("error", () => resolve(false));
	});
}

function pin(pid, cpu) {
	if (PIN) proc.pin(pid, cpu);
}

/** The load client in --no-control mode; `expect(total)` resolves its RESULT expect line as an object. */
async function startLoadClient(port) {
	if (!fs.existsSync(LOAD_CLIENT)) throw new Error(`${LOAD_CLIENT} missing: make -C build load-client`);
	const child = spawn(LOAD_CLIENT, ["--port", String(port), "--clients", String(CLIENTS), "--no-control",
		"--event", "bench", "--timeout-s", "60", "--concurrency", "256"], { stdio: ["pipe", "pipe", "inherit"] });
	pin(child.pid, 1);
	const { next } = h.resultLines(child, { name: "load-client" });
	await h.withTimeout(next("RESULT interactive ready"), 60000, "load clients connected");
	const parse = h.parseResult;
	return {
		pid: child.pid,
		async expect(total) {
			child.stdin.write(`expect ${total}\n`);
			await sleep(30); // the client reads the command before the first frame arrives
			return { result: next("RESULT expect").then(parse) };
		},
		async stop() {
			child.stdin.end("quit\n");
			const line = await h.withTimeout(next("RESULT check"), 10000, "load-client check").catch(() => "");
			await new Promise(r => (child.exitCode !== null ? r() : child.once("exit", r)));
			return line;
		}
	};
}

/** GET /metrics every SCRAPE_MS until stopped; counts the scrapes and their bytes. */
function startScraper(port) {
	const stats = { scrapes: 0, bytes: 0, failures: 0 };
	let timer = null;
	const scrape = () => {
		require("http").get({ host: "127.0.0.1", port, path: "/metrics", agent: false }, res => {
			res.on("data", chunk => (stats.bytes += chunk.length));
			res.on("end", () => (res.statusCode === 200 ? stats.scrapes++ : stats.failures++));
		}).on("error", () => stats.failures++);
		timer = setTimeout(scrape, SCRAPE_MS);
	};
	scrape();
	return { stats, stop: () => clearTimeout(timer) };
}

/**
 * A nats-server with JetStream (`-js`, its file store in a temporary directory removed at exit)
 * on free loopback ports, for the `nats-jetstream` setup: started here rather than through
 * harness.js startNats, which has no JetStream option on this branch. Resolves the same fields
 * the bench reads from a startNats handle: url, monitorPort, proc, stop().
 */
async function startJetStreamNats() {
	for (let attempt = 1; ; attempt++) {
		const port = await h.freePort();
		const monitorPort = await h.freePort();
		if (port === monitorPort) continue;
		const dir = h.makeTempDir("fanout-jetstream-");
		const logs = [];
		const child = h.track(spawn(NATS_SERVER, ["-a", "127.0.0.1", "-p", String(port), "-m", String(monitorPort), "-js", "-sd", dir],
			{ stdio: ["ignore", "pipe", "pipe"] }));
		for (const stream of [child.stdout, child.stderr]) stream.setEncoding("utf8"), stream.on("data", c => logs.push(c));
		const exited = () => child.exitCode !== null || child.signalCode !== null;
		try {
			// Ready once its monitor reports JetStream on (the client port opens after it).
			await h.waitFor(async () => {
				if (exited()) throw new Error(`nats-server -js exited: ${logs.join("")}`);
				if (!(await canConnect(port))) return false;
				const jsz = await (await fetch(`http://127.0.0.1:${monitorPort}/jsz`)).json().catch(() => ({}));
				return !!jsz.config;
			}, 10000, { what: `nats-server -js on port ${port}` });
		} catch (err) {
			if (!exited()) child.kill("SIGKILL");
			if (attempt >= 3) throw err; // another process took a port: new ports, twice more
			continue;
		}
		return {
			url: `nats://127.0.0.1:${port}`, port, monitorPort, proc: child, logs,
			async stop() {
				if (exited()) return;
				child.kill("SIGTERM");
				await h.waitExit(child, 5000).catch(() => (child.kill("SIGKILL"), h.waitExit(child, 5000)));
			}
		};
	}
}

/** gateway.connectionStateRecovery of a setup: off, the memory store or the jetstream store. */
function recoveryOf(kind) {
	if (kind.endsWith("-recovery")) return { store: "memory" };
	if (kind.endsWith("-jetstream")) return { store: "jetstream" };
	return false;
}

async function setUp(kind) {
	const bus = kind.startsWith("redis") ? await h.startRedis() : kind.endsWith("-jetstream") ? await startJetStreamNats() : await h.startNats();
	const metricsEnabled = !kind.endsWith("-nometrics");
	const recovery = recoveryOf(kind);
	const port = await h.freePort();
	const nodeID = `fanout-${kind}`;
	const node = await h.startCppNode({
		binary: "steedos-socket",
		transporter: bus.url,
		nodeID,
		logLevel: "warn",
		heartbeatInterval: 5,
		heartbeatTimeout: 15,
		gatewayPort: port,
		// All clients connect at once: no handshake rate limit (gateway.maxHandshakesPerSecond).
		extra: { serviceName: "socket", gateway: { host: "127.0.0.1", port, maxHandshakesPerSecond: 0, connectionStateRecovery: recovery },
			metrics: { enabled: metricsEnabled } }
	});
	pin(node.pid, 0);
	process.stderr.write(`${kind}: steedos-socket pid ${node.pid}, gateway port ${port}, bus ${bus.url}\n`);
	const producer = h.createBroker("0.14", { transporter: bus.url, nodeID: `producer-${kind}`, heartbeatInterval: 5, heartbeatTimeout: 15 });
	await producer.start();
	await h.waitForRemoteNode(producer, nodeID, ["socket.stats"], 15000);
	await h.waitFor(() => canConnect(port), 10000, { what: `gateway port ${port}` });
	const client = await startLoadClient(port);
	const scraper = METRICS_COST && metricsEnabled ? startScraper(port) : null;
	const nats = kind.startsWith("nats") ? { in: 0, out: 0, inBytes: 0, outBytes: 0, cpuNs: 0, events: 0, windowNs: 0, idle: null } : null;
	const state = { kind, bus, node, producer, client, scraper, received: 0, nats };
	await burst(state, 20); // warm-up (and proof that events reach every client)
	return state;
}

/** K events back to back; resolves { rate, p50, p99, max, cpuUs }. */
async function burst(s, k) {
	s.received += CLIENTS * k;
	const { result } = await s.client.expect(s.received);
	const varz0 = s.nats ? await varz(s.bus) : null;
	const busCpu0 = s.nats ? proc.cpuNs(s.bus.proc.pid) : 0;
	const window0 = now();
	const cpu0 = cpuSeconds(s.node.pid);
	const t0 = now();
	for (let i = 0; i < k; i++) {
		s.producer.emit("$socket.emit", { eventName: "bench", eventParams: { t: now(), i } });
		if (i % 50 === 49) await new Promise(r => setImmediate(r)); // let the transporter flush
	}
	const r = await h.withTimeout(result, 70000, `${s.kind} burst`);
	const cpu = cpuSeconds(s.node.pid) - cpu0;
	if (s.nats) {
		// Deliberate delay: the jetstream store's last publish acks may trail the last delivery.
		await sleep(100);
		const varz1 = await varz(s.bus);
		s.nats.cpuNs += proc.cpuNs(s.bus.proc.pid) - busCpu0;
		s.nats.windowNs += now() - window0;
		for (const f of ["in", "out", "inBytes", "outBytes"]) s.nats[f] += varz1[f] - varz0[f];
		s.nats.events += k;
	}
	// Every delivery timed: the stamp was found (with recovery the frame ends with an offset).
	if (r.samples !== CLIENTS * k) throw new Error(`${s.kind} burst: ${r.samples} of ${CLIENTS * k} deliveries timed`);
	return { rate: (CLIENTS * k) / ((r.done_ns - t0) / 1e9), p50: r.p50_ms, p99: r.p99_ms, max: r.max_ms, cpuUs: (cpu * 1e6) / (CLIENTS * k) };
}

/**
 * nats-server's message counters (/varz): every publish it received from a client, every copy it
 * sent to one, and their payload bytes (JetStream's own internal subscriptions are not clients).
 */
async function varz(nats) {
	const v = await (await fetch(`http://127.0.0.1:${nats.monitorPort}/varz`)).json();
	return { in: v.in_msgs, out: v.out_msgs, inBytes: v.in_bytes, outBytes: v.out_bytes };
}

/**
 * Every NATS setup's traffic while no event is emitted, over `ms` (all setups at once): per
 * second, what is not per event (heartbeats; the jetstream store's 1 s sweep of the sessions
 * bucket, which reads up to 256 records per step and rewrites held ones). Stored in s.nats.idle.
 */
async function measureIdle(setups, ms) {
	const nats = setups.filter(s => s.nats);
	const before = await Promise.all(nats.map(s => varz(s.bus)));
	const cpu0 = nats.map(s => proc.cpuNs(s.bus.proc.pid));
	const t0 = now();
	await sleep(ms); // deliberate: the idle window
	const after = await Promise.all(nats.map(s => varz(s.bus)));
	const seconds = (now() - t0) / 1e9;
	nats.forEach((s, i) => {
		s.nats.idle = { cpuNs: (proc.cpuNs(s.bus.proc.pid) - cpu0[i]) / seconds };
		for (const f of ["in", "out", "inBytes", "outBytes"]) s.nats.idle[f] = (after[i][f] - before[i][f]) / seconds;
	});
}

/**
 * One burst of k events on setup `s` with a `>` subscriber on its nats-server: messages per event
 * by "subject <- reply" class (status messages, heartbeats and flow control, by their code).
 */
async function subjectsPerEvent(s, k) {
	const counter = await countSubjects(s.bus.url);
	await burst(s, k);
	await sleep(300); // deliberate: the last acks and flow-control replies of the burst
	return counter.stop(k);
}

/**
 * A `>` subscriber on a nats-server counting messages by "subject <- reply" class (tokens after
 * the first two, four for $JS.API, folded into `*`; status messages by code). `take(per)`: the
 * counts so far, each divided by `per`, as one line, and starts over; `stop(per)`: the same,
 * then closes.
 */
async function countSubjects(url) {
	const { connect } = require(require.resolve("nats", { paths: [path.join(__dirname, "..", "tests", "interop")] }));
	// JetStream API subjects keep their verb ($JS.API.CONSUMER.CREATE.*), inboxes lose their id.
	const fold = subject => {
		if (!subject) return "-";
		const keep = subject.startsWith("$JS.API.") ? 4 : 2;
		return subject.split(".").map((t, i) => (i < keep ? t : "*")).join(".").replace(/^(_INBOX)\.[^.]+/, "$1.*");
	};
	const nc = await connect({ servers: url });
	let counts = new Map();
	nc.subscribe(">", {
		callback: (err, m) => {
			if (err) return;
			const status = m.headers && m.headers.code ? ` status ${m.headers.code}` : "";
			const key = `${fold(m.subject)} <- ${fold(m.reply)}${status}`;
			counts.set(key, (counts.get(key) || 0) + 1);
		}
	});
	await nc.flush();
	const take = per => {
		const line = [...counts].sort((a, b) => b[1] - a[1]).map(([key, n]) => `${key}: ${(n / per).toFixed(3)}`).join("; ");
		counts = new Map();
		return line;
	};
	return { take, async stop(per) { await nc.flush(); const line = take(per); await nc.close(); return line; } };
}

/** socket.stats of the setup's node (through its producer). */
const statsOf = s => s.producer.call("socket.stats", {}, { nodeID: `fanout-${s.kind}`, timeout: 5000 });

/** P events one every INTERVAL_MS; resolves { p50, p99, max }. */
async function paced(s, p) {
	s.received += CLIENTS * p;
	const { result } = await s.client.expect(s.received);
	for (let i = 0; i < p; i++) {
		s.producer.emit("$socket.emit", { eventName: "bench", eventParams: { t: now(), i } });
		await sleep(INTERVAL_MS);
	}
	const r = await h.withTimeout(result, 70000, `${s.kind} paced`);
	return { p50: r.p50_ms, p99: r.p99_ms, max: r.max_ms };
}

async function tearDown(s) {
	if (s.scraper) s.scraper.stop();
	const check = await s.client.stop();
	await h.stopBrokers(s.producer);
	await h.stopCppNodes(s.node);
	await s.bus.stop();
	return check;
}

const median = values => {
	const v = values.slice().sort((a, b) => a - b);
	return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};

async function main() {
	const loadBefore = os.loadavg().map(x => x.toFixed(2)).join(" ");
	const setups = [];
	for (const kind of KINDS) setups.push(await setUp(kind));
	await measureIdle(setups, 5000);
	const runs = Object.fromEntries(KINDS.map(k => [k, { burst: [], paced: [] }]));
	for (let round = 0; round < ROUNDS; round++) {
		const order = round % 2 === 0 ? setups : setups.slice().reverse();
		for (const s of order) {
			await sleep(200);
			runs[s.kind].burst.push(await burst(s, EVENTS));
		}
		for (const s of order) {
			await sleep(200);
			runs[s.kind].paced.push(await paced(s, PACED));
		}
		process.stderr.write(`round ${round + 1}/${ROUNDS}: ` + KINDS.map(k => {
			const b = runs[k].burst[round];
			return `${k} ${Math.round(b.rate)}/s p99 ${b.p99.toFixed(1)} ms`;
		}).join(", ") + "\n");
	}
	// Per event over the bursts, then the same net of the idle traffic of the bursts' windows.
	const natsLines = setups.filter(s => s.nats).map(s => {
		const n = s.nats, windowS = n.windowNs / 1e9;
		const per = f => n[f] / n.events;
		const net = f => (n[f] - n.idle[f] * windowS) / n.events;
		const line = f => `${f("in").toFixed(3)} in, ${f("out").toFixed(3)} out per event; ` +
			`${f("inBytes").toFixed(0)} B in, ${f("outBytes").toFixed(0)} B out per event; nats-server CPU ${(f("cpuNs") / 1e3).toFixed(1)} us per event`;
		return `${s.kind}: ${line(per)} (${n.events} events in ${windowS.toFixed(2)} s of bursts); net of idle: ${line(net)}; ` +
			`idle: ${n.idle.in.toFixed(1)} in, ${n.idle.out.toFixed(1)} out, ${Math.round(n.idle.inBytes)} B in, ${Math.round(n.idle.outBytes)} B out per second, ` +
			`nats-server CPU ${(n.idle.cpuNs / 1e7).toFixed(2)} %`;
	});
	const subjectLines = [];
	if (SUBJECTS) for (const s of setups.filter(x => x.nats)) subjectLines.push(`${s.kind}: ${await subjectsPerEvent(s, EVENTS)}`);
	const recoveryLines = [];
	for (const s of setups.filter(x => recoveryOf(x.kind))) recoveryLines.push(`${s.kind}: ${JSON.stringify((await statsOf(s)).recovery)}`);
	const checks = [];
	for (const s of setups) checks.push(`${s.kind}: ${await tearDown(s)}`);

	const res = {};
	for (const k of KINDS) {
		const pick = (phase, f) => median(runs[k][phase].map(r => r[f]));
		res[k] = { rate: pick("burst", "rate"), bp50: pick("burst", "p50"), bp99: pick("burst", "p99"), cpuUs: pick("burst", "cpuUs"),
			pp50: pick("paced", "p50"), pp99: pick("paced", "p99"), pmax: pick("paced", "max") };
	}
	const fmt = (n, d = 0, w = 10) => n.toFixed(d).padStart(w);
	console.log(`Steedos fan-out: moleculer 0.14 producer -> $socket.emit (global) -> build/steedos-socket -> ${CLIENTS} Socket.IO clients (bench/load_client.cpp)`);
	console.log(`burst: ${EVENTS} events back to back (${CLIENTS * EVENTS} deliveries); paced: ${PACED} events, one every ${INTERVAL_MS} ms; median of ${ROUNDS} rounds, transports in turns`);
	console.log("setup          | deliveries/s | burst p50 ms | burst p99 ms | cpu us/delivery | paced p50 ms | paced p99 ms | paced max ms");
	for (const k of KINDS) {
		const r = res[k];
		console.log(`${k.padEnd(14)} |${fmt(r.rate, 0, 13)} |${fmt(r.bp50, 2, 13)} |${fmt(r.bp99, 2, 13)} |${fmt(r.cpuUs, 3, 16)} |` +
			`${fmt(r.pp50, 2, 13)} |${fmt(r.pp99, 2, 13)} |${fmt(r.pmax, 2, 13)}`);
	}
	if (res.nats && res["nats-nometrics"]) {
		const q = (a, b) => (a / b).toFixed(3);
		const m = res.nats, n = res["nats-nometrics"];
		console.log(`ratio metrics/none: deliveries/s ${q(m.rate, n.rate)}x, burst p99 ${q(m.bp99, n.bp99)}x, ` +
			`paced p50 ${q(m.pp50, n.pp50)}x, paced p99 ${q(m.pp99, n.pp99)}x (latency: lower is better), ` +
			`CPU per delivery ${q(m.cpuUs, n.cpuUs)}x`);
		const sc = setups.find(s => s.scraper).scraper.stats;
		console.log(`scrapes of /metrics during the run: ${sc.scrapes} (${Math.round(sc.bytes / Math.max(sc.scrapes, 1))} bytes each), failures ${sc.failures}`);
	}
	if (res.redis && res.nats) {
		const q = (a, b) => (a / b).toFixed(2);
		console.log(`ratio Redis/NATS: deliveries/s ${q(res.redis.rate, res.nats.rate)}x, burst p99 ${q(res.redis.bp99, res.nats.bp99)}x, ` +
			`paced p50 ${q(res.redis.pp50, res.nats.pp50)}x, paced p99 ${q(res.redis.pp99, res.nats.pp99)}x (latency: lower is better), ` +
			`CPU per delivery ${q(res.redis.cpuUs, res.nats.cpuUs)}x`);
	}
	const recoveryRatio = (label, on, off) => {
		if (!on || !off) return;
		const q = (a, b) => (a / b).toFixed(3);
		console.log(`ratio ${label}: deliveries/s ${q(on.rate, off.rate)}x, burst p99 ${q(on.bp99, off.bp99)}x, ` +
			`paced p50 ${q(on.pp50, off.pp50)}x, paced p99 ${q(on.pp99, off.pp99)}x (latency: lower is better), ` +
			`CPU per delivery ${q(on.cpuUs, off.cpuUs)}x`);
	};
	recoveryRatio("recovery/off", res["nats-recovery"], res.nats); // the memory store against recovery off
	recoveryRatio("jetstream/off", res["nats-jetstream"], res.nats);
	recoveryRatio("jetstream/memory", res["nats-jetstream"], res["nats-recovery"]);
	for (const l of natsLines) console.log(`NATS msgs (/varz, over every burst) ${l}`);
	for (const l of subjectLines) console.log(`NATS msgs per event by subject (one burst of ${EVENTS} with a \`>\` subscriber) ${l}`);
	for (const l of recoveryLines) console.log(`socket.stats recovery ${l}`);
	console.log(`load average before: ${loadBefore}, after: ${os.loadavg().map(x => x.toFixed(2)).join(" ")}; ${os.cpus().length} CPUs; pinning ${PIN ? "node CPU 0, clients CPU 1" : "off"}`);
	for (const c of checks) console.log(`check ${c}`);
}

// --restore: N socket.io-client clients (WebSocket only, reconnection off so that the bench says
// when they come back) on one steedos-socket node with connectionStateRecovery: { store: "memory" }
// (--store), all dropped at once (each closes its transport: a recoverable "transport close" to the
// server), K events emitted to everyone while they are away, then every client reconnects with
// its pid and last offset (socket.io-client sends them itself). Measured: the time from the
// reconnects until every client has every missed event; each client must be `recovered`, keep
// its id and have the K events exactly once, in order (checked after one more live event, which
// must reach every client after its replay). Memory: VmRSS of the node (4 KiB pages, so
// deltas over 1,000s of objects):
//   - per kept session: --waves W (>= 2) waves of N, each connected, given an offset and dropped
//     (kept); a later wave's sockets reuse what the earlier ones freed, so the RSS growth over
//     waves 2..W, / N, is what a kept session holds, without the allocator's retained memory of
//     closed sockets; the last wave is the one restored;
//   - per recorded packet: --history H events emitted while nobody is connected (recorded, sent to
//     nobody), RSS delta / the store's packet count delta (socket.stats recovery.packets).
// The store has no byte accounting of its own (counts only: sessions, packets, evictions), so
// its counts are the comparison. NATS: /varz in_msgs/out_msgs per missed event, and msgs and
// bytes per restored session over the restores.
//
// --subjects: a `>` subscriber on nats-server counts the messages by subject while the missed
// events are emitted and during the restores (a probe run: it adds to nats-server's work).
// --store jetstream: the same on the `jetstream` store. The history is then the JetStream stream in
// nats-server, not the node's: "recorded" means stored in the stream (its message count on
// nats-server's /jsz), the node's RSS per streamed event is what the node keeps of one (no
// packet), and the stream's bytes per message are printed beside it; kept sessions are KV
// records, so the node's RSS per kept session is what it still holds of one. nats-server's CPU
// is printed for both stores (a jetstream restore reads the KV record and the stream).
async function restore() {
	const { io } = require(require.resolve("socket.io-client", { paths: [path.join(__dirname, "..", "tests", "interop")] }));
	const jetstream = STORE === "jetstream";
	if (!jetstream && STORE !== "memory") throw new Error(`--store must be memory or jetstream, not ${STORE}`);
	const nats = jetstream ? await startJetStreamNats() : await h.startNats();
	const port = await h.freePort();
	const nodeID = `restore-nats-${STORE}`;
	const node = await h.startCppNode({
		binary: "steedos-socket", transporter: nats.url, nodeID, logLevel: "warn", heartbeatInterval: 5, heartbeatTimeout: 15, gatewayPort: port,
		extra: { serviceName: "socket", gateway: { host: "127.0.0.1", port, maxHandshakesPerSecond: 0, connectionStateRecovery: { store: STORE } } }
	});
	pin(node.pid, 0);
	if (PIN) proc.pin(process.pid, 1); // the clients (this process) on the other CPU
	const producer = h.createBroker("0.14", { transporter: nats.url, nodeID: "producer-restore", heartbeatInterval: 5, heartbeatTimeout: 15 });
	await producer.start();
	await h.waitForRemoteNode(producer, nodeID, ["socket.stats"], 15000);
	await h.waitFor(() => canConnect(port), 10000, { what: `gateway port ${port}` });
	let statsCalls = 0; // each is 2 messages in and 2 out at nats-server (request, response)
	const stats = () => (statsCalls++, producer.call("socket.stats", {}, { nodeID, timeout: 5000 }));
	const rss = () => proc.rssBytes(node.pid);
	const log = line => process.stderr.write(`restore: ${line}\n`);

	// Deliveries of run `r` counted as they arrive: done(r, total) resolves at the total's arrival.
	const counted = new Map();
	const done = (r, total) => new Promise(resolve => counted.set(r, { left: total, resolve }));
	const onBench = (s, p) => {
		s.got.push(p);
		const c = counted.get(p.r);
		if (c && --c.left === 0) c.resolve(now());
	};
	async function connectWave(n) {
		const clients = [];
		for (let i = 0; i < n; i += 100) { // 100 handshakes in flight
			const batch = [];
			for (let j = i; j < Math.min(n, i + 100); j++) {
				const s = io(`http://127.0.0.1:${port}`, { transports: ["websocket"], reconnection: false, forceNew: true });
				s.got = [];
				s.on("bench", p => onBench(s, p));
				batch.push(new Promise((resolve, reject) => (s.once("connect", resolve), s.once("connect_error", reject))));
				clients.push(s);
			}
			await h.withTimeout(Promise.all(batch), 60000, "clients connect");
		}
		return clients;
	}
	let run = 0;
	/** k events of a new run to everyone; resolves the run number. */
	async function emit(k) {
		const r = ++run;
		for (let i = 0; i < k; i++) {
			producer.emit("$socket.emit", { eventName: "bench", eventParams: { r, i, t: now() } });
			if (i % 50 === 49) await new Promise(res => setImmediate(res)); // let the transporter flush
		}
		return r;
	}
	/** One event to `clients`, awaited by each (it gives each client an offset). */
	async function live(clients) {
		const arrived = done(run + 1, clients.length);
		await emit(1);
		await h.withTimeout(arrived, 30000, "a live event reaches every client");
	}
	// The memory store counts its kept sessions; both stores count the sockets they kept (`kept`).
	async function drop(clients) {
		const kept = (await stats()).recovery;
		for (const s of clients) s.io.engine.close();
		await h.waitFor(async () => {
			const st = await stats();
			const all = jetstream ? st.recovery.kept === undefined || st.recovery.kept >= kept.kept + clients.length
				: st.recovery.sessions === kept.sessions + clients.length;
			return all && st.connections.total === 0;
		}, 30000, { what: `the node keeps ${clients.length} dropped sockets` });
	}
	/** The stream's state on nats-server (/jsz): { messages, bytes } of the history stream. */
	async function streamState() {
		const jsz = await (await fetch(`http://127.0.0.1:${nats.monitorPort}/jsz?streams=true`)).json();
		const streams = (jsz.account_details || []).flatMap(a => a.stream_detail || []);
		const history = streams.find(x => x.name === "STEEDOS_SOCKET_HISTORY") || { state: { messages: 0, bytes: 0 } };
		return history.state;
	}
	const recordedPackets = async () => (jetstream ? (await streamState()).messages : (await stats()).recovery.packets);
	async function waitRecorded(count) {
		await h.waitFor(async () => (await recordedPackets()) >= count, 60000, { what: `${count} packets recorded` });
	}

	const mem = { base: rss() };
	log(`node pid ${node.pid}, gateway port ${port}`);
	const wave1 = await connectWave(CLIENTS);
	await live(wave1);
	mem.connected1 = rss();
	await drop(wave1);
	mem.kept1 = rss();
	log(`wave 1: ${CLIENTS} connected, dropped, kept`);

	const p0 = await recordedPackets();
	await emit(HISTORY);
	await waitRecorded(p0 + HISTORY);
	const p1 = await recordedPackets();
	mem.history = rss();
	const stream = jetstream ? await streamState() : null;
	log(`history: ${p1 - p0} packets recorded`);

	// Further waves of N, each connected and dropped; the growth of RSS per wave is what N more
	// kept sessions hold (the wave's closed sockets are freed; the next wave reuses them).
	// Each wave also records packets (the `connection-init` sent to each new socket, the live
	// event): their share, at the per-packet figure above, is taken out of the net figure.
	const perPacket = (mem.history - mem.kept1) / (p1 - p0);
	const keptGrowth = [];
	const earlier = [wave1];
	let wave2 = null;
	let ids = null;
	for (let w = 2; w <= WAVES; w++) {
		const before = rss();
		const packetsBefore = await recordedPackets();
		const wave = await connectWave(CLIENTS);
		await live(wave);
		if (w === WAVES) ids = wave.map(s => s.id);
		await drop(wave);
		const growth = { bytes: rss() - before, packets: (await recordedPackets()) - packetsBefore };
		keptGrowth.push(growth);
		log(`wave ${w}: ${CLIENTS} connected, dropped, kept (RSS +${growth.bytes} B, ${growth.packets} packets recorded)`);
		if (w < WAVES) earlier.push(wave);
		else wave2 = wave;
	}

	// K events while wave 2 is away; every one recorded before the reconnects start.
	const p2 = await recordedPackets();
	const counter = SUBJECTS ? await countSubjects(nats.url) : null; // a probe run: it adds to nats-server's work
	const v0 = await varz(nats);
	const calls0 = statsCalls;
	const missedRun = await emit(MISSED);
	await waitRecorded(p2 + MISSED);
	const v1 = await varz(nats);
	const bus = { in: v1.in - v0.in - 2 * (statsCalls - calls0), out: v1.out - v0.out - 2 * (statsCalls - calls0) };
	const before = (await stats()).recovery;
	const missedSubjects = counter ? counter.take(MISSED) : "";
	if (wave2.some(s => s.got.some(p => p.r === missedRun))) throw new Error("a client got a missed event while away");

	const all = done(missedRun, CLIENTS * MISSED);
	const reconnected = Promise.all(wave2.map(s => new Promise(resolve => s.once("connect", () => resolve(now())))));
	const busCpu0 = proc.cpuNs(nats.proc.pid);
	const cpu0 = cpuSeconds(node.pid);
	const clientCpu0 = process.cpuUsage();
	const rv0 = await varz(nats);
	const t0 = now();
	for (const s of wave2) s.connect();
	const tConnected = Math.max(...(await h.withTimeout(reconnected, 120000, "every client reconnects")));
	const tAll = await h.withTimeout(all, 120000, "every missed event arrives");
	const cpu = cpuSeconds(node.pid) - cpu0;
	const busCpu = (proc.cpuNs(nats.proc.pid) - busCpu0) / 1e9;
	const clientCpu = process.cpuUsage(clientCpu0);
	const clientPct = (100 * (clientCpu.user + clientCpu.system) * 1e3) / (tAll - t0);
	await sleep(300); // deliberate: the restores' last KV deletes and consumer deletes
	const rv1 = await varz(nats);
	const restoreSubjects = counter ? await counter.stop(CLIENTS) : "";
	await live(wave2); // arrives after each replay: any duplicate of it has arrived by now
	const after = (await stats()).recovery;

	const check = { notRecovered: 0, otherId: 0, wrong: 0 };
	wave2.forEach((s, k) => {
		if (!s.recovered) check.notRecovered++;
		if (s.id !== ids[k]) check.otherId++;
		const got = s.got.filter(p => p.r === missedRun).map(p => p.i);
		if (got.length !== MISSED || got.some((i, n) => i !== n)) {
			if (++check.wrong <= 3) log(`client ${k}: got ${got.length} of ${MISSED}: ${got.slice(0, 12).join(",")}...`);
		}
	});
	// For comparison: wave 1's clients connect anew (socket.io-client's private `_pid` cleared, so
	// the CONNECT carries no pid/offset): a fresh connect of N, timed the same way.
	const fresh = Promise.all(wave1.map(s => new Promise(resolve => s.once("connect", () => resolve(now())))));
	const freshCpu0 = cpuSeconds(node.pid);
	const freshBusCpu0 = proc.cpuNs(nats.proc.pid);
	const freshClientCpu0 = process.cpuUsage();
	const f0 = now();
	for (const s of wave1) (s._pid = undefined), s.connect();
	const tFresh = Math.max(...(await h.withTimeout(fresh, 120000, "wave 1 connects anew")));
	const freshCpu = cpuSeconds(node.pid) - freshCpu0;
	const freshBusCpu = (proc.cpuNs(nats.proc.pid) - freshBusCpu0) / 1e9;
	const freshClient = process.cpuUsage(freshClientCpu0);
	const freshRecovered = wave1.filter(s => s.recovered).length;
	for (const s of [...earlier.flat(), ...wave2]) s.close();
	await h.stopBrokers(producer);
	await h.stopCppNodes(node);
	await nats.stop();

	const ms = ns => (ns / 1e6).toFixed(1);
	const per = (bytes, n) => `${Math.round(bytes / n)} B`;
	console.log(`Connection state recovery at scale: build/steedos-socket (connectionStateRecovery: { store: "${STORE}" }), ${CLIENTS} socket.io-client 4.8 clients (WebSocket, in this process)`);
	console.log(`${CLIENTS} transports closed at once, ${MISSED} events to everyone while away, then all reconnect with pid + offset`);
	console.log(`restore: every client reconnected after ${ms(tConnected - t0)} ms; every missed event delivered after ${ms(tAll - t0)} ms ` +
		`(${Math.round((CLIENTS * MISSED) / ((tAll - t0) / 1e9))} replayed deliveries/s); node CPU ${(cpu * 1e3).toFixed(0)} ms = ` +
		`${((cpu * 1e6) / CLIENTS).toFixed(0)} us per restored session, ${((cpu * 1e6) / (CLIENTS * MISSED)).toFixed(2)} us per replayed packet; ` +
		`nats-server CPU ${(busCpu * 1e3).toFixed(0)} ms = ${((busCpu * 1e6) / CLIENTS).toFixed(0)} us per restored session; ` +
		`the clients (this process, one thread) used ${clientPct.toFixed(0)} % of a core meanwhile (near 100 %: the clients set the pace)`);
	console.log(`for comparison, ${CLIENTS} fresh connects (no pid): all connected after ${ms(tFresh - f0)} ms; node CPU ${(freshCpu * 1e3).toFixed(0)} ms = ` +
		`${((freshCpu * 1e6) / CLIENTS).toFixed(0)} us per connect, nats-server ${((freshBusCpu * 1e6) / CLIENTS).toFixed(0)} us per connect; clients ${((100 * (freshClient.user + freshClient.system) * 1e3) / (tFresh - f0)).toFixed(0)} % of a core; ${freshRecovered} recovered (must be 0)`);
	console.log(`check: ${CLIENTS - check.notRecovered} of ${CLIENTS} recovered, ${check.otherId} with another id, ${check.wrong} without exactly the ${MISSED} missed events in order; ` +
		`store: recovered +${after.recovered - before.recovered}, replayed +${after.replayed - before.replayed}, unknown +${after.unknown - before.unknown}, ` +
		`evictedPackets ${after.evictedPackets}, evictedSessions ${after.evictedSessions}` +
		(jetstream ? `; jetstream counters at the end ${JSON.stringify(after.jetstream)}` : ""));
	console.log(`NATS msgs (/varz) per missed event: ${(bus.in / MISSED).toFixed(3)} in, ${(bus.out / MISSED).toFixed(3)} out ` +
		`(the bench's own socket.stats polls subtracted; heartbeats, one per broker per 5 s, included); ` +
		`per restored session, over the restores: ${((rv1.in - rv0.in) / CLIENTS).toFixed(2)} in, ${((rv1.out - rv0.out) / CLIENTS).toFixed(2)} out, ` +
		`${Math.round((rv1.inBytes - rv0.inBytes) / CLIENTS)} B in, ${Math.round((rv1.outBytes - rv0.outBytes) / CLIENTS)} B out`);
	if (counter) {
		console.log(`NATS msgs per missed event by subject (\`>\` subscriber, --subjects): ${missedSubjects}`);
		console.log(`NATS msgs per restored session by subject (\`>\` subscriber, --subjects): ${restoreSubjects}`);
	}
	console.log(`node VmRSS: idle ${(mem.base / 2 ** 20).toFixed(1)} MiB; per connected client ${per(mem.connected1 - mem.base, CLIENTS)} (wave 1); ` +
		`per kept session ${keptGrowth.map(g => per(g.bytes - g.packets * perPacket, CLIENTS)).join(", ")} net ` +
		`(${keptGrowth.map(g => per(g.bytes, CLIENTS)).join(", ")} gross, waves 2..${WAVES}: RSS growth per wave of ${CLIENTS} kept, ` +
		`net of its ${keptGrowth.map(g => g.packets).join(", ")} recorded packets), ` +
		`${per(mem.kept1 - mem.base, CLIENTS)} (wave 1, an upper bound: its closed sockets' memory stays with the allocator); ` +
		(jetstream ? `per streamed event ${Math.round(perPacket)} B (${p1 - p0} events, the stream's count on nats-server; the node keeps the packets it sent ` +
			`for restores, up to maxPackets: socket.stats recovery.packets ${after.packets}); `
			: `per recorded packet ${Math.round(perPacket)} B (${p1 - p0} packets, the store's count); `) +
		(jetstream ? `stream on nats-server after the history: ${stream.messages} messages, ${Math.round(stream.bytes / Math.max(stream.messages, 1))} B each`
			: `store at the end: ${after.sessions} sessions, ${after.packets} packets`));
	console.log(`load average ${os.loadavg().map(x => x.toFixed(2)).join(" ")}; ${os.cpus().length} CPUs; pinning ${PIN ? "node CPU 0, clients CPU 1" : "off"}`);
	if (check.notRecovered || check.otherId || check.wrong || freshRecovered) throw new Error("restore check failed");
}

(RESTORE ? restore() : main()).then(
	() => process.exit(0),
	err => {
		console.error(err);
		process.exit(1);
	}
);
