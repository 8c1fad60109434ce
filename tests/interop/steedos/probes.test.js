"use strict";
// Issue 10: liveness and readiness probes on the gateway port, and JSON log lines.
// - /health answers 200 throughout; /ready is 200 only while the bus is connected, the node has
//   announced its service and the auth action has an endpoint, and 503 during a drain; a
//   cross-site Origin changes neither (probes are not behind the Origin policy).
// - With logFormat "json" (config) or --log-format json (command line), every line the node
//   writes is a JSON object with time, level, component and message, and holds no credential.
const { describe, it, before, after } = require("node:test");
const http = require("node:http");
const net = require("node:net");
const { h, assert, startCluster, startGateway, gatewayPort, authService, login } = require("./fixture");

const HEALTH = "/-/live";
const READY = "/-/ready";
const ISO_UTC_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** One GET on a fresh connection: { status, headers, body (parsed JSON) }. */
function get(port, path, headers = {}) {
	return new Promise((resolve, reject) => {
		const req = http.get({ host: "127.0.0.1", port, path, headers, agent: false }, res => {
			let text = "";
			res.setEncoding("utf8");
			res.on("data", chunk => (text += chunk));
			res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: JSON.parse(text) }));
		});
		req.setTimeout(3000, () => req.destroy(new Error(`GET ${path} timed out`)));
		req.on("error", reject);
	});
}

/** Polls `path` until it answers `status`; returns the answer and how long it took (ms). */
async function until(port, path, status, ms = 5000) {
	const t0 = Date.now();
	let last;
	await h.waitFor(async () => (last = await get(port, path)).status === status, ms, { what: `${path} ${status}`, interval: 50 });
	return Object.assign(last, { ms: Date.now() - t0 });
}

describe("health and readiness probes (custom paths)", () => {
	let c;
	let healthFailures = 0; // /health answers other than 200, polled all along
	let polling = true;
	let poller;
	before(async () => {
		c = await startCluster({ extra: { gateway: { healthPath: HEALTH, readyPath: READY, drainTimeout: 3000 } } });
		poller = (async () => {
			while (polling) {
				const res = await get(c.port, HEALTH).catch(() => ({ status: 0 }));
				if (res.status !== 200 && c.node.running()) healthFailures++;
				await new Promise(r => setTimeout(r, 100)); // the poll period, not a synchronisation
			}
		})();
	});
	after(async () => {
		polling = false;
		await poller;
		if (c) await c.stop();
	});

	it("ready once up; JSON, no-store; a cross-site Origin changes nothing; other methods 405; default paths unmounted", async () => {
		const ready = await until(c.port, READY, 200);
		assert.deepEqual(ready.body, { status: "ok" });
		assert.equal(ready.headers["cache-control"], "no-store");
		assert.match(ready.headers["content-type"], /^application\/json/);
		const health = await get(c.port, HEALTH);
		assert.deepEqual([health.status, health.body], [200, { status: "ok" }]);
		for (const path of [HEALTH, READY]) {
			const foreign = await get(c.port, path, { Origin: "https://evil.example" });
			assert.equal(foreign.status, 200, path);
			assert.equal(foreign.headers["access-control-allow-origin"], undefined);
		}
		const post = await fetch(`http://127.0.0.1:${c.port}${READY}`, { method: "POST" });
		assert.equal(post.status, 405);
		assert.equal((await fetch(`http://127.0.0.1:${c.port}/health`)).status, 404, "the default path is not served when renamed");
	});

	it("503 within 5 s of the bus stopping, 200 within 5 s of its return; /health stays 200", async () => {
		await c.nats.stop();
		const down = await until(c.port, READY, 503);
		assert.ok(down.body.reasons.includes("transporter disconnected"), JSON.stringify(down.body));
		assert.equal(down.body.status, "not ready");
		await c.nats.restart();
		const up = await until(c.port, READY, 200);
		console.log(`# bus stop -> /ready 503 after ${down.ms} ms; bus back -> 200 after ${up.ms} ms`);
		assert.equal(healthFailures, 0);
	});

	it("503 while the auth service is absent, 200 once it is back", async () => {
		await h.stopBrokers(c.auth);
		const down = await until(c.port, READY, 503);
		assert.deepEqual(down.body.reasons, ["auth action @steedos/service-accounts.getUserSession unavailable"]);
		const auth = h.createBroker("0.14", { nats: c.nats });
		auth.createService(authService([]));
		await auth.start();
		c.auth = auth; // stopped by c.stop()
		await until(c.port, READY, 200);
		assert.equal(healthFailures, 0);
	});

	it("503 (draining) on an open connection once SIGTERM arrives", async () => {
		polling = false; // the drain refuses new connections, /health included
		await poller;
		// New connections are refused during the drain, so the probe rides a keep-alive connection
		// opened before the signal; it is answered until the node has left the cluster.
		const sock = net.connect(c.port, "127.0.0.1");
		await new Promise((resolve, reject) => sock.once("connect", resolve).once("error", reject));
		let input = "";
		const answers = [];
		let wanted = null;
		sock.setEncoding("utf8");
		sock.on("data", chunk => {
			input += chunk;
			for (;;) {
				const end = input.indexOf("\r\n\r\n");
				if (end < 0) return;
				const length = Number(/content-length: (\d+)/i.exec(input.slice(0, end))[1]);
				if (input.length < end + 4 + length) return;
				answers.push({ status: Number(input.slice(9, 12)), body: JSON.parse(input.slice(end + 4, end + 4 + length)) });
				input = input.slice(end + 4 + length);
				if (wanted) wanted();
			}
		});
		const closed = new Promise(resolve => sock.once("close", resolve));
		const ask = () => new Promise(resolve => ((wanted = resolve), sock.write(`GET ${READY} HTTP/1.1\r\nHost: x\r\n\r\n`)));
		await ask();
		assert.equal(answers[0].status, 200);
		const stopping = c.node.stop("SIGTERM", 6000);
		let open = true;
		closed.then(() => (open = false, wanted && wanted()));
		// Ask again and again until the node closes the connection (it answers until then).
		while (open && !answers.some(a => a.status === 503)) await ask();
		const first503 = answers.findIndex(a => a.status === 503);
		assert.ok(first503 > 0, `a 503 before the connection closed: ${JSON.stringify(answers.map(a => a.status))}`);
		assert.ok(answers[first503].body.reasons.includes("draining"), JSON.stringify(answers[first503].body));
		sock.destroy();
		assert.equal((await stopping).code, 0);
		assert.equal(healthFailures, 0);
	});
});

/** Every line of `node`'s output as a JSON record with the four fields; none holds a secret. */
function checkJsonLines(node, secrets) {
	assert.ok(node.logs.length > 5, `only ${node.logs.length} lines`);
	for (const { line } of node.logs) {
		let record;
		assert.doesNotThrow(() => (record = JSON.parse(line)), `not JSON: ${line}`);
		assert.match(record.time, ISO_UTC_MS, line);
		assert.ok(["trace", "debug", "info", "warning", "error", "critical"].includes(record.level), line);
		assert.equal(typeof record.component, "string", line);
		assert.equal(typeof record.message, "string", line);
		for (const secret of secrets) assert.ok(!line.includes(secret), `a credential in: ${line}`);
	}
}

describe("JSON log lines", () => {
	it("logFormat \"json\" in the config: a whole end-to-end run, one JSON object per line, no credential", async () => {
		const c = await startCluster({ extra: { logFormat: "json" } });
		try {
			const { token, cookies } = login("U1", "S1");
			const s = await c.connect({ cookie: cookies[0], transports: ["websocket"] });
			const reply = await s.emitWithAck("subscribe", { roomParts: ["space", "record:orders:change-1"] });
			assert.ok(Array.isArray(reply.rooms), JSON.stringify(reply));
			await c.barrier([s]);
			const refused = await s.emitWithAck("x".repeat(300), {}); // over gateway.maxEventNameLength
			assert.ok(refused.error, JSON.stringify(refused));
			c.revoke(token);
			await h.waitFor(() => s.disconnects.length > 0, 4000, { what: "disconnect on logout" });
			assert.equal((await get(c.port, "/health")).status, 200, "default probe path");
			assert.equal((await c.node.stop("SIGTERM", 6000)).code, 0);
			assert.ok(c.node.logs.some(l => /"component":"gateway"/.test(l.line)));
			assert.ok(c.node.logs.some(l => /"level":"debug"/.test(l.line)), "logLevel still applies (debug)");
			checkJsonLines(c.node, [token, cookies[0]]);
		} finally {
			await c.stop();
		}
	});

	it("--log-format json on the command line, with the file saying text", async () => {
		const bus = await h.startBus();
		const node = await startGateway({ nats: bus, logLevel: "info", extra: { logFormat: "text" }, args: ["--log-format", "json"] });
		try {
			const port = await gatewayPort(node);
			assert.equal((await get(port, "/health")).status, 200);
			assert.equal((await node.stop("SIGTERM", 6000)).code, 0);
			assert.ok(!node.logs.some(l => /"level":"debug"/.test(l.line)), "logLevel info: no debug lines");
			checkJsonLines(node, []);
		} finally {
			await h.stopCppNodes([node]);
			await bus.stop();
		}
	});
});
