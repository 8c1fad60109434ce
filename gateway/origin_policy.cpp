#include "gateway/origin_policy.hpp"

#include <arpa/inet.h>
#include <libpsl.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "common/ascii.hpp"

namespace steedos::gateway {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/// The packaged list (psl_latest picks the newer of the distribution file and the built-in
/// copy), loaded once and kept for the life of the process.
const psl_ctx_t* psl() {
  static const psl_ctx_t* const ctx = [] {
    const psl_ctx_t* latest = psl_latest(nullptr);
    return latest != nullptr ? latest : psl_builtin();
  }();
  return ctx;
}

bool all_digits(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), is_digit);
}

std::optional<std::string> canonical_ipv6(std::string_view text) {
  const std::string copy(text);
  in6_addr address{};
  if (::inet_pton(AF_INET6, copy.c_str(), &address) != 1) return std::nullopt;
  char out[INET6_ADDRSTRLEN];
  if (::inet_ntop(AF_INET6, &address, out, sizeof out) == nullptr) return std::nullopt;
  return std::string(out);
}

/// A DNS name or dotted-quad IPv4, lower-cased, one trailing dot dropped; nullopt otherwise.
std::optional<std::string> domain_or_ipv4(std::string_view text) {
  if (!text.empty() && text.back() == '.') text.remove_suffix(1);
  if (text.empty() || text.size() > 253) return std::nullopt;
  std::string host;
  host.reserve(text.size());
  size_t label = 0;
  for (const char c : text) {
    if (c == '.') {
      if (label == 0) return std::nullopt;  // empty label
      label = 0;
    } else if (is_alpha(c) || is_digit(c) || c == '-' || c == '_') {
      if (++label > 63) return std::nullopt;
    } else {
      return std::nullopt;
    }
    host.push_back(ascii::lower(c));
  }
  if (label == 0) return std::nullopt;
  // A numeric last label makes it an IPv4 address for browsers: only a canonical dotted quad.
  const size_t dot = host.rfind('.');
  if (all_digits(std::string_view(host).substr(dot == std::string::npos ? 0 : dot + 1))) {
    in_addr address{};
    if (::inet_pton(AF_INET, host.c_str(), &address) != 1) return std::nullopt;
    char out[INET_ADDRSTRLEN];
    if (::inet_ntop(AF_INET, &address, out, sizeof out) == nullptr || host != out) {
      return std::nullopt;
    }
  }
  return host;
}

/// "host[:port]" with the host as a name, IPv4 or bracketed IPv6. `port` gets the port if any.
std::optional<std::string> parse_authority(std::string_view text, std::optional<uint16_t>& port) {
  port.reset();
  std::string_view host = text;
  std::string_view port_text;
  bool has_port = false;
  std::optional<std::string> parsed;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      has_port = true;
      port_text = rest.substr(1);
    }
    parsed = canonical_ipv6(text.substr(1, close - 1));
  } else {
    const size_t colon = text.find(':');
    if (colon != std::string_view::npos) {
      has_port = true;
      port_text = text.substr(colon + 1);
      host = text.substr(0, colon);
    }
    parsed = domain_or_ipv4(host);
  }
  if (!parsed) return std::nullopt;
  if (has_port) {
    if (!all_digits(port_text) || port_text.size() > 5) return std::nullopt;
    const unsigned long value = std::stoul(std::string(port_text));
    if (value > 65535) return std::nullopt;
    port = static_cast<uint16_t>(value);
  }
  return parsed;
}

bool is_ip(std::string_view host) {
  if (host.find(':') != std::string_view::npos) return true;  // IPv6 (canonical, no brackets)
  const size_t dot = host.rfind('.');
  return dot != std::string_view::npos && all_digits(host.substr(dot + 1));
}

std::optional<uint16_t> default_port(std::string_view scheme) {
  if (scheme == "http" || scheme == "ws") return 80;
  if (scheme == "https" || scheme == "wss") return 443;
  return std::nullopt;
}

}  // namespace

std::string Origin::serialized() const {
  std::string out = scheme + "://";
  out += host.find(':') != std::string::npos ? "[" + host + "]" : host;
  if (port) out += ":" + std::to_string(*port);
  return out;
}

std::optional<Origin> parse_origin(std::string_view text) {
  const size_t sep = text.find("://");
  if (sep == std::string_view::npos || sep == 0) return std::nullopt;
  Origin origin;
  for (size_t i = 0; i < sep; ++i) {
    const char c = text[i];
    if (!(is_alpha(c) || (i > 0 && (is_digit(c) || c == '+' || c == '-' || c == '.')))) {
      return std::nullopt;
    }
    origin.scheme.push_back(ascii::lower(c));
  }
  const std::string_view authority = text.substr(sep + 3);
  // A serialised origin has no user info, path, query or fragment.
  if (authority.find_first_of("/?#@\\") != std::string_view::npos) return std::nullopt;
  auto host = parse_authority(authority, origin.port);
  if (!host) return std::nullopt;
  origin.host = std::move(*host);
  if (origin.port && origin.port == default_port(origin.scheme)) origin.port.reset();
  return origin;
}

std::optional<std::string> parse_host(std::string_view text) {
  std::optional<uint16_t> port;
  return parse_authority(text, port);
}

bool same_site(std::string_view a, std::string_view b) {
  if (a.empty() || b.empty()) return false;
  if (a == b) return true;
  if (is_ip(a) || is_ip(b)) return false;
  if (a.find('.') == std::string_view::npos || b.find('.') == std::string_view::npos) return false;
  const psl_ctx_t* list = psl();
  if (list == nullptr) return false;  // no list: only the host itself
  const std::string host_a(a), host_b(b);
  const char* site_a = psl_registrable_domain(list, host_a.c_str());
  const char* site_b = psl_registrable_domain(list, host_b.c_str());
  return site_a != nullptr && site_b != nullptr && std::strcmp(site_a, site_b) == 0;
}

std::string public_suffix_source() {
  const psl_ctx_t* list = psl();
  if (list == nullptr) return "none";
  if (list == psl_builtin()) return "built-in";
  const char* file = psl_dist_filename();
  return file != nullptr && *file != '\0' ? file : "packaged";
}

std::string printable_origin(std::string_view origin) {
  constexpr size_t kMax = 200;
  std::string out;
  for (const char c : origin.substr(0, kMax)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (origin.size() > kMax) out += "...";
  return out;
}

// ---------------------------------------------------------------------------------------------

OriginPolicy OriginPolicy::any() {
  OriginPolicy policy;
  policy.mode_ = Mode::Any;
  return policy;
}

OriginPolicy OriginPolicy::allow_list(const std::vector<std::string>& origins) {
  OriginPolicy policy;
  policy.mode_ = Mode::List;
  for (const auto& text : origins) {
    const auto origin = parse_origin(text);
    if (!origin) {
      throw std::invalid_argument("\"" + printable_origin(text) +
                                  "\" is not an origin (scheme://host[:port], no path)");
    }
    policy.origins_.push_back(origin->serialized());
  }
  return policy;
}

OriginPolicy::Decision OriginPolicy::decide(const std::string* origin,
                                            const std::string* host) const {
  Decision decision;
  if (mode_ == Mode::Any) {
    decision.allow_origin = "*";
    return decision;
  }
  if (origin == nullptr) return decision;  // not a browser's cross-origin request: served
  const auto parsed = parse_origin(*origin);
  bool allowed = false;
  if (parsed && mode_ == Mode::List) {
    allowed = std::find(origins_.begin(), origins_.end(), parsed->serialized()) != origins_.end();
  } else if (parsed && (parsed->scheme == "http" || parsed->scheme == "https") && host != nullptr) {
    const auto request_host = parse_host(*host);
    allowed = request_host && same_site(parsed->host, *request_host);
  }
  decision.allowed = allowed;
  if (allowed) {
    decision.allow_origin = *origin;
    decision.credentials = true;
  }
  return decision;
}

}  // namespace steedos::gateway
