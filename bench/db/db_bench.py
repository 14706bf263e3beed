"""flowcoro.db side by side with psycopg_pool, asyncpg and asyncmy, in one run.

    .venv/bin/python bench/db/db_bench.py [--rounds 3] [--seconds 5] [--conc 50]
        [--only pk,tx,bulk,mysql] [--loop uvloop|asyncio|flowcoro]

Workloads follow ../shared/bench/db (its README and BASELINE.md):
  pk     --conc tasks looping SELECT id, name, value FROM bench_pk WHERE id = <random>
         (10,000 rows) through each subject's pool; queries/s
  tx     --conc tasks looping BEGIN; UPDATE bench_tx SET n = n + 1 WHERE id = ?;
         SELECT that row; COMMIT; transactions/s (sum(n) checked afterwards)
  bulk   100,000 rows (id int, name text, value float) into an empty table, per
         variant: copy (COPY FROM STDIN) and executemany (in one transaction); rows/s
  mysql  the pk workload on MariaDB: flowcoro.db pool vs asyncmy's own pool
Subjects (pools of --conc connections, autocommit):
  flowcoro     flowcoro.db.create_pool(min=max=conc) (psycopg underneath, pipeline mode)
  flowcoro-pipelined  the same with conc/5 connections and pipeline=5: one-statement
               calls share a busy connection (the tx workload still takes one each)
  psycopg-pool psycopg_pool.AsyncConnectionPool (psycopg 3, C implementation)
  asyncpg      asyncpg.create_pool (when installed)
  asyncmy      asyncmy.create_pool (MySQL only)
Each round runs every subject of a workload once, the order rotated per
round; the table gives the median (min-max) over rounds and the client CPU
per operation (process_time / ops: the client library's own cost).  Every
subject runs on the same loop (--loop, default uvloop) in this one process.
"""
import argparse
import asyncio
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import flowcoro  # noqa: E402
import flowcoro.db as fdb  # noqa: E402

PG_URL = os.environ.get("PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
N_PK, N_BULK = 10_000, 100_000


def row(i):
    return (i, f"name-{i}", i * 1.25)


# -- subjects: each returns dict(pk=, tx=, bulk={variant: fn}, close=) ---------------------
async def flowcoro_pg(conc, size=None, pipeline=1):
    size = size or conc
    pool = await fdb.create_pool(PG_URL, size, size, pipeline=pipeline)
    pk_sql = "SELECT id, name, value FROM bench_pk WHERE id = $1"

    async def pk(i):
        return await pool.fetchrow(pk_sql, [i])

    async def tx(i):
        async with pool.transaction() as c:
            await c.execute("UPDATE bench_tx SET n = n + 1 WHERE id = $1", [i])
            return await c.fetchrow("SELECT id, name, value, n FROM bench_tx WHERE id = $1", [i])

    async def copy(table, rows):
        await pool.copy(table, rows, ["id", "name", "value"])

    async def many(table, rows):
        async with pool.transaction() as c:
            await c.executemany(f"INSERT INTO {table} (id, name, value) VALUES ($1, $2, $3)", rows)
    return dict(pk=pk, tx=tx, bulk={"copy": copy, "executemany": many}, close=pool.close)


async def flowcoro_pg_pipelined(conc):
    """flowcoro.db with a pool of conc/5 connections, 5 calls pipelined on each."""
    size = max(1, conc // 5)
    ops = await flowcoro_pg(conc, size=size, pipeline=5)
    del ops["bulk"], ops["tx"]          # bulk: same code as flowcoro's; tx: one connection each
    return ops


async def psycopg_pool_pg(conc):
    from psycopg_pool import AsyncConnectionPool
    pool = AsyncConnectionPool(PG_URL, min_size=conc, max_size=conc, open=False,
                               kwargs={"autocommit": True})
    await pool.open(wait=True)

    async def pk(i):
        async with pool.connection() as c:
            cur = await c.execute("SELECT id, name, value FROM bench_pk WHERE id = %s", (i,))
            return await cur.fetchone()

    async def tx(i):
        async with pool.connection() as c, c.transaction():
            await c.execute("UPDATE bench_tx SET n = n + 1 WHERE id = %s", (i,))
            cur = await c.execute("SELECT id, name, value, n FROM bench_tx WHERE id = %s", (i,))
            return await cur.fetchone()

    async def copy(table, rows):
        async with pool.connection() as c, c.transaction(), c.cursor() as cur:
            async with cur.copy(f"COPY {table} (id, name, value) FROM STDIN") as cp:
                for r in rows:
                    await cp.write_row(r)

    async def many(table, rows):
        async with pool.connection() as c, c.transaction(), c.cursor() as cur:
            await cur.executemany(f"INSERT INTO {table} (id, name, value) VALUES (%s, %s, %s)",
                                  rows)
    return dict(pk=pk, tx=tx, bulk={"copy": copy, "executemany": many}, close=pool.close)


async def asyncpg_pg(conc):
    import asyncpg
    pool = await asyncpg.create_pool(PG_URL, min_size=conc, max_size=conc)

    async def pk(i):
        return await pool.fetchrow("SELECT id, name, value FROM bench_pk WHERE id = $1", i)

    async def tx(i):
        async with pool.acquire() as c, c.transaction():
            await c.execute("UPDATE bench_tx SET n = n + 1 WHERE id = $1", i)
            return await c.fetchrow("SELECT id, name, value, n FROM bench_tx WHERE id = $1", i)

    async def copy(table, rows):
        async with pool.acquire() as c:
            await c.copy_records_to_table(table, records=rows, columns=["id", "name", "value"])

    async def many(table, rows):
        async with pool.acquire() as c, c.transaction():
            await c.executemany(f"INSERT INTO {table} (id, name, value) VALUES ($1, $2, $3)", rows)
    return dict(pk=pk, tx=tx, bulk={"copy": copy, "executemany": many}, close=pool.close)


async def flowcoro_mysql(conc):
    pool = await fdb.create_pool(MYSQL_URL, conc, conc)

    async def pk(i):
        return await pool.fetchrow("SELECT id, name, value FROM bench_pk WHERE id = $1", [i])
    return dict(pk=pk, close=pool.close)


async def asyncmy_mysql(conc):
    import asyncmy
    from flowcoro.db.mysql import parse_mysql_url
    kw = parse_mysql_url(MYSQL_URL)
    kw.pop("charset")
    pool = await asyncmy.create_pool(minsize=conc, maxsize=conc, autocommit=True, **kw)

    async def pk(i):
        async with pool.acquire() as c, c.cursor() as cur:
            await cur.execute("SELECT id, name, value FROM bench_pk WHERE id = %s", (i,))
            return await cur.fetchone()

    async def close():
        pool.close()
        await pool.wait_closed()
    return dict(pk=pk, close=close)


def _have(mod):
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


PG_SUBJECTS = {"flowcoro": flowcoro_pg, "psycopg-pool": psycopg_pool_pg,
               "flowcoro-pipelined": flowcoro_pg_pipelined}
if _have("asyncpg"):
    PG_SUBJECTS["asyncpg"] = asyncpg_pg
MYSQL_SUBJECTS = {"flowcoro": flowcoro_mysql, "asyncmy": asyncmy_mysql}


# -- setup (not timed) ----------------------------------------------------------------------
async def setup_pg():
    conn = await fdb.connect(PG_URL)
    n = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE tablename = 'bench_pk'")
    if not n or await conn.fetchval("SELECT count(*) FROM bench_pk") != N_PK:
        await conn.execute("DROP TABLE IF EXISTS bench_pk")
        await conn.execute("CREATE TABLE bench_pk (id int PRIMARY KEY, name text, "
                           "value double precision)")
        await conn.copy("bench_pk", [row(i) for i in range(1, N_PK + 1)], ["id", "name", "value"])
        await conn.execute("ANALYZE bench_pk")
    await conn.close()


async def reset_tx_table():
    conn = await fdb.connect(PG_URL)
    await conn.execute("DROP TABLE IF EXISTS bench_tx")
    await conn.execute("CREATE TABLE bench_tx (id int PRIMARY KEY, name text, "
                       "value double precision, n int NOT NULL DEFAULT 0)")
    await conn.copy("bench_tx", [row(i) for i in range(1, N_PK + 1)], ["id", "name", "value"])
    await conn.close()


async def tx_sum():
    conn = await fdb.connect(PG_URL)
    s = await conn.fetchval("SELECT coalesce(sum(n), 0) FROM bench_tx")
    await conn.close()
    return int(s)


async def fresh_bulk_table(table):
    conn = await fdb.connect(PG_URL)
    await conn.execute(f"DROP TABLE IF EXISTS {table}")
    await conn.execute(f"CREATE TABLE {table} (id int, name text, value double precision)")
    await conn.close()


async def count(table):
    conn = await fdb.connect(PG_URL)
    n = await conn.fetchval(f"SELECT count(*) FROM {table}")
    await conn.close()
    return n


async def setup_mysql():
    conn = await fdb.connect(MYSQL_URL)
    try:
        n = await conn.fetchval("SELECT count(*) FROM bench_pk")
    except fdb.DatabaseError:
        n = -1
    if n != N_PK:
        await conn.execute("DROP TABLE IF EXISTS bench_pk")
        await conn.execute("CREATE TABLE bench_pk (id INT PRIMARY KEY, name TEXT, value DOUBLE)")
        await conn.copy("bench_pk", [row(i) for i in range(1, N_PK + 1)], ["id", "name", "value"])
    await conn.close()


# -- measurement --------------------------------------------------------------------------
async def closed_loop(op, conc, seconds):
    done = [0] * conc
    deadline = time.perf_counter() + seconds

    async def worker(w):
        rnd, n, now = random.Random(w), 0, time.perf_counter
        while now() < deadline:
            if await op(rnd.randint(1, N_PK)) is None:
                raise RuntimeError("no row")
            n += 1
        done[w] = n
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(conc)))
    return sum(done), time.perf_counter() - t0


async def measure(factory, workload, a):
    """[(variant, ops/s, client µs/op)] for one subject and workload."""
    ops = await factory(a.conc)
    out = []
    try:
        if workload in ("pk", "tx", "mysql"):
            if workload not in ops and workload != "mysql":
                return out
            op = ops["tx"] if workload == "tx" else ops["pk"]
            if workload == "tx":
                await reset_tx_table()
            n_warm, _ = await closed_loop(op, a.conc, 1.0)
            c0 = time.process_time()
            n, dt = await closed_loop(op, a.conc, a.seconds)
            cpu = time.process_time() - c0
            if workload == "tx" and await tx_sum() != n_warm + n:
                raise RuntimeError("tx check failed")
            out.append((workload, n / dt, 1e6 * cpu / n))
        elif workload == "bulk" and "bulk" in ops:
            data = [row(i) for i in range(1, N_BULK + 1)]
            for variant, fn in ops["bulk"].items():
                await fresh_bulk_table("bench_bulk_fc")
                await fn("bench_bulk_fc", data[:1000])          # warm-up
                await fresh_bulk_table("bench_bulk_fc")
                c0, t0 = time.process_time(), time.perf_counter()
                await fn("bench_bulk_fc", data)
                dt, cpu = time.perf_counter() - t0, time.process_time() - c0
                if await count("bench_bulk_fc") != N_BULK:
                    raise RuntimeError(f"bulk:{variant}: wrong row count")
                out.append((f"bulk:{variant}", N_BULK / dt, 1e6 * cpu / N_BULK))
            await fresh_bulk_table("bench_bulk_fc")
    finally:
        await ops["close"]()
    return out


def new_loop(kind):
    if kind == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    if kind == "flowcoro":
        return flowcoro.new_event_loop()
    return asyncio.new_event_loop()


def fmt(v):
    return f"{v / 1e6:.2f}M" if v >= 1e6 else (f"{v / 1e3:.1f}k" if v >= 1e3 else f"{v:.0f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--conc", type=int, default=50)
    p.add_argument("--only", default="pk,tx,bulk,mysql")
    p.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio", "flowcoro"])
    p.add_argument("--flowcoro-loop-too", action="store_true",
                   help="also run the flowcoro subject on FlowCoro's own loop")
    a = p.parse_args()
    workloads = a.only.split(",")
    run = lambda coro, kind=a.loop: asyncio.run(coro, loop_factory=lambda: new_loop(kind)) \
        if sys.version_info >= (3, 12) else _run(coro, kind)
    if any(w in workloads for w in ("pk", "tx", "bulk")):
        run(setup_pg())
    if "mysql" in workloads:
        run(setup_mysql())
    results = {}     # (workload-variant, subject) -> [(ops, us)]
    for r in range(a.rounds):
        for workload in workloads:
            subjects = list((MYSQL_SUBJECTS if workload == "mysql" else PG_SUBJECTS).items())
            if a.flowcoro_loop_too and workload != "bulk":
                subjects.append(("flowcoro@flowcoro-loop", subjects[0][1]))
            k = r % len(subjects)
            for name, factory in subjects[k:] + subjects[:k]:
                kind = "flowcoro" if name.endswith("@flowcoro-loop") else a.loop
                for variant, rate, us in run(measure(factory, workload, a), kind):
                    results.setdefault((variant, name), []).append((rate, us))
                    print(f"round {r + 1} {variant:18s} {name:24s} {fmt(rate):>8s}/s "
                          f"{us:8.2f} us/op", file=sys.stderr, flush=True)
    # table
    variants = []
    for v, _ in results:
        if v not in variants:
            variants.append(v)
    print(f"\n| workload | subject | ops/s median (min-max) | x first | client µs/op |")
    print("|---|---|---|---|---|")
    for v in variants:
        names = [n for (vv, n) in results if vv == v]
        base = None
        for n in names:
            xs = results[(v, n)]
            rates = [x[0] for x in xs]
            med = statistics.median(rates)
            us = statistics.median(x[1] for x in xs)
            if base is None:
                base = med
            print(f"| {v} | {n} | {fmt(med)} ({fmt(min(rates))}-{fmt(max(rates))}) | "
                  f"{med / base:.2f} | {us:.1f} |")


def _run(coro, kind):
    loop = new_loop(kind)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


if __name__ == "__main__":
    main()
