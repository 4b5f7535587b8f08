"""Error-mode diagnostics on token sequences: the failures that product-form parallel decoding
predicts (repeated tokens, incoherent mixtures, wrong lengths), counted on real outputs.

Every function takes plain token sequences (lists of pieces or ids). Corpus rates are
micro-averaged: total events / total opportunities, so long sentences weigh more.

For a sequence t_1..t_L:
- stutters: S(t) = #{i >= 2 : t_i = t_{i-1}} (adjacent duplicates, "the the"), out of L - 1 pairs;
- repeated n-grams: R_n(t) = G_n(t) - #distinct n-grams, G_n(t) = max(L - n + 1, 0) n-grams in all
  (every occurrence after the first of an n-gram counts once);
- length error: L_hyp - L_ref;
- changes of a decoder pass t (history h_1..h_P, one hypothesis per pass): c_1 = |h_1| (every
  position was <mask> before the first pass), c_t = #{i : h_t[i] != h_{t-1}[i]} + ||h_t| - |h_{t-1}||.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

import numpy as np

Tokens = Sequence
Corpus = Sequence[Sequence]


def stutter_count(tokens: Tokens) -> int:
    """S(t): the number of tokens equal to their left neighbour."""
    return sum(1 for a, b in zip(tokens, tokens[1:]) if a == b)


def stutter_rate(corpus: Corpus) -> float:
    """sum S(t) / sum (|t| - 1)^+ over the corpus (0 when there is no adjacent pair)."""
    pairs = sum(max(len(t) - 1, 0) for t in corpus)
    return sum(stutter_count(t) for t in corpus) / pairs if pairs else 0.0


def ngrams(tokens: Tokens, n: int) -> list[tuple]:
    """The n-grams of a sequence, in order (empty if it is shorter than n)."""
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def repeated_ngram_count(tokens: Tokens, n: int) -> int:
    """R_n(t): n-gram occurrences that repeat an earlier occurrence in the same sequence."""
    grams = ngrams(tokens, n)
    return len(grams) - len(set(grams))


def repeated_ngram_rate(corpus: Corpus, n: int) -> float:
    """sum R_n(t) / sum G_n(t) over the corpus (0 when no sequence has n tokens)."""
    total = sum(max(len(t) - n + 1, 0) for t in corpus)
    return sum(repeated_ngram_count(t, n) for t in corpus) / total if total else 0.0


def length_errors(hyps: Corpus, refs: Corpus) -> list[int]:
    """L_hyp - L_ref per sentence."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    return [len(h) - len(r) for h, r in zip(hyps, refs)]


def length_error_summary(hyps: Corpus, refs: Corpus) -> dict:
    """Mean signed and absolute length error, and the fraction of exact lengths."""
    e = np.array(length_errors(hyps, refs), dtype=np.float64)
    if not len(e):
        return {"mean": 0.0, "mean_abs": 0.0, "exact": 0.0}
    return {"mean": float(e.mean()), "mean_abs": float(np.abs(e).mean()), "exact": float((e == 0).mean())}


def changed_per_pass(history: Corpus) -> list[int]:
    """c_t for each pass of one decoding history (one hypothesis per pass)."""
    out, prev = [], None
    for h in history:
        if prev is None:
            out.append(len(h))
        else:
            out.append(sum(1 for a, b in zip(h, prev) if a != b) + abs(len(h) - len(prev)))
        prev = h
    return out


def still_changing(histories: Corpus, passes: int | None = None) -> dict:
    """Per pass t = 1..passes over a corpus of histories (a sentence whose decoding stopped before
    pass t counts as 0 changes):
    ``mean_changed`` (mean c_t), ``frac_changing`` (fraction with c_t > 0), ``frac_running``
    (fraction whose decoder ran pass t), and ``mean_changed_frac`` (mean c_t / |h_t|)."""
    passes = max((len(h) for h in histories), default=0) if passes is None else passes
    n = len(histories)
    changed = np.zeros((n, passes))
    frac = np.zeros((n, passes))
    running = np.zeros((n, passes), dtype=bool)
    for s, hist in enumerate(histories):
        c = changed_per_pass(hist)[:passes]
        changed[s, :len(c)] = c
        running[s, :len(c)] = True
        frac[s, :len(c)] = [ci / max(len(h), 1) for ci, h in zip(c, hist)]
    denom = max(n, 1)
    return {"mean_changed": (changed.sum(0) / denom).tolist(),
            "frac_changing": ((changed > 0).sum(0) / denom).tolist(),
            "frac_running": (running.sum(0) / denom).tolist(),
            "mean_changed_frac": (frac.sum(0) / denom).tolist()}


def per_pass_rate(histories: Corpus, metric: Callable[[Corpus], float], passes: int | None = None) -> list[float]:
    """metric(corpus of the hypotheses after pass t) for t = 1..passes; a sentence whose decoding
    stopped keeps its last hypothesis (sentences with an empty history are left out)."""
    histories = [h for h in histories if len(h)]
    passes = max((len(h) for h in histories), default=0) if passes is None else passes
    return [metric([h[min(t, len(h) - 1)] for h in histories]) for t in range(passes)]


def summarize(hyps: Corpus, refs: Corpus | None = None) -> dict:
    """The corpus error rates: stutter rate, repeated 1/2/3-gram rates, mean length, and (with
    references) the length errors."""
    out = {"sentences": len(hyps), "mean_length": float(np.mean([len(h) for h in hyps])) if hyps else 0.0,
           "stutter_rate": stutter_rate(hyps),
           "stutter_sentences": float(np.mean([stutter_count(h) > 0 for h in hyps])) if hyps else 0.0}
    for n in (1, 2, 3):
        out[f"repeat{n}_rate"] = repeated_ngram_rate(hyps, n)
    if refs is not None:
        out["length_error"] = length_error_summary(hyps, refs)
    return out
