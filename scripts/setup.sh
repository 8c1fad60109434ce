#!/usr/bin/env bash
# Installs what building, running and testing steedos-socket needs, only what is missing:
#   * Debian 12 packages (apt-get; `apt-get update` runs once, only when something must be installed),
#     and Debian's nodejs / npm when the machine has no `node` / `npm` at all;
#   * the socket.io-client browser bundle the node serves (gateway.clientBundle): `npm ci
#     --omit=dev` in client/, pinned by client/package-lock.json;
#   * the npm dependencies of the interop tests (`npm ci` in every tests/interop folder holding a
#     package-lock.json), unless --product.
#   An npm folder is installed when its node_modules is missing or older than its lockfile.
#   * with --fuzz, the clang toolchain scripts/fuzz.sh needs (libFuzzer and the sanitizer
#     runtimes live in libclang-rt-14-dev, which clang only recommends; llvm brings
#     llvm-symbolizer for readable crash stacks).
# Idempotent: a second run installs nothing and takes a few seconds.
#
# Usage: scripts/setup.sh [--product] [--no-npm] [--no-browser] [--fuzz]
#   --product     only what building and running the node needs (scripts/run.sh): no Chromium,
#                 no npm packages of the tests
#   --no-npm      no node/npm and nothing from npm, not even the bundle (unit tests)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

with_npm=1
with_test_npm=1
with_fuzz=0
with_browser=1
for arg in "$@"; do
  case "$arg" in
    --product)
      with_test_npm=0
      with_browser=0
      ;;
    --no-npm) with_npm=0 ;;
    --no-browser) with_browser=0 ;;
    --fuzz) with_fuzz=1 ;;
    -h | --help)
      echo "usage: scripts/setup.sh [--product] [--no-npm] [--no-browser] [--fuzz]"
      exit 0
      ;;
    *)
      echo "setup: unknown argument: $arg" >&2
      exit 2
      ;;
  esac
done

APT_PACKAGES=(
  nats-server libnats-dev libwebsocketpp-dev libasio-dev libspdlog-dev nlohmann-json3-dev
  doctest-dev libssl-dev libpsl-dev publicsuffix pkg-config cmake g++ make openssl libhiredis-dev
  prometheus-cpp-dev
)
# The Redis transporter's tests and `scripts/run.sh --redis` start a local redis-server.
if [ "$with_test_npm" -eq 1 ] || [ "${STEEDOS_WITH_REDIS:-0}" = 1 ]; then
  APT_PACKAGES+=(redis-server redis-tools)
fi
if [ "$with_test_npm" -eq 1 ]; then
  # PyYAML: scripts/container-steps.sh reads deploy/'s Kubernetes and Compose files with it.
  APT_PACKAGES+=(python3-yaml)
  # The metrics tests check the exposition with promtool and scrape it with a Prometheus server.
  APT_PACKAGES+=(prometheus)
  # The load-balancer tests put three nodes behind nginx and behind HAProxy (docs/deploy.md's
  # configurations); each test starts its own foreground process, never the packages' services.
  APT_PACKAGES+=(nginx-light haproxy)
fi
# Headless Chromium for the browser tests; running the node does not need it.
if [ "$with_browser" -eq 1 ]; then
  APT_PACKAGES+=(chromium)
fi
if [ "$with_fuzz" -eq 1 ]; then
  APT_PACKAGES+=(clang libclang-rt-14-dev llvm)
fi
# Node.js from Debian only when there is none: a machine may carry a newer one (NodeSource, whose
# nodejs package includes npm and conflicts with Debian's npm).
if [ "$with_npm" -eq 1 ]; then
  command -v node >/dev/null 2>&1 || APT_PACKAGES+=(nodejs)
  command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(npm)
  # npm fetches over HTTPS; Debian's nodejs only recommends the CA store (a slim image, e.g. the
  # Dockerfile's build stage, has none without it).
  APT_PACKAGES+=(ca-certificates)
fi

# --- apt ---------------------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  if [ "$status" != "installed" ]; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup: apt packages present (${#APT_PACKAGES[@]})"
else
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "setup: missing packages (${missing[*]}) and not root; install them as root" >&2
      exit 1
    fi
  fi
  echo "setup: installing ${missing[*]}"
  start=$SECONDS
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "setup: apt done in $((SECONDS - start)) s"
fi

# --- npm ----------------------------------------------------------------------------------------
if [ "$with_npm" -eq 0 ]; then
  echo "setup: npm skipped (--no-npm)"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "setup: npm not found after installing the Debian npm package" >&2
  exit 1
fi

# npm_ci DIR [ARGS...]: `npm ci` in DIR when DIR/node_modules is missing or older than the lockfile.
npm_ci() {
  local dir=$1
  shift
  # A linked node_modules (a git worktree sharing another checkout's) is left alone: `npm ci`
  # would empty the directory it points to.
  if [ -L "$dir/node_modules" ]; then
    echo "setup: $dir/node_modules is a symbolic link, left as it is"
    return 0
  fi
  local stamp="$dir/node_modules/.package-lock.json"
  if [ -f "$stamp" ] && ! [ "$dir/package-lock.json" -nt "$stamp" ]; then
    echo "setup: $dir/node_modules up to date"
    return 0
  fi
  echo "setup: npm ci${*:+ $*} in $dir"
  local start=$SECONDS
  # --loglevel=error hides the expected EBADENGINE warnings (moleculer 0.15 declares node >= 22).
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error "$@")
  touch "$stamp"
  echo "setup: npm ci in $dir done in $((SECONDS - start)) s"
}

# The product's socket.io-client bundle (gateway.clientBundle's default).
npm_ci client --omit=dev

if [ "$with_test_npm" -eq 0 ]; then
  echo "setup: npm packages of the tests skipped (--product)"
  exit 0
fi

for dir in tests/interop tests/interop/*/; do
  dir=${dir%/}
  case "$dir" in */node_modules) continue ;; esac
  [ -f "$dir/package-lock.json" ] || continue
  npm_ci "$dir"
done
