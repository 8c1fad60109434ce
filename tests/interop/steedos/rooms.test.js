"use strict";
// gateway-contract.md §3, §9 (rooms): subscribe / unsubscribe, acks, every refusal rule,
// `$socket.subscribe.<roomParts>` events, maxRoomsPerSocket, tenant isolation (§5 rooms).
const { describe, it, before, after, afterEach } = require("node:test");
const { h, assert, startCluster, COOKIES, TRANSPORTS } = require("./fixture");

const { U1, U2 } = COOKIES;

describe("steedos socket: rooms", () => {
	let c;
	before(async () => {
		c = await startCluster({ extra: { gateway: { maxRoomsPerSocket: 5 } } });
	});
	after(async () => {
		if (c) await c.stop();
	});
	afterEach(async () => {
		if (c) await c.closeAll();
	});

	// Every transport (issue 16): each scenario once per entry of the fixture's list.
	for (const t of TRANSPORTS) {
		it(`subscribe / unsubscribe: string, array, individual, acks (${t.name})`, async () => {
			const s = await c.connect({ transports: t.transports, cookie: U1 });
			assert.deepEqual(await s.emitWithAck("subscribe", { roomParts: "space" }), { rooms: ["S1-space"] });
			assert.deepEqual(await s.emitWithAck("subscribe", { roomParts: ["orders", "notifications"] }), { rooms: ["S1-orders", "S1-notifications"] });
			assert.deepEqual(await s.emitWithAck("subscribe", { roomParts: "notification-change", individual: true }), { rooms: ["S1-notification-change-U1"] });
			assert.deepEqual(await s.emitWithAck("subscribe", { roomParts: "record:orders:change-42", individual: false }), { rooms: ["S1-record:orders:change-42"] });
			assert.deepEqual((await c.info(s)).rooms.slice().sort(), ["S1-notification-change-U1", "S1-notifications", "S1-orders", "S1-record:orders:change-42", "S1-space"]);
			assert.deepEqual(await s.emitWithAck("unsubscribe", { roomParts: ["orders", "notifications"] }), { rooms: ["S1-orders", "S1-notifications"] });
			assert.deepEqual(await s.emitWithAck("unsubscribe", { roomParts: "notification-change", individual: true }), { rooms: ["S1-notification-change-U1"] });
			assert.deepEqual((await c.info(s)).rooms.slice().sort(), ["S1-record:orders:change-42", "S1-space"]);
			// without an ack id: the join happens, nothing is sent back
			s.emit("subscribe", { roomParts: "quiet" });
			await h.waitFor(async () => (await c.info(s)).rooms.includes("S1-quiet"), 3000);
			s.close();
		});

		it(`every refusal rule answers {error} and counts; the socket stays connected (${t.name})`, async () => {
			const s = await c.connect({ transports: t.transports, cookie: U1 });
			const refusals = [
				{},
				{ roomParts: 5 },
				{ roomParts: null },
				{ roomParts: { a: 1 } },
				{ roomParts: "" },
				{ roomParts: "x".repeat(257) },
				{ roomParts: "é".repeat(129) }, // 258 UTF-8 bytes
				{ roomParts: "a\u0001b" },
				{ roomParts: "a\u001fb" },
				{ roomParts: "a\u007fb" },
				{ roomParts: "a\nb" },
				{ roomParts: [] },
				{ roomParts: ["ok", ""] },
				{ roomParts: ["ok", 5] },
				{ roomParts: Array.from({ length: 65 }, (_, i) => `p${i}`) },
				{ roomParts: "space", individual: "yes" },
				{ roomParts: "space", individual: 1 },
				{ roomParts: "space", individual: null },
				{ roomParts: "notification-change" },
				{ roomParts: "notification-change-U2" },
				{ roomParts: "me" },
				{ roomParts: "me-U2" },
				{ roomParts: ["space", "notification-change-U1"] }
			];
			const before = (await c.stats()).refused;
			for (const args of refusals) {
				const reply = await s.emitWithAck("subscribe", args);
				assert.deepEqual(Object.keys(reply), ["error"], JSON.stringify(args));
				assert.equal(typeof reply.error, "string");
				assert.ok(reply.error.length > 0);
			}
			// unsubscribe is validated like subscribe
			assert.ok((await s.emitWithAck("unsubscribe", { roomParts: "" })).error);
			assert.ok((await s.emitWithAck("unsubscribe", {})).error);
			// no ack id: counted, nothing sent, no disconnect
			s.emit("subscribe", { roomParts: "" });
			await h.waitFor(async () => (await c.stats()).refused === before + refusals.length + 3, 3000, { what: "refused count" });
			assert.equal(s.connected, true);
			assert.deepEqual((await c.info(s)).rooms, []);
			// limits that are still accepted
			assert.deepEqual(await s.emitWithAck("subscribe", { roomParts: "x".repeat(256) }), { rooms: [`S1-${"x".repeat(256)}`] });
			assert.deepEqual(await s.emitWithAck("subscribe", { roomParts: "é".repeat(128) }), { rooms: [`S1-${"é".repeat(128)}`] });
			assert.deepEqual(await s.emitWithAck("subscribe", { roomParts: "notifications" }), { rooms: ["S1-notifications"] });
			assert.deepEqual(await s.emitWithAck("subscribe", { roomParts: "me", individual: true }), { rooms: ["S1-me-U1"] });
			// 64 parts is within the part limit (accepted: config.test.js), but over maxRoomsPerSocket (5)
			// here: refused by the room limit, and the reason says so.
			const r64 = await s.emitWithAck("subscribe", { roomParts: Array.from({ length: 64 }, (_, i) => `q${i}`) });
			assert.match(r64.error, /too many rooms/);
			s.close();
		});

		it(`maxRoomsPerSocket counts named rooms after the join (${t.name})`, async () => {
			const s = await c.connect({ transports: t.transports, cookie: U1 });
			assert.ok((await s.emitWithAck("subscribe", { roomParts: ["a", "b", "c", "d", "e", "f"] })).error);
			assert.deepEqual(await s.emitWithAck("subscribe", { roomParts: ["a", "b", "c", "d"] }), { rooms: ["S1-a", "S1-b", "S1-c", "S1-d"] });
			assert.deepEqual(await s.emitWithAck("subscribe", { roomParts: "e" }), { rooms: ["S1-e"] });
			assert.ok((await s.emitWithAck("subscribe", { roomParts: "f" })).error);
			assert.equal((await c.info(s)).rooms.length, 5);
			// unsubscribe has no room limit
			assert.deepEqual(await s.emitWithAck("unsubscribe", { roomParts: "a" }), { rooms: ["S1-a"] });
			assert.deepEqual(await s.emitWithAck("subscribe", { roomParts: "f" }), { rooms: ["S1-f"] });
			s.close();
		});

		it(`anonymous sockets may not join tenant rooms but get global events (${t.name})`, async () => {
			for (const opts of [{ cookie: "X-Space-Id=S1" }, { cookie: "X-Space-Id=S1; X-Auth-Token=nobody" }, {}]) {
				const s = await c.connect(Object.assign({ transports: t.transports }, opts));
				assert.ok((await s.emitWithAck("subscribe", { roomParts: "space" })).error);
				assert.ok((await s.emitWithAck("subscribe", { roomParts: "notification-change", individual: true })).error);
				assert.deepEqual((await c.info(s)).rooms, []);
				c.producer.emit("$socket.emit", { eventName: "global-one", eventParams: { g: 1 } });
				assert.deepEqual(await c.received(s, "global-one"), [[{ g: 1 }]]);
				s.close();
			}
		});

		it(`$socket.subscribe.<roomParts> is emitted for string subscriptions only (${t.name})`, async () => {
			const s = await c.connect({ transports: t.transports, cookie: U1 });
			c.subscribeEvents.length = 0;
			await s.emitWithAck("subscribe", { roomParts: "space" });
			await s.emitWithAck("subscribe", { roomParts: "notification-change", individual: true });
			await s.emitWithAck("subscribe", { roomParts: "record:orders:change-42", individual: false });
			await s.emitWithAck("subscribe", { roomParts: ["arr1", "arr2"] });
			await s.emitWithAck("subscribe", { roomParts: ["single"] });
			await s.emitWithAck("unsubscribe", { roomParts: "space" });
			await s.emitWithAck("subscribe", { roomParts: "" }); // refused: nothing
			// Barrier: one more string subscription. The node emits in order on one connection, so once
			// its event is here, anything the calls above would have emitted is here too.
			await s.emitWithAck("subscribe", { roomParts: "marker" });
			await h.waitFor(() => c.subscribeEvents.some(e => e.event === "$socket.subscribe.marker"), 4000, { what: "marker $socket.subscribe" });
			assert.deepEqual(c.subscribeEvents.slice(0, -1), [
				{ event: "$socket.subscribe.space", params: { roomParts: "space", individual: false, space: "S1" } },
				{ event: "$socket.subscribe.notification-change", params: { roomParts: "notification-change", individual: true, space: "S1", userId: "U1" } },
				{ event: "$socket.subscribe.record:orders:change-42", params: { roomParts: "record:orders:change-42", individual: false, space: "S1" } }
			]);
			s.close();
		});

		it(`tenant isolation: an S2 client never receives S1 room events or U1's notifications (${t.name})`, async () => {
			const u1 = await c.connect({ transports: t.transports, cookie: U1 });
			const u2 = await c.connect({ transports: t.transports, cookie: U2 });
			await u1.emitWithAck("subscribe", { roomParts: ["space", "record:orders:change-42"] });
			await u1.emitWithAck("subscribe", { roomParts: "notification-change", individual: true });
			for (const parts of ["space", "record:orders:change-42", "S1-space", "S1", "-space"]) {
				const r = await u2.emitWithAck("subscribe", { roomParts: parts });
				assert.ok(r.rooms, parts);
				assert.ok(r.rooms.every(room => room.startsWith("S2-")), JSON.stringify(r));
			}
			await u2.emitWithAck("subscribe", { roomParts: "notification-change", individual: true });
			for (const parts of ["notification-change-U1", "notification-change"]) {
				assert.ok((await u2.emitWithAck("subscribe", { roomParts: parts })).error, parts);
			}
			assert.ok((await u1.emitWithAck("subscribe", { roomParts: "notification-change-U1" })).error);
			c.producer.emit("$socket.emit", { eventName: "s1-space", eventParams: 1, room: "S1-space" });
			c.producer.broadcast("@objectRecordEvent.orders.updated", { objectApiName: "orders", id: "42", spaceId: "S1" });
			c.producer.broadcast("$broadcast.$notification.users", { data: { tenantId: "S1", users: ["U1", "U2"], message: "m1" } });
			await c.barrier([u1, u2]);
			assert.deepEqual(c.got(u1, "s1-space"), [[1]]);
			assert.deepEqual(c.got(u1, "s:record:orders:change-42"), [[{ _id: "42" }]]);
			assert.deepEqual(c.got(u1, "s:notification-change"), [[{ message: "m1" }]]);
			assert.deepEqual(c.got(u2, "s1-space"), []);
			assert.deepEqual(c.got(u2, "s:record:orders:change-42"), []);
			assert.deepEqual(c.got(u2, "s:notification-change"), []);
			u1.close();
			u2.close();
		});
	}
});
