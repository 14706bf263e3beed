"""Micro-benchmarks of issue 3: lock-free queue, work-stealing executor,
async logging — each side by side with its stdlib counterpart, in one run.

    python bench/micro/lockfree_bench.py [queue|executor|sha256|logging|all]
        [--rounds 5] [--workers 1,2,4,8,16] [--json out.json]

Every benchmark runs ``--rounds`` rounds; each round runs every subject once,
in an order that rotates by one per round (drift in the machine's state is
spread over all subjects), and the table reports the median with (min-max).
Results are recorded in bench/RESULTS.md ("Lock-free containers, executor,
logging (issue 3)"), with the machine and the command used.
"""
import argparse
import hashlib
import json
import logging
import os
import platform
import queue as stdqueue
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from flowcoro.lockfree import Queue                    # noqa: E402
from flowcoro.logging import AsyncHandler              # noqa: E402
from flowcoro.scheduler import WorkStealingExecutor    # noqa: E402


def interleaved(subjects, rounds):
    """{name: [value per round]}; subjects: {name: callable() -> value}."""
    names = list(subjects)
    out = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            out[n].append(subjects[n]())
    return out


def cell(values, fmt="{:.2f}"):
    med = statistics.median(values)
    return f"{fmt.format(med)} ({fmt.format(min(values))}-{fmt.format(max(values))})", med


def table(title, unit, results, base=None, fmt="{:.2f}", higher_is_better=True):
    print(f"\n### {title}\n")
    print(f"| subject | {unit} median (min-max) | ratio |")
    print("|---|---|---|")
    meds = {n: statistics.median(v) for n, v in results.items()}
    for n, v in results.items():
        c, med = cell(v, fmt)
        if base and base in meds and meds[base]:
            ratio = med / meds[base] if higher_is_better else meds[base] / med
            r = f"{ratio:.2f}x"
        else:
            r = ""
        print(f"| {n} | {c} | {r} |")
    return meds


# ---- queue: one producer thread, one consumer thread --------------------------------

def bench_queue(args):
    n = args.items

    def run(make, put, get):
        def one():
            q = make()
            p, g = put(q), get(q)

            def producer():
                for i in range(n):
                    p(i)

            t = threading.Thread(target=producer)
            t0 = time.perf_counter()
            t.start()
            for _ in range(n):
                g()
            t.join()
            return n / (time.perf_counter() - t0) / 1e6
        return one

    subjects = {
        "flowcoro.lockfree.Queue(1024) put/get": run(lambda: Queue(1024), lambda q: q.put, lambda q: q.get),
        "queue.Queue(1024) put/get": run(lambda: stdqueue.Queue(1024), lambda q: q.put, lambda q: q.get),
        "queue.SimpleQueue() put/get (unbounded, C)": run(stdqueue.SimpleQueue, lambda q: q.put, lambda q: q.get),
    }
    res = interleaved(subjects, args.rounds)
    return table(f"Queue across two threads ({n} items, 1 producer + 1 consumer)", "M items/s",
                 res, base="queue.Queue(1024) put/get", fmt="{:.3f}")


# ---- executor: per-task overhead --------------------------------------------------

def _noop():
    pass


def bench_executor(args):
    n = args.tasks
    workers = 4

    def batch(cls):
        def one():
            with cls(workers) as ex:
                for f in [ex.submit(_noop) for _ in range(200)]:   # start the threads
                    f.result()
                t0 = time.perf_counter()
                fs = [ex.submit(_noop) for _ in range(n)]
                for f in fs:
                    f.result()
                return (time.perf_counter() - t0) / n * 1e6
        return one

    def seq(cls):
        def one():
            with cls(workers) as ex:
                ex.submit(_noop).result()
                m = n // 4
                t0 = time.perf_counter()
                for _ in range(m):
                    ex.submit(_noop).result()
                return (time.perf_counter() - t0) / m * 1e6
        return one

    res = interleaved({"WorkStealingExecutor": batch(WorkStealingExecutor),
                       "WorkStealingExecutor(caller_runs=True)":
                           batch(lambda n: WorkStealingExecutor(n, caller_runs=True)),
                       "ThreadPoolExecutor": batch(ThreadPoolExecutor)}, args.rounds)
    a = table(f"Executor overhead: submit {n} no-ops, then result() each ({workers} workers)",
              "us/task", res, base="ThreadPoolExecutor", higher_is_better=False)
    res = interleaved({"WorkStealingExecutor": seq(WorkStealingExecutor),
                       "WorkStealingExecutor(caller_runs=True)":
                           seq(lambda n: WorkStealingExecutor(n, caller_runs=True)),
                       "ThreadPoolExecutor": seq(ThreadPoolExecutor)}, args.rounds)
    b = table(f"Executor round trip: submit(no-op).result(), one at a time ({workers} workers)",
              "us/task", res, base="ThreadPoolExecutor", higher_is_better=False)
    return {"batch": a, "sequential": b}


# ---- sha256 of 1 MiB: scaling with workers -----------------------------------------------

def bench_sha256(args):
    data = os.urandom(1 << 20)
    per_worker = args.sha_per_worker
    out = {}
    for w in args.workers:
        jobs = per_worker * w

        def run(cls, w=w, jobs=jobs):
            def one():
                with cls(w) as ex:
                    list(ex.map(hashlib.sha256, [data] * w))       # start the threads
                    t0 = time.perf_counter()
                    list(ex.map(hashlib.sha256, [data] * jobs))
                    return jobs / (time.perf_counter() - t0)
            return one

        res = interleaved({f"WorkStealingExecutor({w})": run(WorkStealingExecutor),
                           f"ThreadPoolExecutor({w})": run(ThreadPoolExecutor)}, args.rounds)
        out[w] = {k: statistics.median(v) for k, v in res.items()}
        out[w]["raw"] = res
    print(f"\n### sha256 of 1 MiB, {per_worker} jobs per worker: MiB/s (median of {args.rounds})\n")
    base = out[args.workers[0]][f"WorkStealingExecutor({args.workers[0]})"]
    print("| workers | WorkStealingExecutor | ThreadPoolExecutor | WSE speed-up vs its 1st row |")
    print("|---|---|---|---|")
    for w in args.workers:
        ws = cell(out[w]["raw"][f"WorkStealingExecutor({w})"], "{:.0f}")[0]
        tp = cell(out[w]["raw"][f"ThreadPoolExecutor({w})"], "{:.0f}")[0]
        print(f"| {w} | {ws} | {tp} | {out[w][f'WorkStealingExecutor({w})'] / base:.2f}x |")
    return {w: {k: v for k, v in d.items() if k != "raw"} for w, d in out.items()}


# ---- logging: cost of one call on the calling thread --------------------------------------

def bench_logging(args):
    n = args.records
    tmp = tempfile.mkdtemp(prefix="fc-logbench-")
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")

    def make(kind, i):
        path = os.path.join(tmp, f"{kind}-{i}.log")
        if kind == "AsyncHandler":
            h = AsyncHandler(path, maxsize=max(n * 2, 1024))
        else:
            h = logging.FileHandler(path)
        h.setFormatter(fmt)
        return h

    counter = iter(range(10**9))

    def handler_call(kind):
        # The handler's own cost: handler.handle(record), records pre-built.
        def one():
            h = make(kind, next(counter))
            recs = [logging.LogRecord("bench", logging.INFO, __file__, 1, "request %d took %.3f ms",
                                      (i, 1.5), None) for i in range(n)]
            handle = h.handle
            t0 = time.perf_counter()
            for r in recs:
                handle(r)
            dt = time.perf_counter() - t0
            h.close()
            return dt / n * 1e6
        return one

    def logger_call(kind):
        # What application code pays: logger.info(...) with the handler attached.
        def one():
            h = make(kind, next(counter))
            lg = logging.getLogger(f"bench.{kind}.{next(counter)}")
            lg.propagate = False
            lg.addHandler(h)
            lg.setLevel(logging.INFO)
            info = lg.info
            lat = []
            t0 = time.perf_counter()
            for i in range(n):
                s = time.perf_counter_ns()
                info("request %d took %.3f ms", i, 1.5)
                lat.append(time.perf_counter_ns() - s)
            dt = time.perf_counter() - t0
            h.close()
            lat.sort()
            return dt / n * 1e6, lat[len(lat) // 2] / 1e3, lat[int(len(lat) * 0.99)] / 1e3
        return one

    def handler_call_writer_held(kind):
        # The calling thread's own cost: the writer is held off (as when the
        # disk is slow) by holding its target's lock, so it takes no GIL
        # time during the timed loop; close() afterwards writes everything.
        def one():
            h = make(kind, next(counter))
            recs = [logging.LogRecord("bench", logging.INFO, __file__, 1, "request %d took %.3f ms",
                                      (i, 1.5), None) for i in range(n)]
            handle = h.handle
            lock = h.target.lock
            lock.acquire()
            try:
                t0 = time.perf_counter()
                for r in recs:
                    handle(r)
                dt = time.perf_counter() - t0
            finally:
                lock.release()
            h.close()
            return dt / n * 1e6
        return one

    res = interleaved({"AsyncHandler": handler_call_writer_held("AsyncHandler"),
                       "FileHandler": handler_call("FileHandler")}, args.rounds)
    w = table(f"handler.handle(record) on the calling thread, writer thread held off, {n} records",
              "us/call", res, base="FileHandler", higher_is_better=False)
    res = interleaved({"AsyncHandler": handler_call("AsyncHandler"),
                       "FileHandler": handler_call("FileHandler")}, args.rounds)
    a = table(f"handler.handle(record), {n} records, writer thread running (it takes GIL time "
              f"from the caller)", "us/call", res, base="FileHandler", higher_is_better=False)
    res = interleaved({"AsyncHandler": logger_call("AsyncHandler"),
                       "FileHandler": logger_call("FileHandler")}, args.rounds)
    print(f"\n### logger.info(...) on the calling thread, {n} calls\n")
    print("| subject | mean us/call (incl. writer thread's GIL time) | median us/call | p99 us/call |")
    print("|---|---|---|---|")
    meds = {}
    for k, v in res.items():
        mean = cell([x[0] for x in v])[0]
        med = cell([x[1] for x in v])[0]
        p99 = cell([x[2] for x in v])[0]
        meds[k] = [statistics.median(x[i] for x in v) for i in range(3)]
        print(f"| {k} | {mean} | {med} | {p99} |")
    return {"handle_writer_held": w, "handle": a, "logger": meds}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", nargs="?", default="all",
                    choices=["queue", "executor", "sha256", "logging", "all"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--items", type=int, default=200000)
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--workers", default="1,2,4",
                    type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--sha-per-worker", type=int, default=16)
    ap.add_argument("--json")
    args = ap.parse_args()
    print(f"# {platform.python_implementation()} {platform.python_version()} on "
          f"{platform.machine()}, {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M')}; "
          f"rounds={args.rounds}")
    out = {}
    for what, fn in (("queue", bench_queue), ("executor", bench_executor),
                     ("sha256", bench_sha256), ("logging", bench_logging)):
        if args.what in (what, "all"):
            out[what] = fn(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
