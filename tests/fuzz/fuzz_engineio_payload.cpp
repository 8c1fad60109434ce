// libFuzzer target: Engine.IO polling bodies and text packets (scripts/fuzz.sh). Beyond "no
// crash, no sanitizer report" it checks that whatever decodes re-encodes to the same bytes: the
// decoder is strict, so any drift means it accepted something it should not have.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "protocol/engineio.hpp"
#include "tests/fuzz/fuzz_assert.hpp"

namespace eio = steedos::protocol::eio;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  const auto payload = eio::decode_polling_payload(input);
  if (payload.ok()) {
    FUZZ_ASSERT(!payload.value.empty());
    FUZZ_ASSERT(eio::encode_polling_payload(payload.value) == input);
  } else {
    // The packets kept before the error are exactly the leading records.
    const std::string prefix = eio::encode_polling_payload(payload.value);
    FUZZ_ASSERT(input.substr(0, prefix.size()) == prefix);
    FUZZ_ASSERT(payload.value.empty() || input.size() > prefix.size());
  }

  const auto limited = eio::decode_polling_payload(input, 2);
  FUZZ_ASSERT(limited.value.size() <= 2);
  if (payload.ok() && payload.value.size() <= 2) FUZZ_ASSERT(limited.ok());

  const auto packet = eio::decode_text_packet(input);
  if (packet.ok()) {
    FUZZ_ASSERT(eio::encode_text_packet(packet.value) == input);
    FUZZ_ASSERT(!packet.value.binary || packet.value.type == eio::Type::Message);
  }

  const auto bytes = eio::base64_decode(input);
  if (bytes) FUZZ_ASSERT(eio::base64_encode(*bytes) == input);
  const auto back = eio::base64_decode(eio::base64_encode(input));
  FUZZ_ASSERT(back && *back == input);
  return 0;
}
