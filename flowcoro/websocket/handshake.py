"""The opening handshake (RFC 6455 section 4), sans-IO.

Server side: :func:`accept_request` takes a parsed request head
(:class:`flowcoro.http.RequestHead`), checks it (section 4.2.1) and returns a
:class:`ServerHandshake` with the 101 response headers, the chosen
subprotocol and the permessage-deflate parameters; or it raises
:class:`~flowcoro.errors.WebSocketHandshakeError` whose ``status`` (400, 403,
426) and ``headers`` make the refusal (:func:`reject_response` writes it).

Client side: :func:`build_request` writes the upgrade request,
:func:`check_response` checks the server's 101 (section 4.2.2 / 4.1).
"""
import base64
import binascii
import dataclasses
import hashlib
import os

from flowcoro.errors import WebSocketHandshakeError
from flowcoro.websocket import deflate as _deflate

__all__ = ["GUID", "ServerHandshake", "generate_key", "accept_key", "accept_request",
           "reject_response", "build_request", "check_response"]

#: The key suffix of section 1.3 (the server proves it read the key).
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_REASONS = {400: "Bad Request", 403: "Forbidden", 426: "Upgrade Required"}


def generate_key():
    """A fresh ``Sec-WebSocket-Key``: base64 of 16 random bytes (``str``)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_key(key):
    """The ``Sec-WebSocket-Accept`` value for ``key`` (``str`` or ``bytes``):
    base64(SHA-1(key + GUID)), section 4.2.2."""
    if isinstance(key, str):
        key = key.encode("ascii")
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode("ascii")


def _values(headers, name):
    """Every value of header ``name`` (lowercase bytes), in order."""
    return [v for k, v in headers if k.lower() == name]


def _tokens(headers, name):
    """The comma-separated tokens of every ``name`` header, lowercased."""
    out = []
    for v in _values(headers, name):
        out += [t.strip().lower() for t in v.split(b",") if t.strip()]
    return out


@dataclasses.dataclass
class ServerHandshake:
    """An accepted upgrade request: what the server answers and what it agreed.

    Attributes:
        headers: the 101 response's headers, ``[(bytes, bytes)]``
            (Upgrade, Connection, Sec-WebSocket-Accept, and
            Sec-WebSocket-Protocol / -Extensions when agreed, then any extra).
        subprotocol: the chosen subprotocol (``str``) or None.
        deflate: the agreed :class:`~flowcoro.websocket.deflate.DeflateParams`,
            or None (no compression).
        path: the request target (``str``).
    """

    headers: list
    subprotocol: object = None
    deflate: object = None
    path: str = "/"

    def response(self):
        """The whole 101 response (status line, headers, blank line) as bytes."""
        lines = [b"HTTP/1.1 101 Switching Protocols"]
        lines += [k + b": " + v for k, v in self.headers]
        return b"\r\n".join(lines) + b"\r\n\r\n"


def accept_request(head, *, subprotocols=None, select_subprotocol=None, origins=None,
                   compression="deflate", extra_headers=None, deflate_options=None):
    """Check a client's upgrade request and build the 101 answer.

    Args:
        head: the request head (:class:`flowcoro.http.RequestHead`, or any
            object with ``method``, ``http_version``, ``headers``).
        subprotocols: subprotocols this server speaks, in its order of
            preference; the first one the client also offers is chosen.
        select_subprotocol: instead, a function ``(offered: list[str]) ->
            str | None`` (the result must be one of ``offered``).
        origins: if given, the allowed ``Origin`` values (``None`` in the
            collection allows requests without Origin); others get 403.
        compression: ``"deflate"`` to accept a permessage-deflate offer,
            None to ignore offers.
        extra_headers: more ``(name, value)`` pairs (str or bytes) for the 101.
        deflate_options: keyword arguments for
            :func:`flowcoro.websocket.deflate.server_accept`.

    Returns:
        :class:`ServerHandshake`.

    Raises:
        WebSocketHandshakeError: with ``status`` 400 (not a valid upgrade
            request), 403 (origin not allowed) or 426 (not WebSocket, or a
            version other than 13; ``headers`` then carry what to answer).
    """
    headers = head.headers
    if head.method != b"GET":
        raise WebSocketHandshakeError(f"method {head.method!r} is not GET", 400)
    if head.http_version == "1.0":
        raise WebSocketHandshakeError("WebSocket needs HTTP/1.1", 400)
    if len(_values(headers, b"host")) != 1:
        raise WebSocketHandshakeError("need exactly one Host header", 400)
    if b"websocket" not in _tokens(headers, b"upgrade"):
        raise WebSocketHandshakeError("Upgrade: websocket missing", 426,
                                      [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")])
    if b"upgrade" not in _tokens(headers, b"connection"):
        raise WebSocketHandshakeError("Connection: Upgrade missing", 400)
    versions = _values(headers, b"sec-websocket-version")
    if versions != [b"13"]:
        raise WebSocketHandshakeError(f"unsupported Sec-WebSocket-Version {versions!r}", 426,
                                      [(b"Sec-WebSocket-Version", b"13")])
    keys = _values(headers, b"sec-websocket-key")
    if len(keys) != 1:
        raise WebSocketHandshakeError("need exactly one Sec-WebSocket-Key", 400)
    try:
        raw = base64.b64decode(keys[0], validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 16:
        raise WebSocketHandshakeError(f"Sec-WebSocket-Key {keys[0]!r} is not 16 bytes in base64",
                                      400)
    if origins is not None:
        got = _values(headers, b"origin")
        origin = got[0].decode("latin-1") if len(got) == 1 else None
        if len(got) > 1 or origin not in origins:
            raise WebSocketHandshakeError(f"origin {origin!r} not allowed", 403)

    out = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
           (b"Sec-WebSocket-Accept", accept_key(keys[0]).encode("ascii"))]
    # Subprotocol names are case-sensitive (section 11.3.4): not _tokens().
    offered = []
    for v in _values(headers, b"sec-websocket-protocol"):
        offered += [t.strip().decode("latin-1") for t in v.split(b",") if t.strip()]
    chosen = None
    if offered:
        if select_subprotocol is not None:
            chosen = select_subprotocol(offered)
            if chosen is not None and chosen not in offered:
                raise ValueError(f"select_subprotocol returned {chosen!r}, not offered")
        elif subprotocols:
            chosen = next((s for s in subprotocols if s in offered), None)
    if chosen is not None:
        out.append((b"Sec-WebSocket-Protocol", chosen.encode("latin-1")))
    params = None
    if compression == "deflate":
        params = _deflate.server_accept(_values(headers, b"sec-websocket-extensions"),
                                        **(deflate_options or {}))
        if params is not None:
            out.append((b"Sec-WebSocket-Extensions", params.header().encode("ascii")))
    elif compression is not None:
        raise ValueError(f"compression={compression!r}: 'deflate' or None")
    for k, v in extra_headers or ():
        out.append((k.encode("latin-1") if isinstance(k, str) else k,
                    v.encode("latin-1") if isinstance(v, str) else v))
    path = head.target.decode("latin-1") if hasattr(head, "target") else "/"
    return ServerHandshake(out, chosen, params, path)


def reject_response(exc, body=None):
    """The HTTP response for a refused handshake (``exc`` is the
    :class:`~flowcoro.errors.WebSocketHandshakeError` from
    :func:`accept_request`), with ``Connection: close``."""
    status = exc.status or 400
    if body is None:
        body = f"Failed to open a WebSocket connection: {exc.args[0]}.\n".encode("utf-8")
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}".encode("ascii")]
    lines += [k + b": " + v for k, v in exc.headers]
    lines += [b"Content-Type: text/plain; charset=utf-8",
              b"Content-Length: " + str(len(body)).encode("ascii"), b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def build_request(host, resource, key, *, subprotocols=None, extensions=None, origin=None,
                  headers=None):
    """The client's upgrade request (bytes).

    Args:
        host: the Host header value (``"example.com"``, ``"h:8080"``).
        resource: path and query (``"/chat?room=1"``).
        key: from :func:`generate_key`.
        subprotocols: offered subprotocols, in order of preference.
        extensions: the Sec-WebSocket-Extensions value to offer, or None.
        origin: an Origin header value, or None.
        headers: more ``(name, value)`` pairs, or a mapping.
    """
    lines = [f"GET {resource} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if subprotocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
    if extensions:
        lines.append("Sec-WebSocket-Extensions: " + extensions)
    if origin:
        lines.append(f"Origin: {origin}")
    if headers:
        items = headers.items() if hasattr(headers, "items") else headers
        for k, v in items:
            k = k.decode("latin-1") if isinstance(k, bytes) else k
            v = v.decode("latin-1") if isinstance(v, bytes) else v
            if "\r" in k or "\n" in k or "\r" in v or "\n" in v:
                raise ValueError(f"header {k!r} contains CR or LF")
            lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def check_response(head, key, *, subprotocols=None, extensions=None):
    """Check the server's answer to :func:`build_request`.

    Returns:
        ``(subprotocol, deflate_params)``: the subprotocol the server chose
        (or None) and the agreed DeflateParams (or None).

    Raises:
        WebSocketHandshakeError: not a 101, or a 101 that breaks section
            4.1 (Upgrade, Connection, Sec-WebSocket-Accept, a subprotocol
            or extension that was not offered).
    """
    hs = head.headers
    if head.status_code != 101:
        raise WebSocketHandshakeError(f"server answered {head.status_code} instead of 101",
                                      head.status_code, hs)

    def bad(msg):
        """The error for a 101 that breaks RFC 6455 4.1."""
        return WebSocketHandshakeError(f"invalid 101 response: {msg}", 101, hs)

    if b"websocket" not in _tokens(hs, b"upgrade"):
        raise bad("Upgrade: websocket missing")
    if b"upgrade" not in _tokens(hs, b"connection"):
        raise bad("Connection: Upgrade missing")
    accept = _values(hs, b"sec-websocket-accept")
    if accept != [accept_key(key).encode("ascii")]:
        raise bad(f"Sec-WebSocket-Accept {accept!r} does not match the key")
    protos = _values(hs, b"sec-websocket-protocol")
    chosen = None
    if protos:
        chosen = protos[0].decode("latin-1").strip()
        if len(protos) > 1 or not subprotocols or chosen not in subprotocols:
            raise bad(f"subprotocol {chosen!r} was not offered")
    try:
        params = _deflate.client_accept(_values(hs, b"sec-websocket-extensions"), extensions)
    except ValueError as exc:
        raise bad(str(exc)) from None
    return chosen, params
