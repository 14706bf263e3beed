"""permessage-deflate (RFC 7692): negotiation and the sending side.

The extension compresses each data message with raw DEFLATE, sets RSV1 on
its first frame and strips the final ``00 00 ff ff`` of a sync flush.  Four
parameters are negotiated in ``Sec-WebSocket-Extensions``:

* ``server_no_context_takeover`` / ``client_no_context_takeover``: that side
  resets its compressor after every message (less memory, worse ratio);
* ``server_max_window_bits`` / ``client_max_window_bits`` (8..15): the LZ77
  window that side compresses with.

The receiving side is inside :class:`flowcoro.websocket.FrameParser` (its
``deflate=`` argument), where the inflated size is bounded by
``max_message``: a compression bomb fails with 1009 after at most
``max_message + 1`` inflated bytes.

zlib cannot compress with a raw 8-bit window (it quietly uses 9), so we
never agree to compress with 8 bits: a server declines an offer that
demands ``server_max_window_bits=8``, a client refuses a server that
answers ``client_max_window_bits=8``.  Inflating what a peer compressed with
8 bits works (a 9-bit window reads it).
"""
import dataclasses
import zlib

__all__ = ["DeflateParams", "Compressor", "client_offer", "server_accept", "client_accept",
           "parse_extensions"]

NAME = "permessage-deflate"
_PARAMS = ("server_no_context_takeover", "client_no_context_takeover",
           "server_max_window_bits", "client_max_window_bits")


class _Decline(Exception):
    """Internal: this offer or answer cannot be used."""


@dataclasses.dataclass(frozen=True)
class DeflateParams:
    """The agreed permessage-deflate parameters (one connection, both sides).

    Attributes:
        server_no_context_takeover: the server resets its compressor after
            each message.
        client_no_context_takeover: the client does.
        server_max_window_bits: window (8..15) the server compresses with.
        client_max_window_bits: window the client compresses with.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15

    def header(self):
        """The ``Sec-WebSocket-Extensions`` value a server answers with."""
        parts = [NAME]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_max_window_bits != 15:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits != 15:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts)

    def for_role(self, role):
        """``(local_wbits, local_no_context, remote_wbits, remote_no_context)``
        for ``role`` ``"client"`` or ``"server"``."""
        s = (self.server_max_window_bits, self.server_no_context_takeover)
        c = (self.client_max_window_bits, self.client_no_context_takeover)
        local, remote = (c, s) if role == "client" else (s, c)
        return local + remote


class Compressor:
    """Compresses messages for one connection's sending side.

    Args:
        window_bits: LZ77 window (9..15).
        no_context_takeover: a fresh compressor for each message.
        level: zlib level (1 fastest .. 9 best; default 6, as zlib's).
        min_size: messages shorter than this are sent uncompressed (RSV1
            clear), which RFC 7692 allows: compressing a few bytes costs
            more than it saves.
    """

    def __init__(self, window_bits=15, no_context_takeover=False, level=6, min_size=32):
        self.window_bits = max(window_bits, 9)
        self.no_context_takeover = no_context_takeover
        self.level = level
        self.min_size = min_size
        self._z = self._new()

    def _new(self):
        return zlib.compressobj(self.level, zlib.DEFLATED, -self.window_bits)

    def compress(self, data):
        """The compressed payload of one message (``bytes``)."""
        out = self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)
        if self.no_context_takeover:
            self._z = self._new()
        # A sync flush always ends with the empty stored block 00 00 ff ff.
        return out[:-4]


def parse_extensions(values):
    """Parse ``Sec-WebSocket-Extensions`` values into ``[(name, [(param, value|None)])]``.

    ``values`` is an iterable of header values (``str`` or ``bytes``).  A
    quoted parameter value is unquoted.  Raises ValueError on syntax errors.
    """
    out = []
    for value in values:
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        for item in _split_outside_quotes(value, ","):
            item = item.strip()
            if not item:
                continue
            parts = _split_outside_quotes(item, ";")
            name = parts[0].strip().lower()
            if not name or not _is_token(name):
                raise ValueError(f"bad extension name {name!r}")
            params = []
            for p in parts[1:]:
                p = p.strip()
                if not p:
                    raise ValueError("empty extension parameter")
                if "=" in p:
                    k, v = p.split("=", 1)
                    k, v = k.strip().lower(), v.strip()
                    if len(v) >= 2 and v[0] == v[-1] == '"':
                        v = v[1:-1]
                    if not v or not _is_token(v):
                        raise ValueError(f"bad value for {k!r}")
                else:
                    k, v = p.lower(), None
                if not _is_token(k):
                    raise ValueError(f"bad parameter name {k!r}")
                params.append((k, v))
            out.append((name, params))
    return out


_TCHAR = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _is_token(s):
    return bool(s) and set(s) <= _TCHAR


def _split_outside_quotes(s, sep):
    parts, cur, quoted = [], [], False
    for ch in s:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if quoted:
        raise ValueError("unterminated quoted string")
    parts.append("".join(cur))
    return parts


def _bits(value, name, allow_none):
    if value is None:
        if allow_none:
            return None
        raise _Decline(f"{name} needs a value")
    if not value.isdigit() or value.startswith("0") or not 8 <= int(value) <= 15:
        raise _Decline(f"{name}={value!r} is not 8..15")
    return int(value)


def _check_params(params):
    seen = set()
    for k, _ in params:
        if k not in _PARAMS:
            raise _Decline(f"unknown parameter {k!r}")
        if k in seen:
            raise _Decline(f"duplicate parameter {k!r}")
        seen.add(k)
    return dict(params)


def client_offer(*, client_max_window_bits=True, server_max_window_bits=None,
                 client_no_context_takeover=False, server_no_context_takeover=False):
    """The ``Sec-WebSocket-Extensions`` value a client sends to offer compression.

    ``client_max_window_bits=True`` says the client can use a window the
    server picks (no value); an int caps its own window.
    """
    parts = [NAME]
    if client_no_context_takeover:
        parts.append("client_no_context_takeover")
    if server_no_context_takeover:
        parts.append("server_no_context_takeover")
    if server_max_window_bits is not None:
        parts.append(f"server_max_window_bits={server_max_window_bits}")
    if client_max_window_bits is True:
        parts.append("client_max_window_bits")
    elif client_max_window_bits:
        parts.append(f"client_max_window_bits={client_max_window_bits}")
    return "; ".join(parts)


def server_accept(values, *, server_no_context_takeover=False, client_no_context_takeover=False,
                  server_max_window_bits=15, client_max_window_bits=15):
    """Pick the first acceptable permessage-deflate offer among the request's
    ``Sec-WebSocket-Extensions`` ``values``; return its :class:`DeflateParams`
    or None (no offer, or none acceptable: the connection goes uncompressed).

    The keyword arguments are the server's own wishes (it may always ask for
    less context or a smaller window than the client offered).
    """
    try:
        offers = parse_extensions(values)
    except ValueError:
        return None
    for name, params in offers:
        if name != NAME:
            continue
        try:
            p = _check_params(params)
            if "server_no_context_takeover" in p and p["server_no_context_takeover"] is not None:
                raise _Decline("server_no_context_takeover takes no value")
            if "client_no_context_takeover" in p and p["client_no_context_takeover"] is not None:
                raise _Decline("client_no_context_takeover takes no value")
            smwb = server_max_window_bits
            if "server_max_window_bits" in p:
                smwb = min(smwb, _bits(p["server_max_window_bits"], "server_max_window_bits", False))
            if smwb == 8:
                raise _Decline("zlib cannot compress with an 8-bit window")
            cmwb = 15
            if "client_max_window_bits" in p:
                offered = _bits(p["client_max_window_bits"], "client_max_window_bits", True)
                cmwb = min(client_max_window_bits, offered or 15)
            return DeflateParams(
                server_no_context_takeover=server_no_context_takeover
                or "server_no_context_takeover" in p,
                client_no_context_takeover=client_no_context_takeover
                or "client_no_context_takeover" in p,
                server_max_window_bits=smwb,
                client_max_window_bits=cmwb)
        except _Decline:
            continue
    return None


def client_accept(values, offer):
    """Check the server's ``Sec-WebSocket-Extensions`` answer against the
    client's ``offer`` (the string :func:`client_offer` made); return
    :class:`DeflateParams`, or None when the server answered no extension.

    Raises:
        ValueError: the answer is not one a client may accept (an extension
            not offered, an unknown or repeated parameter, a window the
            offer did not allow, or ``client_max_window_bits=8``).
    """
    exts = parse_extensions(values)
    if not exts:
        return None
    if len(exts) != 1 or exts[0][0] != NAME or offer is None:
        raise ValueError(f"server answered extensions that were not offered: {exts!r}")
    offered = _check_params(parse_extensions([offer])[0][1])
    try:
        p = _check_params(exts[0][1])
        for flag in ("server_no_context_takeover", "client_no_context_takeover"):
            if flag in p and p[flag] is not None:
                raise _Decline(f"{flag} takes no value")
        smwb = 15
        if "server_max_window_bits" in p:
            smwb = _bits(p["server_max_window_bits"], "server_max_window_bits", False)
            if offered.get("server_max_window_bits") and smwb > int(offered["server_max_window_bits"]):
                raise _Decline("server_max_window_bits over what was offered")
        elif offered.get("server_max_window_bits"):
            raise _Decline("server_max_window_bits missing from the answer")
        cmwb = 15
        if "client_max_window_bits" in p:
            if "client_max_window_bits" not in offered:
                raise _Decline("client_max_window_bits was not offered")
            cmwb = _bits(p["client_max_window_bits"], "client_max_window_bits", False)
            if offered["client_max_window_bits"] and cmwb > int(offered["client_max_window_bits"]):
                raise _Decline("client_max_window_bits over what was offered")
        elif offered.get("client_max_window_bits"):
            cmwb = int(offered["client_max_window_bits"])
        if cmwb == 8:
            raise _Decline("zlib cannot compress with an 8-bit window")
        if "server_no_context_takeover" in offered and "server_no_context_takeover" not in p:
            raise _Decline("server_no_context_takeover was asked for and not granted")
        if "client_no_context_takeover" in offered:
            p.setdefault("client_no_context_takeover", None)
    except _Decline as exc:
        raise ValueError(str(exc)) from None
    return DeflateParams(
        server_no_context_takeover="server_no_context_takeover" in p,
        client_no_context_takeover="client_no_context_takeover" in p,
        server_max_window_bits=smwb, client_max_window_bits=cmwb)
