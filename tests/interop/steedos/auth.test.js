"use strict";
// gateway-contract.md §2, §4, §9 (authentication): connection-init, ping/pong, credential
// precedence, cache, anonymous fallbacks and fail-closed auth failures.
const { describe, it, before, after, afterEach } = require("node:test");
const { h, assert, startCluster, startGateway, gatewayPort, failedToConnect, ISO_MS, COOKIES, TRANSPORTS } = require("./fixture");

describe("steedos socket: connection and authentication", () => {
	let c;
	before(async () => {
		c = await startCluster();
	});
	after(async () => {
		if (c) await c.stop();
	});
	afterEach(async () => {
		if (c) await c.closeAll();
	});

	// Every transport (issue 16): the connect outcomes run once per entry of the fixture's list;
	// tests that mix transports on purpose (precedence, cache) or are transport-specific stay single.
	for (const t of TRANSPORTS) {
		it(`connection-init once with no arguments, anonymous and authenticated (${t.name})`, async () => {
			const anon = await c.connect({ transports: t.transports });
			const user = await c.connect({ transports: t.transports, cookie: COOKIES.U1 });
			await c.barrier([anon, user]);
			for (const s of [anon, user]) {
				const inits = c.got(s, "connection-init");
				assert.deepEqual(inits, [[]], "exactly one connection-init without arguments");
				assert.equal(s.events[0].event, "connection-init", "connection-init is the first event");
			}
			const ia = await c.info(anon);
			assert.equal(ia.anonymous, true);
			assert.equal(ia.userId, null);
			assert.equal(ia.tenantId, null);
			const iu = await c.info(user);
			assert.equal(iu.anonymous, false);
			assert.equal(iu.userId, "U1");
			assert.equal(iu.tenantId, "S1");
			anon.close();
			user.close();
		});

		it(`ping -> pong with an ISO-8601 UTC ms string (${t.name})`, async () => {
			for (const opts of [{}, { cookie: COOKIES.U1 }]) {
				const s = await c.connect(Object.assign({ transports: t.transports }, opts));
				const before = Date.now();
				s.emit("ping", { any: "thing" });
				const [args] = await c.received(s, "pong");
				assert.equal(args.length, 1);
				assert.equal(typeof args[0], "string");
				assert.match(args[0], ISO_MS);
				const at = Date.parse(args[0]);
				assert.ok(Math.abs(at - before) < 5000, `pong time ${args[0]} close to now`);
				s.emit("ping");
				await c.received(s, "pong", 2);
				s.close();
			}
		});
	}

	for (const t of TRANSPORTS) {
		it(`anonymous without credentials keeps the X-Space-Id cookie as tenant (${t.name})`, async () => {
			const s = await c.connect({ transports: t.transports, cookie: "X-Space-Id=S1" });
			const i = await c.info(s);
			assert.equal(i.anonymous, true);
			assert.equal(i.tenantId, "S1");
			s.close();
		});
	}

	for (const t of TRANSPORTS) {
		it(`cookie parsing: quotes, %-decoding, first occurrence wins, names case-sensitive (${t.name})`, async () => {
			const cases = [
				['X-Space-Id="S1"; X-Auth-Token=t%2Du1', "U1", "S1"],
				["X-Auth-Token=t-u1;X-Space-Id=S1;  X-Auth-Token=t-u2; X-Space-Id=S2", "U1", "S1"],
				["x-space-id=S1; x-auth-token=t-u1", null, null],
				["X-Space-Id=S1; X-Auth-Token=t-u1%ZZ", null, "S1"]
			];
			for (const [cookie, userId, tenant] of cases) {
				const s = await c.connect({ transports: t.transports, cookie });
				const i = await c.info(s);
				assert.equal(i.userId, userId, cookie);
				assert.equal(i.tenantId, tenant, cookie);
				s.close();
			}
		});
	}

	it("path /socket.io without the trailing slash; CORS reflects an Origin of the gateway's site with credentials", async () => {
		// Raw HTTP: socket.io-client would add the trailing slash back. Handshake, CONNECT and the
		// first poll all on /socket.io (no slash), authenticated by the cookie.
		const base = `http://127.0.0.1:${c.port}/socket.io?EIO=4&transport=polling`;
		const cookie = COOKIES.U1;
		const open = await fetch(base, { headers: { cookie } });
		assert.equal(open.status, 200);
		const openText = await open.text();
		assert.match(openText, /^0\{/);
		const { sid } = JSON.parse(openText.slice(1));
		const post = await fetch(`${base}&sid=${sid}`, { method: "POST", body: "40", headers: { cookie } });
		assert.equal(post.status, 200);
		await post.text();
		const polled = await (await fetch(`${base}&sid=${sid}`, { headers: { cookie } })).text();
		const connect = /^40(\{[^\x1e]*\})/.exec(polled);
		assert.ok(connect, `CONNECT reply on /socket.io: ${polled}`);
		const id = JSON.parse(connect[1]).sid;
		const entry = (await c.call("clients")).find(x => x.id === id);
		assert.equal(entry && entry.userId, "U1");
		await (await fetch(`${base}&sid=${sid}`, { method: "POST", body: "1" })).text();
		// The gateway is reached as 127.0.0.1: a page on another port of that address is its site
		// (other sites are refused: origins.test.js).
		const origin = "http://127.0.0.1:3000";
		const res = await fetch(`http://127.0.0.1:${c.port}/socket.io?EIO=4&transport=polling`, { headers: { Origin: origin } });
		assert.equal(res.status, 200);
		assert.equal(res.headers.get("access-control-allow-origin"), origin);
		assert.equal(res.headers.get("access-control-allow-credentials"), "true");
		await res.text();
		const pre = await fetch(`http://127.0.0.1:${c.port}/socket.io/?EIO=4&transport=polling`, { method: "OPTIONS", headers: { Origin: origin, "Access-Control-Request-Method": "POST" } });
		assert.ok(pre.status === 204 || pre.status === 200, String(pre.status));
		assert.equal(pre.headers.get("access-control-allow-origin"), origin);
		assert.equal(pre.headers.get("access-control-allow-credentials"), "true");
	});

	it("precedence: cookie > auth payload > Bearer", async () => {
		const a = await c.connect({ cookie: COOKIES.U1, auth: { spaceId: "S2", token: "t-u2" }, bearer: "S2,t-u2" });
		assert.equal((await c.info(a)).userId, "U1");
		const b = await c.connect({ auth: { spaceId: "S2", token: "t-u2" }, bearer: "S1,t-u1" });
		const ib = await c.info(b);
		assert.equal(ib.userId, "U2");
		assert.equal(ib.tenantId, "S2");
		const d = await c.connect({ bearer: "S1,t-u1" });
		assert.equal((await c.info(d)).userId, "U1");
		// the cookie pair counts only when both cookies are non-empty
		const e = await c.connect({ cookie: "X-Space-Id=S1; X-Auth-Token=", auth: { spaceId: "S2", token: "t-u2" } });
		assert.equal((await c.info(e)).userId, "U2");
		// websocket-only: headers and auth payload on the ws handshake
		const f = await c.connect({ transports: ["websocket"], cookie: COOKIES.U2, bearer: "S1,t-u1" });
		assert.equal((await c.info(f)).userId, "U2");
		const g = await c.connect({ transports: ["websocket"], auth: { spaceId: "S1", token: "t-u1" } });
		assert.equal((await c.info(g)).userId, "U1");
		for (const s of [a, b, d, e, f, g]) s.close();
	});

	it("successful lookups are cached: a second connect does not call the auth service", async () => {
		const before = c.authCalls.filter(x => x === "S3,t-u3").length;
		const a = await c.connect({ cookie: COOKIES.U3 });
		assert.equal((await c.info(a)).userId, "U3");
		const b = await c.connect({ transports: ["websocket"], auth: { spaceId: "S3", token: "t-u3" } });
		assert.equal((await c.info(b)).userId, "U3");
		assert.equal(c.authCalls.filter(x => x === "S3,t-u3").length - before, 1);
		a.close();
		b.close();
	});

	for (const t of TRANSPORTS) {
		it(`unknown token, non-member space and a 401 error are anonymous (not cached) (${t.name})`, async () => {
			for (const [cookie, tenant] of [
				["X-Space-Id=S1; X-Auth-Token=nobody", "S1"],
				["X-Space-Id=S2; X-Auth-Token=t-u1", "S2"],
				["X-Space-Id=S1; X-Auth-Token=fail-401", "S1"]
			]) {
				const calls = c.authCalls.length;
				const s = await c.connect({ transports: t.transports, cookie });
				assert.deepEqual(c.got(s, "connection-init"), [[]]);
				const i = await c.info(s);
				assert.equal(i.anonymous, true, cookie);
				assert.equal(i.userId, null);
				assert.equal(i.tenantId, tenant);
				assert.equal(c.authCalls.length, calls + 1, "one auth call");
				s.close();
				const again = await c.connect({ transports: t.transports, cookie });
				assert.equal(c.authCalls.length, calls + 2, "anonymous results are not cached");
				again.close();
			}
		});
	}

	for (const t of TRANSPORTS) {
		it(`auth failures close the connection before CONNECT: hang, 500, garbage (${t.name})`, async () => {
			for (const token of ["fail-hang", "fail-500", "fail-garbage"]) {
				const before = (await c.stats()).auth.failures;
				const warnings = c.node.logs.filter(l => /authentication failed/.test(l.line)).length;
				const s = c.client({ transports: t.transports, cookie: `X-Space-Id=S1; X-Auth-Token=${token}` });
				await failedToConnect(s);
				assert.equal((await c.stats()).auth.failures, before + 1, token);
				assert.equal(c.node.logs.filter(l => /authentication failed/.test(l.line)).length, warnings + 1, "one warning");
				s.close();
			}
			// the node is alive and still serves good tokens
			const ok = await c.connect({ transports: t.transports, cookie: COOKIES.U1 });
			ok.close();
		});
	}

	it("fast auth failure during the polling -> websocket upgrade still closes the client", async () => {
		// The default transports probe WebSocket as soon as the polling handshake is open, while
		// the CONNECT (and so the auth call) is under way. A run "hit the window" when the close
		// for the auth failure reached the client while the probe WebSocket was open and the
		// upgrade not finished (engine.io-client: probe transport open, no "upgrade" yet).
		const RUNS = 20;
		let hits = 0;
		const seen = [];
		for (let i = 0; i < RUNS; i++) {
			const s = c.client({ cookie: "X-Space-Id=S1; X-Auth-Token=fail-500" });
			const engine = s.io.engine;
			const state = { probeOpen: false, upgraded: false, atClose: null };
			const create = engine.createTransport.bind(engine);
			engine.createTransport = name => {
				const transport = create(name);
				if (name === "websocket") transport.once("open", () => (state.probeOpen = true));
				return transport;
			};
			engine.on("upgrade", () => (state.upgraded = true));
			engine.on("close", () => (state.atClose = { probeOpen: state.probeOpen, upgraded: state.upgraded }));
			await failedToConnect(s);
			await h.waitFor(() => state.atClose, 4000, { what: "engine close" });
			if (state.atClose.probeOpen && !state.atClose.upgraded) hits++;
			seen.push(state.atClose);
			s.close();
		}
		assert.ok(hits >= 1, `no run closed while the upgrade was in progress: ${JSON.stringify(seen)}`);
	});

	it("tokens never appear in the node's log (debug level)", async () => {
		// Self-contained: the log must hold the lookups, successes, failures and cache hits of
		// these tokens, whatever else ran before.
		const start = c.node.logs.length;
		for (const cookie of [COOKIES.U1, COOKIES.U2, COOKIES.U3]) {
			(await c.connect({ cookie })).close();
			(await c.connect({ transports: ["websocket"], cookie })).close();
		}
		for (const token of ["fail-500", "fail-hang"]) await failedToConnect(c.client({ cookie: `X-Space-Id=S1; X-Auth-Token=${token}` }));
		(await c.connect({ bearer: "S1,t-u1" })).close();
		const text = c.node.logs.slice(start).map(l => l.line).join("\n");
		assert.match(text, /authentication failed/, "the failures were logged");
		for (const token of ["t-u1", "t-u2", "t-u3", "fail-500", "fail-hang", "S1,t-u1"]) {
			assert.equal(text.includes(token), false, `log contains ${token}`);
		}
	});

	it("no node offers the auth action: fail closed", async () => {
		const other = await startGateway({
			nats: c.nats,
			logLevel: "debug",
			extra: { auth: { timeout: 1000, action: "nobody-offers.getUserSession" } }
		});
		try {
			const port = await gatewayPort(other);
			await h.waitForRemoteNode(c.producer, other.nodeID, ["socket.stats"], 10000);
			for (const t of TRANSPORTS) {
				const s = c.client({ port, transports: t.transports, cookie: COOKIES.U1 });
				await failedToConnect(s);
				assert.deepEqual(s.events, [], t.name);
			}
			const stats = await c.producer.call("socket.stats", {}, { nodeID: other.nodeID });
			assert.equal(stats.auth.failures, TRANSPORTS.length);
			// anonymous connections still work there
			await c.connect({ port });
		} finally {
			await h.stopCppNodes(other);
		}
	});
});
