#pragma once
// Named spdlog loggers per component ("broker", "transit", "registry", ...), sharing the default
// logger's sinks and level so one `logLevel` setting governs them all.
#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace steedos::services {

inline std::shared_ptr<spdlog::logger> component_logger(const std::string& name) {
  if (auto existing = spdlog::get(name)) return existing;
  auto base = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>(name, base->sinks().begin(), base->sinks().end());
  logger->set_level(base->level());
  spdlog::register_logger(logger);
  return logger;
}

}  // namespace steedos::services
