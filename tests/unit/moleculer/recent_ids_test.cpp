#include "moleculer/recent_ids.hpp"

#include <doctest/doctest.h>

#include <string>

using steedos::moleculer::RecentIds;

TEST_CASE("RecentIds: an id recorded once is refused while it is among the last N") {
  RecentIds ids(3);
  CHECK_FALSE(ids.contains("a"));
  CHECK(ids.insert("a"));
  CHECK(ids.contains("a"));
  CHECK_FALSE(ids.insert("a"));
  CHECK(ids.insert("b"));
  CHECK(ids.insert("c"));
  CHECK_FALSE(ids.insert("b"));
  CHECK(ids.size() == 3);
}

TEST_CASE("RecentIds: the oldest id is forgotten when the capacity is reached, and no earlier") {
  RecentIds ids(2);
  CHECK(ids.insert("a"));
  CHECK(ids.insert("b"));
  CHECK(ids.insert("c"));  // forgets "a"
  CHECK(ids.size() == 2);
  CHECK(ids.insert("a"));  // taken again, forgets "b"
  CHECK_FALSE(ids.insert("c"));
  CHECK(ids.insert("b"));
}

TEST_CASE("RecentIds: capacity 0 records nothing and refuses nothing") {
  RecentIds ids(0);
  CHECK(ids.insert("a"));
  CHECK(ids.insert("a"));
  CHECK(ids.size() == 0);
}

TEST_CASE("RecentIds: holds a large window without growing past it") {
  RecentIds ids(10000);
  for (int i = 0; i < 25000; ++i) REQUIRE(ids.insert(std::to_string(i)));
  CHECK(ids.size() == 10000);
  CHECK_FALSE(ids.insert("24999"));
  CHECK_FALSE(ids.insert("15000"));
  CHECK(ids.insert("14999"));
}
