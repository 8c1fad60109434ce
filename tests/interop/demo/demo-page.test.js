"use strict";
// The demo page (web/) in headless Chromium, with the example peers (examples/mock-auth.js,
// examples/producer.js): it connects with the auth cookies, subscribes a record room through the
// page's form, and shows the event the producer sends. Screenshot: /tmp/demo-page.png.
const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("path");
const { spawn } = require("child_process");
const {
	REPO_ROOT,
	startBus,
	startCppNode,
	stopCppNodes,
	freePort,
	withTimeout
} = require("../lib/harness");
const { launchChromium, SKIP_BROWSER } = require("../lib/browser");

const EXAMPLES = path.join(REPO_ROOT, "examples");
const SCREENSHOT = "/tmp/demo-page.png";
const NAMESPACE = "";

const procs = []; // example child processes, killed by PID at the end

/** Runs an example script; resolves the process once `ready` (a regex) appears in its output. */
function startExample(script, args, env, ready) {
	const child = spawn(process.execPath, [path.join(EXAMPLES, script), ...args], {
		env: Object.assign({}, process.env, env, { LOGLEVEL: "info" }),
		stdio: ["ignore", "pipe", "pipe"]
	});
	procs.push(child);
	const out = [];
	child.output = out;
	child.exited = new Promise(resolve => child.once("exit", (code, signal) => resolve({ code, signal })));
	const seen = new Promise((resolve, reject) => {
		const onData = chunk => {
			out.push(chunk);
			if (ready && ready.test(out.join(""))) resolve(child);
		};
		child.stdout.setEncoding("utf8").on("data", onData);
		child.stderr.setEncoding("utf8").on("data", onData);
		child.exited.then(({ code, signal }) => {
			if (!ready) resolve(child);
			else reject(new Error(`${script} exited (${code ?? signal}) before ready:\n${out.join("")}`));
		});
	});
	return { child, seen };
}

function killProcs() {
	for (const child of procs) {
		if (child.exitCode === null && child.signalCode === null) {
			try {
				process.kill(child.pid, "SIGKILL");
			} catch (_) {
				/* gone */
			}
		}
	}
}
process.on("exit", killProcs);

test("demo page: cookie login, subscribe, record event from the example producer", { timeout: 60000, skip: SKIP_BROWSER }, async t => {
	let nats, node, chromium;
	t.after(async () => {
		if (chromium) await chromium.close();
		killProcs();
		await stopCppNodes(node);
		if (nats) await nats.stop().catch(() => {});
	});

	nats = await startBus();
	const port = await freePort();
	node = await startCppNode({
		binary: "steedos-socket",
		nats,
		namespace: NAMESPACE,
		logLevel: "info",
		extra: { gateway: { host: "127.0.0.1", port } }
	});
	await node.waitForLog(/gateway listening/, 10000);
	const env = { TRANSPORTER: nats.url, NAMESPACE };

	// Mock auth first; the node must know its action before the browser connects (otherwise the
	// node fails closed and the page retries, which also works but takes longer).
	await withTimeout(startExample("mock-auth.js", [], env, /mock-auth ready/).seen, 15000, "mock-auth ready");
	// The node's registry has taken mock-auth's INFO (and so its action) when it logs the node.
	await node.waitForLog(/node joined nodeID=mock-auth/, 10000);

	chromium = await launchChromium();
	const origin = `http://127.0.0.1:${port}`;
	const context = await chromium.browser.newContext({ viewport: { width: 1200, height: 900 } });
	await context.addCookies([
		{ name: "X-Space-Id", value: "S1", url: origin },
		{ name: "X-Auth-Token", value: "t-alice", url: origin }
	]);
	const page = await context.newPage();
	const pageErrors = [];
	page.on("pageerror", err => pageErrors.push(err.message));
	await page.goto(`${origin}/`);

	// Connected, session set up (connection-init), and the session panel shows the cookies.
	await page.waitForSelector('#conn[data-state="connected"][data-init="1"]', { timeout: 15000 });
	assert.equal(await page.textContent("#tenant"), "S1");
	assert.match(await page.textContent("#token"), /^set: /);
	assert.doesNotMatch(await page.textContent("#token"), /t-alice/);

	// Subscribe through the form; the ack shows the joined room (authenticated: tenant rooms allowed).
	await page.fill("#in-rooms", "record:orders:change-42");
	await page.click("#btn-subscribe");
	await page.waitForFunction(() => /"rooms"/.test(document.getElementById("ack").textContent), null, { timeout: 5000 });
	assert.match(await page.textContent("#ack"), /S1-record:orders:change-42/);

	// Individual notification room too, then a ping.
	await page.fill("#in-rooms", "notification-change");
	await page.check("#in-individual");
	await page.click("#btn-subscribe");
	await page.waitForFunction(() => /notification-change-alice/.test(document.getElementById("ack").textContent), null, { timeout: 5000 });
	await page.click("#btn-ping");
	await page.waitForFunction(() => /Z$/.test(document.getElementById("pong").textContent), null, { timeout: 5000 });

	// The producer sends every event once.
	const producer = startExample("producer.js", ["--once"], env, null);
	const done = await withTimeout(producer.child.exited, 20000, "producer --once");
	assert.equal(done.code, 0, `producer failed:\n${producer.child.output.join("")}`);

	const row = page.locator('#log tr[data-event="s:record:orders:change-42"]');
	await row.first().waitFor({ timeout: 5000 });
	assert.match(await row.first().locator("td.args").textContent(), /\{"_id":"42"\}/);
	// The other events of the round reach this (signed-in, subscribed) page as well.
	for (const name of ["s:metadata:change", "s:notification-change", "demo:hello"]) {
		await page.locator(`#log tr[data-event="${name}"]`).first().waitFor({ timeout: 5000 });
	}
	assert.match(await page.locator('#log tr[data-event="s:notification-change"] td.args').first().textContent(), /Hello Alice/);

	await page.screenshot({ path: SCREENSHOT, fullPage: true });
	assert.deepEqual(pageErrors, []);
});
