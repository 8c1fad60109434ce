#include "protocol/json_reader.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using steedos::Json;
using steedos::protocol::JsonRefusal;
using steedos::protocol::kMaxPacketJsonDepth;
using steedos::protocol::parse_json;
using steedos::protocol::reserved_object;

namespace {

/// parse_json must agree with nlohmann's own DOM parser, value and key order alike.
void check_same_as_nlohmann(const std::string& text) {
  CAPTURE(text);
  const Json expected = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  const auto parsed = parse_json(text);
  if (expected.is_discarded()) {
    CHECK_FALSE(parsed.has_value());
  } else {
    REQUIRE(parsed.has_value());
    CHECK(*parsed == expected);
    CHECK(parsed->dump() == expected.dump());
  }
}

}  // namespace

TEST_SUITE("json_reader") {
  TEST_CASE("the same documents as Json::parse, key order included") {
    for (const std::string text : {
             R"({"ver":"4","sender":"n1","id":"x","params":{"b":1,"a":[1,2,{"z":null,"y":true}]}})",
             R"([])",
             R"({})",
             R"([[],[{}],{"":""}])",
             R"("text")",
             R"(-0)",
             R"(1.5e300)",
             R"(18446744073709551615)",
             R"(-9223372036854775808)",
             R"("\u00e9\ud83d\ude00\n")",
             R"({"dup":1,"other":2,"dup":3})",
             R"({"a":{"dup":[1],"dup":{"x":1}}})",
             R"(  {"spaces" : [ 1 , 2 ] }  )",
             R"(null)",
             R"(true)",
         }) {
      check_same_as_nlohmann(text);
    }
  }

  TEST_CASE("invalid text is refused, as by Json::parse") {
    for (const std::string text : {"", "{", "[1,2", R"({"a":})", "[1,2]x", "{'a':1}", R"({"a":1,})",
                                   "nul", R"("\x")", "\"\xff\"", "[1]\n[2]", "/* c */ 1"}) {
      check_same_as_nlohmann(text);
    }
  }

  TEST_CASE("a failed parse leaves nothing behind for the next one") {
    CHECK_FALSE(parse_json(R"({"a":[1,{"b":[2,)").has_value());
    const auto next = parse_json(R"({"c":[3]})");
    REQUIRE(next.has_value());
    CHECK(next->dump() == R"({"c":[3]})");
  }

  TEST_CASE("deep and wide documents") {
    const std::string deep =
        std::string(kMaxPacketJsonDepth, '[') + std::string(kMaxPacketJsonDepth, ']');
    check_same_as_nlohmann(deep);
    std::string wide = "{";
    for (int i = 0; i < 5000; ++i)
      wide += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":" + std::to_string(i);
    wide += "}";
    check_same_as_nlohmann(wide);
    check_same_as_nlohmann(R"({"after":"big ones"})");
  }

  TEST_CASE("nesting: the limit is accepted, one level more is refused as too deep") {
    const auto nested = [](size_t depth, bool objects) {
      std::string text;
      for (size_t i = 0; i < depth; ++i) text += objects ? R"({"a":)" : "[";
      text += "1";
      text += std::string(depth, objects ? '}' : ']');
      return text;
    };
    const auto arrays = [&nested](size_t depth) { return nested(depth, false); };
    for (size_t limit : {size_t{1}, size_t{5}, kMaxPacketJsonDepth}) {
      CAPTURE(limit);
      for (bool objects : {false, true}) {
        auto why = JsonRefusal::Invalid;
        const auto at = parse_json(nested(limit, objects), limit, &why);
        REQUIRE(at.has_value());
        CHECK(*at == Json::parse(nested(limit, objects)));
        CHECK_FALSE(parse_json(nested(limit + 1, objects), limit, &why).has_value());
        CHECK(why == JsonRefusal::TooDeep);
      }
    }
    CHECK(parse_json("1", 0).has_value());  // scalars have no depth
    CHECK_FALSE(parse_json("[]", 0).has_value());
    CHECK(parse_json(arrays(kMaxPacketJsonDepth)).has_value());  // the default limit
    CHECK_FALSE(parse_json(arrays(kMaxPacketJsonDepth + 1)).has_value());
  }

  TEST_CASE("100,000 levels of arrays or objects: refused as too deep, no crash") {
    const std::string arrays = std::string(100000, '[') + std::string(100000, ']');
    std::string objects;
    for (int i = 0; i < 100000; ++i) objects += R"({"a":)";
    objects += "null" + std::string(100000, '}');
    const std::string unclosed = std::string(100000, '[');  // also invalid: too deep comes first
    for (const std::string* text : std::vector<const std::string*>{&arrays, &objects, &unclosed}) {
      auto why = JsonRefusal::Invalid;
      CHECK_FALSE(parse_json(*text, kMaxPacketJsonDepth, &why).has_value());
      CHECK(why == JsonRefusal::TooDeep);
    }
    auto why = JsonRefusal::TooDeep;
    CHECK_FALSE(parse_json("[[1]", kMaxPacketJsonDepth, &why).has_value());
    CHECK(why == JsonRefusal::Invalid);
    // The reused frame stack is back to normal for the next document.
    const auto next = parse_json(R"({"c":[3]})");
    REQUIRE(next.has_value());
    CHECK(next->dump() == R"({"c":[3]})");
  }

  TEST_CASE("reserved_object is an empty object that fills without moving") {
    Json object = reserved_object(4);
    CHECK(object.is_object());
    CHECK(object.empty());
    object["a"] = 1;
    const auto* first = &object.begin().value();
    object["b"] = 2;
    object["c"] = 3;
    object["d"] = 4;
    CHECK(&object.begin().value() == first);
    CHECK(object.dump() == R"({"a":1,"b":2,"c":3,"d":4})");
  }
}
