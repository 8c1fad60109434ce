"use strict";
// Scenarios 2 and 13: calls from real JS brokers to the C++ node (results, meta, typed errors,
// timeouts, unknown actions, raw REQ packets) and services added/removed at runtime.

const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const h = require("./lib/harness");

for (const { version, protocol } of h.VERSIONS) {
	const namespace = protocol === "5" ? "calls" : "";
	describe(`JS -> C++ calls (moleculer ${version}, protocol ${protocol}, namespace '${namespace}')`, () => {
		const { Errors } = h.moleculerFor(version);
		let nats, cpp, js, sniffer;

		before(async () => {
			nats = await h.startBus();
			cpp = await h.startCppNode({ nats, protocolVersion: protocol, namespace });
			js = h.createBroker(version, { nats, namespace });
			js.createService({
				name: "jsprobe",
				actions: {
					async nested(ctx) {
						const res = await ctx.call("cpptest.echo", { n: 1 });
						return { res, meta: ctx.meta, id: ctx.id, requestID: ctx.requestID };
					}
				}
			});
			await js.start();
			await h.waitForRemoteNode(js, cpp.nodeID, ["cpptest.echo"]);
			sniffer = await h.startSniffer(nats.url, namespace);
		});

		after(async () => {
			if (sniffer) await sniffer.close();
			await h.stopBrokers(js);
			await h.stopCppNodes(cpp);
			await nats.stop();
		});

		/** Publishes a raw REQ to the C++ node from a fake node and returns the RES promise. */
		async function rawRequest(fields, { ms = 2000, ver = protocol, sender = h.uniqueId("raw") } = {}) {
			const id = h.uniqueId("req");
			const first = await sniffer.first(`${sniffer.prefix}.RES.${sender}`, ms);
			const packet = Object.assign(
				{
					id,
					action: "cpptest.echo",
					params: {},
					meta: {},
					timeout: 0,
					level: 1,
					tracing: null,
					parentID: null,
					requestID: id,
					caller: null,
					stream: false
				},
				protocol === "5" ? { headers: {} } : {},
				fields,
				{ ver, sender }
			);
			const t0 = Date.now();
			sniffer.publish(`${sniffer.prefix}.REQ.${cpp.nodeID}`, packet);
			return { id, sender, t0, res: first.value };
		}

		test("echo: params, meta, context fields of a root call", async () => {
			const meta = { user: "bob", n: 7 };
			const res = await js.call("cpptest.echo", { a: 1, s: "x", arr: [1, "2", null] }, { meta });
			assert.deepEqual(res.params, { a: 1, s: "x", arr: [1, "2", null] });
			assert.deepEqual(res.meta, { user: "bob", n: 7 });
			assert.equal(res.nodeID, js.nodeID);
			assert.equal(res.level, 1);
			assert.equal(typeof res.requestID, "string");
			assert.ok(res.requestID.length > 0);
			assert.equal(res.parentID, null);
			assert.equal(res.caller, null);
			// RES meta is merged into the root context's meta object (JS: ctx.meta === opts.meta).
			assert.deepEqual(meta, { user: "bob", n: 7, echoed: true });
		});

		test("echo: unicode and a 300 KB payload round-trip exactly", async () => {
			const text = "héllo ✓ 🚀 \u0000 \"quoted\" \\ \n end";
			const big = "x".repeat(300 * 1024);
			const res = await js.call("cpptest.echo", { text, big, num: 1e-7, neg: -0.5, int: 2 ** 40, nested: { a: [{}, []] } });
			assert.equal(res.params.text, text);
			assert.equal(res.params.big.length, big.length);
			assert.equal(res.params.big, big);
			assert.equal(res.params.num, 1e-7);
			assert.equal(res.params.neg, -0.5);
			assert.equal(res.params.int, 2 ** 40);
			assert.deepEqual(res.params.nested, { a: [{}, []] });
		});

		test("echo from a JS action: level, parentID, requestID, caller propagate; meta comes back", async () => {
			const out = await js.call("jsprobe.nested", {}, { meta: { user: "alice" } });
			assert.deepEqual(out.res.params, { n: 1 });
			assert.deepEqual(out.res.meta, { user: "alice" });
			assert.equal(out.res.level, 2);
			assert.equal(out.res.parentID, out.id);
			assert.equal(out.res.requestID, out.requestID);
			assert.equal(out.res.caller, "jsprobe");
			assert.equal(out.res.nodeID, js.nodeID);
			assert.deepEqual(out.meta, { user: "alice", echoed: true });
		});

		test("add: numbers, and a ValidationError for non-numbers", async () => {
			assert.equal(await js.call("cpptest.add", { a: 2, b: 3 }), 5);
			assert.equal(await js.call("cpptest.add", { a: 1.5, b: -4 }), -2.5);
			const err = await h.rejectionOf(() => js.call("cpptest.add", { a: "x", b: 1 }));
			assert.ok(err instanceof Errors.ValidationError, `${err.name}: ${err.message}`);
			assert.equal(err.name, "ValidationError");
			assert.equal(err.code, 422);
			assert.equal(err.type, "VALIDATION_ERROR");
			assert.equal(err.retryable, false);
			assert.equal(err.nodeID, cpp.nodeID);
			assert.ok(Array.isArray(err.data));
			assert.deepEqual(err.data.map(d => d.field), ["a"]);
		});

		test("nothing: the call resolves undefined (RES without data)", async () => {
			const res = await js.call("cpptest.nothing", {});
			assert.equal(res, undefined);
			const raw = await rawRequest({ action: "cpptest.nothing" });
			const packet = await raw.res;
			assert.equal(packet.success, true);
			assert.equal("data" in packet, false, `RES: ${JSON.stringify(packet)}`);
		});

		test("fail: MoleculerClientError with code, type, data, retryable false", async () => {
			const err = await h.rejectionOf(() => js.call("cpptest.fail", { x: 1 }));
			assert.ok(err instanceof Errors.MoleculerClientError, `${err.name}: ${err.message}`);
			assert.equal(err.name, "MoleculerClientError");
			assert.equal(err.message, "Bad thing");
			assert.equal(err.code, 422);
			assert.equal(err.type, "BAD_THING");
			assert.deepEqual(err.data, { x: 1 });
			assert.equal(err.retryable, false);
			assert.equal(err.nodeID, cpp.nodeID);
		});

		test("throw: a C++ exception becomes a typed error, the node survives", async () => {
			const err = await h.rejectionOf(() => js.call("cpptest.throw", {}));
			assert.ok(err instanceof Errors.MoleculerError, `not a typed error: ${err.name}: ${err.message}`);
			assert.match(err.message, /boom/);
			assert.equal(err.code, 500);
			// A handler crash is the callee's fault: a server-side error class (MoleculerError or
			// MoleculerServerError), never MoleculerClientError (4xx, "the caller's fault").
			assert.ok(["MoleculerError", "MoleculerServerError"].includes(err.name), `error class for a C++ exception: ${err.name} (type ${err.type})`);
			assert.equal(err instanceof Errors.MoleculerClientError, false);
			assert.equal(err.nodeID, cpp.nodeID);
			assert.equal(cpp.running(), true);
			assert.equal(await js.call("cpptest.add", { a: 1, b: 1 }), 2);
		});

		test("unknown action: ServiceNotFoundError (JS side and raw REQ to the C++ node)", async () => {
			const err = await h.rejectionOf(() => js.call("cpptest.nothere", {}, { nodeID: cpp.nodeID }));
			assert.ok(err instanceof Errors.ServiceNotFoundError);
			assert.equal(err.retryable, true);

			// The C++ node itself must answer a REQ for an action it does not have.
			const raw = await rawRequest({ action: "cpptest.nothere", meta: { k: 1 } });
			const res = await raw.res;
			assert.equal(res.id, raw.id);
			assert.equal(res.success, false);
			assert.equal(res.sender, cpp.nodeID);
			assert.equal(res.ver, protocol);
			assert.deepEqual(res.meta, { k: 1 });
			assert.equal(res.error.name, "ServiceNotFoundError");
			assert.equal(res.error.code, 404);
			assert.equal(res.error.type, "SERVICE_NOT_FOUND");
			assert.equal(res.error.retryable, true);
			assert.deepEqual(res.error.data, { action: "cpptest.nothere", nodeID: cpp.nodeID });
			assert.equal(res.error.nodeID, cpp.nodeID);
		});

		test("raw REQ: exact RES shape for a success", async () => {
			const raw = await rawRequest({ action: "cpptest.add", params: { a: 20, b: 22 }, meta: { m: "v" } });
			const res = await raw.res;
			assert.equal(res.id, raw.id);
			assert.equal(res.success, true);
			assert.equal(res.data, 42);
			assert.deepEqual(res.meta, { m: "v" });
			assert.equal(res.ver, protocol);
			assert.equal(res.sender, cpp.nodeID);
			if (protocol === "5") assert.ok(res.headers === null || typeof res.headers === "object");
		});

		test("raw REQ with only id, action, params, ver, sender (and null meta/headers) is answered", async () => {
			const sender = h.uniqueId("minimal");
			const id = h.uniqueId("req");
			const first = await sniffer.first(`${sniffer.prefix}.RES.${sender}`, 2000);
			sniffer.publish(`${sniffer.prefix}.REQ.${cpp.nodeID}`, { id, action: "cpptest.add", params: { a: 1, b: 6 }, ver: protocol, sender });
			const res = await first.value;
			assert.equal(res.id, id);
			assert.equal(res.success, true, JSON.stringify(res));
			assert.equal(res.data, 7);

			const raw = await rawRequest({ action: "cpptest.echo", params: { z: 1 }, meta: null, headers: null, parentID: null, caller: null });
			const res2 = await raw.res;
			assert.equal(res2.success, true, JSON.stringify(res2));
			assert.deepEqual(res2.data.params, { z: 1 });
			assert.equal(res2.data.nodeID, raw.sender);
		});

		test("raw REQ with a foreign protocol version is dropped (no RES)", async () => {
			const other = protocol === "4" ? "5" : "4";
			const bad = await rawRequest({ action: "cpptest.add", params: { a: 1, b: 1 } }, { ms: 700, ver: other });
			await assert.rejects(bad.res, /did not settle/);
			const numeric = await rawRequest({ action: "cpptest.add", params: { a: 1, b: 1 } }, { ms: 700, ver: Number(protocol) });
			await assert.rejects(numeric.res, /did not settle/);
			assert.equal(cpp.running(), true);
		});

		test("raw REQ with stream:true is refused with an error, not run with missing data", async () => {
			const raw = await rawRequest({ action: "cpptest.echo", stream: true, seq: 0, params: null });
			const res = await raw.res;
			assert.equal(res.id, raw.id);
			assert.equal(res.success, false);
			assert.equal(typeof res.error.name, "string");
		});

		test("slow: answers after the delay; call timeout gives RequestTimeoutError on time", async () => {
			assert.deepEqual(await js.call("cpptest.slow", { ms: 100 }), { slept: 100 });

			const t0 = Date.now();
			const err = await h.rejectionOf(() => js.call("cpptest.slow", { ms: 1500 }, { timeout: 300 }));
			const elapsed = Date.now() - t0;
			assert.ok(err instanceof Errors.RequestTimeoutError, `${err.name}: ${err.message}`);
			assert.equal(err.code, 504);
			assert.equal(err.retryable, true);
			assert.ok(elapsed < 1000, `timed out after ${elapsed} ms`);
		});

		test("REQ timeout honoured: slow {ms:2000} with timeout 300 ends within ~1 s", async t => {
			const t0 = Date.now();
			const err = await h.rejectionOf(() => js.call("cpptest.slow", { ms: 2000 }, { timeout: 300 }));
			const elapsed = Date.now() - t0;
			assert.equal(err.name, "RequestTimeoutError");
			assert.ok(elapsed < 1000, `timed out after ${elapsed} ms`);

			// Raw: a REQ whose budget is 300 ms. A JS callee (its Timeout middleware wraps local
			// actions too) answers after the budget with RequestTimeoutError 504, retryable,
			// data {action, nodeID: <the caller>}, and never answers again; the C++ node must do the same.
			const raw = await rawRequest({ action: "cpptest.slow", params: { ms: 2000 }, timeout: 300 }, { ms: 3000 });
			const res = await raw.res;
			const took = Date.now() - raw.t0;
			t.diagnostic(`raw REQ timeout 300 answered after ${took} ms: ${res.success ? "data" : res.error.name}`);
			assert.ok(took >= 250 && took < 1000, `answered after ${took} ms, expected about 300 ms`);
			assert.equal(res.id, raw.id);
			assert.equal(res.success, false, `early RES ${JSON.stringify(res)}`);
			assert.equal(res.error.name, "RequestTimeoutError");
			assert.equal(res.error.code, 504);
			assert.equal(res.error.retryable, true);
			assert.equal(res.error.data.action, "cpptest.slow");
			// As JS: the caller in data.nodeID (ctx.nodeID of the callee's context).
			assert.equal(res.error.data.nodeID, raw.sender);
			// Barrier for "no second RES when the handler finishes at 2000 ms": a second slow REQ of
			// 2000 ms from the same sender, sent later, ends on the same node's timers after the
			// first handler; its RES on the same subject comes after any late RES of the first.
			const barrier = await rawRequest({ action: "cpptest.slow", params: { ms: 2000 } }, { ms: 4000, sender: raw.sender });
			assert.deepEqual((await barrier.res).data, { slept: 2000 });
			const answers = sniffer.packets.filter(p => p.cmd === "RES" && p.target === raw.sender);
			assert.deepEqual(answers.map(p => p.packet.id), [raw.id, barrier.id], "one RES per REQ, none late");
			// Late answers to timed-out calls are orphans on the JS side; everything still works.
			assert.equal(await js.call("cpptest.add", { a: 5, b: 5 }), 10);
		});

		test("concurrent calls are all answered with their own results", async () => {
			const jobs = [];
			for (let i = 0; i < 50; i++) jobs.push(js.call("cpptest.add", { a: i, b: 1000 }));
			jobs.push(js.call("cpptest.slow", { ms: 200 }));
			const results = await Promise.all(jobs);
			for (let i = 0; i < 50; i++) assert.equal(results[i], i + 1000);
			assert.deepEqual(results[50], { slept: 200 });
		});

		test("burst: 2000 concurrent calls, every answer matches its request", async () => {
			const t0 = Date.now();
			const jobs = [];
			for (let i = 0; i < 2000; i++) jobs.push(js.call("cpptest.add", { a: i, b: 0.5 }, { timeout: 15000 }));
			const results = await Promise.all(jobs);
			results.forEach((r, i) => assert.equal(r, i + 0.5));
			assert.ok(Date.now() - t0 < 15000);
		});

		test("dynamic services: addService announces a new INFO (seq up), removeService withdraws it", async () => {
			const name = `dyn${protocol}x`;
			const seqBefore = h.jsNode(js, cpp.nodeID).seq;
			assert.deepEqual(await js.call("cpptest.addService", { name }), { added: name });
			await h.waitForRemoteNode(js, cpp.nodeID, [`${name}.hello`]);
			const seqAfter = h.jsNode(js, cpp.nodeID).seq;
			assert.ok(seqAfter > seqBefore, `seq ${seqBefore} -> ${seqAfter}`);
			assert.equal(await js.call(`${name}.hello`, {}), `hello from ${name}`);
			assert.deepEqual(
				h.jsNode(js, cpp.nodeID).services.map(s => s.name).sort(),
				["$node", "cpptest", name].sort()
			);

			assert.deepEqual(await js.call("cpptest.removeService", { name }), { removed: name });
			await h.waitFor(() => !h.jsHasAction(js, `${name}.hello`, cpp.nodeID), 5000, {
				what: `${name}.hello withdrawn`
			});
			assert.ok(h.jsNode(js, cpp.nodeID).seq > seqAfter);
			// JS keeps the (now empty) endpoint list: balanced calls get ServiceNotAvailableError,
			// calls aimed at the C++ node ServiceNotFoundError.
			const err = await h.rejectionOf(() => js.call(`${name}.hello`, {}));
			assert.ok(err instanceof Errors.ServiceNotAvailableError, `${err.name}: ${err.message}`);
			const err2 = await h.rejectionOf(() => js.call(`${name}.hello`, {}, { nodeID: cpp.nodeID }));
			assert.ok(err2 instanceof Errors.ServiceNotFoundError, `${err2.name}: ${err2.message}`);
			// The C++ node itself no longer serves it.
			const raw = await rawRequest({ action: `${name}.hello` });
			assert.equal((await raw.res).error.name, "ServiceNotFoundError");
			// And the rest is untouched.
			assert.equal(await js.call("cpptest.add", { a: 2, b: 2 }), 4);
		});
	});
}
