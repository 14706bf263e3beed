"""WebSocketConnection: one open WebSocket over an asyncio transport.

Theory of operation
-------------------
The connection is the transport's protocol (``transport.set_protocol``
after the opening handshake, on either side).  Bytes go through the C
framing core (:class:`~flowcoro.websocket.FrameParser`), read by
transports that support it straight from a per-thread buffer
(asyncio.BufferedProtocol: no ``bytes`` per read); completed messages
are queued for :meth:`receive`; pings are answered at once; pongs resolve
the futures :meth:`ping` returned.  Sending builds one frame (one ``bytes``)
and writes it; a big binary payload follows its header as a second buffer
(``writelines``), not copied into the frame.

States: OPEN -> CLOSING (we sent a close frame) -> CLOSED (the TCP
connection is gone).  ``_close_rcvd`` records the peer's close frame; after
it no message can arrive, so :meth:`receive` raises
:class:`~flowcoro.errors.WebSocketClosed` once the queue is empty, even
while the TCP connection is still being shut.

Closing (section 7): the side that receives a close frame answers with one
(echoing the code) unless it sent one already.  Then the server closes the
TCP connection; the client waits up to ``close_timeout`` for the server to
do it, then aborts.  A protocol error from the peer "fails" the connection:
a close frame with the error's close code (1002, 1007, 1009), then the TCP
connection is closed at once.

Flow control
  * writing: the transport's write buffer has a high-water mark
    (``write_limit``); :meth:`send` waits while the transport is paused.
    :meth:`send_frame_nowait` (for broadcast) never waits; a connection
    whose write buffer would pass ``max_send_buffer`` is failed with 1013
    (Try Again Later) instead, so one slow reader cannot make the sender
    buffer without bound.
  * reading: at ``max_queue`` unread messages the transport stops reading
    (TCP then pushes back on the peer) until the queue is down to a quarter.

Rules
-----
* All methods run on the loop's thread; ``receive`` has one caller at a time.
* Only the public asyncio API is used: it runs on FlowCoro's loop and on
  the stdlib loop alike.
"""
import asyncio
import os

from flowcoro._core.wsconn import CLOSED, CLOSING, OPEN, WebSocketCore, inherit_async_slots
from flowcoro._core.wsframe import FrameBuilder, FrameParser
from flowcoro.errors import InvalidArgumentError, WebSocketClosed
from flowcoro.websocket.deflate import Compressor

__all__ = ["WebSocketConnection", "OPEN", "CLOSING", "CLOSED"]


class WebSocketConnection(WebSocketCore, asyncio.BufferedProtocol):
    """An open WebSocket connection (client or server side).

    Made by :func:`flowcoro.websocket.connect` on the client and by the
    server after it sent its 101; it takes over the transport as its
    protocol.

    Args:
        transport: the asyncio transport, right after the handshake.
        role: ``"client"`` or ``"server"`` (decides masking).
        subprotocol: the agreed subprotocol (informational).
        deflate: agreed :class:`~flowcoro.websocket.DeflateParams` or None.
        max_message: limit on a received message (bytes; inflated size when
            compressed); None for no limit.  Default 1 MiB.
        max_frame: limit on one received frame's payload (None: only
            ``max_message``).
        max_queue: unread messages at which reading pauses.
        ping_interval: seconds between keep-alive pings; None: none sent.
        ping_timeout: seconds a keep-alive ping may wait for its pong before
            the connection is failed with 1011; None: no limit.
        close_timeout: seconds to wait for the closing handshake (and, on
            the client, for the server to close TCP) before aborting.
        write_limit: high-water mark of the transport's write buffer:
            :meth:`send` waits above it.
        max_send_buffer: bound on the write buffer for
            :meth:`send_frame_nowait`; past it the connection fails (1013).
        initial_data: bytes that arrived after the handshake's head.
        handshake: what the handshake produced (a ``ResponseHead`` on the
            client, a ``ServerHandshake`` on the server), kept as
            :attr:`handshake`.
        on_message: callback mode: a function called with each message
            (``str`` or ``bytes``) as soon as it is parsed, from the
            protocol callback, instead of queueing it for :meth:`receive`.
            It must not block; it answers with :meth:`send_nowait`.  No
            task wake-up per message: the fastest way to serve many
            connections.  An exception in it is reported to the loop's
            exception handler and fails the connection with 1011.

    Example::

        async for message in ws:          # str (text) or bytes (binary)
            await ws.send(message)        # echo
        # the loop ends at a normal close; an abnormal one raises WebSocketClosed
    """

    def __init__(self, transport, role, *, subprotocol=None, deflate=None, max_message=1 << 20,
                 max_frame=None, max_queue=32, ping_interval=20.0, ping_timeout=20.0,
                 close_timeout=10.0, write_limit=64 * 1024, max_send_buffer=4 * 1024 * 1024,
                 initial_data=b"", handshake=None, on_message=None):
        if role not in ("client", "server"):
            raise InvalidArgumentError("role", role, "'client' or 'server'")
        if max_queue < 1:
            raise InvalidArgumentError("max_queue", max_queue, "must be >= 1")
        self._loop = asyncio.get_running_loop()
        client = role == "client"
        self.role = role
        self.subprotocol = subprotocol
        self.deflate = deflate
        self.handshake = handshake
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.max_send_buffer = max_send_buffer
        self._compressor = None
        remote = None
        if deflate is not None:
            lw, lnc, rw, rnc = deflate.for_role(role)
            self._compressor = Compressor(lw, lnc)
            remote = (rw, rnc)
        self._parser = FrameParser(client=client, max_message=max_message, max_frame=max_frame,
                                   deflate=remote)
        self._builder = FrameBuilder(client=client)
        self._state = OPEN
        self._max_queue = max_queue
        self._reading_paused = False
        self._recv_waiter = None         # a Future or self._parker while receive() waits
        self._parker = None
        self._write_paused = False
        self._drain_waiters = []
        self._pings = {}                 # payload -> (future, sent time), in send order
        self._keepalive_handle = None
        self._keepalive_payload = None
        self._close_timer = None
        self._close_rcvd = None          # the peer's Close event
        self._sent_code = None           # the code of the close frame we sent
        self._error = None               # WebSocketProtocolError from the peer, if any
        self._pending_fail = None        # (close code, reason) to fail with once the queue drains
        self._fail_timer = None
        self._lost = self._loop.create_future()
        self._on_message = on_message
        self._transport = transport
        transport.set_protocol(self)
        transport.set_write_buffer_limits(high=write_limit)
        self._schedule_keepalive()
        if initial_data:
            self.data_received(initial_data)

    # ---- information ------------------------------------------------------

    @property
    def transport(self):
        """The underlying asyncio transport."""
        return self._transport

    @property
    def state(self):
        """``"OPEN"``, ``"CLOSING"`` or ``"CLOSED"``."""
        return self._state

    @property
    def open(self):
        """True while messages may be sent (no close frame sent or received)."""
        return self._state == OPEN and self._close_rcvd is None

    @property
    def closed(self):
        """True once the TCP connection is gone."""
        return self._state == CLOSED

    @property
    def close_code(self):
        """The close code received (1005: none in the frame; 1006: no close
        frame); None while the connection is open."""
        if self._close_rcvd is not None:
            return self._close_rcvd.code
        return 1006 if self._state == CLOSED else None

    @property
    def close_reason(self):
        """The close reason received (``str``), or None while open."""
        if self._close_rcvd is not None:
            return self._close_rcvd.reason
        return "" if self._state == CLOSED else None

    @property
    def local_address(self):
        """The socket's own address (``transport.get_extra_info("sockname")``)."""
        return self._transport.get_extra_info("sockname")

    @property
    def remote_address(self):
        """The peer's address (``transport.get_extra_info("peername")``)."""
        return self._transport.get_extra_info("peername")

    def _closed_error(self):
        if self._close_rcvd is not None:
            return WebSocketClosed(self._close_rcvd.code, self._close_rcvd.reason, self._sent_code)
        return WebSocketClosed(1006, "", self._sent_code)

    # ---- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport):  # pragma: no cover - set_protocol, not connect
        """Not called: the connection takes over an already connected transport."""
        self._transport = transport

    def eof_received(self):
        """The peer shut its side: let the transport close (protocol callback)."""
        return False

    def connection_lost(self, exc):
        """The TCP connection is gone: wake every waiter (protocol callback)."""
        self._state = CLOSED
        self._cancel_timers()
        if not self._lost.done():
            self._lost.set_result(None)
        err = self._closed_error()
        for fut, _ in self._pings.values():
            if not fut.done():
                fut.set_exception(err)
                fut.exception()   # nobody may await it; do not log "never retrieved"
        self._pings.clear()
        for w in self._drain_waiters:
            if not w.done():
                w.set_result(None)
        self._drain_waiters.clear()
        # Last: a HandlerTask reader resumes inside this call, and must find
        # every other waiter already failed.
        self._wake_receiver()

    def pause_writing(self):
        """The transport's buffer passed ``write_limit`` (protocol callback)."""
        self._write_paused = True

    def resume_writing(self):
        """The transport's buffer drained (protocol callback)."""
        self._write_paused = False
        for w in self._drain_waiters:
            if not w.done():
                w.set_result(None)
        self._drain_waiters.clear()

    # ---- sending ----------------------------------------------------------

    def _check_open(self):
        if self._state != OPEN or self._close_rcvd is not None:
            raise self._closed_error()

    async def send_text(self, text):
        """Send a text message (``str``)."""
        if type(text) is not str:
            raise TypeError(f"send_text() takes a str, not {type(text).__name__}")
        await self.send(text)

    async def send_binary(self, data):
        """Send a binary message (bytes-like)."""
        if type(data) is str:
            raise TypeError("send_binary() takes a bytes-like object, not str")
        await self.send(data)

    async def _drain(self):
        while self._write_paused and self._state != CLOSED:
            w = self._loop.create_future()
            self._drain_waiters.append(w)
            await w
        if self._state == CLOSED:
            raise self._closed_error()

    @property
    def on_message(self):
        """The callback-mode message handler, or None (queue for receive())."""
        return self._on_message

    @on_message.setter
    def on_message(self, callback):
        self._on_message = callback
        # messages queued before the switch go to the callback first, in order
        while callback is not None and self._queued() and self._on_message is callback:
            self._handle([self._pop_message()])
        if callback is not None and self._reading_paused and self._state is not CLOSED:
            self._reading_paused = False
            self._transport.resume_reading()

    def prepare(self, message):
        """Serialize ``message`` into one frame (``bytes``) for
        :meth:`send_frame_nowait`: built once, it can be written to many
        connections of the same role (never compressed, so it suits every
        connection whatever its permessage-deflate state)."""
        if type(message) is str:
            return self._builder.text(message)
        return self._builder.binary(message)

    # ---- ping / pong ------------------------------------------------------

    def ping(self, data=None):
        """Send a ping; return a future that resolves, when the matching pong
        arrives, to the round-trip time in seconds.

        ``data``: payload (bytes or str, at most 125 bytes); None picks 4
        random bytes.  A pong also acknowledges every earlier ping.

        Raises:
            WebSocketClosed: the connection is closing or closed.
            InvalidArgumentError: a ping with that payload is still waiting.
        """
        self._check_open()
        if data is None:
            data = os.urandom(4)
            while data in self._pings:
                data = os.urandom(4)
        elif isinstance(data, str):
            data = data.encode("utf-8")
        else:
            data = bytes(data)
        if data in self._pings:
            raise InvalidArgumentError("data", data, "a ping with this payload is in flight")
        frame = self._builder.ping(data)
        fut = self._loop.create_future()
        self._pings[data] = (fut, self._loop.time())
        self._transport.write(frame)
        return fut

    def _on_pong(self, payload):
        if payload not in self._pings:
            return          # unsolicited pong (section 5.5.3): nothing to do
        now = self._loop.time()
        # Pongs answer pings in order: this one acknowledges the earlier ones too.
        while self._pings:
            key = next(iter(self._pings))
            fut, sent = self._pings.pop(key)
            if not fut.done():
                fut.set_result(now - sent)
            if key == payload:
                break
        if payload == self._keepalive_payload:
            self._keepalive_payload = None
            self._schedule_keepalive()

    async def pong(self, data=b""):
        """Send an unsolicited pong (a one-way heartbeat, section 5.5.3)."""
        self._check_open()
        self._transport.write(self._builder.pong(data))

    def _schedule_keepalive(self):
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None
        if self.ping_interval is not None and self._state == OPEN:
            self._keepalive_handle = self._loop.call_later(self.ping_interval, self._keepalive)

    def _keepalive(self):
        self._keepalive_handle = None
        if self._state != OPEN or self._close_rcvd is not None:
            return
        fut = self.ping()
        fut.add_done_callback(_consume)
        self._keepalive_payload = next(reversed(self._pings))
        if self.ping_timeout is not None:
            self._keepalive_handle = self._loop.call_later(self.ping_timeout,
                                                           self._keepalive_timeout)

    def _keepalive_timeout(self):
        self._keepalive_handle = None
        if self._keepalive_payload is not None:
            self._fail(1011, "keepalive ping timeout")

    # ---- closing ----------------------------------------------------------

    def _write_close(self, code, reason=""):
        self._sent_code = code if code is not None else 1005
        try:
            self._transport.write(self._builder.close(code, reason))
        except Exception:  # pragma: no cover - transport already closing
            pass

    def _on_close_frame(self, ev):
        self._close_rcvd = ev
        if self._state == OPEN:
            # Echo the code (section 5.5.1); a frame without one gets one without.
            self._write_close(ev.code if ev.code != 1005 else None)
            self._state = CLOSING
        self._finish_closing()
        self._wake_receiver()

    def _finish_closing(self):
        """Both close frames are out: the server closes TCP now, the client
        gives it ``close_timeout`` to do so."""
        if self.role == "server":
            self._transport.close()
        self._arm_close_timer()

    def _arm_close_timer(self):
        if self._close_timer is None and self._state != CLOSED and self.close_timeout is not None:
            self._close_timer = self._loop.call_later(self.close_timeout, self._transport.abort)

    def _fail(self, code, reason=""):
        """Fail the connection (section 7.1.7): close frame, then close TCP."""
        if self._state == CLOSED:
            return
        if self._state == OPEN and self._close_rcvd is None:
            self._write_close(code, reason)
        self._state = CLOSING
        self._transport.close()
        self._arm_close_timer()
        self._wake_receiver()

    def _run_pending_fail(self):
        pending, self._pending_fail = self._pending_fail, None
        if self._fail_timer is not None:
            self._fail_timer.cancel()
            self._fail_timer = None
        if pending is not None:
            self._fail(*pending)

    def _cancel_timers(self):
        for h in (self._keepalive_handle, self._close_timer, self._fail_timer):
            if h is not None:
                h.cancel()
        self._keepalive_handle = self._close_timer = self._fail_timer = None

    async def close(self, code=1000, reason=""):
        """Start (or join) the closing handshake and wait until the TCP
        connection is closed, at most about ``close_timeout`` (then abort).

        Args:
            code: close code to send (1000 normal; 1001 going away; 3000-4999
                for applications).
            reason: text, at most 123 bytes in UTF-8.

        Raises:
            InvalidArgumentError: a code that may not be sent, or a reason
                too long.
        """
        frame = self._builder.close(code, reason)   # validates code and reason, always
        if self._state == OPEN and self._close_rcvd is None:
            self._sent_code = code
            self._transport.write(frame)
            self._state = CLOSING
            self._arm_close_timer()
        await self.wait_closed()

    async def wait_closed(self):
        """Wait until the TCP connection is closed."""
        await asyncio.shield(self._lost)

    def abort(self):
        """Close the TCP connection at once, without a closing handshake."""
        self._transport.abort()

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        await self.close()

    def __repr__(self):
        return f"<WebSocketConnection {self.role} {self._state} {self.remote_address!r}>"


# `async for` calls WebSocketCore's C __anext__ directly, not through a
# Python-level slot wrapper (see inherit_async_slots).
inherit_async_slots(WebSocketConnection)


def _consume(fut):
    """Retrieve a keep-alive ping's outcome so it is never reported unretrieved."""
    if not fut.cancelled():
        fut.exception()
