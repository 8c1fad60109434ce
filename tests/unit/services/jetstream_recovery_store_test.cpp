// services/jetstream_recovery_store.hpp against a real `nats-server -js`: two "nodes" (two
// histories, two session buckets clients, two stores) share one server, as two gateways share
// their cluster's NATS. A socket connected on one node that dies is restored on the other with
// exactly the events its id and rooms would have received, in order, under the offsets both
// nodes use; a session restores once; expiry is reported once cluster-wide; drops reach kept
// sessions of every node; offsets that are not stream sequences are refused.
#include "services/jetstream_recovery_store.hpp"

#include <doctest/doctest.h>

#include <asio/executor_work_guard.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/support/nats_server.hpp"
#include "tests/unit/support/run_loop.hpp"

using namespace steedos::services;
using steedos::Json;
using steedos::gateway::KeptSession;
using steedos::gateway::MessagePart;
using steedos::gateway::OutgoingPacket;
using steedos::gateway::RestoredSession;
using steedos::testing::NatsServer;
using steedos::testing::run_until;
using steedos::testing::with_jetstream;
using namespace std::chrono_literals;

namespace {

/// The packet a socket gets: the event's name and arguments, with the offset given.
steedos::gateway::OutgoingPacketPtr encode_packet(const HistoryEvent& event, std::string offset) {
  return OutgoingPacket::messages({MessagePart{false, event.name + event.args_json}},
                                  std::move(offset));
}

/// One gateway's recovery parts: its history consumer, its sessions client and its store.
struct Node {
  Node(asio::io_context& loop, const NatsServer& server, const std::string& id,
       std::chrono::milliseconds duration, std::unordered_set<std::string>* alive) {
    ClusterSessionsOptions s;
    s.urls = server.url();
    s.node_id = id;
    s.max_disconnection_duration = duration;
    s.request_timeout_ms = 2000;
    sessions = std::make_unique<ClusterSessions>(loop, s);
    const auto opened = sessions->open();
    REQUIRE_MESSAGE(opened.ok(), opened.message);
    ClusterHistoryOptions h;
    h.url = server.url();
    h.max_age = 60s;
    h.request_timeout_ms = 2000;
    h.heartbeat = 500ms;
    history = std::make_unique<ClusterHistory>(loop, h);
    // Each event delivered is sent and recorded as the gateway does (send_to / send_all).
    const auto started = history->start([this](uint64_t sequence, const HistoryEvent& event) {
      ++delivered;
      steedos::gateway::PacketTarget target;
      target.all = event.all;
      target.rooms = event.rooms;
      const std::string offset = offset_of_sequence(sequence);
      store->record(offset, target, encode_packet(event, offset));
    });
    REQUIRE_MESSAGE(started.ok(), started.message);
    JetStreamRecoveryOptions options;
    options.max_disconnection_duration = duration;
    options.catch_up_wait = 300ms;
    store = std::make_unique<JetStreamRecoveryStore>(loop, *history, *sessions, options,
                                                     &encode_packet, [alive] { return *alive; });
  }
  ~Node() {
    store.reset();
    history->stop();
  }
  std::unique_ptr<ClusterSessions> sessions;
  std::unique_ptr<ClusterHistory> history;
  std::unique_ptr<JetStreamRecoveryStore> store;
  size_t delivered = 0;
};

KeptSession socket_of(const std::string& sid, const std::string& pid,
                      std::vector<std::string> rooms) {
  KeptSession s;
  s.nsp = "/";
  s.sid = sid;
  s.pid = pid;
  s.rooms = std::move(rooms);
  s.app_data = Json{{"userId", "u1"}};
  return s;
}

HistoryEvent event_to(const std::string& id, std::vector<std::string> rooms) {
  HistoryEvent e;
  e.id = id;
  e.name = "ev";
  e.args_json = R"([")" + id + R"("])";
  e.all = rooms.empty();
  e.rooms = std::move(rooms);
  return e;
}

std::optional<RestoredSession> take(asio::io_context& loop, Node& node, const std::string& pid,
                                    const std::string& offset) {
  bool done = false;
  std::optional<RestoredSession> out;
  node.store->take(pid, offset, [&](std::optional<RestoredSession> r) {
    out = std::move(r);
    done = true;
  });
  REQUIRE(run_until(loop, [&] { return done; }));
  return out;
}

/// Waits until what was written so far is in the bucket.
void flushed(asio::io_context& loop, Node& node) {
  bool done = false;
  node.store->flush([&] { done = true; });
  REQUIRE(run_until(loop, [&] { return done; }));
}

std::vector<std::string> texts_of(const RestoredSession& restored) {
  std::vector<std::string> out;
  for (const auto& packet : restored.missed) {
    out.push_back(packet->offset() + " " + packet->polling_payload().substr(1));  // "4"+data
  }
  return out;
}

}  // namespace

TEST_SUITE("jetstream recovery store") {
  TEST_CASE("offsets are decimal stream sequences; anything else is no offset of this store") {
    CHECK(offset_of_sequence(42) == "42");
    CHECK(sequence_of_offset("42") == 42u);
    CHECK(sequence_of_offset("0") == 0u);
    CHECK(sequence_of_offset("18446744073709551615") == UINT64_MAX);
    CHECK_FALSE(sequence_of_offset("18446744073709551616"));
    CHECK_FALSE(sequence_of_offset(""));
    CHECK_FALSE(sequence_of_offset("-1"));
    CHECK_FALSE(sequence_of_offset("1a"));
    CHECK_FALSE(sequence_of_offset("Xk3-00000001"));  // a memory store's offset
  }

  TEST_CASE(
      "a socket of a node that died restores on another with exactly what it missed, from the "
      "stream (before that node started) and from what it sent itself") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    std::unordered_set<std::string> alive{"a", "b"};
    Node a(loop, server, "a", 5000ms, &alive);

    // Connected on a, in room r1, never disconnected there (a SIGKILL keeps nothing).
    a.store->connected(socket_of("S1", "P1", {"r1"}));
    a.store->rooms_changed("P1", {"r1", "r3"});
    flushed(loop, a);
    // Events to its room, to another room, to all, to its own id, to a room it joined later.
    for (const auto& e :
         {event_to("e1", {"r1"}), event_to("e2", {"r2"}), event_to("e3", {}),
          event_to("e4", {"S1"}), event_to("e5", {"r3"}), event_to("e6", {"r2", "r1"})}) {
      REQUIRE(a.history->publish(e).ok());
    }
    REQUIRE(run_until(loop, [&] { return a.delivered == 6; }));
    const uint64_t first = a.history->last_delivered() - 5;  // e1's sequence
    // b starts now (a restart, a new node): those six it reads from the stream; e7 it sends.
    Node b(loop, server, "b", 5000ms, &alive);
    REQUIRE(a.history->publish(event_to("e7", {"r1"})).ok());
    REQUIRE(run_until(loop, [&] { return a.delivered == 7 && b.delivered == 1; }));
    CHECK(a.history->last_delivered() == b.history->last_delivered());
    CHECK(b.store->packet_count() == 1);
    alive.erase("a");

    // Its client saw e1 and presents that offset to b.
    auto restored = take(loop, b, "P1", offset_of_sequence(first));
    REQUIRE(restored);
    CHECK(restored->session.sid == "S1");
    CHECK(restored->session.rooms == std::vector<std::string>{"r1", "r3"});
    CHECK(restored->session.app_data == Json{{"userId", "u1"}});
    const auto seq = [&](uint64_t k) { return std::to_string(first + k); };
    CHECK(texts_of(*restored) ==
          std::vector<std::string>{seq(2) + R"( ev["e3"])", seq(3) + R"( ev["e4"])",
                                   seq(4) + R"( ev["e5"])", seq(5) + R"( ev["e6"])",
                                   seq(6) + R"( ev["e7"])"});
    // Once: neither node restores it again.
    CHECK_FALSE(take(loop, a, "P1", offset_of_sequence(first)));
    CHECK_FALSE(take(loop, b, "P1", offset_of_sequence(first)));
    CHECK(b.store->counts().unknown == 1);
  }

  TEST_CASE("a kept session restores anywhere; its client's offset may be ahead of the node") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    std::unordered_set<std::string> alive{"a", "b"};
    Node a(loop, server, "a", 5000ms, &alive);
    Node b(loop, server, "b", 5000ms, &alive);
    a.store->connected(socket_of("S2", "P2", {"r1"}));
    REQUIRE(a.history->publish(event_to("k1", {"r1"})).ok());
    REQUIRE(run_until(loop, [&] { return a.delivered == 1 && b.delivered == 1; }));
    const uint64_t seen = a.history->last_delivered();
    a.store->keep(socket_of("S2", "P2", {"r1"}));
    flushed(loop, a);
    CHECK(a.store->counts().kept == 1);
    REQUIRE(a.history->publish(event_to("k2", {"r1"})).ok());
    REQUIRE(a.history->publish(event_to("k3", {"r9"})).ok());
    REQUIRE(run_until(loop, [&] { return a.delivered == 3 && b.delivered == 3; }));
    auto restored = take(loop, b, "P2", offset_of_sequence(seen));
    REQUIRE(restored);
    CHECK(texts_of(*restored) ==
          std::vector<std::string>{std::to_string(seen + 1) + R"( ev["k2"])"});

    // An offset this node's history has not reached (and never will): given up after
    // catch_up_wait, and reported as expired at the next sweep so services can fall back.
    b.store->connected(socket_of("S3", "P3", {}));
    flushed(loop, b);
    CHECK_FALSE(take(loop, a, "P3", offset_of_sequence(seen + 1000)));
    std::vector<std::string> expired;
    a.store->sweep(std::chrono::steady_clock::now(),
                   [&](const KeptSession& s) { expired.push_back(s.sid); });
    CHECK(expired == std::vector<std::string>{"S3"});
    // Unknown pids and foreign offsets: nothing, counted.
    CHECK_FALSE(take(loop, a, "nope", "1"));
    CHECK_FALSE(take(loop, a, "P2", "Xk3-1"));
  }

  TEST_CASE("expiry is reported once cluster-wide; drops reach kept sessions only") {
    SKIP_WITHOUT_NATS_SERVER();
    NatsServer server(with_jetstream());
    asio::io_context loop;
    std::unordered_set<std::string> alive{"a", "b"};
    Node a(loop, server, "a", 300ms, &alive);
    Node b(loop, server, "b", 300ms, &alive);
    for (const char* pid : {"K1", "K2", "C1"}) {
      a.store->connected(socket_of(std::string("S") + pid, pid, {}));
    }
    a.store->keep(socket_of("SK1", "K1", {}));
    a.store->keep(socket_of("SK2", "K2", {}));
    flushed(loop, a);
    // A drop of every kept session from b: K1 and K2 go, the connected C1 stays.
    std::optional<size_t> dropped;  // answered once b's scan of the bucket ended
    b.store->drop_if([](const KeptSession& s) { return s.sid == "SK1"; },
                     [&](size_t n) { dropped = n; });
    REQUIRE(run_until(loop, [&] { return dropped.has_value(); }));
    CHECK(*dropped == 1);
    CHECK(b.store->counts().dropped == 1);
    std::this_thread::sleep_for(350ms);  // deliberate: past maxDisconnectionDuration
    std::vector<std::string> expired;
    auto collect = [&](const KeptSession& s) { expired.push_back(s.sid); };
    for (int round = 0; round < 3; ++round) {
      a.store->sweep(std::chrono::steady_clock::now(), collect);
      b.store->sweep(std::chrono::steady_clock::now(), collect);
      run_until(
          loop, [] { return false; }, 200ms);
    }
    CHECK(expired == std::vector<std::string>{"SK2"});
    // The connected record is still there: its client restores it from b.
    auto restored = take(loop, b, "C1", "0");
    REQUIRE(restored);
    CHECK(restored->session.sid == "SC1");
  }
}
