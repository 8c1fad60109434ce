// What the JetStream recovery store costs on this machine (transport/jetstream.hpp against a
// running nats-server -js): the latency of a blocking publish, the throughput of asynchronous
// publishes, of reads from a sequence, and the bytes a stored message costs above its payload
// (the stream's byte count before and after). Prints figures; asserts nothing.
//
//   nats-server -js -sd /tmp/js-bench -p 4333 &
//   build/jetstream-bench --url nats://127.0.0.1:4333 --count 20000 --size 200
#include <algorithm>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "transport/jetstream.hpp"

using namespace steedos::transport;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string url = "nats://127.0.0.1:4222";
  int count = 10000;
  int size = 200;
  size_t window = 1000;
  JsStorage storage = JsStorage::File;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i];
    const std::string value = argv[i + 1];
    if (key == "--url") {
      a.url = value;
    } else if (key == "--count") {
      a.count = std::max(1, std::atoi(value.c_str()));
    } else if (key == "--size") {
      a.size = std::max(0, std::atoi(value.c_str()));
    } else if (key == "--window") {
      a.window = static_cast<size_t>(std::max(1, std::atoi(value.c_str())));
    } else if (key == "--storage") {
      a.storage = value == "memory" ? JsStorage::Memory : JsStorage::File;
    } else {
      std::fprintf(stderr, "unknown option %s\n", key.c_str());
      std::exit(2);
    }
  }
  return a;
}

double micros(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

[[noreturn]] void die(const std::string& what, const JsStatus& st) {
  std::fprintf(stderr, "%s: %s (%s)\n", what.c_str(), st.message.c_str(), to_string(st.error));
  std::exit(1);
}

JsStreamState state(JetStream& js) {
  auto st = js.stream_state("BENCH");
  if (!st) die("stream state", st);
  return st.value;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  asio::io_context loop;
  JetStreamOptions options;
  options.url = args.url;
  options.max_pending_acks = args.window;
  auto made = JetStream::connect(loop, options);
  if (!made) die("connect", made);
  JetStream& js = *made.value;
  if (auto probed = js.probe(); !probed) die("probe", probed);

  js.delete_stream("BENCH");  // a fresh stream per run; NotFound the first time
  JsStreamSpec spec;
  spec.name = "BENCH";
  spec.subjects = {"bench.>"};
  spec.max_age = std::chrono::minutes(10);
  spec.max_bytes = int64_t{1} << 30;
  spec.storage = args.storage;
  if (auto ensured = js.ensure_stream(spec); !ensured) die("ensure stream", ensured);

  const std::string payload(static_cast<size_t>(args.size), 'x');
  const std::string subject = "bench.room.0123456789";  // 21 characters, like a room subject
  std::printf("jetstream-bench: %d messages of %d bytes on %s, %s storage, async window %zu\n",
              args.count, args.size, subject.c_str(),
              args.storage == JsStorage::File ? "file" : "memory", args.window);

  // 1. Blocking publishes, one at a time: the round trip of one stored message.
  const JsStreamState before = state(js);
  std::vector<double> latencies;
  latencies.reserve(static_cast<size_t>(args.count));
  const auto sync_start = Clock::now();
  for (int i = 0; i < args.count; ++i) {
    const auto t0 = Clock::now();
    auto r = js.publish(subject, payload);
    if (!r) die("publish", r);
    latencies.push_back(micros(Clock::now() - t0));
  }
  const double sync_seconds = micros(Clock::now() - sync_start) / 1e6;
  const JsStreamState after = state(js);
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double p) {
    return latencies[std::min(latencies.size() - 1, static_cast<size_t>(p * latencies.size()))];
  };
  std::printf(
      "sync publish: %.0f msg/s, latency p50 %.0f us, p90 %.0f us, p99 %.0f us, max %.0f us\n",
      args.count / sync_seconds, pct(0.50), pct(0.90), pct(0.99), latencies.back());
  const double per_message =
      static_cast<double>(after.bytes - before.bytes) / static_cast<double>(args.count);
  std::printf("stored bytes per message: %.1f (payload %d, subject %zu, overhead %.1f)\n",
              per_message, args.size, subject.size(), per_message - args.size);

  // 2. Asynchronous publishes, at most `window` awaiting their ack.
  size_t sent = 0;
  size_t acked = 0;
  size_t failed = 0;
  auto guard = asio::make_work_guard(loop);
  const auto async_start = Clock::now();
  while (acked + failed < static_cast<size_t>(args.count)) {
    while (sent < static_cast<size_t>(args.count) && js.pending_acks() < args.window) {
      auto st = js.publish_async(subject, payload, [&](JsResult<uint64_t> r) {
        if (r) {
          ++acked;
        } else {
          ++failed;
        }
      });
      if (!st) break;  // Busy: let acks come in
      ++sent;
    }
    loop.run_for(std::chrono::milliseconds(1));
  }
  const double async_seconds = micros(Clock::now() - async_start) / 1e6;
  std::printf("async publish: %.0f msg/s (%zu acked, %zu failed)\n", acked / async_seconds, acked,
              failed);

  // 3. Reading everything back from the first sequence, 1000 per read.
  const auto read_start = Clock::now();
  size_t read = 0;
  int reads = 0;
  uint64_t from = 1;
  for (;;) {
    JsReadLimits limits;
    limits.max_messages = 1000;
    limits.max_bytes = 8 << 20;
    auto batch = js.read("BENCH", subject, from, limits);
    if (!batch) die("read", batch);
    ++reads;
    read += batch.value.messages.size();
    if (batch.value.messages.empty()) break;
    from = batch.value.messages.back().sequence + 1;
    if (!batch.value.more) break;
  }
  const double read_seconds = micros(Clock::now() - read_start) / 1e6;
  std::printf("read back: %zu messages in %d reads, %.0f msg/s (%.2f ms per read of 1000)\n", read,
              reads, read / read_seconds, read_seconds * 1000 / reads);

  // 4. A short read: what a reconnecting client with a few missed events costs.
  const uint64_t last = state(js).last_sequence;
  const auto small_start = Clock::now();
  const int small_reads = 200;
  for (int i = 0; i < small_reads; ++i) {
    auto batch = js.read("BENCH", subject, last - 9);
    if (!batch || batch.value.messages.size() != 10) die("short read", batch);
  }
  std::printf("read of the last 10: %.0f us each\n",
              micros(Clock::now() - small_start) / small_reads);
  const auto empty_start = Clock::now();
  for (int i = 0; i < small_reads; ++i) {
    auto batch = js.read("BENCH", subject, last + 1);
    if (!batch || !batch.value.messages.empty()) die("empty read", batch);
  }
  std::printf("read with nothing missed: %.0f us each\n",
              micros(Clock::now() - empty_start) / small_reads);

  js.delete_stream("BENCH");
  return 0;
}
