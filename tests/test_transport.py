"""Stream transports: create_server/create_connection over TCP and Unix
sockets, flow control, half-close, abort/close, errors, TLS, sendfile,
EMFILE during accept.

On FlowCoro loops these run the C ``SocketTransport``; on asyncio its
``_SelectorSocketTransport``, the reference behaviour.
"""
import asyncio
import hashlib
import io
import logging
import os
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from flowcoro._core.loop import SocketTransport
from helpers import io_handles, is_flowcoro, reference_differs

BIG = 16 * 1024 * 1024     # more than loopback socket buffers hold, so it queues
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- scaffolding --------------------------------------------------------------

class Recorder(asyncio.Protocol):
    """Records everything a transport does to its protocol."""

    def __init__(self, loop, *, echo=False, keep_open_on_eof=False, pause_on_made=False):
        self.loop = loop
        self.echo = echo
        self.keep_open_on_eof = keep_open_on_eof
        self.pause_on_made = pause_on_made
        self.transport = None
        self.data = bytearray()
        self.events = []
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()
        self._waiters = []

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")
        if self.pause_on_made:
            transport.pause_reading()
        self.made.set_result(transport)

    def data_received(self, data):
        assert self.transport is not None, "data before connection_made"
        assert isinstance(data, bytes)
        self.data += data
        if self.echo:
            self.transport.write(data)
        self._wake()

    def eof_received(self):
        self.events.append("eof")
        self.eof.set_result(True)
        self._wake()
        return self.keep_open_on_eof

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)
        self._wake()

    def pause_writing(self):
        self.events.append(("pause", self.transport.get_write_buffer_size()))

    def resume_writing(self):
        self.events.append(("resume", self.transport.get_write_buffer_size()))
        self._wake()

    def _wake(self):
        for pred, fut in list(self._waiters):
            if not fut.done() and pred():
                fut.set_result(None)
                self._waiters.remove((pred, fut))

    async def until(self, pred, timeout=10):
        if pred():
            return
        fut = self.loop.create_future()
        self._waiters.append((pred, fut))
        await asyncio.wait_for(fut, timeout)

    async def until_bytes(self, n, timeout=10):
        await self.until(lambda: len(self.data) >= n or self.lost.done(), timeout)
        assert len(self.data) >= n, f"got {len(self.data)} of {n} bytes"


class Pair:
    """A server and one client connection to it."""

    def __init__(self, server, client_tr, client, server_proto):
        self.server = server
        self.ctr = client_tr
        self.cli = client
        self.srv = server_proto
        self.str = server_proto.transport

    async def aclose(self):
        for tr in (self.ctr, self.str):
            if tr is not None and not tr.is_closing():
                tr.abort()
        self.server.close()
        await self.server.wait_closed()


async def connect_pair(loop, family="tcp", server_kw=None, client_kw=None, tmp_path=None,
                       ssl_server=None, ssl_client=None, server_hostname=None):
    made = loop.create_future()
    server_kw = server_kw or {}
    client_kw = client_kw or {}

    def server_factory():
        p = Recorder(loop, **server_kw)
        if not made.done():
            made.set_result(p)
        return p

    if family == "tcp":
        server = await loop.create_server(server_factory, "127.0.0.1", 0, ssl=ssl_server)
        addr = server.sockets[0].getsockname()
        tr, cli = await loop.create_connection(lambda: Recorder(loop, **client_kw), *addr,
                                               ssl=ssl_client, server_hostname=server_hostname)
    else:
        path = str(tmp_path / "sock")
        server = await loop.create_unix_server(server_factory, path, ssl=ssl_server)
        tr, cli = await loop.create_unix_connection(lambda: Recorder(loop, **client_kw), path,
                                                    ssl=ssl_client,
                                                    server_hostname=server_hostname)
    srv = await asyncio.wait_for(made, 10)
    await asyncio.wait_for(srv.made, 10)
    await asyncio.wait_for(cli.made, 10)
    return Pair(server, tr, cli, srv)


@pytest.fixture(params=["tcp", "unix"])
def family(request):
    return request.param


def run(loop, coro, timeout=30):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


# -- round trips --------------------------------------------------------------

def test_echo_round_trip(loop, family, tmp_path):
    async def main():
        p = await connect_pair(loop, family, server_kw={"echo": True}, tmp_path=tmp_path)
        sent = bytearray()
        rnd = os.urandom(70_000)
        for i in range(300):
            chunk = rnd[: (i * 233) % 70_000 + 1]
            p.ctr.write(chunk)
            sent += chunk
            if i % 50 == 0:
                await asyncio.sleep(0)
        await p.cli.until_bytes(len(sent))
        assert bytes(p.cli.data) == bytes(sent)
        p.ctr.close()
        assert await p.cli.lost is None
        assert await p.srv.eof is True
        assert await p.srv.lost is None
        assert p.cli.events[0] == "made" and p.cli.events[-1] == "lost"
        assert p.srv.events == ["made", "eof", "lost"]
        p.server.close()
        await p.server.wait_closed()

    run(loop, main())


def test_flowcoro_uses_c_transport(flowcoro_loop, family, tmp_path):
    loop = flowcoro_loop

    async def main():
        p = await connect_pair(loop, family, tmp_path=tmp_path)
        assert type(p.ctr) is SocketTransport
        assert type(p.str) is SocketTransport
        await p.aclose()

    run(loop, main())


def test_transport_isinstance(loop, family, tmp_path):
    async def main():
        p = await connect_pair(loop, family, tmp_path=tmp_path)
        for tr in (p.ctr, p.str):
            assert isinstance(tr, asyncio.Transport)
            assert isinstance(tr, asyncio.ReadTransport)
            assert isinstance(tr, asyncio.WriteTransport)
            assert isinstance(tr, asyncio.BaseTransport)
            assert not isinstance(tr, asyncio.DatagramTransport)
        await p.aclose()

    run(loop, main())


def test_get_extra_info(loop, family, tmp_path):
    async def main():
        p = await connect_pair(loop, family, tmp_path=tmp_path)
        listen_addr = p.server.sockets[0].getsockname()
        sock = p.ctr.get_extra_info("socket")
        assert sock.fileno() >= 0
        assert sock.family == (socket.AF_INET if family == "tcp" else socket.AF_UNIX)
        assert sock.type == socket.SOCK_STREAM
        assert p.ctr.get_extra_info("peername") == listen_addr
        assert p.ctr.get_extra_info("sockname") == sock.getsockname()
        assert p.str.get_extra_info("sockname") == listen_addr
        if family == "tcp":
            assert p.str.get_extra_info("peername") == p.ctr.get_extra_info("sockname")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert p.ctr.get_extra_info("no-such-key") is None
        assert p.ctr.get_extra_info("no-such-key", "dflt") == "dflt"
        assert p.ctr.get_extra_info("sslcontext") is None
        await p.aclose()

    run(loop, main())


def test_many_concurrent_connections(loop):
    async def handler(reader, writer):
        while line := await reader.readline():
            writer.write(b"re:" + line)
        writer.close()

    async def client(port, i):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        out = []
        for j in range(5):
            w.write(f"{i}:{j}\n".encode())
            out.append(await r.readline())
        w.close()
        await w.wait_closed()
        return out

    async def main():
        srv = await asyncio.start_server(handler, "127.0.0.1", 0, backlog=300)
        port = srv.sockets[0].getsockname()[1]
        res = await asyncio.gather(*(client(port, i) for i in range(200)))
        srv.close()
        await srv.wait_closed()
        return res

    res = run(loop, main())
    assert res == [[f"re:{i}:{j}\n".encode() for j in range(5)] for i in range(200)]


def test_streams_readexactly_and_drain(loop, family, tmp_path):
    payload = os.urandom(3_000_000)

    async def handler(reader, writer):
        n = struct.unpack("!I", await reader.readexactly(4))[0]
        data = await reader.readexactly(n)
        writer.write(hashlib.sha256(data).digest())
        await writer.drain()
        writer.close()

    async def main():
        if family == "tcp":
            srv = await asyncio.start_server(handler, "127.0.0.1", 0)
            r, w = await asyncio.open_connection(*srv.sockets[0].getsockname())
        else:
            path = str(tmp_path / "s")
            srv = await asyncio.start_unix_server(handler, path)
            r, w = await asyncio.open_unix_connection(path)
        w.write(struct.pack("!I", len(payload)))
        w.write(payload)
        await w.drain()
        digest = await r.read()
        w.close()
        srv.close()
        await srv.wait_closed()
        return digest

    assert run(loop, main()) == hashlib.sha256(payload).digest()


def test_connection_refused(loop):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ConnectionRefusedError):
        run(loop, loop.create_connection(asyncio.Protocol, "127.0.0.1", port))


# -- BufferedProtocol ---------------------------------------------------------

class BufProto(asyncio.BufferedProtocol):
    def __init__(self, loop, size=4096):
        self.buf = bytearray(size)
        self.data = bytearray()
        self.hints = set()
        self.max_n = 0
        self.done = loop.create_future()
        self.lost = loop.create_future()

    def get_buffer(self, sizehint):
        self.hints.add(sizehint)
        return memoryview(self.buf)

    def buffer_updated(self, nbytes):
        self.max_n = max(self.max_n, nbytes)
        self.data += self.buf[:nbytes]

    def eof_received(self):
        self.done.set_result(True)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_buffered_protocol(loop, family, tmp_path):
    payload = os.urandom(2_000_000)

    async def main():
        p = await connect_pair(loop, family, tmp_path=tmp_path)
        proto = BufProto(loop)
        p.ctr.set_protocol(proto)
        assert p.ctr.get_protocol() is proto
        p.str.write(payload)
        p.str.close()
        await asyncio.wait_for(proto.done, 10)
        assert await proto.lost is None
        p.server.close()
        await p.server.wait_closed()
        return proto

    proto = run(loop, main())
    assert bytes(proto.data) == payload
    assert 0 < proto.max_n <= 4096
    assert proto.hints == {-1}


def test_buffered_protocol_empty_buffer_is_fatal(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    class Empty(BufProto):
        def get_buffer(self, sizehint):
            return bytearray()

    async def main():
        p = await connect_pair(loop)
        proto = Empty(loop)
        p.ctr.set_protocol(proto)
        p.str.write(b"data")
        exc = await asyncio.wait_for(proto.lost, 10)
        await p.aclose()
        return exc

    exc = run(loop, main())
    assert isinstance(exc, RuntimeError)
    assert contexts and "get_buffer" in contexts[0]["message"]


def test_buffered_protocol_get_buffer_raises(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    class Bad(BufProto):
        def get_buffer(self, sizehint):
            raise LookupError("no buffer")

    async def main():
        p = await connect_pair(loop)
        proto = Bad(loop)
        p.ctr.set_protocol(proto)
        p.str.write(b"data")
        exc = await asyncio.wait_for(proto.lost, 10)
        await p.aclose()
        return exc

    assert isinstance(run(loop, main()), LookupError)
    assert isinstance(contexts[0]["exception"], LookupError)


# -- writing and flow control -------------------------------------------------

def test_large_write_flow_control(loop, family, tmp_path):
    payload = os.urandom(8 * 1024 * 1024)

    async def main():
        p = await connect_pair(loop, family, server_kw={"pause_on_made": True},
                               tmp_path=tmp_path)
        assert p.ctr.get_write_buffer_limits() == (16384, 65536)
        p.ctr.write(payload)
        size = p.ctr.get_write_buffer_size()
        assert size > 65536, "8 MB did not queue with the peer not reading"
        assert p.cli.events[-1] == ("pause", size)      # paused synchronously
        # While paused, more writes queue up.
        p.ctr.write(b"tail")
        assert p.ctr.get_write_buffer_size() == size + 4
        p.str.resume_reading()
        await p.cli.until(lambda: any(e[0] == "resume" for e in p.cli.events
                                      if isinstance(e, tuple)))
        resume = [e for e in p.cli.events if isinstance(e, tuple)][-1]
        assert resume[0] == "resume" and resume[1] <= 16384
        await p.srv.until_bytes(len(payload) + 4)
        assert bytes(p.srv.data) == payload + b"tail"
        assert p.ctr.get_write_buffer_size() == 0
        pauses = [e for e in p.cli.events if isinstance(e, tuple) and e[0] == "pause"]
        assert len(pauses) == 1
        await p.aclose()

    run(loop, main())


def test_many_small_writes_queue_in_order(loop):
    async def main():
        p = await connect_pair(loop, server_kw={"pause_on_made": True})
        p.ctr.set_write_buffer_limits(high=1 << 30)
        expected = bytearray()
        p.ctr.write(b"\0" * BIG)
        expected += b"\0" * BIG
        for i in range(20_000):
            chunk = f"<{i}>".encode()
            p.ctr.write(chunk)
            expected += chunk
        assert p.ctr.get_write_buffer_size() > 20_000
        p.str.resume_reading()
        await p.srv.until_bytes(len(expected), timeout=20)
        assert p.srv.data == expected
        await p.aclose()

    run(loop, main())


def test_set_write_buffer_limits_validation(loop):
    async def main():
        p = await connect_pair(loop)
        tr = p.ctr
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=1, low=2)
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=-1)
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(low=-4)
        tr.set_write_buffer_limits(high=100)
        assert tr.get_write_buffer_limits() == (25, 100)
        tr.set_write_buffer_limits(low=10)
        assert tr.get_write_buffer_limits() == (10, 40)
        tr.set_write_buffer_limits(high=0)
        assert tr.get_write_buffer_limits() == (0, 0)
        tr.set_write_buffer_limits()
        assert tr.get_write_buffer_limits() == (16384, 65536)
        await p.aclose()

    run(loop, main())


def test_lowering_limits_pauses_at_once(loop):
    async def main():
        p = await connect_pair(loop, server_kw={"pause_on_made": True})
        p.ctr.set_write_buffer_limits(high=1 << 30)
        p.ctr.write(b"x" * BIG)
        assert p.ctr.get_write_buffer_size() > 1024
        assert not [e for e in p.cli.events if isinstance(e, tuple)]
        p.ctr.set_write_buffer_limits(high=1024)
        assert p.cli.events[-1][0] == "pause"
        p.str.resume_reading()
        await p.cli.until(lambda: p.cli.events[-1][0] == "resume")
        await p.srv.until_bytes(BIG)
        await p.aclose()

    run(loop, main())


def test_write_type_checks(loop):
    async def main():
        p = await connect_pair(loop)
        with pytest.raises(TypeError):
            p.ctr.write("str is not bytes")
        with pytest.raises(TypeError):
            p.ctr.write(12)
        with pytest.raises(TypeError):
            p.ctr.writelines([b"ok", "not ok"])
        p.ctr.write(b"")
        p.ctr.write(bytearray(b"ba"))
        p.ctr.write(memoryview(b"-mv-"))
        p.ctr.write(memoryview(b"0123456789")[2:5])
        await p.srv.until_bytes(9)
        assert p.srv.data == b"ba-mv-234"
        await p.aclose()

    run(loop, main())


def test_writelines(loop, family, tmp_path):
    async def main():
        p = await connect_pair(loop, family, tmp_path=tmp_path)
        parts = [b"alpha,", bytearray(b"beta,"), memoryview(b"gamma,"), b"", b"x" * 300_000]
        p.ctr.writelines(parts)
        p.ctr.writelines(iter([b"-end"]))
        p.ctr.writelines([])
        expected = b"".join(bytes(x) for x in parts) + b"-end"
        await p.srv.until_bytes(len(expected))
        assert bytes(p.srv.data) == expected
        await p.aclose()

    run(loop, main())


def test_writelines_applies_flow_control(loop):
    reference_differs(loop, (3, 12), "writelines() sends via sendmsg without pausing the protocol first")
    async def main():
        p = await connect_pair(loop, server_kw={"pause_on_made": True})
        p.ctr.writelines([b"w" * (1024 * 1024)] * 16)
        size = p.ctr.get_write_buffer_size()
        assert size > 65536
        assert p.cli.events[-1] == ("pause", size)
        p.str.resume_reading()
        await p.cli.until(lambda: p.cli.events[-1][0] == "resume")
        await p.srv.until_bytes(16 * 1024 * 1024)
        await p.aclose()

    run(loop, main())


def test_writelines_of_bytes_partly_taken_keeps_order(loop, family, tmp_path):
    # A tuple of bytes with nothing queued leaves in one writev(2) (FlowCoro:
    # no joined copy); what the kernel does not take is queued in order.
    async def main():
        p = await connect_pair(loop, family, server_kw={"pause_on_made": True},
                               tmp_path=tmp_path)
        p.ctr.set_write_buffer_limits(high=1 << 30)
        parts = (b"<head>", bytes(range(256)) * 4000, b"-", b"tail" * (BIG // 4))
        p.ctr.writelines(parts)
        assert p.ctr.get_write_buffer_size() > 0          # the peer is not reading
        p.ctr.writelines((b"|after",))                    # queued behind the rest
        p.str.resume_reading()
        expected = b"".join(parts) + b"|after"
        await p.srv.until_bytes(len(expected), timeout=20)
        assert p.srv.data == expected
        assert p.ctr.get_write_buffer_size() == 0
        await p.aclose()

    run(loop, main())


def test_writelines_to_a_reset_peer_is_a_connection_error(loop):
    async def main():
        p = await connect_pair(loop)
        sock = p.str.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        p.str.abort()                                     # RST
        await asyncio.sleep(0.05)
        for _ in range(200):
            if p.cli.lost.done():
                break
            p.ctr.writelines((b"x" * 10, b"y" * 10))
            await asyncio.sleep(0.002)
        exc = await asyncio.wait_for(p.cli.lost, 10)
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), repr(exc)
        await p.aclose()

    run(loop, main())


def test_connect_accepted_socket(loop):
    async def main():
        a, b = socket.socketpair()
        tr_a, pa = await loop.connect_accepted_socket(lambda: Recorder(loop, echo=True), a)
        tr_b, pb = await loop.connect_accepted_socket(lambda: Recorder(loop), b)
        tr_b.write(b"accepted")
        await pb.until_bytes(8)
        assert bytes(pb.data) == b"accepted"
        if is_flowcoro(loop):
            assert type(tr_a) is SocketTransport
        tr_b.close()
        assert await asyncio.wait_for(pa.lost, 10) is None
        await pb.lost

    run(loop, main())


def test_queued_write_copies_mutable_data(loop):
    reference_differs(loop, (3, 12), "writelines() keeps references to caller's mutable buffers")
    async def main():
        p = await connect_pair(loop, server_kw={"pause_on_made": True})
        p.ctr.set_write_buffer_limits(high=1 << 30)
        p.ctr.write(b"\0" * BIG)       # the kernel cannot take it all: the rest queues
        assert p.ctr.get_write_buffer_size() > 0
        ba = bytearray(b"A" * 10)
        p.ctr.write(ba)
        ba[:] = b"B" * 10
        mv_src = bytearray(b"C" * 10)
        p.ctr.writelines([memoryview(mv_src)])
        mv_src[:] = b"D" * 10
        p.str.resume_reading()
        await p.srv.until_bytes(BIG + 20)
        assert p.srv.data[-20:] == b"A" * 10 + b"C" * 10
        await p.aclose()

    run(loop, main())


def test_write_eof_half_close(loop, family, tmp_path):
    class Replier(Recorder):
        def eof_received(self):
            super().eof_received()
            self.transport.write(b"reply to " + bytes(self.data))
            self.transport.close()
            return True

    async def main():
        made = loop.create_future()

        def factory():
            proto = Replier(loop)
            made.set_result(proto)
            return proto

        if family == "tcp":
            srv = await loop.create_server(factory, "127.0.0.1", 0)
            tr, cli = await loop.create_connection(lambda: Recorder(loop),
                                                   *srv.sockets[0].getsockname())
        else:
            path = str(tmp_path / "s")
            srv = await loop.create_unix_server(factory, path)
            tr, cli = await loop.create_unix_connection(lambda: Recorder(loop), path)
        assert tr.can_write_eof()
        tr.write(b"request")
        tr.write_eof()
        tr.write_eof()      # idempotent
        with pytest.raises(RuntimeError, match="write_eof"):
            tr.write(b"more")
        with pytest.raises(RuntimeError):
            tr.writelines([b"more"])
        assert await asyncio.wait_for(cli.eof, 10)
        assert await cli.lost is None
        assert bytes(cli.data) == b"reply to request"
        server_proto = await made
        assert await server_proto.lost is None
        srv.close()
        await srv.wait_closed()

    run(loop, main())


def test_write_eof_flushes_buffer_first(loop):
    async def main():
        p = await connect_pair(loop, server_kw={"pause_on_made": True,
                                                "keep_open_on_eof": True})
        p.ctr.write(b"q" * BIG)
        assert p.ctr.get_write_buffer_size() > 0
        p.ctr.write_eof()
        assert not p.ctr.is_closing()
        p.str.resume_reading()
        await asyncio.wait_for(p.srv.eof, 20)
        assert len(p.srv.data) == BIG
        # The client can still read after its half-close.
        p.str.write(b"after-eof")
        await p.cli.until_bytes(9)
        assert p.cli.data == b"after-eof"
        await p.aclose()

    run(loop, main())


def test_eof_received_false_closes_transport(loop):
    async def main():
        p = await connect_pair(loop)
        p.str.write_eof()
        assert await asyncio.wait_for(p.cli.eof, 10)
        assert await asyncio.wait_for(p.cli.lost, 10) is None
        assert p.ctr.is_closing()
        await p.aclose()

    run(loop, main())


def test_abort_drops_buffer(loop):
    async def main():
        p = await connect_pair(loop, server_kw={"pause_on_made": True})
        p.ctr.write(b"a" * BIG)
        assert p.ctr.get_write_buffer_size() > 0
        p.ctr.abort()
        assert p.ctr.is_closing()
        assert p.ctr.get_write_buffer_size() == 0
        assert not p.cli.lost.done()            # connection_lost is scheduled, not called
        assert await asyncio.wait_for(p.cli.lost, 10) is None
        p.ctr.abort()                            # idempotent
        p.str.resume_reading()
        await asyncio.wait_for(p.srv.lost, 20)
        assert len(p.srv.data) < BIG
        await p.aclose()

    run(loop, main())


def test_close_flushes_buffer_first(loop, family, tmp_path):
    payload = os.urandom(BIG)

    async def main():
        p = await connect_pair(loop, family, server_kw={"pause_on_made": True},
                               tmp_path=tmp_path)
        p.ctr.write(payload)
        assert p.ctr.get_write_buffer_size() > 0
        p.ctr.close()
        assert p.ctr.is_closing()
        await asyncio.sleep(0.05)
        assert not p.cli.lost.done(), "connection_lost before the buffer was flushed"
        p.str.resume_reading()
        assert await asyncio.wait_for(p.cli.lost, 20) is None
        assert await asyncio.wait_for(p.srv.eof, 20)
        assert bytes(p.srv.data) == payload
        await p.aclose()

    run(loop, main())


def test_close_stops_reading(loop):
    async def main():
        p = await connect_pair(loop)
        p.ctr.close()
        assert not p.ctr.is_reading()
        p.str.write(b"ignored")
        assert await asyncio.wait_for(p.cli.lost, 10) is None
        assert p.cli.data == b""
        p.ctr.close()           # idempotent
        await p.aclose()

    run(loop, main())


def test_peer_reset_mid_write(loop, family, tmp_path):
    async def main():
        p = await connect_pair(loop, family, server_kw={"pause_on_made": True},
                               tmp_path=tmp_path)
        sock = p.str.get_extra_info("socket")
        # RST instead of FIN on close (TCP); unix sockets get ECONNRESET/EPIPE too.
        if family == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        p.ctr.write(b"r" * BIG)          # queued: the peer is not reading
        await asyncio.sleep(0.01)
        p.str.abort()
        for _ in range(500):
            if p.cli.lost.done():
                break
            p.ctr.write(b"more" * 1000)
            await asyncio.sleep(0.002)
        exc = await asyncio.wait_for(p.cli.lost, 10)
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), repr(exc)
        assert p.ctr.is_closing()
        assert p.ctr.get_write_buffer_size() == 0
        p.ctr.write(b"after reset")      # dropped, no error
        await p.aclose()

    run(loop, main())


def test_data_received_exception_is_fatal(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    class Bad(Recorder):
        def data_received(self, data):
            raise KeyError("proto bug")

    async def main():
        p = await connect_pair(loop)
        bad = Bad(loop)
        bad.transport = p.ctr
        p.ctr.set_protocol(bad)
        p.str.write(b"x")
        exc = await asyncio.wait_for(bad.lost, 10)
        await p.aclose()
        return exc

    exc = run(loop, main())
    assert isinstance(exc, KeyError)
    assert len(contexts) == 1
    assert contexts[0]["message"] == "Fatal error: protocol.data_received() call failed."
    assert isinstance(contexts[0]["exception"], KeyError)


def test_writes_after_close_are_dropped(loop, caplog):
    reference_differs(loop, (3, 12), "write() after close raises TypeError (None._sock)")
    async def main():
        p = await connect_pair(loop)
        p.ctr.close()
        p.ctr.write(b"dropped")
        p.ctr.writelines([b"dropped"])
        await asyncio.wait_for(p.cli.lost, 10)
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(10):
                p.ctr.write(b"dropped")
        assert await asyncio.wait_for(p.srv.eof, 10)
        await asyncio.sleep(0.01)
        assert p.srv.data == b""
        await p.aclose()

    run(loop, main())
    assert "socket.send() raised exception." in caplog.text


def test_write_after_flushed_close_goes_nowhere(loop):
    reference_differs(loop, (3, 12), "write() after close raises TypeError (None._sock)")
    async def main():
        p = await connect_pair(loop, server_kw={"pause_on_made": True})
        fd = p.ctr.get_extra_info("socket").fileno()
        p.ctr.write(b"x" * BIG)            # queued ...
        p.ctr.close()                      # ... so close() waits for the flush
        p.str.resume_reading()
        assert await asyncio.wait_for(p.cli.lost, 20) is None
        # The closed fd number is handed out again.
        pairs = [socket.socketpair() for _ in range(2)]
        socks = [s for pr in pairs for s in pr]
        assert fd in [s.fileno() for s in socks]
        errors = []
        for call in (lambda: p.ctr.write(b"LEAK1"), lambda: p.ctr.writelines([b"LEAK2"])):
            try:
                call()
            except AttributeError as exc:
                errors.append(exc)     # asyncio 3.11 trips over its own self._sock = None
        leaked = b""
        for s in socks:
            s.setblocking(False)
            try:
                leaked += s.recv(100)
            except BlockingIOError:
                pass
            s.close()
        await p.aclose()
        return leaked, errors

    leaked, errors = run(loop, main())
    assert leaked == b"", f"a write after connection_lost reached another socket: {leaked!r}"
    if is_flowcoro(loop):
        assert errors == []


def test_pause_resume_reading(loop, family, tmp_path):
    async def main():
        p = await connect_pair(loop, family, tmp_path=tmp_path)
        assert p.ctr.is_reading()
        p.ctr.pause_reading()
        p.ctr.pause_reading()           # idempotent
        assert not p.ctr.is_reading()
        if is_flowcoro(loop):
            assert io_handles(loop, p.ctr.get_extra_info("socket").fileno())[0] is None
        p.str.write(b"while paused")
        await asyncio.sleep(0.05)
        assert p.cli.data == b""
        p.ctr.resume_reading()
        p.ctr.resume_reading()
        assert p.ctr.is_reading()
        await p.cli.until_bytes(12)
        assert p.cli.data == b"while paused"
        p.ctr.close()
        assert not p.ctr.is_reading()
        await p.aclose()

    run(loop, main())


def test_pause_reading_in_connection_made(loop):
    async def main():
        p = await connect_pair(loop, client_kw={"pause_on_made": True})
        assert not p.ctr.is_reading()
        p.str.write(b"hello")
        await asyncio.sleep(0.05)
        assert p.cli.data == b""
        p.ctr.resume_reading()
        await p.cli.until_bytes(5)
        await p.aclose()

    run(loop, main())


def test_repr(loop):
    async def main():
        p = await connect_pair(loop, server_kw={"pause_on_made": True})
        fd = p.ctr.get_extra_info("socket").fileno()
        r = repr(p.ctr)
        assert f"fd={fd}" in r and "read=polling" in r and "write=<idle, bufsize=0>" in r
        p.ctr.pause_reading()
        assert "read=idle" in repr(p.ctr)
        p.ctr.write(b"z" * BIG)
        r = repr(p.ctr)
        assert "write=<polling, bufsize=" in r
        assert f"bufsize={p.ctr.get_write_buffer_size()}>" in r
        p.ctr.abort()
        assert "closing" in repr(p.ctr)
        await p.cli.lost
        assert "closed" in repr(p.ctr)
        assert f"fd={fd}" in repr(p.ctr)
        await p.aclose()

    run(loop, main())


# -- TLS ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls():
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def test_ssl_round_trip(loop, family, tmp_path, tls):
    server_ctx, client_ctx = tls
    payload = os.urandom(1_500_000)

    async def main():
        p = await connect_pair(loop, family, server_kw={"echo": True}, tmp_path=tmp_path,
                               ssl_server=server_ctx, ssl_client=client_ctx,
                               server_hostname="localhost")
        ssl_obj = p.ctr.get_extra_info("ssl_object")
        assert ssl_obj is not None and ssl_obj.version().startswith("TLS")
        assert p.ctr.get_extra_info("peercert")["subjectAltName"][0] == ("DNS", "localhost")
        assert p.ctr.get_extra_info("cipher") is not None
        assert p.ctr.get_extra_info("sslcontext") is client_ctx
        p.ctr.write(payload)
        await p.cli.until_bytes(len(payload), timeout=20)
        assert bytes(p.cli.data) == payload
        p.ctr.close()
        assert await asyncio.wait_for(p.cli.lost, 10) is None
        p.server.close()
        await p.server.wait_closed()

    run(loop, main())


def test_ssl_bad_certificate_rejected(loop, tls):
    server_ctx, _ = tls
    untrusting = ssl.create_default_context()

    async def main():
        srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl=server_ctx)
        try:
            with pytest.raises(ssl.SSLCertVerificationError):
                await loop.create_connection(asyncio.Protocol, *srv.sockets[0].getsockname(),
                                             ssl=untrusting, server_hostname="localhost")
        finally:
            srv.close()
            await srv.wait_closed()

    run(loop, main())


def test_start_tls(loop, tls):
    server_ctx, client_ctx = tls

    async def handler(reader, writer):
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"GO\n")
        await writer.drain()
        await writer.start_tls(server_ctx)
        line = await reader.readline()
        writer.write(b"secure:" + line)
        await writer.drain()
        writer.close()

    async def main():
        srv = await asyncio.start_server(handler, "127.0.0.1", 0)
        r, w = await asyncio.open_connection(*srv.sockets[0].getsockname())
        plain_transport = w.transport
        w.write(b"STARTTLS\n")
        assert await r.readline() == b"GO\n"
        assert w.get_extra_info("ssl_object") is None
        await w.start_tls(client_ctx, server_hostname="localhost")
        assert w.get_extra_info("ssl_object") is not None
        assert plain_transport.get_protocol() is not None
        w.write(b"hello tls\n")
        reply = await r.readline()
        w.close()
        srv.close()
        await srv.wait_closed()
        return reply

    assert run(loop, main()) == b"secure:hello tls\n"


def test_loop_start_tls_on_protocol_transport(loop, tls):
    server_ctx, client_ctx = tls

    async def main():
        server_side = loop.create_future()

        class Srv(asyncio.Protocol):
            def connection_made(self, tr):
                server_side.set_result((tr, self))

        srv = await loop.create_server(Srv, "127.0.0.1", 0)
        ctr, cli = await loop.create_connection(lambda: Recorder(loop),
                                                *srv.sockets[0].getsockname())
        str_, sproto = await server_side
        recv = Recorder(loop, echo=True)
        server_tls = loop.create_task(loop.start_tls(str_, recv, server_ctx, server_side=True))
        tls_tr = await loop.start_tls(ctr, cli, client_ctx, server_hostname="localhost")
        stls = await server_tls
        recv.connection_made(stls)
        tls_tr.write(b"over tls")
        await cli.until_bytes(8)
        assert bytes(cli.data) == b"over tls"
        assert tls_tr.get_extra_info("ssl_object") is not None
        tls_tr.close()
        stls.close()
        srv.close()
        await srv.wait_closed()

    run(loop, main())


# -- sendfile -----------------------------------------------------------------

def test_sendfile_native(loop, tmp_path):
    data = os.urandom(5_000_000)
    path = tmp_path / "blob"
    path.write_bytes(data)

    async def main():
        p = await connect_pair(loop)
        with open(path, "rb") as f:
            n = await loop.sendfile(p.ctr, f)
            assert f.tell() == len(data)
        with open(path, "rb") as f:
            n2 = await loop.sendfile(p.ctr, f, offset=10, count=100)
        assert p.ctr.is_reading()          # reading resumed after sendfile
        p.ctr.write(b"END")                # and writing works again
        await p.srv.until_bytes(len(data) + 103)
        p.str.write(b"back")
        await p.cli.until_bytes(4)
        await p.aclose()
        return n, n2, bytes(p.srv.data)

    n, n2, got = run(loop, main())
    assert n == len(data) and n2 == 100
    assert got == data + data[10:110] + b"END"


def test_write_during_sendfile_is_refused(loop, tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"s" * BIG)

    async def main():
        p = await connect_pair(loop, server_kw={"pause_on_made": True})
        with open(path, "rb") as f:
            task = asyncio.ensure_future(loop.sendfile(p.ctr, f))
            await asyncio.sleep(0.05)
            assert not task.done()
            with pytest.raises(RuntimeError, match="sendfile"):
                p.ctr.write(b"x")
            with pytest.raises(RuntimeError, match="sendfile"):
                p.ctr.writelines([b"x"])
            p.str.resume_reading()
            assert await asyncio.wait_for(task, 20) == BIG
        p.ctr.write(b"after")
        await p.srv.until_bytes(BIG + 5)
        assert p.srv.data[-5:] == b"after"
        await p.aclose()

    run(loop, main())


def test_sendfile_fallback_for_non_regular_file(loop):
    data = os.urandom(2_000_000)

    async def main():
        p = await connect_pair(loop)
        with pytest.raises(asyncio.SendfileNotAvailableError):
            await loop.sendfile(p.ctr, io.BytesIO(data), fallback=False)
        n = await loop.sendfile(p.ctr, io.BytesIO(data))
        assert p.ctr.get_protocol() is p.cli          # protocol restored
        p.ctr.write(b"!")
        await p.srv.until_bytes(len(data) + 1)
        await p.aclose()
        return n, bytes(p.srv.data)

    n, got = run(loop, main())
    assert n == len(data) and got == data + b"!"


def test_sendfile_over_tls_falls_back(loop, tls, tmp_path):
    server_ctx, client_ctx = tls
    data = os.urandom(1_000_000)
    path = tmp_path / "blob"
    path.write_bytes(data)

    async def main():
        p = await connect_pair(loop, ssl_server=server_ctx, ssl_client=client_ctx,
                               server_hostname="localhost")
        with open(path, "rb") as f:
            n = await loop.sendfile(p.ctr, f)
        await p.srv.until_bytes(len(data), timeout=20)
        await p.aclose()
        return n, bytes(p.srv.data)

    n, got = run(loop, main())
    assert n == len(data) and got == data


# -- EMFILE during accept -----------------------------------------------------

EMFILE_SERVER = textwrap.dedent("""
    import asyncio, os, resource, sys
    sys.path.insert(0, {tests!r})
    import helpers

    async def handle(reader, writer):
        data = await reader.read(100)
        writer.write(data.upper())
        await writer.drain()
        await reader.read()             # hold the fd until the client closes
        writer.close()

    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=100)
        nfds = len(os.listdir("/proc/self/fd"))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (nfds + 8, hard))
        print(srv.sockets[0].getsockname()[1], flush=True)
        await loop.run_in_executor(None, sys.stdin.read)   # until stdin closes

    loop = helpers.make_loop(sys.argv[1])
    loop.run_until_complete(main())
""")


def _ask(port, timeout):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(b"hi")
    return s


@pytest.mark.timeout(40)
def test_emfile_during_accept_keeps_serving(loop_kind, tmp_path):
    script = tmp_path / "emfile_server.py"
    script.write_text(EMFILE_SERVER.format(tests=os.path.dirname(os.path.abspath(__file__))))
    # stderr goes to a file: asyncio logs one traceback per accept() attempt,
    # enough to fill a pipe and block the server.
    errf = open(tmp_path / "stderr.txt", "w+b")
    proc = subprocess.Popen([sys.executable, str(script), loop_kind], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf)
    socks = []
    try:
        port = int(proc.stdout.readline())
        served = 0
        for _ in range(30):
            socks.append(_ask(port, 5))
        time.sleep(0.5)
        for s in socks:
            s.setblocking(False)
            try:
                if s.recv(10) == b"HI":
                    served += 1
            except BlockingIOError:
                pass
        assert 0 < served < 30, f"{served} served: the fd limit was not reached"
        for s in socks:
            s.close()
        socks.clear()
        # Once fds are free again the server accepts new clients.
        deadline = time.monotonic() + 15
        while True:
            s = _ask(port, 2)
            s.settimeout(3)
            try:
                reply = s.recv(10)
            except socket.timeout:
                reply = None
            s.close()
            if reply == b"HI" or time.monotonic() > deadline:
                break
        assert reply == b"HI"
        assert proc.poll() is None, "server died"
    finally:
        for s in socks:
            s.close()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        errf.seek(0)
        err = errf.read()
        errf.close()
    assert b"out of system resource" in err, err.decode(errors="replace")[-2000:]
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
