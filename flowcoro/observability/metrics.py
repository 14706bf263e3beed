"""Metrics on prometheus_client's data model, cheap to update on the loop.

Theory of operation
-------------------
A ``prometheus_client.Counter.inc()`` takes a lock and goes through a
``MutexValue`` (about 0.9 µs on the development machine); ``labels(...)``
adds a dict lookup under another lock.  On an event loop every update
happens on one thread, so :class:`Metrics` keeps its values in plain dicts
of plain numbers instead, keyed by ``(name, label values)``, and a
``prometheus_client`` collector (:class:`MetricsCollector`) turns them into
``CounterMetricFamily`` / ``GaugeMetricFamily`` / ``HistogramMetricFamily``
when the registry is scraped.  The output is therefore exactly what
prometheus_client would write for its own Counter, Gauge and Histogram
(text format and OpenMetrics), and the collector sits in the same registry
as the user's own prometheus_client metrics (``REGISTRY`` by default).

Rules:

* The update methods (``counter_inc``, ``counter_add``, ``gauge_set``,
  ``gauge_add``, ``histogram_observe``) are for ONE thread (the loop's):
  ``d[key] += n`` is a read-modify-write that another thread could
  interleave with.  From other threads use prometheus_client's own metric
  objects (they lock).
* Values only grow (counters, histogram buckets) or are replaced (gauges);
  a scrape reads a snapshot (``dict.copy()`` is atomic under the GIL) and
  never writes, so a scrape from another thread (prometheus_client's own
  ``start_http_server``) is safe.
* Invariant: every key in the value dicts was validated once by the slow
  path (``_first_use``) against the metric's declaration; the fast path is
  a dict update and nothing else.

Labels are given as a tuple of values in the declared label order
(fastest), or as a dict ``{label name: value}``.  A dict is keyed as given
(its items tuple) and folded into the declared order at scrape time, so
the fast path never sorts.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from bisect import bisect_left

from flowcoro.errors import InvalidArgumentError, MetricError

__all__ = ["Metrics", "MetricsCollector", "metrics_handler", "DEFAULT_BUCKETS"]

#: prometheus_client's default histogram buckets (seconds), without +Inf.
DEFAULT_BUCKETS = (.005, .01, .025, .05, .075, .1, .25, .5, .75, 1.0, 2.5, 5.0, 7.5, 10.0)

_COUNTER, _GAUGE, _HISTOGRAM = "counter", "gauge", "histogram"


class _Decl:
    """One declared metric: its type, help text, label names and buckets."""

    __slots__ = ("kind", "name", "doc", "labelnames", "buckets")

    def __init__(self, kind, name, doc, labelnames, buckets=None):
        self.kind = kind
        self.name = name
        self.doc = doc
        self.labelnames = labelnames
        self.buckets = buckets


def _valid_name(name):
    if not isinstance(name, str) or not name:
        return False
    if not (name[0].isalpha() or name[0] in "_:"):
        return False
    return all(c.isalnum() and c.isascii() or c in "_:" for c in name)


class Metrics:
    """Counters, gauges and histograms for code running on an event loop.

    Examples::

        metrics = Metrics()                      # collects into prometheus_client.REGISTRY
        metrics.counter("jobs", "jobs run", ["queue"])
        metrics.counter_inc("jobs", ("emails",))          # tuple: declared order, fastest
        metrics.counter_inc("jobs", {"queue": "emails"})  # or a dict
        metrics.counter_add("bytes_sent", 512)             # declared on first use
        metrics.gauge_set("queue_depth", 7, {"queue": "emails"})
        metrics.histogram_observe("job_seconds", 0.042)
        await metrics.export_prometheus(9100)  # GET /metrics on the running loop
        metrics.export_json("/var/run/app/metrics.json")

    Args:
        registry: the prometheus_client ``CollectorRegistry`` that scrapes
            these metrics (default ``prometheus_client.REGISTRY``, so the
            application's own prometheus_client metrics appear in the same
            output); ``False`` to register nowhere (collect with
            :meth:`collect` or :meth:`snapshot`).
        namespace: prefix joined with ``_`` to every metric name.

    A metric used before it was declared is declared on first use, with
    the label names of the dict given (a tuple needs a declaration).

    Raises:
        MetricError: a name reused with another type or other label names,
            label values that do not fit the declaration, a negative
            counter increment.
    """

    def __init__(self, registry=None, *, namespace=""):
        self.namespace = namespace
        self._decls = {}        # name -> _Decl
        # Per declared name: {label key: ...} (see "the fast paths" below).
        self._counters = {}     # name -> {label key: number}
        self._hists = {}        # name -> {label key: [bounds, n_0 .. n_len(bounds) (+Inf), sum]}
        self._canon = {}        # name -> {label key: label values in declared order}
        self._galias = {}       # gauge name -> {label key: label values}
        self._gauges = {}       # gauge name -> {label values: number}
        self._lock = threading.Lock()   # slow path only (declarations)
        self._collector = MetricsCollector(self)
        self._servers = []
        if registry is None:
            from prometheus_client import REGISTRY
            registry = REGISTRY
        self.registry = registry or None
        if self.registry is not None:
            self.registry.register(self._collector)

    # -- declarations ----------------------------------------------------------
    def counter(self, name, documentation="", labelnames=()):
        """Declare a counter (idempotent for the same label names); returns ``name``."""
        return self._declare(_COUNTER, name, documentation, labelnames)

    def gauge(self, name, documentation="", labelnames=()):
        """Declare a gauge (idempotent for the same label names); returns ``name``."""
        return self._declare(_GAUGE, name, documentation, labelnames)

    def histogram(self, name, documentation="", labelnames=(), buckets=DEFAULT_BUCKETS):
        """Declare a histogram with upper bounds ``buckets`` (+Inf is implied)."""
        b = tuple(float(x) for x in buckets if x != math.inf)
        if not b or list(b) != sorted(set(b)):
            raise MetricError(f"histogram {name!r}: buckets must be increasing and not empty")
        return self._declare(_HISTOGRAM, name, documentation, labelnames, b)

    def _declare(self, kind, name, doc, labelnames, buckets=None):
        if not _valid_name(name):
            raise MetricError(f"bad metric name {name!r}")
        labelnames = tuple(labelnames)
        for ln in labelnames:
            if not _valid_name(ln) or ":" in ln or ln.startswith("__"):
                raise MetricError(f"bad label name {ln!r} for {name!r}")
        if kind == _HISTOGRAM and "le" in labelnames:
            raise MetricError(f"histogram {name!r} cannot have a label named 'le'")
        with self._lock:
            old = self._decls.get(name)
            if old is not None:
                if old.kind != kind or old.labelnames != labelnames or (
                        buckets is not None and old.buckets != buckets):
                    raise MetricError(f"metric {name!r} is already a {old.kind} with labels "
                                      f"{list(old.labelnames)}")
                return name
            self._decls[name] = _Decl(kind, name, doc or name, labelnames, buckets)
            # The inner dicts exist from declaration on: the fast paths find
            # them or fall to _first_use with a KeyError.
            if kind == _COUNTER:
                self._canon[name] = {}
                self._counters[name] = {}
            elif kind == _GAUGE:
                self._galias[name] = {}
                self._gauges[name] = {}
            else:
                self._canon[name] = {}
                self._hists[name] = {}
        return name

    # -- the fast paths ----------------------------------------------------------
    # Storage is one inner dict per declared name (created by _declare), keyed
    # by the labels as given: None, the tuple of values, or a dict's items
    # tuple.  Invariant: a label key present in _counters[name],
    # _hists[name] or _galias[name] was validated by _first_use, and
    # _canon[name][key] (counters, histograms) / _galias[name][key] (gauges)
    # holds its label values in declared order.
    def counter_inc(self, name, labels=None):
        """Add 1 to counter ``name`` (labels: tuple of values or dict)."""
        if labels.__class__ is dict:
            labels = tuple(labels.items())
        try:
            self._counters[name][labels] += 1
        except KeyError:
            self._first_use(_COUNTER, name, labels, 1)

    def counter_add(self, name, amount, labels=None):
        """Add ``amount`` (>= 0) to counter ``name``."""
        if not amount >= 0:
            raise MetricError(f"counter {name!r}: cannot add {amount!r} (counters only go up)")
        if labels.__class__ is dict:
            labels = tuple(labels.items())
        try:
            self._counters[name][labels] += amount
        except KeyError:
            self._first_use(_COUNTER, name, labels, amount)

    def gauge_set(self, name, value, labels=None):
        """Set gauge ``name`` to ``value``."""
        if labels.__class__ is dict:
            labels = tuple(labels.items())
        # Gauges are stored under their label values in declared order: two
        # spellings of one series (dict and tuple) must share one value.
        try:
            values = self._galias[name][labels]
        except KeyError:
            self._first_use(_GAUGE, name, labels, value)
        else:
            self._gauges[name][values] = value

    def gauge_add(self, name, amount, labels=None):
        """Add ``amount`` (may be negative) to gauge ``name``."""
        if labels.__class__ is dict:
            labels = tuple(labels.items())
        try:
            values = self._galias[name][labels]
        except KeyError:
            self._first_use(_GAUGE, name, labels, amount, add=True)
        else:
            self._gauges[name][values] += amount

    def histogram_observe(self, name, value, labels=None):
        """Record ``value`` in histogram ``name``."""
        if labels.__class__ is dict:
            labels = tuple(labels.items())
        try:
            cell = self._hists[name][labels]
        except KeyError:
            self._first_use(_HISTOGRAM, name, labels, value)
            return
        # cell[0] = bounds; bucket i (le bounds[i]) is cell[i + 1]; +Inf is
        # cell[len(bounds) + 1]; the sum is cell[-1].  bisect_left gives the
        # first bound >= value: Prometheus buckets are "less or equal".
        cell[bisect_left(cell[0], value) + 1] += 1
        cell[-1] += value

    def _histogram_cell(self, name, labels, factory=None):
        """The cell of histogram ``name`` for ``labels`` (a tuple of values),
        created empty if new: the HTTP server's C request timing adds to it
        directly (see HttpServer.set_observer).  ``factory(bounds)`` makes
        a new cell that reads like the list one (a HistCell); an existing
        list cell is kept, and its counts move into the new one."""
        try:
            cell = self._hists[name][labels]
        except KeyError:
            self._first_use(_HISTOGRAM, name, labels, 0.0)
            cell = self._hists[name][labels]
            cell[bisect_left(cell[0], 0.0) + 1] -= 1      # no observation was made
        if factory is not None and cell.__class__ is list:
            made = factory(cell[0])
            for i in range(1, len(cell)):
                made[i] = cell[i]
            cell = self._hists[name][labels] = made
        return cell

    def _first_use(self, kind, name, labels, value, add=False):
        """Slow path: validate ``labels`` against the declaration, then record.

        ``labels`` is None, a tuple of values, or a dict's items tuple (the
        fast paths turned a dict into that)."""
        if labels is not None and labels.__class__ is not tuple:
            raise MetricError(f"{kind} {name!r}: labels must be a tuple of values or a dict, "
                              f"not {type(labels).__name__}")
        as_items = bool(labels) and all(x.__class__ is tuple and len(x) == 2 for x in labels)
        decl = self._decls.get(name)
        if decl is None:
            if labels and not as_items:
                raise MetricError(f"{kind} {name!r} takes label values as a tuple only once "
                                  f"declared (declare it, or pass a dict)")
            names = tuple(k for k, _ in labels) if labels else ()
            if kind == _HISTOGRAM:
                self.histogram(name, name, names)
            else:
                self._declare(kind, name, name, names)
            decl = self._decls[name]
        if decl.kind != kind:
            raise MetricError(f"metric {name!r} is a {decl.kind}, not a {kind}")
        if not labels:
            values = ()
        elif as_items and decl.labelnames and all(
                isinstance(k, str) for k, _ in labels):
            given = dict(labels)
            values = tuple(given[ln] for ln in decl.labelnames if ln in given)
            if len(given) != len(decl.labelnames):
                values = None
        else:
            values = labels
        if values is None or len(values) != len(decl.labelnames):
            shown = dict(labels) if as_items else labels
            raise MetricError(f"{kind} {name!r} has labels {list(decl.labelnames)}; "
                              f"got {shown!r}")
        values = tuple(str(v) for v in values)
        if kind == _COUNTER and not value >= 0:
            raise MetricError(f"counter {name!r}: cannot add {value!r} (counters only go up)")
        if kind == _COUNTER:
            self._canon[name][labels] = values
            self._counters[name][labels] = value
        elif kind == _GAUGE:
            self._galias[name][labels] = values
            g = self._gauges[name]
            g[values] = g.get(values, 0) + value if add else value
        else:
            self._canon[name][labels] = values
            cell = [decl.buckets] + [0] * (len(decl.buckets) + 1) + [0.0]
            cell[bisect_left(decl.buckets, value) + 1] += 1
            cell[-1] += value
            self._hists[name][labels] = cell

    # -- reading -------------------------------------------------------------------
    def _fold(self):
        """{name: {label values: value}} from a snapshot of every dict."""
        canon = {n: d.copy() for n, d in self._canon.copy().items()}
        out = {}
        for name, d in self._counters.copy().items():
            keys = canon[name]
            per = out[name] = {}
            for key, v in d.copy().items():
                values = keys.get(key)
                if values is not None:      # None: added since canon was copied
                    per[values] = per.get(values, 0) + v
        for name, d in self._gauges.copy().items():
            out[name] = d.copy()
        for name, d in self._hists.copy().items():
            keys = canon[name]
            per = out[name] = {}
            for key, cell in d.copy().items():
                values = keys.get(key)
                if values is None:          # added since canon was copied: next scrape
                    continue
                cell = list(cell)       # a copy: the loop may update the live one
                old = per.get(values)
                if old is None:
                    per[values] = cell
                else:                   # the same series reached with a dict and a tuple
                    for i in range(1, len(cell)):
                        old[i] += cell[i]
        return out

    def collect(self):
        """The metric families (prometheus_client ``Metric`` objects)."""
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                            HistogramMetricFamily)
        folded = self._fold()
        prefix = self.namespace + "_" if self.namespace else ""
        for name, decl in list(self._decls.items()):
            series = folded.get(name, {})
            full = prefix + name
            if decl.kind == _COUNTER:
                fam = CounterMetricFamily(full, decl.doc, labels=decl.labelnames)
                for values, v in series.items():
                    fam.add_metric(values, v)
            elif decl.kind == _GAUGE:
                fam = GaugeMetricFamily(full, decl.doc, labels=decl.labelnames)
                for values, v in series.items():
                    fam.add_metric(values, v)
            else:
                fam = HistogramMetricFamily(full, decl.doc, labels=decl.labelnames)
                for values, cell in series.items():
                    bounds = cell[0]
                    acc, buckets = 0, []
                    for i, b in enumerate(bounds):
                        acc += cell[i + 1]
                        buckets.append((_fmt_bound(b), acc))
                    acc += cell[len(bounds) + 1]
                    buckets.append(("+Inf", acc))
                    fam.add_metric(values, buckets, cell[-1])
            yield fam

    def snapshot(self):
        """A JSON-ready dict of every metric: ``{name: {"type", "help",
        "labels", "series": [{"labels": {...}, "value"|"buckets"/"count"/"sum"}]}}``."""
        folded = self._fold()
        out = {}
        for name, decl in list(self._decls.items()):
            series = []
            for values, v in folded.get(name, {}).items():
                entry = {"labels": dict(zip(decl.labelnames, values))}
                if decl.kind == _HISTOGRAM:
                    acc, buckets = 0, {}
                    for i, b in enumerate(v[0]):
                        acc += v[i + 1]
                        buckets[_fmt_bound(b)] = acc
                    acc += v[len(v[0]) + 1]
                    buckets["+Inf"] = acc
                    entry.update(buckets=buckets, count=acc, sum=v[-1])
                else:
                    entry["value"] = v
                series.append(entry)
            out[(self.namespace + "_" if self.namespace else "") + name] = {
                "type": decl.kind, "help": decl.doc, "labels": list(decl.labelnames),
                "series": series}
        return out

    # -- export ----------------------------------------------------------------------
    def export_json(self, path):
        """Write :meth:`snapshot` to ``path`` atomically.

        The JSON goes to a temporary file in the same directory, is flushed
        and fsynced, then ``os.replace``\\ s ``path``: a reader sees the old
        file or the new one, never a partial one.  Blocking file I/O (a few
        KiB); call it from a thread (``loop.run_in_executor``) if the disk
        may be slow.
        """
        path = os.fspath(path)
        data = json.dumps(self.snapshot(), indent=1, sort_keys=True).encode()
        d = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".metrics-", suffix=".tmp", dir=d)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return path

    async def export_prometheus(self, port=9090, host="0.0.0.0", path="/metrics"):
        """Serve ``GET /metrics`` from a :class:`flowcoro.http.HttpServer` on
        the running loop (no thread); returns the server (``await
        server.stop()`` to stop it; ``server.port`` when ``port=0``).

        It serves the whole registry (these metrics and every other
        collector registered there)."""
        from flowcoro.http import HttpServer
        if self.registry is None:
            raise InvalidArgumentError("registry", None, "this Metrics registers nowhere")
        app = HttpServer()
        app.route(path, metrics_handler(self.registry))
        await app.listen(host, port)
        self._servers.append(app)
        return app

    def unregister(self):
        """Remove these metrics from their registry."""
        if self.registry is not None:
            self.registry.unregister(self._collector)
            self.registry = None


def _fmt_bound(b):
    # prometheus_client writes bucket bounds with floatToGoString; its
    # parsers accept any float text, and "1.0" / "0.005" round-trip.
    return repr(float(b))


class MetricsCollector:
    """The prometheus_client collector of one :class:`Metrics` (what the
    registry calls on scrape)."""

    def __init__(self, metrics):
        self._metrics = metrics

    def collect(self):
        """Yield the metric families."""
        return self._metrics.collect()

    def describe(self):
        """Nothing: metrics are declared after registration."""
        return []


def metrics_handler(registry=None):
    """An HttpServer handler serving ``registry`` (default
    ``prometheus_client.REGISTRY``) for ``GET /metrics``.

    Prometheus text format 0.0.4, or OpenMetrics 1.0 when the ``Accept``
    header asks for ``application/openmetrics-text``; the ``name[]`` query
    parameters restrict the output to those metric names, as
    prometheus_client's own server does.  Usage::

        app.route("/metrics", metrics_handler())
    """
    from prometheus_client import REGISTRY
    from prometheus_client.exposition import choose_encoder
    from flowcoro.http import Response
    reg = REGISTRY if registry is None else registry

    async def metrics(request):
        """Serve the registry in the format the client asked for."""
        encoder, content_type = choose_encoder(request.headers.get("accept") or "")
        r = reg
        names = _names_param(request.query_string)
        if names:
            r = _Only(reg, names)
        body = encoder(r)
        return Response(body, 200, None, content_type)

    return metrics


class _Only:
    """``registry`` restricted to the samples named in ``names``.

    prometheus_client's ``restricted_registry`` finds collectors through
    ``describe()``, which collectors declaring metrics lazily (ours) leave
    empty, so the filtering is done on the collected samples here.
    """

    def __init__(self, registry, names):
        self._registry = registry
        self._names = set(names)

    def collect(self):
        """The registry's families, keeping only the named samples."""
        for fam in self._registry.collect():
            kept = [s for s in fam.samples if s.name in self._names]
            if kept:
                fam.samples = kept
                yield fam


def _names_param(qs):
    if not qs or b"name" not in qs:
        return None
    from urllib.parse import parse_qs
    return parse_qs(qs.decode("latin-1")).get("name[]")
