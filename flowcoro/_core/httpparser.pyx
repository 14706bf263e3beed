# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""flowcoro._core.httpparser — Python objects over the C HTTP/1.1 parser.

Theory of operation
-------------------
Each parser object embeds one ``fc_http_parser_t`` (csrc/http/parser.h: the
rules, the strictness choices and the state machine are there).  ``feed()``
calls ``fc_http_parser_execute`` in a loop; every call returns one C event
and ``feed()`` turns it into a Python object:

* HEAD -> a :class:`RequestHead` / :class:`ResponseHead`, built here in one
  go from the parser's scratch buffer: method, target, version, the header
  list of ``(name, value)`` bytes tuples and the framing facts the C side
  already worked out (keep-alive, chunked, Content-Length, Upgrade,
  100-continue).  No Python code runs per header.
* BODY -> ``bytes`` (the input itself, uncopied, when one body event covers
  all of it).
* TRAILERS + END -> one :class:`EndOfMessage` carrying the trailers.
* PAUSED -> the parser stops after a protocol switch (Upgrade, CONNECT, a
  101 response); the rest of the input is kept in ``trailing_data``.

No callback ever runs from C, so a Python exception can never cross C.  C
statuses become Python exceptions in one function, :func:`_raise_status`.

Rules
-----
* One parser per connection, used by one thread at a time.
* A parse error raises :class:`~flowcoro.errors.HttpParseError`; its
  ``events`` attribute holds what the same ``feed()`` completed before the
  error.  The parser is then dead: every later call raises the same error.
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcmp

from flowcoro._core._c_http cimport *

from flowcoro.errors import HttpParseError, InvalidArgumentError, InvalidStateError

__all__ = ["RequestParser", "ResponseParser", "RequestHead", "ResponseHead", "EndOfMessage",
           "DEFAULT_LIMITS"]

#: The limits a parser gets when none are given (the issue's defaults).
DEFAULT_LIMITS = {
    "max_start_line": 8 * 1024,     # request line / status line
    "max_header_field": 8 * 1024,   # one header field line
    "max_headers": 100,             # header field lines (and trailer lines)
    "max_header_block": 64 * 1024,  # the whole header section (and trailer section)
    "max_chunk_line": 4 * 1024,     # chunk-size line with extensions
    "max_body": 1024 * 1024,        # body bytes (RequestParser; ResponseParser: None)
}

# Limits are uint32 in C; 1 GiB is far beyond any sane head.
DEF MAX_LIMIT = 1 << 30
DEF NO_BODY_LIMIT = 0xFFFFFFFFFFFFFFFF

# Freelists below: 32 heads / ends cover a deep pipeline burst on one
# connection without touching the allocator; responses are rarer (8).

# Shared objects for the values every request repeats.
cdef bytes b_GET = b"GET", b_POST = b"POST", b_PUT = b"PUT", b_HEAD = b"HEAD"
cdef bytes b_DELETE = b"DELETE", b_OPTIONS = b"OPTIONS", b_PATCH = b"PATCH"
cdef bytes b_CONNECT = b"CONNECT"
cdef str s_11 = "1.1", s_10 = "1.0"
cdef tuple FORMS = (None, "origin", "absolute", "authority", "asterisk")


@cython.final
@cython.freelist(32)
cdef class RequestHead:
    """A request's start line and header section (event of :class:`RequestParser`).

    Attributes:
        method: the method token, e.g. ``b"GET"`` (case-sensitive, as sent).
        target: the request target, as sent (``b"/path?q"``, ``b"http://h/p"``,
            ``b"host:443"`` for CONNECT, ``b"*"``).
        target_form: ``"origin"``, ``"absolute"``, ``"authority"`` or ``"asterisk"``.
        http_version: ``"1.1"`` or ``"1.0"`` (``"1.x"`` for later 1.x, parsed as 1.1).
        headers: list of ``(name, value)`` bytes tuples in arrival order; names
            are lowercased unless the parser was made with
            ``lowercase_names=False``; values have no leading/trailing whitespace.
        keep_alive: the connection may carry another request after this one.
        chunked: the body uses the chunked transfer coding.
        content_length: the Content-Length value, or None.
        expect_continue: an HTTP/1.1 ``Expect: 100-continue`` request: answer
            ``100 Continue`` (or a final status) before reading the body.
        upgrade: the Upgrade header value (``b"websocket"``) when the request
            asks to switch protocols (``Connection: upgrade`` and HTTP/1.1),
            else None.  After such a request (and after CONNECT) the parser pauses.
    """
    cdef readonly bytes method
    cdef readonly bytes target
    cdef readonly str target_form
    cdef readonly str http_version
    cdef readonly list headers
    cdef readonly bint keep_alive
    cdef readonly bint chunked
    cdef readonly object content_length
    cdef readonly bint expect_continue
    cdef readonly object upgrade

    def __repr__(self):
        return (f"RequestHead(method={self.method!r}, target={self.target!r}, "
                f"http_version={self.http_version!r}, headers={self.headers!r}, "
                f"keep_alive={self.keep_alive}, chunked={self.chunked}, "
                f"content_length={self.content_length!r}, "
                f"expect_continue={self.expect_continue}, upgrade={self.upgrade!r})")


@cython.final
@cython.freelist(8)
cdef class ResponseHead:
    """A response's status line and header section (event of :class:`ResponseParser`).

    Attributes:
        status_code: the status code (100..599).  1xx heads are interim: the
            final response follows.
        reason: the reason phrase (may be ``b""``).
        http_version: ``"1.1"`` or ``"1.0"``.
        headers: list of ``(name, value)`` bytes tuples (see RequestHead).
        keep_alive: the connection may carry another response after this one.
        chunked: the body uses the chunked transfer coding.
        content_length: the Content-Length value, or None.
        until_eof: the body runs until the server closes the connection
            (neither chunked nor Content-Length); call ``feed_eof()`` then.
    """
    cdef readonly int status_code
    cdef readonly bytes reason
    cdef readonly str http_version
    cdef readonly list headers
    cdef readonly bint keep_alive
    cdef readonly bint chunked
    cdef readonly object content_length
    cdef readonly bint until_eof

    def __repr__(self):
        return (f"ResponseHead(status_code={self.status_code}, reason={self.reason!r}, "
                f"http_version={self.http_version!r}, headers={self.headers!r}, "
                f"keep_alive={self.keep_alive}, chunked={self.chunked}, "
                f"content_length={self.content_length!r}, until_eof={self.until_eof})")


@cython.final
@cython.freelist(32)
cdef class EndOfMessage:
    """The end of a message's body.

    Attributes:
        trailers: the chunked body's trailer fields as ``(name, value)`` bytes
            tuples (empty for other bodies).  They are not merged into the head.
    """
    cdef readonly list trailers

    def __init__(self, trailers=None):
        """End of a message with these trailer fields (default: none)."""
        self.trailers = [] if trailers is None else list(trailers)

    def __repr__(self):
        return f"EndOfMessage(trailers={self.trailers!r})"

    def __eq__(self, other):
        if type(other) is not EndOfMessage:
            return NotImplemented
        return self.trailers == (<EndOfMessage>other).trailers

    __hash__ = None


cdef uint32_t _limit(str name, object value) except 0:
    if type(value) is not int or value < 1 or value > MAX_LIMIT:
        raise InvalidArgumentError(name, value, f"must be an int in 1..{MAX_LIMIT}")
    return <uint32_t>value


cdef object _raise_status(int status, fc_http_parser_t *p, list events):
    """The one place a C parser status becomes a Python exception."""
    if status == FC_ENOMEM_OWN:
        raise MemoryError()
    raise HttpParseError(fc_http_error_name(p.error).decode("ascii"),
                         fc_http_error_status(p.error), p.error_offset,
                         fc_http_error_message(p.error).decode("ascii"), events)


cdef class _Parser:
    """Shared engine of RequestParser and ResponseParser (not public)."""
    cdef fc_http_parser_t p
    cdef bint ready
    cdef bint detached
    cdef bytes trailing        # input after a protocol switch
    cdef list trailers         # TRAILERS seen, END not yet
    cdef object methods        # ResponseParser: methods of the requests sent, oldest first

    def __dealloc__(self):
        if self.ready:
            fc_http_parser_free(&self.p)

    cdef int _setup(self, fc_http_kind_t kind, uint32_t max_start_line, uint32_t max_field,
                    uint32_t max_fields, uint32_t max_head, uint32_t max_chunk_line,
                    object max_body, uint32_t flags) except -1:
        cdef fc_http_limits_t lim
        if self.ready:
            raise InvalidStateError("parser already initialised")
        lim.max_start_line = max_start_line
        lim.max_field = max_field
        lim.max_fields = max_fields
        lim.max_head = max_head
        lim.max_chunk_line = max_chunk_line
        if max_body is None:
            lim.max_body = NO_BODY_LIMIT
        elif type(max_body) is int and 0 <= max_body < (1 << 63):
            lim.max_body = <uint64_t>max_body
        else:
            raise InvalidArgumentError("max_body", max_body, "must be an int >= 0 or None")
        if fc_http_parser_init(&self.p, kind, &lim, flags) != 0:
            raise MemoryError()
        self.ready = True
        self.trailing = b""
        return 0

    cdef int _check(self) except -1:
        if not self.ready:
            raise InvalidStateError("parser not initialised (call __init__)")
        if self.detached:
            raise InvalidStateError("parser was detached after a protocol switch")
        return 0

    cdef list _fields(self, uint32_t first):
        cdef fc_http_parser_t *p = &self.p
        cdef const fc_http_field_t *f
        cdef uint32_t k
        cdef list out = []
        for k in range(first, p.nfields):
            f = &p.fields[k]
            out.append((PyBytes_FromStringAndSize(p.buf + f.name_off, f.name_len),
                        PyBytes_FromStringAndSize(p.buf + f.value_off, f.value_len)))
        return out

    cdef str _version(self):
        if self.p.http_minor == 1:
            return s_11
        if self.p.http_minor == 0:
            return s_10
        return f"1.{self.p.http_minor}"

    cdef object _head(self):
        raise NotImplementedError

    cdef int _before_execute(self) except -1:
        return 0

    cdef int _after_end(self) except -1:
        return 0

    cdef list _run(self, const char *buf, Py_ssize_t n, object data):
        """Parse buf[0:n]; data is the owner (bytes: reused for a whole-body event)."""
        cdef fc_http_event_t ev
        cdef fc_http_parser_t *p = &self.p
        cdef Py_ssize_t pos = 0
        cdef int status
        cdef list events = []
        while True:
            self._before_execute()
            status = fc_http_parser_execute(p, buf + pos, <size_t>(n - pos), &ev)
            pos += <Py_ssize_t>ev.consumed
            if status != 0:
                _raise_status(status, p, events)
            if ev.type == FC_HTTP_EV_BODY:
                if ev.data == buf and <Py_ssize_t>ev.len == n and type(data) is bytes:
                    events.append(data)
                else:
                    events.append(PyBytes_FromStringAndSize(ev.data, ev.len))
            elif ev.type == FC_HTTP_EV_HEAD:
                events.append(self._head())
            elif ev.type == FC_HTTP_EV_END:
                events.append(self._end())
                self._after_end()
            elif ev.type == FC_HTTP_EV_TRAILERS:
                self.trailers = self._fields(p.trailer_first)
            elif ev.type == FC_HTTP_EV_PAUSED:
                if pos < n:
                    self.trailing += PyBytes_FromStringAndSize(buf + pos, n - pos)
                break
            else:  # FC_HTTP_EV_NONE: all consumed
                break
        return events

    cdef EndOfMessage _end(self):
        cdef EndOfMessage end = EndOfMessage.__new__(EndOfMessage)
        if self.trailers is not None:
            end.trailers = self.trailers
            self.trailers = None
        else:
            end.trailers = []
        return end

    def feed(self, data):
        """Parse the next bytes of the stream; return the events they complete.

        Args:
            data: bytes-like (bytes, bytearray, memoryview); may be empty.

        Returns:
            A list of events in order: a head object, ``bytes`` body pieces,
            :class:`EndOfMessage`; then the next message's, and so on
            (pipelining).  Body pieces follow the input's split; join them for
            the body.  After a protocol switch the parser is paused: the list
            ends there and later data goes to :attr:`trailing_data`.

        Raises:
            HttpParseError: the input is not acceptable HTTP/1.1 (``.status``
                is the answer to send, ``.events`` what came before the error).
            InvalidStateError: the parser was detached.
        """
        cdef Py_buffer view
        cdef list events
        self._check()
        if self.paused:
            self.trailing += bytes(data)
            return []
        if type(data) is bytes:
            return self._run(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), data)
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            events = self._run(<const char *>view.buf, view.len, None)
        finally:
            PyBuffer_Release(&view)
        return events

    def feed_eof(self):
        """The peer closed the connection: finish what the close completes.

        Returns:
            ``[EndOfMessage]`` for a response body that runs until close, else
            ``[]`` (between messages, or paused).

        Raises:
            HttpParseError: ``incomplete_message`` when the close cut a
                message short.
        """
        cdef fc_http_event_t ev
        cdef int status
        cdef list events = []
        self._check()
        status = fc_http_parser_finish(&self.p, &ev)
        if status != 0:
            _raise_status(status, &self.p, events)
        if ev.type == FC_HTTP_EV_END:
            events.append(self._end())
            self._after_end()
        return events

    @property
    def paused(self):
        """True after a protocol switch (Upgrade, CONNECT, 101): the rest is not HTTP."""
        return self.ready and not self.detached and fc_http_parser_paused(&self.p) != 0

    @property
    def trailing_data(self):
        """The bytes received after the switch (not consumed; see :meth:`detach`)."""
        return self.trailing

    def detach(self):
        """Accept the protocol switch: return the bytes after it and retire the parser.

        Returns:
            The bytes that followed the switching message (the start of the
            new protocol's stream).

        Raises:
            InvalidStateError: the parser is not paused.
        """
        self._check()
        if not self.paused:
            raise InvalidStateError("detach() needs a parser paused after a protocol switch")
        data = self.trailing
        self.trailing = b""
        self.detached = True
        return data

    def resume(self):
        """Decline the protocol switch: go on parsing HTTP/1.1 from the bytes kept.

        Returns:
            The events those bytes complete (as :meth:`feed`).

        Raises:
            InvalidStateError: the parser is not paused.
            HttpParseError: as :meth:`feed`.
        """
        self._check()
        if not self.paused:
            raise InvalidStateError("resume() needs a parser paused after a protocol switch")
        fc_http_parser_resume(&self.p)
        data = self.trailing
        self.trailing = b""
        return self.feed(data)

    @property
    def offset(self):
        """Bytes of the stream consumed so far."""
        return self.p.stream_off

    @property
    def idle(self):
        """True between messages (nothing of the next one received yet)."""
        return self.ready and not self.detached and fc_http_parser_idle(&self.p) != 0


cdef uint32_t _flags(bint require_host, bint lowercase_names, bint lenient_bare_lf,
                     bint lenient_obs_fold):
    cdef uint32_t f = 0
    if require_host:
        f |= FC_HTTP_REQUIRE_HOST
    if lowercase_names:
        f |= FC_HTTP_LOWERCASE_NAMES
    if lenient_bare_lf:
        f |= FC_HTTP_LENIENT_BARE_LF
    if lenient_obs_fold:
        f |= FC_HTTP_LENIENT_OBS_FOLD
    return f


@cython.final
@cython.embedsignature(False)   # Cython misplaces the "*" of keyword-only arguments
cdef class RequestParser(_Parser):
    """RequestParser(*, max_request_line=8192, max_header_field=8192, max_headers=100, max_header_block=65536, max_chunk_line=4096, max_body=1048576, require_host=True, lowercase_names=True, lenient_bare_lf=False, lenient_obs_fold=False)

    Incremental, strict HTTP/1.1 request parser (the server side).

    Feed it the bytes of one connection as they arrive; it returns
    :class:`RequestHead`, ``bytes`` body pieces and :class:`EndOfMessage`
    events, message after message (keep-alive, pipelining).  Every limit is
    a keyword argument; a request over one raises
    :class:`~flowcoro.errors.HttpParseError` with the status to answer
    (413, 414, 431).

    Args:
        max_request_line: bytes of the request line, CRLF excluded (414 beyond).
        max_header_field: bytes of one header field line (431 beyond).
        max_headers: header field lines (431 beyond); trailers alike.
        max_header_block: bytes of the header section (431 beyond); trailers alike.
        max_chunk_line: bytes of a chunk-size line with its extensions (400 beyond).
        max_body: body bytes (413 beyond, raised at the head when
            Content-Length says so, before any 100-continue); None: no limit.
        require_host: reject an HTTP/1.1 request without Host (RFC 9112 3.2).
        lowercase_names: header names come lowercased (as ASGI wants them).
        lenient_bare_lf: accept LF without CR at the end of the request line
            and of header lines (never in chunked framing).
        lenient_obs_fold: replace obsolete line folding by one space instead
            of rejecting it.

    Example::

        parser = RequestParser()
        for event in parser.feed(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n"):
            if type(event) is RequestHead: ...
            elif type(event) is bytes: ...          # body piece
            else: ...                               # EndOfMessage
    """

    def __init__(self, *, max_request_line=DEFAULT_LIMITS["max_start_line"],
                 max_header_field=DEFAULT_LIMITS["max_header_field"],
                 max_headers=DEFAULT_LIMITS["max_headers"],
                 max_header_block=DEFAULT_LIMITS["max_header_block"],
                 max_chunk_line=DEFAULT_LIMITS["max_chunk_line"],
                 max_body=DEFAULT_LIMITS["max_body"], bint require_host=True,
                 bint lowercase_names=True, bint lenient_bare_lf=False,
                 bint lenient_obs_fold=False):
        """Make a request parser; the arguments are described on the class."""
        self._setup(FC_HTTP_REQUEST, _limit("max_request_line", max_request_line),
                    _limit("max_header_field", max_header_field),
                    _limit("max_headers", max_headers),
                    _limit("max_header_block", max_header_block),
                    _limit("max_chunk_line", max_chunk_line), max_body,
                    _flags(require_host, lowercase_names, lenient_bare_lf, lenient_obs_fold))

    cdef object _head(self):
        cdef fc_http_parser_t *p = &self.p
        cdef RequestHead h = RequestHead.__new__(RequestHead)
        cdef const char *m = p.buf + p.method_off
        cdef uint32_t ml = p.method_len
        cdef uint32_t mf = p.mflags
        if ml == 3 and memcmp(m, b"GET", 3) == 0:
            h.method = b_GET
        elif ml == 4 and memcmp(m, b"POST", 4) == 0:
            h.method = b_POST
        elif ml == 3 and memcmp(m, b"PUT", 3) == 0:
            h.method = b_PUT
        elif ml == 4 and memcmp(m, b"HEAD", 4) == 0:
            h.method = b_HEAD
        elif ml == 6 and memcmp(m, b"DELETE", 6) == 0:
            h.method = b_DELETE
        elif ml == 7 and memcmp(m, b"OPTIONS", 7) == 0:
            h.method = b_OPTIONS
        elif ml == 5 and memcmp(m, b"PATCH", 5) == 0:
            h.method = b_PATCH
        elif ml == 7 and memcmp(m, b"CONNECT", 7) == 0:
            h.method = b_CONNECT
        else:
            h.method = PyBytes_FromStringAndSize(m, ml)
        h.target = PyBytes_FromStringAndSize(p.buf + p.target_off, p.target_len)
        h.target_form = FORMS[p.target_form]
        h.http_version = self._version()
        h.headers = self._fields(0)
        h.keep_alive = (mf & FC_HTTP_M_KEEP_ALIVE) != 0
        h.chunked = (mf & FC_HTTP_M_CHUNKED) != 0
        h.content_length = p.content_length if mf & FC_HTTP_M_CONTENT_LENGTH else None
        h.expect_continue = (mf & FC_HTTP_M_EXPECT_CONTINUE) != 0
        if mf & FC_HTTP_M_UPGRADE:
            h.upgrade = PyBytes_FromStringAndSize(p.buf + p.upgrade_off, p.upgrade_len)
        else:
            h.upgrade = None
        return h


@cython.final
@cython.embedsignature(False)
cdef class ResponseParser(_Parser):
    """ResponseParser(*, max_status_line=8192, max_header_field=8192, max_headers=100, max_header_block=65536, max_chunk_line=4096, max_body=None, lowercase_names=True, lenient_bare_lf=False, lenient_obs_fold=False)

    Incremental, strict HTTP/1.1 response parser (the client side).

    Same engine and rules as :class:`RequestParser`.  A response's framing
    depends on the request it answers, so tell the parser which methods were
    sent, in order, with :meth:`request_sent` (a response to HEAD has no
    body; a 2xx to CONNECT opens a tunnel).  Without that, every response is
    taken to answer a GET.  1xx responses are returned as interim heads.

    Args:
        max_status_line: bytes of the status line, CRLF excluded.
        max_header_field, max_headers, max_header_block, max_chunk_line:
            as for :class:`RequestParser`.
        max_body: body bytes; None (the default here): no limit.
        lowercase_names, lenient_bare_lf, lenient_obs_fold: as for
            :class:`RequestParser`.
    """

    def __init__(self, *, max_status_line=DEFAULT_LIMITS["max_start_line"],
                 max_header_field=DEFAULT_LIMITS["max_header_field"],
                 max_headers=DEFAULT_LIMITS["max_headers"],
                 max_header_block=DEFAULT_LIMITS["max_header_block"],
                 max_chunk_line=DEFAULT_LIMITS["max_chunk_line"],
                 max_body=None, bint lowercase_names=True, bint lenient_bare_lf=False,
                 bint lenient_obs_fold=False):
        """Make a response parser; the arguments are described on the class."""
        self._setup(FC_HTTP_RESPONSE, _limit("max_status_line", max_status_line),
                    _limit("max_header_field", max_header_field),
                    _limit("max_headers", max_headers),
                    _limit("max_header_block", max_header_block),
                    _limit("max_chunk_line", max_chunk_line), max_body,
                    _flags(False, lowercase_names, lenient_bare_lf, lenient_obs_fold))
        self.methods = _deque()

    def request_sent(self, method):
        """Record that a request with this method was sent (responses come in order).

        Args:
            method: the request's method, e.g. ``b"HEAD"`` (bytes or str).
        """
        if isinstance(method, str):
            method = method.encode("ascii")
        self.methods.append(bytes(method))

    cdef int _before_execute(self) except -1:
        cdef bytes m
        if self.methods:
            m = self.methods[0]
            self.p.req_was_head = m == b"HEAD"
            self.p.req_was_connect = m == b"CONNECT"
        else:
            self.p.req_was_head = 0
            self.p.req_was_connect = 0
        return 0

    cdef int _after_end(self) except -1:
        if self.p.status >= 200 and self.methods:
            self.methods.popleft()
        return 0

    cdef object _head(self):
        cdef fc_http_parser_t *p = &self.p
        cdef ResponseHead h = ResponseHead.__new__(ResponseHead)
        cdef uint32_t mf = p.mflags
        h.status_code = p.status
        h.reason = PyBytes_FromStringAndSize(p.buf + p.reason_off, p.reason_len)
        h.http_version = self._version()
        h.headers = self._fields(0)
        h.keep_alive = (mf & FC_HTTP_M_KEEP_ALIVE) != 0
        h.chunked = (mf & FC_HTTP_M_CHUNKED) != 0
        h.content_length = p.content_length if mf & FC_HTTP_M_CONTENT_LENGTH else None
        h.until_eof = (mf & FC_HTTP_M_BODY_UNTIL_EOF) != 0
        return h


from collections import deque as _deque
