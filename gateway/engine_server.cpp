#include "gateway/engine_server.hpp"

#include <spdlog/spdlog.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <cerrno>
#include <chrono>
#include <stdexcept>

#include "common/log.hpp"
#include "common/random_id.hpp"
#include "gateway/websocket_connection.hpp"
#include "protocol/engineio.hpp"

namespace steedos::gateway {
namespace {

namespace eio = protocol::eio;
using Clock = std::chrono::steady_clock;
// Bound to the io_context executor: smaller than the type-erased steady_timer, and there is
// one per session.
using Timer =
    asio::basic_waitable_timer<Clock, asio::wait_traits<Clock>, asio::io_context::executor_type>;

const std::shared_ptr<spdlog::logger>& log() {
  static const auto logger = component_logger("gateway");
  return logger;
}

const char* transport_name(TransportKind kind) {
  return kind == TransportKind::Polling ? "polling" : "websocket";
}

// Node's checkInvalidHeaderChar, which the reference applies to Origin (code 3).
bool valid_header_value(std::string_view value) {
  for (const char c : value) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte != '\t' && (byte < 0x20 || byte == 0x7F)) return false;
  }
  return true;
}

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

HttpResponse polling_response(std::string body) {
  HttpResponse response;
  response.content_type = "text/plain; charset=UTF-8";
  response.headers.emplace_back("Cache-Control", "no-store");
  response.body = std::move(body);
  return response;
}

HttpResponse post_ok() {
  HttpResponse response;
  response.content_type = "text/html";
  response.body = "ok";
  return response;
}

// Reference messages for the Engine.IO error codes (socketio-server.md §1.8).
HttpResponse unknown_transport() {
  return HttpResponse::engine_error(0, "Transport unknown");
}
HttpResponse unknown_sid() {
  return HttpResponse::engine_error(1, "Session ID unknown");
}
HttpResponse bad_method() {
  return HttpResponse::engine_error(2, "Bad handshake method");
}
HttpResponse bad_request() {
  return HttpResponse::engine_error(3, "Bad request");
}
HttpResponse bad_version() {
  return HttpResponse::engine_error(5, "Unsupported protocol version");
}

}  // namespace

const std::string* HttpRequest::header(const std::string& lower_name) const {
  const auto it = headers.find(lower_name);
  return it == headers.end() ? nullptr : &it->second;
}

const std::string& HandshakeInfo::url() const {
  static const std::string none;
  return request_url ? request_url->url : none;
}

const CompactStringMap& HandshakeInfo::query() const {
  static const CompactStringMap none;
  return request_url ? request_url->query : none;
}

const std::string* HttpRequest::param(const std::string& name) const {
  const auto it = query.find(name);
  return it == query.end() ? nullptr : &it->second;
}

HttpResponse HttpResponse::engine_error(int code, std::string_view message, int status) {
  HttpResponse response;
  response.status = status;
  response.content_type = "application/json";
  response.body = "{\"code\":" + std::to_string(code) + ",\"message\":\"";
  response.body.append(message);
  response.body.append("\"}");
  return response;
}

// ---------------------------------------------------------------------------------------------

/// One Engine.IO session. Owned by the server's sid map while open; pending timer handlers and
/// posted work hold a shared_ptr, and every one of them checks `state_` before doing anything,
/// so a closed session is inert even if the server is gone.
class EngineSession final : public EngineSocket,
                            public WebSocketConnection::Handler,
                            public std::enable_shared_from_this<EngineSession> {
 public:
  enum class State : uint8_t {
    Open,
    Closing,  // polling only: closed, kept until the next GET takes the final `1`
    Closed,
  };

  EngineSession(EngineServer& server, std::string_view id, TransportKind transport,
                HandshakeInfo handshake, bool base64)
      : transport_(transport),
        base64_(base64),
        server_(&server),
        id_(id),
        handshake_(std::move(handshake)) {}

  // EngineSocket ------------------------------------------------------------------------------

  std::string_view id() const override { return id_.view(); }
  TransportKind transport() const override { return transport_; }
  const HandshakeInfo& handshake() const override { return handshake_; }
  void drop_handshake_headers() override { handshake_.headers.clear(); }

  bool send(const OutgoingPacketPtr& packet, bool is_volatile) override {
    if (state_ != State::Open || !packet) return false;
    const size_t budget = server_->options_.max_buffered_bytes;
    if (transport_ == TransportKind::WebSocket) {
      if (is_volatile && ws_->has_pending_output()) return false;
      if (ws_->buffered_bytes() + packet->size() > budget) {
        ws_->write_queued_now();  // only what the client's socket cannot take counts
        if (ws_->buffered_bytes() + packet->size() > budget) {
          slow_consumer(ws_->buffered_bytes());
          return false;
        }
      }
      write_websocket(packet);
      return true;
    }
    if (is_volatile && (!polling_->parked || !polling_->buffer.empty())) return false;
    const size_t size = packet->polling_payload().size() + 1;
    if (polling_->bytes + size > budget) {
      slow_consumer(polling_->bytes);
      return false;
    }
    enqueue_polling(packet, size);
    return true;
  }

  void close(const std::string& reason) override {
    // Deferred report: the caller may be iterating its own structures.
    terminate(reason, Mode::Graceful, Notify::Deferred);
  }

  void prefetch() const override {
    __builtin_prefetch(&state_);
    if (ws_) __builtin_prefetch(ws_.get());
  }

  size_t buffered_bytes() const override {
    if (state_ != State::Open) return 0;
    return transport_ == TransportKind::WebSocket ? ws_->buffered_bytes() : polling_->bytes;
  }

  // WebSocketConnection::Handler --------------------------------------------------------------

  void on_ws_message(WebSocketConnection& connection, std::string_view data, bool binary) override {
    if (upgrade_ && &connection == upgrade_->connection.get()) {
      on_candidate_message(data, binary);
      return;
    }
    if (state_ != State::Open || &connection != ws_.get()) return;
    if (binary) {
      server_->handler_.on_message(*this, data, true);
      return;
    }
    if (!data.empty() && data.front() == 'b') {
      // `b64=1` clients send binary as base64 text, as on polling.
      auto bytes = eio::base64_decode(data.substr(1));
      if (!bytes) {
        parse_error(eio::error_text(eio::Error::InvalidBase64));
        return;
      }
      server_->handler_.on_message(*this, *bytes, true);
      return;
    }
    if (data.empty() || data.front() < '0' || data.front() > '6') {
      parse_error(eio::error_text(data.empty() ? eio::Error::Empty : eio::Error::UnknownType));
      return;
    }
    handle_packet(static_cast<eio::Type>(data.front()), data.substr(1), false);
  }

  void on_ws_closed(WebSocketConnection& connection, uint16_t code) override {
    if (code == ws_close::kTooBig && server_ != nullptr) ++server_->refusals_.message_size;
    if (upgrade_ && &connection == upgrade_->connection.get()) {
      log_with(log(), spdlog::level::debug, {{"sid", id()}, {"code", code}},
               "upgrade candidate closed");
      upgrade_.reset();
      return;
    }
    if (state_ != State::Open || &connection != ws_.get()) return;
    const bool error = code == ws_close::kProtocolError || code == ws_close::kInvalidData ||
                       code == ws_close::kTooBig;
    terminate(error ? "transport error" : "transport close", Mode::Immediate, Notify::Now);
  }

  // Driven by EngineServer --------------------------------------------------------------------

  State state() const { return state_; }
  bool upgrading() const { return upgrade_ != nullptr; }

  /// True once the pong deadline has passed, even if the timer handler has not run yet: a
  /// request arriving in the same loop turn as the expiry must not find the session alive.
  bool heartbeat_expired() const {
    return state_ == State::Open && awaiting_pong_ && Clock::now() >= due_at;
  }

  void expire_heartbeat() { terminate("ping timeout", Mode::Immediate, Notify::Now); }

  void start(Clock::time_point created) {
    if (transport_ == TransportKind::Polling) polling_ = std::make_unique<Polling>();
    // The first ping is due pingInterval after creation, before the open packet is written
    // (§1.6: the suites' 500 ms ping-timeout check leaves no room for a late start).
    arm_ping(created + std::chrono::milliseconds(server_->options_.ping_interval_ms));
  }

  void attach_websocket(std::shared_ptr<WebSocketConnection> connection) {
    ws_ = std::move(connection);
    ws_->set_handler(this);
  }

  /// Queues an engine packet (open, ping, noop, close), outside the byte budget.
  void send_control(const OutgoingPacketPtr& packet) {
    if (transport_ == TransportKind::WebSocket) {
      write_websocket(packet);
    } else {
      enqueue_polling(packet, packet->polling_payload().size() + 1);
    }
  }

  void on_get(const std::shared_ptr<HttpExchange>& exchange) {
    if (state_ == State::Closing) {
      // What was queued before the close goes out first; the `1` in the poll after it, and
      // then the sid is forgotten.
      if (!polling_->buffer.empty()) {
        exchange->respond(polling_response(take_polling_payload()));
        return;
      }
      exchange->respond(polling_response(std::string(server_->close_->polling_payload())));
      finish_closing();
      return;
    }
    if (polling_->parked) {
      // One GET at a time (§1.4): the reference answers 400 and closes the session, so the
      // parked GET completes with `1`.
      log_with(log(), spdlog::level::debug, {{"sid", id()}, {"reason", "overlapping GET"}},
               "session refused a request");
      exchange->respond(bad_request());
      terminate("transport error", Mode::Immediate, Notify::Now);
      return;
    }
    if (!polling_->buffer.empty()) {
      exchange->respond(polling_response(take_polling_payload()));
      return;
    }
    if (upgrade_ && upgrade_->probed) {
      // The client is switching to WebSocket: release its GET at once (§1.7).
      exchange->respond(polling_response("6"));
      return;
    }
    polling_->parked = exchange;
    exchange->on_abort = [weak = weak_from_this()] {
      if (auto self = weak.lock()) self->on_get_aborted();
    };
  }

  void on_post(std::string_view body, const std::string* content_type,
               const std::shared_ptr<HttpExchange>& exchange) {
    if (state_ == State::Closing) {
      exchange->respond(post_ok());
      return;
    }
    // The reference rejects binary POST bodies in v4 (§1.3); v4 clients never send them.
    if (content_type != nullptr && starts_with(*content_type, "application/octet-stream")) {
      exchange->respond(bad_request());
      parse_error("binary POST body");
      return;
    }
    const auto self = shared_from_this();  // handlers may close the session mid-loop
    auto decoded = eio::decode_polling_payload(body);
    for (auto& packet : decoded.value) {
      if (state_ != State::Open) break;
      handle_packet(packet.type, packet.data, packet.binary);
    }
    if (!decoded.ok() && state_ == State::Open) {
      exchange->respond(bad_request());
      parse_error(eio::error_text(decoded.error));
      return;
    }
    exchange->respond(post_ok());
  }

  void begin_upgrade(std::shared_ptr<WebSocketConnection> connection) {
    connection->set_handler(this);
    upgrade_ = std::make_unique<Upgrade>(std::move(connection), server_->io_);
    upgrade_->timer.expires_after(std::chrono::milliseconds(server_->options_.upgrade_timeout_ms));
    upgrade_->timer.async_wait(
        [self = shared_from_this(), candidate = upgrade_->connection.get()](asio::error_code ec) {
          if (ec || !self->upgrade_ || self->upgrade_->connection.get() != candidate) return;
          log_with(log(), spdlog::level::debug, {{"sid", self->id()}}, "upgrade timed out");
          self->abort_upgrade();
        });
  }

  /// Applies frames the candidate WebSocket already received, so a request racing them on
  /// another TCP connection sees the upgrade in the order the client made it (§1.7).
  void sync_upgrade() {
    if (!upgrade_) return;
    const auto candidate = upgrade_->connection;  // the frames may end the upgrade either way
    candidate->poll_input();
  }

  void shutdown(const std::string& reason) { terminate(reason, Mode::Shutdown, Notify::Now); }
  /// Forgets a session that was closed and kept only for its final GET.
  void drop() { finish_closing(); }

  /// Drops the link to a server that is being destroyed.
  void detach_server() {
    if (state_ != State::Closed) {
      state_ = State::Closed;
      release_transports();
    }
    server_ = nullptr;
  }

  /// Reports the close to the handler, once.
  void notify_closed(const std::string& reason) {
    if (notified_ || server_ == nullptr) return;
    notified_ = true;
    server_->pending_notifications_.erase(shared_from_this());
    server_->handler_.on_close(*this, reason);
  }

  /// A heartbeat deadline of this session has come (called by the server's timer).
  void on_due(EngineServer::Due kind) {
    switch (kind) {
      case EngineServer::Due::Ping: {
        if (state_ != State::Open) return;
        send_control(server_->ping_);
        awaiting_pong_ = true;
        // Counted from when the ping was due, not from when the timer ran, so the suites'
        // exact timing holds; a loop stalled for long still leaves the client half the timeout.
        const auto timeout = std::chrono::milliseconds(server_->options_.ping_timeout_ms);
        server_->schedule(*this, EngineServer::Due::Pong,
                          std::max(due_at + timeout, Clock::now() + timeout / 2));
        return;
      }
      case EngineServer::Due::Pong:
        if (state_ == State::Open) expire_heartbeat();
        return;
      case EngineServer::Due::Drop:
        finish_closing();  // nobody came for the final `1`
        return;
      case EngineServer::Due::None:
        return;
    }
  }

  // Intrusive link in one of the server's deadline queues (EngineServer::schedule).
  EngineSession* due_prev = nullptr;
  EngineSession* due_next = nullptr;
  Clock::time_point due_at{};
  EngineServer::Due due_kind = EngineServer::Due::None;

 private:
  // The one-byte fields come right after due_kind, in the padding of its 8-byte slot (a
  // session is 8 B smaller, one malloc size class less).
  TransportKind transport_;
  State state_ = State::Open;
  bool awaiting_pong_ = false;
  bool base64_ = false;  // the client cannot take binary WebSocket frames
  bool client_close_ = false;
  bool notified_ = false;

  enum class Mode {
    Graceful,   // application close: deliver what is queued, then `1`
    Immediate,  // errors, timeouts, client close: stop now
    Shutdown,   // server stop: like Graceful, but nothing is kept for a later GET
  };
  enum class Notify { Now, Deferred };

  struct Polling {
    std::vector<OutgoingPacketPtr> buffer;
    size_t bytes = 0;
    std::shared_ptr<HttpExchange> parked;
    bool flush_posted = false;
  };
  struct Upgrade {
    Upgrade(std::shared_ptr<WebSocketConnection> c, asio::io_context& io)
        : connection(std::move(c)), timer(io.get_executor()) {}
    std::shared_ptr<WebSocketConnection> connection;
    Timer timer;
    bool probed = false;
  };

  void write_websocket(const OutgoingPacketPtr& packet) {
    if (!base64_) {
      ws_->send(packet);
      return;
    }
    // `b64=1`: binary goes as `b<base64>` text frames, one per record of the polling form.
    std::string_view records = packet->polling_payload();
    while (true) {
      const size_t end = records.find(eio::kRecordSeparator);
      ws_->send_text(records.substr(0, end));
      if (end == std::string_view::npos) break;
      records.remove_prefix(end + 1);
    }
  }

  void handle_packet(eio::Type type, std::string_view data, bool binary) {
    switch (type) {
      case eio::Type::Message:
        server_->handler_.on_message(*this, data, binary);
        break;
      case eio::Type::Pong:
        on_pong();
        break;
      case eio::Type::Ping:
        // v4 heartbeats go server → client; the reference closes on a client ping.
        log_with(log(), spdlog::level::debug,
                 {{"sid", id()}, {"reason", "ping from the client (invalid heartbeat direction)"}},
                 "malformed Engine.IO packet");
        terminate("transport error", Mode::Immediate, Notify::Now);
        break;
      case eio::Type::Close:
        client_close_ = true;
        terminate("transport close", Mode::Immediate, Notify::Now);
        break;
      case eio::Type::Open:
      case eio::Type::Upgrade:
      case eio::Type::Noop:
        break;
    }
  }

  void parse_error(const char* what) {
    log_with(log(), spdlog::level::debug, {{"sid", id()}, {"reason", what}},
             "malformed Engine.IO packet");
    terminate("parse error", Mode::Immediate, Notify::Now);
  }

  void slow_consumer(size_t queued) {
    ++server_->refusals_.slow_consumers;
    log_with(log(), spdlog::level::warn,
             {{"sid", id()},
              {"transport", transport_name(transport_)},
              {"address", handshake_.remote_address},
              {"reason", "slow consumer"}},
             "slow consumer, {} bytes queued; closing", queued);
    terminate("slow consumer", Mode::Immediate, Notify::Deferred);
  }

  // Heartbeat (§1.6) --------------------------------------------------------------------------

  void arm_ping(Clock::time_point at) {
    awaiting_pong_ = false;
    server_->schedule(*this, EngineServer::Due::Ping, at);
  }

  void on_pong() {
    if (!awaiting_pong_) return;  // only a pong answering our ping re-arms the timer
    arm_ping(Clock::now() + std::chrono::milliseconds(server_->options_.ping_interval_ms));
  }

  // Long-polling (§1.4) -----------------------------------------------------------------------

  void enqueue_polling(const OutgoingPacketPtr& packet, size_t size) {
    polling_->buffer.push_back(packet);
    polling_->bytes += size;
    if (!polling_->parked || polling_->flush_posted) return;
    // Answer the parked GET at the end of this loop turn, with everything queued in it.
    polling_->flush_posted = true;
    asio::post(server_->io_, [self = shared_from_this()] {
      if (self->state_ != State::Open || !self->polling_) return;
      self->polling_->flush_posted = false;
      if (self->polling_->parked && !self->polling_->buffer.empty()) {
        self->answer_parked(self->take_polling_payload());
      }
    });
  }

  std::string take_polling_payload() {
    std::string body;
    if (!polling_) return body;
    size_t size = 0;
    for (const auto& packet : polling_->buffer) size += packet->polling_payload().size() + 1;
    body.reserve(size);
    for (const auto& packet : polling_->buffer) {
      if (!body.empty()) body.push_back(eio::kRecordSeparator);
      body.append(packet->polling_payload());
    }
    std::vector<OutgoingPacketPtr>().swap(polling_->buffer);
    polling_->bytes = 0;
    return body;
  }

  void answer_parked(std::string body) {
    auto exchange = std::move(polling_->parked);
    polling_->parked.reset();
    exchange->on_abort = nullptr;
    exchange->respond(polling_response(std::move(body)));
  }

  void on_get_aborted() {
    if (state_ != State::Open || !polling_ || !polling_->parked) return;
    polling_->parked.reset();
    // The reference treats a vanished long-poll as a transport error.
    terminate("transport error", Mode::Immediate, Notify::Now);
  }

  // Upgrade (§1.7) ----------------------------------------------------------------------------

  void on_candidate_message(std::string_view data, bool binary) {
    if (state_ == State::Closing && !binary && data == "5") {
      // Closed by the server after the probe: the client has paused polling and reads only
      // this WebSocket now, so the close packet must travel here (else it waits for its ping
      // timeout).
      auto connection = std::move(upgrade_->connection);
      upgrade_.reset();
      for (const auto& packet : polling_->buffer) connection->send(packet);
      std::vector<OutgoingPacketPtr>().swap(polling_->buffer);
      connection->send(server_->close_);
      connection->close(ws_close::kNormal);
      finish_closing();
      return;
    }
    if (state_ != State::Open) return;
    if (!binary && data == "2probe") {
      upgrade_->connection->send(server_->probe_);
      upgrade_->probed = true;
      // From now on every GET is released at once; the one parked now first of all.
      if (polling_->parked) {
        answer_parked(polling_->buffer.empty() ? std::string("6") : take_polling_payload());
      }
      return;
    }
    if (!binary && data == "5") {
      complete_upgrade();
      return;
    }
    log_with(log(), spdlog::level::debug,
             {{"sid", id()}, {"reason", "unexpected packet during upgrade"}}, "upgrade aborted");
    abort_upgrade();
  }

  void complete_upgrade() {
    auto connection = std::move(upgrade_->connection);
    upgrade_.reset();
    if (polling_->parked) answer_parked("6");
    ws_ = std::move(connection);
    transport_ = TransportKind::WebSocket;
    for (const auto& packet : polling_->buffer) write_websocket(packet);
    polling_.reset();
    --server_->polling_count_;
    ++server_->websocket_count_;
    log_with(log(), spdlog::level::debug, {{"sid", id()}, {"transport", "websocket"}},
             "session upgraded");
  }

  void abort_upgrade() {
    if (!upgrade_) return;
    upgrade_->connection->close(ws_close::kNormal);
    upgrade_.reset();
  }

  // Closing -----------------------------------------------------------------------------------

  void terminate(const std::string& reason, Mode mode, Notify notify) {
    if (state_ != State::Open) return;
    const auto self = shared_from_this();
    server_->unschedule(*this);
    // After `3probe` the client pauses polling and finishes the upgrade with `5`: keep the
    // candidate so the close can be delivered on it (see on_candidate_message).
    const bool hold_upgrade = upgrade_ && upgrade_->probed && mode == Mode::Graceful &&
                              transport_ == TransportKind::Polling;
    if (upgrade_ && !hold_upgrade) abort_upgrade();
    if (transport_ == TransportKind::WebSocket) {
      --server_->websocket_count_;
    } else {
      --server_->polling_count_;
    }
    log_with(log(), spdlog::level::debug,
             {{"sid", id()},
              {"transport", transport_name(transport_)},
              {"address", handshake_.remote_address},
              {"reason", reason}},
             "session closed");

    bool keep_for_final_get = false;
    if (transport_ == TransportKind::WebSocket) {
      ws_->set_handler(nullptr);
      if (reason == "slow consumer") {
        ws_->abort();  // its queue is what is wrong; do not wait for it to drain
      } else {
        if (mode != Mode::Immediate) ws_->send(server_->close_);
        ws_->close(mode == Mode::Shutdown ? ws_close::kGoingAway : ws_close::kNormal);
      }
      ws_.reset();
    } else if (mode == Mode::Graceful) {
      // As the reference: the `1` travels only after what is queued has drained, in a poll of
      // its own. socket.io-client acts on a close packet at once but on the decoded packets of
      // the same payload one tick later, so a DISCONNECT batched with the `1` would be read as
      // "transport close" and the client would reconnect. Until the `1` is taken the sid is
      // kept (at most a heartbeat period).
      if (polling_->parked && polling_->buffer.empty()) {
        answer_parked(std::string(server_->close_->polling_payload()));
      } else {
        if (polling_->parked) answer_parked(take_polling_payload());
        keep_for_final_get = true;
      }
    } else if (polling_->parked) {
      // A client-sent `1` releases the parked GET with a noop (suite: "forcefully closes the
      // session" expects exactly `6`); otherwise the GET carries the close. Errors drop what
      // was queued; a server shutdown sends it along with the close.
      if (mode == Mode::Immediate) {
        std::vector<OutgoingPacketPtr>().swap(polling_->buffer);
        polling_->bytes = 0;
      }
      polling_->buffer.push_back(client_close_ ? server_->noop_ : server_->close_);
      answer_parked(take_polling_payload());
    }

    if (keep_for_final_get || hold_upgrade) {
      state_ = State::Closing;
      server_->schedule(
          *this, EngineServer::Due::Drop,
          Clock::now() + std::chrono::milliseconds(server_->options_.ping_interval_ms +
                                                   server_->options_.ping_timeout_ms));
    } else {
      state_ = State::Closed;
      polling_.reset();
      server_->erase(id());
    }

    if (notify == Notify::Now) {
      notify_closed(reason);
    } else {
      server_->pending_notifications_.emplace(self, reason);
      asio::post(server_->io_, [self, reason] { self->notify_closed(reason); });
    }
  }

  void finish_closing() {
    if (state_ != State::Closing) return;
    if (upgrade_) abort_upgrade();
    state_ = State::Closed;
    server_->unschedule(*this);
    polling_.reset();
    server_->erase(id());
  }

  void release_transports() {
    if (server_ != nullptr) server_->unschedule(*this);
    upgrade_.reset();
    if (ws_) {
      ws_->set_handler(nullptr);
      ws_->abort();
      ws_.reset();
    }
    if (polling_ && polling_->parked) polling_->parked->on_abort = nullptr;
    polling_.reset();
  }

  EngineServer* server_;
  InlineId id_;  // the sid: 20 characters, inline
  HandshakeInfo handshake_;
  std::unique_ptr<Polling> polling_;  // polling sessions only
  std::unique_ptr<Upgrade> upgrade_;  // while a WebSocket candidate is being probed
  std::shared_ptr<WebSocketConnection> ws_;
};

// ---------------------------------------------------------------------------------------------

struct EngineServer::TimerHolder {
  explicit TimerHolder(asio::io_context& io) : timer(io.get_executor()) {}
  Timer timer;
};

EngineServer::EngineServer(asio::io_context& io, EngineOptions options, EngineHandler& handler,
                           std::shared_ptr<WriteScheduler> scheduler)
    : io_(io),
      options_(std::move(options)),
      handler_(handler),
      scheduler_(std::move(scheduler)),
      ping_(OutgoingPacket::control('2')),
      noop_(OutgoingPacket::control('6')),
      close_(OutgoingPacket::control('1')),
      probe_(OutgoingPacket::control('3', "probe")),
      timer_(std::make_unique<TimerHolder>(io)) {
  handshakes_ = TokenBucket(options_.max_handshakes_per_second, options_.max_handshakes_per_second,
                            Clock::now());
  path_ = options_.path;
  if (path_.empty() || path_.front() != '/') path_.insert(path_.begin(), '/');
  while (!path_.empty() && path_.back() == '/') path_.pop_back();
}

EngineServer::~EngineServer() {
  close_all("server shutting down");
  // Deferred reports still queued are delivered now: the handler must not hear about a
  // session after the server is gone.
  auto pending = pending_notifications_;
  for (const auto& [session, reason] : pending) session->notify_closed(reason);
  auto sessions = sessions_;
  for (auto& [sid, session] : sessions) session->detach_server();
  sessions_.clear();
}

void EngineServer::schedule(EngineSession& session, Due kind, Clock::time_point at) {
  unschedule(session);
  DueQueue& queue = due_[static_cast<int>(kind) - 1];
  session.due_kind = kind;
  session.due_at = at;
  session.due_prev = queue.tail;
  session.due_next = nullptr;
  if (queue.tail != nullptr) {
    queue.tail->due_next = &session;
  } else {
    queue.head = &session;
  }
  queue.tail = &session;
  // Only an earlier deadline re-arms the timer; a later one is picked up when it fires.
  if (!timer_armed_ || at < timer_at_) rearm();
}

void EngineServer::unschedule(EngineSession& session) {
  if (session.due_kind == Due::None) return;
  DueQueue& queue = due_[static_cast<int>(session.due_kind) - 1];
  (session.due_prev != nullptr ? session.due_prev->due_next : queue.head) = session.due_next;
  (session.due_next != nullptr ? session.due_next->due_prev : queue.tail) = session.due_prev;
  session.due_prev = session.due_next = nullptr;
  session.due_kind = Due::None;
  if (timer_armed_ && due_[0].head == nullptr && due_[1].head == nullptr &&
      due_[2].head == nullptr) {
    // Nothing left to time: a pending wait would keep io_context::run() busy for nothing.
    timer_armed_ = false;
    timer_->timer.cancel();
  }
}

void EngineServer::rearm() {
  std::optional<Clock::time_point> earliest;
  for (const DueQueue& queue : due_) {
    if (queue.head != nullptr && (!earliest || queue.head->due_at < *earliest)) {
      earliest = queue.head->due_at;
    }
  }
  if (!earliest) return;  // an armed timer with nothing due is harmless: on_timer re-checks
  timer_armed_ = true;
  timer_at_ = *earliest;
  timer_->timer.expires_at(*earliest);
  timer_->timer.async_wait([this, alive = std::weak_ptr<char>(alive_)](asio::error_code ec) {
    if (ec || alive.expired()) return;
    timer_armed_ = false;
    on_timer();
  });
}

void EngineServer::on_timer() {
  const auto now = Clock::now();
  // Ping before Pong: a ping sent now may already be due for its timeout if the loop stalled.
  for (DueQueue& queue : due_) {
    while (queue.head != nullptr && queue.head->due_at <= now) {
      const auto session = queue.head->shared_from_this();
      const Due kind = session->due_kind;
      unschedule(*session);
      session->on_due(kind);
    }
  }
  if (!timer_armed_) rearm();
}

bool EngineServer::matches(std::string_view path) const {
  if (path.size() < path_.size() || path.substr(0, path_.size()) != path_) return false;
  return path.size() == path_.size() || path[path_.size()] == '/';
}

EngineSocket* EngineServer::find(std::string_view sid) const {
  const auto it = sessions_.find(sid);
  if (it == sessions_.end() || it->second->state() != EngineSession::State::Open) return nullptr;
  return it->second.get();
}

std::shared_ptr<EngineSession> EngineServer::lookup(std::string_view sid) {
  const auto it = sessions_.find(sid);
  return it == sessions_.end() ? nullptr : it->second;
}

void EngineServer::erase(std::string_view sid) {
  sessions_.erase(sid);
}

std::optional<HttpResponse> EngineServer::verify(const HttpRequest& request, bool upgrade,
                                                 std::shared_ptr<EngineSession>* session) {
  // Same order of checks as the reference's verify() and handshake().
  const std::string* transport = request.param("transport");
  if (transport == nullptr || (*transport != "polling" && *transport != "websocket")) {
    return unknown_transport();
  }
  if (const std::string* origin = request.header("origin")) {
    if (!valid_header_value(*origin)) return bad_request();
  }
  if (const std::string* sid = request.param("sid")) {
    auto found = lookup(*sid);
    if (!found) return unknown_sid();
    if (found->heartbeat_expired()) {
      found->expire_heartbeat();
      return unknown_sid();
    }
    if (upgrade) {
      if (found->state() != EngineSession::State::Open) return unknown_sid();
      if (*transport != "websocket" || !options_.allow_upgrades) return bad_request();
    } else if (found->state() == EngineSession::State::Open) {
      // An upgrade probe may be in flight on another connection: apply its frames first.
      found->sync_upgrade();
      if (found->state() != EngineSession::State::Open) return unknown_sid();
      if (*transport != transport_name(found->transport())) return bad_request();
    } else if (*transport != "polling") {
      return bad_request();
    }
    *session = std::move(found);
    return std::nullopt;
  }
  if (request.method != "GET") return bad_method();
  if ((*transport == "websocket") != upgrade) return bad_request();
  const std::string* version = request.param("EIO");
  if (version == nullptr || *version != "4") return bad_version();
  return std::nullopt;
}

void EngineServer::handle_request(HttpRequest request,
                                  const std::shared_ptr<HttpExchange>& exchange) {
  std::shared_ptr<EngineSession> session;
  if (auto error = verify(request, false, &session)) {
    exchange->respond(std::move(*error));
    return;
  }
  if (!session) {
    if (auto refusal = refuse_new_session(TransportKind::Polling, request)) {
      exchange->respond(std::move(*refusal));
      return;
    }
    handshake_polling(std::move(request), exchange);
    return;
  }
  if (request.method == "GET") {
    session->on_get(exchange);
  } else if (request.method == "POST") {
    session->on_post(request.body, request.header("content-type"), exchange);
  } else {
    exchange->respond(bad_request());  // the reference answers 500; 400 is what clients expect
  }
}

std::optional<HttpResponse> EngineServer::check_upgrade(const HttpRequest& request) {
  std::shared_ptr<EngineSession> session;
  if (auto error = verify(request, true, &session)) return error;
  if (session) return std::nullopt;  // the upgrade of an existing session: no new session
  return refuse_new_session(TransportKind::WebSocket, request);
}

std::optional<HttpResponse> EngineServer::refuse_new_session(TransportKind transport,
                                                             const HttpRequest& request) {
  // 503 with Engine.IO's error body: socket.io-client reports a connect_error and retries with
  // its reconnection backoff. The polling cap is checked first, so it spends no token.
  if (transport == TransportKind::Polling && options_.max_polling_sessions != 0 &&
      polling_count_ >= options_.max_polling_sessions) {
    ++refusals_.polling_sessions;
    log_with(log(), spdlog::level::debug,
             {{"address", request.remote_address},
              {"transport", "polling"},
              {"reason", "gateway.maxPollingSessions"}},
             "handshake refused: {} polling sessions open", polling_count_);
    return HttpResponse::engine_error(3, "Too many polling sessions", 503);
  }
  if (!handshakes_.try_take(Clock::now())) {
    ++refusals_.handshake_rate;
    log_with(log(), spdlog::level::debug,
             {{"address", request.remote_address},
              {"transport", transport_name(transport)},
              {"reason", "gateway.maxHandshakesPerSecond"}},
             "handshake refused: over {} handshakes per second",
             options_.max_handshakes_per_second);
    return HttpResponse::engine_error(3, "Too many handshakes", 503);
  }
  return std::nullopt;
}

CompactStringMap EngineServer::kept_headers(HttpRequest& request) const {
  if (options_.handshake_headers) {
    std::map<std::string, std::string> kept;
    for (const auto& name : *options_.handshake_headers) {
      auto it = request.headers.find(name);
      if (it != request.headers.end()) kept.emplace(name, std::move(it->second));
    }
    return CompactStringMap(kept);
  }
  // The WebSocket handshake's own headers mean nothing once it is done; dropping them saves
  // memory on every idle WebSocket.
  if (request.upgrade) {
    for (const char* name : {"connection", "upgrade", "sec-websocket-key",
                             "sec-websocket-extensions", "sec-websocket-version"}) {
      request.headers.erase(name);
    }
  }
  return CompactStringMap(request.headers);
}

std::shared_ptr<EngineSession> EngineServer::create_session(TransportKind transport,
                                                            HttpRequest& request) {
  const auto created = Clock::now();
  HandshakeInfo info;
  info.time = std::chrono::system_clock::now();
  info.remote_address = std::move(request.remote_address);
  if (options_.keep_handshake_url) {
    info.request_url = std::make_unique<const HandshakeInfo::Url>(
        HandshakeInfo::Url{std::move(request.target), CompactStringMap(request.query)});
  }
  info.headers = kept_headers(request);
  // The reference's `supportsBinary = !req._query.b64`: any non-empty value asks for base64.
  const std::string* b64 = request.param("b64");
  const bool base64 = b64 != nullptr && !b64->empty();
  std::string sid = random_base64url_id();  // 20 characters, the reference's sid length
  while (sessions_.count(sid) != 0) sid = random_base64url_id();
  auto session = std::make_shared<EngineSession>(*this, sid, transport, std::move(info), base64);
  sessions_.emplace(session->id(), session);
  if (transport == TransportKind::Polling) {
    ++polling_count_;
  } else {
    ++websocket_count_;
  }
  session->start(created);
  return session;
}

void EngineServer::open_session(const std::shared_ptr<EngineSession>& session) {
  std::string json = "{\"sid\":\"" + std::string(session->id()) + "\",\"upgrades\":";
  json += session->transport() == TransportKind::Polling && options_.allow_upgrades
              ? "[\"websocket\"]"
              : "[]";
  json += ",\"pingInterval\":" + std::to_string(options_.ping_interval_ms);
  json += ",\"pingTimeout\":" + std::to_string(options_.ping_timeout_ms);
  json += ",\"maxPayload\":" + std::to_string(options_.max_payload) + "}";
  session->send_control(OutgoingPacket::control('0', std::move(json)));
  log_with(log(), spdlog::level::debug,
           {{"sid", session->id()},
            {"transport", transport_name(session->transport())},
            {"address", session->handshake().remote_address}},
           "session opened");
}

void EngineServer::handshake_polling(HttpRequest request,
                                     const std::shared_ptr<HttpExchange>& exchange) {
  auto session = create_session(TransportKind::Polling, request);
  open_session(session);
  // The handshake response carries the open packet alone (the reference emits "connection"
  // after answering), so clients parse it as one JSON document.
  session->on_get(exchange);
  handler_.on_open(*session);
}

void EngineServer::accept_websocket(HttpRequest request,
                                    std::shared_ptr<WebSocketConnection> connection) {
  const std::string* sid = request.param("sid");
  if (sid == nullptr) {
    auto session = create_session(TransportKind::WebSocket, request);
    session->attach_websocket(std::move(connection));
    open_session(session);
    handler_.on_open(*session);
    return;
  }
  auto session = lookup(*sid);
  if (!session || session->state() != EngineSession::State::Open ||
      session->transport() != TransportKind::Polling || session->upgrading()) {
    // Already upgraded, already upgrading, or gone: the reference completes the handshake and
    // closes the new socket (§1.5).
    log_with(log(), spdlog::level::debug, {{"sid", *sid}, {"reason", "extra WebSocket"}},
             "WebSocket upgrade refused");
    connection->close(ws_close::kNormal);
    return;
  }
  session->begin_upgrade(std::move(connection));
}

void EngineServer::close_all(const std::string& reason) {
  std::vector<std::shared_ptr<EngineSession>> sessions;
  sessions.reserve(sessions_.size());
  for (const auto& [sid, session] : sessions_) sessions.push_back(session);
  for (const auto& session : sessions) {
    if (session->state() == EngineSession::State::Open) {
      session->shutdown(reason);
    } else {
      session->drop();  // a closed session waiting for its final GET: nothing will serve it
    }
  }
  sessions_.clear();
  // Reports deferred by close()/send() are due now: after this the handler hears nothing more.
  auto pending = pending_notifications_;
  for (const auto& [session, reason] : pending) session->notify_closed(reason);
}

}  // namespace steedos::gateway
