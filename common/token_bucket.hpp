#pragma once
// A token bucket: `rate` tokens a second, holding at most `burst`, full at the start. The
// gateway limits new Engine.IO sessions per second with one (gateway.maxHandshakesPerSecond),
// the socket service each socket's subscribe/unsubscribe requests (maxSubscribesPerSecond).
// Pure: the caller passes the time, so tests need no clock and a hot path reads it once.
#include <algorithm>
#include <chrono>

namespace steedos {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  /// rate 0 (or below): no limit, try_take always succeeds.
  TokenBucket(double rate_per_second, double burst, Clock::time_point now)
      : rate_(rate_per_second), burst_(burst), tokens_(burst), last_(now) {}
  TokenBucket() : TokenBucket(0, 0, Clock::time_point{}) {}

  /// Takes one token if there is one (refilled for the time since the last call).
  bool try_take(Clock::time_point now) {
    if (rate_ <= 0) return true;
    refill(now);
    if (tokens_ < 1.0) return false;
    tokens_ -= 1.0;
    return true;
  }
  double tokens() const { return tokens_; }

 private:
  void refill(Clock::time_point now) {
    // A clock that went back (steady_clock does not) would otherwise drain the bucket.
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

}  // namespace steedos
