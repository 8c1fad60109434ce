#include "transport/url_redaction.hpp"

namespace steedos::transport {

std::string redact_credentials(const std::string& urls) {
  std::string result;
  std::size_t start = 0;
  while (start <= urls.size()) {
    auto end = urls.find(',', start);
    if (end == std::string::npos) end = urls.size();
    std::string item = urls.substr(start, end - start);
    const auto scheme = item.find("://");
    const auto host_start = scheme == std::string::npos ? 0 : scheme + 3;
    // The last '@' before the path: a password may itself contain '@' when not encoded.
    const auto at = item.rfind('@', item.find('/', host_start));
    if (at != std::string::npos && at >= host_start) {
      item = item.substr(0, host_start) + "***" + item.substr(at);
    }
    if (start > 0) result += ",";
    result += item;
    start = end + 1;
  }
  return result;
}

}  // namespace steedos::transport
