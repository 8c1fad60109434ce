#pragma once
// What the `socket` service needs of the Socket.IO side, and nothing more (spec:
// gateway-contract.md §2, §3, §5, §6): hooks for a client's connect, connection, disconnect and
// events; delivery of one event to rooms or to every client; a view of each client (id,
// transport, rooms, handshake headers, the session the service attached); server disconnects
// and the room count. services/gateway_hub.hpp implements it over gateway::Namespace; the unit
// tests implement it with a fake, so the service is tested without sockets.
//
// Threading: every call in and out happens on the one thread of the event loop, except the
// `decide` function of a connect, which may be called later (after the connect hook returned),
// on that thread too.
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/json.hpp"
#include "services/session_registry.hpp"

namespace steedos::services {

enum class ClientTransport { Polling, WebSocket };

/// One connected (or connecting) client, valid during the call that hands it out only.
class Client {
 public:
  virtual ~Client() = default;

  /// The same string object for as long as the client exists (its session may point to it).
  virtual const std::string& id() const = 0;
  virtual ClientTransport transport() const = 0;
  /// A header of the handshake request, by lower-case name; nullopt when absent.
  virtual std::optional<std::string_view> header(std::string_view name) const = 0;

  /// The session attached on accept (ConnectDecision::session); nullptr before, and after the
  /// service dropped it.
  virtual ClientSession* session() const = 0;
  /// Replaces the client's session; the client owns it (nullptr frees it).
  virtual void set_session(std::unique_ptr<ClientSession> session) = 0;

  /// Named rooms; the client's own-id room is implicit and not listed.
  virtual std::vector<std::string> rooms() const = 0;
  virtual bool in_room(const std::string& room) const = 0;
  virtual void join(const std::string& room) = 0;
  virtual void leave(const std::string& room) = 0;

  /// Emits `event` to this client with the JSON text of each argument.
  virtual void emit(std::string_view event,
                    const std::vector<std::string_view>& args_json = {}) = 0;
  /// Restored by connection state recovery: its id, rooms and missed events are back.
  virtual bool recovered() const { return false; }
};

/// A client kept after a recoverable disconnect (connection state recovery, issue 13).
struct KeptClient {
  const std::string& id;  // the socket id it had, and gets back when restored
  const Json& saved;      // what RecoveryHandlers::save returned for it
};

/// The service's part of connection state recovery, when the gateway has it on.
struct RecoveryHandlers {
  /// At a recoverable disconnect: what to keep of the client's session.
  std::function<Json(Client&)> save;
  /// A client presents a kept session; the connect hook accepted it with a fresh session,
  /// attached: true restores the kept one, false connects it anew.
  std::function<bool(Client&, const KeptClient&)> allow;
  /// A kept client expired unrecovered.
  std::function<void(const KeptClient&)> expired;
};

/// The answer to a connect: accept with the client's session, or close the transport without a
/// reply (fail closed; the reason is for the log only). The session travels with the decision,
/// so nothing refers to a client whose decision is pending (it may be gone by then): the hub
/// attaches it before the client is connected, or frees it when the client is gone.
struct ConnectDecision {
  bool accept = true;
  std::string close_reason;
  std::unique_ptr<ClientSession> session;  // when accepted

  static ConnectDecision accepted(std::unique_ptr<ClientSession> session) {
    return {true, {}, std::move(session)};
  }
  static ConnectDecision close_transport(std::string reason) {
    return {false, std::move(reason), nullptr};
  }
};

/// Answers a client event that asked for an acknowledgement with one JSON argument. Empty when
/// the client asked for none.
using Reply = std::function<void(const std::string& arg_json)>;

struct ClientHandlers {
  /// Before the client is connected; `decide` must be called exactly once, now or later.
  std::function<void(Client&, const Json& auth, std::function<void(ConnectDecision)> decide)>
      connect;
  /// After the connect reply went out, so what is emitted here follows it.
  std::function<void(Client&)> connected;
  /// Gone, with the Socket.IO disconnect reason ("transport close", "ping timeout", ...).
  std::function<void(Client&, std::string_view reason)> disconnected;
  /// Client events by name, with the JSON text of each argument.
  using EventHandler = std::function<void(Client&, const std::vector<std::string_view>& args_json,
                                          const Reply& reply)>;
  std::map<std::string, EventHandler> events;
};

/// The clients of this node as the `socket` service sees them.
class ClientHub {
 public:
  virtual ~ClientHub() = default;

  /// Installs the service's handlers (once, before clients arrive).
  virtual void set_handlers(ClientHandlers handlers) = 0;

  /// Sends `event` with one argument (JSON text) to every client in any of `rooms` (each client
  /// once), encoded once. Returns the number of recipients (0 when the event is refused).
  virtual size_t deliver_to(const std::vector<std::string>& rooms, std::string_view event,
                            std::string_view arg_json) = 0;
  /// The same, to every connected client.
  virtual size_t deliver_all(std::string_view event, std::string_view arg_json) = 0;
  /// An event of a cluster-wide history (the `jetstream` recovery store) to the clients in
  /// `rooms` (every client when null) but those in `except_rooms`, with `offset` as its
  /// recovery offset; `args` is the comma-separated JSON text of its arguments (may be empty).
  virtual size_t deliver_at(const std::vector<std::string>* /*rooms*/,
                            const std::vector<std::string>& /*except_rooms*/,
                            std::string_view /*event*/, std::string_view /*args*/,
                            std::string /*offset*/) {
    return 0;
  }

  /// Visits the connected clients; `fn` may not disconnect them (collect ids, then disconnect).
  virtual void for_each_client(const std::function<void(Client&)>& fn) = 0;
  /// Server disconnect of each connected client of `ids` (and its transport); unknown ids are
  /// skipped.
  virtual void disconnect(const std::vector<std::string>& ids) = 0;

  /// Named rooms with at least one member.
  virtual size_t room_count() const = 0;

  /// Connection state recovery: installs the service's handlers (no-op when it is off).
  virtual void set_recovery_handlers(RecoveryHandlers) {}
  /// Forgets the kept clients `match` selects, so they can never be restored, then calls `done`
  /// with how many, now or later on the loop thread (a cluster store scans the records of every
  /// node: `match` must own its captures).
  virtual void drop_kept(const std::function<bool(const KeptClient&)>& /*match*/,
                         std::function<void(size_t)> done) {
    done(0);
  }

  /// Calls `fn` once what the deliveries so far queued has been written to the clients' sockets
  /// (later in this loop turn), or at once when nothing waits.
  virtual void after_writes(std::function<void()> fn) { fn(); }
};

}  // namespace steedos::services
