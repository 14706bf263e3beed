"""Packaging rules that nothing else checks until a user's install breaks.

* every extension module (each ``.pyx`` compiled by setup.py) has a ``.pyi``
  stub beside it, and the stub names what the module defines;
* ``flowcoro.__version__`` is the version in pyproject.toml;
* pyproject's package list names every package directory (a directory left
  out is silently missing from wheels, while tests from the tree pass);
* stubs and py.typed are declared as package data, the console script
  points at a callable.
"""
import ast
import importlib
import inspect
import tomllib
from pathlib import Path

import pytest

import flowcoro

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "flowcoro"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _extension_sources():
    """``.pyx`` files under flowcoro/ (``.pxi`` are include files, not modules)."""
    return sorted(PKG.rglob("*.pyx"))


def _module_name(path):
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _setup_extension_names():
    """Module names passed to ``ext(...)`` / ``Extension(...)`` in setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("ext", "Extension") and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
    return names


def _stub_names(stub):
    """Top-level names a stub declares: classes, functions, annotated variables."""
    names = set()
    for node in ast.parse(stub.read_text()).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _stub_class_members(stub):
    out = {}
    for node in ast.parse(stub.read_text()).body:
        if isinstance(node, ast.ClassDef):
            members = set()
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    members.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members.add(item.target.id)
            out[node.name] = members
    return out


def test_there_are_extensions():
    assert _extension_sources(), "no .pyx found under flowcoro/"


def test_setup_builds_every_pyx_and_nothing_else():
    assert _setup_extension_names() == {_module_name(p) for p in _extension_sources()}


@pytest.mark.parametrize("pyx", _extension_sources(), ids=_module_name)
def test_every_extension_has_a_stub(pyx):
    stub = pyx.with_suffix(".pyi")
    assert stub.is_file(), f"{_module_name(pyx)} has no type stub {stub.relative_to(ROOT)}"
    ast.parse(stub.read_text())  # valid Python syntax


@pytest.mark.parametrize("pyx", _extension_sources(), ids=_module_name)
def test_stub_matches_module(pyx):
    """Names the module defines are in its stub; names in the stub exist."""
    stub = pyx.with_suffix(".pyi")
    if not stub.is_file():
        pytest.skip("no stub (test_every_extension_has_a_stub fails)")
    name = _module_name(pyx)
    mod = importlib.import_module(name)
    declared = _stub_names(stub)
    defined = {n for n, v in vars(mod).items()
               if not n.startswith("_")
               and (inspect.isclass(v) or callable(v))
               and getattr(v, "__module__", None) == name}
    missing = sorted(defined - declared)
    assert not missing, f"{stub.relative_to(ROOT)} lacks {missing}"
    stale = sorted(n for n in declared if not n.startswith("_") and not hasattr(mod, n))
    assert not stale, f"{stub.relative_to(ROOT)} declares {stale}, which {name} does not define"
    for cls, members in _stub_class_members(stub).items():
        obj = getattr(mod, cls, None)
        if obj is None:
            continue            # a private helper class of the stub (e.g. _Ready)
        gone = sorted(m for m in members if not m.startswith("__") and not hasattr(obj, m))
        assert not gone, f"{stub.relative_to(ROOT)}: {cls} has no {gone}"


def test_version_matches_pyproject():
    assert flowcoro.__version__ == PYPROJECT["project"]["version"]


def test_package_discovery_finds_every_package_dir():
    # pyproject.toml discovers packages (flowcoro, flowcoro.*): every folder
    # holding modules must be a package (have __init__.py) or it would be
    # left out of the wheel silently.
    import setuptools
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    found = set(setuptools.find_packages(str(ROOT), include=include))
    on_disk = set()
    for d in [PKG, *PKG.rglob("*")]:
        if not d.is_dir() or d.name == "__pycache__":
            continue
        if any(d.glob("*.py")) or any(d.glob("*.pyx")):
            on_disk.add(".".join(d.relative_to(ROOT).parts))
    assert on_disk <= found, f"not packages (no __init__.py?): {sorted(on_disk - found)}"
    assert "flowcoro._core" in found


def test_stubs_and_py_typed_are_package_data():
    assert (PKG / "py.typed").is_file()
    data = PYPROJECT["tool"]["setuptools"]["package-data"]["*"]
    for pattern in ("*.pyi", "*.pxd", "py.typed"):
        assert pattern in data, f"package-data lacks {pattern!r}"


def test_console_script_resolves():
    target = PYPROJECT["project"]["scripts"]["flowcoro"]
    module, _, attr = target.partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_build_requirements_are_declared():
    requires = " ".join(PYPROJECT["build-system"]["requires"])
    for dep in ("setuptools", "Cython"):
        assert dep in requires
