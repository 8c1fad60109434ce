#!/usr/bin/env bash
# Graceful drain with many WebSocket clients (issue 9): N clients of bench/load_client.cpp on one
# steedos-socket node (gateway.drainTimeout 3000), SIGTERM, then: exit code and time, every
# connection closed (Engine.IO `1` + close frame 1001), the JS producer sees DISCONNECT.
# It runs the many-client case of tests/interop/steedos/drain.test.js with DRAIN_CLIENTS=N
# (the test suite runs it with 1,000).
#   bench/drain.sh [N]     N defaults to 10000 (each process needs N + a few fds; ulimit -n 20000 here)
# Needs: build/steedos-socket and build/load-client (make -C build steedos-socket load-client),
# tests/interop/node_modules.
# Figures (2 cores shared with another test run, load average 4-6; 2026-12-05), 10,000 clients,
# drainTimeout 3000: exit code 0 after 1173-1741 ms (6 runs); closing the 10,000 sessions takes
# 270-650 ms of that, the closing handshakes the rest; every client got `1` and close frame 1001;
# the JS producer saw DISCONNECT after 103-107 ms. 1,000 clients (the test): exit after ~180-200 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
export STEEDOS_BUILD_DIR="${STEEDOS_BUILD_DIR:-$PWD/build}"
cd tests/interop
DRAIN_CLIENTS="$N" node --test --test-concurrency=1 --test-force-exit \
  --test-name-pattern="WebSocket clients" steedos/drain.test.js
