// The gateway's CPU per delivery of a room broadcast (Namespace::send_to), without sockets:
// 10,000 Socket.IO sockets on engines that accept and drop every packet, each in the 3 rooms of
// a Steedos client (`<space>-space` shared by 2,000, `<space>-me-<user>` and
// `<space>-notification-change-<user>` shared by 200), then 50 broadcasts per case, best of 30
// repetitions in ns per delivery. It isolates what the room index costs on the delivery path
// (walking the members, de-duplicating a union); the engine's write is not in it.
//
//   build/room-delivery-bench
#include <algorithm>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "gateway/socketio_server.hpp"

using namespace steedos::gateway;

namespace {

class DroppingEngine : public EngineSocket {
 public:
  explicit DroppingEngine(std::string id) : id_(std::move(id)) {}
  std::string_view id() const override { return id_; }
  TransportKind transport() const override { return TransportKind::WebSocket; }
  const HandshakeInfo& handshake() const override { return handshake_; }
  void drop_handshake_headers() override {}
  bool send(const OutgoingPacketPtr&, bool) override { return true; }
  void close(const std::string&) override {}
  size_t buffered_bytes() const override { return 0; }

 private:
  std::string id_;
  HandshakeInfo handshake_;
};

}  // namespace

int main() {
  asio::io_context io;
  SocketIoServer server(io);
  Namespace& nsp = server.of("/");
  constexpr int kSockets = 10000;
  std::vector<std::unique_ptr<DroppingEngine>> engines;
  for (int i = 0; i < kSockets; ++i) {
    engines.push_back(std::make_unique<DroppingEngine>("e" + std::to_string(i)));
    server.on_open(*engines.back());
    server.on_message(*engines.back(), "0", false);
  }
  int i = 0;
  nsp.for_each_socket([&](Socket& socket) {
    const std::string space = "S" + std::to_string(i % 5);
    const std::string user = "u" + std::to_string(i % 50);
    socket.join(space + "-space");
    socket.join(space + "-me-" + user);
    socket.join(space + "-notification-change-" + user);
    ++i;
  });
  const OutgoingPacketPtr packet = nsp.encode_event("x", {"1"});
  struct Case {
    const char* name;
    std::vector<std::string> rooms;
  };
  const std::vector<Case> cases = {
      {"one room of 2,000", {"S0-space"}},
      {"one room of 200", {"S0-me-u0"}},
      {"union of 3 rooms", {"S0-me-u0", "S0-notification-change-u0", "S0-space"}},
  };
  for (const auto& c : cases) {
    double best = 1e18;
    size_t recipients = 0;
    for (int repetition = 0; repetition < 30; ++repetition) {
      const auto start = std::chrono::steady_clock::now();
      size_t total = 0;
      for (int k = 0; k < 50; ++k) total += nsp.send_to(c.rooms, packet);
      const auto elapsed = std::chrono::steady_clock::now() - start;
      recipients = total / 50;
      best = std::min(best, std::chrono::duration<double, std::nano>(elapsed).count() / total);
    }
    std::printf("RESULT case=\"%s\" recipients=%zu ns_per_delivery=%.2f\n", c.name, recipients,
                best);
  }
  for (auto& engine : engines) server.on_close(*engine, "transport close");
}
