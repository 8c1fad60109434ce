#pragma once
// Helpers shared by the cnats users of transport/ (NatsTransporter, JetStream).
#include <nats/nats.h>

#include <string>
#include <vector>

namespace steedos::transport {

/// "Maximum Payload Exceeded: Payload 2000 greater than maximum allowed: 1024": the status text
/// plus cnats' thread-local error text, which must be read on the thread that made the failing
/// call, right after it. cnats prefixes that text with "(file.c:123): ", dropped here.
std::string status_text(natsStatus status);

/// "nats://a:4222, nats://b:4222" -> {"nats://a:4222", "nats://b:4222"} (blanks trimmed, empty
/// entries dropped).
std::vector<std::string> split_urls(const std::string& urls);

/// Sets the connection secure when a URL of the list is tls://. cnats reads only host and port
/// from a URL and would go on in plain text with a server that offers no TLS; secure from the
/// start, it refuses such a server (NATS_SECURE_CONNECTION_WANTED) instead of sending
/// credentials and packets in the clear.
natsStatus require_tls_if_asked(natsOptions* options, const std::vector<std::string>& urls);

}  // namespace steedos::transport
