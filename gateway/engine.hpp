#pragma once
// The Engine.IO v4 server seen from the layer above (Socket.IO): sessions that open, receive
// messages, take shared outgoing packets and close. Transports (HTTP long-polling, WebSocket,
// the upgrade between them), heartbeats, HTTP parsing and CORS live below this line
// (spec: socketio-server.md §1). Everything runs on one io_context thread.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/compact_string_map.hpp"
#include "gateway/outgoing.hpp"

namespace steedos::gateway {

enum class TransportKind : uint8_t { Polling, WebSocket };

/// What the handshake request carried, kept per session for the application (auth reads the
/// Cookie and Authorization headers). Header names are lower-case. For a session opened over
/// WebSocket, the handshake's own headers (Connection, Upgrade, Sec-WebSocket-Key/-Version/
/// -Extensions) are not kept; EngineOptions can narrow what is kept further.
struct HandshakeInfo {
  /// The request's URL and query, kept together out of line: a session that does not keep
  /// them (EngineOptions::keep_handshake_url) holds one null pointer.
  struct Url {
    std::string url;
    CompactStringMap query;
  };

  CompactStringMap headers;  // names lower-case; EngineOptions::handshake_headers only if set
  std::string remote_address;
  std::chrono::system_clock::time_point time;
  std::unique_ptr<const Url> request_url;  // null unless EngineOptions::keep_handshake_url

  /// The request-target as sent (path and query); empty when not kept.
  const std::string& url() const;
  /// The URL-decoded query parameters; empty when not kept.
  const CompactStringMap& query() const;
};

struct EngineOptions {
  std::string path = "/engine.io/";  // also answered without the trailing slash
  int ping_interval_ms = 25000;
  int ping_timeout_ms = 20000;
  int upgrade_timeout_ms = 10000;
  size_t max_payload = 1000000;  // maxHttpBufferSize: POST bodies and WebSocket messages, bytes
  bool allow_upgrades = true;
  /// Bytes queued for one session before it is closed as a slow consumer.
  size_t max_buffered_bytes = 4 * 1024 * 1024;
  /// New sessions (handshakes without a sid, polling or WebSocket) per second, as a token
  /// bucket whose burst is the rate; over it the handshake gets 503. 0: no limit.
  double max_handshakes_per_second = 0;
  /// Long-polling sessions not (yet) upgraded; over it new polling handshakes get 503
  /// (WebSocket handshakes are still taken). 0: no limit.
  size_t max_polling_sessions = 0;
  /// The handshake headers kept per session (HandshakeInfo::headers): the lower-case names the
  /// application reads. nullopt keeps them all. Every byte kept stays for the session's life.
  std::optional<std::vector<std::string>> handshake_headers;
  /// Keep the handshake's URL and query per session (HandshakeInfo::url, query). The engine's
  /// own parameters (`b64`) are read at the handshake either way.
  bool keep_handshake_url = true;
};

/// One Engine.IO session (sid), whatever its transport. Owned by the engine; valid from
/// on_open until on_close returns.
class EngineSocket {
 public:
  virtual ~EngineSocket() = default;
  /// The sid, valid as long as the session.
  virtual std::string_view id() const = 0;
  virtual TransportKind transport() const = 0;
  virtual const HandshakeInfo& handshake() const = 0;
  /// Queues a packet. A volatile packet is dropped (returns false) when the transport cannot
  /// write now. Exceeding max_buffered_bytes closes the session (reason "slow consumer").
  /// Never calls the handler: a close it causes is reported on a later loop turn.
  virtual bool send(const OutgoingPacketPtr& packet, bool is_volatile = false) = 0;
  /// Closes the session after flushing what is queued (a `1` close packet is sent; a polling
  /// client without a pending GET gets it on its next one). on_close(reason) follows on a later
  /// loop turn, never from inside close().
  virtual void close(const std::string& reason) = 0;
  virtual size_t buffered_bytes() const = 0;
  /// Brings the session's and its transport's hot state into cache (broadcast loops).
  virtual void prefetch() const {}
  /// Drops the kept handshake headers (HandshakeInfo::headers), once the application has read
  /// what it needs: an idle session then holds no copy of its credentials.
  virtual void drop_handshake_headers() = 0;
  /// Free for the layer above (the Socket.IO connection of this session).
  void* user_data = nullptr;
};

/// Implemented by the layer above. Calls come from the io_context thread.
class EngineHandler {
 public:
  virtual ~EngineHandler() = default;
  virtual void on_open(EngineSocket& socket) = 0;
  /// One Engine.IO message: text (without the '4') or binary.
  virtual void on_message(EngineSocket& socket, std::string_view data, bool binary) = 0;
  /// The session is gone (reason: "transport close", "ping timeout", "parse error",
  /// "forced close", "slow consumer", "server shutting down", ...). Do not touch it afterwards.
  virtual void on_close(EngineSocket& socket, const std::string& reason) = 0;
};

}  // namespace steedos::gateway
