#include "services/steedos_action_params.hpp"

#include "protocol/socketio.hpp"
#include "services/steedos_events.hpp"
#include "services/steedos_rooms.hpp"

namespace steedos::services::rules {

namespace {

// One fastest-validator error item. `actual` nullptr: the value was undefined, and JSON leaves
// the key out as JS does.
void add_error(Json& errors, const char* type, const std::string& message, const std::string& field,
               const Json* actual) {
  Json item = Json::object();
  item["type"] = type;
  item["message"] = message;
  item["field"] = field;
  if (actual != nullptr) item["actual"] = *actual;
  errors.push_back(std::move(item));
}

const Json* member(const Json& params, const char* key) {
  auto it = params.find(key);
  return it == params.end() ? nullptr : &*it;
}

// fastest-validator `{ type: "string", empty: false }` with its message texts. Absent or null
// passes as "not given" when optional, and is the "required" error otherwise.
std::optional<std::string> check_string(const Json& params, const char* key, bool optional,
                                        Json& errors) {
  const Json* value = member(params, key);
  const std::string field = key;
  if (value == nullptr || value->is_null()) {
    if (!optional)
      add_error(errors, "required", "The '" + field + "' field is required.", field, value);
    return std::nullopt;
  }
  if (!value->is_string()) {
    add_error(errors, "string", "The '" + field + "' field must be a string.", field, value);
    return std::nullopt;
  }
  if (value->get_ref<const std::string&>().empty()) {
    add_error(errors, "stringEmpty", "The '" + field + "' field must not be empty.", field, value);
    return std::nullopt;
  }
  return value->get<std::string>();
}

// fastest-validator `{ type: "boolean", optional: true }`: absent or null is false.
bool check_boolean(const Json& params, const char* key, Json& errors) {
  const Json* value = member(params, key);
  if (value == nullptr || value->is_null()) return false;
  if (value->is_boolean()) return value->get<bool>();
  const std::string field = key;
  add_error(errors, "boolean", "The '" + field + "' field must be a boolean.", field, value);
  return false;
}

// fastest-validator `{ type: "number", integer: true, min, max, optional: true }` with its
// message texts; absent or null is `fallback`.
int check_integer(const Json& params, const char* key, int min, int max, int fallback,
                  Json& errors) {
  const Json* value = member(params, key);
  if (value == nullptr || value->is_null()) return fallback;
  const std::string field = key;
  if (!value->is_number()) {
    add_error(errors, "number", "The '" + field + "' field must be a number.", field, value);
    return fallback;
  }
  const double number = value->get<double>();
  if (number != static_cast<double>(static_cast<long long>(number))) {
    add_error(errors, "numberInteger", "The '" + field + "' field must be an integer.", field,
              value);
    return fallback;
  }
  if (number < min) {
    add_error(
        errors, "numberMin",
        "The '" + field + "' field must be greater than or equal to " + std::to_string(min) + ".",
        field, value);
    return fallback;
  }
  if (number > max) {
    add_error(
        errors, "numberMax",
        "The '" + field + "' field must be less than or equal to " + std::to_string(max) + ".",
        field, value);
    return fallback;
  }
  return static_cast<int>(number);
}

// `cluster` and `timeout` (issue 12). A timeout without `cluster` is accepted and unused: the
// node answers at once.
ClusterScope check_cluster_scope(const Json& params, Json& errors) {
  ClusterScope scope;
  scope.cluster = check_boolean(params, "cluster", errors);
  scope.timeout_ms = check_integer(params, "timeout", kClusterTimeoutMinMs, kClusterTimeoutMaxMs,
                                   kClusterTimeoutDefaultMs, errors);
  return scope;
}

// Moleculer hands `{}` to an action called without params; anything but an object (or null) has
// no fields to check. The shared result is an empty object or nullptr (a ValidationFailure
// already filled in).
const Json* params_object(const Json& params, ValidationFailure& failure) {
  static const Json kEmpty = Json::object();
  if (params.is_null()) return &kEmpty;
  if (params.is_object()) return &params;
  add_error(failure.errors, "object", "The parameters must be an Object.", "", &params);
  return nullptr;
}

}  // namespace

protocol::MoleculerError ValidationFailure::to_error(const std::string& node_id,
                                                     const std::string& action) const {
  Json data = errors;
  for (auto& item : data) {
    if (!node_id.empty()) item["nodeID"] = node_id;
    if (!action.empty()) item["action"] = action;
  }
  return protocol::errors::validation("Parameters validation error!", std::move(data));
}

Validated<EmitParams> validate_emit_params(const Json& input) {
  ValidationFailure failure;
  const Json* params = params_object(input, failure);
  if (params == nullptr) return failure;
  EmitParams result;
  auto event = check_string(*params, "event", false, failure.errors);
  if (event && protocol::sio::is_reserved_event(*event)) {
    // No fastest-validator rule says "any string but these"; the type names what was broken.
    add_error(failure.errors, "reservedEventName",
              "The 'event' field must not be a reserved Socket.IO event name.", "event",
              member(*params, "event"));
  }
  // `data: "any"`, required: null counts as missing (§9), as fastest-validator's `any` does.
  const Json* data = member(*params, "data");
  if (data == nullptr || data->is_null()) {
    add_error(failure.errors, "required", "The 'data' field is required.", "data", data);
  }
  result.room = check_string(*params, "room", true, failure.errors);
  result.scope = check_cluster_scope(*params, failure.errors);
  if (!failure.errors.empty()) return failure;
  result.event = std::move(*event);
  result.data = *data;
  return result;
}

Validated<StatsParams> validate_stats_params(const Json& input) {
  ValidationFailure failure;
  const Json* params = params_object(input, failure);
  if (params == nullptr) return failure;
  StatsParams result;
  result.scope = check_cluster_scope(*params, failure.errors);
  if (!failure.errors.empty()) return failure;
  return result;
}

Validated<ClientsParams> validate_clients_params(const Json& input) {
  ValidationFailure failure;
  const Json* params = params_object(input, failure);
  if (params == nullptr) return failure;
  ClientsParams result;
  result.room = check_string(*params, "room", true, failure.errors);
  result.user_id = check_string(*params, "userId", true, failure.errors);
  result.scope = check_cluster_scope(*params, failure.errors);
  if (!failure.errors.empty()) return failure;
  return result;
}

Validated<DisconnectParams> validate_disconnect_params(const Json& input) {
  ValidationFailure failure;
  const Json* params = params_object(input, failure);
  if (params == nullptr) return failure;
  DisconnectParams result;
  result.user_id = check_string(*params, "userId", true, failure.errors);
  result.sid = check_string(*params, "sid", true, failure.errors);
  result.tenant_id = check_string(*params, "tenantId", true, failure.errors);
  result.scope = check_cluster_scope(*params, failure.errors);
  if (!failure.errors.empty()) return failure;
  // Without a filter the action would close every socket of the node: an operator must say so
  // explicitly with a filter. fastest-validator has no "one of" rule; this item names all three.
  if (!result.user_id && !result.sid && !result.tenant_id) {
    add_error(failure.errors, "required",
              "At least one of the 'userId', 'sid' or 'tenantId' fields is required.",
              "userId|sid|tenantId", nullptr);
    return failure;
  }
  return result;
}

Validated<RoomActionParams> validate_room_action_params(const Json& input) {
  ValidationFailure failure;
  const Json* params = params_object(input, failure);
  if (params == nullptr) return failure;
  RoomActionParams result;
  auto room = check_string(*params, "room", false, failure.errors);
  if (room) {
    // The room names the service itself makes and delivers to (§3, §9): no control
    // characters, bounded. No fastest-validator rule says this; the type names what was broken.
    std::string reason = check_room_name(*room);
    if (!reason.empty()) {
      add_error(failure.errors, "roomName",
                "The 'room' field is not a valid room name: " + reason + ".", "room",
                member(*params, "room"));
    }
  }
  result.user_id = check_string(*params, "userId", true, failure.errors);
  result.sid = check_string(*params, "sid", true, failure.errors);
  result.in_room = check_string(*params, "inRoom", true, failure.errors);
  result.tenant_id = check_string(*params, "tenantId", true, failure.errors);
  result.scope = check_cluster_scope(*params, failure.errors);
  if (!failure.errors.empty()) return failure;
  // tenantId only narrows: "every socket of a tenant" is a selection an operator makes with
  // inRoom or userId, so a mistyped call cannot sweep a whole tenant (or node) into a room.
  if (!result.user_id && !result.sid && !result.in_room) {
    add_error(failure.errors, "required",
              "At least one of the 'userId', 'sid' or 'inRoom' fields is required.",
              "userId|sid|inRoom", nullptr);
    return failure;
  }
  result.room = std::move(*room);
  return result;
}

}  // namespace steedos::services::rules
