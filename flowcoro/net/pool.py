"""ConnectionPool: reuse client connections, at most ``max_size`` at a time.

Theory of operation
-------------------
A *slot* is the right to hold one connection; ``_size`` counts slots taken
(connections open, being opened, or being health-checked).  ``acquire()``
takes, in order: an idle connection (most recently used first, checked with
``health_check`` if one is given), a free slot (and opens a connection in
it), or a place in the FIFO of waiters.  ``release()`` hands the connection
straight to the oldest waiter (so a newcomer cannot overtake it) or parks
it as idle; a broken or discarded connection frees its slot, which is
handed to the oldest waiter as the ``_SLOT`` token, meaning "open one".

Cancellation (including the acquire timeout, which is a cancellation) is
handled at every await: a waiter cancelled after it was handed a
connection or a slot passes it on; a cancelled connect or health check
gives its slot back.  So no path leaks a slot.

Invariants:
* ``_size == len(_idle) + len(_in_use) + (connects and health checks running)``
  and ``_size <= max_size``.
* a waiter future is resolved at most once, with a connection or ``_SLOT``
  (or failed with PoolClosedError by close()).
* ``_idle`` is ordered by release time, oldest first; the reaper timer is
  armed exactly while it is non-empty (and ``idle_timeout`` is set).
"""
import asyncio
import collections
import logging
from dataclasses import dataclass

from flowcoro.errors import (InvalidArgumentError, PoolClosedError, PoolError,
                             PoolTimeoutError)
from flowcoro.net.client import TcpClient

__all__ = ["ConnectionPool", "PoolStats"]

logger = logging.getLogger("flowcoro.net")

# The token a waiter receives when a slot (not a connection) frees up.
_SLOT = object()


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of a :class:`ConnectionPool`, from :meth:`ConnectionPool.stats`.

    Attributes:
        max_size: the most connections the pool holds.
        size: connections open, being opened or being checked.
        idle: connections parked, ready to hand out.
        in_use: connections acquired and not yet released.
        waiting: acquire() calls waiting for a connection.
        created: connections opened so far.
        discarded: connections closed as broken, expired, unhealthy or discarded.
        acquired: successful acquire() calls so far.
        timeouts: acquire() calls that raised PoolTimeoutError.
        waits: acquire() calls that had to wait for a connection (all
            were in use), however they ended.
        wait_seconds: the time those calls spent waiting, in total.
    """

    max_size: int
    size: int
    idle: int
    in_use: int
    waiting: int
    created: int
    discarded: int
    acquired: int
    timeouts: int
    waits: int = 0
    wait_seconds: float = 0.0


class _Acquire:
    """What :meth:`ConnectionPool.acquire` returns: awaitable and an async context manager."""

    __slots__ = ("_pool", "_timeout", "_conn")

    def __init__(self, pool, timeout):
        self._pool = pool
        self._timeout = timeout
        self._conn = None

    def __await__(self):
        return self._pool._acquire(self._timeout).__await__()

    async def __aenter__(self):
        self._conn = await self._pool._acquire(self._timeout)
        return self._conn

    async def __aexit__(self, exc_type, exc, tb):
        conn, self._conn = self._conn, None
        # After an exception the conversation may be half done: never reuse.
        self._pool.release(conn, discard=exc_type is not None)


def _is_broken(conn):
    """True if ``conn`` must not be handed out again (closed, EOF, unread data)."""
    is_closing = getattr(conn, "is_closing", None)
    if is_closing is not None and is_closing():
        return True
    at_eof = getattr(conn, "at_eof", None)
    if at_eof is not None and at_eof():
        return True
    # Bytes nobody read would be taken as the next request's answer.
    return getattr(conn, "buffered", 0) > 0


class ConnectionPool:
    """A pool of client connections with a size cap, idle expiry and health checks.

    Usage::

        pool = ConnectionPool(host="127.0.0.1", port=6379, max_size=8,
                              idle_timeout=30, acquire_timeout=2)
        async with pool.acquire() as conn:      # released (or discarded) on exit
            conn.write(b"PING\\r\\n")
            await conn.drain()
            await conn.readline()

        conn = await pool.acquire()             # or by hand
        try:
            ...
        finally:
            pool.release(conn)
        pool.close()
        await pool.wait_closed()

    Connections come from ``factory`` (``async def factory() -> conn``) or
    from ``TcpClient.connect(host, port)``.  A connection that is closed, at
    EOF or holds unread bytes when released or taken from idle is discarded,
    never handed out; so is one that fails ``health_check``.

    Args:
        factory: coroutine function opening one connection (instead of host/port).
        host: host to connect to (with ``port``, instead of ``factory``).
        port: TCP port.
        max_size: the most connections at once (>= 1).
        idle_timeout: seconds an idle connection is kept; None keeps it forever.
        health_check: ``async def check(conn) -> bool``, run before an idle
            connection is handed out; False or an exception discards it.
        acquire_timeout: default seconds acquire() may take (None: no limit).
        connect_timeout: seconds for each TcpClient.connect (host/port only).

    Raises:
        InvalidArgumentError: a bad combination or value of the arguments.
    """

    def __init__(self, factory=None, *, host=None, port=None, max_size=10, idle_timeout=60.0,
                 health_check=None, acquire_timeout=None, connect_timeout=None):
        if factory is not None:
            if host is not None or port is not None:
                raise InvalidArgumentError("factory", factory, "give either factory or host/port, not both")
            if not callable(factory):
                raise InvalidArgumentError("factory", factory, "must be an async callable")
        elif host is None or port is None:
            raise InvalidArgumentError("factory", factory, "give a factory or both host and port")
        else:
            factory = lambda: TcpClient.connect(host, port, timeout=connect_timeout)  # noqa: E731
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise InvalidArgumentError("max_size", max_size, "must be an int >= 1")
        if idle_timeout is not None and not (isinstance(idle_timeout, (int, float)) and idle_timeout > 0):
            raise InvalidArgumentError("idle_timeout", idle_timeout, "must be None or seconds > 0")
        _check_timeout("acquire_timeout", acquire_timeout)
        if health_check is not None and not callable(health_check):
            raise InvalidArgumentError("health_check", health_check, "must be None or an async callable")
        self._factory = factory
        self._max_size = max_size
        self._idle_timeout = idle_timeout
        self._health_check = health_check
        self._acquire_timeout = acquire_timeout
        self._loop = None
        self._closed = False
        self._size = 0
        self._idle = collections.deque()        # (conn, released_at), oldest first
        self._in_use = {}                       # id(conn) -> conn
        self._waiters = collections.deque()     # futures, oldest first
        self._reaper = None
        self._closing = []
        self._created = self._discarded = self._acquired = self._timeouts = 0
        self._waits = 0                   # acquire() calls that waited for a connection
        self._wait_seconds = 0.0          # and how long, in total

    def __repr__(self):
        return (f"<ConnectionPool size={self._size}/{self._max_size} idle={len(self._idle)} "
                f"waiting={len(self._waiters)}{' closed' if self._closed else ''}>")

    @property
    def max_size(self):
        """The most connections the pool holds at once."""
        return self._max_size

    @property
    def closed(self):
        """True once close() was called."""
        return self._closed

    def stats(self):
        """Return a :class:`PoolStats` snapshot."""
        return PoolStats(
            max_size=self._max_size, size=self._size, idle=len(self._idle),
            in_use=len(self._in_use), waiting=sum(1 for f in self._waiters if not f.done()),
            created=self._created, discarded=self._discarded, acquired=self._acquired,
            timeouts=self._timeouts, waits=self._waits, wait_seconds=self._wait_seconds)

    # -- acquire --------------------------------------------------------------

    def acquire(self, *, timeout=...):
        """Get a connection: ``await pool.acquire()`` or ``async with pool.acquire() as conn``.

        The ``async with`` form releases the connection on exit, or discards
        it if the block raised.

        Args:
            timeout: seconds to wait (default the pool's ``acquire_timeout``;
                None: no limit).

        Raises:
            PoolTimeoutError: no connection within the timeout.
            PoolClosedError: the pool is (or gets) closed.
            OSError: opening a new connection failed (its slot is freed).
            InvalidArgumentError: bad timeout.
        """
        if timeout is ...:
            timeout = self._acquire_timeout
        else:
            _check_timeout("timeout", timeout)
        return _Acquire(self, timeout)

    async def _acquire(self, timeout):
        if self._closed:
            raise PoolClosedError("the pool is closed")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if timeout is None:
            return await self._acquire_impl()
        cm = asyncio.timeout(timeout)
        try:
            async with cm:
                return await self._acquire_impl()
        except TimeoutError:
            if not cm.expired():
                raise                   # a TimeoutError of the factory's own
            self._timeouts += 1
            raise PoolTimeoutError(f"no connection became free within {timeout} s") from None

    async def _acquire_impl(self):
        while True:
            if self._closed:
                raise PoolClosedError("the pool is closed")
            conn = await self._take_idle()
            if conn is not None:
                return self._checkout(conn)
            if self._size < self._max_size:
                self._size += 1
                return self._checkout(await self._open_in_slot())
            fut = self._loop.create_future()
            self._waiters.append(fut)
            t0 = self._loop.time()
            try:
                got = await fut
            except BaseException:
                if fut in self._waiters:
                    self._waiters.remove(fut)
                elif fut.done() and not fut.cancelled() and fut.exception() is None:
                    self._pass_on(fut.result())    # handed to us as we were cancelled
                raise
            finally:
                self._waits += 1
                self._wait_seconds += self._loop.time() - t0
            if got is _SLOT:
                return self._checkout(await self._open_in_slot())
            return self._checkout(got)

    async def _take_idle(self):
        """Pop a usable idle connection (its slot stays taken), or None."""
        while self._idle:
            conn, since = self._idle.pop()
            if self._expired(since) or _is_broken(conn):
                self._discard(conn)
                continue
            if self._health_check is not None:
                try:
                    ok = await self._health_check(conn)
                except Exception as exc:
                    logger.debug("pool health check failed: %r", exc)
                    ok = False
                except BaseException:
                    self._discard(conn)          # cancelled mid-check: state unknown
                    raise
                if not ok or _is_broken(conn):
                    self._discard(conn)
                    continue
                if self._closed:
                    self._discard(conn)
                    raise PoolClosedError("the pool is closed")
            self._schedule_reap()
            return conn
        return None

    async def _open_in_slot(self):
        """Open a connection in a slot already counted in ``_size``."""
        try:
            conn = await self._factory()
        except BaseException:
            self._size -= 1
            self._hand_slot()
            raise
        self._created += 1
        if self._closed:
            self._discard(conn)
            raise PoolClosedError("the pool is closed")
        return conn

    def _checkout(self, conn):
        self._in_use[id(conn)] = conn
        self._acquired += 1
        return conn

    # -- release --------------------------------------------------------------

    def release(self, conn, *, discard=False):
        """Give ``conn`` back; it is reused unless broken, discarded or the pool is closed.

        Args:
            conn: a connection acquire() returned and not yet released.
            discard: close it instead of reusing it (its slot is freed).

        Raises:
            PoolError: ``conn`` is not in use from this pool (released twice?).
        """
        if self._in_use.pop(id(conn), None) is None:
            raise PoolError(f"{conn!r} is not in use from this pool (released twice?)")
        if discard or self._closed or _is_broken(conn):
            self._discard(conn)
        else:
            self._pass_on(conn)

    def _pass_on(self, item):
        """Give a connection or a slot to the oldest live waiter, else park/free it."""
        if item is _SLOT:
            self._size -= 1
            self._hand_slot()
            return
        if self._closed:
            self._discard(item)
            return
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(item)
                return
        self._idle.append((item, self._loop.time()))
        self._schedule_reap()

    def _hand_slot(self):
        while self._waiters and self._size < self._max_size:
            fut = self._waiters.popleft()
            if not fut.done():
                self._size += 1
                fut.set_result(_SLOT)
                return

    def _discard(self, conn):
        self._size -= 1
        self._discarded += 1
        _close_quietly(conn)
        self._hand_slot()

    # -- idle expiry ----------------------------------------------------------

    def _expired(self, since):
        return self._idle_timeout is not None and self._loop.time() - since >= self._idle_timeout

    def _schedule_reap(self):
        if self._idle_timeout is None or self._closed:
            return
        if not self._idle:
            if self._reaper is not None:
                self._reaper.cancel()
                self._reaper = None
            return
        if self._reaper is None:
            self._reaper = self._loop.call_at(self._idle[0][1] + self._idle_timeout, self._reap)

    def _reap(self):
        self._reaper = None
        while self._idle and self._expired(self._idle[0][1]):
            conn, _ = self._idle.popleft()
            self._discard(conn)
        self._schedule_reap()

    # -- closing --------------------------------------------------------------

    def close(self):
        """Close the pool: idle connections now, in-use ones when released; idempotent.

        Waiting and later acquire() calls raise PoolClosedError.
        """
        if self._closed:
            return
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(PoolClosedError("the pool is closed"))
        while self._idle:
            conn, _ = self._idle.popleft()
            self._closing.append(conn)
            self._size -= 1
            _close_quietly(conn)

    async def wait_closed(self):
        """Wait until the connections close() closed are gone (call close() first)."""
        closing, self._closing = self._closing, []
        for conn in closing:
            wait = getattr(conn, "wait_closed", None)
            if wait is not None:
                await wait()

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        self.close()
        await self.wait_closed()


def _check_timeout(name, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
        raise InvalidArgumentError(name, value, "must be None or a number of seconds >= 0")


def _close_quietly(conn):
    try:
        conn.close()
    except Exception as exc:       # a broken connection may fail to close: it is gone anyway
        logger.debug("closing pooled connection %r failed: %r", conn, exc)
