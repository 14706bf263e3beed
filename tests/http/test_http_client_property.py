"""Property test: whatever valid responses a server sends, framed however
(Content-Length, chunked with extensions and trailers, read-until-close),
cut into whatever TCP writes, the client returns exactly their status,
fields and bodies, and reuses a connection exactly when both sides allow."""
import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowcoro
from flowcoro.http import HttpClient

from http_client_helpers import RawServer

pytestmark = pytest.mark.timeout(60)

TOKEN = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=8).filter(
    lambda s: s.lower() not in {"content-length", "transfer-encoding", "connection",
                                "content-encoding", "trailer"})
VALUE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=12)


@st.composite
def responses(draw):
    status = draw(st.sampled_from([200, 201, 204, 404, 500]))
    fields = draw(st.lists(st.tuples(TOKEN, VALUE), max_size=4))
    body = b"" if status == 204 else draw(st.binary(max_size=3000))
    framing = "empty" if status == 204 else draw(
        st.sampled_from(["length", "chunked", "close"]))
    close = framing == "close" or draw(st.booleans())
    version = "1.0" if framing == "close" and draw(st.booleans()) else "1.1"
    head = f"HTTP/{version} {status} X\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields)
    if close and version == "1.1":
        head += "Connection: close\r\n"
    if version == "1.0" and not close:
        head += "Connection: keep-alive\r\n"
    trailers = []
    if framing == "length":
        wire = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    elif framing == "chunked":
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        out = bytearray((head + "Transfer-Encoding: chunked\r\n\r\n").encode())
        prev = 0
        for cut in cuts + [len(body)]:
            piece = body[prev:cut]
            prev = cut
            if piece:
                ext = draw(st.sampled_from(["", ";a=1", ';n="q"']))
                out += b"%x%s\r\n%s\r\n" % (len(piece), ext.encode(), piece)
        trailers = draw(st.lists(st.tuples(TOKEN, VALUE), max_size=2))
        out += b"0\r\n" + "".join(f"{n}: {v}\r\n" for n, v in trailers).encode() + b"\r\n"
        wire = bytes(out)
    else:
        wire = (head + "\r\n").encode() + body
    splits = sorted(draw(st.lists(st.integers(1, max(1, len(wire) - 1)), max_size=5)))
    return dict(status=status, fields=[(n.lower(), v) for n, v in fields], body=body,
                wire=wire, splits=splits, reusable=not close,
                trailers=[(n.lower(), v) for n, v in trailers])


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(responses(), min_size=1, max_size=4), st.booleans())
def test_any_valid_response_sequence(script, stream):
    queue = list(script)

    async def handler(reader, writer, srv):
        while True:
            got = await srv.read_request(reader)
            if got is None or not queue:
                return
            r = queue.pop(0)
            prev = 0
            for cut in r["splits"] + [len(r["wire"])]:
                if cut > prev:
                    writer.write(r["wire"][prev:cut])
                    await writer.drain()
                    await asyncio.sleep(0)
                    prev = cut
            if not r["reusable"]:
                return

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url, decompress=False) as c:
            expected_conns = 1
            for i, r in enumerate(script):
                if stream:
                    async with c.stream("GET", "/") as resp:
                        body = b"".join([p async for p in resp.iter_bytes()])
                else:
                    resp = await c.get("/")
                    body = resp.content
                assert resp.status == r["status"]
                assert body == r["body"]
                got_fields = [(n, v) for n, v in resp.headers.items()
                              if n not in ("content-length", "transfer-encoding",
                                           "connection")]
                assert got_fields == r["fields"]
                assert resp.trailers.items() == r["trailers"]
                assert c.idle_connections() == (1 if r["reusable"] else 0)
                if i + 1 < len(script) and not r["reusable"]:
                    expected_conns += 1
            assert srv.connections == expected_conns

    flowcoro.run(main())
