"""Faults against the real servers: killed backends mid-query and
mid-transaction, cancelled calls, exhausted pools.  In every case the call
in flight raises a clear error, the broken connection is never lent again,
the pool recovers, and no transaction is half-applied."""
import asyncio

import pytest

import flowcoro.db as db
from flowcoro.errors import DatabaseConnectionError


async def _wait_running(admin, pid, what):
    """Wait until backend ``pid`` runs a statement containing ``what``."""
    for _ in range(1000):
        q = await admin.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1 "
                                 "AND state = 'active'", [pid])
        if q and what in q:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} never ran {what!r}")


def test_pg_terminate_mid_query(run, postgres_url):
    async def main():
        admin = await db.connect(postgres_url)
        pool = await db.create_pool(postgres_url, 1, 1)
        conn = await pool.acquire()
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        # several calls pipelined on the connection: all of them fail
        calls = [asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(30)"))] + [
            asyncio.ensure_future(conn.fetchval("SELECT $1::int", [i])) for i in range(3)]
        await _wait_running(admin, pid, "pg_sleep")
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", [pid]) is True
        for c in calls:
            with pytest.raises(DatabaseConnectionError) as ei:
                await c
        assert ei.value.sqlstate == "57P01"          # admin_shutdown, from the server
        assert isinstance(ei.value, ConnectionError)
        assert conn.is_closed and "broken" in repr(conn)
        with pytest.raises(DatabaseConnectionError):
            await conn.execute("SELECT 1")           # and every later call
        pool.release(conn)
        assert pool.stats["broken"] == 1
        # the pool hands out a new, working connection
        assert await pool.fetchval("SELECT pg_backend_pid()") != pid
        await pool.close()
        await admin.close()
    run(main())


def test_pg_terminate_mid_transaction_applies_nothing(run, postgres_url, table):
    async def main():
        admin = await db.connect(postgres_url)
        await admin.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
        pool = await db.create_pool(postgres_url, 1, 2)
        with pytest.raises(DatabaseConnectionError):
            async with pool.transaction() as conn:
                pid = await conn.fetchval("SELECT pg_backend_pid()")
                await conn.executemany(f"INSERT INTO {table} VALUES ($1)",
                                       [(i,) for i in range(100)])
                await conn.execute(f"INSERT INTO {table} VALUES (1000)")
                await admin.fetchval("SELECT pg_terminate_backend($1)", [pid])
                await asyncio.sleep(0.2)
                await conn.execute(f"INSERT INTO {table} VALUES (1001)")
        assert await admin.fetchval(f"SELECT count(*) FROM {table}") == 0
        # an idle connection killed behind the pool's back is noticed by its
        # reader and never lent again
        conn = await pool.acquire()
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        pool.release(conn)
        await admin.fetchval("SELECT pg_terminate_backend($1)", [pid])
        for _ in range(500):
            if conn.is_closed:
                break
            await asyncio.sleep(0.02)
        assert conn.is_closed
        async with pool.transaction() as c2:
            assert c2 is not conn
            await c2.execute(f"INSERT INTO {table} VALUES (1)")
        assert await admin.fetchval(f"SELECT count(*) FROM {table}") == 1
        await admin.execute(f"DROP TABLE {table}")
        await pool.close()
        await admin.close()
    run(main())


def test_pg_cancelled_call_keeps_connection_consistent(run, postgres_url):
    async def main():
        pool = await db.create_pool(postgres_url, 1, 1)
        t = asyncio.ensure_future(pool.fetchval("SELECT pg_sleep(0.3)"))
        await asyncio.sleep(0)          # sent; its answer takes 0.3 s
        assert not t.done()
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        # the connection is settled (the sleep's answer drained), then reused
        assert await pool.fetchval("SELECT 41 + 1") == 42
        assert pool.size == 1 and pool.stats["broken"] == 0
        # cancelled inside a transaction: rolled back before reuse
        started = asyncio.Event()

        async def in_tx():
            async with pool.transaction() as conn:
                await conn.execute("CREATE TEMP TABLE fc_tmp_cancel (x int)")
                started.set()
                await conn.fetchval("SELECT pg_sleep(1)")
        t = asyncio.ensure_future(in_tx())
        await started.wait()            # the sleep is on the wire
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        await pool.close(timeout=10)
    run(main(), timeout=30)


def test_mysql_kill_mid_query(run, mysql_url):
    async def main():
        admin = await db.connect(mysql_url)
        pool = await db.create_pool(mysql_url, 1, 1, health_check_after=0)
        conn = await pool.acquire()
        tid = await conn.fetchval("SELECT CONNECTION_ID()")
        call = asyncio.ensure_future(conn.fetchval("SELECT SLEEP(30)"))
        await asyncio.sleep(0.2)
        await admin.execute(f"KILL {int(tid)}")
        with pytest.raises(DatabaseConnectionError):
            await call
        assert conn.is_closed
        pool.release(conn)
        assert await pool.fetchval("SELECT CONNECTION_ID()") != tid
        # an idle connection killed: the health check (health_check_after=0)
        # finds it dead and the pool opens another
        tid2 = await pool.fetchval("SELECT CONNECTION_ID()")
        await admin.execute(f"KILL {int(tid2)}")
        for _ in range(500):        # until the server has really dropped it
            if not await admin.fetchval("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                                        "WHERE ID = $1", [tid2]):
                break
            await asyncio.sleep(0.01)
        assert await pool.fetchval("SELECT CONNECTION_ID()") not in (tid, tid2)
        # a call cancelled mid-command drops its connection (protocol state unknown)
        t = asyncio.ensure_future(pool.fetchval("SELECT SLEEP(5)"))
        await asyncio.sleep(0.1)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        assert await pool.fetchval("SELECT 1") == 1
        await pool.close()
        await admin.close()
    run(main())


def test_mysql_kill_mid_transaction_applies_nothing(run, mysql_url, table):
    async def main():
        admin = await db.connect(mysql_url)
        await admin.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY) ENGINE=InnoDB")
        pool = await db.create_pool(mysql_url, 1, 1)
        with pytest.raises(DatabaseConnectionError):
            async with pool.transaction() as conn:
                tid = await conn.fetchval("SELECT CONNECTION_ID()")
                await conn.executemany(f"INSERT INTO {table} VALUES ($1)", [(i,) for i in range(50)])
                await admin.execute(f"KILL {int(tid)}")
                await conn.execute(f"INSERT INTO {table} VALUES (1000)")
        assert await admin.fetchval(f"SELECT count(*) FROM {table}") == 0
        async with pool.transaction() as conn:
            await conn.execute(f"INSERT INTO {table} VALUES (1)")
        assert await admin.fetchval(f"SELECT count(*) FROM {table}") == 1
        await admin.execute(f"DROP TABLE {table}")
        await pool.close()
        await admin.close()
    run(main())


def test_exhausted_pool_recovers_under_load(run, url):
    async def main():
        pool = await db.create_pool(url, 1, 3, acquire_timeout=10)
        results = await asyncio.gather(*(pool.fetchval("SELECT $1", [i]) for i in range(40)))
        assert [int(r) for r in results] == list(range(40))
        assert pool.size <= 3
        await pool.close()
    run(main())


class _CutProxy:
    """A TCP proxy in front of a server that can cut every connection and
    refuse new ones for a while: a server restart or a network cut, seen
    from the client, without touching the shared server."""

    def __init__(self, host, port):
        self.target = (host, port)
        self.down = False
        self.pairs = set()
        self.server = None

    async def start(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, r, w):
        if self.down:
            w.close()
            return
        try:
            ur, uw = await asyncio.open_connection(*self.target)
        except OSError:
            w.close()
            return
        pair = (w, uw)
        self.pairs.add(pair)

        async def pump(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()
        await asyncio.gather(pump(r, uw), pump(ur, w))
        self.pairs.discard(pair)

    def cut(self):
        for a, b in list(self.pairs):
            a.transport.abort()
            b.transport.abort()

    async def close(self):
        self.cut()
        self.server.close()
        await self.server.wait_closed()


@pytest.mark.parametrize("which", ["postgres", "mysql"])
def test_server_restart_while_pool_is_busy(run, request, which, table):
    import urllib.parse
    real = request.getfixturevalue(f"{which}_url")

    async def main():
        u = urllib.parse.urlsplit(real)
        proxy = _CutProxy(u.hostname, u.port)
        port = await proxy.start()
        url = real.replace(f"{u.hostname}:{u.port}", f"127.0.0.1:{port}")
        admin = await db.connect(real)
        await admin.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY)")
        pool = await db.create_pool(url, 2, 4, acquire_timeout=5, connect_timeout=2)
        errors, done = [], [0]
        stop = asyncio.Event()

        async def worker():
            while not stop.is_set():
                try:
                    assert await pool.fetchval("SELECT 1") == 1
                    done[0] += 1
                except db.DatabaseConnectionError as e:
                    errors.append(e)
                    await asyncio.sleep(0.01)

        # a transaction is open when the "server" goes away
        tx_conn = await pool.acquire()
        tx = tx_conn.transaction()
        await tx.start()
        await tx_conn.executemany(f"INSERT INTO {table} VALUES ($1)", [(i,) for i in range(20)])
        workers = [asyncio.ensure_future(worker()) for _ in range(8)]
        while done[0] < 20:
            await asyncio.sleep(0.01)
        proxy.down = True
        proxy.cut()
        await asyncio.sleep(0.3)
        with pytest.raises(db.DatabaseConnectionError):
            await tx_conn.execute(f"INSERT INTO {table} VALUES (100)")
        with pytest.raises(db.DatabaseConnectionError):
            await tx.commit()
        pool.release(tx_conn)
        proxy.down = False              # "restarted"
        before = done[0]
        while done[0] < before + 20:
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.gather(*workers)
        assert errors and all(isinstance(e, ConnectionError) for e in errors)
        assert pool.stats["broken"] >= 1 and pool.size <= 4
        # nothing of the cut transaction was applied
        for _ in range(100):
            n = await admin.fetchval(f"SELECT count(*) FROM {table}")
            if n == 0:
                break
            await asyncio.sleep(0.05)
        assert n == 0
        await pool.close()
        await proxy.close()
        await admin.execute(f"DROP TABLE {table}")
        await admin.close()
    run(main(), timeout=30)
