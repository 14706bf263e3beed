"""Atheris fuzz target for the WebSocket framing core (csrc/ws via
flowcoro._core.wsframe).

    tests/fuzz/run_fuzz_ws.sh 600                  # see that script
    python tests/fuzz/fuzz_wsframe.py -max_total_time=60 tests/fuzz/corpus/wsframe

Input format (so seeds stay readable): byte 0 picks the parser's options,
byte 1 seeds where the stream is cut, the rest is the byte stream.

  byte 0: bit 0   client side (frames must be unmasked), else server side
          bit 1   permessage-deflate negotiated (RSV1 allowed; inflating)
          bit 2   no context takeover for the inflater
          bit 3   small limits (max_message 300, max_frame 200)

What is checked on every input, beyond "no crash, no sanitizer report":

* incremental equivalence: the stream fed whole, cut at the drawn offsets
  and one byte at a time gives the same events and the same error;
* every exception is a WebSocketProtocolError with a close code of 1002,
  1007 or 1009 (the subclass matching it) and an offset inside the stream;
* events are sane: messages are str/bytes within the limit, text is what
  Python's strict UTF-8 decoder accepts, ping/pong payloads are at most 125
  bytes, a close code is one that may be sent (or 1005) and the close is
  the last event;
* round trip: the events rebuilt with FrameBuilder (the other side's role)
  parse back to the same events;
* masking matches a pure-Python XOR on the stream.
"""
import sys

FrameBuilder = FrameParser = Ping = Pong = Close = mask = close_code_valid = None
WebSocketProtocolError = WebSocketDataError = WebSocketTooBigError = None


def _import():
    """Bind the flowcoro names (after atheris.Setup when fuzzing: see main)."""
    global FrameBuilder, FrameParser, Ping, Pong, Close, mask, close_code_valid
    global WebSocketProtocolError, WebSocketDataError, WebSocketTooBigError
    from flowcoro.errors import WebSocketDataError, WebSocketProtocolError, WebSocketTooBigError
    from flowcoro.websocket import (Close, FrameBuilder, FrameParser, Ping, Pong,
                                    close_code_valid, mask)


def make(opts):
    kw = {"client": bool(opts & 1)}
    if opts & 2:
        kw["deflate"] = (15, bool(opts & 4))
    if opts & 8:
        kw.update(max_message=300, max_frame=200)
    return FrameParser(**kw)


def run(opts, pieces, total):
    p = make(opts)
    out, err = [], None
    try:
        for piece in pieces:
            out += p.feed(piece)
    except WebSocketProtocolError as e:
        cls = {1002: WebSocketProtocolError, 1007: WebSocketDataError,
               1009: WebSocketTooBigError}.get(e.close_code)
        assert cls is type(e), (e.close_code, type(e))
        assert 0 <= e.offset <= total, (e.offset, total)
        out += e.events
        err = (e.code, e.close_code)
    return out, err


def check_events(opts, events):
    limit = 300 if opts & 8 else 1 << 20
    for i, ev in enumerate(events):
        t = type(ev)
        if t is str:
            assert len(ev.encode("utf-8")) <= limit
        elif t is bytes:
            assert len(ev) <= limit
        elif t in (Ping, Pong):
            assert len(ev.payload) <= 125
        elif t is Close:
            assert ev.code == 1005 or close_code_valid(ev.code), ev.code
            assert len(ev.reason.encode("utf-8")) <= 123
            assert i == len(events) - 1, "events after a close"
        else:
            raise AssertionError(f"unknown event {ev!r}")


def rebuild(opts, events):
    """The events as frames from the other side (no compression)."""
    b = FrameBuilder(client=not (opts & 1))
    out = []
    for ev in events:
        t = type(ev)
        if t is str:
            out.append(b.text(ev))
        elif t is bytes:
            out.append(b.binary(ev))
        elif t is Ping:
            out.append(b.ping(ev.payload))
        elif t is Pong:
            out.append(b.pong(ev.payload))
        else:
            out.append(b.close(None if ev.code == 1005 else ev.code, ev.reason))
    return b"".join(out)


def check(data):
    if len(data) < 2:
        return
    opts, seed, raw = data[0], data[1], data[2:]
    whole = run(opts, [raw], len(raw))
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
    assert run(opts, pieces, len(raw)) == whole, "split changed the result"
    if len(raw) <= 512:
        assert run(opts, [raw[i:i + 1] for i in range(len(raw))], len(raw)) == whole, \
            "byte-at-a-time changed the result"
    events, err = whole
    check_events(opts, events)
    again = run(opts & ~8, [rebuild(opts, events)], 0)
    assert again[0] == events and again[1] is None, "round trip changed the events"
    key = (data + b"\0\0\0\0")[:4]
    ref = bytes(b ^ key[i % 4] for i, b in enumerate(raw))
    assert mask(raw, key) == ref


def TestOneInput(data):  # noqa: N802 - atheris' name
    check(data)


def main():
    import os

    import atheris
    _import()
    # Python-level coverage of this target and of flowcoro.websocket (the C
    # core is only coverage-guided in the clang build of run_fuzz_ws.sh).
    atheris.instrument_func(check)
    atheris.instrument_func(run)
    atheris.instrument_func(check_events)
    argv = [f"{sys.executable} {os.path.abspath(__file__)}"] + sys.argv[1:]
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
else:
    _import()
