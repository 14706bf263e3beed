"""The whole FlowCoro exception hierarchy.

Every error FlowCoro raises on purpose derives from :class:`FlowCoroError`;
OS-level failures keep their OSError subclass (ConnectionResetError, ...)
so code written for asyncio catches them as before.

Each layer (HTTP, Redis, databases, WebSocket, ...) adds its classes in its
own section below; ``__all__`` is computed at the end from the classes
defined here, so a new error needs no second edit.
"""

import queue as _queue



class FlowCoroError(Exception):
    """Base class of every error FlowCoro raises on purpose."""


class LoopClosedError(FlowCoroError, RuntimeError):
    """The event loop is closed."""


class BackendError(FlowCoroError, ValueError):
    """An unknown or unavailable reactor backend was asked for."""


class InvalidArgumentError(FlowCoroError, ValueError):
    """A call got an argument it cannot use (the caller's fault).

    Attributes:
        argument: the parameter's name.
        value: the value that was passed.
    """

    def __init__(self, argument, value, reason):
        self.argument = argument
        self.value = value
        super().__init__(f"{argument}={value!r}: {reason}")

    def __reduce__(self):
        reason = self.args[0].split(": ", 1)[1]
        return type(self), (self.argument, self.value, reason)


class InvalidStateError(FlowCoroError, RuntimeError):
    """An object was used in a state that does not allow the call.

    Examples: ``accept()`` on a server that is already serving, a second
    concurrent ``read()`` on one stream, ``serve()`` before binding.
    """


class StreamError(FlowCoroError):
    """A flowcoro.net stream operation failed."""


class StreamClosedError(StreamError, ConnectionError):
    """The stream was closed by this side; it can no longer be read or written."""


class IncompleteReadError(StreamError, EOFError):
    """EOF came before the bytes asked for; ``partial`` holds what arrived.

    Attributes:
        partial: the bytes read before EOF.
        expected: how many bytes were asked for (None: up to a separator).
    """

    def __init__(self, partial, expected):
        self.partial = partial
        self.expected = expected
        r = f"{len(partial)} bytes read on a total of {expected!r} expected bytes"
        super().__init__(f"incomplete read: {r}")

    def __reduce__(self):
        return type(self), (self.partial, self.expected)


class LimitOverrunError(StreamError):
    """A separator was not found within the buffer limit.

    Attributes:
        consumed: how many bytes were looked at.
    """

    def __init__(self, message, consumed):
        super().__init__(message)
        self.consumed = consumed

    def __reduce__(self):
        return type(self), (self.args[0], self.consumed)


class ServerClosedError(FlowCoroError):
    """The server was stopped; it accepts no more connections."""


class PoolError(FlowCoroError):
    """A connection pool failed."""


class PoolTimeoutError(PoolError, TimeoutError):
    """No connection became free within the acquire timeout."""


class PoolClosedError(PoolError):
    """The pool was closed."""


# ---- lock-free containers and the executor (flowcoro.lockfree, .scheduler) --

class QueueFull(FlowCoroError, _queue.Full):
    """``put_nowait`` (or a timed ``put``) found no room in a bounded queue or ring.

    Also a :class:`queue.Full`, so code written for :mod:`queue` catches it.
    """


class QueueEmpty(FlowCoroError, _queue.Empty):
    """``get_nowait`` (or a timed ``get``) found nothing in a queue or ring.

    Also a :class:`queue.Empty`, so code written for :mod:`queue` catches it.
    """


class StackFull(FlowCoroError, OverflowError):
    """``Stack.push`` found the stack at its ``maxsize``."""


class StackEmpty(FlowCoroError, IndexError):
    """``Stack.pop`` found the stack empty (an IndexError, like ``list.pop``)."""


class ExecutorShutdownError(FlowCoroError, RuntimeError):
    """Work was submitted to an executor after ``shutdown()``.

    A RuntimeError, as :class:`concurrent.futures.ThreadPoolExecutor` raises.
    """


# ---- HTTP (flowcoro.http) ---------------------------------------------------

class HttpError(FlowCoroError):
    """Base class of the HTTP errors (:mod:`flowcoro.http`)."""


class HttpParseError(HttpError, ValueError):
    """The peer sent bytes that are not acceptable HTTP/1.1: the peer's fault.

    Raised by the HTTP/1.1 parsers (:class:`flowcoro.http.RequestParser`,
    :class:`flowcoro.http.ResponseParser`), in the spirit of h11's
    ``RemoteProtocolError``: a server answers with :attr:`status` and closes
    the connection.  The parser is unusable afterwards (every later call
    raises the same error).

    Attributes:
        code: short stable name of the rejection, e.g. ``"bare_lf"``,
            ``"content_length_with_transfer_encoding"``, ``"body_too_large"``
            (the full list is in docs/http-parser.md).
        status: the HTTP status hint for the answer: 400, 413 (body too
            large), 414 (request line too long), 431 (header fields too
            large or too many), 501 (unsupported transfer coding) or 505
            (unsupported HTTP version).
        offset: stream offset (bytes fed since the parser was made) of the
            byte that was rejected.
        events: the events completed before the error in the same ``feed()``
            call (for example a valid pipelined request before a bad one);
            the server should answer those first.
    """

    def __init__(self, code, status, offset, message=None, events=None):
        self.code = code
        self.status = status
        self.offset = offset
        self.events = events if events is not None else []
        super().__init__(f"{message or code} (at byte {offset}; HTTP {status})")

    def __reduce__(self):
        text = self.args[0].rsplit(" (at byte ", 1)[0]
        return type(self), (self.code, self.status, self.offset, text, self.events)


# ---- HTTP client (flowcoro.http.HttpClient) ---------------------------------

class HttpClientError(HttpError):
    """Base class of the errors :class:`flowcoro.http.HttpClient` raises.

    Attributes:
        request: ``(method, url)`` of the request that failed, when known.
    """

    request = None


class InvalidRequestError(HttpClientError, ValueError):
    """The request cannot be sent as given (the caller's fault).

    Raised before any byte is written: a CR, LF or NUL in the method, the
    target or a header field (which would let a value inject a header or a
    second request), a method that is not a token, an unsupported URL
    scheme, a relative URL without ``base_url``, a body of an unknown type.
    """


class HttpTimeoutError(HttpClientError, TimeoutError):
    """A client timeout expired (a :class:`TimeoutError`); see the subclasses."""


class ConnectTimeout(HttpTimeoutError):
    """Opening the connection (TCP and TLS) took longer than ``Timeout.connect``."""


class ReadTimeout(HttpTimeoutError):
    """No response byte arrived within ``Timeout.read`` while one was awaited."""


class WriteTimeout(HttpTimeoutError):
    """The request could not be written within ``Timeout.write`` (peer not reading)."""


class PoolTimeout(HttpTimeoutError):
    """No connection to the host became free within ``Timeout.pool``."""


class TotalTimeout(HttpTimeoutError):
    """The whole request (redirects and body included) passed ``Timeout.total``."""


class HttpConnectionError(HttpClientError, ConnectionError):
    """The connection failed or was closed before the response was complete."""


class ConnectError(HttpConnectionError):
    """The connection could not be opened (refused, DNS, TLS handshake or verification)."""


class RemoteProtocolError(HttpClientError, HttpParseError):
    """The server sent a response that is not acceptable HTTP/1.1.

    Both an :class:`HttpClientError` and the parser's :class:`HttpParseError`
    (with its ``code``, ``status`` and ``offset``); the connection is closed.
    """


class TooManyRedirects(HttpClientError):
    """More than ``max_redirects`` redirects were followed (or a redirect loop).

    Attributes:
        response: the last redirect response (its body read).
    """

    def __init__(self, message, response=None):
        super().__init__(message)
        self.response = response

    def __reduce__(self):
        return type(self), (self.args[0],)


class HttpStatusError(HttpClientError):
    """``Response.raise_for_status()`` found a 4xx or 5xx status.

    Attributes:
        response: the response.
        status: its status code.
    """

    def __init__(self, message, response=None, status=None):
        super().__init__(message)
        self.response = response
        self.status = status if status is not None else getattr(response, "status", None)

    def __reduce__(self):
        return type(self), (self.args[0], None, self.status)


# ---- Redis (flowcoro.redis) ---------------------------------------------------

class RedisError(FlowCoroError):
    """Base class of the Redis client's errors (:mod:`flowcoro.redis`)."""


class RedisConnectionError(RedisError, ConnectionError):
    """The connection to Redis failed, was lost or was closed.

    Commands in flight when it happens fail with this error: whether the
    server executed them is unknown, so they are never silently retried.
    A ConnectionError, so code written for asyncio catches it.
    """


class RedisAuthenticationError(RedisConnectionError):
    """The server refused the credentials (AUTH / HELLO) while connecting."""


class RedisProtocolError(RedisConnectionError):
    """The server sent bytes that are not RESP; the connection is dropped."""


class RedisTimeoutError(RedisError, TimeoutError):
    """Connecting, or a command with a ``timeout``, took too long."""


class RedisPoolTimeoutError(RedisError, PoolTimeoutError):
    """No pooled Redis connection became free within the acquire timeout."""


class RedisResponseError(RedisError):
    """The server answered a command with an error reply (``-ERR ...``).

    The message is the server's text; the connection stays usable.
    """


class RedisNoScriptError(RedisResponseError):
    """EVALSHA named a script the server does not hold (``NOSCRIPT``)."""


class RedisExecAbortError(RedisResponseError):
    """EXEC refused a transaction because a queued command was invalid."""


class RedisWatchError(RedisError):
    """A WATCHed key changed before EXEC: the transaction did not run."""


class RedisDataError(RedisError, TypeError):
    """A command argument cannot be sent to Redis (e.g. a bool or None)."""


# ---- databases (flowcoro.db) ------------------------------------------------

class DatabaseError(FlowCoroError):
    """Base class of the database errors (:mod:`flowcoro.db`), on every backend.

    The driver's own exception (psycopg, asyncmy, sqlite3) is the
    ``__cause__``.

    Attributes:
        sqlstate: the five-character SQLSTATE the server sent (PostgreSQL
            always; MySQL/MariaDB and SQLite: None).
        errno: the backend's numeric error code where it has one (MySQL's
            error number, SQLite's extended result code), else None.
    """

    def __init__(self, message, sqlstate=None, errno=None):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.errno = errno

    def __reduce__(self):
        return type(self), (self.args[0], self.sqlstate, self.errno)


class InterfaceError(DatabaseError):
    """The database API was misused (a closed connection, a released one, bad
    parameters for the statement): the caller's fault, nothing was sent."""


class DataError(DatabaseError, ValueError):
    """The server rejected a value (SQLSTATE class 22: out of range, bad
    format, division by zero)."""


class IntegrityError(DatabaseError):
    """A constraint was violated (SQLSTATE class 23: unique, foreign key,
    not null, check)."""


class ProgrammingError(DatabaseError):
    """The statement is wrong (SQLSTATE classes 42, 26, 34, 3F, 0A: syntax,
    unknown table or column, missing privilege, unsupported feature)."""


class OperationalError(DatabaseError):
    """The server could not run a valid statement now (serialization failure
    and deadlock: SQLSTATE class 40; lock timeout, out of resources, server
    shutting down, query cancelled).  Retrying later may succeed."""


class DatabaseConnectionError(OperationalError, ConnectionError):
    """The connection to the database failed or was lost.

    Raised by a call in flight when the connection breaks (server restart,
    killed backend, network cut) and by every later call on that connection;
    a pool discards the connection and never hands it out again.  An open
    transaction on it was rolled back by the server, except when the loss
    came during ``COMMIT``: its outcome is then unknown (``in_doubt`` is
    True).  Also a builtin :class:`ConnectionError`.

    Attributes:
        in_doubt: True when the connection broke while a COMMIT was in flight.
    """

    in_doubt = False


# ---- WebSocket (flowcoro.websocket) -----------------------------------------

class WebSocketError(FlowCoroError):
    """Base class of the WebSocket errors (:mod:`flowcoro.websocket`)."""


class WebSocketProtocolError(WebSocketError, ValueError):
    """The peer broke RFC 6455 (or RFC 7692): the peer's fault.

    Raised by :class:`flowcoro.websocket.FrameParser` and, through it, by a
    connection's receive path, in the spirit of wsproto's
    ``RemoteProtocolError``: the connection is failed with a close frame
    carrying :attr:`close_code`.  The parser is unusable afterwards.

    Attributes:
        code: short stable name of the rejection, e.g. ``"opcode"``,
            ``"unmasked"``, ``"text_utf8"``, ``"message_too_big"`` (the list
            is in docs/websocket.md).
        close_code: the close code to send: 1002 (protocol error), 1007
            (invalid data: bad UTF-8, undecodable compressed data), 1009
            (too big) or 1011 (out of memory).
        offset: stream offset of the byte that was rejected (for an
            inflated message: of the byte after its last frame).
        events: events completed before the error in the same ``feed()``.
    """

    def __init__(self, code, close_code, offset, message=None, events=None):
        self.code = code
        self.close_code = close_code
        self.offset = offset
        self.events = events if events is not None else []
        super().__init__(f"{message or code} (at byte {offset}; close code {close_code})")

    def __reduce__(self):
        text = self.args[0].rsplit(" (at byte ", 1)[0]
        return type(self), (self.code, self.close_code, self.offset, text, self.events)


class WebSocketDataError(WebSocketProtocolError):
    """A message's payload is not acceptable: invalid UTF-8 in a text
    message or close reason, or compressed data that does not inflate
    (close code 1007)."""


class WebSocketTooBigError(WebSocketProtocolError):
    """A frame or a message (inflated, for a compressed one) is over the
    configured limit (close code 1009)."""


class WebSocketHandshakeError(WebSocketError, ConnectionError):
    """The opening handshake failed.

    On the server (:func:`flowcoro.websocket.accept_request`) it carries the
    HTTP answer to send instead of 101; on the client
    (:func:`flowcoro.websocket.connect`) the server's refusal or a bad 101.

    Attributes:
        status: server side, the HTTP status to answer with (400, 403, 426);
            client side, the status the server sent (None when no valid
            response head came).
        headers: server side, extra response headers for the refusal (426
            carries ``Sec-WebSocket-Version: 13``); client side, the
            response's headers.  A list of ``(bytes, bytes)``.
    """

    def __init__(self, message, status=None, headers=None):
        self.status = status
        self.headers = list(headers) if headers else []
        super().__init__(message)

    def __reduce__(self):
        return type(self), (self.args[0], self.status, self.headers)


class WebSocketClosed(WebSocketError, ConnectionError):
    """The WebSocket connection is closed; nothing more can be received or sent.

    Attributes:
        code: the close code the peer sent, 1005 when its close frame had
            none, 1006 when the connection ended without a close frame.
        reason: the peer's close reason (``str``).
        sent_code: the close code this side sent (None if it sent none).
        ok: True for a normal closure (1000, 1001 or 1005 received, and no
            error code sent); ``async for`` over a connection ends quietly
            then and raises this error otherwise.
    """

    def __init__(self, code=1006, reason="", sent_code=None):
        self.code = code
        self.reason = reason
        self.sent_code = sent_code
        sent = f"; sent {sent_code}" if sent_code is not None else ""
        super().__init__(f"WebSocket closed: received {code} {reason!r}{sent}")

    @property
    def ok(self):
        """True when the connection ended with a normal closure."""
        return self.code in (1000, 1001, 1005) and self.sent_code in (None, 1000, 1001, 1005)

    def __reduce__(self):
        return type(self), (self.code, self.reason, self.sent_code)


class WebSocketTimeoutError(WebSocketError, TimeoutError):
    """A WebSocket opening handshake took longer than ``open_timeout``.

    (A keep-alive pong or a closing handshake that takes too long fails or
    aborts the connection instead: see :class:`WebSocketClosed`.)
    """


# --- HTTP server (flowcoro.http.HttpServer) ---------------------------------

class HttpException(HttpError):
    """Raise from a handler (or middleware) to answer with ``status``.

    ``HttpException(404)``, ``HttpException(403, "not yours")``,
    ``HttpException(429, headers={"retry-after": "1"})``: the server sends
    that status with ``detail`` (default: the reason phrase) as a text body.

    Attributes:
        status: the HTTP status code to send.
        detail: the response body text, or None for the reason phrase.
        headers: extra response headers (mapping or list of pairs), or None.
    """

    def __init__(self, status, detail=None, headers=None):
        self.status = status
        self.detail = detail
        self.headers = headers
        super().__init__(f"HTTP {status}" + (f": {detail}" if detail else ""))


class HttpHeaderError(HttpError, ValueError):
    """A response header the application produced cannot be sent.

    Raised for a header name that is not an RFC 9110 token, a value with
    CR, LF, NUL or another control character (response splitting), a
    non-latin-1 string, or a status code outside 100-999.  The server logs
    it and answers 500 instead of sending the response.
    """



class ASGIError(HttpError, RuntimeError):
    """An ASGI application broke the protocol (a message out of order or of
    an unknown type, no response at all, a lifespan start-up or shut-down
    failure)."""

# -- observability (flowcoro.observability) -----------------------------------

class ObservabilityError(FlowCoroError):
    """Base class of the errors of :mod:`flowcoro.observability`."""


class MetricError(ObservabilityError, ValueError):
    """A metric was used against its declaration: a name reused with another
    type or other label names, label values that do not match the label
    names, or a negative amount added to a counter."""


# Every public exception class defined above, in definition order.
__all__ = [_n for _n, _v in list(globals().items())
           if isinstance(_v, type) and issubclass(_v, BaseException)
           and not _n.startswith("_") and _v.__module__ == __name__]
