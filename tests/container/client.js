"use strict";
// The client side of scripts/container-steps.sh, with the modules of tests/interop/node_modules.
//
//   node tests/container/client.js check URL BUNDLE_FILE
//     One line per check ("ok: ..." or "FAIL: ..."), exit code = the number of failures:
//     an Engine.IO polling open, a socket.io-client connect upgraded to WebSocket, the client
//     bundle byte for byte as installed (BUNDLE_FILE), the demo page.
//   node tests/container/client.js hold URL
//     Connects over WebSocket, prints "connected <sid>", then "disconnected: <reason>" when the
//     node closes the socket (its drain on SIGTERM), and exits 0; exits 1 after 30 s without.
const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const interopRequire = createRequire(path.join(__dirname, "..", "interop", "package.json"));
const { io } = interopRequire("socket.io-client");

const TIMEOUT_MS = 10000;

function withTimeout(promise, what) {
	let timer;
	const timeout = new Promise((_, reject) => {
		timer = setTimeout(() => reject(new Error(`${what}: no answer within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
	});
	return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function pollingOpen(base) {
	const res = await fetch(`${base}/socket.io/?EIO=4&transport=polling`);
	const body = await res.text();
	if (res.status !== 200) throw new Error(`status ${res.status}: ${body.slice(0, 100)}`);
	if (!body.startsWith("0{")) throw new Error(`not an Engine.IO open packet: ${body.slice(0, 100)}`);
	const open = JSON.parse(body.slice(1));
	if (typeof open.sid !== "string" || !open.upgrades.includes("websocket")) {
		throw new Error(`open packet without sid or websocket upgrade: ${body}`);
	}
	return `sid ${open.sid}, upgrades ${JSON.stringify(open.upgrades)}, pingInterval ${open.pingInterval}`;
}

function connectAndUpgrade(base) {
	return new Promise((resolve, reject) => {
		const socket = io(base, { transports: ["polling", "websocket"], reconnection: false });
		let connectedOn = "";
		const finish = (error, text) => {
			socket.close();
			if (error) reject(error);
			else resolve(text);
		};
		socket.on("connect_error", (err) => finish(new Error(`connect_error: ${err.message}`)));
		socket.on("connect", () => {
			connectedOn = socket.io.engine.transport.name;
			if (connectedOn === "websocket") finish(null, `connected on websocket at once, sid ${socket.id}`);
		});
		socket.io.on("open", () => {
			socket.io.engine.on("upgrade", (transport) => {
				const check = () => finish(null, `connected on ${connectedOn}, upgraded to ${transport.name}, sid ${socket.id}`);
				if (socket.connected) check();
				else socket.once("connect", check);
			});
		});
	});
}

async function bundle(base, installedFile) {
	const res = await fetch(`${base}/socket.io/socket.io.js`);
	const served = Buffer.from(await res.arrayBuffer());
	if (res.status !== 200) throw new Error(`status ${res.status}`);
	const type = res.headers.get("content-type") || "";
	if (!type.startsWith("application/javascript")) throw new Error(`content-type ${type}`);
	const installed = fs.readFileSync(installedFile);
	if (!served.equals(installed)) {
		throw new Error(`${served.length} bytes served differ from ${installedFile} (${installed.length} bytes)`);
	}
	return `${served.length} bytes, ${type}, identical to ${path.basename(installedFile)} as installed`;
}

async function demoPage(base) {
	const res = await fetch(`${base}/`);
	const body = await res.text();
	if (res.status !== 200 || !/<html/i.test(body)) throw new Error(`status ${res.status}: ${body.slice(0, 80)}`);
	return `${body.length} bytes of HTML`;
}

async function check(base, bundleFile) {
	const checks = [
		["Engine.IO polling open", () => pollingOpen(base)],
		["Socket.IO connect, upgrade to WebSocket", () => connectAndUpgrade(base)],
		["GET /socket.io/socket.io.js serves the installed bundle", () => bundle(base, bundleFile)],
		["GET / serves the demo page (share/steedos-socket/web)", () => demoPage(base)],
	];
	let failures = 0;
	for (const [name, run] of checks) {
		try {
			console.log(`ok: ${name}: ${await withTimeout(run(), name)}`);
		} catch (err) {
			failures += 1;
			console.log(`FAIL: ${name}: ${err.message}`);
		}
	}
	process.exit(failures);
}

function hold(base) {
	const socket = io(base, { transports: ["websocket"], reconnection: false });
	const timer = setTimeout(() => {
		console.log("timeout: no disconnect within 30 s");
		process.exit(1);
	}, 30000);
	socket.on("connect", () => console.log(`connected ${socket.id}`));
	socket.on("connect_error", (err) => {
		console.log(`connect_error: ${err.message}`);
		process.exit(1);
	});
	socket.on("disconnect", (reason) => {
		clearTimeout(timer);
		console.log(`disconnected: ${reason}`);
		process.exit(0);
	});
}

const [mode, base, bundleFile] = process.argv.slice(2);
if (mode === "check" && base && bundleFile) check(base, bundleFile);
else if (mode === "hold" && base) hold(base);
else {
	console.error("usage: client.js check URL BUNDLE_FILE | client.js hold URL");
	process.exit(2);
}
