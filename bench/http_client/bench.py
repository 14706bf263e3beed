"""HTTP client benchmark: flowcoro.http.HttpClient vs aiohttp's client and httpx.

A raw keep-alive HTTP/1.1 server (asyncio Protocol on uvloop, answering
"Hello, World!" with Content-Length) runs in a child process; each client
then makes

* ``seq``: N GETs one after another on one keep-alive connection, and
* ``c64``: N GETs from 64 concurrent tasks (pool of up to 64 connections),

and the script prints requests per second (best of ``--repeat`` runs, after
a warm-up) and client CPU microseconds per request (process CPU time of
this process, which runs only the clients).  Every client reads and checks
every body.

Usage::

    .venv/bin/python bench/http_client/bench.py [--n 5000] [--repeat 3] [--size 13]
"""
import argparse
import asyncio
import multiprocessing
import os
import socket
import sys
import time

BODY_DEFAULT = 13


def serve(port_q, size):
    """The server process: one uvloop loop, one core."""
    import uvloop
    body = b"Hello, World!" if size == 13 else b"x" * size
    resp = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
            % len(body)) + body

    class Proto(asyncio.Protocol):
        def connection_made(self, t):
            self.t = t
            self.buf = b""

        def data_received(self, data):
            buf = self.buf + data
            n = buf.count(b"\r\n\r\n")
            if n:
                self.t.write(resp * n)
                buf = buf[buf.rfind(b"\r\n\r\n") + 4:]
            self.buf = buf

    async def main():
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        srv = await loop.create_server(Proto, sock=sock, backlog=1024)
        port_q.put(sock.getsockname()[1])
        await srv.serve_forever()

    uvloop.run(main())


async def run_flowcoro(url, n, conc, expect):
    from flowcoro.http import HttpClient
    async with HttpClient(max_connections_per_host=64) as c:
        return await drive(lambda: c.get(url), lambda r: r.content, n, conc, expect)


async def run_aiohttp(url, n, conc, expect):
    import aiohttp
    conn = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=conn) as s:
        async def one():
            async with s.get(url) as r:
                return await r.read()
        return await drive(one, lambda b: b, n, conc, expect)


async def run_httpx(url, n, conc, expect):
    import httpx
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits) as c:
        return await drive(lambda: c.get(url), lambda r: r.content, n, conc, expect)


async def drive(call, body_of, n, conc, expect):
    # Warm-up: open the connections.
    await asyncio.gather(*[call() for _ in range(conc)])
    t0 = time.perf_counter()
    c0 = time.process_time()
    if conc == 1:
        for _ in range(n):
            if body_of(await call()) != expect:
                raise AssertionError("bad body")
    else:
        per = n // conc

        async def worker():
            for _ in range(per):
                if body_of(await call()) != expect:
                    raise AssertionError("bad body")
        await asyncio.gather(*[worker() for _ in range(conc)])
        n = per * conc
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return n / wall, cpu / n * 1e6


CLIENTS = {
    "flowcoro HttpClient (FlowCoro loop)": ("flowcoro", run_flowcoro),
    "flowcoro HttpClient (asyncio loop)": ("asyncio", run_flowcoro),
    "aiohttp ClientSession (asyncio loop)": ("asyncio", run_aiohttp),
    "aiohttp ClientSession (FlowCoro loop)": ("flowcoro", run_aiohttp),
    "httpx AsyncClient (asyncio loop)": ("asyncio", run_httpx),
}


def run_on(kind, coro):
    if kind == "flowcoro":
        import flowcoro
        return flowcoro.run(coro)
    return asyncio.run(coro)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", type=int, default=BODY_DEFAULT)
    ap.add_argument("--only", default=None, help="substring of the client names to run")
    args = ap.parse_args()
    q = multiprocessing.Queue()
    proc = multiprocessing.Process(target=serve, args=(q, args.size), daemon=True)
    proc.start()
    port = q.get(timeout=10)
    url = f"http://127.0.0.1:{port}/"
    expect = b"Hello, World!" if args.size == 13 else b"x" * args.size
    print(f"# python {sys.version.split()[0]}, cpus {os.cpu_count()}, n={args.n}, "
          f"body {len(expect)} B, best of {args.repeat}")
    print(f"{'client':40s} {'seq req/s':>10s} {'µs CPU/req':>10s} {'c64 req/s':>10s} "
          f"{'µs CPU/req':>10s}")
    try:
        for name, (kind, fn) in CLIENTS.items():
            if args.only and args.only not in name:
                continue
            res = []
            for conc in (1, 64):
                best = (0.0, 0.0)
                for _ in range(args.repeat):
                    rps, cpu = run_on(kind, fn(url, args.n, conc, expect))
                    if rps > best[0]:
                        best = (rps, cpu)
                res.append(best)
            print(f"{name:40s} {res[0][0]:10.0f} {res[0][1]:10.1f} {res[1][0]:10.0f} "
                  f"{res[1][1]:10.1f}", flush=True)
    finally:
        proc.kill()


if __name__ == "__main__":
    main()
