"""Hypothesis strategies for valid HTTP/1.1 messages, with the message each encodes.

``requests()`` draws a request as bytes together with what a parser must
report for it (method, target, version, headers as sent with names
lowercased, body, trailers, keep-alive), so tests can check our parser and
the reference parsers against the same expectation.  ``responses()`` does
the same for responses.
"""
import string

from hypothesis import strategies as st

TCHAR = "!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters
# Header names that change framing or connection handling are added on purpose only.
RESERVED = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "expect",
            "te", "trailer", "keep-alive", "proxy-connection"}
VALUE_CHARS = "".join(chr(c) for c in range(0x21, 0x7f)) + " \t"
PATH_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/%"

names = st.text(TCHAR, min_size=1, max_size=16).filter(
    lambda n: n.lower() not in RESERVED and n.lower().replace("_", "-") not in RESERVED)
values = st.text(VALUE_CHARS, max_size=40).map(lambda v: v.strip(" \t"))
fields = st.lists(st.tuples(names, values), max_size=12)
known_methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
methods = st.one_of(known_methods, st.text(TCHAR, min_size=1, max_size=10))
targets = st.builds(lambda p, q: "/" + p + ("?" + q if q else ""),
                    st.text(PATH_CHARS, max_size=30), st.text(PATH_CHARS + "?", max_size=20))
bodies = st.binary(max_size=300)


def _encode_fields(pairs):
    return b"".join(n.encode() + b":" + sep.encode() + v.encode() + b"\r\n" for n, v, sep in pairs)


@st.composite
def chunked_body(draw, body):
    """body cut into chunks (sizes drawn), with optional extensions, as chunked bytes."""
    out = []
    i = 0
    while i < len(body):
        n = draw(st.integers(1, max(1, len(body) - i)))
        size = b"%x" % n if draw(st.booleans()) else b"%X" % n
        if draw(st.booleans()):
            size = b"0" * draw(st.integers(0, 3)) + size
        ext = b""
        if draw(st.integers(0, 4)) == 0:
            ext = b";" + draw(st.sampled_from([b"a", b"a=b", b'q="x y"', b"n=1;m"]))
        out.append(size + ext + b"\r\n" + body[i:i + n] + b"\r\n")
        i += n
    return b"".join(out)


@st.composite
def requests(draw, allow_trailers=True, http10=True, method_strategy=methods):
    """(raw bytes, expected dict) for one valid request (methods: any token by default)."""
    method = draw(method_strategy)
    target = draw(targets)
    version = draw(st.sampled_from(["1.1", "1.0"] if http10 else ["1.1"]))
    extra = draw(fields)
    framing = draw(st.sampled_from(["none", "cl", "chunked"] if version == "1.1" else ["none", "cl"]))
    body = draw(bodies) if framing != "none" else b""
    conn = draw(st.sampled_from([None, "close", "keep-alive"]))
    hdrs = []
    if version == "1.1" or draw(st.booleans()):
        hdrs.append(("Host", draw(st.sampled_from(["example.com", "localhost:8080", "a"]))))
    hdrs += extra
    if conn:
        hdrs.append(("Connection", conn))
    if framing == "cl":
        hdrs.insert(draw(st.integers(0, len(hdrs))), ("Content-Length", str(len(body))))
    elif framing == "chunked":
        hdrs.insert(draw(st.integers(0, len(hdrs))), ("Transfer-Encoding", "chunked"))
    seps = [draw(st.sampled_from(["", " ", "\t", "  "])) for _ in hdrs]
    trailers = draw(fields) if framing == "chunked" and allow_trailers else []
    raw = (f"{method} {target} HTTP/{version}\r\n".encode()
           + _encode_fields([(n, v, s) for (n, v), s in zip(hdrs, seps)]) + b"\r\n")
    if framing == "cl":
        raw += body
    elif framing == "chunked":
        raw += draw(chunked_body(body)) + b"0\r\n" + _encode_fields(
            [(n, v, " ") for n, v in trailers]) + b"\r\n"
    keep_alive = conn != "close" if version == "1.1" else conn == "keep-alive"
    expected = dict(method=method.encode(), target=target.encode(), http_version=version,
                    headers=[(n.lower().encode(), v.encode()) for n, v in hdrs],
                    body=body, trailers=[(n.lower().encode(), v.encode()) for n, v in trailers],
                    keep_alive=keep_alive, chunked=framing == "chunked",
                    content_length=len(body) if framing == "cl" else None)
    return raw, expected


@st.composite
def pipelines(draw, max_size=4, method_strategy=methods):
    """Several keep-alive requests back to back: (raw, [expected...])."""
    reqs = draw(st.lists(requests(method_strategy=method_strategy), min_size=1, max_size=max_size))
    kept = []
    for raw, exp in reqs:
        kept.append((raw, exp))
        if not exp["keep_alive"]:
            break
    return b"".join(r for r, _ in kept), [e for _, e in kept]


@st.composite
def responses(draw):
    """(raw bytes, request method, expected dict) for one valid response."""
    status = draw(st.sampled_from([200, 201, 204, 301, 304, 404, 500, 100, 103]))
    reason = draw(st.sampled_from(["OK", "", "Some Reason", "x"]))
    version = draw(st.sampled_from(["1.1", "1.0"]))
    method = draw(st.sampled_from(["GET", "HEAD", "POST"]))
    hdrs = list(draw(fields))
    framing = draw(st.sampled_from(["cl", "chunked", "eof"] if version == "1.1" else ["cl", "eof"]))
    body = draw(bodies)
    no_body = status < 200 or status in (204, 304) or method == "HEAD"
    if framing == "cl":
        hdrs.append(("Content-Length", str(len(body))))
    elif framing == "chunked":
        hdrs.append(("Transfer-Encoding", "chunked"))
    raw = (f"HTTP/{version} {status} {reason}\r\n".encode()
           + _encode_fields([(n, v, " ") for n, v in hdrs]) + b"\r\n")
    if no_body:
        body = b""
    elif framing == "cl":
        raw += body
    elif framing == "chunked":
        raw += draw(chunked_body(body)) + b"0\r\n\r\n"
    else:
        raw += body
    return raw, method, dict(status_code=status, reason=reason.encode(), body=body,
                             until_eof=framing == "eof" and not no_body)


@st.composite
def mutated(draw, raw):
    """raw with a few bytes flipped, inserted or deleted (to reach the error paths)."""
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 3))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        b = draw(st.sampled_from([0, 9, 10, 13, 32, 44, 58, 59, 127, 255]) | st.integers(0, 255))
        if op == "flip":
            data[i] = b
        elif op == "insert":
            data.insert(i, b)
        else:
            del data[i]
    return bytes(data)


@st.composite
def cuts(draw, raw):
    """raw cut into pieces at drawn offsets."""
    offsets = sorted(set(draw(st.lists(st.integers(0, len(raw)), max_size=8))))
    pieces, last = [], 0
    for o in offsets:
        pieces.append(raw[last:o])
        last = o
    pieces.append(raw[last:])
    return pieces
