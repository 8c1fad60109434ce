#pragma once
// The transporter the configuration chose (services::TransportSettings): NATS through cnats, or
// Redis. Kept apart from node_runner so the choice is one small function.
#include <asio/io_context.hpp>
#include <memory>

#include "services/config.hpp"
#include "transport/transporter.hpp"

namespace steedos::app {

/// Builds the configured transporter on `loop` (not yet connected) and logs one info line
/// naming it, without credentials. Throws std::runtime_error when this build lacks it.
std::unique_ptr<transport::Transporter> make_transporter(asio::io_context& loop,
                                                         const services::Config& config);

}  // namespace steedos::app
