#pragma once
// Percent-decoding (RFC 3986 §2.1) in the two flavours the gateway's peers use: Node's lenient
// querystring unescaping for request targets, and ECMAScript's strict decodeURIComponent for
// cookie values. Pure: no allocation beyond the result, no exceptions.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace steedos::protocol {

/// The value of an ASCII hex digit of either case, or -1. A template so that UTF-16 code units
/// (JavaScript regex escapes in protocol/match.cpp) share it with bytes.
template <typename Char>
constexpr int hex_value(Char c) {
  if (c >= Char('0') && c <= Char('9')) return static_cast<int>(c - Char('0'));
  if (c >= Char('a') && c <= Char('f')) return static_cast<int>(c - Char('a')) + 10;
  if (c >= Char('A') && c <= Char('F')) return static_cast<int>(c - Char('A')) + 10;
  return -1;
}

/// The byte the escape `%XX` at `pos` of `text` stands for, or -1 when there is no well-formed
/// escape there (no '%', a non-hex digit, or fewer than two characters left).
int percent_escaped_byte(std::string_view text, std::size_t pos);

/// Whether '+' means a space: only in `application/x-www-form-urlencoded` query strings.
enum class PlusIs { Literal, Space };

/// Lenient decoding, as Node's querystring.unescape: a malformed or truncated escape (`%zz`,
/// `%4`, a trailing `%`) is kept literally and decoding goes on after it; decoded bytes are not
/// checked for UTF-8. '+' becomes ' ' with PlusIs::Space (an escaped `%2B` stays '+').
std::string percent_decode(std::string_view text, PlusIs plus = PlusIs::Literal);

/// ECMAScript decodeURIComponent: nullopt where JS throws URIError (any malformed escape, or
/// escapes that are not well-formed UTF-8: overlong forms, surrogates, past U+10FFFF, truncated
/// sequences). Bytes outside escapes are copied as they are; '+' is literal.
std::optional<std::string> decode_uri_component(std::string_view text);

}  // namespace steedos::protocol
