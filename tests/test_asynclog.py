"""flowcoro.logging.AsyncHandler: nothing lost, nothing written on the caller's
thread, flush/close/atexit semantics."""
import asyncio
import logging
import logging.handlers
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from flowcoro.errors import InvalidArgumentError
from flowcoro.logging import AsyncHandler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _logger(name, handler):
    lg = logging.getLogger(f"test_asynclog.{name}")
    lg.handlers[:] = [handler]
    lg.setLevel(logging.DEBUG)
    lg.propagate = False
    return lg


def _run_child(code, tmp_path, timeout=60):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("how", ["return", "sys.exit", "basicConfig", "thread"])
def test_nothing_lost_at_normal_exit(tmp_path, how):
    """A process logs N lines and exits without closing anything: N lines on disk."""
    n = 20000
    code = f"""
        import logging, sys, threading
        from flowcoro.logging import AsyncHandler
        how = {how!r}
        if how == "basicConfig":
            logging.basicConfig(handlers=[AsyncHandler("out.log")], level=logging.INFO,
                                format="%(message)s")
            log = logging.getLogger("child")
        else:
            log = logging.getLogger("child")
            h = AsyncHandler("out.log")
            h.setFormatter(logging.Formatter("%(message)s"))
            log.addHandler(h)
            log.setLevel(logging.INFO)
        def emit(lo, hi):
            for i in range(lo, hi):
                log.info("line %d", i)
        if how == "thread":
            t = threading.Thread(target=emit, args=({n} // 2, {n}))   # non-daemon
            t.start()
            emit(0, {n} // 2)
        else:
            emit(0, {n})
        if how == "sys.exit":
            sys.exit(0)
    """
    r = _run_child(code, tmp_path)
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "out.log").read_text().splitlines()
    assert len(lines) == n
    assert sorted(int(x.split()[1]) for x in lines) == list(range(n))
    if how != "thread":
        assert lines == [f"line {i}" for i in range(n)]       # in order


def test_flush_waits_for_the_disk(tmp_path):
    path = tmp_path / "a.log"
    h = AsyncHandler(str(path))
    h.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    lg = _logger("flush", h)
    for i in range(100):
        lg.warning("w%d", i)
    h.flush()
    assert path.read_text().splitlines() == [f"WARNING w{i}" for i in range(100)]
    h.close()
    h.close()                                    # idempotent


def test_mutable_arguments_are_frozen_at_call_time(tmp_path):
    path = tmp_path / "m.log"
    h = AsyncHandler(path)
    h.setFormatter(logging.Formatter("%(message)s"))
    lg = _logger("mutable", h)
    data = [1, 2]
    lg.info("data=%s n=%d", data, 7)
    data.append(3)                               # after the call: must not show
    lg.info("map=%(k)s", {"k": "v"})
    h.close()
    assert path.read_text().splitlines() == ["data=[1, 2] n=7", "map=v"]


def test_exceptions_and_levels(tmp_path):
    path = tmp_path / "e.log"
    target = logging.FileHandler(path)
    target.setLevel(logging.WARNING)             # the target's level is honoured
    h = AsyncHandler(target)
    lg = _logger("exc", h)
    lg.info("dropped by the target's level")
    try:
        1 / 0
    except ZeroDivisionError:
        lg.exception("boom")
    h.close()
    text = path.read_text()
    assert "dropped" not in text
    assert "boom" in text and "ZeroDivisionError" in text and "Traceback" in text


def test_any_target_handler(tmp_path):
    path = tmp_path / "r.log"
    target = logging.handlers.RotatingFileHandler(path, maxBytes=500, backupCount=3)
    h = AsyncHandler(target)
    h.setFormatter(logging.Formatter("%(message)s"))
    lg = _logger("rotating", h)
    for i in range(200):
        lg.info("record %04d", i)
    h.close()
    files = sorted(tmp_path.glob("r.log*"))
    assert len(files) == 4                       # rotation happened on the writer thread
    assert path.read_text().splitlines()[-1] == "record 0199"


def test_emit_never_writes_on_the_calling_thread(tmp_path):
    writers = set()

    class Recording(logging.Handler):
        def emit(self, record):
            writers.add(threading.get_ident())

    h = AsyncHandler(Recording())
    lg = _logger("thread", h)
    for i in range(50):
        lg.info("x %d", i)
    h.flush()
    assert writers and threading.get_ident() not in writers
    h.close()


def test_overflow_drop_counts(tmp_path):
    gate = threading.Event()

    class Slow(logging.Handler):
        def emit(self, record):
            gate.wait(10)

    h = AsyncHandler(Slow(), maxsize=4, overflow="drop")
    lg = _logger("drop", h)
    for i in range(100):
        lg.info("x")
    assert h.dropped >= 100 - 4 - 1 - 1        # queue + one in the writer's hands
    gate.set()
    h.close()


def test_overflow_block_loses_nothing(tmp_path):
    got = []

    class Slowish(logging.Handler):
        def emit(self, record):
            time.sleep(0.0005)
            got.append(record.getMessage())

    h = AsyncHandler(Slowish(), maxsize=2)
    lg = _logger("block", h)
    for i in range(200):
        lg.info("m%d", i)
    h.close()
    assert got == [f"m{i}" for i in range(200)]


def test_logging_after_close_is_synchronous(tmp_path):
    path = tmp_path / "late.log"
    h = AsyncHandler(path)
    h.setFormatter(logging.Formatter("%(message)s"))
    lg = _logger("late", h)
    lg.info("before")
    h.close()
    lg.info("after")
    assert path.read_text().splitlines() == ["before", "after"]
    h.target.close()


@pytest.mark.parametrize("kwargs", [
    {"target": 42},
    {"target": None, "maxsize": 0},
    {"target": None, "overflow": "sometimes"},
])
def test_bad_arguments(kwargs):
    with pytest.raises(InvalidArgumentError):
        AsyncHandler(**kwargs)


def test_logging_from_the_loop(loop, tmp_path):
    path = tmp_path / "loop.log"
    h = AsyncHandler(path)
    h.setFormatter(logging.Formatter("%(message)s"))
    lg = _logger("loop", h)

    async def main():
        for i in range(100):
            lg.info("tick %d", i)
            if i % 10 == 0:
                await asyncio.sleep(0)

    loop.run_until_complete(main())
    h.close()
    assert len(path.read_text().splitlines()) == 100


def test_fork_child_gets_its_own_writer(tmp_path):
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    code = """
        import logging, os
        from flowcoro.logging import AsyncHandler
        h = AsyncHandler("f.log")
        h.setFormatter(logging.Formatter("%(process)d %(message)s"))
        log = logging.getLogger("f"); log.addHandler(h); log.setLevel(logging.INFO)
        log.info("parent-before")
        h.flush()
        pid = os.fork()
        if pid == 0:
            log.info("child")
            h.close()
            os._exit(0)
        os.waitpid(pid, 0)
        log.info("parent-after")
    """
    r = _run_child(code, tmp_path)
    assert r.returncode == 0, r.stderr
    msgs = sorted(line.split(" ", 1)[1] for line in (tmp_path / "f.log").read_text().splitlines())
    assert msgs == ["child", "parent-after", "parent-before"]
