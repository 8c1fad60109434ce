#include "protocol/match.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "protocol/percent.hpp"

// Port of `match(text, pattern)` from moleculer's src/utils.js (0.14.36 and 0.15.x are identical).
// JS tries four fast paths, then builds an anchored RegExp from the pattern. Both are reproduced
// with their quirks (spec §4.4): the trailing-`*` fast path never checks the character right after
// the prefix, and the regex path leaves `.` unescaped.
//
// The regex path has two engines. Patterns made only of names, `.`, `*`, `**`, `?` (nearly all
// real subscriptions) run on a small NFA over the few atoms JS's regex can contain. Patterns with
// other regex metacharacters (`+`, `(`, `[`, `{`, `|`, `^`, `\`, ...) leak real regex syntax into
// JS's RegExp, so they run on a small backtracking engine that follows the ECMAScript grammar
// with its Annex B (web-compatibility) rules, as V8 does. std::regex is not used: it rejects
// Annex B forms JS accepts (a literal `{`), accepts forms JS rejects (`a*+`), and loops forever on
// some of the latter, which a remote subscription must never be able to trigger.

namespace steedos::protocol {
namespace {

// "§", UTF-8. JS first turns "**" into "§§§", so a literal "§§§" in the pattern also becomes ".*".
constexpr std::string_view kSection = "\xC2\xA7";
constexpr std::string_view kPlaceholder = "\xC2\xA7\xC2\xA7\xC2\xA7";

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// ---------------------------------------------------------------------------------------------
// UTF-16 view of UTF-8 strings

// JS strings are UTF-16 and the RegExp has no `u` flag, so `?` (→ `.`) matches one UTF-16 code
// unit: an astral character needs two. Regex paths therefore read text and pattern as UTF-16
// units. Invalid UTF-8 cannot come from a JS peer; each bad byte is read as U+FFFD.
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

std::u16string to_utf16(std::string_view s) {
  std::u16string out;
  out.reserve(s.size());
  Utf16Reader reader(s);
  char16_t unit = 0;
  while (reader.next(unit)) out.push_back(unit);
  return out;
}

// A JS `.` (no `s` flag) matches any UTF-16 unit except the four line terminators.
bool is_line_terminator(char16_t unit) {
  return unit == u'\n' || unit == u'\r' || unit == 0x2028 || unit == 0x2029;
}

// ---------------------------------------------------------------------------------------------
// Common patterns: NFA over the atoms of JS's regex text

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

// Characters that give JS's regex text more meaning than the four atoms above. A leading `$` is
// escaped by JS; any other `$` is an end-of-input assertion.
bool needs_regex_engine(std::string_view pattern) {
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

// Adds the states reachable by letting stars match nothing. These moves only go forward, so one
// ascending pass is enough.
void close_over_stars(const Token* tokens, std::size_t count, unsigned char* states) {
  for (std::size_t i = 0; i < count; ++i) {
    if (states[i] && is_star(tokens[i])) states[i + 1] = 1;
  }
}

// Anchored match as a set-of-states NFA: O(len(text) * tokens), without the exponential
// backtracking a naive star matcher can hit. State i means "tokens before i are matched";
// `states` has room for two sets of count + 1 entries.
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
    bool alive = false;
    for (std::size_t i = 0; i < count; ++i) {
      if (!current[i] || !accepts(tokens[i], unit)) continue;
      next[is_star(tokens[i]) ? i : i + 1] = 1;
      alive = true;
    }
    if (!alive) return false;
    close_over_stars(tokens, count, next);
    std::swap(current, next);
  }
  return current[count] != 0;
}

bool match_tokens(std::string_view text, std::string_view pattern) {
  // Subscription patterns are short: keep them off the heap.
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

// ---------------------------------------------------------------------------------------------
// Patterns with other metacharacters: JS's regex text, parsed and run like V8 would
//
// JS replaces every `?` of the pattern, so the regex text never contains `?`: no lazy
// quantifiers, no `(?:`, lookarounds or named groups. What remains: literals, `.`, classes,
// escapes, capturing groups, backreferences, `|`, `^`, `$`, `\b`, `\B` and the greedy
// quantifiers `*`, `+`, `{n}`, `{n,}`, `{n,m}`. No flags are set.

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

// The regex text exactly as JS builds it. Replacing on UTF-8 gives the same result as on UTF-16
// because every searched string starts with an ASCII byte or a UTF-8 lead byte.
std::string js_regex_source(std::string_view pattern) {
  std::string source(pattern);
  if (starts_with(source, "$")) source.insert(0, "\\");
  replace_all(source, "?", ".");
  replace_all(source, "**", kPlaceholder);
  replace_all(source, "*", "[^\\.]*");
  replace_all(source, kPlaceholder, ".*");
  return "^" + source + "$";
}

constexpr std::uint32_t kInfinity = UINT32_MAX;

enum class ClassEscape : unsigned char { kDigit, kNotDigit, kWord, kNotWord, kSpace, kNotSpace };

bool is_word_unit(char16_t u) {
  return (u >= u'a' && u <= u'z') || (u >= u'A' && u <= u'Z') || (u >= u'0' && u <= u'9') ||
         u == u'_';
}

// JS's \s: WhiteSpace and LineTerminator.
bool is_space_unit(char16_t u) {
  return (u >= 0x09 && u <= 0x0D) || u == 0x20 || u == 0xA0 || u == 0x1680 ||
         (u >= 0x2000 && u <= 0x200A) || u == 0x2028 || u == 0x2029 || u == 0x202F || u == 0x205F ||
         u == 0x3000 || u == 0xFEFF;
}

bool in_escape(ClassEscape escape, char16_t u) {
  switch (escape) {
    case ClassEscape::kDigit:
      return u >= u'0' && u <= u'9';
    case ClassEscape::kNotDigit:
      return !(u >= u'0' && u <= u'9');
    case ClassEscape::kWord:
      return is_word_unit(u);
    case ClassEscape::kNotWord:
      return !is_word_unit(u);
    case ClassEscape::kSpace:
      return is_space_unit(u);
    case ClassEscape::kNotSpace:
      return !is_space_unit(u);
  }
  return false;
}

struct CharClass {
  bool negated = false;
  std::vector<std::pair<char16_t, char16_t>> ranges;
  std::vector<ClassEscape> escapes;

  bool contains(char16_t u) const {
    bool found =
        std::any_of(ranges.begin(), ranges.end(),
                    [u](const auto& r) { return u >= r.first && u <= r.second; }) ||
        std::any_of(escapes.begin(), escapes.end(), [u](ClassEscape e) { return in_escape(e, u); });
    return found != negated;
  }
};

struct Node;
using Sequence = std::vector<Node>;  // one alternative: terms in order

struct Node {
  enum class Type : unsigned char {
    kUnit,             // one literal UTF-16 unit
    kDot,              // `.`
    kClass,            // `[...]`, `\d`, `\w`, `\s` and negations
    kLineBegin,        // `^` (no `m` flag: input start only)
    kLineEnd,          // `$`
    kWordBoundary,     // `\b`
    kNotWordBoundary,  // `\B`
    kGroup,            // `(...)`, capturing
    kBackreference,    // `\n`
  };
  Type type = Type::kUnit;
  char16_t unit = 0;
  CharClass char_class;
  std::vector<Sequence> alternatives;  // kGroup
  unsigned group = 0;                  // kGroup, kBackreference: 1-based capture index
  unsigned inner_first = 0;            // captures inside the term, cleared on each repetition
  unsigned inner_count = 0;
  std::uint32_t min = 1;
  std::uint32_t max = 1;

  bool single_unit() const {
    return type == Type::kUnit || type == Type::kDot || type == Type::kClass;
  }
};

bool is_digit(char16_t c) {
  return c >= u'0' && c <= u'9';
}
bool is_octal(char16_t c) {
  return c >= u'0' && c <= u'7';
}
bool is_ascii_letter(char16_t c) {
  return (c >= u'a' && c <= u'z') || (c >= u'A' && c <= u'Z');
}

// Recursive-descent parser for the ECMAScript pattern grammar in non-unicode mode with Annex B.
// Returns false where JS throws a SyntaxError.
class Parser {
 public:
  explicit Parser(std::u16string_view source) : s_(source) { total_groups_ = count_groups(); }

  bool parse(std::vector<Sequence>& root) {
    if (!disjunction(root)) return false;
    return pos_ == s_.size();  // a stray `)` stops the disjunction early
  }
  unsigned group_count() const { return total_groups_; }

 private:
  // Backreference or octal escape (`\2`) depends on the total number of groups, so count them
  // first. Every `(` outside a class opens a capturing group since `(?` cannot occur.
  unsigned count_groups() const {
    unsigned count = 0;
    bool in_class = false;
    for (std::size_t i = 0; i < s_.size(); ++i) {
      const char16_t c = s_[i];
      if (c == u'\\') {
        ++i;
      } else if (in_class) {
        in_class = c != u']';
      } else if (c == u'[') {
        in_class = true;
      } else if (c == u'(') {
        ++count;
      }
    }
    return count;
  }

  bool at(char16_t c) const { return pos_ < s_.size() && s_[pos_] == c; }
  bool at(std::size_t offset, char16_t c) const {
    return pos_ + offset < s_.size() && s_[pos_ + offset] == c;
  }

  bool disjunction(std::vector<Sequence>& alternatives) {
    alternatives.emplace_back();
    while (pos_ < s_.size() && !at(u')')) {
      if (at(u'|')) {
        ++pos_;
        alternatives.emplace_back();
        continue;
      }
      if (!term(alternatives.back())) return false;
    }
    return true;
  }

  bool term(Sequence& sequence) {
    Node node;
    const char16_t c = s_[pos_];
    switch (c) {
      case u'^':
        ++pos_;
        node.type = Node::Type::kLineBegin;
        sequence.push_back(std::move(node));
        return true;  // assertions take no quantifier: a following one is "nothing to repeat"
      case u'$':
        ++pos_;
        node.type = Node::Type::kLineEnd;
        sequence.push_back(std::move(node));
        return true;
      case u'\\':
        if (at(1, u'b') || at(1, u'B')) {
          node.type = at(1, u'b') ? Node::Type::kWordBoundary : Node::Type::kNotWordBoundary;
          pos_ += 2;
          sequence.push_back(std::move(node));
          return true;
        }
        if (!atom_escape(node)) return false;
        break;
      case u'(': {
        ++pos_;
        node.type = Node::Type::kGroup;
        node.group = ++groups_seen_;
        if (!disjunction(node.alternatives) || !at(u')')) return false;  // unterminated group
        ++pos_;
        break;
      }
      case u'[':
        ++pos_;
        node.type = Node::Type::kClass;
        if (!char_class(node.char_class)) return false;
        break;
      case u'.':
        ++pos_;
        node.type = Node::Type::kDot;
        break;
      case u'*':
      case u'+':
        return false;  // nothing to repeat
      case u'{': {
        std::uint32_t min = 0, max = 0;
        if (braced_quantifier(min, max, /*consume=*/false) != Braced::kNone) return false;
        ++pos_;  // Annex B: a `{` that is no quantifier is a literal
        node.unit = c;
        break;
      }
      default:  // Annex B: `]` and `}` are literals too
        ++pos_;
        node.unit = c;
        break;
    }
    if (node.type == Node::Type::kGroup) {  // the group itself and the groups nested in it
      node.inner_first = node.group;
      node.inner_count = groups_seen_ - node.group + 1;
    }
    if (!quantifier(node)) return false;
    sequence.push_back(std::move(node));
    return true;
  }

  bool quantifier(Node& node) {
    if (at(u'*')) {
      ++pos_;
      node.min = 0;
      node.max = kInfinity;
    } else if (at(u'+')) {
      ++pos_;
      node.min = 1;
      node.max = kInfinity;
    } else if (at(u'{')) {
      std::uint32_t min = 0, max = 0;
      const Braced braced = braced_quantifier(min, max, /*consume=*/true);
      if (braced == Braced::kOutOfOrder) return false;
      if (braced == Braced::kValid) {
        node.min = min;
        node.max = max;
      }
    }
    return true;
  }

  enum class Braced { kNone, kValid, kOutOfOrder };

  // `{n}`, `{n,}` or `{n,m}` at pos_ (pointing at `{`). Values saturate: text never gets near.
  Braced braced_quantifier(std::uint32_t& min, std::uint32_t& max, bool consume) {
    std::size_t i = pos_ + 1;
    const auto number = [&](std::uint32_t& value) {
      const std::size_t start = i;
      std::uint64_t v = 0;
      while (i < s_.size() && is_digit(s_[i])) {
        v = std::min<std::uint64_t>(v * 10 + (s_[i] - u'0'), kInfinity);
        ++i;
      }
      value = static_cast<std::uint32_t>(v);
      return i > start;
    };
    if (!number(min)) return Braced::kNone;
    max = min;
    if (i < s_.size() && s_[i] == u',') {
      ++i;
      if (!number(max)) max = kInfinity;
    }
    if (i >= s_.size() || s_[i] != u'}') return Braced::kNone;
    if (consume) pos_ = i + 1;
    return min > max ? Braced::kOutOfOrder : Braced::kValid;
  }

  // After `\` outside a class (pos_ at the backslash).
  bool atom_escape(Node& node) {
    if (pos_ + 1 >= s_.size()) return false;  // `\` at end of pattern
    const char16_t c = s_[pos_ + 1];
    if (c >= u'1' && c <= u'9') {
      std::size_t i = pos_ + 1;
      std::uint64_t n = 0;
      while (i < s_.size() && is_digit(s_[i])) {
        n = std::min<std::uint64_t>(n * 10 + (s_[i] - u'0'), kInfinity);
        ++i;
      }
      if (n <= total_groups_) {
        node.type = Node::Type::kBackreference;
        node.group = static_cast<unsigned>(n);
        pos_ = i;
        return true;
      }
      // Annex B: not a group number, so an octal escape (`\8`, `\9`: the digit itself).
    }
    ++pos_;
    return character_escape(node, /*in_class=*/false);
  }

  // pos_ just after a `\`. Shared by atoms and class atoms; the result is a unit or a class
  // escape. Non-unicode mode with Annex B: unknown escapes are the character itself.
  bool character_escape(Node& node, bool in_class) {
    const char16_t c = s_[pos_];
    const auto unit = [&](char16_t u, std::size_t length) {
      node.type = Node::Type::kUnit;
      node.unit = u;
      pos_ += length;
      return true;
    };
    const auto escape = [&](ClassEscape e) {
      node.type = Node::Type::kClass;
      node.char_class.escapes.push_back(e);
      ++pos_;
      return true;
    };
    switch (c) {
      case u'd':
        return escape(ClassEscape::kDigit);
      case u'D':
        return escape(ClassEscape::kNotDigit);
      case u'w':
        return escape(ClassEscape::kWord);
      case u'W':
        return escape(ClassEscape::kNotWord);
      case u's':
        return escape(ClassEscape::kSpace);
      case u'S':
        return escape(ClassEscape::kNotSpace);
      case u'f':
        return unit(u'\f', 1);
      case u'n':
        return unit(u'\n', 1);
      case u'r':
        return unit(u'\r', 1);
      case u't':
        return unit(u'\t', 1);
      case u'v':
        return unit(u'\v', 1);
      case u'b':
        return unit(u'\b', 1);  // only reached inside a class: backspace
      case u'c': {
        // `\cX` is a control character; Annex B also allows digits and `_` inside a class.
        // Otherwise the backslash is a literal and `c` is parsed again as the next atom.
        const char16_t x = pos_ + 1 < s_.size() ? s_[pos_ + 1] : 0;
        if (is_ascii_letter(x) || (in_class && (is_digit(x) || x == u'_'))) {
          return unit(static_cast<char16_t>(x % 32), 2);
        }
        node.type = Node::Type::kUnit;
        node.unit = u'\\';
        return true;
      }
      case u'x':
      case u'u': {
        const std::size_t digits = c == u'x' ? 2 : 4;
        unsigned value = 0;
        for (std::size_t k = 1; k <= digits; ++k) {
          const int h = pos_ + k < s_.size() ? hex_value(s_[pos_ + k]) : -1;
          if (h < 0) return unit(c, 1);  // incomplete: the letter itself
          value = value * 16 + static_cast<unsigned>(h);
        }
        return unit(static_cast<char16_t>(value), digits + 1);
      }
      default:
        break;
    }
    if (is_octal(c)) {
      // Legacy octal: up to three digits while the value stays below 256.
      unsigned value = static_cast<unsigned>(c - u'0');
      std::size_t length = 1;
      const std::size_t limit = c <= u'3' ? 3 : 2;
      while (length < limit && pos_ + length < s_.size() && is_octal(s_[pos_ + length])) {
        value = value * 8 + static_cast<unsigned>(s_[pos_ + length] - u'0');
        ++length;
      }
      return unit(static_cast<char16_t>(value), length);
    }
    return unit(c, 1);  // identity escape, `\8` and `\9` included
  }

  // After `[`; consumes through `]`.
  bool char_class(CharClass& out) {
    if (at(u'^')) {
      out.negated = true;
      ++pos_;
    }
    while (true) {
      if (pos_ >= s_.size()) return false;  // unterminated class
      if (at(u']')) {
        ++pos_;
        return true;
      }
      Node first;
      if (!class_atom(first)) return false;
      if (at(u'-') && pos_ + 1 < s_.size() && s_[pos_ + 1] != u']') {
        ++pos_;
        Node last;
        if (!class_atom(last)) return false;
        if (first.type == Node::Type::kClass || last.type == Node::Type::kClass) {
          // Annex B: a range with `\d`-like ends is both ends plus a literal `-`.
          add_class_atom(out, first);
          add_class_atom(out, last);
          out.ranges.emplace_back(u'-', u'-');
          continue;
        }
        if (first.unit > last.unit) return false;  // range out of order
        out.ranges.emplace_back(first.unit, last.unit);
        continue;
      }
      add_class_atom(out, first);
    }
  }

  bool class_atom(Node& node) {
    if (!at(u'\\')) {
      node.type = Node::Type::kUnit;
      node.unit = s_[pos_++];
      return true;
    }
    if (pos_ + 1 >= s_.size()) return false;  // `\` at end of pattern
    ++pos_;
    return character_escape(node, /*in_class=*/true);
  }

  static void add_class_atom(CharClass& out, const Node& atom) {
    if (atom.type == Node::Type::kClass) {
      out.escapes.insert(out.escapes.end(), atom.char_class.escapes.begin(),
                         atom.char_class.escapes.end());
    } else {
      out.ranges.emplace_back(atom.unit, atom.unit);
    }
  }

  std::u16string_view s_;
  std::size_t pos_ = 0;
  unsigned total_groups_ = 0;
  unsigned groups_seen_ = 0;
};

// Non-owning reference to a continuation `bool(std::size_t end)`; avoids std::function
// allocations in the recursion below.
class Continuation {
 public:
  template <typename F>
  Continuation(const F& f)  // NOLINT(google-explicit-constructor): lambdas convert implicitly
      : object_(&f),
        call_([](const void* o, std::size_t end) { return (*static_cast<const F*>(o))(end); }) {}
  bool operator()(std::size_t end) const { return call_(object_, end); }

 private:
  const void* object_;
  bool (*call_)(const void*, std::size_t);
};

// Backtracking matcher following the ECMAScript semantics (continuation style, captures cleared
// on each repetition, an empty iteration ends a `*`/`{0,n}` loop). Work and recursion depth are
// bounded so that no subscription can stall or crash the node: past the bounds the answer is "no
// match", where JS would spin (catastrophic patterns such as `(a+)+c?`) or answer after a deep
// recursion (a quantified group repeated more than ~500 times; a repeated single character, a
// class or `.` is looped without recursion and has no such limit).
class Matcher {
 public:
  Matcher(const std::vector<Sequence>& root, unsigned groups, std::u16string_view text)
      : root_(root), text_(text), captures_(2 * (groups + 1), kUnset) {}

  bool search() {
    for (std::size_t start = 0; start <= text_.size() && !aborted_; ++start) {
      std::fill(captures_.begin(), captures_.end(), kUnset);
      if (alternatives(root_, start, [](std::size_t) { return true; })) return true;
    }
    return false;
  }

 private:
  static constexpr std::size_t kUnset = SIZE_MAX;
  static constexpr std::size_t kMaxSteps = 100'000;
  static constexpr std::size_t kMaxDepth = 1'000;

  bool alternatives(const std::vector<Sequence>& alts, std::size_t pos, Continuation next) {
    for (const Sequence& sequence : alts) {
      if (terms(sequence, 0, pos, next)) return true;
    }
    return false;
  }

  bool terms(const Sequence& sequence, std::size_t k, std::size_t pos, Continuation next) {
    if (k == sequence.size()) return next(pos);
    return term(sequence[k], pos,
                [&](std::size_t end) { return terms(sequence, k + 1, end, next); });
  }

  bool term(const Node& node, std::size_t pos, Continuation next) {
    if (aborted_ || ++steps_ > kMaxSteps || depth_ >= kMaxDepth) {
      aborted_ = true;
      return false;
    }
    ++depth_;
    bool matched = false;
    if (node.min == 1 && node.max == 1) {
      matched = atom(node, pos, next);
    } else if (node.single_unit()) {
      // Greedy run of single units, tried longest first: same result as the generic loop,
      // without one level of recursion per unit.
      std::size_t run = 0;
      while (run < node.max && pos + run < text_.size() && unit_matches(node, text_[pos + run])) {
        ++run;
      }
      for (std::size_t n = run + 1; n-- > node.min && !matched && !aborted_;) {
        matched = next(pos + n);
      }
    } else {
      matched = repeat(node, node.min, node.max, pos, next);
    }
    --depth_;
    return matched;
  }

  // RepeatMatcher of the ECMAScript spec, greedy.
  bool repeat(const Node& node, std::uint32_t min, std::uint32_t max, std::size_t pos,
              Continuation next) {
    if (max == 0) return next(pos);
    const auto again = [&](std::size_t end) {
      if (min == 0 && end == pos) return false;  // an empty iteration ends the loop
      if (aborted_ || depth_ >= kMaxDepth) {
        aborted_ = true;
        return false;
      }
      ++depth_;
      const bool matched =
          repeat(node, min == 0 ? 0 : min - 1, max == kInfinity ? kInfinity : max - 1, end, next);
      --depth_;
      return matched;
    };
    const auto first = captures_.begin() + 2 * node.inner_first;
    const std::vector<std::size_t> saved(first, first + 2 * node.inner_count);
    std::fill(first, first + 2 * node.inner_count, kUnset);
    if (atom(node, pos, again)) return true;
    std::copy(saved.begin(), saved.end(), captures_.begin() + 2 * node.inner_first);
    return min == 0 && next(pos);
  }

  bool unit_matches(const Node& node, char16_t u) const {
    switch (node.type) {
      case Node::Type::kUnit:
        return u == node.unit;
      case Node::Type::kDot:
        return !is_line_terminator(u);
      case Node::Type::kClass:
        return node.char_class.contains(u);
      default:
        return false;
    }
  }

  bool word_before(std::size_t pos) const { return pos > 0 && is_word_unit(text_[pos - 1]); }
  bool word_at(std::size_t pos) const { return pos < text_.size() && is_word_unit(text_[pos]); }

  bool atom(const Node& node, std::size_t pos, Continuation next) {
    switch (node.type) {
      case Node::Type::kUnit:
      case Node::Type::kDot:
      case Node::Type::kClass:
        return pos < text_.size() && unit_matches(node, text_[pos]) && next(pos + 1);
      case Node::Type::kLineBegin:
        return pos == 0 && next(pos);
      case Node::Type::kLineEnd:
        return pos == text_.size() && next(pos);
      case Node::Type::kWordBoundary:
        return word_before(pos) != word_at(pos) && next(pos);
      case Node::Type::kNotWordBoundary:
        return word_before(pos) == word_at(pos) && next(pos);
      case Node::Type::kBackreference: {
        const std::size_t begin = captures_[2 * node.group];
        const std::size_t end = captures_[2 * node.group + 1];
        if (begin == kUnset || end == kUnset) return next(pos);  // unset group: matches empty
        const std::size_t length = end - begin;
        return pos + length <= text_.size() &&
               text_.compare(pos, length, text_.substr(begin, length)) == 0 && next(pos + length);
      }
      case Node::Type::kGroup:
        return alternatives(node.alternatives, pos, [&](std::size_t end) {
          const std::size_t old_begin = captures_[2 * node.group];
          const std::size_t old_end = captures_[2 * node.group + 1];
          captures_[2 * node.group] = pos;
          captures_[2 * node.group + 1] = end;
          if (next(end)) return true;
          captures_[2 * node.group] = old_begin;
          captures_[2 * node.group + 1] = old_end;
          return false;
        });
    }
    return false;
  }

  const std::vector<Sequence>& root_;
  std::u16string_view text_;
  std::vector<std::size_t> captures_;
  std::size_t steps_ = 0;
  std::size_t depth_ = 0;
  bool aborted_ = false;
};

// `new RegExp(source).test(text)`; a source JS rejects never matches.
bool match_regex_engine(std::string_view text, std::string_view pattern) {
  const std::u16string source = to_utf16(js_regex_source(pattern));
  Parser parser(source);
  std::vector<Sequence> root;
  if (!parser.parse(root)) return false;
  const std::u16string units = to_utf16(text);
  return Matcher(root, parser.group_count(), units).search();
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
  return needs_regex_engine(pattern) ? match_regex_engine(text, pattern)
                                     : match_tokens(text, pattern);
}

}  // namespace steedos::protocol
