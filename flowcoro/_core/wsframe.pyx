# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""flowcoro._core.wsframe — Python objects over the C WebSocket framing core.

Theory of operation
-------------------
:class:`FrameParser` embeds one ``fc_ws_parser_t`` (csrc/ws/frame.h: the
rules and the state machine are there).  ``feed()`` calls
``fc_ws_parser_execute`` in a loop; each call returns at most one C event,
turned into a Python object here:

* TEXT -> ``str``, BINARY -> ``bytes``: a data message is returned as the
  plain object, with no wrapper, so the per-message cost is one allocation.
  A compressed message (permessage-deflate) is inflated here with zlib,
  bounded by ``max_message``, and a text one then checked for UTF-8.
* PING / PONG -> :class:`Ping` / :class:`Pong` with the payload bytes.
* CLOSE -> :class:`Close` with the code (1005 when the frame had none) and
  the reason (``str``).

No callback runs from C; C statuses become Python exceptions in one
function, :func:`_raise_error`.

:class:`FrameBuilder` writes frames: header and (masked, for a client)
payload into one ``bytes``, ready for ``transport.write``.  Client masking
keys come from a pool of ``os.urandom`` bytes (RFC 6455 section 5.3 wants
them unpredictable; one system call per 1024 frames instead of per frame).

Rules
-----
* One parser / builder per connection, used by one thread at a time.
* A protocol error raises a :class:`~flowcoro.errors.WebSocketProtocolError`
  subclass carrying the close code to send; its ``events`` hold what the
  same ``feed()`` completed first.  The parser is dead afterwards.
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from flowcoro._core._c_ws cimport *

import os
import zlib

from flowcoro.errors import (InvalidArgumentError, InvalidStateError, WebSocketDataError,
                             WebSocketProtocolError, WebSocketTooBigError)

__all__ = ["FrameParser", "FrameBuilder", "Ping", "Pong", "Close", "Utf8Validator",
           "mask", "utf8_valid", "close_code_valid",
           "OP_CONT", "OP_TEXT", "OP_BINARY", "OP_CLOSE", "OP_PING", "OP_PONG"]

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL

# The deflate tail RFC 7692 7.2.2 tells the receiver to append, and the
# sender to strip.
cdef bytes DEFLATE_TAIL = b"\x00\x00\xff\xff"


@cython.final
@cython.freelist(16)
cdef class Ping:
    """A ping frame (event of :class:`FrameParser`).

    Attributes:
        payload: the application data (``bytes``, at most 125 bytes).
    """
    cdef readonly bytes payload

    def __init__(self, payload=b""):
        self.payload = bytes(payload)

    def __eq__(self, other):
        return type(other) is Ping and (<Ping>other).payload == self.payload

    def __hash__(self):
        return hash((Ping, self.payload))

    def __repr__(self):
        return f"Ping({self.payload!r})"


@cython.final
@cython.freelist(16)
cdef class Pong:
    """A pong frame (event of :class:`FrameParser`).

    Attributes:
        payload: the application data (``bytes``, at most 125 bytes).
    """
    cdef readonly bytes payload

    def __init__(self, payload=b""):
        self.payload = bytes(payload)

    def __eq__(self, other):
        return type(other) is Pong and (<Pong>other).payload == self.payload

    def __hash__(self):
        return hash((Pong, self.payload))

    def __repr__(self):
        return f"Pong({self.payload!r})"


@cython.final
cdef class Close:
    """A close frame (event of :class:`FrameParser`).

    Attributes:
        code: the status code; 1005 when the frame carried none.
        reason: the reason (``str``, validated UTF-8; ``""`` when none).
    """
    cdef readonly int code
    cdef readonly str reason

    def __init__(self, int code=1005, str reason=""):
        self.code = code
        self.reason = reason

    def __eq__(self, other):
        return (type(other) is Close and (<Close>other).code == self.code
                and (<Close>other).reason == self.reason)

    def __hash__(self):
        return hash((Close, self.code, self.reason))

    def __repr__(self):
        return f"Close({self.code}, {self.reason!r})"


cdef object _error_class(int close_code):
    if close_code == 1007:
        return WebSocketDataError
    if close_code == 1009:
        return WebSocketTooBigError
    return WebSocketProtocolError


cdef object _raise_error(fc_ws_parser_t *p, list events):
    """The one place a C parser error becomes a Python exception."""
    cdef int cc = fc_ws_error_close_code(p.error)
    raise _error_class(cc)(fc_ws_error_name(p.error).decode(), cc, p.error_offset,
                           fc_ws_error_message(p.error).decode(), events)


cdef inline uint64_t _limit(object value, str name) except? 0:
    if value is None:
        return 0
    if value < 1:
        raise InvalidArgumentError(name, value, "must be >= 1 or None")
    return value


@cython.final
@cython.embedsignature(False)   # Cython misplaces the "*" of keyword-only arguments
cdef class FrameParser:
    """FrameParser(*, client, max_message=1048576, max_frame=None, deflate=None)

    Incremental WebSocket frame parser and message assembler (sans-IO).

    Feed it the bytes of one connection as they arrive; it returns the
    completed events: ``str`` (a text message), ``bytes`` (a binary
    message), :class:`Ping`, :class:`Pong`, :class:`Close`.  Fragments are
    reassembled; control frames between fragments come out in order.

    Args:
        client: True on the client side (frames from the server must be
            unmasked), False on the server side (frames must be masked).
        max_message: limit on a message's size in bytes (its inflated size
            when compressed); None for no limit.  Default 1 MiB.
        max_frame: limit on one frame's payload; None (the default): only
            ``max_message`` applies.
        deflate: None, or ``(window_bits, no_context_takeover)`` for the
            peer's side of a negotiated permessage-deflate: RSV1 is then
            allowed on a message's first frame and marks it compressed.

    Raises (from ``feed``):
        WebSocketProtocolError: the peer broke the protocol (close code
            1002); subclasses :class:`~flowcoro.errors.WebSocketDataError`
            (1007) and :class:`~flowcoro.errors.WebSocketTooBigError` (1009).

    Example::

        parser = FrameParser(client=False)
        for event in parser.feed(data):
            if type(event) is str: ...      # text message
            elif type(event) is bytes: ...  # binary message
            elif type(event) is Ping: ...   # answer with a pong
    """
    # Fields: wsframe.pxd.

    def __init__(self, *, bint client, max_message=1 << 20, max_frame=None, deflate=None):
        """Make a parser; the arguments are described on the class."""
        cdef uint32_t flags = FC_WS_CALLER_BUFFERS | (FC_WS_CLIENT if client else 0)
        self.client = client
        self.max_message = _limit(max_message, "max_message")
        if deflate is not None:
            wbits, no_context = deflate
            if not 8 <= wbits <= 15:
                raise InvalidArgumentError("deflate", deflate, "window bits must be 8..15")
            # zlib refuses a raw window of 8 bits; 9 reads everything 8 wrote.
            self.wbits = max(wbits, 9)
            self.reset_inflater = bool(no_context)
            self.inflater = zlib.decompressobj(-self.wbits)
            flags |= FC_WS_ALLOW_RSV1
        # No __cinit__: the struct starts zeroed (tp_alloc), so freeing it
        # first is safe, and __init__ may run again on the same object.
        fc_ws_parser_free(&self.p)
        fc_ws_parser_init(&self.p, flags, _limit(max_frame, "max_frame"), self.max_message)
        self.ready = True

    def __dealloc__(self):
        fc_ws_parser_free(&self.p)

    @property
    def offset(self):
        """Bytes consumed since the parser was made."""
        return self.p.offset

    @property
    def closed(self):
        """True once a close frame was parsed (later bytes are ignored)."""
        return self.closed_

    @property
    def in_message(self):
        """True while a fragmented data message is being reassembled."""
        return self.p.msg_type != 0

    def feed(self, data):
        """Parse ``data`` (any bytes-like object); return the completed events."""
        return self.feed_c(data)

    cdef list feed_c(self, object data):
        cdef Py_buffer view
        if type(data) is bytes:
            return self.feed_mem(<const uint8_t *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            return self.feed_mem(<const uint8_t *>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)

    cdef list feed_mem(self, const uint8_t *buf, size_t n):
        # Nothing here keeps a pointer into buf after returning: a partial
        # frame is copied into the parser's own buffer (or a RESERVE'd
        # message), so the caller may reuse buf at once.
        cdef list out = []
        if not self.ready:
            raise InvalidStateError("parser not initialised (call __init__)")
        self._feed(buf, n, out)
        return out

    cdef int _feed(self, const uint8_t *buf, size_t n, list out) except -1:
        cdef fc_ws_event_t ev
        cdef int rc
        cdef object obj
        while True:
            rc = fc_ws_parser_execute(&self.p, buf, n, &ev)
            if rc < 0:
                _raise_error(&self.p, out)
            buf += ev.consumed
            n -= ev.consumed
            if ev.type == FC_WS_EV_NONE:
                return 0
            if ev.type == FC_WS_EV_TEXT:
                if ev.compressed:
                    obj = self._inflate(ev.data, ev.len, True, out)
                else:
                    # Already validated in C; the decoder's ASCII path is fast.
                    obj = PyUnicode_DecodeUTF8(<const char *>ev.data, ev.len, NULL)
            elif ev.type == FC_WS_EV_RESERVE:
                self.pending = PyBytes_FromStringAndSize(NULL, ev.len)
                fc_ws_parser_set_dest(&self.p, <uint8_t *>PyBytes_AS_STRING(self.pending))
                continue
            elif ev.type == FC_WS_EV_BINARY:
                if self.pending is not None and \
                        ev.data == <const uint8_t *>PyBytes_AS_STRING(self.pending):
                    obj = self.pending
                    self.pending = None
                elif ev.compressed:
                    obj = self._inflate(ev.data, ev.len, False, out)
                else:
                    obj = PyBytes_FromStringAndSize(<const char *>ev.data, ev.len)
            elif ev.type == FC_WS_EV_PING:
                obj = Ping.__new__(Ping)
                (<Ping>obj).payload = PyBytes_FromStringAndSize(<const char *>ev.data, ev.len)
            elif ev.type == FC_WS_EV_PONG:
                obj = Pong.__new__(Pong)
                (<Pong>obj).payload = PyBytes_FromStringAndSize(<const char *>ev.data, ev.len)
            else:
                obj = Close.__new__(Close)
                (<Close>obj).code = ev.close_code if ev.close_code else 1005
                (<Close>obj).reason = PyUnicode_DecodeUTF8(<const char *>ev.data, ev.len, NULL)
                self.closed_ = True
            out.append(obj)

    cdef object _inflate(self, const uint8_t *data, size_t n, bint text, list events):
        cdef bytes raw = PyBytes_FromStringAndSize(<const char *>data, n) + DEFLATE_TAIL
        cdef object result
        # One more byte than allowed: getting it proves the message too big
        # without inflating the rest (a compression bomb stops here).
        limit = self.max_message + 1 if self.max_message else 0
        try:
            result = self.inflater.decompress(raw, limit)
        except zlib.error as exc:
            fc_ws_parser_set_error(&self.p, FC_WS_E_INFLATE)
            _raise_error(&self.p, events)
        if self.max_message and (<uint64_t>len(result) > self.max_message or self.inflater.unconsumed_tail):
            fc_ws_parser_set_error(&self.p, FC_WS_E_INFLATED_TOO_BIG)
            _raise_error(&self.p, events)
        if self.reset_inflater or self.inflater.eof:
            self.inflater = zlib.decompressobj(-self.wbits)
        if text:
            try:
                return result.decode("utf-8")
            except UnicodeDecodeError:
                fc_ws_parser_set_error(&self.p, FC_WS_E_TEXT_UTF8)
                _raise_error(&self.p, events)
        return result


@cython.final
@cython.embedsignature(False)
cdef class FrameBuilder:
    """FrameBuilder(*, client)

    Builds WebSocket frames as ``bytes`` ready to write.

    Args:
        client: True on the client side: every frame gets a fresh random
            masking key (RFC 6455 5.3); False on the server side: unmasked.

    Example::

        builder = FrameBuilder(client=True)
        transport.write(builder.text("hello"))
        transport.write(builder.close(1000, "bye"))
    """
    # Fields: wsframe.pxd.

    def __init__(self, *, bint client):
        """Make a builder for the client (masking) or the server side."""
        self.client = client
        self.keys = b""
        self.key_pos = 0

    cdef const uint8_t *_next_key(self):
        # 4096 random bytes = 1024 keys per os.urandom call.
        if self.key_pos + 4 > PyBytes_GET_SIZE(self.keys):
            self.keys = os.urandom(4096)
            self.key_pos = 0
        cdef const uint8_t *k = <const uint8_t *>PyBytes_AS_STRING(self.keys) + self.key_pos
        self.key_pos += 4
        return k

    cdef bytes _build(self, int opcode, const uint8_t *payload, size_t n, bint fin, bint rsv1):
        cdef const uint8_t *key = self._next_key() if self.client else NULL
        cdef size_t hl = fc_ws_header_size(n, self.client)
        cdef bytes out = PyBytes_FromStringAndSize(NULL, hl + n)
        cdef uint8_t *o = <uint8_t *>PyBytes_AS_STRING(out)
        fc_ws_write_header(o, fin, rsv1, opcode, n, key)
        if key != NULL:
            fc_ws_mask(o + hl, payload, n, key, 0)
        elif n:
            memcpy(o + hl, payload, n)
        return out

    cdef bytes _header(self, int opcode, size_t n):
        # The header alone of an unmasked (server) final frame of n payload
        # bytes: the payload then goes out as a second buffer, not copied.
        cdef uint8_t h[14]
        cdef size_t hl = fc_ws_header_size(n, False)
        fc_ws_write_header(h, True, False, opcode, n, NULL)
        return PyBytes_FromStringAndSize(<const char *>h, hl)

    def frame(self, int opcode, data, bint fin=True, bint rsv1=False):
        """One frame: ``opcode`` (OP_*), payload ``data`` (bytes-like; a
        ``str`` is encoded as UTF-8), FIN and RSV1 bits as given."""
        cdef Py_buffer view
        cdef Py_ssize_t sz
        cdef const char *s
        if not 0 <= opcode <= 15:
            raise InvalidArgumentError("opcode", opcode, "must be 0..15")
        if opcode >= 8 and len(data) > 125:
            raise InvalidArgumentError("data", len(data), "control frame payload over 125 bytes")
        if type(data) is str:
            s = PyUnicode_AsUTF8AndSize(data, &sz)
            return self._build(opcode, <const uint8_t *>s, sz, fin, rsv1)
        if type(data) is bytes:
            return self._build(opcode, <const uint8_t *>PyBytes_AS_STRING(data),
                               PyBytes_GET_SIZE(data), fin, rsv1)
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            return self._build(opcode, <const uint8_t *>view.buf, view.len, fin, rsv1)
        finally:
            PyBuffer_Release(&view)

    def text(self, str data):
        """A single-frame text message."""
        cdef Py_ssize_t sz
        cdef const char *s = PyUnicode_AsUTF8AndSize(data, &sz)
        return self._build(FC_WS_OP_TEXT, <const uint8_t *>s, sz, True, False)

    def binary(self, data):
        """A single-frame binary message (``data`` is bytes-like)."""
        if type(data) is bytes:
            return self._build(FC_WS_OP_BINARY, <const uint8_t *>PyBytes_AS_STRING(data),
                               PyBytes_GET_SIZE(data), True, False)
        return self.frame(FC_WS_OP_BINARY, data)

    def ping(self, data=b""):
        """A ping frame (payload at most 125 bytes)."""
        return self.frame(FC_WS_OP_PING, data)

    def pong(self, data=b""):
        """A pong frame (payload at most 125 bytes)."""
        return self.frame(FC_WS_OP_PONG, data)

    def close(self, code=1000, str reason=""):
        """A close frame; ``code=None`` sends one with no payload.

        Raises:
            InvalidArgumentError: the code may not be sent (RFC 6455 7.4), or
                code and reason take more than 125 bytes.
        """
        if code is None:
            if reason:
                raise InvalidArgumentError("reason", reason, "a reason needs a code")
            return self._build(FC_WS_OP_CLOSE, NULL, 0, True, False)
        if not fc_ws_close_code_valid(code):
            raise InvalidArgumentError("code", code, "not a close code that may be sent")
        payload = int(code).to_bytes(2, "big") + reason.encode("utf-8")
        if len(payload) > 125:
            raise InvalidArgumentError("reason", reason, "close reason over 123 bytes")
        return self._build(FC_WS_OP_CLOSE, <const uint8_t *>PyBytes_AS_STRING(payload),
                           PyBytes_GET_SIZE(payload), True, False)


@cython.final
cdef class Utf8Validator:
    """Incremental UTF-8 validator (the one text messages go through).

    ``feed(data)`` returns False as soon as the text so far can never be
    valid UTF-8; ``complete`` says whether it ends on a character boundary.
    """
    cdef uint32_t state

    def __init__(self):
        """A validator at the start of a text."""
        self.state = FC_UTF8_ACCEPT

    def feed(self, data):
        """Validate the next piece; False once the text is known invalid."""
        cdef const uint8_t[::1] v = data
        cdef size_t n = v.shape[0]
        if n:
            fc_utf8_validate(&self.state, &v[0], n, NULL)
        return self.state != FC_UTF8_REJECT

    @property
    def complete(self):
        """True when everything fed so far is valid, complete UTF-8."""
        return self.state == FC_UTF8_ACCEPT


def utf8_valid(data):
    """True if ``data`` (bytes-like) is valid UTF-8 (Python's strict rules)."""
    cdef const uint8_t[::1] v = data
    cdef size_t n = v.shape[0]
    if n == 0:
        return True
    return bool(fc_utf8_valid(&v[0], n))


def close_code_valid(int code):
    """True if ``code`` may be sent in a close frame (RFC 6455 7.4)."""
    return bool(fc_ws_close_code_valid(code))


def mask(data, key, Py_ssize_t pos=0):
    """``data`` XOR the 4-byte ``key`` as from payload offset ``pos`` (bytes)."""
    cdef const uint8_t[::1] v = data
    cdef const uint8_t[::1] k = key
    cdef size_t n = v.shape[0]
    if k.shape[0] != 4:
        raise InvalidArgumentError("key", key, "a masking key is 4 bytes")
    if pos < 0:
        raise InvalidArgumentError("pos", pos, "must be >= 0")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    if n:
        fc_ws_mask(<uint8_t *>PyBytes_AS_STRING(out), &v[0], n, &k[0], pos)
    return out
