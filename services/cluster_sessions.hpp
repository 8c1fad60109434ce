#pragma once
// Cluster-wide recovery records (issue 13, the `jetstream` store): one record per Socket.IO
// socket in a JetStream key-value bucket, key = its private id (pid), so that a client whose
// node died, was drained or restarted can be restored by ANY node.
//
// Life of a record:
//   put_connected   when the socket connects (or is restored here): state "connected", node = us
//   update_rooms    whenever its rooms change, so a node killed by SIGKILL loses nothing
//   mark_kept       at a recoverable disconnect: state "kept", kept_at = wall clock
//   remove          at a non-recoverable disconnect
//   take            a restore on any node: get + delete, one winner when nodes race
//   sweep           expires the records this node kept once they are older than
//                   max_disconnection_duration (from its own list: on time whatever the bucket's
//                   size), and, by a bounded scan of the whole bucket, those of other nodes (a node
//                   killed after keeping them) and connected records whose node left the cluster
//                   (the caller says which nodes are alive) once that long has passed since a
//                   sweep first saw the node gone
//   drop_if         logout / operator disconnect while away: removes matching records anywhere
//
// One winner: every delete that decides something (take, expiry, drop) and every update after
// the first put is conditional on the revision last seen (JetStream::kv_update / kv_delete_if:
// a publish with Nats-Expected-Last-Subject-Sequence, the only compare-and-set nats-server 2.9
// offers; cnats 3.4 has no conditional delete). Two nodes taking one pid: both read revision r,
// both publish a delete marker expecting r, the server stores one and refuses the other. Two
// nodes sweeping one expired record: the same, so `expired` is reported once cluster-wide. A
// node whose socket's record was taken elsewhere finds out at its next write (a Conflict):
// counted as `lost` and reported to on_lost.
//
// 2.9 has no per-key TTL and no expiry notice: the bucket's max age (max_age, larger than
// max_disconnection_duration) is only a safety net for records nobody sweeps; expiry is timed by
// the nodes from kept_at (a wall clock written by the node that kept it: clocks across nodes
// are assumed synchronised to well under max_disconnection_duration).
//
// Threading: the public calls are for the io_context's thread (after open()). Every JetStream
// call runs on one worker thread owned by this object, fed by a queue bounded by
// max_queued_jobs (past it a job is refused and counted, and a take answers nullopt); results
// are posted back to the io_context. open() blocks (connect + probe + ensure the bucket), bounded
// by the connect and request timeouts: call it at start, before sockets are served; if it fails
// the object must not be used (nothing would run the queue). The destructor waits for the call
// in progress (at most request_timeout_ms); jobs still queued are dropped (flush_now first to
// keep them) and no callback runs after it.
#include <asio/io_context.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "protocol/json.hpp"
#include "transport/jetstream.hpp"

namespace steedos::services {

enum class ClusterSessionState { Connected, Kept };

/// One socket's recovery record, stored as compact JSON.
struct ClusterSessionRecord {
  std::string sid;
  std::string nsp;
  std::string pid;
  std::vector<std::string> rooms;  // named rooms, without the own-id room
  Json app_data;                   // RecoveryHooks::save's value (null when nothing)
  std::string node;                // the node id holding the socket (or that kept it)
  ClusterSessionState state = ClusterSessionState::Connected;
  int64_t kept_at_ms = 0;  // wall clock (ms since the epoch) of mark_kept; 0 while connected
};

std::string encode_session_record(const ClusterSessionRecord& record);
/// The record in `text`, or nullopt with `error` saying what is wrong (not JSON, too deep, a
/// field missing or of the wrong type, an unknown state).
std::optional<ClusterSessionRecord> decode_session_record(std::string_view text,
                                                          std::string* error = nullptr);
/// Whether `pid` can be a key: 1-128 of A-Z a-z 0-9 _ - = (NATS subject tokens; never `.`,
/// `*` or `>`, which would address other keys).
bool valid_session_key(std::string_view pid);

/// Why sweep() removed a record.
enum class ExpiryCause {
  Kept,      // kept longer than max_disconnection_duration
  NodeGone,  // still "connected" but its node left the cluster that long ago
};

struct ClusterSessionsOptions {
  std::string bucket = "steedos_socket_sessions";
  /// The bucket's max age: a safety net for records no node sweeps. Must exceed
  /// max_disconnection_duration (a record is rewritten at each room change and at mark_kept).
  std::chrono::milliseconds max_age{std::chrono::minutes(30)};
  int64_t max_bytes = 256LL << 20;
  int replicas = 1;
  transport::JsStorage storage = transport::JsStorage::File;
  std::string node_id;
  std::chrono::milliseconds max_disconnection_duration{120000};
  /// When no JetStream is given to the constructor: the servers to connect to (comma separated).
  std::string urls = "nats://127.0.0.1:4222";
  int request_timeout_ms = 5000;
  /// Jobs waiting for the worker (writes, takes, scans).
  size_t max_queued_jobs = 20000;
  /// Records read by one sweep() call (one scan request, plus one delete per expiry).
  size_t sweep_batch = 256;
  /// Records of dead nodes whose "first seen gone" time is remembered; past it, more such
  /// records wait for a later pass (counted as untracked_gone).
  size_t max_tracked_gone = 100000;
  /// An encoded record larger than this is not written (counted as oversized).
  size_t max_record_bytes = 64 * 1024;
};

/// Since construction.
struct ClusterSessionsCounts {
  uint64_t puts = 0;               // put_connected writes done
  uint64_t updates = 0;            // room / kept updates done
  uint64_t removes = 0;            // remove() deletes done
  uint64_t takes = 0;              // take() calls
  uint64_t taken = 0;              // takes that won a record
  uint64_t take_misses = 0;        // no such record (or an invalid pid)
  uint64_t take_races = 0;         // a record another node took (or changed) between get and delete
  uint64_t expired = 0;            // removed by this node's sweeps (each once cluster-wide)
  uint64_t expired_node_gone = 0;  // of which: their node had left the cluster
  uint64_t sweep_races = 0;        // expiries another node did first
  uint64_t dropped = 0;            // removed by drop_if
  uint64_t lost = 0;               // our write refused: the record was taken or removed elsewhere
  uint64_t malformed = 0;          // records that did not decode (left to the bucket's max age)
  uint64_t oversized = 0;          // records over max_record_bytes, not written
  uint64_t invalid_keys = 0;       // pids that cannot be keys, refused
  uint64_t queue_full = 0;         // jobs refused for max_queued_jobs
  uint64_t untracked_gone = 0;
  uint64_t errors = 0;  // JetStream failures (timeouts, disconnections...), each logged
  uint64_t queued = 0;  // jobs waiting now
};

class ClusterSessions {
 public:
  using TakeDone = std::function<void(std::optional<ClusterSessionRecord>)>;
  using Expired = std::function<void(const ClusterSessionRecord&, ExpiryCause)>;
  /// Runs on the WORKER thread, once per record scanned: look at the record only.
  using Match = std::function<bool(const ClusterSessionRecord&)>;

  /// `jetstream`, when given, is used by the worker thread only from open() on (nobody else
  /// may call it meanwhile) and must outlive this object; otherwise open() connects to
  /// options.urls.
  ClusterSessions(asio::io_context& loop, ClusterSessionsOptions options,
                  transport::JetStream* jetstream = nullptr);
  ~ClusterSessions();
  ClusterSessions(const ClusterSessions&) = delete;
  ClusterSessions& operator=(const ClusterSessions&) = delete;

  /// Connects (unless given a JetStream), checks JetStream, ensures the bucket, starts the
  /// worker. Blocking (see above). NotEnabled: the server has no JetStream.
  transport::JsStatus open();

  /// Writes are coalesced: whatever happens to one pid during a loop turn becomes at most one
  /// write, queued at the end of that turn. `record.node` is set to our node id.
  void put_connected(ClusterSessionRecord record);
  /// Ignored for a pid not put here (or already kept / removed / lost).
  void update_rooms(const std::string& pid, std::vector<std::string> rooms);
  void mark_kept(const std::string& pid, int64_t now_ms);
  void remove(const std::string& pid);
  /// Rewrites (at most `max_writes`) held records last written max_age / 2 ago or more: the
  /// bucket's max age would otherwise remove the record of a socket connected that long with
  /// no room change, and a SIGKILL of this node would then lose it. Call it every few seconds;
  /// each call looks at every held record (a loop over a map, no request). Returns how many.
  size_t refresh(std::chrono::steady_clock::time_point now, size_t max_writes);

  /// Queues what this turn changed now, and runs `done` on the loop thread once every write
  /// queued before it is done (written or failed): a drain calls mark_kept for each socket, then
  /// this, then closes the sockets. `done` runs even when the queue is full (writes were lost,
  /// counted as queue_full).
  void flush_now(std::function<void()> done);

  /// Gets and deletes the record of `pid` (kept, or connected on a dead node: the caller
  /// decides from record.state and record.node); nullopt when absent, invalid, taken by another
  /// node first, or on an error. `done` runs once, later, on the loop thread.
  void take(const std::string& pid, TakeDone done);

  /// One bounded step of the cluster-wide expiry (at most sweep_batch records read, from where
  /// the previous call stopped; the scan starts over at the end of the bucket). `alive_nodes`
  /// are the node ids in the cluster now (ours included). `expired` runs on the loop thread for
  /// each record this node removed, then `done`. Returns false (nothing done) while a previous
  /// step runs, or when the job queue is full.
  bool sweep(int64_t now_ms, std::unordered_set<std::string> alive_nodes, Expired expired,
             std::function<void()> done = {});

  /// Removes every record `match` selects, on any node (a full scan, in sweep_batch steps, on
  /// the worker). `done` runs on the loop thread with how many were removed.
  void drop_if(Match match, std::function<void(size_t)> done = {});

  /// Called on the loop thread when a write of ours was refused because the record was taken
  /// or removed by another node (its socket here is stale).
  void set_on_lost(std::function<void(const std::string& pid)> on_lost);

  ClusterSessionsCounts counts() const;
  /// Records put here and not yet kept, removed or lost.
  size_t held() const { return held_.size(); }

  struct Worker;

 private:
  struct PendingWrite {
    std::optional<ClusterSessionRecord> record;  // nullopt: remove
    bool fresh = false;                          // a put_connected: an unconditional put
  };
  void mark_dirty(const std::string& pid, PendingWrite write);
  void flush();

  asio::io_context& loop_;
  ClusterSessionsOptions options_;
  struct Held {
    ClusterSessionRecord record;
    std::chrono::steady_clock::time_point written;  // when its last write was queued
  };
  std::unordered_map<std::string, Held> held_;
  std::unordered_map<std::string, PendingWrite> pending_;
  bool flush_posted_ = false;
  bool sweeping_ = false;
  std::shared_ptr<bool> alive_;  // false once destroyed: posted completions do nothing
  std::shared_ptr<std::function<void(const std::string&)>> on_lost_;
  std::shared_ptr<Worker> worker_;  // last: stopped first
};

}  // namespace steedos::services
