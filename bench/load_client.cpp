// load-client: the client side of bench/run_gateway_bench.sh. One thread, epoll, non-blocking
// sockets, no library.
//
//   load-client --port P [--control-port C] --clients N [--phases idle,latency,burst]
//               [--settle-ms 1000] [--latency-reps 5] [--burst-events 1000] [--burst-reps 3]
//               [--concurrency 512] [--timeout-s 60] [--browser-headers]
//   load-client --port P --clients N --no-control --event NAME   (a real gateway, e.g.
//   steedos-socket)
//
// Opens N WebSocket connections to ws://127.0.0.1:P/socket.io/?EIO=4&transport=websocket
// (masked client frames, RFC 6455 §5.3), waits for the Engine.IO open packet, sends the
// Socket.IO CONNECT `40` and waits for `40{...}`; answers `2` with `3`; counts `42[...]` frames.
// It drives gateway-bench-server through its control port (127.0.0.1:C, default P+1) and prints
// `RESULT ...` lines (key=value), which the run script parses.
//
// Phases:
//   idle     server RSS with 0 clients (before connecting) and with N clients (after --settle-ms):
//            (RSS_N - RSS_0) / N bytes per client.
//   latency  `emit 1`, --latency-reps times: time from the server's emit call (CLOCK_MONOTONIC
//            stamped by the server) until this client has received all N frames, and until the
//            server reports every queue written.
//   burst    `emit K` (K back-to-back in one server loop turn), --burst-reps times:
//            deliveries/s = N*K / (time until all N*K frames are received).
//   interactive  then one measurement per stdin line: `latency`, `burst K`; `quit` (or EOF) ends.
// CLOCK_MONOTONIC is shared by the processes of one machine, so server and client stamps compare.
//
// --no-control: no control port (a real gateway such as build/steedos-socket, driven by
// bench/steedos_fanout.js). Only the interactive phase runs, after every client has received its
// Socket.IO CONNECT reply; commands on stdin:
//   expect T   wait until T event frames have arrived in all since start, then print
//              `RESULT expect total= done_ns= samples= p50_ms= p99_ms= max_ms=`: done_ns is the
//              CLOCK_MONOTONIC of the read that completed them; the latencies are receipt time
//              minus the stamp `"t":<CLOCK_MONOTONIC ns>` found in each event frame since the last
//              `expect` (frames without a stamp are counted, not timed). The first `"t":` of
//              the frame is the stamp, so a trailing argument after the data (the offset of
//              connection state recovery, `42["bench",{"t":...},"<offset>"]`) changes nothing.
//   closed T   wait until T joined clients have been closed by the server (a drain), then print
//              `RESULT closed total= eio_close= close_frames= code_1001= eof= done_ns=`: how many
//              got the Engine.IO close packet `1`, a WebSocket close frame (and how many of those
//              had status 1001 Going Away), or only a TCP close; done_ns as for expect.
// --event NAME: only `42["NAME",...]` frames count as events (a real gateway also sends
// `42["connection-init"]` and others).
//
// --plan FILE (with --no-control; bench/soak.js and bench/faults.js write it): the clients are
// Steedos users. Line i of FILE is client i: `<Cookie header value>` then, tab-separated, one
// `<target>,<individual 0|1>,<roomParts>` per subscription. After its CONNECT reply the client
// sends `subscribe` with an ack id for each and is ready when every ack says `rooms` (an `error`
// ack is fatal). Target 0 is the global one, which every client receives. An event frame whose
// payload holds the marker `~<target>~<seq>~<t>~` (seq counts from 0 per target, t the producer's
// CLOCK_MONOTONIC ns) is checked: delivered (first copy), duplicated (seen before), leaked (a
// target the client is not subscribed to); its latency goes to a histogram (10 us buckets up to
// 100 ms, then 1 ms). Extra commands:
//   soak         `RESULT soak delivered= duplicated= leaked= ready= closed= p50_ms= p99_ms=
//   max_ms=`
//                (latency since the start)
//   window       `RESULT window samples= p50_ms= p99_ms= max_ms= last_ns=` since the last
//                `window`, then starts a new window (last_ns: CLOCK_MONOTONIC of the read that
//                brought the last marked frame so far)
//   total G N    target G had N events emitted (for `check`)
//   check Q T    waits until every subscribed client has every event of the totals, or no marked
//                frame for Q ms (counted from the check's start at the earliest), or T ms; `RESULT
//                check_soak delivered= lost= duplicated= leaked= closed= p50_ms= p99_ms= max_ms=`
//                (lost: expected minus distinct received, stalled clients left out)
//   stall I      client I stops reading (its fd leaves epoll)
//   probe I      `RESULT probe index= tcp_state=` (TCP_INFO: 1 established, 7 closed, 8 close-wait)
//   ready N T    waits up to T ms until N clients are ready: `RESULT ready count= done_ns=
//                closed= failures=` (closed: by the server after joining; failures: attempts)
//   receivers G  `RESULT receivers n= counts=c0,c1,...`: for each seq of target G's total, how many
//                clients received it
// --connect-bench (with or without --plan): every client connects once, --concurrency attempts
// in flight, then all are reset and the client exits: `RESULT connects connects= seconds= per_s=
// p50_ms= p99_ms= max_ms= failed=` (per connection: from its first attempt until ready, i.e. the
// CONNECT reply and, with a plan that has subscriptions, every subscribe ack; failed: attempts
// that failed, each retried).
//
// --polling-upgrade: each client opens as socket.io-client does by default: long-polling
// handshake (GET), CONNECT (POST `40`), GET until the CONNECT reply, then the WebSocket upgrade of
// the session (`2probe`, `3probe`, `5`) on a second connection; the polling connection is closed
// after `5`. With the plan's cookie on every request.
//
// Every RESULT line ends with `client_cpu_pct=`: this process's CPU time (getrusage user + sys)
// over the phase it reports, 100 = one full core. The phase starts with the measurement (the
// connects, a control-mode latency or burst, an `expect`, `closed` or `ready` command) or else
// at the previous RESULT line (`check`, `window` and `soak` report on what happened since).
// At >= 90 % over >= 50 ms, stderr gets `WARN load-client saturated (cpu NN%) during RESULT x`:
// the generator, one thread, then sets the pace and the figure is a bound of the generator.
//
// --reconnect: a client closed by the server opens again (a browser's socket.io-client does);
// --retry-ms M: a failed connection attempt is retried after M ms, without limit (default: at
// once, and at most 100 failures in all). --small-rcvbuf N: clients 0..N-1 get a 16 KiB receive
// buffer (so a stalled client backs up into the server's queue quickly).
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

/// This process's CPU time (getrusage user + sys) over a measured phase against the wall time:
/// 100 % is one full core. The generator is one thread, so near 100 % it, not the server, sets
/// the pace, and what it measured is a bound of the generator.
class CpuMeter {
 public:
  CpuMeter() { reset(); }
  void reset() {
    wall_ns_ = mono_ns();
    cpu_ns_ = cpu_ns();
  }
  double wall_ms() const { return double(mono_ns() - wall_ns_) / 1e6; }
  double percent() const {
    const int64_t wall = mono_ns() - wall_ns_;
    return wall > 0 ? 100.0 * double(cpu_ns() - cpu_ns_) / double(wall) : 0.0;
  }

 private:
  static int64_t cpu_ns() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    auto ns = [](const timeval& t) {
      return int64_t(t.tv_sec) * 1000000000LL + t.tv_usec * 1000LL;
    };
    return ns(usage.ru_utime) + ns(usage.ru_stime);
  }
  int64_t wall_ns_ = 0;
  int64_t cpu_ns_ = 0;
};

/// The meter of the phase in progress: reset when a measurement starts and after each RESULT line.
CpuMeter& phase_cpu() {
  static CpuMeter meter;
  return meter;
}

/// At or above this share of one core the generator is the bottleneck (the figure is marked).
constexpr double kSaturatedPercent = 90.0;
/// Phases shorter than this are too short for getrusage to say anything (no warning).
constexpr double kMinPhaseMs = 50.0;

/// Prints one `RESULT ...` line (printf format, ending in a newline) with ` client_cpu_pct=` the
/// generator's CPU over the phase it reports, warns on stderr when that is saturation, flushes,
/// and starts the next phase's meter.
void result(const char* format, ...) {
  va_list args, again;
  va_start(args, format);
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, format, args);  // `receivers` lines can be long
  va_end(args);
  std::string text(size_t(std::max(n, 0)) + 1, '\0');
  std::vsnprintf(text.data(), text.size(), format, again);
  va_end(again);
  text.resize(size_t(std::max(n, 0)));
  while (!text.empty() && text.back() == '\n') text.pop_back();
  const double pct = phase_cpu().percent();
  std::printf("%s client_cpu_pct=%.0f\n", text.c_str(), pct);
  std::fflush(stdout);
  if (pct >= kSaturatedPercent && phase_cpu().wall_ms() >= kMinPhaseMs) {
    const size_t name_end = text.find(' ', 7);
    std::fprintf(stderr, "WARN load-client saturated (cpu %.0f%%) during %s\n", pct,
                 text.substr(0, name_end).c_str());
  }
  phase_cpu().reset();
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "load-client: %s (errno %d: %s)\n", what, errno, std::strerror(errno));
  std::fflush(stdout);
  std::_Exit(1);
}

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  int control_port = 0;
  size_t clients = 1000;
  std::string phases = "idle,latency,burst";
  int settle_ms = 1000;
  int latency_reps = 5;
  size_t burst_events = 1000;
  int burst_reps = 3;
  size_t concurrency = 512;
  int timeout_s = 60;
  bool browser_headers = false;
  bool no_control = false;
  std::string event;  // when set, only 42["<event>" frames are counted
  std::string plan;   // --plan FILE: cookies and subscriptions per client, marker checks
  bool reconnect = false;
  bool connect_bench = false;    // --connect-bench: connect every client once, time it, exit
  bool polling_upgrade = false;  // --polling-upgrade: open on long-polling, then upgrade
  int retry_ms = -1;             // < 0: retry at once, at most 100 failures
  size_t small_rcvbuf = 0;       // clients below this index get a small receive buffer
};

enum class State : uint8_t {
  Connecting,
  HttpWait,
  OpenWait,
  JoinWait,
  SubWait,
  Ready,
  Closed,
  PollOpen,   // --polling-upgrade: GET handshake sent, awaiting the open packet
  PollPost,   // POST `40` sent, awaiting `ok`
  PollGet,    // GET sent, awaiting the CONNECT reply `40{...}`
  ProbeWait,  // WebSocket upgraded, `2probe` sent, awaiting `3probe`
};

struct Conn {
  int fd = -1;
  int poll_fd = -1;  // --polling-upgrade: the long-polling connection, closed after the upgrade
  State state = State::Closed;
  uint32_t events = 0;                   // `42` frames received
  uint16_t acks_pending = 0;             // --plan: subscribe acks still awaited
  bool stalled = false;                  // `stall`: not read any more
  std::unique_ptr<std::string> pending;  // HTTP head or an unfinished frame
  std::string sid;                       // --polling-upgrade: the Engine.IO session id
};

/// Latency histogram: 10 us buckets up to 100 ms, then 1 ms buckets up to 120 s.
class Histogram {
 public:
  Histogram() : counts_(kFine + kCoarse, 0) {}
  void add(int64_t ns) {
    const int64_t us = std::max<int64_t>(ns / 1000, 0);
    size_t bucket = us < 100000 ? size_t(us / 10) : kFine + size_t((us - 100000) / 1000);
    counts_[std::min(bucket, counts_.size() - 1)]++;
    ++samples_;
    max_ns_ = std::max(max_ns_, ns);
  }
  uint64_t samples() const { return samples_; }
  double max_ms() const { return double(max_ns_) / 1e6; }
  /// The upper bound (ms) of the bucket holding the p-th percentile.
  double percentile_ms(double p) const {
    if (samples_ == 0) return 0;
    const uint64_t rank = std::max<uint64_t>(1, uint64_t(p / 100.0 * double(samples_) + 0.5));
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return i < kFine ? double(i + 1) / 100.0 : 100.0 + double(i - kFine + 1);
    }
    return max_ms();
  }
  void clear() { *this = Histogram(); }

 private:
  static constexpr size_t kFine = 10000;     // 0-100 ms by 10 us
  static constexpr size_t kCoarse = 119900;  // 100 ms-120 s by 1 ms
  std::vector<uint64_t> counts_;
  uint64_t samples_ = 0;
  int64_t max_ns_ = 0;
};

/// --plan: one client's cookie and subscriptions.
struct PlanEntry {
  struct Sub {
    uint32_t target = 0;
    bool individual = false;
    std::string parts;
  };
  std::string cookie;
  std::vector<Sub> subs;
};

/// --plan: which events of one target a client has received (bit per per-target seq).
struct Track {
  uint32_t target = 0;
  std::vector<uint64_t> bits;
  uint64_t distinct = 0;
};

constexpr uint64_t kControlId = ~uint64_t{0};
constexpr uint64_t kStdinId = ~uint64_t{0} - 1;

class Client {
 public:
  explicit Client(Options options) : o_(std::move(options)) {
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0) die("epoll_create1");
    std::memset(&addr_, 0, sizeof addr_);
    addr_.sin_family = AF_INET;
    addr_.sin_port = htons(uint16_t(o_.port));
    if (inet_pton(AF_INET, o_.host.c_str(), &addr_.sin_addr) != 1) die("bad --host");
    conns_.resize(o_.clients);
    if (o_.connect_bench) opened_ns_.assign(o_.clients, 0);
    buffer_.resize(256 * 1024);
    build_request();
    if (!o_.plan.empty()) load_plan();
  }

  // --- control channel ---------------------------------------------------------------------

  void connect_control() {
    control_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = addr_;
    addr.sin_port = htons(uint16_t(o_.control_port));
    for (int attempt = 0;; ++attempt) {
      if (connect(control_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
      if (attempt > 100) die("cannot connect to the control port");
      usleep(50000);
    }
    int one = 1;
    setsockopt(control_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = kControlId;
    if (epoll_ctl(epoll_, EPOLL_CTL_ADD, control_, &event) != 0) die("epoll_ctl control");
  }

  void command(const std::string& line) {
    const std::string text = line + "\n";
    if (send(control_, text.data(), text.size(), MSG_NOSIGNAL) != ssize_t(text.size())) {
      die("control write");
    }
  }

  /// Runs the loop until a control line starting with `prefix` arrives.
  std::string await_line(const std::string& prefix, int timeout_ms = 20000) {
    const int64_t deadline = mono_ns() + int64_t(timeout_ms) * 1000000;
    for (;;) {
      for (auto it = lines_.begin(); it != lines_.end(); ++it) {
        if (it->rfind(prefix, 0) == 0) {
          std::string line = *it;
          lines_.erase(it);
          return line;
        }
      }
      if (mono_ns() > deadline) {
        std::fprintf(stderr, "load-client: timeout waiting for '%s'\n", prefix.c_str());
        std::_Exit(1);
      }
      run_once(50);
    }
  }

  static long field(const std::string& line, const char* key) {
    const std::string needle = std::string(" ") + key + "=";
    const size_t at = line.find(needle);
    if (at == std::string::npos) return -1;
    return std::strtol(line.c_str() + at + needle.size(), nullptr, 10);
  }
  static long long field_ll(const std::string& line, const char* key) {
    const std::string needle = std::string(" ") + key + "=";
    const size_t at = line.find(needle);
    if (at == std::string::npos) return -1;
    return std::strtoll(line.c_str() + at + needle.size(), nullptr, 10);
  }

  std::string stats() {
    command("stats");
    return await_line("stats");
  }

  // --- connections -------------------------------------------------------------------------

  /// Opens and joins every client; returns the seconds it took.
  double connect_all() {
    const int64_t start = mono_ns();
    const int64_t deadline = start + int64_t(o_.timeout_s) * 1000000000LL;
    size_t next = 0;
    while (ready_ < o_.clients) {
      while (next < o_.clients && in_flight_ < o_.concurrency) open(next++);
      run_once(10);
      if (mono_ns() > deadline) {
        std::fprintf(stderr, "load-client: only %zu of %zu clients joined (failures %zu)\n", ready_,
                     o_.clients, failures_);
        std::_Exit(1);
      }
    }
    return double(mono_ns() - start) / 1e9;
  }

  /// Runs the loop for `ms` milliseconds (answering pings, counting frames).
  void idle(int ms) {
    const int64_t until = mono_ns() + int64_t(ms) * 1000000;
    while (mono_ns() < until) run_once(10);
  }

  /// Waits until `total` event frames have arrived in all; returns the CLOCK_MONOTONIC of the
  /// read that completed them.
  int64_t await_events(uint64_t total, int timeout_ms) {
    target_ = total;
    done_at_ = total_events_ >= total ? mono_ns() : 0;
    const int64_t deadline = mono_ns() + int64_t(timeout_ms) * 1000000;
    while (done_at_ == 0) {
      run_once(5);
      if (mono_ns() > deadline) {
        std::fprintf(stderr, "load-client: received %llu of %llu frames\n",
                     static_cast<unsigned long long>(total_events_),
                     static_cast<unsigned long long>(total));
        std::_Exit(1);
      }
    }
    target_ = UINT64_MAX;
    return done_at_;
  }

  /// Waits until `total` joined clients have been closed by the server; returns the
  /// CLOCK_MONOTONIC of the close that completed them, 0 on timeout.
  int64_t await_closed(size_t total, int timeout_ms) {
    const int64_t deadline = mono_ns() + int64_t(timeout_ms) * 1000000;
    while (closed_count_ < total) {
      if (mono_ns() > deadline) return 0;
      run_once(5);
    }
    return last_close_ns_;
  }

  struct CloseCounts {
    size_t eio_close = 0;     // Engine.IO `1` received
    size_t close_frames = 0;  // WebSocket close frame received
    size_t code_1001 = 0;     // ... with status 1001
    size_t eof = 0;           // closed without a close frame
  };
  const CloseCounts& close_counts() const { return close_counts_; }

  uint64_t total_events() const { return total_events_; }
  size_t ready() const { return ready_; }
  size_t closed() const { return closed_count_; }
  void per_connection_range(uint32_t* lo, uint32_t* hi) const {
    *lo = UINT32_MAX;
    *hi = 0;
    for (const Conn& c : conns_) {
      *lo = std::min(*lo, c.events);
      *hi = std::max(*hi, c.events);
    }
  }

  /// Interactive mode: the next command line from stdin (the loop keeps running meanwhile);
  /// "quit" at EOF.
  std::string next_command() {
    if (!stdin_added_) {
      stdin_added_ = true;
      epoll_event event{};
      event.events = EPOLLIN;
      event.data.u64 = kStdinId;
      if (epoll_ctl(epoll_, EPOLL_CTL_ADD, 0, &event) != 0) die("epoll_ctl stdin");
    }
    for (;;) {
      const size_t newline = stdin_in_.find('\n');
      if (newline != std::string::npos) {
        std::string line = stdin_in_.substr(0, newline);
        stdin_in_.erase(0, newline + 1);
        return line;
      }
      if (stdin_eof_) return "quit";
      run_once(50);
    }
  }

  /// Waits until the server closes the control connection (it exits on `quit`).
  void await_control_eof(int timeout_ms) {
    const int64_t deadline = mono_ns() + int64_t(timeout_ms) * 1000000;
    char buf[256];
    while (mono_ns() < deadline) {
      const ssize_t n = recv(control_, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return;
      usleep(2000);
    }
  }

  /// Resets every connection (RST: no TIME_WAIT left behind for the next run).
  void reset_all() {
    linger l{1, 0};
    for (Conn& c : conns_) {
      if (c.poll_fd >= 0) close(c.poll_fd);
      c.poll_fd = -1;
      if (c.fd < 0) continue;
      setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      close(c.fd);
      c.fd = -1;
    }
  }

 private:
  void build_request() {
    char key[25];
    // A fixed, valid 16-byte nonce in base64; the server checks the form, not freshness.
    std::snprintf(key, sizeof key, "%s", "dGhlIHNhbXBsZSBub25jZQ==");
    request_ = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: " + o_.host + ":" +
               std::to_string(o_.port) +
               "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
               "\r\nSec-WebSocket-Version: 13\r\n";
    if (o_.browser_headers) {
      // What a desktop Chrome sends besides the above (values typical, lengths realistic).
      request_ +=
          "Pragma: no-cache\r\nCache-Control: no-cache\r\n"
          "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/124.0.0.0 Safari/537.36\r\n"
          "Origin: http://127.0.0.1:" +
          std::to_string(o_.port) +
          "\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\n"
          "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    }
    request_ += "\r\n";
  }

  void open(size_t index) {
    Conn& c = conns_[index];
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) die("socket");
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (index < o_.small_rcvbuf) {
      int small = 16 * 1024;
      setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    }
    // --connect-bench: a connection's time runs from its first attempt (a retry is part of it).
    if (!opened_ns_.empty() && opened_ns_[index] == 0) opened_ns_[index] = mono_ns();
    const int rc = connect(c.fd, reinterpret_cast<const sockaddr*>(&addr_), sizeof addr_);
    if (rc != 0 && errno != EINPROGRESS) die("connect");
    c.state = State::Connecting;
    c.sid.clear();
    c.events = 0;
    c.acks_pending = 0;
    c.pending.reset();
    epoll_event event{};
    event.events = EPOLLIN | EPOLLOUT;
    event.data.u64 = index;
    if (epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &event) != 0) die("epoll_ctl add");
    ++in_flight_;
  }

  void fail(size_t index, const char* why) {
    Conn& c = conns_[index];
    const bool was_ready = c.state == State::Ready;
    if (c.fd >= 0) close(c.fd);
    c.fd = -1;
    if (c.poll_fd >= 0) close(c.poll_fd);
    c.poll_fd = -1;
    c.pending.reset();
    c.state = State::Closed;
    if (was_ready) {
      --ready_;
      ++closed_count_;
      last_close_ns_ = mono_ns();
      if (std::strcmp(why, "close frame") != 0) ++close_counts_.eof;
      // A drain closes every client: name the first few only.
      if (closed_count_ <= 5) {
        std::fprintf(stderr, "load-client: client %zu closed after joining (%s)\n", index, why);
      }
      if (o_.reconnect) {
        ++in_flight_;
        retry_later(index);
      }
      return;
    }
    --in_flight_;
    ++failures_;
    if (o_.retry_ms >= 0) {
      ++in_flight_;
      retry_later(index);
      return;
    }
    if (failures_ > 100) {
      std::fprintf(stderr, "load-client: too many connection failures (last: %s)\n", why);
      std::_Exit(1);
    }
    open(index);  // retry
  }

  void retry_later(size_t index) {
    retries_.push_back({mono_ns() + int64_t(std::max(o_.retry_ms, 0)) * 1000000, index});
  }

  void run_due_retries() {
    const int64_t now = mono_ns();
    while (!retries_.empty() && retries_.front().first <= now) {
      const size_t index = retries_.front().second;
      retries_.pop_front();
      --in_flight_;  // open() counts it again
      open(index);
    }
  }

  void run_once(int timeout_ms) {
    run_due_retries();
    if (!retries_.empty()) {
      const int64_t wait_ms = (retries_.front().first - mono_ns()) / 1000000 + 1;
      timeout_ms = int(std::max<int64_t>(0, std::min<int64_t>(timeout_ms, wait_ms)));
    }
    epoll_event events[1024];
    const int n = epoll_wait(epoll_, events, 1024, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) return;
      die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kControlId) {
        read_control();
        continue;
      }
      if (events[i].data.u64 == kStdinId) {
        read_stdin();
        continue;
      }
      const size_t index = size_t(events[i].data.u64);
      Conn& c = conns_[index];
      if (c.fd < 0) continue;
      if (c.state == State::Connecting) {
        if ((events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) continue;
        int error = 0;
        socklen_t length = sizeof error;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &length);
        if (error != 0 || (events[i].events & (EPOLLERR | EPOLLHUP))) {
          fail(index, "connect failed");
          continue;
        }
        const bool poll = o_.polling_upgrade && c.sid.empty();
        const std::string request = poll             ? polling_request(index, "GET", "")
                                    : !c.sid.empty() ? upgrade_request(index)
                                    : plan_.empty()  ? request_
                                                     : plan_request(index);
        if (!write_all(c.fd, request.data(), request.size())) {
          fail(index, "request write");
          continue;
        }
        c.state = poll ? State::PollOpen : State::HttpWait;
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.u64 = index;
        epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &event);
        continue;
      }
      if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) read_conn(index);
    }
  }

  void read_control() {
    for (;;) {
      char buf[4096];
      const ssize_t n = recv(control_, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n <= 0) {
        std::fprintf(stderr, "load-client: control channel closed\n");
        std::_Exit(1);
      }
      control_in_.append(buf, size_t(n));
    }
    size_t newline;
    while ((newline = control_in_.find('\n')) != std::string::npos) {
      lines_.push_back(control_in_.substr(0, newline));
      control_in_.erase(0, newline + 1);
    }
  }

  void read_stdin() {
    char buf[1024];
    const ssize_t n = read(0, buf, sizeof buf);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) return;
      stdin_eof_ = true;
      epoll_ctl(epoll_, EPOLL_CTL_DEL, 0, nullptr);
      return;
    }
    stdin_in_.append(buf, size_t(n));
  }

  static bool write_all(int fd, const char* data, size_t size) {
    while (size > 0) {
      const ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;  // tiny frames into an empty socket buffer: EAGAIN not expected
      data += n;
      size -= size_t(n);
    }
    return true;
  }

  /// A masked text frame from the client (RFC 6455 §5.3: every client frame is masked).
  bool send_text(int fd, std::string_view text) {
    char frame[8 + 125];
    if (text.size() > 125) return false;
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    const uint32_t mask = uint32_t(rng_);
    frame[0] = char(0x81);
    frame[1] = char(0x80 | text.size());
    std::memcpy(frame + 2, &mask, 4);
    const char* m = frame + 2;
    for (size_t i = 0; i < text.size(); ++i) frame[6 + i] = char(text[i] ^ m[i & 3]);
    return write_all(fd, frame, 6 + text.size());
  }

  void read_conn(size_t index) {
    Conn& c = conns_[index];
    for (;;) {
      const ssize_t n = recv(c.fd, buffer_.data(), buffer_.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n <= 0) {
        fail(index, n == 0 ? "EOF" : "read error");
        return;
      }
      read_ns_ = mono_ns();
      if (!consume(index, buffer_.data(), size_t(n))) return;
      if (target_ != UINT64_MAX && done_at_ == 0 && total_events_ >= target_) done_at_ = mono_ns();
      if (size_t(n) < buffer_.size()) return;
    }
  }

  /// Handles bytes from connection `index`; false when the connection was closed.
  bool consume(size_t index, const char* data, size_t size) {
    Conn& c = conns_[index];
    std::string joined;
    if (c.pending) {
      joined = std::move(*c.pending);
      c.pending.reset();
      joined.append(data, size);
      data = joined.data();
      size = joined.size();
    }
    size_t pos = 0;
    if (c.state == State::PollOpen || c.state == State::PollPost || c.state == State::PollGet) {
      return polling_response(index, data, size);
    }
    if (c.state == State::HttpWait) {
      const std::string_view view(data, size);
      const size_t end = view.find("\r\n\r\n");
      if (end == std::string_view::npos) {
        c.pending = std::make_unique<std::string>(data, size);
        return true;
      }
      if (view.substr(0, 12) != "HTTP/1.1 101") {
        fail(index, "upgrade refused");
        return false;
      }
      c.state = State::OpenWait;
      if (!c.sid.empty()) {  // an upgrade: probe, as socket.io-client does
        if (!send_text(c.fd, "2probe")) {
          fail(index, "probe write");
          return false;
        }
        c.state = State::ProbeWait;
      }
      pos = end + 4;
    }
    while (size - pos >= 2) {
      const auto* b = reinterpret_cast<const uint8_t*>(data + pos);
      const uint8_t opcode = b[0] & 0x0F;
      uint64_t length = b[1] & 0x7F;
      size_t header = 2;
      if (length == 126) {
        if (size - pos < 4) break;
        length = (uint64_t{b[2]} << 8) | b[3];
        header = 4;
      } else if (length == 127) {
        if (size - pos < 10) break;
        length = 0;
        for (int i = 2; i < 10; ++i) length = (length << 8) | b[i];
        header = 10;
      }
      if (size - pos - header < length) break;
      const std::string_view payload(data + pos + header, size_t(length));
      pos += header + size_t(length);
      if (!frame(index, opcode, payload)) return false;
    }
    if (pos < size) c.pending = std::make_unique<std::string>(data + pos, size - pos);
    return true;
  }

  bool frame(size_t index, uint8_t opcode, std::string_view p) {
    Conn& c = conns_[index];
    if (opcode == 0x8) {
      if (c.state == State::Ready) {
        ++close_counts_.close_frames;
        const bool going_away = p.size() >= 2 && ((uint8_t(p[0]) << 8) | uint8_t(p[1])) == 1001;
        if (going_away) ++close_counts_.code_1001;
      }
      fail(index, "close frame");
      return false;
    }
    if (opcode != 0x1) return true;
    if (p.size() >= 2 && p[0] == '4' && p[1] == '2') {
      if (!plan_.empty()) check_marker(index, p);
      if (!event_prefix_.empty()) {
        if (p.substr(0, event_prefix_.size()) != event_prefix_) return true;
        stamp(p);
      }
      ++c.events;
      ++total_events_;
      return true;
    }
    if (p == "2") {
      send_text(c.fd, "3");
      return true;
    }
    if (p == "1") {
      if (c.state == State::Ready) ++close_counts_.eio_close;
      return true;
    }
    if (c.state == State::ProbeWait && p == "3probe") {
      // No GET is pending on the polling connection, so the upgrade completes at once.
      if (!send_text(c.fd, "5")) {
        fail(index, "upgrade write");
        return false;
      }
      close(c.poll_fd);
      c.poll_fd = -1;
      return joined(index);
    }
    if (c.state == State::OpenWait && !p.empty() && p[0] == '0') {
      if (!send_text(c.fd, "40")) {
        fail(index, "connect write");
        return false;
      }
      c.state = State::JoinWait;
      return true;
    }
    if (c.state == State::JoinWait && p.size() >= 2 && p[0] == '4' && p[1] == '0') {
      return joined(index);
    }
    if (c.state == State::SubWait && p.size() >= 2 && p[0] == '4' && p[1] == '3') {
      if (p.find("\"rooms\"") == std::string_view::npos) {
        std::fprintf(stderr, "load-client: client %zu: subscribe refused: %.*s\n", index,
                     int(std::min<size_t>(p.size(), 200)), p.data());
        std::_Exit(1);
      }
      if (--c.acks_pending == 0) set_ready(c);
      return true;
    }
    if (p.size() >= 2 && p[0] == '4' && p[1] == '4') {
      fail(index, "connect error");
      return false;
    }
    return true;
  }

  /// The Socket.IO CONNECT reply is here (and the transport is WebSocket): the --plan
  /// subscriptions, or ready. False when the connection was closed.
  bool joined(size_t index) {
    Conn& c = conns_[index];
    if (!plan_.empty() && !plan_[index].subs.empty()) {
      c.state = State::SubWait;
      uint16_t ack = 0;
      for (const PlanEntry::Sub& sub : plan_[index].subs) {
        const std::string packet =
            "42" + std::to_string(ack++) + "[\"subscribe\",{\"roomParts\":\"" + sub.parts +
            "\",\"individual\":" + (sub.individual ? "true" : "false") + "}]";
        if (!send_text(c.fd, packet)) {
          fail(index, "subscribe write");
          return false;
        }
      }
      c.acks_pending = ack;
      return true;
    }
    set_ready(c);
    return true;
  }

  // --- --polling-upgrade: what socket.io-client does with its default transports -----------

  /// A long-polling request (`sid` once the handshake gave one), with the plan's cookie.
  std::string polling_request(size_t index, const char* method, std::string_view body) const {
    const Conn& c = conns_[index];
    std::string out = std::string(method) + " /socket.io/?EIO=4&transport=polling" +
                      (c.sid.empty() ? "" : "&sid=" + c.sid) + " HTTP/1.1\r\nHost: " + o_.host +
                      ":" + std::to_string(o_.port) + "\r\n";
    if (!plan_.empty() && !plan_[index].cookie.empty()) {
      out += "Cookie: " + plan_[index].cookie + "\r\n";
    }
    if (!body.empty()) {
      out += "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: " +
             std::to_string(body.size()) + "\r\n";
    }
    out += "\r\n";
    out.append(body);
    return out;
  }

  /// The WebSocket upgrade of an open polling session.
  std::string upgrade_request(size_t index) const {
    const std::string base = plan_.empty() ? request_ : plan_request(index);
    const std::string from = "transport=websocket";
    return base.substr(0, base.find(from) + from.size()) + "&sid=" + conns_[index].sid +
           base.substr(base.find(from) + from.size());
  }

  /// A complete HTTP response on the polling connection: the next step of the handshake. False
  /// when the connection was closed (or left for the upgrade).
  bool polling_response(size_t index, const char* data, size_t size) {
    Conn& c = conns_[index];
    const std::string_view view(data, size);
    const size_t end = view.find("\r\n\r\n");
    size_t length = 0;
    if (end != std::string_view::npos) {
      const std::string_view head = view.substr(0, end);
      for (const char* name : {"Content-Length: ", "content-length: "}) {
        const size_t at = head.find(name);
        if (at != std::string_view::npos) length = std::strtoul(data + at + 16, nullptr, 10);
      }
    }
    if (end == std::string_view::npos || size - end - 4 < length) {
      c.pending = std::make_unique<std::string>(data, size);
      return true;
    }
    if (view.substr(0, 12) != "HTTP/1.1 200") {
      fail(index, "polling refused");
      return false;
    }
    const std::string_view body = view.substr(end + 4, length);
    if (size > end + 4 + length) {
      fail(index, "unexpected bytes after a polling response");
      return false;
    }
    std::string request;
    if (c.state == State::PollOpen) {  // `0{"sid":"...",...}`: send the CONNECT
      const size_t at = body.find("\"sid\":\"");
      if (body.empty() || body[0] != '0' || at == std::string_view::npos) {
        fail(index, "no open packet");
        return false;
      }
      const size_t from = at + 7;
      c.sid = std::string(body.substr(from, body.find('"', from) - from));
      request = polling_request(index, "POST", "40");
      c.state = State::PollPost;
    } else if (c.state == State::PollPost) {  // `ok`: fetch the CONNECT reply
      request = polling_request(index, "GET", "");
      c.state = State::PollGet;
    } else {  // packets separated by \x1e: wait for `40{...}`, refuse on `44`
      bool connected = false;
      for (size_t from = 0; from <= body.size();) {
        const size_t to = std::min(body.find('\x1e', from), body.size());
        const std::string_view packet = body.substr(from, to - from);
        if (packet.substr(0, 2) == "44") {
          fail(index, "connect error");
          return false;
        }
        connected = connected || packet.substr(0, 2) == "40";
        from = to + 1;
      }
      if (connected) return upgrade(index);
      request = polling_request(index, "GET", "");
    }
    if (!write_all(c.fd, request.data(), request.size())) {
      fail(index, "polling write");
      return false;
    }
    return true;
  }

  /// Opens the WebSocket of the session; the polling connection stays open until `5`.
  bool upgrade(size_t index) {
    Conn& c = conns_[index];
    epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
    c.poll_fd = c.fd;
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) die("socket");
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const int rc = connect(c.fd, reinterpret_cast<const sockaddr*>(&addr_), sizeof addr_);
    if (rc != 0 && errno != EINPROGRESS) die("connect");
    c.state = State::Connecting;
    epoll_event event{};
    event.events = EPOLLIN | EPOLLOUT;
    event.data.u64 = index;
    if (epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &event) != 0) die("epoll_ctl add");
    return false;  // the bytes read so far belonged to the polling connection
  }

  /// Records receipt time minus the frame's `"t":<ns>` stamp, when it has one.
  void stamp(std::string_view p) {
    const size_t at = p.find("\"t\":");
    if (at == std::string_view::npos) return;
    int64_t t = 0;
    size_t i = at + 4;
    while (i < p.size() && p[i] >= '0' && p[i] <= '9') t = t * 10 + (p[i++] - '0');
    if (t > 0) latencies_ns_.push_back(read_ns_ - t);
  }

 public:
  /// --connect-bench: from each client's first attempt until it was ready (ns), sorted.
  std::vector<int64_t> connect_latencies() const {
    std::vector<int64_t> out = connect_latencies_ns_;
    std::sort(out.begin(), out.end());
    return out;
  }

  /// Latency samples since the last call (ns), sorted; clears them.
  std::vector<int64_t> take_latencies() {
    std::vector<int64_t> out;
    out.swap(latencies_ns_);
    std::sort(out.begin(), out.end());
    return out;
  }

  // --- --plan: soak checks ------------------------------------------------------------------

  struct SoakCounts {
    uint64_t delivered = 0;   // distinct marked events received by a client subscribed to them
    uint64_t duplicated = 0;  // a copy of one already received
    uint64_t leaked = 0;      // an event of a target the client is not subscribed to
    uint64_t lost = 0;        // set by check(): expected minus distinct received
  };
  const SoakCounts& soak() const { return soak_; }
  const Histogram& latency() const { return latency_; }
  /// CLOCK_MONOTONIC of the read that brought the last marked frame (0: none yet).
  int64_t last_mark_ns() const { return last_mark_ns_; }
  Histogram take_window() {
    Histogram out = window_;
    window_.clear();
    return out;
  }

  void set_total(uint32_t target, uint64_t count) {
    if (totals_.size() <= target) totals_.resize(target + 1, 0);
    totals_[target] = count;
  }

  /// Events of the totals a subscribed, non-stalled client has not (yet) received.
  uint64_t missing() const {
    uint64_t out = 0;
    for (size_t i = 0; i < conns_.size(); ++i) {
      if (conns_[i].stalled) continue;
      for (const Track& t : tracks_[i]) {
        const uint64_t expected = t.target < totals_.size() ? totals_[t.target] : 0;
        uint64_t got = 0;
        for (size_t w = 0; w < t.bits.size() && w * 64 < expected; ++w) {
          const uint64_t left = expected - w * 64;
          const uint64_t mask = left >= 64 ? ~uint64_t{0} : (uint64_t{1} << left) - 1;
          got += uint64_t(__builtin_popcountll(t.bits[w] & mask));
        }
        out += expected - got;
      }
    }
    return out;
  }

  /// Waits until nothing is missing, or no marked frame came for `quiet_ms`, or `timeout_ms`;
  /// then sets the lost count.
  void check(int quiet_ms, int timeout_ms) {
    const int64_t start = mono_ns();
    const int64_t deadline = start + int64_t(timeout_ms) * 1000000;
    int64_t next_count = 0;
    for (;;) {
      run_once(20);
      const int64_t now = mono_ns();
      if (now >= next_count) {  // counting walks every bit: not on every turn
        if (missing() == 0) break;
        next_count = now + 500 * 1000000LL;
      }
      // Quiet since the last marked frame and since the check began (an event emitted just
      // before the check may not have started to arrive, long after the previous one).
      const int64_t quiet_since = std::max(last_mark_ns_, start);
      if (now > deadline || now - quiet_since > int64_t(quiet_ms) * 1000000) break;
    }
    soak_.lost = missing();
  }

  void stall(size_t index) {
    Conn& c = conns_[index];
    c.stalled = true;
    if (c.fd >= 0) epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
  }

  /// For each seq of `target` below its total: how many clients received it.
  std::vector<uint32_t> receivers(uint32_t target) const {
    const uint64_t total = target < totals_.size() ? totals_[target] : 0;
    std::vector<uint32_t> out(total, 0);
    for (const auto& tracks : tracks_) {
      for (const Track& t : tracks) {
        if (t.target != target) continue;
        for (uint64_t seq = 0; seq < total && seq / 64 < t.bits.size(); ++seq) {
          if (t.bits[seq / 64] >> (seq % 64) & 1) ++out[seq];
        }
      }
    }
    return out;
  }
  size_t failures() const { return failures_; }

  /// TCP state of client `index` (tcp_info.tcpi_state), -1 without a socket.
  int tcp_state(size_t index) const {
    const Conn& c = conns_[index];
    if (c.fd < 0) return -1;
    tcp_info info{};
    socklen_t length = sizeof info;
    if (getsockopt(c.fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) return -1;
    return info.tcpi_state;
  }

  /// Waits until `count` clients are ready; the CLOCK_MONOTONIC when they were, 0 on timeout.
  int64_t await_ready(size_t count, int timeout_ms) {
    const int64_t deadline = mono_ns() + int64_t(timeout_ms) * 1000000;
    while (ready_ < count) {
      if (mono_ns() > deadline) return 0;
      run_once(5);
    }
    return last_ready_ns_;
  }

 private:
  void set_ready(Conn& c) {
    if (!opened_ns_.empty()) {
      connect_latencies_ns_.push_back(mono_ns() - opened_ns_[size_t(&c - conns_.data())]);
    }
    c.state = State::Ready;
    --in_flight_;
    ++ready_;
    last_ready_ns_ = mono_ns();
  }

  void load_plan() {
    std::FILE* f = std::fopen(o_.plan.c_str(), "r");
    if (!f) die("cannot open --plan");
    char* line = nullptr;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0 && plan_.size() < o_.clients) {
      std::string text(line, size_t(n));
      while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
      PlanEntry entry;
      size_t start = 0;
      bool first = true;
      for (;;) {
        const size_t tab = text.find('\t', start);
        const std::string field =
            text.substr(start, tab == std::string::npos ? std::string::npos : tab - start);
        if (first) {
          entry.cookie = field;
          first = false;
        } else if (!field.empty()) {
          PlanEntry::Sub sub;
          const size_t a = field.find(','), b = field.find(',', a + 1);
          if (a == std::string::npos || b == std::string::npos) die("bad --plan subscription");
          sub.target = uint32_t(std::strtoul(field.c_str(), nullptr, 10));
          sub.individual = field[a + 1] == '1';
          sub.parts = field.substr(b + 1);
          entry.subs.push_back(std::move(sub));
        }
        if (tab == std::string::npos) break;
        start = tab + 1;
      }
      plan_.push_back(std::move(entry));
    }
    std::free(line);
    std::fclose(f);
    if (plan_.size() < o_.clients) {
      std::fprintf(stderr, "load-client: --plan has %zu lines for %zu clients\n", plan_.size(),
                   o_.clients);
      std::_Exit(2);
    }
    tracks_.resize(o_.clients);
    for (size_t i = 0; i < o_.clients; ++i) {
      tracks_[i].push_back(Track{0, {}, 0});  // the global target
      for (const PlanEntry::Sub& sub : plan_[i].subs)
        tracks_[i].push_back(Track{sub.target, {}, 0});
    }
  }

  std::string plan_request(size_t index) const {
    const std::string head = request_.substr(0, request_.size() - 2);  // without the blank line
    if (plan_[index].cookie.empty()) return request_;
    return head + "Cookie: " + plan_[index].cookie + "\r\n\r\n";
  }

  /// Checks a `42` frame's marker `~target~seq~t~` against client `index`'s subscriptions.
  void check_marker(size_t index, std::string_view p) {
    const size_t at = p.find("\"~");
    if (at == std::string_view::npos) return;
    uint64_t v[3] = {0, 0, 0};
    size_t i = at + 2;
    for (int k = 0; k < 3; ++k) {
      if (i >= p.size() || p[i] < '0' || p[i] > '9') return;
      while (i < p.size() && p[i] >= '0' && p[i] <= '9') v[k] = v[k] * 10 + uint64_t(p[i++] - '0');
      if (i >= p.size() || p[i] != '~') return;
      ++i;
    }
    last_mark_ns_ = read_ns_;
    const uint32_t target = uint32_t(v[0]);
    const uint64_t seq = v[1];
    for (Track& t : tracks_[index]) {
      if (t.target != target) continue;
      if (t.bits.size() <= seq / 64) t.bits.resize(seq / 64 + 1, 0);
      uint64_t& word = t.bits[seq / 64];
      const uint64_t bit = uint64_t{1} << (seq % 64);
      if (word & bit) {
        if (++soak_.duplicated <= 5) {
          std::fprintf(stderr, "load-client: client %zu: duplicate of target %u seq %llu\n", index,
                       target, static_cast<unsigned long long>(seq));
        }
        return;
      }
      word |= bit;
      ++t.distinct;
      ++soak_.delivered;
      latency_.add(read_ns_ - int64_t(v[2]));
      window_.add(read_ns_ - int64_t(v[2]));
      return;
    }
    if (++soak_.leaked <= 5) {
      std::fprintf(stderr, "load-client: client %zu: LEAK of target %u seq %llu\n", index, target,
                   static_cast<unsigned long long>(seq));
    }
  }

  std::vector<PlanEntry> plan_;
  std::vector<std::vector<Track>> tracks_;
  std::vector<uint64_t> totals_;
  SoakCounts soak_;
  Histogram latency_;
  Histogram window_;
  int64_t last_mark_ns_ = 0;
  int64_t last_ready_ns_ = 0;
  std::deque<std::pair<int64_t, size_t>> retries_;

  Options o_;
  std::string event_prefix_ = o_.event.empty() ? std::string() : "42[\"" + o_.event + "\"";
  std::vector<int64_t> latencies_ns_;
  std::vector<int64_t> opened_ns_;             // --connect-bench: first attempt per client
  std::vector<int64_t> connect_latencies_ns_;  // --connect-bench: first attempt to ready
  int64_t read_ns_ = 0;
  int epoll_ = -1;
  int control_ = -1;
  sockaddr_in addr_{};
  std::vector<Conn> conns_;
  std::vector<char> buffer_;
  std::string request_;
  std::string control_in_;
  std::deque<std::string> lines_;
  std::string stdin_in_;
  bool stdin_added_ = false;
  bool stdin_eof_ = false;
  size_t in_flight_ = 0;
  size_t ready_ = 0;
  size_t failures_ = 0;
  size_t closed_count_ = 0;
  int64_t last_close_ns_ = 0;
  CloseCounts close_counts_;
  uint64_t total_events_ = 0;
  uint64_t target_ = UINT64_MAX;
  int64_t done_at_ = 0;
  uint64_t rng_ = 0x9E3779B97F4A7C15ULL;
};

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

bool has_phase(const std::string& phases, const char* name) {
  return ("," + phases + ",").find("," + std::string(name) + ",") != std::string::npos;
}

void raise_nofile(size_t needed) {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
  if (needed > 19000 || needed > limit.rlim_cur) {
    std::fprintf(stderr, "load-client: %zu fds needed, limit %llu (and the bench uses <= 19000)\n",
                 needed, static_cast<unsigned long long>(limit.rlim_cur));
    std::_Exit(2);
  }
}

}  // namespace

/// The p-th percentile of sorted nanoseconds, in ms.
double percentile_ms(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0.0;
  return double(sorted[std::min(sorted.size() - 1, size_t(p / 100.0 * double(sorted.size())))]) /
         1e6;
}

/// --connect-bench: every client connects once (--concurrency attempts in flight), the rate and
/// each connection's time from its first attempt until it is ready (CONNECT reply, and the
/// --plan subscribe acks when the plan has any); then every connection is reset.
int run_connect_bench(Client& client) {
  phase_cpu().reset();
  const double seconds = client.connect_all();
  const std::vector<int64_t> l = client.connect_latencies();
  result(
      "RESULT connects connects=%zu seconds=%.3f per_s=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f "
      "failed=%zu\n",
      client.ready(), seconds, double(client.ready()) / seconds, percentile_ms(l, 50),
      percentile_ms(l, 99), l.empty() ? 0.0 : double(l.back()) / 1e6, client.failures());
  client.reset_all();
  return 0;
}

/// --no-control: connect everyone, then `expect T` commands from stdin (see the header).
int run_without_control(Client& client, const Options& o) {
  phase_cpu().reset();
  const double connect_s = client.connect_all();
  result("RESULT connect clients=%zu seconds=%.3f\n", o.clients, connect_s);
  result("RESULT interactive ready\n");
  std::fflush(stdout);
  for (;;) {
    const std::string line = client.next_command();
    if (line == "quit") break;
    // These start a measurement: their CPU is counted from here. Others (`check`, `window`,
    // `soak`) report on what happened since the previous RESULT line.
    for (const char* starts : {"expect ", "closed ", "ready "}) {
      if (line.rfind(starts, 0) == 0) phase_cpu().reset();
    }
    if (line.rfind("expect ", 0) == 0) {
      const uint64_t target = std::strtoull(line.c_str() + 7, nullptr, 10);
      const int64_t done = client.await_events(target, o.timeout_s * 1000);
      const std::vector<int64_t> l = client.take_latencies();
      auto pct = [&](double p) {
        if (l.empty()) return 0.0;
        return double(l[std::min(l.size() - 1, size_t(p / 100.0 * double(l.size())))]) / 1e6;
      };
      result(
          "RESULT expect total=%llu done_ns=%lld samples=%zu p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
          static_cast<unsigned long long>(client.total_events()), static_cast<long long>(done),
          l.size(), pct(50), pct(99), l.empty() ? 0.0 : double(l.back()) / 1e6);
    } else if (line.rfind("closed ", 0) == 0) {
      const size_t target = std::strtoull(line.c_str() + 7, nullptr, 10);
      const int64_t done = client.await_closed(target, o.timeout_s * 1000);
      const auto& k = client.close_counts();
      result(
          "RESULT closed total=%zu eio_close=%zu close_frames=%zu code_1001=%zu eof=%zu "
          "done_ns=%lld\n",
          client.closed(), k.eio_close, k.close_frames, k.code_1001, k.eof,
          static_cast<long long>(done));
    } else if (line == "soak" || line.rfind("check ", 0) == 0) {
      const char* name = "soak";
      if (line != "soak") {
        int quiet = 3000, timeout = 60000;
        std::sscanf(line.c_str() + 6, "%d %d", &quiet, &timeout);
        client.check(quiet, timeout);
        name = "check_soak";
      }
      const auto& k = client.soak();
      const Histogram& l = client.latency();
      result(
          "RESULT %s delivered=%llu lost=%llu duplicated=%llu leaked=%llu ready=%zu closed=%zu "
          "samples=%llu p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
          name, static_cast<unsigned long long>(k.delivered),
          static_cast<unsigned long long>(k.lost), static_cast<unsigned long long>(k.duplicated),
          static_cast<unsigned long long>(k.leaked), client.ready(), client.closed(),
          static_cast<unsigned long long>(l.samples()), l.percentile_ms(50), l.percentile_ms(99),
          l.max_ms());
    } else if (line == "window") {
      const Histogram w = client.take_window();
      result("RESULT window samples=%llu p50_ms=%.2f p99_ms=%.2f max_ms=%.2f last_ns=%lld\n",
             static_cast<unsigned long long>(w.samples()), w.percentile_ms(50), w.percentile_ms(99),
             w.max_ms(), static_cast<long long>(client.last_mark_ns()));
    } else if (line.rfind("total ", 0) == 0) {
      unsigned target = 0;
      unsigned long long count = 0;
      if (std::sscanf(line.c_str() + 6, "%u %llu", &target, &count) == 2)
        client.set_total(target, count);
      continue;  // no reply: the driver sends thousands
    } else if (line.rfind("stall ", 0) == 0) {
      const size_t index = std::strtoull(line.c_str() + 6, nullptr, 10);
      if (index < o.clients) client.stall(index);
      result("RESULT stall index=%zu\n", index);
    } else if (line.rfind("probe ", 0) == 0) {
      const size_t index = std::strtoull(line.c_str() + 6, nullptr, 10);
      result("RESULT probe index=%zu tcp_state=%d\n", index,
             index < o.clients ? client.tcp_state(index) : -1);
    } else if (line.rfind("ready ", 0) == 0) {
      size_t count = 0;
      int timeout = 60000;
      std::sscanf(line.c_str() + 6, "%zu %d", &count, &timeout);
      const int64_t done = client.await_ready(count, timeout);
      result("RESULT ready count=%zu done_ns=%lld closed=%zu failures=%zu\n", client.ready(),
             static_cast<long long>(done), client.closed(), client.failures());
    } else if (line.rfind("receivers ", 0) == 0) {
      const auto counts = client.receivers(uint32_t(std::strtoul(line.c_str() + 10, nullptr, 10)));
      std::string list;
      for (uint32_t n : counts) list += (list.empty() ? "" : ",") + std::to_string(n);
      result("RESULT receivers n=%zu counts=%s\n", counts.size(), list.c_str());
    } else {
      result("RESULT error unknown command\n");
    }
    std::fflush(stdout);
  }
  uint32_t lo = 0, hi = 0;
  client.per_connection_range(&lo, &hi);
  result(
      "RESULT check clients=%zu joined=%zu closed=%zu frames_total=%llu per_conn_min=%u "
      "per_conn_max=%u\n",
      o.clients, client.ready(), client.closed(),
      static_cast<unsigned long long>(client.total_events()), lo, hi);
  std::fflush(stdout);
  client.reset_all();
  return 0;
}

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string name = argv[i];
    if (name == "--browser-headers") {
      o.browser_headers = true;
      continue;
    }
    if (name == "--no-control") {
      o.no_control = true;
      continue;
    }
    if (name == "--reconnect") {
      o.reconnect = true;
      continue;
    }
    if (name == "--polling-upgrade") {
      o.polling_upgrade = true;
      continue;
    }
    if (name == "--connect-bench") {
      o.connect_bench = o.no_control = true;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "missing value for %s\n", name.c_str());
      return 2;
    }
    const char* v = argv[++i];
    if (name == "--host")
      o.host = v;
    else if (name == "--port")
      o.port = std::atoi(v);
    else if (name == "--control-port")
      o.control_port = std::atoi(v);
    else if (name == "--clients")
      o.clients = std::strtoul(v, nullptr, 10);
    else if (name == "--phases")
      o.phases = v;
    else if (name == "--settle-ms")
      o.settle_ms = std::atoi(v);
    else if (name == "--latency-reps")
      o.latency_reps = std::atoi(v);
    else if (name == "--burst-events")
      o.burst_events = std::strtoul(v, nullptr, 10);
    else if (name == "--burst-reps")
      o.burst_reps = std::atoi(v);
    else if (name == "--concurrency")
      o.concurrency = std::strtoul(v, nullptr, 10);
    else if (name == "--timeout-s")
      o.timeout_s = std::atoi(v);
    else if (name == "--event")
      o.event = v;
    else if (name == "--plan")
      o.plan = v;
    else if (name == "--retry-ms")
      o.retry_ms = std::atoi(v);
    else if (name == "--small-rcvbuf")
      o.small_rcvbuf = std::strtoul(v, nullptr, 10);
    else {
      std::fprintf(stderr, "unknown option %s\n", name.c_str());
      return 2;
    }
  }
  if (o.port <= 0 || o.clients == 0) {
    std::fprintf(stderr, "usage: load-client --port P --clients N [options]\n");
    return 2;
  }
  if (o.control_port == 0) o.control_port = o.port + 1;
  raise_nofile(o.clients + 16);

  Client client(o);
  if (o.connect_bench) return run_connect_bench(client);
  if (o.no_control) return run_without_control(client, o);
  client.connect_control();
  const std::string before = client.stats();
  phase_cpu().reset();
  const double connect_s = client.connect_all();
  result("RESULT connect clients=%zu seconds=%.3f\n", o.clients, connect_s);

  // The server's count must match before anything is measured.
  for (int i = 0;; ++i) {
    if (size_t(Client::field(client.stats(), "connected")) == o.clients) break;
    if (i > 200) {
      std::fprintf(stderr, "load-client: server does not report %zu connected\n", o.clients);
      return 1;
    }
    client.idle(20);
  }

  if (has_phase(o.phases, "idle")) {
    client.idle(o.settle_ms);
    const std::string after = client.stats();
    const long rss0 = Client::field(before, "rss_kb"), rssn = Client::field(after, "rss_kb");
    const long heap0 = Client::field(before, "heap_inuse"),
               heapn = Client::field(after, "heap_inuse");
    result(
        "RESULT idle clients=%zu rss0_kb=%ld rssN_kb=%ld rss_per_client_bytes=%.1f "
        "heap_inuse_per_client_bytes=%.1f heap_free_N=%ld\n",
        o.clients, rss0, rssn, double(rssn - rss0) * 1024.0 / double(o.clients),
        double(heapn - heap0) / double(o.clients), Client::field(after, "heap_free"));
  }

  // One `emit 1`: from the server's emit call until all N frames are here.
  auto latency_once = [&](int rep, double* c_out, double* s_out, double* e_out) {
    client.idle(100);
    phase_cpu().reset();
    const uint64_t target = client.total_events() + o.clients;
    client.command("emit 1");
    const int64_t done = client.await_events(target, 20000);
    const std::string emitted = client.await_line("emitted");
    const std::string sent = client.await_line("sent");
    const long long t0 = Client::field_ll(emitted, "t_ns");
    *c_out = double(done - t0) / 1e6;
    *s_out = double(Client::field_ll(sent, "t_ns") - t0) / 1e6;
    *e_out = double(Client::field_ll(emitted, "end_ns") - t0) / 1e6;
    result(
        "RESULT latency rep=%d clients=%zu client_ms=%.3f server_ms=%.3f emit_call_ms=%.3f "
        "recipients=%ld\n",
        rep, o.clients, *c_out, *s_out, *e_out, Client::field(emitted, "recipients"));
    std::fflush(stdout);
  };
  // One `emit K`: deliveries/s = N*K / time until all N*K frames are here.
  auto burst_once = [&](int rep, size_t events, double* c_out, double* s_out, double* rate_out) {
    client.idle(300);
    phase_cpu().reset();
    const uint64_t frames = uint64_t(o.clients) * events;
    const uint64_t target = client.total_events() + frames;
    client.command("emit " + std::to_string(events));
    const int64_t done = client.await_events(target, 60000);
    const std::string emitted = client.await_line("emitted");
    const std::string sent = client.await_line("sent", 60000);
    const long long t0 = Client::field_ll(emitted, "t_ns");
    *c_out = double(done - t0) / 1e6;
    *s_out = double(Client::field_ll(sent, "t_ns") - t0) / 1e6;
    const double e_ms = double(Client::field_ll(emitted, "end_ns") - t0) / 1e6;
    *rate_out = double(frames) / (*c_out / 1e3);
    result(
        "RESULT burst rep=%d clients=%zu events=%zu client_ms=%.3f server_ms=%.3f "
        "emit_call_ms=%.3f deliveries_per_s=%.0f\n",
        rep, o.clients, events, *c_out, *s_out, e_ms, *rate_out);
    std::fflush(stdout);
  };

  if (has_phase(o.phases, "latency")) {
    std::vector<double> client_ms, server_ms, emit_ms;
    for (int rep = 0; rep < o.latency_reps; ++rep) {
      double c = 0, s = 0, e = 0;
      latency_once(rep, &c, &s, &e);
      client_ms.push_back(c);
      server_ms.push_back(s);
      emit_ms.push_back(e);
    }
    result("RESULT latency_median clients=%zu client_ms=%.3f server_ms=%.3f emit_call_ms=%.3f\n",
           o.clients, median(client_ms), median(server_ms), median(emit_ms));
  }

  if (has_phase(o.phases, "burst")) {
    std::vector<double> rate, c_ms_all, s_ms_all;
    for (int rep = 0; rep < o.burst_reps; ++rep) {
      double c = 0, s = 0, r = 0;
      burst_once(rep, o.burst_events, &c, &s, &r);
      rate.push_back(r);
      c_ms_all.push_back(c);
      s_ms_all.push_back(s);
    }
    result(
        "RESULT burst_median clients=%zu events=%zu client_ms=%.3f server_ms=%.3f "
        "deliveries_per_s=%.0f\n",
        o.clients, o.burst_events, median(c_ms_all), median(s_ms_all), median(rate));
    client.idle(500);
    const std::string after = client.stats();
    result("RESULT after_burst rss_kb=%ld heap_inuse=%ld heap_free=%ld\n",
           Client::field(after, "rss_kb"), Client::field(after, "heap_inuse"),
           Client::field(after, "heap_free"));
  }

  if (has_phase(o.phases, "interactive")) {
    // Driven line by line from stdin (the run script alternates two clients, one per server, so
    // both servers are measured under the same machine load): `latency`, `burst K`, `quit`.
    result("RESULT interactive ready\n");
    std::fflush(stdout);
    int rep = 0;
    for (;;) {
      const std::string line = client.next_command();
      double a = 0, b = 0, c = 0;
      if (line == "latency") {
        latency_once(rep++, &a, &b, &c);
      } else if (line.rfind("burst ", 0) == 0) {
        burst_once(rep++, std::strtoul(line.c_str() + 6, nullptr, 10), &a, &b, &c);
      } else if (line == "quit") {
        break;
      } else {
        result("RESULT error unknown command\n");
        std::fflush(stdout);
      }
    }
  }

  uint32_t lo = 0, hi = 0;
  client.per_connection_range(&lo, &hi);
  result(
      "RESULT check clients=%zu joined=%zu closed=%zu frames_total=%llu per_conn_min=%u "
      "per_conn_max=%u\n",
      o.clients, client.ready(), client.closed(),
      static_cast<unsigned long long>(client.total_events()), lo, hi);
  std::fflush(stdout);
  // The server exits first, with every session still open (nothing is torn down one by one, and a
  // heap profile of the server sees the sessions live); then the sockets are reset.
  client.command("quit");
  client.await_control_eof(3000);
  client.reset_all();
  return 0;
}
