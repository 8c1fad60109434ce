#pragma once
// One connection to a Redis server on the caller's Asio loop (spec: redis-transporter.md §3.3):
// async resolve, TCP connect and optional TLS handshake under one connect timeout, then
// `AUTH [user] password` when configured and a PING, after which it is ready. Commands are
// written through a byte-bounded queue and their replies matched in FIFO order; `message`
// pushes of a subscribed connection go to on_message in arrival order, in slices of about a
// millisecond, while the socket goes on being read (a busy consumer does not stop the reads,
// up to max_inbox_bytes buffered; PING replies are seen at once). A PING every ping_interval_ms
// must be answered within ping_timeout_ms, or the connection counts as dead (half-open detection).
//
// Errors: every failure (resolve, connect, TLS, AUTH, protocol, socket, late PONG) goes through
// one path that closes the socket and calls on_failed once with a readable reason; after that,
// and after close(), no handler runs.
//
// Threading: create, use and close on the loop's thread. Destroying the handle closes the
// connection; its pending operations then end without calling anything.
#include <asio/io_context.hpp>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "transport/redis_options.hpp"
#include "transport/resp.hpp"

namespace steedos::transport {

struct RedisConnectionOptions {
  RedisEndpoint endpoint;
  std::string username;
  std::string password;  // empty: no AUTH
  RedisTls tls;
  int connect_timeout_ms = 10000;  // resolve + connect + TLS + AUTH + first PING
  int ping_interval_ms = 5000;     // 0: no liveness pings
  int ping_timeout_ms = 3000;
  size_t max_reply_bytes = 64 * 1024 * 1024;
  size_t max_write_bytes = 64 * 1024 * 1024;  // bytes queued for the socket
  /// Message pushes read but not yet handed to on_message; above it reading pauses until the
  /// consumer has worked through half of them.
  size_t max_inbox_bytes = 128 * 1024 * 1024;
  std::string role = "connection";  // for log lines: "subscriber", "publisher"
};

/// What a command sent with send() is, so its reply can be told apart.
enum class RedisCommand { publish, subscribe, unsubscribe, other };

class RedisConnection {
 public:
  struct Handlers {
    /// Connected, authenticated, and the first PING answered.
    std::function<void()> on_ready;
    /// The connection failed or was lost; it is closed. Called at most once.
    std::function<void(const std::string& reason)> on_failed;
    /// The reply to a command given to send(), in send order; `tag` and `bytes` as given.
    std::function<void(RedisCommand kind, const std::string& tag, size_t bytes,
                       const RespReply& reply)>
        on_reply;
    /// A `message` push of a subscribed connection (posted: never inside send() or start()).
    std::function<void(const std::string& channel, std::string_view payload)> on_message;
  };

  static std::shared_ptr<RedisConnection> create(asio::io_context& loop,
                                                 RedisConnectionOptions options, Handlers handlers);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  /// Starts resolving and connecting; the outcome comes as on_ready or on_failed.
  void start();
  /// Queues an encoded command (format_command) once ready. false when not ready or when the
  /// write queue would exceed max_write_bytes (nothing is queued then).
  bool send(RedisCommand kind, std::string tag, std::string encoded, size_t bytes = 0);
  bool ready() const;
  /// Commands sent whose reply has not come yet.
  size_t pending_replies() const;
  /// Closes the socket now; no handler runs after it returns.
  void close();
  /// "host:port" (with "TLS " in front when encrypted), for log lines.
  std::string describe() const;

  struct Impl;

 private:
  explicit RedisConnection(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;  // shared with its pending operations
};

}  // namespace steedos::transport
