"""Health checks: liveness and readiness endpoints as Kubernetes probes expect.

* ``/healthz`` (liveness): the process is up and its loop answers; it
  runs no check, because restarting the process does not fix a database
  that is down (a failing liveness probe restarts the pod).
* ``/readyz`` (readiness): every check runs concurrently, each under its
  own timeout; 200 when every *critical* check passed, else 503 (the pod is
  taken out of the Service's endpoints until it recovers).  Non-critical
  checks are reported but never fail readiness.

The JSON body::

    {"status": "pass", "checks": {
        "redis": {"status": "pass", "latency_ms": 0.41, "critical": true},
        "db":    {"status": "timeout", "latency_ms": 1000.6, "critical": true,
                  "error": "no answer within 1.0 s"}}}

A check is ``async def check() -> bool | None``: returning None or a true
value passes; returning a false value or raising fails (the exception's
text goes into ``error``); running past its timeout is ``"timeout"`` (the
check is cancelled).
"""
from __future__ import annotations

import asyncio
import time

from flowcoro.errors import InvalidArgumentError

__all__ = ["HealthChecker", "redis_check", "db_check"]


class HealthChecker:
    """A set of named checks and the handlers that serve them.

    Example::

        health = HealthChecker()
        health.add_check("redis", redis_check(r), timeout=0.5)
        health.add_check("db", db_check(pool), timeout=1.0)
        health.add_check("cache-warm", warmed, critical=False)
        app.route("/healthz", health.healthz)
        app.route("/readyz", health.readyz)
        # or a server of its own: await health.serve_health_endpoint(8081)

    Args:
        default_timeout: seconds a check may run when ``add_check`` gives none.
    """

    def __init__(self, *, default_timeout=1.0):
        self.default_timeout = default_timeout
        self._checks = {}           # name -> (coro_fn, timeout, critical)
        self._started = time.monotonic()
        self._servers = []

    def add_check(self, name, coro_fn, *, timeout=None, critical=True):
        """Add (or replace) check ``name``: ``async def coro_fn()``."""
        if not callable(coro_fn):
            raise InvalidArgumentError("coro_fn", coro_fn, "must be an async function")
        if timeout is None:
            timeout = self.default_timeout
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InvalidArgumentError("timeout", timeout, "must be a number > 0")
        self._checks[name] = (coro_fn, float(timeout), bool(critical))

    def remove_check(self, name):
        """Remove check ``name`` (no error if absent)."""
        self._checks.pop(name, None)

    @property
    def checks(self):
        """The names of the checks, in the order they were added."""
        return list(self._checks)

    async def _run_one(self, fn, timeout):
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                ok = await fn()
        except TimeoutError:
            return {"status": "timeout", "latency_ms": _ms(t0),
                    "error": f"no answer within {timeout} s"}
        except asyncio.CancelledError:
            raise
        except Exception as e:
            return {"status": "fail", "latency_ms": _ms(t0), "error": f"{type(e).__name__}: {e}"}
        if ok is None or ok:
            return {"status": "pass", "latency_ms": _ms(t0)}
        return {"status": "fail", "latency_ms": _ms(t0), "error": f"check returned {ok!r}"}

    async def check_all(self):
        """Run every check concurrently; returns the readiness report (a dict
        with ``status`` "pass"/"fail" and ``checks``: name -> result)."""
        items = list(self._checks.items())
        results = await asyncio.gather(*(self._run_one(fn, t) for _, (fn, t, _c) in items))
        checks = {}
        ok = True
        for (name, (_fn, _t, critical)), res in zip(items, results):
            res["critical"] = critical
            checks[name] = res
            if critical and res["status"] != "pass":
                ok = False
        return {"status": "pass" if ok else "fail", "checks": checks}

    async def healthz(self, request=None):
        """Liveness handler: 200 ``{"status": "pass", "uptime_s": ...}``."""
        from flowcoro.http import Response
        return Response.json({"status": "pass",
                              "uptime_s": round(time.monotonic() - self._started, 3)})

    async def readyz(self, request=None):
        """Readiness handler: 200 when every critical check passes, else 503."""
        from flowcoro.http import Response
        report = await self.check_all()
        return Response.json(report, status=200 if report["status"] == "pass" else 503,
                             headers={"cache-control": "no-store"})

    def add_routes(self, app, *, liveness="/healthz", readiness="/readyz"):
        """Register the two handlers on an :class:`flowcoro.http.HttpServer`."""
        app.route(liveness, self.healthz)
        app.route(readiness, self.readyz)
        return app

    async def serve_health_endpoint(self, port=8081, host="0.0.0.0"):
        """Serve ``/healthz`` and ``/readyz`` on an HttpServer of their own
        (on the running loop); returns it (``await server.stop()``)."""
        from flowcoro.http import HttpServer
        app = self.add_routes(HttpServer())
        await app.listen(host, port)
        self._servers.append(app)
        return app


def _ms(t0):
    return round((time.perf_counter() - t0) * 1e3, 3)


def redis_check(client):
    """A check that sends ``PING`` with ``client`` (flowcoro.redis.Redis,
    redis-py's asyncio client, or anything with ``async ping()``)."""
    async def redis_ping():
        """PING the Redis server."""
        return await client.ping()
    return redis_ping


def db_check(pool, sql="SELECT 1"):
    """A check that runs ``sql`` on ``pool`` (a flowcoro.db Pool or
    Connection, or anything with ``async execute(sql)``)."""
    async def db_select_one():
        """Run the probe query."""
        await pool.execute(sql)
        return True
    return db_select_one
