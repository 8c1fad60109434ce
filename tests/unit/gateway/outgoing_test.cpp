#include "gateway/outgoing.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

using namespace steedos::gateway;

namespace {

struct Frame {
  bool fin = false;
  int rsv = 0;
  int opcode = -1;
  bool masked = false;
  std::string payload;
  size_t header_size = 0;
};

// An independent RFC 6455 frame reader, so the test does not trust the code it checks.
std::vector<Frame> parse_frames(const std::string& bytes) {
  std::vector<Frame> frames;
  size_t i = 0;
  while (i < bytes.size()) {
    REQUIRE(bytes.size() - i >= 2);
    const auto b0 = static_cast<uint8_t>(bytes[i]);
    const auto b1 = static_cast<uint8_t>(bytes[i + 1]);
    Frame frame;
    frame.fin = (b0 & 0x80) != 0;
    frame.rsv = (b0 >> 4) & 0x7;
    frame.opcode = b0 & 0x0F;
    frame.masked = (b1 & 0x80) != 0;
    uint64_t length = b1 & 0x7F;
    size_t header = 2;
    if (length == 126) {
      REQUIRE(bytes.size() - i >= 4);
      length =
          (uint64_t{static_cast<uint8_t>(bytes[i + 2])} << 8) | static_cast<uint8_t>(bytes[i + 3]);
      header = 4;
    } else if (length == 127) {
      REQUIRE(bytes.size() - i >= 10);
      length = 0;
      for (size_t k = 0; k < 8; ++k)
        length = (length << 8) | static_cast<uint8_t>(bytes[i + 2 + k]);
      header = 10;
    }
    REQUIRE(bytes.size() - i - header >= length);
    frame.header_size = header;
    frame.payload = bytes.substr(i + header, static_cast<size_t>(length));
    frames.push_back(frame);
    i += header + static_cast<size_t>(length);
  }
  return frames;
}

}  // namespace

TEST_SUITE("outgoing") {
  TEST_CASE("frame headers at the length boundaries") {
    struct Row {
      size_t length;
      std::string header;
    };
    // Binary parts carry their bytes unprefixed, so the payload length is exactly `length`.
    const std::vector<Row> rows = {
        {0, std::string("\x82\x00", 2)},
        {125, std::string("\x82\x7d", 2)},
        {126, std::string("\x82\x7e\x00\x7e", 4)},
        {65535, std::string("\x82\x7e\xff\xff", 4)},
        {65536, std::string("\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10)},
    };
    for (const Row& row : rows) {
      CAPTURE(row.length);
      const std::string data(row.length, '\xab');
      const auto packet = OutgoingPacket::messages({MessagePart{true, data}});
      const std::string& frames = packet->websocket_frames();
      REQUIRE(frames.size() == row.header.size() + row.length);
      CHECK(frames.substr(0, row.header.size()) == row.header);
      CHECK(frames.substr(row.header.size()) == data);
      CHECK(packet->size() == frames.size());
    }
  }

  TEST_CASE("text frames at the length boundaries carry the '4' prefix") {
    for (size_t length : {size_t{0}, size_t{124}, size_t{125}, size_t{65534}, size_t{65535}}) {
      CAPTURE(length);
      const std::string data(length, 'x');
      const auto packet = OutgoingPacket::messages({MessagePart{false, data}});
      const auto frames = parse_frames(packet->websocket_frames());
      REQUIRE(frames.size() == 1);
      CHECK(frames[0].fin);
      CHECK(frames[0].rsv == 0);
      CHECK(frames[0].opcode == 0x1);
      CHECK_FALSE(frames[0].masked);
      CHECK(frames[0].payload == "4" + data);
      const size_t total = length + 1;
      CHECK(frames[0].header_size == (total <= 125 ? 2u : total <= 65535 ? 4u : 10u));
    }
  }

  TEST_CASE("a binary event: text part then raw binary frames; polling form") {
    const std::string text =
        "52-[\"message-back\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]";
    const auto packet = OutgoingPacket::messages(
        {MessagePart{false, text}, MessagePart{true, std::string("\x01\x02\x03", 3)},
         MessagePart{true, std::string("\x04\x05\x06", 3)}});
    CHECK(packet->part_count() == 3);
    const auto frames = parse_frames(packet->websocket_frames());
    REQUIRE(frames.size() == 3);
    CHECK(frames[0].opcode == 0x1);
    CHECK(frames[0].payload == "4" + text);
    CHECK(frames[1].opcode == 0x2);
    CHECK(frames[1].payload == std::string("\x01\x02\x03", 3));
    CHECK(frames[2].opcode == 0x2);
    CHECK(frames[2].payload == std::string("\x04\x05\x06", 3));
    for (const Frame& frame : frames) {
      CHECK(frame.fin);
      CHECK_FALSE(frame.masked);
    }
    CHECK(packet->polling_payload() == "4" + text + "\x1e" + "bAQID\x1e" + "bBAUG");
  }

  TEST_CASE("polling payload of text and binary messages") {
    const auto packet = OutgoingPacket::messages(
        {MessagePart{false, "hello"}, MessagePart{true, std::string("\x01\x02\x03\x04", 4)}});
    CHECK(packet->polling_payload() ==
          "4hello\x1e"
          "bAQIDBA==");
    const std::string expected_frames =
        std::string("\x81\x06", 2) + "4hello" + std::string("\x82\x04\x01\x02\x03\x04", 6);
    CHECK(packet->websocket_frames() == expected_frames);
  }

  TEST_CASE("control packets: type digit + payload in one text frame") {
    const auto ping = OutgoingPacket::control('2');
    CHECK(ping->websocket_frames() == std::string("\x81\x01"
                                                  "2",
                                                  3));
    CHECK(ping->polling_payload() == "2");
    CHECK(ping->part_count() == 1);

    const auto probe = OutgoingPacket::control('3', "probe");
    CHECK(probe->websocket_frames() == std::string("\x81\x06"
                                                   "3probe",
                                                   8));
    CHECK(probe->polling_payload() == "3probe");

    const std::string open =
        "{\"sid\":\"lv_VI97HAXpY6yYWAAAC\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,"
        "\"pingTimeout\":20000,\"maxPayload\":1000000}";
    const auto handshake = OutgoingPacket::control('0', open);
    const auto frames = parse_frames(handshake->websocket_frames());
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].opcode == 0x1);
    CHECK(frames[0].payload == "0" + open);
    CHECK(handshake->polling_payload() == "0" + open);

    CHECK(OutgoingPacket::control('6')->polling_payload() == "6");
    CHECK(OutgoingPacket::control('1')->websocket_frames() == std::string("\x81\x01"
                                                                          "1",
                                                                          3));
  }

  TEST_CASE("large control payload uses the 64-bit length") {
    const std::string payload(70000, 'p');
    const auto packet = OutgoingPacket::control('4', payload);
    const auto frames = parse_frames(packet->websocket_frames());
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].header_size == 10);
    CHECK(frames[0].payload == "4" + payload);
  }
}
