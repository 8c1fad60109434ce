"use strict";
// Shared by bench/soak.js and bench/faults.js: a population of Steedos users for
// bench/load_client.cpp in --plan mode, the events that reach them, and the load client process.
//
// Population (users of the fixture's mock auth service, tests/interop/steedos/fixture.js login()):
// client i is a login of user `u<i/2>` (two tabs per user); every tenth user is a member of two
// tenants with one token, and its second tab uses the second tenant. Each client subscribes
// `space` (its tenant's room), `notification-change` individual (its personal room) and two
// records of its tenant, `record:orders:change-<id>` (about five subscribers per record).
// Targets: 0 global, then one per tenant, per (tenant, user) personal room and per record room;
// every event carries the marker `~<target>~<seq>~<t>~` (seq per target from 0, t = CLOCK_MONOTONIC
// ns of the emit), which the load client checks.
const fs = require("fs");
const os = require("os");
const path = require("path");
const { spawn } = require("child_process");
const { h, login } = require("../tests/interop/steedos/fixture");

const LOAD_CLIENT = path.join(h.BUILD_DIR, "load-client");
const now = () => Number(process.hrtime.bigint()); // CLOCK_MONOTONIC ns, as the load client's

/** Deterministic PRNG (mulberry32), so a population is the same for the same size. */
function rng(seed) {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

/**
 * Builds `clients` logins over `tenants` tenants and writes the plan file. With `subscribe: false`
 * the clients only authenticate (they receive global events). Returns { planFile, targets, byKind }:
 * targets[id] = { kind, tenant, user?, record?, seq }, byKind[kind] = [ids].
 */
function population({ clients, tenants = 5, recordsPerClient = 2, subscribersPerRecord = 5, subscribe = true, seed = 1 }) {
	const random = rng(seed);
	const tenantNames = Array.from({ length: tenants }, (_, i) => `S${i + 1}`);
	const targets = [{ kind: "global", seq: 0 }];
	const byKind = { global: [0], tenant: [], personal: [], record: [] };
	const add = t => {
		targets.push(Object.assign({ seq: 0 }, t));
		byKind[t.kind].push(targets.length - 1);
		return targets.length - 1;
	};
	const tenantTarget = {};
	for (const tenant of tenantNames) tenantTarget[tenant] = add({ kind: "tenant", tenant });
	// Which tenant each client is in.
	const clientTenant = [];
	const cookies = [];
	const users = [];
	for (let i = 0; i < clients; i += 2) {
		const u = i / 2;
		const userId = `u${u}`;
		const home = tenantNames[u % tenants];
		const second = tenants > 1 && u % 10 === 9 ? tenantNames[(u + 1) % tenants] : null;
		const spaces = second ? [home, second] : [home];
		const { cookies: userCookies } = login(userId, ...spaces);
		for (let tab = 0; tab < 2 && i + tab < clients; tab++) {
			const which = second && tab === 1 ? 1 : 0;
			cookies.push(userCookies[which]);
			clientTenant.push(spaces[which]);
			users.push(userId);
		}
	}
	const lines = [];
	const personal = {};
	const recordPools = {};
	for (const tenant of tenantNames) {
		const members = clientTenant.filter(t => t === tenant).length;
		recordPools[tenant] = Array.from({ length: Math.max(1, Math.ceil((members * recordsPerClient) / subscribersPerRecord)) }, () => null);
	}
	for (let i = 0; i < clients; i++) {
		const tenant = clientTenant[i];
		const fields = [cookies[i]];
		if (subscribe) {
			fields.push(`${tenantTarget[tenant]},0,space`);
			const key = `${tenant}-${users[i]}`;
			if (personal[key] === undefined) personal[key] = add({ kind: "personal", tenant, user: users[i] });
			fields.push(`${personal[key]},1,notification-change`);
			const pool = recordPools[tenant];
			const picked = new Set();
			while (picked.size < Math.min(recordsPerClient, pool.length)) picked.add(Math.floor(random() * pool.length));
			for (const r of picked) {
				if (pool[r] === null) pool[r] = add({ kind: "record", tenant, record: `${tenant.toLowerCase()}r${r}` });
				fields.push(`${pool[r]},0,record:orders:change-${targets[pool[r]].record}`);
			}
		}
		lines.push(fields.join("\t"));
	}
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "steedos-load-"));
	const planFile = path.join(dir, "plan.txt");
	fs.writeFileSync(planFile, lines.join("\n") + "\n");
	return { planFile, dir, targets, byKind };
}

/** The Steedos subscriptions of issue 11's idle-memory workload: `space`, and individual `me` and
 * `notification-change` (3 rooms per client), all as target 0 (no event is checked per room). */
const ISSUE_SUBSCRIPTIONS = ["0,0,space", "0,1,me", "0,1,notification-change"];

/**
 * Issue 11's Steedos-like clients as a --plan file: `users` logins (fixture login(), cookies
 * `X-Space-Id` / `X-Auth-Token`), user u in tenant S<u % tenants + 1>, client i is user i % users
 * and sends `subscriptions` (plan fields `<target>,<individual 0|1>,<roomParts>`). `plain`: no
 * cookie, no subscription (an anonymous client). `longIds`: user and tenant ids of a Steedos (Meteor)
 * id's length, 17 characters. Returns { planFile }.
 */
function issuePlan({ clients, users = 50, tenants = 5, subscriptions = ISSUE_SUBSCRIPTIONS, plain = false, longIds = false }) {
	const id = (prefix, n) => (longIds ? `${prefix}${String(n).padStart(16, "0")}` : `${prefix}${n}`);
	const cookies = [];
	for (let u = 0; u < users; u++) cookies.push(login(id("u", u), id("S", (u % tenants) + 1)).cookies[0]);
	const lines = [];
	for (let i = 0; i < clients; i++) lines.push(plain ? "" : [cookies[i % users], ...subscriptions].join("\t"));
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "steedos-plan-"));
	const planFile = path.join(dir, "plan.txt");
	fs.writeFileSync(planFile, lines.join("\n") + "\n");
	return { planFile, dir };
}

/**
 * Emits the next event of `target` through `producer`, as a Steedos service would: global and
 * tenant events with `$socket.emit`, personal ones as `$broadcast.$notification.users`, record
 * ones with `$socket.emit` to the record's room (`@objectRecordEvent` has no field for a marker).
 * `pad` adds that many bytes to the payload.
 */
/** The Steedos event mix of the soak and the dashboard run: weights per target kind (a global
 * event reaches every client, so it is rare). */
const MIX = [["global", 1], ["tenant", 4], ["personal", 495], ["record", 500]];

/** A function returning the id of a random target of `pop`, its kind drawn by MIX's weights. */
function targetPicker(pop, random) {
	const weightTotal = MIX.reduce((a, [, w]) => a + w, 0);
	return () => {
		let r = random() * weightTotal;
		for (const [kind, w] of MIX) {
			if ((r -= w) < 0) {
				const ids = pop.byKind[kind];
				return ids[Math.floor(random() * ids.length)];
			}
		}
		return 0;
	};
}

function emitTo(producer, targets, id, pad = "") {
	const t = targets[id];
	const m = `~${id}~${t.seq++}~${now()}~`;
	switch (t.kind) {
		case "global":
			return producer.emit("$socket.emit", { eventName: "soak", eventParams: { m, pad } });
		case "tenant":
			return producer.emit("$socket.emit", { eventName: "soak", eventParams: { m, pad }, room: `${t.tenant}-space` });
		case "personal":
			return producer.broadcast("$broadcast.$notification.users", { data: { tenantId: t.tenant, users: [t.user], message: m } });
		case "record":
			return producer.emit("$socket.emit", {
				eventName: `s:record:orders:change-${t.record}`,
				eventParams: { _id: t.record, m },
				room: `${t.tenant}-record:orders:change-${t.record}`
			});
		default:
			throw new Error(`unknown target kind ${t.kind}`);
	}
}

/**
 * Starts build/load-client in --plan mode and waits until every client is connected and
 * subscribed. Returns { pid, child, command(line, prefix, ms), send(line), stop() }; the
 * RESULT lines are parsed into objects (h.parseResult).
 */
async function startLoadClient({ port, clients, planFile, args = [], readyMs = 300000 }) {
	if (!fs.existsSync(LOAD_CLIENT)) throw new Error(`${LOAD_CLIENT} missing: cmake --build build --target load-client`);
	const child = spawn(LOAD_CLIENT, ["--port", String(port), "--clients", String(clients), "--no-control",
		"--plan", planFile, "--timeout-s", String(Math.ceil(readyMs / 1000)), ...args], { stdio: ["pipe", "pipe", "pipe"] });
	h.track(child); // killed with the run (Ctrl-C, an error), as the harness kills its nodes
	child.stderr.setEncoding("utf8");
	child.stderr.on("data", chunk => process.stderr.write(chunk.replace(/^(?=.)/gm, "  [load-client] ")));
	const results = h.resultLines(child, { name: "load-client" });
	const next = (prefix, ms) => h.withTimeout(results.next(prefix), ms, `load-client ${prefix}`);
	const parse = h.parseResult;
	const connect = parse(await next("RESULT connect", readyMs + 5000));
	await next("RESULT interactive ready", 5000);
	const lc = {
		pid: child.pid,
		child,
		connectSeconds: connect.seconds,
		send(line) {
			child.stdin.write(`${line}\n`);
		},
		/** Sends `line` and resolves the parsed RESULT line starting with `prefix`. */
		async command(line, prefix, ms = 60000) {
			child.stdin.write(`${line}\n`);
			return parse(await next(prefix, ms));
		},
		async stop() {
			if (child.exitCode !== null || child.signalCode !== null) return;
			child.stdin.end("quit\n");
			await h.withTimeout(new Promise(r => (child.exitCode !== null ? r() : child.once("exit", r))), 10000, "load-client exit")
				.catch(() => child.kill("SIGKILL"));
		}
	};
	return lc;
}

/** Reads the marked deliveries of one load client since the last window: check, then window. */
async function checkAndWindow(lc, quietMs, timeoutMs) {
	const check = await lc.command(`check ${quietMs} ${timeoutMs}`, "RESULT check_soak", timeoutMs + 30000);
	const window = await lc.command("window", "RESULT window");
	return { check, window };
}

/** Emits `count` events at `rate` per second, stamped at their emit; resolves the first emit's time. */
async function paced(rate, count, emitOne) {
	const start = now();
	let sent = 0;
	while (sent < count) {
		const due = Math.min(count, Math.floor(((now() - start) / 1e9) * rate) + 1);
		while (sent < due) emitOne(sent++);
		await new Promise(r => setTimeout(r, 1));
	}
	return start;
}

/** RSS and peak RSS (VmHWM) of `pid` in KiB, from /proc. */
function rssKb(pid) {
	const text = fs.readFileSync(`/proc/${pid}/status`, "utf8");
	const field = name => Number((new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(text) || [])[1] || 0);
	return { rss: field("VmRSS"), hwm: field("VmHWM") };
}

const median = values => {
	const v = values.slice().sort((a, b) => a - b);
	if (!v.length) return 0;
	return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};

/** Reads a `--name value` argument. */
function arg(name, fallback) {
	const i = process.argv.indexOf(`--${name}`);
	return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

module.exports = { population, issuePlan, ISSUE_SUBSCRIPTIONS, emitTo, startLoadClient, checkAndWindow, paced, rssKb, median, arg, now, rng, MIX, targetPicker };
