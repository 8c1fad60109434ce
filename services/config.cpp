// Node configuration: moleculer.config.json + environment overrides (gateway-contract.md §8).
//
// Decisions beyond the spec:
// - A null value keeps the default, as `nodeID: null` / `transporter: null` do in
//   moleculer.config.js. Any other wrong type is a ConfigError naming the dotted key.
// - `protocolVersion` is sent on the wire as a string, so the string "4" or "5" is canonical; the
//   numbers 4 and 5 are accepted too and converted (people write `protocolVersion: 4`).
// - `gateway.port` 0 is accepted: the OS picks a free port (tests use it).
// - `logLevel` / LOGLEVEL are matched case-insensitively and stored lower-case; "warning" is not a
//   Moleculer level and is refused.
// - `gateway.clientBundle` is checked while parsing (a folder holding socket.io.js), so a wrong
//   path stops the node before it joins the cluster; a relative path is taken from the working
//   directory. Where the default folder lies depends on the install, so app/main.cpp finds it.
// - Empty environment variables count as unset (moleculer-runner tests them for truthiness).
//   `--config` wins over MOLECULER_CONFIG (moleculer-runner does the reverse; the brief asks this).
// - Transporter: NATS or Redis. `{"options": ...}` without a type is NATS (Moleculer needs a
//   type). Redis option keys are read by transport/redis_config; unknown ones are ignored, as
//   the NATS options are. For Redis, BrokerSettings::transporter is describe_redis() (no
//   password), and TransportSettings carries the options.
#include "services/config.hpp"

#include <unistd.h>

#include <sys/stat.h>
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>

#include "moleculer/system_info.hpp"
#include "transport/redis_config.hpp"

namespace steedos::services {

using moleculer::BrokerSettings;
using moleculer::host_name;

namespace {

constexpr const char* kDefaultTransporter = "nats://127.0.0.1:4222";
constexpr const char* kDefaultConfigFile = "./moleculer.config.json";
constexpr const char* kSupported = "only NATS or Redis is supported";

[[noreturn]] void fail(const std::string& key, const std::string& reason) {
  throw ConfigError(key, reason);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string trim(const std::string& s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return "";
  const auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

std::string dotted(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

/// Hides credentials ("nats://user:pass@host" -> "nats://***@host") before a value is echoed.
std::string redact(const std::string& value) {
  const auto scheme = value.find("://");
  const auto start = scheme == std::string::npos ? 0 : scheme + 3;
  const auto slash = value.find('/', start);
  const auto at = value.rfind('@', slash == std::string::npos ? std::string::npos : slash);
  if (at == std::string::npos || at < start) return value;
  return value.substr(0, start) + "***" + value.substr(at);
}

std::string shown(const std::string& value) {
  return "'" + redact(value) + "'";
}

// ---- typed readers: a missing or null key keeps the default -------------------------------

const Json* find(const Json& obj, const char* name) {
  const auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

bool integral(const Json& v, long long& out) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<unsigned long long>();
    if (u > static_cast<unsigned long long>(std::numeric_limits<long long>::max())) return false;
    out = static_cast<long long>(u);
    return true;
  }
  if (v.is_number_integer()) {
    out = v.get<long long>();
    return true;
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d) || std::trunc(d) != d || std::fabs(d) > 9.0e15) return false;
    out = static_cast<long long>(d);
    return true;
  }
  return false;
}

std::string range_text(long long min, long long max) {
  if (max == std::numeric_limits<long long>::max()) {
    return "must be an integer >= " + std::to_string(min);
  }
  return "must be an integer between " + std::to_string(min) + " and " + std::to_string(max);
}

template <typename T>
void read_int(const Json& obj, const std::string& prefix, const char* name, long long min,
              long long max, T& out) {
  const Json* v = find(obj, name);
  if (!v) return;
  long long n = 0;
  if (!integral(*v, n) || n < min || n > max) fail(dotted(prefix, name), range_text(min, max));
  out = static_cast<T>(n);
}

void read_bool(const Json& obj, const std::string& prefix, const char* name, bool& out) {
  const Json* v = find(obj, name);
  if (!v) return;
  if (!v->is_boolean()) fail(dotted(prefix, name), "must be true or false");
  out = v->get<bool>();
}

void read_string(const Json& obj, const std::string& prefix, const char* name, bool allow_empty,
                 std::string& out) {
  const Json* v = find(obj, name);
  if (!v) return;
  if (!v->is_string()) {
    fail(dotted(prefix, name), allow_empty ? "must be a string" : "must be a non-empty string");
  }
  auto s = v->get<std::string>();
  if (!allow_empty && s.empty()) fail(dotted(prefix, name), "must be a non-empty string");
  out = std::move(s);
}

/// Seconds; `min_exclusive` selects > min instead of >= min.
void read_seconds(const Json& obj, const std::string& prefix, const char* name, double min,
                  bool min_exclusive, double& out) {
  const Json* v = find(obj, name);
  if (!v) return;
  const bool ok = v->is_number() && std::isfinite(v->get<double>()) &&
                  (min_exclusive ? v->get<double>() > min : v->get<double>() >= min);
  if (!ok) {
    std::ostringstream reason;
    reason << "must be a number of seconds " << (min_exclusive ? "> " : ">= ") << min;
    fail(dotted(prefix, name), reason.str());
  }
  out = v->get<double>();
}

void read_string_list(const Json& obj, const std::string& prefix, const char* name,
                      std::vector<std::string>& out) {
  const Json* v = find(obj, name);
  if (!v) return;
  const auto key = dotted(prefix, name);
  if (!v->is_array()) fail(key, "must be an array of non-empty strings");
  std::vector<std::string> list;
  for (const auto& item : *v) {
    if (!item.is_string() || item.get<std::string>().empty()) {
      fail(key, "must be an array of non-empty strings");
    }
    list.push_back(item.get<std::string>());
  }
  out = std::move(list);
}

/// A section: absent/null -> empty object (defaults), not an object -> error.
const Json& section(const Json& root, const char* name) {
  static const Json kEmpty = Json::object();
  const Json* v = find(root, name);
  if (!v) return kEmpty;
  if (!v->is_object()) fail(name, "must be an object");
  return *v;
}

// ---- value checks shared by the file and the environment ----------------------------------

std::string check_log_level(const std::string& key, const std::string& value) {
  static const char* const kLevels[] = {"trace", "debug", "info", "warn", "error", "fatal"};
  const auto level = lower(value);
  for (const char* known : kLevels) {
    if (level == known) return level;
  }
  fail(key, "must be one of trace, debug, info, warn, error, fatal (got " + shown(value) + ")");
}

std::string check_protocol_version(const std::string& key, const std::string& value) {
  if (value != "4" && value != "5") {
    fail(key, "must be \"4\" (Moleculer 0.14) or \"5\" (Moleculer 0.15), got " + shown(value));
  }
  return value;
}

bool known_other_transporter(const std::string& value) {
  static const char* const kNames[] = {"mqtt", "amqp", "amqp10", "kafka", "stan",
                                       "tcp",  "fake", "mqtts",  "amqps", "nats-streaming"};
  const auto v = lower(value);
  for (const char* name : kNames) {
    if (v == name || starts_with(v, std::string(name) + "://")) return true;
  }
  return false;
}

/// A comma-separated list of NATS URLs, trimmed; `add_scheme` prefixes "nats://" to bare
/// host:port entries (the npm nats `servers` form).
std::string normalise_urls(const std::string& key, const std::string& value, bool add_scheme) {
  std::string result;
  std::stringstream in(value);
  std::string item;
  bool any = false;
  while (std::getline(in, item, ',')) {
    item = trim(item);
    if (add_scheme && item.find("://") == std::string::npos && !item.empty()) {
      item = "nats://" + item;
    }
    const auto l = lower(item);
    const bool nats = starts_with(l, "nats://") && l.size() > 7;
    const bool tls = starts_with(l, "tls://") && l.size() > 6;
    if (!nats && !tls) {
      if (starts_with(l, "redis://") || starts_with(l, "rediss://")) {
        fail(key, "a Redis URL cannot be part of a NATS URL list");
      }
      if (known_other_transporter(item)) {
        fail(key, "unsupported transporter " + shown(item) + ": " + kSupported);
      }
      fail(key, "invalid NATS URL " + shown(item) + " (expected nats://host:port)");
    }
    if (any) result += ",";
    result += item;
    any = true;
  }
  if (!any) fail(key, "empty NATS URL list");
  return result;
}

/// A transporter as the configuration chose it: the broker's `transporter` text (NATS URLs, or
/// a credential-free description of a Redis server) and the product's transport settings.
struct TransporterChoice {
  std::string text;
  TransportSettings settings;
};

TransporterChoice nats_choice(std::string urls) {
  return TransporterChoice{std::move(urls), TransportSettings{}};
}

/// Redis options parsed by transport/redis_config; its errors become ConfigErrors.
template <typename Parse>
TransporterChoice redis_choice(Parse&& parse) {
  TransporterChoice choice;
  choice.settings.kind = TransportSettings::Kind::Redis;
  try {
    choice.settings.redis = parse();
  } catch (const transport::RedisConfigError& e) {
    fail(e.key(), e.reason());
  }
  choice.text = transport::describe_redis(choice.settings.redis);
  return choice;
}

/// The string forms: "NATS"/"nats" (default URL), "nats://host:port[,nats://...]", "Redis"
/// (any case: localhost:6379) and "redis[s]://...".
TransporterChoice transporter_from_string(const std::string& key, const std::string& raw) {
  const auto value = trim(raw);
  const auto l = lower(value);
  if (l == "nats") return nats_choice(kDefaultTransporter);
  if (starts_with(l, "nats://") || starts_with(l, "tls://")) {
    return nats_choice(normalise_urls(key, value, false));
  }
  if (l == "redis") return redis_choice([] { return transport::RedisOptions{}; });
  if (starts_with(l, "redis://") || starts_with(l, "rediss://")) {
    return redis_choice([&] { return transport::parse_redis_url(value, key); });
  }
  if (known_other_transporter(value)) {
    fail(key, "unsupported transporter " + shown(value) + ": " + kSupported);
  }
  fail(key, "invalid transporter " + shown(value) + ": " + kSupported +
                " (expected \"NATS\", \"nats://host:port\", \"Redis\", \"redis://host:port\" or "
                "{\"type\": \"NATS\" or \"Redis\", \"options\": ...})");
}

/// Adds `user:pass@` or `token@` to every URL that carries no credentials of its own.
std::string add_credentials(const std::string& urls, const std::string& credentials) {
  std::string result;
  std::stringstream in(urls);
  std::string item;
  while (std::getline(in, item, ',')) {
    const auto start = item.find("://") + 3;
    const auto slash = item.find('/', start);
    const auto host_part =
        item.substr(start, slash == std::string::npos ? item.npos : slash - start);
    if (host_part.find('@') == std::string::npos) {
      item = item.substr(0, start) + credentials + "@" + item.substr(start);
    }
    if (!result.empty()) result += ",";
    result += item;
  }
  return result;
}

/// {"type": "NATS", "options": "nats://..." | {"url": ..., "servers": [...], "user", "pass",
/// "token", "pingInterval", "maxPingOut"}} as moleculer.config.js allows (no type: NATS). Other
/// option keys are ignored.
/// {"type": "Redis", "options": "redis://..." | {host, port, ...}}: transport/redis_config.
TransporterChoice transporter_from_object(const Json& obj) {
  const std::string key = "transporter";
  if (const Json* type = find(obj, "type")) {
    if (!type->is_string()) fail("transporter.type", "must be a string");
    const auto name = type->get<std::string>();
    if (lower(name) == "redis") {
      const Json* options = find(obj, "options");
      return redis_choice([&] {
        return options ? transport::parse_redis_options(*options, "transporter.options")
                       : transport::RedisOptions{};
      });
    }
    if (lower(name) != "nats") {
      fail(key, "unsupported transporter type " + shown(name) + ": " + kSupported);
    }
  }
  const Json* options = find(obj, "options");
  if (!options) return nats_choice(kDefaultTransporter);
  if (options->is_string()) {
    const auto l = lower(trim(options->get<std::string>()));
    if (!starts_with(l, "nats://") && !starts_with(l, "tls://") && l != "nats") {
      fail("transporter.options", "must be a nats:// URL for a NATS transporter");
    }
    return transporter_from_string("transporter.options", *options);
  }
  if (!options->is_object()) fail("transporter.options", "must be an object or a URL string");

  std::string urls = kDefaultTransporter;
  if (const Json* url = find(*options, "url")) {
    if (!url->is_string()) fail("transporter.options.url", "must be a string");
    urls = normalise_urls("transporter.options.url", url->get<std::string>(), true);
  } else if (const Json* servers = find(*options, "servers")) {
    const std::string skey = "transporter.options.servers";
    std::string joined;
    if (servers->is_string()) {
      joined = servers->get<std::string>();
    } else if (servers->is_array() && !servers->empty()) {
      for (const auto& s : *servers) {
        if (!s.is_string()) fail(skey, "must be a string or an array of strings");
        joined += (joined.empty() ? "" : ",") + s.get<std::string>();
      }
    } else {
      fail(skey, "must be a string or a non-empty array of strings");
    }
    urls = normalise_urls(skey, joined, true);
  }

  TransporterChoice choice;
  read_int(*options, "transporter.options", "pingInterval", 100, 3600000,
           choice.settings.nats_ping_interval_ms);
  read_int(*options, "transporter.options", "maxPingOut", 1, 100,
           choice.settings.nats_max_pings_out);

  std::string user, pass, token;
  read_string(*options, "transporter.options", "user", false, user);
  read_string(*options, "transporter.options", "pass", true, pass);
  read_string(*options, "transporter.options", "token", false, token);
  const auto unsafe = [](const std::string& s) { return s.find_first_of("@/,") != s.npos; };
  if (!user.empty()) {
    if (unsafe(user) || user.find(':') != user.npos) {
      fail("transporter.options.user", "must not contain ':', '@', '/' or ','");
    }
    if (unsafe(pass)) fail("transporter.options.pass", "must not contain '@', '/' or ','");
    urls = add_credentials(urls, pass.empty() ? user : user + ":" + pass);
  } else if (!token.empty()) {
    if (unsafe(token) || token.find(':') != token.npos) {
      fail("transporter.options.token", "must not contain ':', '@', '/' or ','");
    }
    urls = add_credentials(urls, token);
  }
  choice.text = urls;
  return choice;
}

void apply_choice(TransporterChoice choice, Config& config) {
  config.broker.transporter = std::move(choice.text);
  config.broker.transporter_configured = true;
  config.transport = std::move(choice.settings);
}

void read_transporter(const Json& root, Config& config) {
  const Json* v = find(root, "transporter");
  if (!v) return;  // null/absent: default URL, not configured
  if (v->is_string() && v->get<std::string>().empty()) return;  // "" is falsy in JS: none
  if (v->is_string()) {
    apply_choice(transporter_from_string("transporter", v->get<std::string>()), config);
  } else if (v->is_object()) {
    apply_choice(transporter_from_object(*v), config);
  } else {
    fail("transporter",
         "must be null, \"NATS\", a nats:// URL, \"Redis\", a redis:// URL or {\"type\": "
         "\"NATS\" or \"Redis\", ...}");
  }
}

void read_protocol_version(const Json& root, BrokerSettings& broker) {
  const Json* v = find(root, "protocolVersion");
  if (!v) return;
  long long n = 0;
  if (v->is_string()) {
    broker.protocol_version = check_protocol_version("protocolVersion", v->get<std::string>());
  } else if (integral(*v, n) && (n == 4 || n == 5)) {
    broker.protocol_version = std::to_string(n);  // accepted for convenience, sent as a string
  } else {
    fail("protocolVersion", "must be \"4\" (Moleculer 0.14) or \"5\" (Moleculer 0.15)");
  }
}

void read_broker(const Json& root, Config& config) {
  auto& b = config.broker;
  read_string(root, "", "namespace", true, b.moleculer_namespace);
  read_string(root, "", "nodeID", true, b.node_id);
  read_transporter(root, config);
  if (const Json* v = find(root, "serializer")) {
    if (!v->is_string() || lower(v->get<std::string>()) != "json") {
      fail("serializer", "only \"JSON\" is supported");
    }
  }
  read_protocol_version(root, b);
  read_int(root, "", "requestTimeout", 0, std::numeric_limits<int>::max(), b.request_timeout_ms);
  read_seconds(root, "", "heartbeatInterval", 0, true, b.heartbeat_interval_s);
  read_seconds(root, "", "heartbeatTimeout", 0, true, b.heartbeat_timeout_s);
  read_seconds(root, "", "cleanOfflineNodesTimeout", 0, false, b.clean_offline_nodes_timeout_s);
  read_bool(root, "", "disableBalancer", b.disable_balancer);
  std::string level;
  read_string(root, "", "logLevel", false, level);
  if (!level.empty()) b.log_level = check_log_level("logLevel", level);
  if (const Json* v = find(root, "metadata")) {
    if (!v->is_object()) fail("metadata", "must be an object");
    b.metadata = *v;
  }
  read_bool(section(root, "registry"), "registry", "preferLocal", b.prefer_local);
  read_int(section(root, "transit"), "transit", "maxQueueSize", 1,
           std::numeric_limits<long long>::max(), b.max_queue_size);
  read_string(root, "", "serviceName", false, config.service_name);
  std::string format;
  read_string(root, "", "logFormat", false, format);
  if (!format.empty()) config.log_format = check_log_format("logFormat", format);
}

/// gateway.clientBundle: null/true = the installed default, false/"" = none, else a folder that
/// holds socket.io.js.
void read_client_bundle(const Json& gateway, GatewaySettings& g) {
  const std::string key = "gateway.clientBundle";
  const Json* v = find(gateway, "clientBundle");
  if (!v || (v->is_boolean() && v->get<bool>())) return;
  if (v->is_boolean() || (v->is_string() && v->get<std::string>().empty())) {
    g.serve_client = false;
    g.client_bundle.clear();
    return;
  }
  if (!v->is_string()) fail(key, "must be a folder path, or false to serve no bundle");
  const auto folder = v->get<std::string>();
  struct stat st {};
  if (::stat(folder.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    fail(key, "folder not found: " + folder);
  }
  const auto bundle = folder + "/socket.io.js";
  if (::stat(bundle.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    fail(key, "no socket.io.js in " + folder);
  }
  g.serve_client = true;
  g.client_bundle = folder;
}

/// gateway.corsOrigins: null = same site, "*" = any origin without credentials, else an array of
/// serialised origins ("https://app.example", "http://localhost:8080").
void read_cors_origins(const Json& gateway, GatewaySettings& g) {
  const std::string key = "gateway.corsOrigins";
  const Json* v = find(gateway, "corsOrigins");
  if (!v) return;
  if (v->is_string() && v->get<std::string>() == "*") {
    g.cors_origins = gateway::OriginPolicy::any();
    return;
  }
  constexpr const char* kExpected =
      "must be null (the gateway's own site), \"*\" or an array of origins like "
      "\"https://app.example\"";
  if (!v->is_array()) fail(key, kExpected);
  std::vector<std::string> origins;
  for (const auto& item : *v) {
    if (!item.is_string()) fail(key, kExpected);
    origins.push_back(item.get<std::string>());
  }
  try {
    g.cors_origins = gateway::OriginPolicy::allow_list(origins);
  } catch (const std::invalid_argument& e) {
    fail(key, e.what());
  }
}

/// The connection-level limits of GatewaySettings (issue 9).
void read_connection_limits(const Json& gateway, GatewaySettings& g) {
  const std::string p = "gateway";
  const long long unbounded = std::numeric_limits<long long>::max();
  if (find(gateway, "maxConnections") != nullptr) {  // null keeps the derived default
    size_t fixed = 0;
    read_int(gateway, p, "maxConnections", 1, unbounded, fixed);
    g.max_connections = fixed;
  }
  read_int(gateway, p, "maxConnectionsPerAddress", 0, unbounded, g.max_connections_per_address);
  read_int(gateway, p, "maxHandshakesPerSecond", 0, 1000000, g.max_handshakes_per_second);
  read_int(gateway, p, "maxPollingSessions", 0, unbounded, g.max_polling_sessions);
  read_int(gateway, p, "maxBufferedBytes", 1024, unbounded, g.max_buffered_bytes);
  // The HTTP parser (websocketpp) refuses heads over 16000 bytes whatever this says.
  read_int(gateway, p, "maxHeaderBytes", 256, 16000, g.max_header_bytes);
  read_int(gateway, p, "headersTimeout", 1, std::numeric_limits<int>::max(), g.headers_timeout_ms);
}

/// gateway.healthPath / gateway.readyPath: an absolute path other than the engine's (read after
/// gateway.path). Exact probe paths are matched before the engine, so one below gateway.path
/// works, but the engine path itself would no longer reach Engine.IO.
void read_probe_path(const Json& gateway, const char* name, const GatewaySettings& g,
                     std::string& out) {
  const std::string key = std::string("gateway.") + name;
  read_string(gateway, "gateway", name, false, out);
  if (out.front() != '/') fail(key, "must start with '/'");
  if (out == g.path || out + "/" == g.path) {
    fail(key, "must differ from gateway.path (" + g.path + ")");
  }
}

/// gateway.connectionStateRecovery.jetstream: { stream, bucket, replicas, maxBytes, storage }.
void read_recovery_jetstream(const Json& recovery, RecoverySettings& r) {
  const std::string key = "gateway.connectionStateRecovery.jetstream";
  const Json* v = find(recovery, "jetstream");
  if (v == nullptr) return;
  if (!v->is_object()) fail(key, "must be an object");
  static const char* const kKnown[] = {"servers",  "stream",   "bucket",
                                       "replicas", "maxBytes", "storage"};
  for (auto it = v->begin(); it != v->end(); ++it) {
    if (std::find(std::begin(kKnown), std::end(kKnown), it.key()) == std::end(kKnown)) {
      fail(dotted(key, it.key().c_str()), "unknown option");
    }
  }
  // Names become NATS subjects and stream names: no dots, spaces or wildcards.
  const auto check_name = [&key](const char* name, const std::string& value) {
    const bool ok = !value.empty() && value.size() <= 64 &&
                    std::all_of(value.begin(), value.end(), [](unsigned char c) {
                      return std::isalnum(c) || c == '_' || c == '-';
                    });
    if (!ok) fail(dotted(key, name), "must be 1-64 of A-Z a-z 0-9 _ - (got " + shown(value) + ")");
  };
  std::string servers;
  read_string(*v, key, "servers", false, servers);
  if (!servers.empty()) r.jetstream_servers = normalise_urls(dotted(key, "servers"), servers, true);
  read_string(*v, key, "stream", false, r.jetstream_stream);
  check_name("stream", r.jetstream_stream);
  read_string(*v, key, "bucket", false, r.jetstream_bucket);
  check_name("bucket", r.jetstream_bucket);
  read_int(*v, key, "replicas", 1, 5, r.jetstream_replicas);
  read_int(*v, key, "maxBytes", 1 << 20, std::numeric_limits<long long>::max(),
           r.jetstream_max_bytes);
  std::string storage = "file";
  read_string(*v, key, "storage", false, storage);
  if (storage != "file" && storage != "memory") {
    fail(dotted(key, "storage"), "must be \"file\" or \"memory\" (got " + shown(storage) + ")");
  }
  r.jetstream_memory_storage = storage == "memory";
}

/// gateway.connectionStateRecovery: false/null/absent, true, or { maxDisconnectionDuration,
/// skipMiddlewares, store, maxSessions, maxPackets }.
void read_recovery(const Json& gateway, RecoverySettings& r) {
  const std::string key = "gateway.connectionStateRecovery";
  const Json* v = find(gateway, "connectionStateRecovery");
  if (v == nullptr || (v->is_boolean() && !v->get<bool>())) return;
  r.enabled = true;
  if (v->is_boolean()) return;
  if (!v->is_object()) fail(key, "must be false, true or an object");
  static const char* const kKnown[] = {"maxDisconnectionDuration",
                                       "skipMiddlewares",
                                       "store",
                                       "maxSessions",
                                       "maxPackets",
                                       "jetstream"};
  for (auto it = v->begin(); it != v->end(); ++it) {
    if (std::find(std::begin(kKnown), std::end(kKnown), it.key()) == std::end(kKnown)) {
      fail(dotted(key, it.key().c_str()), "unknown option");
    }
  }
  const long long unbounded = std::numeric_limits<long long>::max();
  read_int(*v, key, "maxDisconnectionDuration", 1, std::numeric_limits<int>::max(),
           r.max_disconnection_duration_ms);
  read_bool(*v, key, "skipMiddlewares", r.skip_middlewares);
  read_string(*v, key, "store", false, r.store);
  if (!r.store.empty() && r.store != "memory" && r.store != "jetstream") {
    fail(dotted(key, "store"),
         "must be \"memory\", \"jetstream\" or null (got " + shown(r.store) + ")");
  }
  read_int(*v, key, "maxSessions", 1, unbounded, r.max_sessions);
  read_int(*v, key, "maxPackets", 1, unbounded, r.max_packets);
  read_recovery_jetstream(*v, r);
}

}  // namespace

std::string check_log_format(const std::string& key, const std::string& value) {
  const auto format = lower(value);
  if (format != "text" && format != "json") {
    fail(key, "must be \"text\" or \"json\" (got " + shown(value) + ")");
  }
  return format;
}

namespace {

void read_gateway(const Json& root, GatewaySettings& g) {
  const Json& s = section(root, "gateway");
  const std::string p = "gateway";
  const long long int_max = std::numeric_limits<int>::max();
  read_string(s, p, "host", false, g.host);
  read_int(s, p, "port", 0, 65535, g.port);
  read_string(s, p, "path", false, g.path);
  if (g.path.front() != '/') fail("gateway.path", "must start with '/'");
  if (g.path.back() != '/') g.path += '/';
  read_int(s, p, "pingInterval", 1, int_max, g.ping_interval_ms);
  read_int(s, p, "pingTimeout", 1, int_max, g.ping_timeout_ms);
  read_int(s, p, "connectTimeout", 0, int_max, g.connect_timeout_ms);
  read_int(s, p, "drainTimeout", 0, int_max, g.drain_timeout_ms);
  read_int(s, p, "maxHttpBufferSize", 1, std::numeric_limits<long long>::max(),
           g.max_http_buffer_size);
  read_cors_origins(s, g);
  read_int(s, p, "maxRoomsPerSocket", 1, std::numeric_limits<long long>::max(),
           g.max_rooms_per_socket);
  read_int(s, p, "maxAttachments", 1, int_max, g.max_attachments);
  read_int(s, p, "maxEventNameLength", 1, int_max, g.max_event_name_length);
  read_int(s, p, "maxSubscribesPerSecond", 1, int_max, g.max_subscribes_per_second);
  read_bool(s, p, "anonymousRooms", g.anonymous_rooms);
  read_string_list(s, p, "individualRoomParts", g.individual_room_parts);
  read_string_list(s, p, "metadataTypes", g.metadata_types);
  read_client_bundle(s, g);
  read_connection_limits(s, g);
  if (find(s, "ioThreads") != nullptr) {  // null keeps the number of cores
    size_t threads = 1;
    read_int(s, p, "ioThreads", 1, 256, threads);
    g.io_threads = threads;
  }
  read_recovery(s, g.recovery);
  read_probe_path(s, "healthPath", g, g.health_path);
  read_probe_path(s, "readyPath", g, g.ready_path);
  if (g.health_path == g.ready_path) {
    fail("gateway.readyPath", "must differ from gateway.healthPath (" + g.health_path + ")");
  }
}

void read_auth(const Json& root, AuthSettings& a) {
  const Json& s = section(root, "auth");
  read_string(s, "auth", "action", false, a.action);
  read_int(s, "auth", "timeout", 0, std::numeric_limits<int>::max(), a.timeout_ms);
  read_int(s, "auth", "cacheTtl", 0, std::numeric_limits<int>::max(), a.cache_ttl_s);
  read_int(s, "auth", "maxInFlight", 1, std::numeric_limits<int>::max(), a.max_in_flight);
}

/// metrics.*: read after the gateway, whose paths and port the metrics must not take.
void read_metrics(const Json& root, const GatewaySettings& g, MetricsSettings& m) {
  const Json& s = section(root, "metrics");
  read_bool(s, "metrics", "enabled", m.enabled);
  read_string(s, "metrics", "path", false, m.path);
  if (m.path.front() != '/') fail("metrics.path", "must start with '/'");
  if (m.path == g.path || m.path + "/" == g.path) {
    fail("metrics.path", "must differ from gateway.path (" + g.path + ")");
  }
  if (m.path == g.health_path || m.path == g.ready_path) {
    fail("metrics.path", "must differ from gateway.healthPath and gateway.readyPath");
  }
  if (find(s, "port") != nullptr) {
    int port = 0;
    read_int(s, "metrics", "port", 1, 65535, port);
    if (port == g.port) fail("metrics.port", "must differ from gateway.port (or be null)");
    m.port = port;
  }
}

const std::string* env_value(const Environment& env, const char* name) {
  const auto it = env.find(name);
  if (it == env.end() || it->second.empty()) return nullptr;
  return &it->second;
}

void apply_environment(const Environment& env, Config& config) {
  auto& b = config.broker;
  if (const auto* v = env_value(env, "TRANSPORTER")) {
    apply_choice(transporter_from_string("TRANSPORTER", *v), config);
  }
  if (const auto* v = env_value(env, "NAMESPACE")) b.moleculer_namespace = *v;
  if (const auto* v = env_value(env, "NODEID")) b.node_id = *v;
  if (const auto* v = env_value(env, "LOGLEVEL")) b.log_level = check_log_level("LOGLEVEL", *v);
  if (const auto* v = env_value(env, "LOGFORMAT")) {
    config.log_format = check_log_format("LOGFORMAT", *v);
  }
  if (const auto* v = env_value(env, "PROTOCOL_VERSION")) {
    b.protocol_version = check_protocol_version("PROTOCOL_VERSION", trim(*v));
  }
  if (const auto* v = env_value(env, "PORT")) {
    const auto text = trim(*v);
    const bool digits =
        !text.empty() && text.size() <= 5 &&
        std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
    if (!digits || std::stoi(text) > 65535) {
      fail("PORT", "must be an integer between 0 and 65535 (got " + shown(*v) + ")");
    }
    config.gateway.port = std::stoi(text);
  }
}

std::string default_node_id() {
  return lower(host_name()) + "-" + std::to_string(static_cast<long long>(::getpid()));
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

/// "[json.exception.parse_error.101] parse error at line 1, column 2: ..." ->
/// "invalid JSON at line 1, column 2: ...".
std::string json_error_text(const std::string& what) {
  std::string text = what;
  const auto bracket = text.find("] ");
  if (starts_with(text, "[json.exception.") && bracket != std::string::npos) {
    text = text.substr(bracket + 2);
  }
  if (starts_with(text, "parse error ")) text = text.substr(12);
  if (starts_with(text, "at ")) return "invalid JSON " + text;
  return "invalid JSON: " + text;
}

}  // namespace

Environment read_environment() {
  static const char* const kNames[] = {
      "TRANSPORTER", "NAMESPACE", "NODEID",           "PORT",
      "LOGLEVEL",    "LOGFORMAT", "PROTOCOL_VERSION", "MOLECULER_CONFIG"};
  Environment env;
  for (const char* name : kNames) {
    if (const char* value = std::getenv(name)) env[name] = value;
  }
  return env;
}

std::string choose_config_path(const std::string& cli_path, const Environment& env) {
  if (!cli_path.empty()) {
    if (!file_exists(cli_path)) fail("--config", "file not found: " + cli_path);
    return cli_path;
  }
  if (const auto* path = env_value(env, "MOLECULER_CONFIG")) {
    if (!file_exists(*path)) fail("MOLECULER_CONFIG", "file not found: " + *path);
    return *path;
  }
  return file_exists(kDefaultConfigFile) ? kDefaultConfigFile : "";
}

Config parse_config(const std::string& file_text, const Environment& env) {
  return parse_config(file_text, env, "moleculer.config.json");
}

Config parse_config(const std::string& file_text, const Environment& env,
                    const std::string& source) {
  Config config;
  if (!file_text.empty()) {
    Json root;
    try {
      root = Json::parse(file_text);
    } catch (const Json::exception& e) {
      // parse_error, and out_of_range.406 for a number beyond a double (found by fuzz_config).
      fail(source, json_error_text(e.what()));
    }
    if (!root.is_object()) fail(source, "must contain a JSON object");
    read_broker(root, config);
    read_gateway(root, config.gateway);
    read_auth(root, config.auth);
    read_metrics(root, config.gateway, config.metrics);
    config.source = source;
  }
  apply_environment(env, config);

  auto& b = config.broker;
  if (b.heartbeat_timeout_s <= b.heartbeat_interval_s) {
    std::ostringstream reason;
    reason << "must be greater than heartbeatInterval (" << b.heartbeat_timeout_s
           << " <= " << b.heartbeat_interval_s << ")";
    fail("heartbeatTimeout", reason.str());
  }
  if (b.node_id.empty()) b.node_id = default_node_id();
  return config;
}

Config load_config(const std::string& cli_path, const Environment& env) {
  const auto path = choose_config_path(cli_path, env);
  if (path.empty()) return parse_config("", env);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) fail(path, "not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) fail(path, "cannot open the file");
  std::string contents((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail(path, "cannot read the file");
  // An empty file is a syntax error, not "no file".
  if (contents.empty()) fail(path, "invalid JSON: the file is empty");
  return parse_config(contents, env, path);
}

}  // namespace steedos::services
