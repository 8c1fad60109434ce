#pragma once
// The liveness and readiness probes (gateway.healthPath, gateway.readyPath) for load balancers
// and Kubernetes. The gateway serves them (GatewayServer::mount_handler) without knowing what
// "ready" means; the broker's state decides it here.
#include <string>
#include <vector>

#include "gateway/engine_server.hpp"
#include "moleculer/broker.hpp"

namespace steedos::services {

/// Why the node should not receive traffic now; empty when ready.
class Readiness {
 public:
  /// `broker` outlives this object. `service_name` is the service this node announces (the
  /// `socket` service); `auth_action` is auth.action, without which no client can log in.
  Readiness(const moleculer::Broker& broker, std::string service_name, std::string auth_action)
      : broker_(broker),
        service_name_(std::move(service_name)),
        auth_action_(std::move(auth_action)) {}

  /// The drain began (SIGTERM/SIGINT): not ready from now on.
  void set_draining() { draining_ = true; }

  std::vector<std::string> reasons() const;

 private:
  const moleculer::Broker& broker_;
  std::string service_name_;
  std::string auth_action_;
  bool draining_ = false;
};

/// The liveness answer: the loop that serves it is the one everything else runs on.
gateway::HttpResponse health_response();
/// 200 {"status":"ok"} when `reasons` is empty, else 503 {"status":"not ready","reasons":[...]}.
gateway::HttpResponse readiness_response(const std::vector<std::string>& reasons);

}  // namespace steedos::services
