"""Popular asyncio libraries, unchanged, on FlowCoro (and on asyncio as the
reference): aiohttp (server and client), httpx, websockets, redis-py and
psycopg against real services.

Every test does real round trips and checks the values that come back.
Services come from FLOWCORO_TEST_*_URL (see tests/helpers.py); a test whose
service is down is skipped, or failed under FLOWCORO_REQUIRE_SERVICES=1.
"""
import asyncio
import hashlib
import os
import uuid

import pytest

import flowcoro
from flowcoro._core.loop import SocketTransport
from helpers import LOOP_KINDS, require_service, run_with


@pytest.fixture(params=LOOP_KINDS)
def kind(request):
    return request.param


def _check_loop(kind):
    loop = asyncio.get_running_loop()
    assert isinstance(loop, flowcoro.Loop) == (kind != "asyncio")
    if kind != "asyncio":
        assert loop.backend == kind


# -- aiohttp ------------------------------------------------------------------

def _aiohttp_app():
    web = pytest.importorskip("aiohttp.web")
    big = os.urandom(2_000_000)
    transports = []

    async def hello(request):
        transports.append(request.transport)
        return web.Response(text=f"hello {request.match_info['name']}")

    async def echo(request):
        body = await request.json()
        return web.json_response({"got": body, "method": request.method,
                                  "ua": request.headers.get("User-Agent", "")})

    async def upload(request):
        data = await request.read()
        return web.json_response({"len": len(data), "sha256": hashlib.sha256(data).hexdigest()})

    async def download(request):
        resp = web.StreamResponse()
        resp.content_length = len(big)
        await resp.prepare(request)
        for i in range(0, len(big), 65536):
            await resp.write(big[i:i + 65536])
        await resp.write_eof()
        return resp

    async def ws(request):
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == web.WSMsgType.TEXT:
                await sock.send_str(msg.data.upper())
            elif msg.type == web.WSMsgType.BINARY:
                await sock.send_bytes(msg.data[::-1])
        return sock

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_get("/hello/{name}", hello)
    app.router.add_post("/echo", echo)
    app.router.add_post("/upload", upload)
    app.router.add_get("/big", download)
    app.router.add_get("/ws", ws)
    return app, big, transports


async def _serve(app):
    from aiohttp import web
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


def test_aiohttp_server_and_client(kind):
    aiohttp = pytest.importorskip("aiohttp")

    async def main():
        _check_loop(kind)
        app, big, transports = _aiohttp_app()
        runner, base = await _serve(app)
        try:
            async with aiohttp.ClientSession() as s:
                async with s.get(f"{base}/hello/flowcoro") as r:
                    assert r.status == 200
                    assert await r.text() == "hello flowcoro"
                # keep-alive: many requests on the pooled connection
                async def get_text(i):
                    async with s.get(f"{base}/hello/{i}") as r:
                        return await r.text()

                texts = await asyncio.gather(*(get_text(i) for i in range(50)))
                assert texts == [f"hello {i}" for i in range(50)]
                async with s.post(f"{base}/echo", json={"a": [1, 2, 3], "b": "ü"}) as r:
                    body = await r.json()
                    assert body["got"] == {"a": [1, 2, 3], "b": "ü"}
                    assert body["method"] == "POST" and "aiohttp" in body["ua"]
                payload = os.urandom(3_000_000)
                async with s.post(f"{base}/upload", data=payload) as r:
                    assert await r.json() == {"len": len(payload),
                                              "sha256": hashlib.sha256(payload).hexdigest()}
                async with s.get(f"{base}/big") as r:
                    assert await r.read() == big
                async with s.ws_connect(f"{base}/ws") as ws:
                    await ws.send_str("shout")
                    assert await ws.receive_str() == "SHOUT"
                    blob = os.urandom(500_000)
                    await ws.send_bytes(blob)
                    assert await ws.receive_bytes() == blob[::-1]
                    await ws.close()
            if kind != "asyncio":
                assert transports and all(type(t) is SocketTransport for t in transports)
        finally:
            await runner.cleanup()

    run_with(kind, main())


def test_httpx_against_aiohttp_server(kind):
    httpx = pytest.importorskip("httpx")

    async def main():
        _check_loop(kind)
        app, big, _ = _aiohttp_app()
        runner, base = await _serve(app)
        try:
            async with httpx.AsyncClient(base_url=base) as client:
                r = await client.get("/hello/httpx")
                assert r.status_code == 200 and r.text == "hello httpx"
                r = await client.post("/echo", json={"n": 42})
                assert r.json()["got"] == {"n": 42}
                assert "httpx" in r.json()["ua"]
                rs = await asyncio.gather(*(client.get(f"/hello/{i}") for i in range(20)))
                assert [x.text for x in rs] == [f"hello {i}" for i in range(20)]
                async with client.stream("GET", "/big") as r:
                    chunks = [c async for c in r.aiter_bytes()]
                assert b"".join(chunks) == big
                r = await client.get("/missing")
                assert r.status_code == 404
        finally:
            await runner.cleanup()

    run_with(kind, main())


# -- websockets ---------------------------------------------------------------

def test_websockets_server_and_client(kind):
    pytest.importorskip("websockets")
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    async def handler(ws):
        async for msg in ws:
            if isinstance(msg, str):
                await ws.send(f"echo:{msg}")
            else:
                await ws.send(hashlib.sha256(msg).digest())

    async def main():
        _check_loop(kind)
        async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
            port = server.sockets[0].getsockname()[1] if hasattr(server, "sockets") else \
                list(server.sockets)[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}", max_size=None) as ws:
                for i in range(20):
                    await ws.send(f"m{i}")
                    assert await ws.recv() == f"echo:m{i}"
                blob = os.urandom(2_000_000)
                await ws.send(blob)
                assert await ws.recv() == hashlib.sha256(blob).digest()
                latency = await (await ws.ping())
                assert latency >= 0
            clients = await asyncio.gather(*(_ws_once(connect, port, i) for i in range(20)))
            assert clients == [f"echo:c{i}" for i in range(20)]

    run_with(kind, main())


async def _ws_once(connect, port, i):
    async with connect(f"ws://127.0.0.1:{port}") as ws:
        await ws.send(f"c{i}")
        return await ws.recv()


# -- redis-py -----------------------------------------------------------------

def test_redis_asyncio(kind):
    url = require_service("redis")
    redis = pytest.importorskip("redis.asyncio")

    async def main():
        _check_loop(kind)
        prefix = f"flowcoro-test:{uuid.uuid4().hex}:"
        r = redis.from_url(url)
        try:
            assert await r.ping() is True
            await r.set(prefix + "k", "v1")
            assert await r.get(prefix + "k") == b"v1"
            assert await r.incrby(prefix + "n", 41) == 41
            assert await r.incr(prefix + "n") == 42
            big = os.urandom(1_000_000)
            await r.set(prefix + "big", big)
            assert await r.get(prefix + "big") == big
            async with r.pipeline(transaction=True) as pipe:
                pipe.rpush(prefix + "l", *range(100)).lrange(prefix + "l", 0, -1)
                pushed, items = await pipe.execute()
            assert pushed == 100 and [int(x) for x in items] == list(range(100))
            # concurrent commands on the pool
            vals = await asyncio.gather(*(r.incr(prefix + "c") for _ in range(100)))
            assert sorted(vals) == list(range(1, 101))
            # pub/sub round trip
            pubsub = r.pubsub()
            await pubsub.subscribe(prefix + "chan")
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            assert msg is None
            assert await r.publish(prefix + "chan", "hello") == 1
            for _ in range(50):
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if msg:
                    break
            assert msg["data"] == b"hello"
            await pubsub.unsubscribe()
            await pubsub.aclose()
        finally:
            keys = [k async for k in r.scan_iter(prefix + "*")]
            if keys:
                await r.delete(*keys)
            await r.aclose()

    run_with(kind, main())


# -- psycopg ------------------------------------------------------------------

def test_psycopg_async(kind):
    url = require_service("postgres")
    psycopg = pytest.importorskip("psycopg")

    async def main():
        _check_loop(kind)
        async with await psycopg.AsyncConnection.connect(url) as conn:
            async with conn.cursor() as cur:
                await cur.execute("select %s::int + 1, %s::text", (41, "flowcoro"))
                assert await cur.fetchone() == (42, "flowcoro")
                await cur.execute("create temp table fc_t (id int primary key, v text)")
                await cur.executemany("insert into fc_t values (%s, %s)",
                                      [(i, f"v{i}") for i in range(200)])
                await cur.execute("select count(*), sum(id) from fc_t")
                assert await cur.fetchone() == (200, sum(range(200)))
                await cur.execute("select v from fc_t where id = any(%s) order by id",
                                  ([3, 150],))
                assert await cur.fetchall() == [("v3",), ("v150",)]
                await cur.execute("select repeat('x', 1000000)")
                assert len((await cur.fetchone())[0]) == 1_000_000
            with pytest.raises(psycopg.errors.UndefinedTable):
                await conn.execute("select * from no_such_table_fc")
            await conn.rollback()
        # LISTEN/NOTIFY across two connections
        channel = f"fc_{uuid.uuid4().hex[:12]}"
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as listener:
            await listener.execute(f"listen {channel}")
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as sender:
                await sender.execute("select pg_notify(%s, %s)", (channel, "payload-1"))
            gen = listener.notifies(timeout=5)
            try:
                note = await gen.__anext__()
            finally:
                await gen.aclose()      # releases the connection's lock
            assert note.channel == channel and note.payload == "payload-1"
        # concurrent connections
        async def one(i):
            async with await psycopg.AsyncConnection.connect(url) as c:
                cur = await c.execute("select pg_sleep(0.05), %s::int * 2", (i,))
                return (await cur.fetchone())[1]

        assert await asyncio.gather(*(one(i) for i in range(10))) == [i * 2 for i in range(10)]

    run_with(kind, main())


# -- the service helpers themselves --------------------------------------------

def test_unreachable_service_skips_or_fails(monkeypatch):
    monkeypatch.setenv("FLOWCORO_TEST_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.delenv("FLOWCORO_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="FLOWCORO_TEST_REDIS_URL"):
        require_service("redis")
    monkeypatch.setenv("FLOWCORO_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="redis not reachable"):
        require_service("redis")


def test_service_url_defaults(monkeypatch):
    from helpers import service_url
    for var in ("FLOWCORO_TEST_POSTGRES_URL", "FLOWCORO_TEST_REDIS_URL",
                "FLOWCORO_TEST_MYSQL_URL"):
        monkeypatch.delenv(var, raising=False)
    assert service_url("postgres") == "postgresql://postgres@127.0.0.1:5432/test"
    assert service_url("redis") == "redis://127.0.0.1:6379/0"
    assert service_url("mysql") == "mysql://root@127.0.0.1:3306/test"
    monkeypatch.setenv("FLOWCORO_TEST_REDIS_URL", "redis://example:1/2")
    assert service_url("redis") == "redis://example:1/2"
