"use strict";
// The dashboard's picture from a real run (issue 10): a nats-server, the product binary
// (build/steedos-socket), the fixture's mock auth service and a moleculer 0.14 producer
// (tests/interop/steedos/fixture.js startCluster), a Prometheus server (Debian's /usr/bin/prometheus,
// scraping the node's /metrics every second into a temporary folder) and `--clients`
// bench/load_client.cpp clients subscribed as in the soak (bench/steedos_load.js), for `--seconds`.
// Then, with the clients still connected, scripts/render-dashboard.js runs every panel of
// deploy/grafana/steedos-socket.json against that Prometheus ($__rate_interval: `--rate-interval`,
// default 10s, so that a 10 s fault shows as 10 s and not as a 1-minute window) and screenshots it
// with headless Chromium into `--png`.
//
//   bench/dashboard.sh [--seconds 120] [--clients 1000] [--rate 200] [--png docs/dashboard.png]
//
// So that every panel has something to show, the run has phases (fractions of --seconds):
//   throughout   `--rate` events/s mixed as the soak (global, tenant, personal, record rooms), and
//                one socket.io-client connect + disconnect per second (anonymous and authenticated)
//   0.20-0.30    producer payloads the service rejects (no eventName), anonymous subscribes to
//                tenant rooms and shared subscribes to personal rooms (refused), clients over
//                gateway.maxSubscribesPerSecond and gateway.maxEventNameLength (limit refusals)
//   0.40-0.50    the auth service fails (500) then hangs (auth.timeout 1 s) while new logins connect
//   0.60         NATS stopped for 5 s (a deliberate outage; no events are emitted meanwhile)
//   0.75         socket.disconnect of 50 users (server namespace disconnect)
const fs = require("fs");
const path = require("path");
const { startCluster, h, login } = require("../tests/interop/steedos/fixture");
const { population, emitTo, startLoadClient, arg, rng, targetPicker } = require("./steedos_load");
const { startPrometheus: startPrometheusServer } = require("../tests/interop/lib/prometheus");
const { render } = require("../scripts/render-dashboard");

const SECONDS = Number(arg("seconds", 120));
const CLIENTS = Number(arg("clients", 1000));
const RATE = Number(arg("rate", 200));
const PNG = arg("png", path.join(__dirname, "..", "docs", "dashboard.png"));
const RATE_INTERVAL = arg("rate-interval", "10s");
const DASHBOARD = path.join(__dirname, "..", "deploy", "grafana", "steedos-socket.json");

const log = text => process.stderr.write(`dashboard: ${text}\n`);

/** Prometheus (tests/interop/lib/prometheus.js) scraping the node every second, once its first
 * scrape is done; a failed one is reported (the panels then say "No data" and the run exits with
 * 1), not waited out. */
async function startPrometheus(targetPort) {
	const prometheus = await startPrometheusServer({ targets: [`127.0.0.1:${targetPort}`], interval: "1s" });
	const target = await h.waitFor(async () => (await prometheus.targets()).find(t => t.health !== "unknown"),
		30000, { interval: 250, what: "prometheus scraping the node" });
	if (target.health !== "up") log(`the node's /metrics scrape failed: ${target.lastError}`);
	return prometheus;
}

/** One client that connects, optionally subscribes, and leaves: connects/disconnects panels. */
async function churn(cluster, opts, subscribe) {
	const s = cluster.client(Object.assign({ transports: ["websocket"] }, opts));
	try {
		await h.waitFor(() => s.events.some(e => e.event === "connection-init") || s.disconnects.length || s.connectErrors.length, 5000, { what: "churn client" });
		if (subscribe && s.connected) await s.timeout(2000).emitWithAck("subscribe", subscribe).catch(() => {});
	} catch (_) {
		/* a refused connect is part of the picture */
	} finally {
		s.close();
		cluster.sockets.delete(s);
	}
}

/** An authenticated client over gateway.maxSubscribesPerSecond and gateway.maxEventNameLength. */
async function overLimits(cluster, user) {
	const s = cluster.client({ transports: ["websocket"], cookie: user.cookies[0] });
	try {
		await h.waitFor(() => s.events.some(e => e.event === "connection-init") || s.disconnects.length || s.connectErrors.length, 5000, { what: "limits client" });
		if (!s.connected) return;
		const acks = [];
		for (let i = 0; i < 60; i++) acks.push(s.timeout(2000).emitWithAck("subscribe", { roomParts: `orders-${i}` }).catch(() => {}));
		acks.push(s.timeout(2000).emitWithAck("x".repeat(300), {}).catch(() => {}));
		await Promise.all(acks);
	} catch (_) {
		/* part of the picture */
	} finally {
		s.close();
		cluster.sockets.delete(s);
	}
}

async function main() {
	const cluster = await startCluster({ logLevel: "info", extra: { auth: { timeout: 1000 } } });
	const { node, port, producer } = cluster;
	log(`nats ${cluster.nats.url}, steedos-socket pid ${node.pid} on port ${port}`);
	const prometheus = await startPrometheus(port);
	log(`prometheus ${prometheus.url} scraping 127.0.0.1:${port}/metrics every second`);
	const start = Math.floor(Date.now() / 1000) - 5;

	const pop = population({ clients: CLIENTS });
	const lc = await startLoadClient({ port, clients: CLIENTS, planFile: pop.planFile, args: ["--concurrency", "64"] });
	log(`${CLIENTS} clients connected and subscribed in ${lc.connectSeconds.toFixed(1)} s; ${RATE} events/s for ${SECONDS} s`);

	const pick = targetPicker(pop, rng(11));
	const done = new Set();
	const once = (name, fraction, elapsed) => elapsed >= fraction * SECONDS && !done.has(name) && done.add(name);
	const t0 = Date.now();
	let emitted = 0;
	let paused = 0; // ms of the outage, not emitted
	let nextChurn = t0;
	let churns = 0;
	const background = [];
	while (Date.now() - t0 < SECONDS * 1000) {
		const elapsed = (Date.now() - t0) / 1000;
		const due = Math.floor(((Date.now() - t0 - paused) / 1000) * RATE);
		for (; emitted < due; emitted++) emitTo(producer, pop.targets, pick());
		if (Date.now() >= nextChurn) {
			nextChurn += 1000;
			const anonymous = churns++ % 2 === 0;
			const user = login(`churn${churns}`, "S1");
			background.push(churn(cluster, anonymous ? {} : { cookie: user.cookies[0] }, anonymous ? null : { roomParts: "space" }));
		}
		if (elapsed >= 0.2 * SECONDS && elapsed < 0.3 * SECONDS) {
			producer.emit("$socket.emit", { eventParams: { m: "no eventName" } }); // rejected by the service
			if (Math.floor(elapsed * 10) % 5 === 0) {
				background.push(churn(cluster, {}, { roomParts: "space" })); // anonymous: forbidden
				const user = login(`peek${emitted}`, "S2");
				background.push(churn(cluster, { cookie: user.cookies[0] }, { roomParts: "notification-change-u1" })); // personal room as shared
				background.push(overLimits(cluster, login(`greedy${emitted}`, "S1")));
			}
		}
		if (once("auth-fail", 0.4, elapsed)) {
			log("auth service failing (500) for 4 s, then hanging for 6 s");
			cluster.authFault.mode = "fail";
			background.push((async () => {
				const connectMany = async (n, tag) => {
					for (let i = 0; i < n; i++) {
						const user = login(`${tag}${i}`, "S3");
						background.push(churn(cluster, { cookie: user.cookies[0] }));
						await h.sleep(100);
					}
				};
				await connectMany(40, "fail");
				cluster.authFault.mode = "hang";
				await connectMany(60, "hang");
				cluster.authFault.mode = null;
				log("auth service answering again");
			})());
		}
		if (once("outage", 0.6, elapsed)) {
			log("stopping nats-server for 5 s");
			const stoppedAt = Date.now();
			await cluster.nats.stop();
			await h.sleep(5000); // the outage itself (deliberate length, not a synchronisation)
			await cluster.nats.restart();
			await h.waitFor(async () => (await fetch(`http://127.0.0.1:${port}/ready`)).status === 200, 20000, { interval: 100, what: "/ready after the outage" });
			await h.waitForRemoteNode(producer, node.nodeID, ["socket.stats"], 20000);
			paused += Date.now() - stoppedAt;
			emitted = Math.floor(((Date.now() - t0 - paused) / 1000) * RATE);
			log(`nats back; node ready again ${Date.now() - stoppedAt - 5000} ms after the restart`);
		}
		if (once("disconnect", 0.75, elapsed)) {
			let disconnected = 0;
			for (let u = 0; u < 50; u++) disconnected += (await cluster.call("disconnect", { userId: `u${u}` })).disconnected;
			log(`socket.disconnect of 50 users: ${disconnected} sockets`);
		}
		await h.sleep(10);
	}
	await Promise.allSettled(background);
	const stats = await cluster.stats();
	log(`emitted ${emitted}; socket.stats events in ${stats.events.in}, out ${stats.events.out}, auth calls ${stats.auth.calls}, failures ${stats.auth.failures}, limits ${JSON.stringify(Object.fromEntries(Object.entries(stats.limits).filter(([, v]) => v)))}`);
	await h.sleep(2000); // two more scrapes of the last state
	const end = Math.floor(Date.now() / 1000);
	const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, "utf8"));
	const step = Math.max(1, Math.round((end - start) / 240));
	const width = 1600;
	const { html, height, summary } = await render({
		dashboard, prometheus: prometheus.url, start, end, step, width,
		vars: { instance: ".+", __rate_interval: RATE_INTERVAL, __interval: `${step}s` },
		subtitle: `bench/dashboard.sh: ${CLIENTS} load clients, ${RATE} events/s, ${SECONDS} s, one node on NATS; rates over ${RATE_INTERVAL}`
	});
	for (const p of summary) log(`panel ${p.title}: ${p.series} series${p.errors.length ? `, errors: ${p.errors.join("; ")}` : ""}`);
	const htmlFile = path.join(require("os").tmpdir(), `dashboard-${process.pid}.html`);
	fs.writeFileSync(htmlFile, html);
	require("../scripts/render-dashboard").screenshot(htmlFile, PNG, width, height);
	fs.rmSync(htmlFile, { force: true });
	log(`wrote ${PNG} (${width}x${height})`);
	await lc.stop();
	await prometheus.stop();
	await cluster.stop();
	const empty = summary.filter(p => p.series === 0 || p.errors.length);
	if (empty.length) {
		log(`panels without data: ${empty.map(p => p.title).join(", ")}`);
		process.exitCode = 1;
	}
}

main().catch(e => {
	log(e.stack || e.message);
	process.exit(1);
});
