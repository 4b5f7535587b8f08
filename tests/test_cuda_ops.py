"""What only the CUDA ops check (gmlm_engine._core.cuda_ops): the embedding's token ids. The ops every device has
(GEMM, RMSNorm, attention, vocabulary argmax, row copies) and the half-precision GEMMs run from one case table on
every device: test_op_table.py.

Runs on a machine with a CUDA build and a GPU; elsewhere every test is skipped at run time with
the reason (no CUDA build / no usable GPU)."""
from __future__ import annotations

import numpy as np
import pytest

core = pytest.importorskip("gmlm_engine._core")
_status = core.cuda_status() if hasattr(core, "cuda_status") else {"built": False, "device_count": 0,
                                                                    "reason": "old build"}
pytestmark = pytest.mark.skipif(
    not _status["built"] or _status["device_count"] == 0,
    reason="no CUDA build (GMLM_WITH_CUDA=OFF)" if not _status["built"] else f"no usable GPU: {_status['reason']}")

cu = getattr(core, "cuda_ops", None)


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_embedding():
    table = _rng().standard_normal((50, 33), dtype=np.float32)
    ids = [0, 49, 7, 7, 3]
    assert np.array_equal(cu.embedding(table, ids), table[ids])
    with pytest.raises(ValueError, match="token id"):
        cu.embedding(table, [50])
