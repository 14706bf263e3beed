"""Build script: every extension is compiled from source (Cython + csrc/).

Environment knobs:
  FLOWCORO_ASAN=1    build with AddressSanitizer (make asan-test)
  FLOWCORO_DEBUG=1   -O0 -g, Cython line tracing off
"""
import os
import sys

from setuptools import Extension, setup
from Cython.Build import cythonize

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
    # ext("flowcoro._core.transport", ["flowcoro/_core/transport.pyx"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "embedsignature": True},
        include_path=["flowcoro/_core", "."],
    ),
)
