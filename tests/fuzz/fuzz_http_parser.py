"""Atheris fuzz target for the HTTP/1.1 parsers (csrc/http/parser.c via flowcoro.http).

    make fuzz                       # FUZZ_SECONDS=600 by default; see the Makefile
    python tests/fuzz/fuzz_http_parser.py -max_total_time=60 tests/fuzz/corpus/http_parser

Input format (so seeds stay readable): byte 0 picks the parser and its
options, byte 1 seeds where the stream is cut, the rest is the byte stream.

  byte 0: bit 0   ResponseParser (else RequestParser)
          bit 1   lenient_bare_lf
          bit 2   lenient_obs_fold
          bit 3   small limits (so the limit paths are reached)
          bit 4   require_host off / lowercase_names off
          bit 5   ResponseParser: the request was HEAD
          bit 6   ResponseParser: the request was CONNECT
          bit 7   call feed_eof() at the end

What is checked on every input, beyond "no crash, no sanitizer report":

* incremental equivalence: the stream fed whole, cut at the drawn offsets
  and cut one byte at a time gives the same events and the same error;
* every exception is HttpParseError with a known status hint and an offset
  inside the stream;
* heads are sane: header names are non-empty tokens, values carry no CR, LF
  or NUL and no surrounding whitespace; a Content-Length body that ended has
  exactly that many bytes; chunked and Content-Length never come together;
* after a pause, the kept bytes are exactly the rest of the stream.

The native parser is coverage-guided when the extension is built with
``clang -fsanitize=fuzzer-no-link`` (``make fuzz`` does that in build/fuzz);
with the normal build only the Python side is instrumented.
"""
import sys

HttpParseError = EndOfMessage = RequestHead = RequestParser = ResponseHead = ResponseParser = None


def _import():
    """Bind the flowcoro names (after atheris.Setup when fuzzing: see main)."""
    global HttpParseError, EndOfMessage, RequestHead, RequestParser, ResponseHead, ResponseParser
    from flowcoro.errors import HttpParseError
    from flowcoro.http import (EndOfMessage, RequestHead, RequestParser, ResponseHead,
                               ResponseParser)

STATUSES = {400, 413, 414, 431, 501, 505}
TOKEN = set(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def make(opts):
    kw = {}
    if opts & 2:
        kw["lenient_bare_lf"] = True
    if opts & 4:
        kw["lenient_obs_fold"] = True
    if opts & 8:
        kw.update(max_header_field=40, max_headers=4, max_header_block=120, max_chunk_line=12,
                  max_body=50)
        kw["max_status_line" if opts & 1 else "max_request_line"] = 30
    if opts & 16:
        kw["lowercase_names"] = False
        if not opts & 1:
            kw["require_host"] = False
    if opts & 1:
        p = ResponseParser(**kw)
        if opts & 32:
            p.request_sent(b"HEAD")
        if opts & 64:
            p.request_sent(b"CONNECT")
        return p
    return RequestParser(**kw)


def run(opts, pieces, total):
    """Feed pieces; returns (summary of events, error code, trailing bytes)."""
    p = make(opts)
    out = []
    err = None
    try:
        for piece in pieces:
            out += p.feed(piece)
        if opts & 128:
            out += p.feed_eof()
    except HttpParseError as e:
        assert e.status in STATUSES, e.status
        assert 0 <= e.offset <= total, (e.offset, total)
        assert e.code and isinstance(e.code, str)
        out += e.events
        err = e.code
    summary = []
    for ev in out:
        if type(ev) is bytes:
            assert ev, "empty body event"
            if summary and summary[-1][0] == "data":
                summary[-1] = ("data", summary[-1][1] + ev)
            else:
                summary.append(("data", ev))
        elif type(ev) is EndOfMessage:
            summary.append(("end", tuple(ev.trailers)))
        elif type(ev) in (RequestHead, ResponseHead):
            check_head(ev)
            summary.append(("head", repr(ev)))
        else:
            raise AssertionError(f"unknown event {ev!r}")
    check_bodies(out)
    return summary, err, (p.trailing_data if p.paused else None), p.offset


def check_head(h):
    for name, value in h.headers:
        assert name and set(name) <= TOKEN, name
        assert b"\r" not in value and b"\n" not in value and b"\0" not in value, value
        assert value == value.strip(b" \t"), value
    assert not (h.chunked and h.content_length is not None)


def check_bodies(events):
    head, got = None, 0
    for ev in events:
        if type(ev) in (RequestHead, ResponseHead):
            head, got = ev, 0
        elif type(ev) is bytes:
            got += len(ev)
        elif type(ev) is EndOfMessage and head is not None:
            cl = head.content_length
            no_body = type(head) is ResponseHead and (
                head.status_code < 200 or head.status_code in (204, 304))
            if cl is not None and not no_body and got not in (0, cl):
                raise AssertionError(f"body {got} != Content-Length {cl}")
            if cl is not None and got and got != cl:
                raise AssertionError(f"body {got} != Content-Length {cl}")


def check(data):
    if len(data) < 2:
        return
    opts, seed, raw = data[0], data[1], data[2:]
    whole = run(opts, [raw], len(raw))
    # cut at offsets drawn from `seed` (a small linear congruential walk)
    cuts, x = [], seed
    while raw and len(cuts) < 6:
        x = (x * 73 + 41) % 251
        cuts.append(x % (len(raw) + 1))
    cuts = sorted(set(cuts))
    pieces, last = [], 0
    for c in cuts:
        pieces.append(raw[last:c])
        last = c
    pieces.append(raw[last:])
    assert run(opts, pieces, len(raw))[:3] == whole[:3], "split changed the result"
    if len(raw) <= 512:
        assert run(opts, [raw[i:i + 1] for i in range(len(raw))], len(raw))[:3] == whole[:3], \
            "byte-at-a-time changed the result"
    summary, err, trailing, offset = whole
    if trailing is not None:
        assert trailing == raw[offset:], "paused: kept bytes are not the rest of the stream"


def TestOneInput(data):  # noqa: N802 - atheris' name
    check(data)


def main():
    import os

    import atheris
    _import()
    # libFuzzer re-runs argv[0] through sh for -merge, -jobs and -fork: make
    # it the interpreter plus this script.
    argv = [f"{sys.executable} {os.path.abspath(__file__)}"] + sys.argv[1:]
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
else:
    _import()
