"""Helpers shared by the core-runtime tests (loop kinds, introspection, services).

The loop suite runs every test on three loops (see ``conftest.loop``):
FlowCoro with the epoll reactor, FlowCoro with the poll reactor, and the
stdlib asyncio loop, which is the reference: a test that fails on asyncio
is a wrong test, one that fails only on FlowCoro is a FlowCoro bug.

The introspection helpers below read each loop's private state the way
that loop keeps it, so a test can ask the same question of both.
"""
import asyncio
import contextlib
import gc
import os
import sys
import socket
import time
import urllib.parse

import pytest

import flowcoro

#: ids of the loop kinds, in the order the fixtures are parametrized.
LOOP_KINDS = ("epoll", "poll", "asyncio")
FLOWCORO_KINDS = ("epoll", "poll")


@contextlib.contextmanager
def backend_env(kind):
    """Set FLOWCORO_BACKEND for FlowCoro kinds while a loop is created."""
    old = os.environ.get("FLOWCORO_BACKEND")
    if kind in FLOWCORO_KINDS:
        os.environ["FLOWCORO_BACKEND"] = kind
    else:
        os.environ.pop("FLOWCORO_BACKEND", None)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("FLOWCORO_BACKEND", None)
        else:
            os.environ["FLOWCORO_BACKEND"] = old


def make_loop(kind):
    """A new, not running loop of ``kind`` ('epoll', 'poll' or 'asyncio')."""
    if kind == "asyncio":
        return asyncio.SelectorEventLoop()
    with backend_env(kind):
        loop = flowcoro.new_event_loop()
    assert isinstance(loop, flowcoro.Loop)
    assert loop.backend == kind, (loop.backend, kind)
    return loop


def run_with(kind, coro):
    """``asyncio.run(coro)`` on a fresh loop of ``kind`` (flowcoro.run for ours)."""
    if kind == "asyncio":
        return asyncio.run(coro)
    with backend_env(kind):
        return flowcoro.run(coro)


def serve_app(kind, app, client, scheme="ws", grace=2):
    """Serve HttpServer ``app`` on a free port of 127.0.0.1 on a loop of
    ``kind``, await ``client("<scheme>://127.0.0.1:<port>")`` (30 s at most),
    stop the server; returns what the client returned."""
    async def main():
        await app.listen("127.0.0.1", 0)
        try:
            return await asyncio.wait_for(client(f"{scheme}://127.0.0.1:{app.port}"), 30)
        finally:
            await app.stop(grace=grace)
    return run_with(kind, main())


def close_loop(loop):
    """Tear a test's loop down the way asyncio.run does, then close it."""
    if loop.is_closed():
        return
    try:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


def is_flowcoro(loop):
    """True for FlowCoro loops, False for the asyncio reference."""
    return isinstance(loop, flowcoro.Loop)


def reference_differs(loop, since, reason):
    """Skip on the asyncio reference loop from Python ``since`` on.

    For behaviour the stdlib loop changed (or broke) in later versions while
    FlowCoro keeps the 3.11 behaviour the test pins down; FlowCoro loops
    still run the test on every version.
    """
    if not is_flowcoro(loop) and sys.version_info >= since:
        pytest.skip(f"stdlib asyncio {since[0]}.{since[1]}+ differs: {reason}")


def io_handles(loop, fd):
    """(reader handle, writer handle) watching ``fd``, or (None, None)."""
    if is_flowcoro(loop):
        st = loop._fd_interest(fd)
        return (None, None) if st is None else tuple(st)
    try:
        key = loop._selector.get_key(fd)
    except KeyError:
        return (None, None)
    return key.data


def timer_count(loop):
    """Timers held by the loop's heap, cancelled ones included."""
    if is_flowcoro(loop):
        return loop._timer_count()
    return len(loop._scheduled)


def run_briefly(loop, n=1):
    """Run ``n`` loop iterations."""
    for _ in range(n):
        loop.call_soon(loop.stop)
        loop.run_forever()


def run_until(loop, pred, timeout=10.0, interval=0.001):
    """Run the loop until ``pred()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s: {pred}")
        loop.run_until_complete(asyncio.sleep(interval))


def rss_bytes():
    """Resident set size of this process, from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fd_count():
    """Open file descriptors of this process (after a GC pass)."""
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


# -- external services ------------------------------------------------------

SERVICE_DEFAULTS = {
    "postgres": ("FLOWCORO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    "redis": ("FLOWCORO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "mysql": ("FLOWCORO_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
}
DEFAULT_PORTS = {"postgres": 5432, "redis": 6379, "mysql": 3306}


def service_url(name):
    """URL of test service ``name`` (postgres, redis, mysql); env overrides the default."""
    var, default = SERVICE_DEFAULTS[name]
    return os.environ.get(var) or default


def require_service(name, timeout=1.0):
    """Return the URL of service ``name`` if it accepts TCP connections.

    Otherwise skip the test, saying which URL and variable to fix, or fail it
    when ``FLOWCORO_REQUIRE_SERVICES=1`` (CI, where the services must be up).
    """
    var, _ = SERVICE_DEFAULTS[name]
    url = service_url(name)
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or DEFAULT_PORTS[name]
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = (f"{name} not reachable at {url} ({exc.__class__.__name__}: {exc}); "
                  f"set {var} to a running server")
        if os.environ.get("FLOWCORO_REQUIRE_SERVICES") == "1":
            pytest.fail(f"FLOWCORO_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return url


def kinds_xfail_on_flowcoro(reason):
    """Loop kinds for ``parametrize("loop_kind", ...)``: the FlowCoro ones are
    strict xfails with ``reason`` (a known FlowCoro bug), asyncio must pass."""
    mark = pytest.mark.xfail(reason=reason, strict=True)
    return [pytest.param(k, marks=mark) for k in FLOWCORO_KINDS] + ["asyncio"]
