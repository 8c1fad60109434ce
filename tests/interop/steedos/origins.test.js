"use strict";
// gateway-contract.md §2.1, secure by default against other sites (issue 17), against the product
// binary: with gateway.corsOrigins null, a browser Origin of the gateway's own site (the Host's
// registrable domain by the Public Suffix List) is reflected with credentials on the polling
// handshake, the preflight and the WebSocket upgrade; an Origin of another site carrying the
// user's cookies gets 403 on both transports, no CORS headers and no session (socket.stats
// unchanged but refusedOrigins); a request without Origin is served. The "*" mode and bad
// values of the key; the allow-list mode is in config.test.js.
const net = require("net");
const { describe, it, before, after, afterEach } = require("node:test");
const { h, assert, startCluster, failedToConnect, COOKIES, TRANSPORTS } = require("./fixture");

const COOKIE = COOKIES.U1;
const EVIL = "https://evil.example";

/**
 * One raw HTTP/1.1 exchange on a fresh connection, so that Host can be any name. Resolves
 * { status, headers (lower-case names), body } once the response head (and its body) arrived.
 */
function exchange(port, method, target, headers) {
	return new Promise((resolve, reject) => {
		const socket = net.connect(port, "127.0.0.1");
		let data = Buffer.alloc(0);
		let result = null;
		const timer = setTimeout(() => finish(new Error(`no answer to ${method} ${target}`)), 5000);
		function finish(err) {
			clearTimeout(timer);
			socket.destroy();
			if (err) reject(err);
			else resolve(result);
		}
		socket.on("error", finish);
		socket.on("data", chunk => {
			data = Buffer.concat([data, chunk]);
			const end = data.indexOf("\r\n\r\n");
			if (end < 0) return;
			const lines = data.subarray(0, end).toString("latin1").split("\r\n");
			const status = Number(lines[0].split(" ")[1]);
			const hdrs = {};
			for (const line of lines.slice(1)) {
				const colon = line.indexOf(":");
				hdrs[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
			}
			const length = Number(hdrs["content-length"] || 0);
			if (status !== 101 && data.length < end + 4 + length) return;
			result = { status, headers: hdrs, body: data.subarray(end + 4, end + 4 + length).toString() };
			finish();
		});
		socket.on("end", () => finish(result ? null : new Error(`connection closed without an answer to ${method} ${target}`)));
		const lines = [`${method} ${target} HTTP/1.1`];
		for (const [name, value] of Object.entries(headers)) if (value != null) lines.push(`${name}: ${value}`);
		socket.write(lines.join("\r\n") + "\r\n\r\n");
	});
}

/** The three requests of an attacker's page (or of a legitimate one): handshake, preflight, upgrade. */
function handshake(port, { host, origin, cookie }) {
	return exchange(port, "GET", "/socket.io/?EIO=4&transport=polling", { Host: host, Origin: origin, Cookie: cookie });
}
function preflight(port, { host, origin }) {
	return exchange(port, "OPTIONS", "/socket.io/?EIO=4&transport=polling", {
		Host: host,
		Origin: origin,
		"Access-Control-Request-Method": "POST",
		"Access-Control-Request-Headers": "content-type"
	});
}
function upgrade(port, { host, origin, cookie }) {
	return exchange(port, "GET", "/socket.io/?EIO=4&transport=websocket", {
		Host: host,
		Origin: origin,
		Cookie: cookie,
		Upgrade: "websocket",
		Connection: "Upgrade",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
		"Sec-WebSocket-Version": "13"
	});
}

function assertNoCors(res, what) {
	assert.equal(res.headers["access-control-allow-origin"], undefined, what);
	assert.equal(res.headers["access-control-allow-credentials"], undefined, what);
	assert.equal(res.headers["access-control-allow-methods"], undefined, what);
}

function assertReflected(res, origin, what) {
	assert.equal(res.headers["access-control-allow-origin"], origin, what);
	assert.equal(res.headers["access-control-allow-credentials"], "true", what);
	assert.equal(res.headers.vary, "Origin", what);
}

/** socket.stats without the fields that move on their own. */
function statsShape(st) {
	const { uptime, refusedOrigins, ...rest } = st;
	return rest;
}

describe("steedos socket: origins, default (corsOrigins null)", () => {
	let c;
	before(async () => {
		c = await startCluster();
	});
	afterEach(() => c && c.closeAll());
	after(async () => {
		if (c) await c.stop();
	});

	it("the attacker's requests: another site with the user's cookies gets 403, no CORS headers, no session", async () => {
		const host = `127.0.0.1:${c.port}`;
		const before = await c.stats();
		const authCalls = c.authCalls.length;
		const attack = { host, origin: EVIL, cookie: COOKIE };

		const hs = await handshake(c.port, attack);
		assert.equal(hs.status, 403);
		assert.deepEqual(JSON.parse(hs.body), { code: 4, message: "Forbidden" });
		assertNoCors(hs, "handshake");
		assert.equal(hs.headers.vary, "Origin");

		const pre = await preflight(c.port, attack);
		assert.equal(pre.status, 403);
		assertNoCors(pre, "preflight");

		const ws = await upgrade(c.port, attack);
		assert.equal(ws.status, 403, "the upgrade is refused before the handshake completes");
		assert.equal(ws.headers["sec-websocket-accept"], undefined);
		assertNoCors(ws, "upgrade");

		// Same on a domain name: a page of evil.example against socket.steedos.test.
		const named = await handshake(c.port, { host: `socket.steedos.test:${c.port}`, origin: EVIL, cookie: COOKIE });
		assert.equal(named.status, 403);

		const after = await c.stats();
		assert.deepEqual(statsShape(after), statsShape(before), "no session, no auth call, no event");
		assert.equal(after.refusedOrigins, before.refusedOrigins + 4);
		assert.equal(c.authCalls.length, authCalls, "the auth service was not asked");

		// Logged once each at debug, with origin and remote address, never with the cookie.
		const logged = () => c.node.logs.map(l => l.line).filter(l => l.includes(EVIL));
		await h.waitFor(() => logged().length >= 4, 3000, { what: "4 refusals logged" });
		// Barrier: one more refusal, of another origin; once its line is in, every earlier one is.
		const MARK = "https://marker.example";
		assert.equal((await handshake(c.port, { host, origin: MARK })).status, 403);
		await h.waitFor(() => c.node.logs.some(l => l.line.includes(MARK)), 3000, { what: "marker refusal logged" });
		const lines = logged();
		assert.equal(lines.length, 4, lines.join("\n"));
		for (const line of lines) {
			assert.match(line, /debug/i);
			assert.match(line, /127\.0\.0\.1/);
			assert.doesNotMatch(line, /t-u1|X-Auth-Token|X-Space-Id/);
		}
	});

	it("the gateway's own site is reflected with credentials: handshake, preflight, upgrade", async () => {
		const cases = [
			// [Host, Origin]: another port of the same IP, a subdomain, a sibling under co.uk
			[`127.0.0.1:${c.port}`, "http://127.0.0.1:3000"],
			[`socket.steedos.test:${c.port}`, "https://www.steedos.test"],
			[`steedos.test`, "https://app.steedos.test:8443"],
			[`b.example.co.uk:${c.port}`, "https://a.example.co.uk"],
			[`localhost:${c.port}`, "http://localhost:8080"]
		];
		const before = (await c.stats()).refusedOrigins;
		for (const [host, origin] of cases) {
			const what = `${origin} on ${host}`;
			const hs = await handshake(c.port, { host, origin, cookie: COOKIE });
			assert.equal(hs.status, 200, what);
			assert.match(hs.body, /^0\{"sid"/, what);
			assertReflected(hs, origin, what);
			const pre = await preflight(c.port, { host, origin });
			assert.ok(pre.status === 204 || pre.status === 200, `${what}: ${pre.status}`);
			assertReflected(pre, origin, what);
			assert.equal(pre.headers["access-control-allow-headers"], "content-type", what);
			const ws = await upgrade(c.port, { host, origin, cookie: COOKIE });
			assert.equal(ws.status, 101, what);
		}
		// Other sites by the Public Suffix List, IP and single-label rules.
		for (const [host, origin] of [
			[`other.co.uk`, "https://example.co.uk"],
			[`alice.github.io`, "https://bob.github.io"],
			[`localhost:${c.port}`, "http://127.0.0.1:3000"],
			[`127.0.0.1:${c.port}`, "http://127.0.0.2"],
			[`127.0.0.1:${c.port}`, "null"]
		]) {
			assert.equal((await handshake(c.port, { host, origin })).status, 403, `${origin} on ${host}`);
		}
		assert.equal((await c.stats()).refusedOrigins, before + 5);
	});

	for (const t of TRANSPORTS) {
		it(`socket.io-client: another site cannot connect; its own site can and receives (${t.name})`, async () => {
			const total = (await c.stats()).connections.total;
			const evil = c.client({ transports: t.transports, extraHeaders: { cookie: COOKIE, origin: EVIL } });
			await failedToConnect(evil, "error");
			assert.equal((await c.stats()).connections.total, total);

			const s = await c.connect({ transports: t.transports, extraHeaders: { cookie: COOKIE, origin: "http://127.0.0.1:3000" } });
			assert.equal((await c.info(s)).userId, "U1");
			c.producer.emit("$socket.emit", { eventName: "to-all", eventParams: "hi" });
			assert.deepEqual(await c.received(s, "to-all"), [["hi"]]);
			// The refused client got nothing, not even later (the marker is the barrier for s).
			await c.barrier([s]);
			assert.deepEqual(evil.events, []);
		});
	}

	it("without Origin (services, Node clients): the raw handshake and upgrade are served", async () => {
		const hs = await handshake(c.port, { host: `127.0.0.1:${c.port}`, cookie: COOKIE });
		assert.equal(hs.status, 200);
		assertNoCors(hs, "handshake without Origin");
		assert.equal((await upgrade(c.port, { host: `127.0.0.1:${c.port}` })).status, 101);
	});

	for (const t of TRANSPORTS) {
		it(`without Origin, socket.io-client connects and is authenticated by its cookies (${t.name})`, async () => {
			const s = await c.connect({ transports: t.transports, cookie: COOKIE });
			assert.equal((await c.info(s)).userId, "U1");
		});
	}
});

describe("steedos socket: origins, corsOrigins \"*\" and bad values", () => {
	let nats;
	const nodes = [];
	before(async () => {
		nats = await h.startBus();
	});
	after(async () => {
		await h.stopCppNodes(nodes);
		if (nats) await nats.stop();
	});

	it("\"*\": Access-Control-Allow-Origin *, no credentials, every origin opens a session", async () => {
		const port = await h.freePort();
		const node = await h.startCppNode({
			binary: "steedos-socket",
			nats,
			extra: { gateway: { host: "127.0.0.1", port, corsOrigins: "*" } }
		});
		nodes.push(node);
		await node.waitForLog(/gateway listening/, 10000);
		const host = `127.0.0.1:${port}`;
		const hs = await handshake(port, { host, origin: EVIL, cookie: COOKIE });
		assert.equal(hs.status, 200);
		assert.match(hs.body, /^0\{"sid"/);
		assert.equal(hs.headers["access-control-allow-origin"], "*");
		assert.equal(hs.headers["access-control-allow-credentials"], undefined);
		const pre = await preflight(port, { host, origin: EVIL });
		assert.equal(pre.status, 204);
		assert.equal(pre.headers["access-control-allow-origin"], "*");
		assert.equal(pre.headers["access-control-allow-credentials"], undefined);
		assert.equal((await upgrade(port, { host, origin: EVIL, cookie: COOKIE })).status, 101);
		assert.equal((await handshake(port, { host })).headers["access-control-allow-origin"], "*");
	});

	it("a bad value stops the node at start naming gateway.corsOrigins", async () => {
		for (const value of ["https://app.example", ["https://app.example/"], ["null"], ["*"], [42], true]) {
			const node = await h.startCppNode({
				binary: "steedos-socket",
				nats,
				extra: { gateway: { host: "127.0.0.1", port: 0, corsOrigins: value } }
			});
			nodes.push(node);
			const res = await h.withTimeout(node.exited, 5000, `exit with corsOrigins ${JSON.stringify(value)}`);
			assert.equal(res.code, 1, `${JSON.stringify(value)}:\n${node.logText()}`);
			assert.match(node.logText(), /gateway\.corsOrigins: /, JSON.stringify(value));
		}
	});
});
