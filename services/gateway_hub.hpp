#pragma once
// The ClientHub of a real node: a Socket.IO namespace of the gateway (gateway/socketio_server.hpp).
// A thin translation; the rules live in the service.
#include <functional>

#include "gateway/http_server.hpp"
#include "gateway/socketio_server.hpp"
#include "services/client_hub.hpp"

namespace steedos::services {

class GatewayHub final : public ClientHub {
 public:
  /// `nsp` is owned by its SocketIoServer and outlives this hub; so does `server` (the one the
  /// namespace is mounted on; null: after_writes() calls at once).
  explicit GatewayHub(gateway::Namespace& nsp, gateway::GatewayServer* server = nullptr)
      : nsp_(nsp), server_(server) {}
  GatewayHub(const GatewayHub&) = delete;
  GatewayHub& operator=(const GatewayHub&) = delete;

  void set_handlers(ClientHandlers handlers) override;
  size_t deliver_to(const std::vector<std::string>& rooms, std::string_view event,
                    std::string_view arg_json) override;
  size_t deliver_all(std::string_view event, std::string_view arg_json) override;
  void for_each_client(const std::function<void(Client&)>& fn) override;
  void disconnect(const std::vector<std::string>& ids) override;
  size_t room_count() const override { return nsp_.room_count(); }
  void set_recovery_handlers(RecoveryHandlers handlers) override;
  size_t deliver_at(const std::vector<std::string>* rooms,
                    const std::vector<std::string>& except_rooms, std::string_view event,
                    std::string_view args, std::string offset) override;
  void drop_kept(const std::function<bool(const KeptClient&)>& match,
                 std::function<void(size_t)> done) override;
  void after_writes(std::function<void()> fn) override;

 private:
  gateway::Namespace& nsp_;
  gateway::GatewayServer* server_;
};

}  // namespace steedos::services
