"""TCP echo server written with flowcoro.net, for ../shared/bench/echo.sh.

    python bench/echo_net.py --port 8091 [--loop flowcoro|asyncio|uvloop]

Same behaviour as the shared servers/echo_server.py --mode streams (read up
to 64 KiB, write it back, drain), on FlowCoro's stream API.
"""
import argparse
import asyncio
import socket

import flowcoro
from flowcoro.net import TcpServer


async def echo(conn):
    sock = conn.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while data := await conn.read(65536):
            conn.write(data)
            await conn.drain()
    except ConnectionError:
        pass
    finally:
        conn.close()


async def main(port):
    async with TcpServer() as server:
        await server.bind_and_listen("127.0.0.1", port, backlog=1024)
        print(f"flowcoro.net echo listening :{port}", flush=True)
        await server.serve(echo)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8091)
    p.add_argument("--loop", default="flowcoro", choices=("flowcoro", "asyncio", "uvloop"))
    a = p.parse_args()
    if a.loop == "flowcoro":
        flowcoro.run(main(a.port))
    elif a.loop == "uvloop":
        import uvloop
        uvloop.run(main(a.port))
    else:
        asyncio.run(main(a.port))
