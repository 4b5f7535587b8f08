"""The CUDA-only ops (gmlm_engine._core.cuda_ops): the embedding gather and the fused remask kernel, against
the CPU ops and the reference's rules. The ops every device has (GEMM, RMSNorm, attention, vocabulary argmax,
length candidates) run from one case table on every device: test_op_table.py.

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


def test_embedding():
    table = _rng().standard_normal((50, 33), dtype=np.float32)
    ids = [0, 49, 7, 7, 3]
    assert np.array_equal(cu.embedding(table, ids), table[ids])
    with pytest.raises(ValueError, match="token id"):
        cu.embedding(table, [50])


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
