"""HttpClient against a real third-party server: aiohttp's web server.

The common paths run on every loop kind (FlowCoro epoll, FlowCoro poll and
stdlib asyncio, the reference); the rest on FlowCoro's default loop.
"""
import asyncio
import json

import pytest
from aiohttp import web

import flowcoro
from flowcoro.errors import (
    HttpStatusError,
    InvalidRequestError,
    InvalidStateError,
    PoolTimeout,
    TooManyRedirects,
)
from flowcoro.http import HttpClient, Timeout

from http_client_helpers import aiohttp_server, run

pytestmark = pytest.mark.timeout(30)
SEEN = web.AppKey("seen", list)


def make_app():
    app = web.Application()
    seen = app[SEEN] = []

    async def hello(request):
        return web.Response(text="Hello, World!")

    async def echo(request):
        body = await request.read()
        seen.append(request)
        return web.json_response({
            "method": request.method,
            "path": request.path,
            "query": [[k, v] for k, v in request.query.items()],
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body.decode("latin-1"),
            "chunked": request.headers.get("Transfer-Encoding") == "chunked",
        })

    async def status(request):
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"status {code}")

    async def redirect(request):
        code = int(request.match_info["code"])
        to = request.query.get("to", "/echo")
        return web.Response(status=code, headers={"Location": to})

    async def loop_redirect(request):
        return web.Response(status=302, headers={"Location": "/loop"})

    async def big(request):
        n = int(request.match_info["n"])
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        block = b"x" * 65536
        sent = 0
        while sent < n:
            piece = block[:min(65536, n - sent)]
            await resp.write(piece)
            sent += len(piece)
        await resp.write_eof()
        return resp

    async def slow(request):
        await asyncio.sleep(float(request.query.get("s", "0.2")))
        return web.Response(text="late")

    async def cookie(request):
        resp = web.Response(text="c")
        resp.headers.add("Set-Cookie", "a=1")
        resp.headers.add("Set-Cookie", "b=2")
        return resp

    app.router.add_get("/", hello)
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_get("/status/{code}", status)
    app.router.add_route("*", "/redirect/{code}", redirect)
    app.router.add_get("/loop", loop_redirect)
    app.router.add_get("/big/{n}", big)
    app.router.add_get("/slow", slow)
    app.router.add_get("/cookie", cookie)
    return app


def test_get_text_json_and_keepalive(loop):
    async def main():
        async with aiohttp_server(make_app()) as base:
            async with HttpClient(base) as c:
                r = await c.get("/")
                assert (r.status, r.reason, r.http_version) == (200, "OK", "1.1")
                assert r.text() == "Hello, World!" and r.content == b"Hello, World!"
                assert r.headers["Content-Type"].startswith("text/plain")
                assert r.ok and r.raise_for_status() is r
                for _ in range(5):
                    r = await c.get("/")
                    assert r.status == 200
                # Every request reused the one connection.
                assert c.idle_connections() == 1
                r = await c.get("/echo/x", params={"a": "1", "b": ["2", "3"]})
                data = r.json()
                assert data["path"] == "/echo/x"
                assert data["query"] == [["a", "1"], ["b", "2"], ["b", "3"]]
                assert data["headers"]["user-agent"].startswith("flowcoro-http/")
                assert data["headers"]["host"] == base.split("//")[1]
                assert c.idle_connections() == 1
    run(loop, main())


def test_bodies(loop):
    async def main():
        async with aiohttp_server(make_app()) as base:
            async with HttpClient(base) as c:
                r = await c.post("/echo", json={"a": [1, "é"]})
                d = r.json()
                assert d["method"] == "POST"
                assert json.loads(d["body"].encode("latin-1")) == {"a": [1, "é"]}
                assert d["headers"]["content-type"] == "application/json"

                d = (await c.put("/echo", data=b"\x00\x01raw")).json()
                assert d["method"] == "PUT" and d["body"] == "\x00\x01raw"
                assert d["headers"]["content-length"] == "5"

                d = (await c.patch("/echo", data="texté")).json()
                assert d["body"].encode("latin-1").decode() == "texté"
                assert d["headers"]["content-type"] == "text/plain; charset=utf-8"

                d = (await c.post("/echo", data={"k": "v w", "l": ["1", "2"]})).json()
                assert d["body"] == "k=v+w&l=1&l=2"
                assert d["headers"]["content-type"] == "application/x-www-form-urlencoded"

                async def gen():
                    for i in range(5):
                        yield b"part%d," % i
                d = (await c.post("/echo", data=gen())).json()
                assert d["chunked"] and d["body"] == "part0,part1,part2,part3,part4,"

                # A stream with a known length goes without chunked framing.
                d = (await c.post("/echo", data=iter([b"ab", b"cd"]),
                                  headers={"Content-Length": "4"})).json()
                assert not d["chunked"] and d["body"] == "abcd"

                # POST without a body announces Content-Length: 0.
                d = (await c.post("/echo")).json()
                assert d["headers"]["content-length"] == "0"
                d = (await c.delete("/echo")).json()
                assert d["method"] == "DELETE" and "content-length" not in d["headers"]
                d = (await c.options("/echo")).json()
                assert d["method"] == "OPTIONS"
                r = await c.request("GET", "/echo", headers={"X-A": "1", "accept": "text/x"})
                assert r.json()["headers"]["x-a"] == "1"
                assert r.json()["headers"]["accept"] == "text/x"
                assert c.idle_connections() == 1
    run(loop, main())


def test_head_and_status_errors():
    async def main():
        async with aiohttp_server(make_app()) as base:
            async with HttpClient(base) as c:
                r = await c.head("/")
                assert r.status == 200 and r.content == b""
                assert r.headers["content-length"] == "13"
                r = await c.get("/")     # the HEAD response left the connection usable
                assert r.text() == "Hello, World!"
                assert c.idle_connections() == 1
                r = await c.get("/status/404")
                assert r.status == 404 and not r.ok and r.text() == "status 404"
                with pytest.raises(HttpStatusError) as ei:
                    r.raise_for_status()
                assert ei.value.status == 404 and ei.value.response is r
                assert "client error" in str(ei.value)
                r = await c.get("/status/503")
                with pytest.raises(HttpStatusError, match="server error"):
                    r.raise_for_status()
                r = await c.get("/cookie")
                assert r.headers.get_all("set-cookie") == ["a=1", "b=2"]
    flowcoro.run(main())


def test_redirects(loop):
    async def main():
        async with aiohttp_server(make_app()) as base:
            async with HttpClient(base) as c:
                # 303: any method becomes GET, the body is dropped.
                r = await c.post("/redirect/303", data=b"body")
                d = r.json()
                assert d["method"] == "GET" and d["body"] == ""
                assert "content-length" not in d["headers"]
                assert [h.status for h in r.history] == [303]
                assert r.url == base + "/echo"
                # 301/302: POST becomes GET; other methods are kept with their body.
                for code in (301, 302):
                    d = (await c.post(f"/redirect/{code}", data=b"x")).json()
                    assert d["method"] == "GET" and d["body"] == ""
                    d = (await c.put(f"/redirect/{code}", data=b"x")).json()
                    assert d["method"] == "PUT" and d["body"] == "x"
                # 307/308: method and body kept.
                for code in (307, 308):
                    d = (await c.post(f"/redirect/{code}", data=b"keep")).json()
                    assert d["method"] == "POST" and d["body"] == "keep"
                # HEAD stays HEAD through 303.
                r = await c.head("/redirect/303")
                assert r.status == 200 and r.method == "HEAD"
                # A one-shot stream cannot be resent: the 307 is returned.
                r = await c.post("/redirect/307", data=iter([b"once"]))
                assert r.status == 307 and r.is_redirect
                # Relative and query-carrying locations.
                d = (await c.get("/redirect/302", params={"to": "../echo/rel?q=1"})).json()
                assert d["path"] == "/echo/rel" and d["query"] == [["q", "1"]]
                # Not following.
                r = await c.get("/redirect/302", follow_redirects=False)
                assert r.status == 302 and r.history == []
                with pytest.raises(TooManyRedirects) as ei:
                    await c.get("/loop")
                assert ei.value.response.status == 302
                assert c.idle_connections() == 1
    run(loop, main())


def test_redirect_limit_and_cross_origin_credentials():
    async def main():
        other = make_app()
        async with aiohttp_server(make_app()) as base, aiohttp_server(other) as base2:
            async with HttpClient(base, max_redirects=1) as c:
                with pytest.raises(TooManyRedirects):
                    await c.get("/loop")
                # Same origin: Authorization kept.
                d = (await c.get("/redirect/302", params={"to": "/echo"},
                                 headers={"Authorization": "Bearer t", "Cookie": "s=1",
                                          "X-Keep": "k"})).json()
                assert d["headers"]["authorization"] == "Bearer t"
                # Another origin (another port): credentials dropped, the rest kept.
                d = (await c.get("/redirect/307", params={"to": base2 + "/echo"},
                                 headers={"Authorization": "Bearer t", "Cookie": "s=1",
                                          "X-Keep": "k"})).json()
                assert "authorization" not in d["headers"]
                assert "cookie" not in d["headers"]
                assert d["headers"]["x-keep"] == "k"
                assert d["headers"]["host"] == base2.split("//")[1]
            async with HttpClient(base, max_redirects=0) as c:
                with pytest.raises(TooManyRedirects):
                    await c.get("/redirect/302")
    flowcoro.run(main())


def test_stream_large_body_bounded_memory(loop):
    size = 8 * 1024 * 1024

    async def main():
        async with aiohttp_server(make_app()) as base:
            async with HttpClient(base) as c:
                async with c.stream("GET", f"/big/{size}") as r:
                    assert r.status == 200 and r.headers["transfer-encoding"] == "chunked"
                    conn = r._conn
                    total = 0
                    peak = 0
                    async for chunk in r.iter_bytes():
                        total += len(chunk)
                        peak = max(peak, conn._buffered + len(chunk))
                        await asyncio.sleep(0)
                    assert total == size
                    # Reading stopped while the consumer lagged: the queue stayed
                    # near the high-water mark (256 KiB) plus one socket read.
                    assert peak < 2 * 1024 * 1024
                    assert r.is_closed
                assert c.idle_connections() == 1
                async with c.stream("GET", "/big/100000") as r:
                    pieces = [p async for p in r.iter_bytes(chunk_size=30000)]
                    assert [len(p) for p in pieces] == [30000, 30000, 30000, 10000]
                    with pytest.raises(InvalidStateError):
                        await r.read()
                async with c.stream("GET", "/big/1000") as r:
                    assert len(await r.read()) == 1000
                    assert [p async for p in r.iter_bytes(chunk_size=600)] == [b"x" * 600,
                                                                               b"x" * 400]
    run(loop, main())


def test_stream_closed_early_drops_connection():
    async def main():
        async with aiohttp_server(make_app()) as base:
            async with HttpClient(base) as c:
                async with c.stream("GET", f"/big/{4 * 1024 * 1024}") as r:
                    async for _ in r.iter_bytes():
                        break
                assert r.is_closed
                assert c.idle_connections() == 0
                with pytest.raises(InvalidStateError):
                    await r.read()
                with pytest.raises(InvalidStateError):
                    r.content
                r = await c.get("/")           # a new connection
                assert r.status == 200 and c.idle_connections() == 1
    flowcoro.run(main())


def test_concurrency_cap_and_pool_timeout(loop):
    async def main():
        async with aiohttp_server(make_app()) as base:
            async with HttpClient(base, max_connections_per_host=3) as c:
                rs = await asyncio.gather(*[c.get("/slow?s=0.02") for _ in range(20)])
                assert all(r.text() == "late" for r in rs)
                assert c.idle_connections() == 3
            t = Timeout(pool=0.05)
            async with HttpClient(base, max_connections_per_host=1, timeout=t) as c:
                async with c.stream("GET", "/") as held:
                    with pytest.raises(PoolTimeout):
                        await c.get("/")
                    await held.read()
                # Freed: the waiting slot was not leaked.
                assert (await c.get("/")).status == 200
    run(loop, main())


def test_pool_waiter_gets_released_connection():
    async def main():
        async with aiohttp_server(make_app()) as base:
            async with HttpClient(base, max_connections_per_host=1) as c:
                async with c.stream("GET", "/") as held:
                    waiter = asyncio.ensure_future(c.get("/echo"))
                    await asyncio.sleep(0.05)
                    assert not waiter.done()
                    await held.read()
                r = await waiter
                assert r.status == 200 and c.idle_connections() == 1
                # A cancelled waiter does not take the slot with it.
                async with c.stream("GET", "/") as held:
                    w1 = asyncio.ensure_future(c.get("/"))
                    w2 = asyncio.ensure_future(c.get("/"))
                    await asyncio.sleep(0.02)
                    w1.cancel()
                    await held.read()
                assert (await w2).status == 200
                with pytest.raises(asyncio.CancelledError):
                    await w1
    flowcoro.run(main())


def test_keepalive_expiry_and_close():
    async def main():
        async with aiohttp_server(make_app()) as base:
            c = HttpClient(base, keepalive_expiry=0.05)
            await c.get("/")
            assert c.idle_connections() == 1
            await asyncio.sleep(0.2)
            assert c.idle_connections() == 0
            assert (await c.get("/")).status == 200
            await c.aclose()
            assert c.is_closed and c.idle_connections() == 0
            with pytest.raises(InvalidStateError):
                await c.get("/")
    flowcoro.run(main())


def test_request_validation_writes_nothing():
    async def main():
        app = make_app()
        async with aiohttp_server(app) as base:
            async with HttpClient(base) as c:
                bad = [
                    dict(headers={"X-A": "v\r\nX-Injected: 1"}),
                    dict(headers={"X-A": "v\nGET / HTTP/1.1"}),
                    dict(headers={"X-A": "v\x00"}),
                    dict(headers={"X-A\r\nB": "v"}),
                    dict(headers={"X A": "v"}),
                    dict(headers={"": "v"}),
                    dict(headers={"X-A": "☃"}),
                ]
                for kw in bad:
                    with pytest.raises(InvalidRequestError):
                        await c.get("/echo", **kw)
                for url in ("/echo\r\nX: 1", "/echo\n", "/ech\x00o", "ftp://h/x"):
                    with pytest.raises(InvalidRequestError):
                        await c.get(url)
                for method in ("GET /x HTTP/1.1\r\n", "GE T", "G\x00", ""):
                    with pytest.raises(InvalidRequestError):
                        await c.request(method, "/echo")
                with pytest.raises(InvalidRequestError):
                    await c.post("/echo", data=b"x", json=1)
                with pytest.raises(InvalidRequestError):
                    await c.post("/echo", data=12)
                assert app[SEEN] == []
                assert c.idle_connections() == 0
    flowcoro.run(main())
