#include "services/auth_coalescer.hpp"

namespace steedos::services {

AuthCoalescer::AuthCoalescer(size_t max_in_flight, StartCall start, Hooks hooks)
    : max_in_flight_(max_in_flight), start_(std::move(start)), hooks_(std::move(hooks)) {}

AuthCoalescer::Admission AuthCoalescer::request(const Key& key, Waiter waiter) {
  if (auto it = joinable_.find(key); it != joinable_.end()) {
    it->second.waiters.push_back(std::move(waiter));
    return Admission::Joined;
  }
  if (in_flight_ >= max_in_flight_) {
    ++refused_;
    ++refused_in_episode_;
    if (!refusing_) {
      refusing_ = true;
      if (hooks_.on_refusing) hooks_.on_refusing(max_in_flight_);
    }
    return Admission::Refused;
  }
  const uint64_t id = next_id_++;
  auto& call = joinable_[key];
  call.id = id;
  call.waiters.push_back(std::move(waiter));
  ++in_flight_;
  // Registered before the call starts, so a call that finishes at once (no auth service known)
  // finds its entry.
  start_(key, [this, key, id](Decision decision) { finish(key, id, std::move(decision)); });
  return Admission::Started;
}

void AuthCoalescer::finish(const Key& key, uint64_t id, Decision decision) {
  std::vector<Waiter> waiters;
  bool stands = false;
  if (auto it = joinable_.find(key); it != joinable_.end() && it->second.id == id) {
    waiters = std::move(it->second.waiters);
    joinable_.erase(it);
    stands = true;
  } else if (abandoned_.erase(id) == 0) {
    return;  // already finished
  }
  --in_flight_;
  if (refusing_ && in_flight_ <= max_in_flight_ / 2) {
    refusing_ = false;
    const uint64_t refused = refused_in_episode_;
    refused_in_episode_ = 0;
    if (hooks_.on_recovered) hooks_.on_recovered(refused);
  }
  if (!stands) return;
  if (hooks_.on_result) hooks_.on_result(key, decision);
  // The entry is gone before the waiters run, so one that connects again starts afresh.
  for (const auto& waiter : waiters) waiter(decision);
}

size_t AuthCoalescer::abandon_token(const std::string& token, const Decision& decision) {
  std::vector<Waiter> waiters;
  size_t abandoned = 0;
  for (auto it = joinable_.begin(); it != joinable_.end();) {
    if (it->first.second != token) {
      ++it;
      continue;
    }
    abandoned_.insert(it->second.id);
    for (auto& waiter : it->second.waiters) waiters.push_back(std::move(waiter));
    it = joinable_.erase(it);
    ++abandoned;
  }
  for (const auto& waiter : waiters) waiter(decision);
  return abandoned;
}

size_t AuthCoalescer::waiting() const {
  size_t count = 0;
  for (const auto& [key, call] : joinable_) count += call.waiters.size();
  return count;
}

}  // namespace steedos::services
