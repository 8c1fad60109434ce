// libFuzzer target: the reader of incoming WebSocket frames (gateway/ws_frame_reader.hpp), fed
// as WebSocketConnection feeds it: straight from each read, keeping only the unfinished tail.
// The same stream fed whole and split at fuzzer-chosen points must give the same frames, the
// same error and leave the same unfinished tail: TCP may cut the bytes anywhere. Messages keep
// to the size limit, control payloads to 125 bytes, close codes to the valid ones.
//
// Input: byte 0 picks the message size limit, byte 1 the number of cuts (0..15), then two bytes
// per cut (offsets, taken modulo the stream length), then the stream.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/ws_frame_reader.hpp"
#include "tests/fuzz/fuzz_assert.hpp"

namespace ws = steedos::gateway::ws;

namespace {

// What an open connection makes of the frames, as a list of events to compare.
struct Recorder {
  std::size_t limit;
  std::vector<std::string> events;
  bool failed = false;

  bool on_message(std::string_view data, bool binary) {
    FUZZ_ASSERT(data.size() <= limit);
    if (!binary && !ws::valid_utf8(data)) {
      on_error(1007);  // as WebSocketConnection::deliver
      return false;
    }
    events.push_back((binary ? "B" : "T") + std::string(data));
    return true;
  }
  bool on_ping(std::string_view payload) {
    FUZZ_ASSERT(payload.size() <= 125);
    events.push_back("I" + std::string(payload));
    return true;
  }
  bool on_pong(std::string_view payload) {
    FUZZ_ASSERT(payload.size() <= 125);
    events.push_back("O" + std::string(payload));
    return true;
  }
  bool on_close(std::uint16_t code, std::string_view reason) {
    FUZZ_ASSERT(code == 1005 || ws::valid_close_code(code));
    FUZZ_ASSERT(reason.size() <= 123 && ws::valid_utf8(reason));
    FUZZ_ASSERT(code != 1005 || reason.empty());
    events.push_back("C" + std::to_string(code) + ":" + std::string(reason));
    return false;  // as the connection: a close frame ends the current parse
  }
  void on_error(std::uint16_t code) {
    FUZZ_ASSERT(code == ws::kCloseProtocolError || code == ws::kCloseTooBig || code == 1007);
    FUZZ_ASSERT(!failed);
    failed = true;
    events.push_back("E" + std::to_string(code));
  }
};

// WebSocketConnection::feed: parse from the read itself, keep the unparsed tail; after an error
// nothing more is read. Unlike the connection, a parse stopped by a close frame is resumed at
// once (the connection resumes on its next read), so the result does not depend on the cuts.
struct Feeder {
  ws::FrameReader reader;
  Recorder recorder;
  std::string pending;

  explicit Feeder(std::size_t limit) : reader(limit), recorder{limit, {}, false} {}

  std::size_t parse_all(char* data, std::size_t size) {
    std::size_t pos = 0;
    while (!recorder.failed) {
      const std::size_t used = reader.parse(data + pos, size - pos, recorder);
      FUZZ_ASSERT(used <= size - pos);
      if (used == 0) break;
      pos += used;
    }
    return pos;
  }

  void feed(std::string chunk) {  // a copy: the reader unmasks in place
    if (recorder.failed) return;
    if (pending.empty()) {
      const std::size_t used = parse_all(chunk.data(), chunk.size());
      if (!recorder.failed) pending.assign(chunk, used, std::string::npos);
    } else {
      pending += chunk;
      pending.erase(0, parse_all(pending.data(), pending.size()));
    }
    if (recorder.failed) pending.clear();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  // Small limits reach the 1009 path; 0xFF is the connection's default.
  const std::size_t limit = data[0] == 0xFF ? 1000000 : data[0];
  const std::size_t cuts_count = data[1] % 16;
  if (size < 2 + 2 * cuts_count) return 0;
  const std::string stream(reinterpret_cast<const char*>(data) + 2 + 2 * cuts_count,
                           size - 2 - 2 * cuts_count);
  std::vector<std::size_t> cuts;
  for (std::size_t i = 0; i < cuts_count; ++i) {
    const std::size_t offset = (std::size_t{data[2 + 2 * i]} << 8) | data[3 + 2 * i];
    cuts.push_back(offset % (stream.size() + 1));
  }
  std::sort(cuts.begin(), cuts.end());
  cuts.push_back(stream.size());

  Feeder whole(limit);
  whole.feed(stream);

  Feeder split(limit);
  std::size_t from = 0;
  for (const std::size_t cut : cuts) {
    split.feed(stream.substr(from, cut - from));
    from = cut;
  }

  FUZZ_ASSERT(whole.recorder.events == split.recorder.events);
  FUZZ_ASSERT(whole.recorder.failed == split.recorder.failed);
  FUZZ_ASSERT(whole.pending == split.pending);
  FUZZ_ASSERT(whole.reader.in_message() == split.reader.in_message());
  // The unfinished tail is part of one frame, whose length was checked on its header: the
  // reader never holds more than a header (14 bytes at most) and an allowed payload.
  FUZZ_ASSERT(whole.pending.size() < 14 + std::max<std::size_t>(limit, 125));
  return 0;
}
