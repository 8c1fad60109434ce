// Host and process facts in the shapes of the JS broker (moleculer src/health.js, utils.js).
#include "moleculer/system_info.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <limits.h>
#include <malloc.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <vector>

#ifndef STEEDOS_VERSION
#define STEEDOS_VERSION "0.1.0"
#endif

namespace steedos::moleculer {

namespace {

// Initialised before main(): the reference for process_uptime_seconds().
const auto kProcessStart = std::chrono::steady_clock::now();

std::string read_file(const char* path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) return "";
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

/// A "Name:   1234 kB" line of /proc/meminfo, in bytes; -1 when absent.
long long meminfo_bytes(const std::string& meminfo, const std::string& name) {
  std::istringstream in(meminfo);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, name.size() + 1, name + ":") != 0) continue;
    unsigned long long kb = 0;
    if (std::sscanf(line.c_str() + name.size() + 1, "%llu", &kb) != 1) return -1;
    return static_cast<long long>(kb * 1024);
  }
  return -1;
}

/// Node's os.arch() (the architecture the process was built for).
std::string node_arch() {
#if defined(__x86_64__)
  return "x64";
#elif defined(__aarch64__)
  return "arm64";
#elif defined(__i386__)
  return "ia32";
#elif defined(__arm__)
  return "arm";
#elif defined(__powerpc64__)
  return "ppc64";
#elif defined(__s390x__)
  return "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
  return "riscv64";
#elif defined(__loongarch64)
  return "loong64";
#else
  struct utsname u {};
  return ::uname(&u) == 0 ? std::string(u.machine) : std::string("unknown");
#endif
}

/// os.userInfo(): from the passwd entry of the effective uid; {} when there is none (JS catches
/// the error and returns {}).
Json user_info() {
  const uid_t uid = ::geteuid();
  long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buffer(size > 0 ? static_cast<size_t>(size) : 16384);
  struct passwd pw {};
  struct passwd* result = nullptr;
  while (::getpwuid_r(uid, &pw, buffer.data(), buffer.size(), &result) == ERANGE) {
    buffer.resize(buffer.size() * 2);
  }
  if (!result) return Json::object();
  return Json{{"uid", static_cast<long long>(pw.pw_uid)},
              {"gid", static_cast<long long>(pw.pw_gid)},
              {"username", pw.pw_name ? pw.pw_name : ""},
              {"homedir", pw.pw_dir ? pw.pw_dir : ""},
              {"shell", pw.pw_shell ? Json(pw.pw_shell) : Json(nullptr)}};
}

/// process.memoryUsage(). `rss` comes from /proc/self/statm. There is no V8 heap: `heapTotal`
/// is the malloc heap (mallinfo2 arena + mmapped blocks), `heapUsed` the bytes malloc handed
/// out (uordblks + mmapped blocks); both 0 without glibc >= 2.33. `external` and `arrayBuffers`
/// have no equivalent and are 0.
Json memory_usage() {
  long long rss = 0;
  {
    std::istringstream statm(read_file("/proc/self/statm"));
    long long size = 0, resident = 0;
    if (statm >> size >> resident) rss = resident * ::sysconf(_SC_PAGESIZE);
  }
  long long heap_total = 0, heap_used = 0;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  const struct mallinfo2 mi = ::mallinfo2();
  heap_total = static_cast<long long>(mi.arena + mi.hblkhd);
  heap_used = static_cast<long long>(mi.uordblks + mi.hblkhd);
#endif
  return Json{{"rss", rss},
              {"heapTotal", heap_total},
              {"heapUsed", heap_used},
              {"external", 0},
              {"arrayBuffers", 0}};
}

/// process.argv: the command line, with argv[0] replaced by the executable's absolute path as
/// Node does (process.execPath).
Json process_argv() {
  Json argv = Json::array();
  const auto cmdline = read_file("/proc/self/cmdline");
  size_t start = 0;
  while (start < cmdline.size()) {
    auto end = cmdline.find('\0', start);
    if (end == std::string::npos) end = cmdline.size();
    argv.push_back(cmdline.substr(start, end - start));
    start = end + 1;
  }
  std::array<char, PATH_MAX> exe{};
  const auto n = ::readlink("/proc/self/exe", exe.data(), exe.size() - 1);
  if (n > 0) {
    if (argv.empty()) {
      argv.push_back(std::string(exe.data(), static_cast<size_t>(n)));
    } else {
      argv[0] = std::string(exe.data(), static_cast<size_t>(n));
    }
  }
  return argv;
}

Json cpu_info(int cpu_utilization) {
  double load[3] = {0, 0, 0};
  {
    // The same text libuv's uv_loadavg reads, so the values print like Node's (0.52, not
    // 0.5200195...).
    std::istringstream in(read_file("/proc/loadavg"));
    if (!(in >> load[0] >> load[1] >> load[2])) {
      if (::getloadavg(load, 3) != 3) load[0] = load[1] = load[2] = 0;
    }
  }
  const long cores = ::sysconf(_SC_NPROCESSORS_ONLN);
  // JS derives `utilization` from load1 / cores; this node reports its measured CPU usage (the
  // HEARTBEAT value), which is what the field is read as.
  return Json{{"load1", load[0]},
              {"load5", load[1]},
              {"load15", load[2]},
              {"cores", cores > 0 ? Json(cores) : Json(nullptr)},
              {"utilization", cpu_utilization}};
}

Json mem_info() {
  const auto meminfo = read_file("/proc/meminfo");
  long long total = meminfo_bytes(meminfo, "MemTotal");
  long long free = meminfo_bytes(meminfo, "MemAvailable");  // libuv's uv_get_free_memory
  if (free < 0) free = meminfo_bytes(meminfo, "MemFree");
  if (total < 0) total = 0;
  if (free < 0) free = 0;
  // JS quirk kept: `percent` is the FREE percentage.
  const double percent =
      total > 0 ? static_cast<double>(free) * 100.0 / static_cast<double>(total) : 0.0;
  return Json{{"free", free}, {"total", total}, {"percent", percent}};
}

Json os_info() {
  double uptime = 0;
  {
    std::istringstream in(read_file("/proc/uptime"));
    if (!(in >> uptime)) uptime = 0;
  }
  struct utsname u {};
  const bool have_uname = ::uname(&u) == 0;
  return Json{{"uptime", uptime},
              {"type", have_uname ? std::string(u.sysname) : std::string("Linux")},
              {"release", have_uname ? std::string(u.release) : std::string()},
              {"hostname", host_name()},
              {"arch", node_arch()},
              {"platform", "linux"},
              {"user", user_info()}};
}

Json time_info() {
  static const char* const kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const auto now = std::chrono::system_clock::now();
  const long long ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&seconds, &tm);
  char iso[96];
  std::snprintf(iso, sizeof iso, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  char utc[96];
  std::snprintf(utc, sizeof utc, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday % 7],
                tm.tm_mday, kMonths[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return Json{{"now", ms}, {"iso", iso}, {"utc", utc}};
}

}  // namespace

std::string host_name() {
  char name[HOST_NAME_MAX + 1] = {};
  if (::gethostname(name, sizeof name - 1) == 0 && name[0] != '\0') return name;
  struct utsname u {};
  if (::uname(&u) == 0) return u.nodename;
  return "localhost";
}

std::vector<std::string> ip_list() {
  std::vector<std::string> external, internal;
  struct ifaddrs* addrs = nullptr;
  if (::getifaddrs(&addrs) != 0) return {};
  std::set<std::string> done;  // interfaces whose first IPv4 was taken
  for (const struct ifaddrs* a = addrs; a != nullptr; a = a->ifa_next) {
    // libuv (os.networkInterfaces) lists only interfaces that are up and running.
    if (!a->ifa_addr || !a->ifa_name) continue;
    if (!(a->ifa_flags & IFF_UP) || !(a->ifa_flags & IFF_RUNNING)) continue;
    if (a->ifa_addr->sa_family != AF_INET) continue;
    if (!done.insert(a->ifa_name).second) continue;
    char text[INET_ADDRSTRLEN] = {};
    const auto* in = reinterpret_cast<const struct sockaddr_in*>(a->ifa_addr);
    if (!::inet_ntop(AF_INET, &in->sin_addr, text, sizeof text)) continue;
    ((a->ifa_flags & IFF_LOOPBACK) ? internal : external).push_back(text);
  }
  ::freeifaddrs(addrs);
  return external.empty() ? internal : external;
}

int CpuMeter::sample() {
  std::ifstream in("/proc/stat");
  std::string label;
  unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0,
                     steal = 0;
  if (!(in >> label >> user >> nice >> system >> idle) || label != "cpu") return 0;
  in >> iowait >> irq >> softirq >> steal;  // absent on very old kernels: stay 0
  // guest/guest_nice are already counted in user/nice.
  const unsigned long long idle_all = idle + iowait;
  const unsigned long long total = user + nice + system + idle_all + irq + softirq + steal;
  const unsigned long long d_total = total > last_total_ ? total - last_total_ : 0;
  const unsigned long long d_idle = idle_all > last_idle_ ? idle_all - last_idle_ : 0;
  last_total_ = total;
  last_idle_ = idle_all;
  if (d_total == 0) return 0;
  const double busy = 100.0 * static_cast<double>(d_total - std::min(d_idle, d_total)) /
                      static_cast<double>(d_total);
  const long rounded = std::lround(busy);  // the JS node rounds its average too
  return static_cast<int>(rounded < 0 ? 0 : (rounded > 100 ? 100 : rounded));
}

Json client_info() {
  return Json{{"type", "cpp"}, {"version", STEEDOS_VERSION}, {"langVersion", "c++17"}};
}

Json health_info(const Json& client, int cpu_utilization) {
  return Json{{"cpu", cpu_info(cpu_utilization)},
              {"mem", mem_info()},
              {"os", os_info()},
              {"process",
               {{"pid", static_cast<long long>(::getpid())},
                {"memory", memory_usage()},
                {"uptime", process_uptime_seconds()},
                {"argv", process_argv()}}},
              {"client", client},
              {"net", {{"ip", ip_list()}}},
              {"time", time_info()}};
}

double process_uptime_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - kProcessStart).count();
}

}  // namespace steedos::moleculer
