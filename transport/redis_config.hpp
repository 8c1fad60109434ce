#pragma once
// Moleculer's Redis transporter configuration (spec: redis-transporter.md §2.5) read into
// RedisOptions: the URL form `redis[s]://[[user]:password@]host[:port][/db][?…]` as ioredis 5
// parses it, and the object form `{ host, port, username, password, db, tls, connectTimeout,
// cluster }` given to `new Redis(options)` / `new Redis.Cluster(nodes, clusterOptions)`.
// Pure: no I/O (a TLS file path is kept as a string), no logging.
#include <stdexcept>
#include <string>
#include <string_view>

#include "protocol/json.hpp"
#include "transport/redis_options.hpp"

namespace steedos::transport {

/// A configuration the Redis transporter cannot use. `key` names where it was found
/// ("transporter", "transporter.options.port", "TRANSPORTER", ...); what() is "key: reason".
/// Neither ever contains a password.
class RedisConfigError : public std::invalid_argument {
 public:
  RedisConfigError(const std::string& key, const std::string& reason)
      : std::invalid_argument(key + ": " + reason), key_(key), reason_(reason) {}
  const std::string& key() const noexcept { return key_; }
  const std::string& reason() const noexcept { return reason_; }

 private:
  std::string key_;
  std::string reason_;
};

/// `redis://…` or `rediss://…` (scheme in any case; rediss turns TLS on). User and password are
/// percent-decoded as by decodeURIComponent (`redis://:pw@h`: password only; `redis://u:pw@h`:
/// ACL user). IPv6 hosts in brackets. Port 6379 by default for both schemes. The path is the db.
/// Query items fill what the URL did not set, as ioredis' `defaults(result, query)`: username,
/// password, db and connectTimeout are read, others ignored. A comma-separated list of URLs is
/// refused (ioredis takes one). Surrounding white space is ignored, as url.parse trims it.
/// Throws RedisConfigError naming `key`.
RedisOptions parse_redis_url(std::string_view url, const std::string& key = "transporter");

/// The `options` of `{ "type": "Redis", "options": … }`: an object (keys read under
/// `key_prefix`, e.g. "transporter.options") or a URL string (parse_redis_url with `key_prefix`
/// as its key). A null or absent key keeps the default; unknown keys are ignored (as the NATS
/// options). With `cluster`, the endpoints are `cluster.nodes` (a failover list) and the
/// credentials and TLS come from `cluster.clusterOptions.redisOptions` only, as ioredis' Cluster
/// ignores the top-level ones. Sentinel keys and `path` are refused as not supported.
/// Throws RedisConfigError naming the offending key.
RedisOptions parse_redis_options(const Json& options, const std::string& key_prefix);

/// For a log line, without credentials: `rediss://localhost:6380 (user molnode, password set)`,
/// `redis://a:7000,b:7001 (failover list)`.
std::string describe_redis(const RedisOptions& options);

}  // namespace steedos::transport
