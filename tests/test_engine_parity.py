"""Token-for-token parity of the compiled engine with the PyTorch reference decoder, and the
engine's encoder states, decoder logits and length logits against PyTorch fp32.

Quick tests: the tiny fixture and random models of three shapes (relu / gated-gelu, tied /
untied, 1 to 3 layers, head sizes 16 to 64) over the option sets of the issue. Slow test: the
trained model (the shipped models/gmlm-en-de, or $GMLM_TRAINED_MODEL) on all 1000 test2016 sentences."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
core = pytest.importorskip("gmlm_engine._core")

from gmlm_engine.engine import Translator  # noqa: E402
from gmlm_engine.pytorch.reference import ReferenceTranslator  # noqa: E402

from option_sets import CTC_OPTION_SETS, REFINE_OPTION_SETS  # noqa: E402
from test_engine_common import (TINY, TINY_CTC, decision_margin, make_random_model, mismatches, parity_mismatches,  # noqa: F401
                                test_sentences, torch_one_thread)  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*were truncated:UserWarning")

ROOT = Path(__file__).resolve().parents[1]
TRAINED = Path(os.environ.get("GMLM_TRAINED_MODEL", ROOT / "models" / "gmlm-en-de"))  # the shipped GMLM

SHAPES = {
    "tiny-fixture": None,
    "relu-untied": dict(seed=1),
    "gelu-tied-1layer": dict(seed=2, d_model=48, num_heads=3, d_kv=16, feed_forward_proj="gated-gelu",
                             tie_word_embeddings=True, num_encoder_layers=1, num_decoder_layers=1),
    "relu-wide-3layers": dict(seed=3, d_model=128, num_heads=2, d_kv=64, d_ff=256, num_encoder_layers=3,
                              num_decoder_layers=3, relative_attention_num_buckets=32,
                              relative_attention_max_distance=20),
}

OPTION_SETS = REFINE_OPTION_SETS
N_QUICK = 64


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = {}
    for name, shape in SHAPES.items():
        out[name] = TINY if shape is None else make_random_model(tmp_path_factory.mktemp(name) / "m", **shape)
    return out


@pytest.fixture(scope="module")
def pairs(models):
    return {name: (ReferenceTranslator(d), Translator(d, intra_threads=2, compute_type="float32")) for name, d in models.items()}


@pytest.mark.parametrize("opts", OPTION_SETS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("name", list(SHAPES))
def test_parity(pairs, name, opts):
    check_parity(*pairs[name], opts)


def check_parity(ref, eng, opts):
    """The engine's results (with history) equal the reference's on N_QUICK sentences, near-ties excused; returns
    the sentences and the engine's results."""
    src = test_sentences(N_QUICK)
    a = ref.translate_batch(src, return_history=True, **opts)
    b = eng.translate_batch(src, return_history=True, **opts)
    bad = parity_mismatches(ref, src, a, b, opts)
    assert bad == [], [(i, a[i].tokens, b[i].tokens, a[i].iterations, b[i].iterations) for i in bad[:3]]
    return src, b


CTC_SHAPES = {
    "tiny-ctc-fixture": None,
    "ctc-relu-untied-3x": dict(seed=4, objective="ctc", ctc_upsample=3, max_target_len=96),
    "ctc-1.5x": dict(seed=6, objective="ctc", ctc_upsample=1.5, max_target_len=96),
}


@pytest.fixture(scope="module")
def ctc_pairs(tmp_path_factory):
    out = {}
    for name, shape in CTC_SHAPES.items():
        d = TINY_CTC if shape is None else make_random_model(tmp_path_factory.mktemp(name) / "m", **shape)
        out[name] = (ReferenceTranslator(d), Translator(d, intra_threads=2, compute_type="float32"))
    return out


@pytest.mark.parametrize("opts", CTC_OPTION_SETS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
@pytest.mark.parametrize("name", list(CTC_SHAPES))
def test_ctc_parity(ctc_pairs, name, opts):
    """ctc models: the canvas (ctc_upsample x the encoder tokens, capped), the passes over it and the collapse,
    token for token, with the canvas's length as the one length candidate."""
    ref, eng = ctc_pairs[name]
    src, b = check_parity(ref, eng, opts)
    up, cap = ref.cfg.ctc_upsample, ref.cfg.max_target_len
    enc = ref.encode(src)
    assert [r.length_candidates for r in b] == [[min(cap, math.ceil(up * len(ids)))] for ids in enc]
    assert all(len(h) == r.length_candidates[0] for r in b for h in r.history)
    if name.startswith("ctc-") and opts.get("blank_penalty") == 0.0:   # the premise: canvases hold blanks
        assert sum(t == "<pad>" for r in b for t in r.history[-1]) > 0 and all("<pad>" not in r.tokens for r in b)
    if name.startswith("ctc-") and not opts:   # the premise: repeat_remask (on by default) changes outputs here
        assert [r.text for r in b] != [r.text for r in eng.translate_batch(src, repeat_remask=False)]


@pytest.mark.parametrize("name", ["tiny-fixture", "relu-wide-3layers"])
def test_length_beam_keep_1_keeps_the_first_pass_winner(pairs, name):
    """With length_beam_keep=1 the surviving candidate is the one that wins a single pass (T=1):
    the winner's tokens after pass 0 are the same, in both decoders."""
    src = test_sentences(16)
    for tr in pairs[name]:
        one = tr.translate_batch(src, iterations=1, length_beam=5, stutter_remask=False, return_history=True)
        kept = tr.translate_batch(src, iterations=4, length_beam=5, length_beam_keep=1, stutter_remask=False,
                                  return_history=True)
        assert [r.history[0] for r in kept] == [r.history[0] for r in one]


def _close(ours: np.ndarray, theirs: np.ndarray, what: str, tol: float = 1e-4):
    scale = max(1.0, float(np.abs(theirs).max()))
    diff = float(np.abs(ours - theirs).max())
    assert diff <= tol * scale, f"{what}: max |engine - torch| = {diff:.3g} (scale {scale:.3g})"
    return diff


@pytest.mark.parametrize("name", list(SHAPES))
def test_logits_match_torch(pairs, name):
    """Encoder states, length logits and one decoder pass (vocabulary logits of every position,
    on masked and partly filled inputs) within 1e-4 of PyTorch fp32."""
    ref, eng = pairs[name]
    m, cfg = ref.model, ref.cfg
    from gmlm_engine.common import encode_sources

    srcs = encode_sources(ref.tokenizer, cfg, test_sentences(6))
    rng = np.random.default_rng(0)
    tgts = []
    for i in range(len(srcs)):
        L = int(rng.integers(1, min(cfg.max_target_len, 30) + 1))
        t = rng.integers(5, cfg.vocab_size, size=L)
        t[rng.random(L) < 0.5] = cfg.mask_id
        tgts.append(t.tolist())
    with torch.inference_mode():
        for s, t in zip(srcs, tgts):
            src = torch.tensor([s])
            mask = torch.ones_like(src, dtype=torch.bool)
            enc = m.encode(src, mask)
            _close(eng._engine.encode([s])[0], enc[0].numpy(), "encoder states")
            _close(eng._engine.length_logits([s])[0], m.length_logits(enc)[0].numpy(), "length logits")
            h = m.decode(torch.tensor([t]), torch.ones(1, len(t), dtype=torch.bool), enc, mask)
            _close(eng._engine.decode_logits([s], [t])[0], m.vocab_logits(h)[0].numpy(), "decoder logits")
    # batched: the same numbers when the sources and targets share one packed batch
    one = [eng._engine.decode_logits([s], [t])[0] for s, t in zip(srcs, tgts)]
    many = eng._engine.decode_logits(srcs, tgts)
    for x, y in zip(one, many):
        _close(x, y, "batched decoder logits", tol=1e-5)


def test_relative_position_buckets_match_torch():
    from gmlm_engine.pytorch.model import relative_position_bucket

    for nb, md in ((16, 32), (32, 128), (32, 20), (8, 16), (64, 256)):
        for bidir in (True, False):
            rp = torch.arange(-300, 301)
            expected = relative_position_bucket(rp, bidir, nb, md).tolist()
            got = [core.ops.relative_position_bucket(int(r), bidir, nb, md) for r in rp]
            assert got == expected, (nb, md, bidir)


# --- the trained model on the whole test set ---------------------------------------------------
SLOW_OPTION_SETS = [
    dict(iterations=4, length_beam=3),
    dict(iterations=1, length_beam=1),
    dict(iterations=10, length_beam=5),
    dict(iterations=4, length_beam=3, stutter_remask=False),
    dict(iterations=4, length_beam=3, remask="threshold", threshold=0.9),
    dict(iterations=10, length_beam=5, remask="threshold", threshold=0.7, stutter_remask=False),
    dict(iterations=4, length_beam=5, length_beam_keep=2),
    dict(iterations=8, length_beam=2, cache_refresh=0),
]


def _outcome(r):
    return (tuple(r.tokens), r.iterations, tuple(r.length_candidates))


@pytest.mark.slow
@pytest.mark.parametrize("opts", SLOW_OPTION_SETS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_trained_model_parity_on_test2016(opts, torch_one_thread):
    """All 1000 test2016 sentences, batched as each decoder batches by default (32 / 64).

    Both decoders compute in float32 with different GEMM kernels, and a sentence's numbers also
    change in the last bits with its place in a batch (in both), so a decision that is a near-tie
    (two confidences or scores within ~1e-6) can go either way. The test therefore asserts: at
    most 0.5% of the sentences differ, and every difference is such a near-tie, witnessed by the
    sentence translated alone: the engine's and the reference's outcomes, batched or alone,
    overlap (one system flips between the other's outcomes with the batch context alone), or the
    two outputs have the same score within 1e-5 (an argmax between two tokens whose
    log-probabilities differ by less than the decoders' ~2e-5 logit difference: seen on the
    retrained model, test2016 #737 at T=1, top-2 margin 9.5e-7, in every batch context)."""
    if not (TRAINED / "config.json").is_file():
        pytest.skip(f"no trained model at {TRAINED}")
    d = os.environ.get("GMLM_DATA_DIR")
    if not d or not Path(d).is_dir():
        pytest.skip("GMLM_DATA_DIR is not set")
    from gmlm_engine.data import load_split

    src = load_split(d, "test2016")[0]
    assert len(src) == 1000
    ref, eng = ReferenceTranslator(TRAINED), Translator(TRAINED, compute_type="float32")
    a = ref.translate_batch(src, **opts)
    b = eng.translate_batch(src, **opts)
    bad = mismatches(a, b, tol=1e-4)
    print(f"\n{opts}: {len(bad)}/1000 translations differ: {bad}")
    assert len(bad) <= 5, f"{len(bad)}/1000 differ: " + "; ".join(
        f"#{i}: {a[i].text!r} vs {b[i].text!r}" for i in bad[:3])
    for i in bad:
        ra = ref.translate_batch([src[i]], **opts)[0]
        rb = eng.translate_batch([src[i]], **opts)[0]
        # a near-tie: equal scores (an argmax between near-equal log-probs), or a decision of the
        # reference within 1e-5 (`decision_margin`; seen on the 2026-12-03 GMLM: test2016 #673, T=4
        # K=3 threshold 0.9, a confidence 8e-7 from log 0.9 in pass 3; on the 2026-12-04 candidate:
        # #198, same options, the two most confident predictions of pass 3 1.0e-6 apart when all fell
        # below the threshold), decided by the decoders' ~1e-6 float32 differences
        tie = abs(a[i].score - b[i].score) <= 1e-5 or decision_margin(ref, src[i], opts) <= 1e-5
        assert tie or {_outcome(a[i]), _outcome(ra)} & {_outcome(b[i]), _outcome(rb)}, (
            f"#{i} differs and no batch context makes the decoders agree: reference {a[i].text!r} / "
            f"{ra.text!r}, engine {b[i].text!r} / {rb.text!r}")


@pytest.mark.slow
def test_default_ctc_model_parity_on_test2016(torch_one_thread):
    """The default model (the shipped ctc model) at its defaults, on all 1000 test2016 sentences: the engine in float32
    writes the reference's outputs, but for near-ties (at most 0.5 %, each with scores within 1e-5: an argmax
    between log-probabilities the two decoders compute ~1e-6 apart)."""
    from gmlm_engine import default_model_dir

    d = os.environ.get("GMLM_DATA_DIR")
    if not d or not Path(d).is_dir():
        pytest.skip("GMLM_DATA_DIR is not set")
    from gmlm_engine.data import load_split

    src = load_split(d, "test2016")[0]
    model = default_model_dir()
    a = ReferenceTranslator(model).translate_batch(src)
    b = Translator(model, compute_type="float32").translate_batch(src)
    assert all(r.iterations == 1 for r in b)
    bad = mismatches(a, b, tol=1e-4)
    print(f"\n{len(bad)}/1000 translations differ: {bad}")
    assert len(bad) <= 5 and all(abs(a[i].score - b[i].score) <= 1e-5 for i in bad), [
        (i, a[i].text, b[i].text, a[i].score, b[i].score) for i in bad[:3]]
