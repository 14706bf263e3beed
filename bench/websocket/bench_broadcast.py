#!/usr/bin/env python3
"""Broadcast fan-out: one 256-byte message to N WebSocket connections, time
from the broadcast call to the last delivery.

    .venv/bin/python bench/websocket/bench_broadcast.py [--conns 10000]
            [--reps 5] [--rounds 2] [--servers flowcoro,websockets]

Servers (one process each, pinned to CPU 0):

* flowcoro:   HttpServer + ``WebSocketServer(app, "/")``; its on_message hook
              answers a "go" message with ``WebSocketServer.broadcast``
              (FlowCoro loop);
* websockets: the websockets library's asyncio server on uvloop, the
              handler keeps a set of the open connections and answers "go"
              with ``websockets.asyncio.server.broadcast(set, payload)``;
* raw:        (a floor, not a WebSocket server; with ``--servers``) a bare
              uvloop protocol: handshake by hand, then one
              ``transport.write`` of a prebuilt frame per connection.

Both without compression and keep-alive pings.  The server reads
``time.monotonic()``, writes it (``repr``, padded with spaces to 256 bytes)
into the binary message and calls broadcast; it prints how long the call
itself took.  The client (this process, uvloop, CPU 1) opens the N
connections with a raw handshake and a protocol over FlowCoro's framing
core, and timestamps every message with ``time.monotonic()`` in
``data_received`` (same host, same clock).  One of the N connections sends
"go" (it gets the broadcast too).  Reported per repetition: time to the last
delivery and to the median delivery; summary: the median over all
repetitions.  The raised ``RLIMIT_NOFILE`` (soft = hard) is inherited by
the server process.
"""
import argparse
import asyncio
import base64
import os
import resource
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, ROOT)

import uvloop  # noqa: E402
from flowcoro.websocket import FrameBuilder, FrameParser  # noqa: E402

FLOWCORO = """
import asyncio, time, flowcoro
from flowcoro.http import HttpServer
from flowcoro.websocket.server import WebSocketServer
app = HttpServer(max_connections=100000)
live = WebSocketServer(app, "/", compression=None, ping_interval=None)

@live.on_message
async def go(ws, message):
    t0 = time.monotonic()
    n = live.broadcast(repr(t0).encode().ljust(256))
    print(f"sent {{n}} {{(time.monotonic() - t0) * 1e3:.3f}}", flush=True)

async def main():
    await app.listen("127.0.0.1", {port}, backlog=4096)
    await asyncio.Event().wait()
flowcoro.run(main())
"""

WEBSOCKETS = """
import asyncio, time, uvloop
from websockets.asyncio.server import serve, broadcast
CONNS = set()

async def handler(ws):
    CONNS.add(ws)
    try:
        async for message in ws:
            t0 = time.monotonic()
            broadcast(CONNS, repr(t0).encode().ljust(256))
            print(f"sent {{len(CONNS)}} {{(time.monotonic() - t0) * 1e3:.3f}}", flush=True)
    except Exception:
        pass
    finally:
        CONNS.discard(ws)

async def main():
    async with serve(handler, "127.0.0.1", {port}, compression=None, ping_interval=None,
                     backlog=4096) as s:
        await s.serve_forever()
uvloop.run(main())
"""

RAW = """
import asyncio, base64, hashlib, time, uvloop
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONNS = set()

class Raw(asyncio.Protocol):
    # Floor, not a WebSocket server: the handshake by hand, then any bytes
    # from a client trigger one transport.write of a prebuilt frame per
    # connection (what every broadcast ends in).
    upgraded = False
    def connection_made(self, transport):
        self.transport = transport
    def connection_lost(self, exc):
        CONNS.discard(self.transport)
    def data_received(self, data):
        if not self.upgraded:
            key = data.split(b"Sec-WebSocket-Key: ", 1)[1].split(b"\\r\\n", 1)[0]
            acc = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\n"
                                 b"Connection: Upgrade\\r\\nSec-WebSocket-Accept: " + acc +
                                 b"\\r\\n\\r\\n")
            self.upgraded = True
            CONNS.add(self.transport)
            return
        t0 = time.monotonic()
        payload = repr(t0).encode().ljust(256)
        frame = b"\\x82\\x7e" + len(payload).to_bytes(2, "big") + payload
        for tr in CONNS:
            tr.write(frame)
        print(f"sent {{len(CONNS)}} {{(time.monotonic() - t0) * 1e3:.3f}}", flush=True)

async def main():
    server = await asyncio.get_running_loop().create_server(Raw, "127.0.0.1", {port}, backlog=4096)
    await server.serve_forever()
uvloop.run(main())
"""

SERVERS = {"flowcoro": FLOWCORO, "websockets": WEBSOCKETS, "raw": RAW}
KEY = base64.b64encode(b"0123456789abcdef").decode()


class Client(asyncio.Protocol):
    """Raw WebSocket client: handshake, then timestamps each message."""

    def __init__(self, port, holder):
        self.req = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        self.holder = holder                       # [Stats of the current repetition]
        self.buf = b""
        self.parser = None
        self.opened = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.req)

    def connection_lost(self, exc):
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed before the handshake"))

    def data_received(self, data):
        if self.parser is None:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buf.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(ConnectionError(self.buf[:200]))
                return
            self.parser = FrameParser(client=True, max_message=None)
            data, self.buf = self.buf[end + 4:], b""
            self.opened.set_result(None)
            if not data:
                return
        msgs = self.parser.feed(data)
        if msgs:
            t = time.monotonic()
            st = self.holder[0]
            for m in msgs:
                if type(m) is bytes:
                    st.times.append(t)
                    if st.sent is None:
                        st.sent = float(m[:40])
            if len(st.times) >= st.want and not st.done.done():
                st.done.set_result(None)


class Stats:
    def __init__(self, want):
        self.want = want
        self.times = []
        self.sent = None
        self.done = asyncio.get_running_loop().create_future()


async def run_server(name, port, proc, n, reps, out):
    loop = asyncio.get_running_loop()
    holder = [Stats(n)]
    sem = asyncio.Semaphore(256)
    clients = []

    async def one():
        async with sem:
            _, c = await loop.create_connection(lambda: Client(port, holder), "127.0.0.1", port)
            await c.opened
            clients.append(c)
    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(n)))
    print(f"  {name}: {n} connections open in {time.monotonic() - t0:.1f} s; "
          f"load avg {os.getloadavg()[0]:.2f}", flush=True)
    await asyncio.sleep(1.0)
    go = FrameBuilder(client=True).text("go")
    for r in range(reps):
        holder[0] = st = Stats(n)
        clients[0].transport.write(go)
        try:
            await asyncio.wait_for(st.done, 30)
        except asyncio.TimeoutError:
            print(f"  {name} rep {r}: only {len(st.times)} of {n} delivered in 30 s")
            continue
        line = await loop.run_in_executor(None, proc.stdout.readline)
        _, sent_n, call_ms = line.split()
        last = (max(st.times) - st.sent) * 1e3
        med = (statistics.median(st.times) - st.sent) * 1e3
        out.setdefault(name, []).append((last, med, float(call_ms)))
        print(f"  {name} rep {r}: last delivery {last:7.2f} ms  median {med:7.2f} ms  "
              f"broadcast() call {float(call_ms):7.2f} ms  ({sent_n} sent, {len(st.times)} got)",
              flush=True)
        await asyncio.sleep(0.5)
    for c in clients:
        c.transport.abort()
    await asyncio.sleep(1.0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--servers", default="flowcoro,websockets")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.conns + 100:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} is too low for {args.conns}")
    try:
        os.sched_setaffinity(0, {1})
    except (AttributeError, OSError):
        pass
    print(f"# {args.conns} connections, 256-byte binary broadcast, {args.reps} reps x "
          f"{args.rounds} rounds; load avg {os.getloadavg()[0]:.2f}", flush=True)
    out = {}
    for rnd in range(args.rounds):
        for name in args.servers.split(","):
            port = free_port()
            cmd = ["taskset", "-c", "0", sys.executable, "-c",
                   SERVERS[name].format(port=port)]
            proc = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=ROOT),
                                    stdout=subprocess.PIPE, text=True)
            try:
                deadline = time.monotonic() + 20
                while True:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        if time.monotonic() > deadline or proc.poll() is not None:
                            raise SystemExit(f"{name} server did not start")
                        time.sleep(0.1)
                print(f"round {rnd} {name}", flush=True)
                uvloop.run(run_server(name, port, proc, args.conns, args.reps, out))
            finally:
                proc.terminate()
                proc.wait()
    print(f"# medians over all repetitions; load avg now {os.getloadavg()[0]:.2f}")
    print("| server | reps | last delivery ms (median) | min | max | median delivery ms | "
          "broadcast() call ms |")
    print("|---|---|---|---|---|---|---|")
    for name, v in out.items():
        lasts = [x[0] for x in v]
        print(f"| {name} | {len(v)} | {statistics.median(lasts):.2f} | {min(lasts):.2f} | "
              f"{max(lasts):.2f} | {statistics.median(x[1] for x in v):.2f} | "
              f"{statistics.median(x[2] for x in v):.2f} |")


if __name__ == "__main__":
    main()
