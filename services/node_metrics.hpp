#pragma once
// The node's Prometheus metrics (GET metrics.path; the names are the contract of
// /work/brief/metrics-names.md, repeated in docs): prometheus-cpp's registry holds the two
// latency histograms, and a Collectable builds every gauge and counter at scrape time from the
// sources `socket.stats` and `$node.list` read (SocketService::stats(), the service's metric
// counters, the gateway's packet counts, the broker's registry and transporter), so a scrape and
// those answers agree exactly. prometheus-cpp's TextSerializer writes the exposition.
//
// Only this unit and app/ include prometheus-cpp: gateway/, moleculer/ and transport/ expose
// plain counters.
//
// Threading: scrapes are served by the gateway's HTTP server on the event loop thread, the
// thread every counter read here is written on, so plain (non-atomic) counters are read safely.
#include <functional>
#include <memory>
#include <string>

#include "gateway/engine_server.hpp"
#include "gateway/socketio_server.hpp"
#include "moleculer/broker.hpp"
#include "services/socket_service.hpp"

namespace prometheus {
class Histogram;
class Registry;
}  // namespace prometheus

namespace steedos::services {

/// Bucket upper bounds (seconds) of the two histograms, as the contract lists them.
extern const std::vector<double> kAuthDurationBuckets;
extern const std::vector<double> kEmitToWriteBuckets;

class NodeMetrics {
 public:
  struct Sources {
    /// The socket.stats reply and the counters the metrics add to it.
    const SocketService* service = nullptr;
    /// `$node.list` (remote nodes), node id, transporter state and traffic.
    const moleculer::Broker* broker = nullptr;
    /// Socket.IO packets and bytes written to clients (SocketIoServer::sent()); zeros if unset.
    std::function<gateway::SentCounts()> sent;
    /// Label of the transporter family and of steedos_socket_info: "nats" or "redis".
    std::string transporter = "nats";
    std::string version;
  };

  explicit NodeMetrics(Sources sources);
  ~NodeMetrics();
  NodeMetrics(const NodeMetrics&) = delete;
  NodeMetrics& operator=(const NodeMetrics&) = delete;

  /// The histograms' observers, for SocketService::observe_latencies.
  LatencyObservers observers();
  /// The text exposition (format 0.0.4) of every family.
  std::string scrape() const;
  /// 200 with scrape() and the exposition's Content-Type; for GatewayServer::mount_handler.
  gateway::HttpResponse response() const;

  static constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  class Collector;
  std::unique_ptr<Collector> collector_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Histogram* auth_duration_ = nullptr;
  prometheus::Histogram* emit_to_write_ = nullptr;
};

}  // namespace steedos::services
