#pragma once
// A read-only string -> string map in one buffer, for data a connection keeps for its whole
// life (the handshake's headers and query). A std::map spends about 100 bytes of nodes per entry
// besides the text; this keeps the text, a length per string and one allocation. Entries are
// sorted by key (as std::map iterates); lookups scan, which is fast for the dozen entries of a
// request. Keys and values may contain any byte, '\0' included.
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <map>
#include <string>
#include <string_view>
#include <utility>

namespace steedos::gateway {

class CompactStringMap {
 public:
  using value_type = std::pair<std::string_view, std::string_view>;

  class const_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = CompactStringMap::value_type;
    using difference_type = std::ptrdiff_t;
    using reference = value_type;
    /// Lets `it->second` work although entries are built on the fly.
    struct pointer {
      value_type entry;
      const value_type* operator->() const { return &entry; }
    };

    const_iterator() = default;
    value_type operator*() const;
    pointer operator->() const { return pointer{**this}; }
    const_iterator& operator++();
    const_iterator operator++(int) {
      const_iterator previous = *this;
      ++*this;
      return previous;
    }
    bool operator==(const const_iterator& other) const { return at_ == other.at_; }
    bool operator!=(const const_iterator& other) const { return at_ != other.at_; }

   private:
    friend class CompactStringMap;
    explicit const_iterator(const char* at) : at_(at) {}
    const char* at_ = nullptr;
  };

  CompactStringMap() = default;
  /// From any map-like range of (key, value) pairs; a repeated key keeps its first value.
  explicit CompactStringMap(const std::map<std::string, std::string>& entries);
  CompactStringMap(std::initializer_list<value_type> entries);

  const_iterator begin() const { return const_iterator(data_.data()); }
  const_iterator end() const { return const_iterator(data_.data() + data_.size()); }
  const_iterator find(std::string_view key) const;
  size_t count(std::string_view key) const { return find(key) != end() ? 1 : 0; }
  /// The value of `key`; throws std::out_of_range when there is none.
  std::string_view at(std::string_view key) const;
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  /// Removes every entry and gives the buffer back (assigning an empty map would keep it: a
  /// std::string moved from a short one keeps its capacity).
  void clear() {
    std::string().swap(data_);
    size_ = 0;
  }

 private:
  void build(std::map<std::string_view, std::string_view> sorted);
  // Per entry: key length, key, value length, value; lengths as 4 little-endian bytes.
  std::string data_;
  uint32_t size_ = 0;
};

}  // namespace steedos::gateway
