"use strict";
// /proc readings and CPU pinning shared by the bench scripts (steedos_fanout.js, compare.js).
const fs = require("fs");
const os = require("os");
const { execFileSync } = require("child_process");

/** CPU seconds (user + system) `pid` has used, from /proc/<pid>/stat (clock ticks of 10 ms). */
function cpuSeconds(pid) {
	const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
	const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
	return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Whether pinning servers and generators to separate CPUs makes sense here (2+ CPUs). */
const canPin = () => os.cpus().length >= 2;

/** Pins every thread of `pid` to `cpu` (taskset -a). */
function pin(pid, cpu) {
	execFileSync("taskset", ["-a", "-p", "-c", String(cpu), String(pid)], { stdio: "ignore" });
}

module.exports = { cpuSeconds, canPin, pin };
