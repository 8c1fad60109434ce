// services/interned_ids.hpp and services/session_registry.hpp: ids stored once and freed with
// their last holder; sessions sharing their token's record, released when freed; a token's
// record found while (and only while) a session uses it.
#include "services/session_registry.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

using steedos::TokenBucket;
using steedos::services::ClientSession;
using steedos::services::InternedIds;
using steedos::services::SessionRegistry;

namespace {

std::unique_ptr<ClientSession> open(SessionRegistry& registry, const char* tenant, const char* user,
                                    const char* token) {
  auto text = [](const char* s) {
    return s ? std::optional<std::string_view>(s) : std::optional<std::string_view>();
  };
  return registry.open(text(tenant), text(user), token, TokenBucket());
}

}  // namespace

TEST_SUITE("interned_ids") {
  TEST_CASE("one entry per distinct string, counted per holder, freed at zero") {
    InternedIds ids;
    const auto a = ids.acquire("a-17-characters-x");
    const auto a2 = ids.acquire("a-17-characters-x");
    const auto b = ids.acquire("b");
    CHECK(a == a2);
    CHECK(a != b);
    CHECK(a != InternedIds::kNone);
    CHECK(ids.size() == 2);
    CHECK(ids.holders(a) == 2);
    CHECK(ids.text(a) == "a-17-characters-x");
    CHECK(ids.text(b) == "b");

    ids.release(a);
    CHECK(ids.holders(a) == 1);
    CHECK(ids.find("a-17-characters-x") == a);  // still held once
    ids.release(a);
    CHECK(ids.holders(a) == 0);
    CHECK(ids.find("a-17-characters-x") == InternedIds::kNone);
    CHECK(ids.size() == 1);
    CHECK(ids.text(b) == "b");  // the other entry is untouched
  }

  TEST_CASE("a freed id is handed out again, for another string") {
    InternedIds ids;
    const auto a = ids.acquire("a");
    ids.acquire("b");
    ids.release(a);
    const auto c = ids.acquire("c");
    CHECK(c == a);
    CHECK(ids.text(c) == "c");
    CHECK(ids.find("a") == InternedIds::kNone);
    CHECK(ids.size() == 2);
  }

  TEST_CASE("the empty string is an id; kNone is no string and is never counted") {
    InternedIds ids;
    const auto empty = ids.acquire("");
    CHECK(empty != InternedIds::kNone);
    CHECK(ids.text(empty) == "");
    ids.release(InternedIds::kNone);  // ignored
    CHECK(ids.holders(empty) == 1);
    CHECK(ids.text(InternedIds::kNone) == "");
    ids.release(empty);
    ids.release(empty);  // a release too many changes nothing
    CHECK(ids.size() == 0);
  }

  TEST_CASE("many strings: every id keeps its text while others come and go") {
    InternedIds ids;
    std::vector<InternedIds::Id> held;
    for (int i = 0; i < 1000; ++i) held.push_back(ids.acquire("user-" + std::to_string(i)));
    for (int i = 0; i < 1000; i += 2) ids.release(held[i]);
    for (int i = 1000; i < 1500; ++i) ids.acquire("user-" + std::to_string(i));
    CHECK(ids.size() == 1000);
    for (int i = 1; i < 1000; i += 2) CHECK(ids.text(held[i]) == "user-" + std::to_string(i));
  }
}

TEST_SUITE("session_registry") {
  TEST_CASE("a session reads back its tenant, its user and whether it is anonymous") {
    SessionRegistry registry;
    auto user = open(registry, "S1", "U1", "T1");
    auto anonymous = open(registry, "S1", nullptr, "");
    auto no_tenant = open(registry, nullptr, nullptr, "");
    CHECK(user->tenant_id() == std::optional<std::string_view>("S1"));
    CHECK(user->user_id() == std::optional<std::string_view>("U1"));
    CHECK_FALSE(user->anonymous());
    CHECK(anonymous->tenant_id() == std::optional<std::string_view>("S1"));
    CHECK_FALSE(anonymous->user_id().has_value());
    CHECK(anonymous->anonymous());
    CHECK_FALSE(no_tenant->tenant_id().has_value());

    const auto view = user->view();
    CHECK(view.tenant_id == std::optional<std::string>("S1"));
    CHECK(view.user_id == std::optional<std::string>("U1"));
    CHECK_FALSE(view.anonymous);
    CHECK(anonymous->view().anonymous);
  }

  TEST_CASE("a user's tabs share one token record and the ids; the last one frees them") {
    SessionRegistry registry;
    auto tab1 = open(registry, "S1", "U1", "T1");
    auto tab2 = open(registry, "S1", "U1", "T1");
    auto other = open(registry, "S1", "U2", "T2");
    CHECK(registry.size() == 3);
    CHECK(registry.token_count() == 2);
    CHECK(registry.ids().size() == 3);  // S1, U1, U2: each once
    const auto* t1 = registry.find_token("T1");
    REQUIRE(t1 != nullptr);
    CHECK(t1->sessions == 2);
    CHECK(tab1->uses(t1));
    CHECK(tab2->uses(t1));
    CHECK_FALSE(other->uses(t1));

    tab1.reset();
    CHECK(registry.find_token("T1") == t1);  // tab2 still uses it
    CHECK(t1->sessions == 1);
    CHECK(registry.ids().find("U1") != InternedIds::kNone);
    tab2.reset();
    CHECK(registry.find_token("T1") == nullptr);
    CHECK(registry.ids().find("U1") == InternedIds::kNone);
    CHECK(registry.ids().find("S1") != InternedIds::kNone);  // `other` holds it
    other.reset();
    CHECK(registry.size() == 0);
    CHECK(registry.token_count() == 0);
    CHECK(registry.ids().size() == 0);
  }

  TEST_CASE("a logout's lookup finds exactly the sessions of its token, never those without") {
    SessionRegistry registry;
    std::vector<std::unique_ptr<ClientSession>> sessions;
    sessions.push_back(open(registry, "S1", "U1", "T1"));
    sessions.push_back(open(registry, "S2", "U1", "T1"));     // the same token in another space
    sessions.push_back(open(registry, "S1", nullptr, "T1"));  // the token, not vouched for
    sessions.push_back(open(registry, "S1", "U1", "T1b"));
    sessions.push_back(open(registry, "S1", nullptr, ""));
    const auto* t1 = registry.find_token("T1");
    REQUIRE(t1 != nullptr);
    std::vector<size_t> found;
    for (size_t i = 0; i < sessions.size(); ++i) {
      if (sessions[i]->uses(t1)) found.push_back(i);
    }
    CHECK(found == std::vector<size_t>{0, 1, 2});
    CHECK(registry.find_token("") == nullptr);  // sockets without credentials: no token's
    CHECK(registry.find_token("T") == nullptr);
    CHECK(registry.find_token("none") == nullptr);
  }

  TEST_CASE("the subscribe bucket is the session's own, full until first used") {
    SessionRegistry registry;
    const auto t0 = TokenBucket::Clock::now();
    auto a = registry.open("S1", "U1", "T1", TokenBucket(2, 2, TokenBucket::Clock::time_point{}));
    auto b = registry.open("S1", "U1", "T1", TokenBucket(2, 2, TokenBucket::Clock::time_point{}));
    CHECK(a->room_requests().try_take(t0));
    CHECK(a->room_requests().try_take(t0));
    CHECK_FALSE(a->room_requests().try_take(t0));
    CHECK(b->room_requests().try_take(t0));  // a's requests did not take b's
  }

  TEST_CASE("a session is one small allocation") {
    // vtable pointer, token record, two ids, the bucket: a 64-byte malloc chunk. A field added
    // here is paid by every socket: measure it (bench/memprofile.sh) before raising this bound.
    CHECK(sizeof(ClientSession) <= 56);
  }
}
