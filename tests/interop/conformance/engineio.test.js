"use strict";
// Clean-room Engine.IO v4 conformance suite (spec §3.3, 24 tests) on /engine.io/ (raw Engine.IO
// echo server), run against each target of lib/targets.js (TARGET=cpp|reference|both).

const assert = require("node:assert/strict");
const { describe, it, before, after, afterEach } = require("node:test");
const { protocolTargets, startTarget } = require("./lib/targets");
const { makeCases } = require("./lib/engine-cases");
const { request, parkRequest, terminateAll, pollingHandshake, openWebSocket } = require("./lib/wire");

const PATH = "/engine.io/";
const T = { timeout: 5000 };
// A parse error must close the session at once, not through the ping timeout (~500 ms after the
// handshake) that would close a silent session anyway.
const PROMPT_CLOSE_MS = 250;

for (const name of protocolTargets()) {
	describe(`Engine.IO protocol [${name}]`, () => {
		let target = null;
		const t = () => {
			if (!target) throw new Error(`${name} target not started`);
			return target;
		};
		before(async () => {
			target = await startTarget(name);
		});
		after(async () => {
			terminateAll();
			if (target) await target.close();
		});
		afterEach(() => terminateAll());

		const cases = makeCases(t, { path: PATH, sio: false });
		const { assertStatus } = cases;
		const poll = sid => `${t().url}${PATH}?EIO=4&transport=polling&sid=${sid}`;

		cases.handshake();

		describe("message", () => {
			describe("HTTP long-polling", () => {
				async function roundTrip(payload) {
					const { sid } = await pollingHandshake(t().url, PATH);
					const push = await request("POST", poll(sid), payload);
					assertStatus(push, 200, "POST");
					assert.equal(push.body, "ok");
					const res = await request("GET", poll(sid));
					assertStatus(res, 200, "GET");
					assert.equal(res.body, payload);
				}

				it("sends and receives a payload containing one plain text packet", T, async () => {
					await roundTrip("4hello");
				});

				it("sends and receives a payload containing several plain text packets", T, async () => {
					await roundTrip("4test1\x1e4test2\x1e4test3");
				});

				it("sends and receives a payload containing plain text and binary packets", T, async () => {
					await roundTrip("4hello\x1ebAQIDBA==");
				});

				it("closes the session upon invalid packet format", T, async () => {
					const { sid } = await pollingHandshake(t().url, PATH);
					const push = await request("POST", poll(sid), "abc");
					// The spec allows 400 or an aborted connection (status 0 here); the reference
					// answers 200 "ok" and closes the session right after, which is what counts.
					assertStatus(push, [200, 400, 0], "POST abc");
					assertStatus(await request("GET", poll(sid)), 400, "GET after the invalid packet");
				});

				it("closes the session upon duplicate poll requests", T, async () => {
					const { sid } = await pollingHandshake(t().url, PATH);
					// The duplicate GET goes out only once the first one is parked (see parkRequest).
					const parked = await parkRequest(poll(sid));
					const first = parked.response;
					const second = await request("GET", `${poll(sid)}&t=burst`);
					assertStatus(second, [400, 500], "second concurrent GET");
					const firstRes = await first;
					assertStatus(firstRes, 200, "first GET");
					assert.equal(firstRes.body, "1", "the parked GET must be completed with a close packet");
					assertStatus(await request("GET", poll(sid)), 400, "GET after the duplicate poll");
				});
			});

			describe("WebSocket", () => {
				async function session() {
					const sock = await openWebSocket(`${t().wsUrl}${PATH}`, "");
					await sock.next(); // open packet
					return sock;
				}

				it("sends and receives a plain text packet", T, async () => {
					const sock = await session();
					sock.send("4hello");
					assert.equal(await sock.next(), "4hello");
				});

				it("sends and receives a binary packet", T, async () => {
					const sock = await session();
					sock.send(Uint8Array.from([1, 2, 3, 4]));
					const frame = await sock.next();
					assert.ok(Buffer.isBuffer(frame), `expected a binary frame, got ${JSON.stringify(frame)}`);
					assert.deepEqual([...frame], [1, 2, 3, 4]);
				});

				it("closes the session upon invalid packet format", T, async () => {
					const sock = await session();
					const sentAt = Date.now();
					sock.send("abc");
					const info = await sock.waitClose(2000);
					assert.ok(
						info.at - sentAt < PROMPT_CLOSE_MS,
						`closed ${info.at - sentAt} ms after the invalid packet (expected at once, ` +
							`not by the ping timeout)`
					);
				});
			});
		});

		cases.heartbeat();
		cases.close();
		cases.upgrade();
	});
}
