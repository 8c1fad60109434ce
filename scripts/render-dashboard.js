#!/usr/bin/env node
"use strict";
// Renders a Grafana dashboard's time-series panels from a Prometheus server without Grafana:
// every panel's PromQL runs as a range query (/api/v1/query_range), each panel becomes an inline
// SVG line chart (title, axes, legend) laid out on the dashboard's own 24-column grid in one HTML
// page, and headless Chromium screenshots the page. Node's standard library only.
//
//   node scripts/render-dashboard.js --prometheus http://127.0.0.1:9090 \
//        [--dashboard deploy/grafana/steedos-socket.json] [--start <unix s>] [--end <unix s>] \
//        [--minutes 5] [--step <s>] [--instance <regex>] [--html out.html] [--png out.png] \
//        [--width 1600] [--rate-interval 1m] [--subtitle text]
//
// --start/--end default to the last --minutes; --step to about 240 points per chart. Dashboard
// variables: $instance becomes --instance (default ".+"), $__rate_interval --rate-interval
// (default 1m; Grafana derives it from the scrape interval and the zoom), $__interval the step.
// Queries that fail are shown in their panel as the error, not hidden.
const fs = require("fs");
const os = require("os");
const path = require("path");
const { spawnSync } = require("child_process");

const COLUMNS = 24;
const ROW_UNIT_PX = 30; // Grafana's grid: one gridPos.h unit is 30 px high
const GAP = 8;
const PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#ff9830", "#96d98d", "#ffb357", "#ca95e5", "#fade2a"];
const THEME = { page: "#111217", panel: "#181b1f", border: "#2c3235", text: "#ccccdc", muted: "#8e8e9e", grid: "#2c3235" };

function arg(name, fallback) {
	const i = process.argv.indexOf(`--${name}`);
	return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const escapeXml = s => String(s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

// ---- Prometheus -------------------------------------------------------------------------------

async function queryRange(prometheus, expr, start, end, step) {
	const url = new URL("/api/v1/query_range", prometheus);
	url.search = new URLSearchParams({ query: expr, start: String(start), end: String(end), step: String(step) }).toString();
	const res = await fetch(url);
	const body = await res.json().catch(() => ({ status: "error", error: `HTTP ${res.status}` }));
	if (body.status !== "success") throw new Error(body.error || `HTTP ${res.status}`);
	return body.data.result; // [{ metric: {...}, values: [[t, "v"], ...] }]
}

/** Grafana's `{{label}}` legend templates; without one, the series' labels. */
function legendOf(format, metric) {
	if (format) return format.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, k) => metric[k] ?? "");
	const labels = Object.entries(metric).filter(([k]) => k !== "__name__").map(([k, v]) => `${k}="${v}"`);
	return `${metric.__name__ || ""}{${labels.join(", ")}}`;
}

function expand(expr, vars) {
	return expr.replace(/\$\{?(\w+)\}?/g, (whole, name) => (name in vars ? vars[name] : whole));
}

// ---- units ------------------------------------------------------------------------------------

function scaled(v, steps, base, suffixes, digits = 3) {
	let i = 0;
	let x = Math.abs(v);
	while (x >= base && i < suffixes.length - 1) {
		x /= base;
		i++;
	}
	const n = Math.sign(v) * x;
	return `${Number(n.toPrecision(digits))}${suffixes[i]}`;
}

function formatValue(v, unit) {
	if (!Number.isFinite(v)) return "-";
	switch (unit) {
		case "s":
			if (v === 0) return "0";
			if (Math.abs(v) < 1e-3) return `${Number((v * 1e6).toPrecision(3))} µs`;
			if (Math.abs(v) < 1) return `${Number((v * 1e3).toPrecision(3))} ms`;
			return `${Number(v.toPrecision(3))} s`;
		case "bytes":
			return scaled(v, 0, 1024, [" B", " KiB", " MiB", " GiB", " TiB"]);
		case "Bps":
			return `${scaled(v, 0, 1024, [" B", " KiB", " MiB", " GiB"])}/s`;
		case "percentunit":
			return `${Number((v * 100).toPrecision(3))}%`;
		case "ops":
			return `${scaled(v, 0, 1000, ["", "K", "M", "G"])}/s`;
		default:
			return scaled(v, 0, 1000, ["", "K", "M", "G"]);
	}
}

/** About `count` round tick values covering [min, max]. */
function ticks(min, max, count) {
	if (max <= min) max = min + 1;
	const raw = (max - min) / count;
	const mag = 10 ** Math.floor(Math.log10(raw));
	const step = [1, 2, 2.5, 5, 10].map(f => f * mag).find(s => s >= raw);
	const out = [];
	for (let t = Math.ceil(min / step) * step; t <= max + step * 1e-9; t += step) out.push(Number(t.toPrecision(12)));
	return { values: out, top: Math.max(max, out[out.length - 1]) };
}

const hhmmss = t => new Date(t * 1000).toISOString().slice(11, 19);

// ---- one panel as SVG -------------------------------------------------------------------------

function chartSvg(panel, allSeries, errors, width, height, start, end) {
	const unit = panel.fieldConfig?.defaults?.unit || "short";
	const legendRows = Math.min(4, Math.ceil(allSeries.length / 2)) || (errors.length ? 1 : 0);
	// When the legend cannot name every series, the ones that rose highest come first (the
	// legend of Grafana sorted by max), so a limit that was hit is not among the hidden ones.
	const peak = s => Math.max(0, ...s.points.map(p => p[1]).filter(Number.isFinite));
	const series = allSeries.length > legendRows * 2 ? allSeries.slice().sort((a, b) => peak(b) - peak(a)) : allSeries;
	const legendH = legendRows * 15 + 6;
	const titleH = 24;
	const axisW = 62;
	const plot = { x: axisW, y: titleH + 6, w: width - axisW - 12, h: height - titleH - 6 - 22 - legendH };
	const parts = [];
	parts.push(`<rect x="0.5" y="0.5" width="${width - 1}" height="${height - 1}" rx="3" fill="${THEME.panel}" stroke="${THEME.border}"/>`);
	parts.push(`<text x="10" y="17" fill="${THEME.text}" font-size="13" font-weight="600">${escapeXml(panel.title)}</text>`);
	const values = series.flatMap(s => s.points.map(p => p[1]).filter(Number.isFinite));
	const min = Math.min(0, ...values);
	const max = values.length ? Math.max(...values) : 1;
	// Byte axes tick at round binary multiples (16 MiB, not 16.8 MB).
	const base = unit === "bytes" || unit === "Bps" ? 1024 ** Math.max(0, Math.floor(Math.log(Math.max(max, 1)) / Math.log(1024))) : 1;
	const scaledTicks = ticks(min / base, max / base, Math.max(2, Math.floor(plot.h / 40)));
	const yTicks = scaledTicks.values.map(v => v * base);
	const top = scaledTicks.top * base;
	const sx = t => plot.x + ((t - start) / (end - start)) * plot.w;
	const sy = v => plot.y + plot.h - ((v - min) / (top - min)) * plot.h;
	for (const v of yTicks) {
		const y = sy(v).toFixed(1);
		parts.push(`<line x1="${plot.x}" y1="${y}" x2="${plot.x + plot.w}" y2="${y}" stroke="${THEME.grid}" stroke-width="1"/>`);
		parts.push(`<text x="${plot.x - 6}" y="${Number(y) + 4}" fill="${THEME.muted}" font-size="10" text-anchor="end">${escapeXml(formatValue(v, unit))}</text>`);
	}
	const xCount = Math.max(2, Math.floor(plot.w / 90));
	for (let i = 0; i <= xCount; i++) {
		const t = start + ((end - start) * i) / xCount;
		const x = sx(t).toFixed(1);
		parts.push(`<line x1="${x}" y1="${plot.y + plot.h}" x2="${x}" y2="${plot.y + plot.h + 4}" stroke="${THEME.muted}"/>`);
		const anchor = i === 0 ? "start" : i === xCount ? "end" : "middle";
		parts.push(`<text x="${x}" y="${plot.y + plot.h + 15}" fill="${THEME.muted}" font-size="10" text-anchor="${anchor}">${hhmmss(t)}</text>`);
	}
	parts.push(`<line x1="${plot.x}" y1="${plot.y + plot.h}" x2="${plot.x + plot.w}" y2="${plot.y + plot.h}" stroke="${THEME.muted}"/>`);
	series.forEach((s, i) => {
		const color = PALETTE[i % PALETTE.length];
		// A NaN or a missing step (no sample) breaks the line, as Grafana's spanNulls: false.
		let d = "";
		let prevT = null;
		for (const [t, v] of s.points) {
			if (!Number.isFinite(v)) {
				prevT = null;
				continue;
			}
			const gap = prevT === null || t - prevT > s.step * 1.5;
			d += `${gap ? "M" : "L"}${sx(t).toFixed(1)},${sy(v).toFixed(1)}`;
			prevT = t;
		}
		if (d) parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
	});
	if (!series.length) {
		parts.push(`<text x="${plot.x + plot.w / 2}" y="${plot.y + plot.h / 2}" fill="${THEME.muted}" font-size="12" text-anchor="middle">${errors.length ? "query error" : "No data"}</text>`);
	}
	// Legend: two columns, each entry with its last value; more than fit are summarised.
	const legendY = plot.y + plot.h + 26;
	const colW = (width - 20) / 2;
	const shown = series.slice(0, legendRows * 2);
	shown.forEach((s, i) => {
		const x = 10 + (i % 2) * colW;
		const y = legendY + Math.floor(i / 2) * 15;
		const last = [...s.points].reverse().find(p => Number.isFinite(p[1]));
		const label = `${s.legend}  ${last ? formatValue(last[1], unit) : "-"}`;
		parts.push(`<rect x="${x}" y="${y - 8}" width="12" height="3" fill="${PALETTE[i % PALETTE.length]}"/>`);
		const fit = Math.floor((colW - 24) / 6);
		parts.push(`<text x="${x + 17}" y="${y - 3}" fill="${THEME.text}" font-size="10.5">${escapeXml(label.length > fit ? label.slice(0, fit - 1) + "…" : label)}</text>`);
	});
	if (series.length > shown.length) {
		parts.push(`<text x="${width - 10}" y="17" fill="${THEME.muted}" font-size="10" text-anchor="end">+${series.length - shown.length} more series</text>`);
	}
	errors.forEach((e, i) => {
		parts.push(`<text x="10" y="${legendY + (shown.length ? legendRows * 15 : 0) + i * 13}" fill="#f2495c" font-size="10">${escapeXml(e.slice(0, 110))}</text>`);
	});
	return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="Inter, 'DejaVu Sans', Helvetica, Arial, sans-serif">${parts.join("")}</svg>`;
}

// ---- the page ---------------------------------------------------------------------------------

async function render({ dashboard, prometheus, start, end, step, vars, width, subtitle }) {
	const colPx = (width - GAP) / COLUMNS;
	const blocks = [];
	let pageH = 0;
	const headerH = 44;
	const summary = [];
	for (const panel of dashboard.panels || []) {
		const g = panel.gridPos || { x: 0, y: 0, w: 24, h: 8 };
		const left = GAP + g.x * colPx;
		const top = headerH + g.y * ROW_UNIT_PX;
		const w = g.w * colPx - GAP;
		if (panel.type === "row") {
			blocks.push(`<div class="row" style="left:${left}px;top:${top}px;width:${w}px">${escapeXml(panel.title)}</div>`);
			pageH = Math.max(pageH, top + ROW_UNIT_PX);
			continue;
		}
		const h = g.h * ROW_UNIT_PX - GAP;
		const series = [];
		const errors = [];
		for (const target of panel.targets || []) {
			if (target.hide || !target.expr) continue;
			const expr = expand(target.expr, vars);
			try {
				for (const r of await queryRange(prometheus, expr, start, end, step)) {
					series.push({ legend: legendOf(target.legendFormat, r.metric), step, points: r.values.map(([t, v]) => [Number(t), Number(v)]) });
				}
			} catch (e) {
				errors.push(`${target.refId}: ${e.message}`);
			}
		}
		summary.push({ title: panel.title, series: series.length, errors });
		blocks.push(`<div class="panel" style="left:${left}px;top:${top}px">${chartSvg(panel, series, errors, Math.round(w), Math.round(h), start, end)}</div>`);
		pageH = Math.max(pageH, top + h + GAP);
	}
	const title = `${escapeXml(dashboard.title || "dashboard")}<span>${escapeXml(subtitle || "")}  ${new Date(start * 1000).toISOString().slice(0, 19)}Z – ${new Date(end * 1000).toISOString().slice(11, 19)}Z, step ${step} s</span>`;
	const html = `<!doctype html><html><head><meta charset="utf-8"><style>
body{margin:0;background:${THEME.page};color:${THEME.text};font-family:Inter,'DejaVu Sans',Helvetica,Arial,sans-serif}
.page{position:relative;width:${width}px;height:${pageH}px}
h1{position:absolute;left:${GAP}px;top:6px;margin:0;font-size:17px;font-weight:600}
h1 span{margin-left:14px;font-size:12px;font-weight:400;color:${THEME.muted}}
.row{position:absolute;font-size:14px;font-weight:600;padding-top:6px}
.panel{position:absolute}
</style></head><body><div class="page"><h1>${title}</h1>${blocks.join("\n")}</div></body></html>`;
	return { html, height: pageH, summary };
}

function screenshot(htmlFile, pngFile, width, height) {
	const chromium = process.env.CHROMIUM || "chromium";
	const profile = fs.mkdtempSync(path.join(os.tmpdir(), "render-dashboard-"));
	try {
		const res = spawnSync(chromium, [
			"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
			`--user-data-dir=${profile}`, `--window-size=${width},${height}`,
			`--screenshot=${path.resolve(pngFile)}`, `file://${path.resolve(htmlFile)}`
		], { encoding: "utf8", timeout: 60000 });
		if (res.status !== 0 || !fs.existsSync(pngFile)) {
			throw new Error(`chromium failed (${res.status}): ${(res.stderr || "").slice(-800)}`);
		}
	} finally {
		fs.rmSync(profile, { recursive: true, force: true });
	}
}

async function main() {
	const prometheus = arg("prometheus", "http://127.0.0.1:9090");
	const dashboardFile = arg("dashboard", path.join(__dirname, "..", "deploy", "grafana", "steedos-socket.json"));
	const dashboard = JSON.parse(fs.readFileSync(dashboardFile, "utf8"));
	const end = Number(arg("end", Math.floor(Date.now() / 1000)));
	const start = Number(arg("start", end - Number(arg("minutes", 5)) * 60));
	const step = Number(arg("step", Math.max(1, Math.round((end - start) / 240))));
	const width = Number(arg("width", 1600));
	const vars = { instance: arg("instance", ".+"), __rate_interval: arg("rate-interval", "1m"), __interval: `${step}s` };
	const { html, height, summary } = await render({ dashboard, prometheus, start, end, step, vars, width, subtitle: arg("subtitle", "") });
	const htmlFile = arg("html", path.join(os.tmpdir(), `dashboard-${process.pid}.html`));
	fs.writeFileSync(htmlFile, html);
	for (const p of summary) {
		console.error(`render-dashboard: ${p.title}: ${p.series} series${p.errors.length ? `, errors: ${p.errors.join("; ")}` : ""}`);
	}
	const png = arg("png", null);
	if (png) {
		screenshot(htmlFile, png, width, height);
		console.error(`render-dashboard: ${png} (${width}x${height}) from ${htmlFile}`);
	}
	if (summary.some(p => p.errors.length)) process.exitCode = 2;
}

if (require.main === module) {
	main().catch(e => {
		console.error(`render-dashboard: ${e.stack || e.message}`);
		process.exit(1);
	});
}

module.exports = { render, screenshot, legendOf, expand, formatValue, ticks };
