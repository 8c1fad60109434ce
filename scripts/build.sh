#!/usr/bin/env bash
# Configures (if needed, cheap otherwise) and builds into ./build (or $BUILD_DIR), reusing the directory.
#
# Usage: scripts/build.sh [CMAKE_CONFIGURE_ARGS...] [CMAKE_BUILD_ARGS...]
#   Arguments starting with -D, -U, -G or -W go to the configure step, all others to `cmake --build`:
#     scripts/build.sh --target unit-gateway
#     BUILD_DIR=build-asan scripts/build.sh -DSTEEDOS_SANITIZE=ON
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build_dir=${BUILD_DIR:-build}
configure_args=()
build_args=()
for arg in "$@"; do
  case "$arg" in
    -D* | -U* | -G* | -W*) configure_args+=("$arg") ;;
    *) build_args+=("$arg") ;;
  esac
done

cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${configure_args[@]}"
cmake --build "$build_dir" -j2 "${build_args[@]}"
