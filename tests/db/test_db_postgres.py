"""PostgreSQL specifics: pipelining, the statement cache, binary/text results, COPY."""
import asyncio

import pytest

import flowcoro.db as db
from db_helpers import connected
from flowcoro.errors import DataError, InterfaceError, InvalidArgumentError, ProgrammingError


def test_concurrent_calls_pipeline_on_one_connection(run, postgres_url):
    async def main():
        conn = await db.connect(postgres_url)
        vals = await asyncio.gather(*(conn.fetchval("SELECT $1::int * 2", [i]) for i in range(200)))
        assert vals == [i * 2 for i in range(200)]
        # one failing call does not disturb its neighbours (one Sync each)
        calls = [conn.fetchval("SELECT 1 / $1::int", [i % 3]) for i in range(30)]
        out = await asyncio.gather(*calls, return_exceptions=True)
        for i, v in enumerate(out):
            if i % 3 == 0:
                assert isinstance(v, DataError) and v.sqlstate == "22012"
            else:
                assert v == 1 // (i % 3)
        assert not conn.busy
        await conn.close()
    run(main())


def test_statement_cache_eviction_and_invalidation(run, postgres_url, table):
    async def main():
        conn = await db.connect(postgres_url, statement_cache_size=4)
        for i in range(10):
            assert await conn.fetchval(f"SELECT {i} + $1::int", [1]) == i + 1
        assert len(conn._stmts) <= 4
        names = await conn.fetch("SELECT name FROM pg_prepared_statements")
        assert len(names) <= 5          # evicted ones are deallocated
        # a statement whose result type changed under it is re-prepared
        await conn.execute(f"CREATE TABLE {table} (id int, v int)")
        await conn.execute(f"INSERT INTO {table} VALUES (1, 2)")
        assert await conn.fetchrow(f"SELECT * FROM {table} WHERE id = $1", [1]) == (1, 2)
        await conn.execute(f"ALTER TABLE {table} ADD COLUMN w int DEFAULT 3")
        assert await conn.fetchrow(f"SELECT * FROM {table} WHERE id = $1", [1]) == (1, 2, 3)
        # DEALLOCATE ALL behind our back: the cache is dropped, the next call works
        await conn.execute("DEALLOCATE ALL")
        with pytest.raises(ProgrammingError):
            await conn.fetchrow(f"SELECT * FROM {table} WHERE id = $1", [1])
        assert await conn.fetchrow(f"SELECT * FROM {table} WHERE id = $1", [1]) == (1, 2, 3)
        await conn.execute(f"DROP TABLE {table}")
        await conn.close()
        # no cache at all
        conn = await db.connect(postgres_url, statement_cache_size=0, binary=False)
        assert await conn.fetchval("SELECT $1::numeric + 1", [1]) == 2
        assert await conn.fetchval("SELECT 'a'::text") == "a"
        await conn.close()
    run(main())


def test_types_round_trip(run, postgres_url):
    async def main():
        import datetime
        import decimal
        import uuid
        conn = await db.connect(postgres_url)
        vals = [True, 2 ** 40, -5, 1.5, "text é", b"\x00\xff", None,
                decimal.Decimal("1.25"), datetime.date(2024, 2, 29),
                datetime.datetime(2024, 1, 1, 12, 0, tzinfo=datetime.timezone.utc),
                uuid.UUID(int=7), [1, 2, 3], {"a": 1}]
        from psycopg.types.json import Jsonb
        for v in vals:
            p = Jsonb(v) if isinstance(v, dict) else v
            got = await conn.fetchval("SELECT $1", [p])
            if isinstance(v, dict):
                assert got == v
            else:
                assert got == v, (v, got)
        with pytest.raises(InterfaceError):
            await conn.fetchval("SELECT $1", [object()])
        await conn.close()
    run(main())


def test_copy_errors_and_big_copy(run, postgres_url, table):
    async def main():
        async with connected(postgres_url, table) as conn:
            with pytest.raises(InterfaceError):
                await conn.copy(table, [(1,)], ["nope"])
            with pytest.raises(InterfaceError):
                await conn.copy(table, [("not an int", "x", 1.0)], ["id", "name", "v"])
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0
            rows = [(i, "x" * 50, float(i)) for i in range(60000)]
            # concurrent calls wait for the COPY, then run
            other = asyncio.ensure_future(conn.fetchval("SELECT 9"))
            assert await conn.copy(table, rows, ["id", "name", "v"]) == 60000
            assert await other == 9
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 60000
            # executemany: a bad row (dump error) mid-batch leaves nothing behind
            with pytest.raises(InterfaceError):
                await conn.executemany(f"INSERT INTO {table} (id) VALUES ($1)",
                                       [(70000 + i,) for i in range(3000)] + [(object(),)])
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 60000
            n = await conn.executemany(f"INSERT INTO {table} (id, name) VALUES ($1, $2)",
                                       [(100000 + i, None if i % 2 else "s") for i in range(5000)])
            assert n == 5000
    run(main())


def test_cursor_error_inside_transaction(run, postgres_url):
    async def main():
        conn = await db.connect(postgres_url)
        async with conn.transaction():
            with pytest.raises(ProgrammingError):
                async for _ in conn.cursor("SELECT * FROM fc_no_such_table_zz"):
                    pass
        assert not conn.in_transaction
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
    run(main())


def test_pool_pipelines_one_statement_calls(run, postgres_url):
    async def main():
        pool = await db.create_pool(postgres_url, 2, 2, pipeline=4, acquire_timeout=0.5)
        held = await pool.acquire()          # lent: never shared
        calls = [pool.fetchval("SELECT $1::int FROM pg_sleep(0.05)", [i]) for i in range(4)]
        calls.append(pool.fetchval("SELECT 1 / 0"))
        calls += [pool.fetch("SELECT $1::int AS x", [7], mapping=True),
                  pool.fetchrow("SELECT 8"), pool.execute("SELECT 9")]
        out = await asyncio.gather(*calls, return_exceptions=True)
        assert out[:4] == [0, 1, 2, 3] and isinstance(out[4], DataError)
        assert out[5] == [{"x": 7}] and out[6] == (8,) and out[7].rows == [(9,)]
        assert pool.size == 2 and not pool._shared
        assert not held.busy
        pool.release(held)
        assert pool.idle == 2
        # more calls than pipeline x size: the rest wait their turn (and time out)
        slow = [pool.fetchval("SELECT pg_sleep(0.3)") for _ in range(8)]
        more = pool.fetchval("SELECT 1")
        out = await asyncio.gather(*slow, more, return_exceptions=True)
        assert isinstance(out[-1], db.PoolTimeout)
        await pool.close()
        with pytest.raises(InvalidArgumentError):
            db.create_pool(postgres_url, pipeline=0)
    run(main())


def test_begin_rides_with_the_first_statement(run, postgres_url, table):
    async def main():
        conn = await db.connect(postgres_url)
        async with conn.transaction():
            assert conn.in_transaction and conn._begin_sql is not None   # nothing sent yet
        assert not conn.in_transaction and conn._begin_sql is None
        # the first statement fails: the transaction did start (it is aborted now)
        with pytest.raises(DataError):
            async with conn.transaction():
                try:
                    await conn.fetchval("SELECT 1 / 0")
                except DataError:
                    with pytest.raises(ProgrammingError) as ei:     # 25P02: in failed transaction
                        await conn.fetchval("SELECT 1")
                    assert ei.value.sqlstate == "25P02"
                    raise
        assert not conn.in_transaction
        # first statements of other kinds carry it too
        await conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
        for first in ("executemany", "prepare", "savepoint"):
            with pytest.raises(KeyError):
                async with conn.transaction():
                    if first == "executemany":
                        await conn.executemany(f"INSERT INTO {table} VALUES ($1)", [(1,), (2,)])
                    elif first == "prepare":
                        await conn.prepare(f"SELECT id FROM {table}")
                        await conn.execute(f"INSERT INTO {table} VALUES (3)")
                    else:
                        async with conn.transaction():
                            await conn.execute(f"INSERT INTO {table} VALUES (4)")
                    assert await conn.fetchval(f"SELECT count(*) FROM {table}") > 0
                    raise KeyError
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0
        await conn.execute(f"DROP TABLE {table}")
        await conn.close()
    run(main())


def test_calls_wait_for_copy_and_batches(run, postgres_url, table):
    async def main():
        async with connected(postgres_url, table) as conn:
            ins = f"INSERT INTO {table} (id) VALUES ($1)"
            sleeper = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(0.1)"))
            await asyncio.sleep(0)
            # COPY waits for the call in flight; the others wait for the COPY
            jobs = [conn.copy(table, [(i, "c", 1.0) for i in range(1, 3001)], ["id", "name", "v"]),
                    conn.executemany(ins, [(i,) for i in range(5000, 5100)]),
                    conn.executemany(ins, [(i,) for i in range(6000, 6100)]),
                    conn.prepare(f"SELECT id FROM {table}"),
                    conn.fetchval(f"SELECT count(*) FROM {table}")]
            tasks = [asyncio.ensure_future(j) for j in jobs]
            await asyncio.sleep(0)
            settle = asyncio.ensure_future(conn._drain())
            out = await asyncio.gather(*tasks)
            await settle
            await sleeper
            assert out[0] == 3000 and out[1] == 100 and out[2] == 100
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 3200
            # COPY into something that is not a table: the server's error, connection fine
            await conn.execute(f"CREATE VIEW {table}_v AS SELECT * FROM {table}")
            with pytest.raises(ProgrammingError):
                await conn.copy(f"{table}_v", [(1, "x", 1.0)], ["id", "name", "v"])
            await conn.execute(f"DROP VIEW {table}_v")
            # an unsent BEGIN rolled back: nothing to send
            tx = conn.transaction()
            await tx.start()
            await tx.rollback()
            assert not conn.in_transaction
            # close() with a call in flight: the call is told
            pending = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(5)"))
            await asyncio.sleep(0.05)
            await conn.close()
            assert repr(conn).startswith("<PostgresConnection closed")
            with pytest.raises(InterfaceError):
                await pending
    run(main())
