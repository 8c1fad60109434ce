#include "gateway/memory_recovery_store.hpp"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "common/random_id.hpp"

namespace steedos::gateway {

namespace {

/// 4 random bytes, 6 characters: with at most 9 hex digits of sequence the offset stays within
/// the 15 characters std::string holds inline.
constexpr size_t kPrefixBytes = 4;
constexpr size_t kMaxSequenceDigits = 16;

bool has_room(const std::vector<std::string>& rooms, const std::string& room) {
  return std::find(rooms.begin(), rooms.end(), room) != rooms.end();
}

}  // namespace

bool target_includes(const PacketTarget& target, const std::string& sid,
                     const std::vector<std::string>& rooms) {
  auto member_of = [&](const std::string& room) { return room == sid || has_room(rooms, room); };
  if (!target.all && std::none_of(target.rooms.begin(), target.rooms.end(), member_of)) {
    return false;
  }
  if (!target.except_id.empty() && target.except_id == sid) return false;
  return std::none_of(target.except_rooms.begin(), target.except_rooms.end(), member_of);
}

MemoryRecoveryStore::MemoryRecoveryStore(RecoveryOptions options,
                                         std::function<Clock::time_point()> now)
    : options_(options), now_(std::move(now)), prefix_(random_base64url_id(kPrefixBytes)) {}

std::string MemoryRecoveryStore::next_offset() {
  char digits[kMaxSequenceDigits + 1];
  std::snprintf(digits, sizeof(digits), "%llx", static_cast<unsigned long long>(next_sequence_++));
  return prefix_ + digits;
}

std::optional<uint64_t> MemoryRecoveryStore::sequence_of(std::string_view offset) const {
  if (offset.size() <= prefix_.size() || offset.substr(0, prefix_.size()) != prefix_) {
    return std::nullopt;
  }
  const std::string_view digits = offset.substr(prefix_.size());
  if (digits.size() > kMaxSequenceDigits) return std::nullopt;
  uint64_t value = 0;
  for (char c : digits) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return std::nullopt;
    }
    value = value * 16 + static_cast<uint64_t>(digit);
  }
  return value;
}

std::optional<size_t> MemoryRecoveryStore::find_packet(uint64_t sequence) const {
  if (packets_.empty()) return std::nullopt;
  if (packets_.back().sequence == sequence) return packets_.size() - 1;  // the usual resend
  if (out_of_order_held_ == 0) {
    auto it = std::lower_bound(
        packets_.begin(), packets_.end(), sequence,
        [](const Recorded& entry, uint64_t wanted) { return entry.sequence < wanted; });
    if (it == packets_.end() || it->sequence != sequence) return std::nullopt;
    return static_cast<size_t>(it - packets_.begin());
  }
  for (size_t i = 0; i < packets_.size(); ++i) {
    if (packets_[i].sequence == sequence) return i;
  }
  return std::nullopt;
}

void MemoryRecoveryStore::record(const std::string& offset, PacketTarget target,
                                 OutgoingPacketPtr packet) {
  const auto sequence = sequence_of(offset);
  if (!sequence || options_.max_packets == 0) return;
  // The same packet sent again (to other rooms): one entry, the union of its targets, so it is
  // replayed at most once and in the place of its first send. A sequence above every one
  // recorded is new: the usual case costs no lookup.
  const bool maybe_recorded = *sequence <= max_recorded_sequence_;
  if (auto index = maybe_recorded ? find_packet(*sequence) : std::nullopt) {
    auto& more = packets_[*index].more_targets;
    if (more.size() + 1 >= kMaxTargetsPerPacket) {
      ++counts_.untracked_targets;
      return;
    }
    more.push_back(std::move(target));
    return;
  }
  if (packets_.size() >= options_.max_packets) {
    pop_oldest_packet();
    ++counts_.evicted_packets;
  }
  Recorded entry;
  entry.sequence = *sequence;
  entry.recorded_at = now_();
  entry.target = std::move(target);
  entry.packet = std::move(packet);
  entry.out_of_order = !packets_.empty() && packets_.back().sequence > *sequence;
  if (entry.out_of_order) ++out_of_order_held_;
  max_recorded_sequence_ = std::max(max_recorded_sequence_, *sequence);
  packets_.push_back(std::move(entry));
}

void MemoryRecoveryStore::pop_oldest_packet() {
  if (packets_.front().out_of_order) --out_of_order_held_;
  packets_.pop_front();
}

void MemoryRecoveryStore::keep(KeptSession session) {
  if (options_.max_sessions == 0) return;
  // A socket restored once and dropped again comes back under the same pid: the newer wins.
  if (auto it = by_pid_.find(session.pid); it != by_pid_.end()) erase_session(it->second);
  if (sessions_.size() >= options_.max_sessions) {
    by_pid_.erase(sessions_.front().pid);
    if (evicted_.size() < options_.max_sessions) evicted_.push_back(std::move(sessions_.front()));
    sessions_.pop_front();
    ++counts_.evicted_sessions;
  }
  sessions_.push_back(std::move(session));
  by_pid_.emplace(sessions_.back().pid, std::prev(sessions_.end()));
  ++counts_.kept;
}

void MemoryRecoveryStore::erase_session(SessionList::iterator it) {
  by_pid_.erase(it->pid);
  sessions_.erase(it);
}

bool MemoryRecoveryStore::expired(const KeptSession& session, Clock::time_point now) const {
  return session.disconnected_at +
             std::chrono::milliseconds(options_.max_disconnection_duration_ms) <
         now;
}

void MemoryRecoveryStore::take(const std::string& pid, const std::string& offset,
                               std::function<void(std::optional<RestoredSession>)> done) {
  auto found = by_pid_.find(pid);
  if (found == by_pid_.end() || expired(*found->second, now_())) {
    // An expired session stays for the sweep, which reports it (RecoveryHooks::expired).
    ++counts_.unknown;
    done(std::nullopt);
    return;
  }
  RestoredSession restored;
  const SessionList::iterator kept = found->second;
  by_pid_.erase(found);  // before the move below empties the pid it is keyed by
  restored.session = std::move(*kept);
  sessions_.erase(kept);
  const auto sequence = sequence_of(offset);
  const auto index = sequence ? find_packet(*sequence) : std::nullopt;
  if (!index) {
    // Its client missed events this store no longer holds: it reconnects anew, and the next
    // sweep reports the session as expired, so the application can tell it (a reload).
    ++counts_.unknown;
    if (evicted_.size() < options_.max_sessions) evicted_.push_back(std::move(restored.session));
    done(std::nullopt);
    return;
  }
  const KeptSession& session = restored.session;
  auto included = [&](const PacketTarget& target) {
    return target_includes(target, session.sid, session.rooms);
  };
  for (size_t i = *index + 1; i < packets_.size(); ++i) {
    const Recorded& entry = packets_[i];
    if (included(entry.target) ||
        std::any_of(entry.more_targets.begin(), entry.more_targets.end(), included)) {
      restored.missed.push_back(entry.packet);
    }
  }
  done(std::move(restored));
}

void MemoryRecoveryStore::drop_if(std::function<bool(const KeptSession&)> match,
                                  std::function<void(size_t)> done) {
  size_t dropped = 0;
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    auto next = std::next(it);
    if (match(*it)) {
      erase_session(it);
      ++dropped;
    }
    it = next;
  }
  counts_.dropped += dropped;
  if (done) done(dropped);
}

void MemoryRecoveryStore::sweep(Clock::time_point now,
                                const std::function<void(const KeptSession&)>& expired_fn) {
  const auto lifetime = std::chrono::milliseconds(options_.max_disconnection_duration_ms);
  while (!packets_.empty() && packets_.front().recorded_at + lifetime < now) pop_oldest_packet();
  // keep() appends with the time of the disconnect, so the list is in expiry order.
  std::vector<KeptSession> gone = std::move(evicted_);
  evicted_.clear();
  while (!sessions_.empty() && expired(sessions_.front(), now)) {
    by_pid_.erase(sessions_.front().pid);
    gone.push_back(std::move(sessions_.front()));
    sessions_.pop_front();
    ++counts_.expired;
  }
  if (expired_fn) {
    for (const auto& session : gone) expired_fn(session);
  }
}

}  // namespace steedos::gateway
