"""The synchronous client: one ZeroMQ DEALER socket to one daemon, the
Python mirror of libprefixcache (rpc/client.h).

Every message is encoded and decoded from the rows of protocol.OPS, so an op
added there is usable at once through Client.call() (and a method here is a
few lines of convenience).  Not thread-safe: one Client per thread, as in C.

    with Client() as c:                      # the default endpoint
        h = c.hello()                        # maps the host pool: c.pool
        with c.lookup("m", prompt, pin=True, alloc=True) as r:
            ... read r.blocks' KV, write the new pages into r.alloc_blocks ...
            c.insert("m", prompt, np.concatenate([r.blocks, r.alloc_blocks]),
                     lease=r.lease, release=True)
        # leaving the block releases the lease unless the insert ended it
"""
from __future__ import annotations

import operator
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import msgpack
import numpy as np
import zmq

from . import protocol as P
from .endpoint import default_endpoint
from .errors import LeaseError, PrefixCacheError, error_for
from .ids import FAST_DTYPES, check_fast, checked, from_wire, to_wire
from .pool import Pool

DEFAULT_TIMEOUT_MS = 5000
# Pipelined requests on the wire at most: ROUTER silently drops replies to a
# peer whose queue (1000 by default) is full, so past this many, replies are
# read into the stash before more requests go out (as libprefixcache does).
WINDOW = 256

Ns = Union[str, bytes, bytearray, memoryview]

# Plain ints: pyzmq's enum flags cost an Enum construction per use.
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE) | _NOBLOCK
_RCVMORE = int(zmq.RCVMORE)
# The backend's send, called directly: pyzmq's Socket.send is a Python
# wrapper (routing_id, group: RADIO/SERVER only) around it, a frame and a
# keyword call per frame on every request.
_zsend = zmq.backend.Socket.send


# ---- results ---------------------------------------------------------------------

class Result:
    """A successful reply: one attribute per row of the op's reply table
    (absent optional rows are None; id lists are numpy uint32 arrays).
    Keys the table does not know are ignored: newer minor versions add some."""

    def __init__(self, op: str, request_id: int, fields: Dict[str, Any]) -> None:
        self.op = op
        self.request_id = request_id
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items()
                         if k not in ("op", "request_id", "_client"))
        return f"<{self.op} #{self.request_id}: {body}>"


class Lease:
    """A lease the daemon holds for us (pins and allocated blocks).

    A context manager: leaving the `with` block releases it, also on an
    exception, unless it has ended already (released, or an insert with
    release=True).  The id is a bearer token (PROTOCOL.md 6): repr() shows
    only its last digits so that it stays out of logs."""

    def __init__(self, client: "Client", lease_id: int) -> None:
        self.client = client
        self.id = lease_id
        self.ended = False

    def __index__(self) -> int:
        return self.id

    __int__ = __index__

    def __repr__(self) -> str:
        state = "ended" if self.ended else "live"
        return f"<Lease ...{self.id & 0xFFFF:04x} {state}>"

    def renew(self, timeout_ms: Optional[int] = None) -> None:
        """Push the deadline back by lease_ttl_ms (an alloc of 0 blocks)."""
        self.client.alloc(0, lease=self, timeout_ms=timeout_ms)

    def release(self, timeout_ms: Optional[int] = None) -> None:
        if not self.ended:
            self.client.release(self, timeout_ms=timeout_ms)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.ended:
            return
        try:
            self.release()
        except LeaseError:
            self.ended = True  # expired or the daemon restarted: gone anyway
        except PrefixCacheError:
            if exc_type is None:
                raise
            # an exception is already on its way out: do not mask it (the
            # lease then ends by its TTL)


class LeasedResult(Result):
    """A lookup or alloc reply: `lease` is a Lease (None when the daemon
    created none); using the result as a context manager releases it."""

    lease: Optional[Lease]

    def __enter__(self) -> "LeasedResult":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.lease is not None:
            self.lease.__exit__(*exc)


class Reply:
    """A pipelined request's reply (Client.recv): id, op, status, and the
    result or the error.  result() returns the one or raises the other."""

    def __init__(self, request_id: int, op: Optional[str], status: int,
                 value: Optional[Result], error: Optional[PrefixCacheError]):
        self.id, self.op, self.status = request_id, op, status
        self.value, self.error = value, error

    @property
    def ok(self) -> bool:
        return self.error is None

    def result(self) -> Result:
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value

    def __repr__(self) -> str:
        return f"<Reply #{self.id} {self.op} status={self.status}>"


class Stats(dict):
    """stats: counter name -> value; `check` is the self-check's code
    (0 or PC_E_CORRUPT) when it was asked for, else None."""

    check: Optional[int] = None


# ---- the client -------------------------------------------------------------------

class Client:
    def __init__(self, endpoint: Optional[str] = None,
                 timeout_ms: int = DEFAULT_TIMEOUT_MS, *,
                 curve_server_key: Optional[str] = None,
                 curve_public_key: Optional[str] = None,
                 curve_secret_key: Optional[str] = None) -> None:
        """Connect (lazily, as ZeroMQ does) to endpoint (default: the
        daemon's default, endpoint.default_endpoint()).  Every call waits
        at most timeout_ms unless it is given its own.  curve_*: the
        daemon's public key and our key pair (Z85 text, as in the key files
        of docs/SECURITY.md), all three or none: a daemon that does not
        know our key never answers (calls time out)."""
        self.endpoint = endpoint or default_endpoint()
        self.timeout_ms = timeout_ms if timeout_ms > 0 else DEFAULT_TIMEOUT_MS
        self._next_id = 1
        self._packer = msgpack.Packer(use_bin_type=True)
        self._ns_packed: Dict[Any, bytes] = {}  # namespace -> its packed row
        self._req_cap = -1  # the lookup request buffer (_enc_lookup), made on first use
        self._rcvtimeo = -1
        self._pending: Dict[int, str] = {}           # pipelined id -> op
        self._stash: List[Tuple[int, Dict[str, Any]]] = []  # their replies
        self.hello_info: Optional[Result] = None
        self.pool: Optional[Pool] = None
        # the daemon whose pool self.pool maps (protocol 1.3): named in
        # lookup, alloc and insert, so that a restarted daemon refuses them
        # (Stale) instead of handing out ids of a pool this client lacks
        self._instance: Optional[int] = None
        self.page_tokens = 0
        self.max_msg = 0
        # A context per client, as libprefixcache does: its I/O thread ends
        # with the client, and clients in one process share nothing.
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        # LINGER 0: closing never waits for undelivered requests.
        # IMMEDIATE 1: a request is queued only on a live connection, so a
        #   daemon started later never executes a request out of context.
        # RCVHWM 0: keeps ROUTER's queue to us drained for deep pipelines.
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.IMMEDIATE, 1)
        self._sock.setsockopt(zmq.RCVHWM, 0)
        curve = (curve_server_key, curve_public_key, curve_secret_key)
        if any(k is not None for k in curve):
            if not all(isinstance(k, str) and len(k) == 40 for k in curve):
                self.close()
                raise error_for(P.PC_E_INVAL, "curve_server_key, curve_public_key "
                                "and curve_secret_key: all three, 40 Z85 characters")
            self._sock.curve_serverkey = curve_server_key.encode()
            self._sock.curve_publickey = curve_public_key.encode()
            self._sock.curve_secretkey = curve_secret_key.encode()
        try:
            self._sock.connect(self.endpoint)
        except zmq.ZMQError as e:
            self.close()
            raise error_for(P.PC_E_INVAL, f"bad endpoint {self.endpoint!r}: {e}") from None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        self._instance = None
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None  # type: ignore[assignment]
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None  # type: ignore[assignment]

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # ---- encoding and decoding, from the tables ------------------------------------

    def _encode(self, op: str, rid: int, fields: Dict[str, Any]) -> bytes:
        """The request map, rows in table order (as the C client sends
        them); None means absent.  Consumes `fields` (the caller's kwargs)."""
        msg: Dict[str, Any] = {P.KEY_OP: op, P.KEY_ID: rid}
        rows = _REQUEST_ROWS.get(op)
        if rows is None:  # an op this client has no table for: sent as given
            msg.update(fields)
            return self._packer.pack(msg)
        for key, required, enc in rows:
            v = fields.pop(key, None)
            if v is not None:
                msg[key] = enc(v, key, op)
            elif required:
                raise TypeError(f"{op}: missing field '{key}'")
        if fields and any(v is not None for v in fields.values()):
            raise TypeError(f"{op}: unknown field(s) {sorted(fields)}")
        return self._packer.pack(msg)

    def _rows(self, op: str, rid: int, m: Dict[str, Any]) -> Dict[str, Any]:
        rows = _REPLY_ROWS.get(op)
        if rows is None:
            return {k: v for k, v in m.items() if k not in (P.KEY_ID, P.KEY_STATUS)}
        out: Dict[str, Any] = {}
        for key, required, ok, dec in rows:
            v = m.get(key)
            if v is None:
                if required:
                    raise error_for(P.PC_E_BADMSG, f"malformed {op} reply: "
                                    f"no '{key}'", rid)
                out[key] = None
            elif not ok(v):
                raise error_for(P.PC_E_BADMSG, f"malformed {op} reply: '{key}' "
                                "has the wrong type", rid)
            else:
                out[key] = dec(v, key) if dec else v
        return out

    def _result(self, op: str, rid: int, m: Dict[str, Any]) -> Result:
        """The reply map m (status checked already) as a Result."""
        rows = self._rows(op, rid, m)
        if op in ("lookup", "alloc"):
            lease = rows.get("lease")
            rows["lease"] = Lease(self, lease) if lease else None
            return LeasedResult(op, rid, rows)
        return Result(op, rid, rows)

    @staticmethod
    def _head(payload: bytes) -> Tuple[int, int, Dict[str, Any]]:
        try:
            m = msgpack.unpackb(payload, raw=False)
        except Exception as e:
            raise error_for(P.PC_E_BADMSG, f"malformed reply: {e}") from None
        rid, status = (m.get(P.KEY_ID, 0), m.get(P.KEY_STATUS)) if isinstance(m, dict) else (None, None)
        if not isinstance(rid, int) or not isinstance(status, int):
            raise error_for(P.PC_E_BADMSG, "malformed reply: no map with id and status")
        return rid, status, m

    @staticmethod
    def _error(status: int, m: Dict[str, Any], rid: int) -> PrefixCacheError:
        text = m.get(P.KEY_ERROR)
        return error_for(status, text if isinstance(text, str) else "", rid)

    # ---- transport ------------------------------------------------------------------

    def _deadline(self, timeout_ms: Optional[int]) -> Tuple[float, int]:
        t = timeout_ms if timeout_ms and timeout_ms > 0 else self.timeout_ms
        return time.monotonic() + t / 1000.0, t

    def _wait(self, event: int, deadline: float) -> bool:
        left = max(0, int((deadline - time.monotonic()) * 1000 + 0.999))
        return bool(self._sock.poll(left, event))

    def _timeout(self, what: str, t: int) -> PrefixCacheError:
        return error_for(P.PC_E_TIMEOUT, f"{what} {self.endpoint} within {t} ms "
                         "(is prefixcached running there?)")

    def _send(self, payload: Union[bytes, memoryview], deadline: float, t: int) -> None:
        if self.max_msg and len(payload) > self.max_msg:
            # A daemon refusing it with ZMQ_MAXMSGSIZE would drop the
            # connection instead of answering: refuse it here.
            raise error_for(P.PC_E_TOOBIG, f"request of {len(payload)} bytes "
                            f"exceeds the daemon's max_msg {self.max_msg}")
        # Try at once (the common case: connected, room in the queue), and
        # wait for POLLOUT only when that fails: with IMMEDIATE, while the
        # daemon is down.  Once the first frame is accepted, ZeroMQ takes
        # the whole message.
        while True:
            try:
                # [empty delimiter, payload]: looks like REQ's traffic
                _zsend(self._sock, b"", _SNDMORE_NOBLOCK)
                _zsend(self._sock, payload, _NOBLOCK)
                return
            except zmq.Again:
                if not self._wait(zmq.POLLOUT, deadline):
                    raise self._timeout("could not reach", t) from None

    def _recv(self, deadline: float, t: int) -> bytes:
        # A blocking recv bounded by RCVTIMEO rather than poll + recv: the
        # same wait, without building a Poller per call (about 20 us a
        # round trip in Python).  The option is set only when it changes.
        left = max(1, int((deadline - time.monotonic()) * 1000 + 0.999))
        if left != self._rcvtimeo:
            self._sock.setsockopt(zmq.RCVTIMEO, left)
            self._rcvtimeo = left
        try:
            frame = self._sock.recv()
            # All frames of a message arrive together: no wait after the first.
            while self._sock.getsockopt(_RCVMORE):
                frame = self._sock.recv(_NOBLOCK)
        except zmq.Again:
            raise self._timeout("no reply from", t) from None
        return frame  # the last frame is the payload

    # ---- blocking calls ---------------------------------------------------------------

    def call(self, op: str, timeout_ms: Optional[int] = None, **fields: Any) -> Result:
        """Send one request and wait for its reply; the generic form every
        method below uses.  Raises the PC_E_* exception of a failed request,
        Timeout (a TimeoutError) when no reply comes in time."""
        rid = self._next_id
        self._next_id += 1
        payload = self._encode(op, rid, fields)
        return self._result(op, rid, self._rpc(rid, payload, timeout_ms))

    def _rpc(self, rid: int, payload: Union[bytes, memoryview],
             timeout_ms: Optional[int]) -> Dict[str, Any]:
        """Send one request, wait for its reply: the reply map, status 0
        (a failed request raises its PrefixCacheError)."""
        deadline, t = self._deadline(timeout_ms)
        self._send(payload, deadline, t)
        while True:
            got, status, m = self._head(self._recv(deadline, t))
            # id 0 with an error: the daemon could not read our id (a message
            # it refused before decoding); ours always carry one, so it
            # answers the request in flight.
            if got == rid or (got == 0 and status < 0):
                if status < 0:
                    raise self._error(status, m, rid)
                return m
            if got in self._pending:
                self._stash.append((got, m))  # a pipelined request's reply
            # else: the late reply of a call that timed out: dropped

    def hello(self, map_pool: bool = True, timeout_ms: Optional[int] = None) -> Result:
        """Version check and layout; with map_pool, a host pool is mapped
        (self.pool; remapped on every hello, the old mapping dropped).  A
        cuda pool is not mapped by this client (self.pool stays None)."""
        h = self.call("hello", timeout_ms, version=P.PROTO_MAJOR)
        if h.version != P.PROTO_MAJOR:
            # it accepted our major but speaks another: trust no field
            raise error_for(P.PC_E_VERSION, f"daemon speaks protocol "
                            f"{h.version}.{h.version_minor}, this client "
                            f"{P.PROTO_MAJOR}.{P.PROTO_MINOR}")
        if not h.page_tokens:
            raise error_for(P.PC_E_BADMSG, "hello reply with page_tokens 0")
        self.hello_info, self.page_tokens, self.max_msg = h, h.page_tokens, h.max_msg
        if map_pool:
            if self.pool is not None:
                self.pool.close()
                self.pool = None
            self._instance = None
            if h.backend == "host":
                if not h.shm_name or not h.shm_bytes:
                    raise error_for(P.PC_E_BADMSG, "host pool without shm_name/shm_bytes")
                self.pool = Pool(h)
                self._instance = h.instance or None
        return h

    def lookup(self, ns: Ns, tokens: Any, pin: bool = False, alloc: bool = False,
               lease: Union[Lease, int, None] = None,
               timeout_ms: Optional[int] = None, promote: bool = False,
               no_cache: bool = False, no_count: bool = False) -> LeasedResult:
        """Longest cached prefix: .tokens matched, .blocks (uint32), .lease
        (a Lease, or None), and with alloc .alloc_status (0 or a negative
        code: the lookup still succeeded), .alloc_blocks, .alloc_error.
        With a second tier: .tier2_tokens; promote (implies pin) first brings
        those back (the reply waits for the copy: give it a timeout), and
        .promoted_tokens says how many came.  no_cache: refresh nothing (a
        one-off prompt); no_count: leave the counters alone (warm-up)."""
        # The hot path: the same request, checks and result as
        # call("lookup", ...), without the generic table walk (see
        # _enc_lookup and _lookup_result; tests check both against it).
        if not _LOOKUP_FAST:
            return self._keep_lease(self.call(  # type: ignore[return-value]
                "lookup", timeout_ms, ns=ns, tokens=tokens, pin=pin or None,
                alloc=alloc or None, lease=lease or None, promote=promote or None,
                no_cache=no_cache or None, no_count=no_count or None,
                instance=self._instance), lease)
        rid = self._next_id
        self._next_id = rid + 1
        payload = self._enc_lookup(rid, ns, tokens, pin, alloc, lease, promote,
                                   no_cache, no_count)
        r = self._lookup_result(rid, self._rpc(rid, payload, timeout_ms))
        if lease is not None:
            self._keep_lease(r, lease)
        return r

    def _enc_lookup(self, rid: int, ns: Ns, tokens: Any, pin: bool, alloc: bool,
                    lease: Union[Lease, int, None], promote: bool, no_cache: bool,
                    no_count: bool) -> memoryview:
        """The lookup request, byte for byte what _encode packs (the same
        keys in table order), written into the client's request buffer:
        the tokens go from the caller's array to the wire's uint32 in one
        numpy assignment, with no intermediate copy, and the head is
        written right before them.  A view of the buffer, valid until the
        next request (ZeroMQ copies it on send)."""
        nsb = self._ns_packed.get(ns) if type(ns) is str or type(ns) is bytes else None
        if nsb is None:
            nsb = b"\xa2ns" + self._packer.pack(_enc_bytes(ns, "ns", "lookup"))
            if type(ns) is str or type(ns) is bytes:
                if len(self._ns_packed) >= 64:
                    self._ns_packed.clear()
                self._ns_packed[ns] = nsb
        if type(tokens) is np.ndarray and tokens.ndim == 1 and tokens.dtype in FAST_DTYPES:
            # A tokenizer's array: cast into the buffer first, then check
            # the input, which the cast has just brought into the cache
            # (checking first reads it cold, about 2 us more at 4,096
            # int64).  On OutOfRange the buffer holds garbage nobody sends.
            n4 = 4 * tokens.shape[0]
            if n4 > self._req_cap:
                self._grow_request_buffer(n4)
            self._req_tokens[:tokens.shape[0]] = tokens  # the one conversion
            check_fast(tokens, "tokens", "lookup")
        else:
            a = checked(tokens, "tokens", "lookup")
            n4 = len(a) if type(a) is bytes else 4 * a.shape[0]
            if n4 > self._req_cap:
                self._grow_request_buffer(n4)
            if type(a) is bytes:
                self._req_buf[_TOK_OFF:_TOK_OFF + n4] = a
            else:
                self._req_tokens[:a.shape[0]] = a
        pairs = 4
        tail = b""
        instance = self._instance
        if pin or alloc or lease or promote or no_cache or no_count or instance:
            parts = []
            for key, on in ((b"\xa3pin", pin), (b"\xa5alloc", alloc)):
                if on:
                    parts.append(key + b"\xc3")
            if lease:
                parts.append(b"\xa5lease" + self._packer.pack(operator.index(lease)))
            for key, on in ((b"\xa7promote", promote), (b"\xa8no_cache", no_cache),
                            (b"\xa8no_count", no_count)):
                if on:
                    parts.append(key + b"\xc3")
            if instance:
                parts.append(b"\xa8instance" + self._packer.pack(instance))
            pairs += len(parts)
            tail = b"".join(parts)
        if n4 < 0x100:
            binh = b"\xc4" + n4.to_bytes(1, "big")
        elif n4 < 0x10000:
            binh = b"\xc5" + n4.to_bytes(2, "big")
        else:
            binh = b"\xc6" + n4.to_bytes(4, "big")
        head = b"".join((_MAP_HEADS[pairs], b"\xa2op\xa6lookup\xa2id",
                         self._packer.pack(rid), nsb, b"\xa6tokens", binh))
        start = _TOK_OFF - len(head)
        if start < 0:  # a namespace too long for the room (the daemon refuses it)
            return memoryview(head + bytes(self._req_buf[_TOK_OFF:_TOK_OFF + n4]) + tail)
        buf = self._req_buf
        buf[start:_TOK_OFF] = head
        end = _TOK_OFF + n4
        if tail:
            buf[end:end + len(tail)] = tail
            end += len(tail)
        return self._req_view[start:end]

    def _grow_request_buffer(self, n4: int) -> None:
        # a new buffer (the old one has views exported): room for the head,
        # the tokens and the optional rows after them
        cap = max(n4, 2 * self._req_cap, 64 * 1024)
        self._req_buf = bytearray(_TOK_OFF + cap + 256)
        self._req_view = memoryview(self._req_buf)
        self._req_tokens = np.frombuffer(self._req_buf, dtype=_LE_U32,
                                         offset=_TOK_OFF, count=cap // 4)
        self._req_cap = cap

    def _lookup_result(self, rid: int, m: Dict[str, Any]) -> "LeasedResult":
        """_result("lookup", ...) for the usual reply: exactly id, status
        and the required rows (tokens, blocks, lease), each of its type.
        Anything else (optional rows, unknown keys, a malformed reply) takes
        the table-driven path, with its checks and messages."""
        if len(m) == 5 and _LOOKUP_FAST:
            tokens, blocks, lease = m.get("tokens"), m.get("blocks"), m.get("lease")
            if (type(tokens) is int and tokens >= 0 and type(blocks) is bytes
                    and type(lease) is int and lease >= 0):
                r = LeasedResult.__new__(LeasedResult)
                r.__dict__ = {"op": "lookup", "request_id": rid, "tokens": tokens,
                              "blocks": from_wire(blocks, "blocks"),
                              "lease": Lease(self, lease) if lease else None,
                              **_LOOKUP_ABSENT}
                return r
        return self._result("lookup", rid, m)  # type: ignore[return-value]

    def alloc(self, n: int, lease: Union[Lease, int, None] = None,
              timeout_ms: Optional[int] = None) -> LeasedResult:
        """n blocks under lease (None: a new one): .lease, .blocks."""
        r = self.call("alloc", timeout_ms, n=n, lease=lease or None,
                      instance=self._instance)
        return self._keep_lease(r, lease)  # type: ignore[return-value]

    @staticmethod
    def _keep_lease(r: Result, lease: Union[Lease, int, None]) -> Result:
        # The daemon answers with the lease we named: hand back the caller's
        # own Lease object, so that its state (ended) is shared.
        if isinstance(lease, Lease) and r.lease is not None and r.lease.id == lease.id:
            r.lease = lease
        return r

    def insert(self, ns: Ns, tokens: Any, blocks: Any,
               lease: Union[Lease, int, None] = None, release: bool = False,
               pin: bool = False, timeout_ms: Optional[int] = None,
               no_cache: bool = False) -> Result:
        """Adopt written blocks, one per full page: .cached_tokens,
        .inserted_pages, .freed_blocks, .canon (uint32).  With release the
        lease ends (a Lease object is marked ended).  no_cache: cache
        nothing (a private prompt); the reply says what was cached already."""
        r = self.call("insert", timeout_ms, ns=ns, tokens=tokens, blocks=blocks,
                      lease=lease or None, release=release or None, pin=pin or None,
                      no_cache=no_cache or None, instance=self._instance)
        if release and isinstance(lease, Lease):
            lease.ended = True
        return r

    def release(self, lease: Union[Lease, int], timeout_ms: Optional[int] = None) -> None:
        try:
            self.call("release", timeout_ms, lease=lease)
        except LeaseError:
            if isinstance(lease, Lease):
                lease.ended = True  # unknown to the daemon: nothing to end
            raise
        if isinstance(lease, Lease):
            lease.ended = True

    def ping(self, timeout_ms: Optional[int] = None) -> float:
        """Round trip, in seconds."""
        t0 = time.perf_counter()
        self.call("ping", timeout_ms)
        return time.perf_counter() - t0

    def stats(self, check: bool = False, timeout_ms: Optional[int] = None) -> Stats:
        r = self.call("stats", timeout_ms, check=check or None)
        s = Stats((k, v) for k, v in r.stats.items()
                  # counters are uints; a newer daemon's richer stat is skipped
                  if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool))
        s.check = r.check
        return s

    def flush(self, ns: Optional[Ns] = None, timeout_ms: Optional[int] = None) -> int:
        """Evict every unpinned page (of ns, or of every namespace)."""
        return self.call("flush", timeout_ms, ns=ns).evicted

    def config_get(self, *names: str, timeout_ms: Optional[int] = None) -> Dict[str, Any]:
        """Knobs by name (none: every knob), with their native values."""
        return dict(self.call("config", timeout_ms, get=list(names) if names else None).config)

    def config_set(self, knobs: Optional[Mapping[str, Any]] = None,
                   timeout_ms: Optional[int] = None, **kw: Any) -> Dict[str, Any]:
        """Change reloadable knobs, all or nothing; returns their new values.
        Values: str (parsed by the daemon as the config file is), int, bool."""
        items = dict(knobs or {}, **kw)
        if not items:
            raise TypeError("config_set: no knob given")
        return dict(self.call("config", timeout_ms, set=items).config)

    # ---- pipelined form ---------------------------------------------------------------

    def send(self, op: str, timeout_ms: Optional[int] = None, **fields: Any) -> int:
        """Queue a request without waiting for its reply; returns its id.
        At most WINDOW stay unread on the wire: beyond that, replies are
        read into a local queue first (within the timeout)."""
        rid = self._next_id
        self._next_id += 1
        payload = self._encode(op, rid, fields)
        deadline, t = self._deadline(timeout_ms)
        while len(self._pending) - len(self._stash) >= WINDOW:
            self._pull(deadline, t)
        self._pending[rid] = op
        try:
            self._send(payload, deadline, t)
        except BaseException:
            del self._pending[rid]
            raise
        return rid

    def send_lookup(self, ns: Ns, tokens: Any, pin: bool = False, alloc: bool = False,
                    lease: Union[Lease, int, None] = None,
                    timeout_ms: Optional[int] = None) -> int:
        return self.send("lookup", timeout_ms, ns=ns, tokens=tokens, pin=pin or None,
                         alloc=alloc or None, lease=lease or None,
                         instance=self._instance)

    def send_insert(self, ns: Ns, tokens: Any, blocks: Any,
                    lease: Union[Lease, int, None] = None, release: bool = False,
                    pin: bool = False, timeout_ms: Optional[int] = None) -> int:
        return self.send("insert", timeout_ms, ns=ns, tokens=tokens, blocks=blocks,
                         lease=lease or None, release=release or None, pin=pin or None,
                         instance=self._instance)

    @property
    def in_flight(self) -> int:
        """Pipelined requests whose replies recv() has not returned yet."""
        return len(self._pending)

    def _pull(self, deadline: float, t: int) -> None:
        """One message off the socket into the stash, or dropped (late)."""
        got, status, m = self._head(self._recv(deadline, t))
        if got in self._pending or (got == 0 and status < 0):
            self._stash.append((got, m))

    def recv(self, request_id: Optional[int] = None,
             timeout_ms: Optional[int] = None) -> Reply:
        """The next pipelined reply in arrival order, or the reply of
        request_id.  Timeout when none comes in time.  A reply with id 0
        (a request the daemon refused before reading its id) is returned
        as is: it cannot be matched."""
        if request_id is not None and request_id not in self._pending:
            raise KeyError(f"request {request_id} is not in flight")
        if not self._pending and not self._stash:
            raise error_for(P.PC_E_TIMEOUT, "no pipelined request in flight")
        deadline, t = self._deadline(timeout_ms)
        while True:
            for i, (got, _) in enumerate(self._stash):
                if request_id is None or got == request_id or got == 0:
                    return self._reply(*self._stash.pop(i))
            self._pull(deadline, t)

    def _reply(self, got: int, m: Dict[str, Any]) -> Reply:
        status = m.get(P.KEY_STATUS, 0)
        op = self._pending.pop(got, None) if got else None
        if status < 0:
            return Reply(got, op, status, None, self._error(status, m, got))
        assert op is not None
        try:
            return Reply(got, op, status, self._result(op, got, m), None)
        except PrefixCacheError as e:
            return Reply(got, op, e.code, None, e)


# ---- values: one encoder and one check per wire type, tables per op ----------

def _enc_bytes(v: Any, key: str, op: str) -> Any:
    # str goes as str (readable dumps), bytes as bin: only the bytes count
    # on the daemon's side
    if isinstance(v, (str, bytes)):
        return v
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    raise TypeError(f"{op}.{key}: expected str or bytes, got {type(v).__name__}")


def _enc_map(v: Any, key: str, op: str) -> Dict[str, Any]:
    return {str(k): (x if isinstance(x, (str, int, bool)) else str(x))
            for k, x in v.items()}


_ENCODE = {
    P.IDS: to_wire,
    P.BYTES: _enc_bytes,
    P.BOOL: lambda v, key, op: bool(v),
    P.UINT: lambda v, key, op: operator.index(v),  # ints and Leases, not floats
    P.INT: lambda v, key, op: operator.index(v),
    P.NAMES: lambda v, key, op: [str(x) for x in v],
    P.MAP: _enc_map,
    P.STR: lambda v, key, op: str(v),
    P.BIN: lambda v, key, op: bytes(v),
}

_CHECK = {
    P.UINT: lambda x: type(x) is int and x >= 0,
    P.INT: lambda x: type(x) is int,
    P.BOOL: lambda x: type(x) is bool,
    P.STR: lambda x: type(x) is str,
    P.BYTES: lambda x: isinstance(x, (str, bytes)),
    P.IDS: lambda x: type(x) is bytes,
    P.BIN: lambda x: type(x) is bytes,
    P.NAMES: lambda x: type(x) is list,
    P.MAP: lambda x: type(x) is dict,
}

# Built once from protocol.OPS: (key, required, encoder) per request row and
# (key, required, check, decoder) per reply row.
_REQUEST_ROWS = {op.name: tuple((f.key, f.required, _ENCODE[f.type]) for f in op.request)
                 for op in P.OPS}
_REPLY_ROWS = {op.name: tuple((f.key, f.required, _CHECK[f.type],
                               from_wire if f.type == P.IDS else None) for f in op.reply)
               for op in P.OPS}

# Client.lookup's fast paths, valid while lookup's rows are what they were
# written for (else every lookup takes the table-driven path):
_LOOKUP = P.OPS_BY_NAME["lookup"]
_LOOKUP_FAST = (
    [(f.key, f.type) for f in _LOOKUP.reply if f.required]
    == [("tokens", P.UINT), ("blocks", P.IDS), ("lease", P.UINT)]
    and [(f.key, f.type, f.required) for f in _LOOKUP.request]
    == [("ns", P.BYTES, True), ("tokens", P.IDS, True), ("pin", P.BOOL, False),
        ("alloc", P.BOOL, False), ("lease", P.UINT, False), ("promote", P.BOOL, False),
        ("no_cache", P.BOOL, False), ("no_count", P.BOOL, False),
        ("instance", P.UINT, False)])
_LOOKUP_ABSENT = {f.key: None for f in _LOOKUP.reply if not f.required}
_MAP_HEADS = [bytes((0x80 | n,)) for n in range(16)]  # msgpack fixmap, n pairs
_TOK_OFF = 1024  # where the tokens start in the request buffer: room for the head
_LE_U32 = np.dtype("<u4")


def connect(endpoint: Optional[str] = None, timeout_ms: int = DEFAULT_TIMEOUT_MS,
            hello: bool = True, **curve: Optional[str]) -> Client:
    """A Client, and (by default) its hello done: c.hello_info, c.pool.
    curve: Client's curve_* keyword arguments."""
    c = Client(endpoint, timeout_ms, **curve)
    if hello:
        try:
            c.hello()
        except BaseException:
            c.close()
            raise
    return c
