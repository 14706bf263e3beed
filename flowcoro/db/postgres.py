"""PostgreSQL backend: psycopg's libpq layer (C implementation), pipelined.

Theory of operation
-------------------
psycopg opens the connection (authentication, TLS, every libpq connection
option) and lends us two things: its libpq wrapper (``pgconn``) and its
type adaptation (a ``Transformer``: Python values to PostgreSQL binary
data and back, in C).  The query path is ours and skips psycopg's cursor
machinery, which is where most of its per-query client cost goes.

* The connection stays in libpq **pipeline mode** for its whole life.
  A call sends its statement and a Sync at once and waits on a future;
  calls made concurrently on one connection are on the wire together
  (one round trip for many), and each has its own Sync, so an error in
  one never aborts another's statement (outside an explicit transaction).
* One reader callback is registered on the socket for the connection's
  lifetime (never added and removed per query).  It reads what arrived
  and hands each call its results in FIFO order (``_ops``).  Because it
  watches the socket even between queries, a server that goes away
  (restart, ``pg_terminate_backend``) is noticed at once: the connection
  is marked broken and a pool drops it before anyone asks.
* Statements are prepared on first use, per connection (an LRU of
  ``statement_cache_size`` named statements keyed by the SQL text and
  the parameter types); the Parse travels in the same flight as the
  first execution, so preparing costs no round trip.
* Results come back in binary format by default (``binary=False`` asks
  for text), parsed by psycopg's C loaders.
* ``BEGIN`` is not sent on its own: it rides in the same flight (same
  Sync) as the transaction's first statement, saving a round trip per
  transaction.  In one Sync group the server runs BEGIN, then the
  statement, so the statement can never run outside the transaction; an
  empty transaction sends nothing at all.

Invariants:
* ``_ops`` holds one entry per Sync sent and not yet answered, in order;
  ``_Op.nq`` counts the statements of that entry whose results have not
  ended yet (libpq ends each statement's results with a NULL).
* The Transformer is shared by every call on the connection; it is only
  used between two awaits (dump, then send; or set result, then load),
  never across one.
* Once ``_broken`` is set, nothing is sent again and every pending and
  later call raises :class:`DatabaseConnectionError`.
"""
from __future__ import annotations

import asyncio
import struct
from collections import OrderedDict, deque
from typing import Sequence

from flowcoro.db._base import Connection, PreparedStatement, QueryResult, _as_mapping
from flowcoro.db._errors import class_for_sqlstate, from_psycopg
from flowcoro.errors import DatabaseConnectionError, DatabaseError, InterfaceError

__all__ = ["PostgresConnection"]

_psycopg = None
_pq = None
_TUPLES_OK = 2
_COMMAND_OK = 1
_FATAL_ERROR = 7
_PIPELINE_SYNC = 10
_PIPELINE_ABORTED = 11
_COPY_IN = 4
_AUTO: list = []
_SQLSTATE = None


def _import():
    """psycopg, imported on first use (it is an optional dependency)."""
    global _psycopg, _pq, _AUTO, _SQLSTATE
    if _psycopg is None:
        try:
            import psycopg
            from psycopg import pq
            from psycopg.adapt import PyFormat
        except ImportError as e:
            raise ImportError("PostgreSQL support needs psycopg: "
                              "pip install 'flowcoro[postgres]'") from e
        _pq = pq
        _AUTO = [PyFormat.AUTO] * 64
        _SQLSTATE = pq.DiagnosticField.SQLSTATE
        _psycopg = psycopg
    return _psycopg


class _Op:
    """One flight (statements + one Sync) waiting for its results."""

    __slots__ = ("fut", "results", "nq", "count", "key")

    def __init__(self, fut, nq, count=False, key=None):
        self.fut = fut
        self.nq = nq            # statements whose result stream has not ended
        self.results = [] if not count else None
        self.count = 0 if count else -1   # count mode: sum rows, keep the first error
        self.key = key          # prepared-statement cache key this flight created


class PostgresConnection(Connection):
    """A PostgreSQL connection (see the module doc for how it works).

    Made by :func:`flowcoro.db.connect` with a ``postgresql://`` URL.
    """

    # every statement goes through _run() but executemany's batches
    _sql_methods = ("_run", "_executemany")

    backend = "postgresql"

    def __init__(self, pconn, *, binary: bool = True, statement_cache_size: int = 256):
        super().__init__()
        psycopg = _import()
        self._pconn = pconn
        pg = self._pg = pconn.pgconn
        self._tx = psycopg.adapt.Transformer(pconn)
        self._loop = asyncio.get_running_loop()
        self._fd = pg.socket
        self._ops: deque[_Op] = deque()
        self._stmts: OrderedDict = OrderedDict()
        self._stmt_seq = 0
        self._cache_size = statement_cache_size
        self._to_close: list[bytes] = []
        self._fmt = 1 if binary else 0
        self._encoding = pconn.info.encoding
        self._write_waiter = None
        self._read_waiter = None
        self._gate = None           # a Future while COPY or executemany owns the connection
        self._commit_in_flight = False
        self._begin_sql: bytes | None = None    # a BEGIN not sent yet (see _begin)
        pg.nonblocking = 1
        pg.enter_pipeline_mode()
        self._loop.add_reader(self._fd, self._on_readable)

    @classmethod
    async def connect(cls, url: str, *, binary: bool = True, statement_cache_size: int = 256,
                      connect_timeout: float | None = None, **kwargs) -> PostgresConnection:
        """Open a connection (``url``: a libpq URL or conninfo string).

        Args:
            binary: binary result format (faster; values of types psycopg
                has no binary loader for come back as bytes) or text.
            statement_cache_size: prepared statements kept per connection
                (0: never prepare, every statement is parsed each time).
            connect_timeout: seconds to wait for the connection.
            kwargs: more libpq connection parameters (``password=...``).
        """
        psycopg = _import()
        if connect_timeout is not None:
            kwargs["connect_timeout"] = max(1, int(connect_timeout + 0.999))
        try:
            pconn = await psycopg.AsyncConnection.connect(url, autocommit=True, **kwargs)
        except psycopg.Error as e:
            raise from_psycopg(e) from e
        return cls(pconn, binary=binary, statement_cache_size=statement_cache_size)

    # -- reading and writing (loop callbacks) ---------------------------------------
    def _on_readable(self) -> None:
        pg = self._pg
        try:
            pg.consume_input()
        except Exception as e:              # server closed the socket, network error
            self._lost(e)
            return
        ops = self._ops
        while ops:
            if pg.is_busy():
                break
            r = pg.get_result()
            op = ops[0]
            if r is None:
                if op.nq:
                    op.nq -= 1
                    continue
                break
            st = r.status
            if st == _PIPELINE_SYNC:
                ops.popleft()
                if not op.fut.done():
                    op.fut.set_result(op)
            elif op.count >= 0:
                if st == _COMMAND_OK or st == _TUPLES_OK:
                    n = r.command_tuples
                    if n:
                        op.count += n
                elif op.results is None:       # keep the first error only
                    op.results = [r]
            else:
                op.results.append(r)
        if not ops:
            w = self._read_waiter
            if w is not None:
                self._read_waiter = None
                if not w.done():
                    w.set_result(None)
            else:
                while pg.notifies() is not None:   # LISTEN is not supported: drop them
                    pass
            if pg.status != 0:                     # CONNECTION_BAD
                self._lost(None)

    def _on_writable(self) -> None:
        try:
            done = self._pg.flush() == 0
        except Exception as e:
            self._lost(e)
            return
        if done:
            self._loop.remove_writer(self._fd)
            w, self._write_waiter = self._write_waiter, None
            if w is not None and not w.done():
                w.set_result(None)

    def _flush(self) -> None:
        """Send what libpq buffered; the rest goes when the socket is writable."""
        try:
            pending = self._pg.flush()
        except Exception as e:
            self._lost(e)
            raise self._lost_error() from e
        if pending and self._write_waiter is None:
            self._write_waiter = self._loop.create_future()
            self._loop.add_writer(self._fd, self._on_writable)

    async def _flushed(self) -> None:
        """Wait until libpq's output buffer is on the wire."""
        w = self._write_waiter
        if w is not None:
            await w
            self._check_open()

    def _lost_error(self) -> DatabaseConnectionError:
        cause = self._broken
        err = DatabaseConnectionError(f"PostgreSQL connection lost: {_msg(cause)}",
                                      getattr(cause, "sqlstate", None))
        err.__cause__ = cause
        return err

    def _lost(self, exc) -> None:
        """The connection is gone: fail every pending call, free the socket."""
        if self._broken is not None:
            return
        if exc is None:
            exc = _psycopg.OperationalError(self._pg.get_error_message() or "connection lost")
        # A FATAL error the server sent before closing (57P01 on
        # pg_terminate_backend) says more than libpq's "server closed the
        # connection": prefer it as the cause.
        for op in self._ops:
            for r in (op.results or ()):
                if r.status == _FATAL_ERROR:
                    exc = _psycopg.errors.error_from_result(r, encoding=self._encoding)
                    break
        self._broken = exc
        self._teardown()
        ops, self._ops = self._ops, deque()
        for op in ops:
            if not op.fut.done():
                err = self._lost_error()
                if self._commit_in_flight:
                    err.in_doubt = True
                op.fut.set_exception(err)
        # Waiters are woken, not failed: whoever awaits one checks the
        # connection next (and nobody is left with an unretrieved error).
        for w in (self._write_waiter, self._read_waiter):
            if w is not None and not w.done():
                w.set_result(None)
        self._write_waiter = self._read_waiter = None

    def _teardown(self) -> None:
        try:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        except Exception:       # the loop is closed already: nothing to unregister
            pass
        self._pg.finish()

    # -- sending ------------------------------------------------------------------
    def _dump(self, params):
        if not params:
            return None, None, None
        tx = self._tx
        n = len(params)
        try:
            vals = tx.dump_sequence(params, _AUTO[:n] if n <= 64 else _AUTO[:1] * n)
        except Exception as e:
            raise InterfaceError(f"cannot send parameters {params!r}: {e}") from e
        return vals, tx.types, tx.formats

    def _send(self, sql: str, params, *, prepare: bool = True, count: bool = False) -> _Op:
        """Queue one statement and a Sync; returns the _Op to await."""
        if self._broken is not None or self._closed:
            self._check_open()
        if isinstance(params, (str, bytes)):
            raise InterfaceError("params must be a sequence of values, not a string")
        pg = self._pg
        vals, types, fmts = self._dump(params)
        nq = 1
        key = None
        if self._begin_sql is not None:
            pg.send_query_params(self._begin_sql, None, None, None, 0)
            self._begin_sql = None
            nq += 1
        if prepare and self._cache_size:
            k = (sql, types)
            name = self._stmts.get(k)
            if name is None:
                self._stmt_seq += 1
                name = b"fc_%d" % self._stmt_seq
                self._to_close_check()
                for old in self._to_close:
                    pg.send_query_params(b"DEALLOCATE " + old, None, None, None, 0)
                    nq += 1
                self._to_close.clear()
                pg.send_prepare(name, sql.encode(self._encoding), types)
                nq += 1
                self._stmts[k] = name
                key = k
            else:
                self._stmts.move_to_end(k)
            pg.send_query_prepared(name, vals, fmts, self._fmt)
        else:
            pg.send_query_params(sql.encode(self._encoding), vals, types, fmts, self._fmt)
        pg.pipeline_sync()
        op = _Op(self._loop.create_future(), nq, count, key)
        self._ops.append(op)
        self._flush()
        return op

    def _to_close_check(self) -> None:
        stmts = self._stmts
        while len(stmts) >= self._cache_size:
            _, old = stmts.popitem(last=False)
            self._to_close.append(old)

    async def _wait(self, op: _Op):
        """The op's last result (errors raised as ours)."""
        await op.fut
        res = op.results
        if op.count >= 0:
            if res:
                self._raise(res[0], op)
            return op.count
        for r in res:
            if r.status == _FATAL_ERROR:
                self._raise(r, op)
        return res[-1]

    def _raise(self, r, op):
        if op.key is not None:
            self._stmts.pop(op.key, None)      # the Parse may be what failed
        exc = _psycopg.errors.error_from_result(r, encoding=self._encoding)
        sqlstate = exc.sqlstate
        if sqlstate == "26000":                # our statement is gone (DEALLOCATE ALL)
            self._stmts.clear()
        err = class_for_sqlstate(sqlstate)(_msg(exc), sqlstate)
        raise err from exc

    async def _run(self, sql: str, params, prepare: bool = True):
        if self._gate is not None:
            await self._wait_gate()
        op = self._send(sql, params, prepare=prepare)
        try:
            return await self._wait(op)
        except DatabaseError as e:
            # A prepared statement whose result type changed under it
            # (ALTER TABLE): drop it and run once more, re-prepared, when
            # no transaction would be left inconsistent by the retry.
            if (e.sqlstate == "0A000" and op.key is None and prepare
                    and "cached plan" in str(e) and not self.in_transaction):
                self._stmts.pop((sql, self._dump(params)[1]), None)
                return await self._wait(self._send(sql, params, prepare=prepare))
            raise

    async def _wait_gate(self):
        while self._gate is not None:
            await asyncio.shield(self._gate)
            self._check_open()      # a gate left set when the connection closed
        self._check_open()

    # -- results ------------------------------------------------------------------
    def _columns(self, r) -> list[str]:
        enc = self._encoding
        return [r.fname(i).decode(enc) for i in range(r.nfields)]

    def _rows(self, r) -> list:
        n = r.ntuples
        if not n:
            return []
        tx = self._tx
        tx.set_pgresult(r)
        return tx.load_rows(0, n, tuple)

    # -- the Connection interface ------------------------------------------------------
    async def _query(self, sql: str, params) -> QueryResult:
        r = await self._run(sql, params)
        if r.status == _TUPLES_OK:
            rows = self._rows(r)
            return QueryResult(rows, self._columns(r), len(rows))
        n = r.command_tuples
        return QueryResult([], (), -1 if n is None else n)

    async def fetch(self, sql: str, params: Sequence | None = None, *, mapping: bool = False) -> list:
        """All rows of a query: tuples, or dicts with ``mapping=True``."""
        r = await self._run(sql, params)
        rows = self._rows(r)
        if mapping:
            cols = self._columns(r)
            return [dict(zip(cols, row)) for row in rows]
        return rows

    async def fetchrow(self, sql: str, params: Sequence | None = None, *, mapping: bool = False):
        """The first row (tuple, or dict with ``mapping=True``), or None."""
        r = await self._run(sql, params)
        if not r.ntuples:
            return None
        tx = self._tx
        tx.set_pgresult(r)
        row = tx.load_row(0, tuple)
        return _as_mapping(self._columns(r), row) if mapping else row

    async def fetchval(self, sql: str, params: Sequence | None = None, column: int = 0):
        """Column ``column`` of the first row, or None when there is no row."""
        r = await self._run(sql, params)
        if not r.ntuples:
            return None
        tx = self._tx
        tx.set_pgresult(r)
        return tx.load_row(0, tuple)[column]

    async def _executemany(self, sql: str, seq_of_params) -> int:
        # All the statements and ONE Sync: they run as one implicit
        # transaction when none is open, so the batch is all or nothing;
        # the first error aborts the rest of the pipeline.  The gate keeps
        # other calls on this connection out of the batch while it is sent
        # (they would end its implicit transaction with their own Sync).
        gate = await self._take_gate()
        try:
            pg = self._pg
            sql_b = sql.encode(self._encoding)
            names: dict = {}          # parameter types -> statement for this batch
            # The op goes first, so the reader can consume results while the
            # batch is still being sent; ``nq`` grows with every statement.
            op = _Op(self._loop.create_future(), 0, count=True)
            self._ops.append(op)
            if self._begin_sql is not None:
                pg.send_query_params(self._begin_sql, None, None, None, 0)
                self._begin_sql = None
                op.nq += 1
            try:
                for params in seq_of_params:
                    vals, types, fmts = self._dump(params)
                    name = names.get(types)
                    if name is None:
                        self._stmt_seq += 1
                        name = names[types] = b"fc_m%d" % self._stmt_seq
                        pg.send_prepare(name, sql_b, types)
                        op.nq += 1
                    pg.send_query_prepared(name, vals, fmts, self._fmt)
                    op.nq += 1
                    if op.nq & 2047 == 0:
                        # Bound the client-side buffer: push what we have
                        # and let the reader run.
                        self._flush()
                        await self._flushed()
                for name in names.values():
                    pg.send_query_params(b"DEALLOCATE " + name, None, None, None, 0)
                    op.nq += 1
                pg.pipeline_sync()
            except BaseException:
                # Nothing can take the batch back once partly sent but the
                # Sync: send it, so the server aborts the implicit
                # transaction, unless the connection is gone anyway.
                if self._broken is None and not self._closed:
                    if op.nq:
                        # an error result makes the batch roll back
                        pg.send_query_params(b"SELECT 1/0", None, None, None, 0)
                        op.nq += 1
                    pg.pipeline_sync()
                    self._flush()
                raise
            self._flush()
        finally:
            self._drop_gate(gate)
        return await self._wait(op)

    async def _take_gate(self):
        if self._gate is not None:
            await self._wait_gate()
        self._check_open()
        gate = self._gate = self._loop.create_future()
        return gate

    def _drop_gate(self, gate) -> None:
        self._gate = None
        if not gate.done():
            gate.set_result(None)

    async def _batches(self, sql, params, batch_size, cursor):
        self._stmt_seq += 1
        name = f"fc_cur_{self._stmt_seq}"
        own = not self.in_transaction
        if own:
            await self._run("BEGIN", None, prepare=False)
            self._tx_depth += 1
        ok = False
        try:
            await self._run(f"DECLARE {name} NO SCROLL CURSOR FOR {sql}", params, prepare=False)
            fetch = f"FETCH FORWARD {int(batch_size)} FROM {name}"
            while True:
                r = await self._run(fetch, None, prepare=False)
                if not cursor.columns:
                    cursor.columns = tuple(self._columns(r))
                rows = self._rows(r)
                if rows:
                    yield rows
                if len(rows) < batch_size:
                    break
            ok = True
        finally:
            if not self.is_closed:
                try:
                    if own:
                        self._tx_depth -= 1
                        await self._run("COMMIT" if ok else "ROLLBACK", None, prepare=False)
                    elif ok or self._pg.transaction_status == 2:    # INTRANS: still usable
                        await self._run(f"CLOSE {name}", None, prepare=False)
                except DatabaseError:
                    if ok:
                        raise
            elif own:
                self._tx_depth -= 1

    async def _simple(self, sql: str) -> None:
        await self._run(sql, None, prepare=False)

    async def _begin(self, isolation, readonly) -> None:
        # Deferred: sent with the next statement (see the module doc).
        self._check_open()
        sql = "BEGIN"
        if isolation:
            sql += " ISOLATION LEVEL " + isolation
        if readonly:
            sql += " READ ONLY"
        self._begin_sql = sql.encode()

    async def _rollback(self) -> None:
        if self._begin_sql is not None:
            self._begin_sql = None          # nothing was sent: nothing to undo
            return
        await self._run("ROLLBACK", None, prepare=False)

    async def _commit(self) -> None:
        if self._begin_sql is not None:
            self._begin_sql = None          # an empty transaction
            return
        self._commit_in_flight = True
        try:
            await self._run("COMMIT", None, prepare=False)
        finally:
            self._commit_in_flight = False

    def _server_in_transaction(self) -> bool:
        # libpq's view after the last answer: 0 IDLE, 1 ACTIVE (a query in
        # flight), 2 INTRANS, 3 INERROR, 4 UNKNOWN (connection bad).
        return self._broken is None and not self._closed and (
            self._begin_sql is not None or self._pg.transaction_status in (2, 3))

    @property
    def busy(self) -> bool:
        """True while calls are in flight on this connection."""
        return bool(self._ops) or self._gate is not None

    async def _drain(self) -> None:
        # A Sync alone: its answer comes after every call sent before it
        # (the futures of cancelled calls cannot be awaited).
        while self._gate is not None:
            await self._wait_gate()
        if self._ops:
            self._check_open()
            self._pg.pipeline_sync()
            op = _Op(self._loop.create_future(), 0)
            self._ops.append(op)
            self._flush()
            await op.fut

    async def _prepare(self, sql: str) -> PreparedStatement:
        # Check the statement now (Parse + Describe of an unnamed statement),
        # so a mistake raises here; executions use the per-connection cache.
        if self._gate is not None:
            await self._wait_gate()
        self._check_open()
        pg = self._pg
        nq = 2
        if self._begin_sql is not None:
            pg.send_query_params(self._begin_sql, None, None, None, 0)
            self._begin_sql = None
            nq += 1
        pg.send_prepare(b"", sql.encode(self._encoding), None)
        pg.send_describe_prepared(b"")
        pg.pipeline_sync()
        op = _Op(self._loop.create_future(), nq)
        self._ops.append(op)
        self._flush()
        r = await self._wait(op)
        return PreparedStatement(self, sql, tuple(self._columns(r)) if r.nfields else (),
                                 r.nparams)

    async def _copy(self, table, rows, columns) -> int:
        """Binary COPY FROM STDIN: rows dumped by psycopg's C binary dumpers."""
        self._check_open()
        psycopg = _psycopg
        qt = self._ident(table)
        # Column types decide the binary encoding of each value.
        types = await self.fetch(
            "SELECT a.attname, a.atttypid FROM pg_attribute a "
            "WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            [qt])
        by_name = dict(types)
        try:
            oids = [by_name[c] for c in columns]
        except KeyError as e:
            raise InterfaceError(f"copy: table {table!r} has no column {e.args[0]!r}") from None
        tx = psycopg.adapt.Transformer(self._pconn)
        tx.set_dumper_types(oids, _pq.Format.BINARY)
        fmt_row = _format_row_binary()
        cols = ", ".join(self._ident(c) for c in columns)
        stmt = f"COPY {qt} ({cols}) FROM STDIN (FORMAT BINARY)".encode(self._encoding)
        gate = await self._take_gate()
        pg = self._pg
        try:
            while self._ops:                 # COPY needs the pipeline empty
                await self._drained()
            pg.exit_pipeline_mode()
            pg.send_query(stmt)
            self._flush()
            r = await self._next_result()
            if r.status != _COPY_IN:
                await self._skip_results()
                self._raise(r, _Op(None, 0))
            # (in COPY_IN state libpq hands out no further result: no NULL to read)
            buf = bytearray(b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0))
            try:
                for row in rows:
                    fmt_row(row, tx, buf)
                    if len(buf) > 1 << 18:
                        await self._put_copy(bytes(buf))
                        buf.clear()
            except DatabaseError:
                raise
            except Exception as e:
                pg.put_copy_end(f"flowcoro: {e}".encode())
                self._flush()
                try:
                    await self._finish_copy()   # the server's "COPY failed": expected
                except DatabaseError:
                    pass
                raise InterfaceError(f"copy: cannot send a row: {e}") from e
            buf += b"\xff\xff"
            await self._put_copy(bytes(buf))
            pg.put_copy_end(None)
            self._flush()
            await self._finish_copy()
        finally:
            if self._broken is None and not self._closed and pg.pipeline_status == 0:
                pg.enter_pipeline_mode()
            self._drop_gate(gate)
        return len(rows)

    async def _put_copy(self, data: bytes) -> None:
        pg = self._pg
        while True:
            n = pg.put_copy_data(data)
            if n == 1:
                break
            if n < 0:
                self._lost(None)
                raise self._lost_error()
            self._flush()                       # 0: libpq's buffer is full
            await self._flushed()
        self._flush()
        if self._write_waiter is not None:
            await self._flushed()

    async def _finish_copy(self) -> None:
        r = await self._next_result()
        await self._skip_results()
        if r.status == _FATAL_ERROR:
            self._raise(r, _Op(None, 0))

    async def _next_result(self):
        pg = self._pg
        while True:
            self._check_open()
            if not pg.is_busy():
                r = pg.get_result()
                if r is None:
                    raise DatabaseConnectionError("PostgreSQL: no result for COPY")
                return r
            await self._drained()

    async def _skip_results(self) -> None:
        pg = self._pg
        while True:
            while pg.is_busy():
                await self._drained()
            if pg.get_result() is None:
                return

    async def _drained(self) -> None:
        """Wait for the next read (no calls pending: the reader wakes us)."""
        w = self._read_waiter
        if w is None:
            w = self._read_waiter = self._loop.create_future()
        await w
        self._check_open()

    async def _close(self) -> None:
        if self._broken is not None:
            return                  # torn down when it broke
        ops = self._ops
        self._ops = deque()
        for op in ops:
            if not op.fut.done():
                op.fut.set_exception(InterfaceError("the PostgreSQL connection was closed"))
        for w in (self._write_waiter, self._read_waiter, self._gate):
            if w is not None and not w.done():
                w.set_result(None)
        self._teardown()

    def __repr__(self) -> str:
        state = "broken" if self._broken else ("closed" if self._closed else "open")
        return f"<PostgresConnection {state} pending={len(self._ops)} tx_depth={self._tx_depth}>"


def _msg(exc) -> str:
    if exc is None:
        return "connection lost"
    return (str(exc).strip() or exc.__class__.__name__).replace("\n", " ")


_FRB = None


def _format_row_binary():
    """psycopg's C binary COPY row encoder (its pure-Python one otherwise)."""
    global _FRB
    if _FRB is None:
        try:
            from psycopg_c._psycopg import format_row_binary as f
        except ImportError:                 # pragma: no cover - python implementation
            from psycopg._copy_base import format_row_binary as f
        _FRB = f
    return _FRB
