#include "transporter_factory.hpp"

#include <stdexcept>
#include <string>

#include "common/log.hpp"
#include "transport/nats_transporter.hpp"
#include "transport/redis_config.hpp"
#include "transport/url_redaction.hpp"
// The Redis transporter is written apart from its configuration; until it is in the tree, a
// node configured for Redis stops with a clear error instead of failing to build.
#if __has_include("transport/redis_transporter.hpp")
#include "transport/redis_transporter.hpp"
#define STEEDOS_HAVE_REDIS_TRANSPORTER 1
#else
#define STEEDOS_HAVE_REDIS_TRANSPORTER 0
#endif

namespace steedos::app {

std::unique_ptr<transport::Transporter> make_transporter(asio::io_context& loop,
                                                         const services::Config& config) {
  auto log = component_logger("transporter");
  if (config.transport.kind == services::TransportSettings::Kind::Redis) {
    log->info("using Redis at {}", transport::describe_redis(config.transport.redis));
#if STEEDOS_HAVE_REDIS_TRANSPORTER
    return std::make_unique<transport::RedisTransporter>(loop, config.transport.redis);
#else
    (void)loop;
    throw std::runtime_error(
        "Redis transporter not built: this binary has no transport/redis_transporter");
#endif
  }
  log->info("using NATS at {}", transport::redact_credentials(config.broker.transporter));
  transport::NatsOptions nats;
  nats.url = config.broker.transporter;
  nats.name = config.broker.node_id;
  nats.ping_interval_ms = config.transport.nats_ping_interval_ms;
  nats.max_pings_out = config.transport.nats_max_pings_out;
  return std::make_unique<transport::NatsTransporter>(loop, nats);
}

}  // namespace steedos::app
