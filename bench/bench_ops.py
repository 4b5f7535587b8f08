"""Micro-benchmarks of the engine's hot ops (pytest-benchmark), each with its achieved GFLOP/s
next to the BLAS's own SGEMM GFLOP/s on the same shapes.

    python -m pytest bench/bench_ops.py --benchmark-columns=median,rounds \
        --benchmark-sort=name [--threads 2]

Shapes are those of a d_model-256 model (d_kv 64 x 4 heads, d_ff 1024, vocabulary 8000):
M = 16 / 48 rows (a batch-1 decoder pass over 3 length candidates), 480 and 3000 (batch 64).
The GFLOP/s of each case is in its extra_info (`--benchmark-json` keeps it) and printed in the
summary table at the end of the run.
"""
from __future__ import annotations

import numpy as np
import pytest

core = pytest.importorskip("gmlm_engine._core")

D, I, F, V = 256, 256, 1024, 8000
ROWS = (16, 48, 480, 3000)
GEMM_SHAPES = [  # (name, N, K)
    ("qkv", 3 * I, D), ("o", D, I), ("ffn_in", F, D), ("ffn_out", D, F), ("vocab", V, D)]
RESULTS: dict[str, float] = {}


@pytest.fixture(scope="session")
def threads(request):
    return request.config.getoption("--threads")


def _data(M, N, K, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((M, K), dtype=np.float32),
            (rng.standard_normal((N, K), dtype=np.float32) / np.sqrt(K)).astype(np.float32))


def _record(benchmark, key, flops):
    gflops = flops / benchmark.stats.stats.median / 1e9
    benchmark.extra_info["gflops"] = round(gflops, 1)
    RESULTS[key] = gflops


@pytest.mark.parametrize("M", ROWS)
@pytest.mark.parametrize("name,N,K", GEMM_SHAPES, ids=[s[0] for s in GEMM_SHAPES])
@pytest.mark.parametrize("impl", ["engine", "blas"])
def test_gemm(benchmark, threads, impl, name, N, K, M):
    a, b = _data(M, N, K)
    fn = (lambda: core.ops.gemm(a, b, threads)) if impl == "engine" else (lambda: core.ops.blas_sgemm(a, b, threads))
    benchmark(fn)
    _record(benchmark, f"gemm {name} M={M} N={N} K={K} {impl}", 2.0 * M * N * K)


@pytest.mark.parametrize("M", ROWS)
def test_vocab_argmax(benchmark, threads, M):
    """The fused vocabulary step: GEMM tiles + log-softmax + argmax (vs the bare SGEMM above)."""
    h, w = _data(M, V, D)
    benchmark(lambda: core.ops.vocab_argmax(h, w, threads))
    _record(benchmark, f"vocab_argmax M={M} N={V} K={D} engine", 2.0 * M * V * D)


@pytest.mark.parametrize("M", ROWS)
def test_ffn_in_relu(benchmark, threads, M):
    a, b = _data(M, F, D)
    benchmark(lambda: core.ops.gemm(a, b, threads, "relu"))
    _record(benchmark, f"gemm+relu M={M} N={F} K={D} engine", 2.0 * M * F * D)


@pytest.mark.parametrize("cands", [3, 192])
def test_attention(benchmark, threads, cands):
    """Self-attention over `cands` candidates of 15 tokens (4 heads of 64) with position bias."""
    L, H, Dh = 15, 4, 64
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((cands * L, H * Dh), dtype=np.float32) for _ in range(3))
    bias = rng.standard_normal((H, 2 * 95 + 1), dtype=np.float32)
    segs = [(c * L, L, c * L, L) for c in range(cands)]
    benchmark(lambda: core.ops.attention(q, k, v, segs, H, bias, None, threads))
    _record(benchmark, f"attention cands={cands} L={L}", 4.0 * cands * H * L * L * Dh)


@pytest.mark.parametrize("M", [48, 3000])
def test_rms_norm(benchmark, threads, M):
    x = np.random.default_rng(0).standard_normal((M, D), dtype=np.float32)
    g = np.ones(D, np.float32)
    benchmark(lambda: core.ops.rms_norm(x, g, 1e-6, threads))
    benchmark.extra_info["rows_per_us"] = round(M / benchmark.stats.stats.median / 1e6, 2)


def test_zz_summary(threads):
    """Prints engine GFLOP/s next to the BLAS's on every GEMM shape measured in this run."""
    lines = [f"\nGFLOP/s with {threads} thread(s) (median)"]
    for key in sorted(RESULTS):
        if key.endswith(" engine") and key.startswith("gemm "):
            blas = RESULTS.get(key[: -len(" engine")] + " blas")
            ratio = f"  {RESULTS[key] / blas:5.0%} of BLAS" if blas else ""
            lines.append(f"  {key[:-7]:<40} engine {RESULTS[key]:7.1f}   blas {blas or float('nan'):7.1f}{ratio}")
        elif not key.startswith("gemm "):
            lines.append(f"  {key:<48} {RESULTS[key]:7.1f}")
    print("\n".join(lines))
