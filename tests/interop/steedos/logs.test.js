"use strict";
// Issue 10, "Logs": with --log-format json, every line of a whole end-to-end run (start, clients
// authenticated and refused, subscribe accepted and refused, events delivered, a malformed
// packet, a rejected service payload, a node joining and leaving, a client disconnect, a bus
// outage and its return, the drain at SIGTERM) is one JSON object with time, level, component and
// message; the lines of those events carry their structured fields (sid on connection lines,
// reason on close and refusal lines, nodeID on join and leave); no line holds a token or a cookie
// value. A configuration error is one JSON line too. Runs on NATS and on Redis (INTEROP_BUS).
const { describe, it } = require("node:test");
const { h, assert, startCluster, startGateway, failedToConnect, COOKIES, cookie, login } = require("./fixture");

const ISO_UTC_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const LEVELS = ["trace", "debug", "info", "warning", "error", "critical"];

/** Every line of `node` as a parsed record (asserting that each one is JSON). */
function records(node) {
	return node.logs.map(({ line }) => {
		try {
			return JSON.parse(line);
		} catch (err) {
			assert.fail(`not JSON: ${line}`);
		}
	});
}

/** Whether `record` has every field of `spec` (a RegExp tests the field as a string). */
function matches(record, spec) {
	return Object.entries(spec).every(([key, want]) =>
		want instanceof RegExp ? key in record && want.test(String(record[key])) : record[key] === want);
}

/** Waits for the first record of `node` matching `spec` and returns it. */
async function record(node, spec, ms = 5000) {
	let hit;
	await h.waitFor(() => (hit = records(node).find(r => matches(r, spec))), ms, { what: `log record ${JSON.stringify(spec, (k, v) => (v instanceof RegExp ? String(v) : v))}` });
	return hit;
}

/** The Engine.IO session id of a client, once its handshake is done (kept after the close). */
function engineSid(s) {
	return new Promise(resolve => {
		if (s.io.engine && s.io.engine.id) return resolve(s.io.engine.id);
		s.io.once("open", () => resolve(s.io.engine.id));
	});
}

describe("JSON logs of a whole end-to-end run (issue 10)", () => {
	it("every line is JSON with time/level/component/message; the events' lines carry their fields; no credential", async () => {
		const c = await startCluster({ args: ["--log-format", "json"] }); // logLevel debug
		const extraBrokers = [];
		try {
			const node = c.node;
			// Start: the node logged the peers it found, by nodeID.
			for (const peer of [c.auth, c.producer]) {
				await record(node, { component: "registry", message: "node joined", nodeID: peer.nodeID });
			}

			// Clients authenticated, one per transport.
			const { token, cookies } = login("U1", "S1");
			const ws = await c.connect({ cookie: cookies[0], transports: ["websocket"] });
			const polling = await c.connect({ cookie: COOKIES.U2, transports: ["polling"] });
			const wsSid = await engineSid(ws);
			const pollingSid = await engineSid(polling);
			for (const [sid, transport] of [[wsSid, "websocket"], [pollingSid, "polling"]]) {
				await record(node, { level: "debug", component: "gateway", message: "session opened", sid, transport, address: "127.0.0.1" });
			}
			// The Socket.IO socket id (what socket.clients and the service's lines name) next to the sid.
			await record(node, { level: "debug", component: "socketio", message: "socket connected", sid: wsSid, socket: ws.id });

			// Auth refused (the auth service fails): the failure with its reason, the close with the sid.
			const refused = c.client({ cookie: cookie("S1", "fail-500"), transports: ["websocket"] });
			const refusedSid = engineSid(refused);
			await failedToConnect(refused);
			const failure = await record(node, { level: "warning", component: "socket", message: /^authentication failed/ });
			assert.match(failure.reason, /code 500/, JSON.stringify(failure));
			assert.equal(failure.spaceId, "S1");
			await record(node, { component: "socketio", message: "closing Engine.IO session on CONNECT", sid: await refusedSid, reason: /^auth service failed: / });
			await record(node, { component: "gateway", message: "session closed", sid: await refusedSid, reason: /./ });

			// Subscribe accepted and refused (with the refusal's reason), events delivered.
			const ok = await ws.emitWithAck("subscribe", { roomParts: ["space", "record:orders:change-1"] });
			assert.ok(Array.isArray(ok.rooms), JSON.stringify(ok));
			const no = await ws.emitWithAck("subscribe", { roomParts: "notification-change-U2" }); // another user's room
			assert.equal(typeof no.error, "string", JSON.stringify(no));
			await record(node, { level: "debug", component: "socket", message: "subscribe refused", socket: ws.id, reason: no.error });
			await c.barrier([ws, polling]);
			await c.barrier([ws, polling], "broadcast");

			// A malformed Socket.IO packet: the violation and the close, both with sid and reason.
			const bad = await c.connect({ cookie: COOKIES.U4, transports: ["websocket"] });
			const badSid = await engineSid(bad);
			bad.io.engine.write('2["unterminated');
			await h.waitFor(() => bad.disconnects.length > 0, 4000, { what: "the node closes the malformed client" });
			const violation = await record(node, { level: "debug", component: "socketio", message: /protocol violation/, sid: badSid });
			assert.ok(violation.reason, JSON.stringify(violation));
			await record(node, { component: "gateway", message: "session closed", sid: badSid, reason: "parse error" });

			// A service payload the node rejects: event, sender nodeID and reason.
			c.producer.emit("$socket.emit", { eventParams: ["no eventName"] });
			await record(node, { level: "warning", component: "socket", message: "event rejected", event: "$socket.emit", nodeID: c.producer.nodeID, reason: "eventName is missing or empty" });

			// A node joins and leaves.
			const visitor = h.createBroker("0.14", { nats: c.nats });
			extraBrokers.push(visitor);
			await visitor.start();
			await record(node, { component: "registry", message: "node joined", nodeID: visitor.nodeID });
			await h.stopBrokers(visitor);
			extraBrokers.length = 0;
			await record(node, { component: "registry", message: "node left", nodeID: visitor.nodeID, reason: "DISCONNECT" });

			// A client disconnects.
			polling.close();
			await record(node, { level: "debug", component: "gateway", message: "session closed", sid: pollingSid, transport: "polling", reason: "transport close" });

			// The bus goes away and comes back: warnings naming the transporter.
			await c.nats.stop();
			await record(node, { level: "warning", component: "transit", message: /connection lost/, transporter: /^(NATS|Redis)$/ }, 10000);
			await c.nats.restart();
			await record(node, { level: "warning", component: "transit", message: /connection restored/, transporter: /^(NATS|Redis)$/ }, 15000);

			// The drain at SIGTERM closes the last client.
			assert.equal((await node.stop("SIGTERM", 8000)).code, 0);
			await record(node, { level: "info", component: "broker", message: /^signal 15 received; draining/ });
			await record(node, { level: "info", component: "broker", message: /^drained in \d+ ms/ });
			await record(node, { component: "gateway", message: "session closed", sid: wsSid, reason: /./ });

			// Every line: one JSON object with the four keys; no credential anywhere.
			const secrets = [token, cookies[0], COOKIES.U2, COOKIES.U4, "t-u2", "t-u4", "fail-500"];
			const all = records(node);
			assert.ok(all.length > 30, `only ${all.length} lines`);
			for (const [i, r] of all.entries()) {
				const line = node.logs[i].line;
				assert.match(r.time, ISO_UTC_MS, line);
				assert.ok(LEVELS.includes(r.level), line);
				assert.equal(typeof r.component, "string", line);
				assert.equal(typeof r.message, "string", line);
				assert.deepEqual(Object.keys(r).slice(0, 4), ["time", "level", "component", "message"], line);
				for (const secret of secrets) assert.ok(!line.includes(secret), `a credential (${secret}) in: ${line}`);
			}
			// The search is not vacuous: the lines of these very clients are there.
			assert.ok(all.filter(r => r.message === "session opened").length >= 4);
			const levels = {};
			for (const r of all) levels[r.level] = (levels[r.level] || 0) + 1;
			console.log(`# ${all.length} JSON lines (${JSON.stringify(levels)}), ${all.filter(r => Object.keys(r).length > 4).length} with fields`);
		} finally {
			await h.stopBrokers(...extraBrokers);
			await c.stop();
		}
	});

	for (const [how, opts, key] of [
		["--log-format json", { extra: { gateway: { port: "x" } }, args: ["--log-format", "json"] }, "gateway.port"],
		["LOGFORMAT=json", { env: { LOGFORMAT: "json", PORT: "99999" } }, "PORT"]
	]) {
		it(`a configuration error with ${how}: one JSON line, level critical, component config, the key`, async () => {
			const node = await startGateway(Object.assign({ transporter: "nats://127.0.0.1:4222" }, opts));
			try {
				const exit = await h.withTimeout(node.exited, 5000, "exit on the configuration error");
				assert.equal(exit.code, 1);
				assert.equal(node.logs.length, 1, node.logText());
				const r = JSON.parse(node.logs[0].line);
				assert.match(r.time, ISO_UTC_MS);
				assert.equal(r.level, "critical");
				assert.equal(r.component, "config");
				assert.equal(r.key, key);
				assert.match(r.message, new RegExp(`^configuration error: ${key}: `));
			} finally {
				await h.stopCppNodes(node);
			}
		});
	}
});
