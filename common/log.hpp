#pragma once
// Named spdlog loggers per component ("broker", "gateway", "transporter", ...), sharing the
// default logger's sinks and level so one `logLevel` setting governs them all. Header-only and
// free of any layer: protocol code does not log, every other folder uses this.
//
// Structured fields: spdlog records have none, so log_with() publishes a call's fields in a
// thread_local for the duration of that one (synchronous: there is no async logger here)
// logger call, and the formatters of common/log_format.hpp render them: top-level keys of the
// JSON object, ` key=value` after the message in text. A field names an identifier or a reason
// (sid, nodeID, reason, transport, address...): never a token, a cookie value or a whole session.
#include <spdlog/spdlog.h>

#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

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

/// One structured field of a log record: a key (a string literal) and a text or an integer.
/// Holds a view only: it lives as long as the log_with call that it is an argument of, so
/// building one costs nothing even when the level is disabled.
class LogField {
 public:
  LogField(const char* key, std::string_view text) : key_(key), text_(text) {}
  LogField(const char* key, const std::string& text) : key_(key), text_(text) {}
  LogField(const char* key, const char* text)
      : key_(key), text_(text != nullptr ? std::string_view(text) : std::string_view()) {}
  template <typename Integer,
            std::enable_if_t<std::is_integral_v<Integer> && !std::is_same_v<Integer, bool> &&
                                 !std::is_same_v<Integer, char>,
                             int> = 0>
  LogField(const char* key, Integer number)
      : key_(key), number_(static_cast<long long>(number)), is_number_(true) {}

  const char* key() const { return key_; }
  bool is_number() const { return is_number_; }
  std::string_view text() const { return text_; }
  long long number() const { return number_; }

 private:
  const char* key_;
  std::string_view text_;
  long long number_ = 0;
  bool is_number_ = false;
};

using LogFields = std::initializer_list<LogField>;

namespace detail {
/// The fields of the record being formatted on this thread; empty outside log_with.
inline thread_local LogFields current_log_fields;
}  // namespace detail

/// The fields of the record being formatted on this thread (for the formatter flags).
inline LogFields current_log_fields() {
  return detail::current_log_fields;
}

/// Publishes `fields` to the formatters of the records logged in its scope on this thread, and
/// restores the previous set (normally none) on exit, so fields never leak into the next line.
class ScopedLogFields {
 public:
  explicit ScopedLogFields(LogFields fields) : previous_(detail::current_log_fields) {
    detail::current_log_fields = fields;
  }
  ~ScopedLogFields() { detail::current_log_fields = previous_; }
  ScopedLogFields(const ScopedLogFields&) = delete;
  ScopedLogFields& operator=(const ScopedLogFields&) = delete;

 private:
  LogFields previous_;
};

/// logger->log(level, format, args...) with structured `fields`; nothing is formatted, and the
/// fields are not looked at, when `level` is disabled.
template <typename... Args>
void log_with(spdlog::logger& logger, spdlog::level::level_enum level, LogFields fields,
              spdlog::format_string_t<Args...> format, Args&&... args) {
  if (!logger.should_log(level)) return;
  const ScopedLogFields scope(fields);
  logger.log(level, format, std::forward<Args>(args)...);
}

template <typename... Args>
void log_with(const std::shared_ptr<spdlog::logger>& logger, spdlog::level::level_enum level,
              LogFields fields, spdlog::format_string_t<Args...> format, Args&&... args) {
  log_with(*logger, level, fields, format, std::forward<Args>(args)...);
}

}  // namespace steedos
