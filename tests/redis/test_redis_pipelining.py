"""Automatic pipelining, cancellation safety, explicit pipelines and transactions."""
import asyncio
import random

import pytest

from flowcoro import errors
from flowcoro.redis import from_url


def test_concurrent_commands_share_one_write(run, r_url, prefix):
    async def main():
        async with from_url(r_url) as r:
            conn = await r.connection_pool.shared()
            before = conn.writes
            got = await asyncio.gather(*(r.set(f"{prefix}{i}", i) for i in range(200)))
            assert got == [True] * 200
            # 200 commands issued in one loop iteration leave in one write.
            assert conn.writes - before == 1
            before = conn.writes
            vals = await asyncio.gather(*(r.get(f"{prefix}{i}") for i in range(200)))
            assert vals == [str(i).encode() for i in range(200)]
            assert conn.writes - before == 1
            assert conn.pending == 0
    run(main())


def test_cancelled_commands_never_leak_replies(run, r_url, prefix):
    """CVE-2023-28858 class: cancel tasks mid-flight under load; every reply
    that reaches a caller is that caller's own."""
    async def main():
        async with from_url(r_url) as r:
            await r.mset({f"{prefix}{i}": f"v{i}" for i in range(100)})
            rng = random.Random(7)
            wrong = []
            done = cancelled = 0

            async def reader(i):
                for _ in range(30):
                    v = await r.get(f"{prefix}{i}")
                    if v != f"v{i}".encode():
                        wrong.append((i, v))

            for _ in range(15):
                tasks = [asyncio.ensure_future(reader(i)) for i in range(100)]
                # Let some commands get written, then cancel a random half at
                # different points (before the write, with the reply in flight).
                for _ in range(rng.randint(1, 4)):
                    await asyncio.sleep(0)
                for t in rng.sample(tasks, 50):
                    t.cancel()
                res = await asyncio.gather(*tasks, return_exceptions=True)
                cancelled += sum(isinstance(x, asyncio.CancelledError) for x in res)
                done += sum(x is None for x in res)
                assert not [x for x in res if isinstance(x, Exception)
                            and not isinstance(x, asyncio.CancelledError)]
            assert not wrong, wrong[:5]
            assert cancelled and done
            # After all that the connection is still in step.
            assert await r.get(f"{prefix}5") == b"v5"
            conn = await r.connection_pool.shared()
            assert conn.pending == 0
            assert conn.dropped > 0           # replies of cancelled callers were read and dropped
    run(main())


def test_cancel_with_timeout_under_load(run, r_url, prefix):
    async def main():
        async with from_url(r_url) as r:
            await r.set(prefix + "k", "mine")

            async def slow_then_fast(i):
                try:
                    async with asyncio.timeout(0):
                        await r.set(f"{prefix}t{i}", i)     # cancelled by the timeout
                except TimeoutError:
                    pass
                return await r.get(prefix + "k")

            got = await asyncio.gather(*(slow_then_fast(i) for i in range(300)))
            assert set(got) == {b"mine"}
    run(main())


def test_explicit_pipeline_without_transaction(run, r_url, prefix):
    async def main():
        async with from_url(r_url) as r:
            p = r.pipeline(transaction=False)
            assert await p.set(prefix + "a", 1) is p          # redis-py's await form
            p.incr(prefix + "a").get(prefix + "a").hgetall(prefix + "none")
            assert len(p) == 4
            assert await p.execute() == [True, 2, b"2", {}]
            assert len(p) == 0
            assert await p.execute() == []
            async with r.pipeline(transaction=False) as p:
                p.set(prefix + "s", "x").incr(prefix + "s").get(prefix + "s")
                with pytest.raises(errors.RedisResponseError, match="Command # 2"):
                    await p.execute()
            async with r.pipeline(transaction=False) as p:
                p.incr(prefix + "s").get(prefix + "s")
                res = await p.execute(raise_on_error=False)
                assert isinstance(res[0], errors.RedisResponseError) and res[1] == b"x"
                p.execute_command("STRLEN", prefix + "s")
                p.blpop(prefix + "nolist", 0.01)               # needs a dedicated connection
                assert await p.execute() == [1, None]
            with pytest.raises(errors.RedisDataError):
                r.pipeline().set(prefix + "x", None)
            assert "Pipeline" in repr(r.pipeline())
    run(main())


def test_transactions(run, r_url, prefix):
    async def main():
        async with from_url(r_url) as r:
            async with r.pipeline() as p:
                p.set(prefix + "a", 1).incr(prefix + "a").get(prefix + "a")
                assert await p.execute() == [True, 2, b"2"]
            # A runtime error inside EXEC: the other commands still ran.
            async with r.pipeline() as p:
                p.set(prefix + "s", "x").incr(prefix + "s").set(prefix + "t", 1)
                with pytest.raises(errors.RedisResponseError, match="not an integer"):
                    await p.execute()
            assert await r.get(prefix + "t") == b"1"
            # A command the server refuses to queue: EXECABORT, nothing ran.
            async with r.pipeline() as p:
                p.set(prefix + "u", 1).execute_command("SET", prefix + "u")
                with pytest.raises(errors.RedisExecAbortError, match="Command # 2"):
                    await p.execute()
            assert await r.get(prefix + "u") is None
            # Transactions from many tasks at once on the shared connection.
            async def tx(i):
                async with r.pipeline() as p:
                    p.incr(prefix + "cnt").set(f"{prefix}tx{i}", i).get(f"{prefix}tx{i}")
                    return await p.execute()
            res = await asyncio.gather(*(tx(i) for i in range(50)))
            assert sorted(x[0] for x in res) == list(range(1, 51))
            assert [x[2] for x in res] == [str(i).encode() for i in range(50)]
    run(main())


def test_watch(run, r_url, prefix):
    k = prefix + "bal"

    async def main():
        async with from_url(r_url, max_connections=4) as r:
            await r.set(k, 100)
            async with r.pipeline() as p:
                assert await p.watch(k) is True
                bal = int(await p.get(k))                    # immediate mode
                p.multi()
                with pytest.raises(errors.InvalidStateError):
                    p.multi()
                with pytest.raises(errors.InvalidStateError):
                    await p.watch(k)
                p.set(k, bal - 10)
                assert await p.execute() == [True]
            assert await r.get(k) == b"90"
            # Someone else writes between WATCH and EXEC.
            async with r.pipeline() as p:
                await p.watch(k)
                await r.set(k, 0)
                p.multi()
                p.set(k, 1)
                with pytest.raises(errors.RedisWatchError):
                    await p.execute()
            assert await r.get(k) == b"0"
            # Reset without executing: UNWATCH and the connection goes back.
            p = r.pipeline()
            await p.watch(k)
            await p.unwatch()
            await p.watch(k)
            assert await p.set(k, 5) is True     # still immediate (no multi): runs now
            p.multi()
            with pytest.raises(errors.InvalidStateError):
                p.set(k, 6)
                p.multi()
            await p.reset()
            assert await r.get(k) == b"5"
            # transaction() helper retries on WatchError.
            tries = []

            async def incr_by_hand(pipe):
                tries.append(1)
                v = int(await pipe.get(k))
                if len(tries) == 1:
                    await r.set(k, v + 100)                 # force one conflict
                pipe.multi()
                pipe.set(k, v + 1)
                return v + 1
            v = await r.transaction(incr_by_hand, k, value_from_callable=True, watch_delay=0.001)
            assert v == 106 and len(tries) == 2
            assert await r.get(k) == b"106"
            assert await r.transaction(lambda pipe: pipe.multi(), k) == []
            stats = r.connection_pool.stats()
            assert stats.in_use == 0          # the WATCH connections went back
    run(main())


def test_cancelled_pipelines_keep_the_connection_in_step(run, r_url, prefix):
    async def main():
        async with from_url(r_url) as r:
            await r.set(prefix + "k", "v")

            async def pipe(i, tx):
                p = r.pipeline(transaction=tx)
                for j in range(20):
                    p.set(f"{prefix}p{i}", j).get(f"{prefix}p{i}")
                return await p.execute()

            for rnd in range(10):
                tasks = [asyncio.ensure_future(pipe(i, i % 2 == 0)) for i in range(20)]
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                for t in tasks[rnd % 2::2]:
                    t.cancel()
                singles = await asyncio.gather(*(r.get(prefix + "k") for _ in range(20)))
                assert set(singles) == {b"v"}
                for t, res in zip(tasks, await asyncio.gather(*tasks, return_exceptions=True)):
                    if not t.cancelled():
                        assert res[-1] == b"19" and res[0] is True
            conn = await r.connection_pool.shared()
            assert conn.pending == 0
    run(main())
