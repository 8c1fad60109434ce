"use strict";
// gateway-contract.md §5, §9 (events): JS producer -> Moleculer events -> Socket.IO clients, with
// broker.emit and broker.broadcast; bad payloads rejected and counted, node alive.
const { describe, it, before, after, afterEach } = require("node:test");
const { assert, startCluster, COOKIES, TRANSPORTS } = require("./fixture");

describe("steedos socket: Moleculer events to clients", () => {
	let c;
	before(async () => {
		c = await startCluster();
	});
	afterEach(() => c && c.closeAll());
	after(async () => {
		if (c) await c.stop();
	});

	// Every transport (issue 16): anon, u1 and u2 use the transport under test; u1b stays on
	// WebSocket on purpose, so each delivery also goes to a socket of another transport. Each
	// test connects its own (connectAll) and afterEach closes them.
	for (const t of TRANSPORTS) describe(`over ${t.name}`, () => {
		let anon, u1, u1b, u2, all;
		async function connectAll() {
			anon = await c.connect({ transports: t.transports });
			u1 = await c.connect({ transports: t.transports, cookie: COOKIES.U1 });
			u1b = await c.connect({ transports: ["websocket"], cookie: COOKIES.U1B }); // U1, other token, no rooms
			u2 = await c.connect({ transports: t.transports, cookie: COOKIES.U2 });
			all = [anon, u1, u1b, u2];
			await u1.emitWithAck("subscribe", { roomParts: ["space", "record:orders:change-42", "record:orders:change-7"] });
			await u1.emitWithAck("subscribe", { roomParts: "notification-change", individual: true });
			await u2.emitWithAck("subscribe", { roomParts: ["space", "record:orders:change-42"] });
			await u2.emitWithAck("subscribe", { roomParts: "notification-change", individual: true });
			for (const s of all) s.events.length = 0;
		}

		for (const how of ["emit", "broadcast"]) {
			it(`$metadata.* -> s:metadata:change to every socket (${how}, ${t.name})`, async () => {
				await connectAll();
				// Read before the events are sent: afterwards they may already have been counted.
				const rejected = (await c.stats()).rejected;
				c.producer[how]("$metadata.objects", { type: "objects", action: "updated", data: { _id: "o1", id: "ignored", name: "orders", code: "no", object_name: "orders_o", extra: 1 } });
				c.producer[how]("$metadata.apps", { type: "apps", action: "inserted", data: { id: "a1", code: "crm", name: "CRM" } });
				c.producer[how]("$metadata.object_fields", { type: "object_fields", action: "deleted", data: { _id: "f1", name: "amount", object: "orders", object_name: "other" } });
				c.producer[how]("$metadata.triggers", { type: "triggers", action: "updated", data: { _id: "t1", name: "x" } });
				await c.barrier(all, how);
				for (const s of all) {
					assert.deepEqual(c.got(s, "s:metadata:change"), [
						[{ type: "objects", action: "updated", _id: "o1", name: "orders", objectName: "orders_o" }],
						[{ type: "apps", action: "inserted", _id: "a1", name: "crm" }],
						[{ type: "object_fields", action: "deleted", _id: "f1", name: "amount", objectName: "orders" }]
					]);
				}
				assert.equal((await c.stats()).rejected, rejected, "an ignored type is not counted as rejected");
			});

			it(`$broadcast.$notification.users -> only the named users' individual rooms (${how}, ${t.name})`, async () => {
				await connectAll();
				c.producer[how]("$broadcast.$notification.users", { data: { tenantId: "S1", users: ["U1"], message: "hello" } });
				c.producer[how]("$broadcast.$notification.users", { data: { tenantId: "S2", users: ["U9", "U2"], message: { title: "t" } } });
				await c.barrier(all, how);
				assert.deepEqual(c.got(u1, "s:notification-change"), [[{ message: "hello" }]]);
				assert.deepEqual(c.got(u2, "s:notification-change"), [[{ message: { title: "t" } }]]);
				assert.deepEqual(c.got(u1b, "s:notification-change"), []);
				assert.deepEqual(c.got(anon, "s:notification-change"), []);
			});

			it(`$broadcast.socket.emit (nested) and $socket.emit (flat): room verbatim and global (${how}, ${t.name})`, async () => {
				await connectAll();
				c.producer[how]("$broadcast.socket.emit", { data: { eventName: "nested-room", eventParams: { a: [1, "x"] }, room: "S1-space" } });
				c.producer[how]("$broadcast.socket.emit", { data: { eventName: "nested-all", eventParams: "p" } });
				c.producer[how]("$socket.emit", { eventName: "flat-room", eventParams: { b: null }, room: "S2-space" });
				c.producer[how]("$socket.emit", { eventName: "flat-all", eventParams: 0 });
				c.producer[how]("$socket.emit", { eventName: "flat-false", eventParams: false, room: "S1-space" });
				c.producer[how]("$socket.emit", { eventName: "flat-empty", eventParams: "", room: "S1-space" });
				c.producer[how]("$socket.emit", { eventName: "no-prefix", eventParams: 1, room: "space" }); // verbatim: nobody
				await c.barrier(all, how);
				assert.deepEqual(c.got(u1, "nested-room"), [[{ a: [1, "x"] }]]);
				assert.deepEqual(c.got(u1, "flat-false"), [[false]]);
				assert.deepEqual(c.got(u1, "flat-empty"), [[""]]);
				assert.deepEqual(c.got(u2, "flat-room"), [[{ b: null }]]);
				for (const s of all) {
					assert.deepEqual(c.got(s, "nested-all"), [["p"]]);
					assert.deepEqual(c.got(s, "flat-all"), [[0]]);
					assert.deepEqual(c.got(s, "no-prefix"), []);
				}
				for (const s of [anon, u1b, u2]) assert.deepEqual(c.got(s, "nested-room"), []);
				for (const s of [anon, u1b, u1]) assert.deepEqual(c.got(s, "flat-room"), []);
			});

			it(`@objectRecordEvent.<object>.<action> -> s:record:<object>:change-<id> to its room only (${how}, ${t.name})`, async () => {
				await connectAll();
				c.producer[how]("@objectRecordEvent.orders.updated", { objectApiName: "orders", id: "42", spaceId: "S1", doc: { _id: "42", x: 1 } });
				c.producer[how]("@objectRecordEvent.orders.inserted", { objectName: "orders", doc: { _id: "7" }, spaceId: "S1" });
				c.producer[how]("@objectRecordEvent.orders.deleted", { id: 7, spaceId: "S1" });
				c.producer[how]("@objectRecordEvent.orders", { id: "42", spaceId: "S1" });
				await c.barrier(all, how);
				assert.deepEqual(c.got(u1, "s:record:orders:change-42"), [[{ _id: "42" }], [{ _id: "42" }]]);
				// `_id` keeps the JSON type it came with: the numeric id 7 stays a number; both name room -7.
				assert.deepEqual(c.got(u1, "s:record:orders:change-7"), [[{ _id: "7" }], [{ _id: 7 }]]);
				for (const s of [anon, u1b, u2]) {
					assert.deepEqual(c.got(s, "s:record:orders:change-42"), []);
					assert.deepEqual(c.got(s, "s:record:orders:change-7"), []);
				}
			});

			it(`bad payloads are rejected and counted, never delivered; node alive (${how}, ${t.name})`, async () => {
				await connectAll();
				const before = (await c.stats()).rejected;
				const bad = [
					["$metadata.objects", { type: "objects", action: "updated", data: "x" }],
					["$metadata.objects", "not an object"],
					["$broadcast.$notification.users", { data: { tenantId: "S1", users: "U1", message: "bad1" } }],
					["$broadcast.$notification.users", { data: { tenantId: "S1", users: ["U1", 5], message: "bad2" } }],
					["$broadcast.socket.emit", { data: { eventParams: 1, room: "S1-space" } }],
					["$broadcast.socket.emit", { data: { eventName: "bad-nested", room: "S1-space" } }],
					["$socket.emit", { eventName: "", eventParams: 1 }],
					["$socket.emit", { eventName: "bad-null", eventParams: null }],
					["$socket.emit", { eventName: "bad-room", eventParams: 1, room: "" }],
					["$socket.emit", { eventName: "disconnect", eventParams: 1 }],
					["$socket.emit", { eventName: "connect", eventParams: 1 }],
					["$socket.emit", { eventName: "connect_error", eventParams: 1 }],
					["$socket.emit", { eventName: "newListener", eventParams: 1 }],
					["@objectRecordEvent.orders.updated", { objectApiName: "orders", id: "42" }],
					["@objectRecordEvent.orders.updated", { objectApiName: "orders", spaceId: "S1" }],
					["$user.logout", { nothing: true }]
				];
				for (const [event, payload] of bad) c.producer[how](event, payload);
				await c.barrier(all, how);
				const stats = await c.stats();
				assert.equal(stats.rejected, before + bad.length);
				for (const s of all) {
					assert.deepEqual(s.events.map(e => e.event), ["barrier"], "only the barrier arrived");
					assert.equal(s.connected, true);
				}
				assert.equal(c.node.running(), true);
			});
		}
	});
});
