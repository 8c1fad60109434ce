#include "transport/memory_transporter.hpp"

#include <doctest/doctest.h>

#include <asio/io_context.hpp>
#include <string>
#include <utility>
#include <vector>

using steedos::transport::MemoryBus;
using steedos::transport::MemoryTransporter;
using steedos::transport::nats_subject_matches;
using steedos::transport::TransporterHandlers;

namespace {

/// A transporter connected to `bus` that records what it receives.
struct Node {
  explicit Node(MemoryBus& bus) : transporter(bus) {}

  void connect() {
    TransporterHandlers h;
    h.on_message = [this](const std::string& subject, std::string_view data) {
      received.emplace_back(subject, std::string(data));
    };
    h.on_disconnected = [this] { ++disconnects; };
    h.on_reconnected = [this] { ++reconnects; };
    h.on_closed = [this] { ++closes; };
    transporter.connect(std::move(h));
  }

  MemoryTransporter transporter;
  std::vector<std::pair<std::string, std::string>> received;
  int disconnects = 0;
  int reconnects = 0;
  int closes = 0;
};

/// Runs what is queued. poll() leaves an io_context that ran out of work stopped, so restart.
void drain(asio::io_context& loop) {
  loop.restart();
  loop.poll();
}

}  // namespace

TEST_SUITE("memory_transporter") {
  TEST_CASE("nats_subject_matches follows NATS wildcard rules") {
    struct Row {
      const char* pattern;
      const char* subject;
      bool matches;
    };
    const Row rows[] = {
        {"MOL.INFO", "MOL.INFO", true},
        {"MOL.INFO", "MOL.INFO.node-1", false},
        {"MOL.INFO.node-1", "MOL.INFO", false},
        {"MOL.INFO", "MOL.INFOX", false},
        {"MOL.*", "MOL.INFO", true},
        {"MOL.*", "MOL.INFO.node-1", false},
        {"MOL.*", "MOL", false},
        {"*.INFO.*", "MOL.INFO.node-1", true},
        {"*.INFO.*", "MOL.REQ.node-1", false},
        {"MOL.>", "MOL.INFO", true},
        {"MOL.>", "MOL.INFO.node-1", true},
        {"MOL.>", "MOL", false},  // `>` needs at least one token
        {">", "MOL.INFO", true},
        {"MOL.EVENTB.objects.*.*", "MOL.EVENTB.objects.a.b", true},
        {"MOL.EVENTB.objects.*.*", "MOL.EVENTB.objects.a", false},
        {"MOL.*.>", "MOL.REQB.greeter.hello", true},
        {"MOL.>.x", "MOL.a.x", false},      // `>` must be the last token
        {"MOL.user*", "MOL.users", false},  // partial-token wildcard is literal
        {"MOL.user*", "MOL.user*", true},
        {"MOL..INFO", "MOL..INFO", false},  // empty tokens are invalid
        {"MOL.INFO", "", false},
        {"", "", false},
    };
    for (const auto& row : rows) {
      CAPTURE(row.pattern);
      CAPTURE(row.subject);
      CHECK(nats_subject_matches(row.pattern, row.subject) == row.matches);
    }
  }

  TEST_CASE("delivery is asynchronous and reaches every matching plain subscriber") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node a(bus), b(bus), c(bus);
    a.connect();
    b.connect();
    c.connect();
    a.transporter.subscribe("MOL.INFO");
    b.transporter.subscribe("MOL.*");
    c.transporter.subscribe("MOL.REQ.c");

    CHECK(a.transporter.publish("MOL.INFO", "hello"));
    REQUIRE(bus.published.size() == 1);
    CHECK(bus.published[0] == std::make_pair(std::string("MOL.INFO"), std::string("hello")));
    CHECK(a.received.empty());  // nothing before the loop runs
    CHECK(b.received.empty());

    drain(loop);
    REQUIRE(a.received.size() == 1);  // the publisher gets its own message (NATS echo)
    CHECK(a.received[0].second == "hello");
    REQUIRE(b.received.size() == 1);
    CHECK(b.received[0].first == "MOL.INFO");
    CHECK(c.received.empty());
  }

  TEST_CASE("subscribing twice is a no-op; order is preserved") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node a(bus);
    a.connect();
    a.transporter.subscribe("x");
    a.transporter.subscribe("x");
    for (int i = 0; i < 5; ++i) a.transporter.publish("x", std::to_string(i));
    drain(loop);
    REQUIRE(a.received.size() == 5);
    for (int i = 0; i < 5; ++i) CHECK(a.received[size_t(i)].second == std::to_string(i));
  }

  TEST_CASE("a queue group delivers to exactly one member, plain subscribers get everything") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node m1(bus), m2(bus), plain(bus), sender(bus);
    for (Node* n : {&m1, &m2, &plain, &sender}) n->connect();
    m1.transporter.subscribe("MOL.REQB.greeter.hello", "greeter.hello");
    m2.transporter.subscribe("MOL.REQB.greeter.hello", "greeter.hello");
    plain.transporter.subscribe("MOL.REQB.>");

    constexpr int kCount = 10;
    for (int i = 0; i < kCount; ++i) sender.transporter.publish("MOL.REQB.greeter.hello", "r");
    drain(loop);
    CHECK(m1.received.size() + m2.received.size() == kCount);
    CHECK(m1.received.size() > 0);  // round robin spreads the load
    CHECK(m2.received.size() > 0);
    CHECK(plain.received.size() == kCount);
    CHECK(sender.received.empty());
  }

  TEST_CASE("unsubscribe stops delivery, also of messages already queued") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node a(bus), b(bus);
    a.connect();
    b.connect();
    a.transporter.subscribe("q", "group");
    a.transporter.subscribe("x");
    b.transporter.publish("x", "queued");
    a.transporter.unsubscribe("x");
    a.transporter.unsubscribe("never-subscribed");
    b.transporter.publish("x", "later");
    drain(loop);
    CHECK(a.received.empty());

    a.transporter.unsubscribe("q");  // wrong queue: the group subscription stays
    b.transporter.publish("q", "1");
    a.transporter.unsubscribe("q", "group");
    b.transporter.publish("q", "2");
    drain(loop);
    CHECK(a.received.empty());  // "1" was queued, then dropped by the unsubscribe
  }

  TEST_CASE("disconnect and reconnect") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node a(bus), b(bus);
    a.connect();
    b.connect();
    a.transporter.subscribe("x");
    CHECK(a.transporter.connected());

    a.transporter.simulate_disconnect();
    CHECK_FALSE(a.transporter.connected());
    CHECK(a.disconnects == 0);  // posted, not synchronous
    CHECK_FALSE(a.transporter.publish("x", "from a"));
    CHECK(b.transporter.publish("x", "lost"));
    drain(loop);
    CHECK(a.disconnects == 1);
    CHECK(a.received.empty());
    CHECK(bus.published.size() == 1);  // the refused publish is not on the wire

    a.transporter.simulate_reconnect();
    CHECK(a.transporter.connected());
    b.transporter.publish("x", "after");
    drain(loop);
    CHECK(a.reconnects == 1);
    REQUIRE(a.received.size() == 1);  // the subscription survived the outage
    CHECK(a.received[0].second == "after");
  }

  TEST_CASE("stats count what was published and handed over, payload bytes, reconnections") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node a(bus), b(bus);
    CHECK_FALSE(a.transporter.stats().connected);
    a.connect();
    b.connect();
    a.transporter.subscribe("x");
    const std::vector<std::string> payloads{"", "1", std::string(1000, 'p'), "{\"a\":1}"};
    for (const auto& p : payloads) CHECK(b.transporter.publish("x", p));
    CHECK(b.transporter.publish("nobody.listens", "12345"));  // sent, received by no one
    drain(loop);
    REQUIRE(a.received.size() == payloads.size());
    const auto sent = b.transporter.stats();
    CHECK(sent.connected);
    CHECK(sent.messages_sent == 5);
    CHECK(sent.bytes_sent == 0 + 1 + 1000 + 7 + 5);
    CHECK(sent.messages_received == 0);
    CHECK(sent.bytes_received == 0);
    const auto received = a.transporter.stats();
    CHECK(received.messages_received == 4);
    CHECK(received.bytes_received == 0 + 1 + 1000 + 7);
    CHECK(received.messages_sent == 0);
    CHECK(received.reconnects == 0);

    // A refused publish is not counted; a reconnection is, once.
    a.transporter.simulate_disconnect();
    CHECK_FALSE(a.transporter.stats().connected);
    CHECK_FALSE(a.transporter.publish("x", "refused"));
    CHECK(a.transporter.stats().messages_sent == 0);
    a.transporter.simulate_reconnect();
    drain(loop);
    CHECK(a.transporter.stats().reconnects == 1);
    CHECK(a.transporter.stats().connected);
  }

  TEST_CASE("a queue member that is offline is skipped") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node m1(bus), m2(bus);
    m1.connect();
    m2.connect();
    m1.transporter.subscribe("w", "g");
    m2.transporter.subscribe("w", "g");
    m1.transporter.simulate_disconnect();
    for (int i = 0; i < 4; ++i) m2.transporter.publish("w", "job");
    drain(loop);
    CHECK(m1.received.empty());
    CHECK(m2.received.size() == 4);
  }

  TEST_CASE("no handler runs after close or destruction") {
    asio::io_context loop;
    MemoryBus bus(loop);
    Node a(bus), b(bus);
    a.connect();
    b.connect();
    a.transporter.subscribe("x");
    b.transporter.publish("x", "queued");
    a.transporter.simulate_disconnect();
    a.transporter.close();
    CHECK_FALSE(a.transporter.connected());
    CHECK_FALSE(a.transporter.publish("x", "closed"));
    b.transporter.publish("x", "after close");
    drain(loop);
    CHECK(a.received.empty());
    CHECK(a.disconnects == 0);
    CHECK(a.closes == 0);

    {
      Node gone(bus);
      gone.connect();
      gone.transporter.subscribe("x");
      b.transporter.publish("x", "queued for gone");
      gone.transporter.simulate_reconnect();
    }  // destroyed with a message and a reconnect posted
    b.transporter.subscribe("x");
    b.transporter.publish("x", "still works");
    drain(loop);
    REQUIRE(b.received.size() == 1);
    CHECK(b.received[0].second == "still works");
  }
}
