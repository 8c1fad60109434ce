#include "services/gateway_hub.hpp"

#include <utility>

namespace steedos::services {

namespace {

using gateway::RawArgs;

// A Client over a gateway socket, made on the stack for the length of one call.
class SocketClient final : public Client {
 public:
  explicit SocketClient(gateway::Socket& socket) : socket_(socket) {}

  const std::string& id() const override { return socket_.id(); }
  ClientTransport transport() const override {
    return socket_.transport() == gateway::TransportKind::Polling ? ClientTransport::Polling
                                                                  : ClientTransport::WebSocket;
  }
  std::optional<std::string_view> header(std::string_view name) const override {
    const auto& headers = socket_.handshake().headers;
    auto it = headers.find(name);
    if (it == headers.end()) return std::nullopt;
    return it->second;
  }

  // This hub is the only writer of the slot, and it writes only ClientSessions: no dynamic_cast
  // (connection_counts reads every socket's session on each scrape).
  ClientSession* session() const override {
    return static_cast<ClientSession*>(socket_.data().get());
  }
  void set_session(std::unique_ptr<ClientSession> session) override {
    socket_.data() = std::move(session);
  }

  std::vector<std::string> rooms() const override { return socket_.rooms(); }
  bool in_room(const std::string& room) const override { return socket_.in_room(room); }
  void join(const std::string& room) override { socket_.join(room); }
  void leave(const std::string& room) override { socket_.leave(room); }

  void emit(std::string_view event, const std::vector<std::string_view>& args_json) override {
    socket_.emit(event, args_json);
  }
  bool recovered() const override { return socket_.recovered(); }

 private:
  gateway::Socket& socket_;
};

}  // namespace

void GatewayHub::set_handlers(ClientHandlers handlers) {
  if (handlers.connect) {
    nsp_.set_connect_hook([connect = std::move(handlers.connect)](
                              gateway::Socket& socket, const Json& auth,
                              std::function<void(gateway::ConnectResult)> decide) {
      SocketClient client(socket);
      connect(
          client, auth,
          [socket = socket.weak_from_this(), decide = std::move(decide)](ConnectDecision decision) {
            // Attached before the accept, so the connection handler finds it. A socket gone
            // or no longer connecting will not be accepted: its session is freed here.
            auto target = socket.lock();
            if (decision.accept && target &&
                target->state() == gateway::Socket::State::Connecting) {
              target->data() = std::move(decision.session);
            }
            decide(decision.accept
                       ? gateway::ConnectResult::accept()
                       : gateway::ConnectResult::close_transport(std::move(decision.close_reason)));
            // Decided on the loop's thread, so applied by now. A socket the gateway did not
            // connect after all (its connection was closing) drops the session at once: a
            // session lives only in a connected socket, where the service can still reach it
            // (~SocketService), never in one that might outlive the service.
            // One that waits for its recovery store keeps it: the store's answer settles it.
            if (target && target->state() == gateway::Socket::State::Connecting &&
                !target->restoring()) {
              target->data().reset();
            }
          });
    });
  }
  if (handlers.connected) {
    nsp_.on_connection([connected = std::move(handlers.connected)](gateway::Socket& socket) {
      SocketClient client(socket);
      connected(client);
    });
  }
  if (handlers.disconnected) {
    nsp_.on_disconnect([disconnected = std::move(handlers.disconnected)](
                           gateway::Socket& socket, const std::string& reason) {
      SocketClient client(socket);
      disconnected(client, reason);
    });
  }
  for (auto& [event, handler] : handlers.events) {
    nsp_.on(event, [handler = std::move(handler)](gateway::Socket& socket, const RawArgs& args,
                                                  const gateway::Attachments&, gateway::Ack ack) {
      SocketClient client(socket);
      Reply reply;
      if (ack) {
        reply = [ack](const std::string& arg_json) { ack(RawArgs{arg_json}); };
      }
      handler(client, args, reply);
    });
  }
}

size_t GatewayHub::deliver_to(const std::vector<std::string>& rooms, std::string_view event,
                              std::string_view arg_json) {
  auto packet = nsp_.encode_event(event, RawArgs{arg_json});
  return packet ? nsp_.send_to(rooms, packet) : 0;
}

size_t GatewayHub::deliver_all(std::string_view event, std::string_view arg_json) {
  auto packet = nsp_.encode_event(event, RawArgs{arg_json});
  return packet ? nsp_.send_all(packet) : 0;
}

size_t GatewayHub::deliver_at(const std::vector<std::string>* rooms,
                              const std::vector<std::string>& except_rooms, std::string_view event,
                              std::string_view args, std::string offset) {
  auto packet =
      nsp_.encode_event_at(event, args.empty() ? RawArgs{} : RawArgs{args}, std::move(offset));
  if (!packet) return 0;
  if (rooms) return nsp_.send_to(*rooms, packet, {}, except_rooms);
  // A history event to all sockets but some rooms: every socket is in its own-id room, so "all
  // but" is the whole namespace's sockets without those rooms' members.
  if (except_rooms.empty()) return nsp_.send_all(packet);
  size_t delivered = 0;
  nsp_.for_each_socket([&](gateway::Socket& socket) {
    for (const auto& room : except_rooms) {
      if (socket.in_room(room)) return;
    }
    if (socket.send(packet)) ++delivered;
  });
  return delivered;
}

void GatewayHub::for_each_client(const std::function<void(Client&)>& fn) {
  nsp_.for_each_socket([&fn](gateway::Socket& socket) {
    SocketClient client(socket);
    fn(client);
  });
}

void GatewayHub::after_writes(std::function<void()> fn) {
  if (server_ != nullptr) {
    server_->after_writes(std::move(fn));
  } else {
    fn();
  }
}

void GatewayHub::set_recovery_handlers(RecoveryHandlers handlers) {
  gateway::RecoveryHooks hooks;
  if (handlers.save) {
    hooks.save = [save = std::move(handlers.save)](gateway::Socket& socket) {
      SocketClient client(socket);
      return save(client);
    };
  }
  if (handlers.allow) {
    hooks.allow = [allow = std::move(handlers.allow)](gateway::Socket& socket,
                                                      const gateway::KeptSession& session) {
      SocketClient client(socket);
      return allow(client, KeptClient{session.sid, session.app_data});
    };
  }
  if (handlers.expired) {
    hooks.expired = [expired = std::move(handlers.expired)](const gateway::KeptSession& session) {
      expired(KeptClient{session.sid, session.app_data});
    };
  }
  nsp_.set_recovery_hooks(std::move(hooks));
}

void GatewayHub::drop_kept(const std::function<bool(const KeptClient&)>& match,
                           std::function<void(size_t)> done) {
  nsp_.drop_kept_sessions(
      [match](const gateway::KeptSession& session) {
        return match(KeptClient{session.sid, session.app_data});
      },
      std::move(done));
}

void GatewayHub::disconnect(const std::vector<std::string>& ids) {
  for (const auto& id : ids) {
    if (auto* socket = nsp_.find(id)) socket->disconnect(true);
  }
}

}  // namespace steedos::services
