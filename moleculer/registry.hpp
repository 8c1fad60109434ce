#pragma once
// The cluster as this node sees it: nodes (from INFO and HEARTBEAT), their services, and the
// endpoint lists used to route calls and events (spec: moleculer-node.md §3.2-3.3, §4, §5.1).
// Pure bookkeeping: no I/O, no timers; the broker feeds it packets and the clock.
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "protocol/json.hpp"

namespace steedos::moleculer {

using Clock = std::chrono::steady_clock;

struct NodeInfo {
  std::string id;
  std::string instance_id;
  bool available = true;
  bool local = false;
  Clock::time_point last_heartbeat{};
  double last_heartbeat_uptime = 0;  // JS reports process-uptime seconds
  std::optional<double> offline_since_uptime;
  Clock::time_point offline_since{};
  Json config = Json::object();
  Json client = Json::object();
  Json metadata = Json::object();
  Json ip_list = Json::array();
  Json hostname = nullptr;
  Json cpu = nullptr;
  Json cpu_seq = nullptr;
  long long seq = 0;
  Json services = Json::array();  // as advertised in INFO
};

struct ActionEndpoint {
  std::string node_id;
  bool local = false;
  std::string service;  // fullName
  Json schema;          // the INFO action object
};

struct ActionList {
  std::string name;
  std::vector<ActionEndpoint> endpoints;
  size_t round_robin = 0;
};

struct EventEndpoint {
  std::string node_id;
  bool local = false;
  std::string service;  // fullName
  Json schema;          // the INFO event object
};

/// One endpoint list per (event pattern, group), as JS keeps them.
struct EventList {
  std::string pattern;
  std::string group;
  std::vector<EventEndpoint> endpoints;
  size_t round_robin = 0;
};

enum class InfoOutcome { Connected, Reconnected, Updated, Ignored };

class Registry {
 public:
  explicit Registry(std::string local_node_id);

  const std::string& local_node_id() const { return local_id_; }
  NodeInfo& local_node() { return nodes_.at(local_id_); }
  const NodeInfo& local_node() const { return nodes_.at(local_id_); }
  const std::map<std::string, NodeInfo>& nodes() const { return nodes_; }
  const NodeInfo* find_node(const std::string& id) const;

  /// Replaces the local node's advertised services (INFO form) and their endpoints.
  void set_local_services(Json services);

  /// Applies an INFO from a remote node with JS's rules: the service list is replaced only when
  /// seq rose, the instanceID changed or the node came back online.
  InfoOutcome process_info(const Json& info, Clock::time_point now, double uptime);
  /// Returns false when the sender is unknown or offline (the caller then sends DISCOVER).
  bool process_heartbeat(const Json& heartbeat, Clock::time_point now, double uptime);
  /// Marks a node offline and drops its endpoints. Returns false if it was not online.
  bool disconnect_node(const std::string& id, Clock::time_point now, double uptime);
  /// Online remote nodes whose last heartbeat is older than `timeout`.
  std::vector<std::string> expired_nodes(Clock::time_point now, Clock::duration timeout) const;
  /// Removes offline nodes older than `timeout`; returns their ids.
  std::vector<std::string> remove_offline_nodes(Clock::time_point now, Clock::duration timeout);

  // Routing.
  const ActionList* find_action(const std::string& name) const;
  /// Picks an endpoint like JS (§5.1): `$` actions and preferLocal go local first, otherwise
  /// round robin over available endpoints. nullptr when the list has none.
  const ActionEndpoint* pick_action_endpoint(const std::string& name, bool prefer_local);
  const ActionEndpoint* action_endpoint_on(const std::string& name,
                                           const std::string& node_id) const;
  /// Lists whose pattern matches `event` and whose group is in `groups` (all when empty).
  std::vector<EventList*> matching_event_lists(const std::string& event,
                                               const std::vector<std::string>& groups);
  /// Picks one endpoint of a list: `$` lists prefer a local endpoint, else preferLocal, else
  /// round robin.
  const EventEndpoint* pick_event_endpoint(EventList& list, bool prefer_local);

  const std::map<std::string, ActionList>& actions() const { return actions_; }
  const std::vector<EventList>& event_lists() const { return events_; }

 private:
  void register_endpoints(const NodeInfo& node);
  void unregister_endpoints(const std::string& node_id);

  std::string local_id_;
  std::map<std::string, NodeInfo> nodes_;
  std::map<std::string, ActionList> actions_;
  std::vector<EventList> events_;
};

}  // namespace steedos::moleculer
