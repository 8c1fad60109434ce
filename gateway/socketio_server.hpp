#pragma once
// The Socket.IO v5 server layer (spec: socketio-server.md §2): namespaces, CONNECT with an
// asynchronous application decision, events and acknowledgements with raw JSON arguments,
// binary attachments, rooms and encode-once broadcasts. It sits on the Engine.IO server through
// EngineHandler / EngineSocket (gateway/engine.hpp) and knows nothing of Moleculer.
//
// Threading: every call into this layer, and every callback out of it, happens on the one
// io_context thread that runs the Engine.IO server. The only exception is the `decide` function
// given to a connect hook, which may be called from any thread (it posts itself over).
//
// Raw arguments: event and ack arguments are passed as the JSON text of each array element
// (`std::string_view`s into the received message), so a relay re-emits them byte for byte. The
// views are valid only during the callback; copy what must outlive it.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/random_id.hpp"
#include "gateway/engine.hpp"
#include "gateway/outgoing.hpp"
#include "gateway/recovery.hpp"
#include "gateway/rooms.hpp"
#include "gateway/socket_data.hpp"
#include "protocol/json.hpp"

namespace asio {
class io_context;
}

namespace steedos::gateway {

class Connection;
class Namespace;
class Socket;
class SocketIoServer;

/// The JSON text of each argument of an event or ack, in order, without the event name.
using RawArgs = std::vector<std::string_view>;
/// Binary attachments, indexed by the `num` of their `{"_placeholder":true,"num":n}` in the args.
using Attachments = std::vector<std::string>;

struct SocketIoOptions {
  /// A session that has joined no namespace this long after its Engine.IO open is closed.
  int connect_timeout_ms = 45000;
  /// Bound on the attachment bytes of one incoming binary packet (the reference has none; an
  /// unauthenticated client must not make the server buffer without limit).
  size_t max_attachment_bytes = 1000000;
  /// Time allowed between a binary packet's header and its last attachment.
  int attachment_timeout_ms = 30000;
  /// Binary attachments one incoming packet may announce (gateway.maxAttachments); more is a
  /// protocol violation, as in socket.io-parser >= 4.2.6 (CVE-2026-33151).
  size_t max_attachments = 10;
  /// Longest event name, in bytes, of an event a client sends (gateway.maxEventNameLength). A
  /// longer one is not dispatched; when it asked for an ack, the ack carries
  /// `{"error": "..."}`, the shape the application uses for its own refusals.
  size_t max_event_name_length = 256;
  /// Keep the Engine.IO session's handshake headers after its first CONNECT was accepted. When
  /// false they are dropped then (the connect hook has read them): idle sessions hold no
  /// credentials, and a CONNECT to another namespace on the same session sees no headers.
  bool keep_handshake_headers = true;
  /// Connection state recovery (gateway/recovery.hpp). Off by default: then no offset, no
  /// record, no pid, nothing kept.
  RecoveryOptions recovery;
};

/// Incoming packets refused for one of the limits above, by limit, since the server started.
struct SocketIoLimitCounts {
  uint64_t attachments = 0;  // more than max_attachments attachments (session closed)
  uint64_t packet_size = 0;  // attachment bytes over max_attachment_bytes (session closed)
  uint64_t json_depth = 0;   // JSON nested deeper than kMaxBrowserJsonDepth (session closed)
  uint64_t event_name = 0;   // event name over max_event_name_length (event dropped)
};

/// Socket.IO packets queued to clients since the server started, by the transport they went out
/// on (index static_cast<size_t>(TransportKind)), and their bytes as written: WebSocket frames,
/// or the polling payload of the packet.
struct SentCounts {
  uint64_t packets[2] = {0, 0};
  uint64_t bytes[2] = {0, 0};
};

/// The application's answer to a CONNECT.
struct ConnectResult {
  enum class Kind { Accept, Reject, CloseTransport };
  Kind kind = Kind::Accept;
  /// Reject: the CONNECT_ERROR message. CloseTransport: the close reason (for logs only).
  std::string message;
  /// Reject: the optional `data` of the CONNECT_ERROR, omitted from the packet when absent.
  std::optional<Json> data;

  static ConnectResult accept() { return {}; }
  static ConnectResult reject(std::string message, std::optional<Json> data = std::nullopt) {
    return {Kind::Reject, std::move(message), std::move(data)};
  }
  /// Close the Engine.IO session without a Socket.IO reply: the client reconnects with back-off
  /// (fail closed when the authority that should decide cannot be reached).
  static ConnectResult close_transport(std::string reason) {
    return {Kind::CloseTransport, std::move(reason), std::nullopt};
  }
};

/// Called on CONNECT to a namespace, before the socket is connected. `decide` must be called
/// once, now or later, from any thread; when the session is gone by then it does nothing.
using ConnectHook =
    std::function<void(Socket&, const Json& auth, std::function<void(ConnectResult)> decide)>;

/// Answers one incoming event that carried an ack id. Copies share one state: the ack is sent at
/// most once. An empty Ack (no id) converts to false and sends nothing.
class Ack {
 public:
  Ack() = default;
  explicit operator bool() const;
  /// Sends ACK `3<id>[args]`, or BINARY_ACK `6<n>-<id>[args]` when there are attachments. False
  /// when there is no id, it was already sent, the socket is gone, or it was refused.
  bool operator()(const RawArgs& raw_args = {}, Attachments attachments = {}) const;

 private:
  friend class Socket;
  struct State;
  explicit Ack(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

using EventHandler =
    std::function<void(Socket&, const RawArgs& raw_args, const Attachments& attachments, Ack ack)>;
using AnyEventHandler = std::function<void(Socket&, std::string_view event, const RawArgs& raw_args,
                                           const Attachments& attachments, Ack ack)>;
using ConnectionHandler = std::function<void(Socket&)>;
using DisconnectHandler = std::function<void(Socket&, const std::string& reason)>;

enum class AckStatus { Ok, Timeout, Disconnected };
/// The answer to an emit_with_ack: called exactly once (never when emit_with_ack returned
/// false), with the client's raw args on Ok.
using AckCallback =
    std::function<void(AckStatus, const RawArgs& raw_args, const Attachments& attachments)>;

/// One client in one namespace (the reference's `Socket`). Owned by its Engine.IO connection;
/// keep a `shared_from_this()` (or `weak_from_this()`) to hold it across asynchronous work.
/// Its room memberships live in it (the RoomMember base, reached by the namespace's RoomIndex).
class Socket : private RoomMember, public std::enable_shared_from_this<Socket> {
 public:
  enum class State : uint8_t { Connecting, Connected, Disconnected };

  /// Only the server makes sockets (Key is private); the constructor is public for make_shared,
  /// which puts the socket and its control block in one allocation.
  class Key {
    friend class Connection;
    Key() = default;
  };
  Socket(Key, std::string id, Namespace& nsp, Connection& connection, std::string auth_raw,
         Json auth);
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket();

  /// The Socket.IO socket id: 20 random base64url characters, distinct from the Engine.IO sid.
  const std::string& id() const { return id_; }
  Namespace& nsp() const { return *nsp_; }
  State state() const { return state_; }
  /// Connected to the namespace and its Engine.IO session still open.
  bool connected() const;
  /// The handshake request of the Engine.IO session; empty once the session is closed.
  const HandshakeInfo& handshake() const;
  /// The current transport (the last one seen once the session is closed).
  TransportKind transport() const;
  /// The CONNECT payload, parsed (`{}` when the client sent none) and as received (`{}` too).
  const Json& auth() const;
  const std::string& auth_raw() const { return auth_raw_; }
  /// The private session id of connection state recovery (empty when recovery is off).
  std::string_view pid() const { return pid_ ? pid_->view() : std::string_view(); }
  /// Restored from a kept session (id, pid, rooms and missed packets); false for a new socket.
  bool recovered() const { return recovered_; }
  /// Accepted, and waiting for the recovery store's answer to the kept session it claims
  /// (still Connecting meanwhile: its application data must stay).
  bool restoring() const { return restoring_; }
  /// Free slot for the application's session data (freed with the socket).
  std::unique_ptr<SocketData>& data() { return data_; }

  /// Per-socket handlers; they take precedence over the namespace's (Namespace::on).
  void on(const std::string& event, EventHandler handler);
  /// Called for events that have no handler on the socket or its namespace.
  void on_any(AnyEventHandler handler);
  void on_disconnect(DisconnectHandler handler);

  /// Emits EVENT `2["event",args...]` (BINARY_EVENT when there are attachments). Refused (false,
  /// logged) for reserved event names, more than 10 attachments, or a socket not connected.
  /// A volatile emit is dropped when the transport cannot write now.
  bool emit(std::string_view event, const RawArgs& raw_args = {}, Attachments attachments = {},
            bool is_volatile = false);
  /// Emits with an ack id; `callback` gets the client's answer, Timeout after `timeout`, or
  /// Disconnected when the socket goes first.
  bool emit_with_ack(std::string_view event, const RawArgs& raw_args, Attachments attachments,
                     AckCallback callback, std::chrono::milliseconds timeout);
  /// Sends a packet encoded beforehand (Namespace::encode_event), e.g. one shared by many sockets.
  bool send(const OutgoingPacketPtr& packet, bool is_volatile = false);

  /// Room membership in this socket's namespace. The own-id room is implicit: always a member,
  /// never listed by rooms().
  bool join(const std::string& room);
  bool leave(const std::string& room);
  bool in_room(const std::string& room) const;
  std::vector<std::string> rooms() const;

  /// Server-side disconnect: sends DISCONNECT (`41` / `41/nsp,`; the client reports "io server
  /// disconnect" and does not reconnect), then `disconnecting` / `disconnect` with reason
  /// "server namespace disconnect". With `close_transport` every namespace of the connection is
  /// disconnected that way and the Engine.IO session is closed as well.
  void disconnect(bool close_transport = false);

 private:
  friend class Ack;
  friend class Connection;
  friend class Namespace;
  friend class SocketIoServer;
  struct Extras;

  Extras& extras();
  void dispatch_event(std::string_view event, const RawArgs& raw_args,
                      const Attachments& attachments, std::optional<uint64_t> ack_id);
  void dispatch_ack(uint64_t ack_id, const RawArgs& raw_args, const Attachments& attachments);
  void finish_disconnect(const std::string& reason);
  bool send_ack(uint64_t ack_id, const RawArgs& raw_args, Attachments attachments);
  /// At a recoverable disconnect with recovery on: hands the socket to the store (rooms still
  /// joined).
  void keep_for_recovery(const std::string& reason);
  /// What a store keeps of this socket now (rooms, the application's save hook).
  KeptSession recovery_snapshot();
  /// Tells a store that tracks connected sockets that this one's rooms changed.
  void report_rooms();

  std::string id_;
  Namespace* nsp_;
  Connection* connection_;  // cleared when the socket is disconnected
  State state_ = State::Connecting;
  TransportKind last_transport_ = TransportKind::Polling;
  bool recovered_ = false;
  bool restoring_ = false;
  uint32_t member_index_ = 0;  // position in Namespace::members_ (packed with the three above)
  std::string auth_raw_;
  Json auth_;  // null for an empty payload (auth() gives `{}`)
  std::unique_ptr<SocketData> data_;
  std::unique_ptr<Extras> extras_;  // handlers and pending acks, allocated on first use
  // Connection state recovery only: null when it is off, so a Socket stays in its allocation
  // size class (a std::string here would add 32 bytes to every socket).
  std::unique_ptr<InlineId> pid_;
};

/// A Socket.IO namespace: its connect hook, handlers, connected sockets and rooms. Owned by the
/// server, so it outlives its sockets.
class Namespace {
 public:
  Namespace(const Namespace&) = delete;
  Namespace& operator=(const Namespace&) = delete;

  const std::string& name() const { return name_; }

  /// Without a hook every CONNECT is accepted.
  void set_connect_hook(ConnectHook hook) { connect_hook_ = std::move(hook); }
  /// Fired after the CONNECT reply was sent, so events emitted here follow it on the wire.
  void on_connection(ConnectionHandler handler) { on_connection_ = std::move(handler); }
  /// Handlers shared by every socket of the namespace (no per-socket cost).
  void on(const std::string& event, EventHandler handler);
  void on_any(AnyEventHandler handler) { on_any_ = std::move(handler); }
  /// Fired while the socket is still in its rooms, then `disconnect` after it left them.
  void on_disconnecting(DisconnectHandler handler) { on_disconnecting_ = std::move(handler); }
  void on_disconnect(DisconnectHandler handler) { on_disconnect_ = std::move(handler); }
  /// The application's part of connection state recovery (what to keep, whether to restore,
  /// expiry). Without hooks a socket is kept with null app data and every restore is allowed.
  void set_recovery_hooks(RecoveryHooks hooks) { recovery_hooks_ = std::move(hooks); }
  /// Removes this namespace's kept sessions `match` selects (a user logged out, a socket the
  /// application disconnected while it was away), then calls `done` with how many (0 when
  /// recovery is off), now or later on the loop thread (a cluster store). `match` may be called
  /// later: it must own what it captures.
  void drop_kept_sessions(std::function<bool(const KeptSession&)> match,
                          std::function<void(size_t)> done = {});

  /// Encodes an EVENT for this namespace once; nullptr (logged) when refused: reserved event
  /// name or more than 10 attachments. With recovery on it carries a fresh offset as the last
  /// element of its data array, and every send_to / send_all / Socket::send of it is recorded.
  OutgoingPacketPtr encode_event(std::string_view event, const RawArgs& raw_args,
                                 const Attachments& attachments = {}) const;
  /// The same with the offset given (a cluster store's: the event's place in a history shared
  /// by every node), not one of the store's. nullptr (logged) for a reserved event name.
  OutgoingPacketPtr encode_event_at(std::string_view event, const RawArgs& raw_args,
                                    std::string offset) const;

  /// Sends `packet` to every connected socket in any of `rooms` (each socket once), except the
  /// socket whose id is `except_id` (and the members of `except_rooms`). The same pointer goes to
  /// every recipient. Returns the number of recipients it was queued for.
  size_t send_to(const std::vector<std::string>& rooms, const OutgoingPacketPtr& packet,
                 std::string_view except_id = {}, const std::vector<std::string>& except_rooms = {},
                 bool is_volatile = false);
  /// Sends `packet` to every connected socket of the namespace but `except_id`.
  size_t send_all(const OutgoingPacketPtr& packet, std::string_view except_id = {},
                  bool is_volatile = false);
  /// encode_event + send_to: the broadcast API. Returns the number of recipients.
  size_t emit_to(const std::vector<std::string>& rooms, std::string_view except_id,
                 std::string_view event, const RawArgs& raw_args, Attachments attachments = {},
                 bool is_volatile = false);
  size_t emit_all(std::string_view event, const RawArgs& raw_args, Attachments attachments = {},
                  std::string_view except_id = {}, bool is_volatile = false);

  /// A connected socket by id, or nullptr.
  Socket* find(std::string_view id) const;
  size_t socket_count() const { return sockets_.size(); }
  /// Named rooms (own-id rooms are implicit and not counted).
  size_t room_count() const { return rooms_.room_count(); }
  std::vector<std::string> room_names() const { return rooms_.room_names(); }
  /// Connected members of `room` (the socket itself for an own-id room).
  size_t room_size(const std::string& room) const;
  /// Named rooms of `socket`, without its own-id room.
  std::vector<std::string> rooms_of(const Socket& socket) const;
  /// Visits the connected sockets. Works on a snapshot, so `fn` may disconnect sockets.
  void for_each_socket(const std::function<void(Socket&)>& fn) const;

 private:
  friend class Socket;
  friend class SocketIoServer;
  friend class Connection;
  Namespace(std::string name, SocketIoServer& server) : name_(std::move(name)), server_(server) {}

  /// The socket a RoomIndex member is (every member of rooms_ is a Socket of this namespace).
  static Socket* socket_of(RoomMember* member) { return static_cast<Socket*>(member); }
  bool deliver(Socket& socket, const OutgoingPacketPtr& packet, bool is_volatile);
  void prefetch_recipients_after(size_t i) const;
  void add_socket(Socket& socket);
  void remove_socket(Socket& socket);

  std::string name_;
  SocketIoServer& server_;
  ConnectHook connect_hook_;
  ConnectionHandler on_connection_;
  std::unordered_map<std::string, EventHandler> handlers_;
  AnyEventHandler on_any_;
  DisconnectHandler on_disconnecting_;
  DisconnectHandler on_disconnect_;
  RecoveryHooks recovery_hooks_;
  std::unordered_map<std::string_view, Socket*> sockets_;  // keys view Socket::id_
  std::vector<Socket*> members_;  // the same sockets as a dense list, for broadcasts
  RoomIndex rooms_;
};

/// The Socket.IO server: an EngineHandler that owns the namespaces and one Connection per
/// Engine.IO session. Lives longer than the Engine.IO server that calls it.
class SocketIoServer : public EngineHandler {
 public:
  /// With options.recovery.enabled the server keeps sessions and packets in `store`, or in a
  /// MemoryRecoveryStore made from options.recovery when `store` is null.
  explicit SocketIoServer(asio::io_context& io, SocketIoOptions options = {},
                          std::unique_ptr<RecoveryStore> store = nullptr);
  ~SocketIoServer() override;
  SocketIoServer(const SocketIoServer&) = delete;
  SocketIoServer& operator=(const SocketIoServer&) = delete;

  /// The namespace `name` ("/" exists from the start; "chat" means "/chat"), created on first use.
  Namespace& of(const std::string& name);
  Namespace* find_namespace(std::string_view name) const;
  const SocketIoOptions& options() const { return options_; }
  asio::io_context& io() const { return io_; }
  /// Engine.IO sessions currently served.
  size_t connection_count() const { return connections_.size(); }
  /// Sessions closed with "parse error" since start: malformed Socket.IO packets (JSON nested
  /// too deeply included) and other protocol violations.
  uint64_t protocol_violations() const { return protocol_violations_; }
  /// Packets refused for a limit; the closing ones are among protocol_violations() too.
  const SocketIoLimitCounts& limit_counts() const { return limit_counts_; }
  const SentCounts& sent() const { return sent_; }
  /// Connection state recovery since start (all zero when it is off).
  RecoveryCounts recovery_counts() const;
  size_t kept_session_count() const {
    return recovery_store_ ? recovery_store_->session_count() : 0;
  }
  size_t recorded_packet_count() const {
    return recovery_store_ ? recovery_store_->packet_count() : 0;
  }
  /// The store in use; null when recovery is off.
  RecoveryStore* recovery_store() const { return recovery_store_.get(); }
  /// Frees every socket's application data (Socket::data), connected or still connecting (one
  /// waiting for its recovery store, say): for an application going away before the server.
  void release_socket_data();
  /// Replaces the store (before clients connect: what the old one held is lost). Ignored when
  /// recovery is off.
  void set_recovery_store(std::unique_ptr<RecoveryStore> store);

  void on_open(EngineSocket& socket) override;
  void on_message(EngineSocket& socket, std::string_view data, bool binary) override;
  void on_close(EngineSocket& socket, const std::string& reason) override;

 private:
  friend class Connection;
  friend class Socket;
  friend class Namespace;
  friend class Ack;

  /// Runs `fn` now, or on the next loop turn when called from inside a call into the engine
  /// (an engine may report a close synchronously from send() or close(); tearing sockets down
  /// there would free objects the caller is still using).
  void run_or_defer(std::function<void()> fn);
  /// Records a packet that carries an offset (recovery on); a no-op for others.
  void record_sent(const OutgoingPacketPtr& packet, PacketTarget target);
  void keep_session(KeptSession session);
  /// One timer for the whole server, armed only while the store holds something, so an idle
  /// server leaves io_context::run() free to return.
  void arm_recovery_sweep();
  void sweep_recovery();

  struct ConnectDeadlines;

  asio::io_context& io_;
  SocketIoOptions options_;
  /// Sessions that have not joined a namespace yet, closed at connectTimeout (one timer).
  std::unique_ptr<ConnectDeadlines> connect_deadlines_;
  std::unordered_map<std::string, std::unique_ptr<Namespace>> namespaces_;
  /// One per Engine.IO session, dense (a Connection knows its index; removal swaps the last
  /// in): the session's user_data leads to its Connection, so no map is needed.
  std::vector<std::shared_ptr<Connection>> connections_;
  int engine_call_depth_ = 0;
  uint64_t protocol_violations_ = 0;
  SocketIoLimitCounts limit_counts_;
  SentCounts sent_;
  std::unique_ptr<RecoveryStore> recovery_store_;
  struct RecoveryTimer;  // an asio::steady_timer, kept out of this header
  std::unique_ptr<RecoveryTimer> recovery_timer_;
  bool recovery_sweep_armed_ = false;
  bool shutting_down_ = false;     // "server shutting down" seen: no sweep re-armed
  RecoveryCounts restore_counts_;  // recovered, refused, replayed (the store counts the rest)
  /// Expires with the server; posted work and timers check it before touching anything.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace steedos::gateway
