#!/usr/bin/env bash
# scripts/dev.sh - the one entry point for a fresh Debian machine.
#
#   bash scripts/dev.sh run [OPTION]...
#                               install what is missing, build the release
#                               daemon and CLI, exec prefixcached with OPTIONs
#                               (none: the embedded default; see --help)
#   bash scripts/dev.sh test    install what is missing, build both flavours
#                               (release with gcc + jemalloc, sanitizers with
#                               clang: ASan + UBSan, and the libFuzzer targets
#                               with 20 s runs), run the whole suite in each
#   bash scripts/dev.sh build   install + build both flavours, no tests
#   bash scripts/dev.sh deps    only install the missing Debian packages
#
# Build trees live in build/release and build/asan.  Exits non-zero on any
# failure (a sanitizer report fails its test through ctest).
set -euo pipefail
cd "$(dirname "$0")/.."

# Why each package is here: see README.md, "Dependencies".
PKGS=(cmake make pkg-config gcc libc6-dev clang libclang-rt-14-dev
      libxxhash-dev libjemalloc-dev libcriterion-dev libzmq3-dev libmsgpack-dev
      libsodium-dev
      libmicrohttpd-dev prometheus
      python3-zmq python3-msgpack python3-numpy python3-torch)

JOBS=$(nproc 2>/dev/null || echo 2)

deps() {
    local missing=() p
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    echo "==> installing missing packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get -y -q install --no-install-recommends "${missing[@]}"
}

# build <flavour> [target...]: release (gcc, -O2, jemalloc) or asan (clang,
# ASan+UBSan); every target when none is named
build() {
    local dir="build/$1" args=() targets=()
    local t
    for t in "${@:2}"; do targets+=(--target "$t"); done
    case "$1" in
        release) args=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=gcc) ;;
        # asan also builds the libFuzzer targets and their short ctest runs
        # (tests/fuzz/README.md)
        asan)    args=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang -DPC_SANITIZE=ON -DPC_FUZZ=ON) ;;
        *) echo "unknown flavour $1" >&2; return 2 ;;
    esac
    echo "==> configure + build $1 ($dir)"
    cmake -S . -B "$dir" "${args[@]}" >/dev/null
    cmake --build "$dir" -j "$JOBS" "${targets[@]}"
}

run_tests() {
    echo "==> ctest $1"
    ctest --test-dir "build/$1" --output-on-failure -j "$JOBS"
}

case "${1:-test}" in
    run)   shift
           deps; build release prefixcached prefixcache-cli
           echo "==> build/release/daemon/prefixcached $*" \
                "(build/release/daemon/prefixcache-cli talks to it)"
           exec build/release/daemon/prefixcached "$@" ;;
    deps)  deps ;;
    build) deps; build release; build asan ;;
    test)  deps; build release; run_tests release; build asan; run_tests asan ;;
    *) sed -n '2,16p' "$0"; exit 2 ;;
esac
