// Test that header file is self-contained.
#include "gateway/socketio_server.hpp"

#include "gateway/memory_recovery_store.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace steedos;
using namespace steedos::gateway;

namespace {

/// An Engine.IO session without transport: records what the layer sends and whether it closed.
class FakeEngineSocket : public EngineSocket {
 public:
  FakeEngineSocket(SocketIoServer& server, std::string id) : server_(server), id_(std::move(id)) {
    handshake_.headers = {{"cookie", "X-Space-Id=s1"}};
  }
  ~FakeEngineSocket() override { end("transport close"); }

  std::string_view id() const override { return id_; }
  TransportKind transport() const override { return TransportKind::WebSocket; }
  const HandshakeInfo& handshake() const override { return handshake_; }
  void drop_handshake_headers() override { handshake_.headers.clear(); }
  bool send(const OutgoingPacketPtr& packet, bool /*is_volatile*/) override {
    if (closed) return false;
    packets.push_back(packet);
    if (close_on_send) close("slow consumer");
    return true;
  }
  void close(const std::string& reason) override {
    if (closed) return;
    closed = true;
    close_reason = reason;
    // Like an engine that reports the close from inside close(): the hardest case for the layer.
    if (close_synchronously) end(reason);
  }
  size_t buffered_bytes() const override { return 0; }

  void open() {
    server_.on_open(*this);
    opened_ = true;
  }
  void text(std::string_view data) { server_.on_message(*this, data, false); }
  void binary(std::string_view data) { server_.on_message(*this, data, true); }
  /// The engine reports the end of the session (once).
  void end(const std::string& reason) {
    if (!opened_ || ended_) return;
    ended_ = true;
    server_.on_close(*this, reason);
  }

  /// Every Engine.IO message sent so far, in order: text parts as `4...`, binary as `b<base64>`.
  std::vector<std::string> messages() const {
    std::vector<std::string> out;
    for (const auto& packet : packets) {
      const std::string& payload = packet->polling_payload();
      size_t start = 0;
      while (true) {
        size_t end = payload.find('\x1e', start);
        out.push_back(payload.substr(start, end == std::string::npos ? end : end - start));
        if (end == std::string::npos) break;
        start = end + 1;
      }
    }
    return out;
  }
  std::string last() const {
    auto all = messages();
    return all.empty() ? std::string() : all.back();
  }

  std::vector<OutgoingPacketPtr> packets;
  bool closed = false;
  bool close_synchronously = true;
  bool close_on_send = false;
  std::string close_reason;

 private:
  SocketIoServer& server_;
  std::string id_;
  HandshakeInfo handshake_;
  bool opened_ = false;
  bool ended_ = false;
};

/// The sid of a `40...{"sid":"..."}` reply.
std::string sid_of(const std::string& reply) {
  auto json = Json::parse(reply.substr(reply.find('{')));
  return json.at("sid").get<std::string>();
}

/// What an application keeps in a socket's slot (Socket::data()).
struct TestSession final : SocketData {
  explicit TestSession(std::string name) : name(std::move(name)) {}
  std::string name;
};

struct Fixture {
  asio::io_context io;
  SocketIoServer server{io, [] {
                          SocketIoOptions options;
                          options.connect_timeout_ms = 50;
                          options.attachment_timeout_ms = 50;
                          options.max_attachment_bytes = 100;
                          return options;
                        }()};

  std::unique_ptr<FakeEngineSocket> open(const std::string& id = "eio-1") {
    auto engine = std::make_unique<FakeEngineSocket>(server, id);
    engine->open();
    return engine;
  }
  /// Opens a session and connects it to `nsp` ("/" by default); returns the engine.
  std::unique_ptr<FakeEngineSocket> connect(const std::string& id, const std::string& nsp = "/") {
    auto engine = open(id);
    engine->text(nsp == "/" ? "0" : "0" + nsp + ",");
    REQUIRE_FALSE(engine->closed);
    return engine;
  }
  Socket& socket_of(FakeEngineSocket& engine, const std::string& nsp = "/") {
    for (const auto& message : engine.messages()) {
      const std::string prefix = nsp == "/" ? "40{" : "40" + nsp + ",{";
      if (message.rfind(prefix, 0) == 0) {
        Socket* socket = server.of(nsp).find(sid_of(message));
        REQUIRE(socket != nullptr);
        return *socket;
      }
    }
    FAIL("not connected");
    throw std::logic_error("unreachable");
  }
};

/// The conformance application of the official suite (§3.2).
void install_echo_app(SocketIoServer& server) {
  auto& main = server.of("/");
  main.on_connection([](Socket& socket) { socket.emit("auth", {socket.auth_raw()}); });
  main.on("message", [](Socket& socket, const RawArgs& args, const Attachments& attachments, Ack) {
    socket.emit("message-back", args, attachments);
  });
  main.on("message-with-ack", [](Socket&, const RawArgs& args, const Attachments& attachments,
                                 Ack ack) { ack(args, attachments); });
  server.of("/custom").on_connection(
      [](Socket& socket) { socket.emit("auth", {socket.auth_raw()}); });
}

}  // namespace

TEST_SUITE("socketio_server") {
  TEST_CASE("CONNECT to the main namespace: sid reply first, then the connection event") {
    Fixture f;
    install_echo_app(f.server);
    auto engine = f.open("eio-sid-1");
    engine->text("0");
    auto messages = engine->messages();
    REQUIRE(messages.size() == 2);
    CHECK(messages[0].rfind("40{\"sid\":\"", 0) == 0);
    const std::string sid = sid_of(messages[0]);
    CHECK(sid.size() == 20);
    CHECK(
        sid.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
        std::string::npos);
    CHECK(sid != engine->id());
    CHECK(Json::parse(messages[0].substr(2)).size() == 1);
    CHECK(messages[1] == R"(42["auth",{}])");
    Socket* socket = f.server.of("/").find(sid);
    REQUIRE(socket != nullptr);
    CHECK(socket->connected());
    CHECK(socket->auth() == Json::object());  // no payload reads as `{}`
    CHECK(socket->in_room(sid));
    CHECK(socket->rooms().empty());
    CHECK(socket->transport() == TransportKind::WebSocket);
    CHECK(socket->handshake().headers.at("cookie") == "X-Space-Id=s1");
  }

  TEST_CASE(
      "keep_handshake_headers = false: the hook reads them, the accepted session drops them") {
    asio::io_context io;
    SocketIoOptions options;
    options.keep_handshake_headers = false;
    SocketIoServer server(io, options);
    std::function<void(ConnectResult)> pending;
    std::string seen_in_hook;
    server.of("/").set_connect_hook(
        [&](Socket& socket, const Json&, std::function<void(ConnectResult)> decide) {
          seen_in_hook = std::string(socket.handshake().headers.at("cookie"));
          pending = std::move(decide);
        });
    FakeEngineSocket engine(server, "e");
    engine.open();
    engine.text("0");
    CHECK(seen_in_hook == "X-Space-Id=s1");
    CHECK(engine.handshake().headers.size() == 1);  // kept while the decision is pending
    pending(ConnectResult::accept());
    CHECK(engine.handshake().headers.empty());
    CHECK(engine.last().rfind("40{", 0) == 0);
  }

  TEST_CASE("CONNECT forms: payload, custom namespace with and without comma") {
    Fixture f;
    install_echo_app(f.server);
    auto a = f.open("a");
    a->text(R"(0{"token":"123"})");
    CHECK(a->last() == R"(42["auth",{"token":"123"}])");
    CHECK(f.socket_of(*a).auth().at("token") == "123");
    auto empty = f.open("empty");
    empty->text("0{}");
    CHECK(empty->last() == R"(42["auth",{}])");
    CHECK(f.socket_of(*empty).auth() == Json::object());

    auto b = f.open("b");
    b->text("0/custom,");
    REQUIRE(b->messages().size() == 2);
    CHECK(b->messages()[0].rfind("40/custom,{\"sid\":\"", 0) == 0);
    CHECK(b->messages()[1] == R"(42/custom,["auth",{}])");

    auto c = f.open("c");
    c->text(R"(0/custom,{"token":"abc"})");
    CHECK(c->last() == R"(42/custom,["auth",{"token":"abc"}])");

    auto d = f.open("d");
    d->text("0/custom");
    CHECK(d->messages().size() == 2);
    CHECK(f.server.of("/custom").socket_count() == 3);
  }

  TEST_CASE("unknown namespace: exactly the reference CONNECT_ERROR, connection kept") {
    Fixture f;
    install_echo_app(f.server);
    auto engine = f.open();
    engine->text("0/random");
    CHECK(engine->messages() ==
          std::vector<std::string>{R"(44/random,{"message":"Invalid namespace"})"});
    CHECK_FALSE(engine->closed);
    engine->text("0/random,{\"a\":1}");
    CHECK(engine->last() == R"(44/random,{"message":"Invalid namespace"})");
    engine->text("0");
    CHECK(engine->last() == R"(42["auth",{}])");
  }

  TEST_CASE("connect hook: reject with and without data, close the transport") {
    Fixture f;
    f.server.of("/").set_connect_hook([](Socket&, const Json& auth, auto decide) {
      if (auth.contains("data")) {
        decide(ConnectResult::reject("Not authorized", Json{{"code", 401}}));
      } else if (auth.contains("down")) {
        decide(ConnectResult::close_transport("auth service unavailable"));
      } else {
        decide(ConnectResult::reject("Not authorized"));
      }
    });
    auto a = f.open("a");
    a->text("0");
    CHECK(a->messages() == std::vector<std::string>{R"(44{"message":"Not authorized"})"});
    CHECK_FALSE(a->closed);

    auto b = f.open("b");
    b->text(R"(0{"data":1})");
    CHECK(b->messages() ==
          std::vector<std::string>{R"(44{"message":"Not authorized","data":{"code":401}})"});

    auto c = f.open("c");
    c->text(R"(0{"down":true})");
    CHECK(c->messages().empty());
    CHECK(c->closed);
    CHECK(f.server.of("/").socket_count() == 0);
    CHECK(f.server.connection_count() == 2);
  }

  TEST_CASE("connect hook: asynchronous decision, from another thread, after the session ended") {
    Fixture f;
    std::vector<std::function<void(ConnectResult)>> pending;
    std::vector<std::string> seen_cookies;
    f.server.of("/").set_connect_hook([&](Socket& socket, const Json&, auto decide) {
      seen_cookies.emplace_back(socket.handshake().headers.at("cookie"));
      socket.data() = std::make_unique<TestSession>("session-of-" + socket.id());
      pending.push_back(std::move(decide));
    });
    int connected = 0;
    f.server.of("/").on_connection([&](Socket& socket) {
      ++connected;
      auto* session = dynamic_cast<TestSession*>(socket.data().get());
      REQUIRE(session != nullptr);
      CHECK(session->name == "session-of-" + socket.id());
    });

    auto a = f.open("a");
    a->text("0");
    REQUIRE(pending.size() == 1);
    CHECK(a->messages().empty());
    CHECK(seen_cookies == std::vector<std::string>{"X-Space-Id=s1"});
    auto b = f.open("b");
    b->text("0");
    REQUIRE(pending.size() == 2);

    // Called off the io thread: posted, applied by the loop.
    std::thread([decide = pending[0]] { decide(ConnectResult::accept()); }).join();
    CHECK(a->messages().empty());
    f.io.poll();
    REQUIRE(a->messages().size() == 1);
    CHECK(a->messages()[0].rfind("40{\"sid\":", 0) == 0);
    CHECK(connected == 1);
    // A second decision is ignored.
    pending[0](ConnectResult::reject("late"));
    f.io.poll();
    CHECK(a->messages().size() == 1);

    // The session ends before the decision: nothing is sent, nothing breaks.
    b->end("transport close");
    pending[1](ConnectResult::accept());
    f.io.poll();
    CHECK(b->messages().empty());
    CHECK(connected == 1);
    CHECK(f.server.of("/").socket_count() == 1);
  }

  TEST_CASE("a packet for a namespace still connecting closes the connection") {
    Fixture f;
    std::function<void(ConnectResult)> pending;
    f.server.of("/").set_connect_hook(
        [&](Socket&, const Json&, auto decide) { pending = std::move(decide); });
    auto engine = f.open();
    engine->text("0");
    engine->text(R"(2["early"])");
    CHECK(engine->closed);
    pending(ConnectResult::accept());
    f.io.poll();
    CHECK(engine->messages().empty());
  }

  TEST_CASE("connectTimeout closes a session that joined no namespace") {
    Fixture f;
    auto idle = f.open("idle");
    auto joined = f.connect("joined");
    f.io.run_for(std::chrono::milliseconds(150));
    CHECK(idle->closed);
    CHECK_FALSE(joined->closed);
    CHECK(f.server.connection_count() == 1);
  }

  TEST_CASE("connectTimeout: each session at its own deadline; joined and closed ones leave") {
    // One timer serves every session (a deadline queue): a session that joins or goes from the
    // middle of the queue must not disturb the deadlines of the others. Waits are for events;
    // the only deliberate delay is the gap between two opens, and the checks hold however late
    // the loop runs, unless a timer fires more than that gap late.
    asio::io_context io;
    SocketIoOptions options;
    options.connect_timeout_ms = 600;
    SocketIoServer server(io, options);
    auto run_until = [&io](const bool& flag) {
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!flag && std::chrono::steady_clock::now() < give_up) {
        io.restart();
        io.run_one_for(std::chrono::milliseconds(50));
      }
      return flag;
    };
    auto early = std::make_unique<FakeEngineSocket>(server, "early");
    auto joins = std::make_unique<FakeEngineSocket>(server, "joins");
    auto goes = std::make_unique<FakeEngineSocket>(server, "goes");
    early->open();
    joins->open();
    goes->open();
    joins->text("0");              // leaves the queue from the middle
    goes->end("transport close");  // and this one from its tail
    CHECK(server.connection_count() == 2);
    io.run_for(std::chrono::milliseconds(500));  // deliberate gap before the next open
    auto late = std::make_unique<FakeEngineSocket>(server, "late");
    late->open();
    REQUIRE(run_until(early->closed));
    CHECK(early->close_reason == "forced close");
    CHECK_FALSE(late->closed);  // due 500 ms after early
    REQUIRE(run_until(late->closed));
    CHECK(late->close_reason == "forced close");
    CHECK_FALSE(joins->closed);
    CHECK(server.connection_count() == 1);
  }

  TEST_CASE("events keep their raw arguments byte for byte; acks answer once") {
    Fixture f;
    install_echo_app(f.server);
    auto engine = f.connect("e");
    engine->text(R"(2["message",1,"2",{"3":[true]}])");
    CHECK(engine->last() == R"(42["message-back",1,"2",{"3":[true]}])");
    engine->text(R"(2[ "message" , 1.50 , {"b":1,"a":2} ])");
    CHECK(engine->last() == R"(42["message-back",1.50,{"b":1,"a":2}])");
    engine->text(R"(2456["message-with-ack",1,"2",{"3":[false]}])");
    CHECK(engine->last() == R"(43456[1,"2",{"3":[false]}])");

    Ack kept;
    f.server.of("/").on("keep", [&](Socket&, const RawArgs& args, const Attachments&, Ack ack) {
      CHECK(args.empty());
      kept = ack;
    });
    engine->text(R"(27["keep"])");
    REQUIRE(static_cast<bool>(kept));
    Ack copy = kept;
    CHECK(copy({"\"x\""}));
    CHECK_FALSE(kept({"\"y\""}));
    CHECK_FALSE(static_cast<bool>(kept));
    CHECK(engine->last() == R"(437["x"])");

    // No ack id: an empty Ack that sends nothing.
    engine->text(R"(2["keep"])");
    CHECK_FALSE(static_cast<bool>(kept));
    CHECK_FALSE(kept());
  }

  TEST_CASE("handler precedence: socket, namespace, socket on_any, namespace on_any") {
    Fixture f;
    std::vector<std::string> calls;
    auto& nsp = f.server.of("/");
    nsp.on("shared", [&](Socket&, const RawArgs&, const Attachments&, Ack) {
      calls.push_back("nsp:shared");
    });
    nsp.on_any([&](Socket&, std::string_view event, const RawArgs& args, const Attachments&, Ack) {
      calls.push_back("nsp-any:" + std::string(event) + ":" + std::to_string(args.size()));
    });
    nsp.on_connection([&](Socket& socket) {
      socket.on("own", [&](Socket&, const RawArgs&, const Attachments&, Ack) {
        calls.push_back("socket:own");
      });
    });
    auto engine = f.connect("e");
    engine->text(R"(2["own"])");
    engine->text(R"(2["shared"])");
    engine->text(R"(2["other",1,2])");
    engine->text(R"(2[42,"numeric name"])");
    engine->text(R"(2["\u0041"])");
    CHECK(calls == std::vector<std::string>{"socket:own", "nsp:shared", "nsp-any:other:2",
                                            "nsp-any:42:1", "nsp-any:A:0"});
    f.socket_of(*engine).on_any([&](Socket&, std::string_view event, const RawArgs&,
                                    const Attachments&,
                                    Ack) { calls.push_back("socket-any:" + std::string(event)); });
    engine->text(R"(2["other"])");
    CHECK(calls.back() == "socket-any:other");
  }

  TEST_CASE("binary events and acks: attachments in, placeholders and binary parts out") {
    Fixture f;
    install_echo_app(f.server);
    auto engine = f.connect("e");
    const size_t before = engine->packets.size();
    engine->text(R"(52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}])");
    engine->binary(std::string("\x01\x02\x03", 3));
    CHECK(engine->packets.size() == before);
    engine->binary(std::string("\x04\x05\x06", 3));
    REQUIRE(engine->packets.size() == before + 1);
    // One OutgoingPacket: the text part and both attachments.
    CHECK(engine->packets.back()->part_count() == 3);
    CHECK(engine->packets.back()->polling_payload() ==
          "452-[\"message-back\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,"
          "\"num\":1}]\x1e"
          "bAQID\x1e"
          "bBAUG");

    engine->text(
        R"(52-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}])");
    engine->binary(std::string("\x01\x02\x03", 3));
    engine->binary(std::string("\x04\x05\x06", 3));
    CHECK(engine->packets.back()->polling_payload() ==
          "462-789[{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]\x1e"
          "bAQID\x1e"
          "bBAUG");

    // Binary ack from the client to a server emit, in a custom namespace.
    auto other = f.connect("o", "/custom");
    Socket& socket = f.socket_of(*other, "/custom");
    std::string got;
    REQUIRE(socket.emit_with_ack(
        "question", {"1"}, {},
        [&](AckStatus status, const RawArgs& args, const Attachments& attachments) {
          CHECK(status == AckStatus::Ok);
          REQUIRE(args.size() == 1);
          REQUIRE(attachments.size() == 1);
          got = std::string(args[0]) + "+" + attachments[0];
        },
        std::chrono::seconds(5)));
    CHECK(other->last() == R"(42/custom,0["question",1])");
    other->text(R"(61-/custom,0[{"_placeholder":true,"num":0}])");
    other->binary("bytes");
    CHECK(got == R"({"_placeholder":true,"num":0}+bytes)");
  }

  TEST_CASE("one session in three namespaces: leave the first, rejoin, close them all") {
    Fixture f;
    auto& root = f.server.of("/");
    auto& a = f.server.of("/a");
    auto& b = f.server.of("/b");
    std::vector<std::string> events;
    for (Namespace* nsp : {&root, &a, &b}) {
      nsp->on("ping", [&events, nsp](Socket&, const RawArgs&, const Attachments&, Ack) {
        events.push_back(nsp->name());
      });
    }
    auto engine = f.connect("e");
    engine->text("0/a,");
    engine->text("0/b,");
    CHECK(root.socket_count() == 1);
    CHECK(a.socket_count() == 1);
    CHECK(b.socket_count() == 1);
    engine->text("1");  // the client leaves "/", the first of its sockets
    CHECK(root.socket_count() == 0);
    engine->text(R"(2/b,["ping"])");
    engine->text(R"(2/a,["ping"])");
    CHECK(events == std::vector<std::string>{"/b", "/a"});
    CHECK_FALSE(engine->closed);
    engine->text("0");  // and joins it again
    REQUIRE(root.socket_count() == 1);
    engine->text(R"(2["ping"])");
    CHECK(events.back() == "/");

    f.socket_of(*engine, "/a").disconnect(true);  // every namespace, then the transport
    CHECK(root.socket_count() == 0);
    CHECK(a.socket_count() == 0);
    CHECK(b.socket_count() == 0);
    CHECK(engine->closed);
    const auto messages = engine->messages();
    for (const char* disconnect : {"41", "41/a,", "41/b,"}) {
      CHECK(std::count(messages.begin(), messages.end(), disconnect) == 1);
    }
  }

  TEST_CASE("binary protocol violations close the connection") {
    SUBCASE("a text message before the attachments are complete") {
      Fixture f;
      auto engine = f.connect("e");
      engine->text(R"(51-["x",{"_placeholder":true,"num":0}])");
      engine->text(R"(2["x"])");
      CHECK(engine->closed);
      CHECK(engine->close_reason == "parse error");
    }
    SUBCASE("a binary message without a binary packet") {
      Fixture f;
      auto engine = f.connect("e");
      engine->binary("xyz");
      CHECK(engine->closed);
    }
    SUBCASE("attachments beyond the byte limit") {
      Fixture f;
      auto engine = f.connect("e");
      engine->text(R"(52-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}])");
      engine->binary(std::string(60, 'a'));
      CHECK_FALSE(engine->closed);
      engine->binary(std::string(60, 'b'));
      CHECK(engine->closed);
    }
    SUBCASE("attachments that never complete") {
      Fixture f;
      auto engine = f.connect("e");
      engine->text(R"(51-["x",{"_placeholder":true,"num":0}])");
      f.io.run_for(std::chrono::milliseconds(150));
      CHECK(engine->closed);
    }
    SUBCASE("more than 10 attachments announced") {
      Fixture f;
      auto engine = f.connect("e");
      engine->text(R"(511-["x"])");
      CHECK(engine->closed);
    }
    SUBCASE("a binary packet for a namespace not joined") {
      Fixture f;
      auto engine = f.connect("e");
      engine->text(R"(51-/custom,["x",{"_placeholder":true,"num":0}])");
      CHECK(engine->closed);
    }
  }

  TEST_CASE("more than 10 outgoing attachments are refused") {
    Fixture f;
    auto engine = f.connect("e");
    Socket& socket = f.socket_of(*engine);
    const size_t before = engine->packets.size();
    Attachments eleven(11, "x");
    RawArgs args;
    for (int i = 0; i < 11; ++i) args.push_back(R"({"_placeholder":true,"num":0})");
    CHECK_FALSE(socket.emit("big", args, eleven));
    CHECK(f.server.of("/").emit_all("big", args, eleven) == 0);
    CHECK(f.server.of("/").encode_event("big", args, eleven) == nullptr);
    Attachments ten(10, "x");
    CHECK(socket.emit("ok", {}, ten));
    CHECK(engine->packets.back()->part_count() == 11);

    Ack ack;
    f.server.of("/").on("q", [&](Socket&, const RawArgs&, const Attachments&, Ack a) { ack = a; });
    engine->text(R"(21["q"])");
    CHECK_FALSE(ack({}, eleven));
    CHECK(engine->packets.size() == before + 1);
    CHECK_FALSE(socket.emit("disconnect"));
    CHECK_FALSE(socket.emit("connect"));
  }

  TEST_CASE("client DISCONNECT keeps the Engine.IO connection") {
    Fixture f;
    install_echo_app(f.server);
    std::vector<std::string> reasons;
    f.server.of("/custom").on_disconnect(
        [&](Socket&, const std::string& reason) { reasons.push_back(reason); });
    auto engine = f.connect("e");
    engine->text("0/custom");
    REQUIRE(f.server.of("/custom").socket_count() == 1);
    engine->text("1/custom");
    CHECK(reasons == std::vector<std::string>{"client namespace disconnect"});
    CHECK(f.server.of("/custom").socket_count() == 0);
    CHECK_FALSE(engine->closed);
    engine->text(R"(2["message","message to main namespace"])");
    CHECK(engine->last() == R"(42["message-back","message to main namespace"])");
    engine->text("1");
    CHECK_FALSE(engine->closed);
    CHECK(f.server.of("/").socket_count() == 0);
    // The namespace can be joined again; a packet for it before that closes.
    engine->text("0/custom,");
    CHECK(f.server.of("/custom").socket_count() == 1);
    engine->text(R"(2["message"])");
    CHECK(engine->closed);
  }

  TEST_CASE("server disconnect sends DISCONNECT, optionally closing the transport") {
    Fixture f;
    std::vector<std::string> reasons;
    f.server.of("/").on_disconnect(
        [&](Socket&, const std::string& reason) { reasons.push_back(reason); });
    f.server.of("/custom");
    auto engine = f.connect("e");
    engine->text("0/custom,");
    Socket& custom = f.socket_of(*engine, "/custom");
    custom.disconnect();
    CHECK(engine->last() == "41/custom,");
    CHECK_FALSE(engine->closed);
    CHECK(f.server.of("/custom").socket_count() == 0);

    Socket& main = f.socket_of(*engine);
    main.disconnect(true);
    CHECK(engine->last() == "41");
    CHECK(engine->closed);
    CHECK(reasons == std::vector<std::string>{"server namespace disconnect"});
    f.io.poll();
    CHECK(f.server.connection_count() == 0);
  }

  TEST_CASE("rooms: union each once, except, own-id room, encode once") {
    Fixture f;
    auto a = f.connect("a");
    auto b = f.connect("b");
    auto c = f.connect("c");
    auto& nsp = f.server.of("/");
    Socket& sa = f.socket_of(*a);
    Socket& sb = f.socket_of(*b);
    Socket& sc = f.socket_of(*c);
    CHECK(sa.join("r1"));
    CHECK_FALSE(sa.join("r1"));
    CHECK(sa.join("r2"));
    CHECK(sb.join("r2"));
    CHECK(sc.join("r3"));
    CHECK(nsp.room_count() == 3);
    CHECK(nsp.room_size("r2") == 2);
    CHECK(nsp.room_size(sa.id()) == 1);
    auto rooms = nsp.rooms_of(sa);
    std::sort(rooms.begin(), rooms.end());
    CHECK(rooms == std::vector<std::string>{"r1", "r2"});

    const size_t a0 = a->packets.size(), b0 = b->packets.size(), c0 = c->packets.size();
    CHECK(nsp.emit_to({"r1", "r2"}, {}, "news", {R"({"n":1})"}) == 2);
    REQUIRE(a->packets.size() == a0 + 1);
    REQUIRE(b->packets.size() == b0 + 1);
    CHECK(c->packets.size() == c0);
    CHECK(a->packets.back().get() == b->packets.back().get());  // the same encoded packet
    CHECK(a->last() == R"(42["news",{"n":1}])");

    CHECK(nsp.emit_to({"r1", "r2", "r3"}, sa.id(), "x", {}) == 2);
    CHECK(a->packets.size() == a0 + 1);
    CHECK(b->last() == R"(42["x"])");
    CHECK(c->last() == R"(42["x"])");

    CHECK(nsp.emit_to({sc.id(), "r1"}, {}, "own", {}) == 2);
    CHECK(c->last() == R"(42["own"])");
    const std::string b_last = b->last();
    CHECK(nsp.emit_all("all", {"true"}, {}, sb.id()) == 2);
    CHECK(a->last() == R"(42["all",true])");
    CHECK(b->last() == b_last);
    CHECK(nsp.emit_to({"nobody"}, {}, "x", {}) == 0);

    auto packet = nsp.encode_event("shared", {"1"});
    CHECK(nsp.send_to({"r2", "r3"}, packet, {}, {"r1"}) == 2);
    CHECK(b->packets.back() == packet);
    CHECK(c->packets.back() == packet);
    CHECK(packet.use_count() == 3);

    CHECK(sa.leave("r1"));
    CHECK_FALSE(sa.leave("r1"));
    CHECK(nsp.room_count() == 2);
  }

  TEST_CASE("disconnect leaves every room; disconnecting still sees them") {
    Fixture f;
    auto& nsp = f.server.of("/");
    std::vector<std::string> seen;
    std::string order;
    nsp.on_disconnecting([&](Socket& socket, const std::string& reason) {
      seen = socket.rooms();
      order += "disconnecting:" + reason + ";";
    });
    nsp.on_disconnect([&](Socket& socket, const std::string&) {
      CHECK(socket.rooms().empty());
      CHECK_FALSE(socket.connected());
      order += "disconnect;";
    });
    auto a = f.connect("a");
    auto b = f.connect("b");
    f.socket_of(*a).join("room");
    f.socket_of(*b).join("room");
    a->end("ping timeout");
    CHECK(seen == std::vector<std::string>{"room"});
    CHECK(order == "disconnecting:ping timeout;disconnect;");
    CHECK(nsp.room_size("room") == 1);
    CHECK(nsp.socket_count() == 1);
    b->end("transport close");
    CHECK(nsp.room_count() == 0);
    CHECK(f.server.connection_count() == 0);
  }

  TEST_CASE("a close reported from inside send() during a broadcast is deferred safely") {
    Fixture f;
    auto& nsp = f.server.of("/");
    std::vector<std::unique_ptr<FakeEngineSocket>> engines;
    for (int i = 0; i < 5; ++i) {
      engines.push_back(f.connect("e" + std::to_string(i)));
      f.socket_of(*engines.back()).join("room");
    }
    engines[1]->close_on_send = true;
    engines[3]->close_on_send = true;
    CHECK(nsp.emit_to({"room"}, {}, "x", {}) == 5);
    CHECK(nsp.room_size("room") == 3);  // closed sessions no longer count
    CHECK(nsp.emit_to({"room"}, {}, "y", {}) == 3);
    f.io.poll();
    CHECK(nsp.socket_count() == 3);
    CHECK(nsp.room_size("room") == 3);
    CHECK(f.server.connection_count() == 3);
  }

  TEST_CASE("emit_with_ack: answer, timeout, disconnect; unknown ack ids are ignored") {
    Fixture f;
    auto engine = f.connect("e");
    Socket& socket = f.socket_of(*engine);
    std::vector<std::string> results;
    auto record = [&](AckStatus status, const RawArgs& args, const Attachments&) {
      std::string text = status == AckStatus::Ok        ? "ok"
                         : status == AckStatus::Timeout ? "timeout"
                                                        : "disconnected";
      for (auto arg : args) text += ":" + std::string(arg);
      results.push_back(text);
    };
    REQUIRE(socket.emit_with_ack("a", {}, {}, record, std::chrono::milliseconds(20)));
    REQUIRE(socket.emit_with_ack("b", {}, {}, record, std::chrono::milliseconds(20)));
    REQUIRE(socket.emit_with_ack("c", {}, {}, record, std::chrono::seconds(10)));
    CHECK(engine->last() == R"(422["c"])");
    engine->text(R"(30["yes",2])");
    engine->text(R"(30["again"])");
    engine->text(R"(399[])");
    engine->text(R"(3[])");
    f.io.run_for(std::chrono::milliseconds(100));
    CHECK(results == std::vector<std::string>{"ok:\"yes\":2", "timeout"});
    engine->end("transport close");
    CHECK(results.back() == "disconnected");
    CHECK_FALSE(engine->closed);  // the engine ended by itself; nobody asked it to close
  }

  TEST_CASE("malformed packets and protocol violations close the connection") {
    const std::vector<std::string> bad = {
        "abc",                                       // unknown packet type
        "2{}",                                       // EVENT payload not an array
        R"(2abc["message-with-ack",1])",             // invalid ack id
        "2[]",                                       // EVENT without a name
        R"(2["disconnect"])",                        // reserved event name
        "2[\"x\"",                                   // unbalanced JSON
        "0[]",                                       // CONNECT payload not an object
        "0",                                         // CONNECT again for "/"
        R"(2/custom,["x"])",                         // namespace not joined
        "1/custom,",                                 // DISCONNECT for a namespace not joined
        R"(4{"message":"x"})",                       // CONNECT_ERROR from a client
        "7",                                         // unknown type
        "",                                          // empty
        R"(2["x",{"_placeholder":true,"num":0}],)",  // trailing garbage
        "2" + std::string(100000, '[') + std::string(100000, ']'),  // nested too deeply
    };
    for (const auto& packet : bad) {
      CAPTURE(packet);
      Fixture f;
      auto engine = f.connect("e");
      CHECK(f.server.protocol_violations() == 0);
      engine->text(packet);
      CHECK(engine->closed);
      CHECK(f.server.protocol_violations() == 1);
      f.io.poll();
      CHECK(f.server.connection_count() == 0);
      CHECK(f.server.of("/").socket_count() == 0);
    }
  }

  TEST_CASE("an event handler that throws closes only that session") {
    Fixture f;
    f.server.of("/").on("boom", [](Socket&, const RawArgs&, const Attachments&, Ack) {
      throw std::runtime_error("bug");
    });
    auto a = f.connect("a");
    auto b = f.connect("b");
    CHECK_NOTHROW(a->text(R"(2["boom"])"));
    CHECK(a->closed);
    CHECK_FALSE(b->closed);
  }

  TEST_CASE("a throwing disconnect hook does not leave the socket behind") {
    Fixture f;
    auto& nsp = f.server.of("/");
    std::string cookie;
    nsp.on_disconnecting([&](Socket& socket, const std::string&) {
      cookie = socket.handshake().headers.at("cookie");
      throw std::runtime_error("bug");
    });
    nsp.on_disconnect([](Socket&, const std::string&) { throw std::runtime_error("bug"); });
    auto a = f.connect("a");
    f.socket_of(*a).join("room");
    CHECK_NOTHROW(a->end("transport close"));
    CHECK(cookie == "X-Space-Id=s1");  // the handshake is still readable while closing
    CHECK(nsp.socket_count() == 0);
    CHECK(nsp.room_count() == 0);
  }

  TEST_CASE("a session that ends with a binary packet half received") {
    Fixture f;
    install_echo_app(f.server);
    auto engine = f.connect("e");
    engine->text(R"(52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}])");
    engine->binary("a");
    engine->end("transport close");
    f.io.run_for(std::chrono::milliseconds(100));
    CHECK(f.server.connection_count() == 0);
    CHECK_FALSE(engine->closed);
  }

  TEST_CASE("sockets iteration works on a snapshot; lookups by id and namespace") {
    Fixture f;
    auto a = f.connect("a");
    auto b = f.connect("b");
    auto& nsp = f.server.of("/");
    CHECK(&f.server.of("custom") == &f.server.of("/custom"));
    CHECK(f.server.find_namespace("/nope") == nullptr);
    int visited = 0;
    nsp.for_each_socket([&](Socket& socket) {
      ++visited;
      socket.disconnect();
    });
    CHECK(visited == 2);
    CHECK(nsp.socket_count() == 0);
    CHECK(nsp.find("unknown") == nullptr);
    CHECK(a->last() == "41");
    CHECK(b->last() == "41");
  }
}

// Issue 9: gateway.maxAttachments and gateway.maxEventNameLength, and the refusals counted by
// limit (SocketIoLimitCounts, read by socket.stats `limits`).
TEST_SUITE("socketio_server limits") {
  TEST_CASE("max_attachments: up to the limit passes, one more is a parse error, counted") {
    asio::io_context io;
    SocketIoOptions options;
    options.max_attachments = 2;
    SocketIoServer server(io, options);
    std::vector<size_t> received;
    server.of("/").on("up", [&](Socket&, const RawArgs&, const Attachments& attachments, Ack) {
      received.push_back(attachments.size());
    });
    FakeEngineSocket engine(server, "e");
    engine.open();
    engine.text("0");
    engine.text(R"(52-["up",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}])");
    engine.binary("a");
    engine.binary("b");
    CHECK(received == std::vector<size_t>{2});
    CHECK_FALSE(engine.closed);
    engine.text(R"(53-["up"])");
    CHECK(engine.closed);
    CHECK(engine.close_reason == "parse error");
    CHECK(server.limit_counts().attachments == 1);
    CHECK(server.protocol_violations() == 1);
  }

  TEST_CASE("packet size and JSON depth refusals are counted apart from other violations") {
    Fixture f;
    auto big = f.connect("big");
    big->text(R"(52-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}])");
    big->binary(std::string(60, 'a'));
    big->binary(std::string(60, 'b'));  // over max_attachment_bytes (100)
    CHECK(big->closed);
    auto deep = f.connect("deep");
    deep->text("2" + std::string(5000, '[') + std::string(5000, ']'));
    CHECK(deep->closed);
    auto junk = f.connect("junk");
    junk->text("2{}");
    CHECK(junk->closed);
    const auto& counts = f.server.limit_counts();
    CHECK(counts.packet_size == 1);
    CHECK(counts.json_depth == 1);
    CHECK(counts.attachments == 0);
    CHECK(counts.event_name == 0);
    CHECK(f.server.protocol_violations() == 3);
  }

  TEST_CASE("max_event_name_length: a longer event is dropped, its ack answers an error") {
    asio::io_context io;
    SocketIoOptions options;
    options.max_event_name_length = 8;
    SocketIoServer server(io, options);
    std::vector<std::string> seen;
    server.of("/").on_any(
        [&](Socket&, std::string_view event, const RawArgs&, const Attachments&, Ack ack) {
          seen.emplace_back(event);
          if (ack) ack({"\"ok\""});
        });
    FakeEngineSocket engine(server, "e");
    engine.open();
    engine.text("0");
    engine.text(R"(21["12345678"])");  // 8 bytes: dispatched
    CHECK(engine.last() == R"(431["ok"])");
    engine.text(R"(22["123456789"])");  // 9 bytes: dropped, the ack says why
    CHECK(engine.last() == R"(432[{"error":"event name longer than 8 bytes"}])");
    engine.text(R"(2["123456789"])");  // no ack asked: nothing sent
    CHECK(engine.last() == R"(432[{"error":"event name longer than 8 bytes"}])");
    engine.text("23[\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"]");  // 5 characters, 10 bytes
    CHECK(engine.last() == R"(433[{"error":"event name longer than 8 bytes"}])");
    CHECK(seen == std::vector<std::string>{"12345678"});
    CHECK_FALSE(engine.closed);
    CHECK(server.limit_counts().event_name == 3);
    CHECK(server.protocol_violations() == 0);
  }
}

namespace {

/// A server with connection state recovery on (gateway/recovery.hpp).
struct RecoveryFixture : Fixture {
  asio::io_context io;
  SocketIoServer server{io, [] {
                          SocketIoOptions options;
                          options.recovery.enabled = true;
                          options.recovery.max_disconnection_duration_ms = 60000;
                          return options;
                        }()};

  std::unique_ptr<FakeEngineSocket> connect_with(const std::string& id, const std::string& auth) {
    auto engine = std::make_unique<FakeEngineSocket>(server, id);
    engine->open();
    engine->text("0" + auth);
    return engine;
  }
  Socket& socket_of(FakeEngineSocket& engine) {
    for (const auto& message : engine.messages()) {
      if (message.rfind("40{", 0) == 0) {
        Socket* socket = server.of("/").find(sid_of(message));
        REQUIRE(socket != nullptr);
        return *socket;
      }
    }
    FAIL("not connected");
    throw std::logic_error("unreachable");
  }
};

Json connect_reply(const FakeEngineSocket& engine) {
  for (const auto& message : engine.messages()) {
    if (message.rfind("40{", 0) == 0) return Json::parse(message.substr(2));
  }
  return Json();
}

/// The last element of an EVENT's data array (the offset when recovery is on).
std::string last_element(const std::string& message) {
  auto data = Json::parse(message.substr(message.find('[')));
  return data.back().is_string() ? data.back().get<std::string>() : std::string();
}

/// The auth a recovering socket.io-client sends: the pid and the last offset it received.
std::string recovery_auth(const std::string& pid, const std::string& offset) {
  return dump_json(Json{{"token", "t"}, {"pid", pid}, {"offset", offset}});
}

}  // namespace

TEST_SUITE("socketio_server recovery") {
  TEST_CASE("off (the default): no pid in the reply, no offset on events, nothing kept") {
    Fixture f;
    install_echo_app(f.server);
    auto engine = f.connect("e");
    CHECK(connect_reply(*engine).size() == 1);
    CHECK(engine->messages()[1] == R"(42["auth",{}])");
    Socket& socket = f.socket_of(*engine);
    CHECK(socket.pid().empty());
    CHECK(f.server.of("/").emit_all("x", {"1"}) == 1);
    CHECK(engine->last() == R"(42["x",1])");
    engine->end("transport close");
    CHECK(f.server.recovery_store() == nullptr);
    CHECK(f.server.kept_session_count() == 0);
    CHECK(f.server.recovery_counts().kept == 0);
  }

  TEST_CASE(
      "on: the reply carries a pid; events carry an offset last; acks and ack-asking emits "
      "do not") {
    RecoveryFixture f;
    install_echo_app(f.server);
    auto engine = f.connect_with("e", "");
    const Json reply = connect_reply(*engine);
    REQUIRE(reply.contains("pid"));
    const std::string pid = reply.at("pid").get<std::string>();
    CHECK(pid.size() == 20);
    CHECK(pid != reply.at("sid").get<std::string>());
    Socket& socket = f.socket_of(*engine);
    CHECK(socket.pid() == pid);
    CHECK_FALSE(socket.recovered());
    // The connection handler's emit: a direct emit carries an offset too.
    const std::string auth_offset = last_element(engine->messages()[1]);
    CHECK_FALSE(auth_offset.empty());
    CHECK(engine->messages()[1] == R"(42["auth",{},")" + auth_offset + R"("])");
    f.server.of("/").emit_all("x", {"1"});
    const std::string x_offset = last_element(engine->last());
    CHECK(x_offset != auth_offset);
    CHECK(engine->last() == R"(42["x",1,")" + x_offset + R"("])");
    engine->text(R"(21["message-with-ack",5])");
    CHECK(engine->last() == "431[5]");
    socket.emit_with_ack(
        "ask", {"2"}, {}, [](AckStatus, const RawArgs&, const Attachments&) {},
        std::chrono::milliseconds(1000));
    CHECK(engine->last() == R"(420["ask",2])");
    // A binary event: the offset after the placeholders, as socket.io appends it to the data.
    socket.emit("bin", {R"({"_placeholder":true,"num":0})"}, {std::string("\x01\x02")});
    auto messages = engine->messages();
    const std::string& header = messages[messages.size() - 2];
    const std::string bin_offset = last_element(header);
    CHECK(header == R"(451-["bin",{"_placeholder":true,"num":0},")" + bin_offset + R"("])");
    CHECK(messages.back() == "bAQI=");
    // The same packet for every recipient: encoded once, one offset.
    auto other = f.connect_with("o", "");
    f.server.of("/").emit_all("y", {});
    CHECK(engine->last() == other->last());
    CHECK(f.server.recorded_packet_count() == 5);  // auth x2, x, bin, y
  }

  TEST_CASE(
      "a transport close keeps the socket; its CONNECT gets back id, pid, rooms and the "
      "missed packets, in order, before the reply and the connection handler") {
    RecoveryFixture f;
    std::vector<std::string> connections;
    f.server.of("/").on_connection([&](Socket& socket) {
      connections.push_back(socket.id() + (socket.recovered() ? " recovered" : " new"));
    });
    Json saved_data;
    RecoveryHooks hooks;
    hooks.save = [](Socket&) { return Json{{"user", "u1"}}; };
    hooks.allow = [&](Socket& socket, const KeptSession& session) {
      saved_data = session.app_data;
      return socket.auth().at("token") == "t";
    };
    f.server.of("/").set_recovery_hooks(hooks);

    auto engine = f.connect_with("e1", "");
    auto bystander = f.connect_with("e2", "");
    Socket& socket = f.socket_of(*engine);
    const std::string sid = socket.id();
    const std::string pid(socket.pid());
    socket.join("room1");
    socket.join("room2");
    auto& nsp = f.server.of("/");
    nsp.emit_all("seen", {"0"});
    const std::string seen = last_element(engine->last());
    engine->end("transport close");
    CHECK(f.server.kept_session_count() == 1);
    CHECK(f.server.recovery_counts().kept == 1);

    nsp.emit_to({"room1"}, {}, "to-room1", {"1"});
    nsp.emit_to({"room9"}, {}, "to-room9", {"2"});
    nsp.emit_all("to-all", {"3"});
    nsp.emit_all("all-but", {"4"}, {}, sid);
    nsp.emit_to({sid}, {}, "direct", {"5"});
    nsp.send_to({"room2"}, nsp.encode_event("room2-except-room1", {"6"}), {}, {"room1"});
    f.socket_of(*bystander).emit("bystander-only", {"7"});

    auto back = f.connect_with("e3", recovery_auth(pid, seen));
    auto messages = back->messages();
    REQUIRE(messages.size() == 4);
    CHECK(messages[0].rfind(R"(42["to-room1",1,)", 0) == 0);
    CHECK(messages[1].rfind(R"(42["to-all",3,)", 0) == 0);
    CHECK(messages[2].rfind(R"(42["direct",5,)", 0) == 0);
    const Json reply = Json::parse(messages[3].substr(2));
    CHECK(reply.at("sid") == sid);
    CHECK(reply.at("pid") == pid);
    CHECK(connections.back() == sid + " recovered");
    Socket& restored = f.socket_of(*back);
    CHECK(restored.recovered());
    CHECK(restored.connected());
    CHECK(restored.rooms() == std::vector<std::string>{"room1", "room2"});
    CHECK(saved_data == Json{{"user", "u1"}});
    CHECK(nsp.room_size("room1") == 1);
    const RecoveryCounts counts = f.server.recovery_counts();
    CHECK(counts.recovered == 1);
    CHECK(counts.replayed == 3);
    CHECK(f.server.kept_session_count() == 0);
    // The restored socket receives as before, under the same offsets sequence.
    nsp.emit_to({"room2"}, {}, "after", {});
    CHECK(back->last().rfind(R"(42["after",)", 0) == 0);

    // The pid restores once: presenting it again connects anew.
    auto again = f.connect_with("e4", recovery_auth(pid, seen));
    CHECK(connect_reply(*again).at("sid") != sid);
    CHECK_FALSE(f.socket_of(*again).recovered());
    CHECK(f.server.recovery_counts().unknown == 1);
  }

  TEST_CASE(
      "recoverable reasons are socket.io's; the client's and the server's disconnects are "
      "not kept") {
    for (const char* reason : {"transport error", "transport close", "forced close", "ping timeout",
                               "server shutting down", "forced server close"}) {
      RecoveryFixture f;
      auto engine = f.connect_with("e", "");
      engine->end(reason);
      CHECK_MESSAGE(f.server.kept_session_count() == 1, reason);
    }
    for (const char* reason : {"parse error", "slow consumer"}) {
      RecoveryFixture f;
      auto engine = f.connect_with("e", "");
      engine->end(reason);
      CHECK_MESSAGE(f.server.kept_session_count() == 0, reason);
    }
    RecoveryFixture f;
    auto client = f.connect_with("c", "");
    client->text("1");  // the client's socket.disconnect()
    client->end("transport close");
    CHECK(f.server.kept_session_count() == 0);
    auto server_side = f.connect_with("s", "");
    f.socket_of(*server_side).disconnect();
    server_side->end("transport close");
    CHECK(f.server.kept_session_count() == 0);
    auto closed = f.connect_with("t", "");
    f.socket_of(*closed).disconnect(true);  // DISCONNECT, then "forced server close"
    CHECK(closed->closed);
    f.io.poll();
    CHECK(f.server.kept_session_count() == 0);
    CHECK(f.server.recovery_counts().kept == 0);
  }

  TEST_CASE(
      "no restore when the connect hook rejects, allow refuses, the session was dropped or "
      "belongs to another namespace") {
    RecoveryFixture f;
    f.server.of("/").set_connect_hook([](Socket& socket, const Json& auth, auto decide) {
      if (auth.value("token", "") == "bad") {
        decide(ConnectResult::reject("unauthorized"));
      } else {
        decide(ConnectResult::accept());
      }
      (void)socket;
    });
    RecoveryHooks hooks;
    hooks.allow = [](Socket& socket, const KeptSession&) {
      return socket.auth().value("token", "") != "other-user";
    };
    f.server.of("/").set_recovery_hooks(hooks);
    f.server.of("/custom");

    auto keep_one = [&](const std::string& id) {
      auto engine = f.connect_with(id, "");
      Socket& socket = f.socket_of(*engine);
      std::pair<std::string, std::string> claim{std::string(socket.pid()), ""};
      f.server.of("/").emit_all("seen", {});
      claim.second = last_element(engine->last());
      engine->end("transport error");
      return claim;
    };
    auto auth_with = [](const std::string& token, const std::pair<std::string, std::string>& c) {
      return dump_json(Json{{"token", token}, {"pid", c.first}, {"offset", c.second}});
    };

    // Rejected by the connect hook: no socket, and the session stays for a valid attempt.
    auto claim = keep_one("a");
    auto rejected = f.connect_with("a2", auth_with("bad", claim));
    CHECK(rejected->last().rfind("44{", 0) == 0);
    CHECK(f.server.kept_session_count() == 1);
    auto ok = f.connect_with("a3", auth_with("good", claim));
    CHECK(f.socket_of(*ok).recovered());

    // Refused by the application: a new socket, counted.
    claim = keep_one("b");
    auto refused = f.connect_with("b2", auth_with("other-user", claim));
    CHECK_FALSE(f.socket_of(*refused).recovered());
    CHECK(connect_reply(*refused).at("pid") != claim.first);
    CHECK(f.server.recovery_counts().refused == 1);

    // Dropped by the application while away (a logout).
    claim = keep_one("c");
    std::vector<size_t> drops;
    const auto count_drop = [&](size_t n) { drops.push_back(n); };
    f.server.of("/custom").drop_kept_sessions([](const KeptSession&) { return true; }, count_drop);
    f.server.of("/").drop_kept_sessions([&](const KeptSession& s) { return s.pid == claim.first; },
                                        count_drop);
    CHECK(drops == std::vector<size_t>{0, 1});
    auto dropped = f.connect_with("c2", auth_with("good", claim));
    CHECK_FALSE(f.socket_of(*dropped).recovered());
    CHECK(f.server.recovery_counts().dropped == 1);

    // A pid of "/" presented to "/custom".
    claim = keep_one("d");
    auto other_nsp = std::make_unique<FakeEngineSocket>(f.server, "d2");
    other_nsp->open();
    other_nsp->text("0/custom," + auth_with("good", claim));
    CHECK(other_nsp->last().rfind("40/custom,{", 0) == 0);
    CHECK(f.server.recovery_counts().refused == 2);  // the session was not of "/custom"
    CHECK(f.server.recovery_counts().recovered == 1);
  }

  TEST_CASE(
      "a cluster store: told of connects, room changes and plain disconnects; a restore it "
      "answers later keeps the socket connecting, with its application data") {
    // The memory store's behaviour, answered on a later loop turn, and every report recorded.
    struct LaterStore : MemoryRecoveryStore {
      LaterStore(asio::io_context& io, std::vector<std::string>& log)
          : MemoryRecoveryStore(RecoveryOptions{true, 60000, 100, 100}), io(io), log(log) {}
      void take(const std::string& pid, const std::string& offset,
                std::function<void(std::optional<RestoredSession>)> done) override {
        MemoryRecoveryStore::take(pid, offset, [this, done](std::optional<RestoredSession> r) {
          asio::post(io, [done, r = std::move(r)]() mutable { done(std::move(r)); });
        });
      }
      bool tracks_connected() const override { return true; }
      void connected(const KeptSession& s) override {
        log.push_back("connected " + s.sid + " " + std::to_string(s.rooms.size()));
      }
      void rooms_changed(const std::string&, const std::vector<std::string>& rooms) override {
        log.push_back("rooms " + std::to_string(rooms.size()));
      }
      void forgotten(const std::string&) override { log.push_back("forgotten"); }
      asio::io_context& io;
      std::vector<std::string>& log;
    };
    struct Marker : SocketData {
      explicit Marker(int& alive) : alive(alive) { ++alive; }
      ~Marker() override { --alive; }
      int& alive;
    };
    asio::io_context io;
    SocketIoOptions options;
    options.recovery.enabled = true;
    std::vector<std::string> log;
    SocketIoServer server(io, options, std::make_unique<LaterStore>(io, log));
    int markers = 0;
    server.of("/").set_connect_hook([&](Socket& socket, const Json&, auto decide) {
      socket.data() = std::make_unique<Marker>(markers);
      decide(ConnectResult::accept());
    });
    FakeEngineSocket engine(server, "e");
    engine.open();
    engine.text("0");
    const Json reply = Json::parse(engine.messages()[0].substr(2));
    const std::string sid = reply.at("sid").get<std::string>();
    Socket* socket = server.of("/").find(sid);
    REQUIRE(socket != nullptr);
    socket->join("r1");
    socket->join("r1");  // no change, no report
    socket->join("r2");
    socket->leave("r2");
    CHECK(log ==
          std::vector<std::string>{"connected " + sid + " 0", "rooms 1", "rooms 2", "rooms 1"});
    server.of("/").emit_all("x", {"1"});
    const std::string seen = last_element(engine.last());
    engine.end("transport close");  // kept: no "forgotten"
    CHECK(markers == 0);

    FakeEngineSocket back(server, "e2");
    back.open();
    back.text("0" + recovery_auth(reply.at("pid").get<std::string>(), seen));
    // Accepted by the hook, waiting for the store: still connecting, its data kept.
    CHECK(back.messages().empty());
    CHECK(markers == 1);
    io.poll();
    const Json restored = Json::parse(back.messages().back().substr(2));
    CHECK(restored.at("sid") == sid);
    Socket* again = server.of("/").find(sid);
    REQUIRE(again != nullptr);
    CHECK(again->recovered());
    CHECK_FALSE(again->restoring());
    CHECK(markers == 1);
    CHECK(log.back() == "connected " + sid + " 1");
    again->disconnect();  // a server disconnect: not kept, so the store forgets it
    CHECK(log.back() == "forgotten");

    // A socket still waiting for the store when the application goes: its data freed with
    // release_socket_data, and the late answer connects nothing.
    FakeEngineSocket third(server, "e3");
    third.open();
    third.text("0" + recovery_auth("unknown-pid", "x"));
    CHECK(markers == 1);
    server.release_socket_data();
    CHECK(markers == 0);

    // A restore whose connection closes before the store answers: the session is kept again,
    // and its client restores it on its next try.
    FakeEngineSocket fourth(server, "e4");
    fourth.open();
    fourth.text("0");
    const Json fourth_reply = Json::parse(fourth.messages()[0].substr(2));
    server.of("/").emit_all("y", {"2"});
    const std::string fourth_seen = last_element(fourth.last());
    fourth.end("transport close");
    const size_t kept = server.kept_session_count();
    const std::string claim = recovery_auth(fourth_reply.at("pid").get<std::string>(), fourth_seen);
    FakeEngineSocket gone(server, "e5");
    gone.open();
    gone.text("0" + claim);
    CHECK(server.kept_session_count() == kept - 1);  // taken
    gone.end("transport close");
    io.poll();
    CHECK(server.kept_session_count() == kept);  // given back
    FakeEngineSocket last(server, "e6");
    last.open();
    last.text("0" + claim);
    io.poll();
    CHECK(Json::parse(last.messages().back().substr(2)).at("sid") == fourth_reply.at("sid"));
  }

  TEST_CASE("the sweep expires kept sessions and calls the expired hook; a shutdown stops it") {
    asio::io_context io;
    SocketIoOptions options;
    options.recovery.enabled = true;
    options.recovery.max_disconnection_duration_ms = 1;
    SocketIoServer server(io, options);
    std::vector<std::string> expired;
    RecoveryHooks hooks;
    hooks.expired = [&](const KeptSession& session) { expired.push_back(session.sid); };
    server.of("/").set_recovery_hooks(hooks);
    FakeEngineSocket engine(server, "e");
    engine.open();
    engine.text("0");
    const std::string sid = sid_of(engine.messages()[0]);
    engine.end("ping timeout");
    REQUIRE(server.kept_session_count() == 1);
    // The sweep timer is the only pending work: run() returns once it has emptied the store.
    io.run_for(std::chrono::seconds(5));
    CHECK(expired == std::vector<std::string>{sid});
    CHECK(server.kept_session_count() == 0);
    CHECK(server.recovery_counts().expired == 1);
    CHECK(io.stopped());

    // A server shutting down keeps its sockets (for a cluster store) without arming the sweep.
    io.restart();
    FakeEngineSocket second(server, "e2");
    second.open();
    second.text("0");
    second.end("server shutting down");
    CHECK(server.kept_session_count() == 1);
    const auto started = std::chrono::steady_clock::now();
    io.run_for(std::chrono::seconds(3));
    CHECK(io.stopped());
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(1));
    CHECK(server.kept_session_count() == 1);  // no sweep ran (it would have expired it)
  }
}
