#!/usr/bin/python3
"""bench/cluster_sim/plot.py - the plot of cluster_sim's results: hit rate
and load balance against the number of nodes, per trace and router.

    /usr/bin/python3 bench/cluster_sim/plot.py [results/cluster_sim.json] [out.png]

Needs Debian's python3-matplotlib (not a build or test dependency: only
this plot uses it)."""
import json
import os
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "results", "cluster_sim.json")
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "results", "cluster_sim.png")
with open(src) as f:
    rows = json.load(f)["rows"]

traces = sorted({r["trace"] for r in rows})
names = {"rr": "round-robin", "prefix": "longest prefix", "aware": "load-aware"}
fig, axes = plt.subplots(2, len(traces), figsize=(6 * len(traces), 7), sharex=True)
for j, tr in enumerate(traces):
    for pol, label in names.items():
        pts = sorted((r["nodes"], r["hit_rate"], r["max_over_mean"]) for r in rows
                     if r["trace"] == tr and (r["policy"] == pol or r["nodes"] == 1))
        xs = [p[0] for p in pts]
        axes[0][j].plot(xs, [100 * p[1] for p in pts], marker="o", label=label)
        axes[1][j].plot(xs, [p[2] for p in pts], marker="o", label=label)
    axes[0][j].set_title(tr)
    axes[0][j].set_ylabel("page hit rate (%)")
    axes[1][j].set_ylabel("max / mean requests per node")
    axes[1][j].set_xlabel("nodes")
    axes[1][j].set_yscale("log", base=2)
    axes[1][j].set_ylim(0.9, 10)  # the same scale for both traces: 1 = balanced
    axes[1][j].set_xticks([1, 2, 4, 8])
    axes[0][j].grid(alpha=0.3)
    axes[1][j].grid(alpha=0.3)
axes[0][0].legend()
fig.suptitle("cluster_sim: routing fed only by KV events")
fig.tight_layout()
fig.savefig(out, dpi=100)
print(out)
