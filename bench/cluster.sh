#!/usr/bin/env bash
# Issue 12's cluster benchmark in one command (bench/cluster.js describes the parts and the output):
#
#   bench/cluster.sh [--only through,idle] [--clients N] [--rounds 3] [--nodes 5] [--pin] [--tag T]
#
# through: three gateway nodes against one, same clients and rate (default 3,000 clients);
# idle: --nodes (5) nodes holding --clients (95,000) idle Steedos-like clients, RSS per client and
# one event to all. Writes bench/results/<date>-cluster<T>.md/.json and
# <date>-cluster-idle<T>.md/.json. Needs build/steedos-socket and build/load-client
# (cmake --build build --target steedos-socket load-client), tests/interop/node_modules and
# nats-server (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${STEEDOS_BUILD_DIR:-$PWD/build}
for f in "$build/steedos-socket" "$build/load-client"; do
	[ -x "$f" ] || { echo "cluster.sh: $f missing: cmake --build build --target steedos-socket load-client" >&2; exit 2; }
done
[ -d tests/interop/node_modules ] || { echo "cluster.sh: tests/interop/node_modules missing: scripts/setup.sh" >&2; exit 2; }
command -v "${NATS_SERVER_BIN:-nats-server}" >/dev/null || [ -x /usr/sbin/nats-server ] ||
	{ echo "cluster.sh: nats-server missing: scripts/setup.sh" >&2; exit 2; }
# Every node, load client and this driver inherit the hard limit: a node derives
# gateway.maxConnections from it (minus 64), a load client holds up to --per-load-client (9,500).
ulimit -n "$(ulimit -Hn)"
export STEEDOS_BUILD_DIR=$build
BENCH_COMMAND=$(echo "bench/cluster.sh $*" | sed "s/ *$//") exec node bench/cluster.js "$@"
