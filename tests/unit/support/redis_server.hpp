#pragma once
// A real redis-server for tests (Debian's /usr/bin/redis-server), started on a free loopback
// port with persistence off and stopped by PID, plus redis-cli to look at it.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <chrono>
#include <cstdio>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/support/processes.hpp"
#include "transport/redis_options.hpp"

extern char** environ;

namespace steedos::testing {

using namespace std::chrono_literals;

inline const char* kRedisServer = "/usr/bin/redis-server";
inline const char* kRedisCli = "/usr/bin/redis-cli";

inline bool have_redis() {
  return ::access(kRedisServer, X_OK) == 0 && ::access(kRedisCli, X_OK) == 0;
}

/// Runs a command through the shell and returns its standard output.
inline std::string shell(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
  ::pclose(pipe);
  return out;
}

inline std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

/// A redis-server child on 127.0.0.1, stopped by PID.
class RedisServer {
 public:
  explicit RedisServer(std::vector<std::string> extra = {}, bool tls = false,
                       std::string cli_flags = {})
      : port_(free_port()), extra_(std::move(extra)), tls_(tls), cli_flags_(std::move(cli_flags)) {
    start();
  }
  ~RedisServer() { kill(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  void start() {
    const std::string port = std::to_string(port_);
    std::vector<std::string> args{kRedisServer, "--bind",       "127.0.0.1", "--save",
                                  "",           "--appendonly", "no"};
    if (tls_) {
      args.insert(args.end(), {"--port", "0", "--tls-port", port});
    } else {
      args.insert(args.end(), {"--port", port});
    }
    args.insert(args.end(), extra_.begin(), extra_.end());
    pid_ = spawn_server(std::move(args), port_, 10s);
  }

  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  void stop_process() { ::kill(pid_, SIGSTOP); }
  void continue_process() { ::kill(pid_, SIGCONT); }

  unsigned short port() const { return port_; }

  /// redis-cli against this server (plain servers only); `auth` e.g. "-a pw".
  std::string cli(const std::string& args, const std::string& auth = {}) const {
    return shell(std::string(kRedisCli) + " -p " + std::to_string(port_) + " " + cli_flags_ + " " +
                 auth + " --no-auth-warning " + args + " 2>&1");
  }

  transport::RedisOptions options() const {
    transport::RedisOptions o;
    o.endpoints = {transport::RedisEndpoint{"127.0.0.1", port_}};
    o.connect_timeout_ms = 5000;
    o.reconnect_min_ms = 50;
    o.reconnect_max_ms = 500;
    return o;
  }

 private:
  unsigned short port_;
  std::vector<std::string> extra_;
  bool tls_;
  std::string cli_flags_;
  pid_t pid_ = -1;
};

/// The channels the server holds (PUBSUB CHANNELS).
inline std::set<std::string> redis_channels(const RedisServer& server,
                                            const std::string& auth = {}) {
  const auto list = lines(server.cli("PUBSUB CHANNELS", auth));
  return std::set<std::string>(list.begin(), list.end());
}

}  // namespace steedos::testing
