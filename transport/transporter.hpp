#pragma once
// What the broker needs from a message bus: subjects and bytes, nothing of Moleculer semantics
// (spec: moleculer-node.md §1.5). Every callback runs on the owner's executor (the Asio loop),
// never on a library thread.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace steedos::transport {

/// What went over the bus since the transporter was created (counters never go back, not even
/// across reconnections): the figures behind the steedos_socket_transporter_* metrics.
/// Messages are bus messages (one per publish() or per message handed to on_message); bytes are
/// their payloads only, without subjects or protocol framing.
struct TransporterStats {
  bool connected = false;
  uint64_t reconnects = 0, messages_received = 0, messages_sent = 0, bytes_received = 0,
           bytes_sent = 0;
};

struct TransporterHandlers {
  /// One message received on a subscribed subject.
  std::function<void(const std::string& subject, std::string_view data)> on_message;
  /// The connection was lost; the library is trying to reconnect.
  std::function<void()> on_disconnected;
  /// The connection is back and subscriptions are active again.
  std::function<void()> on_reconnected;
  /// The connection is closed for good (reconnect attempts exhausted or close()).
  std::function<void()> on_closed;
};

class Transporter {
 public:
  virtual ~Transporter() = default;

  /// Connects; throws std::runtime_error with a readable reason on failure.
  virtual void connect(TransporterHandlers handlers) = 0;
  /// Subscribes `subject`; with a non-empty `queue` as a member of that NATS queue group.
  /// Subscribing the same (subject, queue) twice is a no-op. `drain_rank`: when messages of
  /// several subscriptions arrive together, lower ranks are handed over first (equal ranks in
  /// subscription order); each subscription's own messages always stay in order.
  virtual void subscribe(const std::string& subject, const std::string& queue = {},
                         int drain_rank = 0) = 0;
  virtual void unsubscribe(const std::string& subject, const std::string& queue = {}) = 0;
  /// Publishes bytes; returns false (and the reason in last_error()) when the bus refused them,
  /// e.g. above the server's max_payload or while disconnected with a full reconnect buffer.
  virtual bool publish(const std::string& subject, std::string_view data) = 0;
  /// Waits until everything published so far reached the server (bounded by timeout_ms).
  virtual void flush(int timeout_ms) = 0;
  /// Closes the connection; no callback runs after close() returns.
  virtual void close() = 0;
  virtual bool connected() const = 0;
  virtual std::string last_error() const = 0;
  /// The transporter's name for logs and `$node.options`: "NATS", "Redis".
  virtual std::string name() const = 0;
  /// The counters so far; call it on the loop's thread, like the other members.
  virtual TransporterStats stats() const = 0;
  /// true when the bus itself balances REQB/EVENTB among a queue group (NATS). Without it
  /// (Redis) the broker keeps its own balancer even when `disableBalancer` is set, as JS does.
  virtual bool has_builtin_balancer() const { return true; }
};

}  // namespace steedos::transport
