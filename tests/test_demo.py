"""The demo service, the CLI and the examples, run as a user runs them.

Each test starts a real process (``python -m flowcoro ...`` or
``python examples/X.py``) and talks to it over HTTP or TCP, so what is
tested is the whole path: argument parsing, the loop, FlowCoro's HTTP server,
run_in_executor on SQLite, and shutdown on SIGINT / SIGTERM.  coverage.py
measures those processes too ([tool.coverage.run] patch = ["subprocess"]);
they are stopped with a signal, never killed, so that their data is saved.
"""
import asyncio
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import flowcoro

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# The subprocesses import the same flowcoro as this test run.
PKG_PARENT = str(Path(flowcoro.__file__).resolve().parent.parent)
BANNER = re.compile(r"listening on http://([\d.]+):(\d+)/")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PKG_PARENT] + [p for p in [env.get("PYTHONPATH")] if p])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _default_sigint():
    # A process started in the background by a non-interactive shell inherits
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler;
    # give the child the disposition a terminal user's process has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _spawn(args):
    return subprocess.Popen([sys.executable] + args, cwd=ROOT, env=_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_default_sigint)


def _wait_banner(proc):
    """Read output lines until the 'listening on' banner; return (host, port, lines)."""
    lines = []
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = BANNER.search(line)
        if m:
            return m.group(1), int(m.group(2)), lines
    proc.kill()
    rest = proc.communicate()[0]
    pytest.fail(f"no banner; output:\n{''.join(lines)}{rest}")


class Api:
    """A blocking HTTP/1.1 client on one keep-alive connection (http.client)."""

    def __init__(self, host, port):
        self.conn = http.client.HTTPConnection(host, port, timeout=10)

    def call(self, method, path, body=None, headers=None):
        """Send one request; return (status, headers dict, body: JSON, str or None)."""
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        self.conn.request(method, path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        raw = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if raw and hdrs.get("content-type", "").startswith("application/json"):
            data = json.loads(raw)
        else:
            data = raw.decode() if raw else None
        return r.status, hdrs, data

    def close(self):
        self.conn.close()


@contextlib.contextmanager
def _running(args):
    """Start a server process, wait for its banner; kill it on the way out, whatever happened."""
    proc = _spawn(args)
    try:
        host, port, _ = _wait_banner(proc)
        yield proc, host, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if not proc.stdout.closed:
            proc.stdout.close()


@pytest.fixture
def demo(tmp_path):
    """A demo server on a free port with its database in tmp_path; yields (proc, host, port)."""
    db = tmp_path / "demo.sqlite3"
    with _running(["-m", "flowcoro", "demo", "--host", "127.0.0.1", "--port", "0", "--db", str(db)]) as d:
        yield d


def _stop(proc, sig=signal.SIGINT):
    proc.send_signal(sig)
    try:
        out = proc.communicate(timeout=STOP_TIMEOUT)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        out = proc.communicate()[0]
        pytest.fail(f"did not stop within {STOP_TIMEOUT}s of {sig!r}; output:\n{out}")
    return proc.returncode, out


def test_demo_rest_api(demo):
    proc, host, port = demo
    api = Api(host, port)
    try:
        # The index page lists the endpoints, with curl lines for this host.
        status, hdrs, page = api.call("GET", "/")
        assert status == 200 and hdrs["content-type"].startswith("text/html")
        for path in ("/healthz", "/api/items", "/api/items/{id}"):
            assert f"<code>{path}</code>" in page
        assert f"curl http://{host}:{port}/healthz" in page
        status, _, health = api.call("GET", "/healthz")
        assert status == 200
        assert health["status"] == "ok" and health["items"] == 0
        assert health["flowcoro"] == flowcoro.__version__ and health["loop"] == "Loop"

        # Create: 201, Location, the item with its id.
        status, hdrs, item = api.call("POST", "/api/items", {"name": "apple", "value": "red"})
        assert status == 201, item
        assert item == {"id": item["id"], "name": "apple", "value": "red"}
        assert hdrs["location"] == f"/api/items/{item['id']}"
        apple = item["id"]
        status, _, item = api.call("POST", "/api/items", {"name": "apricot"})
        assert status == 201 and item["value"] == ""
        apricot = item["id"]
        assert api.call("POST", "/api/items", {"name": "banana", "value": "yellow"})[0] == 201
        assert api.call("POST", "/api/items", {"name": "100%", "value": "wild"})[0] == 201

        # Read one, list, filter, limit.
        status, _, item = api.call("GET", f"/api/items/{apricot}")
        assert (status, item) == (200, {"id": apricot, "name": "apricot", "value": ""})
        assert api.call("GET", hdrs["location"])[2]["name"] == "apple"
        status, _, listing = api.call("GET", "/api/items")
        assert status == 200 and listing["count"] == 4
        assert [i["name"] for i in listing["items"]] == ["apple", "apricot", "banana", "100%"]
        assert [i["name"] for i in api.call("GET", "/api/items?prefix=ap")[2]["items"]] == [
            "apple", "apricot"]
        assert api.call("GET", "/api/items?prefix=%25")[2]["count"] == 0    # no LIKE wildcard leak
        assert [i["name"] for i in api.call("GET", "/api/items?limit=1")[2]["items"]] == ["apple"]
        assert api.call("GET", "/api/items?limit=many")[0] == 400
        assert api.call("GET", "/api/items?limit=0")[0] == 400

        # Update, conflicts, validation.
        status, _, item = api.call("PUT", f"/api/items/{apple}", {"name": "apple", "value": "green"})
        assert (status, item) == (200, {"id": apple, "name": "apple", "value": "green"})
        status, _, err = api.call("PUT", f"/api/items/{apple}", {"name": "banana"})
        assert status == 409 and "banana" in err["error"]
        assert api.call("POST", "/api/items", {"name": "apple"})[0] == 409
        assert api.call("PUT", "/api/items/9999", {"name": "ghost"})[0] == 404
        status, _, err = api.call("POST", "/api/items", "{not json")
        assert status == 400 and "not JSON" in err["error"]
        assert api.call("PUT", f"/api/items/{apple}", b"\xff\xfe")[0] == 400
        for bad in ([1, 2], {"name": ""}, {"name": 5}, {"value": "no name"},
                    {"name": "x", "value": 3}, {"name": "x", "colour": "red"},
                    {"name": "n" * 201}):
            status, _, err = api.call("POST", "/api/items", bad)
            assert status == 422, (bad, status, err)
            assert err["error"]
        assert api.call("POST", "/api/items", "x" * (64 * 1024 + 1))[0] == 413
        api.close()
        api = Api(host, port)               # 413 closes its connection

        # Delete, then it is gone; unknown ids, paths and methods.
        status, _, body = api.call("DELETE", f"/api/items/{apple}")
        assert (status, body) == (204, None)
        assert api.call("DELETE", f"/api/items/{apple}")[0] == 404
        status, _, err = api.call("GET", f"/api/items/{apple}")
        assert status == 404 and err == {"error": "no such item"}
        assert api.call("GET", "/api/items/not-a-number")[0] == 404
        assert api.call("GET", "/nowhere")[0] == 404
        status, hdrs, _ = api.call("PATCH", f"/api/items/{apricot}")
        assert status == 405 and "PUT" in hdrs["allow"]
        status, hdrs, body = api.call("HEAD", f"/api/items/{apricot}")
        assert status == 200 and body is None and int(hdrs["content-length"]) > 0
        assert api.call("GET", "/healthz")[2]["items"] == 3
    finally:
        api.close()
    rc, out = _stop(proc)
    assert rc == 0, out
    assert "POST /api/items 201" in out and "DELETE /api/items/" in out   # the access log
    assert "stopped" in out and "Traceback" not in out


def test_demo_serves_clients_concurrently(demo):
    import httpx

    proc, host, port = demo

    async def main():
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", limits=limits,
                                     timeout=10) as c:
            created = await asyncio.gather(*(
                c.post("/api/items", json={"name": f"k{i:02d}", "value": f"v{i}"})
                for i in range(40)))
            assert all(r.status_code == 201 for r in created)
            ids = {r.json()["id"] for r in created}
            assert len(ids) == 40
            got = await asyncio.gather(*(c.get(f"/api/items/{i}") for i in ids))
            assert sorted(r.json()["value"] for r in got) == sorted(f"v{i}" for i in range(40))
            assert (await c.get("/api/items", params={"prefix": "k"})).json()["count"] == 40

    asyncio.run(main())
    assert _stop(proc)[0] == 0


def test_demo_sigint_shuts_down_gracefully_with_clients_connected(demo):
    proc, host, port = demo
    a, b = Api(host, port), Api(host, port)
    try:
        assert a.call("POST", "/api/items", {"name": "x"})[0] == 201
        assert b.call("GET", "/healthz")[0] == 200
        # Both connections are idle keep-alive ones now: shutdown closes them.
        rc, out = _stop(proc, signal.SIGINT)
        for api in (a, b):
            with pytest.raises((http.client.HTTPException, ConnectionError)):
                api.call("GET", "/healthz")
    finally:
        a.close()
        b.close()
    assert rc == 0, out
    assert "Traceback" not in out, out
    assert "shutting down" in out and "stopped" in out
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=2).close()


def test_demo_sigterm_finishes_the_request_in_flight(demo):
    proc, host, port = demo
    # A request whose body is still arriving when SIGTERM comes is answered
    # (graceful drain), with "connection: close"; then the process exits 0.
    body = json.dumps({"name": "late", "value": "arrives after the signal"}).encode()
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"POST /api/items HTTP/1.1\r\nHost: demo\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body[:5])
        time.sleep(0.1)                 # the handler is waiting for the rest
        proc.send_signal(signal.SIGTERM)
        assert "shutting down" in proc.stdout.readline()
        s.sendall(body[5:])
        s.settimeout(3)                 # the answer comes at once (not after the grace period)
        reply = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 201 Created\r\n"), reply
    assert b"connection: close" in reply.lower()
    assert reply.endswith(b'"name":"late","value":"arrives after the signal"}')
    # The one SIGTERM above stops it: wait for the exit (a second signal
    # could land after the handlers were removed and kill it).
    out = proc.communicate(timeout=STOP_TIMEOUT)[0]
    rc = proc.returncode
    assert rc == 0, out
    assert "stopped" in out and "Traceback" not in out


def test_demo_db_file_persists_across_restarts(tmp_path):
    db = tmp_path / "items.sqlite3"
    for round_ in range(2):
        with _running(["examples/demo.py", "--port", "0", "--db", str(db)]) as (proc, host, port):
            api = Api(host, port)
            try:
                if round_ == 0:
                    assert api.call("POST", "/api/items", {"name": "survivor", "value": "yes"})[0] == 201
                else:
                    items = api.call("GET", "/api/items")[2]["items"]
                    assert [(i["name"], i["value"]) for i in items] == [("survivor", "yes")]
            finally:
                api.close()
            assert _stop(proc)[0] == 0


def test_demo_port_in_use_is_a_clean_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "flowcoro", "demo", "--port", str(port)],
                           cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r
    assert "Traceback" not in r.stderr, r.stderr
    assert f"flowcoro demo: cannot serve on 127.0.0.1:{port}" in r.stderr, r.stderr


@pytest.mark.parametrize("what", ["missing directory", "not a database"])
def test_demo_unusable_db_path_is_a_clean_error(tmp_path, what):
    if what == "missing directory":
        db = tmp_path / "no" / "such" / "dir" / "items.sqlite3"
    else:
        db = tmp_path / "garbage.sqlite3"
        db.write_bytes(b"this is not an SQLite database file" * 100)
    r = subprocess.run([sys.executable, "-m", "flowcoro", "demo", "--port", "0", "--db", str(db)],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r
    assert "Traceback" not in r.stderr, r.stderr
    assert f"flowcoro demo: cannot open the database {db}" in r.stderr, r.stderr


def test_demo_second_sigint_during_shutdown_exits_130(tmp_path):
    # A request in flight keeps the graceful drain waiting; a second Ctrl-C
    # does not wait for it.
    with _running(["-m", "flowcoro", "demo", "--port", "0"]) as (proc, host, port):
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(b"POST /api/items HTTP/1.1\r\nHost: demo\r\nContent-Length: 10\r\n\r\n{")
            time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            assert "shutting down" in proc.stdout.readline()
            rc, out = _stop(proc, signal.SIGINT)
    assert rc == 130, out



def test_demo_chat_over_websocket(demo):
    """The chat protocol end to end, with the websockets library as the client."""
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed

    proc, host, port = demo
    url = f"ws://{host}:{port}/ws/chat"

    async def recv(ws):
        return json.loads(await asyncio.wait_for(ws.recv(), 10))

    api = Api(host, port)
    try:
        page = api.call("GET", "/chat")
        assert page[0] == 200 and page[1]["content-type"].startswith("text/html")
        assert "new WebSocket(" in page[2] and "/ws/chat" in page[2]
        assert 'href="/chat"' in api.call("GET", "/")[2]
    finally:
        api.close()

    async def main():
        ann = await ws_connect(url, proxy=None)
        bob = await ws_connect(url, proxy=None)
        cy = await ws_connect(url, proxy=None)
        # Errors are answered to the sender only; the connection stays open.
        for bad, why in [("not json", "not JSON"), (b"\x00", "send JSON text messages"),
                         ("[1]", "type must be join, message or leave"),
                         ('{"type": "dance"}', "type must be join, message or leave"),
                         ('{"type": "message", "text": "x"}', "join a room first"),
                         ('{"type": "join", "room": "r", "name": " "}', "name: 1 to 32 characters"),
                         ('{"type": "join", "room": "r", "name": "' + "n" * 33 + '"}',
                          "name: 1 to 32 characters"),
                         ('{"type": "join", "room": 5, "name": "ann"}', "room: 1 to 64 characters")]:
            await ann.send(bad)
            assert await recv(ann) == {"type": "error", "text": why}, bad

        await ann.send(json.dumps({"type": "join", "room": " r1 ", "name": " ann "}))
        assert await recv(ann) == {"type": "join", "room": "r1", "name": "ann",
                                   "text": "ann joined r1"}
        await bob.send(json.dumps({"type": "join", "room": "r1", "name": "bob"}))
        joined = {"type": "join", "room": "r1", "name": "bob",
                  "text": "bob joined r1; also here: ann"}
        assert await recv(bob) == joined and await recv(ann) == joined
        await cy.send(json.dumps({"type": "join", "room": "r2", "name": "cy"}))
        assert (await recv(cy))["text"] == "cy joined r2"

        await ann.send(json.dumps({"type": "message", "text": "hi <all> é€𝄞"}))
        said = {"type": "message", "room": "r1", "name": "ann", "text": "hi <all> é€𝄞"}
        assert await recv(ann) == said and await recv(bob) == said
        await ann.send(json.dumps({"type": "message", "text": ""}))
        assert await recv(ann) == {"type": "error", "text": "text: 1 to 2000 characters"}
        await ann.send(json.dumps({"type": "message", "text": "x" * 2001}))
        assert (await recv(ann))["type"] == "error"

        # Moving to another room: the old room hears "left", the new one "joined".
        await bob.send(json.dumps({"type": "join", "room": "r2", "name": "bob"}))
        assert await recv(ann) == {"type": "leave", "room": "r1", "name": "bob", "text": "bob left"}
        moved = {"type": "join", "room": "r2", "name": "bob", "text": "bob joined r2; also here: cy"}
        assert await recv(bob) == moved and await recv(cy) == moved
        # cy never saw room r1's traffic: its next message is bob's in r2.
        await bob.send(json.dumps({"type": "message", "text": "in r2"}))
        assert (await recv(cy))["text"] == "in r2" and (await recv(bob))["text"] == "in r2"

        # An explicit leave, then a disconnect: both tell the room.
        await cy.send(json.dumps({"type": "leave"}))
        assert (await recv(bob))["text"] == "cy left"
        await cy.send(json.dumps({"type": "message", "text": "x"}))
        assert (await recv(cy))["text"] == "join a room first"
        await bob.close()
        await cy.close()
        # A message too big for the chat is refused with 1009.
        await ann.send("x" * 20000)
        try:
            await asyncio.wait_for(ann.recv(), 10)
        except ConnectionClosed as exc:
            assert exc.rcvd.code == 1009
        else:
            pytest.fail("a 20 kB chat message was not refused")

        # A connection still open at shutdown is closed with 1001.
        last = await ws_connect(url, proxy=None)
        await last.send(json.dumps({"type": "join", "room": "r9", "name": "zed"}))
        await recv(last)
        proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(last.recv(), 10)
        except ConnectionClosed as exc:
            return exc.rcvd.code
        return None

    assert asyncio.run(main()) == 1001
    out = proc.communicate(timeout=STOP_TIMEOUT)[0]
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert "GET /chat 200" in out and "stopped" in out


def test_cli_version_and_info():
    r = subprocess.run([sys.executable, "-m", "flowcoro", "--version"], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"flowcoro {flowcoro.__version__}", r
    r = subprocess.run([sys.executable, "-m", "flowcoro", "info"], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r
    assert re.search(r"^backends \S*poll", r.stdout, re.M), r.stdout


def test_cli_main_without_command_prints_help(capsys):
    from flowcoro.cli import main
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["hello.py", "timers.py"])
def test_example_runs(name):
    r = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr


def test_example_echo_server_selftest():
    r = subprocess.run([sys.executable, str(EXAMPLES / "echo_server.py"), "--port", "0", "--selftest"],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "echoed 3 lines: ok" in r.stdout


def test_demo_exposes_metrics_and_readiness(demo):
    prometheus_client = pytest.importorskip("prometheus_client")
    from prometheus_client.parser import text_string_to_metric_families

    proc, host, port = demo
    api = Api(host, port)
    try:
        status, _, ready = api.call("GET", "/readyz")
        assert status == 200 and ready["status"] == "pass", ready
        assert api.call("GET", "/api/items")[0] == 200
        assert api.call("GET", "/no/such/path")[0] == 404
        status, hdrs, text = api.call("GET", "/metrics")
        assert status == 200 and hdrs["content-type"].startswith("text/plain")
    finally:
        api.close()
    counts = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "http_server_request_duration_seconds_count":
                counts[(s.labels["route"], s.labels["status"])] = s.value
    assert counts[("/api/items", "200")] == 1 and counts[("<unmatched>", "404")] == 1
    assert counts[("/readyz", "200")] == 1
