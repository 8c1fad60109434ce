#include "services/steedos_action_params.hpp"

#include "protocol/socketio.hpp"
#include "services/steedos_events.hpp"

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
  if (!failure.errors.empty()) return failure;
  result.event = std::move(*event);
  result.data = *data;
  return result;
}

Validated<ClientsParams> validate_clients_params(const Json& input) {
  ValidationFailure failure;
  const Json* params = params_object(input, failure);
  if (params == nullptr) return failure;
  ClientsParams result;
  result.room = check_string(*params, "room", true, failure.errors);
  result.user_id = check_string(*params, "userId", true, failure.errors);
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

}  // namespace steedos::services::rules
