#include "protocol/match.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

// Port of `match(text, pattern)` from moleculer's src/utils.js (0.14.36 and 0.15.x are identical).
// JS tries four fast paths, then builds an anchored RegExp from the pattern. Both are reproduced
// with their quirks (spec §4.4): the trailing-`*` fast path never checks the character right after
// the prefix, and the regex path leaves `.` unescaped. The regex path runs on a small NFA over the
// pattern's tokens; only patterns whose regex text would contain other metacharacters go to
// std::wregex, because their meaning (groups, classes, alternation...) is a real regex language.

namespace steedos::protocol {
namespace {

constexpr std::string_view kSection = "\xC2\xA7";  // "§", UTF-8
// JS first turns "**" into this placeholder, so a literal "§§§" in the pattern also becomes ".*".
constexpr std::string_view kPlaceholder = "\xC2\xA7\xC2\xA7\xC2\xA7";

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// JS strings are UTF-16 and the RegExp has no `u` flag, so `?` (→ `.`) matches one UTF-16 code
// unit: an astral character needs two. Text and pattern are therefore read as UTF-16 units.
// Invalid UTF-8 cannot come from a JS peer; each bad byte is read as U+FFFD.
class Utf16Reader {
 public:
  explicit Utf16Reader(std::string_view s) : s_(s) {}

  bool next(char16_t& unit) {
    if (low_surrogate_ != 0) {
      unit = low_surrogate_;
      low_surrogate_ = 0;
      return true;
    }
    if (pos_ >= s_.size()) return false;
    char32_t cp = decode();
    if (cp >= 0x10000) {
      cp -= 0x10000;
      unit = static_cast<char16_t>(0xD800 + (cp >> 10));
      low_surrogate_ = static_cast<char16_t>(0xDC00 + (cp & 0x3FF));
    } else {
      unit = static_cast<char16_t>(cp);
    }
    return true;
  }

 private:
  char32_t decode() {
    const auto byte = [this](std::size_t i) { return static_cast<unsigned char>(s_[i]); };
    const unsigned char lead = byte(pos_);
    std::size_t extra = 0;
    char32_t cp = 0;
    if (lead < 0x80) {
      ++pos_;
      return lead;
    } else if (lead >= 0xC2 && lead <= 0xDF) {
      extra = 1;
      cp = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      extra = 2;
      cp = lead & 0x0F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      extra = 3;
      cp = lead & 0x07;
    } else {
      ++pos_;
      return 0xFFFD;
    }
    if (pos_ + extra >= s_.size()) {
      ++pos_;
      return 0xFFFD;
    }
    for (std::size_t i = 1; i <= extra; ++i) {
      const unsigned char c = byte(pos_ + i);
      if ((c & 0xC0) != 0x80) {
        ++pos_;
        return 0xFFFD;
      }
      cp = (cp << 6) | (c & 0x3F);
    }
    // Reject overlong forms, surrogates and values past U+10FFFF like a strict decoder would.
    if ((extra == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF))) {
      ++pos_;
      return 0xFFFD;
    }
    pos_ += extra + 1;
    return cp;
  }

  std::string_view s_;
  std::size_t pos_ = 0;
  char16_t low_surrogate_ = 0;
};

// A JS `.` (no `s` flag) matches any UTF-16 unit except the four line terminators.
bool is_line_terminator(char16_t unit) {
  return unit == u'\n' || unit == u'\r' || unit == 0x2028 || unit == 0x2029;
}

// The atoms JS's regex text can contain when the pattern has no other metacharacter.
enum class Op : unsigned char {
  kLiteral,    // one UTF-16 unit
  kAny,        // `.`: from `?` and from every unescaped `.` of the pattern
  kAnyStar,    // `.*`: from `**`
  kNoDotStar,  // `[^\.]*`: from a single `*`
};

struct Token {
  Op op;
  char16_t unit;
};

// Characters that would make JS's regex text mean more than the atoms above. A leading `$` is
// escaped by JS, any other `$` is an end-of-input assertion.
bool needs_real_regex(std::string_view pattern) {
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    switch (pattern[i]) {
      case '\\':
      case '^':
      case '[':
      case ']':
      case '(':
      case ')':
      case '{':
      case '}':
      case '+':
      case '|':
        return true;
      case '$':
        if (i != 0) return true;
        break;
      default:
        break;
    }
  }
  return pattern.find(kSection) != std::string_view::npos;
}

// Tokens of JS's regex text for a pattern without other metacharacters (a leading `$` is then
// the only `$`, a literal once JS escapes it). `**` pairs are taken left to right like JS's
// global replace, so `***` is `.*` then `[^\.]*`. Each token comes from at least one byte of the
// pattern, so `out` needs at most pattern.size() entries.
std::size_t tokenize(std::string_view pattern, Token* out) {
  std::size_t count = 0;
  Utf16Reader reader(pattern);
  char16_t unit = 0;
  while (reader.next(unit)) {
    if (unit == u'*') {
      Utf16Reader ahead = reader;
      char16_t following = 0;
      const bool pair = ahead.next(following) && following == u'*';
      if (pair) reader = ahead;
      out[count++] = {pair ? Op::kAnyStar : Op::kNoDotStar, 0};
    } else if (unit == u'?' || unit == u'.') {
      out[count++] = {Op::kAny, 0};
    } else {
      out[count++] = {Op::kLiteral, unit};
    }
  }
  return count;
}

bool accepts(const Token& token, char16_t unit) {
  switch (token.op) {
    case Op::kLiteral:
      return unit == token.unit;
    case Op::kAny:
    case Op::kAnyStar:
      return !is_line_terminator(unit);
    case Op::kNoDotStar:
      return unit != u'.';
  }
  return false;
}

bool is_star(const Token& token) {
  return token.op == Op::kAnyStar || token.op == Op::kNoDotStar;
}

// Adds the states reachable by letting stars match nothing. Epsilon moves only go forward, so
// one ascending pass is enough.
void close_over_stars(const Token* tokens, std::size_t count, unsigned char* states) {
  for (std::size_t i = 0; i < count; ++i) {
    if (states[i] && is_star(tokens[i])) states[i + 1] = 1;
  }
}

// Anchored match of `text` against the token list: a set-of-states NFA, O(len(text) * tokens),
// without the exponential backtracking a naive star matcher can hit. State i means "tokens
// before i are matched"; `states` has room for two sets of count + 1 entries.
bool run_tokens(const Token* tokens, std::size_t count, std::string_view text,
                unsigned char* states) {
  unsigned char* current = states;
  unsigned char* next = states + count + 1;
  std::fill(current, current + count + 1, 0);
  current[0] = 1;
  close_over_stars(tokens, count, current);
  Utf16Reader reader(text);
  char16_t unit = 0;
  while (reader.next(unit)) {
    std::fill(next, next + count + 1, 0);
    bool any = false;
    for (std::size_t i = 0; i < count; ++i) {
      if (!current[i] || !accepts(tokens[i], unit)) continue;
      next[is_star(tokens[i]) ? i : i + 1] = 1;
      any = true;
    }
    if (!any) return false;
    close_over_stars(tokens, count, next);
    std::swap(current, next);
  }
  return current[count] != 0;
}

bool match_tokens(std::string_view text, std::string_view pattern) {
  // Event patterns are short: keep them off the heap.
  constexpr std::size_t kInline = 128;
  if (pattern.size() <= kInline) {
    std::array<Token, kInline> tokens;
    std::array<unsigned char, 2 * (kInline + 1)> states;
    const std::size_t count = tokenize(pattern, tokens.data());
    return run_tokens(tokens.data(), count, text, states.data());
  }
  std::vector<Token> tokens(pattern.size());
  std::vector<unsigned char> states(2 * (pattern.size() + 1));
  const std::size_t count = tokenize(pattern, tokens.data());
  return run_tokens(tokens.data(), count, text, states.data());
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  std::size_t pos = 0;
  for (std::size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out.append(to);
  }
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

// The regex text exactly as JS builds it (string replacements on UTF-8 give the same result as
// on UTF-16 because every searched string starts with an ASCII byte or a UTF-8 lead byte).
std::string js_regex_source(std::string_view pattern) {
  std::string source(pattern);
  if (starts_with(source, "$")) source.insert(0, "\\");
  replace_all(source, "?", ".");
  replace_all(source, "**", kPlaceholder);
  replace_all(source, "*", "[^\\.]*");
  replace_all(source, kPlaceholder, ".*");
  return "^" + source + "$";
}

// One wchar_t per UTF-16 unit, so `.` and character classes count units as JS does.
std::wstring to_utf16_units(std::string_view s) {
  std::wstring out;
  out.reserve(s.size());
  Utf16Reader reader(s);
  char16_t unit = 0;
  while (reader.next(unit)) out.push_back(static_cast<wchar_t>(unit));
  return out;
}

// Patterns with real regex syntax, compiled once like JS's RegexCache. nullptr records a pattern
// JS would throw on (invalid RegExp): it never matches here. The cache is bounded because
// patterns can come from remote nodes.
bool match_real_regex(std::string_view text, std::string_view pattern) {
  static std::mutex mutex;
  static std::unordered_map<std::string, std::shared_ptr<const std::wregex>> cache;
  constexpr std::size_t kMaxCached = 1024;

  std::shared_ptr<const std::wregex> regex;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache.find(std::string(pattern));
    if (it != cache.end()) {
      regex = it->second;
    } else {
      try {
        regex = std::make_shared<const std::wregex>(to_utf16_units(js_regex_source(pattern)),
                                                    std::regex_constants::ECMAScript);
      } catch (const std::regex_error&) {
        regex = nullptr;
      }
      if (cache.size() >= kMaxCached) cache.clear();
      cache.emplace(std::string(pattern), regex);
    }
  }
  if (!regex) return false;
  // RegExp.test() searches: with `|` in the pattern the `^`/`$` anchors bind to one branch only.
  const std::wstring units = to_utf16_units(text);
  return std::regex_search(units, *regex);
}

}  // namespace

bool match_event(std::string_view text, std::string_view pattern) {
  // Fast paths, in JS's order; none of them applies when the pattern has a `?`.
  if (pattern.find('?') == std::string_view::npos) {
    const std::size_t first_star = pattern.find('*');
    if (first_star == std::string_view::npos) return text == pattern;  // exact name

    const std::size_t len = pattern.size();
    // "prefix**": the only stars are the trailing pair.
    if (len > 2 && ends_with(pattern, "**") && first_star > len - 3) {
      return starts_with(text, pattern.substr(0, len - 2));
    }
    // "prefix*": the only star is the last character. JS looks for a dot from index `len` (the
    // pattern length *with* the star), so the character right after the prefix is never checked:
    // `user*` matches `user.created`. Byte offsets give the same answer as UTF-16 offsets here
    // because a `.` can never be part of a multi-byte character.
    if (len > 1 && ends_with(pattern, "*") && first_star > len - 2) {
      return starts_with(text, pattern.substr(0, len - 1)) &&
             text.find('.', len) == std::string_view::npos;
    }
    if (len == 1 && first_star == 0) return text.find('.') == std::string_view::npos;  // "*"
    if (len == 2 && first_star == 0 && pattern.rfind('*') == 1) return true;           // "**"
  }
  return needs_real_regex(pattern) ? match_real_regex(text, pattern) : match_tokens(text, pattern);
}

}  // namespace steedos::protocol
