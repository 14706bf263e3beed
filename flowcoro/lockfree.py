"""Lock-free containers for handing objects between threads and event loops.

Where threads meet the loop — a worker thread feeding results to a coroutine,
the loop handing jobs to threads, a logger queueing records for a writer
thread — these replace :class:`queue.Queue` (a mutex and three condition
variables) with C containers that take no lock on their fast paths.

* :class:`Queue` — bounded multi-producer multi-consumer FIFO (Vyukov).
  ``put_nowait``/``get_nowait`` never block; ``put``/``get`` wait with the
  GIL released (``timeout`` in seconds); ``await aput()``/``await aget()``
  wait without blocking the loop, on FlowCoro's loop or asyncio's.
* :class:`RingBuffer` — bounded single-producer single-consumer FIFO of
  objects: the cheapest hand-off when exactly one thread puts and one gets.
* :class:`ByteRingBuffer` — the same for a byte stream (``write``/``read``).
* :class:`Stack` — lock-free LIFO (Treiber, ABA-safe).

Errors (all in :mod:`flowcoro.errors`): :class:`~flowcoro.errors.QueueFull`
and :class:`~flowcoro.errors.QueueEmpty` (also ``queue.Full``/``queue.Empty``),
:class:`~flowcoro.errors.StackFull`, :class:`~flowcoro.errors.StackEmpty`
(an IndexError), :class:`~flowcoro.errors.InvalidArgumentError` for a bad
size or timeout, :class:`~flowcoro.errors.InvalidStateError` when a second
thread enters a busy end of a single-producer/consumer ring.

Example::

    from flowcoro.lockfree import Queue

    results = Queue(1024)

    def worker():                       # any thread
        results.put(compute())          # waits (GIL released) if full

    async def consumer():               # any loop
        while True:
            handle(await results.aget())

Objects inside a container are owned by it (a reference each); dropping a
non-empty container releases them.  See docs/lockfree.md.
"""
from flowcoro._core.lockfree import ByteRingBuffer, Queue, RingBuffer, Stack

__all__ = ["ByteRingBuffer", "Queue", "RingBuffer", "Stack"]
