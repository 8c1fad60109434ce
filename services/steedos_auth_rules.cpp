#include "services/steedos_auth_rules.hpp"

#include <cstdint>
#include <iterator>

#include "protocol/percent.hpp"

namespace steedos::services::rules {

namespace {

bool is_cookie_space(char c) {
  return c == ' ' || c == '\t';
}

// cookie 0.7 startIndex(): first index in [index, max) that is not a space or tab, else max.
size_t start_index(std::string_view s, size_t index, size_t max) {
  while (index < max && is_cookie_space(s[index])) ++index;
  return index < max ? index : max;
}

// cookie 0.7 endIndex(): one past the last non-blank index in [min, index), else min.
size_t end_index(std::string_view s, size_t index, size_t min) {
  while (index > min) {
    if (!is_cookie_space(s[index - 1])) return index;
    --index;
  }
  return min;
}

// JS String.prototype.slice: a start past the end gives "" (the `"` value does this).
std::string js_slice(std::string_view s, size_t start, size_t end) {
  return start >= end ? std::string() : std::string(s.substr(start, end - start));
}

std::string trim_blanks(std::string_view s) {
  size_t begin = start_index(s, 0, s.size());
  return js_slice(s, begin, end_index(s, s.size(), begin));
}

bool is_non_empty_string(const Json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() && !it->get_ref<const std::string&>().empty();
}

// `Authorization: Bearer <spaceId>,<token>`. The scheme is case-insensitive (RFC 7235); blanks
// around either part are ignored; the token keeps any further commas.
std::optional<Credentials> bearer_credentials(const Headers& headers) {
  auto it = headers.find("authorization");
  if (it == headers.end()) return std::nullopt;
  std::string value = trim_blanks(it->second);
  static constexpr std::string_view kScheme = "bearer";
  if (value.size() <= kScheme.size() || !is_cookie_space(value[kScheme.size()])) {
    return std::nullopt;
  }
  for (size_t i = 0; i < kScheme.size(); ++i) {
    char c = value[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kScheme[i]) return std::nullopt;
  }
  std::string_view rest = std::string_view(value).substr(kScheme.size());
  size_t comma = rest.find(',');
  if (comma == std::string_view::npos) return std::nullopt;
  Credentials credentials;
  credentials.space_id = trim_blanks(rest.substr(0, comma));
  credentials.token = trim_blanks(rest.substr(comma + 1));
  credentials.source = Credentials::Bearer;
  if (credentials.space_id.empty() || credentials.token.empty()) return std::nullopt;
  return credentials;
}

std::string cookie_or_empty(const std::map<std::string, std::string>& cookies,
                            std::string_view name) {
  auto it = cookies.find(std::string(name));
  return it == cookies.end() ? std::string() : it->second;
}

}  // namespace

std::map<std::string, std::string> parse_cookies(std::string_view str) {
  // A transcription of cookie 0.7 parse(), index for index, so that odd headers (backtracking
  // over a ';' that precedes the '=', a lone '"', blank names) come out exactly as in Node.
  std::map<std::string, std::string> cookies;
  const size_t len = str.size();
  if (len < 2) return cookies;
  size_t index = 0;
  do {
    size_t eq = str.find('=', index);
    if (eq == std::string_view::npos) break;
    size_t end = str.find(';', index);
    if (end == std::string_view::npos) {
      end = len;
    } else if (eq > end) {
      // A segment without '=': restart just after the last ';' before this '='.
      index = str.rfind(';', eq - 1) + 1;
      continue;
    }
    size_t key_start = start_index(str, index, eq);
    size_t key_end = end_index(str, eq, key_start);
    std::string key = js_slice(str, key_start, key_end);
    if (cookies.find(key) == cookies.end()) {
      size_t value_start = start_index(str, eq + 1, end);
      size_t value_end = end_index(str, end, value_start);
      if (value_start < len && str[value_start] == '"' && value_end >= 1 &&
          str[value_end - 1] == '"') {
        ++value_start;
        --value_end;
      }
      std::string value = js_slice(str, value_start, value_end);
      if (value.find('%') != std::string::npos) {
        if (auto decoded = protocol::decode_uri_component(value)) value = std::move(*decoded);
      }
      cookies.emplace(std::move(key), std::move(value));
    }
    index = end + 1;
  } while (index < len);
  return cookies;
}

std::optional<Credentials> find_credentials(const Headers& headers, const Json& connect_auth) {
  auto cookie_header = headers.find("cookie");
  if (cookie_header != headers.end()) {
    auto cookies = parse_cookies(cookie_header->second);
    Credentials credentials;
    credentials.space_id = cookie_or_empty(cookies, kSpaceCookie);
    credentials.token = cookie_or_empty(cookies, kTokenCookie);
    credentials.source = Credentials::Cookie;
    // One cookie of the pair alone is not a credential (§9): fall through to the next source.
    if (!credentials.space_id.empty() && !credentials.token.empty()) return credentials;
  }
  if (connect_auth.is_object() && is_non_empty_string(connect_auth, "spaceId") &&
      is_non_empty_string(connect_auth, "token")) {
    Credentials credentials;
    credentials.space_id = connect_auth["spaceId"].get<std::string>();
    credentials.token = connect_auth["token"].get<std::string>();
    credentials.source = Credentials::AuthPayload;
    return credentials;
  }
  return bearer_credentials(headers);
}

std::optional<std::string> session_tenant(const Headers& headers,
                                          const std::optional<Credentials>& credentials) {
  if (credentials) return credentials->space_id;
  auto cookie_header = headers.find("cookie");
  if (cookie_header == headers.end()) return std::nullopt;
  // An empty X-Space-Id is no tenant: rooms named "-<part>" would be shared by every such
  // socket across tenants.
  std::string space = cookie_or_empty(parse_cookies(cookie_header->second), kSpaceCookie);
  if (space.empty()) return std::nullopt;
  return space;
}

bool is_not_authenticated_error(const protocol::MoleculerError& error) {
  return error.code == 401 || error.type == "NOT_AUTHENTICATED" || error.type == "UNAUTHORIZED" ||
         error.type == "INVALID_TOKEN";
}

namespace {

// The reason logged for a failed call. Only the Moleculer errors whose message is a template of
// action and node keep their message; any other message is the auth service's own text, which
// may quote the authorization it was given, and the token must never reach the log (§2.7).
std::string failure_reason(const protocol::MoleculerError& error) {
  static const char* const kTemplated[] = {"ServiceNotFoundError",   "ServiceNotAvailableError",
                                           "RequestTimeoutError",    "RequestRejectedError",
                                           "RequestSkippedError",    "QueueIsFullError",
                                           "BrokerDisconnectedError"};
  for (const char* name : kTemplated) {
    if (error.name == name) return error.name + ": " + error.message;
  }
  std::string reason = error.name + " (code " + std::to_string(error.code);
  if (!error.type.empty()) reason += ", type " + error.type;
  return reason + ")";
}

}  // namespace

AuthDecision classify_auth_reply(bool ok, const Json& data, const protocol::MoleculerError* error,
                                 const std::string& requested_space) {
  if (!ok || error != nullptr) {
    if (error == nullptr) return Failed{"auth call failed without an error"};
    if (is_not_authenticated_error(*error)) return Anonymous{};
    return Failed{failure_reason(*error), error->name == "RequestTimeoutError"
                                              ? Failed::Kind::Timeout
                                              : Failed::Kind::Unavailable};
  }
  // null/undefined: the token is unknown.
  if (data.is_null()) return Anonymous{};
  // Garbage (not an object, no usable userId, a spaceId that is not a string) fails closed
  // rather than anonymous: it means the action is misconfigured or broken, and downgrading would
  // silently log every user out of their rooms while hiding the fault; closing the transport
  // makes clients retry with back-off and the warning and metric show the operator the problem.
  if (!data.is_object())
    return Failed{"auth reply is not a session object", Failed::Kind::InvalidReply};
  if (!is_non_empty_string(data, "userId"))
    return Failed{"auth reply has no userId string", Failed::Kind::InvalidReply};
  auto space = data.find("spaceId");
  if (space != data.end() && !space->is_null() && !space->is_string()) {
    return Failed{"auth reply has a spaceId that is not a string", Failed::Kind::InvalidReply};
  }
  // A valid user of another space (or of none) is not a member of the requested space: as in
  // the original, the connection stays open, anonymous.
  if (space == data.end() || space->is_null() ||
      space->get_ref<const std::string&>() != requested_space) {
    return Anonymous{};
  }
  return Authenticated{data["userId"].get<std::string>(), data};
}

AuthCache::AuthCache(int ttl_s, size_t capacity)
    : ttl_(ttl_s > 0 ? ttl_s : 0), capacity_(capacity) {}

void AuthCache::erase(std::list<Entry>::iterator it) {
  index_.erase(it->key);
  entries_.erase(it);
}

void AuthCache::purge_expired(Clock::time_point now) {
  while (!entries_.empty() && entries_.front().expires <= now) erase(entries_.begin());
}

std::optional<Authenticated> AuthCache::get(const std::string& space_id, const std::string& token,
                                            Clock::time_point now) {
  purge_expired(now);
  auto it = index_.find(Key{token, space_id});
  if (it == index_.end()) return std::nullopt;
  return it->second->result;
}

void AuthCache::put(const std::string& space_id, const std::string& token, Authenticated result,
                    Clock::time_point now) {
  if (!enabled()) return;
  purge_expired(now);
  Key key{token, space_id};
  auto existing = index_.find(key);
  if (existing != index_.end()) erase(existing->second);
  entries_.push_back(Entry{key, std::move(result), now + ttl_});
  index_.emplace(std::move(key), std::prev(entries_.end()));
  while (index_.size() > capacity_) erase(entries_.begin());
}

size_t AuthCache::drop_token(const std::string& token) {
  size_t dropped = 0;
  auto it = index_.lower_bound(Key{token, std::string()});
  while (it != index_.end() && it->first.first == token) {
    auto entry = it->second;
    ++it;
    erase(entry);
    ++dropped;
  }
  return dropped;
}

}  // namespace steedos::services::rules
