// The pure rules of the Steedos `socket` service against gateway-contract.md §2, §3, §5, §6, §9:
// every rule and every example of the contract, with exact room names, event names and JSON.
#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "services/steedos_rules.hpp"

using steedos::dump_json;
using steedos::Json;
using steedos::protocol::MoleculerError;
using steedos::services::GatewaySettings;
namespace errors = steedos::protocol::errors;
namespace rules = steedos::services::rules;

namespace {

Json parse(const std::string& text) {
  return Json::parse(text);
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

// ---- auth helpers ----

rules::AuthDecision classify(const std::string& reply, const std::string& space = "S1") {
  return rules::classify_auth_reply(true, parse(reply), nullptr, space);
}

rules::AuthDecision classify_error(const MoleculerError& error) {
  return rules::classify_auth_reply(false, nullptr, &error, "S1");
}

bool is_anonymous(const rules::AuthDecision& decision) {
  return std::holds_alternative<rules::Anonymous>(decision);
}

std::string failure_of(const rules::AuthDecision& decision) {
  const auto* failed = std::get_if<rules::Failed>(&decision);
  return failed == nullptr ? "<not failed>" : failed->reason;
}

std::optional<rules::Credentials> credentials(const rules::Headers& headers,
                                              const std::string& auth = "null") {
  return rules::find_credentials(headers, parse(auth));
}

// ---- room helpers ----

const rules::SessionView kUser{std::string("S1"), std::string("U1"), false};
const rules::SessionView kAnonymous{std::string("S1"), std::nullopt, true};

rules::RoomRequest resolve(const std::string& args, const rules::SessionView& session = kUser,
                           const GatewaySettings& settings = GatewaySettings{}) {
  return rules::resolve_rooms(parse(args), session, settings);
}

std::string rooms(const std::string& args, const rules::SessionView& session = kUser,
                  const GatewaySettings& settings = GatewaySettings{}) {
  auto request = resolve(args, session, settings);
  return request.ok() ? join(request.rooms) : "refused: " + request.error;
}

// ---- event helpers ----

// "<event> <args> -> <target>" per delivery, ";"-separated; "ignored"; "rejected: <reason>".
std::string describe(const rules::EventOutcome& outcome) {
  if (std::holds_alternative<rules::Ignored>(outcome)) return "ignored";
  if (const auto* rejected = std::get_if<rules::Rejected>(&outcome)) {
    return "rejected: " + rejected->reason;
  }
  std::string out;
  for (const auto& delivery : std::get<rules::Deliver>(outcome).deliveries) {
    if (!out.empty()) out += ";";
    out += delivery.event + " " + delivery.args_json + " -> ";
    if (const auto* target = std::get_if<rules::RoomsTarget>(&delivery.target)) {
      out += "[" + join(target->rooms) + "]";
    } else {
      out += "*";
    }
  }
  return out.empty() ? "nothing" : out;
}

const std::vector<std::string> kMetadataTypes = GatewaySettings{}.metadata_types;

std::string metadata(const std::string& payload, const std::string& event = "$metadata.objects") {
  return describe(rules::map_metadata(event, parse(payload), kMetadataTypes));
}

std::string emit(const std::string& payload, bool nested) {
  return describe(rules::map_socket_emit(parse(payload), nested));
}

std::string record(const std::string& event, const std::string& payload) {
  return describe(rules::map_object_record_event(event, parse(payload)));
}

// ---- params helpers ----

template <class Params>
std::string errors_of(const rules::Validated<Params>& result) {
  const auto* failure = std::get_if<rules::ValidationFailure>(&result);
  return failure == nullptr ? "valid" : dump_json(failure->errors);
}

}  // namespace

// ===================================================================== cookies (§2.2)

TEST_CASE("parse_cookies: the Steedos pair") {
  auto cookies = rules::parse_cookies("X-Space-Id=S1; X-Auth-Token=T1");
  CHECK(cookies.size() == 2);
  CHECK(cookies["X-Space-Id"] == "S1");
  CHECK(cookies["X-Auth-Token"] == "T1");
}

TEST_CASE("parse_cookies: split on ';', names and values trimmed of spaces and tabs") {
  auto cookies = rules::parse_cookies("  a = b  ;c=d;\te\t=\tf\t");
  CHECK(cookies["a"] == "b");
  CHECK(cookies["c"] == "d");
  CHECK(cookies["e"] == "f");
  CHECK(cookies.size() == 3);
  // A value keeps its inner blanks and any further '='.
  CHECK(rules::parse_cookies("a=x y=z")["a"] == "x y=z");
}

TEST_CASE("parse_cookies: the first occurrence of a name wins") {
  CHECK(rules::parse_cookies("a=1; a=2")["a"] == "1");
  CHECK(rules::parse_cookies("X-Auth-Token=first; X-Auth-Token=second")["X-Auth-Token"] == "first");
  // Even when the first value is empty.
  CHECK(rules::parse_cookies("a=; a=2")["a"] == "");
}

TEST_CASE("parse_cookies: surrounding double quotes are stripped") {
  CHECK(rules::parse_cookies("a=\"quoted\"")["a"] == "quoted");
  CHECK(rules::parse_cookies("a= \" x \" ")["a"] == " x ");
  CHECK(rules::parse_cookies("a=\"\"")["a"] == "");
  // Only a pair of quotes: a lone or one-sided quote stays (cookie 0.7), a single '"' is "".
  CHECK(rules::parse_cookies("a=\"x")["a"] == "\"x");
  CHECK(rules::parse_cookies("a=x\"")["a"] == "x\"");
  CHECK(rules::parse_cookies("a=\"")["a"] == "");
  // Quotes are stripped before decoding.
  CHECK(rules::parse_cookies("a=\"%41\"")["a"] == "A");
}

TEST_CASE("parse_cookies: URI-decoded only with '%', raw when decoding fails") {
  CHECK(rules::parse_cookies("a=hello%20world")["a"] == "hello world");
  CHECK(rules::parse_cookies("a=%E4%B8%AD")["a"] == "\xE4\xB8\xAD");
  CHECK(rules::parse_cookies("a=%3B%2C%25")["a"] == ";,%");
  CHECK(rules::parse_cookies("a=a+b")["a"] == "a+b");  // '+' is not a space
  // Without '%' nothing is decoded.
  CHECK(rules::parse_cookies("a=S1,T1")["a"] == "S1,T1");
  // Malformed escapes: the raw value.
  CHECK(rules::parse_cookies("a=100%")["a"] == "100%");
  CHECK(rules::parse_cookies("a=%zz")["a"] == "%zz");
  CHECK(rules::parse_cookies("a=%4")["a"] == "%4");
  CHECK(rules::parse_cookies("a=%E4%B8")["a"] == "%E4%B8");              // truncated sequence
  CHECK(rules::parse_cookies("a=%C0%80")["a"] == "%C0%80");              // overlong
  CHECK(rules::parse_cookies("a=%ED%A0%80")["a"] == "%ED%A0%80");        // surrogate
  CHECK(rules::parse_cookies("a=%F4%90%80%80")["a"] == "%F4%90%80%80");  // past U+10FFFF
  CHECK(rules::parse_cookies("a=%80")["a"] == "%80");                    // lone continuation byte
  // One bad escape keeps the whole value raw, as decodeURIComponent throws for all of it.
  CHECK(rules::parse_cookies("a=%41%zz")["a"] == "%41%zz");
  CHECK(rules::parse_cookies("a=%F0%9F%98%80")["a"] == "\xF0\x9F\x98\x80");
}

TEST_CASE("parse_cookies: names are case-sensitive") {
  auto cookies = rules::parse_cookies("x-space-id=lower; X-Space-Id=S1");
  CHECK(cookies["x-space-id"] == "lower");
  CHECK(cookies["X-Space-Id"] == "S1");
}

TEST_CASE("parse_cookies: segments without '=' and degenerate headers") {
  auto cookies = rules::parse_cookies("junk; a=1; more junk; b=2");
  CHECK(cookies.size() == 2);
  CHECK(cookies["a"] == "1");
  CHECK(cookies["b"] == "2");
  CHECK(rules::parse_cookies("").empty());
  CHECK(rules::parse_cookies("a").empty());
  CHECK(rules::parse_cookies("=").empty());  // shorter than a name plus '='
  CHECK(rules::parse_cookies("=v")[""] == "v");
  CHECK(rules::parse_cookies(";;;").empty());
  CHECK(rules::parse_cookies("a=1;")["a"] == "1");
}

// ===================================================================== credentials (§2.2, §9)

TEST_CASE("find_credentials: the cookie pair") {
  auto found = credentials({{"cookie", "X-Space-Id=S1; X-Auth-Token=T1"}});
  REQUIRE(found.has_value());
  CHECK(found->space_id == "S1");
  CHECK(found->token == "T1");
  CHECK(found->source == rules::Credentials::Cookie);
  CHECK(found->authorization() == "S1,T1");
  // Decoded cookie values are used.
  auto decoded = credentials({{"cookie", "X-Space-Id=S%201; X-Auth-Token=\"T1\""}});
  REQUIRE(decoded.has_value());
  CHECK(decoded->authorization() == "S 1,T1");
}

TEST_CASE("find_credentials: the cookie pair counts only when both cookies are non-empty") {
  CHECK_FALSE(credentials({{"cookie", "X-Space-Id=S1"}}).has_value());
  CHECK_FALSE(credentials({{"cookie", "X-Auth-Token=T1"}}).has_value());
  CHECK_FALSE(credentials({{"cookie", "X-Space-Id=; X-Auth-Token=T1"}}).has_value());
  CHECK_FALSE(credentials({{"cookie", "X-Space-Id=S1; X-Auth-Token=\"\""}}).has_value());
  CHECK_FALSE(credentials({{"cookie", "x-space-id=S1; x-auth-token=T1"}}).has_value());
}

TEST_CASE("find_credentials: the CONNECT auth payload") {
  auto found = credentials({}, R"({"spaceId":"S2","token":"T2"})");
  REQUIRE(found.has_value());
  CHECK(found->source == rules::Credentials::AuthPayload);
  CHECK(found->authorization() == "S2,T2");
  // Both must be non-empty strings.
  CHECK_FALSE(credentials({}, R"({"spaceId":"S2"})").has_value());
  CHECK_FALSE(credentials({}, R"({"spaceId":"S2","token":""})").has_value());
  CHECK_FALSE(credentials({}, R"({"spaceId":"S2","token":42})").has_value());
  CHECK_FALSE(credentials({}, R"({"spaceId":null,"token":"T2"})").has_value());
  CHECK_FALSE(credentials({}, R"(["S2","T2"])").has_value());
  CHECK_FALSE(credentials({}, R"("S2,T2")").has_value());
}

TEST_CASE("find_credentials: Authorization: Bearer <spaceId>,<token>") {
  auto found = credentials({{"authorization", "Bearer S3,T3"}});
  REQUIRE(found.has_value());
  CHECK(found->source == rules::Credentials::Bearer);
  CHECK(found->space_id == "S3");
  CHECK(found->token == "T3");
  // The scheme is case-insensitive; blanks around the parts are ignored.
  CHECK(credentials({{"authorization", "bearer S3,T3"}})->authorization() == "S3,T3");
  CHECK(credentials({{"authorization", "  BEARER\t S3 , T3  "}})->authorization() == "S3,T3");
  // The token keeps later commas.
  CHECK(credentials({{"authorization", "Bearer S3,T3,x"}})->token == "T3,x");
  CHECK_FALSE(credentials({{"authorization", "Bearer S3"}}).has_value());
  CHECK_FALSE(credentials({{"authorization", "Bearer ,T3"}}).has_value());
  CHECK_FALSE(credentials({{"authorization", "Bearer S3,"}}).has_value());
  CHECK_FALSE(credentials({{"authorization", "Bearer"}}).has_value());
  CHECK_FALSE(credentials({{"authorization", "BearerS3,T3"}}).has_value());
  CHECK_FALSE(credentials({{"authorization", "Basic UzM6VDM="}}).has_value());
}

TEST_CASE("find_credentials: precedence cookie, then auth payload, then Bearer") {
  rules::Headers all = {{"cookie", "X-Space-Id=S1; X-Auth-Token=T1"},
                        {"authorization", "Bearer S3,T3"}};
  const std::string auth = R"({"spaceId":"S2","token":"T2"})";
  CHECK(credentials(all, auth)->authorization() == "S1,T1");
  rules::Headers half_cookie = {{"cookie", "X-Space-Id=S1"}, {"authorization", "Bearer S3,T3"}};
  CHECK(credentials(half_cookie, auth)->authorization() == "S2,T2");
  CHECK(credentials(half_cookie, auth)->source == rules::Credentials::AuthPayload);
  CHECK(credentials(half_cookie)->authorization() == "S3,T3");
  CHECK(credentials(half_cookie, R"({"spaceId":"S2"})")->source == rules::Credentials::Bearer);
  CHECK_FALSE(credentials({}).has_value());
  CHECK_FALSE(credentials({{"cookie", "other=1"}}).has_value());
}

TEST_CASE("session_tenant: the space of the credentials, else the X-Space-Id cookie, else null") {
  rules::Headers cookie_space = {{"cookie", "X-Space-Id=S9"}};
  auto from_auth = credentials(cookie_space, R"({"spaceId":"S2","token":"T2"})");
  CHECK(rules::session_tenant(cookie_space, from_auth) == std::optional<std::string>("S2"));
  CHECK(rules::session_tenant(cookie_space, std::nullopt) == std::optional<std::string>("S9"));
  CHECK_FALSE(rules::session_tenant({}, std::nullopt).has_value());
  CHECK_FALSE(rules::session_tenant({{"cookie", "X-Space-Id="}}, std::nullopt).has_value());
  rules::Headers pair = {{"cookie", "X-Space-Id=S1; X-Auth-Token=T1"}};
  CHECK(rules::session_tenant(pair, credentials(pair)) == std::optional<std::string>("S1"));
}

// ===================================================================== auth replies (§2.3-2.5, §9)

TEST_CASE("classify_auth_reply: a session of the requested space is authenticated") {
  auto decision = classify(R"({"userId":"U1","spaceId":"S1","name":"Ann"})");
  const auto* user = std::get_if<rules::Authenticated>(&decision);
  REQUIRE(user != nullptr);
  CHECK(user->user_id == "U1");
  CHECK(dump_json(user->session) == R"({"userId":"U1","spaceId":"S1","name":"Ann"})");
}

TEST_CASE("classify_auth_reply: another space, or none, is anonymous") {
  CHECK(is_anonymous(classify(R"({"userId":"U1","spaceId":"S2"})")));
  CHECK(is_anonymous(classify(R"({"userId":"U1"})")));
  CHECK(is_anonymous(classify(R"({"userId":"U1","spaceId":null})")));
}

TEST_CASE("classify_auth_reply: null / undefined is anonymous") {
  CHECK(is_anonymous(classify("null")));
}

TEST_CASE("classify_auth_reply: 'not authenticated' errors are anonymous") {
  CHECK(is_anonymous(classify_error(errors::client_error("Unauthorized", 401, ""))));
  CHECK(is_anonymous(classify_error(errors::client_error("x", 400, "NOT_AUTHENTICATED"))));
  CHECK(is_anonymous(classify_error(errors::client_error("x", 403, "UNAUTHORIZED"))));
  CHECK(is_anonymous(classify_error(errors::server_error("x", "INVALID_TOKEN"))));
}

TEST_CASE("classify_auth_reply: other errors, timeouts and missing services fail closed") {
  const std::string action = "@steedos/service-accounts.getUserSession";
  CHECK(failure_of(classify_error(errors::service_not_found(action, ""))) ==
        "ServiceNotFoundError: Service '@steedos/service-accounts.getUserSession' is not found.");
  CHECK(failure_of(classify_error(errors::service_not_available(action, "n1"))) ==
        "ServiceNotAvailableError: Service '@steedos/service-accounts.getUserSession' is not "
        "available on 'n1' node.");
  CHECK(failure_of(classify_error(errors::request_timeout(action, "n1"))) ==
        "RequestTimeoutError: Request is timed out when call "
        "'@steedos/service-accounts.getUserSession' action on 'n1' node.");
  // A service's own message may quote the authorization: it is left out of the reason.
  CHECK(failure_of(classify_error(errors::server_error("bad authorization S1,T1", "DB_DOWN"))) ==
        "MoleculerServerError (code 500, type DB_DOWN)");
  CHECK(failure_of(classify_error(errors::internal_error("boom T1"))) ==
        "MoleculerError (code 500, type INTERNAL_ERROR)");
  CHECK(failure_of(rules::classify_auth_reply(false, nullptr, nullptr, "S1")) ==
        "auth call failed without an error");
}

TEST_CASE("classify_auth_reply: garbage fails closed") {
  CHECK(failure_of(classify(R"("U1")")) == "auth reply is not a session object");
  CHECK(failure_of(classify("[]")) == "auth reply is not a session object");
  CHECK(failure_of(classify("42")) == "auth reply is not a session object");
  CHECK(failure_of(classify("false")) == "auth reply is not a session object");
  CHECK(failure_of(classify("{}")) == "auth reply has no userId string");
  CHECK(failure_of(classify(R"({"userId":5,"spaceId":"S1"})")) ==
        "auth reply has no userId string");
  CHECK(failure_of(classify(R"({"userId":"","spaceId":"S1"})")) ==
        "auth reply has no userId string");
  CHECK(failure_of(classify(R"({"userId":"U1","spaceId":7})")) ==
        "auth reply has a spaceId that is not a string");
}

// ===================================================================== auth cache (§2.6, §9)

TEST_CASE("AuthCache: hits within the TTL, misses after it") {
  using namespace std::chrono_literals;
  rules::AuthCache cache(60);
  const auto t0 = rules::AuthCache::Clock::time_point{} + 1000s;
  CHECK(cache.enabled());
  CHECK_FALSE(cache.get("S1", "T1", t0).has_value());
  cache.put("S1", "T1", rules::Authenticated{"U1", parse(R"({"userId":"U1"})")}, t0);
  auto hit = cache.get("S1", "T1", t0 + 59s);
  REQUIRE(hit.has_value());
  CHECK(hit->user_id == "U1");
  CHECK(dump_json(hit->session) == R"({"userId":"U1"})");
  // Keyed by (space, token): the same token in another space is another lookup.
  CHECK_FALSE(cache.get("S2", "T1", t0).has_value());
  CHECK_FALSE(cache.get("S1", "T2", t0).has_value());
  // At 60 s the entry has expired and is dropped.
  CHECK_FALSE(cache.get("S1", "T1", t0 + 60s).has_value());
  CHECK(cache.size() == 0);
}

TEST_CASE("AuthCache: a TTL of 0 disables the cache") {
  rules::AuthCache cache(0);
  const auto now = rules::AuthCache::Clock::time_point{};
  CHECK_FALSE(cache.enabled());
  cache.put("S1", "T1", rules::Authenticated{"U1", Json::object()}, now);
  CHECK(cache.size() == 0);
  CHECK_FALSE(cache.get("S1", "T1", now).has_value());
}

TEST_CASE("AuthCache: drop_token removes that token in every space, other tokens stay") {
  rules::AuthCache cache(60);
  const auto now = rules::AuthCache::Clock::time_point{};
  cache.put("S1", "T1", rules::Authenticated{"U1", Json::object()}, now);
  cache.put("S2", "T1", rules::Authenticated{"U1", Json::object()}, now);
  cache.put("S1", "T2", rules::Authenticated{"U1", Json::object()}, now);   // same user
  cache.put("S1", "T10", rules::Authenticated{"U2", Json::object()}, now);  // prefix of T1
  CHECK(cache.drop_token("T1") == 2);
  CHECK_FALSE(cache.get("S1", "T1", now).has_value());
  CHECK_FALSE(cache.get("S2", "T1", now).has_value());
  CHECK(cache.get("S1", "T2", now).has_value());
  CHECK(cache.get("S1", "T10", now).has_value());
  CHECK(cache.drop_token("T1") == 0);
  CHECK(cache.size() == 2);
}

TEST_CASE("AuthCache: bounded, the oldest entry goes first; a put refreshes") {
  using namespace std::chrono_literals;
  rules::AuthCache cache(60, 2);
  const auto t0 = rules::AuthCache::Clock::time_point{};
  cache.put("S1", "A", rules::Authenticated{"U1", Json::object()}, t0);
  cache.put("S1", "B", rules::Authenticated{"U2", Json::object()}, t0 + 1s);
  cache.put("S1", "A", rules::Authenticated{"U1", Json::object()}, t0 + 2s);  // A is now newest
  cache.put("S1", "C", rules::Authenticated{"U3", Json::object()}, t0 + 3s);  // evicts B
  CHECK(cache.size() == 2);
  CHECK(cache.get("S1", "A", t0 + 3s).has_value());
  CHECK_FALSE(cache.get("S1", "B", t0 + 3s).has_value());
  CHECK(cache.get("S1", "C", t0 + 3s).has_value());
  // The refresh also moved A's expiry: alive at 61 s, gone at 62 s.
  CHECK(cache.get("S1", "A", t0 + 61s).has_value());
  CHECK_FALSE(cache.get("S1", "A", t0 + 62s).has_value());
}

// ===================================================================== rooms (§3, §9)

TEST_CASE("resolve_rooms: the contract's examples (tenant S1, user U1)") {
  CHECK(rooms(R"({"roomParts":"space"})") == "S1-space");
  CHECK(rooms(R"({"roomParts":["orders","notifications"]})") == "S1-orders,S1-notifications");
  CHECK(rooms(R"({"roomParts":"notification-change","individual":true})") ==
        "S1-notification-change-U1");
  CHECK(rooms(R"({"roomParts":"record:orders:change-42"})") == "S1-record:orders:change-42");
  // The seed's examples.
  CHECK(rooms(R"({"roomParts":["orders","notifications"],"individual":false})") ==
        "S1-orders,S1-notifications");
  CHECK(rooms(R"({"roomParts":["orders"]})") == "S1-orders");
}

TEST_CASE("resolve_rooms: individual arrays, defaults and the request fields") {
  CHECK(rooms(R"({"roomParts":["a","b"],"individual":true})") == "S1-a-U1,S1-b-U1");
  auto shared = resolve(R"({"roomParts":"space"})");
  CHECK_FALSE(shared.individual);
  CHECK(shared.string_form);
  CHECK(dump_json(shared.room_parts_original) == R"("space")");
  auto array = resolve(R"({"roomParts":["a"],"individual":true})");
  CHECK(array.individual);
  CHECK_FALSE(array.string_form);
  CHECK(dump_json(array.room_parts_original) == R"(["a"])");
  // Duplicates name one room.
  CHECK(rooms(R"({"roomParts":["a","b","a"]})") == "S1-a,S1-b");
}

TEST_CASE("resolve_rooms: individual must be a boolean") {
  CHECK(rooms(R"({"roomParts":"a","individual":"true"})") ==
        "refused: individual must be a boolean");
  CHECK(rooms(R"({"roomParts":"a","individual":1})") == "refused: individual must be a boolean");
  CHECK(rooms(R"({"roomParts":"a","individual":null})") == "refused: individual must be a boolean");
  CHECK(rooms(R"({"roomParts":"a","individual":false})") == "S1-a");
}

TEST_CASE("resolve_rooms: roomParts shape") {
  CHECK(rooms("{}") == "refused: roomParts is required");
  CHECK(rooms(R"({"roomParts":null})") == "refused: roomParts is required");
  CHECK(rooms(R"({"roomParts":5})") ==
        "refused: roomParts must be a string or an array of strings");
  CHECK(rooms(R"({"roomParts":{"a":1}})") ==
        "refused: roomParts must be a string or an array of strings");
  CHECK(rooms(R"({"roomParts":["a",5]})") ==
        "refused: roomParts must be a string or an array of strings");
  CHECK(rooms(R"({"roomParts":""})") == "refused: roomParts must not be empty");
  CHECK(rooms(R"({"roomParts":[]})") == "refused: roomParts must not be empty");
  CHECK(rooms(R"({"roomParts":["a",""]})") == "refused: room part must not be empty");
  CHECK(rooms(R"("space")") == "refused: expected { roomParts, individual }");
  CHECK(rooms("null") == "refused: expected { roomParts, individual }");
  // A refused request names no rooms, even if some parts were fine.
  CHECK(resolve(R"({"roomParts":["a",5]})").rooms.empty());
}

TEST_CASE("resolve_rooms: at most 64 parts") {
  Json parts = Json::array();
  for (int i = 0; i < 64; ++i) parts.push_back("p" + std::to_string(i));
  Json args = {{"roomParts", parts}};
  CHECK(rules::resolve_rooms(args, kUser, GatewaySettings{}).rooms.size() == 64);
  args["roomParts"].push_back("p64");
  CHECK(rules::resolve_rooms(args, kUser, GatewaySettings{}).error ==
        "too many roomParts (max 64)");
}

TEST_CASE("resolve_rooms: at most 256 UTF-8 bytes per part") {
  auto with_part = [](const std::string& part) {
    return rules::resolve_rooms(Json{{"roomParts", part}}, kUser, GatewaySettings{});
  };
  CHECK(with_part(std::string(256, 'a')).ok());
  CHECK(with_part(std::string(257, 'a')).error == "room part longer than 256 bytes");
  std::string two_byte;
  for (int i = 0; i < 128; ++i) two_byte += "\xC3\xA9";  // é, 2 bytes each: 256 bytes
  CHECK(with_part(two_byte).ok());
  CHECK(with_part(two_byte + "\xC3\xA9").error == "room part longer than 256 bytes");
  // In an array, one long part refuses all.
  Json args = {{"roomParts", {"ok", std::string(257, 'b')}}};
  CHECK(rules::resolve_rooms(args, kUser, GatewaySettings{}).error ==
        "room part longer than 256 bytes");
}

TEST_CASE("resolve_rooms: control characters U+0000-U+001F and U+007F") {
  const std::string refused = "refused: room part contains control characters";
  CHECK(rooms(R"({"roomParts":"a\nb"})") == refused);
  CHECK(rooms(R"({"roomParts":"a\u0000b"})") == refused);
  CHECK(rooms(R"({"roomParts":"\u001f"})") == refused);
  CHECK(rooms(R"({"roomParts":"a\u007f"})") == refused);
  CHECK(rooms(R"({"roomParts":["ok","\t"]})") == refused);
  // Space, U+0080 and other characters are fine.
  CHECK(rooms(R"({"roomParts":"a b"})") == "S1-a b");
  CHECK(rooms(R"({"roomParts":"a\u0080"})") == "S1-a\xC2\x80");
  CHECK(rooms(R"({"roomParts":"订单"})") == "S1-订单");
}

TEST_CASE("resolve_rooms: anonymous sockets and tenant rooms") {
  CHECK(rooms(R"({"roomParts":"space"})", kAnonymous) ==
        "refused: anonymous sockets cannot join tenant rooms");
  GatewaySettings open;
  open.anonymous_rooms = true;
  CHECK(rooms(R"({"roomParts":"space"})", kAnonymous, open) == "S1-space");
  // Individual rooms stay refused, whatever anonymousRooms says.
  CHECK(rooms(R"({"roomParts":"notification-change","individual":true})", kAnonymous) ==
        "refused: anonymous sockets cannot join individual rooms");
  CHECK(rooms(R"({"roomParts":"x","individual":true})", kAnonymous, open) ==
        "refused: anonymous sockets cannot join individual rooms");
}

TEST_CASE("resolve_rooms: no tenant, no rooms") {
  const rules::SessionView no_tenant{std::nullopt, std::string("U1"), false};
  CHECK(rooms(R"({"roomParts":"space"})", no_tenant) == "refused: no tenant for this connection");
  const rules::SessionView empty_tenant{std::string(), std::string("U1"), false};
  CHECK(rooms(R"({"roomParts":"space"})", empty_tenant) ==
        "refused: no tenant for this connection");
  GatewaySettings open;
  open.anonymous_rooms = true;
  const rules::SessionView anonymous_no_tenant{std::nullopt, std::nullopt, true};
  CHECK(rooms(R"({"roomParts":"space"})", anonymous_no_tenant, open) ==
        "refused: no tenant for this connection");
}

TEST_CASE("resolve_rooms: a shared subscription may not name a personal room") {
  CHECK(rooms(R"({"roomParts":"notification-change"})") ==
        "refused: 'notification-change' is a personal room: use individual");
  CHECK(rooms(R"({"roomParts":"notification-change-U2"})") ==
        "refused: 'notification-change-U2' is a personal room: use individual");
  CHECK(rooms(R"({"roomParts":"me"})") == "refused: 'me' is a personal room: use individual");
  CHECK(rooms(R"({"roomParts":["orders","me-U2"]})") ==
        "refused: 'me-U2' is a personal room: use individual");
  // Only equal or `<q>-` prefixed parts.
  CHECK(rooms(R"({"roomParts":["media","menu","notification-changes","some-me"]})") ==
        "S1-media,S1-menu,S1-notification-changes,S1-some-me");
  // The rule is for shared subscriptions only.
  CHECK(rooms(R"({"roomParts":"me","individual":true})") == "S1-me-U1");
  // The list is configurable.
  GatewaySettings custom;
  custom.individual_room_parts = {"inbox"};
  CHECK(rooms(R"({"roomParts":"inbox-U2"})", kUser, custom) ==
        "refused: 'inbox-U2' is a personal room: use individual");
  CHECK(rooms(R"({"roomParts":"me"})", kUser, custom) == "S1-me");
}

TEST_CASE("max_rooms_check: named rooms after the join, subscribe only") {
  std::vector<std::string> current;
  for (int i = 0; i < 999; ++i) current.push_back("S1-r" + std::to_string(i));
  CHECK(rules::max_rooms_check(current, {"S1-new"}, 1000) == "");
  CHECK(rules::max_rooms_check(current, {"S1-new", "S1-other"}, 1000) ==
        "too many rooms (max 1000 per socket)");
  // Rooms the socket is already in are not counted twice.
  CHECK(rules::max_rooms_check(current, {"S1-r0", "S1-new"}, 1000) == "");
  CHECK(rules::max_rooms_check({}, {"S1-a", "S1-b"}, 1) == "too many rooms (max 1 per socket)");
  CHECK(rules::max_rooms_check({}, {"S1-a", "S1-a"}, 1) == "");
}

TEST_CASE("subscribe_event: $socket.subscribe.<roomParts> for string roomParts only") {
  auto shared = rules::subscribe_event(resolve(R"({"roomParts":"space"})"), kUser);
  REQUIRE(shared.has_value());
  CHECK(shared->first == "$socket.subscribe.space");
  CHECK(dump_json(shared->second) == R"({"roomParts":"space","individual":false,"space":"S1"})");

  auto individual = rules::subscribe_event(
      resolve(R"({"roomParts":"notification-change","individual":true})"), kUser);
  REQUIRE(individual.has_value());
  CHECK(individual->first == "$socket.subscribe.notification-change");
  CHECK(dump_json(individual->second) ==
        R"({"roomParts":"notification-change","individual":true,"space":"S1","userId":"U1"})");

  auto record =
      rules::subscribe_event(resolve(R"({"roomParts":"record:orders:change-42"})"), kUser);
  REQUIRE(record.has_value());
  CHECK(record->first == "$socket.subscribe.record:orders:change-42");

  // Arrays and refused requests emit nothing.
  CHECK_FALSE(rules::subscribe_event(resolve(R"({"roomParts":["space"]})"), kUser).has_value());
  CHECK_FALSE(rules::subscribe_event(resolve(R"({"roomParts":"me"})"), kUser).has_value());
  CHECK_FALSE(
      rules::subscribe_event(resolve(R"({"roomParts":"x"})", kAnonymous), kAnonymous).has_value());
}

// ===================================================================== Moleculer events (§5, §9)

TEST_CASE("map_metadata: s:metadata:change to every socket") {
  CHECK(
      metadata(R"({"type":"objects","action":"updated","data":{"_id":"o1","name":"orders"}})") ==
      R"(s:metadata:change {"type":"objects","action":"updated","_id":"o1","name":"orders"} -> *)");
  // apps: name is data.code.
  CHECK(metadata(
            R"({"type":"apps","action":"inserted","data":{"_id":"a1","code":"crm","name":"CRM"}})",
            "$metadata.apps") ==
        R"(s:metadata:change {"type":"apps","action":"inserted","_id":"a1","name":"crm"} -> *)");
  // objectName: data.object, else data.object_name.
  CHECK(
      metadata(
          R"({"type":"object_fields","action":"deleted","data":{"_id":"f1","name":"amount","object":"orders"}})",
          "$metadata.object_fields") ==
      R"(s:metadata:change {"type":"object_fields","action":"deleted","_id":"f1","name":"amount","objectName":"orders"} -> *)");
  CHECK(
      metadata(
          R"({"type":"object_listviews","action":"updated","data":{"id":"l1","name":"all","object_name":"orders"}})",
          "$metadata.object_listviews") ==
      R"(s:metadata:change {"type":"object_listviews","action":"updated","_id":"l1","name":"all","objectName":"orders"} -> *)");
  CHECK(
      metadata(R"({"type":"object_actions","action":"updated","data":{"_id":"x","name":"go"}})",
               "$metadata.object_actions") ==
      R"(s:metadata:change {"type":"object_actions","action":"updated","_id":"x","name":"go"} -> *)");
}

TEST_CASE("map_metadata: `||` fallbacks and undefined keys as in JS") {
  // `_id || id`: a falsy _id falls back.
  CHECK(metadata(R"({"type":"objects","data":{"_id":"","id":"o2"}})") ==
        R"(s:metadata:change {"type":"objects","_id":"o2"} -> *)");
  CHECK(metadata(R"({"type":"objects","data":{"_id":"o1","id":"o2"}})") ==
        R"(s:metadata:change {"type":"objects","_id":"o1"} -> *)");
  // Undefined values leave their keys out; null stays null; the action passes unchanged.
  CHECK(metadata(R"({"type":"objects","data":{}})") ==
        R"(s:metadata:change {"type":"objects"} -> *)");
  CHECK(
      metadata(
          R"({"type":"objects","action":null,"data":{"name":null,"object":"","object_name":null}})") ==
      R"(s:metadata:change {"type":"objects","action":null,"name":null,"objectName":null} -> *)");
  CHECK(metadata(R"({"type":"objects","action":"whatever","data":{"_id":0,"id":7}})") ==
        R"(s:metadata:change {"type":"objects","action":"whatever","_id":7} -> *)");
}

TEST_CASE("map_metadata: types outside metadataTypes are ignored, bad shapes rejected") {
  CHECK(metadata(R"({"type":"permission_sets","action":"updated","data":{}})") == "ignored");
  CHECK(metadata(R"({"action":"updated","data":{}})") == "ignored");
  CHECK(metadata(R"({"type":5,"data":{}})") == "ignored");
  CHECK(metadata(R"({"type":"permission_sets","data":"x"})") == "ignored");
  CHECK(metadata(R"("objects")") == "rejected: payload is not an object");
  CHECK(metadata("null") == "rejected: payload is not an object");
  CHECK(metadata(R"({"type":"objects"})") == "rejected: data is not an object");
  CHECK(metadata(R"({"type":"objects","data":null})") == "rejected: data is not an object");
  CHECK(metadata(R"({"type":"objects","data":[1]})") == "rejected: data is not an object");
  CHECK(metadata(R"({"type":"objects","data":{}})", "$metadata.objects.x") ==
        "rejected: not a $metadata.<type> event");
  // The list is configurable.
  CHECK(describe(rules::map_metadata("$metadata.x", parse(R"({"type":"objects","data":{}})"),
                                     {"permission_sets"})) == "ignored");
  CHECK(describe(rules::map_metadata("$metadata.x",
                                     parse(R"({"type":"permission_sets","data":{"name":"admin"}})"),
                                     {"permission_sets"})) ==
        R"(s:metadata:change {"type":"permission_sets","name":"admin"} -> *)");
}

TEST_CASE("map_notification_users: one packet for every user's room") {
  // The seed's example.
  CHECK(
      describe(rules::map_notification_users(parse(
          R"({"data":{"tenantId":"space_id","users":["user1","user2"],"message":"You have a new task"}})"))) ==
      R"(s:notification-change {"message":"You have a new task"} -> )"
      R"([space_id-notification-change-user1,space_id-notification-change-user2])");
  auto outcome = rules::map_notification_users(
      parse(R"({"data":{"tenantId":"S1","users":["U1"],"message":{"b":1,"a":2}}})"));
  const auto& deliveries = std::get<rules::Deliver>(outcome).deliveries;
  REQUIRE(deliveries.size() == 1);
  CHECK(deliveries[0].event == "s:notification-change");
  CHECK(deliveries[0].args_json == R"({"message":{"b":1,"a":2}})");
  CHECK(std::get<rules::RoomsTarget>(deliveries[0].target).rooms ==
        std::vector<std::string>{"S1-notification-change-U1"});
  // Duplicates are one room; a missing message is `{}` as JSON.stringify makes it.
  CHECK(describe(rules::map_notification_users(
            parse(R"({"data":{"tenantId":"S1","users":["U1","U1"]}})"))) ==
        "s:notification-change {} -> [S1-notification-change-U1]");
  // No users: nothing to send, not an error.
  CHECK(describe(rules::map_notification_users(
            parse(R"({"data":{"tenantId":"S1","users":[],"message":"m"}})"))) == "nothing");
}

TEST_CASE("map_notification_users: users must be an array of strings") {
  auto outcome = [](const std::string& payload) {
    return describe(rules::map_notification_users(parse(payload)));
  };
  const std::string bad_users = "rejected: users is not an array of strings";
  CHECK(outcome(R"({"data":{"tenantId":"S1","users":"U1","message":"m"}})") == bad_users);
  CHECK(outcome(R"({"data":{"tenantId":"S1","users":["U1",2],"message":"m"}})") == bad_users);
  CHECK(outcome(R"({"data":{"tenantId":"S1","users":["U1",""],"message":"m"}})") == bad_users);
  CHECK(outcome(R"({"data":{"tenantId":"S1","message":"m"}})") == bad_users);
  CHECK(outcome(R"({"data":{"users":["U1"],"message":"m"}})") ==
        "rejected: tenantId is not a non-empty string");
  CHECK(outcome(R"({"data":{"tenantId":"","users":["U1"]}})") ==
        "rejected: tenantId is not a non-empty string");
  CHECK(outcome(R"({"tenantId":"S1","users":["U1"]})") == "rejected: data is not an object");
  CHECK(outcome("null") == "rejected: data is not an object");
}

TEST_CASE("map_socket_emit: $broadcast.socket.emit (nested) and $socket.emit (flat)") {
  // The seed's example: room verbatim.
  CHECK(
      emit(
          R"({"data":{"eventName":"custom-event","eventParams":{"key":"value"},"room":"tenantId-room-name"}})",
          true) == R"(custom-event {"key":"value"} -> [tenantId-room-name])");
  CHECK(emit(R"({"eventName":"custom-event","eventParams":{"key":"value"},"room":"S1-orders"})",
             false) == R"(custom-event {"key":"value"} -> [S1-orders])");
  // No room (or null, as the original's `if (room)`): every socket.
  CHECK(emit(R"({"data":{"eventName":"e","eventParams":[1,2]}})", true) == "e [1,2] -> *");
  CHECK(emit(R"({"eventName":"e","eventParams":"x","room":null})", false) == R"(e "x" -> *)");
  // Key order of eventParams is kept.
  CHECK(emit(R"({"eventName":"e","eventParams":{"z":1,"a":{"y":2,"b":3}}})", false) ==
        R"(e {"z":1,"a":{"y":2,"b":3}} -> *)");
}

TEST_CASE("map_socket_emit: eventParams absent or null is missing; 0, false, \"\" are delivered") {
  CHECK(emit(R"({"eventName":"e","eventParams":0})", false) == "e 0 -> *");
  CHECK(emit(R"({"eventName":"e","eventParams":false})", false) == "e false -> *");
  CHECK(emit(R"({"eventName":"e","eventParams":""})", false) == R"(e "" -> *)");
  CHECK(emit(R"({"eventName":"e"})", false) == "rejected: eventParams is missing");
  CHECK(emit(R"({"eventName":"e","eventParams":null})", false) ==
        "rejected: eventParams is missing");
  CHECK(emit(R"({"data":{"eventName":"e"}})", true) == "rejected: eventParams is missing");
}

TEST_CASE("map_socket_emit: eventName, reserved names, room and shape") {
  CHECK(emit(R"({"eventParams":1})", false) == "rejected: eventName is missing or empty");
  CHECK(emit(R"({"eventName":"","eventParams":1})", false) ==
        "rejected: eventName is missing or empty");
  CHECK(emit(R"({"eventName":5,"eventParams":1})", false) ==
        "rejected: eventName is missing or empty");
  for (const char* name : {"connect", "connect_error", "disconnect", "disconnecting", "newListener",
                           "removeListener"}) {
    CHECK(emit(Json{{"eventName", name}, {"eventParams", 1}}.dump(), false) ==
          std::string("rejected: eventName '") + name + "' is reserved");
  }
  CHECK(emit(R"({"eventName":"e","eventParams":1,"room":""})", false) == "rejected: room is empty");
  CHECK(emit(R"({"data":{"eventName":"e","eventParams":1,"room":""}})", true) ==
        "rejected: room is empty");
  CHECK(emit(R"({"eventName":"e","eventParams":1,"room":["a"]})", false) ==
        "rejected: room is not a string");
  // The nested form needs `data`; the flat form reads the top level.
  CHECK(emit(R"({"eventName":"e","eventParams":1})", true) == "rejected: data is not an object");
  CHECK(emit(R"({"data":{"eventName":"e","eventParams":1}})", false) ==
        "rejected: eventName is missing or empty");
  CHECK(emit("[]", false) == "rejected: payload is not an object");
}

TEST_CASE("map_object_record_event: s:record:<object>:change-<id> to its record room") {
  CHECK(record("@objectRecordEvent.orders.inserted",
               R"({"objectApiName":"orders","id":"42","spaceId":"S1","doc":{"_id":"42"}})") ==
        R"(s:record:orders:change-42 {"_id":"42"} -> [S1-record:orders:change-42])");
  // objectApiName falls back to objectName, then to the event name's second segment.
  CHECK(record("@objectRecordEvent.orders.updated",
               R"({"objectName":"invoices","id":"7","spaceId":"S1"})") ==
        R"(s:record:invoices:change-7 {"_id":"7"} -> [S1-record:invoices:change-7])");
  CHECK(record("@objectRecordEvent.orders.deleted", R"({"id":"7","spaceId":"S1"})") ==
        R"(s:record:orders:change-7 {"_id":"7"} -> [S1-record:orders:change-7])");
  CHECK(record("@objectRecordEvent.orders.deleted",
               R"({"objectApiName":"","id":"7","spaceId":"S1"})") ==
        R"(s:record:orders:change-7 {"_id":"7"} -> [S1-record:orders:change-7])");
  // The two-segment form takes the object from its second segment.
  CHECK(record("@objectRecordEvent.orders", R"({"id":"9","spaceId":"S2"})") ==
        R"(s:record:orders:change-9 {"_id":"9"} -> [S2-record:orders:change-9])");
}

TEST_CASE("map_object_record_event: ids, numbers and doc._id") {
  // A number stays a number in `_id`; names use its text.
  CHECK(record("@objectRecordEvent.orders.inserted",
               R"({"objectApiName":"orders","id":42,"spaceId":"S1"})") ==
        R"(s:record:orders:change-42 {"_id":42} -> [S1-record:orders:change-42])");
  CHECK(record("@objectRecordEvent.orders.inserted",
               R"({"objectApiName":"orders","id":42.0,"spaceId":"S1"})") ==
        R"(s:record:orders:change-42 {"_id":42.0} -> [S1-record:orders:change-42])");
  CHECK(record("@objectRecordEvent.orders.inserted",
               R"({"objectApiName":"orders","id":1.5,"spaceId":"S1"})") ==
        R"(s:record:orders:change-1.5 {"_id":1.5} -> [S1-record:orders:change-1.5])");
  CHECK(record("@objectRecordEvent.orders.inserted",
               R"({"objectApiName":"orders","id":0,"spaceId":"S1"})") ==
        R"(s:record:orders:change-0 {"_id":0} -> [S1-record:orders:change-0])");
  // id falls back to doc._id.
  CHECK(record("@objectRecordEvent.orders.inserted",
               R"({"objectApiName":"orders","spaceId":"S1","doc":{"_id":"d1"}})") ==
        R"(s:record:orders:change-d1 {"_id":"d1"} -> [S1-record:orders:change-d1])");
  CHECK(record("@objectRecordEvent.orders.inserted",
               R"({"objectApiName":"orders","id":"","spaceId":"S1","doc":{"_id":5}})") ==
        R"(s:record:orders:change-5 {"_id":5} -> [S1-record:orders:change-5])");
}

TEST_CASE("map_object_record_event: no tenant or no id is rejected") {
  CHECK(record("@objectRecordEvent.orders.inserted", R"({"objectApiName":"orders","id":"42"})") ==
        "rejected: spaceId is missing");
  // The tenant is spaceId only.
  CHECK(record("@objectRecordEvent.orders.inserted",
               R"({"objectApiName":"orders","id":"42","tenantId":"S1"})") ==
        "rejected: spaceId is missing");
  CHECK(record("@objectRecordEvent.orders.inserted",
               R"({"objectApiName":"orders","id":"42","spaceId":""})") ==
        "rejected: spaceId is missing");
  CHECK(record("@objectRecordEvent.orders.inserted",
               R"({"objectApiName":"orders","spaceId":"S1"})") == "rejected: id is missing");
  CHECK(record("@objectRecordEvent.orders.inserted",
               R"({"objectApiName":"orders","id":{"x":1},"spaceId":"S1"})") ==
        "rejected: id is missing");
  CHECK(record("@objectRecordEvent.orders.inserted",
               R"({"objectApiName":"orders","id":null,"spaceId":"S1","doc":{}})") ==
        "rejected: id is missing");
  CHECK(record("@objectRecordEvent.orders.inserted", "[]") == "rejected: payload is not an object");
  CHECK(record("@other.orders.inserted", R"({"id":"1","spaceId":"S1"})") ==
        "rejected: not an @objectRecordEvent.<object>.<action> event");
  CHECK(record("@objectRecordEvent", R"({"id":"1","spaceId":"S1"})") ==
        "rejected: not an @objectRecordEvent.<object>.<action> event");
}

TEST_CASE("map_logout: { authToken } or { data: { authToken } }") {
  CHECK(rules::map_logout(parse(R"({"authToken":"T1"})")) == std::optional<std::string>("T1"));
  CHECK(rules::map_logout(parse(R"({"data":{"authToken":"T2"}})")) ==
        std::optional<std::string>("T2"));
  CHECK_FALSE(rules::map_logout(parse("{}")).has_value());
  CHECK_FALSE(rules::map_logout(parse(R"({"authToken":""})")).has_value());
  CHECK_FALSE(rules::map_logout(parse(R"({"authToken":5})")).has_value());
  CHECK_FALSE(rules::map_logout(parse(R"({"data":"T1"})")).has_value());
  CHECK_FALSE(rules::map_logout(parse(R"("T1")")).has_value());
  CHECK_FALSE(rules::map_logout(parse("null")).has_value());
}

// ===================================================================== actions (§6, §9)

TEST_CASE("validate_emit_params: { event, data, room? }") {
  auto valid = rules::validate_emit_params(parse(R"({"event":"e","data":{"x":1}})"));
  const auto* params = std::get_if<rules::EmitParams>(&valid);
  REQUIRE(params != nullptr);
  CHECK(params->event == "e");
  CHECK(dump_json(params->data) == R"({"x":1})");
  CHECK_FALSE(params->room.has_value());
  auto with_room = rules::validate_emit_params(parse(R"({"event":"e","data":0,"room":"S1-a"})"));
  CHECK(std::get<rules::EmitParams>(with_room).room == std::optional<std::string>("S1-a"));
  CHECK(errors_of(rules::validate_emit_params(
            parse(R"({"event":"e","data":false,"room":null})"))) == "valid");
  CHECK_FALSE(params->scope.cluster);
  auto cluster =
      rules::validate_emit_params(parse(R"({"event":"e","data":1,"cluster":true,"timeout":500})"));
  CHECK(std::get<rules::EmitParams>(cluster).scope.cluster);
  CHECK(std::get<rules::EmitParams>(cluster).scope.timeout_ms == 500);
  CHECK(errors_of(rules::validate_emit_params(
            parse(R"({"event":"e","data":1,"cluster":"yes"})"))) != "valid");
}

TEST_CASE("validate_emit_params: fastest-validator shaped errors") {
  auto check = [](const std::string& params) {
    return errors_of(rules::validate_emit_params(parse(params)));
  };
  CHECK(check(R"({"data":1})") ==
        R"([{"type":"required","message":"The 'event' field is required.","field":"event"}])");
  CHECK(check(R"({"event":"e"})") ==
        R"([{"type":"required","message":"The 'data' field is required.","field":"data"}])");
  CHECK(
      check(R"({"event":"e","data":null})") ==
      R"([{"type":"required","message":"The 'data' field is required.","field":"data","actual":null}])");
  CHECK(
      check(R"({"event":5,"data":1})") ==
      R"([{"type":"string","message":"The 'event' field must be a string.","field":"event","actual":5}])");
  CHECK(
      check(R"({"event":"","data":1})") ==
      R"([{"type":"stringEmpty","message":"The 'event' field must not be empty.","field":"event","actual":""}])");
  CHECK(
      check(R"({"event":"disconnect","data":1})") ==
      R"([{"type":"reservedEventName","message":"The 'event' field must not be a reserved Socket.IO event name.","field":"event","actual":"disconnect"}])");
  CHECK(
      check(R"({"event":"e","data":1,"room":""})") ==
      R"([{"type":"stringEmpty","message":"The 'room' field must not be empty.","field":"room","actual":""}])");
  CHECK(
      check(R"({"event":"e","data":1,"room":7})") ==
      R"([{"type":"string","message":"The 'room' field must be a string.","field":"room","actual":7}])");
  // Every broken field, in schema order.
  CHECK(
      check(R"({"room":""})") ==
      R"([{"type":"required","message":"The 'event' field is required.","field":"event"},)"
      R"({"type":"required","message":"The 'data' field is required.","field":"data"},)"
      R"({"type":"stringEmpty","message":"The 'room' field must not be empty.","field":"room","actual":""}])");
  // No params at all is `{}`; params that are not an object have no fields.
  CHECK(check("null") ==
        R"([{"type":"required","message":"The 'event' field is required.","field":"event"},)"
        R"({"type":"required","message":"The 'data' field is required.","field":"data"}])");
  CHECK(
      check("[1]") ==
      R"([{"type":"object","message":"The parameters must be an Object.","field":"","actual":[1]}])");
}

TEST_CASE("ValidationFailure::to_error: a 422 ValidationError") {
  auto result = rules::validate_emit_params(parse(R"({"data":1})"));
  const auto& failure = std::get<rules::ValidationFailure>(result);
  auto error = failure.to_error("node-1", "socket.emit");
  CHECK(error.name == "ValidationError");
  CHECK(error.code == 422);
  CHECK(error.type == "VALIDATION_ERROR");
  CHECK(error.message == "Parameters validation error!");
  CHECK_FALSE(error.retryable);
  CHECK(dump_json(error.data) ==
        R"([{"type":"required","message":"The 'event' field is required.","field":"event",)"
        R"("nodeID":"node-1","action":"socket.emit"}])");
  CHECK(dump_json(failure.to_error().data) == dump_json(failure.errors));
}

TEST_CASE("validate_clients_params: { room?, userId? }") {
  auto all = rules::validate_clients_params(parse("{}"));
  REQUIRE(std::holds_alternative<rules::ClientsParams>(all));
  CHECK_FALSE(std::get<rules::ClientsParams>(all).room.has_value());
  CHECK(errors_of(rules::validate_clients_params(parse("null"))) == "valid");
  auto both = rules::validate_clients_params(parse(R"({"room":"S1-space","userId":"U1"})"));
  CHECK(std::get<rules::ClientsParams>(both).room == std::optional<std::string>("S1-space"));
  CHECK(std::get<rules::ClientsParams>(both).user_id == std::optional<std::string>("U1"));
  CHECK(
      errors_of(rules::validate_clients_params(parse(R"({"room":""})"))) ==
      R"([{"type":"stringEmpty","message":"The 'room' field must not be empty.","field":"room","actual":""}])");
  CHECK(
      errors_of(rules::validate_clients_params(parse(R"({"userId":5})"))) ==
      R"([{"type":"string","message":"The 'userId' field must be a string.","field":"userId","actual":5}])");
}

TEST_CASE("validate_disconnect_params: { userId?, sid?, tenantId? }, at least one") {
  CHECK(errors_of(rules::validate_disconnect_params(parse("{}"))) ==
        R"([{"type":"required","message":"At least one of the 'userId', 'sid' or 'tenantId' )"
        R"(fields is required.","field":"userId|sid|tenantId"}])");
  CHECK(errors_of(rules::validate_disconnect_params(parse(R"({"userId":null})"))) ==
        R"([{"type":"required","message":"At least one of the 'userId', 'sid' or 'tenantId' )"
        R"(fields is required.","field":"userId|sid|tenantId"}])");
  auto one = rules::validate_disconnect_params(parse(R"({"userId":"U1"})"));
  CHECK(std::get<rules::DisconnectParams>(one).user_id == std::optional<std::string>("U1"));
  auto two = rules::validate_disconnect_params(parse(R"({"sid":"abc","tenantId":"S1"})"));
  CHECK(std::get<rules::DisconnectParams>(two).sid == std::optional<std::string>("abc"));
  CHECK(std::get<rules::DisconnectParams>(two).tenant_id == std::optional<std::string>("S1"));
  CHECK_FALSE(std::get<rules::DisconnectParams>(two).user_id.has_value());
  // A broken filter is reported as such, not as "no filter".
  CHECK(
      errors_of(rules::validate_disconnect_params(parse(R"({"userId":""})"))) ==
      R"([{"type":"stringEmpty","message":"The 'userId' field must not be empty.","field":"userId","actual":""}])");
  CHECK(
      errors_of(rules::validate_disconnect_params(parse(R"("U1")"))) ==
      R"([{"type":"object","message":"The parameters must be an Object.","field":"","actual":"U1"}])");
}

// ===================================================================== issue 12: operator actions

TEST_CASE("cluster and timeout of the operator actions: boolean, integer 1..60000") {
  auto stats = [](const std::string& params) {
    return rules::validate_stats_params(parse(params));
  };
  auto plain = stats("{}");
  REQUIRE(std::holds_alternative<rules::StatsParams>(plain));
  CHECK_FALSE(std::get<rules::StatsParams>(plain).scope.cluster);
  CHECK(std::get<rules::StatsParams>(plain).scope.timeout_ms == 2000);
  auto asked = stats(R"({"cluster":true,"timeout":500})");
  CHECK(std::get<rules::StatsParams>(asked).scope.cluster);
  CHECK(std::get<rules::StatsParams>(asked).scope.timeout_ms == 500);
  CHECK(errors_of(stats(R"({"cluster":null,"timeout":null})")) == "valid");
  CHECK(
      errors_of(stats(R"({"cluster":"true"})")) ==
      R"([{"type":"boolean","message":"The 'cluster' field must be a boolean.","field":"cluster","actual":"true"}])");
  CHECK(
      errors_of(stats(R"({"timeout":"5"})")) ==
      R"([{"type":"number","message":"The 'timeout' field must be a number.","field":"timeout","actual":"5"}])");
  CHECK(
      errors_of(stats(R"({"timeout":2.5})")) ==
      R"([{"type":"numberInteger","message":"The 'timeout' field must be an integer.","field":"timeout","actual":2.5}])");
  CHECK(
      errors_of(stats(R"({"timeout":0})")) ==
      R"([{"type":"numberMin","message":"The 'timeout' field must be greater than or equal to 1.","field":"timeout","actual":0}])");
  CHECK(
      errors_of(stats(R"({"timeout":60001})")) ==
      R"([{"type":"numberMax","message":"The 'timeout' field must be less than or equal to 60000.","field":"timeout","actual":60001}])");
  CHECK(errors_of(stats(R"({"timeout":60000})")) == "valid");
  // The same keys on clients and disconnect.
  auto clients = rules::validate_clients_params(parse(R"({"cluster":true,"userId":"U1"})"));
  CHECK(std::get<rules::ClientsParams>(clients).scope.cluster);
  auto disconnect =
      rules::validate_disconnect_params(parse(R"({"cluster":true,"timeout":9,"sid":"x"})"));
  CHECK(std::get<rules::DisconnectParams>(disconnect).scope.timeout_ms == 9);
  CHECK(errors_of(rules::validate_disconnect_params(parse(R"({"cluster":1,"sid":"x"})"))) !=
        "valid");
}

TEST_CASE("validate_room_action_params: { room, userId | sid | inRoom, tenantId? }") {
  auto check = [](const std::string& params) {
    return rules::validate_room_action_params(parse(params));
  };
  auto by_user = check(R"({"room":"S1-ops","userId":"U1","tenantId":"S1"})");
  const auto* params = std::get_if<rules::RoomActionParams>(&by_user);
  REQUIRE(params != nullptr);
  CHECK(params->room == "S1-ops");
  CHECK(params->user_id == std::optional<std::string>("U1"));
  CHECK(params->tenant_id == std::optional<std::string>("S1"));
  CHECK_FALSE(params->in_room.has_value());
  CHECK_FALSE(params->scope.cluster);
  CHECK(std::get<rules::RoomActionParams>(check(R"({"room":"r","inRoom":"S1-a"})")).in_room ==
        std::optional<std::string>("S1-a"));
  CHECK(errors_of(check(R"({"room":"r","sid":"abc"})")) == "valid");
  CHECK(errors_of(check(R"({"sid":"abc"})")) ==
        R"([{"type":"required","message":"The 'room' field is required.","field":"room"}])");
  CHECK(errors_of(check(R"({"room":"r","tenantId":"S1"})")) ==
        R"([{"type":"required","message":"At least one of the 'userId', 'sid' or 'inRoom' )"
        R"(fields is required.","field":"userId|sid|inRoom"}])");
  CHECK(
      errors_of(check(R"({"room":"a\u0001b","sid":"x"})")) ==
      R"([{"type":"roomName","message":"The 'room' field is not a valid room name: contains control characters.","field":"room","actual":"a\u0001b"}])");
  const std::string long_room(rules::kMaxRoomNameBytes + 1, 'r');
  CHECK(errors_of(check(R"({"room":")" + long_room + R"(","sid":"x"})")) != "valid");
  const std::string longest(rules::kMaxRoomNameBytes, 'r');
  CHECK(errors_of(check(R"({"room":")" + longest + R"(","sid":"x"})")) == "valid");
  CHECK(
      errors_of(check(R"({"room":"r","userId":7})")) ==
      R"([{"type":"string","message":"The 'userId' field must be a string.","field":"userId","actual":7}])");
}

TEST_CASE("may_join_room: the tenant, anonymous and personal-room rules of a subscribe") {
  GatewaySettings settings;  // individualRoomParts me, notification-change; no anonymous rooms
  rules::SessionView u1{"S1", "U1", false};
  rules::SessionView anonymous{"S1", std::nullopt, true};
  rules::SessionView no_tenant{std::nullopt, std::nullopt, true};
  CHECK(rules::may_join_room("S1-orders", u1, settings) == "");
  CHECK(rules::may_join_room("S2-orders", u1, settings) == "room of another tenant");
  CHECK(rules::may_join_room("S1", u1, settings) == "room of another tenant");
  CHECK(rules::may_join_room("S1-", u1, settings) == "room of another tenant");
  CHECK(rules::may_join_room("S10-orders", u1, settings) == "room of another tenant");
  CHECK(rules::may_join_room("S1-notification-change-U1", u1, settings) == "");
  CHECK(rules::may_join_room("S1-me-U1", u1, settings) == "");
  CHECK(rules::may_join_room("S1-notification-change-U2", u1, settings) ==
        "personal room of another user");
  CHECK(rules::may_join_room("S1-notification-change", u1, settings) ==
        "personal room of another user");
  CHECK(rules::may_join_room("S1-orders", anonymous, settings) ==
        "anonymous sockets cannot join tenant rooms");
  CHECK(rules::may_join_room("S1-orders", no_tenant, settings) == "no tenant for this connection");
  settings.anonymous_rooms = true;
  CHECK(rules::may_join_room("S1-orders", anonymous, settings) == "");
  CHECK(rules::may_join_room("S1-me-U1", anonymous, settings) == "personal room of another user");
}

TEST_CASE("check_room_name: non-empty, bounded, no control characters") {
  CHECK(rules::check_room_name("S1-orders") == "");
  CHECK(rules::check_room_name("") == "empty");
  CHECK(rules::check_room_name("a\x7f") == "contains control characters");
  CHECK(rules::check_room_name(std::string(rules::kMaxRoomNameBytes + 1, 'x')) ==
        "longer than 770 bytes");
  CHECK(rules::check_room_name("S1-b\xc3\xa9") == "");  // UTF-8 is fine
}
