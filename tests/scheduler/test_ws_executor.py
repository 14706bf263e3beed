"""flowcoro.scheduler.WorkStealingExecutor: the Executor contract, stealing,
parking (no CPU when idle), asyncio integration on every loop kind."""
import asyncio
import concurrent.futures as cf
import hashlib
import os
import threading
import time

import pytest

from flowcoro.errors import ExecutorShutdownError, InvalidArgumentError
from flowcoro.scheduler import WorkStealingExecutor

#: Stress sizes scale with FC_STRESS_SCALE (`make stress` raises it).
SCALE = max(1, int(os.environ.get("FC_STRESS_SCALE", "1")))
pytestmark = pytest.mark.timeout(60 * SCALE)


@pytest.fixture
def ex():
    e = WorkStealingExecutor(4)
    yield e
    e.shutdown(wait=True, cancel_futures=True)


def test_submit_result_and_exception(ex):
    f = ex.submit(pow, 2, 10)
    assert f.result(timeout=10) == 1024
    assert isinstance(f, cf.Future) and f.done() and not f.cancelled() and not f.running()
    g = ex.submit(int, "nope")
    with pytest.raises(ValueError):
        g.result(timeout=10)
    assert isinstance(g.exception(), ValueError)
    h = ex.submit(lambda *a, **k: (a, k), 1, 2, x=3)
    assert h.result() == ((1, 2), {"x": 3})


def test_map_keeps_order_and_timeout(ex):
    assert list(ex.map(lambda x: x * x, range(100))) == [x * x for x in range(100)]
    assert list(ex.map(pow, [2, 3], [5, 2])) == [32, 9]
    with pytest.raises(cf.TimeoutError):
        list(ex.map(time.sleep, [0.5], timeout=0.05))


def test_result_timeout(ex):
    gate = threading.Event()
    f = ex.submit(gate.wait, 10)
    with pytest.raises(cf.TimeoutError):
        f.result(timeout=0.05)
    gate.set()
    assert f.result(timeout=10) is True


def test_done_callbacks_and_stdlib_helpers(ex):
    seen = []
    fs = [ex.submit(time.sleep, 0.01 * (i % 3)) for i in range(20)]
    for f in fs:
        f.add_done_callback(lambda fut: seen.append(fut))
    done, not_done = cf.wait(fs, timeout=10)
    assert len(done) == 20 and not not_done
    assert set(cf.as_completed(fs, timeout=10)) == set(fs)
    deadline = time.monotonic() + 5
    while len(seen) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(seen) == 20
    late = []
    fs[0].add_done_callback(late.append)         # already done: called at once
    assert late == [fs[0]]
    # wait() on futures still pending exercises the lazily built Condition.
    gate = threading.Event()
    slow = ex.submit(gate.wait, 10)
    threading.Timer(0.05, gate.set).start()
    done, _ = cf.wait([slow], return_when=cf.FIRST_COMPLETED, timeout=10)
    assert done == {slow}


def test_cancel_before_start():
    ex = WorkStealingExecutor(1)
    gate = threading.Event()
    try:
        blocker = ex.submit(gate.wait, 10)
        queued = ex.submit(lambda: "never")
        assert queued.cancel() and queued.cancelled()
        gate.set()
        assert blocker.result(timeout=10) is True
        with pytest.raises(cf.CancelledError):
            queued.result(timeout=10)
    finally:
        ex.shutdown()


def test_shutdown_runs_pending_work():
    ex = WorkStealingExecutor(2)
    out = []
    fs = [ex.submit(lambda i=i: (time.sleep(0.001), out.append(i))) for i in range(50)]
    ex.shutdown(wait=True)
    assert sorted(out) == list(range(50)) and all(f.done() for f in fs)
    with pytest.raises(ExecutorShutdownError):
        ex.submit(print)
    with pytest.raises(RuntimeError):           # what ThreadPoolExecutor raises
        ex.submit(print)


def test_shutdown_cancel_futures():
    ex = WorkStealingExecutor(1)
    gate = threading.Event()
    running = ex.submit(gate.wait, 10)
    time.sleep(0.05)
    pending = [ex.submit(time.sleep, 0) for _ in range(10)]
    threading.Timer(0.1, gate.set).start()
    ex.shutdown(wait=True, cancel_futures=True)
    assert running.result() is True
    assert all(f.cancelled() for f in pending)


def test_context_manager_and_no_wait():
    with WorkStealingExecutor(2) as ex:
        f = ex.submit(sum, [1, 2, 3])
    assert f.result() == 6
    ex = WorkStealingExecutor(2)
    g = ex.submit(time.sleep, 0.05)
    ex.shutdown(wait=False)
    assert g.result(timeout=10) is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, "4", True])
def test_bad_max_workers(bad):
    with pytest.raises(InvalidArgumentError):
        WorkStealingExecutor(bad)


def test_default_max_workers():
    import os
    ex = WorkStealingExecutor()
    assert ex.max_workers == min(32, (os.cpu_count() or 1) + 4)
    ex.shutdown()


def test_initializer_and_broken_initializer():
    tls = threading.local()
    with WorkStealingExecutor(2, initializer=setattr, initargs=(tls, "x", 42)) as ex:
        assert ex.submit(lambda: tls.x).result(timeout=10) == 42
    with pytest.raises(InvalidArgumentError):
        WorkStealingExecutor(2, initializer=5)
    ex = WorkStealingExecutor(1, initializer=lambda: 1 / 0)
    f = ex.submit(print)
    with pytest.raises(cf.BrokenExecutor):
        f.result(timeout=10)
    with pytest.raises(cf.BrokenExecutor):
        ex.submit(print)
    ex.shutdown()


def test_thread_names():
    with WorkStealingExecutor(2, thread_name_prefix="crunch") as ex:
        assert ex.submit(lambda: threading.current_thread().name).result().startswith("crunch_")


# ---- work stealing ------------------------------------------------------------------

def test_schedule_local_from_outside_is_submit(ex):
    assert ex.schedule_local(pow, 3, 3).result(timeout=10) == 27


def test_fork_join_with_one_worker_does_not_deadlock():
    """schedule_local + result() on a single worker: the waiter helps."""
    with WorkStealingExecutor(1) as ex:
        def fib(n):
            if n < 2:
                return n
            a = ex.schedule_local(fib, n - 1)
            b = ex.schedule_local(fib, n - 2)
            return a.result() + b.result()

        assert ex.submit(fib, 15).result(timeout=30) == 610


def test_idle_workers_steal_local_work():
    with WorkStealingExecutor(4) as ex:
        # Start all workers (each submit starts one while none is idle).
        for f in [ex.submit(time.sleep, 0.05) for _ in range(4)]:
            f.result()

        def parent():
            me = threading.get_ident()
            kids = [ex.schedule_local(lambda: (time.sleep(0.01), threading.get_ident())[1])
                    for _ in range(40)]
            return me, [k.result() for k in kids]

        before = ex.stats()["steals"]
        me, ran_on = ex.submit(parent).result(timeout=30)
        stolen = len([t for t in ran_on if t != me])
        assert stolen >= 1, "no child was stolen by another worker"
        # every child that ran elsewhere was stolen (the count may include
        # other steals, e.g. of the parent itself)
        st = ex.stats()
        assert st["steals"] - before >= stolen
        assert st["workers"] == 4 and st["queued"] == 0


def test_many_submitters_exactly_once():
    n_threads, per = 6, 2000 * SCALE
    counts = [0] * (n_threads * per)
    lock = threading.Lock()

    def bump(i):
        with lock:
            counts[i] += 1

    with WorkStealingExecutor(4) as ex:
        def submitter(k):
            fs = [ex.submit(bump, k * per + i) for i in range(per)]
            for f in fs:
                f.result(timeout=30)

        ts = [threading.Thread(target=submitter, args=(k,)) for k in range(n_threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert counts == [1] * (n_threads * per)


def test_burst_beyond_the_injection_queue(monkeypatch):
    import flowcoro.scheduler as sched
    monkeypatch.setattr(sched, "INJECT_CAPACITY", 8)
    with WorkStealingExecutor(2) as ex:
        fs = [ex.submit(lambda i=i: i) for i in range(500)]   # most go to overflow
        assert [f.result(timeout=30) for f in fs] == list(range(500))


def test_idle_executor_uses_no_cpu():
    ex = WorkStealingExecutor(4)
    try:
        list(ex.map(hashlib.sha256, [b"x" * 100000] * 32))
        time.sleep(0.1)                          # past the idle spin
        c0 = time.process_time()
        time.sleep(0.5)
        used = time.process_time() - c0
        assert used < 0.05, f"idle executor used {used:.3f}s of CPU in 0.5s"
    finally:
        ex.shutdown()


def test_gil_releasing_work_runs_in_parallel():
    """Tasks that release the GIL overlap: 8 x sleep(0.1) on 4 workers take ~0.2 s.

    (Throughput scaling of sha256 is measured by bench/micro, not asserted
    here: a shared 2-core test box makes CPU timings flaky.)"""
    with WorkStealingExecutor(4) as ex:
        list(ex.map(time.sleep, [0.01] * 4))     # start the workers
        t0 = time.perf_counter()
        list(ex.map(time.sleep, [0.1] * 8))
        elapsed = time.perf_counter() - t0
    assert elapsed < 0.6, elapsed


# ---- asyncio ------------------------------------------------------------------------------

def test_run_in_executor(loop, ex):
    async def main():
        a = await loop.run_in_executor(ex, pow, 2, 8)
        results = await asyncio.gather(*(loop.run_in_executor(ex, pow, 2, i) for i in range(50)))
        return a, results

    a, results = loop.run_until_complete(main())
    assert a == 256 and results == [2 ** i for i in range(50)]


def test_default_executor(loop):
    ex = WorkStealingExecutor(2)
    loop.set_default_executor(ex)

    async def main():
        name = await loop.run_in_executor(None, lambda: threading.current_thread().name)
        with pytest.raises(ZeroDivisionError):
            await loop.run_in_executor(None, lambda: 1 / 0)
        return name

    assert "WorkStealingExecutor" in loop.run_until_complete(main())
    # close_loop (the fixture) shuts the default executor down.


def test_cancelling_the_asyncio_side(loop, ex):
    gate = threading.Event()

    async def main():
        fut = loop.run_in_executor(ex, gate.wait, 10)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(fut, 0.05)
        gate.set()

    loop.run_until_complete(main())


# ---- caller_runs ------------------------------------------------------------------------

def test_caller_runs_runs_an_unstarted_call_on_the_waiting_thread():
    gate = threading.Event()
    with WorkStealingExecutor(1, caller_runs=True) as ex:
        busy = ex.submit(gate.wait, 10)           # the only worker is busy
        f = ex.submit(threading.get_ident)
        assert f.result() == threading.get_ident()   # ran here instead of waiting
        gate.set()
        assert busy.result(timeout=10) is True
    with WorkStealingExecutor(1) as ex:           # default: never on the caller
        assert ex.submit(threading.get_ident).result() != threading.get_ident()


def test_caller_runs_each_call_runs_exactly_once():
    counts = [0] * 5000
    lock = threading.Lock()

    def bump(i):
        with lock:
            counts[i] += 1
        return i

    with WorkStealingExecutor(3, caller_runs=True) as ex:
        for i in range(5000):                     # race the workers for every call
            assert ex.submit(bump, i).result() == i
    assert counts == [1] * 5000


def test_caller_runs_with_initializer_is_refused():
    with pytest.raises(InvalidArgumentError):
        WorkStealingExecutor(2, initializer=print, caller_runs=True)
