#include "gateway/rooms.hpp"

namespace steedos::gateway {

bool RoomIndex::join(Member member, const std::string& room) {
  if (!rooms_[room].insert(member).second) return false;
  members_[member].insert(room);
  return true;
}

bool RoomIndex::leave(Member member, const std::string& room) {
  auto room_it = rooms_.find(room);
  if (room_it == rooms_.end() || room_it->second.erase(member) == 0) return false;
  if (room_it->second.empty()) rooms_.erase(room_it);
  auto member_it = members_.find(member);
  if (member_it != members_.end()) {
    member_it->second.erase(room);
    if (member_it->second.empty()) members_.erase(member_it);
  }
  return true;
}

void RoomIndex::leave_all(Member member) {
  auto member_it = members_.find(member);
  if (member_it == members_.end()) return;
  // Only this member's rooms are visited: the reason for the second index.
  for (const auto& room : member_it->second) {
    auto room_it = rooms_.find(room);
    if (room_it == rooms_.end()) continue;
    room_it->second.erase(member);
    if (room_it->second.empty()) rooms_.erase(room_it);
  }
  members_.erase(member_it);
}

const RoomIndex::RoomSet* RoomIndex::rooms_of(Member member) const {
  auto it = members_.find(member);
  return it == members_.end() ? nullptr : &it->second;
}

const RoomIndex::MemberSet* RoomIndex::members(const std::string& room) const {
  auto it = rooms_.find(room);
  return it == rooms_.end() ? nullptr : &it->second;
}

bool RoomIndex::contains(Member member, const std::string& room) const {
  auto it = rooms_.find(room);
  return it != rooms_.end() && it->second.count(member) != 0;
}

std::vector<std::string> RoomIndex::room_names() const {
  std::vector<std::string> names;
  names.reserve(rooms_.size());
  for (const auto& entry : rooms_) names.push_back(entry.first);
  return names;
}

}  // namespace steedos::gateway
