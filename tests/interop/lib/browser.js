"use strict";
// The one headless Chromium launcher of the interop suite (playwright-core driving Debian's
// /usr/bin/chromium, or CHROMIUM_BIN): the flags, the missing-binary message, SKIP_BROWSER and a
// close that cannot hang. Used by steedos/origins-browser.test.js, demo/demo-page.test.js and
// conformance/browser.test.js.
const fs = require("fs");
const os = require("os");
const path = require("path");

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";

// SKIP_BROWSER=1 skips the browser tests (a `skip` value for node:test); without it a missing
// Chromium is a failure, not a skip.
const SKIP_BROWSER = process.env.SKIP_BROWSER === "1" ? "SKIP_BROWSER=1" : false;

const CHROMIUM_ARGS = Object.freeze([
	"--headless",
	"--no-sandbox",
	"--disable-gpu",
	"--disable-quic",
	"--no-first-run",
	"--disable-background-networking",
	"--disable-component-update",
	"--disable-sync"
]);

function withTimeout(promise, ms, what) {
	let timer;
	return Promise.race([
		promise,
		new Promise((_, reject) => {
			timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
		})
	]).finally(() => clearTimeout(timer));
}

/**
 * Launches headless Chromium. `hostRules`: host patterns resolved to 127.0.0.1 (e.g.
 * "*.steedos.test"). `persistent`: a persistent context in a fresh user-data directory (removed
 * on close). Resolves { browser, context, close }: `browser` for a plain launch (make contexts
 * with browser.newContext()), `context` for a persistent one; close() never hangs and never throws.
 */
async function launchChromium({ hostRules = [], persistent = false, timeout = 30000 } = {}) {
	if (!fs.existsSync(CHROMIUM)) {
		throw new Error(`${CHROMIUM} not found: scripts/setup.sh installs the Debian chromium package (SKIP_BROWSER=1 skips)`);
	}
	const { chromium } = require("playwright-core");
	const args = [...CHROMIUM_ARGS];
	if (hostRules.length) args.push(`--host-resolver-rules=${hostRules.map(host => `MAP ${host} 127.0.0.1`).join(", ")}`);
	const options = { executablePath: CHROMIUM, headless: true, args, timeout };
	let browser = null;
	let context = null;
	let userDataDir = null;
	if (persistent) {
		userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "interop-chromium-"));
		context = await chromium.launchPersistentContext(userDataDir, options);
	} else {
		browser = await chromium.launch(options);
	}
	return {
		browser,
		context,
		async close() {
			await withTimeout((browser || context).close(), 5000, "closing Chromium").catch(() => {});
			if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
		}
	};
}

module.exports = { CHROMIUM, CHROMIUM_ARGS, SKIP_BROWSER, launchChromium };
