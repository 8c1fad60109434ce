#pragma once
// The process's own resource figures, read from /proc (Linux): what the Prometheus client
// libraries' process collectors export as process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_open_fds, process_max_fds and process_start_time_seconds.
// Each call reads the files afresh (a few syscalls: cheap at a scrape's pace, not per packet).
#include <cstdint>

namespace steedos {

struct ProcessStats {
  /// User plus system CPU time since the process started (/proc/self/stat utime + stime).
  double cpu_seconds;
  /// Resident set size (/proc/self/statm resident pages × page size).
  uint64_t resident_bytes;
  /// Virtual memory size (/proc/self/statm size pages × page size).
  uint64_t virtual_bytes;
  /// Open file descriptors (entries of /proc/self/fd, not counting the one used to list them).
  uint64_t open_fds;
  /// RLIMIT_NOFILE soft limit; UINT64_MAX when unlimited.
  uint64_t max_fds;
  /// Start of the process in seconds since the Unix epoch (boot time + starttime ticks).
  double start_time_seconds;
};

/// Reads the figures now. A file that cannot be read leaves its figures at 0 (never throws).
ProcessStats read_process_stats();

}  // namespace steedos
