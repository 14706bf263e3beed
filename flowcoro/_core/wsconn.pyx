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

import asyncio

from flowcoro._core.httpserver import HandlerTask, Parker
from flowcoro._core.wsframe import Ping, Pong
from flowcoro.errors import InvalidStateError, WebSocketClosed, WebSocketProtocolError

OPEN, CLOSING, CLOSED = "OPEN", "CLOSING", "CLOSED"

cdef object _current_task = asyncio.current_task
cdef object _Ping = Ping
cdef object _Pong = Pong
cdef object _HandlerTask = HandlerTask
cdef object _Parker = Parker


cdef class WebSocketCore:
    """The message path of :class:`flowcoro.websocket.WebSocketConnection`
    (see the module docstring); not used on its own."""
    cdef public object _loop
    cdef public object _parser          # FrameParser
    cdef public object _builder         # FrameBuilder
    cdef public object _transport
    cdef public object _compressor      # Compressor or None (permessage-deflate)
    cdef public object _on_message      # callback mode: callable(message) or None
    cdef public object _messages        # collections.deque of unread messages
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

    # ---- receiving --------------------------------------------------------

    async def receive(self):
        """The next message: ``str`` (text) or ``bytes`` (binary).

        Raises:
            WebSocketClosed: the connection is closed (or closing) and no
                message is left; ``ok`` says whether it closed normally.
            InvalidStateError: another ``receive()`` is already waiting.
        """
        while True:
            if self._messages:
                return self._pop()
            w = self._arm_receiver()
            try:
                await w
            finally:
                self._recv_waiter = None

    def __aiter__(self):
        return self

    async def __anext__(self):
        """The next message (``async for``); stops at a normal close."""
        while True:
            if self._messages:
                return self._pop()
            try:
                w = self._arm_receiver()
            except WebSocketClosed as exc:
                if exc.ok:
                    raise StopAsyncIteration from None
                raise
            try:
                await w
            finally:
                self._recv_waiter = None

    cdef object _pop(self):
        msg = self._messages.popleft()
        if self._reading_paused and len(self._messages) <= self._max_queue // 4:
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
        if type(_current_task(self._loop)) is _HandlerTask:
            w = self._parker
            if w is None:
                w = self._parker = _Parker()
        else:
            w = self._loop.create_future()
        self._recv_waiter = w
        return w

    cpdef _wake_receiver(self):
        w = self._recv_waiter
        if w is None:
            return
        if type(w) is _Parker:
            w.wake()
        elif not w.done():
            w.set_result(None)

    # ---- asyncio.Protocol -------------------------------------------------

    def data_received(self, data):
        """Feed the framing core; queue messages, answer pings (protocol callback)."""
        if self._error is not None:
            return          # the parser is dead; the connection is being failed
        try:
            events = self._parser.feed(data)
        except WebSocketProtocolError as exc:
            self._error = exc
            # Messages that came before the bad frame are still delivered
            # (and may be answered) first: the connection is failed when
            # receive() finds the queue empty, or after close_timeout if
            # nobody reads (Autobahn's "strict" order).  Set before _handle:
            # a HandlerTask reader may drain the queue inside it.
            self._pending_fail = (exc.close_code, exc.code)
            self._handle(exc.events)
            if self._pending_fail is None:
                return          # the reader drained the queue and failed it
            if self._messages and self._state == OPEN and self._close_rcvd is None:
                self._fail_timer = self._loop.call_later(self.close_timeout or 0,
                                                         self._run_pending_fail)
            else:
                self._run_pending_fail()
            return
        if events:
            self._handle(events)

    cpdef _handle(self, list events):
        msgs = self._messages
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
        if msgs:
            if len(msgs) >= self._max_queue and not self._reading_paused and \
                    self._state != CLOSED:
                self._reading_paused = True
                self._transport.pause_reading()
            self._wake_receiver()       # last: a HandlerTask reader runs inside it

    # ---- sending ----------------------------------------------------------

    cdef object _data_frame(self, message):
        t = type(message)
        if self._compressor is None:
            # the common case first: no permessage-deflate
            if t is str:
                return self._builder.text(message)
            if t is bytes:
                return self._builder.binary(message)
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
        self._transport.write(self._data_frame(message))
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
        return self.send_frame_nowait(self._data_frame(message))

    cpdef send_frame_nowait(self, frame):
        """Write a frame made by :meth:`prepare` without waiting.

        Returns True when it was queued.  False when the connection is not
        open, or when the write buffer would pass ``max_send_buffer``: the
        connection is then failed with close code 1013 (Try Again Later) and
        the frame dropped, so a slow client cannot hold the others back.
        """
        if self._state != OPEN or self._close_rcvd is not None:
            return False
        t = self._transport
        if t.get_write_buffer_size() + len(frame) > self.max_send_buffer:
            self._fail(1013, "send buffer full")
            return False
        t.write(frame)
        return True
