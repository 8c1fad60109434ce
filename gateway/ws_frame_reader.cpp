#include "gateway/ws_frame_reader.hpp"

#include <cstring>

namespace steedos::gateway::ws {

void unmask(char* payload, std::size_t length, const char* mask) {
  // Eight bytes at a time: the mask repeats every 4 bytes, so a doubled mask word lines up.
  std::uint8_t key[8];
  for (int i = 0; i < 8; ++i) key[i] = static_cast<std::uint8_t>(mask[i % 4]);
  std::uint64_t word_key;
  std::memcpy(&word_key, key, 8);
  std::size_t i = 0;
  for (; i + 8 <= length; i += 8) {
    std::uint64_t word;
    std::memcpy(&word, payload + i, 8);
    word ^= word_key;
    std::memcpy(payload + i, &word, 8);
  }
  for (; i < length; ++i) payload[i] = static_cast<char>(payload[i] ^ mask[i % 4]);
}

bool valid_utf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    if (end - p >= 8) {
      std::uint64_t word;
      std::memcpy(&word, p, 8);
      if ((word & 0x8080808080808080ULL) == 0) {
        p += 8;
        continue;
      }
    }
    const unsigned lead = *p;
    if (lead < 0x80) {
      ++p;
      continue;
    }
    std::ptrdiff_t extra;
    std::uint32_t code_point;
    if ((lead & 0xE0) == 0xC0) {
      if (lead < 0xC2) return false;  // overlong two-byte form
      extra = 1;
      code_point = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      extra = 2;
      code_point = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0 && lead <= 0xF4) {
      extra = 3;
      code_point = lead & 0x07;
    } else {
      return false;
    }
    if (end - p <= extra) return false;
    for (std::ptrdiff_t i = 1; i <= extra; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (p[i] & 0x3F);
    }
    if (extra == 2 && (code_point < 0x800 || (code_point >= 0xD800 && code_point <= 0xDFFF))) {
      return false;
    }
    if (extra == 3 && (code_point < 0x10000 || code_point > 0x10FFFF)) return false;
    p += extra + 1;
  }
  return true;
}

bool valid_close_code(std::uint16_t code) {
  if (code >= 3000 && code <= 4999) return true;
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011);
}

}  // namespace steedos::gateway::ws
