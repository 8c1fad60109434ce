#pragma once
// What the Redis transporter needs to reach a Redis server, as Moleculer's Redis transporter
// (ioredis) is configured: `redis[s]://[[user]:password@]host[:port][/db]` or
// `{ "type": "Redis", "options": { host, port, username, password, db, tls, connectTimeout,
// cluster } }` (spec: redis-transporter.md §2.5). Parsed by transport/redis_config; used by
// transport/redis_transporter. Plain data.
#include <cstddef>
#include <string>
#include <vector>

namespace steedos::transport {

struct RedisEndpoint {
  std::string host = "localhost";  // a name, an IPv4 address or an IPv6 address (no brackets)
  int port = 6379;
};

struct RedisTls {
  bool enabled = false;  // rediss:// or options.tls
  /// Each one PEM text or the path of a PEM file (Node takes PEM texts; a file is handier
  /// in a JSON file). Empty ca = the system's CA store.
  std::string ca;
  std::string cert;
  std::string key;
  std::string servername;  // SNI and the name checked; empty = the endpoint's host
  bool reject_unauthorized = true;
};

struct RedisOptions {
  /// One endpoint, or `cluster.nodes` taken as a failover list (one member at a time).
  std::vector<RedisEndpoint> endpoints{RedisEndpoint{}};
  std::string username;  // empty: `AUTH password` (the default user)
  std::string password;  // empty: no AUTH
  int db = 0;            // accepted and ignored: pub/sub ignores the database
  RedisTls tls;
  int connect_timeout_ms = 10000;  // ioredis' connectTimeout; 0 = none (as in ioredis)

  // Our own tuning, not read from Moleculer's options.
  int reconnect_min_ms = 100;  // backoff from this, doubling, with jitter
  int reconnect_max_ms = 2000;
  int ping_interval_ms = 5000;  // both connections; a reply later than ping_timeout_ms
  int ping_timeout_ms = 3000;   // closes the connection and reconnects
  /// Bytes published but not yet answered by Redis; above it publish() fails.
  size_t max_outgoing_bytes = 32 * 1024 * 1024;
  /// Largest reply (message) accepted from Redis; a larger one closes the connection.
  size_t max_reply_bytes = 64 * 1024 * 1024;
  /// Messages read from the subscriber but not yet handled; above it the subscriber stops
  /// reading until the handler catches up (Redis then buffers, up to its pubsub output limit).
  size_t max_inbox_bytes = 128 * 1024 * 1024;
};

}  // namespace steedos::transport
