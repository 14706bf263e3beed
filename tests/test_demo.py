"""The demo service, the CLI and the examples, run as a user runs them.

Each test starts a real process (``python -m flowcoro ...`` or
``python examples/X.py``) and talks to it over TCP, so what is tested is the
whole path: argument parsing, the loop, asyncio streams on our transport,
run_in_executor on SQLite, and shutdown on SIGINT / SIGTERM.
"""
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import flowcoro

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# The subprocesses import the same flowcoro as this test run.
PKG_PARENT = str(Path(flowcoro.__file__).resolve().parent.parent)
BANNER = re.compile(r"listening on ([\d.]+):(\d+)")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PKG_PARENT] + [p for p in [env.get("PYTHONPATH")] if p])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _default_sigint():
    # A process started in the background by a non-interactive shell inherits
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler;
    # give the child the disposition a terminal user's process has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _spawn(args):
    return subprocess.Popen([sys.executable] + args, cwd=ROOT, env=_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_default_sigint)


def _wait_banner(proc):
    """Read output lines until the 'listening on' banner; return (host, port, lines)."""
    lines = []
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = BANNER.search(line)
        if m:
            return m.group(1), int(m.group(2)), lines
    proc.kill()
    rest = proc.communicate()[0]
    pytest.fail(f"no banner; output:\n{''.join(lines)}{rest}")


class Client:
    """A blocking line client: ``ask(cmd)`` sends one line, returns one reply line."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.f = self.sock.makefile("rwb")

    def ask(self, line):
        self.f.write(line.encode() + b"\n")
        self.f.flush()
        return self.readline()

    def readline(self):
        return self.f.readline().decode().rstrip("\n")

    def close(self):
        self.f.close()
        self.sock.close()


@contextlib.contextmanager
def _running(args):
    """Start a server process, wait for its banner; kill it on the way out, whatever happened."""
    proc = _spawn(args)
    try:
        host, port, _ = _wait_banner(proc)
        yield proc, host, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if not proc.stdout.closed:
            proc.stdout.close()


@pytest.fixture
def demo(tmp_path):
    """A demo server on a free port with its database in tmp_path; yields (proc, host, port)."""
    db = tmp_path / "demo.sqlite3"
    with _running(["-m", "flowcoro", "demo", "--host", "127.0.0.1", "--port", "0", "--db", str(db)]) as d:
        yield d


def _stop(proc, sig=signal.SIGINT):
    proc.send_signal(sig)
    try:
        out = proc.communicate(timeout=STOP_TIMEOUT)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        out = proc.communicate()[0]
        pytest.fail(f"did not stop within {STOP_TIMEOUT}s of {sig!r}; output:\n{out}")
    return proc.returncode, out


def test_demo_answers_every_command(demo):
    proc, host, port = demo
    c = Client(host, port)
    try:
        assert c.ask("PING") == "PONG"
        assert c.ask("ECHO hello there") == "hello there"
        assert c.ask("GET missing") == "NIL"
        assert c.ask("SET greeting hello, world") == "OK"
        assert c.ask("GET greeting") == "VALUE hello, world"
        assert c.ask("set Greeting2 lower-case command") == "OK"
        assert c.ask("SET a:1 x") == "OK"
        assert c.ask("KEYS") == "KEYS Greeting2 a:1 greeting"
        assert c.ask("KEYS gr") == "KEYS greeting"
        assert c.ask("KEYS %") == "KEYS"        # no LIKE wildcard leak
        assert c.ask("COUNT") == "COUNT 3"
        assert c.ask("DEL a:1") == "DELETED 1"
        assert c.ask("DEL a:1") == "DELETED 0"
        assert c.ask("COUNT") == "COUNT 2"
        info = c.ask("INFO")
        assert info.startswith(f"INFO flowcoro={flowcoro.__version__} loop=Loop backend="), info
        assert c.ask("NOPE") == "ERR unknown command 'NOPE'"
        assert c.ask("SET onlykey") == "ERR usage: SET <key> <value>"
        assert c.ask("") == "ERR empty command"
        assert c.ask("PING") == "PONG"          # errors keep the connection open
        assert c.ask("QUIT") == "BYE"
        assert c.f.readline() == b""            # and QUIT closes it
    finally:
        c.close()
    rc, out = _stop(proc)
    assert rc == 0, out
    assert "stopped" in out


def test_demo_serves_clients_concurrently(demo):
    proc, host, port = demo
    clients = [Client(host, port) for _ in range(20)]
    try:
        # Interleave: every client has an open connection while the others talk.
        for i, c in enumerate(clients):
            assert c.ask(f"SET k{i:02d} v{i}") == "OK"
        for i, c in enumerate(reversed(clients)):
            assert c.ask(f"GET k{19 - i:02d}") == f"VALUE v{19 - i}"
        assert clients[0].ask("COUNT") == "COUNT 20"
    finally:
        for c in clients:
            c.close()
    assert _stop(proc)[0] == 0


def test_demo_sigint_shuts_down_gracefully_with_clients_connected(demo):
    proc, host, port = demo
    c1, c2 = Client(host, port), Client(host, port)
    try:
        assert c1.ask("SET x 1") == "OK"
        assert c2.ask("PING") == "PONG"
        rc, out = _stop(proc, signal.SIGINT)
        # Connected clients are told, then closed; nothing is left hanging.
        assert c1.readline() == "BYE server shutting down"
        assert c2.readline() == "BYE server shutting down"
        assert c1.f.readline() == b""
    finally:
        c1.close()
        c2.close()
    assert rc == 0, out
    assert "Traceback" not in out, out
    assert "shutting down" in out and "stopped" in out
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=2).close()


def test_demo_sigterm_shuts_down_too(demo):
    proc, host, port = demo
    rc, out = _stop(proc, signal.SIGTERM)
    assert rc == 0, out
    assert "stopped" in out and "Traceback" not in out


def test_demo_db_file_persists_across_restarts(tmp_path):
    db = tmp_path / "kv.sqlite3"
    for round_ in range(2):
        with _running(["examples/demo.py", "--port", "0", "--db", str(db)]) as (proc, host, port):
            c = Client(host, port)
            try:
                if round_ == 0:
                    assert c.ask("SET survivor yes") == "OK"
                else:
                    assert c.ask("GET survivor") == "VALUE yes"
            finally:
                c.close()
            assert _stop(proc)[0] == 0


def test_demo_port_in_use_is_a_clean_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "flowcoro", "demo", "--port", str(port)],
                           cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r
    assert "Traceback" not in r.stderr and "flowcoro demo:" in r.stderr, r.stderr


def test_cli_version_and_info():
    r = subprocess.run([sys.executable, "-m", "flowcoro", "--version"], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"flowcoro {flowcoro.__version__}", r
    r = subprocess.run([sys.executable, "-m", "flowcoro", "info"], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r
    assert re.search(r"^backends \S*poll", r.stdout, re.M), r.stdout


def test_cli_main_without_command_prints_help(capsys):
    from flowcoro.cli import main
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["hello.py", "timers.py"])
def test_example_runs(name):
    r = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr


def test_example_echo_server_selftest():
    r = subprocess.run([sys.executable, str(EXAMPLES / "echo_server.py"), "--port", "0", "--selftest"],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "echoed 3 lines: ok" in r.stdout
