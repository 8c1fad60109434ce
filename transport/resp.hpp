#pragma once
// RESP2, the Redis wire protocol (spec: redis-transporter.md §2.2, §3.2 b): commands are
// formatted and replies decoded by hiredis's formatter and reader, the packaged and hardened
// parts of libhiredis 0.14 that need no socket. Pure: no I/O, no logging, no exceptions on
// hostile input.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

struct redisReader;

namespace steedos::transport {

/// `*N\r\n$len\r\narg\r\n...`: one command as Redis expects it on the wire.
/// Throws std::length_error when an argument does not fit hiredis' int lengths (2 GiB).
std::string format_command(const std::vector<std::string_view>& args);

/// One decoded reply, owned. `text` holds the status, error or bulk string bytes.
struct RespReply {
  enum class Type { status, error, integer, string, nil, array };
  Type type = Type::nil;
  std::string text;
  long long integer = 0;
  std::vector<RespReply> elements;

  bool is_error() const { return type == Type::error; }
  /// true for a status or bulk string equal to `value` (case-sensitive).
  bool is_text(std::string_view value) const {
    return (type == Type::string || type == Type::status) && text == value;
  }
};

/// Incremental RESP2 decoder over hiredis's reader. Feed bytes as they arrive (any split), then
/// take complete replies with next() until it says need_more. A protocol error, or a single
/// reply that buffers more than `max_reply_bytes`, puts the decoder in a final error state
/// (error() says why); the connection must then be closed. Not thread-safe.
class RespDecoder {
 public:
  explicit RespDecoder(size_t max_reply_bytes = 64 * 1024 * 1024);
  ~RespDecoder();
  RespDecoder(const RespDecoder&) = delete;
  RespDecoder& operator=(const RespDecoder&) = delete;

  enum class Result { reply, need_more, error };

  void feed(const char* data, size_t size);
  void feed(std::string_view data) { feed(data.data(), data.size()); }
  /// The next complete reply into `out` (result reply), or need_more, or error.
  Result next(RespReply& out);
  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  /// Bytes buffered for the reply in progress (not yet complete).
  size_t pending_bytes() const { return since_reply_; }

 private:
  void fail(std::string reason);

  redisReader* reader_ = nullptr;
  size_t max_reply_bytes_;
  size_t since_reply_ = 0;  // bytes fed since the last complete reply ended
  std::string error_;
};

}  // namespace steedos::transport
