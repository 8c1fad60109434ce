#include "gateway/outgoing.hpp"

#include <websocketpp/frame.hpp>

#include "protocol/engineio.hpp"

namespace steedos::gateway {
namespace {

namespace frame = websocketpp::frame;

// Largest header a server frame can have: 2 bytes + 8-byte length (no masking key).
constexpr size_t kMaxServerHeader = frame::BASIC_HEADER_LENGTH + 8;

// Appends one unmasked, final (FIN) frame. Server frames are never masked (RFC 6455 §5.1), and
// one Engine.IO packet is one frame (§1.5), so there is no fragmentation.
void append_frame(std::string& out, frame::opcode::value opcode, std::string_view prefix,
                  std::string_view payload) {
  const uint64_t size = prefix.size() + payload.size();
  const frame::basic_header basic(opcode, size, /*fin=*/true, /*mask=*/false);
  const frame::extended_header extended(size);
  out.append(frame::prepare_header(basic, extended));
  out.append(prefix);
  out.append(payload);
}

}  // namespace

std::shared_ptr<const OutgoingPacket> OutgoingPacket::control(char type, std::string payload) {
  // make_shared cannot reach the private constructor.
  std::shared_ptr<OutgoingPacket> packet(new OutgoingPacket());
  const std::string_view type_digit(&type, 1);
  packet->frames_.reserve(kMaxServerHeader + 1 + payload.size());
  append_frame(packet->frames_, frame::opcode::text, type_digit, payload);
  packet->polling_.reserve(1 + payload.size());
  packet->polling_.push_back(type);
  packet->polling_.append(payload);
  packet->part_count_ = 1;
  return packet;
}

std::shared_ptr<const OutgoingPacket> OutgoingPacket::messages(std::vector<MessagePart> parts) {
  std::shared_ptr<OutgoingPacket> packet(new OutgoingPacket());
  const std::string_view message_digit = "4";

  size_t frames_size = 0;
  size_t polling_size = parts.empty() ? 0 : parts.size() - 1;  // separators
  for (const MessagePart& part : parts) {
    frames_size += kMaxServerHeader + part.data.size() + (part.binary ? 0 : 1);
    polling_size += part.binary ? 1 + (part.data.size() + 2) / 3 * 4 : 1 + part.data.size();
  }
  packet->frames_.reserve(frames_size);
  packet->polling_.reserve(polling_size);

  for (size_t i = 0; i < parts.size(); ++i) {
    const MessagePart& part = parts[i];
    if (i != 0) packet->polling_.push_back(protocol::eio::kRecordSeparator);
    if (part.binary) {
      // A binary frame is a message packet by itself: no type byte (§1.3, §2.2).
      append_frame(packet->frames_, frame::opcode::binary, {}, part.data);
      packet->polling_.push_back('b');
      protocol::eio::base64_encode_to(part.data, packet->polling_);
    } else {
      append_frame(packet->frames_, frame::opcode::text, message_digit, part.data);
      packet->polling_.append(message_digit);
      packet->polling_.append(part.data);
    }
  }
  packet->part_count_ = parts.size();
  return packet;
}

}  // namespace steedos::gateway
