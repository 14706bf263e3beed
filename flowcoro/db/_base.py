"""The backend-independent part of flowcoro.db: results, transactions,
cursors, prepared statements and the connection interface.

Theory of operation: a backend connection implements a handful of
primitives (``_query``, ``_executemany``, ``_batches``, ``_begin``,
``_simple``, ``_prepare``, ``_close``); everything the user calls
(``execute``, ``fetch*``, ``cursor``, ``transaction``, ...) is written
once here on top of them.  Hot paths a backend can do faster (PostgreSQL's
``fetchrow``) are overridden there.

Invariant (transactions): ``Connection._tx_depth`` counts the
``transaction()`` blocks open on the connection; 0 means the connection
is in autocommit mode.  Depth 1 is a real transaction (BEGIN ... COMMIT),
deeper ones are savepoints named ``fc_sp_<depth>``.  On exit with an error
the block rolls back *its* level only; a savepoint rolled back leaves the
outer transaction usable.
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Iterable, Sequence

from flowcoro.errors import DatabaseConnectionError, DatabaseError, InterfaceError

__all__ = ["QueryResult", "Connection", "Transaction", "Cursor", "PreparedStatement",
           "ISOLATION_LEVELS"]

#: Isolation levels accepted by ``transaction(isolation=...)``.
ISOLATION_LEVELS = {
    "read uncommitted": "READ UNCOMMITTED",
    "read committed": "READ COMMITTED",
    "repeatable read": "REPEATABLE READ",
    "serializable": "SERIALIZABLE",
}


def isolation_sql(isolation: str | None) -> str | None:
    """The SQL spelling of an isolation level name (None stays None)."""
    if isolation is None:
        return None
    try:
        return ISOLATION_LEVELS[isolation.lower().replace("_", " ")]
    except (KeyError, AttributeError):
        raise InterfaceError(f"isolation={isolation!r}: expected one of "
                             f"{sorted(ISOLATION_LEVELS)}") from None


class QueryResult:
    """What ``execute`` returns.

    Attributes:
        rows: list of tuples, one per row (empty for statements without
            a result set).
        columns: the column names (empty for statements without a result set).
        rowcount: rows affected by INSERT/UPDATE/DELETE, or rows returned
            by a SELECT; -1 when the backend does not say.
        lastrowid: the id the last INSERT generated (SQLite's rowid,
            MySQL's AUTO_INCREMENT); None on PostgreSQL (use ``RETURNING``).
    """

    __slots__ = ("rows", "columns", "rowcount", "lastrowid")

    def __init__(self, rows: list, columns: Sequence[str], rowcount: int = -1,
                 lastrowid: int | None = None):
        self.rows = rows
        self.columns = tuple(columns)
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def mappings(self) -> list[dict[str, Any]]:
        """The rows as dicts, column name -> value."""
        cols = self.columns
        return [dict(zip(cols, r)) for r in self.rows]

    def scalar(self) -> Any:
        """The first column of the first row, or None when there is no row."""
        return self.rows[0][0] if self.rows else None

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return (f"<QueryResult columns={list(self.columns)} rows={len(self.rows)} "
                f"rowcount={self.rowcount} lastrowid={self.lastrowid}>")


def _as_mapping(columns, row):
    return dict(zip(columns, row))


class Transaction:
    """``async with conn.transaction(): ...`` — commit on success, roll back on error.

    The outermost block issues BEGIN (with the isolation level and read-only
    options) and COMMIT or ROLLBACK; a block nested inside another one on
    the same connection is a savepoint, released on success and rolled back
    to on error (the outer transaction goes on).

    Can also be driven by hand: ``tx = conn.transaction(); await tx.start();
    ...; await tx.commit()`` (or ``await tx.rollback()``).

    If the connection breaks inside the block, the server has rolled the
    transaction back: the block raises :class:`DatabaseConnectionError` and
    nothing of it was applied.
    """

    __slots__ = ("_conn", "_isolation", "_readonly", "_level", "_state")

    def __init__(self, conn: Connection, isolation: str | None = None, readonly: bool = False):
        self._conn = conn
        self._isolation = isolation_sql(isolation)
        self._readonly = bool(readonly)
        self._level = 0
        self._state = "new"          # new -> started -> (committed | rolled back)

    @property
    def savepoint(self) -> str | None:
        """The savepoint's name for a nested block, None for the outer one."""
        return f"fc_sp_{self._level}" if self._level > 1 else None

    async def start(self) -> None:
        """BEGIN (or SAVEPOINT when a transaction is already open)."""
        if self._state != "new":
            raise InterfaceError(f"transaction already {self._state}")
        conn = self._conn
        conn._check_open()
        level = conn._tx_depth + 1
        if level == 1:
            await conn._begin(self._isolation, self._readonly)
        else:
            if self._isolation or self._readonly:
                raise InterfaceError("isolation and readonly apply to the outermost "
                                     "transaction only, not to a nested one (savepoint)")
            await conn._simple(f"SAVEPOINT fc_sp_{level}")
        self._level = level
        conn._tx_depth = level
        self._state = "started"

    def _leave(self, state: str) -> Connection:
        if self._state != "started":
            raise InterfaceError(f"transaction not started (state: {self._state})")
        conn = self._conn
        if conn._tx_depth != self._level:
            raise InterfaceError("transactions must end in the reverse order they started "
                                 f"(this one is level {self._level}, the innermost open "
                                 f"is {conn._tx_depth})")
        conn._tx_depth = self._level - 1
        self._state = state
        return conn

    async def commit(self) -> None:
        """COMMIT (or RELEASE SAVEPOINT for a nested block)."""
        conn = self._leave("committed")
        if self._level == 1:
            await conn._commit()
        else:
            await conn._simple(f"RELEASE SAVEPOINT fc_sp_{self._level}")

    async def rollback(self) -> None:
        """ROLLBACK (or ROLLBACK TO SAVEPOINT for a nested block)."""
        conn = self._leave("rolled back")
        if conn.is_closed:
            return              # the server dropped the transaction with the session
        if self._level == 1:
            await conn._rollback()
        else:
            sp = f"fc_sp_{self._level}"
            await conn._simple(f"ROLLBACK TO SAVEPOINT {sp}")
            await conn._simple(f"RELEASE SAVEPOINT {sp}")

    async def __aenter__(self) -> Connection:
        await self.start()
        return self._conn

    async def __aexit__(self, et, exc, tb) -> bool:
        if self._state != "started":
            return False        # committed or rolled back by hand inside the block
        if et is None:
            await self.commit()
            return False
        try:
            await self.rollback()
        except DatabaseError:
            # The block's own error is the one to report.  A rollback that
            # fails leaves the session in an unknown state: close it (the
            # server then drops the transaction with the session).
            await self._conn.close()
        return False

    def __repr__(self) -> str:
        return f"<Transaction level={self._level} {self._state}>"


class Cursor:
    """Rows of a large result, a batch at a time (``async for row in cur``).

    The rows are read from a server-side cursor (PostgreSQL ``DECLARE`` /
    ``FETCH``, MySQL unbuffered result, SQLite stepping the statement), so
    the whole result is never in memory.  Use it as ``async with`` (or
    exhaust it) so the server-side cursor is closed promptly::

        async with conn.cursor("SELECT * FROM big WHERE k = $1", [k]) as cur:
            async for row in cur:
                ...
    """

    __slots__ = ("_conn", "_sql", "_params", "_batch_size", "_mapping", "_gen", "_buf",
                 "_pos", "columns", "_closed", "_release")

    def __init__(self, conn, sql, params, batch_size, mapping, release=None):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InterfaceError(f"batch_size={batch_size!r}: must be an int >= 1")
        self._conn = conn
        self._sql = sql
        self._params = params
        self._batch_size = batch_size
        self._mapping = mapping
        self._gen = None
        self._buf: list = []
        self._pos = 0
        self.columns: tuple[str, ...] = ()    #: column names, known after the first batch
        self._closed = False
        self._release = release            # pool cursors: give the connection back at close

    def __aiter__(self) -> Cursor:
        return self

    async def __anext__(self):
        if self._pos >= len(self._buf):
            batch = await self.fetchmany()
            if not batch:
                raise StopAsyncIteration
            self._buf, self._pos = batch, 0
        row = self._buf[self._pos]
        self._pos += 1
        return row

    async def fetchmany(self, n: int | None = None) -> list:
        """The next batch of rows (at most ``batch_size``; ``n`` is ignored
        beyond the first batch size); an empty list at the end."""
        if self._pos < len(self._buf):          # rows left from __anext__
            rest = self._buf[self._pos:]
            self._buf, self._pos = [], 0
            return rest
        if self._closed:
            return []
        if self._gen is None:
            self._gen = self._conn._batches(self._sql, self._params, self._batch_size, self)
        try:
            batch = await self._gen.__anext__()
        except StopAsyncIteration:
            await self.aclose()
            return []
        except BaseException:
            await self.aclose()
            raise
        if self._mapping:
            cols = self.columns
            batch = [dict(zip(cols, r)) for r in batch]
        return batch

    async def aclose(self) -> None:
        """Close the server-side cursor (and end its implicit transaction)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._gen is not None:
                await self._gen.aclose()
        finally:
            if self._release is not None:
                release, self._release = self._release, None
                await release()

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc) -> bool:
        await self.aclose()
        return False


class PreparedStatement:
    """A statement parsed once and run many times with new parameters.

    Made by ``await conn.prepare(sql)`` (or ``pool.prepare(sql)``).  On
    PostgreSQL it is a server-side prepared statement (checked at
    ``prepare`` time: a wrong statement raises there); on SQLite the
    sqlite3 statement cache keeps the compiled statement; on MySQL the
    statement is parsed for its parameters once, client-side (asyncmy
    binds parameters client-side).

    Attributes:
        sql: the statement text.
        columns: the result's column names when known at prepare time
            (PostgreSQL), else None.
    """

    __slots__ = ("_target", "sql", "columns", "nparams")

    def __init__(self, target, sql: str, columns=None, nparams=None):
        self._target = target
        self.sql = sql
        self.columns = columns
        self.nparams = nparams

    async def execute(self, params: Sequence | None = None) -> QueryResult:
        """Run it; see :meth:`Connection.execute`."""
        return await self._target.execute(self.sql, params)

    async def fetch(self, params: Sequence | None = None, *, mapping: bool = False) -> list:
        """All rows; see :meth:`Connection.fetch`."""
        return await self._target.fetch(self.sql, params, mapping=mapping)

    async def fetchrow(self, params: Sequence | None = None, *, mapping: bool = False):
        """The first row or None; see :meth:`Connection.fetchrow`."""
        return await self._target.fetchrow(self.sql, params, mapping=mapping)

    async def fetchval(self, params: Sequence | None = None, column: int = 0):
        """One value of the first row; see :meth:`Connection.fetchval`."""
        return await self._target.fetchval(self.sql, params, column)

    async def executemany(self, seq_of_params: Iterable[Sequence]) -> int:
        """Run it once per parameter sequence; see :meth:`Connection.executemany`."""
        return await self._target.executemany(self.sql, seq_of_params)

    def cursor(self, params: Sequence | None = None, *, batch_size: int = 1000,
               mapping: bool = False) -> Cursor:
        """Iterate over its rows; see :meth:`Connection.cursor`."""
        return self._target.cursor(self.sql, params, batch_size=batch_size, mapping=mapping)

    def __repr__(self) -> str:
        return f"<PreparedStatement {self.sql!r}>"


class Connection:
    """One database session (PostgreSQL, MySQL/MariaDB or SQLite).

    Made by :func:`flowcoro.db.connect` or lent by a pool.  Parameters are
    written ``$1, $2, ...`` on every backend and passed as a sequence.

    Calls may be made concurrently from several tasks: PostgreSQL pipelines
    them on the wire, MySQL and SQLite run them one after the other.  They
    share the session (and its transaction), so give each task its own
    connection, from a pool, when they must not.

    Attributes:
        backend: ``"postgresql"``, ``"mysql"`` or ``"sqlite"``.
    """

    backend = "?"
    #: True when identifiers are quoted with backquotes (MySQL).
    _quote = '"'
    #: The methods that run SQL text given as their first argument, each
    #: statement through exactly one of them (flowcoro.observability's
    #: instrument_db() wraps these per connection).
    _sql_methods = ("_query", "_executemany")

    def __init__(self):
        self._tx_depth = 0
        self._closed = False
        self._broken: BaseException | None = None

    # -- state ---------------------------------------------------------------
    @property
    def is_closed(self) -> bool:
        """True once closed by ``close()`` or broken (the server went away)."""
        return self._closed or self._broken is not None

    @property
    def in_transaction(self) -> bool:
        """True while a transaction is open (by ``transaction()`` or by hand)."""
        return self._tx_depth > 0 or self._server_in_transaction()

    def _server_in_transaction(self) -> bool:          # backends refine this
        return False

    @property
    def busy(self) -> bool:
        """True while calls are in flight on this connection."""
        return False

    async def _drain(self) -> None:
        """Wait until the calls in flight (those of a cancelled task) are done."""

    async def _settle(self) -> None:
        """Make a connection given back in a doubtful state clean again:
        drain the calls in flight, roll back an open transaction."""
        await self._drain()
        if self._tx_depth or self._server_in_transaction():
            self._tx_depth = 0
            await self._rollback()

    def _check_open(self) -> None:
        if self._broken is not None:
            raise DatabaseConnectionError(
                f"the {self.backend} connection was lost: {self._broken}") from self._broken
        if self._closed:
            raise InterfaceError(f"the {self.backend} connection is closed")

    def _mark_broken(self, exc: BaseException | None = None) -> None:
        if self._broken is None:
            self._broken = exc or DatabaseConnectionError("connection lost")

    # -- queries ---------------------------------------------------------------
    async def execute(self, sql: str, params: Sequence | None = None) -> QueryResult:
        """Run one statement and return its :class:`QueryResult`.

        Args:
            sql: one SQL statement with ``$1, $2, ...`` parameters.
            params: the parameter values (a sequence), or None.

        Raises:
            DatabaseError: the subclass for what went wrong (IntegrityError,
                ProgrammingError, DataError, OperationalError,
                DatabaseConnectionError); the driver's error is the cause.
        """
        return await self._query(sql, params)

    async def fetch(self, sql: str, params: Sequence | None = None, *,
                    mapping: bool = False) -> list:
        """All rows of a query: tuples, or dicts with ``mapping=True``."""
        r = await self._query(sql, params)
        return r.mappings() if mapping else r.rows

    async def fetchrow(self, sql: str, params: Sequence | None = None, *,
                       mapping: bool = False):
        """The first row (tuple, or dict with ``mapping=True``), or None."""
        r = await self._query(sql, params)
        if not r.rows:
            return None
        return _as_mapping(r.columns, r.rows[0]) if mapping else r.rows[0]

    async def fetchval(self, sql: str, params: Sequence | None = None, column: int = 0):
        """Column ``column`` of the first row, or None when there is no row."""
        r = await self._query(sql, params)
        return r.rows[0][column] if r.rows else None

    async def executemany(self, sql: str, seq_of_params: Iterable[Sequence]) -> int:
        """Run ``sql`` once per parameter sequence; returns the total rowcount.

        All or nothing: outside a transaction the batch runs in one of its
        own; inside one it joins it.  PostgreSQL pipelines the whole batch
        (one round trip); MySQL gets asyncmy's multi-row INSERT rewrite.
        """
        self._check_open()
        return await self._executemany(sql, seq_of_params)

    def cursor(self, sql: str, params: Sequence | None = None, *, batch_size: int = 1000,
               mapping: bool = False) -> Cursor:
        """A :class:`Cursor` over a large result, read ``batch_size`` rows at a time.

        On PostgreSQL outside a transaction, the cursor runs in a transaction
        of its own, committed when the cursor is closed.
        """
        return Cursor(self, sql, params, batch_size, mapping)

    iterate = cursor

    async def prepare(self, sql: str) -> PreparedStatement:
        """A :class:`PreparedStatement` for ``sql`` on this connection."""
        self._check_open()
        return await self._prepare(sql)

    def transaction(self, *, isolation: str | None = None, readonly: bool = False) -> Transaction:
        """A :class:`Transaction` (nested ones are savepoints).

        Args:
            isolation: ``"read committed"``, ``"repeatable read"``,
                ``"serializable"`` or ``"read uncommitted"``; None for the
                server's default.  SQLite is always serializable (the
                option is checked, then ignored).
            readonly: start a read-only transaction (writes fail).
        """
        return Transaction(self, isolation, readonly)

    async def copy(self, table: str, rows: Iterable[Sequence], columns: Sequence[str]) -> int:
        """Insert many rows into ``table`` as fast as the backend allows.

        PostgreSQL uses binary ``COPY ... FROM STDIN``; MySQL and SQLite use
        multi-row INSERTs.  Returns the number of rows inserted.  Table and
        column names are quoted as identifiers.
        """
        self._check_open()
        return await self._copy(table, list(rows), list(columns))

    def _ident(self, name: str) -> str:
        q = self._quote
        return ".".join(q + p.replace(q, q + q) + q for p in name.split("."))

    async def _copy(self, table, rows, columns) -> int:
        cols = ", ".join(self._ident(c) for c in columns)
        ph = ", ".join(f"${i + 1}" for i in range(len(columns)))
        sql = f"INSERT INTO {self._ident(table)} ({cols}) VALUES ({ph})"
        await self._executemany(sql, rows)
        return len(rows)

    async def ping(self) -> None:
        """One round trip to the server; raises if the connection is unusable."""
        self._check_open()
        await self._query("SELECT 1", None)

    async def close(self) -> None:
        """Close the connection (an open transaction is rolled back by the server)."""
        if self._closed:
            return
        self._closed = True
        await self._close()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc) -> bool:
        await self.close()
        return False

    # -- primitives, per backend ------------------------------------------------
    async def _query(self, sql: str, params) -> QueryResult:
        raise NotImplementedError

    async def _executemany(self, sql: str, seq_of_params) -> int:
        raise NotImplementedError

    def _batches(self, sql: str, params, batch_size: int, cursor: Cursor) -> AsyncIterator[list]:
        raise NotImplementedError

    async def _simple(self, sql: str) -> None:
        await self._query(sql, None)

    async def _begin(self, isolation: str | None, readonly: bool) -> None:
        raise NotImplementedError

    async def _commit(self) -> None:
        await self._simple("COMMIT")

    async def _rollback(self) -> None:
        await self._simple("ROLLBACK")

    async def _prepare(self, sql: str) -> PreparedStatement:
        return PreparedStatement(self, sql)

    async def _close(self) -> None:
        raise NotImplementedError
