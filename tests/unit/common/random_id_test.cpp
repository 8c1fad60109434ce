// Test that header file is self-contained.
#include "common/random_id.hpp"

#include <doctest/doctest.h>

#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using steedos::random_base64url_id;
using steedos::random_bytes;
using steedos::uuid_v4;

TEST_SUITE("random_id") {
  TEST_CASE("random_bytes fills any size, across pool refills") {
    // 5000 bytes spans more than two 2 KiB pools; a stuck or zeroed pool would show as a run.
    std::vector<unsigned char> bytes(5000, 0);
    random_bytes(bytes.data(), bytes.size());
    std::set<unsigned char> distinct(bytes.begin(), bytes.end());
    CHECK(distinct.size() > 200);
    size_t longest_run = 1, run = 1;
    for (size_t i = 1; i < bytes.size(); ++i) {
      run = bytes[i] == bytes[i - 1] ? run + 1 : 1;
      longest_run = std::max(longest_run, run);
    }
    CHECK(longest_run < 8);
    random_bytes(bytes.data(), 0);  // a no-op
  }

  TEST_CASE("base64url ids: length, alphabet, uniqueness") {
    static const std::regex alphabet(R"(^[A-Za-z0-9_-]+$)");
    std::set<std::string> seen;
    for (int i = 0; i < 10000; ++i) {
      const std::string id = random_base64url_id();
      REQUIRE(id.size() == 20);  // 15 bytes, the reference's id length
      REQUIRE(std::regex_match(id, alphabet));
      seen.insert(id);
    }
    CHECK(seen.size() == 10000);
    // Every one of the 64 characters shows up (each has p = 1/64 per position).
    std::set<char> used;
    for (const std::string& id : seen) used.insert(id.begin(), id.end());
    CHECK(used.size() == 64);
  }

  TEST_CASE("base64url ids of other sizes: unpadded, 4 characters per 3 bytes rounded up") {
    CHECK(random_base64url_id(0).empty());
    CHECK(random_base64url_id(1).size() == 2);
    CHECK(random_base64url_id(2).size() == 3);
    CHECK(random_base64url_id(3).size() == 4);
    CHECK(random_base64url_id(16).size() == 22);
  }

  TEST_CASE("uuid_v4: format, version and variant bits, uniqueness") {
    static const std::regex re(
        R"(^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$)");
    std::set<std::string> seen;
    std::set<char> variants;
    for (int i = 0; i < 10000; ++i) {
      const std::string id = uuid_v4();
      CAPTURE(id);
      REQUIRE(std::regex_match(id, re));
      variants.insert(id[19]);
      seen.insert(id);
    }
    CHECK(seen.size() == 10000);
    CHECK(variants == std::set<char>{'8', '9', 'a', 'b'});
  }

  TEST_CASE("threads draw from their own pools: no id repeats across threads") {
    std::vector<std::vector<std::string>> drawn(4);
    std::vector<std::thread> threads;
    for (auto& ids : drawn) {
      threads.emplace_back([&ids] {
        for (int i = 0; i < 2000; ++i) ids.push_back(uuid_v4());
      });
    }
    for (auto& thread : threads) thread.join();
    std::set<std::string> seen;
    for (const auto& ids : drawn) seen.insert(ids.begin(), ids.end());
    CHECK(seen.size() == 8000);
  }

  TEST_CASE("InlineId holds a 20-character id without the heap and reads it back") {
    const std::string id = random_base64url_id();
    const steedos::InlineId inline_id(id);
    CHECK(inline_id.view() == id);
    CHECK(sizeof(steedos::InlineId) <= 24);
    CHECK(steedos::InlineId().view().empty());
    CHECK(steedos::InlineId("short").view() == "short");
  }
}
