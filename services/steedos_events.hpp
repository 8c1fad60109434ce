#pragma once
// Pure mapping of the Moleculer events the `socket` service handles to Socket.IO deliveries
// (spec: gateway-contract.md §5 and §9). Each function checks one payload shape and says what
// to send where, or why nothing is sent; the service encodes each Delivery once and hands the
// same bytes to every recipient, logs and counts rejections.
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "protocol/json.hpp"

namespace steedos::services::rules {

/// Every socket of the node.
struct GlobalTarget {};
/// Every socket in any of these rooms (each socket once). Never empty.
struct RoomsTarget {
  std::vector<std::string> rooms;
};
using Target = std::variant<GlobalTarget, RoomsTarget>;

/// One Socket.IO event with exactly one argument.
struct Delivery {
  std::string event;
  std::string args_json;  // the one argument, serialized with dump_json (key order kept)
  Target target;
};

/// Send these (possibly none, e.g. a notification for an empty user list).
struct Deliver {
  std::vector<Delivery> deliveries;
};
/// Not for clients, not an error either ($metadata.* of a type outside metadataTypes).
struct Ignored {};
/// A payload that breaks the contract: logged with the reason and counted, never delivered.
/// Why a payload was refused, as a small fixed set (the metrics' `reason` label).
enum class RejectReason : uint8_t {
  InvalidEventName,   // the event name lacks the parts its pattern maps
  NotAnObject,        // the payload or its data is not an object
  MissingField,       // a required field is absent or empty
  InvalidField,       // a field has the wrong type or shape
  ReservedEventName,  // eventName is one Socket.IO reserves
};
inline constexpr size_t kRejectReasons = 5;
/// snake_case label of `reason` ("invalid_event_name", ...).
const char* reject_reason_label(RejectReason reason);

struct Rejected {
  std::string reason;
  RejectReason kind = RejectReason::InvalidField;
};
using EventOutcome = std::variant<Deliver, Ignored, Rejected>;

/// `$metadata.<type>` → `s:metadata:change` `{ type, action, _id, name, objectName }` to every
/// socket, only for `type` in `metadata_types`.
EventOutcome map_metadata(std::string_view event_name, const Json& payload,
                          const std::vector<std::string>& metadata_types);

/// `$broadcast.$notification.users` `{ data: { tenantId, users, message } }` →
/// `s:notification-change` `{ message }` to `<tenantId>-notification-change-<userId>` per user
/// (one Delivery, all rooms: the packet is the same for every user).
EventOutcome map_notification_users(const Json& payload);

/// `$broadcast.socket.emit` (`nested`: `{ data: { eventName, eventParams, room? } }`) and
/// `$socket.emit` (flat `{ eventName, eventParams, room? }`) → `<eventName>` with eventParams,
/// to `room` verbatim or to every socket when room is absent.
EventOutcome map_socket_emit(const Json& payload, bool nested);

/// `@objectRecordEvent.<object>[.<action>]` `{ objectApiName, id, spaceId, ... }` →
/// `s:record:<object>:change-<id>` `{ _id: <id> }` to `<spaceId>-record:<object>:change-<id>`.
EventOutcome map_object_record_event(std::string_view event_name, const Json& payload);

/// `$user.logout` / `$broadcast.$user.logout`: the token to forget, from `{ authToken }` or
/// `{ data: { authToken } }`; nullopt when there is none (a rejected payload).
std::optional<std::string> map_logout(const Json& payload);

}  // namespace steedos::services::rules
