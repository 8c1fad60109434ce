#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "moleculer/system_info.hpp"
#include "services/config.hpp"

using steedos::Json;
using steedos::services::Config;
using steedos::services::ConfigError;
using steedos::services::Environment;
using steedos::services::parse_config;
using Kind = steedos::services::TransportSettings::Kind;

namespace {

Config parse(const std::string& text, const Environment& env = {}) {
  return parse_config(text, env);
}

/// The key of the ConfigError `text` + `env` raise ("" when none is raised).
std::string error_key(const std::string& text, const Environment& env = {}) {
  try {
    parse_config(text, env);
  } catch (const ConfigError& e) {
    return e.key();
  }
  return "";
}

std::string error_message(const std::string& text, const Environment& env = {}) {
  try {
    parse_config(text, env);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

/// Each file text is refused with a ConfigError naming its key, the message starting "<key>: ".
template <size_t N>
void check_errors_name_keys(const std::pair<const char*, const char*> (&cases)[N]) {
  for (const auto& entry : cases) {
    const char* text = entry.first;
    const std::string key = entry.second;
    CAPTURE(text);
    CHECK(error_key(text) == key);
    CHECK(error_message(text).rfind(key + ": ", 0) == 0);
  }
}

/// The repository root, given by CMake.
std::string repo_root() {
  return STEEDOS_SOURCE_DIR;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct TempDir {
  std::string path;
  TempDir() {
    char pattern[] = "/tmp/steedos-config-test-XXXXXX";
    const char* made = ::mkdtemp(pattern);
    REQUIRE(made != nullptr);
    path = made;
  }
  ~TempDir() {
    std::remove((path + "/moleculer.config.json").c_str());
    std::remove((path + "/other.json").c_str());
    ::rmdir(path.c_str());
  }
  std::string write(const std::string& name, const std::string& text) const {
    const auto file = path + "/" + name;
    std::ofstream(file) << text;
    return file;
  }
};

/// Runs `body` with the working directory set to `dir`.
template <typename F>
void in_directory(const std::string& dir, F body) {
  char old[4096];
  REQUIRE(::getcwd(old, sizeof old) != nullptr);
  REQUIRE(::chdir(dir.c_str()) == 0);
  try {
    body();
  } catch (...) {
    CHECK(::chdir(old) == 0);
    throw;
  }
  CHECK(::chdir(old) == 0);
}

void check_defaults(const Config& c) {
  const auto& b = c.broker;
  CHECK(b.moleculer_namespace == "");
  CHECK(b.transporter == "nats://127.0.0.1:4222");
  CHECK_FALSE(b.transporter_configured);
  CHECK(b.serializer == "JSON");
  CHECK(b.protocol_version == "4");
  CHECK(b.request_timeout_ms == 0);
  CHECK(b.heartbeat_interval_s == 10);
  CHECK(b.heartbeat_timeout_s == 30);
  CHECK(b.clean_offline_nodes_timeout_s == 600);
  CHECK_FALSE(b.disable_balancer);
  CHECK(b.prefer_local);
  CHECK(b.max_queue_size == 50000);
  CHECK(b.log_level == "info");
  CHECK(b.metadata == Json::object());
  const auto& g = c.gateway;
  CHECK(g.host == "0.0.0.0");
  CHECK(g.port == 5100);
  CHECK(g.path == "/socket.io/");
  CHECK(g.ping_interval_ms == 25000);
  CHECK(g.ping_timeout_ms == 20000);
  CHECK(g.connect_timeout_ms == 45000);
  CHECK(g.drain_timeout_ms == 5000);
  CHECK(g.max_http_buffer_size == 1000000);
  CHECK(g.cors_origins.mode() == steedos::gateway::OriginPolicy::Mode::SameSite);
  CHECK(g.max_rooms_per_socket == 1000);
  CHECK_FALSE(g.anonymous_rooms);
  CHECK(g.individual_room_parts == std::vector<std::string>{"me", "notification-change"});
  CHECK(g.metadata_types == std::vector<std::string>{"apps", "objects", "object_listviews",
                                                     "object_actions", "object_fields"});
  CHECK(g.serve_client);
  CHECK(g.client_bundle == "");
  CHECK(c.auth.action == "@steedos/service-accounts.getUserSession");
  CHECK(c.auth.timeout_ms == 5000);
  CHECK(c.auth.cache_ttl_s == 60);
  CHECK(c.service_name == "socket");
}

}  // namespace

TEST_SUITE("config") {
  TEST_CASE("no file and no environment gives the defaults") {
    const auto c = parse("");
    check_defaults(c);
    CHECK(c.source == "");
  }

  TEST_CASE("an empty object gives the defaults") {
    check_defaults(parse("{}"));
  }

  TEST_CASE("the committed moleculer.config.json parses to the defaults") {
    const auto path = repo_root() + "/moleculer.config.json";
    const auto text = read_text(path);
    REQUIRE_FALSE(text.empty());
    const auto c = parse_config(text, {}, path);
    check_defaults(c);
    CHECK(c.source == path);
    // Every key the parser reads is listed.
    const auto j = Json::parse(text);
    for (const char* key :
         {"namespace", "nodeID", "transporter", "serializer", "protocolVersion", "requestTimeout",
          "heartbeatInterval", "heartbeatTimeout", "cleanOfflineNodesTimeout", "disableBalancer",
          "logLevel", "metadata", "registry", "transit", "serviceName", "gateway", "auth"}) {
      CHECK_MESSAGE(j.contains(key), key);
    }
    CHECK(j["registry"].contains("preferLocal"));
    CHECK(j["transit"].contains("maxQueueSize"));
    for (const char* key :
         {"host", "port", "path", "pingInterval", "pingTimeout", "connectTimeout", "drainTimeout",
          "maxHttpBufferSize", "corsOrigins", "maxRoomsPerSocket", "anonymousRooms",
          "individualRoomParts", "metadataTypes", "clientBundle"}) {
      CHECK_MESSAGE(j["gateway"].contains(key), key);
    }
    for (const char* key : {"action", "timeout", "cacheTtl"}) {
      CHECK_MESSAGE(j["auth"].contains(key), key);
    }
  }

  TEST_CASE("default nodeID is <lower-case hostname>-<pid>") {
    std::string host = steedos::moleculer::host_name();
    for (auto& ch : host) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    const auto expected = host + "-" + std::to_string(::getpid());
    CHECK(parse("").broker.node_id == expected);
    CHECK(parse(R"({"nodeID": null})").broker.node_id == expected);
    CHECK(parse(R"({"nodeID": ""})").broker.node_id == expected);
    CHECK(parse(R"({"nodeID": "gw-1"})").broker.node_id == "gw-1");
  }

  TEST_CASE("file values override the defaults") {
    const auto c = parse(R"({
      "namespace": "prod", "nodeID": "gw-1", "transporter": "nats://nats:4222",
      "serializer": "JSON", "protocolVersion": "5", "requestTimeout": 7000,
      "heartbeatInterval": 5, "heartbeatTimeout": 15.5, "cleanOfflineNodesTimeout": 0,
      "disableBalancer": true, "logLevel": "debug", "metadata": {"region": "eu"},
      "registry": {"preferLocal": false}, "transit": {"maxQueueSize": 10},
      "serviceName": "socket2",
      "gateway": {"host": "127.0.0.1", "port": 8080, "path": "/ws", "pingInterval": 1000,
                  "pingTimeout": 2000, "connectTimeout": 0, "drainTimeout": 250, "maxHttpBufferSize": 42,
                  "corsOrigins": ["https://a.example", "https://b.example"],
                  "maxRoomsPerSocket": 7, "anonymousRooms": true,
                  "individualRoomParts": ["me"], "metadataTypes": []},
      "auth": {"action": "users.session", "timeout": 100, "cacheTtl": 0},
      "unknownKey": {"ignored": true}
    })");
    const auto& b = c.broker;
    CHECK(b.moleculer_namespace == "prod");
    CHECK(b.node_id == "gw-1");
    CHECK(b.transporter == "nats://nats:4222");
    CHECK(b.transporter_configured);
    CHECK(b.protocol_version == "5");
    CHECK(b.request_timeout_ms == 7000);
    CHECK(b.heartbeat_interval_s == 5);
    CHECK(b.heartbeat_timeout_s == 15.5);
    CHECK(b.clean_offline_nodes_timeout_s == 0);
    CHECK(b.disable_balancer);
    CHECK(b.log_level == "debug");
    CHECK(b.metadata == Json{{"region", "eu"}});
    CHECK_FALSE(b.prefer_local);
    CHECK(b.max_queue_size == 10);
    CHECK(c.service_name == "socket2");
    const auto& g = c.gateway;
    CHECK(g.host == "127.0.0.1");
    CHECK(g.port == 8080);
    CHECK(g.path == "/ws/");  // normalised to end with '/'
    CHECK(g.ping_interval_ms == 1000);
    CHECK(g.ping_timeout_ms == 2000);
    CHECK(g.connect_timeout_ms == 0);
    CHECK(g.drain_timeout_ms == 250);
    CHECK(g.max_http_buffer_size == 42);
    REQUIRE(g.cors_origins.mode() == steedos::gateway::OriginPolicy::Mode::List);
    CHECK(g.cors_origins.origins() ==
          std::vector<std::string>{"https://a.example", "https://b.example"});
    CHECK(g.max_rooms_per_socket == 7);
    CHECK(g.anonymous_rooms);
    CHECK(g.individual_room_parts == std::vector<std::string>{"me"});
    CHECK(g.metadata_types.empty());
    CHECK(c.auth.action == "users.session");
    CHECK(c.auth.timeout_ms == 100);
    CHECK(c.auth.cache_ttl_s == 0);
    CHECK(c.source == "moleculer.config.json");
  }

  TEST_CASE("partial sections keep the other defaults") {
    const auto c = parse(R"({"gateway": {"port": 6000}, "auth": {"timeout": 1},
                             "registry": {}, "transit": null})");
    CHECK(c.gateway.port == 6000);
    CHECK(c.gateway.host == "0.0.0.0");
    CHECK(c.gateway.path == "/socket.io/");
    CHECK(c.gateway.ping_interval_ms == 25000);
    CHECK(c.gateway.metadata_types.size() == 5);
    CHECK(c.auth.timeout_ms == 1);
    CHECK(c.auth.action == "@steedos/service-accounts.getUserSession");
    CHECK(c.auth.cache_ttl_s == 60);
    CHECK(c.broker.prefer_local);
    CHECK(c.broker.max_queue_size == 50000);
    CHECK(c.broker.heartbeat_interval_s == 10);
  }

  TEST_CASE("null values keep the defaults; corsOrigins null means the gateway's own site") {
    using Mode = steedos::gateway::OriginPolicy::Mode;
    const auto c = parse(R"({"namespace": null, "gateway": {"port": null, "corsOrigins": null},
                             "logLevel": null, "metadata": null})");
    CHECK(c.gateway.port == 5100);
    CHECK(c.gateway.cors_origins.mode() == Mode::SameSite);
    CHECK(c.broker.log_level == "info");
    CHECK(c.broker.metadata == Json::object());
    const auto empty = parse(R"({"gateway": {"corsOrigins": []}})").gateway.cors_origins;
    CHECK(empty.mode() == Mode::List);
    CHECK(empty.origins().empty());
    CHECK(parse(R"({"gateway": {"corsOrigins": "*"}})").gateway.cors_origins.mode() == Mode::Any);
    // Entries are kept as browsers serialise origins.
    CHECK(parse(R"({"gateway": {"corsOrigins": ["HTTPS://App.Example:443"]}})")
              .gateway.cors_origins.origins() == std::vector<std::string>{"https://app.example"});
  }

  TEST_CASE("environment overrides") {
    const std::string file = R"({"transporter": "nats://file:4222", "namespace": "file",
                                 "nodeID": "file-node", "logLevel": "warn",
                                 "protocolVersion": "4", "gateway": {"port": 1234}})";
    SUBCASE("TRANSPORTER") {
      const auto c = parse(file, {{"TRANSPORTER", "nats://env:4222"}});
      CHECK(c.broker.transporter == "nats://env:4222");
      CHECK(c.broker.transporter_configured);
      const auto d = parse("", {{"TRANSPORTER", "nats://env:4222"}});
      CHECK(d.broker.transporter == "nats://env:4222");
      CHECK(d.broker.transporter_configured);
      CHECK(parse("", {{"TRANSPORTER", "NATS"}}).broker.transporter == "nats://127.0.0.1:4222");
      CHECK(parse("", {{"TRANSPORTER", "NATS"}}).broker.transporter_configured);
    }
    SUBCASE("NAMESPACE") {
      CHECK(parse(file, {{"NAMESPACE", "env"}}).broker.moleculer_namespace == "env");
    }
    SUBCASE("NODEID") {
      CHECK(parse(file, {{"NODEID", "env-node"}}).broker.node_id == "env-node");
    }
    SUBCASE("PORT") {
      CHECK(parse(file, {{"PORT", "8081"}}).gateway.port == 8081);
      CHECK(parse("", {{"PORT", "0"}}).gateway.port == 0);
      CHECK(parse("", {{"PORT", "65535"}}).gateway.port == 65535);
    }
    SUBCASE("LOGLEVEL") {
      CHECK(parse(file, {{"LOGLEVEL", "trace"}}).broker.log_level == "trace");
      CHECK(parse(file, {{"LOGLEVEL", "ERROR"}}).broker.log_level == "error");
    }
    SUBCASE("LOGFORMAT") {
      CHECK(parse(R"({"logFormat": "text"})", {{"LOGFORMAT", "JSON"}}).log_format == "json");
      CHECK(parse(R"({"logFormat": "json"})", {{"LOGFORMAT", "text"}}).log_format == "text");
      CHECK(parse(R"({"logFormat": "json"})", {{"LOGFORMAT", ""}}).log_format == "json");
    }
    SUBCASE("PROTOCOL_VERSION") {
      CHECK(parse(file, {{"PROTOCOL_VERSION", "5"}}).broker.protocol_version == "5");
    }
    SUBCASE("empty variables count as unset") {
      const auto c = parse(file, {{"TRANSPORTER", ""},
                                  {"NAMESPACE", ""},
                                  {"NODEID", ""},
                                  {"PORT", ""},
                                  {"LOGLEVEL", ""},
                                  {"PROTOCOL_VERSION", ""}});
      CHECK(c.broker.transporter == "nats://file:4222");
      CHECK(c.broker.moleculer_namespace == "file");
      CHECK(c.broker.node_id == "file-node");
      CHECK(c.gateway.port == 1234);
      CHECK(c.broker.log_level == "warn");
      CHECK(c.broker.protocol_version == "4");
    }
    SUBCASE("without overrides the file wins") {
      const auto c = parse(file, {{"UNRELATED", "x"}});
      CHECK(c.broker.transporter == "nats://file:4222");
      CHECK(c.broker.moleculer_namespace == "file");
      CHECK(c.broker.node_id == "file-node");
      CHECK(c.gateway.port == 1234);
      CHECK(c.broker.log_level == "warn");
    }
  }

  TEST_CASE("invalid environment values name the variable") {
    CHECK(error_key("", {{"PORT", "abc"}}) == "PORT");
    CHECK(error_key("", {{"PORT", "70000"}}) == "PORT");
    CHECK(error_key("", {{"PORT", "-1"}}) == "PORT");
    CHECK(error_key("", {{"PORT", "80x"}}) == "PORT");
    CHECK(error_message("", {{"PORT", "abc"}}).rfind("PORT: ", 0) == 0);
    CHECK(error_key("", {{"LOGLEVEL", "warning"}}) == "LOGLEVEL");
    CHECK(error_key("", {{"LOGFORMAT", "yaml"}}) == "LOGFORMAT");
    CHECK(error_key("", {{"TRANSPORTER", "mqtt://localhost:1883"}}) == "TRANSPORTER");
    CHECK(error_key("", {{"TRANSPORTER", "redis://localhost:0"}}) == "TRANSPORTER");
    CHECK(error_key("", {{"PROTOCOL_VERSION", "3"}}) == "PROTOCOL_VERSION");
  }

  TEST_CASE("transporter forms") {
    SUBCASE("absent or null: default URL, not configured") {
      for (const char* text : {"{}", R"({"transporter": null})", R"({"transporter": ""})"}) {
        const auto c = parse(text);
        CHECK(c.broker.transporter == "nats://127.0.0.1:4222");
        CHECK_FALSE(c.broker.transporter_configured);
      }
    }
    SUBCASE("URL string") {
      const auto c = parse(R"({"transporter": "nats://nats.local:4223"})");
      CHECK(c.broker.transporter == "nats://nats.local:4223");
      CHECK(c.broker.transporter_configured);
    }
    SUBCASE("comma-separated URL list") {
      CHECK(parse(R"({"transporter": "nats://a:4222, nats://b:4222"})").broker.transporter ==
            "nats://a:4222,nats://b:4222");
    }
    SUBCASE("URL with credentials") {
      CHECK(parse(R"({"transporter": "nats://u:p@a:4222"})").broker.transporter ==
            "nats://u:p@a:4222");
    }
    SUBCASE("bare NATS / nats") {
      for (const char* text : {R"({"transporter": "NATS"})", R"({"transporter": "nats"})"}) {
        const auto c = parse(text);
        CHECK(c.broker.transporter == "nats://127.0.0.1:4222");
        CHECK(c.broker.transporter_configured);
      }
    }
    SUBCASE("object with options.url") {
      const auto c =
          parse(R"({"transporter": {"type": "NATS", "options": {"url": "nats://x:4222"}}})");
      CHECK(c.broker.transporter == "nats://x:4222");
      CHECK(c.broker.transporter_configured);
    }
    SUBCASE("object with options.servers") {
      CHECK(parse(R"({"transporter": {"type": "NATS",
                      "options": {"servers": ["nats://a:1", "b:2"]}}})")
                .broker.transporter == "nats://a:1,nats://b:2");
      CHECK(parse(R"({"transporter": {"type": "nats", "options": {"servers": "c:3"}}})")
                .broker.transporter == "nats://c:3");
    }
    SUBCASE("object: url wins over servers") {
      CHECK(parse(R"({"transporter": {"options": {"url": "nats://u:1",
                      "servers": ["nats://s:2"]}}})")
                .broker.transporter == "nats://u:1");
    }
    SUBCASE("object without options or type") {
      for (const char* text : {R"({"transporter": {"type": "NATS"}})", R"({"transporter": {}})"}) {
        const auto c = parse(text);
        CHECK(c.broker.transporter == "nats://127.0.0.1:4222");
        CHECK(c.broker.transporter_configured);
      }
    }
    SUBCASE("object with a URL string as options") {
      CHECK(parse(R"({"transporter": {"type": "NATS", "options": "nats://o:4222"}})")
                .broker.transporter == "nats://o:4222");
    }
    SUBCASE("object with user/pass and token") {
      CHECK(parse(R"({"transporter": {"options": {"url": "nats://a:1,nats://b:2",
                      "user": "u", "pass": "p"}}})")
                .broker.transporter == "nats://u:p@a:1,nats://u:p@b:2");
      CHECK(parse(R"({"transporter": {"options": {"url": "nats://a:1", "token": "t"}}})")
                .broker.transporter == "nats://t@a:1");
    }
    SUBCASE("other transporters are refused naming transporter") {
      for (const char* text :
           {R"({"transporter": "TCP"})", R"({"transporter": "mqtt://m:1883"})",
            R"({"transporter": "amqp://r"})", R"({"transporter": "kafka://k:9092"})",
            R"({"transporter": {"type": "TCP"}})", R"({"transporter": "something"})"}) {
        CAPTURE(text);
        CHECK(error_key(text) == "transporter");
        CHECK(error_message(text).find("only NATS or Redis is supported") != std::string::npos);
      }
    }
    SUBCASE("wrong types") {
      CHECK(error_key(R"({"transporter": 4222})") == "transporter");
      CHECK(error_key(R"({"transporter": ["nats://a:1"]})") == "transporter");
      CHECK(error_key(R"({"transporter": {"type": 1}})") == "transporter.type");
      CHECK(error_key(R"({"transporter": {"options": 1}})") == "transporter.options");
      CHECK(error_key(R"({"transporter": {"options": {"url": 1}}})") == "transporter.options.url");
      CHECK(error_key(R"({"transporter": {"options": {"servers": [1]}}})") ==
            "transporter.options.servers");
      CHECK(error_key(R"({"transporter": "nats://a:1,redis://b"})") == "transporter");
      CHECK(error_key(R"({"transporter": {"type": "NATS", "options": "redis://r"}})") ==
            "transporter.options");
    }
    SUBCASE("credentials are not echoed in errors") {
      for (const char* text : {R"({"transporter": "redis://user:secret@r:99999"})",
                               R"({"transporter": "mqtt://user:secret@m:1883"})",
                               R"({"transporter": "nats://a:1,redis://user:secret@r"})"}) {
        CAPTURE(text);
        const auto message = error_message(text);
        CHECK_FALSE(message.empty());
        CHECK(message.find("secret") == std::string::npos);
      }
    }
    SUBCASE("NATS keeps the NATS kind") {
      CHECK(parse(R"({"transporter": "nats://n:4222"})").transport.kind == Kind::Nats);
      CHECK(parse("{}").transport.kind == Kind::Nats);
    }
  }

  TEST_CASE("Redis transporter forms") {
    SUBCASE("\"Redis\" in any case: localhost:6379") {
      for (const char* text : {R"({"transporter": "Redis"})", R"({"transporter": "REDIS"})",
                               R"({"transporter": {"type": "redis"}})"}) {
        CAPTURE(text);
        const auto c = parse(text);
        CHECK(c.transport.kind == Kind::Redis);
        REQUIRE(c.transport.redis.endpoints.size() == 1);
        CHECK(c.transport.redis.endpoints[0].host == "localhost");
        CHECK(c.transport.redis.endpoints[0].port == 6379);
        CHECK(c.broker.transporter == "redis://localhost:6379");
        CHECK(c.broker.transporter_configured);
      }
    }
    SUBCASE("URL string: the broker's text carries no password") {
      const auto c = parse(R"({"transporter": "rediss://molnode:p%40ss@r.example:6380/1"})");
      CHECK(c.transport.kind == Kind::Redis);
      CHECK(c.transport.redis.tls.enabled);
      CHECK(c.transport.redis.username == "molnode");
      CHECK(c.transport.redis.password == "p@ss");
      CHECK(c.transport.redis.db == 1);
      CHECK(c.broker.transporter == "rediss://r.example:6380 (user molnode, password set)");
      CHECK(c.broker.transporter_configured);
    }
    SUBCASE("object form") {
      const auto c = parse(R"({"transporter": {"type": "Redis", "options": {"host": "r",
          "port": 6390, "password": 1234, "tls": {"rejectUnauthorized": false}}}})");
      CHECK(c.transport.kind == Kind::Redis);
      CHECK(c.transport.redis.endpoints[0].host == "r");
      CHECK(c.transport.redis.endpoints[0].port == 6390);
      CHECK(c.transport.redis.password == "1234");
      CHECK(c.transport.redis.tls.enabled);
      CHECK_FALSE(c.transport.redis.tls.reject_unauthorized);
      CHECK(c.broker.transporter.find("1234") == std::string::npos);
    }
    SUBCASE("object form with a URL string as options") {
      const auto c =
          parse(R"({"transporter": {"type": "Redis", "options": "redis://:pw@r:6391"}})");
      CHECK(c.transport.kind == Kind::Redis);
      CHECK(c.transport.redis.password == "pw");
      CHECK(c.transport.redis.endpoints[0].port == 6391);
    }
    SUBCASE("cluster nodes") {
      const auto c = parse(R"({"transporter": {"type": "Redis", "options": {"cluster": {
          "nodes": [{"host": "a", "port": 7000}, {"host": "b", "port": 7001}]}}}})");
      REQUIRE(c.transport.redis.endpoints.size() == 2);
      CHECK(c.transport.redis.endpoints[1].host == "b");
    }
    SUBCASE("bad forms name the key") {
      struct Case {
        const char* text;
        const char* key;
      };
      for (const Case& k : {
               Case{R"({"transporter": "redis://r:0"})", "transporter"},
               Case{R"({"transporter": "redis://a,redis://b"})", "transporter"},
               Case{R"({"transporter": {"type": "Redis", "options": {"port": "x"}}})",
                    "transporter.options.port"},
               Case{R"({"transporter": {"type": "Redis", "options": {"sentinels": []}}})",
                    "transporter.options.sentinels"},
               Case{R"({"transporter": {"type": "Redis", "options": {"path": "/s"}}})",
                    "transporter.options.path"},
               Case{R"({"transporter": {"type": "Redis", "options": {"cluster": {"nodes": []}}}})",
                    "transporter.options.cluster.nodes"},
               Case{R"({"transporter": {"type": "Redis", "options": "redis://"}})",
                    "transporter.options"},
               Case{R"({"transporter": {"type": "Redis", "options": 1}})", "transporter.options"},
           }) {
        CAPTURE(k.text);
        CHECK(error_key(k.text) == k.key);
      }
      CHECK(error_message(R"({"transporter": {"type": "Redis", "options": {"cluster": {}}}})")
                .find("No nodes defined for cluster") != std::string::npos);
    }
    SUBCASE("TRANSPORTER: every string form, replacing the file's transporter") {
      const std::string file = R"({"transporter": {"type": "Redis", "options": {"port": 1}}})";
      const auto url = parse(file, {{"TRANSPORTER", "redis://:pw@redis:6379"}});
      CHECK(url.transport.kind == Kind::Redis);
      CHECK(url.transport.redis.endpoints[0].host == "redis");
      CHECK(url.transport.redis.password == "pw");
      CHECK(url.broker.transporter == "redis://redis:6379 (password set)");
      const auto bare = parse("", {{"TRANSPORTER", "Redis"}});
      CHECK(bare.transport.kind == Kind::Redis);
      CHECK(bare.broker.transporter_configured);
      CHECK(bare.transport.redis.endpoints[0].port == 6379);
      const auto tls = parse("", {{"TRANSPORTER", "rediss://r"}});
      CHECK(tls.transport.redis.tls.enabled);
      const auto nats = parse(file, {{"TRANSPORTER", "nats://n:4222"}});
      CHECK(nats.transport.kind == Kind::Nats);
      CHECK(nats.broker.transporter == "nats://n:4222");
      CHECK(error_key("", {{"TRANSPORTER", "redis://r:99999"}}) == "TRANSPORTER");
      CHECK(error_key("", {{"TRANSPORTER", "redis://a:1,redis://b:2"}}) == "TRANSPORTER");
      CHECK(error_message("", {{"TRANSPORTER", "redis://:s3cret@r:0"}}).find("s3cret") ==
            std::string::npos);
    }
  }

  TEST_CASE("serializer") {
    CHECK(parse(R"({"serializer": "JSON"})").broker.serializer == "JSON");
    CHECK(error_key(R"({"serializer": "MsgPack"})") == "serializer");
    CHECK(error_key(R"({"serializer": 1})") == "serializer");
  }

  TEST_CASE("protocolVersion accepts \"4\"/\"5\" and the numbers 4/5") {
    CHECK(parse(R"({"protocolVersion": "5"})").broker.protocol_version == "5");
    CHECK(parse(R"({"protocolVersion": 5})").broker.protocol_version == "5");
    CHECK(parse(R"({"protocolVersion": 4})").broker.protocol_version == "4");
    CHECK(error_key(R"({"protocolVersion": "3"})") == "protocolVersion");
    CHECK(error_key(R"({"protocolVersion": 6})") == "protocolVersion");
    CHECK(error_key(R"({"protocolVersion": 4.5})") == "protocolVersion");
    CHECK(error_key(R"({"protocolVersion": true})") == "protocolVersion");
  }

  TEST_CASE("logLevel") {
    for (const char* level : {"trace", "debug", "info", "warn", "error", "fatal"}) {
      CHECK(parse(std::string(R"({"logLevel": ")") + level + "\"}").broker.log_level == level);
    }
    CHECK(error_key(R"({"logLevel": "warning"})") == "logLevel");
    CHECK(error_key(R"({"logLevel": 3})") == "logLevel");
  }

  TEST_CASE("gateway.port range; 0 is accepted (ephemeral port)") {
    CHECK(parse(R"({"gateway": {"port": 0}})").gateway.port == 0);
    CHECK(parse(R"({"gateway": {"port": 65535}})").gateway.port == 65535);
    CHECK(error_key(R"({"gateway": {"port": 65536}})") == "gateway.port");
    CHECK(error_key(R"({"gateway": {"port": -1}})") == "gateway.port");
    CHECK(error_key(R"({"gateway": {"port": "5100"}})") == "gateway.port");
    CHECK(error_key(R"({"gateway": {"port": 51.5}})") == "gateway.port");
    CHECK(error_message(R"({"gateway": {"port": "x"}})") ==
          "gateway.port: must be an integer between 0 and 65535");
  }

  TEST_CASE("gateway.path") {
    CHECK(parse(R"({"gateway": {"path": "/"}})").gateway.path == "/");
    CHECK(parse(R"({"gateway": {"path": "/io/"}})").gateway.path == "/io/");
    CHECK(parse(R"({"gateway": {"path": "/a/b"}})").gateway.path == "/a/b/");
    CHECK(error_key(R"({"gateway": {"path": "socket.io"}})") == "gateway.path");
    CHECK(error_key(R"({"gateway": {"path": ""}})") == "gateway.path");
    CHECK(error_key(R"({"gateway": {"path": 1}})") == "gateway.path");
  }

  TEST_CASE("gateway.clientBundle") {
    TempDir dir;
    const auto bundle = dir.path + "/dist";
    const auto empty = dir.path + "/empty";
    REQUIRE(::mkdir(bundle.c_str(), 0700) == 0);
    REQUIRE(::mkdir(empty.c_str(), 0700) == 0);
    const auto script = dir.write("dist/socket.io.js", "/* bundle */");
    const auto with = [](const std::string& value) {
      return R"({"gateway": {"clientBundle": )" + value + "}}";
    };
    const auto quoted = [](const std::string& path) { return Json(path).dump(); };

    SUBCASE("null, absent or true: the installed default, found at start") {
      for (const char* value : {"null", "true"}) {
        CAPTURE(value);
        const auto g = parse(with(value)).gateway;
        CHECK(g.serve_client);
        CHECK(g.client_bundle == "");
      }
      CHECK(parse("{}").gateway.serve_client);
    }
    SUBCASE("false or \"\": no bundle") {
      for (const char* value : {"false", R"("")"}) {
        CAPTURE(value);
        const auto g = parse(with(value)).gateway;
        CHECK_FALSE(g.serve_client);
        CHECK(g.client_bundle == "");
      }
    }
    SUBCASE("a folder holding socket.io.js is used as given") {
      const auto g = parse(with(quoted(bundle))).gateway;
      CHECK(g.serve_client);
      CHECK(g.client_bundle == bundle);
      in_directory(dir.path, [&] {
        CHECK(parse(with(R"("dist")")).gateway.client_bundle == "dist");
        CHECK(parse(with(R"("./dist/")")).gateway.client_bundle == "./dist/");
      });
    }
    SUBCASE("a missing folder, a file, a folder without socket.io.js") {
      CHECK(error_message(with(quoted(dir.path + "/nowhere"))) ==
            "gateway.clientBundle: folder not found: " + dir.path + "/nowhere");
      CHECK(error_key(with(quoted(script))) == "gateway.clientBundle");
      CHECK(error_message(with(quoted(empty))) ==
            "gateway.clientBundle: no socket.io.js in " + empty);
      // The environment does not rescue a bad folder.
      CHECK(error_key(with(quoted(empty)), {{"PORT", "5200"}}) == "gateway.clientBundle");
    }
    SUBCASE("wrong types") {
      for (const char* value : {"0", "1", "[]", R"(["dist"])", "{}"}) {
        CAPTURE(value);
        CHECK(error_message(with(value)) ==
              "gateway.clientBundle: must be a folder path, or false to serve no bundle");
      }
    }
    std::remove(script.c_str());
    ::rmdir(bundle.c_str());
    ::rmdir(empty.c_str());
  }

  TEST_CASE("each validation error names its dotted key") {
    const std::pair<const char*, const char*> cases[] = {
        {R"({"namespace": 1})", "namespace"},
        {R"({"nodeID": 1})", "nodeID"},
        {R"({"requestTimeout": -1})", "requestTimeout"},
        {R"({"requestTimeout": "5s"})", "requestTimeout"},
        {R"({"heartbeatInterval": 0})", "heartbeatInterval"},
        {R"({"heartbeatInterval": "5"})", "heartbeatInterval"},
        {R"({"heartbeatTimeout": -3})", "heartbeatTimeout"},
        {R"({"heartbeatInterval": 10, "heartbeatTimeout": 10})", "heartbeatTimeout"},
        {R"({"heartbeatInterval": 40})", "heartbeatTimeout"},
        {R"({"cleanOfflineNodesTimeout": -1})", "cleanOfflineNodesTimeout"},
        {R"({"disableBalancer": "yes"})", "disableBalancer"},
        {R"({"metadata": []})", "metadata"},
        {R"({"registry": true})", "registry"},
        {R"({"registry": {"preferLocal": 1}})", "registry.preferLocal"},
        {R"({"transit": {"maxQueueSize": 0}})", "transit.maxQueueSize"},
        {R"({"transit": {"maxQueueSize": "1"}})", "transit.maxQueueSize"},
        {R"({"serviceName": ""})", "serviceName"},
        {R"({"serviceName": 5})", "serviceName"},
        {R"({"gateway": []})", "gateway"},
        {R"({"gateway": {"host": ""}})", "gateway.host"},
        {R"({"gateway": {"pingInterval": 0}})", "gateway.pingInterval"},
        {R"({"gateway": {"pingTimeout": -5}})", "gateway.pingTimeout"},
        {R"({"gateway": {"connectTimeout": -1}})", "gateway.connectTimeout"},
        {R"({"gateway": {"drainTimeout": -1}})", "gateway.drainTimeout"},
        {R"({"gateway": {"drainTimeout": "5s"}})", "gateway.drainTimeout"},
        {R"({"gateway": {"drainTimeout": 1.5}})", "gateway.drainTimeout"},
        {R"({"gateway": {"maxHttpBufferSize": 0}})", "gateway.maxHttpBufferSize"},
        {R"({"gateway": {"corsOrigins": "https://app.example"}})", "gateway.corsOrigins"},
        {R"({"gateway": {"corsOrigins": true}})", "gateway.corsOrigins"},
        {R"({"gateway": {"corsOrigins": {}}})", "gateway.corsOrigins"},
        {R"({"gateway": {"corsOrigins": [1]}})", "gateway.corsOrigins"},
        {R"({"gateway": {"corsOrigins": ["*"]}})", "gateway.corsOrigins"},
        {R"({"gateway": {"corsOrigins": ["null"]}})", "gateway.corsOrigins"},
        {R"({"gateway": {"corsOrigins": ["app.example"]}})", "gateway.corsOrigins"},
        {R"({"gateway": {"corsOrigins": ["https://app.example/"]}})", "gateway.corsOrigins"},
        {R"({"gateway": {"corsOrigins": [""]}})", "gateway.corsOrigins"},
        {R"({"gateway": {"maxRoomsPerSocket": 0}})", "gateway.maxRoomsPerSocket"},
        {R"({"gateway": {"anonymousRooms": 0}})", "gateway.anonymousRooms"},
        {R"({"gateway": {"individualRoomParts": "me"}})", "gateway.individualRoomParts"},
        {R"({"gateway": {"individualRoomParts": [""]}})", "gateway.individualRoomParts"},
        {R"({"gateway": {"metadataTypes": [null]}})", "gateway.metadataTypes"},
        {R"({"auth": 1})", "auth"},
        {R"({"auth": {"action": ""}})", "auth.action"},
        {R"({"auth": {"timeout": -1}})", "auth.timeout"},
        {R"({"auth": {"cacheTtl": "60"}})", "auth.cacheTtl"},
    };
    check_errors_name_keys(cases);
  }

  TEST_CASE("integral floats are accepted as integers") {
    CHECK(parse(R"({"gateway": {"port": 8080.0}})").gateway.port == 8080);
  }

  TEST_CASE("a number beyond a double is invalid JSON, not a JSON library exception") {
    // Found by fuzz_config: nlohmann reports it as out_of_range.406, not as a parse_error.
    CHECK(error_key(R"({"transit": {"maxQueueSize": 500001e308}})") == "moleculer.config.json");
    CHECK(error_message("[1e999]") ==
          "moleculer.config.json: invalid JSON: number overflow parsing '1e999'");
  }

  TEST_CASE("invalid JSON names the file") {
    const std::string bad = "{\n  \"gateway\": {\n    \"port\": 5100,\n  }\n}";
    CHECK(error_key(bad) == "moleculer.config.json");
    const auto message = error_message(bad);
    CHECK(message.rfind("moleculer.config.json: invalid JSON at line 4", 0) == 0);
    try {
      parse_config(bad, {}, "/etc/steedos/socket.json");
      FAIL("no error");
    } catch (const ConfigError& e) {
      CHECK(e.key() == "/etc/steedos/socket.json");
    }
    CHECK(error_key("[1, 2]") == "moleculer.config.json");
    CHECK(error_key("null") == "moleculer.config.json");
    CHECK(error_key("// comment\n{}") == "moleculer.config.json");
  }

  TEST_CASE("choose_config_path and load_config") {
    using steedos::services::choose_config_path;
    using steedos::services::load_config;
    TempDir dir;
    const auto other = dir.write("other.json", R"({"gateway": {"port": 7000}})");

    SUBCASE("--config wins over MOLECULER_CONFIG") {
      CHECK(choose_config_path(other, {{"MOLECULER_CONFIG", "/nonexistent.json"}}) == other);
      const auto c = load_config(other, {});
      CHECK(c.gateway.port == 7000);
      CHECK(c.source == other);
    }
    SUBCASE("MOLECULER_CONFIG") {
      CHECK(choose_config_path("", {{"MOLECULER_CONFIG", other}}) == other);
      CHECK(load_config("", {{"MOLECULER_CONFIG", other}}).gateway.port == 7000);
    }
    SUBCASE("a named file that does not exist is an error") {
      try {
        choose_config_path(dir.path + "/missing.json", {});
        FAIL("no error");
      } catch (const ConfigError& e) {
        CHECK(e.key() == "--config");
      }
      try {
        load_config("", {{"MOLECULER_CONFIG", dir.path + "/missing.json"}});
        FAIL("no error");
      } catch (const ConfigError& e) {
        CHECK(e.key() == "MOLECULER_CONFIG");
      }
    }
    SUBCASE("a missing default file means the defaults") {
      in_directory(dir.path, [] {
        CHECK(choose_config_path("", {}) == "");
        const auto c = load_config("", {{"PORT", "9000"}});
        CHECK(c.gateway.port == 9000);
        CHECK(c.source == "");
      });
    }
    SUBCASE("the default file in the working directory is read") {
      dir.write("moleculer.config.json", R"({"namespace": "cwd"})");
      in_directory(dir.path, [] {
        CHECK(choose_config_path("", {}) == "./moleculer.config.json");
        const auto c = load_config("", {});
        CHECK(c.broker.moleculer_namespace == "cwd");
        CHECK(c.source == "./moleculer.config.json");
      });
    }
    SUBCASE("a broken file names its path") {
      const auto broken = dir.write("other.json", "{ nope");
      try {
        load_config(broken, {});
        FAIL("no error");
      } catch (const ConfigError& e) {
        CHECK(e.key() == broken);
        CHECK(std::string(e.what()).find("invalid JSON") != std::string::npos);
      }
    }
    SUBCASE("an empty file is invalid") {
      const auto empty = dir.write("other.json", "");
      try {
        load_config(empty, {});
        FAIL("no error");
      } catch (const ConfigError& e) {
        CHECK(e.key() == empty);
      }
    }
    SUBCASE("a directory is not a config file") {
      try {
        load_config(dir.path, {});
        FAIL("no error");
      } catch (const ConfigError& e) {
        CHECK(e.key() == dir.path);
      }
    }
  }

  TEST_CASE("read_environment reads the node's variables") {
    const char* previous = std::getenv("LOGLEVEL");
    const std::string saved = previous ? previous : "";
    ::setenv("LOGLEVEL", "debug", 1);
    ::setenv("STEEDOS_UNRELATED_TEST_VAR", "x", 1);
    const auto env = steedos::services::read_environment();
    if (previous) {
      ::setenv("LOGLEVEL", saved.c_str(), 1);
    } else {
      ::unsetenv("LOGLEVEL");
    }
    ::unsetenv("STEEDOS_UNRELATED_TEST_VAR");
    REQUIRE(env.count("LOGLEVEL") == 1);
    CHECK(env.at("LOGLEVEL") == "debug");
    CHECK(env.count("STEEDOS_UNRELATED_TEST_VAR") == 0);
  }
}

// Issue 9, the Socket.IO and service limits: gateway.maxAttachments, gateway.maxEventNameLength,
// gateway.maxSubscribesPerSecond, auth.maxInFlight.
TEST_SUITE("config: socket limits") {
  TEST_CASE("defaults, in the parser and in the committed moleculer.config.json") {
    for (const auto& c : {parse(""), parse_config(read_text(repo_root() + "/moleculer.config.json"),
                                                  {}, "moleculer.config.json")}) {
      CHECK(c.gateway.max_attachments == 10);
      CHECK(c.gateway.max_event_name_length == 256);
      CHECK(c.gateway.max_subscribes_per_second == 50);
      CHECK(c.auth.max_in_flight == 200);
    }
    const auto j = Json::parse(read_text(repo_root() + "/moleculer.config.json"));
    for (const char* key : {"maxAttachments", "maxEventNameLength", "maxSubscribesPerSecond"}) {
      CHECK_MESSAGE(j["gateway"].contains(key), key);
    }
    CHECK(j["auth"].contains("maxInFlight"));
  }

  TEST_CASE("values from the file") {
    const auto c = parse(R"({"gateway": {"maxAttachments": 3, "maxEventNameLength": 1,
                                          "maxSubscribesPerSecond": 1000},
                             "auth": {"maxInFlight": 1}})");
    CHECK(c.gateway.max_attachments == 3);
    CHECK(c.gateway.max_event_name_length == 1);
    CHECK(c.gateway.max_subscribes_per_second == 1000);
    CHECK(c.auth.max_in_flight == 1);
    const auto nulls =
        parse(R"({"gateway": {"maxAttachments": null}, "auth": {"maxInFlight": null}})");
    CHECK(nulls.gateway.max_attachments == 10);
    CHECK(nulls.auth.max_in_flight == 200);
  }

  TEST_CASE("bad values name the key") {
    const std::pair<const char*, const char*> cases[] = {
        {R"({"gateway": {"maxAttachments": 0}})", "gateway.maxAttachments"},
        {R"({"gateway": {"maxAttachments": -1}})", "gateway.maxAttachments"},
        {R"({"gateway": {"maxAttachments": "10"}})", "gateway.maxAttachments"},
        {R"({"gateway": {"maxAttachments": 2.5}})", "gateway.maxAttachments"},
        {R"({"gateway": {"maxEventNameLength": 0}})", "gateway.maxEventNameLength"},
        {R"({"gateway": {"maxEventNameLength": true}})", "gateway.maxEventNameLength"},
        {R"({"gateway": {"maxEventNameLength": 1e20}})", "gateway.maxEventNameLength"},
        {R"({"gateway": {"maxSubscribesPerSecond": 0}})", "gateway.maxSubscribesPerSecond"},
        {R"({"gateway": {"maxSubscribesPerSecond": -50}})", "gateway.maxSubscribesPerSecond"},
        {R"({"gateway": {"maxSubscribesPerSecond": [50]}})", "gateway.maxSubscribesPerSecond"},
        {R"({"auth": {"maxInFlight": 0}})", "auth.maxInFlight"},
        {R"({"auth": {"maxInFlight": "200"}})", "auth.maxInFlight"},
        {R"({"auth": {"maxInFlight": 0.5}})", "auth.maxInFlight"},
    };
    check_errors_name_keys(cases);
  }
}

// Issue 9, the connection-level limits of the gateway (gateway.maxConnections ...).
TEST_SUITE("config: connection limits") {
  void check_limit_defaults(const steedos::services::GatewaySettings& g) {
    CHECK_FALSE(g.max_connections.has_value());  // derived from RLIMIT_NOFILE at start
    CHECK(g.max_connections_per_address == 0);
    CHECK(g.max_handshakes_per_second == 2000);
    CHECK(g.max_polling_sessions == 10000);
    CHECK(g.max_buffered_bytes == 4 * 1024 * 1024);
    CHECK(g.max_header_bytes == 16000);
    CHECK(g.headers_timeout_ms == 10000);
  }

  TEST_CASE("defaults, without a file and from the committed moleculer.config.json") {
    check_limit_defaults(parse("").gateway);
    const auto path = repo_root() + "/moleculer.config.json";
    const auto c = parse_config(read_text(path), {}, path);
    check_limit_defaults(c.gateway);
    const auto j = Json::parse(read_text(path));
    for (const char* key :
         {"maxConnections", "maxConnectionsPerAddress", "maxHandshakesPerSecond",
          "maxPollingSessions", "maxBufferedBytes", "maxHeaderBytes", "headersTimeout"}) {
      CHECK_MESSAGE(j["gateway"].contains(key), key);
    }
  }

  TEST_CASE("file values override the defaults") {
    const auto g = parse(R"({"gateway": {"maxConnections": 500, "maxConnectionsPerAddress": 20,
      "maxHandshakesPerSecond": 0, "maxPollingSessions": 7, "maxBufferedBytes": 65536,
      "maxHeaderBytes": 8192, "headersTimeout": 2500}})")
                       .gateway;
    REQUIRE(g.max_connections.has_value());
    CHECK(*g.max_connections == 500);
    CHECK(g.max_connections_per_address == 20);
    CHECK(g.max_handshakes_per_second == 0);
    CHECK(g.max_polling_sessions == 7);
    CHECK(g.max_buffered_bytes == 65536);
    CHECK(g.max_header_bytes == 8192);
    CHECK(g.headers_timeout_ms == 2500);
    CHECK_FALSE(parse(R"({"gateway": {"maxConnections": null}})").gateway.max_connections);
  }

  TEST_CASE("bad values name their key") {
    const std::pair<const char*, const char*> cases[] = {
        {R"({"gateway": {"maxConnections": 0}})", "gateway.maxConnections"},
        {R"({"gateway": {"maxConnections": -1}})", "gateway.maxConnections"},
        {R"({"gateway": {"maxConnections": "1000"}})", "gateway.maxConnections"},
        {R"({"gateway": {"maxConnections": 1.5}})", "gateway.maxConnections"},
        {R"({"gateway": {"maxConnectionsPerAddress": -1}})", "gateway.maxConnectionsPerAddress"},
        {R"({"gateway": {"maxConnectionsPerAddress": true}})", "gateway.maxConnectionsPerAddress"},
        {R"({"gateway": {"maxHandshakesPerSecond": -5}})", "gateway.maxHandshakesPerSecond"},
        {R"({"gateway": {"maxHandshakesPerSecond": 1000001}})", "gateway.maxHandshakesPerSecond"},
        {R"({"gateway": {"maxHandshakesPerSecond": 2.5}})", "gateway.maxHandshakesPerSecond"},
        {R"({"gateway": {"maxPollingSessions": -1}})", "gateway.maxPollingSessions"},
        {R"({"gateway": {"maxPollingSessions": []}})", "gateway.maxPollingSessions"},
        {R"({"gateway": {"maxBufferedBytes": 1023}})", "gateway.maxBufferedBytes"},
        {R"({"gateway": {"maxBufferedBytes": "4MB"}})", "gateway.maxBufferedBytes"},
        {R"({"gateway": {"maxHeaderBytes": 255}})", "gateway.maxHeaderBytes"},
        {R"({"gateway": {"maxHeaderBytes": 16001}})", "gateway.maxHeaderBytes"},
        {R"({"gateway": {"headersTimeout": 0}})", "gateway.headersTimeout"},
        {R"({"gateway": {"headersTimeout": "10s"}})", "gateway.headersTimeout"},
    };
    for (const auto& one_case : cases) {
      // Not a structured binding: CAPTURE's lambda may not capture one in C++17 (clang refuses).
      const auto& text = one_case.first;
      const auto& key = one_case.second;
      CAPTURE(text);
      CHECK(error_key(text) == key);
      CHECK(error_message(text).rfind(std::string(key) + ": ", 0) == 0);
    }
  }
}

TEST_SUITE("config: NATS pings") {
  TEST_CASE("5 s and 2 unless transporter.options says otherwise (nats.js's names)") {
    const auto defaults = parse(R"({"transporter": "nats://127.0.0.1:4222"})").transport;
    CHECK(defaults.nats_ping_interval_ms == 5000);
    CHECK(defaults.nats_max_pings_out == 2);
    const auto set = parse(R"({"transporter": {"type": "NATS", "options": {
      "url": "nats://127.0.0.1:4222", "pingInterval": 1000, "maxPingOut": 3}}})")
                         .transport;
    CHECK(set.nats_ping_interval_ms == 1000);
    CHECK(set.nats_max_pings_out == 3);
  }

  TEST_CASE("bad values name their key") {
    CHECK(error_key(R"({"transporter": {"options": {"pingInterval": 0}}})") ==
          "transporter.options.pingInterval");
    CHECK(error_key(R"({"transporter": {"options": {"pingInterval": "5s"}}})") ==
          "transporter.options.pingInterval");
    CHECK(error_key(R"({"transporter": {"options": {"maxPingOut": 0}}})") ==
          "transporter.options.maxPingOut");
  }
}

TEST_SUITE("config: gateway.ioThreads") {
  TEST_CASE("null or absent: the cores (resolved at start); a number: that many threads") {
    CHECK_FALSE(parse("").gateway.io_threads.has_value());
    const auto path = repo_root() + "/moleculer.config.json";
    CHECK_FALSE(parse_config(read_text(path), {}, path).gateway.io_threads.has_value());
    CHECK(Json::parse(read_text(path))["gateway"].contains("ioThreads"));
    CHECK_FALSE(parse(R"({"gateway": {"ioThreads": null}})").gateway.io_threads.has_value());
    CHECK(parse(R"({"gateway": {"ioThreads": 1}})").gateway.io_threads == size_t{1});
    CHECK(parse(R"({"gateway": {"ioThreads": 4}})").gateway.io_threads == size_t{4});
  }

  TEST_CASE("bad values name the key") {
    for (const char* text :
         {R"({"gateway": {"ioThreads": 0}})", R"({"gateway": {"ioThreads": 257}})",
          R"({"gateway": {"ioThreads": -1}})", R"({"gateway": {"ioThreads": 1.5}})",
          R"({"gateway": {"ioThreads": "2"}})"}) {
      CAPTURE(text);
      CHECK(error_key(text) == "gateway.ioThreads");
    }
  }
}

TEST_SUITE("config: gateway.connectionStateRecovery") {
  TEST_CASE("off unless asked; true or an object turns it on with socket.io's defaults") {
    CHECK_FALSE(parse("").gateway.recovery.enabled);
    const auto path = repo_root() + "/moleculer.config.json";
    const auto committed = parse_config(read_text(path), {}, path).gateway.recovery;
    CHECK_FALSE(committed.enabled);
    CHECK(Json::parse(read_text(path))["gateway"].contains("connectionStateRecovery"));
    CHECK_FALSE(
        parse(R"({"gateway": {"connectionStateRecovery": false}})").gateway.recovery.enabled);
    CHECK_FALSE(
        parse(R"({"gateway": {"connectionStateRecovery": null}})").gateway.recovery.enabled);
    const auto on = parse(R"({"gateway": {"connectionStateRecovery": true}})").gateway.recovery;
    CHECK(on.enabled);
    CHECK(on.max_disconnection_duration_ms == 120000);
    CHECK(on.skip_middlewares);
    CHECK(on.store.empty());  // null: jetstream when the NATS has it, else memory (app/main.cpp)
    CHECK(on.jetstream_stream == "STEEDOS_SOCKET_HISTORY");
    CHECK(on.jetstream_bucket == "steedos_socket_sessions");
    CHECK(on.jetstream_replicas == 1);
    CHECK_FALSE(on.jetstream_memory_storage);
    const auto js = parse(R"({"gateway": {"connectionStateRecovery": {"store": "jetstream",
        "jetstream": {"stream": "H_1", "bucket": "s-1", "replicas": 3, "maxBytes": 1048576,
        "storage": "memory", "servers": "n1:4222, tls://n2:4222"}}}})")
                        .gateway.recovery;
    CHECK(js.store == "jetstream");
    CHECK(js.jetstream_stream == "H_1");
    CHECK(js.jetstream_bucket == "s-1");
    CHECK(js.jetstream_replicas == 3);
    CHECK(js.jetstream_max_bytes == 1048576);
    CHECK(js.jetstream_memory_storage);
    CHECK(js.jetstream_servers == "nats://n1:4222,tls://n2:4222");
    CHECK(on.jetstream_servers.empty());  // the NATS transporter's
    const auto custom = parse(R"({"gateway": {"connectionStateRecovery": {
        "maxDisconnectionDuration": 30000, "skipMiddlewares": false, "store": "memory",
        "maxSessions": 10, "maxPackets": 20}}})")
                            .gateway.recovery;
    CHECK(custom.enabled);
    CHECK(custom.max_disconnection_duration_ms == 30000);
    CHECK_FALSE(custom.skip_middlewares);
    CHECK(custom.max_sessions == 10);
    CHECK(custom.max_packets == 20);
  }

  TEST_CASE("bad values name the key") {
    const std::pair<const char*, const char*> cases[] = {
        {R"({"gateway": {"connectionStateRecovery": 1}})", "gateway.connectionStateRecovery"},
        {R"({"gateway": {"connectionStateRecovery": {"maxDisconnectionDuration": 0}}})",
         "gateway.connectionStateRecovery.maxDisconnectionDuration"},
        {R"({"gateway": {"connectionStateRecovery": {"store": "redis"}}})",
         "gateway.connectionStateRecovery.store"},
        {R"({"gateway": {"connectionStateRecovery": {"maxSessions": 0}}})",
         "gateway.connectionStateRecovery.maxSessions"},
        {R"({"gateway": {"connectionStateRecovery": {"maxDisconectionDuration": 5}}})",
         "gateway.connectionStateRecovery.maxDisconectionDuration"},
        {R"({"gateway": {"connectionStateRecovery": {"jetstream": {"stream": "a.b"}}}})",
         "gateway.connectionStateRecovery.jetstream.stream"},
        {R"({"gateway": {"connectionStateRecovery": {"jetstream": {"bucket": ""}}}})",
         "gateway.connectionStateRecovery.jetstream.bucket"},
        {R"({"gateway": {"connectionStateRecovery": {"jetstream": {"replicas": 0}}}})",
         "gateway.connectionStateRecovery.jetstream.replicas"},
        {R"({"gateway": {"connectionStateRecovery": {"jetstream": {"storage": "disk"}}}})",
         "gateway.connectionStateRecovery.jetstream.storage"},
        {R"({"gateway": {"connectionStateRecovery": {"jetstream": {"subject": "x"}}}})",
         "gateway.connectionStateRecovery.jetstream.subject"},
        {R"({"gateway": {"connectionStateRecovery": {"jetstream": 1}}})",
         "gateway.connectionStateRecovery.jetstream"},
        {R"({"gateway": {"connectionStateRecovery": {"jetstream": {"servers": "redis://r:6379"}}}})",
         "gateway.connectionStateRecovery.jetstream.servers"},
    };
    for (const auto& [text, key] : cases) {
      CAPTURE(text);
      CHECK(error_key(text) == key);
    }
  }
}

TEST_SUITE("config: probes and log format") {
  TEST_CASE("defaults, from the committed file, and values") {
    const auto defaults = parse("");
    CHECK(defaults.gateway.health_path == "/health");
    CHECK(defaults.gateway.ready_path == "/ready");
    CHECK(defaults.log_format == "text");
    const auto path = repo_root() + "/moleculer.config.json";
    const auto j = Json::parse(read_text(path));
    CHECK(j["gateway"]["healthPath"] == "/health");
    CHECK(j["gateway"]["readyPath"] == "/ready");
    CHECK(j["logFormat"] == "text");
    const auto c = parse(
        R"({"logFormat": "JSON", "gateway": {"healthPath": "/-/live", "readyPath": "/-/ready"}})");
    CHECK(c.log_format == "json");
    CHECK(c.gateway.health_path == "/-/live");
    CHECK(c.gateway.ready_path == "/-/ready");
    // Below the engine path is fine (probes are matched first), and so is an engine at "/".
    CHECK(parse(R"({"gateway": {"healthPath": "/socket.io/health"}})").gateway.health_path ==
          "/socket.io/health");
    CHECK(parse(R"({"gateway": {"path": "/"}})").gateway.ready_path == "/ready");
    CHECK(steedos::services::check_log_format("--log-format", "text") == "text");
    CHECK_THROWS_WITH_AS(steedos::services::check_log_format("--log-format", "yaml"),
                         doctest::Contains("--log-format: "), ConfigError);
  }

  TEST_CASE("bad values name their key") {
    const std::pair<const char*, const char*> cases[] = {
        {R"({"logFormat": "yaml"})", "logFormat"},
        {R"({"logFormat": ""})", "logFormat"},
        {R"({"logFormat": 1})", "logFormat"},
        {R"({"gateway": {"healthPath": "health"}})", "gateway.healthPath"},
        {R"({"gateway": {"healthPath": ""}})", "gateway.healthPath"},
        {R"({"gateway": {"healthPath": 5}})", "gateway.healthPath"},
        {R"({"gateway": {"healthPath": "/socket.io/"}})", "gateway.healthPath"},
        {R"({"gateway": {"readyPath": "/socket.io"}})", "gateway.readyPath"},
        {R"({"gateway": {"path": "/", "readyPath": "/"}})", "gateway.readyPath"},
        {R"({"gateway": {"readyPath": "/health"}})", "gateway.readyPath"},
    };
    check_errors_name_keys(cases);
  }
}

TEST_SUITE("config: metrics") {
  TEST_CASE("defaults, from the committed file, and values") {
    const auto defaults = parse("");
    CHECK(defaults.metrics.enabled);
    CHECK(defaults.metrics.path == "/metrics");
    CHECK_FALSE(defaults.metrics.port.has_value());
    const auto j = Json::parse(read_text(repo_root() + "/moleculer.config.json"));
    CHECK(j["metrics"]["enabled"] == true);
    CHECK(j["metrics"]["path"] == "/metrics");
    CHECK(j["metrics"]["port"].is_null());
    const auto c = parse(R"({"metrics": {"enabled": false, "path": "/-/metrics", "port": 9464}})");
    CHECK_FALSE(c.metrics.enabled);
    CHECK(c.metrics.path == "/-/metrics");
    REQUIRE(c.metrics.port.has_value());
    CHECK(*c.metrics.port == 9464);
    CHECK_FALSE(parse(R"({"metrics": {"port": null}})").metrics.port.has_value());
  }

  TEST_CASE("bad values name their key") {
    const std::pair<const char*, const char*> cases[] = {
        {R"({"metrics": 1})", "metrics"},
        {R"({"metrics": {"enabled": "yes"}})", "metrics.enabled"},
        {R"({"metrics": {"path": "metrics"}})", "metrics.path"},
        {R"({"metrics": {"path": ""}})", "metrics.path"},
        {R"({"metrics": {"path": "/socket.io/"}})", "metrics.path"},
        {R"({"metrics": {"path": "/health"}})", "metrics.path"},
        {R"({"metrics": {"port": 0}})", "metrics.port"},
        {R"({"metrics": {"port": 70000}})", "metrics.port"},
        {R"({"metrics": {"port": "9464"}})", "metrics.port"},
        {R"({"gateway": {"port": 9464}, "metrics": {"port": 9464}})", "metrics.port"},
    };
    check_errors_name_keys(cases);
  }
}
