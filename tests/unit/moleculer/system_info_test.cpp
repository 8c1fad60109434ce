#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <regex>
#include <string>
#include <thread>

#include "moleculer/system_info.hpp"

using steedos::Json;
using namespace steedos::moleculer;

namespace {

/// `object` has exactly `keys`, in this order (the JS health object's order).
void check_keys(const Json& object, const std::vector<std::string>& keys) {
  REQUIRE(object.is_object());
  std::vector<std::string> actual;
  for (const auto& item : object.items()) actual.push_back(item.key());
  CHECK(actual == keys);
}

bool is_ipv4(const std::string& s) {
  static const std::regex re(R"(^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$)");
  return std::regex_match(s, re);
}

}  // namespace

TEST_SUITE("system_info") {
  TEST_CASE("host_name is not empty") {
    CHECK_FALSE(host_name().empty());
  }

  TEST_CASE("ip_list holds IPv4 addresses, at least one") {
    const auto ips = ip_list();
    CHECK_FALSE(ips.empty());  // at least loopback
    for (const auto& ip : ips) {
      CAPTURE(ip);
      CHECK(is_ipv4(ip));
    }
    // Internal addresses appear only when there is no external one.
    bool loopback = false, other = false;
    for (const auto& ip : ips) (ip.rfind("127.", 0) == 0 ? loopback : other) = true;
    CHECK_FALSE((loopback && other));
  }

  TEST_CASE("client_info") {
    const auto c = client_info();
    check_keys(c, {"type", "version", "langVersion"});
    CHECK(c["type"] == "cpp");
    CHECK(c["version"].is_string());
    CHECK_FALSE(c["version"].get<std::string>().empty());
    CHECK(c["langVersion"] == "c++17");
  }

  TEST_CASE("CpuMeter samples are within 0..100") {
    CpuMeter meter;
    const int first = meter.sample();
    CHECK(first >= 0);
    CHECK(first <= 100);
    // Burn a little CPU so the second sample has ticks to compare.
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(60);
    volatile unsigned long spin = 0;
    while (std::chrono::steady_clock::now() < until) spin = spin + 1;
    const int second = meter.sample();
    CHECK(second >= 0);
    CHECK(second <= 100);
    const int third = meter.sample();  // possibly no ticks elapsed: still in range
    CHECK(third >= 0);
    CHECK(third <= 100);
  }

  TEST_CASE("health_info has the JS $node.health shape") {
    const auto client = client_info();
    const auto h = health_info(client, 42);
    check_keys(h, {"cpu", "mem", "os", "process", "client", "net", "time"});

    const auto& cpu = h["cpu"];
    check_keys(cpu, {"load1", "load5", "load15", "cores", "utilization"});
    CHECK(cpu["load1"].is_number());
    CHECK(cpu["load5"].is_number());
    CHECK(cpu["load15"].is_number());
    CHECK(cpu["cores"].is_number_integer());
    CHECK(cpu["cores"].get<long>() >= 1);
    CHECK(cpu["utilization"] == 42);

    const auto& mem = h["mem"];
    check_keys(mem, {"free", "total", "percent"});
    CHECK(mem["free"].is_number_integer());
    CHECK(mem["total"].is_number_integer());
    CHECK(mem["percent"].is_number());
    CHECK(mem["total"].get<long long>() > 0);
    CHECK(mem["free"].get<long long>() <= mem["total"].get<long long>());
    const double percent = mem["percent"].get<double>();
    CHECK(percent >= 0);
    CHECK(percent <= 100);
    // JS quirk: percent is the free percentage.
    CHECK(percent ==
          doctest::Approx(100.0 * mem["free"].get<double>() / mem["total"].get<double>()));

    const auto& os = h["os"];
    check_keys(os, {"uptime", "type", "release", "hostname", "arch", "platform", "user"});
    CHECK(os["uptime"].is_number());
    CHECK(os["uptime"].get<double>() > 0);
    CHECK(os["type"] == "Linux");
    CHECK(os["release"].is_string());
    CHECK(os["hostname"] == host_name());
    CHECK(os["arch"].is_string());
#if defined(__x86_64__)
    CHECK(os["arch"] == "x64");
#elif defined(__aarch64__)
    CHECK(os["arch"] == "arm64");
#endif
    CHECK(os["platform"] == "linux");
    const auto& user = os["user"];
    REQUIRE(user.is_object());
    if (!user.empty()) {  // {} when the uid has no passwd entry, as in JS
      check_keys(user, {"uid", "gid", "username", "homedir", "shell"});
      CHECK(user["uid"].is_number_integer());
      CHECK(user["uid"].get<long long>() == static_cast<long long>(::geteuid()));
      CHECK(user["gid"].is_number_integer());
      CHECK(user["username"].is_string());
      CHECK(user["homedir"].is_string());
      CHECK((user["shell"].is_string() || user["shell"].is_null()));
    }

    const auto& process = h["process"];
    check_keys(process, {"pid", "memory", "uptime", "argv"});
    CHECK(process["pid"] == static_cast<long long>(::getpid()));
    check_keys(process["memory"], {"rss", "heapTotal", "heapUsed", "external", "arrayBuffers"});
    for (const auto& field : process["memory"]) CHECK(field.is_number_integer());
    CHECK(process["memory"]["rss"].get<long long>() > 0);
    CHECK(process["uptime"].is_number_float());
    CHECK(process["uptime"].get<double>() >= 0);
    REQUIRE(process["argv"].is_array());
    CHECK_FALSE(process["argv"].empty());
    for (const auto& arg : process["argv"]) CHECK(arg.is_string());

    CHECK(h["client"] == client);

    check_keys(h["net"], {"ip"});
    REQUIRE(h["net"]["ip"].is_array());
    for (const auto& ip : h["net"]["ip"]) CHECK(ip.is_string());

    const auto& time = h["time"];
    check_keys(time, {"now", "iso", "utc"});
    CHECK(time["now"].is_number_integer());
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    CHECK(time["now"].get<long long>() <= now_ms);
    CHECK(time["now"].get<long long>() > now_ms - 60000);
    const auto iso = time["iso"].get<std::string>();
    CHECK(std::regex_match(iso, std::regex(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$)")));
    const auto utc = time["utc"].get<std::string>();
    CHECK(std::regex_match(
        utc, std::regex(R"(^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|)"
                        R"(Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$)")));
    // iso, utc and now describe the same instant.
    const long long now = time["now"].get<long long>();
    char millis[8];
    std::snprintf(millis, sizeof millis, ".%03lldZ", now % 1000);
    CHECK(iso.substr(19) == millis);
    CHECK(iso.substr(11, 8) == utc.substr(17, 8));
  }

  TEST_CASE("process_uptime_seconds grows") {
    const double a = process_uptime_seconds();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const double b = process_uptime_seconds();
    CHECK(a >= 0);
    CHECK(b > a);
  }
}
