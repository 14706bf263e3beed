# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""flowcoro._core.stream — the fast stream protocol behind :mod:`flowcoro.net`.

Rules
-----
* Only the public asyncio Protocol/Transport API is used, so a
  :class:`StreamProtocol` runs on flowcoro's C transport, on the stdlib's
  selector transport and on uvloop alike.
* One reader at a time: a second concurrent read raises InvalidStateError
  (as asyncio's StreamReader raises RuntimeError).
* Every call that finds its answer in the buffer returns without creating a
  future; a future is made only when the coroutine really has to wait.
* Errors are typed (flowcoro.errors); OS failures keep their OSError
  subclass (ConnectionResetError, ...), as asyncio hands them over.

Theory of operation
-------------------
``StreamProtocol`` receives ``data_received(bytes)`` and appends it to a C
receive buffer ``_buf[_start:_end]`` (grown by doubling, compacted by
memmove when the tail is reached; reset to offset 0 whenever it empties, so
a request/response exchange never moves bytes).  A reading coroutine that
cannot be served from the buffer arms the single waiter future with what
it needs (``_want`` bytes in the buffer) and sleeps; ``data_received`` wakes
it only when that is met, so a ``read_exactly(1 MiB)`` sleeps through the
many chunks that make it up.

The hand-off fast path: a plain ``read()`` waiting on an empty buffer is
given the received ``bytes`` object itself as the future's result — no copy
into the C buffer and out again.  If that reader is cancelled before it runs,
the bytes are pushed back to the front of the buffer (``_unread``), so
cancellation never loses data.

Flow control, reading side: when the buffer holds more than ``high_water``
bytes and nobody waits for more, ``transport.pause_reading()`` stops the
kernel reads; they resume once readers drain it to ``high_water // 2``
(hysteresis, so a reader consuming in small pieces does not toggle the
poller on every call) or as soon as a reader needs more than is buffered
(a ``read_exactly`` larger than ``high_water`` must not deadlock).

Flow control, writing side: the transport's pause_writing()/resume_writing()
set ``_write_paused``; ``Stream.drain()`` returns at once unless paused.

Invariants:
* ``0 <= _start <= _end <= _cap``; ``_start == _end`` implies ``_start == 0``
  after any consuming call.
* ``_waiter`` is None or a pending-or-just-resolved future armed by the one
  waiting reader; data_received/eof/connection_lost resolve it and set
  ``_waiter`` to None in the same step (never resolved twice).
* ``_reading_paused`` mirrors the pause_reading()/resume_reading() calls we
  made on the transport.
* once ``_lost`` is set, no more data arrives; ``_eof`` is set too.
"""

cimport cython
from libc.string cimport memcpy, memmove, memchr
from cpython.bytes cimport (PyBytes_FromStringAndSize, PyBytes_AS_STRING,
                            PyBytes_GET_SIZE, PyBytes_CheckExact)
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free

cdef extern from "string.h" nogil:
    # GNU extension; pyconfig.h defines _GNU_SOURCE before string.h is read.
    void *memmem(const void *haystack, size_t hlen, const void *needle, size_t nlen)

import asyncio as _asyncio

from flowcoro.errors import (IncompleteReadError, InvalidArgumentError,
                             InvalidStateError, LimitOverrunError,
                             StreamClosedError)

cdef object aio_get_running_loop = _asyncio.get_running_loop
cdef object aio_InvalidStateError = _asyncio.InvalidStateError

# What drain() returns when it need not wait: awaiting it costs one slot
# call and no allocation (an exhausted iterator stays exhausted, so one
# shared instance serves every await), where a coroutine would cost two
# objects.
cdef object _EXHAUSTED = iter(())


@cython.final
cdef class _Ready:
    """An awaitable that completes at once with None (see drain())."""

    def __await__(self):
        return _EXHAUSTED


cdef _Ready _READY = _Ready()

# readline()/read_until() refuse lines longer than this by default: asyncio's
# StreamReader default (_DEFAULT_LIMIT), so code ported from it behaves alike.
DEFAULT_LIMIT = 65536
# Reading pauses when this much is buffered and unread: the size of one
# recv(2) into the loop's shared read buffer (asyncio's max_size, flowcoro's
# READ_BUF_SIZE), so one full read always fits before we push back.
DEFAULT_HIGH_WATER = 262144

# First allocation of the receive buffer: large enough for a typical
# request, small enough that 10k idle connections cost little.
DEF MIN_CAPACITY = 16384
# An emptied buffer larger than this is released rather than kept, so one
# big read_exactly() does not pin megabytes for the connection's lifetime.
DEF KEEP_CAPACITY = 1048576
# _handoff value for waiters that do not take a bytes object (read_exactly,
# read_until); >= 0 is the largest hand-off accepted, -1 is any size.
DEF NO_HANDOFF = -2


cdef class StreamProtocol:
    """asyncio protocol with a C receive buffer; the engine of :class:`Stream`.

    Created by :class:`flowcoro.net.TcpClient` and :class:`flowcoro.net.TcpServer`;
    use it directly only to plug flowcoro streams into ``loop.create_connection``
    or ``loop.create_server`` yourself::

        transport, proto = await loop.create_connection(StreamProtocol, host, port)
        stream = Stream(proto)

    Args:
        loop: the loop it runs on; default the running loop.
        limit: longest line readline()/read_until() accept, in bytes.
        high_water: unread bytes above which reading is paused.
        on_connect: called with the protocol from connection_made().

    Raises:
        InvalidArgumentError: ``limit`` < 1 or ``high_water`` < 1.
    """

    cdef object _loop
    cdef object _create_future    # _loop.create_future, bound once
    cdef object _transport
    cdef object _on_connect
    # Receive buffer: unread bytes are _buf[_start:_end]; _cap is allocated.
    cdef char *_buf
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _start
    cdef Py_ssize_t _end
    cdef Py_ssize_t _limit
    cdef Py_ssize_t _high
    cdef Py_ssize_t _low
    cdef bint _reading_paused
    cdef bint _eof            # no more data will arrive
    cdef bint _lost           # connection_lost() ran
    cdef bint _closing        # Stream.close()/abort() was called
    cdef object _exc          # connection_lost's exception, or None
    # The one reader's future (see Invariants), what it waits for, and the
    # largest bytes object it accepts as a hand-off (NO_HANDOFF: none).
    cdef object _waiter
    cdef Py_ssize_t _want
    cdef Py_ssize_t _handoff
    cdef bint _write_paused
    cdef list _drain_waiters
    cdef list _close_waiters
    cdef unsigned long _read_pauses
    cdef unsigned long _write_pauses

    def __cinit__(self):
        self._buf = NULL
        self._handoff = NO_HANDOFF
        self._drain_waiters = []
        self._close_waiters = []

    def __init__(self, loop=None, *, limit=DEFAULT_LIMIT, high_water=DEFAULT_HIGH_WATER,
                 on_connect=None):
        if limit is None or limit < 1:
            raise InvalidArgumentError("limit", limit, "must be a positive number of bytes")
        if high_water is None or high_water < 1:
            raise InvalidArgumentError("high_water", high_water, "must be a positive number of bytes")
        self._loop = aio_get_running_loop() if loop is None else loop
        self._create_future = self._loop.create_future
        self._limit = limit
        self._high = high_water
        self._low = high_water // 2
        self._on_connect = on_connect

    def __dealloc__(self):
        if self._buf != NULL:
            PyMem_Free(self._buf)
            self._buf = NULL

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport):
        """Store the transport; run the ``on_connect`` hook (asyncio calls this)."""
        self._transport = transport
        cb = self._on_connect
        if cb is not None:
            self._on_connect = None
            cb(self)

    def data_received(self, data):
        """Buffer ``data`` and wake the reader if it now has what it waits for."""
        cdef Py_buffer view
        cdef Py_ssize_t n, size
        cdef object w = self._waiter
        if PyBytes_CheckExact(data):
            n = PyBytes_GET_SIZE(data)
            if n == 0:
                return
            if (w is not None and self._start == self._end and self._handoff != NO_HANDOFF
                    and (self._handoff < 0 or n <= self._handoff)):
                # Hand-off: read() gets this very object (see module doc).
                self._waiter = None
                if _resolve(w, data):
                    return
                w = None       # its reader was cancelled and has not run yet
            self._append(PyBytes_AS_STRING(data), n)
        else:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            try:
                if view.len == 0:
                    return
                self._append(<char *>view.buf, view.len)
            finally:
                PyBuffer_Release(&view)
        size = self._end - self._start
        if w is not None:
            if size < self._want:
                return         # the reader needs more: keep reading, do not pause
            self._waiter = None
            _resolve(w, None)
        if size > self._high and not self._reading_paused and not self._lost:
            self._reading_paused = True
            self._read_pauses += 1
            self._transport.pause_reading()

    def eof_received(self):
        """Note the peer's EOF; keep the transport open so we can still write."""
        self._eof = True
        self._wake_reader()
        return True

    def connection_lost(self, exc):
        """Record ``exc`` (None for a clean close) and wake every waiter."""
        self._lost = True
        self._eof = True
        self._exc = exc
        self._write_paused = False
        self._wake_reader()
        _wake_all(self._drain_waiters)
        _wake_all(self._close_waiters)

    def pause_writing(self):
        """The transport's write buffer is over its high-water mark: drain() blocks."""
        self._write_paused = True
        self._write_pauses += 1

    def resume_writing(self):
        """The transport's write buffer drained: release drain() waiters."""
        self._write_paused = False
        _wake_all(self._drain_waiters)

    # -- buffer ---------------------------------------------------------------

    cdef int _append(self, const char *src, Py_ssize_t n) except -1:
        cdef Py_ssize_t size = self._end - self._start
        cdef Py_ssize_t cap
        cdef char *nb
        if self._end + n > self._cap:
            if self._start:
                # Compact first: the unread bytes move to offset 0.
                memmove(self._buf, self._buf + self._start, <size_t>size)
                self._start = 0
                self._end = size
            if size + n > self._cap:
                cap = self._cap * 2 if self._cap else MIN_CAPACITY
                while cap < size + n:
                    cap *= 2
                nb = <char *>PyMem_Realloc(self._buf, <size_t>cap)
                if nb == NULL:
                    raise MemoryError()
                self._buf = nb
                self._cap = cap
        memcpy(self._buf + self._end, src, <size_t>n)
        self._end += n
        return 0

    cdef bytes _take(self, Py_ssize_t n):
        """Remove and return the first ``n`` buffered bytes (n <= buffered)."""
        cdef bytes out = PyBytes_FromStringAndSize(self._buf + self._start, n)
        self._start += n
        if self._start == self._end:
            self._start = 0
            self._end = 0
            if self._cap > KEEP_CAPACITY:
                PyMem_Free(self._buf)
                self._buf = NULL
                self._cap = 0
        if self._reading_paused and self._end - self._start <= self._low:
            self._resume()
        return out

    cdef int _unread(self, bytes data) except -1:
        """Put ``data`` back in front of the buffer (a cancelled hand-off)."""
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef Py_ssize_t size = self._end - self._start
        if n <= self._start:
            self._start -= n
            memcpy(self._buf + self._start, PyBytes_AS_STRING(data), <size_t>n)
            return 0
        self._append(PyBytes_AS_STRING(data), n)     # makes room for n more
        memmove(self._buf + self._start + n, self._buf + self._start, <size_t>size)
        memcpy(self._buf + self._start, PyBytes_AS_STRING(data), <size_t>n)
        return 0

    cdef _resume(self):
        self._reading_paused = False
        if not self._lost:
            self._transport.resume_reading()

    # -- waiting --------------------------------------------------------------

    cdef object _arm(self, Py_ssize_t want, Py_ssize_t handoff):
        """Create the reader's future: wake when ``want`` bytes are buffered."""
        if self._waiter is not None:
            raise InvalidStateError("another task is already waiting to read from this stream")
        fut = self._create_future()
        self._waiter = fut
        self._want = want
        self._handoff = handoff
        if self._reading_paused:
            self._resume()      # the reader needs more than is buffered
        return fut

    cdef _disarm(self, fut):
        """The reader stopped waiting early (cancelled): undo _arm."""
        if self._waiter is fut:
            self._waiter = None
        elif fut.done() and not fut.cancelled():
            r = fut.result()
            if r is not None:
                self._unread(<bytes>r)

    cdef _wake_reader(self):
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    cdef int _check_readable(self) except -1:
        if self._closing:
            raise StreamClosedError("read from a stream that was closed")
        return 0

    cdef object _lost_error(self):
        if self._exc is not None:
            return self._exc
        return ConnectionResetError("connection lost")

    @property
    def buffered(self):
        """Number of received bytes not yet read."""
        return self._end - self._start

    @property
    def transport(self):
        """The transport given to connection_made(), or None before it."""
        return self._transport

    @property
    def high_water(self):
        """Unread bytes above which reading is paused."""
        return self._high

    @property
    def low_water(self):
        """Unread bytes at or below which paused reading resumes (high_water // 2)."""
        return self._low

    @property
    def read_pauses(self):
        """How many times reading was paused because the buffer was full."""
        return self._read_pauses

    @property
    def write_pauses(self):
        """How many times the transport paused our writing (pause_writing calls)."""
        return self._write_pauses


cdef inline bint _resolve(fut, value) except -1:
    """set_result unless ``fut`` was cancelled meanwhile; True if it was set.

    Cheaper than asking done() first on the hot path: the cancelled case is rare.
    """
    try:
        fut.set_result(value)
    except aio_InvalidStateError:
        return False
    return True


cdef _wake_all(list waiters):
    for w in waiters:
        if not w.done():
            w.set_result(None)
    waiters.clear()


cdef class Stream:
    """A connected byte stream (TCP or Unix socket) with a coroutine API.

    Streams come from :meth:`flowcoro.net.TcpClient.connect`,
    :meth:`flowcoro.net.TcpServer.accept` and the handler that
    :meth:`flowcoro.net.TcpServer.serve` calls.  Usage::

        async with await TcpClient.connect("127.0.0.1", 8000) as conn:
            conn.write(b"PING\\r\\n")
            await conn.drain()
            reply = await conn.readline()
            async for line in conn:          # lines until EOF
                ...

    Reading after :meth:`close` raises StreamClosedError; reading after the
    peer reset the connection raises the transport's error (for example
    ConnectionResetError) once the data received before it is consumed.

    Args:
        protocol: a connected :class:`StreamProtocol`.

    Raises:
        InvalidStateError: the protocol has no transport yet.
    """

    cdef StreamProtocol _p
    cdef object _transport
    cdef object _write
    cdef object __weakref__

    def __init__(self, StreamProtocol protocol not None):
        if protocol._transport is None:
            raise InvalidStateError("the protocol is not connected yet")
        self._p = protocol
        self._transport = protocol._transport
        self._write = self._transport.write

    def __repr__(self):
        p = self._p
        state = "closed" if p._closing else ("lost" if p._lost else ("eof" if p._eof else "open"))
        peer = self._transport.get_extra_info("peername") if self._transport is not None else None
        return f"<{type(self).__name__} {state} peer={peer!r} buffered={p._end - p._start}>"

    # -- properties -----------------------------------------------------------

    @property
    def protocol(self):
        """The :class:`StreamProtocol` underneath."""
        return self._p

    @property
    def transport(self):
        """The asyncio transport underneath."""
        return self._transport

    @property
    def limit(self):
        """Longest line readline()/read_until() accept, in bytes (settable)."""
        return self._p._limit

    @limit.setter
    def limit(self, value):
        if value is None or value < 1:
            raise InvalidArgumentError("limit", value, "must be a positive number of bytes")
        self._p._limit = value

    @property
    def buffered(self):
        """Number of received bytes not yet read."""
        return self._p._end - self._p._start

    def get_extra_info(self, name, default=None):
        """Return transport information: 'peername', 'sockname', 'socket', ...

        Args:
            name: the key, as for ``asyncio.BaseTransport.get_extra_info``.
            default: returned when the key is unknown.
        """
        return self._transport.get_extra_info(name, default)

    def at_eof(self):
        """Return True when the peer sent EOF (or the connection is gone) and every byte was read."""
        return self._p._eof and self._p._start == self._p._end

    def is_closing(self):
        """Return True once close()/abort() was called or the connection was lost."""
        return self._p._closing or self._p._lost

    # -- reading --------------------------------------------------------------

    async def read(self, Py_ssize_t max_bytes=-1):
        """Read at least one byte and at most ``max_bytes``; b'' at EOF.

        Returns what is buffered at once if anything is; otherwise waits for
        the next chunk.  Unlike asyncio's ``StreamReader.read(-1)``, a
        negative ``max_bytes`` means "no upper bound", not "until EOF".

        Args:
            max_bytes: the most bytes to return; negative: no bound; 0: b''.

        Raises:
            StreamClosedError: close() was called on this stream.
            ConnectionError: the connection was lost with that error (after
                the data received before it was read).
            InvalidStateError: another task is already reading.
        """
        cdef StreamProtocol p = self._p
        cdef Py_ssize_t n
        while True:
            p._check_readable()
            n = p._end - p._start
            if n:
                if 0 <= max_bytes < n:
                    n = max_bytes
                return p._take(n)
            if max_bytes == 0:
                return b""
            if p._eof:
                if p._exc is not None:
                    raise p._exc
                return b""
            fut = p._arm(1, max_bytes if max_bytes > 0 else -1)
            try:
                data = await fut
            except BaseException:
                p._disarm(fut)
                raise
            if data is not None:
                return data

    async def read_exactly(self, Py_ssize_t n):
        """Read exactly ``n`` bytes.

        Args:
            n: how many bytes; 0 returns b''.

        Raises:
            IncompleteReadError: EOF came first; ``.partial`` holds the bytes
                that did arrive (they are consumed).
            InvalidArgumentError: ``n`` < 0.
            StreamClosedError, ConnectionError, InvalidStateError: as read().
        """
        cdef StreamProtocol p = self._p
        if n < 0:
            raise InvalidArgumentError("n", n, "must be >= 0")
        while True:
            p._check_readable()
            if p._end - p._start >= n:
                return p._take(n)
            if p._eof:
                if p._exc is not None:
                    raise p._exc
                raise IncompleteReadError(p._take(p._end - p._start), n)
            fut = p._arm(n, NO_HANDOFF)
            try:
                await fut
            except BaseException:
                p._disarm(fut)
                raise

    async def readline(self):
        """Read one line, ending in b'\\n' (included).

        At EOF returns the unterminated rest (b'' when nothing is left).

        Raises:
            LimitOverrunError: no b'\\n' within ``limit`` bytes; the data
                stays buffered (``.consumed`` says how much was scanned).
            StreamClosedError, ConnectionError, InvalidStateError: as read().
        """
        return await self._read_until(b"\n", self._p._limit, True)

    async def read_until(self, separator=b"\n", limit=None):
        """Read up to and including ``separator``.

        Args:
            separator: non-empty bytes that ends the chunk.
            limit: longest chunk (separator included) accepted; default the
                stream's ``limit``.

        Raises:
            IncompleteReadError: EOF before the separator; ``.partial`` holds
                the rest of the stream (consumed), ``.expected`` is None.
            LimitOverrunError: no separator within ``limit`` bytes; the data
                stays buffered.
            InvalidArgumentError: empty or non-bytes separator, limit < 1.
            StreamClosedError, ConnectionError, InvalidStateError: as read().
        """
        if not isinstance(separator, (bytes, bytearray, memoryview)) or not len(separator):
            raise InvalidArgumentError("separator", separator, "must be non-empty bytes")
        if limit is None:
            limit = self._p._limit
        elif limit < 1:
            raise InvalidArgumentError("limit", limit, "must be a positive number of bytes")
        return await self._read_until(bytes(separator), limit, False)

    async def _read_until(self, bytes sep, Py_ssize_t limit, bint eof_ok):
        cdef StreamProtocol p = self._p
        cdef Py_ssize_t seplen = PyBytes_GET_SIZE(sep)
        cdef Py_ssize_t scanned = 0, size, window, frm
        cdef const char *base
        cdef const char *hit
        cdef const char *s = PyBytes_AS_STRING(sep)
        while True:
            p._check_readable()
            size = p._end - p._start
            window = size if size < limit else limit
            # Bytes before `scanned - seplen + 1` were searched already.
            frm = scanned - seplen + 1 if scanned >= seplen else 0
            if window - frm >= seplen:
                base = p._buf + p._start
                if seplen == 1:
                    hit = <const char *>memchr(base + frm, s[0], <size_t>(window - frm))
                else:
                    hit = <const char *>memmem(base + frm, <size_t>(window - frm), s, <size_t>seplen)
                if hit != NULL:
                    return p._take((hit - base) + seplen)
            scanned = window
            if size >= limit:
                raise LimitOverrunError(
                    f"separator {sep!r} not found within the limit of {limit} bytes", size)
            if p._eof:
                if p._exc is not None and size == 0:
                    raise p._exc
                if eof_ok:
                    return p._take(size)
                raise IncompleteReadError(p._take(size), None)
            fut = p._arm(size + 1, NO_HANDOFF)
            try:
                await fut
            except BaseException:
                p._disarm(fut)
                raise

    def __aiter__(self):
        return self

    async def __anext__(self):
        line = await self._read_until(b"\n", self._p._limit, True)
        if not line:
            raise StopAsyncIteration
        return line

    # -- writing --------------------------------------------------------------

    def write(self, data):
        """Queue ``data`` for sending; never blocks (pair it with drain()).

        Args:
            data: bytes, bytearray or memoryview (copied if mutable).

        Raises:
            TypeError: ``data`` is not bytes-like.
            StreamClosedError: close() was called on this stream.
            ConnectionError: the connection was lost.
        """
        cdef StreamProtocol p = self._p
        if p._closing:
            raise StreamClosedError("write to a stream that was closed")
        if p._lost:
            raise p._lost_error()
        if not PyBytes_CheckExact(data) and not isinstance(data, (bytearray, memoryview)):
            raise TypeError(f"data must be bytes, bytearray or memoryview, not {type(data).__name__}")
        self._write(data)

    def writelines(self, lines):
        """Queue every bytes-like item of ``lines``; same errors as write()."""
        for data in lines:
            self.write(data)

    def write_eof(self):
        """Half-close: send EOF after the queued data; reading goes on.

        Raises:
            StreamClosedError: close() was called on this stream.
        """
        if self._p._closing:
            raise StreamClosedError("write_eof on a stream that was closed")
        if not self._p._lost:
            self._transport.write_eof()

    def can_write_eof(self):
        """Return True if write_eof() is supported (TCP and Unix sockets: yes)."""
        return self._transport.can_write_eof()

    def drain(self):
        """Wait until the transport's write buffer is below its high-water mark.

        Use as ``await conn.drain()``.  Unless the transport paused writing,
        the awaitable returned completes at once without allocating (it is
        not a coroutine: wrap it with ``asyncio.ensure_future``, not
        ``create_task``, to run it as a task).

        Raises:
            StreamClosedError: close() was called on this stream.
            ConnectionError: the connection was lost (ConnectionResetError
                when it closed without an error).
        """
        cdef StreamProtocol p = self._p
        if p._closing:
            raise StreamClosedError("drain on a stream that was closed")
        if p._lost:
            raise p._lost_error()
        if not p._write_paused:
            return _READY
        return self._drain_wait()

    async def _drain_wait(self):
        cdef StreamProtocol p = self._p
        while True:
            if p._closing:
                raise StreamClosedError("drain on a stream that was closed")
            if p._lost:
                raise p._lost_error()
            if not p._write_paused:
                return
            fut = p._create_future()
            p._drain_waiters.append(fut)
            try:
                await fut
            finally:
                if fut in p._drain_waiters:
                    p._drain_waiters.remove(fut)

    # -- closing --------------------------------------------------------------

    def close(self):
        """Close the connection after the queued data is sent; idempotent.

        A task blocked in a read gets StreamClosedError.
        """
        self._close(False)

    def abort(self):
        """Close at once, dropping queued data; idempotent."""
        self._close(True)

    cdef _close(self, bint abort):
        cdef StreamProtocol p = self._p
        if p._closing:
            if abort and not p._lost:
                self._transport.abort()
            return
        p._closing = True
        if not p._lost:
            if abort:
                self._transport.abort()
            else:
                self._transport.close()
        p._wake_reader()
        _wake_all(p._drain_waiters)

    async def wait_closed(self):
        """Wait until the connection is gone (call close() first); never raises
        the connection's error."""
        cdef StreamProtocol p = self._p
        if p._lost:
            return
        fut = p._create_future()
        p._close_waiters.append(fut)
        try:
            await fut
        finally:
            if fut in p._close_waiters:
                p._close_waiters.remove(fut)

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        self._close(False)
        await self.wait_closed()
