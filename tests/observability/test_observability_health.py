"""Health checks: /healthz, /readyz, timeouts, built-in checks."""
import asyncio
import json

import pytest

from flowcoro.errors import InvalidArgumentError
from flowcoro.http import HttpServer
from flowcoro.observability import HealthChecker, db_check, redis_check

from obs_helpers import get, run


async def ok():
    return True


async def quiet():
    return None


async def bad():
    return False


async def broken():
    raise ConnectionError("refused")


def test_all_pass_and_noncritical_failures(loop):
    h = HealthChecker()
    h.add_check("a", ok)
    h.add_check("b", quiet, timeout=0.5)
    h.add_check("extra", broken, critical=False)
    assert h.checks == ["a", "b", "extra"]

    async def main():
        server = await h.serve_health_endpoint(0, host="127.0.0.1")
        try:
            st, hd, body = await get(server.port, "/readyz")
            st2, _, body2 = await get(server.port, "/healthz")
            return st, hd, json.loads(body), st2, json.loads(body2)
        finally:
            await server.stop(grace=1)
    st, hd, rep, st2, live = run(loop, main())
    assert st == 200 and hd["content-type"] == "application/json"
    assert rep["status"] == "pass"
    assert rep["checks"]["a"]["status"] == "pass" and rep["checks"]["a"]["critical"] is True
    assert rep["checks"]["b"]["status"] == "pass"
    assert rep["checks"]["extra"] == {"status": "fail", "critical": False,
                                      "latency_ms": rep["checks"]["extra"]["latency_ms"],
                                      "error": "ConnectionError: refused"}
    assert all(c["latency_ms"] >= 0 for c in rep["checks"].values())
    assert st2 == 200 and live["status"] == "pass" and live["uptime_s"] >= 0


@pytest.mark.parametrize("check,status", [(bad, "fail"), (broken, "fail")])
def test_critical_failure_is_503(loop, check, status):
    h = HealthChecker()
    h.add_check("a", ok)
    h.add_check("dep", check)
    app = h.add_routes(HttpServer())

    async def main():
        await app.listen("127.0.0.1", 0)
        try:
            st, _, body = await get(app.port, "/readyz")
            live = (await get(app.port, "/healthz"))[0]
            return st, json.loads(body), live
        finally:
            await app.stop(grace=1)
    st, rep, live = run(loop, main())
    assert st == 503 and rep["status"] == "fail"
    assert rep["checks"]["dep"]["status"] == status
    assert rep["checks"]["a"]["status"] == "pass"
    assert live == 200          # liveness does not depend on the checks


def test_timeouts_run_concurrently(loop):
    """Two checks that never answer each time out on their own timeout; they
    run concurrently (the hang check is cancelled at its timeout)."""
    cancelled = []

    async def hang():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
    h = HealthChecker(default_timeout=0.2)
    h.add_check("slow1", hang)
    h.add_check("slow2", hang, timeout=0.3)
    h.add_check("fine", ok)

    async def main():
        return await h.check_all()
    rep = run(loop, main(), timeout=5)
    assert rep["status"] == "fail"
    assert rep["checks"]["slow1"]["status"] == "timeout"
    assert rep["checks"]["slow1"]["error"] == "no answer within 0.2 s"
    assert rep["checks"]["slow2"]["status"] == "timeout"
    assert rep["checks"]["fine"]["status"] == "pass"
    assert len(cancelled) == 2
    assert rep["checks"]["slow1"]["latency_ms"] >= 200


def test_remove_and_bad_arguments(loop):
    h = HealthChecker()
    h.add_check("x", bad)
    h.remove_check("x")
    h.remove_check("absent")
    assert run(loop, h.check_all()) == {"status": "pass", "checks": {}}
    with pytest.raises(InvalidArgumentError):
        h.add_check("y", "not callable")
    with pytest.raises(InvalidArgumentError):
        h.add_check("y", ok, timeout=0)


def test_builtin_checks_redis_and_db(loop, redis_url):
    import flowcoro.db as db
    from flowcoro.redis import Redis

    class DownPool:
        async def execute(self, sql):
            raise OSError("db down")

    async def main():
        r = Redis.from_url(redis_url)
        pool = await db.create_pool("sqlite://:memory:")
        h = HealthChecker()
        h.add_check("redis", redis_check(r))
        h.add_check("db", db_check(pool))
        try:
            good = await h.check_all()
            h.add_check("db2", db_check(DownPool()))
            bad_rep = await h.check_all()
        finally:
            await r.aclose()
            await pool.close()
        # a closed Redis client: the check fails instead of hanging
        dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2,
                              retry_attempts=0)
        h2 = HealthChecker(default_timeout=2)
        h2.add_check("redis", redis_check(dead))
        down = await h2.check_all()
        await dead.aclose()
        return good, bad_rep, down
    good, bad_rep, down = run(loop, main())
    assert good["status"] == "pass"
    assert good["checks"]["redis"]["status"] == "pass"
    assert good["checks"]["db"]["status"] == "pass"
    assert bad_rep["status"] == "fail"
    assert bad_rep["checks"]["db2"]["error"] == "OSError: db down"
    assert down["status"] == "fail" and down["checks"]["redis"]["status"] in ("fail", "timeout")
