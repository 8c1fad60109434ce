"use strict";
// Conformance targets: the C++ `sio-conformance-server` (from $STEEDOS_BUILD_DIR) and the npm
// reference servers (lib/reference-server.js, engine.io 6.6 + socket.io 4.8 configured per spec
// §3.2). Both run as child processes on a free loopback port, print "listening on http://HOST:PORT"
// when ready, are killed by PID at exit, and can be stopped and restarted on the same port.
//
// Env TARGET=cpp|reference|both picks the targets of the protocol suites (default: both when the
// C++ binary exists, else reference only). A C++ target whose binary is missing fails loudly.

const fs = require("fs");
const path = require("path");
const { spawn } = require("child_process");
const harness = require("../../lib/harness");

const { BUILD_DIR, freePort, withTimeout, sleep } = harness;
const CPP_BINARY = path.join(BUILD_DIR, "sio-conformance-server");
const REFERENCE_SERVER = path.join(__dirname, "reference-server.js");
const CLIENT_DIST = path.join(harness.INTEROP_DIR, "node_modules", "socket.io-client", "dist");
const VERBOSE = !!(process.env.CONFORMANCE_VERBOSE || process.env.INTEROP_VERBOSE);

// ---------------------------------------------------------------------------------------------
// Process bookkeeping (same style as lib/harness.js: every child is killed by PID at exit).

const children = new Set();

function killChildren() {
	for (const child of children) {
		try {
			process.kill(child.pid, "SIGCONT");
		} catch (_) {
			/* already gone */
		}
		try {
			process.kill(child.pid, "SIGKILL");
		} catch (_) {
			/* already gone */
		}
	}
	children.clear();
}
// harness.js turns SIGINT/SIGTERM/SIGHUP into process.exit(), which runs this too.
process.on("exit", killChildren);

function track(child) {
	children.add(child);
	child.once("exit", () => children.delete(child));
	return child;
}

// ---------------------------------------------------------------------------------------------
// Which targets

function cppBinaryExists() {
	try {
		fs.accessSync(CPP_BINARY, fs.constants.X_OK);
		return true;
	} catch (_) {
		return false;
	}
}

function targetEnv() {
	const t = (process.env.TARGET || "").trim().toLowerCase();
	if (t && !["cpp", "reference", "both"].includes(t)) {
		throw new Error(`TARGET must be cpp, reference or both (got "${process.env.TARGET}")`);
	}
	return t;
}

/** Targets of the protocol suites (engineio/socketio tests). */
function protocolTargets() {
	const t = targetEnv();
	if (t === "cpp") return ["cpp"];
	if (t === "reference") return ["reference"];
	if (t === "both") return ["cpp", "reference"];
	return cppBinaryExists() ? ["cpp", "reference"] : ["reference"];
}

/**
 * Targets of the real-client tests (clients/browser): the C++ server only. TARGET=reference runs
 * them against the reference instead (to check the checks). Empty when TARGET is unset and the
 * binary does not exist (a developer machine before the build; CI always has the binary).
 */
function clientTargets() {
	const t = targetEnv();
	if (t === "reference") return ["reference"];
	if (t === "cpp" || t === "both") return ["cpp"];
	return cppBinaryExists() ? ["cpp"] : [];
}

// ---------------------------------------------------------------------------------------------
// Starting a target

const LISTENING = /listening on (https?:\/\/[^\s/]+)/;

/**
 * Starts `name` ("cpp" or "reference") and resolves a handle:
 *   { name, url: "http://127.0.0.1:P", wsUrl, port, pid, logs, logText(), running(),
 *     stop(signal), restart(), crashed() }
 * `opts.port` pins the port (default: a free one); `opts.args` are extra command-line arguments
 * (both servers take `--recovery MS`).
 */
async function startTarget(name, opts = {}) {
	let command;
	let baseArgs;
	if (name === "cpp") {
		if (!cppBinaryExists()) {
			throw new Error(
				`C++ conformance server not found or not executable: ${CPP_BINARY} ` +
					"(build the sio-conformance-server target, or set STEEDOS_BUILD_DIR)"
			);
		}
		command = CPP_BINARY;
		// The bundle served at /socket.io/socket.io.js, wherever the build directory is.
		baseArgs = fs.existsSync(CLIENT_DIST) ? ["--client-dist", CLIENT_DIST] : [];
		// The test run's write-thread setting (scripts/test.sh runs the suites with 2, then 1).
		if (process.env.STEEDOS_TEST_IO_THREADS) baseArgs.push("--io-threads", process.env.STEEDOS_TEST_IO_THREADS);
	} else if (name === "reference") {
		command = process.execPath;
		baseArgs = [REFERENCE_SERVER];
	} else {
		throw new Error(`unknown target ${name}`);
	}
	if (opts.args) baseArgs = baseArgs.concat(opts.args);

	const handle = {
		name,
		url: null,
		wsUrl: null,
		port: opts.port || 0,
		pid: 0,
		proc: null,
		logs: [],
		stopping: false
	};
	handle.logText = () => handle.logs.map(l => `[${l.stream}] ${l.line}`).join("\n");
	handle.running = () => !!handle.proc && handle.proc.exitCode === null && handle.proc.signalCode === null;
	/** An exit the tests did not ask for (crash, abort, early exit). */
	handle.crashed = () => !!handle.proc && !handle.running() && !handle.stopping;

	async function launchOnce(port) {
		const args = baseArgs.concat(["--port", String(port), "--host", "127.0.0.1"]);
		const started = Date.now();
		const proc = track(spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] }));
		handle.proc = proc;
		handle.pid = proc.pid;
		handle.stopping = false;
		let readyResolve;
		const ready = new Promise(resolve => (readyResolve = resolve));
		const exited = new Promise(resolve =>
			proc.once("exit", (code, signal) => resolve({ code, signal }))
		);
		proc.on("error", err => handle.logs.push({ t: 0, stream: "spawn", line: String(err) }));
		for (const [streamName, stream] of [["stdout", proc.stdout], ["stderr", proc.stderr]]) {
			stream.setEncoding("utf8");
			let buf = "";
			const onLine = line => {
				handle.logs.push({ t: Date.now() - started, stream: streamName, line });
				if (VERBOSE) process.stderr.write(`[${name} ${proc.pid}] ${line}\n`);
				const m = LISTENING.exec(line);
				if (m) readyResolve(m[1]);
			};
			stream.on("data", chunk => {
				buf += chunk;
				let idx;
				while ((idx = buf.indexOf("\n")) >= 0) {
					onLine(buf.slice(0, idx).replace(/\r$/, ""));
					buf = buf.slice(idx + 1);
				}
			});
			stream.on("end", () => {
				if (buf) onLine(buf);
				buf = "";
			});
		}
		handle.exited = exited;
		const result = await withTimeout(
			Promise.race([ready.then(url => ({ url })), exited.then(e => ({ exit: e }))]),
			10000,
			`"listening on" line from ${name} (${command} ${args.join(" ")})`
		).catch(err => {
			try {
				proc.kill("SIGKILL");
			} catch (_) {
				/* ignore */
			}
			err.message += `\n--- ${name} output ---\n${handle.logText()}`;
			throw err;
		});
		if (result.exit) {
			const err = new Error(
				`${name} server exited before listening (code ${result.exit.code}, signal ` +
					`${result.exit.signal}): ${command} ${args.join(" ")}\n--- output ---\n${handle.logText()}`
			);
			err.exited = true;
			throw err;
		}
		// The tests always talk to 127.0.0.1 on the port we chose; the line only signals readiness.
		const printed = new URL(result.url);
		if (Number(printed.port) !== port) {
			throw new Error(`${name} printed "${result.url}" but was asked for port ${port}`);
		}
		handle.port = port;
		handle.url = `http://127.0.0.1:${port}`;
		handle.wsUrl = `ws://127.0.0.1:${port}`;
	}

	/** First start: a fresh port unless pinned; another process may grab it in between. */
	async function firstLaunch() {
		for (let attempt = 1; ; attempt++) {
			const port = opts.port || (await freePort());
			try {
				await launchOnce(port);
				return;
			} catch (err) {
				if (!err.exited || opts.port || attempt >= 3) throw err;
			}
		}
	}

	/** Sends `signal` (default SIGKILL: "the server dies") and waits for the exit. */
	handle.stop = async (signal = "SIGKILL") => {
		const proc = handle.proc;
		if (!proc || !handle.running()) return;
		handle.stopping = true;
		try {
			process.kill(proc.pid, "SIGCONT");
		} catch (_) {
			/* ignore */
		}
		proc.kill(signal);
		try {
			await withTimeout(handle.exited, 5000, `exit of ${name} pid ${proc.pid}`);
		} catch (err) {
			proc.kill("SIGKILL");
			await withTimeout(handle.exited, 5000, `exit of ${name} pid ${proc.pid} after SIGKILL`);
		}
	};

	/**
	 * Starts the server again on the same port (after stop() or a crash). Binding right after the
	 * old process died needs SO_REUSEADDR; a few retries cover a slow release of the port.
	 */
	handle.restart = async () => {
		await handle.stop();
		const deadline = Date.now() + 3000;
		for (;;) {
			try {
				await launchOnce(handle.port);
				return;
			} catch (err) {
				if (!err.exited || Date.now() >= deadline) throw err;
				await sleep(200);
			}
		}
	};

	/**
	 * Stops the target at the end of a suite; throws when it had died on its own (a crash must
	 * fail the suite even if no test noticed it).
	 */
	handle.close = async () => {
		const crashed = handle.crashed();
		const exit = crashed ? `code ${handle.proc.exitCode}, signal ${handle.proc.signalCode}` : "";
		await handle.stop();
		if (crashed) {
			throw new Error(`${name} server (pid ${handle.pid}) died during the suite (${exit})\n` +
				`--- output (last 40 lines) ---\n${handle.logs.slice(-40).map(l => l.line).join("\n")}`);
		}
	};

	await firstLaunch();
	return handle;
}

module.exports = {
	CPP_BINARY,
	cppBinaryExists,
	protocolTargets,
	clientTargets,
	startTarget
};
