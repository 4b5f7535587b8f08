"""One case table for the engine's ops, run on every device this machine has (ggml's test-backend-ops
style): each case builds its inputs, a float64 numpy reference computes the answer, and every device's
op is held to it with one tolerance per op. The CPU always runs; the CUDA device runs when the build
has it and a GPU is usable (elsewhere its cases are skipped with the reason).

Awkward shapes on purpose: sizes that are not multiples of any kernel's block, length 1, empty
inputs, rows outside every segment (padding), exact ties. Device-specific checks (the CPU's thread
invariance and argument checks, the CUDA embedding's id check) stay in test_engine_ops.py / test_cuda_ops.py.
To add an op: a case generator, a reference, and one line per device in DEVICES."""
from __future__ import annotations

import math

import numpy as np
import pytest

core = pytest.importorskip("gmlm_engine._core")
ops = core.ops
_cuda = core.cuda_status() if hasattr(core, "cuda_status") else {"built": False, "device_count": 0, "reason": ""}
_cuda_skip = ("no CUDA build (GMLM_WITH_CUDA=OFF)" if not _cuda["built"]
              else f"no usable GPU: {_cuda['reason']}" if _cuda["device_count"] == 0 else None)


class Cpu:
    """The CPU ops, at 2 threads (test_engine_ops.py holds every thread count to the same bits)."""
    gemm = staticmethod(lambda a, b, epilogue: ops.gemm(a, b, 2, epilogue))
    rms_norm = staticmethod(lambda x, g, eps: ops.rms_norm(x, g, eps, 2))
    attention = staticmethod(lambda q, k, v, segs, H, bias, q_pos: ops.attention(q, k, v, segs, H, bias, q_pos, 2))
    vocab_argmax = staticmethod(lambda h, w, **kw: ops.vocab_argmax(h, w, 2, **kw))
    copy_rows = staticmethod(lambda x, src, y, dst, n, acc: ops.copy_rows(x, src, y, dst, n, acc, 2))
    scale = staticmethod(lambda y, s: ops.scale(y, s))


class Cuda:
    """The same ops on the CUDA device (core.cuda_ops: numpy in and out)."""
    gemm = staticmethod(lambda a, b, epilogue: core.cuda_ops.gemm(a, b, epilogue))
    rms_norm = staticmethod(lambda x, g, eps: core.cuda_ops.rms_norm(x, g, eps))
    attention = staticmethod(lambda q, k, v, segs, H, bias, q_pos: core.cuda_ops.attention(q, k, v, segs, H, bias,
                                                                                          q_pos))
    vocab_argmax = staticmethod(lambda h, w, **kw: core.cuda_ops.vocab_argmax(h, w, **kw))
    copy_rows = staticmethod(lambda x, src, y, dst, n, acc: core.cuda_ops.copy_rows(x, src, y, dst, n, acc))
    scale = staticmethod(lambda y, s: core.cuda_ops.scale(y, s))


DEVICES = [pytest.param(Cpu, id="cpu"),
           pytest.param(Cuda, id="cuda", marks=pytest.mark.skipif(_cuda_skip is not None, reason=_cuda_skip or ""))]


def _rng(seed=0):
    return np.random.default_rng(seed)


def _assert_close(ours, ref, tol):
    """|ours - ref| <= tol * max(1, |ref|max), in float64."""
    assert ours.shape == ref.shape
    if ref.size == 0:
        return
    scale = max(1.0, float(np.abs(ref).max()))
    diff = float(np.abs(ours.astype(np.float64) - ref).max())
    assert diff <= tol * scale, f"max diff {diff:.3g} at scale {scale:.3g}"


# ---- GEMM: a . b^T with an epilogue ---------------------------------------------------------------------------

GEMM_SHAPES = [(1, 1, 1), (5, 7, 3), (37, 8001, 33), (48, 768, 256), (200, 1000, 65), (513, 96, 257)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("epilogue", ["none", "relu"])
@pytest.mark.parametrize("M,N,K", GEMM_SHAPES)
def test_gemm(device, M, N, K, epilogue):
    a = _rng().standard_normal((M, K), dtype=np.float32)
    b = _rng(1).standard_normal((N, K), dtype=np.float32)
    ref = a.astype(np.float64) @ b.T.astype(np.float64)
    if epilogue == "relu":
        ref = np.maximum(ref, 0)
    _assert_close(device.gemm(a, b, epilogue), ref, tol=4e-5 * K)


def _gated_case(M, F, K):
    a = _rng().standard_normal((M, K), dtype=np.float32)
    w0 = _rng(1).standard_normal((F, K), dtype=np.float32) / 7
    w1 = _rng(2).standard_normal((F, K), dtype=np.float32) / 7
    # the fused weight interleaves column blocks of wi_0 and wi_1 (ops::Gemm::gated_layout)
    cb = ops.column_block(F)
    rows = []
    for c0 in range(0, F, cb):
        rows += [w0[c0:c0 + cb], w1[c0:c0 + cb]]
    x0, x1 = (a.astype(np.float64) @ w0.T.astype(np.float64)), (a.astype(np.float64) @ w1.T.astype(np.float64))
    gelu = 0.5 * x0 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x0 + 0.044715 * x0 ** 3)))
    return a, np.ascontiguousarray(np.concatenate(rows)), gelu * x1


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("M,F,K", [(1, 5, 3), (30, 200, 48), (77, 1000, 64)])
def test_gemm_gated_gelu(device, M, F, K):
    a, fused, ref = _gated_case(M, F, K)
    _assert_close(device.gemm(a, fused, "gated_gelu"), ref, tol=3e-4)


# ---- RMSNorm ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("M,D", [(1, 1), (1, 8), (300, 256), (300, 257), (1000, 33)])
def test_rms_norm(device, M, D):
    x = _rng().standard_normal((M, D), dtype=np.float32) * 3
    g = _rng(1).standard_normal(D, dtype=np.float32)
    xd = x.astype(np.float64)
    ref = g * (xd / np.sqrt((xd ** 2).mean(-1, keepdims=True) + 1e-6))
    _assert_close(device.rms_norm(x, g, 1e-6), ref, tol=6e-5)


# ---- Row movements: gather, scatter, accumulate (ops::CopyRows), and Scale -----------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["gather", "scatter", "both", "identity"])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("n,rows,cols", [(0, 3, 4), (1, 1, 1), (7, 9, 33), (300, 400, 512)])
def test_copy_rows(device, kind, accumulate, n, rows, cols):
    rng = _rng(n + cols)
    x = rng.standard_normal((rows, cols), dtype=np.float32)
    y = rng.standard_normal((rows + 5, cols), dtype=np.float32)
    src = rng.integers(0, rows, n).astype(np.int32).tolist() if kind in ("gather", "both") else None
    dst = rng.permutation(rows + 5)[:n].astype(np.int32).tolist() if kind in ("scatter", "both") else None
    ref = y.astype(np.float64)
    for i in range(n):
        row = x[src[i] if src else i].astype(np.float64)
        d = dst[i] if dst else i
        ref[d] = ref[d] + row if accumulate else row
    _assert_close(device.copy_rows(x, src, y, dst, n, accumulate), ref, tol=0 if not accumulate else 1e-7)


@pytest.mark.parametrize("device", DEVICES)
def test_scale(device):
    y = _rng(5).standard_normal((37, 65), dtype=np.float32)
    _assert_close(device.scale(y, 0.0625), y.astype(np.float64) * 0.0625, tol=0)


# ---- Attention over packed segments (q_begin, q_len, k_begin, k_len) ----------------------------------------------

def attention_reference(q, k, v, segs, H, bias, q_pos):
    """Softmax attention per segment and head in float64; T5's relative bias indexed by key - query position
    (q_pos: each query row's position, for queries on a subset of positions); rows outside every segment: 0."""
    Dh = q.shape[1] // H
    out = np.zeros(q.shape, np.float64)
    m = (bias.shape[1] - 1) // 2 if bias is not None else 0
    for qb, ql, kb, kl in segs:
        for h in range(H):
            sl = slice(h * Dh, (h + 1) * Dh)
            s = q[qb:qb + ql, sl].astype(np.float64) @ k[kb:kb + kl, sl].T.astype(np.float64)
            if bias is not None:
                pos = np.arange(ql) if q_pos is None else np.asarray(q_pos[qb:qb + ql])
                s = s + bias[h, np.arange(kl)[None, :] - pos[:, None] + m]
            p = np.exp(s - s.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            out[qb:qb + ql, sl] = p @ v[kb:kb + kl, sl]
    return out


def _attention_case(seed, lens, H, Dh, kind):
    """kind: self (with a bias table), self-qpos (queries at random positions of their segment), cross (keys 3
    longer than the queries, no bias). One padding row after each query segment: outside every segment."""
    rng = _rng(seed)
    cross = kind == "cross"
    segs, q_rows, k_rows = [], 0, 0
    for L in lens:
        kl = L + 3 if cross else L
        segs.append((q_rows, L, k_rows, kl))
        q_rows += L + 1
        k_rows += kl
    q = rng.standard_normal((q_rows, H * Dh), dtype=np.float32)
    k = rng.standard_normal((k_rows, H * Dh), dtype=np.float32)
    v = rng.standard_normal((k_rows, H * Dh), dtype=np.float32)
    bias = None if cross else rng.standard_normal((H, 2 * max(lens) + 1), dtype=np.float32) * 3
    q_pos = None
    if kind == "self-qpos":
        q_pos = [0] * q_rows
        for qb, ql, _, kl in segs:
            for i in range(ql):
                q_pos[qb + i] = int(rng.integers(0, kl))
    return q, k, v, segs, bias, q_pos


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["self", "self-qpos", "cross"])
@pytest.mark.parametrize("lens,H,Dh", [([1], 1, 1), ([1, 7, 33], 4, 8), ([1, 7, 15, 33, 2], 4, 64),
                                       ([48, 5], 3, 16), ([5, 20], 2, 12), ([130], 2, 64), ([2, 64, 31], 6, 33)])
def test_attention(device, lens, H, Dh, kind):
    q, k, v, segs, bias, q_pos = _attention_case(len(lens) * 10 + H * Dh, lens, H, Dh, kind)
    ref = attention_reference(q, k, v, segs, H, bias, q_pos)
    ours = device.attention(q, k, v, segs, H, bias, q_pos)
    _assert_close(ours, ref, tol=3e-4)
    pad = [qb + ql for qb, ql, _, _ in segs]
    assert not ours[pad].any(), "rows outside every segment are left as zeros"


# ---- Vocabulary argmax with the log-probability of the choice ---------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("M,V,D", [(1, 1, 4), (1, 5, 3), (3, 257, 8), (7, 8000, 64), (37, 8001, 33),
                                   (250, 300, 16), (300, 1000, 64)])
def test_vocab_argmax(device, M, V, D):
    h = _rng().standard_normal((M, D), dtype=np.float32)
    w = _rng(1).standard_normal((V, D), dtype=np.float32)
    if V > 3:
        w[1] *= 3
        w[3] = w[1]  # an exact tie that wins row 0 by far: the lower id
        h[0] = w[1] * 10
    logits = h.astype(np.float64) @ w.T.astype(np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    pred, conf = device.vocab_argmax(h, w)
    pred = np.asarray(pred)
    top2 = np.sort(logits, 1)[:, -2:] if V > 1 else np.zeros((M, 2))
    clear = (top2[:, 1] - top2[:, 0]) > 1e-3 * np.maximum(1.0, np.abs(top2[:, 1]))
    assert np.array_equal(pred[clear], np.argmax(logits, 1)[clear])
    if V > 3:
        assert pred[0] == 1, "an exact tie (ids 1 and 3) goes to the lower id"
    _assert_close(np.asarray(conf), logp[np.arange(M), pred], tol=1e-4)


def _logp(h, w, bias_col=-1, row_bias=None):
    logits = h.astype(np.float64) @ w.T.astype(np.float64)
    if row_bias is not None:
        logits[:, bias_col] -= row_bias
    logp = logits - logits.max(1, keepdims=True)
    return logp - np.log(np.exp(logp).sum(1, keepdims=True))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("M,V,D", [(1, 5, 3), (37, 8001, 33), (1100, 300, 16)])
def test_vocab_argmax_with_a_logit_bias_and_sampling(device, M, V, D):
    """A ctc model's blank_penalty (row_bias lowers one column's logit per row) and Gumbel-max sampling (the noise
    given per row): the device ops compute the logits and reduce them on the host for both."""
    h = _rng().standard_normal((M, D), dtype=np.float32)
    w = _rng(1).standard_normal((V, D), dtype=np.float32)
    top = int(np.argmax(h[0].astype(np.float64) @ w.T.astype(np.float64)))
    row_bias = (_rng(2).random(M) * 3).astype(np.float32)
    row_bias[0] = 1000.0  # row 0's best column is pushed out of reach
    logp = _logp(h, w, top, row_bias)
    pred, conf = device.vocab_argmax(h, w, bias_col=top, row_bias=row_bias)
    pred = np.asarray(pred)
    assert pred[0] != top
    top2 = np.sort(logp, 1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-3
    assert np.array_equal(pred[clear], np.argmax(logp, 1)[clear])
    _assert_close(np.asarray(conf), logp[np.arange(M), pred], tol=1e-4)
    noise = (_rng(3).gumbel(size=(M, V)) * 2).astype(np.float32)
    pred, conf = device.vocab_argmax(h, w, bias_col=top, row_bias=row_bias, noise=noise)
    pred, score = np.asarray(pred), logp + noise
    top2 = np.sort(score, 1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-3
    assert np.array_equal(pred[clear], np.argmax(score, 1)[clear])
    _assert_close(np.asarray(conf), logp[np.arange(M), pred], tol=1e-4)


# ---- Half precision on cuda: the weight's float16 / bfloat16 copy (cuda/half_weights.h) ----------------------------

_cuda_only = pytest.mark.skipif(_cuda_skip is not None, reason=_cuda_skip or "")
HALF_TOL = {"float16": 2e-3, "bfloat16": 1.5e-2}   # relative to the largest |result|; a wrong operand is off by O(1)


@_cuda_only
@pytest.mark.parametrize("compute_type", ["float16", "bfloat16"])
@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (37, 8001, 33), (513, 96, 257)])
def test_gemm_in_half_precision(compute_type, M, N, K):
    a = _rng().standard_normal((M, K), dtype=np.float32)
    b = _rng(1).standard_normal((N, K), dtype=np.float32)
    ref = a.astype(np.float64) @ b.T.astype(np.float64)
    _assert_close(core.cuda_ops.gemm(a, b, "none", compute_type), ref, tol=HALF_TOL[compute_type])
    a2, fused, ref2 = _gated_case(30, 200, 48)
    _assert_close(core.cuda_ops.gemm(a2, fused, "gated_gelu", compute_type), ref2, tol=HALF_TOL[compute_type])


@_cuda_only
@pytest.mark.parametrize("compute_type", ["float16", "bfloat16"])
def test_vocab_argmax_in_half_precision(compute_type):
    M, V, D = 300, 1000, 64
    h = _rng().standard_normal((M, D), dtype=np.float32)
    w = _rng(1).standard_normal((V, D), dtype=np.float32)
    logp = _logp(h, w)
    pred, conf = core.cuda_ops.vocab_argmax(h, w, compute_type=compute_type)
    pred = np.asarray(pred)
    top2 = np.sort(logp, 1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 0.5   # far from a tie in any precision
    assert clear.sum() > M // 4 and np.array_equal(pred[clear], np.argmax(logp, 1)[clear])
    _assert_close(np.asarray(conf), logp[np.arange(M), pred], tol=HALF_TOL[compute_type] * 5)


# ---- Length candidates: the k most probable lengths, ties shorter first (a host rule on every device) ------------

def test_length_candidates():
    logits = np.round(_rng(3).standard_normal((7, 48)), 1).astype(np.float32)  # rounded: many ties
    logits[2] = 0.0  # all equal
    for k in (1, 3, 48):
        want = [[i + 1 for i in sorted(range(48), key=lambda i: (-float(row[i]), i))[:k]] for row in logits]
        assert [ops.length_candidates(r.tolist(), k) for r in logits] == want
