"""Helpers shared by the HTTP parser tests (tests/http/test_http_*.py).

A parse is summarised as a plain value so that feeding the same bytes in
different pieces can be compared with ``==``: heads become dicts, adjacent
body pieces are joined, and an error becomes ``("error", code)``.
"""
from flowcoro.http import (EndOfMessage, HttpParseError, RequestHead, RequestParser,
                           ResponseHead, ResponseParser)


def head_dict(ev):
    """A head event as a dict of its attributes."""
    if type(ev) is RequestHead:
        return dict(method=ev.method, target=ev.target, target_form=ev.target_form,
                    http_version=ev.http_version, headers=ev.headers, keep_alive=ev.keep_alive,
                    chunked=ev.chunked, content_length=ev.content_length,
                    expect_continue=ev.expect_continue, upgrade=ev.upgrade)
    return dict(status_code=ev.status_code, reason=ev.reason, http_version=ev.http_version,
                headers=ev.headers, keep_alive=ev.keep_alive, chunked=ev.chunked,
                content_length=ev.content_length, until_eof=ev.until_eof)


def normalize(events):
    """Events as comparable values, with adjacent body pieces joined."""
    out = []
    for ev in events:
        if type(ev) is bytes:
            if not ev:
                raise AssertionError("empty body event")
            if out and out[-1][0] == "data":
                out[-1] = ("data", out[-1][1] + ev)
            else:
                out.append(("data", ev))
        elif type(ev) is EndOfMessage:
            out.append(("end", ev.trailers))
        elif type(ev) in (RequestHead, ResponseHead):
            out.append(("head", head_dict(ev)))
        else:
            raise AssertionError(f"unexpected event {ev!r}")
    return out


def parse_pieces(pieces, factory=RequestParser, eof=False, **kw):
    """Feed pieces to a new parser; returns (normalized events, error code or None, parser)."""
    p = factory(**kw)
    events = []
    err = None
    try:
        for piece in pieces:
            events += p.feed(piece)
        if eof:
            events += p.feed_eof()
    except HttpParseError as e:
        events += e.events
        err = e.code
    return normalize(events), err, p


def splits(raw, every_offset=True):
    """The ways we deliver one input: whole, one byte at a time, split at every offset."""
    yield "whole", [raw]
    yield "bytewise", [raw[i:i + 1] for i in range(len(raw))]
    if every_offset:
        for i in range(1, len(raw)):
            yield f"split@{i}", [raw[:i], raw[i:]]


def count_heads(events):
    """How many messages the parser started (heads it returned)."""
    return sum(1 for kind, _ in events if kind == "head")


__all__ = ["head_dict", "normalize", "parse_pieces", "splits", "count_heads",
           "RequestParser", "ResponseParser"]
