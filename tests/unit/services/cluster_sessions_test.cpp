#include "services/cluster_sessions.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <future>

#include <algorithm>
#include <asio/executor_work_guard.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/support/nats_server.hpp"
#include "tests/unit/support/run_loop.hpp"

using namespace steedos;
using namespace steedos::services;
using steedos::testing::NatsServer;
using steedos::testing::run_until;
using steedos::testing::with_jetstream;
using namespace std::chrono_literals;

namespace {

constexpr int64_t kDuration = 120000;       // max_disconnection_duration, ms
constexpr int64_t kT0 = 1'700'000'000'000;  // a wall clock; sweeps are given their "now"

std::unique_ptr<ClusterSessions> open_node(asio::io_context& loop, const NatsServer& server,
                                           const std::string& node, size_t sweep_batch = 256,
                                           size_t max_queued_jobs = 20000) {
  ClusterSessionsOptions options;
  options.urls = server.url();
  options.node_id = node;
  options.bucket = "sessions";
  options.max_disconnection_duration = std::chrono::milliseconds(kDuration);
  options.max_age = 10min;
  options.request_timeout_ms = 2000;
  options.sweep_batch = sweep_batch;
  options.max_queued_jobs = max_queued_jobs;
  auto sessions = std::make_unique<ClusterSessions>(loop, options);
  const transport::JsStatus opened = sessions->open();
  REQUIRE_MESSAGE(opened.ok(), opened.message);
  return sessions;
}

ClusterSessionRecord record_of(const std::string& pid, std::vector<std::string> rooms,
                               const std::string& user = "u1") {
  ClusterSessionRecord r;
  r.sid = "sid-" + pid;
  r.nsp = "/";
  r.pid = pid;
  r.rooms = std::move(rooms);
  r.app_data = Json{{"user", user}, {"tenant", "t1"}};
  return r;
}

/// Puts `pid` on `node` and waits until the write is done.
void put_and_wait(asio::io_context& loop, ClusterSessions& node, ClusterSessionRecord record) {
  const uint64_t before = node.counts().puts;
  node.put_connected(std::move(record));
  REQUIRE(run_until(loop, [&] { return node.counts().puts == before + 1; }));
}

/// A take run to completion.
std::optional<ClusterSessionRecord> take_now(asio::io_context& loop, ClusterSessions& node,
                                             const std::string& pid) {
  bool done = false;
  std::optional<ClusterSessionRecord> out;
  node.take(pid, [&](std::optional<ClusterSessionRecord> r) {
    out = std::move(r);
    done = true;
  });
  REQUIRE(run_until(loop, [&] { return done; }));
  return out;
}

/// Sweep steps on each node (concurrently: their workers run in parallel), `calls` times;
/// returns what each node reported.
std::vector<std::pair<std::string, ExpiryCause>> sweep_all(
    asio::io_context& loop, const std::vector<ClusterSessions*>& nodes, int64_t now,
    const std::unordered_set<std::string>& alive, int calls = 1) {
  std::vector<std::pair<std::string, ExpiryCause>> reported;
  for (int i = 0; i < calls; ++i) {
    size_t finished = 0;
    for (ClusterSessions* node : nodes) {
      auto expired = [&](const ClusterSessionRecord& r, ExpiryCause cause) {
        reported.emplace_back(r.pid, cause);
      };
      REQUIRE(node->sweep(now, alive, expired, [&] { ++finished; }));
    }
    REQUIRE(run_until(loop, [&] { return finished == nodes.size(); }));
  }
  return reported;
}

}  // namespace

TEST_SUITE("cluster sessions") {
  TEST_CASE("records encode to compact JSON and decode back; malformed ones are refused") {
    ClusterSessionRecord r = record_of("p-1_A=", {"a", "b"});
    r.node = "node-1";
    r.state = ClusterSessionState::Kept;
    r.kept_at_ms = kT0;
    const std::string text = encode_session_record(r);
    CHECK(text.find(' ') == std::string::npos);
    const auto back = decode_session_record(text);
    REQUIRE(back);
    CHECK(back->sid == r.sid);
    CHECK(back->nsp == "/");
    CHECK(back->pid == r.pid);
    CHECK(back->rooms == r.rooms);
    CHECK(back->app_data == r.app_data);
    CHECK(back->node == "node-1");
    CHECK(back->state == ClusterSessionState::Kept);
    CHECK(back->kept_at_ms == kT0);

    auto refused = [](std::string_view text) {
      std::string why;
      const bool refused = !decode_session_record(text, &why);
      CHECK(!why.empty());
      return refused ? why : std::string("accepted");
    };
    CHECK(refused("{") == "not JSON");
    CHECK(refused("[]") == "not an object");
    CHECK(refused(std::string(100, '[') + std::string(100, ']')) == "nested too deep");
    Json j = Json::parse(text);
    j.erase("sid");
    CHECK(refused(j.dump()) == "sid: not a string");
    j = Json::parse(text);
    j["rooms"] = Json::array({"a", 1});
    CHECK(refused(j.dump()) == "rooms: not all strings");
    j = Json::parse(text);
    j["state"] = "gone";
    CHECK(refused(j.dump()) == "state: neither connected nor kept");
    j = Json::parse(text);
    j["kept_at"] = "soon";
    CHECK(refused(j.dump()) == "kept_at: not an integer");
    j = Json::parse(text);
    j["pid"] = "a.>";
    CHECK(refused(j.dump()) == "pid: not a valid key");

    CHECK(valid_session_key("AbC-_9="));
    CHECK_FALSE(valid_session_key(""));
    CHECK_FALSE(valid_session_key("a.b"));
    CHECK_FALSE(valid_session_key("*"));
    CHECK_FALSE(valid_session_key(">"));
    CHECK_FALSE(valid_session_key(std::string(129, 'a')));
  }

  TEST_CASE("put on A, take on B gets rooms and data once; room updates coalesce per turn") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto a = open_node(loop, server, "node-a");
    auto b = open_node(loop, server, "node-b");

    put_and_wait(loop, *a, record_of("pid1", {"r1"}));
    CHECK(a->held() == 1);
    // A burst of room changes in one loop turn: one write, the last rooms.
    for (int i = 0; i < 100; ++i) a->update_rooms("pid1", {"r1", "r" + std::to_string(i)});
    REQUIRE(run_until(loop, [&] { return a->counts().updates >= 1 && a->counts().queued == 0; }));
    CHECK(a->counts().updates == 1);

    const auto got = take_now(loop, *b, "pid1");
    REQUIRE(got);
    CHECK(got->sid == "sid-pid1");
    CHECK(got->rooms == std::vector<std::string>{"r1", "r99"});
    CHECK(got->app_data == Json{{"user", "u1"}, {"tenant", "t1"}});
    CHECK(got->node == "node-a");
    CHECK(got->state == ClusterSessionState::Connected);
    CHECK_FALSE(take_now(loop, *b, "pid1"));
    CHECK_FALSE(take_now(loop, *a, "pid1"));
    CHECK(b->counts().taken == 1);
    CHECK(b->counts().take_misses == 1);

    // A's socket is stale now: its next write is refused and reported, not re-creating it.
    std::vector<std::string> lost;
    a->set_on_lost([&](const std::string& pid) { lost.push_back(pid); });
    a->update_rooms("pid1", {"r2"});
    REQUIRE(run_until(loop, [&] { return !lost.empty(); }));
    CHECK(lost == std::vector<std::string>{"pid1"});
    CHECK(a->held() == 0);
    CHECK_FALSE(take_now(loop, *b, "pid1"));

    // Kept, then taken: the record says so.
    put_and_wait(loop, *a, record_of("pid2", {"x"}));
    a->mark_kept("pid2", kT0);
    REQUIRE(run_until(loop, [&] { return a->counts().updates == 1 + 1; }));
    const auto kept = take_now(loop, *b, "pid2");
    REQUIRE(kept);
    CHECK(kept->state == ClusterSessionState::Kept);
    CHECK(kept->kept_at_ms == kT0);

    // remove() deletes; a pid that cannot be a key is refused without a request.
    put_and_wait(loop, *a, record_of("pid3", {}));
    a->remove("pid3");
    REQUIRE(run_until(loop, [&] { return a->counts().removes == 1; }));
    CHECK_FALSE(take_now(loop, *b, "pid3"));
    CHECK_FALSE(take_now(loop, *b, "a.*"));
    CHECK(b->counts().invalid_keys == 1);
    CHECK(a->counts().errors == 0);
    CHECK(b->counts().errors == 0);
  }

  TEST_CASE("two nodes take one pid at once: exactly one wins, 50 times") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto a = open_node(loop, server, "node-a");
    auto b = open_node(loop, server, "node-b");
    int a_wins = 0;
    int b_wins = 0;
    for (int i = 0; i < 50; ++i) {
      const std::string pid = "race" + std::to_string(i);
      put_and_wait(loop, *a, record_of(pid, {"room"}));
      a->mark_kept(pid, kT0);
      REQUIRE(run_until(loop, [&] { return a->counts().queued == 0 && a->held() == 0; }));
      int done = 0;
      std::optional<ClusterSessionRecord> from_a;
      std::optional<ClusterSessionRecord> from_b;
      // Both submitted in the same turn: the two workers run get + delete in parallel.
      a->take(pid, [&](auto r) { from_a = std::move(r), ++done; });
      b->take(pid, [&](auto r) { from_b = std::move(r), ++done; });
      REQUIRE(run_until(loop, [&] { return done == 2; }));
      CHECK(from_a.has_value() != from_b.has_value());
      a_wins += from_a.has_value();
      b_wins += from_b.has_value();
    }
    CHECK(a_wins + b_wins == 50);
    const auto ca = a->counts();
    const auto cb = b->counts();
    CHECK(ca.taken + cb.taken == 50);
    // A loser either read the record and lost the delete (a race) or found it already gone.
    CHECK(ca.take_races + cb.take_races + ca.take_misses + cb.take_misses == 50);
    MESSAGE("wins A/B " << a_wins << "/" << b_wins << ", races lost at the delete "
                        << ca.take_races + cb.take_races);
  }

  TEST_CASE("kept records expire after the duration, reported once across two nodes") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto a = open_node(loop, server, "node-a", 2);  // small steps: several calls per pass
    auto b = open_node(loop, server, "node-b", 2);
    const std::unordered_set<std::string> alive{"node-a", "node-b"};
    for (int i = 0; i < 5; ++i) {
      const std::string pid = "k" + std::to_string(i);
      put_and_wait(loop, *a, record_of(pid, {"room"}));
      a->mark_kept(pid, kT0 + i);
    }
    put_and_wait(loop, *a, record_of("live", {"room"}));  // connected on a live node
    REQUIRE(run_until(loop, [&] { return a->counts().updates == 5; }));

    // Just before the duration: nothing expires (3 calls of 2 records: a full pass).
    auto reported = sweep_all(loop, {a.get(), b.get()}, kT0 + kDuration - 1, alive, 3);
    CHECK(reported.empty());

    reported = sweep_all(loop, {a.get(), b.get()}, kT0 + kDuration + 10, alive, 4);
    std::map<std::string, int> times;
    for (const auto& [pid, cause] : reported) {
      ++times[pid];
      CHECK(cause == ExpiryCause::Kept);
    }
    CHECK(times.size() == 5);
    for (const auto& [pid, n] : times) CHECK_MESSAGE(n == 1, pid);
    CHECK(a->counts().expired + b->counts().expired == 5);
    CHECK_FALSE(take_now(loop, *b, "k0"));
    CHECK(take_now(loop, *b, "live").has_value());
  }

  TEST_CASE("a node's own kept records expire on time, however far the bucket scan is from them") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto a = open_node(loop, server, "node-a", 2);  // the scan reads 2 records per step
    const std::unordered_set<std::string> alive{"node-a"};
    for (int i = 0; i < 40; ++i) put_and_wait(loop, *a, record_of("c" + std::to_string(i), {}));
    put_and_wait(loop, *a, record_of("last", {"room"}));  // the newest: the scan reaches it last
    a->mark_kept("last", kT0);
    REQUIRE(run_until(loop, [&] { return a->counts().updates == 1; }));
    CHECK(sweep_all(loop, {a.get()}, kT0 + kDuration - 1, alive).empty());
    // One step after its time: reported, though the scan has read 4 of 41 records so far.
    const auto reported = sweep_all(loop, {a.get()}, kT0 + kDuration, alive);
    REQUIRE(reported.size() == 1);
    CHECK(reported[0].first == "last");
    CHECK(reported[0].second == ExpiryCause::Kept);
    CHECK_FALSE(take_now(loop, *a, "last"));
    // Once: the scan reaching where it was finds nothing more to expire.
    CHECK(sweep_all(loop, {a.get()}, kT0 + kDuration + 1, alive, 25).empty());
    CHECK(a->counts().expired == 1);
    // A kept record another node took is not expired here later.
    put_and_wait(loop, *a, record_of("taken", {}));
    a->mark_kept("taken", kT0);
    REQUIRE(run_until(loop, [&] { return a->counts().updates == 2; }));
    auto b = open_node(loop, server, "node-b");
    REQUIRE(take_now(loop, *b, "taken").has_value());
    CHECK(sweep_all(loop, {a.get()}, kT0 + kDuration + 2, alive).empty());
  }

  TEST_CASE("a restore and an expiry of one record at once: never both, never neither (20 times)") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto a = open_node(loop, server, "node-a");
    auto b = open_node(loop, server, "node-b");
    int taken = 0;
    int expired = 0;
    for (int i = 0; i < 20; ++i) {
      const std::string pid = "edge" + std::to_string(i);
      put_and_wait(loop, *a, record_of(pid, {"r"}));
      a->mark_kept(pid, kT0);
      REQUIRE(run_until(loop, [&] { return a->counts().queued == 0 && a->held() == 0; }));
      REQUIRE(run_until(loop, [&] { return a->counts().updates == static_cast<uint64_t>(i + 1); }));
      bool swept = false;
      bool took = false;
      std::optional<ClusterSessionRecord> got;
      std::vector<std::string> reported;
      REQUIRE(a->sweep(
          kT0 + kDuration, {"node-a", "node-b"},
          [&](const ClusterSessionRecord& r, ExpiryCause) { reported.push_back(r.pid); },
          [&] { swept = true; }));
      b->take(pid, [&](auto r) {
        got = std::move(r);
        took = true;
      });
      REQUIRE(run_until(loop, [&] { return swept && took; }));
      CHECK(got.has_value() != (reported.size() == 1));
      CHECK(reported.size() <= 1);
      taken += got.has_value();
      expired += static_cast<int>(reported.size());
    }
    CHECK(taken + expired == 20);
    MESSAGE("restored " << taken << ", expired " << expired);
  }

  TEST_CASE("a connected record of a node gone expires the duration after a sweep saw it gone") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto a = open_node(loop, server, "node-a");
    auto b = open_node(loop, server, "node-b");
    put_and_wait(loop, *a, record_of("orphan", {"room"}, "u7"));

    CHECK(sweep_all(loop, {b.get()}, kT0, {"node-a", "node-b"}).empty());
    // node-a left the cluster: B first sees it gone at kT0 + 1000.
    const std::unordered_set<std::string> only_b{"node-b"};
    CHECK(sweep_all(loop, {b.get()}, kT0 + 1000, only_b).empty());
    CHECK(sweep_all(loop, {b.get()}, kT0 + 1000 + kDuration - 1, only_b).empty());
    const auto reported = sweep_all(loop, {b.get()}, kT0 + 1000 + kDuration, only_b);
    REQUIRE(reported.size() == 1);
    CHECK(reported[0].first == "orphan");
    CHECK(reported[0].second == ExpiryCause::NodeGone);
    CHECK(b->counts().expired_node_gone == 1);
    CHECK_FALSE(take_now(loop, *b, "orphan"));
  }

  TEST_CASE("drop_if on B removes A's matching records") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto a = open_node(loop, server, "node-a", 2);
    auto b = open_node(loop, server, "node-b", 2);
    for (int i = 0; i < 5; ++i) {
      const std::string pid = "d" + std::to_string(i);
      put_and_wait(loop, *a, record_of(pid, {"room"}, i < 3 ? "logout" : "stays"));
      a->mark_kept(pid, kT0);
    }
    REQUIRE(run_until(loop, [&] { return a->counts().updates == 5; }));
    size_t removed = 99;
    b->drop_if(
        [](const ClusterSessionRecord& r) { return r.app_data.value("user", "") == "logout"; },
        [&](size_t n) { removed = n; });
    REQUIRE(run_until(loop, [&] { return removed != 99; }));
    CHECK(removed == 3);
    for (int i = 0; i < 5; ++i) {
      CHECK_MESSAGE(take_now(loop, *a, "d" + std::to_string(i)).has_value() == (i >= 3), i);
    }
  }

  TEST_CASE("records survive a SIGKILL and restart of nats-server (file store)") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    {
      auto a = open_node(loop, server, "node-a");
      put_and_wait(loop, *a, record_of("survivor", {"r1", "r2"}));
      a->mark_kept("survivor", kT0);
      REQUIRE(run_until(loop, [&] { return a->counts().updates == 1; }));
    }
    server.kill();
    server.start();
    // A node starting after the restart (the server may need a moment to serve JetStream).
    ClusterSessionsOptions options;
    options.urls = server.url();
    options.node_id = "node-b";
    options.bucket = "sessions";
    options.max_age = 10min;
    options.request_timeout_ms = 2000;
    std::unique_ptr<ClusterSessions> b;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!b && std::chrono::steady_clock::now() < deadline) {
      auto candidate = std::make_unique<ClusterSessions>(loop, options);
      if (candidate->open().ok()) b = std::move(candidate);
    }
    REQUIRE(b);
    const auto got = take_now(loop, *b, "survivor");
    REQUIRE(got);
    CHECK(got->rooms == std::vector<std::string>{"r1", "r2"});
    CHECK(got->state == ClusterSessionState::Kept);
  }

  TEST_CASE("a put that failed while the server was down is written by the next change") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto a = open_node(loop, server, "node-a");
    server.kill();  // the put waits for a reply in vain (request_timeout_ms, 2 s)
    a->put_connected(record_of("outage", {"r1"}));
    REQUIRE(run_until(
        loop, [&] { return a->counts().errors == 1; }, 15000ms));
    CHECK(a->counts().puts == 0);
    server.start();
    // Each change is a put again until one succeeds (cnats reconnects by itself meanwhile).
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    for (int i = 2; a->counts().puts == 0 && std::chrono::steady_clock::now() < deadline; ++i) {
      const uint64_t errors = a->counts().errors;
      a->update_rooms("outage", {"r1", "r" + std::to_string(i)});
      REQUIRE(run_until(
          loop, [&] { return a->counts().puts == 1 || a->counts().errors > errors; }, 15000ms));
    }
    REQUIRE(a->counts().puts == 1);
    auto b = open_node(loop, server, "node-b");
    const auto got = take_now(loop, *b, "outage");
    REQUIRE(got);
    CHECK(got->rooms.size() == 2);
    CHECK(a->counts().lost == 0);
    MESSAGE("failed writes during the outage: " << a->counts().errors);
  }

  TEST_CASE("refresh rewrites records older than half the bucket's max age, bounded per call") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto a = open_node(loop, server, "node-a");  // max age 10 min
    auto b = open_node(loop, server, "node-b");
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 5; ++i) put_and_wait(loop, *a, record_of("old" + std::to_string(i), {"r"}));
    CHECK(a->refresh(start + 4min, 100) == 0);  // not due yet
    CHECK(a->refresh(start + 6min, 3) == 3);    // due; bounded by max_writes
    CHECK(a->refresh(start + 6min, 100) == 2);  // the rest
    CHECK(a->refresh(start + 6min, 100) == 0);  // all rewritten at 6 min
    REQUIRE(run_until(loop, [&] { return a->counts().updates == 5; }));
    const auto got = take_now(loop, *b, "old3");
    REQUIRE(got);
    CHECK(got->rooms == std::vector<std::string>{"r"});
    CHECK(got->state == ClusterSessionState::Connected);
  }

  TEST_CASE("flush_now runs after every queued write: a drain's kept records are all written") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto a = open_node(loop, server, "node-a");
    auto b = open_node(loop, server, "node-b");
    for (int i = 0; i < 100; ++i) a->put_connected(record_of("drain" + std::to_string(i), {"r"}));
    REQUIRE(run_until(loop, [&] { return a->counts().puts == 100; }));
    for (int i = 0; i < 100; ++i) a->mark_kept("drain" + std::to_string(i), kT0);
    bool flushed = false;
    uint64_t updates_at_done = 0;
    a->flush_now([&] {
      flushed = true;
      updates_at_done = a->counts().updates;
    });
    REQUIRE(run_until(loop, [&] { return flushed; }));
    CHECK(updates_at_done == 100);
    a.reset();  // the node is gone; its records are not
    const auto got = take_now(loop, *b, "drain57");
    REQUIRE(got);
    CHECK(got->state == ClusterSessionState::Kept);
  }

  TEST_CASE("the job queue is bounded, and no callback runs after destruction") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto a = open_node(loop, server, "node-a", 256, 3);
    put_and_wait(loop, *a, record_of("blocker", {}));
    // Hold the worker: drop_if's match runs on it and waits here until released.
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
    std::atomic<bool> holding{false};
    a->drop_if([&](const ClusterSessionRecord&) {
      holding = true;
      released.wait();
      return false;
    });
    REQUIRE(run_until(loop, [&] { return holding.load(); }));
    int answered = 0;
    int refused_at_once = 0;
    for (int i = 0; i < 4; ++i) {
      a->take("q" + std::to_string(i), [&](auto r) {
        ++answered;
        if (!r) ++refused_at_once;
      });
    }
    CHECK(a->counts().queued == 3);
    CHECK(a->counts().queue_full == 1);
    REQUIRE(run_until(loop, [&] { return answered == 1; }));  // the 4th: nullopt, posted
    CHECK(refused_at_once == 1);
    release.set_value();
    a.reset();  // whether the 3 queued takes ran or were dropped, none may call back now
    loop.restart();
    loop.poll();
    CHECK(answered == 1);
  }

  TEST_CASE("figures: put and take latency, bytes per record (printed, not asserted)") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto a = open_node(loop, server, "node-a");
    auto b = open_node(loop, server, "node-b");
    constexpr int kRecords = 200;
    std::vector<double> put_ms;
    std::vector<double> take_ms;
    // Polls every 20 us (the write's completion is a counter on the worker, not a loop event).
    auto wait_puts = [&](uint64_t n) {
      const auto deadline = std::chrono::steady_clock::now() + 10s;
      if (loop.stopped()) loop.restart();
      auto guard = asio::make_work_guard(loop);
      while (a->counts().puts < n && std::chrono::steady_clock::now() < deadline) {
        loop.poll();
        std::this_thread::sleep_for(20us);
      }
      REQUIRE(a->counts().puts == n);
    };
    for (int i = 0; i < kRecords; ++i) {
      const auto start = std::chrono::steady_clock::now();
      a->put_connected(
          record_of("fig" + std::to_string(i), {"space-abc", "user-u1", "t1:records"}));
      wait_puts(i + 1);
      put_ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count());
    }
    transport::JetStreamOptions jo;
    jo.url = server.url();
    auto js = transport::JetStream::connect(loop, jo);
    REQUIRE(js.ok());
    const auto state = js.value->stream_state("KV_sessions");
    REQUIRE(state.ok());
    // A burst: 1000 sockets connecting in one turn, written one after another by the worker.
    const auto burst_start = std::chrono::steady_clock::now();
    for (int i = 0; i < 1000; ++i) a->put_connected(record_of("burst" + std::to_string(i), {"r"}));
    wait_puts(kRecords + 1000);
    const double burst_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - burst_start)
            .count();
    // One full sweep pass over the bucket (nothing to expire: every node alive).
    int sweep_calls = 0;
    const auto sweep_start = std::chrono::steady_clock::now();
    for (;;) {
      bool done = false;
      REQUIRE(b->sweep(kT0, {"node-a", "node-b"}, {}, [&] { done = true; }));
      REQUIRE(run_until(loop, [&] { return done; }));
      ++sweep_calls;
      if (sweep_calls * 256 >= kRecords + 1000) break;
    }
    const double sweep_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - sweep_start)
            .count();
    const auto one =
        encode_session_record(record_of("fig0", {"space-abc", "user-u1", "t1:records"}));
    for (int i = 0; i < kRecords; ++i) {
      const auto start = std::chrono::steady_clock::now();
      REQUIRE(take_now(loop, *b, "fig" + std::to_string(i)));
      take_ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count());
    }
    auto pct = [](std::vector<double> v, double p) {
      std::sort(v.begin(), v.end());
      return v[static_cast<size_t>(p * (v.size() - 1))];
    };
    MESSAGE("put (queued to written, seen on the loop) ms: p50 " << pct(put_ms, 0.5) << " p99 "
                                                                 << pct(put_ms, 0.99));
    MESSAGE("take (get + conditional delete) ms: p50 " << pct(take_ms, 0.5) << " p99 "
                                                       << pct(take_ms, 0.99));
    MESSAGE("burst of 1000 puts: " << burst_ms << " ms (" << 1000 / (burst_ms / 1000)
                                   << " writes/s through one worker)");
    MESSAGE("sweep pass over " << kRecords + 1000 << " records: " << sweep_calls
                               << " calls of 256, " << sweep_ms << " ms");
    MESSAGE("bucket: " << state.value.messages << " records, " << state.value.bytes
                       << " bytes stored (" << state.value.bytes / state.value.messages
                       << " per record; the value alone " << one.size() << " bytes)");
  }
}
