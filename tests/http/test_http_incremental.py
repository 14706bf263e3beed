"""Incremental equivalence: however a byte stream is cut, the parser says the same thing.

Property (hypothesis): for drawn request pipelines and responses, valid or
mutated (bytes flipped, inserted, deleted to reach the error paths), feeding
the stream in drawn pieces, or one byte at a time, gives the same events
(body pieces joined) and the same error code as feeding it whole.  For valid
input the events are also the message the stream encodes.
"""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowcoro.http import RequestParser, ResponseParser

from http_parser_helpers import parse_pieces
from http_parser_strategies import cuts, mutated, pipelines, responses

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_equivalent(raw, pieces, factory=RequestParser, eof=False, **kw):
    whole = parse_pieces([raw], factory, eof, **kw)[:2]
    assert parse_pieces(pieces, factory, eof, **kw)[:2] == whole
    assert parse_pieces([raw[i:i + 1] for i in range(len(raw))], factory, eof, **kw)[:2] == whole
    return whole


@SETTINGS
@given(st.data(), pipelines())
def test_valid_pipelines(data, case):
    raw, expected = case
    events, err = check_equivalent(raw, data.draw(cuts(raw)))
    assert err is None
    heads = [v for k, v in events if k == "head"]
    assert len(heads) == len(expected)
    for h, e in zip(heads, expected):
        for key in ("method", "target", "http_version", "headers", "keep_alive", "chunked",
                    "content_length"):
            assert h[key] == e[key], key


@SETTINGS
@given(st.data(), pipelines(), st.sampled_from([{}, {"lenient_bare_lf": True},
                                                {"lenient_obs_fold": True},
                                                {"max_headers": 3, "max_header_field": 24}]))
def test_mutated_pipelines(data, case, opts):
    raw = data.draw(mutated(case[0]))
    check_equivalent(raw, data.draw(cuts(raw)), **opts)


def _response_parser(method):
    def make(**kw):
        p = ResponseParser(**kw)
        p.request_sent(method)
        return p
    return make


@SETTINGS
@given(st.data(), responses())
def test_valid_responses(data, case):
    raw, method, expected = case
    events, err = check_equivalent(raw, data.draw(cuts(raw)), _response_parser(method), eof=True)
    assert err is None
    head = events[0][1]
    assert head["status_code"] == expected["status_code"]
    assert head["reason"] == expected["reason"]
    assert head["until_eof"] == expected["until_eof"]
    assert b"".join(v for k, v in events if k == "data") == expected["body"]
    assert events[-1][0] == "end"


@SETTINGS
@given(st.data(), responses())
def test_mutated_responses(data, case):
    raw, method, _ = case
    raw = data.draw(mutated(raw))
    check_equivalent(raw, data.draw(cuts(raw)), _response_parser(method), eof=True)


@SETTINGS
@given(st.binary(max_size=200), st.data())
def test_arbitrary_bytes(raw, data):
    check_equivalent(raw, data.draw(cuts(raw)))
    check_equivalent(raw, data.draw(cuts(raw)), ResponseParser, eof=True)
