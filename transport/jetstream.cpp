#include "transport/jetstream.hpp"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "common/log.hpp"
#include "transport/nats_status.hpp"
#include "transport/url_redaction.hpp"

namespace steedos::transport {

namespace {

/// How long close() waits for cnats to confirm that the ack subscription delivers no more.
constexpr auto kCloseWait = std::chrono::seconds(5);

const std::shared_ptr<spdlog::logger>& logger() {
  static const auto instance = component_logger("jetstream");
  return instance;
}

/// read() takes up to this many messages by direct gets before it makes a consumer.
constexpr size_t kDirectReads = 16;

constexpr jsErrCode kNoCode = static_cast<jsErrCode>(0);

constexpr const char* kNotEnabled =
    "JetStream is not enabled on the NATS server: nothing answers on $JS.API (start nats-server "
    "with -js, or jetstream {} in its configuration)";

int64_t to_ns(std::chrono::milliseconds ms) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(ms).count();
}

jsStorageType storage_of(JsStorage storage) {
  return storage == JsStorage::Memory ? js_MemoryStorage : js_FileStorage;
}

/// One cnats failure as a JsStatus. `no_responders` says what NATS_NO_RESPONDERS means for the
/// call: no JetStream at all for the API calls, no stream on the subject for a publish.
/// Call on the thread of the failing call, right after it (cnats' error text is thread-local).
JsStatus failure(natsStatus status, jsErrCode code, const std::string& what,
                 JsError no_responders = JsError::NotEnabled) {
  JsStatus out;
  if (status == NATS_NO_RESPONDERS) {
    out.error = no_responders;
    out.message = what + ": " +
                  (no_responders == JsError::NotEnabled ? std::string(kNotEnabled)
                                                        : "no stream captures this subject");
    return out;
  }
  if (code == JSNotEnabledErr || code == JSNotEnabledForAccountErr) {
    out.error = JsError::NotEnabled;
  } else if (code == JSStreamNotFoundErr || code == JSNoMessageFoundErr ||
             code == JSConsumerNotFoundErr || status == NATS_NOT_FOUND) {
    out.error = JsError::NotFound;
  } else if (status == NATS_TIMEOUT) {
    out.error = JsError::Timeout;
  } else if (status == NATS_CONNECTION_CLOSED || status == NATS_CONNECTION_DISCONNECTED ||
             status == NATS_NO_SERVER) {
    out.error = JsError::NotConnected;
  } else if (code != 0) {
    out.error = JsError::Rejected;
  } else {
    out.error = JsError::Failed;
  }
  out.message = what + ": " + status_text(status);
  if (code != 0) out.message += " (JetStream error " + std::to_string(code) + ")";
  return out;
}

template <typename T>
JsResult<T> failed(JsStatus status) {
  JsResult<T> out;
  static_cast<JsStatus&>(out) = std::move(status);
  return out;
}

template <typename T>
JsResult<T> succeeded(T value) {
  JsResult<T> out;
  out.value = std::move(value);
  return out;
}

JsStatus error(JsError kind, std::string message) {
  return JsStatus{kind, std::move(message)};
}

JsStreamState state_of(const jsStreamInfo* info) {
  JsStreamState state;
  state.messages = info->State.Msgs;
  state.bytes = info->State.Bytes;
  state.first_sequence = info->State.FirstSeq;
  state.last_sequence = info->State.LastSeq;
  return state;
}

/// What KV bucket names may hold (cnats' and the server's rule).
bool valid_bucket_name(const std::string& name) {
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

bool fits_int(std::string_view data) {
  return data.size() <= static_cast<size_t>(INT_MAX);
}

/// A core publish with a reply subject and the Nats-Msg-Id header (a natsMsg, since
/// natsConnection_PublishRequest sends no headers).
natsStatus publish_with_id(natsConnection* connection, const std::string& subject,
                           const std::string& reply, std::string_view data,
                           const std::string& msg_id) {
  natsMsg* raw = nullptr;
  natsStatus s = natsMsg_Create(&raw, subject.c_str(), reply.c_str(), data.data(),
                                static_cast<int>(data.size()));
  if (s != NATS_OK) return s;
  s = natsMsgHeader_Set(raw, "Nats-Msg-Id", msg_id.c_str());
  if (s == NATS_OK) s = natsConnection_PublishMsg(connection, raw);
  natsMsg_Destroy(raw);
  return s;
}

// RAII for the cnats objects a call creates and frees before it returns.
struct StreamInfoFree {
  void operator()(jsStreamInfo* p) const { jsStreamInfo_Destroy(p); }
};
using StreamInfoPtr = std::unique_ptr<jsStreamInfo, StreamInfoFree>;
struct MsgFree {
  void operator()(natsMsg* p) const { natsMsg_Destroy(p); }
};
using MsgPtr = std::unique_ptr<natsMsg, MsgFree>;
struct MetaFree {
  void operator()(jsMsgMetaData* p) const { jsMsgMetaData_Destroy(p); }
};
using MetaPtr = std::unique_ptr<jsMsgMetaData, MetaFree>;
struct KvEntryFree {
  void operator()(kvEntry* p) const { kvEntry_Destroy(p); }
};
using KvEntryPtr = std::unique_ptr<kvEntry, KvEntryFree>;
struct KvStoreFree {
  void operator()(kvStore* p) const { kvStore_Destroy(p); }
};
using KvStorePtr = std::unique_ptr<kvStore, KvStoreFree>;
struct SubFree {
  void operator()(natsSubscription* p) const { natsSubscription_Destroy(p); }
};
using SubPtr = std::unique_ptr<natsSubscription, SubFree>;
struct MsgListFree {
  void operator()(natsMsgList* p) const { natsMsgList_Destroy(p); }
};

/// The asynchronous publishes awaiting their ack, shared with cnats' delivery thread of the
/// ack subscription (which holds its own reference until the subscription completes) and with
/// the handlers posted to the loop.
struct AckState : std::enable_shared_from_this<AckState> {
  AckState(asio::io_context& l, std::chrono::milliseconds timeout)
      : loop(l), ack_timeout(timeout) {}

  struct Pending {
    JetStream::PublishAckDone done;
    std::chrono::steady_clock::time_point deadline;
  };

  asio::io_context& loop;
  const std::chrono::milliseconds ack_timeout;
  std::atomic<bool> open{true};

  std::mutex mu;  // guards everything below
  std::map<uint64_t, Pending> pending;
  uint64_t next_id = 1;
  bool completed = false;  // the ack subscription delivers nothing more
  std::condition_variable completed_cv;

  /// Loop thread only. Reset by close(), so that no timer outlives the io_context.
  std::unique_ptr<asio::steady_timer> sweep_timer;
  bool sweep_armed = false;

  /// Runs `done(result)` on the loop unless closed by then. Any thread.
  void complete(JetStream::PublishAckDone done, JsResult<JsPubAck> result) noexcept {
    try {
      asio::post(loop, [self = shared_from_this(), done = std::move(done),
                        result = std::move(result)]() mutable {
        if (self->open.load()) done(std::move(result));
      });
    } catch (...) {
      // Only bad_alloc can come here; the completion is lost, never thrown into cnats.
    }
  }

  /// Loop thread: keeps one timer running while acks are pending; it fails the overdue ones.
  void arm_sweep() {
    if (!open.load() || !sweep_timer || sweep_armed) return;
    sweep_armed = true;
    sweep_timer->expires_after(std::max(ack_timeout / 4, std::chrono::milliseconds(10)));
    sweep_timer->async_wait([self = shared_from_this()](const std::error_code& ec) {
      self->sweep_armed = false;
      if (ec || !self->open.load()) return;
      self->sweep();
    });
  }

  void sweep() {
    std::vector<Pending> overdue;
    bool any_left = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      const auto now = std::chrono::steady_clock::now();
      for (auto it = pending.begin(); it != pending.end();) {
        if (it->second.deadline <= now) {
          overdue.push_back(std::move(it->second));
          it = pending.erase(it);
        } else {
          ++it;
        }
      }
      any_left = !pending.empty();
    }
    for (auto& p : overdue) {
      if (!open.load()) return;
      auto result = failed<JsPubAck>(
          error(JsError::Timeout,
                "publish: no ack within " + std::to_string(ack_timeout.count()) + " ms"));
      p.done(std::move(result));
    }
    if (any_left) arm_sweep();
  }

  /// cnats' delivery thread of the ack subscription: the server's PubAck (or a no-responders
  /// status) for the publish whose id ends the reply subject.
  static void on_ack(natsConnection*, natsSubscription*, natsMsg* raw, void* closure) noexcept {
    MsgPtr msg(raw);
    auto* holder = static_cast<std::shared_ptr<AckState>*>(closure);
    (*holder)->handle_ack(msg.get());
  }

  void handle_ack(natsMsg* msg) noexcept {
    const char* subject = natsMsg_GetSubject(msg);
    const char* dot = subject != nullptr ? std::strrchr(subject, '.') : nullptr;
    if (dot == nullptr) return;
    const uint64_t id = std::strtoull(dot + 1, nullptr, 10);
    Pending entry;
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = pending.find(id);
      if (it == pending.end()) return;  // timed out already
      entry = std::move(it->second);
      pending.erase(it);
    }
    complete(std::move(entry.done), parse_ack(msg));
  }

  /// {"stream":"S","seq":7} ({..., "duplicate":true} for a known Nats-Msg-Id) or
  /// {"error":{"code":503,"err_code":10077,"description":"…"}}.
  static JsResult<JsPubAck> parse_ack(natsMsg* msg) {
    if (natsMsg_IsNoResponders(msg)) {
      return failed<JsPubAck>(error(JsError::NoStream,
                                    "publish: no stream captures this subject (or JetStream is "
                                    "not enabled on the server)"));
    }
    const std::string_view body(natsMsg_GetData(msg),
                                static_cast<size_t>(natsMsg_GetDataLength(msg)));
    const auto json = nlohmann::json::parse(body, nullptr, false);
    if (json.is_object() && json.contains("error") && json["error"].is_object()) {
      const auto& e = json["error"];
      const int code = e.value("err_code", 0);
      return failed<JsPubAck>(error(code == JSNotEnabledErr || code == JSNotEnabledForAccountErr
                                        ? JsError::NotEnabled
                                        : JsError::Rejected,
                                    "publish: " + e.value("description", std::string("rejected")) +
                                        " (JetStream error " + std::to_string(code) + ")"));
    }
    if (json.is_object() && json.contains("seq") && json["seq"].is_number_unsigned()) {
      JsPubAck ack;
      ack.sequence = json["seq"].get<uint64_t>();
      const auto duplicate = json.find("duplicate");
      ack.duplicate = duplicate != json.end() && duplicate->is_boolean() && duplicate->get<bool>();
      return succeeded<JsPubAck>(ack);
    }
    return failed<JsPubAck>(
        error(JsError::Failed, "publish: unreadable ack: " + std::string(body.substr(0, 200))));
  }

  /// Once cnats is done with the subscription: drops its reference (possibly the last).
  static void on_subscription_complete(void* closure) noexcept {
    auto* holder = static_cast<std::shared_ptr<AckState>*>(closure);
    std::shared_ptr<AckState> self = std::move(*holder);
    delete holder;
    {
      std::lock_guard<std::mutex> lock(self->mu);
      self->completed = true;
    }
    self->completed_cv.notify_all();
  }
};

}  // namespace

const char* to_string(JsError e) {
  switch (e) {
    case JsError::None:
      return "none";
    case JsError::NotEnabled:
      return "not-enabled";
    case JsError::NotConnected:
      return "not-connected";
    case JsError::NotFound:
      return "not-found";
    case JsError::NoStream:
      return "no-stream";
    case JsError::Timeout:
      return "timeout";
    case JsError::Busy:
      return "busy";
    case JsError::Rejected:
      return "rejected";
    case JsError::Closed:
      return "closed";
    case JsError::Conflict:
      return "conflict";
    case JsError::Failed:
      return "failed";
  }
  return "unknown";
}

struct JetStream::Impl {
  Impl(asio::io_context& l, JetStreamOptions o) : loop(l), options(std::move(o)) {}

  asio::io_context& loop;
  JetStreamOptions options;
  natsConnection* connection = nullptr;
  bool owns_connection = false;
  jsCtx* js = nullptr;
  jsOptions js_options{};
  bool closed = false;

  // Asynchronous publishes: replies come to `<inbox>.<id>` on one subscription.
  std::shared_ptr<AckState> acks;
  natsSubscription* ack_subscription = nullptr;
  std::string ack_prefix;

  std::map<std::string, KvStorePtr> buckets;

  JsStatus open_context() {
    jsOptions_Init(&js_options);
    js_options.Wait = options.request_timeout_ms;
    const natsStatus s = natsConnection_JetStream(&js, connection, &js_options);
    if (s != NATS_OK) return failure(s, kNoCode, "cannot create the JetStream context");
    acks = std::make_shared<AckState>(loop, std::chrono::milliseconds(options.ack_timeout_ms));
    acks->sweep_timer = std::make_unique<asio::steady_timer>(loop);
    return {};
  }

  /// The ack subscription, made at the first publish_async.
  JsStatus ensure_ack_subscription() {
    if (ack_subscription != nullptr) return {};
    natsInbox* inbox = nullptr;
    natsStatus s = natsInbox_Create(&inbox);
    if (s != NATS_OK) return failure(s, kNoCode, "cannot create the ack inbox");
    ack_prefix = std::string(inbox) + ".";
    natsInbox_Destroy(inbox);
    auto* holder = new std::shared_ptr<AckState>(acks);
    s = natsConnection_Subscribe(&ack_subscription, connection, (ack_prefix + "*").c_str(),
                                 &AckState::on_ack, holder);
    if (s == NATS_OK) {
      s = natsSubscription_SetOnCompleteCB(ack_subscription, &AckState::on_subscription_complete,
                                           holder);
    }
    if (s != NATS_OK) {
      JsStatus out = failure(s, kNoCode, "cannot subscribe to the ack inbox");
      if (ack_subscription != nullptr) {
        // Not delivering yet (nothing was published to it): safe to free now.
        natsSubscription_Unsubscribe(ack_subscription);
        natsSubscription_Destroy(ack_subscription);
        ack_subscription = nullptr;
      }
      delete holder;
      return out;
    }
    // Acks are bounded by max_pending_acks; cnats' own limit must not drop one first.
    natsSubscription_SetPendingLimits(ack_subscription,
                                      static_cast<int>(options.max_pending_acks) + 1024, -1);
    return {};
  }

  /// The first message of `subject` at or after `sequence`, if any (a direct get).
  JsResult<std::optional<JsMessage>> direct_next(const std::string& stream,
                                                 const std::string& subject, uint64_t sequence,
                                                 const std::string& what) {
    using Out = std::optional<JsMessage>;
    jsDirectGetMsgOptions direct;
    jsDirectGetMsgOptions_Init(&direct);
    direct.Sequence = sequence;
    direct.NextBySubject = subject.c_str();
    natsMsg* raw = nullptr;
    const natsStatus s = js_DirectGetMsg(&raw, js, stream.c_str(), &js_options, &direct);
    MsgPtr msg(raw);
    if (s == NATS_NOT_FOUND) return succeeded<Out>(std::nullopt);
    if (s == NATS_NO_RESPONDERS) {
      return failed<Out>(error(JsError::NotEnabled,
                               what + ": no answer to a direct get (a stream not made by "
                                      "ensure_stream, without allow_direct, or no JetStream)"));
    }
    if (s != NATS_OK) return failed<Out>(failure(s, kNoCode, what));
    JsMessage m;
    m.sequence = natsMsg_GetSequence(msg.get());
    m.time_ns = natsMsg_GetTime(msg.get());
    m.subject = natsMsg_GetSubject(msg.get());
    m.data.assign(natsMsg_GetData(msg.get()),
                  static_cast<size_t>(natsMsg_GetDataLength(msg.get())));
    return succeeded<Out>(std::move(m));
  }

  kvStore* bucket(const std::string& name) {
    auto it = buckets.find(name);
    return it == buckets.end() ? nullptr : it->second.get();
  }

  void close() {
    if (closed) return;
    closed = true;
    if (acks) {
      acks->open = false;
      acks->sweep_timer.reset();
      {
        std::lock_guard<std::mutex> lock(acks->mu);
        if (!acks->pending.empty()) {
          logger()->warn("closing with {} asynchronous publishes unacknowledged",
                         acks->pending.size());
        }
        acks->pending.clear();
      }
    }
    if (ack_subscription != nullptr) {
      natsSubscription_Unsubscribe(ack_subscription);
      std::unique_lock<std::mutex> lock(acks->mu);
      // The delivery thread may be inside on_ack: wait until cnats says it is done, so that
      // nothing of ours runs after close() (the holder keeps AckState alive in any case).
      if (!acks->completed_cv.wait_for(lock, kCloseWait, [this] { return acks->completed; })) {
        logger()->error("the JetStream ack subscription did not complete within {} s",
                        kCloseWait.count());
      }
      lock.unlock();
      natsSubscription_Destroy(ack_subscription);
      ack_subscription = nullptr;
    }
    buckets.clear();
    if (js != nullptr) jsCtx_Destroy(js);
    js = nullptr;
    if (owns_connection && connection != nullptr) {
      natsConnection_Close(connection);
      natsConnection_Destroy(connection);
    }
    connection = nullptr;
  }
};

JetStream::JetStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

JetStream::~JetStream() {
  close();
}

void JetStream::close() {
  impl_->close();
}

JsResult<std::unique_ptr<JetStream>> JetStream::connect(asio::io_context& loop,
                                                        JetStreamOptions options) {
  using Out = std::unique_ptr<JetStream>;
  const std::vector<std::string> urls = split_urls(options.url);
  if (urls.empty()) return failed<Out>(error(JsError::Failed, "no NATS server URL"));
  std::vector<const char*> servers;
  for (const auto& u : urls) servers.push_back(u.c_str());

  natsOptions* raw_options = nullptr;
  natsStatus s = natsOptions_Create(&raw_options);
  if (s != NATS_OK) return failed<Out>(failure(s, kNoCode, "cannot create NATS options"));
  std::unique_ptr<natsOptions, void (*)(natsOptions*)> nats_options(raw_options,
                                                                    &natsOptions_Destroy);
  s = natsOptions_SetServers(raw_options, servers.data(), static_cast<int>(servers.size()));
  // The transporter's TLS rule: a tls:// URL connects only over TLS.
  if (s == NATS_OK) s = require_tls_if_asked(raw_options, urls);
  if (s == NATS_OK) s = natsOptions_SetName(raw_options, options.name.c_str());
  if (s == NATS_OK) s = natsOptions_SetTimeout(raw_options, options.connect_timeout_ms);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(raw_options, -1);
  if (s != NATS_OK) return failed<Out>(failure(s, kNoCode, "invalid NATS option"));

  auto impl = std::make_unique<Impl>(loop, std::move(options));
  s = natsConnection_Connect(&impl->connection, raw_options);
  if (s != NATS_OK) {
    return failed<Out>(
        failure(s, kNoCode, "cannot connect to " + redact_credentials(impl->options.url)));
  }
  impl->owns_connection = true;
  JsStatus st = impl->open_context();
  std::unique_ptr<JetStream> out(new JetStream(std::move(impl)));
  if (!st) return failed<Out>(std::move(st));  // out's destructor closes the connection
  return succeeded<Out>(std::move(out));
}

JsResult<std::unique_ptr<JetStream>> JetStream::attach(asio::io_context& loop,
                                                       natsConnection* connection,
                                                       JetStreamOptions options) {
  using Out = std::unique_ptr<JetStream>;
  if (connection == nullptr) return failed<Out>(error(JsError::NotConnected, "no connection"));
  auto impl = std::make_unique<Impl>(loop, std::move(options));
  impl->connection = connection;
  JsStatus st = impl->open_context();
  std::unique_ptr<JetStream> out(new JetStream(std::move(impl)));
  if (!st) return failed<Out>(std::move(st));
  return succeeded<Out>(std::move(out));
}

JsStatus JetStream::probe() {
  if (impl_->closed) return error(JsError::Closed, "the JetStream client is closed");
  jsAccountInfo* info = nullptr;
  jsErrCode code = kNoCode;
  const natsStatus s = js_GetAccountInfo(&info, impl_->js, nullptr, &code);
  if (s != NATS_OK) return failure(s, code, "JetStream account info");
  jsAccountInfo_Destroy(info);
  return {};
}

JsResult<JsStreamState> JetStream::ensure_stream(const JsStreamSpec& spec) {
  using Out = JsStreamState;
  if (impl_->closed) return failed<Out>(error(JsError::Closed, "the JetStream client is closed"));
  if (spec.name.empty() || spec.subjects.empty()) {
    return failed<Out>(error(JsError::Failed, "a stream needs a name and subjects"));
  }
  std::vector<const char*> subjects;
  for (const auto& subject : spec.subjects) subjects.push_back(subject.c_str());
  jsStreamConfig config;
  jsStreamConfig_Init(&config);
  config.Name = spec.name.c_str();
  config.Subjects = subjects.data();
  config.SubjectsLen = static_cast<int>(subjects.size());
  config.MaxAge = to_ns(spec.max_age);
  config.MaxBytes = spec.max_bytes;
  config.MaxMsgSize = spec.max_message_size;
  config.Storage = storage_of(spec.storage);
  config.Replicas = spec.replicas;
  config.Discard = js_DiscardOld;
  config.AllowDirect = true;  // 2.9: any replica answers a direct get
  config.Duplicates = to_ns(spec.duplicate_window);

  const std::string what = "stream " + spec.name;
  jsStreamInfo* raw = nullptr;
  jsErrCode code = kNoCode;
  natsStatus s = js_AddStream(&raw, impl_->js, &config, nullptr, &code);
  StreamInfoPtr info(raw);
  if (s != NATS_OK && code == JSStreamNameExistErr) {
    // It exists with another configuration: bring it to this one. An identical configuration
    // is accepted by js_AddStream as is (the server's create is idempotent).
    raw = nullptr;
    code = kNoCode;
    s = js_UpdateStream(&raw, impl_->js, &config, nullptr, &code);
    info.reset(raw);
    if (s == NATS_OK) logger()->info("stream {} updated to its new limits", spec.name);
  }
  if (s != NATS_OK) return failed<Out>(failure(s, code, what));
  return succeeded(state_of(info.get()));
}

JsResult<JsStreamState> JetStream::stream_state(const std::string& stream) {
  using Out = JsStreamState;
  if (impl_->closed) return failed<Out>(error(JsError::Closed, "the JetStream client is closed"));
  jsStreamInfo* raw = nullptr;
  jsErrCode code = kNoCode;
  const natsStatus s = js_GetStreamInfo(&raw, impl_->js, stream.c_str(), nullptr, &code);
  StreamInfoPtr info(raw);
  if (s != NATS_OK) return failed<Out>(failure(s, code, "stream " + stream));
  return succeeded(state_of(info.get()));
}

JsStatus JetStream::delete_stream(const std::string& stream) {
  if (impl_->closed) return error(JsError::Closed, "the JetStream client is closed");
  jsErrCode code = kNoCode;
  const natsStatus s = js_DeleteStream(impl_->js, stream.c_str(), nullptr, &code);
  if (s != NATS_OK) return failure(s, code, "delete stream " + stream);
  return {};
}

namespace {

/// A JsResult<JsPubAck> as the sequence alone (the calls without options).
JsResult<uint64_t> sequence_of(JsResult<JsPubAck> ack) {
  JsResult<uint64_t> out;
  static_cast<JsStatus&>(out) = std::move(static_cast<JsStatus&>(ack));
  out.value = ack.value.sequence;
  return out;
}

}  // namespace

JsResult<uint64_t> JetStream::publish(const std::string& subject, std::string_view data) {
  return sequence_of(publish(subject, data, JsPublishOptions{}));
}

JsResult<JsPubAck> JetStream::publish(const std::string& subject, std::string_view data,
                                      const JsPublishOptions& options) {
  using Out = JsPubAck;
  if (impl_->closed) return failed<Out>(error(JsError::Closed, "the JetStream client is closed"));
  if (!fits_int(data)) return failed<Out>(error(JsError::Rejected, "payload too large"));
  jsPubOptions pub_options;
  jsPubOptions_Init(&pub_options);
  if (!options.msg_id.empty()) pub_options.MsgId = options.msg_id.c_str();
  jsPubAck* ack = nullptr;
  jsErrCode code = kNoCode;
  const natsStatus s = js_Publish(&ack, impl_->js, subject.c_str(), data.data(),
                                  static_cast<int>(data.size()), &pub_options, &code);
  if (s != NATS_OK) {
    return failed<Out>(failure(s, code, "publish to " + subject, JsError::NoStream));
  }
  JsPubAck out;
  out.sequence = ack->Sequence;
  out.duplicate = ack->Duplicate;
  jsPubAck_Destroy(ack);
  return succeeded(out);
}

JsStatus JetStream::publish_async(const std::string& subject, std::string_view data,
                                  PublishDone done) {
  return publish_async(
      subject, data, JsPublishOptions{},
      [done = std::move(done)](JsResult<JsPubAck> ack) { done(sequence_of(std::move(ack))); });
}

JsStatus JetStream::publish_async(const std::string& subject, std::string_view data,
                                  const JsPublishOptions& options, PublishAckDone done) {
  Impl& im = *impl_;
  if (im.closed) return error(JsError::Closed, "the JetStream client is closed");
  if (!fits_int(data)) return error(JsError::Rejected, "payload too large");
  if (JsStatus st = im.ensure_ack_subscription(); !st) return st;

  AckState& acks = *im.acks;
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> lock(acks.mu);
    if (acks.pending.size() >= im.options.max_pending_acks) {
      return error(JsError::Busy, "publish: " + std::to_string(acks.pending.size()) +
                                      " publishes already await their ack");
    }
    id = acks.next_id++;
    // Registered before the publish: the ack can arrive before natsConnection_PublishRequest
    // returns.
    acks.pending.emplace(id, AckState::Pending{std::move(done), std::chrono::steady_clock::now() +
                                                                    acks.ack_timeout});
  }
  const std::string reply = im.ack_prefix + std::to_string(id);
  const natsStatus s =
      options.msg_id.empty()
          ? natsConnection_PublishRequest(im.connection, subject.c_str(), reply.c_str(),
                                          data.data(), static_cast<int>(data.size()))
          : publish_with_id(im.connection, subject, reply, data, options.msg_id);
  if (s != NATS_OK) {
    JsStatus out = failure(s, kNoCode, "publish to " + subject);
    std::lock_guard<std::mutex> lock(acks.mu);
    acks.pending.erase(id);
    return out;
  }
  try {
    asio::post(im.loop, [state = im.acks] { state->arm_sweep(); });
  } catch (...) {
    // bad_alloc: the ack still completes it, only a lost ack would not time out.
  }
  return {};
}

size_t JetStream::pending_acks() const {
  if (!impl_->acks) return 0;
  std::lock_guard<std::mutex> lock(impl_->acks->mu);
  return impl_->acks->pending.size();
}

JsResult<JsReadBatch> JetStream::read(const std::string& stream, const std::string& subject,
                                      uint64_t from, JsReadLimits limits) {
  using Out = JsReadBatch;
  Impl& im = *impl_;
  if (im.closed) return failed<Out>(error(JsError::Closed, "the JetStream client is closed"));
  if (limits.max_messages == 0 || limits.max_bytes <= 0) return succeeded(JsReadBatch{});
  const std::string what = "read " + subject + " from " + std::to_string(from) + " in " + stream;

  // First message by message with direct gets (one request each, no consumer): a client that
  // missed nothing costs one request, one that missed a few as many plus one. Past
  // kDirectReads an ephemeral consumer takes over, whose cost does not grow per message.
  // Besides, nats-server 2.9 answers a no_wait pull at once with "404 No Messages" only when
  // it has no expiry, and cnats waits for an answer only when it has one: with an expiry and
  // nothing pending the server would hold the fetch until it expires. The consumer is made
  // only once a direct get has seen that there is something to fetch.
  JsReadBatch batch;
  int64_t bytes = 0;
  uint64_t next = std::max<uint64_t>(from, 1);
  for (size_t i = 0;; ++i) {
    auto found = im.direct_next(stream, subject, next, what);
    if (!found.ok()) return failed<Out>(std::move(found));
    if (!found.value) return succeeded(std::move(batch));
    JsMessage& m = *found.value;
    const auto size = static_cast<int64_t>(m.subject.size() + m.data.size());
    if (batch.messages.size() == limits.max_messages ||
        (!batch.messages.empty() && bytes + size > limits.max_bytes)) {
      batch.more = true;
      return succeeded(std::move(batch));
    }
    if (i == kDirectReads) break;  // many: the consumer reads from m on
    bytes += size;
    next = m.sequence + 1;
    batch.messages.push_back(std::move(m));
  }
  limits.max_messages -= batch.messages.size();
  limits.max_bytes -= bytes;
  const uint64_t start = next;

  // Then an ephemeral pull consumer filtered on the subject, starting there, without acks and
  // kept in memory: one request creates it, one no_wait fetch brings what there is (ended by
  // the server's 408 at the end of the stream), the unsubscribe deletes it. The server also
  // removes it by itself after InactiveThreshold should this process die first.
  jsSubOptions sub_options;
  jsSubOptions_Init(&sub_options);
  sub_options.Stream = stream.c_str();
  sub_options.Config.AckPolicy = js_AckNone;
  sub_options.Config.MemoryStorage = true;
  sub_options.Config.InactiveThreshold = to_ns(std::chrono::milliseconds(30000));
  sub_options.Config.DeliverPolicy = js_DeliverByStartSequence;
  sub_options.Config.OptStartSeq = start;
  natsSubscription* raw_sub = nullptr;
  jsErrCode code = kNoCode;
  natsStatus s = js_PullSubscribe(&raw_sub, im.js, subject.c_str(), nullptr, &im.js_options,
                                  &sub_options, &code);
  if (s != NATS_OK) return failed<Out>(failure(s, code, what));
  SubPtr sub(raw_sub);

  const int64_t wait_ns = to_ns(std::chrono::milliseconds(im.options.request_timeout_ms));
  auto fetch = [&](int batch, int64_t max_bytes, natsMsgList* list) {
    jsFetchRequest request;
    jsFetchRequest_Init(&request);
    request.Batch = batch;
    request.MaxBytes = max_bytes;
    request.NoWait = true;
    request.Expires = wait_ns;
    return natsSubscription_FetchRequest(list, sub.get(), &request);
  };

  natsMsgList list{};
  const int count = static_cast<int>(std::min<size_t>(limits.max_messages, INT_MAX));
  s = fetch(count, limits.max_bytes, &list);
  if (s == NATS_ERR && list.Count == 0) {
    // A first message larger than max_bytes alone: the server answers 409 "Message Size
    // Exceeds MaxBytes". Take that one message on its own rather than never progressing.
    s = fetch(1, 0, &list);
  }
  std::unique_ptr<natsMsgList, MsgListFree> owned_list(&list);
  JsResult<JsReadBatch> out;
  out.value = std::move(batch);
  // NOT_FOUND or TIMEOUT with nothing: what the direct get saw expired meanwhile.
  if (s != NATS_OK && s != NATS_NOT_FOUND && !(s == NATS_TIMEOUT && list.Count == 0)) {
    out = failed<Out>(failure(s, kNoCode, what));
  }
  uint64_t remaining = 0;
  for (int i = 0; i < list.Count && out.ok(); ++i) {
    natsMsg* msg = list.Msgs[i];
    jsMsgMetaData* raw_meta = nullptr;
    if (natsMsg_GetMetaData(&raw_meta, msg) != NATS_OK) {
      out = failed<Out>(error(JsError::Failed, what + ": a message without JetStream metadata"));
      break;
    }
    MetaPtr meta(raw_meta);
    JsMessage m;
    m.sequence = meta->Sequence.Stream;
    m.time_ns = meta->Timestamp;
    m.subject = natsMsg_GetSubject(msg);
    m.data.assign(natsMsg_GetData(msg), static_cast<size_t>(natsMsg_GetDataLength(msg)));
    remaining = meta->NumPending;
    out.value.messages.push_back(std::move(m));
  }
  out.value.more = out.ok() && remaining > 0;

  // Deletes the ephemeral consumer (a request of its own); failure only leaves it to expire.
  natsSubscription_Unsubscribe(sub.get());
  return out;
}

namespace {

/// An ordered consumer's subscription. The handler state lives in a heap block that cnats'
/// delivery thread uses until the subscription's completion callback, which stop() waits for.
class OrderedSubscription final : public JsOrderedSubscription {
 public:
  struct State {
    JetStream::OrderedHandler handler;
    std::mutex mu;
    bool completed = false;
    std::condition_variable completed_cv;
  };

  OrderedSubscription(natsSubscription* sub, State* state) : sub_(sub), state_(state) {}
  ~OrderedSubscription() override { stop(); }

  void stop() override {
    if (sub_ == nullptr) return;
    natsSubscription_Unsubscribe(sub_);  // deletes the ephemeral consumer too
    {
      std::unique_lock<std::mutex> lock(state_->mu);
      if (!state_->completed_cv.wait_for(lock, kCloseWait, [this] { return state_->completed; })) {
        logger()->error("an ordered consumer's subscription did not complete within {} s",
                        kCloseWait.count());
      }
    }
    natsSubscription_Destroy(sub_);
    sub_ = nullptr;
    // After the completion callback cnats calls nothing of ours: the state may go. (Should the
    // wait above have timed out, leaking it is the safe choice.)
    bool completed = false;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      completed = state_->completed;
    }
    if (completed) delete state_;
    state_ = nullptr;
  }

  static void on_message(natsConnection*, natsSubscription*, natsMsg* raw, void* closure) noexcept {
    MsgPtr msg(raw);
    auto* state = static_cast<State*>(closure);
    jsMsgMetaData* raw_meta = nullptr;
    if (natsMsg_GetMetaData(&raw_meta, msg.get()) != NATS_OK) return;  // not a stream message
    MetaPtr meta(raw_meta);
    JsMessage m;
    m.sequence = meta->Sequence.Stream;
    m.time_ns = meta->Timestamp;
    m.subject = natsMsg_GetSubject(msg.get());
    m.data.assign(natsMsg_GetData(msg.get()),
                  static_cast<size_t>(natsMsg_GetDataLength(msg.get())));
    try {
      state->handler(std::move(m));
    } catch (const std::exception& e) {
      logger()->error("ordered consumer handler threw: {}", e.what());
    } catch (...) {
      logger()->error("ordered consumer handler threw");
    }
  }

  static void on_complete(void* closure) noexcept {
    auto* state = static_cast<State*>(closure);
    // Notified under the lock: stop() deletes the state (the condition variable with it) as
    // soon as it sees `completed`, which it cannot before this lock is released, and after that
    // nothing here touches the state (found by ThreadSanitizer: a notify after the unlock raced
    // with the delete).
    std::lock_guard<std::mutex> lock(state->mu);
    state->completed = true;
    state->completed_cv.notify_all();
  }

 private:
  natsSubscription* sub_;
  State* state_;
};

}  // namespace

JsResult<std::unique_ptr<JsOrderedSubscription>> JetStream::subscribe_ordered(
    const std::string& stream, const std::string& subject, uint64_t start_sequence,
    std::chrono::milliseconds heartbeat, OrderedHandler handler) {
  using Out = std::unique_ptr<JsOrderedSubscription>;
  Impl& im = *impl_;
  if (im.closed) return failed<Out>(error(JsError::Closed, "the JetStream client is closed"));
  jsSubOptions options;
  jsSubOptions_Init(&options);
  options.Stream = stream.c_str();
  options.Ordered = true;
  options.Config.DeliverPolicy = js_DeliverByStartSequence;
  options.Config.OptStartSeq = std::max<uint64_t>(start_sequence, 1);
  options.Config.Heartbeat = to_ns(heartbeat);
  auto* state = new OrderedSubscription::State;
  state->handler = std::move(handler);
  natsSubscription* sub = nullptr;
  jsErrCode code = kNoCode;
  natsStatus s = js_Subscribe(&sub, im.js, subject.c_str(), &OrderedSubscription::on_message, state,
                              &im.js_options, &options, &code);
  if (s == NATS_OK) {
    s = natsSubscription_SetOnCompleteCB(sub, &OrderedSubscription::on_complete, state);
  }
  if (s != NATS_OK) {
    JsStatus out = failure(s, code, "ordered consumer of " + subject + " in " + stream);
    if (sub != nullptr) {
      // A message may be in delivery already and no completion callback tells when it is
      // done: the state is leaked rather than freed under it (this path is out of memory).
      natsSubscription_Unsubscribe(sub);
      natsSubscription_Destroy(sub);
    } else {
      delete state;
    }
    return failed<Out>(std::move(out));
  }
  return succeeded<Out>(std::make_unique<OrderedSubscription>(sub, state));
}

JsResult<JsMessage> JetStream::get(const std::string& stream, uint64_t sequence) {
  using Out = JsMessage;
  if (impl_->closed) return failed<Out>(error(JsError::Closed, "the JetStream client is closed"));
  natsMsg* raw = nullptr;
  jsErrCode code = kNoCode;
  const natsStatus s = js_GetMsg(&raw, impl_->js, stream.c_str(), sequence, nullptr, &code);
  MsgPtr msg(raw);
  if (s != NATS_OK) {
    return failed<Out>(failure(s, code, "message " + std::to_string(sequence) + " of " + stream));
  }
  JsMessage m;
  m.sequence = natsMsg_GetSequence(msg.get());
  m.time_ns = natsMsg_GetTime(msg.get());
  m.subject = natsMsg_GetSubject(msg.get());
  m.data.assign(natsMsg_GetData(msg.get()), static_cast<size_t>(natsMsg_GetDataLength(msg.get())));
  return succeeded(std::move(m));
}

JsStatus JetStream::ensure_bucket(const JsBucketSpec& spec) {
  Impl& im = *impl_;
  if (im.closed) return error(JsError::Closed, "the JetStream client is closed");
  if (!valid_bucket_name(spec.bucket)) {
    return error(JsError::Rejected, "bucket \"" + spec.bucket + "\": a name is A-Z a-z 0-9 _ -");
  }
  kvConfig config;
  kvConfig_Init(&config);
  config.Bucket = spec.bucket.c_str();
  config.History = 1;
  config.TTL = to_ns(spec.ttl);  // the stream's max age, in nanoseconds like it
  config.MaxBytes = spec.max_bytes;
  config.MaxValueSize = spec.max_value_size;
  config.StorageType = storage_of(spec.storage);
  config.Replicas = spec.replicas;
  const std::string what = "bucket " + spec.bucket;

  kvStore* raw = nullptr;
  natsStatus s = js_CreateKeyValue(&raw, im.js, &config);
  if (s != NATS_OK) {
    const JsStatus create_error = failure(s, kNoCode, what);
    // cnats 3.4 has no kv update and refuses a bucket whose limits differ ("Existing
    // configuration is different"): update its stream, KV_<bucket>, then bind.
    const std::string stream = "KV_" + spec.bucket;
    jsStreamInfo* raw_info = nullptr;
    jsErrCode code = kNoCode;
    s = js_GetStreamInfo(&raw_info, im.js, stream.c_str(), nullptr, &code);
    StreamInfoPtr info(raw_info);
    if (s == NATS_OK && info->Config == nullptr) s = NATS_ERR;
    if (s != NATS_OK) {
      // No such stream: the create failed for another reason, which says more.
      return code == JSStreamNotFoundErr ? create_error : failure(s, code, what);
    }
    info->Config->MaxAge = config.TTL;
    info->Config->MaxBytes = spec.max_bytes;
    info->Config->MaxMsgSize = spec.max_value_size;
    info->Config->Duplicates = 0;  // the server's default, capped by the new max age
    jsStreamInfo* updated = nullptr;
    s = js_UpdateStream(&updated, im.js, info->Config, nullptr, &code);
    jsStreamInfo_Destroy(updated);
    if (s != NATS_OK) return failure(s, code, what + " (update)");
    logger()->info("bucket {} updated to its new limits", spec.bucket);
    s = js_KeyValue(&raw, im.js, spec.bucket.c_str());
    if (s != NATS_OK) return failure(s, kNoCode, what + " (bind)");
  }
  im.buckets[spec.bucket] = KvStorePtr(raw);
  return {};
}

JsResult<uint64_t> JetStream::kv_put(const std::string& bucket, const std::string& key,
                                     std::string_view value) {
  Impl& im = *impl_;
  if (im.closed) return failed<uint64_t>(error(JsError::Closed, "the JetStream client is closed"));
  kvStore* kv = im.bucket(bucket);
  if (kv == nullptr) {
    return failed<uint64_t>(error(JsError::NotFound, "bucket " + bucket + " not ensured"));
  }
  if (!fits_int(value)) return failed<uint64_t>(error(JsError::Rejected, "value too large"));
  uint64_t revision = 0;
  const natsStatus s =
      kvStore_Put(&revision, kv, key.c_str(), value.data(), static_cast<int>(value.size()));
  if (s != NATS_OK) {
    return failed<uint64_t>(failure(s, kNoCode, "put " + bucket + "/" + key));
  }
  return succeeded(revision);
}

JsResult<std::string> JetStream::kv_get(const std::string& bucket, const std::string& key) {
  Impl& im = *impl_;
  if (im.closed) {
    return failed<std::string>(error(JsError::Closed, "the JetStream client is closed"));
  }
  kvStore* kv = im.bucket(bucket);
  if (kv == nullptr) {
    return failed<std::string>(error(JsError::NotFound, "bucket " + bucket + " not ensured"));
  }
  kvEntry* raw = nullptr;
  const natsStatus s = kvStore_Get(&raw, kv, key.c_str());
  KvEntryPtr entry(raw);
  if (s != NATS_OK) {
    return failed<std::string>(failure(s, kNoCode, "get " + bucket + "/" + key));
  }
  return succeeded(std::string(static_cast<const char*>(kvEntry_Value(entry.get())),
                               static_cast<size_t>(kvEntry_ValueLen(entry.get()))));
}

JsStatus JetStream::kv_delete(const std::string& bucket, const std::string& key) {
  Impl& im = *impl_;
  if (im.closed) return error(JsError::Closed, "the JetStream client is closed");
  kvStore* kv = im.bucket(bucket);
  if (kv == nullptr) return error(JsError::NotFound, "bucket " + bucket + " not ensured");
  const natsStatus s = kvStore_Delete(kv, key.c_str());
  if (s != NATS_OK) return failure(s, kNoCode, "delete " + bucket + "/" + key);
  return {};
}

JsResult<JsKvEntry> JetStream::kv_entry(const std::string& bucket, const std::string& key) {
  using Out = JsKvEntry;
  Impl& im = *impl_;
  if (im.closed) return failed<Out>(error(JsError::Closed, "the JetStream client is closed"));
  kvStore* kv = im.bucket(bucket);
  if (kv == nullptr)
    return failed<Out>(error(JsError::NotFound, "bucket " + bucket + " not ensured"));
  kvEntry* raw = nullptr;
  const natsStatus s = kvStore_Get(&raw, kv, key.c_str());
  KvEntryPtr entry(raw);
  if (s != NATS_OK) return failed<Out>(failure(s, kNoCode, "get " + bucket + "/" + key));
  JsKvEntry out;
  out.value.assign(static_cast<const char*>(kvEntry_Value(entry.get())),
                   static_cast<size_t>(kvEntry_ValueLen(entry.get())));
  out.revision = kvEntry_Revision(entry.get());
  return succeeded(std::move(out));
}

namespace {
/// JSStreamWrongLastSequenceErr: the subject's last sequence is not the expected one (not in
/// cnats 3.4's jsErrCode list).
constexpr int kWrongLastSequence = 10071;

/// A publish to the key's subject that the server stores only if the key is at last_revision.
JsResult<uint64_t> conditional_publish(JetStream::Impl& im, const std::string& bucket,
                                       const std::string& key, std::string_view value,
                                       uint64_t last_revision, bool delete_marker) {
  const std::string what = std::string(delete_marker ? "delete " : "update ") + bucket + "/" + key +
                           " at revision " + std::to_string(last_revision);
  if (im.closed) return failed<uint64_t>(error(JsError::Closed, "the JetStream client is closed"));
  if (im.bucket(bucket) == nullptr) {
    return failed<uint64_t>(error(JsError::NotFound, "bucket " + bucket + " not ensured"));
  }
  // 0 would mean "no expectation" to cnats: an unconditional write.
  if (last_revision == 0) return failed<uint64_t>(error(JsError::Rejected, what + ": no revision"));
  if (!fits_int(value))
    return failed<uint64_t>(error(JsError::Rejected, what + ": value too large"));
  const std::string subject = "$KV." + bucket + "." + key;
  natsMsg* raw = nullptr;
  natsStatus s =
      natsMsg_Create(&raw, subject.c_str(), nullptr, value.data(), static_cast<int>(value.size()));
  MsgPtr msg(raw);
  if (s == NATS_OK && delete_marker) s = natsMsgHeader_Set(msg.get(), "KV-Operation", "DEL");
  if (s != NATS_OK) return failed<uint64_t>(failure(s, kNoCode, what));
  jsPubOptions options;
  jsPubOptions_Init(&options);
  options.ExpectLastSubjectSeq = last_revision;
  jsPubAck* ack = nullptr;
  jsErrCode code = kNoCode;
  s = js_PublishMsg(&ack, im.js, msg.get(), &options, &code);
  const uint64_t revision = ack != nullptr ? ack->Sequence : 0;
  jsPubAck_Destroy(ack);
  if (s != NATS_OK) {
    if (static_cast<int>(code) == kWrongLastSequence) {
      return failed<uint64_t>(error(JsError::Conflict, what + ": the key has another revision"));
    }
    return failed<uint64_t>(failure(s, code, what, JsError::NoStream));
  }
  return succeeded(revision);
}

}  // namespace

JsResult<uint64_t> JetStream::kv_update(const std::string& bucket, const std::string& key,
                                        std::string_view value, uint64_t last_revision) {
  return conditional_publish(*impl_, bucket, key, value, last_revision, false);
}

JsStatus JetStream::kv_delete_if(const std::string& bucket, const std::string& key,
                                 uint64_t last_revision) {
  return conditional_publish(*impl_, bucket, key, {}, last_revision, true);
}

JsResult<JsReadBatch> JetStream::kv_scan(const std::string& bucket, uint64_t from,
                                         JsReadLimits limits) {
  if (impl_->closed) {
    return failed<JsReadBatch>(error(JsError::Closed, "the JetStream client is closed"));
  }
  if (impl_->bucket(bucket) == nullptr) {
    return failed<JsReadBatch>(error(JsError::NotFound, "bucket " + bucket + " not ensured"));
  }
  return read("KV_" + bucket, "$KV." + bucket + ".>", from, limits);
}

JsStatus JetStream::delete_bucket(const std::string& bucket) {
  Impl& im = *impl_;
  if (im.closed) return error(JsError::Closed, "the JetStream client is closed");
  im.buckets.erase(bucket);
  const natsStatus s = js_DeleteKeyValue(im.js, bucket.c_str());
  if (s != NATS_OK) return failure(s, kNoCode, "delete bucket " + bucket);
  return {};
}

}  // namespace steedos::transport
