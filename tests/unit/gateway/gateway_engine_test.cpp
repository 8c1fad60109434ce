// The Engine.IO server over real loopback sockets: a GatewayServer on 127.0.0.1 (ephemeral port)
// running on its own thread, driven by blocking test clients that speak raw HTTP/1.1 and
// RFC 6455 frames, so every byte on the wire is checked.
#include "gateway/http_server.hpp"

#include <doctest/doctest.h>
#include <poll.h>

#include <unistd.h>
#include <asio/connect.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "gateway/engine_echo.hpp"
#include "gateway/engine_server.hpp"
#include "gateway/outgoing.hpp"
#include "protocol/json.hpp"

using namespace std::chrono_literals;
using steedos::Json;
using steedos::gateway::EchoEngineHandler;
using steedos::gateway::EngineOptions;
using steedos::gateway::EngineSocket;
using steedos::gateway::GatewayServer;
using steedos::gateway::MessagePart;
using steedos::gateway::OutgoingPacket;
using steedos::gateway::ServerOptions;

namespace {

/// Echoes like the conformance application and records closes (read from the test thread).
class RecordingHandler : public EchoEngineHandler {
 public:
  void on_message(EngineSocket& socket, std::string_view data, bool binary) override {
    if (data == "close me") {
      socket.close("forced close");
      return;
    }
    EchoEngineHandler::on_message(socket, data, binary);
  }
  void on_close(EngineSocket& socket, const std::string& reason) override {
    std::lock_guard<std::mutex> lock(mutex_);
    closes_.emplace_back(socket.id(), reason);
  }
  std::optional<std::string> close_reason(const std::string& sid) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [id, reason] : closes_) {
      if (id == sid) return reason;
    }
    return std::nullopt;
  }

 private:
  std::mutex mutex_;
  std::vector<std::pair<std::string, std::string>> closes_;
};

EngineOptions test_engine_options() {
  EngineOptions options;
  options.path = "/engine.io/";
  options.ping_interval_ms = 25000;  // no heartbeat traffic unless a test asks for it
  options.ping_timeout_ms = 20000;
  options.max_payload = 1000;
  return options;
}

/// gateway.ioThreads of the servers under test: STEEDOS_TEST_IO_THREADS, else 2 (ctest runs this
/// binary twice: as unit-gateway with 2 write threads, as unit-gateway-1-thread with 1).
size_t test_io_threads() {
  const char* value = std::getenv("STEEDOS_TEST_IO_THREADS");
  return value != nullptr && std::atoi(value) > 0 ? static_cast<size_t>(std::atoi(value)) : 2;
}

/// The server under test on its own thread (the gateway is single-threaded: everything the
/// test inspects is read on that thread through on_server()).
struct Server {
  explicit Server(EngineOptions engine = test_engine_options(), ServerOptions server_options = {}) {
    server_options.host = "127.0.0.1";
    server_options.port = 0;
    server_options.io_threads = test_io_threads();
    server = std::make_unique<GatewayServer>(io, server_options);
    server->mount_engine(std::move(engine), handler);
    port = server->listen();
    thread = std::thread([this] { io.run(); });
  }
  ~Server() {
    on_server([this] { server->stop(); });
    work.reset();
    thread.join();  // returns once every connection has finished closing
    server.reset();
  }

  template <class F>
  auto on_server(F&& fn) -> decltype(fn()) {
    std::packaged_task<decltype(fn())()> task(std::forward<F>(fn));
    auto result = task.get_future();
    asio::post(io, [&task] { task(); });
    return result.get();
  }

  GatewayServer::Stats stats() {
    return on_server([this] { return server->stats(); });
  }
  bool session_exists(const std::string& sid) {
    return on_server([&] { return server->engine("/engine.io/")->find(sid) != nullptr; });
  }

  asio::io_context io{1};
  // Keeps run() going between requests, and after a stop() a test makes itself.
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
  RecordingHandler handler;
  std::unique_ptr<GatewayServer> server;
  uint16_t port = 0;
  std::thread thread;
};

struct HttpReply {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-case
  std::string body;
  std::string header(const std::string& name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

/// A blocking TCP client with timeouts (poll on the native handle).
class Client {
 public:
  /// `receive_buffer`: SO_RCVBUF in bytes before connecting (0 = the system's autotuning, which
  /// on loopback lets tens of MB pile up unread).
  explicit Client(uint16_t port, int receive_buffer = 0) : socket_(io_) {
    socket_.open(asio::ip::tcp::v4());
    if (receive_buffer > 0) {
      socket_.set_option(asio::socket_base::receive_buffer_size(receive_buffer));
    }
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
    socket_.set_option(asio::ip::tcp::no_delay(true));  // frames written one by one go out now
    socket_.non_blocking(true);
  }

  void write(std::string_view data) {
    while (!data.empty()) {
      asio::error_code ec;
      const size_t n = socket_.write_some(asio::buffer(data.data(), data.size()), ec);
      if (ec == asio::error::would_block) {
        wait(POLLOUT, 2000ms);
        continue;
      }
      if (ec) throw std::runtime_error("write: " + ec.message());
      data.remove_prefix(n);
    }
  }

  /// Reads more input; false on timeout or EOF (eof() tells which).
  bool fill(std::chrono::milliseconds timeout) {
    if (!wait(POLLIN, timeout)) return false;
    char chunk[65536];
    asio::error_code ec;
    const size_t n = socket_.read_some(asio::buffer(chunk), ec);
    if (ec == asio::error::would_block) return true;
    if (ec) {
      eof_ = true;
      return false;
    }
    buffer_.append(chunk, n);
    return true;
  }

  bool read_exact(size_t n, std::chrono::milliseconds timeout = 2000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (buffer_.size() < n) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left <= 0ms || !fill(left)) return false;
    }
    return true;
  }

  /// `head_only`: the reply to a HEAD request (Content-Length without a body).
  std::optional<HttpReply> read_reply(std::chrono::milliseconds timeout = 2000ms,
                                      bool head_only = false) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left <= 0ms || !fill(left)) return std::nullopt;
    }
    HttpReply reply;
    const std::string head = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);
    reply.status = std::stoi(head.substr(9, 3));
    size_t pos = head.find("\r\n");
    while (pos != std::string::npos) {
      const size_t next = head.find("\r\n", pos + 2);
      const std::string line =
          head.substr(pos + 2, next == std::string::npos ? next : next - pos - 2);
      const size_t colon = line.find(':');
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      reply.headers[name] = line.substr(colon + 2);
      pos = next;
    }
    const size_t length = !head_only && reply.headers.count("content-length")
                              ? std::stoul(reply.headers["content-length"])
                              : 0;
    if (!read_exact(length, timeout)) return std::nullopt;
    reply.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return reply;
  }

  /// True when the server closed the connection within `timeout`.
  bool closed_within(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!eof_) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) return false;
      fill(left);
    }
    return true;
  }

  std::string& buffer() { return buffer_; }

 private:
  bool wait(short events, std::chrono::milliseconds timeout) {
    pollfd fd{socket_.native_handle(), events, 0};
    return ::poll(&fd, 1, static_cast<int>(timeout.count())) > 0;
  }

  asio::io_context io_;
  asio::ip::tcp::socket socket_;
  std::string buffer_;
  bool eof_ = false;
};

std::string request(const std::string& method, const std::string& target,
                    const std::string& body = {}, const std::string& extra_headers = {}) {
  std::string out = method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n" + extra_headers;
  if (!body.empty() || method == "POST")
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  return out + "\r\n" + body;
}

/// One request on a fresh connection.
HttpReply http(uint16_t port, const std::string& method, const std::string& target,
               const std::string& body = {}, const std::string& extra_headers = {}) {
  Client client(port);
  client.write(request(method, target, body, extra_headers));
  auto reply = client.read_reply(2000ms, method == "HEAD");
  REQUIRE(reply);
  return *reply;
}

Json error_body(const HttpReply& reply) {
  return Json::parse(reply.body);
}

std::string open_polling(uint16_t port) {
  const HttpReply reply = http(port, "GET", "/engine.io/?EIO=4&transport=polling");
  REQUIRE(reply.status == 200);
  REQUIRE(reply.body.substr(0, 1) == "0");
  return Json::parse(reply.body.substr(1))["sid"].get<std::string>();
}

struct Frame {
  uint8_t opcode = 0;
  bool fin = true;
  std::string payload;
};

/// A raw WebSocket client: masked frames out, frames in, no fragmentation unless asked.
class WsClient {
 public:
  WsClient(uint16_t port, const std::string& query, int receive_buffer = 0)
      : client_(port, receive_buffer) {
    client_.write("GET /engine.io/?" + query +
                  " HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                  "\r\n");
    auto reply = client_.read_reply();
    REQUIRE(reply);
    status = reply->status;
    accept = reply->header("sec-websocket-accept");
  }

  void send(uint8_t opcode, std::string_view payload, bool fin = true, bool masked = true) {
    std::string frame;
    frame.push_back(static_cast<char>((fin ? 0x80 : 0) | opcode));
    const char mask_bit = masked ? static_cast<char>(0x80) : 0;
    if (payload.size() < 126) {
      frame.push_back(static_cast<char>(mask_bit | static_cast<char>(payload.size())));
    } else if (payload.size() < 65536) {
      frame.push_back(static_cast<char>(mask_bit | 126));
      frame.push_back(static_cast<char>(payload.size() >> 8));
      frame.push_back(static_cast<char>(payload.size() & 0xFF));
    } else {
      frame.push_back(static_cast<char>(mask_bit | 127));
      for (int i = 7; i >= 0; --i)
        frame.push_back(static_cast<char>((payload.size() >> (8 * i)) & 0xFF));
    }
    const char mask[4] = {0x12, 0x34, 0x56, 0x78};
    if (masked) frame.append(mask, 4);
    for (size_t i = 0; i < payload.size(); ++i) {
      frame.push_back(masked ? static_cast<char>(payload[i] ^ mask[i % 4]) : payload[i]);
    }
    client_.write(frame);
  }
  void send_text(std::string_view text) { send(0x1, text); }

  std::optional<Frame> read(std::chrono::milliseconds timeout = 2000ms) {
    if (!client_.read_exact(2, timeout)) return std::nullopt;
    auto& buffer = client_.buffer();
    Frame frame;
    frame.fin = (buffer[0] & 0x80) != 0;
    frame.opcode = buffer[0] & 0x0F;
    size_t length = static_cast<uint8_t>(buffer[1]) & 0x7F;
    size_t header = 2;
    if (length == 126) {
      if (!client_.read_exact(4, timeout)) return std::nullopt;
      length = (size_t{static_cast<uint8_t>(buffer[2])} << 8) | static_cast<uint8_t>(buffer[3]);
      header = 4;
    } else if (length == 127) {
      if (!client_.read_exact(10, timeout)) return std::nullopt;
      length = 0;
      for (int i = 2; i < 10; ++i) length = (length << 8) | static_cast<uint8_t>(buffer[i]);
      header = 10;
    }
    if (!client_.read_exact(header + length, timeout)) return std::nullopt;
    frame.payload = buffer.substr(header, length);
    buffer.erase(0, header + length);
    return frame;
  }

  /// The next text frame's payload, or "" on timeout.
  std::string read_text(std::chrono::milliseconds timeout = 2000ms) {
    auto frame = read(timeout);
    return frame && frame->opcode == 0x1 ? frame->payload : std::string();
  }

  /// The close code of the next close frame (0 when none came).
  int read_close_code(std::chrono::milliseconds timeout = 2000ms) {
    while (auto frame = read(timeout)) {
      if (frame->opcode == 0x8) {
        if (frame->payload.size() < 2) return 1005;
        return (static_cast<uint8_t>(frame->payload[0]) << 8) |
               static_cast<uint8_t>(frame->payload[1]);
      }
    }
    return 0;
  }

  bool closed_within(std::chrono::milliseconds timeout) { return client_.closed_within(timeout); }

  int status = 0;
  std::string accept;

 private:
  Client client_;
};

std::string open_websocket_sid(WsClient& ws) {
  const std::string open = ws.read_text();
  REQUIRE(open.substr(0, 1) == "0");
  return Json::parse(open.substr(1))["sid"].get<std::string>();
}

}  // namespace

TEST_SUITE("gateway engine") {
  TEST_CASE("polling handshake: open packet shape and headers") {
    Server server;
    const HttpReply reply = http(server.port, "GET", "/engine.io/?EIO=4&transport=polling");
    CHECK(reply.status == 200);
    CHECK(reply.header("content-type") == "text/plain; charset=UTF-8");
    CHECK(reply.header("cache-control") == "no-store");
    REQUIRE(reply.body.substr(0, 1) == "0");
    const Json open = Json::parse(reply.body.substr(1));
    CHECK(open.size() == 5);
    CHECK(open["sid"].get<std::string>().size() == 20);
    CHECK(open["upgrades"] == Json::array({"websocket"}));
    CHECK(open["pingInterval"] == 25000);
    CHECK(open["pingTimeout"] == 20000);
    CHECK(open["maxPayload"] == 1000);
    // Without the trailing slash too.
    CHECK(http(server.port, "GET", "/engine.io?EIO=4&transport=polling").status == 200);
    CHECK(server.stats().polling == 2);
  }

  TEST_CASE("a session keeps only the handshake headers asked for, and no URL when told") {
    const std::string headers =
        "Cookie: X-Auth-Token=t1\r\nUser-Agent: test/1.0\r\nAuthorization: Bearer b\r\n";
    const std::string target = "/engine.io/?EIO=4&transport=polling&extra=1&b64=1";
    auto handshake_of = [&](Server& server) {
      const HttpReply reply = http(server.port, "GET", target, {}, headers);
      REQUIRE(reply.status == 200);
      const std::string sid = Json::parse(reply.body.substr(1))["sid"].get<std::string>();
      return server.on_server([&] {
        const auto& info = server.server->engine("/engine.io/")->find(sid)->handshake();
        std::map<std::string, std::string> kept;
        for (const auto& [name, value] : info.headers) kept.emplace(name, value);
        const auto b64 = info.query().find("b64");
        return std::make_tuple(kept, info.url(),
                               b64 == info.query().end() ? std::string() : std::string(b64->second),
                               info.remote_address);
      });
    };
    SUBCASE("by default every header, the URL and the query") {
      Server server;
      auto [kept, url, b64, address] = handshake_of(server);
      CHECK(kept.at("cookie") == "X-Auth-Token=t1");
      CHECK(kept.at("user-agent") == "test/1.0");
      CHECK(kept.count("host") == 1);
      CHECK(url == target);
      CHECK(b64 == "1");
      CHECK(address == "127.0.0.1");
    }
    SUBCASE("the listed headers only, without URL and query") {
      EngineOptions options = test_engine_options();
      options.handshake_headers = std::vector<std::string>{"cookie", "authorization", "origin"};
      options.keep_handshake_url = false;
      Server server(options);
      auto [kept, url, b64, address] = handshake_of(server);
      CHECK(kept == std::map<std::string, std::string>{{"authorization", "Bearer b"},
                                                       {"cookie", "X-Auth-Token=t1"}});
      CHECK(url.empty());
      CHECK(b64.empty());
      CHECK(address == "127.0.0.1");
      // `b64` is still honoured: it is read at the handshake, not from the kept query.
      WsClient ws(server.port, "EIO=4&transport=websocket&b64=1");
      open_websocket_sid(ws);
      ws.send(0x2, std::string("\x01\x02\x03\x04", 4));
      CHECK(ws.read_text() == "bAQIDBA==");
    }
  }

  TEST_CASE("handshake errors: codes, JSON bodies and CORS headers") {
    Server server;
    const std::string origin = "Origin: http://localhost:3000\r\n";  // same site as Host
    HttpReply reply = http(server.port, "GET", "/engine.io/?transport=polling", {}, origin);
    CHECK(reply.status == 400);
    CHECK(reply.header("content-type") == "application/json");
    CHECK(error_body(reply) ==
          Json::parse(R"({"code":5,"message":"Unsupported protocol version"})"));
    CHECK(reply.header("access-control-allow-origin") == "http://localhost:3000");
    CHECK(reply.header("access-control-allow-credentials") == "true");

    CHECK(error_body(http(server.port, "GET", "/engine.io/?EIO=3&transport=polling"))["code"] == 5);
    CHECK(error_body(http(server.port, "GET", "/engine.io/?EIO=4&transport=abc"))["code"] == 0);
    CHECK(error_body(http(server.port, "GET", "/engine.io/?EIO=4"))["code"] == 0);
    CHECK(error_body(
              http(server.port, "POST", "/engine.io/?EIO=4&transport=polling", "4x"))["code"] == 2);
    CHECK(error_body(http(server.port, "GET",
                          "/engine.io/?EIO=4&transport=polling&sid=nope"))["code"] == 1);
    // A plain GET asking for the websocket transport is not an upgrade.
    CHECK(error_body(http(server.port, "GET", "/engine.io/?EIO=4&transport=websocket"))["code"] ==
          3);

    // Transport mismatch: a WebSocket session polled over HTTP.
    WsClient ws(server.port, "EIO=4&transport=websocket");
    const std::string sid = open_websocket_sid(ws);
    reply = http(server.port, "GET", "/engine.io/?EIO=4&transport=polling&sid=" + sid);
    CHECK(reply.status == 400);
    CHECK(error_body(reply)["code"] == 3);

    CHECK(http(server.port, "GET", "/elsewhere").status == 404);
  }

  TEST_CASE("origins: the gateway's own site with credentials, other sites refused") {
    Server server;
    const std::string handshake = "/engine.io/?EIO=4&transport=polling";
    // Same site as Host (localhost, another port): reflected with credentials, on the handshake
    // and on the preflight.
    HttpReply reply = http(server.port, "GET", handshake, {}, "Origin: http://localhost:3000\r\n");
    CHECK(reply.status == 200);
    CHECK(reply.header("access-control-allow-origin") == "http://localhost:3000");
    CHECK(reply.header("access-control-allow-credentials") == "true");
    CHECK(reply.header("vary") == "Origin");
    reply =
        http(server.port, "OPTIONS", handshake, {},
             "Origin: http://localhost:3000\r\nAccess-Control-Request-Headers: authorization\r\n");
    CHECK(reply.status == 204);
    CHECK(reply.header("access-control-allow-origin") == "http://localhost:3000");
    CHECK(reply.header("access-control-allow-credentials") == "true");
    CHECK(reply.header("access-control-allow-methods") == "GET,POST,OPTIONS");
    CHECK(reply.header("access-control-allow-headers") == "authorization");
    CHECK(server.stats().polling == 1);
    CHECK(server.stats().refused_origins == 0);

    // Another site, with the user's cookies: 403 with Engine.IO's body, no CORS headers, no
    // session; the connection stays usable.
    const std::string evil =
        "Origin: https://evil.example\r\nCookie: X-Space-Id=S1; X-Auth-Token=secret\r\n";
    Client client(server.port);
    client.write(request("GET", handshake, {}, evil));
    auto refused = client.read_reply();
    REQUIRE(refused);
    CHECK(refused->status == 403);
    CHECK(error_body(*refused) == Json::parse(R"({"code":4,"message":"Forbidden"})"));
    CHECK(refused->headers.count("access-control-allow-origin") == 0);
    CHECK(refused->headers.count("access-control-allow-credentials") == 0);
    CHECK(refused->header("vary") == "Origin");
    client.write(
        request("OPTIONS", handshake, {}, evil + "Access-Control-Request-Method: POST\r\n"));
    refused = client.read_reply();
    REQUIRE(refused);
    CHECK(refused->status == 403);
    CHECK(refused->headers.count("access-control-allow-origin") == 0);
    CHECK(refused->headers.count("access-control-allow-methods") == 0);
    // A session opened without Origin cannot be polled or posted to from another site.
    const std::string sid = open_polling(server.port);
    client.write(request("POST", handshake + "&sid=" + sid, "4hi", evil));
    refused = client.read_reply();
    REQUIRE(refused);
    CHECK(refused->status == 403);

    // The WebSocket upgrade: 403 before the handshake completes.
    Client upgrade(server.port);
    upgrade.write(
        "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: localhost:5100\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
        evil + "\r\n");
    refused = upgrade.read_reply();
    REQUIRE(refused);
    CHECK(refused->status == 403);
    CHECK(refused->headers.count("sec-websocket-accept") == 0);
    CHECK(upgrade.closed_within(2000ms));

    const auto stats = server.stats();
    CHECK(stats.polling == 2);  // the two sessions opened without a refused Origin
    CHECK(stats.websocket == 0);
    CHECK(stats.refused_origins == 4);

    // A same-site upgrade is accepted.
    Client same(server.port);
    same.write(
        "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: localhost:5100\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Origin: http://localhost\r\n\r\n");
    auto accepted = same.read_reply();
    REQUIRE(accepted);
    CHECK(accepted->status == 101);
  }

  TEST_CASE("origins: allow-list and * modes") {
    SUBCASE("a list replaces the same-site rule") {
      ServerOptions options;
      options.origins = steedos::gateway::OriginPolicy::allow_list({"https://good.test"});
      Server server(test_engine_options(), options);
      HttpReply reply = http(server.port, "GET", "/engine.io/?EIO=4&transport=polling", {},
                             "Origin: https://good.test\r\n");
      CHECK(reply.status == 200);
      CHECK(reply.header("access-control-allow-origin") == "https://good.test");
      CHECK(reply.header("access-control-allow-credentials") == "true");
      // Not listed, even the gateway's own site.
      reply = http(server.port, "GET", "/engine.io/?EIO=4&transport=polling", {},
                   "Origin: http://localhost\r\n");
      CHECK(reply.status == 403);
      CHECK(reply.headers.count("access-control-allow-origin") == 0);
      CHECK(http(server.port, "GET", "/engine.io/?EIO=4&transport=polling").status == 200);

      Client client(server.port);
      client.write(
          "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
          "Sec-WebSocket-Version: 13\r\nOrigin: https://evil.test\r\n\r\n");
      auto refused = client.read_reply();
      REQUIRE(refused);
      CHECK(refused->status == 403);
      CHECK(server.stats().refused_origins == 2);
    }
    SUBCASE("* lets every origin in, without credentials") {
      ServerOptions options;
      options.origins = steedos::gateway::OriginPolicy::any();
      Server server(test_engine_options(), options);
      HttpReply reply = http(server.port, "GET", "/engine.io/?EIO=4&transport=polling", {},
                             "Origin: https://evil.test\r\n");
      CHECK(reply.status == 200);
      CHECK(reply.header("access-control-allow-origin") == "*");
      CHECK(reply.headers.count("access-control-allow-credentials") == 0);
      CHECK(reply.headers.count("vary") == 0);
      reply = http(server.port, "OPTIONS", "/engine.io/?EIO=4&transport=polling", {},
                   "Origin: https://evil.test\r\nAccess-Control-Request-Method: POST\r\n");
      CHECK(reply.status == 204);
      CHECK(reply.header("access-control-allow-origin") == "*");
      CHECK(reply.header("access-control-allow-methods") == "GET,POST,OPTIONS");
      Client client(server.port);
      client.write(
          "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
          "Sec-WebSocket-Version: 13\r\nOrigin: https://evil.test\r\n\r\n");
      auto accepted = client.read_reply();
      REQUIRE(accepted);
      CHECK(accepted->status == 101);
      CHECK(server.stats().refused_origins == 0);
    }
  }

  TEST_CASE("polling round trip on one keep-alive connection") {
    Server server;
    const std::string sid = open_polling(server.port);
    const std::string path = "/engine.io/?EIO=4&transport=polling&sid=" + sid;
    Client client(server.port);
    client.write(request("POST", path,
                         "4hello\x1e"
                         "4world\x1e"
                         "bAQIDBA=="));
    auto reply = client.read_reply();
    REQUIRE(reply);
    CHECK(reply->status == 200);
    CHECK(reply->body == "ok");
    CHECK(reply->header("content-type") == "text/html");
    CHECK(reply->headers.count("connection") == 0);  // kept alive
    client.write(request("GET", path));
    reply = client.read_reply();
    REQUIRE(reply);
    CHECK(reply->body ==
          "4hello\x1e"
          "4world\x1e"
          "bAQIDBA==");
    CHECK(server.stats().http_connections >= 1);
  }

  TEST_CASE("a parked GET is answered when data is queued") {
    Server server;
    const std::string sid = open_polling(server.port);
    const std::string path = "/engine.io/?EIO=4&transport=polling&sid=" + sid;
    Client get(server.port);
    get.write(request("GET", path));
    CHECK_FALSE(get.read_reply(100ms));  // parked: nothing to send yet
    CHECK(http(server.port, "POST", path, "4ping?").body == "ok");
    auto reply = get.read_reply();
    REQUIRE(reply);
    CHECK(reply->status == 200);
    CHECK(reply->body == "4ping?");
  }

  TEST_CASE("POST above maxPayload gets 413 and the session survives") {
    Server server;
    const std::string sid = open_polling(server.port);
    const std::string path = "/engine.io/?EIO=4&transport=polling&sid=" + sid;
    const HttpReply reply = http(server.port, "POST", path, "4" + std::string(1500, 'x'));
    CHECK(reply.status == 413);
    CHECK(reply.header("connection") == "close");
    CHECK(server.session_exists(sid));
  }

  TEST_CASE("invalid POST payload closes the session with parse error") {
    Server server;
    const std::string sid = open_polling(server.port);
    const std::string path = "/engine.io/?EIO=4&transport=polling&sid=" + sid;
    CHECK(http(server.port, "POST", path, "abc").status == 400);
    CHECK(http(server.port, "GET", path).status == 400);
    CHECK(server.on_server([&] { return server.handler.close_reason(sid); }) == "parse error");
  }

  TEST_CASE("a second concurrent GET gets 400 and the first gets the close packet") {
    Server server;
    const std::string sid = open_polling(server.port);
    const std::string path = "/engine.io/?EIO=4&transport=polling&sid=" + sid;
    Client first(server.port);
    first.write(request("GET", path));
    CHECK_FALSE(first.read_reply(50ms));
    CHECK(http(server.port, "GET", path).status == 400);
    auto reply = first.read_reply();
    REQUIRE(reply);
    CHECK(reply->body == "1");
    CHECK(http(server.port, "GET", path).status == 400);
  }

  TEST_CASE("server-side close with a parked GET: queued packets first, the close packet alone") {
    Server server;
    const std::string sid = open_polling(server.port);
    const std::string path = "/engine.io/?EIO=4&transport=polling&sid=" + sid;
    Client get(server.port);
    get.write(request("GET", path));
    CHECK_FALSE(get.read_reply(50ms));  // parked
    CHECK(http(server.port, "POST", path,
               "4last words\x1e"
               "4close me")
              .body == "ok");
    auto reply = get.read_reply();
    REQUIRE(reply);
    CHECK(reply->body == "4last words");
    CHECK(http(server.port, "GET", path).body == "1");
    CHECK(http(server.port, "GET", path).status == 400);
    CHECK(server.on_server([&] { return server.handler.close_reason(sid); }) == "forced close");
  }

  TEST_CASE("server-side close with a parked GET and nothing queued answers it with the close") {
    Server server;
    const std::string sid = open_polling(server.port);
    const std::string path = "/engine.io/?EIO=4&transport=polling&sid=" + sid;
    Client get(server.port);
    get.write(request("GET", path));
    CHECK_FALSE(get.read_reply(50ms));  // parked
    CHECK(http(server.port, "POST", path, "4close me").body == "ok");
    auto reply = get.read_reply();
    REQUIRE(reply);
    CHECK(reply->body == "1");
    CHECK(http(server.port, "GET", path).status == 400);
  }

  TEST_CASE("client close packet releases the parked GET with a noop") {
    Server server;
    const std::string sid = open_polling(server.port);
    const std::string path = "/engine.io/?EIO=4&transport=polling&sid=" + sid;
    Client get(server.port);
    get.write(request("GET", path));
    CHECK_FALSE(get.read_reply(50ms));
    CHECK(http(server.port, "POST", path, "1").status == 200);
    auto reply = get.read_reply();
    REQUIRE(reply);
    CHECK(reply->body == "6");
    CHECK(http(server.port, "GET", path).status == 400);
    CHECK(server.on_server([&] { return server.handler.close_reason(sid); }) == "transport close");
  }

  TEST_CASE("server-side close: the close packet reaches the client on either transport") {
    Server server;
    const std::string sid = open_polling(server.port);
    const std::string path = "/engine.io/?EIO=4&transport=polling&sid=" + sid;
    CHECK(http(server.port, "POST", path,
               "4before\x1e"
               "4close me")
              .body == "ok");
    // No GET was waiting: the session is gone for the application, but the next GET still
    // collects what was queued, and the one after it the close packet, alone (socket.io-client
    // reads a batched `1` before the packets in front of it).
    CHECK_FALSE(server.session_exists(sid));
    CHECK(http(server.port, "GET", path).body == "4before");
    CHECK(http(server.port, "GET", path).body == "1");
    CHECK(http(server.port, "GET", path).status == 400);
    CHECK(server.on_server([&] { return server.handler.close_reason(sid); }) == "forced close");

    WsClient ws(server.port, "EIO=4&transport=websocket");
    const std::string ws_sid = open_websocket_sid(ws);
    ws.send_text("4close me");
    CHECK(ws.read_text() == "1");
    CHECK(ws.read_close_code() == 1000);
    CHECK(server.on_server([&] { return server.handler.close_reason(ws_sid); }) == "forced close");
  }

  TEST_CASE("WebSocket handshake and echo of text and binary") {
    Server server;
    WsClient ws(server.port, "EIO=4&transport=websocket");
    CHECK(ws.status == 101);
    CHECK(ws.accept == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");  // RFC 6455 §1.3 sample
    const std::string open = ws.read_text();
    REQUIRE(open.substr(0, 1) == "0");
    const Json json = Json::parse(open.substr(1));
    CHECK(json.size() == 5);
    CHECK(json["upgrades"] == Json::array());
    CHECK(server.stats().websocket == 1);

    ws.send_text("4hello");
    CHECK(ws.read_text() == "4hello");
    const std::string bytes("\x01\x02\x03\x04", 4);
    ws.send(0x2, bytes);
    auto frame = ws.read();
    REQUIRE(frame);
    CHECK(frame->opcode == 0x2);
    CHECK(frame->payload == bytes);
    // A medium-size message (16-bit length) both ways.
    const std::string medium = "4" + std::string(600, 'm');
    ws.send_text(medium);
    CHECK(ws.read_text() == medium);
  }

  TEST_CASE("b64=1 WebSocket clients get binary as base64 text") {
    Server server;
    WsClient ws(server.port, "EIO=4&transport=websocket&b64=1");
    open_websocket_sid(ws);
    ws.send(0x2, std::string("\x01\x02\x03\x04", 4));
    CHECK(ws.read_text() == "bAQIDBA==");
    ws.send_text("bAQIDBA==");  // and may send it that way
    CHECK(ws.read_text() == "bAQIDBA==");
  }

  TEST_CASE("fragmented message is reassembled; pings in between are answered") {
    Server server;
    WsClient ws(server.port, "EIO=4&transport=websocket");
    open_websocket_sid(ws);
    ws.send(0x1, "4hel", false);
    ws.send(0x9, "are you there");
    ws.send(0x0, "lo, ", false);
    ws.send(0x0, "world", true);
    auto pong = ws.read();
    REQUIRE(pong);
    CHECK(pong->opcode == 0xA);
    CHECK(pong->payload == "are you there");
    CHECK(ws.read_text() == "4hello, world");
  }

  TEST_CASE("protocol violations close the WebSocket") {
    Server server;
    SUBCASE("unmasked client frame: 1002") {
      WsClient ws(server.port, "EIO=4&transport=websocket");
      const std::string sid = open_websocket_sid(ws);
      ws.send(0x1, "4hi", true, false);
      CHECK(ws.read_close_code() == 1002);
      CHECK(ws.closed_within(2000ms));
      CHECK_FALSE(server.session_exists(sid));
    }
    SUBCASE("message above maxPayload: 1009") {
      WsClient ws(server.port, "EIO=4&transport=websocket");
      const std::string sid = open_websocket_sid(ws);
      ws.send_text("4" + std::string(2000, 'x'));
      CHECK(ws.read_close_code() == 1009);
      CHECK(server.on_server([&] { return server.handler.close_reason(sid); }) ==
            "transport error");
    }
    SUBCASE("fragments adding up above maxPayload: 1009") {
      WsClient ws(server.port, "EIO=4&transport=websocket");
      open_websocket_sid(ws);
      ws.send(0x1, "4" + std::string(600, 'x'), false);
      ws.send(0x0, std::string(600, 'x'), true);
      CHECK(ws.read_close_code() == 1009);
    }
    SUBCASE("invalid UTF-8 text: 1007") {
      WsClient ws(server.port, "EIO=4&transport=websocket");
      open_websocket_sid(ws);
      ws.send_text("4\xC3\x28");
      CHECK(ws.read_close_code() == 1007);
    }
    SUBCASE("invalid Engine.IO packet: parse error") {
      WsClient ws(server.port, "EIO=4&transport=websocket");
      const std::string sid = open_websocket_sid(ws);
      ws.send_text("abc");
      CHECK(ws.read_close_code() == 1000);
      CHECK(server.on_server([&] { return server.handler.close_reason(sid); }) == "parse error");
    }
    SUBCASE("client close frame is echoed") {
      WsClient ws(server.port, "EIO=4&transport=websocket");
      const std::string sid = open_websocket_sid(ws);
      ws.send(0x8, std::string("\x03\xE8", 2));
      CHECK(ws.read_close_code() == 1000);
      CHECK(ws.closed_within(2000ms));
      CHECK(server.on_server([&] { return server.handler.close_reason(sid); }) ==
            "transport close");
    }
  }

  TEST_CASE("a client that does not read is closed as a slow consumer") {
    EngineOptions options = test_engine_options();
    options.max_buffered_bytes = 64 * 1024;
    Server server(options);
    // A small receive window: the echoes fill the kernel buffers after a few hundred KB and
    // then pile up in the server's queue.
    WsClient ws(server.port, "EIO=4&transport=websocket", 16 * 1024);
    const std::string sid = open_websocket_sid(ws);
    const std::string message = "4" + std::string(900, 's');
    bool write_failed = false;
    for (int i = 0; i < 40000 && server.session_exists(sid); ++i) {
      try {
        ws.send_text(message);
      } catch (const std::exception&) {
        write_failed = true;  // the server dropped us between two checks: a reset is expected
        break;
      }
    }
    CHECK(server.on_server([&] { return server.handler.close_reason(sid); }) == "slow consumer");
    if (!write_failed) CHECK(ws.closed_within(5000ms));
  }

  TEST_CASE("a burst above the budget in one loop turn does not close a client that reads") {
    // A backlog read at once from the bus is queued in one turn: what the client's socket
    // takes at once must not count against maxBufferedBytes, only what stays queued.
    EngineOptions options = test_engine_options();
    options.max_buffered_bytes = 64 * 1024;
    Server server(options);
    WsClient ws(server.port, "EIO=4&transport=websocket");
    const std::string sid = open_websocket_sid(ws);
    const std::string payload(16 * 1024, 'b');
    constexpr int kPackets = 12;  // 192 KB, three times the budget, in one turn
    const bool all_taken = server.on_server([&] {
      EngineSocket* socket = server.server->engine("/engine.io/")->find(sid);
      bool taken = socket != nullptr;
      for (int i = 0; i < kPackets && taken; ++i) {
        taken = socket->send(OutgoingPacket::messages({MessagePart{false, payload}}));
      }
      return taken;
    });
    CHECK(all_taken);
    int received = 0;
    while (received < kPackets && ws.read_text() == "4" + payload) ++received;
    CHECK(received == kPackets);
    CHECK(server.session_exists(sid));
    CHECK_FALSE(server.on_server([&] { return server.handler.close_reason(sid); }).has_value());
  }

  TEST_CASE("ping timeout closes the session and the sid disappears at once") {
    // Margins for a loaded 2-core machine: the re-armed deadline is 650 ms after the "still
    // open" check (so the test thread may wake that late), and every lower bound is measured
    // from a time taken before the pong was sent (so a slow POST reply cannot make the
    // server's deadline look early).
    EngineOptions options = test_engine_options();
    options.ping_interval_ms = 1000;
    options.ping_timeout_ms = 300;
    Server server(options);
    const std::string sid = open_polling(server.port);
    const std::string path = "/engine.io/?EIO=4&transport=polling&sid=" + sid;
    // The long poll returns when the first ping is sent; answering it re-arms the heartbeat.
    CHECK(http(server.port, "GET", path).body == "2");
    const auto pong_sent = std::chrono::steady_clock::now();  // before the server has it
    CHECK(http(server.port, "POST", path, "3").body == "ok");
    // Waiting for a deadline to pass is the point here: without the re-arm the session would
    // have closed at pong + 300 ms at the latest; the re-armed deadline (pong + 1000 + 300) is
    // 650 ms after this check.
    std::this_thread::sleep_until(pong_sent + 650ms);
    CHECK(server.session_exists(sid));
    // Silence from now on: ping at pong + 1000 ms, closed at pong + 1300 ms, not earlier.
    const auto deadline = pong_sent + 8000ms;
    while (server.session_exists(sid) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(5ms);
    const auto closed_after = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - pong_sent);
    CHECK_FALSE(server.session_exists(sid));
    CHECK(closed_after >= 1300ms);
    CHECK(http(server.port, "GET", path).status == 400);
    CHECK(server.on_server([&] { return server.handler.close_reason(sid); }) == "ping timeout");

    WsClient ws(server.port, "EIO=4&transport=websocket");
    open_websocket_sid(ws);
    CHECK(ws.read_text(3000ms) == "2");
    const auto ws_pong = std::chrono::steady_clock::now();  // before the server has it
    ws.send_text("3");
    CHECK(ws.read_text(3000ms) == "2");
    CHECK(ws.read_close_code(5000ms) == 1000);  // not answered this time
    CHECK(std::chrono::steady_clock::now() - ws_pong >= 1300ms);
  }

  TEST_CASE("upgrade: probe, noop for the pending poll, switch, then polling refused") {
    Server server;
    const std::string sid = open_polling(server.port);
    const std::string path = "/engine.io/?EIO=4&transport=polling&sid=" + sid;
    Client get(server.port);
    get.write(request("GET", path));
    CHECK_FALSE(get.read_reply(50ms));

    WsClient ws(server.port, "EIO=4&transport=websocket&sid=" + sid);
    REQUIRE(ws.status == 101);
    ws.send_text("2probe");
    CHECK(ws.read_text() == "3probe");
    auto reply = get.read_reply();  // the parked GET is released with a noop
    REQUIRE(reply);
    CHECK(reply->body == "6");
    CHECK(http(server.port, "GET", path).body == "6");  // and so is every GET until `5`

    ws.send_text("5");
    ws.send_text("4after upgrade");
    CHECK(ws.read_text() == "4after upgrade");
    CHECK(http(server.port, "GET", path).status == 400);
    CHECK(server.stats().websocket == 1);
    CHECK(server.stats().polling == 0);

    // A second WebSocket for the same sid is closed.
    WsClient second(server.port, "EIO=4&transport=websocket&sid=" + sid);
    CHECK(second.read_close_code() != 0);
    ws.send_text("4still here");
    CHECK(ws.read_text() == "4still here");
  }

  TEST_CASE("data queued during the upgrade is flushed to the WebSocket") {
    Server server;
    const std::string sid = open_polling(server.port);
    const std::string path = "/engine.io/?EIO=4&transport=polling&sid=" + sid;
    WsClient ws(server.port, "EIO=4&transport=websocket&sid=" + sid);
    CHECK(http(server.port, "POST", path, "4queued").body == "ok");  // echo waits in the buffer
    ws.send_text("2probe");
    CHECK(ws.read_text() == "3probe");
    ws.send_text("5");
    CHECK(ws.read_text() == "4queued");
  }

  TEST_CASE("malformed HTTP: oversized head 431, chunked 411, bad request line 400") {
    Server server;
    HttpReply reply = http(server.port, "GET", "/engine.io/?EIO=4&transport=polling", {},
                           "X-Big: " + std::string(20000, 'a') + "\r\n");
    CHECK(reply.status == 431);
    reply = http(server.port, "POST", "/engine.io/?EIO=4&transport=polling", {},
                 "Transfer-Encoding: chunked\r\n");
    CHECK(reply.status == 411);
    Client client(server.port);
    client.write("NONSENSE\r\n\r\n");
    auto bad = client.read_reply();
    REQUIRE(bad);
    CHECK(bad->status == 400);
  }

  TEST_CASE("static files and directories") {
    char dir_template[] = "/tmp/gateway-test-XXXXXX";
    REQUIRE(::mkdtemp(dir_template) != nullptr);
    const std::string dir = dir_template;
    std::ofstream(dir + "/index.html") << "<p>index</p>";
    std::ofstream(dir + "/app.js") << "console.log(1)";
    Server server;
    server.on_server([&] {
      server.server->mount_file("/socket.io.js", dir + "/app.js", "application/javascript");
      server.server->mount_directory("/static/", dir);
    });
    HttpReply reply = http(server.port, "GET", "/socket.io.js");
    CHECK(reply.status == 200);
    CHECK(reply.header("content-type") == "application/javascript");
    CHECK(reply.body == "console.log(1)");
    CHECK(http(server.port, "GET", "/socket.io.js", {},
               "If-None-Match: " + reply.header("etag") + "\r\n")
              .status == 304);
    reply = http(server.port, "HEAD", "/socket.io.js");
    CHECK(reply.status == 200);
    CHECK(reply.header("content-length") == "14");
    CHECK(reply.body.empty());
    CHECK(http(server.port, "GET", "/static").body == "<p>index</p>");
    CHECK(http(server.port, "GET", "/static/").body == "<p>index</p>");
    CHECK(http(server.port, "GET", "/static/app.js").header("content-type") ==
          "application/javascript; charset=UTF-8");
    CHECK(http(server.port, "GET", "/static/../etc/passwd").status == 404);
    CHECK(http(server.port, "GET", "/static/%2e%2e/etc/passwd").status == 404);
    CHECK(http(server.port, "GET", "/static/missing.txt").status == 404);
    ::unlink((dir + "/index.html").c_str());
    ::unlink((dir + "/app.js").c_str());
    ::rmdir(dir.c_str());
  }

  TEST_CASE("mount_handler: GET and HEAD answer the handler's response per request, others 405") {
    Server server;
    int calls = 0;
    server.on_server([&] {
      server.server->mount_handler("/probe", [&calls] {
        steedos::gateway::HttpResponse response;
        response.status = ++calls % 2 == 1 ? 200 : 503;
        response.content_type = "application/json";
        response.body = "{\"call\":" + std::to_string(calls) + "}";
        response.headers.emplace_back("Cache-Control", "no-store");
        return response;
      });
    });
    HttpReply reply = http(server.port, "GET", "/probe");
    CHECK(reply.status == 200);
    CHECK(reply.body == "{\"call\":1}");
    CHECK(reply.header("content-type") == "application/json");
    CHECK(reply.header("cache-control") == "no-store");
    reply = http(server.port, "HEAD", "/probe");  // computed again: the handler is dynamic
    CHECK(reply.status == 503);
    CHECK(reply.header("content-length") == "10");
    CHECK(reply.body.empty());
    // A cross-site Origin changes nothing and earns no CORS header: probes are not engine routes.
    reply = http(server.port, "GET", "/probe", {}, "Origin: https://evil.example\r\n");
    CHECK(reply.status == 200);
    CHECK(reply.body == "{\"call\":3}");
    CHECK(reply.header("access-control-allow-origin").empty());
    reply = http(server.port, "POST", "/probe", "x");
    CHECK(reply.status == 405);
    CHECK(reply.header("allow") == "GET, HEAD");
    CHECK(http(server.port, "DELETE", "/probe").status == 405);
    CHECK(calls == 3);  // refused methods do not run the handler
    CHECK(http(server.port, "GET", "/probe/more").status == 404);  // exact path only
  }

  TEST_CASE("listen reports a taken port; stop closes sessions") {
    Server server;
    asio::io_context io;
    ServerOptions options;
    options.host = "127.0.0.1";
    options.port = server.port;
    GatewayServer clash(io, options);
    CHECK_THROWS_WITH_AS(clash.listen(), doctest::Contains("127.0.0.1"), std::runtime_error);

    WsClient ws(server.port, "EIO=4&transport=websocket");
    const std::string sid = open_websocket_sid(ws);
    const std::string polling_sid = open_polling(server.port);
    server.on_server([&] { server.server->stop(); });
    CHECK(ws.read_text() == "1");
    CHECK(ws.read_close_code() == 1001);
    CHECK(server.on_server([&] { return server.handler.close_reason(sid); }) ==
          "server shutting down");
    CHECK(server.on_server([&] { return server.handler.close_reason(polling_sid); }) ==
          "server shutting down");
  }
}
