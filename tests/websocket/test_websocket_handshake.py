"""The opening handshake (flowcoro.websocket.handshake) and the
permessage-deflate negotiation (flowcoro.websocket.deflate), sans-IO."""
import pytest

from flowcoro.errors import WebSocketHandshakeError
from flowcoro._core.httpparser import RequestParser, ResponseParser
from flowcoro.websocket import (DeflateParams, accept_key, accept_request, build_request,
                                check_response, generate_key, reject_response)
from flowcoro.websocket import deflate as d

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def head_of(raw):
    p = RequestParser()
    return p.feed(raw)[0]


def request(*extra, method="GET", version="1.1", key=KEY, host=True):
    lines = [f"{method} /chat?x=1 HTTP/{version}"]
    if host:
        lines.append("Host: example.com")
    lines += ["Upgrade: websocket", "Connection: keep-alive, Upgrade",
              f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    lines += list(extra)
    return head_of(("\r\n".join(lines) + "\r\n\r\n").encode())


def test_accept_key_rfc_example():
    # RFC 6455 section 1.3
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert accept_key(KEY.encode()) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    k = generate_key()
    assert len(k) == 24 and k != generate_key()


def test_accept_request_ok():
    hs = accept_request(request())
    assert hs.headers[:3] == [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
                              (b"Sec-WebSocket-Accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")]
    assert hs.subprotocol is None and hs.deflate is None and hs.path == "/chat?x=1"
    r = hs.response()
    assert r.startswith(b"HTTP/1.1 101 Switching Protocols\r\n") and r.endswith(b"\r\n\r\n")
    p = ResponseParser()
    p.request_sent(b"GET")
    resp = p.feed(r)[0]
    assert check_response(resp, KEY) == (None, None)


@pytest.mark.parametrize("kw,status", [
    (dict(method="POST"), 400),
    (dict(version="1.0"), 400),
    (dict(key="short"), 400),
    (dict(key="!!notbase64!!!!!!!!!!!!="), 400),
])
def test_accept_request_refusals(kw, status):
    with pytest.raises(WebSocketHandshakeError) as info:
        accept_request(request(**kw))
    assert info.value.status == status


def test_refusal_headers_and_versions():
    raw = (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: h2c\r\n"
           b"Sec-WebSocket-Key: " + KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    with pytest.raises(WebSocketHandshakeError) as info:
        accept_request(head_of(raw))
    assert info.value.status == 426 and (b"Upgrade", b"websocket") in info.value.headers
    raw = (b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
           b"Sec-WebSocket-Key: " + KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    with pytest.raises(WebSocketHandshakeError) as info:
        accept_request(head_of(raw))
    assert info.value.status == 400
    raw = (b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: " + KEY.encode() + b"\r\nSec-WebSocket-Version: 8\r\n\r\n")
    with pytest.raises(WebSocketHandshakeError) as info:
        accept_request(head_of(raw))
    assert info.value.status == 426 and info.value.headers == [(b"Sec-WebSocket-Version", b"13")]
    r = reject_response(info.value)
    assert r.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"Sec-WebSocket-Version: 13\r\n" in r and b"Connection: close" in r
    p = ResponseParser()
    p.request_sent(b"GET")
    ev = p.feed(r)
    assert ev[0].status_code == 426 and ev[1] == r.split(b"\r\n\r\n", 1)[1]
    two_keys = request(f"Sec-WebSocket-Key: {KEY}")
    with pytest.raises(WebSocketHandshakeError):
        accept_request(two_keys)


def test_no_host_and_origins():
    p = RequestParser(require_host=False)
    raw = (b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: " + KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    with pytest.raises(WebSocketHandshakeError) as info:
        accept_request(p.feed(raw)[0])
    assert info.value.status == 400
    with pytest.raises(WebSocketHandshakeError) as info:
        accept_request(request("Origin: https://evil.example"), origins={"https://ok.example"})
    assert info.value.status == 403
    accept_request(request("Origin: https://ok.example"), origins={"https://ok.example"})
    accept_request(request(), origins={None})
    with pytest.raises(WebSocketHandshakeError):
        accept_request(request(), origins={"https://ok.example"})


def test_subprotocols():
    h = request("Sec-WebSocket-Protocol: Chat, superchat", "Sec-WebSocket-Protocol: v2")
    hs = accept_request(h, subprotocols=["v2", "Chat"])
    assert hs.subprotocol == "v2" and (b"Sec-WebSocket-Protocol", b"v2") in hs.headers
    assert accept_request(h, subprotocols=["chat"]).subprotocol is None   # case-sensitive
    assert accept_request(h, select_subprotocol=lambda offered: offered[1]).subprotocol == \
        "superchat"
    assert accept_request(h, select_subprotocol=lambda offered: None).subprotocol is None
    with pytest.raises(ValueError):
        accept_request(h, select_subprotocol=lambda offered: "nope")
    hs = accept_request(h, subprotocols=["Chat"], extra_headers=[("X-A", "1"), (b"X-B", b"2")])
    assert hs.headers[-2:] == [(b"X-A", b"1"), (b"X-B", b"2")]


def test_compression_negotiated_in_request():
    h = request("Sec-WebSocket-Extensions: x-unknown, permessage-deflate; client_max_window_bits")
    hs = accept_request(h)
    assert hs.deflate == DeflateParams()
    assert (b"Sec-WebSocket-Extensions", b"permessage-deflate") in hs.headers
    assert accept_request(h, compression=None).deflate is None
    with pytest.raises(ValueError):
        accept_request(h, compression="brotli")


# ---- client side -------------------------------------------------------------

def response(*lines, status="101 Switching Protocols"):
    p = ResponseParser()
    p.request_sent(b"GET")
    raw = f"HTTP/1.1 {status}\r\n" + "".join(line + "\r\n" for line in lines) + "\r\n"
    return p.feed(raw.encode())[0]


GOOD = ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Accept: {accept_key(KEY)}"]


def test_build_request_parses_and_is_accepted():
    raw = build_request("h:8080", "/p?q", KEY, subprotocols=["a", "b"],
                        extensions=d.client_offer(), origin="http://o",
                        headers={"X-Token": "t", b"X-B": b"b"})
    head = head_of(raw)
    assert head.target == b"/p?q" and head.upgrade == b"websocket"
    hs = accept_request(head, subprotocols=["b"])
    assert hs.subprotocol == "b" and hs.deflate is not None
    with pytest.raises(ValueError):
        build_request("h", "/", KEY, headers=[("X", "a\r\nInjected: 1")])


def test_check_response():
    assert check_response(response(*GOOD), KEY) == (None, None)
    assert check_response(response(*GOOD, "Sec-WebSocket-Protocol: b"), KEY,
                          subprotocols=["a", "b"]) == ("b", None)
    offer = d.client_offer()
    sp, params = check_response(response(*GOOD, "Sec-WebSocket-Extensions: permessage-deflate; "
                                         "server_no_context_takeover; client_max_window_bits=10"),
                                KEY, extensions=offer)
    assert params == DeflateParams(server_no_context_takeover=True, client_max_window_bits=10)
    bad = [
        [GOOD[0], GOOD[1], "Sec-WebSocket-Accept: xxx"],
        [GOOD[1], GOOD[2]],
        [GOOD[0], GOOD[2]],
        GOOD + ["Sec-WebSocket-Protocol: c"],
        GOOD + ["Sec-WebSocket-Extensions: permessage-deflate"],     # not offered
    ]
    for lines in bad:
        with pytest.raises(WebSocketHandshakeError) as info:
            check_response(response(*lines), KEY, subprotocols=["a"])
        assert info.value.status == 101
    with pytest.raises(WebSocketHandshakeError) as info:
        check_response(response("Location: /x", status="302 Found"), KEY)
    assert info.value.status == 302 and (b"location", b"/x") in info.value.headers


# ---- permessage-deflate negotiation ----------------------------------------

def test_parse_extensions():
    assert d.parse_extensions([b'permessage-deflate; client_max_window_bits="10", x; a=b']) == [
        ("permessage-deflate", [("client_max_window_bits", "10")]), ("x", [("a", "b")])]
    for bad in ['permessage-deflate; a="b', "p; ", "p; a=", "p;=1", "p@"]:
        with pytest.raises(ValueError):
            d.parse_extensions([bad])


@pytest.mark.parametrize("offer,kw,want", [
    ("permessage-deflate", {}, DeflateParams()),
    ("permessage-deflate; client_max_window_bits", dict(client_max_window_bits=10),
     DeflateParams(client_max_window_bits=10)),
    ("permessage-deflate; client_max_window_bits=9", {}, DeflateParams(client_max_window_bits=9)),
    ("permessage-deflate; server_max_window_bits=10; server_no_context_takeover", {},
     DeflateParams(server_max_window_bits=10, server_no_context_takeover=True)),
    ("permessage-deflate; client_no_context_takeover", dict(server_no_context_takeover=True),
     DeflateParams(client_no_context_takeover=True, server_no_context_takeover=True)),
    ("permessage-deflate; server_max_window_bits=8, permessage-deflate", {}, DeflateParams()),
    ("permessage-deflate; unknown=1", {}, None),
    ("permessage-deflate; client_max_window_bits=16", {}, None),
    ("permessage-deflate; client_max_window_bits=09", {}, None),
    ("permessage-deflate; server_max_window_bits", {}, None),
    ("permessage-deflate; server_no_context_takeover=1", {}, None),
    ("permessage-deflate; client_no_context_takeover=1", {}, None),
    ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", {}, None),
    ("x-other", {}, None),
    ('permessage-deflate; a="', {}, None),
])
def test_server_accept(offer, kw, want):
    assert d.server_accept([offer], **kw) == want


def test_header_roundtrip_and_roles():
    p = DeflateParams(True, True, 10, 11)
    assert p.header() == ("permessage-deflate; server_no_context_takeover; "
                          "client_no_context_takeover; server_max_window_bits=10; "
                          "client_max_window_bits=11")
    assert d.client_accept([p.header()], d.client_offer()) == p
    assert p.for_role("server") == (10, True, 11, True)
    assert p.for_role("client") == (11, True, 10, True)
    assert d.client_offer(client_max_window_bits=10, server_max_window_bits=12,
                          client_no_context_takeover=True, server_no_context_takeover=True) == (
        "permessage-deflate; client_no_context_takeover; server_no_context_takeover; "
        "server_max_window_bits=12; client_max_window_bits=10")


@pytest.mark.parametrize("offer,answer", [
    (None, "permessage-deflate"),
    ("permessage-deflate", "permessage-deflate, permessage-deflate"),
    ("permessage-deflate", "permessage-deflate; client_max_window_bits=10"),
    ("permessage-deflate; client_max_window_bits=10", "permessage-deflate; client_max_window_bits=12"),
    ("permessage-deflate; client_max_window_bits", "permessage-deflate; client_max_window_bits=8"),
    ("permessage-deflate; server_max_window_bits=10", "permessage-deflate"),
    ("permessage-deflate; server_max_window_bits=10", "permessage-deflate; server_max_window_bits=11"),
    ("permessage-deflate", "permessage-deflate; server_no_context_takeover=x"),
    ("permessage-deflate", "permessage-deflate; bogus"),
    ("permessage-deflate; server_no_context_takeover", "permessage-deflate"),
])
def test_client_accept_refusals(offer, answer):
    with pytest.raises(ValueError):
        d.client_accept([answer], offer)


def test_client_accept_defaults():
    assert d.client_accept([], d.client_offer()) is None
    got = d.client_accept(["permessage-deflate"], d.client_offer(client_max_window_bits=11,
                                                                 client_no_context_takeover=True))
    assert got == DeflateParams(client_max_window_bits=11, client_no_context_takeover=True)


def test_compressor_roundtrip():
    import zlib
    for nct in (False, True):
        c = d.Compressor(15, nct)
        z = zlib.decompressobj(-15)
        for msg in (b"abc" * 100, b"abc" * 100, b"x"):
            out = c.compress(msg)
            assert z.decompress(out + b"\x00\x00\xff\xff") == msg
