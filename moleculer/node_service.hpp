#pragma once
// The `$node` internal service every Moleculer node offers (spec: moleculer-node.md §6), with
// the action names, param schemas and reply shapes of the JS broker, so `dcall <node> $node.*`
// from the REPL works on this node.
namespace steedos::moleculer {

class Broker;
struct ServiceSchema;

ServiceSchema make_node_service(Broker& broker);

}  // namespace steedos::moleculer
