"""CURVE from Python (docs/SECURITY.md): a daemon on tcp with a key pair and
an allow-list; the client's curve_* keyword arguments get service with a
listed key, and nothing (a timeout) without one or with an unlisted one."""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
import unittest

import zmq

from common import daemon_binary
from prefixcache.client import Client, connect
from prefixcache.errors import InvalidArgument, PermissionDenied, Timeout


def _keys():
    pub, sec = zmq.curve_keypair()
    return pub.decode(), sec.decode()


class CurveTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        binary = daemon_binary()
        cls.dir = tempfile.mkdtemp(prefix="pc-py-curve-")
        cls.srv, cls.user, cls.stranger = _keys(), _keys(), _keys()
        key_file = os.path.join(cls.dir, "server.key")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, f"public-key = {cls.srv[0]}\nsecret-key = {cls.srv[1]}\n".encode())
        os.close(fd)
        allow = os.path.join(cls.dir, "allow")
        with open(allow, "w") as f:
            f.write(f"# one user, bound to its namespaces\n{cls.user[0]} user team-*\n")
        cls.log_path = os.path.join(cls.dir, "log")
        with open(cls.log_path, "wb") as log:
            cls.proc = subprocess.Popen(
                [binary, "--endpoint=tcp://127.0.0.1:*", f"--curve_key_file={key_file}",
                 f"--allow_list_file={allow}", f"--shm_name=/pc-py-curve-{os.getpid()}",
                 "--pool_blocks=64", "--layers=2", "--kv_heads=2", "--head_dim=16",
                 "--page_tokens=4"], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT)
        end = time.monotonic() + 10
        cls.endpoint = None
        while cls.endpoint is None and time.monotonic() < end:
            with open(cls.log_path) as f:
                m = re.search(r"listening on (tcp://\S+)", f.read())
            if m:
                cls.endpoint = m.group(1)
            elif cls.proc.poll() is not None:
                break
            time.sleep(0.02)
        if cls.endpoint is None:
            cls.proc.kill()
            raise RuntimeError("the daemon did not start:\n" + open(cls.log_path).read())

    @classmethod
    def tearDownClass(cls) -> None:
        cls.proc.terminate()
        cls.proc.wait(10)
        assert cls.proc.returncode == 0, open(cls.log_path).read()

    def test_listed_key_works(self) -> None:
        c = connect(self.endpoint, timeout_ms=3000, curve_server_key=self.srv[0],
                    curve_public_key=self.user[0], curve_secret_key=self.user[1])
        try:
            c.ping()
            r = c.lookup("team-a", list(range(1, 9)))
            self.assertEqual(r.tokens, 0)
            with self.assertRaises(PermissionDenied):
                c.lookup("other", list(range(1, 9)))
        finally:
            c.close()

    def test_no_key_and_unlisted_key_get_nothing(self) -> None:
        for kw in ({}, dict(curve_server_key=self.srv[0],
                            curve_public_key=self.stranger[0],
                            curve_secret_key=self.stranger[1])):
            c = Client(self.endpoint, timeout_ms=500, **kw)
            try:
                with self.assertRaises(Timeout):
                    c.ping()
            finally:
                c.close()

    def test_keys_all_or_none(self) -> None:
        with self.assertRaises(InvalidArgument):
            Client(self.endpoint, curve_server_key=self.srv[0])


if __name__ == "__main__":
    unittest.main()
