#!/usr/bin/env python3
"""WebSocket echo throughput: N connections, one message in flight each.

    .venv/bin/python bench/websocket/bench_echo.py [--conns 64] [--sizes 64,16384]
            [--duration 5] [--servers flowcoro,websockets]

Servers (each started in its own process, pinned to CPU 0 when possible):

* flowcoro:   WebSocketConnection on the FlowCoro loop, upgraded by the
              minimal server of tests/websocket/ws_echo_server.py (the HTTP
              server's @websocket routes will use the same connection class),
              an ``async for`` / ``send`` task per connection;
* flowcoro-cb: the same in callback mode (``on_message=ws.send_nowait``: no
              task wake-up per message);
* websockets: the `websockets` library's asyncio server on uvloop.

Both without compression and without keep-alive pings.  The load
generator (this process, pinned to CPU 1) opens --conns connections with
FlowCoro's client handshake, then drives each with a raw asyncio protocol
(masked frames out, one echo awaited before the next send, replies counted
by size after the first is checked: see Driver), so it adds little on top
of its own kernel TCP cost; that cost is about the fastest servers' own, so
near them the client's CPU, not theirs, caps messages/s (bench/RESULTS.md).
Reported:
echoed messages per second over --duration seconds after a 1 s warm-up,
and the server process's CPU time per echoed message (user + system, from
/proc), the steadier figure on a shared machine.
"""
import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, ROOT)

import flowcoro  # noqa: E402
from flowcoro.websocket import FrameBuilder, connect  # noqa: E402

SERVER_CODE = {
    "flowcoro": """
import sys, flowcoro
sys.path.insert(0, {tests!r})
import ws_echo_server as s
async def main():
    server, port, _ = await s.serve(s.echo, port={port}, ping_interval=None, max_message=None,
                                    accept_options={{"compression": None}})
    await server.serve_forever()
flowcoro.run(main())
""",
    "flowcoro-cb": """
import sys, flowcoro
sys.path.insert(0, {tests!r})
import ws_echo_server as s
async def main():
    server, port, _ = await s.serve(None, port={port}, ping_interval=None, max_message=None,
                                    accept_options={{"compression": None}})
    await server.serve_forever()
flowcoro.run(main())
""",
    "websockets": """
import asyncio, uvloop
from websockets.asyncio.server import serve
async def echo(ws):
    try:
        async for m in ws:
            await ws.send(m)
    except Exception:
        pass
async def main():
    async with serve(echo, "127.0.0.1", {port}, compression=None, ping_interval=None,
                     max_size=None) as s:
        await s.serve_forever()
uvloop.run(main())
""",
}


class Driver(asyncio.BufferedProtocol):
    """Echo client: send a prebuilt masked frame, await the echo, send again.

    Replies are counted by size, not parsed: every server measured here
    answers a binary message with one unmasked frame of the same payload,
    and none sends pings (all run with keep-alive pings off), so a reply is
    exactly ``len(reply)`` bytes.  The first reply of each connection is
    compared with the expected frame byte for byte, and every later reply
    that starts a read must start with the expected header; a mismatch
    stops the run.  Reads land in one buffer that all drivers share (one
    thread, and each read is consumed before the next one), so the load
    generator makes no ``bytes`` object per read.  It has to stay well
    below the servers' cost: when it saturates its CPU first, it caps the
    fastest servers' rate and shrinks their ratios.
    """

    _buf = memoryview(bytearray(256 * 1024))

    def __init__(self, frame, counter, reply):
        self.frame = frame
        self.counter = counter
        self.reply = reply
        self.rlen = len(reply)
        self.head = reply[:{126: 4, 127: 10}.get(reply[1] & 0x7F, 2)]    # the header
        self.got = 0
        self.first = bytearray()

    def get_buffer(self, sizehint):
        return self._buf

    def buffer_updated(self, n):
        if self.first is not None:
            self.first += self._buf[:n]
            if len(self.first) < self.rlen:
                return
            if self.first != self.reply:
                raise SystemExit("the echo differs from the message sent")
            self.first = None
        else:
            if self.got == 0 and self._buf[:len(self.head)] != self.head:
                raise SystemExit("a reply does not start with the expected header")
            self.got += n
            if self.got < self.rlen:
                return
            if self.got > self.rlen:
                raise SystemExit("more bytes than one reply: one message is in flight")
            self.got = 0
        self.counter[0] += 1
        self.transport.write(self.frame)

    def start(self, transport):
        self.transport = transport
        transport.set_protocol(self)
        transport.write(self.frame)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pin(cpu):
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        pass


def proc_cpu(pid):
    """CPU seconds (user + system) used so far by process pid (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


async def measure(port, conns, size, duration, pid):
    payload = os.urandom(size)
    frame = FrameBuilder(client=True).binary(payload)
    reply = FrameBuilder(client=False).binary(payload)
    counter = [0]
    wss = [await connect(f"ws://127.0.0.1:{port}/", compression=None, ping_interval=None,
                         max_size=None) for _ in range(conns)]
    drivers = []
    for ws in wss:
        d = Driver(frame, counter, reply)
        d.start(ws.transport)
        drivers.append(d)
    await asyncio.sleep(1.0)                       # warm-up
    c0, t0, cpu0, s0 = counter[0], time.perf_counter(), time.process_time(), proc_cpu(pid)
    await asyncio.sleep(duration)
    c1, t1, cpu1, s1 = counter[0], time.perf_counter(), time.process_time(), proc_cpu(pid)
    for ws in wss:
        ws.transport.abort()
    n = c1 - c0
    return n / (t1 - t0), (cpu1 - cpu0) / (t1 - t0), (s1 - s0) / n * 1e6 if n else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--sizes", default="64,16384")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--servers", default="flowcoro,flowcoro-cb,websockets")
    args = ap.parse_args()
    pin(1)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"# {args.conns} connections, 1 message in flight each, {args.duration}s per point; "
          "msgs/s echoed (load generator CPU share in brackets)")
    results = {}
    for name in args.servers.split(","):
        port = free_port()
        code = SERVER_CODE[name].format(port=port, tests=os.path.join(ROOT, "tests", "websocket"))
        env = dict(os.environ, PYTHONPATH=ROOT)
        cmd = [sys.executable, "-c", code]
        if hasattr(os, "sched_setaffinity"):
            cmd = ["taskset", "-c", "0"] + cmd
        proc = subprocess.Popen(cmd, env=env)
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
            for size in sizes:
                rate, cpu, us = flowcoro.run(measure(port, args.conns, size, args.duration,
                                                     proc.pid))
                results[(name, size)] = (rate, us)
                print(f"{name:>11} {size:>6} B: {rate:>10,.0f} msgs/s  server {us:6.1f} us CPU/msg"
                      f"  [client CPU {cpu:.0%}]", flush=True)
        finally:
            proc.terminate()
            proc.wait()
    names = args.servers.split(",")
    if "websockets" in names:
        for ours in names:
            if ours.startswith("flowcoro"):
                for size in sizes:
                    (r1, u1), (r2, u2) = results[(ours, size)], results[("websockets", size)]
                    print(f"{ours} / websockets at {size} B: {r1 / r2:.2f}x msgs/s, "
                          f"{u2 / u1:.2f}x less server CPU per message")


if __name__ == "__main__":
    main()
