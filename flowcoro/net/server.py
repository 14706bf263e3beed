"""TcpServer: listen, accept or serve, and stop with a graceful drain.

Theory of operation
-------------------
``bind_and_listen`` creates the listening sockets itself (one per address
getaddrinfo returns), so the kernel backlog really is the only queue in
front of ``accept()``.  Then the server runs in exactly one of two modes:

* **accept mode** — each ``accept()`` arms a future and, while any is
  armed, the listening fds are watched with ``loop.add_reader``; a readable
  fd is accepted and the socket handed to the oldest waiter, which wraps it
  with ``loop.connect_accepted_socket``.  Nothing is accepted while nobody
  asks, so connections wait in the kernel backlog.
* **serve mode** — ``serve(handler)`` gives each socket to the loop's
  ``create_server`` (its accept loop and C transports), and each connection
  runs ``await handler(conn)`` in its own task; the connection is closed
  when the handler returns or raises.

``stop(grace)`` closes the listeners first (nothing new arrives), waits up to
``grace`` seconds for the running handlers, cancels those left, and closes
every connection the server handed out.

Invariants:
* ``_state`` only moves forward: NEW → BOUND → SERVING → STOPPING → STOPPED
  (SERVING is skipped in accept mode).
* listening fds are watched by us exactly while ``_accept_waiters`` holds a
  pending future and the state is BOUND.
* every live handler task is a key of ``_handlers``; every stream handed
  out and not yet closed is in ``_conns``.
"""
import asyncio
import collections
import errno
import logging
import os
import socket
import stat
import weakref

from flowcoro._core.stream import DEFAULT_HIGH_WATER, DEFAULT_LIMIT, Stream, StreamProtocol
from flowcoro.errors import InvalidArgumentError, InvalidStateError, ServerClosedError

__all__ = ["TcpServer"]

logger = logging.getLogger("flowcoro.net")

# Listen backlog: asyncio's create_server default, so ported code keeps its queue.
DEFAULT_BACKLOG = 100
# Seconds stop() waits for running handlers before cancelling them.
DEFAULT_GRACE = 5.0

_NEW, _BOUND, _SERVING, _STOPPING, _STOPPED = range(5)
# accept(2) errors that concern only the connection being accepted: skip it.
_SKIP_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR})


class TcpServer:
    """A TCP (or Unix socket) server handing out :class:`~flowcoro.net.Stream` connections.

    Serve each connection in its own task::

        async def echo(conn):
            while data := await conn.read(65536):
                conn.write(data)
                await conn.drain()

        async with TcpServer() as server:
            await server.bind_and_listen("127.0.0.1", 8000)
            await server.serve(echo)          # until server.stop()

    or accept connections one by one::

        server = TcpServer()
        await server.bind_and_listen("127.0.0.1", 0)
        conn = await server.accept()
        ...
        await server.stop()

    Args:
        limit: longest line readline()/read_until() accept on its connections.
        high_water: unread bytes above which a connection stops reading.
    """

    def __init__(self, *, limit=DEFAULT_LIMIT, high_water=DEFAULT_HIGH_WATER):
        if limit is None or limit < 1:
            raise InvalidArgumentError("limit", limit, "must be a positive number of bytes")
        if high_water is None or high_water < 1:
            raise InvalidArgumentError("high_water", high_water, "must be a positive number of bytes")
        self._limit = limit
        self._high_water = high_water
        self._loop = None
        self._state = _NEW
        self._socks = []
        self._unix_path = None
        self._backlog = DEFAULT_BACKLOG
        self._watching = False
        self._accept_waiters = collections.deque()
        self._accepted = collections.deque()      # sockets whose accept() was cancelled
        self._servers = []                        # asyncio.Server objects (serve mode)
        self._starting = None                     # future while serve() starts listening
        self._handler = None
        self._handlers = {}                       # task -> Stream
        self._conns = weakref.WeakSet()           # streams handed out
        self._stopped = None                      # asyncio.Event, set when STOPPED

    def __repr__(self):
        state = ("new", "bound", "serving", "stopping", "stopped")[self._state]
        return f"<TcpServer {state} sockets={len(self._socks)} handlers={len(self._handlers)}>"

    # -- properties -----------------------------------------------------------

    @property
    def sockets(self):
        """The listening sockets, a tuple (empty before binding and after stop)."""
        if self._state >= _STOPPING:
            return ()
        return tuple(self._socks)

    @property
    def port(self):
        """The port of the first listening TCP socket, or None (unbound, Unix, stopped)."""
        for sock in self.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                return sock.getsockname()[1]
        return None

    @property
    def serving(self):
        """True while serve() is running its accept loop."""
        return self._state == _SERVING

    @property
    def stopping(self):
        """True once stop() has begun (handlers may use it to finish early)."""
        return self._state >= _STOPPING

    @property
    def active_handlers(self):
        """Number of handler tasks still running."""
        return len(self._handlers)

    # -- binding --------------------------------------------------------------

    def _check_new(self):
        if self._state >= _STOPPING:
            raise ServerClosedError("the server was stopped")
        if self._state != _NEW:
            raise InvalidStateError("the server is already bound")

    async def bind_and_listen(self, host, port, *, backlog=DEFAULT_BACKLOG, reuse_port=False,
                              reuse_address=True):
        """Bind to ``host``:``port`` and start listening (nothing is accepted yet).

        Args:
            host: address or name to bind; None or '' binds every interface
                (IPv4 and IPv6).
            port: TCP port; 0 picks a free one (see :attr:`port`).
            backlog: the kernel's queue of connections not yet accepted.
            reuse_port: set SO_REUSEPORT so several processes share the port.
            reuse_address: set SO_REUSEADDR (rebinding during TIME_WAIT).

        Raises:
            OSError: the address is in use, cannot be resolved, ...
            InvalidArgumentError: bad port or backlog.
            InvalidStateError: already bound.
            ServerClosedError: the server was stopped.
        """
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidArgumentError("port", port, "must be an int in 0..65535")
        self._check_backlog(backlog)
        if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
            raise InvalidArgumentError("reuse_port", reuse_port, "SO_REUSEPORT is not supported here")
        self._check_new()
        loop = asyncio.get_running_loop()
        if host == "":
            host = None
        infos = await loop.getaddrinfo(host, port, family=socket.AF_UNSPEC,
                                       type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        self._check_new()
        socks = []
        seen = set()
        try:
            for family, type_, proto, _, addr in infos:
                if (family, addr) in seen:
                    continue
                seen.add((family, addr))
                sock = socket.socket(family, type_, proto)
                socks.append(sock)
                if reuse_address:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                    # Without V6ONLY the IPv6 socket would take the IPv4 port too.
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(addr)
                sock.listen(backlog)
                sock.setblocking(False)
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        if not socks:
            raise OSError(f"getaddrinfo({host!r}, {port!r}) returned no address")
        self._bound(loop, socks, backlog)

    async def bind_unix_and_listen(self, path, *, backlog=DEFAULT_BACKLOG):
        """Bind a Unix stream socket at ``path`` and listen; a stale socket file is replaced.

        The file is removed again by stop().

        Args:
            path: filesystem path (str, bytes or os.PathLike).
            backlog: the kernel's queue of connections not yet accepted.

        Raises:
            OSError: the path exists and is not a socket, or cannot be bound.
            InvalidArgumentError: bad path or backlog.
            InvalidStateError: already bound.
            ServerClosedError: the server was stopped.
        """
        if not isinstance(path, (str, bytes, os.PathLike)) or not os.fspath(path):
            raise InvalidArgumentError("path", path, "must be a non-empty path")
        self._check_backlog(backlog)
        self._check_new()
        loop = asyncio.get_running_loop()
        path = os.fspath(path)
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.remove(path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._unix_path = path
        self._bound(loop, [sock], backlog)

    @staticmethod
    def _check_backlog(backlog):
        if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 0:
            raise InvalidArgumentError("backlog", backlog, "must be an int >= 0")

    def _bound(self, loop, socks, backlog):
        self._loop = loop
        self._socks = socks
        self._backlog = backlog
        self._stopped = asyncio.Event()
        self._state = _BOUND

    def _new_protocol(self, on_connect=None):
        return StreamProtocol(self._loop, limit=self._limit, high_water=self._high_water,
                              on_connect=on_connect)

    # -- accept mode ----------------------------------------------------------

    async def accept(self):
        """Wait for the next connection and return it as a :class:`~flowcoro.net.Stream`.

        Connections not asked for wait in the kernel backlog.  Several tasks
        may wait at once; they are served in order.

        Raises:
            ServerClosedError: the server was (or is being) stopped.
            InvalidStateError: not bound yet, or serve() is running.
            OSError: accept(2) failed (for example EMFILE: too many open files).
        """
        if self._state >= _STOPPING:
            raise ServerClosedError("the server was stopped")
        if self._state == _NEW:
            raise InvalidStateError("bind_and_listen() was not called")
        if self._state == _SERVING:
            raise InvalidStateError("the server is serving; accept() is not available")
        loop = self._loop
        if self._accepted:
            sock = self._accepted.popleft()
        else:
            fut = loop.create_future()
            self._accept_waiters.append(fut)
            self._watch()
            try:
                sock = await fut
            except BaseException:
                if fut in self._accept_waiters:
                    self._accept_waiters.remove(fut)
                    self._unwatch_if_idle()
                elif fut.done() and not fut.cancelled() and fut.exception() is None:
                    self._accepted.appendleft(fut.result())   # keep it for the next accept()
                raise
        try:
            _, proto = await loop.connect_accepted_socket(self._new_protocol, sock)
        except BaseException:
            sock.close()
            raise
        conn = Stream(proto)
        if self._state >= _STOPPING:
            conn.abort()
            raise ServerClosedError("the server was stopped")
        self._conns.add(conn)
        return conn

    def _watch(self):
        if not self._watching:
            self._watching = True
            for sock in self._socks:
                self._loop.add_reader(sock.fileno(), self._on_acceptable, sock)

    def _unwatch_if_idle(self):
        if self._watching and not self._accept_waiters:
            self._watching = False
            for sock in self._socks:
                self._loop.remove_reader(sock.fileno())

    def _on_acceptable(self, lsock):
        waiters = self._accept_waiters
        while waiters:
            if waiters[0].done():          # cancelled accept()
                waiters.popleft()
                continue
            try:
                sock, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in _SKIP_ERRNOS:
                    continue
                waiters.popleft().set_exception(exc)
                continue
            sock.setblocking(False)
            waiters.popleft().set_result(sock)
        self._unwatch_if_idle()

    # -- serve mode -----------------------------------------------------------

    async def serve(self, handler):
        """Run ``await handler(conn)`` in a new task for every connection, until stop().

        Returns when the server has stopped.  Cancelling serve() stops the
        server with no grace period.  The connection is closed when the
        handler returns; an exception from the handler is reported to the
        loop's exception handler (ConnectionError only logged at debug
        level) and does not stop the server.

        Args:
            handler: ``async def handler(conn)``.

        Raises:
            InvalidArgumentError: ``handler`` is not callable.
            InvalidStateError: not bound, already serving, or accept() is waiting.
            ServerClosedError: the server was stopped.
        """
        if not callable(handler):
            raise InvalidArgumentError("handler", handler, "must be an async callable")
        if self._state >= _STOPPING:
            raise ServerClosedError("the server was stopped")
        if self._state == _NEW:
            raise InvalidStateError("bind_and_listen() was not called")
        if self._state == _SERVING:
            raise InvalidStateError("the server is already serving")
        if self._accept_waiters:
            raise InvalidStateError("accept() is waiting; serve() is not available")
        self._handler = handler
        self._state = _SERVING
        loop = self._loop
        for sock in self._accepted:      # accepted for a cancelled accept(): serve them too
            loop.create_task(self._serve_accepted(sock))
        self._accepted.clear()
        # stop() waits on this before closing the sockets create_server is
        # being given, so it never pulls a socket from under it.
        starting = self._starting = loop.create_future()
        try:
            try:
                for sock in self._socks:
                    srv = await loop.create_server(self._serve_protocol, sock=sock,
                                                   backlog=self._backlog)
                    self._servers.append(srv)
                    if self._state != _SERVING:     # stop() began meanwhile
                        break
            finally:
                self._starting = None
                starting.set_result(None)
            await self._stopped.wait()
        except BaseException:            # cancelled, or create_server failed
            await asyncio.shield(self.stop(grace=0))
            raise

    def _serve_protocol(self):
        return self._new_protocol(self._on_connect)

    def _on_connect(self, proto):
        conn = Stream(proto)
        if self._state != _SERVING:
            conn.abort()
            return
        self._start_handler(conn)

    async def _serve_accepted(self, sock):
        try:
            _, proto = await self._loop.connect_accepted_socket(self._new_protocol, sock)
        except BaseException:
            sock.close()
            raise
        self._on_connect(proto)

    def _start_handler(self, conn):
        self._conns.add(conn)
        task = self._loop.create_task(self._run_handler(conn))
        self._handlers[task] = conn
        task.add_done_callback(self._handler_done)

    def _handler_done(self, task):
        self._handlers.pop(task, None)

    async def _run_handler(self, conn):
        try:
            await self._handler(conn)
        except ConnectionError as exc:
            logger.debug("handler %r: connection error %r", self._handler, exc)
        except Exception as exc:
            self._loop.call_exception_handler({
                "message": f"flowcoro.net: unhandled exception in handler {self._handler!r}",
                "exception": exc, "server": self, "connection": conn})
        finally:
            conn.close()

    # -- stopping -------------------------------------------------------------

    async def stop(self, grace=DEFAULT_GRACE):
        """Stop: close the listeners, drain handlers for ``grace`` seconds, cancel the rest.

        Steps: no new connection is accepted (pending accept() calls raise
        ServerClosedError); running handlers get up to ``grace`` seconds to
        return; those still running are cancelled and awaited; every
        connection the server handed out is closed.  Calling stop() again,
        or concurrently, waits for the first call to finish.  A handler may
        call stop(): it is not waited for itself.

        Args:
            grace: seconds to wait for handlers; 0 cancels at once; None waits
                without limit.

        Raises:
            InvalidArgumentError: ``grace`` is negative or not a number.
        """
        if grace is not None and not (isinstance(grace, (int, float)) and grace >= 0):
            raise InvalidArgumentError("grace", grace, "must be None or a number of seconds >= 0")
        if self._state == _NEW:
            self._state = _STOPPED
            return
        if self._state >= _STOPPING:
            await self._stopped.wait()
            return
        self._state = _STOPPING
        try:
            if self._starting is not None:
                await asyncio.shield(self._starting)
            self._close_listeners()
            me = asyncio.current_task()
            tasks = [t for t in self._handlers if t is not me]
            if tasks and grace != 0:
                await asyncio.wait(tasks, timeout=grace)
            left = [t for t in tasks if not t.done()]
            for t in left:
                t.cancel()
            if left:
                await asyncio.wait(left)
        finally:
            for t in list(self._handlers):
                if t is not asyncio.current_task():
                    t.cancel()
            for conn in list(self._conns):
                conn.close()
            self._state = _STOPPED
            self._stopped.set()

    def _close_listeners(self):
        for fut in self._accept_waiters:
            if not fut.done():
                fut.set_exception(ServerClosedError("the server was stopped"))
        self._accept_waiters.clear()
        self._unwatch_if_idle()
        for sock in self._accepted:
            sock.close()
        self._accepted.clear()
        for srv in self._servers:
            srv.close()
        for sock in self._socks:
            sock.close()
        if self._unix_path is not None:
            try:
                if stat.S_ISSOCK(os.stat(self._unix_path).st_mode):
                    os.remove(self._unix_path)
            except OSError:
                pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        await self.stop()
