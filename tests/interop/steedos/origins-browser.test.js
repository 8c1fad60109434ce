"use strict";
// gateway-contract.md §2.1 in headless Chromium (issue 17): Chromium maps *.steedos.test and
// *.evil.test to loopback (--host-resolver-rules); the product gateway is reached as
// socket.steedos.test. A page of www.steedos.test (the gateway's site, another port) connects
// with the user's cookies and receives pushes; a page of www.evil.test cannot open a session and
// reads nothing, on default transports and on WebSocket only. The cookies are the Steedos
// site's (SameSite=Lax, plain http): this Chromium does not send cookies to a third party over
// http even when they are SameSite=None; Secure, so the refusal here rests on the Origin alone;
// origins.test.js sends the attacker's requests with the cookies, as a browser that lets
// SameSite=None cookies through would.
const fs = require("fs");
const http = require("http");
const path = require("path");
const { describe, it, before, after, afterEach } = require("node:test");
const { h, assert, startCluster } = require("./fixture");
const { launchChromium, SKIP_BROWSER } = require("../lib/browser");

const BUNDLE = path.join(h.INTEROP_DIR, "node_modules", "socket.io-client", "dist", "socket.io.js");

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>origin test</title></head><body>
<script>
window.state = { events: [], errors: [], connected: false, init: false };
window.start = function (gateway, transports) {
	return new Promise(function (resolve, reject) {
		var script = document.createElement("script");
		script.src = "/socket.io.js";  // from the page's own server (as a site would bundle it)
		script.onload = function () {
			var opts = { withCredentials: true, reconnection: false, timeout: 4000 };
			if (transports) opts.transports = transports;
			var socket = io(gateway, opts);
			window.socket = socket;
			socket.on("connect", function () { window.state.connected = true; });
			socket.on("connect_error", function (err) { window.state.errors.push(err.message); });
			socket.onAny(function (event) {
				if (event === "connection-init") window.state.init = true;
				window.state.events.push({ event: event, args: Array.prototype.slice.call(arguments, 1) });
			});
			resolve();
		};
		script.onerror = function () { reject(new Error("bundle not loaded")); };
		document.head.appendChild(script);
	});
};
</script></body></html>`;

function startPageServer() {
	const server = http.createServer((req, res) => {
		if (req.url === "/socket.io.js") {
			res.writeHead(200, { "Content-Type": "application/javascript; charset=utf-8" });
			res.end(fs.readFileSync(BUNDLE));
			return;
		}
		res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
		res.end(PAGE);
	});
	return new Promise(resolve => server.listen(0, "127.0.0.1", () => resolve(server)));
}

// SKIP_BROWSER=1 skips it, as the other browser tests; a missing Chromium is otherwise a failure.
describe("steedos socket: origins in headless Chromium (default corsOrigins)", { skip: SKIP_BROWSER }, () => {
	let c, pageServer, chromium, context, gateway, pagePort;
	before(async () => {
		chromium = await launchChromium({ hostRules: ["*.steedos.test", "*.evil.test"] });
		c = await startCluster();
		pageServer = await startPageServer();
		pagePort = pageServer.address().port;
		gateway = `http://socket.steedos.test:${c.port}`;
		context = await chromium.browser.newContext();
		// The user is logged in to the Steedos site: its cookies lie on the gateway's host.
		const cookies = [["X-Space-Id", "S1"], ["X-Auth-Token", "t-u1"]];
		await context.addCookies(cookies.map(([name, value]) => ({
			name, value, domain: "socket.steedos.test", path: "/", sameSite: "Lax"
		})));
	});
	after(async () => {
		if (chromium) await chromium.close();
		if (pageServer) await new Promise(r => pageServer.close(r));
		if (c) await c.stop();
	});

	// Pages (and so their sockets) are closed after each test, passed or failed.
	const pages = [];
	afterEach(async () => {
		for (const page of pages.splice(0)) await h.withTimeout(page.close(), 5000, "page.close").catch(() => {});
	});

	async function openPage(host) {
		const page = await context.newPage();
		pages.push(page);
		const failed = [];
		page.on("requestfailed", r => {
			if (r.url().startsWith(`${gateway}/socket.io/?`)) failed.push(r);
		});
		const requests = [];
		page.on("request", r => {
			if (r.url().startsWith(`${gateway}/socket.io/?`)) requests.push(r);
		});
		const sockets = [];
		page.on("websocket", ws => sockets.push(ws));
		await page.goto(`http://${host}:${pagePort}/`);
		return { page, failed, requests, sockets };
	}

	for (const transports of [null, ["websocket"]]) {
		const label = transports ? "WebSocket only" : "default transports";

		it(`a page of the gateway's own site connects with the cookies and receives pushes (${label})`, async () => {
			const { page, requests } = await openPage("www.steedos.test");
			await page.evaluate(([g, t]) => window.start(g, t), [gateway, transports]);
			await page.waitForFunction(() => window.state.init, null, { timeout: 8000 });
			const clients = await c.call("clients");
			const id = await page.evaluate(() => window.socket.id);
			const me = clients.find(x => x.id === id);
			assert.ok(me, JSON.stringify(clients));
			assert.equal(me.userId, "U1", "authenticated with the cookies");
			c.producer.emit("$socket.emit", { eventName: "push", eventParams: "for-the-page" });
			await page.waitForFunction(() => window.state.events.some(e => e.event === "push"), null, { timeout: 5000 });
			if (!transports) {
				const first = requests.find(r => r.url().includes("transport=polling"));
				const headers = await first.allHeaders();
				assert.equal(headers.origin, `http://www.steedos.test:${pagePort}`);
				assert.match(headers.cookie || "", /X-Auth-Token=t-u1/);
				const res = await first.response();
				assert.equal(res.headers()["access-control-allow-origin"], `http://www.steedos.test:${pagePort}`);
				assert.equal(res.headers()["access-control-allow-credentials"], "true");
			}
		});

		it(`a page of another site cannot open a session and reads nothing (${label})`, async () => {
			// The previous page's session is gone first, so that any session would show.
			await h.waitFor(async () => (await c.stats()).connections.total === 0, 4000, { what: "no session left" });
			const before = await c.stats();
			const { page, failed, sockets } = await openPage("www.evil.test");
			await page.evaluate(([g, t]) => window.start(g, t), [gateway, transports]);
			await page.waitForFunction(() => window.state.errors.length > 0, null, { timeout: 8000 });
			// The reply is the barrier: the node has delivered the push to every socket it has.
			assert.deepEqual(await c.call("emit", { event: "push", data: "secret" }), { delivered: 0 });
			const state = await page.evaluate(() => window.state);
			assert.equal(state.connected, false, JSON.stringify(state));
			assert.deepEqual(state.events, [], "nothing read");
			if (transports) {
				assert.ok(sockets.length >= 1, "a WebSocket was attempted");
			} else {
				// The 403 without CORS headers is a network error to the page.
				assert.ok(failed.some(r => r.url().includes("transport=polling")), "the polling handshake failed");
			}
			const after = await c.stats();
			assert.equal(after.connections.total, 0, "no session");
			assert.ok(after.refusedOrigins > before.refusedOrigins, "counted as a refusal");
		});
	}
});
