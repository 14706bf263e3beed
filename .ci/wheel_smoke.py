"""Smoke test of an installed FlowCoro wheel (run by `make wheel`).

Run it with the interpreter of a fresh venv the wheel was installed into,
from a directory outside the source tree, so that what is imported is the
wheel's copy: it checks that, runs a coroutine on flowcoro.run, and checks
that the type stubs were shipped.
"""
import asyncio
import importlib.resources
import os
import sys

import flowcoro
import flowcoro._core.loop as core

here = os.path.realpath(os.getcwd())
assert not os.path.realpath(flowcoro.__file__).startswith(here) or "site-packages" in flowcoro.__file__, \
    f"flowcoro imported from the source tree: {flowcoro.__file__}"
assert "site-packages" in core.__file__, core.__file__


async def main():
    """Sleep on a timer, hop through a thread, return a value."""
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    assert isinstance(loop, flowcoro.Loop), loop
    return await loop.run_in_executor(None, sum, [40, 2])


assert flowcoro.run(main()) == 42
names = sorted(p.name for p in importlib.resources.files("flowcoro._core").iterdir())
stubs = [n for n in names if n.endswith(".pyi")]
assert "loop.pyi" in stubs, names
assert importlib.resources.files("flowcoro").joinpath("py.typed").is_file()
print(f"wheel OK: flowcoro {flowcoro.__version__} on Python {sys.version.split()[0]}, "
      f"backends {core.available_backends()}, stubs {stubs}")
