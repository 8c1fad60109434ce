// The pure pieces of the gateway's connection-level limits (issue 9): the connection cap derived
// from the open-file limit, the accept loop's backoff.
#include "gateway/connection_limits.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <limits>

using std::chrono::milliseconds;
using steedos::gateway::AcceptBackoff;
using steedos::gateway::max_connections_for_fd_limit;

TEST_SUITE("connection limits") {
  TEST_CASE("the derived connection cap keeps a reserve of descriptors") {
    CHECK(max_connections_for_fd_limit(1024) == 1024 - 64);
    CHECK(max_connections_for_fd_limit(20000, 64) == 19936);
    CHECK(max_connections_for_fd_limit(200, 100) == 100);
    CHECK(max_connections_for_fd_limit(64) == 1);  // never 0 (0 would mean no limit)
    CHECK(max_connections_for_fd_limit(10) == 1);
    CHECK(max_connections_for_fd_limit(std::numeric_limits<uint64_t>::max()) > 1000000);
    CHECK(steedos::gateway::open_file_limit() > 0);
  }

  TEST_CASE("accept backoff: 50 ms doubling to 1 s, one episode until a success") {
    AcceptBackoff backoff;
    CHECK_FALSE(backoff.paused());
    CHECK(backoff.on_failure() == milliseconds(50));
    CHECK(backoff.new_episode());
    CHECK(backoff.on_failure() == milliseconds(100));
    CHECK_FALSE(backoff.new_episode());
    CHECK(backoff.on_failure() == milliseconds(200));
    CHECK(backoff.on_failure() == milliseconds(400));
    CHECK(backoff.on_failure() == milliseconds(800));
    CHECK(backoff.on_failure() == milliseconds(1000));
    CHECK(backoff.on_failure() == milliseconds(1000));
    CHECK(backoff.paused());
    CHECK(backoff.on_success());        // ends the episode
    CHECK_FALSE(backoff.on_success());  // nothing to end
    CHECK(backoff.on_failure() == milliseconds(50));
    CHECK(backoff.new_episode());
  }
}
