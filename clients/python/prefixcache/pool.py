"""The daemon's host pool, mapped into this process, as numpy (and torch)
views shaped by the layout hello announced.

Layout (blockpool/blockpool.h, proto/PROTOCOL.md 5.1), identical for every
engine:

    pool[block][layer][kv][token][kv_head][head_dim]     kv: 0 = K, 1 = V

so block i starts at byte i * block_bytes, and layer l's K at
2 * l * kv_bytes within it.  Element types:

    fp32 -> numpy float32, torch float32
    fp16 -> numpy float16, torch float16
    bf16 -> numpy uint16 (the raw bits: numpy has no bfloat16);
            as_torch() reinterprets them as torch.bfloat16
    fp8  -> numpy uint8 (raw e4m3 bits); as_torch(): torch.float8_e4m3fn
            where this torch has it, else uint8
    int8 -> numpy int8 (quantized values as stored; the scales are not part
            of the pool layout)

Views share memory with the pool: writes are seen by every process that
mapped it.  Nothing here copies.
"""
from __future__ import annotations

import mmap
import os
from typing import Any, Optional

import numpy as np

from . import protocol as P
from .errors import error_for

NUMPY_DTYPES = {"fp32": np.float32, "fp16": np.float16, "bf16": np.uint16,
                "fp8": np.uint8, "int8": np.int8}


class Pool:
    """A mapped host pool: `array` is [blocks, layers, 2, page_tokens,
    kv_heads, head_dim] of the dtype (see the module's text)."""

    def __init__(self, hello: "Any") -> None:
        self.dtype_name: str = hello.dtype
        if self.dtype_name not in NUMPY_DTYPES:
            raise error_for(P.PC_E_INVAL, f"pool dtype '{hello.dtype}' "
                            "unknown to this client")
        self.layers, self.kv_heads = hello.layers, hello.kv_heads
        self.head_dim, self.page_tokens = hello.head_dim, hello.page_tokens
        self.block_bytes, self.shm_name = hello.block_bytes, hello.shm_name
        elem = P.DTYPE_BYTES[self.dtype_name]
        expect = 2 * self.layers * self.kv_heads * self.head_dim * self.page_tokens * elem
        if expect != self.block_bytes:
            raise error_for(P.PC_E_BADMSG, f"hello: block_bytes {self.block_bytes}"
                            f" but the shape gives {expect}")
        # Only blocks that lie wholly inside the object are addressable.
        self.blocks = min(hello.capacity, hello.shm_bytes // self.block_bytes)
        path = "/dev/shm/" + self.shm_name.lstrip("/")
        try:
            # O_RDWR and nothing else: a client must never flock the object
            # (the daemon's lock on it tells a live pool from a dead one).
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise error_for(P.PC_E_PERM if e.errno in (1, 13) else P.PC_E_NOENT
                            if e.errno == 2 else P.PC_E_IO,
                            f"cannot map the host pool {self.shm_name} "
                            f"({hello.shm_bytes} bytes): {e.strerror}") from None
        try:
            self._mm: Optional[mmap.mmap] = mmap.mmap(
                fd, hello.shm_bytes, mmap.MAP_SHARED,
                mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.dtype = np.dtype(NUMPY_DTYPES[self.dtype_name])
        raw = np.frombuffer(self._mm, dtype=np.uint8,
                            count=self.blocks * self.block_bytes)
        self.array: np.ndarray = raw.view(self.dtype).reshape(
            self.blocks, self.layers, 2, self.page_tokens, self.kv_heads,
            self.head_dim)

    # ---- numpy views ----------------------------------------------------------

    def _check(self, block: int) -> int:
        b = int(block)
        if not 0 <= b < self.blocks:
            raise error_for(P.PC_E_RANGE, f"block {b} outside the pool "
                            f"(0 .. {self.blocks - 1})")
        return b

    def block(self, block: int) -> np.ndarray:
        """[layers, 2, page_tokens, kv_heads, head_dim] view of one block."""
        return self.array[self._check(block)]

    def k(self, block: int, layer: int) -> np.ndarray:
        """[page_tokens, kv_heads, head_dim] view of one layer's K."""
        return self.array[self._check(block), layer, 0]

    def v(self, block: int, layer: int) -> np.ndarray:
        """[page_tokens, kv_heads, head_dim] view of one layer's V."""
        return self.array[self._check(block), layer, 1]

    def raw(self, block: int) -> memoryview:
        """The block's bytes (block_bytes of them), writable."""
        b = self._check(block)
        assert self._mm is not None
        return memoryview(self._mm)[b * self.block_bytes:(b + 1) * self.block_bytes]

    # ---- torch -----------------------------------------------------------------

    def as_torch(self) -> "Any":
        """The whole pool as a torch tensor sharing its memory (no copy),
        shaped like `array`.  Raises ImportError when torch is missing."""
        import torch  # optional: only this method needs it
        if self.dtype_name == "bf16":
            return torch.from_numpy(self.array.view(np.int16)).view(torch.bfloat16)
        t = torch.from_numpy(self.array)
        if self.dtype_name == "fp8" and hasattr(torch, "float8_e4m3fn"):
            return t.view(torch.float8_e4m3fn)
        return t

    def close(self) -> None:
        """Drop the mapping.  While numpy or torch views of it are alive the
        mapping cannot be closed; it then goes when the last view goes."""
        self.array = np.empty((0,), dtype=self.dtype)
        mm, self._mm = self._mm, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # views are still exported; the GC unmaps it later
