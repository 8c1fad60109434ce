// The packet bodies on the wire: keys in moleculer's order, protocol 4 vs 5, and the readers of
// incoming REQ, EVENT and RES packets.
#include "moleculer/packets.hpp"

#include <doctest/doctest.h>

using namespace steedos;
using namespace steedos::moleculer;

namespace {

std::vector<std::string> keys_of(const Json& object) {
  std::vector<std::string> keys;
  for (const auto& item : object.items()) keys.push_back(item.key());
  return keys;
}

Context nested_context() {
  Context ctx;
  ctx.id = "ctx-1";
  ctx.request_id = "req-1";
  ctx.parent_id = "parent-1";
  ctx.caller = "front";
  ctx.level = 2;
  ctx.name = "user.created";
  ctx.params = Json{{"id", 7}};
  ctx.meta = Json{{"user", "u1"}};
  ctx.headers = Json{{"h", 1}};
  ctx.timeout_ms = 1500;
  return ctx;
}

}  // namespace

TEST_SUITE("packets") {
  TEST_CASE("EVENT: keys in order, headers only in protocol 5, groups only when given") {
    const Context ctx = nested_context();
    const std::vector<std::string> groups{"g1", "g2"};
    Json v4 = packets::event_packet(ctx, "ev-1", &groups, false, "4");
    CHECK(keys_of(v4) == std::vector<std::string>{"id", "event", "data", "groups", "broadcast",
                                                  "meta", "level", "tracing", "parentID",
                                                  "requestID", "caller", "needAck"});
    CHECK(v4.dump() ==
          R"({"id":"ev-1","event":"user.created","data":{"id":7},"groups":["g1","g2"],)"
          R"("broadcast":false,"meta":{"user":"u1"},"level":2,"tracing":null,)"
          R"("parentID":"parent-1","requestID":"req-1","caller":"front","needAck":null})");
    Json v5 = packets::event_packet(ctx, "ev-2", nullptr, true, "5");
    CHECK(keys_of(v5) == std::vector<std::string>{"id", "event", "data", "broadcast", "meta",
                                                  "headers", "level", "tracing", "parentID",
                                                  "requestID", "caller", "needAck"});
    CHECK(v5["id"] == "ev-2");
    CHECK(v5["broadcast"] == true);
    CHECK(v5["headers"] == Json{{"h", 1}});
  }

  TEST_CASE("EVENT and REQ of a root context carry null parentID and caller") {
    Context ctx;
    ctx.id = ctx.request_id = "root";
    ctx.name = "math.add";
    Json event = packets::event_packet(ctx, "root", nullptr, false, "4");
    CHECK(event["parentID"].is_null());
    CHECK(event["caller"].is_null());
    Json req = packets::request_packet(ctx, "4");
    CHECK(req["parentID"].is_null());
    CHECK(req["caller"].is_null());
    CHECK(req["requestID"] == "root");
  }

  TEST_CASE("REQ: keys in order, headers only in protocol 5") {
    Context ctx = nested_context();
    ctx.name = "math.add";
    Json v4 = packets::request_packet(ctx, "4");
    CHECK(v4.dump() ==
          R"({"id":"ctx-1","action":"math.add","params":{"id":7},"meta":{"user":"u1"},)"
          R"("timeout":1500,"level":2,"tracing":null,"parentID":"parent-1",)"
          R"("requestID":"req-1","caller":"front","stream":false})");
    Json v5 = packets::request_packet(ctx, "5");
    CHECK(keys_of(v5) == std::vector<std::string>{"id", "action", "params", "meta", "headers",
                                                  "timeout", "level", "tracing", "parentID",
                                                  "requestID", "caller", "stream"});
  }

  TEST_CASE("RES: merged meta, data or error, headers only in protocol 5") {
    const Context ctx = nested_context();
    Outcome ok = Outcome::success(5);
    ok.meta = Json{{"seen", true}};
    CHECK(packets::response_packet(ctx, ok, "4", "b").dump() ==
          R"({"id":"ctx-1","meta":{"user":"u1","seen":true},"success":true,"data":5})");
    CHECK(packets::response_packet(ctx, Outcome::nothing(), "5", "b").dump() ==
          R"({"id":"ctx-1","meta":{"user":"u1"},"headers":{},"success":true})");
    Json failed = packets::response_packet(
        ctx, Outcome::failure(protocol::errors::internal_error("kaput")), "4", "b");
    CHECK(keys_of(failed) == std::vector<std::string>{"id", "meta", "success", "data", "error"});
    CHECK(failed["data"].is_null());
    CHECK(failed["error"]["nodeID"] == "b");  // the answering node when the error has none
  }

  TEST_CASE("INFO, HEARTBEAT, PING, PONG, DISCOVER and DISCONNECT bodies") {
    NodeInfo self;
    self.instance_id = "inst";
    self.seq = 3;
    self.services = Json::array({Json{{"name", "math"}}});
    CHECK(keys_of(packets::info_packet(self, self.services)) ==
          std::vector<std::string>{"services", "ipList", "hostname", "client", "config",
                                   "instanceID", "metadata", "seq"});
    Json leaving = packets::info_packet(self, Json::array());
    CHECK(leaving["services"] == Json::array());
    CHECK(leaving["instanceID"] == "inst");
    CHECK(leaving["seq"] == 3);
    CHECK(packets::heartbeat_packet(12).dump() == R"({"cpu":12})");
    CHECK(packets::ping_packet(1000, "p1").dump() == R"({"time":1000,"id":"p1"})");
    CHECK(packets::pong_packet(Json{{"time", 1000}, {"id", "p1"}}, 1005).dump() ==
          R"({"time":1000,"id":"p1","arrived":1005})");
    CHECK(packets::pong_packet(Json{{"id", "p2"}}, 1005).dump() ==
          R"({"time":null,"id":"p2","arrived":1005})");
    CHECK(packets::discover_packet().dump() == "{}");
    CHECK(packets::disconnect_packet().dump() == "{}");
  }

  TEST_CASE("readers: REQ and EVENT contexts, RES outcomes") {
    Json req =
        Json::parse(R"({"ver":"4","sender":"js","id":"r1","action":"math.add","params":{"a":1},)"
                    R"("meta":{"m":1},"timeout":250.0,"level":3,"parentID":"p","requestID":null})");
    ContextPtr call = packets::request_context(req);
    CHECK(call->node_id == "js");
    CHECK(call->name == "math.add");
    CHECK(call->request_id == "r1");  // none given: the call starts a chain
    CHECK(call->parent_id == "p");
    CHECK(call->level == 3);
    CHECK(call->timeout_ms == 250);
    CHECK(call->params == Json{{"a", 1}});
    CHECK(call->meta == Json{{"m", 1}});

    Json event =
        Json::parse(R"({"ver":"4","sender":"js","id":"e1","event":"user.created","data":null,)"
                    R"("groups":["g",1],"broadcast":true,"requestID":"q"})");
    ContextPtr ctx = packets::event_context(event);
    CHECK(ctx->event_type == "broadcast");
    CHECK(ctx->node_id == "js");
    CHECK(ctx->params.is_null());
    CHECK(packets::string_list(event, "groups") == std::vector<std::string>{"g"});

    Json res = Json::parse(R"({"ver":"4","sender":"b","id":"r1","success":false,)"
                           R"("error":{"name":"MoleculerError","message":"x","code":500}})");
    Outcome failed = packets::response_outcome(res);
    CHECK_FALSE(failed.ok);
    CHECK(failed.error.nodeID == "b");
    Json empty = Json::parse(R"({"ver":"4","sender":"b","id":"r1","success":true,"meta":{}})");
    CHECK_FALSE(packets::response_outcome(empty).has_data);
  }
}
