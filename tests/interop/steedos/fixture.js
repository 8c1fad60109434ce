"use strict";
// Shared fixture for the Steedos `socket` contract tests (gateway-contract.md §2-§6, §9): one
// nats-server, one steedos-socket node, a Moleculer 0.14 broker with a mock auth service and a
// producer broker with a `$socket.subscribe.**` listener; socket.io-client helpers.
const assert = require("node:assert/strict");
const h = require("../lib/harness");
const { io } = require("socket.io-client");

const AUTH_ACTION = "@steedos/service-accounts.getUserSession";

// "<spaceId>,<token>" -> reply. Tokens named fail-* make the mock misbehave (any space).
// The users who could leak (issue 16 item 4): two users in each tenant (U1 and U4 in S1, U2 and
// U5 in S2), U6 signed in to both S1 and S2 with one token, U3 alone in S3; tokens that a test
// revokes come from login() (REVOKED, cluster.revoke).
const SESSIONS = {
	"S1,t-u1": { userId: "U1", spaceId: "S1", name: "Ann" },
	"S1,t-u1b": { userId: "U1", spaceId: "S1", name: "Ann" },
	"S1,t-u4": { userId: "U4", spaceId: "S1" },
	"S2,t-u2": { userId: "U2", spaceId: "S2" },
	"S2,t-u5": { userId: "U5", spaceId: "S2" },
	"S1,t-u6": { userId: "U6", spaceId: "S1" },
	"S2,t-u6": { userId: "U6", spaceId: "S2" },
	"S2,t-u1": { userId: "U1", spaceId: "S1" }, // U1 is not a member of S2
	"S3,t-u3": { userId: "U3", spaceId: "S3" },
	"S3,t-u3b": { userId: "U3", spaceId: "S3" }
};

// Tokens the mock no longer accepts (answers null for, in any space): a revoked login, as the
// Steedos accounts service after a logout. Per test process.
const REVOKED = new Set();

/** The Steedos cookie pair of a user: `X-Space-Id=<space>; X-Auth-Token=<token>`. */
const cookie = (space, token) => `X-Space-Id=${space}; X-Auth-Token=${token}`;

let logins = 0;
/**
 * A new login of `userId` valid in each of `spaces` (one token, as a Steedos login token is not
 * tied to a space), for a test that revokes it. Returns { token, cookies: one per space }.
 */
function login(userId, ...spaces) {
	const token = `t-${userId.toLowerCase()}-login${++logins}`;
	for (const space of spaces) SESSIONS[`${space},${token}`] = { userId, spaceId: space };
	return { token, cookies: spaces.map(space => cookie(space, token)) };
}

// The cookies of the SESSIONS above, by the name the tests give the socket.
const COOKIES = Object.freeze({
	U1: cookie("S1", "t-u1"),
	U1B: cookie("S1", "t-u1b"), // U1 again, another login
	U4: cookie("S1", "t-u4"),
	U2: cookie("S2", "t-u2"),
	U5: cookie("S2", "t-u5"),
	U6S1: cookie("S1", "t-u6"), // U6 in S1 ...
	U6S2: cookie("S2", "t-u6"), // ... and in S2, same token
	U3: cookie("S3", "t-u3"),
	U3B: cookie("S3", "t-u3b")
});

function authReply(authorization) {
	const { Errors } = require("moleculer");
	const token = String(authorization).split(",").slice(1).join(",");
	switch (token) {
		case "fail-hang":
			return new Promise(() => {});
		case "fail-500":
			throw new Errors.MoleculerError("database down", 500, "SERVICE_ERROR");
		case "fail-401":
			throw new Errors.MoleculerError("bad token", 401, "SOME_AUTH_ERROR");
		case "fail-garbage":
			return "garbage";
		default:
			if (REVOKED.has(token)) return null;
			return Object.prototype.hasOwnProperty.call(SESSIONS, authorization)
				? Object.assign({}, SESSIONS[authorization])
				: null;
	}
}

const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** The port a steedos-socket node's gateway listens on, from its log (waits up to 10 s). */
async function gatewayPort(node) {
	const hit = await node.waitForLog(/gateway listening on [^\s]+:(\d+)/, 10000);
	return Number(/gateway listening on [^\s]+:(\d+)/.exec(hit.line)[1]);
}

/**
 * Starts a steedos-socket node (the product binary). `extra` is its configuration on top of the
 * harness defaults, with `gateway` merged over { host: 127.0.0.1, port: 0 } and serviceName
 * "socket"; the other options go to h.startCppNode (nats or transporter, logLevel, ...). Does not
 * wait: gatewayPort(node) waits for the gateway, `node.exited` for a refused configuration.
 */
function startGateway({ extra = {}, ...opts } = {}) {
	const config = Object.assign({ serviceName: "socket" }, extra, {
		gateway: Object.assign({ host: "127.0.0.1", port: 0 }, extra.gateway || {})
	});
	if (GATEWAY_IMPL === "baseline") return startBaselineGateway(opts, config);
	return h.startCppNode(Object.assign({ binary: "steedos-socket" }, opts, { extra: config }));
}

// STEEDOS_GATEWAY_IMPL=baseline runs the same tests against bench/baseline (socket.io 4.8 +
// moleculer 0.14, the issue-11 benchmark's yardstick) instead of the product binary, to show
// which contract checks that implementation meets (needs `npm ci` in bench/baseline once). Its
// handle has the members of a C++ node's.
const GATEWAY_IMPL = process.env.STEEDOS_GATEWAY_IMPL || "cpp";

async function startBaselineGateway(opts, config) {
	const { spawnBaseline } = require("../../../bench/baseline/start");
	const node = spawnBaseline({
		transporter: opts.transporter || (opts.nats && opts.nats.url),
		namespace: opts.namespace || "",
		nodeID: opts.nodeID,
		port: config.gateway.port,
		config: Object.assign({ heartbeatInterval: 1, heartbeatTimeout: 3, logLevel: opts.logLevel || "debug" }, config)
	});
	h.track(node.proc);
	return node;
}

/**
 * Makes `s` (a socket.io-client Socket) record what it sees: s.events ({ event, args } of every
 * event, onAny), s.disconnects (reasons), s.connectErrors, s.connects (count). Returns `s`.
 */
function record(s) {
	s.events = [];
	s.disconnects = [];
	s.connectErrors = [];
	s.connects = 0;
	s.on("connect", () => s.connects++);
	s.onAny((event, ...args) => s.events.push({ event, args }));
	s.on("disconnect", reason => s.disconnects.push(reason));
	s.on("connect_error", err => s.connectErrors.push(err));
	return s;
}

/**
 * Starts the cluster. `extra` is merged into the node config (gateway/auth merged one level).
 * `gateways`: how many steedos-socket nodes (contract §7); `node`/`port` are the first one's,
 * `nodes`/`ports` all of them, and `client({ gateway: i })` connects to the i-th. `logLevel`:
 * the gateway nodes' (default "debug"). `broker`: options for the auth and producer brokers (e.g.
 * heartbeatInterval / heartbeatTimeout; the harness defaults are 1 s / 3 s). `args`: more
 * command-line arguments of the gateway nodes (e.g. ["--log-format", "json"]). `bus`: options of
 * h.startBus (e.g. `{ jetstream: true }`). `moleculer`: the brokers' version, "0.14" (default) or
 * "0.15" (the gateway nodes then speak protocolVersion "5"). The cluster's `gatewayOptions` are
 * what each gateway node was started with (for a test that starts one again: startGateway).
 */
/**
 * The `listener` service of a producer broker: answers listener.ping (so a test can wait until
 * a node sees it) and records every `$socket.subscribe.**` event as { event, params } in `events`.
 */
function listenerService(events) {
	return {
		name: "listener",
		actions: { ping: () => "pong" },
		events: {
			"$socket.subscribe.**"(ctx) {
				events.push({ event: ctx.eventName, params: ctx.params });
			}
		}
	};
}

/**
 * The mock auth service: records each call's authorization in `authCalls` and answers with
 * authReply, unless `fault.mode` says the whole service misbehaves: "hang" (never answers) or
 * "fail" (throws a 500), for every token (auth-faults.test.js).
 */
function authService(authCalls, fault = {}) {
	return {
		name: "@steedos/service-accounts",
		actions: {
			getUserSession(ctx) {
				authCalls.push(ctx.params.authorization);
				if (fault.mode === "hang") return new Promise(() => {});
				if (fault.mode === "fail") {
					const { Errors } = require("moleculer");
					throw new Errors.MoleculerError("auth service down", 500, "SERVICE_ERROR");
				}
				return authReply(ctx.params.authorization);
			}
		}
	};
}

async function startCluster({ extra = {}, gateways = 1, logLevel = "debug", broker = {}, args = [], bus = {}, moleculer = "0.14" } = {}) {
	const nats = await h.startBus(bus);
	const authCalls = [];
	const authFault = { mode: null };
	const subscribeEvents = [];
	const auth = h.createBroker(moleculer, Object.assign({ nats }, broker));
	auth.createService(authService(authCalls, authFault));
	const producer = h.createBroker(moleculer, Object.assign({ nats }, broker));
	producer.createService(listenerService(subscribeEvents));
	const listeners = []; // brokers added by addListener
	await Promise.all([auth.start(), producer.start()]);
	const config = Object.assign({ serviceName: "socket" }, extra, {
		gateway: Object.assign({ host: "127.0.0.1", port: 0 }, extra.gateway || {}),
		auth: Object.assign({ timeout: 1000 }, extra.auth || {})
	});
	const gatewayOptions = { nats, logLevel, extra: config, args, protocolVersion: moleculer === "0.15" ? "5" : "4" };
	const nodes = [];
	const ports = [];
	for (let i = 0; i < gateways; i++) {
		const gateway = await startGateway(gatewayOptions);
		nodes.push(gateway);
		ports.push(await gatewayPort(gateway));
	}
	for (const gateway of nodes) {
		await h.waitForRemoteNode(producer, gateway.nodeID, ["socket.stats", "socket.emit"], 10000);
		await h.waitForCppSees(producer, gateway.nodeID, AUTH_ACTION, auth.nodeID, 10000);
		await h.waitForCppSees(producer, gateway.nodeID, "listener.ping", producer.nodeID, 10000);
	}
	const [node] = nodes;
	const [port] = ports;
	const cluster = {
		nats,
		node,
		port,
		nodes,
		ports,
		auth,
		producer,
		gatewayOptions,
		authCalls,
		/** Set `mode` to "hang" or "fail" to make the mock auth service misbehave (authService). */
		authFault,
		subscribeEvents,
		sockets: new Set(),
		call(action, params = {}) {
			return producer.call(`socket.${action}`, params, { nodeID: node.nodeID, timeout: 5000 });
		},
		stats() {
			return cluster.call("stats");
		},
		/**
		 * A recording client (record()), not yet connected, of the `gateway`-th node, or of any
		 * gateway by `port` (a node the test started itself). Closed by closeAll and stop.
		 */
		client(opts = {}) {
			const { cookie, transports, bearer, gateway = 0, port, ...rest } = opts;
			const extraHeaders = {};
			if (cookie) extraHeaders.cookie = cookie;
			if (bearer) extraHeaders.authorization = `Bearer ${bearer}`;
			const s = record(io(`http://127.0.0.1:${port || ports[gateway]}`, Object.assign({
				forceNew: true,
				reconnection: false,
				timeout: 5000,
				transports: transports || ["polling", "websocket"],
				extraHeaders
			}, rest)));
			cluster.sockets.add(s);
			return s;
		},
		/** A client that has received connection-init. */
		async connect(opts = {}) {
			const s = cluster.client(opts);
			await h.waitFor(() => {
				if (s.connectErrors.length) throw Object.assign(new Error(`connect_error: ${s.connectErrors[0].message}`), { exited: true });
				return s.events.some(e => e.event === "connection-init");
			}, 6000, { what: "connection-init" });
			return s;
		},
		/** Waits for events named `event` on `s`, returns their argument arrays. */
		async received(s, event, count = 1, ms = 4000) {
			await h.waitFor(() => s.events.filter(e => e.event === event).length >= count, ms, { what: `${count} x ${event} on ${s.id}` });
			return s.events.filter(e => e.event === event).map(e => e.args);
		},
		got(s, event) {
			return s.events.filter(e => e.event === event).map(e => e.args);
		},
		/** The socket.clients entry of `s`, on whichever running node has it. */
		async info(s) {
			for (const n of nodes.filter(n => n.running())) {
				const list = await producer.call("socket.clients", {}, { nodeID: n.nodeID, timeout: 5000 });
				const found = list.find(c => c.id === s.id);
				if (found) return found;
			}
			return undefined;
		},
		/**
		 * Sends a global marker through the node (producer -> node, same NATS connection, so it
		 * arrives after everything emitted before) and waits for it on `sockets`.
		 */
		async barrier(sockets, how = "emit") {
			const tag = `m${Math.random().toString(36).slice(2)}`;
			producer[how]("$socket.emit", { eventName: "barrier", eventParams: tag });
			await Promise.all(sockets.map(s => h.waitFor(() => s.events.some(e => e.event === "barrier" && e.args[0] === tag), 4000, { what: "barrier" })));
		},
		/**
		 * Revokes a login as Steedos does: the accounts service stops accepting the token (REVOKED)
		 * and `$user.logout { authToken }` is broadcast, so every node drops its cached session
		 * and closes the token's sockets (§2.6, §9).
		 */
		revoke(token) {
			REVOKED.add(token);
			producer.broadcast("$user.logout", { authToken: token });
		},
		/**
		 * A second listener broker (same `listener` service as the producer's), started and seen
		 * by every gateway node. Resolves { broker, events }; stopped by stop().
		 */
		async addListener() {
			const events = [];
			const broker = h.createBroker(moleculer, { nats });
			broker.createService(listenerService(events));
			listeners.push(broker);
			await broker.start();
			for (const n of nodes) await h.waitForCppSees(producer, n.nodeID, "listener.ping", broker.nodeID, 10000);
			return { broker, events };
		},
		/** Closes every client made so far and waits until the node has none. */
		async closeAll() {
			for (const s of cluster.sockets) s.close();
			cluster.sockets.clear();
			for (const n of nodes.filter(n => n.running())) {
				await h.waitFor(async () => (await producer.call("socket.stats", {}, { nodeID: n.nodeID, timeout: 5000 })).connections.total === 0,
					4000, { what: `no connections left on ${n.nodeID}` });
			}
		},
		async stop() {
			for (const s of cluster.sockets) s.close();
			await h.stopBrokers(auth, producer, ...listeners);
			await h.stopCppNodes(nodes);
			await nats.stop();
		}
	};
	return cluster;
}

/**
 * Waits until the client is refused the way `expect` says, and asserts it never connected:
 * - "closed" (default): the node closed the Engine.IO session before the Socket.IO CONNECT reply
 *   (an auth failure): one "transport close" disconnect, no connect_error;
 * - "error": the handshake itself was refused (e.g. a 403 for a foreign Origin): a connect_error.
 */
async function failedToConnect(s, expect = "closed") {
	if (expect === "error") {
		await h.waitFor(() => s.connectErrors.length > 0, 6000, { what: "connect_error" });
	} else {
		await h.waitFor(() => s.disconnects.length > 0 || s.connectErrors.length > 0, 6000, { what: "connection closed" });
		assert.deepEqual(s.connectErrors.map(e => e.message), [], "closed by the node, not a handshake error");
		assert.deepEqual(s.disconnects, ["transport close"]);
	}
	assert.equal(s.connects, 0, "the client never saw a CONNECT reply");
	assert.equal(s.events.filter(e => e.event === "connection-init").length, 0, "no connection-init");
	assert.equal(s.connected, false);
}

module.exports = { h, assert, startCluster, authService, failedToConnect, ISO_MS, AUTH_ACTION, SESSIONS, REVOKED, COOKIES, cookie, login,
	gatewayPort, startGateway, record };

// ---------------------------------------------------------------------------------------------
// Issue 16, several gateway nodes and the binary (cluster.test.js, binary.test.js, multinode).
// Added helpers only; nothing above is changed.

/**
 * A balanced emit that the producer's balancer sent to `nodeID`: the same EVENT packet
 * (`groups: ["socket"]`, `broadcast: false`) that `broker.emit` publishes once it has picked that
 * endpoint, so a test knows which node received it and which got it only by forwarding.
 */
function emitTo(broker, nodeID, eventName, payload, groups = ["socket"]) {
	const ctx = broker.ContextFactory.create(broker, null, payload, { groups });
	ctx.eventName = eventName;
	ctx.eventType = "emit";
	ctx.eventGroups = groups;
	const pinned = ctx.copy({ id: nodeID, local: false });
	pinned.eventGroups = groups;
	return broker.transit.sendEvent(pinned);
}

/** socket.stats of one gateway node. */
function statsOf(c, node) {
	return c.producer.call("socket.stats", {}, { nodeID: node.nodeID, timeout: 5000 });
}

/** events.in of each node in `nodes` (default: all of the cluster's). */
async function eventsInOf(c, nodes = c.nodes) {
	return (await Promise.all(nodes.map(n => statsOf(c, n)))).map(st => st.events.in);
}

/** Waits until every gateway node sees the `socket` group of every other one (§7 forwarding). */
async function waitGatewaysKnowEachOther(c, nodes = c.nodes, ms = 8000) {
	for (const from of nodes) {
		for (const to of nodes) {
			if (from === to) continue;
			await h.waitFor(async () => {
				const list = await c.producer.call("$node.events", { withEndpoints: true }, { nodeID: from.nodeID, timeout: 2000 });
				const item = list.find(e => e.name === "$socket.emit");
				return item && (item.endpoints || []).some(ep => ep.nodeID === to.nodeID);
			}, ms, { what: `${from.nodeID} sees the socket group of ${to.nodeID}` });
		}
	}
}

/**
 * A barrier over every path between gateway nodes: one global marker emitted to each node in turn
 * (pinned, so it is forwarded to the others), each waited for on every socket before the next.
 * Messages on one path keep their order, so when the marker sent to node X has reached every
 * socket, everything that X received or forwarded before it has been delivered too, and so has
 * any duplicate that another node re-forwarded to X before it handled the marker. Returns the
 * markers' tags.
 */
async function crossBarrier(c, sockets, nodes = c.nodes, ms = 4000) {
	const tags = [];
	for (const node of nodes) {
		const tag = `x${Math.random().toString(36).slice(2)}`;
		tags.push(tag);
		emitTo(c.producer, node.nodeID, "$socket.emit", { eventName: "barrier", eventParams: tag });
		await Promise.all(sockets.map(s =>
			h.waitFor(() => s.events.some(e => e.event === "barrier" && e.args[0] === tag), ms, { what: `barrier via ${node.nodeID}` })));
	}
	return tags;
}

Object.assign(module.exports, { emitTo, statsOf, eventsInOf, waitGatewaysKnowEachOther, crossBarrier });

// ---------------------------------------------------------------------------------------------
// Issue 16, item 1 "Every transport": the one transport list of the Steedos suite. Client-facing
// scenarios run once per entry (`transports: t.transports`, `t.name` in the test title).
// Added only; nothing above is changed.

const TRANSPORTS = Object.freeze([
	Object.freeze({ name: "polling", transports: Object.freeze(["polling"]) }),
	Object.freeze({ name: "websocket", transports: Object.freeze(["websocket"]) }),
	Object.freeze({ name: "default", transports: Object.freeze(["polling", "websocket"]) })
]);

Object.assign(module.exports, { TRANSPORTS });
