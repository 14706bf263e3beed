"""Behaviour every backend shares (SQLite, PostgreSQL, MariaDB), on each loop."""
import pytest

import flowcoro.db as db
from db_helpers import connected, make_table
from flowcoro.errors import DatabaseError, IntegrityError, InterfaceError, ProgrammingError


def test_execute_fetch_family(run, url, table, backend):
    async def main():
        async with connected(url, table, rows=3) as conn:
            r = await conn.execute(f"SELECT id, name, v FROM {table} ORDER BY id")
            assert r.columns == ("id", "name", "v")
            assert r.rows == [(1, "n1", 0.5), (2, "n2", 1.0), (3, "n3", 1.5)]
            assert r.rowcount == 3 and len(r) == 3 and list(r) == r.rows
            assert r.mappings()[0] == {"id": 1, "name": "n1", "v": 0.5}
            assert r.scalar() == 1
            assert "rows=3" in repr(r)
            assert await conn.fetch(f"SELECT id FROM {table} WHERE id > $1 ORDER BY id", [1]) \
                == [(2,), (3,)]
            assert await conn.fetch(f"SELECT id FROM {table} WHERE id = $1", [2], mapping=True) \
                == [{"id": 2}]
            assert await conn.fetchrow(f"SELECT id, name FROM {table} WHERE id = $1", [3]) \
                == (3, "n3")
            assert await conn.fetchrow(f"SELECT id, name FROM {table} WHERE id = $1", [3],
                                       mapping=True) == {"id": 3, "name": "n3"}
            assert await conn.fetchrow(f"SELECT id FROM {table} WHERE id = $1", [99]) is None
            assert await conn.fetchval(f"SELECT name FROM {table} WHERE id = $1", [2]) == "n2"
            assert await conn.fetchval(f"SELECT id, name FROM {table} WHERE id = $1", [2], 1) == "n2"
            assert await conn.fetchval(f"SELECT id FROM {table} WHERE id = $1", [99]) is None
            up = await conn.execute(f"UPDATE {table} SET v = v + 1 WHERE id >= $1", [2])
            assert up.rowcount == 2 and up.rows == [] and up.columns == ()
            ins = await conn.execute(f"INSERT INTO {table} (id, name, v) VALUES ($1, $2, $3)",
                                     [10, "ten", None])
            assert ins.rowcount == 1
            if backend == "postgres":
                assert ins.lastrowid is None
            if backend == "sqlite":
                assert ins.lastrowid == 10
            assert await conn.fetchrow(f"SELECT v FROM {table} WHERE id = 10") == (None,)
            assert db.QueryResult([], ()).scalar() is None
    run(main())


def test_parameter_style(run, url, table):
    async def main():
        async with connected(url, table) as conn:
            # $1 twice, out of order, and "$1" inside a literal and a comment untouched
            await conn.execute(
                f"INSERT INTO {table} (id, name, v) VALUES ($2, '$1 it''s', $1) -- $3 here\n",
                [2.5, 7])
            assert await conn.fetchrow(f"SELECT id, name, v FROM {table} /* $1 */ WHERE id = $1 "
                                       f"AND v = $2", [7, 2.5]) == (7, "$1 it's", 2.5)
            assert await conn.fetchval(f"SELECT count(*) FROM {table} WHERE id = $1 OR id = $1",
                                       [7]) == 1
            weird = "quote ' double \" back \\ percent % dollar $1"
            await conn.execute(f"INSERT INTO {table} (id, name) VALUES ($1, $2)", [8, weird])
            assert await conn.fetchval(f"SELECT name FROM {table} WHERE id = $1", [8]) == weird
            with pytest.raises(InterfaceError):
                await conn.execute(f"SELECT id FROM {table} WHERE name = $1", "abc")
    run(main())


def test_executemany_is_all_or_nothing(run, url, table):
    async def main():
        async with connected(url, table) as conn:
            n = await conn.executemany(f"INSERT INTO {table} (id, name, v) VALUES ($1, $2, $3)",
                                       [(i, f"n{i}", 1.0) for i in range(1, 51)])
            assert n == 50
            assert await conn.executemany(f"INSERT INTO {table} (id) VALUES ($1)", []) == 0
            rows = [(i, "x", 0.0) for i in range(100, 110)] + [(5, "dup", 0.0)]
            with pytest.raises(IntegrityError):
                await conn.executemany(f"INSERT INTO {table} (id, name, v) VALUES ($1, $2, $3)",
                                       rows)
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 50
            assert not conn.in_transaction
            # inside a transaction it joins that transaction
            async with conn.transaction():
                await conn.executemany(f"UPDATE {table} SET v = $1 WHERE id = $2",
                                       [(2.0, 1), (3.0, 2)])
            assert await conn.fetchval(f"SELECT v FROM {table} WHERE id = 2") == 3.0
    run(main())


def test_transactions_and_savepoints(run, url, table):
    async def main():
        async with connected(url, table) as conn:
            ins = f"INSERT INTO {table} (id, name) VALUES ($1, 'x')"
            async with conn.transaction() as c:
                assert c is conn and conn.in_transaction
                await conn.execute(ins, [1])
            assert not conn.in_transaction
            with pytest.raises(ZeroDivisionError):
                async with conn.transaction():
                    await conn.execute(ins, [2])
                    1 / 0
            async with conn.transaction():
                await conn.execute(ins, [3])
                with pytest.raises(KeyError):
                    async with conn.transaction() as inner:
                        await inner.execute(ins, [4])
                        raise KeyError
                async with conn.transaction():          # a savepoint that commits
                    await conn.execute(ins, [5])
                await conn.execute(ins, [6])
            ids = [r[0] for r in await conn.fetch(f"SELECT id FROM {table} ORDER BY id")]
            assert ids == [1, 3, 5, 6]
            # an error inside a savepoint leaves the outer transaction usable
            async with conn.transaction():
                with pytest.raises(IntegrityError):
                    async with conn.transaction():
                        await conn.execute(ins, [1])
                await conn.execute(ins, [7])
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 5
    run(main())


def test_transaction_options(run, url, table, backend):
    async def main():
        async with connected(url, table, rows=1) as conn:
            for level in ("read committed", "REPEATABLE_READ", "serializable"):
                async with conn.transaction(isolation=level):
                    assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 1
            with pytest.raises(InterfaceError):
                conn.transaction(isolation="sloppy")
            with pytest.raises(DatabaseError):
                async with conn.transaction(readonly=True):
                    assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 1
                    await conn.execute(f"INSERT INTO {table} (id) VALUES (2)")
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 1
            # after a read-only transaction, writes work again
            await conn.execute(f"INSERT INTO {table} (id) VALUES (3)")
            async with conn.transaction():
                with pytest.raises(InterfaceError):
                    async with conn.transaction(readonly=True):
                        pass
            # by hand
            tx = conn.transaction()
            await tx.start()
            await conn.execute(f"INSERT INTO {table} (id) VALUES (4)")
            await tx.rollback()
            tx2 = conn.transaction()
            await tx2.start()
            with pytest.raises(InterfaceError):
                await tx2.start()
            await conn.execute(f"INSERT INTO {table} (id) VALUES (5)")
            await tx2.commit()
            with pytest.raises(InterfaceError):
                await tx2.commit()
            assert "committed" in repr(tx2)
            ids = [r[0] for r in await conn.fetch(f"SELECT id FROM {table} ORDER BY id")]
            assert ids == [1, 3, 5]
            # out-of-order ends are refused
            outer = conn.transaction()
            await outer.start()
            inner = conn.transaction()
            await inner.start()
            assert inner.savepoint == "fc_sp_2" and outer.savepoint is None
            with pytest.raises(InterfaceError):
                await outer.commit()
            await inner.rollback()
            await outer.rollback()
            assert not conn.in_transaction
    run(main())


def test_cursor_streams_in_batches(run, url, table):
    async def main():
        async with connected(url, table, rows=250) as conn:
            seen = []
            async with conn.cursor(f"SELECT id, name FROM {table} WHERE id > $1 ORDER BY id",
                                   [0], batch_size=100) as cur:
                async for row in cur:
                    seen.append(row)
            assert cur.columns == ("id", "name")
            assert [r[0] for r in seen] == list(range(1, 251))
            # stop early, then the connection is usable
            cur = conn.cursor(f"SELECT id FROM {table} ORDER BY id", batch_size=10, mapping=True)
            first = await cur.__anext__()
            assert first == {"id": 1}
            more = await cur.fetchmany()
            assert [r["id"] for r in more] == list(range(2, 11))
            await cur.aclose()
            await cur.aclose()
            assert await cur.fetchmany() == []
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 250
            assert not conn.in_transaction
            # inside a transaction, sees the transaction's rows
            async with conn.transaction():
                await conn.execute(f"DELETE FROM {table} WHERE id > 5")
                rows = [r async for r in conn.iterate(f"SELECT id FROM {table} ORDER BY id",
                                                      batch_size=2)]
                assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
                assert conn.in_transaction
            # an empty result
            assert [r async for r in conn.cursor(f"SELECT id FROM {table} WHERE id < 0")] == []
            with pytest.raises(InterfaceError):
                conn.cursor("SELECT 1", batch_size=0)
            # a bad statement raises from the first fetch
            with pytest.raises(ProgrammingError):
                async for _ in conn.cursor("SELECT * FROM no_such_table_fc"):
                    pass
            assert await conn.fetchval("SELECT 1") == 1
    run(main())


def test_prepared_statements(run, url, table, backend):
    async def main():
        async with connected(url, table, rows=5) as conn:
            st = await conn.prepare(f"SELECT name FROM {table} WHERE id = $1")
            assert st.nparams == 1
            for i in range(1, 6):
                assert await st.fetchval([i]) == f"n{i}"
            assert await st.fetchrow([2]) == ("n2",)
            assert await st.fetch([3], mapping=True) == [{"name": "n3"}]
            assert (await st.execute([4])).rows == [("n4",)]
            assert [r async for r in st.cursor([5])] == [("n5",)]
            ins = await conn.prepare(f"INSERT INTO {table} (id, name) VALUES ($1, $2)")
            assert await ins.executemany([(10, "a"), (11, "b")]) == 2
            assert "PreparedStatement" in repr(ins)
            if backend == "postgres":
                assert st.columns == ("name",)
            if backend != "mysql":      # MySQL statements are parsed client-side
                with pytest.raises(ProgrammingError):
                    await conn.prepare("SELEC nothing")
    run(main())


def test_errors_are_one_hierarchy(run, url, table, backend):
    async def main():
        async with connected(url, table, rows=1) as conn:
            with pytest.raises(IntegrityError) as ei:
                await conn.execute(f"INSERT INTO {table} (id) VALUES ($1)", [1])
            e = ei.value
            assert e.__cause__ is not None
            assert type(e.__cause__).__module__.split(".")[0] in ("psycopg", "asyncmy", "sqlite3")
            if backend == "postgres":
                assert e.sqlstate == "23505"
            else:
                assert e.errno is not None
            with pytest.raises(ProgrammingError):
                await conn.execute("SELECT * FROM fc_no_such_table_at_all")
            # the connection is still fine
            assert await conn.fetchval("SELECT 2") == 2
    run(main())


def test_copy_rows(run, url, table):
    async def main():
        async with connected(url, table) as conn:
            rows = [(i, f"c{i}", i / 4) for i in range(1, 1001)] + [(2000, None, None)]
            assert await conn.copy(table, rows, ["id", "name", "v"]) == 1001
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 1001
            assert await conn.fetchrow(f"SELECT id, name, v FROM {table} WHERE id = 7") \
                == (7, "c7", 1.75)
            assert await conn.fetchrow(f"SELECT name FROM {table} WHERE id = 2000") == (None,)
            with pytest.raises(DatabaseError):
                await conn.copy(table, [(1, "dup", 0.0)], ["id", "name", "v"])
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 1001
    run(main())


def test_closed_connection(run, url):
    async def main():
        conn = await db.connect(url)
        assert not conn.is_closed
        async with conn:
            assert await conn.fetchval("SELECT 1") == 1
            await conn.ping()
        assert conn.is_closed
        await conn.close()
        with pytest.raises(InterfaceError):
            await conn.execute("SELECT 1")
        with pytest.raises(InterfaceError):
            await conn.executemany("SELECT $1", [(1,)])
        assert "closed" in repr(conn)
    run(main())


def test_pool_basics(run, url, table):
    async def main():
        async with db.create_pool(url, min_size=1, max_size=3) as pool:
            async with pool.acquire() as conn:
                await make_table(conn, table, rows=3)
            assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 3
            assert await pool.fetchrow(f"SELECT id FROM {table} WHERE id = $1", [2]) == (2,)
            assert await pool.fetch(f"SELECT id FROM {table} ORDER BY id", mapping=True) \
                == [{"id": 1}, {"id": 2}, {"id": 3}]
            assert (await pool.execute(f"DELETE FROM {table} WHERE id = $1", [3])).rowcount == 1
            assert await pool.executemany(f"INSERT INTO {table} (id) VALUES ($1)",
                                          [(10,), (11,)]) == 2
            assert await pool.copy(table, [(20, "x", 1.0)], ["id", "name", "v"]) == 1
            async with pool.transaction() as conn:
                await conn.execute(f"INSERT INTO {table} (id) VALUES (30)")
            with pytest.raises(RuntimeError):
                async with pool.transaction() as conn:
                    await conn.execute(f"INSERT INTO {table} (id) VALUES (31)")
                    raise RuntimeError
            st = await pool.prepare(f"SELECT id FROM {table} WHERE id = $1")
            assert await st.fetchval([30]) == 30
            ids = [r[0] async for r in pool.cursor(f"SELECT id FROM {table} ORDER BY id",
                                                   batch_size=2)]
            assert ids == [1, 2, 10, 11, 20, 30]
            assert pool.idle == pool.size and pool.size <= 3
            await pool.execute(f"DROP TABLE {table}")
        assert pool.closed
    run(main())


def test_transaction_edges(run, url, table):
    async def main():
        async with connected(url, table) as conn:
            # committed by hand inside the block: the block's end does nothing more
            async with conn.transaction() as c:
                await c.execute(f"INSERT INTO {table} (id) VALUES (1)")
            tx = conn.transaction()
            async with tx:
                await conn.execute(f"INSERT INTO {table} (id) VALUES (2)")
                await tx.commit()
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 2
            # a rollback that fails closes the connection; the block's error wins
            other = await db.connect(url)

            async def broken_rollback():
                raise db.OperationalError("rollback failed")
            other._rollback = broken_rollback
            with pytest.raises(KeyError):
                async with other.transaction():
                    await other.execute(f"INSERT INTO {table} (id) VALUES (3)")
                    raise KeyError
            assert other.is_closed
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 2
    run(main())
