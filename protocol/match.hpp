#pragma once
// Moleculer's event-name matcher, `utils.match(text, pattern)` of moleculer 0.14/0.15, copied
// with its quirks so that routing decisions agree with JS nodes (spec: moleculer-node.md §4.4).
#include <string_view>

namespace steedos::protocol {

/// True when event name `text` matches subscription `pattern` exactly as JS `match()` decides.
bool match_event(std::string_view text, std::string_view pattern);

}  // namespace steedos::protocol
