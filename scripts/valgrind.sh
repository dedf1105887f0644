#!/usr/bin/env bash
# scripts/valgrind.sh - the daemon under valgrind memcheck for a short soak
# (issue 15): a build without jemalloc (build/vg), then rpc_bench --quick
# (lookups, cycles, 8 clients), the second-tier and operator end-to-end
# tests, and a soak (bench/soak: 4 clients for 30 s, one SIGKILLed every
# ~300 ms mid-lease, every hit verified; no daemon restarts, since a killed
# daemon's leaks mean nothing; it ends with SIGTERM), each daemon they
# start run under memcheck.  Fails on any memcheck
# error or leak (every daemon's log is checked).  Not part of `dev.sh test`:
# it takes a few minutes.  Needs valgrind (Debian's) and a release build
# (build/release) for the clients.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build/vg -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=gcc \
      -DPC_JEMALLOC=OFF -DPC_CUDA=OFF >/dev/null
cmake --build build/vg -j "$(nproc)" --target prefixcached
cmake --build build/release -j "$(nproc)" --target soak
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
# --soak-only: the soak alone (a few minutes less)
if [ "${1:-}" != --soak-only ]; then
build/release/bench/rpc_bench --quick --side daemon --daemon "$wrap" \
    --timeout-ms 30000 --phases lookup,cycle,cycle-tput >"$logs/rpc_bench.log"
PREFIXCACHED="$wrap" build/release/tests/test_tier2_e2e --jobs=1
PREFIXCACHED="$wrap" build/release/tests/test_operator_e2e --jobs=1
fi
# the soak: its own criteria (no corrupt read, no lease or block left after
# the TTL, the daemon's check, exit 0 on SIGTERM: 99 if memcheck found
# anything) and memcheck's, below; slow replies need a long RPC timeout
if ! build/release/bench/soak/soak --daemon "$wrap" --clients 4 \
        --seconds "${SOAK_SECONDS:-30}" --kill-every-ms 300 --restart-every-ms 0 \
        --ttl-ms 1000 --rpc-timeout-ms 20000 --json "$logs/soak.json" \
        >"$logs/soak.log" 2>&1; then
    tail -40 "$logs/soak.log" >&2
    echo "soak against the memcheck'ed daemon failed (logs in $logs)" >&2
    exit 1
fi
n=$(ls "$logs"/daemon.*.log | wc -l)
bad=$(grep -L "ERROR SUMMARY: 0 errors" "$logs"/daemon.*.log || true)
if [ -n "$bad" ]; then
    echo "memcheck errors in: $bad" >&2
    exit 1
fi
echo "valgrind: $n daemons, 0 errors, no leaks (logs in $logs)"
