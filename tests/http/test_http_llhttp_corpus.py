"""The llhttp request corpus (../shared/conformance/http/) against our parser, strict mode.

The corpus is read as it is stored (``llhttp_requests.json``: raw bytes in
base64 plus the expected outcome); no conversion step is needed.  Each case
is fed whole, one byte at a time and split at every offset, and all three
must agree.

How a case is judged:

* ``mode: strict`` — the outcome must be the corpus's: ``complete`` (every
  message parsed to its end, same method, target, version, fields with OWS
  stripped, body and trailers), ``incomplete`` (no error, the last message
  waits for bytes), ``error`` (we reject; messages completed before the bad
  byte must match), ``upgrade`` (we pause at the same byte offset as llhttp
  and keep the rest as ``trailing_data``), ``h2_preface`` (we reject with
  code ``h2_preface``).
* ``mode: lenient`` — the input needs an llhttp leniency flag, so a strict
  parser must reject it (the corpus README: "Strict-mode parsers should
  reject mode: lenient inputs whose strict counterpart is rejected").

The corpus is run with ``require_host=False`` (llhttp does not check Host,
and most corpus requests have none; missing-Host rejection is tested in
test_http_parser.py) and ``lowercase_names=False`` (to compare names as sent).

Where llhttp is more lenient than RFC 9110/9112 as this project reads them,
the case is listed in DEVIATIONS with the reason, and the test checks our
documented behaviour (the error code) instead.  Result at the time of
writing: 152 cases, 143 as the corpus says, 9 documented deviations.
"""
import base64
import json
import os

import pytest

from http_parser_helpers import parse_pieces, splits

CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "conformance",
                      "http", "llhttp_requests.json")
if not os.path.exists(CORPUS):  # the tree is also used from copies (ASan build in /tmp)
    CORPUS = "/work/shared/conformance/http/llhttp_requests.json"

#: Cases where the corpus expects llhttp's leniency; value: (our error code, why).
DEVIATIONS = {
    "request/sample.md:314": (
        "invalid_version",
        "'GET /' with no HTTP version (HTTP/0.9 style): RFC 9112 3 requires the "
        "HTTP-version in the request line; we do not speak HTTP/0.9."),
    "request/method.md:135": (
        "invalid_target",
        "'M-SEARCH *' (SSDP): RFC 9112 3.2.4 allows the asterisk-form only for a "
        "server-wide OPTIONS request."),
    "request/method.md:372": (
        "invalid_version",
        "'ICE/1.0' protocol (SHOUTcast): not HTTP; an HTTP/1.1 parser takes only 'HTTP/'."),
    "request/method.md:400": (
        "invalid_version", "'RTSP/1.0' protocol: not HTTP."),
    "request/method.md:430": (
        "invalid_version", "'RTSP/1.0' protocol: not HTTP."),
    "request/transfer-encoding.md:751": (
        "unsupported_transfer_coding",
        "'Transfer-Encoding: deflate, chunked': we decode no transfer coding but chunked, "
        "and RFC 9112 6.1 says a server SHOULD answer 501 to a coding it does not "
        "understand (llhttp passes the deflated bytes on as the body)."),
    "request/transfer-encoding.md:793": (
        "unsupported_transfer_coding",
        "'deflate' then 'chunked' on two Transfer-Encoding lines: as above, 501."),
    "request/invalid.md:66": (
        None,
        "'ANNOUNCE' over HTTP: llhttp allows RTSP methods only with RTSP/; for us a method "
        "is any token (RFC 9110 9.1, methods are extensible) and a server answers 501 to "
        "one it does not implement.  Accepted."),
    "request/invalid.md:356": (
        None,
        "'MKCOLA': llhttp knows a fixed list of methods; for us any token is a method "
        "(RFC 9110 9.1), and the server answers 501 when it does not implement it.  Accepted."),
}

with open(CORPUS, encoding="utf-8") as f:
    DATA = json.load(f)
CASES = DATA["cases"]
OPTS = dict(require_host=False, lowercase_names=False)


def test_corpus_is_the_one_we_know():
    assert DATA["format"] == "flowcoro-http1-request-conformance/1"
    assert len(CASES) == 152
    assert set(DEVIATIONS) <= {c["id"] for c in CASES}


def _messages(events):
    """Corpus-shaped messages from normalized events (latin-1 strings)."""
    msgs = []
    for kind, val in events:
        if kind == "head":
            msgs.append(dict(method=val["method"].decode("latin-1"),
                             url=val["target"].decode("latin-1"),
                             version=val["http_version"],
                             headers=[[n.decode("latin-1"), v.decode("latin-1")]
                                      for n, v in val["headers"]],
                             body=b"", complete=False, trailers=[]))
        elif kind == "data":
            msgs[-1]["body"] += val
        else:
            msgs[-1]["complete"] = True
            msgs[-1]["trailers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in val]
    return msgs


def _check_messages(ours, expected):
    assert len(ours) == len(expected), (ours, expected)
    for m, e in zip(ours, expected):
        assert m["method"] == e["method"]
        assert m["url"] == e["url"]
        assert m["version"] == e["version"]
        assert m["headers"] == e["headers_ows_stripped"]
        assert m["body"] == base64.b64decode(e["body_b64"])
        assert m["trailers"] == (e.get("trailers") or [])
        assert m["complete"] == e["complete"]


def _outcome(err, parser, msgs):
    if err:
        return "error"
    if parser.paused:
        return "upgrade"
    if not parser.idle or (msgs and not msgs[-1]["complete"]):
        return "incomplete"
    return "complete"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case):
    raw = base64.b64decode(case["raw_b64"])
    eof = bool(case.get("eof_after_input"))
    results = {}
    for how, pieces in splits(raw):
        results[how] = parse_pieces(pieces, eof=eof, **OPTS)
    events, err, parser = results["whole"]
    for how, (ev2, err2, p2) in results.items():
        assert (ev2, err2) == (events, err), f"{how} differs from the whole input"
        assert p2.paused == parser.paused and p2.trailing_data == parser.trailing_data, how
    msgs = _messages(events)
    outcome = _outcome(err, parser, msgs)
    cid = case["id"]

    if cid in DEVIATIONS:
        code, why = DEVIATIONS[cid]
        assert why
        if code is None:
            assert outcome == "complete", (outcome, err)
        else:
            assert err == code, (err, why)
        return

    if case["mode"] == "lenient":
        assert outcome == "error", (
            f"strict parser accepted an input that needs llhttp flags {case['lenient_flags']}")
        return

    expect = case["expect"]
    if expect == "h2_preface":
        assert err == "h2_preface"
        return
    if eof and not case.get("eof_ok", True):
        # the peer closed inside the message
        assert err == "incomplete_message"
        return
    assert outcome == expect, (outcome, err)
    if expect == "error":
        done = [m for m in case["messages"] if m.get("complete")]
        _check_messages([m for m in msgs if m["complete"]], done)
        return
    want = [m for m in case["messages"] if m.get("headers_complete")]
    _check_messages(msgs, want)
    if expect == "upgrade":
        at = case["error"]["offset"]
        assert parser.offset == at
        assert parser.trailing_data == raw[at:]


def test_pass_count():
    """The figure reported in the module docstring and docs/http-parser.md."""
    as_corpus_says = [c for c in CASES if c["id"] not in DEVIATIONS]
    assert len(as_corpus_says) == 143
    assert len(DEVIATIONS) == 9
