"use strict";
// gateway-contract.md §7: several gateway nodes. A balanced emit reaches one node of the
// `socket` group; every client, on whichever node, gets it exactly once. A broadcast is not
// forwarded again. A node that stops loses only its own clients.
const { describe, it, before, after } = require("node:test");
const { h, assert, startCluster } = require("./fixture");

describe("steedos socket: several gateway nodes (§7)", () => {
	let c, a1, a2, b1;
	before(async () => {
		c = await startCluster({ gateways: 2 });
		a1 = await c.connect({ gateway: 0 });
		a2 = await c.connect({ gateway: 0, transports: ["websocket"] });
		b1 = await c.connect({ gateway: 1 });
		// Both gateways must know each other's `socket` group before the forwarding is tested.
		for (const [from, to] of [[c.nodes[0], c.nodes[1]], [c.nodes[1], c.nodes[0]]]) {
			await h.waitFor(async () => {
				const list = await c.producer.call("$node.events", { withEndpoints: true }, { nodeID: from.nodeID });
				const item = list.find(e => e.name === "$socket.emit");
				return item && (item.endpoints || []).some(ep => ep.nodeID === to.nodeID);
			}, 8000, { what: `${from.nodeID} sees the socket group of ${to.nodeID}` });
		}
	});
	after(async () => {
		if (c) await c.stop();
	});

	const tags = (s, event) => c.got(s, event).map(args => args[0]);
	const everyone = () => [a1, a2, b1];
	const reset = () => everyone().forEach(s => (s.events.length = 0));

	const eventsIn = async () =>
		(await Promise.all(c.nodes.map(n => c.producer.call("socket.stats", {}, { nodeID: n.nodeID })))).map(st => st.events.in);

	it("every balanced emit reaches every client of both nodes exactly once", async () => {
		reset();
		const before = await eventsIn();
		const sent = Array.from({ length: 20 }, (_, i) => `e${i}`);
		for (const tag of sent) c.producer.emit("$socket.emit", { eventName: "tick", eventParams: tag });
		await Promise.all(everyone().map(s => c.received(s, "tick", sent.length)));
		await h.sleep(300); // a duplicate would arrive now
		for (const s of everyone()) assert.deepEqual(tags(s, "tick").sort(), sent.slice().sort());
		// Each node handled each event once: the ones Moleculer balanced to it, plus the ones the
		// other node forwarded.
		const after = await eventsIn();
		assert.deepEqual(after.map((n, i) => n - before[i]), [sent.length, sent.length]);
	});

	it("a broadcast reaches every client once and is not forwarded again", async () => {
		reset();
		const sent = Array.from({ length: 10 }, (_, i) => `b${i}`);
		for (const tag of sent) c.producer.broadcast("$socket.emit", { eventName: "cast", eventParams: tag });
		await Promise.all(everyone().map(s => c.received(s, "cast", sent.length)));
		await h.sleep(300);
		for (const s of everyone()) assert.deepEqual(tags(s, "cast").sort(), sent.slice().sort());
	});

	it("room events forwarded to the other node reach only that node's members", async () => {
		reset();
		const u1 = await c.connect({ gateway: 1, cookie: "X-Space-Id=S1; X-Auth-Token=t-u1" });
		await u1.emitWithAck("subscribe", { roomParts: "record:orders:change-42" });
		for (let i = 0; i < 6; i++) {
			c.producer.emit("@objectRecordEvent.orders.updated", { objectApiName: "orders", id: "42", spaceId: "S1" });
		}
		const changes = await c.received(u1, "s:record:orders:change-42", 6);
		assert.deepEqual(changes, Array.from({ length: 6 }, () => [{ _id: "42" }]));
		await h.sleep(300);
		assert.equal(c.got(u1, "s:record:orders:change-42").length, 6);
		for (const s of everyone()) assert.equal(c.got(s, "s:record:orders:change-42").length, 0);
	});

	it("when one node stops, the other keeps delivering to its own clients", async () => {
		await h.stopCppNodes(c.nodes[1]);
		await h.waitFor(() => b1.disconnects.length > 0, 5000, { what: "b1 disconnected" });
		await h.waitFor(() => !h.jsHasAction(c.producer, "socket.stats", c.nodes[1].nodeID), 5000, {
			what: "the producer forgets the stopped node"
		});
		reset();
		const sent = Array.from({ length: 5 }, (_, i) => `after${i}`);
		for (const tag of sent) c.producer.emit("$socket.emit", { eventName: "tick", eventParams: tag });
		await Promise.all([a1, a2].map(s => c.received(s, "tick", sent.length)));
		await h.sleep(200);
		for (const s of [a1, a2]) assert.deepEqual(tags(s, "tick").sort(), sent.slice().sort());
	});
});
