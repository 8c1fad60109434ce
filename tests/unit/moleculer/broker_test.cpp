// The broker over the in-memory bus: several nodes on one io_context, packets asserted on the
// wire. Real NATS and real JS peers are exercised by tests/interop.
#include "moleculer/broker.hpp"

#include <doctest/doctest.h>

#include <spdlog/sinks/ostream_sink.h>
#include <asio/steady_timer.hpp>

#include <algorithm>
#include <sstream>

#include "common/log.hpp"
#include "tests/unit/support/memory_nodes.hpp"
#include "transport/memory_transporter.hpp"

using namespace steedos;
using namespace steedos::moleculer;
using testing::node_settings;
using testing::run_for;
using testing::run_until;
using transport::MemoryBus;
using transport::MemoryTransporter;

namespace {

struct Node {
  MemoryTransporter* transporter;
  std::unique_ptr<Broker> broker;
  Node(MemoryBus& bus, BrokerSettings settings) {
    auto t = std::make_unique<MemoryTransporter>(bus);
    transporter = t.get();
    broker = std::make_unique<Broker>(bus.loop(), std::move(settings), std::move(t));
  }
  void start(asio::io_context& loop) { REQUIRE(testing::start_broker(loop, *broker)); }
};

ServiceSchema math_service(std::vector<std::string>* events = nullptr) {
  ServiceSchema s;
  s.name = "math";
  ActionSchema add;
  add.raw_name = "add";
  add.schema = Json{{"params", {{"a", "number"}, {"b", "number"}}}};
  add.handler = [](ContextPtr ctx, Respond respond) {
    ctx->meta["seen"] = true;
    respond(Outcome::success(ctx->params["a"].get<int>() + ctx->params["b"].get<int>()));
  };
  s.actions.push_back(add);
  ActionSchema never;
  never.raw_name = "never";
  never.handler = [](ContextPtr, Respond) {};  // never answers
  s.actions.push_back(never);
  ActionSchema boom;
  boom.raw_name = "boom";
  boom.handler = [](ContextPtr, Respond) { throw std::runtime_error("kaput"); };
  s.actions.push_back(boom);
  ActionSchema odd;
  odd.raw_name = "odd";
  odd.handler = [](ContextPtr, Respond) { throw 42; };  // not a std::exception
  s.actions.push_back(odd);
  if (events) {
    for (const char* pattern : {"user.*", "audit.**"}) {
      EventSchema e;
      e.pattern = pattern;
      e.group = std::string(pattern) == "audit.**" ? "auditors" : "";
      e.handler = [events, pattern](ContextPtr ctx) {
        events->push_back(std::string(pattern) + "|" + ctx->name + "|" + ctx->event_type);
      };
      s.events.push_back(e);
    }
  }
  return s;
}

/// Copies what one component logger writes while it lives, to assert on log lines.
class LogCapture {
 public:
  explicit LogCapture(const std::string& component)
      : logger_(component_logger(component)),
        sink_(std::make_shared<spdlog::sinks::ostream_sink_st>(out_)) {
    logger_->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = logger_->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  /// How many captured lines contain `text`.
  int lines_with(const std::string& text) const {
    std::istringstream lines(out_.str());
    int count = 0;
    for (std::string line; std::getline(lines, line);)
      count += line.find(text) != std::string::npos;
    return count;
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> logger_;
  std::shared_ptr<spdlog::sinks::ostream_sink_st> sink_;
};

std::vector<Json> packets_on(MemoryBus& bus, const std::string& subject_prefix) {
  std::vector<Json> packets;
  for (const auto& [subject, data] : bus.published) {
    if (subject.rfind(subject_prefix, 0) == 0) packets.push_back(Json::parse(data));
  }
  return packets;
}

}  // namespace

TEST_SUITE("broker") {
  TEST_CASE("start announces DISCOVER then INFO with $node and the services") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node a(bus, node_settings("a"));
    a.broker->add_service(math_service());
    a.start(loop);
    REQUIRE(bus.published.size() >= 3);
    auto discovers = packets_on(bus, "MOL.DISCOVER");
    REQUIRE(discovers.size() == 1);
    CHECK(discovers[0] == Json{{"ver", "4"}, {"sender", "a"}});
    auto infos = packets_on(bus, "MOL.INFO");
    REQUIRE(infos.size() == 1);
    const Json& info = infos[0];
    CHECK(info["seq"] == 1);
    CHECK(info["client"]["type"] == "cpp");
    CHECK(info["instanceID"] == a.broker->instance_id());
    REQUIRE(info["services"].size() == 2);
    CHECK(info["services"][0]["name"] == "$node");
    CHECK(info["services"][0]["actions"].contains("$node.health"));
    const Json& math = info["services"][1];
    CHECK(math["fullName"] == "math");
    CHECK(math["settings"] == Json::object());
    CHECK(math["actions"]["math.add"]["rawName"] == "add");
    CHECK(math["actions"]["math.add"]["params"]["a"] == "number");
    CHECK(math["events"] == Json::object());
    CHECK(packets_on(bus, "MOL.HEARTBEAT").size() == 1);  // the first heartbeat comes at once
  }

  TEST_CASE("transporter_stats are the transporter's: the packets the broker put on the bus") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node a(bus, node_settings("a"));
    CHECK_FALSE(a.broker->transporter_stats().connected);
    a.start(loop);
    const auto stats = a.broker->transporter_stats();
    CHECK(stats.connected);
    uint64_t bytes = 0;
    for (const auto& packet : bus.published) bytes += packet.second.size();
    CHECK(stats.messages_sent == bus.published.size());  // DISCOVER, INFO, HEARTBEAT, ...
    CHECK(stats.bytes_sent == bytes);
    CHECK(stats.messages_received >= 1);  // its own DISCOVER and INFO broadcasts come back
  }

  TEST_CASE("two nodes discover each other and call both ways with meta") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node a(bus, node_settings("a")), b(bus, node_settings("b"));
    b.broker->add_service(math_service());
    a.start(loop);
    b.start(loop);
    REQUIRE(run_until(loop, [&] { return a.broker->registry().find_action("math.add"); }));
    std::optional<Outcome> result;
    CallOptions options;
    options.meta = Json{{"user", "bob"}};
    a.broker->call("math.add", Json{{"a", 2}, {"b", 3}}, options,
                   [&](Outcome o) { result = std::move(o); });
    REQUIRE(run_until(loop, [&] { return result.has_value(); }));
    CHECK(result->ok);
    CHECK(result->data == 5);
    CHECK(result->meta == Json{{"user", "bob"}, {"seen", true}});
    auto reqs = packets_on(bus, "MOL.REQ.b");
    REQUIRE(reqs.size() == 1);
    CHECK(reqs[0]["level"] == 1);
    CHECK(reqs[0]["requestID"] == reqs[0]["id"]);
    CHECK(reqs[0]["caller"].is_null());
    CHECK_FALSE(reqs[0].contains("headers"));  // protocol 4
  }

  TEST_CASE("unknown actions, thrown handlers and timeouts give typed errors") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node a(bus, node_settings("a")), b(bus, node_settings("b"));
    b.broker->add_service(math_service());
    a.start(loop);
    b.start(loop);
    REQUIRE(run_until(loop, [&] { return a.broker->registry().find_action("math.add"); }));
    std::vector<Outcome> results;
    a.broker->call("math.nothere", Json::object(), {}, [&](Outcome o) { results.push_back(o); });
    a.broker->call("math.boom", Json::object(), {}, [&](Outcome o) { results.push_back(o); });
    CallOptions short_timeout;
    short_timeout.timeout_ms = 100;
    a.broker->call("math.never", Json::object(), short_timeout,
                   [&](Outcome o) { results.push_back(o); });
    REQUIRE(run_until(loop, [&] { return results.size() == 3; }));
    CHECK(results[0].error.name == "ServiceNotFoundError");
    CHECK(results[1].error.name == "MoleculerError");
    CHECK(results[1].error.code == 500);
    CHECK(results[1].error.message == "kaput");
    CHECK(results[1].error.nodeID == "b");
    CHECK(results[2].error.name == "RequestTimeoutError");
    CHECK(results[2].error.retryable);
  }

  TEST_CASE("an action that throws a non-standard exception answers an internal error") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node a(bus, node_settings("a")), b(bus, node_settings("b"));
    b.broker->add_service(math_service());
    a.start(loop);
    b.start(loop);
    REQUIRE(run_until(loop, [&] { return a.broker->registry().find_action("math.odd"); }));
    std::vector<Outcome> results;
    a.broker->call("math.odd", Json::object(), {}, [&](Outcome o) { results.push_back(o); });
    b.broker->call("math.odd", Json::object(), {}, [&](Outcome o) { results.push_back(o); });
    REQUIRE(run_until(loop, [&] { return results.size() == 2; }));
    for (const auto& outcome : results) {
      CHECK_FALSE(outcome.ok);
      CHECK(outcome.error.code == 500);
    }
    CHECK(b.broker->counters().handler_errors == 2);
    // The node still serves.
    a.broker->call("math.add", Json{{"a", 1}, {"b", 2}}, {},
                   [&](Outcome o) { results.push_back(o); });
    REQUIRE(run_until(loop, [&] { return results.size() == 3; }));
    CHECK(results[2].data == 3);
  }

  TEST_CASE("a REQ for an unknown action is answered with ServiceNotFoundError and the meta") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node b(bus, node_settings("b"));
    b.start(loop);
    MemoryTransporter raw(bus);
    std::vector<std::string> responses;
    transport::TransporterHandlers handlers;
    handlers.on_message = [&](const std::string&, std::string_view data) {
      responses.emplace_back(data);
    };
    raw.connect(handlers);
    raw.subscribe("MOL.RES.js");
    raw.publish("MOL.REQ.b",
                R"({"id":"r1","action":"x.y","params":{},"meta":{"k":1},"ver":"4","sender":"js"})");
    REQUIRE(run_until(loop, [&] { return !responses.empty(); }));
    Json res = Json::parse(responses[0]);
    CHECK(res["id"] == "r1");
    CHECK(res["success"] == false);
    CHECK(res["meta"] == Json{{"k", 1}});
    CHECK(res["error"]["name"] == "ServiceNotFoundError");
    CHECK(res["error"]["retryable"] == true);
    CHECK(res["error"]["data"] == Json{{"action", "x.y"}, {"nodeID", "b"}});
    // Garbage on the wire is dropped and counted, never fatal.
    raw.publish("MOL.REQ.b", "{oops");
    raw.publish("MOL.REQ.b", R"({"ver":"4","sender":"js"})");
    // So is a packet nested 100,000 deep: refused while parsing, nothing recursed over.
    std::string deep = R"({"ver":"4","sender":"js","event":"e","data":)";
    for (int i = 0; i < 50000; ++i) deep += R"({"a":[)";
    deep += "1";
    for (int i = 0; i < 50000; ++i) deep += "]}";
    raw.publish("MOL.EVENT.b", deep + "}");
    run_for(loop, 20);
    CHECK(b.broker->counters().invalid_packets == 3);
  }

  TEST_CASE("emit is balanced per group, broadcast reaches every node") {
    asio::io_context loop;
    MemoryBus bus(loop);
    std::vector<std::string> events_b, events_c;
    Node a(bus, node_settings("a")), b(bus, node_settings("b")), c(bus, node_settings("c"));
    b.broker->add_service(math_service(&events_b));
    c.broker->add_service(math_service(&events_c));
    a.start(loop);
    b.start(loop);
    c.start(loop);
    REQUIRE(run_until(loop, [&] {
      return a.broker->registry().find_action("math.add") &&
             a.broker->registry().find_action("math.add")->endpoints.size() == 2;
    }));
    for (int i = 0; i < 4; ++i) a.broker->emit("user.created", Json{{"i", i}});
    REQUIRE(run_until(loop, [&] { return events_b.size() + events_c.size() == 4; }));
    CHECK(events_b.size() == 2);  // round robin inside group "math"
    CHECK(events_c.size() == 2);
    CHECK(events_b[0] == "user.*|user.created|emit");
    events_b.clear();
    events_c.clear();
    a.broker->emit("audit.a.b", Json::object());
    REQUIRE(run_until(loop, [&] { return events_b.size() + events_c.size() == 1; }));
    events_b.clear();
    events_c.clear();
    a.broker->broadcast("user.removed", Json::object());
    REQUIRE(run_until(loop, [&] { return events_b.size() + events_c.size() == 2; }));
    CHECK(events_b == std::vector<std::string>{"user.*|user.removed|broadcast"});
    auto broadcast_packets = packets_on(bus, "MOL.EVENT.");
    CHECK(broadcast_packets.back()["broadcast"] == true);
    CHECK_FALSE(broadcast_packets.back().contains("groups"));
    // Nobody subscribes: nothing is sent.
    auto before = bus.published.size();
    a.broker->emit("nobody.listens", Json::object());
    run_for(loop, 20);
    for (size_t i = before; i < bus.published.size(); ++i) {
      CHECK(bus.published[i].first.find("EVENT") == std::string::npos);
    }
  }

  TEST_CASE("the shared EVENT subject: one publish, each listening node once, not the sender") {
    asio::io_context loop;
    MemoryBus bus(loop);
    std::vector<std::string> events_a, events_b, events_c, events_d;
    Node a(bus, node_settings("a")), b(bus, node_settings("b")), c(bus, node_settings("c")),
        d(bus, node_settings("d"));
    auto listening = [](std::vector<std::string>* events) {
      ServiceSchema s = math_service(events);
      s.metadata = Json{{kSharedEventSubjectKey, true}};
      return s;
    };
    a.broker->add_service(listening(&events_a));
    b.broker->add_service(listening(&events_b));
    c.broker->add_service(listening(&events_c));
    d.broker->add_service(math_service(&events_d));  // an older node: targeted EVENTs only
    for (Node* n : {&a, &b, &c, &d}) n->start(loop);
    REQUIRE(run_until(loop, [&] {
      const auto* list = a.broker->registry().find_action("math.add");
      return list && list->endpoints.size() == 4;
    }));
    const size_t before = bus.published.size();
    EmitOptions options;
    options.groups = {"math"};
    a.broker->broadcast_on_shared_subject("user.created", Json{{"n", 1}}, options);
    REQUIRE(run_until(loop, [&] { return events_b.size() + events_c.size() == 2; }));
    run_for(loop, 30);
    CHECK(events_b == std::vector<std::string>{"user.*|user.created|broadcast"});
    CHECK(events_c == std::vector<std::string>{"user.*|user.created|broadcast"});
    CHECK(events_a.empty());  // the sender's own packet is dropped
    CHECK(events_d.empty());  // not subscribed
    std::vector<Json> sent;
    for (size_t i = before; i < bus.published.size(); ++i) {
      if (bus.published[i].first.find("EVENT") != std::string::npos) {
        CHECK(bus.published[i].first == "MOL.EVENT");
        sent.push_back(Json::parse(bus.published[i].second));
      }
    }
    REQUIRE(sent.size() == 1);
    CHECK(sent[0]["broadcast"] == true);
    CHECK(sent[0]["groups"] == Json::array({"math"}));

    // broadcast() limited to some nodes: the older node alone gets its targeted EVENT.
    const size_t before_targeted = bus.published.size();
    options.remote_only = true;
    options.nodes = {"d"};
    a.broker->broadcast("user.removed", Json::object(), options);
    REQUIRE(run_until(loop, [&] { return events_d.size() == 1; }));
    run_for(loop, 30);
    CHECK(events_b.size() == 1);
    CHECK(events_c.size() == 1);
    for (size_t i = before_targeted; i < bus.published.size(); ++i) {
      if (bus.published[i].first.find("EVENT") != std::string::npos) {
        CHECK(bus.published[i].first == "MOL.EVENT.d");
      }
    }
  }

  TEST_CASE("a node that stops heartbeating expires and its pending calls are rejected") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node a(bus, node_settings("a")), b(bus, node_settings("b"));
    b.broker->add_service(math_service());
    a.start(loop);
    b.start(loop);
    REQUIRE(run_until(loop, [&] { return a.broker->registry().find_action("math.add"); }));
    std::optional<Outcome> result;
    a.broker->call("math.never", Json::object(), {}, [&](Outcome o) { result = o; });
    b.transporter->simulate_disconnect();
    REQUIRE(run_until(
        loop, [&] { return result.has_value(); }, 4000));
    CHECK(result->error.name == "RequestRejectedError");
    CHECK_FALSE(a.broker->registry().find_node("b")->available);
    CHECK(a.broker->registry().find_action("math.add") == nullptr);
    // b comes back: its heartbeat makes a DISCOVER it, and it is available again.
    b.transporter->simulate_reconnect();
    REQUIRE(run_until(
        loop, [&] { return a.broker->registry().find_node("b")->available; }, 4000));
    REQUIRE(run_until(loop, [&] { return a.broker->registry().find_action("math.add"); }));
  }

  TEST_CASE("stop sends INFO without services, then DISCONNECT, and no heartbeat after") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node a(bus, node_settings("a")), b(bus, node_settings("b"));
    a.start(loop);
    b.start(loop);
    REQUIRE(run_until(loop, [&] { return a.broker->registry().find_node("b"); }));
    bool stopped = false;
    b.broker->stop([&] { stopped = true; });
    REQUIRE(run_until(loop, [&] { return stopped; }));
    std::vector<std::string> tail;
    for (const auto& [subject, data] : bus.published) {
      if (Json::parse(data)["sender"] == "b") tail.push_back(subject);
    }
    REQUIRE(tail.size() >= 2);
    CHECK(tail[tail.size() - 1] == "MOL.DISCONNECT");
    CHECK(tail[tail.size() - 2] == "MOL.INFO");
    CHECK(packets_on(bus, "MOL.INFO").back()["services"] == Json::array());
    REQUIRE(run_until(loop, [&] { return !a.broker->registry().find_node("b")->available; }));
    run_for(loop, 400);
    CHECK(tail.size() == [&] {
      size_t n = 0;
      for (const auto& [subject, data] : bus.published) n += Json::parse(data)["sender"] == "b";
      return n;
    }());
  }

  TEST_CASE("a second node with a live nodeID refuses to start") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node a(bus, node_settings("same"));
    a.start(loop);
    Node twin(bus, node_settings("same"));
    std::optional<std::string> error;
    bool done = false;
    twin.broker->start([&](std::optional<std::string> e) {
      error = e;
      done = true;
    });
    REQUIRE(run_until(loop, [&] { return done; }));
    REQUIRE(error.has_value());
    CHECK(error->find("'same'") != std::string::npos);
    CHECK(a.broker->started());
  }

  TEST_CASE("services added after start raise seq and are announced") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node a(bus, node_settings("a")), b(bus, node_settings("b"));
    a.start(loop);
    b.start(loop);
    b.broker->add_service(math_service());
    REQUIRE(run_until(loop, [&] { return a.broker->registry().find_action("math.add"); }));
    CHECK(a.broker->registry().find_node("b")->seq == 2);
    b.broker->remove_service("math");
    REQUIRE(run_until(loop, [&] { return !a.broker->registry().find_action("math.add"); }));
  }

  TEST_CASE("nested calls propagate level, requestID, parentID, caller and meta") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node a(bus, node_settings("a")), b(bus, node_settings("b"));
    b.broker->add_service(math_service());
    ServiceSchema front;
    front.name = "front";
    Broker* broker_a = a.broker.get();
    ActionSchema relay;
    relay.raw_name = "relay";
    relay.handler = [broker_a](ContextPtr ctx, Respond respond) {
      CallOptions options;
      options.parent = ctx;
      broker_a->call("math.add", Json{{"a", 1}, {"b", 1}}, options,
                     [respond](Outcome o) { respond(o); });
    };
    front.actions.push_back(relay);
    a.broker->add_service(front);
    a.start(loop);
    b.start(loop);
    REQUIRE(run_until(loop, [&] { return a.broker->registry().find_action("math.add"); }));
    std::optional<Outcome> result;
    CallOptions options;
    options.meta = Json{{"user", "u1"}};
    a.broker->call("front.relay", Json::object(), options, [&](Outcome o) { result = o; });
    REQUIRE(run_until(loop, [&] { return result.has_value(); }));
    CHECK(result->data == 2);
    CHECK(result->meta["seen"] == true);  // meta changes travel back up the chain
    auto reqs = packets_on(bus, "MOL.REQ.b");
    REQUIRE(reqs.size() == 1);
    CHECK(reqs[0]["level"] == 2);
    CHECK(reqs[0]["caller"] == "front");
    CHECK(reqs[0]["meta"]["user"] == "u1");
    CHECK(reqs[0]["parentID"].is_string());
    CHECK(reqs[0]["requestID"] == reqs[0]["parentID"]);
  }

  TEST_CASE("protocol 5 sends headers and ignores protocol 4 peers") {
    asio::io_context loop;
    MemoryBus bus(loop);
    auto s5 = node_settings("v5");
    s5.protocol_version = "5";
    Node a(bus, s5), old(bus, node_settings("old"));
    old.start(loop);
    a.start(loop);
    run_for(loop, 300);
    CHECK(a.broker->registry().find_node("old") == nullptr);
    CHECK(a.broker->counters().version_mismatches > 0);
  }

  TEST_CASE("disableBalancer holds REQB/EVENTB queue subscriptions and routes through them") {
    asio::io_context loop;
    MemoryBus bus(loop);
    auto sa = node_settings("a"), sb = node_settings("b");
    sa.disable_balancer = sb.disable_balancer = true;
    std::vector<std::string> events_b;
    Node a(bus, sa), b(bus, sb);
    b.broker->add_service(math_service(&events_b));
    a.start(loop);
    b.start(loop);
    REQUIRE(run_until(loop, [&] { return a.broker->registry().find_action("math.add"); }));
    std::optional<Outcome> result;
    a.broker->call("math.add", Json{{"a", 40}, {"b", 2}}, {}, [&](Outcome o) { result = o; });
    REQUIRE(run_until(loop, [&] { return result.has_value(); }));
    CHECK(result->data == 42);
    CHECK(packets_on(bus, "MOL.REQB.math.add").size() == 1);
    a.broker->emit("user.created", Json::object());
    REQUIRE(run_until(loop, [&] { return events_b.size() == 1; }));
    CHECK(packets_on(bus, "MOL.EVENTB.math.user.created").size() == 1);
  }

  TEST_CASE("a REQ that the bus hands over twice runs once and is answered once") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node b(bus, node_settings("b"));
    int runs = 0;
    ServiceSchema s;
    s.name = "count";
    ActionSchema hit;
    hit.raw_name = "hit";
    hit.handler = [&runs](ContextPtr, Respond respond) { respond(Outcome::success(++runs)); };
    s.actions.push_back(hit);
    b.broker->add_service(s);
    b.start(loop);
    MemoryTransporter raw(bus);
    std::vector<Json> responses;
    transport::TransporterHandlers handlers;
    handlers.on_message = [&](const std::string&, std::string_view data) {
      responses.push_back(Json::parse(data));
    };
    raw.connect(handlers);
    raw.subscribe("MOL.RES.js");
    const std::string req =
        R"({"id":"r1","action":"count.hit","params":{},"meta":{},"ver":"4","sender":"js"})";
    raw.publish("MOL.REQ.b", req);
    raw.publish("MOL.REQ.b", req);
    // The same id from another sender is another request; a new id (a retry) runs again.
    raw.publish(
        "MOL.REQ.b",
        R"({"id":"r1","action":"count.hit","params":{},"meta":{},"ver":"4","sender":"js2"})");
    raw.publish(
        "MOL.REQ.b",
        R"({"id":"r2","action":"count.hit","params":{},"meta":{},"ver":"4","sender":"js"})");
    REQUIRE(run_until(loop, [&] { return responses.size() >= 2 && runs == 3; }));
    run_for(loop, 30);
    CHECK(runs == 3);
    REQUIRE(responses.size() == 2);  // RES to "js": r1 once, r2 once
    CHECK(responses[0]["id"] == "r1");
    CHECK(responses[1]["id"] == "r2");
    CHECK(b.broker->counters().duplicate_requests == 1);
  }

  TEST_CASE("on a bus without a balancer, disableBalancer is turned off with JS's warning") {
    asio::io_context loop;
    MemoryBus bus(loop);
    LogCapture log("broker");
    auto sa = node_settings("a"), sb = node_settings("b");
    sa.disable_balancer = sb.disable_balancer = true;
    auto ta = std::make_unique<MemoryTransporter>(bus);
    auto tb = std::make_unique<MemoryTransporter>(bus);
    ta->set_builtin_balancer(false);
    tb->set_builtin_balancer(false);
    auto a = std::make_unique<Broker>(loop, sa, std::move(ta));
    auto b = std::make_unique<Broker>(loop, sb, std::move(tb));
    CHECK(log.lines_with(
              "The MemoryTransporter has no built-in balancer. Broker balancer is ENABLED.") == 2);
    CHECK_FALSE(a->settings().disable_balancer);
    std::vector<std::string> events_b;
    b->add_service(math_service(&events_b));
    REQUIRE(testing::start_broker(loop, *a));
    REQUIRE(testing::start_broker(loop, *b));
    REQUIRE(run_until(loop, [&] { return a->registry().find_action("math.add"); }));
    std::optional<Outcome> result;
    a->call("math.add", Json{{"a", 1}, {"b", 2}}, {}, [&](Outcome o) { result = o; });
    REQUIRE(run_until(loop, [&] { return result.has_value(); }));
    CHECK(result->data == 3);
    a->emit("user.created", Json::object());
    REQUIRE(run_until(loop, [&] { return events_b.size() == 1; }));
    CHECK(packets_on(bus, "MOL.REQB.").empty());
    CHECK(packets_on(bus, "MOL.EVENTB.").empty());
    CHECK(packets_on(bus, "MOL.REQ.b").size() == 1);
    CHECK(packets_on(bus, "MOL.EVENT.b").size() == 1);
  }

  TEST_CASE("requests in flight fail at once, retryable, when the bus drops") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node a(bus, node_settings("a")), b(bus, node_settings("b"));
    b.broker->add_service(math_service());
    a.start(loop);
    b.start(loop);
    REQUIRE(run_until(loop, [&] { return a.broker->registry().find_action("math.never"); }));
    std::optional<Outcome> result;
    a.broker->call("math.never", Json::object(), {}, [&](Outcome o) { result = o; });
    run_for(loop, 30);
    REQUIRE_FALSE(result.has_value());  // no timeout set: it would wait forever
    a.transporter->simulate_disconnect();
    REQUIRE(run_until(
        loop, [&] { return result.has_value(); }, 1000));
    REQUIRE_FALSE(result->ok);
    CHECK(result->error.name == "BrokerDisconnectedError");
    CHECK(result->error.retryable);
  }

  TEST_CASE("a local event handler that throws is logged and counted, and the node keeps serving") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node a(bus, node_settings("a")), b(bus, node_settings("b"));
    std::vector<std::string> events_a;
    a.broker->add_service(math_service(&events_a));
    int reached = 0;
    ServiceSchema fragile;
    fragile.name = "fragile";
    fragile.events.push_back({"boom.*", "", [&reached](ContextPtr) {
                                ++reached;
                                throw std::runtime_error("kaput-event");
                              }});
    fragile.events.push_back({"odd.*", "", [&reached](ContextPtr) {
                                ++reached;
                                throw 42;  // not a std::exception
                              }});
    a.broker->add_service(fragile);
    LogCapture log("broker");
    a.start(loop);
    b.start(loop);
    REQUIRE(run_until(loop, [&] { return b.broker->registry().find_action("math.add"); }));
    const BrokerCounters& counters = a.broker->counters();
    REQUIRE(counters.handler_errors == 0);

    // Each way an event reaches a local handler: the handler runs once and one error is counted.
    auto expect_one_more = [&](int deliveries) {
      REQUIRE(run_until(loop, [&] { return reached == deliveries; }));
      run_for(loop, 20);  // nothing counted twice, nothing delivered twice
      CHECK(reached == deliveries);
      CHECK(counters.handler_errors == uint64_t(deliveries));
    };
    a.broker->emit("boom.local", Json::object());
    expect_one_more(1);
    a.broker->broadcast("boom.local", Json::object());
    expect_one_more(2);
    a.broker->broadcast_local("boom.local", Json::object());
    expect_one_more(3);
    const auto events_in = counters.events_in;
    b.broker->emit("boom.remote", Json::object());  // a remote EVENT: a is the only listener
    expect_one_more(4);
    b.broker->broadcast("odd.remote", Json::object());
    expect_one_more(5);
    CHECK(counters.events_in == events_in + 2);
    CHECK(log.lines_with("event handler 'boom.*' of 'fragile' threw: kaput-event") == 4);
    CHECK(log.lines_with("event handler 'odd.*' of 'fragile' threw") == 1);

    // The node keeps serving: events reach the other handlers, calls are answered.
    b.broker->emit("user.remote", Json::object());
    a.broker->emit("user.local", Json::object());
    REQUIRE(run_until(loop, [&] { return events_a.size() == 2; }));
    CHECK(std::count(events_a.begin(), events_a.end(), "user.*|user.remote|emit") == 1);
    CHECK(std::count(events_a.begin(), events_a.end(), "user.*|user.local|emit") == 1);
    std::optional<Outcome> remote, local;
    b.broker->call("math.add", Json{{"a", 1}, {"b", 2}}, {}, [&](Outcome o) { remote = o; });
    a.broker->call("math.add", Json{{"a", 3}, {"b", 4}}, {}, [&](Outcome o) { local = o; });
    REQUIRE(run_until(loop, [&] { return remote.has_value() && local.has_value(); }));
    CHECK(remote->data == 3);
    CHECK(local->data == 7);
    CHECK(counters.handler_errors == 5);
  }

  TEST_CASE("a throwing handler does not keep the other handlers of the event from running") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node a(bus, node_settings("a"));
    std::vector<std::string> events_a;
    ServiceSchema fragile;
    fragile.name = "fragile";
    fragile.events.push_back(
        {"user.*", "", [](ContextPtr) { throw std::runtime_error("first fails"); }});
    a.broker->add_service(fragile);
    a.broker->add_service(math_service(&events_a));  // after: its handler runs second
    a.start(loop);
    a.broker->broadcast("user.created", Json::object());
    REQUIRE(run_until(loop, [&] { return events_a.size() == 1; }));
    CHECK(a.broker->counters().handler_errors == 1);
  }
}
