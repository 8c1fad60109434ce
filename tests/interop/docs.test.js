"use strict";
// Issue 10: docs/operations.md and deploy/grafana/steedos-socket.json stay true to the node.
// - Configuration keys, from the code: every key name services/config.cpp reads (its read_* and
//   find() calls) appears in the docs as a backticked key, and every dotted key of
//   moleculer.config.json (the file of defaults) exactly; every environment variable of
//   read_environment() appears, and the ones `--help` names are among them.
// - The dashboard is a Grafana import (schemaVersion 38, a DS_PROMETHEUS input that every panel
//   uses) whose queries parse as PromQL's metric names the docs describe.
// - Metrics, from a running node: every family its /metrics serves appears in the docs and is
//   either charted by a dashboard query or listed under "Not charted:"; every metric a dashboard
//   query names is served by the node (a typo in a panel fails here, not in Grafana).
const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const h = require("./lib/harness");

const ROOT = h.REPO_ROOT;
const read = file => fs.readFileSync(path.join(ROOT, file), "utf8");
const DOCS = read("docs/operations.md");
const CONFIG_CPP = read("services/config.cpp");
const DASHBOARD = JSON.parse(read("deploy/grafana/steedos-socket.json"));

/** Every `name` (optionally `a.b.name`) written in backticks in the docs. */
const backticked = new Set([...DOCS.matchAll(/`([^`\n]+)`/g)].map(m => m[1]));
// A leaf ("maxBufferedBytes") is documented as itself or as the end of a dotted key; a section
// name ("registry") as the start of one.
const documentsKey = name => [...backticked].some(t => t === name || t.endsWith(`.${name}`) || t.startsWith(`${name}.`));

/** Key names services/config.cpp reads: read_int(obj, prefix, "name", ...), find(obj, "name"), ... */
function keysReadByConfigCpp() {
	const names = new Set();
	// read_x(obj, prefix, "name", ...) and read_x(section(root, "s"), "s", "name", ...): every
	// word literal of the call (section names too: documented as the start of dotted keys).
	for (const call of CONFIG_CPP.matchAll(/\bread_(?:int|bool|string|seconds|string_list)\(([^;]*?)\);/g)) {
		for (const m of call[1].matchAll(/"(\w+)"/g)) names.add(m[1]);
	}
	const patterns = [
		/\bfind\(\s*[\w*]+\s*,\s*"(\w+)"\s*\)/g, // find(root, "name")
		/\bsection\(\s*\w+\s*,\s*"(\w+)"\s*\)/g, // section(root, "gateway")
		/read_probe_path\(\s*\w+\s*,\s*"(\w+)"/g
	];
	for (const re of patterns) for (const m of CONFIG_CPP.matchAll(re)) names.add(m[1]);
	return names;
}

/** moleculer.config.json's leaf keys, dotted; `metadata` is one key (its content is free). */
function dottedKeys(obj, prefix = "") {
	const keys = [];
	for (const [k, v] of Object.entries(obj)) {
		const key = prefix ? `${prefix}.${k}` : k;
		if (v && typeof v === "object" && !Array.isArray(v) && key !== "metadata") keys.push(...dottedKeys(v, key));
		else keys.push(key);
	}
	return keys;
}

/** Metric names a PromQL expression uses (identifiers followed by `{`, `[` or `)` or a space). */
function metricNames(expr) {
	const names = new Set();
	for (const m of expr.matchAll(/\b((?:steedos_socket|process)_[a-z_]+)\b/g)) names.add(m[1]);
	return names;
}

const queryPanels = () => DASHBOARD.panels.filter(p => p.type !== "row");
const dashboardExprs = () => queryPanels().flatMap(p => (p.targets || []).map(t => t.expr));

describe("docs/operations.md: configuration and environment", () => {
	it("documents every key services/config.cpp reads, and every key of moleculer.config.json", () => {
		const names = keysReadByConfigCpp();
		// A regex that stopped matching must not make this test pass vacuously.
		assert.ok(names.size >= 45, `only ${names.size} key names found in services/config.cpp: ${[...names].join(", ")}`);
		for (const known of ["maxBufferedBytes", "healthPath", "cacheTtl", "maxQueueSize", "servers"]) assert.ok(names.has(known), known);
		const missing = [...names].filter(n => !documentsKey(n));
		assert.deepEqual(missing, [], `keys read by services/config.cpp missing from docs/operations.md`);
		const fileKeys = dottedKeys(JSON.parse(read("moleculer.config.json")));
		const missingExact = fileKeys.filter(k => !backticked.has(k));
		assert.deepEqual(missingExact, [], `keys of moleculer.config.json missing from docs/operations.md`);
	});

	it("documents every environment variable the node reads", () => {
		const list = /read_environment\(\)\s*\{[^}]*?kNames\[\]\s*=\s*\{([^}]*)\}/s.exec(CONFIG_CPP);
		assert.ok(list, "kNames of read_environment() not found in services/config.cpp");
		const vars = [...list[1].matchAll(/"(\w+)"/g)].map(m => m[1]);
		assert.ok(vars.length >= 7, vars.join(", "));
		assert.deepEqual(vars.filter(v => !backticked.has(v)), [], "environment variables missing from docs/operations.md");
		// What the binary itself says: every variable it reads named in --help, and none it does not.
		const help = require("node:child_process").execFileSync(path.join(h.BUILD_DIR, "steedos-socket"), ["--help"], { encoding: "utf8" });
		const line = /^Environment: (.*)$/m.exec(help);
		assert.ok(line, `the --help text's environment line:\n${help}`);
		const named = [...line[1].matchAll(/\b[A-Z][A-Z_]+\b/g)].map(m => m[0]);
		assert.deepEqual(vars.filter(v => !named.includes(v)), [], `variables --help does not name:\n${help}`);
		assert.deepEqual(named.filter(v => !vars.includes(v)), [], "--help names variables read_environment() does not read");
	});
});

describe("docs/operations.md: links", () => {
	/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
	const anchors = text => new Set([...text.matchAll(/^#{1,6} (.+)$/gm)].map(m => m[1].toLowerCase().replace(/[^\w\- ]/g, "").replace(/ /g, "-")));
	it("every #anchor of docs/operations.md and every README link into it resolves", () => {
		const own = anchors(DOCS);
		const local = [...DOCS.matchAll(/\]\(#([^)]+)\)/g)].map(m => m[1]);
		assert.ok(local.length >= 10);
		assert.deepEqual(local.filter(a => !own.has(a)), [], "dangling anchors in docs/operations.md");
		const readme = read("README.md");
		const fromReadme = [...readme.matchAll(/\]\(docs\/operations\.md(?:#([^)]+))?\)/g)];
		assert.ok(fromReadme.length >= 2, "the README links docs/operations.md");
		assert.deepEqual(fromReadme.map(m => m[1]).filter(a => a && !own.has(a)), [], "README links to missing anchors");
		const readmeAnchors = anchors(readme);
		const intoReadme = [...DOCS.matchAll(/\]\(\.\.\/README\.md#([^)]+)\)/g)].map(m => m[1]);
		assert.deepEqual(intoReadme.filter(a => !readmeAnchors.has(a)), [], "links into README.md sections that do not exist");
		for (const m of DOCS.matchAll(/!\[[^\]]*\]\(([^)]+)\)/g)) assert.ok(fs.existsSync(path.join(ROOT, "docs", m[1])), `image ${m[1]}`);
	});
});

describe("deploy/grafana/steedos-socket.json", () => {
	it("is a Grafana import whose panels query the documented metrics through DS_PROMETHEUS", () => {
		assert.equal(DASHBOARD.schemaVersion, 38);
		assert.deepEqual(DASHBOARD.__inputs.map(i => [i.name, i.type, i.pluginId]), [["DS_PROMETHEUS", "datasource", "prometheus"]]);
		const panels = queryPanels();
		assert.ok(panels.length >= 12, `${panels.length} panels`);
		const ids = DASHBOARD.panels.map(p => p.id);
		assert.equal(new Set(ids).size, ids.length, "panel ids are unique");
		for (const p of panels) {
			assert.equal(p.datasource.uid, "${DS_PROMETHEUS}", p.title);
			assert.ok(p.targets.length > 0, p.title);
			for (const t of p.targets) assert.equal(t.datasource.uid, "${DS_PROMETHEUS}", `${p.title} ${t.refId}`);
		}
		const used = new Set(dashboardExprs().flatMap(e => [...metricNames(e)]));
		const family = name => name.replace(/_(bucket|sum|count)$/, "");
		const undocumented = [...used].map(family).filter(n => !backticked.has(n));
		assert.deepEqual(undocumented, [], "metrics the dashboard uses but docs/operations.md does not describe");
		for (const wanted of ["steedos_socket_deliveries_total", "steedos_socket_emit_to_write_seconds_bucket", "steedos_socket_auth_duration_seconds_bucket"]) {
			assert.ok(used.has(wanted), `no panel queries ${wanted}`);
		}
	});
});

describe("the node's /metrics against the docs and the dashboard", () => {
	let nats;
	let node;
	let port;
	before(async () => {
		nats = await h.startBus();
		node = await h.startCppNode({ binary: "steedos-socket", nats, logLevel: "info", extra: { serviceName: "socket", gateway: { host: "127.0.0.1", port: 0 } } });
		const hit = await node.waitForLog(/gateway listening on [^\s]+:(\d+)/, 10000);
		port = Number(/gateway listening on [^\s]+:(\d+)/.exec(hit.line)[1]);
	});
	after(async () => {
		if (node) await h.stopCppNodes(node);
		if (nats) await nats.stop();
	});

	it("every family served is documented, and charted or listed as not charted; every charted metric is served", async t => {
		const res = await fetch(`http://127.0.0.1:${port}/metrics`);
		if (res.status === 404) {
			t.skip("this build serves no /metrics");
			return;
		}
		assert.equal(res.status, 200);
		const text = await res.text();
		const families = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map(m => ({ name: m[1], type: m[2] }));
		assert.ok(families.length >= 20, `${families.length} families`);
		const notCharted = /Not charted:(.*?)\n\n/s.exec(DOCS);
		assert.ok(notCharted, 'docs/operations.md: the "Not charted:" list');
		const notChartedNames = new Set([...notCharted[1].matchAll(/`([a-z_]+)`/g)].map(m => m[1]));
		const used = new Set(dashboardExprs().flatMap(e => [...metricNames(e)]));
		const series = name => [name, `${name}_bucket`, `${name}_sum`, `${name}_count`, `${name}_total`];
		const undocumented = families.filter(f => !backticked.has(f.name) && !backticked.has(`${f.name}_total`)).map(f => f.name);
		assert.deepEqual(undocumented, [], "served but not in docs/operations.md");
		const unaccounted = families.filter(f => !series(f.name).some(n => used.has(n)) && !series(f.name).some(n => notChartedNames.has(n))).map(f => f.name);
		assert.deepEqual(unaccounted, [], 'served but neither charted nor under "Not charted:"');
		// A family without samples yet (a labelled counter before its first event) is still served;
		// some clients name a counter's family without `_total`, a histogram's without its suffixes.
		const served = new Set([...text.matchAll(/^([a-z_:][a-z0-9_:]*)(?:\{| )/gm)].map(m => m[1]));
		for (const f of families) for (const n of series(f.name)) served.add(n);
		const missing = [...used].filter(n => !served.has(n));
		assert.deepEqual(missing, [], "the dashboard queries metrics the node does not serve");
	});
});

describe("scripts/render-dashboard.js", () => {
	const http = require("node:http");
	const { render } = require("../../scripts/render-dashboard");
	let server;
	let url;
	const queries = [];
	before(async () => {
		// A stand-in for Prometheus' range API: one series per query, labelled for the legend
		// templates, with a NaN in the middle (a gap, as histogram_quantile gives without data).
		server = http.createServer((req, res) => {
			const u = new URL(req.url, "http://x");
			const query = u.searchParams.get("query");
			queries.push({ path: u.pathname, query, step: u.searchParams.get("step") });
			const start = Number(u.searchParams.get("start"));
			const values = Array.from({ length: 10 }, (_, i) => [start + i * 10, i === 5 ? "NaN" : String(i + 1)]);
			res.setHeader("content-type", "application/json");
			res.end(JSON.stringify({ status: "success", data: { resultType: "matrix", result: [{ metric: { transport: "websocket", reason: "ping timeout", instance: "n1:5100" }, values }] } }));
		});
		await new Promise(r => server.listen(0, "127.0.0.1", r));
		url = `http://127.0.0.1:${server.address().port}`;
	});
	after(() => server && server.close());

	it("runs every panel's queries as range queries and draws one SVG chart per panel, with legends and gaps", async () => {
		const { html, summary } = await render({ dashboard: DASHBOARD, prometheus: url, start: 1000, end: 1090, step: 10, width: 1600, vars: { instance: "n1:5100", __rate_interval: "30s" } });
		const panels = queryPanels();
		assert.equal(queries.length, dashboardExprs().length, "one range query per target");
		assert.ok(queries.every(q => q.path === "/api/v1/query_range" && q.step === "10"));
		assert.ok(queries.every(q => !q.query.includes("$") && q.query.includes('instance=~"n1:5100"')), "the dashboard variables are expanded");
		assert.ok(queries.some(q => q.query.includes("rate(steedos_socket_deliveries_total{instance=~\"n1:5100\"}[30s])")), "$__rate_interval");
		assert.equal((html.match(/<svg /g) || []).length, panels.length, "one chart per panel");
		for (const p of panels) assert.ok(html.includes(`>${p.title.replace(/&/g, "&amp;")}</text>`), p.title);
		assert.ok(html.includes(">websocket  "), "{{transport}} legend of the Connections panel");
		assert.ok(html.includes(">refused ping timeout  ") || html.includes(">ping timeout  "), "{{reason}} legends");
		// The NaN splits each line in two: two "M" moves in one path.
		assert.ok(/<path d="M[^"]*M[^"]*"/.test(html), "a NaN breaks the line");
		assert.ok(summary.every(s => s.series > 0 && s.errors.length === 0));
	});
});
