"use strict";
// Scenario 14: the product binary `steedos-socket` joins the cluster as service `socket` with the
// event subscriptions of gateway-contract.md §5 (group "socket").

const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { io } = require("socket.io-client");
const h = require("./lib/harness");
const { gatewayPort, record } = require("./steedos/fixture");

const CONTRACT_EVENTS = [
	"$metadata.*",
	"$broadcast.$notification.users",
	"$broadcast.socket.emit",
	"$socket.emit",
	"@objectRecordEvent.*.*",
	"$user.logout",
	"$broadcast.$user.logout"
];

for (const { version, protocol } of h.VERSIONS) {
	const namespace = protocol === "5" ? "prod" : "";
	describe(`steedos-socket product binary (moleculer ${version}, protocol ${protocol}, namespace '${namespace}')`, () => {
		let nats, node, js;

		before(async () => {
			nats = await h.startBus();
			js = h.createBroker(version, { nats, namespace });
			await js.start();
			node = await h.startCppNode({ binary: "steedos-socket", nats, protocolVersion: protocol, namespace });
		});

		after(async () => {
			await h.stopBrokers(js);
			await h.stopCppNodes(node);
			await nats.stop();
		});

		test("JS registry shows service `socket` with the contract's events in group `socket`", async () => {
			await h.waitFor(() => {
				const n = h.jsNode(js, node.nodeID);
				return n && n.available && n.services.some(s => s.name === "socket");
			}, 8000, { what: "service socket visible" });
			const n = h.jsNode(js, node.nodeID);
			assert.equal(n.client.type, "cpp");
			assert.ok(n.services.some(s => s.name === "$node"));
			const socket = n.services.find(s => s.name === "socket");
			assert.equal(typeof socket.settings, "object");
			assert.notEqual(socket.settings, null);

			const events = js.registry
				.getEventList({ onlyAvailable: true, withEndpoints: true })
				.filter(e => e.endpoints.some(ep => ep.nodeID === node.nodeID));
			const socketEvents = events.filter(e => e.group === "socket").map(e => e.name);
			for (const name of CONTRACT_EVENTS) {
				assert.ok(socketEvents.includes(name), `${name} (group socket) missing; has ${JSON.stringify(socketEvents)}`);
			}
		});

		test("contract events reach a client, bad payloads are rejected and counted, the node runs on", async t => {
			// An anonymous client (no auth service here): it gets the global events only.
			const port = await gatewayPort(node);
			const s = record(io(`http://127.0.0.1:${port}`, { forceNew: true, reconnection: false, transports: ["websocket"] }));
			t.after(() => s.close());
			await h.waitFor(() => s.events.some(e => e.event === "connection-init"), 6000, { what: "connection-init" });
			const before = await js.call("socket.stats", {}, { nodeID: node.nodeID, timeout: 2000 });
			await js.emit("$broadcast.socket.emit", { data: { eventName: "hello", eventParams: { a: 1 } } });
			await js.emit("$socket.emit", { eventName: "hello", eventParams: { a: 1 }, room: "r1" });
			await js.broadcast("@objectRecordEvent.users.updated", { objectApiName: "users", id: "u1", spaceId: "s1" });
			await js.emit("$metadata.objects", { type: "objects", action: "updated", data: { _id: "o1", name: "x" } });
			// Rejected payloads (contract §5): logged and counted, never a crash.
			await js.emit("$broadcast.socket.emit", { data: { eventName: "connect", eventParams: {} } });
			await js.emit("$broadcast.$notification.users", { data: { tenantId: "t", users: "not-an-array" } });
			await js.emit("@objectRecordEvent.users.deleted", 42);
			await js.emit("$socket.emit", null);
			// Barrier: this request leaves the same connection after the events, so the node has
			// handled all eight when it answers. Exactly the four bad ones are counted.
			const stats = await js.call("socket.stats", {}, { nodeID: node.nodeID, timeout: 2000 });
			assert.equal(stats.rejected - before.rejected, 4, JSON.stringify(stats));
			assert.equal(stats.events.in - before.events.in, 8, "all eight handled");
			assert.equal(stats.events.out - before.events.out, 2, "the two global events, to the one client");
			// Delivery: a marker sent after everything (same node, same client) is the barrier.
			assert.deepEqual(await js.call("socket.emit", { event: "barrier", data: 1 }, { nodeID: node.nodeID, timeout: 2000 }), { delivered: 1 });
			await h.waitFor(() => s.events.some(e => e.event === "barrier"), 4000, { what: "barrier" });
			assert.deepEqual(s.events.filter(e => e.event !== "connection-init").map(e => [e.event, ...e.args]), [
				["hello", { a: 1 }],
				["s:metadata:change", { type: "objects", action: "updated", _id: "o1", name: "x" }],
				["barrier", 1]
			]);
			assert.equal(node.running(), true);
			const health = await js.call("$node.health", {}, { nodeID: node.nodeID, timeout: 2000 });
			assert.equal(health.process.pid, node.pid);
		});

		test("SIGTERM stops the product cleanly (exit 0)", async () => {
			const res = await node.stop("SIGTERM", 5000);
			assert.equal(res.code, 0, `exit ${JSON.stringify(res)}:\n${node.logText().slice(-2000)}`);
			await h.waitFor(() => !h.jsNode(js, node.nodeID).available, 2000, { what: "product node gone" });
		});
	});
}
