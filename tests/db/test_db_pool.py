"""flowcoro.db.Pool: sizes, waiting, timeouts, settling, retiring, closing."""
import asyncio

import pytest

import flowcoro.db as db
from flowcoro.errors import (InvalidArgumentError, PoolClosedError, PoolTimeoutError)


def test_exhaustion_times_out_then_recovers(run, url):
    async def main():
        pool = await db.create_pool(url, min_size=0, max_size=2, acquire_timeout=0.2)
        a = await pool.acquire()
        b = await pool.acquire()
        assert pool.size == 2 and pool.idle == 0
        with pytest.raises(db.PoolTimeout) as ei:
            await pool.acquire()
        assert isinstance(ei.value, TimeoutError) and isinstance(ei.value, PoolTimeoutError)
        assert pool.stats["timeouts"] == 1
        with pytest.raises(db.PoolTimeout):
            await pool.fetchval("SELECT 1")
        # a waiter is handed the next connection given back (FIFO)
        w1 = asyncio.ensure_future(pool.acquire(timeout=5))
        w2 = asyncio.ensure_future(pool.acquire(timeout=5))
        await asyncio.sleep(0.01)
        pool.release(a)
        assert await w1 is a
        assert not w2.done()
        pool.release(b)
        assert await w2 is b
        pool.release(a)
        pool.release(a)                 # twice: harmless
        pool.release(b)
        assert await pool.fetchval("SELECT 3") == 3
        assert "idle=2" in repr(pool)
        await pool.close()
    run(main())


def test_cancelled_waiter_leaves_no_trace(run, tmp_path):
    async def main():
        pool = await db.create_pool(f"sqlite://{tmp_path}/p.db", 1, 1)
        conn = await pool.acquire()
        w = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0.01)
        w.cancel()
        with pytest.raises(asyncio.CancelledError):
            await w
        assert not pool._waiters
        pool.release(conn)
        # a waiter cancelled after a connection was handed to it passes it on
        conn = await pool.acquire()
        w = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0.01)
        pool.release(conn)          # hands conn to w's future
        w.cancel()                  # ... but w gives up before running
        with pytest.raises(asyncio.CancelledError):
            await w
        assert pool.idle == 1 and pool.size == 1
        async with pool.acquire() as c2:
            assert c2 is conn
        await pool.close()
    run(main())


def test_release_settles_open_transaction(run, url, table):
    async def main():
        async with db.create_pool(url, 1, 1) as pool:
            async with pool.acquire() as conn:
                await conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
            conn = await pool.acquire()
            tx = conn.transaction()
            await tx.start()
            await conn.execute(f"INSERT INTO {table} (id) VALUES (1)")
            pool.release(conn)          # transaction still open: rolled back
            async with pool.acquire() as again:
                assert again is conn
                assert not again.in_transaction
                assert await again.fetchval(f"SELECT count(*) FROM {table}") == 0
            with pytest.raises(InvalidArgumentError):
                pool.release(object())
            await pool.execute(f"DROP TABLE {table}")
    run(main())


def test_broken_connection_is_dropped_and_replaced(run, url):
    async def main():
        pool = await db.create_pool(url, 1, 1, acquire_timeout=5)
        conn = await pool.acquire()
        waiter = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0.01)
        await conn.close()              # as if it broke
        pool.release(conn)
        fresh = await waiter
        assert fresh is not conn and not fresh.is_closed
        assert pool.stats["broken"] == 1 and pool.size == 1
        pool.release(fresh)
        assert await pool.fetchval("SELECT 5") == 5
        await pool.close()
    run(main())


def test_close_drains_gracefully(run, url):
    async def main():
        pool = await db.create_pool(url, 2, 3)
        lent = await pool.acquire()
        waiter_pool = await db.create_pool(url, 0, 1)
        held = await waiter_pool.acquire()
        w = asyncio.ensure_future(waiter_pool.acquire())
        await asyncio.sleep(0.01)

        async def give_back_later():
            await asyncio.sleep(0.1)
            assert await lent.fetchval("SELECT 1") == 1      # still usable while closing
            pool.release(lent)
        t = asyncio.ensure_future(give_back_later())
        await pool.close()
        assert t.done() and lent.is_closed and pool.size == 0 and pool.closed
        with pytest.raises(PoolClosedError):
            await pool.acquire()
        await pool.close()              # twice: fine
        # waiters are told; a connection never given back is closed at the timeout
        closing = asyncio.ensure_future(waiter_pool.close(timeout=0.1))
        with pytest.raises(PoolClosedError):
            await w
        await closing
        assert held.is_closed
        waiter_pool.release(held)       # given back after close() closed it: harmless
        # a pool used without open(): opened by the first acquire
        lazy = db.create_pool(url, 1, 1)
        assert await lazy.fetchval("SELECT 7") == 7
        await lazy.terminate()
    run(main())


def test_lifetime_idle_and_health_check(run, url):
    async def main():
        pool = await db.create_pool(url, 1, 3, max_lifetime=0.05, health_check_after=0)
        first = await pool.acquire()
        pool.release(first)
        await asyncio.sleep(0.1)
        second = await pool.acquire()          # the first one is too old now
        assert second is not first and pool.stats["retired"] >= 1
        pool.release(second)
        await pool.close()
        # idle connections beyond min_size are closed by maintenance
        pool = await db.create_pool(url, 1, 3, max_idle=0.05)
        conns = [await pool.acquire() for _ in range(3)]
        for c in conns:
            pool.release(c)
        assert pool.size == 3
        for _ in range(40):
            if pool.size == 1:
                break
            await asyncio.sleep(0.1)
        assert pool.size == 1 and pool.idle == 1
        # a dropped connection is refilled to min_size
        c = await pool.acquire()
        await c.close()
        pool.release(c)
        for _ in range(40):
            if pool.size == 1 and pool.idle == 1:
                break
            await asyncio.sleep(0.1)
        assert pool.size == 1 and pool.idle == 1
        await pool.close()
    run(main())


def test_invalid_arguments():
    async def opener():        # never called
        raise AssertionError
    for kw in ({"max_size": 0}, {"min_size": 5, "max_size": 2}, {"max_idle": -1},
               {"acquire_timeout": -1}, {"max_size": True}):
        with pytest.raises(InvalidArgumentError):
            db.Pool(opener, **kw)


def test_memory_sqlite_pool_is_one_connection(run):
    async def main():
        pool = await db.create_pool("sqlite://:memory:", 2, 10)
        assert pool.max_size == 1
        await pool.execute("CREATE TABLE m (x INTEGER)")
        await pool.execute("INSERT INTO m VALUES (1)")
        assert await pool.fetchval("SELECT count(*) FROM m") == 1
        await pool.close()
    run(main())


def test_connect_failure_frees_the_slot(run):
    async def main():
        pool = db.create_pool("postgresql://postgres@127.0.0.1:1/none", 0, 1,
                              connect_timeout=1)
        for _ in range(2):
            with pytest.raises(db.DatabaseConnectionError):
                await pool.fetchval("SELECT 1")
        assert pool.size == 0
        await pool.close()
        bad = db.create_pool("mysql://root@127.0.0.1:1/none", 1, 1, connect_timeout=1)
        with pytest.raises(db.DatabaseConnectionError):
            await bad.open()
    run(main())


def test_pool_internals_with_failing_opener(run, tmp_path):
    async def main():
        url = f"sqlite://{tmp_path}/f.db"
        fail = {"on": False}

        async def opener():
            if fail["on"]:
                raise db.DatabaseConnectionError("server down")
            return await db.connect(url)
        pool = db.Pool(opener, min_size=1, max_size=1, max_idle=0.05, max_lifetime=0.3,
                       acquire_timeout=5)
        await pool
        await pool.open()               # twice: no-op
        conn = await pool.acquire()
        waiter = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0.01)
        fail["on"] = True
        await conn.close()
        pool.release(conn)              # broken: the replacement for the waiter fails
        with pytest.raises(db.DatabaseConnectionError):
            await waiter
        assert pool.size == 0
        fail["on"] = False
        # maintenance refills min_size, then retires by lifetime and drops broken ones
        for _ in range(50):
            if pool.idle:
                break
            await asyncio.sleep(0.05)
        assert pool.idle == 1
        c = pool._idle[0]
        await c.close()                 # broken while idle
        for _ in range(50):
            if pool.stats["broken"] >= 2:
                break
            await asyncio.sleep(0.05)
        assert pool.stats["broken"] >= 2
        for _ in range(50):
            if pool.stats["retired"] >= 1:
                break
            await asyncio.sleep(0.05)
        assert pool.stats["retired"] >= 1
        # closing while a connection is being opened for a caller
        fail["on"] = True
        await pool.close()
        assert pool.size == 0
        slow = {"n": 0}

        async def slow_opener():
            await asyncio.sleep(0.1)
            return await db.connect(url)
        p2 = db.Pool(slow_opener, min_size=0, max_size=1)
        await p2.open()
        t = asyncio.ensure_future(p2.acquire())
        await asyncio.sleep(0.01)
        await p2.close()
        with pytest.raises(db.PoolClosedError):
            await t
        assert p2.size == 0
        # sqlite extras
        c = await db.connect(url)
        assert await c.in_transaction_now() is False
        cur = c.cursor("SELECT 1 UNION ALL SELECT 2", batch_size=1)
        assert await cur.fetchmany() == [(1,)]
        await c.close()                 # closes the open cursor too
        assert "closed" in repr(c)
    run(main())
