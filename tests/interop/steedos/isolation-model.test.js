"use strict";
// Issue 9, "Tenant isolation as a model-based property test, end to end": seeded random sequences
// of steps against the real node (steedos-socket, real nats-server or redis-server, a Moleculer
// 0.14 producer and the fixture's mock auth service, socket.io-client on polling, WebSocket and
// polling-then-upgrade), checked against a model of gateway-contract.md (§2 credentials, §2.6 and
// §9 logout, §3 rooms, §5 events, §6/§9 socket.clients, socket.stats, socket.disconnect). The
// model below is plain JS written from the contract, not from the C++ code: who is who after a
// connect, which rooms a subscribe joins or why it is refused, and who must receive each event.
//
// The run is a series of batches. A batch is a client phase (connects, reconnects, client-side
// closes, subscribes and unsubscribes with valid and hostile arguments, pings; concurrent across
// sockets, in order on each socket, each awaited: ack, pong or connection-init, so the node has
// applied it) and then a producer phase (socket.disconnect calls first, awaited, then every §5
// event by `emit` or `broadcast`, rejected payloads and `$user.logout` in both names and both
// shapes, fire and forget, in order on the producer's one path to the node). Then a barrier: the
// fixture's marker event on every live socket (same path, so everything sent before it has been
// delivered), the server-side disconnects the model expects, and the node's socket.clients and
// socket.stats equal to the model. Then every socket's received events since the last batch are
// compared with the model's list: a leak is an event a socket got and must not have, a missing
// delivery one it must have got and did not. Any mismatch fails the test with the seed, the step
// index and the steps before it.
//
// The same run, with the same seed, on one gateway node and on two (§7: each socket on either,
// balanced emits reach one node and are forwarded, broadcasts reach both; socket.disconnect asks
// one node; deliveries are compared as multisets there, since order across nodes is not promised,
// and the barrier is the fixture's crossBarrier).
//
// ISOLATION_SEED (default: random) replays a run; ISOLATION_STEPS (default 5000) sizes each run;
// ISOLATION_BATCH (default 100) is the number of steps between barriers; ISOLATION_GATEWAYS
// (default "1,2") the runs; ISOLATION_DUMP=<file> writes every step there.
const crypto = require("node:crypto");
const { describe, it, before, after } = require("node:test");
const { h, startCluster, COOKIES, login, SESSIONS, REVOKED, ISO_MS, crossBarrier, waitGatewaysKnowEachOther } = require("./fixture");

const SEED = process.env.ISOLATION_SEED !== undefined ? Number(process.env.ISOLATION_SEED) >>> 0 : crypto.randomInt(2 ** 32);
const STEPS = Number(process.env.ISOLATION_STEPS || 5000);
const BATCH = Number(process.env.ISOLATION_BATCH || 100);

// A small room limit so that the random subscribes reach it (§3, §9: counted after the join).
const MAX_ROOMS = 12;
const METADATA_TYPES = ["apps", "objects", "object_listviews", "object_actions", "object_fields"]; // §5 default
const PERSONAL_PARTS = ["me", "notification-change"]; // gateway.individualRoomParts default
const RESERVED_EVENTS = ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];

const TENANTS = ["S1", "S2", "S3"];
const USERS = ["U1", "U2", "U3", "U4", "U5", "U6", "U7", "U8"];
const TRANSPORT_CHOICES = [["polling"], ["websocket"], ["polling", "websocket"]];
const MAX_LIVE = 14; // sockets connected at once
const MAX_SOCKETS = 22; // socket.io-client objects, live or closed (a closed one may reconnect)

// ---------------------------------------------------------------------------------------------
// The seeded generator (mulberry32) and its helpers.

function prng(seed) {
	let a = seed >>> 0;
	const next = () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
	const r = {
		next,
		int: n => Math.floor(next() * n),
		chance: p => next() < p,
		pick: list => list[Math.floor(next() * list.length)],
		/** Distinct elements of `list`, between `min` and `max` of them. */
		some: (list, min = 1, max = list.length) => {
			const pool = list.slice();
			const n = Math.min(pool.length, min + Math.floor(next() * (max - min + 1)));
			const out = [];
			while (out.length < n) out.push(pool.splice(Math.floor(next() * pool.length), 1)[0]);
			return out;
		},
		/** One key of `weights` ({ key: weight }), in proportion to its weight. */
		weighted: weights => {
			const entries = Object.entries(weights).filter(([, w]) => w > 0);
			let x = next() * entries.reduce((sum, [, w]) => sum + w, 0);
			for (const [key, w] of entries) if ((x -= w) < 0) return key;
			return entries[entries.length - 1][0];
		}
	};
	return r;
}

/** JSON with sorted keys, so that two payloads compare whatever order the node wrote the keys in. */
function canonical(value) {
	if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
	if (value && typeof value === "object") {
		return `{${Object.keys(value).sort().map(k => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
	}
	return JSON.stringify(value);
}

const short = (value, n = 90) => {
	const text = value === undefined ? "(none)" : JSON.stringify(value);
	return text.length > n ? `${text.slice(0, n)}…(${text.length} chars)` : text;
};

// ---------------------------------------------------------------------------------------------
// The model: the contract's rules, as plain functions of the model's state.

/**
 * §2.2, §2.3, §9: the identity a connect with `cred` gets. The first complete credential wins
 * (cookie pair, then CONNECT auth, then Bearer); the tenant is its space even when the answer is
 * anonymous; a session whose spaceId differs from the space asked, a revoked token or an unknown
 * one is anonymous; without credentials the tenant is the X-Space-Id cookie or null. `token` is
 * the token the socket was opened with (a logout of that token closes it).
 */
function identityOf(cred) {
	const nonEmpty = v => typeof v === "string" && v !== "";
	let space = null;
	let token = null;
	if (nonEmpty(cred.cookieSpace) && nonEmpty(cred.cookieToken)) [space, token] = [cred.cookieSpace, cred.cookieToken];
	else if (cred.auth && nonEmpty(cred.auth.spaceId) && nonEmpty(cred.auth.token)) [space, token] = [cred.auth.spaceId, cred.auth.token];
	else if (cred.bearer) [space, token] = cred.bearer;
	if (token === null) return { userId: null, anonymous: true, tenantId: cred.cookieSpace || null, token: null };
	const reply = REVOKED.has(token) ? null : SESSIONS[`${space},${token}`];
	if (reply && reply.spaceId === space) return { userId: reply.userId, anonymous: false, tenantId: space, token };
	return { userId: null, anonymous: true, tenantId: space, token };
}

const isObject = v => v !== null && typeof v === "object" && !Array.isArray(v);
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * §3 and §9: the rooms that `subscribe`/`unsubscribe` with `arg` names for `who`, or a refusal.
 * `arg === NO_ARG`: the event was sent without an argument. Returns { rooms } (distinct) or
 * { error: why (for the failure message only: the contract fixes no wording) }.
 */
const NO_ARG = Symbol("no argument");
function roomsFor(arg, who) {
	if (arg === NO_ARG || !isObject(arg)) return { error: "argument is not an object" };
	let individual = false;
	if (Object.prototype.hasOwnProperty.call(arg, "individual")) {
		if (typeof arg.individual !== "boolean") return { error: "individual not a boolean" };
		individual = arg.individual;
	}
	const rp = arg.roomParts;
	let parts;
	if (typeof rp === "string") parts = [rp];
	else if (Array.isArray(rp)) parts = rp;
	else return { error: "roomParts missing or not a string/array" };
	if (parts.length === 0) return { error: "empty array" };
	if (parts.length > 64) return { error: "more than 64 parts" };
	for (const p of parts) {
		if (typeof p !== "string") return { error: "a part is not a string" };
		if (p === "") return { error: "empty part" };
		if (Buffer.byteLength(p, "utf8") > 256) return { error: "part longer than 256 bytes" };
		if (CONTROL.test(p)) return { error: "control character" };
	}
	if (who.anonymous) return { error: "anonymous (gateway.anonymousRooms false)" };
	if (!individual) {
		for (const p of parts) {
			if (PERSONAL_PARTS.some(q => p === q || p.startsWith(`${q}-`))) return { error: "another user's personal room" };
		}
	}
	const rooms = parts.map(p => `${who.tenantId}-${p}${individual ? `-${who.userId}` : ""}`);
	return { rooms: [...new Set(rooms)], individual, stringForm: typeof rp === "string" };
}

/** §5 mapping of `$metadata.<type>`: the Socket.IO argument, or null when nothing is sent. */
function metadataOut(payload) {
	if (!isObject(payload) || !isObject(payload.data)) return null; // rejected
	if (!METADATA_TYPES.includes(payload.type)) return null; // ignored
	const d = payload.data;
	const out = { type: payload.type, action: payload.action, _id: d._id || d.id,
		name: payload.type === "apps" ? d.code : d.name, objectName: d.object || d.object_name };
	for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
	return out;
}

// ---------------------------------------------------------------------------------------------
// The run.

class Mismatch extends Error {}

class IsolationRun {
	/** `c`: the fixture's cluster, with one gateway node or two (§7: sockets spread over both). */
	constructor(c, seed) {
		this.c = c;
		this.gateways = c.nodes.length;
		this.seed = seed;
		this.r = prng(seed);
		this.sockets = []; // model sockets: { name, cred, transports, client, live, who, rooms, expected, ... }
		this.tokens = ["t-u1", "t-u1b", "t-u4", "t-u2", "t-u5", "t-u6", "t-u3", "t-u3b"]; // tokens known to the run
		this.logins = []; // tokens of login() (the ones a logout may revoke)
		this.steps = []; // descriptions, by step index
		this.step = 0;
		this.emitted = new Map(); // canonical (event, args) -> step indexes, this batch
		this.expectedSubscribeEvents = [];
		this.subscribeEventsSeen = c.subscribeEvents.length;
		this.problems = [];
		this.figures = { steps: 0, batches: 0, deliveriesCompared: 0, acksCompared: 0, refusals: 0, producerEvents: 0,
			pairsChecked: 0, connects: 0, liveSum: 0, anonymousSum: 0, logouts: 0, disconnectCalls: 0, serverClosed: 0 };
		for (const space of ["S1", "S3"]) this.newLogin("U7", [space, "S1"]); // users in several tenants
		this.newLogin("U8", ["S2", "S3"]);
	}

	newLogin(user, spaces) {
		const { token } = login(user, ...new Set(spaces));
		this.tokens.push(token);
		this.logins.push(token);
		return token;
	}

	note(text) {
		this.steps[this.step] = text;
		this.figures.steps++;
		return this.step++;
	}

	live() {
		return this.sockets.filter(s => s.live);
	}

	problem(step, text) {
		this.problems.push({ step, text });
	}

	/** Expected delivery of (event, args) to model socket `s`, tagged with the step. */
	expect(s, step, event, args) {
		s.expected.push({ event, args, step });
	}

	/** Every live socket that is in `room` (a named room, or its own id room). */
	inRoom(room) {
		return this.live().filter(s => s.rooms.has(room) || s.client.id === room);
	}

	deliver(step, sockets, event, args) {
		const key = canonical([event, ...args]);
		if (!this.emitted.has(key)) this.emitted.set(key, []);
		this.emitted.get(key).push(step);
		for (const s of new Set(sockets)) this.expect(s, step, event, args);
	}

	// --- credentials --------------------------------------------------------------------------

	/** A random credential: the kinds of §2.2 and their mixes, tokens valid, foreign, revoked, unknown. */
	randomCred() {
		const { r } = this;
		const current = this.tokens.filter(t => !REVOKED.has(t));
		const token = r.chance(0.06) ? r.pick(["nope", "t-unknown", "t-u9"]) : r.pick(r.chance(0.85) ? current : this.tokens);
		// The space: mostly one where the token is valid, sometimes another (not a member: anonymous).
		const valid = TENANTS.filter(t => SESSIONS[`${t},${token}`]);
		const space = valid.length && r.chance(0.85) ? r.pick(valid) : r.pick([...TENANTS, "S4"]);
		const kind = r.weighted({ cookie: 60, auth: 14, bearer: 10, none: 4, spaceOnly: 4, cookieAndAuth: 5, halfCookieAndAuth: 3 });
		const other = r.pick(this.tokens);
		const otherSpace = r.pick(TENANTS);
		switch (kind) {
			case "cookie": return { kind, cookieSpace: space, cookieToken: token };
			case "auth": return { kind, auth: { spaceId: space, token } };
			case "bearer": return { kind, bearer: [space, token] };
			case "none": return { kind };
			case "spaceOnly": return { kind, cookieSpace: space };
			case "cookieAndAuth": return { kind, cookieSpace: space, cookieToken: token, auth: { spaceId: otherSpace, token: other } }; // the cookie pair wins
			default: return { kind, cookieSpace: otherSpace, auth: { spaceId: space, token } }; // no token cookie: the auth payload counts
		}
	}

	clientOptions(cred, transports) {
		const opts = { transports };
		const cookies = [];
		if (cred.cookieSpace) cookies.push(`X-Space-Id=${cred.cookieSpace}`);
		if (cred.cookieToken) cookies.push(`X-Auth-Token=${cred.cookieToken}`);
		if (cookies.length) opts.cookie = cookies.join("; ");
		if (cred.auth) opts.auth = cred.auth;
		if (cred.bearer) opts.bearer = cred.bearer.join(",");
		return opts;
	}

	// --- the client phase -----------------------------------------------------------------------

	/** Generates and runs one client phase of `n` steps; resolves when every step has been applied. */
	async clientPhase(n) {
		const chains = new Map(); // model socket -> promise of its steps so far
		const run = (s, op) => chains.set(s, (chains.get(s) || Promise.resolve()).then(op));
		let closed = false;
		for (let i = 0; i < n; i++) {
			const live = this.live();
			const closedSockets = this.sockets.filter(s => !s.live);
			const kind = this.r.weighted({
				connect: live.length < MAX_LIVE && this.sockets.length < MAX_SOCKETS ? (live.length < 10 ? 12 : 4) : 0,
				reconnect: closedSockets.length && live.length < MAX_LIVE ? (live.length < 10 ? 10 : 3) : 0,
				close: live.length > 4 ? 1.5 : 0,
				subscribe: live.length ? 40 : 0,
				hostile: live.length ? 22 : 0,
				unsubscribe: live.length ? 16 : 0,
				ping: live.length ? 4 : 0
			});
			if (kind === "connect") this.connectStep(run);
			else if (kind === "reconnect") this.reconnectStep(run, this.r.pick(closedSockets));
			else if (kind === "close") {
				this.closeStep(run, this.r.pick(live));
				closed = true;
			} else if (kind === "ping") this.pingStep(run, this.r.pick(live));
			else this.roomStep(run, this.r.pick(live), kind);
		}
		await Promise.all(chains.values());
		// A client-side close reaches the node on its own path: wait until the node has let the
		// socket go, so that the socket.disconnect counts below are the model's.
		if (closed) await this.waitNodeMatches("after client-side closes");
	}

	connectStep(run) {
		const transports = this.r.pick(TRANSPORT_CHOICES);
		const cred = this.r.chance(0.12)
			? (() => { // a fresh login, valid in one to three tenants
				const token = this.newLogin(this.r.pick(USERS), this.r.some(TENANTS, 1, 3));
				return { kind: "cookie", cookieSpace: this.r.pick(TENANTS.filter(t => SESSIONS[`${t},${token}`])), cookieToken: token };
			})()
			: this.r.chance(0.15) ? this.staticCred() : this.randomCred();
		const gateway = this.r.int(this.gateways);
		const s = { name: `k${this.sockets.length}`, gateway, cred, transports, client: null, live: true, rooms: new Set(), expected: [],
			disconnects: [], connects: 1, seen: 0, sids: [] };
		s.who = identityOf(cred);
		this.sockets.push(s);
		const step = this.note(`connect ${s.name} node ${gateway} ${transports.join("+")} ${cred.kind} ${short(cred)} -> ${short(s.who)}`);
		this.figures.connects++;
		run(s, async () => {
			s.client = await this.c.connect(Object.assign(this.clientOptions(cred, transports), { gateway })).catch(err => {
				throw new Mismatch(this.report(step, `connect ${s.name}: ${err.message}`));
			});
			s.sids.push(s.client.id);
		});
	}

	staticCred() {
		const name = this.r.pick(Object.keys(COOKIES));
		const [, space, token] = /X-Space-Id=([^;]+); X-Auth-Token=(.+)/.exec(COOKIES[name]);
		return { kind: "cookie", cookieSpace: space, cookieToken: token };
	}

	reconnectStep(run, s) {
		s.live = true;
		s.rooms = new Set();
		s.who = identityOf(s.cred); // asked again: a revoked token is anonymous now
		const connects = ++s.connects; // this reconnect's count (a later step of the phase may reconnect it again)
		const step = this.note(`reconnect ${s.name} -> ${short(s.who)}`);
		this.figures.connects++;
		run(s, async () => {
			s.client.connect();
			await h.waitFor(() => s.client.events.filter(e => e.event === "connection-init").length >= connects, 6000,
				{ what: `${s.name} reconnected` }).catch(err => {
				const seen = { connected: s.client.connected, disconnects: s.client.disconnects, connectErrors: s.client.connectErrors.map(e => e.message) };
				throw new Mismatch(this.report(step, `reconnect ${s.name}: ${err.message}; client ${short(seen, 400)}`));
			});
			s.sids.push(s.client.id);
		});
	}

	closeStep(run, s) {
		s.live = false;
		s.rooms = new Set();
		s.disconnects.push("io client disconnect");
		this.note(`close ${s.name} (client side)`);
		run(s, async () => s.client.close());
	}

	pingStep(run, s) {
		const step = this.note(`ping ${s.name}`);
		this.expect(s, step, "pong", [ISO_MS]);
		run(s, () => this.pong(s, step));
	}

	/** Sends `ping` and waits for the answer: everything `s` sent before has been handled. */
	async pong(s, step) {
		const before = s.client.events.filter(e => e.event === "pong").length;
		s.client.emit("ping", step);
		await h.waitFor(() => s.client.events.filter(e => e.event === "pong").length > before, 4000, { what: "pong" }).catch(() =>
			this.problem(step, `${s.name}: no pong`));
	}

	roomStep(run, s, kind) {
		const subscribe = kind !== "unsubscribe";
		let arg;
		if (kind === "hostile") arg = this.hostileArg(s);
		else if (kind === "unsubscribe") arg = this.r.chance(0.15) ? this.hostileArg(s) : this.unsubscribeArg(s);
		else arg = this.validArg(s);
		const event = subscribe ? "subscribe" : "unsubscribe";
		const want = roomsFor(arg, s.who);
		if (want.rooms && subscribe && new Set([...s.rooms, ...want.rooms]).size > MAX_ROOMS) {
			want.error = `more than ${MAX_ROOMS} rooms`;
			delete want.rooms;
		}
		const withAck = this.r.chance(0.85);
		const step = this.note(`${event} ${s.name} ${arg === NO_ARG ? "(no argument)" : short(arg)}${withAck ? "" : " (no ack)"} -> ${want.error ? `refused: ${want.error}` : short(want.rooms)}`);
		if (want.rooms) {
			for (const room of want.rooms) (subscribe ? s.rooms.add(room) : s.rooms.delete(room));
			if (subscribe && want.stringForm) {
				const params = { roomParts: arg.roomParts, individual: want.individual, space: s.who.tenantId };
				if (want.individual) params.userId = s.who.userId;
				this.expectedSubscribeEvents.push({ step, event: `$socket.subscribe.${arg.roomParts}`, params });
			}
		} else this.figures.refusals++;
		if (!withAck) this.expect(s, step, "pong", [ISO_MS]); // the ping that follows it
		const args = arg === NO_ARG ? [] : [arg];
		run(s, async () => {
			if (!withAck) {
				s.client.emit(event, ...args);
				return this.pong(s, step); // no reply to wait for: the pong after it shows it was handled
			}
			let ack;
			try {
				ack = await s.client.timeout(5000).emitWithAck(event, ...args);
			} catch (err) {
				return this.problem(step, `${s.name}: no ack for ${event} (${err.message})`);
			}
			this.figures.acksCompared++;
			if (want.rooms) {
				const got = isObject(ack) && Array.isArray(ack.rooms) && !("error" in ack) ? [...new Set(ack.rooms)].sort() : null;
				if (canonical(got) !== canonical([...want.rooms].sort())) this.problem(step, `${s.name}: ${event} ack ${short(ack, 300)}, model ${short({ rooms: want.rooms }, 300)}`);
			} else if (!isObject(ack) || typeof ack.error !== "string" || !ack.error || "rooms" in ack) {
				this.problem(step, `${s.name}: ${event} ack ${short(ack, 300)}, model: refused (${want.error})`);
			}
		});
	}

	validArg(s) {
		const { r } = this;
		if (r.chance(0.3)) {
			const parts = r.some(["notification-change", "me", "inbox", "space", "record:orders:change-42"], 1, 2);
			return { roomParts: parts.length === 1 && r.chance(0.6) ? parts[0] : parts, individual: true };
		}
		const pool = ["space", "orders", "notifications", "record:orders:change-42", "record:orders:change-7", "record:contacts:change-1",
			"notification-changes", "x-notification-change-U4", "meeting"];
		const parts = r.some(pool, 1, 3);
		const arg = { roomParts: parts.length === 1 && r.chance(0.6) ? parts[0] : parts };
		if (r.chance(0.3)) arg.individual = false;
		return arg;
	}

	unsubscribeArg(s) {
		const { r } = this;
		const mine = [...s.rooms];
		const prefix = `${s.who.tenantId}-`;
		// A room it is in, turned back into the arguments that joined it (individual ones end in -<userId>).
		if (mine.length && r.chance(0.7)) {
			const room = r.pick(mine);
			const suffix = `-${s.who.userId}`;
			const rest = room.slice(prefix.length);
			if (rest.endsWith(suffix) && r.chance(0.6)) return { roomParts: rest.slice(0, -suffix.length), individual: true };
			return { roomParts: rest };
		}
		return this.validArg(s);
	}

	/** Hostile or odd subscribe arguments of §3 and §9; the model decides what each does. */
	hostileArg(s) {
		const { r } = this;
		const otherTenant = r.pick(TENANTS.filter(t => t !== s.who.tenantId));
		const otherUser = r.pick(USERS.filter(u => u !== s.who.userId));
		const cases = [
			() => ({ roomParts: `${otherTenant}-space` }), // another tenant's prefix: joins <own>-S2-space
			() => ({ roomParts: [`${otherTenant}-record:orders:change-42`, "space"] }),
			() => ({ roomParts: `${otherTenant}-notification-change-${otherUser}` }),
			() => ({ roomParts: `notification-change-${otherUser}` }), // another user's personal room: refused
			() => ({ roomParts: `me-${otherUser}` }),
			() => ({ roomParts: r.pick(["notification-change", "me", "me-", "notification-change-"]) }),
			() => ({ roomParts: ["space", `notification-change-${otherUser}`] }), // one bad part refuses all
			() => ({ roomParts: `notification-change-${otherUser}`, individual: true }), // ends in -<own id>
			() => ({ roomParts: r.pick(["Notification-Change-U4", "ME-U2", "xme-U4", "notification-changeU4", "-", "space-", `-${otherUser}`]) }),
			() => ({ roomParts: r.pick(["../", "..", "../../S2-space", "./space", "/", "%2e%2e%2f", "space/../S2-space", "..\\S3-space"]) }),
			() => ({ roomParts: `a${r.pick(["\u0000", "\n", "\r", "\t", "\u001b", "\u001f", "\u007f"])}b` }),
			() => ({ roomParts: ["space", r.pick(["\u0000", "x\ny", "\u007f"])] }),
			() => ({ roomParts: r.pick(["\u0085", "\u00a0", "é", "日本語", "😀", "__proto__", "constructor", "S1", "null", "undefined"]) }),
			() => ({ roomParts: r.pick(["x".repeat(256), "x".repeat(257), "é".repeat(128), "é".repeat(129), "日".repeat(85), "日".repeat(86),
				"😀".repeat(64), "😀".repeat(65), `${"a".repeat(255)}\u0000`, "y".repeat(20000), "z".repeat(300000)]) }),
			() => ({ roomParts: r.pick([42, 0, -1, 1.5, true, false, {}, { a: 1 }, [], [[]], [null], [42], ["space", 7], ["space", {}],
				["space", null], ["space", ["x"]], ["space", true], "", ["", "space"], null]) }),
			() => ({ roomParts: Array.from({ length: r.pick([64, 65, 100]) }, (_, i) => `p${i}`) }),
			() => ({ roomParts: Array.from({ length: r.pick([MAX_ROOMS - 1, MAX_ROOMS, MAX_ROOMS + 1]) }, (_, i) => `q${i}`) }),
			() => ({ roomParts: "space", individual: r.pick(["true", 1, 0, null, "false", {}, []]) }),
			() => ({ individual: r.pick([true, false]) }),
			() => ({ roomParts: r.pick(["space", ["space", "orders"]]), individual: true, extra: "ignored", tenantId: otherTenant, userId: otherUser }),
			() => ({ roomParts: ["space", "space", "orders"] }),
			() => r.pick(["space", 42, null, true, [{ roomParts: "space" }], ["space"]]), // not an object
			() => NO_ARG
		];
		return r.pick(cases)();
	}

	// --- the producer phase ---------------------------------------------------------------------

	async producerPhase(n) {
		const { r } = this;
		const sends = [];
		// socket.disconnect first: a call, on another path than events, so it goes before them.
		while (r.chance(0.2)) await this.disconnectCall();
		// Two nodes: order across nodes is not promised (§7), so an event sent before a logout may
		// reach a node after it; logouts go first there, each awaited until its sockets closed.
		if (this.gateways > 1) {
			while (r.chance(0.25)) {
				const closing = this.logoutStep((event, payload, via) => {
					this.figures.producerEvents++;
					sends.push(this.c.producer[via](event, payload));
				});
				await Promise.all(sends.splice(0));
				await this.waitServerCloses(closing);
			}
		}
		for (let i = 0; i < n; i++) {
			const kind = r.weighted({ metadata: 14, notification: 14, nestedEmit: 16, flatEmit: 16, record: 18, rejected: 8,
				logout: this.gateways > 1 ? 0 : 1.5 });
			const how = r.chance(0.5) ? "emit" : "broadcast";
			const send = (event, payload, via = how) => {
				this.figures.producerEvents++;
				this.figures.pairsChecked += this.live().length; // each live socket: a delivery or an absence checked
				sends.push(Promise.resolve(this.c.producer[via](event, payload)).catch(err => this.problem(this.step - 1, `producer ${via} ${event}: ${err.message}`)));
			};
			this[`${kind}Step`](send, how);
		}
		await Promise.all(sends);
	}

	metadataStep(send, how) {
		const { r } = this;
		const type = r.chance(0.75) ? r.pick(METADATA_TYPES) : r.pick(["triggers", "permission_set", "workflows"]);
		const step = this.step;
		const data = {};
		data[r.chance(0.7) ? "_id" : "id"] = `m${step}`;
		if (r.chance(0.8)) data.name = r.pick(["orders", "contacts", "é"]);
		if (r.chance(0.5)) data.code = r.pick(["crm", "oa"]);
		if (r.chance(0.5)) data[r.chance(0.5) ? "object" : "object_name"] = r.pick(["orders", "contacts"]);
		const payload = { type, action: r.pick(["inserted", "updated", "deleted"]), data };
		const out = metadataOut(payload);
		this.note(`${how} $metadata.${type} ${short(payload)} -> ${out ? "every socket" : "nobody (type not forwarded)"}`);
		if (out) this.deliver(step, this.live(), "s:metadata:change", [out]);
		send(`$metadata.${type}`, payload);
	}

	notificationStep(send, how) {
		const { r } = this;
		const tenantId = r.chance(0.9) ? r.pick(TENANTS) : "S4";
		const users = r.some(USERS, 1, 3);
		const step = this.step;
		const message = `n${step}`;
		const rooms = users.map(u => `${tenantId}-notification-change-${u}`);
		this.note(`${how} $broadcast.$notification.users ${tenantId} ${users.join(",")}`);
		this.deliver(step, rooms.flatMap(room => this.inRoom(room)), "s:notification-change", [{ message }]);
		send("$broadcast.$notification.users", { data: { tenantId, users, message } });
	}

	/** A room for socket.emit: one somebody is in, a socket id (live or gone), a made-up one, or none. */
	emitRoom() {
		const { r } = this;
		const x = r.next();
		if (x < 0.15) return undefined;
		const rooms = [...new Set(this.live().flatMap(s => [...s.rooms]))];
		if (x < 0.55 && rooms.length) return r.pick(rooms);
		const sids = this.sockets.flatMap(s => s.sids);
		if (x < 0.67 && sids.length) return r.pick(sids);
		const t = r.pick(TENANTS);
		const u = r.pick(USERS);
		return r.pick([`${t}-space`, `${t}-notification-change-${u}`, `${t}-me-${u}`, `${t}-record:orders:change-42`, "space",
			`${t}-S2-space`, `${t}-../`, "notification-change-U1", `${t}-`, "S1-space-U1", `${t}-orders`]);
	}

	emitParams() {
		const { r } = this;
		const step = this.step;
		return r.pick([
			() => ({ step }), () => ({ step, nested: { list: [1, "two", null, { three: true }] } }), () => `text ${step} é 😀`,
			() => step, () => [step, "x"], () => 0, () => false, () => "", () => ({ step, tenantId: "S2", userId: "U2" })
		])();
	}

	/** `$broadcast.socket.emit` and `$socket.emit` (§5), accepted or rejected (§5, §9). */
	emitStep(send, how, nested) {
		const { r } = this;
		const eventName = r.pick(["e-a", "e-b", "s:custom", "évènement", "s:record:orders:change-42"]);
		const eventParams = this.emitParams();
		const room = this.emitRoom();
		const body = { eventName, eventParams };
		if (room !== undefined) body.room = room;
		const step = this.step;
		const name = nested ? "$broadcast.socket.emit" : "$socket.emit";
		const to = room === undefined ? this.live() : this.inRoom(room);
		this.note(`${how} ${name} ${short(body)} -> ${to.map(s => s.name).join(",") || "nobody"}`);
		this.deliver(step, to, eventName, [eventParams]);
		send(name, nested ? { data: body } : body);
	}

	nestedEmitStep(send, how) {
		this.emitStep(send, how, true);
	}

	flatEmitStep(send, how) {
		this.emitStep(send, how, false);
	}

	/** `@objectRecordEvent.*.*` (§5, §9): name fallbacks, numeric ids, the two-segment form. */
	recordStep(send, how) {
		const { r } = this;
		const segment = r.pick(["orders", "contacts"]);
		const op = r.pick(["inserted", "updated", "deleted"]);
		const event = r.chance(0.15) ? `@objectRecordEvent.${segment}` : `@objectRecordEvent.${segment}.${op}`;
		const id = r.pick(["42", "7", "1", 42, 7]);
		const spaceId = r.chance(0.93) ? r.pick(TENANTS) : "S4";
		const payload = { spaceId };
		let object = segment;
		const naming = r.int(3);
		if (naming === 0) payload.objectApiName = object = r.pick(["orders", "contacts"]);
		else if (naming === 1) payload.objectName = object = r.pick(["orders", "contacts"]);
		if (r.chance(0.8)) payload.id = id;
		else payload.doc = { _id: id, name: "x" };
		const room = `${spaceId}-record:${object}:change-${id}`;
		const to = this.inRoom(room);
		const step = this.note(`${how} ${event} ${short(payload)} -> ${to.map(s => s.name).join(",") || "nobody"}`);
		this.deliver(step, to, `s:record:${object}:change-${id}`, [{ _id: id }]);
		send(event, payload);
	}

	/** Payloads §5 and §9 reject: nobody gets anything. */
	rejectedStep(send, how) {
		const { r } = this;
		const t = r.pick(TENANTS);
		const [event, payload] = r.pick([
			() => ["$socket.emit", { eventName: "", eventParams: 1 }],
			() => ["$socket.emit", { eventParams: { leak: true } }],
			() => ["$socket.emit", { eventName: "e-a", eventParams: null, room: `${t}-space` }],
			() => ["$socket.emit", { eventName: "e-a", room: `${t}-space` }],
			() => ["$socket.emit", { eventName: "e-a", eventParams: "leak", room: "" }],
			() => ["$socket.emit", { eventName: r.pick(RESERVED_EVENTS), eventParams: "leak" }],
			() => ["$broadcast.socket.emit", { data: { eventName: r.pick(RESERVED_EVENTS), eventParams: "leak" } }],
			() => ["$broadcast.socket.emit", { data: { eventName: "e-a" } }],
			() => ["$broadcast.$notification.users", { data: { tenantId: t, users: "U1", message: "leak" } }],
			() => ["$broadcast.$notification.users", { data: { tenantId: t, users: ["U1", 5], message: "leak" } }],
			() => ["@objectRecordEvent.orders.updated", { objectApiName: "orders", id: "42" }], // no tenant
			() => ["@objectRecordEvent.orders.updated", { objectApiName: "orders", spaceId: t }], // no id
			() => [`$metadata.objects`, { type: "objects", action: "updated", data: "leak" }],
			() => [`$metadata.objects`, "leak"]
		])();
		this.note(`${how} rejected ${event} ${short(payload)}`);
		send(event, payload);
	}

	/**
	 * `$user.logout` or `$broadcast.$user.logout`, `{ authToken }` or `{ data: { authToken } }`
	 * (§5, §2.6, §9): every socket opened with the token closes with a Socket.IO DISCONNECT. Half
	 * of the logins are also revoked (the auth service stops accepting the token): a reconnect
	 * with it is anonymous then.
	 */
	logoutStep(send) {
		const { r } = this;
		const inUse = this.live().map(s => s.who.token).filter(Boolean);
		const token = inUse.length && r.chance(0.85) ? r.pick(inUse) : r.pick(this.tokens);
		const revoke = this.logins.includes(token) && r.chance(0.5);
		const event = r.pick(["$user.logout", "$broadcast.$user.logout"]);
		const payload = r.chance(0.5) ? { authToken: token } : { data: { authToken: token } };
		const closed = this.live().filter(s => s.who.token === token);
		this.note(`broadcast ${event} ${short(payload)}${revoke ? " (revoked)" : ""} -> closes ${closed.map(s => s.name).join(",") || "nobody"}`);
		if (revoke) REVOKED.add(token);
		this.serverClose(closed);
		this.figures.logouts++;
		send(event, payload, r.chance(0.8) ? "broadcast" : "emit");
		return closed;
	}

	serverClose(sockets) {
		for (const s of sockets) {
			s.live = false;
			s.rooms = new Set();
			s.disconnects.push("io server disconnect");
			this.figures.serverClosed++;
		}
	}

	/** socket.disconnect by sid, userId, tenantId and their AND (§6, §9). */
	async disconnectCall() {
		const { r } = this;
		const live = this.live();
		const params = {};
		const by = r.some(["sid", "userId", "tenantId"], 1, 2);
		if (by.includes("sid")) params.sid = live.length && r.chance(0.8) ? r.pick(live).client.id : r.pick([...this.sockets.flatMap(s => s.sids), "nope"]);
		if (by.includes("userId")) params.userId = r.pick(USERS);
		if (by.includes("tenantId")) params.tenantId = r.pick([...TENANTS, "S4"]);
		const gateway = r.int(this.gateways); // the action answers for its own node (§9)
		const closed = live.filter(s => s.gateway === gateway && (params.sid === undefined || s.client.id === params.sid) &&
			(params.userId === undefined || s.who.userId === params.userId) &&
			(params.tenantId === undefined || s.who.tenantId === params.tenantId));
		const step = this.note(`call socket.disconnect on node ${gateway} ${short(params)} -> ${closed.map(s => s.name).join(",") || "nobody"}`);
		this.serverClose(closed);
		this.figures.disconnectCalls++;
		const reply = await this.c.producer.call("socket.disconnect", params, { nodeID: this.c.nodes[gateway].nodeID, timeout: 5000 })
			.catch(err => ({ error: err.message }));
		if (canonical(reply) !== canonical({ disconnected: closed.length })) {
			this.problem(step, `socket.disconnect ${short(params)}: ${short(reply)}, model { disconnected: ${closed.length} }`);
		}
	}

	// --- the barrier and the comparison -----------------------------------------------------------

	/** The node's socket.clients and socket.stats equal the model (polled: closes travel on their own path). */
	async waitNodeMatches(when) {
		let last = "";
		try {
			await h.waitFor(async () => {
				last = await this.nodeDiff();
				return last === "";
			}, 4000, { what: when, interval: 20 });
		} catch {
			this.problem(this.step - 1, `node state ${when}: ${last}`);
		}
	}

	async nodeDiff() {
		const diffs = await Promise.all(this.c.nodes.map((node, i) => this.nodeDiffOf(node, i)));
		return diffs.filter(Boolean).join("; ");
	}

	async nodeDiffOf(node, gateway) {
		const call = action => this.c.producer.call(`socket.${action}`, {}, { nodeID: node.nodeID, timeout: 5000 });
		const [clients, stats] = await Promise.all([call("clients"), call("stats")]);
		const live = this.live().filter(s => s.gateway === gateway);
		const diffs = [];
		const byId = new Map(clients.map(x => [x.id, x]));
		for (const s of live) {
			const x = byId.get(s.client.id);
			byId.delete(s.client.id);
			if (!x) {
				diffs.push(`${s.name} (${s.client.id}) missing from socket.clients`);
				continue;
			}
			const want = { userId: s.who.userId, tenantId: s.who.tenantId, anonymous: s.who.anonymous, rooms: [...s.rooms].sort() };
			const got = { userId: x.userId, tenantId: x.tenantId, anonymous: x.anonymous, rooms: [...x.rooms].sort() };
			if (canonical(got) !== canonical(want)) diffs.push(`${s.name}: node ${short(got, 400)}, model ${short(want, 400)}`);
			if (s.transports.length === 1 && x.transport !== s.transports[0]) diffs.push(`${s.name}: transport ${x.transport}, asked ${s.transports[0]}`);
		}
		for (const x of byId.values()) diffs.push(`socket.clients has ${x.id} (${short(x)}) that the model closed`);
		const anonymous = live.filter(s => s.who.anonymous).length;
		const rooms = new Set(live.flatMap(s => [...s.rooms])).size;
		const want = { total: live.length, anonymous, authenticated: live.length - anonymous, rooms };
		const got = { total: stats.connections.total, anonymous: stats.connections.anonymous,
			authenticated: stats.connections.authenticated, rooms: stats.rooms };
		if (canonical(got) !== canonical(want)) diffs.push(`socket.stats of node ${gateway} ${short(got)}, model ${short(want)}`);
		return diffs.join("; ");
	}

	/** Waits until each of `sockets` that the model closed has seen its close. */
	async waitServerCloses(sockets) {
		const closing = sockets.filter(s => s.client && s.client.disconnects.length < s.disconnects.length);
		await Promise.all(closing.map(s => h.waitFor(() => s.client.disconnects.length >= s.disconnects.length, 4000, { what: `${s.name} closed` })
			.catch(() => this.problem(this.step - 1, `${s.name}: still open, the model closed it (${short(s.client.disconnects)})`))));
	}

	async barrierAndCompare(batch) {
		const { c } = this;
		// Server-side closes the model expects have reached their clients.
		await this.waitServerCloses(this.sockets);
		const live = this.live();
		this.figures.liveSum += live.length;
		this.figures.anonymousSum += live.filter(s => s.who.anonymous).length;
		const clients = live.map(s => s.client);
		await (this.gateways > 1 ? crossBarrier(c, clients) : c.barrier(clients)).catch(err => this.problem(this.step - 1, `barrier: ${err.message}`));
		await this.waitNodeMatches("at the barrier");
		for (const s of this.sockets) this.compareSocket(s);
		await this.compareSubscribeEvents();
		this.emitted.clear();
		this.figures.batches = batch + 1;
	}

	compareSocket(s) {
		if (!s.client) return;
		const events = s.client.events;
		const got = events.slice(s.seen).filter(e => e.event !== "barrier" && e.event !== "connection-init");
		s.seen = events.length;
		const want = s.expected;
		s.expected = [];
		const matches = (w, g) => w.event === g.event &&
			(w.event === "pong" ? g.args.length === 1 && ISO_MS.test(g.args[0]) : canonical(w.args) === canonical(g.args));
		this.figures.deliveriesCompared += want.length;
		// Leaks and missing deliveries, as multisets; then, on one node (one path), the order sent.
		const pending = want.slice();
		const leaks = [];
		for (const g of got) {
			const i = pending.findIndex(w => matches(w, g));
			if (i >= 0) pending.splice(i, 1);
			else leaks.push(g);
		}
		for (const g of leaks) {
			const steps = this.emitted.get(canonical([g.event, ...g.args])) || [];
			this.problem(steps.length ? steps[0] : this.step - 1,
				`LEAK to ${s.name} (${short(s.who)}, rooms ${short([...s.rooms])}): ${g.event} ${short(g.args)} (sent by step ${steps.join(",") || "?"})`);
		}
		for (const w of pending) this.problem(w.step, `MISSING at ${s.name} (${short(s.who)}): ${w.event} ${short(w.args)} (step ${w.step})`);
		if (this.gateways === 1 && !leaks.length && !pending.length && !want.every((w, i) => matches(w, got[i]))) {
			this.problem(want[0].step, `${s.name}: every event arrived, in another order than sent: ${short(got.map(g => g.event), 300)}`);
		}
		const reasons = s.client.disconnects;
		if (canonical(reasons) !== canonical(s.disconnects)) this.problem(this.step - 1, `${s.name}: disconnects ${short(reasons)}, model ${short(s.disconnects)}`);
		const inits = events.filter(e => e.event === "connection-init").length;
		if (inits !== s.connects) this.problem(this.step - 1, `${s.name}: ${inits} connection-init, ${s.connects} connects`);
	}

	/** `$socket.subscribe.<roomParts>` for every accepted string subscribe, with the socket's tenant (§3). */
	async compareSubscribeEvents() {
		const want = this.expectedSubscribeEvents;
		this.expectedSubscribeEvents = [];
		const target = this.subscribeEventsSeen + want.length;
		await h.waitFor(() => this.c.subscribeEvents.length >= target, 4000, { what: "$socket.subscribe events", interval: 20 }).catch(() => {});
		const got = this.c.subscribeEvents.slice(this.subscribeEventsSeen);
		this.subscribeEventsSeen = this.c.subscribeEvents.length;
		const pending = want.slice();
		for (const g of got) {
			const i = pending.findIndex(w => w.event === g.event && canonical(w.params) === canonical(g.params));
			if (i >= 0) pending.splice(i, 1);
			else this.problem(this.step - 1, `unexpected ${g.event} ${short(g.params)}`);
		}
		for (const w of pending) this.problem(w.step, `no ${w.event} ${short(w.params)} (step ${w.step})`);
	}

	/** The failure message: seed, step, what differed, the steps before it. */
	report(step, what) {
		const from = Math.max(0, step - 19);
		const recent = [];
		for (let i = from; i <= Math.min(step, this.step - 1); i++) recent.push(`  #${i} ${this.steps[i]}`);
		return [`isolation model: seed ${this.seed} (replay: ISOLATION_SEED=${this.seed} ISOLATION_STEPS=${STEPS} ISOLATION_BATCH=${BATCH}), step ${step}:`,
			what, `steps ${from}..${step}:`, ...recent].join("\n");
	}

	async run(total) {
		try {
			return await this.batches(total);
		} finally {
			if (process.env.ISOLATION_DUMP) require("fs").writeFileSync(process.env.ISOLATION_DUMP, this.steps.map((x, i) => `#${i} ${x}`).join("\n"));
		}
	}

	async batches(total) {
		let batch = 0;
		while (this.step < total) {
			const n = Math.min(BATCH, total - this.step);
			const clientSteps = Math.max(1, Math.round(n * (0.35 + this.r.next() * 0.3)));
			await this.clientPhase(clientSteps);
			await this.producerPhase(n - clientSteps);
			await this.barrierAndCompare(batch++);
			if (this.problems.length) {
				const first = this.problems.reduce((a, b) => (b.step < a.step ? b : a));
				const list = this.problems.slice(0, 25).map(p => `- step ${p.step}: ${p.text}`);
				if (this.problems.length > 25) list.push(`- ... ${this.problems.length - 25} more`);
				throw new Mismatch(this.report(first.step, `${this.problems.length} mismatch(es) in batch ${batch - 1}:\n${list.join("\n")}`));
			}
		}
		return this.figures;
	}
}

const GATEWAYS = (process.env.ISOLATION_GATEWAYS || "1,2").split(",").map(Number);
const BUS_NAME = process.env.INTEROP_BUS || "nats";

for (const gateways of GATEWAYS) {
	describe(`steedos socket: tenant isolation, model-based, ${gateways} gateway node(s) (issue 9)`, () => {
		let c;
		before(async () => {
			console.log(`isolation model: seed ${SEED}, ${STEPS} steps, batches of ${BATCH}, ${gateways} gateway node(s), bus ${BUS_NAME}`);
			c = await startCluster({ gateways, extra: { gateway: { maxRoomsPerSocket: MAX_ROOMS } }, logLevel: "info" });
			if (gateways > 1) await waitGatewaysKnowEachOther(c);
		});
		after(async () => {
			if (c) await c.stop();
		});

		it(`random steps agree with the contract's model: 0 leaks, 0 missing deliveries (seed ${SEED})`, async t => {
			const started = Date.now();
			const run = new IsolationRun(c, SEED);
			const figures = await run.run(STEPS).catch(err => {
				// Anything else that went wrong (a stuck call, a dead node) also names the seed and the steps.
				throw err instanceof Mismatch ? err : new Error(run.report(run.step - 1, err.stack || String(err)));
			});
			const f = figures;
			const line = `isolation model: seed ${SEED}, ${gateways} node(s), ${BUS_NAME}: ${f.steps} steps in ${f.batches} batches, ` +
				`${f.deliveriesCompared} deliveries compared, ${f.acksCompared} acks (${f.refusals} refusals), ` +
				`${f.producerEvents} producer events (${f.pairsChecked} event x socket pairs checked), ${f.connects} connects ` +
				`(${(f.liveSum / f.batches).toFixed(1)} sockets live at a barrier on average, ${(f.anonymousSum / f.batches).toFixed(1)} anonymous), ` +
				`${f.logouts} logouts, ${f.disconnectCalls} socket.disconnect calls, ${f.serverClosed} server-side closes, ` +
				`${((Date.now() - started) / 1000).toFixed(1)} s`;
			console.log(line);
			t.diagnostic(line);
		});
	});
}
