"""The CPU ops' own checks (thread invariance, argument checks, the BLAS baseline) and the decoding primitives
against the reference decoder's definitions. The ops' accuracy against numpy, on every device: test_op_table.py."""
from __future__ import annotations

import numpy as np
import pytest

core = pytest.importorskip("gmlm_engine._core")
ops = core.ops


def _rng(seed=0):
    return np.random.default_rng(seed)


def _assert_close(ours, ref, rtol=2e-6):
    assert ours.shape == ref.shape
    if ref.size == 0:
        return
    scale = max(1.0, float(np.abs(ref).max()))
    diff = float(np.abs(ours - ref).max())
    assert diff <= rtol * scale * 32, f"max diff {diff:.3g} at scale {scale:.3g}"


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (5, 7, 3), (48, 768, 256), (37, 8000, 32), (0, 8, 8)])
def test_gemm_bits_do_not_depend_on_threads(M, N, K, threads):
    """The tiling depends on the shapes only: any thread count gives the same bits (accuracy against numpy, on
    every device: test_op_table.py)."""
    a = _rng().standard_normal((M, K), dtype=np.float32)
    b = _rng(1).standard_normal((N, K), dtype=np.float32)
    for epilogue in ("none", "relu"):
        y = ops.gemm(a, b, threads, epilogue)
        assert y.shape == (M, N)
        assert np.array_equal(y, ops.gemm(a, b, 1, epilogue))


def test_blas_sgemm_baseline():
    a = _rng().standard_normal((20, 30), dtype=np.float32)
    b = _rng(1).standard_normal((40, 30), dtype=np.float32)
    _assert_close(ops.blas_sgemm(a, b, 2), a @ b.T, rtol=1e-5)


def test_attention_checks_its_inputs():
    q = np.zeros((4, 8), np.float32)
    with pytest.raises(RuntimeError, match="segment"):
        ops.attention(q, q, q, [(0, 5, 0, 4)], 2)
    with pytest.raises(RuntimeError, match="bias table"):
        ops.attention(q, q, q, [(0, 4, 0, 4)], 2, np.zeros((2, 3), np.float32))


def test_lowest_confidence_ties_lower_index_first():
    conf = [-1.0, -2.0, -1.0, -2.0, 0.0, -1.0]
    assert ops.lowest_confidence(conf, 3) == [True, True, False, True, False, False]
    assert ops.lowest_confidence(conf, 0) == [False] * 6
    assert ops.lowest_confidence(conf, 6) == [True] * 6
    nan = [float("nan"), -5.0, 0.0]
    assert ops.lowest_confidence(nan, 2) == [False, True, True]


def test_lowest_confidence_matches_torch_sort():
    torch = pytest.importorskip("torch")
    r = _rng(5)
    for _ in range(200):
        L = int(r.integers(1, 40))
        conf = r.choice([-3.0, -2.0, -1.5, -0.5, 0.0], size=L).astype(np.float32)
        n = int(r.integers(0, L + 1))
        srt = torch.sort(torch.from_numpy(conf), stable=True).indices
        rank = torch.empty(L, dtype=torch.long)
        rank[srt] = torch.arange(L)
        assert ops.lowest_confidence(conf.tolist(), n) == (rank < n).tolist()


def test_repeat_remask_matches_the_reference():
    from gmlm_engine.rules import repeat_mask

    # "Kinder spielen Fußball in einem Park Fußball ." with word pieces Kinder, spielen, Fußball, Park
    toks = [10, 11, 12, 13, 14, 15, 16, 12, 17]
    word = [i in (10, 11, 12, 16) for i in range(20)]
    conf = [-0.1, -0.1, -0.3, -0.2, -0.2, -0.1, -0.4, -1.5, -0.1]
    assert ops.repeat_remask(toks, conf, word) == [i == 7 for i in range(9)]     # the later, less confident
    conf[2] = -2.0
    assert ops.repeat_remask(toks, conf, word) == [i == 2 for i in range(9)]
    # a repeated bigram of non-word pieces (13 14 ... 13 14): its second end; not a lone repeat of 13
    assert ops.repeat_remask([13, 14, 5, 13, 14, 13], [0.0] * 6, word) == [False, False, False, False, True, False]
    r = _rng(11)
    for _ in range(300):
        L = int(r.integers(1, 30))
        t = r.integers(0, 6, size=L).astype(np.int32).tolist()
        c = r.choice([-2.0, -1.0, -0.5, 0.0], size=L).astype(np.float32).tolist()
        w = (r.random(6) < 0.5).tolist()
        got = ops.repeat_remask(t, c, w)
        assert [i for i, m in enumerate(got) if m] == repeat_mask(t, c, w), (t, c, w)
    with pytest.raises(ValueError, match="out of range"):
        ops.repeat_remask([7], [0.0], [True] * 3)


def test_ctc_repeat_blanks_matches_the_reference():
    from gmlm_engine.rules import ctc_repeat_blanks

    nan = float("nan")
    # canvas "Zug _ Zug Zug _": the output repeats the word piece 7; its second run (positions 2-3) is the less
    # confident; position 3 loses to the blank without the penalty of 1, position 2 does not
    toks, conf = [7, 0, 7, 7, 0], [-0.1, -0.2, -0.5, -0.9, -0.1]
    blank_lp = [-3.0, -0.2, -2.0, -1.5, -0.1]
    word = [i == 7 for i in range(10)]
    got_t, got_c = ops.ctc_repeat_blanks(toks, conf, blank_lp, 0, 1.0, word)
    assert got_t == [7, 0, 7, 0, 0] and np.array_equal(np.float32(got_c), np.float32([-0.1, -0.2, -0.5, -1.5, -0.1]))
    assert ctc_repeat_blanks(toks, conf, blank_lp, 0, 1.0, word) == [3]
    blank_lp[2] = -1.5                      # now both positions of the run do: the repeat is gone
    assert ops.ctc_repeat_blanks(toks, conf, blank_lp, 0, 1.0, word)[0] == [7, 0, 0, 0, 0]
    assert ops.ctc_repeat_blanks(toks, conf, blank_lp, 0, 0.0, word)[0] == toks      # no penalty: nothing to give back
    blank_lp[2] = blank_lp[3] = nan         # positions this pass did not predict never change
    assert ops.ctc_repeat_blanks(toks, conf, blank_lp, 0, 1.0, word)[0] == toks
    assert ops.ctc_repeat_blanks([5, 0, 7], [-1.0, 0.0, -1.0], [0.0] * 3, 0, 1.0, word)[0] == [5, 0, 7]  # no repeat
    r = _rng(12)
    for _ in range(300):
        L = int(r.integers(1, 30))
        t = r.integers(0, 5, size=L).astype(np.int32).tolist()
        c = r.choice([-2.0, -1.0, -0.5, 0.0], size=L).astype(np.float32)
        lp = r.choice([nan, -3.0, -1.0, -0.5], size=L).astype(np.float32)
        w = (r.random(5) < 0.5).tolist()
        flip = ctc_repeat_blanks(t, c, lp, 0, 1.0, w)
        want_t, want_c = list(t), c.copy()
        for j in flip:
            want_t[j], want_c[j] = 0, lp[j]
        got_t, got_c = ops.ctc_repeat_blanks(t, c.tolist(), lp.tolist(), 0, 1.0, w)
        assert got_t == want_t and np.array_equal(np.float32(got_c), want_c), (t, c, lp, w)
    with pytest.raises(ValueError, match="out of range"):
        ops.ctc_repeat_blanks([7], [0.0], [0.0], 0, 1.0, [True] * 3)


def test_the_rules_header_is_its_python_twin_on_random_inputs():
    """cpp/decoding/rules.h (compiled for the CPU and the CUDA kernels) against common.py / the reference."""
    from gmlm_engine.rules import gumbel_noise, hash_bits, random_init_tokens, source_hash

    r = _rng(21)
    for _ in range(200):
        seed, sh, k, t, i, v = (int(x) for x in r.integers(0, 2**63, size=6, dtype=np.int64))
        stream = int(r.integers(0, 2))
        assert ops.hash_bits(seed, stream, sh, k, t, i, v) == int(hash_bits(seed, stream, sh, k, t, i, v))
        ids = r.integers(0, 8000, size=int(r.integers(0, 40))).astype(np.int32).tolist()
        assert ops.source_hash(ids) == source_hash(ids)
        k, i = int(r.integers(0, 8)), int(r.integers(0, 96))
        assert ops.init_token(seed, sh, k, i, 8000, 5) == int(random_init_tokens(seed, [sh], [k], [i], 8000, 5)[0])
        V = 7
        g = gumbel_noise(seed, [sh], [k], t % 100, [i], V)[0]
        assert [ops.gumbel(ops.hash_bits(seed, 0, sh, k, t % 100, i, x)) for x in range(V)] == g.tolist()
    for L in range(1, 40):
        for T in range(1, 12):
            assert [ops.linear_remask_count(L, T, t) for t in range(T)] == [L * (T - 1 - t) // T for t in range(T)]
    vals = [float("nan"), float("-inf"), -1.0, -1.0, 0.0, float("inf")]
    for a in range(len(vals)):
        for b in range(len(vals)):
            x, y = vals[a], vals[b]
            # the spec: NaN above +inf, then the index
            key = lambda c, j: (1 if c != c else 0, 0.0 if c != c else c, j)  # noqa: E731
            assert ops.conf_less(x, a, y, b) == (key(x, a) < key(y, b)), (x, a, y, b)


def test_repeats_is_the_references_test():
    from gmlm_engine.rules import repeats

    word = [i in (10, 11, 12, 16) for i in range(20)]
    assert ops.repeats([10, 11, 12, 13, 14, 15, 16, 12, 17], word)          # "... Park Fußball" again
    assert ops.repeats([13, 14, 5, 13, 14], word)                           # a repeated bigram
    assert not ops.repeats([13, 14, 5, 13, 15, 14], word)                   # 13 again, not a word piece
    r = _rng(12)
    seen = set()
    for _ in range(300):
        L = int(r.integers(0, 20))
        t = r.integers(0, 8, size=L).astype(np.int32).tolist()
        w = (r.random(8) < 0.3).tolist()
        seen.add(ops.repeats(t, w))
        assert ops.repeats(t, w) == repeats(t, w), (t, w)
    assert seen == {True, False}


def test_mean_score_is_numpys():
    r = _rng(3)
    for n in (1, 2, 7, 8, 9, 16, 17, 100, 128, 129, 300):
        c = r.standard_normal(n).astype(np.float32)
        assert ops.mean_score(c.tolist()) == float(np.asarray(c, np.float64).sum() / n)
    assert ops.mean_score([]) == 0.0


def test_length_candidates_ties_shorter_first():
    assert ops.length_candidates([0.0, 1.0, 1.0, 0.5], 3) == [2, 3, 4]
    assert ops.length_candidates([2.0, 2.0, 2.0], 2) == [1, 2]
    torch = pytest.importorskip("torch")
    x = _rng(9).standard_normal(96).astype(np.float32)
    lp = torch.log_softmax(torch.from_numpy(x), -1)
    expected = (torch.sort(-lp, stable=True).indices[:5] + 1).tolist()
    assert ops.length_candidates(x.tolist(), 5) == expected
