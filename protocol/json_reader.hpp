#pragma once
// A faster route to the same DOM as Json::parse. nlohmann's own DOM parser grows each
// ordered_map by push_back, and a vector of pair<const std::string, Json> cannot move its
// elements when it reallocates: every growth step deep-copies the values parsed so far (20-30 %
// of a Moleculer packet's parse time). This SAX builder gathers an object's members first and
// moves them into a map reserved to the exact size.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "protocol/json.hpp"

namespace steedos::protocol {

/// Why parse_json() refused a text.
enum class JsonRefusal : std::uint8_t {
  Invalid,  // not one JSON value (Json::parse would discard it)
  TooDeep,  // arrays/objects nested deeper than `max_depth`
};

/// The document in `text`, or nullopt where Json::parse(text, nullptr, false) is discarded or
/// where arrays/objects nest deeper than `max_depth` (refused at the first level too many,
/// before anything deeper is built; the parse itself never recurses). Otherwise the same result
/// as Json::parse, including duplicate keys (first position, last value). `why`, when given,
/// receives the reason for a refusal.
std::optional<Json> parse_json(std::string_view text, std::size_t max_depth = kMaxPacketJsonDepth,
                               JsonRefusal* why = nullptr);

/// An empty object with room for `members` entries, so filling it never reallocates (see above).
Json reserved_object(size_t members);

}  // namespace steedos::protocol
