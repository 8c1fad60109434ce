#pragma once
// Pure authentication rules of the `socket` service (spec: gateway-contract.md §2 and §9): cookie
// parsing, which credentials a handshake carries, what an auth-service reply means, the session
// kept per socket and the cache of successful lookups. No I/O: the gateway and the broker feed
// these functions and act on their answers, so every rule is testable without a network.
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "protocol/json.hpp"
#include "protocol/moleculer_error.hpp"

namespace steedos::services::rules {

/// Handshake headers, names lower-case. Only those of kHeadersRead matter.
using Headers = std::map<std::string, std::string, std::less<>>;
/// The handshake headers the rules read: a caller may copy just these.
inline constexpr std::array<std::string_view, 2> kHeadersRead = {"cookie", "authorization"};

/// The cookie names Steedos sets at login.
inline constexpr std::string_view kSpaceCookie = "X-Space-Id";
inline constexpr std::string_view kTokenCookie = "X-Auth-Token";

/// Parses a Cookie header exactly as npm `cookie` 0.7 `parse()` does (the version Socket.IO and
/// Express pull in under the original gateway): pairs split on ';', name and value trimmed of
/// spaces and tabs, the first occurrence of a name wins, a value wrapped in double quotes loses
/// them, a value containing '%' is URI-decoded like decodeURIComponent and kept raw when that
/// fails. A segment without '=' is skipped. Names are case-sensitive.
std::map<std::string, std::string> parse_cookies(std::string_view header);

struct Credentials {
  enum Source { Cookie, AuthPayload, Bearer };
  std::string space_id;
  std::string token;
  Source source = Cookie;

  /// The auth action's `authorization` param: "<spaceId>,<token>".
  std::string authorization() const { return space_id + "," + token; }
};

/// The credentials of a handshake (§2.2, §9), first present wins: the X-Space-Id/X-Auth-Token
/// cookie pair (both non-empty), the CONNECT `auth` payload `{spaceId, token}` (both non-empty
/// strings), the header `Authorization: Bearer <spaceId>,<token>`. nullopt: anonymous.
std::optional<Credentials> find_credentials(const Headers& headers, const Json& connect_auth);

/// The session's tenant (§9): the space of the credentials used (also when the token turns out
/// anonymous); without credentials the X-Space-Id cookie when it is non-empty; else nullopt
/// (JSON null in the session).
std::optional<std::string> session_tenant(const Headers& headers,
                                          const std::optional<Credentials>& credentials);

/// The auth service vouched for the user in the requested space.
struct Authenticated {
  std::string user_id;
  Json session;  // the auth reply as received (it may hold the token: never log it)
};
/// Unknown or logged-out token, or a user who is not a member of the space.
struct Anonymous {};
/// The auth service could not answer: fail closed, close the transport (§2.5).
struct Failed {
  /// What went wrong, for the refusal counters (metrics).
  enum class Kind : uint8_t {
    Unavailable,   // the call failed (no endpoint, network, an error from the action)
    Timeout,       // the call timed out (auth.timeout)
    InvalidReply,  // the action answered something that is not a session
    LoggedOut,     // the token was logged out while its call was in flight
  };
  std::string reason;  // for the one warning line; never contains the token
  Kind kind = Kind::Unavailable;
};
using AuthDecision = std::variant<Authenticated, Anonymous, Failed>;

/// Maps the auth action's reply (§2.3–2.5, §9). `ok` false with `error` set: the call failed.
/// `data` is the reply when ok (JSON null for null/undefined).
AuthDecision classify_auth_reply(bool ok, const Json& data, const protocol::MoleculerError* error,
                                 const std::string& requested_space);

/// True for the error shapes that mean "not authenticated" (anonymous, not a failure).
bool is_not_authenticated_error(const protocol::MoleculerError& error);

/// Successful lookups per (spaceId, token) for `ttl_s` seconds (§2.6, §9). Bounded: past
/// `capacity` entries the oldest goes first, so a flood of distinct valid tokens cannot grow
/// memory without limit. Time is passed in so tests do not sleep. Not thread-safe: the gateway
/// owns it on its event loop.
class AuthCache {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr size_t kDefaultCapacity = 100000;

  explicit AuthCache(int ttl_s, size_t capacity = kDefaultCapacity);

  bool enabled() const { return ttl_.count() > 0 && capacity_ > 0; }
  /// The cached result, or nullopt when absent or expired (an expired entry is dropped).
  std::optional<Authenticated> get(const std::string& space_id, const std::string& token,
                                   Clock::time_point now);
  /// Stores (or refreshes) a result. Does nothing when the cache is disabled.
  void put(const std::string& space_id, const std::string& token, Authenticated result,
           Clock::time_point now);
  /// Drops every entry of `token`, in any space ($user.logout). Returns how many.
  size_t drop_token(const std::string& token);
  size_t size() const { return index_.size(); }

 private:
  // Keyed (token, space) so that drop_token is one range of the ordered index.
  using Key = std::pair<std::string, std::string>;
  struct Entry {
    Key key;
    Authenticated result;
    Clock::time_point expires;
  };
  void erase(std::list<Entry>::iterator it);
  void purge_expired(Clock::time_point now);

  std::chrono::seconds ttl_;
  size_t capacity_;
  // Oldest first. Every entry lives ttl_ from its last put, so this is also expiry order.
  std::list<Entry> entries_;
  std::map<Key, std::list<Entry>::iterator> index_;
};

}  // namespace steedos::services::rules
