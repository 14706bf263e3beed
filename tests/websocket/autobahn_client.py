#!/usr/bin/env python3
"""Autobahn|Testsuite, fuzzing-server mode: wstest plays the server, our
client (flowcoro.websocket.connect) echoes every case.

    .venv/bin/python tests/websocket/autobahn_client.py -q          # no 9.*, 12.*, 13.*
    .venv/bin/python tests/websocket/autobahn_client.py             # all 517 cases
    .venv/bin/python tests/websocket/autobahn_client.py -c "1.*,2.*" -o /tmp/websocket_ab

wstest comes from the Python 2.7 venv that ../shared/conformance/autobahn/run.sh
builds (~/.cache/flowcoro/autobahn-py27, or $AUTOBAHN_VENV; $WSTEST overrides);
when it is missing this script builds it the same way (pyenv's 2.7.18 and
requirements-py27.txt; about 2 minutes, once).
Prints per-case failures and "N passed, M failed" (a case passes when its
behavior and close behavior are OK, NON-STRICT or INFORMATIONAL, as in
run.sh).  Exit status 0 when all passed, 1 otherwise, 2 on setup errors.
"""
import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import flowcoro  # noqa: E402
from flowcoro.errors import WebSocketError  # noqa: E402
from flowcoro.websocket import connect  # noqa: E402

AGENT = "flowcoro"
PASS = {"OK", "NON-STRICT", "INFORMATIONAL"}


def wstest_path():
    if os.environ.get("WSTEST"):
        return os.environ["WSTEST"]
    venv = os.environ.get("AUTOBAHN_VENV") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
        "flowcoro", "autobahn-py27")
    return os.path.join(venv, "bin", "wstest")


def build_wstest(wstest):
    """Build the Python 2.7 wstest venv the way run.sh does (one-off, ~2 min)."""
    here = os.path.dirname(os.path.abspath(__file__))
    shared = os.environ.get("FLOWCORO_SHARED") or os.path.join(here, "..", "..", "..", "shared")
    reqs = os.path.join(shared, "conformance", "autobahn", "requirements-py27.txt")
    py2 = os.environ.get("PYTHON2") or os.path.join(
        os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv"),
        "versions", "2.7.18", "bin", "python")
    if not (os.access(py2, os.X_OK) and os.path.exists(reqs)):
        return False
    venv = os.path.dirname(os.path.dirname(wstest))
    print(f"autobahn_client: building wstest in {venv} (one-off)", file=sys.stderr)
    tool = tempfile.mkdtemp(prefix="websocket_venvtool_")
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", tool,
                        "virtualenv<20.22"], check=True)
        subprocess.run([sys.executable, "-m", "virtualenv", "-q", "-p", py2, venv], check=True,
                       env=dict(os.environ, PYTHONPATH=tool))
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q",
                        "--no-warn-script-location", "-r", reqs], check=True,
                       env=dict(os.environ, PIP_CONSTRAINT=""))
    except (OSError, subprocess.CalledProcessError):
        return False
    finally:
        shutil.rmtree(tool, ignore_errors=True)
    return os.access(wstest, os.X_OK)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_case(base, n):
    try:
        async with connect(f"{base}/runCase?case={n}&agent={AGENT}", max_size=2 ** 25,
                           ping_interval=None, close_timeout=5) as ws:
            async for msg in ws:
                await ws.send(msg)
    except (WebSocketError, OSError):
        pass        # the case decides whether that was right


async def run_case_websockets(base, n):
    """The same echo with the `websockets` library's client (the anchor)."""
    from websockets.asyncio.client import connect as w_connect
    from websockets.exceptions import WebSocketException
    try:
        async with w_connect(f"{base}/runCase?case={n}&agent={AGENT}", max_size=2 ** 25,
                             ping_interval=None, close_timeout=5) as ws:
            async for msg in ws:
                await ws.send(msg)
    except (WebSocketException, OSError):
        pass


async def drive(base, client="flowcoro"):
    async with connect(f"{base}/getCaseCount") as ws:
        count = int(await ws.receive())
    case = run_case if client == "flowcoro" else run_case_websockets
    for n in range(1, count + 1):
        await case(base, n)
    async with connect(f"{base}/updateReports?agent={AGENT}") as ws:
        try:
            await ws.receive()
        except WebSocketError:
            pass
    return count


def summarize(index):
    res = json.load(open(index))[AGENT]
    key = lambda c: [int(x) for x in re.findall(r"\d+", c)]  # noqa: E731
    passed, failed, tally = 0, [], {}
    for case in sorted(res, key=key):
        r = res[case]
        b, bc = r.get("behavior"), r.get("behaviorClose")
        tally[b] = tally.get(b, 0) + 1
        if b in PASS and bc in PASS:
            passed += 1
        else:
            failed.append((case, b, bc, r.get("remoteCloseCode")))
    for case, b, bc, code in failed:
        print("FAIL %-8s behavior=%s close=%s remoteCloseCode=%s" % (case, b, bc, code))
    print("behaviors: " + ", ".join("%s=%d" % kv for kv in sorted(tally.items())))
    return passed, len(failed)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--cases", default="*")
    ap.add_argument("-x", "--exclude", default="")
    ap.add_argument("-q", "--quick", action="store_true", help="exclude 9.*, 12.*, 13.*")
    ap.add_argument("-o", "--outdir", default=None, help="keep the reports here")
    ap.add_argument("--loop", choices=("flowcoro", "asyncio"), default="flowcoro")
    ap.add_argument("--client", choices=("flowcoro", "websockets"), default="flowcoro",
                    help="websockets: run the same echo with the websockets library (anchor)")
    args = ap.parse_args()
    wstest = wstest_path()
    if not os.access(wstest, os.X_OK) and not build_wstest(wstest):
        print(f"autobahn_client: no wstest at {wstest} and it could not be built (needs "
              "pyenv's Python 2.7 and ../shared/conformance/autobahn)", file=sys.stderr)
        return 2
    split = lambda s: [c.strip() for c in s.split(",") if c.strip()]  # noqa: E731
    exclude = split(args.exclude) + (["9.*", "12.*", "13.*"] if args.quick else [])
    work = tempfile.mkdtemp(prefix="websocket_autobahn_")
    outdir = os.path.abspath(args.outdir) if args.outdir else os.path.join(work, "reports")
    os.makedirs(outdir, exist_ok=True)
    port = free_port()
    spec = {"url": f"ws://127.0.0.1:{port}", "outdir": outdir, "cases": split(args.cases),
            "exclude-cases": exclude, "exclude-agent-cases": {}}
    with open(os.path.join(work, "spec.json"), "w") as f:
        json.dump(spec, f)
    log = open(os.path.join(work, "wstest.log"), "w")
    # --webport 0: no embedded report web server (its fixed port 8080 would
    # keep two runs from sharing a machine).
    proc = subprocess.Popen([wstest, "-m", "fuzzingserver", "-s", "spec.json", "--webport", "0"],
                            cwd=work,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    print("autobahn_client: wstest did not start; its log:", file=sys.stderr)
                    print(open(os.path.join(work, "wstest.log")).read()[-2000:], file=sys.stderr)
                    return 2
                time.sleep(0.2)
        start = time.monotonic()
        base = f"ws://127.0.0.1:{port}"
        count = (flowcoro.run(drive(base, args.client)) if args.loop == "flowcoro"
                 else asyncio.run(drive(base, args.client)))
        elapsed = time.monotonic() - start
        passed, failed = summarize(os.path.join(outdir, "index.json"))
        print(f"wall time: {elapsed:.0f}s, {count} cases, client {args.client}, loop {args.loop}")
        print(f"{passed} passed, {failed} failed")
        return 1 if failed else 0
    finally:
        proc.terminate()
        proc.wait()
        log.close()
        if os.environ.get("WEBSOCKET_AUTOBAHN_KEEP"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)     # the reports too, unless -o put them elsewhere


if __name__ == "__main__":
    sys.exit(main())
