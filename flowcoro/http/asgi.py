"""ASGI 3 on FlowCoro's HTTP server: ``flowcoro serve module:app``.

:class:`ASGIServer` runs any ASGI 3 application (Starlette, FastAPI, bare
apps) on :class:`~flowcoro.http.HttpServer`'s Cython connection handling:
the ``http`` scope (request body streamed through ``receive``, response
streamed through ``send``; a response sent in one ``http.response.body``
goes out in one write with a Content-Length), the ``websocket`` scope
(handshake on ``websocket.accept``, 403 on ``websocket.close`` before it,
frames through flowcoro.websocket) and the ``lifespan`` protocol.
The server frames the body itself: Content-Length / Transfer-Encoding /
Connection headers from the app are replaced by its own.

Example::

    from flowcoro.http.asgi import ASGIServer
    ASGIServer(app).run("0.0.0.0", 8000, workers=4)
"""
import asyncio
import logging

from flowcoro._core.httpserver import RESPONSE_SENT
from flowcoro.errors import ASGIError, InvalidArgumentError
from flowcoro.http.server import HttpServer

__all__ = ["ASGIServer", "ASGIError", "load_app"]   # ASGIError lives in flowcoro.errors

log = logging.getLogger("flowcoro.http.asgi")

_ASGI = {"version": "3.0", "spec_version": "2.3"}
_DISCONNECT = {"type": "http.disconnect"}


class _Exchange:
    """send/receive of one HTTP request (the ASGI callables)."""

    __slots__ = ("request", "status", "headers", "streaming", "done", "body_read")

    def __init__(self, request):
        self.request = request
        self.status = None        # set by http.response.start
        self.headers = None
        self.streaming = False
        self.done = False
        self.body_read = False

    async def receive(self):
        req = self.request
        if self.done:
            # After the response: http.disconnect at once (ASGI spec).
            return _DISCONNECT
        if self.body_read:
            await req.wait_disconnect()
            return _DISCONNECT
        try:
            chunk = await req.read_chunk()
        except (ConnectionError, OSError):
            self.body_read = True
            return _DISCONNECT
        if not chunk:
            self.body_read = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(self, message):
        kind = message["type"]
        if kind == "http.response.body":
            if self.status is None:
                raise ASGIError("http.response.body before http.response.start")
            if self.done:
                raise ASGIError("http.response.body after the response ended")
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if not self.streaming:
                if not more:
                    # The common case: the whole body in one message, sent
                    # now (with this read's batch) even if the app goes on
                    # working (background tasks).
                    self.done = True
                    self.request.respond(self.status, self.headers, body)
                    return
                self.streaming = True
                req = self.request
                req.start_response(self.status, self.headers, _content_length(self.headers))
            await self.request.write(body)
            if not more:
                self.done = True
                self.request.end_response()
        elif kind == "http.response.start":
            if self.status is not None:
                raise ASGIError("http.response.start sent twice")
            self.status = message["status"]
            self.headers = message.get("headers") or None
        elif kind == "http.response.trailers":   # pragma: no cover - not negotiated
            raise ASGIError("http.response.trailers is not supported")
        else:
            raise ASGIError(f"unexpected ASGI message {kind!r} in an HTTP exchange")

    def response(self):
        if self.streaming and not self.done:
            self.request.end_response()
        elif not self.done:
            raise ASGIError("the ASGI app returned without sending a response")
        return RESPONSE_SENT


async def _websocket(server, request):
    """The ``websocket`` scope: handshake on websocket.accept, then frames."""
    from flowcoro._core.httpserver import Response
    from flowcoro.errors import WebSocketClosed, WebSocketHandshakeError
    from flowcoro.websocket.connection import WebSocketConnection
    from flowcoro.websocket.handshake import accept_request
    from flowcoro.websocket.server import _Head

    head = _Head(request)
    try:
        accept_request(head, compression=None)       # refuse bad upgrades before the app
    except WebSocketHandshakeError as exc:
        return Response(f"{exc.args[0]}\n", status=exc.status or 400, headers=exc.headers)
    offered = []
    for value in request.headers.getall("sec-websocket-protocol"):
        offered += [t.strip() for t in value.split(",") if t.strip()]
    scope = {
        "type": "websocket", "asgi": _ASGI, "http_version": request.http_version,
        "scheme": "wss" if request.scheme == "https" else "ws",
        "path": request.path, "raw_path": request.raw_path,
        "query_string": request.query_string, "root_path": server.root_path,
        "headers": request.headers.raw, "client": _host_port(request.client),
        "server": server._server_addr, "subprotocols": offered, "state": server.state.copy(),
    }
    ws = None
    connected = False           # websocket.connect delivered
    closed = False              # the app sent websocket.close (or the peer closed)

    async def receive():
        nonlocal connected, closed
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        if ws is None:
            raise ASGIError("receive() before websocket.accept")
        try:
            message = await ws.receive()
        except WebSocketClosed as exc:
            closed = True
            return {"type": "websocket.disconnect", "code": exc.code, "reason": exc.reason}
        if type(message) is str:
            return {"type": "websocket.receive", "text": message}
        return {"type": "websocket.receive", "bytes": message}

    async def send(message):
        nonlocal ws, closed
        kind = message["type"]
        if ws is None:
            if kind == "websocket.accept":
                chosen = message.get("subprotocol")
                hs = accept_request(head, select_subprotocol=lambda offered: chosen,
                                    extra_headers=message.get("headers") or ())
                request.start_response(101, hs.headers)
                transport, data = request.detach()
                ws = WebSocketConnection(transport, "server", subprotocol=hs.subprotocol,
                                         deflate=hs.deflate, initial_data=data, handshake=hs,
                                         **server.websocket_options)
                server._asgi_websockets.add(ws)
            elif kind == "websocket.close":
                closed = True
                request.respond(403, [(b"content-type", b"text/plain")], b"Forbidden\n")
            else:
                raise ASGIError(f"{kind!r} before websocket.accept")
            return
        if closed:
            raise ASGIError(f"{kind!r} after the WebSocket closed")
        if kind == "websocket.send":
            text = message.get("text")
            await ws.send(text if text is not None else message.get("bytes") or b"")
        elif kind == "websocket.close":
            closed = True
            await ws.close(message.get("code", 1000), message.get("reason") or "")
        else:
            raise ASGIError(f"unexpected ASGI message {kind!r} on a WebSocket")

    try:
        await server.app(scope, receive, send)
    except Exception as exc:
        server._asgi_websockets.discard(ws)
        if ws is None:
            if request.response_started:
                return RESPONSE_SENT
            raise                               # 500
        if not isinstance(exc, (WebSocketClosed, ConnectionError)):
            # (The peer going away while the app sends is not a failure.)
            log.exception("ASGI WebSocket app failed")
        if ws.open:
            await ws.close(1011, "internal error")
        return RESPONSE_SENT
    server._asgi_websockets.discard(ws)
    if ws is None:
        if not request.response_started:
            # Returned without accepting or closing: refuse (as with close).
            request.respond(403, [(b"content-type", b"text/plain")], b"Forbidden\n")
        return RESPONSE_SENT
    if ws.open:
        await ws.close(1000)
    return RESPONSE_SENT


def _host_port(addr):
    # ASGI wants (host, port); IPv6 peernames carry flowinfo and scope id too.
    return tuple(addr[:2]) if isinstance(addr, tuple) else addr


def _content_length(headers):
    if headers:
        for name, value in headers:
            if name.lower() == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
    return None


#: WebSocketConnection settings ASGIServer(websocket=...) passes on.
_WEBSOCKET_OPTIONS = frozenset({"max_message", "max_frame", "max_queue", "ping_interval",
                                "ping_timeout", "close_timeout", "write_limit",
                                "max_send_buffer"})


class ASGIServer(HttpServer):
    """An :class:`HttpServer` whose every request goes to an ASGI 3 app.

    Args:
        app: the ASGI application (``async def app(scope, receive, send)``).
        lifespan: "auto" (run the lifespan protocol, tolerate apps that do
            not support it), "on" (a failure aborts the start-up) or "off".
        root_path: the ASGI ``root_path`` (mount point behind a proxy).
        websocket: settings of the ``websocket`` scope's connections, as
            :class:`~flowcoro.websocket.WebSocketConnection` takes them:
            ``max_message``, ``max_frame``, ``max_queue``, ``ping_interval``,
            ``ping_timeout``, ``close_timeout``, ``write_limit``,
            ``max_send_buffer`` (unset ones keep that class's defaults).
        **settings: HttpServer's limits and timeouts (``max_body`` defaults
            to None here: the app gets the body as a stream, whatever its size).
    """

    def __init__(self, app, *, lifespan="auto", root_path="", websocket=None, **settings):
        # ASGI apps read request bodies as streams: no body limit unless
        # asked for (uvicorn has none either).
        settings.setdefault("max_body", None)
        super().__init__(**settings)
        if lifespan not in ("auto", "on", "off"):
            raise ValueError("lifespan must be 'auto', 'on' or 'off'")
        self.websocket_options = dict(websocket or {})
        unknown = sorted(set(self.websocket_options) - _WEBSOCKET_OPTIONS)
        if unknown:
            raise InvalidArgumentError("websocket", websocket,
                                       f"unknown setting(s) {', '.join(unknown)}; known: "
                                       f"{', '.join(sorted(_WEBSOCKET_OPTIONS))}")
        self.app = app
        self.root_path = root_path
        self.lifespan = lifespan
        self.state = {}
        self._lifespan_task = None
        self._lifespan_queue = None
        self._server_addr = None
        self.dispatch = self._handle
        self._asgi_websockets = set()       # open WebSocket sessions, closed (1001) at stop
        self._websocket_registries.append(self._asgi_websockets)
        self.on_startup(self._startup)
        self.on_shutdown(self._shutdown)

    async def _handle(self, request):
        if request.upgrade is not None and request.upgrade.lower() == b"websocket":
            return await _websocket(self, request)
        ex = _Exchange(request)
        scope = {
            "type": "http", "asgi": _ASGI, "http_version": request.http_version,
            "method": request.method, "scheme": request.scheme, "path": request.path,
            "raw_path": request.raw_path, "query_string": request.query_string,
            "root_path": self.root_path, "headers": request.headers.raw,
            "client": _host_port(request.client), "server": self._server_addr,
            "state": self.state.copy(),
        }
        try:
            await self.app(scope, ex.receive, ex.send)
        except Exception:
            if not ex.done:
                raise               # 500 (or a cut connection once streaming)
            # The response is complete (an exception handler's answer, say):
            # keep it, log the failure.
            log.exception("ASGI app raised after its response was sent")
        return ex.response()

    async def listen(self, host="127.0.0.1", port=8080, **kw):
        """Start serving (see HttpServer.listen); runs lifespan start-up first."""
        server = await super().listen(host, port, **kw)
        if self._server_addr is None and server.sockets:
            addr = server.sockets[0].getsockname()
            self._server_addr = (addr[0], addr[1]) if isinstance(addr, tuple) else None
        return server

    # -- lifespan ----------------------------------------------------------------
    async def _startup(self):
        if self.lifespan == "off":
            return
        loop = asyncio.get_running_loop()
        self._lifespan_queue = asyncio.Queue()
        started = loop.create_future()
        self._lifespan_started = started
        self._lifespan_stopped = loop.create_future()

        async def receive():
            return await self._lifespan_queue.get()

        async def send(message):
            kind = message["type"]
            if kind == "lifespan.startup.complete":
                started.done() or started.set_result(None)
            elif kind == "lifespan.startup.failed":
                started.done() or started.set_exception(
                    ASGIError(f"lifespan startup failed: {message.get('message', '')}"))
            elif kind == "lifespan.shutdown.complete":
                self._lifespan_stopped.done() or self._lifespan_stopped.set_result(None)
            elif kind == "lifespan.shutdown.failed":
                self._lifespan_stopped.done() or self._lifespan_stopped.set_exception(
                    ASGIError(f"lifespan shutdown failed: {message.get('message', '')}"))

        async def run():
            scope = {"type": "lifespan", "asgi": _ASGI, "state": self.state}
            try:
                await self.app(scope, receive, send)
            except BaseException as exc:
                if not started.done():
                    if self.lifespan == "on":
                        started.set_exception(ASGIError(f"lifespan failed: {exc!r}"))
                    else:
                        log.info("the ASGI app does not support lifespan (%r)", exc)
                        started.set_result(None)
                        self.lifespan = "off"
                elif not isinstance(exc, asyncio.CancelledError):
                    log.error("lifespan task failed", exc_info=exc)
                if not self._lifespan_stopped.done():
                    self._lifespan_stopped.set_result(None)
            else:
                if not started.done():
                    started.set_result(None)
                    self.lifespan = "off"

        self._lifespan_task = loop.create_task(run())
        await self._lifespan_queue.put({"type": "lifespan.startup"})
        await started

    async def _shutdown(self):
        if self.lifespan == "off" or self._lifespan_task is None:
            return
        await self._lifespan_queue.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(asyncio.shield(self._lifespan_stopped), 10)
        finally:
            if not self._lifespan_task.done():
                self._lifespan_task.cancel()


def load_app(spec):
    """Import ``"module:attr"`` (``attr`` may be dotted) and return the app."""
    import importlib
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"expected 'module:app', got {spec!r}")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
