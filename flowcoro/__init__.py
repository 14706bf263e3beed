"""FlowCoro: a C-accelerated, asyncio-compatible coroutine runtime.

Public API (frozen by tests/test_exports.py):
    run, new_event_loop, Loop, EventLoopPolicy, install, errors, net
"""
from flowcoro import errors
from flowcoro._loop import EventLoopPolicy, Loop, install, new_event_loop, run

__version__ = "0.1.0"
__all__ = ["EventLoopPolicy", "Loop", "errors", "install", "new_event_loop", "run", "__version__"]
