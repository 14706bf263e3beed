"""SQLite backend: the stdlib sqlite3 module, one dedicated thread per connection.

Theory of operation: sqlite3 calls block (disk I/O, busy waits on locks),
so each :class:`SQLiteConnection` owns one thread that owns the sqlite3
connection; the loop only puts jobs on the thread's queue and gets the
answer back with ``call_soon_threadsafe``.  The loop never blocks, and
jobs run in the order they were submitted (one thread, one FIFO queue),
which is what keeps a transaction's statements in order.

File databases are switched to WAL mode (readers do not block the writer)
with a busy timeout; ``sqlite://:memory:`` is a private database per
connection.  Parameters: ``$n`` is rewritten to SQLite's ``?n``.

Invariants:
* Only the worker thread touches the sqlite3 connection and its cursors.
* A job's future is completed on the loop thread, never on the worker.
* The sqlite3 connection runs with ``isolation_level=None`` (autocommit):
  transactions are the explicit BEGIN/COMMIT issued by flowcoro.db.
"""
from __future__ import annotations

import asyncio
import itertools
import queue
import sqlite3
import threading
import time
import weakref

from flowcoro.db._base import Connection, PreparedStatement, QueryResult
from flowcoro.db._errors import from_sqlite
from flowcoro.db._sql import split
from flowcoro.errors import InterfaceError

__all__ = ["SQLiteConnection"]

_STOP = object()
_ids = itertools.count(1)


def _deliver(fut, ok, value):
    if fut.cancelled():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class _Worker(threading.Thread):
    """The thread that owns one sqlite3 connection."""

    def __init__(self, path: str, timeout: float, wal: bool, loop):
        super().__init__(name=f"flowcoro-sqlite-{next(_ids)}", daemon=True)
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.path, self.timeout, self.wal = path, timeout, wal
        self.loop = loop
        self.db: sqlite3.Connection | None = None
        self.cursors: dict[int, sqlite3.Cursor] = {}

    def run(self) -> None:
        jobs = self.jobs
        while True:
            job = jobs.get()
            if job is _STOP:
                break
            fn, args, fut = job
            try:
                value, ok = fn(self, *args), True
            except sqlite3.Error as e:
                err = from_sqlite(e)
                err.__cause__ = e
                value, ok = err, False
            except BaseException as e:      # noqa: BLE001 - handed to the caller
                value, ok = e, False
            try:
                self.loop.call_soon_threadsafe(_deliver, fut, ok, value)
            except RuntimeError:            # the loop is closed: nobody waits any more
                pass
        if self.db is not None:
            self.db.close()
            self.db = None


# -- jobs (run on the worker thread) ---------------------------------------------------
def _open(w: _Worker):
    db = sqlite3.connect(w.path, timeout=w.timeout, isolation_level=None,
                         check_same_thread=False, cached_statements=256,
                         uri=w.path.startswith("file:"))
    w.db = db
    if w.wal:
        # WAL is a property of the file: once set it stays.  Switching needs
        # a moment alone with the file, and SQLite answers "locked" at once
        # (no busy wait) when another connection is opening it at the same
        # time: retry for up to the busy timeout (we are on the worker
        # thread, sleeping blocks no loop).
        deadline = time.monotonic() + w.timeout
        while True:
            try:
                if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
    db.execute("PRAGMA foreign_keys=ON")
    return None


def _query(w: _Worker, sql, params):
    cur = w.db.execute(sql, params)
    if cur.description is not None:
        rows = cur.fetchall()
        cols = [d[0] for d in cur.description]
        return QueryResult(rows, cols, len(rows), cur.lastrowid or None)
    return QueryResult([], (), cur.rowcount, cur.lastrowid or None)


def _executemany(w: _Worker, sql, seq):
    db = w.db
    own = not db.in_transaction
    if own:
        db.execute("BEGIN")
    try:
        cur = db.executemany(sql, seq)
        n = cur.rowcount
        if own:
            db.execute("COMMIT")
    except BaseException:
        if own and db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return n


def _cursor_open(w: _Worker, sql, params, key):
    cur = w.db.execute(sql, params)
    w.cursors[key] = cur
    return tuple(d[0] for d in cur.description or ())


def _cursor_fetch(w: _Worker, key, n):
    return w.cursors[key].fetchmany(n)


def _cursor_close(w: _Worker, key):
    cur = w.cursors.pop(key, None)
    if cur is not None:
        cur.close()


def _explain(w: _Worker, sql, nparams):
    w.db.execute("EXPLAIN " + sql, [None] * nparams).fetchall()


def _close_db(w: _Worker):
    for cur in w.cursors.values():
        cur.close()
    w.cursors.clear()
    if w.db is not None:
        w.db.close()
        w.db = None


def _noop(w: _Worker):
    return None


def _in_tx(w: _Worker):
    return w.db.in_transaction


class SQLiteConnection(Connection):
    """A SQLite connection served by its own thread (see the module doc).

    Made by :func:`flowcoro.db.connect` with ``sqlite:///abs/path.db``,
    ``sqlite://relative.db`` or ``sqlite://:memory:``.
    """

    backend = "sqlite"

    def __init__(self, worker: _Worker):
        super().__init__()
        self._w = worker
        self._loop = worker.loop
        self._readonly_tx = False
        self._pending = 0
        self._cursor_ids = itertools.count(1)

    @classmethod
    async def connect(cls, path: str, *, timeout: float = 5.0, wal: bool | None = None,
                      **_ignored) -> SQLiteConnection:
        """Open ``path`` (a file name, ``:memory:`` or a ``file:`` URI).

        Args:
            timeout: seconds a statement waits for another connection's lock.
            wal: WAL journal mode (default: on for files, off for memory).
        """
        if wal is None:
            wal = path != ":memory:" and "mode=memory" not in path
        w = _Worker(path, timeout, wal, asyncio.get_running_loop())
        w.start()
        self = cls(w)
        # A connection dropped without close() must not leave its thread
        # blocked on the queue forever: stop it when the object goes.
        weakref.finalize(self, w.jobs.put, _STOP)
        try:
            await self._call(_open)
        except BaseException:
            w.jobs.put(_STOP)
            raise
        return self

    def _call(self, fn, *args) -> asyncio.Future:
        fut = self._loop.create_future()
        self._w.jobs.put((fn, args, fut))
        return fut

    async def _job(self, fn, *args):
        self._check_open()
        self._pending += 1
        try:
            return await self._call(fn, *args)
        finally:
            self._pending -= 1

    @property
    def busy(self) -> bool:
        """True while calls are queued or running on the worker thread."""
        return self._pending > 0

    def _sql(self, sql: str, params):
        t = split(sql, "sqlite")
        if isinstance(params, (str, bytes)):
            raise InterfaceError("params must be a sequence of values, not a string")
        params = () if params is None else params
        return t.sqlite(), params

    async def _query(self, sql, params) -> QueryResult:
        s, p = self._sql(sql, params)
        return await self._job(_query, s, p)

    async def _executemany(self, sql, seq_of_params) -> int:
        s, _ = self._sql(sql, None)
        return await self._job(_executemany, s, list(seq_of_params))

    async def _batches(self, sql, params, batch_size, cursor):
        s, p = self._sql(sql, params)
        key = next(self._cursor_ids)
        cursor.columns = await self._job(_cursor_open, s, p, key)
        try:
            while True:
                rows = await self._job(_cursor_fetch, key, batch_size)
                if rows:
                    yield rows
                if len(rows) < batch_size:
                    break
        finally:
            if not self.is_closed:
                await self._call(_cursor_close, key)

    async def _drain(self) -> None:
        await self._call(_noop)

    async def _prepare(self, sql: str) -> PreparedStatement:
        t = split(sql, "sqlite")
        await self._job(_explain, t.sqlite(), t.nparams)
        return PreparedStatement(self, sql, None, t.nparams)

    async def _begin(self, isolation, readonly) -> None:
        # SQLite transactions are always serializable; the level was checked
        # by Transaction and needs no SQL.  Read-only: query_only for the
        # transaction's duration.
        if readonly:
            await self._job(_query, "PRAGMA query_only=ON", ())
            self._readonly_tx = True
        try:
            await self._job(_query, "BEGIN", ())
        except BaseException:
            await self._end_readonly()
            raise

    async def _end_readonly(self) -> None:
        if self._readonly_tx:
            self._readonly_tx = False
            await self._job(_query, "PRAGMA query_only=OFF", ())

    async def _commit(self) -> None:
        try:
            await self._job(_query, "COMMIT", ())
        finally:
            await self._end_readonly()

    async def _rollback(self) -> None:
        try:
            await self._job(_query, "ROLLBACK", ())
        finally:
            await self._end_readonly()

    async def in_transaction_now(self) -> bool:
        """Ask the worker whether a transaction is open (includes a BEGIN by hand)."""
        return await self._job(_in_tx)

    def _server_in_transaction(self) -> bool:
        # Read from the loop thread: a plain attribute read of the sqlite3
        # connection, only meaningful when no job is running.
        db = self._w.db
        return db is not None and not self._pending and db.in_transaction

    async def _close(self) -> None:
        w = self._w
        done = self._loop.create_future()
        w.jobs.put((_close_db, (), done))
        w.jobs.put(_STOP)
        await done      # after this the file is closed (WAL checkpointed)

    def __repr__(self) -> str:
        state = "closed" if self.is_closed else "open"
        return f"<SQLiteConnection {self._w.path!r} {state}>"
