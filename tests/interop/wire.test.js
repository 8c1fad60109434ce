"use strict";
// Differential wire check: the same exchanges are made by a real JS broker and by the C++ node,
// every packet is sniffed, and for each packet type the C++ packets must carry the keys the JS
// packets carry (same JSON types for the fixed fields), on the same subjects.

const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const h = require("./lib/harness");

const typeOf = v => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);

for (const { version, protocol } of h.VERSIONS) {
	const namespace = protocol === "5" ? "wire" : "";
	describe(`wire shape vs JS (moleculer ${version}, protocol ${protocol}, namespace '${namespace}')`, () => {
		let nats, sniffer, js, cpp;
		let packets = [];

		before(async () => {
			nats = await h.startBus();
			sniffer = await h.startSniffer(nats.url, namespace);
			js = h.createBroker(version, { nats, namespace });
			js.createService({
				name: "jsvc",
				actions: {
					hello: ctx => `hi ${ctx.params.name}`,
					bad: () => {
						throw new Error("bad");
					}
				},
				events: { "wire.ev"() {} }
			});
			await js.start();
			cpp = await h.startCppNode({ nats, protocolVersion: protocol, namespace });
			await h.waitForRemoteNode(js, cpp.nodeID, ["cpptest.echo"]);
			await h.waitForCppSees(js, cpp.nodeID, "jsvc.hello", js.nodeID);
			await h.waitFor(async () => {
				const list = await js.call("$node.events", { withEndpoints: true }, { nodeID: cpp.nodeID });
				return list.some(e => e.name === "wire.ev");
			}, 8000, { what: "C++ knows wire.ev" });

			// The same exchanges in both directions.
			await js.call("cpptest.echo", { a: 1 }, { meta: { m: 1 } }); // REQ js->cpp, RES cpp->js
			await h.rejectionOf(() => js.call("cpptest.fail", { x: 1 })); // error RES from C++
			await h.cppCall(js, cpp.nodeID, { action: "jsvc.hello", params: { name: "w" } }); // REQ cpp->js, RES js->cpp
			await h.cppCall(js, cpp.nodeID, { action: "jsvc.bad", params: {} }); // error RES from JS
			await js.emit("test.exact", { e: 1 }); // EVENT js->cpp
			await js.call("cpptest.emit", { event: "wire.ev", data: { e: 2 }, mode: "emit" }, { nodeID: cpp.nodeID }); // EVENT cpp->js
			await js.broadcast("test.exact", { e: 3 });
			await js.call("cpptest.emit", { event: "wire.ev", data: { e: 4 }, mode: "broadcast" }, { nodeID: cpp.nodeID });
			sniffer.publish(`${sniffer.prefix}.PING`, { time: Date.now(), id: "wire-ping", ver: protocol, sender: "wire-pinger" });
			// The sniffer is a separate connection: wait until it holds, from both nodes, every
			// packet type the tests compare (a HEARTBEAT and the PONG to wire-ping included).
			const wanted = [
				["DISCOVER"], ["INFO"], ["HEARTBEAT"], ["REQ"], ["PONG", p => p.id === "wire-ping"],
				["RES", p => p.success === true], ["RES", p => p.success === false],
				["EVENT", p => p.broadcast === false], ["EVENT", p => p.broadcast === true]
			];
			const missing = ids => wanted.flatMap(([cmd, f = () => true]) => ids
				.filter(id => !sniffer.packets.some(p => p.cmd === cmd && p.packet.sender === id && f(p.packet)))
				.map(id => `${cmd} from ${id}`));
			await h.waitFor(() => missing([js.nodeID, cpp.nodeID]).length === 0, 5000, { what: "the sniffer sees every packet type from both nodes" })
				.catch(err => {
					err.message += `\nmissing: ${missing([js.nodeID, cpp.nodeID]).join(", ")}`;
					throw err;
				});
			await h.stopBrokers(js);
			await cpp.stop("SIGTERM");
			await h.waitFor(
				() => [js.nodeID, cpp.nodeID].every(id => sniffer.packets.some(p => p.cmd === "DISCONNECT" && p.packet.sender === id)),
				3000,
				{ what: "the sniffer sees the DISCONNECT of both nodes" }
			);
			packets = sniffer.packets.slice();
		});

		after(async () => {
			if (sniffer) await sniffer.close();
			await h.stopBrokers(js);
			await h.stopCppNodes(cpp);
			await nats.stop();
		});

		const from = (id, cmd, filter = () => true) =>
			packets.filter(p => p.packet.sender === id && p.cmd === cmd && filter(p.packet));

		function compare(cmd, filter = () => true, fixedTypes = []) {
			const jsPackets = from(js.nodeID, cmd, filter);
			const cppPackets = from(cpp.nodeID, cmd, filter);
			assert.ok(jsPackets.length > 0, `no JS ${cmd} sniffed`);
			assert.ok(cppPackets.length > 0, `no C++ ${cmd} sniffed`);
			const jsKeys = new Set(jsPackets.flatMap(p => Object.keys(p.packet)));
			for (const p of cppPackets) {
				const missing = [...jsKeys].filter(k => !(k in p.packet));
				assert.deepEqual(missing, [], `C++ ${cmd} lacks ${missing.join(", ")}: ${JSON.stringify(p.packet).slice(0, 400)}`);
				for (const k of fixedTypes) {
					assert.equal(typeOf(p.packet[k]), typeOf(jsPackets[0].packet[k]), `${cmd}.${k}: C++ ${JSON.stringify(p.packet[k])} vs JS ${JSON.stringify(jsPackets[0].packet[k])}`);
				}
				assert.equal(p.packet.ver, protocol);
			}
			return { jsPackets, cppPackets };
		}

		test("DISCOVER", () => {
			const { cppPackets } = compare("DISCOVER");
			assert.ok(cppPackets.some(p => p.target === null), "a broadcast DISCOVER at start");
		});

		test("INFO", () => {
			const { cppPackets } = compare("INFO", () => true, [
				"services", "ipList", "hostname", "client", "config", "instanceID", "metadata", "seq"
			]);
			const seqs = cppPackets.map(p => p.packet.seq);
			for (let i = 1; i < seqs.length; i++) {
				assert.ok(seqs[i] >= seqs[i - 1], `INFO seq never goes down: ${seqs}`);
			}
			assert.equal(new Set(cppPackets.map(p => p.packet.instanceID)).size, 1, "one instanceID per process");
			for (const p of cppPackets) {
				assert.deepEqual(Object.keys(p.packet.client).sort(), ["langVersion", "type", "version"]);
				assert.ok(p.packet.ipList.every(ip => typeof ip === "string"));
			}
		});

		test("HEARTBEAT", () => {
			const { cppPackets } = compare("HEARTBEAT", () => true, ["cpu"]);
			assert.ok(cppPackets.every(p => p.target === null));
			const times = cppPackets.map(p => p.t);
			for (let i = 1; i < times.length; i++) {
				const gap = times[i] - times[i - 1];
				assert.ok(gap >= 300 && gap <= 2000, `heartbeat gap ${gap} ms (interval 1 s)`);
			}
		});

		test("REQ", () => {
			const { cppPackets } = compare("REQ", () => true, [
				"id", "action", "params", "meta", "timeout", "level", "requestID", "stream"
			]);
			assert.ok(cppPackets.every(p => p.target === js.nodeID));
		});

		test("RES (success and error)", () => {
			compare("RES", p => p.success === true, ["id", "meta", "success"]);
			const { cppPackets, jsPackets } = compare("RES", p => p.success === false, ["id", "meta", "success", "error"]);
			const jsErrKeys = Object.keys(jsPackets[0].packet.error).filter(k => k !== "stack");
			for (const p of cppPackets) {
				const missing = jsErrKeys.filter(k => !(k in p.packet.error));
				assert.deepEqual(missing, [], `C++ error lacks ${missing}`);
				for (const k of ["name", "message", "code", "type", "retryable", "nodeID", "data"]) {
					assert.ok(k in p.packet.error, `C++ error has ${k}`);
				}
			}
		});

		test("EVENT (emit and broadcast)", () => {
			compare("EVENT", p => p.broadcast === false, [
				"id", "event", "data", "groups", "broadcast", "meta", "level", "requestID"
			]);
			compare("EVENT", p => p.broadcast === true, ["id", "event", "data", "broadcast", "meta", "level"]);
		});

		test("PONG", () => {
			compare("PONG", () => true, ["time", "id", "arrived"]);
		});

		test("DISCONNECT", () => {
			compare("DISCONNECT");
		});
	});
}
