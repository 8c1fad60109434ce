#pragma once
// ASCII case folding for protocol tokens (header names, schemes, hosts, file extensions):
// locale-independent, unlike std::tolower, and never touching bytes above 0x7F.
#include <cstddef>
#include <string>
#include <string_view>

namespace steedos::ascii {

inline char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

inline std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = lower(c);
  return out;
}

inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

}  // namespace steedos::ascii
