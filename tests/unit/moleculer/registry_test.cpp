#include "moleculer/registry.hpp"

#include <doctest/doctest.h>

using namespace steedos;
using namespace steedos::moleculer;

namespace {

Json info(const std::string& sender, long long seq, const std::string& instance,
          Json services = Json::array()) {
  return Json{{"services", std::move(services)},
              {"ipList", Json::array({"192.0.2.2"})},
              {"hostname", "vm"},
              {"client", {{"type", "nodejs"}}},
              {"config", Json::object()},
              {"instanceID", instance},
              {"metadata", Json::object()},
              {"seq", seq},
              {"ver", "4"},
              {"sender", sender}};
}

Json service(const std::string& name, std::vector<std::string> actions,
             std::vector<std::pair<std::string, std::string>> events = {}) {
  Json s = Json{{"name", name},
                {"fullName", name},
                {"settings", Json::object()},
                {"metadata", Json::object()},
                {"actions", Json::object()},
                {"events", Json::object()}};
  for (const auto& a : actions) {
    s["actions"][name + "." + a] = Json{{"rawName", a}, {"name", name + "." + a}};
  }
  for (const auto& [pattern, group] : events) {
    Json e = Json{{"name", pattern}};
    if (!group.empty()) e["group"] = group;
    s["events"][pattern] = e;
  }
  return s;
}

const auto t0 = Clock::now();

}  // namespace

TEST_SUITE("registry") {
  TEST_CASE("INFO with the same seq does not change the services; a higher seq does") {
    Registry r("me");
    CHECK(r.process_info(info("js", 2, "i1", Json::array({service("a", {"x"})})), t0, 0) ==
          InfoOutcome::Connected);
    CHECK(r.find_action("a.x"));
    r.process_info(info("js", 2, "i1", Json::array({service("b", {"y"})})), t0, 0);
    CHECK(r.find_action("a.x"));
    CHECK_FALSE(r.find_action("b.y"));
    CHECK(r.process_info(info("js", 3, "i1", Json::array({service("b", {"y"})})), t0, 0) ==
          InfoOutcome::Updated);
    CHECK_FALSE(r.find_action("a.x"));
    CHECK(r.find_action("b.y"));
  }

  TEST_CASE("a new instanceID replaces the services even with a lower seq") {
    Registry r("me");
    r.process_info(info("js", 5, "i1", Json::array({service("a", {"x"})})), t0, 0);
    r.process_info(info("js", 1, "i2", Json::array({service("b", {"y"})})), t0, 0);
    CHECK(r.find_action("b.y"));
    CHECK_FALSE(r.find_action("a.x"));
    CHECK(r.find_node("js")->instance_id == "i2");
  }

  TEST_CASE("a missing seq counts as 1; own INFO and INFO without sender are ignored") {
    Registry r("me");
    Json no_seq = info("js", 0, "i1", Json::array({service("a", {"x"})}));
    no_seq.erase("seq");
    r.process_info(no_seq, t0, 0);
    CHECK(r.find_node("js")->seq == 1);
    CHECK(r.process_info(info("me", 9, "other"), t0, 0) == InfoOutcome::Ignored);
    Json anonymous = info("x", 1, "i");
    anonymous.erase("sender");
    CHECK(r.process_info(anonymous, t0, 0) == InfoOutcome::Ignored);
  }

  TEST_CASE("heartbeat expiry, reconnect and removal of offline nodes") {
    Registry r("me");
    r.process_info(info("js", 1, "i1", Json::array({service("a", {"x"})})), t0, 0);
    CHECK(
        r.process_heartbeat(Json{{"sender", "js"}, {"cpu", 12}}, t0 + std::chrono::seconds(1), 1));
    CHECK(r.find_node("js")->cpu == 12);
    CHECK(r.expired_nodes(t0 + std::chrono::seconds(2), std::chrono::seconds(3)).empty());
    auto expired = r.expired_nodes(t0 + std::chrono::seconds(5), std::chrono::seconds(3));
    REQUIRE(expired == std::vector<std::string>{"js"});
    CHECK(r.disconnect_node("js", t0 + std::chrono::seconds(5), 5));
    CHECK_FALSE(r.find_action("a.x"));
    // A heartbeat from an offline node asks for DISCOVER; its INFO reconnects it with the same seq.
    CHECK_FALSE(r.process_heartbeat(Json{{"sender", "js"}}, t0 + std::chrono::seconds(6), 6));
    CHECK(r.process_info(info("js", 1, "i1", Json::array({service("a", {"x"})})),
                         t0 + std::chrono::seconds(6), 6) == InfoOutcome::Reconnected);
    CHECK(r.find_action("a.x"));
    CHECK(r.disconnect_node("js", t0 + std::chrono::seconds(7), 7));
    CHECK(r.remove_offline_nodes(t0 + std::chrono::seconds(8), std::chrono::seconds(60)).empty());
    CHECK(r.remove_offline_nodes(t0 + std::chrono::seconds(70), std::chrono::seconds(60)) ==
          std::vector<std::string>{"js"});
    CHECK(r.find_node("js") == nullptr);
    CHECK_FALSE(r.process_heartbeat(Json{{"sender", "ghost"}}, t0, 0));  // unknown: DISCOVER it
  }

  TEST_CASE("action endpoints: local first, round robin, protected actions hidden") {
    Registry r("me");
    r.set_local_services(Json::array({service("math", {"add"})}));
    r.process_info(info("n1", 1, "i", Json::array({service("math", {"add"}), service("q", {"z"})})),
                   t0, 0);
    r.process_info(info("n2", 1, "i", Json::array({service("q", {"z"})})), t0, 0);
    CHECK(r.pick_action_endpoint("math.add", true)->local);
    std::vector<std::string> picked;
    for (int i = 0; i < 4; ++i) picked.push_back(r.pick_action_endpoint("q.z", true)->node_id);
    CHECK(picked == std::vector<std::string>{"n1", "n2", "n1", "n2"});
    Json hidden = service("h", {"p"});
    hidden["actions"]["h.p"]["visibility"] = "protected";
    r.process_info(info("n3", 1, "i", Json::array({hidden})), t0, 0);
    CHECK(r.find_action("h.p") == nullptr);
  }

  TEST_CASE("event lists are kept per (pattern, group) and matched with JS rules") {
    Registry r("me");
    r.process_info(
        info("n1", 1, "i",
             Json::array({service("svc", {}, {{"user.*", ""}, {"audit.**", "auditors"}})})),
        t0, 0);
    r.process_info(info("n2", 1, "i", Json::array({service("svc", {}, {{"user.*", ""}})})), t0, 0);
    auto lists = r.matching_event_lists("user.created", {});
    REQUIRE(lists.size() == 1);
    CHECK(lists[0]->group == "svc");
    CHECK(lists[0]->endpoints.size() == 2);
    CHECK(r.matching_event_lists("audit.a.b", {}).size() == 1);
    CHECK(r.matching_event_lists("audit.a.b", {"svc"}).empty());
    CHECK(r.matching_event_lists("user.created", {"other"}).empty());
    auto first = r.pick_event_endpoint(*lists[0], true)->node_id;
    auto second = r.pick_event_endpoint(*lists[0], true)->node_id;
    CHECK(first != second);
  }
}
