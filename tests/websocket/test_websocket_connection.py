"""WebSocketConnection and connect() over real sockets, on FlowCoro (epoll,
poll) and stdlib asyncio: our client and server against each other and
against the `websockets` library both ways, closing, keep-alive, flow
control, errors, wss://."""
import asyncio
import base64
import hashlib
import ssl
import struct
import threading

import pytest

from flowcoro.errors import (InvalidArgumentError, InvalidStateError, WebSocketClosed,
                             WebSocketHandshakeError, WebSocketTimeoutError)
from flowcoro.websocket import FrameBuilder, FrameParser, Close, Ping, Pong, connect
from flowcoro.websocket.client import parse_url

import ws_echo_server

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect as w_connect  # noqa: E402
from websockets.asyncio.server import serve as w_serve  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def run(loop, coro, timeout=20):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


async def w_echo(ws):
    try:
        async for m in ws:
            await ws.send(m)
    except websockets.ConnectionClosed:
        pass


# ---- a raw server: handshake by hand, then a scripted peer ---------------------

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def raw_server(behaviour, status=b"101 Switching Protocols", extra=b"", headers=b""):
    """Serve one script: behaviour(reader, writer) after a hand-made 101."""
    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        key = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:")][0]
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        if status.startswith(b"101"):
            writer.write(b"HTTP/1.1 " + status + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + accept + b"\r\n" + headers + b"\r\n" + extra)
        else:
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
        try:
            await behaviour(reader, writer)
        finally:
            writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def read_frames(reader, parser, n=1):
    out = []
    while len(out) < n:
        data = await reader.read(65536)
        if not data:
            break
        out += parser.feed(data)
    return out


# ---- both ways with our own server ------------------------------------------

@pytest.mark.parametrize("compression", ["deflate", None])
def test_own_client_own_server_echo(loop, compression):
    async def main():
        server, port, conns = await ws_echo_server.serve(ws_echo_server.echo)
        try:
            async with connect(f"ws://127.0.0.1:{port}/echo", compression=compression) as ws:
                assert (ws.deflate is not None) == (compression == "deflate")
                assert ws.open and ws.state == "OPEN" and ws.close_code is None
                for msg in ["hello", "é" * 1000, "", b"", b"\x00\xff" * 100_000, "x" * 40]:
                    await ws.send(msg)
                    assert await ws.receive() == msg
                await ws.send_text("t")
                await ws.send_binary(bytearray(b"b"))
                assert [await ws.receive(), await ws.receive()] == ["t", b"b"]
                with pytest.raises(TypeError):
                    await ws.send_text(b"x")
                with pytest.raises(TypeError):
                    await ws.send_binary("x")
                with pytest.raises(TypeError):
                    await ws.send(12)
                assert ws.local_address[0] == "127.0.0.1" and ws.remote_address[1] == port
                assert "client" in repr(ws)
            assert ws.closed and ws.close_code == 1000 and ws.close_reason == ""
            with pytest.raises(WebSocketClosed) as info:
                await ws.receive()
            assert info.value.ok and info.value.sent_code == 1000
            with pytest.raises(WebSocketClosed):
                await ws.send("late")
        finally:
            server.close()
    run(loop, main())


def test_websockets_client_against_own_server(loop):
    async def chat(ws):
        assert ws.subprotocol == "chat"
        await ws.send("welcome")
        async for msg in ws:
            await ws.send(msg[::-1] if isinstance(msg, str) else msg)

    async def main():
        server, port, conns = await ws_echo_server.serve(
            chat, accept_options={"subprotocols": ["chat"]})
        try:
            for compression in ("deflate", None):
                async with w_connect(f"ws://127.0.0.1:{port}/", subprotocols=["chat"],
                                     compression=compression, max_size=None) as c:
                    assert c.subprotocol == "chat"
                    assert await c.recv() == "welcome"
                    await c.send("abc")
                    assert await c.recv() == "cba"
                    big = bytes(range(256)) * 4000
                    await c.send(big)
                    assert await c.recv() == big
                    await c.send(["frag", "mented"])          # a fragmented message
                    assert await c.recv() == "detnemgarf"
                    await c.ping(b"hi")                        # our server answers pings
                assert c.close_code == 1000
        finally:
            server.close()
    run(loop, main())


@pytest.mark.parametrize("compression", ["deflate", None])
def test_own_client_against_websockets_server(loop, compression):
    async def main():
        async with w_serve(w_echo, "127.0.0.1", 0, compression=compression) as s:
            port = s.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/", compression=compression) as ws:
                assert (ws.deflate is not None) == (compression == "deflate")
                for msg in ["hi", b"bin", "z" * 70000, b"q" * 200_000]:
                    await ws.send(msg)
                    assert await ws.receive() == msg
                rtt = await ws.ping()
                assert rtt >= 0
                assert isinstance(ws.handshake.status_code, int)
    run(loop, main())


def test_server_close_codes_seen_by_client(loop):
    async def closer(ws):
        await ws.recv()
        await ws.close(4000, "bye now")

    async def normal(ws):
        await ws.send("one")
        await ws.close()

    async def main():
        async with w_serve(closer, "127.0.0.1", 0) as s:
            port = s.sockets[0].getsockname()[1]
            ws = await connect(f"ws://127.0.0.1:{port}/")
            await ws.send("x")
            with pytest.raises(WebSocketClosed) as info:
                async for _ in ws:
                    pass
            assert (info.value.code, info.value.reason, info.value.sent_code) == (4000, "bye now", 4000)
            assert not info.value.ok
            await ws.wait_closed()
            assert ws.close_code == 4000 and ws.close_reason == "bye now"
        async with w_serve(normal, "127.0.0.1", 0) as s:
            port = s.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                got = [m async for m in ws]
                assert got == ["one"]
    run(loop, main())


# ---- protocol errors, limits --------------------------------------------------

def test_protocol_error_fails_connection_with_1002(loop):
    async def main():
        server, port, conns = await ws_echo_server.serve(ws_echo_server.echo)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         b"Sec-WebSocket-Version: 13\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101")
            c = FrameBuilder(client=True)
            writer.write(c.text("ok") + c.frame(3, b""))     # then a reserved opcode
            p = FrameParser(client=True)
            events = await read_frames(reader, p, 2)
            assert events == ["ok", Close(1002, "opcode")]
            assert await reader.read() == b""                 # the server closed TCP
            writer.close()
        finally:
            server.close()
    run(loop, main())


def test_max_message_gives_1009(loop):
    async def main():
        server, port, conns = await ws_echo_server.serve(ws_echo_server.echo, max_message=1000)
        try:
            async with w_connect(f"ws://127.0.0.1:{port}/", compression=None) as c:
                await c.send(b"x" * 1000)
                assert await c.recv() == b"x" * 1000
                await c.send(b"x" * 1001)
                with pytest.raises(websockets.ConnectionClosedError) as info:
                    await c.recv()
                assert info.value.rcvd.code == 1009
        finally:
            server.close()
    run(loop, main())


def test_compression_bomb_from_server(loop):
    async def bomb(reader, writer):
        import zlib
        z = zlib.compressobj(9, zlib.DEFLATED, -15)
        data = (z.compress(b"\x00" * 5_000_000) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]
        writer.write(FrameBuilder(client=False).frame(2, data, rsv1=True))
        await reader.read()

    async def main():
        ext = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
        server, port = await raw_server(bomb, headers=ext)
        async with server:
            ws = await connect(f"ws://127.0.0.1:{port}/", max_size=10_000, close_timeout=0.1)
            assert ws.deflate is not None
            with pytest.raises(WebSocketClosed) as info:
                await ws.receive()
            assert info.value.sent_code == 1009
        # RSV1 without negotiation is a protocol error
        server, port = await raw_server(bomb)
        async with server:
            ws = await connect(f"ws://127.0.0.1:{port}/", compression=None, close_timeout=0.1)
            with pytest.raises(WebSocketClosed) as info:
                await ws.receive()
            assert info.value.sent_code == 1002
    run(loop, main())


# ---- closing ----------------------------------------------------------------

def test_close_timeout_when_peer_never_answers(loop):
    async def silent(reader, writer):
        await reader.read()                  # never answers, never closes first

    async def main():
        server, port = await raw_server(silent)
        async with server:
            ws = await connect(f"ws://127.0.0.1:{port}/", close_timeout=0.05)
            await ws.close(1001, "going")
            assert ws.closed and ws.close_code == 1006
            with pytest.raises(WebSocketClosed) as info:
                await ws.receive()
            assert info.value.code == 1006 and info.value.sent_code == 1001
            with pytest.raises(InvalidArgumentError):
                await connect(f"ws://127.0.0.1:{port}/", ssl=ssl.create_default_context())
    run(loop, main())


def test_peer_close_without_code_and_bad_close_args(loop):
    async def close_empty(reader, writer):
        writer.write(FrameBuilder(client=False).close(None))
        p = FrameParser(client=False)
        assert await read_frames(reader, p) == [Close(1005, "")]   # echoed, no code
        await reader.read()

    async def main():
        server, port = await raw_server(close_empty)
        async with server:
            ws = await connect(f"ws://127.0.0.1:{port}/", close_timeout=1)
            with pytest.raises(InvalidArgumentError):
                await ws.close(1005)
            assert [m async for m in ws] == []
            await ws.wait_closed()
            assert ws.close_code == 1005
            await ws.close()                   # a no-op now
    run(loop, main())


def test_initial_data_after_101_and_unsolicited_pong(loop):
    s = FrameBuilder(client=False)

    async def talk(reader, writer):
        writer.write(s.pong(b"unsolicited") + s.ping(b"are you there") + s.close(1000, ""))
        p = FrameParser(client=False)
        assert await read_frames(reader, p, 2) == [Pong(b"are you there"), Close(1000, "")]

    async def main():
        server, port = await raw_server(talk, extra=s.text("first") + s.binary(b"second"))
        async with server:
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                assert [m async for m in ws] == ["first", b"second"]
    run(loop, main())


# ---- ping / keep-alive -----------------------------------------------------------

def test_ping_futures(loop):
    async def main():
        async with w_serve(w_echo, "127.0.0.1", 0) as srv:
            port = srv.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as ws:
                a = ws.ping("a")
                with pytest.raises(InvalidArgumentError):
                    ws.ping(b"a")
                b = ws.ping(bytearray(b"b"))
                assert await b >= 0 and a.done()       # the later pong acknowledges both
                await ws.pong(b"heartbeat")
    run(loop, main())


def test_keepalive_pings_and_timeout(loop):
    pinged = []

    async def answering(reader, writer):
        p, s = FrameParser(client=False), FrameBuilder(client=False)
        while True:
            data = await reader.read(1024)
            if not data:
                return
            for ev in p.feed(data):
                if type(ev) is Ping:
                    pinged.append(ev)
                    if len(pinged) <= 2:
                        writer.write(s.pong(ev.payload))   # then stop answering

    async def main():
        server, port = await raw_server(answering)
        async with server:
            ws = await connect(f"ws://127.0.0.1:{port}/", ping_interval=0.01, ping_timeout=0.5,
                               close_timeout=0.05)
            with pytest.raises(WebSocketClosed) as info:
                await ws.receive()
            assert info.value.sent_code == 1011 and not info.value.ok
            await ws.wait_closed()
            assert len(pinged) >= 3
    run(loop, main())


# ---- flow control --------------------------------------------------------------

def test_send_waits_for_a_slow_reader_then_resumes(loop):
    async def main():
        release = asyncio.Event()

        async def slow(reader, writer):
            await release.wait()
            while await reader.read(1 << 20):
                pass

        server, port = await raw_server(slow)
        async with server:
            ws = await connect(f"ws://127.0.0.1:{port}/", write_limit=1024, close_timeout=0.1)
            chunk = b"x" * 65536
            sends = 0
            while not ws._write_paused and sends < 2000:      # fill kernel buffers
                ws.transport.write(ws.prepare(chunk))
                sends += 1
            assert ws._write_paused
            task = asyncio.ensure_future(ws.send(chunk))
            for _ in range(5):
                await asyncio.sleep(0)
            assert not task.done()                            # waiting for the drain
            release.set()
            await task
            ws.abort()
    run(loop, main())


def test_send_frame_nowait_bound_fails_with_1013(loop):
    async def main():
        done = asyncio.Event()

        async def never_reads(reader, writer):
            # Reads nothing until the test is over, then closes (3.12+'s
            # Server.wait_closed() waits for the connection to end).
            await done.wait()
            writer.close()

        server, port = await raw_server(never_reads)
        async with server:
            ws = await connect(f"ws://127.0.0.1:{port}/", max_send_buffer=256 * 1024,
                               close_timeout=0.05)
            frame = ws.prepare(b"y" * 32768)
            results = [ws.send_frame_nowait(frame) for _ in range(2000)]
            assert results[0] and not results[-1]
            assert not ws.open
            assert ws.send_frame_nowait(frame) is False
            await ws.wait_closed()
            with pytest.raises(WebSocketClosed) as info:
                await ws.receive()
            assert info.value.sent_code == 1013
            done.set()
    run(loop, main())


def test_reading_pauses_at_max_queue(loop):
    async def flood(reader, writer):
        s = FrameBuilder(client=False)
        writer.write(b"".join(s.text(str(i)) for i in range(50)))
        await reader.read()

    async def main():
        server, port = await raw_server(flood)
        async with server:
            ws = await connect(f"ws://127.0.0.1:{port}/", max_queue=4, close_timeout=0.1)
            while ws._queued() < 4:
                await asyncio.sleep(0.001)
            assert ws._reading_paused
            got = [await ws.receive() for _ in range(50)]
            assert got == [str(i) for i in range(50)]
            assert not ws._reading_paused
            waiter = asyncio.ensure_future(ws.receive())
            await asyncio.sleep(0)
            with pytest.raises(InvalidStateError):
                await ws.receive()
            waiter.cancel()
            ws.abort()
            await ws.wait_closed()
    run(loop, main())


def test_queue_keeps_order_across_bursts_and_partial_reads(loop):
    """The unread-message queue (a list read from a moving head, compacted
    as it goes) hands out every message once, in order, whether it is read
    dry, read partly between bursts, or left long."""
    async def bursts(reader, writer):
        s = FrameBuilder(client=False)
        n = 0
        for size in (1, 300, 7, 1000, 64, 129, 2):
            writer.write(b"".join(s.text(str(n + i)) for i in range(size)))
            n += size
            await writer.drain()
            await asyncio.sleep(0.01)
        await reader.read()

    async def main():
        server, port = await raw_server(bursts)
        async with server:
            ws = await connect(f"ws://127.0.0.1:{port}/", max_queue=100000)
            got = []
            for take in (1, 150, 3, 400, 1, 900, 48):       # never in step with the bursts
                for _ in range(take):
                    got.append(await ws.receive())
                await asyncio.sleep(0.003)
            assert got == [str(i) for i in range(1503)]
            assert ws._queued() == 0
            ws.abort()
            await ws.wait_closed()
    run(loop, main())


# ---- connect() errors, wss ---------------------------------------------------------

def test_connect_errors(loop):
    async def nothing(reader, writer):
        pass

    async def main():
        server, port = await raw_server(nothing, status=b"404 Not Found")
        async with server:
            with pytest.raises(WebSocketHandshakeError) as info:
                await connect(f"ws://127.0.0.1:{port}/")
            assert info.value.status == 404

        async def hang(reader, writer):
            await reader.read()            # answers nothing; ends when the client gives up
            writer.close()
        hanging = await asyncio.start_server(hang, "127.0.0.1", 0)
        async with hanging:
            p = hanging.sockets[0].getsockname()[1]
            with pytest.raises(WebSocketTimeoutError):
                await connect(f"ws://127.0.0.1:{p}/", open_timeout=0.1)

        async def drop(reader, writer):
            writer.close()
        dropping = await asyncio.start_server(drop, "127.0.0.1", 0)
        async with dropping:
            p = dropping.sockets[0].getsockname()[1]
            with pytest.raises(WebSocketHandshakeError):
                await connect(f"ws://127.0.0.1:{p}/")

        async def garbage(reader, writer):
            writer.write(b"NOT HTTP\r\n\r\n")
            await reader.read()
        g = await asyncio.start_server(garbage, "127.0.0.1", 0)
        async with g:
            p = g.sockets[0].getsockname()[1]
            with pytest.raises(WebSocketHandshakeError):
                await connect(f"ws://127.0.0.1:{p}/")

        server, port = await raw_server(nothing, status=b"101 Switching Protocols")
        async with server:     # a 101 the client rejects: it asked for a subprotocol... none came back is fine,
            ws = await connect(f"ws://127.0.0.1:{port}/", subprotocols=["x"], close_timeout=0.05)
            assert ws.subprotocol is None
            await ws.close()
    run(loop, main())


def test_parse_url():
    assert parse_url("ws://h/p?q=1") == (False, "h", 80, "/p?q=1")
    assert parse_url("wss://h:8443") == (True, "h", 8443, "/")
    assert parse_url("ws://[::1]:9/") == (False, "::1", 9, "/")
    for bad in ("http://h/", "ws:///p", "ws://u:p@h/", "ws://h/#f", "ws://h:99999/"):
        with pytest.raises(InvalidArgumentError):
            parse_url(bad)


def test_wss_against_websockets(loop, tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def main():
        async with w_serve(w_echo, "127.0.0.1", 0, ssl=server_ctx) as s:
            port = s.sockets[0].getsockname()[1]
            async with connect(f"wss://localhost:{port}/", ssl=client_ctx) as ws:
                await ws.send("secure")
                assert await ws.receive() == "secure"
                await ws.send(b"s" * 100_000)
                assert await ws.receive() == b"s" * 100_000
            with pytest.raises(ssl.SSLError):
                await connect(f"wss://localhost:{port}/")       # default context: untrusted CA
    run(loop, main())


def test_constructor_checks(loop):
    async def main():
        server, port, conns = await ws_echo_server.serve(ws_echo_server.echo)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            with pytest.raises(InvalidArgumentError):
                from flowcoro.websocket import WebSocketConnection
                WebSocketConnection(writer.transport, "peer")
            with pytest.raises(InvalidArgumentError):
                WebSocketConnection(writer.transport, "client", max_queue=0)
            writer.close()
        finally:
            server.close()
    run(loop, main())


# ---- callback mode -------------------------------------------------------------

def test_callback_mode_echo_both_clients(loop):
    async def main():
        server, port, conns = await ws_echo_server.serve(None)     # on_message=ws.send_nowait
        try:
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                for msg in ["cb", b"bin" * 1000, "x" * 100]:
                    await ws.send(msg)
                    assert await ws.receive() == msg
            async with w_connect(f"ws://127.0.0.1:{port}/") as c:
                await c.send(["frag", "ments"])
                assert await c.recv() == "fragments"
            while conns:
                await asyncio.sleep(0.01)
        finally:
            server.close()
    run(loop, main())


def test_callback_errors_setter_and_send_nowait(loop):
    s = FrameBuilder(client=False)

    async def talk(reader, writer):
        writer.write(s.text("one") + s.text("two"))
        p = FrameParser(client=False)
        events = await read_frames(reader, p, 2)
        assert events == ["got one", Close(1011, "internal error")]

    async def main():
        server, port = await raw_server(talk)
        async with server:
            ws = await connect(f"ws://127.0.0.1:{port}/", close_timeout=0.2)
            while ws._queued() < 2:
                await asyncio.sleep(0.001)
            got = []

            def cb(msg):
                got.append(msg)
                if msg == "two":
                    raise RuntimeError("boom")
                assert ws.send_nowait("got " + msg) is True

            errors = []
            asyncio.get_running_loop().set_exception_handler(lambda lp, ctx: errors.append(ctx))
            ws.on_message = cb          # drains the two queued messages
            assert ws.on_message is cb
            assert got == ["one", "two"]
            assert isinstance(errors[0]["exception"], RuntimeError)
            with pytest.raises(WebSocketClosed):
                ws.send_nowait("late")
            await ws.wait_closed()

        done = asyncio.Event()

        async def never_reads(reader, writer):
            await done.wait()              # reads nothing until the test is over
            writer.close()
        server, port = await raw_server(never_reads)
        async with server:
            ws = await connect(f"ws://127.0.0.1:{port}/", max_send_buffer=128 * 1024,
                               close_timeout=0.05, compression=None)
            sent = 0
            while ws.send_nowait(b"z" * 32768):
                sent += 1
                assert sent < 2000
            assert sent >= 1                      # then the bound failed the connection
            with pytest.raises(WebSocketClosed) as info:
                ws.send_nowait(b"z")
            assert info.value.sent_code == 1013
            await ws.wait_closed()
            done.set()
    run(loop, main())


# ---- big messages: read from the shared buffer, written as header + payload ----

UPGRADE = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")


def test_server_big_messages_arrive_whole_both_clients(loop):
    # From 8 KiB up, a server's binary message leaves as its header and the
    # payload itself (writelines); both clients must read the same frames.
    async def handler(ws):
        async for m in ws:
            if m == "nowait":
                assert ws.send_nowait(b"n" * 70_000) is True
            else:
                await ws.send(m)

    async def main():
        server, port, conns = await ws_echo_server.serve(handler, max_message=None)
        try:
            msgs = [b"a" * 8191, b"b" * 8192, bytes(range(256)) * 64, b"c" * 300_000,
                    "t" * 20_000, b"d" * 65535, b"e" * 65536]
            async with connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
                for m in msgs:
                    await ws.send(m)
                    assert await ws.receive() == m
                await ws.send("nowait")
                assert await ws.receive() == b"n" * 70_000
            async with w_connect(f"ws://127.0.0.1:{port}/", max_size=None,
                                 compression=None) as c:
                for m in msgs:
                    await c.send(m)
                    assert await c.recv() == m
        finally:
            server.close()
    run(loop, main())


def test_server_send_nowait_of_big_messages_is_bounded(loop):
    async def main():
        result = loop.create_future()

        async def flood(ws):
            sent = 0
            while ws.send_nowait(b"z" * 32768):
                sent += 1
                assert sent < 4000
            result.set_result((sent, ws.open))
            await ws.wait_closed()

        server, port, conns = await ws_echo_server.serve(flood, max_send_buffer=128 * 1024,
                                                         close_timeout=0.05)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(UPGRADE)           # then reads nothing
            sent, still_open = await asyncio.wait_for(result, 10)
            assert sent >= 1 and not still_open
            writer.transport.abort()
        finally:
            server.close()
    run(loop, main())


def test_buffered_protocol_reads(loop):
    # The transport reads into get_buffer()'s buffer: one per thread, shared
    # by the connections (each read is parsed in full before the next).
    async def main():
        server, port, conns = await ws_echo_server.serve(ws_echo_server.echo)
        try:
            async with connect(f"ws://127.0.0.1:{port}/") as a, \
                    connect(f"ws://127.0.0.1:{port}/") as b:
                assert isinstance(a, asyncio.BufferedProtocol)
                ba, bb = a.get_buffer(-1), b.get_buffer(-1)
                assert isinstance(ba, memoryview) and len(ba) >= 65536
                assert ba.obj is bb.obj
                other = []
                ws2 = await connect(f"ws://127.0.0.1:{port}/")
                t = threading.Thread(target=lambda: other.append(ws2.get_buffer(-1).obj))
                t.start()
                t.join()
                assert other[0] is not ba.obj          # another thread, another buffer
                await ws2.close()
                # Frames split at any point across reads still parse.
                f = FrameBuilder(client=False)          # as the server sends them
                data = f.binary(b"x" * 5000) + f.text("two") + f.binary(b"y" * 20000)
                await a.send(b"warm")
                assert await a.receive() == b"warm"
                with pytest.raises(InvalidArgumentError):
                    a.buffer_updated(len(ba) + 1)
                with pytest.raises(InvalidArgumentError):
                    a.buffer_updated(-1)
                # An echo peer feeds the bytes back through buffer_updated.
                for cut in (1, 7, 5001, 5010, len(data) - 1):
                    for piece in (data[:cut], data[cut:]):
                        buf = a.get_buffer(-1)
                        buf[:len(piece)] = piece
                        a.buffer_updated(len(piece))
                    got = [await a.receive() for _ in range(3)]
                    assert got == [b"x" * 5000, "two", b"y" * 20000]
        finally:
            server.close()
    run(loop, main())
