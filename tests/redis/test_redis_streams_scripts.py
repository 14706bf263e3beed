"""Streams, Lua scripts with caching, and blocking commands off the shared connection."""
import asyncio

import pytest

from flowcoro import errors
from flowcoro.redis import from_url


def test_streams(run, r_url, prefix):
    s = prefix + "s"

    async def main():
        async with from_url(r_url) as r:
            i1 = await r.xadd(s, {"a": 1})
            i2 = await r.xadd(s, {"b": 2}, maxlen=100, approximate=False)
            await r.xadd(s, {"c": 3}, id="*", minid=0, limit=None, approximate=False)
            assert await r.xadd(prefix + "none", {"x": 1}, nomkstream=True) is None
            with pytest.raises(errors.InvalidArgumentError):
                r.xadd(s, {})
            assert await r.xlen(s) == 3
            assert await r.xrange(s, count=2) == [(i1, {b"a": b"1"}), (i2, {b"b": b"2"})]
            assert (await r.xrevrange(s, count=1))[0][1] == {b"c": b"3"}
            assert await r.xread({s: i2}) == [[s.encode(), [((await r.xrange(s))[2][0], {b"c": b"3"})]]]
            assert await r.xread({s: "$"}, count=1, block=10) == []
            with pytest.raises(errors.InvalidArgumentError):
                r.xread([s])
            assert await r.xgroup_create(s, "g", id="0") is True
            assert await r.xgroup_create(prefix + "s2", "g", mkstream=True, entries_read=0) is True
            got = await r.xreadgroup("g", "c1", {s: ">"}, count=2)
            assert [e[0] for e in got[0][1]] == [i1, i2]
            summary = await r.xpending(s, "g")
            assert summary["pending"] == 2 and summary["consumers"] == [{"name": b"c1", "pending": 2}]
            detail = await r.xpending_range(s, "g", "-", "+", 10, consumername="c1", idle=0)
            assert [d["message_id"] for d in detail] == [i1, i2]
            assert detail[0]["consumer"] == b"c1" and detail[0]["times_delivered"] == 1
            assert await r.xack(s, "g", i1) == 1
            nxt, claimed, deleted = await r.xautoclaim(s, "g", "c2", 0, count=10)
            assert [c[0] for c in claimed] == [i2] and deleted == []
            assert await r.xautoclaim(s, "g", "c1", 0, justid=True) == [i2]
            assert (await r.xclaim(s, "g", "c2", 0, [i2]))[0][0] == i2
            assert await r.xclaim(s, "g", "c2", 0, i2, justid=True) == [i2]
            assert len((await r.xreadgroup("g", "c1", {s: ">"}))[0][1]) == 1   # drain "c"
            # XREADGROUP with BLOCK runs on a dedicated connection.
            waiting = asyncio.ensure_future(
                r.xreadgroup("g", "c3", {s: ">"}, block=2000, noack=True))
            await asyncio.sleep(0.05)
            assert await r.ping() is True            # shared connection not blocked
            i4 = await r.xadd(s, {"d": 4})
            got = await waiting
            assert got[0][1] == [(i4, {b"d": b"4"})]
            assert await r.xgroup_delconsumer(s, "g", "c3") == 0
            assert await r.xdel(s, i1) == 1
            assert await r.xtrim(s, maxlen=1, approximate=False) == 2
            assert await r.xtrim(s, minid=0) == 0
            assert await r.xgroup_destroy(s, "g") is True
            assert await r.xgroup_destroy(s, "g") is False
    run(main())


def test_scripts_and_caching(run, private_redis):
    async def main():
        async with from_url(private_redis.url) as r:
            assert await r.eval("return {KEYS[1], ARGV[1]}", 1, "k", "v") == [b"k", b"v"]
            sha = await r.script_load("return 7")
            assert isinstance(sha, str) and len(sha) == 40
            assert await r.evalsha(sha, 0) == 7
            assert await r.script_exists(sha, "0" * 40) == [True, False]
            add = r.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
            assert await r.script_exists(add.sha) == [False]
            assert await add(keys=["n"], args=[5]) == 5          # NOSCRIPT -> EVAL (caches it)
            assert await r.script_exists(add.sha) == [True]
            assert await add(keys=["n"], args=[2]) == 7          # EVALSHA now
            assert await r.script_flush() is True
            assert await r.script_flush("SYNC") is True
            with pytest.raises(errors.RedisNoScriptError):
                await r.evalsha(add.sha, 1, "n", 1)
            assert await add(keys=["n"], args=[1]) == 8          # reloaded
            async with r.pipeline() as p:
                add(keys=["n"], args=[1], client=p)
                p.get("n")
                assert await p.execute() == [9, b"9"]
            other = from_url(private_redis.url)
            assert await add(keys=["n"], args=[1], client=other) == 10
            await other.aclose()
            with pytest.raises(errors.RedisResponseError):
                await r.eval("return redis.call('NOPE')", 0)
            # 100 concurrent script calls: one coalesced write, all answered.
            res = await asyncio.gather(*(add(keys=["m"], args=[1]) for _ in range(100)))
            assert sorted(res) == list(range(1, 101))
    run(main())


def test_blocking_pop_does_not_stall_the_shared_connection(run, r_url, prefix):
    q = prefix + "q"

    async def main():
        async with from_url(r_url) as r:
            popper = asyncio.ensure_future(r.blpop(q, timeout=5))
            others = await asyncio.gather(*(r.incr(prefix + "n") for _ in range(100)))
            assert others[-1] == 100 and not popper.done()
            await r.rpush(q, "job")
            assert await popper == (q.encode(), b"job")
    run(main())
