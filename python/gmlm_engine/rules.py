"""The decoding rules in Python, the spec that cpp/decoding/rules.h implements for the CPU engine and the CUDA
kernels (tests/test_engine_ops.py holds the two to each other on random inputs): the counter-based RNG of
docs/decoding.md, the candidate score's mean, the threshold test and the repeat tests. numpy only: the runtime imports it.
"""
from __future__ import annotations

import math

import numpy as np

# --- the counter-based RNG (docs/decoding.md) ------------------------------------------------
_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _mix(z):
    z = np.asarray(z, dtype=np.uint64)
    z = z ^ (z >> np.uint64(30))
    z = z * _M1
    z = z ^ (z >> np.uint64(27))
    z = z * _M2
    return z ^ (z >> np.uint64(31))


def source_hash(ids: list[int]) -> int:
    """FNV-1a 64 over the little-endian int32 bytes of the encoder input ids."""
    h = 0xCBF29CE484222325
    for b in np.asarray(ids, dtype="<i4").tobytes():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def hash_bits(seed: int, stream: int, src_hash, k, t: int, i, v) -> np.ndarray:
    """64-bit hash of (seed, stream, source, candidate, iteration, position, vocab id); arguments
    broadcast (numpy arrays of any integer type)."""
    with np.errstate(over="ignore"):
        h = _mix(np.asarray(np.uint64(seed) + _GOLDEN, dtype=np.uint64))
        for x in (stream, src_hash, k, t, i, v):
            h = _mix(h ^ np.asarray(x).astype(np.uint64))
    return h


def hash_uniform(h: np.ndarray) -> np.ndarray:
    """Top 24 bits -> uniform float in (0, 1), exact in float32 and float64."""
    return ((h >> np.uint64(40)).astype(np.float64) + 0.5) / float(1 << 24)


def gumbel_noise(seed, src_hash, k, t, i, vocab_size) -> np.ndarray:
    """(M, V) float32 Gumbel noise for M selected positions (src_hash, k, i arrays of length M)."""
    v = np.arange(vocab_size, dtype=np.uint64)[None, :]
    col = lambda a: np.asarray(a, dtype=np.uint64)[:, None]  # noqa: E731
    u = hash_uniform(hash_bits(seed, 0, col(src_hash), col(k), t, col(i), v))
    return (-np.log(-np.log(u))).astype(np.float32)


def random_init_tokens(seed, src_hash, k, i, vocab_size, first_id) -> np.ndarray:
    """Random initial tokens in [first_id, vocab_size) (stream 1, t = 0, v = 0)."""
    h = hash_bits(seed, 1, np.asarray(src_hash, np.uint64), np.asarray(k, np.uint64), 0,
                  np.asarray(i, np.uint64), 0)
    return (first_id + (h >> np.uint64(40)) % np.uint64(vocab_size - first_id)).astype(np.int64)


# --- scores and the threshold -----------------------------------------------------------------
def mean_score(conf) -> float:
    conf = np.asarray(conf, dtype=np.float64)
    return float(conf.sum() / len(conf)) if len(conf) else 0.0


def log_threshold(threshold: float) -> float:
    """Positions with conf < log(threshold) (float64) stay masked."""
    return math.log(threshold)


# --- repeats (repeat_remask, repeat_penalty) ----------------------------------------------------
def repeat_mask(tokens: list[int], conf: list[float], word_piece) -> list[int]:
    """Repeat re-masking of one candidate (docs/decoding.md, step 3): the positions to mask."""
    out, first, ends = set(), {}, {}
    for j, v in enumerate(tokens):
        hits = []
        if word_piece[v]:
            if v in first:
                hits.append(first[v])
            else:
                first[v] = j
        if j >= 1:
            b = (tokens[j - 1], v)
            if b in ends:
                hits.append(ends[b])
            else:
                ends[b] = j
        for i in hits:
            out.add(j if conf[j] <= conf[i] else i)
    return sorted(out)


def repeats(tokens: list[int], word_piece) -> bool:
    """Whether an output repeats itself as repeat_mask sees it (a word piece or a bigram occurring twice):
    the test of repeat_penalty (docs/decoding.md, step 4)."""
    return bool(repeat_mask(tokens, [0.0] * len(tokens), word_piece))


def ctc_repeat_blanks(canvas: list[int], conf, blank_lp, blank: int, penalty: float, word_piece) -> list[int]:
    """A ctc model's repeat_remask (docs/decoding.md, "CTC models"): the canvas positions that take the blank.
    The output's tokens (`ctc_collapse`), each with the highest confidence of the positions it came from, are
    scanned as `repeat_mask` scans a gmlm candidate; each position of a token it flags whose blank, the penalty
    given back, is at least as likely as the token (float32: blank_lp + penalty >= conf) does. blank_lp: the
    blank's log-probability at each position this pass predicted (NaN elsewhere: those never change)."""
    runs: list[tuple[int, list[int]]] = []
    for j, t in enumerate(canvas):
        if t == blank:
            continue
        if j > 0 and t == canvas[j - 1]:
            runs[-1][1].append(j)
        else:
            runs.append((t, [j]))
    conf = np.asarray(conf, dtype=np.float32)
    lp = np.asarray(blank_lp, dtype=np.float32) + np.float32(penalty)
    best = [max(conf[j] for j in rows) for _, rows in runs]
    flagged = repeat_mask([t for t, _ in runs], best, word_piece)
    return [j for k in flagged for j in runs[k][1] if lp[j] >= conf[j]]


def ctc_collapse(canvas: list[int], blank: int) -> list[int]:
    """A ctc canvas's output (docs/decoding.md, "CTC models"): runs of equal tokens merged into one, then the
    blanks dropped (so a blank between two equal tokens keeps both)."""
    return [t for j, t in enumerate(canvas) if t != blank and (j == 0 or t != canvas[j - 1])]
