"use strict";
// Issue 10, "the real tools read it": a Prometheus server (Debian's 2.42) started by the test
// scrapes the node's /metrics every second; its HTTP API reports the target up and returns
// steedos_socket_connects_total with the value the node's own /metrics shows, and
// `promtool check metrics` accepts a scrape.
//
// Cost: Prometheus 2.42 scrapes a new target only 5 to 10 s after it starts (two 5 s tickers,
// tests/interop/lib/prometheus.js), so it starts in parallel with the cluster, on a gateway port
// chosen in advance, and the file pays that wait once.
const { describe, it, before, after } = require("node:test");
const { h, assert, startCluster, COOKIES } = require("./fixture");
const { startPrometheus, checkMetrics, samplesOf } = require("../lib/prometheus");

const CONNECTS = "steedos_socket_connects_total";

/** GET /metrics of the node: { status, contentType, text }. */
async function scrape(port) {
	const res = await fetch(`http://127.0.0.1:${port}/metrics`);
	return { status: res.status, contentType: res.headers.get("content-type"), text: await res.text() };
}

/** "auth=authenticated" style key of a label set, without Prometheus's own job and instance. */
function labelKey(labels) {
	return Object.entries(labels)
		.filter(([k]) => !["__name__", "job", "instance"].includes(k))
		.sort(([a], [b]) => a.localeCompare(b))
		.map(([k, v]) => `${k}=${v}`)
		.join(",");
}

describe("a Prometheus server scraping the node", () => {
	let c;
	let prometheus;
	let port;
	const started = Date.now();
	before(async () => {
		port = await h.freePort();
		const [cluster, server] = await Promise.allSettled([
			startCluster({ extra: { gateway: { port } } }),
			startPrometheus({ targets: [`127.0.0.1:${port}`], interval: "1s" })
		]);
		c = cluster.value;
		prometheus = server.value;
		for (const r of [cluster, server]) if (r.status === "rejected") throw r.reason;
	});
	after(async () => {
		if (prometheus) await prometheus.stop();
		if (c) await c.stop();
	});

	it("reports the target up and returns the connects counter the node shows; promtool accepts the scrape", async t => {
		const s = await c.connect({ cookie: COOKIES.U1 });
		assert.ok(s.connected);

		// The node's own view, after the CONNECT was accepted.
		const own = await scrape(port);
		assert.equal(own.status, 200);
		assert.match(own.contentType, /^text\/plain; version=0\.0\.4/);
		const check = checkMetrics(own.text);
		assert.ok(check.ok, `promtool check metrics exit ${check.code}:\n${check.output}`);
		const ownConnects = samplesOf(own.text, CONNECTS);
		const authenticated = ownConnects.find(x => x.labels.auth === "authenticated");
		assert.ok(authenticated, `${CONNECTS}{auth="authenticated"} in:\n${own.text}`);
		assert.equal(authenticated.value, 1, "one authenticated client connected to a fresh node");

		const targets = await prometheus.waitForTargetsUp(20000);
		assert.equal(targets.length, 1);
		assert.equal(targets[0].scrapeUrl, `http://127.0.0.1:${port}/metrics`);
		assert.equal(targets[0].health, "up");
		assert.equal(targets[0].lastError, "");
		const up = await prometheus.query(`up{job="${prometheus.job}"}`);
		assert.deepEqual(up.map(r => r.value[1]), ["1"]);

		// A scrape after the connect: Prometheus holds the node's values, series by series.
		const expected = Object.fromEntries(ownConnects.map(x => [labelKey(x.labels), x.value]));
		const seen = await h.waitFor(async () => {
			const result = await prometheus.query(CONNECTS);
			const got = Object.fromEntries(result.map(r => [labelKey(r.metric), Number(r.value[1])]));
			return got[labelKey(authenticated.labels)] === 1 && got;
		}, 10000, { what: `${CONNECTS} from the Prometheus query API`, interval: 200 });
		assert.deepEqual(seen, expected);
		for (const r of await prometheus.query(CONNECTS)) {
			assert.equal(r.metric.instance, `127.0.0.1:${port}`);
			assert.equal(r.metric.job, prometheus.job);
		}
		// Nothing connected meanwhile: the node still shows what Prometheus returned.
		const latest = (await scrape(port)).text;
		const later = samplesOf(latest, CONNECTS);
		assert.deepEqual(Object.fromEntries(later.map(x => [labelKey(x.labels), x.value])), expected);
		// The bus and process figures arrive too: the bus is up, the start time is the node's.
		const bus = await prometheus.query("steedos_socket_transporter_connected");
		assert.deepEqual(bus.map(r => [r.metric.transporter, r.value[1]]), [[h.BUS, "1"]]);
		const [startTime] = await prometheus.query("process_start_time_seconds");
		assert.equal(Number(startTime.value[1]), samplesOf(latest, "process_start_time_seconds")[0].value);
		t.diagnostic(`from the start of the file to the counter in Prometheus: ${Date.now() - started} ms`);
	});
});
