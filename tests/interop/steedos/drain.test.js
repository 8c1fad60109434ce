"use strict";
// Graceful drain on SIGTERM (issue 9): the node stops accepting, closes every Socket.IO socket
// with a reason socket.io-client reconnects on (so a load balancer hands it to another node),
// leaves the cluster with INFO-without-services then DISCONNECT, and exits with code 0 within
// gateway.drainTimeout. Then the same with many WebSocket clients (bench/load_client.cpp):
// DRAIN_CLIENTS (default 1000; bench/drain.sh runs 10,000).
const { describe, it, before, after } = require("node:test");
const net = require("node:net");
const path = require("node:path");
const fs = require("node:fs");
const { spawn } = require("node:child_process");
const { h, assert, startCluster, startGateway, gatewayPort, TRANSPORTS } = require("./fixture");

const DRAIN_TIMEOUT = 3000;

/** Resolves true when a TCP connection to the port is refused, false when it is accepted. */
function refused(port) {
	return new Promise(resolve => {
		const sock = net.connect(port, "127.0.0.1");
		sock.once("connect", () => (sock.destroy(), resolve(false)));
		sock.once("error", err => resolve(err.code === "ECONNREFUSED"));
	});
}

/** Records when (Date.now()) the producer hears `nodeID` leave, and how ($node.disconnected). */
function watchLeave(broker, nodeID) {
	const seen = { at: 0, unexpected: null, servicesAtLeave: null };
	broker.localBus.on("$node.disconnected", ({ node, unexpected }) => {
		if (node.id !== nodeID || seen.at) return;
		seen.at = Date.now();
		seen.unexpected = unexpected;
		seen.servicesAtLeave = (node.rawInfo && node.rawInfo.services || []).map(s => s.name);
	});
	return seen;
}

describe("drain on SIGTERM: socket.io-client clients on every transport, two gateways", () => {
	let cluster;
	before(async () => {
		cluster = await startCluster({ gateways: 2, extra: { gateway: { drainTimeout: DRAIN_TIMEOUT } } });
	});
	after(() => cluster && cluster.stop());

	it("exit 0 within drainTimeout + 1 s; one reconnectable disconnect per client; DISCONNECT at once; port refused", async () => {
		const [node, other] = cluster.nodes;
		const port = cluster.ports[0];
		const clients = [];
		for (const t of TRANSPORTS) {
			for (let i = 0; i < 2; i++) {
				const s = await cluster.connect({ transports: t.transports, reconnection: true, reconnectionDelay: 200, reconnectionDelayMax: 500 });
				s.transportName = t.name;
				s.attempts = 0;
				s.io.on("reconnect_attempt", () => s.attempts++);
				clients.push(s);
			}
		}
		// "default" starts on polling: wait for its upgrade so the WebSocket path is what is drained.
		await h.waitFor(() => clients.every(s => s.io.engine.transport.name === (s.transportName === "polling" ? "polling" : "websocket")), 5000, { what: "upgrades" });
		const onOther = await cluster.connect({ gateway: 1 });
		const seen = watchLeave(cluster.producer, node.nodeID);

		const t0 = Date.now();
		const stopping = node.stop("SIGTERM", DRAIN_TIMEOUT + 3000);
		await node.waitForLog(/draining/, 2000);
		assert.equal(await refused(port), true, "a new TCP connection is refused once the drain started");
		const res = await stopping;
		assert.equal(res.code, 0, node.logText().slice(-3000));
		assert.ok(res.ms < DRAIN_TIMEOUT + 1000, `exit after ${res.ms} ms`);
		console.log(`# drain (6 socket.io-client clients): exit code ${res.code} after ${res.ms} ms; ${node.logText().match(/drained in \d+ ms/)}`);
		assert.match(node.logText(), /drained in \d+ ms/, "drained, not cut by the deadline");

		await h.waitFor(() => seen.at > 0, 2000, { what: "$node.disconnected on the producer" });
		assert.equal(seen.unexpected, false, "DISCONNECT, not heartbeat expiry");
		assert.ok(seen.at - t0 < 1000, `the producer saw the node leave after ${seen.at - t0} ms`);
		assert.deepEqual(seen.servicesAtLeave, [], "its services were withdrawn (INFO without services) before DISCONNECT");
		assert.equal(cluster.producer.registry.nodes.get(node.nodeID).available, false);

		await h.waitFor(() => clients.every(s => s.disconnects.length > 0 && s.attempts > 0), 4000, { what: "disconnect and reconnect_attempt on every client" });
		await new Promise(r => setTimeout(r, 300)); // a second disconnect would arrive by now
		const reasons = {};
		for (const s of clients) {
			assert.deepEqual(s.disconnects, ["transport close"], `${s.transportName}: exactly one disconnect`);
			assert.notEqual(s.disconnects[0], "io server disconnect");
			assert.ok(s.active, `${s.transportName}: socket.io-client keeps it active (reconnecting)`);
			reasons[s.transportName] = s.disconnects[0];
		}
		console.log(`# reasons per transport: ${JSON.stringify(reasons)}`);

		// The other gateway is untouched and still serves.
		assert.deepEqual(onOther.disconnects, []);
		assert.ok(onOther.connected);
		const stats = await cluster.producer.call("socket.stats", {}, { nodeID: other.nodeID, timeout: 5000 });
		assert.equal(stats.connections.total, 1);
		for (const s of clients) s.close();
	});
});

const CLIENTS = Number(process.env.DRAIN_CLIENTS || 1000);
const LOAD_CLIENT = path.join(process.env.STEEDOS_BUILD_DIR || path.join(__dirname, "..", "..", "..", "build"), "load-client");

/** bench/load_client.cpp in --no-control mode: connects `clients` WebSocket clients. */
async function startLoadClient(port, clients) {
	const child = spawn(LOAD_CLIENT, ["--port", String(port), "--clients", String(clients), "--no-control",
		"--event", "none", "--timeout-s", "60", "--concurrency", "256"], { stdio: ["pipe", "pipe", "pipe"] });
	const exited = new Promise(r => child.once("exit", r));
	const { next } = h.resultLines(child, { name: "load-client" });
	const parse = h.parseResult;
	const connected = parse(await h.withTimeout(next("RESULT connect"), 90000, "load clients connected"));
	await h.withTimeout(next("RESULT interactive ready"), 5000, "load client ready");
	return {
		connected,
		closed(total) {
			child.stdin.write(`closed ${total}\n`);
			return next("RESULT closed").then(parse);
		},
		async stop() {
			child.stdin.end("quit\n");
			await h.withTimeout(exited, 10000, "load-client exit").catch(() => child.kill("SIGKILL"));
		}
	};
}

describe(`drain on SIGTERM: ${CLIENTS} WebSocket clients (bench/load_client.cpp)`, () => {
	let nats;
	let producer;
	let node;
	let load;
	before(async () => {
		nats = await h.startBus();
		producer = h.createBroker("0.14", { nats });
		await producer.start();
	});
	after(async () => {
		if (load) await load.stop();
		await h.stopBrokers(producer);
		if (node) await h.stopCppNodes([node]);
		await nats.stop();
	});

	it(`${CLIENTS} clients: every one closed (Engine.IO close + 1001), exit 0 within drainTimeout + 1 s, DISCONNECT at once`, { timeout: 180000 }, async () => {
		assert.ok(fs.existsSync(LOAD_CLIENT), `${LOAD_CLIENT} missing: make -C build load-client`);
		// load-client opens every connection at once (10,000 in bench/drain.sh): no handshake rate
		// limit here (limits-connections.test.js tests it).
		node = await startGateway({ nats, logLevel: "info", extra: { serviceName: "socket", gateway: { drainTimeout: DRAIN_TIMEOUT, maxHandshakesPerSecond: 0 } } });
		const port = await gatewayPort(node);
		await h.waitForRemoteNode(producer, node.nodeID, ["socket.stats"], 10000);
		load = await startLoadClient(port, CLIENTS);
		const stats = await producer.call("socket.stats", {}, { nodeID: node.nodeID, timeout: 5000 });
		assert.equal(stats.connections.total, CLIENTS);
		const seen = watchLeave(producer, node.nodeID);

		const t0 = Date.now();
		const closedResult = load.closed(CLIENTS);
		const res = await node.stop("SIGTERM", DRAIN_TIMEOUT + 5000);
		const closed = await h.withTimeout(closedResult, 10000, "every load client closed");
		const drained = node.logText().match(/drained in (\d+) ms/);
		console.log(`# drain (${CLIENTS} WebSocket clients, connected in ${load.connected.seconds} s): exit code ${res.code} after ${res.ms} ms; ${node.logText().match(/sockets closed in \d+ ms/)}; ${drained ? drained[0] : "deadline hit"}; load client: ${JSON.stringify(closed)}; producer saw DISCONNECT after ${seen.at ? seen.at - t0 : "-"} ms`);
		assert.equal(res.code, 0, node.logText().slice(-3000));
		assert.ok(res.ms < DRAIN_TIMEOUT + 1000, `exit after ${res.ms} ms`);
		assert.ok(drained, "drained, not cut by the deadline");
		assert.equal(closed.total, CLIENTS, "every connection closed");
		assert.equal(closed.eio_close, CLIENTS, "every client got the Engine.IO close packet");
		assert.equal(closed.close_frames, CLIENTS, "every client got a close frame");
		assert.equal(closed.code_1001, CLIENTS, "status 1001 Going Away");
		await h.waitFor(() => seen.at > 0, 2000, { what: "$node.disconnected on the producer" });
		assert.equal(seen.unexpected, false, "DISCONNECT, not heartbeat expiry");
		assert.ok(seen.at - t0 < 1000, `the producer saw the node leave after ${seen.at - t0} ms`);
	});
});

describe("drain on SIGTERM: the deadline (gateway.drainTimeout) bounds a client that never answers the close", () => {
	let nats;
	let node;
	before(async () => {
		nats = await h.startBus();
	});
	after(async () => {
		if (node) await h.stopCppNodes([node]);
		await nats.stop();
	});

	it("drainTimeout 300: exit 0 at ~300 ms although a WebSocket peer holds its connection (close wait 1 s)", async () => {
		node = await startGateway({ nats, logLevel: "info", extra: { serviceName: "socket", gateway: { drainTimeout: 300 } } });
		const port = await gatewayPort(node);
		// A raw WebSocket peer that never sends its close frame nor its FIN.
		const sock = net.connect(port, "127.0.0.1");
		let got = "";
		sock.on("data", d => (got += d.toString("latin1")));
		sock.on("error", () => {});
		sock.allowHalfOpen = true;
		sock.write("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n" +
			"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
		await h.waitFor(() => got.includes("101 Switching Protocols") && got.includes("\"sid\""), 5000, { what: "Engine.IO open" });
		const res = await node.stop("SIGTERM", 5000);
		console.log(`# drain with a silent peer, drainTimeout 300: exit code ${res.code} after ${res.ms} ms`);
		assert.equal(res.code, 0, node.logText().slice(-2000));
		assert.ok(res.ms >= 250 && res.ms < 300 + 1000, `exit after ${res.ms} ms`);
		assert.match(node.logText(), /drain timeout \(300 ms\): exiting with 1 connection\(s\) open/);
		sock.destroy();
	});
});
