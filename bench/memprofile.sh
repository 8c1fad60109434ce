#!/usr/bin/env bash
# Where the bytes of an idle Steedos-like client go (issue 11): the product binary under heaptrack
# with N Steedos-like clients (bench/memprofile.js: nats-server, the fixture's mock auth service,
# build/load-client --plan), the live heap at idle by allocation site and kind per client
# (bench/heaptrack_live.js), then a second run without the profiler for the RSS per client.
#
#   bench/memprofile.sh [--clients 2000] [--workload issue|soak|plain] [--reply mock|steedos] [--top 40]
#                       [--browser-headers] [--long-ids] [--no-heaptrack] [--keep DIR]
# (bench/memprofile.js describes the workloads and replies.)
#
# Needs build/steedos-socket and build/load-client (RelWithDebInfo: heaptrack needs the debug
# info for file:line), tests/interop/node_modules, nats-server, zstd and heaptrack (Debian package
# `heaptrack`, not installed by scripts/setup.sh: `apt-get install -y heaptrack`).
# Prints the heaptrack tables, then `RESULT rss ... per_client_bytes=` of the run without it. The
# heaptrack file stays in --keep DIR (default: a temporary directory, removed).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
clients=2000 workload=issue reply=mock top=40 extra=() heaptrack=1 keep=""
while [ $# -gt 0 ]; do
	case "$1" in
	--clients) clients=$2; shift 2 ;;
	--workload) workload=$2; shift 2 ;;
	--reply) reply=$2; shift 2 ;;
	--browser-headers | --long-ids) extra+=("$1"); shift ;;
	--top) top=$2; shift 2 ;;
	--no-heaptrack) heaptrack=0; shift ;;
	--keep) keep=$2; shift 2 ;;
	*) echo "memprofile.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
build=${STEEDOS_BUILD_DIR:-$root/build}
for f in "$build/steedos-socket" "$build/load-client"; do
	[ -x "$f" ] || { echo "memprofile.sh: $f missing: cmake --build build --target steedos-socket load-client" >&2; exit 2; }
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) > clients + 100 )) || { echo "memprofile.sh: open-file limit $(ulimit -n) too low for $clients clients" >&2; exit 2; }

work=$(mktemp -d /tmp/memprofile.XXXXXX)
trap 'rm -rf "$work"' EXIT
out=${keep:-$work}
mkdir -p "$out"
# The load client logs every client the node closes; under heaptrack the node is killed at the end.
quiet() { grep -v "closed after joining" >&2 || true; }

if [ "$heaptrack" = 1 ]; then
	command -v heaptrack >/dev/null || { echo "memprofile.sh: heaptrack missing: apt-get install -y heaptrack" >&2; exit 2; }
	# The harness starts $STEEDOS_BUILD_DIR/steedos-socket: here a wrapper that runs it under heaptrack.
	mkdir -p "$work/bin"
	cat >"$work/bin/steedos-socket" <<WRAP
#!/bin/sh
exec heaptrack -o "$out/heaptrack-$workload-$reply$(printf '%s' "${extra[@]+"${extra[@]}"}" | tr -d ' ')-$clients" "$build/steedos-socket" "\$@" >/dev/null
WRAP
	chmod +x "$work/bin/steedos-socket"
	ln -s "$build/load-client" "$work/bin/load-client"
	rm -f "$out/heaptrack-$workload-$reply$(printf '%s' "${extra[@]+"${extra[@]}"}" | tr -d ' ')-$clients".*
	result=$(STEEDOS_BUILD_DIR=$work/bin node bench/memprofile.js --clients "$clients" --workload "$workload" --reply "$reply" ${extra[@]+"${extra[@]}"} --heaptrack 2> >(quiet))
	echo "$result" | sed 's/^/heaptrack run: /'
	t0=$(echo "$result" | sed -n 's/^RESULT heaptrack_t0 ms=//p')
	node bench/heaptrack_live.js "$out/heaptrack-$workload-$reply$(printf '%s' "${extra[@]+"${extra[@]}"}" | tr -d ' ')-$clients".zst --clients "$clients" --t0-ms "$t0" --top "$top"
	echo
fi
STEEDOS_BUILD_DIR=$build node bench/memprofile.js --clients "$clients" --workload "$workload" --reply "$reply" ${extra[@]+"${extra[@]}"} 2> >(quiet)
