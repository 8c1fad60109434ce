"use strict";
// Sends each Steedos event the `socket` service handles, so the demo page shows them.
//
//   node examples/producer.js          one event per second, round after round (Ctrl-C stops)
//   node examples/producer.js --once   all four events once, then exits
//
// Env: TRANSPORTER, NAMESPACE, NODEID, LOGLEVEL (as the node).
const { load, brokerOptions } = require("./lib");
const { ServiceBroker } = load("moleculer");

const once = process.argv.includes("--once");
const broker = new ServiceBroker(brokerOptions(`demo-producer-${process.pid}`));

// [how, event, payload, what the page should show]
const EVENTS = [
	["emit", "$metadata.objects",
		{ type: "objects", action: "updated", data: { _id: "o1", name: "orders" } },
		"s:metadata:change to every socket"],
	["emit", "$broadcast.$notification.users",
		{ data: { tenantId: "S1", users: ["alice"], message: "Hello Alice" } },
		"s:notification-change to room S1-notification-change-alice"],
	["emit", "$broadcast.socket.emit",
		{ data: { eventName: "demo:hello", eventParams: { text: "hi all" } } },
		"demo:hello to every socket"],
	["broadcast", "@objectRecordEvent.orders.updated",
		{ objectApiName: "orders", id: "42", spaceId: "S1" },
		"s:record:orders:change-42 to room S1-record:orders:change-42"]
];

async function send([how, event, payload, note]) {
	await broker[how](event, payload);
	broker.logger.info(`${how} ${event} -> ${note}`);
}

async function main() {
	await broker.start();
	broker.logger.info("waiting for the socket service...");
	await broker.waitForServices("socket", 30000);
	if (once) {
		for (const e of EVENTS) await send(e);
		// Let the transporter flush before leaving.
		await new Promise(resolve => setTimeout(resolve, 300));
		await broker.stop();
		return;
	}
	let i = 0;
	const timer = setInterval(() => {
		send(EVENTS[i++ % EVENTS.length]).catch(err => broker.logger.error(err.message));
	}, 1000);
	for (const sig of ["SIGINT", "SIGTERM"]) {
		process.once(sig, () => {
			clearInterval(timer);
			broker.stop().finally(() => process.exit(0));
		});
	}
}

main().catch(err => {
	console.error("producer:", err.message);
	broker.stop().finally(() => process.exit(1));
});
