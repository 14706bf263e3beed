"""MySQL/MariaDB specifics: calls on one connection take turns; parameters."""
import asyncio

import pytest

import flowcoro.db as db
from flowcoro.errors import InterfaceError


def test_concurrent_calls_take_turns(run, mysql_url):
    async def main():
        conn = await db.connect(mysql_url)
        vals = await asyncio.gather(*(conn.fetchval("SELECT $1 * 2", [i]) for i in range(50)))
        assert vals == [i * 2 for i in range(50)]
        # a call waiting for its turn can be cancelled without harm
        slow = asyncio.ensure_future(conn.fetchval("SELECT SLEEP(0.5)"))
        for _ in range(3):
            await asyncio.sleep(0)      # slow has the turn (its reply takes 0.5 s)
        waiting = asyncio.ensure_future(conn.fetchval("SELECT 1"))
        after = asyncio.ensure_future(conn.fetch("SELECT 2 AS two", mapping=True))
        for _ in range(3):
            await asyncio.sleep(0)      # both queued behind it
        assert conn.busy and len(conn._turns) == 2
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await slow == 0
        assert await after == [{"two": 2}]
        assert await conn.fetchrow("SELECT 3 AS three", mapping=True) == {"three": 3}
        assert await conn.fetchrow("SELECT 3 FROM DUAL WHERE 1 = 0", mapping=True) is None
        assert not conn.busy
        # a cursor holds the connection until it is closed; others wait
        cur = conn.cursor("WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s "
                          "WHERE n < 100) SELECT n FROM s", batch_size=10)
        first = await cur.fetchmany()
        other = asyncio.ensure_future(conn.fetchval("SELECT 5"))
        await asyncio.sleep(0.02)
        assert not other.done() and conn.busy
        await cur.aclose()
        assert await other == 5 and len(first) == 10
        with pytest.raises(InterfaceError):
            await conn.fetchval("SELECT $2", [1])
        await conn.close()
        await conn.close()
    run(main())


def test_connect_refused(run):
    async def main():
        with pytest.raises(db.DatabaseConnectionError):
            await db.connect("mysql://root@127.0.0.1:1/test", connect_timeout=1)
    run(main())
