"""Command methods shared by :class:`Redis` and :class:`Pipeline`, and reply parsers.

Every method builds the argument tuple and calls ``self._cmd(args, parse)``
(or ``self._blocking`` for commands that may block the connection).  On
:class:`~flowcoro.redis.Redis` that returns an awaitable of the parsed
reply; on :class:`~flowcoro.redis.Pipeline` it queues the command and
returns the pipeline.  So one definition serves both, and the signatures
are redis-py's.

Reply shapes follow redis-py's default (RESP2) ones -- ``SET`` gives True,
``HGETALL`` a dict, ``SMEMBERS`` a set, scores are floats -- and the
parsers accept RESP3 shapes too, so a client on ``protocol=3`` returns the
same Python values.
"""
from __future__ import annotations

import datetime as _dt
from typing import Any, Callable, Mapping

from flowcoro.errors import InvalidArgumentError

__all__ = ["Commands"]


# -- reply parsers ---------------------------------------------------------------

def _str(x):
    return x.decode() if isinstance(x, bytes) else x


def bool_ok(r):
    """``+OK`` -> True."""
    return r in (b"OK", "OK")


def to_bool(r):
    """An integer reply as bool."""
    return bool(r)


def ok_or_none(r):
    """SET: True when stored, None when NX/XX prevented it."""
    return True if r in (b"OK", "OK") else None


def float_or_none(r):
    """A score or float reply (RESP2 bulk or RESP3 double)."""
    return None if r is None else float(r)


def pairs_to_dict(r):
    """A flat [k1, v1, k2, v2...] reply (or a RESP3 map) as a dict."""
    if r is None:
        return {}
    if isinstance(r, dict):
        return r
    it = iter(r)
    return dict(zip(it, it))


def to_set(r):
    """A set reply as a Python set."""
    return set(r) if r else set()


def _score_pairs(r, cast=float):
    """Flat [m, s, m, s...] (RESP2) or nested [[m, s]...] (RESP3) as [(m, score)]."""
    if not r:
        return r if r is not None else []
    if isinstance(r[0], list):
        return [(m, cast(s)) for m, s in r]
    it = iter(r)
    return [(m, cast(s)) for m, s in zip(it, it)]


def _zpop(r):
    if not r:
        return [] if r is not None else []
    if not isinstance(r[0], list) and len(r) == 2 and isinstance(r[1], float):
        return [(r[0], r[1])]                   # RESP3, no count: one flat pair
    return _score_pairs(r)


def parse_scan(r):
    """SCAN/SSCAN: (cursor int, list)."""
    return int(r[0]), r[1]


def parse_hscan(r):
    """HSCAN: (cursor int, dict)."""
    return int(r[0]), pairs_to_dict(r[1])


def parse_zscan(r):
    """ZSCAN: (cursor int, [(member, score)])."""
    return int(r[0]), _score_pairs(r[1])


def parse_stream_list(r):
    """XRANGE & co: [(id, {field: value})]; deleted entries as (None, None)."""
    if r is None:
        return None
    return [(e[0], pairs_to_dict(e[1])) if e is not None else (None, None) for e in r]


def parse_xread(r):
    """XREAD/XREADGROUP: [[stream, [(id, fields)]]] ([] on timeout)."""
    if not r:
        return []
    if isinstance(r, dict):
        return [[k, parse_stream_list(v)] for k, v in r.items()]
    return [[s, parse_stream_list(entries)] for s, entries in r]


def parse_xpending(r):
    """XPENDING summary as a dict."""
    return {"pending": r[0], "min": r[1], "max": r[2],
            "consumers": [{"name": n, "pending": int(p)} for n, p in r[3] or []]}


def parse_xpending_range(r):
    """XPENDING with a range: a list of dicts."""
    keys = ("message_id", "consumer", "time_since_delivered", "times_delivered")
    return [dict(zip(keys, e)) for e in r]


def parse_xautoclaim(r):
    """XAUTOCLAIM: [next_id, [(id, fields)], deleted_ids]."""
    r = list(r)
    r[1] = parse_stream_list(r[1])
    return r


def _num(v):
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def _flatten_pairs(r):
    """RESP3 [[a, b], ...] as RESP2's flat [a, b, ...] (redis-py's shape)."""
    if r and isinstance(r[0], list):
        return [x for pair in r for x in pair]
    return r


def parse_client_list(r):
    """CLIENT LIST as a list of {str: str} dicts."""
    out = []
    for line in _str(r).splitlines():
        out.append(dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv))
    return out


def parse_info(r):
    """INFO text as a dict (numbers converted, ``a=1,b=2`` values as dicts)."""
    if isinstance(r, bytes):
        r = r.decode("utf-8", "replace")
    out: dict[str, Any] = {}

    for line in r.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        k, v = line.split(":", 1)
        if "=" in v and "," in v or (k.startswith("db") and "=" in v):
            sub = {}
            for item in v.split(","):
                if "=" in item:
                    a, b = item.split("=", 1)
                    sub[a] = _num(b)
            out[k] = sub
        else:
            out[k] = _num(v)
    return out


def parse_config_get(r):
    """CONFIG GET: {str: str}."""
    return {_str(k): _str(v) for k, v in pairs_to_dict(r).items()}


def _seconds(name, t):
    if isinstance(t, _dt.timedelta):
        return int(t.total_seconds())
    return t


def _millis(name, t):
    if isinstance(t, _dt.timedelta):
        return int(t.total_seconds() * 1000)
    return t


def _when(t):
    if isinstance(t, _dt.datetime):
        return int(t.timestamp())
    return t


def _when_ms(t):
    if isinstance(t, _dt.datetime):
        return int(t.timestamp() * 1000)
    return t


def _list(keys, args=()):
    """redis-py's ``keys, *args`` convention: one key, an iterable, plus extras."""
    if isinstance(keys, (str, bytes, int, float, memoryview)):
        out = [keys]
    else:
        out = list(keys)
    out.extend(args)
    return out


def _pairs_from(mapping: Mapping) -> list:
    out: list = []
    for k, v in mapping.items():
        out.append(k)
        out.append(v)
    return out


class Commands:
    """Redis command methods (strings, keys, lists, hashes, sets, sorted sets,
    streams, scripting, scans, pub/sub, server).

    Implementations provide ``_cmd(args, parse)`` and ``_blocking(args, parse)``.
    """

    def _cmd(self, args: tuple, parse: Callable | None = None) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _blocking(self, args: tuple, parse: Callable | None = None) -> Any:  # pragma: no cover
        raise NotImplementedError

    # -- connection / server ----------------------------------------------------

    def ping(self, message=None):
        """PING: True (or the echoed message)."""
        if message is not None:
            return self._cmd(("PING", message))
        return self._cmd(("PING",), lambda r: r in (b"PONG", "PONG"))

    def echo(self, value):
        """ECHO value."""
        return self._cmd(("ECHO", value))

    def info(self, section=None, *args):
        """INFO [section...]: a dict."""
        cmd = ("INFO",) if section is None else ("INFO", section, *args)
        return self._cmd(cmd, parse_info)

    def time(self):
        """TIME: (seconds, microseconds)."""
        return self._cmd(("TIME",), lambda r: (int(r[0]), int(r[1])))

    def dbsize(self):
        """DBSIZE: number of keys."""
        return self._cmd(("DBSIZE",))

    def flushdb(self, asynchronous=False):
        """FLUSHDB [ASYNC]: True."""
        return self._cmd(("FLUSHDB", "ASYNC") if asynchronous else ("FLUSHDB",), bool_ok)

    def flushall(self, asynchronous=False):
        """FLUSHALL [ASYNC]: True."""
        return self._cmd(("FLUSHALL", "ASYNC") if asynchronous else ("FLUSHALL",), bool_ok)

    def config_get(self, pattern="*", *args):
        """CONFIG GET pattern: {name: value} (str)."""
        return self._cmd(("CONFIG", "GET", pattern, *args), parse_config_get)

    def config_set(self, name, value, *args):
        """CONFIG SET name value: True."""
        return self._cmd(("CONFIG", "SET", name, value, *args), bool_ok)

    def client_id(self):
        """CLIENT ID of the connection that runs it."""
        return self._cmd(("CLIENT", "ID"))

    def client_getname(self):
        """CLIENT GETNAME (str or None)."""
        return self._cmd(("CLIENT", "GETNAME"), _str)

    def client_list(self):
        """CLIENT LIST as a list of dicts (str)."""
        return self._cmd(("CLIENT", "LIST"), parse_client_list)

    def lastsave(self):
        """LASTSAVE as a datetime."""
        return self._cmd(("LASTSAVE",), lambda r: _dt.datetime.fromtimestamp(r))

    # -- strings ------------------------------------------------------------------

    def get(self, name):
        """GET name: the value or None."""
        return self._cmd(("GET", name))

    def set(self, name, value, ex=None, px=None, nx=False, xx=False, keepttl=False,
            get=False, exat=None, pxat=None):
        """SET name value [EX|PX|EXAT|PXAT] [NX|XX] [KEEPTTL] [GET].

        Returns True when stored, None when NX/XX prevented it, or the old
        value with ``get=True``.
        """
        args: list = ["SET", name, value]
        if ex is not None:
            args += ["EX", _seconds("ex", ex)]
        if px is not None:
            args += ["PX", _millis("px", px)]
        if exat is not None:
            args += ["EXAT", _when(exat)]
        if pxat is not None:
            args += ["PXAT", _when_ms(pxat)]
        if keepttl:
            args.append("KEEPTTL")
        if nx:
            args.append("NX")
        if xx:
            args.append("XX")
        if get:
            args.append("GET")
            return self._cmd(tuple(args))
        return self._cmd(tuple(args), ok_or_none)

    def setex(self, name, time, value):
        """SETEX name seconds value: True."""
        return self._cmd(("SETEX", name, _seconds("time", time), value), bool_ok)

    def psetex(self, name, time_ms, value):
        """PSETEX name milliseconds value: True."""
        return self._cmd(("PSETEX", name, _millis("time_ms", time_ms), value), bool_ok)

    def setnx(self, name, value):
        """SETNX: True if set."""
        return self._cmd(("SETNX", name, value), to_bool)

    def getset(self, name, value):
        """GETSET: the old value."""
        return self._cmd(("GETSET", name, value))

    def getdel(self, name):
        """GETDEL: the value, deleted."""
        return self._cmd(("GETDEL", name))

    def getex(self, name, ex=None, px=None, exat=None, pxat=None, persist=False):
        """GETEX: the value, changing its expiry."""
        args: list = ["GETEX", name]
        if ex is not None:
            args += ["EX", _seconds("ex", ex)]
        if px is not None:
            args += ["PX", _millis("px", px)]
        if exat is not None:
            args += ["EXAT", _when(exat)]
        if pxat is not None:
            args += ["PXAT", _when_ms(pxat)]
        if persist:
            args.append("PERSIST")
        return self._cmd(tuple(args))

    def mget(self, keys, *args):
        """MGET: values (None for missing keys)."""
        return self._cmd(("MGET", *_list(keys, args)))

    def mset(self, mapping):
        """MSET {key: value}: True."""
        return self._cmd(("MSET", *_pairs_from(mapping)), bool_ok)

    def msetnx(self, mapping):
        """MSETNX {key: value}: True if all were set."""
        return self._cmd(("MSETNX", *_pairs_from(mapping)), to_bool)

    def incr(self, name, amount=1):
        """INCRBY name amount: the new value."""
        return self._cmd(("INCRBY", name, amount))

    incrby = incr

    def decr(self, name, amount=1):
        """DECRBY name amount: the new value."""
        return self._cmd(("DECRBY", name, amount))

    decrby = decr

    def incrbyfloat(self, name, amount=1.0):
        """INCRBYFLOAT: the new value (float)."""
        return self._cmd(("INCRBYFLOAT", name, amount), float)

    def append(self, key, value):
        """APPEND: the new length."""
        return self._cmd(("APPEND", key, value))

    def strlen(self, name):
        """STRLEN."""
        return self._cmd(("STRLEN", name))

    def getrange(self, key, start, end):
        """GETRANGE key start end."""
        return self._cmd(("GETRANGE", key, start, end))

    def setrange(self, name, offset, value):
        """SETRANGE: the new length."""
        return self._cmd(("SETRANGE", name, offset, value))

    def setbit(self, name, offset, value):
        """SETBIT: the old bit."""
        return self._cmd(("SETBIT", name, offset, 1 if value else 0))

    def getbit(self, name, offset):
        """GETBIT."""
        return self._cmd(("GETBIT", name, offset))

    def bitcount(self, key, start=None, end=None):
        """BITCOUNT [start end]."""
        args: tuple = ("BITCOUNT", key)
        if start is not None and end is not None:
            args += (start, end)
        return self._cmd(args)

    # -- keys and expiry ------------------------------------------------------------

    def delete(self, *names):
        """DEL: number of keys removed."""
        return self._cmd(("DEL", *names))

    def unlink(self, *names):
        """UNLINK: number of keys removed (freed in the background)."""
        return self._cmd(("UNLINK", *names))

    def exists(self, *names):
        """EXISTS: how many of the names exist (an int)."""
        return self._cmd(("EXISTS", *names))

    def _expire(self, cmd, name, t, nx, xx, gt, lt):
        args: list = [cmd, name, t]
        for flag, word in ((nx, "NX"), (xx, "XX"), (gt, "GT"), (lt, "LT")):
            if flag:
                args.append(word)
        return self._cmd(tuple(args), to_bool)

    def expire(self, name, time, nx=False, xx=False, gt=False, lt=False):
        """EXPIRE name seconds [NX|XX|GT|LT]: True if set."""
        return self._expire("EXPIRE", name, _seconds("time", time), nx, xx, gt, lt)

    def pexpire(self, name, time, nx=False, xx=False, gt=False, lt=False):
        """PEXPIRE name milliseconds: True if set."""
        return self._expire("PEXPIRE", name, _millis("time", time), nx, xx, gt, lt)

    def expireat(self, name, when, nx=False, xx=False, gt=False, lt=False):
        """EXPIREAT name unix-time: True if set."""
        return self._expire("EXPIREAT", name, _when(when), nx, xx, gt, lt)

    def pexpireat(self, name, when, nx=False, xx=False, gt=False, lt=False):
        """PEXPIREAT name unix-time-ms: True if set."""
        return self._expire("PEXPIREAT", name, _when_ms(when), nx, xx, gt, lt)

    def expiretime(self, key):
        """EXPIRETIME: unix time of expiry (-1 none, -2 no key)."""
        return self._cmd(("EXPIRETIME", key))

    def ttl(self, name):
        """TTL: seconds left (-1 no expiry, -2 no key)."""
        return self._cmd(("TTL", name))

    def pttl(self, name):
        """PTTL: milliseconds left."""
        return self._cmd(("PTTL", name))

    def persist(self, name):
        """PERSIST: True if an expiry was removed."""
        return self._cmd(("PERSIST", name), to_bool)

    def type(self, name):
        """TYPE: b'string', b'list'... (str when decoding)."""
        return self._cmd(("TYPE", name))

    def rename(self, src, dst):
        """RENAME: True."""
        return self._cmd(("RENAME", src, dst), bool_ok)

    def renamenx(self, src, dst):
        """RENAMENX: True if renamed."""
        return self._cmd(("RENAMENX", src, dst), to_bool)

    def keys(self, pattern="*"):
        """KEYS pattern (prefer scan_iter on big databases)."""
        return self._cmd(("KEYS", pattern))

    def randomkey(self):
        """RANDOMKEY."""
        return self._cmd(("RANDOMKEY",))

    def touch(self, *args):
        """TOUCH: how many keys exist."""
        return self._cmd(("TOUCH", *args))

    def copy(self, source, destination, destination_db=None, replace=False):
        """COPY: True if copied."""
        args: list = ["COPY", source, destination]
        if destination_db is not None:
            args += ["DB", destination_db]
        if replace:
            args.append("REPLACE")
        return self._cmd(tuple(args), to_bool)

    def object(self, infotype, key):
        """OBJECT subcommand key."""
        return self._cmd(("OBJECT", infotype, key))

    # -- lists ----------------------------------------------------------------------

    def lpush(self, name, *values):
        """LPUSH: the new length."""
        return self._cmd(("LPUSH", name, *values))

    def rpush(self, name, *values):
        """RPUSH: the new length."""
        return self._cmd(("RPUSH", name, *values))

    def lpushx(self, name, *values):
        """LPUSHX: the new length (0 if no list)."""
        return self._cmd(("LPUSHX", name, *values))

    def rpushx(self, name, *values):
        """RPUSHX: the new length (0 if no list)."""
        return self._cmd(("RPUSHX", name, *values))

    def lpop(self, name, count=None):
        """LPOP [count]: a value, a list with count, or None."""
        return self._cmd(("LPOP", name) if count is None else ("LPOP", name, count))

    def rpop(self, name, count=None):
        """RPOP [count]: a value, a list with count, or None."""
        return self._cmd(("RPOP", name) if count is None else ("RPOP", name, count))

    def llen(self, name):
        """LLEN."""
        return self._cmd(("LLEN", name))

    def lrange(self, name, start, end):
        """LRANGE name start end."""
        return self._cmd(("LRANGE", name, start, end))

    def lindex(self, name, index):
        """LINDEX."""
        return self._cmd(("LINDEX", name, index))

    def lset(self, name, index, value):
        """LSET: True."""
        return self._cmd(("LSET", name, index, value), bool_ok)

    def lrem(self, name, count, value):
        """LREM: how many were removed."""
        return self._cmd(("LREM", name, count, value))

    def ltrim(self, name, start, end):
        """LTRIM: True."""
        return self._cmd(("LTRIM", name, start, end), bool_ok)

    def linsert(self, name, where, refvalue, value):
        """LINSERT name BEFORE|AFTER pivot value."""
        return self._cmd(("LINSERT", name, where, refvalue, value))

    def lpos(self, name, value, rank=None, count=None, maxlen=None):
        """LPOS: an index, a list of them (count), or None."""
        args: list = ["LPOS", name, value]
        if rank is not None:
            args += ["RANK", rank]
        if count is not None:
            args += ["COUNT", count]
        if maxlen is not None:
            args += ["MAXLEN", maxlen]
        return self._cmd(tuple(args))

    def lmove(self, first_list, second_list, src="LEFT", dest="RIGHT"):
        """LMOVE: the element moved, or None."""
        return self._cmd(("LMOVE", first_list, second_list, src, dest))

    def rpoplpush(self, src, dst):
        """RPOPLPUSH: the element moved, or None."""
        return self._cmd(("RPOPLPUSH", src, dst))

    def blpop(self, keys, timeout=0):
        """BLPOP keys timeout: (key, value) or None on timeout (dedicated connection)."""
        return self._blocking(("BLPOP", *_list(keys), timeout or 0),
                              lambda r: tuple(r) if r else None)

    def brpop(self, keys, timeout=0):
        """BRPOP keys timeout: (key, value) or None on timeout (dedicated connection)."""
        return self._blocking(("BRPOP", *_list(keys), timeout or 0),
                              lambda r: tuple(r) if r else None)

    def blmove(self, first_list, second_list, timeout, src="LEFT", dest="RIGHT"):
        """BLMOVE: the element moved, or None on timeout."""
        return self._blocking(("BLMOVE", first_list, second_list, src, dest, timeout))

    def brpoplpush(self, src, dst, timeout=0):
        """BRPOPLPUSH: the element moved, or None on timeout."""
        return self._blocking(("BRPOPLPUSH", src, dst, timeout or 0))

    # -- hashes -----------------------------------------------------------------------

    def hset(self, name, key=None, value=None, mapping=None, items=None):
        """HSET name field value / mapping={...} / items=[f, v, ...]: fields added."""
        args: list = ["HSET", name]
        if key is not None:
            args += [key, value]
        if mapping:
            args += _pairs_from(mapping)
        if items:
            args += list(items)
        if len(args) == 2:
            raise InvalidArgumentError("mapping", mapping, "hset needs key/value, mapping or items")
        return self._cmd(tuple(args))

    def hsetnx(self, name, key, value):
        """HSETNX: 1 if set, 0 if the field existed."""
        return self._cmd(("HSETNX", name, key, value))

    def hmset(self, name, mapping):
        """HMSET (deprecated by Redis; use hset(mapping=)): True."""
        return self._cmd(("HMSET", name, *_pairs_from(mapping)), bool_ok)

    def hget(self, name, key):
        """HGET: the value or None."""
        return self._cmd(("HGET", name, key))

    def hmget(self, name, keys, *args):
        """HMGET: values in the order asked."""
        return self._cmd(("HMGET", name, *_list(keys, args)))

    def hgetall(self, name):
        """HGETALL: a dict."""
        return self._cmd(("HGETALL", name), pairs_to_dict)

    def hdel(self, name, *keys):
        """HDEL: fields removed."""
        return self._cmd(("HDEL", name, *keys))

    def hexists(self, name, key):
        """HEXISTS: True or False."""
        return self._cmd(("HEXISTS", name, key), to_bool)

    def hincrby(self, name, key, amount=1):
        """HINCRBY: the new value."""
        return self._cmd(("HINCRBY", name, key, amount))

    def hincrbyfloat(self, name, key, amount=1.0):
        """HINCRBYFLOAT: the new value (float)."""
        return self._cmd(("HINCRBYFLOAT", name, key, amount), float)

    def hkeys(self, name):
        """HKEYS."""
        return self._cmd(("HKEYS", name))

    def hvals(self, name):
        """HVALS."""
        return self._cmd(("HVALS", name))

    def hlen(self, name):
        """HLEN."""
        return self._cmd(("HLEN", name))

    def hstrlen(self, name, key):
        """HSTRLEN."""
        return self._cmd(("HSTRLEN", name, key))

    def hrandfield(self, key, count=None, withvalues=False):
        """HRANDFIELD [count [WITHVALUES]] (flat list, as redis-py)."""
        args: tuple = ("HRANDFIELD", key)
        if count is not None:
            args += (count,)
        if withvalues:
            args += ("WITHVALUES",)
        return self._cmd(args, _flatten_pairs)

    # -- sets ---------------------------------------------------------------------------

    def sadd(self, name, *values):
        """SADD: members added."""
        return self._cmd(("SADD", name, *values))

    def srem(self, name, *values):
        """SREM: members removed."""
        return self._cmd(("SREM", name, *values))

    def smembers(self, name):
        """SMEMBERS: a set."""
        return self._cmd(("SMEMBERS", name), to_set)

    def sismember(self, name, value):
        """SISMEMBER: 1 or 0."""
        return self._cmd(("SISMEMBER", name, value))

    def smismember(self, name, values, *args):
        """SMISMEMBER: a list of 1/0."""
        return self._cmd(("SMISMEMBER", name, *_list(values, args)))

    def scard(self, name):
        """SCARD."""
        return self._cmd(("SCARD", name))

    def spop(self, name, count=None):
        """SPOP [count]: a member, a list with count, or None."""
        return self._cmd(("SPOP", name) if count is None else ("SPOP", name, count))

    def srandmember(self, name, number=None):
        """SRANDMEMBER [count]."""
        return self._cmd(("SRANDMEMBER", name) if number is None
                         else ("SRANDMEMBER", name, number))

    def sinter(self, keys, *args):
        """SINTER: a set."""
        return self._cmd(("SINTER", *_list(keys, args)), to_set)

    def sunion(self, keys, *args):
        """SUNION: a set."""
        return self._cmd(("SUNION", *_list(keys, args)), to_set)

    def sdiff(self, keys, *args):
        """SDIFF: a set."""
        return self._cmd(("SDIFF", *_list(keys, args)), to_set)

    def sinterstore(self, dest, keys, *args):
        """SINTERSTORE: size of the result."""
        return self._cmd(("SINTERSTORE", dest, *_list(keys, args)))

    def sunionstore(self, dest, keys, *args):
        """SUNIONSTORE: size of the result."""
        return self._cmd(("SUNIONSTORE", dest, *_list(keys, args)))

    def sdiffstore(self, dest, keys, *args):
        """SDIFFSTORE: size of the result."""
        return self._cmd(("SDIFFSTORE", dest, *_list(keys, args)))

    def smove(self, src, dst, value):
        """SMOVE: True if moved."""
        return self._cmd(("SMOVE", src, dst, value), to_bool)

    def sintercard(self, numkeys, keys, limit=0):
        """SINTERCARD numkeys keys [LIMIT n]."""
        return self._cmd(("SINTERCARD", numkeys, *_list(keys), "LIMIT", limit))

    # -- sorted sets ------------------------------------------------------------------------

    def zadd(self, name, mapping, nx=False, xx=False, ch=False, incr=False, gt=False, lt=False):
        """ZADD name {member: score}: members added (the new score with incr=True)."""
        if not mapping:
            raise InvalidArgumentError("mapping", mapping, "ZADD needs at least one member")
        if incr and len(mapping) != 1:
            raise InvalidArgumentError("mapping", mapping, "incr=True takes one member")
        args: list = ["ZADD", name]
        for flag, word in ((nx, "NX"), (xx, "XX"), (gt, "GT"), (lt, "LT"), (ch, "CH"),
                           (incr, "INCR")):
            if flag:
                args.append(word)
        for member, score in mapping.items():
            args += [score, member]
        return self._cmd(tuple(args), float_or_none if incr else None)

    def zrem(self, name, *values):
        """ZREM: members removed."""
        return self._cmd(("ZREM", name, *values))

    def zscore(self, name, value):
        """ZSCORE: a float or None."""
        return self._cmd(("ZSCORE", name, value), float_or_none)

    def zmscore(self, key, members):
        """ZMSCORE: a list of floats / None."""
        return self._cmd(("ZMSCORE", key, *_list(members)),
                         lambda r: [None if s is None else float(s) for s in r])

    def zincrby(self, name, amount, value):
        """ZINCRBY: the new score (float)."""
        return self._cmd(("ZINCRBY", name, amount, value), float_or_none)

    def zcard(self, name):
        """ZCARD."""
        return self._cmd(("ZCARD", name))

    def zcount(self, name, min, max):
        """ZCOUNT name min max."""
        return self._cmd(("ZCOUNT", name, min, max))

    def zlexcount(self, name, min, max):
        """ZLEXCOUNT name min max."""
        return self._cmd(("ZLEXCOUNT", name, min, max))

    def _withscores(self, args, withscores, score_cast_func):
        if withscores:
            return self._cmd(args + ("WITHSCORES",),
                             lambda r: _score_pairs(r, score_cast_func))
        return self._cmd(args)

    def zrange(self, name, start, end, desc=False, withscores=False, score_cast_func=float,
               byscore=False, bylex=False, offset=None, num=None):
        """ZRANGE (with REV/BYSCORE/BYLEX/LIMIT): members, or [(member, score)]."""
        args: tuple = ("ZRANGE", name, start, end)
        if byscore:
            args += ("BYSCORE",)
        if bylex:
            args += ("BYLEX",)
        if desc:
            args += ("REV",)
        if offset is not None and num is not None:
            args += ("LIMIT", offset, num)
        return self._withscores(args, withscores, score_cast_func)

    def zrevrange(self, name, start, end, withscores=False, score_cast_func=float):
        """ZREVRANGE: members high to low."""
        return self._withscores(("ZREVRANGE", name, start, end), withscores, score_cast_func)

    def zrangebyscore(self, name, min, max, start=None, num=None, withscores=False,
                      score_cast_func=float):
        """ZRANGEBYSCORE name min max [LIMIT start num]."""
        args: tuple = ("ZRANGEBYSCORE", name, min, max)
        if start is not None and num is not None:
            args += ("LIMIT", start, num)
        return self._withscores(args, withscores, score_cast_func)

    def zrevrangebyscore(self, name, max, min, start=None, num=None, withscores=False,
                         score_cast_func=float):
        """ZREVRANGEBYSCORE name max min [LIMIT start num]."""
        args: tuple = ("ZREVRANGEBYSCORE", name, max, min)
        if start is not None and num is not None:
            args += ("LIMIT", start, num)
        return self._withscores(args, withscores, score_cast_func)

    def zrangebylex(self, name, min, max, start=None, num=None):
        """ZRANGEBYLEX name min max [LIMIT start num]."""
        args: tuple = ("ZRANGEBYLEX", name, min, max)
        if start is not None and num is not None:
            args += ("LIMIT", start, num)
        return self._cmd(args)

    def zrank(self, name, value, withscore=False):
        """ZRANK: the rank or None ([rank, score] with withscore, Redis 7.2+)."""
        if withscore:
            return self._cmd(("ZRANK", name, value, "WITHSCORE"),
                             lambda r: [r[0], float(r[1])] if r else r)
        return self._cmd(("ZRANK", name, value))

    def zrevrank(self, name, value, withscore=False):
        """ZREVRANK: the rank from the top, or None."""
        if withscore:
            return self._cmd(("ZREVRANK", name, value, "WITHSCORE"),
                             lambda r: [r[0], float(r[1])] if r else r)
        return self._cmd(("ZREVRANK", name, value))

    def zpopmin(self, name, count=None):
        """ZPOPMIN [count]: [(member, score)]."""
        return self._cmd(("ZPOPMIN", name) if count is None else ("ZPOPMIN", name, count), _zpop)

    def zpopmax(self, name, count=None):
        """ZPOPMAX [count]: [(member, score)]."""
        return self._cmd(("ZPOPMAX", name) if count is None else ("ZPOPMAX", name, count), _zpop)

    def bzpopmin(self, keys, timeout=0):
        """BZPOPMIN: (key, member, score) or None (dedicated connection)."""
        return self._blocking(("BZPOPMIN", *_list(keys), timeout or 0),
                              lambda r: (r[0], r[1], float(r[2])) if r else None)

    def bzpopmax(self, keys, timeout=0):
        """BZPOPMAX: (key, member, score) or None (dedicated connection)."""
        return self._blocking(("BZPOPMAX", *_list(keys), timeout or 0),
                              lambda r: (r[0], r[1], float(r[2])) if r else None)

    def zremrangebyrank(self, name, min, max):
        """ZREMRANGEBYRANK: members removed."""
        return self._cmd(("ZREMRANGEBYRANK", name, min, max))

    def zremrangebyscore(self, name, min, max):
        """ZREMRANGEBYSCORE: members removed."""
        return self._cmd(("ZREMRANGEBYSCORE", name, min, max))

    def zrandmember(self, key, count=None, withscores=False):
        """ZRANDMEMBER [count [WITHSCORES]] (flat list, as redis-py)."""
        args: tuple = ("ZRANDMEMBER", key)
        if count is not None:
            args += (count,)
        if withscores:
            args += ("WITHSCORES",)

        return self._cmd(args, _flatten_pairs)

    def _zstore(self, cmd, dest, keys, aggregate):
        args: list = [cmd, dest]
        if isinstance(keys, Mapping):
            args += [len(keys), *keys.keys(), "WEIGHTS", *keys.values()]
        else:
            keys = _list(keys)
            args += [len(keys), *keys]
        if aggregate:
            args += ["AGGREGATE", aggregate]
        return self._cmd(tuple(args))

    def zunionstore(self, dest, keys, aggregate=None):
        """ZUNIONSTORE dest keys (a list, or {key: weight}) [AGGREGATE]."""
        return self._zstore("ZUNIONSTORE", dest, keys, aggregate)

    def zinterstore(self, dest, keys, aggregate=None):
        """ZINTERSTORE dest keys (a list, or {key: weight}) [AGGREGATE]."""
        return self._zstore("ZINTERSTORE", dest, keys, aggregate)

    # -- hyperloglog ------------------------------------------------------------------

    def pfadd(self, name, *values):
        """PFADD: 1 if the estimate changed."""
        return self._cmd(("PFADD", name, *values))

    def pfcount(self, *sources):
        """PFCOUNT: the cardinality estimate."""
        return self._cmd(("PFCOUNT", *sources))

    def pfmerge(self, dest, *sources):
        """PFMERGE: True."""
        return self._cmd(("PFMERGE", dest, *sources), bool_ok)

    # -- scans ------------------------------------------------------------------------

    def scan(self, cursor=0, match=None, count=None, _type=None):
        """SCAN cursor [MATCH] [COUNT] [TYPE]: (next cursor, keys)."""
        args = _scan_args(("SCAN", cursor), match, count)
        if _type is not None:
            args += ("TYPE", _type)
        return self._cmd(args, parse_scan)

    def sscan(self, name, cursor=0, match=None, count=None):
        """SSCAN: (next cursor, members)."""
        return self._cmd(_scan_args(("SSCAN", name, cursor), match, count), parse_scan)

    def hscan(self, name, cursor=0, match=None, count=None):
        """HSCAN: (next cursor, {field: value})."""
        return self._cmd(_scan_args(("HSCAN", name, cursor), match, count), parse_hscan)

    def zscan(self, name, cursor=0, match=None, count=None):
        """ZSCAN: (next cursor, [(member, score)])."""
        return self._cmd(_scan_args(("ZSCAN", name, cursor), match, count), parse_zscan)

    # -- pub/sub (publishing side) -----------------------------------------------------------

    def publish(self, channel, message):
        """PUBLISH: how many subscribers received it."""
        return self._cmd(("PUBLISH", channel, message))

    def pubsub_channels(self, pattern="*"):
        """PUBSUB CHANNELS [pattern]."""
        return self._cmd(("PUBSUB", "CHANNELS", pattern))

    def pubsub_numsub(self, *args):
        """PUBSUB NUMSUB channels: [(channel, count)]."""
        return self._cmd(("PUBSUB", "NUMSUB", *args),
                         lambda r: list(pairs_to_dict(r).items()))

    def pubsub_numpat(self):
        """PUBSUB NUMPAT."""
        return self._cmd(("PUBSUB", "NUMPAT"))

    # -- scripting ----------------------------------------------------------------------------

    def eval(self, script, numkeys, *keys_and_args):
        """EVAL script numkeys keys... args...: the script's reply."""
        return self._cmd(("EVAL", script, numkeys, *keys_and_args))

    def evalsha(self, sha, numkeys, *keys_and_args):
        """EVALSHA sha numkeys ...: raises RedisNoScriptError if not loaded."""
        return self._cmd(("EVALSHA", sha, numkeys, *keys_and_args))

    def script_load(self, script):
        """SCRIPT LOAD: the SHA1 (str)."""
        return self._cmd(("SCRIPT", "LOAD", script), _str)

    def script_exists(self, *args):
        """SCRIPT EXISTS sha...: [bool]."""
        return self._cmd(("SCRIPT", "EXISTS", *args), lambda r: [bool(x) for x in r])

    def script_flush(self, sync_type=None):
        """SCRIPT FLUSH [ASYNC|SYNC]: True."""
        args: tuple = ("SCRIPT", "FLUSH") if sync_type is None else ("SCRIPT", "FLUSH", sync_type)
        return self._cmd(args, bool_ok)

    # -- streams --------------------------------------------------------------------------------

    def xadd(self, name, fields, id="*", maxlen=None, approximate=True, nomkstream=False,
             minid=None, limit=None):
        """XADD name [NOMKSTREAM] [MAXLEN|MINID [~] n [LIMIT]] id field value...: the id."""
        if not fields:
            raise InvalidArgumentError("fields", fields, "XADD needs at least one field")
        args: list = ["XADD", name]
        if nomkstream:
            args.append("NOMKSTREAM")
        if maxlen is not None or minid is not None:
            args += ["MAXLEN" if maxlen is not None else "MINID"]
            if approximate:
                args.append("~")
            args.append(maxlen if maxlen is not None else minid)
            if limit is not None:
                args += ["LIMIT", limit]
        args.append(id)
        args += _pairs_from(fields)
        return self._cmd(tuple(args))

    def xlen(self, name):
        """XLEN."""
        return self._cmd(("XLEN", name))

    def xrange(self, name, min="-", max="+", count=None):
        """XRANGE: [(id, {field: value})]."""
        args: tuple = ("XRANGE", name, min, max)
        if count is not None:
            args += ("COUNT", count)
        return self._cmd(args, parse_stream_list)

    def xrevrange(self, name, max="+", min="-", count=None):
        """XREVRANGE: [(id, {field: value})], newest first."""
        args: tuple = ("XREVRANGE", name, max, min)
        if count is not None:
            args += ("COUNT", count)
        return self._cmd(args, parse_stream_list)

    def xdel(self, name, *ids):
        """XDEL: entries deleted."""
        return self._cmd(("XDEL", name, *ids))

    def xtrim(self, name, maxlen=None, approximate=True, minid=None, limit=None):
        """XTRIM name MAXLEN|MINID [~] n: entries removed."""
        args: list = ["XTRIM", name, "MAXLEN" if maxlen is not None else "MINID"]
        if approximate:
            args.append("~")
        args.append(maxlen if maxlen is not None else minid)
        if limit is not None:
            args += ["LIMIT", limit]
        return self._cmd(tuple(args))

    def _xread_args(self, head, streams, count, block, noack=False):
        if not isinstance(streams, Mapping) or not streams:
            raise InvalidArgumentError("streams", streams, "must be a non-empty {stream: id} dict")
        args: list = list(head)
        if count is not None:
            args += ["COUNT", count]
        if block is not None:
            args += ["BLOCK", block]
        if noack:
            args.append("NOACK")
        args.append("STREAMS")
        args += list(streams.keys())
        args += list(streams.values())
        return tuple(args)

    def xread(self, streams, count=None, block=None):
        """XREAD [COUNT] [BLOCK ms] STREAMS {name: last_id}: [[stream, entries]].

        With ``block`` it runs on a dedicated connection.
        """
        args = self._xread_args(("XREAD",), streams, count, block)
        if block is not None:
            return self._blocking(args, parse_xread)
        return self._cmd(args, parse_xread)

    def xreadgroup(self, groupname, consumername, streams, count=None, block=None, noack=False):
        """XREADGROUP GROUP g c ... STREAMS {name: id}: [[stream, entries]]."""
        args = self._xread_args(("XREADGROUP", "GROUP", groupname, consumername), streams,
                                count, block, noack)
        if block is not None:
            return self._blocking(args, parse_xread)
        return self._cmd(args, parse_xread)

    def xgroup_create(self, name, groupname, id="$", mkstream=False, entries_read=None):
        """XGROUP CREATE name group id [MKSTREAM]: True."""
        args: tuple = ("XGROUP", "CREATE", name, groupname, id)
        if mkstream:
            args += ("MKSTREAM",)
        if entries_read is not None:
            args += ("ENTRIESREAD", entries_read)
        return self._cmd(args, bool_ok)

    def xgroup_destroy(self, name, groupname):
        """XGROUP DESTROY: True if it existed."""
        return self._cmd(("XGROUP", "DESTROY", name, groupname), to_bool)

    def xgroup_delconsumer(self, name, groupname, consumername):
        """XGROUP DELCONSUMER: pending messages the consumer had."""
        return self._cmd(("XGROUP", "DELCONSUMER", name, groupname, consumername))

    def xack(self, name, groupname, *ids):
        """XACK: messages acknowledged."""
        return self._cmd(("XACK", name, groupname, *ids))

    def xpending(self, name, groupname):
        """XPENDING summary: {'pending', 'min', 'max', 'consumers'}."""
        return self._cmd(("XPENDING", name, groupname), parse_xpending)

    def xpending_range(self, name, groupname, min, max, count, consumername=None, idle=None):
        """XPENDING with a range: [{'message_id', 'consumer', ...}]."""
        args: tuple = ("XPENDING", name, groupname)
        if idle is not None:
            args += ("IDLE", idle)
        args += (min, max, count)
        if consumername is not None:
            args += (consumername,)
        return self._cmd(args, parse_xpending_range)

    def xautoclaim(self, name, groupname, consumername, min_idle_time, start_id="0-0",
                   count=None, justid=False):
        """XAUTOCLAIM: [next_id, [(id, fields)], deleted] (ids only with justid)."""
        args: tuple = ("XAUTOCLAIM", name, groupname, consumername, min_idle_time, start_id)
        if count is not None:
            args += ("COUNT", count)
        if justid:
            return self._cmd(args + ("JUSTID",), lambda r: r[1])
        return self._cmd(args, parse_xautoclaim)

    def xclaim(self, name, groupname, consumername, min_idle_time, message_ids, justid=False):
        """XCLAIM: [(id, fields)] (ids with justid)."""
        args: tuple = ("XCLAIM", name, groupname, consumername, min_idle_time,
                       *_list(message_ids))
        if justid:
            return self._cmd(args + ("JUSTID",))
        return self._cmd(args, parse_stream_list)


def _scan_args(args, match, count):
    """``args`` with the MATCH / COUNT options of the SCAN family added."""
    if match is not None:
        args += ("MATCH", match)
    if count is not None:
        args += ("COUNT", count)
    return args
