"use strict";
// Issue 13, connection state recovery behind the load balancers of docs/deploy.md: three gateway
// nodes with the memory store, nginx and then HAProxy in front of them. A sticky balancer brings
// a client whose connection dropped back to the node that kept its socket (nginx by its address,
// HAProxy by its SERVERID cookie), so the node's own store recovers it: the same socket id, its
// rooms, exactly the events it missed, in the order that node sent them (in order along each path:
// the forwarded emits, the broadcasts). socket.io-client on default transports (polling, then the
// upgrade), and WebSocket only behind nginx (see BALANCERS for HAProxy).
//
// The outage length is deliberate (socket.io-client's reconnection delay), labelled as such;
// every other wait is on an observable state.
const { describe, it, before, after, afterEach } = require("node:test");
const http = require("node:http");
const { h, assert, startCluster, login, emitTo, waitGatewaysKnowEachOther, crossBarrier } = require("./fixture");
const { startNginx, startHaproxy } = require("../lib/balancers");

const AWAY_MS = 1000; // the deliberate outage
const ROOM = "S1-record:orders:change-42";
const DEFAULT = { name: "default", transports: ["polling", "websocket"] };
const WEBSOCKET = { name: "websocket", transports: ["websocket"] };
// HAProxy pins by its SERVERID cookie. socket.io-client in Node keeps the cookies of polling
// responses (its cookie jar) but not the one of a WebSocket handshake's 101, so a WebSocket-only
// Node client reconnects without it and is balanced anew; a browser keeps that cookie too.
const BALANCERS = [
	{ name: "nginx", start: startNginx, clientTransports: [DEFAULT, WEBSOCKET] },
	{ name: "HAProxy", start: startHaproxy, clientTransports: [DEFAULT] }
];

describe("steedos socket: connection state recovery behind nginx and HAProxy (three nodes, memory store)", () => {
	let c;
	let lb = null;
	let nextAddress = 2; // 127.0.0.N of the next client: nginx pins by address
	before(async () => {
		c = await startCluster({ gateways: 3, logLevel: "info", extra: { gateway: { connectionStateRecovery: { maxDisconnectionDuration: 10000 } } } });
		await waitGatewaysKnowEachOther(c);
	});
	afterEach(async () => {
		if (c) await c.closeAll();
		if (lb) await lb.stop();
		lb = null;
	});
	after(async () => {
		if (lb) await lb.stop();
		if (c) await c.stop();
	});

	/** A client of U1 through the balancer, with its own source address and cookie jar. */
	async function lbClient(transports) {
		const address = `127.0.0.${nextAddress++}`;
		const { cookies } = login("U1", "S1");
		const s = c.client({
			port: lb.port, transports, withCredentials: true,
			extraHeaders: { origin: `http://127.0.0.1:${lb.port}`, cookie: cookies[0] },
			agent: new http.Agent({ localAddress: address }), localAddress: address,
			reconnection: true, reconnectionDelay: AWAY_MS, reconnectionDelayMax: AWAY_MS, randomizationFactor: 0
		});
		await h.waitFor(() => s.events.some(e => e.event === "connection-init"), 6000, { what: "connection-init" });
		await s.emitWithAck("subscribe", { roomParts: "record:orders:change-42" });
		await s.emitWithAck("subscribe", { roomParts: "notification-change", individual: true });
		return s;
	}

	/** The node that holds `s` now, by socket.clients. */
	async function nodeOf(s) {
		for (const n of c.nodes) {
			const list = await c.producer.call("socket.clients", {}, { nodeID: n.nodeID, timeout: 5000 });
			if (list.some(entry => entry.id === s.id)) return n;
		}
		return null;
	}

	const tagsOf = (s, prefix) => s.events
		.map(e => (e.event === "missed" ? e.args[0] : e.event === "s:notification-change" ? e.args[0].message : null))
		.filter(tag => typeof tag === "string" && tag.startsWith(prefix));

	for (const B of BALANCERS) {
		it(`${B.name}: a dropped client comes back to its node and recovers its missed events (${B.clientTransports.map(t => t.name).join(" and ")} clients)`, async t => {
			lb = await B.start(c.ports);
			const clients = [];
			for (const ct of B.clientTransports) for (let i = 0; i < 2; i++) clients.push(Object.assign(await lbClient(ct.transports), { kind: ct.name }));
			const before = await Promise.all(clients.map(async s => ({ id: s.id, node: await nodeOf(s) })));
			const kept = await Promise.all(c.nodes.map(async n => (await c.producer.call("socket.stats", {}, { nodeID: n.nodeID, timeout: 5000 })).recovery.sessions));
			for (const s of clients) s.io.engine.close();
			// Every node has kept what it held of them before anything is emitted.
			await h.waitFor(async () => {
				const now = await Promise.all(c.nodes.map(async n => (await c.producer.call("socket.stats", {}, { nodeID: n.nodeID, timeout: 5000 })).recovery.sessions));
				return now.reduce((a, b) => a + b, 0) - kept.reduce((a, b) => a + b, 0) === clients.length;
			}, 4000, { what: "the nodes keep the dropped sockets" });
			const prefix = `${B.name}-`;
			const tags = [];
			for (let i = 0; i < 30; i++) {
				const tag = `${prefix}${i}`;
				tags.push(tag);
				// Room emits enter through node 0 (one forwarding path), the others are broadcasts.
				if (i % 3 === 0) emitTo(c.producer, c.nodes[0].nodeID, "$socket.emit", { eventName: "missed", eventParams: tag, room: ROOM });
				else if (i % 3 === 1) c.producer.broadcast("$broadcast.$notification.users", { data: { tenantId: "S1", users: ["U1"], message: tag } });
				else c.producer.broadcast("$socket.emit", { eventName: "missed", eventParams: tag });
			}
			await h.waitFor(() => clients.every(s => s.connected), AWAY_MS + 6000, { what: "every client reconnected through the balancer" });
			await crossBarrier(c, clients);
			for (const [i, s] of clients.entries()) {
				const what = `${B.name} ${s.kind} client ${i}`;
				assert.equal(s.recovered, true, `${what}: recovered`);
				assert.equal(s.id, before[i].id, `${what}: the same socket id`);
				assert.equal((await nodeOf(s)).nodeID, before[i].node.nodeID, `${what}: back on its node`);
				// Each once; in order along each path (the room emits forwarded by node 0, the
				// broadcasts straight to every node): nothing orders one path against the other.
				const got = tagsOf(s, prefix);
				assert.deepEqual([...got].sort(), [...tags].sort(), `${what}: exactly the missed events, once each`);
				const path = tag => Number(tag.slice(prefix.length)) % 3;
				for (const k of [0, 1, 2]) {
					assert.deepEqual(got.filter(tag => path(tag) === k), tags.filter(tag => path(tag) === k), `${what}: in order on path ${k}`);
				}
			}
			t.diagnostic(`${B.name}: ${clients.length} clients on nodes ${before.map(b => c.nodes.indexOf(b.node)).join(",")} recovered ${tags.length} missed events each`);
		});
	}
});
