#pragma once
// A fixed set of helper threads that run one index range together with the calling thread
// (fork-join). The gateway uses it to hand the sends of one loop turn to every core: almost all
// of a broadcast's time is the kernel's send path (bench/results/compare-notes-2026-12-05.md),
// and those calls on distinct sockets run in parallel in the kernel. Everything else (sessions,
// rooms, the service) stays on the loop thread, which waits in run() until the range is done, so
// no object is ever touched by two threads at once and no lock is taken per item.
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace steedos::gateway {

class ParallelFor {
 public:
  /// `threads` counts the caller: 1 starts no helper and run() is a plain loop. The helpers are
  /// named `<name>-1`, `<name>-2`, ... (what `top -H` and /proc/<pid>/task/*/comm show; the
  /// kernel keeps 15 bytes).
  explicit ParallelFor(size_t threads, const std::string& name = "parallel");
  ~ParallelFor();
  ParallelFor(const ParallelFor&) = delete;
  ParallelFor& operator=(const ParallelFor&) = delete;

  size_t threads() const { return helpers_.size() + 1; }

  /// Calls job(i) once for every i in [0, count), on the caller and the helpers, items taken in
  /// chunks of `chunk` so a slow item does not hold up a whole share. Returns when every call
  /// has returned; what the jobs wrote is then visible to the caller. Not reentrant: one run()
  /// at a time, from one thread. `job` must not throw.
  void run(size_t count, const std::function<void(size_t)>& job, size_t chunk = 16);

 private:
  void helper_main();
  void take_items();

  std::vector<std::thread> helpers_;
  std::mutex mutex_;
  std::condition_variable wake_;  // helpers: a new round (or the end)
  std::condition_variable done_;  // the caller: every helper left the round
  // The round: written by run() under the mutex before the helpers are woken.
  const std::function<void(size_t)>* job_ = nullptr;
  size_t count_ = 0;
  size_t chunk_ = 1;
  uint64_t round_ = 0;
  size_t helpers_busy_ = 0;
  bool stopping_ = false;
  std::atomic<size_t> next_{0};  // the first item nobody took yet
};

}  // namespace steedos::gateway
