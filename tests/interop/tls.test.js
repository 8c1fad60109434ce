"use strict";
// A tls:// transporter: the C++ node reads and writes NATS over TLS on its own event loop
// (cnats' TLS under the Asio loop), with messages larger than one TLS record, and refuses a
// server it cannot verify with a readable error. Certificates are made here with openssl; the
// C++ node trusts the test CA through OpenSSL's SSL_CERT_FILE.

const { describe, test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("fs");
const h = require("./lib/harness");

describe("tls:// transporter (moleculer 0.14)", () => {
	let certs, nats, cpp, js;

	before(async () => {
		certs = h.makeCertificates();
		nats = await h.startNats({ tls: { cert: certs.cert, key: certs.key } });
		assert.match(nats.url, /^tls:\/\//);
		js = h.createBroker("0.14", {
			transporter: { type: "NATS", options: { url: nats.url, tls: { ca: [fs.readFileSync(certs.ca)] } } }
		});
		js.createService({ name: "jsvc", actions: { size: ctx => ctx.params.blob.length } });
		await js.start();
		cpp = await h.startCppNode({ transporter: nats.url, env: { SSL_CERT_FILE: certs.ca } });
		await h.waitForRemoteNode(js, cpp.nodeID, ["cpptest.echo"]);
	});

	after(async () => {
		await h.stopBrokers(js);
		await h.stopCppNodes(cpp);
		if (nats) await nats.stop();
		if (certs) fs.rmSync(certs.dir, { recursive: true, force: true });
	});

	test("calls both ways, small and larger than a TLS record (16 KiB)", async () => {
		for (const size of [10, 50000, 300000]) {
			const blob = "b".repeat(size);
			const res = await js.call("cpptest.echo", { blob }, { nodeID: cpp.nodeID, timeout: 5000 });
			assert.equal(res.params.blob.length, size);
		}
		await h.waitForCppSees(js, cpp.nodeID, "jsvc.size", js.nodeID);
		const r = await h.cppCall(js, cpp.nodeID, { action: "jsvc.size", params: { blob: "c".repeat(200000) } });
		assert.equal(r.ok, true, JSON.stringify(r));
		assert.equal(r.data, 200000);
	});

	test("a burst of calls over TLS is answered in full", async () => {
		const results = await Promise.all(
			Array.from({ length: 500 }, (_, i) => js.call("cpptest.add", { a: i, b: 1 }, { nodeID: cpp.nodeID }))
		);
		assert.deepEqual(results, Array.from({ length: 500 }, (_, i) => i + 1));
	});

	test("a server whose certificate cannot be verified stops the node with the reason", async () => {
		const untrusting = await h.startCppNode({ transporter: nats.url, env: { SSL_CERT_FILE: "/nonexistent/ca.pem" } });
		const exit = await h.withTimeout(untrusting.exited, 15000, "exit of the node without the CA");
		assert.notEqual(exit.code, 0);
		assert.match(untrusting.logText(), /cannot connect to tls:\/\/127\.0\.0\.1:\d+: .*(SSL|certificate|TLS)/i);
	});

	test("a tls:// URL to a server without TLS stops the node instead of going on in plain text", async () => {
		const plain = await h.startNats();
		try {
			const url = plain.url.replace(/^nats:/, "tls:");
			const node = await h.startCppNode({ transporter: url, env: { SSL_CERT_FILE: certs.ca } });
			const exit = await h.withTimeout(node.exited, 15000, "exit of the node on a plain server");
			assert.notEqual(exit.code, 0);
			assert.match(node.logText(), /cannot connect to tls:\/\/127\.0\.0\.1:\d+: .*secure/i);
		} finally {
			await plain.stop();
		}
	});
});
