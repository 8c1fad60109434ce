#include "gateway/socketio_server.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <thread>
#include <utility>

#include "common/log.hpp"
#include "common/random_id.hpp"
#include "gateway/memory_recovery_store.hpp"
#include "protocol/socketio.hpp"

namespace steedos::gateway {

namespace sio = protocol::sio;

namespace {

/// Attachments a client on socket.io-parser >= 4.2.6 accepts in one packet (socket.io #5504).
constexpr size_t kMaxOutgoingAttachments = 10;

const std::shared_ptr<spdlog::logger>& logger() {
  static const auto instance = component_logger("socketio");
  return instance;
}

std::string normalize_nsp(std::string_view name) {
  if (!name.empty() && name.front() == '/') return std::string(name);
  return "/" + std::string(name);
}

OutgoingPacketPtr text_packet(std::string text) {
  std::vector<MessagePart> parts;
  parts.push_back(MessagePart{false, std::move(text)});
  return OutgoingPacket::messages(std::move(parts));
}

/// One Socket.IO packet and its attachments as one shared Engine.IO message group.
OutgoingPacketPtr build_packet(sio::Type type, const std::string& nsp,
                               std::optional<uint64_t> ack_id, std::string payload,
                               Attachments attachments, std::string offset = {}) {
  sio::Packet packet;
  packet.nsp = nsp;
  packet.ack_id = ack_id;
  packet.attachments = attachments.size();
  packet.payload = std::move(payload);
  if (!attachments.empty()) {
    packet.type = type == sio::Type::Event ? sio::Type::BinaryEvent : sio::Type::BinaryAck;
  } else {
    packet.type = type;
  }
  std::vector<MessagePart> parts;
  parts.reserve(1 + attachments.size());
  parts.push_back(MessagePart{false, sio::encode(packet)});
  for (auto& attachment : attachments) parts.push_back(MessagePart{true, std::move(attachment)});
  return OutgoingPacket::messages(std::move(parts), std::move(offset));
}

/// `["event",args...]`, plus the recovery offset as the last element when there is one (where
/// socket.io puts it, so a client without recovery sees one more argument, as with socket.io).
std::string event_payload(std::string_view event, const RawArgs& raw_args,
                          const std::string& offset = {}) {
  std::string name = dump_json(Json(std::string(event)));
  std::string quoted_offset;
  std::vector<std::string_view> elements;
  elements.reserve(2 + raw_args.size());
  elements.push_back(name);
  elements.insert(elements.end(), raw_args.begin(), raw_args.end());
  if (!offset.empty()) {
    quoted_offset = dump_json(Json(offset));
    elements.push_back(quoted_offset);
  }
  return sio::join_array(elements);
}

/// socket.io 4.8's RECOVERABLE_DISCONNECT_REASONS (lib/socket.ts): the disconnects after which
/// a socket is kept. Not "client namespace disconnect" (the client's own disconnect()), not
/// "server namespace disconnect" (Socket::disconnect), not "parse error".
bool recoverable_disconnect(const std::string& reason) {
  static const char* const kReasons[] = {"transport error",      "transport close",
                                         "forced close",         "ping timeout",
                                         "server shutting down", "forced server close"};
  return std::any_of(std::begin(kReasons), std::end(kReasons),
                     [&](const char* recoverable) { return reason == recoverable; });
}

/// The CONNECT payload's claim to a kept session: string `pid` and string `offset`.
struct RecoveryClaim {
  std::string pid;
  std::string offset;
};
std::optional<RecoveryClaim> recovery_claim(const Json& auth) {
  if (!auth.is_object()) return std::nullopt;
  auto pid = auth.find("pid");
  auto offset = auth.find("offset");
  if (pid == auth.end() || offset == auth.end() || !pid->is_string() || !offset->is_string()) {
    return std::nullopt;
  }
  return RecoveryClaim{pid->get<std::string>(), offset->get<std::string>()};
}

/// Refusal shared by every outgoing path that carries attachments.
bool attachments_allowed(size_t count, std::string_view what) {
  if (count <= kMaxOutgoingAttachments) return true;
  logger()->error("refusing to send {} with {} attachments (clients accept at most {})", what,
                  count, kMaxOutgoingAttachments);
  return false;
}

/// Runs application code reached from a loop callback (timer, posted work, engine close). An
/// exception escaping there would leave io_context::run() and stop the node; it is an
/// application bug, logged without its message (which may quote a client's payload).
template <class Fn>
bool guarded(const char* what, Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const std::exception&) {
    logger()->error("{}: an application callback threw", what);
    return false;
  }
}

const HandshakeInfo& empty_handshake() {
  static const HandshakeInfo empty;
  return empty;
}

}  // namespace

//------------------------------------------------------------------------------------------------
// ConnectionSockets

/// The sockets of one connection, one per namespace joined or joining, in CONNECT order. Nearly
/// always one (Steedos uses "/" only): that one is held inline, without a heap block; the
/// sockets of further namespaces go to a vector allocated then.
class ConnectionSockets {
 public:
  /// The first socket `pred` accepts, or nullptr.
  template <class Pred>
  Socket* find_if(Pred&& pred) const {
    if (first_ && pred(*first_)) return first_.get();
    if (more_) {
      for (const auto& socket : *more_) {
        if (pred(*socket)) return socket.get();
      }
    }
    return nullptr;
  }
  void add(std::shared_ptr<Socket> socket) {
    if (!first_) {
      first_ = std::move(socket);
      return;
    }
    if (!more_) more_ = std::make_unique<std::vector<std::shared_ptr<Socket>>>();
    more_->push_back(std::move(socket));
  }
  void remove(const Socket& socket) {
    if (first_.get() == &socket) {
      first_.reset();
      if (more_ && !more_->empty()) {
        // The next one moves up, so the order stays CONNECT order.
        first_ = std::move(more_->front());
        more_->erase(more_->begin());
      }
    } else if (more_) {
      auto it = std::find_if(more_->begin(), more_->end(),
                             [&](const auto& entry) { return entry.get() == &socket; });
      if (it != more_->end()) more_->erase(it);
    }
    if (more_ && more_->empty()) more_.reset();
  }
  /// A copy of the list, for loops that may change it.
  std::vector<std::shared_ptr<Socket>> snapshot() const {
    std::vector<std::shared_ptr<Socket>> all;
    if (first_) all.push_back(first_);
    if (more_) all.insert(all.end(), more_->begin(), more_->end());
    return all;
  }
  /// Empties the list and returns what it held.
  std::vector<std::shared_ptr<Socket>> take() {
    auto all = snapshot();
    first_.reset();
    more_.reset();
    return all;
  }

 private:
  std::shared_ptr<Socket> first_;
  std::unique_ptr<std::vector<std::shared_ptr<Socket>>> more_;  // only past one namespace
};

//------------------------------------------------------------------------------------------------
// SocketIoServer::ConnectDeadlines (defined below Connection)

// Every deadline is the open time plus the same connectTimeout, taken from a non-decreasing
// clock: appending keeps the list sorted, and one timer for the server replaces a timer (and
// its pending wait) per connection.
struct SocketIoServer::ConnectDeadlines {
  using Clock = std::chrono::steady_clock;

  ConnectDeadlines(SocketIoServer& server, asio::io_context& io) : server(server), timer(io) {}

  void add(Connection& connection, Clock::time_point at);
  void remove(Connection& connection);
  void arm();
  void on_timer();

  SocketIoServer& server;
  asio::steady_timer timer;
  bool armed = false;
  Connection* head = nullptr;
  Connection* tail = nullptr;
};

//------------------------------------------------------------------------------------------------
// Connection: the Socket.IO state of one Engine.IO session (the reference's `Client`).

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(SocketIoServer& server, EngineSocket& engine)
      : server_(server), alive_(server.alive_), engine_(&engine), transport_(engine.transport()) {}
  ~Connection();

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void handle_message(std::string_view data, bool binary);
  /// The Engine.IO session is gone: every socket is disconnected with `reason`.
  void teardown(const std::string& reason);

  bool send(const OutgoingPacketPtr& packet, bool is_volatile = false);
  bool send_text(std::string text) { return send(text_packet(std::move(text))); }
  /// Closes the Engine.IO session; its sockets go when the engine reports the close.
  void close(const char* reason);
  /// A client broke the protocol: the reference closes the whole connection.
  void violation(const char* what);

  void decide(Socket& socket, const ConnectResult& result);
  void remove_socket(const Socket& socket);
  void disconnect_all(const std::string& reason);

  EngineSocket* engine() const { return engine_gone_ ? nullptr : engine_; }
  /// For HandshakeInfo reads during teardown: valid until on_close returns.
  EngineSocket* engine_for_reading() const { return engine_; }
  TransportKind transport() const { return engine() ? engine_->transport() : transport_; }
  bool usable() const { return !engine_gone_ && !closing_; }
  /// The Engine.IO session id, for log fields ("" once the session is gone).
  std::string_view sid() const {
    return engine() != nullptr ? std::string_view(engine_->id()) : std::string_view();
  }

 private:
  friend class SocketIoServer;
  friend class Socket;

  Socket* socket_for(const std::string& nsp) const;
  void handle_packet(sio::Packet packet, Attachments attachments);
  void handle_connect(sio::Packet& packet);
  /// After the connect hook accepted: restores a kept session when the CONNECT claims one and
  /// the store and the application agree, else a new connection.
  void accept_or_restore(Socket& socket);
  /// Takes over the kept session's id, pid and rooms; false when that is not possible.
  bool restore(Socket& socket, RestoredSession& restored);
  /// `missed`: sent before the CONNECT reply, as socket.io 4.8 does (the client buffers them
  /// until the reply and then emits them before its `connect` event).
  void accept(Socket& socket, const std::vector<OutgoingPacketPtr>& missed = {});
  void start_binary(sio::Packet packet);
  void add_attachment(std::string_view data);
  /// Counts a decode error that is one of the limits (SocketIoLimitCounts).
  void count_refusal(sio::Error error);
  /// gateway.maxEventNameLength: the event is dropped, its ack (if any) answered with an error.
  void refuse_long_event_name(Socket& socket, size_t length, std::optional<uint64_t> ack_id);

  SocketIoServer& server_;
  std::weak_ptr<int> alive_;
  EngineSocket* engine_;
  bool engine_gone_ = false;
  bool closing_ = false;
  bool joined_once_ = false;
  TransportKind transport_;
  /// Place in the server's connect-deadline queue (SocketIoServer::ConnectDeadlines) until the
  /// first namespace is joined or the session goes.
  bool connect_due_queued_ = false;
  uint32_t index_ = 0;  // position in SocketIoServer::connections_
  Connection* connect_due_prev_ = nullptr;
  Connection* connect_due_next_ = nullptr;
  std::chrono::steady_clock::time_point connect_due_at_;
  ConnectionSockets sockets_;  // connecting and connected, one per namespace
  std::unique_ptr<sio::BinaryPacketBuilder> binary_;
  std::unique_ptr<asio::steady_timer> binary_timer_;  // allocated on the first binary packet
};

bool Connection::send(const OutgoingPacketPtr& packet, bool is_volatile) {
  EngineSocket* engine = this->engine();
  if (engine == nullptr || closing_) return false;
  ++server_.engine_call_depth_;
  const bool sent = engine->send(packet, is_volatile);
  --server_.engine_call_depth_;
  if (sent) {
    // Two array slots per delivery, for the metrics (no lookup on the broadcast path).
    const TransportKind transport = engine->transport();
    const auto slot = static_cast<size_t>(transport);
    ++server_.sent_.packets[slot];
    server_.sent_.bytes[slot] += transport == TransportKind::WebSocket
                                     ? packet->websocket_frames().size()
                                     : packet->polling_payload().size();
  }
  return sent;
}

void Connection::close(const char* reason) {
  EngineSocket* engine = this->engine();
  if (engine == nullptr || closing_) return;
  closing_ = true;
  binary_.reset();
  ++server_.engine_call_depth_;
  engine->close(reason);
  --server_.engine_call_depth_;
}

void Connection::violation(const char* what) {
  if (!usable()) return;
  log_with(logger(), spdlog::level::debug, {{"sid", sid()}, {"reason", what}},
           "closing Engine.IO session: protocol violation");
  ++server_.protocol_violations_;
  close("parse error");
}

void Connection::count_refusal(sio::Error error) {
  auto& counts = server_.limit_counts_;
  if (error == sio::Error::TooManyAttachments) ++counts.attachments;
  if (error == sio::Error::TooDeep) ++counts.json_depth;
}

void Connection::refuse_long_event_name(Socket& socket, size_t length,
                                        std::optional<uint64_t> ack_id) {
  ++server_.limit_counts_.event_name;
  const size_t limit = server_.options().max_event_name_length;
  // Not the name itself: it is long, and the client chose it.
  log_with(logger(), spdlog::level::debug,
           {{"sid", sid()}, {"socket", socket.id()}, {"reason", "gateway.maxEventNameLength"}},
           "event of {} bytes dropped: name longer than {} bytes", length, limit);
  if (!ack_id) return;
  // A refusal the client can read, in the shape the application answers its refusals with
  // (gateway-contract.md §3: `{"error": reason}`), instead of an ack that never comes.
  const std::string error =
      dump_json(Json{{"error", "event name longer than " + std::to_string(limit) + " bytes"}});
  socket.send_ack(*ack_id, RawArgs{error}, {});
}

Connection::~Connection() {
  // Normally unqueued at join or close already; a server being destroyed has no queue left.
  if (connect_due_queued_ && !alive_.expired()) server_.connect_deadlines_->remove(*this);
}

Socket* Connection::socket_for(const std::string& nsp) const {
  return sockets_.find_if([&](const Socket& socket) { return socket.nsp_->name() == nsp; });
}

void Connection::remove_socket(const Socket& socket) {
  sockets_.remove(socket);
}

void Connection::handle_message(std::string_view data, bool binary) {
  if (!usable()) return;
  if (binary) {
    add_attachment(data);
    return;
  }
  if (binary_) {
    violation("text message while waiting for binary attachments");
    return;
  }
  sio::DecodeLimits limits;
  limits.max_attachments = server_.options().max_attachments;
  auto decoded = sio::decode(data, limits);
  if (!decoded) {
    count_refusal(decoded.error);
    violation(sio::error_text(decoded.error));
    return;
  }
  if (decoded.value.type == sio::Type::BinaryEvent || decoded.value.type == sio::Type::BinaryAck) {
    start_binary(std::move(decoded.value));
    return;
  }
  handle_packet(std::move(decoded.value), {});
}

void Connection::start_binary(sio::Packet packet) {
  // The namespace is checked now, not when the attachments are complete: bytes are buffered
  // only for a namespace the client has joined.
  Socket* socket = socket_for(packet.nsp);
  if (socket == nullptr || !socket->connected()) {
    violation("binary packet for a namespace not joined");
    return;
  }
  binary_ = std::make_unique<sio::BinaryPacketBuilder>(std::move(packet),
                                                       server_.options().max_attachment_bytes);
  if (!binary_timer_) binary_timer_ = std::make_unique<asio::steady_timer>(server_.io());
  binary_timer_->expires_after(std::chrono::milliseconds(server_.options().attachment_timeout_ms));
  binary_timer_->async_wait([weak = weak_from_this(), alive = alive_](const std::error_code& ec) {
    if (ec || alive.expired()) return;
    auto self = weak.lock();
    if (self && self->binary_) self->violation("binary attachments not completed in time");
  });
}

void Connection::add_attachment(std::string_view data) {
  if (!binary_) {
    violation("binary message outside a binary packet");
    return;
  }
  switch (binary_->add(std::string(data))) {
    case sio::BinaryPacketBuilder::Status::NeedMore:
      return;
    case sio::BinaryPacketBuilder::Status::TooLarge:
      ++server_.limit_counts_.packet_size;
      violation("binary attachments too large");
      return;
    case sio::BinaryPacketBuilder::Status::Complete:
      break;
  }
  auto complete = binary_->take();
  binary_.reset();
  if (binary_timer_) binary_timer_->cancel();
  handle_packet(std::move(complete.packet), std::move(complete.attachments));
}

void Connection::handle_packet(sio::Packet packet, Attachments attachments) {
  if (packet.type == sio::Type::Connect) {
    handle_connect(packet);
    return;
  }
  Socket* found = socket_for(packet.nsp);
  if (found == nullptr || !found->connected() || packet.type == sio::Type::ConnectError) {
    // Reference: any non-CONNECT packet for a namespace not joined (a CONNECT_ERROR from a
    // client in any case) closes the connection.
    violation("packet for a namespace not joined");
    return;
  }
  // Held so a handler that disconnects the socket does not free it under its own call.
  auto socket = found->shared_from_this();
  switch (packet.type) {
    case sio::Type::Disconnect:
      socket->finish_disconnect("client namespace disconnect");
      return;
    case sio::Type::Event:
    case sio::Type::BinaryEvent: {
      auto elements = sio::split_array(packet.payload);
      auto name = sio::event_name(packet.payload);
      if (!elements || elements->empty() || !name) {
        violation("invalid event payload");
        return;
      }
      if (name->size() > server_.options().max_event_name_length) {
        refuse_long_event_name(*socket, name->size(), packet.ack_id);
        return;
      }
      RawArgs args(elements->begin() + 1, elements->end());
      socket->dispatch_event(*name, args, attachments, packet.ack_id);
      return;
    }
    case sio::Type::Ack:
    case sio::Type::BinaryAck: {
      auto elements = sio::split_array(packet.payload);
      if (!elements) {
        violation("invalid ack payload");
        return;
      }
      // An ACK without id matches nothing, as in the reference.
      if (packet.ack_id) socket->dispatch_ack(*packet.ack_id, *elements, attachments);
      return;
    }
    default:
      violation("unexpected packet type");
      return;
  }
}

void Connection::handle_connect(sio::Packet& packet) {
  if (socket_for(packet.nsp) != nullptr) {
    violation("CONNECT for a namespace already joined");
    return;
  }
  Namespace* nsp = server_.find_namespace(packet.nsp);
  if (nsp == nullptr) {
    sio::Packet reply;
    reply.type = sio::Type::ConnectError;
    reply.nsp = packet.nsp;
    reply.payload = R"({"message":"Invalid namespace"})";
    send_text(sio::encode(reply));
    return;
  }
  std::string auth_raw = packet.payload.empty() ? std::string("{}") : std::move(packet.payload);
  // decode() has checked this is one JSON object; the non-throwing parse is belt and braces.
  Json auth = Json::parse(auth_raw, nullptr, false);
  if (auth.is_discarded() || !auth.is_object()) {
    violation("invalid CONNECT payload");
    return;
  }
  // An empty payload (the usual case) is kept as a null Json, read back as `{}` by auth(): an
  // empty object would still cost a heap block per socket.
  if (auth.empty()) auth = Json();
  auto socket = std::make_shared<Socket>(Socket::Key{}, random_base64url_id(), *nsp, *this,
                                         std::move(auth_raw), std::move(auth));
  if (server_.recovery_store_) socket->pid_ = std::make_unique<InlineId>(random_base64url_id());
  sockets_.add(socket);
  if (!nsp->connect_hook_) {
    accept_or_restore(*socket);
    return;
  }
  // The decision may come much later (a remote auth call) and from another thread; by then
  // the socket or the whole server may be gone, hence the weak handles.
  asio::io_context& io = server_.io();
  // The hook runs on the loop's thread; a decision made on that thread (within the hook or
  // later) applies at once, one from another thread is posted over.
  auto decide = [weak = std::weak_ptr<Socket>(socket), alive = alive_, &io,
                 loop_thread = std::this_thread::get_id()](ConnectResult result) {
    auto apply = [weak, alive, result = std::move(result)]() {
      if (alive.expired()) return;
      auto target = weak.lock();
      if (!target || target->state_ != Socket::State::Connecting || !target->connection_) return;
      auto connection = target->connection_->shared_from_this();
      if (!guarded("connect decision", [&] { connection->decide(*target, result); })) {
        connection->close("forced close");
      }
    };
    if (std::this_thread::get_id() == loop_thread) {
      apply();
    } else {
      asio::post(io, std::move(apply));
    }
  };
  nsp->connect_hook_(*socket, socket->auth(), std::move(decide));
}

void Connection::decide(Socket& socket, const ConnectResult& result) {
  auto hold = socket.shared_from_this();
  switch (result.kind) {
    case ConnectResult::Kind::Accept:
      // Links the Engine.IO sid of the gateway's lines to the socket id of the service's.
      log_with(logger(), spdlog::level::debug,
               {{"sid", sid()}, {"socket", socket.id()}, {"namespace", socket.nsp_->name()}},
               "socket connected");
      accept_or_restore(socket);
      return;
    case ConnectResult::Kind::Reject: {
      Json body = Json::object();
      body["message"] = result.message;
      if (result.data) body["data"] = *result.data;
      sio::Packet reply;
      reply.type = sio::Type::ConnectError;
      reply.nsp = socket.nsp_->name();
      reply.payload = dump_json(body);
      socket.state_ = Socket::State::Disconnected;
      socket.nsp_->rooms_.leave_all(socket);
      remove_socket(socket);
      socket.connection_ = nullptr;
      send_text(sio::encode(reply));
      return;
    }
    case ConnectResult::Kind::CloseTransport:
      socket.state_ = Socket::State::Disconnected;
      socket.nsp_->rooms_.leave_all(socket);
      remove_socket(socket);
      socket.connection_ = nullptr;
      log_with(logger(), spdlog::level::debug,
               {{"sid", sid()}, {"namespace", socket.nsp_->name()}, {"reason", result.message}},
               "closing Engine.IO session on CONNECT");
      close("forced close");
      return;
  }
}

void Connection::accept_or_restore(Socket& socket) {
  RecoveryStore* store = server_.recovery_store_.get();
  const auto claim = store ? recovery_claim(socket.auth()) : std::nullopt;
  if (!claim) {
    accept(socket);
    return;
  }
  // The store may answer later (a cluster store): by then the socket or the session may be
  // gone, hence the weak handles, as for the connect decision.
  socket.restoring_ = true;
  store->take(claim->pid, claim->offset,
              [weak = socket.weak_from_this(), alive = alive_,
               server = &server_](std::optional<RestoredSession> taken) {
                if (alive.expired()) return;
                auto target = weak.lock();
                // Its socket went while the store answered (the connection closed: a drain, a
                // client that gave up): the session was taken for nothing and is kept again.
                auto give_back = [&] {
                  if (taken && server->recovery_store_) {
                    server->recovery_store_->give_back(std::move(taken->session));
                  }
                };
                if (!target) {
                  give_back();
                  return;
                }
                target->restoring_ = false;
                if (target->state_ != Socket::State::Connecting || !target->connection_) {
                  target->data_.reset();  // never connected: its application data goes now
                  give_back();
                  return;
                }
                auto connection = target->connection_->shared_from_this();
                bool done = guarded("recovery", [&] {
                  if (taken && connection->restore(*target, *taken)) {
                    connection->accept(*target, taken->missed);
                  } else {
                    connection->accept(*target);
                  }
                });
                if (target->state_ == Socket::State::Connecting) target->data_.reset();
                if (!done) connection->close("forced close");
              });
}

bool Connection::restore(Socket& socket, RestoredSession& restored) {
  KeptSession& session = restored.session;
  Namespace& nsp = *socket.nsp_;
  auto& counts = server_.restore_counts_;
  // A session of another namespace, whose id is connected again (a second client presenting
  // the same pid), or with a pid this server could not have made, is not restored: the claim is
  // refused and the socket connects anew.
  if (session.nsp != nsp.name() || nsp.find(session.sid) != nullptr ||
      session.pid.size() > InlineId::kCapacity) {
    ++counts.refused;
    return false;
  }
  // The application has re-checked the credentials in its connect hook; it decides whether
  // this user may have this session back (same user and tenant, not logged out meanwhile).
  if (nsp.recovery_hooks_.allow && !nsp.recovery_hooks_.allow(socket, session)) {
    ++counts.refused;
    return false;
  }
  socket.id_ = std::move(session.sid);
  socket.pid_ = std::make_unique<InlineId>(session.pid);
  socket.recovered_ = true;
  for (const auto& room : session.rooms) nsp.rooms_.join(socket, room);
  ++counts.recovered;
  counts.replayed += restored.missed.size();
  log_with(logger(), spdlog::level::debug,
           {{"sid", sid()}, {"socket", socket.id()}, {"namespace", nsp.name()}},
           "socket recovered: {} rooms, {} missed packets", session.rooms.size(),
           restored.missed.size());
  return true;
}

void Connection::accept(Socket& socket, const std::vector<OutgoingPacketPtr>& missed) {
  if (!usable()) return;
  auto hold = socket.shared_from_this();
  for (const auto& packet : missed) send(packet);
  socket.state_ = Socket::State::Connected;
  socket.nsp_->add_socket(socket);
  if (!joined_once_) {
    joined_once_ = true;
    server_.connect_deadlines_->remove(*this);
    if (!server_.options().keep_handshake_headers) engine_->drop_handshake_headers();
  }
  sio::Packet reply;
  reply.type = sio::Type::Connect;
  reply.nsp = socket.nsp_->name();
  reply.payload = R"({"sid":)" + dump_json(Json(socket.id_));
  if (socket.pid_) {
    reply.payload += R"(,"pid":)" + dump_json(Json(std::string(socket.pid_->view())));
  }
  reply.payload += "}";
  send_text(sio::encode(reply));
  // After the reply, so events emitted by the application follow it on the wire.
  if (socket.connected() && socket.nsp_->on_connection_) socket.nsp_->on_connection_(socket);
  RecoveryStore* store = server_.recovery_store_.get();
  if (store != nullptr && store->tracks_connected() && socket.pid_ && socket.connected()) {
    guarded("recovery track", [&] { store->connected(socket.recovery_snapshot()); });
  }
}

void Connection::disconnect_all(const std::string& reason) {
  // Moved out first: finish_disconnect() removes entries from sockets_.
  auto sockets = sockets_.take();
  for (auto& socket : sockets) {
    if (socket->state_ == Socket::State::Connected) {
      socket->finish_disconnect(reason);
    } else {
      socket->state_ = Socket::State::Disconnected;
      socket->nsp_->rooms_.leave_all(*socket);
      socket->connection_ = nullptr;
    }
  }
}

void Connection::teardown(const std::string& reason) {
  closing_ = true;
  server_.connect_deadlines_->remove(*this);
  if (binary_timer_) binary_timer_->cancel();
  binary_.reset();
  disconnect_all(reason);
}

//------------------------------------------------------------------------------------------------
// Ack

struct Ack::State {
  std::weak_ptr<Socket> socket;
  uint64_t id = 0;
  bool sent = false;
};

Ack::operator bool() const {
  return state_ && !state_->sent;
}

bool Ack::operator()(const RawArgs& raw_args, Attachments attachments) const {
  if (!state_ || state_->sent) return false;
  auto socket = state_->socket.lock();
  if (!socket || !socket->connected()) return false;
  // Checked before the ack counts as used, so the application can answer again within limits.
  if (!attachments_allowed(attachments.size(), "an ack")) return false;
  state_->sent = true;
  return socket->send_ack(state_->id, raw_args, std::move(attachments));
}

//------------------------------------------------------------------------------------------------
// Socket

struct Socket::Extras {
  struct PendingAck {
    AckCallback callback;
    std::unique_ptr<asio::steady_timer> timer;
  };
  std::unordered_map<std::string, EventHandler> handlers;
  AnyEventHandler on_any;
  DisconnectHandler on_disconnect;
  uint64_t next_ack_id = 0;
  std::unordered_map<uint64_t, PendingAck> pending_acks;
};

Socket::Socket(Key, std::string id, Namespace& nsp, Connection& connection, std::string auth_raw,
               Json auth)
    : id_(std::move(id)),
      nsp_(&nsp),
      connection_(&connection),
      last_transport_(connection.transport()),
      auth_raw_(std::move(auth_raw)),
      auth_(std::move(auth)) {}

// Defined here, where Extras is complete. Touches neither the namespace nor the connection:
// a socket may outlive both (held by the application).
Socket::~Socket() = default;

bool Socket::connected() const {
  return state_ == State::Connected && connection_ != nullptr && connection_->usable();
}

const Json& Socket::auth() const {
  static const Json empty = Json::object();
  return auth_.is_null() ? empty : auth_;
}

Socket::Extras& Socket::extras() {
  if (!extras_) extras_ = std::make_unique<Extras>();
  return *extras_;
}

const HandshakeInfo& Socket::handshake() const {
  EngineSocket* engine = connection_ ? connection_->engine_for_reading() : nullptr;
  return engine ? engine->handshake() : empty_handshake();
}

TransportKind Socket::transport() const {
  return connection_ ? connection_->transport() : last_transport_;
}

void Socket::on(const std::string& event, EventHandler handler) {
  extras().handlers[event] = std::move(handler);
}

void Socket::on_any(AnyEventHandler handler) {
  extras().on_any = std::move(handler);
}

void Socket::on_disconnect(DisconnectHandler handler) {
  extras().on_disconnect = std::move(handler);
}

bool Socket::send(const OutgoingPacketPtr& packet, bool is_volatile) {
  if (!connected() || !connection_ || !packet) return false;
  if (!packet->offset().empty()) {
    PacketTarget target;
    target.rooms.push_back(id_);
    nsp_->server_.record_sent(packet, std::move(target));
  }
  return connection_->send(packet, is_volatile);
}

bool Socket::emit(std::string_view event, const RawArgs& raw_args, Attachments attachments,
                  bool is_volatile) {
  if (!connected()) return false;
  auto packet = nsp_->encode_event(event, raw_args, attachments);
  return packet && send(packet, is_volatile);
}

bool Socket::emit_with_ack(std::string_view event, const RawArgs& raw_args, Attachments attachments,
                           AckCallback callback, std::chrono::milliseconds timeout) {
  if (!connected()) return false;
  if (sio::is_reserved_event(event)) {
    logger()->error("refusing to emit the reserved event name '{}'", event);
    return false;
  }
  if (!attachments_allowed(attachments.size(), "an event")) return false;
  Extras& state = extras();
  const uint64_t id = state.next_ack_id++;
  auto packet = build_packet(sio::Type::Event, nsp_->name(), id, event_payload(event, raw_args),
                             std::move(attachments));
  if (!send(packet)) return false;
  auto timer = std::make_unique<asio::steady_timer>(nsp_->server_.io());
  timer->expires_after(timeout);
  timer->async_wait([weak = weak_from_this(), alive = std::weak_ptr<int>(nsp_->server_.alive_),
                     id](const std::error_code& ec) {
    if (ec || alive.expired()) return;
    auto self = weak.lock();
    if (!self || !self->extras_) return;
    auto it = self->extras_->pending_acks.find(id);
    if (it == self->extras_->pending_acks.end()) return;
    auto callback = std::move(it->second.callback);
    self->extras_->pending_acks.erase(it);
    if (callback) guarded("ack timeout", [&] { callback(AckStatus::Timeout, {}, {}); });
  });
  state.pending_acks.emplace(id, Extras::PendingAck{std::move(callback), std::move(timer)});
  return true;
}

bool Socket::send_ack(uint64_t ack_id, const RawArgs& raw_args, Attachments attachments) {
  return send(build_packet(sio::Type::Ack, nsp_->name(), ack_id, sio::join_array(raw_args),
                           std::move(attachments)));
}

bool Socket::join(const std::string& room) {
  if (state_ == State::Disconnected) return false;
  const bool joined = nsp_->rooms_.join(*this, room);
  if (joined) report_rooms();
  return joined;
}

bool Socket::leave(const std::string& room) {
  if (state_ == State::Disconnected) return false;
  const bool left = nsp_->rooms_.leave(*this, room);
  if (left) report_rooms();
  return left;
}

void Socket::report_rooms() {
  RecoveryStore* store = nsp_->server_.recovery_store_.get();
  if (store == nullptr || !store->tracks_connected() || !pid_ || state_ != State::Connected) {
    return;
  }
  store->rooms_changed(std::string(pid()), rooms());
}

bool Socket::in_room(const std::string& room) const {
  if (room == id_) return state_ != State::Disconnected;
  return nsp_->rooms_.contains(*this, room);
}

// The index is the truth: the `disconnecting` hook still sees the rooms, `disconnect` none.
std::vector<std::string> Socket::rooms() const {
  return nsp_->rooms_of(*this);
}

void Socket::disconnect(bool close_transport) {
  if (!connected() || connection_ == nullptr) return;
  auto hold = shared_from_this();
  if (close_transport) {
    // Reference: every namespace of the client gets its DISCONNECT, then the transport closes.
    auto connection = connection_->shared_from_this();
    for (const auto& socket : connection->sockets_.snapshot()) {
      if (socket->connected()) socket->disconnect(false);
    }
    connection->close("forced server close");
    return;
  }
  sio::Packet packet;
  packet.type = sio::Type::Disconnect;
  packet.nsp = nsp_->name();
  connection_->send_text(sio::encode(packet));
  finish_disconnect("server namespace disconnect");
}

KeptSession Socket::recovery_snapshot() {
  KeptSession session;
  session.nsp = nsp_->name();
  session.sid = id_;
  session.pid = std::string(pid());
  session.rooms = rooms();
  if (nsp_->recovery_hooks_.save) session.app_data = nsp_->recovery_hooks_.save(*this);
  return session;
}

void Socket::keep_for_recovery(const std::string& reason) {
  KeptSession session = recovery_snapshot();
  session.disconnected_at = std::chrono::steady_clock::now();
  log_with(logger(), spdlog::level::debug,
           {{"socket", id_}, {"namespace", nsp_->name()}, {"reason", reason}},
           "socket kept for recovery");
  nsp_->server_.keep_session(std::move(session));
}

void Socket::finish_disconnect(const std::string& reason) {
  if (state_ != State::Connected) return;
  auto hold = shared_from_this();
  // Reference order: `disconnecting` while the rooms are still there, leave them, then
  // `disconnect`. The state changes first so a hook that calls disconnect() again is a no-op.
  // Each hook is guarded on its own: the bookkeeping between them must complete whatever the
  // application does, or the namespace would keep pointers to a freed socket.
  state_ = State::Disconnected;
  if (connection_ != nullptr) last_transport_ = connection_->transport();
  if (nsp_->on_disconnecting_) {
    guarded("disconnecting", [&] { nsp_->on_disconnecting_(*this, reason); });
  }
  if (RecoveryStore* store = nsp_->server_.recovery_store_.get()) {
    if (recoverable_disconnect(reason)) {
      guarded("recovery save", [&] { keep_for_recovery(reason); });
    } else if (store->tracks_connected() && pid_) {
      guarded("recovery forget", [&] { store->forgotten(std::string(pid())); });
    }
  }
  nsp_->rooms_.leave_all(*this);
  nsp_->remove_socket(*this);
  if (connection_ != nullptr) connection_->remove_socket(*this);
  connection_ = nullptr;
  if (extras_) {
    auto pending = std::move(extras_->pending_acks);
    extras_->pending_acks.clear();
    for (auto& entry : pending) {
      if (entry.second.timer) entry.second.timer->cancel();
      auto& callback = entry.second.callback;
      if (callback) guarded("ack", [&] { callback(AckStatus::Disconnected, {}, {}); });
    }
  }
  if (nsp_->on_disconnect_) guarded("disconnect", [&] { nsp_->on_disconnect_(*this, reason); });
  if (extras_ && extras_->on_disconnect) {
    guarded("disconnect", [&] { extras_->on_disconnect(*this, reason); });
  }
}

void Socket::dispatch_event(std::string_view event, const RawArgs& raw_args,
                            const Attachments& attachments, std::optional<uint64_t> ack_id) {
  Ack ack;
  if (ack_id) ack = Ack(std::make_shared<Ack::State>(Ack::State{weak_from_this(), *ack_id, false}));
  if (extras_) {
    auto it = extras_->handlers.find(std::string(event));
    if (it != extras_->handlers.end() && it->second) {
      it->second(*this, raw_args, attachments, std::move(ack));
      return;
    }
  }
  auto shared = nsp_->handlers_.find(std::string(event));
  if (shared != nsp_->handlers_.end() && shared->second) {
    shared->second(*this, raw_args, attachments, std::move(ack));
    return;
  }
  if (extras_ && extras_->on_any) {
    extras_->on_any(*this, event, raw_args, attachments, std::move(ack));
    return;
  }
  if (nsp_->on_any_) nsp_->on_any_(*this, event, raw_args, attachments, std::move(ack));
}

void Socket::dispatch_ack(uint64_t ack_id, const RawArgs& raw_args,
                          const Attachments& attachments) {
  if (!extras_) return;
  auto it = extras_->pending_acks.find(ack_id);
  if (it == extras_->pending_acks.end()) return;  // unknown or already answered: ignored
  auto callback = std::move(it->second.callback);
  if (it->second.timer) it->second.timer->cancel();
  extras_->pending_acks.erase(it);
  if (callback) callback(AckStatus::Ok, raw_args, attachments);
}

//------------------------------------------------------------------------------------------------
// Namespace

void Namespace::on(const std::string& event, EventHandler handler) {
  handlers_[event] = std::move(handler);
}

OutgoingPacketPtr Namespace::encode_event(std::string_view event, const RawArgs& raw_args,
                                          const Attachments& attachments) const {
  if (sio::is_reserved_event(event)) {
    logger()->error("refusing to emit the reserved event name '{}'", event);
    return nullptr;
  }
  if (!attachments_allowed(attachments.size(), "an event")) return nullptr;
  std::string offset;
  if (server_.recovery_store_) offset = server_.recovery_store_->next_offset();
  std::string payload = event_payload(event, raw_args, offset);
  return build_packet(sio::Type::Event, name_, std::nullopt, std::move(payload), attachments,
                      std::move(offset));
}

OutgoingPacketPtr Namespace::encode_event_at(std::string_view event, const RawArgs& raw_args,
                                             std::string offset) const {
  if (sio::is_reserved_event(event)) {
    logger()->error("refusing to emit the reserved event name '{}'", event);
    return nullptr;
  }
  std::string payload = event_payload(event, raw_args, offset);
  return build_packet(sio::Type::Event, name_, std::nullopt, std::move(payload), {},
                      std::move(offset));
}

bool Namespace::deliver(Socket& socket, const OutgoingPacketPtr& packet, bool is_volatile) {
  return socket.connected() && socket.connection_ != nullptr &&
         socket.connection_->send(packet, is_volatile);
}

namespace {

/// Room names resolved once per broadcast: named rooms to ids, own-id rooms to their socket.
/// A name may be both (a named room called like a socket id).
struct ResolvedRooms {
  std::vector<RoomIndex::RoomId> ids;
  std::vector<Socket*> sockets;

  template <class T>
  static void add_once(std::vector<T>& list, T value) {
    if (std::find(list.begin(), list.end(), value) == list.end()) list.push_back(value);
  }
};

}  // namespace

size_t Namespace::send_to(const std::vector<std::string>& rooms, const OutgoingPacketPtr& packet,
                          std::string_view except_id, const std::vector<std::string>& except_rooms,
                          bool is_volatile) {
  if (!packet || rooms.empty()) return 0;
  if (!packet->offset().empty()) {
    // Recorded whoever is here now: the members of these rooms who are away get it on restore.
    server_.record_sent(packet, PacketTarget{false, rooms, std::string(except_id), except_rooms});
  }
  // A close reported by the engine from inside send() is deferred (run_or_defer), so the member
  // vectors walked here cannot change under the loop. Names are resolved once; per member there
  // is no lookup and no allocation: membership tests scan the socket's few room slots.
  auto resolve = [this](const std::vector<std::string>& names, ResolvedRooms& into) {
    for (const auto& name : names) {
      const RoomIndex::RoomId id = rooms_.find(name);
      if (id != RoomIndex::kNoRoom) ResolvedRooms::add_once(into.ids, id);
      if (Socket* own = find(name)) ResolvedRooms::add_once(into.sockets, own);
    }
  };
  ResolvedRooms targets;
  ResolvedRooms excluded;
  resolve(rooms, targets);
  resolve(except_rooms, excluded);
  if (!except_id.empty()) {
    if (Socket* own = find(except_id)) ResolvedRooms::add_once(excluded.sockets, own);
  }
  auto is_excluded = [&](Socket* socket) {
    for (Socket* other : excluded.sockets) {
      if (other == socket) return true;
    }
    for (RoomIndex::RoomId id : excluded.ids) {
      if (RoomIndex::is_in(*socket, id)) return true;
    }
    return false;
  };
  // A member of several targeted rooms is served by the first of them that lists it.
  auto in_target_before = [&](const Socket& socket, size_t count) {
    for (size_t j = 0; j < count; ++j) {
      if (RoomIndex::is_in(socket, targets.ids[j])) return true;
    }
    return false;
  };
  size_t delivered = 0;
  for (size_t k = 0; k < targets.ids.size(); ++k) {
    for (RoomMember* member : rooms_.members(targets.ids[k])) {
      Socket* socket = socket_of(member);
      if (k > 0 && in_target_before(*socket, k)) continue;
      if (is_excluded(socket)) continue;
      if (deliver(*socket, packet, is_volatile)) ++delivered;
    }
  }
  for (Socket* socket : targets.sockets) {
    if (in_target_before(*socket, targets.ids.size()) || is_excluded(socket)) continue;
    if (deliver(*socket, packet, is_volatile)) ++delivered;
  }
  return delivered;
}

// Each recipient is a chain of cold objects (Socket -> Connection -> engine session -> WebSocket
// connection); walking 10,000 of them one after another stalls on every link. Prefetching one
// link per stage for recipients further down the dense list overlaps those misses (measured: one
// event to 10,000 clients went from 1.40x to 1.02x the time of a bare one-write-per-client loop,
// together with the direct write in WebSocketConnection::send).
void Namespace::prefetch_recipients_after(size_t i) const {
  constexpr size_t kSocketAhead = 12;
  constexpr size_t kConnectionAhead = 8;
  constexpr size_t kEngineAhead = 4;
  const size_t count = members_.size();
  if (i + kSocketAhead < count) __builtin_prefetch(members_[i + kSocketAhead]);
  if (i + kConnectionAhead < count) {
    if (const Connection* connection = members_[i + kConnectionAhead]->connection_) {
      __builtin_prefetch(connection);
    }
  }
  if (i + kEngineAhead < count) {
    const Connection* connection = members_[i + kEngineAhead]->connection_;
    if (connection != nullptr && connection->engine() != nullptr) connection->engine()->prefetch();
  }
}

size_t Namespace::send_all(const OutgoingPacketPtr& packet, std::string_view except_id,
                           bool is_volatile) {
  if (!packet) return 0;
  if (!packet->offset().empty()) {
    server_.record_sent(packet, PacketTarget{true, {}, std::string(except_id), {}});
  }
  size_t delivered = 0;
  const size_t count = members_.size();
  for (size_t i = 0; i < count; ++i) {
    prefetch_recipients_after(i);
    Socket* socket = members_[i];
    if (!except_id.empty() && socket->id_ == except_id) continue;
    if (deliver(*socket, packet, is_volatile)) ++delivered;
  }
  return delivered;
}

size_t Namespace::emit_to(const std::vector<std::string>& rooms, std::string_view except_id,
                          std::string_view event, const RawArgs& raw_args, Attachments attachments,
                          bool is_volatile) {
  auto packet = encode_event(event, raw_args, attachments);
  return send_to(rooms, packet, except_id, {}, is_volatile);
}

size_t Namespace::emit_all(std::string_view event, const RawArgs& raw_args, Attachments attachments,
                           std::string_view except_id, bool is_volatile) {
  auto packet = encode_event(event, raw_args, attachments);
  return send_all(packet, except_id, is_volatile);
}

void Namespace::drop_kept_sessions(std::function<bool(const KeptSession&)> match,
                                   std::function<void(size_t)> done) {
  RecoveryStore* store = server_.recovery_store_.get();
  if (store == nullptr) {
    if (done) done(0);
    return;
  }
  store->drop_if([match = std::move(match), nsp = name_](
                     const KeptSession& session) { return session.nsp == nsp && match(session); },
                 std::move(done));
}

Socket* Namespace::find(std::string_view id) const {
  auto it = sockets_.find(id);
  return it == sockets_.end() ? nullptr : it->second;
}

size_t Namespace::room_size(const std::string& room) const {
  size_t count = 0;
  const RoomIndex::RoomId id = rooms_.find(room);
  if (id != RoomIndex::kNoRoom) {
    for (RoomMember* member : rooms_.members(id)) {
      if (socket_of(member)->connected()) ++count;
    }
  }
  // The implicit own-id room.
  Socket* own = find(room);
  if (own != nullptr && own->connected() &&
      (id == RoomIndex::kNoRoom || !RoomIndex::is_in(*own, id))) {
    ++count;
  }
  return count;
}

std::vector<std::string> Namespace::rooms_of(const Socket& socket) const {
  return rooms_.rooms_of(socket);
}

void Namespace::for_each_socket(const std::function<void(Socket&)>& fn) const {
  std::vector<std::shared_ptr<Socket>> snapshot;
  snapshot.reserve(sockets_.size());
  for (const auto& entry : sockets_) snapshot.push_back(entry.second->shared_from_this());
  for (const auto& socket : snapshot) {
    if (socket->connected()) fn(*socket);
  }
}

void Namespace::add_socket(Socket& socket) {
  sockets_.emplace(socket.id_, &socket);
  socket.member_index_ = static_cast<uint32_t>(members_.size());
  members_.push_back(&socket);
}

void Namespace::remove_socket(Socket& socket) {
  auto it = sockets_.find(socket.id_);
  if (it != sockets_.end() && it->second == &socket) {
    sockets_.erase(it);
    const uint32_t index = socket.member_index_;
    if (index < members_.size() && members_[index] == &socket) {
      members_[index] = members_.back();
      members_[index]->member_index_ = index;
      members_.pop_back();
    }
  }
}

//------------------------------------------------------------------------------------------------
// SocketIoServer

//------------------------------------------------------------------------------------------------
// SocketIoServer::ConnectDeadlines

void SocketIoServer::ConnectDeadlines::add(Connection& connection, Clock::time_point at) {
  connection.connect_due_queued_ = true;
  connection.connect_due_at_ = at;
  connection.connect_due_prev_ = tail;
  connection.connect_due_next_ = nullptr;
  (tail != nullptr ? tail->connect_due_next_ : head) = &connection;
  tail = &connection;
  if (!armed) arm();
}

void SocketIoServer::ConnectDeadlines::remove(Connection& connection) {
  if (!connection.connect_due_queued_) return;
  Connection* prev = connection.connect_due_prev_;
  Connection* next = connection.connect_due_next_;
  (prev != nullptr ? prev->connect_due_next_ : head) = next;
  (next != nullptr ? next->connect_due_prev_ : tail) = prev;
  connection.connect_due_prev_ = connection.connect_due_next_ = nullptr;
  connection.connect_due_queued_ = false;
  if (head == nullptr && armed) {
    // Nothing left to time: a pending wait would keep io_context::run() busy for nothing.
    armed = false;
    timer.cancel();
  }
}

void SocketIoServer::ConnectDeadlines::arm() {
  if (head == nullptr) return;
  armed = true;
  timer.expires_at(head->connect_due_at_);
  timer.async_wait([this, alive = std::weak_ptr<int>(server.alive_)](const std::error_code& ec) {
    if (ec || alive.expired()) return;
    armed = false;
    on_timer();
  });
}

void SocketIoServer::ConnectDeadlines::on_timer() {
  const auto now = Clock::now();
  while (head != nullptr && head->connect_due_at_ <= now) {
    auto connection = head->shared_from_this();
    remove(*connection);
    if (connection->joined_once_ || !connection->usable()) continue;
    log_with(logger(), spdlog::level::debug,
             {{"sid", connection->sid()}, {"reason", "no namespace joined within connectTimeout"}},
             "closing Engine.IO session");
    connection->close("forced close");
  }
  if (!armed) arm();
}

struct SocketIoServer::RecoveryTimer {
  explicit RecoveryTimer(asio::io_context& io) : timer(io) {}
  asio::steady_timer timer;
};

SocketIoServer::SocketIoServer(asio::io_context& io, SocketIoOptions options,
                               std::unique_ptr<RecoveryStore> store)
    : io_(io),
      options_(options),
      connect_deadlines_(std::make_unique<ConnectDeadlines>(*this, io)) {
  of("/");
  if (options_.recovery.enabled) {
    recovery_timer_ = std::make_unique<RecoveryTimer>(io);
    set_recovery_store(store ? std::move(store)
                             : std::make_unique<MemoryRecoveryStore>(options_.recovery));
  }
}

//------------------------------------------------------------------------------------------------
// SocketIoServer: connection state recovery

namespace {
/// How often kept sessions and recorded packets are checked for expiry (socket.io: 60 s; a
/// shorter period bounds how long past maxDisconnectionDuration memory is held and how late
/// RecoveryHooks::expired fires).
constexpr auto kRecoverySweepPeriod = std::chrono::seconds(1);
}  // namespace

void SocketIoServer::release_socket_data() {
  for (const auto& connection : connections_) {
    for (const auto& socket : connection->sockets_.snapshot()) socket->data_.reset();
  }
}

void SocketIoServer::set_recovery_store(std::unique_ptr<RecoveryStore> store) {
  if (!options_.recovery.enabled || !store) return;
  recovery_store_ = std::move(store);
  arm_recovery_sweep();
}

RecoveryCounts SocketIoServer::recovery_counts() const {
  if (!recovery_store_) return {};
  RecoveryCounts counts = recovery_store_->counts();
  counts.recovered += restore_counts_.recovered;
  counts.refused += restore_counts_.refused;
  counts.replayed += restore_counts_.replayed;
  return counts;
}

void SocketIoServer::record_sent(const OutgoingPacketPtr& packet, PacketTarget target) {
  if (!recovery_store_) return;
  recovery_store_->record(packet->offset(), std::move(target), packet);
  if (!recovery_sweep_armed_) arm_recovery_sweep();
}

void SocketIoServer::keep_session(KeptSession session) {
  if (!recovery_store_) return;
  recovery_store_->keep(std::move(session));
  if (!recovery_sweep_armed_) arm_recovery_sweep();
}

void SocketIoServer::arm_recovery_sweep() {
  if (recovery_sweep_armed_ || shutting_down_ || !recovery_store_ || !recovery_timer_) return;
  if (!recovery_store_->sweeps_always() && recovery_store_->session_count() == 0 &&
      recovery_store_->packet_count() == 0) {
    return;
  }
  recovery_sweep_armed_ = true;
  recovery_timer_->timer.expires_after(kRecoverySweepPeriod);
  recovery_timer_->timer.async_wait(
      [this, alive = std::weak_ptr<int>(alive_)](const std::error_code& ec) {
        if (ec || alive.expired()) return;
        recovery_sweep_armed_ = false;
        sweep_recovery();
        arm_recovery_sweep();
      });
}

void SocketIoServer::sweep_recovery() {
  recovery_store_->sweep(std::chrono::steady_clock::now(), [this](const KeptSession& session) {
    Namespace* nsp = find_namespace(session.nsp);
    if (nsp == nullptr || !nsp->recovery_hooks_.expired) return;
    guarded("recovery expired", [&] { nsp->recovery_hooks_.expired(session); });
  });
}

SocketIoServer::~SocketIoServer() {
  alive_.reset();
  // The engine may outlive this object: leave it no pointer into us.
  for (auto& connection : connections_) {
    if (EngineSocket* engine = connection->engine()) engine->user_data = nullptr;
  }
}

Namespace& SocketIoServer::of(const std::string& name) {
  std::string key = normalize_nsp(name);
  auto it = namespaces_.find(key);
  if (it != namespaces_.end()) return *it->second;
  auto created = std::unique_ptr<Namespace>(new Namespace(key, *this));
  auto& result = *created;
  namespaces_.emplace(std::move(key), std::move(created));
  return result;
}

Namespace* SocketIoServer::find_namespace(std::string_view name) const {
  auto it = namespaces_.find(std::string(name));
  return it == namespaces_.end() ? nullptr : it->second.get();
}

void SocketIoServer::run_or_defer(std::function<void()> fn) {
  if (engine_call_depth_ == 0) {
    fn();
    return;
  }
  asio::post(io_, [alive = std::weak_ptr<int>(alive_), fn = std::move(fn)]() {
    if (!alive.expired()) fn();
  });
}

void SocketIoServer::on_open(EngineSocket& socket) {
  auto connection = std::make_shared<Connection>(*this, socket);
  socket.user_data = connection.get();
  connection->index_ = static_cast<uint32_t>(connections_.size());
  connections_.push_back(connection);
  connect_deadlines_->add(*connection, std::chrono::steady_clock::now() +
                                           std::chrono::milliseconds(options_.connect_timeout_ms));
}

void SocketIoServer::on_message(EngineSocket& socket, std::string_view data, bool binary) {
  auto* raw = static_cast<Connection*>(socket.user_data);
  if (raw == nullptr) return;
  auto connection = raw->shared_from_this();  // held: a handler may close the session under us
  try {
    connection->handle_message(data, binary);
  } catch (const std::exception&) {
    // Only application handlers can throw here (the codecs do not). A client must not be able
    // to take the node down through one; the message is not logged, it may carry the payload.
    logger()->error("an event handler threw; closing the Engine.IO session");
    connection->close("forced close");
  }
}

void SocketIoServer::on_close(EngineSocket& socket, const std::string& reason) {
  if (reason == "server shutting down" && !shutting_down_) {
    // Sessions are still kept (a cluster store outlives this process), but the sweep stops so
    // that io_context::run() can return once the sessions are closed.
    shutting_down_ = true;
    if (recovery_timer_) recovery_timer_->timer.cancel();
    recovery_sweep_armed_ = false;
  }
  auto* raw = static_cast<Connection*>(socket.user_data);
  if (raw == nullptr || raw->index_ >= connections_.size() ||
      connections_[raw->index_].get() != raw) {
    return;
  }
  const uint32_t index = raw->index_;
  auto connection = std::move(connections_[index]);
  if (index + 1 != connections_.size()) {
    // Swap-remove: the last connection takes the freed slot.
    connections_[index] = std::move(connections_.back());
    connections_[index]->index_ = index;
  }
  connections_.pop_back();
  socket.user_data = nullptr;
  connect_deadlines_->remove(*connection);
  connection->transport_ = socket.transport();
  connection->engine_gone_ = true;
  if (engine_call_depth_ == 0) {
    // The engine is readable until we return, so disconnect hooks still see the handshake.
    guarded("disconnect", [&] { connection->teardown(reason); });
    connection->engine_ = nullptr;
    return;
  }
  connection->engine_ = nullptr;
  run_or_defer(
      [connection, reason]() { guarded("disconnect", [&] { connection->teardown(reason); }); });
}

}  // namespace steedos::gateway
