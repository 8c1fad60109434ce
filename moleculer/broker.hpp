#pragma once
// A Moleculer service broker node in C++: registry, transit (the protocol state machine),
// calls, events and the node lifecycle (spec: moleculer-node.md §3-5).
//
// Threading: every member function must be called on the io_context thread that owns the
// broker; the transporter posts its callbacks there. Nothing here is thread-safe by design.
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "moleculer/context.hpp"
#include "moleculer/registry.hpp"
#include "moleculer/settings.hpp"
#include "protocol/json.hpp"
#include "protocol/moleculer_error.hpp"
#include "protocol/moleculer_packet.hpp"
#include "transport/transporter.hpp"

namespace steedos::moleculer {

/// Completes an action exactly once; later calls are ignored.
using Respond = std::function<void(Outcome)>;
/// Action handlers may answer at once or later (after an asynchronous call). Exceptions thrown
/// synchronously become typed errors (MoleculerException keeps its error).
using ActionHandler = std::function<void(ContextPtr, Respond)>;
using EventHandler = std::function<void(ContextPtr)>;

struct ActionSchema {
  std::string raw_name;  // "emit" in "socket.emit"
  ActionHandler handler;
  /// Extra fields advertised in INFO: params, cache, tracing, visibility, rest, ...
  Json schema = Json::object();
};

struct EventSchema {
  std::string pattern;  // may contain Moleculer wildcards
  std::string group;    // empty = the service name
  EventHandler handler;
};

struct ServiceSchema {
  std::string name;
  Json version = nullptr;  // number, string or null
  Json settings = Json::object();
  Json metadata = Json::object();
  std::vector<ActionSchema> actions;
  std::vector<EventSchema> events;

  /// JS versioning rule: `v<N>.<name>` for numbers, `<version>.<name>` for strings.
  std::string full_name() const;
};

struct CallOptions {
  std::string node_id;  // empty = balanced
  int timeout_ms = -1;  // -1 = the broker's requestTimeout (or the parent's remaining budget)
  Json meta = Json::object();
  Json headers = Json::object();
  ContextPtr parent;  // nested call: level, requestID, parentID, caller, meta, budget inherited
};

struct EmitOptions {
  std::vector<std::string> groups;  // empty = every group
  /// broadcast(): the other nodes only, not this node's own handlers.
  bool remote_only = false;
  Json meta = Json::object();
  Json headers = Json::object();
  ContextPtr parent;
};

class Broker {
 public:
  Broker(asio::io_context& loop, BrokerSettings settings,
         std::unique_ptr<transport::Transporter> transporter);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  /// Registers a local service (the `$node` service is built in). After start the service list
  /// change raises `seq` and a debounced INFO is broadcast.
  void add_service(ServiceSchema schema);
  void remove_service(const std::string& full_name);

  /// Connects, subscribes, checks that no live node uses our nodeID, DISCOVERs, announces INFO and
  /// starts heartbeats. `done` gets an error text if the node must not run.
  void start(std::function<void(std::optional<std::string> error)> done);
  /// INFO with no services, heartbeats stopped, stopDelay, DISCONNECT, close. `done` afterwards.
  void stop(std::function<void()> done);

  void call(const std::string& action, Json params, CallOptions options,
            std::function<void(Outcome)> done);
  void emit(const std::string& event, Json data, EmitOptions options = {});
  void broadcast(const std::string& event, Json data, EmitOptions options = {});
  void broadcast_local(const std::string& event, Json data, EmitOptions options = {});

  const std::string& node_id() const { return settings_.node_id; }
  const std::string& instance_id() const { return instance_id_; }
  const BrokerSettings& settings() const { return settings_; }
  const Registry& registry() const { return registry_; }
  const BrokerCounters& counters() const { return counters_; }
  asio::io_context& loop() { return loop_; }
  bool started() const { return state_ == State::Running; }
  /// Called when the transport comes back after an outage (tests, metrics).
  std::function<void()> on_reconnected;

 private:
  enum class State { Created, Starting, Running, Stopping, Stopped };
  struct PendingRequest;
  struct LocalService;

  // Transit: packets in.
  void on_message(const std::string& subject, std::string_view data);
  void handle_discover(const Json& packet);
  void handle_info(const Json& packet);
  void handle_heartbeat(const Json& packet);
  void handle_disconnect(const Json& packet);
  void handle_ping(const Json& packet);
  void handle_pong(const Json& packet);
  void handle_request(Json& packet);
  void handle_response(Json& packet);
  void handle_event(Json& packet);

  // Transit: packets out.
  void publish(const std::string& subject, Json payload);
  Json info_payload() const;
  void send_info(const std::string& target);  // empty = broadcast
  void send_discover(const std::string& target);
  void send_heartbeat();
  void schedule_info_broadcast();
  void subscribe_all();
  void sync_balanced_subscriptions();

  // Local execution.
  void run_local_action(const std::string& action, ContextPtr ctx, Respond respond);
  void run_local_events(ContextPtr ctx, const std::vector<std::string>& groups, bool broadcast);
  void send_response(const std::string& target, const ContextPtr& ctx, Outcome outcome);
  void rebuild_local_registry();

  // Requests out.
  void send_request(const std::string& node_id, const std::string& action, ContextPtr ctx,
                    ContextPtr parent, std::function<void(Outcome)> done);
  void settle_request(const std::string& id, Outcome outcome);
  void reject_pending_for(const std::string& node_id);

  // Timers.
  void arm_heartbeat();
  void arm_registry_checks();
  void check_remote_nodes();

  ContextPtr make_context(const std::string& name, Json params, const Json& meta,
                          const Json& headers, const ContextPtr& parent);

  asio::io_context& loop_;
  BrokerSettings settings_;
  std::unique_ptr<transport::Transporter> transporter_;
  protocol::Topics topics_;
  Registry registry_;
  std::string instance_id_;
  State state_ = State::Created;
  BrokerCounters counters_;

  std::vector<std::shared_ptr<LocalService>> services_;
  std::map<std::string, std::unique_ptr<PendingRequest>> pending_;
  std::vector<std::pair<std::string, std::string>> balanced_subscriptions_;  // (subject, queue)
  std::map<std::string, bool> version_warned_;  // one warning per sender

  asio::steady_timer heartbeat_timer_;
  asio::steady_timer check_timer_;
  asio::steady_timer info_debounce_timer_;
  asio::steady_timer start_timer_;
  bool info_broadcast_scheduled_ = false;
  std::string probe_sender_;  // sender id of the startup nodeID-conflict probe
  bool node_id_conflict_ = false;
  class CpuMeterHolder;
  std::unique_ptr<CpuMeterHolder> cpu_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // guards posted callbacks
};

}  // namespace steedos::moleculer
