#include "transport/redis_connection.hpp"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <asio/connect.hpp>
#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/ssl.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <deque>
#include <utility>
#include <vector>

#include "common/log.hpp"

namespace steedos::transport {

namespace {

const std::shared_ptr<spdlog::logger>& logger() {
  static const auto instance = component_logger("transporter");
  return instance;
}

constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kMaxGather = 64;                             // buffers per socket write
constexpr auto kDeliverSlice = std::chrono::milliseconds(1);  // messages handed over per turn
// ... but at least this many (when there are): a consumer whose one message outlasts the slice
// (an event fanned out to 1,000 WebSockets, one send() each) would otherwise get one message per
// loop turn and lose everything that batches work per turn (the gateway writes the first packet
// of a turn to each socket at once and gathers the rest into one writev). The NATS transporter
// hands over everything pending in one turn; this keeps a bound. Measured with
// bench/steedos_fanout.js (300 events to 1,000 sockets, Redis/NATS deliveries/s): 0.08x with one
// message per turn, ~0.8x with 64, 1.0-1.1x with 256 or 1024. The price: a turn may run 256
// consumer calls before the socket is read again (NATS: unbounded).
constexpr size_t kDeliverMinBatch = 256;

bool is_pem(const std::string& value) {
  return value.rfind("-----BEGIN", 0) == 0;
}

bool is_ip_address(const std::string& host) {
  asio::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

bool starts_with(const std::string& text, std::string_view prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

struct RedisConnection::Impl : std::enable_shared_from_this<RedisConnection::Impl> {
  enum class Phase { idle, connecting, handshake, ready, closed };
  enum class Internal { auth, first_ping, ping, user };
  struct Pending {
    Internal internal;
    RedisCommand kind = RedisCommand::other;
    std::string tag;
    size_t bytes = 0;
  };

  Impl(asio::io_context& l, RedisConnectionOptions o, Handlers h)
      : loop(l),
        options(std::move(o)),
        handlers(std::move(h)),
        resolver(l),
        socket(l),
        connect_timer(l),
        ping_timer(l),
        pong_timer(l),
        decoder(options.max_reply_bytes),
        read_buffer(kReadChunk) {}

  asio::io_context& loop;
  const RedisConnectionOptions options;
  Handlers handlers;
  Phase phase = Phase::idle;
  const char* step = "resolve";  // what the connect timeout interrupts, for its message

  asio::ip::tcp::resolver resolver;
  asio::ip::tcp::socket socket;  // the plain connection (unused with TLS)
  std::shared_ptr<asio::ssl::context> tls_context;
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket>> tls;
  asio::steady_timer connect_timer;
  asio::steady_timer ping_timer;
  asio::steady_timer pong_timer;

  RespDecoder decoder;
  std::vector<char> read_buffer;
  std::deque<Pending> pending;  // replies expected, in send order
  bool ping_outstanding = false;
  bool ping_error_logged = false;

  struct Inbound {
    std::string channel;
    std::string payload;
  };
  std::deque<Inbound> inbox;  // message pushes read, not yet handed to on_message
  size_t inbox_bytes = 0;
  bool delivery_posted = false;
  bool read_paused = false;  // inbox above max_inbox_bytes: resumes at half of it

  std::deque<std::string> outbox;  // deque: elements stay put while a write reads them
  size_t outbox_bytes = 0;
  bool writing = false;
  size_t writing_count = 0;
  std::vector<asio::const_buffer> write_buffers;

  asio::ip::tcp::socket& lowest() { return tls ? tls->next_layer() : socket; }

  std::string describe() const {
    const auto& ep = options.endpoint;
    const bool v6 = ep.host.find(':') != std::string::npos;
    return std::string(options.tls.enabled ? "TLS " : "") + (v6 ? "[" : "") + ep.host +
           (v6 ? "]" : "") + ":" + std::to_string(ep.port);
  }

  std::string tls_name() const {
    return options.tls.servername.empty() ? options.endpoint.host : options.tls.servername;
  }

  // ---------------------------------------------------------------------------------------
  // Failure and close: one path.

  void shutdown_io() {
    asio::error_code ignored;
    connect_timer.cancel();
    ping_timer.cancel();
    pong_timer.cancel();
    resolver.cancel();
    lowest().close(ignored);
  }

  void fail(const std::string& reason) {
    if (phase == Phase::closed) return;
    phase = Phase::closed;
    shutdown_io();
    auto on_failed = std::move(handlers.on_failed);
    handlers = Handlers{};
    if (on_failed) on_failed(reason);
  }

  void close() {
    if (phase == Phase::closed) return;
    phase = Phase::closed;
    handlers = Handlers{};
    shutdown_io();
  }

  /// A failure found while starting, reported from the loop (never inside start()).
  void fail_later(std::string reason) {
    asio::post(loop,
               [self = shared_from_this(), reason = std::move(reason)] { self->fail(reason); });
  }

  // ---------------------------------------------------------------------------------------
  // Connect

  void setup_tls() {
    const RedisTls& t = options.tls;
    tls_context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
    auto& ctx = *tls_context;
    auto load = [](const char* what, const std::string& value, auto&& from_text, auto&& from_file) {
      try {
        if (is_pem(value)) {
          from_text(asio::buffer(value));
        } else {
          from_file(value);
        }
      } catch (const std::exception& e) {
        throw std::runtime_error(std::string("TLS: cannot load the ") + what + " (" +
                                 (is_pem(value) ? std::string("PEM text") : value) +
                                 "): " + e.what());
      }
    };
    if (t.reject_unauthorized) {
      ctx.set_verify_mode(asio::ssl::verify_peer);
      if (t.ca.empty()) {
        ctx.set_default_verify_paths();
      } else {
        load(
            "CA certificate", t.ca, [&](auto b) { ctx.add_certificate_authority(b); },
            [&](const std::string& f) { ctx.load_verify_file(f); });
      }
    } else {
      ctx.set_verify_mode(asio::ssl::verify_none);
    }
    if (!t.cert.empty()) {
      load(
          "client certificate", t.cert, [&](auto b) { ctx.use_certificate_chain(b); },
          [&](const std::string& f) { ctx.use_certificate_chain_file(f); });
    }
    if (!t.key.empty()) {
      load(
          "client key", t.key, [&](auto b) { ctx.use_private_key(b, asio::ssl::context::pem); },
          [&](const std::string& f) { ctx.use_private_key_file(f, asio::ssl::context::pem); });
    }
    tls = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket>>(loop, ctx);
  }

  void start() {
    if (phase != Phase::idle) return;
    phase = Phase::connecting;
    if (options.tls.enabled) {
      try {
        setup_tls();
      } catch (const std::exception& e) {
        fail_later(e.what());
        return;
      }
    }
    connect_timer.expires_after(std::chrono::milliseconds(options.connect_timeout_ms));
    connect_timer.async_wait([weak = weak_from_this()](const std::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self || self->phase == Phase::ready || self->phase == Phase::closed) return;
      self->fail("not connected within " + std::to_string(self->options.connect_timeout_ms) +
                 " ms (" + self->step + ")");
    });
    // An address needs no resolver (Asio resolves on a helper thread of its own).
    asio::error_code not_an_address;
    const auto address = asio::ip::make_address(options.endpoint.host, not_an_address);
    if (!not_an_address) {
      step = "connect";
      lowest().async_connect(
          asio::ip::tcp::endpoint(address, static_cast<unsigned short>(options.endpoint.port)),
          [self = shared_from_this()](const std::error_code& ec) { self->on_connected(ec); });
      return;
    }
    resolver.async_resolve(
        options.endpoint.host, std::to_string(options.endpoint.port),
        [self = shared_from_this()](const std::error_code& ec,
                                    asio::ip::tcp::resolver::results_type results) {
          if (self->phase == Phase::closed) return;
          if (ec) {
            return self->fail("cannot resolve " + self->options.endpoint.host + ": " +
                              ec.message());
          }
          self->step = "connect";
          self->connect(results);
        });
  }

  void connect(const asio::ip::tcp::resolver::results_type& results) {
    asio::async_connect(
        lowest(), results,
        [self = shared_from_this()](const std::error_code& ec, const asio::ip::tcp::endpoint&) {
          self->on_connected(ec);
        });
  }

  void on_connected(const std::error_code& ec) {
    if (phase == Phase::closed) return;
    if (ec) return fail("cannot connect: " + ec.message());
    asio::error_code ignored;
    lowest().set_option(asio::ip::tcp::no_delay(true), ignored);
    if (tls) {
      handshake();
    } else {
      after_connect();
    }
  }

  void handshake() {
    const std::string name = tls_name();
    // SNI only for names: RFC 6066 forbids IP literals in server_name.
    step = "TLS handshake";
    if (!is_ip_address(name)) SSL_set_tlsext_host_name(tls->native_handle(), name.c_str());
    if (options.tls.reject_unauthorized) {
      tls->set_verify_callback(asio::ssl::host_name_verification(name));
    }
    tls->async_handshake(
        asio::ssl::stream_base::client, [self = shared_from_this()](const std::error_code& ec) {
          if (self->phase == Phase::closed) return;
          if (ec) {
            std::string reason = "TLS handshake failed: " + ec.message();
            const long verify = SSL_get_verify_result(self->tls->native_handle());
            if (verify != X509_V_OK) {
              reason += std::string(" (certificate: ") + X509_verify_cert_error_string(verify) +
                        ", checked against '" + self->tls_name() + "')";
            }
            return self->fail(reason);
          }
          self->after_connect();
        });
  }

  void after_connect() {
    phase = Phase::handshake;
    step = options.password.empty() ? "handshake: PING" : "handshake: AUTH and PING";
    do_read();
    if (!options.password.empty()) {
      pending.push_back(Pending{Internal::auth, RedisCommand::other, {}, 0});
      enqueue(options.username.empty()
                  ? format_command({"AUTH", options.password})
                  : format_command({"AUTH", options.username, options.password}));
    }
    pending.push_back(Pending{Internal::first_ping, RedisCommand::other, {}, 0});
    enqueue(format_command({"PING"}));
  }

  void become_ready() {
    connect_timer.cancel();
    phase = Phase::ready;
    arm_ping();
    if (handlers.on_ready) handlers.on_ready();
  }

  // ---------------------------------------------------------------------------------------
  // Liveness

  void arm_ping() {
    if (options.ping_interval_ms <= 0) return;
    ping_timer.expires_after(std::chrono::milliseconds(options.ping_interval_ms));
    ping_timer.async_wait([weak = weak_from_this()](const std::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self || self->phase != Phase::ready) return;
      self->send_ping();
      self->arm_ping();
    });
  }

  void send_ping() {
    if (ping_outstanding) return;  // the pong timer is running already
    ping_outstanding = true;
    pending.push_back(Pending{Internal::ping, RedisCommand::other, {}, 0});
    enqueue(format_command({"PING"}));
    pong_timer.expires_after(std::chrono::milliseconds(options.ping_timeout_ms));
    pong_timer.async_wait([weak = weak_from_this()](const std::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self || !self->ping_outstanding) return;
      self->fail("no reply to PING within " + std::to_string(self->options.ping_timeout_ms) +
                 " ms (server stalled or connection dead)");
    });
  }

  // ---------------------------------------------------------------------------------------
  // Read

  template <typename Handler>
  void read_some(Handler&& handler) {
    auto buffer = asio::buffer(read_buffer);
    if (tls) {
      tls->async_read_some(buffer, std::forward<Handler>(handler));
    } else {
      socket.async_read_some(buffer, std::forward<Handler>(handler));
    }
  }

  void do_read() {
    read_some(
        [self = shared_from_this()](const std::error_code& ec, size_t n) { self->on_read(ec, n); });
  }

  void on_read(const std::error_code& ec, size_t n) {
    if (phase == Phase::closed) return;
    if (ec) {
      if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
        return fail("connection closed by the server");
      }
      std::string reason = "read failed: " + ec.message();
      if (reason.find("certificate required") != std::string::npos) {
        reason += " (the server wants a client certificate: set tls cert and key)";
      }
      return fail(reason);
    }
    decoder.feed(read_buffer.data(), n);
    RespReply reply;
    for (;;) {
      const auto r = decoder.next(reply);
      if (r == RespDecoder::Result::need_more) break;
      if (r == RespDecoder::Result::error) return fail(decoder.error());
      handle_reply(reply);
      if (phase == Phase::closed) return;  // a handler closed us
    }
    // Reading goes on while the consumer works through the inbox: Redis drops a subscriber
    // whose unsent output grows too large (client-output-buffer-limit pubsub), so the backlog
    // is better kept here, up to max_inbox_bytes.
    if (inbox_bytes > options.max_inbox_bytes) {
      read_paused = true;
    } else {
      do_read();
    }
    schedule_delivery();
  }

  // ---------------------------------------------------------------------------------------
  // Delivery of `message` pushes: in arrival order, in slices of about kDeliverSlice (and at
  // least kDeliverMinBatch messages), so the reads (and the PING replies among them) keep their
  // turn on the loop.

  void schedule_delivery() {
    if (delivery_posted || inbox.empty()) return;
    delivery_posted = true;
    asio::post(loop, [weak = weak_from_this()] {
      auto self = weak.lock();
      if (!self) return;
      self->delivery_posted = false;
      self->deliver();
    });
  }

  void deliver() {
    const auto start = std::chrono::steady_clock::now();
    size_t delivered = 0;
    while (phase != Phase::closed && !inbox.empty()) {
      Inbound m = std::move(inbox.front());
      inbox.pop_front();
      inbox_bytes -= m.channel.size() + m.payload.size();
      if (handlers.on_message) handlers.on_message(m.channel, m.payload);
      if (++delivered >= kDeliverMinBatch &&
          std::chrono::steady_clock::now() - start >= kDeliverSlice) {
        break;
      }
    }
    if (phase == Phase::closed) return;
    if (read_paused && inbox_bytes <= options.max_inbox_bytes / 2) {
      read_paused = false;
      do_read();
    }
    schedule_delivery();
  }

  void handle_reply(RespReply& reply) {
    if (reply.type == RespReply::Type::array && reply.elements.size() == 3 &&
        reply.elements[0].is_text("message")) {
      Inbound m{std::move(reply.elements[1].text), std::move(reply.elements[2].text)};
      inbox_bytes += m.channel.size() + m.payload.size();
      inbox.push_back(std::move(m));
      return;
    }
    if (pending.empty()) {
      return fail("unexpected reply from Redis (nothing was asked)" +
                  (reply.is_error() ? ": " + reply.text : std::string()));
    }
    Pending p = std::move(pending.front());
    pending.pop_front();
    switch (p.internal) {
      case Internal::auth:
        return on_auth_reply(reply);
      case Internal::first_ping:
        if (reply.is_error()) {
          if (starts_with(reply.text, "NOAUTH")) {
            return fail("Redis requires authentication (" + reply.text + "): configure a password");
          }
          if (!starts_with(reply.text, "NOPERM")) return fail("Redis refused PING: " + reply.text);
          logger()->warn("Redis {} {}: PING not permitted ({}); no liveness check", options.role,
                         describe(), reply.text);
          ping_error_logged = true;
        }
        return become_ready();
      case Internal::ping:
        ping_outstanding = false;
        pong_timer.cancel();
        if (reply.is_error() && !ping_error_logged) {
          ping_error_logged = true;
          logger()->warn("Redis {} {}: PING answered with an error: {}", options.role, describe(),
                         reply.text);
        }
        return;
      case Internal::user:
        if (handlers.on_reply) handlers.on_reply(p.kind, p.tag, p.bytes, reply);
        return;
    }
  }

  void on_auth_reply(const RespReply& reply) {
    if (!reply.is_error()) return;
    if (starts_with(reply.text, "ERR") &&
        (reply.text.find("without any password configured") != std::string::npos ||
         reply.text.find("no password is set") != std::string::npos)) {
      logger()->warn("Redis {} {}: a password is configured but the server has none ({})",
                     options.role, describe(), reply.text);
      return;
    }
    const std::string who =
        options.username.empty() ? "the default user" : "user '" + options.username + "'";
    fail("authentication failed for " + who + " (" + reply.text + ")");
  }

  // ---------------------------------------------------------------------------------------
  // Write

  bool send(RedisCommand kind, std::string tag, std::string encoded, size_t bytes) {
    if (phase != Phase::ready) return false;
    if (outbox_bytes + encoded.size() > options.max_write_bytes) return false;
    pending.push_back({Internal::user, kind, std::move(tag), bytes});
    enqueue(std::move(encoded));
    return true;
  }

  void enqueue(std::string data) {
    outbox_bytes += data.size();
    outbox.push_back(std::move(data));
    if (!writing) do_write();
  }

  void do_write() {
    writing_count = std::min(outbox.size(), kMaxGather);
    write_buffers.clear();
    for (size_t i = 0; i < writing_count; ++i) write_buffers.push_back(asio::buffer(outbox[i]));
    writing = true;
    auto done = [self = shared_from_this()](const std::error_code& ec, size_t) {
      self->on_write(ec);
    };
    if (tls) {
      asio::async_write(*tls, write_buffers, std::move(done));
    } else {
      asio::async_write(socket, write_buffers, std::move(done));
    }
  }

  void on_write(const std::error_code& ec) {
    writing = false;
    if (phase == Phase::closed) return;
    if (ec) return fail("write failed: " + ec.message());
    for (size_t i = 0; i < writing_count; ++i) {
      outbox_bytes -= outbox.front().size();
      outbox.pop_front();
    }
    if (!outbox.empty()) do_write();
  }
};

std::shared_ptr<RedisConnection> RedisConnection::create(asio::io_context& loop,
                                                         RedisConnectionOptions options,
                                                         Handlers handlers) {
  return std::shared_ptr<RedisConnection>(
      new RedisConnection(std::make_shared<Impl>(loop, std::move(options), std::move(handlers))));
}

RedisConnection::RedisConnection(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

RedisConnection::~RedisConnection() {
  impl_->close();
}

void RedisConnection::start() {
  impl_->start();
}

bool RedisConnection::send(RedisCommand kind, std::string tag, std::string encoded, size_t bytes) {
  return impl_->send(kind, std::move(tag), std::move(encoded), bytes);
}

bool RedisConnection::ready() const {
  return impl_->phase == Impl::Phase::ready;
}

size_t RedisConnection::pending_replies() const {
  return impl_->pending.size();
}

void RedisConnection::close() {
  impl_->close();
}

std::string RedisConnection::describe() const {
  return impl_->describe();
}

}  // namespace steedos::transport
