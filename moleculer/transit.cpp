#include "moleculer/transit.hpp"

#include <algorithm>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>

#include "common/log.hpp"
#include "common/random_id.hpp"
#include "moleculer/packets.hpp"
#include "moleculer/system_info.hpp"

namespace steedos::moleculer {

using protocol::PacketType;
namespace errors = protocol::errors;
using packets::string_field;

namespace {

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

long long epoch_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct Transit::PendingRequest {
  std::string action;
  std::string node_id;  // empty for balanced (REQB) requests
  ContextPtr ctx;
  ContextPtr parent;
  Done done;
  std::unique_ptr<asio::steady_timer> timer;
};

Transit::Transit(asio::io_context& loop, const BrokerSettings& settings, std::string instance_id,
                 std::unique_ptr<transport::Transporter> transporter, TransitHandler& handler,
                 BrokerCounters& counters)
    : loop_(loop),
      settings_(settings),
      instance_id_(std::move(instance_id)),
      transporter_(std::move(transporter)),
      handler_(handler),
      counters_(counters),
      topics_(settings.moleculer_namespace),
      shared_event_subject_(topics_.broadcast(PacketType::Event)) {}

Transit::~Transit() {
  for (auto& [id, pending] : pending_) {
    if (pending->timer) pending->timer->cancel();
  }
}

// ---------------------------------------------------------------------------------------------
// Connection

void Transit::connect() {
  transport::TransporterHandlers handlers;
  std::weak_ptr<bool> alive = alive_;
  handlers.on_message = [this, alive](const std::string& subject, std::string_view data) {
    if (!alive.expired()) on_message(subject, data);
  };
  handlers.on_disconnected = [this, alive] {
    if (alive.expired()) return;
    log_with(component_logger("transit"), spdlog::level::warn,
             {{"transporter", transporter_->name()}}, "{} connection lost; reconnecting",
             transporter_->name());
    fail_requests_in_flight();
    handler_.on_connection_lost();
  };
  handlers.on_reconnected = [this, alive] {
    if (!alive.expired()) handler_.on_connection_restored();
  };
  handlers.on_closed = [this, alive] {
    if (alive.expired()) return;
    log_with(component_logger("transit"), spdlog::level::warn,
             {{"transporter", transporter_->name()}}, "{} connection closed", transporter_->name());
    fail_requests_in_flight();
    handler_.on_connection_lost();
  };
  transporter_->connect(std::move(handlers));

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

void Transit::start_node_id_probe() {
  probing_ = true;
  probe_sender_ = settings_.node_id + "-probe-" + instance_id_.substr(0, 8);
  transporter_->subscribe(topics_.targeted(PacketType::Pong, probe_sender_), {},
                          drain_rank(PacketType::Pong));
  transporter_->publish(topics_.targeted(PacketType::Ping, settings_.node_id),
                        protocol::encode_packet(packets::ping_packet(epoch_ms(), instance_id_),
                                                settings_.protocol_version, probe_sender_));
}

bool Transit::finish_node_id_probe() {
  probing_ = false;
  transporter_->unsubscribe(topics_.targeted(PacketType::Pong, probe_sender_));
  return node_id_conflict_;
}

void Transit::flush(int timeout_ms) {
  transporter_->flush(timeout_ms);
}

void Transit::close() {
  transporter_->close();
  closed_ = true;
}

void Transit::sync_balanced_subscriptions(
    const std::vector<std::string>& actions,
    const std::vector<std::pair<std::string, std::string>>& events) {
  std::vector<std::pair<std::string, std::string>> wanted;
  for (const auto& action : actions) wanted.emplace_back(topics_.balanced_request(action), action);
  for (const auto& [group, pattern] : events) {
    wanted.emplace_back(topics_.balanced_event(group, pattern), group);
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
// Packets out

void Transit::publish(const std::string& subject, Json payload) {
  std::string bytes =
      protocol::encode_packet(std::move(payload), settings_.protocol_version, settings_.node_id);
  if (!transporter_->publish(subject, bytes)) {
    component_logger("transit")->warn("cannot publish to {} ({} bytes): {}", subject, bytes.size(),
                                      transporter_->last_error());
  }
}

void Transit::send_info(const std::string& target, const NodeInfo& self) {
  publish(target.empty() ? topics_.broadcast(PacketType::Info)
                         : topics_.targeted(PacketType::Info, target),
          packets::info_packet(self, self.services));
}

void Transit::send_leaving_info(const NodeInfo& self) {
  publish(topics_.broadcast(PacketType::Info), packets::info_packet(self, Json::array()));
}

void Transit::send_discover(const std::string& target) {
  publish(target.empty() ? topics_.broadcast(PacketType::Discover)
                         : topics_.targeted(PacketType::Discover, target),
          packets::discover_packet());
}

void Transit::send_heartbeat(int cpu) {
  publish(topics_.broadcast(PacketType::Heartbeat), packets::heartbeat_packet(cpu));
}

void Transit::send_disconnect() {
  publish(topics_.broadcast(PacketType::Disconnect), packets::disconnect_packet());
}

void Transit::send_event(const std::string& node_id, const Context& ctx,
                         const std::vector<std::string>* groups, bool broadcast) {
  counters_.events_out++;
  publish(topics_.targeted(PacketType::Event, node_id),
          packets::event_packet(ctx, uuid_v4(), groups, broadcast, settings_.protocol_version));
}

void Transit::send_balanced_event(const std::string& group, const Context& ctx) {
  const std::vector<std::string> groups{group};
  counters_.events_out++;
  publish(topics_.balanced_event(group, ctx.name),
          packets::event_packet(ctx, ctx.id, &groups, false, settings_.protocol_version));
}

void Transit::send_shared_event(const Context& ctx, const std::vector<std::string>& groups) {
  counters_.events_out++;
  publish(shared_event_subject_,
          packets::event_packet(ctx, uuid_v4(), &groups, true, settings_.protocol_version));
}

void Transit::subscribe_shared_events() {
  transporter_->subscribe(shared_event_subject_, {}, drain_rank(PacketType::Event));
}

void Transit::send_response(const std::string& target, const Context& ctx, Outcome outcome) {
  publish(topics_.targeted(PacketType::Response, target),
          packets::response_packet(ctx, std::move(outcome), settings_.protocol_version,
                                   settings_.node_id));
}

// ---------------------------------------------------------------------------------------------
// Requests out

void Transit::send_request(const std::string& node_id, ContextPtr ctx, ContextPtr parent,
                           Done done) {
  const std::string& action = ctx->name;
  if (pending_.size() >= settings_.max_queue_size) {
    auto error = errors::queue_full(action, node_id, pending_.size(), settings_.max_queue_size);
    asio::post(loop_, [done = std::move(done), error = std::move(error)] {
      done(Outcome::failure(error));
    });
    return;
  }
  Json req = packets::request_packet(*ctx, settings_.protocol_version);

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

void Transit::settle_request(const std::string& id, Outcome outcome) {
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

void Transit::reject_pending_for(const std::string& node_id) {
  std::vector<std::string> ids;
  for (const auto& [id, request] : pending_) {
    if (request->node_id == node_id) ids.push_back(id);
  }
  for (const auto& id : ids) {
    const std::string action = pending_[id]->action;
    settle_request(id, Outcome::failure(errors::request_rejected(action, node_id)));
  }
}

void Transit::fail_requests_in_flight() {
  if (pending_.empty()) return;
  component_logger("transit")->warn("{} request(s) in flight fail: their answers may be lost",
                                    pending_.size());
  reject_all_pending(errors::broker_disconnected());
}

void Transit::reject_all_pending(const MoleculerError& error) {
  for (auto& [id, pending] : pending_) {
    if (pending->timer) pending->timer->cancel();
  }
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [id, request] : pending) request->done(Outcome::failure(error));
}

// ---------------------------------------------------------------------------------------------
// Packets in

void Transit::on_message(const std::string& subject, std::string_view data) {
  auto type = topics_.classify(subject);
  if (!type || closed_) return;
  // Before decoding: the emit-to-write metric includes the time spent parsing the packet.
  const auto received = stamp_events_ && *type == PacketType::Event
                            ? std::chrono::steady_clock::now()
                            : std::chrono::steady_clock::time_point{};
  auto decoded = protocol::decode_packet(*type, data, settings_.protocol_version);
  if (!decoded.ok()) {
    if (decoded.error == protocol::DecodeError::VersionMismatch) {
      counters_.version_mismatches++;
      if (!version_warned_[decoded.sender]) {
        version_warned_[decoded.sender] = true;
        log_with(component_logger("transit"), spdlog::level::warn,
                 {{"nodeID", decoded.sender}, {"reason", "protocol version mismatch"}},
                 "dropping packets of node '{}': protocol version {} (this node speaks \"{}\")",
                 decoded.sender, decoded.received_version, settings_.protocol_version);
      }
    } else {
      counters_.invalid_packets++;
      if (decoded.error == protocol::DecodeError::TooDeep) counters_.too_deep_packets++;
      log_with(component_logger("transit"), spdlog::level::warn,
               {{"nodeID", decoded.sender}, {"subject", subject}, {"reason", decoded.detail}},
               "invalid packet on {} from '{}': {}", subject,
               decoded.sender.empty() ? "?" : decoded.sender, decoded.detail);
    }
    return;
  }
  if (decoded.sender == settings_.node_id) {
    // Our own broadcast on the shared subject: its local handlers already ran here.
    if (*type == PacketType::Event && subject == shared_event_subject_) return;
    if (consume_own_packet(*type, decoded.payload)) return;
  }
  dispatch(*type, decoded.payload, received);
}

bool Transit::consume_own_packet(PacketType type, const Json& packet) {
  if (type == PacketType::Info) {
    // Another process announcing our nodeID (a different instanceID) is a conflict.
    if (string_field(packet, "instanceID") != instance_id_) {
      if (probing_) {
        node_id_conflict_ = true;
      } else {
        component_logger("transit")->error(
            "another node announces our nodeID '{}'; nodeIDs must be unique", settings_.node_id);
      }
    }
    return true;
  }
  if (type == PacketType::Pong && string_field(packet, "id") == instance_id_) {
    node_id_conflict_ = true;  // a live node with our nodeID answered the probe
    return true;
  }
  // Our own EVENT, REQ and RES reach us through queue groups and are handled as any other.
  return type != PacketType::Event && type != PacketType::Request && type != PacketType::Response;
}

void Transit::dispatch(PacketType type, Json& packet,
                       std::chrono::steady_clock::time_point received) {
  switch (type) {
    case PacketType::Discover:
      handler_.on_discover(string_field(packet, "sender"));
      break;
    case PacketType::Info:
      handler_.on_info(packet);
      break;
    case PacketType::Heartbeat:
      handler_.on_heartbeat(packet);
      break;
    case PacketType::Disconnect:
      handler_.on_disconnect(string_field(packet, "sender"));
      break;
    case PacketType::Ping:
      handle_ping(packet);
      break;
    case PacketType::Pong:
      // broker.ping() is not offered by this node; the start-up probe is handled above.
      break;
    case PacketType::Request:
      handle_request(packet);
      break;
    case PacketType::Response:
      handle_response(packet);
      break;
    case PacketType::Event:
      handle_event(packet, received);
      break;
  }
}

void Transit::handle_ping(const Json& packet) {
  std::string sender = string_field(packet, "sender");
  if (sender == probe_sender_) return;  // our own start-up probe
  publish(topics_.targeted(PacketType::Pong, sender), packets::pong_packet(packet, epoch_ms()));
}

void Transit::handle_request(Json& packet) {
  counters_.requests_in++;
  ContextPtr ctx = packets::request_context(packet);
  if (!ctx->id.empty() && !recent_requests_.insert(ctx->node_id + "|" + ctx->id)) {
    counters_.duplicate_requests++;
    component_logger("transit")->debug("request {} from '{}' received twice; answered once",
                                       ctx->id, ctx->node_id);
    return;
  }
  auto stream = packet.find("stream");
  if (stream != packet.end() && stream->is_boolean() && stream->get<bool>()) {
    auto seq = packet.find("seq");
    if (seq != packet.end() && seq->is_number() && seq->get<long long>() > 0) return;  // chunk
    send_response(ctx->node_id, *ctx,
                  Outcome::failure(errors::client_error("Streams are not supported by this node",
                                                        422, "STREAM_NOT_SUPPORTED")));
    return;
  }
  handler_.on_request(std::move(ctx));
}

void Transit::handle_response(Json& packet) {
  auto id = packet.find("id");
  auto pending = id != packet.end() && id->is_string()
                     ? pending_.find(id->get_ref<const std::string&>())
                     : pending_.end();
  if (pending == pending_.end()) {
    counters_.orphan_responses++;
    return;
  }
  const std::string key = pending->first;  // settle_request erases the entry
  settle_request(key, packets::response_outcome(packet));
}

void Transit::handle_event(Json& packet, std::chrono::steady_clock::time_point received) {
  counters_.events_in++;
  ContextPtr ctx = packets::event_context(packet);
  ctx->received = received;
  handler_.on_event(std::move(ctx), packets::string_list(packet, "groups"));
}

}  // namespace steedos::moleculer
