"use strict";
// socket.io-client helpers shared by the conformance files: clients made for one test and
// closed together, and a bounded wait for one event.
const { io } = require("socket.io-client");

/**
 * A set of clients: `client(url, opts)` makes one (new Manager, no reconnection unless `opts`
 * says so, 5 s connect timeout), `closeClients()` disconnects every one made since.
 */
function clientSet() {
	const clients = new Set();
	return {
		client(url, opts = {}) {
			const socket = io(url, Object.assign({ forceNew: true, reconnection: false, timeout: 5000 }, opts));
			clients.add(socket);
			return socket;
		},
		closeClients() {
			for (const s of clients) s.disconnect();
			clients.clear();
		}
	};
}

/** Resolves the next `event` of `emitter` (its args array); rejects after `ms`. */
function once(emitter, event, ms = 5000, what = event) {
	return new Promise((resolve, reject) => {
		const timer = setTimeout(() => {
			emitter.off(event, handler);
			reject(new Error(`no "${what}" within ${ms} ms`));
		}, ms);
		const handler = (...args) => {
			clearTimeout(timer);
			resolve(args);
		};
		emitter.once(event, handler);
	});
}

module.exports = { clientSet, once };
