"""RingBuffer, ByteRingBuffer, Stack, and the executor's WorkDeque/EventCount."""
import gc
import os
import random
import sys
import threading
import time
import weakref

import pytest

from flowcoro._core.lockfree import EventCount, WorkDeque
from flowcoro.errors import (InvalidArgumentError, InvalidStateError, QueueEmpty, QueueFull,
                             StackEmpty, StackFull)
from flowcoro.lockfree import ByteRingBuffer, RingBuffer, Stack

#: Stress sizes scale with FC_STRESS_SCALE (`make stress` raises it).
SCALE = max(1, int(os.environ.get("FC_STRESS_SCALE", "1")))
pytestmark = pytest.mark.timeout(60 * SCALE)


class Obj:
    """A weak-referenceable item."""


# ---- RingBuffer -------------------------------------------------------------------

def test_ring_fifo_and_bounds():
    r = RingBuffer(3)
    assert r.capacity == 3 and len(r) == 0
    for i in range(3):
        r.put_nowait(i)
    with pytest.raises(QueueFull):
        r.put_nowait(3)                          # bound is 3 though storage is 4
    assert r.get_nowait() == 0
    r.put(3)
    assert [r.get(), r.get(), r.get()] == [1, 2, 3]
    with pytest.raises(QueueEmpty):
        r.get_nowait()
    with pytest.raises(QueueEmpty):
        r.get(timeout=0.01)


@pytest.mark.parametrize("cls", [RingBuffer, ByteRingBuffer])
@pytest.mark.parametrize("bad", [0, -3, 2.0, None, False])
def test_ring_bad_capacity(cls, bad):
    with pytest.raises(InvalidArgumentError):
        cls(bad)


def test_ring_two_threads_exact_order():
    r = RingBuffer(4)
    n = 20000

    def producer():
        for i in range(n):
            r.put(i)

    t = threading.Thread(target=producer)
    t.start()
    got = [r.get(timeout=10) for _ in range(n)]
    t.join()
    assert got == list(range(n))


def test_ring_second_consumer_is_refused():
    r = RingBuffer(1)
    started = threading.Event()
    got = []

    def blocked_consumer():
        started.set()
        got.append(r.get(timeout=10))        # holds the consumer end while it waits

    t = threading.Thread(target=blocked_consumer)
    t.start()
    started.wait()
    time.sleep(0.1)
    with pytest.raises(InvalidStateError):
        r.get_nowait()
    r.put_nowait("ok")                       # the producer end is free
    t.join()
    assert got == ["ok"]
    r.put_nowait("again")                    # the consumer end changed hands
    assert r.get_nowait() == "again"


def test_ring_references():
    o = Obj()
    before = sys.getrefcount(o)
    r = RingBuffer(8)
    for _ in range(5):
        r.put(o)
    full = RingBuffer(1)
    full.put(1)
    with pytest.raises(QueueFull):
        full.put_nowait(o)
    with pytest.raises(QueueFull):
        full.put(o, timeout=0.01)
    assert sys.getrefcount(o) == before + 5
    del r
    gc.collect()
    assert sys.getrefcount(o) == before


# ---- ByteRingBuffer -----------------------------------------------------------------

def test_bytes_basic():
    b = ByteRingBuffer(5)
    assert b.write(b"abcdefg") == 5 and len(b) == 5
    assert b.write(b"x") == 0
    assert b.read(3) == b"abc"
    assert b.write(memoryview(b"xyz")) == 3
    out = bytearray(10)
    assert b.readinto(out) == 5 and out[:5] == b"dexyz"
    assert b.read() == b"" and b.read(0) == b""


def test_bytes_two_threads():
    b = ByteRingBuffer(1000)
    data = bytes(random.Random(1).getrandbits(8) for _ in range(300000))

    def producer():
        rng = random.Random(2)
        i = 0
        while i < len(data):
            n = b.write(data[i:i + rng.randint(1, 3000)])
            i += n
            if n == 0:
                time.sleep(0)

    t = threading.Thread(target=producer)
    t.start()
    got = bytearray()
    deadline = time.monotonic() + 30
    while len(got) < len(data) and time.monotonic() < deadline:
        chunk = b.read(random.randint(1, 2000))
        if not chunk:
            time.sleep(0)
        got += chunk
    t.join()
    assert bytes(got) == data


# ---- Stack ------------------------------------------------------------------------

def test_stack_lifo_and_errors():
    s = Stack()
    assert s.maxsize == 2**32 - 2 and len(s) == 0
    for i in range(1000):                       # crosses several node chunks
        s.push(i)
    assert len(s) == 1000
    assert [s.pop() for _ in range(1000)] == list(range(999, -1, -1))
    with pytest.raises(StackEmpty):
        s.pop()
    with pytest.raises(IndexError):             # like list.pop()
        s.pop()
    b = Stack(2)
    b.push(1)
    b.push(2)
    with pytest.raises(StackFull):
        b.push(3)
    assert b.pop() == 2
    b.push(3)
    assert [b.pop(), b.pop()] == [3, 1]


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", 2**32])
def test_stack_bad_maxsize(bad):
    with pytest.raises(InvalidArgumentError):
        Stack(bad)


def test_stack_references():
    items = [Obj() for _ in range(10)]
    refs = [weakref.ref(o) for o in items]
    s = Stack(5)
    for o in items[:5]:
        s.push(o)
    o = items[5]
    before = sys.getrefcount(o)
    with pytest.raises(StackFull):
        s.push(o)
    assert sys.getrefcount(o) == before
    del items, o
    assert all(r() is not None for r in refs[:5]) and all(r() is None for r in refs[5:])
    del s
    assert all(r() is None for r in refs)


def test_stack_threads_exactly_once():
    s = Stack(64)
    per, nthreads = 3000 * SCALE, 4
    got = [[] for _ in range(nthreads)]

    def worker(k):
        rng = random.Random(k)
        for i in range(per):
            while True:
                try:
                    s.push((k, i))
                    break
                except StackFull:
                    try:
                        got[k].append(s.pop())
                    except StackEmpty:
                        pass
            if rng.random() < 0.5:
                try:
                    got[k].append(s.pop())
                except StackEmpty:
                    pass

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    rest = []
    while len(s):
        rest.append(s.pop())
    allgot = [x for g in got for x in g] + rest
    assert len(allgot) == per * nthreads
    assert set(allgot) == {(k, i) for k in range(nthreads) for i in range(per)}


# ---- WorkDeque -----------------------------------------------------------------------

def test_deque_owner_lifo_thief_fifo():
    d = WorkDeque(capacity=2)
    assert d.owner == threading.get_ident()
    for i in range(100):                        # grows past the initial array
        d.push(i)
    assert len(d) == 100
    assert d.pop() == 99
    got = []
    t = threading.Thread(target=lambda: got.extend(d.steal() for _ in range(3)))
    t.start()
    t.join()
    assert got == [0, 1, 2]
    assert d.pop() == 98


def test_deque_rules():
    d = WorkDeque()
    with pytest.raises(InvalidArgumentError):
        d.push(None)
    errors = []

    def intruder():
        for op in (lambda: d.push(1), d.pop):
            try:
                op()
            except InvalidStateError as e:
                errors.append(e)

    t = threading.Thread(target=intruder)
    t.start()
    t.join()
    assert len(errors) == 2
    assert d.pop() is None and d.steal() is None


def test_deque_references():
    o = Obj()
    r = weakref.ref(o)
    d = WorkDeque()
    d.push(o)
    d.push(o)
    del o
    assert r() is not None
    del d
    assert r() is None


def test_deque_thieves_exactly_once():
    d = WorkDeque(capacity=16)
    n, thieves = 20000 * SCALE, 3
    stolen = [[] for _ in range(thieves)]
    done = threading.Event()

    def thief(k):
        while True:
            x = d.steal()
            if x is not None:
                stolen[k].append(x)
            elif done.is_set() and len(d) == 0:
                x = d.steal()
                if x is None:
                    return
                stolen[k].append(x)

    ts = [threading.Thread(target=thief, args=(k,)) for k in range(thieves)]
    for t in ts:
        t.start()
    owned = []
    rng = random.Random(3)
    for i in range(n):
        d.push(i)
        if rng.random() < 0.4:
            x = d.pop()
            if x is not None:
                owned.append(x)
    while (x := d.pop()) is not None:
        owned.append(x)
    done.set()
    for t in ts:
        t.join()
    allgot = owned + [x for s in stolen for x in s]
    assert sorted(allgot) == list(range(n))
    for s in stolen:
        assert s == sorted(s)                 # each thief sees increasing items


# ---- EventCount ------------------------------------------------------------------------

def test_eventcount_protocol():
    ec = EventCount()
    key = ec.prepare()
    ec.notify()
    assert ec.wait(key, timeout=5) is True      # notified since prepare: returns at once
    key = ec.prepare()
    t0 = time.monotonic()
    assert ec.wait(key, timeout=0.05) is False
    assert time.monotonic() - t0 >= 0.04
    key = ec.prepare()
    ec.cancel()
    woke = []

    def waiter():
        k = ec.prepare()
        woke.append(ec.wait(k, timeout=10))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.1)
    ec.notify_all()
    t.join()
    assert woke == [True]
    with pytest.raises(InvalidArgumentError):
        ec.wait(ec.prepare(), timeout=-1)
