#include "services/node_metrics.hpp"

#include <prometheus/collectable.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <chrono>
#include <utility>

#include "common/process_stats.hpp"

namespace steedos::services {

const std::vector<double> kAuthDurationBuckets = {.001, .0025, .005, .01, .025, .05, .1,
                                                  .25,  .5,    1,    2.5, 5,    10};
const std::vector<double> kEmitToWriteBuckets = {.0001, .00025, .0005, .001, .0025, .005, .01,
                                                 .025,  .05,    .1,    .25,  .5,    1};

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

constexpr const char* kTransports[2] = {"polling", "websocket"};  // index = TransportKind

MetricFamily family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

void add(MetricFamily& f, double value, Labels labels = {}) {
  ClientMetric metric;
  metric.label = std::move(labels);
  if (f.type == MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  f.metric.push_back(std::move(metric));
}

double number(const Json& value) {
  return value.is_number() ? value.get<double>() : 0.0;
}

/// A counter family with one series per slot of `counts`, labelled `label`=label_of(slot).
template <size_t N, class LabelOf>
MetricFamily by_slot(std::string name, std::string help, const char* label,
                     const uint64_t (&counts)[N], LabelOf label_of) {
  auto f = family(std::move(name), std::move(help), MetricType::Counter);
  for (size_t i = 0; i < N; ++i) add(f, static_cast<double>(counts[i]), {{label, label_of(i)}});
  return f;
}

}  // namespace

class NodeMetrics::Collector final : public prometheus::Collectable {
 public:
  explicit Collector(Sources sources) : sources_(std::move(sources)) {}

  // Runs on the event loop thread (the HTTP server's scrape handler), as every writer of the
  // counters read here does: no locks, no atomics needed.
  std::vector<MetricFamily> Collect() const override {
    std::vector<MetricFamily> out;
    if (sources_.service != nullptr) collect_service(out);
    if (sources_.broker != nullptr) collect_broker(out);
    collect_process(out);
    return out;
  }

 private:
  void collect_service(std::vector<MetricFamily>& out) const {
    const SocketService& service = *sources_.service;
    // The very reply of socket.stats: whatever it says, the scrape says.
    // One pass over the clients for both (it is most of a scrape's cost: 10,000 clients ~5 ms).
    const ConnectionCounts connections = service.connection_counts();
    const Json stats = service.stats(connections);
    const SocketMetricCounters& counters = service.metric_counters();

    auto now =
        family("steedos_socket_connections", "Connected Socket.IO clients now.", MetricType::Gauge);
    for (size_t t = 0; t < 2; ++t) {
      add(now, static_cast<double>(connections.by_transport_auth[t][0]),
          {{"transport", kTransports[t]}, {"auth", "anonymous"}});
      add(now, static_cast<double>(connections.by_transport_auth[t][1]),
          {{"transport", kTransports[t]}, {"auth", "authenticated"}});
    }
    out.push_back(std::move(now));

    out.push_back(by_slot("steedos_socket_connects_total", "Socket.IO CONNECTs accepted.", "auth",
                          counters.connects,
                          [](size_t i) { return i == 0 ? "anonymous" : "authenticated"; }));
    out.push_back(by_slot("steedos_socket_connects_refused_total",
                          "Socket.IO CONNECTs refused (transport closed, fail closed).", "reason",
                          counters.connects_refused, [](size_t i) {
                            return connect_refusal_label(static_cast<ConnectRefusal>(i));
                          }));
    out.push_back(by_slot(
        "steedos_socket_disconnects_total", "Socket.IO clients gone, by disconnect reason.",
        "reason", counters.disconnects,
        [](size_t i) { return disconnect_reason_label(static_cast<DisconnectReason>(i)); }));

    auto rooms = family("steedos_socket_rooms", "Named rooms with at least one member now.",
                        MetricType::Gauge);
    add(rooms, number(stats["rooms"]));
    out.push_back(std::move(rooms));

    out.push_back(by_slot(
        "steedos_socket_subscriptions_refused_total", "Subscribe and unsubscribe requests refused.",
        "reason", counters.subscriptions_refused,
        [](size_t i) { return subscribe_refusal_label(static_cast<SubscribeRefusal>(i)); }));

    auto events =
        family("steedos_socket_events_received_total",
               "Moleculer events handled, by the service's event pattern.", MetricType::Counter);
    const auto& patterns = socket_event_patterns();
    for (size_t i = 0; i < patterns.size() && i < counters.events_by_pattern.size(); ++i) {
      add(events, static_cast<double>(counters.events_by_pattern[i]), {{"pattern", patterns[i]}});
    }
    out.push_back(std::move(events));

    out.push_back(counter("steedos_socket_deliveries_total", "Events delivered to a client.",
                          stats["events"]["out"]));

    const gateway::SentCounts sent = sources_.sent ? sources_.sent() : gateway::SentCounts{};
    out.push_back(by_slot("steedos_socket_packets_sent_total",
                          "Socket.IO packets written to clients.", "transport", sent.packets,
                          [](size_t i) { return kTransports[i]; }));
    out.push_back(by_slot("steedos_socket_sent_bytes_total",
                          "Bytes of the Socket.IO packets written (WebSocket frames, polling "
                          "payloads).",
                          "transport", sent.bytes, [](size_t i) { return kTransports[i]; }));

    out.push_back(by_slot(
        "steedos_socket_payloads_rejected_total", "Service event payloads rejected.", "reason",
        counters.payloads_rejected,
        [](size_t i) { return rules::reject_reason_label(static_cast<rules::RejectReason>(i)); }));

    auto limits =
        family("steedos_socket_limit_refusals_total",
               "Refusals by limit (the keys of socket.stats limits).", MetricType::Counter);
    for (const auto& [key, value] : stats["limits"].items())
      add(limits, number(value), {{"limit", key}});
    out.push_back(std::move(limits));

    if (stats.contains("recovery")) collect_recovery(stats["recovery"], out);

    out.push_back(counter("steedos_socket_slow_consumer_disconnects_total",
                          "Clients closed over gateway.maxBufferedBytes.",
                          stats["limits"].value("slowConsumers", Json(0))));
    out.push_back(counter("steedos_socket_refused_origins_total",
                          "Requests refused for their Origin.", stats["refusedOrigins"]));
    out.push_back(counter("steedos_socket_malformed_total",
                          "Sessions closed for a malformed packet.", stats["malformed"]));
    out.push_back(counter("steedos_socket_auth_calls_total", "Remote auth calls made.",
                          stats["auth"]["calls"]));
    out.push_back(counter("steedos_socket_auth_failures_total",
                          "Connections refused because their auth call failed.",
                          stats["auth"]["failures"]));
    out.push_back(counter("steedos_socket_auth_timeouts_total", "Auth calls that timed out.",
                          Json(counters.auth_timeouts)));
    out.push_back(counter("steedos_socket_auth_cache_hits_total",
                          "CONNECTs answered from the auth cache.",
                          Json(counters.auth_cache_hits)));
  }

  // Connection state recovery (gateway.connectionStateRecovery on): socket.stats `recovery`.
  static void collect_recovery(const Json& recovery, std::vector<MetricFamily>& out) {
    auto kept = family("steedos_socket_recovery_kept_sessions",
                       "Dropped sockets kept for recovery now.", MetricType::Gauge);
    add(kept, number(recovery["sessions"]));
    out.push_back(std::move(kept));
    auto packets = family("steedos_socket_recovery_recorded_packets",
                          "Packets held for replay now.", MetricType::Gauge);
    add(packets, number(recovery["packets"]));
    out.push_back(std::move(packets));
    // One series per outcome, each from the start.
    static const std::pair<const char*, const char*> kOutcomes[] = {
        {"kept", "kept"},
        {"recovered", "recovered"},
        {"refused", "refused"},
        {"unknown", "unknown"},
        {"expired", "expired"},
        {"dropped", "dropped"},
        {"evictedSessions", "evicted_session"},
        {"evictedPackets", "evicted_packet"},
        {"untrackedTargets", "untracked_target"},
    };
    auto outcomes = family("steedos_socket_recovery_total",
                           "Connection state recovery: sockets kept, recovered, refused, claims "
                           "unknown, expired, dropped, evictions (the keys of socket.stats "
                           "recovery).",
                           MetricType::Counter);
    for (const auto& [key, label] : kOutcomes) {
      add(outcomes, number(recovery.value(key, Json(0))), {{"outcome", label}});
    }
    out.push_back(std::move(outcomes));
    out.push_back(counter("steedos_socket_recovery_replayed_total",
                          "Missed packets sent on restores.", recovery["replayed"]));
    if (recovery.contains("jetstream")) collect_jetstream_store(recovery["jetstream"], out);
  }

  // The `jetstream` store: socket.stats `recovery.jetstream`.
  static void collect_jetstream_store(const Json& js, std::vector<MetricFamily>& out) {
    auto by_outcome = [&js](const char* name, const char* help,
                            std::initializer_list<std::pair<const char*, const char*>> outcomes) {
      auto f = family(name, help, MetricType::Counter);
      for (const auto& [key, label] : outcomes) {
        add(f, number(js.value(key, Json(0))), {{"outcome", label}});
      }
      return f;
    };
    out.push_back(by_outcome("steedos_socket_recovery_history_total",
                             "The event history stream: events this node published (stored, "
                             "copies of one stored by another node, failed), delivered from it, "
                             "delivered without it, skipped.",
                             {{"published", "published"},
                              {"publishedCopies", "copy"},
                              {"publishFailed", "publish_failed"},
                              {"delivered", "delivered"},
                              {"deliveredWithoutHistory", "without_history"},
                              {"malformed", "malformed"},
                              {"skippedSequences", "skipped_sequence"}}));
    auto sequence =
        family("steedos_socket_recovery_history_sequence",
               "The last history sequence delivered here (the newest offset).", MetricType::Gauge);
    add(sequence, number(js["lastSequence"]));
    out.push_back(std::move(sequence));
    out.push_back(by_outcome("steedos_socket_recovery_bucket_total",
                             "The sessions bucket: takes for restores (won, raced), expiries done "
                             "by this node, writes refused (lost), jobs refused, errors.",
                             {{"takes", "take"},
                              {"taken", "taken"},
                              {"takeRaces", "take_race"},
                              {"expired", "expired"},
                              {"lost", "lost"},
                              {"queueFull", "queue_full"},
                              {"errors", "error"}}));
  }

  void collect_broker(std::vector<MetricFamily>& out) const {
    const moleculer::Broker& broker = *sources_.broker;
    const transport::TransporterStats bus = broker.transporter_stats();
    const Labels transporter = {{"transporter", sources_.transporter}};
    auto connected = family("steedos_socket_transporter_connected",
                            "1 when the bus connection is up.", MetricType::Gauge);
    add(connected, bus.connected ? 1 : 0, transporter);
    out.push_back(std::move(connected));
    const std::pair<const char*, uint64_t> bus_counters[] = {
        {"steedos_socket_transporter_reconnects_total", bus.reconnects},
        {"steedos_socket_transporter_messages_received_total", bus.messages_received},
        {"steedos_socket_transporter_messages_sent_total", bus.messages_sent},
        {"steedos_socket_transporter_received_bytes_total", bus.bytes_received},
        {"steedos_socket_transporter_sent_bytes_total", bus.bytes_sent},
    };
    const char* bus_help[] = {"Reconnections to the bus.", "Bus messages received.",
                              "Bus messages sent.", "Bus payload bytes received.",
                              "Bus payload bytes sent."};
    for (size_t i = 0; i < std::size(bus_counters); ++i) {
      auto f = family(bus_counters[i].first, bus_help[i], MetricType::Counter);
      add(f, static_cast<double>(bus_counters[i].second), transporter);
      out.push_back(std::move(f));
    }

    // $node.list with onlyAvailable, minus this node.
    size_t remote = 0;
    const auto& registry = broker.registry();
    for (const auto& [id, node] : registry.nodes()) {
      if (node.available && id != registry.local_node_id()) remote++;
    }
    auto nodes = family("steedos_socket_remote_nodes",
                        "Remote Moleculer nodes known and available.", MetricType::Gauge);
    add(nodes, static_cast<double>(remote));
    out.push_back(std::move(nodes));

    auto info =
        family("steedos_socket_info", "Build and node information (always 1).", MetricType::Gauge);
    add(info, 1,
        {{"node_id", broker.node_id()},
         {"version", sources_.version},
         {"transporter", sources_.transporter}});
    out.push_back(std::move(info));
  }

  static void collect_process(std::vector<MetricFamily>& out) {
    const ProcessStats process = read_process_stats();
    auto gauge = [&out](const char* name, const char* help, double value) {
      auto f = family(name, help, MetricType::Gauge);
      add(f, value);
      out.push_back(std::move(f));
    };
    auto cpu = family("process_cpu_seconds_total",
                      "Total user and system CPU time spent in seconds.", MetricType::Counter);
    add(cpu, process.cpu_seconds);
    out.push_back(std::move(cpu));
    gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
          static_cast<double>(process.resident_bytes));
    gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.",
          static_cast<double>(process.virtual_bytes));
    gauge("process_open_fds", "Number of open file descriptors.",
          static_cast<double>(process.open_fds));
    gauge("process_max_fds", "Maximum number of open file descriptors.",
          static_cast<double>(process.max_fds));
    gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
          process.start_time_seconds);
  }

  static MetricFamily counter(std::string name, std::string help, const Json& value) {
    auto f = family(std::move(name), std::move(help), MetricType::Counter);
    add(f, number(value));
    return f;
  }

  Sources sources_;
};

NodeMetrics::NodeMetrics(Sources sources)
    : collector_(std::make_unique<Collector>(std::move(sources))),
      registry_(std::make_shared<prometheus::Registry>()) {
  auth_duration_ = &prometheus::BuildHistogram()
                        .Name("steedos_socket_auth_duration_seconds")
                        .Help("Remote auth call latency.")
                        .Register(*registry_)
                        .Add({}, kAuthDurationBuckets);
  emit_to_write_ = &prometheus::BuildHistogram()
                        .Name("steedos_socket_emit_to_write_seconds")
                        .Help(
                            "From a Moleculer event read off the bus to the last socket write "
                            "of its fan-out.")
                        .Register(*registry_)
                        .Add({}, kEmitToWriteBuckets);
}

NodeMetrics::~NodeMetrics() = default;

LatencyObservers NodeMetrics::observers() {
  LatencyObservers observers;
  observers.auth_call = [histogram = auth_duration_](double seconds) {
    histogram->Observe(seconds);
  };
  observers.emit_to_write = [histogram = emit_to_write_](double seconds) {
    histogram->Observe(seconds);
  };
  return observers;
}

std::string NodeMetrics::scrape() const {
  auto families = collector_->Collect();
  auto histograms = registry_->Collect();
  families.insert(families.end(), std::make_move_iterator(histograms.begin()),
                  std::make_move_iterator(histograms.end()));
  return prometheus::TextSerializer().Serialize(families);
}

gateway::HttpResponse NodeMetrics::response() const {
  gateway::HttpResponse response;
  response.status = 200;
  response.content_type = kContentType;
  response.body = scrape();
  response.headers.emplace_back("Cache-Control", "no-store");
  return response;
}

}  // namespace steedos::services
