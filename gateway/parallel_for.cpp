#include "gateway/parallel_for.hpp"

#include <pthread.h>

#include <algorithm>

namespace steedos::gateway {

ParallelFor::ParallelFor(size_t threads, const std::string& name) {
  const size_t helpers = threads > 1 ? threads - 1 : 0;
  helpers_.reserve(helpers);
  for (size_t i = 0; i < helpers; ++i) {
    helpers_.emplace_back([this] { helper_main(); });
    const std::string thread_name = (name + "-" + std::to_string(i + 1)).substr(0, 15);
    pthread_setname_np(helpers_.back().native_handle(), thread_name.c_str());
  }
}

ParallelFor::~ParallelFor() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& helper : helpers_) helper.join();
}

void ParallelFor::run(size_t count, const std::function<void(size_t)>& job, size_t chunk) {
  if (helpers_.empty() || count <= chunk) {
    for (size_t i = 0; i < count; ++i) job(i);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &job;
    count_ = count;
    chunk_ = std::max<size_t>(chunk, 1);
    next_.store(0, std::memory_order_relaxed);
    helpers_busy_ = helpers_.size();
    ++round_;
  }
  wake_.notify_all();
  take_items();
  // The mutex orders the helpers' writes (made before they decrement helpers_busy_) before the
  // caller's reads after this wait.
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [this] { return helpers_busy_ == 0; });
  job_ = nullptr;
}

void ParallelFor::take_items() {
  // job_, count_ and chunk_ are stable for the whole round: run() set them before waking anyone
  // and changes them only after every helper reported done.
  const auto& job = *job_;
  for (;;) {
    const size_t first = next_.fetch_add(chunk_, std::memory_order_relaxed);
    if (first >= count_) return;
    const size_t last = std::min(count_, first + chunk_);
    for (size_t i = first; i < last; ++i) job(i);
  }
}

void ParallelFor::helper_main() {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || round_ != seen; });
    if (stopping_) return;
    seen = round_;
    lock.unlock();
    take_items();
    lock.lock();
    if (--helpers_busy_ == 0) done_.notify_one();
  }
}

}  // namespace steedos::gateway
