#pragma once
// The JSON type used on every path: ordered, so payloads keep the key order their
// producer chose (browsers and services compare serialized forms).
#include <nlohmann/json.hpp>
#include <string>

namespace steedos {

using Json = nlohmann::ordered_json;

/// Serializes without throwing on invalid UTF-8 (replaced by U+FFFD): a peer's bad bytes must
/// never crash the node.
inline std::string dump_json(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace steedos
