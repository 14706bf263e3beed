"""Tracing through the OpenTelemetry API: spans, W3C trace context, helpers.

FlowCoro does not keep a tracing model of its own: spans are OpenTelemetry
spans, the current span travels in OpenTelemetry's context (a
``contextvars.ContextVar``, so it follows tasks on any asyncio loop: each
Task, and each HttpServer handler, runs in a copy of its creator's
context), and export is whatever the application configured
(``opentelemetry-sdk`` with the OTLP exporter for Jaeger, Tempo, ...; see
docs/observability.md).  Without an SDK the API hands out non-recording
spans and all of this costs little.

What is here:

* :class:`Tracer` / :class:`SpanGuard`: the roadmap's
  ``tracer.start_span(name)`` with ``set_tag`` and ``log``, a thin layer
  over an OpenTelemetry span;
* :func:`traced`: a decorator or context manager for a block of work
  (a Redis command, a query, anything);
* :func:`inject_headers` and :func:`traced_request`: outgoing HTTP
  requests carry ``traceparent`` (a CLIENT span around
  :meth:`flowcoro.http.HttpClient.request`);
* the unsampled fast path: when the HTTP middleware decides not to trace
  a request (see :class:`flowcoro.observability.HttpObserver`), it sets
  :data:`_unsampled` so that every helper here returns a no-op at once,
  without calling OpenTelemetry (a non-sampled OpenTelemetry SDK span
  still costs about 10 µs).
"""
from __future__ import annotations

import contextvars
import functools
import inspect

__all__ = ["Tracer", "SpanGuard", "traced", "inject_headers", "traced_request",
           "get_tracer", "INSTRUMENTATION_NAME"]

#: The instrumentation scope name of FlowCoro's spans.
INSTRUMENTATION_NAME = "flowcoro"

#: True while a request the middleware chose not to trace is handled:
#: spans started through this module are no-ops then (children of an
#: unsampled request are not sampled either).
_unsampled = contextvars.ContextVar("flowcoro_trace_unsampled", default=False)

_otel = None


def _api():
    """The opentelemetry API modules, imported on first use."""
    global _otel
    if _otel is None:
        from opentelemetry import context, propagate, trace
        _otel = (trace, context, propagate)
    return _otel


def get_tracer(name=INSTRUMENTATION_NAME, tracer_provider=None):
    """An OpenTelemetry tracer from ``tracer_provider`` (default: the global one)."""
    trace = _api()[0]
    if tracer_provider is not None:
        return tracer_provider.get_tracer(name)
    return trace.get_tracer(name)


def _kind(kind):
    trace = _api()[0]
    if kind is None:
        return trace.SpanKind.INTERNAL
    if isinstance(kind, str):
        return trace.SpanKind[kind.upper()]
    return kind


class SpanGuard:
    """One span, with the roadmap's convenience methods.

    Use it as a context manager (``with`` or ``async with``) to make the
    span current for the block (child spans attach to it) and end it on
    exit; an exception leaving the block is recorded on the span and sets
    its status to ERROR.  Outside a ``with``, call :meth:`end` yourself.

    Attributes:
        span: the OpenTelemetry span (``opentelemetry.trace.Span``); a
            non-recording one when not sampled.
    """

    __slots__ = ("span", "_token", "_ended")

    def __init__(self, span):
        self.span = span
        self._token = None
        self._ended = False

    def set_tag(self, key, value):
        """Set attribute ``key`` on the span; returns self."""
        self.span.set_attribute(key, value)
        return self

    def log(self, message, **fields):
        """Add an event named ``message`` with ``fields`` as attributes; returns self."""
        self.span.add_event(message, fields or None)
        return self

    def set_error(self, exc=None, description=None):
        """Mark the span failed (status ERROR), recording ``exc`` if given."""
        trace = _api()[0]
        if exc is not None:
            self.span.record_exception(exc)
            description = description or f"{type(exc).__name__}: {exc}"
        self.span.set_status(trace.Status(trace.StatusCode.ERROR, description))
        return self

    @property
    def context(self):
        """The span's ``SpanContext`` (trace_id, span_id, trace_flags)."""
        return self.span.get_span_context()

    @property
    def is_recording(self):
        """True when the span is sampled and will be exported."""
        return self.span.is_recording()

    def end(self):
        """End the span (once; later calls do nothing)."""
        if not self._ended:
            self._ended = True
            self.span.end()

    def __enter__(self):
        trace, context, _ = _api()
        self._token = context.attach(trace.set_span_in_context(self.span))
        return self

    def __exit__(self, et, exc, tb):
        context = _api()[1]
        try:
            if exc is not None and not isinstance(exc, GeneratorExit):
                self.set_error(exc)
        finally:
            if self._token is not None:
                context.detach(self._token)
                self._token = None
            self.end()
        return False

    async def __aenter__(self):
        return self.__enter__()

    async def __aexit__(self, et, exc, tb):
        return self.__exit__(et, exc, tb)

    def __repr__(self):
        c = self.span.get_span_context()
        return f"<SpanGuard trace={c.trace_id:032x} span={c.span_id:016x}>"


class _NoopGuard:
    """What the helpers return inside an unsampled request: does nothing."""

    __slots__ = ()
    span = None
    is_recording = False
    context = None

    def set_tag(self, key, value):
        """Nothing."""
        return self

    def log(self, message, **fields):
        """Nothing."""
        return self

    def set_error(self, exc=None, description=None):
        """Nothing."""
        return self

    def end(self):
        """Nothing."""

    def __enter__(self):
        return self

    def __exit__(self, et, exc, tb):
        return False

    async def __aenter__(self):
        return self

    async def __aexit__(self, et, exc, tb):
        return False


_NOOP = _NoopGuard()


class Tracer:
    """The roadmap's tracer: ``tracer.start_span(name)`` returns a :class:`SpanGuard`.

    Example::

        tracer = Tracer("orders")
        with tracer.start_span("charge", tags={"order.id": 42}) as span:
            span.log("card accepted", last4="4242")
            span.set_tag("amount", 1999)

    Args:
        name: the instrumentation scope name.
        tracer_provider: an OpenTelemetry ``TracerProvider`` (default: the
            global one, set with ``opentelemetry.trace.set_tracer_provider``).
    """

    def __init__(self, name=INSTRUMENTATION_NAME, tracer_provider=None):
        self.name = name
        self._provider = tracer_provider
        self._tracer = None

    @property
    def otel_tracer(self):
        """The underlying OpenTelemetry tracer (resolved on first use, so a
        provider installed after this object was made is still used)."""
        if self._tracer is None:
            self._tracer = get_tracer(self.name, self._provider)
        return self._tracer

    def start_span(self, name, *, kind=None, tags=None, parent=None):
        """Start a span; ``with`` it to make it current.

        Args:
            name: the span name.
            kind: an ``opentelemetry.trace.SpanKind`` or its name
                ("server", "client", "internal", "producer", "consumer").
            tags: attributes to set at start.
            parent: a :class:`SpanGuard`, an OpenTelemetry span or context
                to parent it on (default: the current span).
        """
        if _unsampled.get():
            return _NOOP
        trace = _api()[0]
        ctx = None
        if isinstance(parent, SpanGuard):
            parent = parent.span
        if parent is not None:
            ctx = parent if not isinstance(parent, trace.Span) else trace.set_span_in_context(parent)
        span = self.otel_tracer.start_span(name, context=ctx, kind=_kind(kind), attributes=tags)
        return SpanGuard(span)


_default_tracer = Tracer()


class traced:
    """A span around a block or a function: ``traced(name)``.

    As a context manager (``with`` or ``async with``)::

        with traced("redis GET", kind="client", attributes={"db.system": "redis"}) as span:
            value = await r.get(key)

    As a decorator (sync or async function; the name defaults to the
    function's qualified name)::

        @traced("load user")
        async def load_user(uid): ...

    The span is current inside the block, ends on exit, and records an
    exception that leaves it.  Inside a request the HTTP middleware chose
    not to trace, it is a no-op.
    """

    __slots__ = ("name", "kind", "attributes", "tracer", "_guard")

    def __init__(self, name=None, *, kind=None, attributes=None, tracer=None):
        self.name = name
        self.kind = kind
        self.attributes = attributes
        self.tracer = tracer or _default_tracer
        self._guard = None

    def _start(self):
        return self.tracer.start_span(self.name or "span", kind=self.kind, tags=self.attributes)

    def __enter__(self):
        self._guard = self._start()
        return self._guard.__enter__()

    def __exit__(self, et, exc, tb):
        g, self._guard = self._guard, None
        return g.__exit__(et, exc, tb)

    async def __aenter__(self):
        return self.__enter__()

    async def __aexit__(self, et, exc, tb):
        return self.__exit__(et, exc, tb)

    def __call__(self, fn):
        """Decorate ``fn`` (a new span per call)."""
        name = self.name or getattr(fn, "__qualname__", repr(fn))
        kind, attrs, tracer = self.kind, self.attributes, self.tracer

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args, **kwargs):
                with tracer.start_span(name, kind=kind, tags=attrs):
                    return await fn(*args, **kwargs)
            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with tracer.start_span(name, kind=kind, tags=attrs):
                return fn(*args, **kwargs)
        return wrapper


def inject_headers(headers=None, *, context=None):
    """Return ``headers`` (a new dict if None) with the current trace
    context written into it (``traceparent`` and ``tracestate``, through
    the globally configured propagator: W3C trace context by default).

    Nothing is added when there is no valid current span (or inside an
    unsampled request, where there is none).
    """
    if headers is None:
        headers = {}
    if _unsampled.get():
        return headers
    _api()[2].inject(headers, context=context)
    return headers


async def traced_request(client, method, url, *, headers=None, tracer=None, **kwargs):
    """``client.request(method, url, ...)`` inside a CLIENT span that is
    propagated to the server in ``traceparent``.

    ``client`` is a :class:`flowcoro.http.HttpClient` (or anything with the
    same ``request(method, url, *, headers=..., **kwargs)``, such as an
    httpx or aiohttp session).  The span is named ``"{METHOD}"`` (the
    semantic conventions' name for a client span without a route) and
    carries ``http.request.method``, ``url.full`` and
    ``http.response.status_code``; a status >= 400 or an exception sets it
    to ERROR.  ``headers`` is not modified (a copy gets the trace fields).
    """
    t = tracer or _default_tracer
    method = method.upper()
    guard = t.start_span(method, kind="client",
                         tags={"http.request.method": method, "url.full": str(url)})
    h = dict(headers.items() if hasattr(headers, "items") else headers or ())
    with guard:
        inject_headers(h)
        resp = await client.request(method, url, headers=h, **kwargs)
        status = getattr(resp, "status", None)
        if status is None:
            status = getattr(resp, "status_code", None)
        if status is not None:
            guard.set_tag("http.response.status_code", int(status))
            if int(status) >= 400:
                guard.set_error(description=f"HTTP {status}")
        return resp
