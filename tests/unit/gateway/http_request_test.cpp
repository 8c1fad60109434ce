// Test that header file is self-contained.
#include "gateway/http_request.hpp"

#include <doctest/doctest.h>

#include <string>

namespace gw = steedos::gateway;

namespace {

constexpr size_t kLimit = 16 * 1024;

gw::HeadParse parse(const std::string& bytes, size_t limit = kLimit) {
  return gw::parse_request_head(bytes, limit);
}

}  // namespace

TEST_SUITE("http_request") {
  TEST_CASE("a polling GET: method, path, decoded query, lower-case headers, head size") {
    const std::string head =
        "GET /socket.io/?EIO=4&transport=polling&t=N%2Fx+y&sid HTTP/1.1\r\n"
        "Host: app.example:5100\r\n"
        "Cookie: X-Space-Id=s1; X-Auth-Token=tok\r\n"
        "X-Mixed-Case: Value Kept\r\n\r\n";
    const auto parsed = parse(head + "trailing body bytes");
    REQUIRE(parsed.complete());
    CHECK(parsed.size == head.size());
    const auto& request = parsed.head.request;
    CHECK(request.method == "GET");
    CHECK(request.target == "/socket.io/?EIO=4&transport=polling&t=N%2Fx+y&sid");
    CHECK(request.path == "/socket.io/");
    CHECK(request.query.at("EIO") == "4");
    CHECK(request.query.at("transport") == "polling");
    CHECK(request.query.at("t") == "N/x y");  // percent-decoded, '+' a space
    CHECK(request.query.at("sid").empty());   // no '=': empty value
    CHECK(*request.header("x-mixed-case") == "Value Kept");
    CHECK(*request.header("cookie") == "X-Space-Id=s1; X-Auth-Token=tok");
    CHECK(request.header("Host") == nullptr);  // looked up by lower-case name only
    CHECK(parsed.head.keep_alive);
    CHECK(parsed.head.content_length == 0);
    CHECK_FALSE(request.upgrade);
  }

  TEST_CASE("incomplete until the blank line; 431 above the limit, blank line included") {
    CHECK(parse("GET / HTTP/1.1\r\nHost: x\r\n").incomplete());
    CHECK(parse("GET / HTTP/1.1\r\nHost: x\r\n\r").incomplete());
    const std::string head = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(parse(head, head.size()).complete());
    const auto over = parse(head, head.size() - 1);
    REQUIRE(over.error);
    CHECK(over.error->status == 431);
    const auto endless = parse(std::string(100, 'a'), 99);
    REQUIRE(endless.error);
    CHECK(endless.error->status == 431);
    CHECK(parse(std::string(99, 'a'), 99).incomplete());
  }

  TEST_CASE("the first of duplicate query keys wins; the absolute form keeps path and query") {
    const auto parsed = parse("GET http://proxy.example/a%20b?x=1&x=2 HTTP/1.1\r\nHost: h\r\n\r\n");
    REQUIRE(parsed.complete());
    CHECK(parsed.head.request.path == "/a%20b");
    CHECK(parsed.head.decoded_path == "/a b");
    CHECK(parsed.head.request.query.at("x") == "1");
    const auto bare = parse("GET https://proxy.example HTTP/1.1\r\nHost: h\r\n\r\n");
    REQUIRE(bare.complete());
    CHECK(bare.head.request.path == "/");
  }

  TEST_CASE("WebSocket upgrade needs GET, Upgrade: websocket and Connection listing upgrade") {
    const auto upgrade = parse(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\n"
        "Connection: keep-alive, Upgrade\r\n\r\n");
    REQUIRE(upgrade.complete());
    CHECK(upgrade.head.request.upgrade);
    const auto post = parse(
        "POST / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: "
        "upgrade\r\nContent-Length: "
        "0\r\n\r\n");
    REQUIRE(post.complete());
    CHECK_FALSE(post.head.request.upgrade);
  }

  TEST_CASE("keep-alive: HTTP/1.1 unless Connection: close; never HTTP/1.0") {
    CHECK_FALSE(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n").head.keep_alive);
    CHECK_FALSE(parse("GET / HTTP/1.0\r\nHost: h\r\n\r\n").head.keep_alive);
    CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n").head.keep_alive);
  }

  TEST_CASE("Content-Length: digits only, at most 18 of them") {
    const auto ok = parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0042\r\n\r\n");
    REQUIRE(ok.complete());
    CHECK(ok.head.content_length == 42);
    for (const char* bad : {"-1", "1e3", " ", "0x10", "1234567890123456789"}) {
      CAPTURE(bad);
      const auto parsed =
          parse(std::string("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ") + bad + "\r\n\r\n");
      REQUIRE(parsed.error);
      CHECK(parsed.error->status == 400);
      CHECK(parsed.has_path);  // routed, so an engine path answers with its JSON error
    }
  }

  TEST_CASE("refusals carry the server's status and how far the head was read") {
    const auto chunked =
        parse("POST /socket.io/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    REQUIRE(chunked.error);
    CHECK(chunked.error->status == 411);
    CHECK(chunked.has_path);
    CHECK(chunked.head.request.path == "/socket.io/");

    const auto target = parse("GET socket.io HTTP/1.1\r\nHost: h\r\n\r\n");
    REQUIRE(target.error);
    CHECK(target.error->status == 400);
    CHECK(target.has_request);
    CHECK_FALSE(target.has_path);

    const auto version = parse("GET / HTTP/2.0\r\nHost: h\r\n\r\n");
    REQUIRE(version.error);
    CHECK(version.error->status == 400);
    CHECK_FALSE(version.has_request);

    // websocketpp requires a Host header (HTTP/1.0 included).
    const auto no_host = parse("GET / HTTP/1.0\r\n\r\n");
    REQUIRE(no_host.error);
    CHECK(no_host.error->status == 400);

    // Found by fuzz_http_request: websocketpp keeps a header line without a name.
    const auto nameless = parse("GET / HTTP/1.1\r\nHost: h\r\n: value\r\n\r\n");
    REQUIRE(nameless.error);
    CHECK(nameless.error->status == 400);
    CHECK_FALSE(nameless.has_request);

    const auto garbage = parse("\x01\x02\x03\r\n\r\n");
    REQUIRE(garbage.error);
    CHECK(garbage.error->status == 400);
    CHECK(garbage.size == 7);
    CHECK_FALSE(garbage.has_request);
  }

  TEST_CASE("has_token: comma-separated, trimmed, any case") {
    const std::string value = " keep-alive ,\tUpgrade ";
    CHECK(gw::has_token(&value, "upgrade"));
    CHECK(gw::has_token(&value, "KEEP-ALIVE"));
    CHECK_FALSE(gw::has_token(&value, "close"));
    CHECK_FALSE(gw::has_token(nullptr, "upgrade"));
  }
}
