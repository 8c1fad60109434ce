// Test that header file is self-contained.
#include "gateway/memory_recovery_store.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

using namespace steedos::gateway;
using steedos::Json;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

RecoveryOptions make_options(size_t max_sessions = 100, size_t max_packets = 100) {
  RecoveryOptions options;
  options.enabled = true;
  options.max_disconnection_duration_ms = 1000;
  options.max_sessions = max_sessions;
  options.max_packets = max_packets;
  return options;
}

/// A store on a clock the test moves.
struct StoreFixture {
  explicit StoreFixture(RecoveryOptions options = make_options()) {
    store.emplace(options, [this] { return now; });
  }

  /// Records a packet whose text is `name` under a fresh offset; returns the offset.
  std::string record(const std::string& name, PacketTarget target) {
    std::string offset = store->next_offset();
    record_as(offset, name, std::move(target));
    return offset;
  }
  void record_as(const std::string& offset, const std::string& name, PacketTarget target) {
    store->record(offset, std::move(target), OutgoingPacket::messages({{false, name}}, offset));
  }
  void keep(const std::string& sid, const std::string& pid, std::vector<std::string> rooms,
            std::string nsp = "/") {
    KeptSession session;
    session.nsp = std::move(nsp);
    session.sid = sid;
    session.pid = pid;
    session.rooms = std::move(rooms);
    session.app_data = {{"user", "u-" + sid}};
    session.disconnected_at = now;
    store->keep(std::move(session));
  }
  /// take() with its synchronous answer.
  std::optional<RestoredSession> take(const std::string& pid, const std::string& offset) {
    std::optional<RestoredSession> result;
    bool called = false;
    store->take(pid, offset, [&](std::optional<RestoredSession> restored) {
      called = true;
      result = std::move(restored);
    });
    REQUIRE(called);
    return result;
  }
  static std::vector<std::string> names(const RestoredSession& restored) {
    std::vector<std::string> out;
    for (const auto& packet : restored.missed) out.push_back(packet->polling_payload().substr(1));
    return out;
  }

  Clock::time_point now = Clock::now();
  std::optional<MemoryRecoveryStore> store;
};

PacketTarget to_rooms(std::vector<std::string> rooms, std::string except_id = {},
                      std::vector<std::string> except_rooms = {}) {
  return PacketTarget{false, std::move(rooms), std::move(except_id), std::move(except_rooms)};
}
PacketTarget to_all(std::string except_id = {}) {
  return PacketTarget{true, {}, except_id, {}};
}

}  // namespace

TEST_SUITE("memory_recovery_store") {
  TEST_CASE("offsets: unique, increasing, with a per-store prefix another store never accepts") {
    StoreFixture a;
    StoreFixture b;
    CHECK(a.store->offset_prefix() != b.store->offset_prefix());
    std::vector<std::string> offsets;
    for (int i = 0; i < 300; ++i) offsets.push_back(a.store->next_offset());
    for (size_t i = 1; i < offsets.size(); ++i) CHECK(offsets[i] != offsets[i - 1]);
    for (const auto& offset : offsets) {
      CHECK(offset.rfind(a.store->offset_prefix(), 0) == 0);
      CHECK(offset.size() <= 15);  // std::string's inline capacity: no heap block per packet
    }
    // An offset of store `a` presented to store `b` (another process, or a restart).
    const std::string first = a.record("p1", to_all());
    a.record("p2", to_all());
    b.record("q1", to_all());
    b.keep("sid-1", "pid-1", {});
    CHECK_FALSE(b.take("pid-1", first).has_value());
    CHECK(b.store->counts().unknown == 1);
    // Garbage offsets are not found either (and do not throw).
    a.keep("sid-2", "pid-2", {});
    CHECK_FALSE(a.take("pid-2", a.store->offset_prefix() + "zz").has_value());
    a.keep("sid-3", "pid-3", {});
    CHECK_FALSE(a.take("pid-3", a.store->offset_prefix() + "11111111111111111").has_value());
    a.keep("sid-4", "pid-4", {});
    CHECK_FALSE(a.take("pid-4", "").has_value());
  }

  TEST_CASE("take: the packets after the offset the session would have received, in order") {
    StoreFixture f;
    const std::string seen = f.record("before", to_all());
    f.keep("sid-A", "pid-A", {"room1", "room2"});
    f.record("all", to_all());
    f.record("room1", to_rooms({"room1"}));
    f.record("other-room", to_rooms({"room9"}));
    f.record("own-id", to_rooms({"sid-A"}));
    f.record("other-socket", to_rooms({"sid-B"}));
    f.record("all-but-A", to_all("sid-A"));
    f.record("room2-but-A", to_rooms({"room2"}, "sid-A"));
    f.record("room1-except-room2", to_rooms({"room1"}, "", {"room2"}));
    f.record("room1-except-room9", to_rooms({"room1"}, "", {"room9"}));
    f.record("room9-or-room2", to_rooms({"room9", "room2"}));
    CHECK(f.store->session_count() == 1);
    auto restored = f.take("pid-A", seen);
    REQUIRE(restored.has_value());
    CHECK(restored->session.sid == "sid-A");
    CHECK(restored->session.pid == "pid-A");
    CHECK(restored->session.rooms == std::vector<std::string>{"room1", "room2"});
    CHECK(restored->session.app_data.at("user") == "u-sid-A");
    CHECK(StoreFixture::names(*restored) == std::vector<std::string>{"all", "room1", "own-id",
                                                                     "room1-except-room9",
                                                                     "room9-or-room2"});
    // A pid restores once.
    CHECK(f.store->session_count() == 0);
    CHECK_FALSE(f.take("pid-A", seen).has_value());
  }

  TEST_CASE("take: the last packet seen is the newest one: nothing missed") {
    StoreFixture f;
    f.record("one", to_all());
    const std::string last = f.record("two", to_all());
    f.keep("sid-A", "pid-A", {});
    auto restored = f.take("pid-A", last);
    REQUIRE(restored.has_value());
    CHECK(restored->missed.empty());
  }

  TEST_CASE("a packet sent again to other rooms is one entry, replayed once, at its first place") {
    StoreFixture f;
    const std::string seen = f.record("seen", to_all());
    f.keep("sid-A", "pid-A", {"r1", "r2"});
    const std::string twice = f.record("twice", to_rooms({"r1"}));
    f.record("between", to_rooms({"r2"}));
    f.record_as(twice, "twice", to_rooms({"r2"}));
    CHECK(f.store->packet_count() == 3);
    auto restored = f.take("pid-A", seen);
    REQUIRE(restored.has_value());
    CHECK(StoreFixture::names(*restored) == std::vector<std::string>{"twice", "between"});

    // Bounded: one packet sent to socket after socket collects at most kMaxTargetsPerPacket.
    const std::string many = f.record("many", to_rooms({"s0"}));
    const size_t sends = MemoryRecoveryStore::kMaxTargetsPerPacket + 10;
    for (size_t i = 1; i < sends; ++i)
      f.record_as(many, "many", to_rooms({"s" + std::to_string(i)}));
    CHECK(f.store->counts().untracked_targets == 10);
    f.keep("s1", "p1", {});
    f.keep("s" + std::to_string(sends - 1), "p-last", {});
    CHECK(StoreFixture::names(*f.take("p1", seen)) ==
          std::vector<std::string>{"many"});  // "twice", "between": r1/r2
    CHECK(StoreFixture::names(*f.take("p-last", seen)) == std::vector<std::string>{});
  }

  TEST_CASE("packets recorded out of offset order are still found (sent later than encoded)") {
    StoreFixture f;
    const std::string early = f.store->next_offset();  // encoded first, sent last
    const std::string a = f.record("a", to_all());
    f.record_as(early, "early", to_all());
    const std::string b = f.record("b", to_all());
    f.keep("sid-A", "pid-A", {});
    auto restored = f.take("pid-A", early);
    REQUIRE(restored.has_value());
    CHECK(StoreFixture::names(*restored) == std::vector<std::string>{"b"});
    f.keep("sid-A", "pid-A", {});
    restored = f.take("pid-A", a);
    REQUIRE(restored.has_value());
    CHECK(StoreFixture::names(*restored) == std::vector<std::string>{"early", "b"});
    (void)b;
  }

  TEST_CASE("max_packets: the oldest packets go first, counted; their offset is then unknown") {
    StoreFixture f(make_options(10, 3));
    const std::string p1 = f.record("p1", to_all());
    const std::string p2 = f.record("p2", to_all());
    f.record("p3", to_all());
    f.record("p4", to_all());
    f.record("p5", to_all());
    CHECK(f.store->packet_count() == 3);
    CHECK(f.store->counts().evicted_packets == 2);
    f.keep("sid-A", "pid-A", {});
    CHECK_FALSE(f.take("pid-A", p1).has_value());
    CHECK_FALSE(f.take("pid-A", p2).has_value());  // the session went with the first attempt
    f.keep("sid-B", "pid-B", {});
    CHECK(f.store->session_count() == 1);
    // The session whose missed events were gone is reported as expired at the next sweep,
    // once: its client connected anew without them.
    std::vector<std::string> reported;
    f.store->sweep(f.now, [&](const KeptSession& session) { reported.push_back(session.sid); });
    CHECK(reported == std::vector<std::string>{"sid-A"});
    reported.clear();
    f.store->sweep(f.now, [&](const KeptSession& session) { reported.push_back(session.sid); });
    CHECK(reported.empty());
  }

  TEST_CASE("max_sessions: the oldest session goes first, counted, reported at the next sweep") {
    StoreFixture f(make_options(2, 100));
    const std::string seen = f.record("seen", to_all());
    f.keep("s1", "p1", {});
    f.now += 1ms;
    f.keep("s2", "p2", {});
    f.now += 1ms;
    f.keep("s3", "p3", {});
    CHECK(f.store->session_count() == 2);
    CHECK(f.store->counts().evicted_sessions == 1);
    CHECK(f.store->counts().kept == 3);
    CHECK_FALSE(f.take("p1", seen).has_value());
    std::vector<std::string> reported;
    f.store->sweep(f.now, [&](const KeptSession& session) { reported.push_back(session.sid); });
    CHECK(reported == std::vector<std::string>{"s1"});
    CHECK(f.take("p2", seen).has_value());
    CHECK(f.take("p3", seen).has_value());
  }

  TEST_CASE("keep under a pid already kept replaces it (a restored socket dropped again)") {
    StoreFixture f;
    const std::string seen = f.record("seen", to_all());
    f.keep("s1", "p1", {"old"});
    f.keep("s1", "p1", {"new"});
    CHECK(f.store->session_count() == 1);
    auto restored = f.take("p1", seen);
    REQUIRE(restored.has_value());
    CHECK(restored->session.rooms == std::vector<std::string>{"new"});
  }

  TEST_CASE("expiry: take refuses past max_disconnection_duration; sweep removes and reports") {
    StoreFixture f;
    const std::string seen = f.record("seen", to_all());
    f.keep("s1", "p1", {});
    f.now += 600ms;
    f.keep("s2", "p2", {});
    f.record("later", to_all());
    f.now += 500ms;  // s1 and "seen" are 1100 ms old, s2 500 ms
    CHECK_FALSE(f.take("p1", seen).has_value());
    std::vector<std::string> reported;
    f.store->sweep(f.now, [&](const KeptSession& session) { reported.push_back(session.sid); });
    CHECK(reported == std::vector<std::string>{"s1"});
    CHECK(f.store->counts().expired == 1);
    CHECK(f.store->session_count() == 1);
    CHECK(f.store->packet_count() == 1);  // "seen" expired, "later" held
    // s2 is alive but its offset has expired: not restorable.
    CHECK_FALSE(f.take("p2", seen).has_value());
    f.now += 2s;
    f.store->sweep(f.now, {});
    CHECK(f.store->packet_count() == 0);
    CHECK(f.store->session_count() == 0);
  }

  TEST_CASE("drop_if removes the sessions selected, counted") {
    StoreFixture f;
    const std::string seen = f.record("seen", to_all());
    f.keep("s1", "p1", {});
    f.keep("s2", "p2", {});
    f.keep("s3", "p3", {}, "/other");
    std::optional<size_t> dropped;
    f.store->drop_if([](const KeptSession& s) { return s.sid != "s2"; },
                     [&](size_t n) { dropped = n; });
    CHECK(dropped == 2u);  // answered at once
    CHECK(f.store->counts().dropped == 2);
    CHECK_FALSE(f.take("p1", seen).has_value());
    CHECK(f.take("p2", seen).has_value());
  }

  TEST_CASE("target_includes: socket.io's shouldIncludePacket") {
    CHECK(target_includes(to_all(), "s", {}));
    CHECK_FALSE(target_includes(to_all("s"), "s", {}));
    CHECK(target_includes(to_rooms({"s"}), "s", {}));
    CHECK(target_includes(to_rooms({"a", "b"}), "s", {"b"}));
    CHECK_FALSE(target_includes(to_rooms({"a"}), "s", {"b"}));
    CHECK_FALSE(target_includes(to_rooms({"a"}, "", {"s"}), "s", {"a"}));
    CHECK_FALSE(target_includes(PacketTarget{true, {}, "", {"x"}}, "s", {"x"}));
  }
}

#include <malloc.h>

namespace {

/// Heap bytes in use (glibc), for the memory figures below.
size_t heap_in_use() {
  return mallinfo2().uordblks;
}

/// AddressSanitizer has its own allocator: glibc's figures mean nothing there.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kHeapFiguresValid = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kHeapFiguresValid = false;
#else
constexpr bool kHeapFiguresValid = true;
#endif
#else
constexpr bool kHeapFiguresValid = true;
#endif

}  // namespace

TEST_SUITE("memory_recovery_store") {
  // The figures of the README: what a kept session and a recorded packet cost in the memory
  // store. Steedos-like shapes: a socket in two rooms (its user and its space) with its user and
  // tenant as app data; a packet of a 100-byte event to one room.
  TEST_CASE("memory per kept session and per recorded packet" * doctest::skip(!kHeapFiguresValid)) {
    constexpr size_t kCount = 20000;
    RecoveryOptions options = make_options(kCount, kCount);
    MemoryRecoveryStore store(options);
    const std::string sid_base = "AAAAAAAAAAAAAAAAAAAA";

    std::vector<KeptSession> sessions(kCount);
    for (size_t i = 0; i < kCount; ++i) {
      KeptSession& s = sessions[i];
      s.nsp = "/";
      s.sid = sid_base.substr(0, 12) + std::to_string(10000000 + i);
      s.pid = "P" + s.sid.substr(1);
      s.rooms = {"user:" + std::to_string(100000 + i) + "abcdefghijklmn",
                 "space:Af3kd9s0dkfj3kd92"};
      s.app_data = Json{{"user", "u" + std::to_string(i)}, {"tenant", "Af3kd9s0dkfj3kd92"}};
      s.disconnected_at = Clock::now();
    }
    // The sessions are built beforehand; keep() moves them in: the delta is the store's own
    // bookkeeping (list node, index entry). The session's content is measured apart.
    const size_t before_content = heap_in_use();
    std::vector<KeptSession> copies = sessions;
    const size_t content = (heap_in_use() - before_content) / kCount + sizeof(KeptSession);
    copies.clear();
    copies.shrink_to_fit();
    const size_t before_keep = heap_in_use();
    for (auto& session : sessions) store.keep(std::move(session));
    const size_t bookkeeping = (heap_in_use() - before_keep) / kCount;
    REQUIRE(store.session_count() == kCount);
    const size_t per_session = content + bookkeeping;
    MESSAGE("kept session: " << per_session << " bytes (" << content
                             << " the session and its strings, " << bookkeeping
                             << " the store's list node and pid index)");
    CHECK(per_session < 1024);

    std::vector<OutgoingPacketPtr> packets;
    std::vector<std::string> offsets;
    const size_t before_packets = heap_in_use();
    for (size_t i = 0; i < kCount; ++i) {
      offsets.push_back(store.next_offset());
      const std::string text = "2[\"notification\",{\"_id\":\"" + std::to_string(i) +
                               "\",\"name\":\"A record was changed\",\"x\":1}," + '"' +
                               offsets.back() + "\"]";
      packets.push_back(OutgoingPacket::messages({{false, text}}, offsets.back()));
    }
    const size_t packet_bytes = (heap_in_use() - before_packets) / kCount;
    const size_t before_record = heap_in_use();
    for (size_t i = 0; i < kCount; ++i) {
      store.record(offsets[i], PacketTarget{false, {"space:Af3kd9s0dkfj3kd92"}, "", {}},
                   packets[i]);
    }
    const size_t entry_bytes = (heap_in_use() - before_record) / kCount;
    REQUIRE(store.packet_count() == kCount);
    MESSAGE("recorded packet: " << entry_bytes << " bytes of store entry, plus the packet it "
                                << "keeps alive: " << packet_bytes
                                << " bytes for a 100-byte event");
    CHECK(entry_bytes < 512);

    // The time a broadcast spends in record() with the store full (each record evicts the
    // oldest): a figure for the README, not a bound (the machine is shared).
    const auto started = Clock::now();
    for (size_t i = 0; i < kCount; ++i) {
      const std::string offset = store.next_offset();
      store.record(offset, PacketTarget{false, {"space:Af3kd9s0dkfj3kd92"}, "", {}}, packets[i]);
    }
    const auto elapsed = std::chrono::duration<double, std::nano>(Clock::now() - started);
    MESSAGE("next_offset + record, store full: " << elapsed.count() / kCount << " ns per packet");
    CHECK(store.counts().evicted_packets == kCount);
  }
}
