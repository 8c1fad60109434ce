"use strict";
// Clean-room Socket.IO v5 conformance suite (spec §3.4, 32 tests: 16 Engine.IO-level + 16
// Socket.IO-level) on /socket.io/ (the test application of spec §3.2), run against each target of
// lib/targets.js (TARGET=cpp|reference|both). Socket.IO-level tests all use WebSocket.

const assert = require("node:assert/strict");
const { describe, it, before, after, afterEach } = require("node:test");
const { protocolTargets, startTarget } = require("./lib/targets");
const { makeCases } = require("./lib/engine-cases");
const { show, terminateAll, webSocketSession } = require("./lib/wire");

const PATH = "/socket.io/";
const T = { timeout: 5000 };
const PROMPT_CLOSE_MS = 250; // see engineio.test.js

const PH0 = '{"_placeholder":true,"num":0}';
const PH1 = '{"_placeholder":true,"num":1}';

function assertConnectReply(frame, prefix) {
	assert.equal(typeof frame, "string", `CONNECT reply must be text, got ${show(frame)}`);
	assert.ok(frame.startsWith(prefix), `expected a frame starting with ${prefix}, got ${show(frame)}`);
	const payload = JSON.parse(frame.slice(prefix.length));
	assert.deepEqual(Object.keys(payload), ["sid"], `CONNECT reply payload: ${frame}`);
	assert.equal(typeof payload.sid, "string");
}

function assertBinary(frame, bytes) {
	assert.ok(Buffer.isBuffer(frame), `expected a binary frame ${JSON.stringify(bytes)}, got ${show(frame)}`);
	assert.deepEqual([...frame], bytes);
}

for (const name of protocolTargets()) {
	describe(`Socket.IO protocol [${name}]`, () => {
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

		describe("Engine.IO protocol", () => {
			const cases = makeCases(t, { path: PATH, sio: true });
			cases.handshake();
			cases.heartbeat();
			cases.close();
			cases.upgrade();
		});

		/** A WebSocket Engine.IO session on /socket.io/ (open packet consumed). */
		async function session() {
			const { sock } = await webSocketSession(t().wsUrl, PATH);
			return sock;
		}

		/** A session connected to the main namespace (CONNECT reply and `auth` event consumed). */
		async function connected() {
			const sock = await session();
			sock.send("40");
			assertConnectReply(await sock.next(), "40");
			assert.equal(await sock.next(), '42["auth",{}]');
			return sock;
		}

		async function assertPromptClose(sock, sentAt) {
			const info = await sock.waitClose(2000);
			assert.ok(
				info.at - sentAt < PROMPT_CLOSE_MS,
				`closed ${info.at - sentAt} ms after the invalid packet (expected at once, not by a timeout)`
			);
		}

		describe("Socket.IO protocol", () => {
			describe("connect", () => {
				it("should allow connection to the main namespace", T, async () => {
					const sock = await session();
					sock.send("40");
					assertConnectReply(await sock.next(), "40");
					assert.equal(await sock.next(), '42["auth",{}]');
				});

				it("should allow connection to the main namespace with a payload", T, async () => {
					const sock = await session();
					sock.send('40{"token":"123"}');
					assertConnectReply(await sock.next(), "40");
					assert.equal(await sock.next(), '42["auth",{"token":"123"}]');
				});

				it("should allow connection to a custom namespace", T, async () => {
					const sock = await session();
					sock.send("40/custom,");
					assertConnectReply(await sock.next(), "40/custom,");
					assert.equal(await sock.next(), '42/custom,["auth",{}]');
				});

				it("should allow connection to a custom namespace with a payload", T, async () => {
					const sock = await session();
					sock.send('40/custom,{"token":"abc"}');
					assertConnectReply(await sock.next(), "40/custom,");
					assert.equal(await sock.next(), '42/custom,["auth",{"token":"abc"}]');
				});

				it("should disallow connection to an unknown namespace", T, async () => {
					const sock = await session();
					sock.send("40/random");
					assert.equal(await sock.next(), '44/random,{"message":"Invalid namespace"}');
				});

				it("should disallow connection with an invalid handshake", T, async () => {
					const sock = await session();
					const sentAt = Date.now();
					sock.send("4abc");
					await assertPromptClose(sock, sentAt);
				});

				it("should close the connection if no handshake is received", T, async () => {
					// The pings are answered, so the heartbeat (300 + 200 ms) cannot be what closes
					// the session: only connectTimeout (1000 ms) can, and not before it expires.
					const sock = await session();
					const openedAt = Date.now();
					let pongs = 0;
					while (!sock.closed) {
						let frame;
						try {
							frame = await sock.next(3000);
						} catch (err) {
							if (sock.closed) break;
							throw err;
						}
						if (frame === "1") continue; // the Engine.IO close packet, then the close
						assert.equal(frame, "2", "only pings before the close");
						sock.send("3");
						pongs++;
					}
					const info = await sock.waitClose(100);
					const after = info.at - openedAt;
					assert.ok(pongs >= 2, `${pongs} pings answered: the heartbeat outlived its own timeout`);
					assert.ok(after >= 950 && after < 2500, `closed ${after} ms after the open packet (connectTimeout 1000)`);
				});
			});

			describe("disconnect", () => {
				it("should disconnect from the main namespace", T, async () => {
					const sock = await connected();
					sock.send("41");
					assert.equal(await sock.next(), "2", "after 41 the next frame must be the ping");
				});

				it("should connect then disconnect from a custom namespace", T, async () => {
					const sock = await connected();
					assert.equal(await sock.next(), "2"); // a ping, deliberately not answered
					sock.send("40/custom");
					assertConnectReply(await sock.next(), "40/custom,");
					assert.equal(await sock.next(), '42/custom,["auth",{}]');
					sock.send("41/custom");
					sock.send('42["message","message to main namespace"]');
					assert.equal(await sock.next(), '42["message-back","message to main namespace"]');
				});
			});

			describe("message", () => {
				it("should send a plain-text packet", T, async () => {
					const sock = await connected();
					sock.send('42["message",1,"2",{"3":[true]}]');
					assert.equal(await sock.next(), '42["message-back",1,"2",{"3":[true]}]');
				});

				it("should send a packet with binary attachments", T, async () => {
					const sock = await connected();
					sock.send(`452-["message",${PH0},${PH1}]`);
					sock.send(Uint8Array.from([1, 2, 3]));
					sock.send(Uint8Array.from([4, 5, 6]));
					assert.equal(await sock.nextSkippingPings(), `452-["message-back",${PH0},${PH1}]`);
					assertBinary(await sock.nextSkippingPings(), [1, 2, 3]);
					assertBinary(await sock.nextSkippingPings(), [4, 5, 6]);
				});

				it("should send a plain-text packet with an ack", T, async () => {
					const sock = await connected();
					sock.send('42456["message-with-ack",1,"2",{"3":[false]}]');
					assert.equal(await sock.next(), '43456[1,"2",{"3":[false]}]');
				});

				it("should send a packet with binary attachments and an ack", T, async () => {
					const sock = await connected();
					sock.send(`452-789["message-with-ack",${PH0},${PH1}]`);
					sock.send(Uint8Array.from([1, 2, 3]));
					sock.send(Uint8Array.from([4, 5, 6]));
					assert.equal(await sock.nextSkippingPings(), `462-789[${PH0},${PH1}]`);
					assertBinary(await sock.nextSkippingPings(), [1, 2, 3]);
					assertBinary(await sock.nextSkippingPings(), [4, 5, 6]);
				});

				it("should close the connection upon invalid format (unknown packet type)", T, async () => {
					const sock = await connected();
					const sentAt = Date.now();
					sock.send("4abc");
					await assertPromptClose(sock, sentAt);
				});

				it("should close the connection upon invalid format (invalid payload format)", T, async () => {
					const sock = await connected();
					const sentAt = Date.now();
					sock.send("42{}");
					await assertPromptClose(sock, sentAt);
				});

				it("should close the connection upon invalid format (invalid ack id)", T, async () => {
					const sock = await connected();
					const sentAt = Date.now();
					sock.send('42abc["message-with-ack",1,"2",{"3":[false]}]');
					await assertPromptClose(sock, sentAt);
				});
			});
		});
	});
}
