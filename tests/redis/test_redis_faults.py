"""Faults against a private redis-server: kills, restarts, dropped connections,
pool limits, credentials, Unix sockets and TLS.  Never the shared server."""
import asyncio
import os

import pytest

from flowcoro import errors
from flowcoro.redis import ConnectionPool, Redis, from_url


def fast_retry(url, **kw):
    """A client that retries connects quickly (tests should not sleep long)."""
    kw.setdefault("retry_backoff", 0.01)
    kw.setdefault("retry_backoff_max", 0.05)
    return from_url(url, **kw)


async def wait_blocked(r, n):
    """Wait until the server counts ``n`` clients blocked in BLPOP & co."""
    for _ in range(500):
        if (await r.info("clients"))["blocked_clients"] == n:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"blocked_clients never became {n}")


def test_restart_fails_inflight_commands_then_reconnects(run, private_redis):
    srv = private_redis

    async def main():
        r = fast_retry(srv.url, retry_attempts=100)
        admin = fast_retry(srv.url)
        try:
            assert await r.set("k", "v") is True
            # Pause the server so commands are surely in flight when it dies.
            await admin.execute("CLIENT", "PAUSE", 10_000)
            inflight = [asyncio.ensure_future(r.get("k")) for _ in range(20)]
            blocked = asyncio.ensure_future(r.blpop("list", timeout=0))
            await asyncio.sleep(0.1)
            assert not any(t.done() for t in inflight)
            srv.kill()
            res = await asyncio.gather(*inflight, blocked, return_exceptions=True)
            for x in res:
                # A clear, typed error -- never a wrong or missing answer.
                assert isinstance(x, errors.RedisConnectionError), x
                assert isinstance(x, ConnectionError)
                assert "lost" in str(x) or "closed" in str(x)
            srv.start()
            assert await r.get("k") is None        # new server: empty, but answering
            assert await r.set("k", "w") is True
            assert await r.blpop("list", timeout=0.01) is None
            stats = r.connection_pool.stats()
            assert stats.in_use == 0 and stats.size <= 1     # one idle dedicated (+ the shared one)
        finally:
            await r.aclose()
            await admin.aclose()
    run(main())


def test_unreachable_server_fails_after_retries_and_recovers(run, private_redis):
    srv = private_redis

    async def main():
        r = fast_retry(srv.url, retry_attempts=2)
        try:
            await r.ping()
            srv.kill()
            await asyncio.sleep(0.05)          # let the loop see the EOF
            with pytest.raises(errors.RedisConnectionError, match="cannot connect"):
                await r.ping()
            with pytest.raises(errors.RedisConnectionError):
                await r.blpop("x", 0.01)
            # Briefly unreachable: the retries bridge the gap.
            r2 = fast_retry(srv.url, retry_attempts=200)
            task = asyncio.ensure_future(r2.ping())
            await asyncio.sleep(0.15)
            assert not task.done()
            srv.start()
            assert await task is True
            assert r2.connection_pool.reconnects > 0
            assert await r.ping() is True
            # Concurrent callers share one connect attempt.
            await r2.aclose()
            assert r.connection_pool.stats().in_use == 0
        finally:
            await r.aclose()
    run(main())


def test_server_closes_connections(run, private_redis):
    async def main():
        r = fast_retry(private_redis.url, client_name="victim")
        admin = fast_retry(private_redis.url)
        try:
            await r.set("a", 1)
            assert await admin.execute("CLIENT", "KILL", "SKIPME", "yes", "TYPE", "normal") >= 1
            # The loss shows up as EOF; the next command reconnects.
            for _ in range(50):
                try:
                    assert await r.get("a") == b"1"
                    break
                except errors.RedisConnectionError:
                    await asyncio.sleep(0.01)
            else:
                pytest.fail("no reconnect")
            assert await r.client_getname() == "victim"
        finally:
            await r.aclose()
            await admin.aclose()
    run(main())


def test_pool_limits_and_no_leaks(run, private_redis):
    async def main():
        r = fast_retry(private_redis.url, max_connections=3, acquire_timeout=0.2,
                       health_check_interval=0)
        try:
            await r.ping()
            # Two dedicated connections busy: a third blocking call times out.
            b1 = asyncio.ensure_future(r.blpop("q", 0))
            b2 = asyncio.ensure_future(r.blpop("q", 0))
            await asyncio.sleep(0.05)
            with pytest.raises(errors.RedisPoolTimeoutError):
                await r.blpop("q", 0)
            # The shared connection is not held up by the blocked ones, and it
            # has a slot of its own: lost, it reconnects although the pool is full.
            assert await r.ping() is True
            admin = fast_retry(private_redis.url)
            await admin.execute("CLIENT", "KILL", "ID", await r.client_id())
            await admin.aclose()
            for _ in range(50):
                try:
                    assert await r.ping() is True
                    break
                except errors.RedisConnectionError:
                    await asyncio.sleep(0.01)
            else:
                pytest.fail("the shared connection did not come back")
            # Cancelling a blocked caller closes its connection (its late reply
            # must reach nobody) and frees the slot.
            b1.cancel()
            with pytest.raises(asyncio.CancelledError):
                await b1
            # Wait until the server has seen b1's connection close; otherwise it
            # may still hand it "x" (the element is then lost, as with any client).
            await wait_blocked(r, 1)
            await r.rpush("q", "x")
            assert await b2 == (b"q", b"x")
            for _ in range(30):
                t = asyncio.ensure_future(r.blpop("q", 0))
                await asyncio.sleep(0)
                t.cancel()
                await asyncio.gather(t, return_exceptions=True)
            await wait_blocked(r, 0)
            await r.rpush("q", "y")
            assert await r.blpop("q", 1) == (b"q", b"y")
            stats = r.connection_pool.stats()
            assert stats.in_use == 0 and stats.size <= 2 and stats.waiting == 0
            # Health check (interval 0): a dead idle connection is replaced.
            admin = fast_retry(private_redis.url)
            await admin.execute("CLIENT", "KILL", "SKIPME", "yes", "TYPE", "normal")
            await admin.aclose()
            await asyncio.sleep(0.05)
            assert await r.blpop("q", 0.01) is None
        finally:
            await r.aclose()
    run(main())


def test_auth_username_db_and_unix_socket(run, make_private_redis):
    srv = make_private_redis("--requirepass", "sekret", "--user", "alice", "on", ">pw", "~*", "&*", "+@all")

    async def main():
        for url in (f"redis://:sekret@127.0.0.1:{srv.port}/2",
                    f"redis://alice:pw@127.0.0.1:{srv.port}/2",
                    f"redis://alice:pw@127.0.0.1:{srv.port}/2?protocol=3",
                    f"unix://:sekret@{srv.sock}?db=2"):
            async with fast_retry(url) as r:
                await r.set("where", url)
                assert await r.get("where") == url.encode()
        async with fast_retry(f"redis://127.0.0.1:{srv.port}/0", password="sekret", db=3) as r:
            assert await r.get("where") is None           # db 3, not 2
        for bad in (f"redis://:wrong@127.0.0.1:{srv.port}/0",
                    f"redis://alice:nope@127.0.0.1:{srv.port}/0?protocol=3"):
            r = fast_retry(bad)
            with pytest.raises(errors.RedisAuthenticationError):
                await r.ping()
            await r.aclose()
        r = fast_retry(f"redis://127.0.0.1:{srv.port}/0")
        with pytest.raises(errors.RedisResponseError, match="NOAUTH"):
            await r.get("x")
        await r.aclose()
        r = fast_retry(f"redis://:sekret@127.0.0.1:{srv.port}/99")
        with pytest.raises(errors.RedisConnectionError, match="SELECT"):
            await r.ping()
        await r.aclose()
    run(main())


def test_connect_timeout_and_pool_object(run, private_redis):
    async def main():
        # A listening socket that never answers the handshake.
        import socket
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        port = lsock.getsockname()[1]
        try:
            r = Redis(port=port, password="x", socket_connect_timeout=0.1, retry_attempts=0)
            with pytest.raises(errors.RedisTimeoutError):
                await r.ping()
            await r.aclose()
        finally:
            lsock.close()
        pool = ConnectionPool.from_url(private_redis.url, max_connections=5, db=1)
        r = Redis(connection_pool=pool)
        await r.initialize()
        await r.set("a", 1)
        conn = await pool.acquire()
        assert await conn.execute("SELECT", 1) == b"OK" and "db=1" in repr(conn)
        pool.release(conn)
        await pool.aclose()
        assert pool.closed
        with pytest.raises(errors.RedisConnectionError):
            await pool.acquire()
    run(main())


def test_tls(run, make_private_redis, tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = tempfile_dir()
    certf, keyf, caf = (os.path.join(d, n) for n in ("cert.pem", "key.pem", "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(certf)
    cert.private_key_pem.write_to_path(keyf)
    ca.cert_pem.write_to_path(caf)
    srv = make_private_redis("--tls-cert-file", certf, "--tls-key-file", keyf,
                             "--tls-ca-cert-file", caf, "--tls-auth-clients", "no")

    async def main():
        async with fast_retry(f"rediss://127.0.0.1:{srv.port}/0?ssl_ca_certs={caf}") as r:
            assert await r.set("t", "ls") is True
            assert await r.get("t") == b"ls"
        async with fast_retry(f"rediss://127.0.0.1:{srv.port}/0?ssl_cert_reqs=none") as r:
            assert await r.get("t") == b"ls"
        r = fast_retry(f"rediss://127.0.0.1:{srv.port}/0", retry_attempts=0)
        with pytest.raises(errors.RedisConnectionError):        # unknown CA
            await r.ping()
        await r.aclose()
    try:
        run(main())
    finally:
        import shutil
        shutil.rmtree(d, ignore_errors=True)


def tempfile_dir():
    """A /tmp/redis_tls_* directory for certificates."""
    import tempfile
    return tempfile.mkdtemp(prefix="redis_tls_", dir="/tmp")
