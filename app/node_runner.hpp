#pragma once
// Shared start-up of a node process: configuration, logging, NATS, broker, signals.
// main.cpp (the product) and the interop test fixture differ only in the services they add.
#include <functional>

#include "services/broker.hpp"
#include "services/config.hpp"

namespace steedos::app {

/// Parses `--config FILE` (and `--help`), loads the configuration, connects and runs the broker
/// until SIGTERM/SIGINT, then stops it gracefully (INFO without services, DISCONNECT).
/// `add_services` registers the process's services before the broker starts.
/// Returns the process exit code: 0 after a clean stop, 1 on bad configuration or a failed start.
int run_node(int argc, char** argv,
             const std::function<void(services::Broker&, const services::Config&)>& add_services);

}  // namespace steedos::app
