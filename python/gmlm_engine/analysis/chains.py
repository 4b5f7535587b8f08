"""Exact transition kernels of GMLM samplers, and the Markov-chain quantities computed from them.

Notation: pi is the target (a ``Joint`` over S = V^N states), P an (S, S) row-stochastic matrix,
P[x, y] = Pr(next = y | current = x). Everything is matrix algebra; nothing is sampled.

Samplers (each one step of a decoder built from pi's exact conditionals):

- block kernel for a set B of positions (resample x_B from its exact joint conditional):
      K_B[x, y] = 1[y_{-B} = x_{-B}] pi(y_B | x_{-B})
- sequential Glauber (one uniformly random position):     P = (1/N) sum_i K_{{i}}
- k-block dynamics (a uniformly random block from a family of blocks of size k, by default all
  k-subsets):                                                P = mean_B K_B
  Each K_B is a pi-self-adjoint projection, so these chains are reversible w.r.t. pi, pi is
  stationary, and their eigenvalues are real and in [0, 1].
- product form (one parallel Transformer step: every position at once, independently, from its
  single-site conditional given the CURRENT sequence):
      P[x, y] = prod_i pi(y_i | x_{-i})
  pi is in general NOT stationary for this chain.
- mask-predict from the all-mask state (``mask_predict``): a T-step, time-inhomogeneous process on
  partially masked sequences; see its docstring.

Quantities: the law after t steps mu_t = mu_0 P^t, total variation TV(p, q) = 1/2 sum |p - q|,
the stationary distribution (pi P = pi), the absolute spectral gap 1 - max_{j >= 2} |lambda_j| and
the mixing time t_mix(eps) = min{t : max_x TV(P^t(x, .), pi) <= eps}.
"""
from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np

from .distributions import Joint, all_sequences, seq_index


# --- kernels ---------------------------------------------------------------------------------
def _place_values(joint: Joint, block) -> tuple[np.ndarray, np.ndarray]:
    """For every state x and every assignment a of the block: the index of x with x_B := a.

    Returns (cols (S, V^k), assignments (V^k, k))."""
    block = list(block)
    v, n = joint.v, joint.n
    x = joint.states()
    weights = v ** np.arange(n - 1, -1, -1, dtype=np.int64)
    base = seq_index(x, v) - x[:, block] @ weights[block]
    assign = all_sequences(len(block), v)
    return base[:, None] + (assign @ weights[block])[None, :], assign


def block_kernel(joint: Joint, block) -> np.ndarray:
    """K_B[x, y] = 1[y_{-B} = x_{-B}] pi(y_B | x_{-B}): resample the positions in ``block`` jointly."""
    block = sorted(set(int(b) for b in block))
    cols, _ = _place_values(joint, block)
    cond = joint.conditional(block).reshape(-1)
    K = np.zeros((joint.size, joint.size))
    K[np.arange(joint.size)[:, None], cols] = cond[cols]
    return K


def all_blocks(n: int, k: int) -> list[tuple[int, ...]]:
    """All k-subsets of the n positions (the blocks of "mask k random tokens")."""
    return list(itertools.combinations(range(n), k))


def contiguous_blocks(n: int, k: int) -> list[tuple[int, ...]]:
    """The n - k + 1 windows of k consecutive positions."""
    return [tuple(range(s, s + k)) for s in range(n - k + 1)]


def block_dynamics(joint: Joint, k: int, blocks=None) -> np.ndarray:
    """k-block dynamics: P = mean over ``blocks`` (default: all k-subsets) of K_B."""
    if not 1 <= k <= joint.n:
        raise ValueError(f"block size k must be in [1, {joint.n}], got {k}")
    blocks = all_blocks(joint.n, k) if blocks is None else blocks
    P = np.zeros((joint.size, joint.size))
    for b in blocks:
        P += block_kernel(joint, b)
    return P / len(blocks)


def glauber(joint: Joint) -> np.ndarray:
    """Sequential (random-scan) Glauber dynamics: one uniformly random position per step."""
    return block_dynamics(joint, 1)


def product_form(joint: Joint) -> np.ndarray:
    """One fully parallel step: P[x, y] = prod_i pi(y_i | x_{-i})."""
    x = joint.states()
    P = np.ones((joint.size, joint.size))
    for i in range(joint.n):
        cols, _ = _place_values(joint, [i])                 # (S, V): x with x_i := v
        C = joint.conditional([i]).reshape(-1)[cols]        # C[x, v] = pi(v | x_{-i})
        P *= C[:, x[:, i]]                                  # column y picks C[x, y_i]
    return P


# --- mask-predict from the all-mask state -----------------------------------------------------
def unmask_schedule(n: int, T: int) -> list[int]:
    """Tokens newly unmasked at each of the T steps under the linear schedule.

    After step t (0-based) m_t = floor(n (T - 1 - t) / T) positions stay masked (the re-mask count
    of docs/decoding.md), so step t unmasks k_t = m_{t-1} - m_t tokens (m_{-1} = n); sum k_t = n.
    """
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    left = [n] + [n * (T - 1 - t) // T for t in range(T)]
    return [left[t] - left[t + 1] for t in range(T)]


def _step_outcomes(marg: np.ndarray, k: int, select: str):
    """Outcomes of one step from a state with m masked positions: yields (kept masked-slot indices,
    their values, probability). ``marg`` (m, V): pi(x_i | x_U) for the masked slots."""
    m, v = marg.shape
    if k == 0:
        yield (), (), 1.0
        return
    if select == "random":
        # every masked slot is predicted independently; a uniform k-subset of them is kept
        w = 1.0 / math.comb(m, k)
        vals = all_sequences(k, v)                          # (V^k, k)
        for slots in itertools.combinations(range(m), k):
            probs = w * marg[list(slots), vals].prod(axis=1)
            for row in range(len(vals)):
                yield slots, tuple(vals[row]), float(probs[row])
        return
    # confidence: keep the k predictions with the highest pi(prediction | x_U); the re-mask order
    # is (confidence ascending, position ascending), as in the decoder
    preds = all_sequences(m, v)                             # all joint predictions (V^m, m)
    conf = marg[np.arange(m)[None, :], preds]               # (V^m, m)
    prob = conf.prod(axis=1)
    for row in range(len(preds)):
        if prob[row] == 0:
            continue
        order = np.lexsort((np.arange(m), conf[row]))
        slots = tuple(sorted(order[m - k:].tolist()))
        yield slots, tuple(preds[row, list(slots)].tolist()), float(prob[row])


def mask_predict(joint: Joint, T: int, select: str = "random") -> np.ndarray:
    """Law of the output of T-step mask-predict decoding with exact conditionals (vector over S).

    Start: every position masked. Step t: every masked position i is predicted independently from
    its exact conditional given the unmasked tokens, pi(x_i | x_U) (the product form, restricted to
    the masked positions); k_t of these predictions are kept (``unmask_schedule``), the others are
    masked again. ``select``: which predictions are kept, "random" (a uniform k_t-subset) or
    "confidence" (the most probable ones, as Mask-Predict does). Unmasked tokens are never
    re-masked (the absorbing-state variant; the decoder's linear re-masking may also revisit them).

    With T = N and "random" this is ancestral sampling in a random order, so the output law is
    exactly pi; T = 1 is one fully parallel step, the product of the marginals.
    """
    if select not in ("random", "confidence"):
        raise ValueError(f"select must be 'random' or 'confidence', got {select!r}")
    n = joint.n
    dist: dict[tuple[int, ...], float] = {(-1,) * n: 1.0}
    for k in unmask_schedule(n, T):
        nxt: dict[tuple[int, ...], float] = defaultdict(float)
        for z, pz in dist.items():
            masked = [i for i in range(n) if z[i] < 0]
            marg = joint.masked_marginals(z)
            for slots, vals, pr in _step_outcomes(marg, k, select):
                y = list(z)
                for s, val in zip(slots, vals):
                    y[masked[s]] = val
                nxt[tuple(y)] += pz * pr
        dist = nxt
    out = np.zeros(joint.size)
    for z, pz in dist.items():
        out[seq_index(z, joint.v)] += pz
    return out


# --- Markov-chain quantities -----------------------------------------------------------------
def tv(p, q) -> float:
    """Total variation distance 1/2 sum_x |p(x) - q(x)|."""
    return 0.5 * float(np.abs(np.asarray(p, dtype=np.float64) - np.asarray(q, dtype=np.float64)).sum())


def distribution_after(P: np.ndarray, mu0, t: int) -> np.ndarray:
    """mu_t = mu_0 P^t."""
    mu = np.asarray(mu0, dtype=np.float64)
    for _ in range(t):
        mu = mu @ P
    return mu


def tv_curve(P: np.ndarray, mu0, target, steps: int) -> np.ndarray:
    """TV(mu_0 P^t, target) for t = 0..steps."""
    mu = np.asarray(mu0, dtype=np.float64)
    out = [tv(mu, target)]
    for _ in range(steps):
        mu = mu @ P
        out.append(tv(mu, target))
    return np.array(out)


def is_row_stochastic(P: np.ndarray, atol: float = 1e-12) -> bool:
    """Non-negative entries and rows summing to 1."""
    return bool((P >= -atol).all() and np.allclose(P.sum(axis=1), 1.0, atol=atol, rtol=0))


def stationary(P: np.ndarray) -> np.ndarray:
    """The stationary distribution: the solution of pi (P - I) = 0, sum pi = 1 (least squares).

    Unique when the chain is irreducible (every chain here with a strictly positive target)."""
    S = P.shape[0]
    A = np.vstack([P.T - np.eye(S), np.ones((1, S))])
    b = np.zeros(S + 1)
    b[-1] = 1.0
    pi = np.linalg.lstsq(A, b, rcond=None)[0]
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


def is_reversible(P: np.ndarray, pi) -> bool:
    """Detailed balance pi(x) P[x, y] = pi(y) P[y, x]."""
    F = np.asarray(pi)[:, None] * P
    return bool(np.allclose(F, F.T, atol=1e-13))


def eigenvalues(P: np.ndarray, pi=None) -> np.ndarray:
    """Eigenvalues sorted by decreasing modulus. If ``pi`` > 0 is given and P is reversible w.r.t.
    it, the symmetric matrix D^{1/2} P D^{-1/2} (D = diag pi) is diagonalised instead (real, stable)."""
    if pi is not None and (np.asarray(pi) > 0).all() and is_reversible(P, pi):
        d = np.sqrt(np.asarray(pi, dtype=np.float64))
        lam = np.linalg.eigvalsh(d[:, None] * P / d[None, :])
    else:
        lam = np.linalg.eigvals(P)
    return lam[np.argsort(-np.abs(lam), kind="stable")]


def spectral_gap(P: np.ndarray, pi=None) -> float:
    """Absolute spectral gap 1 - max_{j >= 2} |lambda_j| (the relaxation time is its inverse)."""
    lam = eigenvalues(P, pi)
    return float(1.0 - np.abs(lam[1])) if len(lam) > 1 else 1.0


def worst_tv(Pt: np.ndarray, pi) -> float:
    """d(t) = max_x TV(P^t(x, .), pi) for the matrix Pt = P^t."""
    return 0.5 * float(np.abs(Pt - np.asarray(pi)[None, :]).sum(axis=1).max())


def mixing_time(P: np.ndarray, pi, eps: float = 0.25, t_max: int = 1 << 20) -> float:
    """t_mix(eps) = min{t >= 0 : max_x TV(P^t(x, .), pi) <= eps}; inf if not reached by t_max
    (e.g. when pi is not P's stationary distribution and the chain stalls at TV > eps)."""
    eye = np.eye(P.shape[0])
    if worst_tv(eye, pi) <= eps:
        return 0
    # doubling: powers[j] = P^(2^j), until d(2^J) <= eps
    powers = [P]
    while worst_tv(powers[-1], pi) > eps:
        if (1 << (len(powers) - 1)) >= t_max:
            return math.inf
        powers.append(powers[-1] @ powers[-1])
    # d(t) is non-increasing: binary search for the last t < 2^J with d(t) > eps, starting from
    # lo = 2^(J-1) (or 0) and adding 2^j, j = J-2..0, whenever d stays above eps
    J = len(powers) - 1
    lo, P_lo = (0, eye) if J == 0 else (1 << (J - 1), powers[J - 1])
    for j in range(J - 2, -1, -1):
        cand = P_lo @ powers[j]
        if worst_tv(cand, pi) > eps:
            lo, P_lo = lo + (1 << j), cand
    return lo + 1
