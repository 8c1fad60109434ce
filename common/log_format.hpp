#pragma once
// The two log formats of the node: text (the default) and logFormat "json" (--log-format json,
// LOGFORMAT=json), each with the structured fields of common/log.hpp. Apart from common/log.hpp
// so that only the node's start-up code pays for the JSON and pattern-formatter headers.
#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/log.hpp"

namespace steedos {

namespace detail {

/// `text` as a JSON string: quotes, backslashes, newlines and control characters escaped,
/// invalid UTF-8 replaced by U+FFFD, so a record stays one parseable line whatever it holds.
inline void append_json_string(std::string_view text, spdlog::memory_buf_t& dest) {
  const std::string quoted = nlohmann::json(std::string(text))
                                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  dest.append(quoted.data(), quoted.data() + quoted.size());
}

inline void append_number(long long number, spdlog::memory_buf_t& dest) {
  const std::string digits = std::to_string(number);
  dest.append(digits.data(), digits.data() + digits.size());
}

/// A text field value goes bare only when it is plain printable ASCII without a space, '"',
/// '=' or '\\', so that ` key=value` pairs split back unambiguously; else it is quoted and
/// escaped as a JSON string (which also keeps the line one line).
inline bool needs_quotes(std::string_view text) {
  if (text.empty()) return true;
  for (const unsigned char c : text) {
    if (c <= ' ' || c >= 0x7f || c == '"' || c == '=' || c == '\\') return true;
  }
  return false;
}

/// The four keys every JSON record has; a field of the same name would make a duplicate key.
inline bool reserved_json_key(std::string_view key) {
  return key == "time" || key == "level" || key == "component" || key == "message";
}

}  // namespace detail

/// `%*` / `%&` of the JSON pattern: the message or the logger name as a JSON string.
class JsonStringFlag final : public spdlog::custom_flag_formatter {
 public:
  enum class Field { Message, Logger };
  explicit JsonStringFlag(Field field) : field_(field) {}
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const auto view = field_ == Field::Message ? msg.payload : msg.logger_name;
    detail::append_json_string(std::string_view(view.data(), view.size()), dest);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonStringFlag>(field_);
  }

 private:
  Field field_;
};

/// `%k` of the JSON pattern: the record's structured fields as `,"key":value` members (numbers
/// bare, text as JSON strings). A field named like one of the four fixed keys gets a trailing
/// '_' ("message_") rather than a duplicate key.
class JsonFieldsFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    for (const auto& field : current_log_fields()) {
      dest.push_back(',');
      std::string key = field.key();
      if (detail::reserved_json_key(key)) key += '_';
      detail::append_json_string(key, dest);
      dest.push_back(':');
      if (field.is_number()) {
        detail::append_number(field.number(), dest);
      } else {
        detail::append_json_string(field.text(), dest);
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonFieldsFlag>();
  }
};

/// `%k` of the text pattern: the record's structured fields as ` key=value` after the message,
/// the value quoted when it is not plain (detail::needs_quotes).
class TextFieldsFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    for (const auto& field : current_log_fields()) {
      dest.push_back(' ');
      const std::string_view key = field.key();
      dest.append(key.data(), key.data() + key.size());
      dest.push_back('=');
      if (field.is_number()) {
        detail::append_number(field.number(), dest);
      } else if (detail::needs_quotes(field.text())) {
        detail::append_json_string(field.text(), dest);
      } else {
        dest.append(field.text().data(), field.text().data() + field.text().size());
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<TextFieldsFlag>();
  }
};

/// logFormat "json": one object per line, {"time","level","component","message", fields...};
/// time in UTC (ISO 8601 with ms), level as spdlog names it (trace, debug, info, warning, error,
/// critical).
inline std::unique_ptr<spdlog::formatter> json_log_formatter() {
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  formatter->add_flag<JsonStringFlag>('*', JsonStringFlag::Field::Message);
  formatter->add_flag<JsonStringFlag>('&', JsonStringFlag::Field::Logger);
  formatter->add_flag<JsonFieldsFlag>('k');
  formatter->set_pattern(
      R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","component":%&,"message":%*%k})");
  return formatter;
}

/// logFormat "text": `<local time> <level> <component>: <message> key=value...`, the level
/// coloured on a terminal.
inline std::unique_ptr<spdlog::formatter> text_log_formatter() {
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<TextFieldsFlag>('k');
  formatter->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %n: %v%k");
  return formatter;
}

}  // namespace steedos
