"""Content-Encoding: gzip and deflate bodies decoded (read and streamed),
errors typed, the decoded size bounded, unknown codings left alone."""
import gzip
import zlib

import pytest
from aiohttp import web

import flowcoro
from flowcoro.errors import RemoteProtocolError
from flowcoro.http import HttpClient

from http_client_helpers import RawServer, aiohttp_server, run

pytestmark = pytest.mark.timeout(30)

TEXT = ("The quick brown fox jumps over the lazy dog. " * 2000).encode()


def encoded_server(bodies):
    """A raw server answering ``/<name>`` with ``bodies[name] = (coding, bytes)``, chunked."""
    async def handler(reader, writer, srv):
        while True:
            req = await srv.read_request(reader)
            if req is None:
                return
            coding, body = bodies[req[0].split()[1].lstrip("/")]
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Encoding: {coding}\r\n"
                         f"Transfer-Encoding: chunked\r\n\r\n".encode())
            for i in range(0, len(body), 1000):
                piece = body[i:i + 1000]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    return RawServer(handler)


def test_aiohttp_compressed_responses(loop):
    app = web.Application()

    async def big(request):
        resp = web.Response(body=TEXT)
        resp.enable_compression()
        return resp

    app.router.add_get("/", big)

    async def main():
        async with aiohttp_server(app) as base, HttpClient(base) as c:
            r = await c.get("/")
            assert r.headers["content-encoding"] in ("gzip", "deflate")
            assert r.content == TEXT
            async with c.stream("GET", "/") as r:
                assert b"".join([p async for p in r.iter_bytes(chunk_size=7000)]) == TEXT
            assert c.idle_connections() == 1
    run(loop, main())


def test_codings_and_errors():
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    raw_deflate = raw.compress(TEXT) + raw.flush()
    bodies = {
        "gzip": ("gzip", gzip.compress(TEXT)),
        "xgzip": ("x-gzip", gzip.compress(TEXT)),
        "deflate": ("deflate", zlib.compress(TEXT)),
        "rawdeflate": ("deflate", raw_deflate),
        "identity": ("identity", TEXT),
        "br": ("br", b"not really brotli"),
        "two": ("gzip, gzip", gzip.compress(gzip.compress(TEXT))),
        "bad": ("gzip", b"\x1f\x8b\x08\x00garbage" * 10),
        "truncated": ("gzip", gzip.compress(TEXT)[:-30]),
        "empty": ("gzip", b""),
    }

    async def main():
        async with encoded_server(bodies) as srv, HttpClient(srv.url) as c:
            for name in ("gzip", "xgzip", "deflate", "rawdeflate", "identity"):
                assert (await c.get("/" + name)).content == TEXT, name
                async with c.stream("GET", "/" + name) as r:
                    assert b"".join([p async for p in r.iter_bytes()]) == TEXT, name
            # Codings not decoded: the body as received.
            assert (await c.get("/br")).content == b"not really brotli"
            assert (await c.get("/two")).content == bodies["two"][1]
            assert (await c.get("/empty")).content == b""
            for name in ("bad", "truncated"):
                with pytest.raises(RemoteProtocolError) as ei:
                    await c.get("/" + name)
                assert ei.value.code == "content_decoding_error"
            async with c.stream("GET", "/truncated") as r:
                with pytest.raises(RemoteProtocolError):
                    async for _ in r.iter_bytes():
                        pass
        async with encoded_server(bodies) as srv, HttpClient(srv.url, decompress=False) as c:
            r = await c.get("/gzip")
            assert r.content == bodies["gzip"][1]
            assert "accept-encoding" not in srv.requests[-1].lower()
    flowcoro.run(main())


def test_decoded_size_is_bounded():
    bomb = gzip.compress(b"\0" * (4 * 1024 * 1024))         # ~4 KiB on the wire
    async def main():
        async with encoded_server({"bomb": ("gzip", bomb)}) as srv:
            async with HttpClient(srv.url, response_limits={"max_body": 1024 * 1024}) as c:
                with pytest.raises(RemoteProtocolError) as ei:
                    await c.get("/bomb")
                assert ei.value.code == "body_too_large"
    flowcoro.run(main())
