#pragma once
// The gateway's one TCP acceptor: HTTP/1.1 (keep-alive, no pipelining) for Engine.IO
// long-polling, CORS preflights and a few static files, and the WebSocket upgrade, after which
// the connection belongs to gateway/websocket_connection (spec: socketio-server.md §1,
// websocket-data-path.md). Requests are parsed with websocketpp's HTTP parser; websocketpp is
// included by http_server.cpp only.
//
// Threading: single-threaded. Construct, call and destroy it on the thread that runs the
// io_context (construct it with io_context(1)); the engine handlers are called on that thread.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/engine.hpp"
#include "gateway/origin_policy.hpp"

namespace asio {
class io_context;
}

namespace steedos::gateway {

class EngineServer;
struct HttpResponse;  // gateway/engine_server.hpp

struct ServerOptions {
  std::string host = "0.0.0.0";
  uint16_t port = 0;  // 0: an ephemeral port, returned by listen()
  /// Which browser Origins may use the engines (CORS and the WebSocket upgrade). The default
  /// serves the gateway's own site only; a refused Origin gets 403 and no CORS headers.
  OriginPolicy origins;
  /// Request line + headers; larger heads are refused with 431. The HTTP parser refuses heads
  /// over 16000 bytes by itself, so a larger value has no effect.
  size_t max_header_bytes = 16000;
  /// A keep-alive connection with no request in progress is closed after this.
  std::chrono::milliseconds idle_timeout{60000};
  /// The whole request head must arrive within this of its first byte, else 408 and close
  /// (slow headers). Armed once per request: a client trickling bytes does not extend it.
  std::chrono::milliseconds headers_timeout{10000};
  /// A request body must be complete within this of the end of its head, else 408; also the
  /// time a client has to take a response.
  std::chrono::milliseconds read_timeout{30000};
  /// TCP connections open at once (HTTP and WebSocket); over it a new connection gets 503 and is
  /// closed. 0: no limit.
  size_t max_connections = 0;
  /// As max_connections, per remote IP address. 0: no limit.
  size_t max_connections_per_address = 0;
  /// Threads that write WebSocket output, the loop thread included (WriteScheduler). 1: the
  /// loop thread alone.
  size_t io_threads = 1;
};

class GatewayServer {
 public:
  GatewayServer(asio::io_context& io, ServerOptions options);
  /// Calls stop() if it was not called: the engine handlers must still be alive.
  ~GatewayServer();
  GatewayServer(const GatewayServer&) = delete;
  GatewayServer& operator=(const GatewayServer&) = delete;

  /// Serves Engine.IO at options.path (with and without the trailing slash, and below it).
  /// `handler` must outlive the server. Several engines may be mounted on distinct paths.
  void mount_engine(EngineOptions options, EngineHandler& handler);
  /// GET/HEAD of exactly `url_path` returns the file (read on each request, ETag + 304).
  /// Checked before the engine paths, so a file may sit under an engine path.
  void mount_file(std::string url_path, std::string file_path, std::string content_type);
  /// GET/HEAD of exactly `url_path` answers what `handler` returns, computed per request (HEAD
  /// without the body); other methods get 405. Checked before files and engines, with no
  /// Origin check (for probes such as /health). `handler` runs on the loop thread.
  void mount_handler(std::string url_path, std::function<HttpResponse()> handler);
  /// GET/HEAD below `url_prefix` serve files of `dir` (index.html for the prefix itself and
  /// for subfolders); paths with `..` segments are refused.
  void mount_directory(std::string url_prefix, std::string dir);

  /// Binds and starts accepting. Returns the bound port (useful with port 0). Throws
  /// std::runtime_error naming the address when it cannot bind (e.g. the port is taken).
  uint16_t listen();
  /// Closes every session (reason "server shutting down"), the acceptor and every HTTP
  /// connection. The io_context's run() returns once the closing handshakes end (≤ 1 s).
  void stop();
  /// Closes the acceptor only (the first step of a drain): new connections are refused, open
  /// ones are served until stop().
  void stop_accepting();
  /// TCP connections not yet closed: HTTP connections plus WebSocket connections, open or in
  /// their closing handshake. After stop(), the drain is complete when this reaches 0.
  size_t open_connections() const;
  /// Calls `fn` on the loop thread once the WebSocket output queued so far has been written (at
  /// the end of this loop turn, on every write thread), or at once when nothing is queued.
  void after_writes(std::function<void()> fn);
  size_t io_threads() const;

  struct Stats {
    size_t polling = 0;            // open long-polling sessions
    size_t websocket = 0;          // open WebSocket sessions
    size_t http_connections = 0;   // TCP connections speaking HTTP (not upgraded)
    uint64_t refused_origins = 0;  // engine requests refused for their Origin (403)
    /// What each connection-level limit refused or closed, since the server was made.
    struct Limits {
      uint64_t connections = 0;              // over max_connections (503)
      uint64_t connections_per_address = 0;  // over max_connections_per_address (503)
      uint64_t handshake_rate = 0;           // over max_handshakes_per_second (503)
      uint64_t polling_sessions = 0;         // over max_polling_sessions (503)
      uint64_t slow_consumers = 0;           // sessions closed over max_buffered_bytes
      uint64_t header_size = 0;              // heads over max_header_bytes (431)
      uint64_t headers_timeout = 0;          // heads not complete within headers_timeout (408)
      uint64_t message_size = 0;   // WebSocket messages (1009) or POST bodies (413) too large
      uint64_t accept_paused = 0;  // episodes of accept failing (EMFILE/ENFILE): paused, retried
    } limits;
  };
  Stats stats() const;

  /// The engine mounted at `path`, or nullptr (for tests and diagnostics).
  EngineServer* engine(std::string_view path) const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace steedos::gateway
