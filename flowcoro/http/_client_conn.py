"""Connections and the connection pool of :class:`flowcoro.http.HttpClient`.

Theory of operation
-------------------

A :class:`Connection` is an :class:`asyncio.Protocol` on the running loop
(so FlowCoro's C transports are used where the loop is FlowCoro's, and the
stdlib ones elsewhere: only public asyncio API is called).  It owns one
:class:`~flowcoro.http.ResponseParser`.  ``data_received`` feeds the parser
and queues its events; the request side pulls them with
:meth:`Connection.next_event`, which waits (with a timer, not a task) only
when the queue is empty.  One request at a time per connection: the client
never pipelines, so ``request_sent`` is called once before each request.

Flow control: body pieces waiting in the queue are counted; above
``HIGH_WATER`` bytes the transport stops reading (TCP backpressure reaches
the server) and it reads again once the consumer is down to ``LOW_WATER``.
A streamed response therefore holds at most about ``HIGH_WATER`` plus one
socket read in memory, whatever its size.

Errors are queued behind the events that came before them: a malformed byte
or a lost connection is raised only after every complete event before it
was taken, so a response that was complete before the server closed is
still delivered.

The :class:`Pool` keeps idle connections per ``(scheme, host, port)``,
last-in first-out (the most recently used socket is the least likely to
have been closed by the server).  Invariant: for each key,
``open[key]`` = connections in ``idle[key]`` + connections lent out +
connections being opened, and never exceeds ``max_per_host``.  A connection
goes back to ``idle`` only through :meth:`Pool.release` with
``reusable=True``, which the response calls when its body was read to the
end and both sides allow keep-alive.  Idle connections are dropped when the
server closed them (seen at ``acquire``), when they have been idle for
``keepalive_expiry`` (one sweeper timer for the whole pool, not one per
connection), or when bytes arrive while idle (a server does not speak
unasked; whatever it says, the connection's framing is no longer known).
"""
import asyncio
import collections

from flowcoro.errors import (
    HttpConnectionError,
    HttpParseError,
    PoolTimeout,
    RemoteProtocolError,
    WriteTimeout,
)
from flowcoro.http.parser import ResponseParser

__all__ = ["Connection", "Pool"]

#: Body bytes queued before the transport stops reading: enough for a few
#: socket reads of a fast server, small enough that a streamed download of
#: any size stays bounded in memory.
HIGH_WATER = 256 * 1024
#: Reading resumes when the consumer has taken the queue down to this.
LOW_WATER = 64 * 1024


def _fire_timeout(fut, exc):
    """Timer callback: fail a waiter with ``exc`` unless it is already done."""
    if not fut.done():
        fut.set_exception(exc)


class Connection(asyncio.Protocol):
    """One HTTP/1.1 client connection: transport, parser and event queue.

    Attributes:
        key: ``(scheme, host, port)`` the connection belongs to.
        closed: the transport is gone (or going); never reused.
        broken: the framing can no longer be trusted; never reused.
        got_bytes: a byte of the current response has arrived (a request
            that failed before that may be retried on a fresh connection).
        idle_since: loop time the connection went idle in the pool.
        requests: how many requests the connection has carried.
    """

    def __init__(self, loop, key, parser_limits):
        self.loop = loop
        self.key = key
        self.parser = ResponseParser(**parser_limits)
        self.transport = None
        self.events = collections.deque()
        self.error = None
        self.closed = False
        self.broken = False
        self.in_pool = False
        self.got_bytes = False
        self.idle_since = 0.0
        self.requests = 0
        self._waiter = None
        self._buffered = 0
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiter = None

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport):
        """Keep the transport."""
        self.transport = transport

    def data_received(self, data):
        """Feed the parser; queue its events (or the error after them)."""
        if self.in_pool or self.error is not None:
            # Unasked bytes (a 408 before close, garbage): drop the connection.
            self.broken = True
            self.transport.close()
            return
        self.got_bytes = True
        try:
            events = self.parser.feed(data)
        except HttpParseError as exc:
            events = exc.events
            self.error = _protocol_error(exc)
            self.broken = True
            self.transport.close()
        if events:
            self.events.extend(events)
            for ev in events:
                if type(ev) is bytes:
                    self._buffered += len(ev)
            if self._buffered > HIGH_WATER and not self._reading_paused and not self.closed:
                self._reading_paused = True
                self.transport.pause_reading()
        self._wake()

    def eof_received(self):
        """The server closed its side: let the transport close (returns None)."""
        return None

    def connection_lost(self, exc):
        """Finish a read-until-close body, or queue the error that ends the response."""
        self.closed = True
        if self.error is None and not self.in_pool:
            if exc is not None:
                # Reset or failed, not closed: even a body that runs until the
                # close is cut short, so no EndOfMessage from feed_eof().
                err = HttpConnectionError(f"connection lost: {exc}")
                err.__cause__ = exc
                self.error = err
            else:
                try:
                    self.events.extend(self.parser.feed_eof())
                except HttpParseError as perr:
                    err = HttpConnectionError(
                        "the server closed the connection before the response was complete")
                    err.__cause__ = perr
                    self.error = err
        self._wake()
        dw = self._drain_waiter
        if dw is not None and not dw.done():
            dw.set_result(None)

    def pause_writing(self):
        """The transport's write buffer is full: writers wait in :meth:`drain`."""
        self._write_paused = True

    def resume_writing(self):
        """The write buffer drained: wake a waiting writer."""
        self._write_paused = False
        dw = self._drain_waiter
        if dw is not None and not dw.done():
            dw.set_result(None)

    # -- request side --------------------------------------------------------

    def _wake(self):
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        dw = self._drain_waiter
        if dw is not None and self.events and not dw.done():
            dw.set_result(None)         # a writer stops when the response starts

    def start_request(self, method):
        """Prepare for a new request/response exchange with ``method``."""
        self.parser.request_sent(method)
        self.got_bytes = False
        self.requests += 1

    def write(self, data):
        """Write bytes (no wait); a closed connection raises HttpConnectionError."""
        if self.closed or self.transport.is_closing():
            raise self._closed_error()
        self.transport.write(data)

    async def drain(self, when, exc_factory):
        """Wait while the transport's write buffer is over its high-water mark.

        ``when`` is the loop time to give up (None: no limit), then
        ``exc_factory()`` is raised.  Returns True once drained, False when
        the response started first (a server may answer, 413 say, without
        reading the rest of the request: the caller stops writing).
        """
        while self._write_paused and not self.closed:
            if self.events:
                return False
            fut = self.loop.create_future()
            self._drain_waiter = fut
            handle = None
            if when is not None:
                handle = self.loop.call_at(when, _fire_timeout, fut, exc_factory())
            try:
                await fut
            finally:
                self._drain_waiter = None
                if handle is not None:
                    handle.cancel()
        if self.closed and not self.events and self.error is None:
            raise self._closed_error()
        return not self._write_paused

    def _closed_error(self):
        if self.error is not None:
            return self.error
        return HttpConnectionError("the server closed the connection")

    async def next_event(self, when, exc_factory):
        """The next parser event; waits until ``when`` (loop time, None: no
        limit), then raises ``exc_factory()``.

        Raises the queued error once the events before it are taken, or
        HttpConnectionError when the connection closed between messages.
        """
        events = self.events
        while not events:
            if self.error is not None:
                raise self.error
            if self.closed:
                raise self._closed_error()
            fut = self.loop.create_future()
            self._waiter = fut
            handle = None
            if when is not None:
                handle = self.loop.call_at(when, _fire_timeout, fut, exc_factory())
            try:
                await fut
            finally:
                self._waiter = None
                if handle is not None:
                    handle.cancel()
        ev = events.popleft()
        if type(ev) is bytes:
            self._consumed(len(ev))
        return ev

    def take_ready(self):
        """Pop every queued event without waiting (for a reader that can use them all)."""
        events = list(self.events)
        self.events.clear()
        n = 0
        for ev in events:
            if type(ev) is bytes:
                n += len(ev)
        if n:
            self._consumed(n)
        return events

    def _consumed(self, n):
        self._buffered -= n
        if self._reading_paused and self._buffered <= LOW_WATER and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def usable(self):
        """True when an idle connection can carry another request."""
        return not (self.closed or self.broken or self.transport.is_closing())

    def close(self, graceful=False):
        """Close: ``graceful`` (FIN) between exchanges, else abort (an exchange
        failed or was abandoned: nothing on it is worth flushing)."""
        self.broken = True
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                if graceful:
                    self.transport.close()
                else:
                    self.transport.abort()


def _protocol_error(exc):
    """A parser error on a response, as the client's RemoteProtocolError."""
    err = RemoteProtocolError(exc.code, exc.status, exc.offset,
                              f"malformed response: {exc.args[0].rsplit(' (at byte ', 1)[0]}")
    err.__cause__ = exc
    return err


class Pool:
    """Per-host pools of keep-alive connections, with a per-host cap.

    ``acquire(key, connect, when)`` returns ``(connection, reused)``;
    ``release(conn, reusable)`` gives it back (or drops it).
    """

    def __init__(self, loop, max_per_host, keepalive_expiry):
        self.loop = loop
        self.max_per_host = max_per_host
        self.keepalive_expiry = keepalive_expiry
        self.idle = {}        # key -> list of idle connections, most recent last
        self.open = {}        # key -> connections counted against the cap
        self.waiters = {}     # key -> deque of futures waiting for a slot
        self._sweeper = None
        self.closed = False

    def take_idle(self, key):
        """An idle, usable connection for ``key`` without waiting, or None."""
        idle = self.idle.get(key)
        while idle:
            conn = idle.pop()
            conn.in_pool = False
            if conn.usable() and not conn.events:
                return conn
            self._drop(conn)
        return None

    async def acquire(self, key, connect, when):
        """A connection for ``key``: an idle one, a new one, or one freed later.

        ``connect()`` is awaited to open a connection; ``when`` bounds the
        wait for a free slot (loop time; PoolTimeout after it).
        """
        while True:
            conn = self.take_idle(key)
            if conn is not None:
                return conn, True
            n = self.open.get(key, 0)
            if n < self.max_per_host:
                self.open[key] = n + 1
                try:
                    conn = await connect()
                except BaseException:
                    self._forget(key)
                    raise
                return conn, False
            await self._wait_slot(key, when)

    async def _wait_slot(self, key, when):
        fut = self.loop.create_future()
        q = self.waiters.setdefault(key, collections.deque())
        q.append(fut)
        handle = None
        if when is not None:
            handle = self.loop.call_at(when, _fire_timeout, fut, PoolTimeout(
                f"no connection to {key[1]}:{key[2]} became free in time"))
        try:
            await fut
        except BaseException:
            try:
                q.remove(fut)
            except ValueError:
                # Already woken: pass the wake-up on so the slot is not lost.
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    self._wake_one(key)
            raise
        finally:
            if handle is not None:
                handle.cancel()

    def _wake_one(self, key):
        q = self.waiters.get(key)
        while q:
            fut = q.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _forget(self, key):
        """One connection of ``key`` is gone: free its slot."""
        n = self.open.get(key, 0) - 1
        if n > 0:
            self.open[key] = n
        else:
            self.open.pop(key, None)
        self._wake_one(key)

    def _drop(self, conn, graceful=True):
        conn.close(graceful)
        self._forget(conn.key)

    def release(self, conn, reusable):
        """Give ``conn`` back: to the idle list when ``reusable``, else close it."""
        if not reusable or self.closed or not conn.usable() or conn.events:
            self._drop(conn)
            return
        conn.in_pool = True
        conn.idle_since = self.loop.time()
        self.idle.setdefault(conn.key, []).append(conn)
        if self._sweeper is None and self.keepalive_expiry is not None:
            self._sweeper = self.loop.call_at(conn.idle_since + self.keepalive_expiry,
                                              self._sweep)
        self._wake_one(conn.key)

    def discard(self, conn):
        """Close a lent-out connection whose exchange failed or was abandoned."""
        self._drop(conn, graceful=False)

    def _sweep(self):
        """Close connections idle past ``keepalive_expiry``; re-arm for the next."""
        self._sweeper = None
        now = self.loop.time()
        limit = now - self.keepalive_expiry
        earliest = None
        for key in list(self.idle):
            keep = []
            for conn in self.idle[key]:
                if conn.idle_since <= limit or not conn.usable():
                    conn.in_pool = False
                    self._drop(conn)
                else:
                    keep.append(conn)
                    if earliest is None or conn.idle_since < earliest:
                        earliest = conn.idle_since
            if keep:
                self.idle[key] = keep
            else:
                del self.idle[key]
        if earliest is not None and not self.closed:
            self._sweeper = self.loop.call_at(earliest + self.keepalive_expiry, self._sweep)

    def idle_count(self, key=None):
        """Idle connections (for ``key``, or all)."""
        if key is not None:
            return len(self.idle.get(key, ()))
        return sum(len(v) for v in self.idle.values())

    def close(self):
        """Close every idle connection; lent-out ones close when released."""
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conns in self.idle.values():
            for conn in conns:
                conn.in_pool = False
                conn.close(graceful=True)
        self.idle.clear()
        self.open.clear()
        for q in self.waiters.values():
            for fut in q:
                if not fut.done():
                    fut.set_exception(HttpConnectionError("the client was closed"))
        self.waiters.clear()


def write_timeout_error():
    """The error a write that waits too long raises."""
    return WriteTimeout("the server did not take the request in time")
