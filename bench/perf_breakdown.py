#!/usr/bin/env python3
"""Where does the time inside one function go?  (perf, call graphs)

    perf record --call-graph dwarf,16384 -F 4000 -o /tmp/rb.data \\
        BUILD/bench/radix_bench --phases w1 --reps 1 >/dev/null
    perf script -i /tmp/rb.data -F ip,sym,symoff > /tmp/rb.script
    python3 bench/perf_breakdown.py /tmp/rb.script pc_radix_match

Prints, for the samples whose stack contains FUNCTION: the share of each
leaf symbol (self time, inlined callees count as their caller), then the
hottest leaf offsets (pair them with `perf annotate -s SYMBOL`).  Works with
the software cpu-clock event, so it needs no hardware counters (this VM has
none).
"""
import collections
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path, func = sys.argv[1], sys.argv[2]
    total = 0
    leaf = collections.Counter()
    offs = collections.Counter()
    with open(path, errors="replace") as f:
        blocks = f.read().split("\n\n")
    for b in blocks:
        frames = []
        for line in b.strip().splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2:
                frames.append(parts[1].strip())
        names = [fr.split("+")[0] for fr in frames]
        if func not in names:
            continue
        total += 1
        leaf[names[0]] += 1
        offs[frames[0]] += 1
    if not total:
        sys.exit("no samples under %s" % func)
    print("%d samples with %s on the stack" % (total, func))
    print("\nself time by leaf symbol:")
    for k, v in leaf.most_common(15):
        print("  %5.1f%%  %s" % (100.0 * v / total, k))
    print("\nhottest leaf offsets:")
    for k, v in offs.most_common(10):
        print("  %5.1f%%  %s" % (100.0 * v / total, k))


if __name__ == "__main__":
    main()
