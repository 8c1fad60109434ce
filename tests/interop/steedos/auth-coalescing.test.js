"use strict";
// Issue 9, auth calls under load: the sockets of one (spaceId, token) connecting at once share
// one call to the auth service (measured before: 50 tokens on 10,000 clients made 100-219
// calls), and auth.maxInFlight bounds the distinct calls in flight: over it a connect is closed
// like an auth failure (retryable), counted in socket.stats limits.authInFlight, and logged once
// per episode. The calls are counted where they arrive: in the mock auth service.
const { describe, test, before, after } = require("node:test");
const { h, assert, startCluster, failedToConnect, login } = require("./fixture");

/** Opens `count` clients with `cookie` at once; resolves when all got connection-init. */
async function connectAtOnce(cluster, cookie, count) {
	const sockets = Array.from({ length: count }, (_, i) =>
		cluster.client({ cookie, transports: i % 2 ? ["websocket"] : ["polling", "websocket"] }));
	await h.waitFor(() => {
		const refused = sockets.find(s => s.disconnects.length || s.connectErrors.length);
		if (refused) {
			// The node's own account of the refusal (e.g. the auth call timed out).
			console.log(cluster.node.logs.filter(l => /warn|error/.test(l.line)).slice(-5).map(l => l.line).join("\n"));
			throw new Error(`a client was refused: ${refused.disconnects} ${refused.connectErrors}`);
		}
		return sockets.every(s => s.events.some(e => e.event === "connection-init"));
	}, 15000, { what: `${count} clients connected` });
	return sockets;
}

describe("auth coalescing (issue 9)", () => {
	let cluster;

	before(async () => {
		// The calls are answered by the mock in this process, which is busy opening 100 clients at
		// once: auth.timeout at its default (5 s), not the fixture's 1 s.
		cluster = await startCluster({ extra: { auth: { timeout: 5000 } } });
	});

	after(async () => {
		if (cluster) await cluster.stop();
	});

	test("100 sockets of one user connecting at once: exactly 1 auth call", async () => {
		const { token, cookies } = login("U1", "S1");
		const before = (await cluster.stats()).auth.calls;
		const started = Date.now();
		await connectAtOnce(cluster, cookies[0], 100);
		const calls = cluster.authCalls.filter(a => a === `S1,${token}`).length;
		console.log(`coalescing: 100 sockets of one token connected in ${Date.now() - started} ms with ${calls} auth call(s)`);
		assert.equal(calls, 1, "the mock auth service saw one call");
		assert.equal((await cluster.stats()).auth.calls - before, 1, "the node counted one call");
		await cluster.closeAll();
	});

	test("20 users x 10 sockets at once: exactly 20 auth calls, one per token", async () => {
		const users = Array.from({ length: 20 }, (_, i) => login(`UC${i}`, "S1"));
		const started = Date.now();
		await Promise.all(users.map(u => connectAtOnce(cluster, u.cookies[0], 10)));
		const tokens = new Set(users.map(u => `S1,${u.token}`));
		const calls = cluster.authCalls.filter(a => tokens.has(a));
		console.log(`coalescing: 200 sockets of 20 tokens connected in ${Date.now() - started} ms with ${calls.length} auth calls`);
		assert.equal(calls.length, 20);
		assert.equal(new Set(calls).size, 20);
		await cluster.closeAll();
	});
});

describe("auth.maxInFlight (issue 9)", () => {
	const MAX = 2;
	let cluster;

	before(async () => {
		cluster = await startCluster({ extra: { auth: { maxInFlight: MAX, timeout: 1000 } } });
	});

	after(async () => {
		if (cluster) await cluster.stop();
	});

	test(`over ${MAX} distinct calls in flight a connect is closed at once (retryable), counted, logged once`, async () => {
		const episode = /auth\.maxInFlight: \d+ auth calls in flight/;
		const episodes = () => cluster.node.logs.filter(l => episode.test(l.line)).length;
		const before = await cluster.stats();
		cluster.authFault.mode = "hang";
		// Two tokens fill the limit; more sockets of those tokens join their calls.
		const [a, b] = [login("U1", "S1"), login("U4", "S1")];
		const waiting = [a, a, b, b, b].map(u => cluster.client({ cookie: u.cookies[0], transports: ["websocket"] }));
		await h.waitFor(() => cluster.authCalls.filter(x => x.endsWith(a.token) || x.endsWith(b.token)).length === 2,
			3000, { what: "two calls in flight" });
		// Five more users: each would be a third call.
		const started = Date.now();
		const refused = Array.from({ length: 5 }, (_, i) => cluster.client({ cookie: login(`UX${i}`, "S1").cookies[0], transports: ["websocket"] }));
		for (const s of refused) await failedToConnect(s);
		const refusedIn = Date.now() - started;
		console.log(`auth.maxInFlight ${MAX}: 5 connects over the limit closed within ${refusedIn} ms (auth.timeout 1000 ms)`);
		assert.ok(refusedIn < 1000, `closed at once, not at the timeout: ${refusedIn} ms`);
		assert.equal(waiting.filter(s => s.disconnects.length).length, 0, "the sockets in flight still wait");
		const stats = await cluster.stats();
		assert.equal(stats.limits.authInFlight - before.limits.authInFlight, 5);
		assert.equal(stats.auth.calls - before.auth.calls, 2, "no call was made for the refused ones");
		assert.equal(episodes(), 1, "one log line for the episode, not one per socket");

		// The hanging calls time out (fail closed), the episode ends, and the service is back.
		for (const s of waiting) await failedToConnect(s);
		await h.waitFor(() => cluster.node.logs.some(l => /auth\.maxInFlight: auth calls in flight back to half the limit; 5 connection/.test(l.line)),
			3000, { what: "the end of the episode logged" });
		cluster.authFault.mode = null;
		await cluster.connect({ cookie: login("U1", "S1").cookies[0] });
		assert.equal(episodes(), 1);
	});
});
