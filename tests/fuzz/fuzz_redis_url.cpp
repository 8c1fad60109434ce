// libFuzzer target: the Redis transporter's URL parser (scripts/fuzz.sh). Any string either is
// refused with a RedisConfigError or gives one endpoint a socket can be opened to: a non-empty
// host and a port in 1..65535. describe_redis never shows the password.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "tests/fuzz/fuzz_assert.hpp"
#include "transport/redis_config.hpp"

namespace transport = steedos::transport;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  transport::RedisOptions options;
  try {
    options = transport::parse_redis_url(input);
  } catch (const transport::RedisConfigError& e) {
    FUZZ_ASSERT(e.key() == "transporter");
    return 0;
  }
  FUZZ_ASSERT(options.endpoints.size() == 1);
  const auto& endpoint = options.endpoints.front();
  FUZZ_ASSERT(!endpoint.host.empty());
  FUZZ_ASSERT(endpoint.port >= 1 && endpoint.port <= 65535);
  FUZZ_ASSERT(options.db >= 0);
  FUZZ_ASSERT(options.connect_timeout_ms >= 0);
  const auto text = transport::describe_redis(options);
  FUZZ_ASSERT(options.password.empty() || text.find("password set") != std::string::npos);
  return 0;
}
