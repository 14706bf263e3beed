"""ASGI WebSocket (``flowcoro serve``'s ASGIServer) with real Starlette endpoints.

A Starlette app with WebSocket routes runs on
:class:`flowcoro.http.asgi.ASGIServer` in this process (port 0), on
FlowCoro's epoll loop and on the stdlib asyncio loop; the clients are the
``websockets`` library (an independent implementation), FlowCoro's own
client and raw sockets (for the exact HTTP answer to a refused upgrade).

Covered: accept with a subprotocol, text and bytes echo, the scope (path
parameters, query string, offered subprotocols), an app-initiated close
with code and reason, a client-initiated close arriving as
``websocket.disconnect`` with the client's code, close before accept and a
missing route answered 403, an app exception after accept closing with
1011, and server stop closing open sessions with 1001.
"""
import asyncio
import contextlib

import pytest

from flowcoro.errors import WebSocketClosed, WebSocketHandshakeError
from flowcoro.http.asgi import ASGIServer
from flowcoro.websocket import connect

import helpers

websockets = pytest.importorskip("websockets")
starlette = pytest.importorskip("starlette")
from starlette.applications import Starlette  # noqa: E402
from starlette.endpoints import WebSocketEndpoint  # noqa: E402
from starlette.routing import WebSocketRoute  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402
from websockets.asyncio.client import connect as ws_connect  # noqa: E402

pytestmark = pytest.mark.timeout(30)

KINDS = ("epoll", "asyncio")

UPGRADE = (b"GET %s HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


@pytest.fixture(params=KINDS)
def kind(request):
    """'epoll' (FlowCoro) or 'asyncio' (the reference)."""
    return request.param


def make_app(events):
    """The Starlette app; ``events`` collects what the endpoints saw."""

    async def echo(websocket):
        offered = websocket.scope["subprotocols"]
        await websocket.accept(subprotocol="chat.v1" if "chat.v1" in offered else None)
        events.append(("scope", websocket.path_params.get("name"),
                       websocket.query_params.get("q"), offered))
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    events.append(("disconnect", message["code"]))
                    return
                if message.get("text") == "close please":
                    await websocket.close(code=4001, reason="asked to close")
                    events.append(("closed by app",))
                    return
                if message.get("text") is not None:
                    await websocket.send_text(message["text"])
                else:
                    await websocket.send_bytes(message["bytes"])
        except WebSocketDisconnect as exc:     # pragma: no cover - receive() returns it above
            events.append(("disconnect", exc.code))

    async def deny(websocket):
        await websocket.close(code=1008)       # before accept: the handshake is refused

    async def early_boom(websocket):
        raise RuntimeError("endpoint failed before accept")

    async def boom(websocket):
        await websocket.accept()
        await websocket.receive_text()
        raise RuntimeError("endpoint failed after accept")

    class Counter(WebSocketEndpoint):
        encoding = "json"

        async def on_connect(self, websocket):
            await websocket.accept()

        async def on_receive(self, websocket, data):
            await websocket.send_json({"n": data["n"] + 1})

        async def on_disconnect(self, websocket, close_code):
            events.append(("endpoint disconnect", close_code))

    return Starlette(routes=[
        WebSocketRoute("/echo", echo),
        WebSocketRoute("/echo/{name}", echo),
        WebSocketRoute("/deny", deny),
        WebSocketRoute("/boom", boom),
        WebSocketRoute("/early-boom", early_boom),
        WebSocketRoute("/count", Counter),
    ])


@contextlib.asynccontextmanager
async def serving(events):
    srv = ASGIServer(make_app(events), lifespan="off")
    await srv.listen("127.0.0.1", 0)
    try:
        yield srv, f"ws://127.0.0.1:{srv.port}"
    finally:
        await srv.stop(grace=2)


def run(kind, fn):
    events = []

    async def main():
        async with serving(events) as (srv, base):
            return await asyncio.wait_for(fn(srv, base, events), 20)

    return helpers.run_with(kind, main()), events


async def wait_for_event(events, pred, timeout=5.0):
    """Wait until an event matching ``pred`` is recorded (the app runs concurrently)."""
    async def poll():
        while not any(pred(e) for e in events):
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), timeout)
    return [e for e in events if pred(e)]


def test_accept_with_subprotocol_and_echo_text_and_bytes(kind):
    async def client(srv, base, events):
        async with ws_connect(base + "/echo/room7?q=x%20y", subprotocols=["chat.v0", "chat.v1"],
                              proxy=None) as ws:
            sub = ws.subprotocol
            out = []
            for msg in ("hello", "é€𝄞" * 500, b"\x00\xff" * 70000, b""):
                await ws.send(msg)
                out.append(await ws.recv() == msg)
        async with ws_connect(base + "/echo", proxy=None) as ws:       # no subprotocol offered
            none_sub = ws.subprotocol
            await ws.send("again")
            out.append(await ws.recv() == "again")
        return sub, none_sub, out

    (sub, none_sub, out), events = run(kind, client)
    assert sub == "chat.v1" and none_sub is None
    assert out == [True] * 5
    assert ("scope", "room7", "x y", ["chat.v0", "chat.v1"]) in events


def test_flowcoro_client_against_a_starlette_endpoint(kind):
    async def client(srv, base, events):
        async with connect(base + "/count") as ws:
            replies = []
            for n in (1, 41):
                await ws.send('{"n": %d}' % n)
                replies.append(await ws.receive())
        return replies

    replies, events = run(kind, client)
    assert replies == ['{"n":2}', '{"n":42}']
    assert ("endpoint disconnect", 1000) in events


def test_app_initiated_close_carries_code_and_reason(kind):
    async def client(srv, base, events):
        async with ws_connect(base + "/echo", proxy=None) as ws:
            await ws.send("close please")
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
        mine = await connect(base + "/echo")
        await mine.send("close please")
        with pytest.raises(WebSocketClosed) as info2:
            await mine.receive()
        await mine.wait_closed()
        return info.value.rcvd, info2.value

    (rcvd, mine), events = run(kind, client)
    assert (rcvd.code, rcvd.reason) == (4001, "asked to close")
    assert (mine.code, mine.reason) == (4001, "asked to close")
    assert events.count(("closed by app",)) == 2


@pytest.mark.parametrize("code", [1000, 1001, 4002])
def test_client_initiated_close_is_websocket_disconnect_with_its_code(kind, code):
    async def client(srv, base, events):
        async with ws_connect(base + "/echo", proxy=None) as ws:
            await ws.send("one")
            assert await ws.recv() == "one"
            await ws.close(code=code, reason="client leaves")
        return await wait_for_event(events, lambda e: e[0] == "disconnect")

    seen, _ = run(kind, client)
    assert seen == [("disconnect", code)]


@pytest.mark.parametrize("how, code", [("close frame without code", 1005),
                                       ("TCP dropped", 1006)])
def test_disconnect_without_code_or_without_close_frame(kind, how, code):
    async def client(srv, base, events):
        r, w = await asyncio.open_connection("127.0.0.1", srv.port)
        w.write(UPGRADE % b"/echo")
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101 ")
        await wait_for_event(events, lambda e: e[0] == "scope")
        if code == 1005:
            w.write(bytes([0x88, 0x80, 1, 2, 3, 4]))      # masked close, empty payload
            assert await asyncio.wait_for(r.read(), 5) == bytes([0x88, 0x00])
        w.close()
        return await wait_for_event(events, lambda e: e[0] == "disconnect")

    seen, _ = run(kind, client)
    assert seen == [("disconnect", code)]


def test_endpoint_class_on_disconnect_gets_the_code(kind):
    async def client(srv, base, events):
        async with ws_connect(base + "/count", proxy=None) as ws:
            await ws.send('{"n": 0}')
            assert await ws.recv() == '{"n":1}'
            await ws.close(code=4100)
        return await wait_for_event(events, lambda e: e[0] == "endpoint disconnect")

    seen, _ = run(kind, client)
    assert seen == [("endpoint disconnect", 4100)]


def test_close_before_accept_and_unknown_route_are_403(kind):
    async def raw(port, path):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(UPGRADE % path)
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
        w.close()
        return head

    async def client(srv, base, events):
        heads = [await raw(srv.port, p) for p in (b"/deny", b"/nowhere", b"/early-boom")]
        with pytest.raises(websockets.InvalidStatus) as info:
            async with ws_connect(base + "/deny", proxy=None):
                pass        # pragma: no cover - refused
        with pytest.raises(WebSocketHandshakeError) as info2:
            await connect(base + "/deny")
        return heads, info.value.response.status_code, info2.value.status

    (heads, status, status2), _ = run(kind, client)
    for head in heads[:2]:
        assert head.startswith(b"HTTP/1.1 403 "), head
    assert heads[2].startswith(b"HTTP/1.1 500 "), heads[2]      # raised before accept
    assert status == 403 and status2 == 403


def test_app_exception_after_accept_closes_with_1011(kind):
    async def client(srv, base, events):
        async with ws_connect(base + "/boom", proxy=None) as ws:
            await ws.send("trigger")
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
        # The server goes on serving.
        async with ws_connect(base + "/echo", proxy=None) as ws:
            await ws.send("still here")
            after = await ws.recv()
        return info.value.rcvd.code, after

    (code, after), _ = run(kind, client)
    assert code == 1011 and after == "still here"


def test_server_stop_closes_open_sessions_with_1001(kind):
    events = []

    async def main():
        srv = ASGIServer(make_app(events), lifespan="off")
        await srv.listen("127.0.0.1", 0)
        ws = await ws_connect(f"ws://127.0.0.1:{srv.port}/echo", proxy=None)
        await ws.send("x")
        await ws.recv()
        await srv.stop(grace=2)
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
        await wait_for_event(events, lambda e: e[0] == "disconnect")
        return info.value.rcvd.code

    code = helpers.run_with(kind, main())
    assert code == 1001
    assert ("disconnect", 1001) in events


def test_websocket_settings_reach_the_scope_connections(kind):
    """ASGIServer(websocket={...}): a message past max_message fails the
    connection with 1009 and the app sees websocket.disconnect."""
    events = []

    async def main():
        srv = ASGIServer(make_app(events), lifespan="off",
                         websocket={"max_message": 16, "ping_interval": None})
        await srv.listen("127.0.0.1", 0)
        try:
            async with connect(f"ws://127.0.0.1:{srv.port}/echo", ping_interval=None) as ws:
                await ws.send("x" * 16)
                assert await ws.receive() == "x" * 16
                await ws.send("y" * 17)
                with pytest.raises(WebSocketClosed) as info:
                    await ws.receive()
                assert info.value.code == 1009
            await wait_for_event(events, lambda e: e[0] == "disconnect")
        finally:
            await srv.stop(grace=2)

    helpers.run_with(kind, main())
    # The server failed the connection itself (close frame 1009, then TCP
    # closed) without a close frame from the client: 1006 for the app.
    assert events[-1] == ("disconnect", 1006)


def test_unknown_websocket_setting_is_refused_at_construction():
    from flowcoro.errors import InvalidArgumentError
    with pytest.raises(InvalidArgumentError, match="max_size"):
        ASGIServer(make_app([]), websocket={"max_size": 10})


def test_serve_command_line_websocket_options(monkeypatch):
    """``flowcoro serve --ws-max-size/--ws-ping-interval/--ws-ping-timeout``
    become the server's websocket settings (0 turns pings off)."""
    import flowcoro.cli
    import flowcoro.http.asgi as asgi
    made = {}

    def fake_run(self, host, port, workers=1):
        made.update(self.websocket_options, host=host, port=port, workers=workers)

    monkeypatch.setattr(asgi.ASGIServer, "run", fake_run)
    monkeypatch.setattr(asgi, "load_app", lambda spec: make_app([]))
    assert flowcoro.cli.main(["serve", "x:app", "--port", "9", "--ws-max-size", "64",
                              "--ws-ping-interval", "0", "--ws-ping-timeout", "5"]) == 0
    assert made == {"max_message": 64, "ping_interval": None, "ping_timeout": 5.0,
                    "host": "127.0.0.1", "port": 9, "workers": 1}
