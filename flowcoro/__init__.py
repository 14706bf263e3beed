"""FlowCoro: a C-accelerated, asyncio-compatible coroutine runtime.

Public API (frozen by tests/test_exports.py): the loop (``run``,
``new_event_loop``, ``Loop``, ``EventLoopPolicy``, ``install``), task
priorities (``create_task``, ``Priority``), streams (``net``) and the
``errors`` module.
"""
from flowcoro import errors, net
from flowcoro._loop import EventLoopPolicy, Loop, install, new_event_loop, run
from flowcoro.priority import Priority, create_task

__version__ = "0.1.0"
__all__ = ["EventLoopPolicy", "Loop", "Priority", "create_task", "errors", "install", "net",
           "new_event_loop", "run", "__version__"]
