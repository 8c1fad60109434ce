#include "moleculer/broker.hpp"

#include <algorithm>
#include <asio/post.hpp>
#include <random>
#include <set>

#include "common/log.hpp"
#include "common/random_id.hpp"
#include "moleculer/node_service.hpp"
#include "moleculer/packets.hpp"
#include "moleculer/system_info.hpp"
#include "protocol/match.hpp"

namespace steedos::moleculer {

namespace errors = protocol::errors;
using packets::string_field;

namespace {

constexpr auto kDiscoverWindow = std::chrono::milliseconds(500);  // JS waits 500 ms for INFOs
constexpr auto kStopDelay = std::chrono::milliseconds(100);       // JS registry.stopDelay
constexpr auto kInfoDebounce = std::chrono::milliseconds(200);

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

// One local event handler chosen for a delivery.
struct Broker::LocalEventHandler {
  std::shared_ptr<LocalService> service;  // keeps the schema alive if the service is removed
  const EventSchema* schema;
  std::string group;
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
      registry_(settings_.node_id),
      instance_id_(uuid_v4()),
      // The conversion to the private base is only allowed here, not inside make_unique.
      transit_(std::make_unique<Transit>(loop, settings_, instance_id_, std::move(transporter),
                                         static_cast<TransitHandler&>(*this), counters_)),
      heartbeat_timer_(loop),
      check_timer_(loop),
      info_debounce_timer_(loop),
      start_timer_(loop),
      cpu_(std::make_unique<CpuMeterHolder>()) {
  settings_.transporter_name = transit_->transporter_name();
  if (settings_.disable_balancer && !transit_->transporter_balances()) {
    // As JS's ServiceBroker: without REQB/EVENTB on the bus, nobody would receive them.
    component_logger("broker")->warn(
        "The {}Transporter has no built-in balancer. Broker balancer is ENABLED.",
        settings_.transporter_name);
    settings_.disable_balancer = false;
  }
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

Broker::~Broker() = default;

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
  if (info["metadata"].value(kSharedEventSubjectKey, false) && !listens_on_shared_subject_) {
    listens_on_shared_subject_ = true;
    if (state_ != State::Created && state_ != State::Stopped) transit_->subscribe_shared_events();
  }
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

// disableBalancer: NATS queue groups balance, so the node holds one REQB subscription per local
// action and one EVENTB subscription per local (group, event pattern).
void Broker::sync_balanced_subscriptions() {
  if (!settings_.disable_balancer) return;
  std::vector<std::string> actions;
  std::vector<std::pair<std::string, std::string>> events;  // (group, pattern)
  for (const auto& service : services_) {
    for (const auto& action : service->schema.actions) {
      actions.push_back(service->full_name + "." + action.raw_name);
    }
    for (const auto& event : service->schema.events) {
      events.emplace_back(event.group.empty() ? service->schema.name : event.group, event.pattern);
    }
  }
  transit_->sync_balanced_subscriptions(actions, events);
}

// ---------------------------------------------------------------------------------------------
// Lifecycle

void Broker::start(std::function<void(std::optional<std::string>)> done) {
  state_ = State::Starting;
  try {
    transit_->connect();
    if (listens_on_shared_subject_) transit_->subscribe_shared_events();
  } catch (const std::exception& e) {
    state_ = State::Stopped;
    done(std::string(e.what()));
    return;
  }
  transit_->start_node_id_probe();
  transit_->send_discover("");

  start_timer_.expires_after(kDiscoverWindow);
  start_timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_),
                           done = std::move(done)](const std::error_code& ec) {
    if (ec || alive.expired()) return;
    if (transit_->finish_node_id_probe()) {
      state_ = State::Stopped;
      transit_->close();
      done("nodeID '" + settings_.node_id +
           "' is already used by a live node of this cluster; choose another nodeID");
      return;
    }
    state_ = State::Running;
    sync_balanced_subscriptions();
    transit_->send_info("", registry_.local_node());
    announced_ = true;
    send_heartbeat();
    arm_heartbeat();
    arm_registry_checks();
    component_logger("broker")->info("node '{}' started: {} service(s), protocol {}, {}",
                                     settings_.node_id, services_.size(),
                                     settings_.protocol_version, transit_->topics().prefix());
    done(std::nullopt);
  });
}

bool Broker::connected() const {
  return transit_->transporter_connected();
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
    transit_->send_leaving_info(registry_.local_node());
  }
  auto finish = [this, done = std::move(done), was_running] {
    transit_->reject_all_pending(errors::broker_disconnected());
    if (was_running) transit_->send_disconnect();
    transit_->flush(1000);
    transit_->close();
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

void Broker::send_heartbeat() {
  int cpu = cpu_->meter.sample();
  registry_.local_node().cpu = cpu;
  transit_->send_heartbeat(cpu);
}

void Broker::schedule_info_broadcast() {
  if (info_broadcast_scheduled_) return;
  info_broadcast_scheduled_ = true;
  info_debounce_timer_.expires_after(kInfoDebounce);
  info_debounce_timer_.async_wait(
      [this, alive = std::weak_ptr<bool>(alive_)](const std::error_code& ec) {
        if (alive.expired()) return;
        info_broadcast_scheduled_ = false;
        if (!ec && state_ == State::Running) transit_->send_info("", registry_.local_node());
      });
}

// ---------------------------------------------------------------------------------------------
// Packets handed over by transit

void Broker::on_discover(const std::string& sender) {
  // While starting we announce ourselves with a broadcast INFO at the end of the window anyway.
  if (state_ != State::Running) return;
  transit_->send_info(sender, registry_.local_node());
}

void Broker::on_info(const Json& packet) {
  std::string sender = string_field(packet, "sender");
  auto outcome = registry_.process_info(packet, Clock::now(), uptime());
  auto log = component_logger("registry");
  if (outcome == InfoOutcome::Connected) {
    log_with(log, spdlog::level::info, {{"nodeID", sender}}, "node joined");
  } else if (outcome == InfoOutcome::Reconnected) {
    log_with(log, spdlog::level::info, {{"nodeID", sender}}, "node joined again");
  }
}

void Broker::on_heartbeat(const Json& packet) {
  if (!registry_.process_heartbeat(packet, Clock::now(), uptime())) {
    // Unknown, offline, or changed node: ask it for its INFO.
    transit_->send_discover(string_field(packet, "sender"));
  }
}

void Broker::on_disconnect(const std::string& sender) {
  if (registry_.disconnect_node(sender, Clock::now(), uptime())) {
    log_with(component_logger("registry"), spdlog::level::info,
             {{"nodeID", sender}, {"reason", "DISCONNECT"}}, "node left");
    transit_->reject_pending_for(sender);
  }
}

void Broker::on_connection_restored() {
  if (state_ != State::Running) return;
  log_with(component_logger("transit"), spdlog::level::warn,
           {{"transporter", settings_.transporter_name}},
           "{} connection restored; announcing the node again", settings_.transporter_name);
  transit_->send_info("", registry_.local_node());
  announced_ = true;
  transit_->send_discover("");
  if (on_reconnected) on_reconnected();
}

void Broker::on_request(ContextPtr ctx) {
  if (state_ == State::Stopping || state_ == State::Stopped) {
    transit_->send_response(
        ctx->node_id, *ctx,
        Outcome::failure(errors::service_not_available(ctx->name, settings_.node_id)));
    return;
  }
  std::weak_ptr<bool> alive = alive_;
  const std::string action = ctx->name;
  run_local_action(action, ctx, [this, alive, ctx](Outcome outcome) {
    if (!alive.expired()) transit_->send_response(ctx->node_id, *ctx, std::move(outcome));
  });
}

void Broker::on_event(ContextPtr ctx, const std::vector<std::string>& groups) {
  // Dropped while starting (no service is ready yet). While stopping they are still handled:
  // peers go on sending balanced emits here until they have the INFO without services, and
  // the services are still there (a drain hands such an event on instead of losing it).
  if (state_ != State::Running && state_ != State::Stopping) return;
  deliver_local_event(ctx, local_handlers_matching(ctx->name, groups), groups);
}

// ---------------------------------------------------------------------------------------------
// Local execution

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
    // As JS's Timeout middleware: data.nodeID is the context's node, the caller of a remote
    // request (this node for a local call).
    auto node_id = ctx->node_id;
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
    counters_.handler_errors++;
    component_logger("broker")->warn("action '{}' threw: {}", action, e.what());
    once(Outcome::failure(errors::internal_error(e.what())));
  } catch (...) {
    counters_.handler_errors++;
    component_logger("broker")->warn("action '{}' threw a non-standard exception", action);
    once(Outcome::failure(errors::internal_error("the action threw a non-standard exception")));
  }
}

std::vector<Broker::LocalEventHandler> Broker::local_handlers_of(
    const std::vector<std::pair<std::string, std::string>>& lists) const {
  std::vector<LocalEventHandler> handlers;
  for (const auto& [pattern, group] : lists) {
    for (const auto& service : services_) {
      for (const auto& handler : service->schema.events) {
        const std::string& handler_group =
            handler.group.empty() ? service->schema.name : handler.group;
        if (handler.pattern == pattern && handler_group == group && handler.handler) {
          handlers.push_back({service, &handler, group});
        }
      }
    }
  }
  return handlers;
}

std::vector<Broker::LocalEventHandler> Broker::local_handlers_matching(
    const std::string& event, const std::vector<std::string>& groups) const {
  std::vector<LocalEventHandler> handlers;
  for (const auto& service : services_) {
    for (const auto& handler : service->schema.events) {
      const std::string& group = handler.group.empty() ? service->schema.name : handler.group;
      if (!groups.empty() && std::find(groups.begin(), groups.end(), group) == groups.end()) {
        continue;
      }
      if (!handler.handler || !protocol::match_event(event, handler.pattern)) continue;
      handlers.push_back({service, &handler, group});
    }
  }
  return handlers;
}

// The one place local event handlers run, whichever way the event came (emit, broadcast,
// broadcastLocal, a remote EVENT). A handler that throws is logged and counted; the others
// still run and the node keeps serving. `groups` empty: each handler sees its own group.
void Broker::deliver_local_event(const ContextPtr& ctx,
                                 const std::vector<LocalEventHandler>& handlers,
                                 const std::vector<std::string>& groups) {
  for (size_t i = 0; i < handlers.size(); ++i) {
    const LocalEventHandler& target = handlers[i];
    // Each handler gets its own context; the last one takes the original instead of a copy.
    auto local_ctx = i + 1 < handlers.size() ? std::make_shared<Context>(*ctx) : ctx;
    local_ctx->event_groups = groups.empty() ? std::vector<std::string>{target.group} : groups;
    local_ctx->service = target.service->full_name;
    // A handler may add or remove services: `target.service` keeps this one's schema alive.
    const EventHandler handler = target.schema->handler;
    try {
      handler(local_ctx);
    } catch (const std::exception& e) {
      counters_.handler_errors++;
      component_logger("broker")->warn("event handler '{}' of '{}' threw: {}",
                                       target.schema->pattern, target.service->full_name, e.what());
    } catch (...) {
      counters_.handler_errors++;
      component_logger("broker")->warn("event handler '{}' of '{}' threw a non-standard exception",
                                       target.schema->pattern, target.service->full_name);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Calls

void Broker::stamp_received_events(bool on) {
  transit_->stamp_received_events(on);
}

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
  transit_->send_request(target, ctx, options.parent, std::move(done));
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
    for (const auto& group : groups) transit_->send_balanced_event(group, *ctx);
    return;
  }
  std::map<std::string, std::vector<std::string>> remote_groups;
  std::vector<std::pair<std::string, std::string>> local_lists;  // (pattern, group)
  for (auto* list : lists) {
    const EventEndpoint* endpoint = registry_.pick_event_endpoint(*list, settings_.prefer_local);
    if (!endpoint) continue;
    if (endpoint->local) {
      local_lists.emplace_back(list->pattern, list->group);
    } else {
      auto& groups = remote_groups[endpoint->node_id];
      if (std::find(groups.begin(), groups.end(), list->group) == groups.end()) {
        groups.push_back(list->group);
      }
    }
  }
  for (const auto& [node_id, groups] : remote_groups) {
    transit_->send_event(node_id, *ctx, &groups, false);
  }
  if (local_lists.empty()) return;
  asio::post(loop_, [this, alive = std::weak_ptr<bool>(alive_), ctx, local_lists] {
    if (!alive.expired()) deliver_local_event(ctx, local_handlers_of(local_lists), {});
  });
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
      if (endpoint.local) continue;
      if (options.nodes.empty() || std::find(options.nodes.begin(), options.nodes.end(),
                                             endpoint.node_id) != options.nodes.end()) {
        nodes.insert(endpoint.node_id);
      }
    }
  }
  // The groups the receivers see: the caller's, or in disableBalancer mode all of them (as JS).
  const std::vector<std::string>* groups = !options.groups.empty()      ? &options.groups
                                           : settings_.disable_balancer ? &all_groups
                                                                        : nullptr;
  for (const auto& node_id : nodes) transit_->send_event(node_id, *ctx, groups, true);
  if (options.remote_only) return;
  asio::post(loop_, [this, alive = std::weak_ptr<bool>(alive_), ctx, groups = options.groups] {
    if (!alive.expired())
      deliver_local_event(ctx, local_handlers_matching(ctx->name, groups), groups);
  });
}

void Broker::broadcast_on_shared_subject(const std::string& event, Json data, EmitOptions options) {
  auto ctx = make_context(event, std::move(data), options.meta, options.headers, options.parent);
  ctx->event_type = "broadcast";
  transit_->send_shared_event(*ctx, options.groups);
}

void Broker::broadcast_local(const std::string& event, Json data, EmitOptions options) {
  auto ctx = make_context(event, std::move(data), options.meta, options.headers, options.parent);
  ctx->event_type = "broadcastLocal";
  asio::post(loop_, [this, alive = std::weak_ptr<bool>(alive_), ctx, groups = options.groups] {
    if (!alive.expired())
      deliver_local_event(ctx, local_handlers_matching(ctx->name, groups), groups);
  });
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
    log_with(log, spdlog::level::warn, {{"nodeID", id}, {"reason", "heartbeat timeout"}},
             "node left: no heartbeat within heartbeatTimeout");
    registry_.disconnect_node(id, now, uptime());
    transit_->reject_pending_for(id);
  }
  for (const auto& id : registry_.remove_offline_nodes(
           now, seconds_to_ms(settings_.clean_offline_nodes_timeout_s))) {
    log_with(log, spdlog::level::info, {{"nodeID", id}}, "offline node removed from the registry");
  }
}

}  // namespace steedos::moleculer
