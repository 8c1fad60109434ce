#include "gateway/rooms.hpp"

#include <algorithm>
#include <cstring>

namespace steedos::gateway {

//------------------------------------------------------------------------------------------------
// RoomMember

RoomMember::~RoomMember() {
  if (capacity_ > kInlineRooms) delete[] heap_;
}

RoomMember::Slot* RoomMember::find(uint32_t room) {
  Slot* slot = slots();
  for (uint32_t i = 0; i < size_; ++i) {
    if (slot[i].room == room) return &slot[i];
  }
  return nullptr;
}

void RoomMember::push(Slot slot) {
  if (size_ == capacity_) {
    // Past the inline slots: a heap array growing by doubling (memberships beyond a handful
    // are rare; their cost is paid only by the sockets that have them).
    const uint32_t capacity = capacity_ * 2;
    auto* grown = new Slot[capacity];
    std::memcpy(grown, slots(), size_ * sizeof(Slot));
    if (capacity_ > kInlineRooms) delete[] heap_;
    heap_ = grown;
    capacity_ = capacity;
  }
  slots()[size_++] = slot;
}

void RoomMember::erase(size_t i) {
  Slot* slot = slots();
  std::memmove(slot + i, slot + i + 1, (size_ - i - 1) * sizeof(Slot));
  --size_;
}

//------------------------------------------------------------------------------------------------
// RoomIndex

bool RoomIndex::join(RoomMember& member, const std::string& room) {
  auto [it, created] = ids_.try_emplace(room, kNoRoom);
  if (created) {
    if (free_ids_.empty()) {
      it->second = static_cast<RoomId>(rooms_.size());
      rooms_.emplace_back();
    } else {
      it->second = free_ids_.back();
      free_ids_.pop_back();
    }
    rooms_[it->second].name = &it->first;
  } else if (is_in(member, it->second)) {
    return false;
  }
  Members& members = rooms_[it->second].members;
  member.push({it->second, static_cast<uint32_t>(members.size())});
  members.push_back(&member);
  return true;
}

void RoomIndex::remove_from_room(RoomMember& member, const RoomMember::Slot& slot) {
  Room& room = rooms_[slot.room];
  Members& members = room.members;
  RoomMember* last = members.back();
  if (last != &member) {
    // The last member takes the freed position; its slot for this room follows it.
    members[slot.position] = last;
    last->find(slot.room)->position = slot.position;
  }
  members.pop_back();
  if (members.empty()) {
    ids_.erase(ids_.find(*room.name));  // by iterator: the key is the one being erased
    room.name = nullptr;
    Members().swap(members);  // an emptied room gives its memory back
    free_ids_.push_back(slot.room);
  } else if (members.capacity() > 64 && members.size() < members.capacity() / 4) {
    // A room that shrank a lot (a broadcast audience that went home) returns most of it.
    members.shrink_to_fit();
  }
}

bool RoomIndex::leave(RoomMember& member, const std::string& room) {
  const RoomId id = find(room);
  if (id == kNoRoom) return false;
  RoomMember::Slot* slots = member.slots();
  for (uint32_t i = 0; i < member.size_; ++i) {
    if (slots[i].room != id) continue;
    const RoomMember::Slot slot = slots[i];
    member.erase(i);
    remove_from_room(member, slot);
    return true;
  }
  return false;
}

void RoomIndex::leave_all(RoomMember& member) {
  // Only this member's rooms are visited: the reason for the second index.
  const RoomMember::Slot* slots = member.slots();
  for (uint32_t i = 0; i < member.size_; ++i) remove_from_room(member, slots[i]);
  member.clear();
}

RoomIndex::RoomId RoomIndex::find(const std::string& room) const {
  auto it = ids_.find(room);
  return it == ids_.end() ? kNoRoom : it->second;
}

bool RoomIndex::contains(const RoomMember& member, const std::string& room) const {
  const RoomId id = find(room);
  return id != kNoRoom && is_in(member, id);
}

std::vector<std::string> RoomIndex::rooms_of(const RoomMember& member) const {
  std::vector<std::string> names;
  names.reserve(member.size_);
  const RoomMember::Slot* slots = member.slots();
  for (uint32_t i = 0; i < member.size_; ++i) names.push_back(*rooms_[slots[i].room].name);
  return names;
}

std::vector<std::string> RoomIndex::room_names() const {
  std::vector<std::string> names;
  names.reserve(ids_.size());
  for (const auto& entry : ids_) names.push_back(entry.first);
  return names;
}

}  // namespace steedos::gateway
