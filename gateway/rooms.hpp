#pragma once
// The room registry of one Socket.IO namespace, indexed both ways (room → members and member →
// rooms) so that a disconnect touches only that socket's rooms and a broadcast walks only the
// targeted rooms (model: socket.io-adapter's in-memory adapter, `rooms` / `sids`).
//
// Laid out for memory (issue 11: tens of thousands of idle sockets in a few rooms each): a room
// name is stored once, in the room table (name → room id → a dense member vector); a member keeps
// its rooms as (room id, position in that room's vector) pairs inline in itself (RoomMember, no
// heap up to kInlineRooms rooms). Leaving swaps the room's last member into the freed position
// and fixes that member's pair, so joins and leaves cost no lookup per member and a broadcast
// walks a plain vector.
//
// Rooms observe members, they do not own them: the namespace removes a socket (leave_all) before
// the socket is released. The own-id room every Socket.IO socket sits in is not stored here (the
// namespace resolves it from its socket table): storing one single-member room per connection
// would cost a few hundred bytes per socket for nothing.
// Not thread-safe: used on the gateway's io_context thread only.
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace steedos::gateway {

class RoomIndex;

/// The rooms one member is in, as seen by the RoomIndex of its namespace. A socket is one (by
/// inheritance, so the index reaches it without a lookup); it must have left every room
/// (RoomIndex::leave_all) before it is destroyed.
class RoomMember {
 public:
  /// Rooms kept inline; the fifth one moves the list to the heap (Steedos sockets are in 3).
  static constexpr uint32_t kInlineRooms = 4;

  RoomMember() {}
  ~RoomMember();
  RoomMember(const RoomMember&) = delete;
  RoomMember& operator=(const RoomMember&) = delete;

  /// Number of named rooms this member is in.
  size_t room_count() const { return size_; }

 private:
  friend class RoomIndex;
  struct Slot {
    uint32_t room;      // id in the RoomIndex
    uint32_t position;  // index of this member in that room's member vector
  };

  Slot* slots() { return capacity_ > kInlineRooms ? heap_ : inline_; }
  const Slot* slots() const { return capacity_ > kInlineRooms ? heap_ : inline_; }
  /// The slot of `room`, or nullptr.
  Slot* find(uint32_t room);
  const Slot* find(uint32_t room) const { return const_cast<RoomMember*>(this)->find(room); }
  void push(Slot slot);
  /// Removes slot `i`, keeping the others in join order (listings show rooms as joined).
  void erase(size_t i);
  void clear() { size_ = 0; }

  uint32_t size_ = 0;
  uint32_t capacity_ = kInlineRooms;
  union {
    Slot inline_[kInlineRooms];
    Slot* heap_;
  };
};

class RoomIndex {
 public:
  using RoomId = uint32_t;
  using Members = std::vector<RoomMember*>;
  static constexpr RoomId kNoRoom = UINT32_MAX;

  RoomIndex() = default;
  RoomIndex(const RoomIndex&) = delete;
  RoomIndex& operator=(const RoomIndex&) = delete;

  /// Adds `member` to `room` (created on first join); false when it was already there.
  bool join(RoomMember& member, const std::string& room);
  /// Removes `member` from `room`; an emptied room is deleted. False when it was not there.
  bool leave(RoomMember& member, const std::string& room);
  /// Removes `member` from every room it is in; emptied rooms are deleted.
  void leave_all(RoomMember& member);

  /// The id of an existing room, or kNoRoom. Ids of deleted rooms are reused.
  RoomId find(const std::string& room) const;
  /// The members of an existing room (never empty), in no particular order.
  const Members& members(RoomId room) const { return rooms_[room].members; }
  /// Whether `member` is in the room `room`: a scan of the member's few slots, no lookup.
  static bool is_in(const RoomMember& member, RoomId room) { return member.find(room) != nullptr; }
  bool contains(const RoomMember& member, const std::string& room) const;
  /// The names of `member`'s rooms, in join order.
  std::vector<std::string> rooms_of(const RoomMember& member) const;

  /// Number of non-empty rooms.
  size_t room_count() const { return ids_.size(); }
  /// Every room name, for listings.
  std::vector<std::string> room_names() const;

 private:
  struct Room {
    const std::string* name = nullptr;  // the key in ids_; nullptr for a free id
    Members members;
  };

  /// Removes `member` from the room of its slot `i` (swap-remove), deleting the room when it
  /// empties. Does not touch the member's slot list.
  void remove_from_room(RoomMember& member, const RoomMember::Slot& slot);

  std::unordered_map<std::string, RoomId> ids_;  // the one copy of each name
  std::vector<Room> rooms_;                      // indexed by RoomId
  std::vector<RoomId> free_ids_;                 // ids of deleted rooms, reused first
};

}  // namespace steedos::gateway
