"""hiredis is needed by flowcoro.redis only, and its absence is explained."""
import subprocess
import sys

CODE = """
import sys
sys.modules["hiredis"] = None          # as if hiredis were not installed
import flowcoro
assert "flowcoro.redis" not in sys.modules
try:
    import flowcoro.redis
except ImportError as exc:
    print("IMPORT-ERROR:", exc)
"""


def test_flowcoro_imports_without_hiredis():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "IMPORT-ERROR:" in out.stdout and "flowcoro[redis]" in out.stdout


def test_public_names_have_docstrings():
    import flowcoro.redis as fr
    for name in fr.__all__:
        obj = getattr(fr, name)
        assert obj.__doc__, name
    for name in dir(fr.Redis):
        if not name.startswith("_"):
            attr = getattr(fr.Redis, name)
            if callable(attr):
                assert attr.__doc__, name
