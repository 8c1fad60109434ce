#pragma once
// The room registry of one Socket.IO namespace, indexed both ways (room → members and member →
// rooms) so that a disconnect touches only that socket's rooms and a broadcast walks only the
// targeted rooms (model: socket.io-adapter's in-memory adapter, `rooms` / `sids`).
//
// Rooms observe sockets, they do not own them: a member is a raw `Socket*` that the namespace
// removes (leave_all) before the socket is released. The own-id room every Socket.IO socket sits
// in is not stored here (the namespace resolves it from its socket table): storing one
// single-member room per connection would cost a few hundred bytes per socket for nothing.
// Not thread-safe: used on the gateway's io_context thread only.
#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace steedos::gateway {

class Socket;

class RoomIndex {
 public:
  using Member = Socket*;
  using MemberSet = std::unordered_set<Member>;
  using RoomSet = std::unordered_set<std::string>;

  /// Adds `member` to `room`; false when it was already there.
  bool join(Member member, const std::string& room);
  /// Removes `member` from `room`; an emptied room is deleted. False when it was not there.
  bool leave(Member member, const std::string& room);
  /// Removes `member` from every room it is in.
  void leave_all(Member member);

  /// The rooms `member` is in, or nullptr when none.
  const RoomSet* rooms_of(Member member) const;
  /// The members of `room`, or nullptr when the room does not exist (rooms are never empty).
  const MemberSet* members(const std::string& room) const;
  bool contains(Member member, const std::string& room) const;

  /// Number of non-empty rooms.
  size_t room_count() const { return rooms_.size(); }
  /// Every room name, for listings.
  std::vector<std::string> room_names() const;

 private:
  std::unordered_map<std::string, MemberSet> rooms_;
  std::unordered_map<Member, RoomSet> members_;
};

}  // namespace steedos::gateway
