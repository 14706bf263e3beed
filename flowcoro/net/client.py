"""TcpClient: open a :class:`~flowcoro.net.Stream` to a TCP host or a Unix socket.

The connection is made by the running loop's own ``create_connection`` /
``create_unix_connection`` (so happy eyeballs, TLS and the loop's fast C
transport all apply); the protocol on top is flowcoro's Cython
:class:`~flowcoro._core.stream.StreamProtocol`.
"""
import asyncio
import os

from flowcoro._core.stream import DEFAULT_HIGH_WATER, DEFAULT_LIMIT, Stream, StreamProtocol
from flowcoro.errors import InvalidArgumentError

__all__ = ["TcpClient"]


def _check_timeout(timeout):
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout >= 0):
        raise InvalidArgumentError("timeout", timeout, "must be None or a number of seconds >= 0")


def _check_port(port):
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidArgumentError("port", port, "must be an int in 0..65535")


class TcpClient(Stream):
    """A client connection: a :class:`~flowcoro.net.Stream` plus constructors.

    Usage::

        conn = await TcpClient.connect("127.0.0.1", 8000, timeout=5)
        conn.write(b"hello\\n")
        await conn.drain()
        reply = await conn.readline()
        conn.close()
        await conn.wait_closed()

        async with await TcpClient.connect_unix("/run/app.sock") as conn:
            async for line in conn:
                ...
    """

    __slots__ = ()

    @classmethod
    async def connect(cls, host, port, *, timeout=None, limit=DEFAULT_LIMIT,
                      high_water=DEFAULT_HIGH_WATER, ssl=None, local_addr=None):
        """Connect to ``host``:``port`` and return the connected client.

        Args:
            host: a host name or IP address.
            port: TCP port, 0..65535.
            timeout: seconds for name resolution plus connecting (None: no limit).
            limit: longest line readline()/read_until() accept.
            high_water: unread bytes above which reading pauses.
            ssl: an ``ssl.SSLContext`` (or True) for TLS, as for asyncio.
            local_addr: (host, port) to bind the local end to.

        Raises:
            TimeoutError: not connected within ``timeout``.
            OSError: the connection failed (ConnectionRefusedError, socket.gaierror, ...).
            InvalidArgumentError: bad host, port, timeout, limit or high_water.
        """
        if not isinstance(host, str) or not host:
            raise InvalidArgumentError("host", host, "must be a non-empty str")
        _check_port(port)
        _check_timeout(timeout)
        loop = asyncio.get_running_loop()
        proto = StreamProtocol(loop, limit=limit, high_water=high_water)
        async with asyncio.timeout(timeout):
            await loop.create_connection(lambda: proto, host, port, ssl=ssl,
                                         local_addr=local_addr)
        return cls(proto)

    @classmethod
    async def connect_unix(cls, path, *, timeout=None, limit=DEFAULT_LIMIT,
                           high_water=DEFAULT_HIGH_WATER):
        """Connect to the Unix stream socket at ``path``.

        Args:
            path: filesystem path (str, bytes or os.PathLike).
            timeout, limit, high_water: as for :meth:`connect`.

        Raises:
            TimeoutError: not connected within ``timeout``.
            OSError: FileNotFoundError, ConnectionRefusedError, ...
            InvalidArgumentError: bad path, timeout, limit or high_water.
        """
        if not isinstance(path, (str, bytes, os.PathLike)) or not os.fspath(path):
            raise InvalidArgumentError("path", path, "must be a non-empty path")
        _check_timeout(timeout)
        loop = asyncio.get_running_loop()
        proto = StreamProtocol(loop, limit=limit, high_water=high_water)
        async with asyncio.timeout(timeout):
            await loop.create_unix_connection(lambda: proto, os.fspath(path))
        return cls(proto)
