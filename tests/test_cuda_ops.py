"""The CUDA ops (gmlm_engine._core.cuda_ops) against the CPU ops on awkward shapes: sizes that are
not multiples of the kernels' block sizes, length 1, rows outside every segment (padding), ties.

Runs on a machine with a CUDA build and a GPU; elsewhere every test is skipped at run time with
the reason (no CUDA build / no usable GPU)."""
from __future__ import annotations

import math

import numpy as np
import pytest

core = pytest.importorskip("gmlm_engine._core")
_status = core.cuda_status() if hasattr(core, "cuda_status") else {"built": False, "device_count": 0,
                                                                    "reason": "old build"}
pytestmark = pytest.mark.skipif(
    not _status["built"] or _status["device_count"] == 0,
    reason="no CUDA build (GMLM_WITH_CUDA=OFF)" if not _status["built"] else f"no usable GPU: {_status['reason']}")

ops = core.ops
cu = getattr(core, "cuda_ops", None)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _assert_close(ours, ref, rtol):
    assert ours.shape == ref.shape
    if ref.size == 0:
        return
    scale = max(1.0, float(np.abs(ref).max()))
    diff = float(np.abs(ours.astype(np.float64) - ref.astype(np.float64)).max())
    assert diff <= rtol * scale, f"max diff {diff:.3g} at scale {scale:.3g}"


@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (5, 7, 3), (37, 8001, 33), (200, 1000, 65), (513, 96, 257)])
@pytest.mark.parametrize("epilogue", ["none", "relu"])
def test_gemm(M, N, K, epilogue):
    a = _rng().standard_normal((M, K), dtype=np.float32)
    b = _rng(1).standard_normal((N, K), dtype=np.float32)
    _assert_close(cu.gemm(a, b, epilogue), ops.gemm(a, b, 1, epilogue), rtol=1e-6 * K + 1e-6)


@pytest.mark.parametrize("M,F,K", [(1, 5, 3), (30, 200, 48), (77, 1000, 64)])
def test_gemm_gated_gelu(M, F, K):
    a = _rng().standard_normal((M, K), dtype=np.float32)
    w0 = _rng(1).standard_normal((F, K), dtype=np.float32) / 7
    w1 = _rng(2).standard_normal((F, K), dtype=np.float32) / 7
    cb = ops.column_block(F)
    rows = []
    for c0 in range(0, F, cb):
        rows += [w0[c0:c0 + cb], w1[c0:c0 + cb]]
    fused = np.ascontiguousarray(np.concatenate(rows))
    _assert_close(cu.gemm(a, fused, "gated_gelu"), ops.gemm(a, fused, 1, "gated_gelu"), rtol=1e-5)


@pytest.mark.parametrize("M,D", [(1, 1), (1, 8), (300, 257), (1000, 33)])
def test_rms_norm(M, D):
    x = _rng().standard_normal((M, D), dtype=np.float32) * 3
    g = _rng(1).standard_normal(D, dtype=np.float32)
    _assert_close(cu.rms_norm(x, g, 1e-6), ops.rms_norm(x, g, 1e-6, 1), rtol=2e-6)


def test_embedding():
    table = _rng().standard_normal((50, 33), dtype=np.float32)
    ids = [0, 49, 7, 7, 3]
    assert np.array_equal(cu.embedding(table, ids), table[ids])
    with pytest.raises(ValueError, match="token id"):
        cu.embedding(table, [50])


def _attention_case(seed, lens, H, Dh, cross=False, with_pos=False):
    rng = _rng(seed)
    segs, q_rows, k_rows = [], 0, 0
    for L in lens:
        kl = L + 3 if cross else L
        segs.append((q_rows, L, k_rows, kl))
        q_rows += L + 1  # one padding row after each segment: outside every segment
        k_rows += kl
    q = rng.standard_normal((q_rows, H * Dh), dtype=np.float32)
    k = rng.standard_normal((k_rows, H * Dh), dtype=np.float32)
    v = rng.standard_normal((k_rows, H * Dh), dtype=np.float32)
    bias = None if cross else rng.standard_normal((H, 2 * max(lens) + 1), dtype=np.float32)
    q_pos = None
    if with_pos:
        q_pos = [0] * q_rows
        for qb, ql, _, kl in segs:
            for i in range(ql):
                q_pos[qb + i] = int(rng.integers(0, kl))
    return q, k, v, segs, bias, q_pos


@pytest.mark.parametrize("lens,H,Dh", [([1], 1, 1), ([1, 7, 33], 4, 8), ([48, 5], 3, 16), ([130], 2, 64),
                                       ([2, 64, 31], 6, 33)])
@pytest.mark.parametrize("kind", ["self", "self-qpos", "cross"])
def test_attention(lens, H, Dh, kind):
    q, k, v, segs, bias, q_pos = _attention_case(len(lens) * 10 + H, lens, H, Dh, cross=kind == "cross",
                                                 with_pos=kind == "self-qpos")
    ours = cu.attention(q, k, v, segs, H, bias, q_pos)
    ref = ops.attention(q, k, v, segs, H, bias, q_pos, 1)
    _assert_close(ours, ref, rtol=1e-5)
    pad = [qb + ql for qb, ql, _, _ in segs]  # rows outside every segment are left untouched (zeros)
    assert not ours[pad].any()


@pytest.mark.parametrize("M,V,D", [(1, 1, 4), (1, 5, 3), (37, 8001, 33), (300, 1000, 64)])
def test_vocab_argmax(M, V, D):
    h = _rng().standard_normal((M, D), dtype=np.float32)
    w = _rng(1).standard_normal((V, D), dtype=np.float32)
    if V > 10:
        w[V - 1] = w[3]  # an exact tie between columns 3 and V-1: the lower index wins
        h[0] = w[3] * 10
    pred, conf = cu.vocab_argmax(h, w)
    rp, rc = ops.vocab_argmax(h, w, 1)
    logits = h.astype(np.float64) @ w.T.astype(np.float64)
    top2 = np.sort(logits, axis=1)[:, -2:] if V > 1 else np.zeros((M, 2))
    clear = (top2[:, 1] - top2[:, 0]) > 1e-3 * np.maximum(1.0, np.abs(top2[:, 1]))
    assert np.array_equal(pred[clear], rp[clear])
    if V > 10:
        assert pred[0] == 3
    _assert_close(conf, rc, rtol=1e-5)


def _threshold_ref(conf, just, log_thr):
    keep = [bool(j) and float(c) < log_thr for c, j in zip(conf, just)]
    if sum(keep) == sum(bool(j) for j in just):
        key = [(c if j else -math.inf, i) for i, (c, j) in enumerate(zip(conf, just))]
        last = max(range(len(conf)), key=lambda i: key[i])
        keep[last] = False
    return keep


def _stutter(tokens, mask):
    return [m or (i > 0 and tokens[i] == tokens[i - 1]) for i, m in enumerate(mask)]


@pytest.mark.parametrize("stutter", [False, True])
@pytest.mark.parametrize("threshold", [False, True])
def test_remask(threshold, stutter):
    rng = _rng(5)
    lengths = [1, 2, 5, 33, 48, 130]
    conf, just, tokens, n = [], [], [], []
    for L in lengths:
        c = np.round(rng.standard_normal(L), 1).astype(np.float32) - 2  # rounded: many ties
        conf += c.tolist()
        just += [int(x) for x in rng.integers(0, 2, L)]
        tokens += [int(x) for x in rng.integers(5, 9, L)]  # few ids: many stutters
        n.append(int(rng.integers(0, L + 1)))
    log_thr = math.log(0.15)
    got = cu.remask(conf, just, tokens, lengths, n, threshold, log_thr, stutter)
    want, b = [], 0
    for L, k in zip(lengths, n):
        c, j, t = conf[b:b + L], just[b:b + L], tokens[b:b + L]
        m = _threshold_ref(c, j, log_thr) if threshold else ops.lowest_confidence(c, k)
        want += _stutter(t, m) if stutter else list(m)
        b += L
    assert got == want


def test_length_candidates():
    rng = _rng(3)
    logits = np.round(rng.standard_normal((7, 48)), 1).astype(np.float32)  # ties: shorter first
    logits[2] = 0.0  # all equal
    for k in (1, 3, 48):
        got = cu.length_candidates(logits, k)
        assert got == [ops.length_candidates(row.tolist(), k) for row in logits]
