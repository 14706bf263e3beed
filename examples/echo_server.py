"""A TCP echo server on FlowCoro with the asyncio Protocol API, plus a client.

    python examples/echo_server.py              # serve on 127.0.0.1:8766 until Ctrl-C
    python examples/echo_server.py --port 0 --selftest   # start, echo 3 lines, exit

Protocols are the fastest path on FlowCoro: data_received() is called
straight from the C transport, and write() tries send(2) at once.
"""
import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import flowcoro  # noqa: E402


class Echo(asyncio.Protocol):
    """Write back every byte received; close on EOF."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return False            # close our side too


async def client(host, port, lines):
    """Send ``lines`` with the streams API and return what came back."""
    reader, writer = await asyncio.open_connection(host, port)
    out = []
    for line in lines:
        writer.write(line.encode() + b"\n")
        out.append((await reader.readline()).decode().rstrip("\n"))
    writer.close()
    await writer.wait_closed()
    return out


async def main(host, port, selftest):
    """Serve echo on ``host:port``; with ``selftest``, check it and return."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, host, port)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"echo server on {host}:{port}", flush=True)
    async with server:
        if selftest:
            lines = ["hello", "flowcoro", "x" * 1000]
            got = await client(host, port, lines)
            assert got == lines, got
            print(f"echoed {len(got)} lines: ok")
            return
        await server.serve_forever()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8766)
    p.add_argument("--selftest", action="store_true", help="echo a few lines through it, then exit")
    a = p.parse_args()
    try:
        flowcoro.run(main(a.host, a.port, a.selftest))
    except KeyboardInterrupt:
        pass
