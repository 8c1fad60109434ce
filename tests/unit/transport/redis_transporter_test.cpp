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

extern char** environ;

using steedos::transport::RedisEndpoint;
using steedos::transport::RedisOptions;
using steedos::transport::RedisTransporter;
using steedos::transport::TransporterHandlers;
using namespace std::chrono_literals;

namespace {

const char* kRedisServer = "/usr/bin/redis-server";
const char* kRedisCli = "/usr/bin/redis-cli";

bool have_redis() {
  return ::access(kRedisServer, X_OK) == 0 && ::access(kRedisCli, X_OK) == 0;
}

unsigned short free_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io,
                                   asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return acceptor.local_endpoint().port();
}

bool accepts_tcp(unsigned short port) {
  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  asio::error_code ec;
  socket.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  return !ec;
}

/// Runs a command through the shell and returns its standard output.
std::string shell(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
  ::pclose(pipe);
  return out;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

/// A redis-server child on 127.0.0.1, stopped by PID.
class RedisServer {
 public:
  explicit RedisServer(std::vector<std::string> extra = {}, bool tls = false)
      : port_(free_port()), extra_(std::move(extra)), tls_(tls) {
    start();
  }
  ~RedisServer() { kill(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  void start() {
    const std::string port = std::to_string(port_);
    std::vector<std::string> args{kRedisServer, "--bind",       "127.0.0.1", "--save",
                                  "",           "--appendonly", "no"};
    if (tls_) {
      args.insert(args.end(), {"--port", "0", "--tls-port", port});
    } else {
      args.insert(args.end(), {"--port", port});
    }
    args.insert(args.end(), extra_.begin(), extra_.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    const int rc = posix_spawn(&pid_, kRedisServer, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    REQUIRE_MESSAGE(rc == 0, "posix_spawn redis-server failed: ", rc);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!accepts_tcp(port_)) {
      REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline, "redis-server did not start");
      std::this_thread::sleep_for(20ms);
    }
  }

  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  void stop_process() { ::kill(pid_, SIGSTOP); }
  void continue_process() { ::kill(pid_, SIGCONT); }

  unsigned short port() const { return port_; }

  /// redis-cli against this server (plain servers only); `auth` e.g. "-a pw".
  std::string cli(const std::string& args, const std::string& auth = {}) const {
    return shell(std::string(kRedisCli) + " -p " + std::to_string(port_) + " " + auth +
                 " --no-auth-warning " + args + " 2>&1");
  }

  RedisOptions options() const {
    RedisOptions o;
    o.endpoints = {RedisEndpoint{"127.0.0.1", port_}};
    o.connect_timeout_ms = 5000;
    o.reconnect_min_ms = 50;
    o.reconnect_max_ms = 500;
    return o;
  }

 private:
  unsigned short port_;
  std::vector<std::string> extra_;
  bool tls_;
  pid_t pid_ = -1;
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

std::set<std::string> channels(const RedisServer& server, const std::string& auth = {}) {
  const auto list = lines(server.cli("PUBSUB CHANNELS", auth));
  return std::set<std::string>(list.begin(), list.end());
}

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
    CHECK(channels(server) == std::set<std::string>{"MOL-t.INFO", "MOL-t.REQ.a", "MOL-t.RES.b"});

    // Barrier at run time: subscribe and publish in the same turn.
    a.subscribe("MOL-t.PONG.a");
    CHECK(a.publish("MOL-t.PONG.a", "late"));
    REQUIRE(run_until(loop, [&] { return ra.got("MOL-t.PONG.a", "late"); }));

    // A binary-safe payload, in order.
    const std::string binary("x\0\r\n$3\r\n", 8);
    for (int i = 0; i < 100; ++i) CHECK(b.publish("MOL-t.REQ.a", binary + std::to_string(i)));
    REQUIRE(run_until(loop, [&] { return ra.messages.size() >= 103; }));
    for (int i = 0; i < 100; ++i) CHECK(ra.messages[3 + i].second == binary + std::to_string(i));

    a.unsubscribe("MOL-t.PONG.a");
    REQUIRE(run_until(loop, [&] { return channels(server).count("MOL-t.PONG.a") == 0; }));

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
    o.reconnect_min_ms = 50;
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
    CHECK(channels(server) == std::set<std::string>{"MOL-ok.INFO"});
    // Granting the channel later lets the retried SUBSCRIBE through.
    REQUIRE(server.cli("ACL SETUSER molnode '&MOL-denied.*'").find("OK") != std::string::npos);
    REQUIRE(run_until(loop, [&] { return channels(server).count("MOL-denied.INFO") == 1; }));
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
      CHECK(channels(server) == std::set<std::string>{"MOL.INFO", "MOL.REQ.n1", "MOL.HEARTBEAT"});
      CHECK(lines(server.cli("CLIENT LIST")).size() == 3);
      CHECK(t.publish("MOL.REQ.n1", "after"));
      REQUIRE(run_until(loop, [&] { return r.messages.size() == size_t(round); }));
    }
    CHECK(r.disconnected == 2);
    CHECK(r.reconnected == 2);
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
      for (int i = 0; i < 2000; ++i) spin = spin + unsigned(i);
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
    const bool all = run_until(
        loop, [&] { return received == kCount; }, 120000ms);
    publisher.join();
    CHECK(publisher_done);
    CHECK(all);
    CHECK(bytes == received * payload.size());
    CHECK(r.disconnected == 0);
  }
}
