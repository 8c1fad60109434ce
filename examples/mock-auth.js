"use strict";
// A mock of the Steedos auth service for the demo: a Moleculer 0.14 node offering
// `@steedos/service-accounts.getUserSession` with a fixed token table.
//
//   node examples/mock-auth.js          (env: TRANSPORTER, NAMESPACE, NODEID, LOGLEVEL)
//
// The node calls it with { authorization: "<spaceId>,<token>" }; known tokens answer a session,
// anything else answers null (the connection is then anonymous).
const { load, brokerOptions } = require("./lib");
const { ServiceBroker } = load("moleculer");

const SESSIONS = {
	S1: {
		"t-alice": { userId: "alice", spaceId: "S1", name: "Alice" },
		"t-bob": { userId: "bob", spaceId: "S1", name: "Bob" }
	}
};

const broker = new ServiceBroker(brokerOptions("mock-auth"));

broker.createService({
	name: "@steedos/service-accounts",
	actions: {
		getUserSession: {
			params: { authorization: { type: "string", optional: true } },
			handler(ctx) {
				const raw = ctx.params.authorization || "";
				const comma = raw.indexOf(",");
				const spaceId = comma >= 0 ? raw.slice(0, comma) : "";
				const token = comma >= 0 ? raw.slice(comma + 1) : raw;
				const session = (SESSIONS[spaceId] && SESSIONS[spaceId][token]) || null;
				// Never log the token itself.
				this.logger.info(`getUserSession space=${spaceId || "-"} -> ${session ? session.userId : "null"}`);
				return session ? Object.assign({}, session) : null;
			}
		}
	}
});

broker.start().then(
	() => broker.logger.info("mock-auth ready: tokens S1/t-alice (alice), S1/t-bob (bob)"),
	err => {
		console.error("mock-auth: cannot start:", err.message);
		process.exit(1);
	}
);
for (const sig of ["SIGINT", "SIGTERM"]) {
	process.once(sig, () => broker.stop().finally(() => process.exit(0)));
}
