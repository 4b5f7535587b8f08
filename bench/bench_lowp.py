"""The engine's low-precision GEMMs (cpu/lowp.h) next to oneDNN's own matmul on the same shapes
(pytest-benchmark).

    python -m pytest bench/bench_lowp.py --benchmark-columns=median,rounds --threads 2 \
        [--benchmark-json bench/results/lowp_benchmark.json]

engine: `_core.ops.LowpGemm`, the GEMM op the decoder runs with compute_type bfloat16 / int8: fp32
activations in, converted (bfloat16) or quantised per row (int8) on every call, oneDNN's matmul per
task on the engine's thread pool (oneDNN single-threaded inside), fp32 out (int8: dequantised per
row and column).
onednn: `_core.ops.OnednnMatmul`, oneDNN's matmul primitive alone with its inputs already in the
compute type (int8: s8 x s8, a common source scale and per-column weight scales, f32 out), the
weights in the layout oneDNN picks, run with `--threads` OpenMP threads.
The ratio onednn time / engine time is the share of oneDNN's own throughput the engine reaches.
Each timed call loops REPS times inside C++ so that Python's call overhead does not count.
Shapes as bench/bench_ops.py: d_model 256, d_ff 1024, vocabulary 8000; M = 16 / 48 rows (batch 1),
480 and 3000 (batch 64).
"""
from __future__ import annotations

import numpy as np
import pytest

core = pytest.importorskip("gmlm_engine._core")
NATIVE = core.build_info().get("native_compute_types", ["float32"])

D, I, F, V = 256, 256, 1024, 8000
ROWS = (16, 48, 480, 3000)
GEMM_SHAPES = [("qkv", 3 * I, D), ("o", D, I), ("ffn_in", F, D), ("ffn_out", D, F), ("vocab", V, D)]
SECONDS: dict[tuple, float] = {}


@pytest.fixture(scope="session")
def threads(request):
    return request.config.getoption("--threads")


def reps_for(M, N, K):
    return max(1, int(2e7 // (M * N * K)))     # about 20 MFLOP x 2 per timed call


@pytest.mark.parametrize("M", ROWS)
@pytest.mark.parametrize("name,N,K", GEMM_SHAPES, ids=[s[0] for s in GEMM_SHAPES])
@pytest.mark.parametrize("compute_type", ["int8", "bfloat16"])
@pytest.mark.parametrize("impl", ["engine", "onednn"])
def test_lowp_gemm(benchmark, threads, impl, compute_type, name, N, K, M):
    if compute_type not in NATIVE:
        pytest.skip(f"this CPU has no native {compute_type}")
    reps = reps_for(M, N, K)
    if impl == "engine":
        rng = np.random.default_rng(0)
        a = rng.standard_normal((M, K), dtype=np.float32)
        g = core.ops.LowpGemm((rng.standard_normal((N, K), dtype=np.float32) / np.sqrt(K)).astype(np.float32),
                              compute_type)
        g.run(a, threads, 2)                                  # packs the weights, creates the primitives
        fn = lambda: g.run(a, threads, reps)                  # noqa: E731
    else:
        m = core.ops.OnednnMatmul(compute_type, M, N, K, threads)
        m.run(2)
        fn = lambda: m.run(reps)                              # noqa: E731
    benchmark(fn)
    if benchmark.stats is None:                               # --benchmark-disable: ran once, nothing timed
        return
    secs = benchmark.stats.stats.median / reps
    benchmark.extra_info["gflops"] = round(2.0 * M * N * K / secs / 1e9, 1)
    SECONDS[(compute_type, name, M, N, K, impl)] = secs


def test_zz_summary(threads):
    """Prints the engine's share of oneDNN's own matmul throughput for every shape measured."""
    lines = [f"\nlow-precision GEMMs, {threads} thread(s): GFLOP/s (median) and engine / oneDNN throughput"]
    for key in sorted(k for k in SECONDS if k[-1] == "engine"):
        ct, name, M, N, K, _ = key
        ours, theirs = SECONDS[key], SECONDS.get(key[:-1] + ("onednn",))
        if theirs is None:
            continue
        flop = 2.0 * M * N * K
        lines.append(f"  {ct:<8} {name:<8} M={M:<5} N={N:<5} K={K:<5} engine {flop / ours / 1e9:7.1f}   "
                     f"oneDNN {flop / theirs / 1e9:7.1f}   {theirs / ours:5.0%}")
    print("\n".join(lines))
