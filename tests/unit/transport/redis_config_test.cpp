#include "transport/redis_config.hpp"

#include <doctest/doctest.h>

#include <string>

using steedos::Json;
using steedos::transport::describe_redis;
using steedos::transport::parse_redis_options;
using steedos::transport::parse_redis_url;
using steedos::transport::RedisConfigError;
using steedos::transport::RedisOptions;

namespace {

/// The RedisConfigError of parsing `url` as "transporter" ("" when none is thrown).
RedisConfigError url_error(const std::string& url, const std::string& key = "transporter") {
  try {
    parse_redis_url(url, key);
  } catch (const RedisConfigError& e) {
    return e;
  }
  return RedisConfigError("", "");
}

RedisConfigError options_error(const std::string& json) {
  try {
    parse_redis_options(Json::parse(json), "transporter.options");
  } catch (const RedisConfigError& e) {
    return e;
  }
  return RedisConfigError("", "");
}

RedisOptions options(const std::string& json) {
  return parse_redis_options(Json::parse(json), "transporter.options");
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_SUITE("redis config: URL") {
  TEST_CASE("host, port and defaults") {
    const auto o = parse_redis_url("redis://redis.example:6380");
    REQUIRE(o.endpoints.size() == 1);
    CHECK(o.endpoints[0].host == "redis.example");
    CHECK(o.endpoints[0].port == 6380);
    CHECK_FALSE(o.tls.enabled);
    CHECK(o.username.empty());
    CHECK(o.password.empty());
    CHECK(o.db == 0);
    CHECK(o.connect_timeout_ms == 10000);

    const auto d = parse_redis_url("redis://127.0.0.1");
    CHECK(d.endpoints[0].host == "127.0.0.1");
    CHECK(d.endpoints[0].port == 6379);
    CHECK(parse_redis_url("redis://h:").endpoints[0].port == 6379);
    CHECK(parse_redis_url("REDIS://Redis.Example/").endpoints[0].host == "redis.example");
    CHECK(parse_redis_url(" redis://h:2\n").endpoints[0].port == 2);
  }

  TEST_CASE("rediss turns TLS on, default port 6379 too") {
    const auto o = parse_redis_url("rediss://secure.example");
    CHECK(o.tls.enabled);
    CHECK(o.tls.reject_unauthorized);
    CHECK(o.endpoints[0].port == 6379);
    CHECK(parse_redis_url("RediSS://h:6380").tls.enabled);
  }

  TEST_CASE("credentials: password only, ACL user, percent-decoding") {
    const auto p = parse_redis_url("redis://:pw@h:1");
    CHECK(p.username.empty());
    CHECK(p.password == "pw");
    const auto u = parse_redis_url("redis://molnode:pw@h");
    CHECK(u.username == "molnode");
    CHECK(u.password == "pw");
    const auto e = parse_redis_url("redis://us%65r:p%40ss%3Aw%2Fo%25rd@h:7000");
    CHECK(e.username == "user");
    CHECK(e.password == "p@ss:w/o%rd");
    CHECK(e.endpoints[0].host == "h");
    CHECK(e.endpoints[0].port == 7000);
    // A raw '@' in the password: the host starts after the last '@', as url.parse does.
    CHECK(parse_redis_url("redis://:a@b@h").password == "a@b");
    // A user without ':' has no password (ioredis: username only, so no AUTH).
    const auto n = parse_redis_url("redis://someone@h");
    CHECK(n.username == "someone");
    CHECK(n.password.empty());
    CHECK(parse_redis_url("redis://:%E2%82%AC@h").password == "\xE2\x82\xAC");
  }

  TEST_CASE("IPv6 hosts in brackets") {
    const auto o = parse_redis_url("redis://[::1]:6380");
    CHECK(o.endpoints[0].host == "::1");
    CHECK(o.endpoints[0].port == 6380);
    CHECK(parse_redis_url("rediss://:pw@[FE80::1%eth0]").endpoints[0].host == "fe80::1%eth0");
    CHECK(parse_redis_url("redis://[2001:db8::7]/3").endpoints[0].port == 6379);
  }

  TEST_CASE("db from the path, query items fill what the URL left out") {
    CHECK(parse_redis_url("redis://h:1/2").db == 2);
    CHECK(parse_redis_url("redis://h/0").db == 0);
    const auto q = parse_redis_url("redis://h?password=p%20w&username=u&db=4&connectTimeout=500");
    CHECK(q.password == "p w");
    CHECK(q.username == "u");
    CHECK(q.db == 4);
    CHECK(q.connect_timeout_ms == 500);
    // The URL's own user part and path win over the query (ioredis' defaults()).
    const auto w = parse_redis_url("redis://a:b@h/1?password=q&db=9&family=6#frag");
    CHECK(w.password == "b");
    CHECK(w.db == 1);
  }

  TEST_CASE("refusals name the key and the reason") {
    struct Case {
      const char* url;
      const char* reason;
    };
    for (const Case& c : {
             Case{"redis://h:0", "between 1 and 65535"},
             Case{"redis://h:65536", "between 1 and 65535"},
             Case{"redis://h:12ab", "between 1 and 65535"},
             Case{"redis://h:-1", "between 1 and 65535"},
             Case{"redis://", "missing host"},
             Case{"redis://:pw@:6379", "missing host"},
             Case{"redis:///0", "missing host"},
             Case{"redis://ho st", "invalid host"},
             Case{"redis://h/x", "db 'x'"},
             Case{"redis://h/1/2", "db"},
             Case{"redis://h?db=z", "db 'z'"},
             Case{"redis://h?connectTimeout=soon", "connectTimeout"},
             Case{"redis://::1:6379", "brackets"},
             Case{"redis://[::1", "unclosed"},
             Case{"redis://[::1]x", "after the IPv6"},
             Case{"redis://[zz]:1", "invalid IPv6"},
             Case{"redis://:%zz@h", "percent-encoding"},
             Case{"redis://a:1,redis://b:2", "comma-separated list"},
             Case{"redis://a:1, rediss://b:2", "comma-separated list"},
             Case{"redis://a:1,b:2", "comma-separated list"},
             Case{"http://h:1", "redis://"},
             Case{"redis:h", "redis://"},
             Case{"", "redis://"},
         }) {
      CAPTURE(c.url);
      const auto e = url_error(c.url);
      CHECK(e.key() == "transporter");
      CHECK(contains(e.what(), c.reason));
      CHECK(std::string(e.what()).rfind("transporter: ", 0) == 0);
    }
    CHECK(url_error("redis://h:0", "TRANSPORTER").key() == "TRANSPORTER");
  }

  TEST_CASE("errors never show the password") {
    for (const char* url :
         {"redis://u:s3cret@h:99999", "redis://u:s3cret@ho st", "redis://:s3cret@[::1",
          "redis://:s3cret%zz@h", "redis://:s3cret@h/x", "redis://:s3cret@a:1,redis://b"}) {
      CAPTURE(url);
      const auto e = url_error(url);
      CHECK_FALSE(e.key().empty());
      CHECK_FALSE(contains(e.what(), "s3cret"));
    }
  }
}

TEST_SUITE("redis config: options") {
  TEST_CASE("object form") {
    const auto o = options(R"({"host": "redis.local", "port": 6380, "username": "molnode",
        "password": "pw", "db": 1, "connectTimeout": 2500, "retryStrategy": null,
        "keyPrefix": "ignored", "lazyConnect": true})");
    REQUIRE(o.endpoints.size() == 1);
    CHECK(o.endpoints[0].host == "redis.local");
    CHECK(o.endpoints[0].port == 6380);
    CHECK(o.username == "molnode");
    CHECK(o.password == "pw");
    CHECK(o.db == 1);
    CHECK(o.connect_timeout_ms == 2500);
    CHECK_FALSE(o.tls.enabled);
  }

  TEST_CASE("defaults, nulls and converted values") {
    const auto d = options("{}");
    CHECK(d.endpoints[0].host == "localhost");
    CHECK(d.endpoints[0].port == 6379);
    CHECK(options("null").endpoints[0].port == 6379);
    CHECK(options(R"({"host": null, "port": null, "password": null})").password.empty());
    CHECK(options(R"({"port": "6381"})").endpoints[0].port == 6381);
    CHECK(options(R"({"password": 1234})").password == "1234");
    CHECK(options(R"({"password": 1234.0})").password == "1234");
    CHECK(options(R"({"host": "::1"})").endpoints[0].host == "::1");
    CHECK(options(R"({"host": "[::1]"})").endpoints[0].host == "::1");
    CHECK(options(R"({"connectTimeout": 0})").connect_timeout_ms == 0);
  }

  TEST_CASE("tls: true or an object, PEM texts and paths kept as they are") {
    CHECK(options(R"({"tls": true})").tls.enabled);
    CHECK_FALSE(options(R"({"tls": false})").tls.enabled);
    CHECK(options(R"({"tls": {}})").tls.enabled);
    const auto o = options(R"({"tls": {"ca": "/etc/ssl/ca.pem",
        "cert": "-----BEGIN CERTIFICATE-----\nMII...\n-----END CERTIFICATE-----\n",
        "key": "/etc/ssl/key.pem", "servername": "redis.internal", "rejectUnauthorized": false,
        "minVersion": "TLSv1.2"}})");
    CHECK(o.tls.enabled);
    CHECK(o.tls.ca == "/etc/ssl/ca.pem");
    CHECK(o.tls.cert == "-----BEGIN CERTIFICATE-----\nMII...\n-----END CERTIFICATE-----\n");
    CHECK(o.tls.key == "/etc/ssl/key.pem");
    CHECK(o.tls.servername == "redis.internal");
    CHECK_FALSE(o.tls.reject_unauthorized);
  }

  TEST_CASE("string options are a URL") {
    const auto o = parse_redis_options(Json("rediss://:pw@r:6390/2"), "transporter.options");
    CHECK(o.tls.enabled);
    CHECK(o.password == "pw");
    CHECK(o.endpoints[0].port == 6390);
    CHECK(options_error(R"("redis://r:0")").key() == "transporter.options");
  }

  TEST_CASE("cluster: nodes as a failover list, members' options from redisOptions") {
    const auto o = options(R"({"host": "ignored", "password": "top",
        "cluster": {"nodes": [{"host": "10.0.0.1", "port": 7000}, {"port": 7001},
                              {"host": "[::1]"}, "10.0.0.4:7003", 7004, "redis://n5:7005"],
                    "clusterOptions": {"scaleReads": "slave",
                      "redisOptions": {"username": "u", "password": 42, "tls": {}}}}})");
    REQUIRE(o.endpoints.size() == 6);
    CHECK(o.endpoints[0].host == "10.0.0.1");
    CHECK(o.endpoints[0].port == 7000);
    CHECK(o.endpoints[1].host == "127.0.0.1");
    CHECK(o.endpoints[1].port == 7001);
    CHECK(o.endpoints[2].host == "::1");
    CHECK(o.endpoints[2].port == 6379);
    CHECK(o.endpoints[3].host == "10.0.0.4");
    CHECK(o.endpoints[3].port == 7003);
    CHECK(o.endpoints[4].host == "127.0.0.1");
    CHECK(o.endpoints[4].port == 7004);
    CHECK(o.endpoints[5].host == "n5");
    CHECK(o.username == "u");
    CHECK(o.password == "42");
    CHECK(o.tls.enabled);
    // Without redisOptions no credentials: ioredis' Cluster ignores the top-level ones.
    CHECK(options(R"({"password": "top", "cluster": {"nodes": [{"port": 1}]}})").password.empty());
  }

  TEST_CASE("refusals name the key") {
    struct Case {
      const char* json;
      const char* key;
      const char* reason;
    };
    for (const Case& c : {
             Case{R"({"sentinels": [{"host": "s", "port": 26379}], "name": "mymaster"})",
                  "transporter.options.sentinels", "Sentinel is not supported"},
             Case{R"({"name": "mymaster"})", "transporter.options.name", "Sentinel"},
             Case{R"({"role": "slave"})", "transporter.options.role", "Sentinel"},
             Case{R"({"sentinelPassword": "x"})", "transporter.options.sentinelPassword",
                  "Sentinel"},
             Case{R"({"path": "/run/redis.sock"})", "transporter.options.path",
                  "Unix sockets are not supported"},
             Case{R"({"port": 0})", "transporter.options.port", "between 1 and 65535"},
             Case{R"({"port": 70000})", "transporter.options.port", "between 1 and 65535"},
             Case{R"({"port": "x"})", "transporter.options.port", "between 1 and 65535"},
             Case{R"({"port": 6379.5})", "transporter.options.port", "between 1 and 65535"},
             Case{R"({"host": ""})", "transporter.options.host", "missing host"},
             Case{R"({"host": "a b"})", "transporter.options.host", "invalid host"},
             Case{R"({"host": 1})", "transporter.options.host", "must be a string"},
             Case{R"({"password": true})", "transporter.options.password", "must be a string"},
             Case{R"({"username": []})", "transporter.options.username", "must be a string"},
             Case{R"({"db": -1})", "transporter.options.db", "integer"},
             Case{R"({"connectTimeout": "soon"})", "transporter.options.connectTimeout", "integer"},
             Case{R"({"tls": "yes"})", "transporter.options.tls", "must be true, false"},
             Case{R"({"tls": {"ca": ["a", "b"]}})", "transporter.options.tls.ca", "PEM"},
             Case{R"({"tls": {"rejectUnauthorized": "no"}})",
                  "transporter.options.tls.rejectUnauthorized", "true or false"},
             Case{R"({"cluster": {"nodes": []}})", "transporter.options.cluster.nodes",
                  "No nodes defined for cluster"},
             Case{R"({"cluster": {}})", "transporter.options.cluster.nodes",
                  "No nodes defined for cluster"},
             Case{R"({"cluster": true})", "transporter.options.cluster", "nodes"},
             Case{R"({"cluster": {"nodes": [{"port": 0}]}})",
                  "transporter.options.cluster.nodes[0].port", "between 1 and 65535"},
             Case{R"({"cluster": {"nodes": [{"port": 1}, true]}})",
                  "transporter.options.cluster.nodes[1]", "host"},
             Case{R"({"cluster": {"nodes": [1], "clusterOptions": {"redisOptions":
                  {"sentinels": []}}}})",
                  "transporter.options.cluster.clusterOptions.redisOptions.sentinels", "Sentinel"},
             Case{R"({"cluster": {"nodes": [1], "clusterOptions": {"redisOptions":
                  {"password": {}}}}})",
                  "transporter.options.cluster.clusterOptions.redisOptions.password",
                  "must be a string"},
             Case{R"(42)", "transporter.options", "must be an object"},
         }) {
      CAPTURE(c.json);
      const auto e = options_error(c.json);
      CHECK(e.key() == c.key);
      CHECK(contains(e.what(), c.reason));
    }
  }
}

TEST_SUITE("redis config: describe") {
  TEST_CASE("names the server, never the password") {
    CHECK(describe_redis(RedisOptions{}) == "redis://localhost:6379");
    CHECK(describe_redis(parse_redis_url("rediss://molnode:Sup3rS3cret@localhost:6380")) ==
          "rediss://localhost:6380 (user molnode, password set)");
    CHECK(describe_redis(parse_redis_url("redis://:Sup3rS3cret@[::1]:6380")) ==
          "redis://[::1]:6380 (password set)");
    const auto cluster = options(R"({"cluster": {"nodes": [{"host": "a", "port": 1},
        {"host": "b", "port": 2}], "clusterOptions": {"redisOptions": {"password": "Sup3rS3cret",
        "tls": {"rejectUnauthorized": false, "servername": "r.example"}}}}})");
    const auto text = describe_redis(cluster);
    CHECK(text ==
          "rediss://a:1,b:2 (password set, failover list, certificate not checked, servername "
          "r.example)");
    for (const auto& o : {cluster, parse_redis_url("redis://u:Sup3rS3cret@h")}) {
      CHECK_FALSE(contains(describe_redis(o), "Sup3rS3cret"));
    }
  }
}
