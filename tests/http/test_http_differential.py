"""Differential tests: our request parser against h11 and httptools (llhttp) on valid requests.

Each drawn request comes with the message it encodes
(http_parser_strategies.requests); our parser, h11 and httptools must all
report that message.  A fixed set of realistic requests (browsers, curl,
API clients) is checked the same way.  httptools is optional (skipped when
not installed); h11 is a test dependency of this suite.
"""
import pytest
from hypothesis import HealthCheck, given, settings

from flowcoro.http import EndOfMessage, RequestHead, RequestParser

from http_parser_strategies import known_methods, pipelines, requests

h11 = pytest.importorskip("h11")
try:
    import httptools
except ImportError:  # pragma: no cover - optional reference
    httptools = None

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

REALISTIC = [
    b"GET / HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
    (b"GET /static/app.js?v=3 HTTP/1.1\r\nHost: www.example.com\r\nConnection: keep-alive\r\n"
     b"sec-ch-ua: \"Chromium\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\nsec-ch-ua-mobile: ?0\r\n"
     b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     b"Chrome/124.0.0.0 Safari/537.36\r\nsec-ch-ua-platform: \"Linux\"\r\nAccept: */*\r\n"
     b"Sec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: script\r\n"
     b"Referer: https://www.example.com/\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n"
     b"Accept-Language: en-US,en;q=0.9\r\nCookie: session=abc123; theme=dark\r\n\r\n"),
    (b"POST /api/v1/users HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\n"
     b"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x\r\nContent-Length: 28\r\n\r\n"
     b'{"name":"ann","admin":false}'),
    (b"PUT /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Type: application/octet-stream\r\n\r\n"
     b"4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n"),
    b"GET /health HTTP/1.0\r\nConnection: Keep-Alive\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n",
    (b"DELETE /items/42 HTTP/1.1\r\nHost: a\r\nIf-Match: \"etag\"\r\nContent-Length: 0\r\n"
     b"Connection: close\r\n\r\n"),
]


def ours(raw):
    msgs = []
    for ev in RequestParser().feed(raw):
        if type(ev) is RequestHead:
            msgs.append(dict(method=ev.method, target=ev.target, http_version=ev.http_version,
                             headers=ev.headers, body=b"", trailers=[], keep_alive=ev.keep_alive))
        elif type(ev) is bytes:
            msgs[-1]["body"] += ev
        else:
            assert type(ev) is EndOfMessage
            msgs[-1]["trailers"] = ev.trailers
            msgs[-1]["done"] = True
    assert all(m.get("done") for m in msgs)
    return msgs


def via_h11(raw):
    """One request through h11 (it wants a response before the next one)."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(raw)
    msg = None
    while True:
        ev = conn.next_event()
        if type(ev) is h11.Request:
            msg = dict(method=ev.method, target=ev.target, http_version=ev.http_version.decode(),
                       headers=[(n, v) for n, v in ev.headers], body=b"", trailers=[])
        elif type(ev) is h11.Data:
            msg["body"] += ev.data
        elif type(ev) is h11.EndOfMessage:
            msg["trailers"] = [(n, v) for n, v in ev.headers]
            return msg
        else:
            raise AssertionError(f"h11 stopped at {ev!r}")


class _Collector:
    def __init__(self):
        self.msgs = []
        self.in_head = False

    def on_message_begin(self):
        self.msgs.append(dict(target=b"", headers=[], body=b"", trailers=[]))
        self.in_head = True

    def on_url(self, url):
        self.msgs[-1]["target"] += url

    def on_header(self, name, value):
        (self.msgs[-1]["headers"] if self.in_head else self.msgs[-1]["trailers"]).append(
            (name.lower(), value))

    def on_headers_complete(self):
        self.in_head = False
        m = self.msgs[-1]
        m["method"] = self.parser.get_method()
        m["http_version"] = self.parser.get_http_version()
        m["keep_alive"] = self.parser.should_keep_alive()

    def on_body(self, body):
        self.msgs[-1]["body"] += body

    def on_message_complete(self):
        self.msgs[-1]["done"] = True


def via_httptools(raw):
    c = _Collector()
    c.parser = httptools.HttpRequestParser(c)
    c.parser.feed_data(raw)
    assert all(m.get("done") for m in c.msgs)
    return c.msgs


def same(a, b, keys):
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}


KEYS = ("method", "target", "http_version", "headers", "body", "trailers")


@pytest.mark.parametrize("raw", REALISTIC, ids=range(len(REALISTIC)))
def test_realistic_requests_agree_with_h11(raw):
    [m] = ours(raw)
    same(m, via_h11(raw), KEYS)


@pytest.mark.skipif(httptools is None, reason="httptools not installed")
def test_realistic_requests_agree_with_httptools_pipelined():
    raw = b"".join(REALISTIC)
    mine, theirs = ours(raw), via_httptools(raw)
    assert len(mine) == len(theirs) == len(REALISTIC)
    for a, b in zip(mine, theirs):
        same(a, b, KEYS + ("keep_alive",))


@SETTINGS
@given(requests())
def test_drawn_requests_agree_with_h11(case):
    raw, expected = case
    [m] = ours(raw)
    same(m, expected, KEYS + ("keep_alive",))
    same(via_h11(raw), expected, KEYS)


@pytest.mark.skipif(httptools is None, reason="httptools not installed")
@SETTINGS
@given(pipelines(method_strategy=known_methods))   # llhttp knows a fixed list of methods
def test_drawn_pipelines_agree_with_httptools(case):
    raw, expected = case
    mine, theirs = ours(raw), via_httptools(raw)
    assert len(mine) == len(theirs) == len(expected)
    for a, b, e in zip(mine, theirs, expected):
        same(a, e, KEYS + ("keep_alive",))
        same(b, e, KEYS + ("keep_alive",))
