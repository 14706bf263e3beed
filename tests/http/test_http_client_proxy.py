"""HttpClient through an HTTP proxy: absolute-form requests for http,
CONNECT tunnels with TLS end to end for https (a small raw proxy in the
test, an aiohttp origin with a trustme certificate)."""
import asyncio
import ssl

import pytest
import trustme
from aiohttp import web

import flowcoro
from flowcoro.errors import ConnectError, InvalidArgumentError
from flowcoro.http import HttpClient

from http_client_helpers import aiohttp_server, run

pytestmark = pytest.mark.timeout(30)


class Proxy:
    """A forward proxy: answers absolute-form requests itself (echoing what it
    got) and pipes CONNECT tunnels; ``auth`` set: 407 without it."""

    def __init__(self, auth=None):
        self.auth = auth
        self.lines = []
        self.tunnels = 0

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.on_conn, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        self.tasks = set()
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def on_conn(self, reader, writer):
        self.tasks.add(asyncio.current_task())
        try:
            while True:
                try:
                    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                except asyncio.IncompleteReadError:
                    return
                line, *fields = head.split("\r\n")
                self.lines.append(line)
                headers = {k.lower(): v.strip() for k, _, v in
                           (f.partition(":") for f in fields if f)}
                if self.auth and headers.get("proxy-authorization") != self.auth:
                    writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                 b"Content-Length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                method, target, _ = line.split(" ")
                if method == "CONNECT":
                    host, _, port = target.rpartition(":")
                    r2, w2 = await asyncio.open_connection(host, int(port))
                    self.tunnels += 1
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    await writer.drain()
                    await asyncio.gather(pipe(reader, w2), pipe(r2, writer))
                    return
                body = f"{line}|{headers.get('host')}".encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass            # a cancelled handler would be logged by asyncio's callback
        finally:
            self.tasks.discard(asyncio.current_task())
            writer.close()


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def test_plain_http_through_proxy(loop):
    async def main():
        async with Proxy() as proxy, HttpClient(proxy=proxy.url) as c:
            r = await c.get("http://example.test:8080/a/b?x=1")
            assert r.text() == "GET http://example.test:8080/a/b?x=1 HTTP/1.1|example.test:8080"
            r = await c.get("http://example.test:8080/again")
            assert r.text().startswith("GET http://example.test:8080/again ")
            assert c.idle_connections() == 1
        async with Proxy(auth="Basic dTpw") as proxy:
            async with HttpClient(proxy=proxy.url.replace("//", "//u:p@")) as c:
                assert (await c.get("http://h/")).status == 200
            async with HttpClient(proxy=proxy.url) as c:
                assert (await c.get("http://h/")).status == 407
    run(loop, main())


def test_https_through_connect_tunnel(loop):
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    app = web.Application()

    async def hello(request):
        return web.Response(text=f"tls {request.secure} {request.host}")

    app.router.add_get("/", hello)

    async def main():
        async with aiohttp_server(app, ssl=server_ctx) as base, Proxy() as proxy:
            url = base.replace("127.0.0.1", "localhost") + "/"
            async with HttpClient(proxy=proxy.url, verify=client_ctx) as c:
                r = await c.get(url)
                assert r.text() == f"tls True {url.split('//')[1].rstrip('/')}"
                assert (await c.get(url)).status == 200          # the tunnel is reused
                assert proxy.tunnels == 1
                assert proxy.lines == [f"CONNECT {url.split('//')[1].rstrip('/')} HTTP/1.1"]
            # A certificate the client does not trust fails through the tunnel too.
            async with HttpClient(proxy=proxy.url) as c:
                with pytest.raises(ConnectError):
                    await c.get(url)
    run(loop, main())


def test_proxy_refusals():
    async def main():
        async with Proxy(auth="Basic x") as proxy, HttpClient(proxy=proxy.url) as c:
            with pytest.raises(ConnectError, match="407"):
                await c.get("https://localhost:1/")
        for bad in ("https://p:1", "socks5://p:1", 5):
            with pytest.raises(InvalidArgumentError):
                HttpClient(proxy=bad)
    flowcoro.run(main())
