#!/usr/bin/env bash
# Soak (issue 9): bench/soak.js with a real nats-server, a moleculer 0.14 producer, the product
# binary and bench/load_client.cpp clients that check every event; see bench/soak.js.
#   bench/soak.sh [--minutes 10] [--clients 10000] [--rate 1000]
# Needs build/steedos-socket and build/load-client, tests/interop/node_modules. Its last line:
#   soak: <delivered> delivered, <lost> lost, <duplicated> duplicated, <leaked> leaked, rss growth <x>%, p99 <ms> ms
# Exit code non-zero when anything was lost, duplicated or leaked, or RSS grew by 5 % or more.
set -euo pipefail
cd "$(dirname "$0")/.."
export STEEDOS_BUILD_DIR="${STEEDOS_BUILD_DIR:-$PWD/build}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec node bench/soak.js "$@"
