"use strict";
// The steedos-socket binary end to end: a bad configuration key stops it (§8); a Moleculer 0.15
// producer with protocolVersion "5"; gateway.pingInterval / pingTimeout / maxHttpBufferSize as the
// product reads them (§8, Engine.IO); a client reconnecting with back-off to a gateway stopped and
// started again on the same port. Every wait has a timeout; no sleep stands in for a barrier.
const { describe, it, before, after, afterEach } = require("node:test");
const { io } = require("socket.io-client");
const { h, assert, startCluster, startGateway, gatewayPort, record, COOKIES, TRANSPORTS } = require("./fixture");

const inits = s => s.events.filter(e => e.event === "connection-init").length;

describe("steedos socket binary: bad configuration stops the node naming the key (§8)", () => {
	const nodes = [];
	after(() => h.stopCppNodes(nodes));
	const cases = [
		["gateway.pingInterval", { gateway: { host: "127.0.0.1", port: 0, pingInterval: 0 } }],
		["gateway.pingTimeout", { gateway: { host: "127.0.0.1", port: 0, pingTimeout: "20s" } }],
		["gateway.maxHttpBufferSize", { gateway: { host: "127.0.0.1", port: 0, maxHttpBufferSize: -1 } }],
		["gateway.port", { gateway: { host: "127.0.0.1", port: 70000 } }],
		["protocolVersion", { protocolVersion: "6" }],
		["auth.timeout", { auth: { timeout: "soon" } }]
	];
	for (const [key, extra] of cases) {
		it(`${key}: exit code 1, message names the key`, async () => {
			// Nothing listens on port 1: the node must stop before it tries to connect.
			const node = await startGateway({ transporter: "nats://127.0.0.1:1", extra });
			nodes.push(node);
			const res = await h.withTimeout(node.exited, 5000, `exit with a bad ${key}`);
			assert.equal(res.code, 1, node.logText());
			const escaped = key.replace(/\./g, "\\.");
			assert.match(node.logText(), new RegExp(`configuration error: ${escaped}: `), node.logText());
		});
	}
});

describe("steedos socket binary: Moleculer 0.15 producer, protocolVersion \"5\"", () => {
	let nats, producer, gateway, port, s;
	before(async () => {
		nats = await h.startBus();
		producer = h.createBroker("0.15", { nats });
		await producer.start();
		gateway = await startGateway({ nats, protocolVersion: "5" });
		port = await gatewayPort(gateway);
		await h.waitForRemoteNode(producer, gateway.nodeID, ["socket.stats", "socket.emit"], 10000);
	});
	afterEach(() => s && s.close());
	after(async () => {
		await h.stopBrokers(producer);
		await h.stopCppNodes(gateway);
		if (nats) await nats.stop();
	});
	const stats = () => producer.call("socket.stats", {}, { nodeID: gateway.nodeID, timeout: 5000 });

	for (const t of TRANSPORTS) {
		it(`delivers $socket.emit and $metadata.* from a 0.15 emit and answers socket.stats (${t.name})`, async () => {
			await h.waitFor(async () => (await stats()).connections.total === 0, 4000, { what: "the previous test's client gone" });
			const before = await stats();
			s = record(io(`http://127.0.0.1:${port}`, { forceNew: true, reconnection: false, transports: t.transports }));
			await h.waitFor(() => inits(s) === 1, 6000, { what: "connection-init" });
			// A 0.15 broker ignores a node that speaks protocol 4, so being routable proves "5".
			producer.emit("$metadata.objects", { type: "objects", action: "updated", data: { _id: "o1", name: "orders" } });
			producer.emit("$socket.emit", { eventName: "v5", eventParams: { n: 5 } });
			await h.waitFor(() => s.events.some(e => e.event === "v5"), 4000, { what: "v5 event" });
			assert.deepEqual(s.events.filter(e => e.event !== "connection-init").map(e => [e.event, ...e.args]), [
				["s:metadata:change", { type: "objects", action: "updated", _id: "o1", name: "orders" }],
				["v5", { n: 5 }]
			]);
			const after = await stats();
			assert.equal(after.nodeID, gateway.nodeID);
			assert.equal(after.connections.total, 1);
			assert.equal(after.events.in - before.events.in, 2);
			assert.equal(after.events.out - before.events.out, 2);
		});
	}
});

describe("steedos socket binary: gateway.pingInterval, pingTimeout, maxHttpBufferSize", () => {
	const PING_INTERVAL = 300;
	const PING_TIMEOUT = 200;
	const MAX = 2000;
	let c;
	before(async () => {
		c = await startCluster({ extra: { gateway: { pingInterval: PING_INTERVAL, pingTimeout: PING_TIMEOUT, maxHttpBufferSize: MAX } } });
	});
	afterEach(() => c.closeAll());
	after(async () => {
		if (c) await c.stop();
	});

	it("the polling handshake reports the configured pingInterval, pingTimeout and maxPayload", async () => {
		const res = await fetch(`http://127.0.0.1:${c.port}/socket.io/?EIO=4&transport=polling`);
		assert.equal(res.status, 200);
		const body = await res.text();
		assert.match(body, /^0\{/);
		const hs = JSON.parse(body.slice(1));
		assert.equal(hs.pingInterval, PING_INTERVAL);
		assert.equal(hs.pingTimeout, PING_TIMEOUT);
		assert.equal(hs.maxPayload, MAX);
	});

	for (const t of TRANSPORTS) it(`a client that stops answering pings is closed about pingTimeout after the ping; one that answers stays (${t.name})`, async () => {
		const good = await c.connect({ transports: t.transports });
		const silent = await c.connect({ transports: t.transports });
		const pings = { good: 0, silent: [] };
		good.io.engine.on("ping", () => pings.good++);
		const engine = silent.io.engine;
		const send = engine._sendPacket.bind(engine);
		engine._sendPacket = (type, ...rest) => (type === "pong" ? undefined : send(type, ...rest));
		engine.on("ping", () => pings.silent.push(Date.now()));
		const t0 = Date.now();
		await h.waitFor(() => silent.disconnects.length > 0, PING_INTERVAL + PING_TIMEOUT + 3000, { what: "silent client closed" });
		const closedAt = Date.now();
		// Closed by the server (not the client's own ping timer): "transport close".
		assert.deepEqual(silent.disconnects, ["transport close"]);
		assert.equal(pings.silent.length, 1, "closed after the first unanswered ping");
		const afterPing = closedAt - pings.silent[0];
		assert.ok(afterPing >= PING_TIMEOUT - 50 && afterPing < PING_TIMEOUT + 1000, `closed ${afterPing} ms after the ping`);
		assert.ok(closedAt - t0 < PING_INTERVAL + PING_TIMEOUT + 1000, `closed ${closedAt - t0} ms after it went silent`);
		// The answering client outlives several ping rounds (counted, not slept).
		await h.waitFor(() => pings.good >= 3, 4 * PING_INTERVAL + 2000, { what: "3 pings on the answering client" });
		assert.equal(good.connected, true);
		assert.deepEqual(good.disconnects, []);
		await h.waitFor(async () => (await c.stats()).connections.total === 1, 3000, { what: "the node dropped the silent client" });
	});

	for (const { name, transports } of TRANSPORTS) {
		it(`maxHttpBufferSize: a message under it is delivered, one over it closes that client (${name})`, async () => {
			// Signed in: an anonymous socket may not subscribe (anonymousRooms is off).
			const cookie = COOKIES.U1;
			const under = await c.connect({ transports, cookie });
			const over = await c.connect({ transports, cookie });
			const parts = (ch, n) => Array.from({ length: n }, (_, i) => `${ch}${i}`.padEnd(200, ch));
			const small = parts("a", 4); // about 850 bytes
			const big = parts("b", 12); // about 2500 bytes
			assert.ok(JSON.stringify(small).length < MAX - 100 && JSON.stringify(big).length > MAX + 100);
			const ack = await under.timeout(3000).emitWithAck("subscribe", { roomParts: small });
			assert.equal((ack.rooms || []).length, 4, JSON.stringify(ack));
			let overAck = null;
			over.emit("subscribe", { roomParts: big }, a => (overAck = a));
			await h.waitFor(() => over.disconnects.length > 0, 4000, { what: "over-limit client closed" });
			assert.equal(overAck, null, "the over-limit message was not handled");
			assert.equal(under.connected, true);
			const again = await under.timeout(3000).emitWithAck("subscribe", { roomParts: small.slice(0, 1) });
			assert.equal((again.rooms || []).length, 1, JSON.stringify(again));
			await h.waitFor(async () => (await c.stats()).connections.total === 1, 3000, { what: "the node dropped the over-limit client" });
		});
	}
});

describe("steedos socket binary: a client reconnects with back-off to a gateway restarted on the same port", () => {
	let c, port;
	const nodes = [];
	before(async () => {
		c = await startCluster({ gateways: 0 });
		port = await h.freePort();
	});
	afterEach(async () => {
		await c.closeAll();
		await h.stopCppNodes(nodes.splice(0));
	});
	after(async () => {
		if (c) await c.stop();
	});
	async function start() {
		const node = await startGateway({ nats: c.nats, extra: { gateway: { port } } });
		nodes.push(node);
		assert.equal(await gatewayPort(node), port);
		await h.waitForRemoteNode(c.producer, node.nodeID, ["socket.stats"], 10000);
		return node;
	}

	for (const t of TRANSPORTS) {
		it(`SIGTERM, start again: connection-init again, then an event (${t.name})`, async () => {
			const first = await start();
			const s = c.client({
				port,
				transports: t.transports,
				reconnection: true,
				reconnectionDelay: 100,
				reconnectionDelayMax: 400,
				randomizationFactor: 0,
				timeout: 2000
			});
			const attempts = [];
			s.io.on("reconnect_attempt", n => attempts.push(n));
			await h.waitFor(() => inits(s) === 1, 6000, { what: "first connection-init" });
			const res = await first.stop("SIGTERM");
			assert.equal(res.code, 0);
			await h.waitFor(() => s.disconnects.length === 1, 4000, { what: "disconnect" });
			// Attempts fail while nothing listens (back-off 100, 200, 400 ms ...).
			await h.waitFor(() => attempts.length >= 2, 4000, { what: "two reconnect attempts" });
			assert.equal(s.connected, false);
			const second = await start();
			await h.waitFor(() => inits(s) === 2, 8000, { what: "connection-init after the restart" });
			c.producer.emit("$socket.emit", { eventName: "back", eventParams: "again" });
			await h.waitFor(() => s.events.some(e => e.event === "back"), 4000, { what: "event after the reconnect" });
			assert.deepEqual(s.events.filter(e => e.event === "back").map(e => e.args), [["again"]]);
			const stats = await c.producer.call("socket.stats", {}, { nodeID: second.nodeID, timeout: 5000 });
			assert.equal(stats.connections.total, 1);
		});
	}
});
