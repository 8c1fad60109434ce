#!/usr/bin/env bash
# Runs the node locally: setup (--product: apt, node/npm, the socket.io-client bundle), build, then
#   build/steedos-socket --config "${MOLECULER_CONFIG:-moleculer.config.json}" "$@"
# When no transporter is configured (env TRANSPORTER empty and the config's "transporter" null or
# absent) and nothing listens on 127.0.0.1:4222, a nats-server is started there for the run and
# stopped (by PID) when the node exits. SIGINT/SIGTERM are forwarded to the node so it stops
# gracefully (DISCONNECT to the cluster) before the nats-server goes.
#
# --redis (first arguments only; the others go to the node): start a local redis-server (Debian's,
# installed by setup with STEEDOS_WITH_REDIS=1) on 127.0.0.1:6379 or the next free port up to
# 6399, without persistence, and run the node with TRANSPORTER=redis://127.0.0.1:<port>; it is
# stopped (by PID) after the node, as the nats-server. Not together with TRANSPORTER.
#
# Env: MOLECULER_CONFIG (config path), TRANSPORTER, PORT (shown gateway port),
#      STEEDOS_NODE_BIN (run this binary instead; skips setup and build), NATS_SERVER_BIN,
#      REDIS_SERVER_BIN.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

config=${MOLECULER_CONFIG:-moleculer.config.json}
bin=${STEEDOS_NODE_BIN:-}
with_redis=0
while [ $# -gt 0 ]; do
  case "$1" in
    --redis)
      with_redis=1
      shift
      ;;
    *) break ;;
  esac
done
if [ "$with_redis" -eq 1 ] && [ -n "${TRANSPORTER:-}" ]; then
  echo "run: --redis starts its own redis-server; unset TRANSPORTER (it is $TRANSPORTER)" >&2
  exit 2
fi
nats_pid=""
redis_pid=""
node_pid=""

stop_server() { # name pid
  local name=$1 pid=$2
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "run: stopped the local $name (pid $pid)"
}

cleanup() {
  stop_server nats-server "$nats_pid"
  stop_server redis-server "$redis_pid"
}

# Before the node runs, a signal just ends the script (the EXIT trap cleans up); afterwards it is
# passed on to the node, and the script waits for the node to finish.
on_signal() {
  local sig=$1
  if [ -n "$node_pid" ]; then
    kill "-$sig" "$node_pid" 2>/dev/null || true
  else
    if [ "$sig" = INT ]; then exit 130; else exit 143; fi
  fi
}
trap cleanup EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'on_signal TERM' HUP

if [ -z "$bin" ]; then
  # apt, node/npm, the socket.io-client bundle in client/ (and redis-server for --redis)
  if [ "$with_redis" -eq 1 ]; then
    STEEDOS_WITH_REDIS=1 bash scripts/setup.sh --product
  else
    bash scripts/setup.sh --product
  fi
  bash scripts/build.sh
  bin=${BUILD_DIR:-build}/steedos-socket
fi
if ! [ -x "$bin" ]; then
  echo "run: $bin is not an executable" >&2
  exit 1
fi

# Reads the config: line 1 = the "transporter" value as JSON ("" when null or absent),
# line 2 = gateway.port ("" when absent).
if [ -f "$config" ]; then
  if ! cfg=$(node -e '
    let c;
    try { c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); }
    catch (e) { console.error("run: " + e.message); process.exit(1); }
    const t = c.transporter;
    const p = c.gateway && c.gateway.port;
    console.log(t === undefined || t === null ? "" : JSON.stringify(t));
    console.log(p === undefined || p === null ? "" : String(p));' "$config"); then
    echo "run: cannot parse $config as JSON" >&2
    exit 1
  fi
else
  echo "run: warning: config $config not found"
  cfg=$'\n'
fi
{
  IFS= read -r cfg_transporter || true
  IFS= read -r cfg_port || true
} <<<"$cfg"

listening() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

if [ "$with_redis" -eq 1 ]; then
  redis_bin=${REDIS_SERVER_BIN:-$(command -v redis-server || echo /usr/bin/redis-server)}
  if ! [ -x "$redis_bin" ]; then
    echo "run: no redis-server ($redis_bin); install it: STEEDOS_WITH_REDIS=1 scripts/setup.sh --product" >&2
    exit 1
  fi
  redis_port=""
  for candidate in $(seq 6379 6399); do
    if ! listening 127.0.0.1 "$candidate"; then
      redis_port=$candidate
      break
    fi
  done
  if [ -z "$redis_port" ]; then
    echo "run: no free port for redis-server on 127.0.0.1:6379-6399" >&2
    exit 1
  fi
  redis_dir=${BUILD_DIR:-build}/redis-run
  mkdir -p "$redis_dir"
  redis_log=$redis_dir/redis-server.log
  # No persistence, its own working directory; setsid for the same reason as the nats-server.
  setsid "$redis_bin" --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
    --daemonize no --dir "$redis_dir" >"$redis_log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 50); do
    listening 127.0.0.1 "$redis_port" && break
    if ! kill -0 "$redis_pid" 2>/dev/null; then
      echo "run: redis-server exited at start, see $redis_log:" >&2
      tail -n 5 "$redis_log" >&2
      redis_pid=""
      exit 1
    fi
    sleep 0.1
  done
  if ! listening 127.0.0.1 "$redis_port"; then
    echo "run: redis-server did not listen on 127.0.0.1:$redis_port within 5 s, see $redis_log" >&2
    exit 1
  fi
  echo "started a local redis-server on 127.0.0.1:$redis_port (pid $redis_pid)"
  export TRANSPORTER=redis://127.0.0.1:$redis_port
  [ -z "$cfg_transporter" ] || echo "run: TRANSPORTER=$TRANSPORTER replaces the config's transporter"
fi

if [ -z "${TRANSPORTER:-}" ] && [ -z "$cfg_transporter" ]; then
  if listening 127.0.0.1 4222; then
    echo "run: using the nats-server already listening on 127.0.0.1:4222"
  else
    nats_bin=${NATS_SERVER_BIN:-$(command -v nats-server || echo /usr/sbin/nats-server)}
    nats_log=${BUILD_DIR:-build}/nats-server.log
    mkdir -p "$(dirname "$nats_log")"
    # setsid: its own session, so a terminal Ctrl-C reaches only this script, which stops the
    # node first and the nats-server last.
    setsid "$nats_bin" -a 127.0.0.1 -p 4222 >"$nats_log" 2>&1 &
    nats_pid=$!
    for _ in $(seq 50); do
      listening 127.0.0.1 4222 && break
      if ! kill -0 "$nats_pid" 2>/dev/null; then
        echo "run: nats-server exited at start, see $nats_log:" >&2
        tail -n 5 "$nats_log" >&2
        nats_pid=""
        exit 1
      fi
      sleep 0.1
    done
    if ! listening 127.0.0.1 4222; then
      echo "run: nats-server did not listen on 127.0.0.1:4222 within 5 s, see $nats_log" >&2
      exit 1
    fi
    echo "started a local nats-server on 127.0.0.1:4222 (pid $nats_pid)"
  fi
fi

port=${PORT:-${cfg_port:-5100}}
echo "run: $bin --config $config${*:+ $*}"
echo "run: gateway: http://localhost:$port/  (Ctrl-C stops the node)"

# Own session for the same reason as the nats-server: the script forwards signals exactly once.
setsid "$bin" --config "$config" "$@" &
node_pid=$!

rc=0
while :; do
  rc=0
  wait "$node_pid" || rc=$?
  # > 128: either the node died of a signal or `wait` was interrupted by a trapped signal.
  if [ "$rc" -gt 128 ] && kill -0 "$node_pid" 2>/dev/null; then
    continue
  fi
  break
done
node_pid=""
exit "$rc"
