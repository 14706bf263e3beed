# FlowCoro developer commands.  A new user on a fresh machine runs:
#
#     make run     # build, then start the demo service (Ctrl-C stops it)
#     make test    # build, then run the whole test suite
#
# Both install what they need first (a .venv with the test dependencies and
# the extensions built in place); that step is skipped when nothing it
# depends on changed, so it is quick after the first time.
#
# Knobs:  PYTHON=python3.12 (interpreter for a new .venv), VENV=.venv,
#         PYTEST_ARGS="-k timers -x" (extra pytest arguments).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# The interpreter that creates the virtual environment: python3.11 if it
# runs here, else python3 (anything >= 3.11 works; see requires-python).
PYTHON ?= $(shell python3.11 -c 'print("python3.11")' 2>/dev/null || echo python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# Written when `install` finished; remade when the packaging files change.
STAMP := $(VENV)/.flowcoro-install
PYTEST_ARGS ?=

# Interpreters for py312 / py313: on PATH, else pyenv's newest of that line.
define find_python
$(shell for p in python$(1) $$(ls -d $$(pyenv root 2>/dev/null || echo $(HOME)/.pyenv)/versions/$(1).*/bin/python 2>/dev/null | sort -V -r); do \
	$$p -c 'import sys; assert sys.version_info[:2] == tuple(map(int, "$(1)".split(".")))' 2>/dev/null && { echo $$p; break; }; done)
endef

.PHONY: help install build test coverage bench wheel asan-test run clean distclean \
	soak interrogate stubtest py312 py313

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

install: $(STAMP)  ## create .venv, install the build and test dependencies, build in place

$(STAMP): pyproject.toml setup.py
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(PIP) install -q --upgrade pip
	@# Build requirements come from pyproject.toml, the one place they are listed.
	$(PY) -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' \
		> $(VENV)/build-requires.txt
	$(PIP) install -q -r $(VENV)/build-requires.txt
	@# Editable: the package is imported from this tree (extensions built in
	@# place) and the `flowcoro` console script is installed into the venv.
	$(PIP) install -q --no-build-isolation -e '.[test]'
	@touch $@

build: install  ## (re)build the C/Cython extensions in place (incremental)
	$(PY) setup.py -q build_ext --inplace

test: build  ## run the whole test suite (THE test command; CI runs it)
	$(PY) -m pytest tests -q $(PYTEST_ARGS)

# coverage.py measures the Python modules (flowcoro/*.py, flowcoro/net, ...),
# in subprocesses too ([tool.coverage.run] patch in pyproject.toml: the demo
# and examples run that way).  The Cython extensions are not measured: that needs a separate build with
# Cython's linetrace directive and CYTHON_TRACE=1 (several times slower), so
# flowcoro/_core/*.pyx are not in this report.
coverage: build  ## line coverage of the Python modules (not the Cython ones)
	$(PY) -m pytest tests -q --cov=flowcoro --cov-report=term-missing $(PYTEST_ARGS)

$(VENV)/.flowcoro-bench: $(STAMP)
	$(PIP) install -q --no-build-isolation -e '.[bench]'
	@touch $@

bench: build $(VENV)/.flowcoro-bench  ## run the benchmarks (bench/run.sh; BENCH_ARGS=micro|echo|pytest)
	@test -f bench/run.sh || { echo "bench/run.sh does not exist yet: nothing to run" >&2; exit 1; }
	PATH="$(abspath $(VENV))/bin:$$PATH" PYTHON="$(abspath $(PY))" bash bench/run.sh $(BENCH_ARGS)

# Copy the source tree (tracked and untracked, not ignored, files) to $(1):
# builds there see none of this checkout's build outputs.
define copy_tree
rm -rf $(1) && mkdir -p $(1)
git ls-files --cached --others --exclude-standard | while IFS= read -r f; do \
	if [ -f "$$f" ]; then echo "$$f"; fi; done | tar -cf - -T - | tar -xf - -C $(1)
endef

# Builds the wheel the way pip does for a user (isolated build from
# pyproject.toml) from a clean copy of the tree (stale build/lib files or
# in-place .so files would otherwise end up in it), installs it into a new
# venv outside the tree and runs .ci/wheel_smoke.py there, so nothing is
# imported from this checkout.
WHEEL_SRC := build/wheel-src
wheel: install  ## build dist/*.whl, install it in a fresh /tmp venv, smoke-test it
	$(call copy_tree,$(WHEEL_SRC))
	rm -f dist/flowcoro-*.whl
	$(PIP) wheel ./$(WHEEL_SRC) -w dist/ --no-deps -q
	@tmp=$$(mktemp -d /tmp/flowcoro-wheel.XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	whl=$$(ls dist/flowcoro-*.whl); echo "built $$whl; installing it into $$tmp/venv"; \
	"$$($(PY) -c 'import sys; print(sys._base_executable)')" -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check "$$whl"; \
	cp .ci/wheel_smoke.py "$$tmp/"; \
	(cd "$$tmp" && ./venv/bin/python wheel_smoke.py && ./venv/bin/flowcoro --version)

# AddressSanitizer: the tree (tracked and untracked, not ignored, files) is
# copied to build/asan/src and built there, so the normal in-place .so files
# are left alone.  libasan must be loaded first (LD_PRELOAD) because python
# itself is not built with it; leak detection is off since the interpreter
# "leaks" by design at exit.
ASAN_DIR := build/asan/src
# RSS-flatness checks measure the allocator, and under ASan the allocator is
# ASan's (shadow memory, a 256 MiB quarantine of freed blocks): their numbers
# mean nothing there, so they are left out.  FLOWCORO_ASAN=1 is also set for
# the tests, so a test can tell it runs on an ASan build.
ASAN_PYTEST_ARGS ?= -k 'not flat_rss and not short_connections_no_leaks'
ASAN_ENV = LD_PRELOAD="$$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
asan-test: install  ## build with AddressSanitizer (separate tree) and run the suite under it
	$(call copy_tree,$(ASAN_DIR))
	cd $(ASAN_DIR) && FLOWCORO_ASAN=1 $(abspath $(PY)) setup.py -q build_ext --inplace
	cd $(ASAN_DIR) && for so in $$(find flowcoro -name '*.so'); do \
		ldd $$so | grep libasan >/dev/null || { echo "$$so is not an ASan build" >&2; exit 1; }; done
	cd $(ASAN_DIR) && $(ASAN_ENV) $(abspath $(PY)) -c 'import flowcoro._core.loop as m, os; \
		assert m.__file__.startswith(os.getcwd()), m.__file__; print("ASan build:", m.__file__)'
	cd $(ASAN_DIR) && FLOWCORO_ASAN=1 $(ASAN_ENV) $(abspath $(PY)) -m pytest tests -q -p no:cacheprovider \
		$(ASAN_PYTEST_ARGS) $(PYTEST_ARGS)

run: build  ## start the demo service (REST API over SQLite on :8080); Ctrl-C stops it
	$(PY) -m flowcoro demo $(DEMO_ARGS)

# Long reliability runs: the reliability tests with their sizes raised.
soak: build  ## reliability tests at soak sizes (FLOWCORO_SOAK=1)
	@test -f tests/test_reliability.py || { echo "tests/test_reliability.py does not exist yet" >&2; exit 1; }
	FLOWCORO_SOAK=1 $(PY) -m pytest tests/test_reliability.py -q -p no:cacheprovider --timeout=3600 $(PYTEST_ARGS)

interrogate: install  ## docstring coverage of flowcoro/ (>= 95%, see [tool.interrogate])
	$(PY) -m interrogate -v flowcoro

# mypy's stubtest: each extension's .pyi against the built module (names,
# signatures, what can be subclassed).  mypy is installed on first use.
STUB_MODULES = $(subst /,.,$(patsubst %.pyx,%,$(wildcard flowcoro/_core/*.pyx)))
stubtest: build  ## check the .pyi stubs against the built extensions (mypy stubtest)
	@$(PY) -c 'import mypy' 2>/dev/null || $(PIP) install -q mypy
	$(PY) -m mypy.stubtest --mypy-config-file .ci/stubtest.ini --ignore-missing-stub $(STUB_MODULES)

py312:  ## build and test on Python 3.12 (.venv312)
	@p='$(call find_python,3.12)'; test -n "$$p" || { echo "no Python 3.12 found" >&2; exit 1; }; \
	$(MAKE) --no-print-directory test VENV=.venv312 PYTHON="$$p"

py313:  ## build and test on Python 3.13 (.venv313)
	@p='$(call find_python,3.13)'; test -n "$$p" || { echo "no Python 3.13 found" >&2; exit 1; }; \
	$(MAKE) --no-print-directory test VENV=.venv313 PYTHON="$$p"

clean:  ## remove build outputs (keeps the venvs)
	rm -rf build dist *.egg-info .pytest_cache .coverage htmlcov
	find flowcoro -name '*.so' -delete
	find flowcoro/_core -name '*.c' -delete
	find . -name __pycache__ -not -path './.venv*' -prune -exec rm -rf {} +

distclean: clean  ## clean, and remove the venvs too
	rm -rf .venv .venv312 .venv313

# ---- Lock-free containers: C stress drivers and benchmark (issue 3) --------
# tests/csrc/stress_*.c drive csrc/lockfree/ and csrc/pool/ from several
# threads and check that every item is consumed exactly once.
#   make tsan-test   built with -fsanitize=thread, short sizes (~seconds)
#   make stress      built -O2, long sizes (FC_STRESS_SCALE, default 200), then
#                    the Python thread stress tests x FC_PY_STRESS_SCALE (20)
#   make c-bench     items/s: MPMC, SPSC, mutex queue (bench/c/bench_queues.c)
LF_SRC := csrc/lockfree/mpmc.c csrc/lockfree/stack.c csrc/lockfree/deque.c \
	csrc/lockfree/park.c csrc/pool/bufpool.c
LF_DRIVERS := mpmc spsc stack deque bufpool
LF_DEPS := $(LF_SRC) $(wildcard csrc/lockfree/*.h csrc/pool/*.h csrc/fc/*.h tests/csrc/*.h)
LF_CFLAGS := -std=gnu11 -Wall -Wextra -Icsrc -pthread
FC_STRESS_SCALE ?= 200
FC_PY_STRESS_SCALE ?= 20

build/csrc/tsan/stress_%: tests/csrc/stress_%.c $(LF_DEPS)
	@mkdir -p $(@D)
	@# -Wno-tsan: gcc warns that TSan ignores atomic_thread_fence; see
	@# fc_atomic_store_fenced_rel in csrc/fc/atomic.h for how we cope.
	gcc $(LF_CFLAGS) -O1 -g -fsanitize=thread -Wno-tsan -o $@ $< $(LF_SRC)

build/csrc/stress_%: tests/csrc/stress_%.c $(LF_DEPS)
	@mkdir -p $(@D)
	gcc $(LF_CFLAGS) -O2 -g -o $@ $< $(LF_SRC)

build/csrc/bench_queues: bench/c/bench_queues.c $(LF_DEPS)
	@mkdir -p $(@D)
	gcc $(LF_CFLAGS) -O2 -o $@ $< $(LF_SRC)

.PHONY: tsan-test stress c-bench
tsan-test: $(addprefix build/csrc/tsan/stress_,$(LF_DRIVERS))  ## C containers + stress drivers under ThreadSanitizer
	@for d in $(LF_DRIVERS); do echo "== tsan $$d"; \
		TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" build/csrc/tsan/stress_$$d 10; done

stress: build $(addprefix build/csrc/stress_,$(LF_DRIVERS))  ## long stress runs of the lock-free containers (C, then Python)
	@for d in $(LF_DRIVERS); do echo "== stress $$d"; build/csrc/stress_$$d $(FC_STRESS_SCALE); done
	@echo "== stress: Python threads through the containers and the executor (x$(FC_PY_STRESS_SCALE))"
	FC_STRESS_SCALE=$(FC_PY_STRESS_SCALE) $(PY) -m pytest -q -p no:cacheprovider \
		tests/lockfree tests/scheduler -k "threads or thieves or submitters"

c-bench: build/csrc/bench_queues  ## C queue throughput, 1 producer + 1 consumer
	build/csrc/bench_queues

# ---- HTTP/1.1 parser fuzzing (issue 4) --------------------------------------
# atheris on tests/fuzz/fuzz_http_parser.py for FUZZ_SECONDS; with clang the
# parser is rebuilt with coverage + ASan/UBSan in build/fuzz (see
# tests/fuzz/run_fuzz.sh).  Seeds: tests/fuzz/corpus/http_parser.
FUZZ_SECONDS ?= 600
.PHONY: fuzz
fuzz: build  ## fuzz the HTTP/1.1 parser, then the WebSocket framing core, FUZZ_SECONDS each (default 600)
	PY=$(abspath $(PY)) tests/fuzz/run_fuzz.sh $(FUZZ_SECONDS)
	PY=$(abspath $(PY)) tests/fuzz/run_fuzz_ws.sh $(FUZZ_SECONDS)
