// The fuzz targets as regression tests in the ordinary build (no clang, no libFuzzer): each
// target's LLVMFuzzerTestOneInput, linked into replay-<target>, runs over its corpus,
// tests/fuzz/corpus/<target>.b64 (one input per line,
// base64: the inputs scripts/fuzz.sh found, minimised to the set that covers the same code), and
// over fixed mutations of each input. A broken invariant aborts (FUZZ_ASSERT) and fails the test.
// Long fuzzing under ASan/UBSan stays in scripts/fuzz.sh; this keeps what it found from
// regressing on every test run.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::string decode_base64(const std::string& text) {
  static const std::string alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t bits = 0;
  int count = 0;
  for (char c : text) {
    const auto index = alphabet.find(c);
    if (index == std::string::npos) continue;  // '=' padding, '\r'
    bits = (bits << 6) | static_cast<uint32_t>(index);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out.push_back(static_cast<char>((bits >> count) & 0xff));
    }
  }
  return out;
}

// tests/fuzz/corpus/<target>.b64 for the binary replay-<target> (one object file serves every
// target, so the corpus is found from the binary's name).
std::string corpus_file;

std::vector<std::string> read_corpus() {
  std::ifstream file(corpus_file);
  std::vector<std::string> inputs;
  std::string line;
  while (std::getline(file, line)) inputs.push_back(decode_base64(line));
  return inputs;
}

void run(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

// What libFuzzer's cheapest mutators do: flip a bit, overwrite a byte with a boundary value,
// drop a range, duplicate a range, cut the tail.
std::string mutate(const std::string& input, std::mt19937& random) {
  std::string out = input;
  if (out.empty()) return std::string(1, static_cast<char>(random() & 0xff));
  const size_t at = random() % out.size();
  switch (random() % 5) {
    case 0:
      out[at] = static_cast<char>(out[at] ^ (1 << (random() % 8)));
      break;
    case 1: {
      static const char boundaries[] = {'\0', '\x7f', '\x80', '\xff', '"', '\\', '{', '['};
      out[at] = boundaries[random() % sizeof boundaries];
      break;
    }
    case 2:
      out.erase(at, 1 + random() % 16);
      break;
    case 3:
      out.insert(at, out.substr(at, 1 + random() % 16));
      break;
    default:
      out.resize(at);
      break;
  }
  return out;
}

constexpr int kMutationsPerInput = 16;

}  // namespace

TEST_CASE("the corpus replays without breaking an invariant") {
  const auto inputs = read_corpus();
  REQUIRE_MESSAGE(!inputs.empty(), "no inputs in " << corpus_file);
  for (const auto& input : inputs) run(input);
  MESSAGE(inputs.size() << " inputs");
}

TEST_CASE("fixed mutations of the corpus break no invariant") {
  const auto inputs = read_corpus();
  REQUIRE(!inputs.empty());
  std::mt19937 random(20261205);  // fixed: a failure reproduces
  for (const auto& input : inputs) {
    for (int i = 0; i < kMutationsPerInput; ++i) run(mutate(input, random));
  }
  MESSAGE(inputs.size() * kMutationsPerInput << " mutated inputs");
}

int main(int argc, char** argv) {
  std::string name = argc > 0 ? argv[0] : "";
  name = name.substr(name.find_last_of('/') + 1);
  const std::string prefix = "replay-";
  if (name.compare(0, prefix.size(), prefix) == 0) name = name.substr(prefix.size());
  corpus_file = std::string(STEEDOS_SOURCE_DIR) + "/tests/fuzz/corpus/" + name + ".b64";
  doctest::Context context(argc, argv);
  return context.run();
}
