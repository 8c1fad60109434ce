// libFuzzer target: what a Moleculer peer may send (scripts/fuzz.sh). The fast JSON reader must
// give exactly what nlohmann's own parser gives for any bytes (except that it refuses documents
// nested deeper than its limit), and decode_packet must never crash; a packet it accepts has a
// sender and the protocol version asked for.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "protocol/json_reader.hpp"
#include "protocol/moleculer_packet.hpp"
#include "tests/fuzz/fuzz_assert.hpp"

namespace proto = steedos::protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  const steedos::Json expected =
      steedos::Json::parse(input.begin(), input.end(), nullptr, /*allow_exceptions=*/false);
  auto why = proto::JsonRefusal::Invalid;
  const auto parsed = proto::parse_json(input, proto::kMaxPacketJsonDepth, &why);
  if (parsed) FUZZ_ASSERT(!expected.is_discarded());
  if (!parsed) FUZZ_ASSERT(expected.is_discarded() || why == proto::JsonRefusal::TooDeep);
  if (parsed) {
    FUZZ_ASSERT(*parsed == expected);
    FUZZ_ASSERT(steedos::dump_json(*parsed) == steedos::dump_json(expected));
  }

  for (auto type : {proto::PacketType::Request, proto::PacketType::Event,
                    proto::PacketType::Response, proto::PacketType::Info}) {
    const auto decoded = proto::decode_packet(type, input, "4");
    if (decoded.ok()) {
      FUZZ_ASSERT(decoded.payload.is_object());
      FUZZ_ASSERT(!decoded.sender.empty());
      FUZZ_ASSERT(decoded.payload.at("ver") == "4");
    }
  }
  return 0;
}
