"""HttpClient against FlowCoro's own HttpServer: both ends of flowcoro.http."""
import asyncio

import pytest

from flowcoro.http import HttpClient, HttpServer, Response, StreamingResponse

from http_client_helpers import run

pytestmark = pytest.mark.timeout(30)


def make_app():
    app = HttpServer()

    @app.route("/")
    async def root(req):
        return "Hello, World!"

    @app.route("/json", methods=["GET", "POST"])
    async def js(req):
        if req.method == "POST":
            return {"got": await req.json()}
        return {"a": [1, 2], "s": "é"}

    @app.route("/upload", methods=["PUT"])
    async def upload(req):
        n = 0
        async for piece in req.stream():
            n += len(piece)
        return {"n": n}

    @app.route("/stream")
    async def stream(req):
        async def gen():
            for i in range(100):
                yield b"%04d" % i
        return StreamingResponse(gen())

    @app.route("/users/{id:int}", methods=["GET", "DELETE"])
    async def user(req):
        return {"id": req.path_params["id"], "method": req.method}

    @app.route("/go")
    async def go(req):
        return Response(b"", status=302, headers={"location": "/users/7"})

    return app


def test_client_and_server(loop):
    async def main():
        app = make_app()
        await app.listen("127.0.0.1", 0)
        try:
            async with HttpClient(f"http://127.0.0.1:{app.port}") as c:
                r = await c.get("/")
                assert r.status == 200 and r.text() == "Hello, World!"
                assert (await c.get("/json")).json() == {"a": [1, 2], "s": "é"}
                assert (await c.post("/json", json={"x": 1})).json() == {"got": {"x": 1}}

                async def body():
                    for _ in range(32):
                        yield b"b" * 10000
                assert (await c.put("/upload", data=body())).json() == {"n": 320000}
                async with c.stream("GET", "/stream") as r:
                    got = b"".join([p async for p in r.iter_bytes()])
                assert got == b"".join(b"%04d" % i for i in range(100))
                r = await c.delete("/users/12")
                assert r.json() == {"id": 12, "method": "DELETE"}
                r = await c.get("/go")
                assert r.json() == {"id": 7, "method": "GET"} and r.history[0].status == 302
                r = await c.get("/nope")
                assert r.status == 404
                r = await c.head("/")
                assert r.status == 200 and r.content == b""
                rs = await asyncio.gather(*[c.get("/") for _ in range(20)])
                assert {r.text() for r in rs} == {"Hello, World!"}
                assert c.idle_connections() >= 1
        finally:
            await app.stop(grace=1.0)
    run(loop, main())
