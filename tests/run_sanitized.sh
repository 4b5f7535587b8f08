#!/usr/bin/env bash
# Build the engine with AddressSanitizer + UndefinedBehaviorSanitizer (-DGMLM_SANITIZE=ON) into its
# own build directory and run the engine's parity, AR and bad-input tests against that build.
#
#   tests/run_sanitized.sh [extra pytest args]       (from any directory; uses `python` on PATH)
#
# Python itself is not instrumented, so the ASan runtime is preloaded (LD_PRELOAD) and leak
# detection is off (the interpreter's own allocations would be reported). The installed
# gmlm_engine (regular or editable) is used with its extension swapped for the sanitized one by a
# small pytest plugin, so the test environment (torch, numpy, ...) is the current one and nothing
# installed is modified. (Subprocesses started by tests use the installed extension.)
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

plugin=$(mktemp -d)
trap 'rm -rf "$plugin"' EXIT
cat > "$plugin/gmlm_sanitized_core.py" <<'PY'
"""pytest plugin: gmlm_engine._core is the sanitized build named by $GMLM_SANITIZED_CORE."""
import importlib.util
import os
import sys

spec = importlib.util.spec_from_file_location("gmlm_engine._core", os.environ["GMLM_SANITIZED_CORE"])
core = importlib.util.module_from_spec(spec)
spec.loader.exec_module(core)
assert core.build_info()["sanitize"], core.build_info()
import gmlm_engine  # noqa: E402

sys.modules["gmlm_engine._core"] = core
gmlm_engine._core = core
print("sanitized gmlm_engine._core:", spec.origin)
PY
GMLM_SANITIZED_CORE=$(ls "$build"/_core*.so)
export GMLM_SANITIZED_CORE

# libstdc++ is preloaded too: ASan resolves the real __cxa_throw when it starts, and python does
# not link libstdc++ (without it the first C++ exception aborts in the interceptor).
asan=$(${CXX:-g++} -print-file-name=libasan.so)
stdcxx=$(${CXX:-g++} -print-file-name=libstdc++.so.6)
export LD_PRELOAD="$asan:$stdcxx${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:alloc_dealloc_mismatch=0:detect_odr_violation=0:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
export PYTHONPATH="$plugin${PYTHONPATH:+:$PYTHONPATH}"

"$py" -m pytest -q -s -m "not slow" -p no:cacheprovider -p gmlm_sanitized_core \
    tests/test_engine_parity.py tests/test_engine_api.py tests/test_engine_ops.py tests/test_engine_ar.py "$@"
