#pragma once
// logFormat "json" (--log-format json): the spdlog formatter that writes each record as one JSON
// object per line. Apart from common/log.hpp so that only the node's start-up code pays for the
// JSON and pattern-formatter headers.
#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace steedos {

/// `%*` of the JSON pattern: the logger name or message as a JSON string (quotes, backslashes,
/// newlines and control characters escaped, invalid UTF-8 replaced), so every record stays one
/// parseable line whatever a log call passed in.
class JsonStringFlag final : public spdlog::custom_flag_formatter {
 public:
  enum class Field { Message, Logger };
  explicit JsonStringFlag(Field field) : field_(field) {}
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const auto view = field_ == Field::Message ? msg.payload : msg.logger_name;
    const std::string quoted = nlohmann::json(std::string(view.data(), view.size()))
                                   .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(quoted.data(), quoted.data() + quoted.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonStringFlag>(field_);
  }

 private:
  Field field_;
};

/// logFormat "json": one object per line, {"time","level","component","message"}; time in UTC
/// (ISO 8601 with ms), level as spdlog names it (trace, debug, info, warning, error, critical).
inline std::unique_ptr<spdlog::formatter> json_log_formatter() {
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  formatter->add_flag<JsonStringFlag>('*', JsonStringFlag::Field::Message);
  formatter->add_flag<JsonStringFlag>('&', JsonStringFlag::Field::Logger);
  formatter->set_pattern(
      R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","component":%&,"message":%*})");
  return formatter;
}

}  // namespace steedos
