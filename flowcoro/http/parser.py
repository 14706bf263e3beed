"""HTTP/1.1 message parsing: the sans-IO parsers behind :mod:`flowcoro.http`.

The parsers are written in C (csrc/http/parser.c) and bound once in Cython
(:mod:`flowcoro._core.httpparser`); this module is their public face.  They
read no socket: give them the bytes of one connection as they arrive and
they return events.

* :class:`RequestParser` (servers) yields :class:`RequestHead`, ``bytes``
  body pieces and :class:`EndOfMessage`, message after message.
* :class:`ResponseParser` (clients) yields :class:`ResponseHead`, ``bytes``
  and :class:`EndOfMessage`; call :meth:`ResponseParser.request_sent` for
  each request so HEAD and CONNECT answers are framed right.

Both are strict (RFC 9110/9112; every rejection has its own
:attr:`HttpParseError.code` and an HTTP status hint), incremental (any split
of the input gives the same messages), bounded by limits that are keyword
arguments (see :data:`DEFAULT_LIMITS`), and stop after a protocol switch
(Upgrade, CONNECT, 101) so the caller can take the rest of the stream with
``detach()`` or go on with HTTP with ``resume()``.

Example::

    from flowcoro.http import RequestParser, RequestHead, EndOfMessage, HttpParseError

    parser = RequestParser(max_body=10 * 1024 * 1024)
    try:
        for event in parser.feed(data):
            if type(event) is RequestHead:
                start_request(event.method, event.target, event.headers)
            elif type(event) is bytes:
                request_body(event)
            else:  # EndOfMessage
                finish_request(event.trailers)
    except HttpParseError as exc:
        for event in exc.events: ...      # requests completed before the bad one
        send_error(exc.status)             # 400, 413, 414, 431, 501 or 505
        close()

The details (every error code, the leniency switches, what the parser
decides and what it leaves to the server) are in docs/http-parser.md.
"""
from flowcoro._core.httpparser import (
    DEFAULT_LIMITS,
    EndOfMessage,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
)
from flowcoro.errors import HttpError, HttpParseError

__all__ = [
    "DEFAULT_LIMITS", "EndOfMessage", "HttpError", "HttpParseError", "RequestHead",
    "RequestParser", "ResponseHead", "ResponseParser",
]
