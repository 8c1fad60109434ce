// common/token_bucket.hpp: handshakes per second (gateway), subscribes per socket (service).
#include "common/token_bucket.hpp"

#include <doctest/doctest.h>

using steedos::TokenBucket;
using namespace std::chrono_literals;

TEST_SUITE("token bucket") {
  TEST_CASE("a full bucket allows a burst of `burst`, then refuses") {
    const auto t0 = TokenBucket::Clock::time_point{} + 1h;
    TokenBucket bucket(50, 50, t0);
    int taken = 0;
    while (bucket.try_take(t0)) ++taken;
    CHECK(taken == 50);
    CHECK_FALSE(bucket.try_take(t0));
  }

  TEST_CASE("it refills at `rate` per second, never above `burst`") {
    const auto t0 = TokenBucket::Clock::time_point{} + 1h;
    TokenBucket bucket(10, 10, t0);
    for (int i = 0; i < 10; ++i) REQUIRE(bucket.try_take(t0));
    CHECK_FALSE(bucket.try_take(t0 + 50ms));  // half a token
    CHECK(bucket.try_take(t0 + 100ms));       // one token
    CHECK_FALSE(bucket.try_take(t0 + 100ms));
    int taken = 0;
    while (bucket.try_take(t0 + 1h)) ++taken;  // an hour idle fills it to the burst only
    CHECK(taken == 10);
  }

  TEST_CASE("a steady rate at the limit is always served") {
    const auto t0 = TokenBucket::Clock::time_point{} + 1h;
    TokenBucket bucket(50, 50, t0);
    for (int i = 0; i < 50; ++i) REQUIRE(bucket.try_take(t0));
    for (int i = 1; i <= 500; ++i) CHECK(bucket.try_take(t0 + i * 20ms));
    CHECK_FALSE(bucket.try_take(t0 + 500 * 20ms));
  }

  TEST_CASE("time going back does not drain or refill it") {
    const auto t0 = TokenBucket::Clock::time_point{} + 1h;
    TokenBucket bucket(1, 1, t0);
    CHECK(bucket.try_take(t0));
    CHECK_FALSE(bucket.try_take(t0 - 10s));
    CHECK(bucket.try_take(t0 + 1s));
  }

  TEST_CASE("fractional refills add up") {
    const auto t0 = TokenBucket::Clock::time_point{} + 1h;
    TokenBucket bucket(4, 4, t0);
    while (bucket.try_take(t0)) {
    }
    CHECK_FALSE(bucket.try_take(t0 + 125ms));  // half a token
    CHECK(bucket.try_take(t0 + 250ms));        // the second half
  }

  TEST_CASE("rate 0 is no limit") {
    TokenBucket bucket;
    for (int i = 0; i < 100000; ++i) REQUIRE(bucket.try_take(TokenBucket::Clock::now()));
  }
}
