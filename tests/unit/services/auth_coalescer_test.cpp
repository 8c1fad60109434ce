// services/auth_coalescer.hpp: one auth call per (spaceId, token) in flight, shared by every
// connect waiting for it; auth.maxInFlight distinct calls at most. The remote call is a fake
// that records each start and lets the test finish it.
#include "services/auth_coalescer.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using steedos::Json;
using steedos::services::AuthCoalescer;
namespace rules = steedos::services::rules;
using Admission = AuthCoalescer::Admission;
using Key = AuthCoalescer::Key;

namespace {

/// The fake remote call: every start is kept with its `finish`, in order.
struct FakeCalls {
  struct Started {
    Key key;
    std::function<void(AuthCoalescer::Decision)> finish;
  };
  std::vector<Started> started;
  AuthCoalescer::StartCall function() {
    return [this](const Key& key, std::function<void(AuthCoalescer::Decision)> finish) {
      started.push_back({key, std::move(finish)});
    };
  }
};

rules::Authenticated user(const std::string& id) {
  return rules::Authenticated{id, Json{{"userId", id}}};
}

/// What each waiter was answered: "user:<id>", "anonymous" or "failed:<reason>".
struct Answers {
  std::vector<std::string> seen;
  AuthCoalescer::Waiter waiter() {
    return [this](const AuthCoalescer::Decision& d) {
      if (auto* u = std::get_if<rules::Authenticated>(&d)) {
        seen.push_back("user:" + u->user_id);
      } else if (std::holds_alternative<rules::Anonymous>(d)) {
        seen.push_back("anonymous");
      } else {
        seen.push_back("failed:" + std::get<rules::Failed>(d).reason);
      }
    };
  }
};

}  // namespace

TEST_SUITE("auth coalescer") {
  TEST_CASE("connects with the same (spaceId, token) share one call and its result") {
    FakeCalls calls;
    std::vector<Key> results;
    AuthCoalescer::Hooks hooks;
    hooks.on_result = [&](const Key& key, const AuthCoalescer::Decision&) {
      results.push_back(key);
    };
    AuthCoalescer coalescer(200, calls.function(), hooks);
    Answers answers;
    CHECK(coalescer.request({"S1", "T1"}, answers.waiter()) == Admission::Started);
    for (int i = 0; i < 99; ++i) {
      CHECK(coalescer.request({"S1", "T1"}, answers.waiter()) == Admission::Joined);
    }
    REQUIRE(calls.started.size() == 1);
    CHECK(coalescer.in_flight() == 1);
    CHECK(coalescer.waiting() == 100);
    CHECK(answers.seen.empty());  // nobody is answered before the call finishes
    calls.started[0].finish(user("U1"));
    CHECK(answers.seen == std::vector<std::string>(100, "user:U1"));
    CHECK(results == std::vector<Key>{{"S1", "T1"}});  // reported once, not per waiter
    CHECK(coalescer.in_flight() == 0);
    CHECK(coalescer.waiting() == 0);
  }

  TEST_CASE("another space or another token is another call") {
    FakeCalls calls;
    AuthCoalescer coalescer(200, calls.function());
    Answers a, b, c;
    CHECK(coalescer.request({"S1", "T1"}, a.waiter()) == Admission::Started);
    CHECK(coalescer.request({"S2", "T1"}, b.waiter()) == Admission::Started);
    CHECK(coalescer.request({"S1", "T2"}, c.waiter()) == Admission::Started);
    REQUIRE(calls.started.size() == 3);
    CHECK(coalescer.in_flight() == 3);
    calls.started[1].finish(rules::Anonymous{});
    CHECK(a.seen.empty());
    CHECK(b.seen == std::vector<std::string>{"anonymous"});
    calls.started[0].finish(rules::Failed{"timeout"});
    calls.started[2].finish(user("U2"));
    CHECK(a.seen == std::vector<std::string>{"failed:timeout"});
    CHECK(c.seen == std::vector<std::string>{"user:U2"});
  }

  TEST_CASE("a finished call is not joined: the next connect starts a new one") {
    FakeCalls calls;
    AuthCoalescer coalescer(200, calls.function());
    Answers answers;
    coalescer.request({"S1", "T1"}, answers.waiter());
    calls.started[0].finish(rules::Failed{"down"});
    CHECK(coalescer.request({"S1", "T1"}, answers.waiter()) == Admission::Started);
    CHECK(calls.started.size() == 2);
    calls.started[0].finish(user("late"));  // a second finish of the first call: ignored
    CHECK(answers.seen == std::vector<std::string>{"failed:down"});
    CHECK(coalescer.in_flight() == 1);
  }

  TEST_CASE("a call that finishes inside its start answers its first waiter") {
    AuthCoalescer coalescer(1, [](const Key&, std::function<void(AuthCoalescer::Decision)> finish) {
      finish(rules::Failed{"no auth service"});
    });
    Answers answers;
    CHECK(coalescer.request({"S1", "T1"}, answers.waiter()) == Admission::Started);
    CHECK(answers.seen == std::vector<std::string>{"failed:no auth service"});
    CHECK(coalescer.in_flight() == 0);
    CHECK(coalescer.request({"S1", "T2"}, answers.waiter()) == Admission::Started);
  }

  TEST_CASE("maxInFlight bounds distinct calls; joining stays allowed; one episode per burst") {
    FakeCalls calls;
    std::vector<std::string> log;
    AuthCoalescer::Hooks hooks;
    hooks.on_refusing = [&](size_t max) { log.push_back("refusing " + std::to_string(max)); };
    hooks.on_recovered = [&](uint64_t n) { log.push_back("recovered " + std::to_string(n)); };
    AuthCoalescer coalescer(4, calls.function(), hooks);
    Answers answers;
    for (int i = 0; i < 4; ++i) {
      CHECK(coalescer.request({"S1", "T" + std::to_string(i)}, answers.waiter()) ==
            Admission::Started);
    }
    for (int i = 4; i < 20; ++i) {
      CHECK(coalescer.request({"S1", "T" + std::to_string(i)}, answers.waiter()) ==
            Admission::Refused);
    }
    // A token already in flight costs no new call: it still joins.
    CHECK(coalescer.request({"S1", "T0"}, answers.waiter()) == Admission::Joined);
    CHECK(calls.started.size() == 4);
    CHECK(coalescer.refused() == 16);
    CHECK(log == std::vector<std::string>{"refusing 4"});  // one line for 16 refusals
    calls.started[0].finish(rules::Anonymous{});           // 3 in flight: still the episode
    CHECK(coalescer.request({"S1", "T5"}, answers.waiter()) == Admission::Started);
    CHECK(coalescer.request({"S1", "T6"}, answers.waiter()) == Admission::Refused);
    CHECK(log.size() == 1);
    calls.started[1].finish(rules::Anonymous{});
    calls.started[2].finish(rules::Anonymous{});  // 2 in flight = half the limit: over
    CHECK(log == std::vector<std::string>{"refusing 4", "recovered 17"});
    CHECK(coalescer.request({"S1", "T7"}, answers.waiter()) == Admission::Started);
    CHECK(coalescer.request({"S1", "T8"}, answers.waiter()) == Admission::Started);
    CHECK(coalescer.request({"S1", "T9"}, answers.waiter()) == Admission::Refused);
    CHECK(log.back() == "refusing 4");  // a new episode, a new line
    CHECK(answers.seen.size() == 4);    // refused waiters are never called
  }

  TEST_CASE("a logout abandons the token's calls: waiters answered now, the result dropped") {
    FakeCalls calls;
    int results = 0;
    AuthCoalescer::Hooks hooks;
    hooks.on_result = [&](const Key&, const AuthCoalescer::Decision&) { ++results; };
    AuthCoalescer coalescer(200, calls.function(), hooks);
    Answers t1, other;
    coalescer.request({"S1", "T1"}, t1.waiter());
    coalescer.request({"S2", "T1"}, t1.waiter());
    coalescer.request({"S1", "T1"}, t1.waiter());
    coalescer.request({"S1", "T2"}, other.waiter());
    CHECK(coalescer.abandon_token("T1", rules::Failed{"logged out"}) == 2);
    CHECK(t1.seen == std::vector<std::string>(3, "failed:logged out"));
    CHECK(coalescer.in_flight() == 3);  // the abandoned calls still load the auth service
    // A connect after the logout does not join the stale call.
    Answers after;
    CHECK(coalescer.request({"S1", "T1"}, after.waiter()) == Admission::Started);
    calls.started[0].finish(user("U1"));  // the stale call: nobody hears it, nothing cached
    CHECK(results == 0);
    CHECK(after.seen.empty());
    calls.started[3].finish(rules::Anonymous{});
    CHECK(after.seen == std::vector<std::string>{"anonymous"});
    CHECK(results == 1);
    CHECK(other.seen.empty());
    CHECK(coalescer.in_flight() == 2);
  }
}
