#include "gateway/ws_frame.hpp"

#include <websocketpp/frame.hpp>

namespace steedos::gateway::ws {

namespace wsframe = websocketpp::frame;

static_assert(kMaxServerHeader == wsframe::MAX_HEADER_LENGTH - 4,
              "a server header is websocketpp's longest header without the masking key");

void append_header(std::string& out, Opcode opcode, std::uint64_t payload_size) {
  // websocketpp's basic_header / extended_header hold the bytes; they are copied straight into
  // `out`, skipping the temporary string prepare_header() would build.
  const wsframe::basic_header basic(static_cast<wsframe::opcode::value>(opcode), payload_size,
                                    /*fin=*/true, /*mask=*/false);
  const wsframe::extended_header extended(payload_size);
  out.push_back(static_cast<char>(basic.b0));
  out.push_back(static_cast<char>(basic.b1));
  out.append(reinterpret_cast<const char*>(extended.bytes),
             wsframe::get_header_len(basic) - wsframe::BASIC_HEADER_LENGTH);
}

void append_frame(std::string& out, Opcode opcode, std::string_view prefix,
                  std::string_view payload) {
  append_header(out, opcode, prefix.size() + payload.size());
  out.append(prefix);
  out.append(payload);
}

std::string frame(Opcode opcode, std::string_view payload) {
  std::string out;
  out.reserve(kMaxServerHeader + payload.size());
  append_frame(out, opcode, {}, payload);
  return out;
}

}  // namespace steedos::gateway::ws
