"use strict";
// The live heap of a heaptrack file, by allocation site and by kind, per client (bench/memprofile.sh).
//
//   node bench/heaptrack_live.js FILE.zst --clients N [--top 40] [--min-per-client 4]
//
// FILE is heaptrack_interpret's output (heaptrack 1.4, format 3): `s` strings, `i` instruction
// pointers (module, then function/file/line of the frame and of each frame inlined into it), `t`
// traces (ip, parent), `a` allocation infos (size, trace), `+`/`-` an allocation/free of an
// allocation info. An allocation info still allocated at the end of the file is live: memprofile.js
// kills the node with SIGKILL at idle, so that is the idle live set.
//
// Bytes are counted twice: as requested, and as glibc chunks (request + 8, rounded up to 16, at
// least 32), which is what the heap holds (malloc header and rounding included).
// A site is the innermost frame in the project's sources (gateway/, services/, moleculer/, ...,
// the function name shortened) and the first frame of the allocation (the type or library call
// that allocated, e.g. `std::make_shared`, `nlohmann::basic_json`, `asio::detail::...`). Sites
// with fewer than --min-per-client bytes per client (startup state, caches) are summed as "not per
// client". Each site also gets a kind (KINDS below, matched on the whole backtrace).
const { spawn } = require("child_process");
const readline = require("readline");

const args = process.argv.slice(2);
const file = args[0];
const opt = (name, fallback) => {
	const i = args.indexOf(`--${name}`);
	return i > 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const CLIENTS = Number(opt("clients", 0));
const TOP = Number(opt("top", 40));
const MIN_PER_CLIENT = Number(opt("min-per-client", 4));
// heaptrack's time (ms since the node started) when the clients began to connect: allocations
// live at that moment are the node's own and are subtracted (memprofile.js prints it).
const T0_MS = Number(opt("t0-ms", 0));
if (!file || !CLIENTS) {
	console.error("usage: node bench/heaptrack_live.js FILE.zst --clients N [--top 40]");
	process.exit(2);
}

/** glibc malloc's chunk for a request of `size` bytes (64-bit: 8-byte header, 16-byte alignment). */
const chunk = size => Math.max(32, (size + 8 + 15) & ~15);

const PROJECT = /(^|\/)(gateway|services|moleculer|transport|protocol|app|common)\/[^/]+\.(cpp|hpp|h)$/;

// Kinds, first match wins, tested against "<innermost project frame>  <- <allocating frame>".
const KINDS = [
	["session JSON (the auth reply, copied per socket)", /build_session/],
	["auth cache (per token, not per socket)", /AuthCache|Authenticated/],
	["session struct (ClientSession, std::any holder)", /SocketService::authenticate|set_session|ClientSession|socket_service\.cpp:\d+ operator/],
	["token index (sockets_by_token_)", /SocketService::on_connected/],
	["room index", /rooms\.cpp|RoomIndex/],
	["handshake copy (headers, query, url)", /compact_string_map|CompactStringMap|parse_request_head|http_request\.cpp/],
	["ids (Engine.IO sid, Socket.IO id)", /random_id|random_base64url_id/],
	["Asio reactor state and pending read", /wait_readable|epoll_reactor|descriptor_state|asio::|node_runner/],
	["buffers", /buffer|streambuf|send_|write_|read_/i],
	["per connection (Engine.IO, Socket.IO, WebSocket objects, namespace maps)", /gateway\//]
];

const shortFunction = name => {
	if (!name) return "?";
	const inplace = /_Sp_counted_ptr_inplace<([\w:]+)/.exec(name);
	if (inplace) return `make_shared<${inplace[1].replace(/steedos::/g, "")}>`;
	let s = name.replace(/\(.*$/s, ""); // arguments
	// Template arguments: drop the innermost <...> repeatedly.
	for (let i = 0; i < 10 && /<[^<>]*>/.test(s); i++) s = s.replace(/<[^<>]*>/g, "");
	return s.replace(/std::__cxx11::/g, "std::").replace(/steedos::/g, "").replace(/\s+/g, " ");
};

async function main() {
	const strings = [""]; // 1-based
	const ips = [null]; // 1-based: { frames: [{ fn, file, line }] } innermost first
	const traces = [null]; // 1-based: { ip, parent }
	const infos = []; // 0-based: { size, trace, live }
	const zstd = spawn("zstd", ["-dc", file], { stdio: ["ignore", "pipe", "inherit"] });
	const rl = readline.createInterface({ input: zstd.stdout, crlfDelay: Infinity });
	let baseTaken = !T0_MS;
	for await (const line of rl) {
		const tag = line[0];
		if (tag === "c" && !baseTaken && parseInt(line.slice(2), 16) >= T0_MS) {
			for (const info of infos) info.base = info.live;
			baseTaken = true;
		}
		if (tag === "+") infos[parseInt(line.slice(2), 16)].live++;
		else if (tag === "-") infos[parseInt(line.slice(2), 16)].live--;
		else if (tag === "a") {
			const [, size, trace] = line.split(" ");
			infos.push({ size: parseInt(size, 16), trace: parseInt(trace, 16), live: 0, base: 0 });
		} else if (tag === "t") {
			const [, ip, parent] = line.split(" ");
			traces.push({ ip: parseInt(ip, 16), parent: parseInt(parent, 16) });
		} else if (tag === "i") {
			const f = line.split(" ").slice(3).map(x => parseInt(x, 16));
			const frames = [];
			// Innermost first: the inlined frames, then the function they are inlined into.
			for (let k = 0; k + 2 < f.length; k += 3) frames.push({ fn: f[k], file: f[k + 1], line: f[k + 2] });
			ips.push({ frames });
		} else if (tag === "s") {
			const sp = line.indexOf(" ", 2);
			strings.push(line.slice(sp + 1));
		}
	}
	const backtrace = traceIndex => {
		const frames = [];
		for (let t = traceIndex; t > 0 && frames.length < 64; t = traces[t].parent) {
			for (const fr of ips[traces[t].ip].frames) frames.push({ fn: strings[fr.fn] || "", file: strings[fr.file] || "", line: fr.line });
		}
		return frames;
	};
	const sites = new Map();
	const total = { live: 0, bytes: 0, chunks: 0 };
	const before = { live: 0, chunks: 0 };
	for (const info of infos) {
		before.live += info.base;
		before.chunks += info.base * chunk(info.size);
		const live = info.live - info.base; // since the clients came (negative: freed since)
		if (live === 0) continue;
		const frames = backtrace(info.trace);
		// Skip the allocator itself (operator new, malloc and heaptrack's hooks).
		const first = frames.find(f => f.fn && !/^(operator new|malloc|calloc|realloc|__gnu_cxx::new_allocator|std::allocator|std::__new_allocator|heaptrack|__libc_)/.test(f.fn)) || frames[0] || { fn: "?" };
		const own = frames.find(f => PROJECT.test(f.file));
		const where = own ? `${own.file.replace(/^(\.\.\/)+/, "")}:${own.line} ${shortFunction(own.fn)}` : "(no project frame)";
		const what = shortFunction(first.fn);
		const kind = (KINDS.find(([, re]) => re.test(`${where}  <- ${what}`)) || ["other"])[0];
		const key = `${where}\t${what}`;
		let s = sites.get(key);
		if (!s) sites.set(key, (s = { where, what, kind, live: 0, bytes: 0, chunks: 0, sizes: new Map() }));
		s.live += live;
		s.bytes += live * info.size;
		s.chunks += live * chunk(info.size);
		s.sizes.set(info.size, (s.sizes.get(info.size) || 0) + live);
		total.live += live;
		total.bytes += live * info.size;
		total.chunks += live * chunk(info.size);
	}
	const perClient = x => x / CLIENTS;
	const rows = [...sites.values()].sort((a, b) => b.chunks - a.chunks);
	const perClientRows = rows.filter(s => Math.abs(perClient(s.chunks)) >= MIN_PER_CLIENT);
	const rest = rows.filter(s => Math.abs(perClient(s.chunks)) < MIN_PER_CLIENT);
	const sum = (list, k) => list.reduce((a, s) => a + s[k], 0);
	const fmt = x => x.toFixed(1);
	if (!baseTaken) throw new Error(`no heaptrack timestamp after --t0-ms ${T0_MS}`);
	console.log(`live heap before the clients (t0 ${T0_MS} ms): ${before.live} allocations, ${before.chunks} B in glibc chunks`);
	console.log(`live heap added by ${CLIENTS} idle clients: ${total.live} allocations, ${total.bytes} B requested, ${total.chunks} B in glibc chunks ` +
		`= ${(total.chunks / CLIENTS).toFixed(1)} B per client`);
	console.log(`per client (sites of >= ${MIN_PER_CLIENT} B/client): ${fmt(perClient(sum(perClientRows, "live")))} allocations, ` +
		`${fmt(perClient(sum(perClientRows, "bytes")))} B requested, ${fmt(perClient(sum(perClientRows, "chunks")))} B in chunks; ` +
		`the other sites: ${sum(rest, "chunks")} B in chunks in all (${rest.length} sites)`);
	console.log("\nby kind (chunk bytes per client):");
	const kinds = new Map();
	for (const s of perClientRows) {
		const k = kinds.get(s.kind) || { chunks: 0, bytes: 0, live: 0 };
		k.chunks += s.chunks;
		k.bytes += s.bytes;
		k.live += s.live;
		kinds.set(s.kind, k);
	}
	for (const [kind, k] of [...kinds].sort((a, b) => b[1].chunks - a[1].chunks)) {
		console.log(`  ${fmt(perClient(k.chunks)).padStart(7)} B  ${fmt(perClient(k.live)).padStart(5)} allocs  ${kind}`);
	}
	console.log(`\ntop ${TOP} sites by live chunk bytes per client (allocs/client, sizes: count):`);
	for (const s of perClientRows.slice(0, TOP)) {
		const sizes = [...s.sizes].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([sz, n]) => `${sz}B×${(n / CLIENTS).toFixed(2)}`).join(" ");
		console.log(`  ${fmt(perClient(s.chunks)).padStart(7)} B ${fmt(perClient(s.live)).padStart(5)}  ${s.where}  <- ${s.what}  (${sizes})  {${s.kind.replace(/ \(.*/, "")}}`);
	}
}

main().catch(err => {
	console.error(err);
	process.exit(2);
});
