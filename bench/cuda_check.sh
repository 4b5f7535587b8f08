#!/usr/bin/env bash
# The one command to run first when a GPU is lent (docs/cuda.md): the op table's cuda rows, the engine's parity
# sets on cuda (quick, then the trained model on test2016), then the benchmark. Each step's log goes to $OUT (default
# bench/results/cuda-check); the script goes on after a failing step so that one run shows everything.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/cuda-check}
mkdir -p "$OUT"
export GMLM_DATA_DIR=${GMLM_DATA_DIR:-../shared/data/multi30k}
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
python -c "import gmlm_engine._core as c; print(c.cuda_status())" | tee "$OUT/status.txt"
rc=0
step() {
  local name=$1; shift
  echo "== $name: $*"
  "$@" > "$OUT/$name.log" 2>&1
  local r=$?
  tail -5 "$OUT/$name.log"
  [ $r -eq 0 ] || rc=$r
}
step ops python -m pytest -q tests/test_op_table.py tests/test_cuda_ops.py
step engine python -m pytest -q tests/test_cuda_engine.py
step trained python -m pytest -q -m slow tests/test_cuda_engine.py
step bench python bench/bench_cuda.py --out "$OUT/bench.json" ${BENCH_ARGS:-}
exit $rc
