#include "gateway/websocket_connection.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

#include <asio/post.hpp>
#include <cerrno>
#include <cstring>

#include "gateway/ws_frame.hpp"

namespace steedos::gateway {
namespace {

// One read buffer per thread, shared by every connection of that thread: a connection keeps
// input only while a frame is unfinished (spec: websocket-data-path.md, "no resident read
// buffer"). 64 KiB lets a burst of small frames be handled in one read.
constexpr size_t kReadBufferSize = 64 * 1024;
thread_local char t_read_buffer[kReadBufferSize];

// Linux's UIO_MAXIOV: more iovecs in one sendmsg fail with EMSGSIZE.
constexpr size_t kMaxIov = 1024;
// Bounded work per readable event, so one fast sender cannot starve the loop.
constexpr int kMaxReadsPerWakeup = 4;

}  // namespace

// ---------------------------------------------------------------------------------------------

namespace {
// Below this many connections in a flush the helpers are not woken: their wake-up costs more
// than the sends they would take (one send is 6-10 us on loopback).
constexpr size_t kParallelFlushMinimum = 64;
// Connections a thread takes at a time from a parallel flush.
constexpr size_t kParallelFlushChunk = 32;
}  // namespace

WriteScheduler::WriteScheduler(asio::io_context& io, size_t write_threads) : io_(io) {
  if (write_threads > 1) parallel_ = std::make_unique<ParallelFor>(write_threads, "ws-write");
}

WriteScheduler::~WriteScheduler() = default;

size_t WriteScheduler::write_threads() const {
  return parallel_ ? parallel_->threads() : 1;
}

void WriteScheduler::add(std::shared_ptr<WebSocketConnection> connection) {
  dirty_.push_back(std::move(connection));
  if (posted_) return;
  posted_ = true;
  asio::post(io_, [self = shared_from_this()] { self->run(); });
}

void WriteScheduler::note_direct_write() {
  if (turn_end_posted_) return;
  turn_end_posted_ = true;
  asio::post(io_, [self = shared_from_this()] {
    self->turn_end_posted_ = false;
    ++self->turn_;
  });
}

void WriteScheduler::flush_now() {
  // The handler posted by add() stays queued and finds nothing (or what later calls queued).
  if (!dirty_.empty()) run();
}

void WriteScheduler::after_flush(std::function<void()> fn) {
  if (dirty_.empty()) {
    fn();
    return;
  }
  after_flush_.push_back(std::move(fn));
}

void WriteScheduler::run() {
  posted_ = false;
  std::vector<std::shared_ptr<WebSocketConnection>> batch;
  batch.swap(dirty_);
  if (parallel_ && batch.size() >= kParallelFlushMinimum) {
    flush_in_parallel(batch);
  } else {
    for (auto& connection : batch) {
      connection->flush_scheduled_ = false;
      connection->flush();
    }
  }
  // Keep the storage for the next turn unless a burst made it large.
  batch.clear();
  if (dirty_.empty() && batch.capacity() <= 4096) dirty_.swap(batch);
  if (!after_flush_.empty()) {
    std::vector<std::function<void()>> done;
    done.swap(after_flush_);
    for (auto& fn : done) fn();
  }
}

void WriteScheduler::flush_in_parallel(std::vector<std::shared_ptr<WebSocketConnection>>& batch) {
  // flush_scheduled_ stays set during the writes: a connection is in the batch once, and a
  // send() to it from a handler run by an earlier settle_flush() only queues behind the write.
  std::vector<WebSocketConnection::WriteResult> results(batch.size());
  parallel_->run(
      batch.size(), [&](size_t i) { results[i] = batch[i]->write_for_flush(); },
      kParallelFlushChunk);
  for (size_t i = 0; i < batch.size(); ++i) batch[i]->settle_flush(results[i]);
}

// ---------------------------------------------------------------------------------------------

WebSocketConnection::WebSocketConnection(TcpSocket socket, Limits limits,
                                         std::shared_ptr<WriteScheduler> scheduler)
    : socket_(std::move(socket)),
      scheduler_(std::move(scheduler)),
      reader_(limits.max_message_bytes),
      close_timeout_(limits.close_timeout) {
  asio::error_code ec;
  // Reads and writes are attempted directly and fall back to the reactor on EAGAIN.
  socket_.non_blocking(true, ec);
  if (scheduler_) ++scheduler_->live_;
}

WebSocketConnection::~WebSocketConnection() {
  if (state_ != State::Closed && scheduler_) --scheduler_->live_;
}

void WebSocketConnection::start(std::string_view input) {
  if (!input.empty()) {
    std::string copy(input);  // parse() unmasks in place
    feed(copy.data(), copy.size());
  }
  wait_readable();
}

void WebSocketConnection::wait_readable() {
  if (reading_ || state_ == State::Closed) return;
  reading_ = true;
  socket_.async_wait(TcpSocket::wait_read, [self = shared_from_this()](asio::error_code ec) {
    self->reading_ = false;
    if (ec) {
      if (ec != asio::error::operation_aborted && self->state_ != State::Closed) self->peer_gone();
      return;
    }
    if (self->read_available()) self->wait_readable();
  });
}

void WebSocketConnection::poll_input() {
  if (in_parse_ || state_ == State::Closed) return;
  read_available();
}

bool WebSocketConnection::read_available() {
  for (int i = 0; i < kMaxReadsPerWakeup; ++i) {
    if (state_ == State::Closed) return false;
    asio::error_code ec;
    const size_t n = socket_.read_some(asio::buffer(t_read_buffer, kReadBufferSize), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) return true;
    if (ec == asio::error::interrupted) continue;
    if (ec) {
      // EOF or reset. After our close frame this is the expected end of the handshake.
      if (state_ == State::Closing) {
        finish();
      } else {
        peer_gone();
      }
      return false;
    }
    if (!discard_input_) feed(t_read_buffer, n);
    if (n < kReadBufferSize) break;  // drained: save the EAGAIN round trip
  }
  return state_ != State::Closed;
}

void WebSocketConnection::feed(char* data, size_t size) {
  in_parse_ = true;
  if (!pending_input_) {
    // The common case: whole frames, parsed straight from the shared read buffer.
    const size_t used = parse(data, size);
    if (used < size && state_ != State::Closed && !discard_input_) {
      pending_input_ = std::make_unique<std::string>(data + used, size - used);
    }
  } else {
    pending_input_->append(data, size);
    const size_t used = parse(pending_input_->data(), pending_input_->size());
    pending_input_->erase(0, used);
  }
  in_parse_ = false;
  if (pending_input_ && (pending_input_->empty() || state_ == State::Closed || discard_input_)) {
    pending_input_.reset();
  }
  if (state_ == State::Closed) reader_.reset();
}

// The connection's side of the frame reader: the state checks that decide what a frame does.
// Every callback answers whether parsing goes on.
struct WebSocketConnection::FrameSink {
  WebSocketConnection& c;

  bool more() const { return c.state_ != State::Closed && !c.discard_input_; }

  bool on_message(std::string_view data, bool binary) {
    if (c.state_ == State::Open) c.deliver(data, binary);
    return more();
  }
  bool on_ping(std::string_view payload) {
    if (c.state_ == State::Open) {
      auto frame = std::make_shared<const std::string>(ws::frame(ws::Opcode::Pong, payload));
      c.queue(std::shared_ptr<const char>(frame, frame->data()), frame->size());
    }
    return more();
  }
  bool on_pong(std::string_view) { return more(); }
  bool on_close(uint16_t code, std::string_view) {
    c.close_received_ = true;
    if (c.state_ == State::Open) {
      // Echo the code; the server closes TCP once the echo is written (RFC 6455 §7.1.1).
      c.state_ = State::Closing;
      std::string echo;
      if (code != ws_close::kNoStatus) {
        echo.push_back(static_cast<char>(code >> 8));
        echo.push_back(static_cast<char>(code & 0xFF));
      }
      auto frame = std::make_shared<const std::string>(ws::frame(ws::Opcode::Close, echo));
      c.queue(std::shared_ptr<const char>(frame, frame->data()), frame->size());
      c.close_sent_ = true;
      c.notify_closed(code);
    } else if (c.close_sent_ && c.buffered_ == 0) {
      c.finish();  // the answer to our close frame: the handshake is complete
    }
    return false;
  }
  void on_error(uint16_t close_code) { c.fail(close_code); }
};

size_t WebSocketConnection::parse(char* data, size_t size) {
  if (state_ == State::Closed || discard_input_) return 0;
  FrameSink sink{*this};
  return reader_.parse(data, size, sink);
}

void WebSocketConnection::deliver(std::string_view data, bool binary) {
  if (!binary && !ws::valid_utf8(data)) {
    fail(ws_close::kInvalidData);
    return;
  }
  if (handler_ != nullptr) handler_->on_ws_message(*this, data, binary);
}

void WebSocketConnection::fail(uint16_t code) {
  if (state_ != State::Open) return;
  state_ = State::Closing;
  discard_input_ = true;
  reader_.reset();
  queue_close_frame(code, {});
  notify_closed(code);
}

void WebSocketConnection::peer_gone() {
  if (state_ == State::Closed) return;
  const bool was_open = state_ == State::Open;
  finish();
  if (was_open) notify_closed(ws_close::kAbnormal);
}

void WebSocketConnection::notify_closed(uint16_t code) {
  Handler* handler = handler_;
  handler_ = nullptr;
  if (handler != nullptr) handler->on_ws_closed(*this, code);
}

void WebSocketConnection::close(uint16_t code, std::string_view reason) {
  handler_ = nullptr;
  if (state_ != State::Open) return;
  state_ = State::Closing;
  queue_close_frame(code, reason);
}

void WebSocketConnection::abort() {
  handler_ = nullptr;
  if (state_ == State::Closed) return;
  // Reset rather than close: a plain close leaves what the kernel still holds for a peer that
  // does not read (up to the socket's send buffer, several MiB) queued behind a FIN that never
  // goes out, and the peer is not told (bench/faults.sh slow: the stalled client's TCP state was
  // still ESTABLISHED after its session was closed as a slow consumer).
  asio::error_code ec;
  socket_.set_option(asio::socket_base::linger(true, 0), ec);
  finish();
}

void WebSocketConnection::queue_close_frame(uint16_t code, std::string_view reason) {
  std::string body;
  body.push_back(static_cast<char>(code >> 8));
  body.push_back(static_cast<char>(code & 0xFF));
  body.append(reason.substr(0, 123));
  auto frame = std::make_shared<const std::string>(ws::frame(ws::Opcode::Close, body));
  queue(std::shared_ptr<const char>(frame, frame->data()), frame->size());
  close_sent_ = true;
}

void WebSocketConnection::send_raw(std::string bytes) {
  if (bytes.empty()) return;
  auto owned = std::make_shared<const std::string>(std::move(bytes));
  queue(std::shared_ptr<const char>(owned, owned->data()), owned->size());
}

void WebSocketConnection::send(const OutgoingPacketPtr& packet) {
  if (state_ != State::Open || !packet) return;
  const std::string& frames = packet->websocket_frames();
  if (frames.empty()) return;
  if (close_sent_) return;
  // The first packet of a loop turn for a connection with nothing queued is written at once:
  // the common broadcast (one event) then costs one send() and no queue, while the connection
  // is in cache. Later packets of the same turn are queued and leave in one writev.
  // With several write threads every write waits for the turn's parallel flush instead.
  if (queue_head_ == queue_.size() && !flush_scheduled_ && !writing_wait_ &&
      !scheduler_->parallel() && direct_write_turn_ != scheduler_->turn()) {
    direct_write_turn_ = scheduler_->turn();
    scheduler_->note_direct_write();
    const ssize_t written =
        ::send(socket_.native_handle(), frames.data(), frames.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (written == static_cast<ssize_t>(frames.size())) return;
    if (written > 0) {
      queue_.push_back(Chunk{std::shared_ptr<const char>(packet, frames.data()), frames.size()});
      head_offset_ = static_cast<size_t>(written);
      buffered_ += frames.size() - static_cast<size_t>(written);
      schedule_flush();
      return;
    }
    // EAGAIN or an error: queued below; the flush then waits for the socket or reports it.
  }
  queue(std::shared_ptr<const char>(packet, frames.data()), frames.size());
}

void WebSocketConnection::send_text(std::string_view text) {
  if (state_ != State::Open) return;
  send_raw(ws::frame(ws::Opcode::Text, text));
}

void WebSocketConnection::queue(std::shared_ptr<const char> data, size_t size) {
  if (state_ == State::Closed || close_sent_) return;  // nothing may follow a close frame
  queue_.push_back(Chunk{std::move(data), size});
  buffered_ += size;
  schedule_flush();
}

void WebSocketConnection::schedule_flush() {
  if (flush_scheduled_ || writing_wait_ || state_ == State::Closed) return;
  flush_scheduled_ = true;
  scheduler_->add(shared_from_this());
}

// Hands the queue to the kernel until it is empty or the socket is full. No handler is called
// here: the caller decides what a full socket or an error means.
WebSocketConnection::WriteResult WebSocketConnection::write_queue() {
  while (queue_head_ < queue_.size()) {
    iovec iov[kMaxIov];
    size_t count = 0;
    size_t total = 0;
    for (size_t i = queue_head_; i < queue_.size() && count < kMaxIov; ++i, ++count) {
      const size_t skip = i == queue_head_ ? head_offset_ : 0;
      iov[count].iov_base = const_cast<char*>(queue_[i].data.get() + skip);
      iov[count].iov_len = queue_[i].size - skip;
      total += iov[count].iov_len;
    }
    msghdr message{};
    message.msg_iov = iov;
    message.msg_iovlen = count;
    const ssize_t written =
        ::sendmsg(socket_.native_handle(), &message, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (written < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return WriteResult::Full;
      return WriteResult::Failed;  // EPIPE, ECONNRESET: nothing more can be delivered
    }
    consume_output(static_cast<size_t>(written));
    if (static_cast<size_t>(written) < total) return WriteResult::Full;
  }
  return WriteResult::Drained;
}

void WebSocketConnection::write_queued_now() {
  // A full socket or an error is left to the flush scheduled for this turn.
  if (state_ != State::Closed && !writing_wait_) write_queue();
}

void WebSocketConnection::flush() {
  apply_write_result(write_for_flush());
}

WebSocketConnection::WriteResult WebSocketConnection::write_for_flush() {
  if (state_ == State::Closed || writing_wait_) return WriteResult::Skipped;
  return write_queue();
}

void WebSocketConnection::settle_flush(WriteResult result) {
  flush_scheduled_ = false;
  apply_write_result(result);
}

void WebSocketConnection::apply_write_result(WriteResult result) {
  // In a parallel flush a handler called while an earlier connection of the batch settled may
  // have closed this one, or queued more for it.
  if (state_ == State::Closed) return;
  switch (result) {
    case WriteResult::Full:
      if (!writing_wait_) wait_writable();  // let the reactor say when the socket drains
      return;
    case WriteResult::Failed:
      peer_gone();
      return;
    case WriteResult::Drained:
      if (queue_head_ != queue_.size()) {
        flush();
      } else {
        release_queue();
        on_output_drained();
      }
      return;
    case WriteResult::Skipped:  // closed or waiting for the socket when the flush began
      return;
  }
}

void WebSocketConnection::consume_output(size_t bytes) {
  buffered_ -= bytes;
  while (bytes > 0) {
    Chunk& chunk = queue_[queue_head_];
    const size_t left = chunk.size - head_offset_;
    if (bytes < left) {
      head_offset_ += bytes;
      return;
    }
    bytes -= left;
    chunk.data.reset();  // the packet may be freed before the rest of the queue is written
    ++queue_head_;
    head_offset_ = 0;
  }
  // Drop written chunks from the front when they are the bulk of the vector.
  if (queue_head_ >= 64 && queue_head_ * 2 >= queue_.size()) {
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(queue_head_));
    queue_head_ = 0;
  }
}

void WebSocketConnection::wait_writable() {
  writing_wait_ = true;
  socket_.async_wait(TcpSocket::wait_write, [self = shared_from_this()](asio::error_code ec) {
    self->writing_wait_ = false;
    if (!ec) self->flush();
  });
}

void WebSocketConnection::release_queue() {
  // Idle connections keep no queue storage; a connection that is written every turn pays one
  // small allocation per turn for it.
  std::vector<Chunk>().swap(queue_);
  queue_head_ = 0;
  head_offset_ = 0;
  buffered_ = 0;
}

void WebSocketConnection::on_output_drained() {
  if (!close_sent_ || state_ == State::Closed) return;
  if (close_received_) {
    finish();  // both close frames exchanged: the server closes TCP first
    return;
  }
  // Our close frame is out: half-close and wait for the peer's answer, or give up after the
  // timeout. The read side stays open so its close frame or FIN is seen.
  asio::error_code ec;
  socket_.shutdown(TcpSocket::shutdown_send, ec);
  if (close_timer_) return;
  close_timer_ = std::make_unique<asio::steady_timer>(socket_.get_executor());
  close_timer_->expires_after(close_timeout_);
  close_timer_->async_wait([self = shared_from_this()](asio::error_code timer_ec) {
    if (!timer_ec) self->finish();
  });
}

void WebSocketConnection::finish() {
  if (state_ != State::Closed && scheduler_) --scheduler_->live_;
  state_ = State::Closed;
  held_until_closed_.reset();
  asio::error_code ec;
  socket_.close(ec);  // completes the pending waits with operation_aborted
  if (close_timer_) close_timer_->cancel();
  release_queue();
  if (!in_parse_) {
    pending_input_.reset();
    reader_.reset();
  }
}

}  // namespace steedos::gateway
