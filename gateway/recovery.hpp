#pragma once
// Socket.IO connection state recovery (socket.io 4.6+, issue 13): a client whose connection
// dropped reconnects with the private id and the last offset it saw, and gets back its socket id,
// its rooms and every packet it missed, in order.
//
// The protocol (as socket.io 4.8 does it): with recovery enabled, the CONNECT reply carries a
// private id, `40{"sid":"…","pid":"…"}`; every EVENT sent to a socket (to a room, to all, or to
// the socket alone; not one that asks for an ack) carries an offset as the last element of its
// data array. socket.io-client remembers the last offset it received and presents
// `40{"pid":"…","offset":"…",…auth}` when it reconnects. After a recoverable disconnect
// (transport error or close, ping timeout, forced close, server shutting down; never the client's
// own disconnect or a server disconnect) the socket is kept, for maxDisconnectionDuration. A
// CONNECT that presents a kept pid and an offset still held restores it: the same sid and pid in
// the reply, the rooms joined again, the missed packets sent after the reply; socket.io-client
// then reports `socket.recovered`. Anything else connects anew.
//
// The split: the Socket.IO server (gateway/socketio_server.hpp) stamps offsets, records what it
// sends, keeps sessions and restores them through a RecoveryStore; the application decides what
// of a socket to keep and whether a restore is allowed (Namespace::set_recovery_hooks): the
// connect hook runs on every CONNECT, a restore included, so credentials are always checked.
//
// Threading: the server's io_context thread only, as the rest of the gateway.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gateway/outgoing.hpp"
#include "protocol/json.hpp"

namespace steedos::gateway {

class Socket;

struct RecoveryOptions {
  bool enabled = false;
  /// How long a socket is kept after a recoverable disconnect, and how long sent packets are.
  int max_disconnection_duration_ms = 120000;
  /// Bounds of the memory store: kept sessions and recorded packets per server. Past them the
  /// oldest go first (counted in RecoveryCounts).
  size_t max_sessions = 100000;
  size_t max_packets = 100000;
};

/// Who a recorded packet was sent to: every socket of the namespace (`all`), or the members of
/// `rooms` (a socket's id is its own room); minus the socket `except_id` and the members of
/// `except_rooms`.
struct PacketTarget {
  bool all = false;
  std::vector<std::string> rooms;
  std::string except_id;
  std::vector<std::string> except_rooms;
};

/// A socket kept after a recoverable disconnect.
struct KeptSession {
  std::string nsp;                 // the namespace's name ("/")
  std::string sid;                 // the Socket.IO id it had, and gets back
  std::string pid;                 // the private id its client presents
  std::vector<std::string> rooms;  // named rooms, without the own-id room
  Json app_data;                   // what RecoveryHooks::save returned
  std::chrono::steady_clock::time_point disconnected_at;
};

/// A kept session being restored and the packets its socket missed, oldest first.
struct RestoredSession {
  KeptSession session;
  std::vector<OutgoingPacketPtr> missed;
};

/// Since the server started.
struct RecoveryCounts {
  uint64_t kept = 0;              // sockets kept at a recoverable disconnect
  uint64_t recovered = 0;         // restored
  uint64_t refused = 0;           // kept sessions the application did not allow
  uint64_t unknown = 0;           // a CONNECT with a pid/offset no longer held (connected anew)
  uint64_t expired = 0;           // kept sessions that expired unrecovered
  uint64_t dropped = 0;           // kept sessions the application dropped (drop_kept_sessions)
  uint64_t evicted_sessions = 0;  // kept sessions dropped for max_sessions
  uint64_t evicted_packets = 0;   // packets dropped for max_packets before they expired
  uint64_t replayed = 0;          // missed packets sent on restores
  /// Sends of an already recorded packet past the per-packet bound of targets, not recorded
  /// (their recipients do not get that packet on a restore; see MemoryRecoveryStore).
  uint64_t untracked_targets = 0;
};

/// Where kept sessions and sent packets live: MemoryRecoveryStore (this server) first; a
/// cluster-wide store implements the same interface.
class RecoveryStore {
 public:
  virtual ~RecoveryStore() = default;

  /// The offset of the next packet to record: unique and increasing in this store, never reused
  /// by another process (a restarted node does not mistake an old offset for one of its own).
  virtual std::string next_offset() = 0;
  /// Records a packet sent under `offset` (from next_offset) to `target`.
  virtual void record(const std::string& offset, PacketTarget target, OutgoingPacketPtr packet) = 0;
  /// Keeps a session (a recoverable disconnect).
  virtual void keep(KeptSession session) = 0;
  /// Takes the kept session of `pid`, with the packets recorded after `offset` that its rooms and
  /// sid would have received: nullopt when the pid is unknown or expired, or `offset` is no
  /// longer held. The session is removed either way (a pid restores once). `done` is called
  /// once, now or later, on the loop thread.
  virtual void take(const std::string& pid, const std::string& offset,
                    std::function<void(std::optional<RestoredSession>)> done) = 0;
  /// Keeps again a session take() handed out whose socket went before it could be restored
  /// (its connection closed meanwhile): the client can still come back with it.
  virtual void give_back(KeptSession session) { keep(std::move(session)); }
  /// Removes the kept sessions `match` selects, then calls `done` once with how many, now or
  /// later, on the loop thread (a cluster store removes them from the shared records of every
  /// node). `match` may be kept and called later, on another thread: it must own what it
  /// captures.
  virtual void drop_if(std::function<bool(const KeptSession&)> match,
                       std::function<void(size_t)> done) = 0;
  /// Removes what is older than max_disconnection_duration; `expired` is called for each kept
  /// session removed unrecovered.
  virtual void sweep(std::chrono::steady_clock::time_point now,
                     const std::function<void(const KeptSession&)>& expired) = 0;
  /// A cluster store also tracks connected sockets, so that a node that dies (SIGKILL) loses
  /// none of them: then the server reports connects, room changes and plain disconnects too.
  /// The memory store holds nothing until a recoverable disconnect.
  virtual bool tracks_connected() const { return false; }
  /// A socket connected or was restored here; `session` is what would be kept of it now.
  virtual void connected(const KeptSession& /*session*/) {}
  virtual void rooms_changed(const std::string& /*pid*/,
                             const std::vector<std::string>& /*rooms*/) {}
  /// A socket left without being kept (its client's own disconnect, a server disconnect).
  virtual void forgotten(const std::string& /*pid*/) {}
  /// sweep() must run even while this store holds nothing (a cluster store expires what the
  /// other nodes kept, too).
  virtual bool sweeps_always() const { return false; }
  /// Calls `done` on the loop thread once what the store was told so far is saved (a drain
  /// keeps its sockets, then waits for this before the process exits).
  virtual void flush(std::function<void()> done) { done(); }

  virtual size_t session_count() const = 0;
  virtual size_t packet_count() const = 0;
  virtual RecoveryCounts counts() const = 0;
};

/// The application's part (Namespace::set_recovery_hooks).
struct RecoveryHooks {
  /// At a recoverable disconnect: what to keep of the socket's application state (its user, its
  /// tenant...). Null keeps nothing of it; the socket is kept anyway.
  std::function<Json(Socket&)> save;
  /// After the connect hook accepted a CONNECT that presented a kept session (the socket has the
  /// application's fresh state): true restores it, false connects anew (counted as refused).
  std::function<bool(Socket&, const KeptSession&)> allow;
  /// A kept session expired unrecovered.
  std::function<void(const KeptSession&)> expired;
};

}  // namespace steedos::gateway
