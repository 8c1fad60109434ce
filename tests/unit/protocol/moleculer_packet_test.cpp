#include "protocol/moleculer_packet.hpp"

#include <doctest/doctest.h>

#include "protocol/moleculer_error.hpp"

using namespace steedos;
using namespace steedos::protocol;

TEST_SUITE("moleculer_packet") {
  TEST_CASE("subjects with and without a namespace") {
    Topics plain("");
    CHECK(plain.broadcast(PacketType::Discover) == "MOL.DISCOVER");
    CHECK(plain.targeted(PacketType::Request, "node-1") == "MOL.REQ.node-1");
    CHECK(plain.targeted(PacketType::Pong, "n") == "MOL.PONG.n");
    Topics steedos_ns("steedos");
    CHECK(steedos_ns.broadcast(PacketType::Heartbeat) == "MOL-steedos.HEARTBEAT");
    CHECK(steedos_ns.targeted(PacketType::Info, "a") == "MOL-steedos.INFO.a");
  }

  TEST_CASE("balanced subjects follow the JS NATS transporter") {
    Topics t("");
    CHECK(t.balanced_request("socket.emit") == "MOL.REQB.socket.emit");
    CHECK(t.balanced_event("objects", "$broadcast.socket.emit") ==
          "MOL.EVENTB.objects.$broadcast.socket.emit");
    CHECK(t.balanced_event("objects", "@objectRecordEvent.*.*") ==
          "MOL.EVENTB.objects.@objectRecordEvent.*.*");
    CHECK(t.balanced_event("audit", "audit.**") == "MOL.EVENTB.audit.audit.>");
    CHECK(t.balanced_event("g", "a.**.b") == "MOL.EVENTB.g.a.>");
  }

  TEST_CASE("classify maps subjects to packet types") {
    Topics t("ns");
    CHECK(t.classify("MOL-ns.REQ.me") == PacketType::Request);
    CHECK(t.classify("MOL-ns.REQB.socket.emit") == PacketType::Request);
    CHECK(t.classify("MOL-ns.EVENTB.socket.$metadata.objects") == PacketType::Event);
    CHECK(t.classify("MOL-ns.HEARTBEAT") == PacketType::Heartbeat);
    CHECK(t.classify("MOL-ns.DISCONNECT") == PacketType::Disconnect);
    CHECK_FALSE(t.classify("MOL.REQ.me").has_value());      // other namespace
    CHECK_FALSE(t.classify("MOL-nsx.REQ.me").has_value());  // prefix must end at a dot
    CHECK_FALSE(t.classify("MOL-ns.GOSSIP_REQ").has_value());
    CHECK_FALSE(t.classify("MOL-ns").has_value());
  }

  TEST_CASE("decode accepts captured JS packets") {
    auto res = decode_packet(
        PacketType::Response,
        R"({"id":"62f0","meta":{"user":"bob"},"success":true,"data":{"id":"42"},"ver":"4","sender":"node-svc"})",
        "4");
    REQUIRE(res.ok());
    CHECK(res.sender == "node-svc");
    CHECK(res.payload["data"]["id"] == "42");
    auto req = decode_packet(
        PacketType::Request,
        R"({"id":"c338","action":"v2.greeter.hello","params":{"name":"John"},"meta":{"a":1},"headers":{"h":1},"timeout":3000,"level":1,"tracing":null,"parentID":null,"requestID":"c338","caller":null,"stream":false,"ver":"5","sender":"js-b"})",
        "5");
    REQUIRE(req.ok());
    CHECK(req.payload["headers"]["h"] == 1);
  }

  TEST_CASE("decode rejects malformed packets with a reason") {
    CHECK(decode_packet(PacketType::Info, "{not json", "4").error == DecodeError::InvalidJson);
    CHECK(decode_packet(PacketType::Info, "[1,2]", "4").error == DecodeError::NotAnObject);
    CHECK(decode_packet(PacketType::Info, R"({"ver":"4"})", "4").error ==
          DecodeError::MissingSender);
    CHECK(decode_packet(PacketType::Info, R"({"ver":"4","sender":""})", "4").error ==
          DecodeError::MissingSender);
    auto numeric = decode_packet(PacketType::Info, R"({"ver":4,"sender":"x"})", "4");
    CHECK(numeric.error == DecodeError::VersionMismatch);  // JS compares with !==
    CHECK(numeric.received_version == "4");
    auto v5 = decode_packet(PacketType::Heartbeat, R"({"ver":"5","sender":"x","cpu":3})", "4");
    CHECK(v5.error == DecodeError::VersionMismatch);
    CHECK(v5.received_version == "5");
    CHECK(decode_packet(PacketType::Request, R"({"ver":"4","sender":"x","id":"1"})", "4").error ==
          DecodeError::MissingField);
    CHECK(decode_packet(PacketType::Response, R"({"ver":"4","sender":"x","id":"1"})", "4").error ==
          DecodeError::MissingField);
    CHECK(decode_packet(PacketType::Event, R"({"ver":"4","sender":"x","event":5})", "4").error ==
          DecodeError::MissingField);
    CHECK(decode_packet(PacketType::Info, "", "4").error == DecodeError::InvalidJson);
  }

  TEST_CASE("decode refuses a packet nested deeper than kMaxPacketJsonDepth") {
    using steedos::protocol::kMaxPacketJsonDepth;
    // An EVENT whose data nests `levels` arrays or objects; the packet object itself is one more.
    const auto event = [](size_t levels, bool objects) {
      std::string data;
      for (size_t i = 0; i < levels; ++i) data += objects ? R"({"a":)" : "[";
      data += "1";
      data += std::string(levels, objects ? '}' : ']');
      return R"({"ver":"4","sender":"x","event":"e","data":)" + data + "}";
    };
    for (bool objects : {false, true}) {
      CAPTURE(objects);
      CHECK(decode_packet(PacketType::Event, event(kMaxPacketJsonDepth - 1, objects), "4").ok());
      const auto over = decode_packet(PacketType::Event, event(kMaxPacketJsonDepth, objects), "4");
      CHECK(over.error == DecodeError::TooDeep);
      CHECK(over.detail.find("nested deeper") != std::string::npos);
      const auto hostile = decode_packet(PacketType::Event, event(100000, objects), "4");
      CHECK(hostile.error == DecodeError::TooDeep);
    }
    // Bare 100,000-deep documents, closed or not.
    CHECK(decode_packet(PacketType::Event, std::string(100000, '['), "4").error ==
          DecodeError::TooDeep);
    CHECK(decode_packet(PacketType::Event, std::string(100000, '[') + std::string(100000, ']'), "4")
              .error == DecodeError::TooDeep);
  }

  TEST_CASE("encode appends ver and sender last and survives invalid UTF-8") {
    Json payload = Json::object();
    payload["cpu"] = 12;
    CHECK(encode_packet(payload, "4", "cpp-1") == R"({"cpu":12,"ver":"4","sender":"cpp-1"})");
    Json bad = Json::object();
    bad["text"] = std::string(
        "a\xff"
        "b");
    CHECK(encode_packet(bad, "5", "n") ==
          "{\"text\":\"a\xEF\xBF\xBD"
          "b\",\"ver\":\"5\",\"sender\":\"n\"}");
  }
}

TEST_SUITE("moleculer_error") {
  TEST_CASE("typed errors carry the JS names, codes and data") {
    auto e = errors::service_not_found("cpp.nothere", "cpp-1");
    auto wire = e.to_json();
    CHECK(wire["name"] == "ServiceNotFoundError");
    CHECK(wire["code"] == 404);
    CHECK(wire["type"] == "SERVICE_NOT_FOUND");
    CHECK(wire["retryable"] == true);
    CHECK(wire["data"] == Json{{"action", "cpp.nothere"}, {"nodeID", "cpp-1"}});
    CHECK(wire["message"] == "Service 'cpp.nothere' is not found on 'cpp-1' node.");
    CHECK(errors::service_not_found("x", "").message == "Service 'x' is not found.");
    CHECK(errors::request_timeout("a", "n").to_json()["code"] == 504);
    CHECK(errors::request_rejected("a", "n").retryable);
    CHECK_FALSE(errors::validation("bad", Json::array()).retryable);
    CHECK(errors::validation("bad", Json::array()).code == 422);
  }

  TEST_CASE("from_json rebuilds what a JS node sent") {
    Json wire = Json::parse(
        R"({"name":"MoleculerClientError","message":"Bad thing","nodeID":"js-a","code":422,"type":"BAD_THING","retryable":false,"stack":"...","data":{"x":1}})");
    auto e = MoleculerError::from_json(wire, "js-a");
    CHECK(e.name == "MoleculerClientError");
    CHECK(e.code == 422);
    CHECK(e.type == "BAD_THING");
    CHECK(e.data["x"] == 1);
    auto plain =
        MoleculerError::from_json(Json::parse(R"({"name":"Error","message":"boom"})"), "s");
    CHECK(plain.nodeID == "s");
    CHECK(plain.code == 500);
    CHECK_FALSE(plain.retryable);  // missing retryable means not retryable, as in JS
    auto garbage = MoleculerError::from_json(Json("oops"), "s");
    CHECK(garbage.name == "MoleculerError");
  }
}
