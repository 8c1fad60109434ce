// WebSocketConnection::abort() against a peer that does not read (a slow consumer): the TCP
// connection is reset, so the output still queued in the kernel is dropped and the peer is told,
// instead of a FIN waiting behind megabytes that the peer may never read.
#include "gateway/websocket_connection.hpp"

#include <doctest/doctest.h>
#include <errno.h>
#include <sys/socket.h>

#include <asio.hpp>
#include <chrono>
#include <string>

using namespace steedos::gateway;

TEST_CASE("WebSocketConnection::abort resets a connection whose peer stopped reading") {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket peer(io);  // the client: a small receive buffer, not read until the end
  const int small = 16 * 1024;
  peer.open(asio::ip::tcp::v4());
  REQUIRE(setsockopt(peer.native_handle(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
  peer.connect(acceptor.local_endpoint());
  TcpSocket server_side(io.get_executor());
  acceptor.accept(server_side);

  auto scheduler = std::make_shared<WriteScheduler>(io);
  auto connection = std::make_shared<WebSocketConnection>(std::move(server_side),
                                                          WebSocketConnection::Limits{}, scheduler);
  connection->start();
  const size_t sent = 16 * 1024 * 1024;  // more than the kernel's buffers on both sides hold
  connection->send_raw(std::string(sent, 'x'));
  io.run_for(std::chrono::milliseconds(300));
  REQUIRE(connection->has_pending_output());  // the peer's window is full: output is queued

  connection->abort();
  io.run_for(std::chrono::milliseconds(100));

  // Read what arrived; a reset ends it with ECONNRESET, a plain close would deliver everything
  // the kernel held and then EOF.
  size_t received = 0;
  int error = 0;
  std::string buffer(64 * 1024, '\0');
  for (;;) {
    const ssize_t n = recv(peer.native_handle(), buffer.data(), buffer.size(), 0);
    if (n > 0) {
      received += size_t(n);
      continue;
    }
    error = n < 0 ? errno : 0;
    break;
  }
  CHECK(error == ECONNRESET);
  CHECK(received < sent);
}
