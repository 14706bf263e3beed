"""flowcoro.http.HttpServer: routing, middleware and serving on the C parser.

The per-request work (parsing, the request object, routing, running the
handler, writing the response) is Cython (flowcoro/_core/httpserver.pyx);
this module is the user-facing shell: registering routes and middleware,
listening, graceful stop, worker processes and static files.

Example::

    from flowcoro.http import HttpServer, Response

    app = HttpServer()

    @app.route("/")
    async def hello(request):
        return "Hello, World!"

    @app.route("/users/{id:int}", methods=["GET", "DELETE"])
    async def user(request):
        return {"id": request.path_params["id"]}

    app.run("127.0.0.1", 8080, workers=4)      # or: await app.listen(...)
"""
import asyncio
import functools
import logging
import os
import signal
import socket
from pathlib import Path

from flowcoro._core.httpserver import (
    FileResponse,
    as_response,
    Headers,
    Request,
    Response,
    Router,
    ServerState,
    StreamingResponse,
    reason_phrase,
)
from flowcoro.errors import HttpException, HttpHeaderError, InvalidArgumentError, InvalidStateError

__all__ = [
    "HttpServer", "Request", "Response", "StreamingResponse", "FileResponse",
    "Headers", "Router", "HttpException", "HttpHeaderError", "reason_phrase",
]

log = logging.getLogger("flowcoro.http")

#: Default limits and timeouts (the issue's and RFC 9110's usual values).
DEFAULTS = dict(
    max_request_line=8192, max_header_field=8192, max_headers=100,
    max_header_block=65536, max_chunk_line=4096, max_body=1 << 20,
    header_timeout=30.0, body_timeout=60.0, keepalive_timeout=60.0,
    write_timeout=60.0, max_pipeline=16, body_buffer=1 << 20,
    max_connections=10000,
)


class HttpServer:
    """An HTTP/1.1 server: routes, middleware, keep-alive, pipelining.

    Args:
        max_request_line: bytes of the request line (414 beyond).
        max_header_field: bytes of one header line (431 beyond).
        max_headers: header lines (431 beyond).
        max_header_block: bytes of the whole header section (431 beyond).
        max_chunk_line: bytes of a chunk-size line with extensions (400 beyond).
        max_body: request body bytes (413 beyond; answered before any
            ``100 Continue``); None for no limit (stream it).
        header_timeout: seconds for a whole request head to arrive, counted
            from its first byte (a total deadline, not per read): 408.
        body_timeout: seconds the body may stay idle: 408.
        keepalive_timeout: seconds an idle keep-alive connection is kept.
        write_timeout: seconds a response may stall on a client that does
            not read before the connection is aborted.
        max_pipeline: requests queued per connection before reading pauses.
        body_buffer: unread body bytes buffered per request before reading pauses.
        max_connections: connections served at once; past it the server stops
            accepting (the kernel backlog holds newcomers) until one closes.

    Deadlines are checked once a second, so each is honoured within a second.
    """

    def __init__(self, **settings):
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            raise InvalidArgumentError("settings", sorted(unknown), "unknown HttpServer settings")
        self.settings = {**DEFAULTS, **settings}
        self.router = Router()
        self._before = []
        self._after = []
        self._around = []
        self._servers = []
        self._state = None
        self._sweeper = None
        self._frozen = False
        self._stopped = None
        self._on_startup = []
        self._on_shutdown = []
        self.dispatch = None        # set by the ASGI adapter: one handler for every request
        self._websocket_registries = []   # sets of open WebSocketConnections (closed at stop)
        self._observer = None             # set_observer() settings

    # -- routes ----------------------------------------------------------------
    def route(self, path, handler=None, *, methods=("GET",)):
        """Register ``async def handler(request)`` for ``path`` and ``methods``.

        Usable as ``app.route("/x", handler)`` or as a decorator
        ``@app.route("/x", methods=["POST"])``.  ``path`` may hold
        parameters: ``/users/{id:int}``, ``/files/{rest:path}`` (types str,
        int, float, path).  A GET route also answers HEAD.  The handler
        returns str, bytes, a dict or list (sent as JSON), None (204) or a
        :class:`Response`.
        """
        if handler is None:
            return functools.partial(self._route_decorator, path, methods)
        self._check_mutable()
        if not callable(handler):
            raise InvalidArgumentError("handler", handler, "must be an async function")
        if isinstance(methods, str):
            methods = (methods,)
        self.router.add(path, handler, methods)
        return handler

    def _route_decorator(self, path, methods, handler):
        self.route(path, handler, methods=methods)
        return handler

    def get(self, path):
        """Decorator: a GET (and HEAD) route."""
        return self.route(path, methods=("GET",))

    def post(self, path):
        """Decorator: a POST route."""
        return self.route(path, methods=("POST",))

    def put(self, path):
        """Decorator: a PUT route."""
        return self.route(path, methods=("PUT",))

    def patch(self, path):
        """Decorator: a PATCH route."""
        return self.route(path, methods=("PATCH",))

    def delete(self, path):
        """Decorator: a DELETE route."""
        return self.route(path, methods=("DELETE",))

    def websocket(self, path, handler=None, **options):
        """Register ``async def handler(ws)`` as a WebSocket endpoint at ``path``.

        Usable as a decorator.  The upgrade request is checked and answered
        (101, or 400/403/426 with the reason), then the handler gets a
        :class:`flowcoro.websocket.WebSocketConnection` (``ws.request`` is
        the upgrade request; path parameters work as in :meth:`route`).
        ``options``: ``subprotocols``, ``origins``, ``compression``
        ("deflate" or None), and WebSocketConnection settings
        (``max_message``, ``ping_interval``, ``max_send_buffer``, ...).
        Open connections are closed with 1001 when the server stops.  For
        hooks and broadcast use :class:`flowcoro.websocket.WebSocketServer`.
        """
        if handler is None:
            return functools.partial(self._websocket_decorator, path, options)
        from flowcoro.websocket.server import websocket_route
        registry = set()
        self._websocket_registries.append(registry)
        self.route(path, websocket_route(handler, registry=registry, **options), methods=("GET",))
        return handler

    def _websocket_decorator(self, path, options, handler):
        self.websocket(path, handler, **options)
        return handler

    def static(self, prefix, directory):
        """Serve the files under ``directory`` at ``prefix/...`` (GET/HEAD),
        sent with sendfile.  Paths that leave the directory answer 404."""
        root = Path(directory).resolve()
        prefix = prefix.rstrip("/")

        async def serve_file(request):
            rel = request.path_params["path"]
            target = (root / rel).resolve()
            if root not in target.parents or not target.is_file():
                raise HttpException(404)
            return FileResponse(target)

        self.route(prefix + "/{path:path}", serve_file, methods=("GET",))

    # -- middleware ---------------------------------------------------------------
    def middleware(self, fn=None, *, kind="around"):
        """Register middleware (also as a decorator).

        * ``kind="around"``: ``async def mw(request, call_next)``; it calls
          ``await call_next(request)`` to run the rest of the chain and
          returns a response (it may return one without calling it: a
          short-circuit).  The first registered is the outermost.
        * ``kind="before"``: ``async def mw(request)``; returning anything
          but None short-circuits with that as the response.
        * ``kind="after"``: ``async def mw(request, response)``; gets the
          :class:`Response` and returns it (or a replacement).

        Middleware wraps every route (and the 404/405 answers do not run
        through it).  It must be registered before the server starts.
        """
        if fn is None:
            return functools.partial(self.middleware, kind=kind)
        self._check_mutable()
        lists = {"around": self._around, "before": self._before, "after": self._after}
        if kind not in lists:
            raise InvalidArgumentError("kind", kind, "must be 'around', 'before' or 'after'")
        lists[kind].append(fn)
        return fn

    def set_observer(self, *, new_cell=None, trace_call=None, trace_ratio=0.0,
                     context_vars=()):
        """Hooks for request metrics and tracing, kept in the C request path
        (flowcoro.observability.instrument() sets them; call before listen()).

        Args:
            new_cell: ``(route, method, status) -> HistCell``: with it,
                every request is timed (from its handler's start to the end
                of its response) into the histogram cell of its route
                pattern (None when no route matched), method and status
                (499 when the client went away first).  A
                :class:`flowcoro._core.httpserver.HistCell` counts in C; the
                server adds to it without a Python call.
            trace_call: ``(handler, request) -> coroutine`` run instead of
                ``handler(request)`` for requests that carry ``traceparent``
                and for a ``trace_ratio`` share of the others.
            context_vars: ``(ContextVar, value)`` pairs set in the context
                every connection's handlers start from.
        """
        self._check_mutable()
        self._observer = dict(new_cell=new_cell, trace_call=trace_call,
                              trace_ratio=float(trace_ratio), context_vars=list(context_vars))

    def on_startup(self, fn):
        """Register ``async def fn()`` to run before the server accepts."""
        self._on_startup.append(fn)
        return fn

    def on_shutdown(self, fn):
        """Register ``async def fn()`` to run after the server stopped."""
        self._on_shutdown.append(fn)
        return fn

    def _check_mutable(self):
        if self._frozen:
            raise InvalidStateError("routes and middleware must be added before the server starts")

    def _wrap(self, handler):
        """Compose the middleware around one handler (once, at start)."""
        before, after, around = list(self._before), list(self._after), list(self._around)
        if not (before or after or around):
            return handler

        async def core(request):
            for mw in before:
                early = await mw(request)
                if early is not None:
                    return early
            result = await handler(request)
            if after:
                if request.response_started:
                    # Answered by the handler itself (a WebSocket upgrade,
                    # start_response()): after-middleware sees what was sent
                    # and cannot change it.
                    sent = Response(b"", request.response_status or 200)
                    for mw in after:
                        await mw(request, sent)
                    return result
                resp = as_response(result)
                for mw in after:
                    resp = await mw(request, resp) or resp
                return resp
            return result

        chain = core
        for mw in reversed(around):
            chain = functools.partial(_around_step, mw, chain)
        return chain

    def _freeze(self):
        if self._frozen:
            return
        self._frozen = True
        if self._before or self._after or self._around:
            routes = list(self.router.routes)
            self.router = Router()
            for methods, pattern, handler in routes:
                self.router.add(pattern, self._wrap(handler), methods)
        if self.dispatch is not None:
            self.dispatch = self._wrap(self.dispatch)

    # -- serving ---------------------------------------------------------------
    async def listen(self, host="127.0.0.1", port=8080, *, sock=None, reuse_port=False,
                     backlog=1024, ssl=None):
        """Start serving on ``host:port`` (or an already bound ``sock``).

        Returns once the socket listens; the server runs until
        :meth:`stop`.  Call :meth:`serve_forever` to wait for that.  May be
        called more than once to listen on several addresses.
        """
        loop = asyncio.get_running_loop()
        self._freeze()
        if self._state is None:
            for fn in self._on_startup:
                await fn()
            s = self.settings
            self._state = ServerState(
                self.router, loop,
                max_request_line=s["max_request_line"], max_header_field=s["max_header_field"],
                max_headers=s["max_headers"], max_header_block=s["max_header_block"],
                max_chunk_line=s["max_chunk_line"], max_body=s["max_body"],
                header_timeout=s["header_timeout"], body_timeout=s["body_timeout"],
                keepalive_timeout=s["keepalive_timeout"], write_timeout=s["write_timeout"],
                max_pipeline=s["max_pipeline"], body_buffer=s["body_buffer"],
                dispatch=self.dispatch, on_count=self._on_count)
            obs = self._observer
            if obs is not None:
                st = self._state
                st.timing = obs["new_cell"] is not None
                st.new_cell = obs["new_cell"]
                st.trace_call = obs["trace_call"]
                st.trace_ratio = obs["trace_ratio"]
                st.context_vars = obs["context_vars"]
                st.set_route_names({h: pattern for _, pattern, h in self.router.routes})
            self._stopped = loop.create_future()
            self._sweep_later(loop)
        if sock is not None:
            server = await loop.create_server(self._state.protocol, sock=sock, backlog=backlog,
                                              ssl=ssl)
        else:
            server = await loop.create_server(self._state.protocol, host, port, backlog=backlog,
                                              reuse_port=reuse_port or None, ssl=ssl)
        self._servers.append(server)
        return server

    @property
    def sockets(self):
        """The listening sockets."""
        return [s for srv in self._servers for s in srv.sockets]

    @property
    def port(self):
        """The port of the first listening socket (handy with port 0)."""
        return self.sockets[0].getsockname()[1]

    @property
    def connections(self):
        """Number of open connections."""
        return 0 if self._state is None else len(self._state.connections)

    def _sweep_later(self, loop):
        def sweep():
            if self._state is None:
                return
            self._state.sweep()
            self._sweeper = loop.call_later(1.0, sweep)
        self._sweeper = loop.call_later(1.0, sweep)

    _paused = False

    _drained = None         # a Future stop() waits on until no connection is left
    _stopping = None        # a Future while stop() runs, set when it ends

    def _on_count(self, n):
        if n == 0 and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        # Accept backpressure: stop accepting at max_connections (the
        # listening sockets leave the reactor; newcomers wait in the kernel
        # backlog), resume below it through asyncio.Server._start_serving()
        # (FlowCoro's and asyncio's selector loops); where that hook is
        # missing (another loop), connections are not limited.
        limit = self.settings["max_connections"]
        if n >= limit and not self._paused:
            for srv in self._servers:
                if hasattr(srv, "_start_serving") and srv.is_serving():
                    loop = srv.get_loop()
                    for sock in srv.sockets:
                        loop.remove_reader(sock.fileno())
                    srv._serving = False
            self._paused = True
        elif n < limit and self._paused and (self._state is None or not self._state.closing):
            self._paused = False
            for srv in self._servers:
                if not srv.is_serving() and hasattr(srv, "_start_serving") and srv.sockets:
                    srv._start_serving()

    async def serve_forever(self):
        """Wait until :meth:`stop` has finished."""
        if self._stopped is None:
            raise InvalidStateError("call listen() first")
        await asyncio.shield(self._stopped)

    async def stop(self, grace=10.0):
        """Graceful stop: stop accepting, finish in-flight requests, close
        idle keep-alive connections, and after ``grace`` seconds cancel what
        still runs and abort its connections.  A stop() called while
        another runs waits for that one."""
        while self._stopping is not None:       # another stop() does the work
            await asyncio.shield(self._stopping)
        if self._state is None:
            return
        self._stopping = asyncio.get_running_loop().create_future()
        try:
            await self._stop(grace)
        finally:
            done, self._stopping = self._stopping, None
            done.set_result(None)

    async def _stop(self, grace):
        state = self._state
        for srv in self._servers:
            srv.close()
        state.close_idle()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        websockets = [ws for reg in self._websocket_registries for ws in list(reg)]
        if websockets:
            # Detached from HTTP: they get the closing handshake (1001); the
            # ones still closing when grace runs out are aborted.
            closing = [asyncio.ensure_future(ws.close(1001, "server shutting down"))
                       for ws in websockets]
            await asyncio.wait(closing, timeout=grace)
            for ws, fut in zip(websockets, closing):
                if not fut.done():
                    ws.abort()
                    fut.cancel()
        if state.connections:
            # Woken by _on_count() when the last connection goes.
            self._drained = loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._drained),
                                       max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                pass
            finally:
                self._drained = None
        if state.connections:
            state.abort_all()
            await asyncio.sleep(0)
        if self._sweeper is not None:
            self._sweeper.cancel()
        for srv in self._servers:
            try:
                await asyncio.wait_for(srv.wait_closed(), 1.0)
            except asyncio.TimeoutError:       # pragma: no cover - 3.12 waits for clients
                pass
        self._servers = []
        self._state = None
        try:
            for fn in self._on_shutdown:
                await fn()
        finally:
            # serve_forever() returns even when a shutdown hook failed.
            if self._stopped is not None and not self._stopped.done():
                self._stopped.set_result(None)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.stop()

    # -- blocking entry point -------------------------------------------------
    def run(self, host="127.0.0.1", port=8080, *, workers=1, reuse_port=None):
        """Serve until SIGINT/SIGTERM (blocking), on FlowCoro's loop.

        With ``workers=N`` (N > 1) the process forks N workers that each
        bind ``host:port`` with SO_REUSEPORT (the kernel spreads the
        connections) and run their own loop; the parent waits and forwards
        SIGINT/SIGTERM (each worker then stops gracefully).
        """
        import flowcoro
        if workers < 1:
            raise InvalidArgumentError("workers", workers, "must be >= 1")
        if workers == 1:
            flowcoro.run(self._run_one(host, port, bool(reuse_port)))
            return
        if not hasattr(socket, "SO_REUSEPORT"):
            raise InvalidArgumentError("workers", workers, "SO_REUSEPORT is not available here")
        children = []
        for _ in range(workers):
            pid = os.fork()
            if pid == 0:                        # pragma: no cover - in the child
                code = 0
                try:
                    flowcoro.run(self._run_one(host, port, True))
                except BaseException:
                    log.exception("worker failed")
                    code = 1
                finally:
                    os._exit(code)
            children.append(pid)

        def forward(signum, frame):
            for pid in children:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for pid in children:
                while True:
                    try:
                        os.waitpid(pid, 0)
                        break
                    except ChildProcessError:
                        break
                    except InterruptedError:     # pragma: no cover
                        continue
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    async def _run_one(self, host, port, reuse_port):
        loop = asyncio.get_running_loop()
        await self.listen(host, port, reuse_port=reuse_port)
        stop = asyncio.Event()
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(s, stop.set)
            except (NotImplementedError, RuntimeError):   # pragma: no cover
                pass
        log.info("serving on http://%s:%d (pid %d)", host, self.port, os.getpid())
        await stop.wait()
        await self.stop()


async def _around_step(mw, call_next, request):
    return await mw(request, call_next)

