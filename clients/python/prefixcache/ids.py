"""Token ids and block ids <-> the wire's bin of little-endian uint32."""
from __future__ import annotations

import array
from typing import Any, Union

import numpy as np

from . import protocol as P
from .errors import OutOfRange

U32_MAX = 0xFFFFFFFF
_LE_U32 = np.dtype("<u4")


def to_wire(ids: Any, what: str = "tokens", op: str = "") -> Union[bytes, memoryview]:
    """ids as bin of little-endian uint32 (bytes, or a byte memoryview).

    Accepted: bytes/bytearray (or a byte-format memoryview): already that
    encoding, length a multiple of 4; a list, tuple or range of ints;
    array.array of an integer typecode; a numpy array (or anything
    numpy.asarray turns into one, a torch tensor included) of any integer
    dtype, one-dimensional.  Values must lie in 0 .. 2**32-1: OutOfRange
    (PC_E_RANGE) otherwise, TypeError for non-integers.
    """
    if op:
        what = f"{op}.{what}"
    if isinstance(ids, (bytes, bytearray)) or (
            isinstance(ids, memoryview) and ids.format in ("B", "b", "c")):
        b = bytes(ids)
        if len(b) % 4:
            raise OutOfRange(P.PC_E_RANGE, f"{what}: {len(b)} bytes is not a "
                             "whole number of little-endian uint32 ids")
        return b
    if isinstance(ids, array.array) and ids.typecode in "fdu":
        raise TypeError(f"{what}: array.array('{ids.typecode}') is not integer")
    if type(ids) is np.ndarray:
        a = ids
        if a.ndim == 1 and a.dtype.kind in "iu":
            if a.dtype.itemsize > 4 or a.dtype.kind == "i":
                a = _range_checked(a, what)
            # a view of the converted array: the packer copies it once
            return memoryview(np.ascontiguousarray(a, dtype=_LE_U32)).cast("B")
    else:
        try:
            a = np.asarray(ids)
        except OverflowError:  # a Python int beyond int64/uint64
            raise OutOfRange(P.PC_E_RANGE, f"{what}: an id exceeds 2**32-1") from None
    if a.ndim != 1:
        if a.ndim == 0 or a.size:
            raise TypeError(f"{what}: expected a 1-dimensional sequence of "
                            f"ints, got shape {a.shape}")
        a = a.reshape(0)
    if a.size == 0:
        return b""
    if a.dtype.kind == "O" and all(
            isinstance(x, int) and not isinstance(x, bool) for x in a.ravel()):
        # Python ints numpy could not fit in 64 bits
        raise OutOfRange(P.PC_E_RANGE, f"{what}: an id exceeds 2**32-1")
    if a.dtype.kind not in "iu":  # bool, float, object: not token ids
        raise TypeError(f"{what}: expected integers, got dtype {a.dtype}")
    return _range_checked(a, what).astype(_LE_U32, copy=False).tobytes()


def _range_checked(a: np.ndarray, what: str) -> np.ndarray:
    """a, when every value fits in uint32; OutOfRange otherwise."""
    if a.dtype.itemsize == 8:
        # one pass: seen as uint64, a negative int64 is huge too
        bad = a.size > 0 and int(a.view(np.uint64).max()) > U32_MAX
    elif a.dtype.kind == "i":
        bad = a.size > 0 and int(a.min()) < 0
    else:
        bad = False
    if bad:
        lo, hi = int(a.min()), int(a.max())
        raise OutOfRange(P.PC_E_RANGE, f"{what}: id {lo if lo < 0 else hi} "
                         "outside 0 .. 2**32-1")
    return a


def from_wire(b: bytes, what: str = "ids") -> np.ndarray:
    """A reply's bin as a numpy uint32 array (native order, writable copy)."""
    if len(b) % 4:
        from .errors import BadMessage
        raise BadMessage(P.PC_E_BADMSG, f"reply's '{what}' of {len(b)} bytes "
                         "is not a whole number of uint32")
    return np.frombuffer(b, dtype=_LE_U32).astype(np.uint32)
