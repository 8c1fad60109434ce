// steedos-socket: a Moleculer node serving the Steedos `socket` service.
#include "node_runner.hpp"
#include "services/socket_service.hpp"

int main(int argc, char** argv) {
  return steedos::app::run_node(
      argc, argv, [](steedos::services::Broker& broker, const steedos::services::Config& config) {
        broker.add_service(steedos::services::make_socket_service(config.service_name));
      });
}
