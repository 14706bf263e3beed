"""Explicit pipelines and MULTI/EXEC transactions (with WATCH).

Theory of operation
-------------------
Command methods on a :class:`Pipeline` queue ``(args, parse)`` and return
the pipeline (so calls chain).  :meth:`Pipeline.execute` encodes the queue
as one buffer -- wrapped in MULTI ... EXEC when ``transaction`` is true --
and hands it to a connection as one unit (``Connection.send_packed``),
whose single waiter collects all the replies.

Which connection: a pipeline without WATCH goes to the client's shared
connection.  That is safe even for MULTI/EXEC, because the unit is
contiguous on the wire: no other caller's command can land between MULTI
and EXEC.  After :meth:`Pipeline.watch` the pipeline holds a dedicated
connection (WATCH state belongs to a connection) until execute or reset;
commands issued before :meth:`Pipeline.multi` then run immediately on it,
as in redis-py, so the caller can read the watched keys.

Errors: an error reply inside the pipeline is raised after all replies are
in (the first one, its message prefixed with the command's position), or
left in the result list with ``raise_on_error=False``.  EXEC answering nil
raises :class:`RedisWatchError`.
"""
from __future__ import annotations

from typing import Any, Callable

from flowcoro.errors import InvalidStateError, RedisError, RedisExecAbortError, RedisWatchError
from flowcoro.redis.commands import Commands
from flowcoro.redis.connection import Connection, pack

__all__ = ["Pipeline"]


def _annotate(err: Exception, index: int, args: tuple) -> Exception:
    shown = " ".join(str(a if not isinstance(a, bytes) else a.decode("utf-8", "replace"))
                     for a in args[:3])
    return type(err)(f"Command # {index + 1} ({shown}) of pipeline caused error: {err}")


class Pipeline(Commands):
    """A batch of commands sent in one write; a MULTI/EXEC transaction by default.

    Examples::

        async with r.pipeline() as p:          # transaction=True: MULTI ... EXEC
            p.set("a", 1).incr("a")
            p.get("a")
            ok, n, value = await p.execute()   # [True, 2, b'2']

        async with r.pipeline() as p:          # optimistic locking
            await p.watch("balance")
            bal = int(await p.get("balance"))  # immediate mode until multi()
            p.multi()
            p.set("balance", bal - 10)
            await p.execute()                  # RedisWatchError if balance changed

    Use :meth:`Redis.pipeline` to make one.
    """

    def __init__(self, client: Any, transaction: bool = True):
        self._client = client
        self._pool = client._pool
        self.transaction = transaction
        self._stack: list[tuple[tuple, Callable | None, bytes]] = []
        self._conn: Connection | None = None
        self._watching = False
        self._explicit_multi = False
        self._needs_dedicated = False

    def __repr__(self) -> str:
        return f"<flowcoro.redis.Pipeline {len(self._stack)} commands transaction={self.transaction}>"

    def __len__(self) -> int:
        return len(self._stack)

    def __bool__(self) -> bool:
        return True

    def __await__(self):
        # redis-py allows ``await pipe.set(...)``; queuing is synchronous here.
        async def _self():
            return self
        return _self().__await__()

    async def __aenter__(self) -> "Pipeline":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.reset()

    # -- queuing ---------------------------------------------------------------------

    def _cmd(self, args: tuple, parse: Callable | None = None) -> Any:
        if self._watching and not self._explicit_multi:
            return self._immediate(args, parse)
        # Encode now: a bad argument fails at the call that has it, and
        # execute() only joins bytes.
        self._stack.append((args, parse, pack(args)))
        return self

    def _blocking(self, args: tuple, parse: Callable | None = None) -> Any:
        if not self.transaction:
            # Outside MULTI a blocking command really blocks: keep it off the
            # shared connection.
            self._needs_dedicated = True
        return self._cmd(args, parse)

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Queue any command (the raw reply is returned by execute)."""
        return self._cmd(args)

    async def _dedicated(self) -> Connection:
        if self._conn is None:
            self._conn = await self._pool.acquire()
        return self._conn

    async def _immediate(self, args: tuple, parse: Callable | None) -> Any:
        conn = await self._dedicated()
        reply = await conn.send(args)
        return reply if parse is None else parse(reply)

    # -- WATCH / MULTI ---------------------------------------------------------------------

    async def watch(self, *names: Any) -> bool:
        """WATCH keys on a dedicated connection; commands run immediately until multi().

        Raises:
            InvalidStateError: called after multi().
        """
        if self._explicit_multi:
            raise InvalidStateError("WATCH inside MULTI is not allowed: call watch() before multi()")
        conn = await self._dedicated()
        await conn.send(("WATCH", *names))
        self._watching = True
        return True

    async def unwatch(self) -> bool:
        """UNWATCH (no-op when not watching)."""
        if self._watching and self._conn is not None:
            await self._conn.send(("UNWATCH",))
        self._watching = False
        return True

    def multi(self) -> None:
        """Start queuing the transaction's commands (after watch() and reads).

        Raises:
            InvalidStateError: multi() twice, or with commands already queued.
        """
        if self._explicit_multi:
            raise InvalidStateError("multi() called twice")
        if self._stack:
            raise InvalidStateError("multi() must come before the queued commands")
        self._explicit_multi = True

    # -- running ---------------------------------------------------------------------

    async def execute(self, raise_on_error: bool = True) -> list:
        """Send everything queued in one write; return the replies, in order.

        Raises:
            RedisWatchError: a watched key changed (the transaction did not run).
            RedisExecAbortError: the server refused a queued command (nothing ran).
            RedisResponseError: a command failed (when raise_on_error).
            RedisConnectionError: the connection was lost; the pipeline may
                have run partly (a transaction: wholly or not at all).
        """
        stack = self._stack
        transaction = self.transaction or self._explicit_multi
        if not stack and not self._watching:
            return []
        trace = self._client._trace
        if trace is not None:
            with trace.pipeline(len(stack), transaction):
                return await self._execute(stack, transaction, raise_on_error)
        return await self._execute(stack, transaction, raise_on_error)

    async def _execute(self, stack, transaction, raise_on_error):
        try:
            if self._conn is not None:
                conn = self._conn
            elif self._needs_dedicated and not transaction:
                conn = await self._dedicated()
            else:
                conn = self._pool._shared or await self._pool.shared()
            parts = [packed for _, _, packed in stack]
            if transaction:
                data = b"".join([b"*1\r\n$5\r\nMULTI\r\n", *parts, b"*1\r\n$4\r\nEXEC\r\n"])
                replies = await conn.send_packed(data, len(parts) + 2)
                self._watching = False          # EXEC ends WATCH
                return self._transaction_result(replies, raise_on_error)
            replies = await conn.send_packed(b"".join(parts), len(parts))
            return self._results(replies, raise_on_error)
        finally:
            await self.reset()

    def _results(self, replies: list, raise_on_error: bool) -> list:
        out = []
        first_error = None
        for i, ((args, parse, _), reply) in enumerate(zip(self._stack, replies)):
            if isinstance(reply, Exception):
                if not isinstance(reply, RedisError):
                    raise reply             # a decode error: not the command's failure
                if first_error is None:
                    first_error = _annotate(reply, i, args)
                out.append(reply)
            else:
                out.append(reply if parse is None else parse(reply))
        if first_error is not None and raise_on_error:
            raise first_error
        return out

    def _transaction_result(self, replies: list, raise_on_error: bool) -> list:
        exec_reply = replies[-1]
        if isinstance(exec_reply, Exception):
            if isinstance(exec_reply, RedisExecAbortError):
                for i, ((args, _, _), queued) in enumerate(zip(self._stack, replies[1:-1])):
                    if isinstance(queued, RedisError):
                        raise RedisExecAbortError(
                            f"transaction discarded: {_annotate(queued, i, args)}")
            raise exec_reply
        if isinstance(replies[0], Exception):          # pragma: no cover - MULTI refused
            raise replies[0]
        if exec_reply is None:
            raise RedisWatchError("a watched key changed: the transaction did not run")
        return self._results(exec_reply, raise_on_error)

    async def reset(self) -> None:
        """Forget queued commands, UNWATCH, give back the dedicated connection."""
        self._stack = []
        self._explicit_multi = False
        self._needs_dedicated = False
        conn, self._conn = self._conn, None
        watching, self._watching = self._watching, False
        if conn is None:
            return
        discard = False
        if watching and not conn.is_closing() and conn.pending == 0:
            try:
                await conn.send(("UNWATCH",))
            except BaseException:
                discard = True
                self._pool.release(conn, discard=True)
                raise
        if not discard:
            self._pool.release(conn)

    aclose = reset

