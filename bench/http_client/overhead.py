"""The HTTP client's own cost per request, without sockets.

A fake transport answers every request write with a canned 13-byte
response on the next loop iteration, so what is measured is the client's
Python work (URL cache, request encoding, pool, parser feed, response
object) plus the loop's callback dispatch: process CPU time per GET on
FlowCoro's loop and on asyncio's.

Usage::

    .venv/bin/python bench/http_client/overhead.py [--n 50000]
"""
import argparse
import asyncio
import time

import flowcoro
from flowcoro.http import HttpClient

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
            b"Hello, World!")


class AnsweringTransport(asyncio.Transport):
    """Answers each write with RESPONSE, as a server on the other end would."""

    def __init__(self, protocol, loop):
        super().__init__()
        self._protocol = protocol
        self._loop = loop
        self._closing = False

    def write(self, data):
        self._loop.call_soon(self._protocol.data_received, RESPONSE)

    def is_closing(self):
        return self._closing

    def close(self):
        self._closing = True

    abort = close

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass


async def measure(n):
    loop = asyncio.get_running_loop()
    client = HttpClient("http://bench.invalid")

    async def open_fake(conn, target):
        conn.connection_made(AnsweringTransport(conn, loop))

    client._open = open_fake          # the one seam: no socket is opened
    async with client:
        for _ in range(1000):
            await client.get("/")
        t0 = time.process_time()
        for _ in range(n):
            r = await client.get("/")
        cpu = time.process_time() - t0
        assert r.content == b"Hello, World!"
    return cpu / n * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50000)
    args = ap.parse_args()
    print(f"FlowCoro loop: {flowcoro.run(measure(args.n)):.2f} µs CPU per GET")
    print(f"asyncio loop:  {asyncio.run(measure(args.n)):.2f} µs CPU per GET")


if __name__ == "__main__":
    main()
