"use strict";
// Issue 9, "Secrets": the Steedos scenarios run against two gateway nodes at logLevel "trace";
// then every log line those nodes wrote is searched for every token and every full Cookie /
// Authorization header value used: 0 hits. Credentials by every path (X-Space-Id/X-Auth-Token
// cookies, the CONNECT auth payload, Authorization: Bearer), valid, invalid and revoked tokens,
// subscribe, event delivery, $user.logout, socket.disconnect by userId, socket.clients.
// (The bus here has no password; were there one, it would be in `secrets` too.)
const crypto = require("crypto");
const { describe, test, before, after } = require("node:test");
const { h, assert, startCluster, failedToConnect, cookie, login } = require("./fixture");

describe("secrets never reach the log (issue 9)", () => {
	let cluster;
	const secrets = new Set(); // every token and full header value a client sent
	const used = value => (secrets.add(value), value);

	before(async () => {
		cluster = await startCluster({ gateways: 2, logLevel: "trace" });
	});

	after(async () => {
		if (cluster) await cluster.stop();
	});

	/** A login of `user` in `space`, its token and cookie recorded as secrets. */
	function credentials(user, space) {
		const { token, cookies } = login(user, space);
		used(token);
		return { token, cookie: used(cookies[0]), bearer: used(`${space},${token}`) };
	}
	const bogus = () => used(`t-bogus-${crypto.randomBytes(9).toString("hex")}`);

	test("the scenarios, on both nodes and both transports", async () => {
		for (const transports of [["websocket"], ["polling"]]) {
			for (const gateway of [0, 1]) {
				// Valid, by each path.
				const a = credentials("U1", "S1");
				const byCookie = await cluster.connect({ cookie: a.cookie, transports, gateway });
				const b = credentials("U2", "S2");
				const byAuth = await cluster.connect({ auth: { spaceId: "S2", token: b.token }, transports, gateway });
				const c = credentials("U4", "S1");
				const byBearer = await cluster.connect({ bearer: c.bearer, transports, gateway });
				// Subscribe, and events delivered to the rooms and to everybody.
				for (const s of [byCookie, byAuth, byBearer]) {
					const reply = await s.emitWithAck("subscribe", { roomParts: ["space", "record:orders:change-1"] });
					assert.ok(Array.isArray(reply.rooms), JSON.stringify(reply));
				}
				await cluster.barrier([byCookie, byAuth, byBearer]);
				await cluster.barrier([byCookie, byAuth, byBearer], "broadcast");
				const clients = await cluster.producer.call("socket.clients", {}, { nodeID: cluster.nodes[gateway].nodeID });
				assert.ok(clients.length >= 3);

				// Unknown tokens, by each path: anonymous connections (contract §2).
				await cluster.connect({ cookie: used(cookie("S1", bogus())), transports, gateway });
				await cluster.connect({ auth: { spaceId: "S1", token: bogus() }, transports, gateway });
				await cluster.connect({ bearer: used(`S1,${bogus()}`), transports, gateway });
				// A failing auth service: fail closed (the error path logs the most).
				used("fail-500");
				await failedToConnect(cluster.client({ cookie: used(cookie("S1", "fail-500")), transports, gateway }));

				// Revoked: $user.logout closes the live socket; the token is anonymous after.
				cluster.revoke(a.token);
				await h.waitFor(() => byCookie.disconnects.length > 0, 4000, { what: "logout closes the socket" });
				assert.equal((await cluster.info(await cluster.connect({ cookie: a.cookie, transports, gateway }))).anonymous, true);

				// socket.disconnect by userId, on every node.
				for (const node of cluster.nodes) {
					await cluster.producer.call("socket.disconnect", { userId: "U2" }, { nodeID: node.nodeID, timeout: 5000 });
				}
				await h.waitFor(() => byAuth.disconnects.length > 0, 4000, { what: "socket.disconnect by userId" });
				cluster.revoke(c.token);
				await h.waitFor(() => byBearer.disconnects.length > 0, 4000, { what: "logout of the Bearer socket" });
				await cluster.closeAll();
			}
		}

		// The log is not empty talk: each node logged, at debug level, the sessions, the logouts and
		// the auth failures of these very clients, so a leaking line would have been there to find.
		// (The product has no trace-level statements today: "trace" logs what "debug" does.)
		for (const node of cluster.nodes) {
			const text = node.logText();
			if (process.env.DUMP_LOGS) require("fs").writeFileSync(`${process.env.DUMP_LOGS}/${node.nodeID}.log`, text);
			assert.ok(node.logs.length > 20, `${node.nodeID}: only ${node.logs.length} log lines`);
			assert.ok((text.match(/ debug gateway: session opened sid=\S+ transport=\w+ address=\S+/g) || []).length >= 10, `${node.nodeID}: sessions not logged`);
			assert.match(text, / info {2}socket: logout: 1 cached session/, `${node.nodeID}: no logout line`);
			assert.match(text, /authentication failed/, `${node.nodeID}: no auth failure line`);
		}
		assert.ok(secrets.size >= 30, `only ${secrets.size} secrets used`);

		const hits = [];
		for (const node of cluster.nodes) {
			for (const { line } of node.logs) {
				for (const secret of secrets) if (line.includes(secret)) hits.push(`${node.nodeID}: '${secret}' in: ${line}`);
			}
		}
		assert.deepEqual(hits, [], "secrets in the log");
		// The search itself works: a line holding a token would be found.
		assert.ok([...secrets].some(secret => `x ${secret} y`.includes(secret)));
	});
});
