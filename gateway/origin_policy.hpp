#pragma once
// Which browser origins may use the gateway (gateway-contract.md §2.1, socketio-server.md §1.9).
// A page on another site must not open a session with the cookies of a logged-in user: its
// polling requests get no CORS headers and a 403, and so does its WebSocket upgrade (browsers
// apply no CORS to WebSockets; this check is what stops cross-site WebSocket hijacking).
//
// Three modes:
//   SameSite (default, gateway.corsOrigins null): an Origin whose host has the same registrable
//     domain as the request's Host header (Public Suffix List, Debian's libpsl and its packaged
//     list) is reflected with credentials; an IP address or a single-label host matches only
//     itself; ports and http/https do not matter.
//   List (an array): exactly those origins, with credentials.
//   Any ("*"): socket.io's `cors: true`: `Access-Control-Allow-Origin: *`, no credentials.
// A request without Origin (services, Node and Python clients) is served in every mode.
//
// Pure functions of their arguments; safe to call from any thread.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace steedos::gateway {

/// A tuple origin as browsers serialise it: lower-case scheme and host, IPv6 without brackets,
/// the scheme's default port dropped.
struct Origin {
  std::string scheme;
  std::string host;
  std::optional<uint16_t> port;

  /// "scheme://host[:port]", IPv6 hosts in brackets.
  std::string serialized() const;
};

/// Parses an Origin header value or a configured origin ("https://App.example:443" ->
/// https / app.example / default port). nullopt for "null", for anything with a path, query,
/// user info or non-ASCII, and for hosts that are not DNS names or IP literals.
std::optional<Origin> parse_origin(std::string_view text);

/// The host of a Host header ("Example.COM.:5100" -> "example.com", "[::1]:80" -> "::1"), or
/// nullopt when malformed. One trailing dot is dropped; IPv6 literals are canonicalised.
std::optional<std::string> parse_host(std::string_view text);

/// Whether two hosts (as parse_host returns them) are the same site: equal, or domain names of
/// two labels or more with the same registrable domain by the Public Suffix List. IP literals
/// and single-label names match only themselves; a public suffix (github.io) only itself.
bool same_site(std::string_view a, std::string_view b);

/// The PSL file libpsl loaded (the packaged list), or "built-in" / "none" (for the start log).
std::string public_suffix_source();

/// An Origin header value fit for a log line: printable ASCII, at most 200 characters.
std::string printable_origin(std::string_view origin);

class OriginPolicy {
 public:
  enum class Mode : uint8_t { SameSite, List, Any };

  /// What one request gets.
  struct Decision {
    bool allowed = true;
    /// Access-Control-Allow-Origin: the request's Origin, "*", or empty (no CORS headers).
    std::string allow_origin;
    /// Access-Control-Allow-Credentials: true.
    bool credentials = false;
  };

  /// SameSite.
  OriginPolicy() = default;
  static OriginPolicy any();
  /// Throws std::invalid_argument naming the first entry that is not a serialised origin
  /// ("null", a path, a missing scheme, "*" inside the list...).
  static OriginPolicy allow_list(const std::vector<std::string>& origins);

  Mode mode() const { return mode_; }
  /// The list of the List mode, as serialised origins.
  const std::vector<std::string>& origins() const { return origins_; }
  /// Whether answers depend on the Origin header (then they carry Vary: Origin).
  bool varies() const { return mode_ != Mode::Any; }
  /// `origin` and `host`: the request's Origin and Host header values, nullptr when absent.
  Decision decide(const std::string* origin, const std::string* host) const;

 private:
  Mode mode_ = Mode::SameSite;
  std::vector<std::string> origins_;
};

}  // namespace steedos::gateway
