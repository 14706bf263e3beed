"""A work-stealing thread-pool executor.

:class:`WorkStealingExecutor` is a :class:`concurrent.futures.Executor`
(``submit``, ``map``, ``shutdown(wait, cancel_futures)``) built for many small
tasks and for GIL-releasing work (hashing, compression, numpy, I/O) spread
over cores — and, on free-threaded Python, for plain Python code too.

Theory of operation
-------------------
* Each worker thread owns a Chase-Lev deque
  (:class:`flowcoro._core.lockfree.WorkDeque`; Chase & Lev 2005, orderings of
  Lê et al. 2013).  A worker pushes and pops its own deque at the bottom
  (newest first: the data a task just produced is still in cache) without
  any atomic read-modify-write; idle workers *steal* from the top (oldest
  first) of a random victim's deque.
* Work from outside the pool (``submit`` from the loop's thread, or from any
  non-worker thread) goes through one global *injection queue*, a bounded
  lock-free MPMC queue (:class:`flowcoro.lockfree.Queue`) with an unbounded
  overflow deque behind it for bursts larger than its capacity.
* ``schedule_local`` called from inside a task pushes onto the calling
  worker's own deque (fork/join: children stay local unless someone idle
  steals them).  From any other thread it is ``submit``.
* A worker looks for work in the order: own deque, injection queue, overflow,
  steal (every other worker, starting at a random one).  Finding nothing it
  *parks* on an event count (:class:`flowcoro._core.lockfree.EventCount`):
  prepare, look once more, sleep on a futex with the GIL released.  On
  machines with 8+ CPUs one worker at a time spins ~50 us first
  (``IDLE_SPIN``); after that an idle executor uses no CPU at all.  Every submit/schedule_local notifies the event count, which
  costs a fence and a load when nobody sleeps.
* Futures are :class:`concurrent.futures.Future` instances (so
  ``asyncio.wrap_future``, ``concurrent.futures.wait`` and ``as_completed``
  work), of a subclass that builds its Condition only when someone actually
  blocks on it: most futures are completed before anyone waits, and the
  Condition is most of the cost of a stdlib Future.
* Work items are the futures themselves (the call rides on the future until
  it runs), so exactly one thread runs a call: the one that wins the future's
  PENDING -> RUNNING claim (``_Future._claim``).
* A worker that blocks on ``result()`` of a future of its own executor (no
  timeout) first *helps*: it runs that call itself if nobody has claimed it,
  else other queued work (its own deque first) until the future is done or no
  work is left, so fork/join inside the pool cannot deadlock for want of
  threads.  ``caller_runs=True`` extends the first half to any thread.

What is stolen is executor work — callables — never an asyncio Task: tasks
stay on their loop's thread (see the project's DESIGN.md).

Threads are started lazily, up to ``max_workers``, when a submit finds no idle
worker (as ThreadPoolExecutor does).  The default ``max_workers`` is
ThreadPoolExecutor's: ``min(32, cpus + 4)`` — this executor also serves as the
loop's default executor, where blocking I/O (getaddrinfo, files) wants more
threads than cores.  For CPU-bound GIL-releasing work pass ``os.cpu_count()``.
"""
from __future__ import annotations

import collections
import itertools
import os
import random
import sys
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import _base

from flowcoro._core.lockfree import EventCount, Queue, WorkDeque
from flowcoro.errors import ExecutorShutdownError, InvalidArgumentError

__all__ = ["WorkStealingExecutor"]

#: Capacity of the lock-free injection queue; beyond it submits spill into an
#: overflow deque (rare: a burst of more than this many queued tasks).
INJECT_CAPACITY = 1 << 16

#: Seconds an idle worker spins (GIL released) before it sleeps, catching the
#: next task of a submit loop without a futex wake-up (5-50 us).  At most one
#: worker per executor spins at a time, and only on machines with 8+ CPUs: on
#: a small box the spinner takes the core the submitter needs (measured on 2
#: CPUs: the one-at-a-time round trip got 2x slower with a 50 us spin).
#: Assign a number of seconds to override (0 disables).
IDLE_SPIN = None
_AUTO_SPIN = 50e-6 if (os.cpu_count() or 1) >= 8 else 0.0

_PENDING = _base.PENDING
_RUNNING = _base.RUNNING
_CANCELLED = _base.CANCELLED
_CANCELLED_AND_NOTIFIED = _base.CANCELLED_AND_NOTIFIED
_FINISHED = _base.FINISHED
_DONE_STATES = frozenset((_CANCELLED, _CANCELLED_AND_NOTIFIED, _FINISHED))
_CANCELLED_STATES = frozenset((_CANCELLED, _CANCELLED_AND_NOTIFIED))

#: On a GIL build an attribute read is atomic and ordered with the writes
#: made under the future's lock, so a finished future's result can be read
#: without taking the lock.  Free-threaded builds take the lock.
_GIL = getattr(sys, "_is_gil_enabled", lambda: True)()

_cond_create_lock = threading.Lock()
_RLock = threading.RLock
_Condition = threading.Condition
_LOGGER = _base.LOGGER


def _cpu_count():
    f = getattr(os, "process_cpu_count", None)     # 3.13+
    return (f() if f else os.cpu_count()) or 1


class _Future(Future):
    """A concurrent.futures.Future whose Condition is built on first wait.

    Invariant: ``_lock`` guards ``_state``, ``_result``, ``_exception``,
    ``_waiters`` and ``_done_callbacks``; ``_condition`` (when it exists)
    wraps that same lock, so the stdlib's code (``wait``, ``as_completed``,
    ``Future.result`` with a timeout) and the fast paths here exclude each
    other.  Notifications go to the Condition only if it exists; a waiter
    creates it *before* taking the lock to check the state, so a completion
    that happens after that check sees it and notifies.
    """

    def __init__(self):                 # no super().__init__(): no Condition yet
        self._lock = _RLock()
        self._cond = None
        self._state = _PENDING
        self._result = None
        self._exception = None
        self._waiters = []
        self._done_callbacks = []
        self._call = None               # (fn, args, kwargs) until claimed to run
        self._executor = None           # the WorkStealingExecutor it was submitted to

    @property
    def _condition(self):
        c = self._cond
        if c is None:
            with _cond_create_lock:
                c = self._cond
                if c is None:
                    c = self._cond = _Condition(self._lock)
        return c

    def cancel(self):
        """Cancels the future if it has not started running; see Future.cancel."""
        with self._lock:
            state = self._state
            if state == _RUNNING or state == _FINISHED:
                return False
            if state in _CANCELLED_STATES:
                return True
            self._state = _CANCELLED
            if self._cond is not None:
                self._cond.notify_all()
        self._invoke_callbacks()
        return True

    def cancelled(self):
        """True if the future was cancelled."""
        return self._state in _CANCELLED_STATES

    def running(self):
        """True if the call is running."""
        return self._state == _RUNNING

    def done(self):
        """True if the future was cancelled or finished."""
        return self._state in _DONE_STATES

    def add_done_callback(self, fn):
        """Calls fn(future) when done (at once if already done); see Future."""
        with self._lock:
            if self._state not in _DONE_STATES:
                self._done_callbacks.append(fn)
                return
        try:
            fn(self)
        except Exception:
            _LOGGER.exception("exception calling callback for %r", self)

    def result(self, timeout=None):
        """The call's result, waiting up to timeout seconds; see Future.result."""
        if _GIL and self._state == _FINISHED:
            if self._exception is not None:
                try:
                    raise self._exception
                finally:
                    self = None         # break the frame -> exception cycle
            return self._result
        if timeout is None and self._state == _PENDING and self._executor is not None:
            self._help()
        return super().result(timeout)

    def exception(self, timeout=None):
        """The call's exception (None if it returned); see Future.exception."""
        if _GIL and self._state == _FINISHED:
            return self._exception
        if timeout is None and self._state == _PENDING and self._executor is not None:
            self._help()
        return super().exception(timeout)

    def _help(self):
        """Before blocking in result()/exception() without a timeout.

        On a worker of our executor (or any thread, with caller_runs=True):
        run this very call here if nobody has started it, and otherwise (on a
        worker) run other queued work until it is done or none is left —
        so fork/join inside the pool cannot deadlock for want of threads.
        """
        ex = self._executor
        w = getattr(_local, "worker", None)
        on_worker = w is not None and w.executor is ex
        if not (on_worker or ex._caller_runs):
            return
        _run(self)                      # no-op unless we win the claim
        if not on_worker:
            return
        find = w.find_work
        while self._state not in _DONE_STATES:
            f = find()
            if f is None:
                return
            _run(f)

    def _claim(self):
        """PENDING -> RUNNING for exactly one caller (a worker or a helper).

        Returns False when it was cancelled (notifying waiters, as
        set_running_or_notify_cancel does) or already claimed.
        """
        with self._lock:
            state = self._state
            if state == _PENDING:
                self._state = _RUNNING
                return True
            if state == _CANCELLED:
                self._state = _CANCELLED_AND_NOTIFIED
                self._call = None
                for waiter in self._waiters:
                    waiter.add_cancelled(self)
            return False

    def set_running_or_notify_cancel(self):
        """Marks the future running, or notifies waiters of its cancellation."""
        with self._lock:
            state = self._state
            if state == _PENDING:
                self._state = _RUNNING
                return True
            if state == _CANCELLED:
                self._state = _CANCELLED_AND_NOTIFIED
                for waiter in self._waiters:
                    waiter.add_cancelled(self)
                return False
            _LOGGER.critical("Future %s in unexpected state: %s", id(self), state)
            raise RuntimeError("Future in unexpected state")

    def set_result(self, result):
        """Completes the future with a result (executor side)."""
        with self._lock:
            if self._state in _DONE_STATES:
                raise _base.InvalidStateError(f"{self._state}: {self!r}")
            self._result = result
            self._state = _FINISHED
            for waiter in self._waiters:
                waiter.add_result(self)
            if self._cond is not None:
                self._cond.notify_all()
        if self._done_callbacks:
            self._invoke_callbacks()

    def set_exception(self, exception):
        """Completes the future with an exception (executor side)."""
        with self._lock:
            if self._state in _DONE_STATES:
                raise _base.InvalidStateError(f"{self._state}: {self!r}")
            self._exception = exception
            self._state = _FINISHED
            for waiter in self._waiters:
                waiter.add_exception(self)
            if self._cond is not None:
                self._cond.notify_all()
        if self._done_callbacks:
            self._invoke_callbacks()


def _run(fut):
    """Runs a queued future's call if this thread wins its claim; never raises."""
    if not fut._claim():
        return
    fn, args, kwargs = fut._call
    fut._call = None                    # drop the references as soon as it runs
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        fut.set_exception(exc)
        exc = None                      # noqa: F841 (break the traceback cycle)
    else:
        fut.set_result(result)


_local = threading.local()      # .worker: the _Worker running on this thread

_live_executors = weakref.WeakSet()
_shutting_down = False


def _python_exit():
    """At interpreter shutdown: stop taking work and join every worker."""
    global _shutting_down
    _shutting_down = True
    for ex in list(_live_executors):
        ex.shutdown(wait=True)


if hasattr(threading, "_register_atexit"):
    # Runs before non-daemon threads are joined, as ThreadPoolExecutor's hook.
    threading._register_atexit(_python_exit)
else:                                           # pragma: no cover
    import atexit
    atexit.register(_python_exit)


class _Worker:
    """One worker thread's state: its deque and its random stream."""

    __slots__ = ("executor", "index", "deque", "rng", "thread", "steals", "__weakref__")

    def __init__(self, executor, index):
        self.executor = executor
        self.index = index
        self.deque = None               # created on the worker thread (its owner)
        self.rng = random.Random(index * 2654435761 + id(self))
        self.thread = None
        self.steals = 0                 # written by this worker's thread only

    def steal(self):
        """Takes the oldest item of another worker's deque, or None."""
        deques = self.executor._deques
        n = len(deques)
        if n <= 1:
            return None
        start = self.rng.getrandbits(32) % n
        own = self.deque
        for k in range(n):
            d = deques[(start + k) % n]
            if d is own or not len(d):
                continue
            item = d.steal()
            if item is not None:
                self.steals += 1
                return item
        return None

    def find_work(self):
        """Own deque, injection queue, overflow, then steal; None if nothing."""
        item = self.deque.pop()
        if item is not None:
            return item
        ex = self.executor
        item = ex._inject._poll()
        if item is not None:
            return item
        if ex._overflow:
            try:
                return ex._overflow.popleft()
            except IndexError:
                pass
        return self.steal()

    def main(self):
        ex = self.executor
        self.deque = WorkDeque()
        _local.worker = self
        with ex._lock:
            ex._deques = ex._deques + [self.deque]     # copy-on-write: thieves read lock-free
        if ex._initializer is not None:
            try:
                ex._initializer(*ex._initargs)
            except BaseException:
                _LOGGER.critical("Exception in initializer:", exc_info=True)
                ex._initializer_failed()
                return
        pop = self.deque.pop
        poll = ex._inject._poll
        find = self.find_work
        ec = ex._ec
        try:
            while True:
                item = pop()
                if item is None:
                    item = poll()
                    if item is None:
                        item = find()
                if item is not None:
                    _run(item)
                    item = None
                    continue
                # Nothing anywhere: park.  Prepare, look again, then sleep.
                key = ec.prepare()
                item = find()
                if item is not None:
                    ec.cancel()
                    _run(item)
                    item = None
                    continue
                if ex._shutdown:
                    ec.cancel()
                    return
                spin = _AUTO_SPIN if IDLE_SPIN is None else IDLE_SPIN
                with ex._lock:
                    ex._idle += 1
                    if spin and ex._spinning:
                        spin = 0.0          # one spinner per executor is enough
                    elif spin:
                        ex._spinning = True
                ec.wait(key, None, spin)
                with ex._lock:
                    if ex._idle > 0:
                        ex._idle -= 1
                    if spin:
                        ex._spinning = False
        finally:
            # Anything left on our deque is stolen by the others, or by
            # shutdown(cancel_futures=True); re-home it so nothing is stranded.
            while True:
                item = self.deque.pop()
                if item is None:
                    break
                ex._overflow.append(item)
            if ex._overflow:
                ec.notify_all()


class WorkStealingExecutor(ThreadPoolExecutor):
    """A concurrent.futures.Executor with per-worker work-stealing deques.

    It subclasses :class:`concurrent.futures.ThreadPoolExecutor` only so that
    ``loop.set_default_executor()``, which insists on that type (asyncio
    raises TypeError otherwise), accepts it — on FlowCoro's loop and the
    stdlib's alike.  It shares no code with it: every public method is its own.

    Examples::

        with WorkStealingExecutor() as ex:
            fut = ex.submit(hashlib.sha256, data)        # any thread
            digests = list(ex.map(hash_file, paths))

        def parent(ex, chunks):                          # inside a task:
            futs = [ex.schedule_local(work, c) for c in chunks]   # own deque
            return [f.result() for f in futs]            # helps while waiting

        loop.set_default_executor(WorkStealingExecutor())
        await loop.run_in_executor(None, blocking_call)

    Args:
        max_workers: threads at most (default ``min(32, cpus + 4)``).
        thread_name_prefix: names the threads ``<prefix>_<n>``.
        initializer: called as ``initializer(*initargs)`` in each new thread;
            if it raises, the executor is broken: pending and later futures
            fail (as ThreadPoolExecutor does).
        initargs: arguments for the initializer.
        caller_runs: when a thread outside the pool blocks on ``result()`` (or
            ``exception()``) without a timeout and nobody has started that call
            yet, run it on the waiting thread instead of waiting for a worker
            (Java's CallerRunsPolicy / ForkJoin's helping join).  That saves
            the two thread wake-ups of a round trip, but the call then runs on
            the caller's thread — off by default.  Workers always do this for
            futures of their own executor (fork/join needs it).

    Raises:
        InvalidArgumentError: max_workers is not a positive int, initializer
            is not callable, or caller_runs is combined with an initializer.
    """

    _counter = itertools.count().__next__

    def __init__(self, max_workers=None, thread_name_prefix="", initializer=None, initargs=(),
                 *, caller_runs=False):
        if max_workers is None:
            max_workers = min(32, _cpu_count() + 4)
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers <= 0:
            raise InvalidArgumentError("max_workers", max_workers, "must be an int > 0")
        if initializer is not None and not callable(initializer):
            raise InvalidArgumentError("initializer", initializer, "must be callable")
        self._max_workers = max_workers
        self._prefix = thread_name_prefix or f"WorkStealingExecutor-{self._counter()}"
        self._initializer = initializer
        self._initargs = tuple(initargs)
        if caller_runs and initializer is not None:
            raise InvalidArgumentError("caller_runs", caller_runs,
                                       "cannot be combined with an initializer (the caller's "
                                       "thread never ran it)")
        self._caller_runs = bool(caller_runs)
        self._inject = Queue(INJECT_CAPACITY)
        self._overflow = collections.deque()
        self._ec = EventCount()
        self._lock = threading.Lock()       # guards _threads, _deques, _idle, _shutdown, _broken
        self._threads = []
        self._workers = []
        self._deques = []                   # replaced, never mutated (read lock-free)
        self._idle = 0                      # parked workers not yet claimed by a submit
        self._spinning = False              # a parked worker is in its spin phase
        self._shutdown = False
        self._broken = None
        _live_executors.add(self)

    @property
    def max_workers(self):
        """The most threads this executor starts."""
        return self._max_workers

    def stats(self):
        """Counters for monitoring, read without stopping the workers (each
        figure is exact for a moment, not all for the same one):

        * ``workers``: threads started; ``idle``: of them, parked;
        * ``queued``: calls submitted and not yet started (injection queue,
          every worker's deque, the overflow list);
        * ``steals``: calls a worker took from another worker's deque, in total.
        """
        queued = len(self._inject) + len(self._overflow) + sum(len(d) for d in self._deques)
        return {"workers": len(self._threads), "idle": self._idle, "queued": queued,
                "steals": sum(w.steals for w in list(self._workers))}

    def submit(self, fn, /, *args, **kwargs):
        """Schedules fn(*args, **kwargs); returns a concurrent.futures.Future.

        Raises:
            ExecutorShutdownError: after shutdown() (or interpreter exit).
            concurrent.futures.BrokenExecutor: an initializer failed.
        """
        f = _Future()
        f._call = (fn, args, kwargs)
        with self._lock:
            if self._broken is not None:
                raise _base.BrokenExecutor(self._broken)
            if self._shutdown or _shutting_down:
                raise ExecutorShutdownError("cannot schedule new futures after shutdown")
            f._executor = self
            if not self._inject._offer(f):
                self._overflow.append(f)
            if self._idle > 0:
                self._idle -= 1
            elif len(self._threads) < self._max_workers:
                self._start_worker()
        self._ec.notify()
        return f

    def schedule_local(self, fn, /, *args, **kwargs):
        """Like submit, but from a worker pushes onto that worker's own deque.

        The task runs on the same worker when it gets to it (newest first) or
        on an idle worker that steals it.  Called from any other thread it is
        ``submit``.

        Raises:
            ExecutorShutdownError: after shutdown().
        """
        w = getattr(_local, "worker", None)
        if w is None or w.executor is not self:
            return self.submit(fn, *args, **kwargs)
        if self._shutdown or _shutting_down:
            raise ExecutorShutdownError("cannot schedule new futures after shutdown")
        f = _Future()
        f._call = (fn, args, kwargs)
        f._executor = self
        w.deque.push(f)
        self._ec.notify()
        return f

    def _adjust_thread_count(self):
        # ThreadPoolExecutor's hook; threads are started by submit() here.
        pass

    def _start_worker(self):
        # Caller holds self._lock.
        w = _Worker(self, len(self._threads))
        t = threading.Thread(target=w.main, name=f"{self._prefix}_{w.index}", daemon=True)
        w.thread = t
        self._threads.append(t)
        self._workers.append(w)
        t.start()

    def _initializer_failed(self):
        with self._lock:
            self._broken = ("A thread initializer failed, the thread pool is not usable anymore")
            self._shutdown = True
        for f in self._drain():
            if f._claim():
                f._call = None
                f.set_exception(_base.BrokenExecutor(self._broken))
        self._ec.notify_all()

    def _drain(self):
        """Every queued item: injection queue, overflow, and all deques."""
        out = []
        while True:
            item = self._inject._poll()
            if item is None:
                break
            out.append(item)
        while self._overflow:
            try:
                out.append(self._overflow.popleft())
            except IndexError:
                break
        for d in self._deques:
            while True:
                item = d.steal()
                if item is None:
                    break
                out.append(item)
        return out

    def shutdown(self, wait=True, *, cancel_futures=False):
        """Stops taking work; see concurrent.futures.Executor.shutdown.

        Args:
            wait: block until every worker has exited (queued work runs first
                unless cancelled).
            cancel_futures: cancel every future that has not started yet.
        """
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        if cancel_futures:
            for f in self._drain():
                if f.cancel():
                    f._claim()          # -> CANCELLED_AND_NOTIFIED, as a worker would
        self._ec.notify_all()
        if wait:
            me = threading.current_thread()
            for t in threads:
                if t is not me:
                    t.join()
        _live_executors.discard(self)

    def __repr__(self):
        return (f"<WorkStealingExecutor max_workers={self._max_workers} "
                f"threads={len(self._threads)} shutdown={self._shutdown}>")
