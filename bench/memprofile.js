"use strict";
// One idle-memory run of bench/memprofile.sh (issue 11): a real nats-server, the fixture's mock
// auth service (tests/interop/steedos/fixture.js startCluster), the product binary and `--clients`
// Steedos-like clients of build/load-client --plan. Waits until every client is connected,
// authenticated and subscribed (the load client's ready line, then socket.stats), lets the node
// settle, then either
//   - without --heaptrack: prints the node's RSS before any client and with all of them, from
//     /proc/<pid>/status (`RESULT rss clients= rss0_kb= rssN_kb= per_client_bytes=`), or
//   - with --heaptrack: the node runs under heaptrack (STEEDOS_BUILD_DIR points at a directory whose
//     `steedos-socket` is a wrapper that execs heaptrack, see memprofile.sh); at idle the node is
//     killed with SIGKILL, so the allocations heaptrack still counts live are the idle live set
//     (a SIGTERM would close every client and free it). bench/heaptrack_live.js reads the file.
//
//   node bench/memprofile.js --clients 2000 [--workload issue|soak|plain] [--reply mock|steedos]
//                            [--browser-headers] [--long-ids] [--heaptrack] [--settle-ms 3000]
//
// Workloads (both use the fixture's login(): one token per user, cookies `X-Space-Id` /
// `X-Auth-Token`):
//   issue  as issue 11 describes it: 50 users over 5 tenants (user k in tenant S<k%5+1>), client i
//          is user i%50; each subscribes `space`, and individual `me` and `notification-change`
//          (3 subscribe calls, 3 rooms: `<tenant>-space`, `<tenant>-me-<user>`, ...).
//   soak   bench/steedos_load.js population(), as bench/soak.js: two tabs per user, `space`,
//          individual `notification-change` and two record rooms (4 rooms).
//   plain  no cookie, no subscription (an anonymous socket.io client), for comparison.
// --reply mock|steedos: what the auth action answers. mock: the fixture's `{ userId, spaceId }`.
// steedos: that reply with the fields a Steedos getUserSession reply also carries (STEEDOS_REPLY:
// representative values, not captured from a Steedos server), since the node keeps the reply per
// socket.
const fs = require("fs");
const { startCluster, h } = require("../tests/interop/steedos/fixture");
const { population, issuePlan, startLoadClient, rssKb, arg } = require("./steedos_load");

const CLIENTS = Number(arg("clients", 2000));
const WORKLOAD = arg("workload", "issue");
const HEAPTRACK = process.argv.includes("--heaptrack");
const REPLY = arg("reply", "mock");
// --browser-headers: the clients send the headers a desktop Chrome sends (load-client's option), which
// the node copies per connection with the handshake.
const BROWSER_HEADERS = process.argv.includes("--browser-headers");
// --long-ids: user and tenant ids of a Steedos (Meteor) id's length, 17 characters, instead of `u12`
// and `S1`: room names and tokens then no longer fit std::string's 15-character inline buffer.
const LONG_IDS = process.argv.includes("--long-ids");
const SETTLE_MS = Number(arg("settle-ms", 3000)); // a deliberate idle period before measuring

const log = text => process.stderr.write(`memprofile: ${text}\n`);

/** The fields of a Steedos user session besides userId and spaceId (@steedos/auth's
 * SteedosUserSession and what the accounts service adds), with values of typical lengths. */
const STEEDOS_REPLY = {
	name: "Zhang Wei",
	username: "zhangwei",
	email: "zhangwei@example.com",
	steedos_id: "zhangwei@example.com",
	roles: ["user"],
	profile: "user",
	is_space_admin: false,
	companyId: "Q8bXs6fWmGkR3tYpL",
	companyIds: ["Q8bXs6fWmGkR3tYpL"],
	company: { _id: "Q8bXs6fWmGkR3tYpL", name: "Head office" },
	space: { _id: "S1", name: "Example Ltd" },
	utcOffset: 8,
	locale: "zh-cn",
	language: "zh-CN",
	permission_shortcut: false
};

/** A Moleculer middleware (of the fixture's brokers) that adds STEEDOS_REPLY to each session the
 * mock auth action answers. */
const steedosReply = {
	localAction(handler, action) {
		if (action.name !== "@steedos/service-accounts.getUserSession") return handler;
		return async ctx => {
			const session = await handler(ctx);
			return session && typeof session === "object" ? Object.assign({}, session, STEEDOS_REPLY, { space: { _id: session.spaceId, name: "Example Ltd" } }) : session;
		};
	}
};

/** The pid of the product under the heaptrack wrapper (a child of the heaptrack script). */
function productPid(wrapperPid) {
	for (const task of fs.readdirSync(`/proc/${wrapperPid}/task`)) {
		const children = fs.readFileSync(`/proc/${wrapperPid}/task/${task}/children`, "utf8").trim().split(/\s+/);
		for (const pid of children.filter(Boolean)) {
			const comm = fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim();
			if (comm === "steedos-socket") return Number(pid);
		}
	}
	throw new Error(`no steedos-socket child of ${wrapperPid}`);
}

/** Milliseconds since `pid` started (/proc: start time in clock ticks since boot, 100 per second). */
function msSinceStart(pid) {
	const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
	const startTicks = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
	const uptime = Number(fs.readFileSync("/proc/uptime", "utf8").split(" ")[0]);
	return Math.round(uptime * 1000 - startTicks * 10);
}

async function main() {
	if (!["issue", "soak", "plain"].includes(WORKLOAD)) throw new Error(`--workload ${WORKLOAD}: issue, soak or plain`);
	if (!["mock", "steedos"].includes(REPLY)) throw new Error(`--reply ${REPLY}: mock or steedos`);
	if (LONG_IDS && WORKLOAD === "soak") throw new Error("--long-ids: with --workload issue or plain");
	// The handshake rate limit (default 2,000/s) would refuse some of the clients connecting at full
	// speed, and the load client gives up after too many refusals: lifted, this run measures the
	// idle footprint, not admission control.
	const cluster = await startCluster({
		logLevel: "info",
		extra: { gateway: { maxHandshakesPerSecond: 1000000 } },
		broker: REPLY === "steedos" ? { middlewares: [steedosReply] } : {}
	});
	const pid = HEAPTRACK ? productPid(cluster.node.pid) : cluster.node.pid;
	try {
		await measure(cluster, pid);
	} finally {
		// The harness stops the heaptrack script, not the node under it.
		if (HEAPTRACK && fs.existsSync(`/proc/${pid}`)) process.kill(pid, "SIGKILL");
	}
}

async function measure(cluster, pid) {
	const { node, port } = cluster;
	const rss0 = rssKb(pid).rss;
	log(`nats ${cluster.nats.url}, steedos-socket pid ${pid}${HEAPTRACK ? " (under heaptrack)" : ""}, rss ${rss0} KiB with 0 clients`);
	const plan = WORKLOAD === "soak" ? population({ clients: CLIENTS }) : issuePlan({ clients: CLIENTS, plain: WORKLOAD === "plain", longIds: LONG_IDS });
	// heaptrack stamps its records with the milliseconds since the process started: the analysis
	// counts what was live before this moment as the node's own, not the clients'.
	if (HEAPTRACK) console.log(`RESULT heaptrack_t0 ms=${msSinceStart(pid)}`);
	const lc = await startLoadClient({ port, clients: CLIENTS, planFile: plan.planFile, args: ["--concurrency", "256", ...(BROWSER_HEADERS ? ["--browser-headers"] : [])] });
	// The load client is ready when every client has its CONNECT reply and every subscribe ack
	// said `rooms` (a refusal is fatal there); the node must also count them all.
	const stats = await cluster.stats();
	if (stats.connections.total !== CLIENTS) throw new Error(`socket.stats: ${stats.connections.total} connections, not ${CLIENTS}`);
	log(`${CLIENTS} clients (${WORKLOAD}) connected, authenticated and subscribed in ${lc.connectSeconds.toFixed(1)} s; ` +
		`auth calls ${cluster.authCalls.length}; settling ${SETTLE_MS} ms (deliberate idle period)`);
	await h.sleep(SETTLE_MS);
	const rssN = rssKb(pid).rss;
	const perClient = ((rssN - rss0) * 1024) / CLIENTS;
	console.log(`RESULT rss clients=${CLIENTS} workload=${WORKLOAD} reply=${REPLY} browser_headers=${BROWSER_HEADERS ? 1 : 0} long_ids=${LONG_IDS ? 1 : 0} heaptrack=${HEAPTRACK ? 1 : 0} rss0_kb=${rss0} rssN_kb=${rssN} ` +
		`per_client_bytes=${perClient.toFixed(0)} auth_calls=${cluster.authCalls.length}`);
	if (HEAPTRACK) {
		// Nothing is allocated during the settle period, and what heaptrack has seen is in its pipe
		// (checked: its live set matched the RSS slope within 0.1 % at 10,000 clients); the kill
		// leaves the idle live set as "not freed".
		process.kill(pid, "SIGKILL");
		await h.withTimeout(node.exited, 600000, "heaptrack writing its file");
	}
	await lc.stop();
	await cluster.stop();
}

main().then(
	() => process.exit(0),
	err => {
		console.error(err);
		process.exit(2);
	}
);
