"use strict";
// Scenarios 8, 9, 10, 12: heartbeat loss and recovery (SIGSTOP/SIGCONT), nodeID conflict, NATS
// restart, graceful SIGTERM (INFO without services, then DISCONNECT, exit 0).

const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const h = require("./lib/harness");

for (const { version, protocol } of h.VERSIONS) {
	const namespace = protocol === "4" ? "life" : "";
	describe(`node lifecycle (moleculer ${version}, protocol ${protocol}, namespace '${namespace}')`, () => {
		let nats, cpp, js;
		const nodeEvents = []; // $node.connected / $node.disconnected seen by js

		before(async () => {
			nats = await h.startBus();
			js = h.createBroker(version, { nats, namespace });
			js.createService({
				name: "jsvc",
				actions: { hello: ctx => `hi ${ctx.params.name}` },
				events: {
					"$node.connected"(ctx) {
						nodeEvents.push({ t: Date.now(), ev: "connected", id: ctx.params.node.id, reconnected: ctx.params.reconnected });
					},
					"$node.disconnected"(ctx) {
						nodeEvents.push({ t: Date.now(), ev: "disconnected", id: ctx.params.node.id, unexpected: ctx.params.unexpected });
					}
				}
			});
			await js.start();
			cpp = await h.startCppNode({ nats, protocolVersion: protocol, namespace });
			await h.waitForRemoteNode(js, cpp.nodeID, ["cpptest.echo"]);
			await h.waitForCppSees(js, cpp.nodeID, "jsvc.hello", js.nodeID);
		});

		after(async () => {
			await h.stopBrokers(js);
			await h.stopCppNodes(cpp);
			await nats.stop();
		});

		async function bothWaysWork(ms) {
			await h.waitFor(async () => (await js.call("cpptest.add", { a: 1, b: 2 }, { timeout: 1000 })) === 3, ms, {
				what: "JS -> C++ call works"
			});
			await h.waitFor(async () => {
				const r = await h.cppCall(js, cpp.nodeID, { action: "jsvc.hello", params: { name: "x" }, timeout: 1000 }, 2000);
				return r.ok && r.data === "hi x";
			}, ms, { what: "C++ -> JS call works" });
		}

		test("SIGSTOP: JS marks the C++ node unavailable; SIGCONT: it comes back with its services", async () => {
			nodeEvents.length = 0;
			const t0 = Date.now();
			process.kill(cpp.pid, "SIGSTOP");
			try {
				await h.waitFor(() => !h.jsNode(js, cpp.nodeID).available, 9000, { what: "C++ node unavailable" });
				const detected = Date.now() - t0;
				assert.ok(detected <= 8500, `detected after ${detected} ms`);
				assert.equal(h.jsHasAction(js, "cpptest.echo", cpp.nodeID), false);
				assert.deepEqual(
					nodeEvents.filter(e => e.id === cpp.nodeID).map(e => [e.ev, e.unexpected]),
					[["disconnected", true]]
				);
			} finally {
				process.kill(cpp.pid, "SIGCONT");
			}
			await h.waitForRemoteNode(js, cpp.nodeID, ["cpptest.echo"], 8000);
			assert.ok(
				nodeEvents.some(e => e.id === cpp.nodeID && e.ev === "connected" && e.reconnected === true),
				JSON.stringify(nodeEvents)
			);
			await bothWaysWork(8000);
			const echo = await js.call("cpptest.echo", { back: 1 });
			assert.deepEqual(echo.params, { back: 1 });
		});

		test("nodeID conflict: a second node with the same nodeID exits non-zero; the first keeps working", async () => {
			const before = h.jsNode(js, cpp.nodeID);
			const dup = await h.startCppNode({ nats, protocolVersion: protocol, namespace, nodeID: cpp.nodeID });
			const res = await h.withTimeout(dup.exited, 10000, "exit of the duplicate node");
			assert.notEqual(res.code, 0, `duplicate exited with ${JSON.stringify(res)}:\n${dup.logText()}`);
			assert.ok(dup.logText().includes(cpp.nodeID), `message names the nodeID:\n${dup.logText()}`);
			assert.equal(cpp.running(), true);
			// Barrier: the answer to this call was published after the duplicate exited, and JS reads
			// all its subjects from one connection in the server's order, so whatever the duplicate
			// sent has been processed by JS before the answer.
			assert.equal(await js.call("cpptest.add", { a: 1, b: 1 }), 2);
			const now = h.jsNode(js, cpp.nodeID);
			assert.equal(now.available, true);
			assert.equal(now.instanceID, before.instanceID, "JS still sees the first instance");
			assert.ok(js.started !== false);
			assert.equal(await js.call("cpptest.add", { a: 2, b: 2 }), 4);
			await bothWaysWork(3000);
		});

		test("nodeID conflict with a live JS node: the C++ node refuses to start, the JS node survives", async () => {
			const fatal = [];
			const id = h.uniqueId("shared");
			const jsTwin = h.createBroker(version, { nats, namespace, nodeID: id });
			// moleculer calls broker.fatal (process.exit) on an INFO with its nodeID and another instanceID.
			jsTwin.fatal = (msg) => fatal.push(msg);
			try {
				await jsTwin.start();
				const sniffer = await h.startSniffer(nats.url, namespace);
				try {
					const twin = await h.startCppNode({ nats, protocolVersion: protocol, namespace, nodeID: id });
					const res = await h.withTimeout(twin.exited, 10000, "exit of the C++ twin");
					assert.notEqual(res.code, 0, `C++ twin exited with ${JSON.stringify(res)}:\n${twin.logText()}`);
					assert.ok(twin.logText().includes(id), twin.logText());
					// Barrier: a PING to the JS twin sent after the C++ twin exited; the JS twin reads
					// its subjects from one connection in the server's order, so its PONG shows that it
					// processed whatever the C++ twin had sent.
					const pinger = h.uniqueId("pinger");
					const pong = await sniffer.first(`${sniffer.prefix}.PONG.${pinger}`, 3000, p => p.id === pinger);
					sniffer.publish(`${sniffer.prefix}.PING.${id}`, { ver: protocol, sender: pinger, id: pinger, time: Date.now() });
					assert.equal((await pong.value).sender, id);
					assert.deepEqual(fatal, [], "the JS node saw a conflicting INFO");
					const infos = sniffer.packets.filter(p => p.cmd === "INFO" && p.packet.sender === id && p.packet.instanceID !== jsTwin.instanceID);
					assert.deepEqual(infos, [], "the C++ twin announced itself");
				} finally {
					await sniffer.close();
				}
			} finally {
				await jsTwin.stop();
			}
		});

		test("SIGKILL, then a new process with the same nodeID: JS re-registers it at once", async () => {
			const id = h.uniqueId("phoenix");
			const a = await h.startCppNode({ nats, protocolVersion: protocol, namespace, nodeID: id });
			await h.waitForRemoteNode(js, id, ["cpptest.echo"]);
			const firstInstance = h.jsNode(js, id).instanceID;
			const killed = await a.stop("SIGKILL");
			assert.equal(killed.signal, "SIGKILL");
			// No DISCONNECT was sent: JS still believes in the old instance.
			assert.equal(h.jsNode(js, id).available, true);
			const b = await h.startCppNode({ nats, protocolVersion: protocol, namespace, nodeID: id });
			try {
				await h.waitFor(() => {
					const n = h.jsNode(js, id);
					return n && n.available && n.instanceID !== firstInstance;
				}, 5000, { what: "JS sees the new instance" });
				assert.equal(b.running(), true, `the restarted node must not take the dead one for a live twin:\n${b.logText()}`);
				const echo = await js.call("cpptest.echo", { again: 1 }, { nodeID: id, timeout: 2000 });
				assert.deepEqual(echo.params, { again: 1 });
				const stopped = await b.stop("SIGTERM");
				assert.equal(stopped.code, 0);
				await h.waitFor(() => !h.jsNode(js, id).available, 2000, { what: "node gone after SIGTERM" });

				// A clean restart after a graceful stop comes back too.
				const c = await h.startCppNode({ nats, protocolVersion: protocol, namespace, nodeID: id });
				try {
					await h.waitForRemoteNode(js, id, ["cpptest.echo"], 5000);
					assert.equal((await js.call("cpptest.add", { a: 1, b: 1 }, { nodeID: id })), 2);
				} finally {
					await c.stop("SIGTERM");
				}
			} finally {
				await h.stopCppNodes(b);
			}
		});

		test(`${h.BUS === "redis" ? "Redis" : "NATS"} restart on the same port: calls work again both ways`, async () => {
			await nats.stop();
			await h.sleep(500); // the outage itself, not a synchronisation
			await nats.restart();
			await bothWaysWork(15000);
			assert.equal(h.jsNode(js, cpp.nodeID).available, true);
		});

		test(`${h.BUS === "redis" ? "Redis" : "NATS"} down longer than heartbeatTimeout: both sides drop each other, then recover`, async () => {
			nodeEvents.length = 0;
			await nats.stop();
			await h.waitFor(() => !h.jsNode(js, cpp.nodeID).available, 9000, { what: "JS drops the C++ node" });
			// The outage itself, not a synchronisation: the bus stays down 1 s longer, so the C++
			// side's own heartbeat check (same timeout) runs out too.
			await h.sleep(1000);
			await nats.restart();
			await bothWaysWork(20000);
			await h.waitForRemoteNode(js, cpp.nodeID, ["cpptest.echo", "cpptest.call"], 5000);
			const r = await h.cppCall(js, cpp.nodeID, { action: "$node.list", params: {} });
			assert.equal(r.data.find(n => n.id === js.nodeID).available, true);
			assert.ok(nodeEvents.some(e => e.id === cpp.nodeID && e.ev === "connected" && e.reconnected === true), JSON.stringify(nodeEvents));
		});

		test("SIGTERM: INFO without services, then DISCONNECT; JS sees it within 1 s; exit code 0", async () => {
			const sniffer = await h.startSniffer(nats.url, namespace);
			try {
				// Let at least one HEARTBEAT pass through the sniffer first.
				await h.waitFor(
					() => sniffer.packets.some(p => p.cmd === "HEARTBEAT" && p.packet.sender === cpp.nodeID),
					3000,
					{ what: "a HEARTBEAT from the C++ node" }
				);
				const seqBefore = h.jsNode(js, cpp.nodeID).seq;
				nodeEvents.length = 0;
				const t0 = Date.now();
				const stopped = cpp.stop("SIGTERM", 5000);
				await h.waitFor(() => !h.jsNode(js, cpp.nodeID).available, 3000, { what: "C++ node unavailable" });
				const detected = Date.now() - t0;
				const res = await stopped;
				assert.equal(res.code, 0, `exit ${JSON.stringify(res)}:\n${cpp.logText().slice(-2000)}`);
				assert.equal(res.signal, null);
				assert.ok(detected <= 1000, `JS saw the node go after ${detected} ms`);
				assert.deepEqual(
					nodeEvents.filter(e => e.id === cpp.nodeID).map(e => [e.ev, e.unexpected]),
					[["disconnected", false]]
				);

				// Barrier: two HEARTBEATs of the JS node (interval 1 s) after the DISCONNECT show that
				// time passed on the bus; a heartbeat of the C++ node after its DISCONNECT would be here.
				const disc = await h.waitFor(() => {
					const i = sniffer.packets.findIndex(p => p.cmd === "DISCONNECT" && p.packet.sender === cpp.nodeID);
					return i >= 0 ? { i } : false;
				}, 3000, { what: "the sniffer sees the DISCONNECT" }).then(r => r.i);
				await h.waitFor(
					() => sniffer.packets.slice(disc + 1).filter(p => p.cmd === "HEARTBEAT" && p.packet.sender === js.nodeID).length >= 2,
					5000,
					{ what: "two HEARTBEATs of the JS node after the DISCONNECT" }
				);
				const mine = sniffer.packets.filter(p => p.packet.sender === cpp.nodeID);
				const iInfo = mine.findIndex(p => p.cmd === "INFO" && Array.isArray(p.packet.services) && p.packet.services.length === 0);
				const iDisc = mine.findIndex(p => p.cmd === "DISCONNECT");
				const order = mine.map(p => p.cmd).join(" ");
				assert.ok(iInfo >= 0, `INFO with services:[] sent: ${order}`);
				assert.ok(iDisc >= 0, `DISCONNECT sent: ${order}`);
				assert.ok(iInfo < iDisc, `INFO before DISCONNECT: ${order}`);
				assert.equal(mine[iInfo].target, null, "the empty INFO is broadcast");
				assert.ok(mine[iInfo].packet.seq > seqBefore, `seq ${seqBefore} -> ${mine[iInfo].packet.seq}`);
				assert.equal(mine[iDisc].packet.ver, protocol);
				assert.deepEqual(mine.slice(iDisc + 1).map(p => p.cmd), [], `nothing after DISCONNECT: ${order}`);
			} finally {
				await sniffer.close();
			}
		});
	});
}
