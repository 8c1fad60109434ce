"use strict";
// The JS side of bench/moleculer_rpc.js: a moleculer 0.14 node in its own process (as the C++
// node is), serving `jsbench.echo` (the reply shape of the C++ fixture's cpptest.echo),
// `jsbench.count`/`jsbench.reset` and the `bench.tick` event.
// Usage: node bench/js_target_node.js <nats url> <nodeID>; prints "ready", stops on SIGTERM.
const h = require("../tests/interop/lib/harness");

async function main() {
	const [url, nodeID] = process.argv.slice(2);
	const broker = h.createBroker("0.14", { transporter: url, nodeID, heartbeatInterval: 5, heartbeatTimeout: 15 });
	let count = 0;
	broker.createService({
		name: "jsbench",
		actions: {
			echo(ctx) {
				return {
					params: ctx.params,
					meta: ctx.meta,
					nodeID: ctx.nodeID,
					level: ctx.level,
					requestID: ctx.requestID,
					parentID: ctx.parentID || null,
					caller: ctx.caller || null
				};
			},
			count: () => count,
			reset() {
				count = 0;
			}
		},
		events: { "bench.tick": () => void count++ }
	});
	await broker.start();
	process.on("SIGTERM", () => broker.stop().finally(() => process.exit(0)));
	console.log("ready");
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
