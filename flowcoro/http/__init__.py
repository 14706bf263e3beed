"""flowcoro.http — HTTP/1.1 for FlowCoro.

For now this package holds the sans-IO HTTP/1.1 parsers
(:mod:`flowcoro.http.parser`) and their errors; the server, the client and
the ASGI server are built on them.
"""
from flowcoro.http.parser import (
    DEFAULT_LIMITS,
    EndOfMessage,
    HttpError,
    HttpParseError,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
)

__all__ = [
    "DEFAULT_LIMITS", "EndOfMessage", "HttpError", "HttpParseError", "RequestHead",
    "RequestParser", "ResponseHead", "ResponseParser",
]
