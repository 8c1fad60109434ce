#pragma once
// The last N request ids this node took in, to run each request once when the bus hands it
// over twice: Redis fans a packet out to every subscription of a channel, and a JS node whose
// connect() was retried can hold two subscriber connections (moleculerjs issue 1363). Retries
// are not duplicates: moleculer's retry middleware copies the context, which takes a new id.
#include <cstddef>
#include <deque>
#include <string>
#include <unordered_set>

namespace steedos::moleculer {

class RecentIds {
 public:
  explicit RecentIds(size_t capacity) : capacity_(capacity) {}

  /// Records `id`; false when it is already among the last `capacity` ids recorded.
  bool insert(const std::string& id) {
    if (capacity_ == 0) return true;
    if (!ids_.insert(id).second) return false;
    order_.push_back(id);
    if (order_.size() > capacity_) {
      ids_.erase(order_.front());
      order_.pop_front();
    }
    return true;
  }

  /// Whether `id` is among the last `capacity` ids recorded.
  bool contains(const std::string& id) const { return ids_.count(id) > 0; }

  size_t size() const { return order_.size(); }

 private:
  size_t capacity_;
  std::deque<std::string> order_;  // oldest first
  std::unordered_set<std::string> ids_;
};

}  // namespace steedos::moleculer
