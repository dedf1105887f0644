#!/usr/bin/python3
"""tests/fuzz/gen_corpus.py - the fuzzers' seed corpus (tests/fuzz/corpus/).

    /usr/bin/python3 tests/fuzz/gen_corpus.py [BUILD_DIR]

Writes into tests/fuzz/corpus/fuzz_decode/ and .../fuzz_handler/ (both get
the same seeds; the directories are emptied first):

  valid-*  valid requests of every op and of most optional fields, packed
           here with Debian's python3-msgpack (an encoder other than the
           project's), naming the prompts the fuzz_handler cache holds
           (the harness's hd_prompt: seed * 100003 + i + 1) in namespaces
           "model-a" and "ns-b", page size 4;
  bad-*    every payload of tests/test_rpc_badinput.c's tables up to 64 KiB,
           written by that test's dump_corpus case (BUILD_DIR/tests/
           test_rpc_badinput, any flavour; without BUILD_DIR, build/asan then
           build/release are tried, and without either only valid-* is made).

Deterministic: the same tree gives the same files.  Commit them.
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TARGETS = ("fuzz_decode", "fuzz_handler")
PAGE = 4


def prompt(n, seed):
    return [seed * 100003 + i + 1 for i in range(n)]


def ids(v):
    return struct.pack("<%dI" % len(v), *v)


def valid():
    a8, b8, a12, c8 = prompt(8, 1), prompt(8, 2), prompt(12, 1), prompt(8, 3)
    q8 = prompt(8, 4)
    reqs = {
        "hello": {"op": "hello", "id": 1},
        "hello-v1": {"op": "hello", "id": 2, "version": 1},
        "lookup": {"op": "lookup", "id": 3, "ns": "model-a", "tokens": ids(a8)},
        "lookup-array": {"op": "lookup", "id": 4, "ns": "ns-b", "tokens": b8},
        "lookup-bin-ns": {"op": "lookup", "id": 5, "ns": b"ns-b", "tokens": ids(b8)},
        "lookup-pin": {"op": "lookup", "id": 6, "ns": "model-a", "tokens": ids(a8),
                       "pin": True},
        "lookup-alloc": {"op": "lookup", "id": 7, "ns": "model-a", "tokens": ids(a12),
                         "alloc": True},
        "lookup-pin-alloc": {"op": "lookup", "id": 8, "ns": "model-a",
                             "tokens": ids(a12), "pin": True, "alloc": True},
        "lookup-lease": {"op": "lookup", "id": 9, "ns": "model-a", "tokens": ids(a8),
                         "lease": 77},
        "lookup-flags": {"op": "lookup", "id": 10, "ns": "ns-b", "tokens": ids(b8),
                         "promote": True, "no_cache": True, "no_count": True},
        "lookup-quota": {"op": "lookup", "id": 11, "ns": "q1", "tokens": ids(q8),
                         "alloc": True},
        "alloc": {"op": "alloc", "id": 12, "n": 2},
        "alloc-lease": {"op": "alloc", "id": 13, "n": 1, "lease": 77},
        "insert": {"op": "insert", "id": 14, "ns": "model-a", "tokens": ids(c8),
                   "blocks": ids([10, 11]), "lease": 77},
        "insert-release": {"op": "insert", "id": 15, "ns": "ns-b", "tokens": ids(c8),
                           "blocks": ids([10, 11]), "lease": 77, "release": True},
        "insert-pin": {"op": "insert", "id": 16, "ns": "ns-b", "tokens": ids(c8),
                       "blocks": ids([10, 11]), "lease": 77, "pin": True},
        "insert-arrays": {"op": "insert", "id": 17, "ns": "q1", "tokens": c8,
                          "blocks": [10, 11], "lease": 77, "no_cache": True},
        "lookup-instance": {"op": "lookup", "id": 27, "ns": "model-a",
                            "tokens": ids(a8), "pin": True, "instance": 0x5eed},
        "alloc-instance": {"op": "alloc", "id": 28, "n": 1, "instance": 1},
        "insert-instance": {"op": "insert", "id": 29, "ns": "ns-b", "tokens": ids(c8),
                            "blocks": ids([10, 11]), "lease": 77, "instance": 2**64 - 1},
        "release": {"op": "release", "id": 18, "lease": 77},
        "stats": {"op": "stats", "id": 19},
        "stats-check": {"op": "stats", "id": 20, "check": True},
        "ping": {"op": "ping", "id": 21},
        "ping-no-id": {"op": "ping"},
        "flush": {"op": "flush", "id": 22},
        "flush-ns": {"op": "flush", "id": 23, "ns": "ns-b"},
        "config": {"op": "config", "id": 24},
        "config-get": {"op": "config", "id": 25, "get": ["lease_ttl_ms"]},
        "config-set": {"op": "config", "id": 26, "set": {"lease_ttl_ms": 5000}},
    }
    return {"valid-" + k: msgpack.packb(v, use_bin_type=True) for k, v in reqs.items()}


def badinput(build):
    cands = [build] if build else [os.path.join(ROOT, "build", f) for f in ("asan", "release")]
    for b in cands:
        exe = os.path.join(b, "tests", "test_rpc_badinput")
        if os.access(exe, os.X_OK):
            break
    else:
        print("gen_corpus: no test_rpc_badinput built: only valid-* seeds", file=sys.stderr)
        return {}
    out = {}
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, PC_FUZZ_CORPUS_DIR=d)
        subprocess.run([exe, "--filter=badinput/dump_corpus", "--jobs=1"], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), "rb") as f:
                out[name] = f.read()
    if not out:
        sys.exit("gen_corpus: test_rpc_badinput wrote no payloads")
    return out


def main():
    seeds = valid()
    seeds.update(badinput(sys.argv[1] if len(sys.argv) > 1 else None))
    for t in TARGETS:
        d = os.path.join(HERE, "corpus", t)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for name, data in sorted(seeds.items()):
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
    print("gen_corpus: %d seeds (%d bytes) in each of %s" % (
        len(seeds), sum(map(len, seeds.values())), ", ".join(TARGETS)))


if __name__ == "__main__":
    main()
