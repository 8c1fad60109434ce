"use strict";
// Issue 13, connection state recovery with the cluster-wide `jetstream` store
// (gateway.connectionStateRecovery.store "jetstream"): a real nats-server 2.9 with JetStream, two
// steedos-socket nodes, moleculer 0.15 brokers (producer, mock auth, a service that records
// `$socket.recovery.expired`), real socket.io-client 4.8 on default transports and WebSocket only.
// Every event sent to clients goes through one JetStream stream and its offset is the stream
// sequence, the same on every node, so a client restores on whichever node it reaches:
//   - a transport dropped for 2 s while 50 events flow to its rooms: `recovered`, the same socket
//     id, exactly the missed events in order, nothing twice; the offsets are decimal sequences;
//   - away longer than maxDisconnectionDuration: not recovered, and `$socket.recovery.expired`
//     reaches a service exactly once although both nodes sweep the sessions;
//   - a logout of its token while away: no restore;
//   - a rolling restart of both nodes (SIGTERM, start again, ready, then the other) under 100
//     events/s (balanced emits and broadcasts) to 200 clients: every client gets every event of
//     its rooms exactly once and in order, every reconnect is recovered;
//   - SIGKILL of a client's node while events flow: it reconnects to the other node and recovers
//     every event since its last one;
//   - store "jetstream" without JetStream refuses to start; absent (auto) it falls back to memory.
// maxDisconnectionDuration is 30 s (a client of a rolling restart has time to come back whatever
// the node it reaches is doing), 3 s on the two nodes of the expiry case.
// Clients reach the nodes through a small TCP proxy (startProxy) that fails over to the other node
// when its node refuses connections (or is taken out, as a balancer does on a failing readiness
// probe) and stays there, as a sticky balancer does. The outage lengths are deliberate (socket.io-client's reconnection delay) and
// labelled as such; every other wait is on an observable state. NATS only: scripts/test.sh leaves
// this file out of the Redis pass.
const { describe, it, before, after, afterEach } = require("node:test");
const fs = require("node:fs");
const net = require("node:net");
const { h, assert, startCluster, startGateway, gatewayPort, login, emitTo, statsOf, crossBarrier, waitGatewaysKnowEachOther } =
	require("./fixture");

const skip = h.BUS !== "nats" && "the jetstream store needs NATS (INTEROP_BUS is not nats)";
const MAX_DISCONNECTION_MS = 30000;
const EXPIRY_MS = 3000; // the expiry case's maxDisconnectionDuration
const AWAY_MS = 2000; // the deliberate outage of the drop and logout cases
const RECOVERY = { maxDisconnectionDuration: MAX_DISCONNECTION_MS, store: "jetstream" };
const ROOM = "S1-record:orders:change-42";
const DEFAULT = { name: "default", transports: ["polling", "websocket"] };
const WEBSOCKET = { name: "websocket", transports: ["websocket"] };
const ROLL_CLIENTS = 200;
const ROLL_RATE = 100; // events per second during the rolling restart
const ROLL_ROOMS = [0, 1, 2, 3].map(k => `record:orders:roll-${k}`);
const DECIMAL = /^[1-9][0-9]*$/;

/**
 * A TCP proxy on a free loopback port in front of gateway `ports` (read at each connection: a node
 * started again on its port is found there). Every connection goes to the current node, ports[0]
 * at first; a refused connection moves the proxy to the next node and is tried there, and the
 * proxy stays on that node until it refuses in turn. So every request of one Engine.IO session
 * reaches one node (as behind a sticky balancer), and a client whose node went away reconnects to
 * one that is up. `down(port)` takes a node out as a balancer does when its readiness probe fails
 * (its new connections count as refused) until `up(port)`. `target()`: the index of the current
 * node; `close()`.
 */
async function startProxy(ports) {
	let current = 0;
	const out = new Set();
	const open = new Set();
	const server = net.createServer(client => {
		open.add(client);
		client.on("error", () => {});
		client.once("close", () => open.delete(client));
		client.pause(); // what the client sends first waits for the upstream connection
		const attempt = left => {
			const i = current;
			const upstream = out.has(ports[i])
				? new net.Socket().destroy(Object.assign(new Error("taken out"), { code: "ECONNREFUSED" }))
				: net.connect(ports[i], "127.0.0.1");
			let connected = false;
			upstream.on("error", err => {
				if (!connected && err.code === "ECONNREFUSED" && left > 1 && !client.destroyed) {
					if (current === i) current = (i + 1) % ports.length;
					attempt(left - 1);
				} else {
					client.destroy();
				}
			});
			upstream.once("connect", () => {
				connected = true;
				if (client.destroyed) return upstream.destroy();
				open.add(upstream);
				upstream.once("close", () => {
					open.delete(upstream);
					client.destroy();
				});
				client.once("close", () => upstream.destroy());
				client.pipe(upstream);
				upstream.pipe(client);
			});
		};
		attempt(2 * ports.length);
	});
	await new Promise((resolve, reject) => {
		server.once("error", reject);
		server.listen(0, "127.0.0.1", resolve);
	});
	return {
		port: server.address().port,
		target: () => current,
		down: port => out.add(port),
		up: port => out.delete(port),
		close() {
			for (const sock of open) sock.destroy();
			return new Promise(resolve => server.close(resolve));
		}
	};
}

/** GET /ready on a gateway port: the status code, 0 when refused. */
async function readyStatus(port) {
	try {
		return (await fetch(`http://127.0.0.1:${port}/ready`, { signal: AbortSignal.timeout(2000) })).status;
	} catch (_) {
		return 0;
	}
}

/**
 * The tag of an event the tests emit ("missed" with the tag, or a notification whose message is
 * the tag) and its offset (the last argument), or null for any other event.
 */
function tagged(e) {
	if (e.event === "missed" && typeof e.args[0] === "string") return { tag: e.args[0], offset: e.args[1] };
	if (e.event === "s:notification-change" && e.args[0] && typeof e.args[0].message === "string") {
		return { tag: e.args[0].message, offset: e.args[1] };
	}
	return null;
}
/** The tagged events `s` received whose tag starts with `prefix`, in the order it got them. */
const receivedOf = (s, prefix) => s.events.map(tagged).filter(x => x && x.tag.startsWith(prefix));
const tagsOf = (s, prefix) => receivedOf(s, prefix).map(x => x.tag);

/** Fails unless every offset is a decimal stream sequence, each higher than the one before. */
function assertSequences(received, what) {
	let last = 0n;
	for (const { tag, offset } of received) {
		assert.match(String(offset), DECIMAL, `${what}: the offset of ${tag} is a stream sequence`);
		assert.ok(BigInt(offset) > last, `${what}: ${tag} has sequence ${offset}, not above ${last}`);
		last = BigInt(offset);
	}
}

const T0 = Date.now();
/**
 * Makes `s` record the socket id and `recovered` of each of its connects in `s.history`, and in
 * `s.timeline` when (ms since the file started) it connected, was disconnected (and why) or failed
 * to connect: a failure report shows them.
 */
function trackConnects(s) {
	s.history = [];
	s.timeline = [];
	s.on("connect", () => {
		s.history.push({ id: s.id, recovered: s.recovered });
		s.timeline.push(`${Date.now() - T0} connect ${s.id} recovered=${s.recovered}`);
	});
	s.on("disconnect", reason => s.timeline.push(`${Date.now() - T0} disconnect ${reason}`));
	s.on("connect_error", err => s.timeline.push(`${Date.now() - T0} connect_error ${err.message}`));
	return s;
}

/**
 * Two gateway nodes with the jetstream store (`recovery` is their connectionStateRecovery) on a
 * nats-server of their own with JetStream, moleculer 0.15 brokers, and a `fallback` service that
 * records `$socket.recovery.expired` in `c.expired`. Resolves the startCluster handle.
 */
async function startJetStreamCluster(recovery) {
	const c = await startCluster({
		gateways: 2, moleculer: "0.15", bus: { jetstream: true }, logLevel: "info",
		extra: { gateway: { connectionStateRecovery: recovery } }
	});
	c.expired = [];
	c.fallback = h.createBroker("0.15", { nats: c.nats });
	c.fallback.createService({
		name: "fallback",
		actions: { ping: () => "pong" },
		events: { "$socket.recovery.expired"(ctx) { c.expired.push(ctx.params); } }
	});
	await c.fallback.start();
	for (const n of c.nodes) await h.waitForCppSees(c.producer, n.nodeID, "fallback.ping", c.fallback.nodeID, 10000);
	await waitGatewaysKnowEachOther(c);
	return c;
}

async function stopJetStreamCluster(c) {
	if (!c) return;
	await h.stopBrokers(c.fallback);
	await c.stop();
}

/**
 * A client of U1 (a fresh login) of cluster `c` on `port`, subscribed to its record room and its
 * user's notifications; it reconnects `away` ms after a drop.
 */
async function connectU1(c, port, transports, away = AWAY_MS) {
	const { token, cookies } = login("U1", "S1");
	const s = trackConnects(c.client({
		port, cookie: cookies[0], transports,
		reconnection: true, reconnectionDelay: away, reconnectionDelayMax: away, randomizationFactor: 0
	}));
	await h.waitFor(() => s.events.some(e => e.event === "connection-init"), 6000, { what: "connection-init" });
	await s.emitWithAck("subscribe", { roomParts: "notification-change", individual: true });
	await s.emitWithAck("subscribe", { roomParts: "record:orders:change-42" });
	s.token = token;
	return s;
}

/** The running node of `c` that holds `s` now (socket.clients), or null. */
async function nodeOf(c, s) {
	for (const n of c.nodes.filter(n => n.running())) {
		const list = await c.producer.call("socket.clients", {}, { nodeID: n.nodeID, timeout: 5000 });
		if (list.some(entry => entry.id === s.id)) return n;
	}
	return null;
}

/** Drops the client's transport under it and waits until `node` has kept its socket. */
async function dropTransport(c, s, node) {
	const kept = (await statsOf(c, node)).recovery.kept;
	s.io.engine.close();
	await h.waitFor(async () => (await statsOf(c, node)).recovery.kept === kept + 1, 4000, { what: "the node keeps the dropped socket" });
}

/** 50 tagged events, all through `node`: to the record room, to U1, to everyone, in turn. */
function emitFifty(c, prefix, node) {
	const tags = [];
	for (let i = 0; i < 50; i++) {
		const tag = `${prefix}-${i}`;
		tags.push(tag);
		if (i % 3 === 0) emitTo(c.producer, node.nodeID, "$socket.emit", { eventName: "missed", eventParams: tag, room: ROOM });
		else if (i % 3 === 1) emitTo(c.producer, node.nodeID, "$broadcast.$notification.users", { data: { tenantId: "S1", users: ["U1"], message: tag } });
		else emitTo(c.producer, node.nodeID, "$socket.emit", { eventName: "missed", eventParams: tag });
	}
	return tags;
}

describe("steedos socket: connection state recovery with the jetstream store (two nodes, NATS JetStream)", { skip }, () => {
	let c;
	const proxies = [];
	const routes = new Map(); // tag of a balanced $socket.emit -> the nodeID the producer sent it to
	before(async () => {
		c = await startJetStreamCluster(RECOVERY);
		// Which node the producer's balancer picked for each tagged emit (the order to expect is
		// per path: what one node publishes keeps the order it received it in).
		const send = c.producer.transit.sendEvent.bind(c.producer.transit);
		c.producer.transit.sendEvent = ctx => {
			if (ctx.eventType === "emit" && ctx.eventName === "$socket.emit" && typeof ctx.params.eventParams === "string") {
				routes.set(ctx.params.eventParams, ctx.nodeID);
			}
			return send(ctx);
		};
	});
	afterEach(async () => {
		for (const p of proxies.splice(0)) await p.close();
		if (c) await c.closeAll();
	});
	after(async () => {
		for (const p of proxies.splice(0)) await p.close();
		await stopJetStreamCluster(c);
	});

	const stats = node => statsOf(c, node);

	it("both nodes run the jetstream store, and /metrics shows its history and bucket", async () => {
		for (const n of c.nodes) assert.equal((await stats(n)).recovery.store, "jetstream", n.nodeID);
		for (const port of c.ports) {
			const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
			for (const family of ["steedos_socket_recovery_history_total", "steedos_socket_recovery_history_sequence", "steedos_socket_recovery_bucket_total"]) {
				assert.match(text, new RegExp(`^# TYPE ${family} `, "m"), `${family} on port ${port}`);
			}
		}
	});

	// The client stays on node 0; the missed events enter through node 0 for one transport and
	// through node 1 (published there, delivered by node 0 from the stream) for the other.
	for (const [t, via] of [[DEFAULT, 0], [WEBSOCKET, 1]]) {
		it(`a transport dropped for 2 s while 50 events flow: recovered, same id, exactly the missed events in order, offsets are stream sequences (${t.name}, events via node ${via})`, async () => {
			const node = c.nodes[0];
			const s = await connectU1(c, c.ports[0], t.transports);
			const id = s.id;
			assert.equal(s.recovered, false);
			const prefix = `away-${t.name}`;
			// Sequences before the drop: a global event, then the drop.
			emitTo(c.producer, c.nodes[via].nodeID, "$socket.emit", { eventName: "missed", eventParams: `${prefix}-before` });
			await h.waitFor(() => tagsOf(s, `${prefix}-before`).length === 1, 4000, { what: "the event before the drop" });
			await dropTransport(c, s, node);
			assert.equal(s.connected, false);
			const tags = emitFifty(c, prefix, c.nodes[via]);
			await h.waitFor(() => s.connected, AWAY_MS + 4000, { what: "the client reconnects" });
			await crossBarrier(c, [s]);
			assert.deepEqual(s.history.map(x => x.recovered), [false, true], "socket.recovered at each connect");
			assert.equal(s.id, id, "the same socket id");
			assert.equal((await nodeOf(c, s)).nodeID, node.nodeID);
			const got = receivedOf(s, `${prefix}-`);
			assert.deepEqual(got.map(x => x.tag), [`${prefix}-before`, ...tags], "exactly the missed events, in order, once each");
			assertSequences(got, t.name);
			// Its rooms came back with it.
			const after = emitFifty(c, `after-${t.name}`, c.nodes[via]);
			await crossBarrier(c, [s]);
			assert.deepEqual(tagsOf(s, `after-${t.name}-`), after);
			assertSequences(receivedOf(s, ""), `${t.name}, every tagged event`);
			const recovery = (await stats(node)).recovery;
			assert.equal(recovery.store, "jetstream");
			assert.ok(recovery.recovered >= 1, JSON.stringify(recovery));
		});
	}

	it("a logout of its token while away: no restore", async () => {
		const node = c.nodes[0];
		const s = await connectU1(c, c.ports[0], WEBSOCKET.transports);
		const id = s.id;
		await dropTransport(c, s, node);
		// Both nodes get the logout; whichever removes the record from the bucket counts it.
		const dropped = async () => (await Promise.all(c.nodes.map(stats))).reduce((sum, st) => sum + st.recovery.dropped, 0);
		const before = await dropped();
		c.revoke(s.token);
		await h.waitFor(async () => (await dropped()) > before, 4000, { what: "the kept socket dropped at logout" });
		emitFifty(c, "logout", c.nodes[1]);
		// The token is refused at the reconnect: the node closes the connection.
		await h.waitFor(() => s.connected || s.disconnects.length > 1, AWAY_MS + 4000, { what: "the client's next connect" });
		assert.notEqual(s.id, id);
		assert.equal(s.recovered, false);
		assert.deepEqual(tagsOf(s, "logout"), []);
		assert.equal(await dropped(), before + 1, "dropped once cluster-wide");
	});

	it("the socket.disconnect action on the other node while the client is away: keptDropped 1 (found in the shared records), no restore", async () => {
		const s = await connectU1(c, c.ports[0], WEBSOCKET.transports);
		const id = s.id;
		await dropTransport(c, s, c.nodes[0]);
		const reply = await c.producer.call("socket.disconnect", { sid: id }, { nodeID: c.nodes[1].nodeID, timeout: 5000 });
		assert.deepEqual(reply, { disconnected: 0, keptDropped: 1 });
		await h.waitFor(() => s.connected, AWAY_MS + 4000, { what: "the client's next connect" });
		assert.notEqual(s.id, id);
		assert.equal(s.recovered, false);
	});

	it("the socket.emit action goes through the history: once per call (also with cluster: true), each node answering its recipients; missed ones come back", async () => {
		const s = await connectU1(c, c.ports[0], WEBSOCKET.transports);
		const id = s.id;
		const call = (node, params) => c.producer.call("socket.emit", params, { nodeID: node.nodeID, timeout: 5000 });
		// On node 1, whose clients are none of these: it answers 0, node 0 delivers the event.
		assert.deepEqual(await call(c.nodes[1], { event: "missed", data: "action-1", room: ROOM }), { delivered: 0 });
		await h.waitFor(() => tagsOf(s, "action-1").length === 1, 4000, { what: "action-1 delivered by node 0" });
		// cluster: true asks every node; the event is stored once: one delivery, counted by node 0.
		const reply = await call(c.nodes[1], { event: "missed", data: "action-2", room: ROOM, cluster: true });
		assert.equal(reply.total.delivered, 1, JSON.stringify(reply));
		assert.deepEqual(reply.missing, []);
		assert.equal(reply.nodes[c.nodes[0].nodeID].delivered, 1);
		assert.equal(reply.nodes[c.nodes[1].nodeID].delivered, 0);
		await crossBarrier(c, [s]);
		assert.deepEqual(receivedOf(s, "action-").map(x => x.tag), ["action-1", "action-2"], "once each");
		// Called while the client is away: replayed on its restore.
		await dropTransport(c, s, c.nodes[0]);
		assert.deepEqual(await call(c.nodes[1], { event: "missed", data: "action-3", room: ROOM }), { delivered: 0 });
		await h.waitFor(() => s.connected, AWAY_MS + 4000, { what: "the client reconnects" });
		await crossBarrier(c, [s]);
		assert.equal(s.id, id);
		assert.equal(s.recovered, true);
		const got = receivedOf(s, "action-");
		assert.deepEqual(got.map(x => x.tag), ["action-1", "action-2", "action-3"]);
		assertSequences(got, "socket.emit action");
	});

	/** Starts node `i` again on its port with the cluster's configuration, and waits until ready. */
	async function startAgain(i) {
		const o = c.gatewayOptions;
		const node = await startGateway(Object.assign({}, o, {
			extra: Object.assign({}, o.extra, { gateway: Object.assign({}, o.extra.gateway, { port: c.ports[i] }) })
		}));
		c.nodes[i] = node;
		assert.equal(await gatewayPort(node), c.ports[i]);
		await h.waitFor(async () => (await readyStatus(c.ports[i])) === 200, 10000, { what: `${node.nodeID} ready` });
		// Balanced emits reach it once the producer has it in its registry.
		await h.waitForRemoteNode(c.producer, node.nodeID, ["socket.stats", "socket.emit"], 10000);
		return node;
	}

	it(`a rolling restart of both nodes under ${ROLL_RATE} events/s to ${ROLL_CLIENTS} clients: every event of a client's rooms exactly once, in order; every reconnect recovered`, { timeout: 90000 }, async t => {
		const t0 = Date.now();
		// Clients alternate between a proxy that prefers node 0 and one that prefers node 1, and
		// by pairs between default transports and WebSocket only: each proxy has both kinds.
		const front = [await startProxy(c.ports), await startProxy([c.ports[1], c.ports[0]])];
		proxies.push(...front);
		const clients = [];
		for (let batch = 0; batch < ROLL_CLIENTS; batch += 20) {
			clients.push(...await Promise.all(Array.from({ length: 20 }, async (_, k) => {
				const i = batch + k;
				const { cookies } = login("U1", "S1");
				const s = trackConnects(c.client({
					port: front[i % 2].port, cookie: cookies[0], transports: (i >> 1) % 2 ? WEBSOCKET.transports : DEFAULT.transports,
					reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 500, randomizationFactor: 0.5
				}));
				await h.waitFor(() => s.events.some(e => e.event === "connection-init"), 10000, { what: `client ${i} connection-init` });
				s.rooms = new Set([`S1-${ROLL_ROOMS[(i >> 2) % ROLL_ROOMS.length]}`]);
				await s.emitWithAck("subscribe", { roomParts: ROLL_ROOMS[(i >> 2) % ROLL_ROOMS.length] });
				return s;
			})));
		}
		const connectedMs = Date.now() - t0;
		const spread = await Promise.all(c.nodes.map(async n => (await stats(n)).connections.total));
		assert.deepEqual(spread, [ROLL_CLIENTS / 2, ROLL_CLIENTS / 2], "the clients are spread over both nodes");
		const expiredBefore = c.expired.length;

		// The event flow: every 50 ms five events (balanced emits and broadcasts, to a room or to
		// everyone), until stopped.
		const emitted = []; // { tag, room (null: everyone), broadcast, at: ms from the start }
		let flowing = true;
		const flow = (async () => {
			let k = 0;
			while (flowing) {
				for (let j = 0; j < ROLL_RATE / 20; j++, k++) {
					const tag = `roll-${k}`;
					const room = k % 4 < 2 ? `S1-${ROLL_ROOMS[(k >> 2) % ROLL_ROOMS.length]}` : null;
					const params = Object.assign({ eventName: "missed", eventParams: tag }, room ? { room } : {});
					const broadcast = k % 2 === 1;
					emitted.push({ tag, room, broadcast, at: Date.now() - t0 });
					if (broadcast) c.producer.broadcast("$socket.emit", params);
					else c.producer.emit("$socket.emit", params);
				}
				await h.sleep(50); // the flow's pace, not a synchronisation
			}
		})();
		const marks = {};
		try {
			await h.waitFor(() => emitted.length >= ROLL_RATE, 5000, { what: "a second of events before the restarts" });
			// As a balancer that follows the readiness probe (503 from SIGTERM on): the node is out
			// from its SIGTERM until it is ready again, so its clients go to the other node.
			for (const i of [0, 1]) {
				const old = c.nodes[i];
				for (const p of front) p.down(c.ports[i]);
				marks[`sigterm${i}`] = Date.now() - t0;
				const res = await old.stop("SIGTERM", 10000);
				marks[`exit${i}`] = Date.now() - t0;
				assert.equal(res.code, 0, `node ${i} drained and exited 0:\n${old.logText().slice(-3000)}`);
				await startAgain(i);
				for (const p of front) p.up(c.ports[i]);
				marks[`ready${i}`] = Date.now() - t0;
			}
			// A second more of events with both nodes back, then every client back on a node.
			const n = emitted.length;
			await h.waitFor(() => emitted.length >= n + ROLL_RATE, 5000, { what: "a second of events after the restarts" });
		} finally {
			flowing = false;
			await flow;
		}
		marks.stopped = Date.now() - t0;
		await h.waitFor(() => clients.every(s => s.connected), 10000, { what: "every client connected" });
		await crossBarrier(c, clients, c.nodes, 10000);
		marks.done = Date.now() - t0;

		// What each client should have: every event to everyone or to its room, once; in order
		// along each path (a node's balanced emits, the broadcasts); offsets rising.
		const pathOf = e => (e.broadcast ? "broadcast" : routes.get(e.tag));
		const problems = [];
		let deliveries = 0;
		let reconnects = 0;
		for (const [i, s] of clients.entries()) {
			const expected = emitted.filter(e => e.room === null || s.rooms.has(e.room));
			const got = receivedOf(s, "roll-");
			deliveries += got.length;
			reconnects += s.history.length - 1;
			const gotTags = got.map(x => x.tag);
			const seen = new Set(gotTags);
			const missing = expected.filter(e => !seen.has(e.tag));
			const twice = gotTags.filter((tag, k) => gotTags.indexOf(tag) !== k);
			const unexpected = gotTags.filter(tag => !expected.some(e => e.tag === tag));
			if (missing.length || twice.length || unexpected.length) {
				problems.push(`client ${i} (${s.timeline.join("; ")}): ${got.length}/${expected.length} events; ` +
					`missing ${missing.length} ${JSON.stringify(missing.slice(0, 8).map(e => [e.tag, pathOf(e), e.at]))}; ` +
					`twice ${JSON.stringify(twice.slice(0, 8))}; unexpected ${JSON.stringify(unexpected.slice(0, 8))}`);
				continue;
			}
			for (const path of new Set(expected.map(pathOf))) {
				const want = expected.filter(e => pathOf(e) === path).map(e => e.tag);
				const have = gotTags.filter(tag => want.includes(tag));
				if (want.join() !== have.join()) problems.push(`client ${i}: out of order on path ${path}`);
			}
			try {
				assertSequences(got, `client ${i}`);
			} catch (err) {
				problems.push(err.message);
			}
			if (s.history.slice(1).some(x => !x.recovered || x.id !== s.history[0].id)) {
				problems.push(`client ${i}: a reconnect not recovered: ${JSON.stringify(s.history)}`);
			}
		}
		// The events some client missed, with how many missed each, its path and when it was
		// emitted (ms from the start, as the marks).
		const missedBy = new Map();
		for (const s of clients) {
			const seen = new Set(receivedOf(s, "roll-").map(x => x.tag));
			for (const e of emitted) {
				if ((e.room === null || s.rooms.has(e.room)) && !seen.has(e.tag)) missedBy.set(e.tag, (missedBy.get(e.tag) || 0) + 1);
			}
		}
		const missedSummary = [...missedBy].slice(0, 20).map(([tag, n]) => {
			const e = emitted.find(x => x.tag === tag);
			return `${tag} (${pathOf(e)}, at ${e.at} ms) by ${n}`;
		});
		const unrecovered = clients.filter(s => s.history.slice(1).some(x => !x.recovered)).length;
		const summary = `${emitted.length} events (${emitted.filter(e => e.broadcast).length} broadcasts, ` +
			`${emitted.filter(e => e.room).length} to rooms) to ${clients.length} clients, ${deliveries} deliveries, ` +
			`${reconnects} reconnects; clients connected in ${connectedMs} ms; ms from start: ${JSON.stringify(marks)} ` +
			`(the clients' timelines count from ${t0 - T0} ms before the start); ${unrecovered} clients with a reconnect not recovered; ` +
			`${missedBy.size} events missed by some client: ${missedSummary.join(", ")}`;
		t.diagnostic(summary);
		// How many clients came back how many times, by proxy and transports.
		const paths = {};
		clients.forEach((s, i) => {
			const key = `node ${i % 2} first, ${(i >> 1) % 2 ? "websocket" : "default"}, ${s.history.length - 1} reconnect(s)`;
			paths[key] = (paths[key] || 0) + 1;
		});
		t.diagnostic(`clients: ${JSON.stringify(paths)}`);
		const jetstream = await Promise.all(c.nodes.map(async n => (await stats(n)).recovery.jetstream));
		t.diagnostic(`recovery.jetstream of the restarted nodes: ${JSON.stringify(jetstream)}`);
		assert.deepEqual(problems.slice(0, 20), [], `${problems.length} problems; ${summary}`);
		// Each client reconnected at least once (its node's drain); those of node 0 twice if their
		// restore on node 1 completed before node 1's drain (not always on 2 busy cores: then they
		// come back once, on node 0 again).
		assert.ok(reconnects >= ROLL_CLIENTS, `every client reconnected (${reconnects})`);
		assert.equal(c.expired.length, expiredBefore, "no session expired");
	});

	it("SIGKILL of a client's node while events flow: it reconnects to the other node and recovers every event since its last one, once each, in order", async t => {
		const proxy = await startProxy(c.ports);
		proxies.push(proxy);
		const clients = [];
		for (const ct of [DEFAULT, WEBSOCKET]) {
			const s = await connectU1(c, proxy.port, ct.transports, 200);
			s.kind = ct.name;
			clients.push(s);
		}
		const [victim, survivor] = c.nodes;
		for (const s of clients) assert.equal((await nodeOf(c, s)).nodeID, victim.nodeID, `${s.kind} client on node 0`);
		const ids = clients.map(s => s.id);
		// Broadcasts and emits pinned to the surviving node: the events emitted after the kill
		// reach the stream through it (a balanced emit the producer still sends to the dead node
		// before its heartbeat times out would reach no one, with or without recovery).
		const tags = [];
		let flowing = true;
		const flow = (async () => {
			for (let k = 0; flowing; k++) {
				const tag = `kill-${k}`;
				tags.push(tag);
				if (k % 3 === 0) c.producer.broadcast("$socket.emit", { eventName: "missed", eventParams: tag, room: ROOM });
				else if (k % 3 === 1) emitTo(c.producer, survivor.nodeID, "$socket.emit", { eventName: "missed", eventParams: tag, room: ROOM });
				else c.producer.broadcast("$socket.emit", { eventName: "missed", eventParams: tag });
				await h.sleep(10); // the flow's pace (100 events/s), not a synchronisation
			}
		})();
		let lastBefore;
		try {
			await h.waitFor(() => clients.every(s => tagsOf(s, "kill-").length >= 30), 5000, { what: "events before the kill" });
			await victim.stop("SIGKILL");
			lastBefore = clients.map(s => tagsOf(s, "kill-").length);
			await h.waitFor(() => clients.every(s => s.history.length === 2), 6000, { what: "the clients reconnect" });
			const n = tags.length;
			await h.waitFor(() => tags.length >= n + 50, 5000, { what: "events after the reconnect" });
		} finally {
			flowing = false;
			await flow;
		}
		await crossBarrier(c, clients, [survivor]);
		const onNode1 = proxy.target();
		for (const [i, s] of clients.entries()) {
			const what = `${s.kind} client`;
			assert.deepEqual(s.history.map(x => x.recovered), [false, true], `${what}: socket.recovered at each connect`);
			assert.equal(s.id, ids[i], `${what}: the same socket id`);
			assert.equal((await nodeOf(c, s)).nodeID, survivor.nodeID, `${what}: on the other node`);
			const got = receivedOf(s, "kill-");
			const gotTags = got.map(x => x.tag);
			assert.deepEqual([...gotTags].sort(), [...tags].sort(), `${what}: every event once`);
			// In order along each path: the broadcasts, the emits through the surviving node.
			for (const k of [[0, 2], [1]]) {
				const path = tag => k.includes(Number(tag.slice("kill-".length)) % 3);
				assert.deepEqual(gotTags.filter(path), tags.filter(path), `${what}: in order on path ${k}`);
			}
			assertSequences(got, what);
		}
		t.diagnostic(`${tags.length} events; clients had ${lastBefore.join(", ")} when node 0 was killed; proxy on node ${onNode1}`);
	});
});

// Its own cluster: a short maxDisconnectionDuration (and its own stream and bucket names) for
// the one case that waits for an expiry; the other cases keep a realistic one.
describe("steedos socket: the jetstream store's expiry (two nodes)", { skip }, () => {
	let c;
	before(async () => {
		c = await startJetStreamCluster({
			maxDisconnectionDuration: EXPIRY_MS, store: "jetstream",
			jetstream: { stream: "EXPIRY_TEST_HISTORY", bucket: "expiry_test_sessions" }
		});
	});
	afterEach(() => c && c.closeAll());
	after(() => stopJetStreamCluster(c));

	it("away longer than maxDisconnectionDuration: not recovered, and $socket.recovery.expired reaches a service exactly once (both nodes sweep)", async () => {
		const node = c.nodes[0];
		// Deliberate outage: the client comes back 2.5 s after the session expired, which is also
		// the window in which a second $socket.recovery.expired from the other node would show.
		const s = await connectU1(c, c.ports[0], WEBSOCKET.transports, EXPIRY_MS + 2500);
		const id = s.id;
		await dropTransport(c, s, node);
		const t0 = Date.now();
		emitFifty(c, "expired", c.nodes[1]);
		await h.waitFor(() => c.expired.some(e => e.sid === id), EXPIRY_MS + 4000, { what: "$socket.recovery.expired" });
		const expiredAfter = Date.now() - t0;
		assert.ok(expiredAfter >= EXPIRY_MS - 200, `expired ${expiredAfter} ms after the drop`);
		await h.waitFor(() => s.connected, 8000, { what: "the client reconnects" });
		await crossBarrier(c, [s]);
		assert.deepEqual(c.expired.filter(e => e.sid === id), [{ tenantId: "S1", userId: "U1", sid: id }], "announced once");
		assert.deepEqual(s.history.map(x => x.recovered), [false, false]);
		assert.notEqual(s.id, id);
		assert.deepEqual(tagsOf(s, "expired"), [], "nothing replayed");
	});

});

describe("steedos socket: the jetstream store needs a server with JetStream", { skip }, () => {
	const buses = [];
	const nodes = [];
	let producer;
	after(async () => {
		await h.stopBrokers(producer);
		await h.stopCppNodes(nodes);
		for (const b of buses) await b.stop();
	});

	async function bus(start) {
		const b = await start();
		buses.push(b);
		return b;
	}

	/** A gateway with `recovery` on `transporter` (protocol 5, the 0.15 producer's), `env` added to its environment. */
	function gateway(transporter, recovery, env = {}) {
		const node = startGateway({ transporter, protocolVersion: "5", logLevel: "info", env, extra: { gateway: { connectionStateRecovery: recovery } } });
		return node.then(n => (nodes.push(n), n));
	}

	/** `node` runs the jetstream store, on a new stream, and delivers a broadcast `$socket.emit` of `broker` from its history. */
	async function assertOneEventThroughHistory(broker, node, tag) {
		await gatewayPort(node);
		await h.waitForRemoteNode(broker, node.nodeID, ["socket.stats"], 10000);
		const stats = () => broker.call("socket.stats", {}, { nodeID: node.nodeID, timeout: 5000 });
		assert.equal((await stats()).recovery.store, "jetstream");
		broker.broadcast("$socket.emit", { eventName: "missed", eventParams: tag });
		await h.waitFor(async () => (await stats()).recovery.jetstream.delivered === 1, 5000, { what: "the event delivered from the history" });
		const js = (await stats()).recovery.jetstream;
		assert.equal(js.published, 1, JSON.stringify(js));
		assert.equal(js.lastSequence, 1, JSON.stringify(js));
	}

	const redis = process.env.REDIS_SERVER_BIN || "/usr/bin/redis-server";
	const refusals = [
		["a nats-server without JetStream", () => h.startNats(), false],
		["a Redis transporter", () => h.startRedis(), !fs.existsSync(redis) && `${redis} is not installed`]
	];
	for (const [what, start, skipIt] of refusals) {
		it(`store "jetstream" with ${what}: exit code 1, a critical line naming gateway.connectionStateRecovery.store`, { skip: skipIt }, async () => {
			const b = await bus(start);
			const node = await gateway(b.url, { maxDisconnectionDuration: 2000, store: "jetstream" });
			const res = await h.withTimeout(node.exited, 10000, "the node's exit");
			assert.equal(res.code, 1, node.logText());
			const line = node.logs.map(l => l.line).find(l => /gateway\.connectionStateRecovery\.store/.test(l));
			assert.ok(line, node.logText());
			assert.match(line, /critical/i, line);
		});
	}

	it("a Redis transporter with jetstream.servers: the jetstream store on that NATS, events through its history", { skip: !fs.existsSync(redis) && `${redis} is not installed` }, async () => {
		const r = await bus(() => h.startRedis());
		const n = await bus(() => h.startNats({ jetstream: true }));
		const onRedis = h.createBroker("0.15", { nats: r });
		try {
			await onRedis.start();
			const node = await gateway(r.url, { maxDisconnectionDuration: 2000, store: "jetstream", jetstream: { servers: n.url } });
			await assertOneEventThroughHistory(onRedis, node, "via-redis");
		} finally {
			await h.stopBrokers(onRedis);
		}
	});

	it("a tls:// transporter: the store's own connections speak TLS too, events through its history; a tls:// jetstream.servers that offers no TLS is refused", async () => {
		const certs = h.makeCertificates();
		let tlsBroker;
		try {
			const secure = await bus(() => h.startNats({ jetstream: true, tls: { cert: certs.cert, key: certs.key } }));
			assert.match(secure.url, /^tls:\/\//);
			tlsBroker = h.createBroker("0.15", { transporter: { type: "NATS", options: { url: secure.url, tls: { ca: [fs.readFileSync(certs.ca)] } } } });
			await tlsBroker.start();
			const start = recovery => gateway(secure.url, recovery, { SSL_CERT_FILE: certs.ca });
			await assertOneEventThroughHistory(tlsBroker, await start({ maxDisconnectionDuration: 2000, store: "jetstream" }), "over-tls");

			// The store's NATS named tls:// but serving plain text: no fallback to the clear.
			const plain = await bus(() => h.startNats({ jetstream: true }));
			const refused = await start({ maxDisconnectionDuration: 2000, store: "jetstream", jetstream: { servers: plain.url.replace(/^nats:/, "tls:") } });
			const res = await h.withTimeout(refused.exited, 15000, "the exit of the node whose store has no TLS");
			assert.equal(res.code, 1, refused.logText());
			assert.match(refused.logText(), /Secure Connection not available/i);
		} finally {
			await h.stopBrokers(tlsBroker);
			fs.rmSync(certs.dir, { recursive: true, force: true });
		}
	});

	it("store absent (auto): memory without JetStream (with a warning), jetstream with it", async () => {
		const stores = [];
		for (const jetstream of [false, true]) {
			const b = await bus(() => h.startNats({ jetstream }));
			producer = h.createBroker("0.15", { nats: b });
			await producer.start();
			const node = await gateway(b.url, { maxDisconnectionDuration: 2000 });
			await gatewayPort(node);
			await h.waitForRemoteNode(producer, node.nodeID, ["socket.stats"], 10000);
			const st = await producer.call("socket.stats", {}, { nodeID: node.nodeID, timeout: 5000 });
			stores.push(st.recovery.store);
			const warning = node.logs.map(l => l.line).find(l => /JetStream.*memory store/.test(l));
			if (jetstream) assert.equal(warning, undefined, warning);
			else assert.ok(warning, `a warning naming the memory store:\n${node.logText()}`);
			await h.stopBrokers(producer);
			producer = null;
			await h.stopCppNodes(node);
		}
		assert.deepEqual(stores, ["memory", "jetstream"]);
	});
});
