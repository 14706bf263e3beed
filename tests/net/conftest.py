"""Fixtures for flowcoro.net tests: every test runs on each loop.

``run`` executes a coroutine on a fresh loop of the parametrized kind —
flowcoro's own loop, the stdlib selector loop (the reference, as uvloop's
test suite does it) and uvloop when installed — under a hard timeout so a
hang fails fast instead of stalling the suite.
"""
import asyncio
import contextlib

import pytest

import flowcoro
from flowcoro.net import TcpServer


def _factories():
    out = {"flowcoro": flowcoro.new_event_loop, "asyncio": asyncio.SelectorEventLoop}
    try:
        import uvloop
    except ImportError:        # optional: bench extra
        pass
    else:
        out["uvloop"] = uvloop.new_event_loop
    return out


LOOP_FACTORIES = _factories()


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def loop_name(request):
    """Name of the loop kind the test runs on."""
    return request.param


@pytest.fixture
def run(loop_name):
    """run(coro, timeout=5): run ``coro`` on a new loop of the current kind."""

    def _run(coro, timeout=5.0):
        async def guarded():
            async with asyncio.timeout(timeout):
                return await coro

        with asyncio.Runner(loop_factory=LOOP_FACTORIES[loop_name]) as runner:
            return runner.run(guarded())

    return _run


@contextlib.asynccontextmanager
async def _serving(handler, **kwargs):
    server = TcpServer(**kwargs)
    await server.bind_and_listen("127.0.0.1", 0)
    task = asyncio.ensure_future(server.serve(handler))
    try:
        yield server
    finally:
        await server.stop(grace=1)
        await task


@pytest.fixture
def serving():
    """``async with serving(handler) as server``: a TcpServer on 127.0.0.1 running serve(handler)."""
    return _serving


async def echo_handler(conn):
    """Echo every chunk back until EOF."""
    while data := await conn.read(65536):
        conn.write(data)
        await conn.drain()


@pytest.fixture
def echo():
    """The echo handler."""
    return echo_handler
