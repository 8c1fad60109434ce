#pragma once
// The pure pieces of the gateway's connection-level limits (issue 9): the default connection cap
// derived from the open-file limit, and the backoff of the accept loop at that limit.
// GatewayServer applies them; nothing here does I/O except open_file_limit(), which reads
// RLIMIT_NOFILE. (The handshake-rate bucket is common/token_bucket.hpp.)
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace steedos::gateway {

/// How many open-file descriptors are kept for the rest of the process (NATS or Redis
/// connections, log files, timers, the listening socket) when the connection cap is derived
/// from RLIMIT_NOFILE.
inline constexpr uint64_t kReservedDescriptors = 64;

/// The connection cap for an open-file limit `nofile` (RLIM_INFINITY: pass UINT64_MAX): the
/// limit minus `reserve`, at least 1.
size_t max_connections_for_fd_limit(uint64_t nofile, uint64_t reserve = kReservedDescriptors);

/// The process's soft RLIMIT_NOFILE (UINT64_MAX when unlimited or unknown).
uint64_t open_file_limit();

/// The accept loop's pause at EMFILE/ENFILE: 50 ms, doubling on each failed retry, at most 1 s;
/// reset once an accept succeeds. An "episode" is the run of failures between two successes.
class AcceptBackoff {
 public:
  static constexpr std::chrono::milliseconds kFirst{50};
  static constexpr std::chrono::milliseconds kMax{1000};

  /// A failure: returns the delay before the next attempt. `new_episode()` tells whether this
  /// failure began an episode (for logging and counting once per episode).
  std::chrono::milliseconds on_failure();
  bool new_episode() const { return failures_ == 1; }
  /// An accept succeeded: true if it ended an episode.
  bool on_success();
  bool paused() const { return failures_ != 0; }

 private:
  std::chrono::milliseconds next_ = kFirst;
  uint32_t failures_ = 0;
};

}  // namespace steedos::gateway
