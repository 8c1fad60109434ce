#pragma once
// NATS JetStream over cnats (Debian's libnats 3.4.1, nats-server 2.9 started with `-js`): what a
// cluster-wide recovery store needs and nothing more. Streams (ensure idempotently, state,
// delete), publish returning the stream sequence (blocking, or with a completion posted to the
// caller's io_context), the messages of one subject from a sequence onwards (bounded, in stream
// order), one message by sequence, and key-value buckets with a bucket-wide TTL (2.9 has no
// per-message TTL). docs/jetstream-notes.md says what cnats and the server offer and why each
// call here is the one used.
//
// Errors: every call returns a JsStatus / JsResult with a kind and a readable message; nothing
// throws, and no cnats error crosses the boundary unexplained. JsError::NotEnabled means the
// server has no JetStream (no responder on `$JS.API`: nats-server was started without `-js`);
// the node then says so and falls back to its memory store.
//
// Threading: the blocking calls (everything but publish_async) wait for the server's reply, up
// to JetStreamOptions::request_timeout_ms. Call them from any thread except one that drives the
// connection's reads: not from a cnats callback, and not from the io_context of a connection
// that uses it as cnats' external event loop (NatsTransporter's): that loop would be blocked
// and the reply never read. The connection made by connect() uses cnats' own threads. Calls
// are serialised by the caller (one thread at a time). The io_context must outlive the object.
// After close() (run by the destructor) no completion runs, not even one already posted.
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

typedef struct __natsConnection natsConnection;

namespace steedos::transport {

enum class JsError {
  None,
  NotEnabled,    // the server has no JetStream (nats-server without -js), or not for this account
  NotConnected,  // no connection to a server
  NotFound,      // no such stream, message, bucket or key (or it expired)
  NoStream,      // no stream captures the subject published to
  Timeout,       // no reply within the request or ack timeout
  Busy,          // too many asynchronous publishes awaiting their ack
  Rejected,      // the server refused (a bad or conflicting configuration, a limit)
  Closed,        // close() was called
  Conflict,      // a conditional write or delete: the key's last revision is not the one expected
  Failed,        // anything else (the message says what)
};

const char* to_string(JsError error);

struct JsStatus {
  JsError error = JsError::None;
  std::string message;  // empty when ok

  bool ok() const { return error == JsError::None; }
  explicit operator bool() const { return ok(); }
};

template <typename T>
struct JsResult : JsStatus {
  T value{};
};

enum class JsStorage { File, Memory };

struct JetStreamOptions {
  /// For connect(): one or more server URLs, comma separated.
  std::string url = "nats://127.0.0.1:4222";
  std::string name = "steedos-socket-jetstream";
  int connect_timeout_ms = 2000;
  /// How long a blocking call waits for JetStream's reply (jsOptions.Wait).
  int request_timeout_ms = 5000;
  /// How long publish_async waits for the ack before completing with Timeout.
  int ack_timeout_ms = 5000;
  /// Asynchronous publishes awaiting their ack; past it publish_async answers Busy at once.
  size_t max_pending_acks = 8192;
};

struct JsStreamSpec {
  std::string name;
  std::vector<std::string> subjects;
  /// 0 = kept until a size limit removes them.
  std::chrono::milliseconds max_age{0};
  /// -1 = unlimited. Past it the oldest messages are dropped (DiscardOld).
  int64_t max_bytes = -1;
  /// -1 = the server's limit (max_payload).
  int32_t max_message_size = -1;
  JsStorage storage = JsStorage::File;
  /// Copies on a NATS cluster with JetStream (1 to 5); 1 on a single server. With 1 the stream
  /// lives on one server of a cluster and is unavailable while that server is down.
  int replicas = 1;
  /// How long the server remembers a Nats-Msg-Id (JsPublishOptions::msg_id) to store a message
  /// published again under it only once. 0 = the server's default (2 min, capped by max_age).
  std::chrono::milliseconds duplicate_window{0};
};

/// A JetStream publish's ack.
struct JsPubAck {
  uint64_t sequence = 0;
  /// The stream already held a message with this Nats-Msg-Id within its duplicate window:
  /// nothing was stored and `sequence` is the original's.
  bool duplicate = false;
};

struct JsPublishOptions {
  /// Sent as the Nats-Msg-Id header when not empty (de-duplication by the stream).
  std::string msg_id;
};

struct JsStreamState {
  uint64_t messages = 0;
  uint64_t bytes = 0;  // what the server counts against max_bytes
  uint64_t first_sequence = 0;
  uint64_t last_sequence = 0;
};

struct JsMessage {
  uint64_t sequence = 0;
  std::string subject;
  std::string data;
  int64_t time_ns = 0;  // when the server stored it, since the epoch
};

struct JsReadLimits {
  size_t max_messages = 1000;
  /// Subjects plus payloads. Past the first 16 messages (read by direct gets) the server
  /// counts the rest (the pull's max_bytes), adding its ack subject, about 100 bytes a message:
  /// such a batch may hold fewer messages, never more bytes.
  int64_t max_bytes = 1 << 20;
};

struct JsReadBatch {
  std::vector<JsMessage> messages;  // in stream order
  /// Messages of the subject remain after the last one returned (a limit was reached): read
  /// again from the last sequence + 1.
  bool more = false;
};

struct JsBucketSpec {
  std::string bucket;  // A-Z a-z 0-9 _ -
  /// Every entry expires this long after its last put (the bucket's stream max age). 0 = never.
  std::chrono::milliseconds ttl{0};
  int64_t max_bytes = -1;
  int32_t max_value_size = -1;
  JsStorage storage = JsStorage::File;
  int replicas = 1;  // as JsStreamSpec::replicas
};

/// A live ordered consumer (JetStream::subscribe_ordered). Destroying it (or stop()) deletes
/// the consumer and returns only once no handler runs or will run.
class JsOrderedSubscription {
 public:
  virtual ~JsOrderedSubscription() = default;
  virtual void stop() = 0;
};

/// A key's current value and its revision (the sequence of that value in the bucket's stream).
struct JsKvEntry {
  std::string value;
  uint64_t revision = 0;
};

class JetStream {
 public:
  using PublishDone = std::function<void(JsResult<uint64_t>)>;
  using PublishAckDone = std::function<void(JsResult<JsPubAck>)>;

  /// Opens a connection of its own (cnats' threads, reconnecting forever) and a JetStream
  /// context on it. Does not check that the server has JetStream: probe() does.
  static JsResult<std::unique_ptr<JetStream>> connect(asio::io_context& loop,
                                                      JetStreamOptions options);
  /// Uses the caller's connection, which must stay open until this object is destroyed (see
  /// the threading note above about connections driven by an external event loop).
  static JsResult<std::unique_ptr<JetStream>> attach(asio::io_context& loop,
                                                     natsConnection* connection,
                                                     JetStreamOptions options);

  ~JetStream();
  JetStream(const JetStream&) = delete;
  JetStream& operator=(const JetStream&) = delete;

  /// Ok when the server answers JetStream's account info; NotEnabled when it has no JetStream.
  JsStatus probe();

  /// Creates the stream, or updates it to `spec` when it exists with another configuration
  /// (an identical one is left as is). The storage type of an existing stream cannot change:
  /// Rejected. Returns its state.
  JsResult<JsStreamState> ensure_stream(const JsStreamSpec& spec);
  JsResult<JsStreamState> stream_state(const std::string& stream);
  JsStatus delete_stream(const std::string& stream);

  /// Stores `data` on `subject` and returns its stream sequence. NoStream when no stream
  /// captures the subject.
  JsResult<uint64_t> publish(const std::string& subject, std::string_view data);
  /// The same with options (a message id): the ack says whether it was a duplicate.
  JsResult<JsPubAck> publish(const std::string& subject, std::string_view data,
                             const JsPublishOptions& options);

  /// Sends without waiting; `done` runs on the io_context with the sequence or the error
  /// (Timeout after ack_timeout_ms). When this returns an error `done` is never called.
  JsStatus publish_async(const std::string& subject, std::string_view data, PublishDone done);
  /// The same with options (a message id), completing with the whole ack.
  JsStatus publish_async(const std::string& subject, std::string_view data,
                         const JsPublishOptions& options, PublishAckDone done);
  /// Asynchronous publishes whose ack has not come yet.
  size_t pending_acks() const;

  /// The messages of `subject` (wildcards allowed) with a sequence >= `from`, in stream order,
  /// within `limits`. A message larger than limits.max_bytes alone is returned on its own.
  /// Requests: one direct get per message up to 16, plus one that finds none or one beyond the
  /// limits (an empty batch costs one request); past 16, an ephemeral pull consumer made,
  /// fetched and deleted (three more). The stream must allow direct gets, as those made by
  /// ensure_stream do.
  JsResult<JsReadBatch> read(const std::string& stream, const std::string& subject, uint64_t from,
                             JsReadLimits limits = {});
  /// The message at `sequence`; NotFound when removed (expired, dropped for size) or never
  /// stored.
  JsResult<JsMessage> get(const std::string& stream, uint64_t sequence);

  /// Where an ordered consumer's messages go: cnats' delivery thread of the subscription, one
  /// at a time, in stream order. It may block (flow control then slows the server down).
  using OrderedHandler = std::function<void(JsMessage)>;
  /// An ordered push consumer (cnats' jsSubOptions.Ordered: ephemeral, in memory, flow
  /// control, no acks) of `subject` in `stream` from `start_sequence`. cnats checks each
  /// message's consumer sequence and, on a gap or when two idle heartbeats (`heartbeat`) are
  /// missed (a restarted server forgot the consumer), makes a new consumer from the last
  /// stream sequence handed + 1. Caveat (cnats 3.4.1, js.c jsSub_resetOrderedConsumer): before
  /// the first message that "last" is 0, so a reset then starts over from sequence 1; a
  /// reader must drop what it has seen (ClusterHistory does).
  JsResult<std::unique_ptr<JsOrderedSubscription>> subscribe_ordered(
      const std::string& stream, const std::string& subject, uint64_t start_sequence,
      std::chrono::milliseconds heartbeat, OrderedHandler handler);

  /// Creates the key-value bucket, or updates its TTL and size limit when it exists with
  /// others, and binds it for the kv_* calls.
  JsStatus ensure_bucket(const JsBucketSpec& spec);
  /// Returns the entry's revision. The bucket must have been ensured.
  JsResult<uint64_t> kv_put(const std::string& bucket, const std::string& key,
                            std::string_view value);
  /// NotFound when absent, deleted or expired.
  JsResult<std::string> kv_get(const std::string& bucket, const std::string& key);
  JsStatus kv_delete(const std::string& bucket, const std::string& key);

  // Conditional forms (compare-and-set on the revision), for a single winner when several
  // processes race for one key. Each is one publish to `$KV.<bucket>.<key>` with the header
  // Nats-Expected-Last-Subject-Sequence: the server stores it only if the key's last message
  // (a value or a delete marker) is `last_revision`, else Conflict (JetStream error 10071).
  // cnats 3.4 has kvStore_Update but drops that error code, and no conditional delete.

  /// The value with its revision. NotFound when absent, deleted or expired.
  JsResult<JsKvEntry> kv_entry(const std::string& bucket, const std::string& key);
  /// Stores `value` if the key is still at `last_revision` (> 0); returns the new revision.
  JsResult<uint64_t> kv_update(const std::string& bucket, const std::string& key,
                               std::string_view value, uint64_t last_revision);
  /// Deletes the key (a delete marker, as kv_delete) if it is still at `last_revision` (> 0).
  JsStatus kv_delete_if(const std::string& bucket, const std::string& key, uint64_t last_revision);
  /// The bucket's entries in revision order, from revision `from` on, within `limits` (read()
  /// on its stream: the bucket keeps one message per key). A message's subject is
  /// `$KV.<bucket>.<key>` and its sequence the revision; a deleted key's delete marker has
  /// empty data. For scanning a bucket in bounded steps: go on from the last sequence + 1.
  JsResult<JsReadBatch> kv_scan(const std::string& bucket, uint64_t from, JsReadLimits limits = {});
  JsStatus delete_bucket(const std::string& bucket);

  /// Stops the asynchronous acks (their completions are dropped), unbinds the buckets, frees
  /// the context and closes the connection if it is its own. Idempotent.
  void close();

  struct Impl;

 private:
  explicit JetStream(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace steedos::transport
