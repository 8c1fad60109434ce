"use strict";
// The Redis transporter as JS nodes on Redis see it (redis-transporter.md §4): Debian's
// redis-server, moleculer 0.14 and 0.15 with ioredis 5, the C++ interop node. What does not depend
// on the bus (calls, events, discovery) also runs on Redis through `INTEROP_BUS=redis`; this file
// holds what Redis changes: its channels, no balancer topics, credentials, ACL, TLS, restarts, a
// frozen server, a flood, and a request delivered twice.

const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("fs");
const h = require("./lib/harness");

/** The 12 channels a node subscribes on Redis (spec §1 item 4), sorted. */
function nodeChannels(prefix, id) {
	return [
		`EVENT.${id}`, `REQ.${id}`, `RES.${id}`, "DISCOVER", `DISCOVER.${id}`, "INFO", `INFO.${id}`,
		"DISCONNECT", "HEARTBEAT", "PING", `PING.${id}`, `PONG.${id}`
	].map(c => `${prefix}.${c}`).sort();
}

for (const { version, protocol } of h.VERSIONS) {
	describe(`Redis transporter (moleculer ${version}, protocol ${protocol})`, () => {
		const namespace = "steedos";
		const prefix = `MOL-${namespace}`;
		let redis, cpp, js, sniffer;
		const jsGot = [];

		before(async () => {
			redis = await h.startRedis();
			js = h.createBroker(version, { transporter: redis.url, namespace });
			js.createService({
				name: "jsvc",
				actions: { upper: ctx => String(ctx.params.s).toUpperCase(), size: ctx => ctx.params.blob.length },
				events: {
					"test.**"(ctx) {
						if (ctx.nodeID !== js.nodeID) jsGot.push({ event: ctx.eventName, params: ctx.params, sender: ctx.nodeID });
					}
				}
			});
			await js.start();
			cpp = await h.startCppNode({ transporter: redis.url, namespace, protocolVersion: protocol });
			await h.waitForRemoteNode(js, cpp.nodeID, ["cpptest.echo"], 10000);
			await h.waitForCppSees(js, cpp.nodeID, "jsvc.upper", js.nodeID, 10000);
			sniffer = await h.startSniffer(redis.url, namespace);
		});

		after(async () => {
			if (sniffer) await sniffer.close();
			await h.stopBrokers(js);
			await h.stopCppNodes(cpp);
			if (redis) await redis.close();
		});

		test("the node holds exactly its 12 channels (no REQB/EVENTB) on one subscriber, and one publisher", async () => {
			const channels = await redis.channels(`${prefix}.*`);
			const mine = channels.filter(c => c.endsWith(`.${cpp.nodeID}`) || !/\.[^.]+\.[^.]+$/.test(c.slice(prefix.length)));
			for (const c of nodeChannels(prefix, cpp.nodeID)) assert.ok(channels.includes(c), `${c} in ${channels}`);
			assert.deepEqual(channels.filter(c => /\.(REQB|EVENTB)\./.test(c)), []);
			assert.deepEqual(mine.filter(c => c.includes(cpp.nodeID)).sort(),
				nodeChannels(prefix, cpp.nodeID).filter(c => c.includes(cpp.nodeID)));
			// Subscribers with 12 channels: the JS node's and the C++ node's.
			const subs = (await redis.clientList()).filter(c => c.sub === "12");
			assert.equal(subs.length, 2, JSON.stringify(subs));
		});

		test("calls both ways, an unknown action, and a 2 MB payload", async () => {
			const res = await js.call("cpptest.echo", { a: 1 }, { nodeID: cpp.nodeID });
			assert.deepEqual(res.params, { a: 1 });
			const err = await h.rejectionOf(js.call("cpptest.nope", {}, { nodeID: cpp.nodeID }));
			assert.equal(err.name, "ServiceNotFoundError");
			const r = await h.cppCall(js, cpp.nodeID, { action: "jsvc.upper", params: { s: "redis" } });
			assert.deepEqual(r.ok ? r.data : r, "REDIS");
			const blob = "x".repeat(2 * 1024 * 1024);
			const big = await h.cppCall(js, cpp.nodeID, { action: "jsvc.size", params: { blob } }, 15000);
			assert.equal(big.data, blob.length);
			const echoed = await js.call("cpptest.echo", { blob }, { nodeID: cpp.nodeID, timeout: 15000 });
			assert.equal(echoed.params.blob.length, blob.length);
		});

		test("events both ways: emit and broadcast go to EVENT.<node> channels only", async () => {
			const from = sniffer.packets.length;
			jsGot.length = 0;
			await js.call("cpptest.clear", {}, { nodeID: cpp.nodeID });
			js.emit("test.exact", { n: 1 });
			js.broadcast("test.exact", { n: 2 });
			await js.call("cpptest.emit", { event: "test.from.cpp", data: { n: 3 }, mode: "emit" }, { nodeID: cpp.nodeID });
			await js.call("cpptest.emit", { event: "test.from.cpp", data: { n: 4 }, mode: "broadcast" }, { nodeID: cpp.nodeID });
			await h.waitFor(async () => (await js.call("cpptest.received", {}, { nodeID: cpp.nodeID })).length >= 2, 5000, { what: "2 events on the C++ node" });
			await h.waitFor(() => jsGot.length >= 2, 5000, { what: "2 events on the JS node" });
			const cppGot = await js.call("cpptest.received", {}, { nodeID: cpp.nodeID });
			assert.deepEqual(cppGot.map(x => x.data.n).sort(), [1, 2]);
			assert.deepEqual(jsGot.map(x => x.params.n).sort(), [3, 4]);
			const events = sniffer.packets.slice(from).filter(p => p.cmd.startsWith("EVENT"));
			assert.ok(events.length >= 4);
			assert.deepEqual([...new Set(events.map(p => p.cmd))], ["EVENT"], "no EVENTB on Redis");
			assert.ok(events.every(p => p.target), "every EVENT is targeted");
		});

		test("a REQ delivered twice (moleculerjs#1363) is run and answered once", async () => {
			const sender = h.uniqueId("twice");
			const id = h.uniqueId("req");
			const answers = [];
			const one = await sniffer.first(`${prefix}.RES.${sender}`, 3000);
			const all = sniffer.packets.length;
			const packet = {
				ver: protocol, sender, id, action: "cpptest.echo", params: { twice: true }, meta: {}, timeout: 0,
				level: 1, tracing: null, parentID: null, requestID: id, caller: null, stream: false,
				...(protocol === "5" ? { headers: {} } : {})
			};
			sniffer.publish(`${prefix}.REQ.${cpp.nodeID}`, packet);
			sniffer.publish(`${prefix}.REQ.${cpp.nodeID}`, packet);
			const res = await one.value;
			assert.equal(res.id, id);
			// Barrier: a later request from the same sender on the same channel is answered after
			// any second answer to the first would have been.
			const id2 = h.uniqueId("req");
			const two = await sniffer.first(`${prefix}.RES.${sender}`, 3000, p => p.id === id2);
			sniffer.publish(`${prefix}.REQ.${cpp.nodeID}`, { ...packet, id: id2, requestID: id2 });
			await two.value;
			await h.waitFor(() => sniffer.packets.some(p => p.cmd === "RES" && p.packet.id === id2), 3000, { what: "the second RES in the sniffer" });
			for (const p of sniffer.packets.slice(all)) if (p.cmd === "RES" && p.target === sender) answers.push(p.packet.id);
			assert.deepEqual(answers, [id, id2]);
		});

		test("disableBalancer on Redis: the node warns, keeps its balancer and publishes no REQB/EVENTB", async () => {
			const other = await h.startCppNode({ transporter: redis.url, namespace, protocolVersion: protocol, disableBalancer: true });
			try {
				await other.waitForLog(/RedisTransporter has no built-in balancer\. Broker balancer is ENABLED\./, 5000);
				await h.waitForRemoteNode(js, other.nodeID, ["cpptest.echo"], 10000);
				const from = sniffer.packets.length;
				const opts = await js.call("$node.options", {}, { nodeID: other.nodeID });
				assert.equal(opts.disableBalancer, false);
				assert.equal(opts.transporter, "Redis");
				await h.waitForCppSees(js, other.nodeID, "jsvc.upper", js.nodeID, 10000);
				await h.cppCall(js, other.nodeID, { action: "jsvc.upper", params: { s: "a" } });
				await js.call("cpptest.emit", { event: "test.balanced", data: { n: 5 }, mode: "emit" }, { nodeID: other.nodeID });
				await h.waitFor(() => jsGot.some(x => x.params.n === 5), 5000, { what: "the emit on the JS node" });
				const cmds = new Set(sniffer.packets.slice(from).map(p => p.cmd));
				assert.ok(!cmds.has("REQB") && !cmds.has("EVENTB"), [...cmds].join(","));
				assert.deepEqual((await redis.channels(`${prefix}.*B.*`)), []);
			} finally {
				await h.stopCppNodes(other);
			}
		});

		test("graceful stop: the JS node drops the C++ node at once (DISCONNECT), its channels are gone", async () => {
			const other = await h.startCppNode({ transporter: redis.url, namespace, protocolVersion: protocol });
			await h.waitForRemoteNode(js, other.nodeID, ["cpptest.echo"], 10000);
			const t0 = Date.now();
			const exit = await other.stop("SIGTERM");
			assert.equal(exit.code, 0);
			await h.waitFor(() => !(h.jsNode(js, other.nodeID) || {}).available, 1500, { what: "JS drops the node" });
			assert.ok(Date.now() - t0 < 1500);
			assert.ok(sniffer.packets.some(p => p.cmd === "DISCONNECT" && p.packet.sender === other.nodeID));
			await h.waitFor(async () => !(await redis.channels(`${prefix}.*`)).some(c => c.endsWith(other.nodeID)), 3000, { what: "no channel of the stopped node" });
		});

		test("a JS node that stops leaves the C++ registry (DISCONNECT)", async () => {
			const leaver = h.createBroker(version, { transporter: redis.url, namespace });
			leaver.createService({ name: "leaver", actions: { x: () => 1 } });
			await leaver.start();
			await h.waitForCppSees(js, cpp.nodeID, "leaver.x", leaver.nodeID, 10000);
			await leaver.stop();
			await h.waitFor(async () => {
				const nodes = await js.call("$node.list", {}, { nodeID: cpp.nodeID });
				const n = nodes.find(x => x.id === leaver.nodeID);
				return !n || !n.available;
			}, 3000, { what: "the C++ node drops the stopped JS node" });
		});
	});
}

describe("Redis transporter: empty namespace", () => {
	let redis, cpp, js;
	before(async () => {
		redis = await h.startRedis();
		js = h.createBroker("0.14", { transporter: redis.url });
		await js.start();
		cpp = await h.startCppNode({ transporter: "redis://127.0.0.1:" + redis.port });
		await h.waitForRemoteNode(js, cpp.nodeID, ["cpptest.echo"], 10000);
	});
	after(async () => {
		await h.stopBrokers(js);
		await h.stopCppNodes(cpp);
		if (redis) await redis.close();
	});
	test("channels are MOL.<CMD>", async () => {
		const channels = await redis.channels("MOL.*");
		for (const c of nodeChannels("MOL", cpp.nodeID)) assert.ok(channels.includes(c), c);
		assert.deepEqual(await redis.channels("MOL-*"), []);
	});
});

describe("Redis transporter: credentials", () => {
	const password = "p@ss:w/rd%1";
	let redis, js;
	before(async () => {
		redis = await h.startRedis({
			password,
			args: [
				"--user", "molnode", "on", ">molpw", "-@all", "+subscribe", "+publish", "+ping", "&MOL-steedos.*",
				"--user", "nochan", "on", ">nopw", "-@all", "+subscribe", "+publish", "+ping", "resetchannels"
			]
		});
		js = h.createBroker("0.14", { transporter: redis.url, namespace: "steedos" });
		await js.start();
	});
	after(async () => {
		await h.stopBrokers(js);
		if (redis) await redis.close();
	});

	async function joins(transporter) {
		const cpp = await h.startCppNode({ transporter, namespace: "steedos" });
		try {
			await h.waitForRemoteNode(js, cpp.nodeID, ["cpptest.echo"], 10000);
			assert.deepEqual((await js.call("cpptest.echo", { k: 1 }, { nodeID: cpp.nodeID })).params, { k: 1 });
			assert.doesNotMatch(cpp.logText(), new RegExp(password.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")), "the password is never logged");
		} finally {
			await h.stopCppNodes(cpp);
		}
	}

	test("a password with @:/% percent-encoded in the URL", () => joins(redis.url));
	test("the object form with host, port and password", () =>
		joins({ type: "Redis", options: { host: "127.0.0.1", port: redis.port, password } }));
	test("an ACL user limited to &MOL-steedos.*", () => joins(`redis://molnode:molpw@127.0.0.1:${redis.port}`));

	test("a wrong password: a clear error naming WRONGPASS, exit code 1, the password not logged", async () => {
		const cpp = await h.startCppNode({ transporter: `redis://:wrong-secret@127.0.0.1:${redis.port}`, namespace: "steedos" });
		const r = await h.withTimeout(cpp.exited, 20000, "exit of a node with a wrong password");
		assert.equal(r.code, 1);
		assert.match(cpp.logText(), /WRONGPASS|invalid username-password/);
		assert.doesNotMatch(cpp.logText(), /wrong-secret/);
	});

	test("an ACL user without channel rights: a clear NOPERM error, no crash", async () => {
		const cpp = await h.startCppNode({ transporter: `redis://nochan:nopw@127.0.0.1:${redis.port}`, namespace: "steedos" });
		try {
			await cpp.waitForLog(/NOPERM/, 15000);
			assert.match(cpp.logText(), /&MOL-steedos\.\*/, "the log says which channel permission is missing");
			// Barrier: after the NOPERM line the server refused two more SUBSCRIBEs of the HEARTBEAT
			// channel: the node retried twice (with backoff), so it went on running past the
			// refusal; or it exited, which must be clean.
			const admin = redis.admin();
			// ACL LOG: one entry per (reason, channel, user) with a count of refusals.
			const refusals = async () => (await admin.call("ACL", "LOG", "128")).map(flat => {
				const e = {};
				for (let i = 0; i + 1 < flat.length; i += 2) e[flat[i]] = flat[i + 1];
				return e;
			}).filter(e => e.reason === "channel" && e.username === "nochan");
			const heartbeatRefusals = async () => (await refusals())
				.filter(e => e.object === "MOL-steedos.HEARTBEAT")
				.reduce((n, e) => n + Number(e.count), 0);
			const first = await heartbeatRefusals();
			await h.waitFor(async () => !cpp.running() || (await heartbeatRefusals()) >= first + 2, 15000, {
				what: "two more refused SUBSCRIBEs of the HEARTBEAT channel (the node's retries), or its exit"
			}).catch(async err => {
				err.message += `\nrefusals: ${JSON.stringify((await refusals()).map(e => [e.object, e.count]))}`;
				throw err;
			});
			if (!cpp.running()) {
				const r = await cpp.exited;
				assert.ok(r.signal === null && r.code !== null && r.code <= 1, `exited cleanly: ${JSON.stringify(r)}`);
			}
		} finally {
			await h.stopCppNodes(cpp);
		}
	});
});

describe("Redis transporter: restarts and a frozen server", () => {
	let redis, cpp, js;
	const jsGot = [];
	before(async () => {
		redis = await h.startRedis();
		js = h.createBroker("0.14", { transporter: redis.url, namespace: "steedos", heartbeatInterval: 1, heartbeatTimeout: 3 });
		js.createService({ name: "jsvc", actions: { upper: ctx => String(ctx.params.s).toUpperCase() }, events: { "test.**"(ctx) { jsGot.push(ctx.params); } } });
		await js.start();
		// STEEDOS_FIXTURE_BENCH: the fixture adds its `cppbench` counter (the flood's receiver).
		cpp = await h.startCppNode({ transporter: redis.url, namespace: "steedos", env: { STEEDOS_FIXTURE_BENCH: "1" } });
		await h.waitForRemoteNode(js, cpp.nodeID, ["cpptest.echo", "cppbench.count"], 10000);
		await h.waitForCppSees(js, cpp.nodeID, "jsvc.upper", js.nodeID, 10000);
	});
	after(async () => {
		await h.stopBrokers(js);
		await h.stopCppNodes(cpp);
		if (redis) await redis.close();
	});

	/** Calls and events flow both ways again; returns the ms it took from `t0`. */
	async function flowsAgain(t0, ms) {
		await h.waitFor(async () => (await js.call("cpptest.echo", { r: 1 }, { nodeID: cpp.nodeID, timeout: 1000 })).params.r === 1, ms, { what: "JS -> C++ call" });
		await h.waitFor(async () => {
			const r = await h.cppCall(js, cpp.nodeID, { action: "jsvc.upper", params: { s: "b" } }, 1000);
			return r.ok && r.data === "B";
		}, ms, { what: "C++ -> JS call" });
		const n = Math.random();
		await js.call("cpptest.emit", { event: "test.again", data: { n }, mode: "broadcast" }, { nodeID: cpp.nodeID });
		await h.waitFor(() => jsGot.some(x => x.n === n), ms, { what: "C++ -> JS event" });
		return Date.now() - t0;
	}

	async function subscriberCount() {
		return (await redis.clientList()).filter(c => c.sub === "12").length;
	}

	for (const [name, downMs] of [["short (under heartbeatTimeout)", 1000], ["long (over heartbeatTimeout)", 5000]]) {
		test(`Redis restarted, ${name}: re-subscribed, re-announced, flowing within 5 s, connection count unchanged`, async t => {
			const before = (await redis.clientList()).length;
			await redis.stop();
			await h.sleep(downMs); // the outage itself, not a synchronisation
			const t0 = Date.now();
			await redis.restart();
			const took = await flowsAgain(t0, 8000);
			t.diagnostic(`calls and events both ways again ${took} ms after Redis was back`);
			assert.ok(took < 5000, `flowing again after ${took} ms`);
			await cpp.waitForLog(/Redis connection restored; announcing the node again/, 1000);
			assert.equal(await subscriberCount(), 2, "one subscriber per node");
			assert.ok((await redis.clientList()).length <= before + 1, "no connection leaked");
			assert.ok(cpp.running());
		});
	}

	test("a frozen server (SIGSTOP) is noticed by the PING timeout; after SIGCONT the node recovers", async t => {
		const before = cpp.logs.length;
		redis.pause();
		try {
			await h.waitFor(() => cpp.logs.slice(before).some(l => /Redis connection lost/.test(l.line)), 15000, { what: "the node notices the frozen server" });
		} finally {
			redis.resume();
		}
		const t0 = Date.now();
		const took = await flowsAgain(t0, 10000);
		t.diagnostic(`flowing again ${took} ms after SIGCONT`);
		assert.ok(took < 8000, `flowing again after ${took} ms`);
		assert.equal(await subscriberCount(), 2);
	});

	test("a flood of JS broadcasts does not get the C++ subscriber dropped", async () => {
		const blob = "f".repeat(1024);
		await js.call("cpptest.clear", {}, { nodeID: cpp.nodeID });
		const lostBefore = cpp.logs.filter(l => /connection lost/.test(l.line)).length;
		const total = 20000;
		for (let i = 0; i < total; i++) {
			js.broadcast("bench.tick", { i, blob });
			if (i % 500 === 0) await new Promise(setImmediate);
		}
		await h.waitFor(async () => (await js.call("cppbench.count", {}, { nodeID: cpp.nodeID, timeout: 2000 })) >= total, 30000, { what: `${total} events on the C++ node` });
		const lostAfter = cpp.logs.filter(l => /connection lost/.test(l.line)).length;
		assert.equal(lostAfter, lostBefore, "the subscriber was never dropped");
		const subs = (await redis.clientList()).filter(c => c.sub === "12");
		assert.ok(subs.every(c => Number(c.omem) < 1024 * 1024), JSON.stringify(subs.map(c => c.omem)));
	});
});

describe("down at start: one behaviour on both transporters", () => {
	for (const scheme of ["redis", "nats"]) {
		test(`no ${scheme} server: the node exits with code 1 and names the address`, async () => {
			const port = await h.freePort();
			const cpp = await h.startCppNode({ transporter: `${scheme}://127.0.0.1:${port}` });
			const r = await h.withTimeout(cpp.exited, 20000, `exit of a node without ${scheme}`);
			assert.equal(r.code, 1);
			assert.match(cpp.logText(), new RegExp(`cannot start.*127\\.0\\.0\\.1:${port}`));
		});
	}
});

describe("Redis transporter: a node that dies without DISCONNECT", () => {
	let redis, js;
	before(async () => {
		redis = await h.startRedis();
		js = h.createBroker("0.14", { transporter: redis.url, namespace: "steedos", heartbeatInterval: 1, heartbeatTimeout: 3 });
		await js.start();
	});
	after(async () => {
		await h.stopBrokers(js);
		if (redis) await redis.close();
	});

	test("the C++ node killed: the JS node drops it after heartbeatTimeout", async () => {
		const cpp = await h.startCppNode({ transporter: redis.url, namespace: "steedos", heartbeatInterval: 1, heartbeatTimeout: 3 });
		await h.waitForRemoteNode(js, cpp.nodeID, ["cpptest.echo"], 10000);
		const t0 = Date.now();
		await cpp.stop("SIGKILL");
		await h.waitFor(() => !(h.jsNode(js, cpp.nodeID) || {}).available, 10000, { what: "JS drops the killed node" });
		const took = Date.now() - t0;
		assert.ok(took >= 1500, `dropped after ${took} ms: by the heartbeat check, not by a DISCONNECT`);
	});

	test("a JS node killed (SIGKILL, its own process): the C++ node drops it after heartbeatTimeout", async () => {
		const cpp = await h.startCppNode({ transporter: redis.url, namespace: "steedos", heartbeatInterval: 1, heartbeatTimeout: 3 });
		const { spawn } = require("child_process");
		const nodeID = h.uniqueId("victim");
		const script = `
			const { ServiceBroker } = require("moleculer");
			const b = new ServiceBroker({ nodeID: ${JSON.stringify(nodeID)}, namespace: "steedos", transporter: ${JSON.stringify(redis.url)},
				logger: false, heartbeatInterval: 1, heartbeatTimeout: 3 });
			b.createService({ name: "victim", actions: { x: () => 1 } });
			b.start().then(() => console.log("started"));`;
		const child = spawn(process.execPath, ["-e", script], { cwd: h.INTEROP_DIR, stdio: ["ignore", "pipe", "inherit"] });
		try {
			await h.waitForCppSees(js, cpp.nodeID, "victim.x", nodeID, 15000);
			child.kill("SIGKILL");
			await h.waitFor(async () => {
				const nodes = await js.call("$node.list", {}, { nodeID: cpp.nodeID });
				const n = nodes.find(x => x.id === nodeID);
				return !n || !n.available;
			}, 10000, { what: "the C++ node drops the killed JS node" });
			const err = await h.rejectionOf(h.cppCall(js, cpp.nodeID, { action: "victim.x" }).then(r => (r.ok ? r : Promise.reject(r.error))));
			assert.match(String(err.name || err.type || JSON.stringify(err)), /ServiceNotFound|SERVICE_NOT_FOUND|ServiceNotAvailable/);
		} finally {
			child.kill("SIGKILL");
			await h.stopCppNodes(cpp);
		}
	});
});

describe("Redis transporter: TLS", () => {
	let certs, redis, js;
	before(async () => {
		certs = h.makeCertificates({ client: true });
		redis = await h.startRedis({ tls: { cert: certs.cert, key: certs.key, ca: certs.ca, authClients: "optional" } });
		js = h.createBroker("0.14", {
			transporter: { type: "Redis", options: { host: "localhost", port: redis.port, tls: { ca: fs.readFileSync(certs.ca) } } },
			namespace: "steedos"
		});
		await js.start();
	});
	after(async () => {
		await h.stopBrokers(js);
		if (redis) await redis.close();
		if (certs) fs.rmSync(certs.dir, { recursive: true, force: true });
	});

	async function startWith(tls, host = "localhost") {
		return h.startCppNode({ transporter: { type: "Redis", options: { host, port: redis.port, tls } }, namespace: "steedos" });
	}

	test("rediss:// with the test CA: calls both ways", async () => {
		const cpp = await h.startCppNode({ transporter: `rediss://localhost:${redis.port}`, namespace: "steedos", env: { SSL_CERT_FILE: certs.ca } });
		try {
			await h.waitForRemoteNode(js, cpp.nodeID, ["cpptest.echo"], 10000);
			assert.equal((await js.call("cpptest.echo", { blob: "t".repeat(100000) }, { nodeID: cpp.nodeID })).params.blob.length, 100000);
		} finally {
			await h.stopCppNodes(cpp);
		}
	});

	test("the object form with a CA file", async () => {
		const cpp = await startWith({ ca: certs.ca });
		try {
			await h.waitForRemoteNode(js, cpp.nodeID, ["cpptest.echo"], 10000);
		} finally {
			await h.stopCppNodes(cpp);
		}
	});

	test("an unknown CA or a wrong host name fails verification with a clear error", async () => {
		for (const [tls, host] of [[{}, "localhost"], [{ ca: certs.ca, servername: "wrong.example" }, "localhost"]]) {
			const cpp = await startWith(tls, host);
			const r = await h.withTimeout(cpp.exited, 20000, "exit on a failed verification");
			assert.equal(r.code, 1);
			assert.match(cpp.logText(), /certificate verify failed|verif/i);
		}
	});

	test("rejectUnauthorized: false connects, with a warning", async () => {
		const cpp = await startWith({ rejectUnauthorized: false });
		try {
			await h.waitForRemoteNode(js, cpp.nodeID, ["cpptest.echo"], 10000);
			assert.match(cpp.logText(), /warn.*without certificate verification \(rejectUnauthorized: false\)/);
		} finally {
			await h.stopCppNodes(cpp);
		}
	});

	test("a server that requires a client certificate: accepted with cert and key", async () => {
		const strict = await h.startRedis({ tls: { cert: certs.cert, key: certs.key, ca: certs.ca, authClients: "yes" } });
		try {
			const without = await h.startCppNode({ transporter: { type: "Redis", options: { host: "localhost", port: strict.port, tls: { ca: certs.ca } } } });
			const r = await h.withTimeout(without.exited, 20000, "exit without a client certificate");
			assert.equal(r.code, 1);
			const cpp = await h.startCppNode({ transporter: { type: "Redis", options: { host: "localhost", port: strict.port, tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } } } });
			try {
				await cpp.waitForLog(/broker started|node started|started/i, 10000);
				assert.ok(cpp.running());
			} finally {
				await h.stopCppNodes(cpp);
			}
		} finally {
			await strict.close();
		}
	});
});
