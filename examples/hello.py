"""Hello, loop: run coroutines on FlowCoro, two ways.

    python examples/hello.py
"""
import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import flowcoro  # noqa: E402


async def greet(name, delay):
    """Say hello after ``delay`` seconds and return the greeting."""
    await asyncio.sleep(delay)
    return f"hello, {name}"


async def main():
    """Run three greetings concurrently and one blocking call in a thread."""
    loop = asyncio.get_running_loop()
    print(f"running on {type(loop).__module__}.{type(loop).__name__} (backend {loop.backend})")
    # Concurrent: takes ~0.03 s, not 0.06 s.
    greetings = await asyncio.gather(greet("world", 0.03), greet("loop", 0.02), greet("you", 0.01))
    for g in greetings:
        print(g)
    # Blocking work goes to the default executor, as on any asyncio loop.
    total = await loop.run_in_executor(None, sum, range(1_000_000))
    print(f"sum computed in a worker thread: {total}")
    return len(greetings)


if __name__ == "__main__":
    # 1. flowcoro.run(): like asyncio.run(), on a new FlowCoro loop.
    n = flowcoro.run(main())
    print(f"flowcoro.run returned {n}")

    # 2. flowcoro.install(): every asyncio.run() / new_event_loop() from now
    #    on uses FlowCoro, so unmodified asyncio programs get the fast loop.
    flowcoro.install()
    asyncio.run(main())
