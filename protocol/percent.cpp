#include "protocol/percent.hpp"

#include <array>
#include <cstdint>

namespace steedos::protocol {

int percent_escaped_byte(std::string_view text, std::size_t pos) {
  if (pos >= text.size() || text.size() - pos < 3 || text[pos] != '%') return -1;
  const int high = hex_value(text[pos + 1]);
  const int low = hex_value(text[pos + 2]);
  return high < 0 || low < 0 ? -1 : high * 16 + low;
}

std::string percent_decode(std::string_view text, PlusIs plus) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      const int byte = percent_escaped_byte(text, i);
      if (byte >= 0) {
        out.push_back(static_cast<char>(byte));
        i += 2;
        continue;
      }
    }
    out.push_back(plus == PlusIs::Space && c == '+' ? ' ' : c);
  }
  return out;
}

std::optional<std::string> decode_uri_component(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '%') {
      out.push_back(text[i++]);
      continue;
    }
    const int first = percent_escaped_byte(text, i);
    if (first < 0) return std::nullopt;
    i += 3;
    if (first < 0x80) {
      out.push_back(static_cast<char>(first));
      continue;
    }
    // A multi-byte sequence must be complete, in escapes, and well-formed UTF-8 (no overlong
    // forms, no surrogates, nothing past U+10FFFF): ECMA-262 Decode() throws otherwise.
    std::size_t length = 0;
    std::uint32_t code = 0;
    if (first >= 0xC2 && first <= 0xDF) {
      length = 2;
      code = static_cast<std::uint32_t>(first & 0x1F);
    } else if (first >= 0xE0 && first <= 0xEF) {
      length = 3;
      code = static_cast<std::uint32_t>(first & 0x0F);
    } else if (first >= 0xF0 && first <= 0xF4) {
      length = 4;
      code = static_cast<std::uint32_t>(first & 0x07);
    } else {
      return std::nullopt;
    }
    std::string sequence(1, static_cast<char>(first));
    for (std::size_t k = 1; k < length; ++k) {
      const int next = percent_escaped_byte(text, i);
      if (next < 0 || (next & 0xC0) != 0x80) return std::nullopt;
      code = (code << 6) | static_cast<std::uint32_t>(next & 0x3F);
      sequence.push_back(static_cast<char>(next));
      i += 3;
    }
    static constexpr std::array<std::uint32_t, 5> kMinimum = {0, 0, 0x80, 0x800, 0x10000};
    if (code < kMinimum[length] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
      return std::nullopt;
    }
    out += sequence;
  }
  return out;
}

}  // namespace steedos::protocol
