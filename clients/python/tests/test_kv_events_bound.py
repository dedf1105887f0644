"""The KV-event replay ring's byte bound (kv_events_buffer_bytes) and the
publisher's counters in STATS (events.*), against a real daemon.

A daemon publishing one batch per round (kv_events_interval_ms=0), with a
replay ring of many batches but few bytes (the batches of 100 inserts are
about 3 times the bound): after them, the
oldest batches are dropped (events.replay_dropped_batches), a replay from
seq 0 starts later, runs without a gap to the newest batch, and what it
sends fits the bound (plus the newest batch, which is always kept)."""
from __future__ import annotations

import time
import unittest

import msgpack
import numpy as np
import zmq

from common import daemon_binary
from prefixcache.daemon import Daemon

import prefixcache as pc

BOUND = 8192


class ReplayBound(unittest.TestCase):
    def test_oldest_batches_go_first_and_the_replay_has_no_gap(self) -> None:
        d = Daemon(daemon_binary(), start=False, kv_events_interval_ms=0,
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
        # the events thread publishes after the replies: wait for it
        for _ in range(250):
            st = c.stats()
            if st["events.events"] >= n:
                break
            time.sleep(0.02)
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


class ReplayArena(unittest.TestCase):
    """The kept batches live in an arena of kv_events_buffer_bytes + 8 MiB,
    reused in a circle; a batch libzmq still holds (a subscriber that does
    not read) cannot be overwritten, and newer batches then go to the heap.
    ~38 MB of batches through a 12 MiB arena, in three phases: one reading
    subscriber (the arena wraps), a second one that never reads (libzmq
    holds its queue: the heap), that one gone (the arena again).  After
    each phase a replay from seq 0 must return exactly the newest kept
    batches, byte for byte what the reading subscriber got live."""

    PAGES = 128

    def test_the_arena_wraps_and_replays_stay_byte_exact(self) -> None:
        d = Daemon(daemon_binary(), start=False, kv_events_interval_ms=0,
                   kv_events_buffer=100000, kv_events_buffer_bytes="4MiB",
                   pool_backend="none", page_tokens=16,
                   pool_blocks=4000 * self.PAGES + 1024)  # no eviction
        d.knobs["kv_events_endpoint"] = f"ipc://{d.dir}/ev.sock"
        d.knobs["kv_events_replay_endpoint"] = f"ipc://{d.dir}/rp.sock"
        self.ev_ep, self.rp_ep = d.knobs["kv_events_endpoint"], d.knobs["kv_events_replay_endpoint"]
        ctx = zmq.Context()
        try:
            d.start()
            self._run(d, ctx)
        finally:
            ctx.destroy(0)
            d.stop()

    def _drain(self) -> None:
        while self.a.poll(0):
            _, seqb, payload = self.a.recv_multipart()
            seq = int.from_bytes(seqb, "big")
            self.live[seq] = payload
            self.seen = max(self.seen, seq + 1)

    def _insert(self, c, n: int) -> None:
        for _ in range(n):
            toks = self.rng.integers(0, 120000, 16 * self.PAGES, dtype=np.int64)
            with c.lookup("w", toks, pin=True, alloc=True) as r:
                c.insert("w", toks, r.alloc_blocks, lease=r.lease, release=True)
            self.inserted += 1  # one BlockStored each: all its pages are new
            self._drain()

    def _settle(self, c) -> dict:
        """STATS once the events thread has published every insert's event
        (publishing follows the replies) and the reading subscriber has
        every batch."""
        for _ in range(500):
            self._drain()
            st = c.stats()
            if st["events.events"] == self.inserted and \
                    st["events.batches"] == self.seen:
                return st
            self.a.poll(20)
        self.fail(f"{st['events.events']} events of {self.inserted} inserts "
                  f"published in {st['events.batches']} batches; the reading "
                  f"subscriber got up to {self.seen}")

    def _check_replay(self, c, what: str) -> None:
        st = self._settle(c)
        missing = [q for q in range(self.first, st["events.batches"])
                   if q not in self.live]
        self.assertFalse(missing, f"{what}: the reading subscriber missed batches")
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.rp_ep)
        s.send_multipart([b"", (0).to_bytes(8, "big")])
        seqs, size = [], 0
        while True:
            self.assertTrue(s.poll(10000), f"{what}: replay did not answer")
            fr = s.recv_multipart()
            seq = int.from_bytes(fr[1], "big", signed=True)
            if seq == -1:
                break
            self.assertEqual(fr[2], self.live[seq],
                             f"{what}: replayed batch {seq} differs from the live one")
            seqs.append(seq)
            size += len(fr[2])
        s.close(0)
        self.assertTrue(seqs, f"{what}: nothing kept")
        self.assertEqual(seqs, list(range(seqs[0], seqs[-1] + 1)), f"{what}: a gap")
        self.assertEqual(seqs[-1], st["events.batches"] - 1, f"{what}: not the newest")
        # (4 MiB: the replay goes out in several 1 MiB steps)
        self.assertLessEqual(size, 4 << 20, f"{what}: past the bound")
        self.assertGreater(size, (4 << 20) // 2, f"{what}: far under the bound")

    def _run(self, d, ctx) -> None:
        self.ctx = ctx
        self.live = {}
        self.rng = np.random.default_rng(7)  # fresh prompts: 128 new pages each
        self.seen = 0  # one past the newest seq received
        self.inserted = 0
        self.a = ctx.socket(zmq.SUB)
        self.a.setsockopt(zmq.SUBSCRIBE, b"")
        self.a.setsockopt(zmq.RCVHWM, 0)
        self.a.connect(self.ev_ep)
        c = pc.connect(d.endpoint, timeout_ms=10000)
        # the subscriber's connection is up once it gets a batch
        for _ in range(100):
            self._insert(c, 1)
            if self.live:
                break
            self.a.poll(20)
            self._drain()
        self.assertTrue(self.live, "the subscriber never connected")
        st0 = self._settle(c)
        self.first = st0["events.batches"]  # from here on, all
        self.live = {}
        self._insert(c, 1000)  # ~11 MB: the 12 MiB arena wraps
        self._check_replay(c, "arena")
        b = ctx.socket(zmq.SUB)  # never reads: libzmq holds its queue
        b.setsockopt(zmq.RCVHWM, 1)  # and takes next to nothing itself
        b.setsockopt(zmq.RCVBUF, 4096)
        b.setsockopt(zmq.SUBSCRIBE, b"")
        b.connect(self.ev_ep)
        time.sleep(0.2)
        self._insert(c, 1500)  # ~17 MB: the arena comes round to what it holds
        self._check_replay(c, "held")
        b.close(0)  # libzmq lets its queue go
        time.sleep(0.2)
        self._insert(c, 1000)
        self._check_replay(c, "after")
        # a batch per round of the daemon's loop: at most one per insert
        st = self._settle(c)
        self.assertEqual(self.inserted, st["events.events"])
        self.assertGreater(st["events.batches"] - self.first, 2500)
        # events.bytes counts exactly the payloads the subscriber got
        got = sum(len(self.live[q]) for q in range(self.first, st["events.batches"]))
        self.assertEqual(st["events.bytes"] - st0["events.bytes"], got)
        c.close()


if __name__ == "__main__":
    unittest.main()
