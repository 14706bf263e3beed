"""FlowCoro: a C-accelerated, asyncio-compatible coroutine runtime.

Public API (frozen by tests/test_exports.py): the loop (``run``,
``new_event_loop``, ``Loop``, ``EventLoopPolicy``, ``install``), task
priorities (``create_task``, ``Priority``), streams (``net``), lock-free
containers and pools (``lockfree``, ``pool``), the work-stealing executor
(``scheduler``, ``WorkStealingExecutor``, the loop's default executor),
non-blocking logging (``AsyncHandler``) and the ``errors`` module.
"""
from flowcoro import errors, lockfree, net, pool, scheduler
from flowcoro._loop import EventLoopPolicy, Loop, install, new_event_loop, run
from flowcoro.logging import AsyncHandler
from flowcoro.priority import Priority, create_task
from flowcoro.scheduler import WorkStealingExecutor

__version__ = "0.1.0"
# ``flowcoro.logging`` is importable but not in __all__: a star import would
# shadow the user's stdlib ``logging``.
__all__ = ["AsyncHandler", "EventLoopPolicy", "Loop", "Priority", "WorkStealingExecutor",
           "create_task", "errors", "install", "lockfree", "net", "new_event_loop", "pool",
           "run", "scheduler", "__version__"]
