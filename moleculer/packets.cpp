#include "moleculer/packets.hpp"

#include "protocol/json_reader.hpp"

namespace steedos::moleculer::packets {

namespace {

// The take_* variants move the value out: params and results can be large.
std::string take_string(Json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? std::move(it->get_ref<std::string&>())
                                               : std::string();
}

Json take_object(Json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_object() ? std::move(*it) : Json::object();
}

/// The value under `key`, moved out; `absent` when there is none.
Json take_value(Json& object, const char* key, Json absent) {
  auto it = object.find(key);
  return it != object.end() ? std::move(*it) : std::move(absent);
}

int level_field(const Json& packet) {
  auto level = packet.find("level");
  return level != packet.end() && level->is_number_integer() ? level->get<int>() : 1;
}

Json null_if_empty(const std::string& value) {
  return value.empty() ? Json(nullptr) : Json(value);
}

}  // namespace

bool carries_headers(const std::string& protocol_version) {
  return protocol_version != "4";
}

Json event_packet(const Context& ctx, const std::string& id, const std::vector<std::string>* groups,
                  bool broadcast, const std::string& protocol_version) {
  Json packet = Json::object();
  packet["id"] = id;
  packet["event"] = ctx.name;
  packet["data"] = ctx.params;
  if (groups) packet["groups"] = *groups;
  packet["broadcast"] = broadcast;
  packet["meta"] = ctx.meta;
  if (carries_headers(protocol_version)) packet["headers"] = ctx.headers;
  packet["level"] = ctx.level;
  packet["tracing"] = nullptr;
  packet["parentID"] = null_if_empty(ctx.parent_id);
  packet["requestID"] = ctx.request_id;
  packet["caller"] = null_if_empty(ctx.caller);
  packet["needAck"] = nullptr;
  return packet;
}

Json request_packet(const Context& ctx, const std::string& protocol_version) {
  Json req = Json::object();
  req["id"] = ctx.id;
  req["action"] = ctx.name;
  req["params"] = ctx.params;
  req["meta"] = ctx.meta;
  if (carries_headers(protocol_version)) req["headers"] = ctx.headers;
  req["timeout"] = ctx.timeout_ms;
  req["level"] = ctx.level;
  req["tracing"] = nullptr;
  req["parentID"] = null_if_empty(ctx.parent_id);
  req["requestID"] = ctx.request_id;
  req["caller"] = null_if_empty(ctx.caller);
  req["stream"] = false;
  return req;
}

Json response_packet(const Context& ctx, Outcome outcome, const std::string& protocol_version,
                     const std::string& node_id) {
  Json res = protocol::reserved_object(8);  // with ver and sender, added by encode_packet
  res["id"] = ctx.id;
  Json meta = ctx.meta;
  if (outcome.meta.is_object() && !outcome.meta.empty()) meta.update(outcome.meta);
  res["meta"] = std::move(meta);
  // RES headers are always empty: handlers have no way to set response headers.
  if (carries_headers(protocol_version)) res["headers"] = Json::object();
  res["success"] = outcome.ok;
  if (outcome.ok) {
    if (outcome.has_data) res["data"] = std::move(outcome.data);
  } else {
    res["data"] = nullptr;
    MoleculerError error = std::move(outcome.error);
    if (error.nodeID.empty()) error.nodeID = node_id;
    res["error"] = error.to_json();
  }
  return res;
}

Json info_packet(const NodeInfo& self, Json services) {
  Json info = Json::object();
  info["services"] = std::move(services);
  info["ipList"] = self.ip_list;
  info["hostname"] = self.hostname;
  info["client"] = self.client;
  info["config"] = Json::object();
  info["instanceID"] = self.instance_id;
  info["metadata"] = self.metadata;
  info["seq"] = self.seq;
  return info;
}

Json discover_packet() {
  return Json::object();
}

Json heartbeat_packet(int cpu) {
  Json heartbeat = Json::object();
  heartbeat["cpu"] = cpu;
  return heartbeat;
}

Json ping_packet(long long time_ms, const std::string& id) {
  Json ping = Json::object();
  ping["time"] = time_ms;
  ping["id"] = id;
  return ping;
}

Json pong_packet(const Json& ping, long long arrived_ms) {
  Json pong = Json::object();
  auto time = ping.find("time");
  pong["time"] = time != ping.end() ? *time : Json(nullptr);
  auto id = ping.find("id");
  pong["id"] = id != ping.end() ? *id : Json(nullptr);  // decode_packet requires it
  pong["arrived"] = arrived_ms;
  return pong;
}

Json disconnect_packet() {
  return Json::object();
}

std::string string_field(const Json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::vector<std::string> string_list(const Json& object, const char* key) {
  std::vector<std::string> list;
  auto it = object.find(key);
  if (it == object.end() || !it->is_array()) return list;
  for (const auto& item : *it) {
    if (item.is_string()) list.push_back(item.get<std::string>());
  }
  return list;
}

ContextPtr request_context(Json& packet) {
  auto ctx = std::make_shared<Context>();
  ctx->node_id = take_string(packet, "sender");
  ctx->name = take_string(packet, "action");
  ctx->id = take_string(packet, "id");
  ctx->request_id = take_string(packet, "requestID");
  if (ctx->request_id.empty()) ctx->request_id = ctx->id;
  ctx->parent_id = take_string(packet, "parentID");
  ctx->caller = take_string(packet, "caller");
  ctx->level = level_field(packet);
  ctx->params = take_value(packet, "params", Json::object());
  ctx->meta = take_object(packet, "meta");
  ctx->headers = take_object(packet, "headers");
  auto timeout = packet.find("timeout");
  if (timeout != packet.end() && timeout->is_number() && timeout->get<double>() > 0) {
    ctx->timeout_ms = static_cast<int>(timeout->get<double>());
  }
  return ctx;
}

ContextPtr event_context(Json& packet) {
  auto ctx = std::make_shared<Context>();
  ctx->id = take_string(packet, "id");
  ctx->request_id = take_string(packet, "requestID");
  ctx->parent_id = take_string(packet, "parentID");
  ctx->caller = take_string(packet, "caller");
  ctx->node_id = take_string(packet, "sender");
  ctx->name = take_string(packet, "event");
  ctx->level = level_field(packet);
  ctx->params = take_value(packet, "data", Json(nullptr));
  ctx->meta = take_object(packet, "meta");
  ctx->headers = take_object(packet, "headers");
  auto broadcast = packet.find("broadcast");
  bool is_broadcast =
      broadcast != packet.end() && broadcast->is_boolean() && broadcast->get<bool>();
  ctx->event_type = is_broadcast ? "broadcast" : "emit";
  return ctx;
}

Outcome response_outcome(Json& packet) {
  Outcome outcome;
  outcome.meta = take_object(packet, "meta");
  if (packet["success"].get<bool>()) {
    outcome.ok = true;
    auto data = packet.find("data");
    outcome.has_data = data != packet.end();
    if (outcome.has_data) outcome.data = std::move(*data);
  } else {
    outcome.ok = false;
    outcome.data = nullptr;
    outcome.error = MoleculerError::from_json(packet.contains("error") ? packet["error"] : Json(),
                                              string_field(packet, "sender"));
  }
  return outcome;
}

}  // namespace steedos::moleculer::packets
