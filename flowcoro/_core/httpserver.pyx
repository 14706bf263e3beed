# cython: language_level=3, boundscheck=False, wraparound=False
"""The hot path of flowcoro.http.HttpServer: connection protocol, request and
response objects, router and response writer, in Cython.

Theory of operation
-------------------
One ``HttpConnection`` (an asyncio Protocol) per TCP connection owns one C
request parser (csrc/http/parser.c).  ``data_received`` runs the parser over
the bytes and turns its events into ``Request`` objects without a Python call
per header.  Requests are answered strictly in order (HTTP/1.1 pipelining):

* ``self.queue`` holds parsed requests that wait for their turn; the first
  one is the *active* request, whose handler runs (or whose response is being
  written).  Invariant: a request's handler starts only when every request
  before it on the connection has been answered completely.
* A handler runs in a HandlerTask (below) whose first step runs at once: a
  handler that does not suspend finishes inside ``data_received`` and its response
  goes into the connection's output buffer; the whole batch is written with one ``write()`` at
  the end of ``data_received`` (that is what makes pipelining cheap).  A
  handler that suspends finishes later, from its Task's done callback.
* Body bytes go to the request they belong to (``self.reading``, the request
  whose body the parser is in), which may be queued behind the active one.
  Reading pauses while more than ``max_pipeline`` requests are queued or more
  than ``body_buffer`` bytes of body wait unread.

Deadlines (header read, body idle, keep-alive idle, write) are not a timer
per request: each connection keeps ``deadline``/``deadline_kind`` and the
server's sweeper (ServerState.sweep, once a second) closes those past it.

Threading: everything here runs on the loop's thread; nothing is shared.
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcmp, memchr, memcpy
from libc.stdlib cimport malloc, free, realloc
from libc.time cimport time, time_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from cpython.list cimport PyList_GET_SIZE, PyList_GET_ITEM
from cpython.tuple cimport PyTuple_GET_SIZE, PyTuple_GET_ITEM
from cpython.float cimport PyFloat_AS_DOUBLE

from flowcoro._core._c_http cimport *

import asyncio
import json as _json
import os
import sys
from collections import deque as _deque
import logging
from email.utils import formatdate as _formatdate
from urllib.parse import unquote as _unquote, parse_qsl as _parse_qsl

from flowcoro.errors import HttpException, HttpHeaderError, InvalidArgumentError

cdef extern from "Python.h":
    object PyContext_CopyCurrent()
    object PyContext_Copy(object ctx)
    int PyContext_Enter(object ctx) except -1
    int PyContext_Exit(object ctx) except -1
    ctypedef enum PySendResult:
        PYGEN_RETURN
        PYGEN_ERROR
        PYGEN_NEXT
    PySendResult PyIter_Send(object iter, object arg, PyObject **presult)
    ctypedef struct PyObject

from cpython.ref cimport Py_XDECREF
from cpython.dict cimport PyDict_GetItem

cdef object log = logging.getLogger("flowcoro.http")
from random import random as _random


cdef inline double mono() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9
cdef object json_dumps = _json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
cdef object json_loads = _json.loads
cdef object aio_Task = asyncio.Task
cdef object aio_CancelledError = asyncio.CancelledError

# current_task(loop) without the call: on CPython 3.11-3.13 the C
# _enter_task/_leave_task keep asyncio.tasks._current_tasks, a dict keyed by
# loop, and current_task() is a lookup in it.  Where that does not hold
# (3.14 keeps the current task in thread state), the call is made.
cdef dict _cur_tasks = None
if sys.version_info < (3, 14) and type(getattr(asyncio.tasks, "_current_tasks", None)) is dict:
    _cur_tasks = asyncio.tasks._current_tasks

cdef object aio_current_task(object loop):
    cdef PyObject *p
    if _cur_tasks is None:
        return asyncio.current_task(loop)
    p = PyDict_GetItem(_cur_tasks, loop)
    return None if p == NULL else <object>p
cdef object aio_InvalidStateError = asyncio.InvalidStateError
cdef object _enter_task = asyncio.tasks._enter_task
cdef object _leave_task = asyncio.tasks._leave_task


cdef int enter_task(object loop, object task) except -1:
    """asyncio.tasks._enter_task, as a dict store where _cur_tasks is the
    dict it keeps (same checks, same error)."""
    if _cur_tasks is None:
        _enter_task(loop, task)
        return 0
    cdef PyObject *p = PyDict_GetItem(_cur_tasks, loop)
    if p != NULL:
        raise RuntimeError(f"Cannot enter into task {task!r} while another "
                           f"task {<object>p!r} is being executed.")
    _cur_tasks[loop] = task
    return 0


cdef int leave_task(object loop, object task) except -1:
    """asyncio.tasks._leave_task, likewise."""
    if _cur_tasks is None:
        _leave_task(loop, task)
        return 0
    cdef PyObject *p = PyDict_GetItem(_cur_tasks, loop)
    if p != <PyObject *>task:
        raise RuntimeError(f"Leaving task {task!r} does not match the current "
                           f"task {None if p == NULL else <object>p!r}.")
    del _cur_tasks[loop]
    return 0

# Deadline kinds (HttpConnection.deadline_kind).
DEF DL_NONE = 0
DEF DL_IDLE = 1       # keep-alive idle: close silently
DEF DL_HEAD = 2       # request head in progress: 408, close
DEF DL_BODY = 3       # body read idle: 408, close
DEF DL_WRITE = 4      # peer not reading our response: abort
DEF DL_LINGER = 5     # lingering close after an error: close
DEF LINGER_SECONDS = 2.0

cdef dict REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created",
    202: "Accepted", 203: "Non-Authoritative Information", 204: "No Content",
    205: "Reset Content", 206: "Partial Content", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified",
    307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 408: "Request Timeout",
    409: "Conflict", 410: "Gone", 411: "Length Required",
    412: "Precondition Failed", 413: "Content Too Large", 414: "URI Too Long",
    415: "Unsupported Media Type", 416: "Range Not Satisfiable",
    417: "Expectation Failed", 421: "Misdirected Request",
    422: "Unprocessable Content", 426: "Upgrade Required",
    428: "Precondition Required", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}
cdef dict STATUS_LINES = {}     # int status -> b"HTTP/1.1 200 OK\r\n"
cdef dict CT_LINES = {}         # content type str -> b"content-type: ...\r\n"

cdef bytes TEXT_PLAIN = b"text/plain; charset=utf-8"
cdef bytes APP_JSON = b"application/json"
cdef bytes APP_OCTET = b"application/octet-stream"
cdef bytes CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"


def reason_phrase(int status):
    """The reason phrase FlowCoro sends for ``status`` ('' if unknown)."""
    return REASONS.get(status, "")


cdef bytes status_line(int status):
    cdef bytes line = STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise HttpHeaderError(f"invalid status code {status!r}")
        line = f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\n".encode("latin-1")
        STATUS_LINES[status] = line
    return line


# -- Date header, formatted once per second ---------------------------------
cdef time_t date_second = 0
cdef bytes date_line = b""


cdef bytes current_date_line():
    global date_second, date_line
    cdef time_t now = time(NULL)
    if now != date_second:
        date_second = now
        date_line = b"date: " + _formatdate(<double>now, usegmt=True).encode("ascii") + b"\r\n"
    return date_line


# -- header validation (the response writer's side of smuggling defence) ----
# tchar per RFC 9110 5.6.2.
cdef bint TCHAR[256]
cdef int _i
for _i in range(256):
    TCHAR[_i] = (48 <= _i <= 57 or 65 <= _i <= 90 or 97 <= _i <= 122
                 or _i in b"!#$%&'*+-.^_`|~")


cdef bytes header_name_bytes(object name):
    cdef bytes b
    cdef Py_ssize_t k, n
    cdef const unsigned char *s
    if type(name) is str:
        try:
            b = (<str>name).encode("latin-1")
        except UnicodeEncodeError:
            raise HttpHeaderError(f"header name {name!r} is not latin-1")
    elif type(name) is bytes:
        b = <bytes>name
    else:
        raise HttpHeaderError(f"header name must be str or bytes, not {type(name).__name__}")
    n = PyBytes_GET_SIZE(b)
    s = <const unsigned char *>PyBytes_AS_STRING(b)
    if n == 0:
        raise HttpHeaderError("empty header name")
    for k in range(n):
        if not TCHAR[s[k]]:
            raise HttpHeaderError(f"invalid character {chr(s[k])!r} in header name {b!r}")
    return b


cdef bytes header_value_bytes(object value):
    cdef bytes b
    cdef Py_ssize_t k, n
    cdef const unsigned char *s
    cdef unsigned char c
    if type(value) is str:
        try:
            b = (<str>value).encode("latin-1")
        except UnicodeEncodeError:
            raise HttpHeaderError(f"header value {value!r} is not latin-1")
    elif type(value) is bytes:
        b = <bytes>value
    elif type(value) is int:
        return str(value).encode("ascii")
    else:
        raise HttpHeaderError(f"header value must be str, bytes or int, not {type(value).__name__}")
    n = PyBytes_GET_SIZE(b)
    s = <const unsigned char *>PyBytes_AS_STRING(b)
    for k in range(n):
        c = s[k]
        # field-value = *( VCHAR / obs-text / SP / HTAB ): CR, LF, NUL and
        # the other controls would let an application split the response.
        if (c < 0x20 and c != 0x09) or c == 0x7f:
            raise HttpHeaderError(f"control character {chr(c)!r} in header value {b!r}")
    return b


cdef bytes content_type_line(object ct):
    cdef bytes line = CT_LINES.get(ct)
    if line is None:
        line = b"content-type: " + header_value_bytes(ct) + b"\r\n"
        if len(CT_LINES) < 256:
            CT_LINES[ct] = line
    return line


# -- Headers ------------------------------------------------------------------
@cython.final
cdef class Headers:
    """Read-only, case-insensitive view of a request's header fields.

    Values are ``str`` (decoded as latin-1, as the bytes came); ``raw`` is
    the list of ``(name, value)`` byte pairs with lowercased names, in order.
    """
    cdef readonly list raw

    def __cinit__(self, list raw):
        self.raw = raw

    cdef bytes _key(self, object name):
        if type(name) is str:
            return (<str>name).lower().encode("latin-1")
        return (<bytes>name).lower()

    def get(self, name, default=None):
        """The first value of header ``name`` (any case), or ``default``."""
        cdef bytes key = self._key(name)
        cdef tuple pair
        for pair in self.raw:
            if <bytes>pair[0] == key:
                return (<bytes>pair[1]).decode("latin-1")
        return default

    def getall(self, name):
        """Every value of header ``name``, in order (an empty list if none)."""
        cdef bytes key = self._key(name)
        return [(<bytes>v).decode("latin-1") for k, v in self.raw if k == key]

    def __getitem__(self, name):
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name):
        cdef bytes key = self._key(name)
        cdef tuple pair
        for pair in self.raw:
            if <bytes>pair[0] == key:
                return True
        return False

    def __iter__(self):
        return iter([(<bytes>k).decode("latin-1") for k, v in self.raw])

    def __len__(self):
        return len(self.raw)

    def keys(self):
        """Header names (lowercase str), repeated names included."""
        return [(<bytes>k).decode("latin-1") for k, v in self.raw]

    def items(self):
        """``(name, value)`` str pairs, in order."""
        return [((<bytes>k).decode("latin-1"), (<bytes>v).decode("latin-1")) for k, v in self.raw]

    def __repr__(self):
        return f"Headers({self.items()!r})"


# -- Response -----------------------------------------------------------------
cdef class Response:
    """An HTTP response a handler returns.

    ``Response(body=b"", status=200, headers=None, content_type=None)``:
    ``body`` is bytes or str (str is sent as UTF-8); ``headers`` a mapping
    or a list of ``(name, value)`` pairs (str or bytes; a name or value with
    CR, LF, NUL or another control character is refused with
    :class:`~flowcoro.errors.HttpHeaderError` and the client gets a 500);
    ``content_type`` defaults to text/plain for str and
    application/octet-stream for bytes.  Content-Length and Date are added
    by the server.  Use :meth:`json` and :meth:`text` to build the common
    kinds; :class:`StreamingResponse` and :class:`FileResponse` for bodies
    that are not in memory.
    """
    cdef public int status
    cdef public object body
    cdef public object headers
    cdef public object content_type

    def __init__(self, body=b"", int status=200, headers=None, content_type=None):
        if type(body) is str:
            body = (<str>body).encode("utf-8")
            if content_type is None:
                content_type = TEXT_PLAIN
        elif body is None:
            body = b""
        elif not isinstance(body, (bytes, bytearray, memoryview)) and not _is_stream_body(self):
            raise TypeError(f"body must be bytes or str, not {type(body).__name__}")
        self.body = body
        self.status = status
        self.headers = headers
        self.content_type = content_type

    @staticmethod
    def json(obj, int status=200, headers=None):
        """A response whose body is ``obj`` as compact UTF-8 JSON."""
        return Response(json_dumps(obj).encode("utf-8"), status, headers, APP_JSON)

    @staticmethod
    def text(str text, int status=200, headers=None, content_type=TEXT_PLAIN):
        """A text/plain (UTF-8) response."""
        return Response(text.encode("utf-8"), status, headers, content_type)

    def set_header(self, name, value):
        """Add header ``name: value`` (checked when the response is written)."""
        if self.headers is None:
            self.headers = []
        elif not isinstance(self.headers, list):
            self.headers = list(self.headers.items())
        self.headers.append((name, value))

    def __repr__(self):
        return f"<{type(self).__name__} {self.status}>"


cdef bint _is_stream_body(Response r):
    return isinstance(r, StreamingResponse)


cdef class StreamingResponse(Response):
    """A response whose body comes from an (async) iterator of bytes or str.

    Sent with ``Transfer-Encoding: chunked`` to HTTP/1.1 clients (or with
    ``content_length=`` when you know it), closing the connection at the
    end for HTTP/1.0 clients.  The writer waits while the client is not
    reading (transport flow control), so a slow client holds memory bounded
    by the transport's high-water mark.
    """
    cdef public object content_length

    def __init__(self, body, int status=200, headers=None, content_type=APP_OCTET,
                 content_length=None):
        Response.__init__(self, body, status, headers, content_type)
        self.content_length = content_length


cdef class FileResponse(Response):
    """A response whose body is a file, sent with ``loop.sendfile``
    (``os.sendfile`` where the transport allows, a read/write loop if not).

    ``FileResponse(path, status=200, headers=None, content_type=None)``;
    the content type is guessed from the file name when not given.  A
    missing or unreadable file answers 404.
    """
    cdef public object path

    def __init__(self, path, int status=200, headers=None, content_type=None):
        if content_type is None:
            import mimetypes
            content_type = mimetypes.guess_type(str(path))[0] or APP_OCTET
        Response.__init__(self, b"", status, headers, content_type)
        self.path = path


class _Sent:
    """The type of RESPONSE_SENT."""
    def __repr__(self):
        return "RESPONSE_SENT"


#: Returned (by Request.end_response()) when the handler wrote its response
#: itself with start_response()/write(); the server then only moves on.
RESPONSE_SENT = _Sent()


def as_response(result):
    """A handler's return value as a :class:`Response` (str, bytes, dict,
    list, None or a Response; TypeError for anything else)."""
    return to_response(result)


cdef Response to_response(object result):
    """Turn a handler's return value into a Response."""
    cdef type t = type(result)
    if t is Response or isinstance(result, Response):
        return <Response>result
    if t is str:
        return Response((<str>result).encode("utf-8"), 200, None, TEXT_PLAIN)
    if t is bytes or t is bytearray or t is memoryview:
        return Response(result, 200, None, APP_OCTET)
    if t is dict or t is list:
        return Response(json_dumps(result).encode("utf-8"), 200, None, APP_JSON)
    if result is None:
        return Response(b"", 204)
    raise TypeError(f"a handler must return str, bytes, dict, list, None or a Response, "
                    f"not {t.__name__}")


# -- Router -------------------------------------------------------------------
cdef class _Node:
    cdef dict children          # static segment -> _Node
    cdef _Node param            # the {name} child, if any
    cdef str param_name
    cdef object convert         # str -> value (raises ValueError to refuse)
    cdef str param_kind         # "str", "int", "float", "path"
    cdef dict methods           # method str -> handler (routes ending here)

    def __cinit__(self):
        self.children = {}
        self.methods = {}


cdef dict CONVERTERS = {"str": str, "int": int, "float": float, "path": str}


cdef class Router:
    """Routes ``(method, path)`` to a handler in O(path length).

    Patterns are absolute paths whose segments are literal or
    ``{name}`` / ``{name:int}`` / ``{name:float}`` / ``{name:str}``, and a
    last ``{name:path}`` segment that takes the rest of the path.  Literal
    segments win over parameters.  Paths without parameters are looked up
    in one dict.  GET routes also answer HEAD.
    """
    cdef dict static            # path -> {method: handler}
    cdef _Node root
    cdef readonly list routes   # (methods tuple, pattern, handler), as added

    def __cinit__(self):
        self.static = {}
        self.root = _Node()
        self.routes = []

    def add(self, str pattern, handler, methods=("GET",)):
        """Add a route; ``methods`` is an iterable of method names."""
        cdef list segs
        cdef _Node node
        cdef str seg, name, kind
        cdef dict table
        if not pattern.startswith("/"):
            raise ValueError(f"route pattern must start with '/': {pattern!r}")
        ms = tuple(m.upper() for m in methods)
        if "{" not in pattern:
            table = self.static.setdefault(pattern, {})
        else:
            node = self.root
            segs = pattern[1:].split("/")
            for k, seg in enumerate(segs):
                if seg.startswith("{") and seg.endswith("}"):
                    name, _, kind = seg[1:len(seg) - 1].partition(":")
                    kind = kind or "str"
                    if kind not in CONVERTERS:
                        raise ValueError(f"unknown parameter type {kind!r} in {pattern!r}")
                    if kind == "path" and k != len(segs) - 1:
                        raise ValueError(f"{{{name}:path}} must be the last segment: {pattern!r}")
                    if not name.isidentifier():
                        raise ValueError(f"bad parameter name {name!r} in {pattern!r}")
                    if node.param is None:
                        node.param = _Node()
                        node.param_name = name
                        node.param_kind = kind
                        node.convert = CONVERTERS[kind]
                    elif node.param_name != name or node.param_kind != kind:
                        raise ValueError(f"{pattern!r} conflicts with an earlier route "
                                         f"({{{node.param_name}:{node.param_kind}}} here)")
                    node = node.param
                elif "{" in seg or "}" in seg:
                    raise ValueError(f"bad segment {seg!r} in {pattern!r}")
                else:
                    child = node.children.get(seg)
                    if child is None:
                        child = node.children[seg] = _Node()
                    node = child
            table = node.methods
        for m in ms:
            if m in table:
                raise ValueError(f"route {m} {pattern} is defined twice")
            table[m] = handler
        self.routes.append((ms, pattern, handler))

    cpdef tuple match(self, str method, str path):
        """``(handler, params)``; ``(None, 404)`` or ``(None, (405, allowed))``."""
        cdef dict table = self.static.get(path)
        cdef dict params
        cdef object h
        if table is not None:
            h = table.get(method)
            if h is None and method == "HEAD":
                h = table.get("GET")
            if h is not None:
                return h, None
        params = {}
        cdef _Node node = self._walk(path, params)
        if node is None or not node.methods:
            if table is not None:
                return None, (405, _allowed(table))
            return None, 404
        h = node.methods.get(method)
        if h is None and method == "HEAD":
            h = node.methods.get("GET")
        if h is None:
            return None, (405, _allowed(node.methods))
        return h, params

    cdef _Node _walk(self, str path, dict params):
        cdef _Node node = self.root
        cdef _Node child
        cdef Py_ssize_t start = 1, end, n = len(path)
        cdef str seg
        if n == 0 or path[0] != "/":
            return None
        while True:
            end = path.find("/", start)
            if end < 0:
                end = n
            seg = path[start:end]
            child = node.children.get(seg)
            if child is None:
                child = node.param
                if child is None:
                    return None
                if node.param_kind == "path":
                    params[node.param_name] = path[start:]
                    return child
                if not seg:
                    return None
                try:
                    params[node.param_name] = node.convert(seg)
                except ValueError:
                    return None
            node = child
            if end >= n:
                return node
            start = end + 1


cdef str _allowed(dict table):
    ms = set(table)
    if "GET" in ms:
        ms.add("HEAD")
    return ", ".join(sorted(ms))


# -- Request ------------------------------------------------------------------
cdef class Request:
    """One HTTP request, as a handler sees it.

    Attributes: ``method`` (str), ``path`` (str, percent-decoded),
    ``raw_path`` (bytes, as sent), ``query_string`` (bytes), ``query``
    (dict of str, last value wins), ``headers`` (:class:`Headers`),
    ``path_params`` (dict, converted per the route), ``http_version``
    ("1.1" or "1.0"), ``keep_alive``, ``client`` (peer address),
    ``state`` (a dict for middleware to pass things along).

    The body is read with ``await request.body()`` (whole, bounded by the
    server's ``max_body``), ``await request.json()``, ``await
    request.text()``, or streamed with ``async for chunk in
    request.stream()``.  A client that sent ``Expect: 100-continue`` gets
    its ``100 Continue`` when the handler first reads the body.
    """
    cdef readonly str method
    cdef readonly str path
    cdef readonly bytes raw_path
    cdef readonly bytes query_string
    cdef readonly str http_version
    cdef readonly bint keep_alive
    cdef readonly bint expect_continue
    cdef readonly object content_length
    cdef readonly object upgrade
    cdef public object path_params
    cdef list raw_headers       # built on first use from head/fields
    cdef bytes head             # copy of the parser's head buffer (owner of the fields' bytes)
    cdef fc_http_field_t *fields  # malloc'ed copy of the field offsets; freed in __dealloc__
    cdef uint32_t nfields
    cdef Headers _headers
    cdef object _query
    cdef object _state
    cdef HttpConnection conn
    # body state
    cdef list chunks            # received, unread pieces
    cdef Py_ssize_t buffered    # bytes in chunks
    cdef bint complete          # EndOfMessage seen (or no body)
    cdef bint consumed          # body() / stream() has taken it
    cdef object waiter          # Future a reader waits on
    cdef bint continue_sent
    cdef bint has_body
    cdef object error           # exception to raise in readers (connection lost)
    cdef bytes whole            # body() result, cached
    cdef bint discard           # handler finished without the body: drop it
    cdef bint started, ended, chunked   # start_response() / end_response() state
    cdef Py_ssize_t remaining           # body bytes still owed (Content-Length), or -1
    cdef int status_out                 # the status of the head written (_write_head), or 0
    # observation (ServerState.timing / trace_call): set only when enabled
    cdef readonly object route          # the route pattern that matched (None: none)
    cdef RouteObs obs                   # its observation table (None: no route)
    cdef double t0                      # mono() when the handler started
    cdef bint traceparent               # the request carries a traceparent header

    def __dealloc__(self):
        if self.fields != NULL:
            free(self.fields)

    cdef list _raw_headers(self):
        # Invariant: fields[k] offsets index into head (a private copy).
        cdef uint32_t k
        cdef const fc_http_field_t *f
        cdef const char *b
        cdef list out
        if self.raw_headers is None:
            out = []
            b = PyBytes_AS_STRING(self.head)
            for k in range(self.nfields):
                f = &self.fields[k]
                out.append((PyBytes_FromStringAndSize(b + f.name_off, f.name_len),
                            PyBytes_FromStringAndSize(b + f.value_off, f.value_len)))
            self.raw_headers = out
            free(self.fields)
            self.fields = NULL
            self.head = None
        return self.raw_headers

    @property
    def headers(self):
        """The header fields (:class:`Headers`)."""
        if self._headers is None:
            self._headers = Headers(self._raw_headers())
        return self._headers

    @property
    def query(self):
        """The query string parsed to a dict (last value of a repeated name wins)."""
        if self._query is None:
            self._query = dict(_parse_qsl(self.query_string.decode("latin-1"),
                                          keep_blank_values=True))
        return self._query

    @property
    def state(self):
        """A dict for middleware and handlers to share per-request data."""
        if self._state is None:
            self._state = {}
        return self._state

    @property
    def client(self):
        """The peer's address (as the socket gives it: ``(host, port)``,
        four fields on IPv6), or None."""
        return None if self.conn is None else self.conn.peername

    @property
    def transport(self):
        """The connection's transport (for upgrades; None once closed)."""
        return None if self.conn is None else self.conn.transport

    cdef int _send_continue(self) except -1:
        if self.expect_continue and not self.continue_sent and not self.complete:
            self.continue_sent = True
            if self.conn is not None and self.conn.transport is not None:
                self.conn.transport.write(CONTINUE_100)
        return 0

    cdef int _feed(self, bytes data) except -1:
        if self.discard:
            return 0
        self.chunks.append(data)
        self.buffered += len(data)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)
        return 0

    cdef int _end(self, object error=None) except -1:
        self.complete = True
        if error is not None and self.error is None:
            self.error = error
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)
        return 0

    async def read_chunk(self):
        """The next piece of the body as it arrives; ``b""`` at its end."""
        cdef bytes piece
        while True:
            if self.chunks:
                piece = self.chunks.pop(0)
                self.buffered -= len(piece)
                if self.conn is not None:
                    self.conn._body_taken()
                return piece
            if self.error is not None:
                raise self.error
            if self.complete:
                return b""
            self._send_continue()
            self.waiter = self.conn.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    async def body(self):
        """The whole request body as bytes (read once, then cached)."""
        if self.whole is not None:
            return self.whole
        if self.consumed:
            raise RuntimeError("the request body was already streamed")
        self.consumed = True
        if self.complete and self.error is None:
            if not self.chunks:
                self.whole = b""
            elif len(self.chunks) == 1:
                self.whole = self.chunks[0]
            else:
                self.whole = b"".join(self.chunks)
            self.chunks = []
            self.buffered = 0
            return self.whole
        parts = []
        while True:
            piece = await self.read_chunk()
            if not piece:
                break
            parts.append(piece)
        self.whole = b"".join(parts)
        return self.whole

    async def text(self):
        """The body decoded (charset from Content-Type, else UTF-8)."""
        data = await self.body()
        ct = self.headers.get("content-type", "")
        charset = "utf-8"
        for part in ct.split(";")[1:]:
            k, _, v = part.strip().partition("=")
            if k.lower() == "charset" and v:
                charset = v.strip('"')
        return data.decode(charset)

    async def json(self):
        """The body parsed as JSON (``ValueError`` if it is not JSON; the
        server answers an uncaught ``ValueError`` from here with 400)."""
        data = await self.body()
        try:
            return json_loads(data)
        except ValueError as exc:
            raise HttpException(400, f"invalid JSON body: {exc}") from exc

    async def stream(self):
        """Iterate over the body as it arrives (``async for chunk in request.stream()``)."""
        if self.consumed:
            raise RuntimeError("the request body was already read")
        self.consumed = True
        while True:
            piece = await self.read_chunk()
            if not piece:
                return
            yield piece

    # -- writing the response yourself (streaming, ASGI) ------------------
    def start_response(self, int status, headers=None, content_length=None):
        """Send the status line and headers now; the body follows with
        :meth:`write` and ends with :meth:`end_response` (whose value the
        handler returns).  Without ``content_length`` the body is chunked
        (HTTP/1.1) or ends with the connection (HTTP/1.0)."""
        cdef HttpConnection c = self.conn
        if self.started:
            raise RuntimeError("start_response() was already called")
        if c is None or c.closed:
            raise ConnectionResetError("the client closed the connection")
        if c.active is not self:
            raise RuntimeError("only the active request may start its response")
        self._begin(Response(b"", status, headers, None), content_length)
        return None

    cdef int _begin(self, Response resp, object content_length) except -1:
        """Write the head of ``resp`` (its status, headers, content type) now
        and set the framing write()/end_response() follow: chunked, sized or
        until close.  Shared by start_response() and StreamingResponse."""
        cdef HttpConnection c = self.conn
        cdef int status = resp.status
        self.chunked = content_length is None and self.http_version == "1.1" \
            and status >= 200 and status != 204 and status != 304
        if content_length is None and not self.chunked and status != 101:
            c.close_after = True
        c._write_head(self, resp, -1 if content_length is None else content_length, self.chunked)
        self.started = True
        self.remaining = -1 if content_length is None or self.method == "HEAD" \
            or status < 200 or status == 204 or status == 304 else content_length
        c._flush_data()
        return 0

    def respond(self, int status, headers, body):
        """Send a whole response now (status, headers, bytes body): it goes
        out with this read's batch, or at once when the handler runs later;
        the handler returns RESPONSE_SENT afterwards (and may go on working,
        as ASGI background tasks do)."""
        cdef HttpConnection c = self.conn
        if self.started:
            raise RuntimeError("the response was already started")
        if c is None or c.closed:
            raise ConnectionResetError("the client closed the connection")
        if c.active is not self:
            raise RuntimeError("only the active request may send its response")
        if type(body) is not bytes:
            body = bytes(body)
        c._write_head(self, Response(b"", status, headers, None), len(body), False)
        self.started = True
        self.ended = True
        if self.method != "HEAD" and status >= 200 and status != 204 and status != 304:
            c._putb(body)
        if not c.in_feed:
            c._flush_data()
        return RESPONSE_SENT

    async def write(self, data):
        """Send a piece of the body (after :meth:`start_response`); waits
        while the client is not reading (flow control)."""
        cdef HttpConnection c = self.conn
        if not self.started:
            raise RuntimeError("call start_response() first")
        if self.ended:
            raise RuntimeError("the response has ended")
        if c is None or c.closed or c.transport is None:
            raise ConnectionResetError("the client closed the connection")
        if self.method == "HEAD" or not data:
            return
        if type(data) is str:
            data = (<str>data).encode("utf-8")
        if self.remaining >= 0:
            if len(data) > self.remaining:
                # More than the Content-Length sent: the excess would read
                # as a second response on a kept-alive connection.
                c._abort()
                raise RuntimeError(f"response body longer than its Content-Length "
                                   f"({len(data) - self.remaining} bytes over)")
            self.remaining -= len(data)
        if self.chunked:
            c.transport.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            c.transport.write(data)
        if c.writing_paused:
            await c.drain()

    def end_response(self):
        """End the body (the chunked terminator); returns RESPONSE_SENT,
        which the handler returns."""
        cdef HttpConnection c = self.conn
        if not self.started:
            raise RuntimeError("call start_response() first")
        if not self.ended:
            self.ended = True
            if self.remaining > 0 and c is not None:
                # Shorter than its Content-Length: the client must not take
                # the next bytes for the rest of it.
                c._abort()
                raise RuntimeError(f"response body {self.remaining} bytes shorter "
                                   f"than its Content-Length")
            if self.chunked and self.method != "HEAD" and c is not None \
                    and c.transport is not None and not c.closed:
                c.transport.write(b"0\r\n\r\n")
        return RESPONSE_SENT

    @property
    def response_started(self):
        """True once start_response() (or respond()) was called."""
        return self.started

    @property
    def response_status(self):
        """The status of the response written or started (0: none yet)."""
        return self.status_out

    @property
    def scheme(self):
        """``"https"`` on a TLS connection, else ``"http"``."""
        return "https" if self.conn is not None and self.conn.tls else "http"

    def detach(self):
        """After ``start_response(101, ...)``: take the connection over for
        another protocol.  Returns ``(transport, data)``: the transport
        (call ``transport.set_protocol(...)``) and the bytes that already
        came after the request head.  The HTTP server forgets the
        connection (it is no longer counted, timed out or closed by it);
        the handler should then return :data:`RESPONSE_SENT`."""
        cdef HttpConnection c = self.conn
        if not self.started or self.status_out != 101:
            raise RuntimeError("detach() needs start_response(101, ...) first")
        if c is None or c.closed:
            raise ConnectionResetError("the client closed the connection")
        transport = c.transport
        data = c._detach()
        self.ended = True
        return transport, data

    def wait_disconnect(self):
        """A future that completes when the client goes away (or the
        connection is closed by the server)."""
        return self.conn._disconnect_future()

    def __repr__(self):
        return f"<Request {self.method} {self.raw_path!r}>"


# -- Parker ---------------------------------------------------------------------
# A wait without a future, for protocol code whose reader is a HandlerTask
# (WebSocketConnection.receive): the handler awaits the Parker, the task
# parks (no future, no done callback), and wake() resumes it -- at once,
# inside the protocol callback that calls it, when no task is running (the
# usual case: data_received), else through the ready queue.  Saves a future,
# a callback registration and a trip through the ready queue per message.
# Ownership: the reader's connection owns the Parker; Parker.task is set by
# HandlerTask._suspend and cleared by wake(), by cancel() and when the task
# runs for any other reason, so a wake never reaches a task parked elsewhere.
@cython.final
cdef class Parker:
    """A reusable wait point for a coroutine run by a HandlerTask (internal;
    ``await parker`` anywhere else is an error).  Fields: httpserver.pxd."""

    def __await__(self):
        self.yielded = False
        return self

    def __iter__(self):
        return self

    def __next__(self):
        if not self.yielded:
            self.yielded = True
            return self
        self.yielded = False
        raise StopIteration

    def wake(self):
        """Resume the task parked here (no-op when none is)."""
        self.wake_c()

    cdef int wake_c(self) except -1:
        cdef HandlerTask t = self.task
        if t is None:
            return 0
        t._unpark()
        if aio_current_task(t.loop) is None:
            t._run(None, True)
        else:
            t.loop.call_soon(t._step_exc, None, context=t.context)
        return 0


# -- HandlerTask ----------------------------------------------------------------
# Why not asyncio.Task: on 3.11 creating one costs ~3 us (it is added to a
# Python WeakSet, all_tasks(), and removed again when it dies), more than the
# rest of a plaintext request.  A HandlerTask runs one handler coroutine with
# the semantics handlers rely on -- it is current_task() while it runs (so
# asyncio.timeout(), TaskGroup and cancellation work), runs in a copy of the
# context, and cancel()/uncancel()/cancelling() behave as Task's -- and it
# runs its first step at once: a handler that does not suspend completes
# inside data_received without touching the ready queue.  It is not an
# asyncio.Task (isinstance fails) and not in asyncio.all_tasks(); the server
# cancels the ones still running when it stops.
cdef class HandlerTask:
    """Runs one request handler; current_task() while the handler runs."""
    cdef object coro
    cdef object loop
    cdef object context
    cdef HttpConnection conn
    cdef object fut_waiter          # the future the coroutine waits on
    cdef Parker parked              # or the Parker it waits at
    cdef bint must_cancel
    cdef object cancel_msg
    cdef int num_cancels
    cdef readonly int state         # 0 pending, 1 result, 2 exception, 3 cancelled
    cdef object value               # result or exception
    cdef list callbacks
    cdef object name
    cdef object __weakref__         # anyio keys WeakKeyDictionaries by task

    # anyio's cancel scopes read these two private Task fields.
    @property
    def _must_cancel(self):
        return self.must_cancel

    @property
    def _fut_waiter(self):
        return self.fut_waiter

    def __repr__(self):
        return f"<HandlerTask {['pending', 'finished', 'failed', 'cancelled'][self.state]}>"

    cdef int _run(self, object exc, bint enter) except -1:
        """One step: send None (or throw exc) into the coroutine.

        ``enter``: switch to the task's context (the first step); the later
        steps are loop callbacks scheduled with that context already.
        Invariant: the connection hears of the outcome (_finish) only after
        this task stopped being current_task(), so the next handler can start
        from there."""
        cdef PyObject *res = NULL
        cdef PySendResult r
        cdef object yielded = None
        cdef int outcome = 0            # 0 suspended, 1 result, 2 exception, 3 cancelled
        cdef bint fatal = False
        if self.state != 0:
            return 0
        if self.must_cancel:
            if not isinstance(exc, aio_CancelledError):
                exc = aio_CancelledError() if self.cancel_msg is None \
                    else aio_CancelledError(self.cancel_msg)
            self.must_cancel = False
        self.fut_waiter = None
        self._unpark()                  # (run for another reason, e.g. cancel)
        if enter:
            PyContext_Enter(self.context)
        try:
            enter_task(self.loop, self)
            try:
                if exc is None:
                    r = PyIter_Send(self.coro, None, &res)
                    if r == PYGEN_ERROR:
                        raise_current()
                    yielded = <object>res
                    Py_XDECREF(res)
                    if r == PYGEN_RETURN:
                        outcome = 1
                else:
                    yielded = self.coro.throw(exc)
            except StopIteration as e:
                outcome, yielded = 1, e.value
            except aio_CancelledError as e:
                outcome, yielded = 3, e
            except (KeyboardInterrupt, SystemExit) as e:
                outcome, yielded, fatal = 2, e, True
            except BaseException as e:
                outcome, yielded = 2, e
            finally:
                leave_task(self.loop, self)
        finally:
            if enter:
                PyContext_Exit(self.context)
        if outcome == 0:
            self._suspend(yielded)
            return 0
        self._finish(outcome, yielded)
        if fatal:
            raise yielded
        return 0

    cdef void _suspend(self, object yielded):
        if type(yielded) is Parker:
            if self.must_cancel:        # cancelled during this step: throw it now
                self.loop.call_soon(self._step_exc, None, context=self.context)
            else:
                (<Parker>yielded).task = self
                self.parked = <Parker>yielded
            return
        blocking = getattr(yielded, "_asyncio_future_blocking", None)
        if blocking is not None:
            if yielded.get_loop() is not self.loop:
                self.loop.call_soon(self._step_exc, RuntimeError(
                    f"HandlerTask got Future {yielded!r} attached to a different loop"),
                    context=self.context)
            elif blocking:
                yielded._asyncio_future_blocking = False
                yielded.add_done_callback(self._wakeup, context=self.context)
                self.fut_waiter = yielded
                if self.must_cancel:
                    if yielded.cancel(msg=self.cancel_msg):
                        self.must_cancel = False
            else:
                self.loop.call_soon(self._step_exc, RuntimeError(
                    f"yield was used instead of yield from in handler for {yielded!r}"),
                    context=self.context)
        elif yielded is None:
            self.loop.call_soon(self._step_exc, None, context=self.context)   # sleep(0)
        else:
            self.loop.call_soon(self._step_exc, RuntimeError(
                f"handler yielded an unexpected value: {yielded!r}"), context=self.context)

    cdef inline void _unpark(self) noexcept:
        """Leave the Parker waited at, if any (Parker.task and parked are
        set and cleared together)."""
        if self.parked is not None:
            self.parked.task = None
            self.parked = None

    def _step_exc(self, exc):
        self._run(exc, False)

    def _wakeup(self, fut):
        try:
            fut.result()
        except BaseException as exc:
            self._run(exc, False)
        else:
            self._run(None, False)

    cdef int _finish(self, int state, object value) except -1:
        self.state = state
        self.value = value
        self.coro = None
        if self.conn is not None:
            conn = self.conn
            self.conn = None
            conn._handler_done(self)
        if self.callbacks:
            for cb, ctx in self.callbacks:
                self.loop.call_soon(cb, self, context=ctx)
            self.callbacks = None
        return 0

    # -- the asyncio.Task interface handlers may use ---------------------
    def cancel(self, msg=None):
        """Request cancellation (as asyncio.Task.cancel)."""
        if self.state != 0:
            return False
        self.num_cancels += 1
        if self.fut_waiter is not None:
            if self.fut_waiter.cancel(msg=msg):
                return True
        self.must_cancel = True
        self.cancel_msg = msg
        if self.parked is not None:     # nothing else would wake it: step now
            self._unpark()
            self.loop.call_soon(self._step_exc, None, context=self.context)
        return True

    def uncancel(self):
        """Decrement the pending cancellation requests (as Task.uncancel)."""
        if self.num_cancels > 0:
            self.num_cancels -= 1
        return self.num_cancels

    def cancelling(self):
        """Pending cancellation requests (as Task.cancelling)."""
        return self.num_cancels

    def done(self):
        """True once the handler finished (or failed, or was cancelled)."""
        return self.state != 0

    def cancelled(self):
        """True if the handler was cancelled."""
        return self.state == 3

    def result(self):
        """The handler's return value (raises as Future.result does)."""
        if self.state == 0:
            raise aio_InvalidStateError("Result is not ready.")
        if self.state == 1:
            return self.value
        raise self.value

    def exception(self):
        """The handler's exception, or None (raises CancelledError if cancelled)."""
        if self.state == 0:
            raise aio_InvalidStateError("Exception is not set.")
        if self.state == 3:
            raise self.value
        return self.value if self.state == 2 else None

    def add_done_callback(self, fn, *, context=None):
        """Call ``fn(task)`` (soon) once the handler is done."""
        if context is None:
            import contextvars
            context = contextvars.copy_context()
        if self.state != 0:
            self.loop.call_soon(fn, self, context=context)
        else:
            if self.callbacks is None:
                self.callbacks = []
            self.callbacks.append((fn, context))

    def remove_done_callback(self, fn):
        """Remove ``fn`` from the done callbacks; return how many were removed."""
        if not self.callbacks:
            return 0
        before = len(self.callbacks)
        self.callbacks = [(f, c) for f, c in self.callbacks if f != fn]
        return before - len(self.callbacks)

    def get_loop(self):
        """The loop the handler runs on."""
        return self.loop

    def get_coro(self):
        """The handler's coroutine (None once done)."""
        return self.coro

    def get_context(self):
        """The contextvars.Context the handler runs in."""
        return self.context

    def get_name(self):
        """A name for logs."""
        return self.name or f"HandlerTask-{id(self):x}"

    def set_name(self, value):
        """Set the name returned by get_name()."""
        self.name = str(value)

    def get_stack(self, *, limit=None):
        """The coroutine's current frame, as Task.get_stack (at most one)."""
        frame = getattr(self.coro, "cr_frame", None)
        return [frame] if frame is not None else []


cdef inline int raise_current() except -1:
    # PyIter_Send returned PYGEN_ERROR: an exception is set; make Cython see it.
    return -1


cdef HandlerTask start_handler(object coro, object loop, HttpConnection conn):
    cdef HandlerTask t = HandlerTask.__new__(HandlerTask)
    t.coro = coro
    t.loop = loop
    t.conn = conn
    # A copy of the connection's context, not of the current one: the next
    # handler may start from inside the previous one's last step.
    t.context = PyContext_Copy(conn.base_context)
    t._run(None, True)
    return t


# -- request observation (ServerState.record) -------------------------------
@cython.final
cdef class HistCell:
    """One histogram series kept as C numbers: the HTTP server adds each
    request to it without touching a Python object, and a scrape reads it.

    It reads (and writes) as the list ``[bounds, n_0, ..., n_k, n_inf,
    sum]`` that flowcoro.observability.Metrics keeps for its histograms
    (``n_i`` counts values <= bounds[i], not cumulated), so Metrics stores
    it in place of that list.  Only the loop's thread updates a cell; a
    scrape from another thread may see a count and a sum one request apart.
    """
    cdef readonly tuple bounds
    cdef double *b          # bounds as doubles, ascending
    cdef uint64_t *n        # n + 1 counts (the last: +Inf)
    cdef double total
    cdef Py_ssize_t k       # len(bounds)

    def __cinit__(self, bounds):
        cdef Py_ssize_t i
        self.bounds = tuple(float(x) for x in bounds)
        self.k = len(self.bounds)
        for i in range(1, self.k):
            if not self.bounds[i - 1] < self.bounds[i]:
                raise InvalidArgumentError("bounds", bounds, "must be ascending")
        self.b = <double *>malloc((self.k + 1) * sizeof(double))
        self.n = <uint64_t *>malloc((self.k + 1) * sizeof(uint64_t))
        if self.b == NULL or self.n == NULL:
            raise MemoryError()
        for i in range(self.k):
            self.b[i] = self.bounds[i]
        for i in range(self.k + 1):
            self.n[i] = 0
        self.total = 0.0

    def __dealloc__(self):
        free(self.b)
        free(self.n)

    cdef inline void add(self, double v) noexcept:
        cdef Py_ssize_t i = 0
        while i < self.k and self.b[i] < v:
            i += 1
        self.n[i] += 1
        self.total += v

    def observe(self, double value):
        """Count one value (as Histogram.observe)."""
        self.add(value)

    def __len__(self):
        return self.k + 3

    cdef Py_ssize_t _index(self, Py_ssize_t i) except -1:
        if i < 0:
            i += self.k + 3
        if i < 0 or i >= self.k + 3:
            raise IndexError("HistCell index out of range")
        return i

    def __getitem__(self, index):
        cdef Py_ssize_t i
        if isinstance(index, slice):
            return [self[j] for j in range(*index.indices(self.k + 3))]
        i = self._index(index)
        if i == 0:
            return self.bounds
        if i == self.k + 2:
            return self.total
        return self.n[i - 1]

    def __setitem__(self, Py_ssize_t i, value):
        i = self._index(i)
        if i == 0:
            raise TypeError("the bounds of a HistCell are fixed")
        if i == self.k + 2:
            self.total = value
        else:
            self.n[i - 1] = value

    def __repr__(self):
        return f"HistCell({list(self)!r})"


# One route's cells, found by (method object, status) in a short C table:
# the server's methods are interned constants (_method), so a pointer
# compare finds them; any other method string is compared by value.  The
# table holds a reference to each method and cell through ``refs``.
cdef enum:
    ROUTE_CELLS = 16

@cython.final
cdef class RouteObs:
    """The observation cells of one route pattern (internal)."""
    cdef readonly object route
    cdef list refs                          # [method, cell, ...] owning the table's pointers
    cdef PyObject *methods[ROUTE_CELLS]
    cdef int statuses[ROUTE_CELLS]
    cdef PyObject *cells[ROUTE_CELLS]
    cdef int used
    cdef dict more                          # (method, status) -> cell past the table

    def __cinit__(self, route):
        self.route = route
        self.refs = []
        self.used = 0
        self.more = {}

    cdef inline HistCell find(self, str method, int status):
        cdef int i
        for i in range(self.used):
            if self.statuses[i] == status and self.methods[i] == <PyObject *>method:
                return <HistCell>self.cells[i]
        for i in range(self.used):
            if self.statuses[i] == status and <str>self.methods[i] == method:
                return <HistCell>self.cells[i]
        if self.more:
            return self.more.get((method, status))
        return None

    cdef add(self, str method, int status, HistCell cell):
        if self.used == ROUTE_CELLS:
            self.more[(method, status)] = cell
            return
        self.refs.append(method)
        self.refs.append(cell)
        self.methods[self.used] = <PyObject *>method
        self.statuses[self.used] = status
        self.cells[self.used] = <PyObject *>cell
        self.used += 1


# -- server-wide state shared by the connections -----------------------------
@cython.final
cdef class ServerState:
    """Settings, router and live connections of one listening HttpServer
    (built by flowcoro.http.server; not public API)."""
    cdef public Router router
    cdef public object dispatch          # async (request) -> result, or None: use router
    cdef public object error_handler     # (request, exc) -> Response | None
    cdef public set connections
    cdef public double now               # coarse clock, updated by the sweeper
    cdef public double header_timeout, body_timeout, keepalive_timeout, write_timeout
    cdef public Py_ssize_t max_pipeline, body_buffer
    cdef public bint closing
    cdef public object loop
    cdef public object on_count          # callable(n_connections) for accept backpressure
    cdef fc_http_limits_t limits
    cdef uint32_t flags
    # Observation hooks (flowcoro.observability sets them through
    # HttpServer.set_observer): see record() and HttpConnection._start.
    cdef public bint timing              # time every request into cells
    cdef public object new_cell          # (route, method, status) -> HistCell
    cdef dict route_obs                  # handler -> RouteObs (set_route_names)
    cdef RouteObs unmatched              # 404/405 answers (route None)
    cdef public object trace_call        # (handler, request) -> coroutine, or None
    cdef public double trace_ratio       # share of requests without traceparent traced
    cdef public list context_vars        # [(ContextVar, value)] set in each connection

    def __init__(self, router, loop, *, max_request_line=8192, max_header_field=8192,
                 max_headers=100, max_header_block=65536, max_chunk_line=4096,
                 max_body=1 << 20, header_timeout=30.0, body_timeout=60.0,
                 keepalive_timeout=60.0, write_timeout=60.0, max_pipeline=16,
                 body_buffer=1 << 20, dispatch=None, error_handler=None, on_count=None):
        """Settings as HttpServer documents them."""
        self.router = router
        self.loop = loop
        self.dispatch = dispatch
        self.error_handler = error_handler
        self.on_count = on_count
        self.connections = set()
        self.now = loop.time()
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.keepalive_timeout = keepalive_timeout
        self.write_timeout = write_timeout
        self.max_pipeline = max_pipeline
        self.body_buffer = body_buffer
        self.limits.max_start_line = max_request_line
        self.limits.max_field = max_header_field
        self.limits.max_fields = max_headers
        self.limits.max_head = max_header_block
        self.limits.max_chunk_line = max_chunk_line
        self.limits.max_body = 0xFFFFFFFFFFFFFFFF if max_body is None else <uint64_t>max_body
        self.flags = FC_HTTP_REQUIRE_HOST | FC_HTTP_LOWERCASE_NAMES
        self.route_obs = {}
        self.unmatched = RouteObs(None)
        self.context_vars = []

    def set_route_names(self, names):
        """Name the routes for observation: ``names`` maps each handler to
        its route pattern (the ``route`` that new_cell and Request.route see)."""
        self.route_obs = {h: RouteObs(pattern) for h, pattern in names.items()}
        self.unmatched = RouteObs(None)

    cdef double record(self, Request req, int status) except -1.0:
        """Add one request (its handler's start to now) to the HistCell of
        its (route, method, status), made by ``new_cell`` on first use.  No
        Python object is made or updated here in the steady state: the cell
        is found by pointer in the route's small table and counts in C.
        Returns the time it read (the next pipelined request's start)."""
        cdef double now = mono()
        cdef double dt = now - req.t0
        cdef RouteObs ro = req.obs if req.obs is not None else self.unmatched
        cdef HistCell cell
        req.t0 = 0.0
        cell = ro.find(req.method, status)
        if cell is None:
            made = self.new_cell(ro.route, req.method, status)
            if not isinstance(made, HistCell):
                raise TypeError(f"new_cell must return a HistCell, not {type(made).__name__}")
            cell = <HistCell>made
            ro.add(req.method, status, cell)
        cell.add(dt)
        return now

    def protocol(self):
        """A new HttpConnection (the protocol factory for create_server)."""
        return HttpConnection(self)

    def sweep(self):
        """Close connections past their deadline; called about once a second."""
        cdef HttpConnection c
        cdef double now = self.loop.time()
        self.now = now
        for c in list(self.connections):
            if c.deadline_kind != DL_NONE and now >= c.deadline:
                c._expire()

    def close_idle(self):
        """Graceful stop: close idle connections now, the others after their
        current response (and stop reading new requests on them)."""
        cdef HttpConnection c
        self.closing = True
        for c in list(self.connections):
            c._stop_gracefully()

    def abort_all(self):
        """End of the grace period: cancel handlers, abort transports."""
        cdef HttpConnection c
        for c in list(self.connections):
            c._abort()


cdef class HttpConnection:
    """asyncio Protocol for one HTTP/1.1 connection (see the module doc)."""
    cdef ServerState server
    cdef readonly object transport
    cdef readonly object loop
    cdef fc_http_parser_t p
    cdef bint parser_ready
    cdef object queue            # collections.deque of Request, [0] is active
    cdef Request reading         # the request whose body the parser is in
    cdef Request active          # the request being handled (queue[0]) or None
    cdef object task             # the active handler's Task while it runs
    cdef char *obuf              # responses produced during this data_received
    cdef Py_ssize_t olen, ocap   # (owned; written by _flush / _flush_data)
    cdef bint in_feed            # inside data_received (flush at its end)
    cdef bint reading_paused
    cdef bint writing_paused
    cdef object drain_waiter
    cdef bint close_after        # close once out is flushed (Connection: close / error)
    cdef bint closed
    cdef bint stopping           # graceful stop: answer what is in flight, no more
    cdef public double deadline
    cdef public int deadline_kind
    cdef int saved_kind          # deadline kind to restore after a write stall
    cdef object upgraded         # callable taking the connection over, or None
    cdef object upgrade_buffer   # bytes after an Upgrade head, for take_over()
    cdef object pending_error    # (status, message) to answer once the queue drains
    cdef object disconnected     # Future set by connection_lost, made on demand
    cdef bint dispatching        # inside _run_queue(): handlers start there only
    cdef double t_last           # the last request's end (ServerState.record), while t_fresh
    cdef bint t_fresh            # t_last was read in this _run_queue() loop, just before
    cdef bint linger             # close by half-closing and draining (after an error)
    cdef object base_context     # context at connection_made; handlers run in copies
    cdef readonly object peername  # the client's address, read once
    cdef readonly bint tls         # the transport is TLS

    def __cinit__(self, ServerState server):
        self.server = server
        self.loop = server.loop
        self.queue = _deque()

    def __dealloc__(self):
        if self.parser_ready:
            fc_http_parser_free(&self.p)
        if self.obuf != NULL:
            free(self.obuf)

    # -- output buffer (one write per read callback) ---------------------------
    cdef int _put(self, const char *s, Py_ssize_t n) except -1:
        cdef Py_ssize_t cap
        cdef char *nb
        if self.olen + n > self.ocap:
            cap = max(self.ocap * 2, self.olen + n, 4096)
            nb = <char *>realloc(self.obuf, cap)
            if nb == NULL:
                raise MemoryError()
            self.obuf = nb
            self.ocap = cap
        memcpy(self.obuf + self.olen, s, n)
        self.olen += n
        return 0

    cdef int _putb(self, object b) except -1:
        cdef Py_buffer view
        if type(b) is bytes:
            return self._put(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))
        PyObject_GetBuffer(b, &view, PyBUF_SIMPLE)
        try:
            self._put(<const char *>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
        return 0

    cdef int _putn(self, Py_ssize_t n) except -1:
        cdef char tmp[24]
        cdef int k = 24
        if n == 0:
            return self._put("0", 1)
        while n > 0:
            k -= 1
            tmp[k] = <char>(48 + n % 10)
            n //= 10
        return self._put(tmp + k, 24 - k)

    # -- asyncio Protocol ----------------------------------------------------
    def connection_made(self, transport):
        """Start reading requests from ``transport``."""
        self.transport = transport
        self.peername = transport.get_extra_info("peername")
        self.tls = transport.get_extra_info("sslcontext") is not None
        self.base_context = PyContext_CopyCurrent()
        for var, value in self.server.context_vars:
            self.base_context.run(var.set, value)
        if fc_http_parser_init(&self.p, FC_HTTP_REQUEST, &self.server.limits,
                               self.server.flags) != 0:
            raise MemoryError()
        self.parser_ready = True
        self.server.connections.add(self)
        self._set_deadline(DL_IDLE)
        if self.server.on_count is not None:
            self.server.on_count(len(self.server.connections))
        if self.server.closing:
            self._stop_gracefully()

    def connection_lost(self, exc):
        """Fail body readers, cancel the running handler, forget the connection."""
        cdef Request r
        self.closed = True
        self.server.connections.discard(self)
        self.deadline_kind = DL_NONE
        if self.active is not None and self.active.t0 != 0.0:
            self.server.record(self.active, 499)     # the client went away first
        err = ConnectionResetError("the client closed the connection")
        for r in self.queue:
            r._end(err)
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_exception(err)
        if self.server.on_count is not None:
            self.server.on_count(len(self.server.connections))
        if self.disconnected is not None and not self.disconnected.done():
            self.disconnected.set_result(None)
        self.transport = None

    cdef object _disconnect_future(self):
        if self.disconnected is None:
            self.disconnected = self.loop.create_future()
            if self.closed:
                self.disconnected.set_result(None)
        return self.disconnected

    def eof_received(self):
        """The client finished sending: answer what was received, then close."""
        if self.upgraded is not None and self.deadline_kind == DL_LINGER:
            self._close()
            return True
        # The client will send nothing more: tell whoever waits for a
        # disconnect (ASGI's http.disconnect); the answer still goes out.
        if self.disconnected is not None and not self.disconnected.done():
            self.disconnected.set_result(None)
        if self.reading is not None and not self.reading.complete:
            # A body cut short.
            self.reading._end(ConnectionResetError("the client closed mid-body"))
        self.stopping = True
        if self.active is None and not self.queue:
            self._close()
        return True   # keep the transport half-open until we answered

    def pause_writing(self):
        """Transport buffer over its high-water mark: stall the response writers."""
        self.writing_paused = True
        if self.deadline_kind != DL_WRITE:
            self.saved_kind = self.deadline_kind
            self._set_deadline(DL_WRITE)

    def resume_writing(self):
        """Transport buffer drained: wake the writers."""
        self.writing_paused = False
        if self.deadline_kind == DL_WRITE:
            self._set_deadline(self.saved_kind)
        w = self.drain_waiter
        if w is not None:
            self.drain_waiter = None
            if not w.done():
                w.set_result(None)

    async def drain(self):
        """Wait until the transport accepts more data (flow control)."""
        if self.closed:
            raise ConnectionResetError("the client closed the connection")
        if self.writing_paused:
            if self.drain_waiter is None:
                self.drain_waiter = self.loop.create_future()
            await self.drain_waiter

    # -- deadlines -----------------------------------------------------------
    cdef inline void _set_deadline(self, int kind):
        cdef double t = 0.0
        self.deadline_kind = kind
        if kind == DL_IDLE:
            t = self.server.keepalive_timeout
        elif kind == DL_HEAD:
            t = self.server.header_timeout
        elif kind == DL_BODY:
            t = self.server.body_timeout
        elif kind == DL_WRITE:
            t = self.server.write_timeout
        self.deadline = self.server.now + t

    cdef _expire(self):
        cdef int kind = self.deadline_kind
        self.deadline_kind = DL_NONE
        if self.transport is None or self.closed:
            return
        if kind == DL_WRITE:
            self._abort()
        elif kind == DL_LINGER:
            self._close()
        elif kind == DL_BODY and self.reading is not None and self.reading is self.active \
                and self.task is not None:
            # The handler waits for the body: its read fails with 408, which
            # it answers (and the connection closes after that answer).
            self.stopping = True
            self._pause_reading()
            self.reading._end(HttpException(408, "request body read timed out"))
        elif kind == DL_HEAD and self.active is None and not self.queue:
            self._write_error(408, "request header read timed out", True)
            self._flush()
            self._close()
        else:
            self._close()

    # -- reading -------------------------------------------------------------
    def data_received(self, data):
        """Parse ``data``; start handlers; write the answers produced."""
        cdef Py_buffer view
        if self.closed or self.stopping and self.active is None and not self.queue:
            return
        self.in_feed = True
        try:
            if type(data) is bytes:
                self._feed(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
            else:
                PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
                try:
                    self._feed(<const char *>view.buf, view.len)
                finally:
                    PyBuffer_Release(&view)
        finally:
            self.in_feed = False
        self._flush()

    cdef int _feed(self, const char *buf, Py_ssize_t n) except -1:
        cdef fc_http_event_t ev
        cdef fc_http_parser_t *p = &self.p
        cdef Py_ssize_t pos = 0
        cdef int status
        cdef Request req
        if self.upgraded is not None:
            self.upgraded(PyBytes_FromStringAndSize(buf, n))
            return 0
        while True:
            status = fc_http_parser_execute(p, buf + pos, <size_t>(n - pos), &ev)
            pos += <Py_ssize_t>ev.consumed
            if status != 0:
                self._parse_error(status)
                return 0
            if ev.type == FC_HTTP_EV_HEAD:
                req = self._make_request()
                self.reading = req
                self.queue.append(req)
                if req.has_body:
                    self._set_deadline(DL_BODY)
                if self.stopping:
                    # Graceful stop or an earlier error: read no new request.
                    self.queue.pop()
                    self.reading = None
                    break
                if self.active is None:
                    # A request with a body starts at its END or at the end
                    # of this buffer, so a body that came whole is there
                    # before the handler asks for it (no suspension); an
                    # Upgrade request at the end of the buffer, once the
                    # bytes after its head are kept for detach().
                    if not req.has_body and req.upgrade is None:
                        self._run_queue()
                elif len(self.queue) > self.server.max_pipeline:
                    self._pause_reading()
            elif ev.type == FC_HTTP_EV_BODY:
                req = self.reading
                if req is not None:
                    req._feed(PyBytes_FromStringAndSize(ev.data, ev.len))
                    self._set_deadline(DL_BODY)
                    if req.buffered > self.server.body_buffer:
                        self._pause_reading()
            elif ev.type == FC_HTTP_EV_END:
                req = self.reading
                self.reading = None
                if req is not None and req.has_body:
                    req._end()
                    if self.stopping:
                        self._pause_reading()
                    if self.active is None:
                        self._run_queue()
                if self.deadline_kind != DL_WRITE:
                    self.deadline_kind = DL_NONE
            elif ev.type == FC_HTTP_EV_PAUSED:
                # Upgrade / CONNECT: the rest belongs to whoever takes the
                # connection over (WebSocket); keep it until then.
                if pos < n:
                    self._pending_upgrade_data(PyBytes_FromStringAndSize(buf + pos, n - pos))
                break
            elif ev.type == FC_HTTP_EV_NONE:
                break
            if self.closed:
                break
        if self.active is None and self.queue:
            self._run_queue()
        self._update_deadline()
        return 0

    cdef void _update_deadline(self):
        """Deadline from the parser's state: head in progress -> header
        deadline (total, set once per head), body -> body idle (renewed per
        piece), nothing owed -> keep-alive idle, else none."""
        cdef int kind = self.deadline_kind
        if kind == DL_WRITE or kind == DL_LINGER or self.closed:
            return
        if self.reading is not None and not self.reading.complete:
            if kind != DL_BODY:
                self._set_deadline(DL_BODY)
        elif not fc_http_parser_idle(&self.p):
            if kind != DL_HEAD:
                self._set_deadline(DL_HEAD)
        elif self.active is None and not self.queue:
            if kind != DL_IDLE:
                self._set_deadline(DL_IDLE)
        else:
            self.deadline_kind = DL_NONE

    cdef _pending_upgrade_data(self, bytes data):
        if self.upgrade_buffer is None:
            self.upgrade_buffer = data
        else:
            self.upgrade_buffer += data

    cdef object _detach(self):
        """Give the transport up (after a 101): this protocol forgets it and
        is no longer counted, swept or stopped by the server; returns the
        bytes that came after the request head."""
        data = self.upgrade_buffer or b""
        self.upgrade_buffer = None
        self._flush_data()
        self.server.connections.discard(self)
        if self.server.on_count is not None:
            self.server.on_count(len(self.server.connections))
        self.deadline_kind = DL_NONE
        self.closed = True
        self.queue.clear()
        self.reading = None
        self.transport = None
        return data

    cdef Request _make_request(self):
        cdef fc_http_parser_t *p = &self.p
        cdef Request r = Request.__new__(Request)
        cdef const char *t = p.buf + p.target_off
        cdef uint32_t tl = p.target_len
        cdef uint32_t k, plen
        cdef const char *q
        cdef const fc_http_field_t *f
        cdef uint32_t end
        cdef uint32_t mf = p.mflags
        cdef bytes raw
        r.conn = self
        r.method = _method(p.buf + p.method_off, p.method_len)
        if p.target_form == FC_HTTP_ABSOLUTE_FORM:
            # scheme://authority/path?query: keep the path part.
            q = <const char *>memchr(t, b'/', tl)
            if q != NULL and q + 1 < t + tl and q[1] == b'/':
                q = <const char *>memchr(q + 2, b'/', tl - (q + 2 - t))
            if q == NULL:
                raw = b"/"
                t = NULL
            else:
                tl -= <uint32_t>(q - t)
                t = q
        if t != NULL:
            q = <const char *>memchr(t, b'?', tl)
            plen = tl if q == NULL else <uint32_t>(q - t)
            raw = PyBytes_FromStringAndSize(t, plen)
            r.query_string = b"" if q == NULL else PyBytes_FromStringAndSize(q + 1, tl - plen - 1)
        else:
            r.query_string = b""
        r.raw_path = raw
        if memchr(PyBytes_AS_STRING(raw), b'%', PyBytes_GET_SIZE(raw)) != NULL:
            r.path = _unquote(raw.decode("latin-1"), encoding="utf-8", errors="surrogateescape")
        else:
            r.path = raw.decode("latin-1")
        r.http_version = "1.1" if p.http_minor == 1 else "1.0"
        # Headers are turned into objects only if the handler looks at them:
        # keep a copy of the head bytes and of the field offsets.
        end = 0
        for k in range(p.nfields):
            f = &p.fields[k]
            if f.value_off + f.value_len > end:
                end = f.value_off + f.value_len
            if f.name_len == 11 and memcmp(p.buf + f.name_off, b"traceparent", 11) == 0:
                r.traceparent = True
        r.head = PyBytes_FromStringAndSize(p.buf, end)
        r.nfields = p.nfields
        if p.nfields:
            r.fields = <fc_http_field_t *>malloc(p.nfields * sizeof(fc_http_field_t))
            if r.fields == NULL:
                raise MemoryError()
            memcpy(r.fields, p.fields, p.nfields * sizeof(fc_http_field_t))
        r.keep_alive = (mf & FC_HTTP_M_KEEP_ALIVE) != 0
        r.expect_continue = (mf & FC_HTTP_M_EXPECT_CONTINUE) != 0
        r.content_length = p.content_length if mf & FC_HTTP_M_CONTENT_LENGTH else None
        r.upgrade = (PyBytes_FromStringAndSize(p.buf + p.upgrade_off, p.upgrade_len)
                     if mf & FC_HTTP_M_UPGRADE else None)
        r.has_body = (mf & FC_HTTP_M_CHUNKED) != 0 or (
            (mf & FC_HTTP_M_CONTENT_LENGTH) != 0 and p.content_length > 0)
        r.complete = not r.has_body
        r.chunks = []
        return r

    cdef _parse_error(self, int status):
        cdef fc_http_parser_t *p = &self.p
        cdef int code = fc_http_error_status(p.error) if status == FC_HTTP_EPARSE else 500
        msg = fc_http_error_message(p.error).decode("ascii") if status == FC_HTTP_EPARSE \
            else "out of memory"
        cdef Request r = self.reading
        if self.close_after:
            # "connection: close" is already on its way: bytes after the
            # last request (data_after_close) get no answer of their own.
            self.stopping = True
            self.linger = True
            self._pause_reading()
            self._close_when_flushed()
            return
        # Nothing after the bad bytes is ever read as a request; requests
        # parsed before them are answered first, then the error, then close.
        self.stopping = True
        self.linger = True
        self._pause_reading()
        self.reading = None
        if r is not None and not r.complete:
            if r is self.active and not r.discard:
                # Its handler is reading the body: the read fails with the
                # status, which is what the handler answers (uncaught).
                r._end(HttpException(code, msg))
                return
            if r in self.queue and r is not self.active:
                self.queue.remove(r)
        if self.active is None and not self.queue:
            self._write_error(code, msg, True)
            self._close_when_flushed()
        else:
            self.pending_error = (code, msg)

    cdef void _pause_reading(self):
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            try:
                self.transport.pause_reading()
            except Exception:
                pass

    cdef void _resume_reading(self):
        if self.reading_paused and not self.stopping and self.transport is not None:
            self.reading_paused = False
            try:
                self.transport.resume_reading()
            except Exception:
                pass

    cdef void _body_taken(self):
        # A reader consumed body bytes: maybe resume reading.
        if self.reading_paused and len(self.queue) <= self.server.max_pipeline:
            if self.reading is None or self.reading.buffered <= self.server.body_buffer:
                self._resume_reading()

    # -- handling ------------------------------------------------------------
    cdef _run_queue(self):
        """Start queued handlers in order while they finish synchronously."""
        if self.dispatching:
            return              # an outer _run_queue() goes on
        self.dispatching = True
        self.t_fresh = False
        try:
            while self.queue and self.active is None and not self.closed:
                self._start(self.queue[0])
        finally:
            self.dispatching = False

    cdef _start(self, Request req):
        """Run the handler of ``req`` (the head of the queue)."""
        cdef object handler, params
        cdef ServerState s = self.server
        self.active = req
        if s.timing:
            # The previous request of this dispatch loop ended just now: its
            # end time is this one's start (one clock read per request).
            req.t0 = self.t_last if self.t_fresh else mono()
            self.t_fresh = False
        if s.dispatch is not None:
            handler = s.dispatch
        else:
            handler, params = s.router.match(req.method, req.path)
            if handler is None:
                if params == 404:
                    self._finish(req, Response(b"Not Found", 404, None, TEXT_PLAIN))
                else:
                    self._finish(req, Response(b"Method Not Allowed", 405,
                                               [("allow", params[1])], TEXT_PLAIN))
                return
            req.path_params = params
            if s.timing or s.trace_call is not None:
                req.obs = s.route_obs.get(handler)
                if req.obs is not None:
                    req.route = req.obs.route
        try:
            if s.trace_call is not None and (
                    req.traceparent or s.trace_ratio >= 1.0
                    or s.trace_ratio > 0.0 and _random() < s.trace_ratio):
                coro = s.trace_call(handler, req)
            else:
                coro = handler(req)
        except BaseException as exc:
            self._finish_exc(req, exc)
            return
        task = start_handler(coro, self.loop, self)
        if task.state == 0:
            self.task = task

    cdef _handler_done(self, HandlerTask task):
        """Called by the HandlerTask when the handler finished (maybe inside _start)."""
        if self.task is task:
            self.task = None
        if self.closed:
            return
        self._task_result(self.active, task)
        if not self.dispatching:
            # Finished after suspending (from the loop): go on and write.
            self._run_queue()
            if not self.in_feed:
                self._flush()

    cdef _task_result(self, Request req, HandlerTask task):
        if task.state == 3:
            self._finish_exc(req, aio_CancelledError())
            return
        if task.state == 2:
            self._finish_exc(req, task.value)
            return
        result = task.value
        if req.started:
            # The handler wrote its response itself.
            if not req.ended:
                req.end_response()
            self._done(req)
            return
        if type(result) is str and not self.stopping and req.keep_alive:
            # The plaintext fast path: no Response object, one template.
            self._write_text(req, <str>result)
            self._done(req)
            return
        try:
            resp = to_response(result)
        except BaseException as e:
            self._finish_exc(req, e)
            return
        self._finish(req, resp)

    cdef _finish_exc(self, Request req, object exc):
        cdef Response resp
        if req.started:
            # Headers are out: cut the connection so the client sees an
            # incomplete response rather than a wrong one.
            if not isinstance(exc, (aio_CancelledError, ConnectionError)):
                log.error("handler of %s %s failed after its response started", req.method,
                          req.path, exc_info=(type(exc), exc, exc.__traceback__))
            self._abort()
            return
        if isinstance(exc, HttpException):
            resp = Response((<object>exc).detail or REASONS.get(exc.status, ""),
                            exc.status, exc.headers)
        else:
            if not isinstance(exc, aio_CancelledError):
                log.error("handler of %s %s failed", req.method, req.path,
                          exc_info=(type(exc), exc, exc.__traceback__))
            resp = None
            if self.server.error_handler is not None and not isinstance(exc, aio_CancelledError):
                try:
                    resp = self.server.error_handler(req, exc)
                except Exception:
                    log.exception("error_handler failed")
                    resp = None
            if resp is None:
                resp = Response(b"Internal Server Error", 500, None, TEXT_PLAIN)
        self._finish(req, resp)

    cdef _finish(self, Request req, Response resp):
        """Write ``resp`` for ``req`` (the active request), then go on."""
        if self.closed:
            return
        if isinstance(resp, (StreamingResponse, FileResponse)):
            self.task = self.loop.create_task(self._send_streaming(req, resp))
            self.task.add_done_callback(self._on_stream_done)
            return
        try:
            self._write_head(req, resp, len(resp.body), False)
        except HttpHeaderError as exc:
            log.error("response to %s %s refused: %s", req.method, req.path, exc)
            self._write_error(500, "", not req.keep_alive
                              or self.stopping and len(self.queue) <= 1)
        else:
            if req.method != "HEAD" and len(resp.body):
                self._putb(resp.body)
        self._done(req)

    cdef _done(self, Request req):
        """The response of ``req`` is written: next request or close."""
        self.queue.popleft()
        self.active = None
        if req.t0 != 0.0:
            self.t_last = self.server.record(req, req.status_out)
            self.t_fresh = self.dispatching
        if not req.complete:
            # Body the handler did not read: drop it as it arrives.
            req.discard = True
            req.chunks = []
            req.buffered = 0
        if self.close_after:
            # "connection: close" went out with this response.
            self.queue.clear()
            self.reading = None
            self._close_when_flushed()
            return
        if self.queue:
            # The caller's _run_queue() loop starts the next one (no
            # recursion: a pipeline of any depth runs in constant stack).
            self._resume_if_room()
            return
        if self.pending_error is not None:
            code, msg = self.pending_error
            self.pending_error = None
            self._write_error(code, msg, True)
            self._close_when_flushed()
            return
        if self.stopping:
            self._close_when_flushed()
            return
        self._resume_if_room()
        self._update_deadline()

    cdef void _resume_if_room(self):
        if self.reading_paused and len(self.queue) <= self.server.max_pipeline:
            self._resume_reading()

    cdef int _write_head(self, Request req, Response resp, Py_ssize_t length,
                         bint chunked) except -1:
        cdef int status = resp.status
        cdef Py_ssize_t mark = self.olen
        req.status_out = status
        try:
            self._putb(status_line(status))
            ct = resp.content_type
            if ct is not None:
                self._putb(content_type_line(ct))       # str or bytes, checked once, cached
            headers = resp.headers
            if headers is not None:
                if isinstance(headers, dict):
                    headers = headers.items()
                elif not isinstance(headers, (list, tuple)):
                    headers = headers.items()
                for name, value in headers:
                    nb = header_name_bytes(name)
                    if status != 101 and _framing_header(nb):
                        # Content-Length / Transfer-Encoding / Connection are
                        # the server's to write (it frames the body it sends).
                        continue
                    self._putb(nb)
                    self._putb(b": ")
                    self._putb(header_value_bytes(value))
                    self._putb(b"\r\n")
            if status >= 200 and status != 204 and status != 304:
                if chunked:
                    self._putb(b"transfer-encoding: chunked\r\n")
                elif length >= 0:
                    self._putb(b"content-length: ")
                    self._putn(length)
                    self._putb(b"\r\n")
            if (not req.keep_alive or self.close_after
                    or self.stopping and len(self.queue) <= 1 and self.pending_error is None
                    or req.expect_continue and not req.continue_sent and not req.complete
                    or req.upgrade is not None and status != 101):
                # (An Upgrade request answered without switching: the parser
                # stopped at its head, so the connection ends here.)
                # Last response on this connection: no Upgrade of 101 here
                # (status 101 keeps the connection for the new protocol).
                if status != 101:
                    self._putb(b"connection: close\r\n")
                    self.close_after = True
            elif req.http_version == "1.0":
                self._putb(b"connection: keep-alive\r\n")
            self._putb(current_date_line())
            self._putb(b"\r\n")
        except BaseException:
            self.olen = mark
            raise
        return 0

    cdef _write_text(self, Request req, str text):
        """200 text/plain for a keep-alive request (no connection header
        needed on HTTP/1.1)."""
        cdef bytes body = text.encode("utf-8")
        req.status_out = 200
        self._putb(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ")
        self._putn(len(body))
        if req.http_version != "1.1":
            self._putb(b"\r\nconnection: keep-alive")
        self._putb(b"\r\n")
        self._putb(current_date_line())
        self._putb(b"\r\n")
        if req.method != "HEAD":
            self._putb(body)

    cdef _write_error(self, int status, str detail, bint close):
        cdef bytes body = (REASONS.get(status, "Error") + ("" if not detail else ": " + detail)
                           ).encode("latin-1", "replace")
        self._putb(status_line(status))
        self._putb(b"content-type: text/plain; charset=utf-8\r\ncontent-length: ")
        self._putn(len(body))
        if close:
            self._putb(b"\r\nconnection: close")
            self.close_after = True
        self._putb(b"\r\n")
        self._putb(current_date_line())
        self._putb(b"\r\n")
        self._putb(body)

    async def _send_streaming(self, Request req, Response resp):
        cdef bint head = req.method == "HEAD"
        if isinstance(resp, FileResponse):
            try:
                f = open(resp.path, "rb")
            except OSError:
                self._write_head(req, Response(b"Not Found", 404, None, TEXT_PLAIN), 9, False)
                if not head:
                    self._putb(b"Not Found")
                self._flush()
                return
            try:
                size = os.fstat(f.fileno()).st_size
                self._write_head(req, resp, size, False)
                self._flush()
                if not head and size:
                    await self.loop.sendfile(self.transport, f, 0, size)
            finally:
                f.close()
            return
        req._begin(resp, (<StreamingResponse>resp).content_length)
        body = resp.body
        if head:
            if hasattr(body, "aclose"):
                await body.aclose()
            return
        if hasattr(body, "__aiter__"):
            async for piece in body:
                await req.write(piece)
        else:
            for piece in body:
                await req.write(piece)
        req.end_response()

    def _on_stream_done(self, task):
        if self.task is task:
            self.task = None
        if self.closed:
            if not task.cancelled():
                task.exception()
            return
        exc = None if task.cancelled() else task.exception()
        if task.cancelled() or exc is not None:
            if exc is not None and not isinstance(exc, ConnectionError):
                log.error("streaming response of %s %s failed", self.active.method,
                          self.active.path, exc_info=(type(exc), exc, exc.__traceback__))
            # Headers are out already: the only honest signal is to cut the
            # connection so the client sees an incomplete body.
            self._abort()
            return
        self._done(self.active)
        self._run_queue()
        if not self.in_feed:
            self._flush()

    # -- writing and closing -------------------------------------------------
    cdef _flush_data(self):
        if self.olen and self.transport is not None:
            data = PyBytes_FromStringAndSize(self.obuf, self.olen)
            self.olen = 0
            self.transport.write(data)

    cdef _flush(self):
        self._flush_data()
        if self.close_after and self.active is None and not self.queue and not self.closed:
            self._close()

    cdef _close_when_flushed(self):
        self.close_after = True
        if not self.in_feed:
            self._flush()

    def _discard(self, data):
        """Lingering close: input after an error answer is read and dropped."""

    cdef _close(self):
        if self.transport is not None and not self.closed:
            if self.linger and self.transport.can_write_eof():
                # Lingering close (as nginx does): closing a socket with
                # unread input makes the kernel send RST, which can destroy
                # our error answer before the client reads it.  Half-close,
                # drop what still comes, close at EOF or after a moment.
                self.linger = False
                self.upgraded = self._discard
                self.transport.write_eof()
                self.reading_paused = False
                self.transport.resume_reading()
                self.deadline_kind = DL_LINGER
                self.deadline = self.server.now + LINGER_SECONDS
                return
            self.closed = True
            self.deadline_kind = DL_NONE
            self.transport.close()

    cdef _abort(self):
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.transport is not None:
            self.closed = True
            self.transport.abort()

    cdef _stop_gracefully(self):
        self.stopping = True
        if self.reading is None:
            # Not inside a request: read nothing more.  (A body in progress
            # is read to its end; no new request starts after it.)
            self._pause_reading()
        if self.active is None and not self.queue:
            self._close()

    @property
    def idle(self):
        """True when no request is in progress on this connection."""
        return self.active is None and not self.queue and fc_http_parser_idle(&self.p)


cdef bint _framing_header(bytes name):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(name)
    if n != 14 and n != 17 and n != 10:
        return False
    cdef bytes low = name.lower()
    return low == b"content-length" or low == b"transfer-encoding" or low == b"connection"


cdef str _method(const char *m, uint32_t ml):
    if ml == 3 and memcmp(m, b"GET", 3) == 0:
        return "GET"
    if ml == 4 and memcmp(m, b"POST", 4) == 0:
        return "POST"
    if ml == 3 and memcmp(m, b"PUT", 3) == 0:
        return "PUT"
    if ml == 4 and memcmp(m, b"HEAD", 4) == 0:
        return "HEAD"
    if ml == 6 and memcmp(m, b"DELETE", 6) == 0:
        return "DELETE"
    if ml == 5 and memcmp(m, b"PATCH", 5) == 0:
        return "PATCH"
    if ml == 7 and memcmp(m, b"OPTIONS", 7) == 0:
        return "OPTIONS"
    return PyBytes_FromStringAndSize(m, ml).decode("ascii")
