"""prefixcache: the Python client of prefixcached (a mirror of libprefixcache).

    import prefixcache as pc
    c = pc.connect()        # the default endpoint, hello, the host pool mapped
"""
from . import protocol
from .client import (DEFAULT_TIMEOUT_MS, WINDOW, Client, Lease, LeasedResult,
                     Reply, Result, Stats, connect)
from .endpoint import default_endpoint, endpoint_from
from .errors import (ERROR_CLASSES, BadMessage, BadOp, Busy, Corrupt, IOFailure,
                     InvalidArgument, LeaseError, LimitReached, NoEntry, NoSpace,
                     NotLocked, OutOfMemory, OutOfRange, PermissionDenied,
                     PrefixCacheError, Stale, Timeout, TooBig, VersionMismatch,
                     WrongState, error_for)
from .ids import from_wire, to_wire
from .pool import Pool

__all__ = [
    "protocol", "Client", "connect", "Lease", "LeasedResult", "Reply", "Result",
    "Stats", "Pool", "default_endpoint", "endpoint_from", "to_wire", "from_wire",
    "DEFAULT_TIMEOUT_MS", "WINDOW", "PrefixCacheError", "ERROR_CLASSES",
    "error_for", "InvalidArgument", "OutOfMemory", "OutOfRange", "NotLocked",
    "Corrupt", "NoSpace", "NoEntry", "BadMessage", "BadOp", "TooBig",
    "LeaseError", "PermissionDenied", "WrongState", "VersionMismatch", "Timeout",
    "IOFailure", "LimitReached", "Busy", "Stale",
]
