"""The whole FlowCoro exception hierarchy.

Every error FlowCoro raises on purpose derives from :class:`FlowCoroError`;
OS-level failures keep their OSError subclass (ConnectionResetError, ...)
so code written for asyncio catches them as before.
"""

import queue as _queue

__all__ = [
    "FlowCoroError", "LoopClosedError", "BackendError", "PoolError",
    "PoolTimeoutError", "PoolClosedError", "StreamError", "IncompleteReadError",
    "LimitOverrunError", "ServerClosedError", "StreamClosedError",
    "InvalidArgumentError", "InvalidStateError",
    "QueueFull", "QueueEmpty", "StackFull", "StackEmpty", "ExecutorShutdownError",
]


class FlowCoroError(Exception):
    """Base class of every error FlowCoro raises on purpose."""


class LoopClosedError(FlowCoroError, RuntimeError):
    """The event loop is closed."""


class BackendError(FlowCoroError, ValueError):
    """An unknown or unavailable reactor backend was asked for."""


class InvalidArgumentError(FlowCoroError, ValueError):
    """A call got an argument it cannot use (the caller's fault).

    Attributes:
        argument: the parameter's name.
        value: the value that was passed.
    """

    def __init__(self, argument, value, reason):
        self.argument = argument
        self.value = value
        super().__init__(f"{argument}={value!r}: {reason}")

    def __reduce__(self):
        reason = self.args[0].split(": ", 1)[1]
        return type(self), (self.argument, self.value, reason)


class InvalidStateError(FlowCoroError, RuntimeError):
    """An object was used in a state that does not allow the call.

    Examples: ``accept()`` on a server that is already serving, a second
    concurrent ``read()`` on one stream, ``serve()`` before binding.
    """


class StreamError(FlowCoroError):
    """A flowcoro.net stream operation failed."""


class StreamClosedError(StreamError, ConnectionError):
    """The stream was closed by this side; it can no longer be read or written."""


class IncompleteReadError(StreamError, EOFError):
    """EOF came before the bytes asked for; ``partial`` holds what arrived.

    Attributes:
        partial: the bytes read before EOF.
        expected: how many bytes were asked for (None: up to a separator).
    """

    def __init__(self, partial, expected):
        self.partial = partial
        self.expected = expected
        r = f"{len(partial)} bytes read on a total of {expected!r} expected bytes"
        super().__init__(f"incomplete read: {r}")

    def __reduce__(self):
        return type(self), (self.partial, self.expected)


class LimitOverrunError(StreamError):
    """A separator was not found within the buffer limit.

    Attributes:
        consumed: how many bytes were looked at.
    """

    def __init__(self, message, consumed):
        super().__init__(message)
        self.consumed = consumed

    def __reduce__(self):
        return type(self), (self.args[0], self.consumed)


class ServerClosedError(FlowCoroError):
    """The server was stopped; it accepts no more connections."""


class PoolError(FlowCoroError):
    """A connection pool failed."""


class PoolTimeoutError(PoolError, TimeoutError):
    """No connection became free within the acquire timeout."""


class PoolClosedError(PoolError):
    """The pool was closed."""


# ---- lock-free containers and the executor (flowcoro.lockfree, .scheduler) --

class QueueFull(FlowCoroError, _queue.Full):
    """``put_nowait`` (or a timed ``put``) found no room in a bounded queue or ring.

    Also a :class:`queue.Full`, so code written for :mod:`queue` catches it.
    """


class QueueEmpty(FlowCoroError, _queue.Empty):
    """``get_nowait`` (or a timed ``get``) found nothing in a queue or ring.

    Also a :class:`queue.Empty`, so code written for :mod:`queue` catches it.
    """


class StackFull(FlowCoroError, OverflowError):
    """``Stack.push`` found the stack at its ``maxsize``."""


class StackEmpty(FlowCoroError, IndexError):
    """``Stack.pop`` found the stack empty (an IndexError, like ``list.pop``)."""


class ExecutorShutdownError(FlowCoroError, RuntimeError):
    """Work was submitted to an executor after ``shutdown()``.

    A RuntimeError, as :class:`concurrent.futures.ThreadPoolExecutor` raises.
    """
