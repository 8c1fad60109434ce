"use strict";
// gateway-contract.md §7: several gateway nodes. A balanced emit reaches one node of the
// `socket` group; every client, on whichever node, gets it exactly once. A broadcast is not
// forwarded again. A node that stops loses only its own clients. No sleep: crossBarrier (a marker
// sent through each node in turn, fixture.js) is waited for, and each node's events.in counter
// shows what it handled. Each scenario runs on every entry of the fixture's TRANSPORTS with
// fresh clients, closed after each test.
const { describe, it, before, after, afterEach } = require("node:test");
const { h, assert, startCluster, COOKIES, TRANSPORTS, waitGatewaysKnowEachOther, crossBarrier, eventsInOf } = require("./fixture");

describe("steedos socket: several gateway nodes (§7)", () => {
	let c;
	before(async () => {
		c = await startCluster({ gateways: 2 });
		// Both gateways must know each other's `socket` group before the forwarding is tested.
		await waitGatewaysKnowEachOther(c);
	});
	afterEach(() => c && c.closeAll());
	after(async () => {
		if (c) await c.stop();
	});

	const tags = (s, event) => c.got(s, event).map(args => args[0]);
	const eventsIn = () => eventsInOf(c);
	/** a1 and a2 on node 0, b1 on node 1, all on the transport under test. */
	async function everyone(t) {
		const transports = t.transports;
		return [
			await c.connect({ gateway: 0, transports }),
			await c.connect({ gateway: 0, transports }),
			await c.connect({ gateway: 1, transports })
		];
	}

	for (const t of TRANSPORTS) {
		it(`every balanced emit reaches every client of both nodes exactly once (${t.name})`, async () => {
			const all = await everyone(t);
			const before = await eventsIn();
			const sent = Array.from({ length: 20 }, (_, i) => `e${i}`);
			for (const tag of sent) c.producer.emit("$socket.emit", { eventName: "tick", eventParams: tag });
			// Every duplicate, direct or re-forwarded, has arrived once the markers have.
			await crossBarrier(c, all);
			// Order is not promised across the two entry nodes (cluster.test.js tests it per path).
			for (const s of all) assert.deepEqual(tags(s, "tick").sort(), sent.slice().sort());
			// Each node handled each event once: the ones Moleculer balanced to it, plus the ones the
			// other node forwarded (a balanced emit reaches one node, so without forwarding the sum
			// would be 20, not 40), plus the two markers.
			const after = await eventsIn();
			assert.deepEqual(after.map((n, i) => n - before[i]), [sent.length + 2, sent.length + 2]);
		});

		it(`a broadcast reaches every client once and is not forwarded again (${t.name})`, async () => {
			const all = await everyone(t);
			const before = await eventsIn();
			const sent = Array.from({ length: 10 }, (_, i) => `b${i}`);
			for (const tag of sent) c.producer.broadcast("$socket.emit", { eventName: "cast", eventParams: tag });
			await crossBarrier(c, all);
			// One sender, one path per node: the broadcasts keep their order.
			for (const s of all) assert.deepEqual(tags(s, "cast"), sent);
			// Not forwarded again: each node handled each broadcast once (a re-forward would add 10).
			const after = await eventsIn();
			assert.deepEqual(after.map((n, i) => n - before[i]), [sent.length + 2, sent.length + 2]);
		});

		it(`room events forwarded to the other node reach only that node's members (${t.name})`, async () => {
			const all = await everyone(t);
			const u1 = await c.connect({ gateway: 1, transports: t.transports, cookie: COOKIES.U1 });
			await u1.emitWithAck("subscribe", { roomParts: "record:orders:change-42" });
			const before = await eventsIn();
			for (let i = 0; i < 6; i++) {
				c.producer.emit("@objectRecordEvent.orders.updated", { objectApiName: "orders", id: "42", spaceId: "S1" });
			}
			await crossBarrier(c, [...all, u1]);
			assert.deepEqual(c.got(u1, "s:record:orders:change-42"), Array.from({ length: 6 }, () => [{ _id: "42" }]));
			const after = await eventsIn();
			assert.deepEqual(after.map((n, i) => n - before[i]), [8, 8], "each record event handled by both nodes");
			for (const s of all) assert.equal(c.got(s, "s:record:orders:change-42").length, 0);
		});
	}

	// Last: it stops node 1. One stop covers every transport: each node has a client of each.
	it("when one node stops, the other keeps delivering to its own clients (every transport)", async () => {
		const on = gateway => Promise.all(TRANSPORTS.map(t => c.connect({ gateway, transports: t.transports })));
		const mine = await on(0);
		const gone = await on(1);
		await h.stopCppNodes(c.nodes[1]);
		await h.waitFor(() => gone.every(s => s.disconnects.length > 0), 5000, { what: "node 1's clients disconnected" });
		await h.waitFor(() => !h.jsHasAction(c.producer, "socket.stats", c.nodes[1].nodeID), 5000, {
			what: "the producer forgets the stopped node"
		});
		const sent = Array.from({ length: 5 }, (_, i) => `after${i}`);
		for (const tag of sent) c.producer.emit("$socket.emit", { eventName: "tick", eventParams: tag });
		await crossBarrier(c, mine, [c.nodes[0]]);
		// Only node 0 is left: every balanced emit entered there, in order.
		for (const s of mine) {
			assert.deepEqual(tags(s, "tick"), sent);
			assert.deepEqual(s.disconnects, []);
		}
	});
});
