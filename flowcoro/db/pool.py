"""A connection pool for flowcoro.db connections (any backend).

Why not :class:`flowcoro.pool.ObjectPool`: that pool is synchronous and
never makes a caller wait (it builds a new object when none is idle); a
connection pool must bound the connections, make callers wait (with a
timeout) when all are out, build connections asynchronously, and check,
age and retire them.  What the two share is the idea of an idle LIFO.

Theory of operation
-------------------
* ``_idle`` is a LIFO of free connections (the most recently used one is
  handed out first: its caches are warm, and the others age out).
* Acquiring a free connection costs no round trip and no task: pop, check
  its age and its state in memory (PostgreSQL notices a dead server on
  its own, see postgres.py), hand it out.  Only a connection idle for
  longer than ``health_check_after`` is pinged first.
* When none is free and the pool is at ``max_size``, the caller waits on
  a future in ``_waiters``; ``release`` hands the connection straight to
  the first waiter (FIFO: no starvation).  ``acquire_timeout`` raises
  :class:`PoolTimeout`.
* ``release`` is synchronous and cheap.  A connection given back with a
  transaction open or calls in flight (its user was cancelled) is settled
  by a background task: in-flight calls drained, the transaction rolled
  back, then it is free again (or closed if that fails).  A broken or
  closed connection is dropped; its slot goes to a waiter (a new
  connection is opened for it) or back to the pool.
* A maintenance timer closes connections idle longer than ``max_idle``
  (down to ``min_size``) and those older than ``max_lifetime``, and
  refills to ``min_size``.

Invariants:
* ``_size`` = connections open or being opened, idle or lent; always
  ``<= max_size``.  A slot is reserved (``_size += 1``) before a
  connection is opened and freed if opening fails.
* A connection is in at most one of: ``_idle``, lent out (``_lent``),
  being settled (``_settling``).
* A waiter future is completed once, by ``_hand`` or its timeout; a
  waiter that gave up (cancelled, timed out) after a connection was
  handed to it gives the connection back.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Callable, Sequence

from flowcoro.db._base import Connection, Cursor, PreparedStatement, QueryResult, Transaction
from flowcoro.errors import (DatabaseError, InvalidArgumentError, PoolClosedError,
                             PoolTimeoutError)

__all__ = ["Pool", "PoolTimeout"]

#: Raised when no connection became free within the acquire timeout
#: (the same class as :class:`flowcoro.errors.PoolTimeoutError`).
PoolTimeout = PoolTimeoutError

_now = time.monotonic


class _Acquire:
    """``await pool.acquire()`` or ``async with pool.acquire() as conn``."""

    __slots__ = ("_pool", "_timeout", "_conn")

    def __init__(self, pool: Pool, timeout):
        self._pool = pool
        self._timeout = timeout
        self._conn = None

    def __await__(self):
        return self._pool._acquire(self._timeout).__await__()

    async def __aenter__(self) -> Connection:
        self._conn = await self._pool._acquire(self._timeout)
        return self._conn

    async def __aexit__(self, *exc) -> bool:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.release(conn)
        return False


class _PoolTransaction:
    """``async with pool.transaction() as conn``: acquire, BEGIN, ..., COMMIT, release."""

    __slots__ = ("_pool", "_kw", "_conn", "_tx")

    def __init__(self, pool, kw):
        self._pool = pool
        self._kw = kw
        self._conn = None
        self._tx: Transaction | None = None

    async def __aenter__(self) -> Connection:
        conn = await self._pool._acquire(None)
        try:
            tx = conn.transaction(**self._kw)
            await tx.start()
        except BaseException:
            self._pool.release(conn)
            raise
        self._conn, self._tx = conn, tx
        return conn

    async def __aexit__(self, et, exc, tb) -> bool:
        conn, tx = self._conn, self._tx
        self._conn = self._tx = None
        try:
            await tx.__aexit__(et, exc, tb)
        finally:
            self._pool.release(conn)
        return False


class Pool:
    """A pool of connections to one database (``flowcoro.db.create_pool``).

    Use it directly for one-statement calls (``await pool.fetchrow(...)``
    borrows a connection for that call only), or borrow a connection::

        async with pool.acquire() as conn:       # or: conn = await pool.acquire()
            ...                                   #     ...; pool.release(conn)
        async with pool.transaction() as conn:   # a connection in a transaction
            ...

    Args:
        connect: ``async () -> Connection``, opens one connection.
        min_size: connections kept open even when idle (opened by ``open()``).
        max_size: connections open at most.
        acquire_timeout: seconds ``acquire`` waits for a free connection
            before raising :class:`PoolTimeout` (None: forever).
        max_idle: seconds an idle connection beyond ``min_size`` is kept.
        max_lifetime: seconds after which a connection is retired (when
            next idle); spreads reconnections, follows server config changes.
        health_check_after: a connection idle this long is pinged (one
            round trip) before it is handed out; 0 pings every time.
        pipeline: PostgreSQL: when all ``max_size`` connections are out,
            a one-statement call (``pool.execute``, ``fetch``, ``fetchrow``,
            ``fetchval``) joins the least loaded connection that runs only
            such calls, up to ``pipeline`` calls in flight on it, instead of
            waiting (libpq pipeline mode: one round trip for many).  1
            turns this off.  Connections lent by ``acquire`` or
            ``transaction`` are never shared.

    Raises:
        InvalidArgumentError: sizes or times out of range.
    """

    def __init__(self, connect: Callable[[], Any], *, min_size: int = 1, max_size: int = 10,
                 acquire_timeout: float | None = 30.0, max_idle: float = 300.0,
                 max_lifetime: float = 3600.0, health_check_after: float = 30.0,
                 backend: str = "?", pipeline: int = 1):
        if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 1:
            raise InvalidArgumentError("max_size", max_size, "must be an int >= 1")
        if not isinstance(min_size, int) or isinstance(min_size, bool) or not 0 <= min_size <= max_size:
            raise InvalidArgumentError("min_size", min_size, "must be an int in [0, max_size]")
        for name, v in (("max_idle", max_idle), ("max_lifetime", max_lifetime),
                        ("health_check_after", health_check_after)):
            if not isinstance(v, (int, float)) or v < 0:
                raise InvalidArgumentError(name, v, "must be a number >= 0")
        if acquire_timeout is not None and (not isinstance(acquire_timeout, (int, float))
                                            or acquire_timeout < 0):
            raise InvalidArgumentError("acquire_timeout", acquire_timeout, "must be >= 0 or None")
        self._connect = connect
        self.min_size = min_size
        self.max_size = max_size
        self.acquire_timeout = acquire_timeout
        self.max_idle = max_idle
        self.max_lifetime = max_lifetime
        self.health_check_after = health_check_after
        self.backend = backend
        if not isinstance(pipeline, int) or isinstance(pipeline, bool) or pipeline < 1:
            raise InvalidArgumentError("pipeline", pipeline, "must be an int >= 1")
        self.pipeline = pipeline
        self._shared: list[Connection] = []     # lent to one-statement calls (pipeline > 1)
        self._idle: deque[Connection] = deque()
        self._lent: set[Connection] = set()
        self._settling: set[Connection] = set()
        self._waiters: deque[asyncio.Future] = deque()
        self._size = 0
        self._tasks: set[asyncio.Task] = set()
        self._state = "new"          # new -> open -> closing -> closed
        self._loop = None
        self._timer = None
        self._drained = None
        #: counters for monitoring: connections opened, dropped as broken,
        #: retired by age or idleness, acquire timeouts, acquires that had to
        #: wait (all connections lent) and the seconds they waited in total.
        self.stats = {"opened": 0, "broken": 0, "retired": 0, "timeouts": 0,
                      "waits": 0, "wait_seconds": 0.0}

    # -- life cycle ------------------------------------------------------------------
    async def open(self) -> Pool:
        """Open ``min_size`` connections and start maintenance; returns the pool."""
        if self._state != "new":
            return self
        self._loop = asyncio.get_running_loop()
        self._state = "open"
        try:
            conns = await asyncio.gather(*(self._new() for _ in range(self.min_size)))
        except BaseException:
            await self.close()
            raise
        for c in conns:
            self._put_idle(c)
        self._schedule_maintenance()
        return self

    def __await__(self):
        return self.open().__await__()

    async def __aenter__(self) -> Pool:
        return await self.open()

    async def __aexit__(self, *exc) -> bool:
        await self.close()
        return False

    @property
    def size(self) -> int:
        """Connections open (idle, lent or being opened)."""
        return self._size

    @property
    def idle(self) -> int:
        """Connections free right now."""
        return len(self._idle)

    @property
    def closed(self) -> bool:
        """True once ``close()`` (or ``terminate()``) was called."""
        return self._state in ("closing", "closed")

    async def close(self, timeout: float | None = None) -> None:
        """Stop lending, wait for lent connections to come back, close them all.

        Waiting acquirers get :class:`PoolClosedError`.  After ``timeout``
        seconds (None: wait as long as it takes) connections still lent are
        closed under their users.
        """
        if self._state == "closed":
            return
        self._state = "closing"
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_exception(PoolClosedError("the pool was closed"))
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        await self._close_idle()
        if self._lent or self._settling:
            self._drained = loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._drained), timeout)
            except asyncio.TimeoutError:
                pass
        for c in list(self._lent) + list(self._settling):
            await self._close_conn(c)
        self._lent.clear()
        self._settling.clear()
        await self._close_idle()
        # Background work (closing given-back connections, settling, opening
        # for a waiter) is waited for, so that close() returns with every
        # connection closed; past the deadline it is cancelled.
        while self._tasks:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            tasks = set(self._tasks)
            _, pending = await asyncio.wait(tasks, timeout=left)
            if pending and left is not None and loop.time() >= deadline:
                for t in pending:
                    t.cancel()
                await asyncio.wait(pending)
                break
        self._state = "closed"

    async def terminate(self) -> None:
        """Close now, lent connections included (their users get errors)."""
        await self.close(timeout=0)

    async def _close_idle(self) -> None:
        while self._idle:
            await self._close_conn(self._idle.pop())

    async def _close_conn(self, conn: Connection) -> None:
        self._size -= 1
        try:
            await conn.close()
        except Exception:           # a dead connection: nothing more to release
            pass

    # -- acquire / release -----------------------------------------------------------
    def acquire(self, timeout: float | None = ...) -> _Acquire:
        """Borrow a connection: ``async with pool.acquire() as conn`` or
        ``conn = await pool.acquire()`` (then ``pool.release(conn)``).

        Args:
            timeout: seconds to wait for a free one (default: the pool's
                ``acquire_timeout``).

        Raises:
            PoolTimeout: none became free in time.
            PoolClosedError: the pool is closed.
            DatabaseConnectionError: a new connection could not be opened.
        """
        return _Acquire(self, timeout)

    def _take_idle(self):
        """A free connection that needs no check, or None (no await: the
        fast path of the one-statement calls)."""
        idle = self._idle
        if idle and self._state == "open":
            conn = idle[-1]
            if (conn._broken is None and not conn._closed
                    and _now() - conn._fc_used < self.health_check_after
                    and _now() - conn._fc_born <= self.max_lifetime):
                idle.pop()
                self._lent.add(conn)
                return conn
        return None

    async def _acquire(self, timeout=...) -> Connection:
        if self._state != "open":
            if self._state == "new":
                await self.open()
            else:
                raise PoolClosedError("the pool is closed")
        idle = self._idle
        while idle:
            conn = idle.pop()
            now = _now()
            if conn._broken is not None or conn._closed:
                self._drop(conn, "broken")
                continue
            if now - conn._fc_born > self.max_lifetime:
                self._drop(conn, "retired")
                continue
            if now - conn._fc_used >= self.health_check_after:
                self._lent.add(conn)
                try:
                    await conn.ping()
                except BaseException as e:
                    self._lent.discard(conn)
                    if isinstance(e, DatabaseError):
                        self._drop(conn, "broken")
                        continue
                    self._hand(conn)            # cancelled: give it back unharmed
                    raise
                return conn
            self._lent.add(conn)
            return conn
        if self._size < self.max_size:
            self._size += 1                     # reserve the slot before awaiting
            try:
                conn = await self._open_one()
            except BaseException:
                self._size -= 1
                self._slot_freed()
                raise
            if self._state != "open":
                await self._close_conn(conn)
                raise PoolClosedError("the pool was closed")
            self._lent.add(conn)
            return conn
        return await self._wait(self.acquire_timeout if timeout is ... else timeout)

    async def _wait(self, timeout) -> Connection:
        loop = self._loop
        fut = loop.create_future()
        self._waiters.append(fut)
        timer = None
        if timeout is not None:
            timer = loop.call_later(timeout, self._expire, fut, timeout)
        t0 = loop.time()
        try:
            return await fut
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._hand(fut.result())        # handed over as we gave up: pass it on
            else:
                try:
                    self._waiters.remove(fut)
                except ValueError:
                    pass
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self.stats["waits"] += 1
            self.stats["wait_seconds"] += loop.time() - t0

    def _expire(self, fut, timeout) -> None:
        if not fut.done():
            self.stats["timeouts"] += 1
            fut.set_exception(PoolTimeout(
                f"no connection free within {timeout} s "
                f"(max_size={self.max_size}, all lent)"))

    def release(self, conn: Connection) -> None:
        """Give a borrowed connection back (synchronous, never blocks).

        A connection with a transaction still open, or calls in flight, is
        settled (drained, rolled back) before anyone else gets it; a broken
        one is closed and replaced on demand.
        """
        try:
            self._lent.remove(conn)
        except KeyError:
            if conn in self._idle or conn in self._settling or self._state != "open":
                return      # released twice, or closed under its user by close(): harmless
            raise InvalidArgumentError("conn", conn, "was not lent by this pool") from None
        if conn._broken is not None or conn._closed:
            self._drop(conn, "broken")
            return
        if conn._tx_depth or conn.busy or conn._server_in_transaction():
            self._settling.add(conn)
            self._spawn(self._settle(conn))
            return
        conn._fc_used = _now()
        self._hand(conn)

    def _hand(self, conn: Connection) -> None:
        """Give a free connection to the first waiter, or make it idle."""
        if self._state != "open":
            self._spawn(self._close_conn(conn))
            self._check_drained()
            return
        waiters = self._waiters
        while waiters:
            w = waiters.popleft()
            if not w.done():
                self._lent.add(conn)
                w.set_result(conn)
                return
        self._put_idle(conn)

    def _put_idle(self, conn: Connection) -> None:
        self._idle.append(conn)
        self._check_drained()

    def _check_drained(self) -> None:
        d = self._drained
        if d is not None and not self._lent and not self._settling and not d.done():
            d.set_result(None)

    async def _settle(self, conn: Connection) -> None:
        ok = False
        try:
            await conn._settle()
            ok = not conn.is_closed
        except BaseException:               # noqa: BLE001 - the connection is dropped
            ok = False
        self._settling.discard(conn)
        if ok:
            conn._fc_used = _now()
            self._hand(conn)
        else:
            self._drop(conn, "broken")

    def _drop(self, conn: Connection, why: str) -> None:
        """Forget a connection (closed in the background); its slot is free now."""
        self.stats[why] += 1
        self._size -= 1
        self._spawn(self._quiet_close(conn))
        self._check_drained()
        self._slot_freed()

    @staticmethod
    async def _quiet_close(conn: Connection) -> None:
        try:
            await conn.close()
        except Exception:           # a dead connection: nothing more to release
            pass

    def _slot_freed(self) -> None:
        if self._waiters and self._state == "open" and self._size < self.max_size:
            self._spawn(self._replace())

    async def _replace(self) -> None:
        """Open a connection for a waiter (a slot freed up)."""
        if self._size >= self.max_size or not self._waiters:
            return
        self._size += 1
        try:
            conn = await self._open_one()
        except BaseException as e:          # noqa: BLE001 - goes to the waiter
            self._size -= 1
            w = self._first_waiter()
            if w is not None and isinstance(e, Exception):
                w.set_exception(e)
            return
        self._hand(conn)

    def _first_waiter(self):
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                return w
        return None

    #: DbSpans when flowcoro.observability.instrument_db() traces this pool.
    _trace = None

    def _connections(self) -> list[Connection]:
        """Every open connection: idle, lent and being settled."""
        return list({*self._idle, *self._lent, *self._settling})

    async def _open_one(self) -> Connection:
        conn = await self._connect()
        conn._fc_born = conn._fc_used = _now()
        conn._fc_share = 0
        if self._trace is not None:
            self._trace.wrap(conn)
        self.stats["opened"] += 1
        return conn

    async def _new(self) -> Connection:
        self._size += 1
        try:
            return await self._open_one()
        except BaseException:
            self._size -= 1
            raise

    def _spawn(self, coro) -> None:
        loop = self._loop or asyncio.get_running_loop()
        t = loop.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # -- maintenance -----------------------------------------------------------------
    def _schedule_maintenance(self) -> None:
        # Often enough that idle and lifetime limits are honoured within
        # about a quarter of the smaller one; not more than every 0.5 s.
        period = max(0.5, min(self.max_idle, self.max_lifetime, 60.0) / 4)
        self._timer = self._loop.call_later(period, self._maintain)

    def _maintain(self) -> None:
        self._timer = None
        if self._state != "open":
            return
        now = _now()
        keep = deque()
        # _idle is LIFO: the left end holds the connections idle the longest.
        total = self._size
        for conn in self._idle:
            if conn.is_closed:
                self._drop(conn, "broken")
                total -= 1
            elif now - conn._fc_born > self.max_lifetime:
                self._drop(conn, "retired")
                total -= 1
            elif now - conn._fc_used > self.max_idle and total > self.min_size:
                self._drop(conn, "retired")
                total -= 1
            else:
                keep.append(conn)
        self._idle = keep
        for _ in range(self.min_size - total):
            self._spawn(self._refill())
        self._schedule_maintenance()

    async def _refill(self) -> None:
        try:
            conn = await self._new()
        except Exception:               # server down: the next round tries again
            return
        self._hand(conn)

    # -- pipelining one-statement calls (PostgreSQL) -----------------------------------
    async def _acquire_shared(self) -> Connection:
        """A connection for one statement: a free one, or, when none is free
        and the pool is full, the least loaded one running only one-statement
        calls (fewer than ``pipeline`` of them)."""
        if not self._idle and self._size >= self.max_size and self._state == "open":
            best = None
            for c in self._shared:
                n = c._fc_share
                if n < self.pipeline and c._broken is None and (best is None or n < best._fc_share):
                    best = c
            if best is not None:
                best._fc_share += 1
                return best
        return await self._acquire()

    def _release_shared(self, conn: Connection) -> None:
        conn._fc_share -= 1
        if conn._fc_share == 0:
            self._shared.remove(conn)
            self.release(conn)

    # -- one-call helpers -------------------------------------------------------------
    async def execute(self, sql: str, params: Sequence | None = None) -> QueryResult:
        """``execute`` on a borrowed connection; see :meth:`Connection.execute`."""
        conn = self._take_idle() or (await self._acquire_shared() if self.pipeline > 1
                                     else await self._acquire())
        if self.pipeline > 1 and conn._fc_share == 0:
            conn._fc_share = 1
            self._shared.append(conn)
        try:
            return await conn.execute(sql, params)
        finally:
            self._release_shared(conn) if self.pipeline > 1 else self.release(conn)

    async def fetch(self, sql: str, params: Sequence | None = None, *, mapping: bool = False) -> list:
        """``fetch`` on a borrowed connection; see :meth:`Connection.fetch`."""
        conn = self._take_idle() or (await self._acquire_shared() if self.pipeline > 1
                                     else await self._acquire())
        if self.pipeline > 1 and conn._fc_share == 0:
            conn._fc_share = 1
            self._shared.append(conn)
        try:
            return await conn.fetch(sql, params, mapping=mapping)
        finally:
            self._release_shared(conn) if self.pipeline > 1 else self.release(conn)

    async def fetchrow(self, sql: str, params: Sequence | None = None, *, mapping: bool = False):
        """``fetchrow`` on a borrowed connection; see :meth:`Connection.fetchrow`."""
        conn = self._take_idle() or (await self._acquire_shared() if self.pipeline > 1
                                     else await self._acquire())
        if self.pipeline > 1 and conn._fc_share == 0:
            conn._fc_share = 1
            self._shared.append(conn)
        try:
            return await conn.fetchrow(sql, params, mapping=mapping)
        finally:
            self._release_shared(conn) if self.pipeline > 1 else self.release(conn)

    async def fetchval(self, sql: str, params: Sequence | None = None, column: int = 0):
        """``fetchval`` on a borrowed connection; see :meth:`Connection.fetchval`."""
        conn = self._take_idle() or (await self._acquire_shared() if self.pipeline > 1
                                     else await self._acquire())
        if self.pipeline > 1 and conn._fc_share == 0:
            conn._fc_share = 1
            self._shared.append(conn)
        try:
            return await conn.fetchval(sql, params, column)
        finally:
            self._release_shared(conn) if self.pipeline > 1 else self.release(conn)

    async def executemany(self, sql: str, seq_of_params) -> int:
        """``executemany`` on a borrowed connection (all or nothing)."""
        conn = await self._acquire()
        try:
            return await conn.executemany(sql, seq_of_params)
        finally:
            self.release(conn)

    async def copy(self, table: str, rows, columns: Sequence[str]) -> int:
        """``copy`` on a borrowed connection; see :meth:`Connection.copy`."""
        conn = await self._acquire()
        try:
            return await conn.copy(table, rows, columns)
        finally:
            self.release(conn)

    def cursor(self, sql: str, params: Sequence | None = None, *, batch_size: int = 1000,
               mapping: bool = False) -> Cursor:
        """A cursor on a connection borrowed until the cursor is closed."""
        return _PoolCursor(self, sql, params, batch_size, mapping)

    iterate = cursor

    async def prepare(self, sql: str) -> PreparedStatement:
        """A statement checked once and run on any connection of the pool."""
        conn = await self._acquire()
        try:
            st = await conn.prepare(sql)
        finally:
            self.release(conn)
        return PreparedStatement(self, sql, st.columns, st.nparams)

    def transaction(self, *, isolation: str | None = None, readonly: bool = False):
        """``async with pool.transaction() as conn``: a borrowed connection in a
        transaction, committed (or rolled back) and given back at the end."""
        return _PoolTransaction(self, {"isolation": isolation, "readonly": readonly})

    def __repr__(self) -> str:
        return (f"<Pool {self.backend} {self._state} size={self._size} idle={len(self._idle)} "
                f"lent={len(self._lent)} waiting={len(self._waiters)}>")


class _PoolCursor(Cursor):
    """A Cursor that borrows its connection on first fetch and gives it back at close."""

    __slots__ = ("_pool",)

    def __init__(self, pool, sql, params, batch_size, mapping):
        super().__init__(None, sql, params, batch_size, mapping)
        self._pool = pool

    async def fetchmany(self, n=None) -> list:
        """The next batch of rows; an empty list at the end."""
        if self._conn is None and not self._closed:
            conn = await self._pool._acquire()
            self._conn = conn

            async def release():
                self._pool.release(conn)
            self._release = release
        return await super().fetchmany(n)
