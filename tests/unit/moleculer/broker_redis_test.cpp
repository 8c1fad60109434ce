// Two brokers over a real redis-server through the Redis transporter: the start sequence
// (subscribe all, nodeID probe, DISCOVER) relies on the transporter's subscription barrier,
// recovery after a Redis restart on on_disconnected / on_reconnected, the graceful stop on
// flush(). Skipped when redis-server is not installed.
#include <doctest/doctest.h>

#include <memory>
#include <optional>
#include <string>

#include "moleculer/broker.hpp"
#include "tests/unit/support/memory_nodes.hpp"
#include "tests/unit/support/redis_server.hpp"
#include "transport/redis_transporter.hpp"

using namespace steedos;
using namespace steedos::moleculer;
using testing::node_settings;
using testing::run_until;
using testing::start_broker;

namespace {

ServiceSchema adder(const std::string& name) {
  ServiceSchema s;
  s.name = name;
  ActionSchema add;
  add.raw_name = "add";
  add.handler = [](ContextPtr ctx, Respond respond) {
    respond(Outcome::success(ctx->params["a"].get<int>() + ctx->params["b"].get<int>()));
  };
  s.actions.push_back(add);
  return s;
}

/// Calls `action` once and runs the loop until the answer; nullopt on no answer in time.
std::optional<Outcome> call(asio::io_context& loop, Broker& broker, const std::string& action) {
  std::optional<Outcome> result;
  CallOptions options;
  options.timeout_ms = 2000;
  broker.call(action, Json{{"a", 2}, {"b", 3}}, options, [&](Outcome o) { result = std::move(o); });
  run_until(
      loop, [&] { return result.has_value(); }, 5000);
  return result;
}

}  // namespace

TEST_SUITE("broker_redis") {
  TEST_CASE("two brokers over Redis: discovery, calls, a Redis restart, a graceful stop") {
    if (!testing::have_redis()) {
      MESSAGE("redis-server not installed; skipping the brokers over Redis");
      return;
    }
    testing::RedisServer server;
    asio::io_context loop;
    auto make = [&](const std::string& id) {
      auto settings = node_settings(id);
      settings.heartbeat_timeout_s = 3;
      return std::make_unique<Broker>(
          loop, settings, std::make_unique<transport::RedisTransporter>(loop, server.options()));
    };
    auto a = make("a");
    auto b = make("b");
    a->add_service(adder("alpha"));
    b->add_service(adder("beta"));
    REQUIRE(start_broker(loop, *a));
    REQUIRE(start_broker(loop, *b));
    REQUIRE(run_until(loop, [&] {
      return a->registry().find_action("beta.add") && b->registry().find_action("alpha.add");
    }));
    auto r = call(loop, *a, "beta.add");
    REQUIRE(r.has_value());
    CHECK(r->ok);
    CHECK(r->data == 5);
    r = call(loop, *b, "alpha.add");
    REQUIRE(r.has_value());
    CHECK(r->data == 5);
    const auto channels = testing::redis_channels(server);
    CHECK(channels.count("MOL.REQ.a") == 1);
    CHECK(channels.count("MOL.INFO") == 1);
    for (const auto& c : channels) CHECK(c.find("REQB") == std::string::npos);

    server.kill();
    run_until(
        loop, [] { return false; }, 300);
    server.start();
    // Calls work again once both nodes are back (INFO + DISCOVER on reconnect).
    bool recovered = false;
    for (int i = 0; i < 20 && !recovered; ++i) {
      r = call(loop, *a, "beta.add");
      recovered = r && r->ok;
      if (!recovered)
        run_until(
            loop, [] { return false; }, 200);
    }
    CHECK(recovered);

    bool stopped = false;
    b->stop([&] { stopped = true; });
    REQUIRE(run_until(
        loop, [&] { return stopped; }, 5000));
    // a drops b on its DISCONNECT, long before the 3 s heartbeat timeout.
    CHECK(run_until(
        loop, [&] { return a->registry().find_action("beta.add") == nullptr; }, 2000));
    bool a_stopped = false;
    a->stop([&] { a_stopped = true; });
    REQUIRE(run_until(
        loop, [&] { return a_stopped; }, 5000));
  }
}
