#include <doctest/doctest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <sstream>
#include <string>

#include "common/json_log.hpp"
#include "common/log.hpp"

namespace {

/// What one record logged through the JSON formatter looks like.
std::string json_line(const std::string& logger_name, spdlog::level::level_enum level,
                      const std::string& message) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  spdlog::logger logger(logger_name, sink);
  logger.set_formatter(steedos::json_log_formatter());
  logger.set_level(spdlog::level::trace);
  logger.log(level, "{}", message);
  return out.str();
}

}  // namespace

TEST_SUITE("json log formatter") {
  TEST_CASE("one parseable object per line with time, level, component, message") {
    const std::string line = json_line("gateway", spdlog::level::warn, "plain text");
    REQUIRE(!line.empty());
    CHECK(line.back() == '\n');
    CHECK(line.find('\n') == line.size() - 1);
    const auto record = nlohmann::json::parse(line);
    CHECK(record["level"] == "warning");
    CHECK(record["component"] == "gateway");
    CHECK(record["message"] == "plain text");
    const std::string time = record["time"];
    // ISO 8601 UTC with milliseconds: 2026-12-05T16:20:00.123Z
    REQUIRE(time.size() == 24);
    CHECK(time[4] == '-');
    CHECK(time[10] == 'T');
    CHECK(time[19] == '.');
    CHECK(time.back() == 'Z');
  }

  TEST_CASE("quotes, backslashes, newlines and control characters are escaped") {
    const std::string nasty = "say \"hi\"\\ \nsecond line\r\t\x01\x1f end";
    const std::string line = json_line("broker", spdlog::level::info, nasty);
    CHECK(line.find('\n') == line.size() - 1);  // the embedded newline did not split the record
    CHECK(line.find('\r') == std::string::npos);
    CHECK(line.find('\x01') == std::string::npos);
    const auto record = nlohmann::json::parse(line);
    CHECK(record["message"] == nasty);
  }

  TEST_CASE("invalid UTF-8 and a strange logger name still give valid JSON") {
    const std::string line = json_line("we\"ird", spdlog::level::err, std::string("bad \xff byte"));
    const auto record = nlohmann::json::parse(line);
    CHECK(record["component"] == "we\"ird");
    CHECK(record["level"] == "error");
    CHECK(record["message"] == "bad \xEF\xBF\xBD byte");  // U+FFFD
  }
}
