// CPU cost of the broker's hot paths in one process, without sockets: an incoming REQ answered
// with a RES, and an incoming EVENT delivered to a local handler. Side by side with the floor
// any JSON node pays for the same packets (parse the packet, serialize the reply) so the
// broker's own overhead shows as a ratio. Usage: build/broker-path-bench [iterations]
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "common/log.hpp"
#include "moleculer/broker.hpp"
#include "protocol/json.hpp"
#include "transport/transporter.hpp"

namespace {

using steedos::Json;
using namespace steedos::moleculer;
using Clock = std::chrono::steady_clock;

/// Keeps the handlers and counts what the broker publishes; no I/O.
class CaptureTransporter final : public steedos::transport::Transporter {
 public:
  steedos::transport::TransporterHandlers handlers;
  size_t published = 0;
  size_t published_bytes = 0;

  void connect(steedos::transport::TransporterHandlers h) override { handlers = std::move(h); }
  void subscribe(const std::string&, const std::string&, int) override {}
  void unsubscribe(const std::string&, const std::string&) override {}
  bool publish(const std::string&, std::string_view data) override {
    ++published;
    published_bytes += data.size();
    return true;
  }
  void flush(int) override {}
  void close() override {}
  bool connected() const override { return true; }
  std::string last_error() const override { return {}; }
  std::string name() const override { return "Capture"; }
  steedos::transport::TransporterStats stats() const override {
    steedos::transport::TransporterStats stats;
    stats.connected = true;
    stats.messages_sent = published;
    stats.bytes_sent = published_bytes;
    return stats;
  }
};

// What a moleculer 0.14 caller sends (captured from bench/moleculer_rpc.js).
const std::string kRequest =
    R"({"ver":"4","sender":"bench-caller","id":"3f1a9c0e-5b2d-4e3f-9a7b-1c2d3e4f5a6b",)"
    R"("action":"bench.echo","params":{"i":12345,"text":"hello"},"meta":{},"timeout":0,)"
    R"("level":1,"tracing":null,"parentID":null,)"
    R"("requestID":"3f1a9c0e-5b2d-4e3f-9a7b-1c2d3e4f5a6b","caller":null,"stream":false})";
const std::string kEvent =
    R"({"ver":"4","sender":"bench-caller","id":"5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b",)"
    R"("event":"bench.tick","data":{"i":12345},"groups":["bench"],"broadcast":false,)"
    R"("meta":{},"level":1,"tracing":null,"parentID":null,)"
    R"("requestID":"5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b","caller":null,"needAck":null})";

template <typename F>
double ns_per_op(int iterations, F&& op) {
  for (int i = 0; i < iterations / 10; ++i) op();  // warm-up
  const auto started = Clock::now();
  for (int i = 0; i < iterations; ++i) op();
  return std::chrono::duration<double, std::nano>(Clock::now() - started).count() / iterations;
}

}  // namespace

int main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 200000;
  spdlog::set_level(spdlog::level::warn);
  asio::io_context loop;
  BrokerSettings settings;
  settings.node_id = "bench-node";
  auto transporter = std::make_unique<CaptureTransporter>();
  CaptureTransporter& bus = *transporter;
  Broker broker(loop, settings, std::move(transporter));

  size_t events = 0;
  ServiceSchema service;
  service.name = "bench";
  service.actions.push_back({"echo", [](ContextPtr ctx, Respond respond) {
                               Json result = Json::object();
                               result["params"] = std::move(ctx->params);
                               result["nodeID"] = ctx->node_id;
                               respond(Outcome::success(std::move(result)));
                             }});
  service.events.push_back({"bench.tick", "", [&events](ContextPtr) { ++events; }});
  broker.add_service(std::move(service));
  bool started = false;
  broker.start([&started](std::optional<std::string> error) {
    if (error) std::fprintf(stderr, "start failed: %s\n", error->c_str());
    started = !error;
  });
  while (!started) loop.run_one();

  const std::string request_subject = "MOL.REQ.bench-node";
  const std::string event_subject = "MOL.EVENT.bench-node";
  const double request_ns = ns_per_op(iterations, [&] {
    bus.handlers.on_message(request_subject, kRequest);
    loop.poll();
  });
  const double event_ns = ns_per_op(iterations, [&] {
    bus.handlers.on_message(event_subject, kEvent);
    loop.poll();
  });

  // The floor: parse the packet and serialize a reply of the same size, nothing else.
  size_t sink = 0;
  const double request_floor_ns = ns_per_op(iterations, [&] {
    Json packet = Json::parse(kRequest);
    Json res = Json::object();
    res["id"] = packet["id"];
    res["meta"] = packet["meta"];
    res["success"] = true;
    res["data"] = Json{{"params", packet["params"]}, {"nodeID", "bench-caller"}};
    sink += steedos::dump_json(res).size();
  });
  const double event_floor_ns = ns_per_op(iterations, [&] { sink += Json::parse(kEvent).size(); });

  std::printf("broker hot paths, %d iterations (ns per packet; floor = parse + reply only)\n",
              iterations);
  std::printf("REQ -> RES : broker %7.0f ns | floor %7.0f ns | ratio %.2fx\n", request_ns,
              request_floor_ns, request_ns / request_floor_ns);
  std::printf("EVENT      : broker %7.0f ns | floor %7.0f ns | ratio %.2fx\n", event_ns,
              event_floor_ns, event_ns / event_floor_ns);
  if (bus.published < size_t(iterations) || events < size_t(iterations) || sink == 0) {
    std::fprintf(stderr, "not every packet was handled (%zu replies, %zu events)\n", bus.published,
                 events);
    return 1;
  }
  return 0;
}
