// Test that header file is self-contained.
#include "gateway/ws_frame_reader.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ws = steedos::gateway::ws;

namespace {

// A client frame: masked (RFC 6455 §5.3) with a fixed key.
std::string client_frame(uint8_t first_byte, const std::string& payload) {
  static const char kMask[4] = {'\x37', '\xfa', '\x21', '\x3d'};
  std::string out(1, static_cast<char>(first_byte));
  const uint64_t n = payload.size();
  if (n < 126) {
    out.push_back(static_cast<char>(0x80 | n));
  } else if (n <= 0xFFFF) {
    out.push_back(static_cast<char>(0x80 | 126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xFF));
  } else {
    out.push_back(static_cast<char>(0x80 | 127));
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(n >> shift));
  }
  out.append(kMask, 4);
  for (size_t i = 0; i < payload.size(); ++i) out.push_back(payload[i] ^ kMask[i % 4]);
  return out;
}

struct Events {
  std::vector<std::string> seen;
  bool stop_on_close = true;

  bool on_message(std::string_view data, bool binary) {
    seen.push_back((binary ? "binary:" : "text:") + std::string(data));
    return true;
  }
  bool on_ping(std::string_view p) {
    seen.push_back("ping:" + std::string(p));
    return true;
  }
  bool on_pong(std::string_view p) {
    seen.push_back("pong:" + std::string(p));
    return true;
  }
  bool on_close(uint16_t code, std::string_view reason) {
    seen.push_back("close:" + std::to_string(code) + ":" + std::string(reason));
    return !stop_on_close;
  }
  void on_error(uint16_t code) { seen.push_back("error:" + std::to_string(code)); }
};

struct Run {
  std::vector<std::string> seen;
  size_t used;
};

Run read_all(std::string bytes, uint64_t limit = 1000000) {
  ws::FrameReader reader(limit);
  Events events;
  events.stop_on_close = false;
  const size_t used = reader.parse(bytes.data(), bytes.size(), events);
  return {events.seen, used};
}

}  // namespace

TEST_SUITE("ws_frame_reader") {
  TEST_CASE("unmasks text and binary frames of every length form") {
    const std::string big(70000, 'b');
    const std::string mid(300, 'm');
    const auto run =
        read_all(client_frame(0x81, "hello") + client_frame(0x82, mid) + client_frame(0x81, big));
    CHECK(run.seen == std::vector<std::string>{"text:hello", "binary:" + mid, "text:" + big});
  }

  TEST_CASE("a fragmented message is reassembled; control frames in between pass through") {
    const auto run = read_all(client_frame(0x01, "frag") + client_frame(0x89, "p") +
                              client_frame(0x00, "men") + client_frame(0x80, "ted"));
    CHECK(run.seen == std::vector<std::string>{"ping:p", "text:fragmented"});
  }

  TEST_CASE("an unfinished frame is left unconsumed, whatever byte it is cut at") {
    const std::string one = client_frame(0x81, "first");
    const std::string two = client_frame(0x82, std::string(200, 'x'));
    for (size_t cut = 0; cut < two.size(); ++cut) {
      CAPTURE(cut);
      const auto run = read_all(one + two.substr(0, cut));
      CHECK(run.used == one.size());
      CHECK(run.seen == std::vector<std::string>{"text:first"});
    }
  }

  TEST_CASE("close frames: code and reason, no body, invalid code or reason") {
    CHECK(read_all(client_frame(0x88, std::string("\x03\xe8", 2) + "bye")).seen ==
          std::vector<std::string>{"close:1000:bye"});
    CHECK(read_all(client_frame(0x88, "")).seen == std::vector<std::string>{"close:1005:"});
    CHECK(read_all(client_frame(0x88, "x")).seen == std::vector<std::string>{"error:1002"});
    CHECK(read_all(client_frame(0x88, std::string("\x03\xed", 2))).seen ==
          std::vector<std::string>{"error:1002"});  // 1005 may not be sent
    CHECK(read_all(client_frame(0x88, std::string("\x03\xe8\xff", 3))).seen ==
          std::vector<std::string>{"error:1002"});  // reason not UTF-8
  }

  TEST_CASE("a callback returning false stops after its frame") {
    std::string bytes = client_frame(0x88, "") + client_frame(0x81, "after");
    ws::FrameReader reader(100);
    Events events;
    const size_t used = reader.parse(bytes.data(), bytes.size(), events);
    CHECK(used == 6);
    CHECK(events.seen == std::vector<std::string>{"close:1005:"});
  }

  TEST_CASE("protocol errors: 1002, the offending header not consumed") {
    const std::string ok = client_frame(0x81, "ok");
    const std::vector<std::string> bad = {
        std::string("\x81\x02hi", 4),                       // unmasked
        client_frame(0xC1, "rsv"),                          // RSV1 without an extension
        client_frame(0x83, "op"),                           // reserved data opcode
        client_frame(0x8B, "op"),                           // reserved control opcode
        client_frame(0x09, "p"),                            // fragmented control frame
        client_frame(0x89, std::string(126, 'p')),          // control payload > 125
        client_frame(0x80, "c"),                            // continuation of nothing
        client_frame(0x01, "a") + client_frame(0x81, "b"),  // new message inside one
        std::string("\x82\xff\x80\0\0\0\0\0\0\0mask", 14),  // 64-bit length with the top bit
    };
    for (const auto& frames : bad) {
      CAPTURE(frames.size());
      const auto run = read_all(ok + frames);
      REQUIRE(run.seen.size() == 2);
      CHECK(run.seen[0] == "text:ok");
      CHECK(run.seen[1] == "error:1002");
    }
    // The error is found on the header, before its payload arrived.
    const auto early = read_all(std::string("\x81\x02", 2));
    CHECK(early.seen == std::vector<std::string>{"error:1002"});
    CHECK(early.used == 0);
  }

  TEST_CASE("1009 on the header once the message would exceed the limit, fragments summed") {
    CHECK(read_all(client_frame(0x82, std::string(10, 'x')), 10).seen ==
          std::vector<std::string>{"binary:xxxxxxxxxx"});
    // Only the header: the payload need not arrive for the refusal.
    CHECK(read_all(client_frame(0x82, std::string(11, 'x')).substr(0, 6), 10).seen ==
          std::vector<std::string>{"error:1009"});
    CHECK(read_all(
              client_frame(0x02, std::string(6, 'x')) + client_frame(0x80, std::string(5, 'y')), 10)
              .seen == std::vector<std::string>{"error:1009"});
    // Control frames do not count against the message limit.
    CHECK(read_all(client_frame(0x89, std::string(20, 'p')), 10).seen.front() ==
          "ping:" + std::string(20, 'p'));
  }

  TEST_CASE("text is delivered without a UTF-8 check; valid_utf8 is there for the caller") {
    CHECK(read_all(client_frame(0x81, "\xff")).seen == std::vector<std::string>{"text:\xff"});
    CHECK(ws::valid_utf8("h\xc3\xa9llo \xf0\x9f\x98\x80"));
    CHECK_FALSE(ws::valid_utf8("\xc0\xaf"));          // overlong
    CHECK_FALSE(ws::valid_utf8("\xed\xa0\x80"));      // surrogate
    CHECK_FALSE(ws::valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
    CHECK_FALSE(ws::valid_utf8("abc\xe2\x82"));       // truncated
  }

  TEST_CASE("reset drops a message being reassembled") {
    ws::FrameReader reader(100);
    Events events;
    std::string first = client_frame(0x01, "part");
    reader.parse(first.data(), first.size(), events);
    CHECK(reader.in_message());
    reader.reset();
    CHECK_FALSE(reader.in_message());
    std::string next = client_frame(0x81, "new");
    reader.parse(next.data(), next.size(), events);
    CHECK(events.seen == std::vector<std::string>{"text:new"});
  }
}
