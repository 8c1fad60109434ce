#pragma once
// One auth call in flight per (spaceId, token), shared by every connect waiting for it, and at
// most `max_in_flight` distinct calls at once (auth.maxInFlight). Without it a reconnect storm
// multiplies the auth service's load by the sockets per user: 50 tokens on 10,000 clients made
// 100-219 calls (measured-findings.md, "Auth calls are not coalesced"); with it, 50.
//
// Pure bookkeeping: the remote call is a function given to the constructor, so the unit test
// drives it with a fake and decides when each call finishes. Not thread-safe: the service owns
// it on the event loop, and the call's completion must come back on that thread.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "services/steedos_auth_rules.hpp"

namespace steedos::services {

class AuthCoalescer {
 public:
  using Key = std::pair<std::string, std::string>;  // (spaceId, token)
  using Decision = rules::AuthDecision;
  using Waiter = std::function<void(const Decision&)>;
  /// Starts the remote call for `key`; `finish` must be called once with its outcome, now or
  /// later. Extra calls of `finish` are ignored.
  using StartCall = std::function<void(const Key& key, std::function<void(Decision)> finish)>;

  struct Hooks {
    /// Once per finished call whose result still stands (see abandon_token), before its
    /// waiters are answered: where the service caches it and logs a failure once.
    std::function<void(const Key&, const Decision&)> on_result;
    /// A refusal episode began: the first connect refused since the calls in flight were last
    /// at or below half the limit. One log line per episode, not one per socket.
    std::function<void(size_t max_in_flight)> on_refusing;
    /// The episode ended (calls in flight back to half the limit), with how many it refused.
    std::function<void(uint64_t refused)> on_recovered;
  };

  enum class Admission {
    Started,  // a new call was started for the key; the waiter is its first
    Joined,   // a call for the key was already in flight; the waiter shares its result
    Refused,  // max_in_flight distinct calls are in flight: the waiter is dropped, never called
  };

  AuthCoalescer(size_t max_in_flight, StartCall start, Hooks hooks = {});
  AuthCoalescer(const AuthCoalescer&) = delete;
  AuthCoalescer& operator=(const AuthCoalescer&) = delete;

  /// Answers `waiter` with the outcome of the call in flight for `key`, starting one when
  /// there is none and the limit allows.
  Admission request(const Key& key, Waiter waiter);

  /// `token` was logged out: the calls in flight for it (any space) answer their waiters with
  /// `decision` now; when they finish, their result is neither reported (so not cached) nor
  /// shared, and a new connect with the token starts a fresh call. Returns the calls abandoned.
  size_t abandon_token(const std::string& token, const Decision& decision);

  /// Distinct calls not finished yet, abandoned ones included (they still load the service).
  size_t in_flight() const { return in_flight_; }
  /// Connects waiting for a call in flight.
  size_t waiting() const;
  uint64_t refused() const { return refused_; }

 private:
  struct Call {
    uint64_t id = 0;
    std::vector<Waiter> waiters;
  };
  void finish(const Key& key, uint64_t id, Decision decision);

  size_t max_in_flight_;
  StartCall start_;
  Hooks hooks_;
  std::map<Key, Call> joinable_;  // calls in flight that new connects may join
  std::set<uint64_t> abandoned_;  // calls in flight whose result will be dropped
  size_t in_flight_ = 0;
  uint64_t next_id_ = 0;
  uint64_t refused_ = 0;
  bool refusing_ = false;
  uint64_t refused_in_episode_ = 0;
};

}  // namespace steedos::services
