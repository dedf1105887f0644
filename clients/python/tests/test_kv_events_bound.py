"""The KV-event replay ring's byte bound (kv_events_buffer_bytes) and the
publisher's counters in STATS (events.*), against a real daemon.

A daemon publishing one batch per round (kv_events_interval_ms=0), with a
replay ring of many batches but few bytes (the batches of 100 inserts are
about 3 times the bound): after them, the
oldest batches are dropped (events.replay_dropped_batches), a replay from
seq 0 starts later, runs without a gap to the newest batch, and what it
sends fits the bound (plus the newest batch, which is always kept)."""
from __future__ import annotations

import unittest

import msgpack
import numpy as np
import zmq

from common import start_daemon
from prefixcache.daemon import Daemon

import prefixcache as pc

BOUND = 8192


class ReplayBound(unittest.TestCase):
    def test_oldest_batches_go_first_and_the_replay_has_no_gap(self) -> None:
        d0 = start_daemon()  # the binary (or SkipTest), then one of our own
        binary = d0.binary
        d0.stop()
        d = Daemon(binary, start=False, kv_events_interval_ms=0,
                   kv_events_buffer=100000, kv_events_buffer_bytes=BOUND,
                   pool_blocks=1024)  # no eviction: STORED only
        d.knobs["kv_events_endpoint"] = f"ipc://{d.dir}/ev.sock"
        d.knobs["kv_events_replay_endpoint"] = f"ipc://{d.dir}/rp.sock"
        self.replay_ep = f"ipc://{d.dir}/rp.sock"
        try:
            d.start()
            self._run(d)
        finally:
            d.stop()

    def _run(self, d) -> None:
        c = pc.connect(d.endpoint, timeout_ms=3000)
        n = 100  # ~250 bytes of batch each: ~3x the bound in all
        for i in range(n):  # mostly one insert a round: a batch each
            toks = np.arange(i * 1000, i * 1000 + 16, dtype=np.int64)
            with c.lookup("b", toks, pin=True, alloc=True) as r:
                c.insert("b", toks, r.alloc_blocks, lease=r.lease, release=True)
        st = c.stats()
        c.close()
        # one BlockStored per insert; a round can take two inserts (a slow
        # daemon: the client's next request arrives while it drains)
        self.assertEqual(st["events.events"], n)
        self.assertLessEqual(st["events.batches"], n)
        self.assertGreater(st["events.batches"], 1)
        dropped = st["events.replay_dropped_batches"]
        self.assertGreater(dropped, 0, "the bound dropped nothing")
        ctx = zmq.Context()
        try:
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(self.replay_ep)
            s.send_multipart([b"", (0).to_bytes(8, "big")])
            seqs, sizes = [], []
            while True:
                self.assertTrue(s.poll(5000), "replay did not answer")
                fr = s.recv_multipart()
                seq = int.from_bytes(fr[1], "big", signed=True)
                if seq == -1:
                    break
                batch = msgpack.unpackb(fr[2], raw=False)
                self.assertEqual(batch[1][0]["type"], "BlockStored")
                seqs.append(seq)
                sizes.append(len(fr[2]))
            s.close(0)
        finally:
            ctx.term()
        self.assertTrue(seqs, "the newest batch is always kept")
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))), "a gap")
        self.assertEqual(seqs[-1], st["events.batches"] - 1, "not up to the newest")
        self.assertEqual(seqs[0], dropped, "dropped = the batches before the first kept")
        self.assertLessEqual(sum(sizes), BOUND)


if __name__ == "__main__":
    unittest.main()
