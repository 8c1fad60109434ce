#!/usr/bin/env bash
# The concurrency-relevant tests under ThreadSanitizer (GCC's -fsanitize=thread), in build-tsan
# (its own tree: the flags never reach build/). Not part of scripts/test.sh: a separate build of
# the node takes several minutes on 2 cores. Run it after a change to what runs on more than one
# thread (gateway.ioThreads: gateway/parallel_for.*, WriteScheduler in
# gateway/websocket_connection.*; the transports' client threads that post into the loop).
#
# Usage: scripts/tsan.sh [--unit]
#   1. unit-gateway (ParallelFor, the parallel flush on real sockets) and unit-transport;
#   2. (not with --unit) interop files that write to many WebSocket clients at once, with
#      gateway.ioThreads 2, on NATS: the node and the conformance server built with TSan.
# Every report (TSAN_OPTIONS log_path=build-tsan/tsan/) counts as a failure; exit 0 when none.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
build_dir=${BUILD_DIR:-build-tsan}
unit_only=0
[ "${1:-}" = "--unit" ] && unit_only=1

bash scripts/setup.sh >/dev/null || exit 1
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTEEDOS_TSAN=ON "${launcher[@]}" \
  >/dev/null || exit 1
targets=(unit-gateway unit-transport)
[ "$unit_only" -eq 0 ] && targets+=(steedos-socket sio-conformance-server load-client)
cmake --build "$build_dir" -j"$(nproc)" --target "${targets[@]}" || exit 1

reports="$root/$build_dir/tsan"
rm -rf "$reports"
mkdir -p "$reports"
# second_deadlock_stack: both stacks of a lock-order report. atexit_sleep_ms=0: TSan otherwise
# waits 1 s at exit, which the drain tests' exit deadlines would count. ASLR: GCC 12's TSan maps
# its shadow at fixed addresses; Debian's kernels randomise too many bits for it ("unexpected
# memory mapping"), so each process runs under setarch -R.
export TSAN_OPTIONS="log_path=$reports/report:second_deadlock_stack=1:halt_on_error=0:atexit_sleep_ms=0"
rc=0
setarch "$(uname -m)" -R "$build_dir/unit-gateway" || rc=1
setarch "$(uname -m)" -R "$build_dir/unit-transport" || rc=1

if [ "$unit_only" -eq 0 ]; then
  files=(tests/interop/conformance/engineio.test.js tests/interop/conformance/socketio.test.js
    tests/interop/steedos/events.test.js tests/interop/steedos/rooms.test.js
    tests/interop/steedos/binary.test.js tests/interop/steedos/limits.test.js
    tests/interop/steedos/drain.test.js tests/interop/steedos/metrics.test.js
    tests/interop/steedos/isolation.test.js)
  STEEDOS_TEST_IO_THREADS=2 STEEDOS_BUILD_DIR="$root/$build_dir" setarch "$(uname -m)" -R \
    node --test --test-concurrency=1 --test-force-exit "${files[@]}" || rc=1
fi

found=$(find "$reports" -type f | wc -l)
if [ "$found" -ne 0 ]; then
  echo "ThreadSanitizer: $found report file(s) in $reports:"
  grep -h "^WARNING: ThreadSanitizer\|^SUMMARY" "$reports"/* | sort | uniq -c | head -40
  rc=1
else
  echo "ThreadSanitizer: no report"
fi
exit "$rc"
