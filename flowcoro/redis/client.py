"""Redis: the client object users hold.

Theory of operation
-------------------
Each command method (from :class:`~flowcoro.redis.commands.Commands`)
ends in :meth:`Redis._cmd`, which puts the command on the pool's shared
connection and awaits its reply; the connection coalesces everything
issued in one loop iteration into one write (automatic pipelining), so
50 tasks awaiting ``get`` at once cost one system call each way, not 50.

Commands that would hold up that shared connection (BLPOP and the other
blocking commands, XREAD with BLOCK) or change its state (WATCH, pub/sub)
run on a dedicated connection from the same pool instead.  If such a
caller is cancelled while its command is in flight, that connection is
closed rather than reused: its late reply cannot reach anyone else.
"""
from __future__ import annotations

import hashlib
from typing import Any, AsyncIterator, Callable

from flowcoro.errors import InvalidArgumentError, RedisNoScriptError
from flowcoro.redis.commands import Commands
from flowcoro.redis.connection import ConnectionParams, parse_url
from flowcoro.redis.pool import ConnectionPool

__all__ = ["Redis", "Script"]

#: Commands that block the connection until data arrives: never on the shared one.
BLOCKING_COMMANDS = frozenset({
    "BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BZPOPMIN", "BZPOPMAX", "BLMPOP", "BZMPOP",
    "WAIT", "WAITAOF",
})
#: Commands that change per-connection state; they would corrupt the shared
#: connection for every other caller.
STATEFUL_COMMANDS = frozenset({
    "SELECT", "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "SUBSCRIBE", "PSUBSCRIBE",
    "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR", "QUIT", "RESET",
    "HELLO", "AUTH",
})


class Redis(Commands):
    """An asyncio Redis client with automatic pipelining.

    Examples::

        r = Redis.from_url("redis://localhost:6379/0", decode_responses=True)
        await r.set("greeting", "hello", ex=60)      # True
        await r.get("greeting")                      # 'hello'
        async with r.pipeline() as p:                # MULTI/EXEC
            p.incr("hits").expire("hits", 3600)
            hits, _ = await p.execute()
        async with r.pubsub() as ps:
            await ps.subscribe("news")
            async for msg in ps.listen(): ...
        await r.aclose()

    Args:
        host, port, db, username, password, client_name, decode_responses,
        protocol, ssl, unix_socket_path, socket_connect_timeout: where and
            how to connect (or use :meth:`from_url`).
        socket_timeout: seconds the server may stay silent while replies
            are owed on the shared connection; then it is dropped and its
            in-flight commands raise RedisTimeoutError (default: no limit).
        connection_pool: share an existing :class:`ConnectionPool`.
        max_connections, acquire_timeout, health_check_interval,
        retry_attempts, retry_backoff: passed to the pool.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 6379, db: int = 0, *,
                 username: str | None = None, password: str | None = None,
                 client_name: str | None = None, decode_responses: bool = False,
                 encoding: str = "utf-8", encoding_errors: str = "strict",
                 protocol: int = 2, ssl: Any = None, unix_socket_path: str | None = None,
                 socket_connect_timeout: float | None = 10.0,
                 socket_timeout: float | None = None,
                 connection_pool: ConnectionPool | None = None, **pool_kwargs: Any):
        if connection_pool is None:
            params = ConnectionParams(
                host=host, port=port, path=unix_socket_path, db=db, username=username,
                password=password, client_name=client_name, ssl=ssl,
                decode_responses=decode_responses, encoding=encoding,
                encoding_errors=encoding_errors, protocol=protocol,
                connect_timeout=socket_connect_timeout, socket_timeout=socket_timeout)
            if protocol not in (2, 3):
                raise InvalidArgumentError("protocol", protocol, "must be 2 or 3")
            connection_pool = ConnectionPool(params, **pool_kwargs)
        elif pool_kwargs:
            raise InvalidArgumentError("connection_pool", connection_pool,
                                       f"give pool options to the pool, not {sorted(pool_kwargs)}")
        self.connection_pool = connection_pool
        self._pool = connection_pool

    @classmethod
    def from_url(cls, url: str, *, db: int | None = None, username: str | None = None,
                 password: str | None = None, client_name: str | None = None,
                 decode_responses: bool | None = None, protocol: int | None = None,
                 **pool_kwargs: Any) -> "Redis":
        """A client for ``redis://``, ``rediss://`` or ``unix://`` URL.

        Keywords win over the URL (``db=3`` over ``/0``).  Pool keywords:
        ``max_connections``, ``acquire_timeout``, ``health_check_interval``,
        ``retry_attempts``, ``retry_backoff``, ``retry_backoff_max``,
        ``idle_timeout``.  Opening is lazy: the first command connects.
        """
        conn_kw = {k: pool_kwargs.pop(k) for k in list(pool_kwargs)
                   if k in ConnectionParams.__dataclass_fields__}
        if "socket_connect_timeout" in pool_kwargs:
            conn_kw["connect_timeout"] = pool_kwargs.pop("socket_connect_timeout")
        params = parse_url(url, db=db, username=username, password=password,
                           client_name=client_name, decode_responses=decode_responses,
                           protocol=protocol, **conn_kw)
        return cls(connection_pool=ConnectionPool(params, **pool_kwargs))

    def __repr__(self) -> str:
        p = self._pool.params
        return f"<flowcoro.redis.Redis {p.address()} db={p.db}>"

    # -- the hot path ---------------------------------------------------------------
    # (flowcoro.observability.instrument_redis() wraps _cmd and _blocking per
    # instance and sets _trace; an untraced client pays nothing for it)
    _trace = None

    async def _cmd(self, args: tuple, parse: Callable | None = None) -> Any:
        conn = self._pool._shared
        if conn is None:
            conn = await self._pool.shared()
        reply = await conn.send(args)
        return reply if parse is None else parse(reply)

    async def _blocking(self, args: tuple, parse: Callable | None = None) -> Any:
        pool = self._pool
        conn = await pool.acquire()
        try:
            reply = await conn.send(args)
        except BaseException:
            # Cancelled (or failed) with the reply still owed: close, never reuse.
            pool.release(conn, discard=True)
            raise
        pool.release(conn)
        return reply if parse is None else parse(reply)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """Run any command: ``await r.execute_command("OBJECT", "FREQ", "k")``.

        The reply is returned as the server sent it (decoded when
        ``decode_responses`` is set); typed methods apply redis-py's
        conversions, this does not.  Blocking commands go to a dedicated
        connection.

        Raises:
            InvalidArgumentError: a connection-state command (SELECT, MULTI,
                WATCH, SUBSCRIBE...): use from_url(db=), pipeline(), pubsub().
            RedisResponseError: the server's error reply.
            RedisConnectionError: the connection was lost with the command in flight.
        """
        if not args:
            raise InvalidArgumentError("args", args, "need at least a command name")
        name = args[0]
        name = (name.decode() if isinstance(name, bytes) else str(name)).upper()
        if name in STATEFUL_COMMANDS:
            raise InvalidArgumentError(
                "args", args[0],
                f"{name} changes the state of a shared connection: use from_url(db=...), "
                "pipeline() (MULTI/WATCH) or pubsub() instead")
        if name in BLOCKING_COMMANDS or (
                name in ("XREAD", "XREADGROUP")
                and any(isinstance(a, (str, bytes)) and a.upper() in ("BLOCK", b"BLOCK")
                        for a in args[1:])):
            return await self._blocking(args)
        return await self._cmd(args)

    async def execute(self, *args: Any) -> Any:
        """Alias of :meth:`execute_command` (the name in FlowCoro's roadmap)."""
        return await self.execute_command(*args)

    # -- other objects -----------------------------------------------------------------

    def pipeline(self, transaction: bool = True, shard_hint: Any = None):
        """An explicit pipeline (MULTI/EXEC when ``transaction``); see :class:`Pipeline`."""
        from flowcoro.redis.pipeline import Pipeline
        return Pipeline(self, transaction=transaction)

    async def transaction(self, func: Callable, *watches: Any, value_from_callable: bool = False,
                          watch_delay: float | None = None, **kwargs: Any) -> Any:
        """Run ``await func(pipe)`` under WATCH ``watches``, retrying on WatchError.

        ``func`` reads with the pipeline in immediate mode, calls
        ``pipe.multi()``, then queues writes; the EXEC result is returned
        (or func's return value with ``value_from_callable``).
        """
        import asyncio

        from flowcoro.errors import RedisWatchError
        async with self.pipeline(True) as pipe:
            while True:
                try:
                    if watches:
                        await pipe.watch(*watches)
                    value = func(pipe)
                    if hasattr(value, "__await__"):
                        value = await value
                    result = await pipe.execute()
                    return value if value_from_callable else result
                except RedisWatchError:
                    if watch_delay:
                        await asyncio.sleep(watch_delay)
                    continue

    def pubsub(self, ignore_subscribe_messages: bool = False):
        """A :class:`PubSub` on its own connection (``async with r.pubsub() as ps``)."""
        from flowcoro.redis.pubsub import PubSub
        return PubSub(self._pool, ignore_subscribe_messages=ignore_subscribe_messages)

    async def subscribe(self, *channels: Any, **handlers: Any):
        """A PubSub already subscribed to ``channels`` (the roadmap's shortcut).

        Same as ``ps = r.pubsub(); await ps.subscribe(*channels)``; close it
        with ``await ps.aclose()`` (or use it in ``async with``).
        """
        ps = self.pubsub()
        await ps.subscribe(*channels, **handlers)
        return ps

    def register_script(self, script: str | bytes) -> "Script":
        """A :class:`Script`: EVALSHA with a fallback to EVAL (which caches it)."""
        return Script(self, script)

    # -- iterators -----------------------------------------------------------------------

    async def scan_iter(self, match=None, count=None, _type=None) -> AsyncIterator:
        """Every key (matching ``match``), SCAN by SCAN: ``async for k in r.scan_iter()``."""
        cursor = None
        while cursor != 0:
            cursor, keys = await self.scan(cursor or 0, match=match, count=count, _type=_type)
            for k in keys:
                yield k

    async def sscan_iter(self, name, match=None, count=None) -> AsyncIterator:
        """Every member of a set, SSCAN by SSCAN."""
        cursor = None
        while cursor != 0:
            cursor, items = await self.sscan(name, cursor or 0, match=match, count=count)
            for x in items:
                yield x

    async def hscan_iter(self, name, match=None, count=None) -> AsyncIterator:
        """Every (field, value) of a hash, HSCAN by HSCAN."""
        cursor = None
        while cursor != 0:
            cursor, items = await self.hscan(name, cursor or 0, match=match, count=count)
            for kv in items.items():
                yield kv

    async def zscan_iter(self, name, match=None, count=None) -> AsyncIterator:
        """Every (member, score) of a sorted set, ZSCAN by ZSCAN."""
        cursor = None
        while cursor != 0:
            cursor, items = await self.zscan(name, cursor or 0, match=match, count=count)
            for x in items:
                yield x

    # -- lifetime ------------------------------------------------------------------------

    async def initialize(self) -> "Redis":
        """Open the shared connection now (otherwise the first command does)."""
        await self._pool.shared()
        return self

    async def aclose(self) -> None:
        """Close the pool's connections; in-flight commands fail with RedisConnectionError."""
        await self._pool.aclose()

    close = aclose

    async def __aenter__(self) -> "Redis":
        return await self.initialize()

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


class Script:
    """A Lua script run by SHA1 (EVALSHA), loaded on first NOSCRIPT.

    ``await script(keys=[...], args=[...])``; ``client=`` runs it on another
    client, or queues it on a pipeline (as EVAL, so the pipeline needs no
    loading step).
    """

    def __init__(self, registered_client: Redis, script: str | bytes):
        self.registered_client = registered_client
        self.script = script
        raw = script.encode() if isinstance(script, str) else script
        self.sha = hashlib.sha1(raw).hexdigest()

    def __call__(self, keys=(), args=(), client=None):
        """Run the script; returns an awaitable (or the pipeline, for a pipeline)."""
        client = client if client is not None else self.registered_client
        keys, args = list(keys), list(args)
        if not isinstance(client, Redis):      # a Pipeline: queue a self-contained EVAL
            return client.eval(self.script, len(keys), *keys, *args)
        return self._run(client, keys, args)

    async def _run(self, client: Redis, keys: list, args: list) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except RedisNoScriptError:
            # EVAL runs it and puts it in the server's script cache too.
            return await client.eval(self.script, len(keys), *keys, *args)
