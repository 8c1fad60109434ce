"use strict";
// Issue 9, JSON nesting depth: a document nested 100,000 deep, from NATS or from a browser, is
// refused while it is parsed (kMaxPacketJsonDepth / kMaxBrowserJsonDepth, protocol/json.hpp);
// the node survives and keeps serving.
const { describe, test, before, after } = require("node:test");
const WebSocket = require("ws");
const { h, assert, startCluster, COOKIES } = require("./fixture");

const DEPTH = 100000;
const deepArrays = (n = DEPTH) => "[".repeat(n) + "]".repeat(n);
const deepObjects = (n = DEPTH) => '{"a":'.repeat(n) + "1" + "}".repeat(n);

describe("JSON nesting depth (issue 9)", () => {
	let cluster, sniffer;

	before(async () => {
		cluster = await startCluster();
		sniffer = await h.startSniffer(cluster.nats.url);
	});

	after(async () => {
		if (sniffer) await sniffer.close();
		if (cluster) await cluster.stop();
	});

	/** A client connects, gets an event through the node, and the node is still up. */
	async function stillServes() {
		assert.equal(cluster.node.running(), true, "the node survived");
		const s = await cluster.connect({ cookie: COOKIES.U1, transports: ["websocket"] });
		await cluster.barrier([s]);
		s.close();
	}

	test(`a 100,000-deep EVENT on ${h.BUS === "redis" ? "Redis" : "NATS"} is dropped, logged as invalid; the node keeps serving`, async () => {
		const subject = `${sniffer.prefix}.EVENT.${cluster.node.nodeID}`;
		// A real $socket.emit the node would deliver, were it not that deep.
		const head = '{"ver":"4","sender":"hostile","id":"x1","event":"$socket.emit","data":{"eventName":"deep","eventParams":';
		sniffer.publish(subject, head + deepArrays() + "}}");
		sniffer.publish(subject, head + deepObjects() + "}}");
		sniffer.publish(subject, "[".repeat(DEPTH)); // not even closed
		await sniffer.flush();
		const refused = /invalid packet on MOL\.EVENT\.\S+ from '\?': JSON nested deeper than \d+ levels/;
		await h.waitFor(() => cluster.node.logs.filter(l => refused.test(l.line)).length >= 3, 5000, { what: "3 refusals logged" });
		assert.equal((await cluster.stats()).limits.busJsonDepth, 3, "counted in socket.stats limits.busJsonDepth");
		await stillServes();
	});

	for (const [name, payload] of [
		["42[[[[... (bare)", "42" + deepArrays()],
		['42["x",[[[[...]', '42["x",' + deepArrays() + "]"],
		['42["x",{"a":{"a":...}', '42["x",' + deepObjects() + "]"]
	]) {
		test(`a browser sending ${name} 100,000 deep is closed as a parse error; the node keeps serving`, async () => {
			const ws = new WebSocket(`ws://127.0.0.1:${cluster.port}/socket.io/?EIO=4&transport=websocket`, {
				headers: { cookie: COOKIES.U1 }
			});
			const frames = [];
			const closed = new Promise(resolve => ws.on("close", (code, reason) => resolve({ code, reason: String(reason) })));
			ws.on("message", data => frames.push(String(data)));
			ws.on("error", () => {});
			await h.waitFor(() => frames.some(f => f[0] === "0"), 3000, { what: "Engine.IO open" });
			ws.send("40");
			await h.waitFor(() => frames.some(f => f.startsWith("40")), 5000, { what: "Socket.IO CONNECT reply" });
			const before = cluster.node.logs.length;
			const { malformed } = await cluster.stats();
			ws.send(payload);
			const close = await Promise.race([closed, h.sleep(3000).then(() => null)]);
			assert.ok(close, "the node closed the WebSocket");
			await h.waitFor(() => cluster.node.logs.slice(before).some(l => /closing Engine\.IO session: protocol violation .*reason="JSON nested too deeply"/.test(l.line)),
				2000, { what: "the refusal in the log" });
			assert.equal((await cluster.stats()).malformed, malformed + 1, "counted in socket.stats malformed");
			await stillServes();
		});
	}
});
