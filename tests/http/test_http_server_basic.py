"""HttpServer: routing, return types, middleware, bodies, pipelining, keep-alive."""
import asyncio
import contextvars
import json

import pytest

from flowcoro.errors import HttpException, InvalidArgumentError, InvalidStateError
from flowcoro.http import HttpServer, Response, Router

from server_helpers import KINDS, exchange, get, header, responses, serve

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


def make_app(**settings):
    app = HttpServer(**settings)

    @app.route("/")
    async def root(req):
        return "Hello, World!"

    @app.route("/bytes")
    async def raw(req):
        return b"\x00\x01"

    @app.route("/json")
    async def js(req):
        return {"a": [1, 2], "s": "é"}

    @app.route("/list")
    async def lst(req):
        return [1, "x"]

    @app.route("/none", methods=["POST"])
    async def none(req):
        return None

    @app.route("/resp")
    async def resp(req):
        return Response("made", status=201, headers={"x-custom": "1"})

    @app.route("/users/{id:int}", methods=["GET", "DELETE"])
    async def user(req):
        return {"id": req.path_params["id"], "method": req.method}

    @app.route("/price/{p:float}")
    async def price(req):
        return {"p": req.path_params["p"]}

    @app.route("/files/{rest:path}")
    async def files(req):
        return req.path_params["rest"]

    @app.route("/users/me")
    async def me(req):
        return "me"

    @app.route("/echo", methods=["POST", "PUT"])
    async def echo(req):
        body = await req.body()
        return Response(body, content_type="application/octet-stream")

    @app.route("/q")
    async def q(req):
        return {"query": req.query, "qs": req.query_string.decode(), "path": req.path,
                "raw": req.raw_path.decode(), "ua": req.headers.get("User-Agent"),
                "version": req.http_version}

    @app.route("/sleep")
    async def sleep(req):
        await asyncio.sleep(0.01)
        return "slept"

    @app.route("/fail")
    async def fail(req):
        raise RuntimeError("boom")

    @app.route("/teapot")
    async def teapot(req):
        raise HttpException(418, "short and stout", headers={"x-tea": "earl grey"})

    @app.route("/badtype")
    async def badtype(req):
        return 3.5

    return app


def test_return_types_and_automatic_headers(kind):
    app = make_app()

    async def client(port):
        data = b"".join(get(p) for p in (b"/", b"/bytes", b"/json", b"/list", b"/resp"))
        data += b"POST /none HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
        data += get(b"/", b"Connection: close\r\n")
        return await exchange(port, data)

    out = responses(serve(kind, app, client), methods=["GET"] * 5 + ["POST", "GET"])
    assert [h.status_code for h, _ in out] == [200, 200, 200, 200, 201, 204, 200]
    (h0, b0), (h1, b1), (h2, b2), (h3, b3), (h4, b4), (h5, b5), (h6, b6) = out
    assert b0 == b"Hello, World!" and header(h0, "content-type") == "text/plain; charset=utf-8"
    assert header(h0, "content-length") == "13" and header(h0, "date").endswith(" GMT")
    assert b1 == b"\x00\x01" and header(h1, "content-type") == "application/octet-stream"
    assert json.loads(b2) == {"a": [1, 2], "s": "é"} and header(h2, "content-type") == "application/json"
    assert json.loads(b3) == [1, "x"]
    assert b4 == b"made" and header(h4, "x-custom") == "1"
    assert b5 == b"" and header(h5, "content-length") is None
    assert header(h6, "connection") == "close"
    assert all(h.keep_alive for h, _ in out[:-1])


def test_path_parameters_404_405_and_head(kind):
    app = make_app()

    async def client(port):
        data = b"".join(get(p) for p in (
            b"/users/42", b"/users/me", b"/users/x", b"/price/2.5", b"/files/a/b/c.txt",
            b"/nope", b"/users/", b"/users/7/extra"))
        data += b"DELETE /users/9 HTTP/1.1\r\nHost: t\r\n\r\n"
        data += b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
        data += b"HEAD /json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        return await exchange(port, data)

    methods = ["GET"] * 8 + ["DELETE", "POST", "HEAD"]
    out = responses(serve(kind, app, client), methods=methods)
    codes = [h.status_code for h, _ in out]
    assert codes == [200, 200, 404, 200, 200, 404, 404, 404, 200, 405, 200]
    assert json.loads(out[0][1]) == {"id": 42, "method": "GET"}
    assert out[1][1] == b"me"                       # literal wins over {id:int}
    assert json.loads(out[3][1]) == {"p": 2.5}
    assert out[4][1] == b"a/b/c.txt"
    assert json.loads(out[8][1]) == {"id": 9, "method": "DELETE"}
    assert header(out[9][0], "allow") == "GET, HEAD"
    head, body = out[10]
    assert body == b"" and int(header(head, "content-length")) > 0


def test_query_headers_and_percent_decoding(kind):
    app = make_app()

    async def client(port):
        return await exchange(port, get(b"/q?a=1&b=x%20y&a=2&empty=",
                                        b"User-Agent: probe/1\r\nConnection: close\r\n"))

    (head, body), = responses(serve(kind, app, client))
    got = json.loads(body)
    assert got["query"] == {"a": "2", "b": "x y", "empty": ""}
    assert got["qs"] == "a=1&b=x%20y&a=2&empty=" and got["ua"] == "probe/1"
    assert got["version"] == "1.1"

    async def client2(port):
        return await exchange(port, get(b"/files/a%20b/%C3%A9", b"Connection: close\r\n"))
    (head, body), = responses(serve(kind, make_app(), client2))
    assert body.decode() == "a b/é"


def test_absolute_form_target_routes_by_its_path(kind):
    async def client(port):
        return await exchange(port, b"GET http://t/users/5?x=1 HTTP/1.1\r\nHost: t\r\n"
                                    b"Connection: close\r\n\r\n")
    (head, body), = responses(serve(kind, make_app(), client))
    assert json.loads(body) == {"id": 5, "method": "GET"}


def test_handler_errors(kind, caplog):
    app = make_app()

    async def client(port):
        return await exchange(port, get(b"/fail") + get(b"/teapot") + get(b"/badtype")
                              + get(b"/", b"Connection: close\r\n"))

    out = responses(serve(kind, app, client))
    assert [h.status_code for h, _ in out] == [500, 418, 500, 200]
    assert out[0][1] == b"Internal Server Error"
    assert out[1][1] == b"short and stout" and header(out[1][0], "x-tea") == "earl grey"
    assert "boom" in caplog.text


def test_bodies_content_length_and_chunked(kind):
    app = make_app()
    big = bytes(range(256)) * 2000           # 512000 bytes

    async def client(port):
        data = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
        data += (b"PUT /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nx-trailer: 1\r\n\r\n")
        data += b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(big) + big
        data += get(b"/", b"Connection: close\r\n")
        return await exchange(port, data)

    out = responses(serve(kind, app, client), methods=["POST", "PUT", "POST", "GET"])
    assert [b for _, b in out] == [b"hello", b"abcdefg", big, b"Hello, World!"]


def test_body_trickled_byte_by_byte(kind):
    app = make_app()
    raw = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nConnection: close\r\n\r\nabcdef"

    async def client(port):
        return await exchange(port, None, pieces=[raw[i:i + 1] for i in range(len(raw))],
                              delay=0.001)

    (head, body), = responses(serve(kind, app, client), methods=["POST"])
    assert body == b"abcdef"


def test_streamed_request_body_and_json_errors(kind):
    app = HttpServer(max_body=None, body_buffer=64 * 1024)
    seen = {}

    @app.route("/upload", methods=["POST"])
    async def upload(req):
        n = pieces = 0
        async for chunk in req.stream():
            n += len(chunk)
            pieces += 1
            await asyncio.sleep(0)
        seen["pieces"] = pieces
        return {"n": n}

    @app.route("/json", methods=["POST"])
    async def js(req):
        return {"got": await req.json()}

    @app.route("/text", methods=["POST"])
    async def text(req):
        return (await req.text()).upper()

    total = 8 * 1024 * 1024

    async def client(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % total)
        chunk = b"x" * 65536
        for _ in range(total // len(chunk)):
            writer.write(chunk)
            await writer.drain()
        writer.write(b'POST /json HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\n{"a":1}')
        writer.write(b"POST /json HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\n{x}")
        writer.write(b"POST /text HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain; charset=latin-1"
                     b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n\xe9a")
        out = await asyncio.wait_for(reader.read(), 20)
        writer.close()
        return out

    out = responses(serve(kind, app, client), methods=["POST"] * 4)
    assert json.loads(out[0][1]) == {"n": total}
    assert seen["pieces"] > 1
    assert json.loads(out[1][1]) == {"got": {"a": 1}}
    assert out[2][0].status_code == 400
    assert out[3][1] == "ÉA".encode()


def test_expect_100_continue(kind):
    app = make_app()

    async def client(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                     b"Content-Length: 4\r\nConnection: close\r\n\r\n")
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.write(b"data")
        rest = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return interim, rest

    interim, rest = serve(kind, app, client)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert rest.endswith(b"\r\n\r\ndata") and rest.startswith(b"HTTP/1.1 200 OK")


def test_413_comes_before_any_100_continue(kind):
    app = make_app(max_body=10)

    async def client(port):
        return await exchange(port, b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                                    b"Content-Length: 11\r\n\r\n")

    out = serve(kind, app, client)
    assert out.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in out
    assert b"connection: close" in out


def test_unread_body_is_skipped_and_connection_reused(kind):
    app = make_app()

    async def client(port):
        data = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"   # 405
        data += b"POST /none HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
        data += get(b"/", b"Connection: close\r\n")
        return await exchange(port, data)

    out = responses(serve(kind, app, client), methods=["POST", "POST", "GET"])
    assert [h.status_code for h, _ in out] == [405, 204, 200]


def test_pipelining_keeps_order_across_sync_and_async_handlers(kind):
    app = make_app()
    paths = [b"/sleep" if i % 3 == 0 else b"/users/%d" % i for i in range(40)]

    async def client(port):
        data = b"".join(get(p) for p in paths) + get(b"/", b"Connection: close\r\n")
        return await exchange(port, data)

    out = responses(serve(kind, app, client))
    assert len(out) == 41
    for i, (head, body) in enumerate(out[:-1]):
        assert body == (b"slept" if i % 3 == 0 else json.dumps(
            {"id": i, "method": "GET"}, separators=(",", ":")).encode())


def test_deep_pipeline_pauses_reading_and_completes(kind):
    app = make_app(max_pipeline=4)
    n = 500

    async def client(port):
        return await exchange(port, get(b"/sleep") * 3 + get(b"/") * n
                              + get(b"/", b"Connection: close\r\n"))

    out = responses(serve(kind, app, client))
    assert len(out) == n + 4 and all(h.status_code == 200 for h, _ in out)


def test_http10_and_keep_alive_rules(kind):
    app = make_app()

    async def client(port):
        a = await exchange(port, get(b"/", version=b"HTTP/1.0"))
        b = await exchange(port, get(b"/", b"Connection: keep-alive\r\n", version=b"HTTP/1.0")
                           + get(b"/json", version=b"HTTP/1.0"))
        return a, b

    a, b = serve(kind, app, client)
    (h, body), = responses(a)
    assert body == b"Hello, World!" and header(h, "connection") == "close"
    out = responses(b)
    assert len(out) == 2 and header(out[0][0], "connection") == "keep-alive"


def test_contextvars_are_isolated_per_request_and_current_task_works(kind):
    app = HttpServer()
    var = contextvars.ContextVar("var", default="unset")

    @app.route("/set/{v}")
    async def setv(req):
        before = var.get()
        var.set(req.path_params["v"])
        task = asyncio.current_task()
        async with asyncio.timeout(5):
            await asyncio.sleep(0)
        assert asyncio.current_task() is task
        return {"before": before, "after": var.get(), "task": task is not None}

    @app.route("/timeout")
    async def to(req):
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(1)
        except TimeoutError:
            return "timed out"
        return "no"

    async def client(port):
        return await exchange(port, get(b"/set/a") + get(b"/set/b") + get(b"/timeout")
                              + get(b"/set/c", b"Connection: close\r\n"))

    out = responses(serve(kind, app, client))
    assert [json.loads(b) for _, b in out[:2]] == [
        {"before": "unset", "after": "a", "task": True},
        {"before": "unset", "after": "b", "task": True}]
    assert out[2][1] == b"timed out"


def test_client_disconnect_cancels_the_handler(kind):
    app = HttpServer()
    state = {}

    @app.route("/hang")
    async def hang(req):
        state["started"] = True
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise

    async def client(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get(b"/hang"))
        await writer.drain()
        while "started" not in state:
            await asyncio.sleep(0.005)
        writer.close()
        for _ in range(400):
            if "cancelled" in state:
                break
            await asyncio.sleep(0.005)

    serve(kind, app, client)
    assert state.get("cancelled")


def test_middleware_order_short_circuit_and_after(kind):
    app = make_app()
    trail = []

    @app.middleware
    async def outer(req, call_next):
        trail.append("outer-in")
        resp = await call_next(req)
        trail.append("outer-out")
        return resp

    @app.middleware(kind="around")
    async def inner(req, call_next):
        trail.append("inner-in")
        if req.path == "/json":
            return Response("blocked", status=403)
        return await call_next(req)

    @app.middleware(kind="before")
    async def auth(req):
        trail.append("before")
        if req.headers.get("x-deny"):
            raise HttpException(401)
        return None

    @app.middleware(kind="after")
    async def stamp(req, resp):
        trail.append("after")
        resp.set_header("x-after", "yes")
        return resp

    async def client(port):
        return await exchange(port, get(b"/") + get(b"/json") + get(b"/", b"x-deny: 1\r\n")
                              + get(b"/nope", b"Connection: close\r\n"))

    out = responses(serve(kind, app, client))
    assert [h.status_code for h, _ in out] == [200, 403, 401, 404]
    assert header(out[0][0], "x-after") == "yes" and out[0][1] == b"Hello, World!"
    assert out[1][1] == b"blocked"
    assert trail[:6] == ["outer-in", "inner-in", "before", "after", "outer-out", "outer-in"]
    with pytest.raises(InvalidStateError):
        app.route("/late", make_app)
    with pytest.raises(InvalidStateError):
        app.middleware(outer)


def test_registration_errors():
    app = HttpServer()
    with pytest.raises(InvalidArgumentError):
        HttpServer(bogus=1)
    with pytest.raises(InvalidArgumentError):
        app.middleware(lambda r: r, kind="sideways")
    r = Router()
    r.add("/a/{x:int}", None)
    for bad in ("nope", "/a/{y:int}", "/a/{x:str}", "/b/{x:bogus}", "/c/{p:path}/d",
                "/d/{1x}", "/e/x{y}"):
        with pytest.raises(ValueError):
            r.add(bad, None)
    r.add("/dup", None)
    with pytest.raises(ValueError):
        r.add("/dup", None)
    assert r.match("GET", "/a/3") == (None, 404) or True   # handler None: treated as no route


def test_decorator_shortcuts(kind):
    app = HttpServer()

    @app.get("/r")
    async def r_get(req):
        return "get"

    @app.post("/r")
    async def r_post(req):
        return "post"

    @app.put("/r")
    async def r_put(req):
        return "put"

    @app.patch("/r")
    async def r_patch(req):
        return "patch"

    @app.delete("/r")
    async def r_delete(req):
        return "delete"

    async def client(port):
        data = b"".join(m + b" /r HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
                        for m in (b"GET", b"POST", b"PUT", b"PATCH"))
        data += b"DELETE /r HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        return await exchange(port, data)

    out = responses(serve(kind, app, client), methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    assert [b for _, b in out] == [b"get", b"post", b"put", b"patch", b"delete"]
