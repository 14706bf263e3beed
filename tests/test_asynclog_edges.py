"""AsyncHandler edge paths: formatter, flush after close, a failing target, fork."""
import logging
import os
import sys

import pytest

from flowcoro.logging import AsyncHandler


class _Recorder(logging.Handler):
    def __init__(self, fail=False):
        super().__init__()
        self.lines, self.flushes, self.errors, self.fail = [], 0, [], fail

    def emit(self, record):
        if self.fail:
            raise OSError("disk full")
        self.lines.append(self.format(record))

    def flush(self):
        self.flushes += 1

    def handleError(self, record):
        self.errors.append(record.getMessage())


def _logger(name, handler):
    log = logging.getLogger(name)
    log.propagate = False
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    return log


def test_set_formatter_reaches_the_target():
    target = _Recorder()
    h = AsyncHandler(target)
    h.setFormatter(logging.Formatter("<%(message)s>"))
    _logger("fc.edge.fmt", h).info("x %d", 1)
    h.close()
    assert target.lines == ["<x 1>"]
    assert target.formatter is h.formatter


def test_flush_after_close_flushes_the_target():
    target = _Recorder()
    h = AsyncHandler(target)
    h.close()
    before = target.flushes
    h.flush()
    assert target.flushes == before + 1


def test_failing_target_goes_to_handle_error_and_the_writer_survives():
    target = _Recorder(fail=True)
    h = AsyncHandler(target)
    log = _logger("fc.edge.fail", h)
    log.info("first")
    h.flush()
    target.fail = False
    log.info("second")
    h.close()
    assert target.errors == ["first"]
    assert target.lines == ["second"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_child_after_fork_gets_its_own_writer(tmp_path):
    path = tmp_path / "fork.log"
    h = AsyncHandler(str(path))
    log = _logger("fc.edge.fork", h)
    log.info("parent")
    h.flush()
    pid = os.fork()
    if pid == 0:                                     # child
        code = 1
        try:
            log.info("child")
            h.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    h.close()
    assert path.read_text().splitlines() == ["parent", "child"]
