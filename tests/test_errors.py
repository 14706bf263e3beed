"""flowcoro.errors: the hierarchy, pickling, and where the loop raises them."""
import pickle

import pytest

import flowcoro
from flowcoro import errors


def test_every_error_derives_from_flowcoro_error():
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.FlowCoroError), name


@pytest.mark.parametrize("exc", [
    errors.InvalidArgumentError("maxsize", -1, "must be > 0"),
    errors.IncompleteReadError(b"abc", 10),
    errors.IncompleteReadError(b"", None),
    errors.LimitOverrunError("separator not found", 65536),
    errors.HttpParseError("bad_header_name", 400, 17, "invalid header name"),
    errors.PoolTimeoutError("no connection within 1.0 s"),
    errors.QueueFull(),
    errors.BackendError("no such backend"),
])
def test_errors_survive_pickling(exc):
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert back.__dict__ == exc.__dict__


def test_error_attributes():
    e = errors.InvalidArgumentError("limit", 0, "must be positive")
    assert (e.argument, e.value) == ("limit", 0)
    assert str(e) == "limit=0: must be positive"
    assert isinstance(e, ValueError)
    e = errors.IncompleteReadError(b"ab", 5)
    assert (e.partial, e.expected) == (b"ab", 5)
    assert isinstance(e, EOFError)
    assert "2 bytes read on a total of 5" in str(e)
    e = errors.LimitOverrunError("too long", 99)
    assert e.consumed == 99
    e = errors.HttpParseError("body_too_large", 413, 1234)
    assert (e.code, e.status, e.offset, e.events) == ("body_too_large", 413, 1234, [])
    assert "HTTP 413" in str(e)


def test_closed_loop_raises_loop_closed_error():
    loop = flowcoro.new_event_loop()
    loop.close()
    for call in (lambda: loop.call_soon(print), lambda: loop.call_later(1, print),
                 lambda: loop.call_soon_threadsafe(print), lambda: loop.add_reader(0, print)):
        with pytest.raises(errors.LoopClosedError, match="Event loop is closed"):
            call()
    # Still a RuntimeError, as asyncio code expects.
    with pytest.raises(RuntimeError):
        loop.call_at(0, print)


def test_reactor_view_answers_like_a_selector():
    """asyncio's own transports ask loop._selector whether an fd is watched."""
    import selectors
    import socket
    loop = flowcoro.new_event_loop()
    a, b = socket.socketpair()
    try:
        with pytest.raises(KeyError):
            loop._selector.get_key(a.fileno())
        loop.add_reader(a.fileno(), print)
        key = loop._selector.get_key(a)
        assert (key.fd, key.events) == (a.fileno(), selectors.EVENT_READ)
        assert loop._selector.get_map() == {}
        loop.remove_reader(a.fileno())
    finally:
        loop.close()
        a.close()
        b.close()
