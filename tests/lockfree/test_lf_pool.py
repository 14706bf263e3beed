"""flowcoro.pool: ObjectPool and the C BufferPool."""
import gc
import threading
import weakref

import pytest

from flowcoro.errors import InvalidArgumentError
from flowcoro.pool import BufferPool, ObjectPool, PooledBuffer

pytestmark = pytest.mark.timeout(60)


# ---- ObjectPool -------------------------------------------------------------------

def test_reuse_and_reset():
    resets = []
    pool = ObjectPool(bytearray, reset=lambda b: (resets.append(len(b)), b.clear()), max_size=2)
    a = pool.acquire()
    a += b"hello"
    pool.release(a)
    assert resets == [5] and len(pool) == 1
    b = pool.acquire()
    assert b is a and b == bytearray() and len(pool) == 0
    assert pool.created == 1


def test_max_size_bounds_idle_objects():
    pool = ObjectPool(object, max_size=2)
    objs = [pool.acquire() for _ in range(5)]    # acquire never blocks
    assert pool.created == 5
    for o in objs:
        pool.release(o)
    assert len(pool) == 2
    pool.clear()
    assert len(pool) == 0


def test_dropped_objects_are_freed():
    class Item:
        pass

    pool = ObjectPool(Item, max_size=1)
    a, b = pool.acquire(), pool.acquire()
    ra, rb = weakref.ref(a), weakref.ref(b)
    pool.release(a)
    pool.release(b)                              # over max_size: let go
    del a, b
    gc.collect()
    assert ra() is not None and rb() is None
    del pool
    gc.collect()
    assert ra() is None


def test_borrow_context_manager():
    pool = ObjectPool(list, reset=list.clear)
    with pool.borrow() as x:
        x.append(1)
        assert len(pool) == 0
    assert len(pool) == 1
    with pytest.raises(ZeroDivisionError):
        with pool.borrow() as y:
            assert y is x and y == []
            1 / 0
    assert len(pool) == 1                        # released even on error


def test_reset_error_drops_object():
    def bad_reset(obj):
        raise ValueError("cannot reset")

    pool = ObjectPool(list, reset=bad_reset)
    obj = pool.acquire()
    with pytest.raises(ValueError):
        pool.release(obj)
    assert len(pool) == 0


@pytest.mark.parametrize("kwargs", [
    {"factory": 3},
    {"factory": list, "reset": "no"},
    {"factory": list, "max_size": 0},
    {"factory": list, "max_size": -1},
    {"factory": list, "max_size": 2.5},
])
def test_bad_arguments(kwargs):
    with pytest.raises(InvalidArgumentError):
        ObjectPool(**kwargs)


def test_threads_never_share_an_object():
    pool = ObjectPool(lambda: [None], max_size=8)
    errors = []

    def worker(k):
        for i in range(3000):
            obj = pool.acquire()
            obj[0] = (k, i)
            if obj[0] != (k, i):
                errors.append("shared")
            pool.release(obj)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    assert len(pool) <= 8


# ---- BufferPool ------------------------------------------------------------------------

def test_size_classes_and_buffer_protocol():
    pool = BufferPool()
    for size, cap in [(0, 256), (1, 256), (256, 256), (257, 512), (65536, 65536),
                      (65537, 131072), ((1 << 20) + 5, (1 << 20) + 5)]:
        with pool.acquire(size) as buf:
            assert isinstance(buf, PooledBuffer)
            assert len(buf) == size and buf.capacity == cap
            m = memoryview(buf)
            assert len(m) == size and not m.readonly
            m[:3] = b"abc"[:size]
            assert bytes(buf)[:3] == b"abc"[:size]
            m.release()
    st = pool.stats()
    assert st["outstanding"] == 0


def test_steady_state_allocates_nothing():
    pool = BufferPool()
    for _ in range(3):
        pool.acquire(65536).release()
    misses = pool.stats()["misses"]
    for _ in range(1000):
        b = pool.acquire(65536)
        b.release()
    st = pool.stats()
    assert st["misses"] == misses and st["hits"] >= 1000


def test_release_rules():
    pool = BufferPool()
    buf = pool.acquire(100)
    m = memoryview(buf)
    with pytest.raises(BufferError):
        buf.release()                            # a view is alive
    m.release()
    buf.release()
    buf.release()                                # idempotent
    assert buf.released and len(buf) == 0 and buf.capacity == 0
    with pytest.raises(ValueError):
        memoryview(buf)


def test_buffers_outlive_their_pool_object():
    pool = BufferPool()
    bufs = [pool.acquire(1000) for _ in range(4)]
    del pool
    gc.collect()
    for b in bufs:
        memoryview(b)[:] = b"x" * 1000
        assert bytes(b) == b"x" * 1000
        b.release()


def test_garbage_collected_buffers_return_to_the_pool():
    pool = BufferPool()
    pool.acquire(4096)                           # dropped at once
    st = pool.stats()
    assert st["outstanding"] == 0 and st["cached"] == 1


def test_recv_into_a_pooled_buffer():
    import socket
    a, b = socket.socketpair()
    try:
        pool = BufferPool()
        a.sendall(b"ping")
        with pool.acquire(1024) as buf:
            n = b.recv_into(buf)
            assert bytes(memoryview(buf)[:n]) == b"ping"
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("bad", [-1, 1.5, "x", None])
def test_bufferpool_bad_arguments(bad):
    with pytest.raises(InvalidArgumentError):
        BufferPool().acquire(bad)
    with pytest.raises(InvalidArgumentError):
        BufferPool(bad if bad is not None else -5)


def test_bufferpool_threads():
    pool = BufferPool()
    errors = []

    def worker(k):
        for i in range(2000):
            with pool.acquire(100 + (i * 37) % 5000) as buf:
                m = memoryview(buf)
                tag = bytes([k]) * len(m)
                m[:] = tag
                if bytes(m) != tag:
                    errors.append((k, i))
                m.release()

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors and pool.stats()["outstanding"] == 0
