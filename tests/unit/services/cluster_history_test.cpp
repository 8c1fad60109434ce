// services/cluster_history.hpp against a real `nats-server -js`: two "nodes" (two ClusterHistory
// instances, two connections) publishing copies of the same broadcasts deliver one sequence of
// events, the same on both, each once, also across a SIGKILL and restart of nats-server; a
// restore's read gives exactly a range; malformed messages are counted and skipped; the
// duplicate window's edge; the event codec and ids; publish-to-deliver latency (printed).
#include "services/cluster_history.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <asio/executor_work_guard.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/support/nats_server.hpp"
#include "tests/unit/support/run_loop.hpp"

using namespace steedos::services;
using steedos::testing::NatsServer;
using steedos::testing::run_until;
using steedos::testing::with_jetstream;
using steedos::transport::JsError;
using steedos::transport::JsPubAck;
using steedos::transport::JsResult;
using namespace std::chrono_literals;

namespace {

ClusterHistoryOptions options_for(const NatsServer& server) {
  ClusterHistoryOptions options;
  options.url = server.url();
  options.request_timeout_ms = 2000;
  options.heartbeat = 500ms;  // a lost consumer is made again within 1-2 s
  return options;
}

using Delivered = std::vector<std::pair<uint64_t, HistoryEvent>>;

/// A started node whose deliveries are recorded.
struct Node {
  Node(asio::io_context& loop, ClusterHistoryOptions options) : history(loop, std::move(options)) {
    const auto started = history.start([this](uint64_t seq, const HistoryEvent& e) {
      got.emplace_back(seq, e);
      delivered_at.push_back(std::chrono::steady_clock::now());
    });
    REQUIRE_MESSAGE(started.ok(), started.message);
  }
  /// Publishes and counts the acks (ok or not) in `acked` / `failed`.
  void publish(const HistoryEvent& event) {
    const auto sent =
        history.publish(event, [this](JsResult<JsPubAck> r) { ++(r.ok() ? acked : failed); });
    if (!sent.ok()) ++failed;
  }
  ClusterHistory history;
  Delivered got;
  std::vector<std::chrono::steady_clock::time_point> delivered_at;  // of each in `got`
  int acked = 0;
  int failed = 0;
};

HistoryEvent broadcast(int i) {
  HistoryEvent e;
  e.name = "record.changed";
  e.args_json = R"([{"i":)" + std::to_string(i) + "}]";
  e.id = event_id_of_broadcast("producer-1", "req-" + std::to_string(i), e.name, e.args_json, "{}");
  e.all = (i % 2) == 0;
  if (!e.all) e.rooms = {"tenant:t1", "user:u" + std::to_string(i % 3)};
  return e;
}

HistoryEvent own(const std::string& node, int i) {
  HistoryEvent e;
  e.name = "notification";
  e.args_json = R"(["to )" + node + "\"," + std::to_string(i) + "]";
  e.id = event_id_of_forward(node + "-uuid-" + std::to_string(i));
  e.rooms = {"socket-" + node};
  e.except_rooms = {"muted"};
  return e;
}

bool contiguous_from(const Delivered& d, uint64_t first) {
  for (size_t i = 0; i < d.size(); ++i) {
    if (d[i].first != first + i) return false;
  }
  return true;
}

/// A steady flow on the loop: every 5 ms both nodes publish their copy of one broadcast and a
/// publishes one event of its own.
struct Flow {
  Flow(asio::io_context& loop, Node& a, Node& b) : timer(loop), a(a), b(b) { arm(); }
  void arm() {
    timer.expires_after(5ms);
    timer.async_wait([this](const std::error_code& ec) {
      if (ec || !flowing) return;
      a.publish(broadcast(tick));
      b.publish(broadcast(tick));
      a.publish(own("a", tick));
      ++tick;
      arm();
    });
  }
  void finish() {
    flowing = false;
    timer.cancel();
  }
  asio::steady_timer timer;
  Node& a;
  Node& b;
  int tick = 0;
  bool flowing = true;
};

/// After a Flow: once every ack came (or timed out) and a sentinel closes the sequence, both
/// nodes delivered the same events under the same sequences, 1 to the last without a gap, each
/// event once, exactly what the stream holds.
void check_one_sequence(asio::io_context& loop, Node& a, Node& b, int ticks) {
  REQUIRE(run_until(
      loop, [&] { return a.acked + a.failed == 2 * ticks && b.acked + b.failed == ticks; },
      15000ms));
  const HistoryEvent sentinel = own("a", 1000000);
  a.publish(sentinel);
  REQUIRE(run_until(loop, [&] {
    return !a.got.empty() && a.got.back().second.id == sentinel.id && !b.got.empty() &&
           b.got.back().second.id == sentinel.id;
  }));
  CHECK(a.got == b.got);
  CHECK(contiguous_from(a.got, 1));  // gap-free
  std::set<std::string> ids;
  for (const auto& [seq, e] : a.got) ids.insert(e.id);
  CHECK(ids.size() == a.got.size());  // each event once
  const auto all = a.history.read(0, a.history.last_delivered());
  REQUIRE_MESSAGE(all.ok(), all.message);
  CHECK(all.value.events == a.got);
  CHECK_FALSE(all.value.incomplete);
  CHECK(a.history.counts().skipped_sequences + b.history.counts().skipped_sequences == 0);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

TEST_SUITE("cluster history codec") {
  TEST_CASE("an event survives encode/decode; bad messages are refused with a reason") {
    HistoryEvent e = own("n1", 7);
    e.args_json = R"([ {"a" : [1, 2.5, "x"]}, null ])";  // spaces: written again compactly
    std::string error;
    const auto encoded = encode_history_event(e, &error);
    REQUIRE_MESSAGE(encoded, error);
    CHECK(*encoded ==
          R"({"id":"f:n1-uuid-7","name":"notification","args":[{"a":[1,2.5,"x"]},null],)"
          R"("all":false,"rooms":["socket-n1"],"except":["muted"]})");
    const auto decoded = decode_history_event(*encoded, &error);
    REQUIRE_MESSAGE(decoded, error);
    CHECK(decoded->args_json == R"([{"a":[1,2.5,"x"]},null])");
    HistoryEvent expected = e;
    expected.args_json = decoded->args_json;
    CHECK(*decoded == expected);

    HistoryEvent bad_args = e;
    bad_args.args_json = R"({"not":"an array"})";
    CHECK_FALSE(encode_history_event(bad_args, &error));
    CHECK(error.find("not a JSON array") != std::string::npos);
    HistoryEvent no_id = e;
    no_id.id.clear();
    CHECK_FALSE(encode_history_event(no_id, &error));

    const std::vector<std::pair<std::string, std::string>> refused = {
        {"not json", "not JSON"},
        {"[1,2]", "not a JSON object"},
        {R"({"name":"x","args":[],"all":true})", "\"id\""},
        {R"({"id":"","name":"x","args":[],"all":true})", "\"id\""},
        {R"({"id":"a","args":[],"all":true})", "\"name\""},
        {R"({"id":"a","name":"x","args":"[]","all":true})", "\"args\""},
        {R"({"id":"a","name":"x","args":[],"all":1})", "\"all\""},
        {R"({"id":"a","name":"x","args":[],"all":true,"rooms":[1]})", "\"rooms\""},
        {R"({"id":"a","name":"x","args":[],"all":true,"except":"r"})", "\"except\""},
        {std::string(5000, '[') + std::string(5000, ']'), "too deep"},
    };
    for (const auto& [message, reason] : refused) {
      error.clear();
      CHECK_FALSE(decode_history_event(message, &error));
      CHECK_MESSAGE(error.find(reason) != std::string::npos, message.substr(0, 60), " -> ", error);
    }
    // Rooms absent: none.
    const auto minimal =
        decode_history_event(R"({"id":"a","name":"x","args":[],"all":true})", &error);
    REQUIRE(minimal);
    CHECK(minimal->rooms.empty());
  }

  TEST_CASE("event ids: stable, and different for every field that differs") {
    const std::string id =
        event_id_of_broadcast("node-1", "req-123", "user.updated", R"({"a":1})", "{}");
    // A known answer (SHA-256 of the length-prefixed fields, first 128 bits): the ids must not
    // change between versions, or a rolling upgrade would store copies twice.
    CHECK(id == "b:b227f074186d354cf5ea086d754fe982");
    CHECK(event_id_of_broadcast("node-1", "req-123", "user.updated", R"({"a":1})", "{}") == id);
    std::set<std::string> ids{id};
    ids.insert(event_id_of_broadcast("node-2", "req-123", "user.updated", R"({"a":1})", "{}"));
    ids.insert(event_id_of_broadcast("node-1", "req-124", "user.updated", R"({"a":1})", "{}"));
    ids.insert(event_id_of_broadcast("node-1", "req-123", "user.created", R"({"a":1})", "{}"));
    ids.insert(event_id_of_broadcast("node-1", "req-123", "user.updated", R"({"a":2})", "{}"));
    ids.insert(
        event_id_of_broadcast("node-1", "req-123", "user.updated", R"({"a":1})", R"({"m":1})"));
    // Moving a boundary between fields changes the id (lengths are hashed).
    ids.insert(event_id_of_broadcast("node-1r", "eq-123", "user.updated", R"({"a":1})", "{}"));
    CHECK(ids.size() == 7);
    CHECK(event_id_of_forward("5f0c") == "f:5f0c");
  }
}

TEST_SUITE("cluster history") {
  TEST_CASE("two nodes: shared broadcasts stored once, the same 150 events in one order") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    Node a(loop, options_for(server));
    Node b(loop, options_for(server));

    // Each node publishes its copy of the same 50 broadcasts, interleaved with 50 of its own.
    for (int i = 0; i < 50; ++i) {
      a.publish(broadcast(i));
      a.publish(own("a", i));
      b.publish(own("b", i));
      b.publish(broadcast(i));
    }
    REQUIRE(
        run_until(loop, [&] { return a.acked + a.failed == 100 && b.acked + b.failed == 100; }));
    CHECK(a.failed + b.failed == 0);
    REQUIRE(run_until(loop, [&] { return a.got.size() >= 150 && b.got.size() >= 150; }));

    // A sentinel after everything: once it is delivered nothing else can come before it.
    HistoryEvent sentinel = own("a", 1000);
    a.publish(sentinel);
    REQUIRE(run_until(loop, [&] {
      return !a.got.empty() && a.got.back().second.id == sentinel.id && !b.got.empty() &&
             b.got.back().second.id == sentinel.id;
    }));
    // Its ack may come after its delivery (two subscriptions): wait for it too.
    REQUIRE(run_until(loop, [&] { return a.acked + a.failed == 101; }));
    CHECK(a.got.size() == 151);
    CHECK(a.got == b.got);  // same sequences, same events, same order
    CHECK(contiguous_from(a.got, 1));

    std::set<std::string> ids;
    int broadcasts = 0;
    for (const auto& [seq, e] : a.got) {
      ids.insert(e.id);
      if (e.id.rfind("b:", 0) == 0) ++broadcasts;
    }
    CHECK(ids.size() == 151);  // no event twice
    CHECK(broadcasts == 50);
    // Each node's own events in its publish order.
    std::vector<std::string> a_own;
    for (const auto& [seq, e] : a.got) {
      if (e.rooms == std::vector<std::string>{"socket-a"}) a_own.push_back(e.args_json);
    }
    REQUIRE(a_own.size() == 51);
    for (int i = 0; i < 50; ++i) CHECK(a_own[i] == own("a", i).args_json);

    const auto ca = a.history.counts();
    const auto cb = b.history.counts();
    CHECK(ca.published + cb.published == 151);
    CHECK(ca.published_copies + cb.published_copies == 50);
    CHECK(ca.delivered == 151);
    CHECK(cb.delivered == 151);
    CHECK(ca.redelivered + cb.redelivered + ca.skipped_sequences + cb.skipped_sequences == 0);
    CHECK(a.history.last_delivered() == 151);
  }

  TEST_CASE(
      "a SIGKILL and restart of nats-server mid-stream: both still deliver one gap-free "
      "sequence, each event once") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    Node a(loop, options_for(server));
    Node b(loop, options_for(server));
    Flow flow(loop, a, b);
    REQUIRE(run_until(loop, [&] { return a.got.size() >= 100 && b.got.size() >= 100; }));

    server.kill();  // a crash: the file store keeps what it acknowledged
    const int killed_at_tick = flow.tick;
    // A deliberate outage of 200 ticks (about 1 s), publishing meanwhile.
    REQUIRE(run_until(loop, [&] { return flow.tick >= killed_at_tick + 200; }));
    const size_t before = a.got.size();
    server.start();
    const auto restarted = std::chrono::steady_clock::now();
    // Both consumers are made again (missed heartbeats) and deliver what follows.
    REQUIRE(run_until(
        loop, [&] { return a.got.size() >= before + 200 && b.got.size() >= before + 200; },
        30000ms));
    const auto resumed = a.delivered_at[before];
    flow.finish();
    check_one_sequence(loop, a, b, flow.tick);
    MESSAGE("restart: "
            << flow.tick << " ticks, " << a.got.size() << " events delivered; publishes "
            << "failed (outage) a=" << a.failed << " b=" << b.failed
            << "; redelivered and dropped a=" << a.history.counts().redelivered
            << " b=" << b.history.counts().redelivered << "; first delivery "
            << std::chrono::duration_cast<std::chrono::milliseconds>(resumed - restarted).count()
            << " ms after the restart");
  }

  TEST_CASE(
      "a server that stops answering (SIGSTOP) past two heartbeats while its consumers live "
      "on: one gap-free sequence, each event once") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    Node a(loop, options_for(server));
    Node b(loop, options_for(server));
    Flow flow(loop, a, b);
    REQUIRE(run_until(loop, [&] { return a.got.size() >= 100 && b.got.size() >= 100; }));

    // A deliberate freeze of 600 ticks (about 3 s, six heartbeats): cnats makes new
    // consumers while the old ones still exist on the server and resume pushing at the thaw.
    server.freeze();
    const int frozen_at_tick = flow.tick;
    REQUIRE(run_until(loop, [&] { return flow.tick >= frozen_at_tick + 600; }));
    server.thaw();
    const size_t before = std::min(a.got.size(), b.got.size());
    REQUIRE(run_until(
        loop, [&] { return a.got.size() >= before + 300 && b.got.size() >= before + 300; },
        30000ms));
    flow.finish();
    check_one_sequence(loop, a, b, flow.tick);
    MESSAGE("freeze: " << flow.tick << " ticks, " << a.got.size()
                       << " events delivered; publishes failed a=" << a.failed << " b=" << b.failed
                       << "; redelivered and dropped a=" << a.history.counts().redelivered
                       << " b=" << b.history.counts().redelivered);
  }

  TEST_CASE(
      "a node started on a full stream delivers only what follows, even when its consumer "
      "is made again before its first message (cnats restarts it from sequence 1)") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    {
      Node earlier(loop, options_for(server));
      for (int i = 0; i < 100; ++i) earlier.publish(own("e", i));
      REQUIRE(run_until(loop, [&] { return earlier.got.size() == 100; }));
    }
    Node a(loop, options_for(server));
    CHECK(a.history.last_delivered() == 100);
    server.kill();
    server.start();
    // Publish until one event gets through after the restart (the first may fail while
    // JetStream recovers), then wait for its delivery.
    int attempt = 0;
    while (a.acked == 0) {
      const int failed = a.failed;
      a.publish(own("a", attempt++));
      REQUIRE(run_until(
          loop, [&] { return a.acked == 1 || a.failed > failed; }, 15000ms));
      REQUIRE(attempt < 100);
    }
    REQUIRE(run_until(
        loop, [&] { return !a.got.empty(); }, 15000ms));
    CHECK(a.got.front().first == 101);
    CHECK(a.got.size() == 1);
    const auto counts = a.history.counts();
    MESSAGE(
        "messages redelivered by cnats' reset from sequence 1, dropped: " << counts.redelivered);
    CHECK(counts.skipped_sequences == 0);
  }

  TEST_CASE("read(after, until) gives exactly the events in between, bounded") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    ClusterHistoryOptions options = options_for(server);
    options.max_queued_reads = 1;
    Node a(loop, options);
    for (int i = 0; i < 40; ++i) a.publish(own("a", i));
    REQUIRE(run_until(loop, [&] { return a.got.size() == 40; }));

    const auto middle = a.history.read(5, 30);
    REQUIRE_MESSAGE(middle.ok(), middle.message);
    CHECK(middle.value.events == Delivered(a.got.begin() + 5, a.got.begin() + 30));
    CHECK_FALSE(middle.value.incomplete);
    const auto none = a.history.read(40, 40);
    CHECK(none.ok());
    CHECK(none.value.events.empty());
    const auto past_end = a.history.read(38, 100);  // what exists of the range
    REQUIRE(past_end.ok());
    CHECK(past_end.value.events.size() == 2);
    const auto too_many = a.history.read(0, 40, 39);
    CHECK(too_many.error == JsError::Rejected);
    CHECK(too_many.value.events.empty());
    CHECK(a.history.read(0, 40, 40).value.events.size() == 40);

    // The same on the reader thread, completing on the loop; a bounded queue (1 here).
    std::vector<JsResult<ClusterHistory::ReadResult>> results(10);
    int completed = 0;
    bool on_loop_thread = true;
    const auto loop_thread = std::this_thread::get_id();
    for (int i = 0; i < 10; ++i) {
      a.history.read_async(5, 30, 1000, [&, i](JsResult<ClusterHistory::ReadResult> r) {
        on_loop_thread = on_loop_thread && std::this_thread::get_id() == loop_thread;
        results[i] = std::move(r);
        ++completed;
      });
    }
    REQUIRE(run_until(loop, [&] { return completed == 10; }));
    CHECK(on_loop_thread);
    int busy = 0;
    for (const auto& r : results) {
      if (r.error == JsError::Busy) {
        ++busy;
        continue;
      }
      REQUIRE_MESSAGE(r.ok(), r.message);
      CHECK(r.value.events == middle.value.events);
    }
    CHECK(results[0].ok());  // the first is taken at once
    CHECK(busy >= 1);        // ten submitted within microseconds, reads take milliseconds
    MESSAGE("read_async with a queue of 1: " << busy << " of 10 refused Busy");
  }

  TEST_CASE("read says incomplete when the stream's size limit removed the start of the range") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    ClusterHistoryOptions options = options_for(server);
    options.max_bytes = 4096;
    Node a(loop, options);
    for (int i = 0; i < 100; ++i) a.publish(own("a", i));  // ~130 bytes stored each
    // The consumer may lag behind the head's removal: it skips what it could not get.
    REQUIRE(run_until(loop, [&] { return a.history.last_delivered() == 100; }));
    CHECK(a.history.counts().delivered + a.history.counts().skipped_sequences == 100);
    const auto all = a.history.read(0, 100);
    REQUIRE(all.ok());
    CHECK(all.value.incomplete);
    REQUIRE_FALSE(all.value.events.empty());
    CHECK(all.value.events.back().first == 100);
    CHECK(all.value.events.size() < 100);
  }

  TEST_CASE("malformed messages on the subject are counted and skipped") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    Node a(loop, options_for(server));
    steedos::transport::JetStreamOptions raw_options;
    raw_options.url = server.url();
    auto raw = steedos::transport::JetStream::connect(loop, raw_options);
    REQUIRE(raw.ok());
    const std::string subject = ClusterHistoryOptions{}.subject;

    a.publish(own("a", 0));
    REQUIRE(run_until(loop, [&] { return a.got.size() == 1; }));
    REQUIRE(raw.value->publish(subject, "not json").ok());
    REQUIRE(raw.value->publish(subject, R"({"id":"x","name":"e"})").ok());  // no args
    a.publish(own("a", 1));
    REQUIRE(run_until(loop, [&] { return a.got.size() == 2; }));
    CHECK(a.got[0].first == 1);
    CHECK(a.got[1].first == 4);
    CHECK(a.got[1].second == own("a", 1));
    CHECK(a.history.counts().malformed == 2);
    CHECK(a.history.last_delivered() == 4);
    const auto read = a.history.read(0, 4);
    REQUIRE(read.ok());
    CHECK(read.value.events == a.got);
    CHECK(read.value.malformed == 2);
  }

  TEST_CASE("the duplicate window: a copy within it is dropped, one after it is a new event") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    ClusterHistoryOptions options = options_for(server);
    options.duplicate_window = 600ms;
    Node a(loop, options);
    Node b(loop, options);
    const HistoryEvent event = broadcast(1);
    a.publish(event);
    b.publish(event);
    REQUIRE(run_until(loop, [&] { return a.acked == 1 && b.acked == 1; }));
    CHECK(a.history.counts().published + b.history.counts().published == 1);

    // Deliberate wait past the 600 ms window: a late copy (a stalled node) is stored again, and
    // every node delivers it a second time. Documented in cluster_history.hpp.
    std::this_thread::sleep_for(900ms);
    b.publish(event);
    REQUIRE(run_until(loop, [&] { return b.acked == 2; }));
    CHECK(a.history.counts().published + b.history.counts().published == 2);
    REQUIRE(run_until(loop, [&] { return a.got.size() == 2 && b.got.size() == 2; }));
    CHECK(a.got[0].second.id == event.id);
    CHECK(a.got[1].second.id == event.id);
    CHECK(a.got[1].first == 2);
    CHECK(a.got == b.got);
  }

  TEST_CASE("no delivery after stop(); publish after it says Closed") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    Node a(loop, options_for(server));
    Node b(loop, options_for(server));
    for (int i = 0; i < 20; ++i) b.publish(own("b", i));
    REQUIRE(run_until(loop, [&] { return b.got.size() == 20; }));
    a.history.stop();
    const size_t seen = a.got.size();
    for (int i = 20; i < 40; ++i) b.publish(own("b", i));
    REQUIRE(run_until(loop, [&] { return b.got.size() == 40; }));
    CHECK(a.got.size() == seen);
    CHECK(a.history.publish(own("a", 0)).error == JsError::Closed);
    CHECK(a.history.start([](uint64_t, const HistoryEvent&) {}).error == JsError::Closed);
  }

  TEST_CASE("publish-to-deliver latency, one node and two (printed, not asserted)") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    Node a(loop, options_for(server));
    constexpr int kEvents = 500;
    using Clock = std::chrono::steady_clock;
    auto measure = [&](Node& publisher, Node* copy, std::vector<Node*> receivers) {
      std::vector<double> ms;
      for (int i = 0; i < kEvents; ++i) {
        HistoryEvent e = broadcast(100000 + i + (copy ? kEvents : 0));
        std::vector<size_t> before;
        for (Node* r : receivers) before.push_back(r->got.size());
        const auto t0 = Clock::now();
        publisher.publish(e);
        if (copy != nullptr) copy->publish(e);
        for (size_t k = 0; k < receivers.size(); ++k) {
          REQUIRE(run_until(loop, [&] { return receivers[k]->got.size() > before[k]; }));
          const auto at = receivers[k]->delivered_at[before[k]];
          ms.push_back(std::chrono::duration<double, std::milli>(at - t0).count());
        }
      }
      return ms;
    };
    const auto one = measure(a, nullptr, {&a});
    Node b(loop, options_for(server));
    const auto two = measure(a, &b, {&a, &b});
    MESSAGE("publish-to-deliver, one node: p50 " << percentile(one, 0.5) << " ms, p99 "
                                                 << percentile(one, 0.99) << " ms (" << kEvents
                                                 << " events, one at a time)");
    MESSAGE("publish-to-deliver, two nodes both publishing the copy: p50 "
            << percentile(two, 0.5) << " ms, p99 " << percentile(two, 0.99)
            << " ms (until each node delivered)");
    // b started after the first run: what it got is the end of a's sequence.
    REQUIRE(b.got.size() == kEvents);
    CHECK(Delivered(a.got.end() - kEvents, a.got.end()) == b.got);

    // A burst: 5000 events from a as fast as it can publish, until both nodes delivered them.
    constexpr int kBurst = 5000;
    const size_t a_before = a.got.size();
    const size_t b_before = b.got.size();
    const auto t0 = Clock::now();
    for (int i = 0; i < kBurst; ++i) a.publish(own("a", i));
    REQUIRE(run_until(
        loop,
        [&] { return a.got.size() == a_before + kBurst && b.got.size() == b_before + kBurst; },
        30000ms));
    const double burst_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    MESSAGE("burst of " << kBurst << " events (~110 bytes) from one node, delivered on both in "
                        << burst_ms << " ms: " << static_cast<int>(kBurst / burst_ms * 1000)
                        << " events/s");
    CHECK(Delivered(a.got.end() - kBurst, a.got.end()) ==
          Delivered(b.got.end() - kBurst, b.got.end()));
  }
}
