// libFuzzer target: Socket.IO packet strings (scripts/fuzz.sh). Checks, for every packet that
// decodes: encode/decode round trip, the payload is valid JSON of the right shape, split_array
// agrees with a DOM parse and join_array rebuilds an equal value. On arbitrary input the raw
// JSON helpers must stay in bounds and agree with nlohmann whenever the input is a JSON array.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "protocol/json.hpp"
#include "protocol/socketio.hpp"
#include "tests/fuzz/fuzz_assert.hpp"

namespace sio = steedos::protocol::sio;
using steedos::Json;

namespace {

// JSON.parse as the reference sees it: nlohmann, minus its tolerance of a leading UTF-8 BOM
// and of a NUL byte, which it reads as the end of input.
Json parse(std::string_view text) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF" || text.find('\0') != std::string_view::npos) {
    return Json(Json::value_t::discarded);
  }
  return Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
}

bool is_array_type(sio::Type type) {
  return type == sio::Type::Event || type == sio::Type::Ack || type == sio::Type::BinaryEvent ||
         type == sio::Type::BinaryAck;
}

void check_decoded(const sio::Packet& packet) {
  const std::string encoded = sio::encode(packet);
  const auto again = sio::decode(encoded);
  FUZZ_ASSERT(again.ok());
  FUZZ_ASSERT(again.value == packet);
  FUZZ_ASSERT(sio::encode(again.value) == encoded);
  FUZZ_ASSERT(packet.nsp == "/" || (packet.nsp.size() > 1 && packet.nsp[0] == '/'));
  FUZZ_ASSERT(packet.nsp.find(',') == std::string::npos);

  const bool binary = packet.type == sio::Type::BinaryEvent || packet.type == sio::Type::BinaryAck;
  FUZZ_ASSERT(binary ? packet.attachments >= 1 && packet.attachments <= 10
                     : packet.attachments == 0);

  if (packet.payload.empty()) {
    FUZZ_ASSERT(packet.type == sio::Type::Connect || packet.type == sio::Type::Disconnect);
    return;
  }
  const Json value = parse(packet.payload);
  FUZZ_ASSERT(!value.is_discarded());
  if (binary) FUZZ_ASSERT(sio::placeholders_valid(packet.payload, packet.attachments));

  const auto elements = sio::split_array(packet.payload);
  if (!is_array_type(packet.type)) {
    FUZZ_ASSERT(value.is_object() || value.is_string());
    FUZZ_ASSERT(!elements);
    return;
  }
  FUZZ_ASSERT(value.is_array());
  FUZZ_ASSERT(elements.has_value());
  FUZZ_ASSERT(elements->size() == value.size());
  for (size_t i = 0; i < elements->size(); ++i) {
    FUZZ_ASSERT(parse((*elements)[i]) == value[i]);
  }
  FUZZ_ASSERT(parse(sio::join_array(*elements)) == value);

  if (packet.type == sio::Type::Event || packet.type == sio::Type::BinaryEvent) {
    const auto name = sio::event_name(packet.payload);
    FUZZ_ASSERT(name.has_value());
    if (value[0].is_string()) {
      FUZZ_ASSERT(*name == value[0].get<std::string>());
    } else {
      FUZZ_ASSERT(value[0].is_number());
      FUZZ_ASSERT(*name == (*elements)[0]);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  const auto result = sio::decode(input);
  if (result.ok()) check_decoded(result.value);

  // Raw helpers on arbitrary text: in bounds always, and right whenever the text is JSON.
  const auto elements = sio::split_array(input);
  const Json value = parse(input);
  if (!value.is_discarded() && value.is_array()) {
    FUZZ_ASSERT(elements.has_value());
    FUZZ_ASSERT(elements->size() == value.size());
    for (size_t i = 0; i < elements->size(); ++i) {
      FUZZ_ASSERT(parse((*elements)[i]) == value[i]);
    }
  }
  if (elements) {
    for (std::string_view element : *elements) {
      FUZZ_ASSERT(!element.empty());
      FUZZ_ASSERT(element.data() >= input.data() &&
                  element.data() + element.size() <= input.data() + input.size());
    }
  }
  (void)sio::event_name(input);
  const bool placeholders = sio::placeholders_valid(input, 2);
  if (placeholders) FUZZ_ASSERT(!value.is_discarded());
  return 0;
}
