"use strict";
// gateway-contract.md §2.1, §2.6, §3, §5 with non-default configuration: anonymousRooms,
// individualRoomParts, metadataTypes, corsOrigins allow-list, auth.cacheTtl 0; and the balanced
// `$socket.subscribe.*` emit (one listener of the group gets it).
const { describe, it, before, after, afterEach } = require("node:test");
const fs = require("fs");
const { h, assert, startCluster, startGateway, failedToConnect, COOKIES, TRANSPORTS } = require("./fixture");

describe("steedos socket: configured gateway", () => {
	let c, second;
	before(async () => {
		c = await startCluster({
			extra: {
				gateway: {
					anonymousRooms: true,
					individualRoomParts: ["me"],
					metadataTypes: ["apps"],
					corsOrigins: ["http://ok.example"]
				},
				auth: { cacheTtl: 0 }
			}
		});
		second = await c.addListener();
	});
	after(async () => {
		if (c) await c.stop();
	});
	afterEach(async () => {
		if (c) await c.closeAll();
	});

	it("anonymousRooms: anonymous sockets join shared tenant rooms, never individual ones", async () => {
		const s = await c.connect({ cookie: "X-Space-Id=S1" });
		assert.deepEqual(await s.emitWithAck("subscribe", { roomParts: "space" }), { rooms: ["S1-space"] });
		assert.ok((await s.emitWithAck("subscribe", { roomParts: "me", individual: true })).error);
		c.producer.emit("$socket.emit", { eventName: "to-space", eventParams: 1, room: "S1-space" });
		assert.deepEqual(await c.received(s, "to-space"), [[1]]);
		s.close();
	});

	it("individualRoomParts is configurable", async () => {
		const s = await c.connect({ cookie: COOKIES.U1 });
		assert.ok((await s.emitWithAck("subscribe", { roomParts: "me-U2" })).error);
		assert.deepEqual(await s.emitWithAck("subscribe", { roomParts: "notification-change-U2" }), { rooms: ["S1-notification-change-U2"] });
		s.close();
	});

	it("metadataTypes is configurable", async () => {
		const s = await c.connect();
		c.producer.emit("$metadata.objects", { type: "objects", action: "updated", data: { _id: "o1", name: "x" } });
		c.producer.emit("$metadata.apps", { type: "apps", action: "updated", data: { _id: "a1", code: "crm" } });
		await c.barrier([s]);
		assert.deepEqual(c.got(s, "s:metadata:change"), [[{ type: "apps", action: "updated", _id: "a1", name: "crm" }]]);
		s.close();
	});

	it("auth.cacheTtl 0 disables the cache", async () => {
		const before = c.authCalls.filter(x => x === "S3,t-u3b").length;
		for (let i = 0; i < 2; i++) {
			const s = await c.connect({ cookie: COOKIES.U3B });
			assert.equal((await c.info(s)).userId, "U3");
			s.close();
		}
		assert.equal(c.authCalls.filter(x => x === "S3,t-u3b").length, before + 2);
	});

	it("corsOrigins allow-list: listed origin reflected with credentials, others refused on both transports", async () => {
		const url = `http://127.0.0.1:${c.port}/socket.io/?EIO=4&transport=polling`;
		const before = await c.stats();
		const ok = await fetch(url, { headers: { Origin: "http://ok.example" } });
		assert.equal(ok.status, 200);
		await ok.text();
		assert.equal(ok.headers.get("access-control-allow-origin"), "http://ok.example");
		assert.equal(ok.headers.get("access-control-allow-credentials"), "true");
		const pre = await fetch(url, { method: "OPTIONS", headers: { Origin: "http://ok.example", "Access-Control-Request-Method": "POST" } });
		assert.equal(pre.headers.get("access-control-allow-origin"), "http://ok.example");
		// Not listed: another site, and also the gateway's own site (the list replaces the rule).
		for (const origin of ["http://evil.example", "https://ok.example", "http://ok.example:8080", "http://127.0.0.1:3000"]) {
			const bad = await fetch(url, { headers: { Origin: origin, cookie: COOKIES.U1 } });
			assert.equal(bad.status, 403, origin);
			assert.deepEqual(await bad.json(), { code: 4, message: "Forbidden" });
			assert.equal(bad.headers.get("access-control-allow-origin"), null, origin);
			assert.equal(bad.headers.get("access-control-allow-credentials"), null, origin);
		}
		for (const t of TRANSPORTS) {
			const s = c.client({ transports: t.transports, extraHeaders: { origin: "http://evil.example" } });
			await failedToConnect(s, "error");
			s.close();
			(await c.connect({ transports: t.transports, extraHeaders: { origin: "http://ok.example" } })).close();
		}
		const after = await c.stats();
		assert.ok(after.refusedOrigins >= before.refusedOrigins + 7, JSON.stringify(after));
	});

	it("$socket.subscribe.* is a balanced emit: exactly one listener node gets each", async () => {
		c.subscribeEvents.length = 0;
		second.events.length = 0;
		const s = await c.connect({ cookie: COOKIES.U1 });
		for (let i = 0; i < 6; i++) await s.emitWithAck("subscribe", { roomParts: `bal${i}` });
		// Barrier per listener: markers until each listener got one. The node emits in order, so
		// a listener that has its marker has everything sent to it before.
		const mine = () => c.subscribeEvents.map(e => e.event);
		const secondEvents = () => second.events.map(e => e.event);
		const hasMarker = list => list.some(e => e.startsWith("$socket.subscribe.mark"));
		for (let i = 0; !(hasMarker(mine()) && hasMarker(secondEvents())); i++) {
			assert.ok(i < 40, "both listeners got a marker");
			await s.emitWithAck("subscribe", { roomParts: `mark${i}` });
			await h.waitFor(() => mine().concat(secondEvents()).includes(`$socket.subscribe.mark${i}`), 4000, { what: `mark${i}` });
		}
		const all = mine().concat(secondEvents()).filter(e => !e.startsWith("$socket.subscribe.mark")).sort();
		assert.deepEqual(all, [0, 1, 2, 3, 4, 5].map(i => `$socket.subscribe.bal${i}`), "each event exactly once");
	});

	it("64 roomParts are within the part limit (default maxRoomsPerSocket), 65 are not", async () => {
		const s = await c.connect({ cookie: COOKIES.U1 });
		const parts = Array.from({ length: 64 }, (_, i) => `q${i}`);
		assert.deepEqual(await s.emitWithAck("subscribe", { roomParts: parts }), { rooms: parts.map(p => `S1-${p}`) });
		assert.match((await s.emitWithAck("subscribe", { roomParts: parts.concat("q64") })).error, /roomParts/);
	});
});

// gateway.ioThreads (issue 11, "Every core"): the node starts the helper threads it is told to,
// and a broadcast to more clients than the parallel flush's minimum (64) reaches each client
// exactly once, on every transport, with 3 write threads on this 2-core machine.
describe("steedos socket: gateway.ioThreads", () => {
	let c;
	// The write threads besides the loop's own, by name (gateway/parallel_for.cpp names them).
	const writeThreadsOf = pid => fs.readdirSync(`/proc/${pid}/task`)
		.map(tid => fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim())
		.filter(name => /^ws-write-\d+$/.test(name)).sort();
	after(async () => {
		if (c) await c.stop();
	});

	it("3 write threads: two helper threads (none with 1), and a broadcast to 120 clients arrives once at each", async () => {
		c = await startCluster({ extra: { gateway: { ioThreads: 3 } }, logLevel: "info" });
		await c.node.waitForLog(/gateway\.ioThreads: 3 write thread\(s\)/, 5000);
		const single = await startGateway({ nats: c.nats, extra: { serviceName: "socket", gateway: { host: "127.0.0.1", port: 0, ioThreads: 1 } }, logLevel: "info" });
		try {
			await single.waitForLog(/gateway\.ioThreads: 1 write thread\(s\)/, 5000);
			assert.deepEqual(writeThreadsOf(c.node.pid), ["ws-write-1", "ws-write-2"]);
			assert.deepEqual(writeThreadsOf(single.pid), []);
		} finally {
			await h.stopCppNodes(single);
		}

		const users = [COOKIES.U1, COOKIES.U2, COOKIES.U3, COOKIES.U4, COOKIES.U5, COOKIES.U6S1];
		const sockets = [];
		for (let i = 0; i < 120; i += 20) { // in batches: many handshakes at once are slow on a busy machine
			sockets.push(...await Promise.all(Array.from({ length: 20 }, (_, k) =>
				c.connect({ cookie: users[(i + k) % users.length], transports: TRANSPORTS[(i + k) % TRANSPORTS.length].transports }))));
		}
		await c.barrier(sockets);
		for (let n = 0; n < 3; n++) c.producer.emit("$socket.emit", { eventName: "to-all", eventParams: n });
		for (const s of sockets) assert.deepEqual(await c.received(s, "to-all", 3), [[0], [1], [2]]);
		await c.barrier(sockets); // nothing more follows
		assert.ok(sockets.every(s => c.got(s, "to-all").length === 3));
	});
});
