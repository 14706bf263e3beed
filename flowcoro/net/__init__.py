"""flowcoro.net: TCP and Unix-socket streams with a coroutine API.

Public API (see docs/net.md):
    Stream          a connected byte stream (read/readline/read_exactly/write/drain/close)
    TcpClient       Stream with ``connect()`` / ``connect_unix()`` constructors
    TcpServer       bind_and_listen, accept, serve(handler), stop(grace)
    ConnectionPool  a client connection pool; PoolStats is its snapshot
    StreamProtocol  the Cython asyncio protocol underneath, for custom wiring
    DEFAULT_LIMIT, DEFAULT_HIGH_WATER   the default line limit and read pause mark
"""
from flowcoro._core.stream import DEFAULT_HIGH_WATER, DEFAULT_LIMIT, Stream, StreamProtocol
from flowcoro.net.client import TcpClient
from flowcoro.net.pool import ConnectionPool, PoolStats
from flowcoro.net.server import TcpServer

__all__ = [
    "ConnectionPool", "DEFAULT_HIGH_WATER", "DEFAULT_LIMIT", "PoolStats", "Stream",
    "StreamProtocol", "TcpClient", "TcpServer",
]
