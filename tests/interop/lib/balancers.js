"use strict";
// nginx and HAProxy (Debian packages) in front of gateway nodes, each run with the configuration
// docs/deploy.md shows (deploy/load-balancer/nginx.conf and haproxy.cfg, read here and changed
// only in the listening port and the node addresses), on a free port, in the foreground.
const fs = require("node:fs");
const net = require("node:net");
const path = require("node:path");
const assert = require("node:assert/strict");
const { spawn } = require("node:child_process");
const h = require("./harness");

const DEPLOY_DIR = path.join(h.REPO_ROOT, "deploy", "load-balancer");

/**
 * Replaces each match of `pattern` in `text` with the next of `replacements`, and fails unless
 * there were exactly as many matches: the deploy file changed shape and the test would no longer
 * run what the documentation shows.
 */
function replaceEach(text, pattern, replacements, what) {
	let i = 0;
	const out = text.replace(pattern, (...m) => replacements[i++](...m));
	assert.equal(i, replacements.length, `${what}: ${i} matches of ${pattern}, expected ${replacements.length}`);
	return out;
}

/**
 * Starts a balancer on a free port: `launch(port)` writes its configuration and resolves
 * runBalancer's handle. Another process may take the port between choosing and binding it (the
 * balancer then exits): up to three ports are tried.
 */
async function onFreePort(launch) {
	for (let attempt = 1; ; attempt++) {
		try {
			return await launch(await h.freePort());
		} catch (err) {
			if (!err.exited || attempt >= 3) throw err;
		}
	}
}

/** A balancer process in the foreground; `stop()` ends it, `logs` keeps what it printed. */
async function runBalancer(name, command, args, port) {
	const proc = h.track(spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] }));
	const logs = [];
	for (const stream of [proc.stdout, proc.stderr]) {
		stream.setEncoding("utf8");
		stream.on("data", chunk => logs.push(chunk));
	}
	let exited = false;
	proc.once("exit", () => (exited = true));
	await h.waitFor(async () => {
		if (exited) throw Object.assign(new Error(`${name} exited: ${logs.join("")}`), { exited: true });
		return accepts(port);
	}, 10000, { what: `${name} listening on ${port}` });
	return {
		name,
		port,
		logs,
		async stop() {
			if (exited) return;
			proc.kill("SIGTERM");
			await h.waitExit(proc, 5000).catch(() => proc.kill("SIGKILL"));
		}
	};
}

/** nginx with deploy/load-balancer/nginx.conf in front of `ports`, on a free port. */
function startNginx(ports) {
	return onFreePort(port => launchNginx(ports, port));
}

async function launchNginx(ports, port) {
	const dir = h.makeTempDir("interop-nginx-");
	let site = fs.readFileSync(path.join(DEPLOY_DIR, "nginx.conf"), "utf8");
	site = replaceEach(site, /^(\s*)listen 80;/m, [(_, indent) => `${indent}listen 127.0.0.1:${port};`], "nginx.conf listen");
	site = replaceEach(site, /^(\s*)server 10\.0\.0\.1\d:3000 /gm,
		ports.map(p => (_, indent) => `${indent}server 127.0.0.1:${p} `), "nginx.conf servers");
	fs.writeFileSync(path.join(dir, "steedos-socket.conf"), site);
	// The main configuration a distribution's nginx.conf would be, kept inside the temp dir. One
	// process, no master: a worker would outlive a master killed with SIGKILL (the harness's
	// clean-up at exit). As root, nginx would serve as nobody, who cannot enter the temp dir.
	fs.writeFileSync(path.join(dir, "nginx.conf"), [
		process.getuid && process.getuid() === 0 ? "user root;" : "",
		"master_process off;",
		"pid nginx.pid;",
		"error_log stderr warn;",
		"events { worker_connections 1024; }",
		"http {",
		"  access_log off;",
		"  client_body_temp_path body;",
		"  proxy_temp_path proxy;",
		"  include steedos-socket.conf;",
		"}",
		""
	].join("\n"));
	return runBalancer("nginx", "nginx", ["-p", dir, "-c", path.join(dir, "nginx.conf"), "-e", "stderr", "-g", "daemon off;"], port);
}

/** HAProxy with deploy/load-balancer/haproxy.cfg in front of `ports`, on a free port. */
function startHaproxy(ports) {
	return onFreePort(port => launchHaproxy(ports, port));
}

async function launchHaproxy(ports, port) {
	const dir = h.makeTempDir("interop-haproxy-");
	let cfg = fs.readFileSync(path.join(DEPLOY_DIR, "haproxy.cfg"), "utf8");
	cfg = replaceEach(cfg, /^(\s*)bind :80$/m, [(_, indent) => `${indent}bind 127.0.0.1:${port}`], "haproxy.cfg bind");
	cfg = replaceEach(cfg, /^(\s*server n\d) 10\.0\.0\.1\d:3000 /gm,
		ports.map(p => (_, head) => `${head} 127.0.0.1:${p} `), "haproxy.cfg servers");
	const file = path.join(dir, "haproxy.cfg");
	fs.writeFileSync(file, cfg);
	return runBalancer("haproxy", "haproxy", ["-f", file, "-db"], port);
}

/** Resolves true once a TCP connection to 127.0.0.1:port is accepted. */
function accepts(port) {
	return new Promise(resolve => {
		const sock = net.connect(port, "127.0.0.1");
		sock.once("connect", () => (sock.destroy(), resolve(true)));
		sock.once("error", () => resolve(false));
	});
}

module.exports = { DEPLOY_DIR, startNginx, startHaproxy };
