#!/bin/sh
# Regenerates what RESULTS.md shows: the sweep over both Mooncake traces
# (table, JSON, Markdown, one PNG per trace) and the daemon-mode equality
# check of every policy at 1% and 10% of each working set.
#   sh bench/trace_replay/run_results.sh [BUILD_DIR] [TRACE_DIR] [OUT_DIR]
# defaults: /tmp/h7-rel, ../shared/traces (next to the checkout),
# bench/trace_replay/results.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-/tmp/h7-rel}
traces=${2:-$here/../../../shared/traces}
out=${3:-$here/results}
bin=$build/bench/trace_replay/trace_replay
mkdir -p "$out"
"$bin" --fractions 1,2,3,5,10,20,50,100 --json "$out/sweep.json" --md "$out/sweep.md" --plot-dir "$out" \
    "$traces/conversation_trace.jsonl" "$traces/synthetic_trace.jsonl" \
    | tee "$out/sweep.txt"
: > "$out/daemon_check.txt"
policies=$("$bin" --help | sed -n 's/^policies: //p')
for t in conversation_trace synthetic_trace; do
    for p in $policies; do
        for f in 1 10; do
            "$bin" --quiet --spawn-daemon --policy "$p" --fractions "$f" \
                "$traces/$t.jsonl" | tee -a "$out/daemon_check.txt"
        done
    done
done
# the same as a Markdown table
awk 'BEGIN { print "| trace | policy | pages | daemon | in-process | equal |";
             print "|---|---|---:|---:|---:|---|" }
     /, policy / { t = $1; sub(",", "", t); p = $3; sub(",", "", p); c = $5 }
     / daemon +hit rate/ { d = $4 }
     / in-process hit rate/ { i = $4 }
     /PASS|FAIL/ { v = /PASS/ ? "PASS" : "FAIL";
                   printf "| %s | %s | %s | %s | %s | %s |\n", t, p, c, d, i, v }' \
    "$out/daemon_check.txt" > "$out/daemon_check.md"
grep -c PASS "$out/daemon_check.txt" | sed 's/$/ daemon-mode runs PASS/'
! grep FAIL "$out/daemon_check.txt"
