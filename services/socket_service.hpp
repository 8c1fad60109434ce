#pragma once
// The Steedos `socket` service (spec: gateway-contract.md): Moleculer events and actions on one
// side, the Socket.IO clients on the other, reached through a ClientHub (services/client_hub.hpp).
// Authentication on CONNECT, tenant rooms, event mapping and the operator actions are wired
// here; the rules themselves are pure functions in services/steedos_*.hpp.
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "moleculer/broker.hpp"
#include "moleculer/recent_ids.hpp"
#include "services/auth_coalescer.hpp"
#include "services/client_hub.hpp"
#include "services/cluster_calls.hpp"
#include "services/cluster_history.hpp"
#include "services/config.hpp"
#include "services/session_registry.hpp"
#include "services/steedos_action_params.hpp"
#include "services/steedos_auth_rules.hpp"
#include "services/steedos_events.hpp"

namespace steedos::services {

using moleculer::ActionHandler;
using moleculer::ActionSchema;
using moleculer::Broker;
using moleculer::CallOptions;
using moleculer::Context;
using moleculer::ContextPtr;
using moleculer::EmitOptions;
using moleculer::EventSchema;
using moleculer::Outcome;
using moleculer::Respond;
using moleculer::ServiceSchema;

/// Packets the Socket.IO layer refused for a limit (gateway::SocketIoLimitCounts, copied so the
/// service does not depend on the gateway), for `socket.stats` `limits`.
struct PacketLimitCounts {
  uint64_t attachments = 0;  // gateway.maxAttachments
  uint64_t event_name = 0;   // gateway.maxEventNameLength
  uint64_t packet_size = 0;  // binary attachment bytes over the bound
  uint64_t json_depth = 0;   // JSON nested too deeply
};

/// The event patterns of the contract, §5, in the order they are advertised.
const std::vector<std::string>& socket_event_patterns();

// What the metrics count beyond socket.stats (services/node_metrics.hpp). Each label is a small
// fixed enum, so counting is an array increment; the labels themselves are the *_label
// functions.

/// Why a CONNECT was refused (closed without a reply, fail closed).
enum class ConnectRefusal : uint8_t { AuthFailed, AuthUnavailable, AuthInFlight, LoggedOut };
inline constexpr size_t kConnectRefusals = 4;
const char* connect_refusal_label(ConnectRefusal refusal);  // "auth_failed", ...

/// Why a subscribe/unsubscribe was refused.
enum class SubscribeRefusal : uint8_t { Forbidden, Invalid, RoomsPerSocket, SubscribeRate };
inline constexpr size_t kSubscribeRefusals = 4;
const char* subscribe_refusal_label(SubscribeRefusal refusal);  // "forbidden", ...

/// A Socket.IO disconnect reason; reasons outside the list count as Other.
enum class DisconnectReason : uint8_t {
  TransportClose,
  PingTimeout,
  ClientNamespaceDisconnect,
  ServerNamespaceDisconnect,
  ParseError,
  TransportError,
  ServerShuttingDown,
  ForcedClose,
  SlowConsumer,
  Other,
};
inline constexpr size_t kDisconnectReasons = 10;
/// The reason as Socket.IO spells it ("transport close", ...; "other").
const char* disconnect_reason_label(DisconnectReason reason);
DisconnectReason disconnect_reason_from(std::string_view reason);

/// Connected clients by transport (index ClientTransport) and by auth ([0] anonymous,
/// [1] authenticated): the one count socket.stats and the connections gauge both read.
struct ConnectionCounts {
  size_t by_transport_auth[2][2] = {{0, 0}, {0, 0}};
};

struct SocketMetricCounters {
  uint64_t connects[2] = {0, 0};  // accepted CONNECTs: [0] anonymous, [1] authenticated
  uint64_t connects_refused[kConnectRefusals] = {};
  uint64_t disconnects[kDisconnectReasons] = {};
  uint64_t subscriptions_refused[kSubscribeRefusals] = {};
  uint64_t payloads_rejected[rules::kRejectReasons] = {};
  /// Events handled, by the index of their pattern in socket_event_patterns().
  std::vector<uint64_t> events_by_pattern;
  uint64_t auth_timeouts = 0;    // auth calls that timed out
  uint64_t auth_cache_hits = 0;  // CONNECTs answered from the auth cache
};

/// Latencies for the metrics' histograms, in seconds. The service measures only what is set,
/// so a node with metrics off reads no extra clock.
struct LatencyObservers {
  /// One remote auth call, from the call to its answer (or failure).
  std::function<void(double seconds)> auth_call;
  /// One event off the bus (Context::received set) that reached at least one client: from its
  /// read to the return of the last delivery call of its fan-out.
  std::function<void(double seconds)> emit_to_write;
};

class SocketService {
 public:
  /// Installs the connect hook and the client event handlers on `hub`, which must outlive the
  /// service.
  SocketService(Broker& broker, ClientHub& hub, const Config& config);
  SocketService(const SocketService&) = delete;
  SocketService& operator=(const SocketService&) = delete;
  /// Frees the sessions of the clients still connected (they release into this service).
  ~SocketService();

  /// The Moleculer service to add to the broker (events of §5, actions of §6).
  ServiceSchema schema();
  /// The `socket.stats` reply.
  Json stats() const;
  /// The same from connection counts already taken (a scrape takes them once for both).
  Json stats(const ConnectionCounts& connections) const;
  /// Where `socket.stats` reads `refusedOrigins`: the gateway's count of requests refused for
  /// their Origin (gateway-contract.md §2.1). Without it the key reads 0.
  void count_refused_origins(std::function<uint64_t()> count) {
    refused_origins_ = std::move(count);
  }
  /// Where `socket.stats` reads `malformed`: the gateway's count of sessions closed for a
  /// malformed packet or a protocol violation ("parse error"). Without it the key reads 0.
  void count_malformed(std::function<uint64_t()> count) { malformed_ = std::move(count); }
  /// Where `socket.stats` reads `recovery` (connection state recovery on): the gateway's kept
  /// sessions and recorded packets and its counts, as an object. Without it the key is absent.
  void count_recovery(std::function<Json()> count) { recovery_counts_ = std::move(count); }
  /// Where `socket.stats` `limits` reads the Socket.IO layer's refusals. Without it they read 0.
  void count_packet_limits(std::function<PacketLimitCounts()> count) {
    packet_limits_ = std::move(count);
  }
  /// Where `socket.stats` reads the gateway's connection-level limit counters (connections,
  /// connectionsPerAddress, handshakeRate, pollingSessions, slowConsumers, headerSize,
  /// headersTimeout, messageSize, acceptPaused): an object merged into `limits`.
  void count_connection_limits(std::function<Json()> counts) {
    connection_limits_ = std::move(counts);
  }
  ConnectionCounts connection_counts() const;
  /// The sessions of the connected clients, their tokens and ids.
  const SessionRegistry& sessions() const { return sessions_; }
  /// The counters of the metrics that socket.stats does not show.
  const SocketMetricCounters& metric_counters() const { return metrics_; }
  /// Turns the latency measurements on (metrics.enabled).
  void observe_latencies(LatencyObservers observers) { latency_ = std::move(observers); }

  /// The `jetstream` recovery store (issue 13): the events this node receives for clients are
  /// published to `history` (stored once cluster-wide) instead of delivered at once; every node
  /// then delivers them from the history, in one order, through deliver_from_history. Before
  /// schema() (peers learn it from the service's metadata); `history` outlives the service.
  void use_history(ClusterHistory* history) { history_ = history; }
  /// One event of the shared history, in stream order: to this node's clients, with its
  /// sequence as the Socket.IO offset.
  void deliver_from_history(uint64_t sequence, const HistoryEvent& event);
  /// History publishes not acknowledged yet (a drain waits for them).
  size_t history_publishes_in_flight() const { return publishes_in_flight_; }
  /// Events this node could not store in the history (delivered to its own clients without an
  /// offset instead, so live clients still get them).
  uint64_t history_publish_failures() const { return history_failures_; }

 private:
  friend const std::vector<std::string>& socket_event_patterns();
  /// One event pattern of §5 and the member that handles it (its own mapper).
  struct EventRoute {
    const char* pattern;
    void (SocketService::*handle)(const Context& ctx);
  };
  /// The patterns in the order they are advertised; each is registered as its own event.
  static const std::vector<EventRoute>& event_routes();
  struct Counters {
    uint64_t events_in = 0, events_out = 0, rejected = 0, refused = 0;
    uint64_t auth_calls = 0, auth_failures = 0;
    // Refusals by limit (socket.stats `limits`).
    uint64_t rooms_per_socket = 0, subscribe_rate = 0, auth_in_flight = 0;
  };

  void authenticate(Client& client, const Json& auth, std::function<void(ConnectDecision)> decide);
  /// A session for an accepted client (user_id nullopt: anonymous).
  std::unique_ptr<ClientSession> open_session(const std::optional<std::string>& tenant_id,
                                              const std::optional<std::string>& user_id,
                                              const std::string& token);
  /// The remote auth call of one (spaceId, token), started by the coalescer.
  void call_auth(const AuthCoalescer::Key& key,
                 std::function<void(AuthCoalescer::Decision)> finish);
  AuthCoalescer::Hooks auth_hooks();
  /// gateway.maxSubscribesPerSecond: false (and counted) when `client` is over its rate.
  bool within_subscribe_rate(ClientSession& session);
  /// This service's counters of the `limits` object of socket.stats.
  Json socket_limit_counters() const;
  void on_connected(Client& client);
  void on_disconnected(Client& client, std::string_view reason);
  void refuse_connect(ConnectRefusal refusal) {
    metrics_.connects_refused[static_cast<size_t>(refusal)]++;
  }
  void refuse_subscription(SubscribeRefusal refusal) {
    counters_.refused++;
    metrics_.subscriptions_refused[static_cast<size_t>(refusal)]++;
  }
  void reject_payload(rules::RejectReason reason) {
    counters_.rejected++;
    metrics_.payloads_rejected[static_cast<size_t>(reason)]++;
  }
  void handle_rooms(Client& client, const std::vector<std::string_view>& args, const Reply& reply,
                    bool subscribe);
  /// Which sockets an operator action reaches (AND of the given filters; unset: any).
  struct SocketSelector {
    std::optional<std::string> user_id;
    std::optional<std::string> sid;
    std::optional<std::string> in_room;
    std::optional<std::string> tenant_id;
  };
  /// Accepted clients (with a session) that match `selector`.
  static bool selected(Client& client, const SocketSelector& selector);
  /// Kept clients (connection state recovery) that match `selector` (in_room is not used).
  static bool selected(const KeptClient& kept, const SocketSelector& selector);
  /// Connection state recovery (issue 13): what a kept client remembers, who may restore it,
  /// and what an expiry tells the services.
  RecoveryHandlers recovery_handlers();
  static Json saved_identity(const ClientSession& session);
  /// socket.clients on this node.
  Json client_list(const rules::ClientsParams& params);
  /// socket.join / socket.leave on this node: `{ matched, joined, alreadyIn, skipped:
  /// { roomsPerSocket, forbidden } }` / `{ matched, left }`.
  Json join_room(const rules::RoomActionParams& params);
  Json leave_room(const rules::RoomActionParams& params);
  /// Responds with `local`, or (`cluster: true`) with `reply` of every live node's answer.
  void answer_in_scope(const ContextPtr& ctx, const rules::ClusterScope& scope, Json local,
                       const Respond& respond, std::function<Json(NodeAnswers)> reply);
  /// The cluster reply whose total is the sum of the nodes' counts.
  static Json summed_reply(NodeAnswers answers);
  void on_metadata(const Context& ctx);
  void on_notification_users(const Context& ctx);
  void on_broadcast_socket_emit(const Context& ctx);
  void on_socket_emit(const Context& ctx);
  void on_object_record_event(const Context& ctx);
  void on_logout(const Context& ctx);
  void apply(const Context& ctx, const rules::EventOutcome& outcome);
  void fan_out_to_other_gateways(const Context& ctx);
  void logout(const std::string& token);
  size_t deliver(const std::string& event, const std::string& args_json,
                 const std::vector<std::string>* rooms);
  /// With a history: the delivery of the event being handled, published under a cluster-wide
  /// id (the same on every node that receives a copy of a broadcast).
  void publish_to_history(const Context& ctx, const std::string& event,
                          const std::string& args_json, const std::vector<std::string>* rooms);
  /// Publishes `entry` to the history; `on_failure` runs (loop thread) if it is not stored.
  void publish_or_else(const HistoryEvent& entry, std::function<void()> on_failure);
  void emit_through_history(const ContextPtr& ctx, const rules::EmitParams& params,
                            std::vector<std::string> rooms, const Respond& respond);
  /// A publish failed: this node's clients get the delivery now (no offset), and for an event
  /// only this node received, the gateways on the history get it forwarded to do the same.
  void deliver_without_history(const std::string& id, const std::string& event,
                               const std::string& args_json,
                               const std::optional<std::vector<std::string>>& rooms);

  Broker& broker_;
  ClientHub& hub_;
  Config config_;
  /// The connected clients' sessions (each owned by its client; ~SocketService frees those
  /// still connected, as they release into this registry).
  SessionRegistry sessions_;
  rules::AuthCache auth_cache_;
  AuthCoalescer auth_calls_;
  Counters counters_;
  SocketMetricCounters metrics_;
  LatencyObservers latency_;
  /// Recipients of the event being handled (summed by deliver(), read by the event wrapper).
  size_t event_recipients_ = 0;
  ClusterHistory* history_ = nullptr;
  /// The event being handled when its deliveries go to the history (null otherwise, e.g. in
  /// the socket.emit action, whose deliveries stay on this node), and their count so far.
  const Context* history_event_ = nullptr;
  size_t history_deliveries_ = 0;
  size_t publishes_in_flight_ = 0;
  uint64_t history_failures_ = 0;
  /// Ids of deliveries made without the history after a failed publish (the last 10,000): a
  /// copy another node stored is then not delivered here a second time.
  moleculer::RecentIds delivered_without_history_{10000};
  /// socket.emit calls waiting for their event to come back from the history, by event id.
  static constexpr size_t kMaxActionWaiters = 10000;
  std::unordered_map<std::string, std::vector<std::function<void(size_t)>>> action_waiters_;
  /// The recipients of the last socket.emit events delivered here.
  RecentValues<size_t> action_deliveries_{1000};
  /// When the events this node published were read off the bus (Context::received, when
  /// stamped): the emit-to-write latency of their delivery from the history includes the trip.
  RecentValues<std::chrono::steady_clock::time_point> published_received_{10000};
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::function<uint64_t()> refused_origins_;
  std::function<uint64_t()> malformed_;
  std::function<PacketLimitCounts()> packet_limits_;
  std::function<Json()> recovery_counts_;
  std::function<Json()> connection_limits_;
};

}  // namespace steedos::services
