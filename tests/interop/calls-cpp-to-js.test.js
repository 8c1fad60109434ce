"use strict";
// Scenario 3: calls made by the C++ broker (through cpptest.call) to JS actions: results and meta,
// context propagation, typed errors, unknown actions, timeouts, round robin across two JS nodes,
// and a JS node that stops while a call is pending.

const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const h = require("./lib/harness");

for (const { version, protocol } of h.VERSIONS) {
	const namespace = protocol === "4" ? "c2j" : "";
	describe(`C++ -> JS calls (moleculer ${version}, protocol ${protocol}, namespace '${namespace}')`, () => {
		const { Errors } = h.moleculerFor(version);
		let nats, cpp, js, rr1, rr2, victim;
		const seen = []; // contexts seen by jsvc.hello

		before(async () => {
			nats = await h.startBus();
			js = h.createBroker(version, { nats, namespace });
			js.createService({
				name: "jsvc",
				actions: {
					hello(ctx) {
						seen.push(ctx);
						const metaIn = Object.assign({}, ctx.meta);
						ctx.meta.touched = true;
						return {
							hi: ctx.params.name,
							meta: metaIn,
							level: ctx.level,
							caller: ctx.caller,
							parentID: ctx.parentID,
							requestID: ctx.requestID,
							nodeID: ctx.nodeID
						};
					},
					bad() {
						throw new Errors.MoleculerClientError("Nope", 409, "JS_BAD", { y: 2 });
					},
					plain() {
						throw new Error("plain js error");
					},
					never() {
						return new Promise(() => {});
					},
					nothing() {}
				}
			});
			js.createService({
				name: "driver",
				actions: {
					async run(ctx) {
						const res = await ctx.call("cpptest.call", ctx.params, { timeout: 10000 });
						return { res, requestID: ctx.requestID, id: ctx.id };
					}
				}
			});
			await js.start();
			cpp = await h.startCppNode({ nats, protocolVersion: protocol, namespace });
			await h.waitForRemoteNode(js, cpp.nodeID, ["cpptest.call"]);
			await h.waitForCppSees(js, cpp.nodeID, "jsvc.hello", js.nodeID);
		});

		after(async () => {
			await h.stopBrokers(js, rr1, rr2, victim);
			await h.stopCppNodes(cpp);
			await nats.stop();
		});

		test("a JS action returns data and modifies meta; context fields come from the C++ parent", async () => {
			seen.length = 0;
			const out = await js.call(
				"driver.run",
				{ action: "jsvc.hello", params: { name: "cpp" }, meta: { m: 1 } },
				{ meta: { outer: "o" } }
			);
			const r = out.res;
			assert.equal(r.ok, true, JSON.stringify(r));
			assert.equal(r.data.hi, "cpp");
			// Parent meta is inherited and merged with the call's meta.
			assert.deepEqual(r.data.meta, { outer: "o", m: 1 });
			// The callee's meta change comes back to the C++ caller.
			assert.deepEqual(r.meta, { outer: "o", m: 1, touched: true });
			assert.equal(r.data.nodeID, cpp.nodeID);
			// driver.run (level 1) -> cpptest.call (level 2) -> jsvc.hello (level 3)
			assert.equal(r.data.level, 3);
			assert.equal(r.data.caller, "cpptest");
			assert.equal(r.data.requestID, out.requestID);
			assert.equal(typeof r.data.parentID, "string");
			assert.notEqual(r.data.parentID, out.id);
			assert.notEqual(r.data.parentID, out.requestID);
			assert.equal(seen.length, 1);
		});

		test("a C++ call to a local action runs locally with the nested context", async () => {
			const out = await js.call(
				"driver.run",
				{ action: "cpptest.echo", params: { local: 1 }, meta: { m: 2 } },
				{ meta: { outer: "o" } }
			);
			const r = out.res;
			assert.equal(r.ok, true, JSON.stringify(r));
			assert.deepEqual(r.data.params, { local: 1 });
			assert.deepEqual(r.data.meta, { outer: "o", m: 2 });
			assert.equal(r.data.nodeID, cpp.nodeID);
			assert.equal(r.data.level, 3);
			assert.equal(r.data.caller, "cpptest");
			assert.equal(r.data.requestID, out.requestID);
			assert.deepEqual(r.meta, { outer: "o", m: 2, echoed: true });
		});

		test("a JS action returning undefined arrives as no data", async () => {
			const r = await h.cppCall(js, cpp.nodeID, { action: "jsvc.nothing", params: {} });
			assert.equal(r.ok, true);
			assert.equal(r.hasData, false);
			assert.equal(r.data, null);
		});

		test("a JS MoleculerClientError arrives with name, message, code, type, data, retryable", async () => {
			const r = await h.cppCall(js, cpp.nodeID, { action: "jsvc.bad", params: {} });
			assert.equal(r.ok, false);
			assert.deepEqual(r.error, {
				name: "MoleculerClientError",
				message: "Nope",
				code: 409,
				type: "JS_BAD",
				data: { y: 2 },
				retryable: false,
				nodeID: js.nodeID
			});
		});

		test("a plain JS Error arrives as an error named Error with its message", async () => {
			const r = await h.cppCall(js, cpp.nodeID, { action: "jsvc.plain", params: {} });
			assert.equal(r.ok, false);
			assert.equal(r.error.name, "Error");
			assert.equal(r.error.message, "plain js error");
			assert.equal(r.error.nodeID, js.nodeID);
			assert.equal(r.error.retryable, false);
		});

		test("unknown action: ServiceNotFoundError, retryable", async () => {
			const r = await h.cppCall(js, cpp.nodeID, { action: "jsvc.nothere", params: {} });
			assert.equal(r.ok, false);
			assert.equal(r.error.name, "ServiceNotFoundError");
			assert.equal(r.error.code, 404);
			assert.equal(r.error.type, "SERVICE_NOT_FOUND");
			assert.equal(r.error.retryable, true);
			assert.equal(r.error.data.action, "jsvc.nothere");

			const r2 = await h.cppCall(js, cpp.nodeID, { action: "jsvc.hello", params: {}, nodeID: "no-such-node" });
			assert.equal(r2.ok, false);
			assert.equal(r2.error.name, "ServiceNotFoundError");
		});

		test("a JS action that never answers, with timeout 300: RequestTimeoutError on time", async () => {
			const t0 = Date.now();
			const r = await h.cppCall(js, cpp.nodeID, { action: "jsvc.never", params: {}, timeout: 300 });
			const elapsed = Date.now() - t0;
			assert.equal(r.ok, false);
			assert.equal(r.error.name, "RequestTimeoutError");
			assert.equal(r.error.code, 504);
			assert.equal(r.error.type, "REQUEST_TIMEOUT");
			assert.equal(r.error.retryable, true);
			assert.deepEqual(r.error.data, { action: "jsvc.never", nodeID: js.nodeID });
			assert.ok(elapsed >= 280 && elapsed < 1500, `elapsed ${elapsed} ms`);
		});

		test("the caller's remaining budget goes out as REQ timeout", async () => {
			const sniffer = await h.startSniffer(nats.url, namespace);
			try {
				const r = await h.cppCall(js, cpp.nodeID, { action: "jsvc.hello", params: { name: "t" }, timeout: 4000 });
				assert.equal(r.ok, true);
				const req = await h.waitFor(
					() => sniffer.packets.find(p => p.cmd === "REQ" && p.packet.action === "jsvc.hello"),
					1000,
					{ what: "REQ jsvc.hello sniffed" }
				);
				assert.ok(req, "REQ jsvc.hello sniffed");
				assert.equal(req.subject, `${sniffer.prefix}.REQ.${js.nodeID}`);
				assert.equal(req.packet.sender, cpp.nodeID);
				assert.equal(req.packet.ver, protocol);
				assert.ok(req.packet.timeout > 3000 && req.packet.timeout <= 4000, `timeout ${req.packet.timeout}`);
				assert.equal(req.packet.level, 2);
				assert.equal(req.packet.caller, "cpptest");
				if (protocol === "5") assert.equal(typeof req.packet.headers, "object");
			} finally {
				await sniffer.close();
			}
		});

		test("without its own timeout, a nested C++ call gets the parent's remaining budget", async () => {
			const sniffer = await h.startSniffer(nats.url, namespace);
			try {
				const t0 = Date.now();
				const err = await h.rejectionOf(() =>
					js.call("cpptest.call", { action: "jsvc.never", params: { budget: 1 } }, { nodeID: cpp.nodeID, timeout: 800 })
				);
				assert.equal(err.name, "RequestTimeoutError");
				assert.ok(Date.now() - t0 < 1500);
				const req = await h.waitFor(
					() => sniffer.packets.find(p => p.cmd === "REQ" && p.packet.action === "jsvc.never" && p.packet.params.budget === 1),
					1000,
					{ what: "nested REQ sniffed" }
				);
				assert.ok(req.packet.timeout > 0 && req.packet.timeout <= 800, `nested REQ timeout ${req.packet.timeout}`);
				// Let the nested call run out on the C++ side before the next test. Barrier: the C++
				// node's own RES to the outer request, a RequestTimeoutError sent when the outer
				// deadline passed there; the nested call has that deadline too (the parent's budget).
				const outer = sniffer.packets.find(p => p.cmd === "REQ" && p.packet.action === "cpptest.call" && p.packet.params.params && p.packet.params.params.budget === 1);
				assert.ok(outer, "outer REQ sniffed");
				const res = await h.waitFor(
					() => sniffer.packets.find(p => p.cmd === "RES" && p.packet.id === outer.packet.id && p.packet.sender === cpp.nodeID),
					3000,
					{ what: "the C++ node's late RES to the outer call" }
				);
				// (Whichever of the two timers fires first answers: the outer one with RequestTimeoutError,
				// or the nested one through cpptest.call's {ok: false}.)
				const timedOut = res.packet.success
					? res.packet.data.ok === false && res.packet.data.error.name === "RequestTimeoutError"
					: res.packet.error.name === "RequestTimeoutError";
				assert.ok(timedOut, JSON.stringify(res.packet));
			} finally {
				await sniffer.close();
			}
		});

		test("meta set by a JS callee travels back through the C++ caller to the JS root caller", async () => {
			const meta = { root: 1 };
			const r = await js.call("cpptest.call", { action: "jsvc.hello", params: { name: "m" } }, { nodeID: cpp.nodeID, meta });
			assert.equal(r.ok, true);
			assert.deepEqual(r.meta, { root: 1, touched: true });
			assert.deepEqual(meta, { root: 1, touched: true });
		});

		test("balanced round robin across two JS nodes offering the same action", async () => {
			rr1 = h.createBroker(version, { nats, namespace });
			rr2 = h.createBroker(version, { nats, namespace });
			for (const b of [rr1, rr2]) {
				b.createService({ name: "rr", actions: { whoami: () => b.nodeID } });
			}
			await Promise.all([rr1.start(), rr2.start()]);
			await h.waitForCppSees(js, cpp.nodeID, "rr.whoami", rr1.nodeID);
			await h.waitForCppSees(js, cpp.nodeID, "rr.whoami", rr2.nodeID);
			const counts = { [rr1.nodeID]: 0, [rr2.nodeID]: 0 };
			for (let i = 0; i < 6; i++) {
				const r = await h.cppCall(js, cpp.nodeID, { action: "rr.whoami", params: {} });
				assert.equal(r.ok, true, JSON.stringify(r));
				counts[r.data] += 1;
			}
			assert.deepEqual(Object.values(counts), [3, 3], JSON.stringify(counts));
		});

		test("a JS node restarted with the same nodeID: C++ routes to its new services", async () => {
			const id = h.uniqueId("jsrestart");
			const first = h.createBroker(version, { nats, namespace, nodeID: id });
			first.createService({ name: "gen", actions: { one: () => "v1" } });
			await first.start();
			await h.waitForCppSees(js, cpp.nodeID, "gen.one", id);
			assert.equal((await h.cppCall(js, cpp.nodeID, { action: "gen.one", params: {} })).data, "v1");
			await first.stop();

			const second = h.createBroker(version, { nats, namespace, nodeID: id });
			second.createService({ name: "gen", actions: { two: () => "v2" } });
			try {
				await second.start();
				await h.waitForCppSees(js, cpp.nodeID, "gen.two", id);
				const r = await h.cppCall(js, cpp.nodeID, { action: "gen.two", params: {} });
				assert.equal(r.data, "v2", JSON.stringify(r));
				const old = await h.cppCall(js, cpp.nodeID, { action: "gen.one", params: {}, timeout: 1000 });
				assert.equal(old.ok, false);
				assert.notEqual(old.error.name, "RequestTimeoutError", "no REQ for an action the node no longer has");
				const entry = (await js.call("$node.list", {}, { nodeID: cpp.nodeID })).find(n => n.id === id);
				assert.equal(entry.instanceID, second.instanceID);
			} finally {
				await second.stop();
			}
		});

		test("a JS node stopped while a call is pending: the call fails fast, not at timeout", async () => {
			victim = h.createBroker(version, { nats, namespace });
			let started = false;
			let release = null;
			victim.createService({
				name: "victim",
				actions: {
					hang() {
						started = true;
						// Answers only after the broker stopped (the answer goes nowhere); this also
						// clears the handler's timeout timer so nothing outlives the test.
						return new Promise(resolve => (release = resolve));
					}
				}
			});
			await victim.start();
			await h.waitForCppSees(js, cpp.nodeID, "victim.hang", victim.nodeID);

			// No call timeout at all: only the node going away can end this call.
			const pending = js.call("cpptest.call", { action: "victim.hang", params: {} }, { nodeID: cpp.nodeID, timeout: 15000 });
			await h.waitFor(() => started, 3000, { what: "victim.hang started" });
			const t0 = Date.now();
			await victim.stop();
			release("too late");
			const r = await pending;
			const elapsed = Date.now() - t0;
			assert.equal(r.ok, false);
			assert.equal(r.error.name, "RequestRejectedError", JSON.stringify(r.error));
			assert.equal(r.error.code, 503);
			assert.equal(r.error.retryable, true);
			assert.equal(r.error.data.nodeID, victim.nodeID);
			assert.ok(elapsed < 2000, `rejected after ${elapsed} ms`);

			// The node is gone for the C++ side too.
			const after = await h.cppCall(js, cpp.nodeID, { action: "victim.hang", params: {}, timeout: 1000 });
			assert.equal(after.ok, false);
			assert.equal(after.error.name, "ServiceNotFoundError");
		});
	});
}
