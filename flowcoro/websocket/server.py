"""WebSocket on FlowCoro's HTTP server: upgrade routes, hooks, broadcast, rooms.

* :func:`websocket_route` turns ``async def handler(ws)`` into an HttpServer
  route that performs the opening handshake (:func:`accept_request`), sends
  the 101, detaches the connection from HTTP and runs the handler with a
  :class:`WebSocketConnection` (``ws.request`` is the upgrade request).
  ``HttpServer.websocket(path)`` is the decorator users call.
* :class:`WebSocketServer` keeps the set of open connections of one route,
  calls ``on_connect`` / ``on_message`` / ``on_disconnect`` hooks, and
  :meth:`~WebSocketServer.broadcast` serializes a message once and hands the
  frame to every connection without waiting on any of them: each connection
  has its own bounded send buffer, and one past it is closed with 1013 (Try
  Again Later) instead of holding the others back.
* :class:`ChatRoom` groups connections of a WebSocketServer into named rooms
  (``join_room`` / ``leave_room`` / ``broadcast_to_room``).

Threading: everything here runs on the server's loop.
"""
import asyncio
import logging

from flowcoro._core.httpserver import RESPONSE_SENT, Response
from flowcoro._core.wsframe import FrameBuilder
from flowcoro.errors import WebSocketClosed, WebSocketHandshakeError
from flowcoro.websocket.connection import WebSocketConnection
from flowcoro.websocket.handshake import accept_request

__all__ = ["websocket_route", "WebSocketServer", "ChatRoom"]

log = logging.getLogger("flowcoro.websocket")


class _Head:
    """The request head fields accept_request() reads, from a server Request."""

    __slots__ = ("method", "http_version", "headers", "target")

    def __init__(self, request):
        self.method = request.method.encode("ascii")
        self.http_version = request.http_version
        self.headers = request.headers.raw
        qs = request.query_string
        self.target = request.raw_path + (b"?" + qs if qs else b"")


def websocket_route(handler, *, subprotocols=None, select_subprotocol=None, origins=None,
                    compression="deflate", registry=None, **options):
    """An HttpServer handler that upgrades to WebSocket and runs ``handler(ws)``.

    Args:
        handler: ``async def handler(ws)``; ``ws.request`` is the HTTP request.
            When it returns, the connection is closed (1000) if still open;
            an exception closes it with 1011.
        subprotocols, select_subprotocol, origins, compression: as
            :func:`flowcoro.websocket.accept_request`.
        registry: a set the open connections are kept in (graceful stop).
        **options: WebSocketConnection settings (max_message, ping_interval, ...).
    """
    async def upgrade(request):
        try:
            hs = accept_request(_Head(request), subprotocols=subprotocols,
                                select_subprotocol=select_subprotocol, origins=origins,
                                compression=compression)
        except WebSocketHandshakeError as exc:
            body = f"Failed to open a WebSocket connection: {exc.args[0]}.\n"
            return Response(body, status=exc.status or 400, headers=exc.headers)
        request.start_response(101, hs.headers)
        transport, data = request.detach()
        ws = WebSocketConnection(transport, "server", subprotocol=hs.subprotocol,
                                 deflate=hs.deflate, initial_data=data, handshake=hs, **options)
        ws.request = request
        if registry is not None:
            registry.add(ws)
        try:
            await handler(ws)
        except (WebSocketClosed, ConnectionError):
            pass
        except asyncio.CancelledError:
            ws.abort()
            raise
        except Exception:
            log.exception("WebSocket handler for %s failed", request.path)
            if ws.open:
                await ws.close(1011, "internal error")
        finally:
            if registry is not None:
                registry.discard(ws)
        if not ws.closed:
            await ws.close(1000)
        return RESPONSE_SENT

    return upgrade


class WebSocketServer:
    """The open connections of one WebSocket route, with hooks and broadcast.

    Example::

        app = HttpServer()
        chat = WebSocketServer(app, "/chat")

        @chat.on_message
        async def relay(ws, message):
            chat.broadcast(message)

    Args:
        app: the HttpServer to register the route on (or None, and pass
            :attr:`handler` to ``app.route`` yourself).
        path: the route path.
        max_send_buffer: per-connection bound (bytes) on frames waiting to
            be written; broadcast closes a connection past it with 1013.
        **options: as :func:`websocket_route`.
    """

    def __init__(self, app=None, path="/ws", *, max_send_buffer=1 << 20, **options):
        self.connections = set()
        self._on_connect = []
        self._on_message = []
        self._on_disconnect = []
        self._builder = FrameBuilder(client=False)
        self.handler = websocket_route(self._session, registry=self.connections,
                                       max_send_buffer=max_send_buffer, **options)
        if app is not None:
            app.route(path, self.handler, methods=("GET",))
            app._websocket_registries.append(self.connections)

    def on_connect(self, fn):
        """Register ``async def fn(ws)``, run when a connection opens."""
        self._on_connect.append(fn)
        return fn

    def on_message(self, fn):
        """Register ``async def fn(ws, message)``, run for each message (str or bytes)."""
        self._on_message.append(fn)
        return fn

    def on_disconnect(self, fn):
        """Register ``async def fn(ws)``, run when a connection has closed."""
        self._on_disconnect.append(fn)
        return fn

    async def _session(self, ws):
        try:
            for fn in self._on_connect:
                await fn(ws)
            async for message in ws:
                for fn in self._on_message:
                    await fn(ws, message)
        finally:
            self.connections.discard(ws)
            for fn in self._on_disconnect:
                try:
                    await fn(ws)
                except Exception:
                    log.exception("on_disconnect hook failed")

    def broadcast(self, message, *, exclude=None, connections=None):
        """Send ``message`` (str: text, bytes: binary) to every open connection
        (or to ``connections``), except ``exclude``; returns how many got it.

        Never waits: the frame is built once (uncompressed, so it suits every
        connection whatever its permessage-deflate state) and queued on each
        connection; a connection whose send buffer would pass its bound is
        closed with 1013 and skipped.
        """
        targets = self.connections if connections is None else connections
        if type(message) is str:
            frame = self._builder.text(message)
        else:
            frame = self._builder.binary(message)
        sent = 0
        for ws in list(targets):
            if ws is not exclude and ws.send_frame_nowait(frame):
                sent += 1
        return sent

    async def close_all(self, code=1001, reason="server shutting down"):
        """Close every connection (the closing handshake, concurrently)."""
        await asyncio.gather(*(ws.close(code, reason) for ws in list(self.connections)),
                             return_exceptions=True)


class ChatRoom:
    """Named rooms over a :class:`WebSocketServer`'s connections.

    A connection leaves every room when it disconnects.
    """

    def __init__(self, server):
        self.server = server
        self.rooms = {}
        server.on_disconnect(self._forget)

    def join_room(self, ws, room):
        """Put ``ws`` in ``room`` (created on first join)."""
        self.rooms.setdefault(room, set()).add(ws)

    def leave_room(self, ws, room):
        """Take ``ws`` out of ``room`` (a room left empty is dropped)."""
        members = self.rooms.get(room)
        if members is not None:
            members.discard(ws)
            if not members:
                del self.rooms[room]

    def members(self, room):
        """The connections in ``room`` (a copy)."""
        return set(self.rooms.get(room, ()))

    def broadcast_to_room(self, room, message, *, exclude=None):
        """Send ``message`` to everyone in ``room`` (see WebSocketServer.broadcast)."""
        return self.server.broadcast(message, exclude=exclude,
                                     connections=self.rooms.get(room, ()))

    async def _forget(self, ws):
        for room in [r for r, members in self.rooms.items() if ws in members]:
            self.leave_room(ws, room)
