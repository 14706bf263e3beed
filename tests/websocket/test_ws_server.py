"""WebSocket on HttpServer: upgrade routes, the websockets library as the
client, hooks, broadcast with a slow client, rooms, refusals, graceful stop."""
import asyncio
import json
import socket

import pytest

from flowcoro.errors import WebSocketClosed
from flowcoro.http import HttpServer
from flowcoro.websocket import connect
from flowcoro.websocket.server import ChatRoom, WebSocketServer

import helpers

websockets = pytest.importorskip("websockets")
pytestmark = pytest.mark.timeout(60)

KINDS = ("epoll", "asyncio")


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


def run(kind, app, client):
    return helpers.serve_app(kind, app, client)


def echo_app(**options):
    app = HttpServer()

    @app.websocket("/echo", **options)
    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    @app.websocket("/rooms/{name}")
    async def room(ws):
        await ws.send(json.dumps({"room": ws.request.path_params["name"],
                                  "q": ws.request.query.get("x"),
                                  "sub": ws.subprotocol}))

    @app.websocket("/boom")
    async def boom(ws):
        await ws.receive()
        raise RuntimeError("handler failed")

    @app.route("/")
    async def index(req):
        return "http still works"

    return app


def test_websockets_library_client_echo_and_deflate(kind):
    async def client(base):
        out = []
        async with websockets.connect(base + "/echo", compression=None) as ws:
            for msg in ("hello", "é" * 1000, b"\x00\xff" * 40000):
                await ws.send(msg)
                out.append(await ws.recv() == msg)
        async with websockets.connect(base + "/echo") as ws:       # permessage-deflate offered
            out.append(ws.protocol.extensions != [])
            await ws.send("z" * 100000)
            out.append(await ws.recv() == "z" * 100000)
        async with websockets.connect(base + "/rooms/blue?x=1") as ws:
            out.append(json.loads(await ws.recv()))
        return out

    out = run(kind, echo_app(), client)
    assert out[:5] == [True] * 5
    assert out[5] == {"room": "blue", "q": "1", "sub": None}


def test_flowcoro_client_subprotocols_and_http_on_the_same_server(kind):
    app = echo_app(subprotocols=["chat.v2", "chat.v1"])

    async def client(base):
        async with connect(base + "/echo", subprotocols=["chat.v1", "chat.v2"]) as ws:
            sub = ws.subprotocol
            await ws.send(b"bin")
            got = await ws.receive()
        r, w = await asyncio.open_connection("127.0.0.1", int(base.rsplit(":", 1)[1]))
        w.write(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        page = await r.read()
        w.close()
        return sub, got, page

    sub, got, page = run(kind, app, client)
    assert sub == "chat.v2" and got == b"bin" and page.endswith(b"http still works")


def test_handshake_refusals(kind):
    app = echo_app(origins={"https://ok.example"})

    async def raw(port, request):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(request)
        data = await asyncio.wait_for(r.read(), 5)
        w.close()
        return data

    async def client(base):
        port = int(base.rsplit(":", 1)[1])
        good = (b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
        return [
            await raw(port, good + b"Sec-WebSocket-Version: 8\r\nOrigin: https://ok.example\r\n\r\n"),
            await raw(port, good + b"Sec-WebSocket-Version: 13\r\nOrigin: https://evil.example\r\n\r\n"),
            await raw(port, b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                            b"Sec-WebSocket-Key: short\r\n\r\n"),
            await raw(port, b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
            await raw(port, good.replace(b"/echo", b"/nope") + b"Sec-WebSocket-Version: 13\r\n\r\n"),
        ]

    v8, evil, short, plain, missing = run(kind, app, client)
    assert v8.startswith(b"HTTP/1.1 426 ") and b"Sec-WebSocket-Version: 13" in v8
    assert evil.startswith(b"HTTP/1.1 403 ")
    assert short.startswith(b"HTTP/1.1 400 ")
    assert plain.startswith(b"HTTP/1.1 426 ")       # not an upgrade request at all
    assert missing.startswith(b"HTTP/1.1 404 ") and b"connection: close" in missing


def test_handler_error_closes_with_1011_and_frames_right_after_the_handshake(kind):
    async def client(base):
        port = int(base.rsplit(":", 1)[1])
        async with websockets.connect(base + "/boom") as ws:
            await ws.send("x")
            try:
                await ws.recv()
            except websockets.ConnectionClosed as exc:
                code = exc.rcvd.code
        # A frame sent in the same packet as the upgrade request is not lost.
        r, w = await asyncio.open_connection("127.0.0.1", port)
        frame = bytes([0x81, 0x82, 1, 2, 3, 4]) + bytes(a ^ b for a, b in zip(b"hi", b"\x01\x02"))
        w.write(b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                + frame)
        head = await r.readuntil(b"\r\n\r\n")
        echo = await asyncio.wait_for(r.readexactly(4), 5)
        w.close()
        return code, head, echo

    code, head, echo = run(kind, echo_app(), client)
    assert code == 1011
    assert head.startswith(b"HTTP/1.1 101 ") and b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    assert echo == b"\x81\x02hi"


def test_websocket_server_hooks_broadcast_and_rooms(kind):
    app = HttpServer()
    chat = WebSocketServer(app, "/chat")
    rooms = ChatRoom(chat)
    log = []

    @chat.on_connect
    async def joined(ws):
        rooms.join_room(ws, ws.request.query.get("room", "lobby"))
        log.append("connect")

    @chat.on_message
    async def message(ws, msg):
        if msg == "leave":
            rooms.leave_room(ws, "red")
            await ws.send("left")
            return
        room = ws.request.query.get("room", "lobby")
        rooms.broadcast_to_room(room, msg, exclude=ws)

    @chat.on_disconnect
    async def gone(ws):
        log.append("disconnect")

    async def client(base):
        a = await websockets.connect(base + "/chat?room=red")
        b = await websockets.connect(base + "/chat?room=red")
        c = await websockets.connect(base + "/chat?room=blue")
        while len(chat.connections) < 3:
            await asyncio.sleep(0.01)
        await a.send("to red")
        got_b = await b.recv()
        try:
            got_c = await asyncio.wait_for(c.recv(), 0.2)
        except asyncio.TimeoutError:
            got_c = None
        n_all = chat.broadcast("everyone")
        all_got = [await x.recv() for x in (a, b, c)]
        members = len(rooms.members("red"))
        await b.send("leave")
        assert await b.recv() == "left"
        after_leave = len(rooms.members("red"))
        for x in (a, b, c):
            await x.close()
        while chat.connections:
            await asyncio.sleep(0.01)
        return got_b, got_c, n_all, all_got, members, after_leave, dict(rooms.rooms)

    got_b, got_c, n_all, all_got, members, after_leave, left = run(kind, app, client)
    assert got_b == "to red" and got_c is None
    assert n_all == 3 and all_got == ["everyone"] * 3
    assert members == 2 and after_leave == 1 and left == {}
    assert log.count("connect") == 3 and log.count("disconnect") == 3


def test_broadcast_drops_a_slow_client_with_1013_and_others_keep_going(kind):
    app = HttpServer()
    chat = WebSocketServer(app, "/b", max_send_buffer=256 * 1024)

    async def client(base):
        port = int(base.rsplit(":", 1)[1])
        fast = [await websockets.connect(base + "/b", max_size=None) for _ in range(3)]
        # The slow client: a raw socket with a tiny receive buffer that never reads.
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", port))
        slow.sendall(b"GET /b HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        while len(chat.connections) < 4:
            await asyncio.sleep(0.01)
        payload = b"x" * 16384
        rounds = 200
        received = [0, 0, 0]

        async def drain(i, ws):
            while received[i] < rounds:
                await ws.recv()
                received[i] += 1

        readers = [asyncio.ensure_future(drain(i, ws)) for i, ws in enumerate(fast)]
        for _ in range(rounds):
            chat.broadcast(payload)
            await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*readers), 20)
        remaining = sum(1 for ws in chat.connections if ws.open)
        failed = [ws._sent_code for ws in chat.connections if not ws.open]
        for ws in fast:
            await ws.close()
        slow.close()
        return received, remaining, failed

    received, remaining, failed = run(kind, app, client)
    assert received == [200, 200, 200]
    assert remaining == 3 and failed == [1013]      # only the slow one was failed


def test_server_stop_closes_websockets_with_1001(kind):
    app = echo_app()

    async def main():
        await app.listen("127.0.0.1", 0)
        ws = await connect(f"ws://127.0.0.1:{app.port}/echo")
        await ws.send("a")
        assert await ws.receive() == "a"
        await app.stop(grace=2)
        try:
            await ws.receive()
        except WebSocketClosed as exc:
            return exc.code
        return None

    assert helpers.run_with(kind, main()) == 1001
