"""Shared helpers for the flowcoro.db tests (table setup, a second connection)."""
import contextlib

import flowcoro.db as db


async def make_table(conn, name, rows=0):
    """CREATE TABLE name (id, name, v) with ``rows`` rows (id 1..rows)."""
    await conn.execute(f"DROP TABLE IF EXISTS {name}")
    await conn.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, name VARCHAR(200), "
                       f"v DOUBLE PRECISION)")
    if rows:
        await conn.executemany(f"INSERT INTO {name} (id, name, v) VALUES ($1, $2, $3)",
                               [(i, f"n{i}", i * 0.5) for i in range(1, rows + 1)])


@contextlib.asynccontextmanager
async def connected(url, table=None, rows=0):
    """A connection (and a table with ``rows`` rows, dropped at the end)."""
    conn = await db.connect(url)
    try:
        if table:
            await make_table(conn, table, rows)
        yield conn
    finally:
        if table and not conn.is_closed:
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
        elif table:
            c2 = await db.connect(url)
            await c2.execute(f"DROP TABLE IF EXISTS {table}")
            await c2.close()
        await conn.close()
