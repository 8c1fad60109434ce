#pragma once
// Named spdlog loggers per component ("broker", "gateway", "transporter", ...), sharing the
// default logger's sinks and level so one `logLevel` setting governs them all. Header-only and
// free of any layer: protocol code does not log, every other folder uses this.
#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace steedos {

inline std::shared_ptr<spdlog::logger> component_logger(const std::string& name) {
  if (auto existing = spdlog::get(name)) return existing;
  auto base = spdlog::default_logger();
  auto created = std::make_shared<spdlog::logger>(name, base->sinks().begin(), base->sinks().end());
  created->set_level(base->level());
  try {
    spdlog::register_logger(created);
  } catch (const spdlog::spdlog_ex&) {
    // Another thread registered it first (cnats runs some callbacks on its own threads).
    if (auto existing = spdlog::get(name)) return existing;
  }
  return created;
}

}  // namespace steedos
