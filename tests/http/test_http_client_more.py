"""HttpClient: uploads larger than the socket buffers, response object life
cycle, redirect corner cases, timeouts meeting the total deadline, and the
pool's expiry bookkeeping."""
import asyncio

import pytest
from aiohttp import web

import flowcoro
from flowcoro.errors import (
    HttpConnectionError,
    InvalidRequestError,
    InvalidStateError,
    TotalTimeout,
)
from flowcoro.http import HttpClient, Timeout

from http_client_helpers import RawServer, aiohttp_server, ok, run

pytestmark = pytest.mark.timeout(30)


def sink_app():
    app = web.Application(client_max_size=64 * 1024 * 1024)

    async def count(request):
        n = 0
        async for chunk in request.content.iter_any():
            n += len(chunk)
            await asyncio.sleep(0)
        return web.json_response({"n": n, "ct": request.headers.get("Content-Type")})

    app.router.add_post("/count", count)
    return app


def test_large_uploads(loop):
    async def main():
        async with aiohttp_server(sink_app()) as base, HttpClient(base) as c:
            big = b"u" * (8 * 1024 * 1024)
            assert (await c.post("/count", data=big)).json()["n"] == len(big)

            async def gen():
                for _ in range(64):
                    yield b"s" * 65536
                yield "tail-é"            # str pieces are sent as UTF-8
                yield b""                 # empty pieces are skipped (no early last-chunk)
            r = await c.post("/count", data=gen())
            assert r.json()["n"] == 64 * 65536 + len("tail-é".encode())
            # A binary file goes in 64 KiB pieces (chunked, or with its length).
            import io
            f = io.BytesIO(b"line\n" * 100000)
            assert (await c.post("/count", data=f)).json()["n"] == 500000
            f.seek(0)
            r = await c.post("/count", data=f, headers={"Content-Length": "500000"})
            assert r.json()["n"] == 500000
            assert c.idle_connections() == 1
    run(loop, main())


def test_response_lifecycle():
    async def handler(reader, writer, srv):
        while await srv.read_request(reader):
            writer.write(ok(b"body-bytes", "Content-Type: text/plain; charset=bogus-codec\r\n"))
            await writer.drain()

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url, timeout=None) as c:
            async with await c.get("/") as r:
                assert await r.read() is await r.read()
                assert r.text() == "body-bytes"       # unknown charset: UTF-8
            assert [p async for p in r.iter_bytes()] == [b"body-bytes"]
            async with c.stream("GET", "/") as r:
                pass
            assert r.is_closed
            with pytest.raises(InvalidStateError, match="closed"):
                await r.read()
            with pytest.raises(InvalidStateError, match="closed"):
                async for _ in r.iter_bytes():
                    pass
            async with c.stream("GET", "/") as r:
                assert [p async for p in r.iter_bytes()] == [b"body-bytes"]
                with pytest.raises(InvalidStateError):
                    async for _ in r.iter_bytes():
                        pass
    flowcoro.run(main())


def test_connection_reset_mid_body():
    async def handler(reader, writer, srv):
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nsome")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url) as c:
            with pytest.raises(HttpConnectionError):
                await c.get("/")
    flowcoro.run(main())


def test_redirect_corner_cases():
    async def handler(reader, writer, srv):
        while True:
            req = await srv.read_request(reader)
            if req is None:
                return
            line, headers, _ = req
            path = line.split()[1]
            if path == "/nolocation":
                writer.write(b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n")
            elif path == "/ftp":
                writer.write(b"HTTP/1.1 302 Found\r\nLocation: ftp://x/\r\n"
                             b"Content-Length: 0\r\n\r\n")
            elif path == "/creds":
                loc = srv.url.replace("http://", "http://u:p@") + "/who"
                writer.write(f"HTTP/1.1 307 T\r\nLocation: {loc}\r\n"
                             f"Content-Length: 0\r\n\r\n".encode())
            elif path == "/chunked-redirect":
                writer.write(b"HTTP/1.1 302 Found\r\nLocation: /who\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
            else:
                writer.write(ok(headers.get("authorization", "none").encode()))
            await writer.drain()

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url) as c:
            r = await c.get("/nolocation")
            assert r.status == 302 and r.history == []
            with pytest.raises(InvalidRequestError, match="redirect"):
                await c.get("/ftp")
            assert c._pool.open.get(c._target("/").key, 0) == c.idle_connections()
            r = await c.get("/creds")
            assert r.content == b"Basic dTpw" and "u:p" not in r.url
            # A chunked redirect body is not drained: its connection is closed.
            before = srv.connections
            r = await c.get("/chunked-redirect")
            assert r.content == b"none" and srv.connections == before + 1
    flowcoro.run(main())


def test_total_deadline_bounds_pool_and_continue_waits():
    async def handler(reader, writer, srv):
        got = await srv.read_head(reader)
        if got and "expect" in got[1]:
            await asyncio.sleep(5)            # never says 100 Continue
        writer.write(ok())
        await writer.drain()
        await asyncio.sleep(5)

    async def main():
        async with RawServer(handler) as srv:
            async with HttpClient(srv.url, max_connections_per_host=1,
                                  timeout=Timeout(pool=5, total=0.1)) as c:
                async with c.stream("GET", "/", timeout=None) as held:
                    with pytest.raises(TotalTimeout):
                        await c.get("/")
                    await held.read()
            async with HttpClient(srv.url) as c:
                with pytest.raises(TotalTimeout):
                    await c.put("/", data=b"x", headers={"Expect": "100-continue"},
                                timeout=0.1)
    flowcoro.run(main())


def test_pool_expiry_sweeps_by_age():
    async def handler(reader, writer, srv):
        while await srv.read_request(reader):
            await asyncio.sleep(0.01)
            writer.write(ok())
            await writer.drain()

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url, keepalive_expiry=0.6) as c:
            await asyncio.gather(c.get("/"), c.get("/"))        # two connections
            assert c.idle_connections() == 2
            await asyncio.sleep(0.3)
            await c.get("/")                                    # refreshes one of them
            await asyncio.sleep(0.4)
            # The first sweep closed the old one and kept the fresh one.
            assert c.idle_connections() == 1
            assert c.idle_connections(srv.url + "/x") == 1
            await asyncio.sleep(0.6)
            assert c.idle_connections() == 0
    flowcoro.run(main())


def test_url_cache_is_bounded():
    c = HttpClient("http://h")
    for i in range(300):
        c._target(f"/p{i}")
    assert len(c._url_cache) <= 256
    assert c._target("/p299").target == "/p299"


def test_closing_client_fails_pool_waiters():
    async def handler(reader, writer, srv):
        while await srv.read_request(reader):
            writer.write(ok())
            await writer.drain()

    async def main():
        async with RawServer(handler) as srv:
            c = HttpClient(srv.url, max_connections_per_host=1)
            async with c.stream("GET", "/") as held:
                waiter = asyncio.ensure_future(c.get("/"))
                await asyncio.sleep(0.02)
                await c.aclose()
                with pytest.raises(HttpConnectionError, match="closed"):
                    await waiter
                await held.read()             # a lent connection finishes its response
            assert c.idle_connections() == 0
    flowcoro.run(main())


def test_pool_bookkeeping_under_cancellation_and_abandonment(loop):
    # Many requests against a server that mixes keep-alive, Connection: close,
    # slow answers and dropped connections, with random cancellations and
    # streamed responses dropped unread: afterwards every slot is accounted
    # for (open == idle) and the client still works.
    import gc
    import random
    rnd = random.Random(4)

    async def handler(reader, writer, srv):
        while True:
            req = await srv.read_request(reader)
            if req is None:
                return
            mode = req[0].split()[1]
            if mode == "/drop":
                writer.transport.abort()
                return
            if mode == "/slow":
                await asyncio.sleep(0.01)
            extra = "Connection: close\r\n" if mode == "/close" else ""
            writer.write(ok(b"y" * 3000, extra))
            await writer.drain()
            if extra:
                return

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url, max_connections_per_host=4,
                                                         timeout=Timeout(pool=5)) as c:
            key = c._target("/").key

            async def one(i):
                path = rnd.choice(["/", "/", "/slow", "/close", "/drop"])
                try:
                    if i % 5 == 0:
                        r = await c.stream("GET", path).__aenter__()
                        del r                 # dropped unread
                    else:
                        await c.get(path)
                except HttpConnectionError:
                    pass

            tasks = [asyncio.ensure_future(one(i)) for i in range(120)]
            for _ in range(15):
                await asyncio.sleep(0.003)
                rnd.choice(tasks).cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            gc.collect()
            assert c._pool.open.get(key, 0) == c.idle_connections() <= 4
            assert not c._pool.waiters.get(key)
            assert (await c.get("/")).content == b"y" * 3000
    run(loop, main())


def test_dropped_client_closes_idle_connections():
    import gc
    closed = []

    async def handler(reader, writer, srv):
        await srv.read_request(reader)
        writer.write(ok())
        await writer.drain()
        closed.append(await reader.read())      # b"" once the client closes

    async def main():
        async with RawServer(handler) as srv:
            c = HttpClient(srv.url)
            assert (await c.get("/")).content == b"ok"
            assert c.idle_connections() == 1
            del c
            gc.collect()
            for _ in range(100):
                if closed:
                    break
                await asyncio.sleep(0.01)
            assert closed == [b""]
    flowcoro.run(main())
