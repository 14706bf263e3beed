"""loop.stats(): the C counters metrics read (FlowCoro loops only)."""
import asyncio

import pytest

import helpers


@pytest.mark.parametrize("kind", helpers.FLOWCORO_KINDS)
def test_stats_count_iterations_callbacks_bytes_and_transports(kind):
    async def main():
        loop = asyncio.get_running_loop()
        before = loop.stats()

        async def echo(reader, writer):
            writer.write(await reader.readexactly(5000))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x" * 5000)
        assert await reader.readexactly(5000) == b"x" * 5000
        during = loop.stats()           # both ends open (the echo came back)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        for _ in range(5):
            await asyncio.sleep(0)
        for _ in range(10):
            loop.call_soon(lambda: None)
        loop.call_later(60, lambda: None)
        after = loop.stats()
        return before, during, after

    before, during, after = helpers.run_with(kind, main())
    assert set(after) == {"iterations", "polls", "busy_poll_hits", "callbacks_run", "ready", "timers", "transports_open",
                          "bytes_read", "bytes_written"}
    assert after["iterations"] > before["iterations"]
    assert 0 < after["polls"] - before["polls"] <= after["iterations"] - before["iterations"]
    assert after["callbacks_run"] > before["callbacks_run"]
    # Both ends of the connection are FlowCoro transports: 5000 bytes each way.
    assert after["bytes_read"] - before["bytes_read"] == 10000
    assert after["bytes_written"] - before["bytes_written"] == 10000
    assert during["transports_open"] - before["transports_open"] in (1, 2)   # server end may be closing
    assert after["transports_open"] == before["transports_open"]
    assert after["ready"] >= 10 and after["timers"] >= 1


@pytest.mark.parametrize("kind", helpers.FLOWCORO_KINDS)
def test_request_reply_round_trip_polls_about_once(kind):
    """A sequential request/reply over a socket (the Redis GET pattern)
    wakes from a blocking poll, then runs future -> task -> write in ready-
    queue passes.  Those passes come within microseconds of the poll's
    return, so they skip their non-blocking polls: about one poll per round
    trip, not three (the skip window used to be measured from the start of
    the blocking wait, which had always expired by then)."""
    import socket
    import threading
    import time

    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()

        class Client(asyncio.Protocol):
            waiter = None

            def connection_made(self, t):
                self.t = t

            def data_received(self, data):
                self.waiter.set_result(data)

        def echo():                 # another thread: the loop must block for the reply
            while data := b.recv(64):
                time.sleep(0.0002)  # a server's think time: longer than the skip window
                b.sendall(data)
            b.close()

        th = threading.Thread(target=echo)
        th.start()
        _, client = await loop.create_connection(Client, sock=a)
        for _ in range(50):                     # warm up
            client.waiter = loop.create_future()
            client.t.write(b"x")
            await client.waiter
        before = loop.stats()
        n = 200
        for _ in range(n):
            client.waiter = loop.create_future()
            client.t.write(b"x")
            assert await client.waiter == b"x"
        after = loop.stats()
        client.t.close()
        await loop.run_in_executor(None, th.join)
        return n, after["polls"] - before["polls"], after["iterations"] - before["iterations"]

    n, polls, iterations = helpers.run_with(kind, main())
    assert iterations >= 2 * n
    # Each round trip blocks once (the echo must come back); with the old
    # window every pass polled (polls == iterations).  A slow or preempted
    # pass may still poll, so allow some.
    assert polls <= 0.75 * iterations, (polls, iterations)
