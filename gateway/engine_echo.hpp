#pragma once
// The Engine.IO conformance application (spec: socketio-server.md §3.2): every message goes back
// to its sender unchanged, text as text and binary as binary.
#include <string>
#include <string_view>

#include "gateway/engine.hpp"

namespace steedos::gateway {

class EchoEngineHandler : public EngineHandler {
 public:
  void on_open(EngineSocket& socket) override;
  void on_message(EngineSocket& socket, std::string_view data, bool binary) override;
  void on_close(EngineSocket& socket, const std::string& reason) override;
};

}  // namespace steedos::gateway
