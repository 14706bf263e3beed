"""ConnectionPool: the shared auto-pipelined connection plus dedicated ones.

Theory of operation
-------------------
Most commands are stateless, so they all travel on **one shared
connection** where :class:`~flowcoro.redis.connection.Connection` coalesces
them (automatic pipelining).  Commands that tie up or change the state of
a connection -- blocking pops, WATCH transactions, pub/sub -- get a
**dedicated** connection from a bounded pool (``max_connections``
counts the shared one too), built on :class:`flowcoro.net.ConnectionPool`,
whose acquire/release paths are cancellation-safe (no slot leaks).

Reconnection: when the shared connection is lost, its in-flight commands
fail with :class:`RedisConnectionError` (never retried: they may have
run), the slot is freed, and the next command opens a new connection.
Opening retries with exponential backoff (``retry_attempts`` times,
``retry_backoff`` doubling up to ``retry_backoff_max``); concurrent
callers share one attempt, so a restart does not cause a connect storm.

Health checks: a dedicated connection idle for more than
``health_check_interval`` seconds answers a PING before it is handed out;
if it does not, it is dropped and another is opened.

Invariants:
* ``_shared`` is None or a live connection; it has a slot of its own
  (``_pool`` holds at most ``max_connections - 1``); at most one task
  (``_shared_task``) is opening a replacement.
* a connection that still owes replies (``pending > 0``) is never parked
  as idle: ``release`` discards it (a cancelled BLPOP must not hand its
  late reply to the next borrower).
"""
from __future__ import annotations

import asyncio
import random
from typing import Any

from flowcoro.errors import (InvalidArgumentError, PoolClosedError, PoolTimeoutError,
                             RedisAuthenticationError, RedisConnectionError,
                             RedisPoolTimeoutError, RedisTimeoutError)
from flowcoro.net.pool import ConnectionPool as _NetPool
from flowcoro.redis.connection import Connection, ConnectionParams, open_connection, parse_url

__all__ = ["ConnectionPool"]


def _consume(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


class ConnectionPool:
    """Redis connections for one server and database.

    Args:
        params: a ConnectionParams (see :func:`ConnectionPool.from_url`).
        max_connections: connections open at once, the shared one included.
        acquire_timeout: seconds a dedicated acquire waits for a free
            connection (None: no limit); then RedisPoolTimeoutError.
        health_check_interval: idle seconds after which a dedicated
            connection is PINGed before reuse (0: every time; None: never).
        idle_timeout: idle dedicated connections are closed after this.
        retry_attempts: connect attempts after the first one fails.
        retry_backoff, retry_backoff_max: first delay between attempts and
            its cap (seconds); the delay doubles, with +-25 % jitter.
    """

    def __init__(self, params: ConnectionParams, *, max_connections: int = 50,
                 acquire_timeout: float | None = 20.0,
                 health_check_interval: float | None = 30.0,
                 idle_timeout: float | None = 300.0,
                 retry_attempts: int = 5, retry_backoff: float = 0.05,
                 retry_backoff_max: float = 2.0):
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) \
                or max_connections < 2:
            raise InvalidArgumentError("max_connections", max_connections,
                                       "must be an int >= 2 (one is the shared connection)")
        if not isinstance(retry_attempts, int) or retry_attempts < 0:
            raise InvalidArgumentError("retry_attempts", retry_attempts, "must be an int >= 0")
        self.params = params
        self.max_connections = max_connections
        self.acquire_timeout = acquire_timeout
        self.health_check_interval = health_check_interval
        self.retry_attempts = retry_attempts
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        # The shared connection lives outside the dedicated pool, in a slot of
        # its own: blocked BLPOPs filling the pool can never keep it from
        # (re)connecting.
        self._pool = _NetPool(self._connect_with_retry, max_size=max_connections - 1,
                              idle_timeout=idle_timeout, acquire_timeout=acquire_timeout,
                              health_check=self._health_check)
        self._shared: Connection | None = None
        self._shared_task: asyncio.Future | None = None
        self._closed = False
        self.reconnects = 0

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> "ConnectionPool":
        """A pool for ``url``; connection keywords (db, password...) override it."""
        conn_kw = {k: kwargs.pop(k) for k in list(kwargs)
                   if k in ConnectionParams.__dataclass_fields__}
        return cls(parse_url(url, **conn_kw), **kwargs)

    def __repr__(self) -> str:
        return f"<flowcoro.redis.ConnectionPool {self.params.address()} db={self.params.db} {self._pool!r}>"

    @property
    def closed(self) -> bool:
        """True after :meth:`aclose`."""
        return self._closed

    def stats(self):
        """A snapshot of the dedicated connections' counters (flowcoro.net.PoolStats).

        The shared connection is not counted there: it has its own slot.
        """
        return self._pool.stats()

    # -- opening ----------------------------------------------------------------

    async def _connect_with_retry(self) -> Connection:
        delay = self.retry_backoff
        attempt = 0
        while True:
            try:
                return await open_connection(self.params)
            except RedisAuthenticationError:
                raise                   # retrying cannot fix credentials
            except (RedisConnectionError, RedisTimeoutError):
                if attempt >= self.retry_attempts or self._closed:
                    raise
            attempt += 1
            self.reconnects += 1
            await asyncio.sleep(delay * random.uniform(0.75, 1.25))
            delay = min(delay * 2, self.retry_backoff_max)

    async def _health_check(self, conn: Connection) -> bool:
        if self.health_check_interval is None:
            return True
        loop = asyncio.get_running_loop()
        if loop.time() - conn.last_used < self.health_check_interval:
            return True
        async with asyncio.timeout(self.params.connect_timeout):
            if conn.pubsub_mode:
                return False
            reply = await conn.send(("PING",))
        return reply in (b"PONG", "PONG")

    # -- the shared connection ----------------------------------------------------

    def shared_nowait(self) -> Connection | None:
        """The live shared connection, or None (then await :meth:`shared`)."""
        return self._shared

    async def shared(self) -> Connection:
        """The shared (auto-pipelined) connection, opened or reopened as needed.

        Raises:
            RedisConnectionError: the server stayed unreachable through the retries.
            RedisPoolClosedError-like PoolClosedError: the pool is closed.
        """
        conn = self._shared
        if conn is not None:
            return conn
        if self._closed:
            raise RedisConnectionError("the redis connection pool is closed")
        task = self._shared_task
        if task is None:
            task = self._shared_task = asyncio.ensure_future(self._open_shared())
            # Every caller may have been cancelled: never leave the error unread.
            task.add_done_callback(_consume)
        # shield: one caller's cancellation must not abort the others' connect.
        return await asyncio.shield(task)

    async def _open_shared(self) -> Connection:
        try:
            conn = await self._connect_with_retry()
        finally:
            self._shared_task = None
        if self._closed:
            conn.close()
            raise RedisConnectionError("the redis connection pool is closed")
        conn.on_lost = self._shared_lost
        # Only here: a dedicated connection may wait legitimately (BLPOP).
        conn.reply_timeout = self.params.socket_timeout
        self._shared = conn
        return conn

    def _shared_lost(self, conn: Connection) -> None:
        if self._shared is conn:
            self._shared = None
        conn.close()

    # -- dedicated connections ----------------------------------------------------

    async def _acquire_raw(self, timeout) -> Connection:
        try:
            if timeout is ...:
                return await self._pool.acquire()
            return await self._pool.acquire(timeout=timeout)
        except PoolTimeoutError as exc:
            raise RedisPoolTimeoutError(
                f"no redis connection became free within the acquire timeout "
                f"({self.max_connections} connections in use)") from exc
        except PoolClosedError as exc:
            raise RedisConnectionError("the redis connection pool is closed") from exc

    async def acquire(self, timeout: float | None = ...) -> Connection:  # type: ignore[assignment]
        """A dedicated connection (give it back with :meth:`release`).

        Args:
            timeout: seconds to wait for a free one (default ``acquire_timeout``).

        Raises:
            RedisPoolTimeoutError: none became free in time.
            RedisConnectionError: opening one failed after the retries.
        """
        return await self._acquire_raw(timeout)

    def release(self, conn: Connection, *, discard: bool = False) -> None:
        """Give back a dedicated connection; one still owing replies is closed."""
        conn.push_handler = None
        conn.on_lost = None
        self._pool.release(conn, discard=discard or conn.pending > 0 or conn.pubsub_mode)

    # -- closing ----------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every connection; in-flight commands fail with RedisConnectionError."""
        if self._closed:
            return
        self._closed = True
        shared, self._shared = self._shared, None
        if shared is not None:
            shared.on_lost = None
            shared.close()
        self._pool.close()
        await self._pool.wait_closed()
        if shared is not None:
            await shared.wait_closed()

    disconnect = aclose
