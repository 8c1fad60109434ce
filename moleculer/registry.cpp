#include "moleculer/registry.hpp"

#include <algorithm>

#include "protocol/match.hpp"

namespace steedos::moleculer {

namespace {

long long seq_of(const Json& info) {
  auto it = info.find("seq");
  // JS reads a missing seq as 1.
  return it != info.end() && it->is_number() ? it->get<long long>() : 1;
}

std::string string_field(const Json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// JS registers remote actions unless they are protected or private.
bool remote_visible(const Json& action) {
  std::string visibility = string_field(action, "visibility");
  return visibility != "protected" && visibility != "private";
}

// The fullName rule of JS, for peers that leave it out.
std::string service_full_name(const Json& service) {
  std::string full = string_field(service, "fullName");
  if (!full.empty()) return full;
  std::string name = string_field(service, "name");
  auto version = service.find("version");
  if (version == service.end() || version->is_null()) return name;
  if (version->is_number()) return "v" + version->dump() + "." + name;
  if (version->is_string()) return version->get<std::string>() + "." + name;
  return name;
}

template <typename Endpoint>
size_t next_index(std::vector<Endpoint>& endpoints, size_t& cursor) {
  size_t index = cursor % endpoints.size();
  cursor = (cursor + 1) % endpoints.size();
  return index;
}

}  // namespace

Registry::Registry(std::string local_node_id) : local_id_(std::move(local_node_id)) {
  NodeInfo& self = nodes_[local_id_];
  self.id = local_id_;
  self.local = true;
  self.available = true;
}

const NodeInfo* Registry::find_node(const std::string& id) const {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : &it->second;
}

void Registry::set_local_services(Json services) {
  NodeInfo& self = local_node();
  self.services = std::move(services);
  unregister_endpoints(local_id_);
  register_endpoints(self);
}

InfoOutcome Registry::process_info(const Json& info, Clock::time_point now, double uptime) {
  std::string sender = string_field(info, "sender");
  if (sender.empty() || sender == local_id_) return InfoOutcome::Ignored;

  auto [it, created] = nodes_.try_emplace(sender);
  NodeInfo& node = it->second;
  bool reconnected = !created && !node.available;
  std::string instance_id = string_field(info, "instanceID");
  long long seq = seq_of(info);
  bool refresh = created || reconnected || seq > node.seq || instance_id != node.instance_id;

  node.id = sender;
  node.local = false;
  if (info.contains("metadata")) node.metadata = info["metadata"];
  if (info.contains("ipList")) node.ip_list = info["ipList"];
  if (info.contains("hostname")) node.hostname = info["hostname"];
  if (info.contains("client")) node.client = info["client"];
  if (info.contains("config")) node.config = info["config"];
  if (created || reconnected) {
    node.available = true;
    node.offline_since_uptime.reset();
    node.last_heartbeat = now;
    node.last_heartbeat_uptime = uptime;
  }
  if (refresh) {
    node.instance_id = instance_id;
    node.seq = seq;
    auto services = info.find("services");
    node.services = services != info.end() && services->is_array() ? *services : Json::array();
    unregister_endpoints(sender);
    register_endpoints(node);
  }
  if (created) return InfoOutcome::Connected;
  if (reconnected) return InfoOutcome::Reconnected;
  return InfoOutcome::Updated;
}

bool Registry::process_heartbeat(const Json& heartbeat, Clock::time_point now, double uptime) {
  auto it = nodes_.find(string_field(heartbeat, "sender"));
  if (it == nodes_.end() || it->second.local || !it->second.available) return false;
  NodeInfo& node = it->second;
  node.last_heartbeat = now;
  node.last_heartbeat_uptime = uptime;
  if (heartbeat.contains("cpu")) node.cpu = heartbeat["cpu"];
  if (heartbeat.contains("cpuSeq")) node.cpu_seq = heartbeat["cpuSeq"];
  // Discoverers that send seq/instanceID in heartbeats ask for a fresh INFO when they change.
  auto seq = heartbeat.find("seq");
  if (seq != heartbeat.end() && seq->is_number() && seq->get<long long>() != node.seq) return false;
  std::string instance = string_field(heartbeat, "instanceID");
  if (!instance.empty() && node.instance_id.rfind(instance, 0) != 0) return false;
  return true;
}

bool Registry::disconnect_node(const std::string& id, Clock::time_point now, double uptime) {
  auto it = nodes_.find(id);
  if (it == nodes_.end() || it->second.local || !it->second.available) return false;
  it->second.available = false;
  it->second.offline_since = now;
  it->second.offline_since_uptime = uptime;
  it->second.seq++;  // as JS: the next INFO (even with the old seq) re-registers
  unregister_endpoints(id);
  return true;
}

std::vector<std::string> Registry::expired_nodes(Clock::time_point now,
                                                 Clock::duration timeout) const {
  std::vector<std::string> expired;
  for (const auto& [id, node] : nodes_) {
    if (!node.local && node.available && now - node.last_heartbeat > timeout) {
      expired.push_back(id);
    }
  }
  return expired;
}

std::vector<std::string> Registry::remove_offline_nodes(Clock::time_point now,
                                                        Clock::duration timeout) {
  std::vector<std::string> removed;
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    if (!it->second.local && !it->second.available && now - it->second.offline_since > timeout) {
      removed.push_back(it->first);
      it = nodes_.erase(it);
    } else {
      ++it;
    }
  }
  return removed;
}

void Registry::register_endpoints(const NodeInfo& node) {
  if (!node.available) return;
  for (const Json& service : node.services) {
    if (!service.is_object()) continue;
    std::string full_name = service_full_name(service);
    std::string default_group = string_field(service, "name");
    auto actions = service.find("actions");
    if (actions != service.end() && actions->is_object()) {
      for (auto& [key, action] : actions->items()) {
        if (!action.is_object() || (!node.local && !remote_visible(action))) continue;
        std::string name = string_field(action, "name");
        if (name.empty()) name = key;
        ActionList& list = actions_[name];
        list.name = name;
        list.endpoints.push_back({node.id, node.local, full_name, action});
      }
    }
    auto events = service.find("events");
    if (events != service.end() && events->is_object()) {
      for (auto& [key, event] : events->items()) {
        if (!event.is_object()) continue;
        std::string pattern = string_field(event, "name");
        if (pattern.empty()) pattern = key;
        std::string group = string_field(event, "group");
        if (group.empty()) group = default_group;
        auto list = std::find_if(events_.begin(), events_.end(), [&](const EventList& l) {
          return l.pattern == pattern && l.group == group;
        });
        if (list == events_.end()) {
          events_.push_back({pattern, group, {}, 0});
          list = std::prev(events_.end());
        }
        list->endpoints.push_back({node.id, node.local, full_name, event});
      }
    }
  }
}

void Registry::unregister_endpoints(const std::string& node_id) {
  for (auto it = actions_.begin(); it != actions_.end();) {
    auto& endpoints = it->second.endpoints;
    endpoints.erase(std::remove_if(endpoints.begin(), endpoints.end(),
                                   [&](const ActionEndpoint& e) { return e.node_id == node_id; }),
                    endpoints.end());
    it = endpoints.empty() ? actions_.erase(it) : std::next(it);
  }
  for (auto& list : events_) {
    list.endpoints.erase(
        std::remove_if(list.endpoints.begin(), list.endpoints.end(),
                       [&](const EventEndpoint& e) { return e.node_id == node_id; }),
        list.endpoints.end());
  }
  events_.erase(std::remove_if(events_.begin(), events_.end(),
                               [](const EventList& l) { return l.endpoints.empty(); }),
                events_.end());
}

const ActionList* Registry::find_action(const std::string& name) const {
  auto it = actions_.find(name);
  return it == actions_.end() ? nullptr : &it->second;
}

const ActionEndpoint* Registry::pick_action_endpoint(const std::string& name, bool prefer_local) {
  auto it = actions_.find(name);
  if (it == actions_.end() || it->second.endpoints.empty()) return nullptr;
  auto& endpoints = it->second.endpoints;
  bool internal = !name.empty() && name[0] == '$';
  if (internal || prefer_local || endpoints.size() == 1) {
    for (const auto& endpoint : endpoints) {
      if (endpoint.local) return &endpoint;
    }
  }
  return &endpoints[next_index(endpoints, it->second.round_robin)];
}

const ActionEndpoint* Registry::action_endpoint_on(const std::string& name,
                                                   const std::string& node_id) const {
  const ActionList* list = find_action(name);
  if (!list) return nullptr;
  for (const auto& endpoint : list->endpoints) {
    if (endpoint.node_id == node_id) return &endpoint;
  }
  return nullptr;
}

std::vector<EventList*> Registry::matching_event_lists(const std::string& event,
                                                       const std::vector<std::string>& groups) {
  std::vector<EventList*> lists;
  for (auto& list : events_) {
    if (!groups.empty() && std::find(groups.begin(), groups.end(), list.group) == groups.end()) {
      continue;
    }
    if (protocol::match_event(event, list.pattern)) lists.push_back(&list);
  }
  return lists;
}

const EventEndpoint* Registry::pick_event_endpoint(EventList& list, bool prefer_local) {
  if (list.endpoints.empty()) return nullptr;
  bool internal = !list.pattern.empty() && list.pattern[0] == '$';
  if (internal || prefer_local) {
    for (const auto& endpoint : list.endpoints) {
      if (endpoint.local) return &endpoint;
    }
  }
  return &list.endpoints[next_index(list.endpoints, list.round_robin)];
}

}  // namespace steedos::moleculer
