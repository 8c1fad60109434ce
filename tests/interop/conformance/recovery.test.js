"use strict";
// Connection state recovery (issue 13) with real socket.io-client 4.8, default transports and
// websocket only, against the C++ conformance server AND the npm reference socket.io 4.8 server,
// both started with `--recovery MAX_MS` (the reference: connectionStateRecovery with
// maxDisconnectionDuration MAX_MS). The servers' recovery:* events (lib/reference-server.js,
// app/sio_conformance_server.cpp) let a second client make the server send numbered events while
// the first one is away.
//
// What must hold, as socket.io 4.8 does it: after its transport dropped, a client reconnects with
// `recovered === true`, the same id, its rooms, and exactly the events it missed, in order, once;
// its own disconnect(), a server disconnect, or an absence longer than maxDisconnectionDuration
// give a new session (`recovered === false`, a new id, no rooms).

const assert = require("node:assert/strict");
const { describe, it, before, after, afterEach } = require("node:test");
const { clientSet, once } = require("./lib/clients");
const { protocolTargets, startTarget } = require("./lib/targets");

const MAX_MS = 1500; // maxDisconnectionDuration of both servers
const BURST = 50;
/** A deliberate outage: the reconnection delay of the client whose transport is dropped. */
const OUTAGE_MS = 1000;
const T = { timeout: 10000 };

const MODES = [
	["default transports", {}],
	["websocket only", { transports: ["websocket"] }]
];

const { client, closeClients } = clientSet();

function ack(socket, event, ...args) {
	return socket.timeout(5000).emitWithAck(event, ...args);
}

/**
 * A client connected, in room `room`, that has received the server's `auth` event (so it holds
 * an offset: socket.io-client presents pid and offset only once it has one). Its `numbered`
 * events are collected in `socket.numbers`.
 */
async function joined(url, opts, room) {
	const socket = client(url, opts);
	socket.numbers = [];
	socket.on("numbered", n => socket.numbers.push(n));
	await once(socket, "auth");
	assert.equal(await ack(socket, "recovery:join", room), true);
	assert.deepEqual(await ack(socket, "recovery:rooms"), [room]);
	return socket;
}

/** Reconnects a socket whose session ended (manual reconnection) and resolves once connected. */
async function reconnect(socket) {
	const connectedAgain = once(socket, "connect");
	socket.connect();
	await connectedAgain;
}

const range = n => Array.from({ length: n }, (_, i) => i);

for (const name of protocolTargets()) {
	describe(`connection state recovery [${name}]`, () => {
		let target = null;
		let url = "";
		before(async () => {
			target = await startTarget(name, { args: ["--recovery", String(MAX_MS)] });
			url = target.url;
		});
		after(async () => {
			closeClients();
			if (target) await target.close();
		});
		afterEach(() => closeClients());

		for (const [mode, opts] of MODES) {
			it(`${mode}: the transport dropped while ${BURST} events flow to its room and to all -> recovered, same id, exactly the missed events in order, rooms kept`, T, async () => {
				const room = `room-${mode.replace(/ /g, "-")}`;
				const away = await joined(url, Object.assign({}, opts, {
					reconnection: true,
					reconnectionDelay: OUTAGE_MS,
					reconnectionDelayMax: OUTAGE_MS,
					randomizationFactor: 0
				}), room);
				const id = away.id;
				assert.equal(away.recovered, false);
				const sender = client(url, opts);
				await once(sender, "connect");

				let burstDone = false;
				let attemptedBeforeBurst = false;
				away.io.once("reconnect_attempt", () => {
					attemptedBeforeBurst = !burstDone;
				});
				const dropped = once(away, "disconnect");
				if (opts.transports) {
					// The network goes: the underlying WebSocket closes under the client.
					away.io.engine.transport.ws.close();
				} else {
					away.io.engine.close();
				}
				const [reason] = await dropped;
				assert.ok(["transport close", "forced close"].includes(reason), `disconnect reason ${reason}`);
				assert.equal(await ack(sender, "recovery:burst", { room, count: BURST }), BURST);
				burstDone = true;

				await once(away, "connect", 5000);
				assert.equal(attemptedBeforeBurst, false, "the client came back before the burst was sent");
				assert.equal(away.recovered, true, "socket.recovered");
				assert.equal(away.id, id, "the same socket id");
				// A round trip: whatever the server sent before its answer has arrived.
				assert.deepEqual(await ack(away, "recovery:rooms"), [room]);
				assert.deepEqual(away.numbers, range(BURST), "exactly the missed events, in order, once");
				// Recovered sockets go on receiving (their room included).
				assert.equal(await ack(sender, "recovery:burst", { room, count: 2 }), 2);
				await ack(away, "recovery:rooms");
				assert.deepEqual(away.numbers, range(BURST).concat([0, 1]));
			});

			it(`${mode}: the client's own disconnect() then connect() -> a new session`, T, async () => {
				const socket = await joined(url, opts, "own");
				const id = socket.id;
				socket.disconnect();
				await reconnect(socket);
				assert.equal(socket.recovered, false);
				assert.notEqual(socket.id, id);
				assert.deepEqual(await ack(socket, "recovery:rooms"), []);
			});

			it(`${mode}: a server disconnect is not recoverable`, T, async () => {
				const socket = await joined(url, opts, "server");
				const id = socket.id;
				const gone = once(socket, "disconnect");
				socket.emit("recovery:disconnect-me");
				assert.deepEqual((await gone)[0], "io server disconnect");
				await reconnect(socket);
				assert.equal(socket.recovered, false);
				assert.notEqual(socket.id, id);
				assert.deepEqual(await ack(socket, "recovery:rooms"), []);
			});
		}

		it("past maxDisconnectionDuration -> a new session, and the events are not replayed", T, async () => {
			const socket = await joined(url, {}, "late");
			const id = socket.id;
			const sender = client(url);
			await once(sender, "connect");
			const dropped = once(socket, "disconnect");
			socket.io.engine.close();
			await dropped;
			assert.equal(await ack(sender, "recovery:burst", { room: "late", count: 4 }), 4);
			// A deliberate outage longer than maxDisconnectionDuration.
			await new Promise(resolve => setTimeout(resolve, MAX_MS + 500));
			await reconnect(socket);
			assert.equal(socket.recovered, false);
			assert.notEqual(socket.id, id);
			await ack(socket, "recovery:rooms");
			assert.deepEqual(socket.numbers, []);
		});
	});
}
