"""Runtime metrics read on scrape: loop lag, tasks, connections, pools.

Theory of operation
-------------------
Nothing here runs per request.  :class:`RuntimeMetrics` is a
prometheus_client collector: on each scrape it reads what the runtime
already keeps (``asyncio.all_tasks``, ``HttpServer.connections``, the pools'
``stats()``, FlowCoro's loop queue sizes) and turns it into metric
families.  The one thing it measures itself is event-loop lag: a probe
timer fires every ``lag_interval`` seconds and records how late it ran
(``loop.time()`` minus the time it was due) in a ring of the last
``window`` samples; p50/p99/max are computed from that ring when scraped.
A late timer means the loop was busy (a callback that did not yield, a
blocking call) or starved of CPU.  The probe's own cost is one timer per
interval (4 per second by default).

Registered objects are held through weak references: registering an
HttpServer or a pool does not keep it alive, and a collected one drops out
of the output.

Rules: ``start()`` is called on the loop to probe; ``collect()`` may run on
any thread (it only reads: ``all_tasks`` retries on concurrent change, the
lag ring is copied before sorting).
"""
from __future__ import annotations

import asyncio
import collections
import weakref

__all__ = ["RuntimeMetrics"]


# loop.stats() key -> exported family (FlowCoro's loop only); "gauge" or
# "counter" (prometheus_client is imported only when collecting).
_LOOP_STATS = (
    ("gauge", "ready", "ready_callbacks", "Callbacks in the ready queue (FlowCoro loop)"),
    ("gauge", "timers", "timers", "Timers scheduled (FlowCoro loop)"),
    ("gauge", "transports_open", "transports_open", "Socket transports open (FlowCoro loop)"),
    ("counter", "iterations", "iterations", "Run-loop iterations"),
    ("counter", "polls", "polls", "Run-loop iterations that polled the reactor"),
    ("counter", "busy_poll_hits", "busy_poll_hits",
     "Waits that busy polling ended without sleeping"),
    ("counter", "callbacks_run", "callbacks", "Callbacks run"),
    ("counter", "bytes_read", "read_bytes", "Bytes read by socket transports"),
    ("counter", "bytes_written", "written_bytes", "Bytes written by socket transports"),
)


class RuntimeMetrics:
    """Collector of FlowCoro's runtime metrics (see the module doc).

    Example::

        runtime = RuntimeMetrics()          # registers in prometheus_client.REGISTRY
        runtime.start()                     # on the running loop: starts the lag probe
        runtime.add_http_server(app, "api")
        runtime.add_redis_pool(redis_client, "cache")
        runtime.add_db_pool(pool, "main")

    Args:
        registry: prometheus_client registry to register in (default
            ``REGISTRY``); ``False``: none.
        lag_interval: seconds between two lag probes.
        window: lag samples kept (p50/p99 are over the last ``window *
            lag_interval`` seconds: one minute by default).
        prefix: metric name prefix.

    Metrics (``prefix`` = ``flowcoro``): ``flowcoro_event_loop_lag_seconds``
    (gauge, label ``quantile`` 0.5/0.99/1), ``flowcoro_event_loop_lag_samples``,
    ``flowcoro_tasks_alive``, ``flowcoro_loop_ready_callbacks`` and
    ``flowcoro_loop_timers`` (FlowCoro's loop only),
    ``flowcoro_http_connections{server}``,
    ``flowcoro_redis_pool_connections{pool,state}`` and its counters,
    ``flowcoro_db_pool_connections{pool,state}`` and its counters.
    """

    def __init__(self, registry=None, *, lag_interval=0.25, window=240, prefix="flowcoro"):
        self.lag_interval = float(lag_interval)
        self.prefix = prefix
        self._lags = collections.deque(maxlen=int(window))
        self._loop = None
        self._timer = None
        self._due = 0.0
        self._servers = {}          # name -> weakref to HttpServer
        self._redis = {}            # name -> weakref to a pool (or client)
        self._db = {}               # name -> weakref to flowcoro.db.Pool
        self._executors = {}        # name -> weakref to a WorkStealingExecutor
        if registry is None:
            from prometheus_client import REGISTRY
            registry = REGISTRY
        self.registry = registry or None
        if self.registry is not None:
            self.registry.register(self)

    # -- lag probe --------------------------------------------------------------------
    def start(self, loop=None):
        """Start the lag probe on ``loop`` (default: the running loop)."""
        self.stop()
        self._loop = loop or asyncio.get_running_loop()
        self._arm()
        return self

    def stop(self):
        """Stop the lag probe (the samples stay)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self):
        loop = self._loop
        self._due = loop.time() + self.lag_interval
        self._timer = loop.call_at(self._due, self._probe)

    def _probe(self):
        # How late this callback runs is the loop's lag: it was due at
        # _due; anything the loop did not get to in time delays it.
        late = self._loop.time() - self._due
        self._lags.append(late if late > 0.0 else 0.0)
        self._arm()

    def lag_quantiles(self):
        """``(p50, p99, max, samples)`` of the lag window (seconds); zeros when empty."""
        xs = sorted(list(self._lags))
        n = len(xs)
        if not n:
            return 0.0, 0.0, 0.0, 0
        return xs[(n - 1) // 2], xs[min(n - 1, int(n * 0.99))], xs[-1], n

    # -- registration ---------------------------------------------------------------
    def add_http_server(self, app, name="http"):
        """Report ``app.connections`` as ``flowcoro_http_connections{server=name}``."""
        self._servers[name] = weakref.ref(app)
        return app

    def add_redis_pool(self, pool, name="redis"):
        """Report a :class:`flowcoro.redis.ConnectionPool` (or a client with
        ``connection_pool``): anything with ``stats()`` returning the
        ``flowcoro.net.PoolStats`` fields."""
        pool = getattr(pool, "connection_pool", pool)
        self._redis[name] = weakref.ref(pool)
        return pool

    def add_db_pool(self, pool, name="db"):
        """Report a :class:`flowcoro.db.Pool` (``size``, ``idle``,
        ``max_size`` and its ``stats`` counters)."""
        self._db[name] = weakref.ref(pool)
        return pool

    def add_executor(self, executor, name="executor"):
        """Report a :class:`flowcoro.scheduler.WorkStealingExecutor`
        (anything with its ``stats()``): workers, idle workers, queued
        calls, steals.  The loop's default executor is reported as
        ``default`` without this, once it is a WorkStealingExecutor."""
        self._executors[name] = weakref.ref(executor)
        return executor

    # -- collection -----------------------------------------------------------------
    def describe(self):
        """Nothing (the set of series depends on what is registered)."""
        return []

    def collect(self):
        """The metric families, read now."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        p = self.prefix
        lag = GaugeMetricFamily(f"{p}_event_loop_lag_seconds",
                                "How late the loop ran a probe timer, over the window",
                                labels=["quantile"])
        p50, p99, mx, n = self.lag_quantiles()
        lag.add_metric(["0.5"], p50)
        lag.add_metric(["0.99"], p99)
        lag.add_metric(["1"], mx)
        yield lag
        yield GaugeMetricFamily(f"{p}_event_loop_lag_samples", "Lag samples in the window",
                                value=n)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                tasks = len(asyncio.all_tasks(loop))
            except RuntimeError:                # pragma: no cover - loop torn down meanwhile
                tasks = 0
            yield GaugeMetricFamily(f"{p}_tasks_alive", "asyncio Tasks not done on the loop",
                                    value=tasks)
            stats = getattr(loop, "stats", None)
            if stats is not None:
                # FlowCoro's loop keeps these as C counters; read them here.
                s = stats()
                for kind, key, name, doc in _LOOP_STATS:
                    family = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
                    yield family(f"{p}_loop_{name}", doc, value=s[key])
        if self._servers:
            conns = GaugeMetricFamily(f"{p}_http_connections",
                                      "Open connections of an HttpServer", labels=["server"])
            for name, ref in list(self._servers.items()):
                app = ref()
                if app is not None:
                    conns.add_metric([name], app.connections)
            yield conns
        if self._redis:
            yield from self._collect_redis(p, GaugeMetricFamily, CounterMetricFamily)
        if self._db:
            yield from self._collect_db(p, GaugeMetricFamily, CounterMetricFamily)
        executors = {n: e for n, r in list(self._executors.items()) if (e := r()) is not None}
        default = getattr(loop, "_default_executor", None)
        if hasattr(default, "stats"):
            executors.setdefault("default", default)
        if executors:
            yield from self._collect_executors(p, executors, GaugeMetricFamily,
                                               CounterMetricFamily)

    def _collect_executors(self, p, executors, Gauge, Counter):
        gauges = {k: Gauge(f"{p}_executor_{k}", doc, labels=["executor"]) for k, doc in (
            ("workers", "Worker threads started"),
            ("idle_workers", "Worker threads parked"),
            ("queued", "Calls submitted and not started"))}
        steals = Counter(f"{p}_executor_steals", "Calls taken from another worker's deque",
                         labels=["executor"])
        for name, ex in executors.items():
            s = ex.stats()
            gauges["workers"].add_metric([name], s["workers"])
            gauges["idle_workers"].add_metric([name], s["idle"])
            gauges["queued"].add_metric([name], s["queued"])
            steals.add_metric([name], s["steals"])
        yield from gauges.values()
        yield steals

    def _collect_redis(self, p, Gauge, Counter):
        conns = Gauge(f"{p}_redis_pool_connections", "Redis pool connections by state",
                      labels=["pool", "state"])
        gauges = {k: Gauge(f"{p}_redis_pool_{k}", doc, labels=["pool"]) for k, doc in (
            ("max_connections", "Most connections the Redis pool opens"),
            ("waiting", "acquire() calls waiting for a Redis connection"))}
        counters = {k: Counter(f"{p}_redis_pool_{k}", doc, labels=["pool"]) for k, doc in (
            ("created", "Redis connections opened"),
            ("discarded", "Redis connections closed as broken, expired or unhealthy"),
            ("acquired", "Redis pool acquire() calls that got a connection"),
            ("timeouts", "Redis pool acquire() calls that timed out"),
            ("waits", "Redis pool acquire() calls that waited for a connection"),
            ("wait_seconds", "Seconds Redis pool acquire() calls spent waiting"))}
        for name, ref in list(self._redis.items()):
            pool = ref()
            if pool is None:
                continue
            s = pool.stats()
            conns.add_metric([name, "idle"], s.idle)
            conns.add_metric([name, "in_use"], s.in_use)
            gauges["max_connections"].add_metric([name], s.max_size)
            gauges["waiting"].add_metric([name], s.waiting)
            for k, fam in counters.items():
                fam.add_metric([name], getattr(s, k))
        yield conns
        yield from gauges.values()
        yield from counters.values()

    def _collect_db(self, p, Gauge, Counter):
        conns = Gauge(f"{p}_db_pool_connections", "Database pool connections by state",
                      labels=["pool", "state"])
        mx = Gauge(f"{p}_db_pool_max_connections", "Most connections the database pool opens",
                   labels=["pool"])
        counters = {k: Counter(f"{p}_db_pool_{k}", doc, labels=["pool"]) for k, doc in (
            ("opened", "Database connections opened"),
            ("broken", "Database connections dropped as broken"),
            ("retired", "Database connections retired by age or idleness"),
            ("timeouts", "Database pool acquire() calls that timed out"),
            ("waits", "Database pool acquire() calls that waited for a connection"),
            ("wait_seconds", "Seconds database pool acquire() calls spent waiting"))}
        for name, ref in list(self._db.items()):
            pool = ref()
            if pool is None:
                continue
            size, idle = pool.size, pool.idle
            conns.add_metric([name, "idle"], idle)
            conns.add_metric([name, "in_use"], max(0, size - idle))
            mx.add_metric([name], pool.max_size)
            stats = getattr(pool, "stats", None) or {}
            for k, fam in counters.items():
                if k in stats:
                    fam.add_metric([name], stats[k])
        yield conns
        yield mx
        yield from counters.values()

    def unregister(self):
        """Stop the probe and leave the registry."""
        self.stop()
        if self.registry is not None:
            self.registry.unregister(self)
            self.registry = None
