#include "gateway/compact_string_map.hpp"

#include <doctest/doctest.h>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

using steedos::gateway::CompactStringMap;

TEST_SUITE("compact_string_map") {
  TEST_CASE("holds what a std::map holds, in the same order") {
    const std::map<std::string, std::string> source{{"user-agent", "Mozilla/5.0 (X11)"},
                                                    {"cookie", "X-Space-Id=s1; X-Auth-Token=t"},
                                                    {"host", "127.0.0.1:5100"},
                                                    {"empty", ""}};
    const CompactStringMap map(source);
    CHECK(map.size() == 4);
    CHECK_FALSE(map.empty());
    std::vector<std::pair<std::string, std::string>> seen;
    for (const auto& [key, value] : map) seen.emplace_back(key, value);
    CHECK(seen == std::vector<std::pair<std::string, std::string>>(source.begin(), source.end()));
    CHECK(map.at("cookie") == "X-Space-Id=s1; X-Auth-Token=t");
    CHECK(map.find("host")->second == "127.0.0.1:5100");
    CHECK(map.find("empty") != map.end());
    CHECK(map.find("empty")->second.empty());
    CHECK(map.count("missing") == 0);
    CHECK(map.find("missing") == map.end());
    CHECK_THROWS_AS(map.at("missing"), std::out_of_range);
  }

  TEST_CASE("any bytes, and the first of repeated keys") {
    const std::string key("k\0ey", 4);
    const std::string value("v\0\xff", 3);
    const CompactStringMap map{{key, value}, {"a", "first"}, {"a", "second"}};
    CHECK(map.size() == 2);
    CHECK(map.at(key) == value);
    CHECK(map.at("a") == "first");
    CHECK(map.count(std::string_view("k", 1)) == 0);
  }

  TEST_CASE("empty") {
    const CompactStringMap map;
    CHECK(map.empty());
    CHECK(map.begin() == map.end());
    CHECK(map.find("x") == map.end());
  }

  TEST_CASE("clear leaves an empty map") {
    CompactStringMap map{{"cookie", "X-Auth-Token=a-long-enough-token-to-be-on-the-heap"}};
    REQUIRE(map.size() == 1);
    map.clear();
    CHECK(map.empty());
    CHECK(map.begin() == map.end());
    CHECK(map.find("cookie") == map.end());
  }
}
