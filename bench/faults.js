"use strict";
// Faults with figures (issue 9): the product binary (build/steedos-socket) with a real nats-server,
// a moleculer 0.14 producer, the fixture's mock auth service and Steedos users as
// bench/load_client.cpp --plan clients (bench/steedos_load.js). One summary line per scenario.
//
//   bench/faults.sh [--only nats,slow,storm] [--clients N] [--outage-s 30] [--storm-clients 10000]
//
// nats   N clients (default 1,000; global events at 10/s before, during and after): nats-server
//        stopped for --outage-s, then started on the same port. Clients dropped (the load client
//        counts closes), the node's "connection restored; announcing the node again", the INFO the
//        producer receives from it, the time from NATS's return until an event emitted after it
//        reaches every client (resolution: the 100 ms between emits), and what became of the
//        events emitted during the outage. Node and brokers use the repo's heartbeats (10 s / 30 s).
// slow   N clients, one global event of ~2 KB every 10 ms to all. 20 s without a slow consumer;
//        then --slow-cycles times (default 3): client k (16 KiB receive buffer) stops reading until
//        the node closes it (its log: "slow consumer, <bytes> queued"), then 20 s without. p99 of
//        the others: median of the "with" windows against the median of the "without" ones (they
//        alternate, so a drift of the machine's load counts on both sides); the node's RSS rise
//        during each stall; every other client must have every event.
// storm  --storm-clients clients (default 10,000) connected and subscribed; the node gets SIGTERM
//        (drain), a new process starts on the same port as soon as the old one has exited, and every
//        client reconnects at once (retrying every 500 ms while the port is closed, re-subscribing).
//        All served (connected, authenticated, subscribed): count and time; peak RSS (VmHWM) of
//        the new node.
const { startCluster, startGateway, gatewayPort, h } = require("../tests/interop/steedos/fixture");
const { population, emitTo, startLoadClient, rssKb, median, arg, now } = require("./steedos_load");

const ONLY = String(arg("only", "nats,slow,storm")).split(",");
const CLIENTS = Number(arg("clients", 1000));
const OUTAGE_S = Number(arg("outage-s", 30));
const STORM_CLIENTS = Number(arg("storm-clients", 10000));
const log = text => process.stderr.write(`faults: ${text}\n`);
const summaries = [];

/** Emits the global target every `everyMs` until stop(); returns { stop, emits: [{ seq, t }] }. */
function globalTicker(producer, pop, everyMs, pad = "") {
	const emits = [];
	let timer = null;
	const tick = () => {
		emits.push({ seq: pop.targets[0].seq, t: now() });
		emitTo(producer, pop.targets, 0, pad);
	};
	timer = setInterval(tick, everyMs);
	return { emits, stop: () => clearInterval(timer) };
}

async function natsOutage() {
	const HB = { heartbeatInterval: 10, heartbeatTimeout: 30 }; // moleculer.config.json's
	const c = await startCluster({ logLevel: "info", broker: HB, extra: HB });
	try {
		const infos = [];
		const processNodeInfo = c.producer.registry.processNodeInfo.bind(c.producer.registry);
		c.producer.registry.processNodeInfo = payload => {
			if (payload.sender === c.node.nodeID) infos.push(now());
			return processNodeInfo(payload);
		};
		const nodeEvents = [];
		c.producer.localBus.on("$node.disconnected", ({ node }) => node.id === c.node.nodeID && nodeEvents.push(`disconnected ${msSince()}`));
		c.producer.localBus.on("$node.connected", ({ node, reconnected }) => node.id === c.node.nodeID && nodeEvents.push(`connected again (reconnected: ${reconnected}) ${msSince()}`));
		// The producer's own NATS client (nats 2.x): when it is back (moleculer 0.14 sends no INFO
		// or DISCOVER after a reconnect of a 2.x client, so an INFO the node sent before that is missed).
		const producerStatus = [];
		(async () => {
			for await (const st of c.producer.transit.tx.client.status()) producerStatus.push({ type: st.type, t: now() });
		})().catch(() => {});
		const msSince = () => `${((now() - tStop) / 1e6).toFixed(0)} ms after the stop`;
		const pop = population({ clients: CLIENTS, subscribe: false });
		const lc = await startLoadClient({ port: c.port, clients: CLIENTS, planFile: pop.planFile, args: ["--concurrency", "256"] });
		const ticker = globalTicker(c.producer, pop, 100);
		await h.sleep(5000);
		const tStop = now();
		await c.nats.stop();
		log(`nats-server stopped; outage of ${OUTAGE_S} s (deliberate)`);
		await h.sleep(OUTAGE_S * 1000);
		await c.nats.restart();
		const tBack = now();
		log("nats-server back on the same port");
		const restored = await c.node.waitForLog(/connection restored; announcing the node again/, 30000).then(() => now(), () => 0);
		await h.sleep(10000);
		ticker.stop();
		await h.sleep(2000);
		lc.send(`total 0 ${pop.targets[0].seq}`);
		const check = await lc.command("check 3000 30000", "RESULT check_soak", 40000);
		const { counts } = await lc.command("receivers 0", "RESULT receivers");
		const receivers = String(counts).split(",").map(Number);
		await lc.stop();
		const phase = e => (e.t < tStop ? "before" : e.t < tBack ? "outage" : "after");
		const tally = { before: [0, 0, 0], outage: [0, 0, 0], after: [0, 0, 0] }; // all, some, none
		for (const e of ticker.emits) {
			const n = receivers[e.seq] || 0;
			tally[phase(e)][n === CLIENTS ? 0 : n > 0 ? 1 : 2]++;
		}
		const firstAfter = ticker.emits.find(e => e.t >= tBack && receivers[e.seq] === CLIENTS);
		const flowMs = firstAfter ? (firstAfter.t - tBack) / 1e6 : NaN;
		const infoAfter = infos.find(t => t >= tStop);
		const producerBack = producerStatus.find(st => st.type === "reconnect" && st.t >= tStop);
		const rel = t => (t ? `${((t - tBack) / 1e6).toFixed(0)} ms` : "never");
		const fmt = ([all, some, none]) => `${all} to all, ${some} to some, ${none} to none`;
		log(`after NATS's return: node log "connection restored" ${rel(restored)}; producer's NATS client reconnected ${rel(producerBack && producerBack.t)}; ` +
			`an INFO of the node at the producer ${rel(infoAfter)}; producer registry: ${nodeEvents.join(", ") || "no change"}`);
		log(`events before: ${fmt(tally.before)}; during the outage: ${fmt(tally.outage)}; after: ${fmt(tally.after)}`);
		summaries.push(`nats outage ${OUTAGE_S} s, ${CLIENTS} clients: ${check.closed} dropped, node re-announced ${rel(restored)} after NATS returned ` +
			`(INFO at the producer: ${rel(infoAfter)}; its client back ${rel(producerBack && producerBack.t)}), events flow again after ${flowMs.toFixed(0)} ms, ` +
			`outage events: ${tally.outage[0] + tally.outage[1] + tally.outage[2]} emitted, ${tally.outage[0]} delivered to all, ${tally.outage[2]} lost`);
		return !check.closed && flowMs < 5000;
	} finally {
		await c.stop();
	}
}

// A client that stops reading stops answering pings too: with the default heartbeat (25 s + 20 s)
// the node closes it for "ping timeout" after at most 45 s, before ~2 KB events at 100/s have filled
// the kernel's socket buffers and then 4 MiB of its queue. So this scenario stretches the heartbeat
// to see the queue's budget at work (the first run, with the defaults, is in the README).
const SLOW_GATEWAY = { pingInterval: 120000, pingTimeout: 60000 };
const SLOW_CYCLES = Number(arg("slow-cycles", 3));

async function slowConsumer() {
	const c = await startCluster({ logLevel: "info", extra: { gateway: SLOW_GATEWAY } });
	try {
		const pop = population({ clients: CLIENTS, subscribe: false });
		const lc = await startLoadClient({ port: c.port, clients: CLIENTS, planFile: pop.planFile,
			args: ["--concurrency", "256", "--small-rcvbuf", String(SLOW_CYCLES)] });
		const pad = "x".repeat(2000);
		const rss = [];
		const sampler = setInterval(() => rss.push({ t: now(), kb: rssKb(c.node.pid).rss }), 200);
		const ticker = globalTicker(c.producer, pop, 10, pad);
		await h.sleep(2000);
		await lc.command("window", "RESULT window"); // the first 2 s: connections warm up
		const without = [];
		const withIt = [];
		const cycles = [];
		await h.sleep(20000);
		without.push(await lc.command("window", "RESULT window"));
		for (let k = 0; k < SLOW_CYCLES; k++) {
			const rssBefore = median(rss.filter(s => s.t >= now() - 10e9).map(s => s.kb));
			const tB = now();
			await lc.command(`stall ${k}`, "RESULT stall");
			const closedLines = () => c.node.logs.filter(l => /slow consumer, \d+ bytes queued; closing/.test(l.line));
			const closed = await h.waitFor(() => closedLines()[k], 150000, { interval: 100, what: `slow consumer ${k} closed` }).catch(() => null);
			const tClosed = now();
			withIt.push(await lc.command("window", "RESULT window"));
			const peak = Math.max(...rss.filter(s => s.t >= tB && s.t <= tClosed).map(s => s.kb));
			const probe = await lc.command(`probe ${k}`, "RESULT probe");
			await h.sleep(20000); // without it again
			without.push(await lc.command("window", "RESULT window"));
			const queued = closed ? Number(/slow consumer, (\d+) bytes/.exec(closed.line)[1]) : NaN;
			cycles.push({ seconds: (tClosed - tB) / 1e9, queued, rssUp: (peak - rssBefore) / 1024, tcp: probe.tcp_state });
			log(`cycle ${k + 1}: client ${k} stopped reading, closed after ${((tClosed - tB) / 1e9).toFixed(1)} s with ${queued} bytes queued; ` +
				`node RSS +${((peak - rssBefore) / 1024).toFixed(1)} MiB; its TCP state ${probe.tcp_state} (7 = closed, reset); ` +
				`p99 of the others ${withIt[k].p99_ms} ms with it, ${without[k + 1].p99_ms} ms after`);
		}
		ticker.stop();
		clearInterval(sampler);
		await h.sleep(1000);
		lc.send(`total 0 ${pop.targets[0].seq}`);
		const check = await lc.command("check 3000 30000", "RESULT check_soak", 40000);
		await lc.stop();
		const p99With = median(withIt.map(w => w.p99_ms));
		const p99Without = median(without.map(w => w.p99_ms));
		const change = ((p99With - p99Without) / p99Without) * 100;
		log(`p99 without: ${without.map(w => w.p99_ms).join(", ")} ms; with: ${withIt.map(w => w.p99_ms).join(", ")} ms; ` +
			`others: ${check.delivered} delivered, ${check.lost} lost, ${check.duplicated} duplicated, ${check.closed} closed (the ${SLOW_CYCLES} stalled ones)`);
		const allClosed = cycles.every(x => x.queued <= 4194304);
		summaries.push(`slow consumer, ${CLIENTS} clients, 100 events/s of ~2 KB (pingInterval ${SLOW_GATEWAY.pingInterval / 1000} s), ${SLOW_CYCLES} times: ` +
			`closed ("slow consumer") after ${cycles.map(x => x.seconds.toFixed(0)).join("/")} s with ${cycles.map(x => x.queued).join("/")} bytes queued (budget 4194304), ` +
			`node RSS +${cycles.map(x => x.rssUp.toFixed(1)).join("/")} MiB; others' p99 ${p99With} ms with vs ${p99Without} ms without (medians): ` +
			`${change >= 0 ? "+" : ""}${change.toFixed(1)} %; others lost ${check.lost}`);
		return allClosed && change < 20 && !check.lost;
	} finally {
		await c.stop();
	}
}

async function storm() {
	const N = STORM_CLIENTS;
	const c = await startCluster({ logLevel: "info" });
	let fresh = null;
	try {
		const pop = population({ clients: N });
		const lc = await startLoadClient({ port: c.port, clients: N, planFile: pop.planFile,
			args: ["--concurrency", "512", "--reconnect", "--retry-ms", "500"] });
		log(`${N} clients connected and subscribed in ${lc.connectSeconds.toFixed(1)} s; SIGTERM to the node`);
		const tTerm = now();
		const stopped = await c.node.stop("SIGTERM", 15000);
		fresh = await startGateway({ nats: c.nats, logLevel: "info", extra: { auth: { timeout: 1000 }, gateway: { port: c.port } } });
		const tSpawn = now();
		await gatewayPort(fresh);
		const tListen = now();
		const ready = await lc.command(`ready ${N} 180000`, "RESULT ready", 190000);
		const mem = rssKb(fresh.pid);
		await h.waitForRemoteNode(c.producer, fresh.nodeID, ["socket.stats"], 10000);
		const stats = await c.producer.call("socket.stats", {}, { nodeID: fresh.nodeID, timeout: 5000 });
		await lc.stop();
		const served = ready.count === N && ready.done_ns > 0;
		const s = t => ((t - tListen) / 1e9).toFixed(2);
		log(`old node exit ${stopped.code} after ${stopped.ms} ms; new process listening ${((tListen - tSpawn) / 1e6).toFixed(0)} ms after spawn; ` +
			`${ready.count} ready, ${ready.failures} failed attempts in all; node counts ${stats.connections && stats.connections.total} connections; ` +
			`its limits ${JSON.stringify(stats.limits || {})}; auth calls ${JSON.stringify(stats.auth || {})}`);
		for (const l of fresh.logs.filter(l => /maxInFlight|limit|refus/i.test(l.line)).slice(0, 4)) log(`new node: ${l.line}`);
		summaries.push(`reconnect storm, ${N} clients: ${ready.count} served ${served ? `${s(ready.done_ns)} s after the new node listened ` +
			`(${((ready.done_ns - tTerm) / 1e9).toFixed(2)} s after SIGTERM)` : "NOT all"}, peak RSS of the new node ${(mem.hwm / 1024).toFixed(1)} MiB ` +
			`(RSS ${(mem.rss / 1024).toFixed(1)} MiB when all were served)`);
		return served;
	} finally {
		if (fresh) await h.stopCppNodes(fresh);
		await c.stop();
	}
}

async function main() {
	const scenarios = { nats: natsOutage, slow: slowConsumer, storm };
	let ok = true;
	for (const name of ONLY) {
		if (!scenarios[name]) throw new Error(`unknown section ${name} (nats, slow, storm)`);
		log(`--- ${name}`);
		ok = (await scenarios[name]()) && ok;
	}
	log(`load average ${require("os").loadavg().map(x => x.toFixed(2)).join(" ")}`);
	for (const line of summaries) console.log(line);
	return ok ? 0 : 1;
}

main().then(
	code => process.exit(code),
	err => {
		console.error(err);
		process.exit(2);
	}
);
