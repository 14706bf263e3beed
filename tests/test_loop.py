"""The event loop's own API: scheduling, timers, threads, I/O callbacks,
errors, debug mode, lifecycle, executors, signals, subprocesses, pipes,
datagrams, resolver and sock_* methods.

Every test takes the ``loop`` fixture and so runs on FlowCoro (epoll and
poll) and on stdlib asyncio, the reference.
"""
import asyncio
import concurrent.futures
import contextvars
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import weakref

import pytest

import flowcoro
from helpers import (close_loop, io_handles, is_flowcoro, reference_differs,
                     make_loop, run_briefly, timer_count)


# -- call_soon ----------------------------------------------------------------

def test_call_soon_fifo_order_and_args(loop):
    got = []
    for i in range(1000):
        loop.call_soon(got.append, (i, "x"))
    loop.call_soon(got.append, "last")
    run_briefly(loop)
    assert got == [(i, "x") for i in range(1000)] + ["last"]


def test_call_soon_several_args_and_no_args(loop):
    got = []
    loop.call_soon(lambda *a: got.append(a), 1, 2, 3)
    loop.call_soon(lambda: got.append("none"))
    run_briefly(loop)
    assert got == [(1, 2, 3), "none"]


def test_call_soon_rejects_unknown_keyword(loop):
    with pytest.raises(TypeError):
        loop.call_soon(print, foo=1)


def test_callbacks_scheduled_while_running_run_next_iteration(loop):
    got = []

    def first():
        got.append(1)
        loop.call_soon(got.append, 3)   # not this batch
        loop.stop()

    loop.call_soon(first)
    loop.call_soon(got.append, 2)
    loop.run_forever()
    assert got == [1, 2]
    run_briefly(loop)
    assert got == [1, 2, 3]


def test_call_soon_returns_cancellable_handle(loop):
    got = []
    h1 = loop.call_soon(got.append, 1)
    h2 = loop.call_soon(got.append, 2)
    h3 = loop.call_soon(got.append, 3)
    assert isinstance(h2, asyncio.Handle) or is_flowcoro(loop)
    assert not h2.cancelled()
    h2.cancel()
    h2.cancel()     # idempotent
    assert h2.cancelled() and not h1.cancelled() and not h3.cancelled()
    run_briefly(loop)
    assert got == [1, 3]
    assert "cancelled" in repr(h2)


def test_handle_api(loop):
    def cb(x):
        pass
    h = loop.call_soon(cb, 1)
    assert "cb" in repr(h)
    if hasattr(h, "get_context"):           # Python >= 3.12, and FlowCoro's
        assert isinstance(h.get_context(), contextvars.Context)
    h.cancel()
    assert h.cancelled()


def test_call_soon_copies_context_at_schedule_time(loop):
    var = contextvars.ContextVar("var", default="default")
    seen = []
    token = var.set("at-schedule")
    loop.call_soon(lambda: seen.append(var.get()))
    var.reset(token)
    run_briefly(loop)
    assert seen == ["at-schedule"]


def test_call_soon_explicit_context(loop):
    var = contextvars.ContextVar("var", default="default")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in-ctx")
    seen = []

    def cb():
        seen.append(var.get())
        var.set("changed-by-cb")

    loop.call_soon(cb, context=ctx)
    loop.call_soon(cb, context=ctx)
    loop.call_later(0, cb, context=ctx)
    run_briefly(loop, 2)
    assert seen == ["in-ctx", "changed-by-cb", "changed-by-cb"]
    assert ctx[var] == "changed-by-cb"
    assert var.get() == "default"       # our own context untouched


@pytest.mark.skipif(sys.version_info >= (3, 12), reason=(
    "3.12+'s call_exception_handler runs the handler in the handle's context, "
    "which is the one already entered: the handler fails the same way on every loop"))
def test_context_already_entered_goes_to_exception_handler(loop):
    ctx = contextvars.copy_context()
    contexts = []
    loop.set_exception_handler(lambda lp, c: contexts.append(c))
    ran = []

    def outer():
        loop.call_soon(ran.append, "never", context=ctx)
        loop.call_soon(ran.append, "after")
        run_briefly(loop)

    ctx.run(outer)          # the loop runs inside ctx, so ctx cannot be entered again
    assert ran == ["after"]
    assert len(contexts) == 1
    assert isinstance(contexts[0]["exception"], RuntimeError)
    assert "already entered" in str(contexts[0]["exception"])


def test_context_of_tasks_is_isolated(loop):
    var = contextvars.ContextVar("var", default=0)

    async def child(n):
        var.set(n)
        await asyncio.sleep(0)
        return var.get()

    async def main():
        return await asyncio.gather(*(child(i) for i in range(50)))

    assert loop.run_until_complete(main()) == list(range(50))


def test_call_soon_after_close_raises(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(print)
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_later(1, print)
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon_threadsafe(print)


def test_debug_call_soon_checks_callback(loop):
    loop.set_debug(True)
    with pytest.raises(TypeError):
        loop.call_soon(1)

    async def coro():
        pass
    with pytest.raises(TypeError, match="coroutine"):
        loop.call_soon(coro)
    with pytest.raises(TypeError):
        loop.call_later(0.1, "not callable")


# -- timers -------------------------------------------------------------------

def test_loop_time_is_monotonic_clock(loop):
    t0 = time.monotonic()
    lt = loop.time()
    t1 = time.monotonic()
    assert t0 - 1e-3 <= lt <= t1 + 1e-3


def test_call_later_order(loop):
    got = []
    for d in (0.05, 0.01, 0.04, 0.02, 0.03, 0.0, -1):
        loop.call_later(d, got.append, d)
    loop.call_later(0.08, loop.stop)
    loop.run_forever()
    assert got == [-1, 0.0, 0.01, 0.02, 0.03, 0.04, 0.05]


def test_call_later_none_rejected(loop):
    with pytest.raises(TypeError):
        loop.call_later(None, print)
    with pytest.raises(TypeError):
        loop.call_at(None, print)


def test_timers_never_fire_early(loop):
    fired = []

    def cb(handle_when):
        fired.append((handle_when, loop.time()))

    base = loop.time()
    for i in range(40):
        when = base + 0.002 + i * 0.0013
        loop.call_at(when, cb, when)
    loop.call_at(base + 0.2, loop.stop)
    loop.run_forever()
    assert len(fired) == 40
    res = loop._clock_resolution
    for when, at in fired:
        assert at >= when - res, f"fired {when - at:.6f} s early"
        assert at - when < 0.25, f"fired {at - when:.3f} s late"


def test_call_later_precision(loop):
    # A lone 50 ms timer with nothing else to do: no sooner, and not much later.
    t0 = time.monotonic()
    h = loop.call_later(0.05, loop.stop)
    loop.run_forever()
    dt = time.monotonic() - t0
    assert dt >= 0.05 - loop._clock_resolution
    assert dt < 0.05 + 0.1         # generous: the machine is shared
    assert h.when() == pytest.approx(t0 + 0.05, abs=0.01)


def test_infinite_and_huge_delays(loop):
    got = []
    loop.call_later(float("inf"), got.append, "inf")
    loop.call_later(1e300, got.append, "huge")
    loop.call_at(loop.time() + 1e12, got.append, "far")
    loop.call_later(0.02, got.append, "soon")
    loop.call_later(0.04, loop.stop)
    t0 = time.monotonic()
    loop.run_forever()
    assert got == ["soon"]
    assert time.monotonic() - t0 < 2
    assert timer_count(loop) == 3


def test_nan_delay_does_not_hang_the_loop(loop):
    reference_differs(loop, (3, 13), "call_later(nan) raises ValueError")
    got = []
    loop.call_later(float("nan"), got.append, "nan")
    loop.call_later(0.02, got.append, "later")
    loop.call_later(0.05, loop.stop)
    watchdog = threading.Timer(1.5, loop.call_soon_threadsafe, (loop.stop,))
    watchdog.start()
    t0 = time.monotonic()
    try:
        loop.run_forever()
    finally:
        watchdog.cancel()
    assert "later" in got and time.monotonic() - t0 < 1, got


def test_equal_times_keep_fifo_order(loop):
    if not is_flowcoro(loop):
        pytest.skip("asyncio's heapq timer queue does not keep FIFO order for "
                    "equal deadlines; FlowCoro's heap does (insertion sequence)")
    got = []
    when = loop.time() + 0.01
    for i in range(200):
        loop.call_at(when, got.append, i)
    # Interleave a second, earlier deadline scheduled later.
    for i in range(200, 210):
        loop.call_at(when - 0.005, got.append, i)
    loop.call_at(when + 0.02, loop.stop)
    loop.run_forever()
    assert got == list(range(200, 210)) + list(range(200))


def test_due_timers_run_after_ready_callbacks(loop):
    # asyncio appends due timers after the callbacks already in the ready queue.
    got = []
    loop.call_soon(got.append, "a")
    loop.call_later(0, got.append, "t")
    loop.call_soon(got.append, "b")
    run_briefly(loop)
    assert got == ["a", "b", "t"]


def test_timer_handle_api(loop):
    when = loop.time() + 10
    h = loop.call_at(when, print)
    assert isinstance(h, asyncio.TimerHandle) or is_flowcoro(loop)
    assert h.when() == when
    assert f"when={when}" in repr(h)
    h.cancel()
    assert h.cancelled()


def test_cancelled_timer_does_not_run(loop):
    got = []
    h = loop.call_later(0.01, got.append, "cancelled")
    loop.call_later(0.02, got.append, "kept")
    h.cancel()
    loop.call_later(0.04, loop.stop)
    loop.run_forever()
    assert got == ["kept"]


def test_cancelled_timers_are_purged(loop):
    handles = [loop.call_later(3600 + i * 1e-3, print) for i in range(10_000)]
    assert timer_count(loop) == 10_000
    for h in handles[:9_000]:
        h.cancel()
    run_briefly(loop)
    assert timer_count(loop) <= 1_000
    assert loop._timer_cancelled_count == 0
    for h in handles[9_000:]:
        h.cancel()
    run_briefly(loop)
    assert timer_count(loop) == 0
    assert loop._timer_cancelled_count == 0
    assert not any(h._scheduled for h in handles)


def test_cancelled_earliest_timer_is_dropped(loop):
    # Few timers (below the bulk-purge threshold): cancelled ones at the top go.
    early = loop.call_later(0.001, print)
    late = loop.call_later(3600, print)
    early.cancel()
    run_briefly(loop)
    assert timer_count(loop) == 1
    late.cancel()
    run_briefly(loop)
    assert timer_count(loop) == 0


def test_timer_heap_releases_callbacks(loop):
    class Target:
        def cb(self):
            pass

    t = Target()
    ref = weakref.ref(t)
    h = loop.call_later(3600, t.cb)
    del t
    gc.collect()
    assert ref() is not None        # the heap keeps it alive
    h.cancel()
    gc.collect()
    assert ref() is None            # cancel drops the callback at once


def test_asyncio_sleep_and_wait_for(loop):
    async def main():
        t0 = loop.time()
        await asyncio.sleep(0.02)
        assert loop.time() - t0 >= 0.02 - loop._clock_resolution
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 0.01)
        return "ok"

    assert loop.run_until_complete(main()) == "ok"


# -- call_soon_threadsafe -----------------------------------------------------

def test_call_soon_threadsafe_many_threads(loop):
    nthreads, per_thread = 8, 3000
    got = {i: [] for i in range(nthreads)}
    done = loop.create_future()
    total = [0]

    def cb(tid, n):
        got[tid].append(n)
        total[0] += 1
        if total[0] == nthreads * per_thread:
            done.set_result(None)

    start = threading.Barrier(nthreads)

    def worker(tid):
        start.wait()
        for n in range(per_thread):
            loop.call_soon_threadsafe(cb, tid, n)
            if n % 500 == 0:
                time.sleep(0.001)   # let the loop go back to sleep sometimes

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(nthreads)]
    for t in threads:
        t.start()
    loop.run_until_complete(asyncio.wait_for(done, 30))
    for t in threads:
        t.join()
    for tid in range(nthreads):
        assert got[tid] == list(range(per_thread)), f"thread {tid}: lost or reordered"


def test_call_soon_threadsafe_wakes_sleeping_loop(loop):
    # No timers and no I/O: the loop sleeps without a timeout; only the
    # cross-thread wake-up can end the wait.
    fut = loop.create_future()

    def later():
        time.sleep(0.1)
        loop.call_soon_threadsafe(fut.set_result, "woken")

    t = threading.Thread(target=later)
    t0 = time.monotonic()
    t.start()
    assert loop.run_until_complete(fut) == "woken"
    t.join()
    assert time.monotonic() - t0 < 5


def test_call_soon_threadsafe_repeated_wakeups(loop):
    # Many sleep/wake cycles: a wake-up must never be lost.
    async def main():
        for i in range(200):
            fut = loop.create_future()
            threading.Thread(target=loop.call_soon_threadsafe,
                             args=(fut.set_result, i)).start()
            assert await asyncio.wait_for(fut, 5) == i

    loop.run_until_complete(main())


def test_call_soon_threadsafe_from_loop_thread_and_context(loop):
    var = contextvars.ContextVar("var", default="d")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "c")
    got = []
    loop.call_soon(got.append, 1)
    h = loop.call_soon_threadsafe(got.append, 2)
    loop.call_soon_threadsafe(lambda: got.append(var.get()), context=ctx)
    loop.call_soon(got.append, 3)
    run_briefly(loop)
    assert got == [1, 2, "c", 3]
    assert not h.cancelled()


def test_run_coroutine_threadsafe(loop):
    async def add(a, b):
        await asyncio.sleep(0.001)
        return a + b

    results = []

    def worker():
        for i in range(50):
            results.append(asyncio.run_coroutine_threadsafe(add(i, 1), loop).result(10))

    async def main():
        t = threading.Thread(target=worker)
        t.start()
        while t.is_alive():
            await asyncio.sleep(0.005)
        t.join()

    loop.run_until_complete(main())
    assert results == [i + 1 for i in range(50)]


# -- add_reader / add_writer --------------------------------------------------

@pytest.fixture
def sockpair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_add_reader_called_with_args(loop, sockpair):
    a, b = sockpair
    got = []

    def on_read(tag):
        got.append((tag, a.recv(100)))
        loop.stop()

    assert loop.add_reader(a.fileno(), on_read, "tag") is None
    assert io_handles(loop, a.fileno())[0] is not None
    b.send(b"ping")
    loop.run_forever()
    assert got == [("tag", b"ping")]
    assert loop.remove_reader(a.fileno()) is True
    assert loop.remove_reader(a.fileno()) is False
    assert io_handles(loop, a.fileno()) == (None, None)


def test_remove_unknown_reader_writer(loop, sockpair):
    a, _ = sockpair
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is False


def test_add_reader_accepts_file_objects(loop, sockpair):
    a, b = sockpair
    got = []
    loop.add_reader(a, lambda: (got.append(a.recv(10)), loop.stop()))
    b.send(b"x")
    loop.run_forever()
    assert got == [b"x"]
    assert loop.remove_reader(a) is True


def test_add_reader_is_level_triggered(loop, sockpair):
    a, b = sockpair
    chunks = []

    def on_read():
        chunks.append(a.recv(1))
        if len(chunks) == 5:
            loop.stop()

    loop.add_reader(a.fileno(), on_read)
    b.send(b"abcde")
    loop.run_forever()
    assert b"".join(chunks) == b"abcde"
    loop.remove_reader(a.fileno())


def test_replacing_reader_cancels_old_handle(loop, sockpair):
    a, b = sockpair
    got = []
    loop.add_reader(a.fileno(), lambda: got.append("old"))
    old = io_handles(loop, a.fileno())[0]
    loop.add_reader(a.fileno(), lambda: (got.append(a.recv(10)), loop.stop()))
    new = io_handles(loop, a.fileno())[0]
    assert old.cancelled() and not new.cancelled() and old is not new
    b.send(b"y")
    loop.run_forever()
    assert got == [b"y"]
    loop.remove_reader(a.fileno())
    assert new.cancelled()


def test_replacing_writer_cancels_old_handle(loop, sockpair):
    a, _ = sockpair
    got = []
    loop.add_writer(a.fileno(), lambda: got.append("old"))
    old = io_handles(loop, a.fileno())[1]
    loop.add_writer(a.fileno(), lambda: (got.append("new"), loop.stop()))
    assert old.cancelled()
    loop.run_forever()
    assert got == ["new"]
    assert loop.remove_writer(a.fileno()) is True


def test_reader_and_writer_on_same_fd(loop, sockpair):
    a, b = sockpair
    events = []

    def on_write():
        events.append("w")
        loop.remove_writer(a.fileno())
        b.send(b"z")

    def on_read():
        events.append(a.recv(10))
        loop.stop()

    loop.add_reader(a.fileno(), on_read)
    loop.add_writer(a.fileno(), on_write)
    assert all(h is not None for h in io_handles(loop, a.fileno()))
    loop.run_forever()
    assert events == ["w", b"z"]
    r, w = io_handles(loop, a.fileno())
    assert r is not None and w is None
    assert loop.remove_writer(a.fileno()) is False
    assert loop.remove_reader(a.fileno()) is True


def test_writer_fills_socket(loop, sockpair):
    a, b = sockpair
    sent = [0]
    calls = [0]

    def on_write():
        # Fill the socket within one callback: a unix socket stops being
        # writable well before send() fails.
        while True:
            try:
                sent[0] += a.send(b"x" * 65536)
            except BlockingIOError:
                break
        calls[0] += 1
        loop.remove_writer(a.fileno())
        loop.stop()

    loop.add_writer(a.fileno(), on_write)
    loop.run_forever()
    assert sent[0] > 0 and calls == [1]
    assert io_handles(loop, a.fileno()) == (None, None)
    received = 0
    while True:
        try:
            received += len(b.recv(1 << 20))
        except BlockingIOError:
            break
    assert received == sent[0]


def test_add_reader_invalid_fd(loop):
    with pytest.raises(ValueError):
        loop.add_reader(-1, print)
    with pytest.raises((ValueError, TypeError)):
        loop.add_reader("nope", print)


def test_add_reader_on_transport_fd_rejected(loop):
    async def main():
        srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        fd = tr.get_extra_info("socket").fileno()
        with pytest.raises(RuntimeError, match="transport"):
            loop.add_reader(fd, print)
        with pytest.raises(RuntimeError, match="transport"):
            loop.remove_writer(fd)
        tr.close()
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())


def test_reader_survives_fd_reuse_flowcoro(flowcoro_loop):
    # An fd closed while still registered and then reused by a new socket
    # must be watchable again (epoll dropped it behind our back).
    loop = flowcoro_loop
    a, b = socket.socketpair()
    loop.add_reader(a.fileno(), print)
    fd = a.fileno()
    a.close()
    b.close()
    loop.remove_reader(fd)
    c, d = socket.socketpair()
    try:
        got = []
        loop.add_reader(c.fileno(), lambda: (got.append(c.recv(10)), loop.stop()))
        d.send(b"again")
        loop.call_later(5, loop.stop)
        loop.run_forever()
        assert got == [b"again"]
        loop.remove_reader(c.fileno())
    finally:
        c.close()
        d.close()


def test_many_fds(loop):
    # More ready fds than one reactor wait returns (256): all are served.
    pairs = [socket.socketpair() for _ in range(300)]
    try:
        got = set()

        def on_read(i, s):
            s.recv(10)
            got.add(i)
            loop.remove_reader(s.fileno())
            if len(got) == len(pairs):
                loop.stop()

        for i, (a, b) in enumerate(pairs):
            a.setblocking(False)
            loop.add_reader(a.fileno(), on_read, i, a)
            b.send(b"x")
        loop.call_later(10, loop.stop)
        loop.run_forever()
        assert got == set(range(len(pairs)))
    finally:
        for a, b in pairs:
            a.close()
            b.close()


# -- fairness under a callback storm ------------------------------------------

def _storm(loop, stop_when):
    """A callback that re-schedules itself every iteration until stop_when()."""
    spins = [0]

    def spin():
        spins[0] += 1
        if stop_when() or spins[0] > 2_000_000:
            loop.stop()
        else:
            loop.call_soon(spin)

    loop.call_soon(spin)
    return spins


def test_io_is_served_during_callback_storm(loop, sockpair):
    a, b = sockpair
    got = []
    loop.add_reader(a.fileno(), lambda: got.append(a.recv(100)))
    threading.Timer(0.05, b.send, (b"during-storm",)).start()
    spins = _storm(loop, lambda: bool(got))
    t0 = time.monotonic()
    loop.run_forever()
    assert got == [b"during-storm"], f"reader starved for {spins[0]} iterations"
    assert time.monotonic() - t0 < 5
    loop.remove_reader(a.fileno())


def test_timers_fire_during_callback_storm(loop):
    fired = []
    loop.call_later(0.02, fired.append, loop.time() + 0.02)
    spins = _storm(loop, lambda: bool(fired))
    loop.run_forever()
    assert fired, f"timer starved for {spins[0]} iterations"


def test_threadsafe_and_signals_served_during_callback_storm(loop):
    got = []
    threading.Timer(0.02, loop.call_soon_threadsafe, (got.append, "ts")).start()
    loop.add_signal_handler(signal.SIGUSR1, got.append, "sig")
    try:
        threading.Timer(0.04, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        spins = _storm(loop, lambda: len(got) == 2)
        loop.run_forever()
        assert sorted(got) == ["sig", "ts"], f"starved for {spins[0]} iterations: {got}"
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)


def test_stop_during_callback_storm(loop):
    n = [0]

    def spin():
        n[0] += 1
        loop.call_soon(spin)

    loop.call_soon(spin)
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert n[0] > 10
    before = n[0]
    run_briefly(loop)           # the storm continues where it stopped
    assert n[0] == before + 1


# -- exceptions and the exception handler -------------------------------------

def test_exception_handler_gets_callback_exceptions(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append((lp, ctx)))
    assert loop.get_exception_handler() is not None

    def boom():
        raise ZeroDivisionError("boom")

    h = loop.call_soon(boom)
    after = []
    loop.call_soon(after.append, "still running")
    run_briefly(loop)
    assert after == ["still running"]
    assert len(contexts) == 1
    lp, ctx = contexts[0]
    assert lp is loop
    assert isinstance(ctx["exception"], ZeroDivisionError)
    assert ctx["handle"] is h
    assert "Exception in callback" in ctx["message"]


def test_timer_exceptions_reach_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    loop.call_later(0.001, lambda: 1 / 0)
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert [type(c["exception"]) for c in contexts] == [ZeroDivisionError]


def test_default_exception_handler_logs(loop, caplog):
    def boom():
        raise ValueError("logged-boom")

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(boom)
        run_briefly(loop)
    assert "Exception in callback" in caplog.text
    assert "logged-boom" in caplog.text


def test_failing_exception_handler_is_logged(loop, caplog):
    def bad_handler(lp, ctx):
        raise RuntimeError("handler failed")

    loop.set_exception_handler(bad_handler)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(lambda: 1 / 0)
        run_briefly(loop)
    assert "Unhandled error in exception handler" in caplog.text


def test_set_exception_handler_validates(loop):
    with pytest.raises(TypeError):
        loop.set_exception_handler("not callable")
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_escape_run_forever(loop, exc):
    def boom():
        raise exc()

    loop.call_soon(boom)
    with pytest.raises(exc):
        loop.run_forever()
    assert not loop.is_running()
    # The loop is usable afterwards.
    assert loop.run_until_complete(asyncio.sleep(0, "again")) == "again"


def test_task_exception_never_retrieved_is_reported(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def fail():
        raise KeyError("lost")

    async def main():
        loop.create_task(fail())
        await asyncio.sleep(0.01)

    loop.run_until_complete(main())
    gc.collect()
    assert any(isinstance(c.get("exception"), KeyError) for c in contexts)


# -- debug mode ---------------------------------------------------------------

def test_debug_mode_flags(loop):
    assert loop.get_debug() is False or os.environ.get("PYTHONASYNCIODEBUG")
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_debug_slow_callback_warning(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.02

    def slow_callback_marker():
        time.sleep(0.05)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(slow_callback_marker)
        loop.call_soon(lambda: None)        # fast: no warning
        run_briefly(loop)
    warnings = [r.getMessage() for r in caplog.records if "Executing" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "slow_callback_marker" in warnings[0]
    assert "took 0.0" in warnings[0]


def test_debug_slow_task_step_names_task(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.02

    async def slow_coro_marker():
        time.sleep(0.05)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(slow_coro_marker())
    msgs = [r.getMessage() for r in caplog.records if "Executing" in r.getMessage()]
    assert msgs and "slow_coro_marker" in msgs[0]


def test_debug_source_traceback(loop):
    loop.set_debug(True)
    line = sys._getframe().f_lineno + 1
    h = loop.call_soon(print)
    assert h._source_traceback, "no source traceback in debug mode"
    frame = h._source_traceback[-1]
    assert frame.filename == __file__ and frame.lineno == line
    assert f"created at {__file__}:{line}" in repr(h)
    t = loop.call_later(10, print)
    assert t._source_traceback[-1].filename == __file__
    h.cancel()
    t.cancel()
    loop.set_debug(False)
    assert not loop.call_soon(print)._source_traceback


def test_debug_exception_context_has_source_traceback(loop):
    loop.set_debug(True)
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    loop.call_soon(lambda: 1 / 0)
    run_briefly(loop)
    assert contexts and contexts[0]["source_traceback"][-1].filename == __file__


def test_debug_rejects_call_soon_from_other_thread(loop):
    loop.set_debug(True)
    errors = []

    def other_thread():
        try:
            loop.call_soon(print)
        except RuntimeError as exc:
            errors.append(exc)

    async def main():
        t = threading.Thread(target=other_thread)
        t.start()
        while t.is_alive():
            await asyncio.sleep(0.005)

    loop.run_until_complete(main())
    assert errors and "thread" in str(errors[0])


# -- run_until_complete / stop / close ----------------------------------------

def test_run_until_complete_result_and_exception(loop):
    async def ok():
        await asyncio.sleep(0)
        return 42

    async def fail():
        await asyncio.sleep(0)
        raise LookupError("x")

    assert loop.run_until_complete(ok()) == 42
    with pytest.raises(LookupError):
        loop.run_until_complete(fail())
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "f")
    assert loop.run_until_complete(fut) == "f"
    assert not loop.is_running()


def test_run_until_complete_foreign_future(loop):
    other = asyncio.new_event_loop()
    try:
        fut = other.create_future()
        with pytest.raises(ValueError):
            loop.run_until_complete(fut)
    finally:
        other.close()


def test_stop_before_future_done(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match="stopped before Future completed"):
        loop.run_until_complete(fut)


def test_stop_before_run_forever_runs_one_iteration(loop):
    got = []
    loop.call_soon(got.append, 1)
    loop.stop()
    loop.run_forever()
    assert got == [1]
    # stop() was consumed: the next run_forever needs its own stop.
    loop.call_later(0.01, loop.stop)
    loop.call_soon(got.append, 2)
    loop.run_forever()
    assert got == [1, 2]


def test_is_running(loop):
    seen = []
    loop.call_soon(lambda: seen.append(loop.is_running()))
    assert not loop.is_running()
    run_briefly(loop)
    assert seen == [True] and not loop.is_running()


def test_close_while_running_raises(loop):
    errors = []

    def try_close():
        try:
            loop.close()
        except RuntimeError as exc:
            errors.append(exc)
        loop.stop()

    loop.call_soon(try_close)
    loop.run_forever()
    assert errors and "running" in str(errors[0])
    assert not loop.is_closed()


def test_run_forever_while_running_raises(loop):
    errors = []

    def nested():
        try:
            loop.run_forever()
        except RuntimeError as exc:
            errors.append(exc)
        loop.stop()

    loop.call_soon(nested)
    loop.run_forever()
    assert errors and "already running" in str(errors[0])


def test_two_loops_in_one_thread_rejected(loop_kind, loop):
    other = make_loop(loop_kind)
    errors = []

    def inner():
        coro = asyncio.sleep(0)
        try:
            other.run_until_complete(coro)
        except RuntimeError as exc:
            errors.append(exc)
        finally:
            coro.close()
        loop.stop()

    try:
        loop.call_soon(inner)
        loop.run_forever()
    finally:
        close_loop(other)
    assert errors and "another loop is running" in str(errors[0])


def test_get_running_loop_inside(loop):
    async def main():
        return asyncio.get_running_loop(), asyncio.get_event_loop()

    running, current = loop.run_until_complete(main())
    assert running is loop and current is loop
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def test_close_with_pending_callbacks_and_timers(loop):
    class Target:
        def cb(self):
            ran.append(1)

    ran = []
    t = Target()
    ref = weakref.ref(t)
    loop.call_soon(t.cb)
    loop.call_later(0, t.cb)
    loop.call_later(3600, t.cb)
    loop.call_soon_threadsafe(t.cb)
    del t
    loop.close()
    assert loop.is_closed()
    loop.close()        # idempotent
    gc.collect()
    assert ran == []
    assert ref() is None, "closing the loop leaked pending handles"


_NO_GC_HANDLE_LEAK = (
    "BUG: Handle/TimerHandle are @cython.no_gc (flowcoro/_core/loop.pyx), so a cycle "
    "through a handle that still holds its callback is never collected; loop.close() "
    "(_free_core/_close_core) drops pending handles without clearing their callbacks, "
    "and debug mode never clears them")


class _SelfScheduling:
    """The usual pattern: an object keeps the handle of its own callback."""

    def __init__(self, loop, delay=None):
        if delay is None:
            self.handle = loop.call_soon(self.fire)
        else:
            self.handle = loop.call_later(delay, self.fire)

    def fire(self):
        pass


def test_close_releases_objects_owning_pending_handles(loop):
    refs = [weakref.ref(_SelfScheduling(loop)), weakref.ref(_SelfScheduling(loop, 3600))]
    loop.close()
    gc.collect()
    assert [r() for r in refs] == [None, None], "pending handles leaked after close()"


def test_debug_mode_releases_spent_handles(loop):
    loop.set_debug(True)
    refs = [weakref.ref(_SelfScheduling(loop)), weakref.ref(_SelfScheduling(loop, 0))]
    run_briefly(loop, 2)
    gc.collect()
    assert [r() for r in refs] == [None, None], "handles that ran leaked in debug mode"


def test_spent_and_cancelled_handles_release_objects(loop):
    refs = [weakref.ref(_SelfScheduling(loop)), weakref.ref(_SelfScheduling(loop, 0))]
    cancelled = _SelfScheduling(loop, 3600)
    cancelled.handle.cancel()
    refs.append(weakref.ref(cancelled))
    del cancelled
    run_briefly(loop, 2)
    gc.collect()
    assert [r() for r in refs] == [None, None, None]


def test_close_with_pending_sock_op_releases_socket(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    ref_sock = weakref.ref(a)
    loop.set_exception_handler(lambda lp, ctx: None)   # "Task was destroyed" noise

    async def main():
        task = loop.create_task(loop.sock_recv(a, 10))
        await asyncio.sleep(0.01)
        return weakref.ref(task)

    ref_task = loop.run_until_complete(main())
    del a
    loop.close()
    gc.collect()
    try:
        assert ref_task() is None and ref_sock() is None, \
            "a pending sock_recv kept its task and socket alive after close()"
    finally:
        b.close()


def test_run_after_close_raises(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.run_forever()
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="closed"):
        loop.run_until_complete(coro)
    coro.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.add_reader(0, print)
    assert loop.remove_reader(0) is False


def test_close_releases_loop_fds(loop_kind):
    # The reactor, wake-up eventfd and self-pipe all go with close().
    before = _fds()
    for _ in range(20):
        lp = make_loop(loop_kind)
        lp.run_until_complete(asyncio.sleep(0))
        lp.close()
    assert _fds() == before


def _fds():
    gc.collect()
    return set(os.listdir("/proc/self/fd"))


def test_shutdown_asyncgens(loop):
    finalized = []

    async def agen():
        try:
            for i in range(10):
                yield i
        finally:
            finalized.append(True)

    async def main():
        g = agen()
        assert await g.__anext__() == 0
        return g

    g = loop.run_until_complete(main())
    assert finalized == []
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert finalized == [True]
    del g


def test_task_factory_and_create_future(loop):
    created = []

    def factory(lp, coro, **kw):
        t = asyncio.Task(coro, loop=lp, **kw)
        created.append(t)
        return t

    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory

    async def main():
        return 5

    task = loop.create_task(main(), name="named")
    assert created == [task] and task.get_name() == "named"
    assert loop.run_until_complete(task) == 5
    fut = loop.create_future()
    assert isinstance(fut, asyncio.Future) and fut.get_loop() is loop
    fut.cancel()


# -- executors ----------------------------------------------------------------

def test_run_in_executor_default(loop):
    async def main():
        tid = await loop.run_in_executor(None, threading.get_ident)
        res = await loop.run_in_executor(None, pow, 2, 10)
        with pytest.raises(ZeroDivisionError):
            await loop.run_in_executor(None, lambda: 1 / 0)
        return tid, res

    tid, res = loop.run_until_complete(main())
    assert tid != threading.get_ident()
    assert res == 1024


def test_run_in_executor_many_concurrent(loop):
    async def main():
        return await asyncio.gather(*(loop.run_in_executor(None, lambda i=i: i * i)
                                      for i in range(200)))

    assert loop.run_until_complete(main()) == [i * i for i in range(200)]


def test_set_default_executor(loop):
    ex = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="fc-test-pool")
    loop.set_default_executor(ex)

    async def main():
        return await loop.run_in_executor(None, lambda: threading.current_thread().name)

    try:
        assert loop.run_until_complete(main()).startswith("fc-test-pool")
        with pytest.raises(TypeError):
            loop.set_default_executor(object())
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
    assert ex._shutdown


def test_explicit_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="explicit") as ex:
        name = loop.run_until_complete(
            loop.run_in_executor(ex, lambda: threading.current_thread().name))
    assert name.startswith("explicit")


def test_shutdown_default_executor(loop):
    async def main():
        await loop.run_in_executor(None, time.sleep, 0.01)
        await loop.shutdown_default_executor()
        with pytest.raises(RuntimeError, match="shutdown"):
            loop.run_in_executor(None, print)

    loop.run_until_complete(main())


# -- signals ------------------------------------------------------------------

def test_add_signal_handler(loop):
    got = []

    def handler(*args):
        got.append(args)
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, handler, "a", 1)
    try:
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        loop.call_later(5, loop.stop)
        loop.run_forever()
        assert got == [("a", 1)]
    finally:
        assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_signal_wakes_sleeping_loop(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR2, lambda: (got.append("sig"), loop.stop()))
    main_tid = threading.get_ident()

    def sender():
        time.sleep(0.1)
        signal.pthread_kill(main_tid, signal.SIGUSR2)

    t = threading.Thread(target=sender)
    try:
        t0 = time.monotonic()
        t.start()
        loop.run_forever()       # no timers: only the signal can wake it
        assert got == ["sig"]
        assert time.monotonic() - t0 < 5
    finally:
        t.join()
        loop.remove_signal_handler(signal.SIGUSR2)


def test_add_signal_handler_errors(loop):
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(signal.SIGKILL, print)
    with pytest.raises((ValueError, TypeError)):
        loop.add_signal_handler(10_000, print)

    async def coro():
        pass
    with pytest.raises(TypeError):
        loop.add_signal_handler(signal.SIGUSR1, coro)


@pytest.mark.timeout(20)
def test_sigint_interrupts_blocking_wait(loop):
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    main_tid = threading.get_ident()

    def sender():
        time.sleep(0.2)
        signal.pthread_kill(main_tid, signal.SIGINT)

    fut = loop.create_future()      # never completes
    t = threading.Thread(target=sender)
    t0 = time.monotonic()
    t.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(fut)
    finally:
        t.join()
    assert time.monotonic() - t0 < 10
    assert not loop.is_running()
    fut.cancel()


@pytest.mark.timeout(20)
def test_sigint_interrupts_wait_with_timer_pending(loop):
    main_tid = threading.get_ident()
    threading.Timer(0.2, signal.pthread_kill, (main_tid, signal.SIGINT)).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(asyncio.sleep(30))
    assert time.monotonic() - t0 < 10


# -- subprocesses and pipes ---------------------------------------------------

def test_subprocess_exec(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c",
            "import sys; data = sys.stdin.read(); print(data.upper()); "
            "print('err', file=sys.stderr); sys.exit(7)",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await proc.communicate(b"hello flowcoro")
        return proc.returncode, out, err

    rc, out, err = loop.run_until_complete(main())
    assert rc == 7
    assert out.strip() == b"HELLO FLOWCORO"
    assert err.strip() == b"err"


def test_subprocess_shell(loop):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            "echo shell-$((40+2)); exit 3", stdout=subprocess.PIPE)
        out = await proc.stdout.read()
        return await proc.wait(), out

    rc, out = loop.run_until_complete(main())
    assert rc == 3
    assert out == b"shell-42\n"


def test_subprocess_large_output_and_kill(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; sys.stdout.write('x' * 3_000_000)",
            stdout=subprocess.PIPE)
        out, _ = await proc.communicate()
        assert len(out) == 3_000_000
        sleeper = await asyncio.create_subprocess_exec(sys.executable, "-c",
                                                       "import time; time.sleep(60)")
        sleeper.kill()
        return await asyncio.wait_for(sleeper.wait(), 10)

    assert loop.run_until_complete(main()) == -signal.SIGKILL


def test_subprocess_protocol(loop):
    class Proto(asyncio.SubprocessProtocol):
        def __init__(self):
            self.out = bytearray()
            self.exited = loop.create_future()

        def pipe_data_received(self, fd, data):
            assert fd == 1
            self.out += data

        def process_exited(self):
            self.exited.set_result(True)

    async def main():
        tr, proto = await loop.subprocess_exec(Proto, sys.executable, "-c", "print(6 * 7)",
                                               stdin=None, stderr=None)
        await proto.exited
        rc = tr.get_returncode()
        # stdout may still be draining after the exit notification
        for _ in range(100):
            if proto.out:
                break
            await asyncio.sleep(0.01)
        tr.close()
        return rc, bytes(proto.out)

    assert loop.run_until_complete(main()) == (0, b"42\n")


def test_connect_read_and_write_pipe(loop):
    async def main():
        rfd, wfd = os.pipe()
        rfile = os.fdopen(rfd, "rb", 0)
        wfile = os.fdopen(wfd, "wb", 0)
        reader = asyncio.StreamReader()
        rtr, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), rfile)

        lost = loop.create_future()

        class WProto(asyncio.Protocol):
            def connection_lost(self, exc):
                lost.set_result(exc)

        wtr, _ = await loop.connect_write_pipe(WProto, wfile)
        assert "polling" in repr(rtr) and "fd=" in repr(wtr)
        payload = os.urandom(1_000_000)
        wtr.write(payload[:10])
        wtr.writelines([payload[10:500_000], payload[500_000:]])
        wtr.close()
        data = await reader.read()
        assert await lost is None
        rtr.close()
        return payload, data

    payload, data = loop.run_until_complete(main())
    assert len(data) == len(payload)
    assert data == payload


# -- datagrams ----------------------------------------------------------------

def test_create_datagram_endpoint_echo(loop):
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, tr):
            self.tr = tr

        def datagram_received(self, data, addr):
            self.tr.sendto(data[::-1], addr)

    class Client(asyncio.DatagramProtocol):
        def __init__(self):
            self.got = asyncio.Queue()

        def datagram_received(self, data, addr):
            self.got.put_nowait((data, addr))

        def error_received(self, exc):
            self.got.put_nowait(exc)

    async def main():
        srv_tr, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        addr = srv_tr.get_extra_info("sockname")
        cli_tr, cli = await loop.create_datagram_endpoint(Client, remote_addr=addr)
        results = []
        for i in range(20):
            cli_tr.sendto(f"msg-{i}".encode())
            data, frm = await asyncio.wait_for(cli.got.get(), 5)
            results.append(data)
            assert frm == addr
        assert "read=polling" in repr(srv_tr)
        cli_tr.close()
        srv_tr.close()
        return results

    assert loop.run_until_complete(main()) == [f"msg-{i}".encode()[::-1] for i in range(20)]


def test_sock_sendto_recvfrom(loop):
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.setblocking(False)
    b.setblocking(False)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))

    async def main():
        recv = loop.create_task(loop.sock_recvfrom(b, 100))
        await asyncio.sleep(0.01)
        await loop.sock_sendto(a, b"dgram", b.getsockname())
        return await asyncio.wait_for(recv, 5)

    try:
        data, addr = loop.run_until_complete(main())
        assert data == b"dgram"
        assert addr == a.getsockname()
    finally:
        a.close()
        b.close()


# -- resolver -----------------------------------------------------------------

def test_getaddrinfo_and_getnameinfo(loop):
    async def main():
        infos = await loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
        local = await loop.getaddrinfo("localhost", "http", family=socket.AF_INET,
                                       type=socket.SOCK_STREAM)
        name = await loop.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICHOST
                                      | socket.NI_NUMERICSERV)
        return infos, local, name

    infos, local, name = loop.run_until_complete(main())
    assert infos[0][0] == socket.AF_INET and infos[0][4] == ("127.0.0.1", 80)
    assert local and all(i[4][1] == 80 for i in local)
    assert name == ("127.0.0.1", "80")


def test_getaddrinfo_failure(loop):
    with pytest.raises(socket.gaierror):
        loop.run_until_complete(loop.getaddrinfo("no-such-host.invalid", 80))


# -- sock_* methods -----------------------------------------------------------

@pytest.fixture
def listener():
    srv = socket.socket()
    srv.setblocking(False)
    srv.bind(("127.0.0.1", 0))
    srv.listen(100)
    yield srv
    srv.close()


def test_sock_connect_accept_send_recv(loop, listener):
    async def main():
        cli = socket.socket()
        cli.setblocking(False)
        accept = loop.create_task(loop.sock_accept(listener))
        await loop.sock_connect(cli, listener.getsockname())
        conn, addr = await asyncio.wait_for(accept, 5)
        assert addr == cli.getsockname()
        assert conn.gettimeout() == 0 or not conn.getblocking()
        payload = os.urandom(5_000_000)
        send = loop.create_task(loop.sock_sendall(cli, payload))
        buf = bytearray()
        while len(buf) < len(payload):
            chunk = await loop.sock_recv(conn, 65536)
            assert chunk
            buf += chunk
        assert await send is None
        # sock_recv_into
        mem = bytearray(16)
        await loop.sock_sendall(conn, b"into-test")
        n = await loop.sock_recv_into(cli, mem)
        cli.close()
        assert await loop.sock_recv(conn, 10) == b""       # EOF
        conn.close()
        return payload, bytes(buf), bytes(mem[:n])

    payload, got, into = loop.run_until_complete(main())
    assert got == payload
    assert into == b"into-test"


def test_sock_connect_refused(loop):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()       # nothing listens there now
    cli = socket.socket()
    cli.setblocking(False)
    try:
        with pytest.raises(ConnectionRefusedError):
            loop.run_until_complete(loop.sock_connect(cli, ("127.0.0.1", port)))
        assert io_handles(loop, cli.fileno()) == (None, None)
    finally:
        cli.close()


def test_sock_recv_cancel_removes_reader(loop, sockpair):
    a, b = sockpair

    async def main():
        t = loop.create_task(loop.sock_recv(a, 10))
        await asyncio.sleep(0.01)
        assert io_handles(loop, a.fileno())[0] is not None
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        await asyncio.sleep(0)
        assert io_handles(loop, a.fileno()) == (None, None)
        b.send(b"later")
        return await asyncio.wait_for(loop.sock_recv(a, 10), 5)

    assert loop.run_until_complete(main()) == b"later"


def test_sock_methods_reject_blocking_sockets_in_debug(loop):
    loop.set_debug(True)
    s = socket.socket()
    try:
        with pytest.raises(ValueError, match="non-blocking"):
            loop.run_until_complete(loop.sock_recv(s, 1))
    finally:
        s.close()


def test_sock_sendfile(loop, listener, tmp_path):
    data = os.urandom(3_000_000)
    path = tmp_path / "blob"
    path.write_bytes(data)

    async def main():
        cli = socket.socket()
        cli.setblocking(False)
        accept = loop.create_task(loop.sock_accept(listener))
        await loop.sock_connect(cli, listener.getsockname())
        conn, _ = await accept

        async def drain(n):
            buf = bytearray()
            while len(buf) < n:
                chunk = await loop.sock_recv(conn, 1 << 16)
                if not chunk:
                    break
                buf += chunk
            return bytes(buf)

        with open(path, "rb") as f:
            recv = loop.create_task(drain(len(data)))
            sent = await loop.sock_sendfile(cli, f)
            whole = await recv
            assert f.tell() == len(data)
        with open(path, "rb") as f:
            recv = loop.create_task(drain(1000))
            sent2 = await loop.sock_sendfile(cli, f, offset=100, count=1000)
            part = await recv
            assert f.tell() == 1100
        cli.close()
        conn.close()
        return sent, whole, sent2, part

    sent, whole, sent2, part = loop.run_until_complete(main())
    assert sent == len(data) and whole == data
    assert sent2 == 1000 and part == data[100:1100]


# -- backend selection, install(), run() --------------------------------------

# The half-built loop's __del__ noise is test_failed_loop_creation_is_quiet's business.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_unknown_backend_raises_valueerror(monkeypatch):
    monkeypatch.setenv("FLOWCORO_BACKEND", "no-such-backend")
    with pytest.raises(ValueError, match="no-such-backend") as ei:
        flowcoro.new_event_loop()
    assert "epoll" in str(ei.value) and "poll" in str(ei.value)
    del ei
    gc.collect()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_unknown_backend_raises_backend_error(monkeypatch):
    monkeypatch.setenv("FLOWCORO_BACKEND", "no-such-backend")
    try:
        with pytest.raises(flowcoro.errors.BackendError):
            flowcoro.new_event_loop()
    finally:
        gc.collect()


def test_failed_loop_creation_is_quiet(monkeypatch):
    monkeypatch.setenv("FLOWCORO_BACKEND", "no-such-backend")
    unraisable = []
    old = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        with pytest.raises(flowcoro.errors.BackendError):
            flowcoro.new_event_loop()
        gc.collect()
    finally:
        sys.unraisablehook = old
    assert unraisable == [], [u.exc_value for u in unraisable]


def test_default_backend_is_epoll(monkeypatch):
    monkeypatch.delenv("FLOWCORO_BACKEND", raising=False)
    loop = flowcoro.new_event_loop()
    try:
        assert loop.backend == "epoll"
        assert "backend=epoll" in repr(loop)
    finally:
        loop.close()
    assert "closed=True" in repr(loop)


def test_loop_is_abstract_event_loop(flowcoro_loop):
    assert isinstance(flowcoro_loop, asyncio.AbstractEventLoop)
    assert isinstance(flowcoro_loop, flowcoro.Loop)


def test_install_makes_asyncio_run_use_flowcoro():
    old_policy = asyncio.get_event_loop_policy()

    async def main():
        return type(asyncio.get_running_loop())

    try:
        flowcoro.install()
        assert isinstance(asyncio.get_event_loop_policy(), flowcoro.EventLoopPolicy)
        assert asyncio.run(main()) is flowcoro.Loop
        lp = asyncio.new_event_loop()
        assert isinstance(lp, flowcoro.Loop)
        lp.close()
    finally:
        asyncio.set_event_loop_policy(old_policy)
    assert asyncio.run(main()) is not flowcoro.Loop


def test_flowcoro_run():
    leftovers = []

    async def background():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            leftovers.append("cancelled")
            raise

    async def main(x):
        loop = asyncio.get_running_loop()
        loop.create_task(background())
        await asyncio.sleep(0)
        return x * 2, loop, loop.get_debug()

    res, loop, debug = flowcoro.run(main(21))
    assert res == 42 and isinstance(loop, flowcoro.Loop) and debug is False
    assert loop.is_closed()
    assert leftovers == ["cancelled"]
    assert flowcoro.run(main(1), debug=True)[2] is True

    async def fail():
        raise ArithmeticError("from run")

    with pytest.raises(ArithmeticError, match="from run"):
        flowcoro.run(fail())


def test_flowcoro_run_poll_backend(monkeypatch):
    monkeypatch.setenv("FLOWCORO_BACKEND", "poll")

    async def main():
        await asyncio.sleep(0.001)
        return asyncio.get_running_loop().backend

    assert flowcoro.run(main()) == "poll"


def test_available_backends():
    from flowcoro._core.loop import available_backends
    assert available_backends() == ["epoll", "poll"]


def test_sigint_in_subprocess_with_flowcoro_run(tmp_path):
    # End-to-end: Ctrl-C on a program blocked in flowcoro.run() exits it with
    # KeyboardInterrupt, as asyncio.run() does (Runner installs its handler).
    script = tmp_path / "sig.py"
    script.write_text(textwrap.dedent("""
        import asyncio, sys, flowcoro
        async def main():
            print("ready", flush=True)
            await asyncio.Event().wait()
        try:
            flowcoro.run(main())
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(0)
        sys.exit(1)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and out == b"interrupted\n"


def test_default_executor_is_work_stealing():
    from flowcoro.scheduler import WorkStealingExecutor
    loop = flowcoro.new_event_loop()
    try:
        assert loop.run_until_complete(loop.run_in_executor(None, sum, [1, 2, 3])) == 6
        assert isinstance(loop._default_executor, WorkStealingExecutor)
        loop.run_until_complete(loop.shutdown_default_executor())
        with pytest.raises(RuntimeError):
            loop.run_in_executor(None, sum, [1])
    finally:
        loop.close()
