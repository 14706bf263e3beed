"""Tracing: a span tree exported over OTLP/HTTP to a receiver in the test."""
import asyncio
import uuid

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from flowcoro.errors import HttpException
from flowcoro.http import HttpClient, HttpServer, Response
from flowcoro.observability import (HttpObserver, Metrics, SpanGuard, Tracer, inject_headers,
                                    instrument, instrument_db, instrument_redis, traced,
                                    traced_request)
from flowcoro.observability.tracing import _unsampled

from obs_helpers import get, run

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


class Receiver:
    """An OTLP/HTTP trace receiver: POST /v1/traces, protobuf bodies."""

    def __init__(self):
        self.app = HttpServer()
        self.requests = []
        self.app.route("/v1/traces", self.receive, methods=["POST"])

    async def receive(self, request):
        assert request.headers.get("content-type") == "application/x-protobuf"
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(await request.body())
        self.requests.append(msg)
        return Response(b"", 200, None, "application/x-protobuf")

    def spans(self):
        """Every received span, by name."""
        out = {}
        for msg in self.requests:
            for rs in msg.resource_spans:
                for ss in rs.scope_spans:
                    for sp in ss.spans:
                        out[sp.name] = sp
        return out


def test_span_tree_over_otlp(loop, redis_url):
    """One HTTP request -> server span -> Redis and DB child spans, exported
    by the SDK's OTLPSpanExporter to a real OTLP/HTTP receiver."""
    import flowcoro.db as db
    from flowcoro.redis import Redis

    receiver = Receiver()
    app = HttpServer()
    key = f"fctest:obs:{uuid.uuid4().hex[:10]}"

    async def main():
        await receiver.app.listen("127.0.0.1", 0)
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{receiver.app.port}/v1/traces",
                                    timeout=10)
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(exporter))
        tracer = Tracer("test", tracer_provider=provider)
        r = Redis.from_url(redis_url)
        conn = await db.connect("sqlite://:memory:")

        instrument_redis(r, tracer_provider=provider)
        instrument_db(conn, tracer_provider=provider)

        @app.route("/orders/{id:int}")
        async def order(request):
            await r.set(key, "1", ex=30)            # a CLIENT span of its own
            with traced("price", tracer=tracer) as span:
                v = await conn.fetchval("SELECT $1 + 1", [request.path_params["id"]])
                span.set_tag("db.rows", 1).log("fetched", value=v)
            return {"v": v}

        instrument(app, Metrics(False), tracer_provider=provider)
        await app.listen("127.0.0.1", 0)
        try:
            st, _, body = await get(app.port, "/orders/41", headers={
                "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "tracestate": "k=v"})
            assert st == 200 and body == b'{"v":42}'
            # force_flush blocks until the exporter's POST is answered: run it
            # in a thread, the receiver answers on this loop.
            ok = await asyncio.get_running_loop().run_in_executor(None, provider.force_flush)
            assert ok
        finally:
            await app.stop(grace=1)
            await receiver.app.stop(grace=1)
            await r.delete(key)
            await r.aclose()
            await conn.close()
            provider.shutdown()
    run(loop, main(), timeout=30)
    spans = receiver.spans()
    assert set(spans) == {"GET /orders/{id:int}", "SET", "price", "SELECT"}
    server, rs, price, ds = (spans["GET /orders/{id:int}"], spans["SET"], spans["price"],
                             spans["SELECT"])
    for sp in spans.values():
        assert sp.trace_id.hex() == TRACE_ID          # the caller's trace continues
    assert server.parent_span_id.hex() == PARENT_ID   # child of the caller's span
    assert rs.parent_span_id == server.span_id
    assert price.parent_span_id == server.span_id
    assert ds.parent_span_id == price.span_id
    assert len({rs.span_id, price.span_id, ds.span_id}) == 3
    assert server.kind == server.SPAN_KIND_SERVER
    assert rs.kind == rs.SPAN_KIND_CLIENT and ds.kind == ds.SPAN_KIND_CLIENT
    rattrs = {a.key: a.value for a in rs.attributes}
    assert rattrs["db.system"].string_value == "redis"
    assert rattrs["db.operation.name"].string_value == "SET"
    assert "server.address" in rattrs and "db.namespace" in rattrs
    attrs = {a.key: a.value for a in server.attributes}
    assert attrs["http.request.method"].string_value == "GET"
    assert attrs["http.route"].string_value == "/orders/{id:int}"
    assert attrs["url.path"].string_value == "/orders/41"
    assert attrs["http.response.status_code"].int_value == 200
    assert server.trace_state == "k=v"
    dattrs = {a.key: a.value for a in ds.attributes}
    assert dattrs["db.system"].string_value == "sqlite"
    assert dattrs["db.query.text"].string_value == "SELECT $1 + 1"
    pattrs = {a.key: a.value for a in price.attributes}
    assert pattrs["db.rows"].int_value == 1
    assert [e.name for e in price.events] == ["fetched"]


def memory_provider(sampler=None):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler) if sampler else TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_server_span_status_errors_and_propagation_out(loop):
    """5xx sets ERROR, 4xx does not; an outgoing request from the handler
    carries the server span as parent (traced_request)."""
    provider, exporter = memory_provider()
    tracer = Tracer(tracer_provider=provider)
    app = HttpServer()
    seen = {}

    @app.route("/fail")
    async def fail(request):
        raise RuntimeError("boom")

    @app.route("/missing")
    async def missing(request):
        raise HttpException(404)

    @app.route("/none")
    async def none(request):
        return None

    @app.route("/echo")
    async def echo(request):
        seen["traceparent"] = request.headers.get("traceparent")
        return Response("x", 201)

    @app.route("/call")
    async def call(request):
        async with HttpClient() as c:
            resp = await traced_request(c, "get", f"http://127.0.0.1:{app.port}/echo",
                                        headers={"x-a": "1"}, tracer=tracer)
        return str(resp.status)

    app.middleware(HttpObserver(tracing=True, tracer_provider=provider, app=app))

    async def main():
        await app.listen("127.0.0.1", 0)
        try:
            assert (await get(app.port, "/fail"))[0] == 500
            assert (await get(app.port, "/missing"))[0] == 404
            assert (await get(app.port, "/none"))[0] == 204
            st, _, body = await get(app.port, "/call?x=1", headers={"user-agent": "t/1"})
            assert st == 200 and body == b"201"
        finally:
            await app.stop(grace=1)
    run(loop, main())
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["GET /fail"].status.status_code == trace.StatusCode.ERROR
    assert spans["GET /fail"].events[0].name == "exception"
    assert spans["GET /missing"].status.status_code == trace.StatusCode.UNSET
    assert spans["GET /missing"].attributes["http.response.status_code"] == 404
    assert spans["GET /none"].attributes["http.response.status_code"] == 204
    call, client, echo = spans["GET /call"], spans["GET"], spans["GET /echo"]
    assert call.attributes["url.query"] == "x=1"
    assert call.attributes["user_agent.original"] == "t/1"
    assert client.parent.span_id == call.context.span_id
    assert client.kind == trace.SpanKind.CLIENT
    assert client.attributes["http.response.status_code"] == 201
    assert echo.parent.span_id == client.context.span_id       # propagated out and back in
    assert echo.context.trace_id == call.context.trace_id
    version, tid, sid, flags = seen["traceparent"].split("-")
    assert (version, tid, sid) == ("00", f"{call.context.trace_id:032x}",
                                   f"{client.context.span_id:016x}")
    assert int(flags, 16) & 1                                   # sampled


def test_unsampled_requests_make_no_spans(loop):
    """root_sample_ratio=0: no span for the request nor for traced() blocks
    inside it; a request with a sampled traceparent is still traced."""
    provider, exporter = memory_provider()
    tracer = Tracer(tracer_provider=provider)
    app = HttpServer()
    flags = []

    @app.route("/")
    async def index(request):
        flags.append(_unsampled.get())
        with traced("child", tracer=tracer) as g:
            g.set_tag("a", 1).log("x")
            g.set_error(ValueError("v"))
            g.end()
            flags.append(inject_headers())
        return "ok"

    app.middleware(HttpObserver(Metrics(False), tracing=True, tracer_provider=provider,
                                root_sample_ratio=0.0))

    async def main():
        await app.listen("127.0.0.1", 0)
        try:
            assert (await get(app.port, "/"))[0] == 200
            assert exporter.get_finished_spans() == ()
            tp = f"00-{TRACE_ID}-{PARENT_ID}-01"
            assert (await get(app.port, "/", headers={"traceparent": tp}))[0] == 200
        finally:
            await app.stop(grace=1)
    run(loop, main())
    assert flags[0] is True and flags[1] == {}
    assert flags[2] is False and "traceparent" in flags[3]
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == ["GET /", "child"]


def test_parent_not_sampled_propagates_without_recording(loop):
    """A traceparent with the sampled flag off: SDK (ParentBased) does not
    record, but the trace id still propagates to outgoing headers."""
    provider, exporter = memory_provider(ParentBased(ALWAYS_OFF))
    app = HttpServer()
    out = {}

    @app.route("/")
    async def index(request):
        out.update(inject_headers())
        return "ok"

    app.middleware(HttpObserver(tracing=True, tracer_provider=provider))

    async def main():
        await app.listen("127.0.0.1", 0)
        try:
            assert (await get(app.port, "/", headers={
                "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"}))[0] == 200
        finally:
            await app.stop(grace=1)
    run(loop, main())
    assert exporter.get_finished_spans() == ()
    assert out["traceparent"].startswith(f"00-{TRACE_ID}-")
    assert not int(out["traceparent"].rsplit("-", 1)[1], 16) & 1      # not sampled


def test_tracer_span_guard_and_traced_decorator(loop):
    provider, exporter = memory_provider()
    tracer = Tracer("unit", tracer_provider=provider)

    @traced("sync work", tracer=tracer, attributes={"k": "v"})
    def work(x):
        return x * 2

    @traced(tracer=tracer)
    async def awork(x):
        await asyncio.sleep(0)
        return x + 1

    async def main():
        with tracer.start_span("root", kind="server", tags={"a": 1}) as root:
            assert isinstance(root, SpanGuard) and root.is_recording
            assert "SpanGuard trace=" in repr(root)
            root.set_tag("b", 2).log("hello", n=3)
            assert work(2) == 4
            assert await awork(1) == 2
            # a task created inside the span inherits it (contextvars)
            t = asyncio. get_running_loop().create_task(awork(5))
            assert await t == 6
            detached = tracer.start_span("explicit", parent=root)
            detached.end()
            detached.end()          # twice: ended once
            ctx_child = tracer.start_span("via ctx", parent=trace.set_span_in_context(root.span))
            ctx_child.end()
        with pytest.raises(KeyError):
            async with traced("failing", tracer=tracer):
                raise KeyError("k")
        return root.context
    rootctx = run(loop, main())
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) >= {"root", "sync work", "explicit", "via ctx", "failing"}
    for name in ("sync work", "explicit", "via ctx"):
        assert spans[name].parent.span_id == rootctx.span_id
    aw = [s for s in exporter.get_finished_spans() if s.name.endswith("awork")]
    assert len(aw) == 2 and all(s.parent.span_id == rootctx.span_id for s in aw)
    assert spans["root"].kind == trace.SpanKind.SERVER
    assert spans["root"].attributes == {"a": 1, "b": 2}
    assert spans["root"].events[0].name == "hello"
    assert spans["sync work"].attributes["k"] == "v"
    assert spans["failing"].status.status_code == trace.StatusCode.ERROR
    assert spans["failing"].parent is None


def test_global_provider_default_is_noop():
    """Without an SDK the API's tracer gives non-recording spans; nothing breaks."""
    t = Tracer()
    with t.start_span("x") as g:
        assert not g.is_recording
    assert inject_headers({"a": "b"}) == {"a": "b"}
