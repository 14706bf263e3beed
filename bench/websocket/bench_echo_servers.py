#!/usr/bin/env python3
"""WebSocket echo through the real servers, interleaved: FlowCoro's HttpServer
(``app.websocket``) vs picows vs the `websockets` library, both on uvloop.

    .venv/bin/python bench/websocket/bench_echo_servers.py [--conns 64]
            [--sizes 64,16384] [--duration 3] [--rounds 3]
            [--servers flowcoro,flowcoro-cb,picows,websockets]

Servers (one process each, all started first, pinned to CPU 0; a round
measures every server and size in turn, so slow drifts of the shared
machine's load hit all of them alike):

* flowcoro:    HttpServer + ``@app.websocket`` echo route, an ``async for`` /
               ``send`` loop per connection, FlowCoro loop;
* flowcoro-cb: the same server, a route in callback mode
               (``ws.on_message = ws.send_nowait``, then ``wait_closed()``);
* flowcoro-busy: the ``async for`` route on a loop with ``busy_poll_us=50``
               (opt-in; with ``--servers``);
* picows:      picows's ``ws_create_server`` with a WSListener that echoes
               each frame from ``on_ws_frame`` (its default transport:
               aiofastnet when installed), on uvloop;
* picows-uvloop: the same with ``use_aiofastnet=False`` (uvloop's own
               transports; with ``--servers``);
* websockets:  the websockets library's asyncio server on uvloop.

No compression, no keep-alive pings, binary messages.  The load generator
(this process, CPU 1) is the Driver of bench_echo.py: FlowCoro's client
handshake, then a raw protocol, one message in flight per connection,
replies counted by size after the first one is checked byte for byte.  Reported per point: echoed msgs/s and server CPU (user +
system from /proc/<pid>/stat) per echoed message; the summary gives the
median over rounds.
"""
import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import flowcoro  # noqa: E402
from flowcoro.websocket import FrameBuilder, connect  # noqa: E402
from bench_echo import Driver, free_port, pin, proc_cpu  # noqa: E402

FLOWCORO = """
import asyncio, flowcoro
from flowcoro.http import HttpServer
app = HttpServer(max_connections=100000)
OPTS = dict(compression=None, ping_interval=None, max_message=None)

@app.websocket("/", **OPTS)
async def echo(ws):
    async for m in ws:
        await ws.send(m)

@app.websocket("/cb", **OPTS)
async def echo_cb(ws):
    ws.on_message = ws.send_nowait       # callback mode: no task wake-up per message
    await ws.wait_closed()

async def main():
    asyncio.get_running_loop().busy_poll_us = {busy}
    await app.listen("127.0.0.1", {port})
    await asyncio.Event().wait()
flowcoro.run(main())
"""

PICOWS = """
import asyncio, uvloop
from picows import ws_create_server, WSListener, WSMsgType

class Echo(WSListener):
    def on_ws_frame(self, transport, frame):
        op = frame.msg_type
        if op is WSMsgType.BINARY or op is WSMsgType.TEXT:
            # one frame per message here (the client never fragments)
            transport.send(op, frame.get_payload_as_memoryview())
        elif op is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

async def main():
    server = await ws_create_server(lambda request: Echo(), "127.0.0.1", {port},
                                    max_frame_size=1 << 24{afn})
    await server.serve_forever()
uvloop.run(main())
"""

WEBSOCKETS = """
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
"""

SERVERS = {  # name: (code, path)
    "flowcoro": (FLOWCORO.replace("{busy}", "0"), "/"),
    "flowcoro-cb": (FLOWCORO.replace("{busy}", "0"), "/cb"),
    "flowcoro-busy": (FLOWCORO.replace("{busy}", "50"), "/"),
    "picows": (PICOWS.replace("{afn}", ""), "/"),
    "picows-uvloop": (PICOWS.replace("{afn}", ", use_aiofastnet=False"), "/"),
    "websockets": (WEBSOCKETS, "/"),
}


async def measure(port, path, conns, size, duration, pid):
    payload = os.urandom(size)
    frame = FrameBuilder(client=True).binary(payload)
    reply = FrameBuilder(client=False).binary(payload)
    counter = [0]
    wss = [await connect(f"ws://127.0.0.1:{port}{path}", compression=None, ping_interval=None,
                         max_size=None) for _ in range(conns)]
    for ws in wss:
        Driver(frame, counter, reply).start(ws.transport)
    await asyncio.sleep(1.0)                       # warm-up
    c0, t0, cpu0, s0 = counter[0], time.perf_counter(), time.process_time(), proc_cpu(pid)
    await asyncio.sleep(duration)
    c1, t1, cpu1, s1 = counter[0], time.perf_counter(), time.process_time(), proc_cpu(pid)
    for ws in wss:
        ws.transport.abort()
    n = c1 - c0
    return n / (t1 - t0), (cpu1 - cpu0) / (t1 - t0), (s1 - s0) / n * 1e6 if n else float("nan")


def start(code, port):
    cmd = [sys.executable, "-c", code.format(port=port)]
    if hasattr(os, "sched_setaffinity"):
        cmd = ["taskset", "-c", "0"] + cmd
    proc = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=ROOT))
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit("server did not start: " + code[:60])
            time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--sizes", default="64,16384")
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--servers", default="flowcoro,flowcoro-cb,picows,websockets")
    args = ap.parse_args()
    pin(1)
    names = args.servers.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    procs, where = {}, {}
    try:
        for name in names:
            code, path = SERVERS[name]
            if code not in procs:
                port = free_port()
                procs[code] = (start(code, port), port)
            where[name] = (procs[code][0].pid, procs[code][1], path)
        print(f"# {args.conns} connections, 1 message in flight each, {args.duration}s per point "
              f"after 1 s warm-up, {args.rounds} interleaved rounds; load avg "
              f"{os.getloadavg()[0]:.2f}", flush=True)
        results = {}
        for r in range(args.rounds):
            for size in sizes:
                for name in names:
                    pid, port, path = where[name]
                    rate, cpu, us = flowcoro.run(measure(port, path, args.conns, size,
                                                         args.duration, pid))
                    results.setdefault((name, size), []).append((rate, us))
                    print(f"round {r} {name:>11} {size:>6} B: {rate:>10,.0f} msgs/s  "
                          f"server {us:6.1f} us CPU/msg  [client CPU {cpu:.0%}]", flush=True)
    finally:
        for proc, _ in procs.values():
            proc.terminate()
            proc.wait()
    print(f"# medians over {args.rounds} rounds; load avg now {os.getloadavg()[0]:.2f}")
    med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
           for k, v in results.items()}
    print("| server | " + " | ".join(f"{s} B msgs/s | {s} B server µs CPU/msg" for s in sizes)
          + " |")
    print("|---" * (1 + 2 * len(sizes)) + "|")
    for name in names:
        print(f"| {name} | " + " | ".join(f"{med[(name, s)][0]:,.0f} | {med[(name, s)][1]:.1f}"
                                           for s in sizes) + " |")
    for ours in (n for n in names if n.startswith("flowcoro")):
        for other in (n for n in names if not n.startswith("flowcoro")):
            print(f"| {ours} / {other} | " + " | ".join(
                f"{med[(ours, s)][0] / med[(other, s)][0]:.2f}x | "
                f"{med[(other, s)][1] / med[(ours, s)][1]:.2f}x less"
                for s in sizes) + " |")


if __name__ == "__main__":
    main()
