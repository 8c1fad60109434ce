#pragma once
// The frames a WebSocket server writes (RFC 6455 §5.2): unmasked (§5.1) and final, since one
// Engine.IO packet is one frame and control frames are never fragmented. The header bytes come
// from websocketpp's frame code (ws_frame.cpp), the gateway's one frame writer; this header
// keeps websocketpp out of its includers.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace steedos::gateway::ws {

/// RFC 6455 §5.2 opcodes; the wire value is the enumerator's.
enum class Opcode : std::uint8_t {
  Continuation = 0x0,
  Text = 0x1,
  Binary = 0x2,
  Close = 0x8,
  Ping = 0x9,
  Pong = 0xA,
};

/// The longest header of an unmasked frame: 2 bytes and a 64-bit length.
inline constexpr std::size_t kMaxServerHeader = 10;

/// Appends the header of an unmasked final frame carrying `payload_size` bytes: 2, 4 or 10
/// bytes. No allocation beyond `out` growing (reserve first when building many frames).
void append_header(std::string& out, Opcode opcode, std::uint64_t payload_size);

/// Appends a whole unmasked final frame whose payload is `prefix` followed by `payload`.
void append_frame(std::string& out, Opcode opcode, std::string_view prefix,
                  std::string_view payload);

/// One unmasked final frame, allocated once at its exact size. Control frames (Close, Ping,
/// Pong) must carry at most 125 bytes (§5.5); the caller keeps to that.
std::string frame(Opcode opcode, std::string_view payload);

}  // namespace steedos::gateway::ws
