"""counter_inc on the loop vs a bare prometheus_client Counter.inc().

    .venv/bin/python bench/observability/bench_counter.py [--n 200000] [--rounds 7]

Each subject is a plain ``for`` loop of N calls inside a coroutine running
on FlowCoro's loop (the call as an application makes it), with the method
looked up once as a local, as a hot loop would.  Rounds are interleaved;
the best round of each subject is reported in ns of this thread's CPU
time per call (``time.thread_time``: steadier than wall time on a shared,
loaded machine, since time the thread spends preempted is not counted),
with the ratio
to ``prometheus Counter.inc()`` (the issue's anchor: counter_inc must cost
<= 1/2 of it).
"""
import argparse
import asyncio
import time

import prometheus_client as pc

import flowcoro
from flowcoro.observability import Metrics


def subjects():
    reg = pc.CollectorRegistry()
    c = pc.Counter("c", "h", registry=reg)
    cl = pc.Counter("cl", "h", ["route", "status"], registry=reg)
    child = cl.labels("/x", "200")
    h = pc.Histogram("h", "h", registry=reg)
    m = Metrics(reg)
    m.counter("fc_l", "h", ["route", "status"])
    m.histogram("fc_h", "h")
    labels_t = ("/x", "200")
    labels_d = {"route": "/x", "status": "200"}

    def loop_of(fn, *args):
        async def run(n):
            t0 = time.thread_time()
            for _ in range(n):
                fn(*args)
            return time.thread_time() - t0
        return run

    return [
        ("prometheus Counter.inc()", loop_of(c.inc)),
        ("prometheus Counter.labels(a, b).inc()", None),
        ("prometheus child.inc() (labels cached)", loop_of(child.inc)),
        ("Metrics.counter_inc(name)", loop_of(m.counter_inc, "fc")),
        ("Metrics.counter_inc(name, tuple)", loop_of(m.counter_inc, "fc_l", labels_t)),
        ("Metrics.counter_inc(name, dict)", loop_of(m.counter_inc, "fc_l", labels_d)),
        ("prometheus Histogram.observe(v)", loop_of(h.observe, 0.042)),
        ("Metrics.histogram_observe(name, v)", loop_of(m.histogram_observe, "fc_h", 0.042)),
    ], cl


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    subs, cl = subjects()

    async def labels_inc(n):
        lab = cl.labels
        t0 = time.thread_time()
        for _ in range(n):
            lab("/x", "200").inc()
        return time.thread_time() - t0
    subs[1] = (subs[1][0], labels_inc)

    async def bench():
        best = {name: float("inf") for name, _ in subs}
        for _ in range(args.rounds):
            for name, fn in subs:
                best[name] = min(best[name], await fn(args.n))
        return best
    best = flowcoro.run(bench())
    anchor = best["prometheus Counter.inc()"] / args.n * 1e9
    print(f"{'subject':44s} {'ns/call':>9s} {'vs Counter.inc()':>17s}")
    for name, _ in subs:
        ns = best[name] / args.n * 1e9
        print(f"{name:44s} {ns:9.1f} {ns / anchor:16.2f}x")


if __name__ == "__main__":
    main()
