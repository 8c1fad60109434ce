#pragma once
// Params validation of the `socket.*` actions (spec: gateway-contract.md §6 and §9). Failures
// come back in the shape a JS Moleculer node answers with fastest-validator: a ValidationError
// (422, "Parameters validation error!") whose data is `[{ type, message, field, actual? }]`, so
// REPL users and JS callers see what they are used to.
#include <optional>
#include <string>
#include <variant>

#include "protocol/json.hpp"
#include "protocol/moleculer_error.hpp"

namespace steedos::services::rules {

/// The ValidationError data items, in schema order.
struct ValidationFailure {
  Json errors = Json::array();

  /// The error to answer. JS adds the caller's node id and the action name to every item;
  /// empty arguments leave those keys out.
  protocol::MoleculerError to_error(const std::string& node_id = "",
                                    const std::string& action = "") const;
};

template <class Params>
using Validated = std::variant<Params, ValidationFailure>;

/// `cluster` and `timeout` of the operator actions that can ask every `socket` node (issue 12):
/// with `cluster: true` the receiving node asks each live node, each with its own `timeout` (ms).
inline constexpr int kClusterTimeoutDefaultMs = 2000;
inline constexpr int kClusterTimeoutMinMs = 1;
inline constexpr int kClusterTimeoutMaxMs = 60000;
struct ClusterScope {
  bool cluster = false;
  int timeout_ms = kClusterTimeoutDefaultMs;
};

/// socket.emit `{ event, data, room?, cluster?, timeout? }`.
struct EmitParams {
  std::string event;
  Json data;                        // never null
  std::optional<std::string> room;  // nullopt: every socket
  ClusterScope scope;
};
/// socket.stats `{ cluster?, timeout? }`.
struct StatsParams {
  ClusterScope scope;
};
/// socket.clients `{ room?, userId?, cluster?, timeout? }` (AND).
struct ClientsParams {
  std::optional<std::string> room;
  std::optional<std::string> user_id;
  ClusterScope scope;
};
/// socket.disconnect `{ userId?, sid?, tenantId?, cluster?, timeout? }` (AND, at least one).
struct DisconnectParams {
  std::optional<std::string> user_id;
  std::optional<std::string> sid;
  std::optional<std::string> tenant_id;
  ClusterScope scope;
};
/// socket.join / socket.leave `{ room, userId?, sid?, inRoom?, tenantId?, cluster?, timeout? }`:
/// the sockets selected by userId, sid or inRoom (the sockets in that room; at least one of the
/// three, AND), narrowed to tenantId when given, join or leave `room`.
struct RoomActionParams {
  std::string room;
  std::optional<std::string> user_id;
  std::optional<std::string> sid;
  std::optional<std::string> in_room;
  std::optional<std::string> tenant_id;
  ClusterScope scope;
};

Validated<EmitParams> validate_emit_params(const Json& params);
Validated<StatsParams> validate_stats_params(const Json& params);
Validated<ClientsParams> validate_clients_params(const Json& params);
Validated<DisconnectParams> validate_disconnect_params(const Json& params);
Validated<RoomActionParams> validate_room_action_params(const Json& params);

}  // namespace steedos::services::rules
