"""Shared helpers of the engine tests (test_engine*.py): random model directories, test
sentences and result comparison. The tests here check the helpers' own premises."""
from __future__ import annotations

import collections
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gmlm_engine.config import ModelConfig  # noqa: E402
from gmlm_engine.pytorch.model import T5Model, save_model_dir  # noqa: E402
from gmlm_engine.pytorch.reference import ReferenceTranslator  # noqa: E402
from gmlm_engine.tokenizer import Tokenizer  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"


def run_per_kernel_set(code: str, timeout: int = 300, isas=("generic", "best")) -> dict:
    """Runs `code` (which prints one JSON value on its last line) in a fresh interpreter once per
    kernel set: GMLM_CPU_ISA=generic (portable), avx2 (no AVX-512), best (this CPU's best); returns
    {isa: value}."""
    import json
    import subprocess
    import sys

    runs = {}
    for isa in isas:
        out = subprocess.run([sys.executable, "-c", code], check=True, cwd=DATA.parents[1],
                             env=dict(os.environ, GMLM_CPU_ISA=isa), capture_output=True, text=True,
                             timeout=timeout).stdout
        runs[isa] = json.loads(out.strip().splitlines()[-1])
    return runs
TINY = DATA / "tiny-gmlm"
TINY_CTC = DATA / "tiny-ctc"
SPM = TINY / "spm.model"

# Sentences of every kind of length for quick tests (the test set itself is used when available).
SENTENCES = [
    "A man rides a bike.",
    "Two young children are playing in the sand at the beach while their parents watch them.",
    "A dog.",
    "People are walking down a busy city street next to tall buildings and a red bus.",
    "A woman in a blue dress is singing on a stage.",
    "x",
    "Three men in orange vests are working on the railroad tracks near a small station in the mountains.",
    "A child eats.",
    "The girl with the green hat smiles at the camera while holding a small white puppy in her arms.",
    "Two dogs run.",
    "An elderly man sits on a bench reading a newspaper.",
    "Several musicians play guitars and drums in front of a crowd at an outdoor festival on a sunny afternoon.",
]


def test_sentences(n: int) -> list[str]:
    """The first n test2016 sources when GMLM_DATA_DIR has them, else SENTENCES repeated."""
    d = os.environ.get("GMLM_DATA_DIR")
    if d and Path(d).is_dir():
        try:
            from gmlm_engine.data import load_split

            return load_split(d, "test2016")[0][:n]
        except FileNotFoundError:
            pass
    return [SENTENCES[i % len(SENTENCES)] for i in range(n)]


test_sentences.__test__ = False  # not a test


@pytest.fixture(scope="module", autouse=True)
def torch_one_thread():
    """Autouse in the modules that import it: the reference is much faster single-threaded on these small models (and unaffected by
    other processes on a busy machine); restored afterwards for the other test modules."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_random_model(out_dir, seed: int = 0, **overrides) -> Path:
    """A random gmlm model directory with the fixture's vocabulary. The default T5 initialisation
    gives a near-identity model (each position predicts its own input token); here the attention
    and feed-forward outputs are scaled up and the relative position biases sharpened, so that
    predictions depend on the source, on the other positions and on the position, as a trained
    model's do, and the decoding loop goes through all its branches."""
    torch.manual_seed(seed)
    cfg = dict(objective="gmlm", vocab_size=256, d_model=64, d_kv=16, d_ff=128, num_heads=4,
               num_encoder_layers=2, num_decoder_layers=2, feed_forward_proj="relu", tie_word_embeddings=False,
               max_source_len=64, max_target_len=48, relative_attention_num_buckets=16,
               relative_attention_max_distance=32, mask_id=3, len_id=4)
    cfg.update(overrides)
    model = T5Model(ModelConfig(**cfg).validate())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith((".o.weight", "wo.weight")):
                p.mul_(4.0)
            elif "relative_attention_bias" in name:
                p.mul_(8.0)
            elif name == "lm_head.weight":
                p.mul_(3.0)
            elif name == "length_head.weight":
                p.mul_(2.0)
    save_model_dir(model, out_dir, SPM, {"note": f"random test model (seed {seed})"})
    if model.cfg.objective == "ctc" and not model.cfg.tie_word_embeddings:
        # a random model hardly ever predicts the blank: its output row becomes 1.2 x the row of the token the
        # model predicts most, so that canvases hold blanks (about two thirds) and the collapse drops them
        tok = ReferenceTranslator(out_dir).translate_batch(SENTENCES[:8], return_history=True)
        most = collections.Counter(t for r in tok for h in r.history for t in h).most_common(1)[0][0]
        with torch.no_grad():
            model.lm_head.weight[model.cfg.pad_id] = 1.2 * model.lm_head.weight[Tokenizer(SPM).sp.piece_to_id(most)]
        save_model_dir(model, out_dir, SPM, {"note": f"random test model (seed {seed}), blanks made likely"})
    return Path(out_dir)


def mismatches(a, b, scores=True, tol=1e-4) -> list[int]:
    """Indices where two result lists differ (tokens, text, iterations, length candidates, score)."""
    bad = []
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        same = (x.tokens == y.tokens and x.text == y.text and x.iterations == y.iterations
                and x.length_candidates == y.length_candidates and (x.history is None) == (y.history is None)
                and (x.history is None or x.history == y.history))
        if scores:
            same = same and abs(x.score - y.score) <= tol
        if not same:
            bad.append(i)
    return bad


def decision_margin(ref: ReferenceTranslator, src: str, opts: dict) -> float:
    """The smallest margin of a decision in the reference's decoding of `src` alone: the gap between
    the best and second-best log-probability of a predicted position (with sampling, of log-probability plus
    its Gumbel noise: what the sample's argmax compares); with threshold re-masking,
    between a prediction's log-probability and the threshold, and between the two most confident
    predictions of a pass that fell entirely below it (the rule keeps the most confident); with
    linear re-masking, between the last re-masked and the first kept confidence. Below about 1e-5
    two correct fp32 implementations (other summation orders: another ISA's GEMM kernels, another
    batch) may decide differently."""
    import torch.nn.functional as F

    import gmlm_engine.pytorch.reference as reference_module
    from gmlm_engine.rules import log_threshold

    m, margins, last = ref.model, [], {}
    own = m.vocab_logits
    own_lowest, own_most = reference_module.lowest_confidence, reference_module.most_confident
    own_noise = reference_module.gumbel_noise
    log_thr = log_threshold(opts["threshold"]) if opts.get("remask") == "threshold" else None

    def top2_gap(x):
        top = x.topk(2, dim=-1).values
        return float((top[:, 0] - top[:, 1]).min())

    def recording(h):
        z = own(h)
        lp = F.log_softmax(z.float(), dim=-1)
        last["logp"] = lp.cpu()
        if not opts.get("sampling"):
            margins.append(top2_gap(lp))
        if log_thr is not None:
            margins.append(float((lp.max(-1).values - log_thr).abs().min()))
        return z

    def noise(*args):   # sampling: the argmax is over logp + g
        g = own_noise(*args)
        margins.append(top2_gap(last["logp"].double() + torch.from_numpy(g).double()))
        return g

    def lowest(c, n):   # the gap at the boundary between the re-masked and the kept positions
        s = torch.sort(c, dim=1).values.double()
        for r, k in enumerate(n.tolist()):
            if 0 < k < s.shape[1] and torch.isfinite(s[r, k]):
                margins.append(float(s[r, k] - s[r, k - 1]))
        return own_lowest(c, n)

    def most(c):        # the gap between the most and the second most confident prediction
        s = torch.sort(c, dim=1, descending=True).values.double()
        if s.shape[1] > 1:
            gaps = s[:, 0] - s[:, 1]
            margins.extend(float(g) for g in gaps[torch.isfinite(gaps)])
        return own_most(c)

    m.vocab_logits = recording
    reference_module.lowest_confidence, reference_module.most_confident = lowest, most
    reference_module.gumbel_noise = noise
    try:
        ref.translate_batch([src], **{k: v for k, v in opts.items() if k != "return_history"})
    finally:
        del m.vocab_logits
        reference_module.lowest_confidence, reference_module.most_confident = own_lowest, own_most
        reference_module.gumbel_noise = own_noise
    return min(margins)


def parity_mismatches(ref, src: list[str], a, b, opts: dict, tol=1e-4, tie=1e-5, max_ties=2) -> list[int]:
    """`mismatches`, less the sentences whose reference decoding has a near-tie decision
    (`decision_margin` < `tie`), of which at most `max_ties` distinct sources are excused (test_sentences repeats
    its sentences without Multi30k: one near-tie source may sit in several rows): the engines must agree
    token for token wherever fp32 decides clearly."""
    bad = mismatches(a, b, tol=tol)
    margin: dict = {}
    ties = [i for i in bad if margin.setdefault(src[i], decision_margin(ref, src[i], opts)) < tie]
    return [i for i in bad if i not in ties] if len({src[i] for i in ties}) <= max_ties else bad


# --- the premises of the helpers --------------------------------------------------------------
def test_random_models_are_not_degenerate(tmp_path):
    """The random test models must predict varied tokens, not copies of their input."""
    d = make_random_model(tmp_path / "m", seed=1)
    res = ReferenceTranslator(d).translate_batch(SENTENCES[:6], stutter_remask=False)
    toks = [t for r in res for t in r.tokens]
    assert len(set(toks)) >= 10, toks
    assert len({tuple(r.tokens) for r in res}) == len(res)
