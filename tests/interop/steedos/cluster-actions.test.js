"use strict";
// Issue 12, cluster-wide operator actions on three gateway nodes: socket.stats and socket.clients
// with `cluster: true` aggregate every node (also through the Moleculer REPL), socket.join /
// socket.leave by userId put that user's sockets into a room on every node and out again (a
// balanced `$socket.emit` to the room, barrier-checked, reaches exactly them), socket.disconnect
// cluster-wide closes the user's sockets on every node, and a node paused with SIGSTOP costs the
// caller one timeout and is named in `missing`. Each test connects its own clients, closed after it.
const { describe, it, before, after, afterEach } = require("node:test");
const { h, assert, startCluster, COOKIES, waitGatewaysKnowEachOther, crossBarrier } = require("./fixture");

describe("steedos socket: cluster-wide operator actions over three gateway nodes (issue 12)", () => {
	let c;
	let ids; // the gateway nodes' IDs, sorted
	before(async () => {
		c = await startCluster({ gateways: 3 });
		await waitGatewaysKnowEachOther(c);
		ids = c.nodes.map(n => n.nodeID).sort();
	});
	afterEach(() => c && c.closeAll());
	after(async () => {
		if (c) await c.stop();
	});

	/** `socket.<action>` asked of gateway node `node` (it fans out with `cluster: true`). */
	function callOn(node, action, params, timeout = 10000) {
		return c.producer.call(`socket.${action}`, params, { nodeID: c.nodes[node].nodeID, timeout });
	}

	// U1 on every node (u1 x3, two logins), U4 (same tenant) on nodes 0 and 2, U2 (tenant S2) on
	// node 1, an anonymous socket on node 2.
	async function connectSpread() {
		const u1 = [
			await c.connect({ gateway: 0, cookie: COOKIES.U1 }),
			await c.connect({ gateway: 1, cookie: COOKIES.U1B }),
			await c.connect({ gateway: 2, cookie: COOKIES.U1 })
		];
		const others = [
			await c.connect({ gateway: 0, cookie: COOKIES.U4 }),
			await c.connect({ gateway: 1, cookie: COOKIES.U2 }),
			await c.connect({ gateway: 2, cookie: COOKIES.U4 }),
			await c.connect({ gateway: 2 })
		];
		return { u1, others, all: [...u1, ...others] };
	}

	it("socket.stats and socket.clients with cluster: true answer for all three nodes, from any node", async () => {
		const { u1, all } = await connectSpread();
		for (const node of [0, 2]) {
			const stats = await callOn(node, "stats", { cluster: true });
			assert.deepEqual(Object.keys(stats.nodes).sort(), ids);
			assert.deepEqual(stats.missing, []);
			assert.deepEqual(ids.map(id => stats.nodes[id].connections.total), ids.map(id => (id === c.nodes[2].nodeID ? 3 : 2)));
			assert.deepEqual(stats.total.connections, { total: 7, anonymous: 1, authenticated: 6, byTransport: stats.total.connections.byTransport });
			assert.equal(stats.total.connections.byTransport.polling + stats.total.connections.byTransport.websocket, 7);
			assert.equal(stats.total.nodeID, undefined);
			for (const id of ids) assert.equal(stats.nodes[id].nodeID, id);
		}
		const clients = await callOn(1, "clients", { cluster: true });
		assert.equal(clients.total, 7);
		assert.deepEqual(clients.missing, []);
		assert.deepEqual(Object.keys(clients.nodes).sort(), ids);
		const where = new Map(clients.clients.map(e => [e.id, e.nodeID]));
		all.forEach((s, i) => assert.equal(where.get(s.id), c.nodes[[0, 1, 2, 0, 1, 2, 2][i]].nodeID, `node of socket ${i}`));
		const ofU1 = await callOn(0, "clients", { cluster: true, userId: "U1" });
		assert.deepEqual(ofU1.clients.map(e => e.id).sort(), u1.map(s => s.id).sort());
		assert.deepEqual(ids.map(id => ofU1.nodes[id].clients), [1, 1, 1]);
	});

	it("the Moleculer REPL: call socket.stats --cluster true shows every node", async () => {
		await connectSpread();
		const out = await h.repl("0.14", c.producer, "call", { cluster: "true" }, { actionName: "socket.stats" });
		assert.match(out, /missing: \[\]/, out);
		for (const id of ids) assert.ok(out.includes(id), `${id} in:\n${out}`);
		assert.match(out, /total: \{\s*connections: \{\s*total: 7,/, out);
	});

	it("socket.join / socket.leave by userId, cluster-wide: a $socket.emit to the room reaches exactly that user's sockets on every node", async () => {
		const { u1, others, all } = await connectSpread();
		const joined = await callOn(1, "join", { cluster: true, room: "S1-ops", userId: "U1" });
		assert.deepEqual(joined.missing, []);
		assert.deepEqual(joined.total, { matched: 3, joined: 3, alreadyIn: 0, skipped: { roomsPerSocket: 0, forbidden: 0 } });
		assert.deepEqual(ids.map(id => joined.nodes[id].joined), [1, 1, 1]);
		// Balanced emits (the producer picks a node; that node forwards to the others).
		for (let i = 0; i < 3; i++) c.producer.emit("$socket.emit", { eventName: "ops", eventParams: i, room: "S1-ops" });
		await crossBarrier(c, all);
		// Each once; their order is not promised (they enter through different nodes).
		for (const s of u1) assert.deepEqual(c.got(s, "ops").map(args => args[0]).sort(), [0, 1, 2], s.id);
		for (const s of others) assert.deepEqual(c.got(s, "ops"), [], s.id);

		// Another tenant's room is refused per socket (counted), not joined.
		const foreign = await callOn(0, "join", { cluster: true, room: "S2-ops", userId: "U1" });
		assert.deepEqual(foreign.total.skipped, { roomsPerSocket: 0, forbidden: 3 });
		assert.equal(foreign.total.joined, 0);

		const left = await callOn(2, "leave", { cluster: true, room: "S1-ops", inRoom: "S1-ops" });
		assert.deepEqual(left.total, { matched: 3, left: 3 });
		c.producer.emit("$socket.emit", { eventName: "ops", eventParams: "after", room: "S1-ops" });
		await crossBarrier(c, all);
		for (const s of all) assert.ok(!c.got(s, "ops").some(args => args[0] === "after"), s.id);
		const inRoom = await callOn(0, "clients", { cluster: true, room: "S1-ops" });
		assert.equal(inRoom.total, 0);
	});

	it("socket.disconnect by userId, cluster-wide: that user's sockets on every node are disconnected, the others stay", async () => {
		const { u1, others } = await connectSpread();
		const answer = await callOn(0, "disconnect", { cluster: true, userId: "U1" });
		assert.deepEqual(answer.missing, []);
		assert.deepEqual(answer.total, { disconnected: 3 });
		assert.deepEqual(ids.map(id => answer.nodes[id].disconnected), [1, 1, 1]);
		await h.waitFor(() => u1.every(s => s.disconnects.length > 0), 4000, { what: "U1's sockets disconnected" });
		for (const s of u1) assert.deepEqual(s.disconnects, ["io server disconnect"]);
		await crossBarrier(c, others);
		for (const s of others) assert.equal(s.connected, true);
		assert.equal((await callOn(1, "stats", { cluster: true })).total.connections.total, 4);
	});

	it("socket.emit with cluster: true, called on any node, reaches every socket of the cluster once and counts it", async () => {
		const { u1, all } = await connectSpread();
		for (const node of [0, 1, 2]) {
			const answer = await callOn(node, "emit", { cluster: true, event: "everyone", data: node });
			assert.deepEqual(answer.missing, []);
			assert.deepEqual(answer.total, { delivered: all.length });
			assert.deepEqual(ids.map(id => answer.nodes[id].delivered), ids.map(id => (id === c.nodes[2].nodeID ? 3 : 2)));
			const room = await callOn(node, "emit", { cluster: true, event: "tenant", data: node, room: "S1-space" });
			assert.equal(room.total.delivered, 0, "nobody subscribed S1-space");
		}
		await crossBarrier(c, all);
		for (const s of all) assert.deepEqual(c.got(s, "everyone").map(args => args[0]), [0, 1, 2], s.id);
		for (const s of all) assert.deepEqual(c.got(s, "tenant"), [], s.id);
		// Without `cluster` it stays this node's, as contract §6 says.
		const local = await callOn(1, "emit", { event: "local", data: 1 });
		assert.deepEqual(local, { delivered: 2 });
		await crossBarrier(c, all);
		assert.deepEqual(all.filter(s => c.got(s, "local").length).map(s => s.id), [u1[1].id, all[4].id]);
	});

	it("bad params are a ValidationError from the node asked, nothing is fanned out", async () => {
		await assert.rejects(callOn(0, "join", { cluster: true, room: "S1-ops" }), err => err.code === 422 && err.data[0].field === "userId|sid|inRoom");
		await assert.rejects(callOn(0, "stats", { cluster: true, timeout: 0 }), err => err.code === 422 && err.data[0].field === "timeout");
		await assert.rejects(callOn(0, "leave", { room: "S1-\u0007", sid: "x" }), err => err.code === 422 && err.data[0].type === "roomName");
	});

	// Last: it pauses a node. The pause (SIGSTOP, a deliberate outage) is shorter than the
	// heartbeat timeout (3 s), so the registry still lists the node and it is asked.
	it("a node paused with SIGSTOP: the answer comes after its timeout, names it missing, and has the others", async () => {
		await connectSpread();
		const paused = c.nodes[2];
		const timeout = 800;
		process.kill(paused.pid, "SIGSTOP");
		let stats, clients, elapsed;
		try {
			const t0 = Date.now();
			[stats, clients] = await Promise.all([
				callOn(0, "stats", { cluster: true, timeout }),
				callOn(1, "clients", { cluster: true, timeout })
			]);
			elapsed = Date.now() - t0;
		} finally {
			process.kill(paused.pid, "SIGCONT");
		}
		assert.ok(elapsed >= timeout - 50 && elapsed < timeout + 1200, `answered in ${elapsed} ms (timeout ${timeout} ms)`);
		for (const answer of [stats, clients]) {
			assert.deepEqual(answer.missing, [{ nodeID: paused.nodeID, reason: "timeout" }]);
			assert.deepEqual(Object.keys(answer.nodes).sort(), ids.filter(id => id !== paused.nodeID));
		}
		assert.equal(stats.total.connections.total, 4);
		assert.equal(clients.total, 4);
		// Resumed, it answers again.
		await h.waitFor(async () => (await callOn(0, "stats", { cluster: true, timeout: 2000 })).missing.length === 0, 8000, { what: `${paused.nodeID} answers again` });
	});
});
