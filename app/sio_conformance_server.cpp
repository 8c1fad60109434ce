// sio-conformance-server: the servers the official protocol suites expect (spec:
// socketio-server.md §3.2, §3.6), on one port: a raw Engine.IO echo server on /engine.io/ and
// the Socket.IO test application on /socket.io/, plus the socket.io-client bundle.
//
//   sio-conformance-server [--port 3000] [--host 127.0.0.1] [--client-dist DIR] [--io-threads N]
//                          [--recovery MS] [--verbose]
//
// --recovery MS turns connection state recovery on (maxDisconnectionDuration MS), as the
// reference server does with `connectionStateRecovery`
// (tests/interop/conformance/recovery.test.js).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <system_error>
#include <thread>

#include "gateway/engine_echo.hpp"
#include "gateway/http_server.hpp"
#include "gateway/socketio_server.hpp"

namespace fs = std::filesystem;
using namespace steedos::gateway;
using steedos::dump_json;
using steedos::Json;

namespace {

constexpr const char* kDefaultClientDist = "tests/interop/node_modules/socket.io-client/dist";

struct Arguments {
  std::string host = "127.0.0.1";
  uint16_t port = 3000;
  std::optional<std::string> client_dist;
  bool verbose = false;
  std::optional<int> recovery_ms;
  size_t io_threads = std::max<size_t>(1, std::thread::hardware_concurrency());
};

void usage(std::ostream& out) {
  out << "usage: sio-conformance-server [--port 3000] [--host 127.0.0.1] [--client-dist DIR]"
         " [--io-threads N (default: the cores)] [--recovery MS] [--verbose]\n";
}

/// A decimal integer in [low, high], or nullopt.
std::optional<long> parse_integer(const std::optional<std::string>& text, long low, long high) {
  if (!text) return std::nullopt;
  char* end = nullptr;
  const long value = std::strtol(text->c_str(), &end, 10);
  if (end == text->c_str() || *end != '\0' || value < low || value > high) return std::nullopt;
  return value;
}

std::optional<Arguments> parse_arguments(int argc, char** argv) {
  Arguments args;
  for (int i = 1; i < argc; ++i) {
    const std::string name = argv[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= argc) return std::nullopt;
      return std::string(argv[++i]);
    };
    if (name == "--port") {
      const auto port = parse_integer(value(), 0, 65535);
      if (!port) return std::nullopt;
      args.port = static_cast<uint16_t>(*port);
    } else if (name == "--host") {
      auto text = value();
      if (!text) return std::nullopt;
      args.host = *text;
    } else if (name == "--client-dist") {
      auto text = value();
      if (!text) return std::nullopt;
      args.client_dist = *text;
    } else if (name == "--io-threads") {
      const auto threads = parse_integer(value(), 1, 256);
      if (!threads) return std::nullopt;
      args.io_threads = static_cast<size_t>(*threads);
    } else if (name == "--recovery") {
      const auto ms = parse_integer(value(), 1, 24L * 3600 * 1000);
      if (!ms) return std::nullopt;
      args.recovery_ms = static_cast<int>(*ms);
    } else if (name == "--verbose") {
      args.verbose = true;
    } else {
      return std::nullopt;
    }
  }
  return args;
}

/// The bundle folder of the interop tests' socket.io-client, looked up from the binary's folder
/// and from the working directory upwards (the binary usually sits in <repo>/build*/).
std::optional<fs::path> find_client_dist(const char* argv0) {
  std::error_code ec;
  std::vector<fs::path> starts;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) exe = fs::absolute(argv0, ec);
  if (!exe.empty()) starts.push_back(exe.parent_path());
  starts.push_back(fs::current_path(ec));
  for (fs::path dir : starts) {
    while (!dir.empty()) {
      fs::path candidate = dir / kDefaultClientDist;
      if (fs::is_directory(candidate, ec)) return candidate;
      if (dir == dir.root_path()) break;
      dir = dir.parent_path();
    }
  }
  return std::nullopt;
}

/// Serves the client bundle below /socket.io/ like the reference's `serveClient`; files that
/// are missing are skipped quietly (the suites do not need them).
void mount_client_bundle(GatewayServer& gateway, const fs::path& dist) {
  struct Bundle {
    const char* name;
    const char* content_type;
  };
  static constexpr Bundle kFiles[] = {
      {"socket.io.js", "application/javascript; charset=utf-8"},
      {"socket.io.min.js", "application/javascript; charset=utf-8"},
      {"socket.io.js.map", "application/json; charset=utf-8"},
      {"socket.io.min.js.map", "application/json; charset=utf-8"},
  };
  std::error_code ec;
  for (const auto& file : kFiles) {
    const fs::path path = dist / file.name;
    if (!fs::is_regular_file(path, ec)) continue;
    gateway.mount_file(std::string("/socket.io/") + file.name, path.string(), file.content_type);
  }
}

/// The first argument as a JSON value, or null (what a client sends is never trusted).
Json first_arg(const RawArgs& args) {
  if (args.empty()) return Json();
  Json value = Json::parse(args[0], nullptr, false);
  return value.is_discarded() ? Json() : value;
}

/// Events of the recovery suite (tests/interop/conformance/recovery.test.js), the same in the
/// reference server (lib/reference-server.js):
///   recovery:join (room, ack)        joins `room`, acks true
///   recovery:rooms (ack)             acks the socket's named rooms
///   recovery:burst ({room, count}, ack)  emits `numbered` 0..count-1, even numbers to `room`,
///                                    odd ones to all, then acks count
///   recovery:disconnect-me           a server disconnect of this socket
void install_recovery_helpers(SocketIoServer& server) {
  constexpr int kMaxBurst = 1000;
  auto& main = server.of("/");
  main.on("recovery:join", [](Socket& socket, const RawArgs& args, const Attachments&, Ack ack) {
    const Json room = first_arg(args);
    if (!room.is_string()) return;
    socket.join(room.get<std::string>());
    if (ack) ack({"true"});
  });
  main.on("recovery:rooms", [](Socket& socket, const RawArgs&, const Attachments&, Ack ack) {
    const std::string rooms = dump_json(Json(socket.rooms()));
    if (ack) ack({rooms});
  });
  main.on("recovery:burst", [&main](Socket&, const RawArgs& args, const Attachments&, Ack ack) {
    const Json request = first_arg(args);
    if (!request.is_object()) return;
    const Json room_json = request.value("room", Json());
    const Json count_json = request.value("count", Json());
    if (!room_json.is_string() || !count_json.is_number_integer()) return;
    const std::string room = room_json.get<std::string>();
    const int count =
        static_cast<int>(std::clamp<int64_t>(count_json.get<int64_t>(), 0, kMaxBurst));
    for (int i = 0; i < count; ++i) {
      const std::string number = std::to_string(i);
      if (i % 2 == 0) {
        main.emit_to({room}, {}, "numbered", {number});
      } else {
        main.emit_all("numbered", {number});
      }
    }
    const std::string acked = std::to_string(count);
    if (ack) ack({acked});
  });
  main.on("recovery:disconnect-me",
          [](Socket& socket, const RawArgs&, const Attachments&, Ack) { socket.disconnect(); });
}

/// The Socket.IO application of the official suite (§3.2).
void install_conformance_app(SocketIoServer& server) {
  // The CONNECT payload goes back as received ("{}" when there was none): raw text, so key
  // order and number formatting survive.
  auto emit_auth = [](Socket& socket) { socket.emit("auth", {socket.auth_raw()}); };
  auto& main = server.of("/");
  main.on_connection(emit_auth);
  main.on("message", [](Socket& socket, const RawArgs& args, const Attachments& attachments, Ack) {
    socket.emit("message-back", args, attachments);
  });
  main.on("message-with-ack", [](Socket&, const RawArgs& args, const Attachments& attachments,
                                 Ack ack) { ack(args, attachments); });
  server.of("/custom").on_connection(emit_auth);
  install_recovery_helpers(server);
}

EngineOptions engine_options(std::string path) {
  EngineOptions options;
  options.path = std::move(path);
  options.ping_interval_ms = 300;
  options.ping_timeout_ms = 200;
  options.max_payload = 1000000;
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  auto args = parse_arguments(argc, argv);
  if (!args) {
    usage(std::cerr);
    return 2;
  }
  if (args->verbose) spdlog::set_level(spdlog::level::debug);

  try {
    asio::io_context io(1);

    // The handlers are declared before the gateway: it must be destroyed first.
    EchoEngineHandler echo;
    SocketIoOptions sio_options;
    sio_options.connect_timeout_ms = 1000;
    sio_options.max_attachment_bytes = 1000000;
    if (args->recovery_ms) {
      sio_options.recovery.enabled = true;
      sio_options.recovery.max_disconnection_duration_ms = *args->recovery_ms;
    }
    SocketIoServer sio(io, sio_options);
    install_conformance_app(sio);

    ServerOptions server_options;
    server_options.host = args->host;
    server_options.port = args->port;
    server_options.io_threads = args->io_threads;
    // The product's default: browser origins of the gateway's own site (the browser suite's page
    // is on 127.0.0.1 like the gateway); the official suites send no Origin.
    server_options.origins = steedos::gateway::OriginPolicy();
    GatewayServer gateway(io, server_options);
    gateway.mount_engine(engine_options("/engine.io/"), echo);
    gateway.mount_engine(engine_options("/socket.io/"), sio);

    std::optional<fs::path> dist;
    if (args->client_dist) {
      dist = fs::path(*args->client_dist);
    } else {
      dist = find_client_dist(argv[0]);
    }
    if (dist) mount_client_bundle(gateway, *dist);

    const uint16_t port = gateway.listen();

    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const std::error_code& ec, int) {
      if (ec) return;
      spdlog::info("stopping");
      gateway.stop();
    });

    std::printf("listening on http://%s:%u\n", args->host.c_str(), static_cast<unsigned>(port));
    std::fflush(stdout);
    io.run();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "sio-conformance-server: " << e.what() << "\n";
    return 1;
  }
}
