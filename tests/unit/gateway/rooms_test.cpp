#include "gateway/rooms.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

using steedos::gateway::RoomIndex;
using steedos::gateway::RoomMember;

namespace {

std::vector<RoomMember*> sorted_members(const RoomIndex& index, const std::string& room) {
  const RoomIndex::RoomId id = index.find(room);
  if (id == RoomIndex::kNoRoom) return {};
  std::vector<RoomMember*> members = index.members(id);
  std::sort(members.begin(), members.end());
  return members;
}

std::vector<RoomMember*> sorted(std::vector<RoomMember*> members) {
  std::sort(members.begin(), members.end());
  return members;
}

}  // namespace

TEST_SUITE("rooms") {
  TEST_CASE("join, leave, contains; an emptied room is deleted and its id reused") {
    RoomIndex index;
    RoomMember a, b;
    CHECK(index.join(a, "r1"));
    CHECK_FALSE(index.join(a, "r1"));
    CHECK(index.join(b, "r1"));
    CHECK(index.join(a, "r2"));
    CHECK(index.room_count() == 2);
    CHECK(index.contains(a, "r2"));
    CHECK_FALSE(index.contains(b, "r2"));
    CHECK_FALSE(index.contains(a, "nowhere"));
    CHECK(a.room_count() == 2);
    CHECK(index.rooms_of(a) == std::vector<std::string>{"r1", "r2"});  // join order

    const RoomIndex::RoomId r2 = index.find("r2");
    CHECK(index.leave(a, "r2"));
    CHECK_FALSE(index.leave(a, "r2"));
    CHECK_FALSE(index.leave(b, "nowhere"));
    CHECK(index.find("r2") == RoomIndex::kNoRoom);
    CHECK(index.room_count() == 1);
    CHECK(index.join(b, "r3"));
    CHECK(index.find("r3") == r2);  // the freed id, not a new slot in the table
    auto names = index.room_names();
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"r1", "r3"});
  }

  TEST_CASE("swap-remove keeps every member's position right") {
    RoomIndex index;
    RoomMember m[5];
    for (auto& member : m) CHECK(index.join(member, "room"));
    // Leaving from the front moves the last member into the hole each time; a stale position
    // would make the next leave remove the wrong member (or none).
    CHECK(index.leave(m[0], "room"));
    CHECK(sorted_members(index, "room") == sorted({&m[1], &m[2], &m[3], &m[4]}));
    CHECK(index.leave(m[4], "room"));  // the member that was moved
    CHECK(sorted_members(index, "room") == sorted({&m[1], &m[2], &m[3]}));
    CHECK(index.leave(m[2], "room"));
    CHECK(sorted_members(index, "room") == sorted({&m[1], &m[3]}));
    CHECK(index.leave(m[3], "room"));
    CHECK(index.leave(m[1], "room"));
    CHECK(index.find("room") == RoomIndex::kNoRoom);
    CHECK(index.room_count() == 0);
  }

  TEST_CASE("leave_all removes a member from its rooms only, deleting the emptied ones") {
    RoomIndex index;
    RoomMember a, b, c;
    for (const char* room : {"x", "y", "z"}) index.join(a, room);
    index.join(b, "y");
    index.join(c, "z");
    index.join(c, "w");
    index.leave_all(a);
    CHECK(a.room_count() == 0);
    CHECK(index.rooms_of(a).empty());
    CHECK(index.find("x") == RoomIndex::kNoRoom);
    CHECK(sorted_members(index, "y") == std::vector<RoomMember*>{&b});
    CHECK(sorted_members(index, "z") == std::vector<RoomMember*>{&c});
    CHECK(index.room_count() == 3);
    index.leave_all(a);  // nothing left: a no-op
    CHECK(index.room_count() == 3);
    CHECK(index.leave(c, "z"));  // c's positions survived a's departure
    CHECK(index.leave(c, "w"));
    CHECK(index.room_count() == 1);
  }

  TEST_CASE("a member in more rooms than fit inline moves them to the heap and back") {
    RoomIndex index;
    RoomMember a, b;
    std::vector<std::string> joined;
    for (int i = 0; i < 11; ++i) {
      joined.push_back("room-with-a-name-longer-than-sso-" + std::to_string(i));
      CHECK(index.join(a, joined.back()));
      CHECK(index.join(b, joined.back()));
    }
    CHECK(a.room_count() == 11);
    CHECK(index.rooms_of(a) == joined);
    CHECK(index.leave(a, joined[3]));
    joined.erase(joined.begin() + 3);
    CHECK(index.rooms_of(a) == joined);  // join order kept by a leave in the middle
    for (const auto& room : joined) CHECK(index.contains(a, room));
    index.leave_all(b);
    CHECK(index.room_count() == 10);
    index.leave_all(a);
    CHECK(index.room_count() == 0);
  }

  TEST_CASE("random joins and leaves agree with a plain two-way map") {
    RoomIndex index;
    constexpr int kMembers = 40;
    constexpr int kRooms = 12;
    std::vector<RoomMember> members(kMembers);
    std::map<std::string, std::set<RoomMember*>> model;
    std::mt19937 random(11);
    auto room_name = [](int i) { return "r" + std::to_string(i); };
    for (int step = 0; step < 20000; ++step) {
      RoomMember& member = members[random() % kMembers];
      const std::string room = room_name(static_cast<int>(random() % kRooms));
      const unsigned action = random() % 10;
      if (action < 5) {
        CHECK(index.join(member, room) == model[room].insert(&member).second);
      } else if (action < 9) {
        const bool was_in = model.count(room) != 0 && model[room].erase(&member) != 0;
        CHECK(index.leave(member, room) == was_in);
      } else {
        index.leave_all(member);
        for (auto& entry : model) entry.second.erase(&member);
      }
      for (auto it = model.begin(); it != model.end();) {
        it = it->second.empty() ? model.erase(it) : std::next(it);
      }
    }
    CHECK(index.room_count() == model.size());
    for (int r = 0; r < kRooms; ++r) {
      const std::string room = room_name(r);
      std::vector<RoomMember*> expected;
      if (model.count(room) != 0) expected.assign(model[room].begin(), model[room].end());
      CHECK(sorted_members(index, room) == sorted(expected));
    }
    for (auto& member : members) {
      for (const auto& room : index.rooms_of(member)) CHECK(model[room].count(&member) == 1);
      index.leave_all(member);
    }
    CHECK(index.room_count() == 0);
  }
}
