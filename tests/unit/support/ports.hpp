#pragma once
// Loopback ports for tests that start real servers.
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

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

}  // namespace steedos::testing
