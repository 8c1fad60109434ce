#!/usr/bin/env bash
# The Grafana dashboard's picture from a real run (issue 10): nats-server, the node, Prometheus
# (1 s scrapes), the mock auth service, a producer and load clients; see bench/dashboard.js.
#   bench/dashboard.sh [--seconds 120] [--clients 1000] [--rate 200] [--png docs/dashboard.png]
# Needs build/steedos-socket (with /metrics) and build/load-client, tests/interop/node_modules,
# /usr/bin/prometheus and chromium (Debian packages prometheus and chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
export STEEDOS_BUILD_DIR="${STEEDOS_BUILD_DIR:-$PWD/build}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec node bench/dashboard.js "$@"
