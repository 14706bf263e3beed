"""HTTP plaintext with observability on vs off (the issue's <= 5% target).

    .venv/bin/python bench/observability/bench_http.py [--rounds 3] [--duration 4]

Each variant is a ``flowcoro.http.HttpServer`` answering ``GET /`` with
``Hello, World!`` in a child process on FlowCoro's loop, loaded by ``wrk
-t1 -c64`` (plain keep-alive, and 16-deep pipelining written here as a
Lua script).  With two cores, the server is pinned to CPU 0 and wrk to
CPU 1 (``taskset``).  Per run the script reports requests/s and the
server's CPU time per request (utime + stime from /proc, divided by the
requests wrk completed): on a shared, loaded machine the CPU per request
is the steadier figure, so the loss is computed from it (and from req/s
for reference).  Variants, interleaved round by round:

* ``none``: no middleware;
* ``metrics``: :func:`flowcoro.observability.instrument` with request
  metrics, :class:`RuntimeMetrics` started (lag probe every 0.25 s) and a
  ``/metrics`` route, tracing off;
* ``metrics+tracing``: the same plus tracing enabled and not sampled: the
  OpenTelemetry SDK installed as the global provider (BatchSpanProcessor
  with an OTLP/HTTP exporter; sampler ParentBased(TraceIdRatioBased(0))),
  ``root_sample_ratio=0`` in the middleware;
* ``tracing via SDK sampler``: tracing where the SDK's sampler, not the
  middleware, drops every request (``root_sample_ratio=1``, SDK sampler
  ALWAYS_OFF): what the fast path saves.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

VARIANTS = ["none", "metrics", "metrics+tracing", "tracing via SDK sampler"]

SERVER = r'''
import os, sys
variant = sys.argv[1]
from flowcoro.http import HttpServer
app = HttpServer()

@app.route("/")
async def hello(request):
    return "Hello, World!"

if variant != "none":
    from flowcoro.observability import Metrics, RuntimeMetrics, instrument, metrics_handler
    metrics = Metrics()
    runtime = RuntimeMetrics()
    app.route("/metrics", metrics_handler())
    tracing = variant != "metrics"
    ratio = 0.0
    if tracing:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        if variant == "tracing via SDK sampler":
            sampler, ratio = ALWAYS_OFF, 1.0
        else:
            sampler = ParentBased(TraceIdRatioBased(0.0))
        provider = TracerProvider(sampler=sampler)
        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")))
        trace.set_tracer_provider(provider)
    instrument(app, metrics, tracing=tracing, root_sample_ratio=ratio, runtime=runtime)

    async def start_probe():
        runtime.start()
    app.on_startup(start_probe)

import flowcoro, asyncio
async def main():
    await app.listen("127.0.0.1", int(sys.argv[2]))
    print("ready", flush=True)
    await app.serve_forever()
flowcoro.run(main())
'''


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick      # utime + stime


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def pin(cpu):
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() >= 2 else []


def run_one(variant, mode, duration, lua):
    port = free_port()
    srv = subprocess.Popen(pin(0) + [sys.executable, "-c", SERVER, variant, str(port)],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "ready"
        url = f"http://127.0.0.1:{port}/"
        extra = ["-s", lua, url, "--", "16"] if mode == "pipe16" else [url]
        wrk = pin(1) + ["wrk", "-t1", "-c64"]
        subprocess.run(wrk + ["-d1s"] + extra, capture_output=True, check=True)   # warm-up
        c0 = cpu_seconds(srv.pid)
        out = subprocess.run(wrk + [f"-d{duration}s"] + extra, capture_output=True, text=True,
                             check=True).stdout
        c1 = cpu_seconds(srv.pid)
    finally:
        srv.terminate()
        srv.wait()
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    if "Non-2xx" in out or "Socket errors" in out:
        print(f"  warning: {variant} {mode}: " + " ".join(
            l.strip() for l in out.splitlines() if "Non-2xx" in l or "Socket errors" in l))
    return rps, (c1 - c0) / reqs * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--modes", default="plain,pipe16")
    args = ap.parse_args()
    lua = os.path.join(tempfile.mkdtemp(prefix="observability_"), "pipeline.lua")
    with open(lua, "w") as f:
        f.write("init = function(args)\n  local r = {}\n"
                "  for i = 1, tonumber(args[1]) or 16 do r[i] = wrk.format() end\n"
                "  req = table.concat(r)\nend\nrequest = function() return req end\n")
    modes = args.modes.split(",")
    res = {(v, m): [] for v in VARIANTS for m in modes}
    for rnd in range(args.rounds):
        print(f"round {rnd + 1}/{args.rounds}  load {os.getloadavg()[0]:.2f}", flush=True)
        for m in modes:
            order = VARIANTS[rnd % len(VARIANTS):] + VARIANTS[:rnd % len(VARIANTS)]
            for v in order:
                rps, us = run_one(v, m, args.duration, lua)
                res[(v, m)].append((rps, us))
                print(f"  {m:6s} {v:24s} {rps:10.0f} req/s  {us:6.2f} µs CPU/req", flush=True)
    print()
    print("| mode | variant | req/s (median) | µs server CPU/req (median) | CPU loss vs none | req/s loss vs none |")
    print("|---|---|---|---|---|---|")
    for m in modes:
        base = None
        for v in VARIANTS:
            rs = sorted(x[0] for x in res[(v, m)])
            us = sorted(x[1] for x in res[(v, m)])
            rps, cpu = rs[len(rs) // 2], us[len(us) // 2]
            if base is None:
                base = (rps, cpu)
                print(f"| {m} | {v} | {rps:.0f} | {cpu:.2f} | — | — |")
            else:
                print(f"| {m} | {v} | {rps:.0f} | {cpu:.2f} | {(cpu / base[1] - 1) * 100:+.1f}% "
                      f"| {(1 - rps / base[0]) * 100:+.1f}% |")


if __name__ == "__main__":
    main()
