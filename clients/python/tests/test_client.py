"""The Python client against a real prefixcached (one per module, small
fp16 pool: 64 blocks of 4 tokens, 2 layers, 2 KV heads, head_dim 16)."""
from __future__ import annotations

import array
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

from common import HERE, start_daemon

import msgpack
import numpy as np

import prefixcache as pc
from prefixcache import protocol as P

D = None  # the module's daemon
PT = 4    # page_tokens


def setUpModule() -> None:
    global D
    D = start_daemon()


def tearDownModule() -> None:
    if D is not None:
        D.stop()  # fails the run when the daemon exits unclean


def prompt(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 128000, n, dtype=np.int64)


class Base(unittest.TestCase):
    def setUp(self) -> None:
        self.c = pc.connect(D.endpoint, timeout_ms=3000)
        self.ns = self.id()  # a namespace of its own per test

    def tearDown(self) -> None:
        self.c.close()

    def cache(self, toks) -> np.ndarray:
        """Insert toks' full pages; their canonical blocks."""
        with self.c.lookup(self.ns, toks, pin=True, alloc=True) as r:
            self.assertEqual(r.alloc_status, 0, r.alloc_error)
            ir = self.c.insert(self.ns, toks, np.concatenate([r.blocks, r.alloc_blocks]),
                               lease=r.lease, release=True)
            self.assertTrue(r.lease is None or r.lease.ended)
        return ir.canon

    def live_leases(self) -> int:
        return self.c.stats()["leases.live"]


class Ops(Base):
    def test_hello(self) -> None:
        h = self.c.hello()
        self.assertEqual((h.version, h.version_minor), (P.PROTO_MAJOR, P.PROTO_MINOR))
        self.assertEqual((h.page_tokens, h.layers, h.kv_heads, h.head_dim, h.dtype),
                         (PT, 2, 2, 16, "fp16"))
        self.assertEqual(h.block_bytes, 2 * 2 * 2 * 16 * PT * 2)
        self.assertEqual((h.capacity, h.backend, h.shm_name), (64, "host", D.shm_name))
        self.assertIsNone(h.device_ops)  # cuda-only rows are absent
        pool = self.c.pool
        self.assertEqual(pool.array.shape, (64, 2, 2, PT, 2, 16))
        self.assertEqual(pool.array.dtype, np.float16)
        self.assertEqual(pool.block(3).shape, (2, 2, PT, 2, 16))
        self.assertEqual(pool.k(3, 1).shape, (PT, 2, 16))
        with self.assertRaises(pc.OutOfRange):
            pool.block(64)

    def test_lookup_miss_hit_pin(self) -> None:
        toks = prompt(1, 10)  # 2 full pages and a tail
        r = self.c.lookup(self.ns, toks)
        self.assertEqual((r.tokens, len(r.blocks), r.lease), (0, 0, None))
        self.assertIsNone(r.alloc_status)
        canon = self.cache(toks)
        self.assertEqual(len(canon), 2)
        r = self.c.lookup(self.ns, toks)
        self.assertEqual(r.tokens, 8)
        self.assertEqual(r.blocks.dtype, np.uint32)
        np.testing.assert_array_equal(r.blocks, canon)
        before = self.live_leases()
        with self.c.lookup(self.ns, toks, pin=True) as r:
            self.assertIsInstance(r.lease, pc.Lease)
            self.assertEqual(self.live_leases(), before + 1)
            # pinned pages survive a flush
            self.c.flush(self.ns)
            self.assertEqual(self.c.lookup(self.ns, toks).tokens, 8)
        self.assertTrue(r.lease.ended)
        self.assertEqual(self.live_leases(), before)
        self.assertEqual(self.c.flush(self.ns), 2)
        self.assertEqual(self.c.lookup(self.ns, toks).tokens, 0)

    def test_lookup_alloc_partial_and_named_lease(self) -> None:
        toks = prompt(2, 16)
        self.cache(toks[:8])
        with self.c.lookup(self.ns, toks, pin=True, alloc=True) as r:
            self.assertEqual((r.tokens, len(r.blocks), len(r.alloc_blocks)), (8, 2, 2))
            self.assertFalse(set(r.blocks) & set(r.alloc_blocks))
            # naming the lease: the caller's own Lease object comes back
            r2 = self.c.lookup(self.ns, toks, pin=True, lease=r.lease)
            self.assertIs(r2.lease, r.lease)
            a = self.c.alloc(1, lease=r.lease)
            self.assertIs(a.lease, r.lease)
            r.lease.renew()
        self.assertTrue(r.lease.ended)

    def test_lookup_alloc_nospace(self) -> None:
        toks = prompt(3, 65 * PT)  # more pages than the pool has blocks
        before = self.live_leases()
        with self.c.lookup(self.ns, toks, pin=True, alloc=True) as r:
            self.assertEqual(r.alloc_status, P.PC_E_NOSPACE)
            self.assertEqual(len(r.alloc_blocks), 0)
            self.assertTrue(r.alloc_error)
        self.assertEqual(self.live_leases(), before)

    def test_alloc_release(self) -> None:
        before = self.live_leases()
        a = self.c.alloc(3)
        self.assertEqual(len(a.blocks), 3)
        self.assertEqual(a.blocks.dtype, np.uint32)
        self.assertEqual(self.live_leases(), before + 1)
        b = self.c.alloc(2, lease=a.lease)
        self.assertEqual(len(set(a.blocks) | set(b.blocks)), 5)
        self.c.release(a.lease)
        self.assertTrue(a.lease.ended)
        self.assertEqual(self.live_leases(), before)
        # an empty lease, released by its int id
        e = self.c.alloc(0)
        self.assertEqual(len(e.blocks), 0)
        self.c.release(int(e.lease))
        with self.assertRaises(pc.NoSpace) as cm:
            self.c.alloc(65)
        self.assertEqual((cm.exception.code, cm.exception.name), (-6, "PC_E_NOSPACE"))

    def test_insert_pin_and_duplicates(self) -> None:
        toks = prompt(4, 8)
        a = self.c.alloc(2)
        with a.lease:
            ir = self.c.insert(self.ns, toks, a.blocks, lease=a.lease, pin=True)
            self.assertEqual((ir.cached_tokens, ir.inserted_pages, ir.freed_blocks), (0, 2, 0))
            np.testing.assert_array_equal(ir.canon, a.blocks)
            self.assertFalse(a.lease.ended)
            self.c.flush(self.ns)  # pinned by the insert: stays
            self.assertEqual(self.c.lookup(self.ns, toks).tokens, 8)
        # a second writer of the same pages: its blocks are duplicates
        b = self.c.alloc(2)
        ir = self.c.insert(self.ns, toks, b.blocks, lease=b.lease, release=True)
        self.assertEqual((ir.cached_tokens, ir.inserted_pages, ir.freed_blocks), (8, 0, 2))
        np.testing.assert_array_equal(ir.canon, a.blocks)
        self.assertTrue(b.lease.ended)

    def test_stats_check(self) -> None:
        s = self.c.stats()
        self.assertIsNone(s.check)
        for k in ("tree.pages", "pool.blocks.capacity", "leases.live", "rpc.op.lookup"):
            self.assertIn(k, s)
        self.assertEqual(s["pool.blocks.capacity"], 64)
        self.assertEqual(self.c.stats(check=True).check, 0)

    def test_ping(self) -> None:
        rtt = self.c.ping()
        self.assertGreater(rtt, 0)
        self.assertLess(rtt, 3)

    def test_flush_all_and_ns(self) -> None:
        self.cache(prompt(5, 8))
        other = self.ns + "/other"
        r = self.c.alloc(1)
        self.c.insert(other.encode(), prompt(6, PT), r.blocks, lease=r.lease, release=True)
        self.assertEqual(self.c.flush(other), 1)
        self.assertGreaterEqual(self.c.flush(), 2)
        self.assertEqual(self.c.stats()["tree.pages"], 0)

    def test_config(self) -> None:
        everything = self.c.config_get()
        self.assertIn("lease_ttl_ms", everything)
        self.assertEqual(self.c.config_get("layers", "dtype"), {"layers": 2, "dtype": "fp16"})
        old = everything["lease_ttl_ms"]
        self.assertEqual(self.c.config_set(lease_ttl_ms="12s" if False else 12000),
                         {"lease_ttl_ms": 12000})
        self.assertEqual(self.c.config_set({"lease_ttl_ms": str(old)}), {"lease_ttl_ms": old})
        self.assertEqual(self.c.config_get("lease_ttl_ms"), {"lease_ttl_ms": old})
        with self.assertRaises(pc.NoEntry) as cm:
            self.c.config_get("no_such_knob")
        self.assertEqual(cm.exception.code, -7)
        with self.assertRaises(pc.PermissionDenied):
            self.c.config_set(layers=4)  # not reloadable
        with self.assertRaises(pc.InvalidArgument):
            self.c.config_set(lease_ttl_ms="soon")
        with self.assertRaises(pc.OutOfRange):
            self.c.config_set(lease_ttl_ms=0)

    def test_unknown_op_is_badop(self) -> None:
        with self.assertRaises(pc.BadOp) as cm:
            self.c.call("promote_not_yet")
        self.assertEqual((cm.exception.code, cm.exception.name), (-9, "PC_E_BADOP"))
        self.assertIn("promote_not_yet", cm.exception.message)


class Errors(Base):
    def assertCode(self, cls, code: int, fn, *a, **kw) -> pc.PrefixCacheError:
        with self.assertRaises(cls) as cm:
            fn(*a, **kw)
        e = cm.exception
        self.assertEqual(e.code, code)
        self.assertEqual(e.name, P.error_name(code))
        self.assertTrue(e.message)
        self.assertIn(e.name, str(e))
        return e

    def test_release_twice(self) -> None:
        a = self.c.alloc(0)
        self.c.release(a.lease)
        e = self.assertCode(pc.LeaseError, -11, self.c.release, int(a.lease))
        self.assertIn("unknown or expired", e.message)
        self.assertGreater(e.request_id, 0)

    def test_insert_errors(self) -> None:
        toks = prompt(7, 8)
        a = self.c.alloc(2)
        with a.lease:
            # one block for two pages
            self.assertCode(pc.InvalidArgument, -1, self.c.insert, self.ns, toks,
                            a.blocks[:1], lease=a.lease)
            self.assertCode(pc.InvalidArgument, -1, self.c.insert, self.ns, toks,
                            [a.blocks[0], a.blocks[0]], lease=a.lease)
            self.assertCode(pc.OutOfRange, -3, self.c.insert, self.ns, toks,
                            [a.blocks[0], 1000], lease=a.lease)
            b = self.c.alloc(1)
            self.assertCode(pc.PermissionDenied, -12, self.c.insert, self.ns, toks,
                            [a.blocks[0], b.blocks[0]], lease=a.lease)
            b.lease.release()
            self.assertCode(pc.InvalidArgument, -1, self.c.insert, self.ns, toks,
                            a.blocks, lease=a.lease, pin=True, release=True)
            # nothing changed: the lease is live, the insert still works
            self.c.insert(self.ns, toks, a.blocks, lease=a.lease, release=True)

    def test_limits(self) -> None:
        self.assertCode(pc.TooBig, -10, self.c.lookup, "x" * 257, [1, 2, 3])
        self.assertCode(pc.TooBig, -10, self.c.alloc, 1 << 30)
        self.assertCode(pc.LeaseError, -11, self.c.lookup, self.ns, [1], lease=12345)

    def test_version(self) -> None:
        self.assertCode(pc.VersionMismatch, -14, self.c.call, "hello", version=2)

    def test_badmsg_with_and_without_id(self) -> None:
        # a mistyped key: the daemon answers BADMSG with our id
        self.c._encode = lambda op, rid, f: msgpack.packb(
            {"op": "lookup", "id": rid, "ns": 5, "tokens": b""})
        e = self.assertCode(pc.BadMessage, -8, self.c.call, "lookup")
        self.assertIn("ns", e.message)
        # not msgpack at all: answered with id 0, which answers our call
        self.c._encode = lambda op, rid, f: b"\xc1"
        self.assertCode(pc.BadMessage, -8, self.c.call, "ping")
        del self.c._encode
        self.c.ping()

    def test_client_side_refusals(self) -> None:
        with self.assertRaises(TypeError):
            self.c.lookup(self.ns, [1.5, 2.0])
        with self.assertRaises(TypeError):
            self.c.lookup(self.ns, np.zeros((2, 2), dtype=np.int32))
        with self.assertRaises(TypeError):
            self.c.lookup(self.ns, [True, False])
        with self.assertRaises(TypeError):
            self.c.lookup(12, [1])  # a namespace is str or bytes
        with self.assertRaises(TypeError):
            self.c.call("lookup", ns="x", tokens=[1], pinn=True)  # a typo
        self.assertCode(pc.OutOfRange, -3, self.c.lookup, self.ns, [1, -1])
        self.assertCode(pc.OutOfRange, -3, self.c.lookup, self.ns, [1, 1 << 32])
        self.assertCode(pc.OutOfRange, -3, self.c.lookup, self.ns, [1 << 70])
        self.assertCode(pc.OutOfRange, -3, self.c.lookup, self.ns,
                        np.array([1 << 40], dtype=np.uint64))
        self.assertCode(pc.OutOfRange, -3, self.c.lookup, self.ns, b"\x01\x02\x03")
        # a request bigger than max_msg is refused here, not sent
        self.c.max_msg = 1000
        self.assertCode(pc.TooBig, -10, self.c.lookup, self.ns, np.arange(1000))


class Tokens(Base):
    def test_every_input_form(self) -> None:
        ref = [int(x) for x in prompt(8, 12)]
        canon = self.cache(np.array(ref, dtype=np.uint32))
        forms = {
            "list": ref, "tuple": tuple(ref),
            "array I": array.array("I", ref), "array q": array.array("q", ref),
            "array L": array.array("L", ref),
            "bytes": np.array(ref, dtype="<u4").tobytes(),
            "bytearray": bytearray(np.array(ref, dtype="<u4").tobytes()),
            "memoryview": memoryview(np.array(ref, dtype="<u4").tobytes()),
            "big-endian u4": np.array(ref, dtype=">u4"),
            "non-contiguous": np.repeat(np.array(ref, dtype=np.int64), 2)[::2],
        }
        for dt in (np.int32, np.int64, np.uint32, np.uint64):
            forms[np.dtype(dt).name] = np.array(ref, dtype=dt)
        for name, toks in forms.items():
            with self.subTest(form=name):
                r = self.c.lookup(self.ns, toks)
                self.assertEqual(r.tokens, 12)
                np.testing.assert_array_equal(r.blocks, canon)

    def test_small_dtypes_and_empty(self) -> None:
        small = np.arange(1, 9)
        canon = self.cache(small.astype(np.uint8))
        for dt in (np.int8, np.uint8, np.int16, np.uint16):
            with self.subTest(dtype=np.dtype(dt).name):
                np.testing.assert_array_equal(
                    self.c.lookup(self.ns, small.astype(dt)).blocks, canon)
        for empty in ([], (), b"", np.array([], dtype=np.int64), range(0)):
            self.assertEqual(self.c.lookup(self.ns, empty).tokens, 0)

    def test_torch_tensor_input(self) -> None:
        try:
            import torch
        except ImportError:
            self.skipTest("torch is not importable (Debian: python3-torch)")
        ref = prompt(9, 8)
        canon = self.cache(ref)
        r = self.c.lookup(self.ns, torch.from_numpy(ref))
        np.testing.assert_array_equal(r.blocks, canon)


class FastPaths(Base):
    """Client.lookup encodes and decodes with code of its own (the hot path):
    it must agree with the table-driven _encode and _result exactly."""

    def test_request_bytes_match_the_tables(self) -> None:
        c, rng = self.c, np.random.default_rng(5)
        inputs = (prompt(1, 10), rng.integers(0, 2**32, 70, dtype=np.uint64),
                  list(range(9)), b"", b"\1\2\3\4", np.array([], np.int32),
                  np.arange(20000, dtype=np.uint32),  # grows the buffer
                  np.arange(64, dtype=np.int16)[::2], np.arange(8).astype(">i8"))
        for ns in ("m", b"ns", bytearray(b"x"), "\u00e9" * 60, "n" * 2000):
            for toks in inputs:
                for flags in itertools.product((False, True), repeat=5):
                    for lease in (None, 0, 5, 2**63, pc.client.Lease(c, 77)):
                        pin, alloc, promote, no_cache, no_count = flags
                        rid = int(rng.integers(1, 2**40))
                        fast = c._enc_lookup(rid, ns, toks, pin, alloc, lease, promote,
                                             no_cache, no_count)
                        slow = c._encode("lookup", rid, dict(
                            ns=ns, tokens=toks, pin=pin or None, alloc=alloc or None,
                            lease=lease or None, promote=promote or None,
                            no_cache=no_cache or None, no_count=no_count or None,
                            instance=c._instance))
                        self.assertEqual(bytes(fast), bytes(slow), (ns, toks, flags, lease))
        for bad in (np.array([5, -1]), np.array([2**32]), np.array([2**40], np.uint64),
                    np.array([-1], np.int8), [1.5], np.zeros((2, 2), np.int64), b"abc"):
            with self.assertRaises((ValueError, TypeError)) as fast:
                c._enc_lookup(1, "m", bad, False, False, None, False, False, False)
            with self.assertRaises((ValueError, TypeError)) as slow:
                c._encode("lookup", 1, {"ns": "m", "tokens": bad})
            self.assertEqual((type(fast.exception), str(fast.exception)),
                             (type(slow.exception), str(slow.exception)))
        with self.assertRaises(TypeError):
            c.lookup(1.5, [1])  # type: ignore[arg-type]
        with self.assertRaises(pc.TooBig):  # the daemon's limit, from the long path
            c.lookup("n" * 2000, prompt(2, 8))

    def test_reply_decoding_matches_the_tables(self) -> None:
        blocks = np.arange(3, dtype="<u4").tobytes()
        base = {"id": 9, "status": 0, "tokens": 12, "blocks": blocks}
        cases = [dict(base, lease=0), dict(base, lease=2**64 - 1),
                 dict(base, lease=3, alloc_status=0, alloc_blocks=blocks),
                 dict(base, lease=0, tier2_tokens=4), dict(base, lease=0, future=[1]),
                 dict(base, lease=0, blocks="x"), dict(base, lease=-1),
                 dict(base, lease=True), dict(base, tokens=-1, lease=0),
                 dict(base, lease=0, blocks=b"\0\0\0"), dict(base, x=1, y=2), dict(base, x=1)]
        for m in cases:
            got, want = [], []
            for decode, out in ((lambda: self.c._lookup_result(9, dict(m)), got),
                                (lambda: self.c._result("lookup", 9, dict(m)), want)):
                try:
                    r = decode()
                except pc.PrefixCacheError as e:
                    out.append((type(e), str(e)))
                    continue
                self.assertIs(type(r), pc.client.LeasedResult)
                for k, v in vars(r).items():
                    if isinstance(v, np.ndarray):
                        self.assertEqual((v.dtype, v.flags.writeable), (np.uint32, True))
                        v = v.tolist()
                    elif isinstance(v, pc.client.Lease):
                        v = (v.id, v.ended)
                    out.append((k, v))
            self.assertEqual(got, want, m)

    def test_lookup_result_and_buffer_reuse(self) -> None:
        toks = prompt(3, 10 * PT)
        canon = self.cache(toks)
        for t in (toks, toks.astype(np.uint32), toks.tolist(), toks[:4 * PT]):
            r = self.c.lookup(self.ns, t)
            self.assertEqual(r.tokens, len(t))
            np.testing.assert_array_equal(r.blocks, canon[:len(t) // PT])
            r.blocks[0] = 0  # a writable copy of the reply's ids
            self.assertIsNone(r.lease)
            with self.assertRaises(pc.OutOfRange):  # leaves the buffer usable
                self.c.lookup(self.ns, np.concatenate([t[:3], [-1]]))


class Pipelining(Base):
    def test_many_in_flight(self) -> None:
        toks = [prompt(100 + i, 8) for i in range(4)]
        canons = [self.cache(t) for t in toks]
        n = pc.WINDOW + 44  # more than the window: early replies are stashed
        ids = [self.c.send_lookup(self.ns, toks[i % 4]) for i in range(n)]
        self.assertEqual(len(set(ids)), n)
        self.assertEqual(self.c.in_flight, n)
        # a blocking call in the middle: the replies it meets are kept
        self.c.ping()
        seen = {}
        for _ in range(n):
            rep = self.c.recv()
            self.assertTrue(rep.ok)
            seen[rep.id] = rep.result()
        self.assertEqual(sorted(seen), sorted(ids))
        for i, rid in enumerate(ids):
            np.testing.assert_array_equal(seen[rid].blocks, canons[i % 4])
        self.assertEqual(self.c.in_flight, 0)
        with self.assertRaises(pc.Timeout):
            self.c.recv()

    def test_recv_by_id_and_errors(self) -> None:
        toks = prompt(200, 8)
        canon = self.cache(toks)
        a = self.c.alloc(2)
        i1 = self.c.send_lookup(self.ns, toks, pin=True)
        i2 = self.c.send("release", lease=99)          # fails: unknown lease
        i3 = self.c.send_insert(self.ns + "2", toks, a.blocks, lease=a.lease, release=True)
        i4 = self.c.send("ping")
        r3 = self.c.recv(i3)
        self.assertEqual((r3.op, r3.result().inserted_pages), ("insert", 2))
        r2 = self.c.recv(i2)
        self.assertFalse(r2.ok)
        self.assertEqual(r2.status, -11)
        with self.assertRaises(pc.LeaseError):
            r2.result()
        r1 = self.c.recv()
        self.assertEqual(r1.id, i1)
        with r1.result() as lk:
            np.testing.assert_array_equal(lk.blocks, canon)
        self.assertTrue(lk.lease.ended)
        self.assertEqual(self.c.recv().id, i4)
        with self.assertRaises(KeyError):
            self.c.recv(i4)


class Timeouts(Base):
    def test_stopped_daemon(self) -> None:
        os.kill(D.proc.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            with self.assertRaises(pc.Timeout) as cm:
                self.c.ping(timeout_ms=200)
            self.assertLess(time.monotonic() - t0, 2)
            e = cm.exception
            self.assertIsInstance(e, TimeoutError)
            self.assertEqual((e.code, e.name), (-15, "PC_E_TIMEOUT"))
            with self.assertRaises(TimeoutError):
                self.c.stats(timeout_ms=100)
        finally:
            os.kill(D.proc.pid, signal.SIGCONT)
        # the late replies of both calls arrive first and are dropped by id
        self.assertEqual(self.c.stats()["pool.blocks.capacity"], 64)
        self.c.ping()

    def test_nobody_there(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            c = pc.Client(f"ipc://{d}/none.sock", timeout_ms=100)
            try:
                with self.assertRaises(pc.Timeout) as cm:
                    c.ping()
                self.assertIn("could not reach", cm.exception.message)
            finally:
                c.close()


class Leases(Base):
    def test_released_on_exception(self) -> None:
        before = self.live_leases()
        with self.assertRaises(ZeroDivisionError):
            with self.c.alloc(2) as a:
                self.assertEqual(self.live_leases(), before + 1)
                1 / 0
        self.assertTrue(a.lease.ended)
        self.assertEqual(self.live_leases(), before)
        with self.assertRaises(RuntimeError):
            with self.c.alloc(1).lease as lease:
                raise RuntimeError("engine failed")
        self.assertTrue(lease.ended)
        self.assertEqual(self.live_leases(), before)

    def test_expired_lease_exits_quietly(self) -> None:
        old = self.c.config_get("lease_ttl_ms")["lease_ttl_ms"]
        self.c.config_set(lease_ttl_ms=50)
        try:
            with self.c.alloc(1) as a:
                time.sleep(0.3)
                with self.assertRaises(pc.LeaseError):
                    a.lease.renew()
            self.assertTrue(a.lease.ended)
        finally:
            self.c.config_set(lease_ttl_ms=old)

    def test_repr_hides_the_id(self) -> None:
        a = self.c.alloc(0)
        with a:
            self.assertNotIn(str(a.lease.id), repr(a.lease))
            self.assertNotIn(f"{a.lease.id:x}", repr(a.lease))


class UnknownKeys(Base):
    def test_reply_keys_we_do_not_know(self) -> None:
        # what a newer minor version might send: ignored, not an error
        m = {"id": 7, "status": 0, "tokens": 4, "blocks": b"\x05\x00\x00\x00",
             "lease": 0, "tier": "host", "tier_blocks": b"", "future": {"x": [1]}}
        r = self.c._result("lookup", 7, m)
        self.assertEqual((r.tokens, list(r.blocks)), (4, [5]))
        self.assertFalse(hasattr(r, "tier"))
        with self.assertRaises(pc.BadMessage):
            self.c._result("lookup", 7, {"id": 7, "status": 0, "tokens": 4})


class PoolViews(Base):
    def test_bytes_another_process_wrote(self) -> None:
        """A second Python process allocates, writes a pattern into its
        blocks through its own mapping and inserts; this one looks the
        prefix up and reads the pattern through its views."""
        toks = prompt(300, 8)
        script = (
            "import sys, numpy as np, prefixcache as pc\n"
            "c = pc.connect(sys.argv[1])\n"
            "toks = np.array([int(x) for x in sys.argv[3].split(',')])\n"
            "with c.lookup(sys.argv[2], toks, pin=True, alloc=True) as r:\n"
            "    for j, b in enumerate(r.alloc_blocks):\n"
            "        c.pool.block(b)[...] = np.arange(c.pool.array[0].size,\n"
            "            dtype=np.float32).reshape(c.pool.array.shape[1:]) + 1000 * j\n"
            "    c.insert(sys.argv[2], toks, r.alloc_blocks, lease=r.lease, release=True)\n"
            "print('written', list(r.alloc_blocks))\n")
        env = dict(os.environ, PYTHONPATH=os.path.join(HERE, ".."))
        out = subprocess.run([sys.executable, "-c", script, D.endpoint, self.ns,
                              ",".join(str(int(x)) for x in toks)],
                             env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        with self.c.lookup(self.ns, toks, pin=True) as r:
            self.assertEqual(r.tokens, 8)
            shape = self.c.pool.array.shape[1:]
            for j, b in enumerate(r.blocks):
                expect = (np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
                          + 1000 * j).astype(np.float16)
                np.testing.assert_array_equal(self.c.pool.block(b), expect)
                # the same bytes, through the layout's K/V views
                np.testing.assert_array_equal(self.c.pool.v(b, 1), expect[1, 1])
                self.assertEqual(bytes(self.c.pool.raw(b)), expect.tobytes())

    def test_torch_view_shares_memory(self) -> None:
        try:
            import torch
        except ImportError:
            self.skipTest("torch is not importable (Debian: python3-torch): "
                          "the torch view is untested here")
        t = self.c.pool.as_torch()
        self.assertEqual(tuple(t.shape), self.c.pool.array.shape)
        self.assertEqual(t.dtype, torch.float16)
        with self.c.alloc(1) as a:
            b = int(a.blocks[0])
            t[b, 1, 0, 2, 1, 3] = 7.5
            self.assertEqual(self.c.pool.k(b, 1)[2, 1, 3], 7.5)
            self.c.pool.block(b)[0, 1] = -2
            self.assertTrue(bool((t[b, 0, 1] == -2).all()))


class Dtypes(unittest.TestCase):
    """Each pool dtype's numpy (and torch) element type, on daemons of
    their own; and max_msg refused client-side."""

    def test_views_per_dtype(self) -> None:
        expect = {"fp32": np.float32, "fp16": np.float16, "bf16": np.uint16,
                  "fp8": np.uint8, "int8": np.int8}
        try:
            import torch
        except ImportError:
            torch = None
        for name, dt in expect.items():
            with self.subTest(dtype=name), start_daemon(dtype=name, pool_blocks=8,
                                                        max_msg_bytes="4KiB") as d:
                with pc.connect(d.endpoint) as c:
                    self.assertEqual(c.pool.array.dtype, np.dtype(dt))
                    self.assertEqual(c.pool.block(7).nbytes, c.hello_info.block_bytes)
                    if name == "fp32":
                        with self.assertRaises(pc.TooBig):
                            c.lookup("x", np.arange(2000))  # 8 KB > 4 KiB
                    if torch is not None:
                        t = c.pool.as_torch()
                        if name == "bf16":
                            self.assertEqual(t.dtype, torch.bfloat16)
                            t[0, 0, 0, 0, 0, 0] = 1.0
                            # bf16 1.0 is 0x3f80: the raw numpy view sees it
                            self.assertEqual(int(c.pool.array[0, 0, 0, 0, 0, 0]), 0x3F80)
                        else:
                            self.assertEqual(t.element_size(), np.dtype(dt).itemsize)



class Restart(unittest.TestCase):
    def test_a_restarted_daemon_refuses_a_stale_mapping(self) -> None:
        """Protocol 1.3: after the daemon is killed and started again on the
        same endpoint and pool name, a client that mapped the old pool is
        refused (Stale) until it says hello again, then reads and writes
        the new pool."""
        d = start_daemon()
        try:
            a = pc.connect(d.endpoint, timeout_ms=3000)
            self.assertTrue(a.hello_info.instance)
            d.kill()
            d.start()  # the same endpoint and shm_name: the old pool reclaimed
            b = pc.connect(d.endpoint, timeout_ms=3000)
            self.assertNotEqual(a.hello_info.instance, b.hello_info.instance)
            toks = np.arange(8, dtype=np.int64)
            with b.lookup("r", toks, pin=True, alloc=True) as r:
                for blk in r.alloc_blocks:
                    b.pool.block(int(blk))[:] = 0xAB
                b.insert("r", toks, r.alloc_blocks, lease=r.lease, release=True)
            for call in (lambda: a.lookup("r", toks, pin=True),
                         lambda: a.alloc(1),
                         lambda: a.insert("r", toks, np.array([0, 1], np.uint32))):
                with self.assertRaises(pc.Stale):
                    call()
            self.assertEqual(b.stats()["leases.live"], 0)  # nothing changed
            a.hello()
            with a.lookup("r", toks, pin=True) as r:
                self.assertEqual(r.tokens, 8)
                self.assertTrue((a.pool.block(int(r.blocks[0])) == 0xAB).all())
            a.close()
            b.close()
        finally:
            d.stop()


class Harness(unittest.TestCase):
    def test_stop_fails_on_a_sanitizer_report(self) -> None:
        """What makes the asan flavour meaningful: a report in the daemon's
        log fails the run, as tests/harness/daemon.c does."""
        from prefixcache.daemon import DaemonError
        d = start_daemon()
        with open(d.log_path, "a") as f:
            f.write("==1==" + "ERROR: " + "LeakSanitizer: detected memory leaks\n")
        with self.assertRaises(DaemonError):
            d.stop()
        self.assertFalse(os.path.exists(d.shm_path))
        self.assertFalse(os.path.exists(d.dir))


if __name__ == "__main__":
    unittest.main()
