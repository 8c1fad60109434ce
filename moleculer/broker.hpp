#pragma once
// A Moleculer service broker node in C++: the facade services use (add_service, call, emit,
// broadcast, start/stop), the registry, the local services and their execution, and the node
// lifecycle (spec: moleculer-node.md §3-5). The protocol on the bus is Transit's
// (moleculer/transit.hpp); the broker answers what transit hands it through TransitHandler.
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
#include "moleculer/transit.hpp"
#include "protocol/json.hpp"
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

/// Service metadata key: `true` makes this node listen on the shared EVENT subject
/// (Broker::broadcast_on_shared_subject), and tells the service's peers that it does.
inline constexpr const char* kSharedEventSubjectKey = "$sharedEventSubject";

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
  /// broadcast(): only these remote nodes (empty = every node with a matching handler).
  std::vector<std::string> nodes;
  Json meta = Json::object();
  Json headers = Json::object();
  ContextPtr parent;
};

class Broker : private TransitHandler {
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
  /// One broadcast EVENT for `options.groups` on the shared subject: every other node whose
  /// broker listens there (a local service declared kSharedEventSubjectKey) runs its handlers of
  /// those groups; this node's do not run. One publish whatever the number of receivers, where
  /// broadcast() publishes one per node.
  void broadcast_on_shared_subject(const std::string& event, Json data, EmitOptions options);

  const std::string& node_id() const { return settings_.node_id; }
  const std::string& instance_id() const { return instance_id_; }
  const BrokerSettings& settings() const { return settings_; }
  const Registry& registry() const { return registry_; }
  const BrokerCounters& counters() const { return counters_; }
  asio::io_context& loop() { return loop_; }
  bool started() const { return state_ == State::Running; }
  /// The transporter is connected to the bus now.
  bool connected() const;
  /// The bus traffic so far (messages, payload bytes, reconnections) and the connection state,
  /// as the transporter counts them (metrics). Loop thread only.
  transport::TransporterStats transporter_stats() const { return transit_->transporter_stats(); }
  /// Running, connected, and this node's INFO was broadcast since the connection was last
  /// (re)established: peers know its services (readiness).
  bool announced() const { return started() && announced_ && connected(); }
  /// Stamp remote events with the time they came off the bus (Context::received), for the
  /// emit-to-write metric. Off by default: a clock read per event.
  void stamp_received_events(bool on);
  /// Called when the transport comes back after an outage (tests, metrics).
  std::function<void()> on_reconnected;

 private:
  enum class State { Created, Starting, Running, Stopping, Stopped };
  struct LocalService;
  struct LocalEventHandler;

  // TransitHandler: the packets whose meaning depends on this node.
  void on_discover(const std::string& sender) override;
  void on_info(const Json& packet) override;
  void on_heartbeat(const Json& packet) override;
  void on_disconnect(const std::string& sender) override;
  void on_request(ContextPtr ctx) override;
  void on_event(ContextPtr ctx, const std::vector<std::string>& groups) override;
  void on_connection_restored() override;
  void on_connection_lost() override { announced_ = false; }

  void send_heartbeat();
  void schedule_info_broadcast();
  void sync_balanced_subscriptions();
  void rebuild_local_registry();

  // Local execution.
  void run_local_action(const std::string& action, ContextPtr ctx, Respond respond);
  /// emit: the handlers of the (pattern, group) lists the balancer picked for this node.
  std::vector<LocalEventHandler> local_handlers_of(
      const std::vector<std::pair<std::string, std::string>>& lists) const;
  /// broadcast, broadcastLocal and remote events: the handlers whose pattern matches `event`,
  /// in `groups` (every group when empty).
  std::vector<LocalEventHandler> local_handlers_matching(
      const std::string& event, const std::vector<std::string>& groups) const;
  void deliver_local_event(const ContextPtr& ctx, const std::vector<LocalEventHandler>& handlers,
                           const std::vector<std::string>& groups);

  // Timers.
  void arm_heartbeat();
  void arm_registry_checks();
  void check_remote_nodes();

  ContextPtr make_context(const std::string& name, Json params, const Json& meta,
                          const Json& headers, const ContextPtr& parent);

  asio::io_context& loop_;
  BrokerSettings settings_;
  Registry registry_;
  std::string instance_id_;
  State state_ = State::Created;
  BrokerCounters counters_;
  std::unique_ptr<Transit> transit_;

  std::vector<std::shared_ptr<LocalService>> services_;

  asio::steady_timer heartbeat_timer_;
  asio::steady_timer check_timer_;
  asio::steady_timer info_debounce_timer_;
  asio::steady_timer start_timer_;
  bool info_broadcast_scheduled_ = false;
  bool announced_ = false;                  // INFO broadcast since the last (re)connection
  bool listens_on_shared_subject_ = false;  // subscribed at start()
  class CpuMeterHolder;
  std::unique_ptr<CpuMeterHolder> cpu_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // guards posted callbacks
};

}  // namespace steedos::moleculer
