#include "moleculer/node_service.hpp"

#include <set>

#include "moleculer/broker.hpp"
#include "moleculer/system_info.hpp"

namespace steedos::moleculer {

namespace {

// fastest-validator schema of an optional boolean flag, as JS advertises it.
Json flag(bool default_value) {
  return Json{
      {"type", "boolean"}, {"optional", true}, {"convert", true}, {"default", default_value}};
}

// Reads a boolean param the way fastest-validator's `convert: true` does.
bool param_flag(const Json& params, const char* key, bool default_value) {
  if (!params.is_object()) return default_value;
  auto it = params.find(key);
  if (it == params.end() || it->is_null()) return default_value;
  if (it->is_boolean()) return it->get<bool>();
  if (it->is_number()) return it->get<double>() != 0;
  if (it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    if (s == "true" || s == "1" || s == "on") return true;
    if (s == "false" || s == "0" || s == "off") return false;
  }
  return default_value;
}

bool is_internal(const std::string& name) {
  return !name.empty() && name[0] == '$';
}

Json schema_with(Json params) {
  Json schema = Json{{"cache", false}, {"tracing", false}};
  if (!params.is_null()) schema["params"] = std::move(params);
  return schema;
}

Json node_entry(const NodeInfo& node, bool with_services) {
  Json item = Json::object();
  item["id"] = node.id;
  item["instanceID"] = node.instance_id;
  item["available"] = node.available;
  item["local"] = node.local;
  item["lastHeartbeatTime"] = node.last_heartbeat_uptime;
  item["config"] = node.config;
  item["client"] = node.client;
  item["metadata"] = node.metadata;
  item["ipList"] = node.ip_list;
  if (node.local) item["port"] = nullptr;  // JS: null locally, missing for remote nodes
  item["hostname"] = node.hostname;
  item["udpAddress"] = nullptr;
  item["cpu"] = node.cpu;
  item["cpuSeq"] = node.cpu_seq;
  item["seq"] = node.seq;
  item["offlineSince"] = node.offline_since_uptime ? Json(*node.offline_since_uptime) : Json();
  if (with_services) item["services"] = node.services;
  return item;
}

Json list_nodes(const Registry& registry, const Json& params) {
  bool with_services = param_flag(params, "withServices", false);
  bool only_available = param_flag(params, "onlyAvailable", false);
  Json list = Json::array();
  for (const auto& [id, node] : registry.nodes()) {
    if (only_available && !node.available) continue;
    list.push_back(node_entry(node, with_services));
  }
  return list;
}

Json list_services(const Registry& registry, const Json& params) {
  bool only_local = param_flag(params, "onlyLocal", false);
  bool skip_internal = param_flag(params, "skipInternal", false);
  bool with_actions = param_flag(params, "withActions", false);
  bool with_events = param_flag(params, "withEvents", false);
  bool only_available = param_flag(params, "onlyAvailable", false);
  bool grouping = param_flag(params, "grouping", true);
  Json list = Json::array();
  for (const auto& [id, node] : registry.nodes()) {
    if (only_local && !node.local) continue;
    if (only_available && !node.available) continue;
    for (const auto& service : node.services) {
      if (!service.is_object()) continue;
      std::string name = service.value("name", "");
      std::string full_name = service.value("fullName", name);
      if (skip_internal && is_internal(name)) continue;
      if (grouping) {
        bool merged = false;
        for (auto& existing : list) {
          if (existing["fullName"] == full_name) {
            existing["nodes"].push_back(node.id);
            merged = true;
            break;
          }
        }
        if (merged) continue;
      }
      Json item = Json::object();
      item["name"] = name;
      if (service.contains("version")) item["version"] = service["version"];
      item["fullName"] = full_name;
      item["settings"] = service.value("settings", Json::object());
      item["metadata"] = service.value("metadata", Json::object());
      item["local"] = node.local;
      item["available"] = node.available;
      if (grouping) {
        item["nodes"] = Json::array({node.id});
      } else {
        item["nodeID"] = node.id;
      }
      if (with_actions) item["actions"] = service.value("actions", Json::object());
      if (with_events) {
        Json events = Json::object();
        // Named: items() of a temporary would outlive the temporary inside the loop.
        const Json declared = service.value("events", Json::object());
        for (auto& [key, event] : declared.items()) {
          if (skip_internal && is_internal(key)) continue;
          events[key] = event;
        }
        item["events"] = std::move(events);
      }
      list.push_back(std::move(item));
    }
  }
  return list;
}

template <typename Endpoints>
Json endpoint_entries(const Registry& registry, const Endpoints& endpoints) {
  Json list = Json::array();
  for (const auto& endpoint : endpoints) {
    const NodeInfo* node = registry.find_node(endpoint.node_id);
    bool available = node && node->available;
    list.push_back(Json{{"nodeID", endpoint.node_id}, {"state", true}, {"available", available}});
  }
  return list;
}

Json list_actions(const Registry& registry, const Json& params) {
  bool only_local = param_flag(params, "onlyLocal", false);
  bool skip_internal = param_flag(params, "skipInternal", false);
  bool with_endpoints = param_flag(params, "withEndpoints", false);
  bool only_available = param_flag(params, "onlyAvailable", false);
  Json list = Json::array();
  for (const auto& [name, actions] : registry.actions()) {
    if (skip_internal && is_internal(name)) continue;
    bool has_local = false;
    for (const auto& endpoint : actions.endpoints) has_local = has_local || endpoint.local;
    bool available = !actions.endpoints.empty();
    if (only_local && !has_local) continue;
    if (only_available && !available) continue;
    Json item = Json::object();
    item["name"] = name;
    item["count"] = actions.endpoints.size();
    item["hasLocal"] = has_local;
    item["available"] = available;
    if (!actions.endpoints.empty()) item["action"] = actions.endpoints.front().schema;
    if (with_endpoints) item["endpoints"] = endpoint_entries(registry, actions.endpoints);
    list.push_back(std::move(item));
  }
  return list;
}

Json list_events(const Registry& registry, const Json& params) {
  bool only_local = param_flag(params, "onlyLocal", false);
  bool skip_internal = param_flag(params, "skipInternal", false);
  bool with_endpoints = param_flag(params, "withEndpoints", false);
  bool only_available = param_flag(params, "onlyAvailable", false);
  Json list = Json::array();
  for (const auto& events : registry.event_lists()) {
    if (skip_internal && is_internal(events.pattern)) continue;
    bool has_local = false;
    for (const auto& endpoint : events.endpoints) has_local = has_local || endpoint.local;
    bool available = !events.endpoints.empty();
    if (only_local && !has_local) continue;
    if (only_available && !available) continue;
    Json item = Json::object();
    item["name"] = events.pattern;
    item["group"] = events.group;
    item["count"] = events.endpoints.size();
    item["hasLocal"] = has_local;
    item["available"] = available;
    if (!events.endpoints.empty()) item["event"] = events.endpoints.front().schema;
    if (with_endpoints) item["endpoints"] = endpoint_entries(registry, events.endpoints);
    list.push_back(std::move(item));
  }
  return list;
}

Json broker_options(const BrokerSettings& settings) {
  Json options = Json::object();
  options["namespace"] = settings.moleculer_namespace;
  options["nodeID"] = settings.node_id;
  options["transporter"] = settings.transporter_name;  // the URL may carry credentials
  options["serializer"] = settings.serializer;
  options["protocolVersion"] = settings.protocol_version;
  options["requestTimeout"] = settings.request_timeout_ms;
  options["heartbeatInterval"] = settings.heartbeat_interval_s;
  options["heartbeatTimeout"] = settings.heartbeat_timeout_s;
  options["disableBalancer"] = settings.disable_balancer;
  options["registry"] = Json{{"preferLocal", settings.prefer_local}};
  options["transit"] = Json{{"maxQueueSize", settings.max_queue_size}};
  options["logLevel"] = settings.log_level;
  options["metadata"] = settings.metadata;
  return options;
}

// An action whose answer is computed at once from params.
ActionSchema sync_action(std::string raw_name, Json schema,
                         std::function<Json(const Json& params)> compute) {
  ActionSchema action;
  action.raw_name = std::move(raw_name);
  action.schema = std::move(schema);
  action.handler = [compute = std::move(compute)](ContextPtr ctx, Respond respond) {
    respond(Outcome::success(compute(ctx->params)));
  };
  return action;
}

}  // namespace

ServiceSchema make_node_service(Broker& broker) {
  ServiceSchema service;
  service.name = "$node";
  Broker* b = &broker;
  service.actions.push_back(sync_action(
      "list", schema_with(Json{{"withServices", flag(false)}, {"onlyAvailable", flag(false)}}),
      [b](const Json& params) { return list_nodes(b->registry(), params); }));
  service.actions.push_back(
      sync_action("services",
                  schema_with(Json{{"onlyLocal", flag(false)},
                                   {"skipInternal", flag(false)},
                                   {"withActions", flag(false)},
                                   {"withEvents", flag(false)},
                                   {"onlyAvailable", flag(false)},
                                   {"grouping", flag(true)}}),
                  [b](const Json& params) { return list_services(b->registry(), params); }));
  Json listing_params = Json{{"onlyLocal", flag(false)},
                             {"skipInternal", flag(false)},
                             {"withEndpoints", flag(false)},
                             {"onlyAvailable", flag(false)}};
  service.actions.push_back(
      sync_action("actions", schema_with(listing_params),
                  [b](const Json& params) { return list_actions(b->registry(), params); }));
  service.actions.push_back(
      sync_action("events", schema_with(listing_params),
                  [b](const Json& params) { return list_events(b->registry(), params); }));
  service.actions.push_back(sync_action("health", schema_with(nullptr), [b](const Json&) {
    const NodeInfo& self = b->registry().local_node();
    return health_info(self.client, self.cpu.is_number() ? self.cpu.get<int>() : 0);
  }));
  service.actions.push_back(sync_action("options", schema_with(Json::object()), [b](const Json&) {
    return broker_options(b->settings());
  }));
  Json string_or_list =
      Json{{"type", "multi"},
           {"optional", true},
           {"rules",
            Json::array({Json{{"type", "string"}}, Json{{"type", "array"}, {"items", "string"}}})}};
  ActionSchema metrics;
  metrics.raw_name = "metrics";
  metrics.schema = schema_with(
      Json{{"types", string_or_list}, {"includes", string_or_list}, {"excludes", string_or_list}});
  metrics.handler = [](ContextPtr, Respond respond) {
    respond(Outcome::failure(
        protocol::errors::client_error("Metrics feature is disabled", 400, "METRICS_DISABLED")));
  };
  service.actions.push_back(std::move(metrics));
  return service;
}

}  // namespace steedos::moleculer
