"""Non-blocking logging: a stdlib handler that never waits for the disk.

:class:`AsyncHandler` is a :class:`logging.Handler` whose ``emit`` puts the
record on a lock-free queue (:class:`flowcoro.lockfree.Queue`) and returns; a
background thread formats the records and writes them through a *target*
handler (a FileHandler, a StreamHandler, a RotatingFileHandler, ...).  A log
call on the event loop's thread therefore costs a queue put, never a write(2)
or an fsync-happy flush.

Theory of operation
-------------------
* The calling thread does the least that keeps the record faithful: if a
  ``%``-argument is mutable (a list, a dict, an object whose ``__str__`` may
  change), the message is rendered now (``record.msg = record.getMessage()``)
  so that later mutation cannot change what is logged; immutable arguments
  (str, int, float, bytes, None, ...) are rendered later by the writer.
  Tracebacks (``exc_info``) are rendered by the writer too (the traceback
  object keeps what it needs alive).
* The writer thread sleeps (futex, GIL released) until a record arrives,
  then drains everything queued, writes it and flushes the target *once per
  batch* — for a plain FileHandler/StreamHandler it writes to the stream
  directly, so a burst of N records costs one flush instead of N; any other
  target gets ``target.handle(record)`` per record, so rotation and custom
  emit logic keep working.
* Nothing is lost on a normal exit: ``flush()`` waits until everything queued
  before it is written; ``close()`` drains, stops the thread and closes the
  target; an ``atexit`` hook closes every live AsyncHandler, and the stdlib's
  ``logging.shutdown`` (also atexit) flushes and closes handlers too.  A
  record logged after close is written synchronously.  ``os._exit``, a fatal
  signal or a crash can lose what is still queued.
* Queue full (``maxsize`` records waiting: the disk is far slower than the
  producers): ``overflow="block"`` (default) waits for room, GIL released,
  so nothing is lost; ``overflow="drop"`` drops the record and counts it in
  ``dropped``.
* After ``os.fork()`` the child gets a fresh queue and writer thread (records
  queued in the parent at fork time are the parent's to write).
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref

from flowcoro._core.lockfree import Queue
from flowcoro.errors import InvalidArgumentError

__all__ = ["AsyncHandler"]

#: Records the writer takes per batch before it flushes (bounds how long a
#: flush can be deferred while records keep arriving).
BATCH = 1024

_IMMUTABLE = frozenset((str, int, float, bool, bytes, complex, type(None)))

_STOP = object()


class _Flush:
    __slots__ = ("done",)

    def __init__(self):
        self.done = threading.Event()


_live = weakref.WeakSet()


def _close_all():
    """atexit: drain and close every live AsyncHandler."""
    for h in list(_live):
        try:
            h.close()
        except Exception:           # pragma: no cover - best effort at exit
            pass


atexit.register(_close_all)


def _after_fork_in_child():
    for h in list(_live):
        h._restart_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class AsyncHandler(logging.Handler):
    """A logging handler that queues records and writes them from a thread.

    Examples::

        import logging
        from flowcoro.logging import AsyncHandler

        logging.basicConfig(handlers=[AsyncHandler("app.log")], level=logging.INFO)

        handler = AsyncHandler(logging.handlers.RotatingFileHandler("app.log", maxBytes=10**7))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logging.getLogger("svc").addHandler(handler)

    Args:
        target: where records go: a ``logging.Handler``, a file name (str or
            path-like: a ``logging.FileHandler`` is made), or None (a
            ``logging.StreamHandler`` on sys.stderr).
        level: this handler's level.
        maxsize: records queued at most (an int >= 1).
        overflow: "block" (wait for room; nothing lost) or "drop" (count in
            ``dropped``).
        mode: file mode when target is a file name.
        encoding: file encoding when target is a file name.

    Raises:
        InvalidArgumentError: bad target, maxsize or overflow.
    """

    def __init__(self, target=None, *, level=logging.NOTSET, maxsize=65536, overflow="block",
                 mode="a", encoding="utf-8"):
        if overflow not in ("block", "drop"):
            raise InvalidArgumentError("overflow", overflow, 'must be "block" or "drop"')
        if isinstance(target, (str, bytes, os.PathLike)):
            target = logging.FileHandler(target, mode=mode, encoding=encoding)
        elif target is None:
            target = logging.StreamHandler()
        elif not isinstance(target, logging.Handler):
            raise InvalidArgumentError("target", target,
                                       "must be a logging.Handler, a file name or None")
        self._maxsize = maxsize
        self._queue = Queue(maxsize)        # InvalidArgumentError for a bad maxsize
        super().__init__(level)
        self.target = target
        self._block = overflow == "block"
        self._closed = False
        self._close_lock = threading.Lock()
        #: Records dropped because the queue was full (overflow="drop").
        self.dropped = 0
        self._thread = None
        self._start()
        _live.add(self)

    def _start(self):
        self._thread = threading.Thread(target=self._writer, name="flowcoro-AsyncHandler",
                                        daemon=True)
        self._thread.start()

    def _restart_after_fork(self):
        self._queue = Queue(self._maxsize)
        self._close_lock = threading.Lock()
        if not self._closed:
            self._start()

    def setFormatter(self, fmt):
        """Sets the formatter here and on the target (which does the formatting)."""
        super().setFormatter(fmt)
        self.target.setFormatter(fmt)

    # ---- calling thread ---------------------------------------------------------

    def handle(self, record):
        """Filters and queues the record (no handler lock: the queue is lock-free)."""
        rv = self.filter(record) if self.filters else True
        if rv:
            if isinstance(rv, logging.LogRecord):      # 3.12+: a filter may replace it
                record = rv
            self.emit(record)
        return rv

    def emit(self, record):
        """Queues the record for the writer thread; never writes.

        If the handler is closed the record is written synchronously.
        """
        try:
            args = record.args
            if args:
                if type(args) is tuple:
                    for a in args:
                        if type(a) not in _IMMUTABLE:
                            record.msg = record.getMessage()    # freeze mutable arguments now
                            record.args = None
                            break
                else:                                   # a mapping: always freeze
                    record.msg = record.getMessage()
                    record.args = None
            if self._closed:
                self.target.handle(record)
                return
            q = self._queue
            if not q._offer(record):
                if self._block:
                    q.put(record)
                else:
                    self.dropped += 1
            if self._closed:            # close() ran meanwhile: nobody else will
                self._drain_sync()
        except RecursionError:                  # as logging.StreamHandler does
            raise
        except Exception:
            self.handleError(record)

    def flush(self):
        """Waits until every record queued so far is written and flushed."""
        if self._closed or self._thread is None or not self._thread.is_alive():
            self.target.flush()
            return
        if threading.current_thread() is self._thread:
            self.target.flush()
            return
        marker = _Flush()
        self._queue.put(marker)
        # Wait in slices only to notice a writer that died (interpreter
        # teardown); a live writer sets the event as soon as it gets there.
        while not marker.done.wait(0.1):
            if not self._thread.is_alive():
                self._drain_sync()
                return

    def close(self):
        """Writes everything queued, stops the writer thread, closes the target."""
        with self._close_lock:
            if self._closed:
                return
            thread = self._thread
            if thread is not None and thread.is_alive() and thread is not threading.current_thread():
                self._queue.put(_STOP)
                thread.join()
            self._closed = True
        self._drain_sync()          # records queued between _STOP and _closed
        _live.discard(self)
        try:
            self.target.close()
        finally:
            super().close()

    def _drain_sync(self):
        """Writes whatever is still queued, on the calling thread."""
        q = self._queue
        while True:
            item = q._poll(None)
            if item is None:
                break
            if item is _STOP:
                continue
            if type(item) is _Flush:
                item.done.set()
                continue
            self._write_one(self.target, item, False)
        self.target.flush()

    # ---- writer thread ------------------------------------------------------------

    def _writer(self):
        q = self._queue
        while True:
            item = q.get()
            stop = self._write_batch(q, item)
            if stop:
                return

    def _write_batch(self, q, item):
        """Writes item and whatever else is queued (up to BATCH); True on _STOP."""
        target = self.target
        fast = type(target) in (logging.StreamHandler, logging.FileHandler)
        stop = False
        flushes = []
        n = 0
        with target.lock if target.lock is not None else _nolock:
            while item is not None:
                if item is _STOP:
                    stop = True
                    break
                if type(item) is _Flush:
                    flushes.append(item)
                else:
                    self._write_one(target, item, fast)
                n += 1
                if n >= BATCH:
                    break
                item = q._poll(None)
            try:
                target.flush()
            except Exception:                   # pragma: no cover
                pass
        for f in flushes:
            f.done.set()
        return stop

    def _write_one(self, target, record, fast):
        if record.levelno < target.level:       # what Logger.callHandlers checks
            return
        try:
            if fast and target.stream is not None:
                if target.filter(record):
                    target.stream.write(target.format(record) + target.terminator)
            else:
                # Handler.handle takes target.lock, an RLock we may already hold.
                target.handle(record)
        except RecursionError:
            raise
        except Exception:
            target.handleError(record)


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_nolock = _NoLock()
