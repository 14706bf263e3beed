# cython: language_level=3, boundscheck=False, wraparound=False
"""The per-message path of a WebSocket connection, in Cython.

flowcoro.websocket.WebSocketConnection (Python) subclasses
:class:`WebSocketCore`: what runs for every message -- ``data_received``
feeding the framing core, queueing or handing out messages, ``receive`` /
``async for``, ``send`` and ``send_nowait`` -- is here; the handshake
state, closing, pings and flow-control waits stay in the Python class, which
this one calls for the rare events (``_on_close_frame``, ``_on_pong``,
``_fail``, ``_run_pending_fail``, ``_closed_error``, ``_drain``).

Threading: everything here runs on the connection's loop thread.

Waiting for a message: a reader that is an HttpServer ``HandlerTask`` (an
``@app.websocket`` handler) waits at the connection's ``Parker``, and
``data_received`` resumes it at once, inside the protocol callback, with
no future and no trip through the ready queue; any other reader (an
asyncio Task: a client, an ASGI app) waits on a future.  Invariant:
``_recv_waiter`` is set only while a receive is suspended, and cleared by
that receive (its ``finally``), so a wake never reaches a task that has
moved on.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.ref cimport PyObject, Py_INCREF
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport uint8_t

from flowcoro._core._c_ws cimport FC_WS_OP_BINARY, FC_WS_OP_TEXT
from flowcoro._core.httpserver cimport Parker, aio_current_task
from flowcoro._core.wsframe cimport FrameBuilder, FrameParser

from flowcoro._core.httpserver import HandlerTask
from flowcoro._core.wsframe import Ping, Pong
from flowcoro.errors import (InvalidArgumentError, InvalidStateError, WebSocketClosed,
                             WebSocketProtocolError)
import threading

cdef extern from "Python.h":
    int PyList_SetSlice(object lst, Py_ssize_t low, Py_ssize_t high, void *itemlist) except -1

OPEN, CLOSING, CLOSED = "OPEN", "CLOSING", "CLOSED"

cdef object _Ping = Ping
cdef object _Pong = Pong
cdef object _HandlerTask = HandlerTask

# Where the transport puts received bytes (asyncio.BufferedProtocol): one
# buffer per thread, shared by that thread's connections.  Sound because a
# transport calls get_buffer(), reads into it and calls buffer_updated() in
# one go on the loop's thread, and buffer_updated() has parsed all of it
# (a partial frame is copied into the parser) before it returns.  Saves
# data_received's bytes object: one copy of every received byte.
# 256 KiB: asyncio's own read size.
DEF READ_BUF = 256 * 1024
cdef object _tls = threading.local()

# get_buffer() hands out a memoryview of it: asyncio's SSL transport reads
# into buf[offset:], which must be a view (a bytearray slice is a copy).
cdef tuple _read_buffer():
    b = getattr(_tls, "buf", None)
    if b is None:
        a = bytearray(READ_BUF)
        b = _tls.buf = (a, memoryview(a))
    return b

# A binary payload at least this big is sent after its header as a second
# buffer (transport.writelines: one writev(2), no joined copy).  Below it
# the copy costs less than the extra iovec handling (measured on the
# FlowCoro transport: equal at 8 KiB, the split 7% ahead at 16 KiB).
DEF SPLIT_MIN = 8192


cdef extern from *:
    """
    /* Give a heap subtype the base's am_aiter/am_anext C functions.  Cython
     * also lists __aiter__/__anext__ in the method table (METH_COEXIST), so
     * CPython does not see them as slot wrappers when it builds a Python
     * subclass, and installs the generic slot_am_anext: a type lookup and a
     * method call per `async for` step. */
    static void fc_inherit_async_slots(PyObject *sub, PyObject *base) {
        PyTypeObject *s = (PyTypeObject *)sub, *b = (PyTypeObject *)base;
        if ((s->tp_flags & Py_TPFLAGS_HEAPTYPE) && s->tp_as_async && b->tp_as_async) {
            s->tp_as_async->am_aiter = b->tp_as_async->am_aiter;
            s->tp_as_async->am_anext = b->tp_as_async->am_anext;
        }
    }
    """
    void fc_inherit_async_slots(object sub, object base)


def inherit_async_slots(cls):
    """Let ``async for`` over instances of ``cls`` (a Python subclass of
    :class:`WebSocketCore` that overrides neither ``__aiter__`` nor
    ``__anext__``) call this module's C functions directly.  Called once,
    after the class statement; a class that overrides either is left as
    CPython built it."""
    if not (isinstance(cls, type) and issubclass(cls, WebSocketCore)):
        raise TypeError("a subclass of WebSocketCore is expected")
    if (getattr(cls, "__anext__") is WebSocketCore.__dict__["__anext__"] and
            getattr(cls, "__aiter__") is WebSocketCore.__dict__["__aiter__"]):
        fc_inherit_async_slots(cls, WebSocketCore)


cdef class _NextMessage


cdef class WebSocketCore:
    """The message path of :class:`flowcoro.websocket.WebSocketConnection`
    (see the module docstring); not used on its own."""
    cdef public object _loop
    cdef public FrameParser _parser
    cdef public FrameBuilder _builder
    cdef public object _transport
    cdef public object _compressor      # Compressor or None (permessage-deflate)
    cdef public object _on_message      # callback mode: callable(message) or None
    # Unread messages are _mq[_mq_head:]: a list read from a moving head
    # (appends and pops are C calls; a deque's are method lookups).  Emptied
    # when drained; compacted when the read part outgrows the rest.
    cdef list _mq
    cdef Py_ssize_t _mq_head
    cdef public object _recv_waiter     # Future or _parker while receive() waits
    cdef public object _parker          # made on first use by a HandlerTask reader
    cdef public object _state           # OPEN / CLOSING / CLOSED
    cdef public object _close_rcvd      # the peer's Close event, or None
    cdef public object _error           # WebSocketProtocolError from the peer, or None
    cdef public object _pending_fail    # (code, reason) to fail with once the queue drains
    cdef public object _fail_timer
    cdef public bint _reading_paused
    cdef public bint _write_paused
    cdef public Py_ssize_t _max_queue
    cdef public object max_send_buffer
    cdef bytearray _rbuf                # this thread's read buffer, once asked for,
    cdef object _rview                  # and the memoryview of it get_buffer() returns

    # ---- receiving --------------------------------------------------------

    async def receive(self):
        """The next message: ``str`` (text) or ``bytes`` (binary).

        Raises:
            WebSocketClosed: the connection is closed (or closing) and no
                message is left; ``ok`` says whether it closed normally.
            InvalidStateError: another ``receive()`` is already waiting.
        """
        while True:
            if self._nqueued():
                return self._pop()
            w = self._arm_receiver()
            try:
                await w
            finally:
                self._recv_waiter = None

    def __aiter__(self):
        return self

    def __anext__(self):
        """The next message (``async for``), as an awaitable; the loop
        stops at a normal close.  Not a coroutine object: like an async
        generator's ``__anext__`` it returns a light awaitable (no
        coroutine per message)."""
        cdef _NextMessage n = _NextMessage.__new__(_NextMessage)
        n.ws = self
        return n

    def __cinit__(self, *args, **kwargs):
        self._mq = []
        self._mq_head = 0

    def _queued(self):
        """Messages received and not yet read."""
        return self._nqueued()

    cdef inline Py_ssize_t _nqueued(self):
        return len(self._mq) - self._mq_head

    def _pop_message(self):
        """The oldest unread message (there must be one)."""
        return self._pop()

    cdef object _pop(self):
        cdef list q = self._mq
        cdef Py_ssize_t h = self._mq_head
        msg = q[h]
        q[h] = None
        h += 1
        if h == len(q) or (h >= 64 and h * 2 >= len(q)):    # drained, or mostly read
            PyList_SetSlice(q, 0, h, NULL)      # del q[:h], without a slice object
            h = 0
        self._mq_head = h
        if self._reading_paused and self._nqueued() <= self._max_queue // 4:
            self._reading_paused = False
            if self._state != CLOSED:
                self._transport.resume_reading()
        return msg

    cdef object _arm_receiver(self):
        """With no message queued: raise if none will come, else set and
        return what to await for the next one."""
        if self._pending_fail is not None:
            self._run_pending_fail()
        if self._close_rcvd is not None or self._state == CLOSED or self._error is not None:
            raise self._closed_error()
        if self._recv_waiter is not None:
            raise InvalidStateError("receive() is already being awaited")
        if type(aio_current_task(self._loop)) is _HandlerTask:
            w = self._parker
            if w is None:
                w = self._parker = Parker()
        else:
            w = self._loop.create_future()
        self._recv_waiter = w
        return w

    def _wake_receiver(self):
        """Resume a waiting receive() (Python callers: closing, failing)."""
        self._wake()

    cdef _wake(self):
        w = self._recv_waiter
        if w is None:
            return
        if type(w) is Parker:
            (<Parker>w).wake_c()
        elif not w.done():
            w.set_result(None)

    # ---- asyncio.Protocol -------------------------------------------------

    def data_received(self, data):
        """Feed the framing core; queue messages, answer pings (protocol
        callback; transports that support asyncio.BufferedProtocol use
        :meth:`get_buffer` and :meth:`buffer_updated` instead)."""
        if self._error is not None:
            return          # the parser is dead; the connection is being failed
        try:
            events = self._parser.feed_c(data)
        except WebSocketProtocolError as exc:
            self._protocol_error(exc)
            return
        if events:
            self._handle_c(events)

    def get_buffer(self, sizehint):
        """Where the transport should put the next bytes (BufferedProtocol):
        a buffer this thread's connections share, read in full by
        :meth:`buffer_updated` before it is handed out again."""
        if self._rbuf is None:
            self._rbuf, self._rview = _read_buffer()
        return self._rview

    def buffer_updated(self, Py_ssize_t nbytes):
        """``nbytes`` arrived at the start of :meth:`get_buffer`'s buffer:
        the same as :meth:`data_received` of those bytes."""
        if self._rbuf is None or not 0 <= nbytes <= PyByteArray_GET_SIZE(self._rbuf):
            raise InvalidArgumentError("nbytes", nbytes, "is not within get_buffer()'s buffer")
        if self._error is not None:
            return
        try:
            events = self._parser.feed_mem(<const uint8_t *>PyByteArray_AS_STRING(self._rbuf),
                                           <size_t>nbytes)
        except WebSocketProtocolError as exc:
            self._protocol_error(exc)
            return
        if events:
            self._handle_c(events)

    cdef _protocol_error(self, exc):
        self._error = exc
        # Messages that came before the bad frame are still delivered
        # (and may be answered) first: the connection is failed when
        # receive() finds the queue empty, or after close_timeout if
        # nobody reads (Autobahn's "strict" order).  Set before _handle:
        # a HandlerTask reader may drain the queue inside it.
        self._pending_fail = (exc.close_code, exc.code)
        self._handle_c(exc.events)
        if self._pending_fail is None:
            return          # the reader drained the queue and failed it
        if self._nqueued() and self._state == OPEN and self._close_rcvd is None:
            self._fail_timer = self._loop.call_later(self.close_timeout or 0,
                                                     self._run_pending_fail)
        else:
            self._run_pending_fail()

    def _handle(self, list events):
        """Deliver parsed events (Python callers: on_message's setter)."""
        self._handle_c(events)

    cdef _handle_c(self, list events):
        # cdef, not cpdef: a cpdef method called on an instance of the Python
        # subclass looks itself up on every call to see whether it is
        # overridden.
        cdef list msgs = self._mq
        cb = self._on_message
        for ev in events:
            t = type(ev)
            if t is str or t is bytes:
                if cb is None:
                    msgs.append(ev)
                    continue
                try:
                    cb(ev)
                except Exception as exc:
                    self._loop.call_exception_handler({
                        "message": "WebSocket on_message callback failed",
                        "exception": exc, "protocol": self})
                    self._fail(1011, "internal error")
                    return
            elif t is _Ping:
                if self._state == OPEN and self._close_rcvd is None:
                    self._transport.write(self._builder.pong(ev.payload))
            elif t is _Pong:
                self._on_pong(ev.payload)
            else:
                self._on_close_frame(ev)
        if self._nqueued():
            if self._nqueued() >= self._max_queue and not self._reading_paused and \
                    self._state != CLOSED:
                self._reading_paused = True
                self._transport.pause_reading()
            self._wake()                # last: a HandlerTask reader runs inside it

    # ---- sending ----------------------------------------------------------

    cdef object _data_frame(self, message):
        cdef Py_ssize_t sz
        cdef const char *s
        t = type(message)
        if self._compressor is None:
            # the common case first: no permessage-deflate
            if t is bytes:
                return self._builder._build(FC_WS_OP_BINARY,
                                            <const uint8_t *>PyBytes_AS_STRING(message),
                                            PyBytes_GET_SIZE(message), True, False)
            if t is str:
                s = PyUnicode_AsUTF8AndSize(message, &sz)
                return self._builder._build(FC_WS_OP_TEXT, <const uint8_t *>s, sz, True, False)
        if t is str:
            text = True
        elif isinstance(message, (bytes, bytearray, memoryview)):
            text = False
        else:
            raise TypeError(f"a message is str or bytes-like, not {t.__name__}")
        c = self._compressor
        if c is not None and len(message) >= c.min_size:
            data = message.encode("utf-8") if text else message
            return self._builder.frame(1 if text else 2, c.compress(data), True, True)
        if text:
            return self._builder.text(message)
        return self._builder.binary(message)

    async def send(self, message):
        """Send one message: a ``str`` as text, a bytes-like object as binary.

        Waits while the transport's write buffer is over ``write_limit``.

        Raises:
            WebSocketClosed: the connection is closing or closed.
            TypeError: ``message`` is neither str nor bytes-like.
        """
        if self._state != OPEN or self._close_rcvd is not None:
            raise self._closed_error()
        self._write_message(message, False)
        if self._write_paused:
            await self._drain()

    def send_nowait(self, message):
        """Send one message without waiting (for :attr:`on_message` callbacks
        and other synchronous code): ``str`` as text, bytes-like as binary.

        Returns True when the frame was queued; False when the write buffer
        would pass ``max_send_buffer``: the connection is then failed with
        1013, as :meth:`send_frame_nowait` does.

        Raises:
            WebSocketClosed: the connection is closing or closed.
        """
        if self._state != OPEN or self._close_rcvd is not None:
            raise self._closed_error()
        return self._write_message(message, True)

    def send_frame_nowait(self, frame):
        """Write a frame made by :meth:`prepare` without waiting.

        Returns True when it was queued.  False when the connection is not
        open, or when the write buffer would pass ``max_send_buffer``: the
        connection is then failed with close code 1013 (Try Again Later) and
        the frame dropped, so a slow client cannot hold the others back.
        """
        return self._send_frame(frame)

    cdef object _send_frame(self, frame):
        if not self._may_queue(len(frame)):
            return False
        self._transport.write(frame)
        return True

    cdef bint _may_queue(self, Py_ssize_t n) except -1:
        """Whether n more bytes may be written: the connection is open, and
        its write buffer stays within max_send_buffer (else it is failed
        with 1013)."""
        if self._state != OPEN or self._close_rcvd is not None:
            return False
        if self._transport.get_write_buffer_size() + n > self.max_send_buffer:
            self._fail(1013, "send buffer full")
            return False
        return True

    cdef object _write_message(self, message, bint bounded):
        """Frame and write one data message.  ``bounded`` (send_nowait):
        check max_send_buffer as _send_frame does, and return whether it
        was written."""
        cdef Py_ssize_t n
        if type(message) is bytes and self._compressor is None and not self._builder.client:
            n = PyBytes_GET_SIZE(message)
            if n >= SPLIT_MIN:
                hdr = self._builder._header(FC_WS_OP_BINARY, <size_t>n)
                if bounded and not self._may_queue(PyBytes_GET_SIZE(hdr) + n):
                    return False
                self._transport.writelines((hdr, message))
                return True
        frame = self._data_frame(message)
        if bounded:
            return self._send_frame(frame)
        self._transport.write(frame)
        return True


# ---- what `async for` awaits -------------------------------------------------

cdef extern from *:
    """
    /* Cython has no spelling for am_send (3.10+): PyIter_Send, which the
     * 3.11 SEND opcode calls, uses it to return a value without raising
     * StopIteration.  The Cython function below has the same ABI: it returns
     * 1 (PYGEN_NEXT: yielded), 0 (PYGEN_RETURN) or -1 (PYGEN_ERROR, with
     * the exception set and *result NULL). */
    static void fc_set_am_send(PyObject *type, void *f) {
        ((PyTypeObject *)type)->tp_as_async->am_send = (sendfunc)f;
    }
    """
    void fc_set_am_send(object type, void *f)


@cython.final
@cython.no_gc           # refers to its connection; nothing refers back to it
@cython.freelist(8)
cdef class _NextMessage:
    """One step of ``async for`` over a connection: the awaitable that
    ``__anext__`` returns.  Awaiting it yields what ``receive()`` would
    await (the connection's Parker for a HandlerTask, else a future) until a
    message is queued, then returns the message.  Invariant, as for
    receive(): while it is suspended it owns ``ws._recv_waiter`` and clears
    it when it is resumed, thrown into, closed or freed."""
    cdef WebSocketCore ws
    cdef object waiter              # what it is suspended on, or None
    cdef object out                 # _step's product, taken by the caller

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        if self._step():
            return self._take()
        raise StopIteration(self._take())

    def send(self, value):
        """Resume (the value is ignored, as a future's await ignores it)."""
        return self.__next__()

    def throw(self, typ, val=None, tb=None):
        """Stop waiting and raise the exception thrown in (cancellation)."""
        self._leave()
        if isinstance(typ, BaseException):
            exc = typ
        elif isinstance(val, BaseException):
            exc = val
        elif val is None:
            exc = typ()
        else:
            exc = typ(val)
        if tb is not None:
            exc = exc.with_traceback(tb)
        raise exc

    def close(self):
        """Stop waiting (the awaiting coroutine is being closed)."""
        self._leave()

    def __dealloc__(self):
        if self.ws is not None:
            self._leave()

    cdef inline object _take(self):
        o = self.out
        self.out = None
        return o

    cdef inline void _leave(self) noexcept:
        if self.waiter is not None:
            if self.ws._recv_waiter is self.waiter:
                self.ws._recv_waiter = None
            self.waiter = None

    cdef int _step(self) except -1:
        """Set self.out; return 1 if it is to be yielded (a wait), 0 if it
        is the message (done)."""
        cdef WebSocketCore ws = self.ws
        w = self.waiter
        if w is not None:
            self._leave()
            if type(w) is not Parker:
                w.result()          # a cancelled or failed future raises here
        while True:
            if ws._nqueued():
                self.out = ws._pop()
                return 0
            try:
                w = ws._arm_receiver()
            except WebSocketClosed as exc:
                if exc.ok:
                    raise StopAsyncIteration from None
                raise
            if type(w) is not Parker:
                w._asyncio_future_blocking = True       # what Future.__await__ does
            self.waiter = w
            self.out = w
            return 1


cdef int _next_am_send(PyObject *it, PyObject *arg, PyObject **result) except -1:
    result[0] = NULL
    cdef _NextMessage n = <_NextMessage>it
    cdef int r = n._step()
    o = n._take()
    Py_INCREF(o)
    result[0] = <PyObject *>o
    return r


fc_set_am_send(_NextMessage, <void *>_next_am_send)
