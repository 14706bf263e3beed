"""Autobahn|Testsuite in fuzzing-server mode against our client.

tests/websocket/autobahn_client.py starts wstest as the server and echoes
every case with flowcoro.websocket.connect(); a case passes when its
behavior and its close behavior are OK, NON-STRICT or INFORMATIONAL.  Here:
the quick subset (1.* to 8.*, 10.*: 247 cases) on FlowCoro's loop and a
permessage-deflate sample on stdlib asyncio; the full 517 cases are run by
hand (figures in bench/RESULTS.md).

Skips only when wstest cannot exist here: no ../shared/conformance/autobahn
or no Python 2.7 to build its virtualenv from (the runner builds it on
first use, about 2 minutes, once).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "tests" / "websocket" / "autobahn_client.py"
SHARED = Path(os.environ.get("FLOWCORO_SHARED") or ROOT.parent / "shared")
DEFLATE_SAMPLE = "12.1.1,12.2.1,12.3.1,12.4.1,12.5.1,13.1.1,13.2.1,13.3.1,13.4.1,13.5.1,13.6.1,13.7.1"

pytestmark = pytest.mark.timeout(300)       # the one-off wstest build; a run is ~10 s


def _wstest_possible():
    if os.environ.get("WSTEST"):
        return True
    venv = os.environ.get("AUTOBAHN_VENV") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
        "flowcoro", "autobahn-py27")
    if os.access(os.path.join(venv, "bin", "wstest"), os.X_OK):
        return True
    py2 = os.environ.get("PYTHON2") or os.path.join(
        os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv"),
        "versions", "2.7.18", "bin", "python")
    return os.access(py2, os.X_OK) and (SHARED / "conformance" / "autobahn").is_dir()


def run(*args):
    if not _wstest_possible():
        pytest.skip("no wstest and no Python 2.7 / shared/conformance/autobahn to build it")
    # The environment as is: under make asan-test the runner needs the same
    # libasan preload as this interpreter.
    p = subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True,
                       timeout=280)
    out = p.stdout + p.stderr
    m = re.search(r"(\d+) passed, (\d+) failed", out)
    assert m, out[-3000:]
    return int(m.group(1)), int(m.group(2)), out


def test_quick_subset_on_flowcoro():
    passed, failed, out = run("-q")
    assert (passed, failed) == (247, 0), out[-3000:]


def test_permessage_deflate_sample_on_asyncio():
    passed, failed, out = run("-c", DEFLATE_SAMPLE, "--loop", "asyncio")
    assert (passed, failed) == (len(DEFLATE_SAMPLE.split(",")), 0), out[-3000:]
