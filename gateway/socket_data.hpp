#pragma once
// The base of what an application keeps in a Socket.IO socket's slot (Socket::data()). A
// virtual destructor and nothing else: the application's type derives from it, so its state is
// one allocation owned by the socket, with no shared_ptr control block and no std::any holder.

namespace steedos::gateway {

struct SocketData {
  virtual ~SocketData() = default;
};

}  // namespace steedos::gateway
