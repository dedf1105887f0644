"""prefixcache: the Python client of prefixcached (a mirror of libprefixcache).

    import prefixcache
    c = prefixcache.connect()        # default endpoint, hello, pool mapped
"""
from . import protocol
from .client import (DEFAULT_TIMEOUT_MS, WINDOW, Client, Lease, LeasedResult,
                     Reply, Result, Stats, connect)
from .endpoint import default_endpoint, endpoint_from
from .errors import *  # noqa: F401,F403  (the PC_E_* exception classes)
from .errors import ERROR_CLASSES, PrefixCacheError, error_for
from .ids import from_wire, to_wire
from .pool import Pool

__all__ = ["protocol", "Client", "connect", "Lease", "LeasedResult", "Reply",
           "Result", "Stats", "Pool", "default_endpoint", "endpoint_from",
           "PrefixCacheError", "ERROR_CLASSES", "error_for", "to_wire",
           "from_wire", "DEFAULT_TIMEOUT_MS", "WINDOW"] + [
               c.__name__ for c in sorted(set(ERROR_CLASSES.values()), key=lambda c: c.__name__)]
