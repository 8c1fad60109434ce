#pragma once
// The single-node RecoveryStore (gateway/recovery.hpp): kept sessions and sent packets in this
// process's memory, bounded by RecoveryOptions (max_sessions, max_packets, and
// max_disconnection_duration_ms through sweep()); past a bound the oldest go first, counted.
//
// Offsets are `<prefix><sequence in hex>`: the prefix is random per store (so per process), so an
// offset a client kept from another process or from before a restart is never found here; the
// whole string stays within std::string's inline capacity (no heap block per packet).
//
// Threading: one thread (the server's io_context), as the rest of the gateway.
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gateway/recovery.hpp"

namespace steedos::gateway {

class MemoryRecoveryStore : public RecoveryStore {
 public:
  using Clock = std::chrono::steady_clock;
  /// Targets one recorded packet may collect (the same packet sent again and again to other
  /// rooms or sockets); further sends are not recorded, counted in untracked_targets. Never
  /// widened to a broader target: a restore must not replay a packet to a socket that would not
  /// have received it.
  static constexpr size_t kMaxTargetsPerPacket = 256;

  /// `now` is the clock take() checks expiry against (tests pass a fake one).
  explicit MemoryRecoveryStore(RecoveryOptions options,
                               std::function<Clock::time_point()> now = &Clock::now);

  std::string next_offset() override;
  void record(const std::string& offset, PacketTarget target, OutgoingPacketPtr packet) override;
  void keep(KeptSession session) override;
  void take(const std::string& pid, const std::string& offset,
            std::function<void(std::optional<RestoredSession>)> done) override;
  void drop_if(std::function<bool(const KeptSession&)> match,
               std::function<void(size_t)> done) override;
  void sweep(Clock::time_point now,
             const std::function<void(const KeptSession&)>& expired) override;
  size_t session_count() const override { return sessions_.size(); }
  size_t packet_count() const override { return packets_.size(); }
  RecoveryCounts counts() const override { return counts_; }

  /// The per-process part of every offset (for tests and logs).
  const std::string& offset_prefix() const { return prefix_; }

 private:
  struct Recorded {
    uint64_t sequence = 0;
    Clock::time_point recorded_at;
    PacketTarget target;
    /// Further targets when the same packet was sent more than once (rare: usually empty).
    std::vector<PacketTarget> more_targets;
    OutgoingPacketPtr packet;
    /// Recorded after a packet of a higher sequence (encoded earlier, sent later): while such an
    /// entry is held the deque is not sorted by sequence and lookups scan it.
    bool out_of_order = false;
  };
  using SessionList = std::list<KeptSession>;

  /// The sequence an offset of this store carries; nullopt for anything else.
  std::optional<uint64_t> sequence_of(std::string_view offset) const;
  /// Index in packets_ of the entry recorded under `sequence`, or nullopt.
  std::optional<size_t> find_packet(uint64_t sequence) const;
  void pop_oldest_packet();
  void erase_session(SessionList::iterator it);
  bool expired(const KeptSession& session, Clock::time_point now) const;

  RecoveryOptions options_;
  std::function<Clock::time_point()> now_;
  std::string prefix_;
  uint64_t next_sequence_ = 1;
  std::deque<Recorded> packets_;
  size_t out_of_order_held_ = 0;
  uint64_t max_recorded_sequence_ = 0;
  /// Kept sessions, oldest first (keep() appends), and the index by pid.
  SessionList sessions_;
  /// Keys view the pid inside the list node (list nodes do not move): no second copy of it.
  std::unordered_map<std::string_view, SessionList::iterator> by_pid_;
  /// Sessions evicted for max_sessions, or claimed with an offset no longer held, reported as
  /// expired at the next sweep (bounded too).
  std::vector<KeptSession> evicted_;
  RecoveryCounts counts_;
};

/// True when a session with `sid` and named `rooms` would have received a packet sent to
/// `target` (socket.io's shouldIncludePacket, the own-id room included).
bool target_includes(const PacketTarget& target, const std::string& sid,
                     const std::vector<std::string>& rooms);

}  // namespace steedos::gateway
