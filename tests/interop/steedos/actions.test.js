"use strict";
// gateway-contract.md §2.6, §6, §9 (actions, logout): socket.emit / stats / clients / disconnect
// called with broker.call + nodeID, ValidationError 422; `$user.logout` disconnects a token.
const { describe, it, before, after, afterEach } = require("node:test");
const { h, assert, startCluster, COOKIES, TRANSPORTS } = require("./fixture");

const { U1, U1B, U2 } = COOKIES;

async function expect422(p, what) {
	const err = await h.rejectionOf(p);
	assert.equal(err.code, 422, `${what}: ${err.message}`);
	assert.equal(err.name, "ValidationError", what);
}

describe("steedos socket: actions and logout", () => {
	let c;
	before(async () => {
		c = await startCluster();
	});
	after(async () => {
		if (c) await c.stop();
	});
	afterEach(async () => {
		if (c) await c.closeAll();
	});

	it("socket.stats has exactly the §9 keys", async () => {
		const anon = await c.connect({ transports: ["polling"] });
		const u1 = await c.connect({ transports: ["websocket"], cookie: U1 });
		await u1.emitWithAck("subscribe", { roomParts: ["space", "orders"] });
		const st = await c.stats();
		assert.deepEqual(Object.keys(st).sort(), ["auth", "connections", "events", "limits", "malformed", "nodeID", "refused", "refusedOrigins", "rejected", "rooms", "uptime"]);
		// Refusals by limit (issue 9), each a count since start.
		for (const key of ["attachments", "eventName", "packetSize", "jsonDepth", "busJsonDepth", "roomsPerSocket", "subscribeRate", "authInFlight"]) {
			assert.ok(Number.isInteger(st.limits[key]) && st.limits[key] >= 0, `limits.${key}: ${st.limits[key]}`);
		}
		// The gateway's connection-level limits (issue 9, limits-connections.test.js): nothing refused here.
		for (const key of ["connections", "connectionsPerAddress", "handshakeRate", "pollingSessions", "slowConsumers", "headerSize", "headersTimeout", "messageSize", "acceptPaused"]) {
			assert.equal(st.limits[key], 0, `limits.${key}`);
		}
		assert.equal(st.nodeID, c.node.nodeID);
		assert.deepEqual(Object.keys(st.connections).sort(), ["anonymous", "authenticated", "byTransport", "total"]);
		assert.deepEqual(Object.keys(st.connections.byTransport).sort(), ["polling", "websocket"]);
		assert.deepEqual(st.connections, { total: 2, anonymous: 1, authenticated: 1, byTransport: { polling: 1, websocket: 1 } });
		assert.equal(st.rooms, 2);
		assert.deepEqual(Object.keys(st.events).sort(), ["in", "out"]);
		assert.deepEqual(Object.keys(st.auth).sort(), ["calls", "failures"]);
		for (const v of [st.events.in, st.events.out, st.rejected, st.refused, st.refusedOrigins, st.malformed, st.auth.calls, st.auth.failures, st.uptime]) {
			assert.equal(typeof v, "number");
			assert.ok(Number.isInteger(v) && v >= 0);
		}
		assert.ok(st.auth.calls >= 1);
		// events: one global event (2 recipients), one room event (u1 only), then the barrier (global).
		c.producer.emit("$socket.emit", { eventName: "count-all", eventParams: 1 });
		c.producer.emit("$socket.emit", { eventName: "count-room", eventParams: 1, room: "S1-space" });
		await c.barrier([anon, u1]);
		const st2 = await c.stats();
		assert.equal(st2.events.in - st.events.in, 3, "events in: one per Moleculer event handled");
		assert.equal(st2.events.out - st.events.out, 2 + 1 + 2, "events out: one per recipient");
		// uptime (whole seconds) never goes back and moves on with the clock.
		assert.ok(st2.uptime >= st.uptime);
		await h.waitFor(async () => (await c.stats()).uptime > st2.uptime, 3000, { what: "uptime increases" });
		anon.close();
		u1.close();
		await h.waitFor(async () => (await c.stats()).connections.total === 0, 3000);
	});

	// Every transport (issue 16): the client-facing scenarios run once per entry of the list.
	for (const t of TRANSPORTS) {
		it(`socket.emit: room verbatim or global, delivered count; 422 on bad params (${t.name})`, async () => {
			const a = await c.connect({ transports: t.transports, cookie: U1 });
			const b = await c.connect({ transports: ["websocket"], cookie: U2 }); // another transport, on purpose
			const anon = await c.connect({ transports: t.transports });
			await a.emitWithAck("subscribe", { roomParts: "space" });
			assert.deepEqual(await c.call("emit", { event: "hello", data: { x: 1 }, room: "S1-space" }), { delivered: 1 });
			assert.deepEqual(await c.call("emit", { event: "all", data: 0 }), { delivered: 3 });
			assert.deepEqual(await c.call("emit", { event: "nobody", data: "d", room: "S9-space" }), { delivered: 0 });
			await c.barrier([a, b, anon]);
			assert.deepEqual(c.got(a, "hello"), [[{ x: 1 }]]);
			assert.deepEqual(c.got(b, "hello"), []);
			for (const s of [a, b, anon]) assert.deepEqual(c.got(s, "all"), [[0]]);
			for (const [params, what] of [
				[{ event: "x" }, "no data"],
				[{ event: "x", data: null }, "null data"],
				[{ data: 1 }, "no event"],
				[{ event: "", data: 1 }, "empty event"],
				[{ event: 5, data: 1 }, "numeric event"],
				[{ event: "x", data: 1, room: "" }, "empty room"],
				[{ event: "x", data: 1, room: 5 }, "numeric room"],
				[{ event: "connect", data: 1 }, "reserved connect"],
				[{ event: "disconnect", data: 1 }, "reserved disconnect"],
				[{ event: "disconnecting", data: 1 }, "reserved disconnecting"],
				[{ event: "removeListener", data: 1 }, "reserved removeListener"]
			]) {
				await expect422(c.call("emit", params), what);
			}
			for (const s of [a, b, anon]) s.close();
		});
	}

	it("socket.clients: entry shape and filters (AND)", async () => {
		const a = await c.connect({ transports: ["polling"], cookie: U1 });
		const a2 = await c.connect({ transports: ["websocket"], cookie: U1B });
		const b = await c.connect({ transports: ["websocket"], cookie: U2 });
		const anon = await c.connect({ transports: ["websocket"], cookie: "X-Space-Id=S1" });
		await a.emitWithAck("subscribe", { roomParts: ["space", "orders"] });
		await a2.emitWithAck("subscribe", { roomParts: "orders" });
		await b.emitWithAck("subscribe", { roomParts: "space" });
		const list = await c.call("clients");
		assert.equal(list.length, 4);
		for (const e of list) assert.deepEqual(Object.keys(e).sort(), ["anonymous", "id", "rooms", "tenantId", "transport", "userId"]);
		const ea = list.find(e => e.id === a.id);
		assert.deepEqual(Object.assign({}, ea, { rooms: ea.rooms.slice().sort() }), { id: a.id, userId: "U1", tenantId: "S1", anonymous: false, transport: "polling", rooms: ["S1-orders", "S1-space"] });
		assert.deepEqual(list.find(e => e.id === anon.id), { id: anon.id, userId: null, tenantId: "S1", anonymous: true, transport: "websocket", rooms: [] });
		const ids = l => l.map(e => e.id).sort();
		assert.deepEqual(ids(await c.call("clients", { userId: "U1" })), [a.id, a2.id].sort());
		assert.deepEqual(ids(await c.call("clients", { room: "S1-orders" })), [a.id, a2.id].sort());
		assert.deepEqual(ids(await c.call("clients", { room: "S1-space", userId: "U1" })), [a.id]);
		assert.deepEqual(ids(await c.call("clients", { room: "S2-space", userId: "U1" })), []);
		assert.deepEqual(await c.call("clients", { room: "nowhere" }), []);
		await expect422(c.call("clients", { room: 5 }), "numeric room");
		await expect422(c.call("clients", { userId: 5 }), "numeric userId");
		for (const s of [a, a2, b, anon]) s.close();
		await h.waitFor(async () => (await c.call("clients")).length === 0, 3000);
	});

	for (const t of TRANSPORTS) {
		it(`socket.disconnect: filters (AND), io server disconnect, 422 without a filter (${t.name})`, async () => {
			const a = await c.connect({ transports: t.transports, cookie: U1 });
			const a2 = await c.connect({ transports: ["websocket"], cookie: U1B });
			const b = await c.connect({ transports: ["websocket"], cookie: U2 });
			// On the transport under test, reconnecting: a server disconnect must read as one, never as
			// "transport close" (the client would come straight back; long-polling once did).
			const p = await c.connect({ transports: t.transports, cookie: U2, reconnection: true, reconnectionDelay: 50 });
			assert.deepEqual(await c.call("disconnect", { sid: p.id }), { disconnected: 1 });
			await h.waitFor(() => p.disconnects.length === 1, 3000, { what: `${t.name} client disconnected` });
			await c.barrier([b]);
			assert.deepEqual(p.disconnects, ["io server disconnect"]);
			assert.equal(p.events.filter(e => e.event === "connection-init").length, 1, "no reconnect");
			await expect422(c.call("disconnect", {}), "no filter");
			await expect422(c.call("disconnect", { userId: 5 }), "numeric userId");
			await expect422(c.call("disconnect", { sid: 5 }), "numeric sid");
			assert.deepEqual(await c.call("disconnect", { userId: "U1", tenantId: "S2" }), { disconnected: 0 });
			assert.deepEqual(await c.call("disconnect", { sid: a2.id }), { disconnected: 1 });
			await h.waitFor(() => a2.disconnects.length === 1, 3000);
			assert.deepEqual(a2.disconnects, ["io server disconnect"]);
			assert.deepEqual(await c.call("disconnect", { userId: "U1", tenantId: "S1" }), { disconnected: 1 });
			await h.waitFor(() => a.disconnects.length === 1, 3000);
			assert.deepEqual(a.disconnects, ["io server disconnect"]);
			assert.equal(b.connected, true);
			assert.deepEqual(await c.call("disconnect", { tenantId: "S2" }), { disconnected: 1 });
			await h.waitFor(() => b.disconnects.length === 1, 3000);
			assert.deepEqual(b.disconnects, ["io server disconnect"]);
		});
	}

	for (const [event, payload, how] of [
		["$broadcast.$user.logout", { authToken: "t-u1" }, "broadcast"],
		["$user.logout", { data: { authToken: "t-u1" } }, "emit"]
	]) for (const t of TRANSPORTS) {
		it(`${event} disconnects that token's sockets; the next connect asks the auth service again (${t.name})`, async () => {
			const a = await c.connect({ transports: t.transports, cookie: U1 });
			const a2 = await c.connect({ transports: ["websocket"], auth: { spaceId: "S1", token: "t-u1" } });
			const other = await c.connect({ transports: ["websocket"], cookie: U1B }); // same user, other token
			const b = await c.connect({ transports: t.transports, cookie: U2 });
			const rec = await c.connect({ transports: t.transports, cookie: U1, reconnection: true, reconnectionDelay: 50 }); // reconnects on "transport close"
			const callsBefore = c.authCalls.filter(x => x === "S1,t-u1").length;
			c.producer[how](event, payload);
			await h.waitFor(() => a.disconnects.length === 1 && a2.disconnects.length === 1 && rec.disconnects.length === 1, 4000, { what: "logout disconnects" });
			assert.deepEqual(a.disconnects, ["io server disconnect"]);
			assert.deepEqual(a2.disconnects, ["io server disconnect"]);
			await c.barrier([other, b]);
			assert.deepEqual(rec.disconnects, ["io server disconnect"], `reconnecting ${t.name} client`);
			assert.equal(rec.events.filter(e => e.event === "connection-init").length, 1, "no reconnect");
			assert.equal(other.connected, true);
			assert.equal(b.connected, true);
			const again = await c.connect({ transports: t.transports, cookie: U1 });
			assert.equal((await c.info(again)).userId, "U1");
			assert.equal(c.authCalls.filter(x => x === "S1,t-u1").length, callsBefore + 1, "cache dropped");
			for (const s of [again, other, b]) s.close();
		});
	}
});
