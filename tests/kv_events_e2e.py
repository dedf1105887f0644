#!/usr/bin/python3
"""tests/kv_events_e2e.py - KV events from a real prefixcached (issue 14).

Run by ctest with Debian's /usr/bin/python3 (python3-zmq, python3-msgpack):
  kv_events_e2e.py PREFIXCACHED DRIVER FORMAT(map|array) [INTERVAL_MS]

A daemon with a small pool, a second tier (a file) and KV events on; the
workload is tests/kv_events_driver (requests with evictions, promotions,
flushes of one namespace and of everything).  Subscriber A is there from
the start, B joins a quarter of the way; both catch up through the replay
socket from seq 0 (A too: a PUB subscription takes a moment, and the first
batches go out before it) and on any gap, then follow the live stream.  A
stops reading for half the run with a receive queue of one message, so
that PUB drops batches for it: it must notice the gap and replay.  Each rebuilds
from the events the set of block hashes per medium, checking as it goes
that no page is stored twice or removed unknown, and that a pool page's
parent is in the pool.  At the end both must equal each other and what the
daemon holds: the pool's pages exactly (the driver's lookups), tier 2's by
count (the daemon's counter) and every page a lookup shows there.

INTERVAL_MS (kv_events_interval_ms, default 0: one batch per round of
requests, many small batches, which A's full queue loses) > 0: batches
gather; then they must hold several events each on average, and the
content must still come out equal (the last batch is published by its
interval, with no request to wake the loop).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

POOL, TIER2 = "CPU", "DISK"  # a host pool, a file tier (cache.h)


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


class Subscriber:
    def __init__(self, ctx, name, ev_ep, replay_ep, fmt):
        self.name, self.fmt, self.ctx, self.replay_ep = name, fmt, ctx, replay_ep
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, 1)  # a slow reader loses batches
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(ev_ep)
        self.next = 0  # the next sequence number to apply
        self.media = {}
        self.topic = None
        self.batches = self.replayed = self.stored = self.removed = 0
        self.events = 0
        self.cleared = 0
        self.gaps = 0
        self.payloads = {}  # seq -> the bytes applied (live or replayed)

    # --- the events ---------------------------------------------------------
    def event(self, ev):
        if self.fmt == "map":
            if not isinstance(ev, dict):
                fail(f"{self.name}: event is not a map: {ev!r}")
            kind = ev["type"]
        else:
            if not isinstance(ev, list):
                fail(f"{self.name}: event is not an array: {ev!r}")
            kind = ev[0]
            if kind == "BlockStored":
                if len(ev) != 7:
                    fail(f"array BlockStored has {len(ev)} fields")
                ev = dict(zip(["type", "block_hashes", "parent_block_hash",
                               "token_ids", "block_size", "lora_id",
                               "medium"], ev))
            elif kind == "BlockRemoved":
                ev = dict(zip(["type", "block_hashes", "medium"], ev))
        if kind == "AllBlocksCleared":
            self.media = {}
            self.cleared += 1
            return
        hashes, medium = ev["block_hashes"], ev["medium"]
        s = self.media.setdefault(medium, set())
        if kind == "BlockStored":
            if ev["lora_id"] is not None:
                fail("lora_id is not nil")
            if len(ev["token_ids"]) != len(hashes) * ev["block_size"]:
                fail("token_ids is not block_size x block_hashes")
            # the driver's tokens: 0..3, or family * 100000 + position (its
            # prompts are at most 8 pages)
            bs = ev["block_size"]
            for k, t in enumerate(ev["token_ids"]):
                if not (t < 4 or (t % 100000 < 8 * bs and t < 500000)):
                    fail(f"token {t} is none the driver sent")
                # a shared prefix's tokens (family x 100000 + position)
                # stay in their place: pages start at a multiple of bs
                if t >= 100000 and (t % 100000) % bs != k % bs:
                    fail(f"token {t} at {k} of an event: out of its place")
                if k and t >= 100000 and ev["token_ids"][k - 1] >= 100000 \
                        and t // 100000 == ev["token_ids"][k - 1] // 100000 \
                        and t != ev["token_ids"][k - 1] + 1:
                    fail(f"token {t} follows {ev['token_ids'][k - 1]}")
            parent = ev["parent_block_hash"]
            if medium == POOL and parent is not None and parent not in s:
                fail(f"{self.name}: pool page stored under a parent {parent} "
                     "the pool does not hold")
            for h in hashes:
                if not (0 <= h < 2**64):
                    fail(f"hash {h} is not a uint64")
                if h in s:
                    fail(f"{self.name}: {h} stored twice in {medium}")
                s.add(h)
            self.stored += len(hashes)
        elif kind == "BlockRemoved":
            for h in hashes:
                if h not in s:
                    fail(f"{self.name}: {h} removed from {medium} but never "
                         "stored")
                s.remove(h)
            self.removed += len(hashes)
        else:
            fail(f"unknown event {kind!r}")

    def apply(self, seq, payload):
        if seq != self.next:
            fail(f"{self.name}: applying seq {seq}, expected {self.next}")
        batch = msgpack.unpackb(payload, raw=False)
        if not (isinstance(batch, list) and len(batch) == 3 and
                isinstance(batch[0], float) and isinstance(batch[1], list)
                and batch[2] is None):
            fail(f"bad batch {batch!r}"[:300])
        if not batch[1]:
            fail("an empty batch was published")
        for ev in batch[1]:
            self.event(ev)
        self.events += len(batch[1])
        self.payloads[seq] = payload
        self.next += 1
        self.batches += 1

    # --- replay and live --------------------------------------------------
    def replay(self):
        d = self.ctx.socket(zmq.DEALER)
        d.connect(self.replay_ep)
        d.send_multipart([b"", self.next.to_bytes(8, "big")])
        while True:
            if not d.poll(10000):
                fail(f"{self.name}: replay did not answer")
            fr = d.recv_multipart()
            if len(fr) != 3 or fr[0] != b"":
                fail(f"bad replay frames {fr!r}"[:200])
            seq = int.from_bytes(fr[1], "big", signed=True)
            if seq == -1:
                if fr[2] != b"":
                    fail("replay end marker with a payload")
                break
            if seq < self.next:
                fail(f"replay sent {seq} < asked {self.next}")
            if seq > self.next:
                fail(f"{self.name}: replay skipped from {self.next} to {seq} "
                     "(kv_events_buffer too small?)")
            self.apply(seq, fr[2])
            self.replayed += 1
        d.close(0)

    def pump(self, timeout_ms):
        """Take live batches until none came for timeout_ms."""
        while self.sub.poll(timeout_ms):
            topic, seqb, payload = self.sub.recv_multipart()
            if self.topic is None:
                self.topic = topic
            elif topic != self.topic:
                fail("topic changed")
            seq = int.from_bytes(seqb, "big")
            if seq < self.next:
                continue  # had it from replay
            if seq > self.next:
                self.gaps += 1
                self.replay()  # a gap: the start, or batches PUB dropped
            if seq == self.next:
                self.apply(seq, payload)


def main():
    daemon, driver, fmt = sys.argv[1], sys.argv[2], sys.argv[3]
    interval = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    # an odd page size puts token runs that are not a multiple of 4 through
    # the publisher's packing (its vector loop takes 4 at a time)
    page_tokens = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    tmp = tempfile.mkdtemp(prefix="pc-kvev-")
    ep = f"ipc://{tmp}/pc.sock"
    ev_ep, rp_ep = f"ipc://{tmp}/ev.sock", f"ipc://{tmp}/replay.sock"
    log = open(os.path.join(tmp, "daemon.log"), "w+")
    args = [daemon, f"--endpoint={ep}", f"--shm_name=/pc-kvev-{os.getpid()}",
            "--pool_backend=host", "--pool_blocks=40", "--layers=1",
            "--kv_heads=1", "--head_dim=8", f"--page_tokens={page_tokens}",
            # 8 blocks of 32 bytes a token (1 layer, 1 head of 8, fp16)
            f"--tier2_bytes={8 * page_tokens * 32}", f"--tier2_path={tmp}",
            f"--kv_events_endpoint={ev_ep}",
            f"--kv_events_replay_endpoint={rp_ep}",
            "--kv_events_buffer=1000000", f"--kv_events_format={fmt}",
            # 0, one batch per round: many small batches, so that the
            # subscriber that does not read loses some (the gap path)
            f"--kv_events_interval_ms={interval}",
            "--kv_events_topic=kv@<hostname>@test", "--log_level=info"]
    d = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    drv = None
    ctx = zmq.Context()
    try:
        for _ in range(200):
            if os.path.exists(f"{tmp}/pc.sock") and os.path.exists(f"{tmp}/replay.sock"):
                break
            if d.poll() is not None:
                break
            time.sleep(0.05)
        if d.poll() is not None:
            log.seek(0)
            fail("daemon did not start:\n" + log.read())
        a = Subscriber(ctx, "A", ev_ep, rp_ep, fmt)
        time.sleep(0.2)
        ops = int(os.environ.get("KV_EVENTS_OPS", "4000"))
        state_path = os.path.join(tmp, "state.json")
        drv = subprocess.Popen([driver, ep, str(ops), "7", state_path],
                               stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
        line = drv.stdout.readline()
        if line.strip() != "MID":
            fail(f"driver said {line!r}")
        a.pump(50)
        b = Subscriber(ctx, "B", ev_ep, rp_ep, fmt)
        time.sleep(0.1)
        b.replay()  # B joins late: everything from seq 0
        drv.stdin.write("go\n")
        drv.stdin.flush()
        # A reads nothing while half the run goes by (B does not either:
        # the driver blocks nobody), then both follow again
        line = drv.stdout.readline()
        if line.strip() != "MID2":
            fail(f"driver said {line!r}")
        gaps = a.gaps
        drv.stdin.write("go\n")
        drv.stdin.flush()
        # both follow the live stream while the driver works
        deadline = time.monotonic() + 120
        while drv.poll() is None:
            if time.monotonic() > deadline:
                fail("the driver has not finished in 120 s")
            a.pump(20)
            b.pump(20)
        if drv.returncode != 0:
            fail(f"driver failed ({drv.returncode})")
        with open(state_path) as f:
            state = json.load(f)
        for s in (a, b):
            s.pump(300)
            s.replay()  # whatever the live stream has not delivered yet
        host = os.uname().nodename
        if a.topic != f"kv@{host}@test".encode():
            fail(f"topic {a.topic!r}")
        pool, vis = set(state["pool"]), set(state["tier2_visible"])
        for s in (a, b):
            got_pool = s.media.get(POOL, set())
            got_t2 = s.media.get(TIER2, set())
            if got_pool != pool:
                fail(f"{s.name}: pool from events ({len(got_pool)} pages) != "
                     f"the daemon's ({len(pool)}): {len(got_pool - pool)} "
                     f"extra, {len(pool - got_pool)} missing")
            if len(pool) != state["tree_pages"]:
                fail(f"driver's pool {len(pool)} != tree.pages "
                     f"{state['tree_pages']}")
            if len(got_t2) != state["tier2_pages"]:
                fail(f"{s.name}: tier 2 from events {len(got_t2)} pages, the "
                     f"daemon holds {state['tier2_pages']}")
            if not vis <= got_t2:
                fail(f"{s.name}: {len(vis - got_t2)} pages a lookup sees in "
                     "tier 2 were never stored there")
            if set(s.media) - {POOL, TIER2}:
                fail(f"unexpected media {set(s.media)}")
        if a.media != b.media or a.next != b.next:
            fail("the two subscribers disagree")
        if a.payloads != b.payloads:
            fail("A (live) and B (mostly replayed) got different bytes")
        # a replay from the middle: exactly the batches from there on, the
        # same bytes as went out live
        k = a.next // 2
        rd = ctx.socket(zmq.DEALER)
        rd.connect(rp_ep)
        rd.send_multipart([b"", k.to_bytes(8, "big")])
        got = k
        while True:
            if not rd.poll(10000):
                fail("mid replay did not answer")
            fr = rd.recv_multipart()
            seq = int.from_bytes(fr[1], "big", signed=True)
            if seq == -1:
                break
            if seq != got or fr[2] != a.payloads[seq]:
                fail(f"mid replay: seq {seq} (expected {got}) or its bytes")
            got += 1
        rd.close(0)
        if got != a.next:
            fail(f"mid replay ended at {got}, published {a.next}")
        if interval == 0 and a.gaps == gaps:
            fail("A lost no batch while it did not read: the gap path went "
                 "untested")
        if interval > 0 and a.events < 2 * a.next:
            fail(f"{a.events} events in {a.next} batches: gathering for "
                 f"{interval} ms should put several in each")
        if not (a.stored and a.removed and a.cleared and state["tier2_pages"]
                and b.replayed and vis):
            fail(f"workload too tame: stored {a.stored} removed {a.removed} "
                 f"cleared {a.cleared} tier2 {state['tier2_pages']} "
                 f"replayed {b.replayed} visible {len(vis)}")
        print(f"ok ({fmt}, interval {interval} ms): {a.gaps} gaps seen by A; "
              f"{a.events} events in "
              f"{a.next} batches, {a.stored} pages stored, "
              f"{a.removed} removed, {a.cleared} cleared; A replayed "
              f"{a.replayed}, B {b.replayed}; final pool {len(pool)}, tier 2 "
              f"{state['tier2_pages']} ({len(vis)} visible); "
              f"{state['prompts']} prompts")
    finally:
        if drv is not None and drv.poll() is None:
            drv.kill()
            drv.wait()
        if d.poll() is None:
            d.terminate()
            try:
                d.wait(10)
            except subprocess.TimeoutExpired:
                d.kill()
        ctx.destroy(0)
        if d.returncode not in (0, None, -15):
            log.seek(0)
            print(log.read()[-4000:], file=sys.stderr)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
