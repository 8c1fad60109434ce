"use strict";
// Raw wire helpers for the clean-room protocol suites: HTTP with Node's built-in fetch and a ws
// 8.16 WebSocket whose every incoming frame is queued (spec §3.5: frames coalesced in one TCP read
// must never be lost), popped with next(timeout).

const WebSocket = require("ws");

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

/** A frame as shown in error messages. */
function show(frame) {
	if (Buffer.isBuffer(frame)) return `<binary ${frame.toString("hex")}>`;
	return JSON.stringify(frame);
}

// ---------------------------------------------------------------------------------------------
// HTTP

/**
 * One request; resolves {status, body, headers} or, when the connection failed or was aborted,
 * {status: 0, error}. Never hangs longer than `timeout` ms.
 */
async function request(method, url, body, { timeout = 3000, headers } = {}) {
	try {
		const res = await fetch(url, {
			method,
			body,
			headers,
			signal: AbortSignal.timeout(timeout)
		});
		const text = await res.text();
		return { status: res.status, body: text, headers: res.headers };
	} catch (error) {
		return { status: 0, body: null, error };
	}
}

/**
 * Starts a request on a connection of its own (no pool) and returns at once:
 * `sent` resolves when the whole request has been written to the connected socket (handed to
 * the kernel; on loopback it is then in the server's receive buffer), `answered()` tells whether
 * the response (or an error) has arrived, `response` resolves like request().
 */
function startRequest(method, url, body, { timeout = 3000 } = {}) {
	const u = new URL(url);
	const mod = u.protocol === "https:" ? require("https") : require("http");
	let answered = false;
	let markSent, failSent;
	const sent = new Promise((resolve, reject) => {
		markSent = resolve;
		failSent = reject;
	});
	const response = new Promise(resolve => {
		const done = res => {
			answered = true;
			failSent(new Error(`${method} ${url} answered before it was sent: ${describeResponse(res)}`));
			resolve(res);
		};
		const req = mod.request(u, { method, agent: false, rejectUnauthorized: false }, res => {
			let text = "";
			res.setEncoding("utf8");
			res.on("data", chunk => (text += chunk));
			res.on("end", () => done({ status: res.statusCode, body: text, headers: res.headers }));
			res.on("error", error => done({ status: 0, body: null, error }));
		});
		const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeout} ms`)), timeout);
		req.on("close", () => clearTimeout(timer));
		req.on("error", error => done({ status: 0, body: null, error }));
		req.on("socket", socket => {
			const go = () => req.end(body, () => markSent());
			if (!socket.connecting) go();
			else socket.once(u.protocol === "https:" ? "secureConnect" : "connect", go);
		});
	});
	sent.catch(() => {});
	return { sent, response, answered: () => answered };
}

/**
 * Starts a request that the server must park (a polling GET with nothing to send) and resolves
 * once it is parked as far as the wire can tell: written in full on a connection of its own,
 * then a round trip through the server on a later fresh connection (a GET with an unknown sid,
 * answered 400), and still unanswered. A server handles connections in the order it accepts
 * them, so the later probe being answered means the GET's bytes, already in its receive buffer,
 * were read first. Returns the startRequest() handle.
 */
async function parkRequest(url, { timeout = 3000 } = {}) {
	const parked = startRequest("GET", url, undefined, { timeout });
	await parked.sent; // rejects if answered, failed or timed out first
	const probeUrl = new URL(url);
	probeUrl.searchParams.set("sid", "parked-probe-unknown-sid");
	const probe = startRequest("GET", probeUrl.href, undefined, { timeout });
	await probe.sent;
	const answer = await probe.response;
	if (answer.status !== 400) throw new Error(`probe with an unknown sid: expected HTTP 400, got ${describeResponse(answer)}`);
	if (parked.answered()) throw new Error(`GET ${url} was answered instead of parked: ${describeResponse(await parked.response)}`);
	return parked;
}

function describeResponse(res) {
	if (res.status === 0) return `request failed: ${res.error && (res.error.cause || res.error).message}`;
	return `HTTP ${res.status} ${JSON.stringify(res.body)}`;
}

// ---------------------------------------------------------------------------------------------
// Queued WebSocket

const openSockets = new Set();

class QueuedWebSocket {
	constructor(url) {
		this.url = url;
		this.frames = []; // not yet popped
		this.seen = []; // every frame ever received, for error messages
		this.waiters = [];
		this.closed = false;
		this.closeInfo = null;
		this.error = null;
		this.ws = new WebSocket(url);
		openSockets.add(this);

		this.ws.on("message", (data, isBinary) => {
			const frame = isBinary ? Buffer.from(data) : data.toString("utf8");
			this.seen.push(frame);
			this.frames.push(frame);
			this._wake();
		});
		this.ws.on("error", err => {
			this.error = err;
		});
		this.opened = new Promise((resolve, reject) => {
			this.ws.once("open", resolve);
			this.ws.once("close", () =>
				reject(new Error(`WebSocket ${url} closed before opening${this.error ? `: ${this.error.message}` : ""}`))
			);
		});
		this.opened.catch(() => {});
		this.closedPromise = new Promise(resolve => {
			this.ws.once("close", (code, reason) => {
				this.closed = true;
				this.closeInfo = { code, reason: reason.toString(), at: Date.now() };
				openSockets.delete(this);
				this._wake();
				resolve(this.closeInfo);
			});
		});
	}

	_wake() {
		const waiters = this.waiters;
		this.waiters = [];
		for (const w of waiters) w();
	}

	/** Pops the next frame (string for text, Buffer for binary); rejects on close or timeout. */
	next(timeout = 2000) {
		return new Promise((resolve, reject) => {
			const attempt = () => {
				if (this.frames.length) {
					clearTimeout(timer);
					resolve(this.frames.shift());
					return true;
				}
				if (this.closed) {
					clearTimeout(timer);
					reject(
						new Error(
							`WebSocket closed (code ${this.closeInfo.code}) while a frame was expected; ` +
								`frames seen: ${this.seen.map(show).join(", ") || "none"}`
						)
					);
					return true;
				}
				return false;
			};
			const timer = setTimeout(() => {
				this.waiters = this.waiters.filter(w => w !== waiter);
				reject(
					new Error(
						`no frame within ${timeout} ms; frames seen: ${this.seen.map(show).join(", ") || "none"}`
					)
				);
			}, timeout);
			const waiter = () => {
				if (!attempt()) this.waiters.push(waiter);
			};
			waiter();
		});
	}

	/** Like next() but drops ping frames ("2"). */
	async nextSkippingPings(timeout = 2000) {
		const deadline = Date.now() + timeout;
		for (;;) {
			const frame = await this.next(Math.max(1, deadline - Date.now()));
			if (frame !== "2") return frame;
		}
	}

	send(data) {
		this.ws.send(data);
	}

	/** Resolves {code, reason, at} once closed; rejects after `timeout` ms. */
	waitClose(timeout = 2000) {
		if (this.closed) return Promise.resolve(this.closeInfo);
		let timer;
		return Promise.race([
			this.closedPromise,
			new Promise((_, reject) => {
				timer = setTimeout(
					() =>
						reject(
							new Error(
								`WebSocket not closed within ${timeout} ms; frames seen: ` +
									`${this.seen.map(show).join(", ") || "none"}`
							)
						),
					timeout
				);
			})
		]).finally(() => clearTimeout(timer));
	}

	terminate() {
		try {
			this.ws.terminate();
		} catch (_) {
			/* ignore */
		}
	}
}

/** Terminates every WebSocket still open (afterEach). */
function terminateAll() {
	for (const s of openSockets) s.terminate();
	openSockets.clear();
}

// ---------------------------------------------------------------------------------------------
// Engine.IO session helpers

/** Polling handshake on `path` (e.g. "/engine.io/"); resolves {sid, open, res}. */
async function pollingHandshake(base, path) {
	const res = await request("GET", `${base}${path}?EIO=4&transport=polling`);
	if (res.status !== 200 || !res.body || res.body[0] !== "0") {
		throw new Error(`polling handshake on ${path} failed: ${describeResponse(res)}`);
	}
	const open = JSON.parse(res.body.slice(1));
	return { sid: open.sid, open, res };
}

/** Opens a WebSocket session on `path` (query appended) and waits for the socket to open. */
async function openWebSocket(wsBase, path, query = "EIO=4&transport=websocket", timeout = 3000) {
	const sock = new QueuedWebSocket(`${wsBase}${path}?${query}`);
	let timer;
	try {
		await Promise.race([
			sock.opened,
			new Promise((_, reject) => {
				timer = setTimeout(() => {
					sock.terminate();
					reject(new Error(`WebSocket ${sock.url} not open within ${timeout} ms`));
				}, timeout);
			})
		]);
	} finally {
		clearTimeout(timer);
	}
	return sock;
}

/** Opens a fresh WebSocket session and pops its open packet; resolves {sock, open}. */
async function webSocketSession(wsBase, path) {
	const sock = await openWebSocket(wsBase, path);
	const first = await sock.next();
	if (typeof first !== "string" || first[0] !== "0") {
		throw new Error(`expected the open packet, got ${show(first)}`);
	}
	return { sock, open: JSON.parse(first.slice(1)) };
}

module.exports = {
	sleep,
	show,
	request,
	startRequest,
	parkRequest,
	describeResponse,
	QueuedWebSocket,
	terminateAll,
	pollingHandshake,
	openWebSocket,
	webSocketSession
};
