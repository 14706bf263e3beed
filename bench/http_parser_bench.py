"""HTTP/1.1 request parser throughput: flowcoro vs httptools vs h11, same run.

    .venv/bin/python bench/http_parser_bench.py [--seconds 2] [--rounds 5] [--json]

A mixed corpus of realistic requests (browser page and asset loads with
their full header sets, curl and wrk GETs, JSON API calls, a form post, a
chunked upload, a 4 KiB upload) is parsed the way a server reads it, in two
modes:

* ``per-request``: one ``feed()`` per request on a keep-alive connection
  (one recv() per request, the usual case);
* ``pipelined``: the whole corpus in 16 KiB reads (pipelining clients, and
  every request split across reads at some point).

Each parser does what a server needs from it, nothing more: method, target,
version, the header list, the body bytes and the end of each message.

* flowcoro: ``RequestParser.feed()`` events (the head object carries all of it).
* httptools (llhttp): callbacks that collect the target, the ``(name,
  value)`` header list with lowercased names (as ASGI needs them; flowcoro
  lowercases in C) and the body, plus ``get_method()`` and
  ``get_http_version()`` on headers-complete (what uvicorn's httptools
  protocol does).  "httptools raw names" skips the ``lower()`` call, as a
  lower bound of its cost.
* h11: ``receive_data()`` + ``next_event()``; h11 serves one request per
  cycle, so each request gets a fresh ``h11.Connection`` (per-request mode
  only; the construction is part of its cost).

Rounds are interleaved (A B C, A B C, ...) and the best round is reported,
as MB/s of request bytes and requests/s.
"""
import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flowcoro.http import RequestHead, RequestParser  # noqa: E402

try:
    import httptools
except ImportError:
    httptools = None
try:
    import h11
except ImportError:
    h11 = None

CHROME = (
    b"GET /assets/app.3f2a9c.js HTTP/1.1\r\nHost: www.example.com\r\nConnection: keep-alive\r\n"
    b"sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n"
    b"sec-ch-ua-mobile: ?0\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) "
    b"AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n"
    b"sec-ch-ua-platform: \"Windows\"\r\nAccept: */*\r\nSec-Fetch-Site: same-origin\r\n"
    b"Sec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: script\r\nReferer: https://www.example.com/\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9,de;q=0.8\r\n"
    b"Cookie: _ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; "
    b"session=eyJ1c2VyIjoiYW5uIn0.ZmFrZQ.c2lnbmF0dXJl; theme=dark\r\n\r\n")
FIREFOX_PAGE = (
    b"GET /docs/getting-started?lang=en HTTP/1.1\r\nHost: docs.example.org\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
    b"Connection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\n"
    b"Sec-Fetch-Mode: navigate\r\nSec-Fetch-Site: none\r\nSec-Fetch-User: ?1\r\n"
    b"If-None-Match: \"5f3a-61b2c0a7d9e40\"\r\nIf-Modified-Since: Tue, 02 Apr 2024 10:00:00 GMT\r\n\r\n")
CURL = b"GET /api/status HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
WRK = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
_JSON = b'{"user":"ann","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}],"coupon":null}'
API_POST = (
    b"POST /api/v1/orders HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: python-httpx/0.27.0\r\n"
    b"Accept: application/json\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n"
    b"Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjMifQ.sig\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(_JSON) + _JSON)
_FORM = b"username=ann&password=hunter2&remember=on&next=%2Fdashboard"
FORM_POST = (
    b"POST /login HTTP/1.1\r\nHost: www.example.com\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Origin: https://www.example.com\r\nReferer: https://www.example.com/login\r\n"
    b"User-Agent: Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    b"Version/17.4 Safari/605.1.15\r\nContent-Length: %d\r\n\r\n" % len(_FORM) + _FORM)
CHUNKED = (
    b"PUT /files/report.csv HTTP/1.1\r\nHost: storage.example.com\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Type: text/csv\r\nExpect: 100-continue\r\n\r\n"
    + b"".join(b"%x\r\n" % len(c) + c + b"\r\n" for c in
               [b"id,name,amount\n", b"1,ann,10.50\n2,bob,3.25\n" * 8, b"3,cy,99.99\n"])
    + b"0\r\n\r\n")
UPLOAD = (b"POST /upload HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/octet-stream\r\n"
          b"Content-Length: 4096\r\n\r\n" + bytes(range(256)) * 16)
HEAD = b"HEAD /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: monitor/1.0\r\n\r\n"
DELETE = (b"DELETE /api/v1/orders/8817 HTTP/1.1\r\nHost: api.example.com\r\n"
          b"Authorization: Basic YW5uOmh1bnRlcjI=\r\nContent-Length: 0\r\n\r\n")

#: (request, weight): weights sketch a mixed web/API server's traffic.
CORPUS = [(CHROME, 4), (FIREFOX_PAGE, 2), (CURL, 2), (WRK, 4), (API_POST, 3), (FORM_POST, 1),
          (CHUNKED, 1), (UPLOAD, 1), (HEAD, 1), (DELETE, 1)]
REQUESTS = [r for r, w in CORPUS for _ in range(w)]
STREAM = b"".join(REQUESTS)
READ = 16 * 1024
READS = [STREAM[i:i + READ] for i in range(0, len(STREAM), READ)]


def flowcoro_run(pieces):
    p = RequestParser()
    n = 0
    for piece in pieces:
        for ev in p.feed(piece):
            if type(ev) is RequestHead:
                n += 1
    return n


class _Proto:
    """What a server keeps from httptools' callbacks (uvicorn-like)."""

    __slots__ = ("parser", "url", "headers", "body", "method", "version", "n")

    def __init__(self):
        self.n = 0

    def on_message_begin(self):
        self.headers = []
        self.body = []
        self.url = b""

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers.append((name.lower(), value))

    def on_headers_complete(self):
        self.method = self.parser.get_method()
        self.version = self.parser.get_http_version()

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        self.n += 1


class _ProtoRawNames(_Proto):
    """The same, keeping names as sent (a server would still have to lowercase them)."""

    __slots__ = ()

    def on_header(self, name, value):
        self.headers.append((name, value))


def httptools_run(pieces, proto_class=_Proto):
    proto = proto_class()
    proto.parser = httptools.HttpRequestParser(proto)
    for piece in pieces:
        proto.parser.feed_data(piece)
    return proto.n


def httptools_raw_run(pieces):
    return httptools_run(pieces, _ProtoRawNames)


def h11_run(pieces):
    n = 0
    for piece in pieces:   # one whole request per piece (per-request mode)
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(piece)
        while True:
            ev = conn.next_event()
            if type(ev) is h11.EndOfMessage:
                n += 1
                break
            if ev is h11.NEED_DATA:
                raise AssertionError("h11 wants more data")
    return n


def measure(fn, pieces, seconds):
    nbytes = sum(len(p) for p in pieces)
    assert fn(pieces) == len(REQUESTS), fn.__name__
    loops = 0
    t0 = time.perf_counter()
    while True:
        fn(pieces)
        loops += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            break
    return nbytes * loops / dt / 1e6, len(REQUESTS) * loops / dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; best is kept")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    contenders = [("flowcoro", flowcoro_run)]
    if httptools:
        contenders.append((f"httptools {httptools.__version__}", httptools_run))
        contenders.append(("httptools raw names", httptools_raw_run))
    if h11:
        contenders.append((f"h11 {h11.__version__}", h11_run))
    modes = [("per-request", REQUESTS), ("pipelined", READS)]
    best = {}
    for _ in range(args.rounds):
        for mode, pieces in modes:
            for name, fn in contenders:
                if fn is h11_run and mode != "per-request":
                    continue
                mbs, rps = measure(fn, pieces, args.seconds)
                key = (mode, name)
                if key not in best or mbs > best[key][0]:
                    best[key] = (mbs, rps)
    info = dict(python=platform.python_version(), machine=platform.machine(),
                corpus_bytes=len(STREAM), corpus_requests=len(REQUESTS),
                mean_request_bytes=round(len(STREAM) / len(REQUESTS)))
    if args.json:
        print(json.dumps(dict(info=info, results=[dict(mode=m, parser=n, mb_s=v[0], req_s=v[1])
                                                  for (m, n), v in best.items()]), indent=1))
        return
    print(f"corpus: {info['corpus_requests']} requests, {info['corpus_bytes']} bytes "
          f"(mean {info['mean_request_bytes']} B); best of {args.rounds} x {args.seconds}s; "
          f"Python {info['python']}")
    for mode, _ in modes:
        base = best.get((mode, contenders[1][0])) if len(contenders) > 1 else None
        for name, _ in contenders:
            if (mode, name) not in best:
                continue
            mbs, rps = best[(mode, name)]
            rel = f"  {mbs / base[0]:.2f}x httptools" if base else ""
            print(f"{mode:12s} {name:18s} {mbs:8.1f} MB/s {rps / 1e3:9.1f} k req/s{rel}")


if __name__ == "__main__":
    main()
