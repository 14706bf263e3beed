"""MySQL/MariaDB backend: a thin adapter over asyncmy.

Theory of operation: asyncmy speaks the protocol (in Cython) and escapes
values; this module translates FlowCoro's ``$n`` parameters (see
:mod:`flowcoro.db._sql`: the statement is split once, cached, and each
``$n`` replaced by asyncmy's escaped literal of ``params[n-1]``), maps
errors, and keeps one rule: a MySQL connection runs one command at a time,
so calls on one connection are serialized by a lock.

Invariants:
* ``_active`` (the connection's turn, a cheap mutex: no lock object or
  future unless calls actually contend) is held for the whole of a
  command, from send to the last packet read (for a cursor: until it is
  closed), so packets of two calls never interleave; waiting calls queue
  in ``_turns`` in FIFO order.
* A call cancelled or failed mid-command leaves the protocol state
  unknown: the connection is marked broken and closed, never reused.
"""
from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl, unquote, urlsplit

from collections import deque

from flowcoro.db._base import Connection, PreparedStatement, QueryResult, _as_mapping
from flowcoro.db._errors import from_mysql
from flowcoro.db._sql import CACHES, split
from flowcoro.errors import DatabaseConnectionError, DatabaseError, InterfaceError

__all__ = ["MySQLConnection", "parse_mysql_url"]

_asyncmy = None
_TEMPLATES = CACHES["mysql"]


def _import():
    global _asyncmy
    if _asyncmy is None:
        try:
            import asyncmy
            import asyncmy.cursors  # noqa: F401
            import asyncmy.errors  # noqa: F401
        except ImportError as e:
            raise ImportError("MySQL/MariaDB support needs asyncmy: "
                              "pip install 'flowcoro[mysql]'") from e
        _asyncmy = asyncmy
    return _asyncmy


def parse_mysql_url(url: str) -> dict:
    """``mysql://user:pw@host:port/db?charset=...`` -> asyncmy.connect() keywords."""
    u = urlsplit(url)
    kw = {"host": u.hostname or "127.0.0.1", "port": u.port or 3306,
          "user": unquote(u.username or "root"), "password": unquote(u.password or ""),
          "database": unquote(u.path.lstrip("/")) or None, "charset": "utf8mb4"}
    for k, v in parse_qsl(u.query):
        kw[k] = int(v) if v.isdigit() else v
    return kw


class MySQLConnection(Connection):
    """A MySQL/MariaDB connection (asyncmy underneath).

    Made by :func:`flowcoro.db.connect` with a ``mysql://`` (or
    ``mariadb://``) URL.  Connections run in autocommit mode outside
    ``transaction()`` blocks.
    """

    # fetch*() run rendered SQL through _rows(); the span shows the $n text
    _sql_methods = ("_query", "_executemany", "fetch", "fetchrow", "fetchval")

    backend = "mysql"
    _quote = "`"

    def __init__(self, raw):
        super().__init__()
        self._c = raw
        self._active = False
        self._turns: deque[asyncio.Future] = deque()

    @classmethod
    async def connect(cls, url: str, *, connect_timeout: float | None = None,
                      **kwargs) -> MySQLConnection:
        """Open a connection; ``kwargs`` go to ``asyncmy.connect`` (over the URL's)."""
        asyncmy = _import()
        kw = parse_mysql_url(url)
        kw.update(kwargs)
        if connect_timeout is not None:
            kw["connect_timeout"] = connect_timeout
        kw["autocommit"] = True
        try:
            raw = await asyncmy.connect(**kw)
        except asyncmy.errors.Error as e:
            raise from_mysql(e) from e
        except OSError as e:
            raise DatabaseConnectionError(f"cannot connect to MySQL at "
                                          f"{kw['host']}:{kw['port']}: {e}") from e
        return cls(raw)

    # -- helpers ---------------------------------------------------------------
    def _render(self, sql: str, params) -> str:
        t = _TEMPLATES.get(sql) or split(sql, "mysql")
        if params is None:
            params = ()
        elif isinstance(params, (str, bytes)):
            raise InterfaceError("params must be a sequence of values, not a string")
        if len(params) < t.nparams:
            raise InterfaceError(f"the statement uses ${t.nparams} but {len(params)} "
                                 f"parameter(s) were given")
        if not t.indexes:
            return t.parts[0]
        lit = self._c.literal
        try:
            # ints (not bools) are their own literal: skip the driver's dispatch
            return t.render([str(v) if type(v) is int else lit(v) for v in params])
        except Exception as e:
            raise InterfaceError(f"cannot send parameters {params!r}: {e}") from e

    def _fail(self, exc: BaseException):
        """Translate a failure; a lost or desynchronized connection is closed."""
        asyncmy = _asyncmy
        if isinstance(exc, asyncmy.errors.Error):
            err = from_mysql(exc)
        elif isinstance(exc, (OSError, asyncio.IncompleteReadError, EOFError)):
            err = DatabaseConnectionError(f"MySQL connection lost: {exc}")
        else:
            err = None
        if err is None or isinstance(err, DatabaseConnectionError):
            self._mark_broken(exc)
            self._abort()
        return err

    def _abort(self) -> None:
        try:
            self._c.close()
        except Exception:           # closing a dead transport may fail: it is dead
            pass

    async def _take_turn(self) -> None:
        """Wait for the connection (FIFO); cheap when nobody else uses it."""
        if not self._active and not self._turns:
            self._active = True
            return
        fut = asyncio.get_running_loop().create_future()
        self._turns.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self._pass_turn()           # the turn came as we gave up: pass it on
            else:
                try:
                    self._turns.remove(fut)
                except ValueError:
                    pass
            raise

    def _pass_turn(self) -> None:
        turns = self._turns
        while turns:
            w = turns.popleft()
            if not w.done():
                w.set_result(None)          # _active stays True: handed over
                return
        self._active = False

    async def _command(self, fn, *args):
        self._check_open()
        await self._take_turn()
        try:
            self._check_open()
            return await fn(*args)
        except BaseException as e:
            err = self._fail(e) if not isinstance(e, DatabaseError) else e
            if err is None:
                raise               # cancellation etc.: connection already dropped
            if err is e:
                raise
            raise err from e
        finally:
            self._pass_turn()

    async def _do_query(self, q: str) -> QueryResult:
        cur = self._c.cursor()
        await cur.execute(q)
        desc = cur.description
        if desc:
            rows = list(await cur.fetchall())
            return QueryResult(rows, [d[0] for d in desc], len(rows), cur.lastrowid or None)
        return QueryResult([], (), cur.rowcount, cur.lastrowid or None)

    async def _rows(self, q: str, one: bool):
        """The hot path of fetch/fetchrow/fetchval: (rows or first row, description).

        Takes the connection's turn itself when it is free (the common case:
        one frame and no future less than going through _command)."""
        if self._active or self._turns or self._broken is not None or self._closed:
            return await self._command(self._rows_now, q, one)
        self._active = True
        try:
            return await self._rows_now(q, one)
        except BaseException as e:
            err = self._fail(e) if not isinstance(e, DatabaseError) else e
            if err is None or err is e:
                raise
            raise err from e
        finally:
            self._pass_turn()

    async def _rows_now(self, q: str, one: bool):
        cur = self._c.cursor()
        await cur.execute(q)
        if one:
            return await cur.fetchone(), cur.description
        return list(await cur.fetchall()), cur.description

    async def fetch(self, sql: str, params=None, *, mapping: bool = False) -> list:
        """All rows of a query: tuples, or dicts with ``mapping=True``."""
        rows, desc = await self._rows(self._render(sql, params), False)
        if mapping and desc:
            cols = [d[0] for d in desc]
            return [dict(zip(cols, r)) for r in rows]
        return rows

    async def fetchrow(self, sql: str, params=None, *, mapping: bool = False):
        """The first row (tuple, or dict with ``mapping=True``), or None."""
        row, desc = await self._rows(self._render(sql, params), True)
        if mapping and row is not None:
            return _as_mapping([d[0] for d in desc], row)
        return row

    async def fetchval(self, sql: str, params=None, column: int = 0):
        """Column ``column`` of the first row, or None when there is no row."""
        row, _ = await self._rows(self._render(sql, params), True)
        return None if row is None else row[column]

    # -- the Connection interface --------------------------------------------------
    async def _query(self, sql, params) -> QueryResult:
        return await self._command(self._do_query, self._render(sql, params))

    async def _executemany(self, sql, seq_of_params) -> int:
        t = split(sql, "mysql")
        # asyncmy rewrites INSERT ... VALUES (%s, ...) into multi-row INSERTs:
        # give it that style (a literal % doubled), parameters reordered.
        fmt = "%s".join(p.replace("%", "%%") for p in t.parts)
        idx = t.indexes
        rows = [[p[i] for i in idx] for p in seq_of_params]
        if not rows:
            return 0

        async def run():
            own = not self._c.get_transaction_status()
            cur = self._c.cursor()
            if own:
                await cur.execute("START TRANSACTION")
            try:
                n = await cur.executemany(fmt, rows)
                if own:
                    await cur.execute("COMMIT")
            except BaseException:
                if own and self._broken is None:
                    try:
                        await cur.execute("ROLLBACK")
                    except BaseException:       # the failure below is the news
                        pass
                raise
            return n if n is not None else len(rows)
        return await self._command(run)

    async def _batches(self, sql, params, batch_size, cursor):
        asyncmy = _asyncmy
        q = self._render(sql, params)
        self._check_open()
        # The turn is held until the cursor is closed: the unbuffered result
        # owns the connection until it is read to the end.
        await self._take_turn()
        try:
            self._check_open()
            cur = self._c.cursor(asyncmy.cursors.SSCursor)
            try:
                try:
                    await cur.execute(q)
                    cursor.columns = tuple(d[0] for d in cur.description or ())
                except BaseException as e:
                    err = self._fail(e)
                    if err is None:
                        raise
                    raise err from e
                while True:
                    try:
                        rows = await cur.fetchmany(batch_size)
                    except BaseException as e:
                        err = self._fail(e)
                        if err is None:
                            raise
                        raise err from e
                    if rows:
                        yield list(rows)
                    if len(rows) < batch_size:
                        break
            finally:
                if not self.is_closed:
                    try:
                        await cur.close()       # reads what is left of the result
                    except BaseException as e:
                        self._fail(e)
        finally:
            self._pass_turn()

    async def _prepare(self, sql: str) -> PreparedStatement:
        t = split(sql, "mysql")
        return PreparedStatement(self, sql, None, t.nparams)

    async def _begin(self, isolation, readonly) -> None:
        if isolation:
            await self._query(f"SET TRANSACTION ISOLATION LEVEL {isolation}", None)
        await self._query("START TRANSACTION READ ONLY" if readonly else "START TRANSACTION",
                          None)

    def _server_in_transaction(self) -> bool:
        return self._broken is None and not self._closed and bool(
            self._c.get_transaction_status())

    @property
    def busy(self) -> bool:
        """True while a command runs on this connection."""
        return self._active

    async def _drain(self) -> None:
        await self._take_turn()
        self._pass_turn()

    async def ping(self) -> None:
        """One round trip (COM_PING); raises if the connection is unusable."""
        await self._command(self._c.ping, False)

    async def _close(self) -> None:
        if self._broken is not None:
            return
        try:
            await asyncio.wait_for(self._c.ensure_closed(), 5)
        except BaseException:       # a dead peer: drop the socket anyway
            self._abort()

    def __repr__(self) -> str:
        state = "broken" if self._broken else ("closed" if self._closed else "open")
        return f"<MySQLConnection {state} tx_depth={self._tx_depth}>"
