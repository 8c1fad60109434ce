"use strict";
// A bus outage shorter than heartbeatTimeout with Socket.IO clients connected (issue 9, "Faults";
// bench/faults.sh --only nats measures the 30 s case with 1,000 clients): no client is dropped,
// the node announces itself again when the bus returns, and events flow again within 5 s of its
// return. Events emitted while the bus is down are lost (the producer's moleculer transporter
// discards a publish while disconnected); this file does not assert that, the README says it.
// Runs on NATS and on Redis (INTEROP_BUS).
const { describe, it, before, after } = require("node:test");
const { h, assert, startCluster, COOKIES, TRANSPORTS } = require("./fixture");

const CLIENTS = 100;
const OUTAGE_MS = 6000; // the outage itself; below the heartbeatTimeout (10 s) of this cluster
const HEARTBEATS = { heartbeatInterval: 2, heartbeatTimeout: 10 };

describe(`bus outage of ${OUTAGE_MS / 1000} s with ${CLIENTS} clients`, () => {
	let c;
	before(async () => {
		c = await startCluster({ logLevel: "info", broker: HEARTBEATS, extra: HEARTBEATS });
	});
	after(async () => {
		if (c) await c.stop();
	});

	it("no client dropped, the node re-announces itself, events flow within 5 s of the return", async () => {
		const users = [COOKIES.U1, COOKIES.U2, COOKIES.U3, COOKIES.U4, COOKIES.U5, COOKIES.U6S1];
		const sockets = [];
		for (let i = 0; i < CLIENTS; i += 20) { // in batches: 100 handshakes at once can take > 6 s on a busy machine
			sockets.push(...await Promise.all(Array.from({ length: Math.min(20, CLIENTS - i) }, (_, k) =>
				c.connect({ cookie: users[(i + k) % users.length], transports: TRANSPORTS[(i + k) % TRANSPORTS.length].transports }))));
		}
		await c.barrier(sockets);

		const announced = c.node.logs.length;
		await c.nats.stop();
		await h.sleep(OUTAGE_MS); // the outage, not a synchronisation
		await c.nats.restart();
		const back = Date.now();

		// A probe every 100 ms from the return on; done when one has reached every socket.
		let seq = 0;
		const ticker = setInterval(() => c.producer.emit("$socket.emit", { eventName: "probe", eventParams: seq++ }), 100);
		let flowing;
		try {
			flowing = await h.waitFor(() => {
				const first = Math.max(...sockets.map(s => {
					const got = c.got(s, "probe");
					return got.length ? got[0][0] : Infinity;
				}));
				return Number.isFinite(first) ? Date.now() : 0;
			}, 10000, { what: "a probe emitted after the return at every socket" });
		} finally {
			clearInterval(ticker);
		}
		const ms = flowing - back;
		assert.ok(ms < 5000, `events flow again ${ms} ms after the bus returned (limit 5000)`);
		assert.ok(c.node.logs.slice(announced).some(l => /connection restored; announcing the node again/.test(l.line)),
			"the node announced itself again after the outage");

		assert.deepEqual(sockets.filter(s => s.disconnects.length || !s.connected).map(s => s.disconnects), [], "no client dropped");
		assert.ok(sockets.every(s => s.connects === 1), "no client reconnected");
		await c.barrier(sockets); // and the path is whole: a marker reaches everyone again
	});
});
