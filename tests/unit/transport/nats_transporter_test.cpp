#include "transport/nats_transporter.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/unit/support/nats_server.hpp"

using steedos::testing::accepts_tcp;
using steedos::testing::free_port;
using steedos::testing::have_nats_server;
using steedos::testing::NatsServer;
using steedos::testing::NatsServerOptions;
using steedos::transport::NatsOptions;
using steedos::transport::NatsTransporter;
using steedos::transport::TransporterHandlers;
using namespace std::chrono_literals;

namespace {

/// Runs `loop` on this thread until `pred` holds or `timeout` passes.
template <typename Pred>
bool run_until(asio::io_context& loop, Pred pred, std::chrono::milliseconds timeout = 3000ms) {
  if (loop.stopped()) loop.restart();  // run()/poll() out of work leave it stopped
  auto guard = asio::make_work_guard(loop);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred() && std::chrono::steady_clock::now() < deadline) loop.run_for(10ms);
  return pred();
}

struct Received {
  std::string subject;
  std::string data;
  std::thread::id thread;
};

/// A transporter that records its callbacks.
struct Peer {
  Peer(asio::io_context& loop, const std::string& url, int reconnect_wait_ms = 100)
      : transporter(std::make_unique<NatsTransporter>(loop, options(url, reconnect_wait_ms))) {}

  static NatsOptions options(const std::string& url, int reconnect_wait_ms) {
    NatsOptions o;
    o.url = url;
    o.name = "transporter-test";
    o.connect_timeout_ms = 500;
    o.reconnect_wait_ms = reconnect_wait_ms;
    return o;
  }

  void connect() {
    TransporterHandlers h;
    h.on_message = [this](const std::string& subject, std::string_view data) {
      received.push_back({subject, std::string(data), std::this_thread::get_id()});
    };
    h.on_disconnected = [this] { ++disconnects; };
    h.on_reconnected = [this] { ++reconnects; };
    h.on_closed = [this] { ++closes; };
    transporter->connect(std::move(h));
  }

  std::unique_ptr<NatsTransporter> transporter;
  std::vector<Received> received;
  int disconnects = 0;
  int reconnects = 0;
  int closes = 0;
};

}  // namespace

TEST_SUITE("nats_transporter") {
  TEST_CASE("connect failure throws a readable error") {
    asio::io_context loop;
    const std::string url = "nats://127.0.0.1:" + std::to_string(free_port());
    Peer peer(loop, url);
    std::string what;
    try {
      peer.connect();
    } catch (const std::runtime_error& e) {
      what = e.what();
    }
    CHECK(what.find("cannot connect to " + url + ": No server available for connection") == 0);
    CHECK_FALSE(peer.transporter->connected());
    CHECK_FALSE(peer.transporter->publish("x", "y"));
    CHECK(peer.transporter->last_error().find("not connected") != std::string::npos);
  }

  TEST_CASE("publish/subscribe round trip runs the handler on the loop thread") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server;
    asio::io_context loop;
    Peer a(loop, server.url()), b(loop, server.url());
    a.connect();
    b.connect();
    CHECK(a.transporter->connected());
    a.transporter->subscribe("MOL.INFO.>");
    a.transporter->subscribe("MOL.INFO.>");  // no-op: one delivery per message
    a.transporter->subscribe("MOL.PING");
    a.transporter->flush(1000);

    const std::string binary("bin\0ary\xff", 8);
    CHECK(b.transporter->publish("MOL.INFO.a", binary));
    CHECK(b.transporter->publish("MOL.INFO.a", ""));
    b.transporter->flush(1000);
    REQUIRE(run_until(loop, [&] { return a.received.size() >= 2; }));
    CHECK(a.received[0].subject == "MOL.INFO.a");
    CHECK(a.received[0].data == binary);
    CHECK(a.received[1].data.empty());
    CHECK(a.received[0].thread == std::this_thread::get_id());

    // After unsubscribe nothing more arrives on that subject.
    a.transporter->unsubscribe("MOL.INFO.>");
    a.transporter->flush(1000);
    b.transporter->publish("MOL.INFO.a", "dropped");
    b.transporter->publish("MOL.PING", "marker");
    b.transporter->flush(1000);
    REQUIRE(run_until(loop, [&] { return a.received.size() >= 3; }));
    run_until(
        loop, [] { return false; }, 100ms);
    REQUIRE(a.received.size() == 3);
    CHECK(a.received[2].subject == "MOL.PING");
    CHECK(b.received.empty());
  }

  TEST_CASE("a queue subscription delivers each message to one member") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server;
    asio::io_context loop;
    Peer m1(loop, server.url()), m2(loop, server.url()), plain(loop, server.url()),
        sender(loop, server.url());
    for (Peer* p : {&m1, &m2, &plain, &sender}) p->connect();
    m1.transporter->subscribe("MOL.REQB.greeter.hello", "greeter.hello");
    m2.transporter->subscribe("MOL.REQB.greeter.hello", "greeter.hello");
    plain.transporter->subscribe("MOL.REQB.greeter.hello");
    for (Peer* p : {&m1, &m2, &plain}) p->transporter->flush(1000);

    constexpr size_t kCount = 20;
    for (size_t i = 0; i < kCount; ++i) {
      REQUIRE(sender.transporter->publish("MOL.REQB.greeter.hello", std::to_string(i)));
    }
    sender.transporter->flush(1000);
    REQUIRE(run_until(loop, [&] {
      return plain.received.size() == kCount && m1.received.size() + m2.received.size() == kCount;
    }));
    run_until(
        loop, [] { return false; }, 100ms);
    CHECK(m1.received.size() + m2.received.size() == kCount);
    CHECK(plain.received.size() == kCount);
    for (size_t i = 0; i < kCount; ++i) CHECK(plain.received[i].data == std::to_string(i));
  }

  TEST_CASE("publish above max_payload returns false with the reason") {
    SKIP_WITHOUT_NATS_SERVER();
    char config_path[] = "/tmp/nats-transporter-test-XXXXXX.conf";
    const int fd = ::mkstemps(config_path, 5);
    REQUIRE(fd >= 0);
    ::close(fd);
    std::ofstream(config_path) << "max_payload: 1024\n";
    NatsServerOptions with_config;
    with_config.config_file = config_path;
    NatsServer server(with_config);
    ::unlink(config_path);  // nats-server has read it

    asio::io_context loop;
    Peer a(loop, server.url());
    a.connect();
    a.transporter->subscribe("big");
    a.transporter->flush(1000);
    CHECK_FALSE(a.transporter->publish("big", std::string(2000, 'x')));
    CHECK(a.transporter->last_error().find("Maximum Payload") != std::string::npos);
    CHECK(a.transporter->connected());  // a refused publish does not hurt the connection
    CHECK(a.transporter->publish("big", std::string(1000, 'y')));
    a.transporter->flush(1000);
    REQUIRE(run_until(loop, [&] { return a.received.size() == 1; }));
    CHECK(a.received[0].data.size() == 1000);
  }

  TEST_CASE("reconnect: subscriptions survive a server restart") {
    SKIP_WITHOUT_NATS_SERVER();
    const unsigned short port = free_port();
    auto server = std::make_unique<NatsServer>(port);
    asio::io_context loop;
    Peer a(loop, server->url(), 100);
    a.connect();
    a.transporter->subscribe("MOL.EVENT.a");
    a.transporter->flush(1000);

    server->kill();
    REQUIRE(run_until(loop, [&] { return a.disconnects == 1; }));
    CHECK_FALSE(a.transporter->connected());
    CHECK(a.transporter->publish("MOL.EVENT.a", "buffered"));  // kept in the reconnect buffer

    server = std::make_unique<NatsServer>(port);
    REQUIRE(run_until(
        loop, [&] { return a.reconnects == 1; }, 5000ms));
    CHECK(a.transporter->connected());
    CHECK(a.transporter->publish("MOL.EVENT.a", "after"));
    a.transporter->flush(1000);
    REQUIRE(run_until(loop, [&] { return a.received.size() == 2; }));
    CHECK(a.received[0].data == "buffered");
    CHECK(a.received[1].data == "after");
    CHECK(a.closes == 0);
  }

  TEST_CASE("stats: messages and payload bytes both ways, a restart is one reconnect") {
    SKIP_WITHOUT_NATS_SERVER();
    const unsigned short port = free_port();
    auto server = std::make_unique<NatsServer>(port);
    asio::io_context loop;
    Peer a(loop, server->url(), 100), b(loop, server->url(), 100);
    a.connect();
    b.connect();
    a.transporter->subscribe("MOL.EVENT.a");
    a.transporter->flush(1000);  // the SUB is in before b publishes
    const auto a0 = a.transporter->stats();
    const auto b0 = b.transporter->stats();
    CHECK(a0.connected);
    CHECK(a0.reconnects == 0);

    constexpr int kMessages = 50;
    uint64_t payload_bytes = 0;
    for (int i = 0; i < kMessages; ++i) {
      const std::string payload(size_t(i * 37), char('a' + i % 26));  // 0 .. 1813 bytes
      payload_bytes += payload.size();
      REQUIRE(b.transporter->publish("MOL.EVENT.a", payload));
    }
    REQUIRE(run_until(loop, [&] { return a.received.size() == size_t(kMessages); }));
    const auto a1 = a.transporter->stats();
    const auto b1 = b.transporter->stats();
    CHECK(b1.messages_sent - b0.messages_sent == kMessages);
    CHECK(b1.bytes_sent - b0.bytes_sent == payload_bytes);
    CHECK(a1.messages_received - a0.messages_received == kMessages);
    CHECK(a1.bytes_received - a0.bytes_received == payload_bytes);
    CHECK(a1.messages_sent == a0.messages_sent);  // a published nothing
    CHECK(b1.messages_received == b0.messages_received);

    server->kill();
    REQUIRE(run_until(loop, [&] { return a.disconnects == 1; }));
    CHECK_FALSE(a.transporter->stats().connected);
    CHECK(a.transporter->stats().reconnects == 0);
    server = std::make_unique<NatsServer>(port);
    REQUIRE(run_until(
        loop, [&] { return a.reconnects == 1; }, 5000ms));
    const auto a2 = a.transporter->stats();
    CHECK(a2.connected);
    CHECK(a2.reconnects == 1);

    // The figures outlive close(): a last scrape at shutdown still sees them.
    a.transporter->close();
    const auto closed = a.transporter->stats();
    CHECK_FALSE(closed.connected);
    CHECK(closed.messages_received >= a1.messages_received);
    CHECK(closed.reconnects == 1);
  }

  TEST_CASE(
      "stats and connected never wait for cnats, not while it reconnects to a frozen server") {
    SKIP_WITHOUT_NATS_SERVER();
    const unsigned short port = free_port();
    auto server = std::make_unique<NatsServer>(port);
    asio::io_context loop;
    NatsOptions o = Peer::options(server->url(), 100);
    o.connect_timeout_ms = 1000;
    Peer a(loop, server->url());
    a.transporter = std::make_unique<NatsTransporter>(loop, o);
    a.connect();
    server->kill();
    REQUIRE(run_until(loop, [&] { return a.disconnects == 1; }));
    // A frozen server on the same port: each reconnect attempt connects, then waits up to
    // connect_timeout_ms for INFO inside cnats' connection lock (natsConnection_GetStats and
    // natsConnection_Status waited for it: 1.0 s each).
    server = std::make_unique<NatsServer>(port);
    server->freeze();
    double worst_ms = 0;
    const auto until = std::chrono::steady_clock::now() + 1500ms;
    while (std::chrono::steady_clock::now() < until) {
      const auto t0 = std::chrono::steady_clock::now();
      const auto stats = a.transporter->stats();
      const bool connected = a.transporter->connected();
      worst_ms = std::max(
          worst_ms,
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      CHECK_FALSE(stats.connected);
      CHECK_FALSE(connected);
      loop.restart();
      loop.run_for(10ms);
    }
    CHECK(worst_ms < 100);  // microseconds in fact; the bound only absorbs a busy host
    CHECK(a.reconnects == 0);
    server->thaw();
    REQUIRE(run_until(
        loop, [&] { return a.reconnects == 1; }, 5000ms));
    CHECK(a.transporter->stats().connected);
    CHECK(a.transporter->stats().reconnects == 1);
  }

  TEST_CASE("without reconnect a lost connection is closed for good") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server;
    asio::io_context loop;
    NatsOptions o = Peer::options(server.url(), 100);
    o.allow_reconnect = false;
    Peer a(loop, server.url());
    a.transporter = std::make_unique<NatsTransporter>(loop, o);
    a.connect();
    a.transporter->subscribe("x");
    a.transporter->flush(1000);

    server.kill();
    REQUIRE(run_until(loop, [&] { return a.closes == 1; }));
    CHECK(a.disconnects == 1);
    CHECK_FALSE(a.transporter->connected());
    CHECK_FALSE(a.transporter->publish("x", "y"));
    CHECK(a.transporter->last_error().find("Connection Closed") != std::string::npos);
    const auto started = std::chrono::steady_clock::now();
    a.transporter->close();
    CHECK(std::chrono::steady_clock::now() - started < 1s);
  }

  TEST_CASE("no handler runs after close or destruction") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server;
    asio::io_context loop;
    Peer closed(loop, server.url()), destroyed(loop, server.url()), control(loop, server.url());
    for (Peer* p : {&closed, &destroyed, &control}) {
      p->connect();
      p->transporter->subscribe("x");
      p->transporter->flush(1000);
    }
    control.transporter->publish("x", "queued");
    control.transporter->flush(1000);
    // cnats has delivered and posted, the loop has not run (a generous wait for a loaded
    // machine: if it were too short the test would pass without testing the queued handler).
    std::this_thread::sleep_for(500ms);

    const auto started = std::chrono::steady_clock::now();
    closed.transporter->close();
    closed.transporter->close();  // idempotent
    CHECK(std::chrono::steady_clock::now() - started < 1s);
    CHECK_FALSE(closed.transporter->connected());
    CHECK_FALSE(closed.transporter->publish("x", "y"));
    CHECK_THROWS_AS(closed.connect(), std::runtime_error);
    destroyed.transporter.reset();

    REQUIRE(run_until(loop, [&] { return control.received.size() == 1; }));
    run_until(
        loop, [] { return false; }, 100ms);
    CHECK(closed.received.empty());
    CHECK(closed.disconnects == 0);
    CHECK(closed.closes == 0);
    CHECK(destroyed.received.empty());
  }

  TEST_CASE("a burst larger than one socket read arrives complete and in order") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server;
    asio::io_context loop;
    Peer a(loop, server.url()), b(loop, server.url());
    a.connect();
    b.connect();
    a.transporter->subscribe("burst");
    a.transporter->flush(1000);
    constexpr int kCount = 3000;  // ~3 MB: many reads of cnats' 32 KiB buffer
    const std::string filler(1000, 'x');
    for (int i = 0; i < kCount; ++i) {
      REQUIRE(b.transporter->publish("burst", std::to_string(i) + ":" + filler));
      if (i % 100 == 99)
        run_until(
            loop, [] { return false; }, 1ms);  // let b write
    }
    b.transporter->flush(2000);
    REQUIRE(run_until(
        loop, [&] { return a.received.size() == size_t(kCount); }, 10000ms));
    for (int i = 0; i < kCount; ++i) {
      REQUIRE(a.received[size_t(i)].data == std::to_string(i) + ":" + filler);
    }
  }

  TEST_CASE("a handler that unsubscribes does not stall the other subscriptions") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server;
    asio::io_context loop;
    Peer a(loop, server.url()), b(loop, server.url());
    TransporterHandlers h;
    std::vector<std::string> got;
    h.on_message = [&](const std::string& subject, std::string_view data) {
      got.push_back(subject + "=" + std::string(data));
      if (subject == "one") a.transporter->unsubscribe("one");
    };
    a.transporter->connect(std::move(h));
    b.connect();
    a.transporter->subscribe("one");
    a.transporter->subscribe("two");
    a.transporter->flush(1000);
    b.transporter->publish("one", "1");
    b.transporter->publish("one", "dropped");
    b.transporter->publish("two", "2");
    b.transporter->flush(1000);
    REQUIRE(run_until(loop, [&] { return got.size() >= 2; }));
    run_until(
        loop, [] { return false; }, 100ms);
    CHECK(got == std::vector<std::string>{"one=1", "two=2"});
  }

  TEST_CASE("publish refuses to grow the outgoing buffer past its limit") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server;
    asio::io_context loop;
    NatsOptions o = Peer::options(server.url(), 100);
    o.max_outgoing_bytes = 64 * 1024;
    Peer a(loop, server.url());
    a.transporter = std::make_unique<NatsTransporter>(loop, o);
    a.connect();
    // The loop does not run, so nothing is written: the buffer only grows.
    const std::string chunk(4096, 'z');
    int accepted = 0;
    while (accepted < 100 && a.transporter->publish("big", chunk)) ++accepted;
    CHECK(accepted >= 14);
    CHECK(accepted <= 16);
    CHECK(a.transporter->last_error().find("outgoing buffer full") != std::string::npos);
    // Once the loop writes it out, publishing works again.
    REQUIRE(run_until(loop, [&] { return a.transporter->publish("big", chunk); }));
  }

  TEST_CASE("messages of several subscriptions read together are handed over by drain rank") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server;
    asio::io_context loop;
    Peer a(loop, server.url()), b(loop, server.url());
    a.connect();
    b.connect();
    a.transporter->subscribe("late", {}, 5);
    a.transporter->subscribe("early", {}, 1);
    a.transporter->subscribe("also.late", {}, 5);
    a.transporter->flush(1000);
    b.transporter->publish("also.late", "3");
    b.transporter->publish("late", "1");
    b.transporter->publish("early", "2");
    b.transporter->flush(1000);
    // All three wait in a's socket, so one read takes them; nothing observable says they have
    // arrived, hence a wait with a margin for a loaded machine.
    std::this_thread::sleep_for(500ms);
    REQUIRE(run_until(loop, [&] { return a.received.size() == 3; }));
    CHECK(a.received[0].subject == "early");
    CHECK(a.received[1].subject == "late");  // equal ranks: subscription order
    CHECK(a.received[2].subject == "also.late");
  }
}
