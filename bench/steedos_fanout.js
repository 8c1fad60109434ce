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
//   - the product's CPU time per delivery in the burst (/proc/<pid>/stat).
// Clients: bench/load_client.cpp (build target `load-client`, one thread, epoll) in --no-control
// mode: it opens N WebSocket Socket.IO connections to the product, counts `42["bench",...]` frames
// and measures each frame's latency from the CLOCK_MONOTONIC stamp the producer puts in it
// (process.hrtime is CLOCK_MONOTONIC too). A socket.io-client load generator in Node would be the
// bottleneck on these 2 cores long before the gateway.
//
//   node bench/steedos_fanout.js [--clients 1000] [--events 300] [--paced 40] [--interval 10]
//                                [--rounds 5] [--transports nats,redis] [--no-pin]
//   node bench/steedos_fanout.js --metrics-cost [...]
// --metrics-cost: the cost of the Prometheus metrics instead: two NATS setups, one with the
// default configuration, scraped on /metrics every second as Prometheus would, and one with
// `metrics.enabled: false` (no endpoint, no histogram work); ratios metrics/none.
// Setup names (--transports): nats, redis, and nats-nometrics (NATS with metrics disabled); the
// setups are started in that order (--transports nats-nometrics,nats swaps them).
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
const KINDS = String(arg("transports", METRICS_COST ? "nats,nats-nometrics" : "nats,redis")).split(",");
const SCRAPE_MS = 1000;
const PIN = !process.argv.includes("--no-pin") && proc.canPin();
const LOAD_CLIENT = path.join(process.env.STEEDOS_BUILD_DIR || path.join(__dirname, "..", "build"), "load-client");

const sleep = ms => new Promise(r => setTimeout(r, ms));
const now = () => Number(process.hrtime.bigint()); // CLOCK_MONOTONIC ns (< 2^53 for ~100 days of uptime)

const { cpuSeconds } = proc;

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

async function setUp(kind) {
	const bus = kind.startsWith("redis") ? await h.startRedis() : await h.startNats();
	const metricsEnabled = !kind.endsWith("-nometrics");
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
		extra: { serviceName: "socket", gateway: { host: "127.0.0.1", port, maxHandshakesPerSecond: 0 }, metrics: { enabled: metricsEnabled } }
	});
	pin(node.pid, 0);
	process.stderr.write(`${kind}: steedos-socket pid ${node.pid}, gateway port ${port}, bus ${bus.url}\n`);
	const producer = h.createBroker("0.14", { transporter: bus.url, nodeID: `producer-${kind}`, heartbeatInterval: 5, heartbeatTimeout: 15 });
	await producer.start();
	await h.waitForRemoteNode(producer, nodeID, ["socket.stats"], 15000);
	await h.waitFor(() => canConnect(port), 10000, { what: `gateway port ${port}` });
	const client = await startLoadClient(port);
	const scraper = METRICS_COST && metricsEnabled ? startScraper(port) : null;
	const state = { kind, bus, node, producer, client, scraper, received: 0 };
	await burst(state, 20); // warm-up (and proof that events reach every client)
	return state;
}

/** K events back to back; resolves { rate, p50, p99, max, cpuUs }. */
async function burst(s, k) {
	s.received += CLIENTS * k;
	const { result } = await s.client.expect(s.received);
	const cpu0 = cpuSeconds(s.node.pid);
	const t0 = now();
	for (let i = 0; i < k; i++) {
		s.producer.emit("$socket.emit", { eventName: "bench", eventParams: { t: now(), i } });
		if (i % 50 === 49) await new Promise(r => setImmediate(r)); // let the transporter flush
	}
	const r = await h.withTimeout(result, 70000, `${s.kind} burst`);
	const cpu = cpuSeconds(s.node.pid) - cpu0;
	return { rate: (CLIENTS * k) / ((r.done_ns - t0) / 1e9), p50: r.p50_ms, p99: r.p99_ms, max: r.max_ms, cpuUs: (cpu * 1e6) / (CLIENTS * k) };
}

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
	console.log(`load average before: ${loadBefore}, after: ${os.loadavg().map(x => x.toFixed(2)).join(" ")}; ${os.cpus().length} CPUs; pinning ${PIN ? "node CPU 0, clients CPU 1" : "off"}`);
	for (const c of checks) console.log(`check ${c}`);
}

main().then(
	() => process.exit(0),
	err => {
		console.error(err);
		process.exit(1);
	}
);
