#pragma once
// Shared start-up of a node process: configuration, logging, transporter, broker, signals.
// main.cpp (the product) and the interop test fixture differ only in the services they add.
#include <functional>
#include <memory>
#include <string>

#include "moleculer/broker.hpp"
#include "services/config.hpp"

namespace steedos::app {

/// What a process runs around its broker: a server started before the broker announces itself
/// and stopped before it says goodbye.
class NodeParts {
 public:
  virtual ~NodeParts() = default;
  /// Throws std::runtime_error when the part cannot start (e.g. its port is taken).
  virtual void start() {}
  /// The first step of a drain (SIGTERM/SIGINT): refuse new connections, keep the open ones.
  virtual void stop_accepting() {}
  /// Stops accepting and starts closing what is open: in a drain, called once the broker has
  /// left the cluster (DISCONNECT sent).
  virtual void stop() {}
  /// Connections still open after stop(); the process exits once this is 0 and the broker has
  /// left, or when `drain_timeout` has passed.
  virtual size_t open_connections() const { return 0; }
  /// gateway.drainTimeout by default.
  virtual int drain_timeout_ms() const { return drain_timeout_ms_; }
  void set_drain_timeout_ms(int ms) { drain_timeout_ms_ = ms; }

 private:
  int drain_timeout_ms_ = 5000;
};

using Assemble =
    std::function<std::unique_ptr<NodeParts>(moleculer::Broker&, const services::Config&)>;

/// As run_node, with parts that live as long as the broker.
/// `more_usage`: lines of --help for the binary's own options.
int run_node_with(int argc, char** argv, const Assemble& assemble,
                  const std::string& more_usage = {});

/// Parses `--config FILE` (and `--help`), loads the configuration, connects and runs the broker
/// until SIGTERM/SIGINT, then drains: the parts stop (the gateway stops accepting and closes
/// every socket), the broker leaves (INFO without services, DISCONNECT), and the process exits
/// once both are done, or after gateway.drainTimeout ms at the latest.
/// `add_services` registers the process's services before the broker starts.
/// Returns the process exit code: 0 after a clean stop, 1 on bad configuration or a failed start.
int run_node(int argc, char** argv,
             const std::function<void(moleculer::Broker&, const services::Config&)>& add_services);

}  // namespace steedos::app
