#pragma once
// In-process bus for unit tests of the broker: several brokers on one io_context exchange
// packets through a shared MemoryBus with NATS subject semantics (`*`, `>`, queue groups).
// Single-threaded: everything runs on the bus's io_context thread. Delivery is always posted,
// never synchronous, so a publisher is not re-entered from its own publish().
#include <asio/io_context.hpp>
#include <memory>
#include <string>
#include <vector>

#include "transport/transporter.hpp"

namespace steedos::transport {

class MemoryBus {
 public:
  explicit MemoryBus(asio::io_context& loop) : loop_(loop) {}
  asio::io_context& loop() { return loop_; }

  struct Subscriber;
  /// Every message published, in order: (subject, bytes). Lets tests assert on the wire.
  std::vector<std::pair<std::string, std::string>> published;

  // Used by MemoryTransporter.
  void add(std::shared_ptr<Subscriber> subscriber);
  void remove(const Subscriber* subscriber);
  void deliver(const std::string& subject, const std::string& data);

 private:
  asio::io_context& loop_;
  std::vector<std::shared_ptr<Subscriber>> subscribers_;
  size_t queue_cursor_ = 0;
};

/// True when NATS subject `subject` matches subscription `pattern` (`*` one token, `>` the rest).
bool nats_subject_matches(const std::string& pattern, const std::string& subject);

class MemoryTransporter final : public Transporter {
 public:
  explicit MemoryTransporter(MemoryBus& bus) : bus_(bus) {}
  ~MemoryTransporter() override;

  void connect(TransporterHandlers handlers) override;
  /// Delivery is in publish order already: `drain_rank` has nothing to reorder.
  void subscribe(const std::string& subject, const std::string& queue = {},
                 int drain_rank = 0) override;
  void unsubscribe(const std::string& subject, const std::string& queue = {}) override;
  bool publish(const std::string& subject, std::string_view data) override;
  void flush(int) override {}
  void close() override;
  bool connected() const override { return connected_; }
  std::string last_error() const override { return {}; }
  std::string name() const override { return "Memory"; }
  bool has_builtin_balancer() const override { return balances_; }
  /// Sent: accepted by publish(); received: handed to on_message; reconnects: simulated ones.
  TransporterStats stats() const override;

  /// Test hooks: simulate a lost and a restored connection; a bus without queue groups (as
  /// Redis), set before the broker is built.
  void simulate_disconnect();
  void simulate_reconnect();
  void set_builtin_balancer(bool balances) { balances_ = balances; }

 private:
  MemoryBus& bus_;
  TransporterHandlers handlers_;
  std::vector<std::shared_ptr<MemoryBus::Subscriber>> subscriptions_;
  bool connected_ = false;
  bool balances_ = true;
  TransporterStats counts_;  // `connected` is read from connected_
  /// Captured by posted handlers; false after close() so queued ones do nothing.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace steedos::transport
