"""flowcoro.net.Stream / TcpClient over real sockets on 127.0.0.1, on every loop."""
import asyncio
import os
import socket
import struct
import tempfile

import pytest

from flowcoro.errors import (IncompleteReadError, InvalidArgumentError, InvalidStateError,
                             LimitOverrunError, StreamClosedError, StreamError)
from flowcoro.net import DEFAULT_LIMIT, Stream, StreamProtocol, TcpClient, TcpServer


def sender(*chunks, delay=0.0, close=True):
    """A handler that writes ``chunks`` (pausing ``delay`` between them), then closes."""

    async def handler(conn):
        for c in chunks:
            conn.write(c)
            await conn.drain()
            if delay:
                await asyncio.sleep(delay)
        if not close:
            await conn.read()        # wait for the client's EOF

    return handler


# -- reading ------------------------------------------------------------------

def test_read_echo_and_max_bytes(run, serving, echo):
    async def main():
        async with serving(echo) as server:
            conn = await TcpClient.connect("127.0.0.1", server.port)
            assert isinstance(conn, Stream)
            conn.write(b"hello world")
            await conn.drain()
            assert await conn.read_exactly(11) == b"hello world"
            conn.write(b"abcdef")
            assert await conn.read_exactly(1) == b"a"
            assert await conn.read(2) == b"bc"
            assert await conn.read(0) == b""
            assert await conn.read() == b"def"
            conn.close()
            await conn.wait_closed()
            assert conn.is_closing()

    run(main())


def test_read_returns_empty_at_eof(run, serving):
    async def main():
        async with serving(sender(b"last words")) as server:
            conn = await TcpClient.connect("127.0.0.1", server.port)
            got = b""
            while chunk := await conn.read():
                got += chunk
            assert got == b"last words"
            assert conn.at_eof()
            assert await conn.read() == b""          # and again
            assert await conn.read(10) == b""
            conn.close()

    run(main())


def test_read_exactly_across_chunks(run, serving):
    async def main():
        parts = [b"ab", b"cde", b"f" * 1000, b"gh"]
        async with serving(sender(*parts, delay=0.01)) as server:
            conn = await TcpClient.connect("127.0.0.1", server.port)
            assert await conn.read_exactly(0) == b""
            assert await conn.read_exactly(1006) == b"abcde" + b"f" * 1000 + b"g"
            with pytest.raises(IncompleteReadError) as ei:
                await conn.read_exactly(5)
            assert ei.value.partial == b"h"
            assert ei.value.expected == 5
            assert isinstance(ei.value, EOFError)
            assert conn.at_eof()
            conn.close()

    run(main())


def test_read_exactly_negative_is_typed_error(run, serving, echo):
    async def main():
        async with serving(echo) as server:
            async with await TcpClient.connect("127.0.0.1", server.port) as conn:
                with pytest.raises(InvalidArgumentError) as ei:
                    await conn.read_exactly(-1)
                assert ei.value.argument == "n" and ei.value.value == -1
                assert isinstance(ei.value, ValueError)

    run(main())


def test_readline_lines_partial_and_eof(run, serving):
    async def main():
        async with serving(sender(b"one\ntw", b"o\n\nthree")) as server:
            conn = await TcpClient.connect("127.0.0.1", server.port)
            assert await conn.readline() == b"one\n"
            assert await conn.readline() == b"two\n"
            assert await conn.readline() == b"\n"
            assert await conn.readline() == b"three"     # unterminated rest at EOF
            assert await conn.readline() == b""
            conn.close()

    run(main())


def test_async_iteration_over_lines(run, serving):
    async def main():
        async with serving(sender(b"a\nbb\n", b"ccc\nd")) as server:
            async with await TcpClient.connect("127.0.0.1", server.port) as conn:
                lines = [line async for line in conn]
            assert lines == [b"a\n", b"bb\n", b"ccc\n", b"d"]

    run(main())


def test_readline_limit_overrun_keeps_data(run, serving):
    async def main():
        async with serving(sender(b"x" * 100 + b"\nok\n")) as server:
            conn = await TcpClient.connect("127.0.0.1", server.port, limit=50)
            assert conn.limit == 50
            with pytest.raises(LimitOverrunError) as ei:
                await conn.readline()
            assert ei.value.consumed >= 50
            # nothing was consumed: the caller can still take the bytes
            assert await conn.read_exactly(101) == b"x" * 100 + b"\n"
            assert await conn.readline() == b"ok\n"
            conn.limit = 1000
            assert conn.limit == 1000
            with pytest.raises(InvalidArgumentError):
                conn.limit = 0
            conn.close()

    run(main())


def test_read_until_separator_split_across_chunks(run, serving):
    async def main():
        async with serving(sender(b"head\r", b"\nbody\r\n\r", b"\ntail", delay=0.01)) as server:
            conn = await TcpClient.connect("127.0.0.1", server.port)
            assert await conn.read_until(b"\r\n") == b"head\r\n"
            assert await conn.read_until(b"\r\n\r\n") == b"body\r\n\r\n"
            with pytest.raises(LimitOverrunError):
                await conn.read_until(b"zz", limit=3)
            with pytest.raises(IncompleteReadError) as ei:
                await conn.read_until(b"\r\n")
            assert ei.value.partial == b"tail"
            assert ei.value.expected is None
            conn.close()

    run(main())


def test_read_until_bad_arguments(run, serving, echo):
    async def main():
        async with serving(echo) as server:
            async with await TcpClient.connect("127.0.0.1", server.port) as conn:
                for sep in (b"", "\n", None):
                    with pytest.raises(InvalidArgumentError):
                        await conn.read_until(sep)
                with pytest.raises(InvalidArgumentError):
                    await conn.read_until(b"\n", limit=0)

    run(main())


def test_limit_larger_than_high_water_does_not_deadlock(run, serving):
    # A line longer than the pause mark must still arrive: a waiting reader
    # that needs more than is buffered keeps the transport reading.
    line = b"y" * 300_000 + b"\n"

    async def main():
        async with serving(sender(line)) as server:
            conn = await TcpClient.connect("127.0.0.1", server.port, limit=1 << 20,
                                           high_water=16384)
            assert await conn.readline() == line
            conn.close()

    run(main())


# -- errors and closing ---------------------------------------------------------

def test_read_after_close_is_clear_error(run, serving, echo):
    async def main():
        async with serving(echo) as server:
            conn = await TcpClient.connect("127.0.0.1", server.port)
            conn.close()
            with pytest.raises(StreamClosedError):
                await conn.read()
            with pytest.raises(StreamClosedError):
                await conn.readline()
            with pytest.raises(StreamClosedError):
                conn.write(b"x")
            with pytest.raises(StreamClosedError):
                await conn.drain()
            assert isinstance(StreamClosedError("x"), (StreamError, ConnectionError))
            await conn.wait_closed()
            conn.close()                     # idempotent

    run(main())


def test_close_wakes_blocked_reader(run, serving, echo):
    async def main():
        async with serving(echo) as server:
            conn = await TcpClient.connect("127.0.0.1", server.port)
            reader = asyncio.ensure_future(conn.read())
            await asyncio.sleep(0.01)
            assert not reader.done()
            conn.close()
            with pytest.raises(StreamClosedError):
                await reader

    run(main())


def test_second_concurrent_reader_is_rejected(run, serving, echo):
    async def main():
        async with serving(echo) as server:
            async with await TcpClient.connect("127.0.0.1", server.port) as conn:
                first = asyncio.ensure_future(conn.read_exactly(3))
                await asyncio.sleep(0.01)
                with pytest.raises(InvalidStateError):
                    await conn.read()
                conn.write(b"abc")
                assert await first == b"abc"

    run(main())


def test_peer_reset_raises_connection_reset(run):
    async def main():
        server = TcpServer()
        await server.bind_and_listen("127.0.0.1", 0)
        conn = await TcpClient.connect("127.0.0.1", server.port)
        peer = await server.accept()
        peer.write(b"before")
        await peer.drain()
        sock = peer.get_extra_info("socket")
        # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.abort()
        await asyncio.sleep(0.05)
        assert await conn.read_exactly(6) == b"before"   # data before the reset is kept
        with pytest.raises(ConnectionResetError):
            await conn.read()
        with pytest.raises(ConnectionError):
            conn.write(b"x")
        with pytest.raises(ConnectionError):
            await conn.drain()
        assert conn.is_closing()
        conn.close()
        await conn.wait_closed()
        await server.stop()

    run(main())


def test_write_rejects_non_bytes(run, serving, echo):
    async def main():
        async with serving(echo) as server:
            async with await TcpClient.connect("127.0.0.1", server.port) as conn:
                with pytest.raises(TypeError):
                    conn.write("text")
                conn.write(bytearray(b"ab"))
                conn.writelines([b"c", memoryview(b"d")])
                await conn.drain()
                assert await conn.read_exactly(4) == b"abcd"

    run(main())


def test_write_eof_half_close(run, serving, echo):
    async def main():
        async with serving(echo) as server:
            conn = await TcpClient.connect("127.0.0.1", server.port)
            assert conn.can_write_eof()
            conn.write(b"payload")
            conn.write_eof()
            # the echo server sees EOF, echoes what it got, then closes
            assert await conn.read_exactly(7) == b"payload"
            assert await conn.read() == b""
            conn.close()
            with pytest.raises(StreamClosedError):
                conn.write_eof()

    run(main())


def test_extra_info_repr_and_context_manager(run, serving, echo):
    async def main():
        async with serving(echo) as server:
            async with await TcpClient.connect("127.0.0.1", server.port) as conn:
                assert conn.get_extra_info("peername") == ("127.0.0.1", server.port)
                assert conn.get_extra_info("sockname")[0] == "127.0.0.1"
                assert conn.get_extra_info("nope", 42) == 42
                assert isinstance(conn.protocol, StreamProtocol)
                assert conn.transport is conn.protocol.transport
                assert "open" in repr(conn)
                assert not conn.is_closing()
            assert conn.is_closing()
            assert "closed" in repr(conn)

    run(main())


# -- cancellation ------------------------------------------------------------------

class _FakeTransport:
    def __init__(self):
        self.reading = True

    def write(self, data):
        pass

    def pause_reading(self):
        self.reading = False

    def resume_reading(self):
        self.reading = True

    def get_extra_info(self, name, default=None):
        return default

    def close(self):
        pass


def test_cancelled_read_never_loses_data(run):
    # The race: data is handed to a waiting read() and its task is
    # cancelled before it runs.  The bytes must go back to the buffer.
    async def main():
        proto = StreamProtocol()
        proto.connection_made(_FakeTransport())
        conn = Stream(proto)
        proto.data_received(b"0")
        assert await conn.read() == b"0"
        task = asyncio.ensure_future(conn.read())
        await asyncio.sleep(0)
        proto.data_received(b"abc")
        proto.data_received(b"def")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert conn.buffered == 6
        assert await conn.read() == b"abcdef"
        # a plain cancel (no data yet) leaves the stream usable
        task = asyncio.ensure_future(conn.read_exactly(2))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        proto.data_received(b"xy")
        assert await conn.read_exactly(2) == b"xy"

    run(main())


def test_read_timeout_then_read_again(run, serving, echo):
    async def main():
        async with serving(echo) as server:
            async with await TcpClient.connect("127.0.0.1", server.port) as conn:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.02):
                        await conn.readline()
                conn.write(b"line\n")
                assert await conn.readline() == b"line\n"

    run(main())


# -- flow control ----------------------------------------------------------------

def test_slow_reader_pauses_and_resumes_reading(run):
    total = 2 * 1024 * 1024
    high = 65536

    async def main():
        server = TcpServer()
        await server.bind_and_listen("127.0.0.1", 0)
        conn = await TcpClient.connect("127.0.0.1", server.port, high_water=high)
        peer = await server.accept()
        payload = os.urandom(total)
        peer.write(payload)
        writer = asyncio.ensure_future(peer.drain())
        await asyncio.sleep(0.1)               # the client reads nothing meanwhile
        proto = conn.protocol
        assert proto.read_pauses >= 1
        assert not conn.transport.is_reading()
        # paused soon after passing the mark: at most one recv(2) beyond it
        assert high < conn.buffered <= high + 262144
        got = bytearray()
        # Reads served from the buffer do not yield to the loop, so nothing
        # arrives in between: reading resumes exactly at the low mark.
        while conn.buffered > high // 2:
            assert not conn.transport.is_reading()
            got += await conn.read(4096)
        assert conn.transport.is_reading()
        while len(got) < total:
            got += await conn.read(4096)
        assert bytes(got) == payload
        assert proto.read_pauses >= 2           # it paused again as data kept coming
        await writer
        assert conn.transport.is_reading()
        assert proto.high_water == high and proto.low_water == high // 2
        conn.close()
        peer.close()
        await server.stop()

    run(main(), timeout=10)


def test_drain_blocks_until_peer_reads(run):
    async def main():
        server = TcpServer()
        await server.bind_and_listen("127.0.0.1", 0)
        conn = await TcpClient.connect("127.0.0.1", server.port)
        peer = await server.accept()
        conn.transport.set_write_buffer_limits(high=16384)
        chunk = b"z" * 65536
        sent = 0
        # the peer does not read: kernel buffers fill, then ours
        while not conn.protocol.write_pauses:
            conn.write(chunk)
            sent += len(chunk)
            await asyncio.sleep(0)
        assert sent < 64 * 1024 * 1024
        drainer = asyncio.ensure_future(conn.drain())
        await asyncio.sleep(0.05)
        assert not drainer.done()
        assert conn.transport.get_write_buffer_size() > 16384
        got = 0
        while got < sent:
            got += len(await peer.read(1 << 20))
        await drainer
        assert got == sent
        await conn.drain()                     # not paused any more: returns at once
        conn.close()
        peer.close()
        await server.stop()

    run(main(), timeout=10)


# -- connecting ----------------------------------------------------------------------

def test_connect_refused(run):
    async def main():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        with pytest.raises(ConnectionRefusedError):
            await TcpClient.connect("127.0.0.1", port)

    run(main())


def test_connect_timeout(run, serving, echo):
    async def main():
        async with serving(echo) as server:
            with pytest.raises(TimeoutError):
                await TcpClient.connect("127.0.0.1", server.port, timeout=0)

    run(main())


def test_connect_bad_arguments(run):
    async def main():
        for kwargs in ({"host": 1, "port": 80}, {"host": "", "port": 80},
                       {"host": "h", "port": -1}, {"host": "h", "port": 70000},
                       {"host": "h", "port": "80"}, {"host": "h", "port": 80, "timeout": -1},
                       {"host": "h", "port": 80, "limit": 0},
                       {"host": "h", "port": 80, "high_water": 0}):
            with pytest.raises(InvalidArgumentError):
                await TcpClient.connect(**kwargs)
        with pytest.raises(InvalidArgumentError):
            await TcpClient.connect_unix("")

    run(main())


def test_unix_socket_roundtrip(run, echo):
    async def main():
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "s.sock")
            server = TcpServer()
            await server.bind_unix_and_listen(path)
            assert server.port is None
            task = asyncio.ensure_future(server.serve(echo))
            async with await TcpClient.connect_unix(path, timeout=2) as conn:
                conn.write(b"over unix\n")
                assert await conn.readline() == b"over unix\n"
            await server.stop()
            await task
            assert not os.path.exists(path)

    run(main())


def test_protocol_bad_arguments():
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(InvalidArgumentError):
            StreamProtocol(loop, limit=0)
        with pytest.raises(InvalidArgumentError):
            StreamProtocol(loop, high_water=-5)
        with pytest.raises(InvalidStateError):
            Stream(StreamProtocol(loop))          # not connected
        with pytest.raises(TypeError):
            Stream(object())
    finally:
        loop.close()
    assert DEFAULT_LIMIT == 65536


def test_protocol_accepts_any_bytes_like_and_grows(run):
    async def main():
        proto = StreamProtocol(high_water=1 << 30)
        proto.connection_made(_FakeTransport())
        conn = Stream(proto)
        proto.data_received(bytearray(b"ab"))
        proto.data_received(memoryview(b"cd"))
        proto.data_received(b"")
        assert conn.buffered == 4
        assert await conn.read(3) == b"abc"
        big = bytes(range(256)) * 4096            # 1 MiB: several doublings
        proto.data_received(big)
        assert await conn.read_exactly(1 + len(big)) == b"d" + big
        assert conn.buffered == 0
        proto.eof_received()
        assert conn.at_eof()
        assert await conn.read() == b""

    run(main())
