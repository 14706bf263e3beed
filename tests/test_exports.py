"""The public surface of ``flowcoro`` is frozen here (as trio's test_exports.py).

Adding, renaming or removing a public name is an API change: update
EXPECTED in the same commit, on purpose.  (flowcoro.net has its own frozen
list in tests/net/test_net_exports.py.)
"""
import importlib
import inspect
import subprocess
import sys

import flowcoro

EXPECTED = {
    "AsyncHandler", "EventLoopPolicy", "Loop", "Priority", "WorkStealingExecutor",
    "create_task", "errors", "install", "lockfree", "net", "new_event_loop", "pool",
    "run", "scheduler", "__version__",
}


def test_all_is_frozen():
    assert len(flowcoro.__all__) == len(set(flowcoro.__all__)), "duplicates in __all__"
    assert set(flowcoro.__all__) == EXPECTED, (
        f"added: {sorted(set(flowcoro.__all__) - EXPECTED)}, "
        f"removed: {sorted(EXPECTED - set(flowcoro.__all__))}")


def test_every_export_resolves():
    for name in flowcoro.__all__:
        assert hasattr(flowcoro, name), name
        assert getattr(flowcoro, name) is not None, name


def test_star_import_gives_exactly_all():
    ns = {}
    exec("from flowcoro import *", ns)
    assert set(ns) - {"__builtins__"} == set(flowcoro.__all__)


def test_public_callables_and_classes_are_documented():
    for name in flowcoro.__all__:
        obj = getattr(flowcoro, name)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
            assert inspect.getdoc(obj), f"flowcoro.{name} has no docstring"


def test_exported_modules_are_submodules():
    assert flowcoro.errors is importlib.import_module("flowcoro.errors")
    assert flowcoro.net is importlib.import_module("flowcoro.net")


def test_version_string():
    parts = flowcoro.__version__.split(".")
    assert len(parts) >= 2 and all(p.isdigit() for p in parts[:2])


def test_loop_types_are_what_they_claim():
    import asyncio
    assert issubclass(flowcoro.Loop, asyncio.AbstractEventLoop)
    assert issubclass(flowcoro.EventLoopPolicy, asyncio.AbstractEventLoopPolicy)
    for name in ("run", "new_event_loop", "install", "create_task"):
        assert callable(getattr(flowcoro, name))


def test_errors_module_exports_exception_classes():
    errors = flowcoro.errors
    assert "FlowCoroError" in errors.__all__
    for name in errors.__all__:
        obj = getattr(errors, name)
        assert inspect.isclass(obj) and issubclass(obj, Exception), name
    assert issubclass(errors.BackendError, ValueError)
    assert issubclass(errors.LoopClosedError, RuntimeError)


def test_import_is_cheap_and_side_effect_free():
    # Importing flowcoro must not install a policy or create a loop.
    code = ("import asyncio, flowcoro; "
            "p = asyncio.get_event_loop_policy(); "
            "assert not isinstance(p, flowcoro.EventLoopPolicy), p; "
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
