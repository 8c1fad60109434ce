#include "probe.hpp"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <string>

#include "services/config.hpp"

namespace steedos::app {

namespace {

constexpr int kTimeoutSeconds = 3;

/// The address a local client reaches a listener on: a wildcard bind is reached on loopback.
std::string local_address(const std::string& bind_host) {
  if (bind_host.empty() || bind_host == "0.0.0.0") return "127.0.0.1";
  if (bind_host == "::") return "::1";
  return bind_host;
}

/// Connects to host:port with send/receive timeouts (Linux applies SO_SNDTIMEO to connect).
/// Returns the socket, or -1 with `error` set.
int connect_to(const std::string& host, int port, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0) {
    error = std::string("cannot resolve ") + host + ": " + ::gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    timeval timeout{kTimeoutSeconds, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    error = std::string("connect: ") + std::strerror(errno);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(found);
  return fd;
}

/// Sends a GET and reads the whole answer (Connection: close). Empty with `error` on failure.
std::string http_get(int fd, const std::string& host, int port, const std::string& path,
                     std::string& error) {
  const std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + host + ":" +
                              std::to_string(port) + "\r\nConnection: close\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    error = std::string("send: ") + std::strerror(errno);
    return {};
  }
  std::string answer;
  char buffer[4096];
  while (answer.size() < 65536) {
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n == 0) break;
    if (n < 0) {
      if (answer.empty()) error = std::string("no answer: ") + std::strerror(errno);
      break;
    }
    answer.append(buffer, static_cast<size_t>(n));
  }
  return answer;
}

/// "HTTP/1.1 200 OK" -> 200; 0 when the status line is not HTTP.
int status_code(const std::string& answer) {
  if (answer.rfind("HTTP/1.", 0) != 0 || answer.size() < 12) return 0;
  const auto code = answer.substr(9, 3);
  if (code.find_first_not_of("0123456789") != std::string::npos) return 0;
  return std::stoi(code);
}

std::string body_of(const std::string& answer) {
  const auto end = answer.find("\r\n\r\n");
  return end == std::string::npos ? std::string() : answer.substr(end + 4);
}

}  // namespace

bool probe_requested(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--probe") == 0) return true;
  }
  return false;
}

int run_probe(int argc, char** argv) {
  std::string which;
  std::string config_path;
  for (int i = 1; i < argc; ++i) {
    const bool has_value = i + 1 < argc;
    if (std::strcmp(argv[i], "--probe") == 0 && has_value) {
      which = argv[++i];
    } else if (std::strcmp(argv[i], "--config") == 0 && has_value) {
      config_path = argv[++i];
    } else if (std::strcmp(argv[i], "--log-format") == 0 && has_value) {
      ++i;  // the node's option: irrelevant to a probe
    } else {
      std::cerr << "probe: unexpected argument " << argv[i]
                << " (usage: --probe health|ready [--config FILE])\n";
      return 2;
    }
  }
  if (which != "health" && which != "ready") {
    std::cerr << "probe: --probe takes health or ready (got \"" << which << "\")\n";
    return 2;
  }
  services::Config config;
  try {
    config = services::load_config(config_path, services::read_environment());
  } catch (const services::ConfigError& e) {
    std::cerr << "probe: configuration error: " << e.what() << "\n";
    return 2;
  }
  const auto& gateway = config.gateway;
  const std::string host = local_address(gateway.host);
  const std::string& path = which == "health" ? gateway.health_path : gateway.ready_path;
  const std::string url = "http://" +
                          (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                          std::to_string(gateway.port) + path;

  std::string error;
  const int fd = connect_to(host, gateway.port, error);
  if (fd < 0) {
    std::cout << "probe: GET " << url << ": " << error << "\n";
    return 1;
  }
  const std::string answer = http_get(fd, host, gateway.port, path, error);
  ::close(fd);
  const int status = status_code(answer);
  if (status == 0) {
    std::cout << "probe: GET " << url << ": " << (error.empty() ? "not an HTTP answer" : error)
              << "\n";
    return 1;
  }
  std::cout << "probe: GET " << url << ": " << status << " " << body_of(answer) << "\n";
  return status == 200 ? 0 : 1;
}

}  // namespace steedos::app
