"""flowcoro.http parsers: features, limits, API and errors.

Most inputs are checked whole and one byte at a time (``both``): the events
must not depend on how the bytes arrive.
"""
import pickle

import pytest

from flowcoro.errors import FlowCoroError, HttpError, HttpParseError, InvalidArgumentError, \
    InvalidStateError
from flowcoro.http import (DEFAULT_LIMITS, EndOfMessage, RequestHead, RequestParser, ResponseHead,
                           ResponseParser)

from http_parser_helpers import normalize, parse_pieces


def both(raw, factory=RequestParser, eof=False, **kw):
    """Parse whole and byte by byte; both must agree.  Returns (events, error code)."""
    whole = parse_pieces([raw], factory, eof, **kw)
    bytewise = parse_pieces([raw[i:i + 1] for i in range(len(raw))], factory, eof, **kw)
    assert whole[:2] == bytewise[:2]
    return whole[0], whole[1]


def heads(events):
    return [v for k, v in events if k == "head"]


def body(events):
    return b"".join(v for k, v in events if k == "data")


def error(raw, **kw):
    with pytest.raises(HttpParseError) as exc:
        RequestParser(**kw).feed(raw)
    return exc.value


# ---- requests -----------------------------------------------------------------

def test_simple_get():
    ev, err = both(b"GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n")
    assert err is None
    assert ev == [("head", dict(method=b"GET", target=b"/index.html?x=1", target_form="origin",
                                http_version="1.1",
                                headers=[(b"host", b"example.com"), (b"accept", b"*/*")],
                                keep_alive=True, chunked=False, content_length=None,
                                expect_continue=False, upgrade=None)),
                  ("end", [])]


def test_header_names_lowercased_by_default_and_kept_on_request():
    raw = b"GET / HTTP/1.1\r\nHoSt: a\r\nX-Mixed-Case: V\r\n\r\n"
    assert heads(both(raw)[0])[0]["headers"] == [(b"host", b"a"), (b"x-mixed-case", b"V")]
    assert heads(both(raw, lowercase_names=False)[0])[0]["headers"] == [
        (b"HoSt", b"a"), (b"X-Mixed-Case", b"V")]


def test_values_lose_surrounding_whitespace_only():
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nX: \t a \t b \t\r\nY:\r\nZ:   \r\nW: \xe9t\xe9\r\n\r\n"
    hs = heads(both(raw)[0])[0]["headers"]
    assert hs[1:] == [(b"x", b"a \t b"), (b"y", b""), (b"z", b""), (b"w", b"\xe9t\xe9")]


@pytest.mark.parametrize("line,form", [
    (b"GET /a/b?c HTTP/1.1", "origin"),
    (b"GET http://example.com/a?b HTTP/1.1", "absolute"),
    (b"GET svn+ssh://h/p HTTP/1.1", "absolute"),
    (b"CONNECT example.com:443 HTTP/1.1", "authority"),
    (b"CONNECT [::1]:8080 HTTP/1.1", "authority"),
    (b"OPTIONS * HTTP/1.1", "asterisk"),
])
def test_target_forms(line, form):
    ev, err = both(line + b"\r\nHost: a\r\n\r\n")
    assert err is None
    assert heads(ev)[0]["target_form"] == form


@pytest.mark.parametrize("line", [
    b"GET * HTTP/1.1",                     # asterisk-form is for OPTIONS only
    b"CONNECT /path HTTP/1.1",             # CONNECT needs authority-form
    b"CONNECT example.com HTTP/1.1",       # ... with a port
    b"CONNECT example.com:x HTTP/1.1",
    b"CONNECT user@example.com:443 HTTP/1.1",
    b"GET ?x HTTP/1.1",
    b"GET 1http://a/ HTTP/1.1",
    b"GET /\xc3\xa9 HTTP/1.1",             # raw UTF-8: percent-encode it
    b"GET /\x7f HTTP/1.1",
])
def test_bad_targets(line):
    assert error(line + b"\r\nHost: a\r\n\r\n").code == "invalid_target"


@pytest.mark.parametrize("method", [b"GET", b"MKCOL", b"M-SEARCH", b"X_CUSTOM", b"PROPFIND", b"a!#$%&'*+.^`|~"])
def test_any_token_is_a_method(method):
    ev, err = both(method + b" / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert err is None and heads(ev)[0]["method"] == method


@pytest.mark.parametrize("raw,code", [
    (b"G(T / HTTP/1.1\r\n\r\n", "invalid_method"),
    (b" GET / HTTP/1.1\r\n\r\n", "invalid_method"),
    (b"GET\t/ HTTP/1.1\r\n\r\n", "invalid_method"),
])
def test_bad_methods(raw, code):
    assert error(raw).code == code


def test_http10_semantics():
    ev, err = both(b"GET / HTTP/1.0\r\n\r\n")
    assert err is None
    h = heads(ev)[0]
    assert h["http_version"] == "1.0" and not h["keep_alive"]
    ev, _ = both(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nExpect: 100-continue\r\n\r\n")
    h = heads(ev)[0]
    assert h["keep_alive"] and not h["expect_continue"]   # RFC 9110 10.1.1: ignore in 1.0
    ev, _ = both(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n")
    assert not heads(ev)[0]["keep_alive"]


def test_later_http1_minor_is_read_as_http11():
    ev, err = both(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n")
    assert err is None
    h = heads(ev)[0]
    assert h["http_version"] == "1.2" and h["keep_alive"]


@pytest.mark.parametrize("version,code,status", [
    (b"HTTP/2.0", "unsupported_version", 505),
    (b"HTTP/0.9", "unsupported_version", 505),
    (b"HTTP/1.10", "invalid_version", 400),
    (b"HTTP/1", "invalid_version", 400),
    (b"HTTPS/1.1", "invalid_version", 400),
])
def test_versions(version, code, status):
    e = error(b"GET / " + version + b"\r\nHost: a\r\n\r\n")
    assert (e.code, e.status) == (code, status)


def test_connection_close_and_keep_alive_tokens():
    ev, _ = both(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n")
    assert not heads(ev)[0]["keep_alive"]
    ev, _ = both(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: close\r\n\r\n")
    assert not heads(ev)[0]["keep_alive"]
    ev, _ = both(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n")
    assert heads(ev)[0]["keep_alive"]


def test_close_ends_the_connection_but_tolerates_trailing_crlf():
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n\r\n\r\n"
    ev, err = both(raw)
    assert err is None and len(heads(ev)) == 1
    e = error(raw + b"GET")
    assert e.code == "data_after_close"
    assert len([x for x in e.events if type(x) is RequestHead]) == 1


def test_host_is_required_for_http11_unless_told_otherwise():
    e = error(b"GET / HTTP/1.1\r\n\r\n")
    assert (e.code, e.status) == ("missing_host", 400)
    assert both(b"GET / HTTP/1.1\r\n\r\n", require_host=False)[1] is None
    assert both(b"GET / HTTP/1.0\r\n\r\n")[1] is None
    assert both(b"GET / HTTP/1.1\r\nHost:\r\n\r\n")[1] is None   # empty Host is allowed
    assert error(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n").code == "duplicate_host"


@pytest.mark.parametrize("value,expect", [
    (b"100-continue", True), (b"100-Continue", True), (b"  100-continue ", True),
    (b"200-ok", False), (b"100-continue, x", False),
])
def test_expect_continue(value, expect):
    ev, err = both(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: " + value + b"\r\nContent-Length: 2\r\n\r\nhi")
    assert err is None
    assert heads(ev)[0]["expect_continue"] is expect


def test_body_too_large_is_known_before_100_continue():
    p = RequestParser(max_body=10)
    with pytest.raises(HttpParseError) as exc:
        p.feed(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n")
    assert (exc.value.code, exc.value.status) == ("body_too_large", 413)


def test_content_length_body_and_pipelining():
    raw = (b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
           b"\r\n"   # an empty line between requests is skipped (RFC 9112 2.2)
           b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n"
           b"PUT /c HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
    ev, err = both(raw)
    assert err is None
    assert [k for k, _ in ev] == ["head", "data", "end", "head", "end", "head", "end"]
    assert [h["target"] for h in heads(ev)] == [b"/a", b"/b", b"/c"]
    assert ev[1] == ("data", b"hello")
    assert heads(ev)[0]["content_length"] == 5 and heads(ev)[2]["content_length"] == 0


def test_chunked_body_with_extensions_and_trailers():
    raw = (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;name=value;flag\r\nhello\r\n"
           b"000A ; q=\"a \\\"b\\\"\"\r\n0123456789\r\n"
           b"0\r\nX-Checksum: abc\r\nX-Other:  1 \r\n\r\n")
    ev, err = both(raw)
    assert err is None
    h = heads(ev)[0]
    assert h["chunked"] and h["content_length"] is None
    assert body(ev) == b"hello0123456789"
    assert ev[-1] == ("end", [(b"x-checksum", b"abc"), (b"x-other", b"1")])
    # BWS is allowed before ";" only, not before the CRLF (RFC 9112 7.1.1)
    assert error(raw.replace(b'\\"\"\r\n', b'\\"\" \r\n')).code == "invalid_chunk_extension"


def test_empty_chunked_body():
    ev, err = both(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert err is None and [k for k, _ in ev] == ["head", "end"]


def test_trailers_are_not_interpreted():
    raw = (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
           b"Content-Length: 5\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n")
    ev, err = both(raw)
    assert err is None
    assert ev[-1][1] == [(b"content-length", b"5"), (b"host", b"b"), (b"transfer-encoding", b"chunked")]


def test_trailer_section_is_checked_like_headers():
    base = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
    assert error(base + b"X : y\r\n\r\n").code == "whitespace_before_colon"
    assert error(base + b"X: y\r\n z\r\n\r\n").code == "obs_fold"
    assert error(base + b" X: y\r\n\r\n").code == "invalid_header_name"
    assert error(base + b"X: \x01\r\n\r\n").code == "invalid_header_value"
    assert error(base + b"X: y\n\r\n").code == "bare_lf"
    assert error(base + b"".join(b"X%d: y\r\n" % i for i in range(3)) + b"\r\n",
                 max_headers=2).code == "too_many_headers"


def test_body_pieces_are_the_input_itself_when_possible():
    p = RequestParser()
    assert len(p.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n")) == 1
    piece = b"0123456789"[:5]
    [got] = p.feed(piece)
    assert got is piece


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_any_bytes_like_input(kind):
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
    events = RequestParser().feed(kind(raw))
    assert normalize(events) == normalize(RequestParser().feed(raw))
    assert type(events[1]) is bytes


def test_upgrade_pauses_and_detach_hands_over_the_rest():
    raw = (b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
           b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x05hello")
    for split in range(1, len(raw)):
        p = RequestParser()
        events = p.feed(raw[:split]) + p.feed(raw[split:])
        assert [type(e) for e in events] == [RequestHead, EndOfMessage]
        assert events[0].upgrade == b"websocket"
        assert p.paused and p.trailing_data == b"\x81\x05hello"
    assert p.feed(b"more") == [] and p.trailing_data == b"\x81\x05hellomore"
    assert p.detach() == b"\x81\x05hellomore"
    assert not p.paused
    with pytest.raises(InvalidStateError):
        p.feed(b"x")
    with pytest.raises(InvalidStateError):
        p.detach()


def test_declined_upgrade_resumes_http():
    raw = (b"POST /u HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n"
           b"Content-Length: 4\r\n\r\nbody"
           b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    p = RequestParser()
    events = p.feed(raw)
    assert normalize(events)[1] == ("data", b"body")   # the body is read before the pause
    assert p.paused and p.trailing_data.startswith(b"GET /next")
    with pytest.raises(InvalidStateError):
        RequestParser().resume()
    events = p.resume()
    assert [type(e) for e in events] == [RequestHead, EndOfMessage]
    assert events[0].target == b"/next" and not p.paused


def test_upgrade_needs_the_connection_option_and_http11():
    ev, _ = both(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert len(heads(ev)) == 2 and heads(ev)[0]["upgrade"] is None
    p = RequestParser()
    p.feed(b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
    assert not p.paused


def test_connect_pauses_after_the_head():
    p = RequestParser()
    events = p.feed(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                    b"Content-Length: 10\r\n\r\n\x16\x03\x01")
    assert [type(e) for e in events] == [RequestHead, EndOfMessage]
    assert events[0].method == b"CONNECT" and events[0].target_form == "authority"
    assert p.paused and p.trailing_data == b"\x16\x03\x01"


def test_h2_preface_is_named():
    e = error(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert (e.code, e.status) == ("h2_preface", 505)


def test_leading_empty_lines_are_skipped_but_bounded():
    ev, err = both(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert err is None and len(heads(ev)) == 1
    e = error(b"\r\n" * 100, max_request_line=64)
    assert e.code == "start_line_too_long"
    assert error(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n").code == "bare_lf"


# ---- leniency switches ---------------------------------------------------------

def test_lenient_bare_lf():
    raw = b"GET / HTTP/1.1\nHost: a\nX: b\r\n\n"
    assert error(raw).code == "bare_lf"
    ev, err = both(raw, lenient_bare_lf=True)
    assert err is None and heads(ev)[0]["headers"] == [(b"host", b"a"), (b"x", b"b")]
    assert error(b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", lenient_bare_lf=True).code == "bare_cr"


def test_lenient_obs_fold_replaces_the_fold_by_one_space():
    raw = (b"GET / HTTP/1.1\r\nHost: a\r\nX: one \r\n\t two\r\n   three  \r\nY:\r\n y\r\n"
           b"Z: z\r\n \r\n\r\n")
    assert error(raw).code == "obs_fold"
    ev, err = both(raw, lenient_obs_fold=True)
    assert err is None
    assert heads(ev)[0]["headers"][1:] == [(b"x", b"one two three"), (b"y", b"y"), (b"z", b"z")]


def test_lenient_obs_fold_still_interprets_framing_after_the_fold():
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n 3\r\n\r\nabc"
    ev, err = both(raw, lenient_obs_fold=True)
    assert err is None and body(ev) == b"abc"


# ---- limits --------------------------------------------------------------------

def test_default_limits_are_the_issues():
    assert DEFAULT_LIMITS == {"max_start_line": 8192, "max_header_field": 8192, "max_headers": 100,
                              "max_header_block": 65536, "max_chunk_line": 4096,
                              "max_body": 1048576}


def _limit_case(kind, n):
    """A request whose `kind` measure is exactly n bytes (or items)."""
    if kind == "max_request_line":
        line = b"GET /" + b"a" * (n - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
        assert len(line) == n
        return line + b"\r\nHost: a\r\n\r\n"
    if kind == "max_header_field":
        field = b"X: " + b"v" * (n - 3)
        return b"GET / HTTP/1.1\r\nHost: a\r\n" + field + b"\r\n\r\n"
    if kind == "max_headers":
        return b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X%d: y\r\n" % i for i in range(n - 1)) + b"\r\n"
    if kind == "max_header_block":
        fixed = len(b"Host: a\r\nX: \r\n")
        return b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * (n - fixed) + b"\r\n\r\n"
    if kind == "max_chunk_line":
        line = b"1;e=" + b"v" * (n - 4)
        return (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                + line + b"\r\nx\r\n0\r\n\r\n")
    if kind == "max_body_cl":
        return b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % n + b"b" * n
    if kind == "max_body_chunked":
        return (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"1\r\nb\r\n" * n + b"0\r\n\r\n")
    raise AssertionError(kind)


@pytest.mark.parametrize("kind,kw,code,status", [
    ("max_request_line", "max_request_line", "start_line_too_long", 414),
    ("max_header_field", "max_header_field", "header_field_too_large", 431),
    ("max_headers", "max_headers", "too_many_headers", 431),
    ("max_header_block", "max_header_block", "header_block_too_large", 431),
    ("max_chunk_line", "max_chunk_line", "chunk_line_too_long", 400),
    ("max_body_cl", "max_body", "body_too_large", 413),
    ("max_body_chunked", "max_body", "body_too_large", 413),
])
@pytest.mark.parametrize("n", [40, 300])
def test_limit_exactly_reached_passes_and_one_more_fails(kind, kw, code, status, n):
    opts = {kw: n}
    if kw != "max_header_block":
        opts.setdefault("max_header_block", 1 << 20)
    ev, err = both(_limit_case(kind, n), **opts)
    assert err is None, err
    assert ev[-1][0] == "end"
    ev, err = both(_limit_case(kind, n + 1), **opts)
    assert err == code
    e = error(_limit_case(kind, n + 1), **opts)
    assert e.status == status


def test_unlimited_body():
    p = RequestParser(max_body=None)
    evs = p.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n")
    assert evs[0].content_length == 2 ** 63 - 1


@pytest.mark.parametrize("kw,value", [
    ("max_headers", 0), ("max_headers", -1), ("max_headers", "10"), ("max_headers", 1.5),
    ("max_request_line", 1 << 31), ("max_body", -1), ("max_body", "1"), ("max_body", 2 ** 64),
])
def test_bad_limits_are_refused(kw, value):
    with pytest.raises(InvalidArgumentError) as exc:
        RequestParser(**{kw: value})
    assert exc.value.argument == kw


# ---- errors and the parser's life ---------------------------------------------

def test_error_carries_code_status_offset_and_prior_events():
    raw = (b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n"
           b"GET /bad HTTP/1.1\r\nHost: a\r\nX\x00: y\r\n\r\n")
    p = RequestParser()
    with pytest.raises(HttpParseError) as exc:
        p.feed(raw)
    e = exc.value
    assert isinstance(e, HttpError) and isinstance(e, FlowCoroError) and isinstance(e, ValueError)
    assert e.code == "invalid_header_name" and e.status == 400
    assert e.offset == raw.index(b"\x00")
    assert [type(x) for x in e.events] == [RequestHead, EndOfMessage]
    assert "invalid header field name" in str(e)
    with pytest.raises(HttpParseError) as again:   # the parser is dead
        p.feed(b"GET / HTTP/1.1\r\n\r\n")
    assert again.value.code == e.code and again.value.events == []


def test_error_offset_counts_across_feeds():
    p = RequestParser()
    p.feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(HttpParseError) as exc:
        p.feed(b"Host: a\r\nBad Name: x\r\n\r\n")
    assert exc.value.offset == len(b"GET / HTTP/1.1\r\nHost: a\r\nBad")


def test_error_pickles():
    e = error(b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n")
    e2 = pickle.loads(pickle.dumps(e))
    assert (type(e2), e2.code, e2.status, e2.offset, str(e2)) == (
        HttpParseError, e.code, e.status, e.offset, str(e))


def test_feed_eof():
    p = RequestParser()
    assert p.feed_eof() == [] and p.idle
    p = RequestParser()
    p.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert p.idle and p.feed_eof() == []
    for partial in (b"GE", b"GET / HTTP/1.1\r\nHost: a\r\n",
                    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nab"):
        p = RequestParser()
        p.feed(partial)
        assert not p.idle
        with pytest.raises(HttpParseError) as exc:
            p.feed_eof()
        assert exc.value.code == "incomplete_message"


def test_offset_counts_consumed_bytes():
    p = RequestParser()
    p.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /")
    assert p.offset == len(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /")


def test_end_of_message_value():
    assert EndOfMessage() == EndOfMessage([]) != EndOfMessage([(b"a", b"b")])
    assert repr(EndOfMessage()) == "EndOfMessage(trailers=[])"


# ---- responses -----------------------------------------------------------------

def rboth(raw, methods=(), eof=False, **kw):
    def factory(**k):
        p = ResponseParser(**k)
        for m in methods:
            p.request_sent(m)
        return p
    return both(raw, factory, eof, **kw)


def test_response_with_content_length():
    ev, err = rboth(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello")
    assert err is None
    assert ev == [("head", dict(status_code=200, reason=b"OK", http_version="1.1",
                                headers=[(b"content-length", b"5"), (b"server", b"x")],
                                keep_alive=True, chunked=False, content_length=5, until_eof=False)),
                  ("data", b"hello"), ("end", [])]


def test_response_until_eof():
    ev, err = rboth(b"HTTP/1.1 200 OK\r\n\r\nall of it", eof=True)
    assert err is None
    h = heads(ev)[0]
    assert h["until_eof"] and not h["keep_alive"]
    assert body(ev) == b"all of it" and ev[-1] == ("end", [])


def test_response_chunked_and_pipelined():
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
           b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno")
    ev, err = rboth(raw)
    assert err is None
    assert [h["status_code"] for h in heads(ev)] == [200, 404]
    assert [k for k, _ in ev] == ["head", "data", "end", "head", "data", "end"]


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status):
    raw = b"HTTP/1.1 %d X\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz" % status
    ev, err = rboth(raw)
    assert err is None
    assert [k for k, _ in ev] == ["head", "end", "head", "data", "end"]


def test_head_responses_have_no_body_and_methods_pair_in_order():
    raw = (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
           b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    ev, err = rboth(raw, methods=[b"HEAD", "GET"])
    assert err is None
    assert [k for k, _ in ev] == ["head", "end", "head", "data", "end"]
    assert heads(ev)[0]["content_length"] == 100


def test_interim_responses_do_not_consume_the_request():
    raw = (b"HTTP/1.1 100 Continue\r\n\r\n"
           b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
           b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
    ev, err = rboth(raw, methods=[b"HEAD"])
    assert err is None
    assert [h["status_code"] for h in heads(ev)] == [100, 103, 200]
    assert [k for k, _ in ev] == ["head", "end", "head", "end", "head", "end"]


def test_101_pauses():
    p = ResponseParser()
    events = p.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\n\r\n\x81\x00")
    assert [type(e) for e in events] == [ResponseHead, EndOfMessage]
    assert p.paused and p.detach() == b"\x81\x00"


def test_connect_responses():
    p = ResponseParser()
    p.request_sent(b"CONNECT")
    events = p.feed(b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03")
    assert [type(e) for e in events] == [ResponseHead, EndOfMessage]
    assert p.paused and p.trailing_data == b"\x16\x03"
    p = ResponseParser()
    p.request_sent(b"CONNECT")
    events = p.feed(b"HTTP/1.1 407 Proxy Auth\r\nContent-Length: 2\r\n\r\nno")
    assert normalize(events)[1] == ("data", b"no") and not p.paused


@pytest.mark.parametrize("line,reason", [
    (b"HTTP/1.1 200 OK", b"OK"), (b"HTTP/1.1 200", b""), (b"HTTP/1.1 200 ", b""),
    (b"HTTP/1.1 599 Odd \t reason \xe9", b"Odd \t reason \xe9"),
])
def test_status_lines(line, reason):
    ev, err = rboth(line + b"\r\nContent-Length: 0\r\n\r\n")
    assert err is None and heads(ev)[0]["reason"] == reason


@pytest.mark.parametrize("line,code", [
    (b"HTTP/1.1 20 OK", "invalid_status"), (b"HTTP/1.1 2000 OK", "invalid_status"),
    (b"HTTP/1.1 600 X", "invalid_status"), (b"HTTP/1.1 099 X", "invalid_status"),
    (b"HTTP/1.1 abc", "invalid_status"), (b"HTTP/1.1  200 OK", "invalid_status"),
    (b"HTTP/1.1 200 O\x00K", "invalid_reason"), (b"HTTP/2 200 OK", "invalid_version"),
    (b"HTTP/2.0 200 OK", "unsupported_version"), (b"HTTP/1.1\t200 OK", "invalid_version"),
])
def test_bad_status_lines(line, code):
    with pytest.raises(HttpParseError) as exc:
        ResponseParser().feed(line + b"\r\n\r\n")
    assert exc.value.code == code


def test_response_framing_is_as_strict_as_requests():
    for raw, code in [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
         "content_length_with_transfer_encoding"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "duplicate_content_length"),
        (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "transfer_encoding_in_http10"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "chunked_not_final"),
        (b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", "obs_fold"),
    ]:
        with pytest.raises(HttpParseError) as exc:
            ResponseParser().feed(raw)
        assert exc.value.code == code


def test_response_keep_alive_rules():
    ev, _ = rboth(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert not heads(ev)[0]["keep_alive"]
    ev, _ = rboth(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
    assert heads(ev)[0]["keep_alive"]
    ev, _ = rboth(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert not heads(ev)[0]["keep_alive"]


def test_response_body_limit_and_status_line_limit():
    with pytest.raises(HttpParseError) as exc:
        ResponseParser(max_body=3).feed(b"HTTP/1.1 200 OK\r\n\r\nabcd")
    assert exc.value.code == "body_too_large"
    with pytest.raises(HttpParseError) as exc:
        ResponseParser(max_status_line=10).feed(b"HTTP/1.1 200 OK\r\n\r\n")
    assert exc.value.code == "start_line_too_long"
    ev, err = rboth(b"HTTP/1.1 200 OK\r\n\r\nabc", eof=True, max_body=3)
    assert err is None


def test_response_eof_inside_a_length_body_is_incomplete():
    p = ResponseParser()
    p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    with pytest.raises(HttpParseError) as exc:
        p.feed_eof()
    assert exc.value.code == "incomplete_message"


def test_large_heads_grow_the_scratch_and_stay_exact():
    fields = [(b"x-field-%03d" % i, b"v" * 500 + b"%d" % i) for i in range(120)]
    raw = (b"GET /" + b"p" * 7000 + b" HTTP/1.1\r\nHost: a\r\n"
           + b"".join(n + b": " + v + b"\r\n" for n, v in fields) + b"\r\n")
    assert len(raw) > 60000
    ev, err = both(raw, max_headers=121)
    assert err is None
    h = heads(ev)[0]
    assert h["target"] == b"/" + b"p" * 7000
    assert h["headers"] == [(b"host", b"a")] + fields
    p = RequestParser(max_headers=121)     # a second, smaller message reuses the grown scratch
    p.feed(raw)
    [h2, _] = p.feed(b"GET /small HTTP/1.1\r\nHost: b\r\n\r\n")
    assert h2.target == b"/small" and h2.headers == [(b"host", b"b")]


@pytest.mark.parametrize("ext,ok", [
    (b"5;a =b", True), (b"5;a= b", True), (b"5;a ;b", True), (b"5;a=b ;c", True),
    (b"5 ; a", True), (b"5;a\t=\t\"q\"", True), (b"5;a=\"\\\x7f\"", False),
    (b"5;a b", False), (b"5;a=", False), (b"5;a=\"x\" b", False), (b"5;a =", False),
    (b"5;=b", False), (b"5;a=b c", False), (b"5;a=\"x\"y", False), (b"5;a=\"\\\n\"", False),
])
def test_chunk_extension_grammar(ext, ok):
    raw = (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + ext
           + b"\r\nhello\r\n0\r\n\r\n")
    ev, err = both(raw)
    if ok:
        assert err is None and body(ev) == b"hello"
    else:
        assert err in ("invalid_chunk_extension", "bare_lf")


def test_lenient_bare_lf_in_status_lines():
    for line in (b"HTTP/1.1 200 OK\n", b"HTTP/1.1 204\n"):
        raw = line + b"Content-Length: 0\n\n"
        with pytest.raises(HttpParseError):
            ResponseParser().feed(raw)
        ev, err = rboth(raw, lenient_bare_lf=True)
        assert err is None and [k for k, _ in ev] == ["head", "end"]
