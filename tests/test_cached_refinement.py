"""Cached refinement (docs/decoding.md, `cache_refresh`): which passes it leaves exact, which rows it computes,
and its option checks. Its parity with the reference is in tests/option_sets.py (test_engine_parity.py), its
batch invariance in test_properties.py, serving with mixed options in test_serving.py."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gmlm_engine._core")

from gmlm_engine.engine import Translator  # noqa: E402
from gmlm_engine.pytorch.reference import ReferenceTranslator  # noqa: E402
from conftest import MODELS  # noqa: E402
from test_engine_common import TINY, test_sentences  # noqa: E402


@pytest.fixture(scope="module")
def decoders():
    return {"reference": ReferenceTranslator(TINY), "engine": Translator(TINY, intra_threads=2, compute_type="float32")}


def _outcomes(results):
    return [(r.tokens, r.iterations) for r in results]


def _same(a, b):
    """Tokens and passes equal, scores within 1e-4 relative (the parity tests' tolerance: the reference's
    cached pass runs another attention kernel, keys from the cache, than its exact pass)."""
    return _outcomes(a) == _outcomes(b) and all(abs(x.score - y.score) <= 1e-4 * max(1.0, abs(y.score))
                                                for x, y in zip(a, b))


@pytest.mark.parametrize("which", ["reference", "engine"])
def test_two_passes_are_exact_whatever_the_refresh(which):
    """Pass 0 sees only masks and pass 1 sees every position changed (a mask became a token, or it is masked
    again), so with T <= 2 every pass computes every position: the same outputs as exact. (On the shipped
    GMLM: a random model may predict <mask> itself, and such a position's input does not change.)"""
    model = MODELS / "gmlm-en-de"
    tr = ReferenceTranslator(model) if which == "reference" else Translator(model, intra_threads=2,
                                                                           compute_type="float32")
    src = test_sentences(24)
    exact = tr.translate_batch(src, iterations=2, length_beam=3)
    for r in (0, 2, 5):
        assert _same(tr.translate_batch(src, iterations=2, length_beam=3, cache_refresh=r), exact)


@pytest.mark.parametrize("which", ["reference", "engine"])
def test_a_refresh_interval_of_t_or_more_means_never(decoders, which):
    """cache_refresh=0 (only pass 0 is full) and any interval >= T do the same passes; an interval < T
    refreshes in between and, on these sentences, changes some output: the reuse is not silently exact."""
    tr, src = decoders[which], test_sentences(64)
    never = tr.translate_batch(src, iterations=6, length_beam=3, cache_refresh=0)
    for r in (6, 7, 1000):
        assert _same(tr.translate_batch(src, iterations=6, length_beam=3, cache_refresh=r), never)
    never = _outcomes(never)
    exact = _outcomes(tr.translate_batch(src, iterations=6, length_beam=3))
    assert never != exact


def test_rows_computed_fall_with_reuse(decoders):
    """The engine's profile counts the decoder rows a pass computes against the candidates' positions:
    equal when exact, fewer with reuse, fewest when never refreshed. Without stutter re-masking a candidate's
    passes depend on its length only (it ends when the linear schedule masks nothing), so every mode decodes
    the same positions."""
    eng, src = decoders["engine"], test_sentences(64)
    counts = {}
    for r in (1, 2, 0):
        eng.set_profiling(True)
        eng.translate_batch(src, iterations=8, length_beam=2, stutter_remask=False, cache_refresh=r)
        p = eng.profile()
        counts[r] = (p["decoder_rows"], p["decoder_positions"])
    eng.set_profiling(False)
    assert counts[1][0] == counts[1][1] > 0
    assert counts[0][1] == counts[2][1] == counts[1][1]
    assert counts[0][0] < counts[2][0] < counts[1][0]


@pytest.mark.parametrize("bad", [-1, 1001, 1.5, True, "2"])
def test_bad_refresh_interval_is_a_value_error_naming_it(decoders, bad):
    for tr in decoders.values():
        with pytest.raises(ValueError, match="cache_refresh"):
            tr.translate_batch(["a dog"], cache_refresh=bad)


def test_the_compiled_engine_checks_it_too(decoders):
    """The engine's own boundary (a caller of _core that skips the Python checks)."""
    eng = decoders["engine"]
    with pytest.raises(ValueError, match="cache_refresh"):
        eng._engine.translate([[4, 10, 1]], cache_refresh=-1)
