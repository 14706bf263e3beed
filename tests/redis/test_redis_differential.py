"""Differential test: thousands of random commands through flowcoro.redis and
through redis-py (sync, the reference) give identical results.

Both clients run the same random sequence against the same server (database
13), each on its own key prefix, so their data evolves identically; results
are compared after the prefix is replaced by a placeholder.  Error replies
are compared by message.  Commands with random or time-dependent answers
(SPOP, SRANDMEMBER, TTL...) are left out.
"""
import random
import warnings

import pytest

redispy = pytest.importorskip("redis")

from flowcoro import errors  # noqa: E402
from flowcoro.redis import from_url  # noqa: E402

N_OPS = 1500          # per run; the test runs on three loops and in two modes
PIPELINE_EVERY = 10   # every tenth step is a pipeline of several ops


class K:
    """A key placeholder, resolved per client (``prefix + name``)."""

    def __init__(self, name):
        self.name = name


def resolve(x, prefix):
    """Replace K placeholders (also in dict keys, lists and tuples)."""
    if isinstance(x, K):
        return prefix + x.name
    if isinstance(x, dict):
        return {resolve(k, prefix): resolve(v, prefix) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(resolve(v, prefix) for v in x)
    return x


def normalize(x, prefix):
    """Replace the prefix with '@' in every string of a reply."""
    if isinstance(x, bytes):
        return x.replace(prefix.encode(), b"@")
    if isinstance(x, str):
        return x.replace(prefix, "@")
    if isinstance(x, dict):
        return {normalize(k, prefix): normalize(v, prefix) for k, v in x.items()}
    if isinstance(x, (set, frozenset)):
        return {normalize(v, prefix) for v in x}
    if isinstance(x, (list, tuple)):
        return type(x)(normalize(v, prefix) for v in x)
    if isinstance(x, BaseException):
        # redis-py drops the generic "ERR " prefix from messages; we keep the
        # server's text whole.
        msg = str(x)
        return ("error", normalize(msg[4:] if msg.startswith("ERR ") else msg, prefix))
    return x


class Gen:
    """Random commands over a small key space (so types collide: WRONGTYPE too)."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.stream_seq = 0

    def key(self, kind=None):
        kind = kind or self.rng.choice("slhtzx")
        return K(f"{kind}{self.rng.randint(0, 2)}")

    def val(self):
        return self.rng.choice(["a", "b", "c", "é", "10", "-3", "2.5", "", "xyz", 7, 0, 1.5])

    def num(self, lo=-5, hi=5):
        return self.rng.randint(lo, hi)

    def op(self):
        r = self.rng
        k, v, n = self.key, self.val, self.num
        ops = [
            # strings
            lambda: ("set", (k("s"), v()), r.choice([{}, {"nx": True}, {"xx": True}, {"get": True}])),
            lambda: ("get", (k("s"),), {}),
            lambda: ("getset", (k("s"), v()), {}),
            lambda: ("append", (k("s"), v()), {}),
            lambda: ("strlen", (k(),), {}),
            lambda: ("incr", (k("s"), n()), {}),
            lambda: ("decr", (k("s"),), {}),
            lambda: ("incrbyfloat", (k("s"), r.choice([0.5, 1, -2.25])), {}),
            lambda: ("mget", ([k("s"), k("s"), k()],), {}),
            lambda: ("mset", ({k("s"): v(), k("s"): v()},), {}),
            lambda: ("msetnx", ({k("s"): v()},), {}),
            lambda: ("setnx", (k("s"), v()), {}),
            lambda: ("getrange", (k("s"), n(0, 3), n(-2, 5)), {}),
            lambda: ("setrange", (k("s"), n(0, 4), v()), {}),
            lambda: ("getdel", (k("s"),), {}),
            lambda: ("setex", (k("s"), 1000, v()), {}),
            # keys
            lambda: ("exists", (k(), k()), {}),
            lambda: ("delete", (k(),), {}),
            lambda: ("type", (k(),), {}),
            lambda: ("persist", (k(),), {}),
            lambda: ("expire", (k(), 1000), {}),
            lambda: ("rename", (k(), k()), {}),
            lambda: ("renamenx", (k(), k()), {}),
            # lists
            lambda: ("lpush", (k("l"), v(), v()), {}),
            lambda: ("rpush", (k("l"), v()), {}),
            lambda: ("lpushx", (k("l"), v()), {}),
            lambda: ("lpop", (k("l"),), r.choice([{}, {"count": 2}])),
            lambda: ("rpop", (k("l"),), r.choice([{}, {"count": 1}])),
            lambda: ("lrange", (k("l"), n(-3, 2), n(-2, 5)), {}),
            lambda: ("llen", (k(),), {}),
            lambda: ("lindex", (k("l"), n(-2, 3)), {}),
            lambda: ("lset", (k("l"), n(-1, 2), v()), {}),
            lambda: ("lrem", (k("l"), n(-1, 1), v()), {}),
            lambda: ("ltrim", (k("l"), n(0, 2), n(-1, 8)), {}),
            lambda: ("linsert", (k("l"), r.choice(["BEFORE", "AFTER"]), v(), v()), {}),
            lambda: ("lpos", (k("l"), v()), {}),
            lambda: ("lmove", (k("l"), k("l"), r.choice(["LEFT", "RIGHT"]), "LEFT"), {}),
            lambda: ("rpoplpush", (k("l"), k("l")), {}),
            # hashes
            lambda: ("hset", (k("h"), r.choice("fgh"), v()), {}),
            lambda: ("hset", (k("h"),), {"mapping": {r.choice("fgh"): v(), "q": v()}}),
            lambda: ("hget", (k("h"), r.choice("fgh")), {}),
            lambda: ("hmget", (k("h"), ["f", "g", "zz"]), {}),
            lambda: ("hgetall", (k(),), {}),
            lambda: ("hdel", (k("h"), r.choice("fgh"), "q"), {}),
            lambda: ("hexists", (k("h"), r.choice("fgq")), {}),
            lambda: ("hincrby", (k("h"), r.choice("fgh"), n()), {}),
            lambda: ("hincrbyfloat", (k("h"), r.choice("fgh"), 0.25), {}),
            lambda: ("hkeys", (k("h"),), {}),
            lambda: ("hvals", (k("h"),), {}),
            lambda: ("hlen", (k("h"),), {}),
            lambda: ("hsetnx", (k("h"), r.choice("fgh"), v()), {}),
            lambda: ("hstrlen", (k("h"), r.choice("fgh")), {}),
            # sets
            lambda: ("sadd", (k("t"), v(), v()), {}),
            lambda: ("srem", (k("t"), v()), {}),
            lambda: ("smembers", (k(),), {}),
            lambda: ("sismember", (k("t"), v()), {}),
            lambda: ("smismember", (k("t"), [v(), v()]), {}),
            lambda: ("scard", (k("t"),), {}),
            lambda: ("sinter", ([k("t"), k("t")],), {}),
            lambda: ("sunion", ([k("t"), k("t")],), {}),
            lambda: ("sdiff", ([k("t"), k("t")],), {}),
            lambda: ("sinterstore", (k("t"), [k("t"), k("t")]), {}),
            lambda: ("sunionstore", (k("t"), [k("t"), k("t")]), {}),
            lambda: ("smove", (k("t"), k("t"), v()), {}),
            # sorted sets
            lambda: ("zadd", (k("z"), {r.choice("mnop"): n(-3, 3) / 2, "q": n()}),
                     r.choice([{}, {"nx": True}, {"xx": True, "ch": True}, {"gt": True}])),
            lambda: ("zadd", (k("z"), {r.choice("mnop"): 1}), {"incr": True}),
            lambda: ("zrem", (k("z"), r.choice("mnopq")), {}),
            lambda: ("zscore", (k("z"), r.choice("mnopq")), {}),
            lambda: ("zincrby", (k("z"), n(), r.choice("mnopq")), {}),
            lambda: ("zcard", (k(),), {}),
            lambda: ("zcount", (k("z"), n(), "+inf"), {}),
            lambda: ("zrange", (k("z"), 0, n(-1, 3)),
                     r.choice([{}, {"withscores": True}, {"desc": True, "withscores": True}])),
            lambda: ("zrange", (k("z"), "-inf", "+inf"), {"byscore": True, "offset": 0, "num": 2}),
            lambda: ("zrevrange", (k("z"), 0, -1), r.choice([{}, {"withscores": True}])),
            lambda: ("zrangebyscore", (k("z"), n(), "+inf"), r.choice([{}, {"withscores": True}])),
            lambda: ("zrevrangebyscore", (k("z"), "+inf", n()), {"withscores": True}),
            lambda: ("zrank", (k("z"), r.choice("mnopq")), {}),
            lambda: ("zrevrank", (k("z"), r.choice("mnopq")), {}),
            lambda: ("zpopmin", (k("z"),), r.choice([{}, {"count": 2}])),
            lambda: ("zpopmax", (k("z"),), {}),
            lambda: ("zmscore", (k("z"), ["m", "n", "zz"]), {}),
            lambda: ("zremrangebyrank", (k("z"), 0, n(0, 1)), {}),
            lambda: ("zremrangebyscore", (k("z"), n(), n()), {}),
            lambda: ("zlexcount", (k("z"), "-", "+"), {}),
            lambda: ("zrangebylex", (k("z"), "-", "+"), {}),
            lambda: ("zunionstore", (k("z"), [k("z"), k("z")]), {}),
            lambda: ("zinterstore", (k("z"), {k("z"): 2, k("z"): 1}), {"aggregate": "MAX"}),
            # misc
            lambda: ("pfadd", (k("x"), v()), {}),
            lambda: ("pfcount", (k("x"),), {}),
            lambda: ("echo", (v(),), {}),
            lambda: ("ping", (), {}),
            lambda: ("xlen", (k("x"),), {}),
            lambda: ("xrange", (k("x"),), r.choice([{}, {"count": 2}])),
            lambda: ("xrevrange", (k("x"),), {"count": 3}),
        ]
        if r.random() < 0.08:
            self.stream_seq += 1
            return ("xadd", (k("x"), {"f": v()}), {"id": f"{self.stream_seq}-1"})
        return r.choice(ops)()


async def run_ours(r, prefix, name, args, kwargs):
    try:
        return await getattr(r, name)(*resolve(args, prefix), **resolve(kwargs, prefix))
    except (errors.RedisResponseError, UnicodeDecodeError) as exc:
        return exc


def run_ref(r, prefix, name, args, kwargs):
    try:
        return getattr(r, name)(*resolve(args, prefix), **resolve(kwargs, prefix))
    except (redispy.ResponseError, UnicodeDecodeError) as exc:
        return exc


@pytest.mark.parametrize("decode", [False, True])
def test_random_commands_match_redis_py(run, r_url, prefix, decode, loop_kind):
    warnings.simplefilter("ignore", DeprecationWarning)     # redis-py's setex warning
    mine, theirs = prefix + "A:", prefix + "B:"
    ref = redispy.Redis.from_url(r_url, decode_responses=decode)
    gen = Gen(seed=hash((decode, loop_kind)) & 0xFFFF)
    mismatches = []

    async def main():
        async with from_url(r_url, decode_responses=decode) as r:
            step = 0
            while step < N_OPS:
                if step % PIPELINE_EVERY == 0:
                    batch = [gen.op() for _ in range(gen.rng.randint(2, 8))]
                    tx = gen.rng.random() < 0.5
                    p = r.pipeline(transaction=tx)
                    q = ref.pipeline(transaction=tx)
                    for name, args, kwargs in batch:
                        getattr(p, name)(*resolve(args, mine), **resolve(kwargs, mine))
                        getattr(q, name)(*resolve(args, theirs), **resolve(kwargs, theirs))
                    try:
                        a = await p.execute(raise_on_error=False)
                    except UnicodeDecodeError as exc:
                        a = [exc] * len(batch)
                    try:
                        b = q.execute(raise_on_error=False)
                    except UnicodeDecodeError as exc:
                        b = [exc] * len(batch)
                    step += len(batch)
                    what = ("pipeline", tx, [x[0] for x in batch])
                else:
                    name, args, kwargs = gen.op()
                    a = await run_ours(r, mine, name, args, kwargs)
                    b = run_ref(ref, theirs, name, args, kwargs)
                    step += 1
                    what = (name, args, kwargs)
                na, nb = normalize(a, mine), normalize(b, theirs)
                if what[0] == "pipeline":
                    for cmd, x, y in zip(batch, na, nb):
                        if x != y or type(x) is not type(y):
                            mismatches.append((("in pipeline", tx) + cmd, x, y))
                elif na != nb or type(na) is not type(nb):
                    mismatches.append((what, na, nb))
            # Same final data on both sides, checked key by key.
            for kind in "slhtzx":
                for i in range(3):
                    ka, kb = f"{mine}{kind}{i}", f"{theirs}{kind}{i}"
                    assert normalize(await r.type(ka), mine) == normalize(ref.type(kb), theirs)

    try:
        run(main(), timeout=25)
    finally:
        ref.close()
    assert not mismatches, mismatches[:5]
