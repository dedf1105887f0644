"""Token ids and block ids <-> the wire's bin of little-endian uint32."""
from __future__ import annotations

import array
import sys
from typing import Any, Union

import numpy as np

from . import protocol as P
from .errors import OutOfRange

U32_MAX = 0xFFFFFFFF
_LE_U32 = np.dtype("<u4")
_U32 = np.dtype(np.uint32)
_LITTLE = sys.byteorder == "little"


def to_wire(ids: Any, what: str = "tokens", op: str = "") -> Union[bytes, memoryview]:
    """ids as bin of little-endian uint32 (bytes, or a byte memoryview).

    Accepted: bytes/bytearray (or a byte-format memoryview): already that
    encoding, length a multiple of 4; a list, tuple or range of ints;
    array.array of an integer typecode; a numpy array (or anything
    numpy.asarray turns into one, a torch tensor included) of any integer
    dtype, one-dimensional.  Values must lie in 0 .. 2**32-1: OutOfRange
    (PC_E_RANGE) otherwise, TypeError for non-integers.
    """
    a = checked(ids, what, op)
    if type(a) is bytes:
        return a
    # a view of the converted array: the packer copies it once
    return memoryview(np.ascontiguousarray(a, dtype=_LE_U32)).cast("B")


def checked(ids: Any, what: str = "tokens", op: str = "") -> Union[bytes, np.ndarray]:
    """to_wire's checks without its conversion: the wire bytes, or a
    one-dimensional integer ndarray (any integer dtype, native order) whose
    values all fit in uint32, for the caller to convert where it wants them
    (the client: straight into its request buffer)."""
    if type(ids) is np.ndarray and ids.ndim == 1 and ids.dtype in FAST_DTYPES:
        # the common case first: a tokenizer's array, checked in one pass
        check_fast(ids, what, op)
        return ids
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
            if not a.dtype.isnative:  # the view below needs native order
                a = a.astype(a.dtype.newbyteorder("="))
            return _range_checked(a, what)
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
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return _range_checked(a, what).astype(_LE_U32, copy=False).tobytes()


# ufunc reductions called directly: ndarray.max() goes through a Python
# wrapper (numpy/core/_methods.py) first.
_max, _min = np.maximum.reduce, np.minimum.reduce
_U64 = np.dtype(np.uint64)
_U32_MAX_64 = np.uint64(U32_MAX)  # uint64 against uint64: no float promotion
# Native integer dtypes -> the check they need: "u64" (int64, uint64: seen
# as uint64, a negative int64 is huge too, so one pass), "i" (smaller signed:
# no negatives), "" (uint8..uint32: nothing).
_FAST_KIND = {np.dtype(t): k for t, k in (
    (np.int64, "u64"), (np.uint64, "u64"), (np.int32, "i"), (np.int16, "i"),
    (np.int8, "i"), (np.uint32, ""), (np.uint16, ""), (np.uint8, ""))}
FAST_DTYPES = frozenset(_FAST_KIND)


def check_fast(a: np.ndarray, what: str = "tokens", op: str = "") -> None:
    """OutOfRange unless every value of a (1-d, a dtype of FAST_DTYPES)
    fits in uint32: one reduction at most."""
    kind = _FAST_KIND[a.dtype]
    if kind and a.shape[0] and (_max(a.view(_U64)) > _U32_MAX_64 if kind == "u64"
                                else _min(a) < 0):
        _range_error(a, what, op)


def _range_error(a: np.ndarray, what: str, op: str = "") -> None:
    if op:
        what = f"{op}.{what}"
    lo, hi = int(a.min()), int(a.max())
    raise OutOfRange(P.PC_E_RANGE, f"{what}: id {lo if lo < 0 else hi} "
                     "outside 0 .. 2**32-1")


def _range_checked(a: np.ndarray, what: str) -> np.ndarray:
    """a (native order), when every value fits in uint32; OutOfRange otherwise."""
    if a.dtype.itemsize == 8:
        bad = a.size > 0 and _max(a.view(_U64)) > _U32_MAX_64
    elif a.dtype.kind == "i":
        bad = a.size > 0 and _min(a) < 0
    else:
        bad = False
    if bad:
        _range_error(a, what)
    return a


def from_wire(b: bytes, what: str = "ids") -> np.ndarray:
    """A reply's bin as a numpy uint32 array (native order, writable copy)."""
    if len(b) % 4:
        from .errors import BadMessage
        raise BadMessage(P.PC_E_BADMSG, f"reply's '{what}' of {len(b)} bytes "
                         "is not a whole number of uint32")
    if _LITTLE:  # the wire's order: one copy (bytearray: writable), no conversion
        return np.frombuffer(bytearray(b), dtype=_U32)
    return np.frombuffer(b, dtype=_LE_U32).astype(np.uint32)
