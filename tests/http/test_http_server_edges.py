"""HttpServer at its edges: limits and error answers, smuggling through the
server, response-splitting refusal, deadlines, graceful stop, connection
limit, streaming and files, real third-party clients, worker processes."""
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from flowcoro.http import FileResponse, HttpServer, Response, StreamingResponse

from server_helpers import KINDS, exchange, get, header, responses, serve

pytestmark = pytest.mark.timeout(90)

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)
from test_http_smuggling import CASES, SMUGGLED  # noqa: E402


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


def app_with_log():
    app = HttpServer(max_body=1000)
    seen = []

    @app.route("/", methods=["GET", "POST"])
    async def root(req):
        seen.append((req.method, req.path))
        await req.body()
        return "ok"

    @app.route("/admin", methods=["GET", "POST"])
    async def admin(req):
        seen.append((req.method, req.path))
        return "admin"

    return app, seen


@pytest.mark.parametrize("raw,status", [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n" + b"a" * 1001, 413),
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: foo, chunked\r\n\r\n", 501),
    (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\n\r\n", 400),                          # no Host
    (b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),    # TLS to a plain port
], ids=["414", "431-count", "431-size", "413-cl", "413-chunked", "501", "505", "no-host",
        "double-space", "tls-hello"])
def test_error_answers_then_close(kind, raw, status):
    app, seen = app_with_log()

    async def client(port):
        return await exchange(port, get(b"/") + raw)

    out = serve(kind, app, client)
    (h1, b1), (h2, b2) = responses(out)
    assert h1.status_code == 200 and b1 == b"ok"      # the request before is answered first
    assert h2.status_code == status and header(h2, "connection") == "close"
    assert seen == [("GET", "/")]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_smuggling_never_reaches_the_app(case):
    # Each attack whole, one byte at a time, and split in the middle: the
    # app never sees /admin, and the answer is the error for the first request.
    name, raw, code, status, heads = case
    for how in ("whole", "bytes", "halves"):
        app, seen = app_with_log()
        if how == "whole":
            pieces = [raw]
        elif how == "bytes":
            pieces = [raw[i:i + 1] for i in range(len(raw))]
        else:
            pieces = [raw[:len(raw) // 2], raw[len(raw) // 2:]]

        async def client(port, pieces=pieces):
            return await exchange(port, None, pieces=pieces)

        out = serve("epoll", app, client)
        assert ("GET", "/admin") not in seen and ("POST", "/admin") not in seen, (name, how)
        got = responses(out)
        assert 1 <= len(got) <= heads + 1, (name, how, out)
        if code == "data_after_close":
            # The last request said "close": what follows gets no answer.
            status = 200
        assert got[-1][0].status_code == status, (name, how, out)
        assert header(got[-1][0], "connection") == "close"


def test_honest_body_containing_a_request_is_just_a_body(kind):
    app, seen = app_with_log()

    async def client(port):
        raw = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" \
              % len(SMUGGLED) + SMUGGLED
        return await exchange(port, raw)

    out = responses(serve(kind, app, client), methods=["POST"])
    assert len(out) == 1 and seen == [("POST", "/")]


@pytest.mark.parametrize("headers", [
    {"x-evil": "a\r\nset-cookie: pwned=1"},
    {"x-evil": "a\nb"},
    {"x-evil": "a\x00b"},
    {"x-evil\r\nset-cookie": "1"},
    {"bad name": "1"},
    {"": "1"},
    {"x-uni": "☃"},
    [(b"x-evil", b"a\rb")],
    [(1, b"x")],
], ids=["crlf-value", "lf-value", "nul-value", "crlf-name", "space-name", "empty-name",
        "non-latin1", "cr-bytes", "int-name"])
def test_response_writer_refuses_header_injection(kind, headers, caplog):
    app = HttpServer()

    @app.route("/")
    async def root(req):
        return Response("x", headers=headers)

    @app.route("/ct")
    async def ct(req):
        return Response("x", content_type="text/plain\r\nx-evil: 1")

    @app.route("/start")
    async def start(req):
        req.start_response(200, headers)
        await req.write("never")
        return req.end_response()

    @app.route("/ok")
    async def ok(req):
        return "fine"

    async def client(port):
        return await exchange(port, get(b"/") + get(b"/ct") + get(b"/start")
                              + get(b"/ok", b"Connection: close\r\n"))

    out = serve(kind, app, client)
    assert b"pwned" not in out and b"x-evil: 1" not in out and b"never" not in out
    assert out.count(b"HTTP/1.1 500 ") == 3, out
    assert out.endswith(b"fine")
    assert "refused" in caplog.text or "failed" in caplog.text


def test_header_deadline_is_total_and_others_keep_being_served(kind):
    app = HttpServer(header_timeout=1.0)

    @app.route("/")
    async def root(req):
        return "ok"

    async def client(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        raw = get(b"/")
        served = 0
        cut_at = None
        i = 0
        # Trickle one byte every 0.2 s (each read is "recent"; only a total
        # deadline stops this) while another client is served meanwhile.
        while i < len(raw):
            try:
                writer.write(raw[i:i + 1])
                await writer.drain()
            except ConnectionError:
                break
            i += 1
            out = await exchange(port, get(b"/", b"Connection: close\r\n"))
            served += out.startswith(b"HTTP/1.1 200")
            try:
                data = await asyncio.wait_for(reader.read(1000), 0.2)
            except asyncio.TimeoutError:
                continue
            cut_at = loop.time() - t0
            break
        writer.close()
        return data, cut_at, served, i

    data, cut_at, served, sent = serve(kind, app, client)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert 0.9 <= cut_at < 3.5, cut_at
    assert served >= 3 and sent < len(get(b"/"))


def test_keepalive_idle_and_body_timeouts(kind):
    app = HttpServer(keepalive_timeout=1.0, body_timeout=1.0)

    @app.route("/", methods=["GET", "POST"])
    async def root(req):
        await req.body()
        return "ok"

    async def client(port):
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get(b"/"))
        first = await reader.readuntil(b"ok")
        t0 = loop.time()
        rest = await asyncio.wait_for(reader.read(), 5)     # idle: closed without a word
        idle = loop.time() - t0
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        t0 = loop.time()
        body = await asyncio.wait_for(reader.read(), 5)
        stalled = loop.time() - t0
        writer.close()
        return first, rest, idle, body, stalled

    first, rest, idle, body, stalled = serve(kind, app, client)
    assert first.startswith(b"HTTP/1.1 200") and rest == b""
    assert 0.9 <= idle < 3.5 and 0.9 <= stalled < 3.5
    assert body.startswith(b"HTTP/1.1 408 ")


def test_write_timeout_aborts_a_client_that_does_not_read(kind):
    app = HttpServer(write_timeout=1.0)
    state = {}

    @app.route("/big")
    async def big(req):
        async def gen():
            try:
                for _ in range(4096):
                    yield b"x" * 65536
            except BaseException as exc:
                state["stopped"] = type(exc).__name__
                raise
        return StreamingResponse(gen())

    async def client(port):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(get(b"/big"))
        for _ in range(500):
            if app.connections == 0:
                break
            await asyncio.sleep(0.02)
        sock.close()
        return app.connections

    assert serve(kind, app, client) == 0


def test_streaming_and_file_responses(kind, tmp_path):
    app = HttpServer()
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.txt").write_bytes(b"file body " * 1000)
    (tmp_path / "secret.txt").write_text("secret")
    app.static("/static", tmp_path / "site")

    @app.route("/stream")
    async def stream(req):
        async def gen():
            for i in range(5):
                await asyncio.sleep(0)
                yield f"part{i};"
        return StreamingResponse(gen(), content_type="text/plain")

    @app.route("/sized")
    async def sized(req):
        return StreamingResponse([b"abc", b"def"], content_length=6)

    @app.route("/file")
    async def file(req):
        return FileResponse(tmp_path / "site" / "a.txt")

    @app.route("/missing")
    async def missing(req):
        return FileResponse(tmp_path / "nope.bin")

    @app.route("/direct")
    async def direct(req):
        req.start_response(200, [("content-type", "text/plain")])
        for i in range(3):
            await req.write(b"d%d" % i)
        return req.end_response()

    async def client(port):
        a = await exchange(port, get(b"/stream") + get(b"/sized") + get(b"/file")
                           + get(b"/missing") + get(b"/direct") + get(b"/static/a.txt")
                           + get(b"/static/../secret.txt") + get(b"/static/%2e%2e/secret.txt")
                           + b"HEAD /file HTTP/1.1\r\nHost: t\r\n\r\n"
                           + get(b"/", b"Connection: close\r\n"))
        b = await exchange(port, get(b"/stream", version=b"HTTP/1.0"))
        return a, b

    a, b = serve(kind, app, client)
    out = responses(a, methods=["GET"] * 8 + ["HEAD", "GET"])
    codes = [h.status_code for h, _ in out]
    assert codes == [200, 200, 200, 404, 200, 200, 404, 404, 200, 404]
    assert out[0][1] == b"part0;part1;part2;part3;part4;" and out[0][0].chunked
    assert out[1][1] == b"abcdef" and header(out[1][0], "content-length") == "6"
    assert out[2][1] == b"file body " * 1000 and header(out[2][0], "content-type") == "text/plain"
    assert out[4][1] == b"d0d1d2" and out[4][0].chunked
    assert out[5][1] == b"file body " * 1000
    assert out[8][1] == b"" and header(out[8][0], "content-length") == "10000"
    assert b"secret" not in a
    (h, body), = responses(b)
    assert body == b"part0;part1;part2;part3;part4;" and header(h, "connection") == "close"


def test_streaming_failure_cuts_the_connection(kind, caplog):
    app = HttpServer()

    @app.route("/broken")
    async def broken(req):
        async def gen():
            yield b"partial"
            raise RuntimeError("generator broke")
        return StreamingResponse(gen())

    async def client(port):
        return await exchange(port, get(b"/broken"))

    out = serve(kind, app, client)
    assert b"partial" in out and not out.endswith(b"0\r\n\r\n")
    assert "generator broke" in caplog.text


def test_graceful_stop_finishes_in_flight_and_closes_idle(kind):
    app = HttpServer()
    started = asyncio.Event

    @app.route("/slow")
    async def slow(req):
        await asyncio.sleep(0.3)
        return "finished"

    @app.route("/")
    async def root(req):
        return "ok"

    async def main():
        await app.listen("127.0.0.1", 0)
        port = app.port
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        w1.write(get(b"/slow"))
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(get(b"/"))
        await r2.readuntil(b"ok")                        # now idle keep-alive
        await asyncio.sleep(0.05)
        stopping = asyncio.ensure_future(app.stop(grace=5))
        idle_rest = await asyncio.wait_for(r2.read(), 2)     # closed at once
        slow = await asyncio.wait_for(r1.read(), 2)           # answered, then closed
        await stopping
        try:
            await asyncio.open_connection("127.0.0.1", port)
            refused = False
        except OSError:
            refused = True
        w1.close()
        w2.close()
        return idle_rest, slow, refused

    import helpers
    idle_rest, slow, refused = helpers.run_with(kind, main())
    assert idle_rest == b""
    (h, body), = responses(slow)
    assert body == b"finished" and header(h, "connection") == "close"
    assert refused


def test_concurrent_stops_both_return_when_the_last_connection_goes(kind):
    """Two stop() calls at once (a signal handler and the application, say)
    both wait for the in-flight request, not for the 60 s grace, and the
    shutdown hooks run once."""
    app = HttpServer()
    shutdowns = []

    @app.on_shutdown
    async def bye():
        shutdowns.append(1)

    @app.route("/slow")
    async def slow(req):
        await asyncio.sleep(0.2)
        return "finished"

    async def main():
        await app.listen("127.0.0.1", 0)
        r, w = await asyncio.open_connection("127.0.0.1", app.port)
        w.write(get(b"/slow"))
        await asyncio.sleep(0.05)
        await asyncio.wait_for(asyncio.gather(app.stop(grace=60), app.stop(grace=60)), 10)
        data = await asyncio.wait_for(r.read(), 2)
        w.close()
        return data

    import helpers
    (h, body), = responses(helpers.run_with(kind, main()))
    assert body == b"finished"
    assert shutdowns == [1]


def test_grace_period_expiry_cancels_handlers(kind):
    app = HttpServer()
    state = {}

    @app.route("/hang")
    async def hang(req):
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise

    async def main():
        await app.listen("127.0.0.1", 0)
        r, w = await asyncio.open_connection("127.0.0.1", app.port)
        w.write(get(b"/hang"))
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        await app.stop(grace=0.3)
        took = time.monotonic() - t0
        data = await asyncio.wait_for(r.read(), 2)
        w.close()
        return took, data

    import helpers
    took, data = helpers.run_with(kind, main())
    assert took < 2 and state.get("cancelled") and data == b""


def test_max_connections_pauses_accepting(kind):
    app = HttpServer(max_connections=2)

    @app.route("/")
    async def root(req):
        return "ok"

    async def main():
        await app.listen("127.0.0.1", 0)
        port = app.port
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        for r, w in conns:
            w.write(get(b"/"))
            await r.readuntil(b"ok")
        r3, w3 = await asyncio.open_connection("127.0.0.1", port)    # kernel backlog
        w3.write(get(b"/", b"Connection: close\r\n"))
        try:
            early = await asyncio.wait_for(r3.read(), 0.3)
        except asyncio.TimeoutError:
            early = None
        conns[0][1].close()
        late = await asyncio.wait_for(r3.read(), 5)
        conns[1][1].close()
        w3.close()
        await app.stop()
        return early, late

    import helpers
    early, late = helpers.run_with(kind, main())
    assert early is None and late.startswith(b"HTTP/1.1 200")


# -- real third-party clients -------------------------------------------------
def hello_app():
    app = HttpServer()

    @app.route("/")
    async def root(req):
        return "Hello, World!"

    @app.route("/echo", methods=["POST"])
    async def echo(req):
        return {"len": len(await req.body()), "ct": req.headers.get("content-type")}

    @app.route("/stream")
    async def stream(req):
        async def gen():
            for i in range(3):
                yield b"chunk%d\n" % i
        return StreamingResponse(gen())

    return app


def test_aiohttp_client(kind):
    aiohttp = pytest.importorskip("aiohttp")

    async def client(port):
        async with aiohttp.ClientSession() as s:
            out = []
            for _ in range(3):     # reuses the keep-alive connection
                async with s.get(f"http://127.0.0.1:{port}/") as r:
                    out.append((r.status, await r.text()))
            async with s.post(f"http://127.0.0.1:{port}/echo", json={"a": 1}) as r:
                out.append((r.status, await r.json()))
            async with s.get(f"http://127.0.0.1:{port}/stream") as r:
                out.append((r.status, await r.read()))
            return out

    out = serve(kind, hello_app(), client)
    assert out[:3] == [(200, "Hello, World!")] * 3
    assert out[3] == (200, {"len": 8, "ct": "application/json"})
    assert out[4] == (200, b"chunk0\nchunk1\nchunk2\n")


def test_httpx_client(kind):
    httpx = pytest.importorskip("httpx")

    async def client(port):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            rs = await asyncio.gather(*[c.get("/") for _ in range(20)])
            big = await c.post("/echo", content=b"z" * 100000,
                               headers={"content-type": "application/x-test"})
            head = await c.head("/")
            return [r.text for r in rs], big.json(), head.headers["content-length"]

    texts, big, length = serve(kind, hello_app(), client)
    assert texts == ["Hello, World!"] * 20
    assert big == {"len": 100000, "ct": "application/x-test"} and length == "13"


def test_h11_strict_client_accepts_every_response(kind):
    h11 = pytest.importorskip("h11")

    def talk(port, method, target, body=b""):
        conn = h11.Connection(h11.CLIENT)
        sock = socket.create_connection(("127.0.0.1", port))
        headers = [("Host", "t"), ("Connection", "close")]
        if body:
            headers.append(("Content-Length", str(len(body))))
        sock.sendall(conn.send(h11.Request(method=method, target=target, headers=headers)))
        if body:
            sock.sendall(conn.send(h11.Data(data=body)))
        sock.sendall(conn.send(h11.EndOfMessage()))
        events, data = [], b""
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
                continue
            events.append(ev)
            if isinstance(ev, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
            if isinstance(ev, h11.Data):
                data += ev.data
        sock.close()
        return events[0].status_code, data

    async def client(port):
        loop = asyncio.get_running_loop()
        return [await loop.run_in_executor(None, talk, port, m, t, b)
                for m, t, b in (("GET", "/", b""), ("POST", "/echo", b"xyz"),
                                ("GET", "/stream", b""), ("GET", "/missing", b""))]

    out = serve(kind, hello_app(), client)
    assert out[0] == (200, b"Hello, World!")
    assert out[1][0] == 200 and out[2] == (200, b"chunk0\nchunk1\nchunk2\n") and out[3][0] == 404


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl(kind):
    async def client(port):
        # Not under the test's LD_PRELOAD (make asan-test preloads libasan).
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        proc = await asyncio.create_subprocess_exec(
            "curl", "-sS", "-i", f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port}/stream",
            stdout=subprocess.PIPE, env=env)
        out, _ = await proc.communicate()
        return out

    out = serve(kind, hello_app(), client)
    assert b"Hello, World!" in out and b"chunk2" in out


# -- worker processes ---------------------------------------------------------
WORKER_APP = """
import os, sys
sys.path.insert(0, {src!r})
from flowcoro.http import HttpServer
app = HttpServer()
@app.route("/")
async def pid(request):
    return str(os.getpid())
app.run("127.0.0.1", {port}, workers={workers})
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")
def test_workers_share_one_port_and_stop_on_sigterm(tmp_path):
    port = free_port()
    src = os.path.dirname(os.path.dirname(HERE))
    script = tmp_path / "workers_app.py"
    script.write_text(WORKER_APP.format(src=src, port=port, workers=2))
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE)
    try:
        pids = set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(pids) < 2:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.sendall(get(b"/", b"Connection: close\r\n"))
                    data = b""
                    while chunk := s.recv(4096):
                        data += chunk
                pids.add(data.rsplit(b"\r\n\r\n", 1)[1])
            except OSError:
                time.sleep(0.05)
        assert len(pids) == 2, pids
        assert str(proc.pid).encode() not in pids
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(15)
    assert rc == 0, proc.stderr.read().decode()
