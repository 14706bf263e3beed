"""The waits of an ``@app.websocket`` handler (a HandlerTask) on receive():
it parks at the connection's Parker and data_received resumes it directly.
These check that timeouts, cancellation, wake-ups from other tasks and
protocol errors behave as they do with a future."""
import asyncio

import pytest

from flowcoro._core.httpserver import HandlerTask, Parker
from flowcoro.errors import InvalidStateError, WebSocketClosed
from flowcoro.http import HttpServer
from flowcoro.websocket import connect

import helpers

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=("epoll", "asyncio"))
def kind(request):
    return request.param


def run(kind, app, client):
    return helpers.serve_app(kind, app, client)


def test_handler_waits_at_the_parker_and_is_resumed_inside_data_received(kind):
    app = HttpServer()
    seen = []

    @app.websocket("/")
    async def echo(ws):
        seen.append(type(asyncio.current_task()))
        async for m in ws:
            await ws.send(m)
        seen.append(type(ws._parker))

    async def client(base):
        async with connect(base + "/") as ws:
            for i in range(50):
                await ws.send(f"m{i}")
                assert await ws.receive() == f"m{i}"
            await ws.send(b"\x00" * 70000)
            assert await ws.receive() == b"\x00" * 70000

    run(kind, app, client)
    assert seen[0] is HandlerTask
    assert seen[-1] is Parker


def test_timeout_around_receive_then_receive_again(kind):
    app = HttpServer()
    out = []

    @app.websocket("/")
    async def handler(ws):
        try:
            async with asyncio.timeout(0.05):
                await ws.receive()
        except TimeoutError:
            out.append("timeout")
        # the waiter was cleared: receiving again works, and a second
        # concurrent receive is refused
        other = asyncio.ensure_future(ws.receive())
        await asyncio.sleep(0)
        with pytest.raises(InvalidStateError):
            await ws.receive()
        out.append(await other)
        out.append(await asyncio.wait_for(ws.receive(), 5))
        await ws.send("done")

    async def client(base):
        async with connect(base + "/") as ws:
            await asyncio.sleep(0.2)
            await ws.send("one")
            await ws.send("two")
            assert await ws.receive() == "done"

    run(kind, app, client)
    assert out == ["timeout", "one", "two"]


def test_cancel_a_parked_handler_from_another_task(kind):
    app = HttpServer()
    out = []

    @app.websocket("/")
    async def handler(ws):
        me = asyncio.current_task()
        asyncio.get_running_loop().call_later(0.05, me.cancel, "stop now")
        try:
            await ws.receive()
        except asyncio.CancelledError as exc:
            out.append(("cancelled", exc.args))
            me.uncancel()
        await ws.send("after")

    async def client(base):
        async with connect(base + "/") as ws:
            assert await ws.receive() == "after"

    run(kind, app, client)
    assert out == [("cancelled", ("stop now",))]


def test_a_wake_from_another_handler_goes_through_the_ready_queue(kind):
    """Handler B fails A's connection (a send past A's buffer bound) while B
    runs: A, parked in receive(), is woken from inside B's task and must not
    run inside it; it sees the connection closed with 1013."""
    app = HttpServer()
    conns = {}
    out = []

    @app.websocket("/a", max_send_buffer=10)
    async def a(ws):
        conns["a"] = ws
        try:
            await ws.receive()
        except WebSocketClosed as exc:
            out.append(("a closed", exc.sent_code, type(asyncio.current_task()).__name__))

    @app.websocket("/b")
    async def b(ws):
        await ws.receive()
        ok = conns["a"].send_frame_nowait(conns["a"].prepare(b"x" * 100))
        out.append(("b sent", ok))
        await ws.send("done")

    async def client(base):
        async with connect(base + "/a") as wa, connect(base + "/b") as wb:
            while "a" not in conns:
                await asyncio.sleep(0.01)
            await wb.send("go")
            assert await wb.receive() == "done"
            with pytest.raises(WebSocketClosed) as info:
                await wa.receive()
            assert info.value.code == 1013

    run(kind, app, client)
    assert out[0] == ("b sent", False)
    assert out[1] == ("a closed", 1013, "HandlerTask")


def test_protocol_error_after_messages_is_answered_in_order(kind):
    """Messages before a bad frame are delivered (and echoed) first, then
    the connection fails with 1002, also when the reader is resumed inside
    data_received."""
    app = HttpServer()

    @app.websocket("/")
    async def echo(ws):
        async for m in ws:
            await ws.send(m)

    async def client(base):
        port = int(base.rsplit(":", 1)[1])
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = await r.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        from flowcoro.websocket import FrameBuilder, FrameParser
        fb = FrameBuilder(client=True)
        # two messages, then a frame with a reserved bit set, in one write
        bad = bytearray(fb.text("x"))
        bad[0] |= 0x40
        w.write(fb.text("one") + fb.text("two") + bytes(bad))
        parser = FrameParser(client=True)
        events = []
        while len(events) < 3:
            data = await r.read(65536)
            assert data
            events += parser.feed(data)
        assert events[:2] == ["one", "two"]
        assert events[2].code == 1002
        w.close()

    run(kind, app, client)


def test_async_for_steps_time_out_cancel_and_close_cleanly(kind):
    """`async for` awaits a light awaitable per step (not a coroutine): on
    the server it waits at the Parker, in asyncio.wait_for (a wrapping
    Task) and on the client it waits on a future.  A step that times out,
    is cancelled or is closed unfinished leaves no waiter behind."""
    app = HttpServer()
    out = []

    @app.websocket("/")
    async def handler(ws):
        it = aiter(ws)
        try:
            async with asyncio.timeout(0.05):
                await anext(it)                 # parked, then thrown into
        except TimeoutError:
            out.append("timeout")
        assert ws._recv_waiter is None
        step = anext(it).__await__()        # (the client sends nothing for 0.2 s)
        assert type(step.send(None)) is Parker              # suspended ...
        step.close()                                        # ... and abandoned
        assert ws._recv_waiter is None
        out.append(await asyncio.wait_for(anext(it), 5))    # a future, in a Task
        async for m in ws:
            out.append(m)
            if m == "three":
                break
        await ws.send("done")

    got = []

    async def client(base):
        async with connect(base + "/") as ws:
            await asyncio.sleep(0.2)
            for m in ("one", "two", "three"):
                await ws.send(m)
            step = asyncio.ensure_future(anext(aiter(ws)))
            await asyncio.sleep(0)
            assert ws._recv_waiter is not None
            step.cancel()
            with pytest.raises(asyncio.CancelledError):
                await step
            assert ws._recv_waiter is None
            async for m in ws:
                got.append(m)
                break

    run(kind, app, client)
    assert out == ["timeout", "one", "two", "three"]
    assert got == ["done"]


def test_async_for_ends_at_a_normal_close_and_raises_on_an_abnormal_one(kind):
    app = HttpServer()
    out = []

    @app.websocket("/")
    async def handler(ws):
        async for m in ws:
            out.append(m)
        out.append("end")

    async def client(base):
        async with connect(base + "/") as ws:
            await ws.send("a")
        async with connect(base + "/") as ws:
            ws.transport.write(b"\x89\x81\x00\x00\x00\x00x")     # ping, masked: fine
            ws.transport.write(b"\x83\x80\x00\x00\x00\x00")      # reserved opcode 3
            with pytest.raises(WebSocketClosed):
                async for m in ws:
                    pass

    run(kind, app, client)
    assert out[:2] == ["a", "end"]
