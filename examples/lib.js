"use strict";
// Shared by the examples: module resolution and broker options.
//
// Modules: `require` from examples/node_modules when `npm install` was run here, otherwise from
// tests/interop/node_modules (installed by scripts/setup.sh for the interop tests), so no second
// npm install is needed.
const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const REPO_ROOT = path.resolve(__dirname, "..");
const fallbackRequire = createRequire(path.join(REPO_ROOT, "tests", "interop", "package.json"));

function load(name) {
	try {
		return require(name);
	} catch (err) {
		if (err.code !== "MODULE_NOT_FOUND") throw err;
		try {
			return fallbackRequire(name);
		} catch (err2) {
			if (err2.code !== "MODULE_NOT_FOUND") throw err2;
			throw new Error(`cannot find module "${name}": run "npm install" in examples/ or in tests/interop/`);
		}
	}
}

// The node's configuration file (MOLECULER_CONFIG, as for the node, else the repository's).
function nodeConfig() {
	const file = process.env.MOLECULER_CONFIG || path.join(REPO_ROOT, "moleculer.config.json");
	try {
		return JSON.parse(fs.readFileSync(file, "utf8"));
	} catch (_) {
		return {};
	}
}

/** Broker options that put the example on the same cluster as the node. */
function brokerOptions(nodeID) {
	const cfg = nodeConfig();
	const namespace = process.env.NAMESPACE != null ? process.env.NAMESPACE : cfg.namespace || "";
	const transporter = process.env.TRANSPORTER || cfg.transporter || "nats://127.0.0.1:4222";
	return {
		nodeID: process.env.NODEID || nodeID,
		namespace,
		transporter,
		serializer: "JSON",
		logger: { type: "Console", options: { level: process.env.LOGLEVEL || "info", colors: process.stdout.isTTY } }
	};
}

module.exports = { load, brokerOptions };
