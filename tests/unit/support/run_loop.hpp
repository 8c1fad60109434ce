#pragma once
// Running an io_context in a test until something has happened.
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <chrono>

namespace steedos::testing {

/// Runs `loop` (restarted if it had stopped) until `pred()` holds or `timeout` passed; returns
/// `pred()`. A work guard keeps it running while the handlers it waits for are elsewhere (another
/// thread posts them later).
template <typename Pred>
bool run_until(asio::io_context& loop, Pred pred,
               std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
  if (loop.stopped()) loop.restart();
  auto guard = asio::make_work_guard(loop);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred() && std::chrono::steady_clock::now() < deadline) {
    loop.run_one_for(std::chrono::milliseconds(5));
  }
  return pred();
}

}  // namespace steedos::testing
