"""Exceptions: one class per PC_E_* code, all under PrefixCacheError.

Every exception carries the numeric code (`code`), its name (`name`,
"PC_E_NOSPACE") and the daemon's message (`message`; for client-side
failures, the client's own text), plus the request id when there was one.
"""
from __future__ import annotations

from typing import Dict, Optional, Type

from . import protocol as P


class PrefixCacheError(Exception):
    """A failed request: code < 0, its PC_E_* name, and the reason."""

    code: int = 0

    def __init__(self, code: int, message: str = "", request_id: int = 0) -> None:
        self.code = code
        self.name = P.error_name(code)
        self.message = message or P.error_message(code)
        self.request_id = request_id
        super().__init__(f"{self.name} ({code}): {self.message}")


# Codes whose meaning matches a built-in exception get it as a second base,
# so that `except ValueError` or `except TimeoutError` also catches them.
class InvalidArgument(PrefixCacheError, ValueError): pass
class OutOfMemory(PrefixCacheError): pass
class OutOfRange(PrefixCacheError, ValueError): pass
class NotLocked(PrefixCacheError): pass
class Corrupt(PrefixCacheError): pass
class NoSpace(PrefixCacheError): pass
class NoEntry(PrefixCacheError, KeyError):
    # KeyError's str() quotes its argument; keep ours readable.
    __str__ = PrefixCacheError.__str__
class BadMessage(PrefixCacheError): pass
class BadOp(PrefixCacheError): pass
class TooBig(PrefixCacheError, ValueError): pass
class LeaseError(PrefixCacheError): pass
class PermissionDenied(PrefixCacheError): pass
class WrongState(PrefixCacheError): pass
class VersionMismatch(PrefixCacheError): pass
class Timeout(PrefixCacheError, TimeoutError): pass
class IOFailure(PrefixCacheError): pass
class LimitReached(PrefixCacheError): pass
class Busy(PrefixCacheError): pass
class Stale(PrefixCacheError): pass


# Keyed by name: the protocol table gives the numbers (a test checks that
# every code but PC_E_OK has a class here).
_BY_NAME: Dict[str, Type[PrefixCacheError]] = {
    "PC_E_INVAL": InvalidArgument, "PC_E_NOMEM": OutOfMemory,
    "PC_E_RANGE": OutOfRange, "PC_E_NOTLOCKED": NotLocked,
    "PC_E_CORRUPT": Corrupt, "PC_E_NOSPACE": NoSpace, "PC_E_NOENT": NoEntry,
    "PC_E_BADMSG": BadMessage, "PC_E_BADOP": BadOp, "PC_E_TOOBIG": TooBig,
    "PC_E_LEASE": LeaseError, "PC_E_PERM": PermissionDenied,
    "PC_E_STATE": WrongState, "PC_E_VERSION": VersionMismatch,
    "PC_E_TIMEOUT": Timeout, "PC_E_IO": IOFailure, "PC_E_LIMIT": LimitReached,
    "PC_E_BUSY": Busy, "PC_E_STALE": Stale,
}
ERROR_CLASSES: Dict[int, Type[PrefixCacheError]] = {
    e.value: _BY_NAME[e.name] for e in P.ERRORS if e.name in _BY_NAME}


def error_for(code: int, message: str = "", request_id: int = 0) -> PrefixCacheError:
    """The exception for code (a newer daemon's unknown code: the base class)."""
    cls: Optional[Type[PrefixCacheError]] = ERROR_CLASSES.get(code)
    return (cls or PrefixCacheError)(code, message, request_id)
