"use strict";
// Issue 10: GET /metrics (Prometheus text format, prometheus-cpp) on the gateway port.
// (a) A scripted Steedos run between two scrapes moves each counter by exactly what it did:
//     connections (gauge up, then down), connects, refused connects, disconnects by reason,
//     subscription refusals, events by pattern, deliveries, rejected payloads, auth calls (the
//     mock's own count), auth cache hits, and the two histograms' _count.
// (b) socket.stats and $node.list agree with a scrape taken with no client traffic in between.
// (c) `promtool check metrics` accepts the exposition.
// (d) metrics.enabled false: no endpoint (404); metrics.port: a second listener serving only the
//     metrics path.
// Runs on NATS and on Redis (INTEROP_BUS=redis).
const { describe, it, before, after } = require("node:test");
const { spawnSync } = require("node:child_process");
const net = require("node:net");
const { h, assert, startCluster, startGateway, gatewayPort, failedToConnect, COOKIES, cookie } = require("./fixture");

const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
const BUS = (process.env.INTEROP_BUS || "nats").toLowerCase(); // the transporter label

/** GET `path` on `port`: { status, contentType, text }. */
async function get(port, path = "/metrics") {
	const res = await fetch(`http://127.0.0.1:${port}${path}`);
	return { status: res.status, contentType: res.headers.get("content-type"), text: await res.text() };
}

/** Parses the text exposition: Map of `name{sorted labels}` -> value, plus HELP/TYPE by name. */
function parse(text) {
	const samples = new Map();
	const help = new Map();
	const type = new Map();
	for (const line of text.split("\n")) {
		if (!line) continue;
		const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
		if (meta) {
			(meta[1] === "HELP" ? help : type).set(meta[2], meta[3]);
			continue;
		}
		const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
		assert.ok(sample, `a sample line: ${line}`);
		const labels = {};
		for (const m of (sample[2] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]] = m[2];
		samples.set(key(sample[1], labels), Number(sample[3]));
	}
	return { samples, help, type };
}

function key(name, labels = {}) {
	const parts = Object.keys(labels).sort().map(k => `${k}="${labels[k]}"`);
	return `${name}{${parts.join(",")}}`;
}

/** One sample's value; fails when the series is absent. */
function val(m, name, labels = {}) {
	const k = key(name, labels);
	assert.ok(m.samples.has(k), `series ${k} present`);
	return m.samples.get(k);
}

/** The sum of every series of `name` (optionally only those whose labels match `where`). */
function sum(m, name, where = {}) {
	let total = 0;
	for (const [k, v] of m.samples) {
		if (!k.startsWith(`${name}{`)) continue;
		if (Object.entries(where).every(([l, x]) => k.includes(`${l}="${x}"`))) total += v;
	}
	return total;
}

/** The label values of `label` among the series of `name`. */
function labelValues(m, name, label) {
	const values = [];
	for (const k of m.samples.keys()) {
		if (!k.startsWith(`${name}{`)) continue;
		const hit = new RegExp(`${label}="([^"]*)"`).exec(k);
		if (hit) values.push(hit[1]);
	}
	return values.sort();
}

async function scrape(port) {
	const res = await get(port);
	assert.equal(res.status, 200);
	assert.equal(res.contentType, CONTENT_TYPE);
	return Object.assign(parse(res.text), { text: res.text });
}

/** m1 - m0 for one series. */
const delta = (m0, m1, name, labels) => val(m1, name, labels) - val(m0, name, labels);

describe("GET /metrics", () => {
	let c;
	before(async () => {
		c = await startCluster();
	});
	after(async () => {
		if (c) await c.stop();
	});

	it("(a) counters move by exactly what a scripted Steedos run did", async () => {
		const m0 = await scrape(c.port);
		const calls0 = c.authCalls.length;

		// Two sockets of U1 over WebSocket (the second answered from the auth cache), one
		// anonymous over polling.
		const u1 = await c.connect({ cookie: COOKIES.U1, transports: ["websocket"] });
		const u1b = await c.connect({ cookie: COOKIES.U1, transports: ["websocket"] });
		const anon = await c.connect({ transports: ["polling"] });
		const mid = await scrape(c.port);
		assert.equal(delta(m0, mid, "steedos_socket_connections", { transport: "websocket", auth: "authenticated" }), 2);
		assert.equal(delta(m0, mid, "steedos_socket_connections", { transport: "polling", auth: "anonymous" }), 1);
		assert.equal(delta(m0, mid, "steedos_socket_connections", { transport: "polling", auth: "authenticated" }), 0);
		assert.equal(delta(m0, mid, "steedos_socket_connections", { transport: "websocket", auth: "anonymous" }), 0);

		// Subscriptions: one accepted, one forbidden (anonymous), one invalid (no roomParts).
		assert.deepEqual(await u1.emitWithAck("subscribe", { roomParts: "space" }), { rooms: ["S1-space"] });
		assert.ok((await anon.emitWithAck("subscribe", { roomParts: "space" })).error);
		assert.ok((await u1.emitWithAck("subscribe", {})).error);

		// Events: one delivered to all three, one to the room (one socket), one rejected for
		// its shape, one for a reserved event name; then a barrier (delivered to all three).
		c.producer.emit("$socket.emit", { eventName: "hello", eventParams: 1 });
		c.producer.emit("$socket.emit", { eventName: "room-news", eventParams: 2, room: "S1-space" });
		c.producer.emit("$broadcast.socket.emit", { data: 5 });
		c.producer.emit("$socket.emit", { eventName: "connect", eventParams: 3 });
		await c.barrier([u1, u1b, anon]);
		assert.equal(c.got(u1, "room-news").length, 1);

		// Refused connects: the auth service fails (unavailable) and answers garbage (failed).
		const down = c.client({ cookie: cookie("S1", "fail-500"), transports: ["websocket"] });
		await failedToConnect(down);
		const garbage = c.client({ cookie: cookie("S1", "fail-garbage"), transports: ["websocket"] });
		await failedToConnect(garbage);

		// Disconnects: the anonymous client leaves by itself, u1b is disconnected by the server.
		anon.close();
		assert.deepEqual(await c.call("disconnect", { sid: u1b.id }), { disconnected: 1 });
		let last;
		await h.waitFor(async () => (last = await c.stats()).connections.total === 1, 4000, { what: "one connection left" }).catch(e => { throw new Error(`${e.message}: ${JSON.stringify(last)}`); });

		const m1 = await scrape(c.port);
		const authCalls = c.authCalls.length - calls0;
		assert.equal(authCalls, 3, "U1 once (then cached), fail-500, fail-garbage");

		// Connections: up by 3, down by 2.
		assert.equal(sum(m1, "steedos_socket_connections") - sum(m0, "steedos_socket_connections"), 1);
		assert.equal(delta(m0, m1, "steedos_socket_connections", { transport: "websocket", auth: "authenticated" }), 1);
		assert.equal(delta(m0, m1, "steedos_socket_connects_total", { auth: "authenticated" }), 2);
		assert.equal(delta(m0, m1, "steedos_socket_connects_total", { auth: "anonymous" }), 1);
		assert.equal(delta(m0, m1, "steedos_socket_connects_refused_total", { reason: "auth_unavailable" }), 1);
		assert.equal(delta(m0, m1, "steedos_socket_connects_refused_total", { reason: "auth_failed" }), 1);
		assert.equal(sum(m1, "steedos_socket_connects_refused_total") - sum(m0, "steedos_socket_connects_refused_total"), 2);
		assert.equal(delta(m0, m1, "steedos_socket_disconnects_total", { reason: "client namespace disconnect" }), 1);
		assert.equal(delta(m0, m1, "steedos_socket_disconnects_total", { reason: "server namespace disconnect" }), 1);
		assert.equal(sum(m1, "steedos_socket_disconnects_total") - sum(m0, "steedos_socket_disconnects_total"), 2);
		assert.equal(delta(m0, m1, "steedos_socket_rooms"), 1, "S1-space");

		assert.equal(delta(m0, m1, "steedos_socket_subscriptions_refused_total", { reason: "forbidden" }), 1);
		assert.equal(delta(m0, m1, "steedos_socket_subscriptions_refused_total", { reason: "invalid" }), 1);
		assert.equal(sum(m1, "steedos_socket_subscriptions_refused_total") - sum(m0, "steedos_socket_subscriptions_refused_total"), 2);

		assert.equal(delta(m0, m1, "steedos_socket_events_received_total", { pattern: "$socket.emit" }), 4, "hello, room-news, connect, barrier");
		assert.equal(delta(m0, m1, "steedos_socket_events_received_total", { pattern: "$broadcast.socket.emit" }), 1);
		assert.equal(sum(m1, "steedos_socket_events_received_total") - sum(m0, "steedos_socket_events_received_total"), 5);
		assert.equal(delta(m0, m1, "steedos_socket_deliveries_total"), 3 + 1 + 3, "hello x3, room-news x1, barrier x3");
		assert.equal(delta(m0, m1, "steedos_socket_payloads_rejected_total", { reason: "not_an_object" }), 1);
		assert.equal(delta(m0, m1, "steedos_socket_payloads_rejected_total", { reason: "reserved_event_name" }), 1);
		assert.equal(sum(m1, "steedos_socket_payloads_rejected_total") - sum(m0, "steedos_socket_payloads_rejected_total"), 2);

		assert.equal(delta(m0, m1, "steedos_socket_auth_calls_total"), authCalls);
		assert.equal(delta(m0, m1, "steedos_socket_auth_failures_total"), 2);
		assert.equal(delta(m0, m1, "steedos_socket_auth_timeouts_total"), 0);
		assert.equal(delta(m0, m1, "steedos_socket_auth_cache_hits_total"), 1);
		assert.equal(delta(m0, m1, "steedos_socket_auth_duration_seconds_count"), authCalls);
		// The three events that reached a client (hello, room-news, barrier); rejected ones wrote nothing.
		assert.equal(delta(m0, m1, "steedos_socket_emit_to_write_seconds_count"), 3);
		assert.equal(val(m1, "steedos_socket_emit_to_write_seconds_bucket", { le: "+Inf" }), val(m1, "steedos_socket_emit_to_write_seconds_count"));

		// Packets out: at least the deliveries, CONNECT replies and connection-init, per transport.
		assert.ok(delta(m0, m1, "steedos_socket_packets_sent_total", { transport: "websocket" }) >= 2 * 2 + 3 + 1);
		assert.ok(delta(m0, m1, "steedos_socket_packets_sent_total", { transport: "polling" }) >= 2 + 2);
		assert.ok(delta(m0, m1, "steedos_socket_sent_bytes_total", { transport: "websocket" }) > 0);
		assert.equal(val(m1, "steedos_socket_transporter_connected", { transporter: BUS }), 1);
		assert.ok(delta(m0, m1, "steedos_socket_transporter_messages_received_total", { transporter: BUS }) >= 5);
	});

	it("(b) socket.stats and $node.list agree with a scrape at the same instant", async () => {
		// Some state to compare: two clients, a room, a refusal.
		const s1 = await c.connect({ cookie: COOKIES.U2, transports: ["polling"] });
		await c.connect({ transports: ["websocket"] });
		await s1.emitWithAck("subscribe", { roomParts: "orders" });
		const stats = await c.stats();
		const m = await scrape(c.port);
		const nodes = await c.producer.call("$node.list", { onlyAvailable: true }, { nodeID: c.node.nodeID, timeout: 5000 });
		const again = await c.stats();
		delete stats.uptime;
		delete again.uptime;
		assert.deepEqual(again, stats, "nothing moved while the three were read");

		const cx = stats.connections;
		assert.equal(sum(m, "steedos_socket_connections"), cx.total);
		assert.equal(sum(m, "steedos_socket_connections", { auth: "anonymous" }), cx.anonymous);
		assert.equal(sum(m, "steedos_socket_connections", { auth: "authenticated" }), cx.authenticated);
		assert.equal(sum(m, "steedos_socket_connections", { transport: "polling" }), cx.byTransport.polling);
		assert.equal(sum(m, "steedos_socket_connections", { transport: "websocket" }), cx.byTransport.websocket);
		assert.equal(val(m, "steedos_socket_rooms"), stats.rooms);
		assert.equal(sum(m, "steedos_socket_events_received_total"), stats.events.in);
		assert.equal(val(m, "steedos_socket_deliveries_total"), stats.events.out);
		assert.equal(sum(m, "steedos_socket_payloads_rejected_total"), stats.rejected);
		assert.equal(sum(m, "steedos_socket_subscriptions_refused_total"), stats.refused);
		assert.equal(val(m, "steedos_socket_refused_origins_total"), stats.refusedOrigins);
		assert.equal(val(m, "steedos_socket_malformed_total"), stats.malformed);
		assert.equal(val(m, "steedos_socket_auth_calls_total"), stats.auth.calls);
		assert.equal(val(m, "steedos_socket_auth_failures_total"), stats.auth.failures);
		assert.deepEqual(labelValues(m, "steedos_socket_limit_refusals_total", "limit"), Object.keys(stats.limits).sort());
		for (const [limit, count] of Object.entries(stats.limits)) {
			assert.equal(val(m, "steedos_socket_limit_refusals_total", { limit }), count, limit);
		}
		assert.equal(val(m, "steedos_socket_slow_consumer_disconnects_total"), stats.limits.slowConsumers);
		assert.ok(stats.events.in > 0 && stats.refused > 0 && cx.total === 3, "non-trivial values compared");

		const remote = nodes.filter(n => n.id !== c.node.nodeID && n.available);
		assert.equal(val(m, "steedos_socket_remote_nodes"), remote.length);
		assert.ok(remote.length >= 2, "the auth and producer brokers");
		assert.equal(val(m, "steedos_socket_info", { node_id: c.node.nodeID, version: labelValues(m, "steedos_socket_info", "version")[0], transporter: BUS }), 1);
		assert.ok(val(m, "process_resident_memory_bytes") > 0);
		assert.ok(val(m, "process_open_fds") > 0 && val(m, "process_open_fds") <= val(m, "process_max_fds"));
	});

	it("(c) every family has HELP and TYPE, and promtool check metrics passes", async t => {
		const m = await scrape(c.port);
		const families = [...new Set([...m.samples.keys()].map(k => k.slice(0, k.indexOf("{")).replace(/_(bucket|count|sum)$/, "")))];
		assert.ok(families.length >= 30, `${families.length} families`);
		for (const name of families) {
			assert.ok(m.help.has(name), `HELP ${name}`);
			assert.ok(m.type.has(name), `TYPE ${name}`);
		}
		assert.equal(m.type.get("steedos_socket_auth_duration_seconds"), "histogram");
		assert.equal(m.type.get("steedos_socket_connections"), "gauge");
		assert.equal(m.type.get("steedos_socket_deliveries_total"), "counter");
		const found = spawnSync("promtool", ["--version"], { encoding: "utf8" });
		if (found.error) {
			t.skip("promtool not installed (scripts/setup.sh --with-test-npm installs the prometheus package)");
			return;
		}
		const check = spawnSync("promtool", ["check", "metrics"], { input: m.text, encoding: "utf8" });
		assert.equal(check.status, 0, `promtool: ${check.stdout}${check.stderr}`);
		assert.equal(`${check.stdout}${check.stderr}`.trim(), "", "no lint warnings");
	});
});

/** A TCP port free now (bound then released), for metrics.port. */
function freePort() {
	return new Promise((resolve, reject) => {
		const server = net.createServer();
		server.listen(0, "127.0.0.1", () => {
			const { port } = server.address();
			server.close(() => resolve(port));
		});
		server.on("error", reject);
	});
}

describe("metrics configuration", () => {
	let bus;
	const nodes = [];
	before(async () => {
		bus = await h.startBus();
	});
	after(async () => {
		await h.stopCppNodes(nodes);
		if (bus) await bus.stop();
	});

	it("(d) metrics.enabled false: /metrics is 404", async () => {
		const node = await startGateway({ nats: bus, extra: { metrics: { enabled: false } } });
		nodes.push(node);
		const port = await gatewayPort(node);
		assert.equal((await get(port, "/metrics")).status, 404);
		assert.equal((await get(port, "/health")).status, 200, "the node itself serves");
	});

	it("metrics.path and metrics.port: the path on the gateway port and on a listener of its own", async () => {
		const metricsPort = await freePort();
		const node = await startGateway({ nats: bus, extra: { metrics: { path: "/-/metrics", port: metricsPort } } });
		nodes.push(node);
		const port = await gatewayPort(node);
		await node.waitForLog(/metrics\.port: \/-\/metrics served on port \d+/, 10000);
		for (const p of [port, metricsPort]) {
			const res = await get(p, "/-/metrics");
			assert.equal(res.status, 200, `port ${p}`);
			assert.equal(res.contentType, CONTENT_TYPE);
			assert.match(res.text, /^# TYPE steedos_socket_connections gauge$/m);
		}
		assert.equal((await get(port, "/metrics")).status, 404, "the default path is not served when renamed");
		assert.equal((await get(metricsPort, "/socket.io/?EIO=4&transport=polling")).status, 404, "the metrics listener serves nothing else");
		assert.equal((await get(metricsPort, "/health")).status, 404);
	});
});
