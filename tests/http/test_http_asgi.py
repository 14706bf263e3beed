"""The ASGI server (flowcoro.http.asgi) running real applications.

A real Starlette app, a real FastAPI app and bare ASGI 3 callables run on
:class:`ASGIServer` in this process (port 0), on FlowCoro's loop and on the
stdlib asyncio loop (the reference); httpx and raw sockets are the clients.
The last tests run ``python -m flowcoro serve module:app`` as a user does
(one process, then ``--workers 2``) and stop it with SIGTERM.
"""
import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import flowcoro
from flowcoro.http.asgi import ASGIError, ASGIServer, load_app

import helpers

pytestmark = pytest.mark.timeout(30)

#: FlowCoro's loop (epoll) and the stdlib reference.
KINDS = ("epoll", "asyncio")

#: The tests that pin a server bug with a deadline (they wait for something
#: that never comes) run on FlowCoro's loop only, to keep the file fast: the
#: adapter's code is the same on both loops.
FLOWCORO_ONLY = pytest.mark.parametrize("kind", ["epoll"])

#: Server bugs found by these tests (see the module doc and the final report).
ROOT = Path(__file__).resolve().parents[2]
PKG_PARENT = str(Path(flowcoro.__file__).resolve().parent.parent)


@pytest.fixture(params=KINDS)
def kind(request):
    """'epoll' (FlowCoro) or 'asyncio' (the reference)."""
    return request.param


def run(kind, coro):
    """Run ``coro`` to completion on a fresh loop of ``kind``."""
    return helpers.run_with(kind, coro)


@contextlib.asynccontextmanager
async def serving(app, grace=2.0, **kw):
    """ASGIServer(app) on 127.0.0.1:0; yields (server, httpx client on it)."""
    srv = ASGIServer(app, **kw)
    await srv.listen("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{srv.port}",
                                     timeout=10) as client:
            yield srv, client
    finally:
        await srv.stop(grace=grace)


async def raw_exchange(port, data, *, host="127.0.0.1", read_timeout=5.0):
    """Send ``data`` on a new connection, read until the server closes it."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        out = b""
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), read_timeout)
            if not chunk:
                return out
            out += chunk
    finally:
        writer.close()


def split_responses(data):
    """[(status, body)] of the Content-Length framed responses in ``data``."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))
        out.append((status, rest[:length]))
        data = rest[length:]
    return out


def simple_app(handler):
    """A bare ASGI app: lifespan unsupported (raises), HTTP goes to ``handler``."""
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("lifespan is not supported by this app")
        await handler(scope, receive, send)
    return app


async def send_text(send, text, status=200, headers=()):
    """Send a whole text response in two ASGI messages."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain")] + list(headers)})
    await send({"type": "http.response.body", "body": text.encode()})


# -- Starlette ------------------------------------------------------------------

def make_starlette(events):
    """A Starlette app with lifespan, path params, JSON, streaming in and out."""
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    @contextlib.asynccontextmanager
    async def lifespan(app):
        events.append("startup")
        yield {"greeting": "hello from lifespan"}
        events.append("shutdown")

    async def user(request):
        return JSONResponse({
            "id": request.path_params["id"],
            "query": dict(request.query_params),
            "x_test": request.headers.get("x-test"),
            "greeting": request.state.greeting,
        })

    async def echo(request):
        data = await request.json()
        return JSONResponse({"got": data}, status_code=201, headers={"x-echo": "1"})

    async def stream(request):
        n = int(request.query_params.get("n", "3"))

        async def parts():
            for i in range(n):
                yield f"part {i}\n".encode()
        return StreamingResponse(parts(), media_type="text/plain")

    async def upload(request):
        digest = hashlib.sha256()
        pieces = size = 0
        async for chunk in request.stream():
            digest.update(chunk)
            size += len(chunk)
            pieces += 1
        return JSONResponse({"size": size, "sha256": digest.hexdigest(), "pieces": pieces})

    async def boom(request):
        raise RuntimeError("starlette handler failed")

    async def background(request):
        release = events_gate[0]

        async def later():
            await release.wait()
            events.append("background done")
        return PlainTextResponse("sent", background=BackgroundTask(later))

    events_gate = []
    app = Starlette(routes=[
        Route("/users/{id:int}", user),
        Route("/echo", echo, methods=["POST"]),
        Route("/stream", stream),
        Route("/upload", upload, methods=["POST"]),
        Route("/boom", boom),
        Route("/background", background),
    ], lifespan=lifespan)
    app.state.gate = events_gate
    return app


def test_starlette_routes_json_query_headers_lifespan(kind):
    events = []

    async def main():
        app = make_starlette(events)
        async with serving(app) as (srv, c):
            assert events == ["startup"]            # lifespan ran before listen() returned
            r = await c.get("/users/42", params={"a": "1", "b": "x y"},
                            headers={"X-Test": "yes"})
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/json"
            assert int(r.headers["content-length"]) == len(r.content)
            assert r.json() == {"id": 42, "query": {"a": "1", "b": "x y"}, "x_test": "yes",
                                "greeting": "hello from lifespan"}
            r = await c.post("/echo", json={"k": [1, 2, {"z": None}]})
            assert r.status_code == 201 and r.headers["x-echo"] == "1"
            assert r.json() == {"got": {"k": [1, 2, {"z": None}]}}
            # Starlette's own 404 and 405, and its int converter refusing "abc".
            assert (await c.get("/nowhere")).status_code == 404
            assert (await c.get("/users/abc")).status_code == 404
            assert (await c.get("/echo")).status_code == 405
            # HEAD: same headers as GET, no body.
            g = await c.get("/users/7")
            h = await c.head("/users/7")
            assert h.status_code == 200 and h.content == b""
            assert h.headers["content-length"] == g.headers["content-length"]
            # Keep-alive: those requests shared connections (the pool has one).
            assert events == ["startup"]
        assert events == ["startup", "shutdown"]    # and shutdown ran in stop()

    run(kind, main())


def test_starlette_exception_is_500_and_server_goes_on(kind):
    async def main():
        async with serving(make_starlette([])) as (srv, c):
            r = await c.get("/boom")
            assert r.status_code == 500
            assert (await c.get("/users/1")).status_code == 200

    run(kind, main())


def test_starlette_streaming_response_is_chunked(kind):
    async def main():
        async with serving(make_starlette([])) as (srv, c):
            async with c.stream("GET", "/stream", params={"n": "5"}) as r:
                assert r.status_code == 200
                assert r.headers["transfer-encoding"] == "chunked"
                assert "content-length" not in r.headers
                body = b"".join([chunk async for chunk in r.aiter_raw()])
            assert body == b"".join(f"part {i}\n".encode() for i in range(5))

    run(kind, main())


def test_starlette_large_body_streamed_by_the_app(kind):
    # 6 MiB in 64 KiB pieces, chunked: the app reads it as it arrives, in
    # several http.request messages (max_body=None lifts the 1 MiB default).
    piece = bytes(range(256)) * 256
    total = 96

    async def body():
        for _ in range(total):
            yield piece

    async def main():
        async with serving(make_starlette([]), max_body=None) as (srv, c):
            r = await c.post("/upload", content=body())
            assert r.status_code == 200, r.text
            got = r.json()
            assert got["size"] == len(piece) * total
            assert got["sha256"] == hashlib.sha256(piece * total).hexdigest()
            assert got["pieces"] > 1

    run(kind, main())


def test_body_over_max_body_is_413(kind):
    async def main():
        async with serving(make_starlette([]), max_body=1000) as (srv, c):
            r = await c.post("/upload", content=b"x" * 1001)
            assert r.status_code == 413
            r = await c.post("/upload", content=b"x" * 1000)
            assert r.json()["size"] == 1000

    run(kind, main())


@FLOWCORO_ONLY
def test_starlette_background_task_runs_after_the_response(kind):
    events = []

    async def main():
        app = make_starlette(events)
        gate = asyncio.Event()
        app.state.gate.append(gate)
        async with serving(app) as (srv, c):
            # The background task waits for the gate, which opens only once
            # the response arrived: a server that holds the response until
            # the app returns never answers (the wait_for fails).
            try:
                r = await asyncio.wait_for(c.get("/background"), 1)
            finally:
                opened = gate.is_set()
                gate.set()
            assert r.text == "sent" and not opened
            assert "background done" not in events
            for _ in range(100):
                if "background done" in events:
                    break
                await asyncio.sleep(0.01)
            assert "background done" in events

    run(kind, main())


# -- FastAPI ---------------------------------------------------------------------

def make_fastapi(events):
    """A FastAPI app: pydantic bodies, path/query/header params, lifespan."""
    from typing import Optional

    from fastapi import FastAPI, Header, HTTPException
    from fastapi.responses import StreamingResponse
    from pydantic import BaseModel

    @contextlib.asynccontextmanager
    async def lifespan(app):
        events.append("startup")
        yield
        events.append("shutdown")

    api = FastAPI(lifespan=lifespan)
    items = {}

    class Item(BaseModel):
        name: str
        price: float
        tags: list[str] = []

    @api.post("/items/{item_id}", status_code=201)
    async def create(item_id: int, item: Item, x_token: Optional[str] = Header(None)):
        items[item_id] = item
        return {"id": item_id, "item": item.model_dump(), "token": x_token}

    @api.get("/items/{item_id}")
    async def read(item_id: int, verbose: bool = False):
        if item_id not in items:
            raise HTTPException(status_code=404, detail="no such item")
        out = {"id": item_id, "name": items[item_id].name}
        if verbose:
            out["price"] = items[item_id].price
        return out

    @api.get("/items")
    async def listing(limit: int = 10, prefix: str = ""):
        names = sorted(i.name for i in items.values() if i.name.startswith(prefix))
        return {"names": names[:limit]}

    @api.get("/fail")
    async def fail():
        raise ValueError("fastapi handler failed")

    @api.get("/sync")
    def sync_route():
        return {"pid": os.getpid(), "sync": True}

    @api.get("/stream")
    async def stream():
        async def gen():
            for i in range(4):
                yield json.dumps({"i": i}) + "\n"
        return StreamingResponse(gen(), media_type="application/x-ndjson")

    return api


def test_fastapi_pydantic_bodies_params_and_422(kind):
    events = []

    async def main():
        async with serving(make_fastapi(events), lifespan="on") as (srv, c):
            assert events == ["startup"]
            r = await c.post("/items/1", json={"name": "apple", "price": 1.5, "tags": ["red"]},
                             headers={"x-token": "t0k"})
            assert r.status_code == 201, r.text
            assert r.json() == {"id": 1, "item": {"name": "apple", "price": 1.5, "tags": ["red"]},
                                "token": "t0k"}
            await c.post("/items/2", json={"name": "apricot", "price": 2})
            await c.post("/items/3", json={"name": "banana", "price": 3})
            # Validation: a missing field, a wrong type, a bad path parameter.
            r = await c.post("/items/4", json={"name": "no price"})
            assert r.status_code == 422
            assert r.json()["detail"][0]["loc"] == ["body", "price"]
            assert (await c.post("/items/4", json={"name": "x", "price": "cheap"})).status_code == 422
            assert (await c.post("/items/four", json={"name": "x", "price": 1})).status_code == 422
            assert (await c.post("/items/4", content=b"{not json",
                                 headers={"content-type": "application/json"})).status_code == 422
            # Query parameters.
            assert (await c.get("/items", params={"prefix": "ap"})).json() == {
                "names": ["apple", "apricot"]}
            assert (await c.get("/items", params={"limit": "1"})).json() == {"names": ["apple"]}
            assert (await c.get("/items/2", params={"verbose": "true"})).json() == {
                "id": 2, "name": "apricot", "price": 2.0}
            # HTTPException and an unknown route: FastAPI's JSON 404s.
            r = await c.get("/items/99")
            assert r.status_code == 404 and r.json() == {"detail": "no such item"}
            assert (await c.get("/nope")).status_code == 404
            # An exception in a handler: 500, and the server keeps serving.
            assert (await c.get("/fail")).status_code == 500
            assert (await c.get("/items/1")).status_code == 200
        assert events == ["startup", "shutdown"]

    run(kind, main())


def test_fastapi_sync_route_and_streaming(kind):
    async def main():
        async with serving(make_fastapi([])) as (srv, c):
            r = await c.get("/sync")
            assert r.status_code == 200 and r.json()["sync"] is True
            r = await c.get("/stream")
            assert r.headers["transfer-encoding"] == "chunked"
            assert [json.loads(line) for line in r.text.splitlines()] == [{"i": i} for i in range(4)]

    run(kind, main())


def test_fastapi_custom_exception_handler_response_is_sent(kind):
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    api = FastAPI()

    @api.exception_handler(Exception)
    async def handler(request, exc):
        return JSONResponse({"error": str(exc)}, status_code=500)

    @api.get("/boom")
    async def boom():
        raise RuntimeError("kaput")

    async def main():
        async with serving(api) as (srv, c):
            r = await c.get("/boom")
            assert r.status_code == 500
            assert r.json() == {"error": "kaput"}

    run(kind, main())


# -- bare ASGI apps: the scope and the messages ------------------------------------

def test_scope_fields(kind):
    scopes = []

    async def handler(scope, receive, send):
        scopes.append(scope)
        await send_text(send, "ok")

    async def main():
        srv = ASGIServer(simple_app(handler), root_path="/mount")
        await srv.listen("127.0.0.1", 0)
        try:
            port = srv.port
            reply = await raw_exchange(port, (
                b"GET /a%20b/c%2Fd?x=1&y=%20z HTTP/1.1\r\nHost: example.test\r\n"
                b"X-Mixed-Case: Value Kept\r\nAccept: a\r\nAccept: b\r\n"
                b"Connection: close\r\n\r\n"))
            assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
            reply = await raw_exchange(port, b"POST /ten HTTP/1.0\r\nHost: h\r\n"
                                             b"Content-Length: 0\r\n\r\n")
            assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
        finally:
            await srv.stop()
        s = scopes[0]
        assert s["type"] == "http"
        assert s["asgi"]["version"] == "3.0"
        assert s["asgi"].get("spec_version", "2.0") >= "2.0"
        assert s["http_version"] == "1.1"
        assert s["method"] == "GET"
        assert s["scheme"] == "http"
        assert s["path"] == "/a b/c/d"                 # percent-decoded
        assert s["raw_path"] == b"/a%20b/c%2Fd"        # as sent, without the query
        assert s["query_string"] == b"x=1&y=%20z"      # undecoded
        assert s["root_path"] == "/mount"
        headers = [tuple(h) for h in s["headers"]]
        assert headers == [(b"host", b"example.test"), (b"x-mixed-case", b"Value Kept"),
                           (b"accept", b"a"), (b"accept", b"b"), (b"connection", b"close")]
        assert all(type(n) is bytes and type(v) is bytes for n, v in headers)
        client_host, client_port = s["client"]
        assert client_host == "127.0.0.1" and 0 < client_port < 65536
        assert tuple(s["server"]) == ("127.0.0.1", port)
        assert s["state"] == {}
        assert scopes[1]["http_version"] == "1.0" and scopes[1]["method"] == "POST"

    run(kind, main())


@FLOWCORO_ONLY
def test_scope_client_is_host_port_on_ipv6(kind):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    scopes = []

    async def handler(scope, receive, send):
        scopes.append(scope)
        await send_text(send, "ok")

    async def main():
        srv = ASGIServer(simple_app(handler))
        try:
            await srv.listen("::1", 0)
        except OSError:
            pytest.skip("::1 not available")
        try:
            await raw_exchange(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                               host="::1")
        finally:
            await srv.stop()
        assert scopes[0]["server"][0] == "::1"
        assert scopes[0]["client"][0] == "::1"
        assert len(scopes[0]["client"]) == 2, scopes[0]["client"]

    run(kind, main())


def test_app_errors_become_500(kind):
    # An exception before the response, a return without one, a protocol
    # violation the app does not catch: each is a 500, and the connection
    # goes on serving the next request.
    async def handler(scope, receive, send):
        path = scope["path"]
        if path == "/raise":
            raise KeyError("app bug")
        if path == "/silent":
            return
        if path == "/unknown-message":
            await send({"type": "http.response.nonsense"})
        await send_text(send, "fine")

    async def main():
        async with serving(simple_app(handler)) as (srv, c):
            for path in ("/raise", "/silent", "/unknown-message"):
                r = await c.get(path)
                assert r.status_code == 500, (path, r.status_code)
                assert (await c.get("/")).text == "fine"

    run(kind, main())


def test_send_refuses_messages_out_of_order(kind):
    # The app sees ASGIError for each misuse (and can still answer).
    seen = []

    async def handler(scope, receive, send):
        try:
            await send({"type": "http.response.body", "body": b"early"})
        except ASGIError as exc:
            seen.append(("body before start", str(exc)))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            await send({"type": "http.response.start", "status": 200})
        except ASGIError as exc:
            seen.append(("start twice", str(exc)))
        await send({"type": "http.response.body", "body": b"done"})
        try:
            await send({"type": "http.response.body", "body": b"late"})
        except ASGIError as exc:
            seen.append(("body after end", str(exc)))

    async def main():
        async with serving(simple_app(handler)) as (srv, c):
            r = await c.get("/")
            assert r.status_code == 200 and r.text == "done"

    run(kind, main())
    assert [k for k, _ in seen] == ["body before start", "start twice", "body after end"]


def test_exception_after_the_response_started_cuts_the_connection(kind):
    async def handler(scope, receive, send):
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("failed mid-stream")

    async def main():
        async with serving(simple_app(handler)) as (srv, c):
            with pytest.raises(httpx.RemoteProtocolError):
                await c.get("/")
            reply = await raw_exchange(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            # Chunked head and the first chunk, but never the last chunk.
            assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"transfer-encoding: chunked\r\n" in reply
            assert reply.endswith(b"7\r\npartial\r\n")

    run(kind, main())


def test_framing_headers_are_the_servers(kind):
    # Content-Length / Transfer-Encoding / Connection from the app are
    # replaced by the server's own framing.
    async def handler(scope, receive, send):
        path = scope["path"]
        if path == "/lying-length":
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"Content-Length", b"999"), (b"Transfer-Encoding", b"chunked"),
                (b"Connection", b"close"), (b"X-Kept", b"yes")]})
            await send({"type": "http.response.body", "body": b"12345"})
        elif path == "/streamed-with-length":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"10")]})
            await send({"type": "http.response.body", "body": b"01234", "more_body": True})
            await send({"type": "http.response.body", "body": b"56789", "more_body": False})
        elif path == "/streamed-bad-length":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"ten")]})
            await send({"type": "http.response.body", "body": b"abc", "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        elif path == "/streamed-empty-end":
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"a", "more_body": True})
            await send({"type": "http.response.body", "body": b"b", "more_body": True})
            # returns without more_body=False: the server ends the body.
        elif path == "/no-content":
            await send({"type": "http.response.start", "status": 204})
            await send({"type": "http.response.body", "body": b""})

    async def main():
        async with serving(simple_app(handler)) as (srv, c):
            port = srv.port
            reply = await raw_exchange(port, b"GET /lying-length HTTP/1.1\r\nHost: h\r\n\r\n"
                                             b"GET /no-content HTTP/1.1\r\nHost: h\r\n"
                                             b"Connection: close\r\n\r\n")
            head, _, rest = reply.partition(b"\r\n\r\n")
            lines = head.lower().split(b"\r\n")
            assert b"content-length: 5" in lines and b"x-kept: yes" in lines
            assert b"content-length: 999" not in lines
            assert not any(l.startswith(b"transfer-encoding") for l in lines)
            assert b"connection: close" not in lines     # the connection was kept
            assert rest.startswith(b"12345HTTP/1.1 204 No Content\r\n")
            assert rest.endswith(b"\r\n\r\n")             # 204: no body, no length

            r = await c.get("/streamed-with-length")
            assert r.headers["content-length"] == "10" and r.text == "0123456789"
            assert "transfer-encoding" not in r.headers
            r = await c.get("/streamed-bad-length")
            assert r.headers["transfer-encoding"] == "chunked" and r.text == "abc"
            r = await c.get("/streamed-empty-end")
            assert r.headers["transfer-encoding"] == "chunked" and r.text == "ab"

    run(kind, main())


def test_header_injection_from_the_app_is_refused(kind):
    # CR/LF in a header value the app sends would split the response: the
    # server refuses it (500), whether the body is whole or streamed.
    async def handler(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-bad", b"a\r\nInjected: 1")]})
        await send({"type": "http.response.body", "body": b"body",
                    "more_body": scope["path"] == "/streamed"})

    async def main():
        async with serving(simple_app(handler)) as (srv, c):
            for path in ("/whole", "/streamed"):
                reply = await raw_exchange(srv.port, b"GET %s HTTP/1.1\r\nHost: h\r\n"
                                                     b"Connection: close\r\n\r\n" % path.encode())
                assert reply.startswith(b"HTTP/1.1 500 "), (path, reply)
                assert b"Injected" not in reply

    run(kind, main())


@FLOWCORO_ONLY
def test_streamed_body_longer_than_content_length_is_not_sent(kind):
    async def handler(scope, receive, send):
        if scope["path"] == "/over":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"3")]})
            await send({"type": "http.response.body", "body": b"abc", "more_body": True})
            await send({"type": "http.response.body",
                        "body": b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nevil"})
        else:
            await send_text(send, "second")

    async def main():
        async with serving(simple_app(handler)) as (srv, c):
            reply = await raw_exchange(srv.port, b"GET /over HTTP/1.1\r\nHost: h\r\n\r\n"
                                                 b"GET /2 HTTP/1.1\r\nHost: h\r\n"
                                                 b"Connection: close\r\n\r\n")
            assert b"evil" not in reply

    run(kind, main())


def test_receive_body_in_pieces_then_disconnect(kind):
    # A request body arrives as http.request messages; the last has
    # more_body False; the client going away mid-body is http.disconnect.
    messages = []
    got_disconnect = None

    async def handler(scope, receive, send):
        if scope["path"] == "/whole":
            body = b""
            while True:
                m = await receive()
                messages.append(m)
                body += m.get("body", b"")
                if not m.get("more_body"):
                    break
            await send_text(send, f"{len(body)}:{body[:5].decode()}")
            return
        # /cut: read until the client disconnects.
        while True:
            m = await receive()
            if m["type"] == "http.disconnect":
                got_disconnect.set_result(m)
                return

    async def main():
        nonlocal got_disconnect
        got_disconnect = asyncio.get_running_loop().create_future()
        async with serving(simple_app(handler)) as (srv, c):
            r = await c.post("/whole", content=b"hello world")
            assert r.text == "11:hello"
            assert all(m["type"] == "http.request" for m in messages)
            assert messages[-1]["more_body"] is False
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            writer.write(b"POST /cut HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\npart")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.close()
            m = await asyncio.wait_for(got_disconnect, 5)
            assert m == {"type": "http.disconnect"}

    run(kind, main())


@FLOWCORO_ONLY
def test_receive_after_the_body_waits_for_disconnect(kind):
    # A streaming app that watches for the client going away (as Starlette's
    # StreamingResponse does) gets http.disconnect when it does.
    seen = []

    async def handler(scope, receive, send):
        assert (await receive())["more_body"] is False
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"tick\n", "more_body": True})
        seen.append(await receive())

    async def main():
        async with serving(simple_app(handler), grace=0.1) as (srv, c):
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            data = b""
            while b"tick\n" not in data:
                data += await asyncio.wait_for(reader.read(1024), 5)
            writer.close()
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            assert seen == [{"type": "http.disconnect"}]

    run(kind, main())


@FLOWCORO_ONLY
def test_receive_after_the_response_is_disconnect(kind):
    async def handler(scope, receive, send):
        await receive()
        await send_text(send, "done")
        # ASGI: "sent to the application if receive is called after a
        # response has been sent" -- at once, the client is still connected.
        m = await asyncio.wait_for(receive(), 1)
        assert m == {"type": "http.disconnect"}

    async def main():
        async with serving(simple_app(handler)) as (srv, c):
            r = await asyncio.wait_for(c.get("/"), 3)
            assert r.status_code == 200 and r.text == "done"

    run(kind, main())


def test_pipelined_requests_and_100_continue(kind):
    async def handler(scope, receive, send):
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        await send_text(send, f"{scope['path']}={body.decode()}")

    async def main():
        async with serving(simple_app(handler)) as (srv, c):
            reply = await raw_exchange(srv.port, (
                b"POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\na"
                b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
                b"POST /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n\r\n2\r\nbc\r\n0\r\n\r\n"))
            assert [body for status, body in split_responses(reply)] == [
                b"/1=a", b"/2=", b"/3=bc"]

            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            try:
                writer.write(b"POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n"
                             b"Expect: 100-continue\r\n\r\n")
                interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
                writer.write(b"data")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                assert head.startswith(b"HTTP/1.1 200 OK\r\n")
                assert await reader.readexactly(len(b"/c=data")) == b"/c=data"
            finally:
                writer.close()

    run(kind, main())


# -- lifespan ---------------------------------------------------------------------

def lifespan_app(mode, events):
    """An app whose lifespan behaves per ``mode``; HTTP answers the shared state."""
    async def app(scope, receive, send):
        if scope["type"] == "http":
            await send_text(send, json.dumps(scope.get("state", {})))
            return
        assert scope["type"] == "lifespan"
        if mode == "unsupported":
            raise TypeError("unknown scope type")
        m = await receive()
        events.append(m["type"])
        if mode == "startup-failed":
            await send({"type": "lifespan.startup.failed", "message": "db unreachable"})
            return
        if mode == "startup-raises":
            raise RuntimeError("crash during startup")
        if mode == "returns-early":
            return
        scope["state"]["db"] = "connected"
        await send({"type": "lifespan.startup.complete"})
        m = await receive()
        events.append(m["type"])
        if mode == "shutdown-failed":
            await send({"type": "lifespan.shutdown.failed", "message": "flush failed"})
            return
        if mode == "shutdown-raises":
            raise RuntimeError("crash during shutdown")
        await send({"type": "lifespan.shutdown.complete"})
    return app


@pytest.mark.parametrize("lifespan", ["auto", "on"])
def test_lifespan_events_run_and_state_is_shared(kind, lifespan):
    events = []

    async def main():
        async with serving(lifespan_app("ok", events), lifespan=lifespan) as (srv, c):
            assert events == ["lifespan.startup"]
            assert (await c.get("/")).json() == {"db": "connected"}
        assert events == ["lifespan.startup", "lifespan.shutdown"]

    run(kind, main())


@pytest.mark.parametrize("mode", ["ok", "unsupported"])
def test_lifespan_off_never_calls_the_app_with_lifespan(kind, mode):
    events = []

    async def main():
        async with serving(lifespan_app(mode, events), lifespan="off") as (srv, c):
            assert (await c.get("/")).json() == {}
        assert events == []

    run(kind, main())


@pytest.mark.parametrize("mode", ["unsupported", "startup-raises", "returns-early"])
def test_lifespan_auto_tolerates_apps_without_it(kind, mode):
    async def main():
        events = []
        async with serving(lifespan_app(mode, events), lifespan="auto") as (srv, c):
            assert (await c.get("/")).status_code == 200
        # The app was not told about shutdown: it said it has no lifespan.
        assert "lifespan.shutdown" not in events

    run(kind, main())


@pytest.mark.parametrize("lifespan,mode", [
    ("on", "unsupported"), ("on", "startup-raises"),
    ("on", "startup-failed"), ("auto", "startup-failed"),
])
def test_lifespan_startup_failure_aborts_listen(kind, lifespan, mode):
    async def main():
        srv = ASGIServer(lifespan_app(mode, []), lifespan=lifespan)
        with pytest.raises(ASGIError) as info:
            await srv.listen("127.0.0.1", 0)
        assert srv.sockets == []                  # nothing listens
        if mode == "startup-failed":
            assert "db unreachable" in str(info.value)
        assert isinstance(info.value, RuntimeError)

    run(kind, main())


def test_lifespan_shutdown_failure_is_reported_by_stop(kind):
    events = []

    async def main():
        srv = ASGIServer(lifespan_app("shutdown-failed", events), lifespan="on")
        await srv.listen("127.0.0.1", 0)
        with pytest.raises(ASGIError, match="flush failed"):
            await srv.stop()
        assert srv.sockets == []
        assert events == ["lifespan.startup", "lifespan.shutdown"]

    run(kind, main())


@FLOWCORO_ONLY
def test_serve_forever_returns_even_when_lifespan_shutdown_fails(kind):
    async def main():
        srv = ASGIServer(lifespan_app("shutdown-failed", []), lifespan="on")
        await srv.listen("127.0.0.1", 0)
        waiter = asyncio.ensure_future(srv.serve_forever())
        with contextlib.suppress(ASGIError):
            await srv.stop()
        await asyncio.wait_for(waiter, 1)

    run(kind, main())


def test_lifespan_shutdown_exception_is_logged_not_raised(kind, caplog):
    events = []

    async def main():
        async with serving(lifespan_app("shutdown-raises", events), lifespan="on") as (srv, c):
            assert (await c.get("/")).status_code == 200
        assert events == ["lifespan.startup", "lifespan.shutdown"]

    run(kind, main())
    assert "lifespan task failed" in caplog.text


def test_second_listen_keeps_the_first_server_address(kind):
    scopes = []

    async def handler(scope, receive, send):
        scopes.append(scope)
        await send_text(send, "ok")

    async def main():
        srv = ASGIServer(simple_app(handler), lifespan="off")
        await srv.listen("127.0.0.1", 0)
        first = srv.port
        await srv.listen("127.0.0.1", 0)
        second = srv.sockets[1].getsockname()[1]
        try:
            async with httpx.AsyncClient() as c:
                assert (await c.get(f"http://127.0.0.1:{second}/")).text == "ok"
        finally:
            await srv.stop()
        assert scopes[0]["server"] == ("127.0.0.1", first)

    run(kind, main())


def test_constructor_and_load_app_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError):
        ASGIServer(simple_app(send_text), lifespan="sometimes")
    for bad in ("nocolon", ":app", "mod:"):
        with pytest.raises(ValueError):
            load_app(bad)
    (tmp_path / "asgi_loadme.py").write_text(
        "class Holder:\n    class Inner:\n        app = 'the app'\napp = 'top'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_app("asgi_loadme:app") == "top"
    assert load_app("asgi_loadme:Holder.Inner.app") == "the app"
    with pytest.raises(AttributeError):
        load_app("asgi_loadme:missing")
    with pytest.raises(ModuleNotFoundError):
        load_app("asgi_no_such_module_here:app")


# -- flowcoro serve (console script path, subprocess) ------------------------------

CLI_APP = '''
import os
import sys

EVENTS = []


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            # One write per line: two worker processes share this stdout,
            # and print() writes the text and the newline separately.
            sys.stdout.write(f"LIFESPAN {message['type']} {os.getpid()}\\n")
            sys.stdout.flush()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    body = f"{os.getpid()} {scope['root_path']} {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
'''


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(tmp_path, *extra):
    (tmp_path / "asgi_cli_app.py").write_text(CLI_APP)
    env = dict(os.environ)
    env["PYTHONPATH"] = PKG_PARENT
    env["PYTHONUNBUFFERED"] = "1"
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowcoro", "serve", "asgi_cli_app:app", "--port", str(port),
         *extra],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    return proc, port


def _get(port, path="/", deadline_s=20.0):
    """GET over a new connection, retrying while the server is not up yet."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5,
                             headers={"connection": "close"})
        except httpx.TransportError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def _terminate(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        out = proc.communicate(timeout=15)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        out = proc.communicate()[0]
        pytest.fail(f"flowcoro serve did not stop on SIGTERM:\n{out}")
    return proc.returncode, out


def test_cli_serve_runs_the_app_and_stops_on_sigterm(tmp_path):
    proc, port = _serve(tmp_path, "--root-path", "/api")
    try:
        r = _get(port, "/hello")
        assert r.status_code == 200
        pid, root, path = r.text.split()
        assert int(pid) == proc.pid and root == "/api" and path == "/hello"
    finally:
        rc, out = _terminate(proc)
    assert rc == 0, out
    assert "Traceback" not in out, out
    assert f"LIFESPAN lifespan.startup {proc.pid}" in out
    assert f"LIFESPAN lifespan.shutdown {proc.pid}" in out
    assert f"serving on http://127.0.0.1:{port}" in out


def test_cli_serve_workers_answer_from_two_processes(tmp_path):
    proc, port = _serve(tmp_path, "--workers", "2", "--lifespan", "on")
    pids = set()
    try:
        # SO_REUSEPORT spreads new connections over the workers by a hash
        # of the addresses: a few dozen connections reach both.
        for _ in range(200):
            pids.add(int(_get(port).text.split()[0]))
            if len(pids) == 2:
                break
    finally:
        rc, out = _terminate(proc)
    assert len(pids) == 2, (pids, out)
    assert proc.pid not in pids                 # the parent only supervises
    assert rc == 0, out
    assert out.count("LIFESPAN lifespan.shutdown") == 2, out


def test_cli_serve_exits_non_zero_when_lifespan_startup_fails(tmp_path):
    (tmp_path / "asgi_cli_failing.py").write_text(
        "async def app(scope, receive, send):\n"
        "    assert scope['type'] == 'lifespan'\n"
        "    await receive()\n"
        "    await send({'type': 'lifespan.startup.failed', 'message': 'no database'})\n")
    env = dict(os.environ, PYTHONPATH=PKG_PARENT)
    r = subprocess.run([sys.executable, "-m", "flowcoro", "serve", "asgi_cli_failing:app",
                        "--port", str(_free_port())],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "no database" in r.stderr


def test_cli_serve_bad_app_spec_fails(tmp_path):
    env = dict(os.environ, PYTHONPATH=PKG_PARENT)
    r = subprocess.run([sys.executable, "-m", "flowcoro", "serve", "no_such_module_xyz:app",
                        "--port", str(_free_port())],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "no_such_module_xyz" in r.stderr
