// steedos-socket: a Moleculer node serving the Steedos `socket` service over Socket.IO.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "common/log.hpp"
#include "gateway/connection_limits.hpp"
#include "gateway/http_server.hpp"
#include "gateway/socketio_server.hpp"
#include "moleculer/system_info.hpp"
#include "node_runner.hpp"
#include "probe.hpp"
#include "services/gateway_hub.hpp"
#include "services/health_probes.hpp"
#include "services/jetstream_recovery_store.hpp"
#include "services/node_metrics.hpp"
#include "services/socket_service.hpp"
#include "services/steedos_auth_rules.hpp"

namespace {

namespace fs = std::filesystem;
using steedos::Json;
using steedos::moleculer::Broker;
using steedos::services::Config;

// Folders are looked up next to the binary's repository first, then the working directory, so
// both `build/steedos-socket` in a checkout and an installed copy (bin/ -> share/) find them.
// With `holding`, only a folder that holds that file counts.
std::string find_folder(const std::vector<std::string>& relative, const std::string& holding = "") {
  std::vector<fs::path> roots;
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) roots.push_back(exe.parent_path().parent_path());
  roots.push_back(fs::current_path(ec));
  for (const auto& root : roots) {
    for (const auto& candidate : relative) {
      if (!fs::is_directory(root / candidate, ec)) continue;
      if (holding.empty() || fs::is_regular_file(root / candidate / holding, ec)) {
        return (root / candidate).string();
      }
    }
  }
  return {};
}

// gateway.clientBundle (checked by the config), else the folder the install put there:
// client/ of the repository (scripts/setup.sh runs `npm ci` there) or <prefix>/share.
// A missing default is not fatal: the node runs without the bundle.
std::string client_bundle(const steedos::services::GatewaySettings& gateway) {
  if (!gateway.serve_client) return {};
  if (!gateway.client_bundle.empty()) return gateway.client_bundle;
  const auto dist = find_folder(
      {"client/node_modules/socket.io-client/dist", "share/steedos-socket/socket.io-client"},
      "socket.io.js");
  if (!dist.empty()) return dist;
  steedos::component_logger("gateway")->warn(
      "gateway.clientBundle: no socket.io-client bundle installed (scripts/setup.sh "
      "installs it in client/); {}socket.io.js is not served",
      gateway.path);
  return {};
}

class Gateway final : public steedos::app::NodeParts {
 public:
  Gateway(Broker& broker, const Config& config)
      : config_(config),
        server_(broker.loop(), server_options(config)),
        io_(broker.loop(), socketio_options(config)),
        hub_(io_.of("/"), &server_),
        service_(broker, hub_, config),
        readiness_(broker, config.service_name, config.auth.action) {
    service_.count_refused_origins([this] { return server_.stats().refused_origins; });
    service_.count_malformed([this] { return io_.protocol_violations(); });
    service_.count_packet_limits([this] {
      const auto& counts = io_.limit_counts();
      return steedos::services::PacketLimitCounts{counts.attachments, counts.event_name,
                                                  counts.packet_size, counts.json_depth};
    });
    service_.count_connection_limits([this] { return connection_limit_counts(); });
    if (config.gateway.recovery.enabled) {
      setup_jetstream_store(broker, config);
      service_.count_recovery([this] { return recovery_stats(); });
      steedos::log_with(
          steedos::component_logger("gateway"), spdlog::level::info,
          {{"maxDisconnectionDuration", config.gateway.recovery.max_disconnection_duration_ms},
           {"store", store_name()}},
          "connection state recovery on: {} store, sockets kept {} ms after a dropped "
          "connection",
          store_name(), config.gateway.recovery.max_disconnection_duration_ms);
    }
    steedos::gateway::EngineOptions engine;
    engine.path = config.gateway.path;
    engine.ping_interval_ms = config.gateway.ping_interval_ms;
    engine.ping_timeout_ms = config.gateway.ping_timeout_ms;
    engine.max_payload = config.gateway.max_http_buffer_size;
    engine.max_buffered_bytes = config.gateway.max_buffered_bytes;
    engine.max_handshakes_per_second = config.gateway.max_handshakes_per_second;
    engine.max_polling_sessions = config.gateway.max_polling_sessions;
    // Each session keeps only the handshake headers the service reads (at CONNECT), not the
    // URL and query: an idle connection holds no copy of the rest of its request.
    engine.handshake_headers.emplace(steedos::services::rules::kHeadersRead.begin(),
                                     steedos::services::rules::kHeadersRead.end());
    engine.keep_handshake_url = false;
    // The socket.io-client bundle, as the Node server serves it (serveClient).
    const std::string dist = client_bundle(config.gateway);
    if (!dist.empty()) {
      for (const char* file :
           {"socket.io.js", "socket.io.min.js", "socket.io.js.map", "socket.io.min.js.map"}) {
        server_.mount_file(engine.path + file, dist + "/" + file,
                           std::string(file).find(".map") != std::string::npos
                               ? "application/json"
                               : "application/javascript; charset=utf-8");
      }
    }
    // Probes first: never behind the Origin policy, auth or the static folder.
    server_.mount_handler(config.gateway.health_path, steedos::services::health_response);
    server_.mount_handler(config.gateway.ready_path, [this] {
      return steedos::services::readiness_response(readiness_.reasons());
    });
    if (config.metrics.enabled) mount_metrics(broker, config);
    server_.mount_engine(engine, io_);
    std::string web = find_folder({"web", "share/steedos-socket/web"});
    if (!web.empty()) server_.mount_directory("/", web);
    broker.add_service(service_.schema());
  }

  ~Gateway() override {
    // No history delivery into the service once it starts going.
    if (cluster_history_) cluster_history_->stop();
    // The service goes before the server: no socket may keep a session of it, not even one
    // still waiting for its recovery store (those the service cannot see).
    io_.release_socket_data();
  }

  void start() override {
    server_.listen();
    if (metrics_server_) {
      const auto port = metrics_server_->listen();
      steedos::component_logger("gateway")->info("metrics.port: {} served on port {}",
                                                 config_.metrics.path, port);
    }
  }
  void stop_accepting() override {
    readiness_.set_draining();  // connections kept open (keep-alive probes) now read 503
    server_.stop_accepting();
    if (metrics_server_) metrics_server_->stop_accepting();
  }
  void stop() override {
    server_.stop();
    if (metrics_server_) metrics_server_->stop();
    // The sockets closed above were kept ("server shutting down"): the node exits once the
    // cluster store has them, so a client restores on another node whatever this one did.
    if (cluster_sessions_ && io_.recovery_store()) {
      saving_sessions_ = true;
      io_.recovery_store()->flush([this] { saving_sessions_ = false; });
    }
  }
  size_t open_connections() const override {
    // Work the drain waits for as well: kept sessions being saved, events being stored.
    return server_.open_connections() +
           (metrics_server_ ? metrics_server_->open_connections() : 0) +
           (saving_sessions_ ? 1 : 0) + service_.history_publishes_in_flight();
  }

 private:
  static steedos::gateway::SocketIoOptions socketio_options(const Config& config) {
    steedos::gateway::SocketIoOptions options;
    options.connect_timeout_ms = config.gateway.connect_timeout_ms;
    // The service reads the headers in its connect hook only (one namespace): the credentials
    // they carry are not kept for the session's life.
    options.keep_handshake_headers = false;
    options.max_attachments = config.gateway.max_attachments;
    options.max_event_name_length = config.gateway.max_event_name_length;
    // One binary packet may buffer as many attachment bytes as one message may carry
    // (gateway.maxHttpBufferSize), not more: its parts arrive as separate messages.
    options.max_attachment_bytes = config.gateway.max_http_buffer_size;
    const auto& recovery = config.gateway.recovery;
    options.recovery.enabled = recovery.enabled;
    options.recovery.max_disconnection_duration_ms = recovery.max_disconnection_duration_ms;
    options.recovery.max_sessions = recovery.max_sessions;
    options.recovery.max_packets = recovery.max_packets;
    return options;
  }

  static steedos::gateway::ServerOptions server_options(const Config& config) {
    steedos::gateway::ServerOptions options;
    options.host = config.gateway.host;
    options.port = static_cast<uint16_t>(config.gateway.port);
    options.origins = config.gateway.cors_origins;
    log_origin_policy(options.origins);
    options.max_connections_per_address = config.gateway.max_connections_per_address;
    options.max_header_bytes = config.gateway.max_header_bytes;
    options.headers_timeout = std::chrono::milliseconds(config.gateway.headers_timeout_ms);
    options.max_connections = max_connections(config.gateway);
    options.io_threads = io_threads(config.gateway);
    return options;
  }

  /// gateway.ioThreads, or (null) the number of cores.
  static size_t io_threads(const steedos::services::GatewaySettings& gateway) {
    const size_t threads = gateway.io_threads
                               ? *gateway.io_threads
                               : std::max<size_t>(1, std::thread::hardware_concurrency());
    steedos::component_logger("gateway")->info("gateway.ioThreads{}: {} write thread(s)",
                                               gateway.io_threads ? "" : " null (the cores)",
                                               threads);
    return threads;
  }

  /// gateway.maxConnections, or (null) the open-file limit minus the descriptors kept for the
  /// transporter, logs and the listener, so refusing with 503 comes before EMFILE.
  static size_t max_connections(const steedos::services::GatewaySettings& gateway) {
    if (gateway.max_connections) return *gateway.max_connections;
    const uint64_t nofile = steedos::gateway::open_file_limit();
    const size_t derived = steedos::gateway::max_connections_for_fd_limit(nofile);
    steedos::component_logger("gateway")->info(
        "gateway.maxConnections null: {} (RLIMIT_NOFILE {} minus {} reserved)", derived, nofile,
        steedos::gateway::kReservedDescriptors);
    return derived;
  }

  /// metrics.*: GET metrics.path on the gateway port (before the engine, no Origin check, as the
  /// probes), and on metrics.port when set: a second listener that serves nothing else.
  void mount_metrics(Broker& broker, const Config& config) {
    steedos::services::NodeMetrics::Sources sources;
    sources.service = &service_;
    sources.broker = &broker;
    sources.sent = [this] { return io_.sent(); };
    sources.transporter = config.transport.kind == steedos::services::TransportSettings::Kind::Redis
                              ? "redis"
                              : "nats";
    sources.version = steedos::moleculer::client_info().value("version", "");
    metrics_ = std::make_unique<steedos::services::NodeMetrics>(std::move(sources));
    service_.observe_latencies(metrics_->observers());
    broker.stamp_received_events(true);
    auto scrape = [this] { return metrics_->response(); };
    server_.mount_handler(config.metrics.path, scrape);
    if (config.metrics.port) {
      steedos::gateway::ServerOptions options;
      options.host = config.gateway.host;
      options.port = static_cast<uint16_t>(*config.metrics.port);
      metrics_server_ =
          std::make_unique<steedos::gateway::GatewayServer>(broker.loop(), std::move(options));
      metrics_server_->mount_handler(config.metrics.path, scrape);
    }
  }

  const char* store_name() const { return cluster_sessions_ ? "jetstream" : "memory"; }

  /// gateway.connectionStateRecovery.store "jetstream", or null with JetStream on the
  /// transporter's NATS: the history stream and the sessions bucket, shared by every gateway
  /// (services/jetstream_recovery_store.hpp). Otherwise the server keeps its memory store.
  /// Blocking requests to NATS: at construction, before the loop runs.
  void setup_jetstream_store(Broker& broker, const Config& config) {
    const auto& recovery = config.gateway.recovery;
    if (recovery.store == "memory") return;
    const bool asked = recovery.store == "jetstream";
    auto unavailable = [asked](const std::string& why) {
      if (asked) {
        throw std::runtime_error("gateway.connectionStateRecovery.store \"jetstream\": " + why);
      }
      steedos::component_logger("gateway")->warn(
          "gateway.connectionStateRecovery.store null: {}; memory store (a client recovers only "
          "on the node it was connected to)",
          why);
    };
    // The transporter's NATS, or servers of their own (a cluster on Redis adds a NATS for it).
    const bool on_redis =
        config.transport.kind == steedos::services::TransportSettings::Kind::Redis;
    const std::string servers = !recovery.jetstream_servers.empty() ? recovery.jetstream_servers
                                : on_redis                          ? std::string()
                                                                    : config.broker.transporter;
    if (servers.empty()) {
      unavailable(
          "JetStream needs NATS servers: the transporter is Redis and "
          "gateway.connectionStateRecovery.jetstream.servers is not set");
      return;
    }
    const auto duration = std::chrono::milliseconds(recovery.max_disconnection_duration_ms);
    const auto storage = recovery.jetstream_memory_storage ? steedos::transport::JsStorage::Memory
                                                           : steedos::transport::JsStorage::File;
    steedos::services::ClusterSessionsOptions sessions;
    sessions.bucket = recovery.jetstream_bucket;
    sessions.node_id = broker.node_id();
    sessions.urls = servers;
    sessions.max_disconnection_duration = duration;
    // A safety net only (nodes expire records themselves): well past any kept session.
    sessions.max_age = std::max<std::chrono::milliseconds>(std::chrono::minutes(30), 2 * duration);
    sessions.max_bytes = recovery.jetstream_max_bytes;
    sessions.replicas = recovery.jetstream_replicas;
    sessions.storage = storage;
    auto cluster_sessions =
        std::make_unique<steedos::services::ClusterSessions>(broker.loop(), sessions);
    if (auto opened = cluster_sessions->open(); !opened.ok()) {
      unavailable(describe_jetstream_error(opened));
      return;
    }
    steedos::services::ClusterHistoryOptions history;
    history.stream = recovery.jetstream_stream;
    history.subject = "steedos-socket.history." + recovery.jetstream_stream;
    history.url = servers;
    // Twice as long: a client's missed events start when its connection died, which the node
    // notices up to a ping timeout later, and maxDisconnectionDuration counts from there.
    history.max_age = 2 * duration;
    history.max_bytes = recovery.jetstream_max_bytes;
    history.replicas = recovery.jetstream_replicas;
    history.storage = storage;
    auto cluster_history =
        std::make_unique<steedos::services::ClusterHistory>(broker.loop(), history);
    auto started = cluster_history->start(
        [this](uint64_t sequence, const steedos::services::HistoryEvent& event) {
          service_.deliver_from_history(sequence, event);
        });
    if (!started.ok()) {
      unavailable(describe_jetstream_error(started));
      return;
    }
    steedos::services::JetStreamRecoveryOptions options;
    options.max_disconnection_duration = duration;
    options.max_replay = recovery.max_packets;
    options.max_recent = recovery.max_packets;
    auto encode = [this](const steedos::services::HistoryEvent& event, std::string offset) {
      const std::string_view args = steedos::services::history_event_args(event);
      return io_.of("/").encode_event_at(
          event.name, args.empty() ? steedos::gateway::RawArgs{} : steedos::gateway::RawArgs{args},
          std::move(offset));
    };
    auto alive_nodes = [&broker] {
      std::unordered_set<std::string> ids;
      for (const auto& [id, node] : broker.registry().nodes()) {
        if (node.local || node.available) ids.insert(id);
      }
      return ids;
    };
    io_.set_recovery_store(std::make_unique<steedos::services::JetStreamRecoveryStore>(
        broker.loop(), *cluster_history, *cluster_sessions, options, std::move(encode),
        std::move(alive_nodes)));
    service_.use_history(cluster_history.get());
    cluster_sessions_ = std::move(cluster_sessions);
    cluster_history_ = std::move(cluster_history);
  }

  static std::string describe_jetstream_error(const steedos::transport::JsStatus& status) {
    if (status.error == steedos::transport::JsError::NotEnabled) {
      return "JetStream is not enabled on the NATS server (nats-server -js)";
    }
    return std::string("JetStream unavailable: ") + steedos::transport::to_string(status.error) +
           (status.message.empty() ? "" : " (" + status.message + ")");
  }

  /// socket.stats `recovery.jetstream`: the history and the sessions bucket since start.
  Json jetstream_stats() const {
    const auto history = cluster_history_->counts();
    const auto sessions = cluster_sessions_->counts();
    return Json{{"published", history.published},
                {"publishedCopies", history.published_copies},
                {"publishFailed", history.publish_failed},
                {"deliveredWithoutHistory", service_.history_publish_failures()},
                {"delivered", history.delivered},
                {"lastSequence", cluster_history_->last_delivered()},
                {"skippedSequences", history.skipped_sequences},
                {"malformed", history.malformed + sessions.malformed},
                {"takes", sessions.takes},
                {"taken", sessions.taken},
                {"takeRaces", sessions.take_races},
                {"expired", sessions.expired},
                {"lost", sessions.lost},
                {"queueFull", sessions.queue_full},
                {"errors", sessions.errors}};
  }

  /// socket.stats `recovery`: what is kept now and what recovery did since start.
  Json recovery_stats() const {
    const auto counts = io_.recovery_counts();
    Json stats = Json{{"store", store_name()},
                      {"sessions", io_.kept_session_count()},
                      {"packets", io_.recorded_packet_count()},
                      {"kept", counts.kept},
                      {"recovered", counts.recovered},
                      {"refused", counts.refused},
                      {"unknown", counts.unknown},
                      {"expired", counts.expired},
                      {"dropped", counts.dropped},
                      {"evictedSessions", counts.evicted_sessions},
                      {"evictedPackets", counts.evicted_packets},
                      {"untrackedTargets", counts.untracked_targets},
                      {"replayed", counts.replayed}};
    if (cluster_history_) stats["jetstream"] = jetstream_stats();
    return stats;
  }

  /// socket.stats `limits`: what each connection-level limit refused or closed.
  Json connection_limit_counts() const {
    const auto limits = server_.stats().limits;
    return Json{{"connections", limits.connections},
                {"connectionsPerAddress", limits.connections_per_address},
                {"handshakeRate", limits.handshake_rate},
                {"pollingSessions", limits.polling_sessions},
                {"slowConsumers", limits.slow_consumers},
                {"headerSize", limits.header_size},
                {"headersTimeout", limits.headers_timeout},
                {"messageSize", limits.message_size},
                {"acceptPaused", limits.accept_paused}};
  }

  static void log_origin_policy(const steedos::gateway::OriginPolicy& policy) {
    using Mode = steedos::gateway::OriginPolicy::Mode;
    const auto log = steedos::component_logger("gateway");
    switch (policy.mode()) {
      case Mode::SameSite:
        log->info(
            "gateway.corsOrigins null: browser origins of the gateway's own site only "
            "(Public Suffix List: {})",
            steedos::gateway::public_suffix_source());
        break;
      case Mode::List:
        log->info("gateway.corsOrigins: {} listed origin(s) only", policy.origins().size());
        break;
      case Mode::Any:
        log->info("gateway.corsOrigins \"*\": any origin, without credentials");
        break;
    }
  }

  Config config_;
  steedos::gateway::GatewayServer server_;
  // The `jetstream` recovery store's parts (null otherwise): before io_, whose store uses them.
  std::unique_ptr<steedos::services::ClusterSessions> cluster_sessions_;
  std::unique_ptr<steedos::services::ClusterHistory> cluster_history_;
  bool saving_sessions_ = false;  // a drain's flush of the kept sessions in progress
  steedos::gateway::SocketIoServer io_;
  steedos::services::GatewayHub hub_;  // the namespace `/`, as the service sees it
  steedos::services::SocketService service_;
  steedos::services::Readiness readiness_;
  std::unique_ptr<steedos::services::NodeMetrics> metrics_;  // null when metrics.enabled false
  std::unique_ptr<steedos::gateway::GatewayServer> metrics_server_;  // metrics.port only
};

}  // namespace

int main(int argc, char** argv) {
  // The container's HEALTHCHECK: a client of a running node, not a second node.
  if (steedos::app::probe_requested(argc, argv)) return steedos::app::run_probe(argc, argv);
  return steedos::app::run_node_with(
      argc, argv,
      [](Broker& broker, const Config& config) {
        return std::make_unique<Gateway>(broker, config);
      },
      "  --probe health|ready  GET the running node's probe on this host: exit 0 on 200, else 1 "
      "(2: bad configuration)\n");
}
