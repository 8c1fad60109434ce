// The `socket` service (services/socket_service.hpp) against a fake ClientHub and real brokers on
// the in-memory bus: authentication on connect, subscribe / unsubscribe, the seven event
// patterns of §5, logout, the operator actions of §6 and the fan-out between gateway nodes (§7).
// The Socket.IO wire itself is covered by tests/unit/gateway and tests/interop.
#include "services/socket_service.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "services/client_hub.hpp"
#include "services/node_metrics.hpp"
#include "tests/unit/support/memory_nodes.hpp"
#include "transport/memory_transporter.hpp"

using namespace steedos;
using namespace steedos::services;
using testing::make_broker;
using testing::run_for;
using testing::run_until;
using testing::start_broker;
using transport::MemoryBus;
using transport::MemoryTransporter;

namespace {

// ---------------------------------------------------------------- the fake hub

class FakeClient final : public Client {
 public:
  FakeClient(std::string id, std::map<std::string, std::string> headers, ClientTransport transport)
      : id_(std::move(id)), headers_(std::move(headers)), transport_(transport) {}

  const std::string& id() const override { return id_; }
  ClientTransport transport() const override { return transport_; }
  std::optional<std::string_view> header(std::string_view name) const override {
    auto it = headers_.find(std::string(name));
    if (it == headers_.end()) return std::nullopt;
    return std::string_view(it->second);
  }
  ClientSession* session() const override { return session_.get(); }
  void set_session(std::unique_ptr<ClientSession> session) override {
    session_ = std::move(session);
  }
  std::vector<std::string> rooms() const override { return {rooms_.begin(), rooms_.end()}; }
  bool in_room(const std::string& room) const override { return rooms_.count(room) > 0; }
  void join(const std::string& room) override { rooms_.insert(room); }
  void leave(const std::string& room) override { rooms_.erase(room); }
  void emit(std::string_view event, const std::vector<std::string_view>& args_json) override {
    std::vector<std::string> args(args_json.begin(), args_json.end());
    received.emplace_back(std::string(event), std::move(args));
  }

  /// Everything sent to this client: emits and deliveries, as (event, args).
  std::vector<std::pair<std::string, std::vector<std::string>>> received;

 private:
  std::string id_;
  std::map<std::string, std::string> headers_;
  ClientTransport transport_;
  std::unique_ptr<ClientSession> session_;
  std::set<std::string> rooms_;
};

class FakeHub final : public ClientHub {
 public:
  struct Delivery {
    std::string event;
    std::string arg;
    std::optional<std::vector<std::string>> rooms;  // nullopt: to all
    size_t recipients;
  };

  void set_handlers(ClientHandlers handlers) override { handlers_ = std::move(handlers); }

  size_t deliver_to(const std::vector<std::string>& rooms, std::string_view event,
                    std::string_view arg_json) override {
    size_t n = 0;
    for (auto& entry : connected_) {
      // Not a structured binding: C++17 lambdas may not capture one (clang refuses it).
      const auto& id = entry.first;
      auto& client = entry.second;
      bool member = std::any_of(rooms.begin(), rooms.end(), [&](const std::string& room) {
        return room == id || client->in_room(room);
      });
      if (member) {
        client->received.push_back({std::string(event), {std::string(arg_json)}});
        n++;
      }
    }
    deliveries.push_back({std::string(event), std::string(arg_json), rooms, n});
    return n;
  }
  size_t deliver_all(std::string_view event, std::string_view arg_json) override {
    for (auto& [id, client] : connected_) {
      client->received.push_back({std::string(event), {std::string(arg_json)}});
    }
    deliveries.push_back(
        {std::string(event), std::string(arg_json), std::nullopt, connected_.size()});
    return connected_.size();
  }
  void for_each_client(const std::function<void(Client&)>& fn) override {
    for (auto& [id, client] : connected_) fn(*client);
  }
  void disconnect(const std::vector<std::string>& ids) override {
    for (const auto& id : ids) {
      auto it = connected_.find(id);
      if (it == connected_.end()) continue;
      server_disconnected.push_back(id);
      auto client = std::move(it->second);
      connected_.erase(it);
      handlers_.disconnected(*client, "server namespace disconnect");
    }
  }
  size_t room_count() const override {
    std::set<std::string> rooms;
    for (const auto& [id, client] : connected_) {
      for (auto& room : client->rooms()) rooms.insert(room);
    }
    return rooms.size();
  }

  // ---- driving the service as the gateway would

  /// Starts a CONNECT; the decision may come later (after the auth call).
  void connect(const std::string& id, std::map<std::string, std::string> headers = {},
               const Json& auth = Json::object(),
               ClientTransport transport = ClientTransport::WebSocket) {
    auto client = std::make_unique<FakeClient>(id, std::move(headers), transport);
    FakeClient& ref = *client;
    connecting_[id] = std::move(client);
    handlers_.connect(ref, auth, [this, id](ConnectDecision decision) {
      // A client gone before its decision: the decision (and its session) is dropped.
      if (abandoned_.erase(id) > 0) return;
      auto it = connecting_.find(id);
      REQUIRE(it != connecting_.end());  // decided once
      auto client = std::move(it->second);
      connecting_.erase(it);
      if (!decision.accept) {
        closed.push_back(id);
        return;
      }
      REQUIRE(decision.session != nullptr);  // an accepted client always has a session
      client->set_session(std::move(decision.session));
      FakeClient& ref = *client;
      connected_[id] = std::move(client);
      handlers_.connected(ref);
    });
  }
  bool decided(const std::string& id) const { return connecting_.count(id) == 0; }
  /// A connecting client goes away before its decision came.
  void abandon(const std::string& id) {
    REQUIRE(connecting_.erase(id) == 1);
    abandoned_.insert(id);
  }
  bool abandoned(const std::string& id) const { return abandoned_.count(id) > 0; }
  FakeClient* find(const std::string& id) {
    auto it = connected_.find(id);
    return it == connected_.end() ? nullptr : it->second.get();
  }
  /// A client event; returns the ack reply (nullopt when none was sent).
  std::optional<Json> send(const std::string& id, const std::string& event, const Json& arg,
                           bool with_ack = true) {
    FakeClient* client = find(id);
    REQUIRE(client != nullptr);
    std::optional<Json> answer;
    Reply reply;
    if (with_ack) reply = [&answer](const std::string& text) { answer = Json::parse(text); };
    std::string text = dump_json(arg);
    handlers_.events.at(event)(*client, {text}, reply);
    return answer;
  }
  /// The client goes away by itself.
  void leave(const std::string& id) {
    auto it = connected_.find(id);
    REQUIRE(it != connected_.end());
    auto client = std::move(it->second);
    connected_.erase(it);
    handlers_.disconnected(*client, "client namespace disconnect");
  }
  // ---- connection state recovery, as the gateway drives it

  void set_recovery_handlers(RecoveryHandlers handlers) override {
    recovery_ = std::move(handlers);
  }
  void drop_kept(const std::function<bool(const KeptClient&)>& match,
                 std::function<void(size_t)> done) override {
    size_t dropped = 0;
    for (auto it = kept_.begin(); it != kept_.end();) {
      if (match(KeptClient{it->first, it->second})) {
        it = kept_.erase(it);
        dropped++;
      } else {
        ++it;
      }
    }
    done(dropped);
  }
  /// The client's transport drops: a recoverable disconnect. The service's part is saved
  /// before the disconnect handler, as the gateway does.
  void drop(const std::string& id) {
    auto it = connected_.find(id);
    REQUIRE(it != connected_.end());
    auto client = std::move(it->second);
    connected_.erase(it);
    REQUIRE(recovery_.save);
    kept_[id] = recovery_.save(*client);
    handlers_.disconnected(*client, "transport close");
  }
  bool kept(const std::string& id) const { return kept_.count(id) > 0; }
  const Json& saved(const std::string& id) const { return kept_.at(id); }
  /// Whether the service lets the connected client `fresh` (authenticated anew) restore the
  /// kept client `id`.
  bool allows(const std::string& id, const std::string& fresh) {
    FakeClient* client = find(fresh);
    REQUIRE(client != nullptr);
    return recovery_.allow(*client, KeptClient{id, kept_.at(id)});
  }
  void expire(const std::string& id) {
    recovery_.expired(KeptClient{id, kept_.at(id)});
    kept_.erase(id);
  }
  bool recovery_installed() const { return static_cast<bool>(recovery_.save); }

  size_t count_of(const std::string& event) const {
    return std::count_if(deliveries.begin(), deliveries.end(),
                         [&](const Delivery& d) { return d.event == event; });
  }

  std::vector<Delivery> deliveries;
  std::vector<std::string> closed;               // connects closed without a reply
  std::vector<std::string> server_disconnected;  // ids, in order

 private:
  ClientHandlers handlers_;
  RecoveryHandlers recovery_;
  std::map<std::string, Json> kept_;
  std::map<std::string, std::unique_ptr<FakeClient>> connecting_;
  std::map<std::string, std::unique_ptr<FakeClient>> connected_;
  std::set<std::string> abandoned_;  // left while connecting, decision not yet come
};

// ---------------------------------------------------------------- brokers on the memory bus

void start(asio::io_context& loop, Broker& broker) {
  REQUIRE(start_broker(loop, broker));
}

Outcome call(asio::io_context& loop, Broker& broker, const std::string& action,
             const Json& params = Json::object()) {
  std::optional<Outcome> result;
  broker.call(action, params, CallOptions{}, [&](Outcome o) { result = std::move(o); });
  REQUIRE(run_until(loop, [&] { return result.has_value(); }));
  return *result;
}

// The auth action: `S1,T1` is U1 and `S1,T2` is U2 in space S1, `S1,boom` fails, anything
// else is unknown (null reply). Counts calls per authorization.
ServiceSchema fake_auth(std::map<std::string, int>* calls) {
  ServiceSchema s;
  s.name = "auth";
  ActionSchema session;
  session.raw_name = "session";
  session.handler = [calls](ContextPtr ctx, Respond respond) {
    std::string authorization = ctx->params.value("authorization", "");
    (*calls)[authorization]++;
    if (authorization == "S1,T1") {
      respond(Outcome::success(Json{{"userId", "U1"}, {"spaceId", "S1"}, {"name", "Ann"}}));
    } else if (authorization == "S1,T2") {
      respond(Outcome::success(Json{{"userId", "U2"}, {"spaceId", "S1"}}));
    } else if (authorization == "S1,boom") {
      respond(Outcome::failure(protocol::errors::server_error("database down")));
    } else if (authorization == "S1,hang") {
      // Never answers: the caller's timeout decides.
    } else {
      respond(Outcome::success(nullptr));
    }
  };
  s.actions.push_back(session);
  return s;
}

// Records the `$socket.subscribe.*` events a subscribe emits.
ServiceSchema subscribe_listener(std::vector<std::pair<std::string, Json>>* seen) {
  ServiceSchema s;
  s.name = "listener";
  s.events.push_back(EventSchema{"$socket.subscribe.*", "", [seen](ContextPtr ctx) {
                                   seen->emplace_back(ctx->name, ctx->params);
                                 }});
  return s;
}

Config test_config() {
  Config config;
  config.auth.action = "auth.session";
  return config;
}

std::map<std::string, std::string> cookie(const std::string& space, const std::string& token) {
  return {{"cookie", "X-Space-Id=" + space + "; X-Auth-Token=" + token}};
}

// One gateway node with the auth service and a listener beside it.
struct Fixture {
  asio::io_context loop;
  MemoryBus bus{loop};
  Config config = test_config();
  std::unique_ptr<Broker> broker = make_broker(bus, "gw");
  FakeHub hub;
  std::map<std::string, int> auth_calls;
  std::vector<std::pair<std::string, Json>> subscribe_events;
  std::unique_ptr<SocketService> service;

  explicit Fixture(Config with = test_config()) : config(std::move(with)) {
    service = std::make_unique<SocketService>(*broker, hub, config);
    broker->add_service(service->schema());
    broker->add_service(fake_auth(&auth_calls));
    broker->add_service(subscribe_listener(&subscribe_events));
    start(loop, *broker);
  }

  /// Connects and waits for the decision; true when accepted.
  bool connect(const std::string& id, std::map<std::string, std::string> headers = {},
               const Json& auth = Json::object()) {
    hub.connect(id, std::move(headers), auth);
    REQUIRE(run_until(loop, [&] { return hub.decided(id); }));
    return hub.find(id) != nullptr;
  }
  /// U1 (token T1) and U2 (token T2) of S1, and an anonymous client of S1.
  void connect_three() {
    REQUIRE(connect("u1", cookie("S1", "T1")));
    REQUIRE(connect("u2", cookie("S1", "T2")));
    REQUIRE(connect("anon", {{"cookie", "X-Space-Id=S1"}}));
  }
  Outcome call(const std::string& action, const Json& params = Json::object()) {
    return ::call(loop, *broker, action, params);
  }
  Json stats() { return call("socket.stats").data; }
  /// Emits a Moleculer event from the node and lets it be handled.
  void emit(const std::string& event, const Json& payload) {
    auto before = stats()["events"]["in"].get<uint64_t>();
    broker->emit(event, payload);
    REQUIRE(run_until(loop, [&] { return stats()["events"]["in"].get<uint64_t>() == before + 1; }));
  }
  const FakeHub::Delivery& last_delivery() {
    REQUIRE_FALSE(hub.deliveries.empty());
    return hub.deliveries.back();
  }
};

std::vector<std::string> event_names(const FakeClient& client) {
  std::vector<std::string> names;
  for (const auto& [event, args] : client.received) names.push_back(event);
  return names;
}

}  // namespace

TEST_SUITE("socket service") {
  // ============================================================ connect (§2)

  TEST_CASE("an anonymous connect is accepted without an auth call and gets connection-init") {
    Fixture f;
    REQUIRE(f.connect("a1"));
    CHECK(f.auth_calls.empty());
    const FakeClient& client = *f.hub.find("a1");
    REQUIRE(client.received.size() == 1);
    CHECK(client.received[0].first == "connection-init");
    CHECK(client.received[0].second.empty());
    Json stats = f.stats();
    CHECK(stats["connections"]["total"] == 1);
    CHECK(stats["connections"]["anonymous"] == 1);
    CHECK(stats["auth"]["calls"] == 0);
  }

  TEST_CASE("a cookie connect calls the auth action once, then the cache answers") {
    Fixture f;
    REQUIRE(f.connect("c1", cookie("S1", "T1")));
    CHECK(f.auth_calls == std::map<std::string, int>{{"S1,T1", 1}});
    CHECK(event_names(*f.hub.find("c1")) == std::vector<std::string>{"connection-init"});
    REQUIRE(f.connect("c2", cookie("S1", "T1")));
    CHECK(f.auth_calls == std::map<std::string, int>{{"S1,T1", 1}});
    // The CONNECT payload and the Bearer header are credentials too.
    REQUIRE(f.connect("c3", {}, Json{{"spaceId", "S1"}, {"token", "T2"}}));
    REQUIRE(f.connect("c4", {{"authorization", "Bearer S1,T2"}}));
    CHECK(f.auth_calls == std::map<std::string, int>{{"S1,T1", 1}, {"S1,T2", 1}});
    Json stats = f.stats();
    CHECK(stats["connections"]["authenticated"] == 4);
    CHECK(stats["auth"] == Json{{"calls", 2}, {"failures", 0}});
    Json clients = f.call("socket.clients", Json{{"userId", "U1"}}).data;
    REQUIRE(clients.size() == 2);
    CHECK(clients[0]["tenantId"] == "S1");
    CHECK(clients[0]["anonymous"] == false);
  }

  TEST_CASE("an unknown token is anonymous in the cookie's space") {
    Fixture f;
    REQUIRE(f.connect("x", cookie("S1", "nobody")));
    CHECK(f.auth_calls["S1,nobody"] == 1);
    Json clients = f.call("socket.clients").data;
    REQUIRE(clients.size() == 1);
    CHECK(clients[0]["anonymous"] == true);
    CHECK(clients[0]["userId"].is_null());
    CHECK(clients[0]["tenantId"] == "S1");
  }

  TEST_CASE("an auth failure closes the transport (fail closed) and is not cached") {
    Fixture f;
    CHECK_FALSE(f.connect("b1", cookie("S1", "boom")));
    CHECK(f.hub.closed == std::vector<std::string>{"b1"});
    CHECK_FALSE(f.connect("b2", cookie("S1", "boom")));
    CHECK(f.auth_calls["S1,boom"] == 2);
    Json stats = f.stats();
    CHECK(stats["connections"]["total"] == 0);
    CHECK(stats["auth"] == Json{{"calls", 2}, {"failures", 2}});
  }

  // ============================================================ rooms (§3)

  TEST_CASE("subscribe and unsubscribe join and leave the tenant's rooms and answer the ack") {
    Fixture f;
    f.connect_three();
    auto reply = f.hub.send("u1", "subscribe", Json{{"roomParts", "orders"}});
    CHECK(reply == Json{{"rooms", {"S1-orders"}}});
    CHECK(f.hub.find("u1")->in_room("S1-orders"));
    reply = f.hub.send("u1", "subscribe",
                       Json{{"roomParts", {"notification-change", "me"}}, {"individual", true}});
    CHECK(reply == Json{{"rooms", {"S1-notification-change-U1", "S1-me-U1"}}});
    CHECK(f.hub.find("u1")->rooms() ==
          std::vector<std::string>{"S1-me-U1", "S1-notification-change-U1", "S1-orders"});
    // The string form of a subscribe is announced on the bus.
    REQUIRE(run_until(f.loop, [&] { return !f.subscribe_events.empty(); }));
    CHECK(f.subscribe_events[0].first == "$socket.subscribe.orders");
    CHECK(f.subscribe_events[0].second ==
          Json{{"roomParts", "orders"}, {"individual", false}, {"space", "S1"}});

    reply = f.hub.send("u1", "unsubscribe", Json{{"roomParts", "orders"}});
    CHECK(reply == Json{{"rooms", {"S1-orders"}}});
    CHECK_FALSE(f.hub.find("u1")->in_room("S1-orders"));
    CHECK(f.stats()["refused"] == 0);
    CHECK(f.stats()["rooms"] == 2);
  }

  TEST_CASE("subscribes that break isolation are refused, answered and counted") {
    Fixture f;
    f.connect_three();
    // Another user's personal room, named as a shared one.
    auto reply = f.hub.send("u1", "subscribe", Json{{"roomParts", "notification-change-U2"}});
    CHECK(reply == Json{{"error", "'notification-change-U2' is a personal room: use individual"}});
    // Anonymous sockets have no tenant rooms (gateway.anonymousRooms false).
    reply = f.hub.send("anon", "subscribe", Json{{"roomParts", "orders"}});
    CHECK(reply == Json{{"error", "anonymous sockets cannot join tenant rooms"}});
    reply = f.hub.send("u1", "unsubscribe", Json{{"roomParts", 42}});
    CHECK(reply == Json{{"error", "roomParts must be a string or an array of strings"}});
    // Without an ack id the refusal is still counted.
    CHECK_FALSE(f.hub.send("anon", "subscribe", Json{{"roomParts", "x"}}, false).has_value());
    CHECK(f.hub.find("u1")->rooms().empty());
    CHECK(f.hub.find("anon")->rooms().empty());
    CHECK(f.stats()["refused"] == 4);
    run_for(f.loop, 20);
    CHECK(f.subscribe_events.empty());
  }

  TEST_CASE("ping is answered with pong and the server time") {
    Fixture f;
    REQUIRE(f.connect("a"));
    CHECK_FALSE(f.hub.send("a", "ping", nullptr, false).has_value());
    const FakeClient& client = *f.hub.find("a");
    REQUIRE(client.received.size() == 2);
    CHECK(client.received[1].first == "pong");
    REQUIRE(client.received[1].second.size() == 1);
    CHECK(Json::parse(client.received[1].second[0]).get<std::string>().size() == 24);
  }

  // ============================================================ the seven patterns (§5)

  TEST_CASE("$metadata.<type> goes to every client as s:metadata:change") {
    Fixture f;
    f.connect_three();
    f.emit("$metadata.objects", Json{{"type", "objects"},
                                     {"action", "update"},
                                     {"data", {{"_id", "o1"}, {"name", "acc"}}}});
    const auto& d = f.last_delivery();
    CHECK(d.event == "s:metadata:change");
    CHECK(d.arg == R"({"type":"objects","action":"update","_id":"o1","name":"acc"})");
    CHECK_FALSE(d.rooms.has_value());
    CHECK(d.recipients == 3);
    // A type outside metadataTypes is ignored, not rejected.
    f.emit("$metadata.users", Json{{"type", "users"}, {"data", Json::object()}});
    CHECK(f.hub.deliveries.size() == 1);
    CHECK(f.stats()["rejected"] == 0);
    f.emit("$metadata.objects", Json{{"type", "objects"}, {"data", 1}});
    CHECK(f.hub.deliveries.size() == 1);
    CHECK(f.stats()["rejected"] == 1);
    CHECK(f.stats()["events"] == Json{{"in", 3}, {"out", 3}});
  }

  TEST_CASE("$broadcast.$notification.users goes to each user's notification room") {
    Fixture f;
    f.connect_three();
    f.hub.send("u1", "subscribe", Json{{"roomParts", "notification-change"}, {"individual", true}});
    f.hub.send("u2", "subscribe", Json{{"roomParts", "notification-change"}, {"individual", true}});
    f.emit("$broadcast.$notification.users",
           Json{{"data", {{"tenantId", "S1"}, {"users", {"U1", "U3"}}, {"message", "hi"}}}});
    const auto& d = f.last_delivery();
    CHECK(d.event == "s:notification-change");
    CHECK(d.arg == R"({"message":"hi"})");
    CHECK(d.rooms ==
          std::vector<std::string>{"S1-notification-change-U1", "S1-notification-change-U3"});
    CHECK(d.recipients == 1);
    CHECK(event_names(*f.hub.find("u1")).back() == "s:notification-change");
    CHECK(event_names(*f.hub.find("u2")).back() == "connection-init");
    f.emit("$broadcast.$notification.users", Json{{"data", {{"users", {"U1"}}}}});
    CHECK(f.hub.deliveries.size() == 1);
    CHECK(f.stats()["rejected"] == 1);
  }

  TEST_CASE("$broadcast.socket.emit reads the nested payload, $socket.emit the flat one") {
    Fixture f;
    f.connect_three();
    f.hub.send("u1", "subscribe", Json{{"roomParts", "orders"}});
    f.emit(
        "$broadcast.socket.emit",
        Json{{"data", {{"eventName", "e1"}, {"eventParams", {{"a", 1}}}, {"room", "S1-orders"}}}});
    auto d = f.last_delivery();
    CHECK(d.event == "e1");
    CHECK(d.arg == R"({"a":1})");
    CHECK(d.rooms == std::vector<std::string>{"S1-orders"});
    CHECK(d.recipients == 1);

    f.emit("$socket.emit", Json{{"eventName", "e2"}, {"eventParams", {1, 2}}});
    d = f.last_delivery();
    CHECK(d.event == "e2");
    CHECK(d.arg == "[1,2]");
    CHECK_FALSE(d.rooms.has_value());
    CHECK(d.recipients == 3);

    // Each pattern has its own shape: the other one's payload is rejected.
    f.emit("$socket.emit", Json{{"data", {{"eventName", "e3"}, {"eventParams", 1}}}});
    f.emit("$broadcast.socket.emit", Json{{"eventName", "e4"}, {"eventParams", 1}});
    // Reserved names never reach clients.
    f.emit("$socket.emit", Json{{"eventName", "disconnect"}, {"eventParams", 1}});
    CHECK(f.hub.deliveries.size() == 2);
    CHECK(f.stats()["rejected"] == 3);
  }

  TEST_CASE("@objectRecordEvent.<object>.<action> goes to the record's room of the space") {
    Fixture f;
    f.connect_three();
    f.hub.send("u2", "subscribe", Json{{"roomParts", "record:accounts:change-r1"}});
    f.emit("@objectRecordEvent.accounts.updated", Json{{"spaceId", "S1"}, {"id", "r1"}});
    const auto& d = f.last_delivery();
    CHECK(d.event == "s:record:accounts:change-r1");
    CHECK(d.arg == R"({"_id":"r1"})");
    CHECK(d.rooms == std::vector<std::string>{"S1-record:accounts:change-r1"});
    CHECK(d.recipients == 1);
    CHECK(event_names(*f.hub.find("u2")).back() == "s:record:accounts:change-r1");
    f.emit("@objectRecordEvent.accounts.updated", Json{{"id", "r1"}});  // no spaceId
    CHECK(f.hub.deliveries.size() == 1);
    CHECK(f.stats()["rejected"] == 1);
  }

  TEST_CASE("$user.logout and $broadcast.$user.logout disconnect exactly the token's clients") {
    Fixture f;
    f.connect_three();
    REQUIRE(f.connect("u1b", cookie("S1", "T1")));
    f.emit("$user.logout", Json{{"authToken", "T1"}});
    CHECK(f.hub.server_disconnected == std::vector<std::string>{"u1", "u1b"});
    CHECK(f.hub.find("u2") != nullptr);
    CHECK(f.hub.find("anon") != nullptr);
    // The cache entry went with it: the next connect with T1 asks the auth service again.
    REQUIRE(f.connect("u1c", cookie("S1", "T1")));
    CHECK(f.auth_calls["S1,T1"] == 2);

    f.emit("$broadcast.$user.logout", Json{{"data", {{"authToken", "T2"}}}});
    CHECK(f.hub.server_disconnected == std::vector<std::string>{"u1", "u1b", "u2"});
    // A client that left by itself is forgotten.
    f.hub.leave("u1c");
    f.emit("$user.logout", Json{{"authToken", "T1"}});
    CHECK(f.hub.server_disconnected.size() == 3);
    f.emit("$broadcast.$user.logout", Json{{"token", "T1"}});
    CHECK(f.stats()["rejected"] == 1);
    CHECK(f.hub.deliveries.empty());
  }

  TEST_CASE("a token used in two spaces, vouched for or not: a logout closes all its sockets") {
    Fixture f;
    REQUIRE(f.connect("s1", cookie("S1", "T1")));
    REQUIRE(f.connect("s2", cookie("S2", "T1")));  // unknown there: anonymous, with the token
    REQUIRE(f.connect("other", cookie("S2", "T2")));
    REQUIRE(f.connect("none", {{"cookie", "X-Space-Id=S1"}}));
    CHECK(f.call("socket.clients", Json{{"userId", "U1"}}).data.size() == 1);
    f.emit("$user.logout", Json{{"authToken", "T1"}});
    CHECK(f.hub.server_disconnected == std::vector<std::string>{"s1", "s2"});
    // Sockets without credentials are nobody's: a logout of an empty token closes none.
    f.emit("$user.logout", Json{{"authToken", ""}});
    CHECK(f.hub.server_disconnected.size() == 2);
    CHECK(f.hub.find("none") != nullptr);
    CHECK(f.hub.find("other") != nullptr);
  }

  TEST_CASE("a session lives as long as its client is connected; the ids go with the last") {
    Fixture f;
    const auto& sessions = f.service->sessions();
    REQUIRE(f.connect("tab1", cookie("S1", "T1")));
    REQUIRE(f.connect("tab2", cookie("S1", "T1")));
    REQUIRE(f.connect("u2", cookie("S1", "T2")));
    REQUIRE(f.connect("anon", {{"cookie", "X-Space-Id=S1"}}));
    CHECK(sessions.size() == 4);
    CHECK(sessions.login_count() == 3);  // T1 as U1, T2 as U2, no credentials: all in S1
    CHECK(sessions.ids().size() == 3);   // S1, U1, U2, each once
    CHECK(sessions.clients_of_token("T1") == std::vector<std::string>{"tab1", "tab2"});

    f.hub.leave("tab1");
    CHECK(f.hub.find("tab2")->session() != nullptr);
    CHECK(sessions.clients_of_token("T1") == std::vector<std::string>{"tab2"});
    f.hub.leave("tab2");
    CHECK(sessions.clients_of_token("T1").empty());
    CHECK(sessions.login_count() == 2);
    CHECK(sessions.ids().find("U1") == InternedIds::kNone);
    // A logout of the token now finds no socket, and still drops its cache entry.
    f.emit("$user.logout", Json{{"authToken", "T1"}});
    CHECK(f.hub.server_disconnected.empty());
    REQUIRE(f.connect("tab3", cookie("S1", "T1")));
    CHECK(f.auth_calls["S1,T1"] == 2);
    CHECK(f.hub.find("tab3")->session()->user_id() == std::optional<std::string_view>("U1"));

    // A client that leaves while its auth call is in flight never gets a session.
    f.hub.connect("gone", cookie("S1", "T2b"));
    f.hub.abandon("gone");
    REQUIRE(run_until(f.loop, [&] { return !f.hub.abandoned("gone"); }));
    CHECK(sessions.size() == 3);  // u2, anon, tab3
    CHECK(sessions.login_count() == 3);

    // The service frees the sessions of the clients still connected when it goes.
    FakeClient* still = f.hub.find("u2");
    f.service.reset();
    CHECK(still->session() == nullptr);
  }

  // ============================================================ actions (§6)

  TEST_CASE("socket.emit delivers to a room or to all and answers the count") {
    Fixture f;
    f.connect_three();
    f.hub.send("u1", "subscribe", Json{{"roomParts", "orders"}});
    Outcome to_room =
        f.call("socket.emit", Json{{"event", "e5"}, {"data", {{"x", 1}}}, {"room", "S1-orders"}});
    REQUIRE(to_room.ok);
    CHECK(to_room.data == Json{{"delivered", 1}});
    CHECK(f.last_delivery().rooms == std::vector<std::string>{"S1-orders"});
    CHECK(f.last_delivery().arg == R"({"x":1})");
    Outcome to_all = f.call("socket.emit", Json{{"event", "e6"}, {"data", "s"}});
    REQUIRE(to_all.ok);
    CHECK(to_all.data == Json{{"delivered", 3}});
    CHECK_FALSE(f.last_delivery().rooms.has_value());
    CHECK(f.stats()["events"]["out"] == 4);
    Outcome bad = f.call("socket.emit", Json{{"data", 1}});
    CHECK_FALSE(bad.ok);
    CHECK(bad.error.code == 422);
    CHECK(f.hub.deliveries.size() == 2);
  }

  TEST_CASE("socket.stats counts clients by kind and transport") {
    Fixture f;
    f.connect_three();
    f.hub.connect("poll", {}, Json::object(), ClientTransport::Polling);
    f.hub.send("u1", "subscribe", Json{{"roomParts", {"a", "b"}}});
    Json stats = f.stats();
    CHECK(stats["nodeID"] == "gw");
    CHECK(stats["connections"] == Json{{"total", 4},
                                       {"anonymous", 2},
                                       {"authenticated", 2},
                                       {"byTransport", {{"polling", 1}, {"websocket", 3}}}});
    CHECK(stats["rooms"] == 2);
  }

  TEST_CASE("socket.clients filters by room and user") {
    Fixture f;
    f.connect_three();
    f.hub.send("u2", "subscribe", Json{{"roomParts", "orders"}});
    CHECK(f.call("socket.clients").data.size() == 3);
    Json in_room = f.call("socket.clients", Json{{"room", "S1-orders"}}).data;
    CHECK(in_room == Json::array({Json{{"id", "u2"},
                                       {"userId", "U2"},
                                       {"tenantId", "S1"},
                                       {"anonymous", false},
                                       {"transport", "websocket"},
                                       {"rooms", {"S1-orders"}}}}));
    Json of_user = f.call("socket.clients", Json{{"userId", "U1"}}).data;
    REQUIRE(of_user.size() == 1);
    CHECK(of_user[0]["id"] == "u1");
  }

  TEST_CASE("socket.disconnect closes the matching clients only") {
    Fixture f;
    f.connect_three();
    REQUIRE(f.connect("u1b", cookie("S1", "T1")));
    Outcome by_user = f.call("socket.disconnect", Json{{"userId", "U1"}});
    REQUIRE(by_user.ok);
    CHECK(by_user.data == Json{{"disconnected", 2}});
    CHECK(f.hub.server_disconnected == std::vector<std::string>{"u1", "u1b"});
    Outcome by_sid = f.call("socket.disconnect", Json{{"sid", "anon"}});
    CHECK(by_sid.data == Json{{"disconnected", 1}});
    Outcome other_tenant = f.call("socket.disconnect", Json{{"tenantId", "S2"}});
    CHECK(other_tenant.data == Json{{"disconnected", 0}});
    CHECK(f.hub.find("u2") != nullptr);
    CHECK(f.hub.server_disconnected.size() == 3);
  }

  // ============================================================ several gateway nodes (§7)

  TEST_CASE("a balanced emit is forwarded to the other socket nodes, a broadcast is not") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Config config = test_config();
    auto producer = make_broker(bus, "producer");
    auto broker_a = make_broker(bus, "gw-a");
    auto broker_b = make_broker(bus, "gw-b");
    FakeHub hub_a, hub_b;
    SocketService service_a(*broker_a, hub_a, config);
    SocketService service_b(*broker_b, hub_b, config);
    broker_a->add_service(service_a.schema());
    broker_b->add_service(service_b.schema());
    for (auto* broker : {producer.get(), broker_a.get(), broker_b.get()}) start(loop, *broker);
    auto sees_both = [](Broker& broker) {
      const auto* stats = broker.registry().find_action("socket.stats");
      return stats != nullptr && stats->endpoints.size() == 2;
    };
    REQUIRE(run_until(loop, [&] {
      return sees_both(*producer) && sees_both(*broker_a) && sees_both(*broker_b);
    }));
    hub_a.connect("a");
    hub_b.connect("b");

    // Balanced: each emit reaches one node of the group, which forwards it to the other.
    for (int i = 0; i < 4; ++i) {
      producer->emit("$socket.emit", Json{{"eventName", "e"}, {"eventParams", i}});
    }
    REQUIRE(run_until(loop, [&] { return hub_a.count_of("e") == 4 && hub_b.count_of("e") == 4; }));
    run_for(loop, 100);
    CHECK(hub_a.count_of("e") == 4);
    CHECK(hub_b.count_of("e") == 4);
    CHECK(service_a.stats()["events"]["in"] == 4);
    CHECK(service_b.stats()["events"]["in"] == 4);

    // A broadcast reaches every node already: nobody forwards it.
    producer->broadcast("$socket.emit", Json{{"eventName", "b"}, {"eventParams", 0}});
    producer->broadcast("$user.logout", Json{{"authToken", "none"}});
    REQUIRE(run_until(loop, [&] { return hub_a.count_of("b") == 1 && hub_b.count_of("b") == 1; }));
    run_for(loop, 100);
    CHECK(hub_a.count_of("b") == 1);
    CHECK(hub_b.count_of("b") == 1);
    CHECK(service_a.stats()["events"]["in"] == 6);
    CHECK(service_b.stats()["events"]["in"] == 6);

    // Every pattern fans out, a logout too: both nodes see the balanced one.
    producer->emit("$user.logout", Json{{"authToken", "none"}});
    REQUIRE(run_until(loop, [&] {
      return service_a.stats()["events"]["in"] == 7 && service_b.stats()["events"]["in"] == 7;
    }));
  }

  TEST_CASE("forwarding: one publish on the shared subject for every current gateway") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Config config = test_config();
    auto producer = make_broker(bus, "producer");
    std::vector<std::unique_ptr<Broker>> brokers;
    std::vector<std::unique_ptr<FakeHub>> hubs;
    std::vector<std::unique_ptr<SocketService>> services;
    for (const char* id : {"gw-1", "gw-2", "gw-3", "gw-old"}) {
      brokers.push_back(make_broker(bus, id));
      hubs.push_back(std::make_unique<FakeHub>());
      services.push_back(std::make_unique<SocketService>(*brokers.back(), *hubs.back(), config));
      ServiceSchema schema = services.back()->schema();
      // gw-old stands for a gateway of an earlier version: no shared subject.
      if (std::string(id) == "gw-old") schema.metadata = Json::object();
      brokers.back()->add_service(std::move(schema));
    }
    start(loop, *producer);
    for (auto& broker : brokers) start(loop, *broker);
    auto sees_all = [](Broker& broker) {
      const auto* stats = broker.registry().find_action("socket.stats");
      return stats != nullptr && stats->endpoints.size() == 4;
    };
    REQUIRE(run_until(loop, [&] {
      return sees_all(*producer) &&
             std::all_of(brokers.begin(), brokers.end(), [&](auto& b) { return sees_all(*b); });
    }));
    for (auto& hub : hubs) hub->connect("c");

    // Four balanced emits: the producer's round robin hands one to each gateway.
    const size_t before = bus.published.size();
    for (int i = 0; i < 4; ++i) {
      producer->emit("$socket.emit", Json{{"eventName", "e"}, {"eventParams", i}});
    }
    REQUIRE(run_until(loop, [&] {
      return std::all_of(hubs.begin(), hubs.end(),
                         [](auto& hub) { return hub->count_of("e") == 4; });
    }));
    run_for(loop, 100);
    for (auto& hub : hubs) CHECK(hub->count_of("e") == 4);
    std::map<std::string, int> events_by_subject;  // the gateways' EVENTs (not the producer's)
    for (size_t i = before; i < bus.published.size(); ++i) {
      const auto& [subject, data] = bus.published[i];
      if (subject.rfind("MOL.EVENT", 0) != 0) continue;
      if (Json::parse(data)["sender"] != "producer") events_by_subject[subject]++;
    }
    // Each forwarder: one shared publish whatever the number of gateways, and one targeted
    // EVENT for the gateway that does not listen there (none when that gateway forwards).
    CHECK(events_by_subject ==
          std::map<std::string, int>{{"MOL.EVENT", 4}, {"MOL.EVENT.gw-old", 3}});
  }
}

// Issue 13: connection state recovery, the service's part (the protocol is the gateway's).
TEST_SUITE("socket service: connection state recovery") {
  Config with_recovery() {
    Config config = test_config();
    config.gateway.recovery.enabled = true;
    return config;
  }

  TEST_CASE("off by default: the hub gets no recovery handlers") {
    Fixture f;
    CHECK_FALSE(f.hub.recovery_installed());
    REQUIRE(f.connect("u1", cookie("S1", "T1")));
    CHECK_FALSE(f.stats().contains("recovery"));
  }

  TEST_CASE(
      "a kept client remembers its tenant, user and a fingerprint of its token, not the token") {
    Fixture f(with_recovery());
    REQUIRE(f.connect("u1", cookie("S1", "T1")));
    REQUIRE(f.connect("anon", {{"cookie", "X-Space-Id=S1"}}));
    f.hub.drop("u1");
    f.hub.drop("anon");
    const Json& saved = f.hub.saved("u1");
    CHECK(saved["tenantId"] == "S1");
    CHECK(saved["userId"] == "U1");
    CHECK(saved["token"] == token_fingerprint("T1"));
    CHECK(saved["token"].get<std::string>().size() == 16);
    CHECK(dump_json(saved).find("T1") == std::string::npos);
    CHECK(f.hub.saved("anon") == Json{{"tenantId", "S1"}, {"userId", nullptr}, {"token", ""}});
  }

  TEST_CASE("a restore needs the same login: same tenant, user and token") {
    Fixture f(with_recovery());
    REQUIRE(f.connect("u1", cookie("S1", "T1")));
    f.hub.drop("u1");
    REQUIRE(f.connect("same", cookie("S1", "T1")));  // the auth cache answers
    CHECK(f.hub.allows("u1", "same"));
    REQUIRE(f.connect("other-user", cookie("S1", "T2")));
    CHECK_FALSE(f.hub.allows("u1", "other-user"));
    REQUIRE(f.connect("anonymous-now", {{"cookie", "X-Space-Id=S1"}}));
    CHECK_FALSE(f.hub.allows("u1", "anonymous-now"));
  }

  TEST_CASE("a logout while away drops the token's kept clients only") {
    Fixture f(with_recovery());
    REQUIRE(f.connect("u1", cookie("S1", "T1")));
    REQUIRE(f.connect("u2", cookie("S1", "T2")));
    f.hub.drop("u1");
    f.hub.drop("u2");
    f.emit("$user.logout", Json{{"authToken", "T1"}});
    CHECK_FALSE(f.hub.kept("u1"));
    CHECK(f.hub.kept("u2"));
  }

  TEST_CASE("socket.disconnect drops the matching kept clients and says how many") {
    Fixture f(with_recovery());
    REQUIRE(f.connect("u1", cookie("S1", "T1")));
    REQUIRE(f.connect("u1b", cookie("S1", "T1")));
    REQUIRE(f.connect("u2", cookie("S1", "T2")));
    f.hub.drop("u1");
    f.hub.drop("u2");
    Outcome by_user = f.call("socket.disconnect", Json{{"userId", "U1"}});
    REQUIRE(by_user.ok);
    CHECK(by_user.data == Json{{"disconnected", 1}, {"keptDropped", 1}});
    CHECK_FALSE(f.hub.kept("u1"));
    CHECK(f.hub.kept("u2"));
    CHECK(f.call("socket.disconnect", Json{{"sid", "u2"}}).data ==
          Json{{"disconnected", 0}, {"keptDropped", 1}});
    CHECK_FALSE(f.hub.kept("u2"));
  }

  TEST_CASE("an expired kept client of a user is announced as $socket.recovery.expired") {
    Fixture f(with_recovery());
    std::vector<Json> expired;
    ServiceSchema listener;
    listener.name = "fallback";
    listener.events.push_back(EventSchema{"$socket.recovery.expired", "",
                                          [&](ContextPtr ctx) { expired.push_back(ctx->params); }});
    f.broker->add_service(listener);
    REQUIRE(f.connect("u1", cookie("S1", "T1")));
    REQUIRE(f.connect("anon", {{"cookie", "X-Space-Id=S1"}}));
    f.hub.drop("u1");
    f.hub.drop("anon");
    f.hub.expire("anon");  // nobody to tell
    f.hub.expire("u1");
    REQUIRE(run_until(f.loop, [&] { return !expired.empty(); }));
    run_for(f.loop, 20);
    CHECK(expired == std::vector<Json>{Json{{"tenantId", "S1"}, {"userId", "U1"}, {"sid", "u1"}}});
  }
}

// Issue 9: auth coalescing, auth.maxInFlight, gateway.maxSubscribesPerSecond and the `limits`
// counters of socket.stats.
TEST_SUITE("socket service limits") {
  TEST_CASE("sockets of one (spaceId, token) connecting at once make one auth call") {
    Fixture f;
    for (int i = 0; i < 20; ++i) f.hub.connect("c" + std::to_string(i), cookie("S1", "T1"));
    f.hub.connect("other", cookie("S1", "T2"));
    CHECK_FALSE(f.hub.decided("c0"));  // all twenty wait at once: the cache cannot help
    REQUIRE(run_until(f.loop, [&] { return f.hub.find("c19") && f.hub.find("other"); }));
    for (int i = 0; i < 20; ++i) CHECK(f.hub.find("c" + std::to_string(i)) != nullptr);
    CHECK(f.auth_calls == std::map<std::string, int>{{"S1,T1", 1}, {"S1,T2", 1}});
    CHECK(f.stats()["auth"] == Json{{"calls", 2}, {"failures", 0}});
    CHECK(f.stats()["connections"]["authenticated"] == 21);
  }

  TEST_CASE("a failed shared call closes every socket that waited for it, then is retried") {
    Fixture f;
    for (int i = 0; i < 5; ++i) f.hub.connect("b" + std::to_string(i), cookie("S1", "boom"));
    REQUIRE(run_until(f.loop, [&] { return f.hub.closed.size() == 5; }));
    CHECK(f.auth_calls["S1,boom"] == 1);
    CHECK(f.stats()["auth"] == Json{{"calls", 1}, {"failures", 5}});
    CHECK_FALSE(f.connect("b5", cookie("S1", "boom")));  // not cached, not stuck: a new call
    CHECK(f.auth_calls["S1,boom"] == 2);
  }

  TEST_CASE("auth.maxInFlight: a connect that needs one call more is closed at once, and counted") {
    Config config = test_config();
    config.auth.max_in_flight = 1;
    Fixture f(config);
    f.hub.connect("a", cookie("S1", "T1"));
    f.hub.connect("a2", cookie("S1", "T1"));               // joins the call in flight: allowed
    f.hub.connect("b", cookie("S1", "T2"));                // a second distinct call: over the limit
    CHECK(f.hub.closed == std::vector<std::string>{"b"});  // decided before any call finished
    REQUIRE(run_until(f.loop, [&] { return f.hub.find("a") && f.hub.find("a2"); }));
    CHECK(f.auth_calls == std::map<std::string, int>{{"S1,T1", 1}});
    Json stats = f.stats();
    CHECK(stats["limits"]["authInFlight"] == 1);
    CHECK(stats["auth"]["failures"] == 0);
    CHECK(f.connect("b", cookie("S1", "T2")));  // the client's retry, once the call is done
  }

  TEST_CASE("a logout while the token's auth call is in flight closes its waiters at once") {
    Config config = test_config();
    config.auth.timeout_ms = 300;
    Fixture f(config);
    f.hub.connect("w1", cookie("S1", "hang"));
    f.hub.connect("w2", cookie("S1", "hang"));
    REQUIRE(run_until(f.loop, [&] { return f.auth_calls["S1,hang"] == 1; }));
    f.broker->emit("$user.logout", Json{{"authToken", "hang"}});
    REQUIRE(run_until(
        f.loop, [&] { return f.hub.decided("w1") && f.hub.decided("w2"); }, 200));
    CHECK(f.hub.closed == std::vector<std::string>{"w1", "w2"});
    // The next connect does not join the abandoned call: it asks again.
    f.hub.connect("w3", cookie("S1", "hang"));
    REQUIRE(run_until(f.loop, [&] { return f.auth_calls["S1,hang"] == 2; }));
    REQUIRE(run_until(f.loop, [&] { return f.hub.decided("w3"); }));  // its timeout
    CHECK(f.hub.closed == std::vector<std::string>{"w1", "w2", "w3"});
  }

  TEST_CASE("gateway.maxSubscribesPerSecond: over the rate, refused with the refusal reply") {
    Config config = test_config();
    config.gateway.max_subscribes_per_second = 3;
    Fixture f(config);
    REQUIRE(f.connect("u1", cookie("S1", "T1")));
    REQUIRE(f.connect("u2", cookie("S1", "T2")));
    CHECK(f.hub.send("u1", "subscribe", Json{{"roomParts", "a"}}) == Json{{"rooms", {"S1-a"}}});
    CHECK(f.hub.send("u1", "unsubscribe", Json{{"roomParts", "a"}}) == Json{{"rooms", {"S1-a"}}});
    CHECK(f.hub.send("u1", "subscribe", Json{{"roomParts", "b"}}) == Json{{"rooms", {"S1-b"}}});
    auto refused = f.hub.send("u1", "subscribe", Json{{"roomParts", "c"}});
    REQUIRE(refused);
    CHECK(*refused ==
          Json{{"error", "rate limited: more than 3 subscribe/unsubscribe requests per second"}});
    CHECK(f.hub.find("u1")->rooms() == std::vector<std::string>{"S1-b"});
    // Per socket: another socket has its own budget.
    CHECK(f.hub.send("u2", "subscribe", Json{{"roomParts", "c"}}) == Json{{"rooms", {"S1-c"}}});
    Json stats = f.stats();
    CHECK(stats["limits"]["subscribeRate"] == 1);
    CHECK(stats["refused"] == 1);
  }

  TEST_CASE("socket.stats limits: rooms per socket counted; packet counters read from the hook") {
    Config config = test_config();
    config.gateway.max_rooms_per_socket = 2;
    Fixture f(config);
    REQUIRE(f.connect("u1", cookie("S1", "T1")));
    CHECK(f.stats()["limits"] == Json{{"attachments", 0},
                                      {"eventName", 0},
                                      {"packetSize", 0},
                                      {"jsonDepth", 0},
                                      {"busJsonDepth", 0},
                                      {"roomsPerSocket", 0},
                                      {"subscribeRate", 0},
                                      {"authInFlight", 0}});
    auto over = f.hub.send("u1", "subscribe", Json{{"roomParts", {"a", "b", "c"}}});
    REQUIRE(over);
    CHECK(over->contains("error"));
    f.hub.send("u1", "subscribe", Json{{"roomParts", "../x"}});  // refused, another reason
    f.service->count_packet_limits([] { return PacketLimitCounts{1, 2, 3, 4}; });
    Json limits = f.stats()["limits"];
    CHECK(limits["roomsPerSocket"] == 1);
    CHECK(limits["attachments"] == 1);
    CHECK(limits["eventName"] == 2);
    CHECK(limits["packetSize"] == 3);
    CHECK(limits["jsonDepth"] == 4);
  }
}

TEST_SUITE("socket service: connection limits") {
  TEST_CASE("socket.stats limits: the gateway's counts merged in when wired, read when called") {
    Fixture f;
    CHECK_FALSE(f.stats()["limits"].contains("connections"));
    uint64_t refused = 0;
    f.service->count_connection_limits([&] {
      return Json{{"connections", refused}, {"acceptPaused", 1}};
    });
    refused = 3;  // read when socket.stats is called, not when wired
    Json limits = f.stats()["limits"];
    CHECK(limits["connections"] == 3);
    CHECK(limits["acceptPaused"] == 1);
    CHECK(limits["subscribeRate"] == 0);  // the service's own counters stay beside them
  }
}

// ============================================================ metrics (services/node_metrics)

namespace {

/// The value of one series (`name` or `name{labels}` exactly as serialized); nullopt if absent.
std::optional<double> sample(const std::string& text, const std::string& series) {
  const std::string needle = "\n" + series + " ";
  const auto at = ("\n" + text).find(needle);
  if (at == std::string::npos) return std::nullopt;
  return std::stod(text.substr(at + needle.size() - 1));
}

/// How many series of the family `name` the text holds (lines starting with `name{`).
size_t series_count(const std::string& text, const std::string& name) {
  size_t count = 0;
  for (size_t at = ("\n" + text).find("\n" + name + "{"); at != std::string::npos;
       at = ("\n" + text).find("\n" + name + "{", at + 1)) {
    count++;
  }
  return count;
}

NodeMetrics make_metrics(Fixture& f) {
  NodeMetrics::Sources sources;
  sources.service = f.service.get();
  sources.broker = f.broker.get();
  sources.transporter = "nats";
  sources.version = "test";
  return NodeMetrics(std::move(sources));
}

}  // namespace

TEST_SUITE("node metrics") {
  TEST_CASE("recovery families: only with connection state recovery on, from socket.stats") {
    Fixture off;
    NodeMetrics off_metrics = make_metrics(off);
    CHECK(off_metrics.scrape().find("steedos_socket_recovery") == std::string::npos);

    Config config = test_config();
    config.gateway.recovery.enabled = true;
    Fixture f(config);
    f.service->count_recovery([] {
      return Json{{"sessions", 3},       {"packets", 40},         {"kept", 9},
                  {"recovered", 5},      {"refused", 1},          {"unknown", 2},
                  {"expired", 1},        {"dropped", 0},          {"evictedSessions", 0},
                  {"evictedPackets", 7}, {"untrackedTargets", 0}, {"replayed", 120}};
    });
    NodeMetrics metrics = make_metrics(f);
    const std::string text = metrics.scrape();
    CHECK(text.find("# TYPE steedos_socket_recovery_kept_sessions gauge\n") != std::string::npos);
    CHECK(text.find("# TYPE steedos_socket_recovery_total counter\n") != std::string::npos);
    CHECK(sample(text, "steedos_socket_recovery_kept_sessions") == 3);
    CHECK(sample(text, "steedos_socket_recovery_recorded_packets") == 40);
    CHECK(sample(text, "steedos_socket_recovery_total{outcome=\"recovered\"}") == 5);
    CHECK(sample(text, "steedos_socket_recovery_total{outcome=\"evicted_packet\"}") == 7);
    CHECK(sample(text, "steedos_socket_recovery_replayed_total") == 120);
    CHECK(series_count(text, "steedos_socket_recovery_total") == 9);
    CHECK(text.find("steedos_socket_recovery_history") == std::string::npos);  // memory store

    Fixture js(config);
    js.service->count_recovery([] {
      return Json{{"sessions", 3},
                  {"packets", 40},
                  {"replayed", 0},
                  {"jetstream",
                   {{"published", 11},
                    {"publishedCopies", 4},
                    {"publishFailed", 1},
                    {"deliveredWithoutHistory", 1},
                    {"delivered", 15},
                    {"lastSequence", 15},
                    {"skippedSequences", 0},
                    {"malformed", 0},
                    {"takes", 6},
                    {"taken", 5},
                    {"takeRaces", 1},
                    {"expired", 2},
                    {"lost", 0},
                    {"queueFull", 0},
                    {"errors", 3}}}};
    });
    NodeMetrics js_metrics = make_metrics(js);
    const std::string js_text = js_metrics.scrape();
    CHECK(js_text.find("# TYPE steedos_socket_recovery_history_total counter\n") !=
          std::string::npos);
    CHECK(sample(js_text, "steedos_socket_recovery_history_total{outcome=\"copy\"}") == 4);
    CHECK(sample(js_text, "steedos_socket_recovery_history_total{outcome=\"without_history\"}") ==
          1);
    CHECK(series_count(js_text, "steedos_socket_recovery_history_total") == 7);
    CHECK(sample(js_text, "steedos_socket_recovery_history_sequence") == 15);
    CHECK(sample(js_text, "steedos_socket_recovery_bucket_total{outcome=\"take_race\"}") == 1);
    CHECK(sample(js_text, "steedos_socket_recovery_bucket_total{outcome=\"error\"}") == 3);
    CHECK(series_count(js_text, "steedos_socket_recovery_bucket_total") == 7);
  }

  TEST_CASE("every family of the contract has HELP and TYPE, with fixed label sets") {
    Fixture f;
    NodeMetrics metrics = make_metrics(f);
    const std::string text = metrics.scrape();
    const std::pair<const char*, const char*> families[] = {
        {"steedos_socket_connections", "gauge"},
        {"steedos_socket_connects_total", "counter"},
        {"steedos_socket_connects_refused_total", "counter"},
        {"steedos_socket_disconnects_total", "counter"},
        {"steedos_socket_rooms", "gauge"},
        {"steedos_socket_subscriptions_refused_total", "counter"},
        {"steedos_socket_events_received_total", "counter"},
        {"steedos_socket_deliveries_total", "counter"},
        {"steedos_socket_packets_sent_total", "counter"},
        {"steedos_socket_sent_bytes_total", "counter"},
        {"steedos_socket_payloads_rejected_total", "counter"},
        {"steedos_socket_limit_refusals_total", "counter"},
        {"steedos_socket_slow_consumer_disconnects_total", "counter"},
        {"steedos_socket_refused_origins_total", "counter"},
        {"steedos_socket_malformed_total", "counter"},
        {"steedos_socket_auth_calls_total", "counter"},
        {"steedos_socket_auth_failures_total", "counter"},
        {"steedos_socket_auth_timeouts_total", "counter"},
        {"steedos_socket_auth_cache_hits_total", "counter"},
        {"steedos_socket_auth_duration_seconds", "histogram"},
        {"steedos_socket_emit_to_write_seconds", "histogram"},
        {"steedos_socket_transporter_connected", "gauge"},
        {"steedos_socket_transporter_reconnects_total", "counter"},
        {"steedos_socket_transporter_messages_received_total", "counter"},
        {"steedos_socket_transporter_messages_sent_total", "counter"},
        {"steedos_socket_transporter_received_bytes_total", "counter"},
        {"steedos_socket_transporter_sent_bytes_total", "counter"},
        {"steedos_socket_remote_nodes", "gauge"},
        {"steedos_socket_info", "gauge"},
        {"process_resident_memory_bytes", "gauge"},
        {"process_virtual_memory_bytes", "gauge"},
        {"process_cpu_seconds_total", "counter"},
        {"process_open_fds", "gauge"},
        {"process_max_fds", "gauge"},
        {"process_start_time_seconds", "gauge"},
    };
    // Not a structured binding: CAPTURE makes a lambda, and C++17 lambdas may not capture one
    // (clang refuses it: the sanitizer build).
    for (const auto& family : families) {
      const auto& name = family.first;
      const auto& type = family.second;
      CAPTURE(name);
      CHECK(text.find(std::string("# HELP ") + name + " ") != std::string::npos);
      CHECK(text.find(std::string("# TYPE ") + name + " " + type + "\n") != std::string::npos);
    }
    // Every label value is there from the start (a series never appears out of nowhere).
    CHECK(series_count(text, "steedos_socket_connections") == 4);
    CHECK(series_count(text, "steedos_socket_connects_total") == 2);
    CHECK(series_count(text, "steedos_socket_connects_refused_total") == kConnectRefusals);
    CHECK(series_count(text, "steedos_socket_disconnects_total") == kDisconnectReasons);
    CHECK(series_count(text, "steedos_socket_subscriptions_refused_total") == kSubscribeRefusals);
    CHECK(series_count(text, "steedos_socket_events_received_total") ==
          socket_event_patterns().size());
    CHECK(series_count(text, "steedos_socket_payloads_rejected_total") == rules::kRejectReasons);
    CHECK(series_count(text, "steedos_socket_packets_sent_total") == 2);
    CHECK(series_count(text, "steedos_socket_limit_refusals_total") == f.stats()["limits"].size());
    CHECK(sample(text, R"(steedos_socket_disconnects_total{reason="transport close"})") == 0.0);
    CHECK(sample(text, R"(steedos_socket_emit_to_write_seconds_bucket{le="0.0001"})") == 0.0);
    CHECK(sample(text, R"(steedos_socket_auth_duration_seconds_bucket{le="10"})") == 0.0);
    CHECK(sample(text, R"(steedos_socket_info{node_id="gw",version="test",transporter="nats"})") ==
          1.0);
    CHECK(sample(text, "steedos_socket_remote_nodes") == 0.0);
  }

  TEST_CASE("counters move with their sources and agree with socket.stats") {
    Fixture f;
    NodeMetrics metrics = make_metrics(f);
    f.service->observe_latencies(metrics.observers());
    f.connect_three();                              // u1, u2 by auth call; anon
    REQUIRE(f.connect("u1b", cookie("S1", "T1")));  // from the cache
    REQUIRE_FALSE(f.connect("bad", cookie("S1", "boom")));
    f.hub.send("anon", "subscribe", Json{{"roomParts", "space"}});  // anonymous: forbidden
    f.hub.send("u1", "subscribe", Json::object());                  // no roomParts: invalid
    f.hub.send("u1", "subscribe", Json{{"roomParts", "space"}});
    f.emit("$socket.emit", Json{{"eventName", "hello"}, {"eventParams", 1}});
    f.emit("$socket.emit", Json{{"eventName", "hello"}});  // no eventParams
    f.hub.leave("anon");

    const std::string text = metrics.scrape();
    const Json stats = f.stats();
    CAPTURE(text);
    CHECK(
        sample(text, R"(steedos_socket_connections{transport="websocket",auth="authenticated"})") ==
        3.0);
    CHECK(sample(text, R"(steedos_socket_connections{transport="websocket",auth="anonymous"})") ==
          0.0);
    CHECK(sample(text, R"(steedos_socket_connects_total{auth="authenticated"})") == 3.0);
    CHECK(sample(text, R"(steedos_socket_connects_total{auth="anonymous"})") == 1.0);
    CHECK(sample(text, R"(steedos_socket_connects_refused_total{reason="auth_unavailable"})") ==
          1.0);
    CHECK(
        sample(text, R"(steedos_socket_disconnects_total{reason="client namespace disconnect"})") ==
        1.0);
    CHECK(sample(text, R"(steedos_socket_subscriptions_refused_total{reason="forbidden"})") == 1.0);
    CHECK(sample(text, R"(steedos_socket_subscriptions_refused_total{reason="invalid"})") == 1.0);
    CHECK(sample(text, R"(steedos_socket_events_received_total{pattern="$socket.emit"})") == 2.0);
    CHECK(sample(text, R"(steedos_socket_payloads_rejected_total{reason="missing_field"})") == 1.0);
    CHECK(sample(text, "steedos_socket_auth_calls_total") == 3.0);  // T1, T2, boom
    CHECK(sample(text, "steedos_socket_auth_failures_total") == 1.0);
    CHECK(sample(text, "steedos_socket_auth_cache_hits_total") == 1.0);
    CHECK(sample(text, "steedos_socket_auth_duration_seconds_count") == 3.0);
    // Emitted by this node itself, not read off the bus: no emit-to-write sample.
    CHECK(sample(text, "steedos_socket_emit_to_write_seconds_count") == 0.0);
    CHECK(sample(text, "steedos_socket_rooms") == stats["rooms"].get<double>());
    CHECK(sample(text, "steedos_socket_deliveries_total") == stats["events"]["out"].get<double>());
    CHECK(stats["events"]["out"] == 4);  // u1, u2, u1b and anon, before anon left
    CHECK(stats["refused"] == 2);
    CHECK(stats["rejected"] == 1);
  }
}

// ============================================================ cluster-wide operator actions

namespace {

// A `socket` node offering `actions`, none of which answers (a paused or wedged node the
// registry still lists): only the caller's timeout ends a call.
ServiceSchema silent_socket_service(std::vector<const char*> actions = {
                                        "stats", "clients", "disconnect", "join", "leave"}) {
  ServiceSchema s;
  s.name = "socket";
  for (const char* name : actions) {
    ActionSchema action;
    action.raw_name = name;
    action.handler = [](ContextPtr, Respond) {};
    s.actions.push_back(std::move(action));
  }
  return s;
}

// Three gateway nodes on one memory bus (gw-a has the auth service), optionally a fourth
// `socket` node "gw-silent" with the service `fourth` (which offers socket.stats).
struct ClusterFixture {
  asio::io_context loop;
  MemoryBus bus{loop};
  Config config = test_config();
  std::map<std::string, int> auth_calls;
  std::vector<std::unique_ptr<Broker>> brokers;
  std::vector<std::unique_ptr<FakeHub>> hubs;
  std::vector<std::unique_ptr<SocketService>> services;
  std::unique_ptr<Broker> silent;

  explicit ClusterFixture(std::optional<ServiceSchema> fourth = std::nullopt) {
    for (const char* id : {"gw-a", "gw-b", "gw-c"}) {
      brokers.push_back(make_broker(bus, id));
      hubs.push_back(std::make_unique<FakeHub>());
      services.push_back(std::make_unique<SocketService>(*brokers.back(), *hubs.back(), config));
      brokers.back()->add_service(services.back()->schema());
    }
    brokers[0]->add_service(fake_auth(&auth_calls));
    if (fourth) {
      silent = make_broker(bus, "gw-silent");
      silent->add_service(std::move(*fourth));
    }
    for (auto& broker : brokers) start(loop, *broker);
    if (silent) start(loop, *silent);
    const size_t socket_nodes = silent ? 4 : 3;
    REQUIRE(run_until(loop, [&] {
      return std::all_of(brokers.begin(), brokers.end(), [&](const auto& broker) {
        const auto* stats = broker->registry().find_action("socket.stats");
        const auto* auth = broker->registry().find_action("auth.session");
        return stats != nullptr && stats->endpoints.size() == socket_nodes && auth != nullptr;
      });
    }));
  }

  /// Connects `id` to node `node` with the cookie of (space, token); true when accepted.
  bool connect(size_t node, const std::string& id, const std::string& token) {
    hubs[node]->connect(id, cookie("S1", token));
    REQUIRE(run_until(loop, [&] { return hubs[node]->decided(id); }));
    return hubs[node]->find(id) != nullptr;
  }
  /// U1 on every node (a1, b1, c1), U2 on gw-a and gw-c (a2, c2).
  void connect_users() {
    REQUIRE(connect(0, "a1", "T1"));
    REQUIRE(connect(1, "b1", "T1"));
    REQUIRE(connect(2, "c1", "T1"));
    REQUIRE(connect(0, "a2", "T2"));
    REQUIRE(connect(2, "c2", "T2"));
  }
  Outcome call(const std::string& action, const Json& params, size_t node = 0) {
    return ::call(loop, *brokers[node], action, params);
  }
  FakeClient& client(size_t node, const std::string& id) {
    FakeClient* found = hubs[node]->find(id);
    REQUIRE(found != nullptr);
    return *found;
  }
};

std::vector<std::string> keys_of(const Json& object) {
  std::vector<std::string> keys;
  for (auto it = object.begin(); it != object.end(); ++it) keys.push_back(it.key());
  std::sort(keys.begin(), keys.end());
  return keys;
}

}  // namespace

TEST_SUITE("socket service: operator actions (issue 12)") {
  TEST_CASE("socket.join / socket.leave select by userId, sid, inRoom and narrow by tenantId") {
    Fixture f;
    f.connect_three();
    REQUIRE(f.connect("u1b", cookie("S1", "T1")));
    Outcome by_user = f.call("socket.join", Json{{"room", "S1-ops"}, {"userId", "U1"}});
    REQUIRE(by_user.ok);
    CHECK(by_user.data == Json{{"matched", 2},
                               {"joined", 2},
                               {"alreadyIn", 0},
                               {"skipped", {{"roomsPerSocket", 0}, {"forbidden", 0}}}});
    CHECK(f.hub.find("u1")->in_room("S1-ops"));
    CHECK(f.hub.find("u1b")->in_room("S1-ops"));
    CHECK_FALSE(f.hub.find("u2")->in_room("S1-ops"));
    // Joined for real: an emit to the room reaches exactly them.
    CHECK(f.call("socket.emit", Json{{"event", "e"}, {"data", 1}, {"room", "S1-ops"}}).data ==
          Json{{"delivered", 2}});
    // Again: nothing new, counted as already in.
    CHECK(f.call("socket.join", Json{{"room", "S1-ops"}, {"userId", "U1"}}).data["alreadyIn"] == 2);
    // inRoom: the sockets of one room join another; tenantId narrows (S2 has none of them).
    CHECK(f.call("socket.join", Json{{"room", "S1-ops2"}, {"inRoom", "S1-ops"}, {"tenantId", "S2"}})
              .data["matched"] == 0);
    CHECK(f.call("socket.join", Json{{"room", "S1-ops2"}, {"inRoom", "S1-ops"}}).data["joined"] ==
          2);
    CHECK(f.call("socket.join", Json{{"room", "S1-ops"}, {"sid", "u2"}}).data["joined"] == 1);

    Outcome leave = f.call("socket.leave", Json{{"room", "S1-ops"}, {"sid", "u1"}});
    REQUIRE(leave.ok);
    CHECK(leave.data == Json{{"matched", 1}, {"left", 1}});
    CHECK_FALSE(f.hub.find("u1")->in_room("S1-ops"));
    CHECK(f.hub.find("u1")->in_room("S1-ops2"));
    CHECK(f.call("socket.leave", Json{{"room", "S1-ops"}, {"inRoom", "S1-ops2"}}).data ==
          Json{{"matched", 2}, {"left", 1}});
    CHECK(f.call("socket.emit", Json{{"event", "e"}, {"data", 2}, {"room", "S1-ops"}}).data ==
          Json{{"delivered", 1}});  // u2 only
  }

  TEST_CASE("socket.join keeps the subscribe isolation: other tenant, anonymous, personal rooms") {
    Fixture f;
    f.connect_three();  // u1 (U1), u2 (U2), anon: all of S1
    auto skipped = [&](const Json& params) {
      Outcome outcome = f.call("socket.join", params);
      REQUIRE(outcome.ok);
      return outcome.data["skipped"]["forbidden"].get<int>();
    };
    CHECK(skipped(Json{{"room", "S2-orders"}, {"userId", "U1"}}) == 1);
    CHECK(skipped(Json{{"room", "S1-orders"}, {"sid", "anon"}}) == 1);
    // U2's personal room: not for U1, but for U2 itself.
    CHECK(skipped(Json{{"room", "S1-notification-change-U2"}, {"userId", "U1"}}) == 1);
    CHECK(skipped(Json{{"room", "S1-notification-change-U2"}, {"userId", "U2"}}) == 0);
    CHECK(f.hub.find("u1")->rooms().empty());
    CHECK(f.hub.find("anon")->rooms().empty());
    CHECK(f.hub.find("u2")->rooms() == std::vector<std::string>{"S1-notification-change-U2"});

    Config open = test_config();
    open.gateway.anonymous_rooms = true;
    Fixture g(open);
    REQUIRE(g.connect("anon", {{"cookie", "X-Space-Id=S1"}}));
    CHECK(g.call("socket.join", Json{{"room", "S1-orders"}, {"sid", "anon"}}).data["joined"] == 1);
  }

  TEST_CASE("socket.join: a socket at gateway.maxRoomsPerSocket is skipped and counted") {
    Config config = test_config();
    config.gateway.max_rooms_per_socket = 1;
    Fixture f(config);
    f.connect_three();
    f.hub.send("u1", "subscribe", Json{{"roomParts", "a"}});
    Outcome outcome =
        f.call("socket.join", Json{{"room", "S1-b"}, {"tenantId", "S1"}, {"inRoom", "S1-a"}});
    REQUIRE(outcome.ok);
    CHECK(outcome.data["skipped"] == Json{{"roomsPerSocket", 1}, {"forbidden", 0}});
    CHECK(outcome.data["joined"] == 0);
    CHECK(f.hub.find("u1")->rooms() == std::vector<std::string>{"S1-a"});
    CHECK(f.call("socket.join", Json{{"room", "S1-b"}, {"userId", "U2"}}).data["joined"] == 1);
    CHECK(f.stats()["limits"]["roomsPerSocket"] == 1);
    CHECK(f.stats()["refused"] == 0);  // client subscriptions only
  }

  TEST_CASE("bad params of the operator actions: a 422 ValidationError, nothing done") {
    Fixture f;
    f.connect_three();
    auto fails = [&](const std::string& action, const Json& params) {
      Outcome outcome = f.call(action, params);
      REQUIRE_FALSE(outcome.ok);
      CHECK(outcome.error.code == 422);
      return dump_json(outcome.error.data[0]["field"]);
    };
    CHECK(fails("socket.join", Json{{"userId", "U1"}}) == R"("room")");
    CHECK(fails("socket.join", Json{{"room", "S1-x"}}) == R"("userId|sid|inRoom")");
    CHECK(fails("socket.join", Json{{"room", "S1-x"}, {"tenantId", "S1"}}) ==
          R"("userId|sid|inRoom")");
    CHECK(fails("socket.join", Json{{"room", "S1-\n"}, {"userId", "U1"}}) == R"("room")");
    CHECK(fails("socket.leave", Json{{"room", 5}, {"userId", "U1"}}) == R"("room")");
    CHECK(fails("socket.leave", Json{{"room", "S1-x"}, {"inRoom", ""}}) == R"("inRoom")");
    CHECK(fails("socket.stats", Json{{"cluster", "yes"}}) == R"("cluster")");
    CHECK(fails("socket.stats", Json{{"cluster", true}, {"timeout", 0}}) == R"("timeout")");
    CHECK(fails("socket.clients", Json{{"cluster", true}, {"timeout", 60001}}) == R"("timeout")");
    CHECK(fails("socket.disconnect", Json{{"userId", "U1"}, {"timeout", 1.5}}) == R"("timeout")");
    CHECK(fails("socket.join", Json::array()) == R"("")");
    CHECK(f.hub.find("u1")->rooms().empty());
    CHECK(f.hub.server_disconnected.empty());
    // Without cluster a node answers for itself, as before (timeout accepted, unused).
    CHECK(f.call("socket.stats", Json{{"timeout", 10}}).data["nodeID"] == "gw");
  }

  TEST_CASE(
      "cluster: true asks every socket node once and aggregates; the local node answers too") {
    ClusterFixture c;
    c.connect_users();
    Outcome stats = c.call("socket.stats", Json{{"cluster", true}});
    REQUIRE(stats.ok);
    CHECK(keys_of(stats.data["nodes"]) == std::vector<std::string>{"gw-a", "gw-b", "gw-c"});
    CHECK(stats.data["missing"] == Json::array());
    CHECK(stats.data["nodes"]["gw-b"]["nodeID"] == "gw-b");
    CHECK(stats.data["nodes"]["gw-c"]["connections"]["total"] == 2);
    CHECK(stats.data["total"]["connections"] ==
          Json{{"total", 5},
               {"anonymous", 0},
               {"authenticated", 5},
               {"byTransport", {{"polling", 0}, {"websocket", 5}}}});
    CHECK_FALSE(stats.data["total"].contains("nodeID"));
    CHECK_FALSE(stats.data["total"].contains("uptime"));
    // Asked from another node: the same view.
    CHECK(
        c.call("socket.stats", Json{{"cluster", true}}, 2).data["total"]["connections"]["total"] ==
        5);

    Outcome clients = c.call("socket.clients", Json{{"cluster", true}, {"userId", "U1"}});
    REQUIRE(clients.ok);
    CHECK(clients.data["total"] == 3);
    CHECK(clients.data["nodes"] ==
          Json{{"gw-a", {{"clients", 1}}}, {"gw-b", {{"clients", 1}}}, {"gw-c", {{"clients", 1}}}});
    std::set<std::pair<std::string, std::string>> where;
    for (const auto& entry : clients.data["clients"]) {
      CHECK(entry["userId"] == "U1");
      where.emplace(entry["nodeID"].get<std::string>(), entry["id"].get<std::string>());
    }
    CHECK(where == std::set<std::pair<std::string, std::string>>{
                       {"gw-a", "a1"}, {"gw-b", "b1"}, {"gw-c", "c1"}});

    // join on every node, then leave: an emit to the room on each node follows.
    Outcome join =
        c.call("socket.join", Json{{"cluster", true}, {"room", "S1-ops"}, {"userId", "U1"}}, 1);
    REQUIRE(join.ok);
    CHECK(join.data["total"] == Json{{"matched", 3},
                                     {"joined", 3},
                                     {"alreadyIn", 0},
                                     {"skipped", {{"roomsPerSocket", 0}, {"forbidden", 0}}}});
    CHECK(join.data["nodes"]["gw-c"]["joined"] == 1);
    for (size_t node = 0; node < 3; ++node) {
      CHECK(
          c.call("socket.emit", Json{{"event", "e"}, {"data", 1}, {"room", "S1-ops"}}, node).data ==
          Json{{"delivered", 1}});
    }
    CHECK(c.client(2, "c1").in_room("S1-ops"));
    CHECK_FALSE(c.client(2, "c2").in_room("S1-ops"));
    Outcome leave =
        c.call("socket.leave", Json{{"cluster", true}, {"room", "S1-ops"}, {"inRoom", "S1-ops"}});
    CHECK(leave.data["total"] == Json{{"matched", 3}, {"left", 3}});
    CHECK_FALSE(c.client(1, "b1").in_room("S1-ops"));

    Outcome disconnect = c.call("socket.disconnect", Json{{"cluster", true}, {"userId", "U2"}}, 1);
    REQUIRE(disconnect.ok);
    CHECK(disconnect.data["total"] == Json{{"disconnected", 2}});
    CHECK(keys_of(disconnect.data["nodes"]) == std::vector<std::string>{"gw-a", "gw-b", "gw-c"});
    CHECK(disconnect.data["nodes"]["gw-a"] == Json{{"disconnected", 1}});
    CHECK(disconnect.data["nodes"]["gw-b"] == Json{{"disconnected", 0}});
    CHECK(disconnect.data["nodes"]["gw-c"] == Json{{"disconnected", 1}});
    CHECK(c.hubs[0]->server_disconnected == std::vector<std::string>{"a2"});
    CHECK(c.hubs[2]->server_disconnected == std::vector<std::string>{"c2"});
    // Each node was asked once: no node fanned out again (its own answer has no `nodes`).
    CHECK_FALSE(disconnect.data["nodes"]["gw-a"].contains("nodes"));
  }

  TEST_CASE("cluster: true: a node that does not answer costs one timeout and is named missing") {
    ClusterFixture c(silent_socket_service());
    c.connect_users();
    const auto started = std::chrono::steady_clock::now();
    Outcome stats = c.call("socket.stats", Json{{"cluster", true}, {"timeout", 300}});
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - started)
                             .count();
    REQUIRE(stats.ok);
    CHECK(elapsed >= 300);
    CHECK(elapsed < 1500);
    CHECK(keys_of(stats.data["nodes"]) == std::vector<std::string>{"gw-a", "gw-b", "gw-c"});
    CHECK(stats.data["missing"] ==
          Json::array({Json{{"nodeID", "gw-silent"}, {"reason", "timeout"}}}));
    CHECK(stats.data["total"]["connections"]["total"] == 5);
    // The others still act: disconnect reaches them, the silent one is reported.
    Outcome disconnect =
        c.call("socket.disconnect", Json{{"cluster", true}, {"userId", "U1"}, {"timeout", 200}});
    REQUIRE(disconnect.ok);
    CHECK(disconnect.data["total"] == Json{{"disconnected", 3}});
    CHECK(disconnect.data["missing"][0]["nodeID"] == "gw-silent");
    // A node that stopped is not asked at all.
    bool stopped = false;
    c.silent->stop([&] { stopped = true; });
    REQUIRE(run_until(c.loop, [&] {
      return stopped && c.brokers[0]->registry().find_action("socket.stats")->endpoints.size() == 3;
    }));
    Outcome after = c.call("socket.clients", Json{{"cluster", true}, {"timeout", 200}});
    CHECK(after.data["missing"] == Json::array());
    CHECK(after.data["total"] == 2);
  }

  TEST_CASE("cluster: true: a socket node without the action (an older version) is named missing") {
    ClusterFixture c(silent_socket_service({"stats"}));
    c.connect_users();
    Outcome join =
        c.call("socket.join", Json{{"cluster", true}, {"room", "S1-ops"}, {"userId", "U1"}});
    REQUIRE(join.ok);
    CHECK(join.data["total"]["joined"] == 3);
    CHECK(
        join.data["missing"] ==
        Json::array({Json{{"nodeID", "gw-silent"},
                          {"reason", "Service 'socket.join' is not found on 'gw-silent' node."}}}));
  }
}
