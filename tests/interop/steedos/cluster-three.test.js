"use strict";
// Issue 12, "Exactly once, measured over three gateway nodes" (gateway-contract.md §5, §6, §7):
// three steedos-socket nodes on one bus, clients of two tenants and anonymous ones spread over
// them. Every §5 event is sent as a balanced `emit` (balanced by the producer, then pinned to each
// node in turn so that every node is once the forwarder), as a `broadcast`, and through the
// `socket.emit` action with `cluster: true` called on each node. Every delivery carries a unique tag; each client
// counts the tags it got and is checked against what its tenant and rooms entitle it to: 0 lost,
// 0 duplicated, nothing it is not entitled to. Also with `disableBalancer: true` (a NATS queue
// group picks the node of a balanced emit), NATS only: on Redis moleculer forces the balancer on.
//
// Last in each mode: the bus packets the forwarding costs, counted with the harness sniffer (the
// EVENT packets a gateway node publishes per balanced emit it forwards): one, on `MOL.EVENT`.
//
// Every wait is a barrier (fixture crossBarrier) or an observable state, never a sleep.
const { describe, it, before, after, afterEach } = require("node:test");
const { h, assert, startCluster, AUTH_ACTION, COOKIES, TRANSPORTS, emitTo, eventsInOf, waitGatewaysKnowEachOther,
	crossBarrier } = require("./fixture");

// Rounds of balanced emits of the whole §5 list per test (the producer's round robin, or the NATS
// queue group, spreads them over the three nodes).
const BALANCED_ROUNDS = 3;

// The clients of a test, by gateway: an anonymous one on each node; tenant S1 (U1 twice with two
// tokens, U4, U6) and tenant S2 (U2, U5, U6 again with the same token). `rooms`: whether it
// subscribes to the rooms the §5 events address; U4 does not (in the tenant, in no room).
// COPIES of each: several sockets of one user on one node must each get an event once.
const COPIES = 3;
const CLIENT_SPECS = [
	{ name: "anon0", gateway: 0 },
	{ name: "u1", gateway: 0, cookie: COOKIES.U1, user: "U1", tenant: "S1", rooms: true },
	{ name: "u2", gateway: 0, cookie: COOKIES.U2, user: "U2", tenant: "S2", rooms: true },
	{ name: "anon1", gateway: 1 },
	{ name: "u1b", gateway: 1, cookie: COOKIES.U1B, user: "U1", tenant: "S1", rooms: true },
	{ name: "u5", gateway: 1, cookie: COOKIES.U5, user: "U5", tenant: "S2", rooms: true },
	{ name: "u4", gateway: 1, cookie: COOKIES.U4, user: "U4", tenant: "S1", rooms: false },
	{ name: "anon2", gateway: 2 },
	{ name: "u6s1", gateway: 2, cookie: COOKIES.U6S1, user: "U6", tenant: "S1", rooms: true },
	{ name: "u6s2", gateway: 2, cookie: COOKIES.U6S2, user: "U6", tenant: "S2", rooms: true }
];
const CLIENTS = CLIENT_SPECS.flatMap(spec => Array.from({ length: COPIES }, (_, k) => Object.assign({}, spec, { name: `${spec.name}#${k}` })));

const ROOM_42 = "record:orders:change-42";
const recordPart = id => `record:orders:change-${id}`;

// Audiences: who is entitled to a delivery, from the client's spec and the rooms it is in.
const everyone = () => true;
const inRoom = (...rooms) => client => rooms.some(room => client.joined.has(room));

/**
 * The §5 events of cluster.test.js `sent`, each with a unique tag (`<label>_<kind>`) in the part
 * of the payload that reaches the client, and who must get it. A record event's tag is its id
 * (the only part of it a client sees), so each send has its own record room.
 */
function fiveEvents(label) {
	const tag = kind => `${label}_${kind}`;
	return [
		{ event: "$metadata.objects", payload: { type: "objects", action: "updated", data: { _id: tag("meta"), name: "orders" } },
			got: ["s:metadata:change", tag("meta")], to: everyone, global: true },
		// S1's U1 and U6 (both their S1 sockets), not U2 (a user of S2 only), not U6's S2 socket.
		{ event: "$broadcast.$notification.users", payload: { data: { tenantId: "S1", users: ["U1", "U6", "U2"], message: tag("notify1") } },
			got: ["s:notification-change", tag("notify1")], to: inRoom("S1-notification-change-U1", "S1-notification-change-U6") },
		{ event: "$broadcast.$notification.users", payload: { data: { tenantId: "S2", users: ["U5"], message: tag("notify2") } },
			got: ["s:notification-change", tag("notify2")], to: inRoom("S2-notification-change-U5") },
		{ event: "$broadcast.socket.emit", payload: { data: { eventName: "nested-all", eventParams: tag("nested-all") } },
			got: ["nested-all", tag("nested-all")], to: everyone, global: true },
		{ event: "$broadcast.socket.emit", payload: { data: { eventName: "nested-room", eventParams: tag("nested-room"), room: `S1-${ROOM_42}` } },
			got: ["nested-room", tag("nested-room")], to: inRoom(`S1-${ROOM_42}`) },
		{ event: "$socket.emit", payload: { eventName: "flat-all", eventParams: tag("flat-all") },
			got: ["flat-all", tag("flat-all")], to: everyone, global: true },
		{ event: "$socket.emit", payload: { eventName: "flat-room", eventParams: tag("flat-room"), room: `S2-${ROOM_42}` },
			got: ["flat-room", tag("flat-room")], to: inRoom(`S2-${ROOM_42}`) },
		// S2 clients are in S2-record:orders:change-<same id>: the tenant keeps them out.
		{ event: "@objectRecordEvent.orders.updated", payload: { objectApiName: "orders", id: tag("rec"), spaceId: "S1" },
			got: [`s:${recordPart(tag("rec"))}`, tag("rec")], to: inRoom(`S1-${recordPart(tag("rec"))}`) }
	];
}

/**
 * The `socket.emit` action's params (§6) with and without room, tagged, and who must get them:
 * with `cluster: true` (issue 12) the node it is called on delivers to its own clients and asks
 * every other node to deliver to theirs, so each entitled client of the cluster gets it once.
 */
function actionEmits(label) {
	const tag = kind => `${label}_${kind}`;
	return [
		{ params: { event: "act-all", data: tag("act-all"), cluster: true }, got: ["act-all", tag("act-all")], to: everyone, global: true },
		{ params: { event: "act-room", data: tag("act-room1"), room: `S1-${ROOM_42}`, cluster: true }, got: ["act-room", tag("act-room1")],
			to: inRoom(`S1-${ROOM_42}`) },
		{ params: { event: "act-room", data: tag("act-room2"), room: "S2-notification-change-U6", cluster: true }, got: ["act-room", tag("act-room2")],
			to: inRoom("S2-notification-change-U6") }
	];
}

/** The tag a received Socket.IO event carries (see fiveEvents), or null for the test's own events. */
function tagOf({ event, args }) {
	if (event === "connection-init" || event === "barrier") return null;
	const [arg] = args;
	if (event === "s:metadata:change" || event.startsWith("s:record:")) return arg && arg._id;
	if (event === "s:notification-change") return arg && arg.message;
	return arg;
}
const key = (event, tag) => `${event} ${tag}`;

/**
 * A client's deliveries against what it is entitled to: `lost` (expected, not received),
 * `duplicated` (received more than once), `foreign` (received, not entitled to).
 */
function account(s, expected) {
	const counts = new Map();
	for (const e of s.events) {
		const tag = tagOf(e);
		if (tag === null) continue;
		const k = key(e.event, typeof tag === "string" ? tag : JSON.stringify(tag));
		counts.set(k, (counts.get(k) || 0) + 1);
	}
	return {
		received: [...counts.values()].reduce((a, b) => a + b, 0),
		lost: [...expected].filter(k => !counts.has(k)),
		duplicated: [...counts].filter(([, n]) => n > 1).map(([k, n]) => `${k} x${n}`),
		foreign: [...counts.keys()].filter(k => !expected.has(k))
	};
}

/**
 * The EVENT packets (any EVENT subject: `<prefix>.EVENT.<node>` targeted, `<prefix>.EVENT`
 * untargeted, `<prefix>.EVENTB.*` balanced) that the gateway nodes `gatewayIDs` published for the
 * event whose payload carries `tag`: what forwarding it cost on the bus. `packets`: a sniffer's.
 */
function forwardingPublishes(packets, gatewayIDs, tag) {
	const mine = packets.filter(p => p.cmd.startsWith("EVENT") && p.packet && gatewayIDs.includes(p.packet.sender) &&
		p.packet.data && p.packet.data.eventParams === tag);
	return { count: mine.length, senders: mine.map(p => p.packet.sender), subjects: mine.map(p => p.subject) };
}

for (const disableBalancer of [false, true]) {
	const skip = disableBalancer && h.BUS === "redis" ? "moleculer forces disableBalancer off on Redis" : false;
	describe(`steedos socket: exactly once over three gateway nodes (disableBalancer: ${disableBalancer})`, { skip }, () => {
		let c;
		let sniffer;
		const totals = { clients: 0, events: 0, deliveries: 0, lost: 0, duplicated: 0, foreign: 0 };
		before(async () => {
			const options = { disableBalancer };
			c = await startCluster({ gateways: 3, logLevel: "info", extra: options, broker: options });
			if (disableBalancer) {
				// moleculer 0.14 with disableBalancer announces its actions up to 1 s before it
				// subscribes their REQB queue groups: an auth call in between is lost (see
				// nats-cluster.test.js). Wait until the server has the auth action's queue.
				const subject = `MOL.REQB.${AUTH_ACTION}`;
				await h.waitFor(async () => (await c.nats.connz()).connections.some(conn =>
					(conn.subscriptions_list_detail || []).some(sub => sub.subject === subject)), 10000, { what: `interest in ${subject}` });
			}
			await waitGatewaysKnowEachOther(c);
			sniffer = await h.startSniffer(c.nats.url);
		});
		afterEach(() => c && c.closeAll());
		after(async () => {
			if (sniffer) await sniffer.close();
			if (c) await c.stop();
		});

		/** Connects CLIENTS on `transports`, subscribes them, returns [{ ...spec, s, joined }]. */
		async function connectAll(transports, recordIds) {
			const clients = await Promise.all(CLIENTS.map(async spec =>
				Object.assign({}, spec, { s: await c.connect({ gateway: spec.gateway, transports, cookie: spec.cookie }), joined: new Set() })));
			for (const client of clients.filter(cl => cl.rooms)) {
				const { s, tenant, user } = client;
				const personal = await s.emitWithAck("subscribe", { roomParts: "notification-change", individual: true });
				const shared = await s.emitWithAck("subscribe", { roomParts: [ROOM_42, ...recordIds.map(recordPart)] });
				const rooms = [...personal.rooms, ...shared.rooms];
				assert.deepEqual(rooms.sort(), [`${tenant}-notification-change-${user}`, `${tenant}-${ROOM_42}`,
					...recordIds.map(id => `${tenant}-${recordPart(id)}`)].sort(), `${client.name} joined its rooms`);
				for (const room of rooms) client.joined.add(room);
			}
			const counts = await Promise.all(c.nodes.map(n => c.producer.call("socket.stats", {}, { nodeID: n.nodeID, timeout: 5000 })));
			assert.deepEqual(counts.map(st => st.connections.total), c.nodes.map((_, i) => CLIENTS.filter(cl => cl.gateway === i).length),
				"clients spread over the three nodes");
			return clients;
		}

		for (const t of TRANSPORTS) {
			it(`every §5 event via emit (balanced and forwarded by each node), broadcast and socket.emit on each node: 0 lost, 0 duplicated, rooms and tenants isolated (${t.name})`, async t2 => {
				// Each send is the whole §5 list, tagged with its label: balanced emits (e<r>), emits
				// pinned to node i (p<i>, node i forwards them), one broadcast (b).
				const sends = [
					...Array.from({ length: BALANCED_ROUNDS }, (_, r) => ({ label: `e${r}`, send: (event, payload) => c.producer.emit(event, payload) })),
					...c.nodes.map((n, i) => ({ label: `p${i}`, send: (event, payload) => emitTo(c.producer, n.nodeID, event, payload) })),
					{ label: "b", send: (event, payload) => c.producer.broadcast(event, payload) }
				].map(x => Object.assign(x, { events: fiveEvents(x.label) }));
				const acts = c.nodes.map((n, i) => ({ node: n, emits: actionEmits(`a${i}`) }));
				const recordIds = sends.map(({ label }) => `${label}_rec`);
				const clients = await connectAll(t.transports, recordIds);
				const sockets = clients.map(cl => cl.s);
				const before = await eventsInOf(c);

				for (const { send, events } of sends) for (const { event, payload } of events) send(event, payload);
				const delivered = await Promise.all(acts.flatMap(({ node, emits }) =>
					emits.map(e => c.producer.call("socket.emit", e.params, { nodeID: node.nodeID, timeout: 5000 }))));
				await crossBarrier(c, sockets);

				// Each node handled each §5 event once (balanced to it, forwarded to it, or broadcast)
				// plus the three markers: a double forward or a lost forward shows here too.
				const fiveCount = sends.length * sends[0].events.length;
				assert.deepEqual((await eventsInOf(c)).map((n, i) => n - before[i]), [fiveCount + 3, fiveCount + 3, fiveCount + 3]);

				// The cluster-wide action counts every node's deliveries: each node's share, the total.
				const planned = [...sends.flatMap(s => s.events), ...acts.flatMap(a => a.emits)];
				acts.forEach(({ emits }, i) => emits.forEach((e, j) => {
					const answer = delivered[i * emits.length + j];
					const what = `socket.emit on node ${i}: ${e.got[1]}`;
					assert.deepEqual(answer.missing, [], what);
					assert.deepEqual(answer.total, { delivered: clients.filter(e.to).length }, what);
					c.nodes.forEach((n, k) => assert.deepEqual(answer.nodes[n.nodeID],
						{ delivered: clients.filter(cl => cl.gateway === k && e.to(cl)).length }, `${what}, node ${k}'s share`));
				}));

				let deliveries = 0;
				for (const client of clients) {
					const expected = new Set(planned.filter(e => e.to(client)).map(e => key(...e.got)));
					const got = account(client.s, expected);
					assert.deepEqual({ lost: got.lost, duplicated: got.duplicated, foreign: got.foreign }, { lost: [], duplicated: [], foreign: [] },
						`${client.name} on node ${client.gateway}`);
					assert.equal(got.received, expected.size);
					deliveries += got.received;
					totals.lost += got.lost.length;
					totals.duplicated += got.duplicated.length;
					totals.foreign += got.foreign.length;
				}
				// The model is not vacuous: anonymous clients get the globals only, U4 the globals
				// only too (no room), every room client more.
				for (const client of clients) {
					const globals = planned.filter(e => e.global && e.to(client)).length;
					const n = account(client.s, new Set()).received;
					if (client.rooms) assert.ok(n > globals, `${client.name}: ${n} > ${globals}`);
					else assert.equal(n, globals, client.name);
				}
				totals.clients += clients.length;
				totals.events += planned.length;
				totals.deliveries += deliveries;
				t2.diagnostic(`${t.name}: ${clients.length} clients on 3 nodes, ${planned.length} events ` +
					`(${sends.length} x ${sends[0].events.length} §5 + ${acts.length} x ${acts[0].emits.length} socket.emit), ` +
					`${deliveries} deliveries counted, lost 0, duplicated 0, foreign 0`);
			});
		}

		it("totals", t2 => {
			t2.diagnostic(`disableBalancer ${disableBalancer}: clients ${totals.clients}, events ${totals.events}, ` +
				`deliveries ${totals.deliveries}, lost ${totals.lost}, duplicated ${totals.duplicated}, foreign ${totals.foreign}`);
			assert.ok(totals.deliveries > 0, "the exactly-once tests ran");
		});

		/**
		 * Balanced `$socket.emit`s, `perNode` pinned to each node in turn and `perNode` balanced by
		 * the producer, each tagged; waits until every client and the sniffer have everything the
		 * gateways published for them. Returns [{ tag, entry (node index or null), ...forwardingPublishes }].
		 */
		async function measureForwarding(perNode = 5) {
			const sockets = await Promise.all(c.nodes.map((_, gateway) => c.connect({ gateway, transports: ["websocket"] })));
			sniffer.packets.length = 0;
			const sent = [];
			c.nodes.forEach((n, i) => {
				for (let k = 0; k < perNode; k++) sent.push({ tag: `fwd-p${i}-${k}`, entry: i });
			});
			for (let k = 0; k < perNode; k++) sent.push({ tag: `fwd-e${k}`, entry: null });
			for (const { tag, entry } of sent) {
				const payload = { eventName: "fwd", eventParams: tag };
				if (entry === null) c.producer.emit("$socket.emit", payload);
				else emitTo(c.producer, c.nodes[entry].nodeID, "$socket.emit", payload);
			}
			const markers = await crossBarrier(c, sockets);
			for (const s of sockets) assert.deepEqual(c.got(s, "fwd").map(a => a[0]).sort(), sent.map(x => x.tag).sort(), "each client got each once");
			// What a node publishes reaches the sniffer in order: once the sniffer has the marker
			// node i forwarded, it has everything node i published before.
			const gatewayIDs = c.nodes.map(n => n.nodeID);
			await Promise.all(markers.map((tag, i) => h.waitFor(() => sniffer.packets.some(p => p.packet && p.packet.sender === gatewayIDs[i] &&
				p.packet.data && p.packet.data.eventParams === tag), 4000, { what: `the sniffer has node ${i}'s marker` })));
			// The producer's balanced emits went the way the mode says: to one node it picked
			// (`EVENT.<node>`), or to the `socket` queue group (`EVENTB.socket.<event>`).
			const balanced = sniffer.packets.filter(p => p.cmd.startsWith("EVENT") && p.packet && p.packet.sender === c.producer.nodeID &&
				p.packet.data && /^fwd-e/.test(p.packet.data.eventParams));
			assert.equal(balanced.length, perNode);
			for (const p of balanced) assert.equal(p.cmd, disableBalancer ? "EVENTB" : "EVENT", p.subject);
			return sent.map(x => Object.assign({ tag: x.tag, entry: x.entry }, forwardingPublishes(sniffer.packets, gatewayIDs, x.tag)));
		}

		it("forwarding a balanced emit: only the node that received it publishes, ONE packet on the shared subject whatever the number of nodes", async t2 => {
			const measured = await measureForwarding();
			const gatewayIDs = c.nodes.map(n => n.nodeID);
			for (const m of measured) {
				assert.equal(m.count, 1, `${m.tag}: ${m.count} publishes (${m.subjects.join(", ")})`);
				assert.deepEqual(m.subjects, ["MOL.EVENT"], `${m.tag}: the shared subject (no namespace here)`);
				assert.equal(new Set(m.senders).size, 1, `${m.tag}: one forwarder, no re-forwarding (${m.senders})`);
				if (m.entry !== null) assert.equal(m.senders[0], gatewayIDs[m.entry], `${m.tag}: forwarded by the node it was pinned to`);
			}
			// Who forwarded the producer's balanced emits: Moleculer's round robin spreads them; a
			// NATS queue group picks at random (all five on one node is possible, not asserted).
			const forwarders = measured.filter(m => m.entry === null).map(m => gatewayIDs.indexOf(m.senders[0]));
			if (!disableBalancer) assert.ok(new Set(forwarders).size > 1, `balanced over the nodes: ${forwarders}`);
			const perEmit = [...new Set(measured.map(m => m.count))].sort();
			const subjects = [...new Set(measured.flatMap(m => m.subjects.map(s => s.replace(/\.EVENT\..*/, ".EVENT.<node>"))))].sort();
			t2.diagnostic(`${h.BUS}: ${measured.length} forwarded emits, EVENT publishes by gateways per emit: ${perEmit.join("/")} ` +
				`(subjects ${subjects.join(", ")}); producer's balanced emits forwarded by nodes ${forwarders.join(",")}`);
		});
	});
}
