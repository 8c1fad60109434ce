"use strict";
// The npm reference servers configured as spec §3.2 expects, in their own process so that they
// behave like the C++ target (own event loop, killed by PID, restartable on the same port):
//   /engine.io/  bare engine.io 6.6 server echoing every message (text stays text, binary binary);
//   /socket.io/  socket.io 4.8 test application: namespace "/" emits `auth` with the CONNECT
//                payload, re-emits `message` as `message-back`, answers `message-with-ack` with all
//                its arguments; namespace "/custom" emits `auth`; no other namespace.
// Both: pingInterval 300, pingTimeout 200, maxHttpBufferSize 1e6; socket.io connectTimeout 1000;
// CORS reflecting the Origin with credentials. The client bundle is served at /socket.io/socket.io.js.
// --recovery MS: connectionStateRecovery with maxDisconnectionDuration MS (as the C++ server's
// --recovery). Events of the recovery suite (recovery.test.js), as in app/sio_conformance_server.cpp:
// recovery:join (room, ack), recovery:rooms (ack), recovery:burst ({room, count}, ack: `numbered`
// 0..count-1, even numbers to the room, odd ones to all), recovery:disconnect-me.
// Usage: node reference-server.js [--port P] [--host H] [--recovery MS]; prints "listening on
// http://H:P" when ready.

const http = require("http");
const { attach } = require("engine.io");
const { Server } = require("socket.io");

function arg(name, fallback) {
	const i = process.argv.indexOf(name);
	return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const host = arg("--host", "127.0.0.1");
const port = Number(arg("--port", "0"));
const cors = { origin: true, credentials: true };
const timing = { pingInterval: 300, pingTimeout: 200, maxHttpBufferSize: 1e6 };

const server = http.createServer();

const engine = attach(server, Object.assign({ path: "/engine.io/", cors }, timing));
engine.on("connection", socket => {
	socket.on("message", data => socket.send(data));
});

const recoveryMs = arg("--recovery", null);
const recovery = recoveryMs
	? { connectionStateRecovery: { maxDisconnectionDuration: Number(recoveryMs), skipMiddlewares: true } }
	: {};
const io = new Server(
	server,
	Object.assign({ path: "/socket.io/", connectTimeout: 1000, cors }, timing, recovery)
);
io.on("connection", socket => {
	socket.emit("auth", socket.handshake.auth);
	socket.on("message", (...args) => socket.emit("message-back", ...args));
	socket.on("message-with-ack", (...args) => {
		const ack = args.pop();
		if (typeof ack === "function") ack(...args);
	});
	socket.on("recovery:join", (room, ack) => {
		if (typeof room !== "string") return;
		socket.join(room);
		if (typeof ack === "function") ack(true);
	});
	socket.on("recovery:rooms", ack => {
		if (typeof ack === "function") ack([...socket.rooms].filter(room => room !== socket.id));
	});
	socket.on("recovery:burst", (request, ack) => {
		if (!request || typeof request !== "object") return;
		const count = Math.max(0, Math.min(1000, Number(request.count) || 0));
		for (let i = 0; i < count; i++) {
			if (i % 2 === 0) io.to(String(request.room)).emit("numbered", i);
			else io.emit("numbered", i);
		}
		if (typeof ack === "function") ack(count);
	});
	socket.on("recovery:disconnect-me", () => socket.disconnect());
});
io.of("/custom").on("connection", socket => {
	socket.emit("auth", socket.handshake.auth);
});

server.listen(port, host, () => {
	const addr = server.address();
	process.stdout.write(`listening on http://${host}:${addr.port}\n`);
});

for (const sig of ["SIGTERM", "SIGINT"]) process.once(sig, () => process.exit(0));
