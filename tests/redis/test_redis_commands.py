"""flowcoro.redis command families against a real Redis, on every loop kind.

Reply shapes are redis-py's (the differential test checks thousands of
random calls; these pin the documented ones by name).
"""
import asyncio
import datetime

import pytest

from flowcoro import errors
from flowcoro.redis import ConnectionParams, Redis, from_url, parse_url


def test_url_parsing():
    p = parse_url("redis://alice:s%40cret@example.com:6390/3?client_name=web&protocol=3")
    assert (p.host, p.port, p.db, p.username, p.password, p.client_name, p.protocol) == \
        ("example.com", 6390, 3, "alice", "s@cret", "web", 3)
    p = parse_url("redis://:pw@localhost")
    assert (p.host, p.port, p.db, p.username, p.password) == ("localhost", 6379, 0, None, "pw")
    p = parse_url("unix:///tmp/redis.sock?db=2&decode_responses=yes")
    assert (p.path, p.db, p.decode_responses) == ("/tmp/redis.sock", 2, True)
    assert p.address() == "unix:/tmp/redis.sock"
    p = parse_url("rediss://h:1/0?ssl_cert_reqs=none", db=5, decode_responses=True)
    assert p.ssl is not None and p.ssl.check_hostname is False
    assert (p.db, p.decode_responses) == (5, True)
    assert parse_url("rediss://h").ssl.check_hostname is True
    assert parse_url("redis://h/?socket_connect_timeout=2.5").connect_timeout == 2.5
    for bad in ("http://h", "redis://h:notaport", "redis://h/x", "redis://h?protocol=4"):
        with pytest.raises(errors.InvalidArgumentError):
            parse_url(bad)
    with pytest.raises(errors.InvalidArgumentError):
        parse_url("redis://h", db=-1)
    assert isinstance(ConnectionParams().with_options(db=4), ConnectionParams)


def test_client_arguments():
    with pytest.raises(errors.InvalidArgumentError):
        Redis(protocol=4)
    r = Redis(port=1)
    with pytest.raises(errors.InvalidArgumentError):
        Redis(connection_pool=r.connection_pool, max_connections=3)
    with pytest.raises(errors.InvalidArgumentError):
        Redis(max_connections=1)
    with pytest.raises(errors.InvalidArgumentError):
        Redis(retry_attempts=-1)
    assert "127.0.0.1:1" in repr(r) and "db=0" in repr(r.connection_pool)


def test_strings(run, r_url, prefix):
    k = prefix

    async def main():
        async with from_url(r_url) as r:
            assert await r.ping() is True
            assert await r.ping("hi") == b"hi"
            assert await r.echo("e") == b"e"
            assert await r.set(k + "a", "1") is True
            assert await r.set(k + "a", "2", nx=True) is None
            assert await r.set(k + "a", "3", xx=True, get=True) == b"1"
            assert await r.get(k + "a") == b"3"
            assert await r.get(k + "missing") is None
            assert await r.setex(k + "e", 100, "v") is True
            assert 0 < await r.ttl(k + "e") <= 100
            assert await r.psetex(k + "pe", datetime.timedelta(seconds=50), "v") is True
            assert 0 < await r.pttl(k + "pe") <= 50_000
            assert await r.set(k + "x", 1, ex=datetime.timedelta(seconds=9), keepttl=False) is True
            assert await r.set(k + "x", 1, px=5000) is True
            assert await r.set(k + "x", 1, exat=datetime.datetime.now() + datetime.timedelta(hours=1))
            assert await r.set(k + "x", 1, pxat=datetime.datetime.now() + datetime.timedelta(hours=1))
            assert await r.set(k + "x", 2, keepttl=True) is True
            assert await r.setnx(k + "a", "z") is False
            assert await r.getset(k + "a", "4") == b"3"
            assert await r.mset({k + "m1": "a", k + "m2": 2}) is True
            assert await r.msetnx({k + "m1": "a", k + "m3": "c"}) is False
            assert await r.mget([k + "m1", k + "m2"], k + "nope") == [b"a", b"2", None]
            assert await r.mget(k + "m1") == [b"a"]
            assert await r.incr(k + "n") == 1
            assert await r.incrby(k + "n", 5) == 6
            assert await r.decr(k + "n") == 5
            assert await r.decrby(k + "n", 2) == 3
            assert await r.incrbyfloat(k + "f", 1.5) == 1.5
            assert await r.append(k + "s", "ab") == 2
            assert await r.strlen(k + "s") == 2
            assert await r.setrange(k + "s", 1, "XY") == 3
            assert await r.getrange(k + "s", 0, 1) == b"aX"
            assert await r.getex(k + "s", ex=100) == b"aXY"
            assert await r.getex(k + "s", px=100000, persist=False) == b"aXY"
            assert await r.getex(k + "s", persist=True) == b"aXY"
            assert await r.ttl(k + "s") == -1
            assert await r.getex(k + "s", exat=datetime.datetime.now() + datetime.timedelta(hours=1))
            assert await r.getex(k + "s", pxat=10**13) == b"aXY"
            assert await r.getdel(k + "s") == b"aXY"
            assert await r.setbit(k + "b", 7, True) == 0
            assert await r.getbit(k + "b", 7) == 1
            assert await r.bitcount(k + "b") == 1
            assert await r.bitcount(k + "b", 0, 0) == 1
            with pytest.raises(errors.RedisResponseError, match="not an integer"):
                await r.incr(k + "a" if False else k + "m1")
            assert await r.get(k + "m2") == b"2"      # the connection is still fine
    run(main())


def test_keys_and_expiry(run, r_url, prefix):
    k = prefix

    async def main():
        async with from_url(r_url) as r:
            await r.mset({k + "a": 1, k + "b": 2})
            assert await r.exists(k + "a", k + "b", k + "c") == 2
            assert await r.type(k + "a") == b"string"
            assert await r.expire(k + "a", 100) is True
            assert await r.expire(k + "a", 50, gt=True) is False
            assert await r.expire(k + "a", 50, lt=True) is True
            assert await r.expire(k + "zz", 10, nx=True) is False
            assert await r.expire(k + "a", 10, xx=True) is True
            assert await r.pexpire(k + "a", 100000) is True
            assert await r.expireat(k + "a", datetime.datetime.now() + datetime.timedelta(hours=1))
            assert await r.pexpireat(k + "a", 10**13) is True
            assert await r.expiretime(k + "a") > 0
            assert await r.persist(k + "a") is True
            assert await r.persist(k + "a") is False
            assert await r.rename(k + "a", k + "c") is True
            assert await r.renamenx(k + "c", k + "b") is False
            assert sorted(await r.keys(k + "*")) == [(k + "b").encode(), (k + "c").encode()]
            assert await r.touch(k + "b", k + "c", k + "d") == 2
            assert await r.copy(k + "b", k + "d") is True
            assert await r.copy(k + "b", k + "d") is False
            assert await r.copy(k + "b", k + "d", replace=True) is True
            assert await r.object("encoding", k + "b") in (b"int", b"embstr")
            assert await r.randomkey() is not None
            assert await r.dbsize() >= 3
            assert await r.unlink(k + "d") == 1
            assert await r.delete(k + "b", k + "c", k + "zz") == 2
            seen = set()
            await r.mset({f"{k}s{i}": i for i in range(30)})
            async for key in r.scan_iter(match=k + "s*", count=7):
                seen.add(key)
            assert len(seen) == 30
            cursor, keys = await r.scan(0, match=k + "s*", count=1000, _type="string")
            assert isinstance(cursor, int) and keys
    run(main())


def test_lists(run, r_url, prefix):
    k = prefix + "l"

    async def main():
        async with from_url(r_url, decode_responses=True) as r:
            assert await r.lpush(k, "b", "a") == 2
            assert await r.rpush(k, "c", "d") == 4
            assert await r.lpushx(k, "0") == 5
            assert await r.rpushx(prefix + "none", "x") == 0
            assert await r.lrange(k, 0, -1) == ["0", "a", "b", "c", "d"]
            assert await r.llen(k) == 5
            assert await r.lindex(k, 1) == "a"
            assert await r.lset(k, 0, "z") is True
            assert await r.linsert(k, "BEFORE", "b", "ab") == 6
            assert await r.lpos(k, "b") == 3
            assert await r.lpos(k, "b", rank=1, count=1, maxlen=10) == [3]
            assert await r.lrem(k, 0, "ab") == 1
            assert await r.ltrim(k, 0, 3) is True
            assert await r.lpop(k) == "z"
            assert await r.rpop(k) == "c"
            assert await r.rpop(k, 5) == ["b", "a"]
            assert await r.lpop(k) is None
            await r.rpush(k, "x", "y")
            assert await r.lmove(k, k + "2") == "x"
            assert await r.rpoplpush(k, k + "2") == "y"
            assert await r.lrange(k + "2", 0, -1) == ["y", "x"]
    run(main())


def test_hashes(run, r_url, prefix):
    k = prefix + "h"

    async def main():
        async with from_url(r_url) as r:
            assert await r.hset(k, "a", 1) == 1
            assert await r.hset(k, mapping={"b": 2, "c": 3}, items=["d", 4]) == 3
            with pytest.raises(errors.InvalidArgumentError):
                r.hset(k)
            assert await r.hget(k, "a") == b"1"
            assert await r.hgetall(k) == {b"a": b"1", b"b": b"2", b"c": b"3", b"d": b"4"}
            assert await r.hgetall(prefix + "none") == {}
            assert await r.hmget(k, ["a", "zz"], "b") == [b"1", None, b"2"]
            assert await r.hmset(k, {"e": 5}) is True
            assert await r.hsetnx(k, "a", 9) == 0
            assert await r.hexists(k, "a") is True
            assert await r.hincrby(k, "a", 2) == 3
            assert await r.hincrbyfloat(k, "a", 0.5) == 3.5
            assert sorted(await r.hkeys(k)) == [b"a", b"b", b"c", b"d", b"e"]
            assert len(await r.hvals(k)) == 5
            assert await r.hlen(k) == 5
            assert await r.hstrlen(k, "a") == 3
            assert await r.hdel(k, "d", "e") == 2
            assert len(await r.hrandfield(k, 2, withvalues=True)) == 4
            assert await r.hrandfield(k) in (b"a", b"b", b"c")
            got = {kk: vv async for kk, vv in r.hscan_iter(k, count=1)}
            assert got == await r.hgetall(k)
    run(main())


def test_sets(run, r_url, prefix):
    a, b = prefix + "a", prefix + "b"

    async def main():
        async with from_url(r_url, decode_responses=True) as r:
            assert await r.sadd(a, "1", "2", "3") == 3
            assert await r.sadd(b, "3", "4") == 2
            assert await r.smembers(a) == {"1", "2", "3"}
            assert await r.smembers(prefix + "none") == set()
            assert await r.sismember(a, "1") == 1
            assert await r.smismember(a, ["1", "9"]) == [1, 0]
            assert await r.scard(a) == 3
            assert await r.sinter([a, b]) == {"3"}
            assert await r.sunion(a, b) == {"1", "2", "3", "4"}
            assert await r.sdiff(a, b) == {"1", "2"}
            assert await r.sinterstore(prefix + "i", [a, b]) == 1
            assert await r.sunionstore(prefix + "u", [a, b]) == 4
            assert await r.sdiffstore(prefix + "d", [a, b]) == 2
            assert await r.sintercard(2, [a, b]) == 1
            assert await r.smove(a, b, "1") is True
            assert await r.srem(b, "1") == 1
            assert await r.srandmember(a) in {"2", "3"}
            assert len(await r.srandmember(a, 2)) == 2
            assert sorted([x async for x in r.sscan_iter(a)]) == ["2", "3"]
            assert await r.spop(a) in {"2", "3"}
            assert len(await r.spop(a, 5)) == 1
    run(main())


def test_sorted_sets(run, r_url, prefix):
    z = prefix + "z"

    async def main():
        async with from_url(r_url) as r:
            assert await r.zadd(z, {"a": 1, "b": 2, "c": 3.5}) == 3
            assert await r.zadd(z, {"a": 5}, xx=True, ch=True) == 1
            assert await r.zadd(z, {"a": 1}, gt=True) == 0
            assert await r.zadd(z, {"d": 1}, nx=True, lt=False) == 1
            assert await r.zadd(z, {"d": 2}, incr=True) == 3.0
            with pytest.raises(errors.InvalidArgumentError):
                r.zadd(z, {})
            with pytest.raises(errors.InvalidArgumentError):
                r.zadd(z, {"a": 1, "b": 2}, incr=True)
            assert await r.zscore(z, "c") == 3.5
            assert await r.zscore(z, "nope") is None
            assert await r.zmscore(z, ["a", "nope"]) == [5.0, None]
            assert await r.zincrby(z, 1, "b") == 3.0
            assert await r.zcard(z) == 4
            assert await r.zcount(z, 3, "+inf") == 4
            assert await r.zrange(z, 0, -1) == [b"b", b"d", b"c", b"a"]
            assert await r.zrange(z, 0, 1, withscores=True) == [(b"b", 3.0), (b"d", 3.0)]
            assert await r.zrange(z, 0, 0, desc=True, withscores=True, score_cast_func=int) == [(b"a", 5)]
            assert await r.zrange(z, 3, 4, byscore=True, offset=0, num=1) == [b"b"]
            assert await r.zrevrange(z, 0, 0, withscores=True) == [(b"a", 5.0)]
            assert await r.zrangebyscore(z, 3, 4, start=1, num=5) == [b"d", b"c"]
            assert await r.zrevrangebyscore(z, "+inf", 4, withscores=True) == [(b"a", 5.0)]
            assert await r.zrevrangebyscore(z, "+inf", 0, start=0, num=1) == [b"a"]
            assert await r.zrank(z, "a") == 3
            assert await r.zrevrank(z, "a") == 0
            assert await r.zrank(z, "nope") is None
            await r.zadd(z + "lex", {"a": 0, "b": 0, "c": 0})
            assert await r.zrangebylex(z + "lex", "[a", "[b") == [b"a", b"b"]
            assert await r.zrangebylex(z + "lex", "-", "+", start=1, num=1) == [b"b"]
            assert await r.zlexcount(z + "lex", "-", "+") == 3
            assert await r.zunionstore(z + "u", [z, z + "lex"]) == 4
            assert await r.zinterstore(z + "i", {z: 2, z + "lex": 1}, aggregate="MAX") == 3
            assert len(await r.zrandmember(z, 2, withscores=True)) == 4
            assert await r.zrandmember(z) is not None
            assert [m async for m, _ in r.zscan_iter(z)]
            assert await r.zpopmin(z) == [(b"b", 3.0)]
            assert await r.zpopmax(z, 1) == [(b"a", 5.0)]
            assert await r.zpopmin(prefix + "none") == []
            assert await r.zremrangebyscore(z, 0, 3.1) == 1
            assert await r.zremrangebyrank(z, 0, -1) == 1
            assert await r.zrem(z + "lex", "a", "b") == 2
    run(main())


def test_hyperloglog_server_and_generic(run, r_url, prefix):
    async def main():
        async with from_url(r_url) as r:
            assert await r.pfadd(prefix + "p", "a", "b") == 1
            assert await r.pfcount(prefix + "p") == 2
            assert await r.pfmerge(prefix + "q", prefix + "p") is True
            info = await r.info()
            assert info["redis_version"] and isinstance(info["connected_clients"], int)
            assert "used_memory" in await r.info("memory")
            secs, micros = await r.time()
            assert secs > 1_600_000_000 and 0 <= micros < 1_000_000
            cfg = await r.config_get("maxmemory*")
            assert "maxmemory" in cfg and isinstance(cfg["maxmemory"], str)
            assert isinstance(await r.client_id(), int)
            assert isinstance(await r.client_list(), list)
            assert isinstance(await r.lastsave(), datetime.datetime)
            # Generic commands: the raw reply.
            assert await r.execute("SET", prefix + "g", "v") == b"OK"
            assert await r.execute_command("GET", prefix + "g") == b"v"
            assert await r.execute(b"STRLEN", prefix + "g") == 1
            assert await r.execute("BLPOP", prefix + "nolist", 0.01) is None
            assert await r.execute("XREAD", "BLOCK", 10, "STREAMS", prefix + "s", "$") is None
            for bad in (("SELECT", 1), ("MULTI",), (b"subscribe", "x"), ("WATCH", "k")):
                with pytest.raises(errors.InvalidArgumentError):
                    await r.execute(*bad)
            with pytest.raises(errors.InvalidArgumentError):
                await r.execute()
            with pytest.raises(errors.RedisResponseError, match="unknown command"):
                await r.execute("NOSUCHCOMMAND")
            with pytest.raises(errors.RedisDataError):
                await r.set(prefix + "x", True)
            with pytest.raises(errors.RedisDataError):
                await r.set(prefix + "x", None)
            with pytest.raises(errors.RedisResponseError, match="WRONGTYPE"):
                await r.lpush(prefix + "g", "x")
            assert await r.pubsub_numpat() >= 0
            assert await r.pubsub_channels(prefix + "*") == []
            assert await r.pubsub_numsub(prefix + "c") == [((prefix + "c").encode(), 0)]
    run(main())


def test_decode_responses_and_resp3(run, r_url, prefix):
    async def main():
        for proto in (2, 3):
            async with from_url(r_url, decode_responses=True, protocol=proto,
                                client_name="fc-test") as r:
                await r.hset(prefix + "h", mapping={"a": "é"})
                assert await r.hgetall(prefix + "h") == {"a": "é"}
                await r.zadd(prefix + "z", {"m": 1.5, "n": 2})
                assert await r.zrange(prefix + "z", 0, -1, withscores=True) == [("m", 1.5), ("n", 2.0)]
                assert await r.zpopmin(prefix + "z") == [("m", 1.5)]
                assert await r.zadd(prefix + "z", {"m": 1.5}) == 1
                assert await r.zpopmax(prefix + "z", 2) == [("n", 2.0), ("m", 1.5)]
                assert await r.zscore(prefix + "z", "x") is None
                await r.sadd(prefix + "s", "x")
                assert await r.smembers(prefix + "s") == {"x"}
                assert await r.client_getname() == "fc-test"
                assert await r.config_get("maxmemory") == {"maxmemory": "0"}
                await r.set(prefix + "bin", b"\xff")
                with pytest.raises(UnicodeDecodeError):
                    await r.get(prefix + "bin")
                assert await r.get(prefix + "h" + "x") is None       # still in step
                await r.delete(prefix + "h", prefix + "z", prefix + "s", prefix + "bin")
                if proto == 3:
                    conn = await r.connection_pool.shared()
                    assert conn.server_info.get("proto") == 3
    run(main())


def test_timeout_argument_forms(run, r_url, prefix):
    async def main():
        r = Redis.from_url(r_url, max_connections=4)
        try:
            assert await r.blpop([prefix + "a", prefix + "b"], timeout=0.01) is None
            await r.rpush(prefix + "b", "v")
            assert await r.blpop([prefix + "a", prefix + "b"], timeout=1) == \
                ((prefix + "b").encode(), b"v")
            await r.rpush(prefix + "b", "w")
            assert await r.brpop(prefix + "b", 1) == ((prefix + "b").encode(), b"w")
            assert await r.brpop(prefix + "b", 0.01) is None
            await r.rpush(prefix + "b", "x")
            assert await r.blmove(prefix + "b", prefix + "c", 1) == b"x"
            assert await r.brpoplpush(prefix + "c", prefix + "b", 1) == b"x"
            await r.zadd(prefix + "z", {"m": 2})
            assert await r.bzpopmin(prefix + "z", 1) == ((prefix + "z").encode(), b"m", 2.0)
            assert await r.bzpopmax(prefix + "z", 0.01) is None
        finally:
            await r.aclose()
        await r.aclose()                        # idempotent
        assert r.connection_pool.closed
        with pytest.raises(errors.RedisConnectionError):
            await r.get("x")
    run(main())


def test_concurrent_from_many_tasks(run, r_url, prefix):
    async def main():
        async with from_url(r_url) as r:
            async def worker(i):
                for j in range(20):
                    await r.set(f"{prefix}{i}", f"{i}:{j}")
                    assert await r.get(f"{prefix}{i}") == f"{i}:{j}".encode()
            await asyncio.gather(*(worker(i) for i in range(50)))
    run(main())


def test_resp3_pushes_never_reach_a_caller(run, r_url, prefix):
    """CLIENT TRACKING makes the server push invalidations on the shared
    connection: they are dropped, not taken as the next command's reply."""
    async def main():
        async with from_url(r_url, protocol=3) as r, from_url(r_url) as other:
            await r.set(prefix + "t", 1)
            assert await r.execute("CLIENT", "TRACKING", "on") == b"OK"
            for i in range(20):
                assert await r.get(prefix + "t") == str(i + 1).encode()   # tracked now
                await other.incr(prefix + "t")                          # -> invalidation push
                assert await r.echo(f"e{i}") == f"e{i}".encode()
    run(main())


def test_large_values_pause_and_resume_writing(run, r_url, prefix):
    """Writes far over the transport's high-water mark: the connection holds
    its buffer while paused and flushes on resume; every value arrives whole."""
    async def main():
        async with from_url(r_url) as r:
            big = [bytes([65 + i]) * (2 << 20) for i in range(6)]          # 6 x 2 MiB
            assert await asyncio.gather(*(r.set(f"{prefix}big{i}", v) for i, v in enumerate(big))) \
                == [True] * 6
            got = await asyncio.gather(*(r.get(f"{prefix}big{i}") for i in range(6)),
                                       *(r.strlen(f"{prefix}big{i}") for i in range(6)))
            assert got[:6] == big and got[6:] == [2 << 20] * 6
    run(main())
