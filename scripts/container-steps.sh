#!/usr/bin/env bash
# The container image's steps on this host (there is no Docker engine here): what the Dockerfile
# does, run with the same scripts and paths, then the container started, probed and stopped.
#
#   1. tests/container/dockerfile.js reads the Dockerfile: its RUN lines (each one project
#      script), runtime ENV, USER, EXPOSE, HEALTHCHECK and ENTRYPOINT, with the image's prefix
#      moved under a staging root (a temp dir standing for the image's filesystem).
#   2. Every RUN line runs as written, in order: scripts/setup.sh --product, scripts/image.sh
#      build (reuses ./build, or $BUILD_DIR: seconds after a test build), runtime-deps,
#      install-runtime (here a check that the derived packages are installed).
#   3. The ENTRYPOINT runs as the image's USER (setpriv; the numeric uid needs no passwd entry)
#      from /, with only the image's ENV and the environment an operator would pass (TRANSPORTER
#      to a nats-server started here on a free port, PORT, NODEID, NAMESPACE).
#   4. deploy/ (tests/container/check_deploy.py): the Kubernetes manifests and the Compose file
#      parse and agree with the node's configuration and the Dockerfile (ports, probe paths,
#      grace period against gateway.drainTimeout, the non-root uid); the node's own parser
#      accepts the ConfigMap's moleculer.config.json.
#   5. Checks: the HEALTHCHECK command fails before the start and passes after it; the process's
#      uid; an Engine.IO open, a Socket.IO connect upgraded to WebSocket, the client bundle as
#      installed, the demo page (tests/container/client.js); `--probe ready` 503 without an auth
#      service and 200 once examples/mock-auth.js runs; SIGTERM closes a connected socket, the
#      node logs its drain and exits 0.
# One line per check ("ok: ..." / "FAIL: ..."), the last one `container-steps: N passed, N failed`;
# exit 1 when a check failed. The node's log: $BUILD_DIR/test-logs/container-node.log.
#
# Usage: scripts/container-steps.sh [--root DIR]     (as root: CI; setpriv needs to change the uid)
#   --root DIR: DIR is a Debian 12 root without the node's libraries standing for the runtime
#     image (e.g. `debootstrap --variant=minbase bookworm DIR`, what debian:12-slim is made of):
#     the build-stage lines install into DIR/opt/..., the runtime-stage RUN lines, the
#     ENTRYPOINT and the HEALTHCHECK run inside DIR (chroot, /proc and /dev mounted for the run,
#     resolv.conf copied for apt), so install-runtime really installs the derived package list
#     into a root that lacked it: the proof that the list is enough, which on the host (where
#     everything is installed already) the default run cannot give. Not in CI (debootstrap
#     downloads a Debian base); DIR is kept, the packages stay installed in it.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
root=$(pwd)
image_root=""
if [ "${1:-}" = --root ] && [ -n "${2:-}" ]; then
  image_root=$(cd "$2" && pwd) || exit 2
elif [ $# -gt 0 ]; then
  echo "usage: scripts/container-steps.sh [--root DIR]" >&2
  exit 2
fi
mounted=()
build_dir=${BUILD_DIR:-build}
logs="$root/$build_dir/test-logs"
mkdir -p "$logs"
node_log="$logs/container-node.log"

passed=0
failed=0
stage=""
nats_pid=""
node_pid=""
auth_pid=""
hold_pid=""
started=$SECONDS

ok() {
  echo "ok: $*"
  passed=$((passed + 1))
}
not_ok() {
  echo "FAIL: $*"
  failed=$((failed + 1))
}

stop_pid() { # pid: TERM, then KILL after 5 s
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}

cleanup() {
  stop_pid "$hold_pid"
  stop_pid "$node_pid"
  stop_pid "$auth_pid"
  stop_pid "$nats_pid"
  local point
  for point in "${mounted[@]}"; do umount "$point"; done
  mounted=()
  [ -n "$stage" ] && [ -z "$image_root" ] && rm -rf "$stage"
  stage=""
}

finish() {
  cleanup
  echo "container-steps: $passed passed, $failed failed (in $((SECONDS - started)) s)"
  [ "$failed" -eq 0 ]
  exit
}
trap 'not_ok "interrupted"; finish' INT TERM
trap cleanup EXIT # an unexpected exit (set -u) leaves no process or staging root behind

free_port() {
  node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => {
    console.log(s.address().port); s.close(); })'
}
# shellcheck disable=SC2317 # called through wait_for
listening() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# wait_for SECONDS COMMAND...: runs COMMAND every 0.2 s until it succeeds; fails after SECONDS.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# Counts the "ok: ..." / "FAIL: ..." lines a checking program prints on stdin; shows the others.
count_checks() {
  local line
  while IFS= read -r line; do
    case "$line" in
      ok:*) ok "${line#ok: }" ;;
      FAIL:*) not_ok "${line#FAIL: }" ;;
      *) echo "$line" ;;
    esac
  done
}

if [ "$(id -u)" -ne 0 ]; then
  not_ok "must run as root (setpriv switches to the image's non-root USER)"
  finish
fi

# --- the Dockerfile -------------------------------------------------------------------------------
if [ -n "$image_root" ]; then
  if ! [ -f "$image_root/etc/debian_version" ] || ! [ -x "$image_root/usr/bin/env" ]; then
    not_ok "--root $image_root: not a Debian root (no etc/debian_version or usr/bin/env)"
    finish
  fi
  stage=$image_root
  for point in proc dev; do
    if ! mountpoint -q "$stage/$point"; then
      if [ "$point" = proc ]; then mount -t proc proc "$stage/proc"; else mount --bind /dev "$stage/dev"; fi
      mounted+=("$stage/$point")
    fi
  done
  cp /etc/resolv.conf "$stage/etc/resolv.conf"
  rm -rf "$stage/opt/steedos-socket" # this run's install only
else
  stage=$(mktemp -d /tmp/steedos-container.XXXXXX)
  chmod 755 "$stage" # the image's filesystem: readable by its non-root user
fi
if ! plan=$(node tests/container/dockerfile.js Dockerfile "$stage" "$root"); then
  not_ok "Dockerfile: not understood (see above)"
  finish
fi
# With --root, what runs inside the image (runtime RUN lines, ENV, HEALTHCHECK, ENTRYPOINT) keeps
# the image's own paths; the build stage's lines still write under DIR.
if [ -n "$image_root" ]; then
  image_plan=$(node tests/container/dockerfile.js --keep-mounts Dockerfile / "$root") || finish
  plan="$(grep -P '^(PREFIX|RUN\tbuild)\t' <<<"$plan")
$(grep -vP '^(PREFIX|RUN\tbuild)\t' <<<"$image_plan")"
fi
runs=()
mounts=()
image_env=()
healthcheck=()
entrypoint=()
user=""
expose=()
prefix=""
while IFS=$'\t' read -r -a fields; do
  case "${fields[0]}" in
    PREFIX) prefix=${fields[2]} ;;
    RUN) runs+=("${fields[1]}"$'\t'"${fields[2]}") ;;
    MOUNT) mounts+=("${fields[1]}"$'\t'"${fields[2]}") ;;
    ENV) image_env+=("${fields[1]}") ;;
    USER) user=${fields[1]} ;;
    EXPOSE) expose+=("${fields[1]}") ;;
    HEALTHCHECK) healthcheck=("${fields[@]:1}") ;;
    ENTRYPOINT) entrypoint=("${fields[@]:1}") ;;
  esac
done <<<"$plan"
uid=${user%%:*}
gid=${user##*:}
ok "Dockerfile: ${#runs[@]} RUN steps, USER $user, EXPOSE ${expose[*]}, HEALTHCHECK ${healthcheck[*]##*/}"
if [ "$uid" -ne 0 ] && [ "$gid" -ne 0 ]; then
  ok "USER $user is not root"
else
  not_ok "USER $user is root"
fi

# --- the RUN steps --------------------------------------------------------------------------------
for run in "${runs[@]}"; do
  stage_name=${run%%$'\t'*}
  command=${run#*$'\t'}
  step_start=$SECONDS
  echo "==> [$stage_name] $command"
  run_cmd=(bash -c "$command")
  if [ -n "$image_root" ] && [ "$stage_name" = runtime ]; then
    # A bind mount of the context for one step: a copy, removed after it.
    for mount in "${mounts[@]}"; do
      mkdir -p "$(dirname "$stage/${mount#*$'\t'}")"
      cp "${mount%%$'\t'*}" "$stage/${mount#*$'\t'}"
    done
    run_cmd=(chroot "$stage" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
      bash -c "$command")
  fi
  if "${run_cmd[@]}"; then
    ok "RUN [$stage_name] ${command//$stage/STAGE} ($((SECONDS - step_start)) s)"
  else
    not_ok "RUN [$stage_name] ${command//$stage/STAGE} exited $?"
    finish
  fi
  if [ -n "$image_root" ] && [ "$stage_name" = runtime ]; then
    for mount in "${mounts[@]}"; do rm -f "$stage/${mount#*$'\t'}"; done
  fi
done
missing=()
for file in bin/steedos-socket share/steedos-socket/socket.io-client/socket.io.js \
  share/steedos-socket/socket.io-client/socket.io.min.js share/steedos-socket/web/index.html \
  etc/steedos-socket/moleculer.config.json share/steedos-socket/runtime-packages; do
  [ -s "$prefix/$file" ] || missing+=("$file")
done
if [ "${#missing[@]}" -eq 0 ]; then
  ok "installed: bin/, share/steedos-socket/{socket.io-client,web,runtime-packages}, etc/ under ${prefix#"$stage"}"
else
  not_ok "installed tree misses ${missing[*]}"
fi

# --- deploy/: Kubernetes and Compose files parse and agree with the config and the Dockerfile ---
config_map_file="$stage/configmap-moleculer.config.json"
count_checks < <(python3 tests/container/check_deploy.py "$root" "$config_map_file" 2>&1)
# The node's own parser on the ConfigMap's file: --probe loads the configuration first and exits 2
# when it is invalid (1 or 0 is the probe's answer, whatever listens on its port).
host_bin="$prefix/bin/steedos-socket" # the installed binary, run on the host
probe_output=$(cd / && env -i "$host_bin" --probe health --config "$config_map_file" 2>&1)
probe_rc=$?
if [ "$probe_rc" -le 1 ]; then
  ok "the node's configuration parser accepts the ConfigMap's moleculer.config.json"
else
  not_ok "the node rejects the ConfigMap's moleculer.config.json: $probe_output"
fi
# ... and that parse can fail: the same file with gateway.drainTimeout negative.
sed 's/"drainTimeout": [0-9]*/"drainTimeout": -1/' "$config_map_file" >"$config_map_file.bad"
probe_output=$(cd / && env -i "$host_bin" --probe health --config "$config_map_file.bad" 2>&1)
probe_rc=$?
if [ "$probe_rc" -eq 2 ] && [[ "$probe_output" == *drainTimeout* ]]; then
  ok "--probe exits 2 on an invalid configuration ($probe_output)"
else
  not_ok "--probe on gateway.drainTimeout -1: exit $probe_rc, expected 2 naming the key ($probe_output)"
fi

# --- the container --------------------------------------------------------------------------------
nats_port=$(free_port)
gateway_port=$(free_port)
namespace="container-steps-$$"
nats_bin=${NATS_SERVER_BIN:-$(command -v nats-server || echo /usr/sbin/nats-server)}
"$nats_bin" -a 127.0.0.1 -p "$nats_port" >"$logs/container-nats.log" 2>&1 &
nats_pid=$!
if ! wait_for 10 listening "$nats_port"; then
  not_ok "nats-server did not listen on 127.0.0.1:$nats_port (see $logs/container-nats.log)"
  finish
fi
operator_env=("TRANSPORTER=nats://127.0.0.1:$nats_port" "PORT=$gateway_port"
  "NODEID=container-steps-$$" "NAMESPACE=$namespace")
# As `docker run -e ...` USER and WORKDIR / would: only the image's ENV and the operator's.
# The command line that runs a command as the image would: its USER, only its ENV and the
# operator's, from /. --root: inside DIR (chroot). In `argv`, so that `"${argv[@]}" &` gives
# the command's own pid.
image_user_argv() {
  if [ -n "$image_root" ]; then
    argv=(chroot --userspec="$uid:$gid" "$stage" /usr/bin/env -i)
  else
    argv=(setpriv --reuid="$uid" --regid="$gid" --clear-groups env -i -C /)
  fi
  argv+=("${image_env[@]}" "${operator_env[@]}" "$@")
}
as_image_user() {
  local argv
  image_user_argv "$@"
  "${argv[@]}"
}

probe_output=$(as_image_user "${healthcheck[@]}" 2>&1)
probe_rc=$?
if [ "$probe_rc" -eq 1 ]; then
  ok "HEALTHCHECK fails while no node runs (exit 1: $probe_output)"
else
  not_ok "HEALTHCHECK before the start: exit $probe_rc, expected 1 ($probe_output)"
fi

image_user_argv "${entrypoint[@]}"
"${argv[@]}" >"$node_log" 2>&1 &
node_pid=$!
health_start=$SECONDS
if wait_for 15 as_image_user "${healthcheck[@]}"; then
  ok "HEALTHCHECK passes $((SECONDS - health_start)) s after the start: $(as_image_user "${healthcheck[@]}")"
else
  not_ok "HEALTHCHECK did not pass within 15 s: $(as_image_user "${healthcheck[@]}" 2>&1); node log:"
  tail -n 20 "$node_log" | sed 's/^/    /'
  finish
fi

ids=$(awk '/^Uid:|^Gid:/ { printf "%s %s %s %s ", $2, $3, $4, $5 }' "/proc/$node_pid/status")
if [ "$ids" = "$uid $uid $uid $uid $gid $gid $gid $gid " ]; then
  ok "the node runs as uid $uid gid $gid (real, effective, saved, fs), not root"
else
  not_ok "the node's uids/gids are $ids, expected $uid and $gid"
fi
groups=$(awk '/^Groups:/ { $1 = ""; print }' "/proc/$node_pid/status" | tr -d ' ')
if [ -z "$groups" ]; then
  ok "the node has no supplementary groups"
else
  not_ok "the node keeps supplementary groups: $groups"
fi

url="http://127.0.0.1:$gateway_port"
count_checks < <(node tests/container/client.js check "$url" \
  "$prefix/share/steedos-socket/socket.io-client/socket.io.js" 2>&1)
if grep -q "no socket.io-client bundle installed" "$node_log"; then
  not_ok "the node found no client bundle in its prefix (see $node_log)"
fi
# publicsuffix comes into the runtime list as libpsl5's Recommends: the node must be using it.
psl_source=$(grep -o 'Public Suffix List: [^)]*' "$node_log" | head -n 1)
if [[ "$psl_source" == *"/usr/share/publicsuffix/"* ]]; then
  ok "the Origin policy reads the packaged list ($psl_source)"
else
  not_ok "the Origin policy does not read /usr/share/publicsuffix (node log: '${psl_source:-no such line}')"
fi

# /ready: the auth action is not known yet (503), then examples/mock-auth.js provides it.
ready_output=$(as_image_user "${healthcheck[0]}" --probe ready 2>&1)
if [[ "$ready_output" == *": 503 "*"auth"* ]]; then
  ok "--probe ready: 503 while no auth service runs ($ready_output)"
else
  not_ok "--probe ready without an auth service: expected 503 naming auth, got: $ready_output"
fi
TRANSPORTER="nats://127.0.0.1:$nats_port" NAMESPACE=$namespace NODEID="mock-auth-$$" LOGLEVEL=warn \
  node examples/mock-auth.js >"$logs/container-mock-auth.log" 2>&1 &
auth_pid=$!
if wait_for 20 as_image_user "${healthcheck[0]}" --probe ready; then
  ok "--probe ready: 200 once examples/mock-auth.js runs"
else
  not_ok "--probe ready did not pass within 20 s of mock-auth's start: $(as_image_user "${healthcheck[0]}" --probe ready 2>&1)"
fi

# --- SIGTERM: drain and exit 0 -----------------------------------------------------------------
hold_log="$logs/container-hold.log"
node tests/container/client.js hold "$url" >"$hold_log" 2>&1 &
hold_pid=$!
if ! wait_for 10 grep -q '^connected' "$hold_log"; then
  not_ok "the WebSocket client held for the drain did not connect: $(cat "$hold_log")"
fi
kill -TERM "$node_pid"
stop_start=$SECONDS
node_rc=0
wait "$node_pid" || node_rc=$?
node_pid=""
drain_line=$(grep -m1 -o 'drained in [0-9]* ms' "$node_log")
if [ "$node_rc" -eq 0 ] && [ -n "$drain_line" ]; then
  ok "SIGTERM: exit 0 after $((SECONDS - stop_start)) s, node log: $drain_line"
else
  not_ok "SIGTERM: exit $node_rc, drain line: '${drain_line:-none}' (see $node_log)"
fi
wait "$hold_pid"
hold_pid=""
if grep -q '^disconnected: transport close' "$hold_log"; then
  ok "the connected client was closed by the drain (socket.io-client: transport close)"
else
  not_ok "the connected client saw: $(tr '\n' ' ' <"$hold_log")"
fi

finish
