"use strict";
// bench/compare.js's output: the summary table (for the README), the results file and the chart.
// `results[impl]` holds what each workload returned (see compare.js); a workload not run is absent.
const fs = require("fs");
const os = require("os");
const path = require("path");
const { execFileSync } = require("child_process");

const GEN = " (g)"; // the generator saturated: a bound of the load client, not of the server

const num = (v, digits = 0) => (v == null || Number.isNaN(v) ? "n/a" : Number(v).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits }));
const mark = (text, genBound) => (genBound && text !== "n/a" ? text + GEN : text);

/** The highest rate of a fan-out ladder with p99 <= limit and nothing lost: { rate, atLeast, step }. */
function highestSustained(steps) {
	if (!steps || !steps.length) return null;
	// The highest passing step below the first failing one.
	let best = null;
	let failed = null;
	for (const s of steps) {
		if (!s.ok) {
			failed = s;
			break;
		}
		best = s;
	}
	const last = steps[steps.length - 1];
	// The ladder ended without a failing step: the real limit is above its top.
	return { rate: best ? best.rate : 0, atLeast: !failed && best === last, step: best, failed };
}

/** One summary row per metric: { metric, product, baseline, ratio, target, met }. */
function rows(results) {
	const p = results.product || {};
	const b = results.baseline || {};
	const out = [];
	const ratio = (pv, bv, higherBetter) => {
		if (pv == null || bv == null || !pv || !bv) return null;
		return higherBetter ? pv / bv : bv / pv;
	};
	const fmtRatio = r => (r == null ? "n/a" : `${num(r, r >= 10 ? 0 : 1)}×`);
	const add = (metric, pv, bv, { digits = 0, higherBetter = false, pGen = false, bGen = false, target = "", met = null, pText, bText, ratioText } = {}) => {
		const r = ratio(pv, bv, higherBetter);
		out.push({
			metric,
			product: mark(pText !== undefined ? pText : num(pv, digits), pGen),
			baseline: mark(bText !== undefined ? bText : num(bv, digits), bGen),
			ratio: ratioText || fmtRatio(r),
			target,
			met: met == null ? "" : met ? "met" : "not met",
			r
		});
		return r;
	};
	// a: idle RSS
	const sizes = [...new Set([...(p.idle || []), ...(b.idle || [])].map(r => r.clients))].sort((x, y) => x - y);
	for (const n of sizes) {
		const pr = (p.idle || []).find(r => r.clients === n);
		const br = (b.idle || []).find(r => r.clients === n);
		const pv = pr && pr.bytes;
		const bv = br && br.bytes;
		const r = ratio(pv, bv, false);
		const is10k = n === 10000;
		add(`idle RSS per Steedos-like client at ${num(n)} (bytes; lower is better)`, pv, bv, is10k ? {
			target: "≤ 2,048 B and ≥ 6× less than the baseline",
			met: pv != null && bv != null ? pv <= 2048 && r >= 6 : null
		} : {});
	}
	// b: fan-out
	const pf = p.fanout, bf = b.fanout;
	const at = (steps, rate) => (steps || []).find(s => s.rate === rate);
	const p100 = at(pf, 100), b100 = at(bf, 100);
	const clients = (pf || bf) ? `${num((results.meta && results.meta.fanoutClients) || 1000)} clients` : "";
	if (pf || bf) {
		add(`fan-out to ${clients} in one room, 100 ev/s: p50 emit→receipt (ms)`, p100 && p100.p50, b100 && b100.p50, { digits: 2, pGen: p100 && p100.genBound, bGen: b100 && b100.genBound });
		add(`fan-out, 100 ev/s: p99 emit→receipt (ms)`, p100 && p100.p99, b100 && b100.p99, {
			digits: 2, pGen: p100 && p100.genBound, bGen: b100 && b100.genBound,
			target: "product p99 ≤ 10 ms", met: p100 ? p100.p99 <= 10 && p100.lost === 0 : null
		});
		const ph = highestSustained(pf), bh = highestSustained(bf);
		const text = hs => (hs ? (hs.rate ? `${hs.atLeast ? "≥ " : ""}${num(hs.rate)}` : `< ${num((hs.failed || {}).rate)}`) : "n/a");
		const r = ratio(ph && ph.rate, bh && bh.rate, true);
		// The baseline failed at its first step: the product is at least rate / that step's rate.
		const lower = ph && ph.rate && bh && !bh.rate && bh.failed ? ph.rate / bh.failed.rate : null;
		add("highest sustained fan-out rate, p99 ≤ 50 ms and nothing lost (events/s)", ph && ph.rate, bh && bh.rate, {
			higherBetter: true, pText: text(ph), bText: text(bh), ratioText: lower ? `> ${num(lower, 1)}×` : undefined,
			pGen: ph && ph.failed && ph.failed.genBound, bGen: bh && bh.failed && bh.failed.genBound,
			target: "≥ 30× the baseline", met: r != null ? r >= 30 : lower ? (lower >= 30 ? true : null) : null
		});
		add("… deliveries/s at that rate", ph && ph.step && ph.step.deliveriesPerS, bh && bh.step && bh.step.deliveriesPerS, {
			higherBetter: true, pGen: ph && ph.step && ph.step.genBound, bGen: bh && bh.step && bh.step.genBound
		});
		// f
		add("server CPU per delivery at 100 ev/s (µs)", p100 && p100.serverCpuUs, b100 && b100.serverCpuUs, { digits: 2 });
	}
	// c
	if (p.one || b.one) {
		const n = num((p.one || b.one).clients);
		add(`one event to ${n} clients: received by the last client (ms)`, p.one && p.one.lastMs, b.one && b.one.lastMs, { digits: 1, pGen: p.one && p.one.genBound, bGen: b.one && b.one.genBound });
		add(`one event to ${n} clients: server write time (ms)`, p.one && p.one.writeMs, b.one && b.one.writeMs, { digits: 2 });
	}
	// g: the product alone, 2 write threads against 1 (the ratio column is that ratio)
	if (p.writeScaling) {
		const w = p.writeScaling;
		out.push({
			metric: `one event to ${num(w.clients)} clients, gateway.ioThreads 2 vs 1, nothing pinned: server write time (ms)`,
			product: `${num(w.two.writeMs, 1)} vs ${num(w.one.writeMs, 1)}`,
			baseline: "",
			ratio: `${num(w.ratio, 2)}× (2 vs 1)`,
			target: "≤ 0.65×",
			met: w.lost === 0 ? (w.ratio <= 0.65 ? "met" : "not met") : "not met (lost)",
			r: w.ratio
		});
	}
	// d
	if (p.personal || b.personal) {
		const x = p.personal || b.personal;
		add(`${num(x.users)} users in personal rooms, ${num(x.rate)} notifications/s to random users: p99 (ms)`, p.personal && p.personal.p99, b.personal && b.personal.p99, {
			digits: 2, pGen: p.personal && p.personal.genBound, bGen: b.personal && b.personal.genBound
		});
	}
	// e
	if (p.connects || b.connects) {
		const titles = { cold: "cold cache, WebSocket only", warm: "warm cache, WebSocket only", "polling-cold": "cold cache, polling then upgrade", "polling-warm": "warm cache, polling then upgrade" };
		for (const round of Object.keys(titles)) {
			const pc = p.connects && p.connects[round], bc = b.connects && b.connects[round];
			if (!pc && !bc) continue;
			const r = ratio(pc && pc.per_s, bc && bc.per_s, true);
			add(`connects/s with auth, ${titles[round]}`, pc && pc.per_s, bc && bc.per_s, Object.assign({
				higherBetter: true, pGen: pc && pc.genBound, bGen: bc && bc.genBound
			}, round === "warm" ? { target: "≥ 5,000/s and ≥ 3× the baseline", met: pc && bc ? pc.per_s >= 5000 && r >= 3 : null } : {}));
		}
		const pw = p.connects && p.connects.warm, bw = b.connects && b.connects.warm;
		add("connect time with auth, warm cache: p99 (ms)", pw && pw.p99_ms, bw && bw.p99_ms, { digits: 1, pGen: pw && pw.genBound, bGen: bw && bw.genBound });
	}
	return out;
}

function table(results) {
	const lines = ["| metric | product | baseline | product vs baseline | target | |", "|---|---:|---:|---:|---|---|"];
	for (const r of rows(results)) lines.push(`| ${r.metric} | ${r.product} | ${r.baseline} | ${r.ratio} | ${r.target} | ${r.met} |`);
	return lines.join("\n");
}

const LEGEND = "Ratios: how many times better the product is (lower memory, latency and CPU; higher rates). " +
	"(g): the load client (one thread) used ≥ 90 % of its core during that measurement, so the figure is a bound of the generator, not of the server.";

/** The summary table with a one-line header, for the README. */
function readmeTable(meta, results) {
	return [`Benchmark ${meta.date}${meta.quick ? " (--quick)" : ""}, \`${meta.command}\` at ${meta.git}: ${meta.machine}.`, "", table(Object.assign({ meta: meta.sizes }, results)), "", LEGEND].join("\n");
}

function markdown(meta, results) {
	const r = Object.assign({ meta: meta.sizes }, results);
	const out = [];
	out.push(`# Product vs socket.io baseline, ${meta.date}${meta.quick ? " (--quick)" : ""}`, "");
	out.push("Command:", "", `    ${meta.command}`, "");
	out.push(`Commit: ${meta.git}. Machine: ${meta.machine}. Run time: ${Math.round(meta.seconds)} s.`);
	if (meta.quick) out.push("", "**--quick**: small sizes and short settle periods, a smoke run; the figures are not comparable with a full run's.");
	out.push(`Pinning: ${meta.pin ? "each server on CPU 0, the load clients on CPU 1 (taskset); the producer/auth broker (node) and nats-server float" : "off"}. ` +
		`Priority: nice ${meta.nice} for the benchmark and all it starts. Load average (1 min) at the end: ${meta.loadEnd}; at the start of each workload: ` +
		meta.impls.map(i => `${i} ${Object.entries((results[i] || {}).load || {}).map(([k, v]) => `${k} ${v}`).join(", ")}`).join("; ") + ".", "");
	out.push("Product: `build/steedos-socket` (the binary as built). Baseline: `bench/baseline/server.js` (socket.io 4.8 + moleculer 0.14, the Steedos `socket` service). " +
		"Each workload of each implementation: a fresh nats-server, a fresh server, a moleculer 0.14 broker with the interop fixture's mock auth service that also produces the events, " +
		"and build/load-client (C++, one thread) with Steedos-like clients (cookies of a fixture login, the Steedos subscribe calls with acks). " +
		"The product's `gateway.maxHandshakesPerSecond` (0) and `auth.maxInFlight` (1,000,000) are lifted so that they do not refuse the generator; the baseline has no such limits.", "");
	out.push("## Summary", "", table(r), "", LEGEND, "");
	for (const impl of meta.impls) {
		const x = results[impl] || {};
		out.push(`## ${impl}`, "");
		if (x.idle) {
			out.push("Idle memory (workload a): (VmRSS with N − VmRSS with 0) / N after a settle period (product 5 s, baseline 15 s; --quick 2 and 3 s)" + (impl === "baseline" ? "; also after a full GC (SIGUSR2, node --expose-gc; the 0-client reading too), the lower one counts" : "") + ".", "");
			out.push("| clients | RSS 0 (KiB) | RSS N settled (KiB) | B/client settled | B/client after GC | connect (s) | auth calls |", "|---:|---:|---:|---:|---:|---:|---:|");
			for (const s of x.idle) out.push(`| ${num(s.clients)} | ${num(s.before)} | ${num(s.settled)} | ${num(s.perSettled)} | ${impl === "baseline" ? num(s.perGc) : "—"} | ${num(s.connectS, 1)} | ${num(s.authCalls)} |`);
			out.push("");
		}
		if (x.fanout) {
			out.push("Fan-out ladder (workloads b and f): events `$socket.emit` to room `S1-space`, paced; latency from the producer's emit to the client's read; deliveries/s = delivered / (first emit → last receipt); server CPU from /proc/<pid>/stat over the step.", "");
			out.push("| rate (ev/s) | events | emitted at (ev/s) | p50 ms | p99 ms | max ms | deliveries/s | lost | server µs/delivery | load client CPU % |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
			for (const s of x.fanout) {
				out.push(`| ${num(s.rate)}${s.firstTry ? ` (2nd try; 1st: p99 ${num(s.firstTry.p99, 1)} ms, lost ${num(s.firstTry.lost)})` : ""} | ${num(s.count)} | ${num(s.achievedRate)}${s.producerBound ? " (p)" : ""} | ${num(s.p50, 2)} | ${num(s.p99, 2)} | ${num(s.max, 2)} | ${num(s.deliveriesPerS)} | ${num(s.lost)} | ${num(s.serverCpuUs, 2)} | ${mark(num(s.clientCpu), s.genBound)} |`);
			}
			out.push("");
		}
		if (x.one) {
			out.push(`One event to ${num(x.one.clients)} clients (workload c), each event: last receipt (ms after the emit), median receipt, server write time (ms), lost:`, "");
			out.push(x.one.reps.map(e => `${num(e.lastMs, 1)} / ${num(e.p50, 1)} / ${e.writeMs == null ? "n/a" : num(e.writeMs, 2)} / ${e.lost}${e.genBound ? GEN : ""}`).join("; "), "");
		}
		if (x.writeScaling) {
			const w = x.writeScaling;
			out.push(`Write threads (workload g): one event to ${num(w.clients)} clients, gateway.ioThreads 1 then 2 in turn (a fresh server each time); server and load client unpinned, the load client at nice 19 so that it does not take a core from the write threads: server write time ${num(w.one.writeMs, 1)} ms with 1 thread, ${num(w.two.writeMs, 1)} ms with 2 (${num(w.ratio, 2)}×); last receipt ${num(w.one.lastMs, 1)} and ${num(w.two.lastMs, 1)} ms (medians of ${num(w.reps)} events each); lost ${w.lost}.`, "");
		}
		if (x.personal) {
			const d = x.personal;
			out.push(`Personal rooms (workload d): ${num(d.users)} users, ${num(d.count)} notifications at ${num(d.rate)}/s (emitted at ${num(d.achievedRate)}/s): p50 ${num(d.p50, 2)}, p99 ${num(d.p99, 2)}, max ${num(d.max, 2)} ms, lost ${d.lost}${d.genBound ? GEN : ""}.`, "");
		}
		if (x.connects) {
			out.push("Connects (workload e), each client a distinct login, 512 attempts in flight; a connection's time runs from its first attempt until the CONNECT reply (polling: until `5` after `3probe` on the upgraded WebSocket); cold: logins the server has not seen; warm: the same again:", "");
			out.push("| cache | connects | seconds | per s | p50 ms | p99 ms | max ms | failed | auth calls | load client CPU % |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
			for (const round of ["cold", "warm", "polling-cold", "polling-warm"]) {
				const c = x.connects[round];
				if (c) out.push(`| ${round} | ${num(c.connects)} | ${num(c.seconds, 2)} | ${num(c.per_s)} | ${num(c.p50_ms, 1)} | ${num(c.p99_ms, 1)} | ${num(c.max_ms, 1)} | ${c.failed} | ${num(c.authCalls)} | ${mark(num(c.client_cpu_pct), c.genBound)} |`);
			}
			out.push("");
		}
	}
	out.push("## Method notes", "");
	out.push("- (p) in a ladder: the producer (moleculer 0.14 in the benchmark's process) emitted at less than 90 % of the step's rate.");
	out.push("- Baseline write time: `BENCH_EMIT_TIMING=1` makes `bench/baseline/server.js` time its `$socket.emit` handler with hrtime, from the handler's start to the return of socket.io's broadcast (every socket write issued); the product's `steedos_socket_emit_to_write_seconds` runs from the event read off the bus to the last socket write issued (delta of its _sum over exactly one event).");
	out.push("- Every figure is one run on a shared 2-core machine; other processes (builds) may have run at the same time: see the load average above.");
	out.push("");
	return out.join("\n");
}

/** Writes the PNG chart with gnuplot; returns its path, or "" when gnuplot is missing. */
function chart(results, pngPath) {
	try {
		execFileSync("gnuplot", ["--version"], { stdio: "ignore" });
	} catch (_) {
		process.stderr.write("compare: gnuplot missing (apt-get install -y gnuplot-nox): no chart\n");
		return "";
	}
	const block = (name, lines) => `$${name} << EOD\n${lines.length ? lines.join("\n") : "0 0"}\nEOD\n`;
	const impls = Object.keys(results).filter(k => k !== "meta");
	let script = "";
	const plots = { fanout: [], idle: [] };
	for (const impl of impls) {
		const x = results[impl];
		if (x.fanout && x.fanout.length) {
			script += block(`${impl}_fanout`, x.fanout.map(s => `${s.rate} ${Math.max(s.p99, 0.01)}`));
			plots.fanout.push(`$${impl}_fanout using 1:2 with linespoints pt 7 ps 0.8 lw 2 title "${impl}"`);
		}
		if (x.idle && x.idle.length) {
			script += block(`${impl}_idle`, x.idle.map(s => `${s.clients} ${Math.round(s.bytes)}`));
			plots.idle.push(`$${impl}_idle using 1:2 with linespoints pt 7 ps 0.8 lw 2 title "${impl}"`);
		}
	}
	const panels = [];
	if (plots.fanout.length) {
		panels.push(`set title "fan-out to one room: p99 emit->receipt vs rate"\nset logscale xy\nset xlabel "events/s"\nset ylabel "p99 (ms)"\n` +
			`set arrow from graph 0, first 50 to graph 1, first 50 nohead dashtype 2\nset label "p99 limit 50 ms" at graph 0.02, first 56\nplot ${plots.fanout.join(", ")}\nunset arrow\nunset label\nunset logscale`);
	}
	if (plots.idle.length) {
		panels.push(`set title "idle RSS per Steedos-like client"\nset logscale x\nset xrange [1000:30000]\nset key center right\nset xlabel "clients"\nset ylabel "bytes per client"\nset yrange [0:*]\nplot ${plots.idle.join(", ")}\nunset logscale`);
	}
	if (!panels.length) return "";
	script = `set terminal pngcairo size ${560 * panels.length},420 font ",10"\nset output "${pngPath}"\nset key top left\nset grid\n${script}` +
		`set multiplot layout 1,${panels.length}\n${panels.join("\n")}\nunset multiplot\n`;
	const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "compare-chart-")), "chart.gp");
	fs.writeFileSync(file, script);
	execFileSync("gnuplot", [file], { stdio: ["ignore", "ignore", "inherit"] });
	fs.rmSync(path.dirname(file), { recursive: true, force: true });
	return pngPath;
}

module.exports = { markdown, readmeTable, chart, rows, highestSustained };
