#pragma once
// One WebSocket connection after the HTTP upgrade (RFC 6455, server side), on our own Asio code
// rather than websocketpp's connection class: websocketpp keeps about 7 KB per idle connection
// and frames every message again per recipient (spec: websocket-data-path.md). Here an idle
// connection is the socket, a few words of parser state and one pending zero-byte readable wait;
// input is read into a per-thread buffer and only the unfinished tail of a frame is kept.
// Outgoing data is pre-framed and shared (OutgoingPacket::websocket_frames()): the first packet of
// a loop turn is written at once with send(), what follows in the same turn is queued as
// refcounted buffers and written with one sendmsg.
//
// Threading: every call must come from the thread running the io_context. The one exception is
// WriteScheduler's parallel flush, which writes queued output from helper threads while that
// thread waits for it (see WriteScheduler).
//
// Standard headers first: Asio 1.22 decides between aligned_alloc and operator new from a
// libstdc++ macro, and a TU that includes Asio before any standard header decides otherwise
// (the linker then pairs one TU's allocation with another's deallocation; ASan reports it).
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <asio/basic_stream_socket.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include "gateway/outgoing.hpp"
#include "gateway/parallel_for.hpp"
#include "gateway/ws_frame_reader.hpp"

namespace steedos::gateway {

/// Sockets bound to the io_context executor: half the size of the type-erased default.
using TcpSocket = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;

class WebSocketConnection;

/// Collects the connections that queued output during this loop turn and flushes them together
/// from one posted handler, so each connection gets one sendmsg per turn however many packets
/// were queued for it. Shared by all connections of one io_context.
///
/// With `write_threads` > 1 (gateway.ioThreads) the writes of a turn are spread over that many
/// threads, the loop thread included: a packet is never written from inside send() but queued,
/// and the flush runs the sendmsg calls of all queued connections in parallel while the loop
/// thread waits (ParallelFor). What a write result means (close, wait for the socket) is then
/// handled on the loop thread, so handlers and every other object stay single-threaded.
class WriteScheduler : public std::enable_shared_from_this<WriteScheduler> {
 public:
  explicit WriteScheduler(asio::io_context& io, size_t write_threads = 1);
  ~WriteScheduler();
  void add(std::shared_ptr<WebSocketConnection> connection);
  /// Writes what this turn queued now instead of from the posted handler.
  void flush_now();
  /// Calls `fn` once what is queued now has been written (after the next flush), or at once when
  /// nothing is queued: a broadcast's write completion, timed without flushing early (the
  /// flush at the end of the turn writes every event read in that turn with one sendmsg per
  /// connection).
  void after_flush(std::function<void()> fn);
  /// Threads that write (1: the loop thread alone, which also writes from inside send()).
  size_t write_threads() const;
  bool parallel() const { return parallel_ != nullptr; }
  /// A counter that advances once per loop turn in which some connection wrote directly, so a
  /// connection can tell whether it already did in this turn.
  uint32_t turn() const { return turn_; }
  void note_direct_write();
  /// Connections made with this scheduler whose TCP socket is not yet closed (open or in their
  /// closing handshake): a draining server waits for this to reach 0.
  size_t live_connections() const { return live_; }

 private:
  friend class WebSocketConnection;
  void run();
  void flush_in_parallel(std::vector<std::shared_ptr<WebSocketConnection>>& batch);
  asio::io_context& io_;
  std::unique_ptr<ParallelFor> parallel_;  // null with one write thread
  std::vector<std::shared_ptr<WebSocketConnection>> dirty_;
  std::vector<std::function<void()>> after_flush_;
  bool posted_ = false;
  bool turn_end_posted_ = false;
  uint32_t turn_ = 0;
  size_t live_ = 0;
};

/// RFC 6455 close status codes used by the gateway.
namespace ws_close {
inline constexpr uint16_t kNormal = 1000;
inline constexpr uint16_t kGoingAway = 1001;
inline constexpr uint16_t kProtocolError = 1002;
inline constexpr uint16_t kNoStatus = 1005;     // never sent: the peer's close frame had no code
inline constexpr uint16_t kAbnormal = 1006;     // never sent: the TCP connection was lost
inline constexpr uint16_t kInvalidData = 1007;  // text frame that is not UTF-8
inline constexpr uint16_t kPolicy = 1008;
inline constexpr uint16_t kTooBig = 1009;
}  // namespace ws_close

class WebSocketConnection : public std::enable_shared_from_this<WebSocketConnection> {
 public:
  /// The owner of the connection (an Engine.IO session). Callbacks come from the io_context
  /// thread; the handler may detach (set_handler(nullptr)) or close the connection inside them.
  class Handler {
   public:
    /// One complete message, unmasked and reassembled. The view is valid during the call only.
    virtual void on_ws_message(WebSocketConnection& connection, std::string_view data,
                               bool binary) = 0;
    /// The connection stopped: the peer closed it (`code` from its close frame, 1005 when it had
    /// none, 1006 when TCP went away) or it broke the protocol (1002, 1007, 1009, sent by us).
    /// Called at most once, never after the handler detached or called close()/abort().
    virtual void on_ws_closed(WebSocketConnection& connection, uint16_t code) = 0;

   protected:
    ~Handler() = default;
  };

  struct Limits {
    /// Largest message accepted (Engine.IO maxPayload); above it the connection closes (1009).
    size_t max_message_bytes = 1000000;
    /// How long to wait for the peer's close frame or FIN after sending ours.
    std::chrono::milliseconds close_timeout{1000};
  };

  /// Takes an already-upgraded socket. Call start() to begin.
  WebSocketConnection(TcpSocket socket, Limits limits, std::shared_ptr<WriteScheduler> scheduler);
  ~WebSocketConnection();
  WebSocketConnection(const WebSocketConnection&) = delete;
  WebSocketConnection& operator=(const WebSocketConnection&) = delete;

  /// Starts reading. `input`: bytes the HTTP layer read past the upgrade request (frames a client
  /// sent without waiting for the 101), parsed before anything else.
  void start(std::string_view input = {});
  void set_handler(Handler* handler) { handler_ = handler; }
  /// Keeps `token` until the TCP socket closes (the gateway's per-address connection count).
  void hold_until_closed(std::shared_ptr<void> token) { held_until_closed_ = std::move(token); }

  /// Queues bytes written as they are (the 101 response, before any frame).
  void send_raw(std::string bytes);
  /// Queues the packet's pre-built frames; the packet is shared, not copied.
  void send(const OutgoingPacketPtr& packet);
  /// Frames and queues one text message (per-recipient framing: for the rare clients that
  /// cannot take binary frames).
  void send_text(std::string_view text);
  /// Bytes queued and not yet accepted by the kernel.
  size_t buffered_bytes() const { return buffered_; }
  bool has_pending_output() const { return buffered_ != 0; }
  /// Hands what is queued to the kernel now rather than at the end of the loop turn, as far
  /// as the socket takes it; an error or a full socket is left to the scheduled flush, so no
  /// handler is called from here. For the slow-consumer budget: a burst queued in one turn
  /// (a backlog read at once from the bus) must not count against a client that reads.
  void write_queued_now();
  bool is_open() const { return state_ == State::Open; }

  /// Sends a close frame after what is queued, then closes TCP once the peer answers (or after
  /// close_timeout). The handler is not called.
  void close(uint16_t code, std::string_view reason = {});
  /// Closes the socket now with a TCP reset, dropping queued output (also the kernel's). The
  /// handler is not called.
  void abort();
  /// Reads and handles the input that has already arrived, without waiting. Lets the engine
  /// apply frames sent before an HTTP request that raced them on another connection.
  void poll_input();

 private:
  enum class State : uint8_t { Open, Closing, Closed };
  struct Chunk {
    std::shared_ptr<const char> data;  // aliases the owning packet or string
    size_t size;
  };

  void wait_readable();
  /// Non-blocking reads until the socket is drained (or a bounded number of reads); false when
  /// the connection is finished.
  bool read_available();
  /// Parses frames from [data, data+size); returns the bytes consumed. `data` is mutable so
  /// payloads are unmasked in place.
  size_t parse(char* data, size_t size);
  void feed(char* data, size_t size);
  struct FrameSink;  // what the frame reader reports, applied to this connection
  void deliver(std::string_view data, bool binary);
  void fail(uint16_t code);
  void peer_gone();
  void queue(std::shared_ptr<const char> data, size_t size);
  void consume_output(size_t bytes);
  void queue_close_frame(uint16_t code, std::string_view reason);
  void schedule_flush();
  void flush();
  enum class WriteResult : uint8_t { Drained, Full, Failed, Skipped };
  WriteResult write_queue();
  /// The two halves of flush() for a parallel flush: the write (any thread; touches only this
  /// connection's queue and socket) and what its result means (the loop thread).
  WriteResult write_for_flush();
  void settle_flush(WriteResult result);
  void apply_write_result(WriteResult result);
  void wait_writable();
  void on_output_drained();
  void finish();
  void release_queue();
  void notify_closed(uint16_t code);

  friend class WriteScheduler;

  TcpSocket socket_;
  Handler* handler_ = nullptr;
  std::shared_ptr<WriteScheduler> scheduler_;
  std::unique_ptr<asio::steady_timer> close_timer_;  // only while closing
  // Allocated only while needed, so an idle connection holds two null pointers.
  std::unique_ptr<std::string> pending_input_;  // an unfinished frame
  ws::FrameReader reader_;                      // holds a fragmented message being reassembled
  std::vector<Chunk> queue_;
  std::shared_ptr<void> held_until_closed_;
  size_t queue_head_ = 0;   // first chunk not fully written
  size_t head_offset_ = 0;  // bytes of queue_[queue_head_] already written
  size_t buffered_ = 0;
  uint32_t direct_write_turn_ = ~uint32_t{0};  // WriteScheduler::turn() of the last direct write
  std::chrono::milliseconds close_timeout_;
  State state_ = State::Open;
  bool reading_ = false;   // a readable wait is pending
  bool in_parse_ = false;  // guards poll_input() against re-entry from a callback
  bool flush_scheduled_ = false;
  bool writing_wait_ = false;
  bool close_sent_ = false;      // our close frame is queued
  bool close_received_ = false;  // the peer's close frame arrived
  bool discard_input_ = false;   // after a protocol error: the stream cannot be trusted
};

}  // namespace steedos::gateway
