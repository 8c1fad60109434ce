#include "services/cluster_sessions.hpp"

#include <spdlog/spdlog.h>

#include <asio/post.hpp>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include "common/log.hpp"
#include "protocol/json_reader.hpp"

namespace steedos::services {

using transport::JsError;
using transport::JsStatus;

namespace {

const std::shared_ptr<spdlog::logger>& logger() {
  static const auto instance = component_logger("cluster-sessions");
  return instance;
}

/// Records hold app data written by our own nodes; this bounds what a decode builds.
constexpr size_t kMaxRecordDepth = 64;
constexpr size_t kMaxKeyLength = 128;

const char* state_name(ClusterSessionState state) {
  return state == ClusterSessionState::Kept ? "kept" : "connected";
}

}  // namespace

bool valid_session_key(std::string_view pid) {
  if (pid.empty() || pid.size() > kMaxKeyLength) return false;
  for (const char c : pid) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '=';
    if (!ok) return false;
  }
  return true;
}

std::string encode_session_record(const ClusterSessionRecord& record) {
  Json out = Json::object();
  out["sid"] = record.sid;
  out["nsp"] = record.nsp;
  out["pid"] = record.pid;
  out["rooms"] = record.rooms;
  out["data"] = record.app_data;
  out["node"] = record.node;
  out["state"] = state_name(record.state);
  out["kept_at"] = record.kept_at_ms;
  return dump_json(out);
}

std::optional<ClusterSessionRecord> decode_session_record(std::string_view text,
                                                          std::string* error) {
  auto refuse = [error](std::string why) -> std::optional<ClusterSessionRecord> {
    if (error != nullptr) *error = std::move(why);
    return std::nullopt;
  };
  protocol::JsonRefusal why{};
  auto parsed = protocol::parse_json(text, kMaxRecordDepth, &why);
  if (!parsed) {
    return refuse(why == protocol::JsonRefusal::TooDeep ? "nested too deep" : "not JSON");
  }
  const Json& j = *parsed;
  if (!j.is_object()) return refuse("not an object");
  ClusterSessionRecord r;
  for (auto [name, field] : {std::pair{"sid", &r.sid}, std::pair{"nsp", &r.nsp},
                             std::pair{"pid", &r.pid}, std::pair{"node", &r.node}}) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_string()) return refuse(std::string(name) + ": not a string");
    *field = it->get<std::string>();
  }
  auto rooms = j.find("rooms");
  if (rooms == j.end() || !rooms->is_array()) return refuse("rooms: not an array");
  for (const Json& room : *rooms) {
    if (!room.is_string()) return refuse("rooms: not all strings");
    r.rooms.push_back(room.get<std::string>());
  }
  auto state = j.find("state");
  if (state == j.end() || !state->is_string()) return refuse("state: not a string");
  if (*state == "kept") {
    r.state = ClusterSessionState::Kept;
  } else if (*state == "connected") {
    r.state = ClusterSessionState::Connected;
  } else {
    return refuse("state: neither connected nor kept");
  }
  auto kept_at = j.find("kept_at");
  if (kept_at == j.end() || !kept_at->is_number_integer()) return refuse("kept_at: not an integer");
  r.kept_at_ms = kept_at->get<int64_t>();
  auto data = j.find("data");
  if (data != j.end()) r.app_data = *data;
  if (!valid_session_key(r.pid)) return refuse("pid: not a valid key");
  return r;
}

// ---------------------------------------------------------------------------------------------
// The worker: the only thread that calls JetStream. Its maps are its own (no lock); the queue
// and the counts are shared with the loop thread.

struct ClusterSessions::Worker {
  using Job = std::function<void(Worker&)>;

  Worker(asio::io_context& l, ClusterSessionsOptions o, std::shared_ptr<bool> a)
      : loop(l), options(std::move(o)), alive(std::move(a)) {}

  asio::io_context& loop;
  const ClusterSessionsOptions options;
  std::shared_ptr<bool> alive;  // read and cleared on the loop thread only
  transport::JetStream* js = nullptr;
  std::unique_ptr<transport::JetStream> owned_js;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<Job> jobs;
  bool stopping = false;
  std::thread thread;

  struct Counters {
    std::atomic<uint64_t> puts{0}, updates{0}, removes{0}, takes{0}, taken{0}, take_misses{0},
        take_races{0}, expired{0}, expired_node_gone{0}, sweep_races{0}, dropped{0}, lost{0},
        malformed{0}, oversized{0}, invalid_keys{0}, queue_full{0}, untracked_gone{0}, errors{0};
  } counts;

  // Worker thread only.
  std::unordered_map<std::string, uint64_t> revisions;  // records this node writes
  /// Records this node marked kept, with the revision it wrote: expired by a conditional delete
  /// of that revision when their time comes, without waiting for the scan to reach them (which
  /// takes bucket size / sweep_batch seconds). Rooms are not kept here: the expiry needs the rest.
  struct OwnKept {
    uint64_t revision;
    ClusterSessionRecord record;
  };
  std::unordered_map<std::string, OwnKept> own_kept;
  /// Puts that failed (not a conflict: an outage, a timeout): their next write is a put again.
  std::unordered_set<std::string> unwritten;
  struct Gone {
    uint64_t revision = 0;
    int64_t since_ms = 0;
    uint64_t pass = 0;
  };
  std::unordered_map<std::string, Gone> gone;  // connected records of dead nodes
  uint64_t cursor = 1;                         // the sweep's next revision
  uint64_t pass = 0;                           // full sweeps started

  /// False (counted) when the queue is full.
  bool submit(Job job) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (jobs.size() >= options.max_queued_jobs) {
        ++counts.queue_full;
        return false;
      }
      jobs.push_back(std::move(job));
    }
    cv.notify_one();
    return true;
  }

  size_t queued() {
    std::lock_guard<std::mutex> lock(mu);
    return jobs.size();
  }

  void start() {
    thread = std::thread([this] { run(); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stopping = true;
      jobs.clear();
    }
    cv.notify_one();
    if (thread.joinable()) thread.join();
  }

  void run() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [this] { return stopping || !jobs.empty(); });
        if (stopping) return;
        job = std::move(jobs.front());
        jobs.pop_front();
      }
      job(*this);
    }
  }

  /// Runs `fn` on the loop thread, unless the ClusterSessions is gone by then.
  template <typename Fn>
  void post(Fn fn) {
    asio::post(loop, [alive = alive, fn = std::move(fn)]() mutable {
      if (*alive) fn();
    });
  }

  /// Logs the 1st, 2nd, 4th, 8th... failure: one line per outage, not one per write.
  void failed(const JsStatus& status) {
    const uint64_t n = ++counts.errors;
    if ((n & (n - 1)) == 0) logger()->warn("{} ({} JetStream failures so far)", status.message, n);
  }

  std::string key_of(const std::string& subject) const {
    const std::string prefix = "$KV." + options.bucket + ".";
    return subject.compare(0, prefix.size(), prefix) == 0 ? subject.substr(prefix.size())
                                                          : std::string();
  }

  /// Writes what the loop coalesced for `pid`. Returns false when the record is lost to us.
  bool write(const std::string& pid, const PendingWrite& w) {
    auto known = revisions.find(pid);
    if (!w.record) {  // remove: only the revision we wrote (a restore elsewhere rewrote it)
      unwritten.erase(pid);
      if (known == revisions.end()) return true;
      const JsStatus s = js->kv_delete_if(options.bucket, pid, known->second);
      revisions.erase(known);
      if (s.ok()) {
        ++counts.removes;
      } else if (s.error != JsError::Conflict) {
        failed(s);
      }
      return true;
    }
    const std::string value = encode_session_record(*w.record);
    if (value.size() > options.max_record_bytes) {
      ++counts.oversized;
      logger()->warn("record of sid {} is {} bytes (max {}): not written", w.record->sid,
                     value.size(), options.max_record_bytes);
      return true;
    }
    transport::JsResult<uint64_t> r;
    const bool put = w.fresh || unwritten.count(pid) > 0;
    if (put) {
      r = js->kv_put(options.bucket, pid, value);
      if (r.ok()) ++counts.puts;
    } else {
      if (known == revisions.end()) {
        ++counts.lost;
        return false;
      }
      r = js->kv_update(options.bucket, pid, value, known->second);
      if (r.ok()) ++counts.updates;
    }
    if (!r.ok()) {
      if (r.error == JsError::Conflict) {
        revisions.erase(pid);
        ++counts.lost;
        return false;
      }
      // Not refused, not written (or written with its ack lost: then the next update
      // conflicts and the record counts as lost). A later write carries the whole record.
      if (put) unwritten.insert(pid);
      failed(r);
      return true;
    }
    unwritten.erase(pid);
    if (w.record->state == ClusterSessionState::Kept) {
      revisions.erase(pid);  // ours no more: taken, expired or dropped by whichever node
      if (own_kept.size() < options.max_tracked_gone) {
        ClusterSessionRecord expiring = *w.record;
        expiring.rooms.clear();
        own_kept[pid] = OwnKept{r.value, std::move(expiring)};
      }
    } else {
      revisions[pid] = r.value;
    }
    return true;
  }

  std::optional<ClusterSessionRecord> take(const std::string& pid) {
    ++counts.takes;
    if (!valid_session_key(pid)) {
      ++counts.invalid_keys;
      ++counts.take_misses;
      return std::nullopt;
    }
    auto entry = js->kv_entry(options.bucket, pid);
    if (!entry.ok()) {
      if (entry.error == JsError::NotFound) {
        ++counts.take_misses;
      } else {
        failed(entry);
      }
      return std::nullopt;
    }
    std::string why;
    auto record = decode_session_record(entry.value.value, &why);
    if (!record) {
      ++counts.malformed;
      logger()->warn("record {} in {} is malformed ({}): not restored", pid, options.bucket, why);
      return std::nullopt;
    }
    const JsStatus deleted = js->kv_delete_if(options.bucket, pid, entry.value.revision);
    if (!deleted.ok()) {
      if (deleted.error == JsError::Conflict) {
        ++counts.take_races;
      } else {
        failed(deleted);
      }
      return std::nullopt;
    }
    revisions.erase(pid);  // if it was a socket of ours, its next write is lost
    unwritten.erase(pid);
    own_kept.erase(pid);
    ++counts.taken;
    return record;
  }

  using ExpiredList = std::vector<std::pair<ClusterSessionRecord, ExpiryCause>>;

  /// The records this node kept whose time has come: deleted if still the revision it wrote
  /// (else another node took, dropped or expired them first).
  void expire_own(int64_t now_ms, ExpiredList& out) {
    const int64_t duration = options.max_disconnection_duration.count();
    for (auto it = own_kept.begin(); it != own_kept.end();) {
      if (now_ms - it->second.record.kept_at_ms < duration) {
        ++it;
        continue;
      }
      const JsStatus s = js->kv_delete_if(options.bucket, it->first, it->second.revision);
      if (s.ok()) {
        ++counts.expired;
        out.emplace_back(std::move(it->second.record), ExpiryCause::Kept);
      } else if (s.error == JsError::Conflict || s.error == JsError::NotFound) {
        ++counts.sweep_races;
      } else {
        failed(s);
        ++it;  // tried again at the next sweep
        continue;
      }
      it = own_kept.erase(it);
    }
  }

  /// One step of the expiry: this node's own kept records that are due, then a step of the scan
  /// (the records of every node, for those whose node died or left).
  ExpiredList sweep(int64_t now_ms, const std::unordered_set<std::string>& alive_nodes) {
    ExpiredList out;
    expire_own(now_ms, out);
    const int64_t duration = options.max_disconnection_duration.count();
    if (cursor <= 1) ++pass;
    transport::JsReadLimits limits;
    limits.max_messages = options.sweep_batch;
    limits.max_bytes = static_cast<int64_t>(options.sweep_batch * (options.max_record_bytes + 256));
    auto batch = js->kv_scan(options.bucket, cursor, limits);
    if (!batch.ok()) {
      failed(batch);
      return out;
    }
    for (const transport::JsMessage& m : batch.value.messages) {
      if (m.data.empty()) continue;  // a delete marker
      const std::string pid = key_of(m.subject);
      auto record = decode_session_record(m.data);
      if (!record) {
        ++counts.malformed;
        continue;
      }
      std::optional<ExpiryCause> cause;
      if (record->state == ClusterSessionState::Kept) {
        if (now_ms - record->kept_at_ms >= duration) cause = ExpiryCause::Kept;
      } else if (alive_nodes.count(record->node) == 0) {
        auto it = gone.find(pid);
        if (it == gone.end() || it->second.revision != m.sequence) {
          if (it == gone.end() && gone.size() >= options.max_tracked_gone) {
            ++counts.untracked_gone;
          } else {
            gone[pid] = Gone{m.sequence, now_ms, pass};
          }
        } else {
          it->second.pass = pass;
          if (now_ms - it->second.since_ms >= duration) cause = ExpiryCause::NodeGone;
        }
      } else {
        gone.erase(pid);
      }
      if (!cause) continue;
      gone.erase(pid);
      const JsStatus s = js->kv_delete_if(options.bucket, pid, m.sequence);
      if (s.ok()) {
        ++counts.expired;
        if (*cause == ExpiryCause::NodeGone) ++counts.expired_node_gone;
        out.emplace_back(std::move(*record), *cause);
      } else if (s.error == JsError::Conflict) {
        ++counts.sweep_races;  // taken, updated or expired by another node meanwhile
      } else {
        failed(s);
      }
    }
    if (batch.value.more && !batch.value.messages.empty()) {
      cursor = batch.value.messages.back().sequence + 1;
    } else {
      // End of the bucket: the next step starts a new pass. Forget dead-node records this
      // pass did not see (taken, removed or rewritten).
      cursor = 1;
      for (auto it = gone.begin(); it != gone.end();) {
        it = it->second.pass < pass ? gone.erase(it) : std::next(it);
      }
    }
    return out;
  }

  size_t drop(const Match& match) {
    size_t removed = 0;
    transport::JsReadLimits limits;
    limits.max_messages = options.sweep_batch;
    limits.max_bytes = static_cast<int64_t>(options.sweep_batch * (options.max_record_bytes + 256));
    uint64_t from = 1;
    for (;;) {
      auto batch = js->kv_scan(options.bucket, from, limits);
      if (!batch.ok()) {
        failed(batch);
        return removed;
      }
      for (const transport::JsMessage& m : batch.value.messages) {
        if (m.data.empty()) continue;
        auto record = decode_session_record(m.data);
        if (!record || !match(*record)) continue;
        const std::string pid = key_of(m.subject);
        const JsStatus s = js->kv_delete_if(options.bucket, pid, m.sequence);
        if (s.ok()) {
          ++removed;
          ++counts.dropped;
          revisions.erase(pid);
          own_kept.erase(pid);
        } else if (s.error != JsError::Conflict) {
          failed(s);
        }
      }
      if (!batch.value.more || batch.value.messages.empty()) return removed;
      from = batch.value.messages.back().sequence + 1;
    }
  }
};

// ---------------------------------------------------------------------------------------------

ClusterSessions::ClusterSessions(asio::io_context& loop, ClusterSessionsOptions options,
                                 transport::JetStream* jetstream)
    : loop_(loop),
      options_(std::move(options)),
      alive_(std::make_shared<bool>(true)),
      on_lost_(std::make_shared<std::function<void(const std::string&)>>()) {
  worker_ = std::make_shared<Worker>(loop_, options_, alive_);
  worker_->js = jetstream;
}

ClusterSessions::~ClusterSessions() {
  *alive_ = false;
  worker_->stop();
  if (worker_->owned_js) worker_->owned_js->close();
}

JsStatus ClusterSessions::open() {
  Worker& w = *worker_;
  if (w.thread.joinable()) return {};
  if (options_.max_age <= options_.max_disconnection_duration) {
    return JsStatus{JsError::Rejected,
                    "cluster sessions: max_age must exceed max_disconnection_duration"};
  }
  if (options_.node_id.empty()) {
    return JsStatus{JsError::Rejected, "cluster sessions: no node id"};
  }
  if (w.js == nullptr) {
    transport::JetStreamOptions o;
    o.url = options_.urls;
    o.name = "steedos-socket-sessions-" + options_.node_id;
    o.request_timeout_ms = options_.request_timeout_ms;
    auto made = transport::JetStream::connect(loop_, o);
    if (!made.ok()) return made;
    w.owned_js = std::move(made.value);
    w.js = w.owned_js.get();
  }
  if (JsStatus probed = w.js->probe(); !probed.ok()) return probed;
  transport::JsBucketSpec spec;
  spec.bucket = options_.bucket;
  spec.ttl = options_.max_age;
  spec.max_bytes = options_.max_bytes;
  spec.max_value_size = static_cast<int32_t>(options_.max_record_bytes);
  spec.storage = options_.storage;
  spec.replicas = options_.replicas;
  if (JsStatus ensured = w.js->ensure_bucket(spec); !ensured.ok()) return ensured;
  logger()->info("cluster sessions in bucket {} (max age {} s, {} replica(s))", options_.bucket,
                 options_.max_age.count() / 1000, options_.replicas);
  w.start();
  return {};
}

void ClusterSessions::put_connected(ClusterSessionRecord record) {
  record.node = options_.node_id;
  record.state = ClusterSessionState::Connected;
  record.kept_at_ms = 0;
  const std::string pid = record.pid;
  if (!valid_session_key(pid)) {
    ++worker_->counts.invalid_keys;
    logger()->warn("sid {}: its pid cannot be a key; not stored cluster-wide", record.sid);
    return;
  }
  held_[pid] = Held{record, std::chrono::steady_clock::now()};
  mark_dirty(pid, PendingWrite{std::move(record), true});
}

void ClusterSessions::update_rooms(const std::string& pid, std::vector<std::string> rooms) {
  auto it = held_.find(pid);
  if (it == held_.end()) return;
  it->second.record.rooms = std::move(rooms);
  it->second.written = std::chrono::steady_clock::now();
  mark_dirty(pid, PendingWrite{it->second.record, false});
}

void ClusterSessions::mark_kept(const std::string& pid, int64_t now_ms) {
  auto it = held_.find(pid);
  if (it == held_.end()) return;
  ClusterSessionRecord record = std::move(it->second.record);
  held_.erase(it);
  record.state = ClusterSessionState::Kept;
  record.kept_at_ms = now_ms;
  mark_dirty(pid, PendingWrite{std::move(record), false});
}

void ClusterSessions::remove(const std::string& pid) {
  if (held_.erase(pid) == 0 && pending_.count(pid) == 0) return;
  mark_dirty(pid, PendingWrite{std::nullopt, false});
}

size_t ClusterSessions::refresh(std::chrono::steady_clock::time_point now, size_t max_writes) {
  const auto due = options_.max_age / 2;
  size_t queued = 0;
  for (auto& [pid, held] : held_) {
    if (queued == max_writes) break;
    if (now - held.written < due) continue;
    held.written = now;
    mark_dirty(pid, PendingWrite{held.record, false});
    ++queued;
  }
  return queued;
}

void ClusterSessions::mark_dirty(const std::string& pid, PendingWrite write) {
  auto [it, inserted] = pending_.try_emplace(pid, std::move(write));
  if (!inserted) {
    // A put earlier in this turn stays a put (the worker has no revision for it yet). A remove
    // replaces anything: the worker deletes the revision it wrote last, if any.
    const bool fresh = it->second.fresh;
    it->second = std::move(write);
    if (it->second.record) it->second.fresh = it->second.fresh || fresh;
  }
  if (!flush_posted_) {
    flush_posted_ = true;
    asio::post(loop_, [this, alive = alive_] {
      if (*alive) flush();
    });
  }
}

void ClusterSessions::flush() {
  flush_posted_ = false;
  auto writes = std::move(pending_);
  pending_.clear();
  for (auto& [pid, write] : writes) {
    const bool submitted = worker_->submit([this, pid = pid, write = std::move(write)](Worker& w) {
      if (w.write(pid, write)) return;
      w.post([this, pid] {
        held_.erase(pid);
        if (*on_lost_) (*on_lost_)(pid);
      });
    });
    if (!submitted) {
      logger()->warn("job queue full ({}): a record write dropped", options_.max_queued_jobs);
    }
  }
}

void ClusterSessions::flush_now(std::function<void()> done) {
  flush();
  auto callback = std::make_shared<std::function<void()>>(std::move(done));
  // The worker runs jobs in order: this one runs after every write queued above.
  const bool submitted = worker_->submit([callback](Worker& w) {
    w.post([callback] {
      if (*callback) (*callback)();
    });
  });
  if (!submitted) {
    asio::post(loop_, [callback, alive = alive_] {
      if (*alive && *callback) (*callback)();
    });
  }
}

void ClusterSessions::take(const std::string& pid, TakeDone done) {
  auto shared = std::make_shared<TakeDone>(std::move(done));
  const bool submitted = worker_->submit([pid, shared](Worker& w) {
    auto record = w.take(pid);
    w.post([shared, record = std::move(record)]() mutable { (*shared)(std::move(record)); });
  });
  if (!submitted) {
    asio::post(loop_, [shared, alive = alive_] {
      if (*alive) (*shared)(std::nullopt);
    });
  }
}

bool ClusterSessions::sweep(int64_t now_ms, std::unordered_set<std::string> alive_nodes,
                            Expired expired, std::function<void()> done) {
  if (sweeping_) return false;
  auto callback = std::make_shared<Expired>(std::move(expired));
  auto finished = std::make_shared<std::function<void()>>(std::move(done));
  const bool submitted = worker_->submit(
      [this, now_ms, nodes = std::move(alive_nodes), callback, finished](Worker& w) {
        auto list = w.sweep(now_ms, nodes);
        w.post([this, callback, finished, list = std::move(list)] {
          sweeping_ = false;
          if (*callback) {
            for (const auto& [record, cause] : list) (*callback)(record, cause);
          }
          if (*finished) (*finished)();
        });
      });
  sweeping_ = submitted;
  return submitted;
}

void ClusterSessions::drop_if(Match match, std::function<void(size_t)> done) {
  auto callback = std::make_shared<std::function<void(size_t)>>(std::move(done));
  const bool submitted = worker_->submit([match = std::move(match), callback](Worker& w) {
    const size_t removed = w.drop(match);
    w.post([callback, removed] {
      if (*callback) (*callback)(removed);
    });
  });
  if (!submitted) {
    asio::post(loop_, [callback, alive = alive_] {
      if (*alive && *callback) (*callback)(0);
    });
  }
}

void ClusterSessions::set_on_lost(std::function<void(const std::string& pid)> on_lost) {
  *on_lost_ = std::move(on_lost);
}

ClusterSessionsCounts ClusterSessions::counts() const {
  const auto& c = worker_->counts;
  ClusterSessionsCounts out;
  out.puts = c.puts;
  out.updates = c.updates;
  out.removes = c.removes;
  out.takes = c.takes;
  out.taken = c.taken;
  out.take_misses = c.take_misses;
  out.take_races = c.take_races;
  out.expired = c.expired;
  out.expired_node_gone = c.expired_node_gone;
  out.sweep_races = c.sweep_races;
  out.dropped = c.dropped;
  out.lost = c.lost;
  out.malformed = c.malformed;
  out.oversized = c.oversized;
  out.invalid_keys = c.invalid_keys;
  out.queue_full = c.queue_full;
  out.untracked_gone = c.untracked_gone;
  out.errors = c.errors;
  out.queued = worker_->queued();
  return out;
}

}  // namespace steedos::services
