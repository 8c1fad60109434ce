"use strict";
// Scenario 11: disableBalancer clusters. JS publishes calls to REQB.<action> and emits to
// EVENTB.<group>.<event>; the C++ node must hold the matching NATS queue subscriptions, and emit
// through EVENTB itself.

const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const h = require("./lib/harness");

for (const { version, protocol } of h.VERSIONS) {
	const namespace = protocol === "4" ? "bal" : "";
	describe(`disableBalancer (moleculer ${version}, protocol ${protocol}, namespace '${namespace}')`, () => {
		let nats, cpp, js, sniffer;
		const got = [];

		before(async () => {
			nats = await h.startNats();
			js = h.createBroker(version, { nats, namespace, disableBalancer: true });
			js.createService({
				name: "jsvc",
				actions: { hello: ctx => `hi ${ctx.params.name}` },
				events: {
					"cppev.*"(ctx) {
						got.push({ event: ctx.eventName, params: ctx.params, groups: ctx.eventGroups, sender: ctx.nodeID });
					}
				}
			});
			await js.start();
			cpp = await h.startCppNode({ nats, protocolVersion: protocol, namespace, disableBalancer: true });
			await h.waitForRemoteNode(js, cpp.nodeID, ["cpptest.echo"]);
			sniffer = await h.startSniffer(nats.url, namespace);
		});

		after(async () => {
			if (sniffer) await sniffer.close();
			await h.stopBrokers(js);
			await h.stopCppNodes(cpp);
			await nats.stop();
		});

		const received = () => js.call("cpptest.received", {}, { nodeID: cpp.nodeID });
		const isMarker = (data, id) => !!data && typeof data === "object" && "marker" in data && (id === undefined || data.marker === id);

		/**
		 * Barrier on the JS -> C++ path: `send(event, id)` sends a marker of each event (so on the
		 * very subject the events under test used), after them. Waits until the C++
		 * node recorded every marker and returns its records other than markers.
		 */
		async function receivedUntil(events, send, ms = 3000) {
			const id = h.uniqueId("marker");
			for (const event of events) await send(event, id);
			const recs = await h.waitFor(async () => {
				const r = await received();
				return events.every(event => r.some(x => x.event === event && isMarker(x.data, id))) && r;
			}, ms, { what: `markers ${id} recorded on ${cpp.nodeID}` });
			return recs.filter(x => !isMarker(x.data));
		}

		/**
		 * The sniffer is a separate connection: its copies may land later than the deliveries.
		 * Waits until it saw `n` marker EVENTs since `start`; returns the other packets since then.
		 */
		async function snifferUntil(start, n) {
			const markers = () => sniffer.packets.slice(start).filter(p => p.cmd.startsWith("EVENT") && p.packet && isMarker(p.packet.data));
			await h.waitFor(() => markers().length >= n, 3000, { what: `${n} marker EVENT(s) at the sniffer` });
			return sniffer.packets.slice(start).filter(p => !(p.cmd.startsWith("EVENT") && p.packet && isMarker(p.packet.data)));
		}

		test("/connz shows the C++ node's REQB and EVENTB queue subscriptions", async () => {
			const p = namespace ? `MOL-${namespace}` : "MOL";
			const expected = [
				[`${p}.REQB.cpptest.echo`, "cpptest.echo"],
				[`${p}.REQB.cpptest.add`, "cpptest.add"],
				[`${p}.REQB.$node.list`, "$node.list"],
				[`${p}.EVENTB.cpptest.test.exact`, "cpptest"],
				[`${p}.EVENTB.cpptest.test.wild.*`, "cpptest"],
				[`${p}.EVENTB.cppaudit.audit.>`, "cppaudit"]
			];
			let subs = null;
			await h.waitFor(async () => {
				const connz = await nats.connz();
				const conn = connz.connections.find(c =>
					(c.subscriptions_list_detail || []).some(s => s.subject === `${p}.REQ.${cpp.nodeID}`)
				);
				if (!conn) return false;
				subs = conn.subscriptions_list_detail;
				return expected.every(([subject, q]) => subs.some(s => s.subject === subject && s.qgroup === q));
			}, 5000, { what: "queue subscriptions of the C++ connection" }).catch(err => {
				err.message += `\nC++ subscriptions: ${JSON.stringify((subs || []).map(s => [s.subject, s.qgroup || ""]))}`;
				throw err;
			});
			// The plain node subscriptions are there too.
			for (const cmd of ["DISCOVER", "INFO", "HEARTBEAT", "PING", "DISCONNECT"]) {
				assert.ok(subs.some(s => s.subject === `${p}.${cmd}` && !s.qgroup), `${p}.${cmd}`);
			}
			for (const cmd of ["DISCOVER", "INFO", "PING", "PONG", "REQ", "RES", "EVENT"]) {
				assert.ok(subs.some(s => s.subject === `${p}.${cmd}.${cpp.nodeID}` && !s.qgroup), `${p}.${cmd}.<id>`);
			}
		});

		test("JS -> C++ call travels as REQB and is answered", async () => {
			const start = sniffer.packets.length;
			const res = await js.call("cpptest.echo", { x: 1 }, { timeout: 3000 });
			assert.deepEqual(res.params, { x: 1 });
			assert.equal(await js.call("cpptest.add", { a: 3, b: 4 }, { timeout: 3000 }), 7);
			// The sniffer is a separate NATS connection: its copy may land after the answer did.
			const requests = () => sniffer.packets.slice(start).filter(p => p.cmd === "REQB" || p.cmd === "REQ");
			await h.waitFor(() => requests().length >= 2, 2000, { what: "sniffer sees both requests" });
			const reqs = requests();
			assert.ok(reqs.every(p => p.cmd === "REQB"), JSON.stringify(reqs.map(p => p.subject)));
		});

		test("JS -> C++ emit travels as EVENTB and is delivered once", async () => {
			await js.call("cpptest.clear", {}, { nodeID: cpp.nodeID });
			const start = sniffer.packets.length;
			await js.emit("test.exact", { e: 1 });
			await js.emit("audit.a.b", { e: 2 });
			// Barrier: a marker on each subject under test, from the same emitter, after the events.
			const recs = await receivedUntil(["test.exact", "audit.a.b"], (event, id) => js.emit(event, { marker: id }));
			// Two subjects read in one socket read are handed over in a fixed order, not in arrival
			// order (README, "Layout" notes): compare without the order.
			const byHandler = (x, y) => (x[0] < y[0] ? -1 : 1);
			assert.deepEqual(recs.map(r => [r.handler, r.event, r.groups, r.data]).sort(byHandler), [
				["audit.**|cppaudit", "audit.a.b", ["cppaudit"], { e: 2 }],
				["test.exact|cpptest", "test.exact", ["cpptest"], { e: 1 }]
			]);
			const subjects = (await snifferUntil(start, 2)).filter(p => p.cmd.startsWith("EVENT")).map(p => p.subject);
			assert.deepEqual(subjects, [
				`${sniffer.prefix}.EVENTB.cpptest.test.exact`,
				`${sniffer.prefix}.EVENTB.cppaudit.audit.a.b`
			]);
		});

		test("JS broadcast still reaches the C++ node (targeted EVENT)", async () => {
			await js.call("cpptest.clear", {}, { nodeID: cpp.nodeID });
			await js.broadcast("test.exact", { b: 1 });
			// Barrier: a marker broadcast on the same path (EVENT.<cpp>) after the event under test.
			const recs = await receivedUntil(["test.exact"], (event, id) => js.broadcast(event, { marker: id }));
			assert.equal(recs.length, 1);
			assert.equal(recs[0].broadcast, true);
		});

		test("C++ -> JS emit travels as EVENTB to the JS group and is delivered once", async () => {
			await h.waitFor(async () => {
				const list = await js.call("$node.events", { withEndpoints: true }, { nodeID: cpp.nodeID });
				return list.some(e => e.name === "cppev.*" && e.group === "jsvc");
			}, 8000, { what: "C++ knows the JS subscription" });
			// moleculer makes its EVENTB queue subscriptions after its start resolved: wait for NATS
			// to hold the JS one, or the emit finds no subscriber.
			const subject = `${sniffer.prefix}.EVENTB.jsvc.cppev.*`;
			await h.waitFor(async () => (await nats.connz()).connections.some(c =>
				(c.subscriptions_list_detail || []).some(s => s.subject === subject && s.qgroup === "jsvc")
			), 5000, { what: `NATS holds the JS queue subscription ${subject}` });
			got.length = 0;
			const start = sniffer.packets.length;
			await js.call("cpptest.emit", { event: "cppev.x", data: { k: 1 }, mode: "emit" }, { nodeID: cpp.nodeID });
			// Barrier: the same C++ emitter sends a marker of the same event after the one under test.
			const id = h.uniqueId("marker");
			await js.call("cpptest.emit", { event: "cppev.x", data: { marker: id }, mode: "emit" }, { nodeID: cpp.nodeID });
			await h.waitFor(() => got.some(g => isMarker(g.params, id)), 3000, { what: `marker ${id} delivered to JS` }).catch(err => {
				err.message += `\nJS deliveries: ${JSON.stringify(got)}`;
				throw err;
			});
			const upTo = got.slice(0, got.findIndex(g => isMarker(g.params, id)));
			assert.deepEqual(got.slice(upTo.length + 1), [], "nothing after the marker");
			assert.deepEqual(upTo, [{ event: "cppev.x", params: { k: 1 }, groups: ["jsvc"], sender: cpp.nodeID }]);
			const events = (await snifferUntil(start, 1))
				.filter(p => p.cmd.startsWith("EVENT") && p.packet.event === "cppev.x" && !isMarker(p.packet.data));
			assert.deepEqual(events.map(p => p.subject), [`${sniffer.prefix}.EVENTB.jsvc.cppev.x`]);
		});

		test("C++ -> JS call travels as REQB and is answered", async () => {
			await h.waitForCppSees(js, cpp.nodeID, "jsvc.hello", js.nodeID);
			const start = sniffer.packets.length;
			const r = await h.cppCall(js, cpp.nodeID, { action: "jsvc.hello", params: { name: "b" }, timeout: 3000 });
			assert.equal(r.ok, true, JSON.stringify(r));
			assert.equal(r.data, "hi b");
			const request = () => sniffer.packets.slice(start).find(p => p.packet.action === "jsvc.hello");
			await h.waitFor(() => request() !== undefined, 2000, { what: "sniffer sees the request" });
			const req = request();
			// Like a JS caller with disableBalancer, the C++ node lets NATS balance: REQB.<action>.
			assert.equal(req && req.subject, `${sniffer.prefix}.REQB.jsvc.hello`);
		});
	});
}
