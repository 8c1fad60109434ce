#include <doctest/doctest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <sstream>
#include <string>

#include "common/log.hpp"
#include "common/log_format.hpp"

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

namespace {

/// A trace-level logger writing into a string through `formatter`.
struct CapturedLog {
  explicit CapturedLog(std::unique_ptr<spdlog::formatter> formatter)
      : sink(std::make_shared<spdlog::sinks::ostream_sink_mt>(out)), logger("gateway", sink) {
    logger.set_formatter(std::move(formatter));
    logger.set_level(spdlog::level::trace);
  }
  std::vector<std::string> lines() const {
    std::vector<std::string> result;
    std::istringstream in(out.str());
    for (std::string line; std::getline(in, line);) result.push_back(line);
    return result;
  }
  std::ostringstream out;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink;
  spdlog::logger logger;
};

/// The part of a text line after "<component>: ".
std::string text_tail(const std::string& line) {
  return line.substr(line.find("gateway: ") + 9);
}

}  // namespace

/// An argument that counts how often it is formatted.
struct Counted {
  int* count;
};

template <>
struct fmt::formatter<Counted> : fmt::formatter<int> {
  template <typename Context>
  auto format(const Counted& counted, Context& ctx) const {
    return fmt::formatter<int>::format(++*counted.count, ctx);
  }
};

TEST_SUITE("structured log fields") {
  TEST_CASE("JSON: fields are top-level keys, numbers as numbers, after the four fixed keys") {
    CapturedLog log(steedos::json_log_formatter());
    const std::string sid = "aBc-123";
    steedos::log_with(log.logger, spdlog::level::debug,
                      {{"sid", sid}, {"transport", "websocket"}, {"rooms", size_t{3}}},
                      "session {}", "closed");
    const auto lines = log.lines();
    REQUIRE(lines.size() == 1);
    const auto record = nlohmann::json::parse(lines[0]);
    CHECK(record["message"] == "session closed");
    CHECK(record["level"] == "debug");
    CHECK(record["sid"] == "aBc-123");
    CHECK(record["transport"] == "websocket");
    CHECK(record["rooms"] == 3);
    CHECK(record.size() == 7);
    CHECK(lines[0].find(R"("message":"session closed","sid":"aBc-123")") != std::string::npos);
  }

  TEST_CASE("text: ` key=value` after the message, quoted when not plain") {
    CapturedLog log(steedos::text_log_formatter());
    steedos::log_with(
        log.logger, spdlog::level::info,
        {{"sid", "s1"}, {"reason", "transport close"}, {"count", -2}, {"empty", ""}, {"eq", "a=b"}},
        "closed");
    const auto lines = log.lines();
    REQUIRE(lines.size() == 1);
    CHECK(text_tail(lines[0]) ==
          R"(closed sid=s1 reason="transport close" count=-2 empty="" eq="a=b")");
  }

  TEST_CASE("escaping: quotes, backslashes, newlines, control bytes and invalid UTF-8") {
    const std::string nasty = "say \"hi\" \\ \nnext\r\t\x01 \xff end";
    CapturedLog json(steedos::json_log_formatter());
    CapturedLog text(steedos::text_log_formatter());
    for (auto* log : {&json, &text}) {
      steedos::log_with(log->logger, spdlog::level::warn, {{"reason", nasty}, {"a\"b", "x"}},
                        "refused");
    }
    const auto json_lines = json.lines();
    REQUIRE(json_lines.size() == 1);  // the newline in the field did not split the record
    const auto record = nlohmann::json::parse(json_lines[0]);
    CHECK(record["reason"] == "say \"hi\" \\ \nnext\r\t\x01 \xEF\xBF\xBD end");
    CHECK(record["a\"b"] == "x");

    const auto text_lines = text.lines();
    REQUIRE(text_lines.size() == 1);
    const std::string tail = text_tail(text_lines[0]);
    CHECK(tail.find('\r') == std::string::npos);
    CHECK(tail.find('\x01') == std::string::npos);
    CHECK(tail.find('\xff') == std::string::npos);
    CHECK(tail == R"(refused reason="say \"hi\" \\ \nnext\r\t\u0001 � end" a"b=x)");
  }

  TEST_CASE("a field named like a fixed key does not duplicate it") {
    CapturedLog log(steedos::json_log_formatter());
    steedos::log_with(log.logger, spdlog::level::info, {{"message", "mine"}, {"level", 1}}, "m");
    const auto record = nlohmann::json::parse(log.lines().at(0));
    CHECK(record["message"] == "m");
    CHECK(record["level"] == "info");
    CHECK(record["message_"] == "mine");
    CHECK(record["level_"] == 1);
  }

  TEST_CASE("fields never leak into the next line, in either format") {
    for (auto make : {&steedos::json_log_formatter, &steedos::text_log_formatter}) {
      CapturedLog log(make());
      steedos::log_with(log.logger, spdlog::level::info, {{"sid", "leaky"}}, "first");
      log.logger.info("second");
      steedos::log_with(log.logger, spdlog::level::info, {}, "third");
      const auto lines = log.lines();
      REQUIRE(lines.size() == 3);
      CHECK(lines[0].find("leaky") != std::string::npos);
      CHECK(lines[1].find("leaky") == std::string::npos);
      CHECK(lines[2].find("leaky") == std::string::npos);
      CHECK(steedos::current_log_fields().size() == 0);
    }
  }

  TEST_CASE("a disabled level formats nothing and publishes no field") {
    CapturedLog log(steedos::json_log_formatter());
    log.logger.set_level(spdlog::level::info);
    int formatted = 0;
    steedos::log_with(log.logger, spdlog::level::debug, {{"sid", "s"}}, "{}", Counted{&formatted});
    CHECK(formatted == 0);
    CHECK(log.out.str().empty());
    CHECK(steedos::current_log_fields().size() == 0);
  }
}
