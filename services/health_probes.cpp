#include "services/health_probes.hpp"

namespace steedos::services {

namespace {

gateway::HttpResponse json_response(int status, const Json& body) {
  gateway::HttpResponse response;
  response.status = status;
  response.content_type = "application/json; charset=UTF-8";
  response.body = body.dump();
  // A cached probe answer would hide the node's state from the next prober.
  response.headers.emplace_back("Cache-Control", "no-store");
  return response;
}

/// The service is in the INFO this node last sent (its local registry entry).
bool advertises(const moleculer::Broker& broker, const std::string& service_name) {
  for (const auto& service : broker.registry().local_node().services) {
    if (!service.is_object()) continue;
    const auto name = service.find("name");
    if (name != service.end() && name->is_string() && *name == service_name) return true;
  }
  return false;
}

}  // namespace

std::vector<std::string> Readiness::reasons() const {
  std::vector<std::string> reasons;
  if (draining_) reasons.emplace_back("draining");
  if (!broker_.connected()) reasons.emplace_back("transporter disconnected");
  if (!broker_.announced() || !advertises(broker_, service_name_)) {
    reasons.push_back("service " + service_name_ + " not announced");
  }
  const auto* list = broker_.registry().find_action(auth_action_);
  if (list == nullptr || list->endpoints.empty()) {
    reasons.push_back("auth action " + auth_action_ + " unavailable");
  }
  return reasons;
}

gateway::HttpResponse health_response() {
  return json_response(200, Json{{"status", "ok"}});
}

gateway::HttpResponse readiness_response(const std::vector<std::string>& reasons) {
  if (reasons.empty()) return json_response(200, Json{{"status", "ok"}});
  return json_response(503, Json{{"status", "not ready"}, {"reasons", reasons}});
}

}  // namespace steedos::services
