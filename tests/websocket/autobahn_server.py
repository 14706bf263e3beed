#!/usr/bin/env python3
"""An Autobahn|Testsuite echo server on flowcoro.http.HttpServer.

Unlike tests/websocket/ws_echo_server.py (which tests the WebSocket layer
alone), this goes through the real server: HttpServer's request parsing and
routing, ``@app.websocket`` (handshake, 101, Request.detach()), then the
connection's echo loop.  Two routes on one port:

* ``/``          permessage-deflate negotiated when the client offers it
* ``/nodeflate`` compression=None (the handshake ignores the offer)

Usage::

    .venv/bin/python tests/websocket/autobahn_server.py [PORT] [--loop asyncio]   # prints the URL
    ../shared/conformance/autobahn/run.sh ws://127.0.0.1:PORT          # all 517 cases
    ../shared/conformance/autobahn/run.sh -q ws://127.0.0.1:PORT/nodeflate

The limits are raised for the suite: group 9 sends 16 MiB messages, and
keep-alive pings are off (wstest does not expect unsolicited pings).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import flowcoro  # noqa: E402
from flowcoro.http import HttpServer  # noqa: E402

#: Group 9 sends messages of up to 16 MiB; 32 MiB leaves room.
MAX_MESSAGE = 1 << 25
OPTIONS = dict(max_message=MAX_MESSAGE, ping_interval=None, max_send_buffer=1 << 26)


async def echo(ws):
    """Send every message back, as it came (text as text, binary as binary)."""
    async for message in ws:
        await ws.send(message)


def build_app():
    """The HttpServer with the two echo routes."""
    app = HttpServer()
    app.websocket("/", echo, compression="deflate", **OPTIONS)
    app.websocket("/nodeflate", echo, compression=None, **OPTIONS)
    return app


async def serve(port=9001, ready=None):
    """Listen on 127.0.0.1:``port`` (0: any) until cancelled; ``ready(port)`` once bound."""
    app = build_app()
    await app.listen("127.0.0.1", port)
    print(f"listening on ws://127.0.0.1:{app.port}", flush=True)
    if ready is not None:
        ready(app.port)
    try:
        await app.serve_forever()
    finally:
        await app.stop(grace=2)


def main(argv=None):
    """``autobahn_server.py [PORT] [--loop flowcoro|asyncio]`` (PORT 0: any free one)."""
    import argparse
    import asyncio
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("port", type=int, nargs="?", default=9001)
    ap.add_argument("--loop", choices=("flowcoro", "asyncio"), default="flowcoro")
    args = ap.parse_args(argv)
    runner = flowcoro.run if args.loop == "flowcoro" else asyncio.run
    try:
        runner(serve(args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
