"""The WebSocket client: :func:`connect` for ws:// and wss:// URLs.

The opening handshake runs on a small protocol (:class:`_Handshake`) that
writes the upgrade request and reads the answer with
:class:`flowcoro.http.ResponseParser`; at the 101 head the parser pauses,
the bytes after the head are taken with ``detach()``, and a
:class:`~flowcoro.websocket.WebSocketConnection` takes the transport over.
Redirects (3xx) are not followed: they fail with
:class:`~flowcoro.errors.WebSocketHandshakeError` carrying the status and
headers (``location`` among them).
"""
import asyncio
import ssl as _ssl
import urllib.parse

from flowcoro.errors import (HttpParseError, InvalidArgumentError, WebSocketHandshakeError,
                             WebSocketTimeoutError)
# The parser's own module, not the flowcoro.http package: that package
# imports the HTTP server, which imports this one (WebSocket routes).
from flowcoro._core.httpparser import ResponseHead, ResponseParser
from flowcoro.websocket import deflate as _deflate
from flowcoro.websocket import handshake as _hs
from flowcoro.websocket.connection import WebSocketConnection

__all__ = ["connect", "parse_url"]


def parse_url(url):
    """Split a ws:// or wss:// URL into ``(secure, host, port, resource)``.

    Raises:
        InvalidArgumentError: another scheme, no host, or user info.
    """
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("ws", "wss"):
        raise InvalidArgumentError("url", url, "the scheme must be ws or wss")
    if not u.hostname:
        raise InvalidArgumentError("url", url, "no host")
    if u.username is not None or u.password is not None:
        raise InvalidArgumentError("url", url, "user info is not supported in a WebSocket URL")
    if u.fragment:
        raise InvalidArgumentError("url", url, "a WebSocket URL has no fragment")
    secure = u.scheme == "wss"
    try:
        port = u.port or (443 if secure else 80)
    except ValueError:
        raise InvalidArgumentError("url", url, "bad port") from None
    resource = (u.path or "/") + (f"?{u.query}" if u.query else "")
    return secure, u.hostname, port, resource


class _Handshake(asyncio.Protocol):
    """Writes the upgrade request, reads the response head."""

    def __init__(self, loop, request):
        self.request = request
        self.done = loop.create_future()
        self.parser = ResponseParser()
        self.parser.request_sent(b"GET")
        self.transport = None
        # Bytes and EOF that come after the 101 but before the connection
        # object takes the transport over (the awaiting task resumes later).
        self.extra = []
        self.lost = False

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data):
        if self.done.done():
            self.extra.append(bytes(data))
            return
        try:
            events = self.parser.feed(data)
        except HttpParseError as exc:
            self._fail(WebSocketHandshakeError(f"invalid HTTP response: {exc}"))
            return
        for ev in events:
            if type(ev) is not ResponseHead or (100 <= ev.status_code < 200 and
                                                ev.status_code != 101):
                continue    # interim 1xx heads, the end of a refused answer
            if ev.status_code == 101 and self.parser.paused:
                self.done.set_result((ev, self.parser.detach()))
            else:
                self._fail(WebSocketHandshakeError(
                    f"server answered {ev.status_code} instead of 101", ev.status_code,
                    ev.headers))
            return

    def _fail(self, exc):
        if not self.done.done():
            self.done.set_exception(exc)
        self.transport.close()

    def connection_lost(self, exc):
        self.lost = True
        if not self.done.done():
            self.done.set_exception(WebSocketHandshakeError(
                "connection closed during the opening handshake"))


class _Connect:
    """What :func:`connect` returns: await it, or use it with ``async with``."""

    def __init__(self, url, kwargs):
        self.url = url
        self.kwargs = kwargs
        self.ws = None

    def __await__(self):
        return _open(self.url, **self.kwargs).__await__()

    async def __aenter__(self):
        self.ws = await _open(self.url, **self.kwargs)
        return self.ws

    async def __aexit__(self, exc_type, exc, tb):
        await self.ws.close()


def connect(url, *, subprotocols=None, headers=None, origin=None, ssl=None, server_hostname=None,
            compression="deflate", max_size=1 << 20, max_frame=None, max_queue=32,
            open_timeout=10.0, ping_interval=20.0, ping_timeout=20.0, close_timeout=10.0,
            write_limit=64 * 1024, max_send_buffer=4 * 1024 * 1024):
    """Open a WebSocket connection to ``url`` (ws:// or wss://).

    Use it as ``ws = await connect(url)`` or ``async with connect(url) as ws:``
    (the connection is closed when the block ends).

    Args:
        url: ``ws://host[:port]/path?query`` or ``wss://...``.
        subprotocols: subprotocols to offer, in order of preference; the
            chosen one is ``ws.subprotocol``.
        headers: extra request headers (mapping or ``(name, value)`` pairs).
        origin: an ``Origin`` header value.
        ssl: an ``ssl.SSLContext`` for wss:// (default: a default context,
            which verifies the server); not allowed for ws://.
        server_hostname: TLS server name, when it differs from the URL's host.
        compression: ``"deflate"`` offers permessage-deflate; None does not.
        max_size: limit on a received message (bytes; inflated size).
        max_frame, max_queue, ping_interval, ping_timeout, close_timeout,
            write_limit, max_send_buffer: see
            :class:`~flowcoro.websocket.WebSocketConnection`.
        open_timeout: seconds for TCP connect, TLS and the handshake.

    Returns:
        :class:`~flowcoro.websocket.WebSocketConnection`; ``ws.handshake``
        is the server's 101 ``ResponseHead``.

    Raises:
        WebSocketHandshakeError: the server refused (``status``, ``headers``)
            or answered a 101 that breaks RFC 6455.
        WebSocketTimeoutError: ``open_timeout`` passed.
        OSError: the TCP (or TLS) connection failed.
    """
    return _Connect(url, dict(
        subprotocols=subprotocols, headers=headers, origin=origin, ssl=ssl,
        server_hostname=server_hostname, compression=compression, max_size=max_size,
        max_frame=max_frame, max_queue=max_queue, open_timeout=open_timeout,
        ping_interval=ping_interval, ping_timeout=ping_timeout, close_timeout=close_timeout,
        write_limit=write_limit, max_send_buffer=max_send_buffer))


async def _open(url, *, subprotocols, headers, origin, ssl, server_hostname, compression,
                max_size, max_frame, max_queue, open_timeout, ping_interval, ping_timeout,
                close_timeout, write_limit, max_send_buffer):
    secure, host, port, resource = parse_url(url)
    if ssl is not None and not secure:
        raise InvalidArgumentError("ssl", ssl, "ssl is for wss:// URLs")
    if secure and ssl is None:
        ssl = _ssl.create_default_context()
    if compression not in ("deflate", None):
        raise InvalidArgumentError("compression", compression, "'deflate' or None")
    offer = _deflate.client_offer() if compression == "deflate" else None
    key = _hs.generate_key()
    host_header = f"[{host}]" if ":" in host else host
    if port != (443 if secure else 80):
        host_header += f":{port}"
    request = _hs.build_request(host_header, resource, key, subprotocols=subprotocols,
                                extensions=offer, origin=origin, headers=headers)
    loop = asyncio.get_running_loop()
    proto = _Handshake(loop, request)
    transport = None

    async def opening():
        nonlocal transport
        kw = {}
        if secure:
            kw = {"ssl": ssl, "server_hostname": server_hostname or host}
        transport, _ = await loop.create_connection(lambda: proto, host, port, **kw)
        return await proto.done

    try:
        head, rest = await asyncio.wait_for(opening(), open_timeout)
    except asyncio.TimeoutError:
        if transport is not None:
            transport.abort()
        raise WebSocketTimeoutError(f"opening handshake with {url} took over {open_timeout}s") \
            from None
    try:
        subprotocol, params = _hs.check_response(head, key, subprotocols=subprotocols,
                                                 extensions=offer)
    except WebSocketHandshakeError:
        transport.abort()
        raise
    ws = WebSocketConnection(
        transport, "client", subprotocol=subprotocol, deflate=params, max_message=max_size,
        max_frame=max_frame, max_queue=max_queue, ping_interval=ping_interval,
        ping_timeout=ping_timeout, close_timeout=close_timeout, write_limit=write_limit,
        max_send_buffer=max_send_buffer, initial_data=rest + b"".join(proto.extra),
        handshake=head)
    if proto.lost:
        ws.connection_lost(None)
    return ws
