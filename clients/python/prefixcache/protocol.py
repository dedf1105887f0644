"""Everything the Python client knows about the wire, in one place.

These tables mirror proto/wire.h (the F(...) rows and PC_OP_TABLE) and
proto/errors.h (PC_ERRNO_MAP).  tests/test_protocol_tables.py parses those
headers and checks that the tables below agree with them exactly, row for
row, so they cannot drift.  A new op or field is a row here (and in the
header); the client encodes and decodes every message from these rows.
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Tuple

PROTO_MAJOR = 1
PROTO_MINOR = 3

# The heads: every request carries op and id, every reply id, status and
# (status < 0) error.  They are not rows of the tables.
KEY_OP = "op"
KEY_ID = "id"
KEY_STATUS = "status"
KEY_ERROR = "error"

NS_MAX = 256  # bytes in a namespace (proto/limits.h PC_NS_MAX)

# Field types, as wire.h names them (PC_WT_*).
UINT, INT, BOOL, STR, BYTES, IDS, NAMES, MAP, BIN = (
    "UINT", "INT", "BOOL", "STR", "BYTES", "IDS", "NAMES", "MAP", "BIN")


class Field(NamedTuple):
    key: str
    type: str
    required: bool


def _rows(*rows: Tuple[str, str, bool]) -> Tuple[Field, ...]:
    return tuple(Field(*r) for r in rows)


REQ, OPT = True, False


class Op(NamedTuple):
    name: str
    request: Tuple[Field, ...]
    reply: Tuple[Field, ...]


# In pc_op's numeric order (PC_OP_TABLE); each op's rows in wire.h's order.
OPS: Tuple[Op, ...] = (
    Op("hello",
       _rows(("version", UINT, OPT)),
       _rows(("version", UINT, REQ), ("version_minor", UINT, REQ),
             ("page_tokens", UINT, REQ), ("layers", UINT, REQ),
             ("kv_heads", UINT, REQ), ("head_dim", UINT, REQ),
             ("dtype", STR, REQ), ("block_bytes", UINT, REQ),
             ("token_bytes", UINT, REQ), ("kv_bytes", UINT, REQ),
             ("capacity", UINT, REQ), ("backend", STR, REQ),
             ("shm_name", STR, OPT), ("shm_bytes", UINT, OPT),
             ("device_ops", STR, OPT), ("device_uuid", BIN, OPT),
             ("ipc_handle", BIN, OPT), ("tier2", STR, OPT),
             ("tier2_pages", UINT, OPT), ("lease_ttl_ms", UINT, REQ),
             ("max_tokens", UINT, REQ), ("max_msg", UINT, REQ),
             ("instance", UINT, OPT))),
    Op("lookup",
       _rows(("ns", BYTES, REQ), ("tokens", IDS, REQ), ("pin", BOOL, OPT),
             ("alloc", BOOL, OPT), ("lease", UINT, OPT),
             ("promote", BOOL, OPT), ("no_cache", BOOL, OPT),
             ("no_count", BOOL, OPT), ("instance", UINT, OPT)),
       _rows(("tokens", UINT, REQ), ("blocks", IDS, REQ), ("lease", UINT, REQ),
             ("alloc_status", INT, OPT), ("alloc_blocks", IDS, OPT),
             ("alloc_error", STR, OPT), ("tier2_tokens", UINT, OPT),
             ("promoted_tokens", UINT, OPT))),
    Op("alloc",
       _rows(("n", UINT, REQ), ("lease", UINT, OPT), ("instance", UINT, OPT)),
       _rows(("lease", UINT, REQ), ("blocks", IDS, REQ))),
    Op("insert",
       _rows(("ns", BYTES, REQ), ("tokens", IDS, REQ), ("blocks", IDS, REQ),
             ("lease", UINT, OPT), ("release", BOOL, OPT), ("pin", BOOL, OPT),
             ("no_cache", BOOL, OPT), ("instance", UINT, OPT)),
       _rows(("cached_tokens", UINT, REQ), ("inserted_pages", UINT, REQ),
             ("freed_blocks", UINT, REQ), ("canon", IDS, REQ))),
    Op("release",
       _rows(("lease", UINT, REQ)),
       _rows()),
    Op("stats",
       _rows(("check", BOOL, OPT)),
       _rows(("stats", MAP, REQ), ("check", INT, OPT))),
    Op("ping", _rows(), _rows()),
    Op("flush",
       _rows(("ns", BYTES, OPT)),
       _rows(("evicted", UINT, REQ), ("tier2_evicted", UINT, OPT))),
    Op("config",
       _rows(("get", NAMES, OPT), ("set", MAP, OPT)),
       _rows(("config", MAP, REQ))),
)

OPS_BY_NAME: Dict[str, Op] = {op.name: op for op in OPS}


class ErrorCode(NamedTuple):
    name: str      # "PC_E_INVAL"
    value: int     # -1
    message: str   # pc_strerror()'s text


# PC_ERRNO_MAP, in its order.  Codes are stable: new ones are appended.
ERRORS: Tuple[ErrorCode, ...] = tuple(ErrorCode("PC_E_" + n, v, m) for n, v, m in (
    ("OK", 0, "success"),
    ("INVAL", -1, "invalid argument"),
    ("NOMEM", -2, "out of memory"),
    ("RANGE", -3, "value out of range"),
    ("NOTLOCKED", -4, "node is not locked (unlock below zero)"),
    ("CORRUPT", -5, "internal invariant violated"),
    ("NOSPACE", -6, "no free blocks and nothing evictable"),
    ("NOENT", -7, "no such entry"),
    ("BADMSG", -8, "malformed message"),
    ("BADOP", -9, "unknown operation"),
    ("TOOBIG", -10, "message or field exceeds a limit"),
    ("LEASE", -11, "unknown or expired lease"),
    ("PERM", -12, "not permitted"),
    ("STATE", -13, "block is in the wrong state"),
    ("VERSION", -14, "unsupported protocol version"),
    ("TIMEOUT", -15, "operation timed out"),
    ("IO", -16, "system or I/O error"),
    ("LIMIT", -17, "a configured limit was reached"),
    ("BUSY", -18, "resource busy"),
    ("STALE", -19, "the daemon restarted since this client's hello"),
))

ERRORS_BY_VALUE: Dict[int, ErrorCode] = {e.value: e for e in ERRORS}
# Module-level constants: protocol.PC_E_NOSPACE == -6, ...
globals().update({e.name: e.value for e in ERRORS})


def error_name(code: int) -> str:
    e = ERRORS_BY_VALUE.get(code)
    return e.name if e else f"PC_E_UNKNOWN({code})"


def error_message(code: int) -> str:
    e = ERRORS_BY_VALUE.get(code)
    return e.message if e else "unknown error"


# Pool dtypes: name -> bytes per element (blockpool/blockpool.h).
DTYPE_BYTES: Dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}
