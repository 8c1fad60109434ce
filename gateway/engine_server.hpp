#pragma once
// The Engine.IO v4 server for one path (spec: socketio-server.md §1): handshake and its error
// codes, sessions keyed by sid (never by TCP connection), HTTP long-polling (parked GETs, POST
// bodies, one of each at a time), WebSocket sessions, the polling → WebSocket upgrade, and the
// server-side heartbeat. The HTTP layer (gateway/http_server.cpp) parses requests, applies CORS
// and hands requests and upgraded connections over through the small types below, so this file
// needs neither websocketpp nor the HTTP parser.
//
// Threading: single-threaded; every call comes from the thread running the io_context, and so do
// the EngineHandler callbacks.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/token_bucket.hpp"
#include "gateway/connection_limits.hpp"
#include "gateway/engine.hpp"
#include "gateway/outgoing.hpp"

namespace asio {
class io_context;
}

namespace steedos::gateway {

class EngineSession;
class WebSocketConnection;
class WriteScheduler;

/// A parsed HTTP request as the engine sees it.
struct HttpRequest {
  std::string method;
  std::string target;                          // request-target as sent (path and query)
  std::string path;                            // percent-encoded path, without the query
  std::map<std::string, std::string> query;    // URL-decoded; the first of duplicates wins
  std::map<std::string, std::string> headers;  // names lower-case
  std::string body;
  std::string remote_address;
  bool upgrade = false;  // a WebSocket upgrade request (validated by the HTTP layer)

  const std::string* header(const std::string& lower_name) const;
  const std::string* param(const std::string& name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  /// `{"code":N,"message":"..."}` with Content-Type application/json (status 400 unless told).
  static HttpResponse engine_error(int code, std::string_view message, int status = 400);
};

/// One HTTP request waiting for its answer. A long-polling GET is parked on it until data is
/// queued; the HTTP connection may go away first, which it reports through on_abort.
class HttpExchange {
 public:
  virtual ~HttpExchange() = default;
  /// Sends the response; only the first call counts. Does nothing once the peer is gone.
  virtual void respond(HttpResponse response) = 0;
  /// Set by whoever parks the request; called (once) if the TCP connection closes before
  /// respond(). Cleared by the owner when it answers.
  std::function<void()> on_abort;
};

class EngineServer {
 public:
  EngineServer(asio::io_context& io, EngineOptions options, EngineHandler& handler,
               std::shared_ptr<WriteScheduler> scheduler);
  /// Reports every open session closed ("server shutting down"): the handler must outlive this.
  ~EngineServer();
  EngineServer(const EngineServer&) = delete;
  EngineServer& operator=(const EngineServer&) = delete;

  const EngineOptions& options() const { return options_; }
  /// The configured path, with and without the trailing slash, or anything below it.
  bool matches(std::string_view path) const;

  /// A plain HTTP request on the path: handshake, long-poll GET or POST. Answered through
  /// `exchange`, now or later.
  void handle_request(HttpRequest request, const std::shared_ptr<HttpExchange>& exchange);
  /// Checks an upgrade request before the 101 is sent: nullopt when the engine accepts it,
  /// otherwise the error response to send (the HTTP layer then closes the connection).
  std::optional<HttpResponse> check_upgrade(const HttpRequest& request);
  /// Takes an upgraded connection (101 already queued on it): a new WebSocket session, or the
  /// upgrade candidate of the polling session named by `sid`.
  void accept_websocket(HttpRequest request, std::shared_ptr<WebSocketConnection> connection);

  /// Closes every session (WebSocket: `1` then close frame 1001; a parked GET gets `1`) and
  /// reports each to the handler synchronously.
  void close_all(const std::string& reason);

  size_t polling_sessions() const { return polling_count_; }
  size_t websocket_sessions() const { return websocket_count_; }

  /// What the engine's limits refused or closed, since it was made.
  struct Refusals {
    uint64_t handshake_rate = 0;    // handshakes over max_handshakes_per_second (503)
    uint64_t polling_sessions = 0;  // polling handshakes over max_polling_sessions (503)
    uint64_t slow_consumers = 0;    // sessions closed over max_buffered_bytes
    uint64_t message_size = 0;      // WebSocket messages over max_payload (close 1009)
  };
  const Refusals& refusals() const { return refusals_; }
  /// The open session `sid`, or nullptr (for tests and diagnostics).
  EngineSocket* find(std::string_view sid) const;

 private:
  friend class EngineSession;
  using Clock = std::chrono::steady_clock;

  /// Heartbeat deadlines. Every entry of one queue was scheduled with the same delay (the ping
  /// interval, the ping timeout, or the closing grace period) from a non-decreasing "now", so
  /// appending keeps each queue sorted and one timer per engine replaces one per session: an
  /// idle session costs two pointers and a time point instead of a timer and its pending wait.
  enum class Due : uint8_t { None, Ping, Pong, Drop };
  struct DueQueue {
    EngineSession* head = nullptr;
    EngineSession* tail = nullptr;
  };
  struct TimerHolder;

  void schedule(EngineSession& session, Due kind, Clock::time_point at);
  void unschedule(EngineSession& session);
  void on_timer();
  void rearm();

  std::shared_ptr<EngineSession> lookup(std::string_view sid);
  std::optional<HttpResponse> verify(const HttpRequest& request, bool upgrade,
                                     std::shared_ptr<EngineSession>* session);
  void handshake_polling(HttpRequest request, const std::shared_ptr<HttpExchange>& exchange);
  /// The 503 for a new session over max_polling_sessions or max_handshakes_per_second, or
  /// nullopt when it may be made (a token is then taken).
  std::optional<HttpResponse> refuse_new_session(TransportKind transport,
                                                 const HttpRequest& request);
  std::shared_ptr<EngineSession> create_session(TransportKind transport, HttpRequest& request);
  /// The handshake headers a session keeps (EngineOptions::handshake_headers); moves them out.
  CompactStringMap kept_headers(HttpRequest& request) const;
  void open_session(const std::shared_ptr<EngineSession>& session);
  /// Forgets `sid` at once (later requests get "Session ID unknown").
  void erase(std::string_view sid);

  asio::io_context& io_;
  EngineOptions options_;
  std::string path_;  // without the trailing slash
  EngineHandler& handler_;
  std::shared_ptr<WriteScheduler> scheduler_;
  /// Keyed by views of EngineSession::id(): the sid is stored once.
  std::unordered_map<std::string_view, std::shared_ptr<EngineSession>> sessions_;
  /// Sessions closed by close()/send() whose on_close is posted to the next loop turn, with
  /// the reason to report.
  std::map<std::shared_ptr<EngineSession>, std::string> pending_notifications_;
  size_t polling_count_ = 0;
  size_t websocket_count_ = 0;
  TokenBucket handshakes_;
  Refusals refusals_;
  OutgoingPacketPtr ping_;
  OutgoingPacketPtr noop_;
  OutgoingPacketPtr close_;
  OutgoingPacketPtr probe_;
  DueQueue due_[3];  // Ping, Pong, Drop
  std::unique_ptr<TimerHolder> timer_;
  Clock::time_point timer_at_{};
  bool timer_armed_ = false;
  /// Lets a timer handler that outlives the server notice it is gone.
  std::shared_ptr<char> alive_ = std::make_shared<char>();
};

}  // namespace steedos::gateway
