"use strict";
// gateway.clientBundle: the product binary serves the socket.io-client browser bundle
// (/socket.io/socket.io.js, .min.js and their .map files, as socket.io's serveClient) from the
// folder the install put there (client/, `npm ci` by scripts/setup.sh), from a configured folder,
// or not at all; a configured folder that is not a bundle stops the node naming the key. Nothing
// under tests/ is read: a copy of the binary in a tree that has only tests/'s bundle serves none.

const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("fs");
const os = require("os");
const path = require("path");
const h = require("./lib/harness");

const CLIENT_DIST = path.join(h.REPO_ROOT, "client", "node_modules", "socket.io-client", "dist");
const JS = "application/javascript; charset=utf-8";
const FILES = [
	["socket.io.js", JS],
	["socket.io.min.js", JS],
	["socket.io.js.map", "application/json"],
	["socket.io.min.js.map", "application/json"]
];

const nodes = [];
const dirs = [];

function tempDir(prefix) {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
	dirs.push(dir);
	return dir;
}

/** A folder holding the four bundle files with recognisable contents. */
function fakeBundle(dir, tag) {
	fs.mkdirSync(dir, { recursive: true });
	for (const [name] of FILES) fs.writeFileSync(path.join(dir, name), `/* ${tag} ${name} */\n`);
	return dir;
}

/**
 * Starts the product with `gateway` merged into its gateway settings; resolves once its HTTP port
 * answers. `binary` runs another copy of the binary (a path) instead of the built one.
 */
async function startProduct(nats, gateway, binary) {
	const port = await h.freePort();
	const opts = {
		binary: "steedos-socket",
		nats,
		logLevel: "info",
		extra: { gateway: Object.assign({ host: "127.0.0.1", port }, gateway) }
	};
	// The harness runs BUILD_DIR/<binary>; a relative path reaches a copy elsewhere.
	if (binary) opts.binary = path.relative(h.BUILD_DIR, binary);
	const node = await h.startCppNode(opts);
	nodes.push(node);
	const base = `http://127.0.0.1:${port}`;
	await h.waitFor(
		async () => {
			if (!node.running()) {
				throw Object.assign(new Error(`the node exited:\n${node.logText()}`), { exited: true });
			}
			return (await fetch(`${base}${gateway.path || "/socket.io/"}?EIO=4&transport=polling`)).ok;
		},
		10000,
		{ what: `gateway on ${base}` }
	);
	return { node, base };
}

async function get(base, name) {
	const res = await fetch(`${base}/socket.io/${name}`);
	return { status: res.status, type: res.headers.get("content-type"), body: Buffer.from(await res.arrayBuffer()) };
}

async function assertServes(base, dist) {
	for (const [name, type] of FILES) {
		const res = await get(base, name);
		assert.equal(res.status, 200, name);
		assert.equal(res.type, type, name);
		assert.ok(res.body.equals(fs.readFileSync(path.join(dist, name))), `${name}: the bytes of ${dist}`);
	}
}

/**
 * Not served: the request falls through to the Engine.IO endpoint, which refuses it as a request
 * without a transport (400 "Transport unknown"), as socket.io with serveClient: false does.
 */
async function assertNotServed(base, name) {
	const res = await get(base, name);
	assert.equal(res.status, 400, name);
	assert.match(res.body.toString(), /Transport unknown/, name);
}

async function assertNoBundle(base) {
	for (const [name] of FILES) await assertNotServed(base, name);
}

/** Copies the built binary to `<root>/<sub>/steedos-socket` (the node finds folders from there). */
function copyBinary(root, sub) {
	const target = path.join(root, sub, "steedos-socket");
	fs.mkdirSync(path.dirname(target), { recursive: true });
	fs.copyFileSync(path.join(h.BUILD_DIR, "steedos-socket"), target);
	fs.chmodSync(target, 0o755);
	return target;
}

/** Starts the product with `clientBundle`; resolves {code, output} once it exits (it must). */
async function startRefused(nats, clientBundle) {
	const node = await h.startCppNode({
		binary: "steedos-socket",
		nats,
		extra: { gateway: { host: "127.0.0.1", port: 0, clientBundle } }
	});
	nodes.push(node);
	const res = await h.withTimeout(node.exited, 5000, "exit of a node with a bad gateway.clientBundle");
	return { code: res.code, output: node.logText() };
}

describe("gateway.clientBundle (the socket.io-client bundle of the product)", () => {
	let nats;
	before(async () => {
		nats = await h.startBus();
	});
	after(async () => {
		await h.stopCppNodes(nodes);
		if (nats) await nats.stop();
		for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
	});

	test("default: the bundle setup installed in client/ is served, with its content types", async () => {
		assert.ok(fs.existsSync(path.join(CLIENT_DIST, "socket.io.js")), `${CLIENT_DIST}: run scripts/setup.sh`);
		const { node, base } = await startProduct(nats, {});
		await assertServes(base, CLIENT_DIST);
		// HEAD and a path outside the four files
		assert.equal((await fetch(`${base}/socket.io/socket.io.js`, { method: "HEAD" })).status, 200);
		await assertNotServed(base, "socket.io.esm.min.js");
		assert.doesNotMatch(node.logText(), /clientBundle/);
	});

	for (const value of [false, ""]) {
		test(`${JSON.stringify(value)}: no bundle while Socket.IO still answers`, async () => {
			const { base } = await startProduct(nats, { clientBundle: value });
			await assertNoBundle(base);
			assert.equal((await fetch(`${base}/socket.io/?EIO=4&transport=polling`)).status, 200);
		});
	}

	test("a configured folder is served as given", async () => {
		const dist = fakeBundle(path.join(tempDir("bundle-custom-"), "dist"), "custom");
		const { base } = await startProduct(nats, { clientBundle: dist });
		await assertServes(base, dist);
	});

	test("a custom gateway.path serves the bundle under that path", async () => {
		const { base } = await startProduct(nats, { path: "/io/" });
		const res = await fetch(`${base}/io/socket.io.js`);
		assert.equal(res.status, 200);
		assert.ok(Buffer.from(await res.arrayBuffer()).equals(fs.readFileSync(path.join(CLIENT_DIST, "socket.io.js"))));
		assert.equal((await get(base, "socket.io.js")).status, 404); // outside gateway.path: only web/ files
	});

	test("a folder that is not a bundle stops the node (exit 1) with a message naming gateway.clientBundle", async () => {
		const empty = tempDir("bundle-empty-");
		const cases = [
			[path.join(empty, "nowhere"), /gateway\.clientBundle: folder not found: .*nowhere/],
			[empty, /gateway\.clientBundle: no socket\.io\.js in /],
			[42, /gateway\.clientBundle: must be a folder path, or false/]
		];
		for (const [value, message] of cases) {
			const res = await startRefused(nats, value);
			assert.equal(res.code, 1, `${JSON.stringify(value)}:\n${res.output}`);
			assert.match(res.output, message);
		}
	});

	test("an installed binary finds <prefix>/share/steedos-socket/socket.io-client (the image's layout)", async () => {
		const prefix = tempDir("bundle-prefix-");
		const dist = fakeBundle(path.join(prefix, "share", "steedos-socket", "socket.io-client"), "installed");
		const { base } = await startProduct(nats, {}, copyBinary(prefix, "bin"));
		await assertServes(base, dist);
	});

	test("no bundle installed: one warning, nothing served, tests/ is not read", async () => {
		// A tree like a checkout whose client/ was never installed, but whose tests/ has a bundle.
		const root = tempDir("bundle-none-");
		fakeBundle(path.join(root, "tests", "interop", "node_modules", "socket.io-client", "dist"), "tests");
		const { node, base } = await startProduct(nats, {}, copyBinary(root, "build"));
		await assertNoBundle(base);
		const warnings = node.logs.filter(l => /clientBundle/.test(l.line));
		assert.equal(warnings.length, 1, node.logText());
		assert.match(warnings[0].line, /warn.*gateway\.clientBundle: no socket\.io-client bundle installed/);
	});
});
