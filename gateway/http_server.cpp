#include "gateway/http_server.hpp"

// The only websocketpp includes of the gateway's transport: the HTTP request parser and the
// handshake's SHA-1 / base64 (small headers; none of websocketpp's connection machinery).
#include <websocketpp/base64/base64.hpp>
#include <websocketpp/http/request.hpp>
#include <websocketpp/sha1/sha1.hpp>
//
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <asio/basic_socket_acceptor.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/v6_only.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "common/ascii.hpp"
#include "common/log.hpp"
#include "gateway/connection_limits.hpp"
#include "gateway/engine_server.hpp"
#include "gateway/http_request.hpp"
#include "gateway/websocket_connection.hpp"

namespace steedos::gateway {
namespace {

using Acceptor = asio::basic_socket_acceptor<asio::ip::tcp, asio::io_context::executor_type>;
using Clock = std::chrono::steady_clock;
using Timer =
    asio::basic_waitable_timer<Clock, asio::wait_traits<Clock>, asio::io_context::executor_type>;

// Shared by every HTTP connection of the thread: a connection keeps only unparsed bytes.
constexpr size_t kReadBufferSize = 16 * 1024;
thread_local char t_read_buffer[kReadBufferSize];

// Bodies on routes that take none (static files, 404s) are read and dropped up to this size.
constexpr size_t kMaxOtherBody = 64 * 1024;
// After an error response with `Connection: close`, unread request bytes are drained this long
// before closing, so the client sees the response instead of a reset.
constexpr std::chrono::milliseconds kLingerTimeout{2000};

const std::shared_ptr<spdlog::logger>& log() {
  static const auto logger = component_logger("gateway");
  return logger;
}

std::string reason_phrase(int status) {
  if (status == 431) return "Request Header Fields Too Large";
  return websocketpp::http::status_code::get_string(
      static_cast<websocketpp::http::status_code::value>(status));
}

std::string websocket_accept(const std::string& key) {
  static constexpr char kGuid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  const std::string input = key + kGuid;
  unsigned char digest[20];
  websocketpp::sha1::calc(input.data(), input.size(), digest);
  return websocketpp::base64_encode(digest, sizeof digest);
}

std::string_view extension_of(std::string_view path) {
  const size_t slash = path.rfind('/');
  const size_t dot = path.rfind('.');
  if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash)) return {};
  return path.substr(dot + 1);
}

std::string mime_type(std::string_view path) {
  static const std::map<std::string, std::string, std::less<>> kTypes = {
      {"html", "text/html; charset=UTF-8"},
      {"htm", "text/html; charset=UTF-8"},
      {"js", "application/javascript; charset=UTF-8"},
      {"mjs", "application/javascript; charset=UTF-8"},
      {"css", "text/css; charset=UTF-8"},
      {"json", "application/json; charset=UTF-8"},
      {"map", "application/json; charset=UTF-8"},
      {"txt", "text/plain; charset=UTF-8"},
      {"svg", "image/svg+xml"},
      {"png", "image/png"},
      {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},
      {"ico", "image/x-icon"},
      {"wasm", "application/wasm"},
      {"woff", "font/woff"},
      {"woff2", "font/woff2"},
  };
  const auto it = kTypes.find(ascii::lower(extension_of(path)));
  return it == kTypes.end() ? "application/octet-stream" : it->second;
}

HttpResponse text_response(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.content_type = "text/plain; charset=UTF-8";
  response.body = std::move(body);
  return response;
}

/// A `GET`/`HEAD` of one file: 200 with the bytes, 304 when If-None-Match matches, 404 when it
/// cannot be read. The ETag is size + modification time, so a changed file is re-sent.
HttpResponse file_response(const std::string& file, const std::string& content_type,
                           const std::string* if_none_match) {
  struct stat info {};
  if (::stat(file.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) {
    return text_response(404, "Not Found");
  }
  char etag[64];
  std::snprintf(etag, sizeof etag, "\"%llx-%llx\"", static_cast<unsigned long long>(info.st_size),
                static_cast<unsigned long long>(info.st_mtim.tv_sec) * 1000000000ULL +
                    static_cast<unsigned long long>(info.st_mtim.tv_nsec));
  HttpResponse response;
  response.headers.emplace_back("ETag", etag);
  response.headers.emplace_back("Cache-Control", "no-cache");
  if (if_none_match != nullptr && *if_none_match == etag) {
    response.status = 304;
    return response;
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) return text_response(404, "Not Found");
  std::ostringstream contents;
  contents << in.rdbuf();
  response.content_type = content_type;
  response.body = std::move(contents).str();
  return response;
}

struct FileMount {
  std::string file;
  std::string content_type;
};

struct DirectoryMount {
  std::string prefix;  // without the trailing slash
  std::string dir;
};

}  // namespace

class HttpConnection;

// ---------------------------------------------------------------------------------------------

class GatewayServer::Impl : public std::enable_shared_from_this<GatewayServer::Impl> {
 public:
  Impl(asio::io_context& io_context, ServerOptions server_options)
      : io(io_context),
        options(std::move(server_options)),
        acceptor(io_context.get_executor()),
        retry_timer(io_context.get_executor()),
        scheduler(std::make_shared<WriteScheduler>(io_context, options.io_threads)) {}

  void accept();
  EngineServer* engine_for(std::string_view path) const {
    for (const auto& engine : engines) {
      if (engine->matches(path)) return engine.get();
    }
    return nullptr;
  }
  const DirectoryMount* directory_for(std::string_view path) const {
    for (const auto& mount : directories) {  // longest prefix first
      if (path.substr(0, mount.prefix.size()) == mount.prefix &&
          (path.size() == mount.prefix.size() || path[mount.prefix.size()] == '/')) {
        return &mount;
      }
    }
    return nullptr;
  }

  /// Checks a just-accepted connection against max_connections and
  /// max_connections_per_address; refuses it (503, closed) and returns false when over.
  bool admit(TcpSocket& socket, const std::string& address);
  void on_accept_error(const asio::error_code& ec);
  /// Holds one unit of the per-address count of `address` while the connection lives.
  std::shared_ptr<void> occupy(const std::string& address);

  asio::io_context& io;
  ServerOptions options;
  Acceptor acceptor;
  Timer retry_timer;
  AcceptBackoff accept_backoff;
  Clock::time_point accept_paused_at{};
  std::shared_ptr<WriteScheduler> scheduler;
  std::vector<std::unique_ptr<EngineServer>> engines;
  std::map<std::string, FileMount, std::less<>> files;
  std::map<std::string, std::function<HttpResponse()>, std::less<>> handlers;
  std::vector<DirectoryMount> directories;
  std::unordered_set<HttpConnection*> connections;
  /// Open TCP connections per remote address (only with max_connections_per_address).
  std::unordered_map<std::string, size_t> per_address;
  uint64_t refused_origins = 0;
  GatewayServer::Stats::Limits limits;  // the engines' refusals are added by stats()
  bool stopped = false;
};

// ---------------------------------------------------------------------------------------------

/// The answer slot of one request; a parked long-poll GET holds it until data comes.
class ConnectionExchange final : public HttpExchange {
 public:
  ConnectionExchange(std::weak_ptr<HttpConnection> connection, uint64_t sequence)
      : connection_(std::move(connection)), sequence_(sequence) {}
  void respond(HttpResponse response) override;
  /// The connection closed before the answer.
  void abort() {
    if (done_) return;
    done_ = true;
    auto callback = std::move(on_abort);
    on_abort = nullptr;
    if (callback) callback();
  }

 private:
  std::weak_ptr<HttpConnection> connection_;
  uint64_t sequence_;
  bool done_ = false;
};

class HttpConnection : public std::enable_shared_from_this<HttpConnection> {
 public:
  HttpConnection(std::shared_ptr<GatewayServer::Impl> server, TcpSocket socket)
      : server_(std::move(server)),
        socket_(std::move(socket)),
        timer_(server_->io.get_executor()) {}

  ~HttpConnection() {
    if (server_ != nullptr) server_->connections.erase(this);
  }

  /// `address_slot`: the per-address count this connection holds (null when not counted); it
  /// follows the socket into the WebSocket connection after an upgrade.
  void start(std::string remote_address, std::shared_ptr<void> address_slot) {
    server_->connections.insert(this);
    remote_address_ = std::move(remote_address);
    address_slot_ = std::move(address_slot);
    asio::error_code ec;
    socket_.set_option(asio::ip::tcp::no_delay(true), ec);
    socket_.non_blocking(true, ec);
    arm_timer(server_->options.idle_timeout);
    wait_readable();
  }

  /// Server stop: a response being written is finished first, everything else ends now.
  void shutdown() {
    if (state_ == State::Writing) {
      close_after_write_ = true;
    } else {
      close();
    }
  }

  void close() {
    if (state_ == State::Closed) return;
    state_ = State::Closed;
    ++timer_generation_;
    timer_.cancel();
    asio::error_code ec;
    socket_.close(ec);
    if (server_ != nullptr) {
      server_->connections.erase(this);
      server_ = nullptr;
    }
    std::string().swap(in_);
    address_slot_.reset();
    if (auto exchange = std::move(exchange_)) exchange->abort();
  }

  void on_exchange_response(uint64_t sequence, HttpResponse response) {
    if (state_ != State::Waiting || sequence != sequence_) return;
    exchange_.reset();
    respond(std::move(response));
  }

 private:
  enum class State : uint8_t {
    Head,       // reading a request line and headers (or idle between requests)
    Body,       // reading a Content-Length body
    Waiting,    // dispatched; the answer may come later (parked GET)
    Writing,    // writing a response
    Lingering,  // response sent with Connection: close; draining input before closing
    Closed,
  };
  enum class Route : uint8_t { None, Handler, File, Engine, Directory };

  void wait_readable() {
    if (reading_ || state_ == State::Closed) return;
    reading_ = true;
    socket_.async_wait(TcpSocket::wait_read, [self = shared_from_this()](asio::error_code ec) {
      self->reading_ = false;
      if (self->state_ == State::Closed) return;
      if (ec) {
        if (ec != asio::error::operation_aborted) self->close();
        return;
      }
      self->on_readable();
    });
  }

  void on_readable() {
    if (state_ == State::Waiting || state_ == State::Writing) {
      // Not reading requests now (no pipelining); only notice a client that went away, which
      // matters for a parked GET (the reference closes the session then).
      char byte;
      const ssize_t n = ::recv(socket_.native_handle(), &byte, 1, MSG_PEEK);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        close();
        return;
      }
      if (n < 0) wait_readable();
      // n > 0: the next request is already here; it is read once this response is written.
      return;
    }
    for (;;) {
      asio::error_code ec;
      const size_t n = socket_.read_some(asio::buffer(t_read_buffer, kReadBufferSize), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) break;
      if (ec == asio::error::interrupted) continue;
      if (ec) {
        close();  // EOF or reset
        return;
      }
      if (state_ != State::Lingering) in_.append(t_read_buffer, n);
      if (n < kReadBufferSize) break;
      if (state_ != State::Lingering && in_.size() > server_->options.max_header_bytes &&
          state_ == State::Head) {
        break;  // process() refuses it; do not buffer more
      }
    }
    if (state_ == State::Head || state_ == State::Body) process();
    if (state_ == State::Head || state_ == State::Body || state_ == State::Waiting ||
        state_ == State::Lingering) {
      wait_readable();
    }
  }

  void process() {
    if (state_ == State::Head) {
      if (!request_started_ && !in_.empty()) {
        // Slow headers: the head must be complete within headers_timeout of its first byte
        // (blank lines included). Armed once, never per byte, so trickling does not extend it.
        request_started_ = true;
        arm_timer(server_->options.headers_timeout);
      }
      // RFC 9112 §2.2: empty lines before a request line are ignored.
      size_t skip = 0;
      while (in_.compare(skip, 2, "\r\n") == 0) skip += 2;
      if (skip != 0) in_.erase(0, skip);
      if (in_.empty()) {
        std::string().swap(in_);
        return;
      }
      HeadParse head = parse_request_head(in_, server_->options.max_header_bytes);
      if (head.incomplete()) return;
      const size_t head_size = head.size;
      if (!parse_head(std::move(head))) return;
      in_.erase(0, head_size);
      state_ = State::Body;
      if (in_.size() < body_needed_) arm_timer(server_->options.read_timeout);
    }
    if (state_ == State::Body) {
      if (in_.size() < body_needed_) return;
      request_.body.assign(in_, 0, body_needed_);
      in_.erase(0, body_needed_);
      if (in_.empty()) std::string().swap(in_);
      ++timer_generation_;
      timer_.cancel();
      state_ = State::Waiting;
      dispatch();
    }
  }

  /// Takes the parsed head (parse_request_head) and routes it; false when refused.
  bool parse_head(HeadParse parsed) {
    if (parsed.has_request) {
      request_ = std::move(parsed.head.request);
      request_.remote_address = remote_address_;
      keep_alive_ = parsed.head.keep_alive;
    }
    if (!parsed.has_path) {
      fail(parsed.error->status, parsed.error->reason);
      return false;
    }
    decoded_path_ = std::move(parsed.head.decoded_path);

    route_ = Route::None;
    engine_ = nullptr;
    directory_ = nullptr;
    file_ = nullptr;
    handler_ = nullptr;
    if (const auto it = server_->handlers.find(decoded_path_); it != server_->handlers.end()) {
      route_ = Route::Handler;
      handler_ = &it->second;
    } else if (const auto it = server_->files.find(decoded_path_); it != server_->files.end()) {
      route_ = Route::File;
      file_ = &it->second;
    } else if ((engine_ = server_->engine_for(request_.path)) != nullptr) {
      route_ = Route::Engine;
      origin_ = server_->options.origins.decide(request_.header("origin"), request_.header("host"));
    } else if ((directory_ = server_->directory_for(decoded_path_)) != nullptr) {
      route_ = Route::Directory;
    }

    if (parsed.error) {
      fail(parsed.error->status, parsed.error->reason);
      return false;
    }
    body_needed_ = parsed.head.content_length;
    const size_t body_limit =
        route_ == Route::Engine ? engine_->options().max_payload : kMaxOtherBody;
    if (body_needed_ > body_limit) {
      // Refused from the header, before the body is buffered (maxHttpBufferSize, §1.4).
      fail(413, "Payload too large");
      return false;
    }
    return true;
  }

  void dispatch() {
    switch (route_) {
      case Route::Engine:
        if (!origin_.allowed) {
          refuse_origin();
        } else if (request_.method == "OPTIONS") {
          respond(preflight());
        } else if (request_.upgrade) {
          upgrade();
        } else {
          exchange_ = std::make_shared<ConnectionExchange>(weak_from_this(), ++sequence_);
          const auto exchange = exchange_;  // the engine may answer (and reset exchange_) inline
          engine_->handle_request(std::move(request_), exchange);
        }
        return;
      case Route::Handler:
        if (!allow_get_or_head()) return;
        respond((*handler_)());
        return;
      case Route::File:
        serve(file_->file, file_->content_type);
        return;
      case Route::Directory:
        serve_directory();
        return;
      case Route::None:
        respond(text_response(404, "Not Found"));
        return;
    }
  }

  /// A browser Origin the policy refuses (another site): 403 with Engine.IO's error body and no
  /// CORS headers, before any session or WebSocket handshake (gateway-contract.md §2.1).
  void refuse_origin() {
    ++server_->refused_origins;
    const std::string* origin = request_.header("origin");
    log_with(log(), spdlog::level::debug,
             {{"address", remote_address_},
              {"origin", printable_origin(origin != nullptr ? *origin : "")},
              {"reason", "origin not allowed"}},
             "{} {} refused", request_.upgrade ? "WebSocket upgrade" : request_.method,
             request_.path);
    HttpResponse response = HttpResponse::engine_error(4, "Forbidden", 403);
    if (request_.upgrade) {
      fail_engine(std::move(response));
    } else {
      respond(std::move(response));
    }
  }

  HttpResponse preflight() {
    HttpResponse response;
    response.status = 204;
    if (!origin_.allow_origin.empty()) {
      response.headers.emplace_back("Access-Control-Allow-Methods", "GET,POST,OPTIONS");
      if (const std::string* requested = request_.header("access-control-request-headers")) {
        response.headers.emplace_back("Access-Control-Allow-Headers", *requested);
      }
      response.headers.emplace_back("Vary", "Access-Control-Request-Headers");
    }
    return response;
  }

  void upgrade() {
    const std::string* version = request_.header("sec-websocket-version");
    if (version == nullptr || *version != "13") {
      HttpResponse response = text_response(426, "Unsupported WebSocket version");
      response.headers.emplace_back("Sec-WebSocket-Version", "13");
      fail_engine(std::move(response));
      return;
    }
    const std::string* key = request_.header("sec-websocket-key");
    if (key == nullptr || key->size() != 24 || websocketpp::base64_decode(*key).size() != 16) {
      fail_engine(HttpResponse::engine_error(3, "Bad request"));
      return;
    }
    if (auto error = engine_->check_upgrade(request_)) {
      fail_engine(std::move(*error));
      return;
    }
    // From here the socket is the WebSocket connection's. No extension is negotiated
    // (permessage-deflate stays off, §1.5) and no subprotocol.
    std::string handshake =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " +
        websocket_accept(*key) + "\r\n\r\n";
    WebSocketConnection::Limits limits;
    limits.max_message_bytes = engine_->options().max_payload;
    auto connection =
        std::make_shared<WebSocketConnection>(std::move(socket_), limits, server_->scheduler);
    connection->send_raw(std::move(handshake));
    connection->hold_until_closed(std::move(address_slot_));
    std::string leftover = std::move(in_);
    EngineServer* engine = engine_;
    close();  // detaches this object; the moved-from socket has nothing left to close
    engine->accept_websocket(std::move(request_), connection);
    connection->start(leftover);
  }

  /// False (405 sent) unless the request is a GET or a HEAD.
  bool allow_get_or_head() {
    if (request_.method == "GET" || request_.method == "HEAD") return true;
    HttpResponse response = text_response(405, "Method Not Allowed");
    response.headers.emplace_back("Allow", "GET, HEAD");
    respond(std::move(response));
    return false;
  }

  void serve(const std::string& file, const std::string& content_type) {
    if (!allow_get_or_head()) return;
    respond(file_response(file, content_type, request_.header("if-none-match")));
  }

  void serve_directory() {
    std::string_view rest = std::string_view(decoded_path_).substr(directory_->prefix.size());
    // Every segment must be a plain name: no `..`, no NUL, no backslash (safe join).
    std::string_view scan = rest;
    while (!scan.empty()) {
      const size_t slash = scan.find('/');
      const std::string_view segment = scan.substr(0, slash);
      if (segment == ".." || segment.find('\0') != std::string_view::npos ||
          segment.find('\\') != std::string_view::npos) {
        respond(text_response(404, "Not Found"));
        return;
      }
      if (slash == std::string_view::npos) break;
      scan.remove_prefix(slash + 1);
    }
    std::string file = directory_->dir + std::string(rest);
    struct stat info {};
    if (rest.empty() || rest.back() == '/' ||
        (::stat(file.c_str(), &info) == 0 && S_ISDIR(info.st_mode))) {
      if (file.back() != '/') file.push_back('/');
      file += "index.html";
    }
    serve(file, mime_type(file));
  }

  /// An error found while reading the request: answered with Connection: close, then the
  /// connection drains and closes. Engine routes get the JSON error shape and CORS headers.
  void fail(int status, const std::string& what) {
    log_with(log(), spdlog::level::debug,
             {{"address", remote_address_}, {"status", status}, {"reason", what}},
             "HTTP request refused");
    keep_alive_ = false;
    if (status == 431) ++server_->limits.header_size;
    if (status == 413 && route_ == Route::Engine) ++server_->limits.message_size;
    if (route_ == Route::Engine) {
      // The head was parsed and names the engine: JSON body and CORS headers, as for every
      // engine answer.
      fail_engine(HttpResponse::engine_error(3, status == 413 ? "Payload too large" : "Bad request",
                                             status));
      return;
    }
    route_ = Route::None;
    respond(text_response(status, reason_phrase(status)));
  }

  void fail_engine(HttpResponse response) {
    keep_alive_ = false;
    respond(std::move(response));
  }

  void respond(HttpResponse response) {
    if (state_ == State::Closed || state_ == State::Writing || state_ == State::Lingering) return;
    const bool head_only = request_.method == "HEAD";
    const bool close_after = !keep_alive_ || server_->stopped;
    std::string out = "HTTP/1.1 " + std::to_string(response.status) + " " +
                      reason_phrase(response.status) + "\r\n";
    if (!response.content_type.empty()) out += "Content-Type: " + response.content_type + "\r\n";
    if (response.status != 204 && response.status != 304) {
      out += "Content-Length: " + std::to_string(response.body.size()) + "\r\n";
    }
    for (const auto& [name, value] : response.headers) out += name + ": " + value + "\r\n";
    if (route_ == Route::Engine) {
      // CORS on every engine answer, errors included, so browsers can read them (§1.9).
      if (!origin_.allow_origin.empty()) {
        out += "Access-Control-Allow-Origin: " + origin_.allow_origin + "\r\n";
      }
      if (origin_.credentials) out += "Access-Control-Allow-Credentials: true\r\n";
      if (server_->options.origins.varies()) out += "Vary: Origin\r\n";
    }
    if (close_after) out += "Connection: close\r\n";
    out += "\r\n";
    if (!head_only && response.status != 204 && response.status != 304) out += response.body;
    write(std::move(out), close_after);
  }

  void write(std::string data, bool close_after) {
    state_ = State::Writing;
    close_after_write_ = close_after;
    // A client that stops reading must not hold the connection forever.
    arm_timer(server_->options.read_timeout);
    auto buffer = std::make_shared<std::string>(std::move(data));
    asio::async_write(socket_, asio::buffer(*buffer),
                      [self = shared_from_this(), buffer](asio::error_code ec, size_t) {
                        if (self->state_ == State::Closed) return;
                        if (ec) {
                          self->close();
                          return;
                        }
                        self->after_write();
                      });
  }

  void after_write() {
    if (close_after_write_ || server_ == nullptr || server_->stopped) {
      linger();
      return;
    }
    // Keep-alive: the next request on this connection.
    state_ = State::Head;
    request_started_ = false;
    route_ = Route::None;
    body_needed_ = 0;
    origin_ = OriginPolicy::Decision{};
    arm_timer(server_->options.idle_timeout);
    process();
    if (state_ == State::Head || state_ == State::Body || state_ == State::Waiting) {
      wait_readable();
    }
  }

  void linger() {
    state_ = State::Lingering;
    std::string().swap(in_);
    asio::error_code ec;
    socket_.shutdown(TcpSocket::shutdown_send, ec);
    arm_timer(kLingerTimeout);
    wait_readable();
  }

  void arm_timer(std::chrono::milliseconds after) {
    const uint32_t generation = ++timer_generation_;
    timer_.expires_after(after);
    timer_.async_wait([self = shared_from_this(), generation](asio::error_code ec) {
      if (ec || generation != self->timer_generation_ || self->state_ == State::Closed) return;
      self->on_timeout();
    });
  }

  void on_timeout() {
    switch (state_) {
      case State::Head:
        if (!request_started_ || in_.empty()) {
          close();  // idle keep-alive connection (blank lines at most): no answer owed
          return;
        }
        ++server_->limits.headers_timeout;
        log_with(log(), spdlog::level::debug,
                 {{"address", remote_address_}, {"status", 408}, {"reason", "headers timeout"}},
                 "HTTP request refused: head not complete within {} ms",
                 server_->options.headers_timeout.count());
        [[fallthrough]];
      case State::Body:
        route_ = Route::None;
        keep_alive_ = false;
        respond(text_response(408, "Request Timeout"));
        return;
      default:
        close();
        return;
    }
  }

  // Shared: the server object may be destroyed while this connection finishes its last write.
  std::shared_ptr<GatewayServer::Impl> server_;  // null once closed
  std::shared_ptr<void> address_slot_;
  TcpSocket socket_;
  Timer timer_;
  std::string in_;  // unparsed input; empty between requests
  HttpRequest request_;
  std::string decoded_path_;
  std::string remote_address_;
  OriginPolicy::Decision origin_;  // for the engine route
  std::shared_ptr<ConnectionExchange> exchange_;
  EngineServer* engine_ = nullptr;
  const DirectoryMount* directory_ = nullptr;
  const FileMount* file_ = nullptr;
  const std::function<HttpResponse()>* handler_ = nullptr;
  size_t body_needed_ = 0;
  uint64_t sequence_ = 0;
  uint32_t timer_generation_ = 0;
  State state_ = State::Head;
  Route route_ = Route::None;
  bool keep_alive_ = true;
  bool reading_ = false;
  bool request_started_ = false;
  bool close_after_write_ = false;
};

void ConnectionExchange::respond(HttpResponse response) {
  if (done_) return;
  done_ = true;
  on_abort = nullptr;
  if (auto connection = connection_.lock()) {
    connection->on_exchange_response(sequence_, std::move(response));
  }
}

// ---------------------------------------------------------------------------------------------

namespace {

/// Answers a connection refused by a connection limit: 503 with a short body, written without
/// blocking (a fresh socket's send buffer is empty, so it fits), then closed at once; holding
/// it longer would spend the descriptors the limit protects. Input already received is read
/// first, so closing does not reset the connection before the client reads the answer.
void refuse_connection(TcpSocket& socket, std::string_view body) {
  asio::error_code ec;
  socket.non_blocking(true, ec);
  char sink[4096];
  while (::recv(socket.native_handle(), sink, sizeof sink, MSG_DONTWAIT) > 0) {
  }
  std::string response =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=UTF-8\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  response.append(body);
  (void)::send(socket.native_handle(), response.data(), response.size(),
               MSG_DONTWAIT | MSG_NOSIGNAL);
  socket.shutdown(TcpSocket::shutdown_send, ec);
  socket.close(ec);
}

}  // namespace

void GatewayServer::Impl::accept() {
  acceptor.async_accept([self = shared_from_this()](asio::error_code ec, TcpSocket socket) {
    if (self->stopped || !self->acceptor.is_open()) return;
    if (ec) {
      self->on_accept_error(ec);
      return;
    }
    if (self->accept_backoff.on_success()) {
      log()->info("accepting connections again after {} ms paused",
                  std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() -
                                                                        self->accept_paused_at)
                      .count());
    }
    asio::error_code endpoint_ec;
    const auto endpoint = socket.remote_endpoint(endpoint_ec);
    std::string address = endpoint_ec ? std::string() : endpoint.address().to_string();
    if (self->admit(socket, address)) {
      auto slot = self->options.max_connections_per_address != 0 ? self->occupy(address) : nullptr;
      std::make_shared<HttpConnection>(self, std::move(socket))
          ->start(std::move(address), std::move(slot));
    }
    self->accept();
  });
}

void GatewayServer::Impl::on_accept_error(const asio::error_code& ec) {
  if (ec == asio::error::operation_aborted) return;
  if (ec == asio::error::connection_aborted || ec == asio::error::interrupted) {
    accept();  // that one connection is gone; the next may be fine
    return;
  }
  // EMFILE/ENFILE (the open-file limit) and anything else that may persist: pause with a
  // backoff (50 ms doubling to 1 s) so the loop neither spins nor stops; the listen backlog
  // holds new clients meanwhile. Logged and counted once per episode.
  const auto delay = accept_backoff.on_failure();
  if (accept_backoff.new_episode()) {
    ++limits.accept_paused;
    accept_paused_at = Clock::now();
    log()->warn(
        "accept failed: {}; {} connections open; pausing accepts (retry after {} ms, backing "
        "off to {} ms) until sockets close",
        ec.message(), connections.size() + scheduler->live_connections(), delay.count(),
        AcceptBackoff::kMax.count());
  }
  retry_timer.expires_after(delay);
  retry_timer.async_wait([self = shared_from_this()](asio::error_code timer_ec) {
    if (!timer_ec && !self->stopped && self->acceptor.is_open()) self->accept();
  });
}

bool GatewayServer::Impl::admit(TcpSocket& socket, const std::string& address) {
  const size_t open = connections.size() + scheduler->live_connections();
  if (options.max_connections != 0 && open >= options.max_connections) {
    ++limits.connections;
    log_with(log(), spdlog::level::debug,
             {{"address", address}, {"reason", "gateway.maxConnections"}},
             "connection refused: {} connections open", open);
    refuse_connection(socket, "Too many connections");
    return false;
  }
  if (options.max_connections_per_address != 0) {
    const auto it = per_address.find(address);
    if (it != per_address.end() && it->second >= options.max_connections_per_address) {
      ++limits.connections_per_address;
      log_with(log(), spdlog::level::debug,
               {{"address", address}, {"reason", "gateway.maxConnectionsPerAddress"}},
               "connection refused: {} connections open from this address", it->second);
      refuse_connection(socket, "Too many connections from this address");
      return false;
    }
  }
  return true;
}

namespace {

/// One connection's unit of GatewayServer::Impl::per_address, given back when it is destroyed
/// (the connection closed; the server may be gone by then).
struct AddressSlot {
  std::weak_ptr<GatewayServer::Impl> server;
  std::string address;
  ~AddressSlot() {
    const auto impl = server.lock();
    if (!impl) return;
    const auto it = impl->per_address.find(address);
    if (it != impl->per_address.end() && --it->second == 0) impl->per_address.erase(it);
  }
};

}  // namespace

std::shared_ptr<void> GatewayServer::Impl::occupy(const std::string& address) {
  ++per_address[address];
  auto slot = std::make_shared<AddressSlot>();
  slot->server = weak_from_this();
  slot->address = address;
  return slot;
}

GatewayServer::GatewayServer(asio::io_context& io, ServerOptions options)
    : impl_(std::make_shared<Impl>(io, std::move(options))) {}

GatewayServer::~GatewayServer() {
  stop();
  // Engines go now, while their handlers are certainly alive; the Impl itself may live on in
  // pending handlers, which find everything closed.
  impl_->engines.clear();
}

void GatewayServer::mount_engine(EngineOptions options, EngineHandler& handler) {
  impl_->engines.push_back(
      std::make_unique<EngineServer>(impl_->io, std::move(options), handler, impl_->scheduler));
}

void GatewayServer::mount_file(std::string url_path, std::string file_path,
                               std::string content_type) {
  impl_->files[std::move(url_path)] = FileMount{std::move(file_path), std::move(content_type)};
}

void GatewayServer::mount_handler(std::string url_path, std::function<HttpResponse()> handler) {
  impl_->handlers[std::move(url_path)] = std::move(handler);
}

void GatewayServer::mount_directory(std::string url_prefix, std::string dir) {
  while (!url_prefix.empty() && url_prefix.back() == '/') url_prefix.pop_back();
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  auto& mounts = impl_->directories;
  mounts.push_back(DirectoryMount{std::move(url_prefix), std::move(dir)});
  std::stable_sort(mounts.begin(), mounts.end(),
                   [](const auto& a, const auto& b) { return a.prefix.size() > b.prefix.size(); });
}

uint16_t GatewayServer::listen() {
  Impl& impl = *impl_;
  const std::string where = impl.options.host + ":" + std::to_string(impl.options.port);
  asio::error_code ec;
  asio::ip::tcp::endpoint endpoint;
  const auto address = asio::ip::make_address(impl.options.host, ec);
  if (!ec) {
    endpoint = asio::ip::tcp::endpoint(address, impl.options.port);
  } else {
    asio::ip::tcp::resolver resolver(impl.io);
    const auto results = resolver.resolve(impl.options.host, std::to_string(impl.options.port),
                                          asio::ip::tcp::resolver::passive, ec);
    if (ec || results.empty()) {
      throw std::runtime_error("cannot listen on " + where + ": cannot resolve host (" +
                               ec.message() + ")");
    }
    endpoint = results.begin()->endpoint();
  }
  impl.acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec && endpoint.address().is_v6() && endpoint.address().is_unspecified()) {
    impl.acceptor.set_option(asio::ip::v6_only(false), ec);  // "::" also takes IPv4
  }
  if (!ec) impl.acceptor.bind(endpoint, ec);
  if (!ec) impl.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    asio::error_code ignored;
    impl.acceptor.close(ignored);
    throw std::runtime_error("cannot listen on " + where + ": " + ec.message());
  }
  impl.stopped = false;
  impl.accept();
  const uint16_t port = impl.acceptor.local_endpoint().port();
  log()->info("gateway listening on {}:{}", impl.options.host, port);
  return port;
}

void GatewayServer::stop() {
  Impl& impl = *impl_;
  if (impl.stopped) return;
  impl.stopped = true;
  for (const auto& engine : impl.engines) engine->close_all("server shutting down");
  asio::error_code ec;
  impl.acceptor.close(ec);
  impl.retry_timer.cancel();
  std::vector<std::shared_ptr<HttpConnection>> connections;
  for (HttpConnection* connection : impl.connections) {
    connections.push_back(connection->shared_from_this());
  }
  for (const auto& connection : connections) connection->shutdown();
}

void GatewayServer::stop_accepting() {
  asio::error_code ec;
  impl_->acceptor.close(ec);
  impl_->retry_timer.cancel();
}

void GatewayServer::after_writes(std::function<void()> fn) {
  impl_->scheduler->after_flush(std::move(fn));
}

size_t GatewayServer::io_threads() const {
  return impl_->scheduler->write_threads();
}

size_t GatewayServer::open_connections() const {
  return impl_->connections.size() + impl_->scheduler->live_connections();
}

GatewayServer::Stats GatewayServer::stats() const {
  Stats stats;
  for (const auto& engine : impl_->engines) {
    stats.polling += engine->polling_sessions();
    stats.websocket += engine->websocket_sessions();
  }
  stats.http_connections = impl_->connections.size();
  stats.refused_origins = impl_->refused_origins;
  stats.limits = impl_->limits;
  for (const auto& engine : impl_->engines) {
    const auto& refused = engine->refusals();
    stats.limits.handshake_rate += refused.handshake_rate;
    stats.limits.polling_sessions += refused.polling_sessions;
    stats.limits.slow_consumers += refused.slow_consumers;
    stats.limits.message_size += refused.message_size;
  }
  return stats;
}

EngineServer* GatewayServer::engine(std::string_view path) const {
  return impl_->engine_for(path);
}

}  // namespace steedos::gateway
