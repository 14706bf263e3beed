#!/usr/bin/env bash
# Run the WebSocket framing fuzz target (tests/fuzz/fuzz_wsframe.py) with atheris.
#
#   tests/fuzz/run_fuzz_ws.sh SECONDS [libFuzzer options...]
#   tests/fuzz/run_fuzz_ws.sh merge       # keep new-coverage inputs in the corpus
#
# Same scheme as run_fuzz.sh (the HTTP parser's): with clang on PATH the
# wsframe extension is rebuilt in build/fuzz-ws/pkg with libFuzzer coverage
# counters plus ASan and UBSan, so the fuzzer is guided by csrc/ws and memory
# errors abort the run; without clang the normal in-place build is fuzzed
# (coverage of the target's Python checks only).
#
# Kept corpus: tests/fuzz/corpus/wsframe (read only while fuzzing; replayed
# by tests/websocket/test_websocket_fuzz_corpus.py).  New inputs go to
# build/fuzz-ws/corpus, crashes to build/fuzz-ws/artifacts.
set -euo pipefail
secs=${1:-600}
shift || true
merge=
if [ "$secs" = merge ]; then merge=1; fi
root=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PY:-$root/.venv/bin/python}
out=$root/build/fuzz-ws
mkdir -p "$out/corpus" "$out/artifacts"
"$PY" -c "import atheris" 2>/dev/null || "$PY" -m pip install -q atheris

if command -v clang >/dev/null 2>&1 && [ -f "$root/flowcoro/_core/wsframe.c" ]; then
  rm -rf "$out/pkg" && mkdir -p "$out/pkg"
  (cd "$root" && tar -cf - --exclude='*.c' --exclude=__pycache__ flowcoro) | tar -xf - -C "$out/pkg"
  suffix=$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
  inc=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  clang -shared -fPIC -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -shared-libasan \
      -fsanitize-coverage=inline-8bit-counters,pc-table,trace-cmp \
      -I"$inc" -I"$root/csrc" "$root/flowcoro/_core/wsframe.c" "$root/csrc/ws/frame.c" \
      "$root/csrc/ws/utf8.c" -o "$out/pkg/flowcoro/_core/wsframe$suffix"
  rt=$(dirname "$(clang -print-file-name=libclang_rt.fuzzer_no_main-x86_64.a)")
  clang++ -shared -o "$out/libfuzzer.so" -Wl,--whole-archive "$rt/libclang_rt.fuzzer_no_main-x86_64.a" \
      -Wl,--no-whole-archive -lpthread
  export LD_PRELOAD="$out/libfuzzer.so $(clang -print-file-name=libclang_rt.asan-x86_64.so)"
  export ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0:abort_on_error=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  export PYTHONPATH=$out/pkg
  echo "fuzzing the instrumented build in $out/pkg (ASan+UBSan, C coverage)"
else
  export PYTHONPATH=$root
  echo "clang not found: fuzzing the normal build (Python coverage only)"
fi
cd "$root"
if [ -n "$merge" ]; then
  exec "$PY" tests/fuzz/fuzz_wsframe.py -merge=1 "$@" tests/fuzz/corpus/wsframe "$out/corpus"
fi
exec "$PY" tests/fuzz/fuzz_wsframe.py -max_total_time="$secs" -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/" "$@" "$out/corpus" tests/fuzz/corpus/wsframe
