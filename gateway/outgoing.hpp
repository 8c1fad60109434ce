#pragma once
// An outgoing Engine.IO message group (one Socket.IO packet: a text part and its binary
// attachments), encoded once and shared, immutable, by every recipient. Per recipient the cost is
// a refcount and a queue push: WebSocket sessions write `websocket_frames()` as is, polling
// sessions append `polling_payload()`.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace steedos::gateway {

struct MessagePart {
  bool binary = false;
  std::string data;  // text: the Engine.IO message payload without the '4' type digit
};

class OutgoingPacket {
 public:
  /// One Engine.IO packet of another type (`2` ping, `6` noop, `1` close, `0` open, ...):
  /// type digit + payload, a single text frame.
  static std::shared_ptr<const OutgoingPacket> control(char type, std::string payload = {});
  /// Engine.IO message(s): `parts[0]` usually text, later parts binary attachments.
  /// `offset`: the connection state recovery offset the packet carries as the last element of
  /// its data array (gateway/recovery.hpp); empty when recovery is off or the packet has none.
  static std::shared_ptr<const OutgoingPacket> messages(std::vector<MessagePart> parts,
                                                        std::string offset = {});

  /// Every part as a complete unmasked RFC 6455 frame (FIN set), concatenated, built at creation.
  const std::string& websocket_frames() const { return frames_; }
  /// The polling form: parts joined with '\x1e', text as `4<data>` (or `<type><payload>` for
  /// control packets), binary as `b<base64>`. Built at creation.
  const std::string& polling_payload() const { return polling_; }
  /// Bytes this packet adds to a recipient's queue (for the per-socket budget).
  size_t size() const { return frames_.size(); }
  size_t part_count() const { return part_count_; }
  /// The recovery offset stamped into this packet, or empty (gateway/recovery.hpp).
  const std::string& offset() const { return offset_; }

 private:
  OutgoingPacket() = default;
  std::string frames_;
  std::string polling_;
  std::string offset_;
  size_t part_count_ = 0;
};

using OutgoingPacketPtr = std::shared_ptr<const OutgoingPacket>;

}  // namespace steedos::gateway
