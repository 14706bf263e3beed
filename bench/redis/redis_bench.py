"""FlowCoro's Redis client side by side with redis-py (and redis-benchmark), one run.

    .venv/bin/python bench/redis/redis_bench.py [--rounds 3] [--scale 1] [--port P]
            [--only seq_get,conc50,pipe100]

Starts a private redis-server (no persistence) on a free port unless --port
is given; pins it to CPU 0 and the clients to CPU 1 when the machine has two
or more CPUs (as ../shared/bench/redis.sh does). Every round runs every
subject once, in a rotated order, each client in a fresh subprocess:

  redis-benchmark -c 50 -t set,get      the C ceiling for 50 concurrent clients
  redis-benchmark -c 50 -P 16           ... pipelined
  redis-benchmark -c 1 (GET)            the C ceiling for sequential calls
  flowcoro on the flowcoro loop         our client
  ... with busy_poll_us=100             the same, the loop polling 100 us
                                        before it sleeps (opt-in latency knob)
  flowcoro on uvloop                    our client on uvloop (if installed)
  redis-py on uvloop / asyncio          the anchor (hiredis parser)

Workloads (as ../shared/bench/redis_client.py measures redis-py):

  seq_get   30,000 sequential GETs awaited one by one (one connection)
  conc50    50 tasks alternating SET/GET (150,000 ops). flowcoro: one client
            (auto-pipelined shared connection); redis-py: a 50-connection pool
  pipe100   pipelines of 100 commands (50 SET + 50 GET), transaction=False

Prints a markdown table: median (min-max) ops/s over the rounds, the
client's CPU time per operation (process time, robust against a busy
machine: it counts only what the client itself spent), and the ratios that
the targets are stated in.
"""
import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

KEY, VAL = "bench:key", b"xxx"
HERE = os.path.dirname(os.path.abspath(__file__))


# -- workers (run in a subprocess) ------------------------------------------------

async def w_seq(r, n):
    await r.set(KEY, VAL)
    for _ in range(1000):
        await r.get(KEY)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        await r.get(KEY)
    return n, time.perf_counter() - t0, time.process_time() - c0


async def w_conc(r, n, conc=50):
    per = n // conc

    async def worker():
        for _ in range(per // 2):
            await r.set(KEY, VAL)
            await r.get(KEY)

    await asyncio.gather(*(r.ping() for _ in range(conc)))
    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(conc)))
    return conc * (per // 2) * 2, time.perf_counter() - t0, time.process_time() - c0


async def w_pipe(r, n, depth=100):
    batches = n // depth

    async def one():
        p = r.pipeline(transaction=False)
        for _ in range(depth // 2):
            p.set(KEY, VAL)
            p.get(KEY)
        return await p.execute()

    for _ in range(batches // 50 + 1):
        await one()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(batches):
        res = await one()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert res[-1] == VAL
    return batches * depth, dt, cpu


async def worker_main(client, port, scale, only):
    s = scale
    if client == "flowcoro":
        from flowcoro.redis import Redis
        one = many = Redis(port=port)
    else:
        import redis.asyncio as aredis
        one = aredis.Redis(port=port, single_connection_client=True)
        many = aredis.Redis(port=port, max_connections=50)
    out = []
    try:
        if "seq_get" in only:
            out.append(("seq_get",) + await w_seq(one, int(30_000 * s)))
        if "conc50" in only:
            out.append(("conc50",) + await w_conc(many, int(150_000 * s)))
        if "pipe100" in only:
            out.append(("pipe100",) + await w_pipe(one, int(500_000 * s)))
    finally:
        await one.aclose()
        if many is not one:
            await many.aclose()
    return out


def run_worker(a):
    if a.loop.startswith("flowcoro"):
        import flowcoro
        busy = float(a.loop.partition(":")[2] or 0)    # flowcoro:100 = busy_poll_us 100

        def factory():
            loop = flowcoro.new_event_loop()
            loop.busy_poll_us = busy
            return loop
    elif a.loop == "uvloop":
        import uvloop
        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        res = runner.run(worker_main(a.worker, a.port, a.scale, a.only.split(",")))
    for name, count, dt, cpu in res:
        print(f"{name}\t{count / dt:.0f}", flush=True)
        print(f"{name}_cpu\t{cpu / count * 1e6:.2f}", flush=True)


# -- orchestration --------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pin(cpu):
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)]
    return []


def redis_benchmark(port, pipeline, clients=50):
    n = "200000" if clients > 1 else "30000"
    cmd = pin(1) + ["redis-benchmark", "-p", str(port), "-t", "set,get", "-n", n,
                    "-c", str(clients), "-P", str(pipeline), "-q", "--csv"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    vals = {}
    for line in out.splitlines():
        parts = [p.strip('"') for p in line.split(",")]
        if parts[0] in ("SET", "GET"):
            vals[parts[0]] = float(parts[1])
    if clients == 1:
        return {"seq_get": vals["GET"]}
    return {"conc50": (vals["SET"] + vals["GET"]) / 2}


def client_run(port, client, loop, scale, only):
    cmd = pin(1) + [sys.executable, os.path.abspath(__file__), "--worker", client, "--loop", loop,
                    "--port", str(port), "--scale", str(scale), "--only", only]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return {k: float(v) for k, v in (line.split("\t") for line in out.splitlines() if "\t" in line)}


def fmt(vals):
    if not vals:
        return "-"
    med = statistics.median(vals)
    def k(x):
        return f"{x / 1000:.1f}k"
    return f"{k(med)} ({k(min(vals))}-{k(max(vals))})"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--only", default="seq_get,conc50,pipe100",
                   help="workloads to run (comma-separated); redis-benchmark rows run as needed")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--worker", default=None)
    p.add_argument("--loop", default="asyncio")
    a = p.parse_args()
    if a.worker:
        return run_worker(a)
    server = None
    port = a.port
    if port is None:
        port = free_port()
        server = subprocess.Popen(pin(0) + ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                            "--save", "", "--appendonly", "no", "--loglevel", "warning"],
                                  stdout=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
    subjects = [("redis-benchmark c50", None, None), ("redis-benchmark c50 P16", None, None),
                ("redis-benchmark c1", None, None),
                ("flowcoro / flowcoro loop", "flowcoro", "flowcoro"),
                ("flowcoro / flowcoro loop, busy_poll_us=100", "flowcoro", "flowcoro:100")]
    try:
        import uvloop  # noqa: F401
        subjects += [("flowcoro / uvloop", "flowcoro", "uvloop"), ("redis-py / uvloop", "redis-py", "uvloop")]
    except ImportError:
        pass
    subjects += [("redis-py / asyncio", "redis-py", "asyncio")]
    results = {name: {} for name, _, _ in subjects}
    load0 = os.getloadavg()[0]
    try:
        for rnd in range(a.rounds):
            order = subjects[rnd % len(subjects):] + subjects[:rnd % len(subjects)]
            for name, client, loop in order:
                if client is None:
                    if ("seq_get" if name.endswith("c1") else "conc50") not in a.only:
                        continue
                    res = redis_benchmark(port, 16 if "P16" in name else 1,
                                          1 if name.endswith("c1") else 50)
                else:
                    res = client_run(port, client, loop, a.scale, a.only)
                for k, v in res.items():
                    results[name].setdefault(k, []).append(v)
                print(f"round {rnd + 1}: {name}: " + ", ".join(f"{k} {v:,.1f}" for k, v in res.items()),
                      file=sys.stderr, flush=True)
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    print(f"\n{a.rounds} rounds, scale {a.scale}, python {sys.version.split()[0]}, "
          f"{subprocess.run(['redis-server', '--version'], capture_output=True, text=True).stdout.split()[2]}, "
          f"load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
          f"({os.cpu_count()} CPUs)\n")
    print("| subject | seq_get ops/s | conc50 ops/s | pipe100 ops/s |")
    print("|---|---|---|---|")
    for name, _, _ in subjects:
        r = results[name]
        print(f"| {name} | {fmt(r.get('seq_get'))} | {fmt(r.get('conc50'))} | {fmt(r.get('pipe100'))} |")
    print("\nClient CPU time per operation (process time / ops, median; lower is better):\n")
    print("| subject | seq_get us/op | conc50 us/op | pipe100 us/op |")
    print("|---|---|---|---|")
    for name, client, _ in subjects:
        if client is None:
            continue
        r = results[name]
        cells = [f"{statistics.median(r[k + '_cpu']):.2f}" if r.get(k + "_cpu") else "-"
                 for k in ("seq_get", "conc50", "pipe100")]
        print(f"| {name} | " + " | ".join(cells) + " |")
    def med(name, k):
        v = results.get(name, {}).get(k)
        return statistics.median(v) if v else None
    ours = "flowcoro / flowcoro loop"
    busy = "flowcoro / flowcoro loop, busy_poll_us=100"

    def ratio(a_, b_, k):
        x, y = med(a_, k), med(b_, k)
        return f"{x / y:.2f}x" if x and y else "-"
    print()
    for ref in ("redis-py / uvloop", "redis-py / asyncio"):
        print(f"* {ours} vs {ref}: seq_get {ratio(ours, ref, 'seq_get')}, "
              f"conc50 {ratio(ours, ref, 'conc50')}, pipe100 {ratio(ours, ref, 'pipe100')}")
    print(f"* {ours} conc50 vs redis-benchmark -c 50: {ratio(ours, 'redis-benchmark c50', 'conc50')}")
    print(f"* {ours} seq_get vs redis-benchmark -c 1 GET: {ratio(ours, 'redis-benchmark c1', 'seq_get')}")
    if med(busy, "seq_get"):
        print(f"* {busy} vs redis-py / uvloop: seq_get {ratio(busy, 'redis-py / uvloop', 'seq_get')}, "
              f"client CPU per GET {med(busy, 'seq_get_cpu'):.1f} vs {med(ours, 'seq_get_cpu'):.1f} us "
              f"without")


if __name__ == "__main__":
    main()
