"use strict";
// A real Prometheus server (Debian's prometheus 2.42, /usr/bin/prometheus) for the tests that
// check what the Prometheus tools make of the node's /metrics (issue 10), and `promtool check
// metrics`. The server gets a temporary directory with a generated prometheus.yml and its TSDB,
// a free loopback port, and is killed with the other children of the test process.
//
// Start-up cost: /-/ready answers after about 1 s, but Prometheus 2.42 hands discovered targets
// to its scrape manager on two 5 s tickers (discovery, then scrape reload), so a target's first
// scrape comes 5 to 10 s after the start (measured: 7 s). Start the server early, in parallel
// with what it will scrape, on a port chosen in advance; a target that is not up yet is simply
// scraped again at the next interval.
const fs = require("fs");
const path = require("path");
const { spawn, spawnSync } = require("child_process");
const h = require("./harness");

const PROMETHEUS = process.env.PROMETHEUS_BIN || "/usr/bin/prometheus";
const PROMTOOL = process.env.PROMTOOL_BIN || "/usr/bin/promtool";

/** The scrape configuration: one job whose static targets are `targets` ("host:port"). */
function prometheusYaml({ targets, interval, metricsPath, job }) {
	// JSON is YAML: no quoting rules of our own to get wrong.
	return JSON.stringify({
		global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval },
		scrape_configs: [{ job_name: job, metrics_path: metricsPath, static_configs: [{ targets }] }]
	}, null, 2);
}

/**
 * Starts a Prometheus server scraping `targets` (array of "host:port") every `interval` (a
 * Prometheus duration, default "1s") at `metricsPath` (default "/metrics"), job name `job`
 * (default "steedos-socket"). Resolves once GET /-/ready answers 200 with a handle:
 * { url, port, dir, logs, job, targets(), query(expr), waitForTargetsUp(ms), stop() }.
 */
async function startPrometheus({ targets, interval = "1s", metricsPath = "/metrics", job = "steedos-socket" } = {}) {
	if (!Array.isArray(targets) || targets.length === 0) throw new Error("startPrometheus: targets is required");
	if (!fs.existsSync(PROMETHEUS)) throw new Error(`prometheus not found: ${PROMETHEUS} (apt-get install prometheus)`);
	const dir = h.makeTempDir("interop-prometheus-");
	const configFile = path.join(dir, "prometheus.yml");
	fs.writeFileSync(configFile, prometheusYaml({ targets, interval, metricsPath, job }));
	const handle = { url: null, port: 0, dir, logs: [], job, proc: null };

	async function launch(port) {
		const proc = h.track(spawn(PROMETHEUS, [
			`--config.file=${configFile}`,
			`--storage.tsdb.path=${path.join(dir, "data")}`,
			`--web.listen-address=127.0.0.1:${port}`,
			"--log.level=warn"
		], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] }));
		for (const stream of [proc.stdout, proc.stderr]) {
			stream.setEncoding("utf8");
			stream.on("data", chunk => handle.logs.push(chunk));
		}
		let exited = false;
		proc.once("exit", () => (exited = true));
		Object.assign(handle, { proc, port, url: `http://127.0.0.1:${port}` });
		await h.waitFor(async () => {
			if (exited) throw Object.assign(new Error(`prometheus exited: ${handle.logs.join("")}`), { exited: true });
			const res = await fetch(`${handle.url}/-/ready`);
			return res.status === 200;
		}, 15000, { what: `prometheus ready on port ${port}`, interval: 50 });
	}

	/** The HTTP API's `data`, or an error with Prometheus's own message. */
	async function api(pathAndQuery) {
		const res = await fetch(`${handle.url}${pathAndQuery}`);
		const body = await res.json();
		if (body.status !== "success") throw new Error(`prometheus ${pathAndQuery}: ${body.errorType}: ${body.error}`);
		return body.data;
	}

	/** /api/v1/targets: the active targets with scrapeUrl, health ("up", "down", "unknown"), lastError. */
	handle.targets = async () => (await api("/api/v1/targets?state=active")).activeTargets;
	/** /api/v1/query at the current time: the result vector, [{ metric: { labels }, value: [t, "v"] }]. */
	handle.query = async expr => (await api(`/api/v1/query?query=${encodeURIComponent(expr)}`)).result;
	/** Waits until every configured target has been scraped with success; returns the targets. */
	handle.waitForTargetsUp = (ms = 20000) => h.waitFor(async () => {
		const active = await handle.targets();
		return active.length === targets.length && active.every(t => t.health === "up") && active;
	}, ms, { what: `prometheus targets ${targets.join(", ")} up`, interval: 100 });
	handle.stop = async () => {
		const proc = handle.proc;
		if (proc && proc.exitCode === null && proc.signalCode === null) {
			proc.kill("SIGTERM");
			try {
				await h.waitExit(proc, 5000);
			} catch (_) {
				proc.kill("SIGKILL");
				await h.waitExit(proc, 5000);
			}
		}
		fs.rmSync(dir, { recursive: true, force: true });
	};

	// Another process may take the chosen port before Prometheus binds it: try a fresh one.
	for (let attempt = 1; ; attempt++) {
		try {
			await launch(await h.freePort());
			return handle;
		} catch (err) {
			if (!err.exited || attempt >= 3) {
				await handle.stop();
				throw err;
			}
			handle.logs.length = 0;
		}
	}
}

/** `promtool check metrics` on an exposition text: { ok (exit code 0), code, output }. */
function checkMetrics(text) {
	const r = spawnSync(PROMTOOL, ["check", "metrics"], { input: text, encoding: "utf8", timeout: 10000 });
	if (r.error) throw r.error;
	return { ok: r.status === 0, code: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

/**
 * The samples of `name` in a Prometheus text exposition, as [{ labels: { k: v }, value }]
 * (a plain parser for the node's own output: label values without escaped quotes or commas).
 */
function samplesOf(text, name) {
	const out = [];
	for (const line of text.split("\n")) {
		const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
		if (!m || m[1] !== name) continue;
		const labels = {};
		for (const pair of (m[2] || "").split(",").filter(Boolean)) {
			const eq = pair.indexOf("=");
			labels[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim().replace(/^"|"$/g, "");
		}
		out.push({ labels, value: Number(m[3]) });
	}
	return out;
}

module.exports = { startPrometheus, checkMetrics, samplesOf, prometheusYaml };
