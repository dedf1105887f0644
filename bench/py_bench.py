#!/usr/bin/python3
"""bench/py_bench.py - the Python client's lookup round trip against the C
client's (libprefixcache), for prompts of 4,096 tokens, in one run.

    /usr/bin/python3 bench/py_bench.py [--quick] [--rounds N] [--lookups N]
        [--build build/release] [--json PATH]

One daemon per round, started here (backend none, a Llama-3-8B shape,
page_tokens 16, as rpc_bench's), warmed with prompts of 4,096 tokens (a
shared 2,048-token system prompt + a 2,048-token tail); then both clients
look up the same warm prompts in the same order, one at a time, each reply
checked, against that one daemon: the C client through bench/lookup_rt
(libprefixcache), the Python client with the prompts as numpy int64 arrays
(what a tokenizer hands over; the client range-checks and converts them to
uint32).  The same lookups with numpy uint32 input (nothing to convert)
alternate with them and are reported too, and so does the floor: the same
requests, encoded beforehand, on a bare pyzmq socket (pyzmq and the daemon,
no client code).  Rounds alternate which client goes first so that drift on
a shared machine hits both; each side's p50 and p99 are the medians over
rounds.

Prints a table and JSON (and writes it to --json PATH).  Target: Python p50
at most 1.5x C's.  Not a test: nothing here fails on the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

import numpy as np  # noqa: E402

import prefixcache as pc  # noqa: E402
from prefixcache.daemon import Daemon  # noqa: E402

# rpc_bench's workload and daemon (bench/rpc_bench.c: NS, PT, start_servers)
NS = "llama-3.1-8b-instruct|lora:none|tenant:rpc-bench"
PT, PROMPT, SYSTEM, VOCAB = 16, 4096, 2048, 128000
TARGET = 1.5


def pin_process(pid: int, cpu: int) -> None:
    """Every thread of pid (ZeroMQ's I/O threads included) onto cpu."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})


def c_lookups(build: str, endpoint: str, warm32: list, which: np.ndarray,
              pin_cpu) -> dict:
    """The C client (bench/lookup_rt) against the same daemon: the same
    prompts, the same order, one lookup at a time, each checked."""
    with tempfile.TemporaryDirectory() as d:
        pf, jf = os.path.join(d, "prompts.bin"), os.path.join(d, "which.bin")
        with open(pf, "wb") as f:
            f.write(np.array([len(warm32), PROMPT], dtype="<u4").tobytes())
            for p in warm32:
                f.write(p.astype("<u4").tobytes())
        with open(jf, "wb") as f:
            f.write(np.array([len(which)], dtype="<u4").tobytes())
            f.write(which.astype("<u4").tobytes())
        pre = (lambda: os.sched_setaffinity(0, {pin_cpu})) if pin_cpu is not None else None
        r = subprocess.run([os.path.join(build, "bench", "lookup_rt"), endpoint, NS,
                            pf, jf], capture_output=True, text=True, timeout=600,
                           preexec_fn=pre)
        if r.returncode != 0:
            raise SystemExit(f"lookup_rt failed ({r.returncode}):\n{r.stderr[-3000:]}")
        return json.loads(r.stdout)


def one_round(build: str, lookups: int, prompts: int, seed: int, pin: str) -> dict:
    allowed = os.sched_getaffinity(0)
    try:
        return _one_round(build, lookups, prompts, np.random.default_rng(seed), pin,
                          c_first=seed % 2 == 1)
    finally:
        os.sched_setaffinity(0, allowed)


def _one_round(build: str, lookups: int, prompts: int, rng: np.random.Generator,
               pin: str, c_first: bool) -> dict:
    system = rng.integers(0, VOCAB, SYSTEM, dtype=np.int64)
    warm = [np.concatenate([system, rng.integers(0, VOCAB, PROMPT - SYSTEM, dtype=np.int64)])
            for _ in range(prompts)]
    pages = PROMPT // PT
    blocks = prompts * pages  # the pool holds the run: nothing is evicted
    # rpc_bench's daemon: backend none, a Llama-3-8B shape, 16-token pages
    with Daemon(os.path.join(build, "daemon", "prefixcached"), pool_backend="none",
                pool_blocks=blocks, page_tokens=PT, layers=32, kv_heads=8,
                head_dim=128, dtype="fp16", log_level="warn") as d:
        with pc.connect(d.endpoint, timeout_ms=10000) as c:
            client_cpu = None
            if pin != "none":  # as rpc_bench places its client and daemon
                cpus = sorted(os.sched_getaffinity(0))
                client_cpu = cpus[0]
                pin_process(os.getpid(), cpus[0])
                pin_process(d.proc.pid, cpus[0] if pin == "same" else cpus[1])
            canon = []
            for p in warm:
                with c.lookup(NS, p, pin=True, alloc=True) as r:
                    if r.alloc_status:
                        raise SystemExit(f"warm-up: {r.alloc_error}")
                    canon.append(c.insert(NS, p, np.concatenate([r.blocks, r.alloc_blocks]),
                                          lease=r.lease, release=True).canon)
            which = rng.integers(0, prompts, lookups)
            warm32 = [p.astype(np.uint32) for p in warm]
            if c_first:
                cres = c_lookups(build, d.endpoint, warm32, which, client_cpu)
            for i in which[:200]:  # warm the code paths and the connection
                c.lookup(NS, warm[i])
            # The floor: the same requests, encoded beforehand, over a bare
            # pyzmq DEALER (what is left is pyzmq and the daemon)
            pre = [pc.client.msgpack.packb({"op": "lookup", "id": 1, "ns": NS,
                                            "tokens": pc.to_wire(p)}) for p in warm32]
            raw = c._ctx.socket(pc.client.zmq.DEALER)
            raw.setsockopt(pc.client.zmq.LINGER, 0)
            raw.connect(d.endpoint)
            raw.send_multipart([b"", pre[0]])
            raw.recv_multipart()
            lat = np.empty(lookups, dtype=np.float64)
            lat32 = np.empty(lookups, dtype=np.float64)
            latraw = np.empty(lookups, dtype=np.float64)
            for k, i in enumerate(which):
                t0 = time.perf_counter_ns()
                raw.send(b"", pc.client.zmq.SNDMORE)
                raw.send(pre[i])
                raw.recv()
                raw.recv()
                latraw[k] = (time.perf_counter_ns() - t0) / 1000.0
                # int64 (the primary figure) and uint32 input alternate, so
                # that both see the same machine
                for toks, out in ((warm[i], lat), (warm32[i], lat32)):
                    t0 = time.perf_counter_ns()
                    r = c.lookup(NS, toks)
                    out[k] = (time.perf_counter_ns() - t0) / 1000.0
                    if r.tokens != PROMPT or not np.array_equal(r.blocks, canon[i]):
                        raise SystemExit(f"lookup {k}: {r.tokens} tokens, wrong blocks")
            raw.close(0)
            if not c_first:
                cres = c_lookups(build, d.endpoint, warm32, which, client_cpu)
            req = len(pc.client.msgpack.packb(
                {"op": "lookup", "id": 1, "ns": NS, "tokens": pc.to_wire(warm[0])}))
    py = {"p50_us": float(np.percentile(lat, 50)), "p99_us": float(np.percentile(lat, 99)),
          "u32_p50_us": float(np.percentile(lat32, 50)),
          "u32_p99_us": float(np.percentile(lat32, 99)),
          "raw_p50_us": float(np.percentile(latraw, 50)),
          "raw_p99_us": float(np.percentile(latraw, 99)), "request_bytes": req}
    return {"c": {"p50_us": cres["p50_us"], "p99_us": cres["p99_us"],
                  "request_bytes": req}, "python": py}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lookups", type=int, default=5000, help="per side and round")
    ap.add_argument("--prompts", type=int, default=256, help="warm prompts")
    ap.add_argument("--quick", action="store_true", help="1 round of 1000 lookups")
    ap.add_argument("--json", help="also write the JSON report here")
    ap.add_argument("--pin", choices=("none", "same", "split"), default="none",
                    help="placement, as rpc_bench's --pin: none (default); same: "
                    "client and daemon on the first CPU; split: client on the "
                    "first, daemon on the second")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.lookups, a.prompts = 1, 1000, 64
    t0 = time.time()
    rounds = []
    for k in range(a.rounds):
        seed = k + 1
        res = one_round(a.build, a.lookups, a.prompts, seed, a.pin)
        rounds.append(res)
        c50, py = res["c"]["p50_us"], res["python"]
        print(f"round {k + 1}/{a.rounds}: C p50 {c50:.1f} us, Python p50 "
              f"{py['p50_us']:.1f} us ({py['p50_us'] / c50:.2f}x; uint32 "
              f"{py['u32_p50_us'] / c50:.2f}x, floor {py['raw_p50_us'] / c50:.2f}x)",
              file=sys.stderr)

    def med(side: str, key: str) -> float:
        return statistics.median(r[side][key] for r in rounds)

    c50, c99, p50, p99 = med("c", "p50_us"), med("c", "p99_us"), \
        med("python", "p50_us"), med("python", "p99_us")
    u50, u99 = med("python", "u32_p50_us"), med("python", "u32_p99_us")
    r50, r99 = med("python", "raw_p50_us"), med("python", "raw_p99_us")
    ratio50, ratio99 = p50 / c50, p99 / c99
    # Each round's own ratio pairs two sides measured seconds apart; on a
    # busy machine its median moves less than the ratio of the medians.
    per_round = [statistics.median(r["python"][k] / r["c"]["p50_us"] for r in rounds)
                 for k in ("p50_us", "u32_p50_us", "raw_p50_us")]
    report = {
        "bench": "py_bench", "schema": 1,
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__, "pyzmq": pc.client.zmq.__version__,
                    "libzmq": pc.client.zmq.zmq_version()},
        "config": {"prompt_tokens": PROMPT, "system_tokens": SYSTEM, "page_tokens": PT,
                   "backend": "none", "prompts": a.prompts, "lookups": a.lookups,
                   "rounds": a.rounds, "python_input": "numpy int64",
                   "placement": a.pin,
                   "request_bytes": {"c": rounds[0]["c"]["request_bytes"],
                                     "python": rounds[0]["python"]["request_bytes"]}},
        "rounds": rounds,
        "metrics": [
            {"name": "lookup_p50_us", "c": c50, "python": p50, "ratio": ratio50,
             "target": f"ratio<={TARGET}", "pass": ratio50 <= TARGET},
            {"name": "lookup_p99_us", "c": c99, "python": p99, "ratio": ratio99},
            {"name": "lookup_uint32_input_p50_us", "c": c50, "python": u50,
             "ratio": u50 / c50},
            {"name": "lookup_uint32_input_p99_us", "c": c99, "python": u99,
             "ratio": u99 / c99},
            {"name": "lookup_bare_pyzmq_p50_us", "c": c50, "python": r50, "ratio": r50 / c50},
            {"name": "lookup_bare_pyzmq_p99_us", "c": c99, "python": r99, "ratio": r99 / c99},
            {"name": "lookup_p50_median_round_ratio", "int64": per_round[0],
             "uint32": per_round[1], "bare_pyzmq": per_round[2]},
        ],
        "seconds": round(time.time() - t0, 1),
    }
    print(f"lookup round trip, 4096 tokens, 1 client ({a.rounds} round(s) x "
          f"{a.lookups} lookups per side; medians over rounds; placement {a.pin})")
    print(f"{'':14}{'C (us)':>10}{'Python (us)':>14}{'Python/C':>10}")
    print(f"{'p50':14}{c50:10.1f}{p50:14.1f}{ratio50:10.2f}   target <= {TARGET}: "
          f"{'PASS' if ratio50 <= TARGET else 'FAIL'}")
    print(f"{'p99':14}{c99:10.1f}{p99:14.1f}{ratio99:10.2f}")
    print(f"{'p50, uint32':14}{c50:10.1f}{u50:14.1f}{u50 / c50:10.2f}   (numpy uint32 input: no conversion)")
    print(f"{'p99, uint32':14}{c99:10.1f}{u99:14.1f}{u99 / c99:10.2f}")
    print(f"{'p50, pyzmq':14}{c50:10.1f}{r50:14.1f}{r50 / c50:10.2f}   (the floor: pre-encoded "
          "requests on a bare pyzmq socket, no client)")
    print(f"{'p99, pyzmq':14}{c99:10.1f}{r99:14.1f}{r99 / c99:10.2f}")
    print(f"median of the rounds' p50 ratios: int64 {per_round[0]:.2f}, uint32 "
          f"{per_round[1]:.2f}, floor {per_round[2]:.2f}")
    text = json.dumps(report, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
