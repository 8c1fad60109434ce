"use strict";
// Issue 13, connection state recovery on one node (gateway.connectionStateRecovery, the memory
// store), with real socket.io-client 4.8 (default transports and WebSocket only), a real
// nats-server and a moleculer 0.14 producer:
//   - a client's transport dropped for 2 s while 50 events flow to its rooms, its user and
//     everyone: on reconnect `recovered` is true, the socket id is the same, exactly the missed
//     events arrive, in order, nothing twice, and its rooms still deliver;
//   - away longer than maxDisconnectionDuration: `recovered` false, and `$socket.recovery.expired`
//     { tenantId, userId, sid } reaches the services;
//   - a logout of its token while away, or socket.disconnect of it while away: no restore;
//   - the client's own disconnect: not kept.
// The outage lengths are deliberate (socket.io-client's reconnection delay), labelled as such;
// every other wait is on an observable state.
const { describe, it, before, after, afterEach } = require("node:test");
const { h, assert, startCluster, login, TRANSPORTS } = require("./fixture");

const MAX_DISCONNECTION_MS = 4000;
const AWAY_MS = 2000; // the deliberate outage: socket.io-client waits this long before reconnecting
const ROOM = "S1-record:orders:change-42";
const RECOVERY_TRANSPORTS = TRANSPORTS.filter(t => t.name !== "polling");

describe("steedos socket: connection state recovery on one node (memory store)", () => {
	let c;
	let fallback; // a broker whose service records $socket.recovery.expired
	const expired = [];
	before(async () => {
		c = await startCluster({ extra: { gateway: { connectionStateRecovery: { maxDisconnectionDuration: MAX_DISCONNECTION_MS } } } });
		fallback = h.createBroker("0.14", { nats: c.nats });
		fallback.createService({
			name: "fallback",
			actions: { ping: () => "pong" },
			events: { "$socket.recovery.expired"(ctx) { expired.push(ctx.params); } }
		});
		await fallback.start();
		await h.waitForCppSees(c.producer, c.node.nodeID, "fallback.ping", fallback.nodeID, 10000);
	});
	afterEach(() => c && c.closeAll());
	after(async () => {
		if (fallback) await h.stopBrokers(fallback);
		if (c) await c.stop();
	});

	/** A client of U1 (a fresh login) that reconnects after `away` ms, subscribed to its rooms. */
	async function connectU1(t, away = AWAY_MS) {
		const { token, cookies } = login("U1", "S1");
		const s = await c.connect({
			cookie: cookies[0], transports: t.transports,
			reconnection: true, reconnectionDelay: away, reconnectionDelayMax: away, randomizationFactor: 0
		});
		await s.emitWithAck("subscribe", { roomParts: "notification-change", individual: true });
		await s.emitWithAck("subscribe", { roomParts: "record:orders:change-42" });
		s.token = token;
		return s;
	}

	/** Drops the client's transport under it and waits until the node has kept its socket. */
	async function dropTransport(s) {
		const kept = (await c.stats()).recovery.sessions;
		s.io.engine.close();
		await h.waitFor(async () => (await c.stats()).recovery.sessions === kept + 1, 4000, { what: "the node keeps the dropped socket" });
	}

	/** 50 tagged events: to its record room, to its user, to everyone, in turn. */
	function emitFifty(prefix) {
		const tags = [];
		for (let i = 0; i < 50; i++) {
			const tag = `${prefix}-${i}`;
			tags.push(tag);
			if (i % 3 === 0) c.producer.emit("$socket.emit", { eventName: "missed", eventParams: tag, room: ROOM });
			else if (i % 3 === 1) c.producer.emit("$broadcast.$notification.users", { data: { tenantId: "S1", users: ["U1"], message: tag } });
			else c.producer.emit("$socket.emit", { eventName: "missed", eventParams: tag });
		}
		return tags;
	}
	/** The tags `s` received from emitFifty, in the order it got them. */
	const tagsOf = (s, prefix) => s.events
		.map(e => (e.event === "missed" ? e.args[0] : e.event === "s:notification-change" ? e.args[0].message : null))
		.filter(tag => typeof tag === "string" && tag.startsWith(`${prefix}-`));

	for (const t of RECOVERY_TRANSPORTS) {
		it(`a transport dropped for 2 s while 50 events flow: recovered, same id, exactly the missed events in order (${t.name})`, async () => {
			const s = await connectU1(t);
			const id = s.id;
			assert.equal(s.recovered, false);
			await dropTransport(s);
			assert.equal(s.connected, false);
			const tags = emitFifty(`away-${t.name}`);
			await h.waitFor(() => s.connected, AWAY_MS + 4000, { what: "the client reconnects" });
			await c.barrier([s]);
			assert.equal(s.recovered, true, "socket.recovered");
			assert.equal(s.id, id, "the same socket id");
			assert.deepEqual(tagsOf(s, `away-${t.name}`), tags, "exactly the missed events, in order, once each");
			assert.equal(s.connects, 2);
			// Its rooms came back with it: a record event and a notification reach it.
			const after = emitFifty(`after-${t.name}`);
			await c.barrier([s]);
			assert.deepEqual(tagsOf(s, `after-${t.name}`), after);
			const stats = await c.stats();
			assert.ok(stats.recovery.recovered >= 1, JSON.stringify(stats.recovery));
		});
	}

	it("away longer than maxDisconnectionDuration: not recovered, and $socket.recovery.expired reaches the services", async () => {
		const s = await connectU1(RECOVERY_TRANSPORTS[0], MAX_DISCONNECTION_MS + 2000);
		const id = s.id;
		await dropTransport(s);
		emitFifty("expired");
		await h.waitFor(() => expired.some(e => e.sid === id), MAX_DISCONNECTION_MS + 4000, { what: "$socket.recovery.expired" });
		assert.deepEqual(expired.find(e => e.sid === id), { tenantId: "S1", userId: "U1", sid: id });
		await h.waitFor(() => s.connected, 6000, { what: "the client reconnects" });
		await c.barrier([s]);
		assert.equal(s.recovered, false);
		assert.notEqual(s.id, id);
		assert.deepEqual(tagsOf(s, "expired"), [], "nothing replayed");
	});

	it("a logout of its token while away: no restore (the token is refused, the kept socket dropped)", async () => {
		const s = await connectU1(RECOVERY_TRANSPORTS[0]);
		const id = s.id;
		await dropTransport(s);
		const before = (await c.stats()).recovery;
		c.revoke(s.token);
		await h.waitFor(async () => (await c.stats()).recovery.dropped === before.dropped + 1, 4000, { what: "the kept socket dropped at logout" });
		emitFifty("logout");
		await h.waitFor(() => s.connected || s.disconnects.length > 1, AWAY_MS + 4000, { what: "the client's next connect" });
		assert.notEqual(s.id, id);
		assert.equal(s.recovered, false);
		assert.deepEqual(tagsOf(s, "logout"), []);
	});

	it("socket.disconnect of a kept socket while away: no restore", async () => {
		const s = await connectU1(RECOVERY_TRANSPORTS[0]);
		const id = s.id;
		await dropTransport(s);
		assert.deepEqual(await c.call("disconnect", { sid: id }), { disconnected: 0, keptDropped: 1 });
		emitFifty("operator");
		await h.waitFor(() => s.connected, AWAY_MS + 4000, { what: "the client reconnects" });
		await c.barrier([s]);
		assert.equal(s.recovered, false);
		assert.notEqual(s.id, id);
		assert.deepEqual(tagsOf(s, "operator"), []);
	});

	it("the client's own disconnect is not kept", async () => {
		const s = await connectU1(RECOVERY_TRANSPORTS[0]);
		const id = s.id;
		const kept = (await c.stats()).recovery.sessions;
		s.disconnect();
		await h.waitFor(async () => (await c.stats()).connections.total === 0, 4000, { what: "the node sees the disconnect" });
		assert.equal((await c.stats()).recovery.sessions, kept);
		s.connect();
		await h.waitFor(() => s.connected, 4000, { what: "connected again" });
		assert.equal(s.recovered, false);
		assert.notEqual(s.id, id);
	});
});
