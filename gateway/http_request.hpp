#pragma once
// The HTTP/1.x request head exactly as the gateway's HTTP server reads it: websocketpp's request
// parser, then the gateway's own rules (version, request-target, query, Content-Length,
// Transfer-Encoding). Pure: bytes in, a parsed head or the status the server answers out; no
// I/O, no routing. HttpServer calls it on its buffered input; tests and the fuzzer call it alone.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "gateway/engine_server.hpp"

namespace steedos::gateway {

/// A head the server refuses: the status it answers (400, 411, 431, ...) and why.
struct HeadError {
  int status = 400;
  std::string reason;
};

struct ParsedHead {
  /// method, target, path, query and headers (lower-case names) and upgrade; body and
  /// remote_address are the connection's to fill.
  HttpRequest request;
  std::string decoded_path;  // `request.path` percent-decoded ('+' kept), for static routes
  bool keep_alive = true;    // HTTP/1.1 without `Connection: close`
  std::uint64_t content_length = 0;
};

struct HeadParse {
  /// Bytes of the head including its blank line; 0 while the head is incomplete.
  std::size_t size = 0;
  std::optional<HeadError> error;  // set: refuse with this status (`size` may be 0)
  ParsedHead head;                 // valid when complete(); partly on some errors:
  bool has_request = false;  // head.request's method, target and headers (and keep_alive) are set
  bool has_path = false;     // also its path, query and decoded_path: the request can be routed

  bool complete() const { return size != 0 && !error; }
  bool incomplete() const { return size == 0 && !error; }
};

/// Reads the head at the start of `buffered` (leading empty lines already skipped, RFC 9112
/// §2.2). Incomplete while no blank line has arrived and at most `max_header_bytes` are buffered;
/// 431 once the head (blank line included) exceeds `max_header_bytes`.
HeadParse parse_request_head(std::string_view buffered, std::size_t max_header_bytes);

/// `a=1&b=%20x+y` into `out`: keys and values percent-decoded with '+' as a space; a pair
/// without '=' has an empty value; the first of duplicates wins.
void parse_query(std::string_view query, std::map<std::string, std::string>& out);

/// Whether a comma-separated header value (Connection, Upgrade) lists `token`, ignoring case.
bool has_token(const std::string* value, std::string_view token);

}  // namespace steedos::gateway
