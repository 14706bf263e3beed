"""Timers on FlowCoro: call_later, call_at, cancellation and FIFO ties.

    python examples/timers.py

FlowCoro's timer heap orders timers by (deadline, scheduling order), so
callbacks due at the same instant run in the order they were scheduled
(asyncio makes no such promise).
"""
import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import flowcoro  # noqa: E402


async def main():
    """Schedule a handful of timers and show the order in which they fire."""
    loop = asyncio.get_running_loop()
    fired = []
    done = loop.create_future()
    start = loop.time()

    def tick(label):
        fired.append(label)
        print(f"{loop.time() - start:6.3f}s  {label}")

    loop.call_later(0.05, tick, "call_later(0.05)")
    loop.call_later(0.01, tick, "call_later(0.01)")
    when = start + 0.03
    for i in range(3):                      # three timers with one deadline:
        loop.call_at(when, tick, f"call_at(+0.03) #{i}")   # they fire in this order
    cancelled = loop.call_later(0.02, tick, "never printed")
    cancelled.cancel()
    loop.call_later(0.06, done.set_result, None)

    # asyncio's own timeouts run on the same heap.
    try:
        async with asyncio.timeout(0.04):
            await asyncio.sleep(10)
    except TimeoutError:
        tick("asyncio.timeout(0.04) expired")

    await done
    assert fired.index("call_at(+0.03) #0") < fired.index("call_at(+0.03) #1") < fired.index("call_at(+0.03) #2")
    assert "never printed" not in fired
    print(f"{len(fired)} timers fired, cancelled one did not")


if __name__ == "__main__":
    flowcoro.run(main())
