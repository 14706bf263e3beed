"""Pub/sub: subscriptions on a dedicated connection, messages as an async iterator.

Theory of operation
-------------------
A :class:`PubSub` borrows one connection from the pool and turns it into
a push connection: on RESP2 every reply is routed to ``_on_push`` (a
subscribed RESP2 connection only sends pushes), on RESP3 the ``>`` frames
are.  ``_on_push`` turns each frame into redis-py's message dict and
appends it to a queue; ``get_message`` / ``listen`` read that queue.

``subscribe`` waits until the server has confirmed every channel, so a
message published after ``await ps.subscribe(...)`` returns is never
missed.

Reconnection: the subscribed channels and patterns are remembered.  If the
connection is lost, a background task reconnects (the pool's backoff,
then retries every ``retry_backoff_max`` seconds for as long as the PubSub
is open) and subscribes again to all of them; the iterator simply
continues.  Messages published while no connection existed are lost --
that is Redis pub/sub's at-most-once contract, not something a client can
repair (use streams for at-least-once delivery).

Invariants:
* ``channels`` / ``patterns`` hold what the user asked for (keyed by the
  name as bytes); they survive reconnects.
* at most one ``_reconnect_task`` runs; ``_conn`` is None while it does.
"""
from __future__ import annotations

import asyncio
import collections
import inspect
from typing import Any, AsyncIterator, Callable

from flowcoro.errors import (InvalidStateError, RedisConnectionError, RedisError,
                             RedisTimeoutError)
from flowcoro.redis.connection import Connection

__all__ = ["PubSub"]

_KINDS = {b"subscribe", b"unsubscribe", b"psubscribe", b"punsubscribe",
          b"ssubscribe", b"sunsubscribe"}


def _key(name: Any) -> bytes:
    if isinstance(name, bytes):
        return name
    if isinstance(name, str):
        return name.encode()
    return str(name).encode()


class PubSub:
    """Subscriptions and their messages (make one with :meth:`Redis.pubsub`).

    Messages are dicts like redis-py's::

        {"type": "message", "pattern": None, "channel": b"news", "data": b"hi"}
        {"type": "pmessage", "pattern": b"n*", "channel": b"news", "data": b"hi"}
        {"type": "subscribe", "pattern": None, "channel": b"news", "data": 1}

    Examples::

        async with r.pubsub() as ps:
            await ps.subscribe("news")
            async for msg in ps.listen():
                if msg["type"] == "message":
                    print(msg["data"])

        await ps.subscribe(alerts=handler)   # handler(msg), sync or async,
        await ps.get_message(timeout=1.0)    # called instead of returning it

    Attributes:
        channels, patterns: {name (bytes): handler or None} subscribed now.
        reconnects: how many times the subscriptions were restored.
    """

    def __init__(self, pool: Any, ignore_subscribe_messages: bool = False):
        self._pool = pool
        self.ignore_subscribe_messages = ignore_subscribe_messages
        self.channels: dict[bytes, Callable | None] = {}
        self.patterns: dict[bytes, Callable | None] = {}
        self._names: dict[bytes, Any] = {}
        self._conn: Connection | None = None
        self._queue: collections.deque = collections.deque()
        self._getter: asyncio.Future | None = None
        self._confirm: dict[tuple[bytes, bytes], list[asyncio.Future]] = {}
        self._reconnect_task: asyncio.Task | None = None
        self._connecting: asyncio.Future | None = None
        self._closed = False
        self.reconnects = 0

    def __repr__(self) -> str:
        return (f"<flowcoro.redis.PubSub channels={len(self.channels)} "
                f"patterns={len(self.patterns)}{' closed' if self._closed else ''}>")

    @property
    def subscribed(self) -> bool:
        """True while any channel or pattern is subscribed."""
        return bool(self.channels or self.patterns)

    async def __aenter__(self) -> "PubSub":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # -- connection --------------------------------------------------------------------

    async def _ensure(self) -> Connection:
        if self._closed:
            raise InvalidStateError("this PubSub is closed")
        if self._conn is not None:
            return self._conn
        if self._reconnect_task is not None:
            await asyncio.shield(self._reconnect_task)
            if self._conn is None:
                raise RedisConnectionError("pub/sub connection could not be restored")
            return self._conn
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect_once())
        # shield: a cancelled caller must not abandon a half-made connection.
        await asyncio.shield(self._connecting)
        if self._conn is None:        # pragma: no cover - lost again at once
            raise RedisConnectionError("pub/sub connection lost while opening")
        return self._conn

    async def _connect_once(self) -> None:
        try:
            conn = await self._pool.acquire()
            if self._closed:
                self._pool.release(conn, discard=True)
                raise InvalidStateError("this PubSub is closed")
            self._attach(conn)
        finally:
            self._connecting = None

    def _attach(self, conn: Connection) -> None:
        conn.pubsub_mode = conn.params.protocol == 2
        conn.push_handler = self._on_push
        self._conn = conn

    def _on_lost(self, err: Exception) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                self._pool.release(conn, discard=True)
            except Exception:          # pragma: no cover - already gone
                pass
        if not self._closed and self._reconnect_task is None:
            self._reconnect_task = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        pool = self._pool
        try:
            while not self._closed:
                try:
                    conn = await pool.acquire()
                except (RedisConnectionError, RedisTimeoutError):
                    await asyncio.sleep(pool.retry_backoff_max)
                    continue
                if self._closed:
                    pool.release(conn, discard=True)
                    return
                self._attach(conn)
                self.reconnects += 1
                try:
                    if self.channels:
                        conn.send_noreply(("SUBSCRIBE", *[self._names[k] for k in self.channels]))
                    if self.patterns:
                        conn.send_noreply(("PSUBSCRIBE", *[self._names[k] for k in self.patterns]))
                except RedisConnectionError:     # lost again at once: loop
                    continue
                return
        finally:
            self._reconnect_task = None

    # -- incoming ------------------------------------------------------------------------

    def _on_push(self, reply: Any) -> None:
        if isinstance(reply, RedisError):          # the connection is gone
            self._on_lost(reply)
            return
        if isinstance(reply, Exception):
            # A message that failed to decode (decode_responses): get_message
            # raises it, as redis-py does; the subscription goes on.
            self._queue.append(reply)
            g = self._getter
            if g is not None and not g.done():
                g.set_result(None)
            return
        if not isinstance(reply, list):
            # RESP2 PING after every channel was dropped: a plain +PONG.
            reply = [b"pong", reply]
        kind = _key(reply[0]).lower()
        if kind == b"message":
            msg = {"type": "message", "pattern": None, "channel": reply[1], "data": reply[2]}
        elif kind == b"pmessage":
            msg = {"type": "pmessage", "pattern": reply[1], "channel": reply[2], "data": reply[3]}
        elif kind in _KINDS:
            msg = {"type": kind.decode(), "pattern": None, "channel": reply[1], "data": reply[2]}
            waiters = self._confirm.get((kind, _key(reply[1]) if reply[1] is not None else b""))
            if waiters:
                fut = waiters.pop(0)
                if not fut.done():
                    fut.set_result(None)
            if self.ignore_subscribe_messages:
                return
        elif kind == b"pong":
            msg = {"type": "pong", "pattern": None, "channel": None,
                   "data": reply[1] if len(reply) > 1 else None}
        else:
            msg = {"type": kind.decode(errors="replace"), "pattern": None, "channel": None,
                   "data": list(reply)}
        self._queue.append(msg)
        g = self._getter
        if g is not None and not g.done():
            g.set_result(None)

    # -- subscribing ------------------------------------------------------------------------

    async def _send_and_confirm(self, cmd: str, names: list) -> None:
        conn = await self._ensure()
        loop = asyncio.get_running_loop()
        kind = cmd.lower().encode()
        futs = []
        for n in names:
            fut = loop.create_future()
            self._confirm.setdefault((kind, _key(n)), []).append(fut)
            futs.append(fut)
        conn.send_noreply((cmd, *names))
        # After a reconnect the same confirmations come from the resubscription.
        await asyncio.gather(*futs)

    def _remember(self, table: dict, args: tuple, handlers: dict) -> list:
        names = list(args) + list(handlers)
        for n in args:
            table[_key(n)] = None
            self._names[_key(n)] = n
        for n, h in handlers.items():
            table[_key(n)] = h
            self._names[_key(n)] = n
        return names

    async def subscribe(self, *channels: Any, **handlers: Callable) -> None:
        """SUBSCRIBE; returns once the server confirmed every channel.

        Keyword arguments subscribe ``name=handler``: messages of that
        channel go to ``handler(msg)`` instead of get_message/listen.
        """
        names = self._remember(self.channels, channels, handlers)
        if names:
            await self._send_and_confirm("SUBSCRIBE", names)

    async def psubscribe(self, *patterns: Any, **handlers: Callable) -> None:
        """PSUBSCRIBE glob patterns (``news.*``); returns once confirmed."""
        names = self._remember(self.patterns, patterns, handlers)
        if names:
            await self._send_and_confirm("PSUBSCRIBE", names)

    async def unsubscribe(self, *channels: Any) -> None:
        """UNSUBSCRIBE the channels (all of them when none is given)."""
        names = list(channels) or [self._names[k] for k in self.channels]
        for n in names:
            self.channels.pop(_key(n), None)
        if names and self._conn is not None:
            await self._send_and_confirm("UNSUBSCRIBE", names)

    async def punsubscribe(self, *patterns: Any) -> None:
        """PUNSUBSCRIBE the patterns (all of them when none is given)."""
        names = list(patterns) or [self._names[k] for k in self.patterns]
        for n in names:
            self.patterns.pop(_key(n), None)
        if names and self._conn is not None:
            await self._send_and_confirm("PUNSUBSCRIBE", names)

    async def ping(self, message: Any = None) -> None:
        """PING through the subscription; the answer arrives as a 'pong' message."""
        conn = await self._ensure()
        args = ("PING",) if message is None else ("PING", message)
        if conn.pubsub_mode:
            conn.send_noreply(args)
        else:                               # RESP3: a normal reply, not a push
            reply = await conn.send(args)
            self._on_push([b"pong", reply])

    # -- reading ------------------------------------------------------------------------

    async def get_message(self, ignore_subscribe_messages: bool = False,
                          timeout: float | None = 0.0) -> dict | None:
        """The next message, or None if none came within ``timeout`` seconds.

        ``timeout=None`` waits for ever.  A message whose channel has a
        handler is given to the handler and None is returned.
        """
        if not self._queue and timeout != 0:
            if self._closed:
                return None
            # One wake-up future shared by every concurrent reader; shielded
            # so that one reader's timeout does not cancel it for the others.
            fut = self._getter
            if fut is None or fut.done():
                fut = self._getter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(fut)
            except TimeoutError:
                return None
        if not self._queue:
            return None
        msg = self._queue.popleft()
        if isinstance(msg, Exception):
            raise msg
        if (ignore_subscribe_messages or self.ignore_subscribe_messages) and \
                msg["type"] not in ("message", "pmessage", "pong"):
            return None
        return await self._dispatch(msg)

    async def _dispatch(self, msg: dict) -> dict | None:
        handler = None
        if msg["type"] == "message":
            handler = self.channels.get(_key(msg["channel"]))
        elif msg["type"] == "pmessage":
            handler = self.patterns.get(_key(msg["pattern"]))
        if handler is None:
            return msg
        res = handler(msg)
        if inspect.isawaitable(res):
            await res
        return None

    async def listen(self) -> AsyncIterator[dict]:
        """Every message, for as long as something is subscribed (or queued)."""
        while not self._closed and (self.subscribed or self._queue):
            msg = await self.get_message(timeout=None)
            if msg is not None:
                yield msg

    def __aiter__(self) -> AsyncIterator[dict]:
        return self.listen()

    # -- closing ------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Drop the subscriptions and the connection (it is closed, not pooled)."""
        if self._closed:
            return
        self._closed = True
        task, self._reconnect_task = self._reconnect_task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except BaseException:
                pass
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.release(conn, discard=True)
        g = self._getter
        if g is not None and not g.done():
            g.set_result(None)
        for waiters in self._confirm.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(RedisConnectionError("the PubSub was closed"))
        self._confirm.clear()

    reset = close = aclose
