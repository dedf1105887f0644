#!/usr/bin/env python3
"""Writes the tiny committed test traces of bench/trace_replay (deterministic):

  tests/data/traces/tiny_mooncake.jsonl  Mooncake format, 300 requests of
      multi-turn conversations after 4 shared system prompts: each turn
      resends the conversation so far (earlier turns and their outputs) plus a
      new user message, as the real traces do
  tests/data/traces/tiny_simple.txt      the simple TAB format: two
      namespaces, "blocks" and "tokens" lines

Usage: python3 bench/trace_replay/gen_tiny_traces.py tests/data/traces
"""
import json
import random
import sys

P = 512


def mooncake(path):
    rng = random.Random(2026)
    next_id = 0
    systems = []
    for s in range(4):
        n = rng.randint(1, 4)
        systems.append(list(range(next_id, next_id + n)))
        next_id += n
    convs = []
    with open(path, "w") as f:
        for i in range(300):
            if convs and rng.random() < 0.6:
                c = rng.choice(convs)
            else:
                c = {"blocks": list(rng.choice(systems))}
                convs.append(c)
                if len(convs) > 12:
                    convs.pop(0)
            n_new = rng.randint(1, 5)
            c["blocks"] = c["blocks"] + list(range(next_id, next_id + n_new))
            next_id += n_new
            if len(c["blocks"]) > 40:  # conversation ends
                convs.remove(c)
            nb = len(c["blocks"])
            input_length = (nb - 1) * P + rng.randint(1, P)
            rec = {"timestamp": i * 100, "input_length": input_length,
                   "output_length": rng.randint(1, 800), "hash_ids": c["blocks"]}
            f.write(json.dumps(rec) + "\n")


def simple(path):
    rng = random.Random(7)
    with open(path, "w") as f:
        f.write("# tiny_simple: namespace<TAB>n_tokens<TAB>blocks|tokens<TAB>ids\n")
        docs = [[rng.randint(0, 9) for _ in range(P * 2)] for _ in range(3)]
        for i in range(80):
            ns = "tenant-a" if rng.random() < 0.6 else "tenant-b"
            if i % 7 == 3:
                d = rng.choice(docs)
                n = rng.randint(P, 2 * P)
                f.write("%s\t%d\ttokens\t%s\n" % (ns, n, ",".join(map(str, d[:n]))))
            else:
                nb = rng.randint(1, 6)
                base = rng.choice([1000, 2000, 3000])
                ids = [base + j for j in range(nb - 1)] + [rng.randint(10**6, 10**7)]
                n = (nb - 1) * P + rng.randint(1, P)
                f.write("%s\t%d\tblocks\t%s\n" % (ns, n, ",".join(map(str, ids))))


if __name__ == "__main__":
    d = sys.argv[1] if len(sys.argv) > 1 else "tests/data/traces"
    mooncake(d + "/tiny_mooncake.jsonl")
    simple(d + "/tiny_simple.txt")
