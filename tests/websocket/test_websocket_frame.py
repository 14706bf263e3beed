"""The sans-IO framing core (csrc/ws via flowcoro._core.wsframe): parsing at
every split, masking and UTF-8 validation against pure-Python references,
every rejection with its close code, limits, frame building, inflating."""
import itertools
import os
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowcoro.errors import (InvalidArgumentError, WebSocketDataError, WebSocketProtocolError,
                             WebSocketTooBigError)
from flowcoro.websocket import (Close, FrameBuilder, FrameParser, Ping, Pong, Utf8Validator,
                                close_code_valid, mask, utf8_valid)

KEY = b"\x37\xfa\x21\x3d"


def ref_mask(data, key, pos=0):
    """Pure-Python masking (RFC 6455 5.3), the reference."""
    return bytes(b ^ key[(pos + i) % 4] for i, b in enumerate(data))


def frame(op, payload=b"", fin=True, rsv=0, key=KEY, length=None):
    """Pure-Python frame encoder: any bits, any (even wrong) length encoding."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    mbit = 0x80 if key is not None else 0
    if n < 126 and length is None:
        head = bytes([b0, mbit | n])
    elif n <= 0xFFFF and length is None:
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if key is not None:
        return head + key + ref_mask(payload, key)
    return head + payload


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


def parse_all(stream, client=False, pieces=None, **kw):
    """Feed stream in the given pieces; return (events, error)."""
    p = FrameParser(client=client, **kw)
    out, err = [], None
    try:
        for piece in pieces if pieces is not None else [stream]:
            out += p.feed(piece)
    except WebSocketProtocolError as exc:
        out += exc.events
        err = (type(exc), exc.code, exc.close_code, exc.offset)
    return out, err


STREAM = (frame(1, "héllo wörld".encode()) + frame(9, b"ping!") +
          frame(2, b"\x00" * 300, fin=False) + frame(10, b"") + frame(0, b"\x01" * 70000, fin=False) +
          frame(9, b"") + frame(0, b"end") + frame(1, "€".encode()[:2], fin=False) +
          frame(0, "€".encode()[2:]) + frame(1, b"") + frame(8, close_payload(1000, b"bye")) +
          b"ignored after close")
EXPECTED = ["héllo wörld", Ping(b"ping!"), Pong(b""), Ping(b""),
            b"\x00" * 300 + b"\x01" * 70000 + b"end", "€", "", Close(1000, "bye")]


def test_stream_whole():
    out, err = parse_all(STREAM)
    assert err is None
    assert out == EXPECTED


def test_stream_byte_by_byte():
    out, err = parse_all(STREAM, pieces=[STREAM[i:i + 1] for i in range(len(STREAM))])
    assert (out, err) == (EXPECTED, None)


def test_stream_every_split_point():
    small = (frame(1, b"ab") + frame(9, b"p") + frame(2, b"x" * 130, fin=False) +
             frame(0, b"yz") + frame(8, close_payload(1001)))
    want = parse_all(small)
    assert want[1] is None and len(want[0]) == 4
    for i in range(len(small) + 1):
        for j in range(i, len(small) + 1, 7):
            assert parse_all(small, pieces=[small[:i], small[i:j], small[j:]]) == want, (i, j)


def test_unmasked_server_stream_every_split():
    s = frame(1, b"hi", key=None) + frame(2, b"b" * 200, key=None) + frame(10, b"x", key=None)
    want = parse_all(s, client=True)
    assert want == (["hi", b"b" * 200, Pong(b"x")], None)
    for i in range(len(s) + 1):
        assert parse_all(s, client=True, pieces=[s[:i], s[i:]]) == want


def test_feed_accepts_buffers():
    p = FrameParser(client=False)
    assert p.feed(bytearray(frame(2, b"abc"))) == [b"abc"]
    assert p.feed(memoryview(frame(1, b"d"))) == ["d"]
    assert p.offset == len(frame(2, b"abc")) + len(frame(1, b"d"))


def test_closed_parser_ignores_rest():
    p = FrameParser(client=False)
    assert p.feed(frame(8, b"")) == [Close(1005, "")]
    assert p.closed
    assert p.feed(b"\xff\xff garbage") == []


def test_in_message_flag():
    p = FrameParser(client=False)
    p.feed(frame(1, b"a", fin=False))
    assert p.in_message
    assert p.feed(frame(0, b"b")) == ["ab"]
    assert not p.in_message


ERRORS = [
    (frame(1, b"x", rsv=4), "rsv", 1002),
    (frame(1, b"x", rsv=2), "rsv", 1002),
    (frame(1, b"x", rsv=1), "rsv", 1002),
    (frame(3, b""), "opcode", 1002),
    (frame(0xB, b""), "opcode", 1002),
    (frame(1, b"x", key=None), "unmasked", 1002),
    (frame(9, b"", fin=False), "control_fragmented", 1002),
    (frame(9, b"x" * 126), "control_too_long", 1002),
    (frame(8, b"x" * 126), "control_too_long", 1002),
    (bytes([0x82, 0xFF]) + b"\x80" + b"\x00" * 7 + KEY, "length", 1002),
    (frame(0, b"x"), "unexpected_continuation", 1002),
    (frame(1, b"x", fin=False) + frame(2, b"y"), "expected_continuation", 1002),
    (frame(8, b"\x03"), "close_length", 1002),
    (frame(8, close_payload(1005)), "close_code", 1002),
    (frame(8, close_payload(999)), "close_code", 1002),
    (frame(8, close_payload(1000, b"\xff")), "close_utf8", 1007),
    (frame(1, b"ok \xc3\x28"), "text_utf8", 1007),
    (frame(1, b"\xe2\x82", fin=False) + frame(0, b""), "text_utf8", 1007),
    (frame(1, b"\xed\xa0\x80"), "text_utf8", 1007),
]


@pytest.mark.parametrize("data,code,close_code", ERRORS, ids=[e[1] for e in ERRORS])
def test_rejections(data, code, close_code):
    cls = {1002: WebSocketProtocolError, 1007: WebSocketDataError}[close_code]
    out, err = parse_all(data)
    assert err[0] is cls and err[1:3] == (code, close_code)
    assert 0 <= err[3] <= len(data)
    # the same verdict byte by byte
    assert parse_all(data, pieces=[data[i:i + 1] for i in range(len(data))])[1][:3] == err[:3]


def test_error_is_sticky_and_carries_events():
    p = FrameParser(client=False)
    with pytest.raises(WebSocketProtocolError) as info:
        p.feed(frame(1, b"a") + frame(9, b"p") + frame(3, b""))
    assert info.value.events == ["a", Ping(b"p")]
    with pytest.raises(WebSocketProtocolError):
        p.feed(frame(1, b"b"))


def test_masked_frame_from_server_rejected():
    out, err = parse_all(frame(1, b"x"), client=True)
    assert err[1:3] == ("masked", 1002)


def test_utf8_fails_fast_on_first_bad_byte():
    # A bad byte in the first fragment fails before the message ends.
    p = FrameParser(client=False)
    head = frame(1, b"abc\xff" + b"z" * 100, fin=False)
    with pytest.raises(WebSocketDataError) as info:
        p.feed(head[:2 + 4 + 5])          # header, key, "abc\xff" and one more
    assert info.value.offset == 2 + 4 + 3


def test_limits():
    assert parse_all(frame(2, b"x" * 100), max_message=100)[1] is None
    err = parse_all(frame(2, b"x" * 101), max_message=100)[1]
    assert err[0] is WebSocketTooBigError and err[1:3] == ("message_too_big", 1009)
    # the sum over fragments counts, control frames in between do not
    s = frame(2, b"x" * 60, fin=False) + frame(9, b"p" * 100) + frame(0, b"y" * 41)
    err = parse_all(s, max_message=100)[1]
    assert err[1] == "message_too_big"
    err = parse_all(frame(2, b"x" * 51), max_frame=50)[1]
    assert err[1:3] == ("frame_too_big", 1009)
    # checked at the header: nothing of the payload is needed
    err = parse_all(frame(2, b"x" * 1000)[:8], max_message=100)[1]
    assert err[1] == "message_too_big"
    assert parse_all(frame(2, b"x" * 50), max_frame=50)[1] is None
    with pytest.raises(InvalidArgumentError):
        FrameParser(client=False, max_message=0)


def test_big_message_buffer_released():
    p = FrameParser(client=True, max_message=None)
    big = frame(2, b"b" * 400_000, key=None)
    assert p.feed(big[:10]) == []
    assert p.feed(big[10:]) == [b"b" * 400_000]
    assert p.feed(frame(1, b"small", key=None)) == ["small"]


def test_non_minimal_length_accepted():
    s = bytes([0x82, 0xFE, 0x00, 0x03]) + KEY + ref_mask(b"abc", KEY)
    assert parse_all(s) == ([b"abc"], None)


# ---- masking ---------------------------------------------------------------

@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4), st.integers(0, 11),
       st.integers(0, 7))
def test_mask_matches_reference(data, key, pos, shift):
    # `shift` moves the data inside a buffer so every alignment is taken.
    buf = bytearray(shift) + bytearray(data)
    assert mask(memoryview(buf)[shift:], key, pos) == ref_mask(data, key, pos)


def test_mask_long_and_involutive():
    data = os.urandom(100_003)
    m = mask(data, KEY, 3)
    assert m == ref_mask(data, KEY, 3)
    assert mask(m, KEY, 3) == data
    with pytest.raises(InvalidArgumentError):
        mask(b"x", b"abc")
    with pytest.raises(InvalidArgumentError):
        mask(b"x", KEY, -1)


# ---- UTF-8 -----------------------------------------------------------------

def py_valid(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


TRICKY = [b"", b"a", b"\x7f", b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xc2\x80", b"\xdf\xbf",
          b"\xe0\x80\x80", b"\xe0\x9f\xbf", b"\xe0\xa0\x80", b"\xed\x9f\xbf", b"\xed\xa0\x80",
          b"\xed\xbf\xbf", b"\xee\x80\x80", b"\xef\xbf\xbf", b"\xf0\x8f\xbf\xbf",
          b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80",
          b"\xff", b"\xfe", b"\xe2\x82", b"\xf0\x9f\x98", "κόσμε".encode(), b"a" * 17 + b"\xe9",
          "\U0001F600".encode() * 5, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"]


@pytest.mark.parametrize("data", TRICKY)
def test_utf8_tricky(data):
    assert utf8_valid(data) == py_valid(data)


@given(st.binary(max_size=64))
def test_utf8_random_bytes(data):
    assert utf8_valid(data) == py_valid(data)


@given(st.text(max_size=40), st.binary(max_size=3), st.data())
@settings(max_examples=200)
def test_utf8_incremental_any_split(text, junk, data):
    raw = text.encode("utf-8") + junk
    cut = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=4)))
    v = Utf8Validator()
    ok = True
    for a, b in zip([0] + cut, cut + [len(raw)]):
        ok = v.feed(raw[a:b]) and ok
    assert (ok and v.complete) == py_valid(raw)


@given(st.text(min_size=1, max_size=30), st.data())
@settings(max_examples=100)
def test_text_message_split_across_fragments(text, data):
    raw = text.encode("utf-8")
    cut = data.draw(st.integers(0, len(raw)))
    s = frame(1, raw[:cut], fin=False) + frame(9, b"") + frame(0, raw[cut:])
    assert parse_all(s) == ([Ping(b""), text], None)


def test_utf8_validator_reports_early():
    v = Utf8Validator()
    assert v.feed(b"\xe2\x82")
    assert not v.complete
    assert not v.feed(b"\x28")
    assert not v.feed(b"abc")


# ---- close codes -----------------------------------------------------------

def test_close_codes():
    allowed = set(range(1000, 1004)) | set(range(1007, 1015)) | set(range(3000, 5000))
    for code in range(0, 5100):
        assert close_code_valid(code) == (code in allowed), code
    for code in (1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999):
        assert parse_all(frame(8, close_payload(code, b"r")))[0] == [Close(code, "r")]
    for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535):
        assert parse_all(frame(8, close_payload(code)))[1][1] == "close_code"


# ---- building --------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536, 70000])
def test_builder_roundtrip_sizes(n):
    payload = bytes(range(256)) * (n // 256) + bytes(n % 256)
    c, s = FrameBuilder(client=True), FrameBuilder(client=False)
    for builder, parser in ((c, FrameParser(client=False)), (s, FrameParser(client=True))):
        f = builder.binary(payload)
        assert len(f) == n + (2 if n < 126 else 4 if n < 65536 else 10) + (4 if builder.client else 0)
        assert parser.feed(f) == [payload]
    # the server side writes exactly the reference frame
    assert s.binary(payload) == frame(2, payload, key=None)


def test_builder_kinds():
    s = FrameBuilder(client=False)
    assert s.text("é") == frame(1, "é".encode(), key=None)
    assert s.frame(2, "é", fin=False, rsv1=True) == frame(2, "é".encode(), fin=False, rsv=4, key=None)
    assert s.frame(2, bytearray(b"ab")) == frame(2, b"ab", key=None)
    assert s.ping(b"p") == frame(9, b"p", key=None)
    assert s.pong("q") == frame(10, b"q", key=None)
    assert s.close() == frame(8, close_payload(1000), key=None)
    assert s.close(None) == frame(8, b"", key=None)
    assert s.close(4000, "why") == frame(8, close_payload(4000, b"why"), key=None)
    assert s.binary(memoryview(b"mv")) == frame(2, b"mv", key=None)
    for bad in (dict(code=1005), dict(code=999), dict(code=1000, reason="x" * 124),
                dict(code=None, reason="x")):
        with pytest.raises(InvalidArgumentError):
            s.close(**bad)
    with pytest.raises(InvalidArgumentError):
        s.ping(b"x" * 126)
    with pytest.raises(InvalidArgumentError):
        s.frame(16, b"")


def test_client_keys_vary():
    c = FrameBuilder(client=True)
    keys = {c.text("x")[2:6] for _ in range(2000)}
    assert len(keys) > 1900      # 2000 draws from 2**32: collisions are rare


def test_events_repr_and_eq():
    assert repr(Ping(b"a")) == "Ping(b'a')" and repr(Pong()) == "Pong(b'')"
    assert repr(Close(1000, "x")) == "Close(1000, 'x')"
    assert len({Ping(b"a"), Ping(b"a"), Pong(b"a"), Close(), Close()}) == 3
    assert Ping(b"a") != Pong(b"a")


# ---- permessage-deflate receive side ---------------------------------------

def deflate(data, wbits=15, z=None):
    z = z or zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def test_inflate_messages_with_context():
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    p = FrameParser(client=False, deflate=(15, False))
    a, b = deflate(b"hello hello hello", z=z), deflate(b"hello hello hello", z=z)
    c = deflate("tëxt".encode())
    s = frame(2, a, rsv=4) + frame(2, b, rsv=4)
    assert p.feed(s) == [b"hello hello hello"] * 2
    p2 = FrameParser(client=False, deflate=(15, True))
    # fragmented compressed text, RSV1 on the first frame only; plus an uncompressed one
    s = frame(1, c[:2], fin=False, rsv=4) + frame(0, c[2:]) + frame(1, b"plain")
    assert p2.feed(s) == ["tëxt", "plain"]


def test_inflate_bomb_and_errors():
    bomb = deflate(b"\x00" * 10_000_000)
    assert len(bomb) < 20_000
    out, err = parse_all(frame(2, bomb, rsv=4), deflate=(15, False), max_message=1 << 20)
    assert err[0] is WebSocketTooBigError and err[1:3] == ("inflated_too_big", 1009)
    out, err = parse_all(frame(2, b"\xff\xff\xff", rsv=4), deflate=(15, False))
    assert err[0] is WebSocketDataError and err[1] == "inflate"
    out, err = parse_all(frame(1, deflate(b"\xff\xfe"), rsv=4), deflate=(15, False))
    assert err[1:3] == ("text_utf8", 1007)
    # RSV1 on a continuation or a control frame is still an error
    s = frame(2, b"", fin=False, rsv=4) + frame(0, b"", rsv=4)
    assert parse_all(s, deflate=(15, False))[1][1] == "rsv"
    assert parse_all(frame(9, b"", rsv=4), deflate=(15, False))[1][1] == "rsv"
    with pytest.raises(InvalidArgumentError):
        FrameParser(client=False, deflate=(16, False))


@pytest.mark.parametrize("wbits", [8, 9, 12, 15])
def test_inflate_window_bits(wbits):
    data = os.urandom(50) * 200
    p = FrameParser(client=True, deflate=(wbits, False))
    assert p.feed(frame(2, deflate(data, max(wbits, 9)), rsv=4, key=None)) == [data]


def test_all_opcode_and_rsv_combinations_decided():
    # every first byte is either accepted or rejected with a 1002, never crashes
    for b0 in range(256):
        out, err = parse_all(bytes([b0, 0x80]) + KEY)
        assert err is None or err[2] == 1002, (b0, err)
        if err is None:
            assert (b0 & 0x70) == 0 and (b0 & 0x0F) in (1, 2, 8, 9, 10)


def test_itertools_pairs_of_frames():
    frames = [frame(1, b"t"), frame(2, b"", fin=False), frame(0, b"c"), frame(9, b"p"),
              frame(10, b"q"), frame(1, b"\xce", fin=False), frame(0, b"\xba")]
    for a, b in itertools.product(frames, repeat=2):
        s = a + b
        whole = parse_all(s)
        assert parse_all(s, pieces=[s[i:i + 1] for i in range(len(s))]) == whole


def test_zero_length_frame_at_end_of_input_byte_by_byte():
    # regression: a 2-byte header completed by the last byte of a feed was
    # left until the next feed
    p = FrameParser(client=True)
    assert p.feed(b"\x8a") == []
    assert p.feed(b"\x00") == [Pong(b"")]
    p = FrameParser(client=True)
    assert p.feed(b"\x88") == [] and p.feed(b"\x00") == [Close(1005, "")]


@pytest.mark.parametrize("bad", [b"\x80", b"\xc3", b"\xed\xa0\x80", "é".encode(), "😀".encode()])
def test_utf8_ascii_fast_path_every_position(bad):
    # the 32- and 8-byte ASCII steps must hand over to the DFA at any offset
    for n in range(0, 100):
        for tail in (0, 1, 40):
            data = b"a" * n + bad + b"b" * tail
            assert utf8_valid(data) == py_valid(data), (n, tail)
            v = Utf8Validator()
            ok = v.feed(data[:n // 2]) and v.feed(data[n // 2:])
            assert (ok and v.complete) == py_valid(data)


def test_uninitialised_parser_refuses_to_feed():
    from flowcoro.errors import InvalidStateError
    p = FrameParser.__new__(FrameParser)
    with pytest.raises(InvalidStateError):
        p.feed(b"\x81\x00")
    p.__init__(client=True)              # __init__ may (re)initialise it
    assert p.feed(b"\x81\x00") == [""]
