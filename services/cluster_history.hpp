#pragma once
// The cluster-wide history of delivered events (issue 13, `jetstream` recovery store): one
// JetStream stream that every gateway node publishes each event it would deliver to its clients
// to, under a cluster-wide event id sent as Nats-Msg-Id. A producer's broadcast reaches every
// node, so several nodes publish copies of one event: the stream's duplicate window stores it
// once. Each node then delivers to its clients only what its own ordered consumer of the stream
// hands it, in stream order, with the stream sequence as the Socket.IO offset: every node
// delivers in one order under the same offsets, and a client can restore on any node.
//
// Wired by app/main.cpp for the `jetstream` recovery store (services/jetstream_recovery_store.hpp):
// SocketService publishes, deliver_from_history delivers.
//
// Duplicate window: a copy of an event published after the window (2 min by default, at most
// the stream's max age) is stored again as a new event, and delivered twice. Copies of one
// broadcast reach the nodes within milliseconds of each other, so only a node that publishes
// long after the others (a stalled process) can hit it.
//
// Threading: start(), read() and stop() block (JetStream requests) and must not run on a
// thread that drives the JetStream connection (see transport/jetstream.hpp); publish() does not
// block. `deliver` and the completions run on the io_context's thread. publish(), stop() and the
// destructor belong to that thread too (or run once the io_context no longer runs): the
// handlers posted there check, on that thread, that the object still wants them. A failed
// start() leaves the object stopped: make a new one to try again.
#include <asio/io_context.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "transport/jetstream.hpp"

namespace steedos::services {

/// One event as it is delivered to a namespace's sockets.
struct HistoryEvent {
  std::string id;         // cluster-wide (event_id_of_*): the Nats-Msg-Id
  std::string name;       // the Socket.IO event name
  std::string args_json;  // the event's arguments, a JSON array text
  bool all = false;       // every socket of the namespace
  std::vector<std::string> rooms;
  std::vector<std::string> except_rooms;

  bool operator==(const HistoryEvent& other) const {
    return id == other.id && name == other.name && args_json == other.args_json &&
           all == other.all && rooms == other.rooms && except_rooms == other.except_rooms;
  }
};

/// `a,b` of the event's `[a,b]`: its arguments as raw JSON texts, comma-separated (what
/// gateway::RawArgs takes as one element); empty for none.
inline std::string_view history_event_args(const HistoryEvent& event) {
  const std::string_view array = event.args_json;
  if (array.size() < 2) return {};
  return array.substr(1, array.size() - 2);
}

/// The stream message of an event: compact JSON,
/// `{"id":"…","name":"…","args":[…],"all":false,"rooms":[…],"except":[…]}`. `args_json` is
/// parsed and written again compactly: an invalid or non-array text gives an error, no message.
std::optional<std::string> encode_history_event(const HistoryEvent& event, std::string* error);
/// The event in a stream message, or nullopt with the reason in `error` (not JSON, nested too
/// deep, a field missing or of the wrong type). Never throws.
std::optional<HistoryEvent> decode_history_event(std::string_view message, std::string* error);

/// The id of an event a service sent to one socket or room by a Moleculer request (a forward):
/// only one node receives it, and its request id is unique.
std::string event_id_of_forward(const std::string& uuid);
/// The id of a broadcast event, the same on every node that receives a copy: a SHA-256 (first
/// 128 bits, hex) of the fields below. Moleculer 0.14 sends each node its own copy of a
/// broadcast with a different ctx id, but all copies share `requestID` (the original context's
/// id) and the sender's node id. Sibling broadcasts emitted within one handler (ctx.broadcast
/// twice) share requestID and parentID too, so the event name, params and meta are hashed as
/// well: only identical broadcasts from one request collapse, and those are the same event.
std::string event_id_of_broadcast(const std::string& sender, const std::string& request_id,
                                  const std::string& event_name, const std::string& params_json,
                                  const std::string& meta_json);

/// The last `capacity` ids seen with a value each (oldest forgotten first). Loop thread.
template <typename Value>
class RecentValues {
 public:
  using Map = std::unordered_map<std::string, Value>;
  explicit RecentValues(size_t capacity) : capacity_(capacity) {}
  void add(const std::string& id, Value value) {
    if (capacity_ == 0 || !values_.emplace(id, std::move(value)).second) return;
    order_.push_back(id);
    if (order_.size() > capacity_) {
      values_.erase(order_.front());
      order_.pop_front();
    }
  }
  typename Map::const_iterator find(const std::string& id) const { return values_.find(id); }
  typename Map::const_iterator end() const { return values_.end(); }

 private:
  size_t capacity_;
  Map values_;
  std::deque<std::string> order_;
};

struct ClusterHistoryOptions {
  std::string stream = "STEEDOS_SOCKET_HISTORY";
  std::string subject = "steedos.socket.history";
  /// The history kept: gateway.connectionStateRecovery.maxDisconnectionDuration.
  std::chrono::milliseconds max_age{120000};
  int64_t max_bytes = int64_t{256} << 20;
  /// How long copies of one event id are recognised. 0 = the server's default (2 min, capped
  /// by max_age); a window longer than max_age is refused by the server.
  std::chrono::milliseconds duplicate_window{0};
  int replicas = 1;
  transport::JsStorage storage = transport::JsStorage::File;
  /// A JetStream client to use (not owned; must outlive this object), else one is connected
  /// to `url` (comma-separated server URLs). The reader of read_async always connects to
  /// `url`, a connection of its own.
  transport::JetStream* jetstream = nullptr;
  std::string url = "nats://127.0.0.1:4222";
  int request_timeout_ms = 5000;
  /// The ordered consumer's idle heartbeat: a consumer lost with a restarted server is noticed
  /// (and made again) after two to four of them. 0: cnats' default, 5 s.
  std::chrono::milliseconds heartbeat{1000};
  /// Encoded events larger than this are not published (Rejected).
  size_t max_event_bytes = 1 << 20;
  /// Consumed messages posted to the io_context and not yet delivered; past it cnats' delivery
  /// thread waits (the consumer's flow control then slows the server down).
  size_t max_queued_deliveries = 10000;
  /// Restores waiting for the reader thread (read_async).
  size_t max_queued_reads = 1024;
};

/// Since start.
struct ClusterHistoryCounts {
  uint64_t published = 0;          // publishes the stream stored as new events
  uint64_t published_copies = 0;   // publishes the stream recognised as a known event id
  uint64_t publish_failed = 0;     // publishes refused or failed (the event is not in history)
  uint64_t delivered = 0;          // events handed to `deliver`
  uint64_t malformed = 0;          // messages on the subject that are not events (skipped)
  uint64_t redelivered = 0;        // messages at or below last_delivered (dropped)
  uint64_t skipped_sequences = 0;  // sequences jumped over (removed by the stream's limits)
};

class ClusterHistory {
 public:
  using Deliver = std::function<void(uint64_t sequence, const HistoryEvent& event)>;
  using Published = std::function<void(transport::JsResult<transport::JsPubAck>)>;
  /// A restore's read: the events in (after, until], in order.
  struct ReadResult {
    std::vector<std::pair<uint64_t, HistoryEvent>> events;
    /// `after` + 1 was no longer held (expired or dropped for size): events are missing.
    bool incomplete = false;
    size_t malformed = 0;  // messages in the range that are not events (skipped)
  };

  ClusterHistory(asio::io_context& loop, ClusterHistoryOptions options);
  ~ClusterHistory();
  ClusterHistory(const ClusterHistory&) = delete;
  ClusterHistory& operator=(const ClusterHistory&) = delete;

  /// Ensures the stream, then consumes it from its last sequence + 1 (what is already there
  /// was delivered before this node started): `deliver` gets each later event once, in stream
  /// order, on the io_context, also across a restart of nats-server.
  transport::JsStatus start(Deliver deliver);

  /// Publishes `event` under its id; `done` (optional) runs on the io_context with the ack.
  /// An error returned here means `done` is never called.
  transport::JsStatus publish(const HistoryEvent& event, Published done = {});

  /// The events with a sequence in (after, until], at most `max_events` (a restore's bound):
  /// beyond, Rejected, since a partial replay would be a wrong one. Blocking, on the
  /// publishing connection: not from the loop thread of a busy node (read_async is for that).
  transport::JsResult<ReadResult> read(uint64_t after, uint64_t until, size_t max_events = 10000);
  using ReadDone = std::function<void(transport::JsResult<ReadResult>)>;
  /// The same on a reader thread with a connection of its own (to options.url, made by
  /// start()), so that restores never block the loop; `done` runs on the io_context. At most
  /// max_queued_reads wait: past them `done` gets Busy (still on the io_context, later).
  void read_async(uint64_t after, uint64_t until, size_t max_events, ReadDone done);

  /// The sequence of the last message consumed (an event delivered or a malformed message
  /// skipped): the offset a socket has seen once its events are sent. Loop thread.
  uint64_t last_delivered() const { return last_delivered_; }
  ClusterHistoryCounts counts() const { return counts_; }

  /// Stops consuming; no `deliver` runs after it. Idempotent.
  void stop();

 private:
  struct Shared;
  class Reader;
  void on_consumed(uint64_t sequence, std::optional<HistoryEvent> event, const std::string& error);

  asio::io_context& loop_;
  ClusterHistoryOptions options_;
  std::unique_ptr<transport::JetStream> owned_;
  transport::JetStream* js_ = nullptr;
  std::shared_ptr<Shared> shared_;
  std::unique_ptr<transport::JsOrderedSubscription> subscription_;
  std::unique_ptr<Reader> reader_;
  Deliver deliver_;
  uint64_t last_delivered_ = 0;
  ClusterHistoryCounts counts_;
};

}  // namespace steedos::services
