"""Autobahn|Testsuite's fuzzing client against HttpServer's WebSocket routes.

tests/websocket/autobahn_server.py (HttpServer + ``@app.websocket`` echo)
runs in a subprocess; ../shared/conformance/autobahn/run.sh drives wstest's
fuzzing client at it and leaves the report under tmp_path.  Every case must
end OK, NON-STRICT or INFORMATIONAL, both its behavior and its close
behavior (run.sh's definition of a pass).

CI runs the quick subset (``-q``: no 9.* performance, no 12.*/13.*
compression) on FlowCoro's loop and on stdlib asyncio, plus a sample of
the permessage-deflate groups.  The full suite (517 cases, ~10 min) is run
by hand; the figures are in docs/websocket.md.

Skips only when wstest cannot exist here: no ../shared/conformance/autobahn
or no Python 2.7 to build its virtualenv from.  When the virtualenv is
missing, run.sh builds it on first use (one-off, about 2 minutes).
"""
import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tests" / "websocket" / "autobahn_server.py"
SHARED = Path(os.environ.get("FLOWCORO_SHARED") or ROOT.parent / "shared")
if not SHARED.is_dir() and Path("/work/shared").is_dir():
    SHARED = Path("/work/shared")      # a clone elsewhere on this machine (CI), as the llhttp test does
RUN_SH = SHARED / "conformance" / "autobahn" / "run.sh"
PASS = {"OK", "NON-STRICT", "INFORMATIONAL"}

#: -q leaves 247 of the 517 cases (1.* to 7.*, 10.*).
QUICK_CASES = 247
#: permessage-deflate sample: small messages, every window size, both
#: context-takeover settings (12.1: no parameters; 13.x: negotiated
#: window bits / no_context_takeover).  A few seconds in all.
DEFLATE_SAMPLE = "12.1.1,12.1.2,12.2.1,12.3.1,12.4.1,12.5.1,13.1.1,13.2.1,13.3.1,13.4.1,13.5.1,13.6.1,13.7.1"
DEFLATE_CASES = len(DEFLATE_SAMPLE.split(","))

pytestmark = pytest.mark.timeout(300)       # the one-off wstest build; a run is ~10 s


def _wstest():
    if os.environ.get("WSTEST"):
        return Path(os.environ["WSTEST"])
    venv = os.environ.get("AUTOBAHN_VENV") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
        "flowcoro", "autobahn-py27")
    return Path(venv) / "bin" / "wstest"


def _python2():
    return Path(os.environ.get("PYTHON2") or os.path.join(
        os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv"),
        "versions", "2.7.18", "bin", "python"))


def _why_not_runnable():
    if not RUN_SH.is_file():
        return f"Autobahn runner not found at {RUN_SH} (set FLOWCORO_SHARED)"
    if os.access(_wstest(), os.X_OK):
        return None
    if not os.access(_python2(), os.X_OK):
        return (f"no wstest at {_wstest()} and no Python 2.7 at {_python2()} to build it "
                "(pyenv install 2.7.18, or set PYTHON2 / WSTEST)")
    return None


@pytest.fixture(scope="module")
def runner():
    """run.sh, with its wstest virtualenv present (skips when it cannot be)."""
    why = _why_not_runnable()
    if why:
        pytest.skip(why)
    return RUN_SH


class EchoServer:
    """autobahn_server.py in a subprocess; ``url`` once it listens."""

    def __init__(self, loop):
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), "0", "--loop", loop], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1)
            if ready:
                line = self.proc.stdout.readline()
                if not line:
                    break
                self.lines.append(line)
                m = re.search(r"listening on (ws://\S+)", line)
                if m:
                    self.url = m.group(1)
                    return
        self.stop()
        pytest.fail("the echo server did not start:\n" + "".join(self.lines))

    def stop(self):
        """Stop the server; returns its remaining output."""
        if self.proc.poll() is None:
            self.proc.terminate()
        out = self.proc.communicate(timeout=15)[0]
        return "".join(self.lines) + (out or "")


def autobahn(runner, url, tmp_path, *args):
    """Run the fuzzing client; returns (results by case, run.sh's output)."""
    outdir = tmp_path / "reports"
    proc = subprocess.run(["bash", str(runner), "-a", "flowcoro", "-o", str(outdir), *args, url],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=280)
    index = outdir / "index.json"
    if proc.returncode == 2 or not index.exists():
        if not os.access(_wstest(), os.X_OK):
            pytest.skip("wstest's Python 2.7 virtualenv could not be built here:\n"
                        + proc.stdout[-1500:])
        pytest.fail(f"run.sh failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}")
    return json.loads(index.read_text())["flowcoro"], proc.stdout


def failures(results):
    """Cases whose behavior or close behavior is not a pass, with what wstest saw."""
    return {case: (r.get("behavior"), r.get("behaviorClose"), r.get("remoteCloseCode"))
            for case, r in results.items()
            if r.get("behavior") not in PASS or r.get("behaviorClose") not in PASS}


@pytest.mark.parametrize("loop, path", [("flowcoro", "/"), ("asyncio", "/nodeflate")])
def test_autobahn_quick_subset(runner, tmp_path, loop, path):
    server = EchoServer(loop)
    try:
        results, out = autobahn(runner, server.url + path, tmp_path, "-q")
    finally:
        log = server.stop()
    assert failures(results) == {}, out + "\nserver output:\n" + log
    assert len(results) == QUICK_CASES, out
    # The close code the server sent on a few protocol errors (wstest
    # accepts more than one code for some; these are the RFC's).
    sent = {case: results[case]["remoteCloseCode"] for case in ("2.5", "5.1", "6.4.1", "7.5.1")}
    assert sent == {"2.5": 1002,      # ping payload over 125 bytes
                    "5.1": 1002,      # fragmented ping
                    "6.4.1": 1007,    # invalid UTF-8 in the middle of a fragmented text
                    "7.5.1": 1007}    # invalid UTF-8 in a close reason


def test_autobahn_permessage_deflate_sample(runner, tmp_path):
    server = EchoServer("flowcoro")
    try:
        results, out = autobahn(runner, server.url + "/", tmp_path, "-c", DEFLATE_SAMPLE)
    finally:
        log = server.stop()
    assert failures(results) == {}, out + "\nserver output:\n" + log
    assert sorted(results) == sorted(DEFLATE_SAMPLE.split(",")), out


def test_autobahn_no_deflate_route_declines_the_offer(runner, tmp_path):
    # wstest offers permessage-deflate in 12.*; /nodeflate must answer
    # without it, so wstest reports the case UNIMPLEMENTED (not a pass:
    # proof the route really negotiated nothing).
    server = EchoServer("flowcoro")
    try:
        results, out = autobahn(runner, server.url + "/nodeflate", tmp_path, "-c", "12.1.1")
    finally:
        server.stop()
    assert results["12.1.1"]["behavior"] == "UNIMPLEMENTED", out
