#!/usr/bin/env bash
# The steps of the container image (Dockerfile), one subcommand per RUN line, so that
# scripts/container-steps.sh runs the very same commands on the host (no Docker engine there):
#
#   scripts/image.sh build PREFIX
#       builds the node with scripts/build.sh (./build or $BUILD_DIR, reused when built already)
#       and installs it with `cmake --install --strip` into PREFIX: bin/steedos-socket,
#       share/steedos-socket/{socket.io-client,web}, etc/steedos-socket/moleculer.config.json.
#   scripts/image.sh runtime-deps BINARY FILE
#       writes to FILE the Debian packages BINARY needs at run time, one a line, derived rather
#       than kept by hand (scripts/setup.sh stays the one list of packages):
#         * the owners (dpkg -S) of the shared libraries ldd resolves for BINARY;
#         * what those packages Recommend, Debian's name for the data a library is used with
#           (libpsl5 -> publicsuffix: the Public Suffix List the Origin policy reads);
#         * ca-certificates when libssl is among them: the trust store of OpenSSL's default
#           verify paths (tls:// NATS, rediss://), which no library package names.
#       A library ldd cannot resolve, or one no package owns, is an error.
#   scripts/image.sh install-runtime FILE
#       installs the packages FILE lists that are missing (apt-get, no recommends) and then
#       drops apt's lists and archives; when nothing is missing (the host that built BINARY),
#       installs and deletes nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

die() {
  echo "image: $*" >&2
  exit 1
}

cmd_build() {
  [ $# -eq 1 ] || die "usage: scripts/image.sh build PREFIX"
  local prefix=$1 build_dir=${BUILD_DIR:-build}
  bash scripts/build.sh --target steedos-socket
  cmake --install "$build_dir" --prefix "$prefix" --strip
}

# Prints "PATH PACKAGE" for every PATH given that a package owns, in one dpkg-query call (each
# call reads every file list: ~1.5 s). Both /usr-merged twins of a path are asked for: ldd prints
# /lib/... while Debian 12 packages record /usr/lib/... (or the other way round).
owners_of() {
  local path candidates=()
  for path in "$@"; do
    candidates+=("$path" "/usr$path" "${path#/usr}")
  done
  dpkg-query -S "${candidates[@]}" 2>/dev/null |
    awk -F': ' '{ split($1, owners, ", "); pkg = owners[1]; sub(/:.*/, "", pkg); print $2, pkg }'
}

cmd_runtime_deps() {
  [ $# -eq 2 ] || die "usage: scripts/image.sh runtime-deps BINARY FILE"
  local binary=$1 file=$2 libraries lib real pkg
  [ -x "$binary" ] || die "$binary is not an executable"
  libraries=$(ldd "$binary") || die "ldd $binary failed"
  if grep -q 'not found' <<<"$libraries"; then
    die "ldd cannot resolve: $(grep 'not found' <<<"$libraries" | tr -s ' \t' ' ')"
  fi
  # "libx.so => /path (0x...)" and the loader's own "/lib64/ld-linux-x86-64.so.2 (0x...)"; each
  # with the file its symlinks lead to (the one a package ships).
  local paths=() real_of=()
  while read -r lib; do
    real=$(readlink -f "$lib")
    paths+=("$lib" "$real")
    real_of+=("$lib $real")
  done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$libraries")
  declare -A owner=()
  while read -r path pkg; do
    owner[$path]=$pkg
  done < <(owners_of "${paths[@]}")
  declare -A packages=()
  local pair found candidate
  for pair in "${real_of[@]}"; do
    found=""
    for candidate in $pair; do
      for path in "$candidate" "/usr$candidate" "${candidate#/usr}"; do
        [ -n "${owner[$path]:-}" ] && found=${owner[$path]} && break 2
      done
    done
    [ -n "$found" ] || die "no Debian package owns ${pair%% *}"
    packages[$found]=1
  done
  # Recommends of those packages, first alternative, without version:
  # "publicsuffix (>= 20150507), foo | bar" -> publicsuffix foo
  local alternative
  while IFS= read -r alternative; do
    alternative=${alternative%%|*}
    alternative=${alternative%%(*}
    alternative=${alternative// /}
    [ -n "$alternative" ] && packages[$alternative]=1
  done < <(dpkg-query -W -f='${Recommends}\n' "${!packages[@]}" | tr ',' '\n')
  if [ -n "${packages[libssl3]:-}" ]; then
    packages[ca-certificates]=1
  fi
  mkdir -p "$(dirname "$file")"
  printf '%s\n' "${!packages[@]}" | sort >"$file"
  echo "image: $(wc -l <"$file") runtime packages in $file: $(tr '\n' ' ' <"$file")"
}

cmd_install_runtime() {
  [ $# -eq 1 ] || die "usage: scripts/image.sh install-runtime FILE"
  local file=$1 pkg status
  [ -s "$file" ] || die "$file is missing or empty"
  local wanted=()
  mapfile -t wanted < <(grep -v '^[[:space:]]*$' "$file")
  # One dpkg-query for all (each call reads the status database); unknown packages print nothing.
  declare -A installed=()
  while read -r pkg status; do
    [ "$status" = installed ] && installed[$pkg]=1
  done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${wanted[@]}" 2>/dev/null)
  local missing=()
  for pkg in "${wanted[@]}"; do
    [ -n "${installed[$pkg]:-}" ] || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    echo "image: runtime packages present ($(wc -l <"$file"))"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "missing packages (${missing[*]}) and not root"
  echo "image: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Only what this step fetched: a slim image keeps no package lists or archives.
  apt-get clean
  rm -rf /var/lib/apt/lists/*
}

[ $# -ge 1 ] || {
  usage >&2
  exit 2
}
command=$1
shift
case "$command" in
  build) cmd_build "$@" ;;
  runtime-deps) cmd_runtime_deps "$@" ;;
  install-runtime) cmd_install_runtime "$@" ;;
  -h | --help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
