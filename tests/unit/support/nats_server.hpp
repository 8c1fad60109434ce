#pragma once
// A real nats-server for tests (Debian's /usr/sbin/nats-server, or NATS_SERVER_BIN), started on
// a loopback port, optionally with JetStream storing in a fresh temporary directory, and stopped
// by PID.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "tests/unit/support/processes.hpp"

extern char** environ;

namespace steedos::testing {

inline std::string nats_server_binary() {
  const char* env = std::getenv("NATS_SERVER_BIN");
  return env != nullptr && *env != '\0' ? env : "/usr/sbin/nats-server";
}

inline bool have_nats_server() {
  return ::access(nats_server_binary().c_str(), X_OK) == 0;
}

struct NatsServerOptions {
  unsigned short port = 0;  // 0: a free one
  std::string config_file;  // -c
  bool jetstream = false;   // -js, storing in a temporary directory removed at the end
};

/// A server with JetStream, on a free port.
inline NatsServerOptions with_jetstream() {
  NatsServerOptions options;
  options.jetstream = true;
  return options;
}

class NatsServer {
 public:
  explicit NatsServer(NatsServerOptions options = {})
      : port_(options.port != 0 ? options.port : free_port()),
        config_(std::move(options.config_file)) {
    if (options.jetstream) {
      char templ[] = "/tmp/steedos-js-test-XXXXXX";
      const char* dir = ::mkdtemp(templ);
      REQUIRE(dir != nullptr);
      store_dir_ = dir;
    }
    start();
  }
  /// On `port` (to start again on the same one), plain.
  explicit NatsServer(unsigned short port) : NatsServer(NatsServerOptions{port, {}, false}) {}
  ~NatsServer() {
    kill();
    std::error_code ignored;
    if (!store_dir_.empty()) std::filesystem::remove_all(store_dir_, ignored);
  }
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  /// Starts it (again): same port, same configuration and store directory.
  void start() {
    std::vector<std::string> args{nats_server_binary(), "-a", "127.0.0.1", "-p",
                                  std::to_string(port_)};
    if (!config_.empty()) args.insert(args.end(), {"-c", config_});
    if (!store_dir_.empty()) args.insert(args.end(), {"-js", "-sd", store_dir_});
    pid_ = spawn_server(std::move(args), port_, std::chrono::seconds(5));
  }

  /// SIGKILL, as on a crash: the clients see the TCP connection drop; what the server had not
  /// written out is lost.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);  // a stopped process is killed as well, but not reaped before
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  unsigned short port() const { return port_; }
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  /// SIGSTOP / SIGCONT: the kernel still accepts connections, the server answers nothing.
  void freeze() { ::kill(pid_, SIGSTOP); }
  void thaw() { ::kill(pid_, SIGCONT); }

 private:
  unsigned short port_;
  std::string config_;
  std::string store_dir_;
  pid_t pid_ = -1;
};

}  // namespace steedos::testing

/// Ends the test case, with a note, where there is no nats-server to start.
#define SKIP_WITHOUT_NATS_SERVER()                                                  \
  if (!steedos::testing::have_nats_server()) {                                      \
    MESSAGE("skipped: no nats-server at " << steedos::testing::nats_server_binary() \
                                          << " (set NATS_SERVER_BIN to override)"); \
    return;                                                                         \
  }
