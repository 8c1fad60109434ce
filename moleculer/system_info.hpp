#pragma once
// Facts about this host and process that INFO, HEARTBEAT and $node.health report, in the shapes
// the JS broker uses (spec: moleculer-node.md §2.2, §6).
#include <string>
#include <vector>

#include "protocol/json.hpp"

namespace steedos::moleculer {

std::string host_name();
/// First IPv4 of each interface, external ones only; internal/loopback only when no external
/// exists (as JS `getIpList`).
std::vector<std::string> ip_list();

/// CPU utilisation of the whole machine (0-100, integer percent averaged over all cores) since
/// the previous call, read from /proc/stat. The first call returns the average since boot.
class CpuMeter {
 public:
  int sample();

 private:
  unsigned long long last_idle_ = 0, last_total_ = 0;
};

/// The `$node.health` object: {cpu, mem, os, process, client, net, time}.
Json health_info(const Json& client, int cpu_utilization);

/// Client descriptor for INFO: {type: "cpp", version, langVersion}.
Json client_info();

/// Seconds since this process started (for lastHeartbeatTime/offlineSince style fields).
double process_uptime_seconds();

}  // namespace steedos::moleculer
