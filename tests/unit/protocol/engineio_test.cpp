#include "protocol/engineio.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace steedos::protocol::eio;
using namespace std::string_literals;

TEST_SUITE("engineio") {
  TEST_CASE("text packets: every type digit, payload kept verbatim") {
    struct Row {
      std::string text;
      Type type;
      std::string data;
    };
    const std::vector<Row> rows = {
        {"0{\"sid\":\"x\"}", Type::Open, "{\"sid\":\"x\"}"},
        {"1", Type::Close, ""},
        {"2", Type::Ping, ""},
        {"2probe", Type::Ping, "probe"},
        {"3probe", Type::Pong, "probe"},
        {"4hello", Type::Message, "hello"},
        {"4", Type::Message, ""},
        {"42[\"a\",1]", Type::Message, "2[\"a\",1]"},
        {"5", Type::Upgrade, ""},
        {"6", Type::Noop, ""},
        {"4\xc3\xa9\x00z"s, Type::Message, "\xc3\xa9\x00z"s},
    };
    for (const Row& row : rows) {
      CAPTURE(row.text);
      const auto result = decode_text_packet(row.text);
      REQUIRE(result.ok());
      CHECK(result.value.type == row.type);
      CHECK_FALSE(result.value.binary);
      CHECK(result.value.data == row.data);
      CHECK(encode_text_packet(result.value) == row.text);
    }
  }

  TEST_CASE("b<base64> is a binary message on any transport") {
    const auto result = decode_text_packet("bAQIDBA==");
    REQUIRE(result.ok());
    CHECK(result.value == Packet{Type::Message, true, "\x01\x02\x03\x04"});
    CHECK(encode_text_packet(result.value) == "bAQIDBA==");
    const auto empty = decode_text_packet("b");
    REQUIRE(empty.ok());
    CHECK(empty.value == Packet{Type::Message, true, ""});
  }

  TEST_CASE("malformed text packets") {
    struct Row {
      std::string text;
      Error error;
    };
    const std::vector<Row> rows = {
        {"", Error::Empty},
        {"7", Error::UnknownType},
        {"9x", Error::UnknownType},
        {"a", Error::UnknownType},
        {"abc", Error::UnknownType},
        {"/", Error::UnknownType},
        {" 4", Error::UnknownType},
        {"\x1e", Error::UnknownType},
        {"\xff", Error::UnknownType},
        {"B", Error::UnknownType},
        {"bAQIDBA=", Error::InvalidBase64},
        {"bAQIDBA", Error::InvalidBase64},
        {"bAQ=DBA==", Error::InvalidBase64},
        {"b====", Error::InvalidBase64},
        {"bAQID BA=", Error::InvalidBase64},
        {"bAR==", Error::InvalidBase64},
        {"bAR==AAAA", Error::InvalidBase64},
        {"b-_8A", Error::InvalidBase64},  // base64url alphabet
    };
    for (const Row& row : rows) {
      CAPTURE(row.text);
      const auto result = decode_text_packet(row.text);
      CHECK_FALSE(result.ok());
      CHECK(result.error == row.error);
      CHECK(std::string(error_text(result.error)).size() > 0);
    }
  }

  TEST_CASE("polling payloads split on the record separator") {
    const auto result = decode_polling_payload(
        "4hello\x1e"
        "bAQIDBA==");
    REQUIRE(result.ok());
    REQUIRE(result.value.size() == 2);
    CHECK(result.value[0] == Packet{Type::Message, false, "hello"});
    CHECK(result.value[1] == Packet{Type::Message, true, "\x01\x02\x03\x04"});
    CHECK(encode_polling_payload(result.value) ==
          "4hello\x1e"
          "bAQIDBA==");

    const auto many = decode_polling_payload(
        "42[\"hello\"]\x1e"
        "42[\"world\"]\x1e"
        "3\x1e"
        "1");
    REQUIRE(many.ok());
    REQUIRE(many.value.size() == 4);
    CHECK(many.value[1].data == "2[\"world\"]");
    CHECK(many.value[3].type == Type::Close);
  }

  TEST_CASE("polling decoding stops at the first bad packet and keeps the good ones") {
    struct Row {
      std::string body;
      Error error;
      size_t decoded_before;
    };
    const std::vector<Row> rows = {
        {"", Error::Empty, 0},
        {"\x1e", Error::Empty, 0},
        {"4a\x1e", Error::Empty, 1},
        {"4a\x1e\x1e"
         "4b",
         Error::Empty, 1},
        {"4a\x1e"
         "x\x1e"
         "4b",
         Error::UnknownType, 1},
        {"4a\x1e"
         "4b\x1e"
         "b!!!!",
         Error::InvalidBase64, 2},
        {"8", Error::UnknownType, 0},
    };
    for (const Row& row : rows) {
      CAPTURE(row.body);
      const auto result = decode_polling_payload(row.body);
      CHECK(result.error == row.error);
      CHECK(result.value.size() == row.decoded_before);
    }
  }

  TEST_CASE("polling packet limit") {
    CHECK(decode_polling_payload("2\x1e"
                                 "3\x1e"
                                 "6",
                                 3)
              .ok());
    const auto result = decode_polling_payload(
        "2\x1e"
        "3\x1e"
        "6\x1e"
        "6",
        3);
    CHECK(result.error == Error::TooManyPackets);
    CHECK(result.value.size() == 3);
  }

  TEST_CASE("base64 round trip for every length and byte") {
    std::string bytes;
    for (int i = 0; i < 300; ++i) {
      const std::string encoded = base64_encode(bytes);
      CHECK(encoded.size() == (bytes.size() + 2) / 3 * 4);
      const auto decoded = base64_decode(encoded);
      REQUIRE(decoded.has_value());
      CHECK(*decoded == bytes);
      bytes.push_back(static_cast<char>(i * 37));
    }
    CHECK(base64_encode("") == "");
    CHECK(base64_encode("f") == "Zg==");
    CHECK(base64_encode("fo") == "Zm8=");
    CHECK(base64_encode("foo") == "Zm9v");
    CHECK(base64_encode("foob") == "Zm9vYg==");
    CHECK(base64_encode("\xfb\xff") == "+/8=");
    CHECK(base64_decode("+/8=") == std::optional<std::string>("\xfb\xff"));
    CHECK_FALSE(base64_decode("Zh==").has_value());  // non-zero pad bits
    CHECK_FALSE(base64_decode("Zm9=").has_value());
    CHECK_FALSE(base64_decode("Zm9v\n").has_value());
  }
}
