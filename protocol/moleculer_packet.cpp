#include "protocol/moleculer_packet.hpp"

#include <array>
#include <utility>

#include "protocol/json_reader.hpp"

namespace steedos::protocol {

namespace {

struct CommandWord {
  PacketType type;
  const char* word;
};

// REQB and EVENTB carry REQ and EVENT payloads on balanced (queue group) subjects.
constexpr std::array<CommandWord, 11> kCommandWords{{
    {PacketType::Event, "EVENT"},
    {PacketType::Request, "REQ"},
    {PacketType::Response, "RES"},
    {PacketType::Discover, "DISCOVER"},
    {PacketType::Info, "INFO"},
    {PacketType::Heartbeat, "HEARTBEAT"},
    {PacketType::Ping, "PING"},
    {PacketType::Pong, "PONG"},
    {PacketType::Disconnect, "DISCONNECT"},
    {PacketType::Request, "REQB"},
    {PacketType::Event, "EVENTB"},
}};

bool has_string(const Json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string();
}

// The fields this node dereferences for each packet type; everything else is optional.
const char* missing_required_field(PacketType type, const Json& packet) {
  switch (type) {
    case PacketType::Request:
      if (!has_string(packet, "id")) return "id";
      if (!has_string(packet, "action")) return "action";
      return nullptr;
    case PacketType::Response: {
      if (!has_string(packet, "id")) return "id";
      auto success = packet.find("success");
      if (success == packet.end() || !success->is_boolean()) return "success";
      return nullptr;
    }
    case PacketType::Event:
      if (!has_string(packet, "event")) return "event";
      return nullptr;
    case PacketType::Ping:
    case PacketType::Pong:
      if (packet.find("id") == packet.end()) return "id";
      return nullptr;
    default:
      return nullptr;
  }
}

}  // namespace

const char* command_name(PacketType type) {
  for (const auto& entry : kCommandWords) {
    if (entry.type == type) return entry.word;
  }
  return "UNKNOWN";
}

Topics::Topics(const std::string& moleculer_namespace)
    : prefix_(moleculer_namespace.empty() ? "MOL" : "MOL-" + moleculer_namespace) {}

std::string Topics::broadcast(PacketType type) const {
  return prefix_ + "." + command_name(type);
}

std::string Topics::targeted(PacketType type, const std::string& node_id) const {
  return prefix_ + "." + command_name(type) + "." + node_id;
}

std::string Topics::balanced_request(const std::string& action) const {
  return prefix_ + ".REQB." + action;
}

std::string Topics::balanced_event(const std::string& group,
                                   const std::string& event_pattern) const {
  std::string subject = prefix_ + ".EVENTB." + group + "." + event_pattern;
  // JS: subject.replace(/\*\*.*$/, ">"): NATS has no "**"; ">" matches the rest.
  auto double_star = subject.find("**");
  if (double_star != std::string::npos) subject = subject.substr(0, double_star) + ">";
  return subject;
}

std::optional<PacketType> Topics::classify(std::string_view subject) const {
  if (subject.size() <= prefix_.size() + 1 || subject.compare(0, prefix_.size(), prefix_) != 0 ||
      subject[prefix_.size()] != '.') {
    return std::nullopt;
  }
  std::string_view rest = subject.substr(prefix_.size() + 1);
  std::string_view word = rest.substr(0, rest.find('.'));
  for (const auto& entry : kCommandWords) {
    if (word == entry.word) return entry.type;
  }
  return std::nullopt;
}

DecodedPacket decode_packet(PacketType type, std::string_view bytes,
                            const std::string& expected_version) {
  DecodedPacket result;
  JsonRefusal why = JsonRefusal::Invalid;
  std::optional<Json> parsed = parse_json(bytes, kMaxPacketJsonDepth, &why);
  if (!parsed) {
    if (why == JsonRefusal::TooDeep) {
      result.error = DecodeError::TooDeep;
      result.detail = "JSON nested deeper than " + std::to_string(kMaxPacketJsonDepth) + " levels";
    } else {
      result.error = DecodeError::InvalidJson;
      result.detail = "not valid JSON";
    }
    return result;
  }
  Json& packet = *parsed;
  if (!packet.is_object()) {
    result.error = DecodeError::NotAnObject;
    result.detail = "not a JSON object";
    return result;
  }
  if (!has_string(packet, "sender") || packet["sender"].get_ref<const std::string&>().empty()) {
    result.error = DecodeError::MissingSender;
    result.detail = "no sender";
    return result;
  }
  result.sender = packet["sender"].get<std::string>();
  // JS compares with !==: a numeric 4 is a mismatch just like "5".
  auto version = packet.find("ver");
  if (version == packet.end() || !version->is_string() ||
      version->get_ref<const std::string&>() != expected_version) {
    result.error = DecodeError::VersionMismatch;
    result.received_version = version == packet.end() ? "(none)" : version->dump();
    if (version != packet.end() && version->is_string()) {
      result.received_version = version->get<std::string>();
    }
    result.detail = "protocol version " + result.received_version;
    return result;
  }
  if (const char* field = missing_required_field(type, packet)) {
    result.error = DecodeError::MissingField;
    result.detail = std::string("missing or invalid '") + field + "'";
    return result;
  }
  result.payload = std::move(packet);
  return result;
}

std::string encode_packet(Json payload, const std::string& version, const std::string& sender) {
  if (payload.is_object()) {
    // One growth at most (see reserved_object): growing an ordered_map copies its values.
    auto& members = payload.get_ref<Json::object_t&>();
    if (members.capacity() < members.size() + 2) members.reserve(members.size() + 2);
  }
  payload["ver"] = version;
  payload["sender"] = sender;
  return dump_json(payload);
}

}  // namespace steedos::protocol
