"""flowcoro.redis with the workloads and TSV output of ../shared/bench/redis_client.py.

    python flowcoro_client.py --port 6390 --loop flowcoro|asyncio|uvloop [--scale 1] [--tsv]

A drop-in for the shared harness (README "Adding FlowCoro", step 5): the job
list of redis.sh can run it next to redis_client.py.  Same four
measurements, same sizes, same untimed warm-ups:

  seq_set / seq_get  N sequential SET / GET awaits on one client
  pool50             50 tasks on ONE client (auto-pipelined shared connection;
                     redis-py uses a 50-connection pool here), alternating SET/GET
  pipe100            pipelines (transaction=False) of 100 commands (50 SET + 50 GET)
"""
import argparse
import asyncio
import sys
import time

KEY, VAL = "bench:key", b"xxx"


async def seq(r, n, op):
    await r.set(KEY, VAL)
    f = r.set if op == "set" else r.get
    args = (KEY, VAL) if op == "set" else (KEY,)
    for _ in range(1000):
        await f(*args)
    t0 = time.perf_counter()
    for _ in range(n):
        await f(*args)
    return n, time.perf_counter() - t0


async def pool(r, n, conc=50):
    per = n // conc

    async def worker():
        for _ in range(per // 2):
            await r.set(KEY, VAL)
            await r.get(KEY)

    await asyncio.gather(*(r.ping() for _ in range(conc)))
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    return conc * (per // 2) * 2, time.perf_counter() - t0


async def pipe(r, n, depth=100):
    batches = n // depth

    async def one():
        p = r.pipeline(transaction=False)
        for _ in range(depth // 2):
            p.set(KEY, VAL)
            p.get(KEY)
        return await p.execute()

    for _ in range(batches // 50 + 1):
        await one()
    t0 = time.perf_counter()
    for _ in range(batches):
        res = await one()
    dt = time.perf_counter() - t0
    assert res[-1] == VAL
    return batches * depth, dt


async def run_all(a):
    from flowcoro.redis import Redis
    r = Redis(host=a.host, port=a.port)
    s = a.scale
    try:
        return [("seq_set",) + await seq(r, int(30_000 * s), "set"),
                ("seq_get",) + await seq(r, int(30_000 * s), "get"),
                ("pool50",) + await pool(r, int(150_000 * s)),
                ("pipe100",) + await pipe(r, int(500_000 * s))]
    finally:
        await r.aclose()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loop", default="flowcoro", help="flowcoro | asyncio | uvloop")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6390)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--tsv", action="store_true")
    a = p.parse_args()
    if a.loop in ("flowcoro", "flowcoro:new_event_loop"):
        import flowcoro
        factory = flowcoro.new_event_loop
    elif a.loop == "uvloop":
        import uvloop
        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        res = runner.run(run_all(a))
    if not a.tsv:
        print(f"flowcoro.redis, loop={a.loop}, python {sys.version.split()[0]}")
    for name, count, dt in res:
        if a.tsv:
            print(f"{a.loop}\t{name}\t{count / dt:.0f}", flush=True)
        else:
            print(f"{name:<8} {count / dt:>12,.0f} ops/s  ({count:,} in {dt * 1000:.0f} ms)", flush=True)


if __name__ == "__main__":
    main()
