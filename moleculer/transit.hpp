#pragma once
// Transit: the Moleculer protocol between this node and the bus (spec: moleculer-node.md §1-3),
// the layer under the broker facade, as in moleculer's own transit.js.
//
// The split:
//  - Transit owns the transporter, the subjects and subscriptions, the packets going out (their
//    bodies built by moleculer/packets.hpp), the requests waiting for their RES (timeouts,
//    rejection, the queue limit), and the decoding of packets coming in. It answers PING,
//    settles RES and runs the start-up nodeID probe by itself.
//  - The broker, through TransitHandler, decides what the other packets mean for the node: the
//    registry, whether to answer a DISCOVER, which local action or event handlers run. Transit
//    never sees local services or their handler functions; it hands over contexts and sends
//    back the outcomes the broker gives it.
//
// Threading: as the broker, everything runs on the io_context thread that owns it.
#include <asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "moleculer/context.hpp"
#include "moleculer/recent_ids.hpp"
#include "moleculer/registry.hpp"
#include "moleculer/settings.hpp"
#include "protocol/json.hpp"
#include "protocol/moleculer_packet.hpp"
#include "transport/transporter.hpp"

namespace steedos::moleculer {

/// What transit hands to the broker: packets whose meaning depends on the node's state.
class TransitHandler {
 public:
  virtual void on_discover(const std::string& sender) = 0;
  virtual void on_info(const Json& packet) = 0;
  virtual void on_heartbeat(const Json& packet) = 0;
  virtual void on_disconnect(const std::string& sender) = 0;
  /// A REQ for a local action; the answer goes back through Transit::send_response.
  virtual void on_request(ContextPtr ctx) = 0;
  /// An EVENT for the local handlers of `groups` (every group when empty).
  virtual void on_event(ContextPtr ctx, const std::vector<std::string>& groups) = 0;
  /// The bus is back after an outage; subscriptions are active again.
  virtual void on_connection_restored() = 0;
  /// The bus connection was lost (the transporter reconnects by itself).
  virtual void on_connection_lost() {}

 protected:
  ~TransitHandler() = default;
};

class Transit {
 public:
  using Done = std::function<void(Outcome)>;

  /// `settings`, `handler` and `counters` belong to the broker and outlive this object.
  Transit(asio::io_context& loop, const BrokerSettings& settings, std::string instance_id,
          std::unique_ptr<transport::Transporter> transporter, TransitHandler& handler,
          BrokerCounters& counters);
  ~Transit();
  Transit(const Transit&) = delete;
  Transit& operator=(const Transit&) = delete;

  /// Stamp each EVENT with the time its message came off the bus (Context::received): one clock
  /// read per event, for the emit-to-write metric. Off by default.
  void stamp_received_events(bool on) { stamp_events_ = on; }

  // Connection.
  /// Connects and subscribes the node's own subjects; throws if the bus is unreachable.
  void connect();
  /// A live node with our nodeID answers a PING sent to our own subject. The probe uses its own
  /// sender id, because nodes drop packets whose sender is their own nodeID.
  void start_node_id_probe();
  /// Ends the probe; true when another live node uses our nodeID.
  bool finish_node_id_probe();
  void flush(int timeout_ms);
  /// No packet is handled after close().
  void close();
  const protocol::Topics& topics() const { return topics_; }

  /// The queue subscriptions of disableBalancer mode: REQB per local action, EVENTB per local
  /// (group, event pattern). Only the difference to the current set is applied, so there is no
  /// window without a queue subscription (JS drops and re-creates all of them on every INFO).
  void sync_balanced_subscriptions(const std::vector<std::string>& actions,
                                   const std::vector<std::pair<std::string, std::string>>& events);

  // Packets out.
  void send_info(const std::string& target, const NodeInfo& self);  // empty target = everyone
  /// The last INFO of a stopping node: no services.
  void send_leaving_info(const NodeInfo& self);
  void send_discover(const std::string& target);  // empty target = everyone
  void send_heartbeat(int cpu);
  void send_disconnect();
  /// An EVENT to one node, with its own context id (each target gets a copy, as in JS).
  void send_event(const std::string& node_id, const Context& ctx,
                  const std::vector<std::string>* groups, bool broadcast);
  /// An EVENTB to the queue group `group` (disableBalancer); it keeps the context id.
  void send_balanced_event(const std::string& group, const Context& ctx);
  /// One broadcast EVENT for `groups` on the shared subject `<prefix>.EVENT` (no nodeID), heard
  /// by every node that subscribed it (subscribe_shared_events), whatever their number. JS
  /// nodes neither subscribe nor normally publish there (spec: moleculer-node.md §1.3).
  void send_shared_event(const Context& ctx, const std::vector<std::string>& groups);
  /// Subscribes the shared EVENT subject; our own packets there are dropped (the sender ran its
  /// local handlers itself).
  void subscribe_shared_events();
  void send_response(const std::string& target, const Context& ctx, Outcome outcome);

  // Requests out.
  /// Sends a REQ for `ctx->name` to `node_id` (empty = REQB, a NATS queue group picks the node)
  /// and calls `done` exactly once: with the RES, a timeout, a rejection or a full queue. The
  /// callee's meta is merged into `ctx` and `parent`.
  void send_request(const std::string& node_id, ContextPtr ctx, ContextPtr parent, Done done);
  /// Fails the requests waiting on `node_id` (it left or stopped answering).
  void reject_pending_for(const std::string& node_id);
  std::string transporter_name() const { return transporter_->name(); }
  bool transporter_balances() const { return transporter_->has_builtin_balancer(); }
  bool transporter_connected() const { return transporter_->connected(); }
  transport::TransporterStats transporter_stats() const { return transporter_->stats(); }
  /// Fails every waiting request at once (the node stops).
  void reject_all_pending(const MoleculerError& error);

 private:
  struct PendingRequest;

  void on_message(const std::string& subject, std::string_view data);
  /// The bus dropped: answers to requests in flight may have been published into the gap and
  /// are lost (pub/sub is at-most-once), so they fail now, retryable, instead of waiting for a
  /// timeout that Steedos (requestTimeout 0) never sets.
  void fail_requests_in_flight();
  /// Packets carrying our own nodeID: the nodeID-conflict checks; true when nothing else is to
  /// be done with the packet.
  bool consume_own_packet(protocol::PacketType type, const Json& packet);
  void dispatch(protocol::PacketType type, Json& packet,
                std::chrono::steady_clock::time_point received);
  void handle_ping(const Json& packet);
  void handle_request(Json& packet);
  void handle_response(Json& packet);
  void handle_event(Json& packet, std::chrono::steady_clock::time_point received);

  void publish(const std::string& subject, Json payload);
  void settle_request(const std::string& id, Outcome outcome);

  asio::io_context& loop_;
  const BrokerSettings& settings_;
  std::string instance_id_;
  std::unique_ptr<transport::Transporter> transporter_;
  TransitHandler& handler_;
  BrokerCounters& counters_;
  protocol::Topics topics_;
  std::string shared_event_subject_;  // <prefix>.EVENT

  std::map<std::string, std::unique_ptr<PendingRequest>> pending_;
  std::vector<std::pair<std::string, std::string>> balanced_subscriptions_;  // (subject, queue)
  std::map<std::string, bool> version_warned_;  // one warning per sender
  RecentIds recent_requests_{10000};            // "<sender>|<id>" of the REQs taken in
  std::string probe_sender_;                    // sender id of the startup nodeID-conflict probe
  bool probing_ = false;
  bool node_id_conflict_ = false;
  bool closed_ = false;
  bool stamp_events_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // guards posted callbacks
};

}  // namespace steedos::moleculer
