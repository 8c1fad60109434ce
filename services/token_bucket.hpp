#pragma once
// A token bucket for per-socket request rates (gateway.maxSubscribesPerSecond): `rate` tokens a
// second, holding at most `burst`, full at the start. Pure: the caller passes the time, so the
// unit test needs no clock and the service reads the clock once per request.
#include <algorithm>
#include <chrono>

namespace steedos::services {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  TokenBucket(double rate_per_second, double burst, Clock::time_point now)
      : rate_(rate_per_second), burst_(burst), tokens_(burst), last_(now) {}

  /// Takes one token if there is one (refilled for the time since the last call).
  bool try_take(Clock::time_point now) {
    refill(now);
    if (tokens_ < 1.0) return false;
    tokens_ -= 1.0;
    return true;
  }

 private:
  void refill(Clock::time_point now) {
    // A clock that went back (it does not, for steady_clock) would otherwise drain the bucket.
    if (now <= last_) return;
    const double elapsed = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
    last_ = now;
  }

  double rate_;
  double burst_;
  double tokens_;
  Clock::time_point last_;
};

}  // namespace steedos::services
