#include "services/steedos_events.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unordered_set>

#include "protocol/socketio.hpp"

namespace steedos::services::rules {

namespace {

// JS truthiness of a JSON value (`a || b` in the original handlers).
bool truthy(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null:
      return false;
    case Json::value_t::boolean:
      return value.get<bool>();
    case Json::value_t::number_integer:
      return value.get<int64_t>() != 0;
    case Json::value_t::number_unsigned:
      return value.get<uint64_t>() != 0;
    case Json::value_t::number_float: {
      double number = value.get<double>();
      return number != 0 && !std::isnan(number);
    }
    case Json::value_t::string:
      return !value.get_ref<const std::string&>().empty();
    default:
      return true;  // objects and arrays, even empty ones
  }
}

// A member, or nullptr for "undefined".
const Json* member(const Json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

// `object[a] || object[b]`, nullptr when the result is undefined.
const Json* js_or(const Json& object, const char* a, const char* b) {
  const Json* first = member(object, a);
  if (first != nullptr && truthy(*first)) return first;
  return member(object, b);
}

// Sets `key` unless the value is undefined: JSON.stringify leaves such keys out.
void set_defined(Json& object, const char* key, const Json* value) {
  if (value != nullptr) object[key] = *value;
}

const std::string* non_empty_string(const Json& object, const char* key) {
  const Json* value = member(object, key);
  if (value == nullptr || !value->is_string() || value->get_ref<const std::string&>().empty()) {
    return nullptr;
  }
  return &value->get_ref<const std::string&>();
}

// The segments of a dotted event name.
std::vector<std::string_view> split_name(std::string_view name) {
  std::vector<std::string_view> segments;
  size_t start = 0;
  while (true) {
    size_t dot = name.find('.', start);
    segments.push_back(name.substr(start, dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return segments;
}

// A record id as JS would write it into a template string: strings as they are, integral
// numbers without a fraction ("42", also for 42.0), other numbers in the shortest form.
std::string id_text(const Json& id) {
  if (id.is_string()) return id.get<std::string>();
  if (id.is_number_float()) {
    double number = id.get<double>();
    if (std::floor(number) == number && std::fabs(number) < 1e21) {
      char buffer[32];
      std::snprintf(buffer, sizeof buffer, "%.0f", number);
      return buffer;
    }
  }
  return dump_json(id);
}

// A usable record id: a non-empty string or a number.
bool is_record_id(const Json* id) {
  if (id == nullptr) return false;
  if (id->is_number()) return true;
  return id->is_string() && !id->get_ref<const std::string&>().empty();
}

EventOutcome deliver_one(std::string event, const Json& argument, Target target) {
  Deliver result;
  result.deliveries.push_back(Delivery{std::move(event), dump_json(argument), std::move(target)});
  return result;
}

}  // namespace

const char* reject_reason_label(RejectReason reason) {
  switch (reason) {
    case RejectReason::InvalidEventName:
      return "invalid_event_name";
    case RejectReason::NotAnObject:
      return "not_an_object";
    case RejectReason::MissingField:
      return "missing_field";
    case RejectReason::InvalidField:
      return "invalid_field";
    case RejectReason::ReservedEventName:
      return "reserved_event_name";
  }
  return "invalid_field";
}

EventOutcome map_metadata(std::string_view event_name, const Json& payload,
                          const std::vector<std::string>& metadata_types) {
  auto segments = split_name(event_name);
  if (segments.size() != 2 || segments[0] != "$metadata" || segments[1].empty()) {
    return Rejected{"not a $metadata.<type> event", RejectReason::InvalidEventName};
  }
  if (!payload.is_object()) return Rejected{"payload is not an object", RejectReason::NotAnObject};
  const Json* type = member(payload, "type");
  // A type outside the list is someone else's metadata, not a broken payload (§9): ignored.
  if (type == nullptr || !type->is_string() ||
      std::find(metadata_types.begin(), metadata_types.end(),
                type->get_ref<const std::string&>()) == metadata_types.end()) {
    return Ignored{};
  }
  const Json* data = member(payload, "data");
  if (data == nullptr || !data->is_object())
    return Rejected{"data is not an object", RejectReason::NotAnObject};

  Json change = Json::object();
  change["type"] = *type;
  set_defined(change, "action", member(payload, "action"));
  set_defined(change, "_id", js_or(*data, "_id", "id"));
  set_defined(change, "name", member(*data, *type == "apps" ? "code" : "name"));
  set_defined(change, "objectName", js_or(*data, "object", "object_name"));
  return deliver_one("s:metadata:change", change, GlobalTarget{});
}

EventOutcome map_notification_users(const Json& payload) {
  const Json* data = member(payload, "data");
  if (data == nullptr || !data->is_object())
    return Rejected{"data is not an object", RejectReason::NotAnObject};
  // A missing tenant would make rooms named "undefined-..." as in the original: refuse instead.
  const std::string* tenant = non_empty_string(*data, "tenantId");
  if (tenant == nullptr)
    return Rejected{"tenantId is not a non-empty string", RejectReason::MissingField};
  const Json* users = member(*data, "users");
  if (users == nullptr || !users->is_array())
    return Rejected{"users is not an array of strings", RejectReason::InvalidField};
  std::vector<std::string> rooms;
  std::unordered_set<std::string> seen;
  for (const auto& user : *users) {
    // An empty id names a room no socket can be in; it is a producer bug worth counting.
    if (!user.is_string() || user.get_ref<const std::string&>().empty()) {
      return Rejected{"users is not an array of strings", RejectReason::InvalidField};
    }
    std::string room = *tenant + "-notification-change-" + user.get<std::string>();
    if (seen.insert(room).second) rooms.push_back(std::move(room));
  }
  if (rooms.empty()) return Deliver{};
  Json argument = Json::object();
  set_defined(argument, "message", member(*data, "message"));
  return deliver_one("s:notification-change", argument, RoomsTarget{std::move(rooms)});
}

EventOutcome map_socket_emit(const Json& payload, bool nested) {
  if (!payload.is_object()) return Rejected{"payload is not an object", RejectReason::NotAnObject};
  const Json* body = &payload;
  if (nested) {
    body = member(payload, "data");
    if (body == nullptr || !body->is_object())
      return Rejected{"data is not an object", RejectReason::NotAnObject};
  }
  const std::string* event = non_empty_string(*body, "eventName");
  if (event == nullptr)
    return Rejected{"eventName is missing or empty", RejectReason::MissingField};
  if (protocol::sio::is_reserved_event(*event)) {
    return Rejected{"eventName '" + *event + "' is reserved", RejectReason::ReservedEventName};
  }
  // Only absent or null counts as missing: 0, false and "" are real values (§9).
  const Json* params = member(*body, "eventParams");
  if (params == nullptr || params->is_null())
    return Rejected{"eventParams is missing", RejectReason::MissingField};
  const Json* room = member(*body, "room");
  // null is "no room" as in the original's `if (room)`; "" is refused rather than broadcast,
  // so an empty variable on the producer side cannot leak an event to every tenant.
  if (room == nullptr || room->is_null()) return deliver_one(*event, *params, GlobalTarget{});
  if (!room->is_string()) return Rejected{"room is not a string", RejectReason::InvalidField};
  if (room->get_ref<const std::string&>().empty())
    return Rejected{"room is empty", RejectReason::InvalidField};
  return deliver_one(*event, *params, RoomsTarget{{room->get<std::string>()}});
}

EventOutcome map_object_record_event(std::string_view event_name, const Json& payload) {
  if (!payload.is_object()) return Rejected{"payload is not an object", RejectReason::NotAnObject};
  auto segments = split_name(event_name);
  // `@objectRecordEvent.<object>` and `@objectRecordEvent.<object>.<action>` (the matcher lets
  // the two-segment form through `*.*`).
  if (segments[0] != "@objectRecordEvent" || segments.size() < 2 || segments.size() > 3) {
    return Rejected{"not an @objectRecordEvent.<object>.<action> event",
                    RejectReason::InvalidEventName};
  }
  std::string object;
  if (const std::string* name = non_empty_string(payload, "objectApiName")) {
    object = *name;
  } else if (const std::string* fallback = non_empty_string(payload, "objectName")) {
    object = *fallback;
  } else {
    object = std::string(segments[1]);
  }
  if (object.empty()) return Rejected{"no object name", RejectReason::InvalidEventName};

  // The tenant is spaceId only (§9): a record event without it cannot be scoped to a tenant.
  const std::string* space = non_empty_string(payload, "spaceId");
  if (space == nullptr) return Rejected{"spaceId is missing", RejectReason::MissingField};

  const Json* id = member(payload, "id");
  if (!is_record_id(id)) {
    const Json* doc = member(payload, "doc");
    id = doc == nullptr ? nullptr : member(*doc, "_id");
  }
  if (!is_record_id(id)) return Rejected{"id is missing", RejectReason::MissingField};

  // `_id` keeps the JSON type it came with (a number stays a number); names use its text.
  const std::string channel = "record:" + object + ":change-" + id_text(*id);
  Json argument = Json::object();
  argument["_id"] = *id;
  return deliver_one("s:" + channel, argument, RoomsTarget{{*space + "-" + channel}});
}

std::optional<std::string> map_logout(const Json& payload) {
  if (const std::string* token = non_empty_string(payload, "authToken")) return *token;
  const Json* data = member(payload, "data");
  if (data == nullptr) return std::nullopt;
  if (const std::string* token = non_empty_string(*data, "authToken")) return *token;
  return std::nullopt;
}

}  // namespace steedos::services::rules
