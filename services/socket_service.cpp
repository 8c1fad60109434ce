#include "services/socket_service.hpp"

#include "services/log.hpp"

namespace steedos::services {

const std::vector<std::string>& socket_event_patterns() {
  static const std::vector<std::string> patterns = {"$metadata.*",
                                                    "$broadcast.$notification.users",
                                                    "$broadcast.socket.emit",
                                                    "$socket.emit",
                                                    "@objectRecordEvent.*.*",
                                                    "$user.logout",
                                                    "$broadcast.$user.logout"};
  return patterns;
}

ServiceSchema make_socket_service(const std::string& name) {
  ServiceSchema service;
  service.name = name;
  for (const auto& pattern : socket_event_patterns()) {
    EventSchema event;
    event.pattern = pattern;
    event.group = "socket";  // the contract fixes the group, whatever the service is called
    event.handler = [](ContextPtr ctx) {
      // Payloads may carry tokens ($user.logout): log the event name and sender only.
      component_logger("socket")->debug("event '{}' from '{}' ({})", ctx->name, ctx->node_id,
                                        ctx->event_type);
    };
    service.events.push_back(std::move(event));
  }
  return service;
}

}  // namespace steedos::services
