"""The whole FlowCoro exception hierarchy.

Every error FlowCoro raises on purpose derives from :class:`FlowCoroError`;
OS-level failures keep their OSError subclass (ConnectionResetError, ...)
so code written for asyncio catches them as before.
"""

__all__ = [
    "FlowCoroError", "LoopClosedError", "BackendError", "PoolError",
    "PoolTimeoutError", "PoolClosedError", "StreamError", "IncompleteReadError",
    "LimitOverrunError", "ServerClosedError",
]


class FlowCoroError(Exception):
    """Base class of every error FlowCoro raises on purpose."""


class LoopClosedError(FlowCoroError, RuntimeError):
    """The event loop is closed."""


class BackendError(FlowCoroError, ValueError):
    """An unknown or unavailable reactor backend was asked for."""


class StreamError(FlowCoroError):
    """A flowcoro.net stream operation failed."""


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
