"""Runtime metrics (lag, tasks, connections, pools) and HTTP request metrics."""
import asyncio
import socket
import struct
import time
import weakref

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import flowcoro
from prometheus_client.openmetrics.exposition import generate_latest as om_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse

from flowcoro.errors import HttpException, InvalidArgumentError
from flowcoro.http import HttpServer, Response
from flowcoro.observability import (HTTP_DURATION, HttpObserver, Metrics, RuntimeMetrics,
                                    http_metrics_middleware, http_tracing_middleware,
                                    instrument, metrics_handler)
from flowcoro.observability.http_middleware import _rebuild

from obs_helpers import get, run


def values(reg):
    """{(sample name, frozenset(labels)): value}, checked by both parsers."""
    list(om_parse(om_latest(reg).decode()))
    out = {}
    for fam in text_parse(generate_latest(reg).decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_loop_lag_tasks_and_connections(loop):
    reg = CollectorRegistry()
    rt = RuntimeMetrics(reg, lag_interval=0.01, window=50)
    app = HttpServer()
    release = None

    @app.route("/slow")
    async def slow(request):
        await release.wait()
        return "done"

    rt.add_http_server(app, "api")

    async def main():
        nonlocal release
        release = asyncio.Event()
        rt.start()
        await asyncio.sleep(0.05)
        time.sleep(0.12)            # block the loop: the next probe runs late
        await asyncio.sleep(0.05)
        await app.listen("127.0.0.1", 0)
        bg = [asyncio.get_running_loop().create_task(asyncio.sleep(5)) for _ in range(3)]
        reader, writer = await asyncio.open_connection("127.0.0.1", app.port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        while app.connections == 0:
            await asyncio.sleep(0.005)
        v = values(reg)
        release.set()
        await reader.readuntil(b"done")
        writer.close()
        for t in bg:
            t.cancel()
        await app.stop(grace=1)
        rt.stop()
        return v
    v = run(loop, main())
    assert v[("flowcoro_event_loop_lag_seconds", frozenset({("quantile", "1")}))] >= 0.1
    p50 = v[("flowcoro_event_loop_lag_seconds", frozenset({("quantile", "0.5")}))]
    p99 = v[("flowcoro_event_loop_lag_seconds", frozenset({("quantile", "0.99")}))]
    assert 0 <= p50 <= p99
    assert v[("flowcoro_event_loop_lag_samples", frozenset())] >= 5
    assert v[("flowcoro_tasks_alive", frozenset())] >= 4          # main + 3 sleepers
    assert v[("flowcoro_http_connections", frozenset({("server", "api")}))] == 1
    if type(loop).__module__.startswith("flowcoro"):
        assert ("flowcoro_loop_ready_callbacks", frozenset()) in v
        assert ("flowcoro_loop_timers", frozenset()) in v
        for counter in ("flowcoro_loop_iterations_total", "flowcoro_loop_polls_total",
                        "flowcoro_loop_busy_poll_hits_total",
                        "flowcoro_loop_callbacks_total",
                        "flowcoro_loop_read_bytes_total", "flowcoro_loop_written_bytes_total"):
            assert (counter, frozenset()) in v, counter
        assert v[("flowcoro_loop_iterations_total", frozenset())] > 0
    rt.unregister()
    rt.unregister()
    assert b"flowcoro_tasks_alive" not in generate_latest(reg)


def test_lag_quantiles_empty_and_weakrefs():
    rt = RuntimeMetrics(False)
    assert rt.lag_quantiles() == (0.0, 0.0, 0.0, 0)
    rt._lags.extend([0.001 * i for i in range(1, 101)])
    p50, p99, mx, n = rt.lag_quantiles()
    assert (p50, p99, mx, n) == (0.05, 0.1, 0.1, 100)

    class Srv:
        connections = 3
    s = Srv()
    rt.add_http_server(s, "gone")
    names = {f.name: f for f in rt.collect()}
    assert names["flowcoro_http_connections"].samples[0].value == 3
    del s
    names = {f.name: f for f in rt.collect()}
    assert names["flowcoro_http_connections"].samples == []


def test_redis_and_db_pools(loop, redis_url):
    import flowcoro.db as db
    from flowcoro.redis import Redis
    reg = CollectorRegistry()
    rt = RuntimeMetrics(reg)

    async def main():
        r = Redis.from_url(redis_url, max_connections=4)
        pool = await db.create_pool("sqlite://:memory:", min_size=1, max_size=1)
        rt.add_redis_pool(r, "cache")
        rt.add_db_pool(pool, "main")
        try:
            await r.ping()
            await r.execute_command("BLPOP", "fctest:obs:nothing", "0.01")  # a dedicated connection
            async with pool.acquire():
                v = values(reg)
                v["expected"] = r.connection_pool.stats()
        finally:
            await r.aclose()
            await pool.close()
        return v
    v = run(loop, main())
    st = v["expected"]      # the dedicated connections (the shared one has its own slot)
    assert v[("flowcoro_redis_pool_max_connections", frozenset({("pool", "cache")}))] == st.max_size
    assert v[("flowcoro_redis_pool_acquired_total", frozenset({("pool", "cache")}))] == st.acquired
    assert st.acquired >= 1
    assert ("flowcoro_redis_pool_connections", frozenset({("pool", "cache"), ("state", "idle")})) in v
    assert v[("flowcoro_db_pool_connections", frozenset({("pool", "main"), ("state", "in_use")}))] == 1
    assert v[("flowcoro_db_pool_connections", frozenset({("pool", "main"), ("state", "idle")}))] == 0
    assert v[("flowcoro_db_pool_max_connections", frozenset({("pool", "main")}))] == 1
    assert v[("flowcoro_db_pool_opened_total", frozenset({("pool", "main")}))] == 1


@pytest.mark.parametrize("form", ["instrument", "middleware", "instrument+tracing"])
def test_http_request_metrics(loop, form):
    reg = CollectorRegistry()
    m = Metrics(reg)
    rt = RuntimeMetrics(reg)
    app = HttpServer()

    @app.route("/users/{id:int}", methods=["GET", "DELETE"])
    async def user(request):
        if request.path_params["id"] == 0:
            raise HttpException(404)
        if request.path_params["id"] == 1:
            raise ValueError("bad")
        return {"id": request.path_params["id"]}

    @app.route("/files/{rest:path}")
    async def files(request):
        return Response(b"f", 202)

    @app.route("/hang")
    async def hang(request):
        await asyncio.sleep(30)

    app.route("/metrics", metrics_handler(reg))
    if form == "middleware":
        app.middleware(HttpObserver(m, app=app))
        rt.add_http_server(app, "api")
    else:
        # tracing on, nothing sampled: the metrics are the same
        instrument(app, m, tracing=form.endswith("tracing"), root_sample_ratio=0.0,
                   runtime=rt, name="api")

    async def main():
        await app.listen("127.0.0.1", 0)
        try:
            for path, want in (("/users/7", 200), ("/users/8", 200), ("/users/0", 404),
                               ("/users/1", 500), ("/files/a/b.txt", 202),
                               ("/nowhere", 404)):
                assert (await get(app.port, path))[0] == want
            assert (await get(app.port, "/users/9", method="DELETE"))[0] == 200
            # a client that goes away: the cancelled handler is counted as 499
            reader, writer = await asyncio.open_connection("127.0.0.1", app.port)
            writer.write(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()            # RST: the connection is lost
            for _ in range(200):
                if any(k[2] == "499" for k in _series(m)):
                    break
                await asyncio.sleep(0.01)
            st, _, body = await get(app.port, "/metrics")
            return body.decode()
        finally:
            await app.stop(grace=1)
    text = run(loop, main())
    v = {}
    for fam in text_parse(text):
        for s in fam.samples:
            v[(s.name, frozenset(s.labels.items()))] = s.value

    def count(method, route, status):
        return v.get((HTTP_DURATION + "_count", frozenset(
            {("method", method), ("route", route), ("status", status)})))
    assert count("GET", "/users/{id:int}", "200") == 2
    assert count("GET", "/users/{id:int}", "404") == 1
    assert count("GET", "/users/{id:int}", "500") == 1
    assert count("DELETE", "/users/{id:int}", "200") == 1
    assert count("GET", "/files/{rest:path}", "202") == 1
    assert count("GET", "/hang", "499") == 1
    assert count("GET", "/metrics", "200") is None     # counted after it answered
    assert not any("/nowhere" in str(k) for k in v)    # 404 without a route: not seen
    assert ("flowcoro_http_connections", frozenset({("server", "api")})) in v


def _series(m):
    return [tuple(e["labels"].values()) for e in m.snapshot()[HTTP_DURATION]["series"]]


def test_route_label_without_app(loop):
    m = Metrics(False)
    app = HttpServer()

    @app.route("/a/{x}/b/{n:int}")
    async def ab(request):
        return "ok"

    app.middleware(http_metrics_middleware(m))

    async def main():
        await app.listen("127.0.0.1", 0)
        try:
            assert (await get(app.port, "/a/q/b/007"))[0] == 200
        finally:
            await app.stop(grace=1)
    run(loop, main())
    assert _series(m) == [("GET", "/a/{x}/b/{n}", "200")]


def test_rebuild_and_options():
    assert _rebuild("/f/a/b", {"rest": "a/b"}) == "/f/{rest}"
    assert _rebuild("/u/3/x", {"id": 3}) == "/u/{id}/x"
    assert _rebuild("/u/3.5", {"v": 3.5}) == "/u/{v}"
    assert _rebuild("/u/zz", {"v": 3}) == "/u/zz"
    with pytest.raises(InvalidArgumentError):
        HttpObserver(tracing=True, root_sample_ratio=2)
    obs = http_tracing_middleware(root_sample_ratio=0.5)
    assert obs.tracing and obs.metrics is None
    from prometheus_client import REGISTRY
    mw = http_metrics_middleware()
    try:
        assert mw.metrics.registry is REGISTRY
    finally:
        mw.metrics.unregister()


def test_partial_sampling_ratio(loop):
    """0 < ratio < 1: some requests traced, some not, all counted."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    m = Metrics(False)
    app = HttpServer()
    app.route("/", lambda request: _ok())
    app.middleware(HttpObserver(m, tracing=True, tracer_provider=provider,
                                root_sample_ratio=0.5))

    async def main():
        await app.listen("127.0.0.1", 0)
        try:
            for _ in range(40):
                assert (await get(app.port, "/"))[0] == 200
        finally:
            await app.stop(grace=1)
    run(loop, main())
    n = len(exporter.get_finished_spans())
    assert 0 < n < 40          # P(fail) = 2 * 2**-40
    assert m.snapshot()[HTTP_DURATION]["series"][0]["count"] == 40


async def _ok():
    return "ok"


def test_instrument_survives_a_restart(loop):
    """listen() after stop() runs the startup hooks again: no double count."""
    m = Metrics(False)
    app = HttpServer()
    app.route("/", lambda request: _ok())
    instrument(app, m, tracing=False)

    async def main():
        for _ in range(2):
            await app.listen("127.0.0.1", 0)
            try:
                assert (await get(app.port, "/"))[0] == 200
            finally:
                await app.stop(grace=1)
    run(loop, main())
    assert m.snapshot()[HTTP_DURATION]["series"][0]["count"] == 2


def test_pool_wait_times_and_executor_stats(loop, redis_url):
    """Pools count the acquires that waited and for how long; the loop's
    default WorkStealingExecutor (and any added one) reports workers,
    queued calls and steals."""
    import threading

    import flowcoro.db as db
    from flowcoro.redis import Redis
    from flowcoro.scheduler import WorkStealingExecutor
    reg = CollectorRegistry()
    rt = RuntimeMetrics(reg)
    extra = WorkStealingExecutor(2)
    rt.add_executor(extra, "extra")

    async def hold(acquire, release, seconds):
        conn = await acquire()
        await asyncio.sleep(seconds)
        release(conn)

    async def main():
        rt.start()
        r = Redis.from_url(redis_url, max_connections=2)   # one dedicated, one shared
        pool = await db.create_pool("sqlite://:memory:", min_size=1, max_size=1)
        rt.add_redis_pool(r, "cache")
        rt.add_db_pool(pool, "main")
        try:
            rp = r.connection_pool
            # one holder, one waiter of ~50 ms on each pool
            await asyncio.gather(hold(rp.acquire, rp.release, 0.05),
                                 hold(rp.acquire, rp.release, 0))
            await asyncio.gather(hold(pool.acquire, pool.release, 0.05),
                                 hold(pool.acquire, pool.release, 0))
            await asyncio.get_running_loop().run_in_executor(None, sum, [1, 2])
            gate = threading.Event()
            futs = [extra.submit(gate.wait, 5) for _ in range(6)]
            v = values(reg)
            gate.set()
            for f in futs:
                f.result(5)
            return v, extra.stats()
        finally:
            rt.stop()
            await r.aclose()
            await pool.close()

    v, after = run(loop, main())
    extra.shutdown()
    for family in ("redis_pool", "db_pool"):
        label = "cache" if family == "redis_pool" else "main"
        assert v[(f"flowcoro_{family}_waits_total", frozenset({("pool", label)}))] == 1
        waited = v[(f"flowcoro_{family}_wait_seconds_total", frozenset({("pool", label)}))]
        assert 0.03 < waited < 2.0
    ex = frozenset({("executor", "extra")})
    assert v[("flowcoro_executor_workers", ex)] == 2
    assert v[("flowcoro_executor_queued", ex)] >= 4         # 6 submitted, at most 2 running
    assert ("flowcoro_executor_steals_total", ex) in v
    default = ("flowcoro_executor_workers", frozenset({("executor", "default")}))
    if isinstance(loop, flowcoro.Loop):         # its default executor is a WorkStealingExecutor
        assert v[default] >= 1
    else:                                       # asyncio's ThreadPoolExecutor: no stats
        assert default not in v
    assert after["queued"] == 0 and after["workers"] == 2
