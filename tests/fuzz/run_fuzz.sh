#!/usr/bin/env bash
# Run the HTTP/1.1 parser fuzz target (tests/fuzz/fuzz_http_parser.py) with atheris.
#
#   tests/fuzz/run_fuzz.sh SECONDS [libFuzzer options...]      (make fuzz runs this)
#
# With clang on PATH the parser extension is rebuilt in build/fuzz/pkg with
# libFuzzer coverage counters plus ASan and UBSan, and a libFuzzer runtime
# built from clang's is preloaded, so the fuzzer is guided by the C code and
# memory errors abort the run.  Without clang the normal in-place build is
# fuzzed (atheris then sees only Python-level coverage).
#
# Kept corpus: tests/fuzz/corpus/http_parser (read only while fuzzing).  What
# a run finds goes to build/fuzz/corpus; crashes to build/fuzz/artifacts.
#
#   tests/fuzz/run_fuzz.sh merge
#
# adds to the kept corpus the inputs of build/fuzz/corpus that bring new
# coverage (libFuzzer -merge=1); commit them, and move a fixed crash there
# as regress-<sha1> so test_http_fuzz_corpus.py replays it.
set -euo pipefail
secs=${1:-600}
shift || true
merge=
if [ "$secs" = merge ]; then merge=1; fi
root=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PY:-$root/.venv/bin/python}
out=$root/build/fuzz
mkdir -p "$out/corpus" "$out/artifacts"
"$PY" -c "import atheris" 2>/dev/null || "$PY" -m pip install -q atheris

if command -v clang >/dev/null 2>&1 && [ -f "$root/flowcoro/_core/httpparser.c" ]; then
  rm -rf "$out/pkg" && mkdir -p "$out/pkg"
  (cd "$root" && tar -cf - --exclude='*.c' --exclude=__pycache__ flowcoro) | tar -xf - -C "$out/pkg"
  suffix=$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
  inc=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  # No -fsanitize=fuzzer-no-link: it adds stack-depth tracing whose TLS
  # symbol atheris' libFuzzer does not export; these three are what it uses.
  clang -shared -fPIC -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -shared-libasan \
      -fsanitize-coverage=inline-8bit-counters,pc-table,trace-cmp \
      -I"$inc" -I"$root/csrc" "$root/flowcoro/_core/httpparser.c" "$root/csrc/http/parser.c" \
      -o "$out/pkg/flowcoro/_core/httpparser$suffix"
  rt=$(dirname "$(clang -print-file-name=libclang_rt.fuzzer_no_main-x86_64.a)")
  clang++ -shared -o "$out/libfuzzer.so" -Wl,--whole-archive "$rt/libclang_rt.fuzzer_no_main-x86_64.a" \
      -Wl,--no-whole-archive -lpthread
  # libFuzzer first: ASan's runtime has weak coverage hooks that would shadow it.
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
  exec "$PY" tests/fuzz/fuzz_http_parser.py -merge=1 "$@" tests/fuzz/corpus/http_parser "$out/corpus"
fi
exec "$PY" tests/fuzz/fuzz_http_parser.py -max_total_time="$secs" -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/" "$@" "$out/corpus" tests/fuzz/corpus/http_parser
