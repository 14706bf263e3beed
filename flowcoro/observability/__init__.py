"""flowcoro.observability — metrics, runtime metrics, tracing, health checks.

Built on the ecosystem's standards (install ``flowcoro[observability]``):
prometheus_client holds the metric model and writes the exposition
formats, the OpenTelemetry API carries spans and trace context.  Both are
imported on first use: ``import flowcoro.observability`` needs neither.

* :class:`Metrics`: ``counter_inc``, ``counter_add``, ``gauge_set``,
  ``histogram_observe`` (cheap on the loop), ``export_prometheus(port)``,
  ``export_json(path)``; :func:`metrics_handler` serves ``/metrics`` on any
  :class:`flowcoro.http.HttpServer`.
* :class:`RuntimeMetrics`: loop lag, tasks, HTTP connections, Redis and DB
  pools, read on scrape.
* :class:`HttpObserver` / :func:`instrument` /
  :func:`http_metrics_middleware` / :func:`http_tracing_middleware`:
  request metrics and SERVER spans for HttpServer.
* :class:`Tracer`, :class:`SpanGuard`, :func:`traced`,
  :func:`traced_request`, :func:`inject_headers`: spans over OpenTelemetry.
* :func:`instrument_redis`, :func:`instrument_db`: a CLIENT span per Redis
  command and per SQL statement.
* :class:`HealthChecker` with :func:`redis_check`, :func:`db_check`:
  ``/healthz`` and ``/readyz``.

Guide: docs/observability.md.
"""
from flowcoro.observability.clients import instrument_db, instrument_redis
from flowcoro.observability.health import HealthChecker, db_check, redis_check
from flowcoro.observability.http_middleware import (HTTP_DURATION, HttpObserver,
                                                    http_metrics_middleware,
                                                    http_tracing_middleware, instrument)
from flowcoro.observability.metrics import (DEFAULT_BUCKETS, Metrics, MetricsCollector,
                                            metrics_handler)
from flowcoro.observability.runtime import RuntimeMetrics
from flowcoro.observability.tracing import (SpanGuard, Tracer, get_tracer, inject_headers,
                                            traced, traced_request)

__all__ = [
    "Metrics", "MetricsCollector", "metrics_handler", "DEFAULT_BUCKETS",
    "RuntimeMetrics",
    "HttpObserver", "instrument", "http_metrics_middleware", "http_tracing_middleware",
    "HTTP_DURATION",
    "Tracer", "SpanGuard", "traced", "traced_request", "inject_headers", "get_tracer",
    "instrument_redis", "instrument_db",
    "HealthChecker", "redis_check", "db_check",
]
