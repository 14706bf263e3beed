"""Object and buffer pools.

* :class:`ObjectPool` keeps idle, reusable objects (parsers, encoders,
  bytearrays, numpy scratch arrays) so hot paths stop building and
  collecting them.  ``acquire`` takes an idle object or builds one with the
  factory; ``release`` resets it (your hook) and keeps it if fewer than
  ``max_size`` are idle.  The idle set is a lock-free stack, so threads and
  coroutines share one pool without a lock.
* :class:`BufferPool` lends byte buffers by power-of-two size class from C
  (csrc/pool/bufpool.c): a read loop that acquires and releases buffers of a
  steady size calls malloc never.  ``PooledBuffer`` supports the buffer
  protocol, so ``sock.recv_into(buf)`` and ``memoryview(buf)`` work on it.

Example::

    from flowcoro.pool import ObjectPool

    pool = ObjectPool(bytearray, reset=lambda b: b.clear(), max_size=64)
    with pool.borrow() as buf:
        buf += payload
        send(buf)
"""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from flowcoro._core.lockfree import BufferPool, PooledBuffer, Stack
from flowcoro.errors import InvalidArgumentError

__all__ = ["BufferPool", "ObjectPool", "PooledBuffer"]

T = TypeVar("T")
_MISSING = object()


class _Lease(Generic[T]):
    """``with pool.borrow() as obj:`` — releases obj on exit."""

    __slots__ = ("_pool", "_obj")

    def __init__(self, pool: ObjectPool[T]):
        self._pool = pool
        self._obj = _MISSING

    def __enter__(self) -> T:
        self._obj = self._pool.acquire()
        return self._obj

    def __exit__(self, *exc) -> None:
        obj, self._obj = self._obj, _MISSING
        if obj is not _MISSING:
            self._pool.release(obj)


class ObjectPool(Generic[T]):
    """A pool of reusable objects with a reset hook and a bound on idle ones.

    ``max_size`` bounds how many *idle* objects the pool keeps, not how many
    may be out at once: ``acquire`` never blocks (it builds a new object when
    none is idle), and ``release`` beyond ``max_size`` lets the object go.
    Thread-safe without a lock (the idle set is a :class:`flowcoro.lockfree.Stack`).

    Examples::

        pool = ObjectPool(lambda: bytearray(65536), max_size=32)
        buf = pool.acquire()
        try:
            ...
        finally:
            pool.release(buf)

        with pool.borrow() as buf:      # the same, as a context manager
            ...

    Args:
        factory: builds a new object, called with no arguments.
        reset: called as ``reset(obj)`` on release, to make it like new (clear
            a buffer, rewind a parser).  If it raises, the object is dropped
            and the error propagates from ``release``.
        max_size: idle objects kept at most (an int >= 1).

    Raises:
        InvalidArgumentError: factory or reset not callable; bad max_size.
    """

    def __init__(self, factory: Callable[[], T], reset: Callable[[T], object] | None = None,
                 max_size: int = 64):
        if not callable(factory):
            raise InvalidArgumentError("factory", factory, "must be callable")
        if reset is not None and not callable(reset):
            raise InvalidArgumentError("reset", reset, "must be callable or None")
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size <= 0:
            raise InvalidArgumentError("max_size", max_size, "must be an int > 0")
        self._factory = factory
        self._reset = reset
        self._max_size = max_size
        self._idle: Stack[T] = Stack(max_size)
        self.created = 0        #: objects built by the factory (statistics)

    @property
    def max_size(self) -> int:
        """Idle objects kept at most."""
        return self._max_size

    def __len__(self) -> int:
        """Idle objects in the pool now."""
        return len(self._idle)

    def acquire(self) -> T:
        """Takes an idle object, or builds one with the factory."""
        obj = self._idle._poll(_MISSING)
        if obj is _MISSING:
            obj = self._factory()
            self.created += 1
        return obj

    def release(self, obj: T) -> None:
        """Resets obj and keeps it for reuse (drops it if max_size are idle).

        Raises:
            Exception: whatever ``reset`` raised (obj is then dropped).
        """
        if self._reset is not None:
            self._reset(obj)
        self._idle._offer(obj)

    def borrow(self) -> _Lease[T]:
        """A context manager: acquire on enter, release on exit."""
        return _Lease(self)

    def clear(self) -> None:
        """Drops every idle object."""
        while self._idle._poll(_MISSING) is not _MISSING:
            pass

    def __repr__(self) -> str:
        return f"<ObjectPool idle={len(self._idle)} max_size={self._max_size} created={self.created}>"
