#pragma once
// Engine.IO v4 packet codec (spec: socketio-server.md §1.3). Pure: no I/O, no logging, and no
// exceptions on hostile input: every decoder returns an error value instead. The transports
// decide what an error means (the reference closes the session with "parse error").
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/result.hpp"

namespace steedos::protocol::eio {

/// The wire digit is the enumerator's value, so `static_cast<char>(type)` encodes it.
enum class Type : char {
  Open = '0',
  Close = '1',
  Ping = '2',
  Pong = '3',
  Message = '4',
  Upgrade = '5',
  Noop = '6',
};

/// One Engine.IO packet. `binary` is only ever set on Message packets: a WebSocket binary frame
/// or a `b<base64>` polling packet, `data` then holds the raw bytes.
struct Packet {
  Type type = Type::Message;
  bool binary = false;
  std::string data;

  friend bool operator==(const Packet& a, const Packet& b) {
    return a.type == b.type && a.binary == b.binary && a.data == b.data;
  }
  friend bool operator!=(const Packet& a, const Packet& b) { return !(a == b); }
};

enum class Error : std::uint8_t {
  None,
  Empty,           // an empty packet (also an empty polling body, as in the reference)
  UnknownType,     // first character not `0`-`6` nor `b`
  InvalidBase64,   // `b` packet whose base64 is not canonical standard base64 with padding
  TooManyPackets,  // polling body with more packets than the caller allows
};

/// Short English text for logs ("unknown packet type", ...).
const char* error_text(Error error);

/// For a polling payload that failed, `value` holds the packets before the bad one (the reference
/// hands those to the session before closing it).
template <typename T>
using Result = protocol::Result<Error, T>;

/// Decodes one text packet: a WebSocket text frame or one record of a polling body.
/// `<digit><data>` for types 0-6; `b<base64>` is a binary Message, as in the reference parser
/// (it accepts it on both transports).
Result<Packet> decode_text_packet(std::string_view text);

/// Decodes an HTTP long-polling POST body: records separated by '\x1e'. Stops at the first bad
/// record. An empty body is an error (one empty record). More than `max_packets` records is
/// TooManyPackets, with the first `max_packets` decoded in `value`.
Result<std::vector<Packet>> decode_polling_payload(
    std::string_view body, std::size_t max_packets = std::numeric_limits<std::size_t>::max());

/// `<digit><data>`, or `b<base64>` for binary messages.
std::string encode_text_packet(const Packet& packet);
/// Packets joined with '\x1e'. The separator is assumed absent from text data (as in the spec);
/// it is not escaped.
std::string encode_polling_payload(const std::vector<Packet>& packets);

inline constexpr char kRecordSeparator = '\x1e';

/// Standard alphabet with '=' padding (RFC 4648 §4).
std::string base64_encode(std::string_view bytes);
/// Appends the encoding to `out` (no temporary for callers building larger buffers).
void base64_encode_to(std::string_view bytes, std::string& out);
/// Strict decoding: length a multiple of 4, standard alphabet only, padding only at the end,
/// zero pad bits. Anything else is nullopt. Every encoder clients use produces this form, and
/// strictness keeps decode(encode(x)) == x and encode(decode(s)) == s.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace steedos::protocol::eio
