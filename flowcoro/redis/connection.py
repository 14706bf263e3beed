"""One Redis connection: an asyncio Protocol, hiredis parsing, automatic pipelining.

Theory of operation
-------------------
:class:`Connection` is an :class:`asyncio.Protocol` (no streams: a reply is
parsed and handed to its waiter inside ``data_received``, without a task
switch per read).  Every command is encoded by ``hiredis.pack_command`` and
appended to a write buffer; a future (its *waiter*) is appended to a FIFO.
The first command of a loop iteration schedules ``_flush`` with
``call_soon``; ``_flush`` joins everything buffered during that iteration
and writes it with one ``transport.write``.  So commands issued by many
tasks at once (or by one explicit pipeline) leave in one system call,
without the callers asking: this is the automatic pipelining.

Redis answers the commands of one connection in order, so the replies are
matched to the waiters FIFO.  ``hiredis.Reader`` turns the bytes into
Python objects; error replies come back as :class:`RedisResponseError`
instances (the Reader builds them) and are raised in the waiter.

Cancellation safety (the CVE-2023-28858 class of bug): a waiter whose
caller was cancelled is *not* removed from the FIFO.  Its reply is still
read and dropped when it arrives, so the next reply always goes to the
next waiter.  A cancelled command may therefore still run on the server;
what can never happen is a caller receiving another command's reply.

Invariants:
* ``len(_waiters)`` == replies still owed by the server for the commands
  written or buffered (a ``_Batch`` owes ``n``); pushes (pub/sub messages,
  RESP3 ``>`` frames) are not counted and never reach a waiter.
* after ``connection_lost`` (or ``close``), ``_error`` is set, every
  waiter has failed with :class:`RedisConnectionError`, and ``send``
  raises at once: a reply can never be matched to a command that was not
  answered.
"""
from __future__ import annotations

import asyncio
import collections
import ssl as _ssl
import urllib.parse
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from flowcoro.errors import (InvalidArgumentError, RedisAuthenticationError,
                             RedisConnectionError, RedisDataError,
                             RedisExecAbortError, RedisNoScriptError,
                             RedisProtocolError, RedisResponseError,
                             RedisTimeoutError)

try:
    import hiredis
except ImportError as _exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "flowcoro.redis needs the hiredis package: pip install 'flowcoro[redis]'"
    ) from _exc

__all__ = ["Connection", "ConnectionParams", "parse_url", "open_connection", "pack"]

#: Returned by ``Reader.gets()`` when no complete reply is buffered (not
#: False, which is a valid RESP3 boolean reply).
_NOT_ENOUGH = object()
# hiredis >= 3 tells RESP3 pushes apart; an older one never returns this type.
_PushNotification = getattr(hiredis, "PushNotification", type("_NoPush", (), {}))
_pack_command = hiredis.pack_command


def pack(args: tuple) -> bytes:
    """Encode one command (a tuple of str/bytes/int/float) as RESP.

    Raises:
        RedisDataError: an argument is of another type (bool, None, list...).
    """
    try:
        return _pack_command(args)
    except TypeError:
        for a in args:
            if isinstance(a, bool) or not isinstance(a, (str, bytes, int, float, memoryview)):
                raise RedisDataError(
                    f"invalid argument {a!r} of type {type(a).__name__}: "
                    "convert it to bytes, str, int or float first") from None
        raise


def _typed_error(err: RedisResponseError) -> RedisResponseError:
    """The error reply as its most specific class (NOSCRIPT, EXECABORT...)."""
    msg = err.args[0] if err.args else ""
    if msg.startswith("NOSCRIPT"):
        return RedisNoScriptError(msg)
    if msg.startswith("EXECABORT"):
        return RedisExecAbortError(msg)
    return err


class _Batch:
    """A waiter for ``n`` consecutive replies (an explicit pipeline).

    Error replies are kept as exception instances in ``replies``; the
    caller decides what to raise.
    """

    __slots__ = ("fut", "n", "replies")

    def __init__(self, fut: asyncio.Future, n: int):
        self.fut = fut
        self.n = n
        self.replies: list = []


@dataclass(frozen=True)
class ConnectionParams:
    """Where and how to connect (what :func:`parse_url` returns).

    Attributes:
        host, port: TCP address (``path`` None).
        path: Unix socket path (then host/port are ignored).
        db: database number selected after connecting.
        username, password: AUTH credentials (username needs Redis 6 ACLs).
        client_name: sent with CLIENT SETNAME (visible in CLIENT LIST).
        ssl: an :class:`ssl.SSLContext` for ``rediss://``, or None.
        decode_responses: decode bulk replies to str with ``encoding``.
        encoding, encoding_errors: used when decode_responses is true.
        protocol: 2 (RESP2) or 3 (RESP3 via HELLO 3).
        connect_timeout: seconds for the TCP/TLS connect plus the handshake.
        socket_timeout: on the shared connection, seconds the server may
            stay silent while replies are owed; then the connection is
            dropped and its in-flight commands fail with RedisTimeoutError
            (None: wait for ever).  Blocking commands are not affected.
    """

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    client_name: str | None = None
    ssl: Any = None
    decode_responses: bool = False
    encoding: str = "utf-8"
    encoding_errors: str = "strict"
    protocol: int = 2
    connect_timeout: float | None = 10.0
    socket_timeout: float | None = None
    extra: dict = field(default_factory=dict)

    def address(self) -> str:
        """``host:port`` or ``unix:path``, for messages."""
        return f"unix:{self.path}" if self.path else f"{self.host}:{self.port}"

    def with_options(self, **kw) -> "ConnectionParams":
        """A copy with some fields replaced."""
        return replace(self, **kw)


def _truthy(v: str) -> bool:
    return v.lower() in ("1", "true", "yes", "on")


def parse_url(url: str, **overrides) -> ConnectionParams:
    """Parse ``redis://``, ``rediss://`` (TLS) or ``unix://`` into ConnectionParams.

    Forms::

        redis://[[username]:password@]host[:port][/db][?client_name=x&protocol=3]
        rediss://...                      (TLS; ssl_cert_reqs=none to skip checks)
        unix://[[username]:password@]/path/to/socket[?db=1]

    Keyword ``overrides`` (``db=``, ``password=``, ``decode_responses=``...)
    win over the URL.

    Raises:
        InvalidArgumentError: unknown scheme, bad port or db.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise InvalidArgumentError("url", url, "scheme must be redis://, rediss:// or unix://")
    q = dict(urllib.parse.parse_qsl(parts.query))
    kw: dict[str, Any] = {}
    if parts.username:
        kw["username"] = urllib.parse.unquote(parts.username)
    if parts.password is not None:
        kw["password"] = urllib.parse.unquote(parts.password)
    db = q.pop("db", None)
    if scheme == "unix":
        kw["path"] = urllib.parse.unquote(parts.path)
    else:
        kw["host"] = urllib.parse.unquote(parts.hostname or "127.0.0.1")
        try:
            kw["port"] = parts.port or 6379
        except ValueError:
            raise InvalidArgumentError("url", url, "bad port") from None
        path = parts.path.strip("/")
        if path:
            db = path
    if db is not None:
        try:
            kw["db"] = int(db)
        except ValueError:
            raise InvalidArgumentError("url", url, f"db {db!r} is not an integer") from None
    if "client_name" in q:
        kw["client_name"] = q.pop("client_name")
    if "protocol" in q:
        kw["protocol"] = int(q.pop("protocol"))
    if "decode_responses" in q:
        kw["decode_responses"] = _truthy(q.pop("decode_responses"))
    if "socket_connect_timeout" in q:
        kw["connect_timeout"] = float(q.pop("socket_connect_timeout"))
    if "socket_timeout" in q:
        kw["socket_timeout"] = float(q.pop("socket_timeout"))
    if scheme == "rediss":
        ctx = _ssl.create_default_context()
        reqs = q.pop("ssl_cert_reqs", "required").lower()
        if reqs in ("none", "cert_none"):
            ctx.check_hostname = False
            ctx.verify_mode = _ssl.CERT_NONE
        ca = q.pop("ssl_ca_certs", None)
        if ca:
            ctx.load_verify_locations(ca)
        kw["ssl"] = ctx
    kw["extra"] = q
    kw.update({k: v for k, v in overrides.items() if v is not None})
    params = ConnectionParams(**kw)
    if params.protocol not in (2, 3):
        raise InvalidArgumentError("protocol", params.protocol, "must be 2 or 3")
    if params.db < 0:
        raise InvalidArgumentError("db", params.db, "must be >= 0")
    return params


class Connection(asyncio.Protocol):
    """A Redis connection: write coalescing, FIFO reply matching, pushes.

    Made by :func:`open_connection`; used through :meth:`send` (one command)
    and :meth:`send_batch` (an explicit pipeline).  Pools and clients own
    connections; users rarely touch one directly.

    Attributes:
        params: the ConnectionParams it was opened with.
        push_handler: ``callable(reply)`` receiving pushes: RESP3 ``>``
            frames always, and every reply while ``pubsub_mode`` is true
            (RESP2 pub/sub has no other way to tell messages apart).
        on_lost: ``callable(conn)`` run once when the connection is gone.
        created_at, last_used: loop times, for health checks.
    """

    def __init__(self, params: ConnectionParams, loop: asyncio.AbstractEventLoop):
        self.params = params
        self._loop = loop
        kw: dict[str, Any] = {"notEnoughData": _NOT_ENOUGH, "replyError": RedisResponseError}
        if params.decode_responses:
            kw["encoding"] = params.encoding
            kw["errors"] = params.encoding_errors
        self._reader = hiredis.Reader(**kw)
        self._transport: asyncio.Transport | None = None
        self._waiters: collections.deque = collections.deque()
        self._wbuf: list[bytes] = []
        self._flush_scheduled = False
        self._write_paused = False
        self._error: Exception | None = None
        self._closed_fut: asyncio.Future = loop.create_future()
        self.push_handler: Callable[[Any], None] | None = None
        self.pubsub_mode = False
        self.on_lost: Callable[["Connection"], None] | None = None
        self.created_at = self.last_used = loop.time()
        self.server_info: dict = {}
        #: transport.write calls so far (tests and stats: shows the coalescing).
        self.writes = 0
        #: replies read and thrown away because their caller was cancelled.
        self.dropped = 0
        #: seconds of server silence tolerated while replies are owed (None: no limit).
        self.reply_timeout: float | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._armed_at = self._last_rx = 0.0

    def __repr__(self) -> str:
        state = "closed" if self._error is not None else f"pending={len(self._waiters)}"
        return f"<flowcoro.redis.Connection {self.params.address()} db={self.params.db} {state}>"

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport):
        """asyncio callback: keep the transport."""
        self._transport = transport

    def pause_writing(self):
        """asyncio callback: the transport's buffer is over its high-water mark."""
        # Keep buffering (callers never block) but stop handing bytes to a
        # transport whose buffer is over its high-water mark.
        self._write_paused = True

    def resume_writing(self):
        """asyncio callback: the transport drained; flush what was held back."""
        self._write_paused = False
        if self._wbuf and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def data_received(self, data):
        """asyncio callback: parse every complete reply and hand it to its waiter (FIFO)."""
        if self.reply_timeout is not None:
            self._last_rx = self._loop.time()
        reader = self._reader
        reader.feed(data)
        waiters = self._waiters
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self._fail(RedisProtocolError(f"bad reply from {self.params.address()}: {exc}"))
                return
            except UnicodeDecodeError as exc:
                # The reply was consumed; its waiter gets the decode error.
                reply = exc
            if reply is _NOT_ENOUGH:
                return
            if type(reply) is _PushNotification:
                # RESP3 out-of-band frame: never a command's reply (dropped
                # when nobody listens, e.g. tracking invalidations).
                if self.push_handler is not None:
                    self.push_handler(reply)
                continue
            if self.pubsub_mode:
                if self.push_handler is not None:
                    self.push_handler(reply)
                continue
            if not waiters:
                self._fail(RedisProtocolError(
                    f"unsolicited reply from {self.params.address()}: {reply!r:.80}"))
                return
            w = waiters.popleft()
            if w.__class__ is _Batch:
                w.replies.append(_typed_error(reply) if isinstance(reply, RedisResponseError)
                                 else reply)
                if len(w.replies) == w.n:
                    if not w.fut.done():
                        w.fut.set_result(w.replies)
                else:
                    waiters.appendleft(w)
                continue
            if w.done():
                self.dropped += 1   # its caller was cancelled: drop the reply (FIFO kept)
                continue
            if isinstance(reply, Exception):
                w.set_exception(_typed_error(reply) if isinstance(reply, RedisResponseError)
                                else reply)
            else:
                w.set_result(reply)

    def eof_received(self):
        """asyncio callback: the server closed its side; close ours."""
        return False                # close the transport; connection_lost follows

    def connection_lost(self, exc):
        """asyncio callback: fail every waiter with RedisConnectionError."""
        if self._error is None:
            why = f": {exc}" if exc else " (closed by the server)"
            self._fail(RedisConnectionError(
                f"connection to redis at {self.params.address()} lost{why}"), close=False)
        self._transport = None
        if not self._closed_fut.done():
            self._closed_fut.set_result(None)

    # -- sending ----------------------------------------------------------------

    def send(self, args: tuple) -> asyncio.Future:
        """Queue one command; return the future of its reply.

        The command leaves with everything else queued in this loop
        iteration.  An error reply makes the future raise
        :class:`RedisResponseError` (or a subclass).

        Raises:
            RedisConnectionError: the connection is closed or lost.
            RedisDataError: an argument cannot be encoded.
        """
        if self._error is not None:
            raise self._lost_error()
        data = pack(args)
        fut = self._loop.create_future()
        self._wbuf.append(data)
        self._waiters.append(fut)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return fut

    def send_packed(self, data: bytes, n: int) -> asyncio.Future:
        """Queue ``n`` already-encoded commands; the future gets a list of ``n`` replies.

        Error replies are exception instances in that list.  The commands
        stay contiguous on the wire (one buffer append), which is what
        makes MULTI ... EXEC safe on a shared connection.
        """
        if self._error is not None:
            raise self._lost_error()
        fut = self._loop.create_future()
        self._wbuf.append(data)
        self._waiters.append(_Batch(fut, n))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return fut

    def send_batch(self, commands: list[tuple]) -> asyncio.Future:
        """Queue several commands as one unit; the future gets their replies (a list)."""
        return self.send_packed(b"".join([pack(c) for c in commands]), len(commands))

    def send_noreply(self, args: tuple) -> None:
        """Queue a command whose answer comes as a push (pub/sub (un)subscribe)."""
        if self._error is not None:
            raise self._lost_error()
        self._wbuf.append(pack(args))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self):
        self._flush_scheduled = False
        if self._write_paused or not self._wbuf or self._transport is None:
            return
        buf = self._wbuf
        self._wbuf = []
        self._transport.write(buf[0] if len(buf) == 1 else b"".join(buf))
        self.writes += 1
        if self.reply_timeout is not None and self._stall_timer is None:
            self._armed_at = self._loop.time()
            self._stall_timer = self._loop.call_later(self.reply_timeout, self._check_stall)

    def _check_stall(self):
        """Drop the connection if the server said nothing for ``reply_timeout`` s
        while replies are owed (a dead peer or a half-open TCP connection)."""
        self._stall_timer = None
        if self._error is not None or not self._waiters or self.reply_timeout is None:
            return
        silent = self._loop.time() - max(self._last_rx, self._armed_at)
        if silent >= self.reply_timeout:
            self._fail(RedisTimeoutError(
                f"no reply from redis at {self.params.address()} within "
                f"{self.reply_timeout} s (socket_timeout): connection dropped"))
        else:
            self._stall_timer = self._loop.call_later(self.reply_timeout - silent,
                                                      self._check_stall)
        self.last_used = self._loop.time()

    async def execute(self, *args) -> Any:
        """Send one command on this connection and await its reply."""
        return await self.send(args)

    # -- state ------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Replies the server still owes this connection."""
        return len(self._waiters)

    @property
    def buffered(self) -> int:
        """Non-zero while replies are owed: the pool must not reuse it then."""
        return len(self._waiters)

    def is_closing(self) -> bool:
        """True once the connection is closed or lost (it is then useless)."""
        return self._error is not None

    def _lost_error(self) -> Exception:
        err = self._error
        return type(err)(str(err)) if err is not None else RedisConnectionError("connection closed")

    def _fail(self, err: Exception, close: bool = True) -> None:
        """Mark the connection dead and fail every waiter with a copy of ``err``."""
        if self._error is not None:
            return
        self._error = err
        self._wbuf = []
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        waiters, self._waiters = self._waiters, collections.deque()
        for w in waiters:
            fut = w.fut if w.__class__ is _Batch else w
            if not fut.done():
                fut.set_exception(type(err)(str(err)))
        if close and self._transport is not None:
            self._transport.abort()
        cb, self.on_lost = self.on_lost, None
        if cb is not None:
            cb(self)
        if self.push_handler is not None:
            handler = self.push_handler
            self.push_handler = None
            handler(err)

    def close(self) -> None:
        """Close now; commands still in flight fail with RedisConnectionError."""
        self._fail(RedisConnectionError(f"connection to redis at {self.params.address()} closed"),
                   close=False)
        if self._transport is not None:
            self._transport.close()
        elif not self._closed_fut.done():
            self._closed_fut.set_result(None)

    async def wait_closed(self) -> None:
        """Wait until the transport is gone (after :meth:`close`)."""
        if self._transport is not None:
            await asyncio.shield(self._closed_fut)

    # -- handshake --------------------------------------------------------------

    async def _handshake(self) -> None:
        p = self.params
        cmds: list[tuple] = []
        if p.protocol == 3:
            hello: tuple = ("HELLO", 3)
            if p.password is not None:
                hello += ("AUTH", p.username or "default", p.password)
            if p.client_name:
                hello += ("SETNAME", p.client_name)
            # Alone first: a server without RESP3 (Redis < 6) refuses HELLO,
            # and this connection falls back to RESP2 (hiredis reads both).
            reply = (await self.send_batch([hello]))[0]
            if isinstance(reply, RedisResponseError) and "unknown command" in str(reply).lower():
                self.params = p = p.with_options(protocol=2)
            else:
                self._check_handshake_reply(hello, reply)
                if isinstance(reply, dict):
                    self.server_info = {(k.decode() if isinstance(k, bytes) else k): v
                                        for k, v in reply.items()}
        if p.protocol == 2:
            if p.password is not None:
                cmds.append(("AUTH", p.username, p.password) if p.username else ("AUTH", p.password))
            if p.client_name:
                cmds.append(("CLIENT", "SETNAME", p.client_name))
        if p.db:
            cmds.append(("SELECT", p.db))
        if cmds:
            for cmd, reply in zip(cmds, await self.send_batch(cmds)):
                self._check_handshake_reply(cmd, reply)

    def _check_handshake_reply(self, cmd: tuple, reply: Any) -> None:
        if not isinstance(reply, RedisResponseError):
            return
        msg = str(reply)
        name = str(cmd[0])
        if name in ("AUTH", "HELLO") and msg.split(" ", 1)[0] in (
                "WRONGPASS", "NOAUTH", "NOPERM", "ERR") and (
                name == "AUTH" or not msg.startswith("ERR") or "password" in msg):
            raise RedisAuthenticationError(
                f"redis at {self.params.address()} refused the credentials: {msg}")
        raise RedisConnectionError(
            f"redis at {self.params.address()} refused {name} while connecting: {msg}")


async def open_connection(params: ConnectionParams) -> Connection:
    """Open, authenticate and select the database; return the ready Connection.

    Raises:
        RedisConnectionError: the server is unreachable or refused the handshake.
        RedisAuthenticationError: wrong credentials.
        RedisTimeoutError: ``params.connect_timeout`` passed first.
    """
    loop = asyncio.get_running_loop()
    conn = Connection(params, loop)
    try:
        async with asyncio.timeout(params.connect_timeout):
            if params.path:
                await loop.create_unix_connection(lambda: conn, params.path)
            else:
                await loop.create_connection(
                    lambda: conn, params.host, params.port, ssl=params.ssl,
                    server_hostname=params.host if params.ssl else None)
            await conn._handshake()
    except TimeoutError:
        conn.close()
        raise RedisTimeoutError(
            f"connecting to redis at {params.address()} took over {params.connect_timeout} s"
        ) from None
    except RedisConnectionError:
        conn.close()
        raise
    except OSError as exc:
        conn.close()
        raise RedisConnectionError(
            f"cannot connect to redis at {params.address()}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    conn.created_at = conn.last_used = loop.time()
    return conn

