"""The default endpoint: the same rule as rpc/endpoint.c, checked against
prefixcache-cli (which runs pc_rpc_default_endpoint) and on the rule's
corner cases."""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
import unittest

import common  # noqa: F401  (sys.path)

from prefixcache import endpoint as E


def cli_endpoint(env: dict) -> str:
    cli = os.environ.get("PREFIXCACHE_CLI")
    if not cli:
        raise unittest.SkipTest("PREFIXCACHE_CLI is not set (ctest sets it)")
    # nobody listens there: the CLI's timeout message names the endpoint
    out = subprocess.run([cli, "--timeout", "50", "ping"], env=env,
                         capture_output=True, text=True, timeout=30)
    m = re.search(r"could not reach (\S+)", out.stdout + out.stderr)
    if m is None:
        raise AssertionError(f"unexpected CLI output: {out.stdout}{out.stderr}")
    return m.group(1)


class DefaultEndpoint(unittest.TestCase):
    def test_xdg_runtime_dir(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            os.chmod(d, 0o700)
            env = dict(os.environ, XDG_RUNTIME_DIR=d)
            old = os.environ.get("XDG_RUNTIME_DIR")
            os.environ["XDG_RUNTIME_DIR"] = d
            try:
                ours = E.default_endpoint()
            finally:
                if old is None:
                    del os.environ["XDG_RUNTIME_DIR"]
                else:
                    os.environ["XDG_RUNTIME_DIR"] = old
            self.assertEqual(ours, f"ipc://{d}/prefixcache.sock")
            self.assertEqual(cli_endpoint(env), ours)

    def test_without_xdg(self) -> None:
        with tempfile.TemporaryDirectory() as home:
            env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
            env["HOME"] = home
            saved = dict(os.environ)
            os.environ.clear()
            os.environ.update(env)
            try:
                ours = E.default_endpoint()
            finally:
                os.environ.clear()
                os.environ.update(saved)
            self.assertEqual(cli_endpoint(env), ours)

    def test_rule(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            shared = os.path.join(d, "shared")
            os.mkdir(shared)
            os.chmod(shared, 0o777)       # writable by others: skipped
            link = os.path.join(d, "link")
            os.symlink(d, link)           # a symlink: skipped
            missing = os.path.join(d, "missing")
            made = os.path.join(d, "made")
            long = "/" + "x" * 100        # socket path too long: skipped
            self.assertIsNone(E.endpoint_from([(None, True), ("relative", True),
                                               (shared, False), (link, False),
                                               (missing, False), (long, True)]))
            self.assertFalse(os.path.exists(missing))
            self.assertEqual(E.endpoint_from([(shared, True), (made, True)]),
                             f"ipc://{made}/prefixcache.sock")
            self.assertEqual(os.stat(made).st_mode & 0o777, 0o700)


if __name__ == "__main__":
    unittest.main()
