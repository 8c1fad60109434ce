"use strict";
// Issue 12, "behind a real load balancer": three gateway nodes behind nginx, then behind HAProxy,
// each run with the configuration docs/deploy.md shows (deploy/load-balancer/nginx.conf and
// haproxy.cfg, read here and changed only in the listening port and the node addresses).
// socket.io-client on default transports (polling, then the upgrade) and WebSocket only, through
// the balancer (and long-polling only): the auth cookies and the Host header pass, sessions stay on one node (sticky),
// clients are spread over the nodes, each event arrives exactly once; then one node drains on
// SIGTERM, its clients reconnect through the balancer to the others and get events again, and the
// node started again on the same port is given new clients; then one node is killed with SIGKILL
// while broadcasts flow: the others' clients miss none, its clients come back through the balancer.
//
// Stickiness on one machine: every client of this test comes from loopback. nginx pins by the
// client's address (hash $remote_addr consistent), so each client binds its own source address
// (127.0.0.N, an http.Agent with localAddress); HAProxy pins with its SERVERID cookie, which
// socket.io-client in Node keeps and sends back with withCredentials: true (engine.io-client's
// cookie jar), as a browser does.
const { describe, it, before, after, afterEach } = require("node:test");
const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");
const { h, assert, startCluster, startGateway, gatewayPort, COOKIES, statsOf, waitGatewaysKnowEachOther, crossBarrier, AUTH_ACTION } =
	require("./fixture");
const { DEPLOY_DIR, startNginx, startHaproxy } = require("../lib/balancers");

const DRAIN_TIMEOUT = 2000;
// Default transports (polling, then the upgrade), WebSocket only, and long-polling only (every
// event answers a held GET through the balancer). `ends`: the transport each settles on.
const CLIENT_TRANSPORTS = [
	{ name: "default", transports: ["polling", "websocket"], ends: "websocket" },
	{ name: "websocket", transports: ["websocket"], ends: "websocket" },
	{ name: "polling", transports: ["polling"], ends: "polling" }
];
const PER_TRANSPORT = 4;
// Who the clients are: [cookie name or null (anonymous), userId, tenant].
const USERS = [["U1", "U1", "S1"], ["U4", "U4", "S1"], ["U2", "U2", "S2"], [null, null, null]];

// minNodes: how many nodes the first 12 clients must reach. nginx hashes addresses (two nodes
// at least, not promised all three); HAProxy's round robin with every node passing its health
// check (/ready) gives each node clients. pollingReturns: the balancer sends an address back to
// its node once that node is up again (nginx's hash), so a polling-only client that had moved
// away finds its session unknown at its next request and reconnects once more; with HAProxy its
// cookie keeps it where it is.
const BALANCERS = [
	{ name: "nginx", start: startNginx, minNodes: 2, pollingReturns: true },
	{ name: "HAProxy", start: startHaproxy, minNodes: 3, pollingReturns: false }
];

describe("docs/deploy.md", () => {
	it("shows the two configurations this file runs, verbatim", () => {
		const doc = fs.readFileSync(path.join(h.REPO_ROOT, "docs", "deploy.md"), "utf8");
		for (const file of ["nginx.conf", "haproxy.cfg"]) {
			assert.ok(doc.includes(fs.readFileSync(path.join(DEPLOY_DIR, file), "utf8")), `docs/deploy.md lacks deploy/load-balancer/${file} as it is`);
		}
	});
});

describe("three gateway nodes behind nginx and HAProxy (docs/deploy.md)", () => {
	let c;
	let lb = null;
	let nextAddress = 2; // 127.0.0.N of the next client: one source address per client
	before(async () => {
		c = await startCluster({ gateways: 3, logLevel: "info", extra: { gateway: { drainTimeout: DRAIN_TIMEOUT } } });
		await waitGatewaysKnowEachOther(c);
	});
	afterEach(async () => {
		if (c) await c.closeAll().catch(async err => {
			for (const n of c.nodes.filter(n => n.running())) {
				const st = await statsOf(c, n);
				const list = await c.producer.call("socket.clients", {}, { nodeID: n.nodeID, timeout: 5000 });
				console.log(`# left open after closeAll: ${n.nodeID} stats ${JSON.stringify(st.connections)} clients ${JSON.stringify(list.map(e => [e.id, e.transport, e.userId]))}`);
			}
			throw err;
		});
		if (lb) await lb.stop();
		lb = null;
	});
	after(async () => {
		if (lb) await lb.stop();
		if (c) await c.stop();
	});

	/**
	 * A recording client of the balancer (fixture record()), reconnecting as a browser would, with
	 * its own loopback source address; on every connection-init it subscribes to a record room
	 * and to its notifications, as the Steedos client re-subscribes after a reconnect. s.inits counts connection-inits,
	 * s.subscribed the acknowledged subscribes.
	 */
	function lbClient({ transports, cookie }) {
		const address = `127.0.0.${nextAddress++}`;
		assert.ok(nextAddress < 255, "out of loopback source addresses");
		const extraHeaders = { origin: `http://127.0.0.1:${lb.port}` }; // same site: the Host must pass
		if (cookie) extraHeaders.cookie = cookie;
		const s = c.client({
			port: lb.port,
			transports,
			extraHeaders,
			reconnection: true,
			reconnectionDelay: 100,
			reconnectionDelayMax: 500,
			withCredentials: true,
			agent: new http.Agent({ localAddress: address }),
			localAddress: address
		});
		s.address = address;
		s.inits = 0;
		s.subscribed = 0;
		s.sessionIds = []; // the Socket.IO id of each connection (socket.io-client uses s.ids itself)
		s.subscribeErrors = [];
		s.on("connection-init", async () => {
			s.inits++;
			s.sessionIds.push(s.id);
			try {
				await s.emitWithAck("subscribe", { roomParts: "notification-change", individual: true });
				await s.emitWithAck("subscribe", { roomParts: "record:orders:change-42" });
				s.subscribed++;
			} catch (err) {
				// Disconnected before the acks: the next connection subscribes again.
				s.subscribeErrors.push(err.message);
			}
		});
		return s;
	}

	async function ready(s, inits = 1) {
		await h.waitFor(() => s.inits >= inits && s.subscribed >= inits, 8000, {
			what: `connection-init + subscribe #${inits} of ${s.address} (${s.transportName}; inits ${s.inits}, subscribed ${s.subscribed}, ` +
				`disconnects ${JSON.stringify(s.disconnects)}, subscribe errors ${JSON.stringify(s.subscribeErrors)})`
		});
	}

	/** nodeIndex of every socket id, from socket.clients of each running node; fails on a duplicate. */
	async function placement() {
		const where = new Map();
		const entries = new Map();
		for (let i = 0; i < c.nodes.length; i++) {
			if (!c.nodes[i].running()) continue;
			const list = await c.producer.call("socket.clients", {}, { nodeID: c.nodes[i].nodeID, timeout: 5000 });
			for (const entry of list) {
				assert.ok(!where.has(entry.id), `${entry.id} on two nodes`);
				where.set(entry.id, i);
				entries.set(entry.id, entry);
			}
		}
		return { where, entries };
	}

	/** Emits a global event, a user notification and a record event, balanced; returns the tag. */
	function emitEvents() {
		const tag = `e${Math.random().toString(36).slice(2)}`;
		c.producer.emit("$socket.emit", { eventName: "all", eventParams: tag });
		c.producer.emit("$broadcast.$notification.users", { data: { tenantId: "S1", users: ["U1"], message: tag } });
		c.producer.emit("@objectRecordEvent.orders.updated", { objectApiName: "orders", id: "42", spaceId: "S1", tag });
		return tag;
	}

	/** Asserts that `s` got the events of `tag` exactly once each, as its user and tenant should. */
	function assertExactlyOnce(s, tag, recordEvents) {
		const all = c.got(s, "all").filter(a => a[0] === tag);
		assert.equal(all.length, 1, `${s.address} ${s.user}: "all" ${all.length} times`);
		const notes = c.got(s, "s:notification-change").filter(a => a[0].message === tag);
		assert.equal(notes.length, s.user === "U1" ? 1 : 0, `${s.address} ${s.user}: notification ${notes.length} times`);
		// A record event carries no tag: the caller says how many the socket's connection has seen.
		assert.equal(c.got(s, "s:record:orders:change-42").length, s.tenant === "S1" ? recordEvents : 0,
			`${s.address} ${s.user}: record events`);
	}

	async function connectClients() {
		const clients = [];
		for (const t of CLIENT_TRANSPORTS) {
			for (let i = 0; i < PER_TRANSPORT; i++) {
				const [name, user, tenant] = USERS[i % USERS.length];
				const s = lbClient({ transports: t.transports, cookie: name && COOKIES[name] });
				Object.assign(s, { transportName: t.name, ends: t.ends, user, tenant });
				clients.push(s);
			}
		}
		await Promise.all(clients.map(s => ready(s)));
		// The default clients upgrade through the balancer: the upgrade request reached the node
		// that holds their polling session.
		await h.waitFor(() => clients.every(s => s.io.engine && s.io.engine.transport.name === s.ends), 8000, { what: "every default client upgraded" });
		return clients;
	}

	/** Starts node k again, on its port, with its configuration; resolves when the cluster knows it. */
	async function restartNode(k) {
		const { nodeID, ...config } = c.nodes[k].config;
		const again = await startGateway({ nats: c.nats, logLevel: "info",
			extra: Object.assign({}, config, { gateway: Object.assign({}, config.gateway, { port: c.ports[k] }) }) });
		assert.equal(await gatewayPort(again), c.ports[k]);
		c.nodes[k] = again;
		await h.waitForRemoteNode(c.producer, again.nodeID, ["socket.stats", "socket.emit"], 10000);
		await h.waitForCppSees(c.producer, again.nodeID, AUTH_ACTION, c.auth.nodeID, 10000);
		await h.waitForCppSees(c.producer, again.nodeID, "listener.ping", c.producer.nodeID, 10000);
		await waitGatewaysKnowEachOther(c);
		return again;
	}

	for (const B of BALANCERS) {
		it(`${B.name}: default, websocket-only and polling-only clients with their cookies, spread over the nodes, each event exactly once; a node drained, then back`, async () => {
			lb = await B.start(c.ports);
			const t0 = Date.now();
			const clients = await connectClients();
			const connectedMs = Date.now() - t0;
			let { where, entries } = await placement();
			const counts = c.nodes.map((_, i) => clients.filter(s => where.get(s.id) === i).length);
			console.log(`# ${B.name}: ${clients.length} clients connected and subscribed in ${connectedMs} ms, per node ${JSON.stringify(counts)}`);
			for (const s of clients) {
				assert.ok(where.has(s.id), `${s.address} is on a node`);
				const entry = entries.get(s.id);
				assert.equal(entry.userId, s.user, `${s.address}: the auth cookie passed the balancer`);
				assert.equal(entry.transport, s.ends, `${s.address} ${s.transportName}`);
			}
			assert.ok(counts.filter(n => n > 0).length >= B.minNodes, `clients on ${B.minNodes} nodes at least: ${counts}`);
			const stats = await Promise.all(c.nodes.map(n => statsOf(c, n)));
			assert.deepEqual(stats.map(st => st.connections.total), counts, "socket.stats agrees");
			assert.equal(clients.reduce((n, s) => n + s.connects, 0), clients.length, "one connect each, no reconnect");

			// Balanced emits: each reaches every client once, whichever node it entered.
			const tag1 = emitEvents();
			await crossBarrier(c, clients);
			for (const s of clients) assertExactlyOnce(s, tag1, 1);

			// The node with the most clients drains on SIGTERM; its clients reconnect through the
			// balancer to the two others.
			const k = counts.indexOf(Math.max(...counts));
			const old = c.nodes[k];
			const moved = clients.filter(s => where.get(s.id) === k);
			const stayed = clients.filter(s => where.get(s.id) !== k);
			const tStop = Date.now();
			const res = await old.stop("SIGTERM", DRAIN_TIMEOUT + 3000);
			assert.equal(res.code, 0, old.logText().slice(-2000));
			await Promise.all(moved.map(s => ready(s, 2)));
			const reconnectMs = Date.now() - tStop;
			({ where } = await placement());
			const after = c.nodes.map((_, i) => clients.filter(s => where.get(s.id) === i).length);
			console.log(`# ${B.name}: node ${k} drained (${res.ms} ms); its ${moved.length} clients ` +
				`(${moved.map(s => s.transportName).join(",")}) back on ${JSON.stringify(after)} within ${reconnectMs} ms of the SIGTERM`);
			assert.equal(after[k], 0);
			for (const s of clients) assert.ok(where.has(s.id), `${s.address} is on a running node`);
			for (const s of moved) assert.deepEqual(s.disconnects, ["transport close"], `${s.address}: one reconnectable disconnect`);
			for (const s of stayed) assert.deepEqual(s.disconnects, [], `${s.address}: untouched`);

			const running = c.nodes.filter(n => n.running());
			const tag2 = emitEvents();
			await crossBarrier(c, clients, running);
			for (const s of clients) {
				assertExactlyOnce(s, tag2, 2);
				assert.equal(c.got(s, "all").filter(a => a[0] === tag1).length, 1, `${s.address}: nothing replayed`);
			}

			// The node starts again on the same port; the balancer gives it new clients again.
			const again = await restartNode(k);
			const tBack = Date.now();
			const fresh = [];
			// New clients (new addresses for nginx's hash) until one lands on the restarted node:
			// each one is a connect the balancer decides.
			await h.waitFor(async () => {
				const s = lbClient({ transports: ["polling", "websocket"], cookie: COOKIES.U1 });
				Object.assign(s, { transportName: "default", ends: "websocket", user: "U1", tenant: "S1" });
				fresh.push(s);
				await ready(s);
				return (await statsOf(c, again)).connections.total > 0;
			}, 20000, { interval: 200, what: `a new client on the restarted node ${k}` });
			({ where } = await placement());
			assert.ok(fresh.some(s => where.get(s.id) === k));
			console.log(`# ${B.name}: the restarted node got a new client after ${Date.now() - tBack} ms (${fresh.length} new clients)`);
			const returning = B.pollingReturns ? moved.filter(s => s.ends === "polling") : [];
			if (returning.length) {
				// An event answers every held poll; the next poll of a returning client reaches the
				// restarted node, which does not know its session.
				c.producer.broadcast("$socket.emit", { eventName: "nudge", eventParams: 1 });
				await Promise.all(returning.map(s => ready(s, 3)));
				({ where } = await placement());
				for (const s of returning) assert.equal(where.get(s.id), k, `${s.address}: back on its node`);
				// The session each left on the other node is orphaned: its client polls elsewhere,
				// and the node keeps it until pingInterval + pingTimeout (45 s) pass without a pong.
				// An operator (here the test) can close it at once.
				for (const s of returning) {
					const orphan = s.sessionIds[1];
					const node = c.nodes[where.get(orphan)];
					assert.ok(node && where.get(orphan) !== k, `${s.address}: its previous session ${orphan} is still open on another node`);
					assert.deepEqual(await c.producer.call("socket.disconnect", { sid: orphan }, { nodeID: node.nodeID, timeout: 5000 }), { disconnected: 1 });
				}
				console.log(`# ${B.name}: ${returning.length} polling-only client(s) moved back to the restarted node (a third connect), leaving an orphaned session each on the other node`);
			}
			// Nobody else reconnected: a WebSocket keeps its node, a cookie keeps a polling session's.
			for (const s of clients) {
				const expected = returning.includes(s) ? 3 : moved.includes(s) ? 2 : 1;
				assert.equal(s.inits, expected, `${s.address} ${s.transportName}: connection-inits`);
			}
			const everyone = [...clients, ...fresh];
			const tag3 = emitEvents();
			await crossBarrier(c, everyone);
			for (const s of clients) assertExactlyOnce(s, tag3, 3);
			for (const s of fresh) assertExactlyOnce(s, tag3, 1);
		});
	}

	for (const B of BALANCERS) {
		it(`${B.name}: a node killed with SIGKILL loses only its sockets; they reconnect through the balancer and get events again; the others never stop delivering`, async () => {
			lb = await B.start(c.ports);
			const clients = await connectClients();
			const { where } = await placement();
			const counts = c.nodes.map((_, i) => clients.filter(s => where.get(s.id) === i).length);
			const k = counts.indexOf(Math.max(...counts));
			const killed = c.nodes[k];
			const moved = clients.filter(s => where.get(s.id) === k);
			const stayed = clients.filter(s => where.get(s.id) !== k);
			// A broadcast every 20 ms throughout: each live node gets it straight from the producer,
			// so the survivors' clients must miss none, whatever the kill does.
			const ticks = s => c.got(s, "tick").map(a => a[0]);
			let next = 0;
			const timer = setInterval(() => c.producer.broadcast("$socket.emit", { eventName: "tick", eventParams: next++ }), 20);
			let reconnectMs, droppedMs;
			try {
				await h.waitFor(() => clients.every(s => ticks(s).length >= 3), 5000, { what: "ticks on every client" });
				const tKill = Date.now();
				const res = await killed.stop("SIGKILL");
				assert.equal(res.signal, "SIGKILL");
				await Promise.all(moved.map(s => ready(s, 2)));
				reconnectMs = Date.now() - tKill;
				// Balanced emits reach only live nodes once the producer dropped the killed one
				// (its heartbeat timeout); before that the producer may still pick it.
				await h.waitFor(() => !h.jsHasAction(c.producer, "socket.stats", killed.nodeID), 15000, { what: "the producer drops the killed node" });
				droppedMs = Date.now() - tKill;
				const resumed = next;
				await h.waitFor(() => moved.every(s => ticks(s).some(t => t >= resumed)), 5000, { what: "ticks again on the moved clients" });
			} finally {
				clearInterval(timer);
			}
			const running = c.nodes.filter(n => n.running());
			await crossBarrier(c, clients, running);
			const all = Array.from({ length: next }, (_, i) => i);
			for (const s of stayed) {
				assert.deepEqual(s.disconnects, [], `${s.address}: untouched`);
				assert.deepEqual(ticks(s), all, `${s.address}: every broadcast, once, in order`);
			}
			for (const s of moved) {
				assert.equal(s.disconnects.length, 1, `${s.address}: ${s.disconnects}`);
				assert.match(s.disconnects[0], /^transport (close|error)$/, s.address);
				assert.equal(new Set(ticks(s)).size, ticks(s).length, `${s.address}: no broadcast twice`);
				assert.equal(ticks(s).at(-1), next - 1, `${s.address}: the last broadcast`);
			}
			const tag = emitEvents();
			await crossBarrier(c, clients, running);
			for (const s of clients) assertExactlyOnce(s, tag, 1);
			const lost = moved.map(s => all.filter(t => !ticks(s).includes(t)).length);
			console.log(`# ${B.name}: node ${k} killed; its ${moved.length} clients (${moved.map(s => s.transportName).join(",")}) ` +
				`reconnected and subscribed within ${reconnectMs} ms, missing ${Math.min(...lost)}..${Math.max(...lost)} of ${next} broadcasts ` +
				`(20 ms apart) meanwhile; the others missed none; the producer dropped the node after ${droppedMs} ms`);
			// The clients close first: with the node back, nginx's hash would send a polling
			// client's close to it instead of to the node that holds the session.
			await c.closeAll();
			await restartNode(k);
		});
	}

	// The control: what the SERVERID cookie does. A polling client that does not send it back
	// (socket.io-client without withCredentials: no cookie jar in Node, a cross-origin page in a
	// browser) has its next request balanced to another node, which does not know the session.
	it("HAProxy: a polling client that does not send the SERVERID cookie back cannot keep its session", async () => {
		lb = await startHaproxy(c.ports);
		const s = c.client({ port: lb.port, transports: ["polling"], cookie: COOKIES.U1, withCredentials: false });
		await h.waitFor(() => s.connectErrors.length > 0 || s.disconnects.length > 0 || s.connects > 0, 8000, { what: "the session's fate" });
		console.log(`# HAProxy without the cookie: connects ${s.connects}, connect_error ${JSON.stringify(s.connectErrors.map(e => e.message))}, disconnects ${JSON.stringify(s.disconnects)}`);
		assert.equal(s.connects, 0, "never connected");
		assert.equal(s.events.filter(e => e.event === "connection-init").length, 0);
	});
});
