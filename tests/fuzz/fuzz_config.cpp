// libFuzzer target: the node's configuration parser (services/config.hpp), on fuzzed
// moleculer.config.json text and environment overrides. Only a ConfigError naming a key or a
// valid Config may come out (never a JSON library exception, never a crash), and a valid Config
// keeps every value within the bounds config.cpp documents and the README's table lists.
//
// Input: the file text, then optionally '\x01' and environment values separated by '\x01', in
// the order of kEnvNames (a raw 0x01 cannot appear in valid JSON text, so little is lost).
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>

#include "services/config.hpp"
#include "tests/fuzz/fuzz_assert.hpp"

namespace services = steedos::services;

namespace {

constexpr const char* kEnvNames[] = {"TRANSPORTER", "NAMESPACE", "NODEID",
                                     "PORT",        "LOGLEVEL",  "PROTOCOL_VERSION"};

bool known_log_level(const std::string& level) {
  for (const char* known : {"trace", "debug", "info", "warn", "error", "fatal"}) {
    if (level == known) return true;
  }
  return false;
}

void check_bounds(const services::Config& config, const services::Environment& env) {
  const auto& b = config.broker;
  FUZZ_ASSERT(b.protocol_version == "4" || b.protocol_version == "5");
  FUZZ_ASSERT(known_log_level(b.log_level));
  FUZZ_ASSERT(b.request_timeout_ms >= 0);
  FUZZ_ASSERT(b.heartbeat_interval_s > 0 && b.heartbeat_timeout_s > 0);
  FUZZ_ASSERT(b.clean_offline_nodes_timeout_s >= 0);
  FUZZ_ASSERT(b.max_queue_size >= 1);
  FUZZ_ASSERT(b.metadata.is_object());
  FUZZ_ASSERT(!b.transporter.empty());
  if (config.transport.kind == services::TransportSettings::Kind::Redis) {
    FUZZ_ASSERT(!config.transport.redis.endpoints.empty());
    for (const auto& endpoint : config.transport.redis.endpoints) {
      FUZZ_ASSERT(!endpoint.host.empty() && endpoint.port >= 1 && endpoint.port <= 65535);
    }
  }
  const auto& g = config.gateway;
  FUZZ_ASSERT(!g.host.empty());
  FUZZ_ASSERT(g.port >= 0 && g.port <= 65535);
  FUZZ_ASSERT(g.path.size() >= 1 && g.path.front() == '/' && g.path.back() == '/');
  FUZZ_ASSERT(g.ping_interval_ms >= 1 && g.ping_timeout_ms >= 1);
  FUZZ_ASSERT(g.connect_timeout_ms >= 0 && g.drain_timeout_ms >= 0);
  FUZZ_ASSERT(g.max_http_buffer_size >= 1 && g.max_rooms_per_socket >= 1);
  FUZZ_ASSERT(g.serve_client || g.client_bundle.empty());
  FUZZ_ASSERT(config.auth.timeout_ms >= 0 && config.auth.cache_ttl_s >= 0);
  FUZZ_ASSERT(!config.auth.action.empty() && !config.service_name.empty());
  // Environment overrides win over the file.
  if (const auto it = env.find("PORT"); it != env.end() && !it->second.empty()) {
    FUZZ_ASSERT(g.port == std::stoi(it->second));
  }
  if (const auto it = env.find("NODEID"); it != env.end() && !it->second.empty()) {
    FUZZ_ASSERT(b.node_id == it->second);
  }
  if (const auto it = env.find("NAMESPACE"); it != env.end() && !it->second.empty()) {
    FUZZ_ASSERT(b.moleculer_namespace == it->second);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t split = input.find('\x01');
  const std::string text(input.substr(0, split));
  services::Environment env;
  if (split != std::string_view::npos) {
    std::string_view rest = input.substr(split + 1);
    for (const char* name : kEnvNames) {
      const std::size_t end = rest.find('\x01');
      env[name] = std::string(rest.substr(0, end));
      if (end == std::string_view::npos) break;
      rest.remove_prefix(end + 1);
    }
  }
  services::Config config;
  try {
    config = services::parse_config(text, env);
  } catch (const services::ConfigError& e) {
    FUZZ_ASSERT(!e.key().empty());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "not a ConfigError: %s\n", e.what());
    FUZZ_ASSERT(false);
  }
  check_bounds(config, env);
  return 0;
}
