#include "gateway/compact_string_map.hpp"

#include <cstring>
#include <stdexcept>

namespace steedos::gateway {
namespace {

void put_length(std::string& out, size_t length) {
  const auto value = static_cast<uint32_t>(length);
  for (int shift = 0; shift < 32; shift += 8)
    out.push_back(static_cast<char>((value >> shift) & 0xFF));
}

uint32_t get_length(const char* at) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value |= uint32_t(static_cast<unsigned char>(at[i])) << (8 * i);
  return value;
}

/// The string stored at `at` and the position after it.
std::pair<std::string_view, const char*> read_string(const char* at) {
  const uint32_t length = get_length(at);
  return {std::string_view(at + 4, length), at + 4 + length};
}

}  // namespace

CompactStringMap::value_type CompactStringMap::const_iterator::operator*() const {
  const auto [key, after_key] = read_string(at_);
  const auto [value, after_value] = read_string(after_key);
  (void)after_value;
  return {key, value};
}

CompactStringMap::const_iterator& CompactStringMap::const_iterator::operator++() {
  at_ = read_string(read_string(at_).second).second;
  return *this;
}

CompactStringMap::CompactStringMap(const std::map<std::string, std::string>& entries) {
  std::map<std::string_view, std::string_view> sorted;
  for (const auto& [key, value] : entries) sorted.emplace(key, value);
  build(std::move(sorted));
}

CompactStringMap::CompactStringMap(std::initializer_list<value_type> entries) {
  std::map<std::string_view, std::string_view> sorted;
  for (const auto& [key, value] : entries) sorted.emplace(key, value);
  build(std::move(sorted));
}

void CompactStringMap::build(std::map<std::string_view, std::string_view> sorted) {
  size_t bytes = 0;
  for (const auto& [key, value] : sorted) bytes += 8 + key.size() + value.size();
  data_.reserve(bytes);
  for (const auto& [key, value] : sorted) {
    put_length(data_, key.size());
    data_.append(key);
    put_length(data_, value.size());
    data_.append(value);
  }
  size_ = static_cast<uint32_t>(sorted.size());
}

CompactStringMap::const_iterator CompactStringMap::find(std::string_view key) const {
  for (auto it = begin(); it != end(); ++it) {
    if ((*it).first == key) return it;
  }
  return end();
}

std::string_view CompactStringMap::at(std::string_view key) const {
  const auto it = find(key);
  if (it == end()) throw std::out_of_range("no entry '" + std::string(key) + "'");
  return (*it).second;
}

}  // namespace steedos::gateway
