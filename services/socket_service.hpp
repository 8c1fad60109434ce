#pragma once
// The Steedos `socket` service (spec: gateway-contract.md): Moleculer events and actions on one
// side, the Socket.IO namespace `/` on the other. Authentication on CONNECT, tenant rooms,
// event mapping and the operator actions are wired here; the rules themselves are pure
// functions in services/steedos_*.hpp.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "gateway/socketio_server.hpp"
#include "moleculer/broker.hpp"
#include "services/config.hpp"
#include "services/steedos_auth_rules.hpp"

namespace steedos::services {

using moleculer::ActionHandler;
using moleculer::ActionSchema;
using moleculer::Broker;
using moleculer::CallOptions;
using moleculer::Context;
using moleculer::ContextPtr;
using moleculer::EmitOptions;
using moleculer::EventSchema;
using moleculer::Outcome;
using moleculer::Respond;
using moleculer::ServiceSchema;

/// The event patterns of the contract, §5, in the order they are advertised.
const std::vector<std::string>& socket_event_patterns();

class SocketService {
 public:
  /// Registers the CONNECT hook and client event handlers on `io`'s namespace `/`.
  SocketService(Broker& broker, gateway::SocketIoServer& io, const Config& config);
  SocketService(const SocketService&) = delete;
  SocketService& operator=(const SocketService&) = delete;

  /// The Moleculer service to add to the broker (events of §5, actions of §6).
  ServiceSchema schema();
  /// The `socket.stats` reply.
  Json stats() const;
  /// Where `socket.stats` reads `refusedOrigins`: the gateway's count of requests refused for
  /// their Origin (gateway-contract.md §2.1). Without it the key reads 0.
  void count_refused_origins(std::function<uint64_t()> count) {
    refused_origins_ = std::move(count);
  }

 private:
  struct Session;
  struct Counters {
    uint64_t events_in = 0, events_out = 0, rejected = 0, refused = 0;
    uint64_t auth_calls = 0, auth_failures = 0;
  };

  void authenticate(gateway::Socket& socket, const Json& auth,
                    std::function<void(gateway::ConnectResult)> decide);
  void on_connected(gateway::Socket& socket);
  void on_disconnected(gateway::Socket& socket);
  void handle_rooms(gateway::Socket& socket, const gateway::RawArgs& args, gateway::Ack ack,
                    bool subscribe);
  void handle_moleculer_event(const ContextPtr& ctx);
  void fan_out_to_other_gateways(const Context& ctx);
  void logout(const std::string& token);
  size_t deliver(const std::string& event, const std::string& args_json,
                 const std::vector<std::string>* rooms);

  static std::shared_ptr<Session> session_of(gateway::Socket& socket);

  Broker& broker_;
  gateway::Namespace& nsp_;
  Config config_;
  rules::AuthCache auth_cache_;
  Counters counters_;
  std::map<std::string, std::set<std::string>> sockets_by_token_;  // token -> socket ids
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::function<uint64_t()> refused_origins_;
};

}  // namespace steedos::services
