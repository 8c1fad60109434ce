#include "transport/redis_transporter.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

#include "common/log.hpp"
#include "transport/redis_connection.hpp"
#include "transport/resp.hpp"

namespace steedos::transport {

namespace {

const std::shared_ptr<spdlog::logger>& logger() {
  static const auto instance = component_logger("transporter");
  return instance;
}

using Clock = std::chrono::steady_clock;

constexpr const char* kAclHint =
    "grant the ACL user the channels, e.g. ACL SETUSER <user> &MOL-steedos.* (or &MOL.* "
    "without a namespace)";

bool starts_with(const std::string& text, std::string_view prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

struct RedisTransporter::Impl : std::enable_shared_from_this<RedisTransporter::Impl> {
  enum class State { idle, starting, up, down, closed };

  struct Sub {
    bool in_flight = false;  // SUBSCRIBE sent, no reply yet
    bool confirmed = false;
    bool refused = false;
    bool refusal_logged = false;
    uint64_t barrier = 0;  // seq of the subscribe() call while it holds publishes back; 0 = none
  };

  struct Held {
    std::string channel;
    std::string command;
    size_t payload_bytes = 0;  // of `command`, for the byte counter
    uint64_t after = 0;        // wait until every subscribe() up to this seq is settled
  };

  Impl(asio::io_context& l, RedisOptions o)
      : loop(l), options(std::move(o)), retry_timer(l), resubscribe_timer(l) {
    if (options.endpoints.empty()) options.endpoints.push_back(RedisEndpoint{});
    rng.seed(std::random_device{}());
  }

  asio::io_context& loop;
  RedisOptions options;
  TransporterHandlers handlers;
  State state = State::idle;
  std::string error;

  std::shared_ptr<RedisConnection> sub_conn;
  std::shared_ptr<RedisConnection> pub_conn;
  bool sub_ready = false;
  bool pub_ready = false;
  size_t endpoint = 0;
  int attempt = 0;  // failed attempts since the last success (backoff exponent)
  bool attempt_reached_up = false;
  asio::steady_timer retry_timer;
  std::minstd_rand rng;

  std::map<std::string, Sub> subs;
  uint64_t subscribe_seq = 0;
  std::set<uint64_t> unsettled;  // barrier seqs of subscriptions neither confirmed nor refused
  size_t subscribes_in_flight = 0;
  std::map<std::string, int> replies_due;  // SUBSCRIBE replies expected per channel
  asio::steady_timer resubscribe_timer;
  int resubscribe_attempt = 0;

  std::deque<Held> held;        // publishes waiting for the publisher or for the barrier
  size_t unanswered_bytes = 0;  // held + sent without reply
  std::set<std::string> publish_refusals_logged;
  TransporterStats counts;  // `connected` is derived from `state`

  // -----------------------------------------------------------------------------------------

  RedisConnectionOptions connection_options(const std::string& role) const {
    RedisConnectionOptions c;
    c.endpoint = options.endpoints[endpoint % options.endpoints.size()];
    c.username = options.username;
    c.password = options.password;
    c.tls = options.tls;
    c.connect_timeout_ms = options.connect_timeout_ms;
    c.ping_interval_ms = options.ping_interval_ms;
    c.ping_timeout_ms = options.ping_timeout_ms;
    c.max_reply_bytes = options.max_reply_bytes;
    c.max_inbox_bytes = options.max_inbox_bytes;
    // unanswered_bytes bounds what the transporter hands over; the rest is SUBSCRIBE and PING.
    c.max_write_bytes = options.max_outgoing_bytes + 1024 * 1024;
    c.role = role;
    return c;
  }

  int backoff_ms(int n) {
    long long delay = std::max(1, options.reconnect_min_ms);
    for (int i = 0; i < n && delay < options.reconnect_max_ms; ++i) delay *= 2;
    delay = std::min<long long>(delay, std::max(1, options.reconnect_max_ms));
    // Jitter: somewhere in [delay/2, delay], so many nodes do not reconnect in step.
    std::uniform_int_distribution<long long> dist(delay / 2, delay);
    return int(dist(rng));
  }

  void open_connections() {
    sub_ready = pub_ready = false;
    attempt_reached_up = false;
    std::weak_ptr<Impl> weak = weak_from_this();

    RedisConnection::Handlers sh;
    sh.on_ready = [weak] {
      if (auto self = weak.lock()) self->on_sub_ready();
    };
    sh.on_failed = [weak](const std::string& reason) {
      if (auto self = weak.lock()) self->on_connection_failed("subscriber", reason);
    };
    sh.on_reply = [weak](RedisCommand kind, const std::string& tag, size_t, const RespReply& r) {
      if (auto self = weak.lock()) self->on_sub_reply(kind, tag, r);
    };
    sh.on_message = [weak](const std::string& channel, std::string_view payload) {
      if (auto self = weak.lock()) self->on_message(channel, payload);
    };
    RedisConnection::Handlers ph;
    ph.on_ready = [weak] {
      if (auto self = weak.lock()) self->on_pub_ready();
    };
    ph.on_failed = [weak](const std::string& reason) {
      if (auto self = weak.lock()) self->on_connection_failed("publisher", reason);
    };
    ph.on_reply = [weak](RedisCommand, const std::string& tag, size_t bytes, const RespReply& r) {
      if (auto self = weak.lock()) self->on_publish_reply(tag, bytes, r);
    };
    sub_conn = RedisConnection::create(loop, connection_options("subscriber"), std::move(sh));
    pub_conn = RedisConnection::create(loop, connection_options("publisher"), std::move(ph));
    sub_conn->start();
    pub_conn->start();
  }

  void close_connections() {
    if (sub_conn) sub_conn->close();
    if (pub_conn) pub_conn->close();
    sub_conn.reset();
    pub_conn.reset();
    sub_ready = pub_ready = false;
  }

  // -----------------------------------------------------------------------------------------
  // Subscriber

  void on_sub_ready() {
    sub_ready = true;
    subscribes_in_flight = 0;
    replies_due.clear();
    for (auto& [channel, sub] : subs) {
      sub.confirmed = sub.refused = sub.in_flight = false;
      send_subscribe(channel, sub);
    }
    check_up();
  }

  void send_subscribe(const std::string& channel, Sub& sub) {
    if (!sub_ready || sub.in_flight) return;
    if (sub_conn->send(RedisCommand::subscribe, channel, format_command({"SUBSCRIBE", channel}))) {
      sub.in_flight = true;
      subscribes_in_flight++;
      replies_due[channel]++;
    }
  }

  void settle(Sub& sub) {
    if (sub.barrier == 0) return;
    unsettled.erase(sub.barrier);
    sub.barrier = 0;
    drain_held();
  }

  void on_sub_reply(RedisCommand kind, const std::string& channel, const RespReply& reply) {
    if (kind != RedisCommand::subscribe) {
      if (reply.is_error()) {
        logger()->warn("Redis refused UNSUBSCRIBE {}: {}", channel, reply.text);
      }
      return;
    }
    // SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE of one channel in a row: only the last reply tells
    // whether the channel is held now.
    auto due = replies_due.find(channel);
    if (due != replies_due.end() && --due->second > 0) return;
    if (due != replies_due.end()) replies_due.erase(due);
    auto it = subs.find(channel);
    if (it == subs.end()) return;  // unsubscribed meanwhile; its UNSUBSCRIBE follows
    Sub& sub = it->second;
    if (sub.in_flight) {
      sub.in_flight = false;
      subscribes_in_flight--;
    }
    if (reply.is_error()) {
      sub.refused = true;
      if (!sub.refusal_logged) {
        sub.refusal_logged = true;
        if (starts_with(reply.text, "NOPERM")) {
          logger()->error("Redis refused SUBSCRIBE {}: {}; {}; retrying", channel, reply.text,
                          kAclHint);
        } else {
          logger()->error("Redis refused SUBSCRIBE {}: {}; retrying", channel, reply.text);
        }
      }
      set_error("cannot subscribe " + channel + ": " + reply.text);
      arm_resubscribe();
    } else {
      sub.confirmed = true;
      sub.refused = false;
      if (sub.refusal_logged) {
        logger()->info("Redis accepted SUBSCRIBE {} now", channel);
        sub.refusal_logged = false;
      }
    }
    settle(sub);
    check_up();
  }

  void arm_resubscribe() {
    if (resubscribe_pending) return;
    resubscribe_pending = true;
    resubscribe_timer.expires_after(std::chrono::milliseconds(backoff_ms(resubscribe_attempt++)));
    resubscribe_timer.async_wait([weak = weak_from_this()](const std::error_code& ec) {
      auto self = weak.lock();
      if (!self) return;
      self->resubscribe_pending = false;
      if (ec || self->state == State::closed || !self->sub_ready) return;
      bool any = false;
      for (auto& [channel, sub] : self->subs) {
        if (sub.refused && !sub.in_flight) {
          any = true;
          self->send_subscribe(channel, sub);
        }
      }
      if (!any) self->resubscribe_attempt = 0;
    });
  }
  bool resubscribe_pending = false;

  void on_message(const std::string& channel, std::string_view payload) {
    if (state == State::closed) return;
    counts.messages_received++;
    counts.bytes_received += payload.size();
    if (subs.count(channel) == 0) return;
    if (!handlers.on_message) return;
    try {
      handlers.on_message(channel, payload);
    } catch (const std::exception& e) {
      logger()->error("message handler for {} threw: {}", channel, e.what());
    }
  }

  // -----------------------------------------------------------------------------------------
  // Publisher

  void on_pub_ready() {
    pub_ready = true;
    drain_held();
    check_up();
  }

  bool barrier_allows(const Held& h) const {
    return unsettled.empty() || *unsettled.begin() > h.after;
  }

  void drain_held() {
    while (pub_ready && !held.empty() && barrier_allows(held.front())) {
      Held& h = held.front();
      const size_t bytes = h.command.size();
      if (pub_conn->send(RedisCommand::publish, h.channel, std::move(h.command), bytes)) {
        counts.messages_sent++;
        counts.bytes_sent += h.payload_bytes;
      } else {
        // Cannot happen within max_write_bytes; drop rather than spin.
        unanswered_bytes -= bytes;
        logger()->warn("Redis publisher queue full; dropped a packet to {}", h.channel);
      }
      held.pop_front();
    }
  }

  void on_publish_reply(const std::string& channel, size_t bytes, const RespReply& reply) {
    unanswered_bytes -= std::min(unanswered_bytes, bytes);
    if (!reply.is_error()) return;
    set_error("Redis refused PUBLISH " + channel + ": " + reply.text);
    if (!publish_refusals_logged.insert(channel).second) return;
    if (starts_with(reply.text, "NOPERM")) {
      logger()->error("Redis refused PUBLISH {}: {}; {}", channel, reply.text, kAclHint);
    } else {
      logger()->error("Redis refused PUBLISH {}: {}", channel, reply.text);
    }
  }

  // -----------------------------------------------------------------------------------------
  // State

  void check_up() {
    if (state != State::starting && state != State::down) return;
    if (!sub_ready || !pub_ready || subscribes_in_flight != 0) return;
    const bool was_down = state == State::down;
    state = State::up;
    attempt = 0;
    attempt_reached_up = true;
    const std::string where = sub_conn->describe();
    if (was_down) {
      counts.reconnects++;
      logger()->info("Redis reconnected to {}", where);
      if (handlers.on_reconnected) handlers.on_reconnected();
    } else {
      logger()->info("Redis connected to {} (subscriber and publisher)", where);
    }
  }

  void on_connection_failed(const char* role, const std::string& reason) {
    if (state == State::closed) return;
    const bool was_live = state == State::up || state == State::starting;
    const auto& failed = std::string_view(role) == "subscriber" ? sub_conn : pub_conn;
    const std::string where = failed ? failed->describe() : std::string("?");
    set_error("Redis " + std::string(role) + " " + where + ": " + reason);
    close_connections();
    // What waited for this connection is lost (pub/sub is at-most-once).
    held.clear();
    unanswered_bytes = 0;
    subscribes_in_flight = 0;
    replies_due.clear();
    for (auto& entry : subs) entry.second.in_flight = entry.second.confirmed = false;
    resubscribe_timer.cancel();

    if (attempt_reached_up) {
      attempt = 0;  // a drop: retry the same endpoint soon
    } else {
      attempt++;
      endpoint = (endpoint + 1) % options.endpoints.size();
    }
    const int delay = backoff_ms(attempt);
    if (was_live) {
      logger()->warn("Redis {} connection to {} lost: {}; reconnecting", role, where, reason);
      state = State::down;
      if (handlers.on_disconnected) handlers.on_disconnected();
      if (state == State::closed) return;  // the handler closed us
    } else {
      logger()->warn("Redis {} connection to {} failed: {}; retrying in {} ms", role, where, reason,
                     delay);
    }
    retry_timer.expires_after(std::chrono::milliseconds(delay));
    retry_timer.async_wait([weak = weak_from_this()](const std::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self || self->state == State::closed) return;
      self->open_connections();
    });
  }

  void set_error(std::string text) { error = std::move(text); }

  // -----------------------------------------------------------------------------------------
  // connect(): the blocking probe

  /// Opens one connection on a private loop; returns the reason it failed, or nothing.
  std::optional<std::string> probe(size_t index) {
    asio::io_context private_loop(1);
    RedisConnectionOptions c;
    {
      const size_t saved = endpoint;
      endpoint = index;
      c = connection_options("probe");
      endpoint = saved;
    }
    c.ping_interval_ms = 0;
    std::optional<std::string> outcome;
    bool done = false;
    std::shared_ptr<RedisConnection> conn;
    RedisConnection::Handlers h;
    h.on_ready = [&] {
      done = true;
      conn->close();
    };
    h.on_failed = [&](const std::string& reason) {
      done = true;
      outcome = reason;
    };
    conn = RedisConnection::create(private_loop, c, std::move(h));
    const std::string where = conn->describe();
    conn->start();
    const auto deadline =
        Clock::now() + std::chrono::milliseconds(options.connect_timeout_ms + 1000);
    while (!done && Clock::now() < deadline) {
      private_loop.run_one_for(std::chrono::milliseconds(50));
    }
    conn->close();
    conn.reset();
    private_loop.poll();  // let the aborted operations finish on their own loop
    if (!done) outcome = "no answer within " + std::to_string(options.connect_timeout_ms) + " ms";
    if (outcome) return where + ": " + *outcome;
    return std::nullopt;
  }
};

RedisTransporter::RedisTransporter(asio::io_context& loop, RedisOptions options)
    : impl_(std::make_shared<Impl>(loop, std::move(options))) {}

RedisTransporter::~RedisTransporter() {
  close();
}

void RedisTransporter::connect(TransporterHandlers handlers) {
  Impl& im = *impl_;
  if (im.state == Impl::State::closed) {
    throw std::runtime_error("Redis transporter: connect() after close()");
  }
  if (im.state != Impl::State::idle) throw std::runtime_error("Redis transporter: connected");
  if (im.options.tls.enabled && !im.options.tls.reject_unauthorized) {
    logger()->warn("Redis TLS without certificate verification (rejectUnauthorized: false)");
  }

  std::vector<std::string> failures;
  std::optional<size_t> working;
  for (size_t i = 0; i < im.options.endpoints.size() && !working; ++i) {
    if (auto failure = im.probe(i)) {
      failures.push_back(*failure);
    } else {
      working = i;
    }
  }
  if (!working) {
    std::string reason = "cannot connect to Redis: ";
    for (size_t i = 0; i < failures.size(); ++i) reason += (i ? "; " : "") + failures[i];
    im.set_error(reason);
    throw std::runtime_error(reason);
  }
  im.endpoint = *working;
  im.handlers = std::move(handlers);
  im.state = Impl::State::starting;
  im.open_connections();
}

void RedisTransporter::subscribe(const std::string& subject, const std::string& queue, int) {
  if (!queue.empty()) {
    throw std::invalid_argument("Redis has no queue groups: cannot subscribe " + subject +
                                " in queue " + queue + " (the broker balances on Redis)");
  }
  Impl& im = *impl_;
  if (im.state == Impl::State::closed) return;
  auto [it, inserted] = im.subs.try_emplace(subject);
  if (!inserted) return;
  Impl::Sub& sub = it->second;
  sub.barrier = ++im.subscribe_seq;
  im.unsettled.insert(sub.barrier);
  im.send_subscribe(subject, sub);
}

void RedisTransporter::unsubscribe(const std::string& subject, const std::string& queue) {
  Impl& im = *impl_;
  if (!queue.empty()) return;
  auto it = im.subs.find(subject);
  if (it == im.subs.end()) return;
  Impl::Sub sub = it->second;
  im.subs.erase(it);
  if (sub.in_flight) im.subscribes_in_flight--;
  if (sub.barrier != 0) {
    im.unsettled.erase(sub.barrier);
    im.drain_held();
  }
  if (im.sub_ready) {
    im.sub_conn->send(RedisCommand::unsubscribe, subject, format_command({"UNSUBSCRIBE", subject}));
  }
  im.check_up();
}

bool RedisTransporter::publish(const std::string& subject, std::string_view data) {
  Impl& im = *impl_;
  if (im.state != Impl::State::up && im.state != Impl::State::starting) {
    im.set_error("cannot publish to " + subject + ": not connected to Redis");
    return false;
  }
  std::string command;
  try {
    command = format_command({"PUBLISH", subject, data});
  } catch (const std::exception& e) {
    im.set_error("cannot publish to " + subject + ": " + e.what());
    return false;
  }
  if (command.size() > im.options.max_outgoing_bytes) {
    im.set_error("cannot publish " + std::to_string(data.size()) + " bytes to " + subject +
                 ": larger than max_outgoing_bytes (" +
                 std::to_string(im.options.max_outgoing_bytes) + ")");
    return false;
  }
  if (im.unanswered_bytes + command.size() > im.options.max_outgoing_bytes) {
    im.set_error("cannot publish " + std::to_string(data.size()) + " bytes to " + subject +
                 ": outgoing buffer full (" + std::to_string(im.unanswered_bytes) +
                 " bytes not yet answered by Redis)");
    return false;
  }
  im.unanswered_bytes += command.size();
  im.held.push_back(Impl::Held{subject, std::move(command), data.size(), im.subscribe_seq});
  im.drain_held();
  return true;
}

void RedisTransporter::flush(int timeout_ms) {
  Impl& im = *impl_;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  auto keep = impl_;  // a handler run below may destroy the transporter's owner
  while (im.unanswered_bytes > 0 &&
         (im.state == Impl::State::up || im.state == Impl::State::starting)) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0 || im.loop.stopped()) break;
    im.loop.run_one_for(std::min(left, std::chrono::milliseconds(50)));
  }
  if (im.unanswered_bytes > 0) {
    im.set_error("flush: " + std::to_string(im.unanswered_bytes) +
                 " published bytes not answered by Redis within " + std::to_string(timeout_ms) +
                 " ms");
  }
}

void RedisTransporter::close() {
  if (!impl_) return;
  Impl& im = *impl_;
  if (im.state == Impl::State::closed) return;
  const bool was_open = im.state != Impl::State::idle;
  im.state = Impl::State::closed;
  im.handlers = TransporterHandlers{};
  im.retry_timer.cancel();
  im.resubscribe_timer.cancel();
  im.close_connections();
  im.held.clear();
  im.unanswered_bytes = 0;
  if (was_open) logger()->info("Redis connections closed");
}

bool RedisTransporter::connected() const {
  return impl_->state == Impl::State::up;
}

std::string RedisTransporter::last_error() const {
  return impl_->error;
}

TransporterStats RedisTransporter::stats() const {
  TransporterStats stats = impl_->counts;
  stats.connected = connected();
  return stats;
}

}  // namespace steedos::transport
