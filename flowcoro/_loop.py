"""flowcoro.Loop: the C core in front of asyncio's unix loop.

Why a mix-in: ``CoreLoop`` (Cython, flowcoro/_core/loop.pyx) replaces every
hot path — the run loop, ready queue, timer heap, I/O registration and the
cross-thread wake-up — and the socket transports (flowcoro/_core/transport.pyx).
What is left is asyncio's own pure-Python logic for the rare, complicated
operations (happy eyeballs in create_connection, subprocess transports and
child watchers, TLS through sslproto, signal handlers, sendfile fallback,
datagram and pipe transports), which runs on the fast paths unchanged.  So
behaviour matches the stdlib loop by construction where speed does not
matter, and the core is ours where it does.
"""
import asyncio
import selectors
import weakref
from asyncio import constants as _constants
from asyncio import sslproto as _sslproto
from asyncio import unix_events as _unix_events

from flowcoro._core.loop import CoreLoop, SocketTransport

__all__ = ["Loop", "new_event_loop", "EventLoopPolicy", "install", "run"]

_Base = _unix_events._UnixSelectorEventLoop


class _ReactorView:
    """Stands where asyncio keeps its selector; FlowCoro's reactor is in C.

    asyncio's own transports (pipes, datagrams) only ask it whether an fd is
    watched (``get_key``) and close it; this answers from the loop's table.
    """

    def __init__(self, loop):
        self._loop = weakref.ref(loop)

    def get_key(self, fileobj):
        """Return the SelectorKey of a watched fd, or raise KeyError."""
        fd = selectors._fileobj_to_fd(fileobj)
        loop = self._loop()
        st = loop._fd_interest(fd) if loop is not None and not loop.is_closed() else None
        if st is None:
            raise KeyError(f"{fileobj!r} is not registered")
        events = (selectors.EVENT_READ if st[0] is not None else 0) | \
                 (selectors.EVENT_WRITE if st[1] is not None else 0)
        return selectors.SelectorKey(fileobj, fd, events, st)

    def get_map(self):
        """An empty mapping: registrations live in the C reactor."""
        return {}

    def close(self):
        """Nothing to release: the reactor is closed by the loop."""


class Loop(CoreLoop, _Base):
    """FlowCoro's event loop: a complete ``asyncio.AbstractEventLoop``.

    Create it with :func:`flowcoro.new_event_loop` or let
    :func:`flowcoro.run` do it.  The reactor backend is chosen once, here,
    from ``FLOWCORO_BACKEND`` (``epoll`` or ``poll``; default the best
    available); ``loop.backend`` says which one runs.
    """

    def __init__(self):
        _Base.__init__(self, selector=_ReactorView(self))

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        return SocketTransport(self, sock, protocol, waiter, extra, server)

    def _make_ssl_transport(self, rawsock, protocol, sslcontext, waiter=None, *,
                            server_side=False, server_hostname=None, extra=None, server=None,
                            ssl_handshake_timeout=_constants.SSL_HANDSHAKE_TIMEOUT,
                            ssl_shutdown_timeout=_constants.SSL_SHUTDOWN_TIMEOUT):
        # TLS is the stdlib's: sslproto runs over our C transport.
        ssl_protocol = _sslproto.SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        SocketTransport(self, rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    def run_in_executor(self, executor, func, *args):
        """Run ``func(*args)`` in ``executor`` and return an awaitable future.

        With ``executor=None`` the loop's default executor is used; unless
        set_default_executor() chose another, it is a
        :class:`flowcoro.scheduler.WorkStealingExecutor`, created on first use.
        """
        if executor is None and self._default_executor is None \
                and not self._executor_shutdown_called and not self.is_closed():
            from flowcoro.scheduler import WorkStealingExecutor
            self._default_executor = WorkStealingExecutor(thread_name_prefix="flowcoro")
        return _Base.run_in_executor(self, executor, func, *args)

    def close(self):
        """Close the loop: drop pending callbacks, stop the executor, free the reactor.

        Raises RuntimeError if the loop is running.  Idempotent.
        """
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        _Base.close(self)
        self._close_core()

    def __del__(self):
        # asyncio's __del__ warns about and closes an unclosed loop; a loop
        # whose construction failed (bad FLOWCORO_BACKEND, fd exhaustion)
        # never got that far and has nothing to close.
        if "_ssock" not in self.__dict__:
            return
        _Base.__del__(self)

    def __repr__(self):
        return (f"<{type(self).__name__} backend={self.backend} running={self.is_running()} "
                f"closed={self.is_closed()} debug={self.get_debug()}>")


def new_event_loop():
    """Return a new, not yet running, :class:`Loop`."""
    return Loop()


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """An event-loop policy whose loops are FlowCoro loops."""

    def _loop_factory(self):
        return Loop()


def install():
    """Make FlowCoro the loop of ``asyncio.new_event_loop()``/``asyncio.run()``."""
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main, *, debug=None):
    """Run coroutine ``main`` on a new FlowCoro loop and return its result.

    Behaves like :func:`asyncio.run`: cancels leftover tasks, shuts down
    async generators and the default executor, then closes the loop.
    """
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
