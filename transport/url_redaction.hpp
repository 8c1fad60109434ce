#pragma once
// Server URLs for log lines and error messages: credentials never leave the process.
#include <string>

namespace steedos::transport {

/// "nats://user:pass@a:4222,nats://b:4222" -> "nats://***@a:4222,nats://b:4222" (any scheme,
/// a comma-separated list or one URL; a URL without credentials is returned as is).
std::string redact_credentials(const std::string& urls);

}  // namespace steedos::transport
