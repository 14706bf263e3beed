"""Request smuggling and malformed input: the CVE classes of aiohttp, h11, llhttp,
waitress and gunicorn, against the strict request parser.

Every attack carries a second, smuggled request (``GET /admin``) behind the
bytes that a lenient or confused parser would mis-frame.  Each input is
delivered whole, one byte at a time and split at every offset; every
delivery must end in the same specific error and none may produce a head
for the smuggled request (``assert_rejected``).  Valid look-alikes (the
"controls") show the same bytes parse when the framing is honest, so the
rejections are about the attack, not about the request around it.
"""
import pytest

from flowcoro.http import HttpParseError, RequestParser

from http_parser_helpers import count_heads, parse_pieces, splits

SMUGGLED = b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"


def assert_rejected(raw, code, status=400, max_heads=0, **opts):
    """raw is rejected with `code` however it is split; no smuggled head appears."""
    outcomes = set()
    for how, pieces in splits(raw):
        events, err, _ = parse_pieces(pieces, **opts)
        assert err == code, f"{how}: got {err!r}, want {code!r}"
        assert count_heads(events) <= max_heads, how
        for kind, val in events:
            if kind == "head":
                assert val["target"] != b"/admin", f"{how}: smuggled request reached the app"
        outcomes.add(repr(events))
    assert len(outcomes) == 1, "the split changed what came out before the error"
    p = RequestParser(**opts)
    with pytest.raises(HttpParseError) as exc:
        p.feed(raw)
    assert exc.value.status == status
    return exc.value


def req(*header_lines, body=b"", method=b"POST", version=b"HTTP/1.1", host=True):
    """A request with the given raw header lines (bytes, CRLF added), then body."""
    lines = [method + b" / " + version]
    if host:
        lines.append(b"Host: a")
    lines += header_lines
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# (id, raw, error code, HTTP status hint, heads allowed before the error)
CASES = [
    # --- Content-Length together with Transfer-Encoding (CL.TE / TE.CL) ---
    ("cl-te", req(b"Content-Length: 4", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n" + SMUGGLED),
     "content_length_with_transfer_encoding", 400, 0),
    ("te-cl", req(b"Transfer-Encoding: chunked", b"Content-Length: 36", body=b"0\r\n\r\n" + SMUGGLED),
     "content_length_with_transfer_encoding", 400, 0),
    ("cl0-te", req(b"Content-Length: 0", b"Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\n\r\n"),
     "content_length_with_transfer_encoding", 400, 0),
    # --- duplicate / list / signed / malformed Content-Length ---
    ("cl-duplicate-differing", req(b"Content-Length: 0", b"Content-Length: 34", body=SMUGGLED),
     "duplicate_content_length", 400, 0),
    ("cl-list-same", req(b"Content-Length: 34, 34", body=SMUGGLED), "invalid_content_length", 400, 0),
    ("cl-list-differing", req(b"Content-Length: 0, 34", body=SMUGGLED), "invalid_content_length", 400, 0),
    ("cl-plus", req(b"Content-Length: +34", body=SMUGGLED), "invalid_content_length", 400, 0),
    ("cl-minus", req(b"Content-Length: -1", body=SMUGGLED), "invalid_content_length", 400, 0),
    ("cl-hex", req(b"Content-Length: 0x22", body=SMUGGLED), "invalid_content_length", 400, 0),
    ("cl-exponent", req(b"Content-Length: 3e1", body=SMUGGLED), "invalid_content_length", 400, 0),
    ("cl-inner-space", req(b"Content-Length: 3 4", body=SMUGGLED), "invalid_content_length", 400, 0),
    ("cl-empty", req(b"Content-Length:", body=SMUGGLED), "invalid_content_length", 400, 0),
    ("cl-unicode-digit", req(b"Content-Length: \xd9\xa3", body=SMUGGLED), "invalid_content_length", 400, 0),
    ("cl-overflow", req(b"Content-Length: 18446744073709551617", body=SMUGGLED),
     "content_length_overflow", 400, 0),
    ("cl-overflow-int64", req(b"Content-Length: 9223372036854775808", body=SMUGGLED),
     "content_length_overflow", 400, 0),
    # --- underscore spellings (WSGI/CGI name mangling) ---
    ("cl-underscore", req(b"Content_Length: 34", body=SMUGGLED), "ambiguous_header_name", 400, 0),
    ("te-underscore", req(b"Transfer_Encoding: chunked", body=b"0\r\n\r\n" + SMUGGLED),
     "ambiguous_header_name", 400, 0),
    ("cl-underscore-with-cl", req(b"Content-Length: 0", b"content_length: 34", body=SMUGGLED),
     "ambiguous_header_name", 400, 0),
    # --- obs-fold ---
    ("te-folded", req(b"Transfer-Encoding: gzip", b" , chunked", body=b"0\r\n\r\n" + SMUGGLED),
     "obs_fold", 400, 0),
    ("te-folded-empty-first", req(b"Transfer-Encoding:", b" chunked", body=b"0\r\n\r\n" + SMUGGLED),
     "invalid_transfer_encoding", 400, 0),
    ("cl-folded", req(b"Content-Length: 0", b"\t34", body=SMUGGLED), "obs_fold", 400, 0),
    ("fold-hides-te", req(b"X-Pad: a", b" Transfer-Encoding: chunked", body=b"0\r\n\r\n" + SMUGGLED),
     "obs_fold", 400, 0),
    # --- whitespace before the colon or before a header name ---
    ("te-space-colon", req(b"Transfer-Encoding : chunked", body=b"0\r\n\r\n" + SMUGGLED),
     "whitespace_before_colon", 400, 0),
    ("cl-tab-colon", req(b"Content-Length\t: 34", body=SMUGGLED), "whitespace_before_colon", 400, 0),
    ("space-before-first-name",
     b"POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\n\r\n0\r\n\r\n" + SMUGGLED,
     "whitespace_after_start_line", 400, 0),
    ("space-before-later-name", req(b" Content-Length: 34", body=SMUGGLED), "obs_fold", 400, 0),
    # --- bare LF / bare CR ---
    ("bare-lf-header", b"POST / HTTP/1.1\r\nHost: a\nContent-Length: 34\r\n\r\n" + SMUGGLED,
     "bare_lf", 400, 0),
    ("bare-lf-request-line", b"POST / HTTP/1.1\nHost: a\r\nContent-Length: 34\r\n\r\n" + SMUGGLED,
     "bare_lf", 400, 0),
    ("bare-lf-end-of-head", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 34\r\n\n" + SMUGGLED,
     "bare_lf", 400, 0),
    ("bare-cr-header", b"POST / HTTP/1.1\r\nHost: a\rContent-Length: 34\r\n\r\n" + SMUGGLED,
     "bare_cr", 400, 0),
    ("bare-cr-in-value", req(b"X: a\rb", b"Content-Length: 34", body=SMUGGLED), "bare_cr", 400, 0),
    ("bare-cr-end-of-head", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 34\r\n\r" + SMUGGLED,
     "bare_cr", 400, 0),
    ("bare-cr-request-line", b"POST / HTTP/1.1\rHost: a\r\n\r\n" + SMUGGLED, "bare_cr", 400, 0),
    # --- NUL and control bytes ---
    ("nul-in-value", req(b"X: a\x00b", b"Content-Length: 34", body=SMUGGLED), "invalid_header_value", 400, 0),
    ("nul-in-te", req(b"Transfer-Encoding: chunked\x00", body=b"0\r\n\r\n" + SMUGGLED),
     "invalid_header_value", 400, 0),
    ("nul-in-name", req(b"Content-Length\x00: 34", body=SMUGGLED), "invalid_header_name", 400, 0),
    ("nul-in-target", b"POST /\x00 HTTP/1.1\r\nHost: a\r\n\r\n" + SMUGGLED, "invalid_target", 400, 0),
    ("nul-before-method", b"\x00POST / HTTP/1.1\r\nHost: a\r\n\r\n", "invalid_method", 400, 0),
    ("vt-in-te", req(b"Transfer-Encoding: \x0bchunked", body=b"0\r\n\r\n" + SMUGGLED),
     "invalid_header_value", 400, 0),
    ("ff-in-cl", req(b"Content-Length: \x0c34", body=SMUGGLED), "invalid_header_value", 400, 0),
    ("del-in-value", req(b"X: a\x7f", body=SMUGGLED), "invalid_header_value", 400, 0),
    ("esc-in-name", req(b"Content\x1bLength: 34", body=SMUGGLED), "invalid_header_name", 400, 0),
    ("high-byte-in-name", req(b"Content-L\xe9ngth: 34", body=SMUGGLED), "invalid_header_name", 400, 0),
    # --- chunk-size overflow and malformed chunk sizes ---
    ("chunk-size-overflow",
     req(b"Transfer-Encoding: chunked", body=b"ffffffffffffffffff1\r\nx\r\n0\r\n\r\n" + SMUGGLED),
     "chunk_size_overflow", 400, 1),
    ("chunk-size-2^64",
     req(b"Transfer-Encoding: chunked", body=b"10000000000000000\r\n\r\n0\r\n\r\n" + SMUGGLED),
     "chunk_size_overflow", 400, 1),
    ("chunk-size-hex-prefix", req(b"Transfer-Encoding: chunked", body=b"0x5\r\nhello\r\n0\r\n\r\n"),
     "invalid_chunk_size", 400, 1),
    ("chunk-size-negative", req(b"Transfer-Encoding: chunked", body=b"-1\r\n0\r\n\r\n" + SMUGGLED),
     "invalid_chunk_size", 400, 1),
    ("chunk-size-leading-space", req(b"Transfer-Encoding: chunked", body=b" 5\r\nhello\r\n0\r\n\r\n"),
     "invalid_chunk_size", 400, 1),
    ("chunk-size-trailing-space", req(b"Transfer-Encoding: chunked", body=b"5 \r\nhello\r\n0\r\n\r\n"),
     "invalid_chunk_size", 400, 1),
    ("chunk-size-inner-space", req(b"Transfer-Encoding: chunked", body=b"1 0\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n"),
     "invalid_chunk_size", 400, 1),
    ("chunk-size-missing", req(b"Transfer-Encoding: chunked", body=b"\r\n\r\n" + SMUGGLED),
     "invalid_chunk_size", 400, 1),
    # --- bare LF (and CR) in chunk framing and extensions ---
    ("chunk-ext-bare-lf",
     req(b"Transfer-Encoding: chunked", body=b"2;a\nxx\r\n45\r\n0\r\n\r\n" + SMUGGLED + b"\r\n0\r\n\r\n"),
     "bare_lf", 400, 1),
    ("chunk-ext-value-bare-lf",
     req(b"Transfer-Encoding: chunked", body=b"2;a=b\nxx\r\n0\r\n\r\n" + SMUGGLED),
     "bare_lf", 400, 1),
    ("chunk-ext-quoted-lf",
     req(b"Transfer-Encoding: chunked", body=b'2;a="b\nc"\r\nxx\r\n0\r\n\r\n' + SMUGGLED),
     "invalid_chunk_extension", 400, 1),
    ("chunk-ext-bare-cr",
     req(b"Transfer-Encoding: chunked", body=b"2;a\rxx\r\n0\r\n\r\n" + SMUGGLED),
     "bare_cr", 400, 1),
    ("chunk-size-bare-lf", req(b"Transfer-Encoding: chunked", body=b"2\nxx\r\n0\r\n\r\n" + SMUGGLED),
     "bare_lf", 400, 1),
    ("last-chunk-bare-lf", req(b"Transfer-Encoding: chunked", body=b"0\n\r\n" + SMUGGLED),
     "bare_lf", 400, 1),
    ("chunk-ext-no-name", req(b"Transfer-Encoding: chunked", body=b"2;\r\nxx\r\n0\r\n\r\n"),
     "invalid_chunk_extension", 400, 1),
    ("chunk-ext-unbalanced-quote",
     req(b"Transfer-Encoding: chunked", body=b'2;a="xx\r\nxx\r\n0\r\n\r\n' + SMUGGLED),
     "invalid_chunk_extension", 400, 1),
    # --- garbage after chunk data ---
    ("chunk-data-garbage",
     req(b"Transfer-Encoding: chunked", body=b"3\r\nabcXX\r\n0\r\n\r\n" + SMUGGLED),
     "garbage_after_chunk_data", 400, 1),
    ("chunk-data-too-long",
     req(b"Transfer-Encoding: chunked", body=b"2\r\nabc\r\n0\r\n\r\n" + SMUGGLED),
     "garbage_after_chunk_data", 400, 1),
    ("chunk-data-lf-only",
     req(b"Transfer-Encoding: chunked", body=b"3\r\nabc\n0\r\n\r\n" + SMUGGLED),
     "garbage_after_chunk_data", 400, 1),
    ("chunk-data-cr-only",
     req(b"Transfer-Encoding: chunked", body=b"3\r\nabc\r0\r\n\r\n" + SMUGGLED),
     "garbage_after_chunk_data", 400, 1),
    # --- multiple and unknown Transfer-Encodings ---
    ("te-chunked-twice", req(b"Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n" + SMUGGLED),
     "chunked_twice", 400, 0),
    ("te-chunked-twice-lines", req(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked",
                                   body=b"0\r\n\r\n" + SMUGGLED), "chunked_twice", 400, 0),
    ("te-chunked-then-identity", req(b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity",
                                     body=b"0\r\n\r\n" + SMUGGLED), "chunked_not_final", 400, 0),
    ("te-chunked-not-last", req(b"Transfer-Encoding: chunked, gzip", body=b"0\r\n\r\n" + SMUGGLED),
     "chunked_not_final", 400, 0),
    ("te-unknown", req(b"Transfer-Encoding: xchunked", body=b"0\r\n\r\n" + SMUGGLED),
     "chunked_not_final", 400, 0),
    ("te-identity", req(b"Transfer-Encoding: identity", body=SMUGGLED), "chunked_not_final", 400, 0),
    ("te-gzip-chunked", req(b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n" + SMUGGLED),
     "unsupported_transfer_coding", 501, 0),
    ("te-empty", req(b"Transfer-Encoding:", body=SMUGGLED), "invalid_transfer_encoding", 400, 0),
    ("te-empty-then-chunked", req(b"Transfer-Encoding:", b"Transfer-Encoding: chunked",
                                  body=b"0\r\n\r\n" + SMUGGLED), "invalid_transfer_encoding", 400, 0),
    ("te-chunked-params", req(b"Transfer-Encoding: chunked;q=1", body=b"0\r\n\r\n" + SMUGGLED),
     "invalid_transfer_encoding", 400, 0),
    ("te-quoted", req(b'Transfer-Encoding: "chunked"', body=b"0\r\n\r\n" + SMUGGLED),
     "invalid_transfer_encoding", 400, 0),
    ("te-chunked-garbage", req(b"Transfer-Encoding: chunked x", body=b"0\r\n\r\n" + SMUGGLED),
     "invalid_transfer_encoding", 400, 0),
    # --- HTTP/1.0 with Transfer-Encoding ---
    ("http10-te", req(b"Transfer-Encoding: chunked", version=b"HTTP/1.0", body=b"0\r\n\r\n" + SMUGGLED),
     "transfer_encoding_in_http10", 400, 0),
    ("http10-te-cl", req(b"Transfer-Encoding: chunked", b"Content-Length: 5", version=b"HTTP/1.0",
                         body=b"0\r\n\r\n" + SMUGGLED), "transfer_encoding_in_http10", 400, 0),
    # --- Host confusion, request line tricks, data after close ---
    ("host-twice", req(b"Host: b", body=SMUGGLED), "duplicate_host", 400, 0),
    ("version-trailing-space", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n" + SMUGGLED, "invalid_version", 400, 0),
    ("double-space-after-method", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n" + SMUGGLED, "invalid_target", 400, 0),
    ("target-with-space", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n" + SMUGGLED, "invalid_version", 400, 0),
    ("http09", b"GET /\r\n\r\n" + SMUGGLED, "invalid_version", 400, 0),
    ("lowercase-http", b"GET / http/1.1\r\nHost: a\r\n\r\n" + SMUGGLED, "invalid_version", 400, 0),
    ("http2-version", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n" + SMUGGLED, "unsupported_version", 505, 0),
    ("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "h2_preface", 505, 0),
    ("data-after-close", req(b"Connection: close", method=b"GET") + SMUGGLED, "data_after_close", 400, 1),
    ("data-after-http10", req(method=b"GET", version=b"HTTP/1.0", host=False) + SMUGGLED,
     "data_after_close", 400, 1),
]


@pytest.mark.parametrize("raw,code,status,heads", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_attack_is_rejected(raw, code, status, heads):
    assert_rejected(raw, code, status, heads)


def test_case_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


# ---- the leniency switches never loosen framing ------------------------------

@pytest.mark.parametrize("raw,code", [
    (req(b"Transfer-Encoding: chunked", body=b"2;a\nxx\r\n0\r\n\r\n" + SMUGGLED), "bare_lf"),
    (req(b"Transfer-Encoding: chunked", body=b"2\nxx\r\n0\r\n\r\n" + SMUGGLED), "bare_lf"),
    (req(b"Transfer-Encoding: chunked", body=b"3\r\nabc\n0\r\n\r\n" + SMUGGLED), "garbage_after_chunk_data"),
    (b"POST / HTTP/1.1\r\nHost: a\rContent-Length: 34\r\n\r\n" + SMUGGLED, "bare_cr"),
    (req(b"Content-Length: 4", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n" + SMUGGLED),
     "content_length_with_transfer_encoding"),
])
def test_bare_lf_leniency_keeps_chunk_framing_strict(raw, code):
    assert_rejected(raw, code, max_heads=1, lenient_bare_lf=True)


def test_obs_fold_leniency_folds_into_a_rejected_transfer_encoding():
    # "chunked" folded with "identity" is one value "chunked, identity": not final.
    raw = req(b"Transfer-Encoding: chunked", b" , identity", body=b"0\r\n\r\n" + SMUGGLED)
    assert_rejected(raw, "chunked_not_final", lenient_obs_fold=True)


def test_obs_fold_leniency_cannot_start_a_head_with_whitespace():
    raw = b"POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\n\r\n0\r\n\r\n" + SMUGGLED
    assert_rejected(raw, "whitespace_after_start_line", lenient_obs_fold=True)


# ---- controls: the honest versions parse, and carry the "smuggled" bytes as body ----

@pytest.mark.parametrize("raw,body", [
    (req(b"Content-Length: %d" % len(SMUGGLED), body=SMUGGLED), SMUGGLED),
    (req(b"Content-Length: %d" % len(SMUGGLED), b"Content-Length: %d" % len(SMUGGLED), body=SMUGGLED),
     SMUGGLED),
    (req(b"Content-Length: 00%d" % len(SMUGGLED), body=SMUGGLED), SMUGGLED),
    (req(b"Transfer-Encoding: chunked", body=b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n"),
     SMUGGLED),
    (req(b"Transfer-Encoding: CHUNKED", body=b"%X;ext=\"q\\\"d\" ; e2\r\n" % len(SMUGGLED)
         + SMUGGLED + b"\r\n0\r\n\r\n"), SMUGGLED),
    (req(b"Transfer-Encoding: , chunked ,", body=b"0\r\n\r\n"), b""),
    (req(b"Content_Type: x", b"Content-Length: 0"), b""),
])
def test_honest_framing_keeps_the_smuggled_bytes_in_the_body(raw, body):
    for how, pieces in splits(raw):
        events, err, _ = parse_pieces(pieces)
        assert err is None, how
        assert count_heads(events) == 1, how
        got = b"".join(v for k, v in events if k == "data")
        assert got == body, how
        assert events[-1][0] == "end", how
