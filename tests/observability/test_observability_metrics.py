"""Metrics: the fast paths, the exposition formats, /metrics, export_json."""
import asyncio
import json
import os
import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse

from flowcoro.errors import MetricError
from flowcoro.http import HttpServer
from flowcoro.observability import Metrics, metrics_handler

from obs_helpers import get, run


def samples(families):
    """{(sample name, frozenset(labels)): value} of parsed families."""
    out = {}
    for fam in families:
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def fill(m):
    """A few metrics of each kind, with and without labels."""
    m.counter("jobs", "jobs run", ["queue"])
    m.counter_inc("jobs", ("emails",))
    m.counter_inc("jobs", {"queue": "emails"})
    m.counter_add("jobs", 3, ("sms",))
    m.counter_add("bytes_sent", 512)
    m.gauge_set("depth", 7, {"queue": "emails"})
    m.gauge_add("depth", -2, ("emails",))
    m.gauge_add("workers", 4)
    m.histogram("job_seconds", "job time", ["queue"], buckets=[0.1, 1.0])
    for v in (0.05, 0.1, 0.5, 3.0):
        m.histogram_observe("job_seconds", v, ("emails",))
    m.histogram_observe("job_seconds", 0.2, {"queue": "emails"})


def check_values(s, om=False):
    assert s[("jobs_total", frozenset({("queue", "emails")}))] == 2
    assert s[("jobs_total", frozenset({("queue", "sms")}))] == 3
    assert s[("bytes_sent_total", frozenset())] == 512
    assert s[("depth", frozenset({("queue", "emails")}))] == 5
    assert s[("workers", frozenset())] == 4
    q = ("queue", "emails")
    # buckets are cumulative; 0.1 falls in le=0.1 (less or equal)
    assert s[("job_seconds_bucket", frozenset({q, ("le", "0.1")}))] == 2
    assert s[("job_seconds_bucket", frozenset({q, ("le", "1.0")}))] == 4
    assert s[("job_seconds_bucket", frozenset({q, ("le", "+Inf")}))] == 5
    assert s[("job_seconds_count", frozenset({q}))] == 5
    assert s[("job_seconds_sum", frozenset({q}))] == pytest.approx(3.85)


def test_text_and_openmetrics_parse():
    reg = CollectorRegistry()
    m = Metrics(reg)
    fill(m)
    user = Counter("user_logins", "the user's own metric", registry=reg)
    user.inc(9)
    from prometheus_client import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as om_latest
    text = generate_latest(reg).decode()
    s = samples(text_parse(text))
    check_values(s)
    assert s[("user_logins_total", frozenset())] == 9
    om_text = om_latest(reg).decode()
    assert om_text.endswith("# EOF\n")
    s2 = samples(om_parse(om_text))
    check_values(s2)
    types = {f.name: f.type for f in om_parse(om_text)}
    assert types["jobs"] == "counter" and types["depth"] == "gauge"
    assert types["job_seconds"] == "histogram"


def test_namespace_and_snapshot():
    m = Metrics(False, namespace="app")
    fill(m)
    snap = m.snapshot()
    assert set(snap) == {"app_jobs", "app_bytes_sent", "app_depth", "app_workers",
                         "app_job_seconds"}
    assert snap["app_jobs"]["type"] == "counter"
    series = {tuple(e["labels"].items()): e for e in snap["app_job_seconds"]["series"]}
    e = series[(("queue", "emails"),)]
    assert e["count"] == 5 and e["buckets"]["+Inf"] == 5 and e["buckets"]["0.1"] == 2
    fams = {f.name: f for f in m.collect()}
    assert "app_jobs" in fams


@pytest.mark.parametrize("call", [
    lambda m: m.counter_inc("g"),                       # g is a gauge
    lambda m: m.gauge_set("c", 1),                      # c is a counter
    lambda m: m.counter_add("c", -1),                   # counters only go up
    lambda m: m.counter_inc("c", {"x": "1"}),           # c has no labels
    lambda m: m.counter_inc("l", ("a", "b")),           # l has one label
    lambda m: m.counter_inc("l", {"other": "a"}),       # wrong label name
    lambda m: m.counter_inc("undeclared", ("a",)),      # tuple needs a declaration
    lambda m: m.counter("c", "again", ["x"]),           # redeclared with other labels
    lambda m: m.counter("bad name"),
    lambda m: m.counter("ok", labelnames=["__reserved"]),
    lambda m: m.histogram("h", labelnames=["le"]),
    lambda m: m.histogram("h2", buckets=[1.0, 0.5]),
])
def test_misuse_raises(call):
    m = Metrics(False)
    m.gauge("g")
    m.counter("c")
    m.counter("l", labelnames=["k"])
    m.counter_inc("c")
    with pytest.raises(MetricError):
        call(m)


def test_redeclare_same_is_fine_and_counter_add_fast_path_checks():
    m = Metrics(False)
    assert m.counter("c", "x") == "c"
    assert m.counter("c", "x") == "c"
    m.counter_add("c", 2)
    with pytest.raises(MetricError):
        m.counter_add("c", -0.5)
    assert m.snapshot()["c"]["series"][0]["value"] == 2


def test_export_json_atomic(tmp_path, monkeypatch):
    m = Metrics(False)
    fill(m)
    path = tmp_path / "metrics.json"
    path.write_text("old")
    m.export_json(path)
    data = json.loads(path.read_text())
    assert data["jobs"]["series"]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]   # no temp file left
    # A failure before the rename leaves the previous file whole and no temp file.
    before = path.read_text()

    def boom(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    m.counter_inc("jobs", ("emails",))
    with pytest.raises(OSError):
        m.export_json(path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_export_json_writes_through_rename(tmp_path, monkeypatch):
    """The new content reaches ``path`` only by os.replace of a finished file."""
    m = Metrics(False)
    m.counter_inc("n")
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append((os.path.basename(src), json.loads(open(src).read())["n"]["series"]))
        return real(src, dst)
    monkeypatch.setattr(os, "replace", spy)
    m.export_json(str(tmp_path / "m.json"))
    assert len(seen) == 1 and seen[0][0].startswith(".metrics-")
    assert seen[0][1] == [{"labels": {}, "value": 1}]


def test_scrape_from_another_thread_while_updating():
    """A scrape (another thread) reads snapshots while the loop thread updates."""
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.histogram("h", labelnames=["k"])
    stop = threading.Event()
    errors = []

    def scraper():
        from prometheus_client import generate_latest
        while not stop.is_set():
            try:
                list(text_parse(generate_latest(reg).decode()))
            except Exception as e:       # pragma: no cover - the failure we look for
                errors.append(e)
                return
    t = threading.Thread(target=scraper)
    t.start()
    try:
        for i in range(20000):
            m.counter_inc("c", {"k": str(i % 50)})
            m.histogram_observe("h", i / 1000, (str(i % 7),))
    finally:
        stop.set()
        t.join()
    assert not errors
    total = sum(e["value"] for e in m.snapshot()["c"]["series"])
    assert total == 20000


def test_metrics_handler_formats(loop):
    reg = CollectorRegistry()
    m = Metrics(reg)
    fill(m)
    h = Histogram("user_latency", "user's histogram", registry=reg)
    h.observe(0.3)
    app = HttpServer()
    app.route("/metrics", metrics_handler(reg))

    async def main():
        await app.listen("127.0.0.1", 0)
        try:
            st, hd, body = await get(app.port, "/metrics")
            assert st == 200
            assert hd["content-type"].startswith("text/plain; version=")
            s = samples(text_parse(body.decode()))
            check_values(s)
            assert s[("user_latency_count", frozenset())] == 1
            st, hd, body = await get(app.port, "/metrics", headers={
                "accept": "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"})
            assert st == 200
            assert hd["content-type"].startswith("application/openmetrics-text")
            check_values(samples(om_parse(body.decode())))
            st, hd, body = await get(app.port, "/metrics?name[]=workers")
            names = {f.name for f in text_parse(body.decode())}
            assert names == {"workers"}
        finally:
            await app.stop(grace=1)
    run(loop, main())


def test_export_prometheus_serves_on_the_loop(loop):
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.counter_inc("hits")

    async def main():
        server = await m.export_prometheus(0, host="127.0.0.1")
        try:
            st, _, body = await get(server.port, "/metrics")
            assert st == 200
            assert samples(text_parse(body.decode()))[("hits_total", frozenset())] == 1
            m.counter_inc("hits")
            st, _, body = await get(server.port, "/metrics")
            assert samples(text_parse(body.decode()))[("hits_total", frozenset())] == 2
        finally:
            await server.stop(grace=1)
    run(loop, main())


def test_unregister_and_registry_false():
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.counter_inc("x")
    from prometheus_client import generate_latest
    assert b"x_total" in generate_latest(reg)
    m.unregister()
    assert b"x_total" not in generate_latest(reg)
    m.unregister()          # twice: nothing
    with pytest.raises(Exception):
        asyncio.run(m.export_prometheus(0))


def test_default_registry_is_prometheus_REGISTRY():
    from prometheus_client import REGISTRY, generate_latest
    m = Metrics()
    try:
        m.counter_inc("flowcoro_test_default_registry")
        assert b"flowcoro_test_default_registry_total 1.0" in generate_latest(REGISTRY)
    finally:
        m.unregister()


def test_histogram_cell_made_by_a_factory_keeps_earlier_observations():
    """The HTTP server's C timing asks for a HistCell; observations made
    before through histogram_observe move into it, and both paths then add
    to the one series that a scrape reads."""
    from flowcoro._core.httpserver import HistCell
    m = Metrics()
    m.histogram("lat", "latency", ("route",), buckets=(0.1, 1.0))
    m.histogram_observe("lat", 0.05, ("/a",))
    cell = m._histogram_cell("lat", ("/a",), HistCell)
    assert isinstance(cell, HistCell) and list(cell) == [(0.1, 1.0), 1, 0, 0, 0.05]
    assert m._histogram_cell("lat", ("/a",), HistCell) is cell
    cell.observe(0.5)
    m.histogram_observe("lat", 2.0, ("/a",))
    fresh = m._histogram_cell("lat", ("/b",), HistCell)
    assert list(fresh) == [(0.1, 1.0), 0, 0, 0, 0.0]
    snap = m.snapshot()["lat"]["series"]
    a = next(x for x in snap if x["labels"] == {"route": "/a"})
    assert a["count"] == 3 and abs(a["sum"] - 2.55) < 1e-9
    fams = {f.name: f for f in m.collect()}
    buckets = {(s.labels["route"], s.labels.get("le")): s.value
               for s in fams["lat"].samples if s.name == "lat_bucket"}
    assert buckets[("/a", "1.0")] == 2 and buckets[("/a", "+Inf")] == 3
