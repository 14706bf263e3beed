"""Servers for the HTTP client tests: aiohttp's (a real third-party server)
and raw asyncio servers scripted per test for the edge cases a well-behaved
server never produces."""
import asyncio
import contextlib

from aiohttp import web


@contextlib.asynccontextmanager
async def aiohttp_server(app, ssl=None):
    """Serve ``app`` on 127.0.0.1, a free port; yields the base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    scheme = "https" if ssl is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class RawServer:
    """An asyncio server whose every connection runs ``handler(reader, writer, server)``.

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        connections: how many connections were accepted.
        requests: the raw request heads read with :meth:`read_head`.
    """

    def __init__(self, handler):
        self.handler = handler
        self.connections = 0
        self.requests = []
        self.server = None
        self.url = None
        self.tasks = set()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._on_conn, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    async def _on_conn(self, reader, writer):
        self.connections += 1
        self.tasks.add(asyncio.current_task())
        try:
            await self.handler(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Stopped by __aexit__: end normally (a cancelled handler task is
            # logged as an error by asyncio's stream callback).
            pass
        finally:
            self.tasks.discard(asyncio.current_task())
            writer.close()

    async def read_head(self, reader):
        """Read one request head; returns (head text, headers dict lowercased) or None at EOF."""
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        text = raw.decode("latin-1")
        self.requests.append(text)
        lines = text.split("\r\n")
        headers = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        return lines[0], headers

    async def read_request(self, reader):
        """Read a whole request (Content-Length or chunked body); None at EOF.

        Returns (request line, headers, body bytes).
        """
        got = await self.read_head(reader)
        if got is None:
            return None
        line, headers = got
        body = b""
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(parts)
        return line, headers, body


def ok(body=b"ok", extra=""):
    """A keep-alive 200 response with ``body``."""
    return (f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def run(loop, coro):
    """Run ``coro`` on the test's loop."""
    return loop.run_until_complete(coro)
