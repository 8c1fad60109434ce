#include "moleculer/broker.hpp"

#include <algorithm>
#include <asio/post.hpp>
#include <random>
#include <set>

#include "common/log.hpp"
#include "common/random_id.hpp"
#include "moleculer/node_service.hpp"
#include "moleculer/system_info.hpp"
#include "protocol/json_reader.hpp"
#include "protocol/match.hpp"

namespace steedos::moleculer {

using protocol::PacketType;
namespace errors = protocol::errors;

namespace {

constexpr auto kDiscoverWindow = std::chrono::milliseconds(500);  // JS waits 500 ms for INFOs
constexpr auto kStopDelay = std::chrono::milliseconds(100);       // JS registry.stopDelay
constexpr auto kInfoDebounce = std::chrono::milliseconds(200);

std::string string_field(const Json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The take_* variants move the value out of a packet that is not needed afterwards: params and
// results can be large, and a packet is parsed for one handler.
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

Json null_if_empty(const std::string& value) {
  return value.empty() ? Json(nullptr) : Json(value);
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

/// When packets of several subjects arrive in one read, the order they are handled in (lower
/// first): who a node is before what it sends; an event before the reply of the call that
/// emitted it (the usual "emit, then answer" of a service); a node's last words last.
int drain_rank(PacketType type) {
  switch (type) {
    case PacketType::Discover:
      return 0;
    case PacketType::Info:
      return 1;
    case PacketType::Heartbeat:
      return 2;
    case PacketType::Event:
      return 3;
    case PacketType::Request:
      return 4;
    case PacketType::Response:
      return 5;
    case PacketType::Ping:
    case PacketType::Pong:
      return 6;
    case PacketType::Disconnect:
      return 7;
  }
  return 8;
}

double uptime() {
  return process_uptime_seconds();
}

std::chrono::milliseconds seconds_to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<long long>(seconds * 1000));
}

}  // namespace

// A local service: its schema and its INFO form.
struct Broker::LocalService {
  ServiceSchema schema;
  std::string full_name;
  Json info;
};

struct Broker::PendingRequest {
  std::string action;
  std::string node_id;  // empty for balanced (REQB) requests
  ContextPtr ctx;
  ContextPtr parent;
  std::function<void(Outcome)> done;
  std::unique_ptr<asio::steady_timer> timer;
};

class Broker::CpuMeterHolder {
 public:
  CpuMeter meter;
};

std::string ServiceSchema::full_name() const {
  if (version.is_number()) return "v" + version.dump() + "." + name;
  if (version.is_string()) return version.get<std::string>() + "." + name;
  return name;
}

Broker::Broker(asio::io_context& loop, BrokerSettings settings,
               std::unique_ptr<transport::Transporter> transporter)
    : loop_(loop),
      settings_(std::move(settings)),
      transporter_(std::move(transporter)),
      topics_(settings_.moleculer_namespace),
      registry_(settings_.node_id),
      instance_id_(uuid_v4()),
      heartbeat_timer_(loop),
      check_timer_(loop),
      info_debounce_timer_(loop),
      start_timer_(loop),
      cpu_(std::make_unique<CpuMeterHolder>()) {
  NodeInfo& self = registry_.local_node();
  self.instance_id = instance_id_;
  self.client = client_info();
  self.hostname = host_name();
  self.ip_list = ip_list();
  self.metadata = settings_.metadata;
  self.seq = 1;
  cpu_->meter.sample();
  add_service(make_node_service(*this));
}

Broker::~Broker() {
  *alive_ = false;
  for (auto& [id, pending] : pending_) {
    if (pending->timer) pending->timer->cancel();
  }
}

// ---------------------------------------------------------------------------------------------
// Local services

void Broker::add_service(ServiceSchema schema) {
  auto service = std::make_shared<LocalService>();
  service->full_name = schema.full_name();
  Json info = Json::object();
  info["name"] = schema.name;
  if (!schema.version.is_null()) info["version"] = schema.version;
  info["fullName"] = service->full_name;
  info["settings"] = schema.settings.is_object() ? schema.settings : Json::object();
  info["metadata"] = schema.metadata.is_object() ? schema.metadata : Json::object();
  Json actions = Json::object();
  for (const auto& action : schema.actions) {
    Json entry = action.schema.is_object() ? action.schema : Json::object();
    std::string name = service->full_name + "." + action.raw_name;
    entry["rawName"] = action.raw_name;
    entry["name"] = name;
    actions[name] = std::move(entry);
  }
  Json events = Json::object();
  for (const auto& event : schema.events) {
    Json entry = Json::object();
    entry["name"] = event.pattern;
    if (!event.group.empty() && event.group != schema.name) entry["group"] = event.group;
    events[event.pattern] = std::move(entry);
  }
  info["actions"] = std::move(actions);
  info["events"] = std::move(events);
  service->info = std::move(info);
  service->schema = std::move(schema);

  services_.erase(std::remove_if(services_.begin(), services_.end(),
                                 [&](const auto& s) { return s->full_name == service->full_name; }),
                  services_.end());
  services_.push_back(std::move(service));
  rebuild_local_registry();
}

void Broker::remove_service(const std::string& full_name) {
  auto before = services_.size();
  services_.erase(std::remove_if(services_.begin(), services_.end(),
                                 [&](const auto& s) { return s->full_name == full_name; }),
                  services_.end());
  if (services_.size() != before) rebuild_local_registry();
}

void Broker::rebuild_local_registry() {
  Json services = Json::array();
  for (const auto& service : services_) services.push_back(service->info);
  registry_.set_local_services(std::move(services));
  if (state_ == State::Running) {
    registry_.local_node().seq++;
    sync_balanced_subscriptions();
    schedule_info_broadcast();
  }
}

// ---------------------------------------------------------------------------------------------
// Lifecycle

void Broker::start(std::function<void(std::optional<std::string>)> done) {
  auto log = component_logger("broker");
  state_ = State::Starting;
  transport::TransporterHandlers handlers;
  std::weak_ptr<bool> alive = alive_;
  handlers.on_message = [this, alive](const std::string& subject, std::string_view data) {
    if (!alive.expired()) on_message(subject, data);
  };
  handlers.on_disconnected = [this, alive] {
    if (alive.expired()) return;
    component_logger("transit")->warn("NATS connection lost; reconnecting");
  };
  handlers.on_reconnected = [this, alive] {
    if (alive.expired() || state_ != State::Running) return;
    component_logger("transit")->info("NATS connection restored; announcing the node again");
    send_info("");
    send_discover("");
    if (on_reconnected) on_reconnected();
  };
  handlers.on_closed = [alive] {
    if (!alive.expired()) component_logger("transit")->warn("NATS connection closed");
  };
  try {
    transporter_->connect(std::move(handlers));
  } catch (const std::exception& e) {
    state_ = State::Stopped;
    done(std::string(e.what()));
    return;
  }
  subscribe_all();

  // A live node with our nodeID answers a PING sent to our own subject. The probe uses its own
  // sender id, because nodes drop packets whose sender is their own nodeID.
  probe_sender_ = settings_.node_id + "-probe-" + instance_id_.substr(0, 8);
  transporter_->subscribe(topics_.targeted(PacketType::Pong, probe_sender_), {},
                          drain_rank(PacketType::Pong));
  Json ping = Json::object();
  ping["time"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
  ping["id"] = instance_id_;
  transporter_->publish(
      topics_.targeted(PacketType::Ping, settings_.node_id),
      protocol::encode_packet(std::move(ping), settings_.protocol_version, probe_sender_));
  send_discover("");

  start_timer_.expires_after(kDiscoverWindow);
  start_timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_),
                           done = std::move(done)](const std::error_code& ec) {
    if (ec || alive.expired()) return;
    transporter_->unsubscribe(topics_.targeted(PacketType::Pong, probe_sender_));
    if (node_id_conflict_) {
      state_ = State::Stopped;
      transporter_->close();
      done("nodeID '" + settings_.node_id +
           "' is already used by a live node of this cluster; choose another nodeID");
      return;
    }
    state_ = State::Running;
    sync_balanced_subscriptions();
    send_info("");
    send_heartbeat();
    arm_heartbeat();
    arm_registry_checks();
    component_logger("broker")->info("node '{}' started: {} service(s), protocol {}, {}",
                                     settings_.node_id, services_.size(),
                                     settings_.protocol_version, topics_.prefix());
    done(std::nullopt);
  });
}

void Broker::stop(std::function<void()> done) {
  if (state_ == State::Stopped || state_ == State::Stopping) {
    if (done) asio::post(loop_, std::move(done));
    return;
  }
  bool was_running = state_ == State::Running;
  state_ = State::Stopping;
  // Heartbeats stop first: a heartbeat after DISCONNECT would make peers re-discover us.
  heartbeat_timer_.cancel();
  check_timer_.cancel();
  info_debounce_timer_.cancel();
  start_timer_.cancel();
  if (was_running) {
    registry_.local_node().seq++;
    Json info = info_payload();
    info["services"] = Json::array();
    publish(topics_.broadcast(PacketType::Info), std::move(info));
  }
  auto finish = [this, done = std::move(done), was_running] {
    for (auto& [id, pending] : pending_) {
      if (pending->timer) pending->timer->cancel();
    }
    auto pending = std::move(pending_);
    pending_.clear();
    for (auto& [id, request] : pending) {
      request->done(Outcome::failure(errors::broker_disconnected()));
    }
    if (was_running) publish(topics_.broadcast(PacketType::Disconnect), Json::object());
    transporter_->flush(1000);
    transporter_->close();
    state_ = State::Stopped;
    component_logger("broker")->info("node '{}' stopped", settings_.node_id);
    if (done) done();
  };
  if (!was_running) {
    finish();
    return;
  }
  start_timer_.expires_after(kStopDelay);
  start_timer_.async_wait(
      [alive = std::weak_ptr<bool>(alive_), finish = std::move(finish)](const std::error_code&) {
        if (!alive.expired()) finish();
      });
}

// ---------------------------------------------------------------------------------------------
// Transit: packets out

void Broker::publish(const std::string& subject, Json payload) {
  std::string bytes =
      protocol::encode_packet(std::move(payload), settings_.protocol_version, settings_.node_id);
  if (!transporter_->publish(subject, bytes)) {
    component_logger("transit")->warn("cannot publish to {} ({} bytes): {}", subject, bytes.size(),
                                      transporter_->last_error());
  }
}

Json Broker::info_payload() const {
  const NodeInfo& self = registry_.local_node();
  Json info = Json::object();
  info["services"] = self.services;
  info["ipList"] = self.ip_list;
  info["hostname"] = self.hostname;
  info["client"] = self.client;
  info["config"] = Json::object();
  info["instanceID"] = instance_id_;
  info["metadata"] = self.metadata;
  info["seq"] = self.seq;
  return info;
}

void Broker::send_info(const std::string& target) {
  publish(target.empty() ? topics_.broadcast(PacketType::Info)
                         : topics_.targeted(PacketType::Info, target),
          info_payload());
}

void Broker::send_discover(const std::string& target) {
  publish(target.empty() ? topics_.broadcast(PacketType::Discover)
                         : topics_.targeted(PacketType::Discover, target),
          Json::object());
}

void Broker::send_heartbeat() {
  int cpu = cpu_->meter.sample();
  registry_.local_node().cpu = cpu;
  Json heartbeat = Json::object();
  heartbeat["cpu"] = cpu;
  publish(topics_.broadcast(PacketType::Heartbeat), std::move(heartbeat));
}

void Broker::schedule_info_broadcast() {
  if (info_broadcast_scheduled_) return;
  info_broadcast_scheduled_ = true;
  info_debounce_timer_.expires_after(kInfoDebounce);
  info_debounce_timer_.async_wait(
      [this, alive = std::weak_ptr<bool>(alive_)](const std::error_code& ec) {
        if (alive.expired()) return;
        info_broadcast_scheduled_ = false;
        if (!ec && state_ == State::Running) send_info("");
      });
}

void Broker::subscribe_all() {
  const std::string& id = settings_.node_id;
  for (PacketType type :
       {PacketType::Event, PacketType::Request, PacketType::Response, PacketType::Discover,
        PacketType::Info, PacketType::Ping, PacketType::Pong}) {
    transporter_->subscribe(topics_.targeted(type, id), {}, drain_rank(type));
  }
  for (PacketType type : {PacketType::Discover, PacketType::Info, PacketType::Heartbeat,
                          PacketType::Ping, PacketType::Disconnect}) {
    transporter_->subscribe(topics_.broadcast(type), {}, drain_rank(type));
  }
}

// Balanced subjects (REQB/EVENTB) follow the local service list. Unlike JS, which drops and
// re-creates all of them on every INFO, only the difference is applied, so there is no window
// without a queue subscription.
void Broker::sync_balanced_subscriptions() {
  if (!settings_.disable_balancer) return;
  std::vector<std::pair<std::string, std::string>> wanted;
  for (const auto& service : services_) {
    for (const auto& action : service->schema.actions) {
      std::string name = service->full_name + "." + action.raw_name;
      wanted.emplace_back(topics_.balanced_request(name), name);
    }
    for (const auto& event : service->schema.events) {
      std::string group = event.group.empty() ? service->schema.name : event.group;
      wanted.emplace_back(topics_.balanced_event(group, event.pattern), group);
    }
  }
  std::sort(wanted.begin(), wanted.end());
  wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
  for (const auto& sub : balanced_subscriptions_) {
    if (!std::binary_search(wanted.begin(), wanted.end(), sub)) {
      transporter_->unsubscribe(sub.first, sub.second);
    }
  }
  for (const auto& sub : wanted) {
    if (!std::binary_search(balanced_subscriptions_.begin(), balanced_subscriptions_.end(), sub)) {
      const auto type = topics_.classify(sub.first);  // REQB: a request, EVENTB: an event
      transporter_->subscribe(sub.first, sub.second,
                              drain_rank(type ? *type : PacketType::Request));
    }
  }
  balanced_subscriptions_ = std::move(wanted);
}

// ---------------------------------------------------------------------------------------------
// Transit: packets in

void Broker::on_message(const std::string& subject, std::string_view data) {
  auto type = topics_.classify(subject);
  if (!type || state_ == State::Stopped) return;
  auto decoded = protocol::decode_packet(*type, data, settings_.protocol_version);
  if (!decoded.ok()) {
    if (decoded.error == protocol::DecodeError::VersionMismatch) {
      counters_.version_mismatches++;
      if (!version_warned_[decoded.sender]) {
        version_warned_[decoded.sender] = true;
        component_logger("transit")->warn(
            "dropping packets of node '{}': protocol version {} (this node speaks \"{}\")",
            decoded.sender, decoded.received_version, settings_.protocol_version);
      }
    } else {
      counters_.invalid_packets++;
      component_logger("transit")->warn("invalid packet on {} from '{}': {}", subject,
                                        decoded.sender.empty() ? "?" : decoded.sender,
                                        decoded.detail);
    }
    return;
  }
  Json& packet = decoded.payload;
  bool own = decoded.sender == settings_.node_id;
  if (own && *type == PacketType::Info) {
    // Another process announcing our nodeID (a different instanceID) is a conflict.
    if (string_field(packet, "instanceID") != instance_id_) {
      if (state_ == State::Starting) {
        node_id_conflict_ = true;
      } else {
        component_logger("transit")->error(
            "another node announces our nodeID '{}'; nodeIDs must be unique", settings_.node_id);
      }
    }
    return;
  }
  if (own && *type == PacketType::Pong && string_field(packet, "id") == instance_id_) {
    node_id_conflict_ = true;
    return;
  }
  if (own && *type != PacketType::Event && *type != PacketType::Request &&
      *type != PacketType::Response) {
    return;
  }
  switch (*type) {
    case PacketType::Discover:
      handle_discover(packet);
      break;
    case PacketType::Info:
      handle_info(packet);
      break;
    case PacketType::Heartbeat:
      handle_heartbeat(packet);
      break;
    case PacketType::Disconnect:
      handle_disconnect(packet);
      break;
    case PacketType::Ping:
      handle_ping(packet);
      break;
    case PacketType::Pong:
      handle_pong(packet);
      break;
    case PacketType::Request:
      handle_request(packet);
      break;
    case PacketType::Response:
      handle_response(packet);
      break;
    case PacketType::Event:
      handle_event(packet);
      break;
  }
}

void Broker::handle_discover(const Json& packet) {
  // While starting we announce ourselves with a broadcast INFO at the end of the window anyway.
  if (state_ != State::Running) return;
  send_info(string_field(packet, "sender"));
}

void Broker::handle_info(const Json& packet) {
  std::string sender = string_field(packet, "sender");
  auto outcome = registry_.process_info(packet, Clock::now(), uptime());
  auto log = component_logger("registry");
  if (outcome == InfoOutcome::Connected) {
    log->info("node '{}' connected", sender);
  } else if (outcome == InfoOutcome::Reconnected) {
    log->info("node '{}' reconnected", sender);
  }
}

void Broker::handle_heartbeat(const Json& packet) {
  if (!registry_.process_heartbeat(packet, Clock::now(), uptime())) {
    // Unknown, offline, or changed node: ask it for its INFO.
    send_discover(string_field(packet, "sender"));
  }
}

void Broker::handle_disconnect(const Json& packet) {
  std::string sender = string_field(packet, "sender");
  if (registry_.disconnect_node(sender, Clock::now(), uptime())) {
    component_logger("registry")->info("node '{}' disconnected", sender);
    reject_pending_for(sender);
  }
}

void Broker::handle_ping(const Json& packet) {
  std::string sender = string_field(packet, "sender");
  if (sender == probe_sender_) return;  // our own start-up probe
  Json pong = Json::object();
  pong["time"] = packet.contains("time") ? packet["time"] : Json(nullptr);
  pong["id"] = packet["id"];
  pong["arrived"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  publish(topics_.targeted(PacketType::Pong, sender), std::move(pong));
}

void Broker::handle_pong(const Json&) {
  // broker.ping() is not offered by this node; the start-up probe is handled in on_message.
}

// ---------------------------------------------------------------------------------------------
// Requests in

void Broker::handle_request(Json& packet) {
  counters_.requests_in++;
  std::string sender = take_string(packet, "sender");
  std::string action = take_string(packet, "action");

  auto ctx = std::make_shared<Context>();
  ctx->id = take_string(packet, "id");
  ctx->request_id = take_string(packet, "requestID");
  if (ctx->request_id.empty()) ctx->request_id = ctx->id;
  ctx->parent_id = take_string(packet, "parentID");
  ctx->caller = take_string(packet, "caller");
  ctx->node_id = sender;
  ctx->name = action;
  auto level = packet.find("level");
  ctx->level = level != packet.end() && level->is_number_integer() ? level->get<int>() : 1;
  ctx->params = take_value(packet, "params", Json::object());
  ctx->meta = take_object(packet, "meta");
  ctx->headers = take_object(packet, "headers");
  auto timeout = packet.find("timeout");
  if (timeout != packet.end() && timeout->is_number() && timeout->get<double>() > 0) {
    ctx->timeout_ms = static_cast<int>(timeout->get<double>());
  }

  auto stream = packet.find("stream");
  if (stream != packet.end() && stream->is_boolean() && stream->get<bool>()) {
    auto seq = packet.find("seq");
    if (seq != packet.end() && seq->is_number() && seq->get<long long>() > 0) return;  // chunk
    send_response(sender, ctx,
                  Outcome::failure(errors::client_error("Streams are not supported by this node",
                                                        422, "STREAM_NOT_SUPPORTED")));
    return;
  }
  if (state_ == State::Stopping || state_ == State::Stopped) {
    send_response(sender, ctx,
                  Outcome::failure(errors::service_not_available(action, settings_.node_id)));
    return;
  }
  std::weak_ptr<bool> alive = alive_;
  run_local_action(action, ctx, [this, alive, sender, ctx](Outcome outcome) {
    if (!alive.expired()) send_response(sender, ctx, std::move(outcome));
  });
}

void Broker::send_response(const std::string& target, const ContextPtr& ctx, Outcome outcome) {
  Json res = protocol::reserved_object(8);  // ver and sender are added by encode_packet
  res["id"] = ctx->id;
  Json meta = ctx->meta;
  if (outcome.meta.is_object() && !outcome.meta.empty()) meta.update(outcome.meta);
  res["meta"] = std::move(meta);
  if (settings_.protocol_version != "4") res["headers"] = Json::object();
  res["success"] = outcome.ok;
  if (outcome.ok) {
    if (outcome.has_data) res["data"] = std::move(outcome.data);
  } else {
    res["data"] = nullptr;
    MoleculerError error = std::move(outcome.error);
    if (error.nodeID.empty()) error.nodeID = settings_.node_id;
    res["error"] = error.to_json();
  }
  publish(topics_.targeted(PacketType::Response, target), std::move(res));
}

// Runs a local action with its own timeout budget; `respond` is called exactly once.
void Broker::run_local_action(const std::string& action, ContextPtr ctx, Respond respond) {
  const ActionEndpoint* endpoint = registry_.action_endpoint_on(action, settings_.node_id);
  const ActionSchema* schema = nullptr;
  std::shared_ptr<LocalService> owner;
  if (endpoint) {
    for (const auto& service : services_) {
      if (service->full_name != endpoint->service) continue;
      for (const auto& candidate : service->schema.actions) {
        if (service->full_name + "." + candidate.raw_name == action) {
          schema = &candidate;
          owner = service;
        }
      }
    }
  }
  if (!schema || !schema->handler) {
    respond(Outcome::failure(errors::service_not_found(action, settings_.node_id)));
    return;
  }
  ctx->service = owner->full_name;
  auto answered = std::make_shared<bool>(false);
  Respond once = [answered, respond = std::move(respond)](Outcome outcome) {
    if (*answered) return;
    *answered = true;
    respond(std::move(outcome));
  };
  if (ctx->timeout_ms > 0) {
    auto timer = std::make_shared<asio::steady_timer>(loop_);
    timer->expires_after(std::chrono::milliseconds(ctx->timeout_ms));
    auto node_id = settings_.node_id;
    timer->async_wait([once, timer, action, node_id](const std::error_code& ec) {
      if (!ec) once(Outcome::failure(errors::request_timeout(action, node_id)));
    });
    // Cancel the timer as soon as the handler answers.
    auto inner = once;
    once = [inner, timer](Outcome outcome) {
      timer->cancel();
      inner(std::move(outcome));
    };
  }
  ActionHandler handler = schema->handler;  // the schema may go away if the service is removed
  try {
    handler(ctx, once);
  } catch (const protocol::MoleculerException& e) {
    once(Outcome::failure(e.error()));
  } catch (const std::exception& e) {
    component_logger("broker")->warn("action '{}' threw: {}", action, e.what());
    once(Outcome::failure(errors::internal_error(e.what())));
  }
}

// ---------------------------------------------------------------------------------------------
// Requests out

ContextPtr Broker::make_context(const std::string& name, Json params, const Json& meta,
                                const Json& headers, const ContextPtr& parent) {
  auto ctx = std::make_shared<Context>();
  ctx->id = uuid_v4();
  ctx->name = name;
  ctx->params = std::move(params);
  ctx->node_id = settings_.node_id;
  if (parent) {
    ctx->request_id = parent->request_id.empty() ? parent->id : parent->request_id;
    ctx->parent_id = parent->id;
    ctx->level = parent->level + 1;
    ctx->caller = parent->service;
    ctx->meta = parent->meta.is_object() ? parent->meta : Json::object();
  } else {
    ctx->request_id = ctx->id;
  }
  if (meta.is_object()) ctx->meta.update(meta);
  ctx->headers = headers.is_object() ? headers : Json::object();  // not inherited (v5 rule)
  return ctx;
}

void Broker::call(const std::string& action, Json params, CallOptions options,
                  std::function<void(Outcome)> done) {
  auto ctx = make_context(action, std::move(params), options.meta, options.headers, options.parent);
  // Distributed timeout: a nested call gets what is left of the parent's budget.
  int timeout = options.timeout_ms >= 0 ? options.timeout_ms : settings_.request_timeout_ms;
  if (options.parent && options.parent->timeout_ms > 0 && options.timeout_ms < 0) {
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::steady_clock::now() - options.parent->started)
                       .count();
    long long remaining = options.parent->timeout_ms - elapsed;
    if (remaining <= 0) {
      asio::post(loop_, [done = std::move(done), action, id = settings_.node_id] {
        done(Outcome::failure(errors::request_skipped(action, id)));
      });
      return;
    }
    timeout = static_cast<int>(remaining);
  }
  ctx->timeout_ms = timeout;

  auto fail_later = [this, &done](MoleculerError error) {
    asio::post(loop_, [done = std::move(done), error = std::move(error)] {
      done(Outcome::failure(error));
    });
  };
  if (state_ != State::Running) {
    fail_later(errors::broker_disconnected());
    return;
  }

  std::string target;
  bool local = false;
  if (!options.node_id.empty()) {
    if (!registry_.action_endpoint_on(action, options.node_id)) {
      fail_later(errors::service_not_found(action, options.node_id));
      return;
    }
    target = options.node_id;
    local = target == settings_.node_id;
  } else {
    const ActionEndpoint* endpoint = registry_.pick_action_endpoint(action, settings_.prefer_local);
    if (!endpoint) {
      fail_later(errors::service_not_found(action, ""));
      return;
    }
    local = endpoint->local;
    // disableBalancer: NATS queue groups pick the node (REQB); target stays unknown.
    target = local || !settings_.disable_balancer ? endpoint->node_id : std::string();
  }

  counters_.requests_out++;
  if (local) {
    auto parent = options.parent;
    asio::post(loop_, [this, alive = std::weak_ptr<bool>(alive_), action, ctx, parent,
                       done = std::move(done)]() mutable {
      if (alive.expired()) return;
      run_local_action(action, ctx, [ctx, parent, done = std::move(done)](Outcome outcome) {
        if (parent && outcome.meta.is_object()) parent->meta.update(outcome.meta);
        if (outcome.meta.is_object()) ctx->meta.update(outcome.meta);
        outcome.meta = ctx->meta;
        done(std::move(outcome));
      });
    });
    return;
  }
  if (pending_.size() >= settings_.max_queue_size) {
    fail_later(errors::queue_full(action, target, pending_.size(), settings_.max_queue_size));
    return;
  }
  send_request(target, action, ctx, options.parent, std::move(done));
}

void Broker::send_request(const std::string& node_id, const std::string& action, ContextPtr ctx,
                          ContextPtr parent, std::function<void(Outcome)> done) {
  Json req = Json::object();
  req["id"] = ctx->id;
  req["action"] = action;
  req["params"] = ctx->params;
  req["meta"] = ctx->meta;
  if (settings_.protocol_version != "4") req["headers"] = ctx->headers;
  req["timeout"] = ctx->timeout_ms;
  req["level"] = ctx->level;
  req["tracing"] = nullptr;
  req["parentID"] = null_if_empty(ctx->parent_id);
  req["requestID"] = ctx->request_id;
  req["caller"] = null_if_empty(ctx->caller);
  req["stream"] = false;

  auto pending = std::make_unique<PendingRequest>();
  pending->action = action;
  pending->node_id = node_id;
  pending->ctx = ctx;
  pending->parent = std::move(parent);
  pending->done = std::move(done);
  if (ctx->timeout_ms > 0) {
    pending->timer = std::make_unique<asio::steady_timer>(loop_);
    pending->timer->expires_after(std::chrono::milliseconds(ctx->timeout_ms));
    pending->timer->async_wait([this, alive = std::weak_ptr<bool>(alive_), id = ctx->id, action,
                                node_id](const std::error_code& ec) {
      if (ec || alive.expired()) return;
      settle_request(id, Outcome::failure(errors::request_timeout(action, node_id)));
    });
  }
  std::string id = ctx->id;
  pending_[id] = std::move(pending);
  std::string subject = node_id.empty() ? topics_.balanced_request(action)
                                        : topics_.targeted(PacketType::Request, node_id);
  std::string bytes =
      protocol::encode_packet(std::move(req), settings_.protocol_version, settings_.node_id);
  if (!transporter_->publish(subject, bytes)) {
    component_logger("transit")->warn("request {} to '{}' not sent: {}", action,
                                      node_id.empty() ? "(balanced)" : node_id,
                                      transporter_->last_error());
    auto error = errors::broker_disconnected();
    asio::post(loop_, [this, alive = std::weak_ptr<bool>(alive_), id, error] {
      if (!alive.expired()) settle_request(id, Outcome::failure(error));
    });
  }
}

void Broker::settle_request(const std::string& id, Outcome outcome) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  auto request = std::move(it->second);
  pending_.erase(it);
  if (request->timer) request->timer->cancel();
  if (outcome.meta.is_object()) {
    request->ctx->meta.update(outcome.meta);
    if (request->parent) request->parent->meta.update(outcome.meta);
  }
  request->done(std::move(outcome));
}

void Broker::handle_response(Json& packet) {
  std::string id = take_string(packet, "id");
  if (pending_.find(id) == pending_.end()) {
    counters_.orphan_responses++;
    return;
  }
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
  settle_request(id, std::move(outcome));
}

void Broker::reject_pending_for(const std::string& node_id) {
  std::vector<std::string> ids;
  for (const auto& [id, request] : pending_) {
    if (request->node_id == node_id) ids.push_back(id);
  }
  for (const auto& id : ids) {
    const std::string action = pending_[id]->action;
    settle_request(id, Outcome::failure(errors::request_rejected(action, node_id)));
  }
}

// ---------------------------------------------------------------------------------------------
// Events

void Broker::emit(const std::string& event, Json data, EmitOptions options) {
  auto ctx = make_context(event, std::move(data), options.meta, options.headers, options.parent);
  ctx->event_type = "emit";
  auto lists = registry_.matching_event_lists(event, options.groups);
  if (settings_.disable_balancer) {
    // NATS queue groups balance: one EVENTB per group, our own handlers included.
    std::vector<std::string> groups;
    for (auto* list : lists) {
      if (std::find(groups.begin(), groups.end(), list->group) == groups.end()) {
        groups.push_back(list->group);
      }
    }
    for (const auto& group : groups) {
      Json packet = Json::object();
      packet["id"] = ctx->id;
      packet["event"] = event;
      packet["data"] = ctx->params;
      packet["groups"] = Json::array({group});
      packet["broadcast"] = false;
      packet["meta"] = ctx->meta;
      if (settings_.protocol_version != "4") packet["headers"] = ctx->headers;
      packet["level"] = ctx->level;
      packet["tracing"] = nullptr;
      packet["parentID"] = null_if_empty(ctx->parent_id);
      packet["requestID"] = ctx->request_id;
      packet["caller"] = null_if_empty(ctx->caller);
      packet["needAck"] = nullptr;
      counters_.events_out++;
      publish(topics_.balanced_event(group, event), std::move(packet));
    }
    return;
  }
  std::map<std::string, std::vector<std::string>> remote_groups;
  std::vector<const EventList*> local_lists;
  for (auto* list : lists) {
    const EventEndpoint* endpoint = registry_.pick_event_endpoint(*list, settings_.prefer_local);
    if (!endpoint) continue;
    if (endpoint->local) {
      local_lists.push_back(list);
    } else {
      auto& groups = remote_groups[endpoint->node_id];
      if (std::find(groups.begin(), groups.end(), list->group) == groups.end()) {
        groups.push_back(list->group);
      }
    }
  }
  for (auto& [node_id, groups] : remote_groups) {
    Json packet = Json::object();
    packet["id"] = uuid_v4();  // each target gets its own context copy, as in JS
    packet["event"] = event;
    packet["data"] = ctx->params;
    packet["groups"] = groups;
    packet["broadcast"] = false;
    packet["meta"] = ctx->meta;
    if (settings_.protocol_version != "4") packet["headers"] = ctx->headers;
    packet["level"] = ctx->level;
    packet["tracing"] = nullptr;
    packet["parentID"] = null_if_empty(ctx->parent_id);
    packet["requestID"] = ctx->request_id;
    packet["caller"] = null_if_empty(ctx->caller);
    packet["needAck"] = nullptr;
    counters_.events_out++;
    publish(topics_.targeted(PacketType::Event, node_id), std::move(packet));
  }
  if (!local_lists.empty()) {
    std::vector<std::pair<std::string, std::string>> keys;
    for (const auto* list : local_lists) keys.emplace_back(list->pattern, list->group);
    asio::post(loop_, [this, alive = std::weak_ptr<bool>(alive_), ctx, keys] {
      if (alive.expired()) return;
      for (const auto& [pattern, group] : keys) {
        for (const auto& service : services_) {
          for (const auto& handler : service->schema.events) {
            std::string handler_group =
                handler.group.empty() ? service->schema.name : handler.group;
            if (handler.pattern == pattern && handler_group == group && handler.handler) {
              auto local_ctx = std::make_shared<Context>(*ctx);
              local_ctx->event_groups = {group};
              local_ctx->service = service->full_name;
              handler.handler(local_ctx);
            }
          }
        }
      }
    });
  }
}

void Broker::broadcast(const std::string& event, Json data, EmitOptions options) {
  auto ctx = make_context(event, std::move(data), options.meta, options.headers, options.parent);
  ctx->event_type = "broadcast";
  auto lists = registry_.matching_event_lists(event, options.groups);
  std::set<std::string> nodes;
  std::vector<std::string> all_groups;
  for (auto* list : lists) {
    if (std::find(all_groups.begin(), all_groups.end(), list->group) == all_groups.end()) {
      all_groups.push_back(list->group);
    }
    for (const auto& endpoint : list->endpoints) {
      if (!endpoint.local) nodes.insert(endpoint.node_id);
    }
  }
  for (const auto& node_id : nodes) {
    Json packet = Json::object();
    packet["id"] = uuid_v4();
    packet["event"] = event;
    packet["data"] = ctx->params;
    if (!options.groups.empty()) {
      packet["groups"] = options.groups;
    } else if (settings_.disable_balancer) {
      packet["groups"] = all_groups;  // as JS does in disableBalancer mode
    }
    packet["broadcast"] = true;
    packet["meta"] = ctx->meta;
    if (settings_.protocol_version != "4") packet["headers"] = ctx->headers;
    packet["level"] = ctx->level;
    packet["tracing"] = nullptr;
    packet["parentID"] = null_if_empty(ctx->parent_id);
    packet["requestID"] = ctx->request_id;
    packet["caller"] = null_if_empty(ctx->caller);
    packet["needAck"] = nullptr;
    counters_.events_out++;
    publish(topics_.targeted(PacketType::Event, node_id), std::move(packet));
  }
  if (options.remote_only) return;
  asio::post(loop_, [this, alive = std::weak_ptr<bool>(alive_), ctx, groups = options.groups] {
    if (!alive.expired()) run_local_events(ctx, groups, true);
  });
}

void Broker::broadcast_local(const std::string& event, Json data, EmitOptions options) {
  auto ctx = make_context(event, std::move(data), options.meta, options.headers, options.parent);
  ctx->event_type = "broadcastLocal";
  asio::post(loop_, [this, alive = std::weak_ptr<bool>(alive_), ctx, groups = options.groups] {
    if (!alive.expired()) run_local_events(ctx, groups, true);
  });
}

void Broker::handle_event(Json& packet) {
  counters_.events_in++;
  if (state_ != State::Running) return;  // events are dropped while starting or stopping
  auto ctx = std::make_shared<Context>();
  ctx->id = take_string(packet, "id");
  ctx->request_id = take_string(packet, "requestID");
  ctx->parent_id = take_string(packet, "parentID");
  ctx->caller = take_string(packet, "caller");
  ctx->node_id = take_string(packet, "sender");
  ctx->name = take_string(packet, "event");
  auto level = packet.find("level");
  ctx->level = level != packet.end() && level->is_number_integer() ? level->get<int>() : 1;
  ctx->params = take_value(packet, "data", Json(nullptr));
  ctx->meta = take_object(packet, "meta");
  ctx->headers = take_object(packet, "headers");
  auto broadcast_flag = packet.find("broadcast");
  bool is_broadcast =
      broadcast_flag != packet.end() && broadcast_flag->is_boolean() && broadcast_flag->get<bool>();
  ctx->event_type = is_broadcast ? "broadcast" : "emit";
  run_local_events(ctx, string_list(packet, "groups"), is_broadcast);
}

// Delivers to local handlers whose pattern matches and whose group is in `groups` (any group when
// empty). There is one local handler per (pattern, group) list, so emit and broadcast coincide.
void Broker::run_local_events(ContextPtr ctx, const std::vector<std::string>& groups, bool) {
  struct Match {
    std::shared_ptr<LocalService> service;
    const EventSchema* handler;
    std::string group;
  };
  std::vector<Match> matches;
  for (const auto& service : services_) {
    for (const auto& handler : service->schema.events) {
      const std::string& group = handler.group.empty() ? service->schema.name : handler.group;
      if (!groups.empty() && std::find(groups.begin(), groups.end(), group) == groups.end()) {
        continue;
      }
      if (!handler.handler || !protocol::match_event(ctx->name, handler.pattern)) continue;
      matches.push_back({service, &handler, group});
    }
  }
  for (size_t i = 0; i < matches.size(); ++i) {
    Match& match = matches[i];
    // Each handler gets its own context; the last one takes the original instead of a copy.
    auto local_ctx = i + 1 < matches.size() ? std::make_shared<Context>(*ctx) : ctx;
    local_ctx->event_groups = groups.empty() ? std::vector<std::string>{match.group} : groups;
    local_ctx->service = match.service->full_name;
    // A handler may add or remove services: `match.service` keeps this one's schema alive.
    const EventHandler handler = match.handler->handler;
    try {
      handler(local_ctx);
    } catch (const std::exception& e) {
      component_logger("broker")->warn("event handler '{}' of '{}' threw: {}",
                                       match.handler->pattern, match.service->full_name, e.what());
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Timers

void Broker::arm_heartbeat() {
  // As JS: a random offset of ±500 ms chosen once, so nodes do not beat in lockstep.
  static thread_local std::mt19937 random{std::random_device{}()};
  static const int offset_ms = std::uniform_int_distribution<int>(-500, 500)(random);
  auto period =
      seconds_to_ms(settings_.heartbeat_interval_s) + std::chrono::milliseconds(offset_ms);
  if (period < std::chrono::milliseconds(100)) period = std::chrono::milliseconds(100);
  heartbeat_timer_.expires_after(period);
  heartbeat_timer_.async_wait(
      [this, alive = std::weak_ptr<bool>(alive_)](const std::error_code& ec) {
        if (ec || alive.expired() || state_ != State::Running) return;
        send_heartbeat();
        arm_heartbeat();
      });
}

void Broker::arm_registry_checks() {
  // JS checks every heartbeatTimeout seconds (detection in 30-60 s); checking every second
  // detects a dead node within heartbeatTimeout + 1 s at negligible cost.
  check_timer_.expires_after(std::chrono::seconds(1));
  check_timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](const std::error_code& ec) {
    if (ec || alive.expired() || state_ != State::Running) return;
    check_remote_nodes();
    arm_registry_checks();
  });
}

void Broker::check_remote_nodes() {
  auto now = Clock::now();
  auto log = component_logger("registry");
  for (const auto& id :
       registry_.expired_nodes(now, seconds_to_ms(settings_.heartbeat_timeout_s))) {
    log->warn("heartbeat is not received from node '{}'; marking it disconnected", id);
    registry_.disconnect_node(id, now, uptime());
    reject_pending_for(id);
  }
  for (const auto& id : registry_.remove_offline_nodes(
           now, seconds_to_ms(settings_.clean_offline_nodes_timeout_s))) {
    log->info("removed offline node '{}' from the registry", id);
  }
}

}  // namespace steedos::moleculer
