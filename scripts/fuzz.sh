#!/usr/bin/env bash
# Fuzzes the Engine.IO and Socket.IO decoders (spec socketio-server.md §4 item 14: engine.io had
# crash CVEs on malformed input). Builds the libFuzzer targets with clang + ASan/UBSan in
# build-fuzz (a tree of its own: sanitizer flags must not leak into build/), runs each for
# SECONDS, keeps the corpus between runs and prints the executions each target reached.
# Exits non-zero when a target crashes; the input is saved under build-fuzz/artifacts/.
#
# Usage: scripts/fuzz.sh [SECONDS per target, default 30]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-30}
case "$seconds" in
  '' | *[!0-9]*)
    echo "usage: scripts/fuzz.sh [SECONDS per target]" >&2
    exit 2
    ;;
esac

scripts/setup.sh --no-npm --no-browser --fuzz

build=build-fuzz
targets=(fuzz_engineio_payload fuzz_socketio_packet fuzz_moleculer_packet fuzz_redis_url fuzz_resp_decoder)

CC=clang CXX=clang++ cmake -S . -B "$build" -DSTEEDOS_FUZZ=ON -DSTEEDOS_BUILD_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target "${targets[@]}" -j"$(nproc)"

mkdir -p "$build/artifacts" "$build/logs"

# Seeds: the byte-exact examples of the spec, so the fuzzers start from real packets.
seed() { # target name bytes...
  local dir="$build/corpus/$1"
  mkdir -p "$dir"
  [ -f "$dir/seed-$2" ] || printf '%b' "$3" >"$dir/seed-$2"
}
seed fuzz_engineio_payload hello '4hello\x1ebAQIDBA=='
seed fuzz_engineio_payload probe '2probe'
seed fuzz_engineio_payload batch '42["hello"]\x1e42["world"]\x1e3\x1e6\x1e1'
seed fuzz_engineio_payload open '0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"]}'
seed fuzz_socketio_packet binary \
  '52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
seed fuzz_socketio_packet ack '2456["message-with-ack",1,"2",{"3":[false]}]'
seed fuzz_socketio_packet connect '0/custom,{"token":"abc"}'
seed fuzz_socketio_packet error '4/random,{"message":"Invalid namespace"}'
seed fuzz_socketio_packet binack '61-/admin,1[{"_placeholder":true,"num":0}]'
seed fuzz_socketio_packet nested '3[{"a":[1,-2.5e3,"\\u00e9\\"",null,true,{}]},[]]'
seed fuzz_moleculer_packet request \
  '{"ver":"4","sender":"n1","id":"a1","action":"socket.emit","params":{"x":[1,{"y":null}]},"meta":{}}'
seed fuzz_moleculer_packet event \
  '{"ver":"4","sender":"n1","id":"e1","event":"a.b","data":{"k":"\\u00e9"},"groups":["g"],"dup":1,"dup":2}'
seed fuzz_redis_url plain 'redis://localhost:6379'
seed fuzz_redis_url auth 'rediss://molnode:p%40ss%3Aw%2Fd%25@[::1]:6380/2?connectTimeout=500'
seed fuzz_redis_url query 'redis://:pw@redis.example/0?password=x&username=u&db=3'
seed fuzz_resp_decoder message '*3\r\n$7\r\nmessage\r\n$9\r\nMOL.INFO.\r\n$2\r\n{}\r\n'
seed fuzz_resp_decoder pong '*2\r\n$4\r\npong\r\n$0\r\n\r\n'
seed fuzz_resp_decoder replies '+OK\r\n-NOPERM no channel\r\n:12\r\n$-1\r\n*-1\r\n*0\r\n'

# Tokens libFuzzer would take long to guess.
dict="$build/socketio.dict"
cat >"$dict" <<'DICT'
"_placeholder"
"\"_placeholder\":true"
"\"num\":"
"true"
"false"
"null"
"\\u"
"/custom,"
"connect"
"disconnect"
"newListener"
"1-"
"10-"
"11-"
DICT

status=0
summary=()
for target in "${targets[@]}"; do
  log="$build/logs/$target.log"
  args=(-max_total_time="$seconds" -timeout=10 -print_final_stats=1
    -artifact_prefix="$build/artifacts/$target-")
  [ "$target" = fuzz_socketio_packet ] || [ "$target" = fuzz_moleculer_packet ] &&
    args+=(-dict="$dict")
  echo "fuzz: $target for $seconds s"
  if "$build/$target" "${args[@]}" "$build/corpus/$target" >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    status=1
    tail -n 40 "$log" >&2
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  [ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
  summary+=("$target: ${runs:-?} executions, $result")
done

printf 'fuzz: %s\n' "${summary[@]}"
exit "$status"
