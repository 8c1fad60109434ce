#pragma once
// Node configuration (spec: gateway-contract.md §8): moleculer.config.json with Moleculer broker
// option names, overridden by environment variables. Parsing is separate from use: the broker
// and the gateway take plain structs.
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gateway/origin_policy.hpp"
#include "moleculer/settings.hpp"
#include "protocol/json.hpp"
#include "transport/redis_options.hpp"

namespace steedos::services {

/// gateway.connectionStateRecovery (issue 13): `false` or absent = off (as socket.io); `true` or
/// an object = on, with these defaults.
struct RecoverySettings {
  bool enabled = false;
  /// maxDisconnectionDuration (ms): how long a dropped socket is kept, and sent packets with it.
  int max_disconnection_duration_ms = 120000;
  /// skipMiddlewares: accepted for socket.io's option shape; a restore always re-checks the
  /// credentials (the auth cache answers it), whatever this says.
  bool skip_middlewares = true;
  /// store: "memory" (this node; bounded below), "jetstream" (cluster-wide, on the NATS
  /// transporter's servers; the node refuses to start without JetStream), or "" (absent or
  /// null): "jetstream" when the transporter is NATS and its server has JetStream, else
  /// "memory".
  std::string store;
  /// store "jetstream": the history stream and the sessions bucket (shared by every gateway).
  /// jetstream.servers: the NATS servers of the history and the sessions (comma-separated
  /// URLs); empty = the NATS transporter's. Needed for the jetstream store on Redis.
  std::string jetstream_servers;
  std::string jetstream_stream = "STEEDOS_SOCKET_HISTORY";
  std::string jetstream_bucket = "steedos_socket_sessions";
  int jetstream_replicas = 1;
  long long jetstream_max_bytes = 256LL << 20;  // each of the stream and the bucket
  bool jetstream_memory_storage = false;        // storage: "file" (default) or "memory"
  /// maxSessions / maxPackets: the memory store's bounds; the oldest go first, counted.
  size_t max_sessions = 100000;
  size_t max_packets = 100000;
};

struct GatewaySettings {
  std::string host = "0.0.0.0";
  int port = 5100;
  std::string path = "/socket.io/";
  int ping_interval_ms = 25000;
  int ping_timeout_ms = 20000;
  int connect_timeout_ms = 45000;
  /// gateway.drainTimeout: on SIGTERM/SIGINT the node stops accepting, closes every socket so
  /// its client reconnects elsewhere, leaves the cluster and exits within this many ms.
  int drain_timeout_ms = 5000;
  size_t max_http_buffer_size = 1000000;
  /// gateway.ioThreads: threads that write WebSocket output, the event loop included
  /// (gateway::WriteScheduler). nullopt (null): the number of cores, resolved at start.
  std::optional<size_t> io_threads;
  /// gateway.corsOrigins: null = the gateway's own site (with credentials), an array = exactly
  /// those origins (with credentials), "*" = any origin without credentials.
  gateway::OriginPolicy cors_origins;
  size_t max_rooms_per_socket = 1000;
  /// gateway.maxAttachments: binary attachments one incoming packet may carry; more closes the
  /// session as a protocol violation ("parse error").
  size_t max_attachments = 10;
  /// gateway.maxEventNameLength: bytes of the name of an event a client sends; a longer event is
  /// dropped (its ack answers {"error": ...}).
  size_t max_event_name_length = 256;
  /// gateway.maxSubscribesPerSecond: subscribe + unsubscribe requests per socket per second
  /// (a token bucket whose burst is the rate); over it the request is refused.
  int max_subscribes_per_second = 50;
  bool anonymous_rooms = false;
  std::vector<std::string> individual_room_parts = {"me", "notification-change"};
  std::vector<std::string> metadata_types = {"apps", "objects", "object_listviews",
                                             "object_actions", "object_fields"};
  /// gateway.clientBundle (socket.io's serveClient): the folder socket.io.js, socket.io.min.js
  /// and their .map files are served from, under `path`. null or true: the folder the install
  /// put there, found at start (client_bundle ""); false or "": no bundle (serve_client false);
  /// a path: that folder, checked by the parser to hold socket.io.js.
  bool serve_client = true;
  std::string client_bundle;

  // -- Connection-level limits (issue 9), enforced by gateway::GatewayServer and EngineServer;
  // -- refusals counted in socket.stats `limits`.
  /// gateway.maxConnections: TCP connections (HTTP + WebSocket) at once. nullopt (null): the
  /// process's RLIMIT_NOFILE minus a reserve, resolved when the gateway starts.
  std::optional<size_t> max_connections;
  /// gateway.maxConnectionsPerAddress: per remote IP; 0 = off.
  size_t max_connections_per_address = 0;
  /// gateway.maxHandshakesPerSecond: new Engine.IO sessions per second (burst = the rate);
  /// 0 = no limit.
  int max_handshakes_per_second = 2000;
  /// gateway.maxPollingSessions: long-polling sessions not upgraded; 0 = no limit.
  size_t max_polling_sessions = 10000;
  /// gateway.maxBufferedBytes: bytes queued per socket before it is closed ("slow consumer").
  size_t max_buffered_bytes = 4 * 1024 * 1024;
  /// gateway.maxHeaderBytes: request line + headers (431 above); at most 16000, the HTTP
  /// parser's own cap.
  size_t max_header_bytes = 16000;
  /// gateway.headersTimeout: ms from a request head's first byte to its end (408 after).
  int headers_timeout_ms = 10000;

  /// gateway.healthPath / gateway.readyPath: liveness and readiness probes (GET/HEAD, JSON,
  /// 200 or 503), served outside the engine path, without Origin checks or auth.
  std::string health_path = "/health";
  std::string ready_path = "/ready";

  RecoverySettings recovery;
};

struct AuthSettings {
  std::string action = "@steedos/service-accounts.getUserSession";
  int timeout_ms = 5000;
  int cache_ttl_s = 60;
  /// auth.maxInFlight: distinct auth calls (one per spaceId + token) in flight at once; a
  /// connect that would start one more is closed (fail closed, the client retries).
  size_t max_in_flight = 200;
};

/// metrics.*: the Prometheus endpoint (services/node_metrics.hpp).
struct MetricsSettings {
  /// metrics.enabled: false = no endpoint and no latency histograms (no per-event clock reads).
  bool enabled = true;
  /// metrics.path: GET path of the text exposition, on the gateway port (no Origin check).
  std::string path = "/metrics";
  /// metrics.port: nullopt (null) = the gateway port only; a port = also a listener of its own
  /// that serves the metrics path and nothing else.
  std::optional<int> port;
};

/// Which transporter the node runs (the broker knows only the Transporter interface). For NATS
/// the URL list stays in BrokerSettings::transporter; for Redis that string is a description
/// without credentials (transport::describe_redis) and `redis` holds the options.
struct TransportSettings {
  enum class Kind { Nats, Redis };
  Kind kind = Kind::Nats;
  transport::RedisOptions redis;  // used when kind == Redis
  /// NATS: transporter.options.pingInterval (ms) and maxPingOut (nats.js's names). With that
  /// many PINGs unanswered the connection counts as lost and the node moves to another server of
  /// the list: what notices a server that hangs without closing its socket. 5 s and 2 (nats.js:
  /// 2 minutes): a hung server is left after 10-15 s, about Moleculer's heartbeatTimeout.
  int nats_ping_interval_ms = 5000;
  int nats_max_pings_out = 2;
};

struct Config {
  moleculer::BrokerSettings broker;
  TransportSettings transport;
  GatewaySettings gateway;
  AuthSettings auth;
  MetricsSettings metrics;
  std::string service_name = "socket";  // "serviceName"
  /// "logFormat" (or --log-format): "text" lines, or "json" (one object per line).
  std::string log_format = "text";
  std::string source;  // the file it was read from, for the log
};

/// Invalid configuration: `key` names the offending key ("gateway.port", "TRANSPORTER", ...).
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string key, const std::string& reason)
      : std::runtime_error(key + ": " + reason), key_(std::move(key)) {}
  const std::string& key() const noexcept { return key_; }

 private:
  std::string key_;
};

using Environment = std::map<std::string, std::string>;

/// The process environment as a map (only the variables this node reads).
Environment read_environment();

/// Which file to read: `--config FILE` (cli_path), else $MOLECULER_CONFIG, else
/// ./moleculer.config.json. A missing default file is fine (all defaults): the result is then ""
/// (no file). A missing named file is a ConfigError (key "--config" or "MOLECULER_CONFIG").
std::string choose_config_path(const std::string& cli_path, const Environment& env);

/// Parses file text plus environment overrides (TRANSPORTER, NAMESPACE, NODEID, PORT, LOGLEVEL,
/// LOGFORMAT, PROTOCOL_VERSION; empty values count as unset) into a validated Config. "" means no
/// file (all defaults). Throws ConfigError naming the key. Unknown keys are ignored; a null value
/// keeps the default. Invalid JSON is reported with the key "moleculer.config.json".
Config parse_config(const std::string& file_text, const Environment& env);

/// As above; `source` (the file path) names the file in JSON syntax errors and in Config::source.
Config parse_config(const std::string& file_text, const Environment& env,
                    const std::string& source);

/// "text" or "json" (any case) as lower case; else ConfigError naming `key` ("logFormat",
/// "LOGFORMAT", "--log-format").
std::string check_log_format(const std::string& key, const std::string& value);

/// choose_config_path + read + parse_config. Throws ConfigError.
Config load_config(const std::string& cli_path, const Environment& env);

}  // namespace steedos::services
