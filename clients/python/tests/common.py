"""What the test modules share: the repository's root, and a private daemon
per module (the binary from $PREFIXCACHED, which ctest passes)."""
from __future__ import annotations

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.normpath(os.path.join(HERE, "..")))

from prefixcache.daemon import Daemon, find_daemon  # noqa: E402


def daemon_binary() -> str:
    """The prefixcached to run; unittest.SkipTest (with the reason) only
    when no binary can be found at all: ctest always passes one."""
    binary = find_daemon()
    if not binary:
        raise unittest.SkipTest("no prefixcached: run under ctest, or set "
                                "PREFIXCACHED=build/release/daemon/prefixcached")
    return binary


def start_daemon(**knobs) -> Daemon:
    """A daemon for a test module (daemon_binary's)."""
    return Daemon(daemon_binary(), **knobs)
