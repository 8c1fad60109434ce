"use strict";
// Helpers shared by the interop tests: a real nats-server, the C++ nodes (interop-node fixture and
// the steedos-socket product binary), real moleculer 0.14 / 0.15 brokers, a raw NATS sniffer and
// the moleculer-repl command handlers. Every spawned process is tracked and killed by PID when the
// test process exits, whatever happened.

const fs = require("fs");
const net = require("net");
const os = require("os");
const path = require("path");
const { spawn } = require("child_process");

const REPO_ROOT = path.resolve(__dirname, "..", "..", "..");
const INTEROP_DIR = path.resolve(__dirname, "..");
const BUILD_DIR = process.env.STEEDOS_BUILD_DIR
	? path.resolve(process.env.STEEDOS_BUILD_DIR)
	: path.join(REPO_ROOT, "build");
const NATS_SERVER = process.env.NATS_SERVER_BIN || "/usr/sbin/nats-server";
const REDIS_SERVER = process.env.REDIS_SERVER_BIN || "/usr/bin/redis-server";
/**
 * The bus the transport-independent suites run on: "nats" (default) or "redis"
 * (`INTEROP_BUS=redis`, `scripts/test.sh --bus redis`). `startBus()` starts it; tests of what
 * only one bus has (NATS queue groups, NATS TLS, a Redis ACL) start theirs by name.
 */
const BUS = (process.env.INTEROP_BUS || "nats").toLowerCase();
if (BUS !== "nats" && BUS !== "redis") throw new Error(`INTEROP_BUS must be nats or redis, not ${BUS}`);
const VERBOSE = !!process.env.INTEROP_VERBOSE;
/**
 * STEEDOS_TIMEOUT_SCALE (default 1; `scripts/test.sh --sanitize` sets 3): a factor for the time
 * the tests wait for something to happen, so that a sanitized build's slowdown is not a failure.
 * It scales waits only, never a bound the test asserts on a measured duration.
 */
const TIMEOUT_SCALE = Number(process.env.STEEDOS_TIMEOUT_SCALE || 1);
if (!(TIMEOUT_SCALE >= 1)) throw new Error(`STEEDOS_TIMEOUT_SCALE must be a number >= 1, not ${process.env.STEEDOS_TIMEOUT_SCALE}`);
/** `ms` times STEEDOS_TIMEOUT_SCALE: a wait's limit. */
const scaled = ms => Math.round(ms * TIMEOUT_SCALE);

/** Protocol matrix: every core scenario runs once per entry. */
const VERSIONS = [
	{ version: "0.14", protocol: "4" },
	{ version: "0.15", protocol: "5" }
];

// ---------------------------------------------------------------------------------------------
// Process bookkeeping

const children = new Set(); // ChildProcess objects still running
const tempDirs = new Set();

function killAllChildren() {
	for (const child of children) {
		try {
			// A SIGSTOPped process ignores SIGTERM until continued; SIGKILL always works.
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
	for (const dir of tempDirs) {
		try {
			fs.rmSync(dir, { recursive: true, force: true });
		} catch (_) {
			/* ignore */
		}
	}
	tempDirs.clear();
}

process.on("exit", killAllChildren);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
	process.once(sig, () => {
		killAllChildren();
		process.exit(128 + (os.constants.signals[sig] || 0));
	});
}

function track(child) {
	children.add(child);
	child.once("exit", () => children.delete(child));
	return child;
}

function makeTempDir(prefix) {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
	tempDirs.add(dir);
	return dir;
}

// ---------------------------------------------------------------------------------------------
// Small utilities

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

let idCounter = 0;
/** A nodeID unique across test files running on the same machine. */
function uniqueId(prefix) {
	idCounter += 1;
	return `${prefix}-${process.pid}-${idCounter}-${Math.random().toString(36).slice(2, 6)}`;
}

/**
 * Polls `predicate` (sync or async) until it returns a truthy value, which is returned.
 * Exceptions from the predicate count as "not yet". Rejects after `ms` with the last error.
 */
async function waitFor(predicate, ms = 5000, { interval = 50, what = "condition" } = {}) {
	ms = scaled(ms);
	const deadline = Date.now() + ms;
	let lastError = null;
	for (;;) {
		try {
			const value = await predicate();
			if (value) return value;
		} catch (err) {
			if (err && err.exited) throw err; // the awaited process died: no point waiting
			lastError = err;
		}
		if (Date.now() >= deadline) {
			const reason = lastError ? `; last error: ${lastError.message}` : "";
			throw new Error(`waitFor timed out after ${ms} ms: ${what}${reason}`);
		}
		await sleep(interval);
	}
}

/** Resolves `p`, or rejects after `ms` so a stuck promise cannot hang the suite. */
function withTimeout(p, ms, what = "operation") {
	ms = scaled(ms);
	let timer;
	return Promise.race([
		p,
		new Promise((_, reject) => {
			timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
		})
	]).finally(() => clearTimeout(timer));
}

/** Calls `fn` and returns the error it rejects with; fails when it resolves. */
async function rejectionOf(promiseOrFn) {
	const p = typeof promiseOrFn === "function" ? promiseOrFn() : promiseOrFn;
	try {
		const value = await p;
		throw Object.assign(new Error(`expected a rejection, got ${JSON.stringify(value)}`), {
			notRejected: true
		});
	} catch (err) {
		if (err && err.notRejected) throw err;
		return err;
	}
}

/** `count` distinct free loopback ports (all held open together while choosing them). */
async function freePorts(count) {
	const servers = [];
	try {
		for (let i = 0; i < count; i++) {
			servers.push(
				await new Promise((resolve, reject) => {
					const srv = net.createServer();
					srv.unref();
					srv.on("error", reject);
					srv.listen(0, "127.0.0.1", () => resolve(srv));
				})
			);
		}
		return servers.map(srv => srv.address().port);
	} finally {
		await Promise.all(servers.map(srv => new Promise(resolve => srv.close(resolve))));
	}
}

async function freePort() {
	return (await freePorts(1))[0];
}

function canConnect(port, ms = 2000) {
	return withTimeout(new Promise(resolve => {
		const sock = net.connect({ host: "127.0.0.1", port });
		sock.once("connect", () => {
			sock.destroy();
			resolve(true);
		});
		sock.once("error", () => resolve(false));
		sock.setTimeout(ms, () => sock.destroy());
	}), ms, `TCP connect to 127.0.0.1:${port}`);
}

function waitExit(child, ms) {
	if (child.exitCode !== null || child.signalCode !== null) {
		return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
	}
	return withTimeout(
		new Promise(resolve => child.once("exit", (code, signal) => resolve({ code, signal }))),
		ms,
		`exit of pid ${child.pid}`
	);
}

// ---------------------------------------------------------------------------------------------
// Certificates

/**
 * A test CA and a server certificate for 127.0.0.1 and localhost signed by it, in a temporary
 * directory; with `client: true` also a client certificate (clientCert, clientKey).
 */
function makeCertificates({ client = false } = {}) {
	const { execFileSync } = require("child_process");
	const dir = makeTempDir("interop-tls-");
	const file = name => path.join(dir, name);
	const openssl = args => execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
	openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=interop-test-ca",
		"-keyout", file("ca.key"), "-out", file("ca.pem")]);
	const sign = (name, cn, ext) => {
		openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${cn}`,
			"-keyout", file(`${name}.key`), "-out", file(`${name}.csr`)]);
		fs.writeFileSync(file(`${name}.cnf`), ext);
		openssl(["x509", "-req", "-days", "2", "-in", file(`${name}.csr`), "-CA", file("ca.pem"), "-CAkey", file("ca.key"),
			"-CAcreateserial", "-extfile", file(`${name}.cnf`), "-out", file(`${name}.pem`)]);
	};
	sign("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
	const out = { dir, ca: file("ca.pem"), cert: file("server.pem"), key: file("server.key") };
	if (client) {
		sign("client", "interop-client", "extendedKeyUsage=clientAuth\n");
		Object.assign(out, { clientCert: file("client.pem"), clientKey: file("client.key") });
	}
	return out;
}

// ---------------------------------------------------------------------------------------------
// nats-server

/**
 * One nats-server process on loopback ports the caller assigns with `setPorts` (`port`,
 * `monitorPort`, and for a cluster member `clusterPort`) before `launch()`; `extraArgs(handle)`
 * gives the arguments beyond those (TLS, cluster routes) at each launch. `launch()` resolves once the client port accepts connections and
 * rejects with `err.exited` when the process died (e.g. a port taken meanwhile). `stop(signal)`
 * (also removes a JetStream store directory, `storeDir`), `restart()` (same ports, same store),
 * `connz()`, `routez()`.
 */
function natsServerProcess({ scheme = "nats", extraArgs = () => [] } = {}) {
	const handle = { url: null, port: 0, monitorPort: 0, proc: null, logs: [] };

	handle.setPorts = ports => {
		Object.assign(handle, ports);
		handle.url = `${scheme}://127.0.0.1:${handle.port}`;
	};

	handle.launch = async () => {
		const { port, monitorPort } = handle;
		const proc = track(
			spawn(NATS_SERVER, ["-a", "127.0.0.1", "-p", String(port), "-m", String(monitorPort), ...extraArgs(handle)], {
				stdio: ["ignore", "pipe", "pipe"]
			})
		);
		for (const stream of [proc.stdout, proc.stderr]) {
			stream.setEncoding("utf8");
			stream.on("data", chunk => handle.logs.push(chunk));
		}
		handle.proc = proc;
		let exited = false;
		proc.once("exit", () => (exited = true));
		await waitFor(async () => {
			if (exited) {
				const err = new Error(`nats-server exited: ${handle.logs.join("")}`);
				err.exited = true;
				throw err;
			}
			return canConnect(port);
		}, 10000, { what: `nats-server on port ${port}` }).catch(err => {
			if (exited) err.exited = true;
			throw err;
		});
	};

	handle.stop = async (signal = "SIGTERM", { keepStore = false } = {}) => {
		const proc = handle.proc;
		if (proc && proc.exitCode === null && proc.signalCode === null) {
			proc.kill(signal);
			try {
				await waitExit(proc, 5000);
			} catch (_) {
				proc.kill("SIGKILL");
				await waitExit(proc, 5000);
			}
		}
		// A JetStream store (jetStreamArgs) goes with the server; a restart keeps it.
		if (handle.storeDir && !keepStore) {
			fs.rmSync(handle.storeDir, { recursive: true, force: true });
			tempDirs.delete(handle.storeDir);
			handle.storeDir = null;
		}
	};
	handle.restart = async () => {
		await handle.stop("SIGTERM", { keepStore: true });
		await handle.launch();
	};
	const monitor = async what => (await fetch(`http://127.0.0.1:${handle.monitorPort}/${what}`)).json();
	/** nats-server /connz?subs=detail: connections with their subscriptions and queue groups. */
	handle.connz = () => monitor("connz?subs=detail&limit=1024");
	/** nats-server /routez (`query` e.g. "?subs=1"): the routes to the other members of its cluster. */
	handle.routez = (query = "") => monitor(`routez${query}`);
	return handle;
}

/**
 * Launches `servers` (natsServerProcess handles) on fresh free ports: `portsOf(ports, i)` gives
 * server i its ports out of `count` chosen together. Another process may grab a port between
 * choosing and binding: then every server is stopped and the whole set tried again (3 attempts).
 */
async function launchOnFreePorts(servers, count, portsOf) {
	for (let attempt = 1; ; attempt++) {
		const ports = await freePorts(count);
		servers.forEach((server, i) => server.setPorts(portsOf(ports, i)));
		try {
			await Promise.all(servers.map(server => server.launch()));
			return;
		} catch (err) {
			await Promise.all(servers.map(server => server.stop()));
			if (!err.exited || attempt >= 3) throw err;
			for (const server of servers) server.logs.length = 0;
		}
	}
}

/**
 * JetStream's arguments for one nats-server: `-js -sd <dir>`, the store directory a fresh
 * temporary one made at the first launch and kept for the server's restarts (so its streams and
 * key-value buckets survive them), removed with the other temporary directories at exit.
 */
function jetStreamArgs(handle) {
	if (!handle.storeDir) handle.storeDir = makeTempDir("interop-jetstream-");
	return ["-js", "-sd", handle.storeDir];
}

/**
 * Starts /usr/sbin/nats-server on free loopback ports. `restart()` brings it back on the same
 * client port after `stop()` (or a crash). `opts.jetstream`: with JetStream (jetStreamArgs;
 * `storeDir` is its store directory).
 */
async function startNats(opts = {}) {
	// opts.tls = { cert, key }: clients must speak TLS (the URL is then tls://).
	const handle = natsServerProcess({
		scheme: opts.tls ? "tls" : "nats",
		extraArgs: self => [
			...(opts.tls ? ["--tls", "--tlscert", opts.tls.cert, "--tlskey", opts.tls.key] : []),
			...(opts.jetstream ? jetStreamArgs(self) : [])
		]
	});
	await launchOnFreePorts([handle], 2, ([port, monitorPort]) => ({ port, monitorPort }));
	return handle;
}

/**
 * Starts `n` nats-servers on loopback joined by routes into one cluster (a name unique to this
 * call), and resolves once every member reports a route to each of the others (/routez). Returns
 * { members, urls, stop() }; each member is a startNats-like handle (url, stop(), restart() on
 * the same ports, connz(), routez()) plus `waitRoutes(count)`; `restart()` resolves once the
 * member has its n-1 routes again. `urls(first)`: every member's URL, comma-separated, starting
 * at member `first` (the others in order after it), as a node's `transporter`.
 * `waitInterest(subject)`: until every member routes `subject` somewhere (a client of its own
 * subscribes it, or a route to another member has it). `opts.jetstream`: every member with
 * JetStream (its own store directory, kept across its restarts) and a unique `--server_name`.
 */
async function startNatsCluster(n = 3, opts = {}) {
	if (!(n >= 2)) throw new Error(`startNatsCluster: n must be at least 2, not ${n}`);
	const name = uniqueId("cluster");
	// Each member routes to the cluster ports of the others, all assigned before any launches.
	// With JetStream every member needs a server name unique in the cluster, and its own store.
	const clusterArgs = self => ["--cluster_name", name, "--cluster", `nats://127.0.0.1:${self.clusterPort}`,
		"--routes", members.filter(m => m !== self).map(m => `nats://127.0.0.1:${m.clusterPort}`).join(","),
		...(opts.jetstream ? ["--server_name", `${name}-${members.indexOf(self)}`, ...jetStreamArgs(self)] : [])];
	const members = Array.from({ length: n }, () => {
		const member = natsServerProcess({ extraArgs: clusterArgs });
		member.waitRoutes = (count = n - 1, ms = 10000) =>
			waitFor(async () => (await member.routez()).num_routes >= count, ms, { what: `${count} routes on ${member.url}` });
		const restart = member.restart;
		member.restart = async () => {
			await restart();
			await member.waitRoutes();
		};
		return member;
	});
	await launchOnFreePorts(members, 3 * n, (ports, i) =>
		({ port: ports[3 * i], monitorPort: ports[3 * i + 1], clusterPort: ports[3 * i + 2] }));
	await Promise.all(members.map(member => member.waitRoutes()));
	return {
		name,
		members,
		urls: (first = 0) => members.map((_, k) => members[(first + k) % n].url).join(","),
		waitInterest: (subject, ms = 10000) => Promise.all(members.map(m => waitFor(async () => {
			const [connz, routez] = await Promise.all([m.connz(), m.routez("?subs=1")]);
			return connz.connections.some(c => (c.subscriptions_list_detail || []).some(sub => sub.subject === subject)) ||
				routez.routes.some(r => (r.subscriptions_list || []).includes(subject));
		}, ms, { what: `interest in ${subject} on ${m.url}` }))),
		stop: () => Promise.all(members.map(member => member.stop()))
	};
}

// ---------------------------------------------------------------------------------------------
// redis-server

/**
 * Starts Debian's redis-server on a free loopback port, without persistence. `opts.args`: extra
 * configuration directives as command-line arguments (e.g. ["--requirepass", "pw"], or
 * ["--user", "molnode", "on", ">pw", "-@all", "+subscribe", "+publish", "+ping", "&MOL-steedos.*"]);
 * `opts.password` (requirepass) is also put in `url` (`redis://:pw@...`) and used by `admin`.
 * `opts.tls = { cert, key, ca, authClients }`: TLS only (`port` is the TLS port, the URL rediss://).
 * `stop(signal)`, `restart()` (same port), `pause()` / `resume()` (SIGSTOP / SIGCONT); `admin()` is
 * an ioredis client for PUBSUB CHANNELS, CLIENT LIST, PUBLISH.
 */
async function startRedis(opts = {}) {
	const handle = { kind: "redis", url: null, port: 0, proc: null, logs: [], admins: [] };
	const password = opts.password != null ? String(opts.password) : "";

	function serverArgs(port) {
		const args = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no"];
		if (opts.tls) {
			args.push("--port", "0", "--tls-port", String(port), "--tls-cert-file", opts.tls.cert,
				"--tls-key-file", opts.tls.key, "--tls-ca-cert-file", opts.tls.ca,
				"--tls-auth-clients", opts.tls.authClients || "no");
		} else {
			args.push("--port", String(port));
		}
		if (password) args.push("--requirepass", password);
		return args.concat(opts.args || []);
	}

	async function launch() {
		const proc = track(spawn(REDIS_SERVER, serverArgs(handle.port), { stdio: ["ignore", "pipe", "pipe"] }));
		for (const stream of [proc.stdout, proc.stderr]) {
			stream.setEncoding("utf8");
			stream.on("data", chunk => handle.logs.push(chunk));
		}
		handle.proc = proc;
		let exited = false;
		proc.once("exit", () => (exited = true));
		await waitFor(() => {
			if (exited) {
				throw Object.assign(new Error(`redis-server exited: ${handle.logs.join("").slice(-2000)}`), { exited: true });
			}
			return handle.logs.join("").includes("Ready to accept connections");
		}, 10000, { what: `redis-server on port ${handle.port}` });
	}

	handle.stop = async (signal = "SIGTERM") => {
		const proc = handle.proc;
		if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
		try {
			process.kill(proc.pid, "SIGCONT");
		} catch (_) {
			/* ignore */
		}
		proc.kill(signal);
		try {
			await waitExit(proc, 5000);
		} catch (_) {
			proc.kill("SIGKILL");
			await waitExit(proc, 5000);
		}
	};
	handle.restart = async () => {
		await handle.stop();
		handle.logs.length = 0;
		await launch();
	};
	handle.pause = () => process.kill(handle.proc.pid, "SIGSTOP");
	handle.resume = () => process.kill(handle.proc.pid, "SIGCONT");
	/** An ioredis client as the default user (closed by close()). */
	handle.admin = () => {
		const Redis = require("ioredis");
		const client = new Redis({
			host: "127.0.0.1",
			port: handle.port,
			password: password || undefined,
			tls: opts.tls ? { ca: fs.readFileSync(opts.tls.ca), cert: opts.tls.clientCert && fs.readFileSync(opts.tls.clientCert), key: opts.tls.clientKey && fs.readFileSync(opts.tls.clientKey), servername: "localhost" } : undefined,
			maxRetriesPerRequest: 1,
			retryStrategy: () => null,
			lazyConnect: false
		});
		client.on("error", () => {});
		handle.admins.push(client);
		return client;
	};
	/** PUBSUB CHANNELS <pattern>, sorted. */
	handle.channels = async (pattern = "*") => {
		const c = handle.admin();
		try {
			return (await c.pubsub("CHANNELS", pattern)).sort();
		} finally {
			c.disconnect();
		}
	};
	/** CLIENT LIST as objects ({ id, addr, name, sub, omem, flags, ... }). */
	handle.clientList = async () => {
		const c = handle.admin();
		try {
			const text = await c.client("LIST");
			return text.trim().split("\n").filter(Boolean).map(line =>
				Object.fromEntries(line.trim().split(" ").map(kv => {
					const i = kv.indexOf("=");
					return [kv.slice(0, i), kv.slice(i + 1)];
				})));
		} finally {
			c.disconnect();
		}
	};
	handle.close = async () => {
		for (const c of handle.admins) c.disconnect();
		await handle.stop();
	};

	for (let attempt = 1; ; attempt++) {
		handle.port = await freePort();
		const scheme = opts.tls ? "rediss" : "redis";
		const host = opts.tls ? "localhost" : "127.0.0.1";
		handle.url = `${scheme}://${password ? `:${encodeURIComponent(password)}@` : ""}${host}:${handle.port}`;
		try {
			await launch();
			break;
		} catch (err) {
			if (!err.exited || attempt >= 3) throw err;
			handle.logs.length = 0;
		}
	}
	return handle;
}

/**
 * The bus of this run (see BUS): a startNats or startRedis handle; both have url/stop/restart.
 * `opts` go to startNats or startRedis (e.g. `{ jetstream: true }`, NATS only).
 */
function startBus(opts = {}) {
	return BUS === "redis" ? startRedis(opts) : startNats(opts);
}

// ---------------------------------------------------------------------------------------------
// C++ nodes

/**
 * Spawns a C++ node (`interop-node` fixture or the `steedos-socket` product) with a temporary
 * moleculer.config.json. Environment overrides that the node honours are removed so the file
 * alone decides; `opts.env` adds variables (e.g. SSL_CERT_FILE); `opts.args` more command-line
 * arguments (e.g. ["--log-format", "json"]).
 */
async function startCppNode(opts = {}) {
	const binaryName = opts.binary || "interop-node";
	const binary = path.join(BUILD_DIR, binaryName);
	if (!fs.existsSync(binary)) {
		throw new Error(`C++ binary not found: ${binary} (set STEEDOS_BUILD_DIR)`);
	}
	const nodeID = opts.nodeID || uniqueId("cpp");
	// Port 0: the OS picks a free port, so parallel nodes never clash.
	const gatewayPort = opts.gatewayPort != null ? opts.gatewayPort : 0;
	const config = Object.assign(
		{
			nodeID,
			namespace: opts.namespace || "",
			transporter: opts.transporter || (opts.nats && opts.nats.url),
			serializer: "JSON",
			protocolVersion: opts.protocolVersion || "4",
			heartbeatInterval: opts.heartbeatInterval != null ? opts.heartbeatInterval : 1,
			heartbeatTimeout: opts.heartbeatTimeout != null ? opts.heartbeatTimeout : 3,
			disableBalancer: !!opts.disableBalancer,
			logLevel: opts.logLevel || "debug",
			gateway: { host: "127.0.0.1", port: gatewayPort }
		},
		opts.extra || {}
	);
	if (!config.transporter) throw new Error("startCppNode: nats or transporter is required");
	// The test run's write-thread setting (scripts/test.sh runs the suites with 2, then 1), unless
	// the test sets its own.
	if (process.env.STEEDOS_TEST_IO_THREADS && config.gateway && config.gateway.ioThreads === undefined) {
		config.gateway = Object.assign({}, config.gateway, { ioThreads: Number(process.env.STEEDOS_TEST_IO_THREADS) });
	}

	const dir = makeTempDir("interop-cpp-");
	const configFile = path.join(dir, "moleculer.config.json");
	fs.writeFileSync(configFile, JSON.stringify(config, null, 2));

	const env = Object.assign({}, process.env);
	for (const key of ["TRANSPORTER", "NAMESPACE", "NODEID", "PORT", "LOGLEVEL", "LOGFORMAT", "MOLECULER_CONFIG"]) {
		delete env[key];
	}
	Object.assign(env, opts.env || {});
	const started = Date.now();
	const proc = track(
		spawn(binary, ["--config", configFile, ...(opts.args || [])], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] })
	);
	const logs = [];
	const waiters = new Set();
	function onLine(stream, line) {
		const entry = { t: Date.now() - started, stream, line };
		logs.push(entry);
		if (VERBOSE) process.stderr.write(`[${nodeID} ${stream}] ${line}\n`);
		for (const w of waiters) {
			if (w.regex.test(line)) {
				waiters.delete(w);
				w.resolve(entry);
			}
		}
	}
	for (const [name, stream] of [["stdout", proc.stdout], ["stderr", proc.stderr]]) {
		stream.setEncoding("utf8");
		let buf = "";
		stream.on("data", chunk => {
			buf += chunk;
			let idx;
			while ((idx = buf.indexOf("\n")) >= 0) {
				onLine(name, buf.slice(0, idx));
				buf = buf.slice(idx + 1);
			}
		});
		stream.on("end", () => {
			if (buf) onLine(name, buf);
			buf = "";
		});
	}
	const exited = new Promise(resolve => {
		proc.once("exit", (code, signal) => resolve({ code, signal, ms: Date.now() - started }));
	});

	const node = {
		proc,
		pid: proc.pid,
		nodeID,
		config,
		configFile,
		logs,
		exited,
		running: () => proc.exitCode === null && proc.signalCode === null,
		logText: () => logs.map(l => l.line).join("\n"),
		/** Resolves with the first log line (past or future) matching `regex`. */
		waitForLog(regex, ms = 5000) {
			const hit = logs.find(l => regex.test(l.line));
			if (hit) return Promise.resolve(hit);
			return withTimeout(
				new Promise(resolve => waiters.add({ regex, resolve })),
				ms,
				`log line ${regex} from ${nodeID}`
			);
		},
		/** Sends `signal` and resolves {code, signal, ms} (ms = time from the signal to exit). */
		async stop(signal = "SIGTERM", ms = 5000) {
			if (!node.running()) {
				const r = await exited;
				return Object.assign({}, r, { ms: 0 });
			}
			const t0 = Date.now();
			if (signal !== "SIGKILL") {
				try {
					process.kill(proc.pid, "SIGCONT");
				} catch (_) {
					/* ignore */
				}
			}
			proc.kill(signal);
			try {
				const r = await withTimeout(exited, ms, `exit of ${nodeID}`);
				return { code: r.code, signal: r.signal, ms: Date.now() - t0 };
			} catch (err) {
				proc.kill("SIGKILL");
				await withTimeout(exited, 5000, `exit of ${nodeID} after SIGKILL`);
				throw err;
			}
		}
	};
	return node;
}

// ---------------------------------------------------------------------------------------------
// JS brokers

function moleculerFor(version) {
	if (version === "0.15") return require("moleculer15");
	if (version === "0.14") return require("moleculer");
	throw new Error(`unknown moleculer version ${version}`);
}

// Both moleculer versions polyfill the global Promise once (Promise.prototype.timeout and friends),
// each with its own TimeoutError class that its timeout middleware checks with instanceof. With
// both versions loaded in one test process, the second version would time out calls with a raw
// TimeoutError instead of RequestTimeoutError. So the polyfill is reset whenever the version in
// use changes, which is allowed only when no broker of the other version is alive.
// Promise.TimeoutError (0.14 only) is kept: timers of 0.14 `.timeout()` calls still pending after
// the switch construct it when they fire.
const POLYFILLED_STATICS = ["method", "delay", "mapSeries"];
const POLYFILLED_METHODS = ["delay", "timeout"];
const liveBrokers = new Map(); // broker -> version, from creation until stop() settles
let polyfillOwner = null;

function usePromisePolyfillOf(version) {
	if (polyfillOwner === version) return;
	for (const [b, v] of liveBrokers) {
		if (v !== version) {
			throw new Error(`createBroker(${version}): broker ${b.nodeID} of moleculer ${v} is still alive; ` +
				"stop it first (one moleculer version at a time per process)");
		}
	}
	for (const k of POLYFILLED_STATICS) delete Promise[k];
	for (const k of POLYFILLED_METHODS) delete Promise.prototype[k];
	polyfillOwner = version;
}

/**
 * A ServiceBroker of moleculer 0.14 or 0.15 on the test NATS. `opts` are broker options; `nats`
 * (the startNats handle) or `transporter` is required. Not started.
 */
function createBroker(version, opts = {}) {
	const { ServiceBroker } = moleculerFor(version);
	usePromisePolyfillOf(version);
	const o = Object.assign({}, opts);
	const transporter = o.transporter || (o.nats && o.nats.url);
	delete o.nats;
	if (!transporter) throw new Error("createBroker: nats or transporter is required");
	const broker = new ServiceBroker(
		Object.assign(
			{
				nodeID: uniqueId(`js${version.replace(".", "")}`),
				serializer: "JSON",
				logger: VERBOSE ? { type: "Console", options: { level: "warn" } } : false,
				heartbeatInterval: 1,
				heartbeatTimeout: 3,
				requestTimeout: 0
			},
			o,
			{ transporter }
		)
	);
	if (isRedisTransporter(transporter)) catchRedisPublishRejections(broker);
	liveBrokers.set(broker, version);
	const stop = broker.stop.bind(broker);
	broker.stop = (...args) => stop(...args).finally(() => liveBrokers.delete(broker));
	return broker;
}

/** A broker's `transporter` option names Redis: "Redis", "redis[s]://...", or {type: "Redis", ...}. */
function isRedisTransporter(transporter) {
	if (typeof transporter === "string") return /^(redis|rediss?:.*)$/i.test(transporter);
	return /^redis$/i.test(String(transporter && transporter.type));
}

/**
 * moleculer's Redis transporter (0.14.36 and 0.15) publishes and subscribes without handling the
 * promises, and it opens a new publisher each time its subscriber reconnects without closing the
 * old one. After a Redis restart, a command queued on a client that is then closed rejects
 * "Connection is closed." unhandled (a publish, or the re-subscriptions of a reconnect), and node
 * --test fails the file, often after the broker has stopped. On a Redis Cluster (ioredis
 * Cluster) the same command rejects "None of startup nodes is available." once the test has
 * stopped the members. This handles those two rejections in the test's own JS brokers; every
 * other unhandled rejection still fails the run, and the C++ node is not involved.
 */
function catchRedisPublishRejections(broker) {
	const onlyClosed = err => {
		if (!/Connection is closed|None of startup nodes is available/.test(err && err.message)) throw err;
	};
	broker.transit.tx.send = function send(topic, data) {
		if (!this.clientPub) return this.broker.Promise.reject(new Error("Redis Client is not available"));
		this.clientPub.publish(topic, data).catch(onlyClosed);
		return this.broker.Promise.resolve();
	};
	broker.transit.tx.subscribe = function subscribe(cmd, nodeID) {
		this.clientSub.subscribe(this.getTopicName(cmd, nodeID)).catch(onlyClosed);
		return this.broker.Promise.resolve();
	};
}

/** Stops brokers in parallel, ignoring errors (used in after()). */
async function stopBrokers(...brokers) {
	await Promise.all(
		brokers
			.flat()
			.filter(Boolean)
			.map(b => withTimeout(b.stop(), 5000, `stop ${b.nodeID}`).catch(() => {}))
	);
}

/** Stops C++ nodes that are still running (SIGTERM, then SIGKILL). */
async function stopCppNodes(...nodes) {
	await Promise.all(
		nodes
			.flat()
			.filter(Boolean)
			.map(n => n.stop("SIGTERM", 4000).catch(() => {}))
	);
}

/** The JS registry's view of `nodeID` (getNodeList item with raw services), or undefined. */
function jsNode(broker, nodeID) {
	return broker.registry
		.getNodeList({ onlyAvailable: false, withServices: true })
		.find(n => n.id === nodeID);
}

/** True when `broker` can route `action` to `nodeID` (action registered and available there). */
function jsHasAction(broker, action, nodeID) {
	const item = broker.registry
		.getActionList({ onlyAvailable: true, withEndpoints: true })
		.find(a => a.name === action);
	return !!(
		item &&
		item.endpoints &&
		item.endpoints.some(ep => ep.nodeID === nodeID && ep.available)
	);
}

/** Waits until `broker` sees `nodeID` available with all `actions` routable to it. */
async function waitForRemoteNode(broker, nodeID, actions = [], ms = 8000) {
	await waitFor(
		() => {
			const n = jsNode(broker, nodeID);
			return n && n.available && actions.every(a => jsHasAction(broker, a, nodeID));
		},
		ms,
		{ what: `${broker.nodeID} sees ${nodeID} with ${actions.join(", ")}` }
	);
}

/**
 * Waits until the C++ node `cppID` can call `action` (served by `providerID` when given):
 * polls the C++ node's own $node.actions through the remote call.
 */
async function waitForCppSees(broker, cppID, action, providerID, ms = 8000) {
	await waitFor(
		async () => {
			const list = await broker.call(
				"$node.actions",
				{ onlyAvailable: true, withEndpoints: true },
				{ nodeID: cppID, timeout: 2000 }
			);
			const item = list.find(a => a.name === action);
			if (!item) return false;
			if (!providerID) return true;
			return (item.endpoints || []).some(ep => ep.nodeID === providerID && ep.available !== false);
		},
		ms,
		{ what: `${cppID} sees ${action}${providerID ? ` on ${providerID}` : ""}` }
	);
}

/** Calls an action on the C++ fixture through `cpptest.call` (a call made from C++). */
function cppCall(broker, cppID, params, timeout = 10000) {
	return broker.call("cpptest.call", params, { nodeID: cppID, timeout });
}

// ---------------------------------------------------------------------------------------------
// Raw NATS

/**
 * A raw NATS client subscribed to `<prefix>.>` that records every Moleculer packet:
 * {t, subject, cmd, target, packet}. `publish(subject, obj)` sends raw JSON.
 */
async function startSniffer(natsUrl, namespace = "") {
	if (/^rediss?:/.test(natsUrl)) return startRedisSniffer(natsUrl, namespace);
	const { connect, StringCodec } = require("nats");
	const sc = StringCodec();
	const prefix = namespace ? `MOL-${namespace}` : "MOL";
	const nc = await connect({ servers: natsUrl, name: "interop-sniffer" });
	const packets = [];
	const sub = nc.subscribe(`${prefix}.>`);
	(async () => {
		for await (const m of sub) {
			let packet = null;
			try {
				packet = JSON.parse(sc.decode(m.data));
			} catch (_) {
				packet = { unparsable: sc.decode(m.data) };
			}
			const parts = m.subject.slice(prefix.length + 1).split(".");
			packets.push({
				t: Date.now(),
				subject: m.subject,
				cmd: parts[0],
				target: parts.slice(1).join(".") || null,
				packet
			});
		}
	})().catch(() => {});
	await nc.flush();
	return {
		nc,
		prefix,
		packets,
		publish(subject, obj) {
			nc.publish(subject, sc.encode(typeof obj === "string" ? obj : JSON.stringify(obj)));
		},
		/** Resolves once everything published so far reached the server. */
		flush() {
			return nc.flush();
		},
		/**
		 * Subscribes `subject` now; `.value` resolves with the first parsed message that satisfies
		 * `accept` (default: any), or rejects after `ms`.
		 */
		async first(subject, ms = 2000, accept = () => true) {
			const s = nc.subscribe(subject);
			await nc.flush();
			return {
				value: withTimeout(
					(async () => {
						for await (const m of s) {
							let packet;
							try {
								packet = JSON.parse(sc.decode(m.data));
							} catch (_) {
								continue;
							}
							if (accept(packet)) return packet;
						}
						throw new Error(`subscription ${subject} closed`);
					})(),
					ms,
					`message on ${subject}`
				).finally(() => s.unsubscribe())
			};
		},
		async close() {
			try {
				await nc.drain();
			} catch (_) {
				/* ignore */
			}
		}
	};
}

/**
 * startSniffer on Redis: the same interface over ioredis. PSUBSCRIBE `<prefix>.*` records every
 * packet (a sniffer's pattern subscription is not one of a node's 12 channels, so it changes
 * nothing the node sees); `first(channel)` SUBSCRIBEs that exact channel on its own connection.
 */
async function startRedisSniffer(url, namespace = "") {
	const Redis = require("ioredis");
	const prefix = namespace ? `MOL-${namespace}` : "MOL";
	const open = () => {
		const c = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => null });
		c.on("error", () => {});
		return c;
	};
	const sub = open();
	const pub = open();
	const packets = [];
	sub.on("pmessage", (_pattern, channel, data) => {
		let packet;
		try {
			packet = JSON.parse(data);
		} catch (_) {
			packet = { unparsable: data };
		}
		const parts = channel.slice(prefix.length + 1).split(".");
		packets.push({ t: Date.now(), subject: channel, cmd: parts[0], target: parts.slice(1).join(".") || null, packet });
	});
	await sub.psubscribe(`${prefix}.*`);
	return {
		prefix,
		packets,
		publish(subject, obj) {
			pub.publish(subject, typeof obj === "string" ? obj : JSON.stringify(obj));
		},
		/** Resolves once everything published so far reached the server (replies come in order). */
		async flush() {
			await pub.ping();
		},
		async first(subject, ms = 2000, accept = () => true) {
			const one = open();
			await one.subscribe(subject);
			return {
				value: withTimeout(
					new Promise(resolve => {
						one.on("message", (_channel, data) => {
							let packet;
							try {
								packet = JSON.parse(data);
							} catch (_) {
								return;
							}
							if (accept(packet)) resolve(packet);
						});
					}),
					ms,
					`message on ${subject}`
				).finally(() => one.disconnect())
			};
		},
		async close() {
			sub.disconnect();
			pub.disconnect();
		}
	};
}

// ---------------------------------------------------------------------------------------------
// moleculer-repl command handlers

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;

/**
 * Runs a moleculer-repl command handler (0.7.4 for 0.14, 0.8.0 for 0.15) against `broker` and
 * returns what it printed, without colours.
 */
async function repl(version, broker, command, options = {}, extraArgs = {}) {
	const pkg = version === "0.15" ? "moleculer-repl8" : "moleculer-repl";
	const cmd = require(`${pkg}/src/commands/${command}`);
	const out = [];
	const orig = { log: console.log, info: console.info, warn: console.warn, error: console.error };
	const capture = (...args) => out.push(args.map(a => (typeof a === "string" ? a : require("util").inspect(a))).join(" "));
	console.log = console.info = console.warn = console.error = capture;
	try {
		await cmd.handler(broker, Object.assign({ options }, extraArgs));
	} finally {
		Object.assign(console, orig);
	}
	return out.join("\n").replace(ANSI, "");
}

/** The table row of REPL output that contains `needle`, split into trimmed cells. */
function replRow(output, needle) {
	const line = output.split("\n").find(l => l.includes(needle));
	if (!line) return null;
	return line
		.split(/[│║|]/)
		.map(c => c.trim())
		.filter(c => c.length > 0);
}

/**
 * The result lines a child prints on stdout (bench/load_client.cpp's `RESULT ...`): `next(prefix)`
 * resolves with the first line that starts with `prefix`, printed already or still to come, and
 * rejects once the child has exited without printing it (with the end of its stderr when
 * `stderr` is collected). Lines nobody asked for are kept for a later `next`.
 */
function resultLines(child, { name = "child" } = {}) {
	const lines = [];
	const waiters = [];
	let buf = "";
	let err = "";
	let exited = null;
	child.stdout.setEncoding("utf8");
	child.stdout.on("data", chunk => {
		buf += chunk;
		let i;
		while ((i = buf.indexOf("\n")) >= 0) {
			const line = buf.slice(0, i);
			buf = buf.slice(i + 1);
			const w = waiters.findIndex(x => line.startsWith(x.prefix));
			if (w >= 0) waiters.splice(w, 1)[0].resolve(line);
			else lines.push(line);
		}
	});
	if (child.stderr) child.stderr.on("data", d => (err = (err + d).slice(-2000)));
	const failure = () => new Error(`${name} exited with ${exited}${err ? `: ${err.slice(-500)}` : ""}`);
	child.once("exit", code => {
		exited = code;
		for (const w of waiters.splice(0)) w.reject(failure());
	});
	const next = prefix => {
		const i = lines.findIndex(l => l.startsWith(prefix));
		if (i >= 0) return Promise.resolve(lines.splice(i, 1)[0]);
		if (exited !== null) return Promise.reject(failure());
		return new Promise((resolve, reject) => waiters.push({ prefix, resolve, reject }));
	};
	return { next, lines };
}

/** `RESULT <name> k=v k=v ...` as an object; values that are numbers become numbers. */
function parseResult(line) {
	return Object.fromEntries(line.split(" ").slice(2).map(kv => kv.split("="))
		.map(([k, v]) => [k, v !== "" && !Number.isNaN(Number(v)) ? Number(v) : v]));
}

module.exports = {
	REPO_ROOT,
	resultLines,
	parseResult,
	INTEROP_DIR,
	BUILD_DIR,
	VERSIONS,
	BUS,
	sleep,
	uniqueId,
	waitFor,
	withTimeout,
	scaled,
	rejectionOf,
	freePort,
	startNats,
	startNatsCluster,
	startRedis,
	startBus,
	makeCertificates,
	startCppNode,
	createBroker,
	moleculerFor,
	stopBrokers,
	stopCppNodes,
	jsNode,
	jsHasAction,
	waitForRemoteNode,
	waitForCppSees,
	cppCall,
	startSniffer,
	repl,
	replRow,
	killAllChildren
};

// Process bookkeeping for helpers kept in files of their own (lib/prometheus.js): their children
// and temporary directories are killed and removed with the others.
Object.assign(module.exports, { track, makeTempDir, waitExit });
