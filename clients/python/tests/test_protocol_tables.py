"""The Python protocol tables against the C headers they mirror: every F(...)
row of proto/wire.h, PC_OP_TABLE, the head keys, PC_ERRNO_MAP of
proto/errors.h, the version and the namespace bound.  Exact agreement, row
for row, in order: a field or op added on one side only fails here."""
from __future__ import annotations

import os
import re
import unittest

from common import ROOT

import prefixcache
from prefixcache import protocol as P


def read(rel: str) -> str:
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def macro_body(text: str, name: str) -> str:
    """The body of `#define name(...)`, through its continuation lines."""
    m = re.search(r"^#define\s+" + re.escape(name) + r"\(\w+\)(.*?)(?<!\\)\n",
                  text, re.M | re.S)
    if m is None:
        raise AssertionError(f"no #define {name}(...)")
    return m.group(1)


class WireTables(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.wire = read("proto/wire.h")

    def test_ops(self) -> None:
        body = macro_body(self.wire, "PC_OP_TABLE")
        ops = re.findall(r'M\((\w+),\s*"([^"]+)",\s*(\w+)\)', body)
        self.assertTrue(ops)
        self.assertEqual([w for _, w, _ in ops], [op.name for op in P.OPS])
        for upper, wire, lower in ops:
            self.assertEqual((upper.lower(), lower), (wire, wire))

    def test_rows(self) -> None:
        body = macro_body(self.wire, "PC_OP_TABLE")
        for upper, wire, _ in re.findall(r'M\((\w+),\s*"([^"]+)",\s*(\w+)\)', body):
            op = P.OPS_BY_NAME[wire]
            for side, ours in (("REQ", op.request), ("REP", op.reply)):
                rows = re.findall(
                    r'F\((\w+),\s*(\w+),\s*"([^"]*)",\s*(\w+),\s*(REQ|OPT),',
                    macro_body(self.wire, f"PC_WIRE_{upper}_{side}"))
                for struct, *_ in rows:
                    self.assertEqual(struct, f"{wire}_{side.lower()}")
                theirs = [(k, t, r == "REQ") for _, _, k, t, r in rows]
                self.assertEqual(theirs, [tuple(f) for f in ours],
                                 f"{wire} {side.lower()} rows differ from wire.h")

    def test_every_row_belongs_to_an_op(self) -> None:
        # a PC_WIRE_X_REQ/REP table for an op missing from PC_OP_TABLE
        tables = set(re.findall(r"^#define PC_WIRE_(\w+)_RE[QP]\(F\)", self.wire, re.M))
        self.assertEqual(tables, {op.name.upper() for op in P.OPS})

    def test_types(self) -> None:
        enum = re.findall(r"PC_WT_(\w+)", self.wire)
        types = {t for t in enum if t != "COUNT"}
        self.assertEqual(types, {P.UINT, P.INT, P.BOOL, P.STR, P.BYTES, P.IDS,
                                 P.NAMES, P.MAP, P.BIN})

    def test_heads(self) -> None:
        keys = dict(re.findall(r'#define PC_WIRE_KEY_(\w+) "([^"]+)"', self.wire))
        self.assertEqual(keys, {"OP": P.KEY_OP, "ID": P.KEY_ID,
                                "STATUS": P.KEY_STATUS, "ERROR": P.KEY_ERROR})

    def test_version_and_limits(self) -> None:
        proto = read("proto/proto.h")
        self.assertEqual(int(re.search(r"#define PC_PROTO_MAJOR (\d+)", proto).group(1)),
                         P.PROTO_MAJOR)
        self.assertEqual(int(re.search(r"#define PC_PROTO_MINOR (\d+)", proto).group(1)),
                         P.PROTO_MINOR)
        limits = read("proto/limits.h")
        self.assertEqual(int(re.search(r"#define PC_NS_MAX (\d+)", limits).group(1)),
                         P.NS_MAX)


class ErrorTable(unittest.TestCase):
    def test_errno_map(self) -> None:
        body = macro_body(read("proto/errors.h"), "PC_ERRNO_MAP")
        rows = re.findall(r'X\((\w+),\s*(-?\d+),\s*"((?:[^"\\]|\\.)*)"\)', body)
        self.assertTrue(rows)
        self.assertEqual([("PC_E_" + n, int(v), m) for n, v, m in rows],
                         [tuple(e) for e in P.ERRORS])

    def test_every_code_has_a_class(self) -> None:
        for e in P.ERRORS:
            if e.value == 0:
                continue
            exc = prefixcache.error_for(e.value, "why")
            self.assertIs(type(exc), prefixcache.ERROR_CLASSES[e.value])
            self.assertEqual((exc.code, exc.name, exc.message), (e.value, e.name, "why"))
            self.assertEqual(getattr(P, e.name), e.value)
            self.assertIs(getattr(prefixcache, type(exc).__name__), type(exc))
            self.assertIn(type(exc).__name__, prefixcache.__all__)
        # a newer daemon's code: the base class, still carrying the number
        exc = prefixcache.error_for(-99, "new")
        self.assertIs(type(exc), prefixcache.PrefixCacheError)
        self.assertEqual((exc.code, exc.name), (-99, "PC_E_UNKNOWN(-99)"))

    def test_dtypes(self) -> None:
        # blockpool's dtype names, in pc_dtype order
        names = re.findall(r"PC_DTYPE_(\w+)", read("blockpool/blockpool.h"))
        names = [n.lower() for n in dict.fromkeys(names) if n != "COUNT"]
        self.assertEqual(names, list(P.DTYPE_BYTES))


if __name__ == "__main__":
    unittest.main()
