#include "gateway/engine_echo.hpp"

#include <vector>

namespace steedos::gateway {

void EchoEngineHandler::on_open(EngineSocket&) {}

void EchoEngineHandler::on_message(EngineSocket& socket, std::string_view data, bool binary) {
  std::vector<MessagePart> parts;
  parts.push_back(MessagePart{binary, std::string(data)});
  socket.send(OutgoingPacket::messages(std::move(parts)));
}

void EchoEngineHandler::on_close(EngineSocket&, const std::string&) {}

}  // namespace steedos::gateway
