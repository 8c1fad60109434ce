// Test that header file is self-contained.
#include "gateway/ws_frame.hpp"

#include <doctest/doctest.h>
#include <websocketpp/frame.hpp>

#include <cstdint>
#include <string>

namespace ws = steedos::gateway::ws;
namespace wsframe = websocketpp::frame;

namespace {

// What websocketpp's own writer produces for an unmasked final frame.
std::string websocketpp_header(wsframe::opcode::value opcode, uint64_t size) {
  return wsframe::prepare_header(wsframe::basic_header(opcode, size, /*fin=*/true, /*mask=*/false),
                                 wsframe::extended_header(size));
}

constexpr uint64_t kSizes[] = {0, 1, 125, 126, 127, 65535, 65536, uint64_t{1} << 20};

struct OpcodePair {
  ws::Opcode ours;
  wsframe::opcode::value theirs;
};
constexpr OpcodePair kOpcodes[] = {
    {ws::Opcode::Text, wsframe::opcode::text},   {ws::Opcode::Binary, wsframe::opcode::binary},
    {ws::Opcode::Close, wsframe::opcode::close}, {ws::Opcode::Ping, wsframe::opcode::ping},
    {ws::Opcode::Pong, wsframe::opcode::pong},
};

}  // namespace

TEST_SUITE("ws_frame") {
  TEST_CASE("append_header is byte for byte websocketpp's prepare_header") {
    for (const OpcodePair& op : kOpcodes) {
      for (uint64_t size : kSizes) {
        CAPTURE(static_cast<int>(op.ours));
        CAPTURE(size);
        std::string ours = "x";  // appends, keeping what is there
        ws::append_header(ours, op.ours, size);
        CHECK(ours == "x" + websocketpp_header(op.theirs, size));
        CHECK(ours.size() - 1 <= ws::kMaxServerHeader);
      }
    }
  }

  TEST_CASE("header layout: FIN, no mask, 7-bit / 16-bit / 64-bit big-endian length") {
    std::string h;
    ws::append_header(h, ws::Opcode::Text, 125);
    CHECK(h == std::string("\x81\x7d", 2));
    h.clear();
    ws::append_header(h, ws::Opcode::Binary, 126);
    CHECK(h == std::string("\x82\x7e\x00\x7e", 4));
    h.clear();
    ws::append_header(h, ws::Opcode::Text, 65535);
    CHECK(h == std::string("\x81\x7e\xff\xff", 4));
    h.clear();
    ws::append_header(h, ws::Opcode::Text, 65536);
    CHECK(h == std::string("\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10));
    h.clear();
    ws::append_header(h, ws::Opcode::Close, 0);
    CHECK(h == std::string("\x88\x00", 2));
  }

  TEST_CASE("frame and append_frame: websocketpp's header, then the payload") {
    for (const OpcodePair& op : kOpcodes) {
      for (uint64_t size : kSizes) {
        CAPTURE(static_cast<int>(op.ours));
        CAPTURE(size);
        const std::string payload(static_cast<size_t>(size), 'p');
        const std::string expected = websocketpp_header(op.theirs, size) + payload;
        CHECK(ws::frame(op.ours, payload) == expected);
        // A prefix counts in the length: `4` + data is one Engine.IO message frame.
        if (size > 0) {
          std::string out;
          ws::append_frame(out, op.ours, payload.substr(0, 1), std::string_view(payload).substr(1));
          CHECK(out == expected);
        }
      }
    }
  }
}
