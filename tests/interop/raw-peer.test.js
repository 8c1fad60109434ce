"use strict";
// Protocol details a real JS broker rarely exercises, driven by a hand-written raw NATS peer:
// DISCOVER -> INFO, PING/PONG, heartbeats from unknown nodes, a peer that stops heartbeating while
// a request to it is pending, recovery of an offline peer, INFO seq/instanceID rules, and garbage.

const crypto = require("crypto");
const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const h = require("./lib/harness");

for (const { version, protocol } of h.VERSIONS) {
	const namespace = protocol === "4" ? "raw" : "";
	describe(`raw NATS peer (moleculer ${version}, protocol ${protocol}, namespace '${namespace}')`, () => {
		let nats, cpp, js, sniffer;
		let fake; // the raw peer

		before(async () => {
			nats = await h.startBus();
			cpp = await h.startCppNode({ nats, protocolVersion: protocol, namespace });
			js = h.createBroker(version, { nats, namespace });
			await js.start();
			await h.waitForRemoteNode(js, cpp.nodeID, ["cpptest.call"]);
			sniffer = await h.startSniffer(nats.url, namespace);
		});

		after(async () => {
			if (fake) fake.stopHeartbeats();
			if (sniffer) await sniffer.close();
			await h.stopBrokers(js);
			await h.stopCppNodes(cpp);
			await nats.stop();
		});

		const P = () => sniffer.prefix;
		const send = (cmd, target, body) =>
			sniffer.publish(`${P()}.${cmd}${target ? `.${target}` : ""}`, Object.assign({}, body, { ver: body.ver || protocol }));

		/** A peer used only as a barrier: one INFO with a unique action, never heartbeats. */
		function makeMarkerPeer() {
			const id = h.uniqueId("marker");
			return {
				id,
				actions: [id.replace(/[^A-Za-z0-9]/g, "")],
				sendInfo() {
					const name = `fakesvc.${this.actions[0]}`;
					sniffer.publish(`${P()}.INFO`, {
						services: [{ name: "fakesvc", fullName: "fakesvc", settings: {}, metadata: {}, actions: { [name]: { name, rawName: this.actions[0] } }, events: {} }],
						ipList: ["127.0.0.1"], hostname: "markerhost", client: { type: "fake", version: "0.0.1", langVersion: "none" },
						config: {}, instanceID: crypto.randomUUID(), metadata: {}, seq: 1, ver: protocol, sender: id
					});
				}
			};
		}

		/** A raw peer: INFO on demand, heartbeats on a timer, REQs recorded (never answered). */
		async function makeFakePeer(id) {
			const { StringCodec } = require("nats");
			const sc = StringCodec();
			const peer = {
				id,
				instanceID: crypto.randomUUID(),
				seq: 1,
				actions: ["hang"],
				requests: [],
				timer: null,
				info() {
					const actions = {};
					for (const a of peer.actions) actions[`fakesvc.${a}`] = { name: `fakesvc.${a}`, rawName: a };
					return {
						services: [{ name: "fakesvc", fullName: "fakesvc", settings: {}, metadata: {}, actions, events: {} }],
						ipList: ["127.0.0.1"],
						hostname: "fakehost",
						client: { type: "fake", version: "0.0.1", langVersion: "none" },
						config: {},
						instanceID: peer.instanceID,
						metadata: {},
						seq: peer.seq,
						ver: protocol,
						sender: id
					};
				},
				sendInfo(target) {
					sniffer.publish(`${P()}.INFO${target ? `.${target}` : ""}`, peer.info());
				},
				heartbeat() {
					sniffer.publish(`${P()}.HEARTBEAT`, { cpu: 5, ver: protocol, sender: id });
				},
				startHeartbeats() {
					peer.stopHeartbeats();
					peer.heartbeat();
					peer.timer = setInterval(peer.heartbeat, 1000);
				},
				stopHeartbeats() {
					if (peer.timer) clearInterval(peer.timer);
					peer.timer = null;
				}
			};
			const subs = [
				sniffer.nc.subscribe(`${P()}.DISCOVER`),
				sniffer.nc.subscribe(`${P()}.DISCOVER.${id}`),
				sniffer.nc.subscribe(`${P()}.REQ.${id}`)
			];
			for (const sub of subs) {
				(async () => {
					for await (const m of sub) {
						const packet = JSON.parse(sc.decode(m.data));
						if (m.subject.includes(".REQ.")) peer.requests.push(packet);
						else if (packet.sender !== id) peer.sendInfo(packet.sender);
					}
				})().catch(() => {});
			}
			await sniffer.nc.flush();
			return peer;
		}

		/** The C++ node's $node.list entry for `id` (asked through the remote $node action). */
		async function cppNodeEntry(id) {
			const list = await js.call("$node.list", {}, { nodeID: cpp.nodeID, timeout: 2000 });
			return list.find(n => n.id === id);
		}

		test("targeted DISCOVER is answered with INFO to the asker", async () => {
			const asker = h.uniqueId("asker");
			const first = await sniffer.first(`${P()}.INFO.${asker}`, 2000);
			send("DISCOVER", cpp.nodeID, { sender: asker });
			const info = await first.value;
			assert.equal(info.sender, cpp.nodeID);
			assert.equal(info.ver, protocol);
			assert.equal(info.client.type, "cpp");
			assert.equal(typeof info.instanceID, "string");
			assert.ok(Number.isInteger(info.seq) && info.seq >= 1);
			assert.deepEqual(info.services.map(s => s.name).sort(), ["$node", "cpptest"]);
			for (const s of info.services) {
				assert.deepEqual(s.settings, {});
				assert.equal(typeof s.actions, "object");
				assert.equal(typeof s.events, "object");
				for (const [key, action] of Object.entries(s.actions)) assert.equal(action.name, key);
			}
		});

		test("PING (targeted and broadcast) gets a PONG echoing id and time", async () => {
			const pinger = h.uniqueId("pinger");
			for (const target of [cpp.nodeID, null]) {
				const id = crypto.randomUUID();
				const time = Date.now();
				// A broadcast PING is answered by the JS broker too.
				const first = await sniffer.first(`${P()}.PONG.${pinger}`, 2000, p => p.sender === cpp.nodeID);
				send("PING", target, { time, id, sender: pinger });
				const pong = await first.value;
				assert.equal(pong.id, id);
				assert.equal(pong.time, time);
				assert.equal(pong.sender, cpp.nodeID);
				assert.equal(typeof pong.arrived, "number");
				assert.ok(Math.abs(pong.arrived - Date.now()) < 5000, `arrived ${pong.arrived}`);
			}
			const res = await js.ping(cpp.nodeID, 2000);
			assert.ok(res, "broker.ping resolved");
			assert.equal(res.nodeID, cpp.nodeID);
			assert.equal(typeof res.elapsedTime, "number");
		});

		test("a HEARTBEAT from an unknown node makes the C++ node DISCOVER it", async () => {
			const ghost = h.uniqueId("ghost");
			const first = await sniffer.first(`${P()}.DISCOVER.${ghost}`, 3000, p => p.sender === cpp.nodeID);
			send("HEARTBEAT", null, { cpu: 1, sender: ghost });
			const discover = await first.value;
			assert.equal(discover.sender, cpp.nodeID);
		});

		test("a peer joins with INFO + HEARTBEAT and its actions become callable from C++", async () => {
			fake = await makeFakePeer(h.uniqueId("fake"));
			fake.sendInfo();
			fake.startHeartbeats();
			await h.waitForCppSees(js, cpp.nodeID, "fakesvc.hang", fake.id);
			const entry = await cppNodeEntry(fake.id);
			assert.equal(entry.available, true);
			assert.equal(entry.local, false);
			assert.equal(entry.hostname, "fakehost");
			assert.equal(entry.instanceID, fake.instanceID);
		});

		test("the peer stops heartbeating: pending request rejected, node unavailable", async () => {
			fake.requests.length = 0;
			const pending = h.cppCall(js, cpp.nodeID, { action: "fakesvc.hang", params: { p: 1 } }, 20000);
			await h.waitFor(() => fake.requests.length === 1, 2000, { what: "REQ at the fake peer" });
			const req = fake.requests[0];
			assert.equal(req.action, "fakesvc.hang");
			assert.deepEqual(req.params, { p: 1 });
			assert.equal(req.sender, cpp.nodeID);
			assert.equal(req.ver, protocol);

			const t0 = Date.now();
			fake.stopHeartbeats();
			const r = await pending;
			const elapsed = Date.now() - t0;
			assert.equal(r.ok, false);
			assert.equal(r.error.name, "RequestRejectedError", JSON.stringify(r.error));
			assert.equal(r.error.retryable, true);
			assert.ok(elapsed <= 9000, `rejected ${elapsed} ms after the last heartbeat`);
			assert.equal((await cppNodeEntry(fake.id)).available, false);
			const again = await h.cppCall(js, cpp.nodeID, { action: "fakesvc.hang", params: {}, timeout: 1000 });
			assert.equal(again.ok, false);
			assert.notEqual(again.error.name, "RequestTimeoutError", "no request is sent to a dead node");
		});

		test("the offline peer heartbeats again: the C++ node re-DISCOVERs it and routes to it", async () => {
			const first = await sniffer.first(`${P()}.DISCOVER.${fake.id}`, 4000, p => p.sender === cpp.nodeID);
			fake.startHeartbeats();
			const discover = await first.value;
			assert.equal(discover.sender, cpp.nodeID);
			await h.waitForCppSees(js, cpp.nodeID, "fakesvc.hang", fake.id);
			assert.equal((await cppNodeEntry(fake.id)).available, true);
		});

		test("INFO rules: same seq ignored, higher seq applied, new instanceID applied", async () => {
			fake.actions = ["hang", "sameSeq"];
			fake.sendInfo();
			// Barrier: a marker peer's INFO on the same subject (P.INFO) is handled after the one
			// under test, so once the C++ node routes the marker's action the same-seq INFO was seen.
			const marker = makeMarkerPeer();
			marker.sendInfo();
			await h.waitForCppSees(js, cpp.nodeID, `fakesvc.${marker.actions[0]}`, marker.id);
			send("DISCONNECT", null, { sender: marker.id });
			let list = await js.call("$node.actions", {}, { nodeID: cpp.nodeID });
			assert.equal(list.some(a => a.name === "fakesvc.sameSeq"), false, "INFO with the same seq must not change routing");

			fake.seq += 1;
			fake.actions = ["hang", "higherSeq"];
			fake.sendInfo();
			await h.waitForCppSees(js, cpp.nodeID, "fakesvc.higherSeq", fake.id);

			fake.instanceID = crypto.randomUUID();
			fake.seq = 1;
			fake.actions = ["restarted"];
			fake.sendInfo();
			await h.waitForCppSees(js, cpp.nodeID, "fakesvc.restarted", fake.id);
			list = await js.call("$node.actions", { onlyAvailable: true }, { nodeID: cpp.nodeID });
			assert.equal(list.some(a => a.name === "fakesvc.higherSeq"), false, "actions gone from the new INFO are withdrawn");
			assert.equal((await cppNodeEntry(fake.id)).instanceID, fake.instanceID);
		});

		test("a DISCONNECT from the peer removes it at once", async () => {
			fake.stopHeartbeats();
			const t0 = Date.now();
			send("DISCONNECT", null, { sender: fake.id });
			await h.waitFor(async () => (await cppNodeEntry(fake.id)).available === false, 2000, { what: "peer offline" });
			assert.ok(Date.now() - t0 < 1500);
			const r = await h.cppCall(js, cpp.nodeID, { action: "fakesvc.restarted", params: {}, timeout: 1000 });
			assert.equal(r.ok, false);
			assert.notEqual(r.error.name, "RequestTimeoutError");
		});

		test("garbage, orphan RES and packets of the wrong shape do not disturb the node", async () => {
			// Targeted subjects reach only the C++ node; broadcast ones get only unparsable bytes so
			// the JS broker on the same bus is not the one being tested.
			const targeted = ["REQ", "RES", "EVENT", "INFO", "DISCOVER", "PING", "PONG"].map(c => `${P()}.${c}.${cpp.nodeID}`);
			for (const subject of targeted) {
				sniffer.publish(subject, "{not json");
				sniffer.publish(subject, "[]");
				sniffer.publish(subject, "null");
				sniffer.publish(subject, JSON.stringify({ ver: protocol }));
				sniffer.publish(subject, JSON.stringify({ ver: protocol, sender: "junk", services: "x", id: 5, action: 7, event: null, params: "p", groups: 3 }));
			}
			for (const cmd of ["INFO", "HEARTBEAT", "DISCONNECT", "DISCOVER"]) sniffer.publish(`${P()}.${cmd}`, "{not json");
			send("RES", cpp.nodeID, { id: "no-such-request", success: true, data: 1, sender: "junk" });
			// Barrier per subject (the node reads its subscriptions in a fixed order of packet types,
			// not in arrival order): a last packet of an unknown protocol version from a sender of
			// its own, which the node logs once as dropped. The broadcast subjects got one
			// unparsable packet each, logged as invalid.
			const tag = h.uniqueId("end");
			for (const subject of targeted) send(subject.split(".").slice(-2)[0], cpp.nodeID, { ver: "999", sender: `${tag}-${subject.split(".").slice(-2)[0]}` });
			for (const subject of targeted) {
				const cmd = subject.split(".").slice(-2)[0];
				await cpp.waitForLog(new RegExp(`dropping packets of node '${tag}-${cmd}'`), 3000);
			}
			for (const cmd of ["INFO", "HEARTBEAT", "DISCONNECT", "DISCOVER"]) {
				await cpp.waitForLog(new RegExp(`invalid packet on ${P()}\\.${cmd} from`), 3000);
			}
			assert.equal(cpp.running(), true);
			assert.equal(await js.call("cpptest.add", { a: 1, b: 2 }, { timeout: 2000 }), 3);
			assert.equal(h.jsNode(js, cpp.nodeID).available, true);
		});
	});
}
