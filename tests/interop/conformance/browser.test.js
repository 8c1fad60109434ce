"use strict";
// Headless Chromium (playwright-core driving /usr/bin/chromium) against the C++ conformance
// server: a page served from another origin loads the socket.io-client bundle from the gateway
// (/socket.io/socket.io.js), connects with withCredentials (polling first: CORS with reflected
// origin + credentials), upgrades to websocket, and round-trips an event, a binary event and an
// ack. TARGET=reference runs it against the npm reference instead. /usr/bin/chromium missing is a
// failure (scripts/setup.sh installs it) unless SKIP_BROWSER=1.

const assert = require("node:assert/strict");
const http = require("http");
const { describe, it, before, after } = require("node:test");
const { clientTargets, startTarget, CPP_BINARY } = require("./lib/targets");
const { launchChromium } = require("../lib/browser");

const COOKIE = { name: "steedos_conformance", value: "cookie-value-1" };

function pageHtml(gateway) {
	return `<!doctype html>
<html><head><meta charset="utf-8"><title>socket.io conformance</title>
<script src="${gateway}/socket.io/socket.io.js"></script>
</head><body>
<script>
window.runSocketTest = function (url) {
	return new Promise(function (resolve) {
		var result = { bundle: typeof io, log: [] };
		var done = false;
		function finish(extra) {
			if (done) return;
			done = true;
			Object.assign(result, extra || {});
			try { socket.disconnect(); } catch (e) {}
			resolve(result);
		}
		var t0 = Date.now();
		var socket = io(url, { withCredentials: true, reconnection: false });
		result.firstTransport = socket.io.engine.transport.name;
		var upgraded = new Promise(function (res) {
			if (socket.io.engine.transport.name === "websocket") return res();
			socket.io.engine.on("upgrade", function (t) {
				result.upgradedTo = t.name;
				result.upgradeMs = Date.now() - t0;
				res();
			});
		});
		socket.on("connect_error", function (err) { finish({ error: "connect_error: " + err.message }); });
		socket.on("disconnect", function (reason) { result.log.push("disconnect: " + reason); });
		socket.on("auth", function (auth) { result.auth = auth; });
		socket.on("connect", function () {
			result.connected = true;
			result.transportAtConnect = socket.io.engine.transport.name;
			var timer = setTimeout(function () { finish({ error: "timeout" }); }, 8000);
			upgraded.then(function () {
				result.transportAfterUpgrade = socket.io.engine.transport.name;
				return new Promise(function (res) {
					socket.once("message-back", function () { res(Array.prototype.slice.call(arguments)); });
					socket.emit("message", "hello", { n: 1 });
				});
			}).then(function (back) {
				result.messageBack = back;
				return new Promise(function (res) {
					socket.once("message-back", function (bin) { res(Array.from(new Uint8Array(bin))); });
					socket.emit("message", new Uint8Array([1, 2, 3, 255]));
				});
			}).then(function (bin) {
				result.binaryBack = bin;
				return new Promise(function (res) {
					socket.timeout(5000).emit("message-with-ack", 1, "2", { 3: [true] }, function (err) {
						res(err ? { error: String(err) } : Array.prototype.slice.call(arguments, 1));
					});
				});
			}).then(function (ack) {
				result.ack = ack;
				result.finalTransport = socket.io.engine.transport.name;
				clearTimeout(timer);
				finish();
			}, function (err) { finish({ error: String(err) }); });
		});
	});
};
</script>
</body></html>`;
}

function startPageServer(html) {
	return new Promise((resolve, reject) => {
		const server = http.createServer((req, res) => {
			if (req.url === "/" || req.url.startsWith("/index.html")) {
				res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store" });
				res.end(html);
			} else {
				res.writeHead(404);
				res.end();
			}
		});
		server.on("error", reject);
		server.listen(0, "127.0.0.1", () => resolve(server));
	});
}

const targets = process.env.SKIP_BROWSER === "1" ? [] : clientTargets();
if (process.env.SKIP_BROWSER === "1") {
	it("headless Chromium against the gateway", { skip: "SKIP_BROWSER=1" }, () => {});
} else if (targets.length === 0) {
	it("headless Chromium against the gateway", { skip: `TARGET unset and ${CPP_BINARY} not built` }, () => {});
}

for (const name of targets) {
	describe(`headless Chromium + socket.io-client bundle [${name}]`, () => {
		let target = null;
		let pageServer = null;
		let chromium = null;
		before(async () => {
			target = await startTarget(name);
		});
		after(async () => {
			if (chromium) await chromium.close();
			if (pageServer) await new Promise(r => pageServer.close(r));
			if (target) await target.close();
		});

		it("loads the bundle from the gateway, connects with credentials over polling, upgrades, round-trips", { timeout: 45000 }, async () => {
			const gateway = target.url;
			pageServer = await startPageServer(pageHtml(gateway));
			const pageOrigin = `http://127.0.0.1:${pageServer.address().port}`;

			chromium = await launchChromium({ persistent: true });
			const { context } = chromium;
			await context.addCookies([Object.assign({ url: gateway }, COOKIE)]);
			const page = context.pages()[0] || (await context.newPage());

			const consoleLines = [];
			page.on("console", msg => consoleLines.push(`${msg.type()}: ${msg.text()}`));
			page.on("pageerror", err => consoleLines.push(`pageerror: ${err.message}`));
			const requests = [];
			page.on("request", req => requests.push(req));
			const websockets = [];
			page.on("websocket", ws => websockets.push(ws.url()));

			const resp = await page.goto(`${pageOrigin}/`, { waitUntil: "load" });
			assert.equal(resp.status(), 200);
			const bundleReq = requests.find(r => r.url() === `${gateway}/socket.io/socket.io.js`);
			assert.ok(bundleReq, "the page requested the bundle from the gateway");
			const bundleResp = await bundleReq.response();
			assert.equal(bundleResp && bundleResp.status(), 200, "bundle served by the gateway");

			const result = await page.evaluate(url => window.runSocketTest(url), gateway);
			const evidence = `result ${JSON.stringify(result)}\nconsole:\n${consoleLines.join("\n")}`;

			assert.equal(result.bundle, "function", `io() from the gateway bundle\n${evidence}`);
			assert.equal(result.error, undefined, evidence);
			assert.equal(result.connected, true, evidence);
			assert.equal(result.firstTransport, "polling", evidence);
			assert.deepEqual(result.auth, {}, evidence);
			assert.equal(result.transportAfterUpgrade, "websocket", evidence);
			assert.equal(result.finalTransport, "websocket", evidence);
			assert.deepEqual(result.messageBack, ["hello", { n: 1 }], evidence);
			assert.deepEqual(result.binaryBack, [1, 2, 3, 255], evidence);
			assert.deepEqual(result.ack, [1, "2", { 3: [true] }], evidence);

			// Polling went cross-origin with credentials: the browser sent the gateway cookie and the
			// gateway answered with the reflected origin and Allow-Credentials (otherwise the XHR fails).
			const polls = requests.filter(r => r.url().startsWith(`${gateway}/socket.io/?`) && r.url().includes("transport=polling"));
			assert.ok(polls.length >= 2, `polling requests seen: ${polls.map(r => r.url()).join(", ")}`);
			const handshake = polls[0];
			const headers = await handshake.allHeaders();
			assert.equal(headers.origin, pageOrigin, "cross-origin polling request");
			assert.ok(
				(headers.cookie || "").includes(`${COOKIE.name}=${COOKIE.value}`),
				`the polling handshake carried the gateway cookie (cookie header: ${headers.cookie})`
			);
			const hsResp = await handshake.response();
			const hsHeaders = await hsResp.allHeaders();
			assert.equal(hsHeaders["access-control-allow-origin"], pageOrigin);
			assert.equal(hsHeaders["access-control-allow-credentials"], "true");
			assert.ok(
				websockets.some(u => u.startsWith(`${target.wsUrl}/socket.io/?`) && u.includes("transport=websocket") && u.includes("sid=")),
				`websocket upgrade seen: ${websockets.join(", ")}`
			);
		});
	});
}
