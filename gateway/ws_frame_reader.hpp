#pragma once
// The byte-level reader of the frames a WebSocket client sends (RFC 6455 §5): header, masking,
// length checks, control frames and the reassembly of fragmented messages. Pure: no socket, no
// allocation except while a fragmented message is reassembled. WebSocketConnection parses
// straight from its shared read buffer with it and keeps only an unfinished tail
// (websocket-data-path.md, "no resident read buffer"); tests and the fuzzer drive it alone.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "gateway/ws_frame.hpp"

namespace steedos::gateway::ws {

/// Close codes the reader reports (RFC 6455 §7.4.1).
inline constexpr std::uint16_t kCloseProtocolError = 1002;
inline constexpr std::uint16_t kCloseTooBig = 1009;

/// XORs `length` bytes of `payload` with the 4-byte `mask` (§5.3), in place.
void unmask(char* payload, std::size_t length, const char* mask);
/// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code points > U+10FFFF).
bool valid_utf8(std::string_view text);
/// Whether a peer may put `code` in a close frame (§7.4).
bool valid_close_code(std::uint16_t code);

/// Reads client frames. The sink receives, in wire order:
///   bool on_message(std::string_view data, bool binary)  a whole (reassembled) data message;
///                                                        text is NOT checked for UTF-8 here
///   bool on_ping(std::string_view payload)
///   bool on_pong(std::string_view payload)
///   bool on_close(std::uint16_t code, std::string_view reason)  a valid close frame; code
///                                                        1005 (no status) when it had no body
///   void on_error(std::uint16_t close_code)              a protocol error; parse() stops
/// Returning false from a callback stops parse() after that frame (its bytes are consumed).
/// A template, so the per-frame calls inline into the connection's hot path.
class FrameReader {
 public:
  explicit FrameReader(std::uint64_t max_message_bytes) : max_message_bytes_(max_message_bytes) {}

  /// Parses whole frames from `data`, unmasking payloads in place, and returns the bytes
  /// consumed; the rest is an unfinished frame (or the frame that caused an error: its header
  /// is not consumed) to be offered again with more bytes behind it.
  template <class Sink>
  std::size_t parse(char* data, std::size_t size, Sink& sink);

  /// Drops a fragmented message being reassembled (after an error or when the stream ends).
  void reset() {
    message_.reset();
    message_opcode_ = 0;
  }
  /// Whether a fragmented message is being reassembled.
  bool in_message() const { return message_opcode_ != 0; }

 private:
  std::uint64_t max_message_bytes_;
  std::unique_ptr<std::string> message_;  // the fragments so far
  std::uint8_t message_opcode_ = 0;       // opcode of the fragmented message, 0 when none
};

template <class Sink>
std::size_t FrameReader::parse(char* data, std::size_t size, Sink& sink) {
  constexpr auto op = [](Opcode o) { return static_cast<std::uint8_t>(o); };
  std::size_t pos = 0;
  for (;;) {
    const std::size_t avail = size - pos;
    if (avail < 2) break;
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(data + pos);
    const bool fin = (bytes[0] & 0x80) != 0;
    const std::uint8_t opcode = bytes[0] & 0x0F;
    if ((bytes[0] & 0x70) != 0 || (bytes[1] & 0x80) == 0) {
      // RSV bits without a negotiated extension, or an unmasked client frame.
      sink.on_error(kCloseProtocolError);
      break;
    }
    std::uint64_t length = bytes[1] & 0x7F;
    std::size_t header = 2;
    if (length == 126) {
      if (avail < 4) break;
      length = (std::uint64_t{bytes[2]} << 8) | bytes[3];
      header = 4;
    } else if (length == 127) {
      if (avail < 10) break;
      length = 0;
      for (int i = 2; i < 10; ++i) length = (length << 8) | bytes[i];
      if (length >> 63) {
        sink.on_error(kCloseProtocolError);
        break;
      }
      header = 10;
    }
    header += 4;  // masking key
    if ((opcode & 0x8) != 0) {
      if (!fin || length > 125 || opcode > op(Opcode::Pong)) {
        sink.on_error(kCloseProtocolError);
        break;
      }
    } else {
      if (opcode > op(Opcode::Binary)) {
        sink.on_error(kCloseProtocolError);
        break;
      }
      const bool continuation = opcode == op(Opcode::Continuation);
      if (continuation != (message_opcode_ != 0)) {
        // A continuation with nothing to continue, or a new message inside a fragmented one.
        sink.on_error(kCloseProtocolError);
        break;
      }
      // Checked on the header, before the payload is buffered.
      const std::uint64_t so_far = continuation ? message_->size() : 0;
      if (length > max_message_bytes_ - so_far) {
        sink.on_error(kCloseTooBig);
        break;
      }
    }
    // The rest of the frame (masking key included) has not arrived yet.
    if (avail < header || avail - header < length) break;
    char* payload = data + pos + header;
    const auto n = static_cast<std::size_t>(length);
    unmask(payload, n, payload - 4);
    pos += header + n;

    bool more = true;
    switch (opcode) {
      case op(Opcode::Close): {
        std::uint16_t code = 1005;  // no status
        if (n == 1) {
          sink.on_error(kCloseProtocolError);
          return pos;
        }
        std::string_view reason;
        if (n >= 2) {
          code = static_cast<std::uint16_t>((std::uint8_t(payload[0]) << 8) |
                                            std::uint8_t(payload[1]));
          reason = {payload + 2, n - 2};
          if (!valid_close_code(code) || !valid_utf8(reason)) {
            sink.on_error(kCloseProtocolError);
            return pos;
          }
        }
        more = sink.on_close(code, reason);
        break;
      }
      case op(Opcode::Ping):
        more = sink.on_ping({payload, n});
        break;
      case op(Opcode::Pong):
        more = sink.on_pong({payload, n});
        break;
      case op(Opcode::Text):
      case op(Opcode::Binary):
        if (fin) {
          more = sink.on_message({payload, n}, opcode == op(Opcode::Binary));
        } else {
          message_opcode_ = opcode;
          message_ = std::make_unique<std::string>(payload, n);
        }
        break;
      default: {  // continuation
        message_->append(payload, n);
        if (!fin) break;
        const bool binary = message_opcode_ == op(Opcode::Binary);
        message_opcode_ = 0;
        const auto message = std::move(message_);  // freed once delivered
        more = sink.on_message(*message, binary);
        break;
      }
    }
    if (!more) break;
  }
  return pos;
}

}  // namespace steedos::gateway::ws
