// Test that header file is self-contained.
#include "transport/redis_connection.hpp"

#include <doctest/doctest.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

using steedos::transport::RedisCommand;
using steedos::transport::RedisConnection;
using steedos::transport::RedisConnectionOptions;
using steedos::transport::RedisEndpoint;
using steedos::transport::RespReply;
using namespace std::chrono_literals;

namespace {

template <typename Pred>
bool run_until(asio::io_context& loop, Pred pred, std::chrono::milliseconds timeout = 5000ms) {
  if (loop.stopped()) loop.restart();
  auto guard = asio::make_work_guard(loop);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred() && std::chrono::steady_clock::now() < deadline) loop.run_for(5ms);
  return pred();
}

/// A scripted Redis on loopback: accepts one client, collects what it sends, and answers each
/// complete command (counted by its leading '*') through `reply`.
class FakeRedis {
 public:
  explicit FakeRedis(asio::io_context& loop)
      : acceptor_(loop, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        socket_(loop) {
    acceptor_.async_accept(socket_, [this](const std::error_code& ec) {
      if (!ec) read();
    });
  }

  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  /// Called with each command's text as it arrives; returns the bytes to answer (or "").
  std::function<std::string(const std::string& command)> reply = [](const std::string&) {
    return std::string("+PONG\r\n");
  };
  void send(const std::string& bytes) {
    auto data = std::make_shared<std::string>(bytes);
    asio::async_write(socket_, asio::buffer(*data), [data](const std::error_code&, size_t) {});
  }
  std::vector<std::string> commands;

 private:
  void read() {
    socket_.async_read_some(asio::buffer(buffer_), [this](const std::error_code& ec, size_t n) {
      if (ec) return;
      pending_.append(buffer_, n);
      // Commands here are small and arrive whole or in order: split at each "*<digit>".
      size_t start = 0;
      for (;;) {
        size_t next = pending_.find("\r\n*", start);
        if (next == std::string::npos) break;
        take(pending_.substr(start, next + 2 - start));
        start = next + 2;
      }
      pending_.erase(0, start);
      if (!pending_.empty() && pending_.size() >= 2 &&
          pending_.compare(pending_.size() - 2, 2, "\r\n") == 0 && complete(pending_)) {
        take(pending_);
        pending_.clear();
      }
      read();
    });
  }
  static bool complete(const std::string& command) {
    // *N then N bulk strings of two lines each: 1 + 2N lines.
    const int n = std::atoi(command.c_str() + 1);
    size_t lines = 0;
    for (size_t i = 0; (i = command.find("\r\n", i)) != std::string::npos; i += 2) lines++;
    return lines == size_t(1 + 2 * n);
  }
  void take(const std::string& command) {
    commands.push_back(command);
    const std::string answer = reply(command);
    if (!answer.empty()) send(answer);
  }

  asio::ip::tcp::acceptor acceptor_;
  asio::ip::tcp::socket socket_;
  char buffer_[4096];
  std::string pending_;
};

struct Outcome {
  int ready = 0;
  std::vector<std::string> failures;
  std::vector<std::pair<std::string, std::string>> messages;
  std::vector<RespReply> replies;

  RedisConnection::Handlers handlers() {
    RedisConnection::Handlers h;
    h.on_ready = [this] { ready++; };
    h.on_failed = [this](const std::string& reason) { failures.push_back(reason); };
    h.on_message = [this](const std::string& c, std::string_view p) {
      messages.emplace_back(c, std::string(p));
    };
    h.on_reply = [this](RedisCommand, const std::string&, size_t, const RespReply& r) {
      replies.push_back(r);
    };
    return h;
  }
};

RedisConnectionOptions options_for(const FakeRedis& server) {
  RedisConnectionOptions o;
  o.endpoint = RedisEndpoint{"127.0.0.1", server.port()};
  o.connect_timeout_ms = 2000;
  o.ping_interval_ms = 0;
  return o;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_SUITE("redis_connection") {
  TEST_CASE("ready after PING; pushes split anywhere arrive whole; a protocol error fails once") {
    asio::io_context loop;
    FakeRedis server(loop);
    Outcome out;
    auto conn = RedisConnection::create(loop, options_for(server), out.handlers());
    conn->start();
    REQUIRE(run_until(loop, [&] { return out.ready == 1; }));
    CHECK(server.commands.size() == 1);
    CHECK(server.commands[0] == "*1\r\n$4\r\nPING\r\n");

    server.reply = [](const std::string&) {
      return std::string("*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n");
    };
    CHECK(conn->send(RedisCommand::subscribe, "c", "*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n"));
    REQUIRE(run_until(loop, [&] { return out.replies.size() == 1; }));
    CHECK(out.replies[0].elements[0].is_text("subscribe"));

    server.send("*3\r\n$7\r\nmess");
    run_until(
        loop, [] { return false; }, 30ms);
    CHECK(out.messages.empty());
    server.send("age\r\n$1\r\nc\r\n$5\r\nhello\r\n*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$0\r\n\r\n");
    REQUIRE(run_until(loop, [&] { return out.messages.size() == 2; }));
    CHECK(out.messages[0] == std::make_pair(std::string("c"), std::string("hello")));
    CHECK(out.messages[1].second.empty());

    server.send("?garbage\r\n");
    REQUIRE(run_until(loop, [&] { return !out.failures.empty(); }));
    CHECK(contains(out.failures[0], "protocol error"));
    CHECK_FALSE(conn->ready());
    CHECK_FALSE(conn->send(RedisCommand::publish, "c", "*1\r\n$4\r\nPING\r\n"));
    run_until(
        loop, [] { return false; }, 30ms);
    CHECK(out.failures.size() == 1);
  }

  TEST_CASE("AUTH: user and password sent first; WRONGPASS fails, 'no password' only warns") {
    asio::io_context loop;
    FakeRedis server(loop);
    auto o = options_for(server);
    o.username = "u";
    o.password = "p w";
    SUBCASE("wrong") {
      server.reply = [](const std::string& command) {
        return contains(command, "AUTH")
                   ? std::string("-WRONGPASS invalid username-password pair\r\n")
                   : std::string("+PONG\r\n");
      };
      Outcome out;
      auto conn = RedisConnection::create(loop, o, out.handlers());
      conn->start();
      REQUIRE(run_until(loop, [&] { return !out.failures.empty(); }));
      CHECK(server.commands[0] == "*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$3\r\np w\r\n");
      CHECK(contains(out.failures[0], "authentication failed for user 'u'"));
      CHECK(contains(out.failures[0], "WRONGPASS"));
      CHECK(out.ready == 0);
    }
    SUBCASE("server without a password") {
      server.reply = [](const std::string& command) {
        return contains(command, "AUTH")
                   ? std::string(
                         "-ERR AUTH <password> called without any password configured for the "
                         "default user. Are you sure your configuration is correct?\r\n")
                   : std::string("+PONG\r\n");
      };
      Outcome out;
      auto conn = RedisConnection::create(loop, o, out.handlers());
      conn->start();
      REQUIRE(run_until(loop, [&] { return out.ready == 1; }));
      CHECK(out.failures.empty());
    }
  }

  TEST_CASE("a server that never answers: the connect timeout names the handshake") {
    asio::io_context loop;
    FakeRedis server(loop);
    server.reply = [](const std::string&) { return std::string(); };
    auto o = options_for(server);
    o.connect_timeout_ms = 200;
    Outcome out;
    auto conn = RedisConnection::create(loop, o, out.handlers());
    conn->start();
    REQUIRE(run_until(loop, [&] { return !out.failures.empty(); }));
    CHECK(contains(out.failures[0], "within 200 ms (handshake: PING)"));
  }

  TEST_CASE("a PING left unanswered past ping_timeout_ms fails the connection") {
    asio::io_context loop;
    FakeRedis server(loop);
    int pings = 0;
    server.reply = [&](const std::string&) {
      return ++pings <= 2 ? std::string("*2\r\n$4\r\npong\r\n$0\r\n\r\n") : std::string();
    };
    auto o = options_for(server);
    o.ping_interval_ms = 50;
    o.ping_timeout_ms = 150;
    Outcome out;
    auto conn = RedisConnection::create(loop, o, out.handlers());
    conn->start();
    REQUIRE(run_until(loop, [&] { return !out.failures.empty(); }));
    CHECK(out.ready == 1);
    CHECK(pings >= 3);
    CHECK(contains(out.failures[0], "no reply to PING within 150 ms"));
  }

  TEST_CASE("a reply above max_reply_bytes closes the connection; unasked replies too") {
    asio::io_context loop;
    FakeRedis server(loop);
    auto o = options_for(server);
    o.max_reply_bytes = 1024;
    Outcome out;
    auto conn = RedisConnection::create(loop, o, out.handlers());
    conn->start();
    REQUIRE(run_until(loop, [&] { return out.ready == 1; }));
    SUBCASE("oversize") {
      server.send("$100000\r\n" + std::string(5000, 'x'));
      REQUIRE(run_until(loop, [&] { return !out.failures.empty(); }));
      CHECK(contains(out.failures[0], "size limit"));
    }
    SUBCASE("unasked") {
      server.send(":1\r\n");
      REQUIRE(run_until(loop, [&] { return !out.failures.empty(); }));
      CHECK(contains(out.failures[0], "unexpected reply"));
    }
  }

  TEST_CASE("a full inbox pauses reading and resumes it; nothing is lost or reordered") {
    asio::io_context loop;
    FakeRedis server(loop);
    auto o = options_for(server);
    o.max_inbox_bytes = 200;
    Outcome out;
    auto conn = RedisConnection::create(loop, o, out.handlers());
    conn->start();
    REQUIRE(run_until(loop, [&] { return out.ready == 1; }));
    std::string burst;
    for (int i = 0; i < 200; ++i) {
      const std::string payload = std::to_string(i) + std::string(40, '.');
      burst += "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$" + std::to_string(payload.size()) + "\r\n" +
               payload + "\r\n";
    }
    server.send(burst);
    REQUIRE(run_until(loop, [&] { return out.messages.size() == 200; }));
    for (int i = 0; i < 200; ++i) {
      CHECK(out.messages[size_t(i)].second == std::to_string(i) + std::string(40, '.'));
    }
    CHECK(out.failures.empty());
  }

  TEST_CASE("a slow consumer still gets the messages read together in one loop turn") {
    // A message that outlasts the delivery slice (an event fanned out to many WebSockets) must
    // not leave each following message alone in a turn of its own: consumers batch per turn.
    asio::io_context loop;
    FakeRedis server(loop);
    Outcome out;
    auto h = out.handlers();
    int turn = 0;
    bool turn_end_posted = false;
    std::vector<int> turns;
    h.on_message = [&](const std::string&, std::string_view) {
      std::this_thread::sleep_for(2ms);  // longer than the 1 ms slice
      turns.push_back(turn);
      if (turn_end_posted) return;
      turn_end_posted = true;
      asio::post(loop, [&] {
        turn_end_posted = false;
        ++turn;
      });
    };
    auto conn = RedisConnection::create(loop, options_for(server), h);
    conn->start();
    REQUIRE(run_until(loop, [&] { return out.ready == 1; }));
    std::string burst;
    for (int i = 0; i < 20; ++i) burst += "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n";
    server.send(burst);
    REQUIRE(run_until(loop, [&] { return turns.size() == 20; }));
    // One read normally carries all 20; a split read may add a turn.
    CHECK(std::set<int>(turns.begin(), turns.end()).size() <= 2);
    CHECK(out.failures.empty());
  }

  TEST_CASE("close() silences every handler") {
    asio::io_context loop;
    FakeRedis server(loop);
    Outcome out;
    auto conn = RedisConnection::create(loop, options_for(server), out.handlers());
    conn->start();
    REQUIRE(run_until(loop, [&] { return out.ready == 1; }));
    server.send("*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n");
    conn->close();
    run_until(
        loop, [] { return false; }, 50ms);
    CHECK(out.messages.empty());
    CHECK(out.failures.empty());
  }
}
