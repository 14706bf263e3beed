"""HttpClient against scripted raw asyncio servers: framing, connection reuse,
stale connections, 100-continue, malformed responses and timeouts."""
import asyncio
import socket
import struct

import pytest

import flowcoro
from flowcoro.errors import (
    ConnectError,
    ConnectTimeout,
    HttpClientError,
    HttpConnectionError,
    HttpParseError,
    ReadTimeout,
    RemoteProtocolError,
    TotalTimeout,
    WriteTimeout,
)
from flowcoro.http import HttpClient, Timeout

from http_client_helpers import RawServer, ok, run

pytestmark = pytest.mark.timeout(30)


async def serve_forever(reply):
    """A handler answering every request on a connection with ``reply(line, headers, body)``."""
    async def handler(reader, writer, srv):
        while True:
            req = await srv.read_request(reader)
            if req is None:
                return
            out = reply(*req)
            if out is None:
                return
            writer.write(out)
            await writer.drain()
    return handler


def test_chunked_response_with_trailers(loop):
    async def handler(reader, writer, srv):
        while await srv.read_request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n"
                         b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Sum: 42\r\n"
                         b"X-Other: a\r\n\r\n")
            await writer.drain()

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url) as c:
            for _ in range(2):
                r = await c.get("/")
                assert r.content == b"hello world"
                assert r.trailers["x-sum"] == "42" and r.trailers["X-OTHER"] == "a"
            assert srv.connections == 1 and c.idle_connections() == 1
    run(loop, main())


def test_connection_close_is_not_pooled(loop):
    async def handler(reader, writer, srv):
        await srv.read_request(reader)
        writer.write(ok(b"bye", "Connection: close\r\n"))
        await writer.drain()

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url) as c:
            for _ in range(3):
                assert (await c.get("/")).content == b"bye"
                assert c.idle_connections() == 0
            assert srv.connections == 3
            # A request that asks to close is not pooled either.
            assert (await c.get("/", headers={"Connection": "close"})).content == b"bye"
            assert c.idle_connections() == 0
            assert "connection: close" in srv.requests[-1].lower()
    run(loop, main())


def test_http10_read_until_close(loop):
    async def handler(reader, writer, srv):
        await srv.read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        for i in range(3):
            writer.write(b"part%d;" % i)
            await writer.drain()
            await asyncio.sleep(0.005)
        writer.close()

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url) as c:
            r = await c.get("/")
            assert r.http_version == "1.0"
            assert r.content == b"part0;part1;part2;"
            assert c.idle_connections() == 0
            async with c.stream("GET", "/") as r:
                got = b"".join([p async for p in r.iter_bytes()])
            assert got == b"part0;part1;part2;"
    run(loop, main())


def test_server_closes_pooled_connection(loop):
    # The server answers one request per connection but keeps quiet about it
    # (no Connection: close), closing right after.
    async def handler(reader, writer, srv):
        await srv.read_request(reader)
        writer.write(ok(b"one"))
        await writer.drain()

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url) as c:
            assert (await c.get("/")).content == b"one"
            await asyncio.sleep(0.05)         # the FIN reaches the idle connection
            assert (await c.get("/")).content == b"one"
            assert srv.connections == 2
    run(loop, main())


def test_stale_connection_retried_once_for_idempotent_only(loop):
    # Every connection answers its first request and silently drops the second
    # one (closing without a byte): the race where the server closes an idle
    # connection just as the client reuses it.
    async def handler(reader, writer, srv):
        await srv.read_request(reader)
        writer.write(ok(b"fresh"))
        await writer.drain()
        await srv.read_head(reader)
        writer.transport.abort()

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url) as c:
            assert (await c.get("/")).content == b"fresh"
            assert (await c.get("/")).content == b"fresh"      # retried on a new one
            assert srv.connections == 2
            assert (await c.put("/", data=b"x")).content == b"fresh"   # PUT is idempotent
            assert srv.connections == 3
            with pytest.raises(HttpConnectionError):
                await c.post("/", data=b"x")                   # POST is never resent
            assert srv.connections == 3
            # A one-shot stream body is not resent either, whatever the method.
            assert (await c.get("/")).content == b"fresh"
            with pytest.raises(HttpConnectionError):
                await c.put("/", data=iter([b"x"]))
    run(loop, main())


def test_fresh_connection_failure_is_not_retried():
    async def handler(reader, writer, srv):
        await srv.read_head(reader)
        writer.transport.abort()

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url) as c:
            with pytest.raises(HttpConnectionError) as ei:
                await c.get("/")
            assert isinstance(ei.value, ConnectionError)
            assert srv.connections == 1
    flowcoro.run(main())


def test_connection_lost_mid_body():
    async def handler(reader, writer, srv):
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url) as c:
            with pytest.raises(HttpConnectionError, match="before the response was complete"):
                await c.get("/")
            async with c.stream("GET", "/") as r:
                with pytest.raises(HttpConnectionError):
                    async for _ in r.iter_bytes():
                        pass
            assert c.idle_connections() == 0
    flowcoro.run(main())


@pytest.mark.parametrize("response, code", [
    (b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok", "bare_lf"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
     "duplicate_content_length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
     "content_length_with_transfer_encoding"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid_chunk_size"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "invalid_status"),
    (b"SMTP ready\r\n\r\n", "invalid_version"),
    (b"HTTP/1.1 200 OK\r\nBad@Name: x\r\n\r\n", "invalid_header_name"),
    (b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", "obs_fold"),
])
def test_malformed_response(response, code):
    async def handler(reader, writer, srv):
        await srv.read_request(reader)
        writer.write(response)
        await writer.drain()
        await reader.read()

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url) as c:
            with pytest.raises(RemoteProtocolError) as ei:
                await c.get("/")
            assert ei.value.code == code
            assert isinstance(ei.value, HttpParseError) and isinstance(ei.value, HttpClientError)
            assert c.idle_connections() == 0
    flowcoro.run(main())


def test_extra_bytes_after_response_drop_connection(loop):
    async def handler(reader, writer, srv):
        while await srv.read_request(reader):
            writer.write(ok(b"ab") + b"HTTP/1.1 200 OK\r\n")     # junk after the response
            await writer.drain()

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url) as c:
            assert (await c.get("/")).content == b"ab"
            assert (await c.get("/")).content == b"ab"
            assert srv.connections == 2
    run(loop, main())


def test_unasked_bytes_on_idle_connection_drop_it():
    async def handler(reader, writer, srv):
        await srv.read_request(reader)
        writer.write(ok(b"first"))
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url) as c:
            assert (await c.get("/")).content == b"first"
            await asyncio.sleep(0.3)
            assert (await c.get("/")).content == b"first"     # not the 408
            assert srv.connections == 2
    flowcoro.run(main())


def test_response_limits():
    async def handler(reader, writer, srv):
        while await srv.read_request(reader):
            writer.write(ok(b"x" * 2000, "X-Big: " + "y" * 500 + "\r\n"))
            await writer.drain()

    async def main():
        async with RawServer(handler) as srv:
            async with HttpClient(srv.url, response_limits={"max_body": 1000}) as c:
                with pytest.raises(RemoteProtocolError) as ei:
                    await c.get("/")
                assert ei.value.code == "body_too_large"
            async with HttpClient(srv.url, response_limits={"max_header_field": 100}) as c:
                with pytest.raises(RemoteProtocolError) as ei:
                    await c.get("/")
                assert ei.value.code == "header_field_too_large"
    flowcoro.run(main())


def test_read_timeout(loop):
    async def handler(reader, writer, srv):
        await srv.read_request(reader)
        await asyncio.sleep(10)

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url, timeout=Timeout(read=0.1)) as c:
            with pytest.raises(ReadTimeout) as ei:
                await c.get("/")
            assert isinstance(ei.value, TimeoutError)
            assert c.idle_connections() == 0
    run(loop, main())


def test_read_timeout_between_body_pieces_and_total_timeout(loop):
    # The body trickles: each piece comes well within the read timeout, but
    # the whole takes longer than the total one.
    async def handler(reader, writer, srv):
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.02)

    async def main():
        async with RawServer(handler) as srv:
            async with HttpClient(srv.url, timeout=Timeout(read=1, total=0.2)) as c:
                with pytest.raises(TotalTimeout):
                    await c.get("/")
            # A per-request number is a total timeout too.
            async with HttpClient(srv.url) as c:
                with pytest.raises(TotalTimeout):
                    await c.get("/", timeout=0.15)
                async with c.stream("GET", "/", timeout=Timeout(read=0.01)) as r:
                    with pytest.raises(ReadTimeout):
                        await r.read()
    run(loop, main())


def test_total_timeout_covers_the_wait_for_the_head():
    async def handler(reader, writer, srv):
        await srv.read_request(reader)
        await asyncio.sleep(10)

    async def main():
        async with RawServer(handler) as srv:
            async with HttpClient(srv.url, timeout=Timeout(read=5, total=0.1)) as c:
                with pytest.raises(TotalTimeout):
                    await c.get("/")
    flowcoro.run(main())


def test_connect_errors():
    async def main():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()                           # nothing listens there now
        async with HttpClient() as c:
            with pytest.raises(ConnectError) as ei:
                await c.get(f"http://127.0.0.1:{port}/")
            assert isinstance(ei.value, ConnectionError)
            assert isinstance(ei.value.__cause__, OSError)
    flowcoro.run(main())


def test_connect_timeout(monkeypatch):
    # A connect that never completes (as to a black-holed address), on the
    # stdlib loop whose create_connection can be replaced.
    async def never(*args, **kwargs):
        await asyncio.sleep(10)

    async def main():
        loop = asyncio.get_running_loop()
        monkeypatch.setattr(loop, "create_connection", never)
        async with HttpClient(timeout=Timeout(connect=0.05)) as c:
            with pytest.raises(ConnectTimeout):
                await c.get("http://192.0.2.1/")
        async with HttpClient(timeout=Timeout(connect=5, total=0.05)) as c:
            with pytest.raises(TotalTimeout):
                await c.get("http://192.0.2.1/")
    asyncio.run(main())


def test_expect_100_continue(loop):
    bodies = []

    async def handler(reader, writer, srv):
        while True:
            got = await srv.read_head(reader)
            if got is None:
                return
            line, headers = got
            if line.startswith("PUT /deny"):
                # Final answer without reading the body.
                writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                continue
            if line.startswith("PUT /quiet"):
                # An old server: never sends 100, just waits for the body.
                pass
            else:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await writer.drain()
            bodies.append(await reader.readexactly(int(headers["content-length"])))
            writer.write(ok(b"stored"))
            await writer.drain()

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url) as c:
            h = {"Expect": "100-continue"}
            r = await c.put("/up", data=b"payload", headers=h)
            assert r.content == b"stored" and bodies == [b"payload"]
            assert c.idle_connections() == 1
            r = await c.put("/deny", data=b"secret", headers=h)
            assert r.status == 401 and bodies == [b"payload"]
            assert c.idle_connections() == 0     # the body was never sent: not reused
            r = await c.put("/quiet", data=b"late", headers=h)
            assert r.content == b"stored" and bodies[-1] == b"late"
    run(loop, main())


def test_interim_responses_are_skipped():
    async def handler(reader, writer, srv):
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + ok(b"final"))
        await writer.drain()
        await reader.read()

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url) as c:
            r = await c.get("/")
            assert r.status == 200 and r.content == b"final"
    flowcoro.run(main())


def test_early_response_during_upload():
    # The server refuses the upload after its head and closes; the client stops
    # sending and reports the answer.
    async def handler(reader, writer, srv):
        await srv.read_head(reader)
        writer.write(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\n"
                     b"Connection: close\r\n\r\nbig")
        await writer.drain()
        await asyncio.sleep(0.05)

    async def main():
        async def body():
            for _ in range(50):
                yield b"z" * 1024
                await asyncio.sleep(0.005)

        async with RawServer(handler) as srv, HttpClient(srv.url) as c:
            r = await c.post("/", data=body())
            assert r.status == 413 and r.content == b"big"
            assert c.idle_connections() == 0
    flowcoro.run(main())


def test_write_timeout():
    # The server never reads: the upload fills the socket buffers.
    async def handler(reader, writer, srv):
        await asyncio.sleep(10)

    async def main():
        async with RawServer(handler) as srv:
            async with HttpClient(srv.url, timeout=Timeout(write=0.2)) as c:
                async def body():
                    while True:
                        yield b"w" * 65536
                with pytest.raises(WriteTimeout):
                    await c.post("/", data=body())
    flowcoro.run(main())


def test_cancellation_drops_the_connection(loop):
    async def handler(reader, writer, srv):
        while await srv.read_request(reader):
            await asyncio.sleep(0.2)
            writer.write(ok())
            await writer.drain()

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url, max_connections_per_host=1) as c:
            t = asyncio.ensure_future(c.get("/"))
            await asyncio.sleep(0.05)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            # The slot was freed and the half-used connection not reused.
            assert (await c.get("/")).content == b"ok"
            assert srv.connections == 2
    run(loop, main())


def test_stream_body_wrong_length_and_types():
    async def handler(reader, writer, srv):
        await srv.read_head(reader)
        await reader.read()

    async def main():
        from flowcoro.errors import InvalidRequestError
        async with RawServer(handler) as srv, HttpClient(srv.url) as c:
            with pytest.raises(InvalidRequestError, match="longer"):
                await c.post("/", data=iter([b"abc", b"def"]), headers={"Content-Length": "4"})
            with pytest.raises(InvalidRequestError, match="ended after"):
                await c.post("/", data=iter([b"abc"]), headers={"Content-Length": "4"})
            with pytest.raises(InvalidRequestError, match="yields bytes"):
                await c.post("/", data=iter([1]))
            with pytest.raises(InvalidRequestError, match="Content-Length"):
                await c.post("/", data=iter([b"a"]), headers={"Content-Length": "-1"})
            assert c.idle_connections() == 0
    flowcoro.run(main())


def test_response_trickled_one_byte_at_a_time(loop):
    # Every byte of a chunked response with trailers in its own TCP segment:
    # the client's reading loop meets every split of head, sizes and data.
    response = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
                b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: done\r\n\r\n")

    async def handler(reader, writer, srv):
        while await srv.read_request(reader):
            for i in range(len(response)):
                writer.write(response[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0)

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url) as c:
            for _ in range(2):
                r = await c.get("/")
                assert r.content == b"abc0123456789abcdef"
                assert r.headers["x-a"] == "1" and r.trailers["x-t"] == "done"
            async with c.stream("GET", "/") as r:
                assert b"".join([p async for p in r.iter_bytes()]) == b"abc0123456789abcdef"
            assert srv.connections == 1
    run(loop, main())


def test_iter_text_and_lines():
    # "é" (2 bytes in UTF-8) and CRLF line ends split across chunks.
    body = "line one\r\nsecond é line\nthird".encode()
    pieces = [body[:5], body[5:9], body[9:10], body[10:18], body[18:19], body[19:]]

    async def handler(reader, writer, srv):
        while await srv.read_request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                         b"Content-Type: text/plain; charset=utf-8\r\n\r\n")
            for p in pieces:
                writer.write(b"%x\r\n%s\r\n" % (len(p), p))
                await writer.drain()
                await asyncio.sleep(0.002)
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url) as c:
            async with c.stream("GET", "/") as r:
                assert [ln async for ln in r.iter_lines()] == ["line one", "second é line",
                                                               "third"]
            async with c.stream("GET", "/") as r:
                text = "".join([t async for t in r.iter_text()])
            assert text == body.decode()
            async with c.stream("GET", "/") as r:
                assert "".join([t async for t in r.iter_text("no-such-codec")]) == body.decode()
    flowcoro.run(main())


def test_ipv6_loopback():
    async def main():
        async def on_conn(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(ok(b"v6"))
            await writer.drain()
            writer.close()
        try:
            server = await asyncio.start_server(on_conn, "::1", 0)
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback: {exc}")
        port = server.sockets[0].getsockname()[1]
        try:
            async with HttpClient() as c:
                r = await c.get(f"http://[::1]:{port}/")
                assert r.content == b"v6"
        finally:
            server.close()
            await server.wait_closed()
    flowcoro.run(main())


def test_reset_cuts_a_read_until_close_body():
    # An HTTP/1.0 body ends at the close; a reset is not a close: error, not
    # a silently truncated body.
    async def handler(reader, writer, srv):
        await srv.read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(0.05)
        # SO_LINGER 0: the close sends RST instead of FIN.
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def main():
        async with RawServer(handler) as srv, HttpClient(srv.url) as c:
            with pytest.raises(HttpConnectionError, match="connection lost"):
                await c.get("/")
    flowcoro.run(main())


def test_answer_while_the_upload_is_stuck():
    # The server answers 413 after the head and stops reading (without
    # closing): the client, blocked on a full socket buffer, takes the answer
    # instead of waiting for the write timeout, and does not reuse the
    # connection (part of the body is still unsent).
    async def handler(reader, writer, srv):
        await srv.read_head(reader)
        writer.write(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\n\r\nnope")
        await writer.drain()
        await asyncio.sleep(10)

    async def main():
        async with RawServer(handler) as srv, \
                HttpClient(srv.url, timeout=Timeout(write=10, total=8)) as c:
            r = await c.post("/", data=b"b" * (32 * 1024 * 1024))
            assert r.status == 413 and r.content == b"nope"
            assert c.idle_connections() == 0

            async def body():
                while True:
                    yield b"s" * 65536
            r = await c.post("/", data=body())
            assert r.status == 413 and c.idle_connections() == 0
    flowcoro.run(main())
