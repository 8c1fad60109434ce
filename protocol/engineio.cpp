#include "protocol/engineio.hpp"

#include <array>

namespace steedos::protocol::eio {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// 0-63 for alphabet characters, -1 for everything else (including '=' and bytes >= 0x80).
constexpr std::array<std::int8_t, 256> make_decode_table() {
  std::array<std::int8_t, 256> table{};
  for (auto& entry : table) entry = -1;
  for (int i = 0; i < 64; ++i)
    table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::int8_t>(i);
  return table;
}
constexpr auto kDecodeTable = make_decode_table();

bool is_type_digit(char c) {
  return c >= '0' && c <= '6';
}

}  // namespace

const char* error_text(Error error) {
  switch (error) {
    case Error::None:
      return "ok";
    case Error::Empty:
      return "empty packet";
    case Error::UnknownType:
      return "unknown packet type";
    case Error::InvalidBase64:
      return "invalid base64 in binary packet";
    case Error::TooManyPackets:
      return "too many packets in payload";
  }
  return "unknown error";
}

void base64_encode_to(std::string_view bytes, std::string& out) {
  out.reserve(out.size() + (bytes.size() + 2) / 3 * 4);
  const auto* in = reinterpret_cast<const unsigned char*>(bytes.data());
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v =
        (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8) | in[i + 2];
    out.push_back(kAlphabet[(v >> 18) & 0x3F]);
    out.push_back(kAlphabet[(v >> 12) & 0x3F]);
    out.push_back(kAlphabet[(v >> 6) & 0x3F]);
    out.push_back(kAlphabet[v & 0x3F]);
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    const std::uint32_t v = std::uint32_t{in[i]} << 16;
    out.push_back(kAlphabet[(v >> 18) & 0x3F]);
    out.push_back(kAlphabet[(v >> 12) & 0x3F]);
    out.append("==");
  } else if (rest == 2) {
    const std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8);
    out.push_back(kAlphabet[(v >> 18) & 0x3F]);
    out.push_back(kAlphabet[(v >> 12) & 0x3F]);
    out.push_back(kAlphabet[(v >> 6) & 0x3F]);
    out.push_back('=');
  }
}

std::string base64_encode(std::string_view bytes) {
  std::string out;
  base64_encode_to(bytes, out);
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    // Padding is legal only in the last quantum: "xx==" or "xxx=".
    std::size_t pad = 0;
    if (last && text[i + 3] == '=') pad = text[i + 2] == '=' ? 2 : 1;
    std::int8_t d[4] = {0, 0, 0, 0};
    for (std::size_t k = 0; k < 4 - pad; ++k) {
      d[k] = kDecodeTable[static_cast<unsigned char>(text[i + k])];
      if (d[k] < 0) return std::nullopt;
    }
    const std::uint32_t v = (std::uint32_t(d[0]) << 18) | (std::uint32_t(d[1]) << 12) |
                            (std::uint32_t(d[2]) << 6) | std::uint32_t(d[3]);
    out.push_back(static_cast<char>((v >> 16) & 0xFF));
    if (pad == 2) {
      // Non-zero bits under the padding would make two texts decode to the same bytes.
      if ((v & 0xFFFF) != 0) return std::nullopt;
      continue;
    }
    out.push_back(static_cast<char>((v >> 8) & 0xFF));
    if (pad == 1) {
      if ((v & 0xFF) != 0) return std::nullopt;
      continue;
    }
    out.push_back(static_cast<char>(v & 0xFF));
  }
  return out;
}

Result<Packet> decode_text_packet(std::string_view text) {
  Result<Packet> result;
  if (text.empty()) {
    result.error = Error::Empty;
    return result;
  }
  const char first = text.front();
  if (first == 'b') {
    auto bytes = base64_decode(text.substr(1));
    if (!bytes) {
      result.error = Error::InvalidBase64;
      return result;
    }
    result.value = Packet{Type::Message, true, std::move(*bytes)};
    return result;
  }
  if (!is_type_digit(first)) {
    result.error = Error::UnknownType;
    return result;
  }
  result.value = Packet{static_cast<Type>(first), false, std::string(text.substr(1))};
  return result;
}

Result<std::vector<Packet>> decode_polling_payload(std::string_view body, std::size_t max_packets) {
  Result<std::vector<Packet>> result;
  std::size_t start = 0;
  while (true) {
    const std::size_t end = body.find(kRecordSeparator, start);
    const std::string_view record =
        body.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (result.value.size() == max_packets) {
      result.error = Error::TooManyPackets;
      return result;
    }
    auto packet = decode_text_packet(record);
    if (!packet) {
      result.error = packet.error;
      return result;
    }
    result.value.push_back(std::move(packet.value));
    if (end == std::string_view::npos) return result;
    start = end + 1;
  }
}

std::string encode_text_packet(const Packet& packet) {
  std::string out;
  if (packet.binary) {
    out.push_back('b');
    base64_encode_to(packet.data, out);
  } else {
    out.reserve(1 + packet.data.size());
    out.push_back(static_cast<char>(packet.type));
    out.append(packet.data);
  }
  return out;
}

std::string encode_polling_payload(const std::vector<Packet>& packets) {
  std::string out;
  for (std::size_t i = 0; i < packets.size(); ++i) {
    if (i != 0) out.push_back(kRecordSeparator);
    out.append(encode_text_packet(packets[i]));
  }
  return out;
}

}  // namespace steedos::protocol::eio
