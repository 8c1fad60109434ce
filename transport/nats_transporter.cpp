#include "transport/nats_transporter.hpp"

#include "transport/nats_status.hpp"
#include "transport/url_redaction.hpp"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <stdexcept>
#include <thread>
#include <utility>

#include "common/log.hpp"

namespace steedos::transport {

namespace {

/// How long close() waits for cnats to confirm that no callback will run any more. Normally a
/// few milliseconds; on timeout the Impl is deliberately leaked rather than freed under cnats.
constexpr auto kCloseWait = std::chrono::seconds(5);

/// Delivered messages are handed back to cnats in batches of this size, or after this delay.
constexpr size_t kReleaseBatch = 256;
constexpr auto kReleaseDelay = std::chrono::milliseconds(5);

/// Within a batch of messages from one read, what handlers published is written out after
/// every this many messages (and at the end of the batch).
constexpr unsigned kWriteEvery = 8;

const std::shared_ptr<spdlog::logger>& logger() {
  static const auto instance = component_logger("transporter");
  return instance;
}

struct OptionsDeleter {
  void operator()(natsOptions* o) const { natsOptions_Destroy(o); }
};
struct ConnectionDeleter {
  void operator()(natsConnection* c) const { natsConnection_Destroy(c); }
};
struct SubscriptionDeleter {
  void operator()(natsSubscription* s) const { natsSubscription_Destroy(s); }
};
struct InboxDeleter {
  void operator()(natsInbox* i) const { natsInbox_Destroy(i); }
};
using OptionsPtr = std::unique_ptr<natsOptions, OptionsDeleter>;
using ConnectionPtr = std::unique_ptr<natsConnection, ConnectionDeleter>;
using SubscriptionPtr = std::unique_ptr<natsSubscription, SubscriptionDeleter>;
using InboxPtr = std::unique_ptr<natsInbox, InboxDeleter>;

using SubKey = std::pair<std::string, std::string>;  // (subject, queue)
using Clock = std::chrono::steady_clock;

/// A file descriptor closed on destruction.
struct OwnedFd {
  explicit OwnedFd(int f) : fd(f) {}
  ~OwnedFd() {
    if (fd >= 0) ::close(fd);
  }
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
  int release() { return std::exchange(fd, -1); }
  int fd;
};

bool poll_once(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, timeout_ms) > 0 && (p.revents & (events | POLLERR | POLLHUP)) != 0;
}

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? int(left.count()) : 0;
}

}  // namespace

// cnats runs on our Asio loop as an "external event loop": the loop watches the socket and
// calls cnats to read and to write, and every subscription is synchronous, drained on the loop
// right after each read. A message thus reaches its handler on the thread that read it, with
// no library thread in between (each hop costs a wake-up, which on a busy 2-core host
// dominated the round trip: measured in bench/moleculer_rpc.js).
struct NatsTransporter::Impl : std::enable_shared_from_this<NatsTransporter::Impl> {
  struct Sub {
    std::string subject;
    bool wildcard = false;  // the message subject differs from `subject`
    int drain_rank = 0;
    SubscriptionPtr handle;
  };

  /// The loop's watch on the socket. It is a duplicate of cnats' descriptor: cnats closes its
  /// own at will (reconnect, close), and a number it closed may be reused at once by another
  /// socket of this process; the loop's registration must never follow that number.
  struct Watch {
    Watch(asio::io_context& loop, int fd) : descriptor(loop, fd) {}
    asio::posix::stream_descriptor descriptor;
    bool read_pending = false;
    bool write_pending = false;
  };

  Impl(asio::io_context& l, NatsOptions o) : loop(l), options(std::move(o)), release_timer(l) {}
  ~Impl() { release_spent_messages(); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  asio::io_context& loop;
  const NatsOptions options;
  TransporterHandlers handlers;  // set before connecting, read only on the loop afterwards
  /// true between a successful connect() and close(); posted handlers check it on the loop.
  std::atomic<bool> open{false};
  bool was_closed = false;

  // Destruction order: subscriptions, then the connection, then the options.
  OptionsPtr nats_options;
  ConnectionPtr conn;
  std::map<SubKey, std::shared_ptr<Sub>> subs;
  /// Delivery order after a read: by drain rank, then the order of subscribe() calls.
  std::vector<std::shared_ptr<Sub>> drain_order;
  uint64_t subs_version = 0;  // bumped on every change, so a drain pass notices it

  // Event-loop state, loop thread only.
  natsConnection* attached = nullptr;  // cnats' connection while a socket is attached
  std::shared_ptr<Watch> watch;
  bool want_read = false;
  bool want_write = false;
  bool write_scheduled = false;
  unsigned delivered_since_write = 0;
  std::vector<natsMsg*> spent;  // delivered, freed by release_spent_messages()
  asio::steady_timer release_timer;
  bool release_timer_armed = false;
  bool release_posted = false;
  /// cnats' own descriptor, for the blocking flush(); any thread.
  std::atomic<int> socket_fd{-1};

  std::mutex mu;  // guards closed_fired, error
  std::condition_variable cv;
  bool closed_fired = false;
  std::string error;

  // stats(). Counted here rather than read with natsConnection_GetStats, which takes the
  // connection's lock: cnats' reconnect thread holds that lock through each connect attempt, so
  // a scrape during an outage would stall the loop for up to connect_timeout_ms (measured:
  // 2.0 s against a frozen server). Messages and bytes: loop thread only; the connection state
  // and reconnections come from cnats' callback thread.
  TransporterStats counts;
  std::atomic<bool> link_up{false};
  std::atomic<uint64_t> reconnections{0};

  void set_error(std::string text) {
    std::lock_guard<std::mutex> lock(mu);
    error = std::move(text);
  }

  template <typename F>
  void post_guarded(F&& f) noexcept {
    // Called on cnats threads: nothing may escape into C.
    try {
      asio::post(loop, [weak = weak_from_this(), f = std::forward<F>(f)]() mutable {
        auto self = weak.lock();
        if (self && self->open.load()) f(*self);
      });
    } catch (...) {
    }
  }

  /// Runs `f` on the loop: now when called there (cnats then holds its connection lock, so
  /// `f` must not call back into cnats), else posted.
  template <typename F>
  void on_loop(F&& f) noexcept {
    try {
      if (loop.get_executor().running_in_this_thread()) {
        f(*this);
        return;
      }
      asio::post(loop, [weak = weak_from_this(), f = std::forward<F>(f)]() mutable {
        if (auto self = weak.lock()) f(*self);
      });
    } catch (...) {
    }
  }

  void attach(natsConnection* nc, std::shared_ptr<OwnedFd> fd) {
    drop_watch();
    attached = nc;
    try {
      watch = std::make_shared<Watch>(loop, fd->fd);
      fd->release();  // the descriptor owns it now
    } catch (const std::exception& e) {
      logger()->error("cannot watch the NATS socket: {}", e.what());
      return;
    }
    want_read = true;
    arm_read();
    if (want_write) schedule_write();
  }

  void drop_watch() {
    if (!watch) return;
    asio::error_code ignored;
    watch->descriptor.close(ignored);  // cancels the pending waits
    watch.reset();
  }

  // asio re-arms the descriptor's registration for each wait (EPOLL_CTL_MOD), which reports
  // data already queued too: a read that left bytes behind is followed by another at once.
  void arm_read() {
    if (!watch || watch->read_pending || !want_read) return;
    wait_for(asio::posix::descriptor_base::wait_read, &Watch::read_pending, &Impl::on_readable);
  }

  /// One readiness wait on the current watch; `then` runs unless the watch was replaced or
  /// closed meanwhile.
  void wait_for(asio::posix::descriptor_base::wait_type kind, bool Watch::*pending,
                void (Impl::*then)()) {
    watch.get()->*pending = true;
    watch->descriptor.async_wait(
        kind, [weak = weak_from_this(), w = watch, pending, then](const std::error_code& ec) {
          w.get()->*pending = false;
          auto self = weak.lock();
          if (!ec && self && self->watch == w) (self.get()->*then)();
        });
  }

  void on_readable() {
    if (!want_read || attached == nullptr) return;
    natsConnection_ProcessReadEvent(attached);  // may detach (connection lost)
    deliver_pending();
    if (want_write) on_writable();  // the replies leave before anything else happens
    arm_read();
  }

  /// cnats frees messages on its garbage-collector thread, waking it for each one. Releasing
  /// them in batches (by count, or after a short delay) pays that wake-up once per batch, and
  /// never on the path of a reply: the write is queued before the release.
  void release_spent_messages_later() {
    if (spent.empty()) return;
    if (spent.size() >= kReleaseBatch) {
      if (release_posted) return;
      release_posted = true;
      asio::post(loop, [weak = weak_from_this()] {
        if (auto self = weak.lock()) self->release_spent_messages();
      });
      return;
    }
    if (release_timer_armed) return;
    release_timer_armed = true;
    release_timer.expires_after(kReleaseDelay);
    release_timer.async_wait([weak = weak_from_this()](const std::error_code& ec) {
      auto self = weak.lock();
      if (!self) return;
      self->release_timer_armed = false;
      if (!ec) self->release_spent_messages();
    });
  }

  void release_spent_messages() {
    release_posted = false;
    for (natsMsg* msg : spent) natsMsg_Destroy(msg);
    spent.clear();
  }

  /// cnats asked for a write: do it after the current handler, so that every publish of this
  /// loop turn leaves in one write.
  void schedule_write() {
    if (write_scheduled || !watch) return;
    write_scheduled = true;
    asio::post(loop, [weak = weak_from_this()] {
      if (auto self = weak.lock()) {
        self->write_scheduled = false;
        self->on_writable();
      }
    });
  }

  void on_writable() {
    if (!want_write || attached == nullptr || !watch) return;
    natsConnection_ProcessWriteEvent(attached);  // clears want_write when all is written
    if (!want_write || !watch || watch->write_pending) return;
    // A partial write: the socket buffer is full; wait until it takes more.
    wait_for(asio::posix::descriptor_base::wait_write, &Watch::write_pending, &Impl::on_writable);
  }

  /// Hands every message cnats has queued to the handler, subscription by subscription in
  /// drain order. A handler may subscribe or unsubscribe: the pass then starts over.
  void deliver_pending() {
    for (bool changed = true; changed && open.load();) {
      changed = false;
      const uint64_t version = subs_version;
      for (size_t i = 0; i < drain_order.size() && open.load(); ++i) {
        std::shared_ptr<Sub> sub = drain_order[i];
        deliver_from(*sub);
        if (subs_version != version) {
          changed = true;
          break;
        }
      }
    }
    release_spent_messages_later();
  }

  void deliver_from(Sub& sub) {
    for (;;) {
      int pending = 0;
      if (natsSubscription_GetPending(sub.handle.get(), &pending, nullptr) != NATS_OK ||
          pending == 0) {
        return;
      }
      natsMsg* raw = nullptr;
      const natsStatus s = natsSubscription_NextMsg(&raw, sub.handle.get(), 0);
      if (s == NATS_SLOW_CONSUMER) {
        logger()->warn("NATS subscription {}: messages were dropped (pending limit)", sub.subject);
        continue;
      }
      if (s != NATS_OK) return;
      spent.push_back(raw);
      const char* bytes = natsMsg_GetData(raw);
      const int length = natsMsg_GetDataLength(raw);
      const std::string_view data = bytes != nullptr && length > 0
                                        ? std::string_view(bytes, size_t(length))
                                        : std::string_view();
      counts.messages_received++;
      counts.bytes_received += data.size();
      if (!handlers.on_message) continue;
      try {
        if (sub.wildcard) {
          handlers.on_message(natsMsg_GetSubject(raw), data);
        } else {
          handlers.on_message(sub.subject, data);
        }
      } catch (const std::exception& e) {
        logger()->error("message handler for {} threw: {}", sub.subject, e.what());
      }
      if (!open.load()) return;  // the handler closed the transporter
      // In a long batch, the first replies leave before the last requests are handled: a
      // caller waiting on them can send its next ones meanwhile.
      if (++delivered_since_write >= kWriteEvery && want_write) {
        delivered_since_write = 0;
        on_writable();
      }
    }
  }

  /// Writes out what cnats buffered; true when nothing is left. Blocks up to the deadline.
  bool write_out(natsConnection* nc, Clock::time_point deadline) {
    for (;;) {
      const int buffered = natsConnection_Buffered(nc);
      if (buffered <= 0) return true;
      natsConnection_ProcessWriteEvent(nc);
      if (natsConnection_Buffered(nc) <= 0) return true;
      const int fd = socket_fd.load();
      const int wait = std::min(remaining_ms(deadline), 10);
      if (wait <= 0 || fd < 0) return false;
      poll_once(fd, POLLOUT, wait);
    }
  }

  // cnats callbacks (cnats threads, or the loop inside a cnats call).
  static natsStatus ev_attach(void** user_data, void* loop, natsConnection* nc,
                              natsSock fd) noexcept;
  static natsStatus ev_read(void* user_data, bool add) noexcept;
  static natsStatus ev_write(void* user_data, bool add) noexcept;
  static natsStatus ev_detach(void* user_data) noexcept;
  static void on_disconnected(natsConnection*, void* closure) noexcept;
  static void on_reconnected(natsConnection*, void* closure) noexcept;
  static void on_closed(natsConnection*, void* closure) noexcept;
};

natsStatus NatsTransporter::Impl::ev_attach(void** user_data, void* loop, natsConnection* nc,
                                            natsSock fd) noexcept {
  auto* impl = static_cast<Impl*>(loop);
  *user_data = impl;
  // Duplicated here, while cnats' descriptor is certainly open.
  auto copy = std::make_shared<OwnedFd>(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (copy->fd < 0) return NATS_SYS_ERROR;
  impl->socket_fd = fd;
  impl->on_loop([nc, copy](Impl& self) { self.attach(nc, copy); });
  return NATS_OK;
}

natsStatus NatsTransporter::Impl::ev_read(void* user_data, bool add) noexcept {
  auto* impl = static_cast<Impl*>(user_data);
  if (!add) impl->socket_fd = -1;  // cnats stops reading only to close the socket
  impl->on_loop([add](Impl& self) {
    self.want_read = add;
    if (add) {
      self.arm_read();
    } else {
      self.drop_watch();
    }
  });
  return NATS_OK;
}

natsStatus NatsTransporter::Impl::ev_write(void* user_data, bool add) noexcept {
  auto* impl = static_cast<Impl*>(user_data);
  impl->on_loop([add](Impl& self) {
    self.want_write = add;
    if (add) self.schedule_write();
  });
  return NATS_OK;
}

natsStatus NatsTransporter::Impl::ev_detach(void* user_data) noexcept {
  auto* impl = static_cast<Impl*>(user_data);
  impl->socket_fd = -1;
  impl->on_loop([](Impl& self) {
    self.want_read = self.want_write = false;
    self.drop_watch();
    self.attached = nullptr;
  });
  return NATS_OK;
}

void NatsTransporter::Impl::on_disconnected(natsConnection*, void* closure) noexcept {
  auto* impl = static_cast<Impl*>(closure);
  impl->link_up = false;
  if (impl->open.load()) {
    logger()->warn("NATS connection lost{}", impl->options.allow_reconnect ? ", reconnecting" : "");
  }
  impl->post_guarded([](Impl& self) {
    if (self.handlers.on_disconnected) self.handlers.on_disconnected();
  });
}

void NatsTransporter::Impl::on_reconnected(natsConnection* nc, void* closure) noexcept {
  auto* impl = static_cast<Impl*>(closure);
  impl->reconnections++;
  impl->link_up = true;
  if (impl->open.load()) {
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof url);
    const std::string address = redact_credentials(url);
    log_with(logger(), spdlog::level::info, {{"address", address}}, "NATS reconnected to {}",
             address);
  }
  impl->post_guarded([](Impl& self) {
    if (self.handlers.on_reconnected) self.handlers.on_reconnected();
  });
}

void NatsTransporter::Impl::on_closed(natsConnection*, void* closure) noexcept {
  auto* impl = static_cast<Impl*>(closure);
  impl->link_up = false;
  if (impl->open.load()) logger()->error("NATS connection closed for good by the client library");
  impl->post_guarded([](Impl& self) {
    if (self.handlers.on_closed) self.handlers.on_closed();
  });
  // Last touch of `impl`: after this close() may free it.
  std::lock_guard<std::mutex> lock(impl->mu);
  impl->closed_fired = true;
  impl->cv.notify_all();
}

NatsTransporter::NatsTransporter(asio::io_context& loop, NatsOptions options)
    : impl_(std::make_shared<Impl>(loop, std::move(options))) {}

NatsTransporter::~NatsTransporter() {
  close();
}

void NatsTransporter::connect(TransporterHandlers handlers) {
  Impl& im = *impl_;
  if (im.was_closed) throw std::runtime_error("NATS transporter: connect() after close()");
  if (im.conn) throw std::runtime_error("NATS transporter: already connected");
  const NatsOptions& o = im.options;

  const std::vector<std::string> urls = split_urls(o.url);
  if (urls.empty()) throw std::runtime_error("cannot connect to NATS: no server URL given");

  natsOptions* raw_options = nullptr;
  natsStatus s = natsOptions_Create(&raw_options);
  if (s != NATS_OK) {
    throw std::runtime_error("cannot create NATS options: " + status_text(s));
  }
  OptionsPtr nats_options(raw_options);

  std::vector<const char*> url_ptrs;
  for (const auto& url : urls) url_ptrs.push_back(url.c_str());
  const auto step = [&](const char* what, natsStatus st) {
    if (st != NATS_OK) {
      throw std::runtime_error(std::string("invalid NATS option ") + what + ": " + status_text(st));
    }
  };
  step("url", natsOptions_SetServers(raw_options, url_ptrs.data(), int(url_ptrs.size())));
  step("tls", require_tls_if_asked(raw_options, urls));
  step("name", natsOptions_SetName(raw_options, o.name.c_str()));
  step("connect_timeout_ms", natsOptions_SetTimeout(raw_options, o.connect_timeout_ms));
  step("allow_reconnect", natsOptions_SetAllowReconnect(raw_options, o.allow_reconnect));
  step("max_reconnect", natsOptions_SetMaxReconnect(raw_options, o.max_reconnect));
  step("reconnect_wait_ms", natsOptions_SetReconnectWait(raw_options, o.reconnect_wait_ms));
  step("ping_interval_ms", natsOptions_SetPingInterval(raw_options, o.ping_interval_ms));
  step("max_pings_out", natsOptions_SetMaxPingsOut(raw_options, o.max_pings_out));
  step("reconnect_buffer_bytes",
       natsOptions_SetReconnectBufSize(raw_options, o.reconnect_buffer_bytes));
  // cnats buffers publishes for its flusher thread, which costs about 1 ms per hop; a reply or
  // an event should leave at once (measured: 1.0 ms -> 0.1 ms p50 per JS->C++ round trip).
  // On the event loop this means: ask for a write right after each publish (one write per
  // loop turn, see Impl::schedule_write).
  step("send asap", natsOptions_SetSendAsap(raw_options, true));
  step("event loop", natsOptions_SetEventLoop(raw_options, &im, &Impl::ev_attach, &Impl::ev_read,
                                              &Impl::ev_write, &Impl::ev_detach));
  step("disconnected callback",
       natsOptions_SetDisconnectedCB(raw_options, &Impl::on_disconnected, &im));
  step("reconnected callback",
       natsOptions_SetReconnectedCB(raw_options, &Impl::on_reconnected, &im));
  step("closed callback", natsOptions_SetClosedCB(raw_options, &Impl::on_closed, &im));

  // Handlers first: callbacks may be posted as soon as the connection exists.
  im.handlers = std::move(handlers);
  {
    std::lock_guard<std::mutex> lock(im.mu);
    im.closed_fired = false;
  }

  natsConnection* raw_conn = nullptr;
  s = natsConnection_Connect(&raw_conn, raw_options);
  if (s != NATS_OK) {
    // A failed connect never invokes the callbacks, so nothing refers to `im` now.
    std::string reason = "cannot connect to " + redact_credentials(o.url) + ": " + status_text(s);
    im.set_error(reason);
    throw std::runtime_error(reason);
  }
  im.nats_options = std::move(nats_options);
  im.conn.reset(raw_conn);
  im.open = true;
  im.link_up = true;

  char url[256] = "";
  natsConnection_GetConnectedUrl(raw_conn, url, sizeof url);
  logger()->info("NATS connected to {}", redact_credentials(url));
}

void NatsTransporter::subscribe(const std::string& subject, const std::string& queue,
                                int drain_rank) {
  Impl& im = *impl_;
  SubKey key{subject, queue};
  if (im.subs.count(key) != 0) return;
  if (!im.conn || !im.open) {
    im.set_error("cannot subscribe " + subject + ": not connected");
    logger()->warn("cannot subscribe {}: not connected", subject);
    return;
  }

  natsSubscription* raw = nullptr;
  natsStatus s = queue.empty() ? natsConnection_SubscribeSync(&raw, im.conn.get(), subject.c_str())
                               : natsConnection_QueueSubscribeSync(&raw, im.conn.get(),
                                                                   subject.c_str(), queue.c_str());
  if (s != NATS_OK) {
    std::string reason = "cannot subscribe " + subject +
                         (queue.empty() ? "" : " (queue " + queue + ")") + ": " + status_text(s);
    logger()->warn("{}", reason);
    im.set_error(std::move(reason));
    return;
  }
  auto sub = std::make_shared<Impl::Sub>();
  sub->subject = subject;
  sub->wildcard = subject.find_first_of("*>") != std::string::npos;
  sub->handle.reset(raw);
  sub->drain_rank = drain_rank;
  // After every subscription of the same or a lower rank.
  const auto position =
      std::find_if(im.drain_order.begin(), im.drain_order.end(),
                   [drain_rank](const auto& other) { return other->drain_rank > drain_rank; });
  im.drain_order.insert(position, sub);
  im.subs.emplace(std::move(key), std::move(sub));
  im.subs_version++;
}

void NatsTransporter::unsubscribe(const std::string& subject, const std::string& queue) {
  Impl& im = *impl_;
  auto it = im.subs.find(SubKey{subject, queue});
  if (it == im.subs.end()) return;
  std::shared_ptr<Impl::Sub> sub = std::move(it->second);
  im.subs.erase(it);
  im.drain_order.erase(std::find(im.drain_order.begin(), im.drain_order.end(), sub));
  im.subs_version++;
  // Messages cnats already queued for it are dropped with it.
  natsStatus s = natsSubscription_Unsubscribe(sub->handle.get());
  if (s != NATS_OK && s != NATS_INVALID_SUBSCRIPTION) {  // INVALID: already closed by cnats
    im.set_error("cannot unsubscribe " + subject + ": " + status_text(s));
  }
}

bool NatsTransporter::publish(const std::string& subject, std::string_view data) {
  Impl& im = *impl_;
  if (!im.conn || !im.open) {
    im.set_error("cannot publish to " + subject + ": not connected");
    return false;
  }
  if (data.size() > size_t(INT_MAX)) {
    im.set_error("cannot publish to " + subject + ": payload too large");
    return false;
  }
  // cnats' outgoing buffer grows until the loop writes it; a server that stops reading must
  // not make it grow without end.
  const int buffered = natsConnection_Buffered(im.conn.get());
  if (buffered > 0 && size_t(buffered) + data.size() > im.options.max_outgoing_bytes) {
    im.set_error("cannot publish " + std::to_string(data.size()) + " bytes to " + subject +
                 ": outgoing buffer full (" + std::to_string(buffered) +
                 " bytes not yet taken by the server)");
    return false;
  }
  natsStatus s =
      natsConnection_Publish(im.conn.get(), subject.c_str(), data.data(), int(data.size()));
  if (s != NATS_OK) {
    im.set_error("cannot publish " + std::to_string(data.size()) + " bytes to " + subject + ": " +
                 status_text(s));
    return false;
  }
  im.counts.messages_sent++;
  im.counts.bytes_sent += data.size();
  return true;
}

// A round trip through the server on this connection: the server handles a connection's
// protocol in order, so once our own message on a private inbox comes back, everything sent
// before it was processed. (cnats' natsConnection_Flush would wait for a PONG that only this
// thread can read.)
void NatsTransporter::flush(int timeout_ms) {
  Impl& im = *impl_;
  if (!im.conn || !im.open) return;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  natsInbox* raw_inbox = nullptr;
  if (natsInbox_Create(&raw_inbox) != NATS_OK) return;
  InboxPtr inbox(raw_inbox);
  natsSubscription* raw_sub = nullptr;
  if (natsConnection_SubscribeSync(&raw_sub, im.conn.get(), inbox.get()) != NATS_OK) return;
  SubscriptionPtr marker(raw_sub);
  bool done = false;
  if (natsConnection_Publish(im.conn.get(), inbox.get(), "", 0) == NATS_OK &&
      im.write_out(im.conn.get(), deadline)) {
    for (;;) {
      int pending = 0;
      natsSubscription_GetPending(marker.get(), &pending, nullptr);
      if (pending > 0) {
        done = true;
        break;
      }
      const int fd = im.socket_fd.load();
      const int wait = std::min(remaining_ms(deadline), 10);
      if (wait <= 0) break;
      if (fd >= 0 && poll_once(fd, POLLIN, wait)) {
        natsConnection_ProcessReadEvent(im.conn.get());
      } else if (fd < 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(wait));  // reconnecting
      }
    }
  }
  natsSubscription_Unsubscribe(marker.get());
  if (!done)
    im.set_error("flush: no answer from the server within " + std::to_string(timeout_ms) + " ms");
  // Messages read meanwhile wait in their subscriptions; hand them over from the loop.
  asio::post(im.loop, [weak = std::weak_ptr<Impl>(impl_)] {
    if (auto self = weak.lock()) self->deliver_pending();
  });
}

void NatsTransporter::close() {
  if (!impl_) return;
  Impl& im = *impl_;
  const bool was_open = im.open.exchange(false);  // from here on posted handlers are dropped
  im.was_closed = true;
  im.link_up = false;
  if (!im.conn) return;

  // cnats would wait 500 ms for a PONG on close when something is still buffered; write it
  // out here instead, so a last DISCONNECT leaves before the socket closes.
  if (was_open) im.write_out(im.conn.get(), Clock::now() + std::chrono::milliseconds(500));
  // Closes every subscription, the socket (detaching it from the loop) and queues the
  // disconnected/closed callbacks on cnats' callback thread.
  natsConnection_Close(im.conn.get());
  // The detach above may have been posted (close() called off the loop): drop the watch now.
  im.want_read = im.want_write = false;
  im.drop_watch();
  im.attached = nullptr;

  bool done = false;
  {
    std::unique_lock<std::mutex> lock(im.mu);
    done = im.cv.wait_for(lock, kCloseWait, [&im] { return im.closed_fired; });
  }
  if (!done) {
    // cnats may still call back with `&im` as closure: keep it alive forever.
    logger()->error("NATS close: callbacks still pending after {} s; leaking the transporter state",
                    kCloseWait.count());
    new std::shared_ptr<Impl>(impl_);  // NOLINT: intentional leak, with its subs and connection
    return;
  }
  im.drain_order.clear();
  im.subs.clear();
  im.conn.reset();
  im.nats_options.reset();
  logger()->info("NATS connection closed");
}

// From cnats' callbacks, not natsConnection_Status: that takes the connection lock, which the
// reconnect thread holds through each connect attempt (a /ready probe stalled the loop 1.0 s with
// a 1 s connect timeout against a frozen server).
bool NatsTransporter::connected() const {
  const Impl& im = *impl_;
  return im.open.load() && im.link_up.load();
}

std::string NatsTransporter::last_error() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->error;
}

TransporterStats NatsTransporter::stats() const {
  TransporterStats stats = impl_->counts;
  stats.connected = connected();
  stats.reconnects = impl_->reconnections.load();
  return stats;
}

}  // namespace steedos::transport
