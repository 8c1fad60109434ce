// gateway-bench-server: the server side of bench/run_gateway_bench.sh (targets of the
// "broadcast cost" issue; method of /work/shared/spec/websocket-data-path.md).
//
//   gateway-bench-server --mode gateway|baseline --port P [--control-port C] [--clients N]
//
// gateway:  GatewayServer + SocketIoServer on /socket.io/ (ping interval 600 s), events sent
//           with Namespace::emit_all.
// baseline: a minimal Asio server: plain RFC 6455 upgrade, just enough Engine.IO/Socket.IO to
//           let the same load client through (`0{...}` open, `40` -> `40{"sid":...}`), a ~0.2 KB
//           connection struct with no resident read buffer (a zero-byte readable wait), one
//           pre-framed shared frame per event. One event: a bare loop with one send() per
//           client. K events: queued per connection, then one sendmsg (<= 1024 iovecs) per
//           connection with everything queued for it (the spec's "R").
//
// Both run on one thread (io_context(1)). Control channel: a line protocol on
// 127.0.0.1:C (default P+1), used by bench/load_client:
//   stats        -> "stats rss_kb=R connected=N heap_inuse=B heap_free=B mmap=B"
//   emit K       -> K events of 100 bytes (`42["bench",{...}]`, 102-byte frames) emitted
//                   back-to-back in this loop turn; replies
//                   "emitted t_ns=<CLOCK_MONOTONIC before the first emit> end_ns=<after the
//                   last> recipients=<sum over events>", then, once every socket's queue has
//                   been written to the kernel, "sent t_ns=<CLOCK_MONOTONIC>".
//   trim         -> malloc_trim(0) then like stats (diagnostics only)
//   quit         -> exits
// `--clients N`: the expected number of clients; the bench's own per-client bookkeeping is
// reserved for N up front (so it is not counted per client); more clients are still accepted.
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <asio/basic_socket_acceptor.hpp>
#include <asio/basic_stream_socket.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/read_until.hpp>
#include <asio/steady_timer.hpp>
#include <asio/streambuf.hpp>
#include <asio/write.hpp>
#include <websocketpp/base64/base64.hpp>
#include <websocketpp/sha1/sha1.hpp>
//
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "gateway/http_server.hpp"
#include "gateway/socketio_server.hpp"

using namespace steedos::gateway;
using tcp = asio::ip::tcp;
using Socket_t = asio::basic_stream_socket<tcp, asio::io_context::executor_type>;
using Acceptor_t = asio::basic_socket_acceptor<tcp, asio::io_context::executor_type>;

namespace {

int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

long rss_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

void raise_nofile() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// The argument of event number `index`: the Engine.IO text `42["bench",ARG]` is exactly
// kEventBytes (a 102-byte frame: 2-byte header, no extended length).
constexpr size_t kEventBytes = 100;
const std::string kEventPrefix = "42[\"bench\",";

std::string event_arg(size_t index) {
  char head[32];
  std::snprintf(head, sizeof head, "{\"i\":\"%06zu\",\"p\":\"", index % 1000000);
  std::string arg = head;
  const size_t fixed = kEventPrefix.size() + arg.size() + 2 /* "} */ + 1 /* ] */;
  arg.append(kEventBytes - fixed, 'x');
  arg += "\"}";
  return arg;
}

std::string event_text(size_t index) {
  return kEventPrefix + event_arg(index) + "]";
}

std::string text_frame(std::string_view payload) {
  std::string frame;
  frame.push_back(char(0x81));
  if (payload.size() < 126) {
    frame.push_back(char(payload.size()));
  } else {
    frame.push_back(char(126));
    frame.push_back(char(payload.size() >> 8));
    frame.push_back(char(payload.size() & 0xFF));
  }
  frame.append(payload);
  return frame;
}

/// What a server mode offers to the control channel.
struct Mode {
  virtual ~Mode() = default;
  virtual size_t connected() const = 0;
  /// Emits `count` events back-to-back; returns the sum of recipients.
  virtual size_t emit(size_t count) = 0;
  /// Every socket's queue has been handed to the kernel.
  virtual bool drained() const = 0;
};

// ---------------------------------------------------------------------------------------------
// gateway mode

/// Forwards to the Socket.IO server and keeps the Engine.IO sessions, so the bench can tell
/// when every queue has been written (EngineSocket::buffered_bytes()). The list is reserved and
/// its pages touched before the 0-client RSS is read, so it adds nothing to the per-client delta.
class TrackingHandler final : public EngineHandler {
 public:
  TrackingHandler(SocketIoServer& sio, size_t capacity) : sio_(sio) {
    sessions_.resize(capacity);  // faults the pages in now
    sessions_.clear();           // keeps the capacity
  }
  void on_open(EngineSocket& socket) override {
    sessions_.push_back(&socket);
    sio_.on_open(socket);
  }
  void on_message(EngineSocket& socket, std::string_view data, bool binary) override {
    sio_.on_message(socket, data, binary);
  }
  void on_close(EngineSocket& socket, const std::string& reason) override {
    for (size_t i = 0; i < sessions_.size(); ++i) {
      if (sessions_[i] == &socket) {
        sessions_[i] = sessions_.back();
        sessions_.pop_back();
        break;
      }
    }
    sio_.on_close(socket, reason);
  }
  bool drained() const {
    for (const EngineSocket* socket : sessions_) {
      if (socket->buffered_bytes() != 0) return false;
    }
    return true;
  }

 private:
  SocketIoServer& sio_;
  std::vector<EngineSocket*> sessions_;
};

struct GatewayMode final : Mode {
  GatewayMode(asio::io_context& io, uint16_t port, size_t capacity)
      : sio(io), tracker(sio, capacity), gateway(io, server_options(port)) {
    EngineOptions options;
    options.path = "/socket.io/";
    options.ping_interval_ms = 600000;  // heartbeats must not disturb the measurement
    options.ping_timeout_ms = 600000;
    gateway.mount_engine(options, tracker);
    gateway.listen();
  }
  static ServerOptions server_options(uint16_t port) {
    ServerOptions options;
    options.host = "127.0.0.1";
    options.port = port;
    return options;
  }
  size_t connected() const override {
    const Namespace* nsp = sio.find_namespace("/");
    return nsp == nullptr ? 0 : nsp->socket_count();
  }
  size_t emit(size_t count) override {
    Namespace& nsp = sio.of("/");
    size_t recipients = 0;
    for (size_t i = 0; i < count; ++i) {
      const std::string arg = event_arg(i);
      recipients += nsp.emit_all("bench", RawArgs{arg});
    }
    return recipients;
  }
  bool drained() const override { return tracker.drained(); }

  // Declared before the gateway: it must be destroyed first.
  SocketIoServer sio;
  TrackingHandler tracker;
  GatewayServer gateway;
};

// ---------------------------------------------------------------------------------------------
// baseline mode

thread_local char t_buffer[64 * 1024];
constexpr size_t kMaxIov = 1024;

class BaselineServer;

/// One connection: socket, a few words of state, and a queue that exists only while output is
/// pending. The HTTP head is kept in `head_` during the handshake only.
struct BaseConn : std::enable_shared_from_this<BaseConn> {
  BaseConn(Socket_t s, BaselineServer& server) : socket(std::move(s)), server(server) {}
  Socket_t socket;
  BaselineServer& server;
  std::unique_ptr<std::string> head;  // handshake only
  std::vector<std::shared_ptr<const std::string>> queue;
  uint32_t queue_head = 0;
  uint32_t head_offset = 0;
  uint32_t index = 0;  // position in BaselineServer::conns_
  bool upgraded = false;
  bool joined = false;
  bool writing_wait = false;
  bool closed = false;

  void start();
  void wait_readable();
  bool on_readable();
  void on_head();
  void handle_frames(char* data, size_t size);
  void push(std::shared_ptr<const std::string> frame) { queue.push_back(std::move(frame)); }
  void flush();
  void close();
  bool pending() const { return queue_head < queue.size(); }
};

class BaselineServer final : public Mode {
 public:
  BaselineServer(asio::io_context& io, uint16_t port, size_t capacity)
      : io_(io), acceptor_(io.get_executor()) {
    // Reserved and touched before the 0-client RSS is read, like the gateway mode's list.
    conns_.resize(capacity);
    conns_.clear();
    tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(asio::socket_base::max_listen_connections);
    accept();
  }
  size_t connected() const override { return joined_; }
  size_t emit(size_t count) override {
    size_t recipients = 0;
    if (count == 1) {
      // The bare loop: one send per client, straight from the loop (what is not accepted at
      // once is queued and waits for the socket to drain).
      auto frame = std::make_shared<const std::string>(text_frame(event_text(0)));
      for (const auto& conn : conns_) {
        if (!conn->joined || conn->closed) continue;
        ++recipients;
        if (!conn->pending()) {
          const ssize_t n = ::send(conn->socket.native_handle(), frame->data(), frame->size(),
                                   MSG_NOSIGNAL | MSG_DONTWAIT);
          if (n == ssize_t(frame->size())) continue;
          if (n > 0) conn->head_offset = uint32_t(n);
        }
        conn->push(frame);
        if (!conn->writing_wait) conn->flush();
      }
      return recipients;
    }
    // Many events: each connection's frames go out together, one sendmsg (<= 1024 iovecs).
    for (size_t i = 0; i < count; ++i) {
      auto frame = std::make_shared<const std::string>(text_frame(event_text(i)));
      for (const auto& conn : conns_) {
        if (!conn->joined || conn->closed) continue;
        conn->push(frame);
        ++recipients;
      }
    }
    for (const auto& conn : conns_) {
      if (conn->pending() && !conn->writing_wait) conn->flush();
    }
    return recipients;
  }
  bool drained() const override {
    for (const auto& conn : conns_) {
      if (!conn->closed && conn->pending()) return false;
    }
    return true;
  }
  void joined() { ++joined_; }
  void remove(BaseConn& conn) {
    if (conn.joined) --joined_;
    // Swap-remove keeps conns_ dense.
    const uint32_t index = conn.index;
    if (index >= conns_.size() || conns_[index].get() != &conn) return;
    auto hold = conns_[index];
    conns_[index] = conns_.back();
    conns_[index]->index = index;
    conns_.pop_back();
  }
  std::string next_sid() {
    char sid[32];
    std::snprintf(sid, sizeof sid, "base%016llu", static_cast<unsigned long long>(++sid_counter_));
    return sid;
  }

 private:
  void accept() {
    acceptor_.async_accept([this](asio::error_code ec, Socket_t socket) {
      if (!ec) {
        auto conn = std::make_shared<BaseConn>(std::move(socket), *this);
        conn->index = static_cast<uint32_t>(conns_.size());
        conns_.push_back(conn);
        conn->start();
      } else if (ec == asio::error::operation_aborted) {
        return;
      }
      accept();
    });
  }
  asio::io_context& io_;
  Acceptor_t acceptor_;
  std::vector<std::shared_ptr<BaseConn>> conns_;
  size_t joined_ = 0;
  uint64_t sid_counter_ = 0;
};

void BaseConn::start() {
  asio::error_code ec;
  socket.non_blocking(true, ec);
  socket.set_option(tcp::no_delay(true), ec);
  head = std::make_unique<std::string>();
  wait_readable();
}

void BaseConn::wait_readable() {
  socket.async_wait(Socket_t::wait_read, [self = shared_from_this()](asio::error_code ec) {
    if (ec || self->closed) return;
    if (self->on_readable()) self->wait_readable();
  });
}

bool BaseConn::on_readable() {
  for (;;) {
    const ssize_t n = ::recv(socket.native_handle(), t_buffer, sizeof t_buffer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n <= 0) {
      close();
      return false;
    }
    if (!upgraded) {
      head->append(t_buffer, size_t(n));
      if (head->find("\r\n\r\n") != std::string::npos) on_head();
      if (closed) return false;
    } else {
      handle_frames(t_buffer, size_t(n));
      if (closed) return false;
    }
    if (size_t(n) < sizeof t_buffer) return true;
  }
}

void BaseConn::on_head() {
  // Case-insensitive search for the key header; the load client sends a well-formed request.
  std::string lower = *head;
  for (char& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
  const size_t at = lower.find("sec-websocket-key:");
  if (at == std::string::npos) {
    close();
    return;
  }
  size_t begin = at + 18;
  while (begin < head->size() && (*head)[begin] == ' ') ++begin;
  const size_t end = head->find("\r\n", begin);
  const std::string key = head->substr(begin, end - begin) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[20];
  websocketpp::sha1::calc(key.data(), key.size(), digest);
  std::string out =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: " +
      websocketpp::base64_encode(digest, sizeof digest) + "\r\n\r\n";
  out += text_frame("0{\"sid\":\"" + server.next_sid() +
                    "\",\"upgrades\":[],\"pingInterval\":600000,\"pingTimeout\":600000,"
                    "\"maxPayload\":1000000}");
  head.reset();
  upgraded = true;
  push(std::make_shared<const std::string>(std::move(out)));
  flush();
}

void BaseConn::handle_frames(char* data, size_t size) {
  // Client frames of the handshake are tiny and arrive whole; a partial frame is not expected
  // here (the bench's load client writes each frame with one send).
  size_t pos = 0;
  while (pos + 6 <= size) {
    const uint8_t b0 = uint8_t(data[pos]), b1 = uint8_t(data[pos + 1]);
    const uint8_t opcode = b0 & 0x0F;
    size_t length = b1 & 0x7F;
    size_t header = 2;
    if (length == 126) {
      length = (size_t(uint8_t(data[pos + 2])) << 8) | uint8_t(data[pos + 3]);
      header = 4;
    } else if (length == 127) {
      close();
      return;
    }
    const char* mask = data + pos + header;
    header += 4;
    if (pos + header + length > size) return;
    char* payload = data + pos + header;
    for (size_t i = 0; i < length; ++i) payload[i] = char(payload[i] ^ mask[i & 3]);
    pos += header + length;
    if (opcode == 0x8) {
      close();
      return;
    }
    if (opcode == 0x1 && length >= 2 && payload[0] == '4' && payload[1] == '0' && !joined) {
      joined = true;
      server.joined();
      push(std::make_shared<const std::string>(
          text_frame("40{\"sid\":\"" + server.next_sid() + "\"}")));
      if (!writing_wait) flush();
    }
    // '3' pongs and anything else: ignored.
  }
}

void BaseConn::flush() {
  while (queue_head < queue.size()) {
    iovec iov[kMaxIov];
    size_t count = 0, total = 0;
    for (size_t i = queue_head; i < queue.size() && count < kMaxIov; ++i, ++count) {
      const size_t skip = i == queue_head ? head_offset : 0;
      iov[count].iov_base = const_cast<char*>(queue[i]->data() + skip);
      iov[count].iov_len = queue[i]->size() - skip;
      total += iov[count].iov_len;
    }
    msghdr message{};
    message.msg_iov = iov;
    message.msg_iovlen = count;
    const ssize_t written = ::sendmsg(socket.native_handle(), &message, MSG_NOSIGNAL);
    if (written < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      close();
      return;
    }
    size_t left = size_t(written);
    while (left > 0) {
      const size_t chunk = queue[queue_head]->size() - head_offset;
      if (left < chunk) {
        head_offset += uint32_t(left);
        break;
      }
      left -= chunk;
      queue[queue_head].reset();
      ++queue_head;
      head_offset = 0;
    }
    if (size_t(written) < total) break;
  }
  if (queue_head >= queue.size()) {
    std::vector<std::shared_ptr<const std::string>>().swap(queue);  // no resident queue
    queue_head = 0;
    head_offset = 0;
    return;
  }
  writing_wait = true;
  socket.async_wait(Socket_t::wait_write, [self = shared_from_this()](asio::error_code ec) {
    self->writing_wait = false;
    if (!ec && !self->closed) self->flush();
  });
}

void BaseConn::close() {
  if (closed) return;
  closed = true;
  asio::error_code ec;
  socket.close(ec);
  std::vector<std::shared_ptr<const std::string>>().swap(queue);
  queue_head = head_offset = 0;
  // Deferred: emit() may be walking the connection list.
  asio::post(socket.get_executor(), [self = shared_from_this()] { self->server.remove(*self); });
}

// ---------------------------------------------------------------------------------------------
// control channel

class Control : public std::enable_shared_from_this<Control> {
 public:
  Control(asio::io_context& io, Socket_t socket, Mode& mode)
      : io_(io), socket_(std::move(socket)), mode_(mode), timer_(io) {}
  void start() { read(); }

 private:
  void read() {
    asio::async_read_until(socket_, buffer_, '\n',
                           [self = shared_from_this()](asio::error_code ec, size_t) {
                             if (ec) return;
                             std::istream in(&self->buffer_);
                             std::string line;
                             std::getline(in, line);
                             self->command(line);
                             self->read();
                           });
  }
  void reply(const std::string& line) {
    asio::error_code ec;
    asio::write(socket_, asio::buffer(line + "\n"), ec);
  }
  void stats(const char* verb) {
    const struct mallinfo2 info = mallinfo2();
    char line[256];
    std::snprintf(line, sizeof line,
                  "%s rss_kb=%ld connected=%zu heap_inuse=%zu heap_free=%zu mmap=%zu", verb,
                  rss_kb(), mode_.connected(), info.uordblks, info.fordblks, info.hblkhd);
    reply(line);
  }
  void command(const std::string& line) {
    if (line == "stats") {
      stats("stats");
    } else if (line == "trim") {
      malloc_trim(0);
      stats("stats");
    } else if (line.rfind("emit ", 0) == 0) {
      const size_t count = std::strtoul(line.c_str() + 5, nullptr, 10);
      const int64_t start = mono_ns();
      const size_t recipients = mode_.emit(count);
      const int64_t end = mono_ns();
      char text[160];
      std::snprintf(text, sizeof text, "emitted t_ns=%lld end_ns=%lld recipients=%zu",
                    static_cast<long long>(start), static_cast<long long>(end), recipients);
      reply(text);
      // Posted after the emits: runs after the gateway's write scheduler turn (FIFO).
      asio::post(io_, [self = shared_from_this()] { self->check_drained(); });
    } else if (line == "quit") {
      io_.stop();
    } else {
      reply("error unknown command");
    }
  }
  void check_drained() {
    if (mode_.drained()) {
      char text[64];
      std::snprintf(text, sizeof text, "sent t_ns=%lld", static_cast<long long>(mono_ns()));
      reply(text);
      return;
    }
    timer_.expires_after(std::chrono::microseconds(200));
    timer_.async_wait([self = shared_from_this()](asio::error_code ec) {
      if (!ec) self->check_drained();
    });
  }

  asio::io_context& io_;
  Socket_t socket_;
  Mode& mode_;
  asio::steady_timer timer_;
  asio::streambuf buffer_;
};

void control_accept(asio::io_context& io, Acceptor_t& acceptor, Mode& mode) {
  acceptor.async_accept([&io, &acceptor, &mode](asio::error_code ec, Socket_t socket) {
    if (ec) return;
    asio::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    std::make_shared<Control>(io, std::move(socket), mode)->start();
    control_accept(io, acceptor, mode);
  });
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode_name = "gateway";
  long port = 0, control_port = 0, clients = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string name = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (value == nullptr) {
      std::fprintf(stderr, "missing value for %s\n", name.c_str());
      return 2;
    }
    ++i;
    if (name == "--mode") {
      mode_name = value;
    } else if (name == "--port") {
      port = std::strtol(value, nullptr, 10);
    } else if (name == "--control-port") {
      control_port = std::strtol(value, nullptr, 10);
    } else if (name == "--clients") {
      clients = std::strtol(value, nullptr, 10);
    } else {
      std::fprintf(stderr,
                   "usage: gateway-bench-server --mode gateway|baseline --port P "
                   "[--control-port C] [--clients N]\n");
      return 2;
    }
  }
  if (port <= 0 || port > 65535 || (mode_name != "gateway" && mode_name != "baseline")) {
    std::fprintf(stderr, "need --mode gateway|baseline and --port P\n");
    return 2;
  }
  if (control_port == 0) control_port = port + 1;
  raise_nofile();
  const size_t capacity = size_t(clients > 0 ? clients : 20000);
  spdlog::set_level(spdlog::level::warn);

  try {
    asio::io_context io(1);
    std::unique_ptr<Mode> mode;
    if (mode_name == "gateway") {
      mode = std::make_unique<GatewayMode>(io, uint16_t(port), capacity);
    } else {
      mode = std::make_unique<BaselineServer>(io, uint16_t(port), capacity);
    }
    Acceptor_t control(io.get_executor());
    tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), uint16_t(control_port));
    control.open(endpoint.protocol());
    control.set_option(asio::socket_base::reuse_address(true));
    control.bind(endpoint);
    control.listen();
    control_accept(io, control, *mode);
    std::printf("ready mode=%s port=%ld control=%ld clients=%ld pid=%d\n", mode_name.c_str(), port,
                control_port, clients, getpid());
    std::fflush(stdout);
    io.run();
    // Exit without tearing 10k sessions down one by one: the bench only needs the numbers.
    std::fflush(stdout);
    _exit(0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gateway-bench-server: %s\n", e.what());
    return 1;
  }
}
