#!/usr/bin/env bash
# Faults with figures (issue 9): NATS outage, slow consumer, reconnect storm against the product
# binary; one summary line per scenario. See bench/faults.js.
#   bench/faults.sh [--only nats,slow,storm] [--clients 1000] [--outage-s 30] [--storm-clients 10000]
# Needs build/steedos-socket and build/load-client, tests/interop/node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."
export STEEDOS_BUILD_DIR="${STEEDOS_BUILD_DIR:-$PWD/build}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec node bench/faults.js "$@"
