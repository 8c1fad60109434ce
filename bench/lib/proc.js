"use strict";
// /proc readings, CPU pinning and the run's machine and commit lines, shared by the bench scripts
// (steedos_fanout.js, compare.js, cluster.js).
const fs = require("fs");
const os = require("os");
const path = require("path");
const { execFileSync } = require("child_process");

/** CPU seconds (user + system) `pid` has used, from /proc/<pid>/stat (clock ticks of 10 ms). */
function cpuSeconds(pid) {
	const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
	const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
	return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * CPU nanoseconds `pid`'s live threads have run, from /proc/<pid>/task/<tid>/schedstat (exact,
 * where /proc/<pid>/stat counts 10 ms ticks: too coarse for a burst of 100 ms). A thread that
 * exits takes its time with it, so this is for processes whose threads live as long as they do
 * (steedos-socket's loop and write threads, nats-server's).
 */
function cpuNs(pid) {
	let total = 0;
	for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
		try {
			total += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
		} catch (_) {
			/* the thread has just exited */
		}
	}
	return total;
}

/** Resident set size of `pid` in bytes (VmRSS of /proc/<pid>/status). */
function rssBytes(pid) {
	const m = /VmRSS:\s*(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
	if (!m) throw new Error(`no VmRSS for pid ${pid}`);
	return Number(m[1]) * 1024;
}

/** Whether pinning servers and generators to separate CPUs makes sense here (2+ CPUs). */
const canPin = () => os.cpus().length >= 2;

/** Pins every thread of `pid` to `cpu` (taskset -a). */
function pin(pid, cpu) {
	execFileSync("taskset", ["-a", "-p", "-c", String(cpu), String(pid)], { stdio: "ignore" });
}

/** The machine a result was measured on: CPUs, memory, kernel, node, nats-server, load average. */
function machineLine() {
	const cpu = (/model name\s*:\s*(.*)/.exec(fs.readFileSync("/proc/cpuinfo", "utf8")) || [])[1] || os.arch();
	const version = cmd => {
		try {
			return execFileSync(cmd[0], cmd.slice(1), { encoding: "utf8" }).trim().split("\n")[0];
		} catch (_) {
			return "?";
		}
	};
	return `${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}, node ${process.version}, ${version(["nats-server", "--version"])}, load average at start ${os.loadavg().map(x => x.toFixed(2)).join(" ")}`;
}

/** The commit a result was measured at, and whether the tree had uncommitted changes. */
function gitLine() {
	const git = args => execFileSync("git", args, { cwd: path.join(__dirname, "..", ".."), encoding: "utf8" }).trim();
	try {
		const dirty = git(["status", "--porcelain", "--untracked-files=no"]) ? " (with uncommitted changes)" : "";
		return `${git(["rev-parse", "--short", "HEAD"])}${dirty} on ${git(["rev-parse", "--abbrev-ref", "HEAD"])}`;
	} catch (_) {
		return "?";
	}
}

/**
 * Runs this process (and the children it starts later) at `nice` when allowed (root), so other
 * jobs on the machine take less of the benchmark's cores; says so through `log` when refused.
 */
function raisePriority(nice, log) {
	if (nice == null) return;
	try {
		os.setPriority(0, nice);
	} catch (err) {
		log(`nice ${nice} not allowed (${err.code}): running at the default priority`);
	}
}

module.exports = { cpuSeconds, cpuNs, rssBytes, canPin, pin, machineLine, gitLine, raisePriority };
