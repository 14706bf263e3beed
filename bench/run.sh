#!/usr/bin/env bash
# FlowCoro's benchmarks, run beside the anchors with the team's runners in
# ../shared/bench (interleaved rounds, pinned CPUs, quiet checks; see its
# README).  Raw results and tables go to $RESULTS (default bench/results/).
#
#   bench/run.sh [micro|echo|pytest|http|all]     (default all)
#
# env: SHARED_BENCH (default ../shared/bench), PYTHON (default .venv/bin/python),
#      REPS, DURATION, ... as the shared runners take them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
shared=${SHARED_BENCH:-$root/../shared/bench}
[ -d "$shared" ] || { echo "bench/run.sh: $shared not found (set SHARED_BENCH)" >&2; exit 2; }
export FLOWCORO_SRC=$root
export PYTHON=${PYTHON:-$root/.venv/bin/python}
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
export RESULTS=${RESULTS:-$root/bench/results}
export BENCH_BUILD=${BENCH_BUILD:-$root/build/bench}
mkdir -p "$RESULTS" "$BENCH_BUILD"
"$PYTHON" -c "import uvloop" 2>/dev/null || "$PYTHON" -m pip install -q uvloop pytest-benchmark

what=${1:-all}
if [ "$what" = micro ] || [ "$what" = all ]; then
  # loop micro-benchmarks: 1M call_soon, 100k tasks, 1M sleep(0), 200k timers, 200k threadsafe
  LOOPS="asyncio uvloop flowcoro:new_event_loop" BASE=uvloop "$shared/micro.sh"
fi
if [ "$what" = echo ] || [ "$what" = all ]; then
  # TCP echo, 1 KiB messages, 1 and 64 connections (server CPU 0, load CPU 1)
  "$shared/echo.sh" "$here/echo_servers.txt"
fi
if [ "$what" = http ] || [ "$what" = all ]; then
  # HTTP plaintext GET /, 64 connections, plain and pipelined x16: HttpServer
  # and ASGIServer beside uvicorn, granian and socketify.  The anchors run from
  # the shared bench venv (its setup.sh installs them and wrk); FlowCoro from
  # this checkout's .venv.
  bench_venv=${BENCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/flowcoro-bench-venv}
  [ -x "$bench_venv/bin/python" ] && command -v wrk >/dev/null || "$shared/setup.sh"
  PYTHON=$bench_venv/bin/python BASE=${BASE:-uvicorn} "$shared/http.sh" "$here/http_servers.txt"
fi
if [ "$what" = pytest ] || [ "$what" = all ]; then
  # pytest-benchmark view of the same micro-benchmarks at 5 % size
  (cd "$shared" && "$PYTHON" -m pytest -p no:cacheprovider test_loop_micro.py --benchmark-only \
      --loops asyncio,uvloop,flowcoro:new_event_loop -q)
fi
