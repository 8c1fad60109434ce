// Test that header file is self-contained.
#include "common/process_stats.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <ctime>
#include <vector>

using steedos::ProcessStats;
using steedos::read_process_stats;

namespace {

/// CPU time of this process by the kernel's own clock, independent of /proc parsing.
double process_cpu_clock_seconds() {
  timespec t{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + double(t.tv_nsec) / 1e9;
}

double wall_clock_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

TEST_SUITE("process stats") {
  TEST_CASE("start time is the process's: before now, within a few seconds of it") {
    // The unit binary started moments ago; the figure is boot time + start ticks, so whole
    // seconds of error would mean a wrong field or a wrong clock-tick rate.
    const double now = wall_clock_seconds();
    const ProcessStats stats = read_process_stats();
    CHECK(stats.start_time_seconds <= now + 1.0);
    CHECK(stats.start_time_seconds > now - 30.0);
  }

  TEST_CASE("open fds rises by exactly the files opened, and falls back when closed") {
    const uint64_t before = read_process_stats().open_fds;
    CHECK(before >= 3);  // stdin, stdout, stderr at least
    constexpr int kFiles = 25;
    std::vector<int> fds;
    for (int i = 0; i < kFiles; ++i) {
      const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      REQUIRE(fd >= 0);
      fds.push_back(fd);
    }
    CHECK(read_process_stats().open_fds == before + kFiles);
    for (int fd : fds) ::close(fd);
    CHECK(read_process_stats().open_fds == before);
  }

  TEST_CASE("max fds is the RLIMIT_NOFILE soft limit") {
    rlimit saved{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
    CHECK(read_process_stats().max_fds == saved.rlim_cur);
    rlimit lower = saved;
    lower.rlim_cur = 200;  // well above what the test binary has open
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &lower) == 0);
    CHECK(read_process_stats().max_fds == 200);
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &saved) == 0);
    CHECK(read_process_stats().max_fds == saved.rlim_cur);
  }

  TEST_CASE("resident and virtual memory rise with a 64 MiB mapping once it is touched") {
    constexpr size_t kSize = 64u << 20;
    const ProcessStats before = read_process_stats();
    CHECK(before.resident_bytes > 0);
    CHECK(before.virtual_bytes >= before.resident_bytes);
    void* area = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(area != MAP_FAILED);
    const ProcessStats mapped = read_process_stats();
    CHECK(mapped.virtual_bytes >= before.virtual_bytes + kSize);
    // Mapped but untouched: not resident yet (allow the noise of a few pages).
    CHECK(mapped.resident_bytes < before.resident_bytes + (4u << 20));
    std::memset(area, 1, kSize);
    const ProcessStats touched = read_process_stats();
    CHECK(touched.resident_bytes >= before.resident_bytes + kSize - (1u << 20));
    ::munmap(area, kSize);
    CHECK(read_process_stats().resident_bytes < touched.resident_bytes - kSize / 2);
  }

  TEST_CASE("cpu seconds follow a busy loop") {
    const double before = read_process_stats().cpu_seconds;
    // Spin until the kernel's own process clock shows 300 ms more CPU.
    const double start = process_cpu_clock_seconds();
    volatile unsigned long sink = 0;
    while (process_cpu_clock_seconds() - start < 0.3) {
      for (int i = 0; i < 10000; ++i) sink = sink + i;
    }
    const double after = read_process_stats().cpu_seconds;
    // /proc counts in clock ticks (10 ms at 100 Hz): a tick of slack on each reading.
    CHECK(after - before >= 0.3 - 0.03);
    CHECK(after - before < 0.3 + 0.5);  // the busy loop, not a unit error (ms for s)
    CHECK(after <= process_cpu_clock_seconds() + 0.02);
  }
}
