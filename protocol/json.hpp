#pragma once
// The JSON type used on every path: ordered, so payloads keep the key order their
// producer chose (browsers and services compare serialized forms).
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>

namespace steedos {

using Json = nlohmann::ordered_json;

/// Serializes without throwing on invalid UTF-8 (replaced by U+FFFD): a peer's bad bytes must
/// never crash the node.
inline std::string dump_json(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

namespace protocol {

/// Deepest array/object nesting accepted in a Socket.IO payload from a browser. Not a reference
/// rule (JSON.parse has none): nlohmann's dump(), copy and operator== recurse once per level, so
/// a 1 MB "[[[[..." that reached a DOM could overflow the stack there. Parsers count the depth
/// in their SAX callbacks and stop at the first level too many, so no such DOM is ever built.
/// Real Steedos payloads (records, filters) nest a few tens of levels.
inline constexpr std::size_t kMaxBrowserJsonDepth = 1000;

/// Deepest nesting accepted in a Moleculer packet (NATS / Redis). A browser's value at its own
/// limit must still fit once wrapped in a packet envelope (packet -> params/data -> args ...),
/// hence the headroom.
inline constexpr std::size_t kMaxPacketJsonDepth = kMaxBrowserJsonDepth + 24;

}  // namespace protocol

}  // namespace steedos
