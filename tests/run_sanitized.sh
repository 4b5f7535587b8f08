#!/usr/bin/env bash
# Build the engine with AddressSanitizer + UndefinedBehaviorSanitizer (-DGMLM_SANITIZE=ON) into its
# own build directory and run the engine's parity and bad-input tests against that build.
#
#   tests/run_sanitized.sh [extra pytest args]       (from any directory; uses `python` on PATH)
#
# Python itself is not instrumented, so the ASan runtime is preloaded (LD_PRELOAD) and leak
# detection is off (the interpreter's own allocations would be reported). The sanitized
# gmlm_engine._core is put in front of the installed package through an overlay directory on
# PYTHONPATH (a copy of python/gmlm_engine plus the sanitized extension), so the test environment
# (torch, numpy, ...) is the current one and nothing installed is modified.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
py=${PYTHON:-python}
build=${GMLM_SANITIZE_BUILD_DIR:-$root/build/sanitize}

"$py" -c "import pybind11" 2>/dev/null || "$py" -m pip install -q "pybind11>=3"
"$py" -c "import scipy_openblas32" 2>/dev/null || "$py" -m pip install -q "scipy-openblas32>=0.3.27"

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGMLM_SANITIZE=ON \
      -DPython_EXECUTABLE="$(command -v "$py")" \
      -Dpybind11_DIR="$("$py" -c 'import pybind11; print(pybind11.get_cmake_dir())')" >/dev/null
cmake --build "$build" -j "${GMLM_BUILD_JOBS:-2}"

overlay=$(mktemp -d)
trap 'rm -rf "$overlay"' EXIT
mkdir "$overlay/gmlm_engine"
cp -r "$root"/python/gmlm_engine/. "$overlay/gmlm_engine/"
rm -f "$overlay"/gmlm_engine/_core*.so
cp "$build"/_core*.so "$overlay/gmlm_engine/"

asan=$(${CXX:-g++} -print-file-name=libasan.so)
export LD_PRELOAD="$asan${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:alloc_dealloc_mismatch=0:detect_odr_violation=0:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
export PYTHONPATH="$overlay${PYTHONPATH:+:$PYTHONPATH}"

"$py" -c "import gmlm_engine._core as c, sys; i = c.build_info(); assert i['sanitize'], i; print('sanitized core:', c.__file__)"
"$py" -m pytest -q -m "not slow" -p no:cacheprovider \
    tests/test_engine_parity.py tests/test_engine_api.py tests/test_engine_ops.py "$@"
