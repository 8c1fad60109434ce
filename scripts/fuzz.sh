#!/usr/bin/env bash
# Fuzzes what the node reads from the network and its configuration: the Engine.IO and
# Socket.IO decoders (spec socketio-server.md §4 item 14: engine.io had crash CVEs on malformed
# input), Moleculer packets, Redis URLs and replies, HTTP request heads with the cookie rules,
# WebSocket frames, moleculer.config.json. Builds the libFuzzer targets with clang + ASan/UBSan in
# build-fuzz (a tree of its own: sanitizer flags must not leak into build/), runs each for
# SECONDS, keeps the corpus between runs and prints one line per target with the executions
# and the coverage (libFuzzer's cov: edges) it reached.
# Exits non-zero when a target crashes; the input is saved under build-fuzz/artifacts/.
# Each target starts from its committed corpus (tests/fuzz/corpus/TARGET.b64, which the unit
# tests replay: tests/fuzz/replay_main.cpp) plus the seeds below.
#
# Usage: scripts/fuzz.sh [SECONDS per target, default 30] [TARGET...]  (default: all targets)
#        scripts/fuzz.sh --minimize [TARGET...]
#   --minimize: no fuzzing; rewrites tests/fuzz/corpus/TARGET.b64 as the smallest set of inputs of
#   build-fuzz/corpus/TARGET that covers what all of them cover (libFuzzer -set_cover_merge), so
#   what a long run found is replayed by every test run once committed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

all_targets=(fuzz_engineio_payload fuzz_socketio_packet fuzz_moleculer_packet fuzz_redis_url
  fuzz_resp_decoder fuzz_http_request fuzz_config fuzz_ws_frames)
usage() {
  echo "usage: scripts/fuzz.sh [SECONDS per target] [TARGET...]; targets: ${all_targets[*]}" >&2
  exit 2
}

minimize=0
if [ "${1:-}" = --minimize ]; then
  minimize=1
  shift
  set -- 0 "$@"
fi
seconds=${1:-30}
case "$seconds" in
  '' | *[!0-9]*) usage ;;
esac
[ "$#" -gt 0 ] && shift
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${all_targets[@]}")
for target in "${targets[@]}"; do
  case " ${all_targets[*]} " in
    *" $target "*) ;;
    *) usage ;;
  esac
done

scripts/setup.sh --no-npm --no-browser --fuzz

build=build-fuzz

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
# fuzz_http_request: byte 0 picks the header limit (\x00: the default 16 KiB), then the request.
seed fuzz_http_request polling '\x00GET /socket.io/?EIO=4&transport=polling&t=Pq1a%2Fb+c HTTP/1.1\r
Host: app.example:5100\r\nCookie: X-Space-Id=space1; X-Auth-Token=tok%20en; theme="dark"\r
Accept: */*\r\nConnection: keep-alive\r\n\r\n'
seed fuzz_http_request upgrade '\x00\r\nGET /socket.io/?EIO=4&transport=websocket&sid=lv_VI97 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r
Origin: https://app.example\r\nAuthorization: Bearer space1,token2\r\n\r\n'
seed fuzz_http_request post '\x00POST http://proxy.example/socket.io/?EIO=4&sid=x&sid=y HTTP/1.0\r
Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 0012\r
Cookie: X-Auth-Token=t; X-Space-Id="s"; X-Auth-Token=second\r\n\r\n42["a",1]\x1e2'
seed fuzz_http_request refused '\xf1OPTIONS /socket.io/ HTTP/1.1\r\nTransfer-Encoding: chunked\r
Access-Control-Request-Headers: x-a, content-type\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n'
# fuzz_config: the file text, then \x01 and the environment values TRANSPORTER, NAMESPACE,
# NODEID, PORT, LOGLEVEL, PROTOCOL_VERSION separated by \x01.
mkdir -p "$build/corpus/fuzz_config"
cp -n moleculer.config.json "$build/corpus/fuzz_config/seed-repo"
seed fuzz_config env '{"gateway":{"port":1},"transporter":"NATS"}\x01nats://a:4222,nats://b:4222\x01ns\x01node-1\x01 8080 \x01DEBUG\x015'
seed fuzz_config redis '{"transporter":{"type":"Redis","options":{"host":"r","port":6380,"password":"p@ss","db":2}},"protocolVersion":5,"logLevel":"warn"}'
seed fuzz_config gateway '{"namespace":"dev","requestTimeout":10000,"heartbeatInterval":0.5,"transit":{"maxQueueSize":1},"gateway":{"path":"/ws","corsOrigins":["https://app.example","http://localhost:8080"],"clientBundle":false,"maxHttpBufferSize":1e6,"individualRoomParts":[]},"auth":{"cacheTtl":0,"timeout":null}}'
seed fuzz_config star '{"gateway":{"corsOrigins":"*","clientBundle":"/nonexistent","pingInterval":-1},"metadata":[]}'
# fuzz_ws_frames: byte 0 the message size limit (\xff: 1 MB), byte 1 the number of cuts, two
# bytes per cut, then client frames masked with 37 fa 21 3d (ws_frame below).
ws_frame() { # FIRST_BYTE PAYLOAD: a masked client frame as printf %b escapes
  local LC_ALL=C first=$1 payload=$2 n=${#2} out i c byte
  local mask=(0x37 0xfa 0x21 0x3d)
  printf -v out '\\x%02x' "$first"
  if [ "$n" -lt 126 ]; then
    printf -v byte '\\x%02x' $((0x80 | n))
  else
    printf -v byte '\\xfe\\x%02x\\x%02x' $((n >> 8)) $((n & 255))
  fi
  out+=$byte'\x37\xfa\x21\x3d'
  for ((i = 0; i < n; i++)); do
    printf -v c '%d' "'${payload:i:1}"
    printf -v byte '\\x%02x' $(((c ^ mask[i % 4]) & 255))
    out+=$byte
  done
  printf '%s' "$out"
}
seed fuzz_ws_frames text "\xff\x02\x00\x03\x00\x09$(ws_frame 0x81 hello)"
seed fuzz_ws_frames engineio "\xff\x03\x00\x01\x00\x0c\x00\x14$(ws_frame 0x81 2probe)$(ws_frame 0x81 5)\
$(ws_frame 0x81 '42["message",{"a":1}]')$(ws_frame 0x82 $'\x01\x02\x03\x04')"
seed fuzz_ws_frames fragmented "\xff\x04\x00\x02\x00\x07\x00\x10\x00\x19$(ws_frame 0x01 Hel)\
$(ws_frame 0x89 ping)$(ws_frame 0x00 'lo, ')$(ws_frame 0x80 world)$(ws_frame 0x8a '')\
$(ws_frame 0x88 $'\x03\xe8bye')"
seed fuzz_ws_frames lengths "\xff\x01\x00\x05$(ws_frame 0x82 "$(printf 'm%.0s' {1..300})")\
$(ws_frame 0x81 "$(printf 'x%.0s' {1..126})")$(ws_frame 0x88 '')"
seed fuzz_ws_frames toobig "\x10\x00$(ws_frame 0x02 aaaaaaaaaa)$(ws_frame 0x80 bbbbbbbbbb)"

# The committed corpus: one base64 input per line.
for target in "${targets[@]}"; do
  committed=tests/fuzz/corpus/$target.b64
  [ -f "$committed" ] || continue
  mkdir -p "$build/corpus/$target"
  while IFS= read -r line; do
    file="$build/corpus/$target/$(printf '%s' "$line" | base64 -d | sha1sum | cut -c1-40)"
    [ -f "$file" ] || printf '%s' "$line" | base64 -d >"$file"
  done <"$committed"
done

if [ "$minimize" -eq 1 ]; then
  for target in "${targets[@]}"; do
    minimal=$(mktemp -d)
    "$build/$target" -set_cover_merge=1 -timeout=10 "$minimal" "$build/corpus/$target" \
      >"$build/logs/$target-minimize.log" 2>&1
    for file in "$minimal"/*; do
      base64 -w0 "$file"
      echo
    done | sort -u >"tests/fuzz/corpus/$target.b64"
    rm -rf "$minimal"
    echo "fuzz: $target: $(wc -l <"tests/fuzz/corpus/$target.b64") inputs in tests/fuzz/corpus/$target.b64"
  done
  exit 0
fi

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
http_dict="$build/http.dict"
cat >"$http_dict" <<'DICT'
"\x0d\x0a"
"\x0d\x0a\x0d\x0a"
" HTTP/1.1\x0d\x0a"
" HTTP/1.0\x0d\x0a"
"GET "
"POST "
"OPTIONS "
"http://"
"/socket.io/?EIO=4&transport="
"Cookie: "
"X-Space-Id="
"X-Auth-Token="
"Authorization: Bearer "
"Content-Length: "
"Transfer-Encoding: chunked"
"Connection: "
"Upgrade: websocket"
"keep-alive"
"close"
"%2F"
"%"
"%%"
"%C3%A9"
"\x22"
";"
DICT
config_dict="$build/config.dict"
cat >"$config_dict" <<'DICT'
"\x01"
"\"transporter\":"
"\"gateway\":{"
"\"auth\":{"
"\"transit\":{"
"\"registry\":{"
"\"port\":"
"\"path\":"
"\"host\":"
"\"pingInterval\":"
"\"pingTimeout\":"
"\"connectTimeout\":"
"\"drainTimeout\":"
"\"maxHttpBufferSize\":"
"\"maxRoomsPerSocket\":"
"\"corsOrigins\":"
"\"clientBundle\":"
"\"individualRoomParts\":"
"\"metadataTypes\":"
"\"anonymousRooms\":"
"\"cacheTtl\":"
"\"timeout\":"
"\"action\":"
"\"protocolVersion\":"
"\"logLevel\":"
"\"heartbeatInterval\":"
"\"maxQueueSize\":"
"\"requestTimeout\":"
"\"type\":\"Redis\""
"\"options\":{"
"\"redis://"
"\"nats://"
"null"
"true"
"false"
"1e308"
"-0"
"9223372036854775808"
"2147483648"
DICT

status=0
summary=()
for target in "${targets[@]}"; do
  log="$build/logs/$target.log"
  args=(-max_total_time="$seconds" -timeout=10 -print_final_stats=1
    -artifact_prefix="$build/artifacts/$target-")
  case "$target" in
    fuzz_socketio_packet | fuzz_moleculer_packet) args+=(-dict="$dict") ;;
    fuzz_http_request) args+=(-dict="$http_dict") ;;
    fuzz_config) args+=(-dict="$config_dict") ;;
  esac
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
  # The last status line libFuzzer printed ("#N DONE cov: 123 ft: ..."): edges reached.
  cov=$(sed -n 's/^#[0-9]*.* cov: \([0-9]*\) .*/\1/p' "$log" | tail -n 1)
  summary+=("$target (cov ${cov:-?}): ${runs:-?} executions, $result")
done

printf 'fuzz: %s\n' "${summary[@]}"
exit "$status"
