// libFuzzer target: the RESP2 decoder (hiredis's reader behind RespDecoder) on bytes from a
// hostile or broken Redis server. The input is fed in pieces whose sizes come from the input
// itself; the same input fed whole must give the same replies, and no reply may exceed the
// decoder's size limit. Every path must end in replies, need_more or a reported error.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/fuzz_assert.hpp"
#include "transport/resp.hpp"

using steedos::transport::RespDecoder;
using steedos::transport::RespReply;

namespace {

constexpr size_t kLimit = 4096;

bool equal(const RespReply& a, const RespReply& b) {
  if (a.type != b.type || a.text != b.text || a.integer != b.integer ||
      a.elements.size() != b.elements.size()) {
    return false;
  }
  for (size_t i = 0; i < a.elements.size(); ++i) {
    if (!equal(a.elements[i], b.elements[i])) return false;
  }
  return true;
}

/// Replies until the first error; `failed` says whether one happened.
std::vector<RespReply> decode(std::string_view wire, size_t step, bool& failed) {
  RespDecoder decoder(kLimit);
  std::vector<RespReply> out;
  failed = false;
  for (size_t pos = 0; pos < wire.size() && !failed; pos += step) {
    decoder.feed(wire.substr(pos, step));
    RespReply reply;
    for (;;) {
      const auto r = decoder.next(reply);
      if (r == RespDecoder::Result::reply) {
        out.push_back(std::move(reply));
        continue;
      }
      if (r == RespDecoder::Result::error) {
        FUZZ_ASSERT(!decoder.error().empty());
        failed = true;
      }
      break;
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t step = size_t(data[0] % 16) + 1;
  const std::string_view wire(reinterpret_cast<const char*>(data) + 1, size - 1);
  bool failed_whole = false;
  bool failed_split = false;
  const auto whole = decode(wire, wire.size() + 1, failed_whole);
  const auto split = decode(wire, step, failed_split);
  // Splitting may only move where an error is noticed, never change the replies before it.
  const size_t common = std::min(whole.size(), split.size());
  for (size_t i = 0; i < common; ++i) FUZZ_ASSERT(equal(whole[i], split[i]));
  if (!failed_whole && !failed_split) FUZZ_ASSERT(whole.size() == split.size());
  return 0;
}
