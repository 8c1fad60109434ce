#pragma once
// Pure room rules of the `socket` service (spec: gateway-contract.md §3 and §9): which rooms a
// `subscribe` / `unsubscribe` argument names for a session, every validation and tenant/user
// isolation rule, the per-socket room limit and the `$socket.subscribe.*` event. The gateway
// joins or leaves the rooms and answers the ack; nothing here touches a socket.
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "protocol/json.hpp"
#include "services/config.hpp"

namespace steedos::services::rules {

/// Limits of §3/§9.
inline constexpr size_t kMaxRoomPartBytes = 256;
inline constexpr size_t kMaxRoomParts = 64;
/// The longest full room name an operator action accepts: a tenant id, a part and a user id of
/// at most kMaxRoomPartBytes each, joined by `-` (the longest a subscribe can make with ids of
/// that size).
inline constexpr size_t kMaxRoomNameBytes = 3 * kMaxRoomPartBytes + 2;

/// What the room rules need to know about a socket's session.
struct SessionView {
  std::optional<std::string> tenant_id;
  std::optional<std::string> user_id;  // set when authenticated
  bool anonymous = true;
};

/// The rooms a subscribe/unsubscribe names, or why it is refused.
struct RoomRequest {
  std::vector<std::string> rooms;  // full names, in the order of roomParts, duplicates removed
  std::string error;               // empty: accepted; else the reason for `{ error }`
  /// Refused by an isolation rule (tenant, anonymous, personal room), not for its shape.
  bool forbidden = false;
  bool individual = false;
  Json room_parts_original;  // `roomParts` as the client sent it (null when missing)
  bool string_form = false;  // roomParts was a string (only then is $socket.subscribe.* emitted)

  bool ok() const { return error.empty(); }
};

/// Validates `args` ({ roomParts, individual }) and names the rooms: `<tenantId>-<p>` shared,
/// `<tenantId>-<p>-<userId>` individual. Used alike for subscribe and unsubscribe (§9).
RoomRequest resolve_rooms(const Json& args, const SessionView& session,
                          const GatewaySettings& settings);

/// `gateway.maxRoomsPerSocket` for subscribe only: the socket's named rooms after the join (its
/// own-id room excluded, rooms it is already in counted once) must not exceed `max`. Returns the
/// refusal reason, empty when within the limit.
std::string max_rooms_check(const std::vector<std::string>& current_named_rooms,
                            const std::vector<std::string>& new_rooms, size_t max);

/// A full room name given by an operator (socket.join / socket.leave): the reason it is
/// refused (empty, longer than kMaxRoomNameBytes, control characters), or "" when acceptable.
std::string check_room_name(const std::string& room);

/// Whether an operator's socket.join may put a socket with `session` into `room`: the isolation
/// a client's own subscribe gets (§3, §9). The room must be of the socket's tenant
/// (`<tenantId>-...`); anonymous sockets join only when gateway.anonymousRooms; a personal room
/// (its part names one of gateway.individualRoomParts) only for the user it ends with. Returns
/// the refusal reason, "" when allowed.
std::string may_join_room(const std::string& room, const SessionView& session,
                          const GatewaySettings& settings);

/// The Moleculer event a successful subscribe emits (§3): `$socket.subscribe.<roomParts>` with
/// `{ roomParts, individual, space, userId? }` (userId for individual subscriptions). nullopt
/// for refused requests and array roomParts. Not for unsubscribe.
std::optional<std::pair<std::string, Json>> subscribe_event(const RoomRequest& request,
                                                            const SessionView& session);

}  // namespace steedos::services::rules
