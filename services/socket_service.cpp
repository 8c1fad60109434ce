#include "services/socket_service.hpp"

#include <ctime>

#include "common/log.hpp"
#include "common/token_bucket.hpp"
#include "services/cluster_calls.hpp"
#include "services/steedos_action_params.hpp"
#include "services/steedos_events.hpp"
#include "services/steedos_rooms.hpp"

namespace steedos::services {

namespace {

using Args = std::vector<std::string_view>;

constexpr const char* kGroup = "socket";  // fixed by the contract, whatever the service name

std::string iso_now() {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[40];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  char with_ms[48];
  std::snprintf(with_ms, sizeof with_ms, "%s.%03dZ", text, static_cast<int>(ms % 1000));
  return with_ms;
}

// The first argument of a client event, parsed; null when absent or not JSON.
Json first_argument(const Args& args) {
  if (args.empty()) return nullptr;
  Json value = Json::parse(args[0].begin(), args[0].end(), nullptr, false);
  return value.is_discarded() ? Json(nullptr) : value;
}

void answer(const Reply& reply, const Json& value) {
  if (reply) reply(dump_json(value));
}

ConnectRefusal connect_refusal(const rules::Failed& failed) {
  switch (failed.kind) {
    case rules::Failed::Kind::InvalidReply:
      return ConnectRefusal::AuthFailed;
    case rules::Failed::Kind::LoggedOut:
      return ConnectRefusal::LoggedOut;
    case rules::Failed::Kind::Unavailable:
    case rules::Failed::Kind::Timeout:
      break;
  }
  return ConnectRefusal::AuthUnavailable;
}

Json nullable(std::optional<std::string_view> value) {
  return value ? Json(*value) : Json(nullptr);
}

}  // namespace

// §5: each pattern with the rule that maps its payload, in the order they are advertised. A
// handler only ever receives events of its own pattern, so nothing looks at the name again to
// choose a rule.
const std::vector<SocketService::EventRoute>& SocketService::event_routes() {
  static const std::vector<EventRoute> routes = {
      {"$metadata.*", &SocketService::on_metadata},
      {"$broadcast.$notification.users", &SocketService::on_notification_users},
      {"$broadcast.socket.emit", &SocketService::on_broadcast_socket_emit},
      {"$socket.emit", &SocketService::on_socket_emit},
      {"@objectRecordEvent.*.*", &SocketService::on_object_record_event},
      {"$user.logout", &SocketService::on_logout},
      {"$broadcast.$user.logout", &SocketService::on_logout},
  };
  return routes;
}

const std::vector<std::string>& socket_event_patterns() {
  static const std::vector<std::string> patterns = [] {
    std::vector<std::string> names;
    for (const auto& route : SocketService::event_routes()) names.emplace_back(route.pattern);
    return names;
  }();
  return patterns;
}

const char* connect_refusal_label(ConnectRefusal refusal) {
  switch (refusal) {
    case ConnectRefusal::AuthFailed:
      return "auth_failed";
    case ConnectRefusal::AuthUnavailable:
      return "auth_unavailable";
    case ConnectRefusal::AuthInFlight:
      return "auth_in_flight";
    case ConnectRefusal::LoggedOut:
      return "logged_out";
  }
  return "auth_failed";
}

const char* subscribe_refusal_label(SubscribeRefusal refusal) {
  switch (refusal) {
    case SubscribeRefusal::Forbidden:
      return "forbidden";
    case SubscribeRefusal::Invalid:
      return "invalid";
    case SubscribeRefusal::RoomsPerSocket:
      return "rooms_per_socket";
    case SubscribeRefusal::SubscribeRate:
      return "subscribe_rate";
  }
  return "invalid";
}

namespace {

// The labels of DisconnectReason, in its order; the last is the catch-all.
constexpr const char* kDisconnectLabels[kDisconnectReasons] = {"transport close",
                                                               "ping timeout",
                                                               "client namespace disconnect",
                                                               "server namespace disconnect",
                                                               "parse error",
                                                               "transport error",
                                                               "server shutting down",
                                                               "forced close",
                                                               "slow consumer",
                                                               "other"};

}  // namespace

const char* disconnect_reason_label(DisconnectReason reason) {
  return kDisconnectLabels[static_cast<size_t>(reason)];
}

// Once per disconnect, not per delivery: a short linear search is fine.
DisconnectReason disconnect_reason_from(std::string_view reason) {
  for (size_t i = 0; i + 1 < kDisconnectReasons; ++i) {
    if (reason == kDisconnectLabels[i]) return static_cast<DisconnectReason>(i);
  }
  // The server's own transport close after a server disconnect of every namespace.
  if (reason == "forced server close") return DisconnectReason::ForcedClose;
  return DisconnectReason::Other;
}

SocketService::SocketService(Broker& broker, ClientHub& hub, const Config& config)
    : broker_(broker),
      hub_(hub),
      config_(config),
      auth_cache_(config.auth.cache_ttl_s),
      auth_calls_(
          config.auth.max_in_flight,
          [this](const AuthCoalescer::Key& key,
                 std::function<void(AuthCoalescer::Decision)> finish) {
            call_auth(key, std::move(finish));
          },
          auth_hooks()) {
  metrics_.events_by_pattern.assign(event_routes().size(), 0);
  ClientHandlers handlers;
  handlers.connect = [this](Client& client, const Json& auth,
                            std::function<void(ConnectDecision)> decide) {
    authenticate(client, auth, std::move(decide));
  };
  handlers.connected = [this](Client& client) { on_connected(client); };
  handlers.disconnected = [this](Client& client, std::string_view reason) {
    on_disconnected(client, reason);
  };
  handlers.events["subscribe"] = [this](Client& client, const Args& args, const Reply& reply) {
    handle_rooms(client, args, reply, true);
  };
  handlers.events["unsubscribe"] = [this](Client& client, const Args& args, const Reply& reply) {
    handle_rooms(client, args, reply, false);
  };
  handlers.events["ping"] = [](Client& client, const Args&, const Reply&) {
    std::string now = dump_json(Json(iso_now()));
    client.emit("pong", Args{now});
  };
  hub_.set_handlers(std::move(handlers));
  if (config_.gateway.recovery.enabled) hub_.set_recovery_handlers(recovery_handlers());
}

// What a kept client remembers of its session: who it was and a fingerprint of its token, never
// the token itself.
Json SocketService::saved_identity(const ClientSession& session) {
  return Json{{"tenantId", nullable(session.tenant_id())},
              {"userId", nullable(session.user_id())},
              {"token", session.token_fingerprint()}};
}

RecoveryHandlers SocketService::recovery_handlers() {
  RecoveryHandlers handlers;
  handlers.save = [](Client& client) {
    const auto* session = client.session();
    return session ? saved_identity(*session) : Json(nullptr);
  };
  // The connect hook has just authenticated the client again (the auth cache answers when it
  // can): the restore goes on only as the same login, tenant and user. A logout or an operator
  // disconnect while it was away dropped the kept client already (logout(), socket.disconnect).
  handlers.allow = [](Client& client, const KeptClient& kept) {
    const auto* session = client.session();
    const bool same = session && kept.saved == saved_identity(*session);
    if (!same) {
      log_with(component_logger("socket"), spdlog::level::info, {{"socket", kept.id}},
               "recovery refused: the credentials now name another login");
    }
    return same;
  };
  handlers.expired = [this](const KeptClient& kept) {
    const Json* user = kept.saved.is_object() ? &kept.saved["userId"] : nullptr;
    if (!user || !user->is_string()) return;  // an anonymous client: nobody to tell
    // So that a service can fall back (a "reload" notification, for example).
    broker_.emit("$socket.recovery.expired",
                 Json{{"tenantId", kept.saved["tenantId"]}, {"userId", *user}, {"sid", kept.id}});
  };
  return handlers;
}

SocketService::~SocketService() {
  *alive_ = false;  // history acks arriving later find nothing to do
  // The hub outlives the service; its sockets may too (the node destroys the gateway last).
  hub_.for_each_client([](Client& client) { client.set_session(nullptr); });
}

// The session kept per socket (§2.7: user id, anonymous, tenant; `system` is always false):
// every rule, `socket.clients` and the metrics read only that. The auth reply itself is not kept
// per socket: nothing reads it, it may hold the token, and it was the largest part of an idle
// client's memory (720 of 3,500 bytes, bench/results/memprofile-2026-12-05.md).
std::unique_ptr<ClientSession> SocketService::open_session(
    const std::optional<std::string>& tenant_id, const std::optional<std::string>& user_id,
    const std::string& token) {
  // Full until the first subscribe or unsubscribe, however late (the bucket fills from the
  // clock's epoch), so opening one reads no clock.
  const double rate = config_.gateway.max_subscribes_per_second;
  return sessions_.open(tenant_id, user_id, token,
                        TokenBucket(rate, rate, TokenBucket::Clock::time_point{}));
}

// §2: credentials from the cookie, the CONNECT payload or the Authorization header; a remote
// auth call unless cached; anonymous without (valid) credentials; fail closed on failures.
void SocketService::authenticate(Client& client, const Json& auth,
                                 std::function<void(ConnectDecision)> decide) {
  rules::Headers headers;
  for (auto name : rules::kHeadersRead) {
    if (auto value = client.header(name)) headers.emplace(name, *value);
  }
  auto credentials = rules::find_credentials(headers, auth);
  auto tenant = rules::session_tenant(headers, credentials);
  if (!credentials) {
    decide(ConnectDecision::accepted(open_session(tenant, std::nullopt, std::string())));
    return;
  }
  auto now = std::chrono::steady_clock::now();
  if (auto cached = auth_cache_.get(credentials->space_id, credentials->token, now)) {
    metrics_.auth_cache_hits++;
    decide(ConnectDecision::accepted(open_session(tenant, cached->user_id, credentials->token)));
    return;
  }

  // Every socket of one (spaceId, token) waits for the same call (a reconnect storm costs the
  // auth service one call per user, not one per socket).
  auto admission = auth_calls_.request(
      {credentials->space_id, credentials->token},
      // The session is made once decided: until then only strings are held, never the client.
      [this, tenant, token = credentials->token, decide](const AuthCoalescer::Decision& decision) {
        if (auto* user = std::get_if<rules::Authenticated>(&decision)) {
          decide(ConnectDecision::accepted(open_session(tenant, user->user_id, token)));
        } else if (std::get_if<rules::Anonymous>(&decision)) {
          decide(ConnectDecision::accepted(open_session(tenant, std::nullopt, token)));
        } else {
          counters_.auth_failures++;
          refuse_connect(connect_refusal(std::get<rules::Failed>(decision)));
          // Only logged (with the sid) by the gateway: the client just sees the close.
          const auto& failed = std::get<rules::Failed>(decision);
          decide(ConnectDecision::close_transport("auth service failed: " + failed.reason));
        }
      });
  if (admission == AuthCoalescer::Admission::Refused) {
    // Fail closed and retryable, as when the auth service fails: the client reconnects with
    // back-off. Logged once per episode by the coalescer's hooks, not once per socket.
    counters_.auth_in_flight++;
    refuse_connect(ConnectRefusal::AuthInFlight);
    decide(ConnectDecision::close_transport("auth.maxInFlight reached"));
  }
}

void SocketService::call_auth(const AuthCoalescer::Key& key,
                              std::function<void(AuthCoalescer::Decision)> finish) {
  counters_.auth_calls++;
  rules::Credentials credentials;
  credentials.space_id = key.first;
  credentials.token = key.second;
  CallOptions options;
  options.timeout_ms = config_.auth.timeout_ms;
  Json params = Json{{"authorization", credentials.authorization()}};
  // The clock is read only when the latency histogram is on (metrics.enabled).
  const auto started = latency_.auth_call ? std::chrono::steady_clock::now()
                                          : std::chrono::steady_clock::time_point{};
  broker_.call(
      config_.auth.action, std::move(params), options,
      [this, started, space_id = key.first, finish = std::move(finish)](Outcome outcome) {
        if (latency_.auth_call) {
          latency_.auth_call(
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        }
        if (!outcome.ok && outcome.error.name == "RequestTimeoutError") {
          metrics_.auth_timeouts++;
        }
        Json data = outcome.ok && outcome.has_data ? outcome.data : Json(nullptr);
        finish(rules::classify_auth_reply(outcome.ok, data, outcome.ok ? nullptr : &outcome.error,
                                          space_id));
      });
}

AuthCoalescer::Hooks SocketService::auth_hooks() {
  AuthCoalescer::Hooks hooks;
  // Once per call, however many sockets waited for it.
  hooks.on_result = [this](const AuthCoalescer::Key& key, const AuthCoalescer::Decision& decision) {
    if (auto* user = std::get_if<rules::Authenticated>(&decision)) {
      auth_cache_.put(key.first, key.second, *user, std::chrono::steady_clock::now());
    } else if (auto* failed = std::get_if<rules::Failed>(&decision)) {
      log_with(component_logger("socket"), spdlog::level::warn,
               {{"spaceId", key.first}, {"reason", failed->reason}},
               "authentication failed, closing the connection(s)");
    }
  };
  hooks.on_refusing = [](size_t max_in_flight) {
    component_logger("socket")->warn(
        "auth.maxInFlight: {} auth calls in flight; new connections with credentials are closed "
        "(the clients retry) until half of them have finished",
        max_in_flight);
  };
  hooks.on_recovered = [](uint64_t refused) {
    component_logger("socket")->info(
        "auth.maxInFlight: auth calls in flight back to half the limit; {} connection(s) were "
        "closed meanwhile",
        refused);
  };
  return hooks;
}

void SocketService::on_connected(Client& client) {
  auto* session = client.session();
  metrics_.connects[session && !session->anonymous() ? 1 : 0]++;
  // From now on a logout of its token finds it (the client owns the id and the session both).
  if (session) sessions_.connected(*session, client.id());
  client.emit("connection-init");
}

void SocketService::on_disconnected(Client& client, std::string_view reason) {
  metrics_.disconnects[static_cast<size_t>(disconnect_reason_from(reason))]++;
  // Freed now, not with the socket: its token stops counting as this node's at once.
  client.set_session(nullptr);
}

// §3: subscribe / unsubscribe with validation and isolation; refusals are answered, counted and
// logged at debug level, never a disconnect.
void SocketService::handle_rooms(Client& client, const Args& args, const Reply& reply,
                                 bool subscribe) {
  auto* session = client.session();
  if (!session) return;
  if (!within_subscribe_rate(*session)) {
    refuse_subscription(SubscribeRefusal::SubscribeRate);
    log_with(component_logger("socket"), spdlog::level::debug,
             {{"socket", client.id()}, {"reason", "gateway.maxSubscribesPerSecond"}},
             "{} refused: rate limited", subscribe ? "subscribe" : "unsubscribe");
    answer(reply, Json{{"error", "rate limited: more than " +
                                     std::to_string(config_.gateway.max_subscribes_per_second) +
                                     " subscribe/unsubscribe requests per second"}});
    return;
  }
  const auto view = session->view();
  auto request = rules::resolve_rooms(first_argument(args), view, config_.gateway);
  bool rooms_refused = false;
  if (request.ok() && subscribe) {
    request.error =
        rules::max_rooms_check(client.rooms(), request.rooms, config_.gateway.max_rooms_per_socket);
    if (!request.ok()) {
      counters_.rooms_per_socket++;
      rooms_refused = true;
    }
  }
  if (!request.ok()) {
    refuse_subscription(rooms_refused       ? SubscribeRefusal::RoomsPerSocket
                        : request.forbidden ? SubscribeRefusal::Forbidden
                                            : SubscribeRefusal::Invalid);
    log_with(component_logger("socket"), spdlog::level::debug,
             {{"socket", client.id()}, {"reason", request.error}}, "{} refused",
             subscribe ? "subscribe" : "unsubscribe");
    answer(reply, Json{{"error", request.error}});
    return;
  }
  for (const auto& room : request.rooms) {
    if (subscribe) {
      client.join(room);
    } else {
      client.leave(room);
    }
  }
  answer(reply, Json{{"rooms", request.rooms}});
  if (subscribe) {
    if (auto event = rules::subscribe_event(request, view)) {
      broker_.emit(event->first, std::move(event->second));
    }
  }
}

bool SocketService::within_subscribe_rate(ClientSession& session) {
  if (session.room_requests().try_take(std::chrono::steady_clock::now())) return true;
  counters_.subscribe_rate++;
  return false;
}

size_t SocketService::deliver(const std::string& event, const std::string& args_json,
                              const std::vector<std::string>* rooms) {
  if (history_event_ != nullptr) {
    // Delivered later, by every node, from the history (deliver_from_history).
    publish_to_history(*history_event_, event, args_json, rooms);
    return 0;
  }
  // Encoded once by the hub; the same bytes go to every recipient.
  size_t recipients =
      rooms ? hub_.deliver_to(*rooms, event, args_json) : hub_.deliver_all(event, args_json);
  counters_.events_out += recipients;
  event_recipients_ += recipients;
  return recipients;
}

namespace {

/// The cluster-wide id of an event's delivery: a broadcast reaches every gateway, each with its
/// own copy and ctx id, but one request id and sender; an emit reaches one node only.
std::string history_id(const Context& ctx, size_t delivery) {
  std::string id = ctx.event_type == "broadcast" && !ctx.request_id.empty()
                       ? event_id_of_broadcast(ctx.node_id, ctx.request_id, ctx.name,
                                               dump_json(ctx.params), dump_json(ctx.meta))
                       : event_id_of_forward(ctx.id);
  return id + ":" + std::to_string(delivery);
}

/// The meta flag of an event forwarded because its history publish failed: the receivers
/// deliver it to their clients at once, without the history.
constexpr const char* kWithoutHistoryMeta = "$withoutHistory";

}  // namespace

void SocketService::publish_to_history(const Context& ctx, const std::string& event,
                                       const std::string& args_json,
                                       const std::vector<std::string>* rooms) {
  HistoryEvent entry;
  entry.id = history_id(ctx, history_deliveries_++);
  if (latency_.emit_to_write && ctx.received != std::chrono::steady_clock::time_point{}) {
    published_received_.add(entry.id, ctx.received);
  }
  entry.name = event;
  entry.args_json = "[" + args_json + "]";
  entry.all = rooms == nullptr;
  if (rooms) entry.rooms = *rooms;
  // What a failure needs; an emit only this node received is forwarded to the other gateways.
  std::optional<std::vector<std::string>> target;
  if (rooms) target = *rooms;
  std::optional<Context> forward;
  if (ctx.event_type == "emit") forward = ctx;
  auto on_failure = [this, id = entry.id, event, args_json, target = std::move(target),
                     forward = std::move(forward)] {
    deliver_without_history(id, event, args_json, target);
    if (!forward) return;
    EmitOptions options;
    options.groups = {kGroup};
    options.meta = forward->meta;
    options.meta[kWithoutHistoryMeta] = true;
    options.remote_only = true;
    options.nodes = peers_of_service(broker_.registry(), config_.service_name,
                                     config_.gateway.recovery.jetstream_stream)
                        .on_history;
    if (!options.nodes.empty())
      broker_.broadcast(forward->name, forward->params, std::move(options));
  };
  publish_or_else(entry, std::move(on_failure));
}

void SocketService::publish_or_else(const HistoryEvent& entry, std::function<void()> on_failure) {
  ++publishes_in_flight_;
  auto status = history_->publish(
      entry, [this, alive = alive_, on_failure](transport::JsResult<transport::JsPubAck> ack) {
        if (!*alive) return;
        --publishes_in_flight_;
        if (!ack.ok()) on_failure();
      });
  if (!status.ok()) {
    --publishes_in_flight_;
    on_failure();
  }
}

// socket.emit with the history: the event is published once under an id every node called for
// the same request computes alike (cluster: true calls each node with the operator's request
// id), so it is stored once and every node delivers it once; each node answers with its own
// recipients once its consumer has delivered it.
void SocketService::emit_through_history(const ContextPtr& ctx, const rules::EmitParams& params,
                                         std::vector<std::string> rooms, const Respond& respond) {
  const std::string data = dump_json(params.data);
  const std::string request = ctx->request_id.empty() ? ctx->id : ctx->request_id;
  HistoryEvent entry;
  entry.id = "a:" + event_id_of_broadcast(config_.service_name, request, params.event, data,
                                          params.room.value_or(""));
  entry.name = params.event;
  entry.args_json = "[" + data + "]";
  entry.all = !params.room;
  entry.rooms = rooms;
  auto answer_with = [this, ctx, scope = params.scope, respond](size_t delivered) {
    answer_in_scope(ctx, scope, Json{{"delivered", delivered}}, respond, summed_reply);
  };
  // Delivered here already (the copy of another node called for the same request).
  if (auto done = action_deliveries_.find(entry.id); done != action_deliveries_.end()) {
    answer_with(done->second);
    return;
  }
  auto on_failure = [this, alive = alive_, id = entry.id, event = params.event, data,
                     room = params.room, answer_with] {
    if (!*alive) return;
    action_waiters_.erase(id);
    std::optional<std::vector<std::string>> target;
    if (room) target = std::vector<std::string>{*room};
    const uint64_t before = counters_.events_out;
    deliver_without_history(id, event, data, target);
    answer_with(static_cast<size_t>(counters_.events_out - before));
  };
  if (action_waiters_.size() >= kMaxActionWaiters) {
    on_failure();
    return;
  }
  action_waiters_[entry.id].push_back(answer_with);
  publish_or_else(entry, std::move(on_failure));
}

void SocketService::deliver_without_history(const std::string& id, const std::string& event,
                                            const std::string& args_json,
                                            const std::optional<std::vector<std::string>>& rooms) {
  if (history_failures_++ % 1000 == 0) {
    log_with(component_logger("socket"), spdlog::level::warn,
             {{"event", event}, {"failures", history_failures_}},
             "event history unavailable: delivered to this node's clients without an offset "
             "(not recoverable)");
  }
  delivered_without_history_.insert(id);
  const size_t recipients =
      rooms ? hub_.deliver_to(*rooms, event, args_json) : hub_.deliver_all(event, args_json);
  counters_.events_out += recipients;
}

void SocketService::deliver_from_history(uint64_t sequence, const HistoryEvent& event) {
  if (delivered_without_history_.contains(event.id)) return;
  const size_t recipients =
      hub_.deliver_at(event.all ? nullptr : &event.rooms, event.except_rooms, event.name,
                      history_event_args(event), std::to_string(sequence));
  counters_.events_out += recipients;
  if (auto received = published_received_.find(event.id);
      recipients > 0 && received != published_received_.end()) {
    hub_.after_writes([this, at = received->second] {
      latency_.emit_to_write(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - at).count());
    });
  }
  if (event.id.rfind("a:", 0) != 0) return;
  // A socket.emit call: its callers here learn the recipients; a call that arrives later for the
  // same request (another node published first) finds them.
  action_deliveries_.add(event.id, recipients);
  auto waiting = action_waiters_.find(event.id);
  if (waiting == action_waiters_.end()) return;
  auto answers = std::move(waiting->second);
  action_waiters_.erase(waiting);
  for (auto& answer : answers) answer(recipients);
}

// §7: Moleculer balances an emit to one node of the `socket` group, but every gateway node has
// clients that must see it. The receiving node forwards it to the others as a broadcast to the
// group that skips itself; a broadcast (from a producer or forwarded) is never forwarded again,
// so each client gets each event once.
void SocketService::fan_out_to_other_gateways(const Context& ctx) {
  if (ctx.event_type != "emit") return;
  // Gateways on the same history get the event from it: only the others need a forward.
  const ServicePeers peers =
      peers_of_service(broker_.registry(), config_.service_name,
                       history_ ? config_.gateway.recovery.jetstream_stream : std::string());
  EmitOptions options;
  options.groups = {kGroup};
  options.meta = ctx.meta;
  options.remote_only = true;
  // One publish for every gateway of this version, whatever their number; they forward nothing
  // further (what they receive is a broadcast).
  if (peers.on_shared_subject > 0)
    broker_.broadcast_on_shared_subject(ctx.name, ctx.params, options);
  if (peers.targeted.empty()) return;
  options.nodes = peers.targeted;  // gateways of an older version: one EVENT each
  broker_.broadcast(ctx.name, ctx.params, std::move(options));
}

void SocketService::on_metadata(const Context& ctx) {
  apply(ctx, rules::map_metadata(ctx.name, ctx.params, config_.gateway.metadata_types));
}

void SocketService::on_notification_users(const Context& ctx) {
  apply(ctx, rules::map_notification_users(ctx.params));
}

void SocketService::on_broadcast_socket_emit(const Context& ctx) {
  apply(ctx, rules::map_socket_emit(ctx.params, true));
}

void SocketService::on_socket_emit(const Context& ctx) {
  apply(ctx, rules::map_socket_emit(ctx.params, false));
}

void SocketService::on_object_record_event(const Context& ctx) {
  apply(ctx, rules::map_object_record_event(ctx.name, ctx.params));
}

void SocketService::on_logout(const Context& ctx) {
  if (auto token = rules::map_logout(ctx.params)) {
    logout(*token);
  } else {
    reject_payload(rules::RejectReason::MissingField);
    log_with(component_logger("socket"), spdlog::level::warn,
             {{"event", ctx.name}, {"nodeID", ctx.node_id}, {"reason", "no authToken"}},
             "event rejected");
  }
}

// Sends what a mapper decided; a rejection is logged with its reason and counted.
void SocketService::apply(const Context& ctx, const rules::EventOutcome& outcome) {
  if (auto* rejected = std::get_if<rules::Rejected>(&outcome)) {
    reject_payload(rejected->kind);
    log_with(component_logger("socket"), spdlog::level::warn,
             {{"event", ctx.name}, {"nodeID", ctx.node_id}, {"reason", rejected->reason}},
             "event rejected");
    return;
  }
  if (auto* deliver_all = std::get_if<rules::Deliver>(&outcome)) {
    for (const auto& delivery : deliver_all->deliveries) {
      const auto* rooms = std::get_if<rules::RoomsTarget>(&delivery.target);
      deliver(delivery.event, delivery.args_json, rooms ? &rooms->rooms : nullptr);
    }
  }
}

// §2.6: a logout drops the token's cache entries and disconnects its sockets on this node.
void SocketService::logout(const std::string& token) {
  size_t dropped = auth_cache_.drop_token(token);
  // A call in flight for the token may answer with the session just revoked: its waiters are
  // closed now (they reconnect and ask again) and its result is not cached.
  size_t abandoned = auth_calls_.abandon_token(
      token, rules::Failed{"logged out while authenticating", rules::Failed::Kind::LoggedOut});
  // The token's own sockets only: the others are not visited.
  const auto ids = sessions_.clients_of_token(token);
  hub_.disconnect(ids);
  // Kept clients of the token (away when it logged out) can never be restored.
  // The line is written once they are gone (a cluster store scans every node's records first).
  const std::string fingerprint = token_fingerprint(token);
  hub_.drop_kept(
      [fingerprint](const KeptClient& client) {
        return client.saved.is_object() && client.saved.value("token", "") == fingerprint;
      },
      [dropped, closed = ids.size(), abandoned](size_t kept) {
        component_logger("socket")->info(
            "logout: {} cached session(s) dropped, {} socket(s) closed, {} kept for recovery "
            "dropped, {} auth call(s) abandoned",
            dropped, closed, kept, abandoned);
      });
}

ConnectionCounts SocketService::connection_counts() const {
  ConnectionCounts counts;
  hub_.for_each_client([&](Client& client) {
    const auto* session = client.session();
    const bool authenticated = session && !session->anonymous();
    counts.by_transport_auth[static_cast<size_t>(client.transport())][authenticated ? 1 : 0]++;
  });
  return counts;
}

Json SocketService::stats() const {
  return stats(connection_counts());
}

Json SocketService::stats(const ConnectionCounts& connections) const {
  const auto& counts = connections.by_transport_auth;
  const size_t polling = counts[0][0] + counts[0][1];
  const size_t websocket = counts[1][0] + counts[1][1];
  const size_t anonymous = counts[0][0] + counts[1][0];
  const size_t total = polling + websocket;
  auto uptime =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_)
          .count();
  // Refusals by limit (issue 9): the Socket.IO layer's and the service's own, then the
  // gateway's connection-level ones as the node's wiring reports them.
  Json limits = socket_limit_counters();
  if (connection_limits_) limits.update(connection_limits_());
  Json stats{{"nodeID", broker_.node_id()},
             {"connections",
              {{"total", total},
               {"anonymous", anonymous},
               {"authenticated", total - anonymous},
               {"byTransport", {{"polling", polling}, {"websocket", websocket}}}}},
             {"rooms", hub_.room_count()},
             {"events", {{"in", counters_.events_in}, {"out", counters_.events_out}}},
             {"rejected", counters_.rejected},
             {"refused", counters_.refused},
             {"refusedOrigins", refused_origins_ ? refused_origins_() : 0},
             {"malformed", malformed_ ? malformed_() : 0},
             {"auth", {{"calls", counters_.auth_calls}, {"failures", counters_.auth_failures}}},
             {"limits", std::move(limits)},
             {"uptime", uptime}};
  if (recovery_counts_) stats["recovery"] = recovery_counts_();
  return stats;
}

// Refusals by limit since start. Socket.IO packets (closed as "parse error", or dropped for the
// event name) and the service's own limits; each key is the limit's name in socket.stats.
Json SocketService::socket_limit_counters() const {
  const PacketLimitCounts packets = packet_limits_ ? packet_limits_() : PacketLimitCounts{};
  return Json{{"attachments", packets.attachments},
              {"eventName", packets.event_name},
              {"packetSize", packets.packet_size},
              {"jsonDepth", packets.json_depth},
              {"busJsonDepth", broker_.counters().too_deep_packets},
              {"roomsPerSocket", counters_.rooms_per_socket},
              {"subscribeRate", counters_.subscribe_rate},
              {"authInFlight", counters_.auth_in_flight}};
}

bool SocketService::selected(const KeptClient& kept, const SocketSelector& selector) {
  if (!kept.saved.is_object()) return false;
  auto field = [&](const char* name) {
    const auto it = kept.saved.find(name);
    return it != kept.saved.end() && it->is_string() ? std::optional<std::string>(*it)
                                                     : std::nullopt;
  };
  if (selector.sid && kept.id != *selector.sid) return false;
  if (selector.user_id && field("userId") != selector.user_id) return false;
  if (selector.tenant_id && field("tenantId") != selector.tenant_id) return false;
  return true;
}

bool SocketService::selected(Client& client, const SocketSelector& selector) {
  const auto* session = client.session();
  if (!session) return false;  // not (or no longer) accepted: no operator action reaches it
  if (selector.sid && client.id() != *selector.sid) return false;
  if (selector.user_id && session->user_id() != selector.user_id) return false;
  if (selector.tenant_id && session->tenant_id() != selector.tenant_id) return false;
  if (selector.in_room && !client.in_room(*selector.in_room)) return false;
  return true;
}

Json SocketService::client_list(const rules::ClientsParams& params) {
  Json list = Json::array();
  hub_.for_each_client([&](Client& client) {
    if (!selected(client,
                  SocketSelector{params.user_id, std::nullopt, params.room, std::nullopt})) {
      return;
    }
    const auto* session = client.session();
    list.push_back(Json{
        {"id", client.id()},
        {"userId", nullable(session->user_id())},
        {"tenantId", nullable(session->tenant_id())},
        {"anonymous", session->anonymous()},
        {"transport", client.transport() == ClientTransport::Polling ? "polling" : "websocket"},
        {"rooms", client.rooms()}});
  });
  return list;
}

// Socket.IO's socketsJoin on this node, with the isolation and the room limit a client's own
// subscribe gets: a socket outside the room's tenant (or barred from it) and a socket at
// gateway.maxRoomsPerSocket are skipped and counted, never half-joined.
Json SocketService::join_room(const rules::RoomActionParams& params) {
  const SocketSelector selector{params.user_id, params.sid, params.in_room, params.tenant_id};
  const std::vector<std::string> rooms{params.room};
  size_t matched = 0, joined = 0, already_in = 0, at_limit = 0, forbidden = 0;
  hub_.for_each_client([&](Client& client) {
    if (!selected(client, selector)) return;
    matched++;
    if (client.in_room(params.room)) {
      already_in++;
      return;
    }
    if (!rules::may_join_room(params.room, client.session()->view(), config_.gateway).empty()) {
      forbidden++;
      return;
    }
    if (!rules::max_rooms_check(client.rooms(), rooms, config_.gateway.max_rooms_per_socket)
             .empty()) {
      at_limit++;
      counters_.rooms_per_socket++;
      return;
    }
    client.join(params.room);
    joined++;
  });
  component_logger("socket")->info(
      "socket.join '{}': {} socket(s) matched, {} joined, {} already in, {} skipped at "
      "gateway.maxRoomsPerSocket, {} skipped as forbidden",
      params.room, matched, joined, already_in, at_limit, forbidden);
  return Json{{"matched", matched},
              {"joined", joined},
              {"alreadyIn", already_in},
              {"skipped", {{"roomsPerSocket", at_limit}, {"forbidden", forbidden}}}};
}

// Socket.IO's socketsLeave on this node.
Json SocketService::leave_room(const rules::RoomActionParams& params) {
  const SocketSelector selector{params.user_id, params.sid, params.in_room, params.tenant_id};
  size_t matched = 0, left = 0;
  hub_.for_each_client([&](Client& client) {
    if (!selected(client, selector)) return;
    matched++;
    if (!client.in_room(params.room)) return;
    client.leave(params.room);
    left++;
  });
  component_logger("socket")->info("socket.leave '{}': {} socket(s) matched, {} left", params.room,
                                   matched, left);
  return Json{{"matched", matched}, {"left", left}};
}

// This node's answer, or with `cluster: true` every live node's (issue 12): the same action
// without `cluster` asked of each other node, so no node fans out again.
void SocketService::answer_in_scope(const ContextPtr& ctx, const rules::ClusterScope& scope,
                                    Json local, const Respond& respond,
                                    std::function<Json(NodeAnswers)> reply) {
  if (!scope.cluster) {
    respond(Outcome::success(std::move(local)));
    return;
  }
  Json params = ctx->params.is_object() ? ctx->params : Json::object();
  params.erase("cluster");
  params.erase("timeout");
  ask_every_node(broker_, ctx->name, params, std::move(local), scope.timeout_ms, ctx,
                 [respond, reply = std::move(reply)](NodeAnswers answers) {
                   respond(Outcome::success(reply(std::move(answers))));
                 });
}

Json SocketService::summed_reply(NodeAnswers answers) {
  Json total = sum_counts(answers.nodes);
  return cluster_reply(std::move(answers), std::move(total));
}

ServiceSchema SocketService::schema() {
  ServiceSchema service;
  service.name = config_.service_name;
  // The gateways of this version hear each other's forwarded events on one shared subject.
  service.metadata = Json{{moleculer::kSharedEventSubjectKey, true}};
  if (history_) service.metadata[kHistoryStreamKey] = config_.gateway.recovery.jetstream_stream;
  const auto& routes = event_routes();
  for (size_t index = 0; index < routes.size(); ++index) {
    service.events.push_back(EventSchema{
        routes[index].pattern, kGroup,
        [this, index, handle = routes[index].handle](ContextPtr ctx) {
          // Forwarded after a failed history publish: for this node's clients, at once.
          bool without_history = false;
          if (history_ != nullptr && ctx->meta.is_object()) {
            const auto flag = ctx->meta.find(kWithoutHistoryMeta);
            without_history = flag != ctx->meta.end() && *flag == true;
          }
          if (!without_history) fan_out_to_other_gateways(*ctx);
          counters_.events_in++;
          metrics_.events_by_pattern[index]++;
          event_recipients_ = 0;
          {
            // Cleared however the handler ends (the broker catches what it throws): no later
            // delivery may take this context for the event it belongs to.
            struct HistoryScope {
              const Context*& slot;
              ~HistoryScope() { slot = nullptr; }
            } scope{history_event_};
            history_event_ = history_ != nullptr && !without_history ? ctx.get() : nullptr;
            history_deliveries_ = 0;
            (this->*handle)(*ctx);
          }
          // Once the hub has written what the deliveries queued (at the end of this loop turn,
          // on every write thread): every socket write of the fan-out was issued. One clock
          // read per event, none per socket.
          if (latency_.emit_to_write && event_recipients_ > 0 &&
              ctx->received != std::chrono::steady_clock::time_point{}) {
            hub_.after_writes([this, received = ctx->received] {
              latency_.emit_to_write(
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - received)
                      .count());
            });
          }
        }});
  }
  auto action = [&service](std::string name, Json params_schema, ActionHandler handler) {
    ActionSchema schema;
    schema.raw_name = std::move(name);
    schema.schema = Json{{"params", std::move(params_schema)}};
    schema.handler = std::move(handler);
    service.actions.push_back(std::move(schema));
  };
  const std::string node_id = broker_.node_id();
  // Every operator action can ask the whole cluster (`cluster: true`, issue 12).
  const Json cluster_params = {{"cluster", {{"type", "boolean"}, {"optional", true}}},
                               {"timeout",
                                {{"type", "number"},
                                 {"integer", true},
                                 {"min", rules::kClusterTimeoutMinMs},
                                 {"max", rules::kClusterTimeoutMaxMs},
                                 {"optional", true}}}};
  auto with_cluster = [&cluster_params](Json params) {
    params.update(cluster_params);
    return params;
  };
  action(
      "emit",
      with_cluster(Json{{"event", "string"},
                        {"data", "any"},
                        {"room", {{"type", "string"}, {"optional", true}}}}),
      [this, node_id](ContextPtr ctx, Respond respond) {
        auto validated = rules::validate_emit_params(ctx->params);
        if (auto* failure = std::get_if<rules::ValidationFailure>(&validated)) {
          respond(Outcome::failure(failure->to_error(node_id, ctx->name)));
          return;
        }
        const auto& params = std::get<rules::EmitParams>(validated);
        std::vector<std::string> rooms;
        if (params.room) rooms.push_back(*params.room);
        if (history_ != nullptr) {
          emit_through_history(ctx, params, std::move(rooms), respond);
          return;
        }
        size_t delivered =
            deliver(params.event, dump_json(params.data), params.room ? &rooms : nullptr);
        // With `cluster: true` each node delivers to its own sockets and says how many: the
        // caller learns which nodes did not (an event forward would not tell).
        answer_in_scope(ctx, params.scope, Json{{"delivered", delivered}}, respond, summed_reply);
      });
  const Json optional_string = {{"type", "string"}, {"optional", true}};
  action("stats", with_cluster(Json::object()), [this, node_id](ContextPtr ctx, Respond respond) {
    auto validated = rules::validate_stats_params(ctx->params);
    if (auto* failure = std::get_if<rules::ValidationFailure>(&validated)) {
      respond(Outcome::failure(failure->to_error(node_id, ctx->name)));
      return;
    }
    answer_in_scope(ctx, std::get<rules::StatsParams>(validated).scope, stats(), respond,
                    [](NodeAnswers answers) {
                      // Per-node identity and age do not add up.
                      Json total = sum_counts(answers.nodes, {"nodeID", "uptime"});
                      return cluster_reply(std::move(answers), std::move(total));
                    });
  });
  action("clients", with_cluster(Json{{"room", optional_string}, {"userId", optional_string}}),
         [this, node_id](ContextPtr ctx, Respond respond) {
           auto validated = rules::validate_clients_params(ctx->params);
           if (auto* failure = std::get_if<rules::ValidationFailure>(&validated)) {
             respond(Outcome::failure(failure->to_error(node_id, ctx->name)));
             return;
           }
           const auto& params = std::get<rules::ClientsParams>(validated);
           answer_in_scope(ctx, params.scope, client_list(params), respond,
                           [](NodeAnswers answers) {
                             // The list once, each entry with its node; per node its count.
                             Json clients = concat_client_lists(answers.nodes);
                             for (auto& entry : answers.nodes) {
                               entry = Json{{"clients", entry.is_array() ? entry.size() : 0}};
                             }
                             Json reply = cluster_reply(std::move(answers), clients.size());
                             reply["clients"] = std::move(clients);
                             return reply;
                           });
         });
  action(
      "disconnect",
      with_cluster(Json{
          {"userId", optional_string}, {"sid", optional_string}, {"tenantId", optional_string}}),
      [this, node_id](ContextPtr ctx, Respond respond) {
        auto validated = rules::validate_disconnect_params(ctx->params);
        if (auto* failure = std::get_if<rules::ValidationFailure>(&validated)) {
          respond(Outcome::failure(failure->to_error(node_id, ctx->name)));
          return;
        }
        const auto& params = std::get<rules::DisconnectParams>(validated);
        std::vector<std::string> ids;
        hub_.for_each_client([&](Client& client) {
          if (selected(client, SocketSelector{params.user_id, params.sid, std::nullopt,
                                              params.tenant_id})) {
            ids.push_back(client.id());
          }
        });
        hub_.disconnect(ids);
        Json answer{{"disconnected", ids.size()}};
        if (!config_.gateway.recovery.enabled) {
          answer_in_scope(ctx, params.scope, std::move(answer), respond, summed_reply);
          return;
        }
        // Away ones too: a kept client the operator disconnected never comes back. The answer
        // waits for the count (a cluster store scans the records of every node first).
        const SocketSelector selector{params.user_id, params.sid, std::nullopt, params.tenant_id};
        hub_.drop_kept([selector](const KeptClient& kept) { return selected(kept, selector); },
                       [this, alive = alive_, ctx, scope = params.scope, answer = std::move(answer),
                        respond](size_t kept_dropped) mutable {
                         if (!*alive) return;
                         answer["keptDropped"] = kept_dropped;
                         answer_in_scope(ctx, scope, std::move(answer), respond, summed_reply);
                       });
      });
  for (const bool join : {true, false}) {
    action(join ? "join" : "leave",
           with_cluster(Json{{"room", "string"},
                             {"userId", optional_string},
                             {"sid", optional_string},
                             {"inRoom", optional_string},
                             {"tenantId", optional_string}}),
           [this, node_id, join](ContextPtr ctx, Respond respond) {
             auto validated = rules::validate_room_action_params(ctx->params);
             if (auto* failure = std::get_if<rules::ValidationFailure>(&validated)) {
               respond(Outcome::failure(failure->to_error(node_id, ctx->name)));
               return;
             }
             const auto& params = std::get<rules::RoomActionParams>(validated);
             Json local = join ? join_room(params) : leave_room(params);
             answer_in_scope(ctx, params.scope, std::move(local), respond, summed_reply);
           });
  }
  return service;
}

}  // namespace steedos::services
