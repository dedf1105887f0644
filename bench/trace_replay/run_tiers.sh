#!/bin/sh
# Regenerates the "Two tiers" figures of RESULTS.md: both Mooncake traces,
# pools of 1-20% of the working set, tier 2 of 0, 1 and 4 x the pool, LRU,
# S3-FIFO and auto, next to one-tier pools of C and C + T.  About 3 minutes
# on one worker (tier-2 files in /var/tmp, at most ~140 MB each).
#   sh bench/trace_replay/run_tiers.sh [BUILD_DIR] [TRACE_DIR] [OUT_DIR]
# defaults as run_results.sh.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-/tmp/h7-rel}
traces=${2:-$here/../../../shared/traces}
out=${3:-$here/results}
bin=$build/bench/trace_replay/trace_replay
mkdir -p "$out"
"$bin" --jobs 1 --tier2-x 0,1,4 --fractions 1,2,5,10,20 \
    --policies lru,s3fifo,auto \
    --json "$out/tiers.json" --md "$out/tiers.md" \
    "$traces/conversation_trace.jsonl" "$traces/synthetic_trace.jsonl" \
    | tee "$out/tiers.txt"
