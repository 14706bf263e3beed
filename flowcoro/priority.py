"""Task priorities: ``flowcoro.create_task(coro, priority=Priority.HIGH)``.

A task's priority lives in its ``contextvars`` context (the loop reads
``flowcoro._core.loop.priority_var``), so every step of the task, and every
callback it schedules with the default context, runs at that priority.

Within one loop iteration, ready callbacks run CRITICAL first, then HIGH,
NORMAL and LOW, in FIFO order within a level.  Anti-starvation rule: an
iteration runs exactly the callbacks that were ready when it began, so
priorities only reorder that snapshot; a callback that becomes ready during
the iteration, whatever its priority, waits for the next one.  A LOW
callback is therefore never delayed by more than one iteration's worth of
higher-priority work.

On a loop that is not a FlowCoro loop the priority is recorded in the
context but has no effect on ordering.
"""
import asyncio
import contextvars
import enum

from flowcoro._core.loop import priority_var

__all__ = ["Priority", "create_task", "current_priority"]


class Priority(enum.IntEnum):
    """The four scheduling levels of a FlowCoro loop."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3


def create_task(coro, *, priority=Priority.NORMAL, name=None, context=None):
    """Schedule ``coro`` on the running loop as a Task with ``priority``.

    Args:
        coro: the coroutine to run.
        priority: a :class:`Priority` (or its int value 0-3).
        name: the task's name, as for :func:`asyncio.create_task`.
        context: a :class:`contextvars.Context` to copy; default the current one.

    Returns:
        The :class:`asyncio.Task`.

    Raises:
        ValueError: ``priority`` is not one of the four levels.
        RuntimeError: no loop is running in this thread.
    """
    try:
        level = Priority(priority)
    except ValueError:
        coro.close()
        raise ValueError(f"priority must be one of {[p.name for p in Priority]}, got {priority!r}") from None
    loop = asyncio.get_running_loop()
    ctx = context.copy() if context is not None else contextvars.copy_context()
    ctx.run(priority_var.set, int(level))
    enable = getattr(loop, "_enable_priorities", None)
    if enable is not None and level != Priority.NORMAL:
        enable()
    return loop.create_task(coro, name=name, context=ctx)


def current_priority():
    """Return the :class:`Priority` of the code that is running now."""
    return Priority(priority_var.get())
