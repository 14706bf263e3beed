"""Long-running reliability checks: memory stays flat over a million
callbacks and tens of thousands of connections, no fd leaks, loops close
cleanly with work pending, and cancellation in the middle of I/O leaves
nothing registered behind.

The long ones are marked ``slow`` (deselect with ``-m "not slow"``); each
stays under ~20 s.  RSS is read from /proc/self/statm after a warm-up, so
allocator growth that belongs to the first pass is not counted.
"""
import asyncio
import gc
import os
import random
import socket
import time
import warnings

import pytest

from helpers import (fd_count, io_handles, is_flowcoro, make_loop, rss_bytes,
                     run_briefly, timer_count)

MiB = 1024 * 1024
# `make soak` sets FLOWCORO_SOAK=1: ten times the work (and the time limits).
SOAK = 10 if os.environ.get("FLOWCORO_SOAK") else 1


# -- callbacks ----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(60 * SOAK)
def test_million_callbacks_flat_rss(loop):
    count = [0]

    def cb(i):
        count[0] += 1

    def batch(n=10_000):
        for i in range(n):
            loop.call_soon(cb, i)
        run_briefly(loop)

    for _ in range(20):             # warm-up: 200k
        batch()
    gc.collect()
    before = rss_bytes()
    for _ in range(100 * SOAK):     # 1,000,000 (soak: 10,000,000)
        batch()
    gc.collect()
    grown = rss_bytes() - before
    assert count[0] == 200_000 + 1_000_000 * SOAK
    assert grown < 2 * MiB, f"RSS grew {grown / MiB:.1f} MiB over 1M callbacks"


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_timers_and_threadsafe_callbacks_flat_rss(loop):
    count = [0]

    def cb():
        count[0] += 1

    def batch(n=5_000):
        for _ in range(n):
            loop.call_later(0, cb)
            loop.call_soon_threadsafe(cb)
            loop.call_later(3600, cb).cancel()
        run_briefly(loop, 2)

    for _ in range(10):
        batch()
    gc.collect()
    before = rss_bytes()
    for _ in range(40):
        batch()
    gc.collect()
    grown = rss_bytes() - before
    assert count[0] == 2 * 5_000 * 50
    assert timer_count(loop) < 5_000
    assert grown < 2 * MiB, f"RSS grew {grown / MiB:.1f} MiB"


def test_tasks_flat_rss(loop):
    async def tiny(i):
        await asyncio.sleep(0)
        return i

    async def round_(n=2_000):
        res = await asyncio.gather(*(tiny(i) for i in range(n)))
        assert res[-1] == n - 1

    for _ in range(10):
        loop.run_until_complete(round_())
    gc.collect()
    before = rss_bytes()
    for _ in range(50):
        loop.run_until_complete(round_())
    gc.collect()
    grown = rss_bytes() - before
    assert grown < 2 * MiB, f"RSS grew {grown / MiB:.1f} MiB over 100k tasks"


# -- connections --------------------------------------------------------------

class _Srv(asyncio.Protocol):
    def connection_made(self, tr):
        self.tr = tr

    def data_received(self, data):
        # Echo and close first: TIME_WAIT lands on the server side, so the
        # client never runs out of ephemeral ports.
        self.tr.write(data)
        self.tr.close()


class _Cli(asyncio.Protocol):
    def __init__(self, fut, payload):
        self.fut = fut
        self.payload = payload
        self.buf = b""

    def connection_made(self, tr):
        tr.write(self.payload)

    def data_received(self, data):
        self.buf += data

    def connection_lost(self, exc):
        if exc is not None:
            self.fut.set_exception(exc)
        else:
            self.fut.set_result(self.buf)


async def _hammer(loop, port, n, seconds, workers=32):
    done = 0
    deadline = time.monotonic() + seconds

    async def worker(w):
        nonlocal done
        i = 0
        while done < n and time.monotonic() < deadline:
            fut = loop.create_future()
            payload = b"%d:%d" % (w, i)
            await loop.create_connection(lambda: _Cli(fut, payload), "127.0.0.1", port)
            assert await fut == payload
            done += 1
            i += 1

    await asyncio.gather(*(worker(w) for w in range(workers)))
    return done


@pytest.mark.slow
@pytest.mark.timeout(90 * SOAK)
def test_many_short_connections_no_leaks(loop):
    # FlowCoro: up to 100k connections in ~12 s; asyncio (reference): 20k.
    target = (100_000 if is_flowcoro(loop) else 20_000) * SOAK
    fds_before = fd_count()

    async def main():
        srv = await loop.create_server(_Srv, "127.0.0.1", 0, backlog=1024)
        port = srv.sockets[0].getsockname()[1]
        warm = await _hammer(loop, port, 3_000, 10)
        gc.collect()
        rss0 = rss_bytes()
        n = await _hammer(loop, port, target - warm, 12 * SOAK)
        gc.collect()
        rss1 = rss_bytes()
        srv.close()
        await srv.wait_closed()
        return warm + n, rss1 - rss0

    total, grown = loop.run_until_complete(main())
    print(f"{total} connections, RSS {grown / MiB:+.2f} MiB")
    run_briefly(loop, 3)
    assert total >= 20_000, f"only {total} connections"
    assert fd_count() == fds_before, "file descriptors leaked"
    assert grown < 4 * MiB, f"RSS grew {grown / MiB:.1f} MiB over {total} connections"


def test_unix_connections_no_fd_leak(loop, tmp_path):
    path = str(tmp_path / "s")
    fds_before = fd_count()

    async def main():
        srv = await loop.create_unix_server(_Srv, path)
        for i in range(2_000):
            fut = loop.create_future()
            await loop.create_unix_connection(lambda: _Cli(fut, b"u%d" % i), path)
            assert await fut == b"u%d" % i
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())
    run_briefly(loop, 2)
    assert fd_count() == fds_before


# -- closing loops with work pending ------------------------------------------

def test_close_loop_with_pending_work(loop_kind):
    fds_before = fd_count()
    for _ in range(20):
        lp = make_loop(loop_kind)
        lp.set_exception_handler(lambda l, c: None)     # "Task was destroyed" noise

        async def setup():
            srv = await lp.create_server(asyncio.Protocol, "127.0.0.1", 0)
            port = srv.sockets[0].getsockname()[1]
            conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
            readers = [lp.create_task(r.read()) for r, _ in conns]
            sleepers = [lp.create_task(asyncio.sleep(3600)) for _ in range(5)]
            for i in range(100):
                lp.call_later(3600 + i, print)
                lp.call_soon(print, "never")
            a, b = socket.socketpair()
            lp.add_reader(a.fileno(), print)
            await asyncio.sleep(0.001)
            return srv, conns, readers, sleepers, (a, b)

        keep = lp.run_until_complete(setup())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            lp.close()
            assert lp.is_closed()
            a, b = keep[4]
            a.close()
            b.close()
            del keep, lp, setup
            gc.collect()
    assert fd_count() == fds_before


@pytest.mark.parametrize("loop_kind", ["epoll", "poll", "asyncio"])
def test_unclosed_loop_is_collected(loop_kind):
    fds_before = fd_count()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        for _ in range(20):
            lp = make_loop(loop_kind)
            lp.call_soon(print)
            lp.call_later(10, print)
            del lp
            gc.collect()
    assert fd_count() == fds_before


def test_create_and_close_many_loops_flat_rss(loop_kind):
    def cycle():
        lp = make_loop(loop_kind)
        lp.run_until_complete(asyncio.sleep(0))
        lp.close()

    for _ in range(100):
        cycle()
    gc.collect()
    before = rss_bytes()
    for _ in range(500):
        cycle()
    gc.collect()
    grown = rss_bytes() - before
    assert grown < 2 * MiB, f"RSS grew {grown / MiB:.1f} MiB over 500 loops"


# -- cancellation in the middle of I/O ----------------------------------------

def test_cancel_stream_reads_keeps_connection_usable(loop):
    async def handler(reader, writer):
        while line := await reader.readline():
            await asyncio.sleep(random.random() * 0.002)
            writer.write(line)
        writer.close()

    async def main():
        srv = await asyncio.start_server(handler, "127.0.0.1", 0)
        r, w = await asyncio.open_connection(*srv.sockets[0].getsockname())
        rng = random.Random(1)
        cancelled = 0
        for i in range(300):
            w.write(b"%d\n" % i)
            t = asyncio.ensure_future(r.readline())
            await asyncio.sleep(rng.random() * 0.002)
            if not t.done():
                t.cancel()
                cancelled += 1
                with pytest.raises(asyncio.CancelledError):
                    await t
                line = await asyncio.wait_for(r.readline(), 5)   # the line is not lost
            else:
                line = t.result()
            assert line == b"%d\n" % i
        w.close()
        await w.wait_closed()
        srv.close()
        await srv.wait_closed()
        return cancelled

    assert loop.run_until_complete(main()) > 0


def test_cancel_drain_with_peer_not_reading(loop):
    async def main():
        accepted = loop.create_future()

        async def handler(reader, writer):
            accepted.set_result((reader, writer))

        srv = await asyncio.start_server(handler, "127.0.0.1", 0)
        r, w = await asyncio.open_connection(*srv.sockets[0].getsockname())
        sr, sw = await accepted
        sw.transport.pause_reading()
        w.write(b"d" * (16 * MiB))
        t = asyncio.ensure_future(w.drain())
        await asyncio.sleep(0.05)
        assert not t.done(), "drain finished although the peer is not reading"
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        size = w.transport.get_write_buffer_size()
        assert size > 0
        w.close()
        sw.transport.resume_reading()
        data = await asyncio.wait_for(sr.read(), 20)
        await asyncio.wait_for(w.wait_closed(), 10)
        sw.close()
        srv.close()
        await srv.wait_closed()
        return len(data)

    assert loop.run_until_complete(main()) == 16 * MiB


def test_cancel_sock_ops_leaves_nothing_registered(loop):
    async def main():
        lsock = socket.socket()
        lsock.setblocking(False)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(10)
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        try:
            for i in range(200):
                ops = [loop.sock_recv(a, 10), loop.sock_accept(lsock)]
                tasks = [asyncio.ensure_future(op) for op in ops]
                await asyncio.sleep(0)
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                assert io_handles(loop, a.fileno()) == (None, None)
                assert io_handles(loop, lsock.fileno()) == (None, None)
            # sendall cancelled midway: the writer goes away too.
            t = asyncio.ensure_future(loop.sock_sendall(a, b"s" * (16 * MiB)))
            await asyncio.sleep(0.01)
            assert not t.done()
            assert io_handles(loop, a.fileno())[1] is not None
            t.cancel()
            await asyncio.gather(t, return_exceptions=True)
            assert io_handles(loop, a.fileno()) == (None, None)
            # and the socket still works afterwards
            while True:
                try:
                    b.recv(1 << 20)
                except BlockingIOError:
                    break
            await loop.sock_sendall(b, b"ok")
            return await asyncio.wait_for(loop.sock_recv(a, 10), 5)
        finally:
            a.close()
            b.close()
            lsock.close()

    assert loop.run_until_complete(main()) == b"ok"


def test_cancel_tasks_blocked_on_many_connections(loop):
    fds_before = fd_count()

    async def main():
        async def handler(reader, writer):
            await reader.read()
            writer.close()

        srv = await asyncio.start_server(handler, "127.0.0.1", 0, backlog=500)
        port = srv.sockets[0].getsockname()[1]
        conns = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port)
                                       for _ in range(300)))
        tasks = [asyncio.ensure_future(r.readexactly(10)) for r, _ in conns]
        await asyncio.sleep(0.01)
        for t in tasks:
            t.cancel()
        res = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(x, asyncio.CancelledError) for x in res)
        for _, w in conns:
            w.close()
        await asyncio.gather(*(w.wait_closed() for _, w in conns), return_exceptions=True)
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())
    run_briefly(loop, 3)
    gc.collect()
    assert fd_count() == fds_before
