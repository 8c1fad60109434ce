#pragma once
// The pure rules of the Steedos `socket` service (spec: gateway-contract.md §2, §3, §5, §6, §9),
// namespace steedos::services::rules. No I/O, sockets, broker calls or logging: the gateway and
// the service feed these functions and act on the answers.
//   steedos_auth_rules.hpp     cookies, credentials, auth replies, session, auth cache (§2, §9)
//   steedos_rooms.hpp          subscribe/unsubscribe rooms and their isolation rules (§3, §9)
//   steedos_events.hpp         Moleculer events to Socket.IO deliveries (§5, §9)
//   steedos_action_params.hpp  socket.* action params validation (§6, §9)
#include "services/steedos_action_params.hpp"
#include "services/steedos_auth_rules.hpp"
#include "services/steedos_events.hpp"
#include "services/steedos_rooms.hpp"
