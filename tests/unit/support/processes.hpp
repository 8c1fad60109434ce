#pragma once
// For tests that start real servers: loopback ports, and a server process started quietly and
// waited for.
#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace steedos::testing {

/// A loopback port nobody listens on right now.
inline unsigned short free_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io,
                                   asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return acceptor.local_endpoint().port();
}

inline bool accepts_tcp(unsigned short port) {
  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  asio::error_code ec;
  socket.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  return !ec;
}

/// Starts `args` (args[0]: the executable) with stdout and stderr to /dev/null, and waits until
/// it accepts TCP connections on `port` (at most `timeout`). Returns its pid.
inline pid_t spawn_server(std::vector<std::string> args, unsigned short port,
                          std::chrono::milliseconds timeout) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE_MESSAGE(rc == 0, "posix_spawn ", args[0], " failed: ", rc);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!accepts_tcp(port)) {
    REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline, args[0], " did not start");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pid;
}

}  // namespace steedos::testing
