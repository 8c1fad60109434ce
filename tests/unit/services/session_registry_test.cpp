// services/interned_ids.hpp and services/session_registry.hpp: ids stored once and freed with
// their last holder; sessions sharing their login's record, listed once connected, unlisted and
// released when freed; a logout's lookup finding exactly its token's connected clients.
#include "services/session_registry.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

using steedos::TokenBucket;
using steedos::services::ClientSession;
using steedos::services::InternedIds;
using steedos::services::SessionRegistry;

namespace {

std::optional<std::string_view> text(const char* s) {
  return s ? std::optional<std::string_view>(s) : std::nullopt;
}

/// A client as a hub holds one: its id and, once accepted, its session.
struct TestClient {
  std::string id;
  std::unique_ptr<ClientSession> session;
};

/// Opens a session and marks it connected, as the service does on accept and on connection.
std::unique_ptr<TestClient> connect(SessionRegistry& registry, std::string id, const char* tenant,
                                    const char* user, const char* token) {
  auto client = std::make_unique<TestClient>();
  client->id = std::move(id);
  client->session = registry.open(text(tenant), text(user), token, TokenBucket());
  registry.connected(*client->session, client->id);
  return client;
}

std::vector<std::string> sorted(std::vector<std::string> ids) {
  std::sort(ids.begin(), ids.end());
  return ids;
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
    auto user = connect(registry, "a", "S1", "U1", "T1");
    auto anonymous = connect(registry, "b", "S1", nullptr, "");
    auto no_tenant = connect(registry, "c", nullptr, nullptr, "");
    CHECK(user->session->tenant_id() == std::optional<std::string_view>("S1"));
    CHECK(user->session->user_id() == std::optional<std::string_view>("U1"));
    CHECK_FALSE(user->session->anonymous());
    CHECK(anonymous->session->tenant_id() == std::optional<std::string_view>("S1"));
    CHECK_FALSE(anonymous->session->user_id().has_value());
    CHECK(anonymous->session->anonymous());
    CHECK_FALSE(no_tenant->session->tenant_id().has_value());

    const auto view = user->session->view();
    CHECK(view.tenant_id == std::optional<std::string>("S1"));
    CHECK(view.user_id == std::optional<std::string>("U1"));
    CHECK_FALSE(view.anonymous);
    CHECK(anonymous->session->view().anonymous);
  }

  TEST_CASE("a user's tabs share one login and the ids; the last one frees them") {
    SessionRegistry registry;
    auto tab1 = connect(registry, "tab1", "S1", "U1", "T1");
    auto tab2 = connect(registry, "tab2", "S1", "U1", "T1");
    auto other = connect(registry, "other", "S1", "U2", "T2");
    CHECK(registry.size() == 3);
    CHECK(registry.login_count() == 2);
    CHECK(registry.ids().size() == 3);                              // S1, U1, U2: each once
    CHECK(registry.ids().holders(registry.ids().find("S1")) == 2);  // once per login

    tab1.reset();
    CHECK(registry.login_count() == 2);  // tab2 still uses it
    CHECK(registry.ids().find("U1") != InternedIds::kNone);
    tab2.reset();
    CHECK(registry.login_count() == 1);
    CHECK(registry.ids().find("U1") == InternedIds::kNone);
    CHECK(registry.ids().find("S1") != InternedIds::kNone);  // `other` holds it
    other.reset();
    CHECK(registry.size() == 0);
    CHECK(registry.login_count() == 0);
    CHECK(registry.ids().size() == 0);
  }

  TEST_CASE("a logout's lookup finds exactly the connected clients of its token") {
    SessionRegistry registry;
    std::vector<std::unique_ptr<TestClient>> clients;
    clients.push_back(connect(registry, "s1", "S1", "U1", "T1"));
    clients.push_back(connect(registry, "s2", "S2", "U1", "T1"));  // the token in another space
    clients.push_back(connect(registry, "anon", "S3", nullptr, "T1"));  // not vouched for there
    clients.push_back(connect(registry, "tab", "S1", "U1", "T1"));      // a second tab
    clients.push_back(connect(registry, "prefix", "S1", "U1", "T1b"));
    clients.push_back(connect(registry, "short", "S1", "U1", "T"));
    clients.push_back(connect(registry, "none", "S1", nullptr, ""));
    CHECK(sorted(registry.clients_of_token("T1")) ==
          std::vector<std::string>{"anon", "s1", "s2", "tab"});
    CHECK(registry.clients_of_token("T") == std::vector<std::string>{"short"});
    CHECK(registry.clients_of_token("").empty());  // sockets without credentials: nobody's
    CHECK(registry.clients_of_token("absent").empty());
  }

  TEST_CASE("a session leaves its login's list when freed, wherever it is in the list") {
    SessionRegistry registry;
    std::vector<std::unique_ptr<TestClient>> tabs;
    for (int i = 0; i < 5; ++i) {
      tabs.push_back(connect(registry, "tab" + std::to_string(i), "S1", "U1", "T1"));
    }
    tabs[2].reset();  // the middle
    CHECK(registry.clients_of_token("T1") ==
          std::vector<std::string>{"tab0", "tab1", "tab3", "tab4"});
    tabs[4].reset();  // the last
    tabs[0].reset();  // the first
    CHECK(registry.clients_of_token("T1") == std::vector<std::string>{"tab1", "tab3"});
    tabs.push_back(connect(registry, "tab5", "S1", "U1", "T1"));  // appended after a removal
    CHECK(registry.clients_of_token("T1") == std::vector<std::string>{"tab1", "tab3", "tab5"});
    tabs[5].reset();
    tabs[1].reset();
    tabs[3].reset();
    CHECK(registry.clients_of_token("T1").empty());
    CHECK(registry.login_count() == 0);
  }

  TEST_CASE("a session not yet connected is not listed, and is freed cleanly") {
    SessionRegistry registry;
    auto pending = registry.open(text("S1"), text("U1"), "T1", TokenBucket());
    auto client = connect(registry, "c", "S1", "U1", "T1");
    CHECK(registry.clients_of_token("T1") == std::vector<std::string>{"c"});
    pending.reset();
    CHECK(registry.clients_of_token("T1") == std::vector<std::string>{"c"});
    client.reset();
    CHECK(registry.size() == 0);
    CHECK(registry.ids().size() == 0);
  }

  TEST_CASE("the subscribe bucket is the session's own, full until first used") {
    SessionRegistry registry;
    const auto t0 = TokenBucket::Clock::now();
    const TokenBucket full(2, 2, TokenBucket::Clock::time_point{});
    auto a = registry.open(text("S1"), text("U1"), "T1", full);
    auto b = registry.open(text("S1"), text("U1"), "T1", full);
    CHECK(a->room_requests().try_take(t0));
    CHECK(a->room_requests().try_take(t0));
    CHECK_FALSE(a->room_requests().try_take(t0));
    CHECK(b->room_requests().try_take(t0));  // a's requests did not take b's
  }

  TEST_CASE("a session is one small allocation") {
    // vtable pointer, login, list links, client id, the bucket: an 80-byte malloc chunk. A field
    // added here is paid by every socket: measure it (bench/memprofile.sh) before raising this.
    CHECK(sizeof(ClientSession) <= 72);
  }
}
