#include "services/jetstream_recovery_store.hpp"

#include <algorithm>
#include <utility>

#include "common/log.hpp"
#include "gateway/memory_recovery_store.hpp"  // target_includes

namespace steedos::services {

namespace {

std::shared_ptr<spdlog::logger> logger() {
  return component_logger("recovery");
}

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

gateway::KeptSession kept_session_of(ClusterSessionRecord record) {
  gateway::KeptSession session;
  session.nsp = std::move(record.nsp);
  session.sid = std::move(record.sid);
  session.pid = std::move(record.pid);
  session.rooms = std::move(record.rooms);
  session.app_data = std::move(record.app_data);
  // The steady clock of this process, as far back as the wall clock says it was kept.
  const auto away = std::chrono::milliseconds(
      record.kept_at_ms > 0 ? std::max<int64_t>(0, wall_ms() - record.kept_at_ms) : 0);
  session.disconnected_at = std::chrono::steady_clock::now() - away;
  return session;
}

ClusterSessionRecord record_of(const gateway::KeptSession& session) {
  ClusterSessionRecord record;
  record.sid = session.sid;
  record.nsp = session.nsp;
  record.pid = session.pid;
  record.rooms = session.rooms;
  record.app_data = session.app_data;
  return record;
}

constexpr auto kCatchUpPoll = std::chrono::milliseconds(5);

}  // namespace

std::string offset_of_sequence(uint64_t sequence) {
  return std::to_string(sequence);
}

std::optional<uint64_t> sequence_of_offset(std::string_view offset) {
  if (offset.empty() || offset.size() > 20) return std::nullopt;
  uint64_t value = 0;
  for (char c : offset) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

/// One restore in progress.
struct JetStreamRecoveryStore::Restore {
  std::string pid;
  uint64_t offset = 0;  // the last sequence the client saw
  Done done;
  std::optional<ClusterSessionRecord> record;
  std::vector<gateway::OutgoingPacketPtr> missed;
  uint64_t read_to = 0;  // the history read so far reaches this sequence
  std::chrono::steady_clock::time_point wait_until;
  std::unique_ptr<asio::steady_timer> timer;
};

JetStreamRecoveryStore::JetStreamRecoveryStore(asio::io_context& loop, ClusterHistory& history,
                                               ClusterSessions& sessions,
                                               JetStreamRecoveryOptions options, Encode encode,
                                               AliveNodes alive_nodes)
    : loop_(loop),
      history_(history),
      sessions_(sessions),
      options_(options),
      encode_(std::move(encode)),
      alive_nodes_(std::move(alive_nodes)),
      recent_from_(history.last_delivered() + 1) {
  sessions_.set_on_lost([](const std::string& pid) {
    // Its client came back on another node (or it expired there): this node's socket of it, if
    // still here, is a stale one its client has left.
    logger()->debug("session {}: restored or removed by another node", pid.substr(0, 4) + "…");
  });
}

JetStreamRecoveryStore::~JetStreamRecoveryStore() {
  *alive_ = false;
  sessions_.set_on_lost({});
}

void JetStreamRecoveryStore::connected(const gateway::KeptSession& session) {
  sessions_.put_connected(record_of(session));
}

void JetStreamRecoveryStore::rooms_changed(const std::string& pid,
                                           const std::vector<std::string>& rooms) {
  sessions_.update_rooms(pid, rooms);
}

void JetStreamRecoveryStore::forgotten(const std::string& pid) {
  sessions_.remove(pid);
}

void JetStreamRecoveryStore::keep(gateway::KeptSession session) {
  ++counts_.kept;
  sessions_.mark_kept(session.pid, wall_ms());
}

void JetStreamRecoveryStore::give_back(gateway::KeptSession session) {
  const auto away = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - session.disconnected_at);
  const std::string pid = session.pid;
  sessions_.put_connected(record_of(session));
  sessions_.mark_kept(pid, wall_ms() - away.count());  // one write with the put (same turn)
}

void JetStreamRecoveryStore::flush(std::function<void()> done) {
  sessions_.flush_now(std::move(done));
}

void JetStreamRecoveryStore::take(const std::string& pid, const std::string& offset, Done done) {
  const auto sequence = sequence_of_offset(offset);
  if (!sequence) {
    // Not an offset of this store (one from the memory store of a node before a restart...).
    ++counts_.unknown;
    done(std::nullopt);
    return;
  }
  auto restore = std::make_shared<Restore>();
  restore->pid = pid;
  restore->offset = *sequence;
  restore->done = std::move(done);
  sessions_.take(pid, [this, alive = alive_, restore](std::optional<ClusterSessionRecord> record) {
    if (!*alive) return;
    after_take(restore, std::move(record));
  });
}

void JetStreamRecoveryStore::after_take(std::shared_ptr<Restore> restore,
                                        std::optional<ClusterSessionRecord> record) {
  if (!record) {
    ++counts_.unknown;
    restore->done(std::nullopt);
    return;
  }
  restore->record = std::move(record);
  if (restore->record->state == ClusterSessionState::Kept &&
      wall_ms() - restore->record->kept_at_ms >= options_.max_disconnection_duration.count()) {
    give_up(restore, "kept longer than maxDisconnectionDuration");
    return;
  }
  restore->wait_until = std::chrono::steady_clock::now() + options_.catch_up_wait;
  wait_for_offset(restore);
}

// The client may have seen events this node's consumer has not delivered yet (its old node was
// ahead): the replay starts once this node has them, so that none is sent twice.
void JetStreamRecoveryStore::wait_for_offset(std::shared_ptr<Restore> restore) {
  if (history_.last_delivered() >= restore->offset) {
    restore->read_to = restore->offset;
    read_missed(restore);
    return;
  }
  if (std::chrono::steady_clock::now() >= restore->wait_until) {
    give_up(restore, "its offset is ahead of this node's history");
    return;
  }
  if (!restore->timer) restore->timer = std::make_unique<asio::steady_timer>(loop_);
  restore->timer->expires_after(kCatchUpPoll);
  restore->timer->async_wait([this, alive = alive_, restore](const std::error_code& ec) {
    if (ec || !*alive) return;
    wait_for_offset(restore);
  });
}

void JetStreamRecoveryStore::record(const std::string& offset, gateway::PacketTarget target,
                                    gateway::OutgoingPacketPtr packet) {
  const auto sequence = sequence_of_offset(offset);
  if (!sequence || (!recent_.empty() && *sequence <= recent_.back().sequence)) return;
  recent_.push_back(
      Recent{*sequence, std::chrono::steady_clock::now(), std::move(target), std::move(packet)});
  if (recent_.size() > options_.max_recent) {
    recent_from_ = recent_.front().sequence + 1;
    recent_.pop_front();
  }
}

void JetStreamRecoveryStore::forget_recent_before(std::chrono::steady_clock::time_point cutoff) {
  while (!recent_.empty() && recent_.front().sent_at < cutoff) {
    recent_from_ = recent_.front().sequence + 1;
    recent_.pop_front();
  }
}

void JetStreamRecoveryStore::gather_recent(Restore& restore, uint64_t until) {
  const auto& record = *restore.record;
  auto it = std::upper_bound(
      recent_.begin(), recent_.end(), restore.read_to,
      [](uint64_t sequence, const Recent& recent) { return sequence < recent.sequence; });
  for (; it != recent_.end() && it->sequence <= until; ++it) {
    if (gateway::target_includes(it->target, record.sid, record.rooms)) {
      restore.missed.push_back(it->packet);
    }
  }
  restore.read_to = until;
}

void JetStreamRecoveryStore::read_missed(std::shared_ptr<Restore> restore) {
  const uint64_t until = history_.last_delivered();
  if (until <= restore->read_to) {
    finish(restore);
    return;
  }
  if (restore->read_to + 1 >= recent_from_) {
    // Everything missed was sent from here recently: no request.
    gather_recent(*restore, until);
    if (restore->missed.size() > options_.max_replay) {
      give_up(restore, "more missed events than maxPackets");
      return;
    }
    finish(restore);
    return;
  }
  const size_t room = options_.max_replay - std::min(options_.max_replay, restore->missed.size());
  // From the stream only what this node did not send itself (it started later).
  const uint64_t stream_until = std::min(until, recent_from_ - 1);
  history_.read_async(restore->read_to, stream_until, room,
                      [this, alive = alive_, restore,
                       until = stream_until](transport::JsResult<ClusterHistory::ReadResult> read) {
                        if (!*alive) return;
                        if (!read.ok()) {
                          give_up(restore, read.error == transport::JsError::Rejected
                                               ? "more missed events than maxPackets"
                                               : "the history could not be read");
                          return;
                        }
                        if (read.value.incomplete) {
                          give_up(restore, "missed events no longer in the history");
                          return;
                        }
                        const auto& record = *restore->record;
                        for (const auto& [sequence, event] : read.value.events) {
                          gateway::PacketTarget target;
                          target.all = event.all;
                          target.rooms = event.rooms;
                          target.except_rooms = event.except_rooms;
                          if (!gateway::target_includes(target, record.sid, record.rooms)) continue;
                          if (auto packet = encode_(event, offset_of_sequence(sequence))) {
                            restore->missed.push_back(std::move(packet));
                          }
                        }
                        restore->read_to = until;
                        // Events delivered here while reading are read too, in this same way, until
                        // nothing is left between the read and the consumer.
                        read_missed(restore);
                      });
}

void JetStreamRecoveryStore::finish(std::shared_ptr<Restore> restore) {
  gateway::RestoredSession restored;
  restored.session = kept_session_of(std::move(*restore->record));
  restored.missed = std::move(restore->missed);
  restore->done(std::move(restored));
}

void JetStreamRecoveryStore::give_up(std::shared_ptr<Restore> restore, const char* why) {
  ++counts_.unknown;
  log_with(logger(), spdlog::level::info, {{"socket", restore->record->sid}, {"reason", why}},
           "kept session not restored");
  given_up_.push_back(kept_session_of(std::move(*restore->record)));
  restore->done(std::nullopt);
}

void JetStreamRecoveryStore::drop_if(std::function<bool(const gateway::KeptSession&)> match,
                                     std::function<void(size_t)> done) {
  // Kept records only: a connected socket's record belongs to its node, which disconnects it
  // itself if the application asked for that.
  sessions_.drop_if(
      [match = std::move(match)](const ClusterSessionRecord& record) {
        return record.state == ClusterSessionState::Kept && match(kept_session_of(record));
      },
      [this, alive = alive_, done = std::move(done)](size_t removed) {
        if (!*alive) return;
        dropped_ += removed;
        if (removed > 0) logger()->info("{} kept session(s) dropped cluster-wide", removed);
        if (done) done(removed);
      });
}

void JetStreamRecoveryStore::sweep(
    std::chrono::steady_clock::time_point now,
    const std::function<void(const gateway::KeptSession&)>& expired) {
  auto given_up = std::move(given_up_);
  given_up_.clear();
  for (const auto& session : given_up) {
    ++counts_.expired;
    expired(session);
  }
  // Kept twice as long as sessions, as the stream (see app/main.cpp).
  forget_recent_before(now - 2 * options_.max_disconnection_duration);
  sessions_.refresh(now, options_.refresh_per_sweep);
  sessions_.sweep(wall_ms(), alive_nodes_(),
                  [this, alive = alive_, expired](const ClusterSessionRecord& record, ExpiryCause) {
                    if (!*alive) return;
                    ++expired_by_sweeps_;
                    expired(kept_session_of(record));
                  });
}

gateway::RecoveryCounts JetStreamRecoveryStore::counts() const {
  gateway::RecoveryCounts counts = counts_;
  counts.expired += expired_by_sweeps_;
  counts.dropped += dropped_;
  return counts;
}

}  // namespace steedos::services
