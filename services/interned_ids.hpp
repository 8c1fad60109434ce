#pragma once
// Ids that many sockets share (tenant and user ids), stored once per node and counted: a socket
// holds a 4-byte handle instead of its own copy of each string (issue 11: 17-character Steedos
// ids do not fit a std::string's inline buffer, so each copy was a heap block as well).
//
// Touched on connect and disconnect only, never on delivery. Not thread-safe: one owner (today
// the service on the Moleculer loop; one table per event loop, or a lock, once the gateway runs
// several loops).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace steedos::services {

class InternedIds {
 public:
  using Id = uint32_t;
  /// No string at all (an absent id), as opposed to the id of "".
  static constexpr Id kNone = 0;

  InternedIds() = default;
  InternedIds(const InternedIds&) = delete;
  InternedIds& operator=(const InternedIds&) = delete;

  /// The id of `text`, its count raised by one; a new entry when `text` has none.
  Id acquire(std::string_view text);
  /// Lowers the count of `id`; at zero the entry is freed and the id may be handed out again
  /// for another string. kNone is ignored.
  void release(Id id);
  /// The text of a live id; "" for kNone.
  std::string_view text(Id id) const;
  /// How many holders `id` has (0 for kNone and for a freed id).
  uint32_t holders(Id id) const;
  /// The id of `text` when some holder has it, else kNone. Does not count as a holder.
  Id find(std::string_view text) const;
  /// Live entries (distinct strings with at least one holder).
  size_t size() const { return index_.size(); }

 private:
  struct Entry {
    const std::string* text = nullptr;  // the index's key: nodes do not move
    uint32_t holders = 0;
  };
  std::unordered_map<std::string, Id> index_;
  std::vector<Entry> entries_;  // entries_[id - 1]
  std::vector<Id> free_;        // freed ids, reused first so entries_ stays dense
};

}  // namespace steedos::services
