"""The daemon's default endpoint, by the rule of rpc/endpoint.c.

ipc://DIR/prefixcache.sock in the first candidate directory that is a real
directory (not a symlink), owned by our euid and not writable by group or
others: $XDG_RUNTIME_DIR (never created), /run/prefixcache (euid 0),
/tmp/prefixcache-<euid>, $HOME/.prefixcache (created 0700 when missing).
The client creates a missing directory too, as libprefixcache does: once a
client has made it, nobody else can squat it (proto/PROTOCOL.md 2.2).
"""
from __future__ import annotations

import os
import pwd
import stat
from typing import Iterable, Optional, Sequence, Tuple

SOCK_NAME = "/prefixcache.sock"
SUN_PATH_MAX = 107  # bytes a Unix socket path may hold


def _private_dir(path: str, create: bool) -> bool:
    if create:
        try:
            os.mkdir(path, 0o700)
            # the umask may have taken bits away
            os.chmod(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def endpoint_from(dirs: Iterable[Tuple[Optional[str], bool]]) -> Optional[str]:
    """The first usable (path, create) candidate's endpoint, or None."""
    for d, create in dirs:
        if (not d or not d.startswith("/")
                or len(os.fsencode(d)) + len(SOCK_NAME) > SUN_PATH_MAX
                or not _private_dir(d, create)):
            continue
        return "ipc://" + d + SOCK_NAME
    return None


def _home() -> Optional[str]:
    h = os.environ.get("HOME")
    if h and h.startswith("/"):
        return h
    try:
        d = pwd.getpwuid(os.geteuid()).pw_dir
    except KeyError:
        return None
    return d if d and d.startswith("/") else None


def default_candidates() -> Sequence[Tuple[Optional[str], bool]]:
    euid = os.geteuid()
    h = _home()
    home = h + "/.prefixcache" if h else None
    if home and len(os.fsencode(home)) > SUN_PATH_MAX:
        home = None  # too long for a socket path anyway
    return (
        (os.environ.get("XDG_RUNTIME_DIR"), False),
        ("/run/prefixcache" if euid == 0 else None, True),
        (f"/tmp/prefixcache-{euid}", True),
        (home, True),
    )


def default_endpoint() -> str:
    """The endpoint prefixcached listens on when none is configured."""
    ep = endpoint_from(default_candidates())
    if ep is None:
        from . import protocol as P
        from .errors import PermissionDenied
        raise PermissionDenied(P.PC_E_PERM, "no private directory for the default "
                               "endpoint (see proto/PROTOCOL.md 2.2); give "
                               "the endpoint explicitly")
    return ep
