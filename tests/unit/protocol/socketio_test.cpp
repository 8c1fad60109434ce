#include "protocol/socketio.hpp"

#include <doctest/doctest.h>

#include "protocol/engineio.hpp"

#include <string>
#include <vector>

using namespace steedos::protocol::sio;
using namespace std::string_literals;

namespace {

Packet make(Type type, std::string nsp, std::optional<uint64_t> ack_id, size_t attachments,
            std::string payload) {
  return Packet{type, std::move(nsp), ack_id, attachments, std::move(payload)};
}

const std::string kPh0 = "{\"_placeholder\":true,\"num\":0}";
const std::string kPh1 = "{\"_placeholder\":true,\"num\":1}";

}  // namespace

TEST_SUITE("socketio") {
  TEST_CASE("valid packets decode field by field and re-encode byte for byte") {
    struct Row {
      std::string text;
      Packet packet;
    };
    const std::vector<Row> rows = {
        {"0", make(Type::Connect, "/", {}, 0, "")},
        {"0{\"token\":\"123\"}", make(Type::Connect, "/", {}, 0, "{\"token\":\"123\"}")},
        {"0/custom,", make(Type::Connect, "/custom", {}, 0, "")},
        {"0/custom,{\"token\":\"abc\"}",
         make(Type::Connect, "/custom", {}, 0, "{\"token\":\"abc\"}")},
        {"1", make(Type::Disconnect, "/", {}, 0, "")},
        {"1/admin,", make(Type::Disconnect, "/admin", {}, 0, "")},
        {"2[\"message\",1,\"2\",{\"3\":[true]}]",
         make(Type::Event, "/", {}, 0, "[\"message\",1,\"2\",{\"3\":[true]}]")},
        {"2456[\"message-with-ack\",1,\"2\",{\"3\":[false]}]",
         make(Type::Event, "/", 456, 0, "[\"message-with-ack\",1,\"2\",{\"3\":[false]}]")},
        {"2/admin,1[\"tellme\"]", make(Type::Event, "/admin", 1, 0, "[\"tellme\"]")},
        {"2[42]", make(Type::Event, "/", {}, 0, "[42]")},
        {"2[-1.5e3,null]", make(Type::Event, "/", {}, 0, "[-1.5e3,null]")},
        {"2[\"connected\"]", make(Type::Event, "/", {}, 0, "[\"connected\"]")},
        {"3456[1,\"2\",{\"3\":[false]}]",
         make(Type::Ack, "/", 456, 0, "[1,\"2\",{\"3\":[false]}]")},
        {"30[]", make(Type::Ack, "/", 0, 0, "[]")},
        {"4/random,{\"message\":\"Invalid namespace\"}",
         make(Type::ConnectError, "/random", {}, 0, "{\"message\":\"Invalid namespace\"}")},
        {"4\"Not authorized\"", make(Type::ConnectError, "/", {}, 0, "\"Not authorized\"")},
        {"52-[\"message\"," + kPh0 + "," + kPh1 + "]",
         make(Type::BinaryEvent, "/", {}, 2, "[\"message\"," + kPh0 + "," + kPh1 + "]")},
        {"52-789[\"message-with-ack\"," + kPh0 + "," + kPh1 + "]",
         make(Type::BinaryEvent, "/", 789, 2, "[\"message-with-ack\"," + kPh0 + "," + kPh1 + "]")},
        {"61-/admin,1[" + kPh0 + "]", make(Type::BinaryAck, "/admin", 1, 1, "[" + kPh0 + "]")},
        {"510-[\"x\"]", make(Type::BinaryEvent, "/", {}, 10, "[\"x\"]")},
        {"2/a/b c,[\"x\"]", make(Type::Event, "/a/b c", {}, 0, "[\"x\"]")},
        {"218446744073709551615[\"x\"]", make(Type::Event, "/", UINT64_MAX, 0, "[\"x\"]")},
    };
    for (const Row& row : rows) {
      CAPTURE(row.text);
      const auto result = decode(row.text);
      REQUIRE_MESSAGE(result.ok(), error_text(result.error));
      CHECK(result.value == row.packet);
      CHECK(encode(result.value) == row.text);
    }
  }

  TEST_CASE("reference decoder quirks: namespace without comma, normalised re-encoding") {
    struct Row {
      std::string text;
      Packet packet;
      std::string reencoded;
    };
    const std::vector<Row> rows = {
        {"0/custom", make(Type::Connect, "/custom", {}, 0, ""), "0/custom,"},
        {"1/custom", make(Type::Disconnect, "/custom", {}, 0, ""), "1/custom,"},
        {"0/random", make(Type::Connect, "/random", {}, 0, ""), "0/random,"},
        {"2/,[\"x\"]", make(Type::Event, "/", {}, 0, "[\"x\"]"), "2[\"x\"]"},
        {"2007[\"x\"]", make(Type::Event, "/", 7, 0, "[\"x\"]"), "27[\"x\"]"},
        {"502-[\"x\"]", make(Type::BinaryEvent, "/", {}, 2, "[\"x\"]"), "52-[\"x\"]"},
        // Whitespace around the JSON is JSON's own: kept as received.
        {"2 [\"x\"] ", make(Type::Event, "/", {}, 0, " [\"x\"] "), "2 [\"x\"] "},
        // Everything up to the comma is the namespace, even JSON-looking text.
        {"2/x[\"a\"]", make(Type::Event, "/x[\"a\"]", {}, 0, ""), ""},
    };
    for (const Row& row : rows) {
      CAPTURE(row.text);
      const auto result = decode(row.text);
      if (row.reencoded.empty()) {
        // The namespace swallowed the payload: an EVENT without arguments is refused.
        CHECK(result.error == Error::InvalidPayload);
        continue;
      }
      REQUIRE_MESSAGE(result.ok(), error_text(result.error));
      CHECK(result.value == row.packet);
      CHECK(encode(result.value) == row.reencoded);
      CHECK(decode(row.reencoded).value == row.packet);
    }
  }

  TEST_CASE("malformed packets") {
    struct Row {
      std::string text;
      Error error;
    };
    const std::vector<Row> rows = {
        {"", Error::Empty},
        {"abc", Error::UnknownType},  // `4abc` at the Engine.IO level
        {"7", Error::UnknownType},
        {"9[\"x\"]", Error::UnknownType},
        {" 2[\"x\"]", Error::UnknownType},
        {"-", Error::UnknownType},
        {"2abc[\"message-with-ack\",1,\"2\",{\"3\":[false]}]", Error::InvalidJson},
        {"2{}", Error::InvalidPayload},
        {"2[]", Error::InvalidPayload},
        {"2", Error::InvalidPayload},
        {"2/admin,", Error::InvalidPayload},
        {"21", Error::InvalidPayload},
        {"2\"x\"", Error::InvalidPayload},
        {"2[null]", Error::InvalidPayload},
        {"2[true]", Error::InvalidPayload},
        {"2[[\"x\"]]", Error::InvalidPayload},
        {"2[{\"x\":1}]", Error::InvalidPayload},
        {"2[\"connect\"]", Error::InvalidPayload},
        {"2[\"connect_error\",1]", Error::InvalidPayload},
        {"2[\"disconnect\"]", Error::InvalidPayload},
        {"2[\"disconnecting\"]", Error::InvalidPayload},
        {"2[\"newListener\"]", Error::InvalidPayload},
        {"2[\"removeListener\"]", Error::InvalidPayload},
        {"2[\"conn\\u0065ct\"]", Error::InvalidPayload},  // escapes do not hide a reserved name
        {"52-[\"disconnect\"," + kPh0 + "]", Error::InvalidPayload},
        {"2[\"x\"", Error::InvalidJson},
        {"2[\"x\"]]", Error::InvalidJson},
        {"2[\"x\"] x", Error::InvalidJson},
        {"2['x']", Error::InvalidJson},
        {"2[\"x\",]", Error::InvalidJson},
        {"2[\"x\" /* c */]", Error::InvalidJson},
        {"2[\"\xff\"]", Error::InvalidJson},  // invalid UTF-8
        {"2[\"a\nb\"]", Error::InvalidJson},  // raw control character
        {"2[\"x\",NaN]", Error::InvalidJson},
        {"2\xEF\xBB\xBF[\"x\"]", Error::InvalidJson},  // BOM: JSON.parse refuses it
        {"2[\"x\"]\0junk"s, Error::InvalidJson},       // nlohmann stops at NUL
        {"2[\"x\0\"]"s, Error::InvalidJson},
        {"2[\"x\",01]", Error::InvalidJson},
        {"2 ", Error::InvalidJson},
        {"0[]", Error::InvalidPayload},
        {"0\"x\"", Error::InvalidPayload},
        {"0null", Error::InvalidPayload},
        {"1{}", Error::InvalidPayload},
        {"1/admin,{}", Error::InvalidPayload},
        {"3", Error::InvalidPayload},
        {"3{}", Error::InvalidPayload},
        {"4", Error::InvalidPayload},
        {"4[]", Error::InvalidPayload},
        {"41", Error::InvalidPayload},
        {"5", Error::InvalidAttachments},
        {"5[\"x\"]", Error::InvalidAttachments},
        {"5-[\"x\"]", Error::InvalidAttachments},
        {"50-[\"x\"]", Error::InvalidAttachments},
        {"52[\"x\"]", Error::InvalidAttachments},
        {"52", Error::InvalidAttachments},
        {"5 2-[\"x\"]", Error::InvalidAttachments},
        {"5+2-[\"x\"]", Error::InvalidAttachments},
        {"511-[\"x\"]", Error::TooManyAttachments},
        {"6999999999999999999999999-[]", Error::TooManyAttachments},
        {"52-", Error::InvalidPayload},
        {"52-{}", Error::InvalidPayload},
        {"218446744073709551616[\"x\"]", Error::InvalidAckId},
        {"52-[\"x\",{\"_placeholder\":true,\"num\":2}]", Error::InvalidPlaceholder},
        {"52-[\"x\",{\"_placeholder\":true,\"num\":-1}]", Error::InvalidPlaceholder},
        {"52-[\"x\",{\"_placeholder\":true,\"num\":0.5}]", Error::InvalidPlaceholder},
        {"52-[\"x\",{\"_placeholder\":true,\"num\":\"0\"}]", Error::InvalidPlaceholder},
        {"52-[\"x\",{\"_placeholder\":true}]", Error::InvalidPlaceholder},
        {"52-[\"x\",{\"_placeholder\":true,\"num\":0,\"num\":7}]", Error::InvalidPlaceholder},
        {"61-[{\"a\":[{\"_placeholder\":true,\"num\":1}]}]", Error::InvalidPlaceholder},
    };
    for (const Row& row : rows) {
      CAPTURE(row.text);
      const auto result = decode(row.text);
      CHECK_FALSE(result.ok());
      CHECK(result.error == row.error);
    }
  }

  TEST_CASE("spec examples through both layers, as they arrive in WebSocket text frames") {
    namespace eio = steedos::protocol::eio;
    struct Row {
      std::string frame;
      Error error;                 // None: valid
      std::string reencoded = {};  // when the encoder normalises the frame
    };
    const std::vector<Row> rows = {
        {"40", Error::None},
        {"40/custom", Error::None, "40/custom,"},
        {"41/custom", Error::None, "41/custom,"},
        {"40/custom,{\"token\":\"abc\"}", Error::None},
        {"44/random,{\"message\":\"Invalid namespace\"}", Error::None},
        {"42[\"message\",1,\"2\",{\"3\":[true]}]", Error::None},
        {"42456[\"message-with-ack\",1,\"2\",{\"3\":[false]}]", Error::None},
        {"43456[1,\"2\",{\"3\":[false]}]", Error::None},
        {"452-[\"message\"," + kPh0 + "," + kPh1 + "]", Error::None},
        {"452-789[\"message-with-ack\"," + kPh0 + "," + kPh1 + "]", Error::None},
        {"462-789[" + kPh0 + "," + kPh1 + "]", Error::None},
        {"461-/admin,1[" + kPh0 + "]", Error::None},
        {"4abc", Error::UnknownType},
        {"42{}", Error::InvalidPayload},
        {"42abc[\"message-with-ack\",1,\"2\",{\"3\":[false]}]", Error::InvalidJson},
        {"4511-[\"message\"]", Error::TooManyAttachments},
        {"42[\"disconnecting\"]", Error::InvalidPayload},
    };
    for (const Row& row : rows) {
      CAPTURE(row.frame);
      const auto outer = eio::decode_text_packet(row.frame);
      REQUIRE(outer.ok());
      REQUIRE(outer.value.type == eio::Type::Message);
      const auto inner = decode(outer.value.data);
      CHECK(inner.error == row.error);
      if (inner.ok()) {
        CHECK("4" + encode(inner.value) == (row.reencoded.empty() ? row.frame : row.reencoded));
      }
    }
  }

  TEST_CASE("attachment limit is configurable") {
    DecodeLimits limits;
    limits.max_attachments = 2;
    CHECK(decode("52-[\"x\"]", limits).ok());
    CHECK(decode("53-[\"x\"]", limits).error == Error::TooManyAttachments);
    limits.max_attachments = 100;
    CHECK(decode("511-[\"x\"]", limits).ok());
  }

  TEST_CASE("nesting depth limit") {
    const auto nested = [](size_t depth) {
      return "2[\"x\"," + std::string(depth - 1, '[') + std::string(depth - 1, ']') + "]";
    };
    DecodeLimits limits;
    limits.max_depth = 5;
    CHECK(decode(nested(5), limits).ok());
    CHECK(decode(nested(6), limits).error == Error::TooDeep);
    // The default bounds a hostile 1 MB payload without touching the stack.
    const std::string deep = "2" + std::string(500000, '[') + std::string(500000, ']');
    CHECK(decode(deep).error == Error::TooDeep);
    CHECK(decode("2" + std::string(100000, '[')).error == Error::TooDeep);  // not even closed
    std::string objects = "2[\"x\",";
    for (int i = 0; i < 100000; ++i) objects += R"({"a":)";
    objects += "1" + std::string(100000, '}') + "]";
    CHECK(decode(objects).error == Error::TooDeep);
    CHECK(std::string(error_text(Error::TooDeep)) == "JSON nested too deeply");
    // The default is kMaxBrowserJsonDepth, counting the event array itself.
    const size_t limit = steedos::protocol::kMaxBrowserJsonDepth;
    CHECK(decode(nested(limit)).ok());
    CHECK(decode(nested(limit + 1)).error == Error::TooDeep);
  }

  TEST_CASE("placeholder rule follows reconstructPacket") {
    // Extra keys, duplicate keys (last wins), nested positions, false placeholders.
    CHECK(placeholders_valid("[{\"_placeholder\":true,\"num\":0,\"x\":1}]", 1));
    CHECK(placeholders_valid("[{\"_placeholder\":true,\"num\":9,\"num\":0}]", 1));
    CHECK(placeholders_valid("[{\"_placeholder\":false,\"num\":9}]", 1));
    CHECK(placeholders_valid("[{\"_placeholder\":\"true\",\"num\":9}]", 1));
    CHECK(placeholders_valid("[{\"_placeholder\":true,\"_placeholder\":false}]", 1));
    CHECK_FALSE(placeholders_valid("[{\"_placeholder\":false,\"_placeholder\":true}]", 1));
    CHECK(placeholders_valid("[{\"a\":{\"b\":[{\"_placeholder\":true,\"num\":1.0}]}}]", 2));
    CHECK_FALSE(placeholders_valid("[{\"a\":{\"b\":[{\"_placeholder\":true,\"num\":2}]}}]", 2));
    CHECK(placeholders_valid("[{\"_placeholder\":true,\"num\":1e0}]", 2));
    // The reference replaces a placeholder without looking inside it.
    CHECK(placeholders_valid(
        "[{\"_placeholder\":true,\"num\":0,\"in\":{\"_placeholder\":true,\"num\":5}}]", 1));
    CHECK_FALSE(placeholders_valid(
        "[{\"_placeholder\":true,\"num\":5,\"in\":{\"_placeholder\":true,\"num\":0}}]", 1));
    // A placeholder-shaped object in a plain EVENT is just an object.
    CHECK(decode("2[\"x\",{\"_placeholder\":true,\"num\":3}]").ok());
    CHECK_FALSE(placeholders_valid("[", 1));
    CHECK(placeholder(0) == kPh0);
    CHECK(placeholder(12) == "{\"_placeholder\":true,\"num\":12}");
  }

  TEST_CASE("split_array returns raw element text") {
    struct Row {
      std::string json;
      std::vector<std::string> elements;
    };
    const std::vector<Row> rows = {
        {"[]", {}},
        {" [ ] ", {}},
        {"[1]", {"1"}},
        {"[\"message\",1,\"2\",{\"3\":[true]}]", {"\"message\"", "1", "\"2\"", "{\"3\":[true]}"}},
        {"[ \"a\" , -1.5e+3 ,\n\ttrue,null ,false]", {"\"a\"", "-1.5e+3", "true", "null", "false"}},
        {"[\"a,b]\",\"c\\\"d\",\"e\\\\\",\"[{\"]",
         {"\"a,b]\"", "\"c\\\"d\"", "\"e\\\\\"", "\"[{\""}},
        {"[[1,[2]],{\"a\":{\"b\":\"}\"}},[]]", {"[1,[2]]", "{\"a\":{\"b\":\"}\"}}", "[]"}},
        {"[{ \"k\" : [ 1 , 2 ] }]", {"{ \"k\" : [ 1 , 2 ] }"}},
        {"[\"\\u00e9\xc3\xa9\"]", {"\"\\u00e9\xc3\xa9\""}},
    };
    for (const Row& row : rows) {
      CAPTURE(row.json);
      const auto elements = split_array(row.json);
      REQUIRE(elements.has_value());
      REQUIRE(elements->size() == row.elements.size());
      for (size_t i = 0; i < row.elements.size(); ++i) CHECK((*elements)[i] == row.elements[i]);
    }
  }

  TEST_CASE("split_array refuses what is not an array") {
    for (const std::string json : {"",          " ",     "{}",   "1",    "\"[]\"",
                                   "[",         "]",     "[1",   "[1,]", "[,1]",
                                   "[1,,2]",    "[1 2]", "[1]x", "[1]]", "[\"a]",
                                   "[\"a\\\"]", "[[1]",  "[1]]", "[}",   "[\"x\"\"y\"]",
                                   "[1\"x\"]"}) {
      CAPTURE(json);
      CHECK_FALSE(split_array(json).has_value());
    }
  }

  TEST_CASE("join_array and split_array rebuild an echo byte for byte") {
    // The conformance suite echo: swap the event name, keep the other arguments' bytes.
    const auto packet = decode("2456[\"message-with-ack\",1,\"2\",{\"3\":[false]}]");
    REQUIRE(packet.ok());
    auto args = split_array(packet.value.payload);
    REQUIRE(args.has_value());
    CHECK(event_name(packet.value.payload) == std::optional<std::string>("message-with-ack"));
    std::vector<std::string_view> rest(args->begin() + 1, args->end());
    Packet ack{Type::Ack, "/", packet.value.ack_id, 0, join_array(rest)};
    CHECK(encode(ack) == "3456[1,\"2\",{\"3\":[false]}]");

    const std::vector<std::string_view> none;
    CHECK(join_array(none) == "[]");
    const std::vector<std::string_view> one = {"\"message-back\""};
    CHECK(join_array(one) == "[\"message-back\"]");
  }

  TEST_CASE("encode writes the namespace only when not the root") {
    CHECK(
        encode(make(Type::ConnectError, "/random", {}, 0, "{\"message\":\"Invalid namespace\"}")) ==
        "4/random,{\"message\":\"Invalid namespace\"}");
    CHECK(encode(make(Type::Connect, "/", {}, 0, "{\"sid\":\"abc\"}")) == "0{\"sid\":\"abc\"}");
    CHECK(encode(make(Type::Connect, "", {}, 0, "")) == "0");
    CHECK(encode(make(Type::Disconnect, "/custom", {}, 0, "")) == "1/custom,");
    CHECK(encode(make(Type::BinaryAck, "/", 789, 2, "[" + kPh0 + "," + kPh1 + "]")) ==
          "62-789[" + kPh0 + "," + kPh1 + "]");
  }

  TEST_CASE("event names") {
    CHECK(event_name("[\"a\\u0062c\",1]") == std::optional<std::string>("abc"));
    CHECK(event_name(" [ \"x\" ]") == std::optional<std::string>("x"));
    CHECK(event_name("[12,\"x\"]") == std::optional<std::string>("12"));
    CHECK_FALSE(event_name("[]").has_value());
    CHECK_FALSE(event_name("[null]").has_value());
    CHECK_FALSE(event_name("{}").has_value());
    CHECK_FALSE(event_name("[\"unterminated").has_value());
  }

  TEST_CASE("reserved event names: socket.io-parser's RESERVED_EVENTS, exact and case-sensitive") {
    for (const char* name : {"connect", "connect_error", "disconnect", "disconnecting",
                             "newListener", "removeListener"}) {
      CAPTURE(name);
      CHECK(is_reserved_event(name));
      // The decoder refuses an EVENT carrying it.
      CHECK(decode("2[\"" + std::string(name) + "\"]").error == Error::InvalidPayload);
    }
    for (const char* name : {"", "Connect", "connect ", "connection", "connection-init", "error",
                             "ping", "newlistener"}) {
      CAPTURE(name);
      CHECK_FALSE(is_reserved_event(name));
    }
  }

  TEST_CASE("binary packet builder collects attachments in order") {
    const auto decoded = decode("52-[\"message\"," + kPh0 + "," + kPh1 + "]");
    REQUIRE(decoded.ok());
    BinaryPacketBuilder builder(decoded.value, 6);
    CHECK(builder.expected() == 2);
    CHECK(builder.add("\x01\x02\x03") == BinaryPacketBuilder::Status::NeedMore);
    CHECK_FALSE(builder.complete());
    CHECK(builder.add("\x04\x05\x06") == BinaryPacketBuilder::Status::Complete);
    CHECK(builder.complete());
    CHECK(builder.add("extra") == BinaryPacketBuilder::Status::Complete);
    BinaryPacket packet = builder.take();
    CHECK(packet.packet == decoded.value);
    REQUIRE(packet.attachments.size() == 2);
    CHECK(packet.attachments[0] == "\x01\x02\x03");
    CHECK(packet.attachments[1] == "\x04\x05\x06");

    BinaryPacketBuilder small(decoded.value, 5);
    CHECK(small.add("\x01\x02\x03") == BinaryPacketBuilder::Status::NeedMore);
    CHECK(small.add("\x04\x05\x06") == BinaryPacketBuilder::Status::TooLarge);
    CHECK(small.add("") == BinaryPacketBuilder::Status::TooLarge);
    CHECK(small.received() == 1);
  }
}
