#pragma once
// Moleculer packets on NATS with the JSON serializer (spec: moleculer-node.md §1-2).
// Pure codec: subjects <-> packet types, bytes <-> JSON payloads. No I/O, no logging.
#include <optional>
#include <string>
#include <string_view>

#include "protocol/json.hpp"

namespace steedos::protocol {

enum class PacketType {
  Event,
  Request,
  Response,
  Discover,
  Info,
  Heartbeat,
  Ping,
  Pong,
  Disconnect,
};

/// The subject command word: "EVENT", "REQ", ...
const char* command_name(PacketType type);

/// Subject names of one namespace: `MOL` or `MOL-<namespace>`.
class Topics {
 public:
  explicit Topics(const std::string& moleculer_namespace);

  const std::string& prefix() const { return prefix_; }
  /// `<prefix>.<CMD>`
  std::string broadcast(PacketType type) const;
  /// `<prefix>.<CMD>.<nodeID>`
  std::string targeted(PacketType type, const std::string& node_id) const;
  /// `<prefix>.REQB.<action>` (NATS queue group = action).
  std::string balanced_request(const std::string& action) const;
  /// `<prefix>.EVENTB.<group>.<event>` with `**` and everything after it replaced by `>`, as the
  /// JS NATS transporter does (queue group = group).
  std::string balanced_event(const std::string& group, const std::string& event_pattern) const;
  /// The packet type carried by a subject of this namespace, or nothing for foreign subjects.
  std::optional<PacketType> classify(std::string_view subject) const;

 private:
  std::string prefix_;
};

enum class DecodeError {
  None,
  InvalidJson,
  TooDeep,  // arrays/objects nested deeper than kMaxPacketJsonDepth
  NotAnObject,
  MissingSender,
  VersionMismatch,
  MissingField,
};

struct DecodedPacket {
  DecodeError error = DecodeError::None;
  Json payload;                  // the whole packet object when error == None
  std::string sender;            // when known
  std::string received_version;  // for VersionMismatch
  std::string detail;            // which field is missing or wrong, for the log line

  bool ok() const { return error == DecodeError::None; }
};

/// Parses and validates one packet: a JSON object nested at most kMaxPacketJsonDepth deep (refused
/// as TooDeep while parsing), with string `ver` equal to `expected_version`, string `sender`, and
/// the fields this node relies on for `type` (id/action for REQ, id/success for RES, event for
/// EVENT, id for PING/PONG).
DecodedPacket decode_packet(PacketType type, std::string_view bytes,
                            const std::string& expected_version);

/// Appends `ver` and `sender` (as JS does, last) and serializes.
std::string encode_packet(Json payload, const std::string& version, const std::string& sender);

}  // namespace steedos::protocol
