#!/usr/bin/env bash
# The issue-11 benchmark, product vs the socket.io baseline, in one command (bench/compare.js
# describes the workloads and the output):
#
#   bench/compare.sh [--quick] [--only a,b,c,d,e,g] [--impl product|baseline|both] [--out BASE]
#                    [--io-threads N] [--no-pin] [--no-chart]
#
# Writes bench/results/<date>.md, .json and .png (--quick: <date>-quick.*) and prints the summary
# table for the README. Needs build/steedos-socket and build/load-client
# (cmake --build build --target steedos-socket load-client), tests/interop/node_modules and
# nats-server (scripts/setup.sh). Installs what only the benchmark needs when it is missing:
# bench/baseline/node_modules (npm ci) and gnuplot (apt-get install gnuplot-nox). A full run takes about 7 minutes on the 2-core machine, --quick
# about 2.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${STEEDOS_BUILD_DIR:-$PWD/build}
for f in "$build/steedos-socket" "$build/load-client"; do
	[ -x "$f" ] || { echo "compare.sh: $f missing: cmake --build build --target steedos-socket load-client" >&2; exit 2; }
done
[ -d tests/interop/node_modules ] || { echo "compare.sh: tests/interop/node_modules missing: scripts/setup.sh" >&2; exit 2; }
if [ ! -d bench/baseline/node_modules/socket.io ]; then
	echo "compare.sh: installing the baseline's packages (npm ci in bench/baseline)" >&2
	(cd bench/baseline && npm ci --no-audit --no-fund >&2)
fi
if ! command -v gnuplot >/dev/null; then
	echo "compare.sh: installing gnuplot-nox for the chart (apt-get)" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y gnuplot-nox >&2 ||
		echo "compare.sh: gnuplot could not be installed: no chart" >&2
fi
# 19,000 clients: the load clients are split in processes of 9,500; the server needs ~N descriptors.
ulimit -n "$(ulimit -Hn)"
export STEEDOS_BUILD_DIR=$build
BENCH_COMMAND=$(echo "bench/compare.sh $*" | sed "s/ *$//") exec node bench/compare.js "$@"
