#include "gateway/outgoing.hpp"

#include "gateway/ws_frame.hpp"
#include "protocol/engineio.hpp"

namespace steedos::gateway {
std::shared_ptr<const OutgoingPacket> OutgoingPacket::control(char type, std::string payload) {
  // make_shared cannot reach the private constructor.
  std::shared_ptr<OutgoingPacket> packet(new OutgoingPacket());
  // One Engine.IO packet is one unmasked final frame (§1.5).
  const std::string_view type_digit(&type, 1);
  packet->frames_.reserve(ws::kMaxServerHeader + 1 + payload.size());
  ws::append_frame(packet->frames_, ws::Opcode::Text, type_digit, payload);
  packet->polling_.reserve(1 + payload.size());
  packet->polling_.push_back(type);
  packet->polling_.append(payload);
  packet->part_count_ = 1;
  return packet;
}

std::shared_ptr<const OutgoingPacket> OutgoingPacket::messages(std::vector<MessagePart> parts,
                                                               std::string offset) {
  std::shared_ptr<OutgoingPacket> packet(new OutgoingPacket());
  packet->offset_ = std::move(offset);
  const std::string_view message_digit = "4";

  size_t frames_size = 0;
  size_t polling_size = parts.empty() ? 0 : parts.size() - 1;  // separators
  for (const MessagePart& part : parts) {
    frames_size += ws::kMaxServerHeader + part.data.size() + (part.binary ? 0 : 1);
    polling_size += part.binary ? 1 + (part.data.size() + 2) / 3 * 4 : 1 + part.data.size();
  }
  packet->frames_.reserve(frames_size);
  packet->polling_.reserve(polling_size);

  for (size_t i = 0; i < parts.size(); ++i) {
    const MessagePart& part = parts[i];
    if (i != 0) packet->polling_.push_back(protocol::eio::kRecordSeparator);
    if (part.binary) {
      // A binary frame is a message packet by itself: no type byte (§1.3, §2.2).
      ws::append_frame(packet->frames_, ws::Opcode::Binary, {}, part.data);
      packet->polling_.push_back('b');
      protocol::eio::base64_encode_to(part.data, packet->polling_);
    } else {
      ws::append_frame(packet->frames_, ws::Opcode::Text, message_digit, part.data);
      packet->polling_.append(message_digit);
      packet->polling_.append(part.data);
    }
  }
  packet->part_count_ = parts.size();
  return packet;
}

}  // namespace steedos::gateway
