"use strict";
// The Node.js baseline of the issue-11 benchmark: the Steedos `socket` contract
// (/work/shared/spec/gateway-contract.md, as builder6/server app.gateway.ts builds it) written
// idiomatically on socket.io 4.8 + moleculer 0.14. One moleculer broker, one `socket` service that
// owns a socket.io Server: auth in `io.use`, `socket.join`, `io.to(room).emit`. It is the yardstick
// for the C++ node, so it carries no handicap: no logging on the hot path, one encode per emit
// (socket.io's broadcast does that), cached auth as in the node (auth.cacheTtl, default 60 s).
//
//   node server.js [--config FILE] [--transporter URL] [--nodeID ID] [--namespace NS] [--port P]
//
// The config file has the shape of the repository's moleculer.config.json (only the keys below are
// read); the environment (TRANSPORTER, NODEID, NAMESPACE, PORT, LOGLEVEL) overrides the file and
// the command line overrides both. Prints `gateway listening on <host>:<port>` once serving.
const fs = require("fs");
const http = require("http");
const os = require("os");
const cookie = require("cookie");
const { ServiceBroker, Errors } = require("moleculer");
const { Server } = require("socket.io");

const DEFAULTS = {
	namespace: "",
	nodeID: null,
	transporter: null,
	serializer: "JSON",
	heartbeatInterval: 10,
	heartbeatTimeout: 30,
	logLevel: "info",
	serviceName: "socket",
	gateway: {
		host: "0.0.0.0",
		port: 5100,
		path: "/socket.io/",
		pingInterval: 25000,
		pingTimeout: 20000,
		connectTimeout: 45000,
		maxHttpBufferSize: 1000000,
		corsOrigins: null,
		maxRoomsPerSocket: 1000,
		anonymousRooms: false,
		individualRoomParts: ["me", "notification-change"],
		metadataTypes: ["apps", "objects", "object_listviews", "object_actions", "object_fields"]
	},
	auth: { action: "@steedos/service-accounts.getUserSession", timeout: 5000, cacheTtl: 60 }
};

function loadConfig(argv, env) {
	const args = {};
	for (let i = 0; i < argv.length; i++) {
		const m = /^--([A-Za-z-]+)(?:=(.*))?$/.exec(argv[i]);
		if (!m) throw new Error(`unknown argument ${argv[i]}`);
		args[m[1]] = m[2] !== undefined ? m[2] : argv[++i];
	}
	const file = args.config || env.MOLECULER_CONFIG;
	const fromFile = file ? JSON.parse(fs.readFileSync(file, "utf8")) : {};
	const config = Object.assign({}, DEFAULTS, fromFile, {
		gateway: Object.assign({}, DEFAULTS.gateway, fromFile.gateway),
		auth: Object.assign({}, DEFAULTS.auth, fromFile.auth)
	});
	const pick = (...values) => values.find(v => v !== undefined && v !== null && v !== "");
	config.transporter = pick(args.transporter, env.TRANSPORTER, config.transporter);
	config.nodeID = pick(args.nodeID, args["node-id"], env.NODEID, config.nodeID) || `${os.hostname()}-${process.pid}`;
	config.namespace = pick(args.namespace, env.NAMESPACE, config.namespace) || "";
	config.logLevel = pick(env.LOGLEVEL, config.logLevel);
	config.gateway.port = Number(pick(args.port, env.PORT, config.gateway.port));
	if (!config.transporter) throw new Error("transporter: required (--transporter, TRANSPORTER or the config file)");
	return config;
}

const RESERVED_EVENTS = new Set(["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"]);
const NOT_AUTHENTICATED_TYPES = new Set(["NOT_AUTHENTICATED", "UNAUTHORIZED", "INVALID_TOKEN"]);
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;
const MAX_PART_BYTES = 256;
const MAX_PARTS = 64;
// BENCH_EMIT_TIMING=1 (bench/compare.js, "one event to N clients" only): each `$socket.emit` that
// reached a socket prints `bench emit_to_write_ms=<ms> recipients=<n>`, the time from the handler's
// start (the event decoded by Moleculer) until socket.io's broadcast returned, i.e. every socket's
// write was issued (engine.io and ws write synchronously while the socket buffer takes it); the
// product's steedos_socket_emit_to_write_seconds measures the same span. Off: one boolean test.
const EMIT_TIMING = process.env.BENCH_EMIT_TIMING === "1";

/** The credentials of a handshake, in the contract's order (§2.2, §9): cookies, CONNECT auth, Bearer. */
function credentialsOf(handshake) {
	const cookies = handshake.headers.cookie ? cookie.parse(handshake.headers.cookie) : {};
	const cookieSpace = cookies["X-Space-Id"];
	if (cookieSpace && cookies["X-Auth-Token"]) return { spaceId: cookieSpace, token: cookies["X-Auth-Token"] };
	const auth = handshake.auth || {};
	if (typeof auth.spaceId === "string" && auth.spaceId && typeof auth.token === "string" && auth.token) {
		return { spaceId: auth.spaceId, token: auth.token };
	}
	const bearer = /^Bearer\s+([^,]+),(.+)$/.exec(handshake.headers.authorization || "");
	if (bearer) return { spaceId: bearer[1], token: bearer[2] };
	return { spaceId: cookieSpace || null, token: null };
}

/** The rooms `args` names for `session` (§3), or { error }. */
function roomsFor(session, args, settings) {
	if (!args || typeof args !== "object") return { error: "invalid arguments: an object { roomParts, individual } is required" };
	const { roomParts } = args;
	const individual = args.individual === undefined ? false : args.individual;
	if (typeof individual !== "boolean") return { error: "invalid individual: a boolean is required" };
	let parts;
	if (typeof roomParts === "string") parts = [roomParts];
	else if (Array.isArray(roomParts)) parts = roomParts;
	else return { error: "invalid roomParts: a string or an array of strings is required" };
	if (parts.length === 0) return { error: "invalid roomParts: empty array" };
	if (parts.length > MAX_PARTS) return { error: `invalid roomParts: more than ${MAX_PARTS} parts` };
	for (const p of parts) {
		if (typeof p !== "string" || p === "") return { error: "invalid roomParts: every part must be a non-empty string" };
		if (Buffer.byteLength(p) > MAX_PART_BYTES) return { error: `invalid roomParts: a part is longer than ${MAX_PART_BYTES} bytes` };
		if (CONTROL_CHARS.test(p)) return { error: "invalid roomParts: control characters" };
	}
	if (session.anonymous && individual) return { error: "not authenticated: individual rooms need a user" };
	if (session.anonymous && !settings.anonymousRooms) return { error: "not authenticated: anonymous sockets may not join tenant rooms" };
	const tenant = session.portal.tenantId;
	if (!tenant) return { error: "no tenant" };
	const unique = list => [...new Set(list)]; // ["space", "space"] joins (and answers) one room
	if (individual) return { rooms: unique(parts.map(p => `${tenant}-${p}-${session.user.id}`)), individual };
	for (const p of parts) {
		if (settings.individualRoomParts.some(q => p === q || p.startsWith(`${q}-`))) {
			return { error: `forbidden: ${p} is a personal room` };
		}
	}
	return { rooms: unique(parts.map(p => `${tenant}-${p}`)), individual };
}

function createSocketService(config) {
	const settings = config.gateway;
	const authSettings = config.auth;
	return {
		name: config.serviceName || "socket",

		created() {
			this.counters = { eventsIn: 0, eventsOut: 0, rejected: 0, refused: 0, authCalls: 0, authFailures: 0 };
			this.authCache = new Map(); // "<space>,<token>" -> { session reply, expires }
			this.authPending = new Map(); // "<space>,<token>" -> in-flight lookup, shared
			this.startedAt = Date.now();
			this.peers = []; // other nodes of this service, for received()
		},

		async started() {
			// Anything that is not Socket.IO gets a 404, as from the Express app Nest puts under it.
			this.server = http.createServer((req, res) => res.writeHead(404).end());
			const cors = settings.corsOrigins === "*" ? { origin: "*" } : { origin: settings.corsOrigins || true, credentials: true };
			this.io = new Server(this.server, {
				path: settings.path,
				pingInterval: settings.pingInterval,
				pingTimeout: settings.pingTimeout,
				connectTimeout: settings.connectTimeout,
				maxHttpBufferSize: settings.maxHttpBufferSize,
				cors
			});
			this.onServicesChanged = () => this.updatePeers();
			this.broker.localBus.on("$services.changed", this.onServicesChanged);
			this.broker.localBus.on("$node.disconnected", this.onServicesChanged);
			this.updatePeers();
			this.io.use((socket, next) => this.authenticate(socket, next));
			this.io.on("connection", socket => this.onConnection(socket));
			await new Promise((resolve, reject) => {
				this.server.once("error", reject);
				this.server.listen(settings.port, settings.host, resolve);
			});
			const { port } = this.server.address();
			// The harness and bench scripts read the port from this line.
			console.log(`gateway listening on ${settings.host}:${port}`);
		},

		async stopped() {
			this.broker.localBus.off("$services.changed", this.onServicesChanged);
			this.broker.localBus.off("$node.disconnected", this.onServicesChanged);
			if (!this.io) return;
			await new Promise(resolve => this.io.close(() => resolve()));
		},

		events: {
			"$metadata.*"(ctx) {
				this.received(ctx);
				const p = ctx.params;
				if (!p || typeof p !== "object" || (p.data != null && typeof p.data !== "object")) return this.reject(ctx, "payload or data is not an object");
				if (!settings.metadataTypes.includes(p.type)) return;
				const data = p.data || {};
				this.emitTo(undefined, "s:metadata:change", {
					type: p.type,
					action: p.action,
					_id: data._id || data.id,
					name: p.type === "apps" ? data.code : data.name,
					objectName: data.object || data.object_name
				});
			},
			"$broadcast.$notification.users"(ctx) {
				this.received(ctx);
				const data = ctx.params && ctx.params.data;
				if (!data || !data.tenantId || !Array.isArray(data.users) || !data.users.every(u => typeof u === "string")) {
					return this.reject(ctx, "data.tenantId and data.users (array of strings) are required");
				}
				const rooms = data.users.map(u => `${data.tenantId}-notification-change-${u}`);
				this.emitTo(rooms, "s:notification-change", { message: data.message });
			},
			"$broadcast.socket.emit"(ctx) {
				this.received(ctx);
				this.genericEmit(ctx, ctx.params && ctx.params.data);
			},
			"$socket.emit"(ctx) {
				const start = EMIT_TIMING ? process.hrtime.bigint() : 0n;
				this.received(ctx);
				const recipients = this.genericEmit(ctx, ctx.params);
				if (EMIT_TIMING && recipients > 0) {
					const ms = Number(process.hrtime.bigint() - start) / 1e6;
					console.log(`bench emit_to_write_ms=${ms.toFixed(3)} recipients=${recipients}`);
				}
			},
			"@objectRecordEvent.*.*"(ctx) {
				this.received(ctx);
				const p = ctx.params;
				if (!p || typeof p !== "object") return this.reject(ctx, "payload is not an object");
				const objectApiName = p.objectApiName || p.objectName || ctx.eventName.split(".")[1];
				const id = p.id != null ? p.id : p.doc && p.doc._id;
				if (!p.spaceId || id == null || id === "" || !objectApiName) return this.reject(ctx, "spaceId, id and objectApiName are required");
				this.emitTo(`${p.spaceId}-record:${objectApiName}:change-${id}`, `s:record:${objectApiName}:change-${id}`, { _id: id });
			},
			"$user.logout"(ctx) {
				this.received(ctx);
				this.logout(ctx);
			},
			"$broadcast.$user.logout"(ctx) {
				this.received(ctx);
				this.logout(ctx);
			}
		},

		actions: {
			emit: {
				params: { event: { type: "string", empty: false }, data: { type: "any" }, room: { type: "string", empty: false, optional: true } },
				handler(ctx) {
					const { event, data, room } = ctx.params;
					if (RESERVED_EVENTS.has(event)) throw new Errors.ValidationError(`event ${event} is reserved by Socket.IO`, "VALIDATION_ERROR", { event });
					return { delivered: this.emitTo(room, event, data) };
				}
			},
			stats() {
				const sockets = this.io.of("/").sockets;
				const byTransport = { polling: 0, websocket: 0 };
				let anonymous = 0;
				for (const socket of sockets.values()) {
					if (socket.data.session.anonymous) anonymous++;
					byTransport[socket.conn.transport.name === "websocket" ? "websocket" : "polling"]++;
				}
				const { rooms, sids } = this.io.of("/").adapter;
				let named = 0;
				for (const room of rooms.keys()) if (!sids.has(room)) named++;
				const c = this.counters;
				return {
					nodeID: this.broker.nodeID,
					connections: { total: sockets.size, anonymous, authenticated: sockets.size - anonymous, byTransport },
					rooms: named,
					events: { in: c.eventsIn, out: c.eventsOut },
					rejected: c.rejected,
					refused: c.refused,
					auth: { calls: c.authCalls, failures: c.authFailures },
					uptime: Math.round((Date.now() - this.startedAt) / 1000)
				};
			},
			clients: {
				params: { room: { type: "string", optional: true }, userId: { type: "string", optional: true } },
				handler(ctx) {
					const { room, userId } = ctx.params;
					const list = [];
					for (const socket of this.io.of("/").sockets.values()) {
						const s = socket.data.session;
						const id = s.anonymous ? null : s.user.id;
						if (room !== undefined && !socket.rooms.has(room)) continue;
						if (userId !== undefined && id !== userId) continue;
						list.push({
							id: socket.id,
							userId: id,
							tenantId: s.portal.tenantId,
							anonymous: s.anonymous,
							transport: socket.conn.transport.name === "websocket" ? "websocket" : "polling",
							rooms: [...socket.rooms].filter(r => r !== socket.id)
						});
					}
					return list;
				}
			},
			disconnect: {
				params: { userId: { type: "string", optional: true }, sid: { type: "string", optional: true }, tenantId: { type: "string", optional: true } },
				handler(ctx) {
					const { userId, sid, tenantId } = ctx.params;
					if (userId === undefined && sid === undefined && tenantId === undefined) {
						throw new Errors.ValidationError("at least one of userId, sid, tenantId is required", "VALIDATION_ERROR", {});
					}
					let disconnected = 0;
					for (const socket of [...this.io.of("/").sockets.values()]) {
						const s = socket.data.session;
						if (userId !== undefined && (s.anonymous || s.user.id !== userId)) continue;
						if (sid !== undefined && socket.id !== sid) continue;
						if (tenantId !== undefined && s.portal.tenantId !== tenantId) continue;
						socket.disconnect(true);
						disconnected++;
					}
					return { disconnected };
				}
			}
		},

		methods: {
			/**
			 * Counts an incoming event and, when it came as a balanced emit (Moleculer gave it to
			 * this node only), hands it on to the other `socket` nodes as a broadcast, so every
			 * client gets it exactly once whichever node holds it (§7; the job Steedos gives its
			 * socket.io adapter). A broadcast is not handed on again. Free on a single node.
			 */
			received(ctx) {
				this.counters.eventsIn++;
				if (ctx.eventType !== "emit" || this.peers.length === 0) return;
				const groups = [this.name];
				const forward = this.broker.ContextFactory.create(this.broker, null, ctx.params, { groups });
				forward.eventName = ctx.eventName;
				forward.eventType = "broadcast";
				forward.eventGroups = groups;
				for (const nodeID of this.peers) {
					const copy = forward.copy({ id: nodeID, local: false });
					copy.eventGroups = groups;
					this.broker.transit.sendEvent(copy);
				}
			},

			/** The other available nodes that run this service (recomputed when the registry changes). */
			updatePeers() {
				const self = this.broker.nodeID;
				this.peers = this.broker.registry
					.getServiceList({ onlyAvailable: true, skipInternal: true })
					.filter(svc => svc.name === this.name && svc.nodeID !== self)
					.map(svc => svc.nodeID);
			},

			/** Emits to a room, a list of rooms, or every socket (room undefined); returns the recipients. */
			emitTo(room, event, payload) {
				const nsp = this.io.of("/");
				let recipients;
				if (room === undefined) {
					recipients = nsp.sockets.size;
					nsp.emit(event, payload);
				} else {
					const rooms = nsp.adapter.rooms;
					recipients = 0;
					for (const r of Array.isArray(room) ? room : [room]) {
						const members = rooms.get(r);
						if (members) recipients += members.size;
					}
					if (recipients) nsp.to(room).emit(event, payload);
				}
				this.counters.eventsOut += recipients;
				return recipients;
			},

			genericEmit(ctx, data) {
				if (!data || typeof data !== "object") return this.reject(ctx, "data is not an object");
				const { eventName, eventParams, room } = data;
				if (typeof eventName !== "string" || eventName === "") return this.reject(ctx, "eventName is required");
				if (RESERVED_EVENTS.has(eventName)) return this.reject(ctx, `eventName ${eventName} is reserved`);
				if (eventParams == null) return this.reject(ctx, "eventParams is required");
				if (room !== undefined && room !== null && (typeof room !== "string" || room === "")) return this.reject(ctx, "room must be a non-empty string");
				return this.emitTo(room == null ? undefined : room, eventName, eventParams);
			},

			reject(ctx, reason) {
				this.counters.rejected++;
				this.logger.warn(`rejected ${ctx.eventName}: ${reason}`);
			},

			logout(ctx) {
				const p = ctx.params || {};
				const token = p.authToken || (p.data && p.data.authToken);
				if (typeof token !== "string" || !token) return this.reject(ctx, "authToken is required");
				for (const key of this.authCache.keys()) {
					if (key.slice(key.indexOf(",") + 1) === token) this.authCache.delete(key);
				}
				for (const socket of [...this.io.of("/").sockets.values()]) {
					if (socket.data.token === token) socket.disconnect(true);
				}
			},

			/** The auth reply for (space, token), through the cache; concurrent lookups share one call. */
			lookup(spaceId, token) {
				const key = `${spaceId},${token}`;
				const hit = this.authCache.get(key);
				if (hit && hit.expires > Date.now()) return Promise.resolve(hit.reply);
				let pending = this.authPending.get(key);
				if (pending) return pending;
				this.counters.authCalls++;
				pending = this.broker
					.call(authSettings.action, { authorization: key }, { timeout: authSettings.timeout })
					.then(
						reply => reply,
						err => {
							if (err && (err.code === 401 || NOT_AUTHENTICATED_TYPES.has(err.type))) return null;
							throw err;
						}
					)
					.then(reply => {
						// Neither a session nor "no session": the service is broken (fail closed, §2.5).
						if (reply != null && typeof reply !== "object") throw new Errors.MoleculerError("auth reply is not an object", 500, "BAD_AUTH_REPLY");
						const authenticated = reply && typeof reply === "object" && reply.spaceId === spaceId && reply.userId;
						if (authenticated && authSettings.cacheTtl > 0) {
							this.authCache.set(key, { reply, expires: Date.now() + authSettings.cacheTtl * 1000 });
						}
						return reply;
					})
					.finally(() => this.authPending.delete(key));
				this.authPending.set(key, pending);
				return pending;
			},

			/** io.use middleware: builds socket.data.session (§2.7), or closes the transport when auth fails (§2.5). */
			async authenticate(socket, next) {
				const { spaceId, token } = credentialsOf(socket.handshake);
				let reply = null;
				if (token) {
					try {
						reply = await this.lookup(spaceId, token);
					} catch (err) {
						this.counters.authFailures++;
						this.logger.warn(`authentication failed: auth service ${(err && err.name) || "error"}; connection closed`);
						socket.conn.close();
						return;
					}
				}
				const authenticated = !!(reply && typeof reply === "object" && reply.spaceId === spaceId && reply.userId);
				socket.data.session = {
					user: authenticated ? Object.assign({ id: reply.userId }, reply) : null,
					anonymous: !authenticated,
					system: false,
					portal: { tenantId: spaceId }
				};
				if (token) socket.data.token = token; // $user.logout closes every socket opened with it (§9)
				next();
			},

			onConnection(socket) {
				// The ack is the last argument: `emit("subscribe", ack)` sends no arguments at all.
				const withAck = handler => (...args) => {
					const ack = typeof args[args.length - 1] === "function" ? args.pop() : undefined;
					handler.call(this, socket, args[0], ack);
				};
				socket.on("subscribe", withAck(this.subscribe));
				socket.on("unsubscribe", withAck(this.unsubscribe));
				socket.on("ping", () => socket.emit("pong", new Date().toISOString()));
				socket.emit("connection-init");
			},

			subscribe(socket, args, ack) {
				const session = socket.data.session;
				const r = roomsFor(session, args, settings);
				if (!r.error) {
					let after = socket.rooms.size - 1; // without the own-id room
					for (const room of r.rooms) if (!socket.rooms.has(room)) after++;
					if (after > settings.maxRoomsPerSocket) r.error = `too many rooms: at most ${settings.maxRoomsPerSocket} per socket`;
				}
				if (r.error) return this.refuse(r.error, ack);
				socket.join(r.rooms);
				if (typeof args.roomParts === "string") {
					const payload = { roomParts: args.roomParts, individual: r.individual, space: session.portal.tenantId };
					if (r.individual) payload.userId = session.user.id;
					this.broker.emit(`$socket.subscribe.${args.roomParts}`, payload);
				}
				if (typeof ack === "function") ack({ rooms: r.rooms });
			},

			unsubscribe(socket, args, ack) {
				const r = roomsFor(socket.data.session, args, settings);
				if (r.error) return this.refuse(r.error, ack);
				for (const room of r.rooms) socket.leave(room);
				if (typeof ack === "function") ack({ rooms: r.rooms });
			},

			refuse(reason, ack) {
				this.counters.refused++;
				this.logger.debug(`subscription refused: ${reason}`);
				if (typeof ack === "function") ack({ error: reason });
			}
		}
	};
}

async function main() {
	const config = loadConfig(process.argv.slice(2), process.env);
	const broker = new ServiceBroker({
		nodeID: config.nodeID,
		namespace: config.namespace,
		transporter: config.transporter,
		serializer: config.serializer || "JSON",
		heartbeatInterval: config.heartbeatInterval,
		heartbeatTimeout: config.heartbeatTimeout,
		requestTimeout: config.requestTimeout || 0,
		logger: { type: "Console", options: { level: config.logLevel === "debug" || config.logLevel === "trace" ? "info" : config.logLevel } }
	});
	broker.createService(createSocketService(config));
	await broker.start();
	// Measurement hook only (bench/baseline/idle_rss.js): with node --expose-gc, SIGUSR2 runs a full
	// collection, so idle RSS can be read without garbage left from the connect burst, and prints
	// where the memory is (V8 heap vs the rest).
	if (typeof global.gc === "function") {
		process.on("SIGUSR2", () => {
			global.gc();
			const m = process.memoryUsage();
			console.log(`memory rss=${m.rss} heapTotal=${m.heapTotal} heapUsed=${m.heapUsed} external=${m.external} arrayBuffers=${m.arrayBuffers}`);
		});
	}
	for (const sig of ["SIGTERM", "SIGINT"]) {
		process.once(sig, () => broker.stop().then(() => process.exit(0), () => process.exit(1)));
	}
}

if (require.main === module) {
	main().catch(err => {
		console.error(`baseline: ${err.message}`);
		process.exit(1);
	});
}

module.exports = { loadConfig, createSocketService, credentialsOf, roomsFor };
