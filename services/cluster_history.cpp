#include "services/cluster_history.hpp"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <asio/post.hpp>
#include <climits>
#include <deque>

#include "common/log.hpp"
#include "protocol/json.hpp"
#include "protocol/json_reader.hpp"

namespace steedos::services {

using transport::JsError;
using transport::JsResult;
using transport::JsStatus;

namespace {

const std::shared_ptr<spdlog::logger>& logger() {
  static const auto instance = component_logger("history");
  return instance;
}

std::optional<std::vector<std::string>> string_array(const Json& value) {
  if (!value.is_array()) return std::nullopt;
  std::vector<std::string> out;
  out.reserve(value.size());
  for (const auto& item : value) {
    if (!item.is_string()) return std::nullopt;
    out.push_back(item.get<std::string>());
  }
  return out;
}

void set_error(std::string* error, std::string text) {
  if (error != nullptr) *error = std::move(text);
}

/// Hex of the first 16 bytes of SHA-256 over the fields, each preceded by its length so that
/// no two different field lists hash the same text ("ab","c" vs "a","bc").
std::string hash_fields(std::initializer_list<const std::string*> fields) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1;
  for (const std::string* field : fields) {
    const std::string prefix = std::to_string(field->size()) + ":";
    ok = ok && EVP_DigestUpdate(ctx, prefix.data(), prefix.size()) == 1 &&
         EVP_DigestUpdate(ctx, field->data(), field->size()) == 1;
  }
  ok = ok && EVP_DigestFinal_ex(ctx, digest, &length) == 1 && length >= 16;
  EVP_MD_CTX_free(ctx);
  if (!ok) return {};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(32);
  for (unsigned int i = 0; i < 16; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

}  // namespace

std::optional<std::string> encode_history_event(const HistoryEvent& event, std::string* error) {
  if (event.id.empty()) {
    set_error(error, "history event without an id");
    return std::nullopt;
  }
  std::optional<Json> args = protocol::parse_json(event.args_json);
  if (!args || !args->is_array()) {
    set_error(error, "history event " + event.id + ": args is not a JSON array");
    return std::nullopt;
  }
  Json out = Json::object();
  out["id"] = event.id;
  out["name"] = event.name;
  out["args"] = std::move(*args);
  out["all"] = event.all;
  out["rooms"] = event.rooms;
  out["except"] = event.except_rooms;
  return dump_json(out);
}

std::optional<HistoryEvent> decode_history_event(std::string_view message, std::string* error) {
  protocol::JsonRefusal why = protocol::JsonRefusal::Invalid;
  std::optional<Json> parsed = protocol::parse_json(message, protocol::kMaxPacketJsonDepth, &why);
  if (!parsed) {
    set_error(error, why == protocol::JsonRefusal::TooDeep ? "JSON nested too deep" : "not JSON");
    return std::nullopt;
  }
  const Json& json = *parsed;
  if (!json.is_object()) {
    set_error(error, "not a JSON object");
    return std::nullopt;
  }
  auto field = [&](const char* name) -> const Json* {
    auto it = json.find(name);
    return it == json.end() ? nullptr : &*it;
  };
  const Json* id = field("id");
  const Json* name = field("name");
  const Json* args = field("args");
  const Json* all = field("all");
  if (id == nullptr || !id->is_string() || id->get_ref<const std::string&>().empty()) {
    set_error(error, "no \"id\" string");
    return std::nullopt;
  }
  if (name == nullptr || !name->is_string()) {
    set_error(error, "no \"name\" string");
    return std::nullopt;
  }
  if (args == nullptr || !args->is_array()) {
    set_error(error, "no \"args\" array");
    return std::nullopt;
  }
  if (all == nullptr || !all->is_boolean()) {
    set_error(error, "no \"all\" boolean");
    return std::nullopt;
  }
  HistoryEvent event;
  for (const auto& [key, target] :
       {std::pair{"rooms", &event.rooms}, std::pair{"except", &event.except_rooms}}) {
    const Json* value = field(key);
    if (value == nullptr) continue;  // none
    auto strings = string_array(*value);
    if (!strings) {
      set_error(error, std::string("\"") + key + "\" is not an array of strings");
      return std::nullopt;
    }
    *target = std::move(*strings);
  }
  event.id = id->get<std::string>();
  event.name = name->get<std::string>();
  event.args_json = dump_json(*args);
  event.all = all->get<bool>();
  return event;
}

std::string event_id_of_forward(const std::string& uuid) {
  return "f:" + uuid;
}

std::string event_id_of_broadcast(const std::string& sender, const std::string& request_id,
                                  const std::string& event_name, const std::string& params_json,
                                  const std::string& meta_json) {
  return "b:" + hash_fields({&sender, &request_id, &event_name, &params_json, &meta_json});
}

/// What cnats' delivery thread and the posted handlers share with the object: the bound of
/// queued deliveries and whether the object still wants them.
struct ClusterHistory::Shared {
  explicit Shared(ClusterHistory* o) : owner(o) {}
  ClusterHistory* owner;  // valid while open (loop thread)
  std::mutex mu;
  std::condition_variable cv;
  size_t queued = 0;
  bool open = true;  // guarded by mu
};

ClusterHistory::ClusterHistory(asio::io_context& loop, ClusterHistoryOptions options)
    : loop_(loop), options_(std::move(options)), shared_(std::make_shared<Shared>(this)) {}

ClusterHistory::~ClusterHistory() {
  stop();
}

JsStatus ClusterHistory::start(Deliver deliver) {
  if (subscription_) return {JsError::Failed, "history already started"};
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    if (!shared_->open) return {JsError::Closed, "history stopped: make a new one to start again"};
  }
  js_ = options_.jetstream;
  if (js_ == nullptr) {
    transport::JetStreamOptions js_options;
    js_options.url = options_.url;
    js_options.name = "steedos-socket-history";
    js_options.request_timeout_ms = options_.request_timeout_ms;
    auto made = transport::JetStream::connect(loop_, js_options);
    if (!made) return made;
    owned_ = std::move(made.value);
    js_ = owned_.get();
  }
  transport::JsStreamSpec spec;
  spec.name = options_.stream;
  spec.subjects = {options_.subject};
  spec.max_age = options_.max_age;
  spec.max_bytes = options_.max_bytes;
  spec.max_message_size =
      static_cast<int32_t>(std::min<size_t>(options_.max_event_bytes, INT32_MAX));
  spec.storage = options_.storage;
  spec.replicas = options_.replicas;
  spec.duplicate_window = options_.duplicate_window;
  auto state = js_->ensure_stream(spec);
  if (!state) return state;

  deliver_ = std::move(deliver);
  last_delivered_ = state.value.last_sequence;
  auto shared = shared_;
  const size_t max_queued = std::max<size_t>(options_.max_queued_deliveries, 1);
  asio::io_context& loop = loop_;
  // cnats' delivery thread: decode there (off the loop), then hand over in order.
  auto handler = [shared, max_queued, &loop](transport::JsMessage message) {
    std::string error;
    std::optional<HistoryEvent> event = decode_history_event(message.data, &error);
    {
      std::unique_lock<std::mutex> lock(shared->mu);
      shared->cv.wait(lock, [&] { return !shared->open || shared->queued < max_queued; });
      if (!shared->open) return;
      ++shared->queued;
    }
    asio::post(loop, [shared, sequence = message.sequence, event = std::move(event),
                      error = std::move(error)]() mutable {
      {
        std::lock_guard<std::mutex> lock(shared->mu);
        --shared->queued;
        if (!shared->open) return;
      }
      shared->cv.notify_one();
      shared->owner->on_consumed(sequence, std::move(event), error);
    });
  };
  auto subscribed = js_->subscribe_ordered(options_.stream, options_.subject, last_delivered_ + 1,
                                           options_.heartbeat, std::move(handler));
  if (!subscribed) return subscribed;
  subscription_ = std::move(subscribed.value);

  transport::JetStreamOptions reader_options;
  reader_options.url = options_.url;
  reader_options.name = "steedos-socket-history-reader";
  reader_options.request_timeout_ms = options_.request_timeout_ms;
  auto reader_js = transport::JetStream::connect(loop_, reader_options);
  if (!reader_js) {
    stop();
    return reader_js;
  }
  reader_ =
      std::make_unique<Reader>(loop_, shared_, std::move(reader_js.value), options_.stream,
                               options_.subject, std::max<size_t>(options_.max_queued_reads, 1));
  logger()->info("history stream {} consumed from sequence {}", options_.stream,
                 last_delivered_ + 1);
  return {};
}

void ClusterHistory::on_consumed(uint64_t sequence, std::optional<HistoryEvent> event,
                                 const std::string& error) {
  if (sequence <= last_delivered_) {
    // cnats re-made the consumer from an earlier sequence (see subscribe_ordered's caveat).
    ++counts_.redelivered;
    return;
  }
  if (sequence > last_delivered_ + 1) {
    counts_.skipped_sequences += sequence - last_delivered_ - 1;
    logger()->warn("history jumped from sequence {} to {} (removed by the stream's limits)",
                   last_delivered_, sequence);
  }
  last_delivered_ = sequence;
  if (!event) {
    ++counts_.malformed;
    logger()->warn("history message {} skipped: {}", sequence, error);
    return;
  }
  ++counts_.delivered;
  if (deliver_) deliver_(sequence, *event);
}

JsStatus ClusterHistory::publish(const HistoryEvent& event, Published done) {
  if (js_ == nullptr) return {JsError::Closed, "history not started"};
  std::string error;
  std::optional<std::string> message = encode_history_event(event, &error);
  if (!message) {
    ++counts_.publish_failed;
    return {JsError::Rejected, error};
  }
  if (message->size() > options_.max_event_bytes) {
    ++counts_.publish_failed;
    return {JsError::Rejected, "history event " + event.id + ": " +
                                   std::to_string(message->size()) + " bytes, more than " +
                                   std::to_string(options_.max_event_bytes)};
  }
  transport::JsPublishOptions publish_options;
  publish_options.msg_id = event.id;
  auto shared = shared_;
  JsStatus sent =
      js_->publish_async(options_.subject, *message, publish_options,
                         [shared, done = std::move(done)](JsResult<transport::JsPubAck> ack) {
                           {
                             std::lock_guard<std::mutex> lock(shared->mu);
                             if (!shared->open) return;
                           }
                           ClusterHistoryCounts& counts = shared->owner->counts_;
                           if (!ack) {
                             ++counts.publish_failed;
                           } else if (ack.value.duplicate) {
                             ++counts.published_copies;
                           } else {
                             ++counts.published;
                           }
                           if (done) done(std::move(ack));
                         });
  if (!sent) ++counts_.publish_failed;
  return sent;
}

namespace {

/// The events of `subject` in (after, until], at most `max_events` (see ClusterHistory::read).
JsResult<ClusterHistory::ReadResult> read_range(transport::JetStream& js, const std::string& stream,
                                                const std::string& subject, uint64_t after,
                                                uint64_t until, size_t max_events) {
  JsResult<ClusterHistory::ReadResult> out;
  if (until <= after) return out;
  uint64_t from = after + 1;
  bool first = true;
  while (from <= until) {
    transport::JsReadLimits limits;
    limits.max_messages = static_cast<size_t>(std::min<uint64_t>(until - from + 1, 1000));
    limits.max_bytes = int64_t{4} << 20;
    auto batch = js.read(stream, subject, from, limits);
    if (!batch) {
      static_cast<JsStatus&>(out) = std::move(static_cast<JsStatus&>(batch));
      return out;
    }
    if (first) {
      first = false;
      // The stream holds consecutive sequences from its first one: a later first message
      // means the head was removed (age or size) and the client missed events we cannot give.
      out.value.incomplete =
          batch.value.messages.empty() || batch.value.messages.front().sequence != after + 1;
    }
    for (auto& m : batch.value.messages) {
      if (m.sequence > until) return out;
      std::string error;
      std::optional<HistoryEvent> event = decode_history_event(m.data, &error);
      if (event) {
        if (out.value.events.size() == max_events) {
          static_cast<JsStatus&>(out) = {
              JsError::Rejected, "more than " + std::to_string(max_events) + " events between " +
                                     std::to_string(after) + " and " + std::to_string(until)};
          out.value.events.clear();
          return out;
        }
        out.value.events.emplace_back(m.sequence, std::move(*event));
      } else {
        ++out.value.malformed;
      }
      from = m.sequence + 1;
    }
    if (!batch.value.more || batch.value.messages.empty()) break;
  }
  return out;
}

}  // namespace

JsResult<ClusterHistory::ReadResult> ClusterHistory::read(uint64_t after, uint64_t until,
                                                          size_t max_events) {
  if (js_ == nullptr) {
    JsResult<ReadResult> out;
    static_cast<JsStatus&>(out) = {JsError::Closed, "history not started"};
    return out;
  }
  return read_range(*js_, options_.stream, options_.subject, after, until, max_events);
}

/// One thread with a JetStream connection of its own, running restores' reads one after the
/// other from a bounded queue; results are posted to the loop.
class ClusterHistory::Reader {
 public:
  Reader(asio::io_context& loop, std::shared_ptr<Shared> shared,
         std::unique_ptr<transport::JetStream> js, std::string stream, std::string subject,
         size_t max_queued)
      : loop_(loop),
        shared_(std::move(shared)),
        js_(std::move(js)),
        stream_(std::move(stream)),
        subject_(std::move(subject)),
        max_queued_(max_queued),
        thread_([this] { run(); }) {}

  ~Reader() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
    js_->close();
  }

  void submit(uint64_t after, uint64_t until, size_t max_events, ReadDone done) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.size() < max_queued_) {
        queue_.push_back(Job{after, until, max_events, std::move(done)});
        cv_.notify_one();
        return;
      }
    }
    JsResult<ReadResult> busy;
    static_cast<JsStatus&>(busy) = {JsError::Busy, "too many restores waiting for a read"};
    complete(std::move(done), std::move(busy));
  }

 private:
  struct Job {
    uint64_t after;
    uint64_t until;
    size_t max_events;
    ReadDone done;
  };

  void run() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      complete(std::move(job.done),
               read_range(*js_, stream_, subject_, job.after, job.until, job.max_events));
    }
  }

  void complete(ReadDone done, JsResult<ReadResult> result) {
    asio::post(loop_,
               [shared = shared_, done = std::move(done), result = std::move(result)]() mutable {
                 {
                   std::lock_guard<std::mutex> lock(shared->mu);
                   if (!shared->open) return;
                 }
                 done(std::move(result));
               });
  }

  asio::io_context& loop_;
  std::shared_ptr<Shared> shared_;
  std::unique_ptr<transport::JetStream> js_;
  const std::string stream_;
  const std::string subject_;
  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts once the rest is built
};

void ClusterHistory::read_async(uint64_t after, uint64_t until, size_t max_events, ReadDone done) {
  if (!reader_) {
    JsResult<ReadResult> closed;
    static_cast<JsStatus&>(closed) = {JsError::Closed, "history not started"};
    asio::post(loop_, [done = std::move(done), closed = std::move(closed)]() mutable {
      done(std::move(closed));
    });
    return;
  }
  reader_->submit(after, until, max_events, std::move(done));
}

void ClusterHistory::stop() {
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    shared_->open = false;
  }
  shared_->cv.notify_all();  // a delivery thread waiting for room gives up
  if (subscription_) {
    subscription_->stop();
    subscription_.reset();
  }
  reader_.reset();
  owned_.reset();
  js_ = nullptr;
}

}  // namespace steedos::services
