#pragma once
// Brokers on the in-memory bus for unit tests (tests/unit/moleculer, tests/unit/services): fast
// heartbeats, and a loop driven until a condition holds or a deadline passes.
#include <asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "moleculer/broker.hpp"
#include "transport/memory_transporter.hpp"

namespace steedos::testing {

/// Settings of a test node: heartbeats every 0.2 s, expiry after 0.7 s.
inline moleculer::BrokerSettings node_settings(const std::string& id) {
  moleculer::BrokerSettings s;
  s.node_id = id;
  s.heartbeat_interval_s = 0.2;
  s.heartbeat_timeout_s = 0.7;
  return s;
}

/// Runs `loop` until `done()` holds (true) or `max_ms` passed (false).
template <typename Predicate>
bool run_until(asio::io_context& loop, Predicate done, int max_ms = 3000) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(max_ms);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    loop.restart();
    loop.run_for(std::chrono::milliseconds(5));
  }
  return true;
}

/// Runs `loop` for `ms` milliseconds.
inline void run_for(asio::io_context& loop, int ms) {
  loop.restart();
  loop.run_for(std::chrono::milliseconds(ms));
}

/// A broker on `bus` with node_settings(id).
inline std::unique_ptr<moleculer::Broker> make_broker(transport::MemoryBus& bus,
                                                      const std::string& id) {
  return std::make_unique<moleculer::Broker>(bus.loop(), node_settings(id),
                                             std::make_unique<transport::MemoryTransporter>(bus));
}

/// Starts `broker` and runs `loop` until it runs; false when it did not start in time or
/// refused to start.
inline bool start_broker(asio::io_context& loop, moleculer::Broker& broker) {
  std::optional<bool> ok;
  broker.start([&](std::optional<std::string> error) { ok = !error.has_value(); });
  return run_until(loop, [&] { return ok.has_value(); }) && *ok;
}

}  // namespace steedos::testing
