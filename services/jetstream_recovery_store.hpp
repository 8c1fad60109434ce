#pragma once
// The `jetstream` recovery store (issue 13): connection state recovery across a cluster, over
// the NATS the Moleculer cluster already runs. gateway::RecoveryStore on two shared parts:
//
//   ClusterHistory   every event sent to clients, once, in a JetStream stream. Each node
//                    delivers what its ordered consumer of the stream hands it, with the stream
//                    sequence as the Socket.IO offset: every node sends one event under one
//                    offset, so a client can present its offset to any node.
//   ClusterSessions  one record per socket in a key-value bucket, written at connect and at
//                    each room change (a node killed with SIGKILL loses nothing), marked kept at
//                    a recoverable disconnect, taken (read and deleted, one winner) by the node
//                    the client comes back to.
//
// A restore on this node: take the record (kept anywhere, or still "connected" on a node that
// died or has not noticed the drop yet: the client presenting the private id is the proof that
// connection is gone), wait until this node's consumer has reached the client's offset (another
// node may be ahead), gather the events in (offset, last delivered here] and keep those the
// socket's id and rooms would have received. The node keeps the packets it sent from the
// history recently (bounded like the memory store: maxPackets, twice maxDisconnectionDuration, the
// same packets its sockets were sent, shared): a range they cover is gathered from them at once;
// older events (the node started after them) are read from the stream first. Reading again while
// the consumer moved on meanwhile leaves no gap: the restore completes in the loop turn that saw
// the last read, before the consumer delivers anything newer, which then reaches the restored
// socket live.
//
// Offsets are the decimal stream sequence. Packets that are not in the history (emits to one
// socket: connection-init, pong) carry the last sequence this node has delivered: the socket
// has had every event of the history up to there, so a client that saw only such packets still
// presents an offset (socket.io-client claims a session only with one). They are not replayed.
//
// Threading: the loop thread (the gateway's io_context), as every RecoveryStore.
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "gateway/recovery.hpp"
#include "services/cluster_history.hpp"
#include "services/cluster_sessions.hpp"

namespace steedos::services {

struct JetStreamRecoveryOptions {
  std::chrono::milliseconds max_disconnection_duration{120000};
  /// Missed events one restore may replay; past it the client connects anew.
  size_t max_replay = 100000;
  /// Sent history packets kept for restores (the oldest go first; also older than
  /// max_disconnection_duration).
  size_t max_recent = 100000;
  /// How long a restore waits for this node's consumer to reach the client's offset.
  std::chrono::milliseconds catch_up_wait{3000};
  /// Held records rewritten per sweep (ClusterSessions::refresh).
  size_t refresh_per_sweep = 1000;
};

/// The offset of a history sequence, and back: nullopt for anything but 1-20 decimal digits.
std::string offset_of_sequence(uint64_t sequence);
std::optional<uint64_t> sequence_of_offset(std::string_view offset);

class JetStreamRecoveryStore final : public gateway::RecoveryStore {
 public:
  /// Encodes one history event as the packet a socket of its namespace receives.
  using Encode = std::function<gateway::OutgoingPacketPtr(const HistoryEvent&, std::string offset)>;
  /// The node ids in the cluster now (ours included): records "connected" on other nodes
  /// expire once their node has been gone for max_disconnection_duration.
  using AliveNodes = std::function<std::unordered_set<std::string>()>;

  /// `history` and `sessions` are started / opened, and outlive this store.
  JetStreamRecoveryStore(asio::io_context& loop, ClusterHistory& history, ClusterSessions& sessions,
                         JetStreamRecoveryOptions options, Encode encode, AliveNodes alive_nodes);
  ~JetStreamRecoveryStore() override;

  std::string next_offset() override { return offset_of_sequence(history_.last_delivered()); }
  /// Keeps a packet of the history (its offset a sequence above the last kept) for restores;
  /// a packet sent to one socket outside the history (its offset is not a new sequence) is not.
  void record(const std::string& offset, gateway::PacketTarget target,
              gateway::OutgoingPacketPtr packet) override;
  void keep(gateway::KeptSession session) override;
  /// Writes the record back as kept (since when it was kept first).
  void give_back(gateway::KeptSession session) override;
  void take(const std::string& pid, const std::string& offset,
            std::function<void(std::optional<gateway::RestoredSession>)> done) override;
  /// Scans the bucket (one node does it for the cluster); `done` once the scan ended.
  void drop_if(std::function<bool(const gateway::KeptSession&)> match,
               std::function<void(size_t)> done) override;
  void sweep(std::chrono::steady_clock::time_point now,
             const std::function<void(const gateway::KeptSession&)>& expired) override;

  bool tracks_connected() const override { return true; }
  void connected(const gateway::KeptSession& session) override;
  void rooms_changed(const std::string& pid, const std::vector<std::string>& rooms) override;
  void forgotten(const std::string& pid) override;
  bool sweeps_always() const override { return true; }
  void flush(std::function<void()> done) override;

  size_t session_count() const override { return sessions_.held(); }
  size_t packet_count() const override { return recent_.size(); }
  gateway::RecoveryCounts counts() const override;

 private:
  struct Restore;
  using Done = std::function<void(std::optional<gateway::RestoredSession>)>;
  void after_take(std::shared_ptr<Restore> restore, std::optional<ClusterSessionRecord> record);
  void wait_for_offset(std::shared_ptr<Restore> restore);
  void read_missed(std::shared_ptr<Restore> restore);
  /// Adds the kept packets in (read_to, until] the restore's socket would have received.
  void gather_recent(Restore& restore, uint64_t until);
  void forget_recent_before(std::chrono::steady_clock::time_point cutoff);
  void finish(std::shared_ptr<Restore> restore);
  /// The restore failed after its record was taken: that session can never come back, so it is
  /// reported as expired at the next sweep (services then fall back, as for an expiry).
  void give_up(std::shared_ptr<Restore> restore, const char* why);

  asio::io_context& loop_;
  ClusterHistory& history_;
  ClusterSessions& sessions_;
  JetStreamRecoveryOptions options_;
  Encode encode_;
  AliveNodes alive_nodes_;
  std::vector<gateway::KeptSession> given_up_;  // reported as expired at the next sweep
  struct Recent {
    uint64_t sequence;
    std::chrono::steady_clock::time_point sent_at;
    gateway::PacketTarget target;
    gateway::OutgoingPacketPtr packet;
  };
  std::deque<Recent> recent_;  // in sequence order
  /// Every history event from this sequence on that this node sent is in recent_.
  uint64_t recent_from_ = 0;
  gateway::RecoveryCounts counts_;
  uint64_t expired_by_sweeps_ = 0;
  uint64_t dropped_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace steedos::services
