"use strict";
// Issue 16 item 4, gateway-contract.md §5 with §2.6, §3, §7, §9: every §5 event that reaches
// sockets reaches exactly its recipients, once each, and nothing reaches anyone else, among every
// socket that could leak: the second user of the same tenant (U4 in S1, U5 in S2), the same user
// in the other tenant (U6 signed in to S1 and to S2; U1's token sent for S2, where U1 is no
// member), the other tenant's users, an anonymous socket (no cookie) and a revoked token.
//
// "Revoked" as the contract has it: a login of U6 (one token, valid in S1 and S2) that the mock
// auth service answered, so the node cached it in both spaces; then Steedos logs it out: the
// accounts service stops accepting the token (fixture REVOKED) and `$user.logout { authToken }`
// arrives, which must drop the cached sessions in every space and close that token's sockets, and
// only those (§2.6, §9). A socket that connects with the token afterwards is asked about again
// and is anonymous in the cookie's tenant: it gets what every socket gets, and no room of U6.
//
// One table (EVENTS: the Moleculer event, how it is sent, the Socket.IO event and argument, who
// must get it; everyone else must not) and one loop, on one node and on two nodes (clients spread
// over both, emits pinned alternately to each node so that half of them reach the other node only
// by forwarding), on every transport of the fixture's list. Absence is shown with barriers: a
// marker sent after the events and received by every socket (one node: same path, so everything
// before it arrived; two nodes: crossBarrier, one marker through each node, plus each node's
// events.in counter, since order across nodes is not promised).
const { describe, it, before, after, afterEach } = require("node:test");
const { h, assert, startCluster, COOKIES, cookie, login, TRANSPORTS, emitTo, eventsInOf, waitGatewaysKnowEachOther, crossBarrier } = require("./fixture");

// The sockets: name -> [cookie, gateway in the two-node run, rooms its subscriptions must get].
// U1 is there with two logins, on both nodes in the two-node run. The revoked token's sockets
// (revokedS1 on gateway 0, revokedS2 on gateway 1) are added once the token is revoked.
const PEOPLE = {
	u1: [COOKIES.U1, 0, ["S1-notification-change-U1"]],
	u1b: [COOKIES.U1B, 1, ["S1-notification-change-U1"]],
	u4: [COOKIES.U4, 1, ["S1-notification-change-U4"]], // the second user of S1
	u2: [COOKIES.U2, 0, ["S2-notification-change-U2"]],
	u5: [COOKIES.U5, 1, ["S2-notification-change-U5"]], // the second user of S2
	u6s1: [COOKIES.U6S1, 0, ["S1-notification-change-U6"]], // U6 in S1 ...
	u6s2: [COOKIES.U6S2, 1, ["S2-notification-change-U6"]], // ... and U6 in S2, same token
	u1inS2: [cookie("S2", "t-u1"), 0, null], // U1's token in S2, where U1 is no member: anonymous in S2
	anon: [null, 1, null] // no cookie: anonymous, no tenant
};
const REVOKED = { revokedS1: 0, revokedS2: 1 };
const SHARED = ["space", "record:orders:change-42"];

const S1 = ["u1", "u1b", "u4", "u6s1"];
const S2 = ["u2", "u5", "u6s2"];
const ALL = [...Object.keys(PEOPLE), ...Object.keys(REVOKED)];

// Every §5 event that reaches sockets: [Moleculer event, payload, sent with, Socket.IO event,
// its one argument, who must get it exactly once]. Every socket not named must get nothing.
// `$user.logout` sends nothing to sockets: it is the revocation step (revoke() below).
const EVENTS = [
	["$metadata.objects", { type: "objects", action: "updated", data: { _id: "o1", name: "orders" } }, "emit",
		"s:metadata:change", { type: "objects", action: "updated", _id: "o1", name: "orders" }, ALL],
	["$metadata.triggers", { type: "triggers", action: "updated", data: { _id: "t1", name: "x" } }, "emit", // type not forwarded
		"s:metadata:change", { type: "triggers", action: "updated", _id: "t1", name: "x" }, []],
	["$broadcast.$notification.users", { data: { tenantId: "S1", users: ["U1"], message: "S1 U1" } }, "emit",
		"s:notification-change", { message: "S1 U1" }, ["u1", "u1b"]],
	["$broadcast.$notification.users", { data: { tenantId: "S1", users: ["U6", "U4"], message: "S1 U6 U4" } }, "emit",
		"s:notification-change", { message: "S1 U6 U4" }, ["u4", "u6s1"]],
	["$broadcast.$notification.users", { data: { tenantId: "S2", users: ["U6"], message: "S2 U6" } }, "emit",
		"s:notification-change", { message: "S2 U6" }, ["u6s2"]],
	["$broadcast.$notification.users", { data: { tenantId: "S3", users: ["U1", "U2", "U6"], message: "S3" } }, "emit",
		"s:notification-change", { message: "S3" }, []],
	["$broadcast.socket.emit", { data: { eventName: "nested-room", eventParams: "S1 record", room: "S1-record:orders:change-42" } }, "emit",
		"nested-room", "S1 record", S1],
	["$broadcast.socket.emit", { data: { eventName: "nested-all", eventParams: { n: 1 } } }, "emit",
		"nested-all", { n: 1 }, ALL],
	["$socket.emit", { eventName: "flat-room", eventParams: "S2 space", room: "S2-space" }, "emit",
		"flat-room", "S2 space", S2],
	["$socket.emit", { eventName: "flat-personal", eventParams: "U5", room: "S2-notification-change-U5" }, "emit",
		"flat-personal", "U5", ["u5"]],
	["$socket.emit", { eventName: "flat-all", eventParams: 0 }, "emit",
		"flat-all", 0, ALL],
	// ObjectQL sends record events with broker.broadcast.
	["@objectRecordEvent.orders.updated", { objectApiName: "orders", id: "42", spaceId: "S2" }, "broadcast",
		"s:record:orders:change-42", { _id: "42" }, S2],
	["@objectRecordEvent.orders.deleted", { id: "42", spaceId: "S1" }, "broadcast",
		"s:record:orders:change-42", { _id: "42" }, S1],
	["@objectRecordEvent.orders.inserted", { id: "42", spaceId: "S3" }, "broadcast",
		"s:record:orders:change-42", { _id: "42" }, []]
];

/** What `name` must have received, in the table's order. */
const expectedFor = name => EVENTS.filter(row => row[5].includes(name)).map(row => [row[3], row[4]]);
/** What `s` received, without the session setup and the markers. */
const receivedBy = s => s.events.filter(e => e.event !== "connection-init" && e.event !== "barrier").map(e => [e.event, ...e.args]);
const byJson = list => list.map(x => JSON.stringify(x)).sort();

/**
 * Connects everyone on `t`, revokes a two-space login of U6 and connects with it again, sends the
 * table, and checks every socket. `gateways`: 1 (everyone on node 0) or 2 (spread as PEOPLE says).
 */
async function run(c, t, gateways) {
	const gw = i => (gateways === 2 ? i : 0);
	const barrier = sockets => (gateways === 2 ? crossBarrier(c, sockets) : c.barrier(sockets, "broadcast"));
	const sockets = {};
	for (const [name, [cookie, gateway, individual]] of Object.entries(PEOPLE)) {
		const s = await c.connect({ transports: t.transports, cookie, gateway: gw(gateway) });
		sockets[name] = s;
		const personal = await s.timeout(4000).emitWithAck("subscribe", { roomParts: "notification-change", individual: true });
		const shared = await s.timeout(4000).emitWithAck("subscribe", { roomParts: SHARED });
		if (individual) {
			assert.deepEqual(personal, { rooms: individual }, name);
			const tenant = individual[0].split("-")[0];
			assert.deepEqual(shared, { rooms: SHARED.map(p => `${tenant}-${p}`) }, name);
		} else {
			assert.ok(personal.error && shared.error, `${name}: anonymous, refused: ${JSON.stringify([personal, shared])}`);
		}
	}
	const people = Object.values(sockets);

	// The login to revoke: answered by the mock and cached, in S1 and in S2 on node 1 (so a
	// logout that dropped one space only would show on revokedS2, which connects there), and
	// in S1 on node 0 (the logout closes the token's sockets on every node).
	const { token, cookies: [inS1, inS2] } = login("U6", "S1", "S2");
	const loggedIn = [
		await c.connect({ transports: t.transports, cookie: inS1, gateway: gw(1) }),
		await c.connect({ transports: t.transports, cookie: inS2, gateway: gw(1) }),
		await c.connect({ transports: t.transports, cookie: inS1, gateway: gw(0) })
	];
	for (const s of loggedIn) assert.equal((await c.info(s)).userId, "U6", "the mock accepted the login");
	// $user.logout: exactly that token's sockets are closed, in both spaces, on any node.
	c.revoke(token);
	await h.waitFor(() => loggedIn.every(s => s.disconnects.length > 0), 4000, { what: "the revoked login's sockets closed" });
	await barrier(people);
	for (const s of loggedIn) assert.deepEqual(s.disconnects, ["io server disconnect"]);
	for (const [name, s] of Object.entries(sockets)) {
		assert.deepEqual(s.disconnects, [], `${name} kept`);
		assert.equal(s.connected, true, name);
	}
	// The revoked token again: the node asks (the cache entry is gone) and gets null: anonymous
	// in the cookie's tenant; it may not join U6's rooms, nor any tenant room.
	for (const [name, gateway] of Object.entries(REVOKED)) {
		const space = name.slice(-2);
		const calls = c.authCalls.filter(a => a === `${space},${token}`).length;
		const s = await c.connect({ transports: t.transports, cookie: space === "S1" ? inS1 : inS2, gateway: gw(gateway) });
		sockets[name] = s;
		assert.equal(c.authCalls.filter(a => a === `${space},${token}`).length, calls + 1, `${name}: not served from the cache`);
		const info = await c.info(s);
		assert.deepEqual([info.userId, info.anonymous, info.tenantId], [null, true, space], name);
		const personal = await s.timeout(4000).emitWithAck("subscribe", { roomParts: "notification-change", individual: true });
		const shared = await s.timeout(4000).emitWithAck("subscribe", { roomParts: SHARED });
		assert.ok(personal.error && shared.error, `${name}: refused: ${JSON.stringify([personal, shared])}`);
	}

	const all = Object.values(sockets);
	for (const s of all) s.events.length = 0;
	const before = await eventsInOf(c);
	EVENTS.forEach(([event, payload, how], i) => {
		if (how === "broadcast") c.producer.broadcast(event, payload);
		else if (gateways === 2) emitTo(c.producer, c.nodes[i % 2].nodeID, event, payload);
		else c.producer.emit(event, payload);
	});
	await barrier(all);
	const markers = gateways === 2 ? 2 : 1;
	assert.deepEqual((await eventsInOf(c)).map((n, i) => n - before[i]), c.nodes.map(() => EVENTS.length + markers),
		"each node handled each event once (received or forwarded), plus the markers");

	for (const [name, s] of Object.entries(sockets)) {
		const got = receivedBy(s);
		const want = expectedFor(name);
		// One node: one path, so the table's order. Two nodes: each exactly once, in any order.
		if (gateways === 2) assert.deepEqual(byJson(got), byJson(want), name);
		else assert.deepEqual(got, want, name);
		assert.equal(s.connected, true, name);
	}
}

describe("steedos socket: isolation on one node, every §5 event, every user who could leak", () => {
	let c;
	before(async () => {
		c = await startCluster();
	});
	afterEach(() => c && c.closeAll());
	after(async () => {
		if (c) await c.stop();
	});
	for (const t of TRANSPORTS) {
		it(`each recipient once, nobody else: second user, other tenant, same user elsewhere, anonymous, revoked (${t.name})`, () => run(c, t, 1));
	}
});

describe("steedos socket: isolation across two gateway nodes (§7), every §5 event", () => {
	let c;
	before(async () => {
		c = await startCluster({ gateways: 2 });
		await waitGatewaysKnowEachOther(c);
	});
	afterEach(() => c && c.closeAll());
	after(async () => {
		if (c) await c.stop();
	});
	for (const t of TRANSPORTS) {
		it(`clients on both nodes: each recipient once, nobody else, emits forwarded both ways (${t.name})`, () => run(c, t, 2));
	}
});
