# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""flowcoro._core.loop — the run loop, ready queue, timers and I/O polling.

Theory of operation
-------------------
``CoreLoop`` owns four C structures (csrc/):

* ``ready``   — a FIFO ring of handles (``fc_ring_t``); each slot holds one
  owned reference.  Only the loop's thread touches it.
* ``timers``  — a binary heap ordered by (when, insertion order)
  (``fc_heap_t``); each entry holds one owned reference to a TimerHandle.
* ``reactor`` — the I/O backend picked once at creation (``FLOWCORO_BACKEND``).
* ``wakeup``  — an eventfd plus a mutex-guarded hand-off list that
  ``call_soon_threadsafe`` pushes into from other threads.

One iteration (``_run_once``) does what asyncio's does, in the same order:
drop cancelled timers, wait for I/O (0 if anything is ready), queue the
handles of ready fds, take what other threads handed over, move due timers
to ``ready``, then run exactly the handles that were ready when running
started (callbacks scheduled now run next iteration).

Invariants:
* A handle is in ``ready`` at most once per scheduling call; cancelled ones
  stay there and are skipped when popped.
* ``TimerHandle._scheduled`` is true exactly while the heap holds it.
* ``_timer_cancelled_count`` counts scheduled-and-cancelled timers.

``CoreLoop`` is never used alone: ``flowcoro.Loop`` mixes it in front of the
stdlib's unix selector loop, whose pure-Python high-level logic
(create_connection's happy eyeballs, subprocess, TLS via sslproto, signal
handlers, sendfile fallback) runs on top of these fast paths unchanged.
"""

cimport cython
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from cpython.contextvars cimport PyContext_CopyCurrent, PyContext_Enter, PyContext_Exit
from libc.stdlib cimport free
from libc.math cimport ceil, INFINITY
from libc.errno cimport errno
from libc.errno cimport EAGAIN, EINTR
cdef extern from "errno.h":
    int EWOULDBLOCK
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE

cdef extern from "sys/uio.h" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len
    ssize_t writev(int fd, const iovec *iov, int iovcnt)

cdef extern from "sys/socket.h" nogil:
    ssize_t c_recv "recv"(int fd, void *buf, size_t n, int flags)
    ssize_t c_send "send"(int fd, const void *buf, size_t n, int flags)
    int MSG_NOSIGNAL


from libc.stdint cimport uint32_t, uint64_t
from flowcoro._core._c cimport *

cdef extern from "Python.h":
    void *PyMem_Malloc_ "PyMem_Malloc"(size_t n)
    void *PyMem_Realloc_ "PyMem_Realloc"(void *p, size_t n)
    void PyMem_Free_ "PyMem_Free"(void *p)

cdef class CoreLoop

import os
import sys
from flowcoro.errors import BackendError, InvalidArgumentError, LoopClosedError
import threading
import logging
import selectors as _selectors

from asyncio import events as aio_events
from asyncio import format_helpers as aio_format_helpers
from asyncio import futures as aio_futures

import asyncio.base_events
import asyncio.tasks
cdef object aio_BaseEventLoop = asyncio.base_events.BaseEventLoop
cdef object aio_Task = asyncio.tasks.Task
cdef object aio_Future = aio_futures.Future
# A free-threaded build (3.13t) without the GIL needs the locked hand-off path.
cdef bint GIL_ENABLED = getattr(sys, "_is_gil_enabled", lambda: True)()
cdef object aio_format_callback = aio_format_helpers._format_callback_source
cdef object aio_extract_stack = aio_format_helpers.extract_stack
cdef object sys_getframe = sys._getframe
cdef object sys_get_asyncgen_hooks = sys.get_asyncgen_hooks
cdef object sys_set_asyncgen_hooks = sys.set_asyncgen_hooks
cdef object threading_get_ident = threading.get_ident
cdef object fileobj_to_fd = _selectors._fileobj_to_fd
cdef object logger = logging.getLogger("asyncio")

cdef extern from "Python.h":
    int PyErr_CheckSignals() except -1
    void PyObject_GC_UnTrack(object o)
    void *Py_TYPE_ "Py_TYPE"(PyObject *o)
    unsigned long PyThread_get_thread_ident() nogil

cdef extern from *:
    """
    #include <time.h>
    static inline double fc_monotonic(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    }
    """
    double fc_monotonic() nogil

# asyncio's MAXIMUM_SELECT_TIMEOUT: one day; longer waits are split.
DEF MAX_WAIT_MS = 86400000
# Cancelled timers are purged in bulk once they are more than half of a heap
# of at least this many entries (asyncio's _MIN_SCHEDULED_TIMER_HANDLES).
DEF MIN_TIMERS_FOR_PURGE = 100
# Callback priorities (see "priorities" below); values match flowcoro.Priority.
DEF PRIO_LOW = 0
DEF PRIO_NORMAL = 1
DEF PRIO_HIGH = 2
DEF PRIO_CRITICAL = 3
# Poll skipping: while callbacks keep the ready queue busy, a non-blocking
# poll that finds nothing costs one system call per iteration (most of a
# sleep(0) switch).  We skip it, but never for longer than POLL_SKIP_MAX_S
# nor more than POLL_SKIP_MAX_ITERS iterations in a row, so I/O is seen
# within ~50 us even under a callback storm.  A blocking wait (nothing
# ready), a stop() request and pending timers never skip.
DEF POLL_SKIP_MAX_S = 0.00005
DEF POLL_SKIP_MAX_ITERS = 32
# Busy polling (opt-in, see CoreLoop.busy_poll_us): at most 10 ms.
DEF MAX_BUSY_POLL_US = 10000
# Ready-ring size kept after a burst drains (slots of 8 bytes: 512 KiB).
DEF READY_KEEP_SLOTS = 65536
# recv(2) size for stream transports (asyncio's max_size): one buffer per loop.
DEF READ_BUF_SIZE = 262144


cdef double _busy_poll_seconds(object us, str name) except -1:
    """A busy-poll window in microseconds (``name`` says where it came
    from, for the error), validated; returned in seconds."""
    cdef double v = -1                              # (refused below)
    if not isinstance(us, bool):
        try:
            v = float(us)
        except (TypeError, ValueError):
            pass
    if not (0 <= v <= MAX_BUSY_POLL_US):        # also NaN
        raise InvalidArgumentError(name, us, f"a number of microseconds, 0..{MAX_BUSY_POLL_US}")
    return v / 1e6


cdef object _oserror(int status):
    """The one place a C status becomes a Python exception."""
    if status == FC_ENOMEM_OWN:
        return MemoryError()
    return OSError(-status, os.strerror(-status))


# One-shot handles (call_soon/call_later/call_at/call_soon_threadsafe) are
# untracked from the cyclic GC right after creation: they are made and
# dropped by the million, and tracking them made every generation-0
# collection walk all pending handles.  What keeps that leak-free: a one-shot
# handle drops its callback and args when it has run or is cancelled, and
# loop.close() drops them from every handle it still holds, so the usual
# cycle ``obj -> handle -> bound method -> obj`` is broken as soon as the
# handle is spent; while pending, the loop itself holds the handle, so
# nothing in it is garbage.  Reader/writer handles run many times, keep their
# callback until removed, and stay tracked, so a cycle through them (an
# unclosed loop's self-pipe reader, say) is still collected.
@cython.freelist(256)
cdef class Handle:
    """A callback scheduled on a FlowCoro loop (same API as asyncio.Handle)."""

    cdef readonly object _callback
    cdef readonly object _args
    cdef object _context
    cdef readonly CoreLoop _loop
    cdef public bint _cancelled
    cdef public object _source_traceback
    cdef object _repr
    cdef bint _oneshot      # dropped callback/args after running (see above)
    cdef unsigned char _prio    # PRIO_LOW..PRIO_CRITICAL: which ready ring

    def __init__(self, callback, args, loop, context=None):
        """Create a handle; ``loop`` must be a FlowCoro loop."""
        _handle_init(self, callback, args, <CoreLoop?>loop, context)

    def cancel(self):
        """Cancel the callback; a no-op if it already ran or was cancelled."""
        if not self._cancelled:
            self._cancelled = True
            if self._loop is not None and self._loop._debug:
                self._repr = repr(self)
            self._callback = None
            self._args = None

    def cancelled(self):
        """Return True if the callback was cancelled."""
        return self._cancelled

    def get_context(self):
        """Return the contextvars.Context the callback runs in."""
        return self._context

    def _repr_info(self):
        info = [self.__class__.__name__]
        if self._cancelled:
            info.append('cancelled')
        if self._callback is not None:
            info.append(aio_format_callback(self._callback, self._args))
        if self._source_traceback:
            frame = self._source_traceback[len(self._source_traceback) - 1]
            info.append(f'created at {frame[0]}:{frame[1]}')
        return info

    def __repr__(self):
        if self._repr is not None:
            return self._repr
        return '<{}>'.format(' '.join(self._repr_info()))

    def _run(self):
        """Run the callback now (the loop calls this; users should not)."""
        self._run_c()

    cdef int _run_c(self) except -1:
        cdef object cb = self._callback
        cdef object args = self._args
        cdef object ctx = self._context
        cdef bint entered = False
        cdef object error = None
        if self._oneshot and not self._loop._debug:
            self._callback = None
            self._args = None
        try:
            # Inside the try: a context that is already entered raises
            # RuntimeError, which goes to the exception handler as asyncio's
            # Handle._run (context.run) does.
            PyContext_Enter(ctx)
            entered = True
            if args:
                cb(*args)
            else:
                cb()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            error = exc
        finally:
            if entered:
                PyContext_Exit(ctx)
        # Reported outside the callback's context, as asyncio does (3.13's
        # call_exception_handler enters the handle's context itself).
        if error is not None:
            self._report(error, cb, args)
        return 0

    cdef inline void _drop(self) noexcept:
        """Forget callback and args (spent one-shot handles; loop.close())."""
        self._callback = None
        self._args = None

    cdef _report(self, exc, cb, args):
        if not self._cancelled:
            # Put them back for the handler's repr() of the handle.
            self._callback = cb
            self._args = args
        context = {
            'message': f'Exception in callback {aio_format_callback(cb, args)}',
            'exception': exc,
            'handle': self,
        }
        if self._source_traceback:
            context['source_traceback'] = self._source_traceback
        self._loop.call_exception_handler(context)


cdef inline int _handle_init(Handle h, object callback, object args, CoreLoop loop,
                             object context) except -1:
    h._callback = callback
    h._args = args
    h._loop = loop
    h._context = PyContext_CopyCurrent() if context is None else context
    h._prio = PRIO_NORMAL
    if loop is not None and loop.prio_used:
        h._prio = _context_priority(h._context)
    if loop is not None and loop._debug:
        # Cython functions push no Python frame: frame 0 is the user's.
        h._source_traceback = aio_extract_stack(sys_getframe(0))
    return 0


cdef class TimerHandle(Handle):
    """A callback scheduled for a point in time (same API as asyncio.TimerHandle)."""

    cdef readonly double _when
    cdef public bint _scheduled

    def __init__(self, when, callback, args, loop, context=None):
        """Create a timer handle due at loop time ``when``."""
        _handle_init(self, callback, args, <CoreLoop?>loop, context)
        self._when = when

    def when(self):
        """Return the loop time at which the callback is due."""
        return self._when

    def cancel(self):
        """Cancel the timer; it is dropped from the loop's heap lazily."""
        if not self._cancelled and self._scheduled and self._loop is not None:
            self._loop._timer_cancelled_count += 1
        Handle.cancel(self)

    def _repr_info(self):
        info = Handle._repr_info(self)
        info.insert(1 if not self._cancelled else 2, f'when={self._when}')
        return info

    def __hash__(self):
        return hash(self._when)

    def __richcmp__(self, other, int op):
        if not isinstance(other, TimerHandle):
            return NotImplemented
        cdef double a = self._when, b = (<TimerHandle>other)._when
        if op == 0:
            return a < b
        if op == 1:
            return a <= b or self is other
        if op == 4:
            return a > b
        if op == 5:
            return a >= b or self is other
        same = (a == b and self._callback == other._callback and
                self._args == other._args and self._cancelled == other._cancelled)
        return same if op == 2 else not same


# -- priorities ---------------------------------------------------------------
# A callback's priority is the value of ``priority_var`` in the context it
# runs in.  flowcoro.create_task(coro, priority=...) sets it in the task's
# context, so every step of that task, and every callback scheduled from it
# with the default context, inherits it.  Rule (anti-starvation): each
# iteration still runs exactly the callbacks that were ready when it began;
# priority only orders them (CRITICAL, HIGH, NORMAL, LOW, FIFO within a
# level).  So a LOW callback waits at most one iteration longer than it
# would without priorities, however many CRITICAL ones keep arriving: those
# land in the next iteration's snapshot, behind it.

import contextvars as _contextvars
priority_var = _contextvars.ContextVar("flowcoro_priority", default=PRIO_NORMAL)


cdef unsigned char _context_priority(object ctx) except 255:
    v = ctx.get(priority_var, PRIO_NORMAL)
    cdef long p = v
    if p < PRIO_LOW or p > PRIO_CRITICAL:
        raise ValueError(f"priority must be 0..3, got {v!r}")
    return <unsigned char>p


cdef class _FdState:
    """Per-fd interest: which handles wait on it and the mask the reactor has."""
    cdef Handle reader
    cdef Handle writer
    cdef uint32_t mask


cdef inline bint _is_fc_handle(void *p) noexcept:
    """True for FlowCoro's own handles (not asyncio.Handle from signal code)."""
    cdef void *tp = Py_TYPE_(<PyObject *>p)
    return tp == <void *>Handle or tp == <void *>TimerHandle


cdef inline int _run_one(object obj) except -1:
    """Run one handle from a ready ring, ours or asyncio's, unless cancelled."""
    if _is_fc_handle(<void *>obj):
        if not (<Handle>obj)._cancelled:
            (<Handle>obj)._run_c()
    elif not obj._cancelled:
        obj._run()
    return 0


cdef void _drop_any(void *p) noexcept:
    if _is_fc_handle(p):
        (<Handle>p)._drop()


cdef void _drain_ring(fc_ring_t *r) noexcept:
    """Release every handle in ``r`` (loop teardown), breaking their cycles."""
    cdef void *p
    while fc_ring_len(r):
        p = fc_ring_pop(r)
        _drop_any(p)
        Py_DECREF(<object>p)
    fc_ring_free(r)


cdef int _timer_keep(void *data, void *ctx) noexcept:
    return not (<TimerHandle>data)._cancelled


cdef void _timer_drop(void *data, void *ctx) noexcept:
    (<TimerHandle>data)._scheduled = False
    Py_DECREF(<object>data)


cdef class CoreLoop:
    """The C/Cython core of ``flowcoro.Loop``; see the module docstring."""

    cdef fc_ring_t ready          # PRIO_NORMAL, and everything while priorities are off
    cdef fc_ring_t prio_rings[4]  # [PRIO_LOW], [PRIO_HIGH], [PRIO_CRITICAL] once enabled
    cdef bint prio_used           # set once by _enable_priorities(); never cleared
    cdef fc_heap_t timers
    cdef const fc_reactor_ops_t *ops
    cdef fc_reactor_t *reactor
    cdef fc_wakeup_t wakeup
    cdef bint wakeup_ok
    cdef fc_event_t *events
    cdef int max_events
    cdef char *readbuf          # shared recv(2) buffer of the loop's transports
    cdef dict _fds
    cdef unsigned long running_ident     # C thread id while running, else 0
    cdef bint core_closed
    cdef double last_poll         # fc_monotonic() of the last reactor wait
    # Counters for stats() (metrics read them on scrape).  Loop thread only:
    # plain increments, no atomics.
    cdef uint64_t stat_iterations, stat_callbacks, stat_polls
    cdef uint64_t stat_bytes_read, stat_bytes_written
    cdef uint64_t stat_transports, stat_transports_closed
    cdef int skipped_polls        # consecutive iterations that skipped it
    cdef double busy_poll         # seconds to poll without sleeping before a blocking wait
    cdef uint64_t stat_busy_poll_hits   # blocking waits that busy polling made unnecessary

    cdef public bint _closed
    cdef public bint _stopping
    cdef public bint _debug
    cdef public object _thread_id
    cdef public Py_ssize_t _timer_cancelled_count
    cdef public object _task_factory
    cdef public double _clock_resolution
    cdef readonly str backend

    def __cinit__(self, *args, **kwargs):
        cdef int rc
        cdef bytes name
        self._fds = {}
        self.events = NULL
        self.reactor = NULL
        fc_heap_init(&self.timers)
        if fc_ring_init(&self.ready, 1024) != FC_OK:
            raise MemoryError()
        name = os.environ.get("FLOWCORO_BACKEND", "").encode()
        self.ops = fc_reactor_find(name)
        if self.ops == NULL:
            raise BackendError(
                f"FLOWCORO_BACKEND={name.decode()!r}: no such backend here "
                f"(available: {fc_reactor_available().decode()})")
        self.backend = self.ops.name.decode()
        env = os.environ.get("FLOWCORO_BUSY_POLL_US", "")
        if env:
            self.busy_poll = _busy_poll_seconds(env, "FLOWCORO_BUSY_POLL_US")
        rc = self.ops.create(&self.reactor)
        if rc != FC_OK:
            self.reactor = NULL
            raise _oserror(rc)
        rc = fc_wakeup_init(&self.wakeup)
        if rc != FC_OK:
            raise _oserror(rc)
        self.wakeup_ok = True
        rc = self.ops.set(self.reactor, self.wakeup.rfd, 0, FC_EV_READ)
        if rc != FC_OK:
            raise _oserror(rc)
        self.max_events = 256
        self.events = <fc_event_t *>PyMem_Malloc_(self.max_events * sizeof(fc_event_t))
        if self.events == NULL:
            raise MemoryError()
        self.readbuf = <char *>PyMem_Malloc_(READ_BUF_SIZE)
        if self.readbuf == NULL:
            raise MemoryError()

    def __dealloc__(self):
        self._free_core()

    cdef void _free_core(self) noexcept:
        cdef void **items
        cdef size_t n, i
        if self.core_closed:
            return
        self.core_closed = True
        _drain_ring(&self.ready)
        if self.prio_used:
            for i in (PRIO_LOW, PRIO_HIGH, PRIO_CRITICAL):
                _drain_ring(&self.prio_rings[i])
        while self.timers.len:
            p = fc_heap_pop(&self.timers)
            (<TimerHandle>p)._scheduled = False
            (<TimerHandle>p)._drop()
            Py_DECREF(<object>p)
        fc_heap_free(&self.timers)
        if self.wakeup_ok:
            n = fc_wakeup_drain(&self.wakeup, &items)
            for i in range(n):
                _drop_any(items[i])
                Py_DECREF(<object>items[i])
            free(items)
            fc_wakeup_close(&self.wakeup)
            self.wakeup_ok = False
        if self.reactor != NULL:
            self.ops.destroy(self.reactor)
            self.reactor = NULL
        if self.events != NULL:
            PyMem_Free_(self.events)
            self.events = NULL
        if self.readbuf != NULL:
            PyMem_Free_(self.readbuf)
            self.readbuf = NULL

    def _close_core(self):
        """Free the C structures (called by Loop.close after asyncio's part)."""
        for st in self._fds.values():
            # Pending sock_* operations: their handles sit in cycles with
            # their futures; dropping the callbacks breaks them.
            if (<_FdState>st).reader is not None:
                (<_FdState>st).reader._drop()
            if (<_FdState>st).writer is not None:
                (<_FdState>st).writer._drop()
        self._fds.clear()
        self._free_core()

    # -- time -------------------------------------------------------------

    def time(self):
        """Return the loop's clock (CLOCK_MONOTONIC, as time.monotonic())."""
        return fc_monotonic()

    # -- scheduling -------------------------------------------------------

    cdef inline int _push_ready(self, object h) except -1:
        Py_INCREF(h)
        if self._push_owned(<void *>h) != FC_OK:
            Py_DECREF(h)
            raise MemoryError()
        return 0

    cdef inline int _push_owned(self, void *p) noexcept:
        """Queue a handle whose reference the caller hands over."""
        cdef fc_ring_t *r = &self.ready
        cdef unsigned char pr
        if self.prio_used and _is_fc_handle(p):
            pr = (<Handle>p)._prio
            if pr != PRIO_NORMAL:
                r = &self.prio_rings[pr]
        return fc_ring_push(r, p)

    cdef inline size_t _nready(self) noexcept:
        if not self.prio_used:
            return fc_ring_len(&self.ready)
        return (fc_ring_len(&self.ready) + fc_ring_len(&self.prio_rings[PRIO_LOW]) +
                fc_ring_len(&self.prio_rings[PRIO_HIGH]) +
                fc_ring_len(&self.prio_rings[PRIO_CRITICAL]))

    def _enable_priorities(self):
        """Turn on per-priority ready rings (flowcoro.create_task does it)."""
        if self.prio_used:
            return
        for i in (PRIO_LOW, PRIO_HIGH, PRIO_CRITICAL):
            if fc_ring_init(&self.prio_rings[i], 64) != FC_OK:
                raise MemoryError()
        self.prio_used = True

    cdef inline int _check_open(self) except -1:
        if self._closed:
            raise LoopClosedError('Event loop is closed')
        return 0

    def call_soon(self, callback, *args, context=None):
        """Arrange for ``callback(*args)`` to run on the next iteration.

        Returns a Handle that can cancel it.  Callbacks run in FIFO order.
        """
        self._check_open()
        if self._debug:
            self._check_thread()
            self._check_callback(callback, 'call_soon')
        cdef Handle h = Handle.__new__(Handle)
        _handle_init(h, callback, args, self, context)
        h._oneshot = True
        PyObject_GC_UnTrack(h)
        self._push_ready(h)
        return h

    def _call_soon(self, callback, args, context):
        cdef Handle h = Handle.__new__(Handle)
        _handle_init(h, callback, args, self, context)
        h._oneshot = True
        PyObject_GC_UnTrack(h)
        self._push_ready(h)
        return h

    def _add_callback(self, handle):
        """Queue an existing (asyncio or FlowCoro) handle; used by signal handling."""
        if not handle._cancelled:
            self._push_ready(handle)

    def _add_callback_signalsafe(self, handle):
        self._add_callback(handle)
        self._write_to_self()

    def _write_to_self(self):
        if self.wakeup_ok:
            fc_wakeup_signal(&self.wakeup)

    def call_later(self, delay, callback, *args, context=None):
        """Arrange for ``callback(*args)`` to run after ``delay`` seconds."""
        if delay is None:
            raise TypeError('delay must not be None')
        return self._call_at(fc_monotonic() + <double>delay, callback, args, context)

    def call_at(self, when, callback, *args, context=None):
        """Arrange for ``callback(*args)`` to run at loop time ``when``."""
        if when is None:
            raise TypeError('when cannot be None')
        return self._call_at(<double>when, callback, args, context)

    cdef object _call_at(self, double when, object callback, object args, object context):
        self._check_open()
        if self._debug:
            self._check_thread()
            self._check_callback(callback, 'call_at')
        cdef TimerHandle t = TimerHandle.__new__(TimerHandle)
        _handle_init(t, callback, args, self, context)
        t._oneshot = True
        PyObject_GC_UnTrack(t)
        t._when = when
        if when != when:
            # NaN: asyncio's heap compares it as "not later than now" and runs
            # it at once; order it first and keep when() as given.
            when = -INFINITY
        Py_INCREF(t)
        if fc_heap_push(&self.timers, when, <void *>t) != FC_OK:
            Py_DECREF(t)
            raise MemoryError()
        t._scheduled = True
        return t

    def _timer_handle_cancelled(self, handle):
        """Count a cancelled timer that is still in the heap."""
        if handle._scheduled:
            self._timer_cancelled_count += 1

    def call_soon_threadsafe(self, callback, *args, context=None):
        """Like call_soon(), but safe to call from any thread.

        With the GIL, the handle goes straight into the ready queue (the GIL
        orders the push against the loop's pops, and FIFO order with
        call_soon() is kept, as asyncio promises); then one eventfd write
        wakes the loop, coalesced across a burst of calls.  On a
        free-threaded build it goes through the mutex-guarded hand-off list
        in csrc/reactor/wakeup.c instead.
        """
        self._check_open()
        if self._debug:
            self._check_callback(callback, 'call_soon_threadsafe')
        cdef Handle h = Handle.__new__(Handle)
        _handle_init(h, callback, args, self, context)
        h._oneshot = True
        PyObject_GC_UnTrack(h)
        if GIL_ENABLED:
            self._push_ready(h)
            if self.running_ident != PyThread_get_thread_ident():
                fc_wakeup_signal(&self.wakeup)
            return h
        Py_INCREF(h)
        if fc_wakeup_push(&self.wakeup, <void *>h) != FC_OK:
            Py_DECREF(h)
            raise MemoryError()
        return h

    # -- futures and tasks -------------------------------------------------

    def create_future(self):
        """Create a Future attached to this loop."""
        return aio_Future(loop=self)

    def create_task(self, coro, *, name=None, context=None):
        """Schedule coroutine ``coro`` as a Task and return it.

        With a task factory set (set_task_factory) it is called exactly as
        asyncio calls it; otherwise the C Task of asyncio is created here
        without a Python frame in between.
        """
        self._check_open()
        if self._task_factory is not None:
            return aio_BaseEventLoop.create_task(self, coro, name=name, context=context)
        return aio_Task(coro, loop=self, name=name, context=context)

    # -- I/O readiness ----------------------------------------------------

    cdef int _set_interest(self, int fd, _FdState st, uint32_t mask) except -1:
        cdef int rc
        if mask == st.mask:
            return 0
        rc = self.ops.set(self.reactor, fd, st.mask, mask)
        if rc != FC_OK:
            raise _oserror(rc)
        st.mask = mask
        if mask == 0:
            del self._fds[fd]
        return 0

    cdef object _add_io(self, object fileobj, object callback, object args, bint write):
        self._check_open()
        cdef int fd = fileobj_to_fd(fileobj)
        cdef Handle h = Handle.__new__(Handle)
        _handle_init(h, callback, args, self, None)
        cdef _FdState st = self._fds.get(fd)
        cdef bint new = st is None
        if new:
            st = _FdState.__new__(_FdState)
            self._fds[fd] = st
        try:
            self._set_interest(fd, st, st.mask | (FC_EV_WRITE if write else FC_EV_READ))
        except BaseException:
            if new:
                del self._fds[fd]
            raise
        old = st.writer if write else st.reader
        if write:
            st.writer = h
        else:
            st.reader = h
        if old is not None:
            old.cancel()
        return h

    cdef object _remove_io(self, object fileobj, bint write):
        if self._closed:
            return False
        cdef int fd = fileobj_to_fd(fileobj)
        cdef _FdState st = self._fds.get(fd)
        if st is None:
            return False
        cdef Handle h = st.writer if write else st.reader
        if h is None:
            return False
        if write:
            st.writer = None
        else:
            st.reader = None
        h.cancel()
        self._set_interest(fd, st, st.mask & ~(FC_EV_WRITE if write else FC_EV_READ))
        return True

    def _add_reader(self, fd, callback, *args):
        return self._add_io(fd, callback, args, False)

    def _remove_reader(self, fd):
        return self._remove_io(fd, False)

    def _add_writer(self, fd, callback, *args):
        return self._add_io(fd, callback, args, True)

    def _remove_writer(self, fd):
        return self._remove_io(fd, True)

    def _fd_interest(self, fd):
        """(reader handle, writer handle) for ``fd``, or None (for tests/debugging)."""
        st = self._fds.get(fd)
        if st is None:
            return None
        return ((<_FdState>st).reader, (<_FdState>st).writer)

    # -- running ----------------------------------------------------------

    def is_running(self):
        """Return True while run_forever() is executing."""
        return self._thread_id is not None

    def is_closed(self):
        """Return True once close() was called."""
        return self._closed

    def stop(self):
        """Stop after the current iteration; already-scheduled callbacks still run."""
        self._stopping = True

    def run_forever(self):
        """Run until stop() is called."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        old_hooks = sys_get_asyncgen_hooks()
        try:
            self._thread_id = threading_get_ident()
            self.running_ident = PyThread_get_thread_ident()
            sys_set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook,
                                   finalizer=self._asyncgen_finalizer_hook)
            # Looked up per run: tests swap in the pure-Python versions.
            aio_events._set_running_loop(self)
            while True:
                self._run_once_c()
                if self._stopping:
                    break
        finally:
            self._stopping = False
            self._thread_id = None
            self.running_ident = 0
            aio_events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys_set_asyncgen_hooks(*old_hooks)

    def _run_once(self):
        """Run one iteration (exposed for tests and tools like asyncio's)."""
        self._run_once_c()

    cdef int _purge_timers(self) except -1:
        cdef TimerHandle t
        if (self.timers.len > MIN_TIMERS_FOR_PURGE and
                self._timer_cancelled_count * 2 > <Py_ssize_t>self.timers.len):
            fc_heap_filter(&self.timers, _timer_keep, _timer_drop, NULL)
            self._timer_cancelled_count = 0
        else:
            while self.timers.len:
                t = <TimerHandle>fc_heap_top(&self.timers).data
                if not t._cancelled:
                    break
                fc_heap_pop(&self.timers)
                self._timer_cancelled_count -= 1
                t._scheduled = False
                Py_DECREF(t)
        return 0

    cdef int _run_once_c(self) except -1:
        cdef int timeout_ms, n, i, fd
        cdef uint32_t ev
        cdef double delay, end, now
        cdef size_t ntodo, k, m
        cdef void **items
        cdef void *p
        cdef _FdState st
        cdef TimerHandle t
        cdef object obj
        cdef bint woken

        if self.reactor == NULL:
            raise LoopClosedError('Event loop is closed')
        self.stat_iterations += 1
        self._purge_timers()

        if self._nready() or self._stopping or fc_wakeup_pending(&self.wakeup):
            timeout_ms = 0
        elif self.timers.len:
            delay = fc_heap_top(&self.timers).when - fc_monotonic()
            if not (delay > 0):     # also NaN-proof
                timeout_ms = 0
            elif delay * 1000.0 >= MAX_WAIT_MS:
                timeout_ms = MAX_WAIT_MS
            else:
                timeout_ms = <int>ceil(delay * 1000.0)
        else:
            timeout_ms = -1

        now = fc_monotonic()
        if (timeout_ms == 0 and not self._stopping and
                self.skipped_polls < POLL_SKIP_MAX_ITERS and
                now - self.last_poll < POLL_SKIP_MAX_S and
                self._nready() and
                (self.timers.len == 0 or fc_heap_top(&self.timers).when > now)):
            self.skipped_polls += 1
            n = 0
        else:
            self.skipped_polls = 0
            self.stat_polls += 1
            with nogil:
                n = 0
                if timeout_ms != 0 and self.busy_poll > 0:
                    n = self._spin(now, timeout_ms)
                    if n > 0:
                        self.stat_busy_poll_hits += 1
                if n == 0:
                    n = self.ops.wait(self.reactor, self.events, self.max_events, timeout_ms)
            # What the poll saw is current as of its return: after a wait
            # that blocked, that is later than `now`, and the callbacks the
            # wake-up schedules (future -> task -> write) may skip the next
            # non-blocking polls, which would only find nothing new.
            self.last_poll = now if timeout_ms == 0 else fc_monotonic()
            if n < 0:
                raise _oserror(n)
        # Python-level signal handlers (SIGINT -> KeyboardInterrupt) run here,
        # between iterations, as they would between bytecodes.
        PyErr_CheckSignals()

        woken = False
        for i in range(n):
            fd = self.events[i].fd
            ev = self.events[i].events
            if fd == self.wakeup.rfd:
                woken = True    # drained below, together with the hint
                continue
            obj = self._fds.get(fd)
            if obj is None:
                continue
            st = <_FdState>obj
            if ev & FC_EV_READ and st.reader is not None:
                if st.reader._cancelled:
                    self._remove_io(fd, False)
                else:
                    self._push_ready(st.reader)
            if ev & FC_EV_WRITE and st.writer is not None:
                if st.writer._cancelled:
                    self._remove_io(fd, True)
                else:
                    self._push_ready(st.writer)
        if n == self.max_events and self.max_events < 4096:
            self._grow_events()

        # Read the eventfd only when it fired (a signal() leaves it readable,
        # level-triggered, until drained) or items wait: an I/O event alone
        # used to cost a read() that found nothing.
        if woken or fc_wakeup_pending(&self.wakeup):
            m = fc_wakeup_drain(&self.wakeup, &items)
            for k in range(m):
                # The reference taken by call_soon_threadsafe moves to ready.
                if self._push_owned(items[k]) != FC_OK:
                    while k < m:
                        Py_DECREF(<object>items[k])
                        k += 1
                    free(items)
                    raise MemoryError()
            free(items)

        end = fc_monotonic() + self._clock_resolution
        while self.timers.len:
            if fc_heap_top(&self.timers).when >= end:
                break
            p = fc_heap_pop(&self.timers)
            (<TimerHandle>p)._scheduled = False
            # The heap's reference moves to ready.
            if self._push_owned(p) != FC_OK:
                Py_DECREF(<object>p)
                raise MemoryError()

        if self.prio_used or self._debug:
            return self._run_ready_general()
        ntodo = fc_ring_len(&self.ready)
        self.stat_callbacks += ntodo
        for k in range(ntodo):
            p = fc_ring_pop(&self.ready)
            obj = <object>p
            Py_DECREF(obj)          # obj keeps its own reference
            _run_one(obj)
        # A burst (1M call_soon) grew the ring to MiBs; give it back once empty.
        fc_ring_shrink(&self.ready, READY_KEEP_SLOTS)
        return 0

    cdef int _spin(self, double now, int timeout_ms) noexcept nogil:
        """Poll without blocking for up to busy_poll seconds (less when a
        timer is due sooner); return the first non-zero result, or 0.

        Why: on a virtual machine a thread that sleeps in epoll_wait and is
        woken by a reply tens of microseconds later pays for its vCPU going
        idle and being woken by an interrupt through the hypervisor; a
        request/reply round trip on loopback (one Redis GET) is then mostly
        that.  Polling through the gap trades CPU for latency.  The GIL is
        released here, so other threads run meanwhile; a call_soon_threadsafe
        or a signal's wake-up byte is seen at once (the wake-up fd is
        polled too)."""
        cdef double deadline = now + self.busy_poll
        cdef int n
        if timeout_ms > 0 and now + timeout_ms / 1000.0 < deadline:
            deadline = now + timeout_ms / 1000.0
        while True:
            n = self.ops.wait(self.reactor, self.events, self.max_events, 0)
            if n != 0 or fc_monotonic() >= deadline:
                return n

    cdef int _grow_events(self) except -1:
        cdef int m = self.max_events * 2
        cdef void *nb = PyMem_Realloc_(self.events, m * sizeof(fc_event_t))
        if nb == NULL:
            raise MemoryError()
        self.events = <fc_event_t *>nb
        self.max_events = m
        return 0

    cdef int _run_ready_general(self) except -1:
        """Run this iteration's snapshot by priority, with debug timing if on."""
        cdef size_t counts[4]
        cdef size_t k
        cdef int pr
        cdef fc_ring_t *r
        cdef double t0, dt
        counts[PRIO_NORMAL] = fc_ring_len(&self.ready)
        for pr in (PRIO_LOW, PRIO_HIGH, PRIO_CRITICAL):
            counts[pr] = fc_ring_len(&self.prio_rings[pr]) if self.prio_used else 0
        self.stat_callbacks += counts[0] + counts[1] + counts[2] + counts[3]
        for pr in range(PRIO_CRITICAL, PRIO_LOW - 1, -1):
            r = &self.ready if pr == PRIO_NORMAL else &self.prio_rings[pr]
            for k in range(counts[pr]):
                obj = <object>fc_ring_pop(r)
                Py_DECREF(obj)
                if not self._debug:
                    _run_one(obj)
                    continue
                if obj._cancelled:
                    continue
                try:
                    self._current_handle = obj
                    t0 = fc_monotonic()
                    _run_one(obj)
                    dt = fc_monotonic() - t0
                    if dt >= self.slow_callback_duration:
                        logger.warning('Executing %s took %.3f seconds',
                                       _format_handle(obj), dt)
                finally:
                    self._current_handle = None
                    if isinstance(obj, Handle) and (<Handle>obj)._oneshot:
                        (<Handle>obj)._drop()
        return 0

    @property
    def busy_poll_us(self):
        """Microseconds the loop polls for I/O without sleeping before it
        blocks (0, the default: it blocks at once).  Settable; also set at
        creation from ``FLOWCORO_BUSY_POLL_US``.  A latency knob: it cuts a
        request/reply round trip (a sequential Redis GET, a database point
        query) when the reply comes within the window, at the price of up to
        that much CPU each time the loop goes idle.  See docs/api/loop.md."""
        return self.busy_poll * 1e6

    @busy_poll_us.setter
    def busy_poll_us(self, value):
        self.busy_poll = _busy_poll_seconds(value, "busy_poll_us")

    def stats(self):
        """Counters of this loop since it was made, for metrics (cheap to
        read; kept as plain C counters on the loop thread).

        Returns a dict: ``iterations`` (run-loop passes), ``polls`` (the
        passes that asked the reactor for I/O events; the others skipped a
        non-blocking poll, see POLL_SKIP_MAX_S), ``busy_poll_hits`` (waits
        that busy polling ended with events, so the loop never slept; see
        ``busy_poll_us``), ``callbacks_run``
        (handles run, cancelled ones included), ``ready`` (handles waiting
        now), ``timers`` (timers in the heap, cancelled ones included),
        ``transports_open`` (FlowCoro socket transports not yet lost),
        ``bytes_read`` / ``bytes_written`` (by those transports)."""
        return {
            "iterations": self.stat_iterations,
            "polls": self.stat_polls,
            "busy_poll_hits": self.stat_busy_poll_hits,
            "callbacks_run": self.stat_callbacks,
            "ready": self._nready(),
            "timers": self.timers.len,
            "transports_open": self.stat_transports - self.stat_transports_closed,
            "bytes_read": self.stat_bytes_read,
            "bytes_written": self.stat_bytes_written,
        }

    def _ready_count(self):
        """Number of handles waiting in the ready queues (metrics, tests)."""
        return self._nready()

    def _timer_count(self):
        """Number of timers in the heap, cancelled ones included."""
        return self.timers.len


def _format_handle(handle):
    cb = getattr(handle, '_callback', None)
    owner = getattr(cb, '__self__', None)
    if owner is not None and hasattr(owner, 'get_coro'):
        return repr(owner)
    return str(handle)


def available_backends():
    """Names of the reactor backends compiled into this build, best first."""
    return fc_reactor_available().decode().split(",")


# -- GC support for untracked pending handles -----------------------------------
# A pending one-shot handle is untracked (see Handle) yet holds a strong
# reference to its loop, and the loop holds the handle in a C ring or heap
# that Cython's generated tp_traverse cannot see.  To the collector the
# handle's reference would look external, and a loop dropped without close()
# would never be collected.  So CoreLoop's traverse also reports, once per
# pending handle that only the loop owns (refcount 1), that handle's
# reference to the loop, as the loop's own: exactly the references that
# vanish when the loop does.  Handles someone else also holds stay external,
# which keeps the loop alive as they expect.

cdef extern from "Python.h":
    ctypedef int (*fc_visitproc "visitproc")(PyObject *, void *)
    ctypedef int (*fc_traverseproc "traverseproc")(PyObject *, fc_visitproc, void *)
    ctypedef struct FcTypeObject "PyTypeObject":
        fc_traverseproc tp_traverse
    Py_ssize_t Py_REFCNT(PyObject *o)

cdef fc_traverseproc _coreloop_base_traverse = (<FcTypeObject *>CoreLoop).tp_traverse


cdef inline int _visit_if_owned(PyObject *loop, void *p, fc_visitproc visit, void *arg) noexcept:
    if not _is_fc_handle(p):
        return 0
    if Py_REFCNT(<PyObject *>p) == 1 and <PyObject *>(<Handle>p)._loop == loop:
        return visit(loop, arg)
    return 0


cdef int _coreloop_traverse(PyObject *o, fc_visitproc visit, void *arg) noexcept:
    cdef int r = _coreloop_base_traverse(o, visit, arg)
    cdef size_t i
    cdef int pr
    cdef CoreLoop lp
    if r:
        return r
    lp = <CoreLoop>o
    if lp.core_closed:
        return 0
    for i in range(fc_ring_len(&lp.ready)):
        r = _visit_if_owned(o, fc_ring_at(&lp.ready, i), visit, arg)
        if r:
            return r
    if lp.prio_used:
        for pr in (PRIO_LOW, PRIO_HIGH, PRIO_CRITICAL):
            for i in range(fc_ring_len(&lp.prio_rings[pr])):
                r = _visit_if_owned(o, fc_ring_at(&lp.prio_rings[pr], i), visit, arg)
                if r:
                    return r
    for i in range(lp.timers.len):
        r = _visit_if_owned(o, fc_heap_at(&lp.timers, i), visit, arg)
        if r:
            return r
    return 0


(<FcTypeObject *>CoreLoop).tp_traverse = _coreloop_traverse

include "transport.pxi"
