#pragma once
// The broker's own settings (Moleculer broker option names in comments). The product's
// configuration file is parsed by services/config; the broker takes this plain struct.
#include <cstddef>
#include <string>

#include "protocol/json.hpp"

namespace steedos::moleculer {

struct BrokerSettings {
  std::string moleculer_namespace;  // "namespace"
  std::string node_id;              // "nodeID"; empty in the file -> "<hostname>-<pid>"
  std::string transporter = "nats://127.0.0.1:4222";  // "transporter"
  bool transporter_configured = false;         // false when neither file nor TRANSPORTER set one
  std::string transporter_name = "NATS";       // set by the broker from its transporter
  std::string serializer = "JSON";             // only JSON is supported
  std::string protocol_version = "4";          // "protocolVersion": "4" (0.14) or "5" (0.15)
  int request_timeout_ms = 0;                  // "requestTimeout", 0 = none
  double heartbeat_interval_s = 10;            // "heartbeatInterval"
  double heartbeat_timeout_s = 30;             // "heartbeatTimeout"
  double clean_offline_nodes_timeout_s = 600;  // "cleanOfflineNodesTimeout"
  bool disable_balancer = false;               // "disableBalancer"
  bool prefer_local = true;                    // "registry.preferLocal"
  size_t max_queue_size = 50000;               // "transit.maxQueueSize": pending outgoing requests
  std::string log_level = "info";              // "logLevel": trace|debug|info|warn|error|fatal
  Json metadata = Json::object();              // "metadata"
};

}  // namespace steedos::moleculer
