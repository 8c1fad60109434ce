"use strict";
// Scenarios 1, 6, 7: discovery both ways (C++ first and JS first, empty and non-empty namespace),
// the remote $node.* actions of the C++ node, and what moleculer-repl shows for it.

const os = require("os");
const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const h = require("./lib/harness");

const CPPTEST_ACTIONS = [
	"add", "addService", "call", "clear", "echo", "emit", "fail", "nothing", "received",
	"removeService", "slow", "throw"
].map(a => `cpptest.${a}`).sort();
const CPPTEST_EVENTS = ["$test.dollar", "audit.**", "test.exact", "test.wild.*", "user*"];

for (const { version, protocol } of h.VERSIONS) {
	describe(`discovery, $node and REPL (moleculer ${version}, protocol ${protocol})`, () => {
		const { MOLECULER_VERSION } = h.moleculerFor(version).ServiceBroker;
		let nats;
		let cpp1, js1; // namespace "": C++ started before JS
		let cpp2, js2; // namespace "disc": JS started before C++
		const connected = []; // $node.connected seen by js2

		before(async () => {
			nats = await h.startBus();
		});

		after(async () => {
			await h.stopBrokers(js1, js2);
			await h.stopCppNodes(cpp1, cpp2);
			await nats.stop();
		});

		test("C++ started before JS: JS registry shows the C++ node and its services", async () => {
			cpp1 = await h.startCppNode({ nats, protocolVersion: protocol });
			// Let the C++ node finish its own start before JS appears.
			await cpp1.waitForLog(/node '[^']*' started/, 5000);
			js1 = h.createBroker(version, { nats });
			js1.createService({ name: "jsdisc", actions: { hi: () => "hi" } });
			await js1.start();

			await h.waitForRemoteNode(js1, cpp1.nodeID, ["cpptest.echo"]);
			const node = h.jsNode(js1, cpp1.nodeID);
			assert.equal(node.available, true);
			assert.equal(node.client.type, "cpp");
			assert.equal(typeof node.client.version, "string");
			assert.equal(typeof node.instanceID, "string");
			assert.ok(node.instanceID.length > 0);
			assert.ok(Array.isArray(node.ipList));
			assert.deepEqual(node.services.map(s => s.name).sort(), ["$node", "cpptest"]);

			const svc = node.services.find(s => s.name === "cpptest");
			assert.equal(svc.fullName, "cpptest");
			assert.deepEqual(svc.settings, {});
			assert.deepEqual(Object.keys(svc.actions).sort(), CPPTEST_ACTIONS);
			assert.deepEqual(svc.actions["cpptest.add"].params, { a: "number", b: "number" });
			assert.equal(svc.actions["cpptest.add"].rawName, "add");
			assert.equal(svc.actions["cpptest.add"].name, "cpptest.add");
			assert.deepEqual(Object.keys(svc.events).sort(), CPPTEST_EVENTS.slice().sort());
			assert.equal(svc.events["audit.**"].group, "cppaudit");

			const nodeSvc = node.services.find(s => s.name === "$node");
			for (const a of ["list", "services", "actions", "events", "health", "options", "metrics"]) {
				assert.ok(nodeSvc.actions[`$node.${a}`], `$node.${a} advertised`);
			}
			// JS can route a balanced call to it.
			const res = await js1.call("cpptest.add", { a: 1, b: 2 });
			assert.equal(res, 3);
		});

		test("C++ sees the JS node that started after it", async () => {
			const res = await h.waitFor(async () => {
				const r = await h.cppCall(js1, cpp1.nodeID, { action: "$node.list", params: {} });
				return r.ok && r.data.some(n => n.id === js1.nodeID && n.available) && r;
			}, 8000, { what: "C++ $node.list contains the JS node" });
			const me = res.data.find(n => n.id === js1.nodeID);
			assert.equal(me.local, false);
			assert.equal(me.client.type, "nodejs");
			assert.equal(me.client.version, MOLECULER_VERSION);
			const self = res.data.find(n => n.id === cpp1.nodeID);
			assert.ok(self, "C++ $node.list lists itself");
			assert.equal(self.local, true);
		});

		test("JS started before C++ (namespace 'disc'): both see each other, $node.connected raised", async () => {
			js2 = h.createBroker(version, { nats, namespace: "disc" });
			js2.createService({
				name: "watch",
				events: {
					"$node.connected"(ctx) {
						connected.push({ id: ctx.params.node.id, reconnected: ctx.params.reconnected });
					}
				}
			});
			await js2.start();
			cpp2 = await h.startCppNode({ nats, protocolVersion: protocol, namespace: "disc" });
			await h.waitForRemoteNode(js2, cpp2.nodeID, ["cpptest.echo", "cpptest.add"]);
			const node = h.jsNode(js2, cpp2.nodeID);
			assert.equal(node.client.type, "cpp");
			assert.deepEqual(node.services.map(s => s.name).sort(), ["$node", "cpptest"]);
			assert.deepEqual(connected, [{ id: cpp2.nodeID, reconnected: false }]);

			const r = await h.waitFor(async () => {
				const x = await h.cppCall(js2, cpp2.nodeID, { action: "$node.list", params: {} });
				return x.ok && x.data.some(n => n.id === js2.nodeID && n.available) && x;
			}, 8000, { what: "C++ (started second) sees the JS node" });
			assert.ok(r.data.find(n => n.id === js2.nodeID));
			assert.equal(await js2.call("cpptest.add", { a: 40, b: 2 }), 42);
		});

		test("namespaces isolate: the '' cluster does not see the 'disc' nodes and vice versa", async () => {
			const ids1 = js1.registry.getNodeList({ onlyAvailable: false }).map(n => n.id).sort();
			assert.deepEqual(ids1, [cpp1.nodeID, js1.nodeID].sort());
			const ids2 = js2.registry.getNodeList({ onlyAvailable: false }).map(n => n.id).sort();
			assert.deepEqual(ids2, [cpp2.nodeID, js2.nodeID].sort());
			const r = await h.cppCall(js2, cpp2.nodeID, { action: "$node.list", params: {} });
			assert.deepEqual(r.data.map(n => n.id).sort(), [cpp2.nodeID, js2.nodeID].sort());
		});

		test("$node.list on the C++ node", async () => {
			const list = await js1.call("$node.list", {}, { nodeID: cpp1.nodeID });
			assert.ok(Array.isArray(list));
			assert.deepEqual(list.map(n => n.id).sort(), [cpp1.nodeID, js1.nodeID].sort());
			const self = list.find(n => n.id === cpp1.nodeID);
			assert.equal(self.local, true);
			assert.equal(self.available, true);
			assert.equal(self.client.type, "cpp");
			assert.equal(typeof self.instanceID, "string");
			assert.equal(self.instanceID, h.jsNode(js1, cpp1.nodeID).instanceID);
			const peer = list.find(n => n.id === js1.nodeID);
			assert.equal(peer.local, false);
			assert.equal(peer.available, true);
			assert.equal(peer.instanceID, js1.instanceID);
			assert.equal(peer.client.type, "nodejs");
			for (const key of ["hostname", "ipList", "seq", "lastHeartbeatTime", "cpu"]) {
				assert.ok(key in peer, `$node.list item has ${key}`);
			}
		});

		test("$node.services on the C++ node", async () => {
			const list = await js1.call("$node.services", {}, { nodeID: cpp1.nodeID });
			const names = list.map(s => s.name).sort();
			assert.deepEqual(names, ["$node", "cpptest", "jsdisc"]);
			const cpptest = list.find(s => s.name === "cpptest");
			assert.equal(cpptest.fullName, "cpptest");
			assert.deepEqual(cpptest.nodes, [cpp1.nodeID]);
			assert.equal(cpptest.local, true);
			assert.equal(cpptest.available, true);
			const jsdisc = list.find(s => s.name === "jsdisc");
			assert.deepEqual(jsdisc.nodes, [js1.nodeID]);
			assert.equal(jsdisc.local, false);
			const nodeSvc = list.find(s => s.name === "$node");
			assert.deepEqual(nodeSvc.nodes.slice().sort(), [cpp1.nodeID, js1.nodeID].sort());

			const withActions = await js1.call(
				"$node.services",
				{ onlyLocal: true, withActions: true, skipInternal: true },
				{ nodeID: cpp1.nodeID }
			);
			assert.deepEqual(withActions.map(s => s.name), ["cpptest"]);
			assert.deepEqual(Object.keys(withActions[0].actions).sort(), CPPTEST_ACTIONS);
		});

		test("$node.actions on the C++ node", async () => {
			const list = await js1.call("$node.actions", { withEndpoints: true }, { nodeID: cpp1.nodeID });
			const add = list.find(a => a.name === "cpptest.add");
			assert.equal(add.count, 1);
			assert.equal(add.hasLocal, true);
			assert.equal(add.available, true);
			assert.equal(add.action.name, "cpptest.add");
			assert.equal(add.action.rawName, "add");
			assert.deepEqual(add.action.params, { a: "number", b: "number" });
			assert.deepEqual(add.endpoints.map(e => e.nodeID), [cpp1.nodeID]);
			const hi = list.find(a => a.name === "jsdisc.hi");
			assert.equal(hi.count, 1);
			assert.equal(hi.hasLocal, false);
			assert.deepEqual(hi.endpoints.map(e => e.nodeID), [js1.nodeID]);
			const nodeList = list.find(a => a.name === "$node.list");
			assert.equal(nodeList.count, 2);
			assert.equal(nodeList.hasLocal, true);

			const local = await js1.call("$node.actions", { onlyLocal: true, skipInternal: true }, { nodeID: cpp1.nodeID });
			assert.deepEqual(local.map(a => a.name).sort(), CPPTEST_ACTIONS);
		});

		test("$node.events on the C++ node", async () => {
			const list = await js1.call("$node.events", {}, { nodeID: cpp1.nodeID });
			const audit = list.find(e => e.name === "audit.**");
			assert.equal(audit.group, "cppaudit");
			assert.equal(audit.count, 1);
			assert.equal(audit.hasLocal, true);
			assert.equal(audit.available, true);
			assert.equal(audit.event.name, "audit.**");
			const mine = list.filter(e => e.hasLocal).map(e => `${e.name}|${e.group}`).sort();
			assert.deepEqual(mine, [
				"$test.dollar|cpptest", "audit.**|cppaudit", "test.exact|cpptest", "test.wild.*|cpptest",
				"user*|cpptest"
			]);
		});

		test("$node.health on the C++ node", async () => {
			const health = await js1.call("$node.health", {}, { nodeID: cpp1.nodeID });
			assert.equal(health.process.pid, cpp1.pid);
			assert.equal(health.client.type, "cpp");
			assert.equal(typeof health.cpu.cores, "number");
			assert.ok(health.cpu.cores >= 1);
			assert.equal(typeof health.cpu.utilization, "number");
			assert.ok(health.mem.total > 0);
			assert.ok(health.mem.free > 0 && health.mem.free <= health.mem.total);
			// JS quirk kept: `percent` is the free percentage.
			assert.ok(Math.abs(health.mem.percent - (health.mem.free * 100) / health.mem.total) < 1, `percent ${health.mem.percent}`);
			assert.equal(health.os.hostname, os.hostname());
			assert.equal(typeof health.os.uptime, "number");
			assert.equal(typeof health.process.uptime, "number");
			assert.ok(Array.isArray(health.net.ip));
			assert.ok(Math.abs(health.time.now - Date.now()) < 60000, `time.now ${health.time.now}`);
			assert.equal(typeof health.time.iso, "string");
			assert.ok(Math.abs(Date.parse(health.time.iso) - Date.now()) < 60000);
		});

		test("$node.options on the C++ node", async () => {
			const opts = await js1.call("$node.options", {}, { nodeID: cpp1.nodeID });
			assert.equal(opts.nodeID, cpp1.nodeID);
			assert.equal(opts.heartbeatInterval, 1);
			assert.equal(opts.heartbeatTimeout, 3);
			const opts2 = await js2.call("$node.options", {}, { nodeID: cpp2.nodeID });
			assert.equal(opts2.nodeID, cpp2.nodeID);
			assert.equal(opts2.namespace, "disc");
		});

		test("$node.metrics on the C++ node: metrics disabled error, as JS", async () => {
			const { Errors } = h.moleculerFor(version);
			const err = await h.rejectionOf(() => js1.call("$node.metrics", {}, { nodeID: cpp1.nodeID }));
			assert.ok(err instanceof Errors.MoleculerClientError, `${err.name}: ${err.message}`);
			assert.equal(err.code, 400);
			assert.equal(err.type, "METRICS_DISABLED");
			assert.equal(err.message, "Metrics feature is disabled");
		});

		test("$node.services with grouping:false lists one item per node", async () => {
			const list = await js1.call("$node.services", { grouping: false }, { nodeID: cpp1.nodeID });
			const nodeSvcs = list.filter(s => s.name === "$node").map(s => s.nodeID).sort();
			assert.deepEqual(nodeSvcs, [cpp1.nodeID, js1.nodeID].sort());
			assert.equal(list.find(s => s.name === "cpptest").nodeID, cpp1.nodeID);
		});

		test("REPL `nodes` shows the C++ node as an ONLINE cpp client", async () => {
			const out = await h.repl(version, js1, "nodes");
			const row = h.replRow(out, cpp1.nodeID);
			assert.ok(row, `no row for ${cpp1.nodeID} in:\n${out}`);
			assert.equal(row[0], cpp1.nodeID);
			assert.equal(row[1], "2"); // $node + cpptest
			assert.equal(row[3], "cpp");
			assert.equal(row[5], "ONLINE");
			assert.match(row[6], /^\[[■.]+\] +\d+%$/, `CPU column after a HEARTBEAT: ${row[6]}`);
		});

		test("REPL `services`, `actions` and `events` list the C++ service", async () => {
			const services = await h.repl(version, js1, "services");
			const svcRow = h.replRow(services, "cpptest");
			assert.ok(svcRow, services);
			assert.deepEqual(svcRow, ["cpptest", "-", "OK", String(CPPTEST_ACTIONS.length), String(CPPTEST_EVENTS.filter(e => !e.startsWith("$")).length), "1"]);
			// (the REPL leaves `$` events out of the count)

			const actions = await h.repl(version, js1, "actions");
			const echoRow = h.replRow(actions, "cpptest.echo");
			assert.ok(echoRow, actions);
			assert.equal(echoRow[0], "cpptest.echo");
			assert.equal(echoRow[2], "OK");
			const addRow = h.replRow(actions, "cpptest.add");
			assert.equal(addRow[addRow.length - 1], "a, b");

			const events = await h.repl(version, js1, "events");
			const wild = h.replRow(events, "test.wild.*");
			assert.ok(wild, events);
			assert.deepEqual(wild.slice(0, 3), ["test.wild.*", "cpptest", "OK"]);
			const audit = h.replRow(events, "audit.**");
			assert.deepEqual(audit.slice(0, 3), ["audit.**", "cppaudit", "OK"]);
		});

		test("a C++ node speaking the other protocol version is ignored, and ignores the cluster", async () => {
			const other = protocol === "4" ? "5" : "4";
			const strangerID = h.uniqueId("stranger");
			// What the JS node rejects from the stranger: moleculer logs each packet it drops for a
			// protocol version mismatch through the transit logger, with the packet type.
			const rejected = [];
			const tlog = js1.transit.logger;
			const logError = tlog.error;
			tlog.error = function (err, cmd, ...rest) {
				if (err && err.name === "ProtocolVersionMismatchError" && err.data && err.data.nodeID === strangerID) rejected.push(cmd);
				return logError.call(this, err, cmd, ...rest);
			};
			const stranger = await h.startCppNode({ nats, protocolVersion: other, nodeID: strangerID });
			try {
				await stranger.waitForLog(new RegExp(`dropping packets of node '${js1.nodeID}'`), 5000);
				await cpp1.waitForLog(new RegExp(`dropping packets of node '${strangerID}'`), 5000);
				// Barrier: the JS node processed (and dropped) two HEARTBEATs of the stranger, which
				// the stranger sent after its DISCOVER and INFO.
				await h.waitFor(() => rejected.filter(c => c === "HEARTBEAT").length >= 2, 5000, {
					what: `js1 drops two HEARTBEATs of ${strangerID}`
				}).catch(err => {
					err.message += `\nrejected by js1: ${rejected.join(" ")}`;
					throw err;
				});
				assert.ok(rejected.includes("INFO"), `js1 dropped the stranger's INFO: ${rejected.join(" ")}`);
				assert.equal(h.jsNode(js1, stranger.nodeID), undefined);
				const list = await js1.call("$node.list", {}, { nodeID: cpp1.nodeID });
				assert.deepEqual(list.map(n => n.id).sort(), [cpp1.nodeID, js1.nodeID].sort());
				assert.equal(stranger.running(), true);
			} finally {
				tlog.error = logError;
				await stranger.stop();
			}
		});
	});
}
