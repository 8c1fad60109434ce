// Test that header file is self-contained.
#include "transport/redis_transporter.hpp"

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
#include <asio/post.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/unit/support/redis_server.hpp"

using steedos::transport::RedisEndpoint;
using steedos::transport::RedisOptions;
using steedos::transport::RedisTransporter;
using steedos::transport::TransporterHandlers;
using namespace std::chrono_literals;
using namespace steedos::testing;

namespace {

/// A CA, a server certificate (localhost, 127.0.0.1) and a client certificate, made by openssl
/// in a temporary directory; plus a second CA nobody trusts.
struct TestPki {
  std::string dir;
  bool ok = false;

  TestPki() {
    char pattern[] = "/tmp/redis-tls-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) return;
    dir = pattern;
    const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    std::string script =
        "set -e; cd " + dir + "; exec 2>openssl.log; " + "openssl req -x509 " + key +
        " -keyout ca.key -out ca.crt -days 2 -subj '/CN=Test CA'; " + "openssl req -x509 " + key +
        " -keyout other-ca.key -out other-ca.crt -days 2 -subj '/CN=Other CA'; " + "openssl req " +
        key + " -keyout server.key -out server.csr -subj '/CN=localhost'; " +
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > server.ext; " +
        "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key "
        "-CAcreateserial -out server.crt -days 2 -extfile server.ext; " +
        "openssl req " + key + " -keyout client.key -out client.csr -subj '/CN=client'; " +
        "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key "
        "-CAcreateserial -out client.crt -days 2; echo done";
    ok = shell("sh -c \"" + script + "\"").find("done") != std::string::npos;
  }
  ~TestPki() {
    if (!dir.empty()) shell("rm -rf " + dir);
  }
  std::string path(const std::string& name) const { return dir + "/" + name; }
  std::string read(const std::string& name) const {
    std::ifstream in(path(name));
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  std::vector<std::string> server_args(bool auth_clients) const {
    return {"--tls-cert-file",    path("server.crt"),         "--tls-key-file",
            path("server.key"),   "--tls-ca-cert-file",       path("ca.crt"),
            "--tls-auth-clients", auth_clients ? "yes" : "no"};
  }
  std::string cli_flags() const {
    return "--tls --cacert " + path("ca.crt") + " --cert " + path("client.crt") + " --key " +
           path("client.key");
  }
};

template <typename Pred>
bool run_until(asio::io_context& loop, Pred pred, std::chrono::milliseconds timeout = 10000ms) {
  if (loop.stopped()) loop.restart();
  auto guard = asio::make_work_guard(loop);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred() && std::chrono::steady_clock::now() < deadline) loop.run_for(10ms);
  return pred();
}

/// Counts of the callbacks and the messages a transporter received.
struct Recorder {
  std::vector<std::pair<std::string, std::string>> messages;
  int disconnected = 0;
  int reconnected = 0;
  int closed = 0;

  TransporterHandlers handlers() {
    TransporterHandlers h;
    h.on_message = [this](const std::string& s, std::string_view d) {
      messages.emplace_back(s, std::string(d));
    };
    h.on_disconnected = [this] { disconnected++; };
    h.on_reconnected = [this] { reconnected++; };
    h.on_closed = [this] { closed++; };
    return h;
  }
  bool got(const std::string& subject, const std::string& data) const {
    return std::find(messages.begin(), messages.end(), std::make_pair(subject, data)) !=
           messages.end();
  }
};

#define SKIP_WITHOUT_REDIS()                                               \
  if (!have_redis()) {                                                     \
    MESSAGE("redis-server not installed; skipping the Redis transporter"); \
    return;                                                                \
  }

}  // namespace

TEST_SUITE("redis_transporter") {
  TEST_CASE("names itself Redis, has no balancer, refuses queue groups") {
    asio::io_context loop;
    RedisTransporter t(loop, RedisOptions{});
    CHECK(t.name() == "Redis");
    CHECK_FALSE(t.has_builtin_balancer());
    CHECK_THROWS_AS(t.subscribe("MOL.REQB.x", "x"), std::invalid_argument);
    CHECK_FALSE(t.publish("MOL.INFO", "{}"));  // not connected
  }

  TEST_CASE("connect throws a clear error when Redis is unreachable") {
    asio::io_context loop;
    RedisOptions o;
    o.endpoints = {RedisEndpoint{"127.0.0.1", free_port()}};
    RedisTransporter t(loop, o);
    Recorder r;
    try {
      t.connect(r.handlers());
      FAIL("connect succeeded");
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      CHECK(what.find("cannot connect to Redis") != std::string::npos);
      CHECK(what.find("127.0.0.1:" + std::to_string(o.endpoints[0].port)) != std::string::npos);
    }
  }

  TEST_CASE("publish/subscribe round trip; exactly the subscriptions asked; barrier") {
    SKIP_WITHOUT_REDIS();
    RedisServer server;
    asio::io_context loop;
    RedisTransporter a(loop, server.options());
    RedisTransporter b(loop, server.options());
    Recorder ra, rb;
    a.connect(ra.handlers());
    b.connect(rb.handlers());
    // Subscribed and published before the loop runs: the barrier holds the publish until the
    // SUBSCRIBE is confirmed, so a's own packet comes back to it.
    a.subscribe("MOL-t.INFO");
    a.subscribe("MOL-t.REQ.a");
    a.subscribe("MOL-t.REQ.a");  // idempotent
    CHECK(a.publish("MOL-t.INFO", R"({"self":1})"));
    b.subscribe("MOL-t.RES.b");
    REQUIRE(run_until(loop, [&] { return a.connected() && b.connected(); }));
    REQUIRE(run_until(loop, [&] { return ra.got("MOL-t.INFO", R"({"self":1})"); }));

    CHECK(b.publish("MOL-t.REQ.a", "hello"));
    CHECK(a.publish("MOL-t.RES.b", "world"));
    REQUIRE(run_until(loop, [&] { return ra.got("MOL-t.REQ.a", "hello"); }));
    REQUIRE(run_until(loop, [&] { return rb.got("MOL-t.RES.b", "world"); }));
    CHECK(redis_channels(server) ==
          std::set<std::string>{"MOL-t.INFO", "MOL-t.REQ.a", "MOL-t.RES.b"});

    // Barrier at run time: subscribe and publish in the same turn.
    a.subscribe("MOL-t.PONG.a");
    CHECK(a.publish("MOL-t.PONG.a", "late"));
    REQUIRE(run_until(loop, [&] { return ra.got("MOL-t.PONG.a", "late"); }));

    // A binary-safe payload, in order.
    const std::string binary("x\0\r\n$3\r\n", 8);
    for (int i = 0; i < 100; ++i) CHECK(b.publish("MOL-t.REQ.a", binary + std::to_string(i)));
    REQUIRE(run_until(loop, [&] { return ra.messages.size() >= 103; }));
    for (int i = 0; i < 100; ++i) CHECK(ra.messages[3 + i].second == binary + std::to_string(i));
    // One packet larger than the outgoing bound is refused at once, with the reason.
    auto small = server.options();
    small.max_outgoing_bytes = 1000;
    RedisTransporter c(loop, small);
    Recorder rc;
    c.connect(rc.handlers());
    CHECK_FALSE(c.publish("MOL-t.REQ.a", std::string(2000, 'x')));
    CHECK(c.last_error().find("larger than max_outgoing_bytes") != std::string::npos);
    CHECK(c.publish("MOL-t.REQ.a", std::string(500, 'x')));
    CHECK_FALSE(c.publish("MOL-t.REQ.a", std::string(500, 'x')));  // 2 x 500 + framing > 1000
    CHECK(c.last_error().find("outgoing buffer full") != std::string::npos);
    c.flush(5000);
    CHECK(c.publish("MOL-t.REQ.a", std::string(500, 'x')));  // answered: room again
    c.close();

    // Subscribe, unsubscribe, subscribe again in one turn: the barrier waits for the last.
    a.subscribe("MOL-t.DISCOVER");
    a.unsubscribe("MOL-t.DISCOVER");
    a.subscribe("MOL-t.DISCOVER");
    CHECK(a.publish("MOL-t.DISCOVER", "again"));
    REQUIRE(run_until(loop, [&] { return ra.got("MOL-t.DISCOVER", "again"); }));
    a.unsubscribe("MOL-t.DISCOVER");

    a.unsubscribe("MOL-t.PONG.a");
    REQUIRE(run_until(loop, [&] { return redis_channels(server).count("MOL-t.PONG.a") == 0; }));

    // flush waits for the PUBLISH replies, driving the loop itself.
    CHECK(b.publish("MOL-t.REQ.a", "bye"));
    b.flush(5000);
    CHECK(b.last_error().find("flush") == std::string::npos);
    CHECK(ra.disconnected == 0);
    a.close();
    b.close();
    CHECK_FALSE(a.connected());
  }

  TEST_CASE("password: right, wrong and missing") {
    SKIP_WITHOUT_REDIS();
    RedisServer server({"--requirepass", "s3cret"});
    asio::io_context loop;
    SUBCASE("right") {
      auto o = server.options();
      o.password = "s3cret";
      RedisTransporter t(loop, o);
      Recorder r;
      t.connect(r.handlers());
      t.subscribe("MOL.INFO");
      CHECK(t.publish("MOL.INFO", "x"));
      REQUIRE(run_until(loop, [&] { return r.got("MOL.INFO", "x"); }));
    }
    SUBCASE("wrong") {
      auto o = server.options();
      o.password = "nope";
      RedisTransporter t(loop, o);
      Recorder r;
      try {
        t.connect(r.handlers());
        FAIL("connect succeeded");
      } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).find("WRONGPASS") != std::string::npos);
        CHECK(std::string(e.what()).find("authentication failed") != std::string::npos);
      }
    }
    SUBCASE("missing") {
      RedisTransporter t(loop, server.options());
      Recorder r;
      try {
        t.connect(r.handlers());
        FAIL("connect succeeded");
      } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).find("NOAUTH") != std::string::npos);
      }
    }
  }

  TEST_CASE("a password sent to a server without one only warns") {
    SKIP_WITHOUT_REDIS();
    RedisServer server;
    asio::io_context loop;
    auto o = server.options();
    o.password = "unneeded";
    RedisTransporter t(loop, o);
    Recorder r;
    t.connect(r.handlers());
    REQUIRE(run_until(loop, [&] { return t.connected(); }));
  }

  TEST_CASE("ACL user without channel rights: NOPERM is reported, nothing crashes") {
    SKIP_WITHOUT_REDIS();
    RedisServer server;
    REQUIRE(server
                .cli("ACL SETUSER molnode on '>pw' -@all +subscribe +publish +ping "
                     "'&MOL-ok.*'")
                .find("OK") != std::string::npos);
    asio::io_context loop;
    auto o = server.options();
    o.username = "molnode";
    o.password = "pw";
    // Retries of the refused SUBSCRIBE come after 1-2 s, so they do not overwrite
    // last_error() while the refused PUBLISH is checked.
    o.reconnect_min_ms = 2000;
    o.reconnect_max_ms = 2000;
    RedisTransporter t(loop, o);
    Recorder r;
    t.connect(r.handlers());
    t.subscribe("MOL-ok.INFO");
    t.subscribe("MOL-denied.INFO");
    // The refused subscription does not hold the transport down nor block publishing.
    REQUIRE(run_until(loop, [&] { return t.connected(); }));
    CHECK(t.last_error().find("NOPERM") != std::string::npos);
    CHECK(t.publish("MOL-ok.INFO", "fine"));
    REQUIRE(run_until(loop, [&] { return r.got("MOL-ok.INFO", "fine"); }));
    CHECK(t.publish("MOL-denied.INFO", "refused"));  // accepted locally, refused by Redis
    REQUIRE(run_until(
        loop, [&] { return t.last_error().find("PUBLISH MOL-denied.INFO") != std::string::npos; }));
    CHECK(t.last_error().find("NOPERM") != std::string::npos);
    CHECK(t.connected());
    CHECK(redis_channels(server) == std::set<std::string>{"MOL-ok.INFO"});
    // Granting the channel later lets the retried SUBSCRIBE through.
    REQUIRE(server.cli("ACL SETUSER molnode '&MOL-denied.*'").find("OK") != std::string::npos);
    REQUIRE(run_until(loop, [&] { return redis_channels(server).count("MOL-denied.INFO") == 1; }));
    CHECK(r.disconnected == 0);
  }

  TEST_CASE("server restart: disconnected, publish fails, reconnected, subscriptions back") {
    SKIP_WITHOUT_REDIS();
    RedisServer server;
    asio::io_context loop;
    RedisTransporter t(loop, server.options());
    Recorder r;
    t.connect(r.handlers());
    for (const char* s : {"MOL.INFO", "MOL.REQ.n1", "MOL.HEARTBEAT"}) t.subscribe(s);
    REQUIRE(run_until(loop, [&] { return t.connected(); }));
    CHECK(lines(server.cli("CLIENT LIST")).size() == 3);  // ours + redis-cli

    for (int round = 1; round <= 2; ++round) {
      CAPTURE(round);
      server.kill();
      REQUIRE(run_until(loop, [&] { return r.disconnected == round; }));
      CHECK_FALSE(t.connected());
      CHECK_FALSE(t.publish("MOL.INFO", "while down"));
      CHECK(t.last_error().find("not connected") != std::string::npos);
      // Let a few reconnect attempts fail.
      run_until(
          loop, [] { return false; }, 300ms);
      server.start();
      REQUIRE(run_until(loop, [&] { return r.reconnected == round; }));
      CHECK(t.connected());
      CHECK(redis_channels(server) ==
            std::set<std::string>{"MOL.INFO", "MOL.REQ.n1", "MOL.HEARTBEAT"});
      CHECK(lines(server.cli("CLIENT LIST")).size() == 3);
      CHECK(t.publish("MOL.REQ.n1", "after"));
      REQUIRE(run_until(loop, [&] { return r.messages.size() == size_t(round); }));
    }
    CHECK(r.disconnected == 2);
    CHECK(r.reconnected == 2);
  }

  TEST_CASE("stats: PUBLISH and message payload bytes, a restart is one reconnect") {
    SKIP_WITHOUT_REDIS();
    RedisServer server;
    asio::io_context loop;
    RedisTransporter a(loop, server.options());
    RedisTransporter b(loop, server.options());
    Recorder ra, rb;
    CHECK_FALSE(a.stats().connected);
    a.connect(ra.handlers());
    b.connect(rb.handlers());
    a.subscribe("MOL-s.EVENT.a");
    REQUIRE(run_until(loop, [&] { return a.connected() && b.connected(); }));
    const auto a0 = a.stats();
    const auto b0 = b.stats();
    CHECK(a0.connected);
    CHECK(a0.messages_received == 0);
    CHECK(b0.messages_sent == 0);

    constexpr int kMessages = 50;
    uint64_t payload_bytes = 0;
    for (int i = 0; i < kMessages; ++i) {
      const std::string payload(size_t(i * 37), char('a' + i % 26));  // 0 .. 1813 bytes
      payload_bytes += payload.size();
      REQUIRE(b.publish("MOL-s.EVENT.a", payload));
    }
    CHECK(b.publish("MOL-s.nobody", "12345"));  // sent; nobody subscribed
    REQUIRE(run_until(loop, [&] { return ra.messages.size() == size_t(kMessages); }));
    b.flush(5000);
    const auto a1 = a.stats();
    const auto b1 = b.stats();
    CHECK(b1.messages_sent == kMessages + 1);
    CHECK(b1.bytes_sent == payload_bytes + 5);  // payloads only: no RESP framing, no channel
    CHECK(a1.messages_received == kMessages);
    CHECK(a1.bytes_received == payload_bytes);
    CHECK(a1.messages_sent == 0);
    CHECK(b1.messages_received == 0);

    // Refused while down: not counted as sent.
    server.kill();
    REQUIRE(run_until(loop, [&] { return ra.disconnected == 1 && rb.disconnected == 1; }));
    CHECK_FALSE(a.stats().connected);
    CHECK_FALSE(b.publish("MOL-s.EVENT.a", "refused"));
    CHECK(b.stats().messages_sent == kMessages + 1);
    server.start();
    REQUIRE(run_until(loop, [&] { return ra.reconnected == 1; }));
    const auto a2 = a.stats();
    CHECK(a2.connected);
    CHECK(a2.reconnects == 1);
    CHECK(a2.messages_received == kMessages);
    a.close();
    CHECK_FALSE(a.stats().connected);
    CHECK(a.stats().reconnects == 1);
  }

  TEST_CASE("flush inside a loop handler drives the I/O before close, as the broker's stop does") {
    SKIP_WITHOUT_REDIS();
    RedisServer server;
    asio::io_context loop;
    RedisTransporter listener(loop, server.options());
    Recorder rl;
    listener.connect(rl.handlers());
    listener.subscribe("MOL.DISCONNECT");
    auto leaving = std::make_unique<RedisTransporter>(loop, server.options());
    Recorder r;
    leaving->connect(r.handlers());
    REQUIRE(run_until(loop, [&] { return listener.connected() && leaving->connected(); }));
    bool stopped = false;
    asio::post(loop, [&] {
      CHECK(leaving->publish("MOL.DISCONNECT", "bye"));
      leaving->flush(5000);
      leaving->close();
      leaving.reset();
      stopped = true;
    });
    REQUIRE(run_until(loop, [&] { return stopped; }));
    REQUIRE(run_until(loop, [&] { return rl.got("MOL.DISCONNECT", "bye"); }));
  }

  TEST_CASE("endpoints are a failover list: an unreachable one is skipped, a lost one left") {
    SKIP_WITHOUT_REDIS();
    auto first = std::make_unique<RedisServer>();
    RedisServer second;
    asio::io_context loop;
    RedisOptions o = second.options();
    o.endpoints = {RedisEndpoint{"127.0.0.1", free_port()},
                   RedisEndpoint{"127.0.0.1", first->port()},
                   RedisEndpoint{"127.0.0.1", second.port()}};
    RedisTransporter t(loop, o);
    Recorder r;
    t.connect(r.handlers());  // the first endpoint is down: the probe moves on to the second
    t.subscribe("MOL.INFO");
    REQUIRE(run_until(loop, [&] { return t.connected(); }));
    CHECK(redis_channels(*first) == std::set<std::string>{"MOL.INFO"});
    first.reset();  // killed: reconnect fails there, then moves on (third, or round to first)
    REQUIRE(run_until(loop, [&] { return r.reconnected == 1; }));
    CHECK(redis_channels(second) == std::set<std::string>{"MOL.INFO"});
    CHECK(t.publish("MOL.INFO", "moved"));
    REQUIRE(run_until(loop, [&] { return r.got("MOL.INFO", "moved"); }));
  }

  TEST_CASE("a stalled server (SIGSTOP) is noticed by the PING timeout and recovered") {
    SKIP_WITHOUT_REDIS();
    RedisServer server;
    asio::io_context loop;
    auto o = server.options();
    o.ping_interval_ms = 200;
    o.ping_timeout_ms = 600;
    o.connect_timeout_ms = 1000;
    RedisTransporter t(loop, o);
    Recorder r;
    t.connect(r.handlers());
    t.subscribe("MOL.INFO");
    REQUIRE(run_until(loop, [&] { return t.connected(); }));
    server.stop_process();
    REQUIRE(run_until(
        loop, [&] { return r.disconnected == 1; }, 15000ms));
    CHECK(t.last_error().find("PING") != std::string::npos);
    // Reconnect attempts meanwhile reach the kernel's backlog but get no answer: they time out.
    run_until(
        loop, [] { return false; }, 2500ms);
    CHECK(r.reconnected == 0);
    CHECK(t.last_error().find("within 1000 ms") != std::string::npos);
    server.continue_process();
    REQUIRE(run_until(
        loop, [&] { return r.reconnected == 1; }, 20000ms));
    CHECK(t.publish("MOL.INFO", "alive"));
    REQUIRE(run_until(loop, [&] { return r.got("MOL.INFO", "alive"); }));
    REQUIRE(run_until(loop, [&] { return lines(server.cli("CLIENT LIST")).size() == 3; }));
  }

  TEST_CASE("a flood from another node does not get the subscriber dropped") {
    SKIP_WITHOUT_REDIS();
    RedisServer server;
    asio::io_context loop;
    RedisTransporter sub(loop, server.options());
    Recorder r;
    size_t received = 0;
    size_t bytes = 0;
    auto handlers = r.handlers();
    handlers.on_message = [&](const std::string&, std::string_view data) {
      received++;
      bytes += data.size();
      // A handler that does a little work per message.
      volatile unsigned spin = 0;
      for (int i = 0; i < 5000; ++i) spin = spin + unsigned(i);
    };
    sub.connect(handlers);
    sub.subscribe("MOL.EVENT.sub");
    REQUIRE(run_until(loop, [&] { return sub.connected(); }));

    constexpr size_t kCount = 50 * 1024;  // 50 MB of 1 KB messages
    const std::string payload(1024, 'p');
    std::atomic<bool> publisher_done{false};
    std::atomic<size_t> published{0};
    std::thread publisher([&] {
      asio::io_context pub_loop;
      RedisTransporter pub(pub_loop, server.options());
      Recorder pr;
      pub.connect(pr.handlers());
      run_until(pub_loop, [&] { return pub.connected(); });
      while (published < kCount) {
        if (pub.publish("MOL.EVENT.sub", payload)) {
          published++;
          if (published % 64 == 0) pub_loop.poll();
        } else {
          pub_loop.run_for(1ms);  // the unanswered-bytes bound: wait for replies
        }
      }
      pub.flush(30000);
      publisher_done = true;
    });
    // Redis's view of the subscriber: its unsent output (omem) must stay far from the 32 MB
    // pubsub limit, since the subscriber reads on while its handler works.
    std::atomic<bool> sampling{true};
    std::atomic<long long> max_omem{0};
    std::thread sampler([&] {
      while (sampling) {
        for (const auto& line : lines(server.cli("CLIENT LIST"))) {
          if (line.find("flags=P") == std::string::npos) continue;
          const auto at = line.find(" omem=");
          if (at == std::string::npos) continue;
          const long long omem = std::atoll(line.c_str() + at + 6);
          if (omem > max_omem) max_omem = omem;
        }
        std::this_thread::sleep_for(50ms);
      }
    });
    const bool all = run_until(
        loop, [&] { return received == kCount; }, 120000ms);
    sampling = false;
    sampler.join();
    publisher.join();
    MESSAGE("largest subscriber output buffer seen by Redis: ", max_omem.load(), " bytes");
    CHECK(max_omem < 32 * 1024 * 1024);
    CHECK(publisher_done);
    CHECK(all);
    CHECK(bytes == received * payload.size());
    CHECK(r.disconnected == 0);
  }

  TEST_CASE("TLS: verified with the CA, refused with a wrong name or CA, client certificates") {
    SKIP_WITHOUT_REDIS();
    TestPki pki;
    REQUIRE_MESSAGE(pki.ok, "openssl could not make the test certificates");
    asio::io_context loop;
    auto connect_and_echo = [&](RedisTransporter& t) {
      Recorder r;
      t.connect(r.handlers());
      t.subscribe("MOL.INFO");
      CHECK(t.publish("MOL.INFO", "over tls"));
      REQUIRE(run_until(loop, [&] { return r.got("MOL.INFO", "over tls"); }));
      CHECK(t.connected());
    };
    auto connect_error = [&](const RedisOptions& o) -> std::string {
      RedisTransporter t(loop, o);
      Recorder r;
      try {
        t.connect(r.handlers());
      } catch (const std::runtime_error& e) {
        return e.what();
      }
      return "connected";
    };

    SUBCASE("tls-auth-clients no") {
      RedisServer server(pki.server_args(false), true, pki.cli_flags());
      auto o = server.options();
      o.tls.enabled = true;
      o.tls.ca = pki.path("ca.crt");
      SUBCASE("host name, CA file") {
        o.endpoints[0].host = "localhost";
        RedisTransporter t(loop, o);
        connect_and_echo(t);
        CHECK(redis_channels(server) == std::set<std::string>{"MOL.INFO"});
      }
      SUBCASE("IP address, CA as PEM text") {
        o.tls.ca = pki.read("ca.crt");
        RedisTransporter t(loop, o);
        connect_and_echo(t);
      }
      SUBCASE("servername checked instead of the host") {
        o.tls.servername = "localhost";
        RedisTransporter t(loop, o);
        connect_and_echo(t);
      }
      SUBCASE("wrong servername") {
        o.tls.servername = "wrong.example";
        const std::string error = connect_error(o);
        CHECK(error.find("TLS handshake") != std::string::npos);
        CHECK(error.find("wrong.example") != std::string::npos);
      }
      SUBCASE("unknown CA") {
        o.tls.ca = pki.path("other-ca.crt");
        const std::string error = connect_error(o);
        CHECK(error.find("TLS handshake") != std::string::npos);
        CHECK(error.find("certificate") != std::string::npos);
      }
      SUBCASE("CA file missing") {
        o.tls.ca = pki.path("missing.crt");
        const std::string error = connect_error(o);
        CHECK(error.find("cannot load the CA certificate") != std::string::npos);
      }
      SUBCASE("reject_unauthorized false connects despite a wrong name and CA") {
        o.tls.servername = "wrong.example";
        o.tls.ca = pki.path("other-ca.crt");
        o.tls.reject_unauthorized = false;
        RedisTransporter t(loop, o);
        connect_and_echo(t);
      }
    }
    SUBCASE("tls-auth-clients yes needs a client certificate") {
      RedisServer server(pki.server_args(true), true, pki.cli_flags());
      auto o = server.options();
      o.tls.enabled = true;
      o.tls.ca = pki.path("ca.crt");
      SUBCASE("without") {
        o.connect_timeout_ms = 3000;
        const std::string error = connect_error(o);
        MESSAGE("without a client certificate: ", error);
        CHECK(error.find("cannot connect to Redis") != std::string::npos);
        CHECK(error.find("client certificate") != std::string::npos);
      }
      SUBCASE("with, as files") {
        o.tls.cert = pki.path("client.crt");
        o.tls.key = pki.path("client.key");
        RedisTransporter t(loop, o);
        connect_and_echo(t);
        CHECK(redis_channels(server) == std::set<std::string>{"MOL.INFO"});
      }
      SUBCASE("with, as PEM texts") {
        o.tls.cert = pki.read("client.crt");
        o.tls.key = pki.read("client.key");
        RedisTransporter t(loop, o);
        connect_and_echo(t);
      }
    }
  }
}
