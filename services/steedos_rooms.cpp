#include "services/steedos_rooms.hpp"

#include <algorithm>
#include <unordered_set>

namespace steedos::services::rules {

namespace {

constexpr const char* kShapeError = "roomParts must be a string or an array of strings";

bool has_control_character(const std::string& part) {
  // U+0000–U+001F and U+007F are single bytes in UTF-8 and never occur inside a multi-byte
  // sequence, so a byte scan is exact.
  return std::any_of(part.begin(), part.end(), [](char c) {
    auto byte = static_cast<unsigned char>(c);
    return byte < 0x20 || byte == 0x7F;
  });
}

// The reason one part is refused, or "" when it is acceptable.
std::string check_part(const Json& part) {
  if (!part.is_string()) return kShapeError;
  const auto& text = part.get_ref<const std::string&>();
  if (text.empty()) return "room part must not be empty";
  if (text.size() > kMaxRoomPartBytes) return "room part longer than 256 bytes";
  if (has_control_character(text)) return "room part contains control characters";
  return "";
}

// A shared part that a personal room would use: equal to `q` or starting with `q-` for q in
// individualRoomParts. Without this anyone could read `notification-change-<otherUserId>`.
bool names_personal_room(const std::string& part, const std::vector<std::string>& personal) {
  return std::any_of(personal.begin(), personal.end(), [&](const std::string& q) {
    return part == q ||
           (part.size() > q.size() && part.compare(0, q.size(), q) == 0 && part[q.size()] == '-');
  });
}

RoomRequest refuse(RoomRequest request, std::string reason) {
  request.rooms.clear();
  request.error = std::move(reason);
  return request;
}

/// A well-formed request the session may not make (the `forbidden` refusals of the metrics).
RoomRequest forbid(RoomRequest request, std::string reason) {
  request.forbidden = true;
  return refuse(std::move(request), std::move(reason));
}

}  // namespace

RoomRequest resolve_rooms(const Json& args, const SessionView& session,
                          const GatewaySettings& settings) {
  RoomRequest request;
  request.room_parts_original = nullptr;
  if (!args.is_object()) return refuse(std::move(request), "expected { roomParts, individual }");

  auto individual = args.find("individual");
  if (individual != args.end()) {
    // Omitted means false; anything but a boolean (null included) is refused rather than read
    // with JS truthiness, so "false" or 0 cannot silently pick the other kind of room.
    if (!individual->is_boolean()) {
      return refuse(std::move(request), "individual must be a boolean");
    }
    request.individual = individual->get<bool>();
  }

  auto room_parts = args.find("roomParts");
  if (room_parts == args.end() || room_parts->is_null()) {
    return refuse(std::move(request), "roomParts is required");
  }
  request.room_parts_original = *room_parts;
  std::vector<std::string> parts;
  if (room_parts->is_string()) {
    request.string_form = true;
    if (room_parts->get_ref<const std::string&>().empty()) {
      return refuse(std::move(request), "roomParts must not be empty");
    }
    std::string reason = check_part(*room_parts);
    if (!reason.empty()) return refuse(std::move(request), reason);
    parts.push_back(room_parts->get<std::string>());
  } else if (room_parts->is_array()) {
    if (room_parts->empty()) return refuse(std::move(request), "roomParts must not be empty");
    if (room_parts->size() > kMaxRoomParts) {
      return refuse(std::move(request), "too many roomParts (max 64)");
    }
    // One bad part refuses the whole request (§9): nothing is half-joined.
    for (const auto& part : *room_parts) {
      std::string reason = check_part(part);
      if (!reason.empty()) return refuse(std::move(request), reason);
      parts.push_back(part.get<std::string>());
    }
  } else {
    return refuse(std::move(request), kShapeError);
  }

  if (!session.tenant_id || session.tenant_id->empty()) {
    return forbid(std::move(request), "no tenant for this connection");
  }
  if (session.anonymous) {
    if (request.individual) {
      return forbid(std::move(request), "anonymous sockets cannot join individual rooms");
    }
    if (!settings.anonymous_rooms) {
      return forbid(std::move(request), "anonymous sockets cannot join tenant rooms");
    }
  }
  if (request.individual && (!session.user_id || session.user_id->empty())) {
    return forbid(std::move(request), "no user for individual rooms");
  }
  if (!request.individual) {
    for (const auto& part : parts) {
      if (names_personal_room(part, settings.individual_room_parts)) {
        return forbid(std::move(request), "'" + part + "' is a personal room: use individual");
      }
    }
  }

  const std::string prefix = *session.tenant_id + "-";
  const std::string suffix = request.individual ? "-" + *session.user_id : std::string();
  std::unordered_set<std::string> seen;
  for (const auto& part : parts) {
    std::string room = prefix + part + suffix;
    if (seen.insert(room).second) request.rooms.push_back(std::move(room));
  }
  return request;
}

std::string max_rooms_check(const std::vector<std::string>& current_named_rooms,
                            const std::vector<std::string>& new_rooms, size_t max) {
  std::unordered_set<std::string> after(current_named_rooms.begin(), current_named_rooms.end());
  after.insert(new_rooms.begin(), new_rooms.end());
  if (after.size() <= max) return "";
  return "too many rooms (max " + std::to_string(max) + " per socket)";
}

std::string check_room_name(const std::string& room) {
  if (room.empty()) return "empty";
  if (room.size() > kMaxRoomNameBytes) {
    return "longer than " + std::to_string(kMaxRoomNameBytes) + " bytes";
  }
  if (has_control_character(room)) return "contains control characters";
  return "";
}

std::string may_join_room(const std::string& room, const SessionView& session,
                          const GatewaySettings& settings) {
  if (!session.tenant_id || session.tenant_id->empty()) return "no tenant for this connection";
  const std::string prefix = *session.tenant_id + "-";
  if (room.size() <= prefix.size() || room.compare(0, prefix.size(), prefix) != 0) {
    return "room of another tenant";
  }
  if (session.anonymous && !settings.anonymous_rooms) {
    return "anonymous sockets cannot join tenant rooms";
  }
  const std::string part = room.substr(prefix.size());
  if (names_personal_room(part, settings.individual_room_parts)) {
    const bool own = !session.anonymous && session.user_id && !session.user_id->empty() &&
                     part.size() > session.user_id->size() + 1 &&
                     part.compare(part.size() - session.user_id->size() - 1, std::string::npos,
                                  "-" + *session.user_id) == 0;
    if (!own) return "personal room of another user";
  }
  return "";
}

std::optional<std::pair<std::string, Json>> subscribe_event(const RoomRequest& request,
                                                            const SessionView& session) {
  if (!request.ok() || !request.string_form || !session.tenant_id) return std::nullopt;
  const auto& room_parts = request.room_parts_original.get_ref<const std::string&>();
  // Key order as the contract lists it; the original put userId before space, which no JSON
  // consumer can tell apart.
  Json payload = Json::object();
  payload["roomParts"] = room_parts;
  payload["individual"] = request.individual;
  payload["space"] = *session.tenant_id;
  if (request.individual && session.user_id) payload["userId"] = *session.user_id;
  return std::make_pair("$socket.subscribe." + room_parts, std::move(payload));
}

}  // namespace steedos::services::rules
