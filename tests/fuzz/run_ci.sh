#!/bin/sh
# run_ci.sh FUZZER WORK_DIR SECONDS SEED_DIR...: one short libFuzzer run for
# ctest.  Every seed is run first (the corpus, and crashes/: the reproducers
# of bugs fixed, as regression tests), then mutations until SECONDS.  New
# inputs go to WORK_DIR/new (emptied first); the seed directories are only
# read.  A crash, leak, timeout or sanitizer report exits non-zero, and the
# input that caused it is left in WORK_DIR (crash-*, leak-*, timeout-*).
set -eu
fuzzer=$1 work=$2 secs=$3
shift 3
rm -rf "$work"
mkdir -p "$work/new"
cd "$work"
# -timeout: one input over 10 s is a hang; -rss_limit_mb: the 2 GiB default
# is more than a shared CI box should give one test; -max_len: the seeds'
# largest is about 4 KiB, and the decoder's limits, not sheer size, are what
# is under test.
exec "$fuzzer" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 \
    -max_len=8192 -print_final_stats=1 -artifact_prefix="$work/" \
    "$work/new" "$@"
