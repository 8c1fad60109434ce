#!/usr/bin/env bash
# Installs what building and testing steedos-socket needs, only what is missing:
#   * Debian 12 packages (apt-get; `apt-get update` runs once, only when something must be installed);
#   * the npm dependencies of the interop tests (`npm ci` in every tests/interop folder holding a
#     package-lock.json, when its node_modules is missing or older than the lockfile).
#   * with --fuzz, the clang toolchain scripts/fuzz.sh needs (libFuzzer and the sanitizer
#     runtimes live in libclang-rt-14-dev, which clang only recommends; llvm brings
#     llvm-symbolizer for readable crash stacks).
# Idempotent: a second run installs nothing and takes a few seconds.
#
# Usage: scripts/setup.sh [--no-npm] [--no-browser] [--fuzz]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

with_npm=1
with_fuzz=0
with_browser=1
for arg in "$@"; do
  case "$arg" in
    --no-npm) with_npm=0 ;;
    --no-browser) with_browser=0 ;;
    --fuzz) with_fuzz=1 ;;
    -h | --help)
      echo "usage: scripts/setup.sh [--no-npm] [--no-browser] [--fuzz]"
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
  doctest-dev libssl-dev pkg-config cmake g++ make openssl
)
# Headless Chromium for the browser tests; running the node does not need it.
if [ "$with_browser" -eq 1 ]; then
  APT_PACKAGES+=(chromium)
fi
if [ "$with_fuzz" -eq 1 ]; then
  APT_PACKAGES+=(clang libclang-rt-14-dev llvm)
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

# --- npm (interop tests) -----------------------------------------------------------------------
if [ "$with_npm" -eq 0 ]; then
  echo "setup: npm skipped (--no-npm)"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "setup: npm not found (Node.js 20 + npm are expected on the machine)" >&2
  exit 1
fi

for dir in tests/interop tests/interop/*/; do
  dir=${dir%/}
  case "$dir" in */node_modules) continue ;; esac
  [ -f "$dir/package-lock.json" ] || continue
  stamp="$dir/node_modules/.package-lock.json"
  if [ -f "$stamp" ] && ! [ "$dir/package-lock.json" -nt "$stamp" ]; then
    echo "setup: $dir/node_modules up to date"
    continue
  fi
  echo "setup: npm ci in $dir"
  start=$SECONDS
  # --loglevel=error hides the expected EBADENGINE warnings (moleculer 0.15 declares node >= 22).
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  touch "$stamp"
  echo "setup: npm ci in $dir done in $((SECONDS - start)) s"
done
