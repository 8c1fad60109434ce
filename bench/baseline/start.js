"use strict";
// startBaseline(): runs bench/baseline/server.js as a child process, as tests/interop/lib/harness.js
// startCppNode runs the product node, so bench scripts and the Steedos interop fixture
// (STEEDOS_GATEWAY_IMPL=baseline) can drive either implementation on the same workload.
//
//   const b = await startBaseline({ port: 0, transporter: "nats://127.0.0.1:4222", namespace: "" });
//   b.pid, b.port, b.nodeID; await b.stop();
//
// `config` is a moleculer.config.json-shaped object (gateway, auth, serviceName, heartbeats...)
// written to a temporary file; port/transporter/namespace/nodeID win over it. The returned handle
// also has the node-like members the interop fixture uses: proc, logs, exited, running(),
// logText(), waitForLog(regex, ms).
const fs = require("fs");
const os = require("os");
const path = require("path");
const { spawn } = require("child_process");

const SERVER = path.join(__dirname, "server.js");
const LISTENING = /gateway listening on [^\s]+:(\d+)/;

function withTimeout(promise, ms, what) {
	let timer;
	return Promise.race([
		promise,
		new Promise((_, reject) => {
			timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
		})
	]).finally(() => clearTimeout(timer));
}

/** Spawns the baseline without waiting for it; see startBaseline. */
function spawnBaseline({ port = 0, transporter, namespace = "", nodeID, host = "127.0.0.1", config = {}, env = {}, nodeArgs = [] } = {}) {
	if (!transporter) throw new Error("startBaseline: transporter is required");
	const id = nodeID || `baseline-${process.pid}-${Date.now().toString(36)}`;
	const full = Object.assign({}, config, {
		nodeID: id,
		namespace,
		transporter,
		gateway: Object.assign({ host }, config.gateway || {}, { port })
	});
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "baseline-"));
	const configFile = path.join(dir, "moleculer.config.json");
	fs.writeFileSync(configFile, JSON.stringify(full, null, 2));
	const childEnv = Object.assign({}, process.env);
	for (const key of ["TRANSPORTER", "NAMESPACE", "NODEID", "PORT", "LOGLEVEL", "MOLECULER_CONFIG"]) delete childEnv[key];
	Object.assign(childEnv, env);
	const started = Date.now();
	const proc = spawn(process.execPath, [...nodeArgs, SERVER, "--config", configFile], { cwd: dir, env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
	const logs = [];
	const waiters = new Set();
	for (const [name, stream] of [["stdout", proc.stdout], ["stderr", proc.stderr]]) {
		stream.setEncoding("utf8");
		let buf = "";
		const onLine = line => {
			const entry = { t: Date.now() - started, stream: name, line };
			logs.push(entry);
			if (process.env.INTEROP_VERBOSE) process.stderr.write(`[${id} ${name}] ${line}\n`);
			for (const w of waiters) if (w.regex.test(line)) (waiters.delete(w), w.resolve(entry));
		};
		stream.on("data", chunk => {
			buf += chunk;
			let i;
			while ((i = buf.indexOf("\n")) >= 0) (onLine(buf.slice(0, i)), (buf = buf.slice(i + 1)));
		});
		stream.on("end", () => buf && onLine(buf));
	}
	const exited = new Promise(resolve => proc.once("exit", (code, signal) => {
		fs.rmSync(dir, { recursive: true, force: true });
		resolve({ code, signal, ms: Date.now() - started });
	}));
	const handle = {
		proc,
		pid: proc.pid,
		nodeID: id,
		config: full,
		configFile,
		logs,
		exited,
		port: null,
		running: () => proc.exitCode === null && proc.signalCode === null,
		logText: () => logs.map(l => l.line).join("\n"),
		waitForLog(regex, ms = 5000) {
			const hit = logs.find(l => regex.test(l.line));
			if (hit) return Promise.resolve(hit);
			return withTimeout(new Promise(resolve => waiters.add({ regex, resolve })), ms, `log line ${regex} from ${id}`);
		},
		/** SIGTERM (the broker stops cleanly), SIGKILL after `ms`; resolves { code, signal, ms }. */
		async stop(signal = "SIGTERM", ms = 5000) {
			if (!handle.running()) return Object.assign({}, await exited, { ms: 0 });
			const t0 = Date.now();
			proc.kill(signal);
			try {
				const r = await withTimeout(exited, ms, `exit of ${id}`);
				return { code: r.code, signal: r.signal, ms: Date.now() - t0 };
			} catch (err) {
				proc.kill("SIGKILL");
				await exited;
				throw err;
			}
		}
	};
	return handle;
}

/** Starts the baseline and resolves once its gateway listens: { pid, port, nodeID, stop(), ... }. */
async function startBaseline(opts = {}) {
	const handle = spawnBaseline(opts);
	const exit = handle.exited.then(r => {
		throw new Error(`baseline exited (${r.code}/${r.signal}) before listening:\n${handle.logText()}`);
	});
	const hit = await Promise.race([handle.waitForLog(LISTENING, opts.timeoutMs || 15000), exit]);
	exit.catch(() => {});
	handle.port = Number(LISTENING.exec(hit.line)[1]);
	return handle;
}

module.exports = { startBaseline, spawnBaseline };

if (require.main === module) {
	// node start.js --transporter URL [--port P] [--namespace NS]: runs until SIGINT/SIGTERM.
	const args = {};
	const argv = process.argv.slice(2);
	for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, "")] = argv[i + 1];
	startBaseline({ port: Number(args.port || 5100), transporter: args.transporter || process.env.TRANSPORTER, namespace: args.namespace || "" }).then(b => {
		console.log(`baseline pid ${b.pid} port ${b.port}`);
		for (const sig of ["SIGINT", "SIGTERM"]) process.once(sig, () => b.stop().then(() => process.exit(0)));
	}, err => {
		console.error(err.message);
		process.exit(1);
	});
}
