// gateway.ioThreads: ParallelFor runs an index range on several threads at once, and a
// WriteScheduler with two write threads delivers every queued frame, in order, to every
// connection, while what a write result means (a closed peer, a full socket) is still handled
// on the loop thread. Real loopback TCP connections; scripts/tsan.sh runs this file under
// ThreadSanitizer.
#include <doctest/doctest.h>
#include <sys/socket.h>

#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gateway/outgoing.hpp"
#include "gateway/parallel_for.hpp"
#include "gateway/websocket_connection.hpp"

using namespace steedos::gateway;
using Clock = std::chrono::steady_clock;

TEST_CASE("ParallelFor runs every index once, on the caller and a helper at the same time") {
  ParallelFor pool(2);
  CHECK(pool.threads() == 2);
  constexpr size_t kCount = 5000;
  std::vector<std::atomic<int>> runs(kCount);
  std::atomic<bool> helper_ran{false};
  const auto caller = std::this_thread::get_id();
  std::atomic<bool> waited_out{false};
  pool.run(
      kCount,
      [&](size_t i) {
        runs[i].fetch_add(1);
        if (std::this_thread::get_id() != caller) {
          helper_ran = true;
        } else if (i == 0) {
          // The caller holds item 0 until the helper has taken an item: proof that the two
          // run at once, not one after the other.
          const auto deadline = Clock::now() + std::chrono::seconds(5);
          while (!helper_ran && Clock::now() < deadline) std::this_thread::yield();
          waited_out = !helper_ran;
        }
      },
      8);
  CHECK_FALSE(waited_out.load());
  size_t once = 0;
  for (auto& r : runs) once += r.load() == 1 ? 1 : 0;
  CHECK(once == kCount);

  // The pool serves round after round.
  std::atomic<size_t> sum{0};
  for (int round = 0; round < 50; ++round) {
    pool.run(
        100, [&](size_t i) { sum += i; }, 4);
  }
  CHECK(sum == 50 * (99 * 100 / 2));
}

TEST_CASE("ParallelFor with one thread is a plain loop on the caller") {
  ParallelFor pool(1);
  CHECK(pool.threads() == 1);
  std::set<std::thread::id> threads;
  size_t count = 0;
  pool.run(1000, [&](size_t) {
    threads.insert(std::this_thread::get_id());
    ++count;
  });
  CHECK(count == 1000);
  CHECK(threads == std::set<std::thread::id>{std::this_thread::get_id()});
}

namespace {

/// Records what the connection reports, and on which thread.
struct RecordingHandler final : WebSocketConnection::Handler {
  std::vector<uint16_t> closes;
  std::set<std::thread::id> threads;
  void on_ws_message(WebSocketConnection&, std::string_view, bool) override {}
  void on_ws_closed(WebSocketConnection&, uint16_t code) override {
    closes.push_back(code);
    threads.insert(std::this_thread::get_id());
  }
};

/// A loopback TCP pair: the server side as a WebSocketConnection, the client side read raw.
struct Pair {
  asio::ip::tcp::socket client;
  std::shared_ptr<WebSocketConnection> server;
  RecordingHandler handler;
  std::string received;
};

std::unique_ptr<Pair> connect_pair(asio::io_context& io, asio::ip::tcp::acceptor& acceptor,
                                   const std::shared_ptr<WriteScheduler>& scheduler,
                                   int client_receive_buffer = 0) {
  auto pair = std::unique_ptr<Pair>(new Pair{asio::ip::tcp::socket(io), nullptr, {}, {}});
  pair->client.open(asio::ip::tcp::v4());
  if (client_receive_buffer > 0) {
    setsockopt(pair->client.native_handle(), SOL_SOCKET, SO_RCVBUF, &client_receive_buffer,
               sizeof client_receive_buffer);
  }
  pair->client.connect(acceptor.local_endpoint());
  TcpSocket server_side(io.get_executor());
  acceptor.accept(server_side);
  pair->server = std::make_shared<WebSocketConnection>(std::move(server_side),
                                                       WebSocketConnection::Limits{}, scheduler);
  pair->server->set_handler(&pair->handler);
  pair->server->start();
  pair->client.non_blocking(true);
  return pair;
}

/// Reads what has arrived at the client side (non-blocking).
void drain(Pair& pair) {
  char buffer[65536];
  for (;;) {
    const ssize_t n = recv(pair.client.native_handle(), buffer, sizeof buffer, 0);
    if (n <= 0) return;
    pair.received.append(buffer, static_cast<size_t>(n));
  }
}

/// Runs the loop and reads the clients until every one holds `bytes`, or 5 s.
bool run_until_received(asio::io_context& io, std::vector<std::unique_ptr<Pair>>& pairs,
                        size_t bytes) {
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (Clock::now() < deadline) {
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
    bool all = true;
    for (auto& pair : pairs) {
      drain(*pair);
      all = all && pair->received.size() >= bytes;
    }
    if (all) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("two write threads deliver every packet of a turn, in order, to every connection") {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  auto scheduler = std::make_shared<WriteScheduler>(io, 2);
  CHECK(scheduler->parallel());
  CHECK(scheduler->write_threads() == 2);

  std::vector<std::unique_ptr<Pair>> pairs;
  for (int i = 0; i < 300; ++i) pairs.push_back(connect_pair(io, acceptor, scheduler));

  // Three packets in one turn, each shared by every connection; then a flush on two threads.
  const auto first = OutgoingPacket::messages({{false, "first"}});
  const auto second = OutgoingPacket::messages({{false, std::string(3000, 's')}});
  const auto third = OutgoingPacket::control('6');
  for (auto& pair : pairs) pair->server->send(first);
  for (auto& pair : pairs) pair->server->send(second);
  for (auto& pair : pairs) pair->server->send(third);
  // Nothing is written from inside send() with several write threads: all waits for the flush.
  for (auto& pair : pairs) CHECK(pair->server->has_pending_output());
  // A write-completion callback waits for the flush (the service times a broadcast with it).
  bool called = false;
  bool written_when_called = false;
  scheduler->after_flush([&] {
    called = true;
    written_when_called =
        !pairs.front()->server->has_pending_output() && !pairs.back()->server->has_pending_output();
  });
  CHECK_FALSE(called);
  scheduler->flush_now();
  CHECK(called);
  CHECK(written_when_called);
  // With nothing queued it is called at once.
  bool at_once = false;
  scheduler->after_flush([&] { at_once = true; });
  CHECK(at_once);

  const std::string expected =
      first->websocket_frames() + second->websocket_frames() + third->websocket_frames();
  REQUIRE(run_until_received(io, pairs, expected.size()));
  size_t exact = 0;
  for (auto& pair : pairs) exact += pair->received == expected ? 1 : 0;
  CHECK(exact == pairs.size());
  for (auto& pair : pairs) CHECK_FALSE(pair->server->has_pending_output());
  for (auto& pair : pairs) pair->server->abort();
  io.restart();
  io.run_for(std::chrono::milliseconds(20));
}

TEST_CASE("a parallel flush reports a reset peer and waits for a full socket on the loop thread") {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  auto scheduler = std::make_shared<WriteScheduler>(io, 2);

  std::vector<std::unique_ptr<Pair>> pairs;
  for (int i = 0; i < 200; ++i) pairs.push_back(connect_pair(io, acceptor, scheduler));
  // Every tenth client goes away with a reset before the flush; the connection has not read it.
  for (size_t i = 0; i < pairs.size(); i += 10) {
    pairs[i]->client.set_option(asio::socket_base::linger(true, 0));
    pairs[i]->client.close();
  }
  // One more client with a small receive window that does not read until later.
  pairs.push_back(connect_pair(io, acceptor, scheduler, 8 * 1024));
  Pair& slow = *pairs.back();

  const auto packet = OutgoingPacket::messages({{false, "event"}});
  const auto big = OutgoingPacket::messages({{true, std::string(16 * 1024 * 1024, 'b')}});
  for (auto& pair : pairs) pair->server->send(packet);
  slow.server->send(big);
  // The reset reaches the server side's kernel before the flush writes to it.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  scheduler->flush_now();
  // The big packet does not fit: the slow connection still has output queued and waits for its
  // socket rather than failing.
  CHECK(slow.server->has_pending_output());
  CHECK(slow.server->is_open());

  // A write to a reset peer fails at once or on the next write; either way the handler hears of
  // it on this thread (abnormal closure, 1006), and the others are unaffected.
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  auto closed = [&] {
    size_t n = 0;
    for (size_t i = 0; i + 1 < pairs.size(); i += 10) n += pairs[i]->handler.closes.size();
    return n;
  };
  while (closed() < 20 && Clock::now() < deadline) {
    for (size_t i = 0; i + 1 < pairs.size(); i += 10) pairs[i]->server->send(packet);
    scheduler->flush_now();
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
  CHECK(closed() == 20);
  for (size_t i = 0; i + 1 < pairs.size(); ++i) {
    if (i % 10 == 0) {
      CHECK(pairs[i]->handler.closes == std::vector<uint16_t>{ws_close::kAbnormal});
      CHECK(pairs[i]->handler.threads == std::set<std::thread::id>{std::this_thread::get_id()});
    } else {
      CHECK(pairs[i]->handler.closes.empty());
      CHECK(pairs[i]->server->is_open());
    }
  }

  // The slow client reads now: the rest of the big packet follows.
  std::vector<std::unique_ptr<Pair>> just_slow;
  just_slow.push_back(std::move(pairs.back()));
  pairs.pop_back();
  const size_t expected = packet->websocket_frames().size() + big->websocket_frames().size();
  REQUIRE(run_until_received(io, just_slow, expected));
  CHECK(just_slow[0]->received == packet->websocket_frames() + big->websocket_frames());
  CHECK(just_slow[0]->handler.closes.empty());
  for (auto& pair : pairs) pair->server->abort();
  just_slow[0]->server->abort();
  io.restart();
  io.run_for(std::chrono::milliseconds(20));
}
