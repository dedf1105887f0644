#!/usr/bin/python3
"""A tiny GQA transformer whose KV cache lives in prefixcached's pool: the
template of a real engine integration.

    PYTHONPATH=clients/python /usr/bin/python3 clients/python/examples/torch_engine.py \
        --daemon build/release/daemon/prefixcached      # starts a private daemon
    ... --endpoint ipc://...                            # or uses a running one
                                                        # (started with SHAPE below)

Two engine processes share one prefix:

  process A ("prefill")   prompt A = PREFIX + SUFFIX_A
    lookup(pin, alloc)    nothing cached yet; one fresh block per full page
    full forward          K/V of every position
    write                 each full page's K/V into its block, in the pool
                          layout [layer][K|V][token][kv_head][head_dim]
    insert(release)       the pages become the cached prefix

  process B ("reuse")     prompt B = PREFIX + SUFFIX_B (another suffix)
    lookup(pin, alloc)    PREFIX's pages are cached: their blocks, pinned;
                          fresh blocks for B's remaining full pages
    read                  the cached pages' K/V out of the pool
    partial forward       only the positions after the cached prefix
    write + insert        B's new full pages, for the next engine
    check                 B's logits equal a forward of prompt B without
                          the cache (tolerance below)

Both processes build the same weights from a fixed seed: in a real engine
they would load the same checkpoint, which is also what makes sharing KV
between engines valid at all (the namespace should name the model).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import prefixcache as pc  # noqa: E402

# ---- the model's shape, which the daemon's pool must be laid out for ----------

SEED = 1234
VOCAB, D_MODEL = 512, 64
LAYERS, Q_HEADS, KV_HEADS, HEAD_DIM = 2, 4, 2, 16
PAGE_TOKENS = 8
SHAPE = dict(layers=LAYERS, kv_heads=KV_HEADS, head_dim=HEAD_DIM,
             page_tokens=PAGE_TOKENS, dtype="fp32")
# The namespace names everything that makes KV reusable: model and weights.
NS = f"torch-engine-demo|seed:{SEED}|gqa{Q_HEADS}x{KV_HEADS}"

PREFIX = [int(x) for x in np.random.default_rng(7).integers(0, VOCAB, 40)]  # 5 pages
SUFFIX_A = [int(x) for x in np.random.default_rng(8).integers(0, VOCAB, 7)]
SUFFIX_B = [int(x) for x in np.random.default_rng(9).integers(0, VOCAB, 13)]
OTHER_PREFIX = [int(x) for x in np.random.default_rng(10).integers(0, VOCAB, 40)]

# float32 on the CPU.  The cached path attends over the very K/V values the
# prefill stored (the fp32 pool copies them exactly), but its matrix
# products have other shapes (13 query rows instead of 53), so BLAS may sum
# in another order: differences of a few float32 ulps per product, growing
# through two layers to ~1e-6 on logits of magnitude ~1.  1e-5 (absolute
# and relative) is an order of magnitude above that and far below any real
# error (another prompt's KV in the cached pages: ~0.2, checked below).
ATOL = RTOL = 1e-5


# ---- the model ---------------------------------------------------------------------

class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm1 = torch.nn.Parameter(torch.ones(D_MODEL))
        self.wq = torch.nn.Linear(D_MODEL, Q_HEADS * HEAD_DIM, bias=False)
        self.wk = torch.nn.Linear(D_MODEL, KV_HEADS * HEAD_DIM, bias=False)
        self.wv = torch.nn.Linear(D_MODEL, KV_HEADS * HEAD_DIM, bias=False)
        self.wo = torch.nn.Linear(Q_HEADS * HEAD_DIM, D_MODEL, bias=False)
        self.norm2 = torch.nn.Parameter(torch.ones(D_MODEL))
        self.up = torch.nn.Linear(D_MODEL, 4 * D_MODEL, bias=False)
        self.down = torch.nn.Linear(4 * D_MODEL, D_MODEL, bias=False)


def rms_norm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w


def rope(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x [T, heads, head_dim] at absolute positions pos.
    K is stored *after* RoPE, so a cached page is only valid at the same
    positions: prefix caching reuses pages at the positions they were
    computed at, which is exactly what a prefix match guarantees."""
    half = HEAD_DIM // 2
    freq = 1.0 / (10000 ** (torch.arange(half, dtype=torch.float32) / half))
    ang = pos[:, None].float() * freq[None, :]                  # [T, half]
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class TinyGQA(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(SEED)  # the same weights in every process
        self.emb = torch.nn.Embedding(VOCAB, D_MODEL)
        self.blocks = torch.nn.ModuleList(Block() for _ in range(LAYERS))
        self.norm = torch.nn.Parameter(torch.ones(D_MODEL))
        self.head = torch.nn.Linear(D_MODEL, VOCAB, bias=False)

    @torch.no_grad()
    def forward(self, tokens: List[int], past: Optional[List[Tuple[torch.Tensor, torch.Tensor]]] = None
                ) -> Tuple[torch.Tensor, List[Tuple[torch.Tensor, torch.Tensor]]]:
        """Logits of `tokens`, which follow the positions of `past` (per
        layer, K and V of the earlier positions, each [S, kv_heads,
        head_dim]); returns them with the K/V of all S + T positions."""
        start = past[0][0].shape[0] if past else 0
        t = len(tokens)
        pos = torch.arange(start, start + t)
        x = self.emb(torch.tensor(tokens))
        kv_out = []
        for i, b in enumerate(self.blocks):
            h = rms_norm(x, b.norm1)
            q = rope(b.wq(h).view(t, Q_HEADS, HEAD_DIM), pos)
            k = rope(b.wk(h).view(t, KV_HEADS, HEAD_DIM), pos)
            v = b.wv(h).view(t, KV_HEADS, HEAD_DIM)
            if past:
                k = torch.cat([past[i][0], k])
                v = torch.cat([past[i][1], v])
            kv_out.append((k, v))
            # GQA: each KV head serves Q_HEADS / KV_HEADS query heads
            rep = Q_HEADS // KV_HEADS
            kk = k.repeat_interleave(rep, dim=1).transpose(0, 1)    # [H, S+T, d]
            vv = v.repeat_interleave(rep, dim=1).transpose(0, 1)
            scores = q.transpose(0, 1) @ kk.transpose(1, 2) / math.sqrt(HEAD_DIM)
            # causal: query at absolute position p sees keys 0..p
            mask = torch.arange(start + t)[None, :] > pos[:, None]
            att = F.softmax(scores.masked_fill(mask, float("-inf")), dim=-1) @ vv
            x = x + b.wo(att.transpose(0, 1).reshape(t, Q_HEADS * HEAD_DIM))
            x = x + b.down(F.silu(b.up(rms_norm(x, b.norm2))))
        return self.head(rms_norm(x, self.norm)), kv_out


# ---- the pool side: where the copies go ---------------------------------------------

def write_pages(pool: torch.Tensor, kv: List[Tuple[torch.Tensor, torch.Tensor]],
                first_page: int, blocks: np.ndarray) -> None:
    """Copy the K/V of pages first_page, first_page+1, ... into `blocks`.
    pool is the whole pool, [blocks, layers, 2, page_tokens, kv_heads,
    head_dim]: one page of one layer's K is exactly kv[l][0][page rows]."""
    for j, b in enumerate(blocks.tolist()):
        rows = slice((first_page + j) * PAGE_TOKENS, (first_page + j + 1) * PAGE_TOKENS)
        for l, (k, v) in enumerate(kv):
            pool[b, l, 0].copy_(k[rows])
            pool[b, l, 1].copy_(v[rows])


def read_pages(pool: torch.Tensor, blocks: np.ndarray) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """The K/V of the cached pages, per layer [pages * page_tokens, kv_heads,
    head_dim]: one gather (a copy) out of the pool."""
    idx = torch.from_numpy(blocks.astype(np.int64))
    g = pool.index_select(0, idx)               # [n, layers, 2, pt, kvh, d]
    g = g.permute(1, 2, 0, 3, 4, 5).reshape(LAYERS, 2, -1, KV_HEADS, HEAD_DIM)
    return [(g[l, 0], g[l, 1]) for l in range(LAYERS)]


def connect(endpoint: str) -> pc.Client:
    c = pc.connect(endpoint)
    h = c.hello_info
    got = dict(layers=h.layers, kv_heads=h.kv_heads, head_dim=h.head_dim,
               page_tokens=h.page_tokens, dtype=h.dtype)
    if got != SHAPE or c.pool is None:
        raise SystemExit(f"the daemon's pool is {got} ({h.backend}); this model "
                         f"needs a host pool of {SHAPE}")
    return c


# ---- the two engine processes ---------------------------------------------------------

def prefill(endpoint: str) -> dict:
    """Process A: compute prompt A in full and cache its full pages."""
    model, c = TinyGQA(), connect(endpoint)
    prompt = PREFIX + SUFFIX_A
    pool = c.pool.as_torch()
    with c.lookup(NS, prompt, pin=True, alloc=True) as r:  # released on any error
        cached_pages = r.tokens // PAGE_TOKENS
        # A computes everything; a real engine would reuse r.blocks as B does
        logits, kv = model(prompt)
        if r.alloc_status == 0 and len(r.alloc_blocks):
            write_pages(pool, kv, cached_pages, r.alloc_blocks)
            ir = c.insert(NS, prompt, np.concatenate([r.blocks, r.alloc_blocks]),
                          lease=r.lease, release=True)
            inserted = ir.inserted_pages
        else:
            inserted = 0  # no room (alloc_status < 0): computed, not cached
    return {"role": "prefill", "tokens": len(prompt), "cached": r.tokens,
            "inserted_pages": inserted}


def reuse(endpoint: str) -> dict:
    """Process B: reuse the cached prefix, compute only the rest, check."""
    model, c = TinyGQA(), connect(endpoint)
    prompt = PREFIX + SUFFIX_B
    pool = c.pool.as_torch()
    with c.lookup(NS, prompt, pin=True, alloc=True) as r:
        n = r.tokens  # a multiple of PAGE_TOKENS
        # The pin keeps these blocks from being evicted while we read them.
        past = read_pages(pool, r.blocks) if n else None
        logits, kv = model(prompt[n:], past)             # only the new part
        if r.alloc_status == 0 and len(r.alloc_blocks):
            write_pages(pool, kv, n // PAGE_TOKENS, r.alloc_blocks)
            c.insert(NS, prompt, np.concatenate([r.blocks, r.alloc_blocks]),
                     lease=r.lease, release=True)
    ref_logits, ref_kv = model(prompt)                   # no cache at all
    diff = float((logits - ref_logits[n:]).abs().max())
    kv_diff = max(float((past[l][i] - ref_kv[l][i][:n]).abs().max())
                  for l in range(LAYERS) for i in (0, 1)) if past else 0.0
    # The check must be able to fail: the K/V of another prompt's pages in
    # the same places must miss the tolerance by far.
    _, other = model(OTHER_PREFIX)
    wrong = [(k[:n], v[:n]) for k, v in other]
    wrong_diff = float((model(prompt[n:], wrong)[0] - ref_logits[n:]).abs().max()) if n else 0.0
    ok = (n == len(PREFIX) and torch.allclose(logits, ref_logits[n:], atol=ATOL, rtol=RTOL)
          and kv_diff <= ATOL and wrong_diff > 100 * ATOL)
    return {"role": "reuse", "tokens": len(prompt), "cached": n,
            "computed": len(prompt) - n, "max_logit_diff": diff,
            "max_kv_diff": kv_diff, "tolerance": ATOL,
            "wrong_kv_diff": wrong_diff, "ok": bool(ok)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", help="a running daemon (its pool must be SHAPE)")
    ap.add_argument("--daemon", help="start a private prefixcached from this binary")
    ap.add_argument("--role", choices=("prefill", "reuse"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(1)  # deterministic, and polite on shared machines
    if a.role:
        print(json.dumps(prefill(a.endpoint) if a.role == "prefill" else reuse(a.endpoint)))
        return 0

    from prefixcache.daemon import Daemon
    daemon = Daemon(a.daemon, pool_blocks=64, **SHAPE) if a.daemon else None
    endpoint = daemon.endpoint if daemon else (a.endpoint or pc.default_endpoint())
    try:
        results = []
        for role in ("prefill", "reuse"):  # two separate engine processes
            out = subprocess.run([sys.executable, os.path.abspath(__file__),
                                  "--role", role, "--endpoint", endpoint],
                                 capture_output=True, text=True, timeout=300)
            sys.stderr.write(out.stderr)
            if out.returncode != 0:
                print(f"process {role} failed ({out.returncode})")
                return 1
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(out.stdout.strip())
    finally:
        if daemon:
            daemon.stop()
    a_res, b_res = results
    if a_res["inserted_pages"] != len(PREFIX + SUFFIX_A) // PAGE_TOKENS and not a.endpoint:
        print("FAIL: process A did not cache its pages")
        return 1
    if not b_res["ok"]:
        print(f"FAIL: process B reused {b_res['cached']} tokens (expected "
              f"{len(PREFIX)}), logits differ by {b_res['max_logit_diff']:.3g}, "
              f"K/V by {b_res['max_kv_diff']:.3g} (tolerance {ATOL}); another "
              f"prompt's KV differs by {b_res['wrong_kv_diff']:.3g}")
        return 1
    print(f"PASS: B reused {b_res['cached']} of {b_res['tokens']} tokens from "
          f"A's pages, computed {b_res['computed']}; logits within "
          f"{b_res['max_logit_diff']:.2g} of the uncached run (tolerance {ATOL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
