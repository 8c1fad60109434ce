#include "transport/url_redaction.hpp"

#include <doctest/doctest.h>

using steedos::transport::redact_credentials;

TEST_CASE("redact_credentials hides user and password of every URL of a list") {
  CHECK(redact_credentials("nats://u:p@a:4222") == "nats://***@a:4222");
  CHECK(redact_credentials("nats://token@a:4222,nats://b:4222,tls://x:y@c:1") ==
        "nats://***@a:4222,nats://b:4222,tls://***@c:1");
  CHECK(redact_credentials("redis://:p%40ss@h:6379/0") == "redis://***@h:6379/0");
  // An unencoded '@' in a password: everything up to the last '@' before the path is hidden.
  CHECK(redact_credentials("nats://u:p@ss@a:4222") == "nats://***@a:4222");
  CHECK(redact_credentials("nats://a:4222/x@y") == "nats://a:4222/x@y");
  CHECK(redact_credentials("nats://a:4222") == "nats://a:4222");
  CHECK(redact_credentials("") == "");
}
