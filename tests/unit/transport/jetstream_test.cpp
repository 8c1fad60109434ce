#include "transport/jetstream.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <nats/nats.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <asio/executor_work_guard.hpp>
#include <asio/ip/tcp.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/support/nats_server.hpp"

using namespace steedos::transport;
using steedos::testing::accepts_tcp;
using steedos::testing::free_port;
using steedos::testing::have_nats_server;
using steedos::testing::NatsServer;
using steedos::testing::with_jetstream;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<JetStream> connect(asio::io_context& loop, const NatsServer& server,
                                   JetStreamOptions options = {}) {
  options.url = server.url();
  options.request_timeout_ms = 2000;
  auto made = JetStream::connect(loop, options);
  REQUIRE_MESSAGE(made.ok(), made.message);
  return std::move(made.value);
}

JsStreamSpec history_spec() {
  JsStreamSpec spec;
  spec.name = "HISTORY";
  spec.subjects = {"history.>"};
  spec.max_age = 60s;
  spec.max_bytes = 1 << 20;
  return spec;
}

/// Runs the loop on this thread until `pred` holds or `timeout` passes.
template <typename Pred>
bool run_until(asio::io_context& loop, Pred pred, std::chrono::milliseconds timeout = 5000ms) {
  if (loop.stopped()) loop.restart();
  auto guard = asio::make_work_guard(loop);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred() && std::chrono::steady_clock::now() < deadline) loop.run_for(10ms);
  return pred();
}

/// Polls `pred` every 50 ms until it holds or `timeout` passes (for server-side expiry, which
/// gives no event to wait for).
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(50ms);
  }
  return true;
}

}  // namespace

TEST_SUITE("jetstream") {
  TEST_CASE("a server without JetStream gives NotEnabled with a message that says how to fix it") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server;
    asio::io_context loop;
    auto js = connect(loop, server);

    const JsStatus probed = js->probe();
    CHECK(probed.error == JsError::NotEnabled);
    CHECK(probed.message.find("not enabled") != std::string::npos);
    CHECK(probed.message.find("-js") != std::string::npos);

    const auto stream = js->ensure_stream(history_spec());
    CHECK(stream.error == JsError::NotEnabled);
    CHECK(stream.message.find("stream HISTORY") == 0);

    JsBucketSpec bucket;
    bucket.bucket = "sessions";
    CHECK(js->ensure_bucket(bucket).error == JsError::NotEnabled);

    // Nothing stores the subject: a publish cannot get a sequence.
    CHECK(js->publish("history.x", "1").error == JsError::NoStream);
  }

  TEST_CASE("connect to nothing fails with a readable error") {
    asio::io_context loop;
    JetStreamOptions options;
    options.url = "nats://127.0.0.1:" + std::to_string(free_port());
    options.connect_timeout_ms = 500;
    auto made = JetStream::connect(loop, options);
    CHECK(made.error == JsError::NotConnected);
    CHECK(made.message.find("cannot connect to " + options.url) == 0);
  }

  TEST_CASE("ensure_stream is idempotent, updates limits and refuses a storage change") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto js = connect(loop, server);
    REQUIRE(js->probe().ok());

    const auto first = js->ensure_stream(history_spec());
    REQUIRE_MESSAGE(first.ok(), first.message);
    REQUIRE(js->publish("history.a", "kept").ok());

    const auto second = js->ensure_stream(history_spec());
    REQUIRE_MESSAGE(second.ok(), second.message);
    CHECK(second.value.messages == 1);  // the same stream, its message still there
    CHECK(second.value.last_sequence == 1);

    JsStreamSpec bigger = history_spec();
    bigger.max_bytes = 2 << 20;
    bigger.max_age = 120s;
    const auto updated = js->ensure_stream(bigger);
    CHECK_MESSAGE(updated.ok(), updated.message);
    CHECK(updated.value.messages == 1);

    JsStreamSpec memory = history_spec();
    memory.storage = JsStorage::Memory;
    const auto refused = js->ensure_stream(memory);
    CHECK(refused.error == JsError::Rejected);
    CHECK(refused.message.find("stream HISTORY") == 0);
    MESSAGE("storage change refused with: " << refused.message);

    CHECK(js->stream_state("NOPE").error == JsError::NotFound);

    // Three copies need a NATS cluster: a single server refuses them, saying so.
    JsStreamSpec replicated = history_spec();
    replicated.name = "REPLICATED";
    replicated.subjects = {"replicated.>"};
    replicated.replicas = 3;
    const auto single = js->ensure_stream(replicated);
    CHECK(single.error == JsError::Rejected);
    MESSAGE("replicas 3 on one server: " << single.message);
  }

  TEST_CASE("publish returns increasing sequences; read gives one subject from k onwards") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto js = connect(loop, server);
    REQUIRE(js->ensure_stream(history_spec()).ok());

    // 20 messages on history.a interleaved with 20 on history.b.
    std::vector<uint64_t> a_sequences;
    uint64_t previous = 0;
    for (int i = 0; i < 20; ++i) {
      for (const char* subject : {"history.a", "history.b"}) {
        const auto seq = js->publish(subject, std::string(subject) + "#" + std::to_string(i));
        REQUIRE_MESSAGE(seq.ok(), seq.message);
        CHECK(seq.value == previous + 1);
        previous = seq.value;
        if (std::string(subject) == "history.a") a_sequences.push_back(seq.value);
      }
    }

    const int k = 7;  // from the 8th message of history.a
    const auto batch = js->read("HISTORY", "history.a", a_sequences[k]);
    REQUIRE_MESSAGE(batch.ok(), batch.message);
    REQUIRE(batch.value.messages.size() == 20 - k);
    for (size_t i = 0; i < batch.value.messages.size(); ++i) {
      const JsMessage& m = batch.value.messages[i];
      CHECK(m.subject == "history.a");
      CHECK(m.sequence == a_sequences[k + i]);
      CHECK(m.data == "history.a#" + std::to_string(k + i));
      CHECK(m.time_ns > 0);
    }
    CHECK_FALSE(batch.value.more);

    // A wildcard takes both subjects, in stream order.
    JsReadLimits five;
    five.max_messages = 5;
    const auto both = js->read("HISTORY", "history.*", 1, five);
    REQUIRE(both.ok());
    REQUIRE(both.value.messages.size() == 5);
    CHECK(both.value.messages[0].subject == "history.a");
    CHECK(both.value.messages[1].subject == "history.b");
    CHECK(both.value.messages[4].sequence == 5);
    CHECK(both.value.more);

    // From past the end: nothing, quickly, and no error.
    const auto t0 = std::chrono::steady_clock::now();
    const auto none = js->read("HISTORY", "history.a", previous + 1);
    CHECK(none.ok());
    CHECK(none.value.messages.empty());
    CHECK(std::chrono::steady_clock::now() - t0 < 1500ms);  // not the 2 s request timeout

    // A count limit: 3 at a time, continued from the last sequence + 1.
    std::vector<uint64_t> paged;
    uint64_t from = a_sequences[0];
    for (int round = 0; round < 10; ++round) {
      JsReadLimits limits;
      limits.max_messages = 3;
      const auto page = js->read("HISTORY", "history.a", from, limits);
      REQUIRE(page.ok());
      for (const auto& m : page.value.messages) paged.push_back(m.sequence);
      if (!page.value.more) break;
      CHECK(page.value.messages.size() == 3);
      from = page.value.messages.back().sequence + 1;
    }
    CHECK(paged == a_sequences);

    // A byte limit (subjects plus payloads: 20 bytes a message here) of 45: two messages. One
    // larger than the limit alone still comes, alone, so that a reader always progresses.
    JsReadLimits tight;
    tight.max_bytes = 45;
    const auto small = js->read("HISTORY", "history.b", 1, tight);
    REQUIRE_MESSAGE(small.ok(), small.message);
    CHECK(small.value.messages.size() == 2);
    CHECK(small.value.more);
    REQUIRE(js->publish("history.c", std::string(500, 'x')).ok());
    const auto big = js->read("HISTORY", "history.c", 1, tight);
    REQUIRE_MESSAGE(big.ok(), big.message);
    REQUIRE(big.value.messages.size() == 1);
    CHECK(big.value.messages[0].data.size() == 500);

    // One message by sequence.
    const auto one = js->get("HISTORY", a_sequences[3]);
    REQUIRE_MESSAGE(one.ok(), one.message);
    CHECK(one.value.subject == "history.a");
    CHECK(one.value.data == "history.a#3");
    CHECK(one.value.sequence == a_sequences[3]);
    CHECK(js->get("HISTORY", previous + 100).error == JsError::NotFound);

    // No consumer is left behind by the reads.
    CHECK(js->read("HISTORY", "history.a", 1).ok());
    jsCtx* raw_js = nullptr;
    natsConnection* nc = nullptr;
    REQUIRE(natsConnection_ConnectTo(&nc, server.url().c_str()) == NATS_OK);
    REQUIRE(natsConnection_JetStream(&raw_js, nc, nullptr) == NATS_OK);
    jsStreamInfo* info = nullptr;
    REQUIRE(js_GetStreamInfo(&info, raw_js, "HISTORY", nullptr, nullptr) == NATS_OK);
    CHECK(info->State.Consumers == 0);
    jsStreamInfo_Destroy(info);
    jsCtx_Destroy(raw_js);
    natsConnection_Destroy(nc);
  }

  TEST_CASE("publish_async completes on the loop thread with contiguous sequences") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto js = connect(loop, server);
    REQUIRE(js->ensure_stream(history_spec()).ok());

    const int n = 500;
    std::vector<uint64_t> sequences;
    int failures = 0;
    bool all_on_loop_thread = true;
    const auto loop_thread = std::this_thread::get_id();
    for (int i = 0; i < n; ++i) {
      const JsStatus sent =
          js->publish_async("history.async", "m" + std::to_string(i), [&](JsResult<uint64_t> r) {
            all_on_loop_thread = all_on_loop_thread && std::this_thread::get_id() == loop_thread;
            if (r.ok()) {
              sequences.push_back(r.value);
            } else {
              ++failures;
            }
          });
      REQUIRE_MESSAGE(sent.ok(), sent.message);
    }
    REQUIRE(run_until(loop, [&] { return sequences.size() + failures == n; }));
    CHECK(failures == 0);
    CHECK(all_on_loop_thread);
    std::sort(sequences.begin(), sequences.end());
    for (int i = 0; i < n; ++i) CHECK(sequences[i] == static_cast<uint64_t>(i + 1));
    CHECK(js->pending_acks() == 0);

    // Stored in publish order.
    const auto stored = js->read("HISTORY", "history.async", 1, JsReadLimits{n, 1 << 20});
    REQUIRE(stored.ok());
    REQUIRE(stored.value.messages.size() == n);
    CHECK_FALSE(stored.value.more);
    bool in_order = true;
    for (int i = 0; i < n; ++i) {
      const JsMessage& m = stored.value.messages[i];
      in_order = in_order && m.sequence == static_cast<uint64_t>(i + 1) &&
                 m.data == "m" + std::to_string(i);
    }
    CHECK(in_order);

    // 20 from 101: the first 16 by direct gets, the rest by a consumer, seamlessly.
    const auto twenty = js->read("HISTORY", "history.async", 101, JsReadLimits{20, 1 << 20});
    REQUIRE(twenty.ok());
    REQUIRE(twenty.value.messages.size() == 20);
    for (int i = 0; i < 20; ++i) CHECK(twenty.value.messages[i].sequence == 101u + i);
    CHECK(twenty.value.more);

    // A subject no stream captures: the completion says so (the server's no-responders).
    JsResult<uint64_t> lost;
    bool done = false;
    REQUIRE(js->publish_async("nowhere.x", "1", [&](JsResult<uint64_t> r) {
                lost = std::move(r);
                done = true;
              }).ok());
    REQUIRE(run_until(loop, [&] { return done; }));
    CHECK(lost.error == JsError::NoStream);
  }

  TEST_CASE("a Nats-Msg-Id is stored once within the duplicate window, anew after it") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto js = connect(loop, server);
    JsStreamSpec spec = history_spec();
    spec.duplicate_window = 800ms;
    REQUIRE(js->ensure_stream(spec).ok());

    JsPublishOptions id_a;
    id_a.msg_id = "event-a";
    const auto first = js->publish("history.a", "a1", id_a);
    REQUIRE_MESSAGE(first.ok(), first.message);
    CHECK_FALSE(first.value.duplicate);
    const auto again = js->publish("history.a", "a2", id_a);  // another payload, same id
    REQUIRE(again.ok());
    CHECK(again.value.duplicate);
    CHECK(again.value.sequence == first.value.sequence);  // the original's sequence

    // The asynchronous publish sends the header too (a natsMsg, not PublishRequest).
    std::vector<JsResult<JsPubAck>> acks;
    JsPublishOptions id_b;
    id_b.msg_id = "event-b";
    for (const auto* options : {&id_a, &id_b, &id_b}) {
      REQUIRE(js->publish_async("history.a", "x", *options, [&](JsResult<JsPubAck> r) {
                  acks.push_back(std::move(r));
                }).ok());
    }
    REQUIRE(run_until(loop, [&] { return acks.size() == 3; }));
    for (const auto& a : acks) REQUIRE_MESSAGE(a.ok(), a.message);
    CHECK(acks[0].value.duplicate);
    CHECK(acks[0].value.sequence == first.value.sequence);
    CHECK_FALSE(acks[1].value.duplicate);
    CHECK(acks[1].value.sequence == first.value.sequence + 1);
    CHECK(acks[2].value.duplicate);
    CHECK(acks[2].value.sequence == acks[1].value.sequence);

    const auto state = js->stream_state("HISTORY");
    REQUIRE(state.ok());
    CHECK(state.value.messages == 2);
    CHECK(js->get("HISTORY", first.value.sequence).value.data == "a1");  // the first copy kept

    // Deliberate wait past the 800 ms window: the id is forgotten, a copy is a new message.
    std::this_thread::sleep_for(1200ms);
    const auto late = js->publish("history.a", "a3", id_a);
    REQUIRE(late.ok());
    CHECK_FALSE(late.value.duplicate);
    CHECK(late.value.sequence == acks[1].value.sequence + 1);
  }

  TEST_CASE("subscribe_ordered: from a start sequence, in order, each once; nothing after stop") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto js = connect(loop, server);
    REQUIRE(js->ensure_stream(history_spec()).ok());
    for (int i = 1; i <= 10; ++i) REQUIRE(js->publish("history.a", std::to_string(i)).ok());

    std::mutex mu;
    std::vector<JsMessage> got;
    auto sub = js->subscribe_ordered("HISTORY", "history.a", 4, 500ms, [&](JsMessage m) {
      std::lock_guard<std::mutex> lock(mu);
      got.push_back(std::move(m));
    });
    REQUIRE_MESSAGE(sub.ok(), sub.message);
    for (int i = 11; i <= 20; ++i) REQUIRE(js->publish("history.a", std::to_string(i)).ok());
    auto count = [&] {
      std::lock_guard<std::mutex> lock(mu);
      return got.size();
    };
    REQUIRE(eventually([&] { return count() == 17; }, 5000ms));
    {
      std::lock_guard<std::mutex> lock(mu);
      for (size_t i = 0; i < got.size(); ++i) {
        CHECK(got[i].sequence == 4 + i);
        CHECK(got[i].data == std::to_string(4 + i));
        CHECK(got[i].subject == "history.a");
      }
    }
    sub.value->stop();
    REQUIRE(js->publish("history.a", "21").ok());
    // Deliberate wait: nothing may arrive after stop(), so there is no event to wait for.
    std::this_thread::sleep_for(200ms);
    CHECK(count() == 17);
    CHECK(js->subscribe_ordered("NOPE", "nope.x", 1, 500ms, [](JsMessage) {}).error ==
          JsError::NotFound);
  }

  TEST_CASE("publish_async is bounded (Busy) and times out when no ack comes") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    JetStreamOptions options;
    options.max_pending_acks = 4;
    options.ack_timeout_ms = 300;
    auto js = connect(loop, server, options);
    REQUIRE(js->ensure_stream(history_spec()).ok());

    server.freeze();  // no ack can come back
    std::vector<JsError> results;
    for (int i = 0; i < 4; ++i) {
      REQUIRE(js->publish_async("history.a", "x", [&](JsResult<uint64_t> r) {
                  results.push_back(r.error);
                }).ok());
    }
    const JsStatus busy = js->publish_async(
        "history.a", "x", [](JsResult<uint64_t>) { FAIL("a refused publish must not complete"); });
    CHECK(busy.error == JsError::Busy);
    CHECK(js->pending_acks() == 4);
    REQUIRE(run_until(
        loop, [&] { return results.size() == 4; }, 3000ms));
    for (JsError e : results) CHECK(e == JsError::Timeout);
    CHECK(js->pending_acks() == 0);
    server.thaw();
  }

  TEST_CASE("no completion runs after close(), and calls after it say Closed") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto js = connect(loop, server);
    REQUIRE(js->ensure_stream(history_spec()).ok());
    int completions = 0;
    for (int i = 0; i < 50; ++i) {
      REQUIRE(js->publish_async("history.a", "x", [&](JsResult<uint64_t>) { ++completions; }).ok());
    }
    // Let the acks arrive and be posted, but do not run them.
    REQUIRE(eventually([&] { return js->pending_acks() == 0; }, 3000ms));
    js->close();
    loop.restart();
    loop.poll();
    CHECK(completions == 0);
    CHECK(js->publish("history.a", "x").error == JsError::Closed);
    CHECK(js->publish_async("history.a", "x", [](JsResult<uint64_t>) {}).error == JsError::Closed);
  }

  TEST_CASE("acknowledged messages and KV entries survive a SIGKILL of nats-server") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    JetStreamOptions options;
    auto js = connect(loop, server, options);
    REQUIRE(js->ensure_stream(history_spec()).ok());
    JsBucketSpec bucket;
    bucket.bucket = "sessions";
    bucket.ttl = 60s;
    REQUIRE(js->ensure_bucket(bucket).ok());
    for (int i = 1; i <= 100; ++i) REQUIRE(js->publish("history.a", std::to_string(i)).ok());
    REQUIRE(js->kv_put("sessions", "pid1", "rooms").ok());

    server.kill();
    server.start();
    // The client reconnects by itself (cnats); the first calls may fail until it has.
    REQUIRE(eventually([&] { return js->probe().ok(); }, 10000ms));
    const auto state = js->stream_state("HISTORY");
    REQUIRE(state.ok());
    CHECK(state.value.messages == 100);
    const auto next = js->publish("history.a", "after");
    REQUIRE(next.ok());
    CHECK(next.value == 101);
    const auto got = js->kv_get("sessions", "pid1");
    CHECK_MESSAGE(got.ok(), got.message);
    CHECK(got.value == "rooms");
  }

  TEST_CASE("messages older than max_age expire") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto js = connect(loop, server);
    JsStreamSpec spec = history_spec();
    spec.max_age = 1s;
    REQUIRE(js->ensure_stream(spec).ok());
    const auto seq = js->publish("history.a", "short-lived");
    REQUIRE(seq.ok());
    CHECK(js->get("HISTORY", seq.value).ok());
    const auto published = std::chrono::steady_clock::now();

    // Deliberate wait: the server expires by age with no event to wait for; poll its state.
    REQUIRE(eventually(
        [&] {
          const auto state = js->stream_state("HISTORY");
          return state.ok() && state.value.messages == 0;
        },
        5000ms));
    CHECK(std::chrono::steady_clock::now() - published >= 900ms);  // not before its age
    CHECK(js->get("HISTORY", seq.value).error == JsError::NotFound);
    const auto after = js->read("HISTORY", "history.a", seq.value);
    CHECK(after.ok());
    CHECK(after.value.messages.empty());
    // The sequence goes on where it was: offsets are never reused.
    const auto next = js->publish("history.a", "later");
    REQUIRE(next.ok());
    CHECK(next.value == seq.value + 1);
  }

  TEST_CASE("key-value: put, get, delete, ensure twice, TTL expiry") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto js = connect(loop, server);
    JsBucketSpec spec;
    spec.bucket = "sessions";
    spec.ttl = 60s;
    spec.max_bytes = 1 << 20;
    REQUIRE_MESSAGE(js->ensure_bucket(spec).ok(), js->ensure_bucket(spec).message);

    CHECK(js->kv_get("sessions", "pid1").error == JsError::NotFound);
    const auto r1 = js->kv_put("sessions", "pid1", R"({"rooms":["a"]})");
    REQUIRE_MESSAGE(r1.ok(), r1.message);
    const auto r2 = js->kv_put("sessions", "pid1", R"({"rooms":["a","b"]})");
    REQUIRE(r2.ok());
    CHECK(r2.value > r1.value);
    const auto got = js->kv_get("sessions", "pid1");
    REQUIRE(got.ok());
    CHECK(got.value == R"({"rooms":["a","b"]})");
    REQUIRE(js->kv_delete("sessions", "pid1").ok());
    CHECK(js->kv_get("sessions", "pid1").error == JsError::NotFound);
    CHECK(js->kv_get("other", "pid1").error == JsError::NotFound);  // never ensured

    // Ensure again: same limits, then a shorter TTL (an update of the bucket's stream).
    REQUIRE(js->ensure_bucket(spec).ok());
    REQUIRE(js->kv_put("sessions", "kept", "1").ok());
    spec.ttl = 1s;
    const JsStatus shorter = js->ensure_bucket(spec);
    REQUIRE_MESSAGE(shorter.ok(), shorter.message);
    CHECK(js->kv_get("sessions", "kept").ok());

    REQUIRE(js->kv_put("sessions", "pid2", "x").ok());
    const auto put_at = std::chrono::steady_clock::now();
    CHECK(js->kv_get("sessions", "pid2").ok());
    // Deliberate wait: the bucket's TTL (1 s) expires entries on the server; poll.
    REQUIRE(eventually([&] { return js->kv_get("sessions", "pid2").error == JsError::NotFound; },
                       5000ms));
    CHECK(std::chrono::steady_clock::now() - put_at >= 900ms);
    CHECK(js->kv_get("sessions", "kept").error == JsError::NotFound);
    REQUIRE(js->delete_bucket("sessions").ok());

    JsBucketSpec bad;
    bad.bucket = "bad.name";
    const JsStatus refused = js->ensure_bucket(bad);
    CHECK(refused.error == JsError::Rejected);
    CHECK(refused.message.find("A-Z a-z 0-9 _ -") != std::string::npos);
  }

  TEST_CASE("key-value: conditional update and delete on the revision; scan in revision order") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto a = connect(loop, server);
    auto b = connect(loop, server);  // a second process racing for the same keys
    JsBucketSpec spec;
    spec.bucket = "sessions";
    spec.ttl = 60s;
    REQUIRE(a->ensure_bucket(spec).ok());
    REQUIRE(b->ensure_bucket(spec).ok());

    const auto r1 = a->kv_put("sessions", "k1", "v1");
    REQUIRE(r1.ok());
    const auto seen = b->kv_entry("sessions", "k1");
    REQUIRE_MESSAGE(seen.ok(), seen.message);
    CHECK(seen.value.value == "v1");
    CHECK(seen.value.revision == r1.value);

    // Both update from the same revision: the first wins, the second gets Conflict.
    const auto won = a->kv_update("sessions", "k1", "v2", r1.value);
    REQUIRE_MESSAGE(won.ok(), won.message);
    CHECK(won.value > r1.value);
    const auto lost = b->kv_update("sessions", "k1", "v3", r1.value);
    CHECK(lost.error == JsError::Conflict);
    CHECK(a->kv_get("sessions", "k1").value == "v2");

    // A delete from a stale revision is refused; from the current one it deletes.
    CHECK(b->kv_delete_if("sessions", "k1", r1.value).error == JsError::Conflict);
    REQUIRE(b->kv_delete_if("sessions", "k1", won.value).ok());
    CHECK(a->kv_entry("sessions", "k1").error == JsError::NotFound);
    // Deleted: an update from the last value's revision does not bring it back.
    CHECK(a->kv_update("sessions", "k1", "v4", won.value).error == JsError::Conflict);
    CHECK(a->kv_entry("sessions", "k1").error == JsError::NotFound);
    CHECK(a->kv_update("sessions", "k1", "v4", 0).error == JsError::Rejected);
    CHECK(a->kv_delete_if("other", "k1", 1).error == JsError::NotFound);

    // Scan: one message per key (the latest), a deleted key as a marker with empty data.
    REQUIRE(a->kv_put("sessions", "k2", "x2").ok());
    REQUIRE(a->kv_put("sessions", "k3", "x3").ok());
    REQUIRE(a->kv_put("sessions", "k2", "y2").ok());
    JsReadLimits two;
    two.max_messages = 2;
    const auto first = a->kv_scan("sessions", 1, two);
    REQUIRE_MESSAGE(first.ok(), first.message);
    REQUIRE(first.value.messages.size() == 2);
    CHECK(first.value.more);
    CHECK(first.value.messages[0].subject == "$KV.sessions.k1");
    CHECK(first.value.messages[0].data.empty());
    CHECK(first.value.messages[1].subject == "$KV.sessions.k3");
    const auto rest = a->kv_scan("sessions", first.value.messages[1].sequence + 1, two);
    REQUIRE(rest.ok());
    REQUIRE(rest.value.messages.size() == 1);
    CHECK(rest.value.messages[0].subject == "$KV.sessions.k2");
    CHECK(rest.value.messages[0].data == "y2");
    CHECK_FALSE(rest.value.more);
  }

  TEST_CASE("attach uses the caller's connection and leaves it open") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    natsConnection* nc = nullptr;
    REQUIRE(natsConnection_ConnectTo(&nc, server.url().c_str()) == NATS_OK);
    {
      auto made = JetStream::attach(loop, nc, {});
      REQUIRE(made.ok());
      REQUIRE(made.value->ensure_stream(history_spec()).ok());
      CHECK(made.value->publish("history.a", "1").value == 1);
      bool done = false;
      REQUIRE(made.value
                  ->publish_async("history.a", "2",
                                  [&](JsResult<uint64_t> r) {
                                    CHECK(r.value == 2);
                                    done = true;
                                  })
                  .ok());
      REQUIRE(run_until(loop, [&] { return done; }));
    }
    CHECK(natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED);
    natsConnection_Destroy(nc);
  }
}

// What docs/jetstream-notes.md says of the cnats calls the wrapper does not use, checked
// against the same server: they work, and why they were not chosen is written there.
TEST_SUITE("jetstream cnats facts") {
  struct AsyncAcks {
    std::mutex mu;
    std::vector<uint64_t> sequences;
  };

  void on_async_ack(jsCtx*, natsMsg * msg, jsPubAck * pa, jsPubAckErr*, void* closure) {
    auto* acks = static_cast<AsyncAcks*>(closure);
    if (pa != nullptr) {
      std::lock_guard<std::mutex> lock(acks->mu);
      acks->sequences.push_back(pa->Sequence);
    }
    natsMsg_Destroy(msg);  // the handler owns the message
  }

  TEST_CASE("js_PublishAsync: one AckHandler per context, acks carry the sequence") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto js = connect(loop, server);
    REQUIRE(js->ensure_stream(history_spec()).ok());

    natsConnection* nc = nullptr;
    REQUIRE(natsConnection_ConnectTo(&nc, server.url().c_str()) == NATS_OK);
    AsyncAcks acks;
    jsOptions options;
    jsOptions_Init(&options);
    options.PublishAsync.AckHandler = &on_async_ack;
    options.PublishAsync.AckHandlerClosure = &acks;
    options.PublishAsync.MaxPending = 100;
    jsCtx* raw = nullptr;
    REQUIRE(natsConnection_JetStream(&raw, nc, &options) == NATS_OK);
    for (int i = 0; i < 10; ++i)
      REQUIRE(js_PublishAsync(raw, "history.a", "x", 1, nullptr) == NATS_OK);
    jsPubOptions wait;
    jsPubOptions_Init(&wait);
    wait.MaxWait = 2000;
    REQUIRE(js_PublishAsyncComplete(raw, &wait) == NATS_OK);
    {
      std::lock_guard<std::mutex> lock(acks.mu);
      std::sort(acks.sequences.begin(), acks.sequences.end());
      CHECK(acks.sequences == std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
    }
    jsCtx_Destroy(raw);
    natsConnection_Destroy(nc);
  }

  TEST_CASE("an ordered push consumer from a start sequence, filtered on one subject") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    auto js = connect(loop, server);
    REQUIRE(js->ensure_stream(history_spec()).ok());
    for (int i = 1; i <= 6; ++i) REQUIRE(js->publish(i % 2 ? "history.a" : "history.b", "x").ok());

    natsConnection* nc = nullptr;
    REQUIRE(natsConnection_ConnectTo(&nc, server.url().c_str()) == NATS_OK);
    jsCtx* raw = nullptr;
    REQUIRE(natsConnection_JetStream(&raw, nc, nullptr) == NATS_OK);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = "HISTORY";
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = 2;
    natsSubscription* sub = nullptr;
    REQUIRE(js_SubscribeSync(&sub, raw, "history.a", nullptr, &so, nullptr) == NATS_OK);
    std::vector<uint64_t> got;
    uint64_t pending = 1;
    while (pending > 0) {
      natsMsg* msg = nullptr;
      REQUIRE(natsSubscription_NextMsg(&msg, sub, 2000) == NATS_OK);
      jsMsgMetaData* meta = nullptr;
      REQUIRE(natsMsg_GetMetaData(&meta, msg) == NATS_OK);
      got.push_back(meta->Sequence.Stream);
      pending = meta->NumPending;  // how the reader knows it has caught up
      jsMsgMetaData_Destroy(meta);
      natsMsg_Destroy(msg);
    }
    CHECK(got == std::vector<uint64_t>{3, 5});
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(raw);
    natsConnection_Destroy(nc);
  }
}
