#include "services/cluster_calls.hpp"

#include <algorithm>
#include <chrono>
#include <memory>

#include "common/log.hpp"

namespace steedos::services {

namespace {

using moleculer::Outcome;

// One cluster-wide call in flight: filled by each node's reply, finished by the last one.
struct Gathering {
  NodeAnswers answers;
  size_t waiting = 0;
  std::string action;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::function<void(NodeAnswers)> done;

  void settle(const std::string& node_id, const Outcome& outcome) {
    if (outcome.ok) {
      answers.nodes[node_id] = outcome.data;
    } else {
      // A timeout is the common case (a dead or paused node): a word; other errors by text.
      answers.missing.emplace_back(
          node_id, outcome.error.type == "REQUEST_TIMEOUT" ? "timeout" : outcome.error.message);
    }
    if (--waiting == 0) finish();
  }

  void finish() {
    std::sort(answers.missing.begin(), answers.missing.end());
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::steady_clock::now() - started)
                       .count();
    std::string missing;
    for (const auto& [node_id, reason] : answers.missing) {
      missing += (missing.empty() ? "" : ", ") + node_id + ": " + reason;
    }
    component_logger("socket")->info("{} cluster: {} node(s) answered, {} missing{} in {} ms",
                                     action, answers.nodes.size(), answers.missing.size(),
                                     missing.empty() ? "" : " (" + missing + ")", elapsed);
    done(std::move(answers));
  }
};

// The INFO entry of the service `service` on `node` (matched by `fullName`, or by `name`
// without a version), or null.
const Json* service_entry(const moleculer::NodeInfo& node, const std::string& service) {
  if (!node.services.is_array()) return nullptr;
  for (const Json& entry : node.services) {
    if (!entry.is_object()) continue;
    if (entry.value("fullName", "") == service) return &entry;
    const auto version = entry.find("version");
    if (entry.value("name", "") == service && (version == entry.end() || version->is_null())) {
      return &entry;
    }
  }
  return nullptr;
}

bool offers_service(const moleculer::NodeInfo& node, const std::string& service) {
  return service_entry(node, service) != nullptr;
}

// The live nodes, other than this one, that run the service of `action` (a node that stopped
// or expired is offline; a paused one stays available until its heartbeats expire, and then
// costs one timeout). A node of the service without this action (an older version) is asked
// too, and its "not found" error names it in `missing` rather than leaving it out unseen.
std::vector<std::string> other_nodes_of_service(const moleculer::Broker& broker,
                                                const std::string& action) {
  const std::string service = action.substr(0, action.rfind('.'));
  std::vector<std::string> ids;
  for (const auto& [id, node] : broker.registry().nodes()) {
    if (node.local || !node.available) continue;
    if (offers_service(node, service)) ids.push_back(id);
  }
  return ids;
}

bool listens_on_shared_subject(const Json& service) {
  const auto metadata = service.find("metadata");
  if (metadata == service.end() || !metadata->is_object()) return false;
  const auto flag = metadata->find(moleculer::kSharedEventSubjectKey);
  return flag != metadata->end() && flag->is_boolean() && flag->get<bool>();
}

bool consumes_history(const Json& service, const std::string& history) {
  const auto metadata = service.find("metadata");
  if (metadata == service.end() || !metadata->is_object()) return false;
  const auto stream = metadata->find(kHistoryStreamKey);
  return stream != metadata->end() && stream->is_string() && *stream == history;
}

void add_numbers(Json& sum, const Json& answer, const std::vector<std::string>& skip) {
  for (auto it = answer.begin(); it != answer.end(); ++it) {
    if (std::find(skip.begin(), skip.end(), it.key()) != skip.end()) continue;
    const Json& value = it.value();
    if (value.is_object()) {
      Json& inner = sum[it.key()];
      if (!inner.is_object()) inner = Json::object();
      add_numbers(inner, value, skip);
    } else if (value.is_number_unsigned() || value.is_number_integer()) {
      Json& slot = sum[it.key()];
      slot = (slot.is_number() ? slot.get<long long>() : 0) + value.get<long long>();
    } else if (value.is_number()) {
      Json& slot = sum[it.key()];
      slot = (slot.is_number() ? slot.get<double>() : 0.0) + value.get<double>();
    }
  }
}

}  // namespace

ServicePeers peers_of_service(const moleculer::Registry& registry, const std::string& service,
                              const std::string& history) {
  ServicePeers peers;
  for (const auto& [id, node] : registry.nodes()) {
    if (node.local || !node.available) continue;
    const Json* entry = service_entry(node, service);
    if (!entry) continue;
    if (!history.empty() && consumes_history(*entry, history)) {
      peers.on_history.push_back(id);
    } else if (listens_on_shared_subject(*entry)) {
      peers.on_shared_subject++;
    } else {
      peers.targeted.push_back(id);
    }
  }
  return peers;
}

void ask_every_node(moleculer::Broker& broker, const std::string& action, const Json& params,
                    Json local_answer, int timeout_ms, const moleculer::ContextPtr& parent,
                    std::function<void(NodeAnswers)> done) {
  auto gathering = std::make_shared<Gathering>();
  gathering->action = action;
  gathering->done = std::move(done);
  gathering->answers.nodes[broker.node_id()] = std::move(local_answer);
  const auto others = other_nodes_of_service(broker, action);
  // One count for this node, released last, so that replies arriving while the calls are still
  // being sent cannot finish the gathering early.
  gathering->waiting = others.size() + 1;
  for (const auto& node_id : others) {
    moleculer::CallOptions options;
    options.node_id = node_id;
    options.timeout_ms = timeout_ms;
    options.parent = parent;
    broker.call(action, params, std::move(options),
                [gathering, node_id](Outcome outcome) { gathering->settle(node_id, outcome); });
  }
  if (--gathering->waiting == 0) gathering->finish();
}

Json cluster_reply(NodeAnswers answers, Json total) {
  Json missing = Json::array();
  for (auto& [node_id, reason] : answers.missing) {
    missing.push_back(Json{{"nodeID", std::move(node_id)}, {"reason", std::move(reason)}});
  }
  return Json{{"nodes", std::move(answers.nodes)},
              {"total", std::move(total)},
              {"missing", std::move(missing)}};
}

Json sum_counts(const Json& answers, const std::vector<std::string>& skip) {
  Json sum = Json::object();
  for (const auto& answer : answers) {
    if (answer.is_object()) add_numbers(sum, answer, skip);
  }
  return sum;
}

Json concat_client_lists(const Json& answers) {
  Json all = Json::array();
  for (auto it = answers.begin(); it != answers.end(); ++it) {
    if (!it.value().is_array()) continue;
    for (const auto& client : it.value()) {
      Json entry = client;
      entry["nodeID"] = it.key();
      all.push_back(std::move(entry));
    }
  }
  return all;
}

}  // namespace steedos::services
