"""HttpServer's shell: life-cycle hooks, listen variants, run(), small API pieces."""
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from flowcoro._core.httpserver import HistCell

from flowcoro.errors import InvalidArgumentError, InvalidStateError
from flowcoro.http import Headers, HttpServer, Response, reason_phrase
from flowcoro._core.httpserver import as_response

import helpers
from server_helpers import KINDS, exchange, get, header, responses

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


def test_lifecycle_hooks_sock_serve_forever_and_context_manager(kind):
    app = HttpServer()
    events = []

    @app.on_startup
    async def up():
        events.append("up")

    @app.on_shutdown
    async def down():
        events.append("down")

    @app.route("/", methods="GET")           # a single method as a str
    async def root(req):
        return "ok"

    async def main():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        async with app:
            await app.listen(sock=sock)
            assert app.connections == 0 and len(app.sockets) == 1
            out = await exchange(app.port, get(b"/", b"Connection: close\r\n"))
            waiter = asyncio.ensure_future(app.serve_forever())
            await asyncio.sleep(0)
            assert not waiter.done()
        await asyncio.wait_for(waiter, 5)
        await app.stop()                     # a second stop is a no-op
        return out

    out = helpers.run_with(kind, main())
    assert out.endswith(b"ok") and events == ["up", "down"]


def test_api_errors():
    app = HttpServer()
    with pytest.raises(InvalidArgumentError):
        app.route("/x", "not callable")
    with pytest.raises(InvalidStateError):
        helpers.run_with("epoll", app.serve_forever())
    with pytest.raises(InvalidArgumentError):
        app.run(workers=0)


def test_middleware_results_are_converted_for_after_middleware(kind):
    app = HttpServer()

    @app.middleware(kind="before")
    async def early(req):
        if req.path == "/early":
            return {"early": True}
        return None

    @app.middleware(kind="after")
    async def tag(req, resp):
        assert isinstance(resp, Response)
        resp.set_header("x-tag", resp.status)
        return None                          # None keeps the response

    @app.route("/bytes")
    async def b(req):
        return b"raw"

    @app.route("/early")
    async def never(req):                    # pragma: no cover - short-circuited
        return "no"

    async def client(port):
        return await exchange(port, get(b"/bytes") + get(b"/early", b"Connection: close\r\n"))

    from server_helpers import serve
    out = responses(serve(kind, app, client))
    assert out[0][1] == b"raw" and header(out[0][0], "x-tag") == "200"
    assert out[1][1] == b'{"early":true}'


def test_as_response_and_small_pieces():
    assert as_response("s").body == b"s"
    assert as_response(b"b").content_type == b"application/octet-stream"
    assert as_response([1]).body == b"[1]"
    assert as_response(None).status == 204
    r = Response("x")
    assert as_response(r) is r
    with pytest.raises(TypeError):
        as_response(object())
    with pytest.raises(TypeError):
        Response(123)
    assert Response.text("é").body == "é".encode()
    assert Response.json({"a": 1}, status=201).status == 201
    assert "Response 200" in repr(Response())
    r = Response("x", headers={"a": "1"})
    r.set_header("b", "2")
    assert r.headers == [("a", "1"), ("b", "2")]
    assert reason_phrase(404) == "Not Found" and reason_phrase(299) == ""
    h = Headers([(b"host", b"t"), (b"x-a", b"1"), (b"x-a", b"2")])
    assert h["Host"] == "t" and h.get(b"X-A") == "1" and h.getall("x-a") == ["1", "2"]
    assert "host" in h and "nope" not in h and len(h) == 3 and list(h)[0] == "host"
    assert h.keys() == ["host", "x-a", "x-a"] and h.items()[1] == ("x-a", "1")
    assert "Headers(" in repr(h)
    with pytest.raises(KeyError):
        h["missing"]


def test_request_introspection_and_misuse(kind):
    app = HttpServer()

    @app.route("/info")
    async def info(req):
        with pytest.raises(RuntimeError):
            await req.write(b"x")             # before start_response
        with pytest.raises(RuntimeError):
            req.end_response()
        req.state["k"] = 1
        task = asyncio.current_task()
        task.set_name("h")
        done = []
        task.add_done_callback(done.append)
        task.add_done_callback(print)
        assert task.remove_done_callback(print) == 1
        assert task.get_loop() is asyncio.get_running_loop()
        return {"client": req.client[0], "state": req.state, "repr": repr(req),
                "transport": req.transport is not None, "started": req.response_started,
                "name": task.get_name(), "stack": len(task.get_stack()) <= 1,
                "cancelling": task.cancelling(), "ctx": task.get_context() is not None,
                "coro": task.get_coro() is not None, "done": task.done()}

    @app.route("/twice")
    async def twice(req):
        req.start_response(200, [("content-type", "text/plain")], content_length=2)
        with pytest.raises(RuntimeError):
            req.start_response(200)
        await req.write("ok")
        req.end_response()
        with pytest.raises(RuntimeError):
            await req.write("more")
        return None        # ignored: the response was written

    @app.route("/read-twice", methods=["POST"])
    async def read_twice(req):
        body = await req.body()
        again = await req.body()
        with pytest.raises(RuntimeError):
            async for _ in req.stream():
                pass
        return {"same": body == again}

    async def client(port):
        return await exchange(port, get(b"/info") + get(b"/twice")
                              + b"POST /read-twice HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                                b"Connection: close\r\n\r\nabc")

    from server_helpers import serve
    import json
    out = responses(serve(kind, app, client), methods=["GET", "GET", "POST"])
    got = json.loads(out[0][1])
    assert got["client"] == "127.0.0.1" and got["state"] == {"k": 1}
    assert got["transport"] and not got["started"] and got["name"] == "h"
    assert got["cancelling"] == 0 and got["ctx"] and got["coro"] and not got["done"]
    assert out[1][1] == b"ok" and header(out[1][0], "content-length") == "2"
    assert json.loads(out[2][1]) == {"same": True}


def test_handler_task_cancel_semantics(kind):
    app = HttpServer()

    @app.route("/selfcancel")
    async def selfcancel(req):
        task = asyncio.current_task()
        assert task.cancel("bye") is True
        assert task.cancelling() == 1
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            assert task.uncancel() == 0
            return "caught"
        return "not cancelled"

    @app.route("/cancelled")
    async def cancelled(req):
        asyncio.current_task().cancel()
        await asyncio.sleep(1)

    @app.route("/yield")
    async def bare_yield(req):
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return "yielded"

    async def client(port):
        return await exchange(port, get(b"/selfcancel") + get(b"/cancelled")
                              + get(b"/yield", b"Connection: close\r\n"))

    from server_helpers import serve
    out = responses(serve(kind, app, client))
    assert [b for _, b in out] == [b"caught", b"Internal Server Error", b"yielded"]


def test_run_blocks_until_sigterm(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    script = tmp_path / "one.py"
    script.write_text(
        f"import sys; sys.path.insert(0, {src!r})\n"
        "from flowcoro.http import HttpServer\n"
        "app = HttpServer()\n"
        "@app.route('/')\n"
        "async def r(req):\n    return 'one'\n"
        f"app.run('127.0.0.1', {port})\n")
    proc = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                    c.sendall(get(b"/", b"Connection: close\r\n"))
                    data = b""
                    while chunk := c.recv(4096):
                        data += chunk
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert data.endswith(b"one")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def test_anyio_and_weakrefs_work_inside_handlers(kind):
    anyio = pytest.importorskip("anyio")
    import weakref
    app = HttpServer()

    @app.route("/anyio")
    async def any_(req):
        ref = weakref.ref(asyncio.current_task())
        results = []

        async def child(n):
            await anyio.sleep(0)
            results.append(n)

        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(child, n)
        with anyio.move_on_after(0.01):
            await anyio.sleep(5)
        return {"ref": ref() is asyncio.current_task(), "results": sorted(results)}

    @app.route("/overlong")
    async def overlong(req):
        req.start_response(200, content_length=2)
        await req.write(b"too long")
        return req.end_response()               # pragma: no cover - write raised

    async def client(port):
        a = await exchange(port, get(b"/anyio", b"Connection: close\r\n"))
        b = await exchange(port, get(b"/overlong") + get(b"/anyio"))
        return a, b

    from server_helpers import serve
    import json
    a, b = serve(kind, app, client)
    assert json.loads(responses(a)[0][1]) == {"ref": True, "results": [0, 1, 2]}
    # Headers went out, then the handler overran its Content-Length: the
    # connection is cut, and nothing of the excess (or a later answer) is sent.
    assert b"too long" not in b and b.count(b"HTTP/1.1") == 1


def test_set_observer_times_requests_in_the_c_path(kind):
    app = HttpServer()
    cells = {}
    traced = []

    def new_cell(route, method, status):
        cell = HistCell((0.001, 1.0))
        cells[(route, method, status)] = cell
        return cell

    async def trace_call(handler, request):
        traced.append((request.route, request.path))
        return await handler(request)

    @app.route("/users/{id:int}")
    async def user(req):
        return "u"

    @app.route("/hang")
    async def hang(req):
        await asyncio.sleep(30)

    app.set_observer(new_cell=new_cell, trace_call=trace_call, trace_ratio=0.0)

    async def client(port):
        await exchange(port, get(b"/users/1") + get(b"/users/2")
                       + get(b"/users/3", b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-"
                                          b"b7ad6b7169203331-01\r\n")
                       + get(b"/nope", b"Connection: close\r\n"))
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(get(b"/hang"))
        await w.drain()
        await asyncio.sleep(0.1)
        w.close()
        for _ in range(200):
            if ("/hang", "GET", 499) in cells:
                break
            await asyncio.sleep(0.01)

    from server_helpers import serve
    serve(kind, app, client)
    ok = cells[("/users/{id:int}", "GET", 200)]
    assert sum(ok[1:4]) == 3 and ok[-1] > 0.0
    assert sum(cells[(None, "GET", 404)][1:4]) == 1
    assert sum(cells[("/hang", "GET", 499)][1:4]) == 1
    assert traced == [("/users/{id:int}", "/users/3")]     # only the one with traceparent


def test_hist_cell_reads_and_writes_as_the_metrics_list():
    cell = HistCell([0.1, 1, 10])
    assert len(cell) == 6 and cell.bounds == (0.1, 1.0, 10.0)
    for v in (0.05, 0.1, 0.5, 20.0):
        cell.observe(v)
    assert list(cell) == [(0.1, 1.0, 10.0), 2, 1, 0, 1, 20.65]
    assert cell[-1] == 20.65 and cell[-2] == 1
    cell[1] += 3
    cell[-1] = 1.5
    assert list(cell)[1:] == [5, 1, 0, 1, 1.5]
    assert repr(cell).startswith("HistCell([(0.1, 1.0, 10.0), 5")
    with pytest.raises(IndexError):
        cell[6]
    with pytest.raises(IndexError):
        cell[-7] = 1
    with pytest.raises(TypeError):
        cell[0] = (1.0,)
    with pytest.raises(InvalidArgumentError):
        HistCell([1.0, 1.0])
    assert list(HistCell([])) == [(), 0, 0.0]


def test_observed_cells_past_a_routes_table_and_odd_methods(kind):
    """More (method, status) pairs than a route's C table holds (16), and a
    method the parser does not intern (compared by value)."""
    app = HttpServer()
    cells = {}

    def new_cell(route, method, status):
        assert (route, method, status) not in cells      # made once per series
        cell = cells[(route, method, status)] = HistCell((1.0,))
        return cell

    @app.route("/s/{code:int}", methods=["GET", "PURGE"])
    async def s(req):
        return Response(b"", req.path_params["code"])

    app.set_observer(new_cell=new_cell)
    codes = list(range(200, 220))

    async def client(port):
        data = b"".join(get(f"/s/{c}".encode()) for c in codes)
        data += b"".join(f"PURGE /s/{c} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                         for c in (200, 200, 201))
        data += b"GET /s/219 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        await exchange(port, data)

    from server_helpers import serve
    serve(kind, app, client)

    def count(method, code):
        return sum(list(cells[("/s/{code:int}", method, code)])[1:3])
    assert [count("GET", c) for c in codes] == [1] * 19 + [2]
    assert count("PURGE", 200) == 2 and count("PURGE", 201) == 1
