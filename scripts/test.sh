#!/usr/bin/env bash
# The one test command: setup, build, unit tests (ctest/doctest), interop tests (node --test).
# Ends with exactly one line `N passed, N failed` (test cases of all suites that were asked for)
# and exits non-zero when a case failed or a suite could not run (a suite that did not run
# counts as one failure). Logs: build/test-logs/*.log.
#
# Usage: scripts/test.sh [--unit | --interop] [--sanitize] [--fuzz]
#   The unit tests include each fuzz target replayed over its committed corpus (replay-fuzz_*);
#   --fuzz adds a short libFuzzer run of every target under ASan/UBSan (STEEDOS_FUZZ_SECONDS
#   each, default 5; it builds its own clang tree: minutes). Long runs: scripts/fuzz.sh SECONDS.
#   After the unit tests (with the interop half, not under --sanitize): the container image's steps
#   on this host, scripts/container-steps.sh (log: build/test-logs/container.log).
#   No nats-server or redis-server is started here: every interop test starts its own on a free
#   port. The interop suites run on NATS, then the bus-independent ones again on Redis
#   (INTEROP_BUS=redis).
#   STEEDOS_INTEROP_TIMEOUT (seconds, default 1800) bounds each interop run.
#   STEEDOS_INTEROP_CONCURRENCY (default 2; 1 under --sanitize): interop test files run at once
#   (conformance/ always runs alone).
#   gateway.ioThreads: the unit tests of the engine and the interop suites on NATS run with 2 write
#   threads and again with 1 (the event loop alone); Redis with 2. ThreadSanitizer: scripts/tsan.sh.
#   --sanitize builds with ASan + UBSan in build-asan (its own tree: the flags never reach build/)
#   and runs the same suites against it, without the fuzz step (sanitized already). Every process
#   writes its sanitizer reports to build-asan/sanitizer/ (the interop harness does not forward
#   the nodes' stderr); each report file there counts as one failure.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

run_unit=1
run_interop=1
sanitize=0
fuzz=0
for arg in "$@"; do
  case "$arg" in
    --unit) run_interop=0 ;;
    --interop) run_unit=0 ;;
    --sanitize) sanitize=1 ;;
    --fuzz) fuzz=1 ;;
    -h | --help)
      echo "usage: scripts/test.sh [--unit | --interop] [--sanitize] [--fuzz]"
      exit 0
      ;;
    *)
      echo "test: unknown argument: $arg" >&2
      exit 2
      ;;
  esac
done
if [ "$run_unit" -eq 0 ] && [ "$run_interop" -eq 0 ]; then
  run_unit=1
  run_interop=1
fi

build_args=()
if [ "$sanitize" -eq 1 ]; then
  build_dir=${BUILD_DIR:-build-asan}
  # clang: its UBSan lives in the ASan runtime and honours log_path; GCC's separate libubsan
  # writes to stderr whatever UBSAN_OPTIONS says, and the interop harness swallows the nodes'.
  export CC=clang CXX=clang++
  build_args+=(-DSTEEDOS_SANITIZE=ON)
  # What the suites run (ctest's unit binaries, the interop harness's nodes, drain.test.js's
  # load-client); not the benchmarks.
  build_args+=(--target unit-common unit-protocol unit-transport unit-moleculer unit-gateway
    unit-services steedos-socket interop-node sio-conformance-server load-client
    replay-fuzz_engineio_payload replay-fuzz_socketio_packet replay-fuzz_moleculer_packet
    replay-fuzz_redis_url replay-fuzz_resp_decoder replay-fuzz_http_request replay-fuzz_config
    replay-fuzz_ws_frames)
  if command -v ccache >/dev/null; then
    # Relative paths in the cache key: other checkouts' objects are hits too.
    export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-true}
    build_args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  fi
else
  build_dir=${BUILD_DIR:-build}
fi
export STEEDOS_BUILD_DIR="$root/$build_dir"
logs="$STEEDOS_BUILD_DIR/test-logs"
mkdir -p "$logs"

passed=0
failed=0
notes=()

# Strips ANSI colour codes so the summary lines can be matched whatever the runner printed.
plain() { sed -e 's/\x1b\[[0-9;]*[A-Za-z]//g' "$1"; }

# Sums the doctest summaries ("[doctest] test cases: 3 | 2 passed | 1 failed | 0 skipped"; under
# `ctest -V` each line carries a "1: " prefix). Prints "PASSED FAILED", or nothing if none was found.
doctest_counts() {
  plain "$1" | awk '
    /\[doctest\] test cases:/ {
      n = split($0, part, "|")
      for (i = 2; i <= n; i++) {
        if (part[i] ~ /passed/) { gsub(/[^0-9]/, "", part[i]); p += part[i] }
        if (part[i] ~ /failed/) { gsub(/[^0-9]/, "", part[i]); f += part[i] }
      }
      found = 1
    }
    END { if (found) print p + 0, f + 0 }'
}

# ctest's own summary ("100% tests passed, 0 tests failed out of 3"), a fallback when a test binary
# printed no doctest summary. Prints "PASSED FAILED" or nothing.
ctest_counts() {
  plain "$1" | awk '
    /tests passed, [0-9]+ tests? failed out of [0-9]+/ {
      for (i = 1; i <= NF; i++) { if ($i == "failed") f = $(i - 2); if ($i == "of") t = $(i + 1) }
      found = 1
    }
    END { if (found) print t - f, f }'
}

# node --test closing lines: TAP "# pass N" / "# fail N", or the spec reporter's "ℹ pass N".
# Prints "PASSED FAILED" or nothing.
node_counts() {
  plain "$1" | awk '
    /^(# |ℹ )pass [0-9]+$/ { p = $NF; fp = 1 }
    /^(# |ℹ )fail [0-9]+$/ { f = $NF; ff = 1 }
    /^(# |ℹ )cancelled [0-9]+$/ { c = $NF }
    END { if (fp && ff) print p + 0, f + c }'
}

# The failed cases of a node --test log (TAP): each "not ok" line with the first lines of its
# diagnostics (error, expected/actual, location), at most 80 lines a log. Printed again in the
# summary, so that a run whose full output is lost (CI keeps only its end) still names them.
failure_details=()
# shellcheck disable=SC2317 # called through add_failures
node_failures() {
  plain "$1" | awk '
    /^ *not ok / { grab = 14; print; next }
    grab > 0 && /^ *\.\.\.$/ { grab = 0; next }
    grab > 0 && !/^ *(---|duration_ms:|type:)/ { print; grab-- }' | head -n 80
}
# The failed cases of the unit log: doctest's test case, check and values; ctest's list.
# shellcheck disable=SC2317 # called through add_failures
unit_failures() {
  # A "TEST CASE:" header also precedes every MESSAGE of a passing case: print one only when an
  # ERROR line follows it.
  plain "$1" | awk '
    /TEST CASE:/ { header = $0; shown = 0; next }
    /ERROR:/ { if (!shown && header != "") print header; shown = 1; print; grab = 1; next }
    grab && /values:/ { print; getline; print; grab = 0; next }
    /\((Failed|Timeout|SEGFAULT|Subprocess[^)]*)\)/ { print }' | head -n 40
}
# add_failures SUITE LOG [EXTRACTOR]
add_failures() {
  local details
  details=$("${3:-node_failures}" "$2")
  [ -n "$details" ] && failure_details+=("$1:" "$details")
}

# add_counts SUITE "PASSED FAILED" EXIT_CODE
add_counts() {
  local suite=$1 counts=$2 rc=$3 p f
  if [ -z "$counts" ]; then
    echo "test: $suite: no result line found (exit $rc), counted as 1 failure"
    notes+=("$suite: no results (exit $rc)")
    failed=$((failed + 1))
    return
  fi
  read -r p f <<<"$counts"
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "test: $suite: exited $rc with no failed case, counted as 1 failure"
    f=1
  fi
  passed=$((passed + p))
  failed=$((failed + f))
  notes+=("$suite: $p passed, $f failed")
}

# run_step NAME COMMAND...: runs with output shown and saved to $logs/NAME.log; returns its exit code.
run_step() {
  local name=$1
  shift
  echo "==> $name: $*"
  "$@" 2>&1 | tee "$logs/$name.log"
  return "${PIPESTATUS[0]}"
}

summary() {
  echo
  echo "==> summary (logs in $logs)"
  local n
  if [ "${#failure_details[@]}" -gt 0 ]; then
    echo "failed cases:"
    for n in "${failure_details[@]}"; do echo "$n" | sed 's/^/  /'; done
  fi
  for n in "${notes[@]}"; do echo "  $n"; done
  echo "$passed passed, $failed failed"
  if [ "$failed" -eq 0 ]; then exit 0; else exit 1; fi
}

# A suite that cannot run because setup or build failed counts as one failure each.
fail_suites() {
  local why=$1
  [ "$run_unit" -eq 1 ] && notes+=("unit: not run ($why)") && failed=$((failed + 1))
  [ "$run_interop" -eq 1 ] && notes+=("interop: not run ($why)") && failed=$((failed + 1))
  summary
}

setup_args=()
[ "$run_interop" -eq 0 ] && setup_args+=(--no-npm)
# clang and its sanitizer runtimes, llvm-symbolizer for the reports' stacks.
[ "$sanitize" -eq 1 ] && setup_args+=(--fuzz)
run_step setup bash scripts/setup.sh "${setup_args[@]}" || fail_suites "setup failed"
BUILD_DIR=$build_dir run_step build bash scripts/build.sh "${build_args[@]}" || fail_suites "build failed"

sanitizer_dir="$STEEDOS_BUILD_DIR/sanitizer"
if [ "$sanitize" -eq 1 ]; then
  rm -rf "$sanitizer_dir"
  mkdir -p "$sanitizer_dir"
  # log_path: one file per reporting process (PREFIX.PID), whoever started it. UBSan's findings
  # halt (also built with -fno-sanitize-recover); leaks are reported when a process exits normally
  # (the interop harness SIGKILLs what is left at the end of a file: those are not checked).
  export ASAN_OPTIONS="log_path=$sanitizer_dir/asan:detect_leaks=1"
  export UBSAN_OPTIONS="log_path=$sanitizer_dir/ubsan:halt_on_error=1:print_stacktrace=1"
  suppressions="$root/tests/sanitizer/lsan.supp"
  [ -f "$suppressions" ] && export LSAN_OPTIONS="suppressions=$suppressions:print_suppressions=0"
  # Timeouts of the tests that scale them (STEEDOS_TIMEOUT_SCALE in tests/interop/lib/harness.js).
  export STEEDOS_TIMEOUT_SCALE=${STEEDOS_TIMEOUT_SCALE:-3}
  # For the few tests a sanitizer runtime cannot take part in (they say why).
  export STEEDOS_SANITIZE=1
fi

if [ "$run_unit" -eq 1 ]; then
  rc=0
  # -V (instead of --output-on-failure, which would print a failing test's output a second time
  # and double its counts) so that doctest's summary line is shown and counted for passing runs too.
  # Two at a time: the longest binaries (services, moleculer) mostly wait on servers and timers.
  run_step unit ctest --test-dir "$build_dir" --no-tests=error -V --parallel 2 || rc=$?
  counts=$(doctest_counts "$logs/unit.log")
  [ -n "$counts" ] || counts=$(ctest_counts "$logs/unit.log")
  add_counts unit "$counts" "$rc"
  add_failures unit "$logs/unit.log" unit_failures
fi

# The container image's steps on this host (scripts/container-steps.sh: the Dockerfile's RUN lines
# into a staging root, reusing this build; then the node started as the image's non-root USER,
# health-checked, connected to, stopped). It needs the interop half's npm modules
# (socket.io-client) and root (setpriv); not under --sanitize (the image is a normal build).
if [ "$run_interop" -eq 1 ] && [ "$sanitize" -eq 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    rc=0
    BUILD_DIR=$build_dir run_step container bash scripts/container-steps.sh || rc=$?
    add_counts container "$(plain "$logs/container.log" |
      sed -n 's/^container-steps: \([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' | tail -n 1)" "$rc"
  else
    echo "test: container: skipped (scripts/container-steps.sh switches users: run as root, as CI does)"
    notes+=("container: skipped (not root)")
  fi
fi

# --fuzz: every fuzz target under libFuzzer with ASan/UBSan, briefly (longer runs: scripts/fuzz.sh
# SECONDS). Each target that ends without a crash counts as one passed test.
if [ "$fuzz" -eq 1 ] && [ "$sanitize" -eq 0 ]; then
  rc=0
  run_step fuzz bash scripts/fuzz.sh "${STEEDOS_FUZZ_SECONDS:-5}" || rc=$?
  fuzz_ok=$(plain "$logs/fuzz.log" | grep -c '^fuzz: .*executions, ok$' || true)
  fuzz_failed=$(plain "$logs/fuzz.log" | grep -c '^fuzz: .*executions, FAILED$' || true)
  [ "$fuzz_ok" -gt 0 ] || [ "$fuzz_failed" -gt 0 ] || fuzz_failed=1
  add_counts fuzz "$fuzz_ok $fuzz_failed" "$rc"
fi

if [ "$run_interop" -eq 1 ]; then
  if [ -z "$(find tests/interop -name node_modules -prune -o -name '*.test.js' -print 2>/dev/null | head -n 1)" ]; then
    echo "test: interop: no *.test.js files under tests/interop"
    notes+=("interop: no test files")
  else
    # Test files run two at a time (STEEDOS_INTEROP_CONCURRENCY): most of their time is spent
    # waiting (heartbeats, restarts, timeouts), so on 2 cores this halves the run (NATS 6.8 ->
    # 3.6 min, Redis 3.5 -> 1.8 min). Every file starts its own buses and nodes on free ports.
    # conformance/ runs alone afterwards: the official suites' 300/200 ms heartbeats fail when
    # another file loads the machine (seen twice under load).
    default_concurrency=2
    [ "$sanitize" -eq 1 ] && default_concurrency=1  # instrumented nodes: keep the timing margins
    concurrency=${STEEDOS_INTEROP_CONCURRENCY:-$default_concurrency}
    interop_files=()
    gateway_files=() # the files that start a gateway: the write-thread setting applies to them only
    for file in tests/interop/*.test.js tests/interop/demo tests/interop/steedos/*.test.js; do
      interop_files+=("$file")
      # The Moleculer-only files run interop-node, which serves no Socket.IO.
      case "${file##*/}" in
        balancer.test.js | calls-cpp-to-js.test.js | calls-js-to-cpp.test.js | discovery.test.js | \
          lifecycle.test.js | raw-peer.test.js | redis-cluster.test.js | redis.test.js | tls.test.js | \
          wire.test.js) ;;
        events.test.js) [ "$file" = tests/interop/events.test.js ] || gateway_files+=("$file") ;;
        # Several nodes behind balancers, on a NATS cluster, or sharing a JetStream recovery
        # store: what they test is between nodes, balancers and buses; their clients' write path
        # is the one the other files run with 1 thread (and they are among the longest files:
        # about 70 s of the 1-thread pass, and 35 s for the JetStream store's file).
        cluster-three.test.js | load-balancers.test.js | nats-cluster.test.js | \
          nats-hung-server.test.js | recovery-balancers.test.js | recovery-jetstream.test.js) ;;
        *) gateway_files+=("$file") ;;
      esac
    done
    # --test-force-exit: moleculer 0.14's Redis transporter opens one more publisher on every
    # Redis restart and never closes it; once the server is gone that client retries forever and
    # would keep a finished test file from exiting.
    # Without a terminal (CI) bound each run: on expiry timeout(1) signals its whole process
    # group, so nats-servers a hung test started go too. Interactively, leave Ctrl-C working
    # instead (timeout(1) moves the command out of the terminal's foreground process group).
    bounded() {
      if [ -t 0 ]; then "$@"; else timeout --kill-after=30 "${STEEDOS_INTEROP_TIMEOUT:-1800}" "$@"; fi
    }
    # Every file on NATS with 2 write threads (gateway.ioThreads, STEEDOS_TEST_IO_THREADS read by
    # the harness and the conformance targets), then every file that starts a gateway again with
    # the event loop alone.
    for threads in 2 1; do
      suffix=""
      files=("${interop_files[@]}")
      if [ "$threads" -eq 1 ]; then
        suffix="-1-thread"
        files=("${gateway_files[@]}")
      fi
      rc=0
      run_step "interop$suffix" bounded env STEEDOS_TEST_IO_THREADS="$threads" node --test \
        --test-concurrency="$concurrency" --test-force-exit "${files[@]}" || rc=$?
      add_counts "interop$suffix" "$(node_counts "$logs/interop$suffix.log")" "$rc"
      add_failures "interop$suffix" "$logs/interop$suffix.log"
      rc=0
      run_step "interop-conformance$suffix" bounded env STEEDOS_TEST_IO_THREADS="$threads" node \
        --test --test-concurrency=1 --test-force-exit tests/interop/conformance/ || rc=$?
      add_counts "interop-conformance$suffix" \
        "$(node_counts "$logs/interop-conformance$suffix.log")" "$rc"
      add_failures "interop-conformance$suffix" "$logs/interop-conformance$suffix.log"
    done

    # The same suites again on Redis (Steedos's default transporter): every file that does not
    # test something only one bus has. Not here: balancer (NATS queue groups), tls (NATS TLS;
    # Redis TLS is in redis.test.js), raw-peer (a hand-written peer on a raw NATS connection),
    # lifecycle (its bus restarts on Redis make moleculer 0.14 reject "Connection is closed" after
    # its broker stopped, from the publisher it leaks on every Redis restart; the C++ node's
    # side of restarts is in redis.test.js), redis*.test.js (Redis already), and the files whose
    # subject never crosses the bus: the client bundle, Origins, the gateway's connection and
    # packet limits (the node runs them on NATS; nothing in them reads or writes a bus packet),
    # what a Prometheus server makes of /metrics (its start-up alone costs 5-10 s), and nginx and
    # HAProxy in front of three nodes (what they test is HTTP between balancer and nodes); the
    # NATS cluster (nats-servers joined by routes: NATS only); and connection state recovery
    # (the memory store keeps sockets and events in the node; the logout and the
    # $socket.recovery.expired it uses are ordinary events, tested on Redis elsewhere; behind the
    # balancers it is HTTP between balancer and nodes again; the jetstream store is NATS's, and
    # its refusal of a Redis transporter is a configuration check, not a bus path).
    rc=0
    redis_files=(calls-cpp-to-js.test.js calls-js-to-cpp.test.js discovery.test.js events.test.js
      wire.test.js product.test.js demo/)
    for file in tests/interop/steedos/*.test.js; do
      case "${file##*/}" in
        origins.test.js | origins-browser.test.js | limits-connections.test.js | limits-sio.test.js | \
          metrics-prometheus.test.js | load-balancers.test.js | nats-cluster.test.js | \
          nats-hung-server.test.js | recovery.test.js | recovery-balancers.test.js | \
          recovery-jetstream.test.js) ;;
        *) redis_files+=("steedos/${file##*/}") ;;
      esac
    done
    # ISOLATION_GATEWAYS=1: the model-based isolation run on one node here (5,000 steps); its
    # two-node run is on NATS above, the table-driven two-node isolation runs on both buses.
    run_step interop-redis bounded env INTEROP_BUS=redis ISOLATION_GATEWAYS=1 \
      STEEDOS_TEST_IO_THREADS=2 node --test \
      --test-concurrency="$concurrency" --test-force-exit "${redis_files[@]/#/tests/interop/}" || rc=$?
    add_counts interop-redis "$(node_counts "$logs/interop-redis.log")" "$rc"
    add_failures interop-redis "$logs/interop-redis.log"
  fi
fi

# Every sanitizer report file is one failure: the test that provoked it may well have passed.
if [ "$sanitize" -eq 1 ]; then
  reports=0
  for file in "$sanitizer_dir"/*; do
    [ -f "$file" ] || continue
    reports=$((reports + 1))
    echo "test: sanitizer report $file:"
    head -n 12 "$file" | sed 's/^/    /'
  done
  failed=$((failed + reports))
  notes+=("sanitizer: $reports report(s) in $sanitizer_dir")
fi

summary
