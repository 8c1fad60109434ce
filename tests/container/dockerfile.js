"use strict";
// Reads the Dockerfile for scripts/container-steps.sh and prints what the host run needs, with
// the image's paths moved under a staging root, one instruction a line, fields separated by tabs:
//
//   RUN <tab> <stage name> <tab> <command>       every RUN line, in order, continuation lines joined;
//                                                a bind mount's target is replaced by its source
//                                                (repository path), the installed prefix by STAGE/prefix
//   ENV <tab> NAME=VALUE                         the runtime stage's ENV ($PATH: Debian's default)
//   USER <tab> uid:gid
//   EXPOSE <tab> port
//   HEALTHCHECK <tab> arg <tab> arg ...          its exec-form CMD
//   ENTRYPOINT <tab> arg <tab> arg ...
//   PREFIX <tab> /image/path <tab> STAGE/image/path   the COPY --from=build folder (files copied
//                                                     apart must lie inside it)
//
// With --keep-mounts (scripts/container-steps.sh --root: the runtime stage runs in a chroot), a
// RUN line keeps its bind mounts' targets and each mount is printed as
//   MOUNT <tab> source (absolute, in the repository) <tab> target (in the image)
//
// Usage: node tests/container/dockerfile.js [--keep-mounts] DOCKERFILE STAGE REPO_ROOT
// Only the forms the project's Dockerfile uses are understood; anything else (a shell-form
// HEALTHCHECK, a RUN without a project script) is an error, so the host run cannot drift from it.
const fs = require("fs");
const path = require("path");

const args = process.argv.slice(2);
const keepMounts = args[0] === "--keep-mounts";
if (keepMounts) args.shift();
const [file, stage, repo] = args;
if (!file || !stage || !repo) {
	console.error("usage: dockerfile.js [--keep-mounts] DOCKERFILE STAGE REPO_ROOT");
	process.exit(2);
}
// Debian's default PATH in debian:12-slim.
const IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

function fail(message) {
	console.error(`dockerfile: ${message}`);
	process.exit(1);
}

// Instructions with their continuation lines joined; comments and blank lines dropped.
const instructions = [];
let pending = "";
for (const raw of fs.readFileSync(file, "utf8").split("\n")) {
	const line = raw.trimEnd();
	if (!pending && (line.trim() === "" || line.trim().startsWith("#"))) continue;
	if (line.endsWith("\\")) {
		pending += line.slice(0, -1) + " ";
		continue;
	}
	instructions.push((pending + line).replace(/\s+/g, " ").trim());
	pending = "";
}

let stageName = "";
// What the runtime stage copies from the build stage, each to the same path: the installed
// prefix, and files inside it.
const copies = [];
let prefix = "";
const runs = [];
const mountLines = [];
const runtime = { env: [], user: "", expose: [], healthcheck: null, entrypoint: null };

const staged = (text) => (prefix ? text.split(prefix).join(path.join(stage, prefix)) : text);

for (const ins of instructions) {
	const [keyword] = ins.split(" ", 1);
	const rest = ins.slice(keyword.length + 1);
	switch (keyword.toUpperCase()) {
		case "FROM": {
			const as = rest.match(/ AS (\S+)$/i);
			stageName = as ? as[1] : "runtime";
			break;
		}
		case "COPY": {
			const from = rest.match(/^--from=build (\S+) (\S+)$/);
			if (from) {
				if (from[1] !== from[2]) fail(`COPY --from=build to another path: ${rest}`);
				copies.push(from[1]);
			}
			break;
		}
		case "RUN": {
			let command = rest;
			const mounts = [];
			let m;
			while ((m = command.match(/^--mount=(\S+) /))) {
				mounts.push(Object.fromEntries(m[1].split(",").map((kv) => kv.split("="))));
				command = command.slice(m[0].length);
			}
			let onHost = command; // a bind mount's target replaced by its source in the repository
			for (const mount of mounts) {
				if (mount.type !== "bind" || mount.from || !mount.source || !mount.target) {
					fail(`RUN mount not understood (a bind mount of the context only): ${JSON.stringify(mount)}`);
				}
				onHost = onHost.split(mount.target).join(path.join(repo, mount.source));
				if (keepMounts) mountLines.push(["MOUNT", path.join(repo, mount.source), mount.target]);
			}
			if (!/^bash (scripts\/|\S+\/scripts\/)\S+\.sh( |$)/.test(onHost)) {
				fail(`RUN is not one project script: ${rest}`);
			}
			runs.push([stageName, keepMounts ? command : onHost]);
			break;
		}
		case "ENV":
			if (stageName !== "runtime") break;
			for (const m of rest.matchAll(/(\w+)=(\S+)/g)) runtime.env.push([m[1], m[2]]);
			break;
		case "USER":
			runtime.user = rest;
			break;
		case "EXPOSE":
			runtime.expose.push(...rest.split(" "));
			break;
		case "HEALTHCHECK": {
			const cmd = rest.match(/CMD (\[.*\])$/);
			if (!cmd) fail(`HEALTHCHECK without an exec-form CMD: ${rest}`);
			runtime.healthcheck = JSON.parse(cmd[1]);
			break;
		}
		case "ENTRYPOINT":
			if (!rest.startsWith("[")) fail(`ENTRYPOINT not in exec form: ${rest}`);
			runtime.entrypoint = JSON.parse(rest);
			break;
		default:
			break;
	}
}
if (copies.length === 0) fail("no COPY --from=build PREFIX PREFIX");
prefix = copies.reduce((a, b) => (a.length <= b.length ? a : b));
for (const copy of copies) {
	if (copy !== prefix && !copy.startsWith(prefix + "/")) fail(`COPY --from=build ${copy} is outside ${prefix}`);
}
if (!/^\d+:\d+$/.test(runtime.user)) fail(`USER is not numeric uid:gid: "${runtime.user}"`);
if (!runtime.healthcheck || !runtime.entrypoint) fail("no HEALTHCHECK or no ENTRYPOINT");

const out = [];
out.push(["PREFIX", prefix, path.join(stage, prefix)]);
for (const [name, command] of runs) out.push(["RUN", name, staged(command)]);
out.push(...mountLines);
for (const [name, value] of runtime.env) {
	out.push(["ENV", `${name}=${staged(value).replace(/\$PATH|\$\{PATH\}/g, IMAGE_PATH)}`]);
}
out.push(["USER", runtime.user]);
for (const port of runtime.expose) out.push(["EXPOSE", port]);
out.push(["HEALTHCHECK", ...runtime.healthcheck.map(staged)]);
out.push(["ENTRYPOINT", ...runtime.entrypoint.map(staged)]);
for (const fields of out) console.log(fields.join("\t"));
