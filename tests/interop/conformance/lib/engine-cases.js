"use strict";
// Engine.IO-level checks shared by the Engine.IO suite (spec §3.3 on /engine.io/) and the
// Engine.IO part of the Socket.IO suite (spec §3.4: items 1-7 and 16-24 on /socket.io/, titled
// "should ...", without the echo steps). Written from the spec: same inputs, same expected
// strings and statuses. Server configuration: pingInterval 300, pingTimeout 200, maxPayload 1e6.

const assert = require("node:assert/strict");
const { describe, it } = require("node:test");
const {
	sleep,
	show,
	request,
	parkRequest,
	describeResponse,
	QueuedWebSocket,
	pollingHandshake,
	openWebSocket
} = require("./wire");

const OPEN_KEYS = ["maxPayload", "pingInterval", "pingTimeout", "sid", "upgrades"];

/** Options: path ("/engine.io/" | "/socket.io/"), sio (titles "should ...", no echo steps). */
function makeCases(target, { path, sio }) {
	const title = (eio, socketio) => (sio ? socketio : eio);
	const http = () => `${target().url}${path}`;
	const ws = () => `${target().wsUrl}${path}`;
	const T = { timeout: 5000 };

	function assertOpenPacket(body, upgrades) {
		assert.equal(typeof body, "string", `open packet must be text, got ${show(body)}`);
		assert.ok(body.startsWith("0"), `open packet must start with "0": ${show(body)}`);
		const open = JSON.parse(body.slice(1));
		assert.deepEqual(Object.keys(open).sort(), OPEN_KEYS, `open packet keys: ${body}`);
		assert.equal(typeof open.sid, "string");
		assert.deepEqual(open.upgrades, upgrades);
		assert.equal(open.pingInterval, 300);
		assert.equal(open.pingTimeout, 200);
		assert.equal(open.maxPayload, 1000000);
		return open;
	}

	function assertStatus(res, expected, what) {
		const ok = Array.isArray(expected) ? expected.includes(res.status) : res.status === expected;
		assert.ok(ok, `${what}: expected HTTP ${[].concat(expected).join(" or ")}, got ${describeResponse(res)}`);
	}

	/** A WebSocket handshake the server must refuse: it ends closed without an open packet. */
	async function assertWsRefused(query) {
		const sock = new QueuedWebSocket(`${ws()}?${query}`);
		await sock.waitClose(2000);
		const open = sock.seen.find(f => typeof f === "string" && f.startsWith("0"));
		assert.equal(open, undefined, `?${query}: the server opened a session: ${show(open)}`);
	}

	function handshake() {
		describe("handshake", () => {
			describe("HTTP long-polling", () => {
				it(title("successfully opens a session", "should successfully open a session"), T, async () => {
					const res = await request("GET", `${http()}?EIO=4&transport=polling`);
					assertStatus(res, 200, "GET ?EIO=4&transport=polling");
					assertOpenPacket(res.body, ["websocket"]);
				});

				it(title("fails with an invalid 'EIO' query parameter", "should fail with an invalid 'EIO' query parameter"), T, async () => {
					assertStatus(await request("GET", `${http()}?transport=polling`), 400, "GET without EIO");
					assertStatus(await request("GET", `${http()}?EIO=abc&transport=polling`), 400, "GET EIO=abc");
				});

				it(title("fails with an invalid 'transport' query parameter", "should fail with an invalid 'transport' query parameter"), T, async () => {
					assertStatus(await request("GET", `${http()}?EIO=4`), 400, "GET without transport");
					assertStatus(await request("GET", `${http()}?EIO=4&transport=abc`), 400, "GET transport=abc");
				});

				it(title("fails with an invalid request method", "should fail with an invalid request method"), T, async () => {
					assertStatus(await request("POST", `${http()}?EIO=4&transport=polling`), 400, "POST without sid");
					assertStatus(await request("PUT", `${http()}?EIO=4&transport=polling`), 400, "PUT without sid");
				});
			});

			describe("WebSocket", () => {
				it(title("successfully opens a session", "should successfully open a session"), T, async () => {
					const sock = await openWebSocket(ws(), "");
					const first = await sock.next();
					assertOpenPacket(first, []);
					sock.terminate();
				});

				// The official suite does not await these closes; the refusal is awaited here.
				it(title("fails with an invalid 'EIO' query parameter", "should fail with an invalid 'EIO' query parameter"), T, async () => {
					await assertWsRefused("transport=websocket");
					await assertWsRefused("EIO=abc&transport=websocket");
				});

				it(title("fails with an invalid 'transport' query parameter", "should fail with an invalid 'transport' query parameter"), T, async () => {
					await assertWsRefused("EIO=4");
					await assertWsRefused("EIO=4&transport=abc");
				});
			});
		});
	}

	function heartbeat() {
		describe("heartbeat", () => {
			describe("HTTP long-polling", () => {
				it(title("sends ping/pong packets", "should send ping/pong packets"), T, async () => {
					const { sid } = await pollingHandshake(target().url, path);
					for (let i = 0; i < 3; i++) {
						const poll = await request("GET", `${http()}?EIO=4&transport=polling&sid=${sid}`);
						assertStatus(poll, 200, `poll #${i + 1}`);
						assert.equal(poll.body, "2", `poll #${i + 1} must return exactly a ping`);
						const pong = await request("POST", `${http()}?EIO=4&transport=polling&sid=${sid}`, "3");
						assertStatus(pong, 200, `pong #${i + 1}`);
					}
				});

				it(title("closes the session upon ping timeout", "should close the session upon ping timeout"), T, async () => {
					const { sid } = await pollingHandshake(target().url, path);
					// pingInterval + pingTimeout = 500 ms; the official suite waits exactly that, which the
					// reference server's timers miss now and then on a loaded machine. A server that does
					// not close still answers 200 "2" (the unanswered ping) until the next ping at 800 ms.
					await sleep(600); // the ping timeout under test, not a synchronisation
					const poll = await request("GET", `${http()}?EIO=4&transport=polling&sid=${sid}`);
					assertStatus(poll, 400, "GET 600 ms after the handshake");
				});
			});

			describe("WebSocket", () => {
				it(title("sends ping/pong packets", "should send ping/pong packets"), T, async () => {
					const sock = await openWebSocket(ws(), "");
					await sock.next(); // open packet
					for (let i = 0; i < 3; i++) {
						assert.equal(await sock.next(1000), "2", `frame #${i + 1} must be a ping`);
						sock.send("3");
					}
					sock.terminate();
				});

				it(title("closes the session upon ping timeout", "should close the session upon ping timeout"), T, async () => {
					const sock = await openWebSocket(ws(), "");
					await sock.waitClose(2000); // never answers the pings
				});
			});
		});
	}

	function close() {
		describe("close", () => {
			describe("HTTP long-polling", () => {
				it(title("forcefully closes the session", "should forcefully close the session"), T, async () => {
					const { sid } = await pollingHandshake(target().url, path);
					// The POST goes out only once the GET is parked (see parkRequest).
					const parked = await parkRequest(`${http()}?EIO=4&transport=polling&sid=${sid}`);
					const pollPromise = parked.response;
					const push = await request("POST", `${http()}?EIO=4&transport=polling&sid=${sid}`, "1");
					assertStatus(push, 200, "POST 1");
					const poll = await pollPromise;
					assertStatus(poll, 200, "parked GET");
					assert.equal(poll.body, "6", "the parked GET must be completed with a noop");
					const after = await request("GET", `${http()}?EIO=4&transport=polling&sid=${sid}`);
					assertStatus(after, 400, "GET after close");
				});
			});

			describe("WebSocket", () => {
				it(title("forcefully closes the session", "should forcefully close the session"), T, async () => {
					const sock = await openWebSocket(ws(), "");
					await sock.next(); // open packet
					sock.send("1");
					await sock.waitClose(2000);
				});
			});
		});
	}

	function upgrade() {
		describe("upgrade", () => {
			it(title("successfully upgrades from HTTP long-polling to WebSocket", "should successfully upgrade from HTTP long-polling to WebSocket"), T, async () => {
				const { sid } = await pollingHandshake(target().url, path);
				const sock = await openWebSocket(ws(), "", `EIO=4&transport=websocket&sid=${sid}`);
				sock.send("2probe");
				assert.equal(await sock.next(), "3probe");
				if (!sio) {
					const poll = await request("GET", `${http()}?EIO=4&transport=polling&sid=${sid}`);
					assertStatus(poll, 200, "GET during the upgrade");
					assert.equal(poll.body, "6", "a GET during the upgrade must get a noop");
				}
				sock.send("5");
				if (!sio) {
					sock.send("4hello");
					assert.equal(await sock.next(), "4hello");
				}
				sock.terminate();
			});

			it(title("ignores HTTP requests with same sid after upgrade", "should ignore HTTP requests with same sid after upgrade"), T, async () => {
				const { sid } = await pollingHandshake(target().url, path);
				const sock = await openWebSocket(ws(), "", `EIO=4&transport=websocket&sid=${sid}`);
				sock.send("2probe");
				sock.send("5");
				const poll = await request("GET", `${http()}?EIO=4&transport=polling&sid=${sid}`);
				assertStatus(poll, 400, "GET after the upgrade");
				if (!sio) {
					sock.send("4hello");
					assert.equal(await sock.next(), "3probe");
					assert.equal(await sock.next(), "4hello");
				}
				sock.terminate();
			});

			it(title("ignores WebSocket connection with same sid after upgrade", "should ignore WebSocket connection with same sid after upgrade"), T, async () => {
				const { sid } = await pollingHandshake(target().url, path);
				const sock = await openWebSocket(ws(), "", `EIO=4&transport=websocket&sid=${sid}`);
				sock.send("2probe");
				sock.send("5");
				assert.equal(await sock.next(), "3probe");
				const second = new QueuedWebSocket(`${ws()}?EIO=4&transport=websocket&sid=${sid}`);
				await second.waitClose(2000);
				if (!sio) {
					sock.send("4hello");
					assert.equal(await sock.next(), "4hello");
				}
				sock.terminate();
			});
		});
	}

	return { handshake, heartbeat, close, upgrade, assertStatus };
}

module.exports = { makeCases };
