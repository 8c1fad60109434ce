#pragma once
// The `socket` service as the cluster sees it (spec: gateway-contract.md §5): the Moleculer
// events a Steedos gateway receives, in group `socket`. Until the gateway exists the handlers
// only record and log what arrived.
#include <string>

#include "services/broker.hpp"

namespace steedos::services {

/// The event patterns of the contract, §5, in the order they are advertised.
const std::vector<std::string>& socket_event_patterns();

/// Builds the service; `name` is the configured service name (default "socket").
ServiceSchema make_socket_service(const std::string& name);

}  // namespace steedos::services
