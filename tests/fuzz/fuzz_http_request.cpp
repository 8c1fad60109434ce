// libFuzzer target: the HTTP request head as the gateway's server reads it
// (gateway/http_request.hpp: websocketpp's parser, then the target, query and Content-Length
// rules), and the Steedos cookie/Authorization rules on the headers it yields. No crash; a
// refused head carries an HTTP error status; a parsed head is consistent with the bytes
// (its size ends at the first blank line, a prefix of it is incomplete, the path is the
// target's, header names are lower-case as the engine looks them up); credentials found are
// non-empty and come from the headers.
//
// Input: byte 0 picks the header limit (most values: the server's default 16 KiB), the rest is
// what the client sent.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "gateway/http_request.hpp"
#include "protocol/json.hpp"
#include "protocol/percent.hpp"
#include "services/steedos_auth_rules.hpp"
#include "tests/fuzz/fuzz_assert.hpp"

namespace gateway = steedos::gateway;
namespace rules = steedos::services::rules;

namespace {

void check_cookie_rules(const gateway::HttpRequest& request) {
  rules::Headers headers;
  for (const auto name : rules::kHeadersRead) {
    if (const std::string* value = request.header(std::string(name))) {
      headers.emplace(std::string(name), *value);
    }
  }
  std::map<std::string, std::string> cookies;
  if (const std::string* cookie = request.header("cookie")) {
    cookies = rules::parse_cookies(*cookie);
    // Names are taken as they are (npm cookie keeps even an empty one): each is in the header.
    for (const auto& [name, value] : cookies) FUZZ_ASSERT(cookie->find(name) != std::string::npos);
  }

  const auto credentials = rules::find_credentials(headers, steedos::Json());
  const auto tenant = rules::session_tenant(headers, credentials);
  if (!credentials) {
    if (tenant)
      FUZZ_ASSERT(!tenant->empty() && cookies[std::string(rules::kSpaceCookie)] == *tenant);
    return;
  }
  FUZZ_ASSERT(!credentials->space_id.empty() && !credentials->token.empty());
  FUZZ_ASSERT(tenant && *tenant == credentials->space_id);
  if (credentials->source == rules::Credentials::Cookie) {
    FUZZ_ASSERT(cookies[std::string(rules::kSpaceCookie)] == credentials->space_id);
    FUZZ_ASSERT(cookies[std::string(rules::kTokenCookie)] == credentials->token);
  } else {
    FUZZ_ASSERT(credentials->source == rules::Credentials::Bearer);
    const std::string* authorization = request.header("authorization");
    FUZZ_ASSERT(authorization != nullptr);
    FUZZ_ASSERT(authorization->find(credentials->token) != std::string::npos);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::size_t limit = data[0] >= 0xF0 ? 64 + (data[0] - 0xF0) * 64 : 16 * 1024;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  // HttpServer skips empty lines before a request line (RFC 9112 §2.2) before parsing.
  while (in.substr(0, 2) == "\r\n") in.remove_prefix(2);

  const gateway::HeadParse parsed = gateway::parse_request_head(in, limit);
  const std::size_t blank_line = in.find("\r\n\r\n");
  if (parsed.incomplete()) {
    FUZZ_ASSERT(blank_line == std::string_view::npos && in.size() <= limit);
    return 0;
  }
  if (parsed.size != 0) {
    FUZZ_ASSERT(parsed.size == blank_line + 4 && parsed.size <= limit);
    // The bytes before the blank line's last byte are not a head yet.
    FUZZ_ASSERT(gateway::parse_request_head(in.substr(0, parsed.size - 1), limit).incomplete());
  }
  if (parsed.error) {
    FUZZ_ASSERT(parsed.error->status >= 400 && parsed.error->status <= 599);
    FUZZ_ASSERT(parsed.size != 0 || parsed.error->status == 431);
    FUZZ_ASSERT(!parsed.has_path || parsed.has_request);
  }
  if (!parsed.has_request) return 0;

  const gateway::ParsedHead& head = parsed.head;
  const gateway::HttpRequest& request = head.request;
  FUZZ_ASSERT(!request.method.empty());
  FUZZ_ASSERT(request.body.empty() && request.remote_address.empty());
  for (const auto& [name, value] : request.headers) {
    FUZZ_ASSERT(!name.empty());
    for (const char c : name) FUZZ_ASSERT(!(c >= 'A' && c <= 'Z'));
  }
  check_cookie_rules(request);
  if (!parsed.has_path) return 0;

  FUZZ_ASSERT(!request.path.empty() && request.path.front() == '/');
  FUZZ_ASSERT(request.path.find('?') == std::string::npos);
  const std::string_view target = request.target;
  const std::size_t question = target.find('?');
  if (target.substr(0, 7) == "http://" || target.substr(0, 8) == "https://") {
    // Absolute form: the path is what follows the authority ("/" when nothing does).
    FUZZ_ASSERT(request.path == "/" || target.find(request.path, 7) != std::string::npos);
  } else {
    FUZZ_ASSERT(target.substr(0, question) == request.path);
    if (!request.query.empty()) FUZZ_ASSERT(question != std::string_view::npos);
  }
  FUZZ_ASSERT(head.decoded_path == steedos::protocol::percent_decode(request.path));
  if (parsed.error) {
    FUZZ_ASSERT(parsed.error->status == 400 || parsed.error->status == 411);
    return 0;
  }
  FUZZ_ASSERT(request.header("transfer-encoding") == nullptr);
  if (const std::string* length = request.header("content-length")) {
    FUZZ_ASSERT(std::to_string(head.content_length) ==
                (length->find_first_not_of('0') == std::string::npos
                     ? std::string("0")
                     : length->substr(length->find_first_not_of('0'))));
  } else {
    FUZZ_ASSERT(head.content_length == 0);
  }
  if (request.upgrade) {
    FUZZ_ASSERT(request.method == "GET");
    FUZZ_ASSERT(gateway::has_token(request.header("upgrade"), "websocket"));
    FUZZ_ASSERT(gateway::has_token(request.header("connection"), "upgrade"));
  }
  if (head.keep_alive) FUZZ_ASSERT(!gateway::has_token(request.header("connection"), "close"));
  return 0;
}
