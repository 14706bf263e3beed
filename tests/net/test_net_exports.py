"""Freeze flowcoro.net's public surface and check every public name is documented."""
import inspect

import flowcoro.net as net
from flowcoro._core import stream

EXPECTED = {
    "ConnectionPool", "DEFAULT_HIGH_WATER", "DEFAULT_LIMIT", "PoolStats", "Stream",
    "StreamProtocol", "TcpClient", "TcpServer",
}


def test_all_is_frozen():
    assert set(net.__all__) == EXPECTED
    for name in net.__all__:
        assert hasattr(net, name), name


def test_every_public_name_has_a_docstring():
    missing = []
    for name in net.__all__:
        obj = getattr(net, name)
        if not (inspect.isclass(obj) or callable(obj)):
            continue
        if not (obj.__doc__ or "").strip():
            missing.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not (callable(member) or isinstance(member, property)
                                                or inspect.isdatadescriptor(member)):
                    continue
                if isinstance(member, (classmethod, staticmethod)):
                    member = member.__func__
                if not (getattr(member, "__doc__", None) or "").strip():
                    missing.append(f"{name}.{attr}")
    assert missing == []


def test_stub_lists_the_extension_classes():
    with open(stream.__file__.rsplit("/", 1)[0] + "/stream.pyi") as f:
        stub = f.read()
    for name in ("class StreamProtocol", "class Stream", "DEFAULT_LIMIT", "DEFAULT_HIGH_WATER"):
        assert name in stub
    for meth in ("read", "read_exactly", "readline", "read_until", "write", "drain",
                 "close", "wait_closed", "at_eof", "get_extra_info"):
        assert f"def {meth}(" in stub, meth
