#pragma once
// Cluster-wide operator actions (issue 12): the node that receives `socket.<action>` with
// `cluster: true` asks every live `socket` node of Moleculer's registry the same action without
// `cluster`, each with its own timeout and all at once, and answers when every node replied or
// timed out. A dead or paused node costs the caller one timeout, never a stalled answer, and is
// named in `missing`. The receiving node answers for itself locally (no bus round trip).
//
// Threading: the broker's loop thread only, like the broker.
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "moleculer/broker.hpp"
#include "protocol/json.hpp"

namespace steedos::services {

/// What the nodes answered to one cluster-wide action.
struct NodeAnswers {
  /// nodeID -> that node's answer (the data of its reply): this node first, then the others
  /// in the order they answered.
  Json nodes = Json::object();
  /// The nodes that did not answer: nodeID and reason ("timeout", or the error's message).
  std::vector<std::pair<std::string, std::string>> missing;
};

/// The other live nodes of a service, by how a broadcast for them travels: the nodes whose
/// service declares `$sharedEventSubject` share one publish on the shared EVENT subject; the
/// others (older versions of the service) get one targeted EVENT each.
struct ServicePeers {
  size_t on_shared_subject = 0;
  std::vector<std::string> targeted;
  /// Peers that consume the same event history (`history` given): left out of the two above.
  std::vector<std::string> on_history;
};
/// The service metadata key that names the event history a gateway delivers from (the
/// `jetstream` recovery store): its peers on the same history need no forwarded events.
inline constexpr const char* kHistoryStreamKey = "$historyStream";
ServicePeers peers_of_service(const moleculer::Registry& registry, const std::string& service,
                              const std::string& history = {});

/// Asks `action` with `params` of every live node other than this one that offers the action,
/// each call with `timeout_ms`, in parallel; `local_answer` is this node's own answer. Calls
/// `done` once, when the last node answered or timed out (at once when no other node offers the
/// action). `parent` (may be null): the operator's call, for the request id and level.
void ask_every_node(moleculer::Broker& broker, const std::string& action, const Json& params,
                    Json local_answer, int timeout_ms, const moleculer::ContextPtr& parent,
                    std::function<void(NodeAnswers)> done);

/// The cluster reply of an action: `{ nodes, total, missing: [{ nodeID, reason }] }`.
Json cluster_reply(NodeAnswers answers, Json total);

/// The sum of `answers`' numbers, key by key through nested objects (the answers share one
/// shape); keys in `skip` (strings, and values that are not numbers or objects) are left out.
/// socket.stats: every counter of the cluster; socket.disconnect / join / leave: the counts.
Json sum_counts(const Json& answers, const std::vector<std::string>& skip = {});

/// socket.clients `cluster: true`: every node's list concatenated, each entry with its `nodeID`.
Json concat_client_lists(const Json& answers);

}  // namespace steedos::services
