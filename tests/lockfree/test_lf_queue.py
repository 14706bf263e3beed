"""flowcoro.lockfree.Queue: FIFO, typed errors, references, threads, coroutines.

The coroutine tests run on every loop kind of tests/conftest.py (FlowCoro's
epoll and poll loops, and the stdlib loop as the reference).
"""
import asyncio
import gc
import os
import queue as stdqueue
import signal
import sys
import threading
import time
import weakref

import pytest

from flowcoro.errors import InvalidArgumentError, QueueEmpty, QueueFull
from flowcoro.lockfree import Queue

#: Stress sizes scale with FC_STRESS_SCALE (`make stress` raises it).
SCALE = max(1, int(os.environ.get("FC_STRESS_SCALE", "1")))
pytestmark = pytest.mark.timeout(60 * SCALE)


class Obj:
    """A weak-referenceable item."""


# ---- single thread -----------------------------------------------------------

@pytest.mark.parametrize("cap", [1, 2, 3, 7, 8, 1000])
def test_fifo_and_bounds(cap):
    import collections
    q = Queue(cap)
    model = collections.deque()
    assert q.maxsize == cap and q.empty() and not q.full() and len(q) == 0
    for i in range(cap):
        q.put_nowait(i)
        model.append(i)
    assert q.full() and q.qsize() == cap
    with pytest.raises(QueueFull):
        q.put_nowait("x")
    for lap in range(3 * cap + 5):              # wrap around several times
        assert q.get_nowait() == model.popleft()
        q.put_nowait(cap + lap)
        model.append(cap + lap)
    assert [q.get_nowait() for _ in range(cap)] == list(model)
    assert q.empty()
    with pytest.raises(QueueEmpty):
        q.get_nowait()


def test_exact_fifo_small():
    q = Queue(3)
    for i in range(3):
        q.put(i)
    assert [q.get(), q.get()] == [0, 1]
    q.put(3)
    q.put(4)
    assert [q.get_nowait() for _ in range(3)] == [2, 3, 4]


def test_errors_are_typed_and_stdlib_compatible():
    assert issubclass(QueueFull, stdqueue.Full) and issubclass(QueueEmpty, stdqueue.Empty)
    q = Queue(1)
    q.put(None)                                 # None is an ordinary item here
    with pytest.raises(stdqueue.Full):
        q.put(1, block=False)
    assert q.get() is None
    with pytest.raises(stdqueue.Empty):
        q.get(block=False)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "8", None, True, 2**40])
def test_bad_maxsize(bad):
    with pytest.raises(InvalidArgumentError) as ei:
        Queue(bad)
    assert ei.value.argument == "maxsize" and isinstance(ei.value, ValueError)


@pytest.mark.parametrize("bad", [-1, -0.5, "soon", float("nan")])
def test_bad_timeout(bad):
    q = Queue(1)
    with pytest.raises(InvalidArgumentError):
        q.get(timeout=bad)
    q.put(1)
    with pytest.raises(InvalidArgumentError):
        q.put(2, timeout=bad)
    assert q.qsize() == 1


def test_timeouts():
    q = Queue(1)
    t0 = time.monotonic()
    with pytest.raises(QueueEmpty):
        q.get(timeout=0.1)
    assert 0.09 <= time.monotonic() - t0 < 2
    q.put(1)
    t0 = time.monotonic()
    with pytest.raises(QueueFull):
        q.put(2, timeout=0.1)
    assert 0.09 <= time.monotonic() - t0 < 2
    with pytest.raises(QueueFull):
        q.put(2, timeout=0)
    assert q.get(timeout=0) == 1


# ---- references ----------------------------------------------------------------

def test_no_leak_when_destroyed_non_empty():
    o = Obj()
    before = sys.getrefcount(o)
    q = Queue(16)
    for _ in range(10):
        q.put_nowait(o)
    assert sys.getrefcount(o) == before + 10
    q.get_nowait()
    assert sys.getrefcount(o) == before + 9
    del q
    gc.collect()
    assert sys.getrefcount(o) == before


def test_items_die_with_the_queue():
    q = Queue(8)
    refs = []
    for _ in range(5):
        o = Obj()
        refs.append(weakref.ref(o))
        q.put(o)
    del o
    assert all(r() is not None for r in refs)
    del q
    assert all(r() is None for r in refs)


def test_failed_puts_do_not_leak():
    q = Queue(1)
    o = Obj()
    q.put(o)
    before = sys.getrefcount(o)
    for _ in range(100):
        with pytest.raises(QueueFull):
            q.put_nowait(o)
        with pytest.raises(QueueFull):
            q.put(o, timeout=0)
    assert sys.getrefcount(o) == before


def test_queue_is_weakrefable():
    q = Queue(1)
    r = weakref.ref(q)
    del q
    assert r() is None


# ---- threads ---------------------------------------------------------------------

@pytest.mark.parametrize("cap,producers,consumers", [(1, 2, 2), (8, 4, 4), (1024, 3, 1)])
def test_threads_nothing_lost_or_duplicated(cap, producers, consumers):
    q = Queue(cap)
    per = 3000 * SCALE
    stop = object()
    seen = []
    lock = threading.Lock()

    def produce(p):
        for i in range(per):
            q.put((p, i))

    def consume():
        mine = []
        last = {}
        while True:
            item = q.get()
            if item is stop:
                break
            p, i = item
            assert i > last.get(p, -1)          # FIFO per producer
            last[p] = i
            mine.append(item)
        with lock:
            seen.extend(mine)

    cs = [threading.Thread(target=consume) for _ in range(consumers)]
    ps = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in cs + ps:
        t.start()
    for t in ps:
        t.join()
    for _ in cs:
        q.put(stop)
    for t in cs:
        t.join()
    assert len(seen) == producers * per
    assert set(seen) == {(p, i) for p in range(producers) for i in range(per)}
    assert q.empty()


def test_mixed_nowait_and_blocking_threads():
    q = Queue(4)
    n = 4000
    got = []

    def producer():
        i = 0
        while i < n:
            try:
                q.put_nowait(i)
                i += 1
            except QueueFull:
                q.put(i)
                i += 1

    t = threading.Thread(target=producer)
    t.start()
    while len(got) < n:
        try:
            got.append(q.get_nowait())
        except QueueEmpty:
            got.append(q.get(timeout=10))
    t.join()
    assert got == list(range(n))


def test_blocking_get_releases_the_gil():
    q = Queue(1)
    ticks = 0
    done = threading.Event()

    def spinner():
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    t = threading.Thread(target=spinner)
    t.start()
    try:
        with pytest.raises(QueueEmpty):
            q.get(timeout=0.3)
    finally:
        done.set()
        t.join()
    assert ticks > 1000


def test_blocked_getter_uses_no_cpu():
    q = Queue(1)
    def getter():
        with pytest.raises(QueueEmpty):
            q.get(timeout=0.8)

    t = threading.Thread(target=getter)
    t.start()
    time.sleep(0.1)                             # past the initial spin
    c0 = time.process_time()
    time.sleep(0.5)
    used = time.process_time() - c0
    t.join()
    assert used < 0.1, f"a blocked get() used {used:.3f}s of CPU in 0.5s"


def test_put_wakes_blocked_getter_quickly():
    q = Queue(1)
    result = []
    t = threading.Thread(target=lambda: result.append(q.get(timeout=10)))
    t.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    q.put("hi")
    t.join()
    assert result == ["hi"] and time.monotonic() - t0 < 1


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
def test_signal_handler_runs_while_blocked():
    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted

    old = signal.signal(signal.SIGALRM, handler)
    try:
        q = Queue(1)
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        t0 = time.monotonic()
        with pytest.raises(Interrupted):
            q.get()                             # no timeout: only the signal ends it
        assert time.monotonic() - t0 < 5
        q.put(1)
        o = Obj()
        before = sys.getrefcount(o)
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(Interrupted):
            q.put(o)                            # full: interrupted put drops its reference
        assert sys.getrefcount(o) == before
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---- coroutines ------------------------------------------------------------------

def test_aget_aput_fast_path(loop):
    q = Queue(2)

    async def main():
        await q.aput(1)
        await q.aput(2)
        return [await q.aget(), await q.aget()]

    assert loop.run_until_complete(main()) == [1, 2]


def test_aget_woken_by_thread(loop):
    q = Queue(4)

    async def main():
        t = threading.Timer(0.05, q.put, args=("from-thread",))
        t.start()
        try:
            return await asyncio.wait_for(q.aget(), 10)
        finally:
            t.join()

    assert loop.run_until_complete(main()) == "from-thread"


def test_aput_woken_by_thread(loop):
    q = Queue(1)
    q.put("first")
    got = []

    async def main():
        t = threading.Timer(0.05, lambda: got.append(q.get()))
        t.start()
        try:
            await asyncio.wait_for(q.aput("second"), 10)
        finally:
            t.join()
        return q.get_nowait()

    assert loop.run_until_complete(main()) == "second"
    assert got == ["first"]


def test_many_coroutines_same_loop(loop):
    q = Queue(3)
    n, producers, consumers = 300, 4, 5
    stop = object()

    async def produce(p):
        for i in range(n):
            await q.aput((p, i))

    async def consume():
        out = []
        while (item := await q.aget()) is not stop:
            out.append(item)
        return out

    async def main():
        cs = [asyncio.ensure_future(consume()) for _ in range(consumers)]
        await asyncio.gather(*(produce(p) for p in range(producers)))
        for _ in cs:
            await q.aput(stop)
        return [x for c in await asyncio.gather(*cs) for x in c]

    got = loop.run_until_complete(asyncio.wait_for(main(), 30))
    assert sorted(got) == sorted((p, i) for p in range(producers) for i in range(n))


def test_cancelled_getter_does_not_swallow_items(loop):
    q = Queue(4)

    async def main():
        g1 = asyncio.ensure_future(q.aget())
        g2 = asyncio.ensure_future(q.aget())
        await asyncio.sleep(0.01)
        g1.cancel()
        q.put_nowait("x")
        assert await asyncio.wait_for(g2, 5) == "x"
        with pytest.raises(asyncio.CancelledError):
            await g1
        # A timed-out aget leaves later items to the next getter.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(q.aget(), 0.02)
        q.put_nowait("y")
        return await asyncio.wait_for(q.aget(), 5)

    assert loop.run_until_complete(main()) == "y"


def test_cancelled_putter_releases_its_item(loop):
    q = Queue(1)
    q.put("full")
    o = Obj()
    before = sys.getrefcount(o)

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(q.aput(o), 0.02)

    loop.run_until_complete(main())
    gc.collect()
    assert sys.getrefcount(o) == before
    assert q.get_nowait() == "full" and q.empty()


def test_coroutines_and_threads_both_ways(loop):
    """A coroutine consumer fed by threads, and a coroutine producer draining into threads."""
    to_loop, from_loop = Queue(8), Queue(8)
    n = 2000

    def feeder():
        for i in range(n):
            to_loop.put(i)

    def sink(out):
        for _ in range(n):
            out.append(from_loop.get(timeout=20))

    sunk = []
    threads = [threading.Thread(target=feeder), threading.Thread(target=sink, args=(sunk,))]

    async def main():
        for t in threads:
            t.start()
        got = []
        for _ in range(n):
            x = await to_loop.aget()
            got.append(x)
            await from_loop.aput(x)
        return got

    got = loop.run_until_complete(asyncio.wait_for(main(), 30))
    for t in threads:
        t.join()
    assert got == list(range(n)) and sunk == list(range(n))


def test_two_loops_in_two_threads(loop_kind):
    """Coroutines on two different loops (one per thread) share one queue."""
    import helpers
    q = Queue(2)
    n = 1000
    results = {}

    def run(name, coro_fn):
        lp = helpers.make_loop(loop_kind)
        try:
            results[name] = lp.run_until_complete(asyncio.wait_for(coro_fn(), 30))
        finally:
            helpers.close_loop(lp)

    async def producer():
        for i in range(n):
            await q.aput(i)
        return n

    async def consumer():
        return [await q.aget() for _ in range(n)]

    ts = [threading.Thread(target=run, args=("p", producer)),
          threading.Thread(target=run, args=("c", consumer))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results == {"p": n, "c": list(range(n))}
