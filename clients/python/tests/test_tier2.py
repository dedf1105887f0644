"""The second tier and the per-request flags from Python (protocol 1.2): a
small pool over a file tier; pages written through the pool view, evicted
into tier 2, promoted back with their bytes."""
from __future__ import annotations

import tempfile
import unittest

from common import start_daemon

import numpy as np

import prefixcache as pc

D = None
PT = 4
TMP = None


def setUpModule() -> None:
    global D, TMP
    TMP = tempfile.TemporaryDirectory(prefix="pc-py-t2-")
    # 8 blocks of 1 KiB (2 layers x 2 heads x 16 dim x 4 tokens x fp16)
    D = start_daemon(pool_blocks=8, tier2_bytes=32 * 1024, tier2_path=TMP.name)


def tearDownModule() -> None:
    if D is not None:
        D.stop()
    if TMP is not None:
        TMP.cleanup()


def prompt(seed: int, n: int) -> np.ndarray:
    return (np.arange(n, dtype=np.int64) + 1 + seed * 100003)


def kv(seed: int, page: int, nbytes: int) -> np.ndarray:
    return ((np.arange(nbytes, dtype=np.uint32) * 7 + seed * 131 + page * 37 + 3)
            & 0xff).astype(np.uint8)


class Tier2(unittest.TestCase):
    def setUp(self) -> None:
        self.c = pc.connect(D.endpoint, timeout_ms=5000)
        self.h = self.c.hello()
        self.c.flush()

    def tearDown(self) -> None:
        self.c.close()

    def write(self, seed: int, pages: int) -> None:
        toks = prompt(seed, pages * PT)
        with self.c.lookup("t2", toks, pin=True, alloc=True) as r:
            self.assertEqual(r.alloc_status, 0, r.alloc_error)
            ids = np.concatenate([r.blocks, r.alloc_blocks])
            for p in range(len(r.blocks), pages):
                raw = np.frombuffer(self.c.pool.raw(int(ids[p])), dtype=np.uint8)
                raw[:] = kv(seed, p, raw.size)
            self.c.insert("t2", toks, ids, lease=r.lease, release=True)

    def test_hello_reports_the_tier(self) -> None:
        self.assertEqual(self.h.tier2, "file")
        self.assertEqual(self.h.tier2_pages, 32)

    def test_demote_promote_keeps_bytes(self) -> None:
        for s in range(1, 7):
            self.write(s, 2)        # 12 pages into 8 blocks: seeds 1, 2 out
        toks = prompt(1, 8)
        r = self.c.lookup("t2", toks)
        self.assertEqual(r.tokens, 0)
        self.assertEqual(r.tier2_tokens, 8)
        with self.c.lookup("t2", toks, promote=True) as r:
            self.assertEqual(r.tokens, 8)
            self.assertEqual(r.promoted_tokens, 8)
            self.assertIsNotNone(r.lease)   # promote pins
            for p, b in enumerate(r.blocks):
                raw = np.frombuffer(self.c.pool.raw(int(b)), dtype=np.uint8)
                self.assertTrue(np.array_equal(raw, kv(1, p, raw.size)),
                                f"page {p} differs after promotion")
        st = self.c.stats()
        self.assertEqual(st["tier2.promoted_pages"], 2)
        self.assertEqual(st["tier2.busy_pages"], 0)

    def test_no_count_and_no_cache(self) -> None:
        self.write(9, 2)
        toks = prompt(9, 8)
        before = self.c.stats()
        r = self.c.lookup("t2", toks, no_count=True)
        self.assertEqual(r.tokens, 8)
        after = self.c.stats()
        self.assertEqual(after["tree.lookups"], before["tree.lookups"])
        self.assertEqual(after["tree.hit_pages"], before["tree.hit_pages"])
        toks2 = prompt(10, 8)
        with self.c.lookup("t2", toks2, pin=True, alloc=True) as r:
            ir = self.c.insert("t2", toks2, r.alloc_blocks, lease=r.lease,
                               no_cache=True)
            self.assertEqual(ir.inserted_pages, 0)
        self.assertEqual(self.c.lookup("t2", toks2).tokens, 0, "no_cache cached")


if __name__ == "__main__":
    unittest.main()
