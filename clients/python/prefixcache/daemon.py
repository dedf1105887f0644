"""A private prefixcached for tests, examples and benchmarks.

    with Daemon(binary, layers=2, kv_heads=2, head_dim=16, dtype="fp32") as d:
        c = prefixcache.connect(d.endpoint)

Its socket lives in a fresh 0700 temporary directory, its pool has a name
of its own, and it dies with this process (PR_SET_PDEATHSIG).  stop() sends
SIGTERM and checks what the C harness (tests/harness/daemon.c) checks: exit
status 0 and no sanitizer report in its log; the directory and the pool
object are removed whatever happened.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any, Dict, List, Optional

import zmq

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
_PR_SET_PDEATHSIG = 1
_seq = 0


def find_daemon() -> Optional[str]:
    """$PREFIXCACHED, else the release build tree's, else None."""
    p = os.environ.get("PREFIXCACHED")
    if p:
        return p
    here = os.path.dirname(os.path.abspath(__file__))
    guess = os.path.normpath(os.path.join(here, "../../../build/release/daemon/prefixcached"))
    return guess if os.access(guess, os.X_OK) else None


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


class DaemonError(RuntimeError):
    pass


class Daemon:
    def __init__(self, binary: Optional[str] = None, start: bool = True,
                 **knobs: Any) -> None:
        """knobs: prefixcached options without their dashes (layers=2,
        pool_blocks=64, ...); these defaults are a small fp16 pool."""
        global _seq
        _seq += 1
        self.binary = binary or find_daemon()
        if not self.binary:
            raise DaemonError("no prefixcached: set PREFIXCACHED to its path")
        self.dir = tempfile.mkdtemp(prefix="pc-py-")  # 0700
        self.endpoint = f"ipc://{self.dir}/d.sock"
        self.shm_name = f"/pc-py-{os.getpid()}-{_seq}"
        self.log_path = os.path.join(self.dir, "daemon.log")
        self.knobs: Dict[str, Any] = dict(
            endpoint=self.endpoint, shm_name=self.shm_name, pool_backend="host",
            pool_blocks=64, layers=2, kv_heads=2, head_dim=16, dtype="fp16",
            page_tokens=4, log_level="info")
        self.knobs.update(knobs)
        self.proc: Optional[subprocess.Popen] = None
        if start:
            self.start()

    def argv(self) -> List[str]:
        return [self.binary] + [f"--{k}={v}" for k, v in self.knobs.items()]  # type: ignore[list-item]

    def start(self, timeout_s: float = 10.0) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=_die_with_parent, close_fds=True)
        end = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise DaemonError(f"prefixcached exited at start "
                                  f"({self.proc.returncode}):\n{self.log()}")
            if os.path.exists(self.endpoint[len("ipc://"):]) and self._ping():
                return
            if time.monotonic() > end:
                self.kill()
                raise DaemonError(f"prefixcached did not answer within "
                                  f"{timeout_s} s:\n{self.log()}")
            time.sleep(0.02)

    def _ping(self) -> bool:
        # a raw ping, so that this module does not depend on the client
        import msgpack
        ctx = zmq.Context()
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        try:
            s.connect(self.endpoint)
            s.send_multipart([b"", msgpack.packb({"op": "ping", "id": 1})])
            return bool(s.poll(200, zmq.POLLIN))
        finally:
            s.close(0)
            ctx.term()

    def log(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    @property
    def shm_path(self) -> str:
        return "/dev/shm" + self.shm_name

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM; DaemonError when it does not exit cleanly (status 0, no
        sanitizer report), with its log.  Always cleans up."""
        problem = None
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self.kill()
                    problem = f"did not exit within {timeout_s} s of SIGTERM"
            if problem is None and self.proc is not None and self.proc.returncode != 0:
                problem = f"exit status {self.proc.returncode}"
            text = self.log()
            if problem is None and any(m in text for m in SANITIZER_MARKS):
                problem = "its log has a sanitizer report"
            if problem is not None:
                # printed so that ctest's FAIL_REGULAR_EXPRESSION sees a
                # sanitizer report, too
                raise DaemonError(f"prefixcached: {problem}\n---- log ----\n{text}---- end ----")
        finally:
            self.kill()
            self.proc = None
            try:
                os.unlink(self.shm_path)
            except FileNotFoundError:
                pass
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Daemon":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.stop()
        else:
            try:
                self.stop()
            except DaemonError as e:
                print(e)  # do not mask the first failure, but show this one
