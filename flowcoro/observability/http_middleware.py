"""HTTP server metrics and tracing for HttpServer.

Theory of operation
-------------------
:func:`instrument` (the way to use this) hands HttpServer hooks that its C
request path calls (HttpServer.set_observer): the server times every
request into :class:`Metrics` histogram cells itself, and calls into Python
only for requests that are traced; untraced requests run with the helpers
of tracing.py switched off through a context variable set once per
connection.  That keeps metrics and unsampled tracing at a few percent of a
plaintext request.

The same observer also works as ONE around-middleware
(:class:`HttpObserver`, :func:`http_metrics_middleware`,
:func:`http_tracing_middleware`) for stacks that want it in the chain;
every around-middleware costs a coroutine per request.  What follows
describes that path.

Per request, the unsampled path does: two ``perf_counter()`` calls, one
header lookup (``traceparent``), one ``random()`` (unless the ratio is 0
or 1), a context variable set and reset (so that helpers in
:mod:`flowcoro.observability.tracing` become no-ops below it), and one
histogram observation (a dict lookup, a ``bisect`` and two additions; see
metrics.py).  No OpenTelemetry call is made: a non-sampled span from the
OpenTelemetry SDK costs about 10 µs, more than the rest of a small request.

Sampling: a request that carries ``traceparent`` is always handed to
OpenTelemetry (its sampler decides, normally following the parent's
sampled flag), because the trace context must propagate downstream even
when not sampled.  A request without one starts a trace with probability
``root_sample_ratio``; the SDK's own sampler then decides again.

Route label: the route *pattern* (``/users/{id:int}``), never the path
(bounded cardinality).  A route without parameters matched its path
exactly, so the path is the pattern; for a route with parameters the
pattern is found through the server's router (``app``), or, when the
middleware was built without ``app``, rebuilt from ``path_params``.
404/405 answers do not pass through HttpServer middleware and are not
counted here.
"""
from __future__ import annotations

from random import random
from time import perf_counter

from flowcoro.errors import HttpException
from flowcoro._core.httpserver import HistCell
from flowcoro.observability.tracing import _api, _unsampled, get_tracer

__all__ = ["HttpObserver", "http_metrics_middleware", "http_tracing_middleware",
           "instrument", "HTTP_DURATION"]

#: Name of the request duration histogram (OpenTelemetry semantic
#: conventions' ``http.server.request.duration``, in seconds).
HTTP_DURATION = "http_server_request_duration_seconds"

#: Buckets of the request duration histogram (the semantic conventions'
#: advice for http.server.request.duration).
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


class HttpObserver:
    """Around-middleware for :class:`flowcoro.http.HttpServer`: request
    metrics and/or SERVER spans.

    Register it with ``app.middleware(HttpObserver(...))`` (or use
    :func:`instrument`).

    Args:
        metrics: a :class:`flowcoro.observability.Metrics` receiving the
            histogram ``http_server_request_duration_seconds`` with labels
            ``method``, ``route``, ``status`` (its ``_count`` is the request
            count); None: no metrics.
        tracing: start SERVER spans (W3C ``traceparent`` extracted from the
            request, ``http.*`` attributes, status ERROR on 5xx).
        tracer_provider: OpenTelemetry provider (default: the global one).
        root_sample_ratio: fraction of requests without ``traceparent``
            that start a trace (0 to 1).  The others cost no OpenTelemetry
            call at all.
        app: the HttpServer, to label routes with parameters by their
            pattern exactly.
    """

    def __init__(self, metrics=None, *, tracing=False, tracer_provider=None,
                 root_sample_ratio=1.0, app=None):
        if not 0.0 <= float(root_sample_ratio) <= 1.0:
            from flowcoro.errors import InvalidArgumentError
            raise InvalidArgumentError("root_sample_ratio", root_sample_ratio, "must be in [0, 1]")
        self.metrics = metrics
        self.tracing = bool(tracing)
        self.root_sample_ratio = float(root_sample_ratio)
        self.app = app
        self._provider = tracer_provider
        self._tracer = None
        self._patterns = None           # id(handler) -> pattern, built from app.router
        if metrics is not None:
            metrics.histogram(HTTP_DURATION, "Duration of HTTP server requests (seconds)",
                              ("method", "route", "status"), HTTP_BUCKETS)

    # -- route label -------------------------------------------------------------
    def route_of(self, request):
        """The route pattern that matched ``request``."""
        pp = request.path_params
        if not pp:
            return request.path
        app = self.app
        if app is not None:
            h = app.router.match(request.method, request.path)[0]
            pats = self._patterns
            if pats is None or id(h) not in pats:
                pats = self._patterns = {id(hh): p for _, p, hh in app.router.routes}
            p = pats.get(id(h))
            if p is not None:
                return p
        return _rebuild(request.path, pp)

    def attach(self, app):
        """Observe ``app`` through its C request path (HttpServer.set_observer):
        the server times every request into this observer's histogram cells
        itself (no coroutine, no Python call per request), and calls into
        Python only for the requests that are traced.  404/405 answers are
        counted too, with route ``<unmatched>``."""
        new_cell = trace_call = None
        context_vars = ()
        metrics = self.metrics
        if metrics is not None:
            def new_cell(route, method, status):
                """The histogram cell of one (route, method, status)."""
                return metrics._histogram_cell(
                    HTTP_DURATION, (method, route if route is not None else "<unmatched>",
                                    str(status)), HistCell)
        if self.tracing:
            async def traced_call(handler, request):
                """One traced request (sampled by the server's C path)."""
                token = _unsampled.set(False)
                try:
                    return await self._traced(request, handler,
                                              request.headers.get("traceparent"),
                                              request.route or request.path, record=False)
                finally:
                    _unsampled.reset(token)
            trace_call = traced_call
            # Untraced requests run with the helpers of tracing.py switched off.
            context_vars = [(_unsampled, True)]
        app.set_observer(new_cell=new_cell, trace_call=trace_call,
                         trace_ratio=self.root_sample_ratio, context_vars=context_vars)
        self.app = app
        return app

    # -- the middleware ------------------------------------------------------------
    async def __call__(self, request, call_next):
        """Run the rest of the chain, measured and/or traced."""
        if self.tracing:
            tp = request.headers.get("traceparent")
            ratio = self.root_sample_ratio
            if tp is not None or ratio >= 1.0 or (ratio > 0.0 and random() < ratio):
                return await self._traced(request, call_next, tp, self.route_of(request))
            token = _unsampled.set(True)
            try:
                return await self._measured(request, call_next)
            finally:
                _unsampled.reset(token)
        return await self._measured(request, call_next)

    async def _measured(self, request, call_next):
        metrics = self.metrics
        if metrics is None:
            return await call_next(request)
        t0 = perf_counter()
        status = 500
        try:
            result = await call_next(request)
            status = _status_of(result, request)
            return result
        except HttpException as e:
            status = e.status
            raise
        except BaseException as e:
            status = 499 if _is_cancel(e) else 500
            raise
        finally:
            metrics.histogram_observe(
                HTTP_DURATION, perf_counter() - t0,
                (request.method, self.route_of(request), str(status)))

    async def _traced(self, request, call_next, tp, route, record=True):
        trace, context, propagate = _api()
        tracer = self._tracer
        if tracer is None:
            tracer = self._tracer = get_tracer(tracer_provider=self._provider)
        parent = None
        if tp is not None:
            carrier = {"traceparent": tp}
            ts = request.headers.get("tracestate")
            if ts is not None:
                carrier["tracestate"] = ts
            parent = propagate.extract(carrier)
        method = request.method
        attrs = {
            "http.request.method": method,
            "http.route": route,
            "url.path": request.path,
            "url.scheme": "http",
            "network.protocol.version": request.http_version,
        }
        if request.query_string:
            attrs["url.query"] = request.query_string.decode("latin-1")
        ua = request.headers.get("user-agent")
        if ua is not None:
            attrs["user_agent.original"] = ua
        client = request.client
        if client:
            attrs["client.address"] = str(client[0])
        span = tracer.start_span(f"{method} {route}", context=parent,
                                 kind=trace.SpanKind.SERVER, attributes=attrs)
        token = context.attach(trace.set_span_in_context(span, parent))
        t0 = perf_counter()
        status = 500
        try:
            result = await call_next(request)
            status = _status_of(result, request)
            return result
        except HttpException as e:
            status = e.status
            raise
        except BaseException as e:
            if _is_cancel(e):
                status = 499
            else:
                span.record_exception(e)
            raise
        finally:
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(trace.Status(trace.StatusCode.ERROR, f"HTTP {status}"))
            span.end()
            context.detach(token)
            if record and self.metrics is not None:
                self.metrics.histogram_observe(HTTP_DURATION, perf_counter() - t0,
                                               (method, route, str(status)))


_Response = None


def _status_of(result, request):
    global _Response
    # The handler wrote its own response (start_response; a WebSocket
    # upgrade is 101): that head's status, whatever it returned.
    sent = request.response_status
    if sent:
        return sent
    if result is None:
        return 204
    if _Response is None:
        from flowcoro.http import Response
        _Response = Response
    if isinstance(result, _Response):
        return result.status
    return 200


def _is_cancel(e):
    import asyncio
    return isinstance(e, asyncio.CancelledError)


def _rebuild(path, params):
    """Best effort pattern from a path and its converted parameters."""
    segs = path.split("/")
    items = list(params.items())
    out = []
    k = 0
    i = 0
    while i < len(segs):
        seg = segs[i]
        if k < len(items) and i > 0:
            name, v = items[k]
            if isinstance(v, str) and "/" in v and "/".join(segs[i:]) == v:
                out.append("{%s}" % name)
                k += 1
                break
            try:
                same = type(v)(seg) == v
            except (TypeError, ValueError):
                same = False
            if same:
                out.append("{%s}" % name)
                k += 1
                i += 1
                continue
        out.append(seg)
        i += 1
    return "/".join(out)


def http_metrics_middleware(metrics=None, *, app=None):
    """Around-middleware recording request durations by method, route and
    status into ``metrics`` (default: a new :class:`Metrics` on
    prometheus_client's ``REGISTRY``)::

        app.middleware(http_metrics_middleware(metrics, app=app))
    """
    if metrics is None:
        from flowcoro.observability.metrics import Metrics
        metrics = Metrics()
    return HttpObserver(metrics, app=app)


def http_tracing_middleware(*, tracer_provider=None, root_sample_ratio=1.0, app=None):
    """Around-middleware starting a SERVER span per request (W3C
    ``traceparent`` from the request as parent)::

        app.middleware(http_tracing_middleware(root_sample_ratio=0.01))
    """
    return HttpObserver(None, tracing=True, tracer_provider=tracer_provider,
                        root_sample_ratio=root_sample_ratio, app=app)


def instrument(app, metrics=None, *, tracing=True, tracer_provider=None, root_sample_ratio=1.0,
               runtime=None, name="http"):
    """Add request metrics and tracing to every route of ``app``.

    Cheaper than middleware: HttpServer times each request in its C path
    into the histogram (see :meth:`HttpObserver.attach`; 404/405 answers
    are counted as route ``<unmatched>``), and only traced requests go
    through Python; the span and the duration cover the application's
    middleware too.  Registers the server's open connections
    with ``runtime`` (a :class:`flowcoro.observability.RuntimeMetrics`)
    when given.  Returns the :class:`HttpObserver`.  Call it before the
    server starts; routes may still be added after it.
    """
    obs = HttpObserver(metrics, tracing=tracing, tracer_provider=tracer_provider,
                       root_sample_ratio=root_sample_ratio, app=app)
    obs.attach(app)             # timing kept in HttpServer's C request path
    if runtime is not None:
        runtime.add_http_server(app, name)
    return obs
