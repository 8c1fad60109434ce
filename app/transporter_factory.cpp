#include "transporter_factory.hpp"

#include <stdexcept>
#include <string>

#include "common/log.hpp"
#include "transport/nats_transporter.hpp"
#include "transport/redis_config.hpp"
// The Redis transporter is written apart from its configuration; until it is in the tree, a
// node configured for Redis stops with a clear error instead of failing to build.
#if __has_include("transport/redis_transporter.hpp")
#include "transport/redis_transporter.hpp"
#define STEEDOS_HAVE_REDIS_TRANSPORTER 1
#else
#define STEEDOS_HAVE_REDIS_TRANSPORTER 0
#endif

namespace steedos::app {

namespace {

/// "nats://user:pass@a:4222,nats://b:4222" -> "nats://***@a:4222,nats://b:4222".
std::string redacted_urls(const std::string& urls) {
  std::string result;
  std::size_t start = 0;
  while (start <= urls.size()) {
    auto end = urls.find(',', start);
    if (end == std::string::npos) end = urls.size();
    std::string item = urls.substr(start, end - start);
    const auto scheme = item.find("://");
    const auto host_start = scheme == std::string::npos ? 0 : scheme + 3;
    const auto at = item.rfind('@', item.find('/', host_start));
    if (at != std::string::npos && at >= host_start) {
      item = item.substr(0, host_start) + "***" + item.substr(at);
    }
    result += (result.empty() ? "" : ",") + item;
    start = end + 1;
  }
  return result;
}

}  // namespace

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
  log->info("using NATS at {}", redacted_urls(config.broker.transporter));
  transport::NatsOptions nats;
  nats.url = config.broker.transporter;
  nats.name = config.broker.node_id;
  return std::make_unique<transport::NatsTransporter>(loop, nats);
}

}  // namespace steedos::app
