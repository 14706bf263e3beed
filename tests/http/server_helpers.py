"""Helpers for the HttpServer tests: run an app, talk raw HTTP to it."""
import asyncio

from flowcoro.http import EndOfMessage, ResponseHead, ResponseParser

import helpers

#: The server runs on FlowCoro (epoll) and on stdlib asyncio (the reference).
KINDS = ("epoll", "asyncio")


def serve(kind, app, client, **listen):
    """Run ``app`` on a loop of ``kind``, await ``client(port)``, stop; return its value."""
    async def main():
        await app.listen("127.0.0.1", 0, **listen)
        try:
            return await asyncio.wait_for(client(app.port), 30)
        finally:
            await app.stop(grace=1.0)
    return helpers.run_with(kind, main())


async def exchange(port, data, *, pieces=None, delay=0.0, timeout=10.0, until_close=True,
                   want=None):
    """Send ``data`` (or ``pieces`` one by one with ``delay`` between them) and
    read until the server closes (or until ``want`` responses are complete)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for piece in (pieces if pieces is not None else [data]):
            writer.write(piece)
            await writer.drain()
            if delay:
                await asyncio.sleep(delay)
        out = b""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            left = end - loop.time()
            if left <= 0:
                raise TimeoutError(f"no close after {timeout}s; got {out!r}")
            chunk = await asyncio.wait_for(reader.read(65536), left)
            if not chunk:
                return out
            out += chunk
            if want is not None and len(responses(out, strict=False)) >= want:
                return out
    finally:
        writer.close()


def responses(data, methods=None, strict=True):
    """Parse the bytes of a connection into [(ResponseHead, body bytes)]."""
    p = ResponseParser()
    n = len(methods) if methods else data.count(b"HTTP/1.")
    for i in range(n):
        p.request_sent((methods[i] if methods else "GET").encode())
    out = []
    head, body = None, []
    try:
        events = p.feed(data) + p.feed_eof()
    except Exception:
        if strict:
            raise
        return out
    for ev in events:
        if type(ev) is ResponseHead:
            head, body = ev, []
        elif type(ev) is EndOfMessage:
            out.append((head, b"".join(body)))
        else:
            body.append(ev)
    return out


def header(head, name):
    """The first value of header ``name`` in a ResponseHead, or None."""
    for k, v in head.headers:
        if k.lower() == name.encode():
            return v.decode("latin-1")
    return None


def get(path=b"/", extra=b"", version=b"HTTP/1.1"):
    """Bytes of a GET request."""
    return b"GET " + path + b" " + version + b"\r\nHost: t\r\n" + extra + b"\r\n"
