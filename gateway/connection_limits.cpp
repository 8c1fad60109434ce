#include "gateway/connection_limits.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <limits>

namespace steedos::gateway {

size_t max_connections_for_fd_limit(uint64_t nofile, uint64_t reserve) {
  const uint64_t cap = std::numeric_limits<size_t>::max();
  if (nofile <= reserve) return 1;
  return static_cast<size_t>(std::min(nofile - reserve, cap));
}

uint64_t open_file_limit() {
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
    return std::numeric_limits<uint64_t>::max();
  }
  return static_cast<uint64_t>(limit.rlim_cur);
}

std::chrono::milliseconds AcceptBackoff::on_failure() {
  ++failures_;
  const auto delay = next_;
  next_ = std::min(next_ * 2, kMax);
  return delay;
}

bool AcceptBackoff::on_success() {
  const bool ended = failures_ != 0;
  failures_ = 0;
  next_ = kFirst;
  return ended;
}

}  // namespace steedos::gateway
