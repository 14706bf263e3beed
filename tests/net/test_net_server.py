"""flowcoro.net.TcpServer: accept mode, serve mode, graceful stop — on every loop."""
import asyncio
import socket
import time

import pytest

from flowcoro.errors import InvalidArgumentError, InvalidStateError, ServerClosedError
from flowcoro.net import Stream, TcpClient, TcpServer


# -- accept mode ------------------------------------------------------------------

def test_accept_returns_connected_stream(run):
    async def main():
        async with TcpServer() as server:
            await server.bind_and_listen("127.0.0.1", 0)
            assert isinstance(server.port, int) and server.port > 0
            assert len(server.sockets) == 1
            assert server.sockets[0].getsockname() == ("127.0.0.1", server.port)
            client = await TcpClient.connect("127.0.0.1", server.port)
            conn = await server.accept()
            assert isinstance(conn, Stream)
            assert conn.get_extra_info("peername") == client.get_extra_info("sockname")
            client.write(b"ping")
            assert await conn.read_exactly(4) == b"ping"
            conn.write(b"pong")
            assert await client.read_exactly(4) == b"pong"
            client.close()
            assert await conn.read() == b""
        assert server.sockets == ()
        assert conn.is_closing()          # stop() closes what it handed out

    run(main())


def test_accept_waiters_are_served_in_order(run):
    async def main():
        async with TcpServer() as server:
            await server.bind_and_listen("127.0.0.1", 0)
            first = asyncio.ensure_future(server.accept())
            second = asyncio.ensure_future(server.accept())
            await asyncio.sleep(0)
            c1 = await TcpClient.connect("127.0.0.1", server.port)
            c1.write(b"1")
            s1 = await first
            assert await s1.read_exactly(1) == b"1"
            assert not second.done()
            c2 = await TcpClient.connect("127.0.0.1", server.port)
            s2 = await second
            c2.write(b"2")
            assert await s2.read_exactly(1) == b"2"
            for c in (c1, c2):
                c.close()

    run(main())


def test_cancelled_accept_loses_no_connection(run):
    async def main():
        async with TcpServer() as server:
            await server.bind_and_listen("127.0.0.1", 0)
            waiter = asyncio.ensure_future(server.accept())
            await asyncio.sleep(0)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            client = await TcpClient.connect("127.0.0.1", server.port)
            client.write(b"still here")
            conn = await server.accept()
            assert await conn.read_exactly(10) == b"still here"
            client.close()

    run(main())


def test_stop_wakes_pending_accept(run):
    async def main():
        server = TcpServer()
        await server.bind_and_listen("127.0.0.1", 0)
        waiter = asyncio.ensure_future(server.accept())
        await asyncio.sleep(0.01)
        await server.stop()
        with pytest.raises(ServerClosedError):
            await waiter
        with pytest.raises(ServerClosedError):
            await server.accept()
        with pytest.raises(ServerClosedError):
            await server.serve(lambda c: None)
        with pytest.raises(ServerClosedError):
            await server.bind_and_listen("127.0.0.1", 0)
        await server.stop()                   # idempotent

    run(main())


# -- serve mode -------------------------------------------------------------------

def test_serve_runs_each_connection_in_its_own_task(run):
    async def main():
        release = asyncio.Event()
        seen = []

        async def handler(conn):
            name = await conn.readline()
            seen.append((name, asyncio.current_task()))
            await release.wait()          # all handlers are in flight together
            conn.write(b"bye " + name)

        server = TcpServer()
        await server.bind_and_listen("127.0.0.1", 0)
        task = asyncio.ensure_future(server.serve(handler))
        clients = [await TcpClient.connect("127.0.0.1", server.port) for _ in range(5)]
        for i, c in enumerate(clients):
            c.write(b"c%d\n" % i)
        while len(seen) < 5:
            await asyncio.sleep(0.005)
        assert server.serving
        assert server.active_handlers == 5
        assert len({t for _, t in seen}) == 5
        release.set()
        for i, c in enumerate(clients):
            assert await c.read_exactly(7) == b"bye c%d\n" % i
            assert await c.read() == b""         # closed when the handler returned
            c.close()
        await server.stop()
        await task
        assert not server.serving and server.stopping
        assert server.active_handlers == 0

    run(main())


def test_handler_exception_does_not_stop_server(run):
    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda lp, ctx: errors.append(ctx["exception"]))

        async def handler(conn):
            if await conn.readline() == b"boom\n":
                raise ValueError("handler failed")
            conn.write(b"fine\n")

        server = TcpServer()
        await server.bind_and_listen("127.0.0.1", 0)
        task = asyncio.ensure_future(server.serve(handler))
        c1 = await TcpClient.connect("127.0.0.1", server.port)
        c1.write(b"boom\n")
        assert await c1.read() == b""            # its connection was closed
        c2 = await TcpClient.connect("127.0.0.1", server.port)
        c2.write(b"ok\n")
        assert await c2.readline() == b"fine\n"
        assert len(errors) == 1 and isinstance(errors[0], ValueError)
        c1.close()
        c2.close()
        await server.stop()
        await task

    run(main())


def test_stop_drains_then_cancels(run):
    async def main():
        finished, cancelled = [], []

        async def handler(conn):
            kind = await conn.readline()
            try:
                await asyncio.sleep(0.05 if kind == b"quick\n" else 30)
                conn.write(b"done\n")
                await conn.drain()
                finished.append(kind)
            except asyncio.CancelledError:
                cancelled.append(kind)
                raise

        server = TcpServer()
        await server.bind_and_listen("127.0.0.1", 0)
        task = asyncio.ensure_future(server.serve(handler))
        quick = await TcpClient.connect("127.0.0.1", server.port)
        slow = await TcpClient.connect("127.0.0.1", server.port)
        quick.write(b"quick\n")
        slow.write(b"slow\n")
        while server.active_handlers < 2:
            await asyncio.sleep(0.005)
        t0 = time.monotonic()
        await server.stop(grace=0.3)
        took = time.monotonic() - t0
        assert 0.25 <= took < 2.0                    # waited the grace, no longer
        assert finished == [b"quick\n"]              # drained within grace
        assert cancelled == [b"slow\n"]              # cancelled after it
        assert await quick.readline() == b"done\n"
        assert await quick.read() == b""
        assert await slow.read() == b""              # its connection was closed
        assert server.active_handlers == 0
        await task                                   # serve() returned
        # no longer listening
        with pytest.raises(ConnectionRefusedError):
            await TcpClient.connect("127.0.0.1", server.port or quick.get_extra_info("peername")[1])
        quick.close()
        slow.close()

    run(main())


def test_stop_with_zero_grace_cancels_at_once(run):
    async def main():
        started = asyncio.Event()

        async def handler(conn):
            started.set()
            await asyncio.sleep(30)

        server = TcpServer()
        await server.bind_and_listen("127.0.0.1", 0)
        task = asyncio.ensure_future(server.serve(handler))
        client = await TcpClient.connect("127.0.0.1", server.port)
        await started.wait()
        t0 = time.monotonic()
        await server.stop(grace=0)
        assert time.monotonic() - t0 < 0.5
        assert await client.read() == b""
        await task
        client.close()

    run(main())


def test_cancelling_serve_stops_server(run, echo):
    async def main():
        server = TcpServer()
        await server.bind_and_listen("127.0.0.1", 0)
        port = server.port
        task = asyncio.ensure_future(server.serve(echo))
        client = await TcpClient.connect("127.0.0.1", port)
        client.write(b"x")
        assert await client.read_exactly(1) == b"x"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert server.stopping and server.sockets == ()
        assert await client.read() == b""
        client.close()

    run(main())


def test_handler_may_stop_its_own_server(run):
    async def main():
        server = TcpServer()

        async def handler(conn):
            await server.stop(grace=1)
            conn.write(b"stopped\n")

        await server.bind_and_listen("127.0.0.1", 0)
        task = asyncio.ensure_future(server.serve(handler))
        client = await TcpClient.connect("127.0.0.1", server.port)
        await task
        assert server.stopping
        client.close()

    run(main())


# -- binding and bad input ------------------------------------------------------------

def test_reuse_port_shares_the_port(run):
    if not hasattr(socket, "SO_REUSEPORT"):
        pytest.skip("no SO_REUSEPORT")

    async def main():
        a, b = TcpServer(), TcpServer()
        await a.bind_and_listen("127.0.0.1", 0, reuse_port=True)
        await b.bind_and_listen("127.0.0.1", a.port, reuse_port=True)
        assert a.port == b.port
        await a.stop()
        await b.stop()

    run(main())


def test_address_in_use(run):
    async def main():
        async with TcpServer() as a:
            await a.bind_and_listen("127.0.0.1", 0)
            b = TcpServer()
            with pytest.raises(OSError):
                await b.bind_and_listen("127.0.0.1", a.port)
            assert b.sockets == ()

    run(main())


def test_wrong_state_and_bad_arguments(run, echo):
    async def main():
        server = TcpServer()
        assert server.port is None and server.sockets == ()
        with pytest.raises(InvalidStateError):
            await server.accept()
        with pytest.raises(InvalidStateError):
            await server.serve(echo)
        for kwargs in ({"port": -1}, {"port": 65536}, {"port": "80"}, {"port": 0, "backlog": -1}):
            with pytest.raises(InvalidArgumentError):
                await server.bind_and_listen("127.0.0.1", **kwargs)
        await server.bind_and_listen("127.0.0.1", 0, backlog=10)
        with pytest.raises(InvalidStateError):
            await server.bind_and_listen("127.0.0.1", 0)
        with pytest.raises(InvalidArgumentError):
            await server.serve("not callable")
        waiter = asyncio.ensure_future(server.accept())
        await asyncio.sleep(0)
        with pytest.raises(InvalidStateError):
            await server.serve(echo)            # accept() is waiting
        waiter.cancel()
        await asyncio.sleep(0)
        task = asyncio.ensure_future(server.serve(echo))
        await asyncio.sleep(0.01)
        with pytest.raises(InvalidStateError):
            await server.accept()                # serving
        with pytest.raises(InvalidStateError):
            await server.serve(echo)
        with pytest.raises(InvalidArgumentError):
            await server.stop(grace=-1)
        await server.stop()
        await task
        with pytest.raises(InvalidArgumentError):
            TcpServer(limit=0)
        with pytest.raises(InvalidArgumentError):
            TcpServer(high_water=0)

    run(main())


def test_server_connections_use_configured_limit(run):
    async def main():
        got = []

        async def handler(conn):
            got.append(conn.limit)

        async with TcpServer(limit=1234) as server:
            await server.bind_and_listen("127.0.0.1", 0)
            task = asyncio.ensure_future(server.serve(handler))
            client = await TcpClient.connect("127.0.0.1", server.port)
            assert await client.read() == b""
            client.close()
        await task
        assert got == [1234]

    run(main())


def test_stop_while_serve_is_starting(run):
    # stop() racing serve()'s create_server must neither break serve() nor
    # pull the listening socket from under the loop.
    async def main():
        for yields in range(4):
            server = TcpServer()
            await server.bind_and_listen("127.0.0.1", 0)
            task = asyncio.ensure_future(server.serve(lambda conn: None))
            for _ in range(yields):
                await asyncio.sleep(0)
            await server.stop()
            if yields == 0:              # serve() had not begun: it was too late
                with pytest.raises(ServerClosedError):
                    await task
            else:
                await task
            assert server.sockets == ()

    run(main())
