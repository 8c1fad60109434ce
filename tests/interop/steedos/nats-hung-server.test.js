"use strict";
// Issue 12, NATS clustered: a nats-server that hangs (SIGSTOP: its sockets stay open, nothing is
// answered) instead of going away. The node notices with its NATS PINGs
// (transporter.options.pingInterval / maxPingOut, nats.js's names; default 5 s and 2), moves to
// the other server of its list and delivers again; no client is dropped and no event arrives
// twice. Two nats-servers joined by routes; the producer and the auth service sit on the server
// that does not hang. NATS only.
const { describe, it, before, after } = require("node:test");
const { io } = require("socket.io-client");
const { h, assert, authService, AUTH_ACTION, COOKIES, TRANSPORTS, record, startGateway, gatewayPort } = require("./fixture");

const PING_MS = 1000;
const MAX_PINGS_OUT = 2;
const CLIENTS = 12;
const USERS = [COOKIES.U1, COOKIES.U2, COOKIES.U3, COOKIES.U4];

describe(`a NATS server that hangs: the node's PINGs (every ${PING_MS} ms, ${MAX_PINGS_OUT} unanswered) move it to another server`, () => {
	let cl;
	let node;
	let auth;
	let producer;
	let hung; // the member the node was on, SIGSTOPped by the test
	const sockets = [];

	before(async () => {
		cl = await h.startNatsCluster(2);
		node = await startGateway({
			transporter: { type: "NATS", options: { url: cl.urls(0), pingInterval: PING_MS, maxPingOut: MAX_PINGS_OUT } },
			logLevel: "info",
			extra: { auth: { timeout: 1000 } }
		});
		node.port = await gatewayPort(node);
		// cnats shuffles the list: the server the node is on comes from its log.
		const url = /NATS connected to (\S+)/.exec((await node.waitForLog(/NATS connected to (\S+)/, 10000)).line)[1];
		hung = cl.members.find(m => m.url === url);
		const other = cl.members.find(m => m !== hung);
		auth = h.createBroker("0.14", { transporter: other.url });
		auth.createService(authService([]));
		producer = h.createBroker("0.14", { transporter: other.url });
		await Promise.all([auth.start(), producer.start()]);
		await h.waitForRemoteNode(producer, node.nodeID, ["socket.stats", "socket.emit"], 10000);
		await h.waitForCppSees(producer, node.nodeID, AUTH_ACTION, auth.nodeID, 10000);
		for (let i = 0; i < CLIENTS; i++) {
			const s = record(io(`http://127.0.0.1:${node.port}`, { forceNew: true, reconnection: false, timeout: 5000,
				transports: TRANSPORTS[i % TRANSPORTS.length].transports, extraHeaders: { cookie: USERS[i % USERS.length] } }));
			sockets.push(s);
			await h.waitFor(() => s.events.some(e => e.event === "connection-init"), 8000, { what: "connection-init" });
		}
	});
	after(async () => {
		if (hung && hung.proc) {
			try {
				process.kill(hung.proc.pid, "SIGCONT");
			} catch (_) {}
		}
		for (const s of sockets) s.close();
		await h.stopBrokers(auth, producer);
		await h.stopCppNodes(node);
		if (cl) await cl.stop();
	});

	it("the node leaves the hung server within the PING budget, delivers again, drops no client, duplicates nothing", async t => {
		const got = s => s.events.filter(e => e.event === "seq").map(e => e.args[0]);
		let next = 0;
		const tick = setInterval(() => producer.emit("$socket.emit", { eventName: "seq", eventParams: next++ }), 20);
		try {
			await h.waitFor(() => sockets.every(s => got(s).length > 0), 5000, { what: "the stream on every client" });
			const stoppedAt = Date.now();
			process.kill(hung.proc.pid, "SIGSTOP");
			const lost = await node.waitForLog(/NATS connection lost/, 10000);
			const lostMs = Date.now() - stoppedAt;
			const back = await node.waitForLog(/NATS reconnected to (\S+)/, 10000);
			const backMs = Date.now() - stoppedAt;
			assert.notEqual(/NATS reconnected to (\S+)/.exec(back.line)[1], hung.url, "reconnected to the other server");
			const firstAfter = next;
			await h.waitFor(() => sockets.every(s => got(s).some(k => k >= firstAfter)), 5000, { what: "an event emitted after the move on every client" });
			const flowingMs = Date.now() - stoppedAt;
			t.diagnostic(`hung server noticed after ${lostMs} ms, reconnected after ${backMs} ms, events on every client after ${flowingMs} ms`);
			// Noticed by the PINGs: not before one interval, and within (maxPingsOut + 1) intervals plus slack.
			assert.ok(lostMs >= PING_MS && lostMs <= (MAX_PINGS_OUT + 1) * PING_MS + 2000, `noticed after ${lostMs} ms (${lost.line})`);
		} finally {
			clearInterval(tick);
		}
		for (const s of sockets) {
			const ks = got(s);
			assert.deepEqual(ks.filter((k, i) => ks.indexOf(k) !== i), [], "no event twice");
			assert.deepEqual(s.disconnects, [], "no client dropped");
		}
	});
});
