#include "common/process_stats.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>

namespace steedos {

namespace {

std::string read_file(const char* path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

long clock_ticks_per_second() {
  static const long ticks = ::sysconf(_SC_CLK_TCK);
  return ticks > 0 ? ticks : 100;
}

uint64_t page_size() {
  static const long size = ::sysconf(_SC_PAGESIZE);
  return size > 0 ? uint64_t(size) : 4096;
}

/// The "btime" line of /proc/stat: boot time in seconds since the epoch. Fixed for the life of
/// the system, so read once.
uint64_t boot_time_seconds() {
  static const uint64_t boot = [] {
    std::istringstream in(read_file("/proc/stat"));
    for (std::string line; std::getline(in, line);) {
      if (line.compare(0, 6, "btime ") == 0)
        return uint64_t(std::strtoull(line.c_str() + 6, nullptr, 10));
    }
    return uint64_t(0);
  }();
  return boot;
}

/// /proc/self/stat: "pid (comm) state ppid ...". comm may hold spaces and parentheses, so the
/// fields are counted from the last ')'. Field 3 (state) is the first after it; we need 14
/// (utime), 15 (stime) and 22 (starttime), all in clock ticks.
void read_stat(ProcessStats& stats) {
  const std::string text = read_file("/proc/self/stat");
  const auto close = text.rfind(')');
  if (close == std::string::npos) return;
  std::istringstream fields(text.substr(close + 1));
  unsigned long long utime = 0, stime = 0, starttime = 0;
  std::string field;
  for (int number = 3; number <= 22 && fields >> field; ++number) {
    const unsigned long long value = std::strtoull(field.c_str(), nullptr, 10);
    if (number == 14) utime = value;
    if (number == 15) stime = value;
    if (number == 22) starttime = value;
  }
  const double ticks = double(clock_ticks_per_second());
  stats.cpu_seconds = double(utime + stime) / ticks;
  const uint64_t boot = boot_time_seconds();
  if (boot != 0) stats.start_time_seconds = double(boot) + double(starttime) / ticks;
}

/// /proc/self/statm: "size resident shared text lib data dt", in pages.
void read_statm(ProcessStats& stats) {
  std::istringstream in(read_file("/proc/self/statm"));
  unsigned long long size = 0, resident = 0;
  if (!(in >> size >> resident)) return;
  stats.virtual_bytes = size * page_size();
  stats.resident_bytes = resident * page_size();
}

uint64_t count_open_fds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  const int own = ::dirfd(dir);
  uint64_t count = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;  // "." and ".."
    if (std::atoi(entry->d_name) == own) continue;
    count++;
  }
  ::closedir(dir);
  return count;
}

uint64_t max_open_fds() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur == RLIM_INFINITY) return std::numeric_limits<uint64_t>::max();
  return uint64_t(limit.rlim_cur);
}

}  // namespace

ProcessStats read_process_stats() {
  ProcessStats stats{};
  read_stat(stats);
  read_statm(stats);
  stats.open_fds = count_open_fds();
  stats.max_fds = max_open_fds();
  return stats;
}

}  // namespace steedos
