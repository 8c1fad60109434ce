#include "transport/nats_status.hpp"

#include <algorithm>
#include <string_view>

namespace steedos::transport {

std::string status_text(natsStatus status) {
  std::string text = natsStatus_GetText(status);
  natsStatus last = NATS_OK;
  const char* raw = nats_GetLastError(&last);
  if (raw == nullptr || last != status) return text;
  std::string_view detail(raw);
  if (!detail.empty() && detail.front() == '(') {
    const auto end = detail.find("): ");
    if (end != std::string_view::npos) detail.remove_prefix(end + 3);
  }
  if (!detail.empty() && detail != text) {
    text += ": ";
    text += detail;
  }
  return text;
}

std::vector<std::string> split_urls(const std::string& urls) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= urls.size()) {
    size_t comma = urls.find(',', start);
    if (comma == std::string::npos) comma = urls.size();
    std::string url = urls.substr(start, comma - start);
    const auto first = url.find_first_not_of(" \t");
    const auto last = url.find_last_not_of(" \t");
    if (first != std::string::npos) out.push_back(url.substr(first, last - first + 1));
    start = comma + 1;
  }
  return out;
}

natsStatus require_tls_if_asked(natsOptions* options, const std::vector<std::string>& urls) {
  const bool asked = std::any_of(
      urls.begin(), urls.end(), [](const std::string& url) { return url.rfind("tls://", 0) == 0; });
  return asked ? natsOptions_SetSecure(options, true) : NATS_OK;
}

}  // namespace steedos::transport
