// Redis transporter configuration (redis-transporter.md §2.5).
//
// Decisions beyond ioredis:
// - ioredis takes almost any string through Node's url.parse; we refuse what cannot reach a
//   server: an empty host, a port outside 1..65535, a non-numeric db, characters that are not
//   in a host name or an IPv6 address, and an unbracketed IPv6 address.
// - Errors never echo a password (nor the user part of a URL): they name the key and the part.
// - `connectTimeout` 0 is kept as 0, which ioredis reads as "no connect timeout".
// - `tls.ca` / `cert` / `key` must be strings (Node also takes arrays and Buffers, which a JSON
//   file cannot carry as PEM texts without ambiguity).
#include "transport/redis_config.hpp"

#include <cctype>
#include <cmath>
#include <limits>
#include <optional>
#include <utility>

#include "protocol/percent.hpp"

namespace steedos::transport {

namespace {

constexpr int kDefaultPort = 6379;
constexpr const char* kClusterNodeHost = "127.0.0.1";  // ioredis' Cluster default for a node

[[noreturn]] void fail(const std::string& key, const std::string& reason) {
  throw RedisConfigError(key, reason);
}

std::string dotted(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

char lower_char(char c) {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = lower_char(c);
  return out;
}

bool istarts_with(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (lower_char(s[i]) != prefix[i]) return false;
  }
  return true;
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

/// Quoted for an error message, cut short and with control bytes escaped (no credentials are
/// ever passed here).
std::string shown(std::string_view value) {
  constexpr std::size_t kMax = 80;
  std::string out = "'";
  for (std::size_t i = 0; i < value.size() && i < kMax; ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    if (c < 0x20 || c == 0x7f) {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (value.size() > kMax) out += "...";
  return out + "'";
}

/// A decimal integer in [min, max] from digits only; nullopt otherwise.
std::optional<long long> digits_value(std::string_view s, long long min, long long max) {
  if (!all_digits(s) || s.size() > 12) return std::nullopt;
  long long n = 0;
  for (const char c : s) n = n * 10 + (c - '0');
  if (n < min || n > max) return std::nullopt;
  return n;
}

std::string range_text(long long min, long long max) {
  return "must be an integer between " + std::to_string(min) + " and " + std::to_string(max);
}

// ---- hosts and ports -----------------------------------------------------------------------

bool host_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

/// An IPv6 address as written between brackets (an optional `%zone` after it).
bool ipv6_text(std::string_view s) {
  if (s.find(':') == std::string_view::npos) return false;
  const auto zone = s.find('%');
  const auto address = s.substr(0, zone);
  if (address.empty()) return false;
  for (const char c : address) {
    if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return false;
  }
  if (zone == std::string_view::npos) return true;
  const auto name = s.substr(zone + 1);
  if (name.empty()) return false;
  for (const char c : name) {
    if (!host_name_char(c)) return false;
  }
  return true;
}

/// A host name or address as given in `host` (IPv6 with or without brackets); lower-cased as
/// url.parse does; brackets removed.
std::string checked_host(const std::string& key, std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    if (!ipv6_text(host)) fail(key, "invalid IPv6 address " + shown(host));
    return lower(host);
  }
  if (host.empty()) fail(key, "missing host");
  if (host.find(':') != std::string_view::npos) {
    if (!ipv6_text(host)) fail(key, "invalid host " + shown(host));
    return lower(host);
  }
  if (host.size() > 253) fail(key, "host name longer than 253 characters");
  for (const char c : host) {
    if (!host_name_char(c)) fail(key, "invalid host " + shown(host));
  }
  return lower(host);
}

int checked_port(const std::string& key, std::string_view text) {
  const auto n = digits_value(text, 1, 65535);
  if (!n) fail(key, "port " + shown(text) + " " + range_text(1, 65535));
  return static_cast<int>(*n);
}

// ---- the URL form --------------------------------------------------------------------------

/// "redis://" or "rediss://" (any case) followed by a further URL after a comma.
bool is_url_list(std::string_view url) {
  for (auto comma = url.find(','); comma != std::string_view::npos;
       comma = url.find(',', comma + 1)) {
    auto next = url.substr(comma + 1);
    while (!next.empty() && (next.front() == ' ' || next.front() == '\t')) next.remove_prefix(1);
    if (istarts_with(next, "redis://") || istarts_with(next, "rediss://")) return true;
  }
  return false;
}

std::string decoded_credential(const std::string& key, std::string_view text) {
  auto value = protocol::decode_uri_component(text);
  if (!value) fail(key, "malformed percent-encoding in the user or password of the URL");
  return std::move(*value);
}

struct QueryItems {
  std::optional<std::string> username, password, db, connect_timeout;
};

/// Node's querystring: '&'-separated `name=value`, '+' as space, lenient escapes. Later
/// duplicates win only where ioredis would see an array, which it does not read: keep the first.
QueryItems read_query(std::string_view query) {
  QueryItems items;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const auto eq = item.find('=');
    const auto name = protocol::percent_decode(item.substr(0, eq), protocol::PlusIs::Space);
    const auto value = eq == std::string_view::npos
                           ? std::string()
                           : protocol::percent_decode(item.substr(eq + 1), protocol::PlusIs::Space);
    std::optional<std::string>* slot = nullptr;
    if (name == "username") slot = &items.username;
    if (name == "password") slot = &items.password;
    if (name == "db") slot = &items.db;
    if (name == "connectTimeout") slot = &items.connect_timeout;
    if (slot && !*slot) *slot = value;
  }
  return items;
}

int checked_db(const std::string& key, std::string_view text) {
  const auto n = digits_value(text, 0, std::numeric_limits<int>::max());
  if (!n) fail(key, "db " + shown(text) + " must be a non-negative integer");
  return static_cast<int>(*n);
}

// ---- the object form -----------------------------------------------------------------------

const Json* find(const Json& obj, const char* name) {
  const auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

/// An integral JSON number, or a string of digits (moleculer-runner converts numeric strings,
/// and people quote ports).
std::optional<long long> integer_of(const Json& v) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<unsigned long long>();
    if (u > static_cast<unsigned long long>(std::numeric_limits<long long>::max())) {
      return std::nullopt;
    }
    return static_cast<long long>(u);
  }
  if (v.is_number_integer()) return v.get<long long>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d) || std::trunc(d) != d || std::fabs(d) > 9.0e15) return std::nullopt;
    return static_cast<long long>(d);
  }
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    return digits_value(s, 0, std::numeric_limits<long long>::max() / 10);
  }
  return std::nullopt;
}

long long integer_at(const Json& v, const std::string& key, long long min, long long max) {
  const auto n = integer_of(v);
  if (!n || *n < min || *n > max) fail(key, range_text(min, max));
  return *n;
}

/// A string; a number (moleculer-runner turns `MOL_TRANSPORTER__OPTIONS__PASSWORD=1234` into
/// 1234) becomes its decimal text, as ioredis sends String(value).
std::string credential_at(const Json& v, const std::string& key) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer() || v.is_number_unsigned()) return v.dump();
  if (v.is_number_float()) {
    const auto n = integer_of(v);
    return n ? std::to_string(*n) : v.dump();
  }
  fail(key, "must be a string");
}

std::string string_at(const Json& v, const std::string& key, const char* what) {
  if (!v.is_string()) fail(key, std::string("must be a string (") + what + ")");
  return v.get<std::string>();
}

void read_tls(const Json& obj, const std::string& prefix, RedisTls& tls) {
  const Json* v = find(obj, "tls");
  if (!v) return;
  const auto key = dotted(prefix, "tls");
  if (v->is_boolean()) {
    tls.enabled = v->get<bool>();
    return;
  }
  if (!v->is_object()) {
    fail(key, "must be true, false or {ca, cert, key, servername, rejectUnauthorized}");
  }
  tls.enabled = true;
  constexpr const char* kPem = "a PEM text or the path of a PEM file";
  if (const Json* x = find(*v, "ca")) tls.ca = string_at(*x, dotted(key, "ca"), kPem);
  if (const Json* x = find(*v, "cert")) tls.cert = string_at(*x, dotted(key, "cert"), kPem);
  if (const Json* x = find(*v, "key")) tls.key = string_at(*x, dotted(key, "key"), kPem);
  if (const Json* x = find(*v, "servername")) {
    tls.servername = string_at(*x, dotted(key, "servername"), "a host name");
  }
  if (const Json* x = find(*v, "rejectUnauthorized")) {
    if (!x->is_boolean()) fail(dotted(key, "rejectUnauthorized"), "must be true or false");
    tls.reject_unauthorized = x->get<bool>();
  }
}

/// username, password, tls and connectTimeout: the top-level options, or the members' options
/// of a cluster (clusterOptions.redisOptions).
void read_connection(const Json& obj, const std::string& prefix, RedisOptions& o) {
  if (const Json* v = find(obj, "username"))
    o.username = credential_at(*v, dotted(prefix, "username"));
  if (const Json* v = find(obj, "password"))
    o.password = credential_at(*v, dotted(prefix, "password"));
  read_tls(obj, prefix, o.tls);
  if (const Json* v = find(obj, "connectTimeout")) {
    o.connect_timeout_ms = static_cast<int>(
        integer_at(*v, dotted(prefix, "connectTimeout"), 0, std::numeric_limits<int>::max()));
  }
}

RedisEndpoint endpoint_at(const Json& v, const std::string& key, const char* default_host) {
  RedisEndpoint e;
  e.host = default_host;
  if (v.is_object()) {
    if (const Json* h = find(v, "host")) {
      e.host = checked_host(dotted(key, "host"), string_at(*h, dotted(key, "host"), "a host name"));
    }
    if (const Json* p = find(v, "port")) {
      e.port = static_cast<int>(integer_at(*p, dotted(key, "port"), 1, 65535));
    }
    return e;
  }
  if (v.is_number()) {  // ioredis takes a bare port
    e.port = static_cast<int>(integer_at(v, key, 1, 65535));
    return e;
  }
  if (v.is_string()) {  // "host:port" or a redis:// URL; credentials in it are not used
    const auto& text = v.get_ref<const std::string&>();
    const bool url = istarts_with(text, "redis://") || istarts_with(text, "rediss://");
    return parse_redis_url(url ? text : "redis://" + text, key).endpoints.front();
  }
  fail(key, "must be {\"host\": ..., \"port\": ...}");
}

void refuse_unsupported(const Json& obj, const std::string& prefix) {
  for (const char* name : {"sentinels", "name", "role", "sentinelPassword", "sentinelUsername"}) {
    if (find(obj, name)) {
      fail(dotted(prefix, name),
           "Redis Sentinel is not supported (yet): point the node at the master, or at a "
           "proxy, with host and port");
    }
  }
  if (find(obj, "path")) {
    fail(dotted(prefix, "path"), "Unix sockets are not supported: use host and port");
  }
}

std::string endpoint_text(const RedisEndpoint& e) {
  const bool v6 = e.host.find(':') != std::string::npos;
  return (v6 ? "[" + e.host + "]" : e.host) + ":" + std::to_string(e.port);
}

}  // namespace

RedisOptions parse_redis_url(std::string_view url, const std::string& key) {
  // url.parse trims surrounding white space.
  constexpr std::string_view kSpace = " \t\r\n";
  const auto first = url.find_first_not_of(kSpace);
  url = first == std::string_view::npos
            ? std::string_view{}
            : url.substr(first, url.find_last_not_of(kSpace) - first + 1);
  std::size_t scheme_end = 0;
  RedisOptions o;
  if (istarts_with(url, "redis://")) {
    scheme_end = 8;
  } else if (istarts_with(url, "rediss://")) {
    scheme_end = 9;
    o.tls.enabled = true;
  } else {
    fail(key, "expected a URL redis://[[user]:password@]host[:port][/db] or rediss://...");
  }
  if (is_url_list(url)) {
    fail(key,
         "a comma-separated list of Redis URLs is not supported (ioredis takes one URL); for "
         "several members use {\"type\": \"Redis\", \"options\": {\"cluster\": {\"nodes\": "
         "[{\"host\": ..., \"port\": ...}, ...]}}}");
  }

  auto rest = url.substr(scheme_end);
  rest = rest.substr(0, rest.find('#'));
  const auto authority_end = rest.find_first_of("/?");
  auto authority = rest.substr(0, authority_end);
  rest = authority_end == std::string_view::npos ? std::string_view{} : rest.substr(authority_end);

  bool credentials = false;
  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    const auto userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    const auto colon = userinfo.find(':');
    o.username = decoded_credential(key, userinfo.substr(0, colon));
    if (colon != std::string_view::npos) {
      o.password = decoded_credential(key, userinfo.substr(colon + 1));
    }
    credentials = true;
  }

  if (authority.find(',') != std::string_view::npos) {
    fail(key, "a comma-separated list of Redis hosts is not supported (ioredis takes one URL)");
  }
  RedisEndpoint endpoint;
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) fail(key, "unclosed '[' in the host of the URL");
    endpoint.host = checked_host(key, authority.substr(0, close + 1));
    const auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') fail(key, "unexpected text after the IPv6 address of the URL");
      port_text = after.substr(1);
    }
  } else {
    const auto colon = authority.find(':');
    const auto host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.find(':') != std::string_view::npos) {
        fail(key, "an IPv6 host must be written in brackets: redis://[::1]:6379");
      }
    }
    if (host.empty()) fail(key, "missing host in the URL");
    endpoint.host = checked_host(key, host);
  }
  endpoint.port = port_text.empty() ? kDefaultPort : checked_port(key, port_text);
  o.endpoints = {endpoint};

  const auto query_start = rest.find('?');
  const auto path = rest.substr(0, query_start);
  bool db_set = false;
  if (path.size() > 1) {
    o.db = checked_db(key, path.substr(1));
    db_set = true;
  }
  if (query_start != std::string_view::npos) {
    const auto q = read_query(rest.substr(query_start + 1));
    if (!credentials && q.username) o.username = *q.username;
    if (!credentials && q.password) o.password = *q.password;
    if (!db_set && q.db) o.db = checked_db(key, *q.db);
    if (q.connect_timeout) {
      const auto n = digits_value(*q.connect_timeout, 0, std::numeric_limits<int>::max());
      if (!n) fail(key, "connectTimeout " + shown(*q.connect_timeout) + " must be an integer");
      o.connect_timeout_ms = static_cast<int>(*n);
    }
  }
  return o;
}

RedisOptions parse_redis_options(const Json& options, const std::string& key_prefix) {
  if (options.is_null()) return RedisOptions{};
  if (options.is_string()) return parse_redis_url(options.get<std::string>(), key_prefix);
  if (!options.is_object()) fail(key_prefix, "must be an object or a redis:// URL string");
  refuse_unsupported(options, key_prefix);

  RedisOptions o;
  if (const Json* v = find(options, "db")) {
    o.db = static_cast<int>(
        integer_at(*v, dotted(key_prefix, "db"), 0, std::numeric_limits<int>::max()));
  }

  if (const Json* cluster = find(options, "cluster")) {
    const auto ckey = dotted(key_prefix, "cluster");
    if (!cluster->is_object()) fail(ckey, "must be {\"nodes\": [{\"host\": ..., \"port\": ...}]}");
    const auto nkey = dotted(ckey, "nodes");
    const Json* nodes = find(*cluster, "nodes");
    if (!nodes || !nodes->is_array() || nodes->empty()) {
      fail(nkey, "No nodes defined for cluster (expected [{\"host\": ..., \"port\": ...}, ...])");
    }
    o.endpoints.clear();
    for (std::size_t i = 0; i < nodes->size(); ++i) {
      o.endpoints.push_back(
          endpoint_at((*nodes)[i], nkey + "[" + std::to_string(i) + "]", kClusterNodeHost));
    }
    // ioredis' Cluster reads its members' options from clusterOptions.redisOptions only.
    if (const Json* copts = find(*cluster, "clusterOptions")) {
      const auto okey = dotted(ckey, "clusterOptions");
      if (!copts->is_object()) fail(okey, "must be an object");
      if (const Json* ropts = find(*copts, "redisOptions")) {
        const auto rkey = dotted(okey, "redisOptions");
        if (!ropts->is_object()) fail(rkey, "must be an object");
        refuse_unsupported(*ropts, rkey);
        read_connection(*ropts, rkey, o);
      }
    }
    return o;
  }

  o.endpoints = {endpoint_at(options, key_prefix, "localhost")};
  read_connection(options, key_prefix, o);
  return o;
}

std::string describe_redis(const RedisOptions& options) {
  std::string text = options.tls.enabled ? "rediss://" : "redis://";
  for (std::size_t i = 0; i < options.endpoints.size(); ++i) {
    if (i > 0) text += ",";
    text += endpoint_text(options.endpoints[i]);
  }
  std::string details;
  const auto add = [&details](const std::string& item) {
    details += (details.empty() ? "" : ", ") + item;
  };
  if (!options.username.empty()) add("user " + options.username);
  if (!options.password.empty()) add("password set");
  if (options.endpoints.size() > 1) add("failover list");
  if (options.tls.enabled && !options.tls.reject_unauthorized) add("certificate not checked");
  if (options.tls.enabled && !options.tls.servername.empty()) {
    add("servername " + options.tls.servername);
  }
  return details.empty() ? text : text + " (" + details + ")";
}

}  // namespace steedos::transport
