#pragma once
// Moleculer's Redis transporter (spec: redis-transporter.md): two RedisConnections on the given
// loop, a subscriber (plain SUBSCRIBE per subject) and a publisher (PUBLISH subject payload).
// No library thread at all (only Asio's own resolver thread runs getaddrinfo for a host name;
// an address skips it): every callback runs on the loop thread. Messages reach on_message
// in arrival order (one publisher's packets in publish order), from a posted handler, while
// the subscriber keeps reading (up to max_inbox_bytes waiting), so a busy handler does not
// make Redis drop the subscriber for its output-buffer limit.
//
// Start-up (the choice of spec §3.3): connect() blocks, like NatsTransporter::connect. It first
// opens a probe connection on a private io_context (resolve, TCP, TLS, AUTH, PING, bounded by
// connect_timeout_ms per endpoint, endpoints tried in order) and throws std::runtime_error with
// the reason when no endpoint works: unreachable, TLS verification, WRONGPASS, NOAUTH. It then
// closes the probe and starts both real connections asynchronously on the loop, on the
// endpoint that answered. Until they are ready and the subscriptions are confirmed, published
// packets wait in the publisher queue (bounded by max_outgoing_bytes); connected() turns true
// then. Should that first asynchronous connect fail after all, it is handled as a lost
// connection (on_disconnected, then on_reconnected).
//
// Subscription barrier: a publish issued after a subscribe() waits in the publisher queue until
// that SUBSCRIBE is confirmed (or refused), so a packet published right after subscribing to
// its answer cannot overtake the subscription (the broker's subscribe-all, PING probe,
// DISCOVER start sequence relies on it).
//
// While down (after on_disconnected until on_reconnected), publish() returns false at once; at
// most max_outgoing_bytes of unanswered PUBLISH bytes are ever held. On a lost connection both
// connections are closed and re-opened (never more than two sockets) with a backoff from
// reconnect_min_ms doubling to reconnect_max_ms, with jitter, forever; endpoints are tried in
// turn, moving on after a failed attempt. on_reconnected fires when both are back,
// authenticated and every subscription is confirmed (or refused) again. A refused SUBSCRIBE
// (NOPERM) is logged once with the ACL hint and retried with backoff; a refused PUBLISH is
// logged once per channel. on_closed is never called: the transporter retries forever.
//
// Threading: call the member functions on the loop's thread (tests may call them before the
// loop runs). flush() runs the loop itself (run_one_for) until the PUBLISH replies are in or the
// time is up, so other handlers of the loop may run inside it. The io_context must outlive the
// transporter. No callback runs after close() returns.
#include <asio/io_context.hpp>
#include <memory>
#include <string>

#include "transport/redis_options.hpp"
#include "transport/transporter.hpp"

namespace steedos::transport {

class RedisTransporter final : public Transporter {
 public:
  RedisTransporter(asio::io_context& loop, RedisOptions options);
  ~RedisTransporter() override;

  void connect(TransporterHandlers handlers) override;
  /// `queue` must be empty: Redis has no queue groups (throws std::invalid_argument).
  /// `drain_rank` is ignored: Redis delivers in publish order already.
  void subscribe(const std::string& subject, const std::string& queue = {},
                 int drain_rank = 0) override;
  void unsubscribe(const std::string& subject, const std::string& queue = {}) override;
  bool publish(const std::string& subject, std::string_view data) override;
  /// Waits (running the loop) until no PUBLISH reply is pending, at most timeout_ms.
  void flush(int timeout_ms) override;
  void close() override;
  bool connected() const override;
  std::string last_error() const override;
  std::string name() const override { return "Redis"; }
  bool has_builtin_balancer() const override { return false; }
  /// Sent: PUBLISH commands handed to the publisher connection (not those refused by publish()
  /// or dropped with a lost connection while waiting); received: messages read by the
  /// subscriber; bytes: their payloads; reconnects: returns to "connected" after an outage.
  TransporterStats stats() const override;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace steedos::transport
