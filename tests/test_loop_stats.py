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

