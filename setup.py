"""Build script: every extension is compiled from source (Cython + csrc/).

Environment knobs:
  FLOWCORO_ASAN=1    build with AddressSanitizer (make asan-test)
  FLOWCORO_DEBUG=1   -O0 -g, Cython line tracing off
"""
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext
from Cython.Build import cythonize


class build_ext(_build_ext):
    """In-place builds replace a .so by unlink + copy, never by rewriting it:
    a process that has the old one mapped (a test run, a benchmark) keeps
    working instead of crashing on a file changed under it."""

    def copy_file(self, src, dst, *args, **kwargs):
        if dst.endswith(".so") and os.path.exists(dst):
            os.unlink(dst)
        return super().copy_file(src, dst, *args, **kwargs)

CSRC = "csrc"
REACTOR = [f"{CSRC}/reactor/reactor.c", f"{CSRC}/reactor/epoll.c",
           f"{CSRC}/reactor/poll.c", f"{CSRC}/reactor/wakeup.c"]
TIMER = [f"{CSRC}/timer/heap.c"]

cflags = ["-std=gnu11", "-Wall", "-Wno-unused-function", "-Wno-unreachable-code"]
ldflags = []
if os.environ.get("FLOWCORO_ASAN"):
    cflags += ["-fsanitize=address", "-fno-omit-frame-pointer", "-O1", "-g"]
    ldflags += ["-fsanitize=address"]
elif os.environ.get("FLOWCORO_DEBUG"):
    cflags += ["-O0", "-g"]
else:
    cflags += ["-O2"]


def ext(name, sources):
    return Extension(name, sources, include_dirs=[CSRC], extra_compile_args=cflags,
                     extra_link_args=ldflags, libraries=["pthread"] if sys.platform != "win32" else [])


extensions = [
    ext("flowcoro._core.loop", ["flowcoro/_core/loop.pyx"] + REACTOR + TIMER),
    ext("flowcoro._core.stream", ["flowcoro/_core/stream.pyx"]),
    ext("flowcoro._core.lockfree", ["flowcoro/_core/lockfree.pyx", "csrc/lockfree/mpmc.c", "csrc/lockfree/stack.c", "csrc/lockfree/deque.c", "csrc/lockfree/park.c", "csrc/pool/bufpool.c"]),
    ext("flowcoro._core.httpparser", ["flowcoro/_core/httpparser.pyx", "csrc/http/parser.c"]),
    ext("flowcoro._core.httpserver", ["flowcoro/_core/httpserver.pyx", "csrc/http/parser.c"]),
    ext("flowcoro._core.wsframe", ["flowcoro/_core/wsframe.pyx", "csrc/ws/frame.c", "csrc/ws/utf8.c"]),
    ext("flowcoro._core.wsconn", ["flowcoro/_core/wsconn.pyx"]),
]

# Developer knob: FLOWCORO_ONLY=loop,httpserver builds just those extensions
# (module names after flowcoro._core.), e.g. while another one is half-written.
if os.environ.get("FLOWCORO_ONLY"):
    _only = {"flowcoro._core." + n.strip() for n in os.environ["FLOWCORO_ONLY"].split(",")}
    extensions = [e for e in extensions if e.name in _only]

setup(
    cmdclass={"build_ext": build_ext},
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "embedsignature": True},
        include_path=["flowcoro/_core", "."],
    ),
)
