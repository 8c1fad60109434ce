#include "node_runner.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <cctype>
#include <chrono>
#include <cstring>
#include <iostream>
#include <optional>

#include "common/log.hpp"
#include "common/log_format.hpp"
#include "transporter_factory.hpp"

namespace steedos::app {

namespace {

void print_usage(const char* program, const std::string& more_usage) {
  std::cout << "Usage: " << program << " [--config FILE] [--log-format text|json]\n"
            << "  --config FILE  configuration file (default: $MOLECULER_CONFIG, else "
               "./moleculer.config.json)\n"
            << "  --log-format text|json  log lines as text (default) or one JSON object per "
               "line (overrides logFormat)\n"
            << more_usage
            << "Environment: TRANSPORTER, NAMESPACE, NODEID, PORT, LOGLEVEL, LOGFORMAT, "
               "PROTOCOL_VERSION override the file; MOLECULER_CONFIG names it.\n";
}

spdlog::level::level_enum log_level(const std::string& name) {
  if (name == "trace") return spdlog::level::trace;
  if (name == "debug") return spdlog::level::debug;
  if (name == "warn") return spdlog::level::warn;
  if (name == "error") return spdlog::level::err;
  if (name == "fatal") return spdlog::level::critical;
  return spdlog::level::info;
}

void setup_logging(const std::string& level, const std::string& format) {
  auto logger = spdlog::stderr_color_mt("node");
  spdlog::set_default_logger(logger);
  // Every component logger shares these sinks, and a sink holds the formatter: one setting.
  spdlog::set_formatter(format == "json" ? json_log_formatter() : text_log_formatter());
  spdlog::set_level(log_level(level));
  spdlog::flush_on(spdlog::level::info);
}

/// A configuration error, printed before logging is set up: one JSON record (component
/// "config", the offending key as a field) when the command line or LOGFORMAT asks for JSON,
/// since the file, which may say so too, may be what failed; else the text line.
void report_config_error(const services::ConfigError& error,
                         const std::optional<std::string>& cli_format,
                         const services::Environment& env) {
  const auto wants_json = [](const std::string& value) {
    std::string lower = value;
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return lower == "json";
  };
  const auto env_format = env.find("LOGFORMAT");
  const bool json = cli_format ? wants_json(*cli_format)
                               : env_format != env.end() && wants_json(env_format->second);
  if (!json) {
    std::cerr << "configuration error: " << error.what() << "\n";
    return;
  }
  spdlog::logger logger("config", std::make_shared<spdlog::sinks::stderr_sink_st>());
  logger.set_formatter(json_log_formatter());
  log_with(logger, spdlog::level::critical, {{"key", error.key()}}, "configuration error: {}",
           error.what());
  logger.flush();
}

}  // namespace

int run_node(int argc, char** argv,
             const std::function<void(moleculer::Broker&, const services::Config&)>& add_services) {
  return run_node_with(argc, argv, [&](moleculer::Broker& broker, const services::Config& config) {
    add_services(broker, config);
    return std::make_unique<NodeParts>();
  });
}

int run_node_with(int argc, char** argv, const Assemble& assemble, const std::string& more_usage) {
  std::string config_path;
  std::optional<std::string> log_format;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
      config_path = argv[++i];
    } else if (std::strcmp(argv[i], "--log-format") == 0 && i + 1 < argc) {
      log_format = argv[++i];
    } else if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      print_usage(argv[0], more_usage);
      return 0;
    } else {
      std::cerr << "unknown argument: " << argv[i] << "\n";
      print_usage(argv[0], more_usage);
      return 1;
    }
  }

  services::Config config;
  const auto env = services::read_environment();
  try {
    config = services::load_config(config_path, env);
    if (log_format) config.log_format = services::check_log_format("--log-format", *log_format);
  } catch (const services::ConfigError& e) {
    report_config_error(e, log_format, env);
    return 1;
  }
  setup_logging(config.broker.log_level, config.log_format);
  auto log = component_logger("broker");

  asio::io_context loop(1);
  std::unique_ptr<transport::Transporter> transporter;
  try {
    transporter = make_transporter(loop, config);
  } catch (const std::exception& e) {
    log->critical("cannot start: {}", e.what());
    spdlog::shutdown();
    return 1;
  }
  moleculer::Broker broker(loop, config.broker, std::move(transporter));
  std::unique_ptr<NodeParts> parts;
  try {
    parts = assemble(broker, config);
    parts->set_drain_timeout_ms(config.gateway.drain_timeout_ms);
    parts->start();
  } catch (const std::exception& e) {
    log->critical("cannot start: {}", e.what());
    spdlog::shutdown();
    return 1;
  }

  int exit_code = 0;
  asio::signal_set signals(loop, SIGINT, SIGTERM);
  broker.start([&](std::optional<std::string> error) {
    if (error) {
      log->critical("cannot start: {}", *error);
      exit_code = 1;
      signals.cancel();
      parts->stop();
      loop.stop();
    }
  });
  // The drain: stop accepting, leave the cluster (broker.stop(): INFO without services, then
  // DISCONNECT), close every socket (parts->stop()), wait for the sockets' closing handshakes,
  // exit. The deadline bounds the whole of it.
  using Clock = std::chrono::steady_clock;
  asio::steady_timer deadline(loop);
  asio::steady_timer poll(loop);
  Clock::time_point drain_start;
  bool broker_left = false;
  std::function<void()> finish_when_idle = [&] {
    if (broker_left && parts->open_connections() == 0) {
      deadline.cancel();
      log->info("drained in {} ms",
                std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - drain_start)
                    .count());
      loop.stop();
      return;
    }
    poll.expires_after(std::chrono::milliseconds(10));
    poll.async_wait([&](const std::error_code& ec) {
      if (!ec) finish_when_idle();
    });
  };
  signals.async_wait([&](const std::error_code& ec, int signal) {
    if (ec) return;
    drain_start = Clock::now();
    const int timeout_ms = parts->drain_timeout_ms();
    deadline.expires_after(std::chrono::milliseconds(timeout_ms));
    deadline.async_wait([&, timeout_ms](const std::error_code& timer_ec) {
      if (timer_ec) return;
      log->warn("drain timeout ({} ms): exiting with {} connection(s) open{}", timeout_ms,
                parts->open_connections(), broker_left ? "" : ", before the broker left");
      loop.stop();
    });
    // Refuse new connections, leave the cluster (INFO without services now, DISCONNECT after
    // kStopDelay), then close the sockets: peers see the node leave within ~0.1 s however many
    // sockets it has, and its clients reconnect to a node they know has taken over. The line
    // "draining" is logged once the listeners are closed, so whoever reads it can rely on a new
    // connection being refused.
    parts->stop_accepting();
    log->info("signal {} received; draining (at most {} ms)", signal, timeout_ms);
    broker.stop([&] {
      broker_left = true;
      const auto closing = Clock::now();
      parts->stop();
      log->info(
          "sockets closed in {} ms",
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - closing).count());
      finish_when_idle();
    });
  });
  loop.run();
  parts.reset();
  spdlog::shutdown();
  return exit_code;
}

}  // namespace steedos::app
