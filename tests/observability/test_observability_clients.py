"""CLIENT spans made by instrument_redis() and instrument_db(), against a
real Redis, PostgreSQL and SQLite, collected by the SDK's in-memory exporter."""
import asyncio
import uuid

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import flowcoro.db as db
from flowcoro.errors import InvalidArgumentError, RedisResponseError
from flowcoro.observability import Tracer, instrument_db, instrument_redis, traced
from flowcoro.observability.tracing import _unsampled
from flowcoro.redis import Redis

from obs_helpers import run


def memory_provider():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_redis_commands_pipelines_and_errors_make_client_spans(loop, redis_url):
    provider, exporter = memory_provider()
    tracer = Tracer("test", tracer_provider=provider)
    key = f"fctest:obs:{uuid.uuid4().hex[:10]}"
    plain = Redis.from_url(redis_url)

    async def main():
        r = instrument_redis(Redis.from_url(redis_url), tracer=tracer)
        assert instrument_redis(r, tracer=tracer) is r            # twice: no second span
        try:
            with traced("request", tracer=tracer):
                await r.set(key, "v", ex=30)
                assert await r.get(key) == b"v"
                await r.execute_command("OBJECT", "ENCODING", key)
                assert await r.blpop([key + ":list"], timeout=0.05) is None
                async with r.pipeline(transaction=False) as p:
                    p.incr(key + ":n")
                    p.incr(key + ":n")
                    assert await p.execute() == [1, 2]
                async with r.pipeline() as p:
                    p.get(key)
                    await p.execute()
                with pytest.raises(RedisResponseError):
                    await r.incr(key)                            # not an integer
            await plain.get(key)                                 # not instrumented
            token = _unsampled.set(True)                         # a request not traced
            try:
                await r.get(key)
            finally:
                _unsampled.reset(token)
        finally:
            await r.delete(key, key + ":n")
            await r.aclose()
            await plain.aclose()

    run(loop, main())
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    assert names == ["SET", "GET", "OBJECT", "BLPOP", "PIPELINE", "MULTI", "INCRBY", "request",
                     "DEL"]
    parent = spans[names.index("request")]
    for s in spans[:7]:
        assert s.kind == SpanKind.CLIENT
        assert s.parent.span_id == parent.context.span_id
        assert s.attributes["db.system"] == "redis"
        assert s.attributes["db.operation.name"] == s.name
        assert s.attributes["db.namespace"] == "0"
        assert s.attributes["server.address"]
    assert spans[names.index("PIPELINE")].attributes["db.operation.batch.size"] == 2
    assert spans[names.index("MULTI")].attributes["db.operation.batch.size"] == 1
    failed = spans[names.index("INCRBY")]
    assert failed.status.status_code == StatusCode.ERROR
    assert spans[names.index("GET")].status.status_code != StatusCode.ERROR


def test_sqlite_pool_statements_and_transactions(loop, tmp_path):
    provider, exporter = memory_provider()

    async def main():
        pool = await db.create_pool(f"sqlite:///{tmp_path / 'obs.db'}", min_size=1, max_size=2)
        try:
            await pool.execute("CREATE TABLE t (x INTEGER)")     # before: not traced
            instrument_db(pool, tracer_provider=provider)        # wraps the open connection
            async with pool.acquire() as conn:
                async with conn.transaction():
                    await conn.execute("INSERT INTO t VALUES ($1)", [1])
                    await conn.executemany("INSERT INTO t VALUES ($1)", [[2], [3]])
                async with pool.acquire() as other:                # a new connection
                    assert await other.fetchval("  select count(*) from t") == 3
        finally:
            await pool.close()

    run(loop, main())
    spans = exporter.get_finished_spans()
    # (SQLite's BEGIN/COMMIT go to the driver's own calls, not statements)
    assert [s.name for s in spans] == ["INSERT", "INSERT", "SELECT"]
    for s in spans:
        assert s.kind == SpanKind.CLIENT and s.attributes["db.system"] == "sqlite"
        assert s.attributes["db.operation.name"] == s.name
    assert spans[0].attributes["db.query.text"] == "INSERT INTO t VALUES ($1)"
    assert spans[2].attributes["db.query.text"] == "  select count(*) from t"


def test_postgres_connection_errors_are_recorded(loop, postgres_url):
    provider, exporter = memory_provider()

    async def main():
        conn = instrument_db(await db.connect(postgres_url), tracer_provider=provider)
        instrument_db(conn, tracer_provider=provider)            # twice: one span each
        try:
            assert await conn.fetchval("SELECT $1::int + 1", [41]) == 42
            with pytest.raises(db.DatabaseError):
                await conn.execute("SELEC 1")
        finally:
            await conn.close()

    run(loop, main())
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["SELECT", "SELEC"]
    assert spans[0].attributes["db.system"] == "postgresql"
    assert spans[1].status.status_code == StatusCode.ERROR


def test_instrument_refuses_other_objects():
    with pytest.raises(InvalidArgumentError):
        instrument_redis(object())
    with pytest.raises(InvalidArgumentError):
        instrument_db("sqlite://:memory:")


def test_mysql_statements_show_their_placeholder_text(loop, mysql_url):
    """MySQL renders parameters into the SQL it sends; the span keeps the
    ``$n`` text (values are never recorded)."""
    provider, exporter = memory_provider()

    async def main():
        conn = instrument_db(await db.connect(mysql_url), tracer_provider=provider)
        try:
            async with conn.transaction():
                assert await conn.fetchval("SELECT $1 + 1", [41]) == 42
            assert await conn.fetchrow("SELECT $1", ["secret"]) == ("secret",)
        finally:
            await conn.close()

    run(loop, main())
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    assert "SELECT" in names and names.count("SELECT") == 2
    for s in spans:
        assert s.attributes["db.system"] == "mysql"
        assert "secret" not in s.attributes["db.query.text"]
    assert [s.attributes["db.query.text"] for s in spans if s.name == "SELECT"] == \
        ["SELECT $1 + 1", "SELECT $1"]


def test_websocket_session_is_the_upgrade_requests_span(loop, redis_url):
    """instrument(app, tracing=True): the SERVER span of the request that
    upgraded lasts for the whole session (status 101); the session's Redis
    commands are its children."""
    from flowcoro.http import HttpServer
    from flowcoro.observability import Metrics, instrument
    from flowcoro.websocket import connect
    provider, exporter = memory_provider()
    app = HttpServer()
    key = f"fctest:obs:{uuid.uuid4().hex[:10]}"

    async def main():
        r = instrument_redis(Redis.from_url(redis_url), tracer_provider=provider)

        @app.websocket("/ws/{room}")
        async def chat(ws):
            async for m in ws:
                await r.set(key, m, ex=30)
                await ws.send("ok")

        instrument(app, Metrics(False), tracer_provider=provider)
        await app.listen("127.0.0.1", 0)
        try:
            async with connect(f"ws://127.0.0.1:{app.port}/ws/lobby") as ws:
                for m in ("a", "b"):
                    await ws.send(m)
                    assert await ws.receive() == "ok"
            for _ in range(100):
                if any(s.name.startswith("GET /ws") for s in exporter.get_finished_spans()):
                    break
                await asyncio.sleep(0.01)
        finally:
            await app.stop(grace=1)
            await r.delete(key)
            await r.aclose()

    run(loop, main())
    spans = exporter.get_finished_spans()
    server = [s for s in spans if s.name == "GET /ws/{room}"]
    assert len(server) == 1
    server = server[0]
    assert server.kind == SpanKind.SERVER
    assert server.attributes["http.response.status_code"] == 101
    sets = [s for s in spans if s.name == "SET"]
    assert len(sets) == 2
    for s in sets:
        assert s.parent.span_id == server.context.span_id
        assert server.start_time <= s.start_time and s.end_time <= server.end_time
