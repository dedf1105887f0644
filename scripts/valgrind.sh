#!/usr/bin/env bash
# scripts/valgrind.sh - the daemon under valgrind memcheck for a short soak
# (issue 15): a build without jemalloc (build/vg), then rpc_bench --quick
# (lookups, cycles, 8 clients) and the second-tier and operator end-to-end
# tests, each daemon they start run under memcheck.  Fails on any memcheck
# error or leak (every daemon's log is checked).  Not part of `dev.sh test`:
# it takes a few minutes.  Needs valgrind (Debian's) and a release build
# (build/release) for the clients.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build/vg -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=gcc \
      -DPC_JEMALLOC=OFF -DPC_CUDA=OFF >/dev/null
cmake --build build/vg -j "$(nproc)" --target prefixcached
logs=$(mktemp -d /tmp/pc-valgrind.XXXXXX)
wrap="$logs/prefixcached"
cat > "$wrap" <<EOW
#!/bin/sh
exec valgrind --tool=memcheck --leak-check=full \
  --show-leak-kinds=definite,indirect,possible \
  --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99 \
  --log-file=$logs/daemon.%p.log $PWD/build/vg/daemon/prefixcached "\$@"
EOW
chmod +x "$wrap"
build/release/bench/rpc_bench --quick --side daemon --daemon "$wrap" \
    --timeout-ms 30000 --phases lookup,cycle,cycle-tput >"$logs/rpc_bench.log"
PREFIXCACHED="$wrap" build/release/tests/test_tier2_e2e --jobs=1
PREFIXCACHED="$wrap" build/release/tests/test_operator_e2e --jobs=1
n=$(ls "$logs"/daemon.*.log | wc -l)
bad=$(grep -L "ERROR SUMMARY: 0 errors" "$logs"/daemon.*.log || true)
if [ -n "$bad" ]; then
    echo "memcheck errors in: $bad" >&2
    exit 1
fi
echo "valgrind: $n daemons, 0 errors, no leaks (logs in $logs)"
