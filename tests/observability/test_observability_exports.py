"""flowcoro.observability's public surface, frozen; lazy imports."""
import inspect
import subprocess
import sys

import flowcoro.observability as obs

EXPECTED = {
    "Metrics", "MetricsCollector", "metrics_handler", "DEFAULT_BUCKETS", "RuntimeMetrics",
    "HttpObserver", "instrument", "http_metrics_middleware", "http_tracing_middleware",
    "HTTP_DURATION", "Tracer", "SpanGuard", "traced", "traced_request", "inject_headers", "instrument_redis", "instrument_db",
    "get_tracer", "HealthChecker", "redis_check", "db_check",
}


def test_all_is_frozen_and_documented():
    assert set(obs.__all__) == EXPECTED
    for name in obs.__all__:
        o = getattr(obs, name)
        if inspect.isclass(o) or inspect.isfunction(o):
            assert inspect.getdoc(o), name


def test_import_needs_neither_prometheus_nor_opentelemetry():
    code = ("import sys, flowcoro, flowcoro.observability; "
            "bad = [m for m in sys.modules if m.startswith(('prometheus_client', 'opentelemetry'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
