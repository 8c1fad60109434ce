#include "gateway/http_request.hpp"

// websocketpp's request parser: a small header of its own (none of its connection machinery).
#include <websocketpp/http/request.hpp>
//
#include <exception>
#include <limits>

#include "common/ascii.hpp"
#include "protocol/percent.hpp"

namespace steedos::gateway {
namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

HeadParse refuse(size_t size, int status, std::string reason) {
  HeadParse result;
  result.size = size;
  result.error = HeadError{status, std::move(reason)};
  return result;
}

HeadParse refuse(HeadParse parsed, int status, std::string reason) {
  parsed.error = HeadError{status, std::move(reason)};
  return parsed;
}

}  // namespace

bool has_token(const std::string* value, std::string_view token) {
  if (value == nullptr) return false;
  std::string_view rest = *value;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    if (ascii::iequals(trim(rest.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return false;
}

void parse_query(std::string_view query, std::map<std::string, std::string>& out) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    if (!pair.empty()) {
      const size_t eq = pair.find('=');
      std::string key = protocol::percent_decode(pair.substr(0, eq), protocol::PlusIs::Space);
      std::string value =
          eq == std::string_view::npos
              ? std::string()
              : protocol::percent_decode(pair.substr(eq + 1), protocol::PlusIs::Space);
      out.emplace(std::move(key), std::move(value));  // the first of duplicates wins
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
}

HeadParse parse_request_head(std::string_view buffered, size_t max_header_bytes) {
  const size_t end = buffered.find("\r\n\r\n");
  if ((end == std::string_view::npos && buffered.size() > max_header_bytes) ||
      (end != std::string_view::npos && end + 4 > max_header_bytes)) {
    return refuse(0, 431, "Request Header Fields Too Large");
  }
  if (end == std::string_view::npos) return {};
  const size_t size = end + 4;

  websocketpp::http::parser::request parser;
  // Bodies are read by the server, not the parser; it must not refuse a Content-Length itself.
  parser.set_max_body_size(std::numeric_limits<size_t>::max());
  try {
    parser.consume(buffered.data(), size);
  } catch (const websocketpp::http::exception& e) {
    return refuse(size, static_cast<int>(e.m_error_code), e.m_msg);
  } catch (const std::exception& e) {
    return refuse(size, 400, e.what());
  }
  const std::string& version = parser.get_version();
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    return refuse(size, 400, "Unsupported HTTP version");
  }
  // websocketpp takes a line such as ": value" as a header with an empty name; RFC 9110 §5.1
  // makes a field name a token of at least one character (found by fuzz_http_request).
  if (parser.get_headers().count("") != 0) return refuse(size, 400, "Empty header name");
  HeadParse result;
  result.size = size;
  HttpRequest& request = result.head.request;
  request.method = parser.get_method();
  request.target = parser.get_uri();
  for (const auto& [name, value] : parser.get_headers()) {
    request.headers.emplace(ascii::lower(name), value);
  }
  result.head.keep_alive =
      version == "HTTP/1.1" && !has_token(request.header("connection"), "close");
  result.has_request = true;

  std::string_view target = request.target;
  if (target.substr(0, 7) == "http://" || target.substr(0, 8) == "https://") {
    // Absolute form (proxies): keep the path and query.
    const size_t slash = target.find('/', target.find("//") + 2);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  if (target.empty() || target.front() != '/') {
    return refuse(std::move(result), 400, "Bad request target");
  }
  const size_t question = target.find('?');
  request.path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) parse_query(target.substr(question + 1), request.query);
  result.head.decoded_path = protocol::percent_decode(request.path);
  result.has_path = true;

  // Bodies are delimited by Content-Length only; chunked uploads are refused (no client of
  // ours sends them, and accepting them would mean a second body parser).
  if (request.header("transfer-encoding") != nullptr) {
    return refuse(std::move(result), 411, "Length Required");
  }
  if (const std::string* length = request.header("content-length")) {
    if (length->empty() || length->size() > 18 ||
        length->find_first_not_of("0123456789") != std::string::npos) {
      return refuse(std::move(result), 400, "Invalid Content-Length");
    }
    result.head.content_length = std::stoull(*length);
  }
  request.upgrade = request.method == "GET" && has_token(request.header("upgrade"), "websocket") &&
                    has_token(request.header("connection"), "upgrade");
  return result;
}

}  // namespace steedos::gateway
