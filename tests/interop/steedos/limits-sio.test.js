"use strict";
// Issue 9, the Socket.IO and service limits, each answered as the README's configuration table
// says and counted in socket.stats `limits`: gateway.maxAttachments, gateway.maxEventNameLength,
// gateway.maxSubscribesPerSecond, gateway.maxRoomsPerSocket, the attachment bytes of one packet
// (packetSize) and JSON nesting depth (jsonDepth). socket.io-client on WebSocket, one node.
const { describe, test, before, after } = require("node:test");
const { h, assert, startCluster, COOKIES } = require("./fixture");

const MAX_ATTACHMENTS = 2;
const SUBSCRIBES_PER_SECOND = 5;
const MAX_ROOMS = 3;

describe("Socket.IO and service limits (issue 9)", () => {
	let cluster;

	before(async () => {
		cluster = await startCluster({
			extra: {
				gateway: {
					maxAttachments: MAX_ATTACHMENTS,
					maxSubscribesPerSecond: SUBSCRIBES_PER_SECOND,
					maxRoomsPerSocket: MAX_ROOMS
				}
			}
		});
	});

	after(async () => {
		if (cluster) await cluster.stop();
	});

	const limits = async () => (await cluster.stats()).limits;
	const connect = () => cluster.connect({ cookie: COOKIES.U1, transports: ["websocket"] });
	/** Emits with an ack; resolves the ack's first argument (fails after `ms`). */
	const ask = (s, event, ...args) => s.timeout(3000).emitWithAck(event, ...args);

	/** The node closed `s` (its session: the client reports "transport close"). */
	async function closedByNode(s) {
		await h.waitFor(() => s.disconnects.length > 0, 4000, { what: "the node closes the session" });
		assert.deepEqual(s.disconnects, ["transport close"]);
	}

	test(`gateway.maxAttachments ${MAX_ATTACHMENTS}: ${MAX_ATTACHMENTS} pass, ${MAX_ATTACHMENTS + 1} close the session as a parse error`, async () => {
		const before = await cluster.stats();
		const s = await connect();
		s.emit("upload", Buffer.from("a"), Buffer.from("b"));
		await cluster.barrier([s]); // the node read and accepted the 2-attachment packet
		assert.deepEqual(s.disconnects, []);
		s.emit("upload", Buffer.from("a"), Buffer.from("b"), Buffer.from("c"));
		await closedByNode(s);
		const after = await cluster.stats();
		assert.equal(after.limits.attachments, before.limits.attachments + 1);
		assert.equal(after.malformed, before.malformed + 1, "a protocol violation like any other");
		assert.ok(cluster.node.logs.some(l => /closing Engine\.IO session: protocol violation .*reason="too many attachments"/.test(l.line)));
	});

	test("attachment bytes over the bound of one packet close the session (packetSize)", async () => {
		const before = await limits();
		const s = await connect();
		// Each message is under maxHttpBufferSize (1 MB); together they are over the 1 MB a
		// binary packet may buffer.
		s.emit("upload", Buffer.alloc(600000, 1), Buffer.alloc(600000, 2));
		await closedByNode(s);
		assert.equal((await limits()).packetSize, before.packetSize + 1);
		assert.ok(cluster.node.logs.some(l => /closing Engine\.IO session: protocol violation .*reason="binary attachments too large"/.test(l.line)));
	});

	test("JSON nested too deeply closes the session (jsonDepth)", async () => {
		const before = await limits();
		const s = await connect();
		let deep = 1;
		for (let i = 0; i < 2000; i++) deep = [deep];
		s.emit("deep", deep);
		await closedByNode(s);
		assert.equal((await limits()).jsonDepth, before.jsonDepth + 1);
	});

	test("gateway.maxEventNameLength 256 bytes: a longer event is dropped, its ack carries an error, the socket stays", async () => {
		const before = await limits();
		const s = await connect();
		// 256 bytes pass (no handler: no ack; the barrier shows the socket is still served).
		s.emit("e".repeat(256), 1);
		const long = await ask(s, "e".repeat(257), 1);
		assert.deepEqual(long, { error: "event name longer than 256 bytes" });
		// Bytes, not characters: 129 x "é" is 258 bytes.
		assert.deepEqual(await ask(s, "é".repeat(129)), { error: "event name longer than 256 bytes" });
		s.emit("x".repeat(100000)); // no ack asked: silently dropped
		await cluster.barrier([s]);
		assert.deepEqual(s.disconnects, [], "not a reason to close the session");
		assert.deepEqual(await ask(s, "subscribe", { roomParts: "after-long-name" }), { rooms: ["S1-after-long-name"] });
		assert.equal((await limits()).eventName, before.eventName + 3);
	});

	test(`gateway.maxSubscribesPerSecond ${SUBSCRIBES_PER_SECOND}: a burst over it is refused as rate limited, per socket`, async () => {
		const before = await limits();
		const s = await connect();
		const other = await connect();
		const answers = await Promise.all(Array.from({ length: SUBSCRIBES_PER_SECOND + 3 }, (_, i) =>
			ask(s, i % 2 ? "unsubscribe" : "subscribe", { roomParts: `r${i}` })));
		const refused = answers.filter(a => a.error);
		assert.equal(answers.length - refused.length, SUBSCRIBES_PER_SECOND, JSON.stringify(answers));
		assert.equal(refused.length, 3);
		for (const a of refused) {
			assert.deepEqual(a, { error: `rate limited: more than ${SUBSCRIBES_PER_SECOND} subscribe/unsubscribe requests per second` });
		}
		// Another socket has its own budget.
		assert.deepEqual(await ask(other, "subscribe", { roomParts: "mine" }), { rooms: ["S1-mine"] });
		assert.equal((await limits()).subscribeRate, before.subscribeRate + 3);
		// The bucket refills at the rate: one token every 1/5 s.
		const start = Date.now();
		await h.waitFor(async () => !(await ask(s, "unsubscribe", { roomParts: "r0" })).error, 3000, { interval: 50, what: "a token again" });
		const waited = Date.now() - start;
		console.log(`subscribe rate: accepted again ${waited} ms after the refused burst (one token per ${1000 / SUBSCRIBES_PER_SECOND} ms)`);
		assert.ok(waited <= 1500, `${waited} ms`);
		assert.deepEqual(s.disconnects, []);
	});

	test(`gateway.maxRoomsPerSocket ${MAX_ROOMS}: a subscribe past it is refused and counted (roomsPerSocket)`, async () => {
		const before = await limits();
		const s = await connect();
		const refused = await ask(s, "subscribe", { roomParts: ["a", "b", "c", "d"] });
		assert.ok(refused.error, JSON.stringify(refused));
		assert.deepEqual(await ask(s, "subscribe", { roomParts: ["a", "b", "c"] }), { rooms: ["S1-a", "S1-b", "S1-c"] });
		assert.ok((await ask(s, "subscribe", { roomParts: "d" })).error);
		assert.equal((await limits()).roomsPerSocket, before.roomsPerSocket + 2);
	});
});
