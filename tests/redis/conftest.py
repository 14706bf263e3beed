"""Fixtures for the flowcoro.redis tests.

* ``r_url``: the shared test Redis (``redis_url``) with database 13 selected;
  every test gets a unique key prefix (``prefix``) and its keys are deleted
  afterwards, so tests never touch anyone else's data.
* ``private_redis``: a redis-server of our own on a free port (skips when
  ``redis-server`` is not on PATH), for tests that kill, restart or
  reconfigure the server.  Never the shared one.
* ``run(coro)``: run a coroutine on the parametrized ``loop`` under a timeout.
"""
import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid

import pytest

TEST_DB = 13
HERE = os.path.dirname(__file__)


def pytest_collection_modifyitems(config, items):
    """A hung test fails alone (30 s) instead of stalling the suite."""
    for item in items:
        if os.path.dirname(str(item.fspath)) == HERE and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(30))


def with_db(url, db):
    """``url`` with its database replaced by ``db``."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{db}"))


@pytest.fixture
def r_url(redis_url):
    """The shared test server, database 13."""
    return with_db(redis_url, TEST_DB)


@pytest.fixture
def prefix(redis_url):
    """A unique key prefix; its keys are deleted after the test."""
    p = f"fctest:{uuid.uuid4().hex[:10]}:"
    yield p
    import redis as redispy
    r = redispy.Redis.from_url(with_db(redis_url, TEST_DB))
    try:
        keys = list(r.scan_iter(match=p + "*", count=1000))
        if keys:
            r.delete(*keys)
    finally:
        r.close()


@pytest.fixture
def run(loop):
    """run(coro, timeout=20): run ``coro`` to completion on the test's loop."""
    def _run(coro, timeout=20.0):
        async def guarded():
            async with asyncio.timeout(timeout):
                return await coro
        return loop.run_until_complete(guarded())
    return _run


def free_port():
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server process we own: start, kill, restart on the same port."""

    def __init__(self, tmpdir, extra=()):
        self.port = free_port()
        self.dir = str(tmpdir)
        self.sock = os.path.join(self.dir, "redis.sock")
        self.extra = list(extra)
        self.proc = None

    @property
    def url(self):
        """redis://127.0.0.1:<port>/0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        """Start it and wait until it accepts connections."""
        ports = ["--port", str(self.port)]
        if "--tls-cert-file" in self.extra:        # TLS only, on our port
            ports = ["--port", "0", "--tls-port", str(self.port)]
        self.proc = subprocess.Popen(
            ["redis-server", *ports, "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--unixsocket", self.sock, "--unixsocketperm", "700",
             "--loglevel", "warning", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("private redis-server did not start")
                time.sleep(0.02)

    def kill(self):
        """SIGKILL: connections drop without a goodbye."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self):
        """Kill and start again on the same port."""
        self.kill()
        self.start()


@pytest.fixture
def make_private_redis():
    """make_private_redis(*extra_args): a private server with extra config.

    Its directory is /tmp/redis_priv_*, removed afterwards.
    """
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not on PATH")
    made = []

    def make(*extra):
        srv = PrivateRedis(tempfile.mkdtemp(prefix="redis_priv_", dir="/tmp"), extra)
        made.append(srv)
        srv.start()
        return srv
    yield make
    for srv in made:
        srv.kill()
        shutil.rmtree(srv.dir, ignore_errors=True)


@pytest.fixture
def private_redis(make_private_redis):
    """A private redis-server on a free port (killed after the test)."""
    return make_private_redis()
