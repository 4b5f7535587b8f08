"""The reference decoder's rules on hand-built cases: a stub model with known logits."""
import math

import numpy as np
import pytest
import torch

from gmlm_engine.config import ModelConfig
from gmlm_engine.pytorch.reference import ReferenceTranslator
from gmlm_engine.tokenizer import Tokenizer
from conftest import TINY_GMLM

V = 40
MASK = 3


class Stub(torch.nn.Module):
    """A gmlm 'model' whose predictions are given by a table.

    plan(L, t, i, inp) -> (token, prob) for position i of a length-L candidate at pass t (inp: the
    decoder input row). Length log-probs come from `length_logits` (max_target_len values).
    Records the number of positions predicted at each pass in `predicted`.
    """

    def __init__(self, plan, length_logits):
        super().__init__()
        self.cfg = ModelConfig(objective="gmlm", vocab_size=V, d_model=4, max_target_len=len(length_logits),
                               mask_id=MASK, len_id=4)
        self.is_gmlm = True
        self.plan, self.ll = plan, torch.tensor(length_logits, dtype=torch.float32)
        self.t, self.predicted = -1, []

    def encode(self, src, src_mask):
        return torch.zeros(src.shape[0], src.shape[1], 4)

    def cross_kv(self, enc):
        return []

    def length_logits(self, enc):
        return self.ll.expand(enc.shape[0], -1)

    def decode(self, tgt_in, tgt_mask, enc, src_mask, cross_kv=None, enc_index=None):
        self.t += 1
        self.inp = tgt_in
        L = tgt_mask.sum(1, keepdim=True).float().expand(-1, tgt_in.shape[1])
        i = torch.arange(tgt_in.shape[1]).float().expand_as(L)
        row = torch.arange(tgt_in.shape[0]).float()[:, None].expand_as(L)
        return torch.stack([L, i, row, torch.full_like(L, self.t)], -1)

    def vocab_logits(self, h):
        self.predicted.append(h.shape[0])
        out = torch.full((h.shape[0], V), -1e4)
        for r, (L, i, row, t) in enumerate(h.long().tolist()):
            tok, p = self.plan(L, t, i, self.inp[row].tolist())
            out[r, :] = 0.0
            out[r, tok] = math.log(p * (V - 1) / (1 - p))   # softmax gives exactly p to tok
        return out


def translator(plan, length_logits):
    """These tests specify the algorithm at the length head's own lengths: length_offset 0 unless a
    test sets it (the Translator's default offset is a property of the shipped model)."""
    stub = Stub(plan, length_logits)
    tr = ReferenceTranslator.from_model(stub, Tokenizer(TINY_GMLM / "spm.model"))
    decode = tr.translate_batch
    tr.translate_batch = lambda source, **kw: decode(source, **{"length_offset": 0, **kw})
    return tr, stub


def ids(res, tr):
    return tr.tokenizer.sp.PieceToId(res.tokens) if isinstance(res.tokens, str) else [tr.tokenizer.sp.PieceToId(t) for t in res.tokens]


def one_len(L, n=12):
    return [10.0 if k == L - 1 else 0.0 for k in range(n)]


def test_linear_schedule_counts():
    # tokens change every pass (no early stop): predicted counts are L, then floor(L*(T-1-t)/T)
    tr, stub = translator(lambda L, t, i, inp: (10 + (t + i) % 20, 0.5 + 0.01 * i), one_len(10))
    r = tr.translate_batch(["x"], iterations=4, length_beam=1, stutter_remask=False)[0]
    assert stub.predicted == [10, 7, 5, 2]
    assert r.iterations == 4


def test_lowest_confidence_remasked_and_ties_by_position():
    # all confidences equal at t=0 -> the n lowest-index positions are re-masked (ties: lower index first)
    seen = []

    def plan(L, t, i, inp):
        if t == 1:
            seen.append(inp)
        return (10 + i + t, 0.5)

    tr, _ = translator(plan, one_len(6))
    tr.translate_batch(["x"], iterations=2, length_beam=1, stutter_remask=False)
    n = math.floor(6 * 1 / 2)
    assert [tok == MASK for tok in seen[0][:6]] == [True] * n + [False] * (6 - n)


def test_lowest_confidence_positions_are_remasked():
    probs = [0.9, 0.2, 0.8, 0.1, 0.7]
    seen = []

    def plan(L, t, i, inp):
        if t == 1:
            seen.append(inp)
        return (10 + i + 5 * t, probs[i])

    tr, _ = translator(plan, one_len(5))
    tr.translate_batch(["x"], iterations=2, length_beam=1, stutter_remask=False)   # n = floor(5/2) = 2
    assert [tok == MASK for tok in seen[0][:5]] == [False, True, False, True, False]


def test_threshold_rule_and_at_least_one_unmasked():
    # pass 0: probs 0.95, 0.3, 0.6 with threshold 0.5 -> only position 1 stays masked;
    # pass 1: position 1 predicted with 0.2 -> every masked position is below the threshold, but the
    # most confident one (the only one) is unmasked anyway -> nothing left -> done after 2 passes
    probs = {0: [0.95, 0.3, 0.6], 1: [0.2, 0.2, 0.2]}
    tr, stub = translator(lambda L, t, i, inp: (10 + i + t, probs[min(t, 1)][i]), one_len(3))
    r = tr.translate_batch(["x"], iterations=10, length_beam=1, remask="threshold", threshold=0.5,
                           stutter_remask=False)[0]
    assert stub.predicted == [3, 1]
    assert r.iterations == 2
    assert [tr.tokenizer.sp.PieceToId(p) for p in r.tokens] == [10, 12, 12]


def test_threshold_unmasks_highest_confidence_highest_index_on_ties():
    seen = []

    def plan(L, t, i, inp):
        if t == 1:
            seen.append(inp)
        return (10 + i, [0.1, 0.3, 0.3, 0.2][i]) if t == 0 else (20 + i, 0.9)

    tr, _ = translator(plan, one_len(4))
    tr.translate_batch(["x"], iterations=3, length_beam=1, remask="threshold", threshold=0.5, stutter_remask=False)
    assert [tok == MASK for tok in seen[0][:4]] == [True, True, False, True]


def test_early_stop_when_tokens_do_not_change():
    tr, stub = translator(lambda L, t, i, inp: (10 + i, 0.5), one_len(8))
    r = tr.translate_batch(["x"], iterations=10, length_beam=1, stutter_remask=False, early_stop=True)[0]
    assert r.iterations == 2 and len(stub.predicted) == 2


def test_without_early_stop_every_scheduled_pass_runs():
    # the same predictions every pass: early_stop (off by default) would end after pass 1
    tr, stub = translator(lambda L, t, i, inp: (10 + i, 0.5), one_len(8))
    r = tr.translate_batch(["x"], iterations=10, length_beam=1, stutter_remask=False)[0]
    # the linear schedule re-masks floor(8 * (9 - t) / 10) positions: 7 6 5 4 4 3 2 1 0 -> after pass 9
    # nothing is masked and the candidate is done
    assert r.iterations == 9 and len(stub.predicted) == 9


def test_stutter_remask_and_collapse():
    # pass 0 predicts 11 11 12 (a stutter at position 1); with stutter_remask position 1 is re-masked
    # even when the linear schedule re-masks nothing else (T=2, L=3: n = 1 -> lowest conf is pos 2)
    def plan(L, t, i, inp):
        return ([11, 11, 12][i], [0.9, 0.8, 0.1][i]) if t == 0 else (13, 0.7)

    tr, stub = translator(plan, one_len(3))
    r = tr.translate_batch(["x"], iterations=2, length_beam=1, stutter_remask=True)[0]
    assert stub.predicted == [3, 2]                   # pos 2 (lowest) + pos 1 (stutter)
    assert [tr.tokenizer.sp.PieceToId(p) for p in r.tokens] == [11, 13]   # 11 13 13 collapsed
    assert r.score == pytest.approx((math.log(0.9) + math.log(0.7)) / 2, abs=1e-6)
    tr2, _ = translator(plan, one_len(3))
    r2 = tr2.translate_batch(["x"], iterations=2, length_beam=1, stutter_remask=False)[0]
    assert [tr2.tokenizer.sp.PieceToId(p) for p in r2.tokens] == [11, 11, 13]


def test_length_candidates_ties_shorter_first_and_best_mean_logprob_wins():
    ll = [0.0] * 12
    ll[4] = ll[2] = ll[6] = 5.0                       # lengths 3, 5, 7 tie
    ll[8] = 4.0                                       # length 9 next
    probs = {3: 0.5, 5: 0.9, 7: 0.9, 9: 0.99}
    tr, _ = translator(lambda L, t, i, inp: (10 + i, probs[L]), ll)
    r = tr.translate_batch(["x"], iterations=1, length_beam=3, stutter_remask=False)[0]
    assert r.length_candidates == [3, 5, 7]
    assert len(r.tokens) == 5                         # 5 and 7 tie on score: the lower candidate index wins
    r = tr.translate_batch(["x"], iterations=1, length_beam=4, stutter_remask=False)[0]
    assert len(r.tokens) == 9


def test_length_offset_shifts_every_candidate_and_clamps_to_the_limits():
    ll = [0.0] * 12
    ll[4], ll[2], ll[10] = 5.0, 4.0, 3.0                 # lengths 5, 3, 11 in that order
    tr, stub = translator(lambda L, t, i, inp: (10 + i, 0.5), ll)
    r = tr.translate_batch(["x"], iterations=1, length_beam=3, length_offset=2, stutter_remask=False)[0]
    assert r.length_candidates == [7, 5, 12]             # 11 + 2 clamped to max_target_len = 12
    assert stub.predicted == [7 + 5 + 12]
    r = tr.translate_batch(["x"], iterations=1, length_beam=3, length_offset=-4, stutter_remask=False)[0]
    assert r.length_candidates == [1, 1, 7]              # clamped to 1: both candidates of length 1 run
    for bad in (12, -12, 1.5, True):
        with pytest.raises(ValueError, match="length_offset"):
            tr.translate_batch(["x"], length_offset=bad)


def test_length_beam_keep_prunes_after_the_first_pass():
    """Candidates 3, 5, 7: after pass 0 length 5 scores best; lengths 3 and 7 would improve later.
    Without pruning length 3 wins; with length_beam_keep=1 only length 5 runs passes 1 and 2."""
    ll = [0.0] * 12
    ll[2], ll[4], ll[6] = 5.0, 4.0, 3.0
    first = {3: 0.5, 5: 0.9, 7: 0.4}
    later = {3: 0.999, 5: 0.9, 7: 0.999}
    plan = lambda L, t, i, inp: (10 + i + t, first[L] if t == 0 else later[L])  # noqa: E731  (no early stop)
    tr, stub = translator(plan, ll)
    r = tr.translate_batch(["x"], iterations=3, length_beam=3, stutter_remask=False)[0]
    assert r.length_candidates == [3, 5, 7] and len(r.tokens) == 3
    assert stub.predicted == [15, 2 + 3 + 4, 1 + 1 + 2]          # linear: floor(L*2/3), then floor(L/3)
    tr, stub = translator(plan, ll)
    r = tr.translate_batch(["x"], iterations=3, length_beam=3, length_beam_keep=1, stutter_remask=False)[0]
    assert r.length_candidates == [3, 5, 7] and len(r.tokens) == 5 and r.iterations == 3
    assert stub.predicted == [15, 3, 1]
    tr, stub = translator(plan, ll)
    r = tr.translate_batch(["x"], iterations=3, length_beam=3, length_beam_keep=2, stutter_remask=False)[0]
    assert len(r.tokens) == 3 and stub.predicted == [15, 2 + 3, 1 + 1]   # 7 pruned, 3 wins again


def test_sampling_is_seeded_and_batch_invariant():
    tr = ReferenceTranslator(TINY_GMLM)
    src = ["A man rides a bike.", "Two dogs play in the snow.", "A girl."]
    a = tr.translate_batch(src, sampling=True, seed=5, init="random")
    b = tr.translate_batch(src, sampling=True, seed=5, init="random")
    c = tr.translate_batch(src, sampling=True, seed=6, init="random")
    alone = [tr.translate_batch([s], sampling=True, seed=5, init="random")[0] for s in src]
    assert [x.tokens for x in a] == [x.tokens for x in b] == [x.tokens for x in alone]
    assert [x.tokens for x in a] != [x.tokens for x in c]


def test_history_has_one_entry_per_pass():
    tr = ReferenceTranslator(TINY_GMLM)
    r = tr.translate_batch(["A man rides a bike."], iterations=5, return_history=True, stutter_remask=False)[0]
    assert len(r.history) == r.iterations >= 1
    assert r.history[-1] == r.tokens
