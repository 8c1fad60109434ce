#pragma once
// What travels between the broker facade, transit and handlers: one call or event (Context)
// and the result of an action (Outcome), plus the counters both sides feed. Plain data; kept
// apart from broker.hpp so that transit can carry contexts without knowing the facade.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "protocol/json.hpp"
#include "protocol/moleculer_error.hpp"

namespace steedos::moleculer {

using protocol::MoleculerError;

/// The result of an action: data, or a typed error; plus the callee's final meta.
struct Outcome {
  bool ok = true;
  bool has_data = true;  // false = JS `undefined`: RES carries no `data` key
  Json data;
  MoleculerError error;
  Json meta = Json::object();

  static Outcome success(Json data) {
    Outcome o;
    o.data = std::move(data);
    return o;
  }
  static Outcome nothing() {
    Outcome o;
    o.has_data = false;
    return o;
  }
  static Outcome failure(MoleculerError error) {
    Outcome o;
    o.ok = false;
    o.error = std::move(error);
    o.data = nullptr;
    return o;
  }
};

/// One call or event as seen by a handler (JS `ctx`).
struct Context {
  std::string id;
  std::string request_id;
  std::string parent_id;  // empty = null
  std::string caller;     // calling service fullName; empty = null
  std::string node_id;    // where the call/event came from (own id when local)
  int level = 1;
  Json params;  // action params or event payload
  Json meta = Json::object();
  Json headers = Json::object();
  std::string name;        // action name or concrete event name
  std::string event_type;  // events: "emit", "broadcast" or "broadcastLocal"
  std::vector<std::string> event_groups;
  int timeout_ms = 0;  // 0 = no budget
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  /// When the EVENT packet was read off the bus (Broker::stamp_received_events); the epoch
  /// (default) for local events or when stamping is off. The emit-to-write metric starts here.
  std::chrono::steady_clock::time_point received{};
  std::string service;  // fullName of the service whose handler runs (caller of nested calls)
};
using ContextPtr = std::shared_ptr<Context>;

/// What the node counts (tests, metrics). Transit counts packets; the facade counts calls out
/// and handler failures.
struct BrokerCounters {
  uint64_t requests_in = 0, requests_out = 0, events_in = 0, events_out = 0;
  uint64_t invalid_packets = 0, orphan_responses = 0, version_mismatches = 0;
  /// Local event and action handlers that threw (an event still reached its other handlers; a
  /// call got an internal error).
  uint64_t handler_errors = 0;
  /// REQ packets whose (sender, id) this node had already taken in: dropped, not run twice.
  uint64_t duplicate_requests = 0;
  /// Of the invalid packets, those refused for JSON nested deeper than kMaxPacketJsonDepth.
  uint64_t too_deep_packets = 0;
};

}  // namespace steedos::moleculer
