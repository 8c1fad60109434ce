#pragma once
// The Moleculer packet bodies this node sends, each built in exactly one place, and the
// contexts and outcomes read out of the REQ, EVENT and RES packets it receives
// (spec: moleculer-node.md §2). Pure functions, no I/O.
//
// `ver` and `sender` are not set here: protocol::encode_packet appends them last, as JS does.
// Key order is part of the wire contract (some peers compare serialized forms), so every
// builder writes its keys in moleculer's order; protocol 5 adds `headers` after `meta`.
#include <string>
#include <vector>

#include "moleculer/context.hpp"
#include "moleculer/registry.hpp"
#include "protocol/json.hpp"

namespace steedos::moleculer::packets {

/// Protocol 5 (moleculer 0.15) carries `headers` in REQ, RES and EVENT; protocol 4 does not.
bool carries_headers(const std::string& protocol_version);

/// EVENT for `ctx` (its name, params, meta, headers and lineage). `groups`: nullptr = no
/// `groups` key (every group of the receiver).
Json event_packet(const Context& ctx, const std::string& id, const std::vector<std::string>* groups,
                  bool broadcast, const std::string& protocol_version);
/// REQ for the action `ctx.name`.
Json request_packet(const Context& ctx, const std::string& protocol_version);
/// RES to `ctx`: its meta merged with the callee's, then data or the error (whose nodeID
/// defaults to `node_id`, the node that answers).
Json response_packet(const Context& ctx, Outcome outcome, const std::string& protocol_version,
                     const std::string& node_id);
/// INFO describing `self`, announcing `services` (empty while leaving).
Json info_packet(const NodeInfo& self, Json services);
Json discover_packet();
Json heartbeat_packet(int cpu);
Json ping_packet(long long time_ms, const std::string& id);
/// PONG answering `ping` (its time and id echoed).
Json pong_packet(const Json& ping, long long arrived_ms);
Json disconnect_packet();

/// The string under `key`, or "" when absent or not a string.
std::string string_field(const Json& object, const char* key);
/// The strings of the array under `key` (other items skipped).
std::vector<std::string> string_list(const Json& object, const char* key);

// Readers of incoming packets. They move params, data and meta out of `packet`, which is
// parsed for one handler and not needed afterwards.

/// The context of a REQ; `node_id` is the sender, `name` the action.
ContextPtr request_context(Json& packet);
/// The context of an EVENT; `event_type` is "broadcast" or "emit" after its `broadcast` flag.
ContextPtr event_context(Json& packet);
/// The outcome carried by a RES (an error's nodeID defaults to the RES sender).
Outcome response_outcome(Json& packet);

}  // namespace steedos::moleculer::packets
