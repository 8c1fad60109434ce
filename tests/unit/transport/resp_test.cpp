// Test that header file is self-contained.
#include "transport/resp.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using steedos::transport::format_command;
using steedos::transport::RespDecoder;
using steedos::transport::RespReply;
using Result = RespDecoder::Result;
using Type = RespReply::Type;

namespace {

/// Feeds `wire` one byte at a time and collects every reply.
std::vector<RespReply> feed_bytewise(RespDecoder& decoder, const std::string& wire) {
  std::vector<RespReply> replies;
  for (char c : wire) {
    decoder.feed(&c, 1);
    RespReply reply;
    Result r;
    while ((r = decoder.next(reply)) == Result::reply) replies.push_back(reply);
    REQUIRE_MESSAGE(r == Result::need_more, decoder.error());
  }
  return replies;
}

}  // namespace

TEST_SUITE("resp") {
  TEST_CASE("format_command writes RESP arrays of bulk strings, binary safe") {
    CHECK(format_command({"SUBSCRIBE", "MOL-steedos.REQ.socket-1"}) ==
          "*2\r\n$9\r\nSUBSCRIBE\r\n$24\r\nMOL-steedos.REQ.socket-1\r\n");
    const std::string payload("a\0\r\nb", 5);
    CHECK(format_command({"PUBLISH", "c", payload}) ==
          std::string("*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$5\r\na\0\r\nb\r\n", 35));
    CHECK(format_command({"PING"}) == "*1\r\n$4\r\nPING\r\n");
  }

  TEST_CASE("a pub/sub message and a subscribed PING reply, fed one byte at a time") {
    RespDecoder decoder;
    const std::string wire =
        "*3\r\n$7\r\nmessage\r\n$21\r\nMOL-steedos.HEARTBEAT\r\n$36\r\n"
        "{\"cpu\":50,\"ver\":\"4\",\"sender\":\"js14\"}\r\n"
        "*2\r\n$4\r\npong\r\n$0\r\n\r\n";
    const auto replies = feed_bytewise(decoder, wire);
    REQUIRE(replies.size() == 2);
    REQUIRE(replies[0].type == Type::array);
    REQUIRE(replies[0].elements.size() == 3);
    CHECK(replies[0].elements[0].is_text("message"));
    CHECK(replies[0].elements[1].text == "MOL-steedos.HEARTBEAT");
    CHECK(replies[0].elements[2].text == R"({"cpu":50,"ver":"4","sender":"js14"})");
    REQUIRE(replies[1].type == Type::array);
    REQUIRE(replies[1].elements.size() == 2);
    CHECK(replies[1].elements[0].is_text("pong"));
    CHECK(replies[1].elements[1].type == Type::string);
    CHECK(replies[1].elements[1].text.empty());
    CHECK(decoder.pending_bytes() == 0);
  }

  TEST_CASE("status, error, integer, nil and a subscription confirmation in one feed") {
    RespDecoder decoder;
    decoder.feed(
        "+PONG\r\n-NOPERM this user has no permissions\r\n:42\r\n$-1\r\n*-1\r\n"
        "*3\r\n$9\r\nsubscribe\r\n$3\r\nfoo\r\n:1\r\n");
    RespReply r;
    REQUIRE(decoder.next(r) == Result::reply);
    CHECK(r.type == Type::status);
    CHECK(r.is_text("PONG"));
    REQUIRE(decoder.next(r) == Result::reply);
    CHECK(r.is_error());
    CHECK(r.text == "NOPERM this user has no permissions");
    REQUIRE(decoder.next(r) == Result::reply);
    CHECK(r.type == Type::integer);
    CHECK(r.integer == 42);
    REQUIRE(decoder.next(r) == Result::reply);
    CHECK(r.type == Type::nil);
    REQUIRE(decoder.next(r) == Result::reply);
    CHECK(r.type == Type::nil);
    REQUIRE(decoder.next(r) == Result::reply);
    REQUIRE(r.type == Type::array);
    CHECK(r.elements[0].is_text("subscribe"));
    CHECK(r.elements[1].text == "foo");
    CHECK(r.elements[2].integer == 1);
    CHECK(decoder.next(r) == Result::need_more);
  }

  TEST_CASE("nested arrays keep their structure") {
    RespDecoder decoder;
    const auto replies = feed_bytewise(decoder, "*3\r\n*2\r\n:1\r\n*1\r\n$1\r\nx\r\n*0\r\n$-1\r\n");
    REQUIRE(replies.size() == 1);
    const RespReply& r = replies[0];
    REQUIRE(r.elements.size() == 3);
    REQUIRE(r.elements[0].elements.size() == 2);
    CHECK(r.elements[0].elements[0].integer == 1);
    REQUIRE(r.elements[0].elements[1].elements.size() == 1);
    CHECK(r.elements[0].elements[1].elements[0].text == "x");
    CHECK(r.elements[1].type == Type::array);
    CHECK(r.elements[1].elements.empty());
    CHECK(r.elements[2].type == Type::nil);
  }

  TEST_CASE("a reply above max_reply_bytes is an error, partial or complete") {
    SUBCASE("partial bulk string") {
      RespDecoder decoder(32);
      decoder.feed("$100\r\n" + std::string(40, 'x'));
      RespReply r;
      CHECK(decoder.next(r) == Result::error);
      CHECK(decoder.error().find("size limit") != std::string::npos);
      CHECK(decoder.failed());
      decoder.feed("+OK\r\n");  // stays failed
      CHECK(decoder.next(r) == Result::error);
    }
    SUBCASE("complete bulk string in one feed") {
      RespDecoder decoder(32);
      decoder.feed("$40\r\n" + std::string(40, 'x') + "\r\n");
      RespReply r;
      CHECK(decoder.next(r) == Result::error);
    }
    SUBCASE("an array announcing more elements than the limit allows") {
      RespDecoder decoder(1024);
      decoder.feed("*1000000000\r\n");
      RespReply r;
      CHECK(decoder.next(r) == Result::error);
      CHECK(decoder.error().find("elements") != std::string::npos);
    }
    SUBCASE("many small replies are fine even if their sum is large") {
      RespDecoder decoder(32);
      std::string wire;
      for (int i = 0; i < 100; ++i) wire += ":1234567890\r\n";
      decoder.feed(wire);
      RespReply r;
      int count = 0;
      while (decoder.next(r) == Result::reply) ++count;
      CHECK(count == 100);
      CHECK_FALSE(decoder.failed());
    }
  }

  TEST_CASE("malformed input is reported as a protocol error, never a crash") {
    for (const std::string& wire :
         {std::string("?what\r\n"), std::string("$abc\r\n"), std::string("*x\r\n"),
          std::string(":12a\r\n"),
          std::string("*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n"
                      "*1\r\n:1\r\n")}) {
      CAPTURE(wire);
      RespDecoder decoder;
      decoder.feed(wire);
      RespReply r;
      Result result;
      while ((result = decoder.next(r)) == Result::reply) {
      }
      CHECK(result == Result::error);
      CHECK_FALSE(decoder.error().empty());
    }
  }
}
