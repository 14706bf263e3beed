"""Builds and runs tests/csrc/test_ws.c (the C framing core alone: parser
at every split, masking and UTF-8 against references) under
AddressSanitizer and UBSan.  Skips where no C compiler with ASan exists."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.timeout(120)
def test_c_framing_core_under_asan(tmp_path):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    exe = tmp_path / "test_ws"
    cmd = [cc, "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O1", "-g",
           "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
           "-I" + os.path.join(ROOT, "csrc"), os.path.join(ROOT, "tests/csrc/test_ws.c"),
           os.path.join(ROOT, "csrc/ws/frame.c"), os.path.join(ROOT, "csrc/ws/utf8.c"),
           "-o", str(exe)]
    # Without the interpreter's LD_PRELOAD (make asan-test preloads libasan
    # into everything it starts): the compiler and the test bring their own.
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS")}
    build = subprocess.run(cmd, capture_output=True, text=True, env=clean)
    if build.returncode != 0 and "sanitize" in build.stderr and "cannot find" in build.stderr:
        pytest.skip("the compiler has no ASan runtime")
    assert build.returncode == 0, build.stderr
    env = dict(clean, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1")
    run = subprocess.run([str(exe), "300"], capture_output=True, text=True, env=env, timeout=100)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "test_ws: ok" in run.stdout
