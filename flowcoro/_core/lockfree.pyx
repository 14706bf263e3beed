# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, freethreading_compatible=True
"""flowcoro._core.lockfree — Python objects over the C lock-free containers.

Theory of operation
-------------------
Each class owns one C container from csrc/lockfree/ (rules and memory
orderings are in the headers) and moves *owned references*: a put takes a
new reference (``Py_INCREF``) before the pointer enters the container and a
get hands that same reference to the caller, so an item is never owned by
two parties and never by none.  ``__dealloc__`` pops what is left and drops
those references, so destroying a non-empty container leaks nothing.

Blocking.  The C containers never block.  A blocking ``get``/``put`` waits on
an event count (csrc/lockfree/park.h): it registers, re-tries, and only then
sleeps on a futex, with the GIL released for the whole wait (a short spin
first).  Every successful put notifies the "not empty" event count and every
get the "not full" one; a notify costs one fence and one load while nobody
waits.

Coroutines.  ``aget``/``aput`` register an asyncio future in a small
lock-protected list *and* bump the event count's ``async_waiters``; a
notifier that sees ``async_waiters > 0`` (after its fence) pops one future and
wakes it on its own loop — directly when the notifier runs on that loop's
thread, else with ``loop.call_soon_threadsafe``.  With no coroutine waiting
the notify path never touches Python objects.  A woken coroutine re-tries;
one that leaves without consuming its wake-up (cancelled, or it found an item
before it slept) passes the wake-up on, as asyncio.Queue does.

Rules
-----
* Items are not GC-tracked through the containers: a reference cycle that
  runs through a queue's contents is collected only once it is drained.
* ``RingBuffer`` and ``ByteRingBuffer`` are single-producer single-consumer:
  each end has a busy flag and a second thread entering an end while it is
  in use gets :class:`~flowcoro.errors.InvalidStateError` instead of a torn
  ring.  Which thread is the producer may change over time.
* ``WorkDeque`` (executor internals): ``push``/``pop`` by the thread that
  created it only; ``steal`` by anyone.
* Free-threaded builds (3.13t+): the module declares
  ``freethreading_compatible``; every container is safe without the GIL (its
  state is the C container plus immutable fields; the coroutine waiter lists
  have their own lock).  A ``PooledBuffer`` must not be exported
  (``memoryview``) and released from two threads at once.
"""

cimport cython
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from cpython.exc cimport PyErr_CheckSignals
from cpython.pythread cimport PyThread_get_thread_ident
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release, PyBuffer_FillInfo,
                             PyBUF_SIMPLE, PyBUF_WRITABLE)
from libc.stdint cimport uint32_t, int64_t, uint64_t
from flowcoro._core._c_lockfree cimport *

import collections
import threading
from asyncio import events as aio_events

from flowcoro.errors import (InvalidArgumentError, InvalidStateError, QueueEmpty, QueueFull,
                             StackEmpty, StackFull)

cdef object aio_get_running_loop = aio_events.get_running_loop
cdef object aio__get_running_loop = aio_events._get_running_loop

#: How long a blocking get/put spins (GIL released) before it sleeps on the
#: futex, in nanoseconds.  20 us covers a put arriving "right now" from a
#: thread that already holds the GIL, and is short enough that an idle waiter
#: costs nothing measurable; a futex wake-up costs 5-50 us on a busy box.
DEFAULT_SPIN_NS = 20000
cdef int64_t SPIN_NS = DEFAULT_SPIN_NS

#: Largest timeout honoured exactly (seconds); longer ones wait forever.
#: 1e9 s keeps timeout * 1e9 inside int64 nanoseconds.
cdef double MAX_TIMEOUT = 1e9

#: ``steal`` retries a lost CAS race this many times before it reports None:
#: a lost race means another thread made progress, so a retry is cheap.
cdef int STEAL_RETRIES = 8


cdef inline object _steal_ref(void *p):
    """The object behind an owned reference taken out of a container."""
    cdef object o = <object>p      # +1
    Py_DECREF(o)                   # back to the reference we own, now in `o`
    return o


cdef int64_t _timeout_ns(object timeout) except -2:
    """None -> -1 (forever); else non-negative seconds -> nanoseconds."""
    cdef double t
    if timeout is None:
        return -1
    try:
        t = float(timeout)
    except (TypeError, ValueError):
        raise InvalidArgumentError("timeout", timeout, "must be a number of seconds or None")
    if not (t >= 0):           # also NaN
        raise InvalidArgumentError("timeout", timeout, "must be a non-negative number")
    if t > MAX_TIMEOUT:
        return -1
    return <int64_t>(t * 1e9)


cdef size_t _check_size(object value, str name, size_t upper) except 0:
    """A positive int <= upper, or InvalidArgumentError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(name, value, "must be an int")
    if value <= 0:
        raise InvalidArgumentError(name, value, "must be > 0")
    if value > upper:
        raise InvalidArgumentError(name, value, f"must be <= {upper}")
    return <size_t>value


def _wake_future(fut):
    """Completes a coroutine waiter's future unless it is already done."""
    if not fut.done():
        fut.set_result(None)


cdef class _AsyncWaiters:
    """Futures of coroutines waiting on one side of a container.

    Invariant: an entry (loop, future) is in ``entries`` from registration
    until a notifier pops it or its owner removes it, never both; the owner
    learns "popped by a notifier" from ``remove`` failing.
    """
    cdef object lock
    cdef object entries

    def __cinit__(self):
        self.lock = threading.Lock()
        self.entries = collections.deque()

    cdef add(self, entry):
        with self.lock:
            self.entries.append(entry)

    cdef bint remove(self, entry):
        """True if the entry was still registered (nobody woke it)."""
        with self.lock:
            try:
                self.entries.remove(entry)
                return True
            except ValueError:
                return False

    cdef wake_one(self):
        """Pops one live waiter and completes its future on its own loop."""
        with self.lock:
            while self.entries:
                loop, fut = self.entries.popleft()
                if not fut.done():
                    break
            else:
                return
        if aio__get_running_loop() is loop:
            _wake_future(fut)
        else:
            try:
                loop.call_soon_threadsafe(_wake_future, fut)
            except RuntimeError:
                pass                # its loop is closed: nobody to wake


@cython.final
cdef class Queue:
    """A bounded multi-producer multi-consumer FIFO queue (Vyukov's design).

    Any number of threads and coroutines may put and get at once.  The
    non-blocking forms never take a lock; the blocking forms sleep with the
    GIL released; the ``async`` forms wait without blocking their loop.

    Examples::

        q = Queue(1024)
        q.put_nowait(item)          # QueueFull if there is no room
        item = q.get(timeout=1.0)   # blocks up to 1 s, GIL released
        await q.aput(item)          # from a coroutine, on any loop
        item = await q.aget()

    Args:
        maxsize: the capacity, an int from 1 to 2**28 (its cells are
            allocated up front, 16 bytes each).  ``queue.Queue``'s "0 means
            unbounded" has no lock-free equivalent here.

    Raises:
        InvalidArgumentError: maxsize is not a positive int.
    """
    cdef fc_mpmc_t q
    cdef fc_park_t not_empty
    cdef fc_park_t not_full
    cdef bint ready
    cdef _AsyncWaiters getters
    cdef _AsyncWaiters putters
    cdef object __weakref__

    def __cinit__(self, maxsize):
        # 2**28 cells = 4 GiB, initialized at once: a typo must not OOM the box.
        cdef size_t cap = _check_size(maxsize, "maxsize", <size_t>1 << 28)
        if fc_mpmc_init(&self.q, cap) != 0:
            raise MemoryError()
        fc_park_init(&self.not_empty)
        fc_park_init(&self.not_full)
        self.getters = _AsyncWaiters()
        self.putters = _AsyncWaiters()
        self.ready = True

    def __dealloc__(self):
        cdef void *p
        if not self.ready:
            return
        while fc_mpmc_pop(&self.q, &p):
            Py_DECREF(<object>p)
        fc_mpmc_destroy(&self.q)
        fc_park_fini(&self.not_empty)
        fc_park_fini(&self.not_full)

    @property
    def maxsize(self):
        """The capacity given at construction."""
        return fc_mpmc_capacity(&self.q)

    def qsize(self):
        """Items in the queue (exact when no put/get is in flight)."""
        return fc_mpmc_size(&self.q)

    def __len__(self):
        return fc_mpmc_size(&self.q)

    def empty(self):
        """True if the queue held no item at the instant it was looked at."""
        return fc_mpmc_size(&self.q) == 0

    def full(self):
        """True if the queue was at maxsize at the instant it was looked at."""
        return fc_mpmc_size(&self.q) >= fc_mpmc_capacity(&self.q)

    cdef inline int _after_push(self) except -1:
        if fc_park_notify(&self.not_empty, 1) != 0:
            self.getters.wake_one()
        return 0

    cdef inline int _after_pop(self) except -1:
        if fc_park_notify(&self.not_full, 1) != 0:
            self.putters.wake_one()
        return 0

    # ---- non-blocking ------------------------------------------------------

    def put_nowait(self, item):
        """Puts an item if there is room, without blocking.

        Args:
            item: any object (the queue holds a reference until it is got).

        Raises:
            QueueFull: the queue was full.
        """
        Py_INCREF(item)
        if not fc_mpmc_push(&self.q, <PyObject *>item):
            Py_DECREF(item)
            raise QueueFull(f"queue full (maxsize={fc_mpmc_capacity(&self.q)})")
        self._after_push()

    def get_nowait(self):
        """Removes and returns the oldest item, without blocking.

        Raises:
            QueueEmpty: the queue was empty.
        """
        cdef void *p
        if not fc_mpmc_pop(&self.q, &p):
            raise QueueEmpty("queue empty")
        self._after_pop()
        return _steal_ref(p)

    def _poll(self, default=None):
        """get_nowait() that returns ``default`` instead of raising (internal
        fast path of the executor: no exception on the empty path)."""
        cdef void *p
        if not fc_mpmc_pop(&self.q, &p):
            return default
        self._after_pop()
        return _steal_ref(p)

    def _offer(self, item):
        """put_nowait() that returns False instead of raising (internal)."""
        Py_INCREF(item)
        if not fc_mpmc_push(&self.q, <PyObject *>item):
            Py_DECREF(item)
            return False
        self._after_push()
        return True

    # ---- blocking (GIL released while waiting) -------------------------------

    def put(self, item, block=True, timeout=None):
        """Puts an item, waiting for room if needed (``queue.Queue.put``).

        Args:
            item: any object.
            block: False makes this put_nowait.
            timeout: seconds to wait at most; None waits as long as it takes.

        Raises:
            QueueFull: no room within the timeout (or at once if not block).
            InvalidArgumentError: timeout is negative or not a number.
        """
        cdef int64_t tns = _timeout_ns(timeout)
        cdef int64_t deadline, remaining
        cdef uint32_t key
        cdef int rc = FC_PARK_WOKEN
        cdef bint ok = False
        cdef PyObject *p = <PyObject *>item
        Py_INCREF(item)
        if fc_mpmc_push(&self.q, p):
            self._after_push()
            return
        if not block:
            Py_DECREF(item)
            raise QueueFull(f"queue full (maxsize={fc_mpmc_capacity(&self.q)})")
        deadline = fc_park_now_ns() + tns if tns >= 0 else -1
        while True:
            with nogil:
                while True:
                    key = fc_park_prepare(&self.not_full)
                    if fc_mpmc_push(&self.q, p):
                        fc_park_done(&self.not_full)
                        ok = True
                        break
                    remaining = -1
                    if deadline >= 0:
                        remaining = deadline - fc_park_now_ns()
                        if remaining <= 0:
                            fc_park_done(&self.not_full)
                            rc = FC_PARK_TIMEOUT
                            break
                    rc = fc_park_wait(&self.not_full, key, remaining, SPIN_NS)
                    fc_park_done(&self.not_full)
                    if rc == FC_PARK_INTR:
                        break
            if ok:
                self._after_push()
                return
            if rc == FC_PARK_INTR:
                try:
                    PyErr_CheckSignals()
                except BaseException:
                    Py_DECREF(item)
                    raise
                continue
            Py_DECREF(item)
            raise QueueFull(f"queue full (maxsize={fc_mpmc_capacity(&self.q)}) after {timeout}s")

    def get(self, block=True, timeout=None):
        """Removes and returns the oldest item, waiting if needed (``queue.Queue.get``).

        Args:
            block: False makes this get_nowait.
            timeout: seconds to wait at most; None waits as long as it takes.

        Raises:
            QueueEmpty: nothing arrived within the timeout (or at once).
            InvalidArgumentError: timeout is negative or not a number.
        """
        cdef int64_t tns = _timeout_ns(timeout)
        cdef int64_t deadline, remaining
        cdef uint32_t key
        cdef int rc = FC_PARK_WOKEN
        cdef bint ok = False
        cdef void *p = NULL
        if fc_mpmc_pop(&self.q, &p):
            self._after_pop()
            return _steal_ref(p)
        if not block:
            raise QueueEmpty("queue empty")
        deadline = fc_park_now_ns() + tns if tns >= 0 else -1
        while True:
            with nogil:
                while True:
                    key = fc_park_prepare(&self.not_empty)
                    if fc_mpmc_pop(&self.q, &p):
                        fc_park_done(&self.not_empty)
                        ok = True
                        break
                    remaining = -1
                    if deadline >= 0:
                        remaining = deadline - fc_park_now_ns()
                        if remaining <= 0:
                            fc_park_done(&self.not_empty)
                            rc = FC_PARK_TIMEOUT
                            break
                    rc = fc_park_wait(&self.not_empty, key, remaining, SPIN_NS)
                    fc_park_done(&self.not_empty)
                    if rc == FC_PARK_INTR:
                        break
            if ok:
                self._after_pop()
                return _steal_ref(p)
            if rc == FC_PARK_INTR:
                PyErr_CheckSignals()
                continue
            raise QueueEmpty(f"queue empty after {timeout}s")

    # ---- coroutines ------------------------------------------------------------

    async def aput(self, item):
        """Puts an item, awaiting room if needed; never blocks the loop.

        Works on any asyncio-compatible loop (FlowCoro's or the stdlib's); the
        getter that frees room may be a thread or a coroutine on another loop.

        Args:
            item: any object.
        """
        cdef PyObject *p = <PyObject *>item
        Py_INCREF(item)
        if fc_mpmc_push(&self.q, p):
            self._after_push()
            return
        loop = aio_get_running_loop()
        try:
            while True:
                fut = loop.create_future()
                entry = (loop, fut)
                self.putters.add(entry)
                fc_park_async_add(&self.not_full)
                try:
                    if fc_mpmc_push(&self.q, p):
                        p = NULL
                    else:
                        await fut
                        if fc_mpmc_push(&self.q, p):
                            p = NULL
                finally:
                    fc_park_async_done(&self.not_full)
                    if not self.putters.remove(entry) and \
                            fc_mpmc_size(&self.q) < fc_mpmc_capacity(&self.q):
                        self.putters.wake_one()     # pass on a wake-up we did not use
                if p == NULL:
                    self._after_push()
                    return
        finally:
            if p != NULL:
                Py_DECREF(item)     # cancelled: the item never went in

    async def aget(self):
        """Removes and returns the oldest item, awaiting one if needed.

        Works on any asyncio-compatible loop; the putter may be a thread or a
        coroutine on another loop.
        """
        cdef void *p = NULL
        if fc_mpmc_pop(&self.q, &p):
            self._after_pop()
            return _steal_ref(p)
        loop = aio_get_running_loop()
        while True:
            fut = loop.create_future()
            entry = (loop, fut)
            self.getters.add(entry)
            fc_park_async_add(&self.not_empty)
            try:
                if not fc_mpmc_pop(&self.q, &p):
                    p = NULL
                    await fut
                    if not fc_mpmc_pop(&self.q, &p):
                        p = NULL
            finally:
                fc_park_async_done(&self.not_empty)
                if not self.getters.remove(entry) and fc_mpmc_size(&self.q) > 0:
                    self.getters.wake_one()         # pass on a wake-up we did not use
            if p != NULL:
                self._after_pop()
                return _steal_ref(p)

    def __repr__(self):
        return f"<flowcoro.lockfree.Queue maxsize={fc_mpmc_capacity(&self.q)} qsize={fc_mpmc_size(&self.q)}>"


@cython.final
cdef class RingBuffer:
    """A bounded single-producer single-consumer FIFO of objects.

    Cheaper than :class:`Queue` (no CAS at all: one release store per op)
    when exactly one thread puts and one thread gets — e.g. a worker thread
    streaming results to the loop's thread.  A second thread entering an end
    that is in use gets InvalidStateError; the ends may change hands over time.

    Examples::

        ring = RingBuffer(256)
        ring.put_nowait(obj)        # producer thread
        obj = ring.get(timeout=1)   # consumer thread (GIL released while waiting)

    Args:
        capacity: the most items it holds, an int from 1 to 2**28.

    Raises:
        InvalidArgumentError: capacity is not a positive int.
    """
    cdef fc_spsc_t r
    cdef fc_park_t not_empty
    cdef fc_park_t not_full
    cdef size_t cap
    cdef bint ready
    cdef object __weakref__

    def __cinit__(self, capacity):
        self.cap = _check_size(capacity, "capacity", <size_t>1 << 28)
        if fc_spsc_init(&self.r, self.cap) != 0:
            raise MemoryError()
        fc_park_init(&self.not_empty)
        fc_park_init(&self.not_full)
        self.ready = True

    def __dealloc__(self):
        cdef void *p
        if not self.ready:
            return
        while fc_spsc_pop(&self.r, &p):
            Py_DECREF(<object>p)
        fc_spsc_destroy(&self.r)
        fc_park_fini(&self.not_empty)
        fc_park_fini(&self.not_full)

    @property
    def capacity(self):
        """The bound given at construction."""
        return self.cap

    def __len__(self):
        return fc_spsc_size(&self.r)

    cdef inline int _enter(self, bint producer) except -1:
        if producer:
            if not fc_guard_enter(&self.r.pguard):
                raise InvalidStateError("RingBuffer: another thread is putting (one producer at a time)")
        elif not fc_guard_enter(&self.r.cguard):
            raise InvalidStateError("RingBuffer: another thread is getting (one consumer at a time)")
        return 0

    def put_nowait(self, item):
        """Puts an item if there is room (producer end).

        Raises:
            QueueFull: the ring was full.
            InvalidStateError: another thread is putting at this moment.
        """
        cdef bint ok
        self._enter(True)
        Py_INCREF(item)
        ok = fc_spsc_push(&self.r, <PyObject *>item)
        fc_guard_leave(&self.r.pguard)
        if not ok:
            Py_DECREF(item)
            raise QueueFull(f"ring full (capacity={self.cap})")
        fc_park_notify(&self.not_empty, 1)

    def get_nowait(self):
        """Removes and returns the oldest item (consumer end).

        Raises:
            QueueEmpty: the ring was empty.
            InvalidStateError: another thread is getting at this moment.
        """
        cdef void *p
        cdef bint ok
        self._enter(False)
        ok = fc_spsc_pop(&self.r, &p)
        fc_guard_leave(&self.r.cguard)
        if not ok:
            raise QueueEmpty("ring empty")
        fc_park_notify(&self.not_full, 1)
        return _steal_ref(p)

    def put(self, item, block=True, timeout=None):
        """Puts an item, waiting (GIL released) for room if needed.

        Args:
            item: any object.
            block: False makes this put_nowait.
            timeout: seconds to wait at most; None waits as long as it takes.

        Raises:
            QueueFull: no room within the timeout.
            InvalidStateError: another thread is putting at this moment.
            InvalidArgumentError: bad timeout.
        """
        cdef int64_t tns = _timeout_ns(timeout)
        cdef int64_t deadline, remaining
        cdef uint32_t key
        cdef int rc = FC_PARK_WOKEN
        cdef bint ok = False
        cdef PyObject *p = <PyObject *>item
        self._enter(True)
        Py_INCREF(item)
        try:
            deadline = fc_park_now_ns() + tns if tns >= 0 else -1
            ok = fc_spsc_push(&self.r, p)
            while not ok and block:
                with nogil:
                    while True:
                        key = fc_park_prepare(&self.not_full)
                        if fc_spsc_push(&self.r, p):
                            fc_park_done(&self.not_full)
                            ok = True
                            break
                        remaining = -1
                        if deadline >= 0:
                            remaining = deadline - fc_park_now_ns()
                            if remaining <= 0:
                                fc_park_done(&self.not_full)
                                rc = FC_PARK_TIMEOUT
                                break
                        rc = fc_park_wait(&self.not_full, key, remaining, SPIN_NS)
                        fc_park_done(&self.not_full)
                        if rc == FC_PARK_INTR:
                            break
                if rc == FC_PARK_INTR:
                    PyErr_CheckSignals()
                    rc = FC_PARK_WOKEN
                    continue
                break
        except BaseException:
            Py_DECREF(item)
            raise
        finally:
            fc_guard_leave(&self.r.pguard)
        if not ok:
            Py_DECREF(item)
            raise QueueFull(f"ring full (capacity={self.cap})")
        fc_park_notify(&self.not_empty, 1)

    def get(self, block=True, timeout=None):
        """Removes and returns the oldest item, waiting (GIL released) if needed.

        Args:
            block: False makes this get_nowait.
            timeout: seconds to wait at most; None waits as long as it takes.

        Raises:
            QueueEmpty: nothing arrived within the timeout.
            InvalidStateError: another thread is getting at this moment.
            InvalidArgumentError: bad timeout.
        """
        cdef int64_t tns = _timeout_ns(timeout)
        cdef int64_t deadline, remaining
        cdef uint32_t key
        cdef int rc = FC_PARK_WOKEN
        cdef bint ok = False
        cdef void *p = NULL
        self._enter(False)
        try:
            deadline = fc_park_now_ns() + tns if tns >= 0 else -1
            ok = fc_spsc_pop(&self.r, &p)
            while not ok and block:
                with nogil:
                    while True:
                        key = fc_park_prepare(&self.not_empty)
                        if fc_spsc_pop(&self.r, &p):
                            fc_park_done(&self.not_empty)
                            ok = True
                            break
                        remaining = -1
                        if deadline >= 0:
                            remaining = deadline - fc_park_now_ns()
                            if remaining <= 0:
                                fc_park_done(&self.not_empty)
                                rc = FC_PARK_TIMEOUT
                                break
                        rc = fc_park_wait(&self.not_empty, key, remaining, SPIN_NS)
                        fc_park_done(&self.not_empty)
                        if rc == FC_PARK_INTR:
                            break
                if rc == FC_PARK_INTR:
                    PyErr_CheckSignals()
                    rc = FC_PARK_WOKEN
                    continue
                break
        finally:
            fc_guard_leave(&self.r.cguard)
        if not ok:
            raise QueueEmpty("ring empty")
        fc_park_notify(&self.not_full, 1)
        return _steal_ref(p)

    def __repr__(self):
        return f"<flowcoro.lockfree.RingBuffer capacity={self.cap} len={fc_spsc_size(&self.r)}>"


@cython.final
cdef class ByteRingBuffer:
    """A bounded single-producer single-consumer byte stream (a pipe in memory).

    ``write`` copies in as much as fits and says how much; ``read`` copies out
    what is there.  Both never block and never allocate (``read`` allocates
    only the bytes object it returns; ``readinto`` not even that).

    Examples::

        ring = ByteRingBuffer(1 << 16)
        n = ring.write(b"hello")        # producer: 5 (or fewer when nearly full)
        data = ring.read()              # consumer: b"hello"
        n = ring.readinto(bytearray(4)) # consumer: up to 4 bytes

    Args:
        capacity: bytes it holds at most, an int >= 1.

    Raises:
        InvalidArgumentError: capacity is not a positive int.
    """
    cdef fc_bring_t r
    cdef size_t cap
    cdef bint ready

    def __cinit__(self, capacity):
        self.cap = _check_size(capacity, "capacity", <size_t>1 << 40)
        if fc_bring_init(&self.r, self.cap) != 0:
            raise MemoryError()
        self.ready = True

    def __dealloc__(self):
        if self.ready:
            fc_bring_destroy(&self.r)

    @property
    def capacity(self):
        """The bound given at construction, in bytes."""
        return self.cap

    def __len__(self):
        return fc_bring_size(&self.r)

    def write(self, data):
        """Copies bytes in (producer end); returns how many fit (0 when full).

        Args:
            data: any bytes-like object.

        Raises:
            InvalidStateError: another thread is writing at this moment.
        """
        cdef Py_buffer view
        cdef size_t n
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            if not fc_guard_enter(&self.r.pguard):
                raise InvalidStateError("ByteRingBuffer: another thread is writing")
            n = fc_bring_write(&self.r, view.buf, <size_t>view.len)
            fc_guard_leave(&self.r.pguard)
        finally:
            PyBuffer_Release(&view)
        return n

    def read(self, n=-1):
        """Copies out and returns up to n bytes (all there are if n < 0).

        Returns b"" when empty.

        Raises:
            InvalidStateError: another thread is reading at this moment.
        """
        cdef size_t want, got
        cdef object out
        if not fc_guard_enter(&self.r.cguard):
            raise InvalidStateError("ByteRingBuffer: another thread is reading")
        try:
            want = fc_bring_size(&self.r)       # only grows until we read
            if n >= 0 and <size_t>n < want:
                want = <size_t>n
            out = PyBytes_FromStringAndSize(NULL, want)
            got = fc_bring_read(&self.r, PyBytes_AS_STRING(out), want)
        finally:
            fc_guard_leave(&self.r.cguard)
        return out

    def readinto(self, buffer):
        """Copies bytes out into a writable buffer; returns how many.

        Raises:
            InvalidStateError: another thread is reading at this moment.
        """
        cdef Py_buffer view
        cdef size_t got
        PyObject_GetBuffer(buffer, &view, PyBUF_WRITABLE)
        try:
            if not fc_guard_enter(&self.r.cguard):
                raise InvalidStateError("ByteRingBuffer: another thread is reading")
            got = fc_bring_read(&self.r, view.buf, <size_t>view.len)
            fc_guard_leave(&self.r.cguard)
        finally:
            PyBuffer_Release(&view)
        return got


@cython.final
cdef class Stack:
    """A lock-free LIFO stack (Treiber, ABA-safe by tagged indices).

    Examples::

        s = Stack()             # up to 2**32 - 2 items
        s.push(x)
        x = s.pop()             # StackEmpty (an IndexError) when empty

    Args:
        maxsize: the most items it holds (None: 2**32 - 2).

    Raises:
        InvalidArgumentError: maxsize is not a positive int (or too large).
    """
    cdef fc_stack_t s
    cdef size_t maxsz
    cdef bint ready
    cdef object __weakref__

    def __cinit__(self, maxsize=None):
        if maxsize is None:
            self.maxsz = FC_STACK_MAX
        else:
            self.maxsz = _check_size(maxsize, "maxsize", FC_STACK_MAX)
        if fc_stack_init(&self.s, self.maxsz) != 0:
            raise MemoryError()
        self.ready = True

    def __dealloc__(self):
        cdef void *p
        if not self.ready:
            return
        while fc_stack_pop(&self.s, &p):
            Py_DECREF(<object>p)
        fc_stack_destroy(&self.s)

    @property
    def maxsize(self):
        """The bound given at construction (2**32 - 2 when None was given)."""
        return self.maxsz

    def __len__(self):
        return fc_stack_size(&self.s)

    def push(self, item):
        """Pushes an item on top.

        Raises:
            StackFull: the stack holds maxsize items.
        """
        cdef int rc
        Py_INCREF(item)
        rc = fc_stack_push(&self.s, <PyObject *>item)
        if rc != 0:
            Py_DECREF(item)
            if rc == FC_STACK_FULL:
                raise StackFull(f"stack full (maxsize={self.maxsz})")
            raise MemoryError()

    def pop(self):
        """Removes and returns the top item.

        Raises:
            StackEmpty: the stack was empty.
        """
        cdef void *p
        if not fc_stack_pop(&self.s, &p):
            raise StackEmpty("pop from an empty stack")
        return _steal_ref(p)

    def _poll(self, default=None):
        """pop() that returns ``default`` instead of raising (internal)."""
        cdef void *p
        if not fc_stack_pop(&self.s, &p):
            return default
        return _steal_ref(p)

    def _offer(self, item):
        """push() that returns False instead of raising when full (internal)."""
        cdef int rc
        Py_INCREF(item)
        rc = fc_stack_push(&self.s, <PyObject *>item)
        if rc != 0:
            Py_DECREF(item)
            if rc != FC_STACK_FULL:
                raise MemoryError()
            return False
        return True

    def __repr__(self):
        return f"<flowcoro.lockfree.Stack len={fc_stack_size(&self.s)}>"


@cython.final
cdef class WorkDeque:
    """A Chase-Lev work-stealing deque (executor internals).

    The thread that creates it owns it: only that thread may ``push`` and
    ``pop`` (newest first); any thread may ``steal`` (oldest first).
    ``None`` cannot be stored: ``pop``/``steal`` return None for "nothing".

    Raises:
        InvalidStateError: push/pop from a thread other than the owner.
    """
    cdef fc_deque_t q
    cdef unsigned long owner_ident
    cdef bint ready

    def __cinit__(self, capacity=64):
        cdef size_t cap = _check_size(capacity, "capacity", <size_t>1 << 40)
        if fc_deque_init(&self.q, cap) != 0:
            raise MemoryError()
        self.owner_ident = PyThread_get_thread_ident()
        self.ready = True

    def __dealloc__(self):
        cdef void *p
        if not self.ready:
            return
        while fc_deque_steal(&self.q, &p) != FC_DEQUE_EMPTY:
            if p != NULL:
                Py_DECREF(<object>p)
                p = NULL
        fc_deque_destroy(&self.q)

    def __len__(self):
        return fc_deque_size(&self.q)

    @property
    def owner(self):
        """Thread identifier (threading.get_ident()) of the owner."""
        return self.owner_ident

    def push(self, item):
        """Pushes at the owner's end (owner thread only)."""
        if PyThread_get_thread_ident() != self.owner_ident:
            raise InvalidStateError("WorkDeque.push from a thread that does not own the deque")
        if item is None:
            raise InvalidArgumentError("item", item, "None cannot be stored in a WorkDeque")
        Py_INCREF(item)
        if fc_deque_push(&self.q, <PyObject *>item) != 0:
            Py_DECREF(item)
            raise MemoryError()

    def pop(self):
        """Takes the newest item (owner thread only); None when empty."""
        cdef void *p
        if PyThread_get_thread_ident() != self.owner_ident:
            raise InvalidStateError("WorkDeque.pop from a thread that does not own the deque")
        if fc_deque_take(&self.q, &p) != 0:
            return None
        return _steal_ref(p)

    def steal(self):
        """Takes the oldest item (any thread); None when empty."""
        cdef void *p
        cdef int rc, i
        for i in range(STEAL_RETRIES):
            rc = fc_deque_steal(&self.q, &p)
            if rc == 0:
                return _steal_ref(p)
            if rc == FC_DEQUE_EMPTY:
                return None
        return None


@cython.final
cdef class EventCount:
    """Lets threads sleep until notified, without a lock on the notify path.

    The waiting protocol (a condition variable without its mutex)::

        key = ec.prepare()
        if <there is work>:      # re-check AFTER prepare
            ec.cancel()
        else:
            ec.wait(key)         # returns at once if notified since prepare

    ``notify`` after making work available never loses a waiter that follows
    this protocol (csrc/lockfree/park.h has the argument).
    """
    cdef fc_park_t p

    def __cinit__(self):
        fc_park_init(&self.p)

    def __dealloc__(self):
        fc_park_fini(&self.p)

    def prepare(self):
        """Registers the calling thread as a waiter; returns the key for wait()."""
        return fc_park_prepare(&self.p)

    def cancel(self):
        """Unregisters after prepare() without waiting."""
        fc_park_done(&self.p)

    def wait(self, uint32_t key, timeout=None, double spin=0.0):
        """Sleeps (GIL released) until a notify since prepare(), or timeout.

        Unregisters on return, like cancel().

        Args:
            key: what prepare() returned.
            timeout: seconds at most; None: no limit.
            spin: seconds to spin before sleeping (GIL released).

        Returns:
            False on timeout, else True (maybe spurious: re-check).
        """
        cdef int64_t tns = _timeout_ns(timeout)
        cdef int64_t sns = <int64_t>(spin * 1e9) if spin > 0 else 0
        cdef int rc
        with nogil:
            rc = fc_park_wait(&self.p, key, tns, sns)
            fc_park_done(&self.p)
        if rc == FC_PARK_INTR:
            PyErr_CheckSignals()
        return rc != FC_PARK_TIMEOUT

    def notify(self, int n=1):
        """Wakes up to n waiters (if any prepared; cheap otherwise)."""
        fc_park_notify(&self.p, n)

    def notify_all(self):
        """Wakes every waiter."""
        fc_park_notify(&self.p, -1)


@cython.final
cdef class PooledBuffer:
    """A writable buffer lent by a :class:`BufferPool`.

    Supports the buffer protocol (``memoryview(buf)``, ``sock.recv_into(buf)``,
    ``bytes(buf)``); ``len()`` is the size asked for, ``capacity`` what the
    size class gives.  ``release()`` (or leaving a ``with`` block, or garbage
    collection) gives it back; using it afterwards raises ValueError.
    """
    cdef void *buf
    cdef Py_ssize_t size
    cdef Py_ssize_t exports

    def __dealloc__(self):
        if self.buf != NULL:
            fc_bufpool_release(self.buf)
            self.buf = NULL

    def __len__(self):
        return self.size if self.buf != NULL else 0

    @property
    def capacity(self):
        """Bytes usable (the size class), 0 once released."""
        return fc_bufpool_capacity(self.buf) if self.buf != NULL else 0

    @property
    def released(self):
        """True once given back."""
        return self.buf == NULL

    def release(self):
        """Gives the buffer back to its pool (idempotent).

        Raises:
            BufferError: a memoryview of it is still alive.
        """
        if self.buf == NULL:
            return
        if self.exports > 0:
            raise BufferError("PooledBuffer.release(): a memoryview of it is still alive")
        fc_bufpool_release(self.buf)
        self.buf = NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __getbuffer__(self, Py_buffer *view, int flags):
        if self.buf == NULL:
            raise ValueError("PooledBuffer was released")
        PyBuffer_FillInfo(view, self, self.buf, self.size, 0, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *view):
        self.exports -= 1


@cython.final
cdef class BufferPool:
    """Byte buffers by power-of-two size class (256 B .. 1 MiB), recycled.

    Thread-safe and lock-free (csrc/pool/bufpool.h).  In steady state a read
    loop that acquires and releases same-sized buffers calls malloc never.

    Examples::

        pool = BufferPool()
        with pool.acquire(65536) as buf:
            n = sock.recv_into(buf)
            handle(memoryview(buf)[:n])

    Args:
        max_cached_bytes: free bytes kept per size class (0: 4 MiB).

    Raises:
        InvalidArgumentError: max_cached_bytes is negative or not an int.
    """
    cdef fc_bufpool_t *p

    def __cinit__(self, max_cached_bytes=0):
        if isinstance(max_cached_bytes, bool) or not isinstance(max_cached_bytes, int) \
                or max_cached_bytes < 0:
            raise InvalidArgumentError("max_cached_bytes", max_cached_bytes,
                                       "must be an int >= 0")
        if fc_bufpool_create(&self.p, <size_t>max_cached_bytes) != 0:
            raise MemoryError()

    def __dealloc__(self):
        if self.p != NULL:
            fc_bufpool_destroy(self.p)     # lent buffers keep the C pool alive
            self.p = NULL

    def acquire(self, size):
        """Lends a buffer of at least ``size`` bytes (``len()`` == size).

        Raises:
            InvalidArgumentError: size is negative or not an int.
        """
        cdef PooledBuffer b
        cdef size_t n
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidArgumentError("size", size, "must be an int >= 0")
        n = <size_t>size
        b = PooledBuffer.__new__(PooledBuffer)
        b.buf = fc_bufpool_acquire(self.p, n, NULL)
        if b.buf == NULL:
            raise MemoryError()
        b.size = <Py_ssize_t>n
        return b

    def stats(self):
        """Counters: hits, misses (malloc calls), frees, outstanding, cached, cached_bytes."""
        cdef fc_bufpool_stats_t st
        fc_bufpool_stats(self.p, &st)
        return {"hits": st.hits, "misses": st.misses, "frees": st.frees,
                "outstanding": st.outstanding, "cached": st.cached,
                "cached_bytes": st.cached_bytes}
