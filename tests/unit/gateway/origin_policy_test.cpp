// The origin rule of gateway-contract.md §2.1 against the real Public Suffix List (Debian's
// libpsl and its packaged list): same-site decisions, malformed values, the three modes.
#include "gateway/origin_policy.hpp"

#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <vector>

using steedos::gateway::OriginPolicy;
using steedos::gateway::parse_host;
using steedos::gateway::parse_origin;
using steedos::gateway::same_site;

namespace {

/// Whether a browser page of `origin` may use a gateway reached as `host`, by the default rule.
bool allowed(const std::string& origin, const std::string& host) {
  return OriginPolicy().decide(&origin, &host).allowed;
}

}  // namespace

TEST_SUITE("origin policy") {
  TEST_CASE("the Public Suffix List decides the site") {
    // Two registrations under a multi-label public suffix.
    CHECK(same_site("a.example.co.uk", "b.example.co.uk"));
    CHECK(same_site("example.co.uk", "www.example.co.uk"));
    CHECK_FALSE(same_site("example.co.uk", "other.co.uk"));
    CHECK_FALSE(same_site("co.uk", "example.co.uk"));
    // Private section entries: every github.io user is a site of their own.
    CHECK_FALSE(same_site("alice.github.io", "bob.github.io"));
    CHECK(same_site("alice.github.io", "docs.alice.github.io"));
    CHECK_FALSE(same_site("github.io", "alice.github.io"));
    CHECK(same_site("github.io", "github.io"));
    // Plain domains.
    CHECK(same_site("steedos.example.com", "socket.example.com"));
    CHECK_FALSE(same_site("example.com", "evil.example"));
    CHECK_FALSE(same_site("example.com", "example.com.evil.example"));
    CHECK_FALSE(same_site("evilexample.com", "example.com"));
  }

  TEST_CASE("IP addresses and single-label hosts match only themselves") {
    CHECK(same_site("127.0.0.1", "127.0.0.1"));
    CHECK_FALSE(same_site("127.0.0.1", "127.0.0.2"));
    CHECK_FALSE(same_site("10.0.0.1", "20.0.0.1"));  // PSL-wise both would be "0.1"-like
    CHECK_FALSE(same_site("1.2.3.4", "5.6.3.4"));
    CHECK(same_site("::1", "::1"));
    CHECK_FALSE(same_site("::1", "::2"));
    CHECK(same_site("localhost", "localhost"));
    CHECK_FALSE(same_site("localhost", "app.localhost"));
    CHECK_FALSE(same_site("localhost", "127.0.0.1"));
    CHECK_FALSE(same_site("intranet", "other"));
  }

  TEST_CASE("Host and Origin parsing: case, trailing dots, ports, IPv6") {
    CHECK(parse_host("Example.COM") == "example.com");
    CHECK(parse_host("example.com.:5100") == "example.com");
    CHECK(parse_host("[::1]:5100") == "::1");
    CHECK(parse_host("[0:0::1]") == "::1");
    CHECK(parse_host("127.0.0.1:80") == "127.0.0.1");
    CHECK_FALSE(parse_host(""));
    CHECK_FALSE(parse_host("example.com:"));
    CHECK_FALSE(parse_host("example.com:99999"));
    CHECK_FALSE(parse_host("example..com"));
    CHECK_FALSE(parse_host("example.com.."));
    CHECK_FALSE(parse_host("exa mple.com"));
    CHECK_FALSE(parse_host("[::1"));
    CHECK_FALSE(parse_host("::1"));
    CHECK_FALSE(parse_host("0x7f.0.0.1"));
    CHECK_FALSE(parse_host("127.1"));

    const auto origin = parse_origin("HTTPS://App.Example.COM.:443");
    REQUIRE(origin);
    CHECK(origin->serialized() == "https://app.example.com");
    CHECK(parse_origin("http://[::1]:8080")->serialized() == "http://[::1]:8080");
    CHECK(parse_origin("http://app.example:80")->serialized() == "http://app.example");
    CHECK(parse_origin("http://app.example:443")->serialized() == "http://app.example:443");
  }

  TEST_CASE("default rule: same site reflected with credentials, port and scheme ignored") {
    const std::string origin = "https://steedos.example.co.uk";
    const std::string host = "socket.example.co.uk:5100";
    const auto decision = OriginPolicy().decide(&origin, &host);
    CHECK(decision.allowed);
    CHECK(decision.allow_origin == origin);
    CHECK(decision.credentials);

    CHECK(allowed("http://localhost:3000", "localhost:5100"));
    CHECK(allowed("http://127.0.0.1:3000", "127.0.0.1:5100"));
    CHECK(allowed("http://[::1]:3000", "[::1]:5100"));
    CHECK(allowed("https://Socket.Example.COM", "steedos.example.com"));
    CHECK(allowed("https://steedos.example.com.", "socket.example.com"));
    CHECK(allowed("http://steedos.example.com", "socket.example.com"));
    CHECK(allowed("https://alice.github.io", "alice.github.io:443"));

    CHECK_FALSE(allowed("https://evil.example", "steedos.example.com"));
    CHECK_FALSE(allowed("https://bob.github.io", "alice.github.io"));
    CHECK_FALSE(allowed("https://other.co.uk", "example.co.uk"));
    CHECK_FALSE(allowed("http://localhost:3000", "127.0.0.1:5100"));
    CHECK_FALSE(allowed("http://127.0.0.1:3000", "localhost:5100"));
  }

  TEST_CASE("default rule: refused origins get no CORS headers") {
    const std::string origin = "https://evil.example";
    const std::string host = "steedos.example.com";
    const auto decision = OriginPolicy().decide(&origin, &host);
    CHECK_FALSE(decision.allowed);
    CHECK(decision.allow_origin.empty());
    CHECK_FALSE(decision.credentials);
  }

  TEST_CASE("malformed Origin values and odd schemes are refused") {
    const std::string host = "example.com";
    for (const char* origin : {"null",
                               "",
                               "example.com",
                               "https://",
                               "https://example.com/",
                               "https://example.com/x",
                               "https://user@example.com",
                               "https://example.com?x",
                               "https://example.com#x",
                               "https://example.com:",
                               "https://example.com:65536",
                               "https://exa mple.com",
                               "https://example.com, https://evil.example",
                               "file://example.com",
                               "chrome-extension://example.com",
                               "ws://example.com",
                               "https://ex\xc3\xa4mple.com",
                               "https://[example.com]",
                               "https://example.com\\@evil.example",
                               "://example.com"}) {
      CAPTURE(origin);
      CHECK_FALSE(allowed(origin, host));
    }
    // A same-site Origin with no or a malformed Host cannot be checked: refused.
    const std::string origin = "https://example.com";
    CHECK_FALSE(OriginPolicy().decide(&origin, nullptr).allowed);
    const std::string bad_host = "example.com:x";
    CHECK_FALSE(OriginPolicy().decide(&origin, &bad_host).allowed);
  }

  TEST_CASE("no Origin: served without CORS headers in every mode but *") {
    const std::string host = "example.com";
    for (const auto& policy : {OriginPolicy(), OriginPolicy::allow_list({"https://app.example"})}) {
      const auto decision = policy.decide(nullptr, &host);
      CHECK(decision.allowed);
      CHECK(decision.allow_origin.empty());
      CHECK_FALSE(decision.credentials);
      CHECK(policy.varies());
    }
  }

  TEST_CASE("allow-list mode: exactly the listed origins, as browsers serialise them") {
    const auto policy = OriginPolicy::allow_list(
        {"https://app.example", "HTTP://Dev.Example:8080", "https://secure.example:443"});
    CHECK(policy.mode() == OriginPolicy::Mode::List);
    CHECK(policy.origins() == std::vector<std::string>{"https://app.example",
                                                       "http://dev.example:8080",
                                                       "https://secure.example"});
    const std::string host = "app.example";
    auto decide = [&](const std::string& origin) { return policy.decide(&origin, &host); };
    const auto ok = decide("https://app.example");
    CHECK(ok.allowed);
    CHECK(ok.allow_origin == "https://app.example");
    CHECK(ok.credentials);
    CHECK(decide("http://dev.example:8080").allowed);
    CHECK(decide("https://secure.example").allowed);
    CHECK_FALSE(decide("http://app.example").allowed);        // scheme
    CHECK_FALSE(decide("https://app.example:8443").allowed);  // port
    CHECK_FALSE(decide("https://www.app.example").allowed);   // host, even on the same site
    CHECK_FALSE(decide("http://dev.example").allowed);
    CHECK_FALSE(decide("null").allowed);
    CHECK_FALSE(decide("https://evil.example").allowed);
    CHECK(decide("https://evil.example").allow_origin.empty());

    CHECK_FALSE(OriginPolicy::allow_list({}).decide(&host, &host).allowed);
  }

  TEST_CASE("allow-list entries that are not origins are refused at start") {
    for (const char* entry : {"null", "*", "app.example", "https://app.example/",
                              "https://app.example/path", "", "https://"}) {
      CAPTURE(entry);
      CHECK_THROWS_AS(OriginPolicy::allow_list({"https://ok.example", entry}),
                      std::invalid_argument);
    }
  }

  TEST_CASE("* mode: any origin, Access-Control-Allow-Origin *, no credentials") {
    const auto policy = OriginPolicy::any();
    CHECK(policy.mode() == OriginPolicy::Mode::Any);
    CHECK_FALSE(policy.varies());
    const std::string host = "steedos.example.com";
    for (const std::string origin : {"https://evil.example", "null", "garbage"}) {
      const auto decision = policy.decide(&origin, &host);
      CHECK(decision.allowed);
      CHECK(decision.allow_origin == "*");
      CHECK_FALSE(decision.credentials);
    }
    CHECK(policy.decide(nullptr, &host).allowed);
  }

  TEST_CASE("log lines get a printable, bounded Origin") {
    using steedos::gateway::printable_origin;
    CHECK(printable_origin("https://a.example") == "https://a.example");
    CHECK(printable_origin("https://a\r\nb") == "https://a??b");
    CHECK(printable_origin(std::string(500, 'a')).size() == 203);
  }
}
