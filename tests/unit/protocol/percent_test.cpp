#include "protocol/percent.hpp"

#include <doctest/doctest.h>

#include <optional>
#include <string>

using steedos::protocol::decode_uri_component;
using steedos::protocol::hex_value;
using steedos::protocol::percent_decode;
using steedos::protocol::percent_escaped_byte;
using steedos::protocol::PlusIs;

namespace {
std::optional<std::string> some(std::string text) {
  return text;
}
}  // namespace

TEST_SUITE("percent") {
  TEST_CASE("hex_value reads both cases, bytes and UTF-16 code units") {
    CHECK(hex_value('0') == 0);
    CHECK(hex_value('9') == 9);
    CHECK(hex_value('a') == 10);
    CHECK(hex_value('f') == 15);
    CHECK(hex_value('A') == 10);
    CHECK(hex_value('F') == 15);
    for (char c : {'g', 'G', '/', ':', '@', '`', ' ', '%', '\0', '\xff'}) {
      CAPTURE(c);
      CHECK(hex_value(c) == -1);
    }
    CHECK(hex_value(u'c') == 12);
    CHECK(hex_value(u'\uff10') == -1);  // FULLWIDTH DIGIT ZERO is no hex digit
    static_assert(hex_value('B') == 11, "usable in constant expressions");
  }

  TEST_CASE("percent_escaped_byte: a whole escape or -1") {
    CHECK(percent_escaped_byte("%41", 0) == 0x41);
    CHECK(percent_escaped_byte("x%fF", 1) == 0xff);
    CHECK(percent_escaped_byte("%4", 0) == -1);   // truncated
    CHECK(percent_escaped_byte("%", 0) == -1);    // truncated
    CHECK(percent_escaped_byte("%4g", 0) == -1);  // not hex
    CHECK(percent_escaped_byte("A41", 0) == -1);  // no '%'
    CHECK(percent_escaped_byte("%41", 3) == -1);  // past the end
    CHECK(percent_escaped_byte("%41", 9) == -1);
  }

  TEST_CASE("percent_decode: lenient, malformed escapes kept literally") {
    CHECK(percent_decode("") == "");
    CHECK(percent_decode("plain") == "plain");
    CHECK(percent_decode("%2F%2f%41%6a") == "//Aj");  // upper- and lower-case hex
    CHECK(percent_decode("%00") == std::string(1, '\0'));
    CHECK(percent_decode("%E4%B8%AD") == "\xE4\xB8\xAD");
    CHECK(percent_decode("%C0%AF%FF") == "\xC0\xAF\xFF");  // bytes, no UTF-8 check
    CHECK(percent_decode("%zz%41") == "%zzA");             // bad digits, then a good escape
    CHECK(percent_decode("%4") == "%4");                   // truncated
    CHECK(percent_decode("a%") == "a%");                   // trailing
    CHECK(percent_decode("%%41") == "%A");
    CHECK(percent_decode("%2541") == "%41");  // decoded once only
  }

  TEST_CASE("percent_decode: '+' is a space only for query strings") {
    CHECK(percent_decode("a+b") == "a+b");
    CHECK(percent_decode("a+b", PlusIs::Literal) == "a+b");
    CHECK(percent_decode("a+b", PlusIs::Space) == "a b");
    CHECK(percent_decode("a%2Bb+c", PlusIs::Space) == "a+b c");  // an escaped '+' stays '+'
    CHECK(percent_decode("%+41", PlusIs::Space) == "% 41");
  }

  TEST_CASE("decode_uri_component mirrors decodeURIComponent") {
    CHECK(decode_uri_component("") == some(""));
    CHECK(decode_uri_component("plain") == some("plain"));
    CHECK(decode_uri_component("%2F%3f") == some("/?"));
    CHECK(decode_uri_component("a+b") == some("a+b"));  // '+' is literal
    CHECK(decode_uri_component("%C3%A9") == some("\xC3\xA9"));
    CHECK(decode_uri_component("%e4%b8%ad") == some("\xE4\xB8\xAD"));
    CHECK(decode_uri_component("%F0%9F%98%80") == some("\xF0\x9F\x98\x80"));
    CHECK(decode_uri_component("%F4%8F%BF%BF") == some("\xF4\x8F\xBF\xBF"));  // U+10FFFF
    CHECK(decode_uri_component("\xC3\xA9%41") == some("\xC3\xA9"
                                                      "A"));  // raw bytes kept
  }

  TEST_CASE("decode_uri_component refuses what JS throws URIError for") {
    for (const char* bad : {
             "%",             // truncated
             "%4",            // truncated
             "a%4",           // truncated at the end
             "%zz",           // not hex
             "%41%g1",        // a later bad escape fails the whole text
             "%80",           // lone continuation byte
             "%C1%81",        // overlong 2-byte lead
             "%E0%80%80",     // overlong 3-byte
             "%F0%80%80%80",  // overlong 4-byte
             "%ED%A0%80",     // surrogate U+D800
             "%F4%90%80%80",  // past U+10FFFF
             "%F5%80%80%80",  // lead byte past F4
             "%E4%41%AD",     // bad continuation
             "%E4%B8",        // sequence cut short
             "%E4%B8A",       // continuation not escaped
         }) {
      CAPTURE(bad);
      CHECK_FALSE(decode_uri_component(bad).has_value());
    }
  }
}
