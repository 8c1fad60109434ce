"use strict";
// Scenarios 4 and 5: events from JS to the C++ node (exact names, wildcards, groups, the `user*`
// quirk, `$` names, broadcast, balancing across two C++ nodes, raw EVENT packets) and from the C++
// node to JS services (groups, balancing between JS nodes, broadcast, broadcastLocal).

const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const h = require("./lib/harness");

for (const { version, protocol } of h.VERSIONS) {
	const namespace = protocol === "5" ? "ev" : "";
	describe(`events (moleculer ${version}, protocol ${protocol}, namespace '${namespace}')`, () => {
		let nats, cpp1, cpp2, jsA, jsB, jsC, sniffer;
		const got = []; // deliveries to JS services

		function recorder(node, svc) {
			return function (ctx) {
				got.push({
					node: node(),
					svc,
					event: ctx.eventName,
					params: ctx.params,
					groups: ctx.eventGroups,
					type: ctx.eventType,
					sender: ctx.nodeID,
					caller: ctx.caller,
					level: ctx.level,
					meta: ctx.meta
				});
			};
		}

		const received = cpp => jsA.call("cpptest.received", {}, { nodeID: cpp.nodeID });
		const clear = cpp => jsA.call("cpptest.clear", {}, { nodeID: cpp.nodeID });
		const cppEmit = (cpp, params) => jsA.call("cpptest.emit", params, { nodeID: cpp.nodeID });

		const isMarker = (x, id) => !!x && typeof x === "object" && x.marker === id;

		/**
		 * Barrier on the path into `cpp`: `sendMarker(id)` sends a marker event after the events
		 * under test on the same path; once `cpp` has recorded it, everything sent before it has
		 * been handled. Returns the records before the marker (the marker must be the last one).
		 */
		async function receivedUntil(cpp, sendMarker, ms = 3000) {
			const id = h.uniqueId("marker");
			await sendMarker(id);
			const recs = await h.waitFor(async () => {
				const r = await received(cpp);
				return r.some(x => isMarker(x.data, id)) && r;
			}, ms, { what: `marker ${id} recorded on ${cpp.nodeID}` });
			assert.ok(isMarker(recs[recs.length - 1].data, id), `the marker is the last record: ${JSON.stringify(recs)}`);
			// Drop markers of earlier barriers too (a JS broadcast marker also reaches a second C++ node).
			return recs.slice(0, -1).filter(x => !(x.data && typeof x.data === "object" && "marker" in x.data));
		}
		// JS -> C++ path: jsA's EVENT.<cpp> packets (emit and broadcast both go there).
		const jsMarker = id => jsA.broadcast("test.wild.marker", { marker: id });
		// Local path of a C++ node: its own broadcastLocal.
		const localMarker = cpp => id => cppEmit(cpp, { event: "test.wild.marker", data: { marker: id }, mode: "broadcastLocal" });

		/**
		 * Barrier on the path from `cpp` to the JS nodes: a C++ broadcast of cppev.x reaches all
		 * four JS subscribers (svcA, svcB on jsA; svcC on jsB and jsC) after whatever `cpp` sent
		 * them before. Returns the JS deliveries other than the marker, and the marker id.
		 */
		async function gotUntil(cpp) {
			const id = h.uniqueId("marker");
			await cppEmit(cpp, { event: "cppev.x", data: { marker: id }, mode: "broadcast" });
			await h.waitFor(() => got.filter(x => isMarker(x.params, id)).length === 4, 3000, {
				what: `marker ${id} from ${cpp.nodeID} at the four JS subscribers`
			});
			return { d: got.filter(x => !isMarker(x.params, id)), id };
		}

		/** Waits until the sniffer has seen `count` marker EVENT packets (another NATS connection). */
		async function snifferMarkers(id, count) {
			await h.waitFor(() => sniffer.packets.filter(p => p.cmd === "EVENT" && p.packet && isMarker(p.packet.data, id)).length >= count, 3000, {
				what: `${count} marker EVENT packets at the sniffer`
			});
		}

		/** Waits until the C++ node knows the (event, group) subscription on `nodeID`. */
		async function waitCppEvent(cpp, name, group, nodeID) {
			await h.waitFor(async () => {
				const list = await jsA.call("$node.events", { withEndpoints: true, onlyAvailable: true }, { nodeID: cpp.nodeID });
				const item = list.find(e => e.name === name && e.group === group);
				return item && item.endpoints.some(ep => ep.nodeID === nodeID);
			}, 8000, { what: `${cpp.nodeID} knows ${name}|${group} on ${nodeID}` });
		}

		before(async () => {
			nats = await h.startBus();
			cpp1 = await h.startCppNode({ nats, protocolVersion: protocol, namespace });
			jsA = h.createBroker(version, { nats, namespace });
			jsA.createService({
				name: "svcA",
				events: {
					"cppev.*": recorder(() => jsA.nodeID, "svcA"),
					"test.exact": recorder(() => jsA.nodeID, "svcA"),
					"$cpp.dollar": recorder(() => jsA.nodeID, "svcA"),
					"jq*": recorder(() => jsA.nodeID, "svcA"),
					"@rec.*.*": recorder(() => jsA.nodeID, "svcA")
				}
			});
			jsA.createService({ name: "echoJs", actions: { back: ctx => ctx.params.i } });
			jsA.createService({
				name: "svcB",
				events: { "cppev.**": { group: "grpB", handler: recorder(() => jsA.nodeID, "svcB") } }
			});
			jsB = h.createBroker(version, { nats, namespace });
			jsC = h.createBroker(version, { nats, namespace });
			for (const b of [jsB, jsC]) {
				b.createService({ name: "svcC", events: { "cppev.x": recorder(() => b.nodeID, "svcC") } });
			}
			await Promise.all([jsA.start(), jsB.start(), jsC.start()]);
			await h.waitForRemoteNode(jsA, cpp1.nodeID, ["cpptest.received"]);
			await h.waitForCppSees(jsA, cpp1.nodeID, "echoJs.back", jsA.nodeID);
			sniffer = await h.startSniffer(nats.url, namespace);
		});

		after(async () => {
			if (sniffer) await sniffer.close();
			await h.stopBrokers(jsA, jsB, jsC);
			await h.stopCppNodes(cpp1, cpp2);
			await nats.stop();
		});

		// ---- JS -> C++ --------------------------------------------------------------------

		const cases = [
			["test.exact", "test.exact|cpptest", ["cpptest"]],
			["test.wild.x", "test.wild.*|cpptest", ["cpptest"]],
			["audit.a.b", "audit.**|cppaudit", ["cppaudit"]],
			["user.created", "user*|cpptest", ["cpptest"]],
			["$test.dollar", "$test.dollar|cpptest", ["cpptest"]]
		];
		for (const [event, handler, groups] of cases) {
			test(`JS emit ${event} reaches handler ${handler} exactly once`, async () => {
				await clear(cpp1);
				const data = { event, n: Math.random() };
				await jsA.emit(event, data, { meta: { m: 1 } });
				const recs = await receivedUntil(cpp1, jsMarker);
				assert.deepEqual(recs, [
					{
						handler,
						event,
						data,
						groups,
						broadcast: false,
						eventType: "emit",
						sender: jsA.nodeID,
						meta: { m: 1 }
					}
				]);
			});
		}

		test("JS emit of a name no pattern matches sends nothing and records nothing", async () => {
			await clear(cpp1);
			const before = sniffer.packets.length;
			await jsA.emit("test.wild.x.y", { no: 1 });
			await jsA.emit("audit", { no: 2 });
			const markerAt = sniffer.packets.length;
			assert.deepEqual(await receivedUntil(cpp1, jsMarker), []);
			await h.waitFor(() => sniffer.packets.slice(markerAt).some(p => p.cmd === "EVENT" && p.packet && p.packet.data && p.packet.data.marker), 3000, {
				what: "the marker EVENT at the sniffer"
			});
			const events = sniffer.packets.slice(before).filter(p => p.cmd === "EVENT" && !(p.packet && p.packet.data && p.packet.data.marker));
			assert.deepEqual(events.map(p => p.packet && p.packet.event), []);
		});

		test("JS broadcast reaches the C++ handler with broadcast:true", async () => {
			await clear(cpp1);
			await jsA.broadcast("test.exact", { b: 1 });
			const recs = await receivedUntil(cpp1, jsMarker);
			assert.equal(recs.length, 1, JSON.stringify(recs));
			assert.equal(recs[0].handler, "test.exact|cpptest");
			assert.deepEqual(recs[0].data, { b: 1 });
			assert.equal(recs[0].broadcast, true);
			assert.equal(recs[0].eventType, "broadcast");
			assert.equal(recs[0].sender, jsA.nodeID);
		});

		test("raw EVENT: groups select handlers; foreign groups deliver nothing", async () => {
			await clear(cpp1);
			const base = {
				data: { raw: 1 },
				broadcast: false,
				meta: {},
				level: 1,
				tracing: null,
				parentID: null,
				caller: null,
				needAck: null,
				ver: protocol,
				sender: "raw-events"
			};
			if (protocol === "5") base.headers = {};
			const subject = `${sniffer.prefix}.EVENT.${cpp1.nodeID}`;
			// Barrier on the same subject from the same connection: a raw marker EVENT.
			const rawMarker = id => sniffer.publish(subject, Object.assign({}, base, { id, requestID: id, event: "test.wild.marker", groups: ["cpptest"], data: { marker: id } }));
			sniffer.publish(subject, Object.assign({}, base, { id: "e1", requestID: "e1", event: "test.exact", groups: ["someoneelse"] }));
			assert.deepEqual(await receivedUntil(cpp1, rawMarker), []);
			sniffer.publish(subject, Object.assign({}, base, { id: "e2", requestID: "e2", event: "audit.x", groups: ["cppaudit"] }));
			sniffer.publish(subject, Object.assign({}, base, { id: "e3", requestID: "e3", event: "test.exact", groups: ["cpptest"] }));
			const recs = await receivedUntil(cpp1, rawMarker);
			assert.deepEqual(recs.map(r => [r.handler, r.event, r.sender]), [
				["audit.**|cppaudit", "audit.x", "raw-events"],
				["test.exact|cpptest", "test.exact", "raw-events"]
			]);
			// No `groups` at all (and null meta): every matching group gets it once.
			await clear(cpp1);
			const bare = Object.assign({}, base, { id: "e4", requestID: "e4", event: "test.exact", meta: null });
			sniffer.publish(subject, bare);
			const recs2 = await receivedUntil(cpp1, rawMarker);
			assert.deepEqual(recs2.map(r => [r.handler, r.event, r.broadcast]), [["test.exact|cpptest", "test.exact", false]]);
		});

		test("burst: 1000 JS emits are all recorded once, in order", async () => {
			await clear(cpp1);
			for (let i = 0; i < 1000; i++) jsA.emit("test.wild.burst", { i });
			const all = await receivedUntil(cpp1, jsMarker, 10000);
			assert.equal(all.length, 1000);
			assert.deepEqual(all.map(r => r.data.i), [...Array(1000).keys()]);
			assert.ok(all.every(r => r.handler === "test.wild.*|cpptest"));
			await clear(cpp1);
		});

		// ---- C++ -> JS --------------------------------------------------------------------

		test("C++ emit: each JS group gets it once (two groups on one node, one of two nodes in a group)", async () => {
			await waitCppEvent(cpp1, "cppev.*", "svcA", jsA.nodeID);
			await waitCppEvent(cpp1, "cppev.**", "grpB", jsA.nodeID);
			await waitCppEvent(cpp1, "cppev.x", "svcC", jsB.nodeID);
			await waitCppEvent(cpp1, "cppev.x", "svcC", jsC.nodeID);
			got.length = 0;
			await jsA.call("cpptest.emit", { event: "cppev.x", data: { k: 1 }, mode: "emit" }, { nodeID: cpp1.nodeID, meta: { em: 1 } });
			const { d, id } = await gotUntil(cpp1);
			await snifferMarkers(id, 3);
			assert.equal(d.length, 3, JSON.stringify(d));
			const a = d.filter(x => x.svc === "svcA");
			const b = d.filter(x => x.svc === "svcB");
			const c = d.filter(x => x.svc === "svcC");
			assert.equal(a.length, 1);
			assert.equal(b.length, 1);
			assert.equal(c.length, 1);
			for (const x of d) {
				assert.equal(x.event, "cppev.x");
				assert.deepEqual(x.params, { k: 1 });
				assert.equal(x.type, "emit");
				assert.equal(x.sender, cpp1.nodeID);
				assert.equal(x.caller, "cpptest");
				assert.equal(x.level, 2);
				assert.deepEqual(x.meta, { em: 1 });
			}
			// One EVENT per target node, carrying that node's groups.
			assert.deepEqual(a[0].groups.slice().sort(), ["grpB", "svcA"]);
			assert.deepEqual(c[0].groups, ["svcC"]);
			const events = sniffer.packets.filter(p => p.cmd === "EVENT" && p.packet.event === "cppev.x" && !(p.packet.data && p.packet.data.marker));
			assert.deepEqual(events.map(p => p.target).sort(), [jsA.nodeID, c[0].node].sort());
		});

		test("C++ emit to a group served by two JS nodes is balanced between them", async () => {
			got.length = 0;
			for (let i = 0; i < 4; i++) {
				await cppEmit(cpp1, { event: "cppev.x", data: { i }, mode: "emit", groups: ["svcC"] });
			}
			const { d } = await gotUntil(cpp1);
			assert.equal(d.length, 4, JSON.stringify(d));
			assert.ok(d.every(x => x.svc === "svcC"));
			assert.deepEqual(d.map(x => x.params.i).sort(), [0, 1, 2, 3]);
			const onB = d.filter(x => x.node === jsB.nodeID).length;
			const onC = d.filter(x => x.node === jsC.nodeID).length;
			assert.ok(onB >= 1 && onC >= 1, `jsB ${onB}, jsC ${onC}`);
		});

		test("burst: 300 concurrent C++ -> JS calls all answered", async () => {
			const jobs = [];
			for (let i = 0; i < 300; i++) {
				jobs.push(jsA.call("cpptest.call", { action: "echoJs.back", params: { i } }, { nodeID: cpp1.nodeID, timeout: 15000 }));
			}
			const results = await Promise.all(jobs);
			results.forEach((r, i) => {
				assert.equal(r.ok, true, JSON.stringify(r));
				assert.equal(r.data, i);
			});
		});

		test("C++ emit with groups:[grpB] reaches only that group", async () => {
			got.length = 0;
			await cppEmit(cpp1, { event: "cppev.y", data: { g: 1 }, mode: "emit", groups: ["grpB"] });
			const { d } = await gotUntil(cpp1);
			assert.deepEqual(d.map(x => [x.svc, x.event, x.groups]), [["svcB", "cppev.y", ["grpB"]]]);
		});

		test("C++ broadcast reaches every JS subscriber", async () => {
			got.length = 0;
			await cppEmit(cpp1, { event: "cppev.x", data: { all: 1 }, mode: "broadcast" });
			const { d } = await gotUntil(cpp1);
			assert.deepEqual(d.map(x => `${x.svc}@${x.node}`).sort(), [
				`svcA@${jsA.nodeID}`, `svcB@${jsA.nodeID}`, `svcC@${jsB.nodeID}`, `svcC@${jsC.nodeID}`
			].sort());
			assert.ok(d.every(x => x.type === "broadcast"));
		});

		test("C++ broadcastLocal stays on the C++ node", async () => {
			await clear(cpp1);
			got.length = 0;
			await cppEmit(cpp1, { event: "test.exact", data: { local: 1 }, mode: "broadcastLocal" });
			const recs = await receivedUntil(cpp1, localMarker(cpp1));
			assert.deepEqual((await gotUntil(cpp1)).d, []);
			assert.equal(recs.length, 1);
			assert.equal(recs[0].eventType, "broadcastLocal");
			assert.equal(recs[0].sender, cpp1.nodeID);
			assert.deepEqual(recs[0].data, { local: 1 });
		});

		test("C++ emit of an event C++ also subscribes: local handler and the JS group both get it", async () => {
			await waitCppEvent(cpp1, "test.exact", "svcA", jsA.nodeID);
			await clear(cpp1);
			got.length = 0;
			await cppEmit(cpp1, { event: "test.exact", data: { both: 1 }, mode: "emit" });
			const recs = await receivedUntil(cpp1, localMarker(cpp1));
			const { d } = await gotUntil(cpp1);
			assert.deepEqual(recs.map(r => [r.handler, r.eventType, r.sender]), [["test.exact|cpptest", "emit", cpp1.nodeID]]);
			assert.deepEqual(d.map(x => [x.svc, x.event]), [["svcA", "test.exact"]]);
		});

		test("C++ emit of a `$` event reaches the JS subscriber", async () => {
			await waitCppEvent(cpp1, "$cpp.dollar", "svcA", jsA.nodeID);
			got.length = 0;
			await cppEmit(cpp1, { event: "$cpp.dollar", data: { d: 1 }, mode: "emit" });
			const { d } = await gotUntil(cpp1);
			assert.deepEqual(d.map(x => [x.svc, x.event, x.params]), [["svcA", "$cpp.dollar", { d: 1 }]]);
		});

		test("C++ emit routing follows JS match() quirks (`jq*` matches jq.created, `@rec.*.*` matches @rec.foo)", async () => {
			await waitCppEvent(cpp1, "jq*", "svcA", jsA.nodeID);
			await waitCppEvent(cpp1, "@rec.*.*", "svcA", jsA.nodeID);
			got.length = 0;
			await cppEmit(cpp1, { event: "jq.created", data: { q: 1 }, mode: "emit" });
			await cppEmit(cpp1, { event: "@rec.foo", data: { q: 2 }, mode: "emit" });
			await cppEmit(cpp1, { event: "@rec.a.b", data: { q: 3 }, mode: "emit" });
			const { d } = await gotUntil(cpp1);
			assert.deepEqual(d.map(x => [x.svc, x.event, x.params.q]), [
				["svcA", "jq.created", 1],
				["svcA", "@rec.foo", 2],
				["svcA", "@rec.a.b", 3]
			]);
		});

		test("C++ emit with no subscriber sends nothing", async () => {
			const start = sniffer.packets.length;
			got.length = 0;
			await cppEmit(cpp1, { event: "nobody.listens", data: {}, mode: "emit" });
			await cppEmit(cpp1, { event: "nobody.listens", data: {}, mode: "broadcast" });
			const { d, id } = await gotUntil(cpp1);
			await snifferMarkers(id, 3);
			assert.deepEqual(d, []);
			// Only cpp1's packets: a JS node's late EVENT of an earlier test may fall into this window.
			const fromCpp = sniffer.packets.slice(start).filter(p => p.cmd === "EVENT" && p.packet && p.packet.sender === cpp1.nodeID);
			assert.deepEqual(fromCpp.filter(p => !isMarker(p.packet.data, id)).map(p => p.subject), []);
		});

		test("C++ emit routing follows JS services created and destroyed at runtime", async () => {
			const late = jsB.createService({
				name: "late",
				events: { "late.ev": recorder(() => jsB.nodeID, "late") }
			});
			await waitCppEvent(cpp1, "late.ev", "late", jsB.nodeID);
			got.length = 0;
			await cppEmit(cpp1, { event: "late.ev", data: { l: 1 }, mode: "emit" });
			assert.deepEqual((await gotUntil(cpp1)).d.map(x => [x.svc, x.node]), [["late", jsB.nodeID]]);

			await jsB.destroyService(late);
			await h.waitFor(async () => {
				const list = await jsA.call("$node.events", { onlyAvailable: true, withEndpoints: true }, { nodeID: cpp1.nodeID });
				const item = list.find(e => e.name === "late.ev");
				return !item || item.endpoints.length === 0;
			}, 8000, { what: "C++ forgets late.ev" });
			got.length = 0;
			const start = sniffer.packets.length;
			await cppEmit(cpp1, { event: "late.ev", data: { l: 2 }, mode: "emit" });
			const { d, id } = await gotUntil(cpp1);
			await snifferMarkers(id, 3);
			assert.deepEqual(d, []);
			// Only cpp1's packets: a JS node's late EVENT of an earlier test may fall into this window.
			const fromCpp = sniffer.packets.slice(start).filter(p => p.cmd === "EVENT" && p.packet && p.packet.sender === cpp1.nodeID);
			assert.deepEqual(fromCpp.filter(p => !isMarker(p.packet.data, id)).map(p => p.subject), []);
		});

		// ---- two C++ nodes ----------------------------------------------------------------

		test("two C++ fixture nodes: JS emit goes to exactly one of them, broadcast to both", async () => {
			cpp2 = await h.startCppNode({ nats, protocolVersion: protocol, namespace });
			await h.waitForRemoteNode(jsA, cpp2.nodeID, ["cpptest.received"]);
			await Promise.all([clear(cpp1), clear(cpp2)]);
			for (let i = 0; i < 4; i++) await jsA.emit("test.exact", { i });
			// jsA's broadcast marker goes to both nodes, each after the emits it got.
			const r1 = await receivedUntil(cpp1, jsMarker);
			const r2 = await receivedUntil(cpp2, jsMarker);
			const all = r1.concat(r2);
			assert.equal(all.length, 4, JSON.stringify(all));
			assert.deepEqual(all.map(r => r.data.i).sort(), [0, 1, 2, 3]);
			assert.ok(r1.length >= 1 && r2.length >= 1, `cpp1 ${r1.length}, cpp2 ${r2.length}`);

			await Promise.all([clear(cpp1), clear(cpp2)]);
			await jsA.broadcast("test.exact", { all: true });
			const b1 = await receivedUntil(cpp1, jsMarker);
			const b2 = await receivedUntil(cpp2, jsMarker);
			for (const recs of [b1, b2]) {
				assert.equal(recs.length, 1, JSON.stringify(recs));
				assert.equal(recs[0].broadcast, true);
				assert.deepEqual(recs[0].data, { all: true });
			}
		});

		test("two C++ nodes: a C++ emit prefers the local handler and still reaches JS once", async () => {
			await waitCppEvent(cpp2, "test.exact", "svcA", jsA.nodeID);
			await waitCppEvent(cpp2, "test.wild.*", "cpptest", cpp1.nodeID);
			await waitCppEvent(cpp2, "cppev.*", "svcA", jsA.nodeID);
			await waitCppEvent(cpp2, "cppev.**", "grpB", jsA.nodeID);
			await waitCppEvent(cpp2, "cppev.x", "svcC", jsB.nodeID);
			await waitCppEvent(cpp2, "cppev.x", "svcC", jsC.nodeID);
			await Promise.all([clear(cpp1), clear(cpp2)]);
			got.length = 0;
			await cppEmit(cpp2, { event: "test.exact", data: { from2: 1 }, mode: "emit" });
			const recs2 = await receivedUntil(cpp2, localMarker(cpp2));
			// Barrier on the path cpp2 -> cpp1: a cpp2 broadcast of the marker event.
			const fromCpp2 = id => cppEmit(cpp2, { event: "test.wild.marker", data: { marker: id }, mode: "broadcast" });
			assert.deepEqual(await receivedUntil(cpp1, fromCpp2), []);
			assert.equal(recs2.length, 1);
			assert.equal(recs2[0].sender, cpp2.nodeID);
			const { d } = await gotUntil(cpp2);
			assert.deepEqual(d.map(x => [x.svc, x.sender]), [["svcA", cpp2.nodeID]]);
		});
	});
}
