#!/usr/bin/env bash
# The gateway's broadcast cost against a bare Asio baseline (targets of the "broadcast cost" issue;
# method: /work/shared/spec/websocket-data-path.md). Builds bench/ in build-bench, then RUNS times
# (default 3), with a gateway server and a baseline server (gateway-bench-server --mode ...), each
# on one thread:
#   (a) idle RSS per WebSocket client: (VmRSS with N clients - VmRSS with 0) / N, N = 10000,
#       clients Socket.IO-connected to `/` (kernel socket memory not included);
#   (b) one 100-byte event to 10000 clients: from the emit call until the load client has
#       received all 10000 frames (client-side; the server-side "every queue written" time is
#       shown too); LAT_REPS emits per side and run;
#   (c) 1000 clients, 1000 events emitted back-to-back in one loop turn: deliveries/s =
#       1000*1000 / time until all frames are received; BURST_REPS bursts per side and run.
# The machine may be shared, so (b) and (c) are measured in pairs: both servers are up with their
# clients connected (one load-client per server), and single measurements alternate
# gateway/baseline (order flipped every pair), so both sides see the same load. Per run the
# median of each side and the median of the per-pair ratios are kept; the table shows the
# medians over the runs, and one verdict per target.
#
#   bench/run_gateway_bench.sh [--runs 3] [--clients 10000] [--burst-clients 1000]
#                              [--burst-events 1000] [--lat-reps 15] [--burst-reps 3]
#                              [--no-pin] [--no-build]
#
# Loopback only. Servers on CPU 0, load clients on CPU 1 (taskset) unless --no-pin. Every
# process it starts is ended by PID on exit. Measurements are bounded by BENCH_BUDGET_S (default
# 270 s); raw output goes to build-bench/bench-results/<time>/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="$ROOT/build-bench"
RUNS=3
CLIENTS=10000
BURST_CLIENTS=1000
BURST_EVENTS=1000
LAT_REPS=15
BURST_REPS=3
PIN=1
DO_BUILD=1
BUDGET_S=${BENCH_BUDGET_S:-270}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --burst-clients) BURST_CLIENTS=$2; shift 2 ;;
    --burst-events) BURST_EVENTS=$2; shift 2 ;;
    --lat-reps) LAT_REPS=$2; shift 2 ;;
    --burst-reps) BURST_REPS=$2; shift 2 ;;
    --no-pin) PIN=0; shift ;;
    --no-build) DO_BUILD=0; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ $DO_BUILD == 1 ]]; then
  if [[ ! -f "$BUILD/build.ninja" ]]; then
    cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DSTEEDOS_BUILD_TESTS=OFF -DSTEEDOS_BUILD_BENCH=ON >/dev/null
  fi
  ninja -C "$BUILD" gateway-bench-server load-client | tail -n 1
fi
SERVER="$BUILD/gateway-bench-server"
CLIENT="$BUILD/load-client"
[[ -x $SERVER && -x $CLIENT ]] || { echo "bench binaries missing in $BUILD" >&2; exit 1; }

OUT="$BUILD/bench-results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
START=$SECONDS
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

SERVER_PIN=(); CLIENT_PIN=()
if [[ $PIN == 1 ]] && command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]]; then
  SERVER_PIN=(taskset -c 0); CLIENT_PIN=(taskset -c 1)
fi

check_budget() {
  if (( SECONDS - START > BUDGET_S )); then
    echo "time budget (${BUDGET_S}s) exhausted" >&2
    exit 1
  fi
}

# A free loopback port pair below the ephemeral range (P for WebSocket, P+1 for control).
NEXT_PORT=$((20000 + RANDOM % 9000))
free_port_pair() {
  local listening
  listening=$(ss -Htln 2>/dev/null | awk '{print $4}' | sed 's/.*://' || true)
  while grep -qx -e "$NEXT_PORT" -e "$((NEXT_PORT + 1))" <<<"$listening"; do
    NEXT_PORT=$((NEXT_PORT + 2))
  done
  PORT=$NEXT_PORT
  NEXT_PORT=$((NEXT_PORT + 2))
}

# wait_for FILE PATTERN COUNT PID: until FILE has COUNT lines matching PATTERN (PID must live).
wait_for() {
  local file=$1 pattern=$2 count=$3 pid=$4 n
  while :; do
    n=$(grep -c -- "$pattern" "$file" 2>/dev/null || true)
    (( ${n:-0} >= count )) && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "process $pid ended early; $file:" >&2
      tail -n 5 "$file" "$file.err" 2>/dev/null >&2 || true
      exit 1
    fi
    check_budget
    sleep 0.02
  done
}

# start_pair NAME MODE N CLIENT_ARGS...: a server and its interactive load-client. Sets
# SPID_<MODE>, CPID_<MODE>, FD_<MODE> (the client's command pipe) and OUTF_<MODE>.
start_pair() {
  local name=$1 mode=$2 n=$3; shift 3
  free_port_pair
  "${SERVER_PIN[@]}" "$SERVER" --mode "$mode" --port "$PORT" --clients "$n" \
    >"$OUT/$name.server" 2>&1 &
  local spid=$!
  PIDS+=("$spid")
  wait_for "$OUT/$name.server" '^ready' 1 "$spid"
  local fifo="$OUT/$name.cmd"
  mkfifo "$fifo"
  "${CLIENT_PIN[@]}" "$CLIENT" --port "$PORT" --clients "$n" "$@" <"$fifo" \
    >"$OUT/$name.client" 2>"$OUT/$name.client.err" &
  local cpid=$!
  PIDS+=("$cpid")
  local fd
  exec {fd}>"$fifo"
  printf -v "SPID_$mode" '%s' "$spid"
  printf -v "CPID_$mode" '%s' "$cpid"
  printf -v "FD_$mode" '%s' "$fd"
  printf -v "OUTF_$mode" '%s' "$OUT/$name.client"
  wait_for "$OUT/$name.client" '^RESULT interactive ready' 1 "$cpid"
}

stop_pair() {
  local mode=$1
  local fdv="FD_$mode" cpv="CPID_$mode" spv="SPID_$mode"
  local fd=${!fdv}
  echo quit >&"$fd" || true
  eval "exec $fd>&-"
  local i
  for i in $(seq 100); do kill -0 "${!cpv}" 2>/dev/null || break; sleep 0.05; done
  for i in $(seq 40); do kill -0 "${!spv}" 2>/dev/null || break; sleep 0.05; done
  kill "${!cpv}" "${!spv}" 2>/dev/null || true
  wait "${!cpv}" 2>/dev/null || true
  wait "${!spv}" 2>/dev/null || true
}

# measure MODE COMMAND KIND: sends one measurement command, waits for its RESULT line (in LINE).
declare -A DONE
measure() {
  local mode=$1 cmd=$2 kind=$3
  local fdv="FD_$mode" cpv="CPID_$mode" outv="OUTF_$mode"
  DONE[$mode]=$(( ${DONE[$mode]:-0} + 1 ))
  echo "$cmd" >&"${!fdv}"
  wait_for "${!outv}" "^RESULT $kind rep=" "${DONE[$mode]}" "${!cpv}"
  LINE=$(grep "^RESULT $kind rep=" "${!outv}" | tail -n 1)
}

value() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b == 0) print "nan"; else printf "%.3f", a / b}'; }

# paired NAME N REPS CMD KIND KEY CLIENT_ARGS...: both sides up, REPS alternating measurements.
# Sets P_G, P_B (medians of KEY) and P_R (median of the per-pair gateway/baseline ratios).
paired() {
  local name=$1 n=$2 reps=$3 cmd=$4 kind=$5 key=$6; shift 6
  DONE=()
  start_pair "gateway-$name" gateway "$n" "$@"
  start_pair "baseline-$name" baseline "$n" "$@"
  local g=() b=() r=() rep gv bv
  for rep in $(seq "$reps"); do
    if (( rep % 2 )); then
      measure gateway "$cmd" "$kind"; gv=$(value "$LINE" "$key")
      measure baseline "$cmd" "$kind"; bv=$(value "$LINE" "$key")
    else
      measure baseline "$cmd" "$kind"; bv=$(value "$LINE" "$key")
      measure gateway "$cmd" "$kind"; gv=$(value "$LINE" "$key")
    fi
    g+=("$gv"); b+=("$bv"); r+=("$(ratio "$gv" "$bv")")
  done
  stop_pair gateway
  stop_pair baseline
  P_G=$(printf '%s\n' "${g[@]}" | median)
  P_B=$(printf '%s\n' "${b[@]}" | median)
  P_R=$(printf '%s\n' "${r[@]}" | median)
}

echo "gateway broadcast bench: $RUNS runs; idle + 1 event at $CLIENTS clients ($LAT_REPS pairs)," \
  "burst $BURST_CLIENTS clients x $BURST_EVENTS events ($BURST_REPS pairs)"
echo "load average before: $LOAD_BEFORE   (nproc $(nproc); pinning: ${SERVER_PIN[*]:-none} / ${CLIENT_PIN[*]:-none})"
echo "raw output: $OUT"

declare -A RSS HEAP LAT SRV LATR RATE RATER
for run in $(seq "$RUNS"); do
  check_budget
  # (a) and (b): idle memory is read by each client before it turns interactive.
  paired "10k-$run" "$CLIENTS" "$LAT_REPS" latency latency client_ms \
    --phases idle,interactive --settle-ms 1000
  LAT[gateway,$run]=$P_G; LAT[baseline,$run]=$P_B; LATR[$run]=$P_R
  for mode in gateway baseline; do
    f="$OUT/$mode-10k-$run.client"
    line=$(grep '^RESULT idle' "$f")
    RSS[$mode,$run]=$(value "$line" rss_per_client_bytes)
    HEAP[$mode,$run]=$(value "$line" heap_inuse_per_client_bytes)
    SRV[$mode,$run]=$(grep '^RESULT latency rep=' "$f" | sed 's/.*server_ms=\([0-9.]*\).*/\1/' | median)
  done
  # (c)
  paired "burst-$run" "$BURST_CLIENTS" "$BURST_REPS" "burst $BURST_EVENTS" burst deliveries_per_s \
    --phases interactive
  RATE[gateway,$run]=$P_G; RATE[baseline,$run]=$P_B; RATER[$run]=$P_R
  for mode in gateway baseline; do
    grep -q "per_conn_min=$((BURST_EVENTS * BURST_REPS)) per_conn_max=$((BURST_EVENTS * BURST_REPS))" \
      "$OUT/$mode-burst-$run.client" || { echo "burst run $run ($mode): frame count mismatch" >&2; exit 1; }
  done
  printf 'run %d: rss/client G %s B / B %s B | 1->%d G %s ms B %s ms (pair ratio %s) | burst G %s/s B %s/s | load %s\n' \
    "$run" "${RSS[gateway,$run]}" "${RSS[baseline,$run]}" "$CLIENTS" "${LAT[gateway,$run]}" \
    "${LAT[baseline,$run]}" "${LATR[$run]}" "${RATE[gateway,$run]}" "${RATE[baseline,$run]}" \
    "$(cut -d' ' -f1 /proc/loadavg)"
done

# Informational, once: the idle measurement when clients send what a desktop browser sends
# (User-Agent, Origin, Accept-*, Cache-Control, Pragma, Sec-WebSocket-Extensions).
check_budget
start_pair gateway-idle-browser gateway "$CLIENTS" --phases idle,interactive --settle-ms 1000 \
  --browser-headers
stop_pair gateway
G_RSS_BROWSER=$(value "$(grep '^RESULT idle' "$OUT/gateway-idle-browser.client")" rss_per_client_bytes)

med() { # med ARRAY MODE
  local -n arr=$1
  local r
  for r in $(seq "$RUNS"); do echo "${arr[$2,$r]}"; done | median
}
medr() { local -n arr=$1; local r; for r in $(seq "$RUNS"); do echo "${arr[$r]}"; done | median; }
G_RSS=$(med RSS gateway);   B_RSS=$(med RSS baseline)
G_HEAP=$(med HEAP gateway); B_HEAP=$(med HEAP baseline)
G_LAT=$(med LAT gateway);   B_LAT=$(med LAT baseline);   LAT_RATIO=$(medr LATR)
G_SRV=$(med SRV gateway);   B_SRV=$(med SRV baseline)
G_RATE=$(med RATE gateway); B_RATE=$(med RATE baseline); RATE_RATIO=$(medr RATER)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

echo
printf '%-54s %12s %12s %8s\n' "median of $RUNS runs" gateway baseline ratio
printf '%-54s %12.0f %12.0f %8s\n' "(a) idle RSS per client @$CLIENTS (bytes)" "$G_RSS" "$B_RSS" "$(ratio "$G_RSS" "$B_RSS")"
printf '%-54s %12.0f %12.0f %8s\n' "    live heap per client @$CLIENTS (bytes, mallinfo2)" "$G_HEAP" "$B_HEAP" "$(ratio "$G_HEAP" "$B_HEAP")"
printf '%-54s %12.0f %12s %8s\n' "    idle RSS, browser-like request headers (1 run)" "$G_RSS_BROWSER" "-" ""
printf '%-54s %12.2f %12.2f %8.3f\n' "(b) 1 event -> $CLIENTS clients, all received (ms)" "$G_LAT" "$B_LAT" "$LAT_RATIO"
printf '%-54s %12.2f %12.2f %8s\n' "    server side: every queue written (ms)" "$G_SRV" "$B_SRV" "$(ratio "$G_SRV" "$B_SRV")"
printf '%-54s %12.0f %12.0f %8.3f\n' "(c) $BURST_CLIENTS clients x $BURST_EVENTS events, deliveries/s" "$G_RATE" "$B_RATE" "$RATE_RATIO"
echo "(b), (c) ratio column: median over runs of the median per-pair gateway/baseline ratio"
echo "load average before: $LOAD_BEFORE, after: $LOAD_AFTER; elapsed $((SECONDS - START)) s"
echo
awk -v v="$G_RSS" -v n="$CLIENTS" 'BEGIN {k = v / 1024; printf "idle RSS per client at %d: %.2f KiB (target <= 2 KiB) %s\n", n, k, (k <= 2 ? "OK" : "MISS")}'
awk -v g="$G_LAT" -v b="$B_LAT" -v r="$LAT_RATIO" -v n="$CLIENTS" 'BEGIN {printf "one event to %d clients: %.1f ms vs baseline %.1f ms, %.2fx (target <= 1.3x) %s\n", n, g, b, r, (r <= 1.3 ? "OK" : "MISS")}'
awk -v g="$G_RATE" -v c="$BURST_CLIENTS" -v e="$BURST_EVENTS" 'BEGIN {printf "%d clients x %d events: %.2fM deliveries/s (target >= 2M/s) %s\n", c, e, g / 1e6, (g >= 2e6 ? "OK" : "MISS")}'
