"""The HTTP/1.1 client: :class:`HttpClient`, :class:`Response`, :class:`Timeout`.

Example::

    from flowcoro.http import HttpClient, Timeout

    async with HttpClient("https://api.example.com", timeout=Timeout(connect=5, read=30)) as c:
        r = await c.get("/users", params={"page": 2})
        r.raise_for_status()
        users = r.json()
        await c.post("/users", json={"name": "ada"})
        async with c.stream("GET", "/big.bin") as r:
            async for chunk in r.iter_bytes():
                sink(chunk)

Theory of operation
-------------------

``request()`` turns its arguments into a :class:`_Request` (URL split and
checked, header block encoded, body framed), borrows a connection from the
:class:`~flowcoro.http._client_conn.Pool` for the URL's
``(scheme, host, port)``, writes the request, and reads events from the
connection until the response head.  The :class:`Response` then owns the
connection until its body has been read to the end (``read()``,
``iter_bytes()``) or it is closed; only a response read to the end, from a
server that allows keep-alive, to a request that was written whole and did
not ask to close, gives its connection back to the pool.  Any other ending
(an error, a cancellation, a response closed early) closes the connection,
so a half-read body can never be mistaken for the next response.

Bodies: ``Content-Length`` and chunked bodies are framed by the C parser;
gzip and deflate content codings are undone piece by piece
(:class:`_Decoder`), bounded by ``max_body`` like the encoded body.

Retries: a request that fails on a *reused* connection before any byte of
the response arrived (the server closed the idle connection while we were
sending) is sent once more on a new connection, if its method is idempotent
(RFC 9110 9.2.2) and its body can be sent again.  Nothing else is retried.

Timeouts are deadlines in loop time: each wait (connect, a free pool slot,
the next response bytes, room in the write buffer) waits until the earlier
of its phase's deadline and the request's ``total`` deadline, and raises the
error of whichever it was (ConnectTimeout, PoolTimeout, ReadTimeout,
WriteTimeout, TotalTimeout; all are TimeoutError).  ``total`` covers
redirects and reading the body.

Security: the request writer refuses CR, LF and NUL in the method, the
target and every header name and value (and a method or name that is not
an RFC 9110 token) with :class:`~flowcoro.errors.InvalidRequestError`
before anything is written: they would let a value start a new header or
a new request.  Authorization, Proxy-Authorization and Cookie are dropped
when a redirect leaves the origin.
"""
import asyncio
import base64
import codecs
import json as _json
import re
import ssl as _ssl
import urllib.parse
import zlib

from flowcoro.errors import (
    ConnectError,
    ConnectTimeout,
    HttpClientError,
    HttpConnectionError,
    HttpStatusError,
    HttpTimeoutError,
    InvalidArgumentError,
    InvalidRequestError,
    InvalidStateError,
    PoolTimeout,
    ReadTimeout,
    RemoteProtocolError,
    TooManyRedirects,
    TotalTimeout,
    WriteTimeout,
)
from flowcoro.http._client_conn import Connection, Pool, write_timeout_error
from flowcoro.http._client_headers import Headers
from flowcoro.http.parser import EndOfMessage, ResponseHead, ResponseParser

# The client's classes, then its errors (defined in flowcoro.errors and
# re-exported here so ``from flowcoro.http import ReadTimeout`` works).
__all__ = [
    "HttpClient", "Response", "Timeout", "Headers",
    "HttpClientError", "InvalidRequestError", "HttpTimeoutError", "ConnectTimeout",
    "ReadTimeout", "WriteTimeout", "PoolTimeout", "TotalTimeout", "HttpConnectionError",
    "ConnectError", "RemoteProtocolError", "TooManyRedirects", "HttpStatusError",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
# RFC 9110 9.2.2: safe to send twice.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Methods whose empty body is announced with Content-Length: 0 (RFC 9110
# 8.6: a user agent SHOULD send it when the method defines a meaning for
# content and there is none).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Fields that carry credentials: not sent to another origin after a redirect.
_CREDENTIALS = ("authorization", "proxy-authorization", "cookie")
# Fields that describe the body: dropped when a redirect drops the body.
_BODY_FIELDS = ("content-length", "content-type", "transfer-encoding", "content-encoding")
# Characters left as they are in a path / query (RFC 3986 pchar plus '/'
# and '?'; '%' keeps existing escapes); everything else is percent-encoded.
_PATH_SAFE = "/%!$&'()*+,;=:@-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
#: Most bytes of a redirect's body read so its connection can be reused;
#: a larger one costs a new connection instead.
_REDIRECT_DRAIN = 64 * 1024
_URL_CACHE_SIZE = 256
#: Read size for file bodies: large enough for few syscalls, small enough
#: that one blocking read of a local file is a short pause of the loop.
_FILE_PIECE = 64 * 1024
_MISSING = object()

try:
    from importlib.metadata import version as _pkg_version
    _VERSION = _pkg_version("flowcoro")
except Exception:  # pragma: no cover - not installed as a distribution
    _VERSION = "0"
USER_AGENT = f"flowcoro-http/{_VERSION}"


class Timeout:
    """The client's deadlines, in seconds (None: no limit).

    Args:
        connect: opening a connection (TCP connect and TLS handshake).
        read: the wait for each piece of the response (from the request
            written to the head, then between body pieces).
        total: the whole request: pool wait, connect, write, redirects and
            reading the body (for ``stream()``: until the body is read or
            the response closed).
        write: each wait for the server to take request bytes.
        pool: the wait for a free connection when the host is at
            ``max_connections_per_host``.

    ``Timeout(5)`` sets connect = read = write = pool = 5 s and no total;
    ``timeout=5`` given to the client or a request means ``Timeout(total=5)``
    with the other phases at their defaults.
    """

    __slots__ = ("connect", "read", "total", "write", "pool")

    def __init__(self, connect=10.0, read=30.0, total=None, *, write=30.0, pool=30.0, **_):
        if _:
            raise TypeError(f"unknown Timeout arguments: {sorted(_)}")
        for name, value in (("connect", connect), ("read", read), ("total", total),
                            ("write", write), ("pool", pool)):
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise InvalidArgumentError(name, value, "a timeout is None or seconds >= 0")
        self.connect = connect
        self.read = read
        self.total = total
        self.write = write
        self.pool = pool

    @classmethod
    def none(cls):
        """No deadline at all."""
        return cls(None, None, None, write=None, pool=None)

    def __eq__(self, other):
        """Same deadlines."""
        if not isinstance(other, Timeout):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable: unhashable

    def __repr__(self):
        """``Timeout(connect=..., read=..., total=..., write=..., pool=...)``."""
        inner = ", ".join(f"{s}={getattr(self, s)!r}" for s in self.__slots__)
        return f"Timeout({inner})"


def _as_timeout(value):
    if isinstance(value, Timeout):
        return value
    if value is None:
        return Timeout.none()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Timeout(total=value)
    raise InvalidArgumentError("timeout", value, "a Timeout, a number of seconds or None")


class _Deadlines:
    """The per-request deadline state: phase timeouts plus the total deadline."""

    __slots__ = ("loop", "timeout", "total_at")

    def __init__(self, loop, timeout):
        self.loop = loop
        self.timeout = timeout
        self.total_at = None if timeout.total is None else loop.time() + timeout.total

    def at(self, phase_seconds):
        """(loop time to give up, whether it is the total deadline) for a wait."""
        total_at = self.total_at
        if phase_seconds is None:
            return total_at, True
        when = self.loop.time() + phase_seconds
        if total_at is not None and total_at <= when:
            return total_at, True
        return when, False

    def total_error(self):
        return TotalTimeout(f"the request took longer than its total timeout "
                            f"({self.timeout.total} s)")


class _Target:
    """A split, checked URL: what a request needs to know about it."""

    __slots__ = ("url", "scheme", "host", "port", "key", "target", "host_header", "auth")

    def __init__(self, url):
        if _BAD_VALUE.search(url):
            raise InvalidRequestError(f"CR, LF or NUL in URL {url!r}")
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise InvalidRequestError(f"invalid URL {url!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            if not scheme:
                raise InvalidRequestError(f"relative URL {url!r} without a base_url")
            raise InvalidRequestError(f"unsupported URL scheme {scheme!r} in {url!r}")
        host = parts.hostname
        if not host:
            raise InvalidRequestError(f"no host in URL {url!r}")
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError as exc:
                raise InvalidRequestError(f"invalid host name in {url!r}: {exc}") from None
        if port is None:
            port = _DEFAULT_PORTS[scheme]
        path = urllib.parse.quote(parts.path, safe=_PATH_SAFE) or "/"
        query = parts.query
        target = path + "?" + urllib.parse.quote(query, safe=_QUERY_SAFE) if query else path
        hh = f"[{host}]" if ":" in host else host
        if port != _DEFAULT_PORTS[scheme]:
            hh = f"{hh}:{port}"
        self.url = url
        self.scheme = scheme
        self.host = host
        self.port = port
        self.key = (scheme, host, port)
        self.target = target
        self.host_header = hh
        self.auth = None
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            pw = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{pw}".encode()).decode("ascii")
            self.auth = "Basic " + token
            # The URL a response reports carries no credentials.
            netloc = parts.netloc.rpartition("@")[2]
            self.url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path,
                                                parts.query, parts.fragment))


def _check_field(name, value):
    if not _TOKEN.match(name):
        raise InvalidRequestError(f"invalid header name {name!r}")
    if _BAD_VALUE.search(value):
        raise InvalidRequestError(f"CR, LF or NUL in the value of header {name!r}")


class _Request:
    """A request ready to be written: head bytes plus a framed body."""

    __slots__ = ("method", "target", "headers", "body", "stream", "stream_length",
                 "head", "keep_alive", "expect_continue", "host", "via")

    def __init__(self, method, target, headers, body, stream, stream_length, fixed=None,
                 host=None, via=None):
        self.method = method
        self.host = host                # the caller's Host field, else None
        self.via = via                  # through a proxy (plain http): its field lines
        self.target = target
        self.headers = headers          # Headers, without Host / framing fields; not mutated
        self.body = body                # bytes or None
        self.stream = stream            # async iterator of bytes or None
        self.stream_length = stream_length
        if fixed is None:
            fixed = _field_block(headers)
        fields, self.keep_alive, expect = fixed
        self.expect_continue = expect and (body or stream is not None)
        if via is None:
            lines = [f"{method} {target.target} HTTP/1.1\r\n"
                     f"Host: {host or target.host_header}\r\n", fields]
        else:
            # RFC 9112 3.2.2: absolute-form to a proxy.
            lines = [f"{method} http://{target.host_header}{target.target} HTTP/1.1\r\n"
                     f"Host: {host or target.host_header}\r\n", via, fields]
        if stream is not None:
            if stream_length is not None:
                lines.append(f"Content-Length: {stream_length}\r\n")
            else:
                lines.append("Transfer-Encoding: chunked\r\n")
        elif body is not None:
            lines.append(f"Content-Length: {len(body)}\r\n")
        elif method in _BODY_METHODS:
            lines.append("Content-Length: 0\r\n")
        lines.append("\r\n")
        try:
            self.head = "".join(lines).encode("latin-1")
        except UnicodeEncodeError as exc:
            raise InvalidRequestError(
                f"a header value is not latin-1 text: {exc.object[exc.start:exc.end]!r}"
            ) from None

    @property
    def replayable(self):
        """The body can be sent again (no one-shot stream)."""
        return self.stream is None


def _field_block(headers):
    """(the field lines as one str, keep-alive asked, 100-continue asked) of ``headers``."""
    fields = "".join([f"{name}: {value}\r\n" for name, value in headers._items])
    keep_alive = "close" not in [v.lower() for v in headers.get_list("connection")]
    expect = headers.get("expect", "").lower() == "100-continue"
    return fields, keep_alive, expect


class Response:
    """An HTTP response.

    Attributes:
        status: the status code (``int``).
        reason: the reason phrase (``str``).
        http_version: ``"1.1"`` or ``"1.0"``.
        headers: :class:`Headers` (case-insensitive multi-dict).
        url: the URL that answered (after redirects).
        method: the request method that got this response.
        history: the redirect responses that led here, oldest first.
        trailers: a chunked body's trailer fields (a :class:`Headers`),
            once the body has been read.

    The body: ``await r.read()`` (bytes, kept), then ``r.content``,
    ``r.text()``, ``r.json()``; or, on a response from
    :meth:`HttpClient.stream`, ``async for chunk in r.iter_bytes()``.
    Responses from ``get()``/``request()`` come with the body already read.
    """

    __slots__ = ("status", "reason", "http_version", "_headers", "_raw_headers", "url",
                 "method", "history", "_trailers", "_conn", "_client", "_content", "_deadlines",
                 "_reusable", "_streamed", "_closed", "_decoder")

    def __init__(self, head, url, method, conn, client, deadlines, reusable):
        self.status = head.status_code
        self.reason = head.reason.decode("latin-1")
        self.http_version = head.http_version
        self._raw_headers = head.headers
        self._headers = None            # built on first access
        self.url = url
        self.method = method
        self.history = []
        self._trailers = None           # raw trailer list once the body ended
        self._conn = conn
        self._client = client
        self._content = None
        self._deadlines = deadlines
        self._reusable = reusable and head.keep_alive and head.status_code != 101
        self._streamed = False
        self._closed = False
        self._decoder = None
        if client is not None and client.decompress:
            for name, value in head.headers:
                if name == b"content-encoding":
                    self._decoder = _Decoder.make(head.headers, client._limits.get("max_body"))
                    break

    @property
    def trailers(self):
        """A chunked body's trailer fields (:class:`Headers`; empty before the
        body ended or without trailers)."""
        return Headers._from_raw(self._trailers or ())

    @property
    def headers(self):
        """The header fields, a :class:`Headers` (case-insensitive multi-dict)."""
        h = self._headers
        if h is None:
            h = self._headers = Headers._from_raw(self._raw_headers)
        return h

    # -- body ------------------------------------------------------------------

    async def read(self):
        """Read the whole body (once; later calls return the same bytes)."""
        if self._content is not None:
            return self._content
        if self._streamed:
            raise InvalidStateError("the body was already consumed with iter_bytes()")
        if self._closed:
            raise InvalidStateError("the response was closed before its body was read")
        conn = self._conn
        chunks = []
        try:
            while True:
                ready = conn.take_ready()
                for i, ev in enumerate(ready):
                    if type(ev) is bytes:
                        chunks.append(ev)
                    else:
                        if i + 1 < len(ready):
                            conn.broken = True    # events after the response: not reusable
                        self._finish(ev)
                        return self._complete(chunks)
                ev = await self._next()
                if type(ev) is bytes:
                    chunks.append(ev)
                else:
                    self._finish(ev)
                    return self._complete(chunks)
        except BaseException:
            self._abort()
            raise

    def _complete(self, chunks):
        data = b"".join(chunks)
        dec = self._decoder
        if dec is not None:
            data = dec.feed(data) + dec.flush()
        self._content = data
        return data

    async def iter_bytes(self, chunk_size=None):
        """Yield the body as it arrives (pieces as received; ``chunk_size``:
        re-cut into pieces of that size, the last one shorter).

        At most about 256 KiB of unread body is buffered: reading stops
        until the consumer catches up.  A body already read is yielded from
        memory.
        """
        if self._content is not None:
            data = self._content
            step = chunk_size or len(data) or 1
            for i in range(0, len(data), step):
                yield data[i:i + step]
            return
        if self._streamed:
            raise InvalidStateError("the body was already consumed")
        if self._closed:
            raise InvalidStateError("the response was closed before its body was read")
        self._streamed = True
        pending = bytearray()
        dec = self._decoder
        try:
            while True:
                ev = await self._next()
                if type(ev) is bytes:
                    if dec is not None:
                        ev = dec.feed(ev)
                    if chunk_size is None:
                        if ev:
                            yield ev
                        continue
                    pending += ev
                    while len(pending) >= chunk_size:
                        piece = bytes(pending[:chunk_size])
                        del pending[:chunk_size]
                        yield piece
                else:
                    self._finish(ev)
                    if dec is not None:
                        pending += dec.flush()
                    if pending:
                        if chunk_size is None:
                            yield bytes(pending)
                        else:
                            for i in range(0, len(pending), chunk_size):
                                yield bytes(pending[i:i + chunk_size])
                    return
        finally:
            if self._conn is not None:
                # Left early (break, error, cancellation): drop the connection.
                self._abort()

    async def iter_text(self, encoding=None, errors="replace"):
        """Yield the body as text while it arrives (``encoding``, else the
        Content-Type charset, else UTF-8; a character split between pieces
        is kept whole)."""
        try:
            decoder = codecs.getincrementaldecoder(encoding or self.encoding)(errors)
        except LookupError:
            decoder = codecs.getincrementaldecoder("utf-8")(errors)
        async for piece in self.iter_bytes():
            text = decoder.decode(piece)
            if text:
                yield text
        text = decoder.decode(b"", final=True)
        if text:
            yield text

    async def iter_lines(self, encoding=None, errors="replace"):
        """Yield the body's lines while it arrives, without their line ends
        (LF or CRLF), for line-delimited streams (NDJSON, logs, SSE)."""
        pending = ""
        async for text in self.iter_text(encoding, errors):
            pending += text
            lines = pending.split("\n")
            pending = lines.pop()
            for line in lines:
                yield line[:-1] if line.endswith("\r") else line
        if pending:
            yield pending[:-1] if pending.endswith("\r") else pending

    async def _next(self):
        d = self._deadlines
        when, is_total = d.at(d.timeout.read)
        if is_total:
            return await self._conn.next_event(when, d.total_error)
        return await self._conn.next_event(when, _read_timeout)

    def _finish(self, eom):
        """The body is complete: keep trailers, give the connection back."""
        self._trailers = eom.trailers
        conn, self._conn = self._conn, None
        self._closed = True
        if conn is not None:
            if conn.events or not conn.parser.idle:
                conn.broken = True    # bytes after the response: framing unknown
            self._client._release(conn, self._reusable)

    def _abort(self):
        conn, self._conn = self._conn, None
        self._closed = True
        if conn is not None:
            self._client._discard(conn)

    def __del__(self):
        # A streamed response dropped without aclose(): free its pool slot
        # (its connection is mid-body, so it is closed, never reused).
        if getattr(self, "_conn", None) is not None:
            try:
                self._abort()
            except Exception:  # pragma: no cover - loop already closed at exit
                pass

    async def aclose(self):
        """Release the connection; an unread body closes it (not reused)."""
        if self._conn is not None:
            self._abort()

    async def __aenter__(self):
        """The response itself."""
        return self

    async def __aexit__(self, *exc):
        """Close (see :meth:`aclose`)."""
        await self.aclose()

    @property
    def is_closed(self):
        """The response no longer holds a connection."""
        return self._conn is None

    @property
    def content(self):
        """The body, once read (InvalidStateError before)."""
        if self._content is None:
            raise InvalidStateError("the body has not been read: await response.read()")
        return self._content

    @property
    def encoding(self):
        """The charset of Content-Type, or ``"utf-8"``."""
        ctype = self.headers.get("content-type", "")
        for param in ctype.split(";")[1:]:
            k, _, v = param.partition("=")
            if k.strip().lower() == "charset" and v.strip():
                return v.strip().strip('"')
        return "utf-8"

    def text(self, encoding=None, errors="replace"):
        """The body decoded (``encoding``, else Content-Type's charset, else UTF-8)."""
        enc = encoding or self.encoding
        try:
            return self.content.decode(enc, errors)
        except LookupError:
            return self.content.decode("utf-8", errors)

    def json(self, **loads_kwargs):
        """The body parsed as JSON (``json.loads``)."""
        return _json.loads(self.content, **loads_kwargs)

    # -- status ----------------------------------------------------------------

    @property
    def ok(self):
        """True for a status below 400."""
        return self.status < 400

    @property
    def is_redirect(self):
        """A redirect status with a Location field."""
        return self.status in _REDIRECTS and "location" in self.headers

    def raise_for_status(self):
        """Raise :class:`~flowcoro.errors.HttpStatusError` for 4xx/5xx; else return self."""
        if self.status >= 400:
            kind = "client error" if self.status < 500 else "server error"
            raise HttpStatusError(f"{self.status} {self.reason} ({kind}) for "
                                  f"{self.method} {self.url}", self, self.status)
        return self

    def __repr__(self):
        """``<Response 200 OK GET http://...>``."""
        return f"<Response {self.status} {self.reason} {self.method} {self.url}>"


class _Decoder:
    """Undoes a gzip or deflate Content-Encoding, piece by piece (RFC 9110 8.4.1).

    The decoded size is bounded by ``response_limits["max_body"]`` too (a
    small compressed body can expand a thousandfold).
    """

    __slots__ = ("coding", "obj", "limit", "out", "fed", "raw_tried")

    #: wbits for zlib: gzip framing, zlib framing (the spec's "deflate").
    WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS,
             "deflate": zlib.MAX_WBITS}

    @classmethod
    def make(cls, raw_headers, limit):
        """A decoder for the response's Content-Encoding, or None (identity,
        or codings we do not decode: the body is then given as received)."""
        codings = []
        for name, value in raw_headers:
            if name == b"content-encoding":
                codings += [c.strip().lower() for c in value.decode("latin-1").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) != 1 or codings[0] not in cls.WBITS:
            return None
        return cls(codings[0], limit)

    def __init__(self, coding, limit):
        self.coding = coding
        self.obj = zlib.decompressobj(self.WBITS[coding])
        self.limit = limit
        self.out = 0
        self.fed = False
        self.raw_tried = False

    def feed(self, data):
        """Decoded bytes for the next piece of the body."""
        if not data:
            return b""
        try:
            out = self.obj.decompress(data)
        except zlib.error as exc:
            if self.coding == "deflate" and not self.fed and not self.raw_tried:
                # Some servers send raw DEFLATE without the zlib wrapper.
                self.raw_tried = True
                self.obj = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.feed(data)
            raise self._error(f"invalid {self.coding} body: {exc}") from None
        self.fed = True
        return self._count(out)

    def flush(self):
        """The rest at the end of the body; a truncated stream is an error."""
        out = self.obj.flush()
        if self.fed and not self.obj.eof:
            raise self._error(f"truncated {self.coding} body")
        return self._count(out)

    def _count(self, out):
        self.out += len(out)
        if self.limit is not None and self.out > self.limit:
            raise RemoteProtocolError("body_too_large", 413, self.out,
                                      f"decoded body over max_body ({self.limit} bytes)")
        return out

    def _error(self, message):
        return RemoteProtocolError("content_decoding_error", 502, self.out, message)


def _read_timeout():
    return ReadTimeout("the server did not answer within the read timeout")


class _StreamContext:
    """``async with client.stream(...) as response``: the response is closed on exit."""

    __slots__ = ("_coro", "_response")

    def __init__(self, coro):
        self._coro = coro
        self._response = None

    async def __aenter__(self):
        self._response = await self._coro
        return self._response

    async def __aexit__(self, *exc):
        await self._response.aclose()


class HttpClient:
    """An HTTP/1.1 client with a keep-alive connection pool.

    Args:
        base_url: prefix for relative URLs (``"/users"`` against
            ``"http://h/api"`` is ``http://h/api/users``).
        timeout: a :class:`Timeout`, a number (the total timeout) or None.
        max_connections_per_host: cap on open connections per
            (scheme, host, port); requests beyond wait up to ``Timeout.pool``.
        keepalive_expiry: seconds an idle connection is kept (None: until
            the server closes it).
        follow_redirects: follow 301/302/303/307/308 (per-request override).
        max_redirects: more raises :class:`~flowcoro.errors.TooManyRedirects`.
        verify: TLS verification: True (system CAs), False (none), a CA
            file path, or an :class:`ssl.SSLContext` used as is.
        headers: default header fields of every request.
        response_limits: ResponseParser limits (``max_status_line``,
            ``max_header_field``, ``max_headers``, ``max_header_block``,
            ``max_chunk_line``, ``max_body``); a response over one raises
            :class:`~flowcoro.errors.RemoteProtocolError`.
        decompress: send ``Accept-Encoding: gzip, deflate`` and decode
            such bodies (``max_body`` then bounds the decoded size too).
        proxy: an HTTP proxy URL (``"http://[user:password@]host:port"``):
            plain-http requests go to it in absolute form, https ones
            through a CONNECT tunnel (TLS end to end with the origin).

    Use it as ``async with HttpClient() as c:`` (or call :meth:`aclose`);
    a client belongs to the loop it is first used on.
    """

    def __init__(self, base_url=None, *, timeout=Timeout(), max_connections_per_host=100,
                 keepalive_expiry=15.0, follow_redirects=True, max_redirects=20, verify=True,
                 headers=None, response_limits=None, decompress=True, proxy=None):
        if base_url is not None:
            _Target(base_url)            # checked now, not at the first request
            base_url = base_url.rstrip("/")
        self.base_url = base_url
        self.timeout = _as_timeout(timeout)
        if not isinstance(max_connections_per_host, int) or max_connections_per_host < 1:
            raise InvalidArgumentError("max_connections_per_host", max_connections_per_host,
                                       "at least 1")
        if keepalive_expiry is not None and keepalive_expiry < 0:
            raise InvalidArgumentError("keepalive_expiry", keepalive_expiry, "seconds >= 0")
        if not isinstance(max_redirects, int) or max_redirects < 0:
            raise InvalidArgumentError("max_redirects", max_redirects, "an int >= 0")
        self.max_connections_per_host = max_connections_per_host
        self.keepalive_expiry = keepalive_expiry
        self.follow_redirects = follow_redirects
        self.max_redirects = max_redirects
        self.decompress = bool(decompress)
        h = Headers({"User-Agent": USER_AGENT, "Accept": "*/*"})
        if self.decompress:
            h["Accept-Encoding"] = "gzip, deflate"
        if headers is not None:
            for name, value in Headers(headers).items():
                h[name] = value
        for name, value in h.items():
            _check_field(name, value)
        for name in ("content-length", "transfer-encoding", "host"):
            h.pop(name)
        # Fixed at construction: the encoded field block is reused by every
        # request that adds no fields of its own.
        self._headers = h
        self._fixed = _field_block(h)
        self._limits = dict(response_limits or {})
        try:
            ResponseParser(**self._limits)
        except TypeError as exc:
            raise InvalidArgumentError("response_limits", response_limits, str(exc)) from None
        self._verify = verify
        self._proxy = None
        self._proxy_fields = ""
        if proxy is not None:
            try:
                p = _Target(proxy) if isinstance(proxy, str) else None
            except InvalidRequestError:
                p = None
            if p is None or p.scheme != "http":
                raise InvalidArgumentError("proxy", proxy, "an http:// proxy URL")
            self._proxy = p
            if p.auth is not None:
                self._proxy_fields = f"Proxy-Authorization: {p.auth}\r\n"
        self._ssl = None
        self._loop = None
        self._pool = None
        self._closed = False
        self._url_cache = {}

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self):
        """Bind to the running loop; returns the client."""
        self._bind()
        return self

    async def __aexit__(self, *exc):
        """Close (see :meth:`aclose`)."""
        await self.aclose()

    def __del__(self):
        # Dropped without aclose(): close the idle connections (while the loop
        # can still run their close) instead of leaving them to the GC.
        pool = getattr(self, "_pool", None)     # None too when __init__ raised
        if pool is not None and not self._closed and pool.idle:
            try:
                if not self._loop.is_closed():
                    pool.close()
            except Exception:  # pragma: no cover - interpreter shutdown
                pass

    async def aclose(self):
        """Close every idle connection; the client takes no more requests."""
        self._closed = True
        if self._pool is not None:
            self._pool.close()

    @property
    def is_closed(self):
        """:meth:`aclose` was called."""
        return self._closed

    @property
    def headers(self):
        """A copy of the default header fields (fixed when the client was made)."""
        return self._headers.copy()

    def _bind(self):
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._pool = Pool(loop, self.max_connections_per_host, self.keepalive_expiry)
        elif self._loop is not loop:
            raise InvalidStateError("an HttpClient is used on the loop it was first used on")
        return loop

    def idle_connections(self, url=None):
        """How many idle keep-alive connections the pool holds (to ``url``'s origin, or all)."""
        if self._pool is None:
            return 0
        return self._pool.idle_count(None if url is None else self._target(url).key)

    def _ssl_context(self):
        if self._ssl is None:
            v = self._verify
            if isinstance(v, _ssl.SSLContext):
                self._ssl = v
            else:
                if v is False:
                    ctx = _ssl.create_default_context()
                    ctx.check_hostname = False
                    ctx.verify_mode = _ssl.CERT_NONE
                elif v is True:
                    ctx = _ssl.create_default_context()
                else:
                    ctx = _ssl.create_default_context(cafile=v)
                ctx.set_alpn_protocols(["http/1.1"])
                self._ssl = ctx
        return self._ssl

    # -- the verbs ---------------------------------------------------------------

    async def get(self, url, **kwargs):
        """``request("GET", url, ...)``."""
        return await self.request("GET", url, **kwargs)

    async def head(self, url, **kwargs):
        """``request("HEAD", url, ...)`` (the response has no body)."""
        return await self.request("HEAD", url, **kwargs)

    async def options(self, url, **kwargs):
        """``request("OPTIONS", url, ...)``."""
        return await self.request("OPTIONS", url, **kwargs)

    async def post(self, url, **kwargs):
        """``request("POST", url, ...)``."""
        return await self.request("POST", url, **kwargs)

    async def put(self, url, **kwargs):
        """``request("PUT", url, ...)``."""
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url, **kwargs):
        """``request("PATCH", url, ...)``."""
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url, **kwargs):
        """``request("DELETE", url, ...)``."""
        return await self.request("DELETE", url, **kwargs)

    async def request(self, method, url, *, params=None, headers=None, data=None, json=_MISSING,
                      timeout=_MISSING, follow_redirects=None):
        """Send a request and read the whole response.

        Args:
            method: ``"GET"``, ``"POST"``, ... (any token; sent as given).
            url: absolute, or relative to ``base_url``.
            params: query parameters (mapping or pairs; lists repeat a key),
                appended to the URL's query.
            headers: header fields (mapping, pairs or :class:`Headers`);
                they replace the client's fields of the same name.
            data: the body: ``bytes``, ``str`` (UTF-8), a mapping (sent as
                a form), a binary file object, or an (async) iterable of
                bytes (sent chunked, or with the Content-Length given in
                ``headers``).
            json: a value sent as JSON (instead of ``data``).
            timeout: a :class:`Timeout`, a number (total) or None.
            follow_redirects: override the client's setting.

        Returns:
            :class:`Response` with its body read.

        Raises:
            InvalidRequestError, ConnectError, HttpConnectionError,
            RemoteProtocolError, ConnectTimeout, ReadTimeout, WriteTimeout,
            PoolTimeout, TotalTimeout, TooManyRedirects (all in
            :mod:`flowcoro.errors`).
        """
        resp = await self._send(method, url, params, headers, data, json, timeout,
                                follow_redirects)
        if resp._content is None:
            await resp.read()
        return resp

    def stream(self, method, url, *, params=None, headers=None, data=None, json=_MISSING,
               timeout=_MISSING, follow_redirects=None):
        """Send a request; the response's body is read by the caller.

        Use as ``async with client.stream("GET", url) as r:`` and read with
        ``r.iter_bytes()`` or ``r.read()``; leaving the block closes the
        response (an unread body closes its connection).  Arguments as
        :meth:`request`.
        """
        return _StreamContext(self._send(method, url, params, headers, data, json, timeout,
                                         follow_redirects))

    # -- machinery ----------------------------------------------------------------

    def _target(self, url, params=None):
        if not isinstance(url, str):
            raise InvalidRequestError(f"a URL is a str, not {type(url).__name__}")
        if params is None:
            t = self._url_cache.get(url)
            if t is not None:
                return t
        full = url
        if self.base_url is not None and "://" not in url[:16]:
            full = self.base_url + "/" + url.lstrip("/") if url else self.base_url
        if params:
            query = urllib.parse.urlencode(
                params if isinstance(params, (list, tuple)) else list(params.items()),
                doseq=True)
            base, _, frag = full.partition("#")
            full = base + ("&" if "?" in base else "?") + query
        t = _Target(full)
        if params is None:
            if len(self._url_cache) >= _URL_CACHE_SIZE:
                self._url_cache.clear()
            self._url_cache[url] = t
        return t

    def _build(self, method, target, headers, data, json_value):
        if not isinstance(method, str) or not _TOKEN.match(method):
            raise InvalidRequestError(f"invalid method {method!r}")
        if (headers is None and target.auth is None and json_value is _MISSING
                and (data is None or isinstance(data, bytes))):
            # The common case: the client's own fields, encoded once.
            return _Request(method, target, self._headers, data, None, None, self._fixed,
                            via=self._via(target))
        h = self._headers.copy()
        if target.auth is not None:
            h["Authorization"] = target.auth
        if headers is not None:
            extra = headers if isinstance(headers, Headers) else Headers(headers)
            seen = set()
            for name, value in extra._items:
                _check_field(name, value)
                low = name.lower()
                if low in seen:
                    h.add(name, value)
                else:
                    seen.add(low)
                    h[name] = value
        user_length = h.pop("content-length")
        h.pop("transfer-encoding")
        host = h.pop("host")
        body = None
        stream = None
        stream_length = None
        if json_value is not _MISSING:
            if data is not None:
                raise InvalidRequestError("give data= or json=, not both")
            body = _json.dumps(json_value, separators=(",", ":"),
                               ensure_ascii=False).encode("utf-8")
            h.setdefault("Content-Type", "application/json")
        elif data is None:
            pass
        elif isinstance(data, (bytes, bytearray, memoryview)):
            body = bytes(data)
        elif isinstance(data, str):
            body = data.encode("utf-8")
            h.setdefault("Content-Type", "text/plain; charset=utf-8")
        elif hasattr(data, "items"):
            body = urllib.parse.urlencode(list(data.items()), doseq=True).encode("ascii")
            h.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif hasattr(data, "__aiter__"):
            stream = data.__aiter__()
        elif hasattr(data, "read"):
            # A binary file: read in pieces (not by lines, as iterating it would).
            stream = _aiter_sync(iter(lambda: data.read(_FILE_PIECE), b""))
        elif hasattr(data, "__iter__"):
            stream = _aiter_sync(data)
        else:
            raise InvalidRequestError(f"cannot send a {type(data).__name__} as a body")
        if stream is not None and user_length is not None:
            if not user_length.isdigit():
                raise InvalidRequestError(f"invalid Content-Length {user_length!r}")
            stream_length = int(user_length)
        return _Request(method, target, h, body, stream, stream_length, host=host,
                        via=self._via(target))

    async def _send(self, method, url, params, headers, data, json_value, timeout,
                    follow_redirects):
        if self._closed:
            raise InvalidStateError("the client is closed")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind()                # first use, or InvalidStateError on another loop
        timeout = self.timeout if timeout is _MISSING else _as_timeout(timeout)
        deadlines = _Deadlines(loop, timeout)
        target = self._target(url, params)
        req = self._build(method, target, headers, data, json_value)
        follow = self.follow_redirects if follow_redirects is None else follow_redirects
        history = []
        while True:
            resp = await self._send_one(req, target, deadlines)
            if not follow or resp.status not in _REDIRECTS:
                break
            location = resp.headers.get("location")
            if not location:
                break
            try:
                nxt = self._redirect(req, target, resp, location)
            except BaseException:
                await resp.aclose()         # a Location we cannot follow: free the connection
                raise
            if nxt is None:
                break
            if len(history) >= self.max_redirects:
                await self._drain(resp)
                raise TooManyRedirects(f"more than {self.max_redirects} redirects "
                                       f"(last: {resp.url} -> {location})", resp)
            await self._drain(resp)
            history.append(resp)
            req, target = nxt
        resp.history = history
        return resp

    async def _drain(self, resp):
        """Read a redirect's body (a small one keeps its connection), or close."""
        length = resp.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) <= _REDIRECT_DRAIN:
            resp._decoder = None        # read to reuse the connection, never looked at
            await resp.read()
        else:
            await resp.aclose()
            resp._content = b""

    def _redirect(self, req, target, resp, location):
        """The request a redirect asks for: (request, target), or None when it
        cannot be followed (a one-shot body that 307/308 would resend)."""
        try:
            new_target = _Target(urllib.parse.urljoin(target.url, location))
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"cannot follow redirect to {location!r}: {exc}") from None
        status = resp.status
        method = req.method
        keep_body = True
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            # RFC 9110 15.4.4 (303) and the 301/302 POST->GET practice it documents.
            method = "GET"
            keep_body = False
        if keep_body and not req.replayable:
            return None
        h = req.headers.copy()
        if new_target.key != target.key:
            for name in _CREDENTIALS:
                h.pop(name)
        if new_target.auth is not None:
            h["Authorization"] = new_target.auth
        if not keep_body:
            for name in _BODY_FIELDS:
                h.pop(name)
            body = None
        else:
            body = req.body
        # A Host given by the caller holds while the origin does.
        host = req.host if new_target.key == target.key else None
        return (_Request(method, new_target, h, body, None, None, host=host,
                         via=self._via(new_target)), new_target)

    def _release(self, conn, reusable):
        if self._pool is not None:
            self._pool.release(conn, reusable and not self._closed)

    def _discard(self, conn):
        if self._pool is not None:
            self._pool.discard(conn)
        else:  # pragma: no cover - a connection exists only with a pool
            conn.close()

    def _via(self, target):
        """The proxy's field lines for a plain-http request through it, else None."""
        if self._proxy is None or target.scheme != "http":
            return None
        return self._proxy_fields

    async def _open(self, conn, target):
        """Open ``conn`` to ``target``: directly, or through the proxy."""
        loop = self._loop
        ssl_ctx = self._ssl_context() if target.scheme == "https" else None
        proxy = self._proxy
        if proxy is None:
            await loop.create_connection(
                lambda: conn, target.host, target.port, ssl=ssl_ctx,
                server_hostname=target.host if ssl_ctx is not None else None)
            return
        await loop.create_connection(lambda: conn, proxy.host, proxy.port)
        if ssl_ctx is None:
            return
        # https through the proxy: a CONNECT tunnel (RFC 9110 9.3.6), then TLS
        # with the origin over it; the proxy sees only ciphertext.
        authority = (f"[{target.host}]" if ":" in target.host else target.host) + \
            f":{target.port}"
        conn.start_request("CONNECT")
        conn.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
                   f"{self._proxy_fields}\r\n".encode("latin-1"))
        try:
            while True:
                ev = await conn.next_event(None, None)
                if type(ev) is ResponseHead and not 100 <= ev.status_code < 200:
                    break
        except (HttpConnectionError, RemoteProtocolError) as exc:
            raise ConnectError(f"proxy {proxy.host}:{proxy.port} failed the CONNECT to "
                               f"{authority}: {exc}") from exc
        if not 200 <= ev.status_code < 300:
            raise ConnectError(f"proxy {proxy.host}:{proxy.port} refused the CONNECT to "
                               f"{authority}: {ev.status_code} "
                               f"{ev.reason.decode('latin-1')}")
        # The parser stopped after the 2xx head; the tunnel gets a fresh one.
        conn.events.clear()
        conn.parser = ResponseParser(**self._limits)
        conn.transport = await loop.start_tls(conn.transport, conn, ssl_ctx,
                                              server_hostname=target.host)

    async def _connect(self, target, deadlines):
        loop = self._loop
        when, is_total = deadlines.at(deadlines.timeout.connect)
        conn = Connection(loop, target.key, self._limits)
        coro = self._open(conn, target)
        try:
            try:
                if when is None:
                    await coro
                else:
                    await asyncio.wait_for(coro, max(0.0, when - loop.time()))
            except BaseException:
                # Failed, timed out or cancelled: a transport made meanwhile is ours to close.
                conn.close()
                raise
        except asyncio.TimeoutError:
            if is_total:
                raise deadlines.total_error() from None
            raise ConnectTimeout(f"connecting to {target.host}:{target.port} took longer than "
                                 f"{deadlines.timeout.connect} s") from None
        except (OSError, _ssl.SSLError) as exc:
            raise ConnectError(f"cannot connect to {target.host}:{target.port}: {exc}") from exc
        return conn

    async def _send_one(self, req, target, deadlines):
        pool = self._pool
        for attempt in (0, 1):
            conn = pool.take_idle(target.key)
            if conn is not None:
                reused = True
            else:
                when, is_total = deadlines.at(deadlines.timeout.pool)
                try:
                    conn, reused = await pool.acquire(
                        target.key, lambda: self._connect(target, deadlines), when)
                except PoolTimeout:
                    # The pool wait's own timer; connect errors pass through as they are.
                    if is_total:
                        raise deadlines.total_error() from None
                    raise
            try:
                head, written = await self._exchange(conn, req, deadlines)
            except HttpConnectionError:
                pool.discard(conn)
                if (attempt == 0 and reused and not conn.got_bytes
                        and req.method in _IDEMPOTENT and req.replayable):
                    continue     # the server closed the idle connection: once more
                raise
            except BaseException:
                pool.discard(conn)
                raise
            resp = Response(head, target.url, req.method, conn, self, deadlines,
                            written and req.keep_alive)
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exchange(self, conn, req, deadlines):
        """Write ``req`` on ``conn`` and read up to the final response head.

        Returns (head, whether the whole request was written).
        """
        conn.start_request(req.method)
        written = True
        if req.body is not None and not req.expect_continue:
            # The common case: head and body in one write (one segment when small).
            if len(req.body) <= 16384:
                conn.write(req.head + req.body)
            else:
                conn.write(req.head)
                conn.write(req.body)
            if conn._write_paused:
                written = await self._drain_writes(conn, deadlines)
        elif req.body is None and req.stream is None:
            conn.write(req.head)
            if conn._write_paused:
                written = await self._drain_writes(conn, deadlines)
        else:
            conn.write(req.head)
            if req.expect_continue:
                ev = await self._await_continue(conn, deadlines)
                if ev is not None:
                    # A final answer before the body: the body is not sent, so the
                    # connection's framing is unknown to the server: do not reuse.
                    return ev, False
            written = await self._write_body(conn, req, deadlines)
        when, is_total = deadlines.at(deadlines.timeout.read)
        exc_factory = deadlines.total_error if is_total else _read_timeout
        while True:
            ev = await conn.next_event(when, exc_factory)
            if type(ev) is ResponseHead:
                if 100 <= ev.status_code < 200 and ev.status_code != 101:
                    continue            # interim (RFC 9110 15.2): its EndOfMessage follows
                return ev, written
            # The EndOfMessage of an interim response: skip it.

    async def _await_continue(self, conn, deadlines):
        """Wait (at most 1 s, RFC 9110 10.1.1) for 100 Continue; a final head is returned."""
        loop = self._loop
        wait_until = loop.time() + 1.0
        if deadlines.total_at is not None and deadlines.total_at < wait_until:
            wait_until = deadlines.total_at
        try:
            while True:
                ev = await conn.next_event(wait_until, _ContinueWaitOver)
                if type(ev) is ResponseHead:
                    if ev.status_code == 100:
                        nxt = await conn.next_event(wait_until, _ContinueWaitOver)
                        assert type(nxt) is EndOfMessage
                        return None
                    if 100 < ev.status_code < 200 and ev.status_code != 101:
                        continue
                    return ev
        except _ContinueWaitOver:
            if deadlines.total_at is not None and loop.time() >= deadlines.total_at:
                raise deadlines.total_error() from None
            return None

    async def _drain_writes(self, conn, deadlines):
        """Wait for room to write; False when the response started first."""
        when, is_total = deadlines.at(deadlines.timeout.write)
        return await conn.drain(when, deadlines.total_error if is_total else write_timeout_error)

    async def _write_body(self, conn, req, deadlines):
        """Write the body; returns False when the server answered first (stop early)."""
        if req.stream is None:
            conn.write(req.body)
            if conn._write_paused:
                return await self._drain_writes(conn, deadlines)
            return True
        chunked = req.stream_length is None
        sent = 0
        async for piece in req.stream:
            if isinstance(piece, str):
                piece = piece.encode("utf-8")
            elif not isinstance(piece, (bytes, bytearray, memoryview)):
                raise InvalidRequestError(
                    f"a body stream yields bytes, not {type(piece).__name__}")
            if not piece:
                continue
            if conn.events or conn.closed:
                return False       # the server answered (or left) before the end
            if chunked:
                conn.write(b"%x\r\n" % len(piece) + bytes(piece) + b"\r\n")
            else:
                sent += len(piece)
                if sent > req.stream_length:
                    raise InvalidRequestError(
                        f"the body stream is longer than its Content-Length {req.stream_length}")
                conn.write(piece)
            if conn._write_paused and not await self._drain_writes(conn, deadlines):
                return False
        if chunked:
            if conn.events or conn.closed:
                return False
            conn.write(b"0\r\n\r\n")
        elif sent != req.stream_length:
            raise InvalidRequestError(
                f"the body stream ended after {sent} of its Content-Length "
                f"{req.stream_length} bytes")
        if conn._write_paused:
            return await self._drain_writes(conn, deadlines)
        return True


class _ContinueWaitOver(Exception):
    """Internal: the wait for 100 Continue is over; send the body."""


async def _aiter_sync(iterable):
    for piece in iterable:
        yield piece
