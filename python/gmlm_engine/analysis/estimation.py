"""Masked pseudo-likelihood estimation of an Ising model: does masking more tokens help?

Model: the exponential family on s in {-1, +1}^N

    p_theta(s) = exp(theta . phi(s)) / Z(theta),   phi(s) = (s_i s_j for (i, j) in edges; s_i for i)

The k-masked pseudo-likelihood of a sample s is the GMLM training objective with k masked tokens,
averaged exactly over which k tokens are masked (all C(N, k) blocks B):

    l_k(theta; s) = mean_{|B| = k} log p_theta(s_B | s_{-B}),
    log p_theta(s_B | s_{-B}) = theta . phi(s) - log sum_{y_B} exp(theta . phi(y_B, s_{-B})).

k = 1 is Besag's pseudo-likelihood, k = N the likelihood. The estimator maximises

    L_k(theta) = sum_s q(s) l_k(theta; s) - (l2 / 2) |theta|^2

over the empirical distribution q of the n samples. Each block term is a linear function minus a
log-partition function, so L_k is concave; we maximise it by Newton's method with backtracking.
With the conditional law c_B(y) = p_theta(y_B | y_{-B}) and its feature mean m_B(s_{-B}) = E_{c_B}[phi]:

    grad L = mean_B sum_s q(s) (phi(s) - m_B(s_{-B}))
    hess L = -mean_B sum_s q(s) Cov_{c_B(. | s_{-B})}[phi]

Asymptotics (M-estimation, at the truth theta*): sqrt(n) (theta_hat - theta*) -> N(0, H^-1 Sigma H^-1)
with H = -E_pi[hess l_k] and Sigma = Cov_pi[grad l_k(theta*; s)], so

    n E|theta_hat - theta*|^2  ->  tr(H^-1 Sigma H^-1)   (``asymptotic_mse``);

for k = N, H = Sigma = the Fisher information and this is the Cramer-Rao bound.

Arrays: q and theta carry a leading replicate axis R (one fit per replicate, vectorised).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .chains import all_blocks
from .distributions import Joint, all_sequences, from_log_weights


@dataclass(frozen=True)
class IsingFamily:
    """Ising exponential family on n spins: one coupling per edge, then (if ``fields``) one field per site."""

    n: int
    edges: tuple[tuple[int, int], ...]
    fields: bool = True

    @property
    def dim(self) -> int:
        return len(self.edges) + (self.n if self.fields else 0)

    def features(self) -> np.ndarray:
        """phi as a tensor of shape (2,)*n + (dim,) (token 0 is spin -1, token 1 spin +1)."""
        s = 2.0 * all_sequences(self.n, 2) - 1.0
        cols = [s[:, i] * s[:, j] for i, j in self.edges]
        if self.fields:
            cols += [s[:, i] for i in range(self.n)]
        return np.stack(cols, axis=1).reshape((2,) * self.n + (self.dim,))

    def joint(self, theta) -> Joint:
        return from_log_weights(self.features() @ np.asarray(theta, dtype=np.float64), "ising family")


@lru_cache(maxsize=32)
def _block_layout(family: IsingFamily, k: int):
    """Per k-block B: the permutation that orders states as (context s_{-B}, completion y_B), and
    the features in that order. Returns a list of (perm (S,), phi (C, 2^k, dim)), C = 2^(n-k)."""
    n, d = family.n, family.dim
    phi = family.features().reshape(-1, d)
    idx = np.arange(2 ** n).reshape((2,) * n)
    layout = []
    for b in all_blocks(n, k):
        rest = [i for i in range(n) if i not in b]
        perm = idx.transpose(rest + list(b)).reshape(-1)
        layout.append((perm, phi[perm].reshape(2 ** (n - k), 2 ** k, d)))
    return layout


def _logsumexp(E: np.ndarray) -> np.ndarray:
    """log sum exp over the last axis."""
    m = E.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(E - m).sum(axis=-1, keepdims=True)))[..., 0]


def _as_batch(family: IsingFamily, q, theta):
    q = np.asarray(q, dtype=np.float64)
    single = q.ndim == family.n
    q = q.reshape(-1, 2 ** family.n)
    theta = np.broadcast_to(np.asarray(theta, dtype=np.float64), (q.shape[0], family.dim))
    return q, theta, single


def masked_pl(family: IsingFamily, q, theta, k: int, derivatives: bool = True):
    """L_k(theta) (no penalty) for the empirical distribution(s) q, with its gradient and Hessian.

    q: (2,)*n or (R,) + (2,)*n, each summing to 1; theta: (dim,) or (R, dim).
    Returns value (R,), grad (R, dim), hess (R, dim, dim) (only value if not ``derivatives``)."""
    q, theta, _ = _as_batch(family, q, theta)
    d, R, S = family.dim, q.shape[0], q.shape[1]
    P = family.features().reshape(S, d)
    E = theta @ P.T                                          # (R, S) energies theta . phi
    layout = _block_layout(family, k)
    value = (q * E).sum(1) * len(layout)
    grad = np.zeros((R, d))
    state_w = np.zeros((R, S))                               # sum_B q(context) c_B(y), per state y
    ctx_outer = np.zeros((R, d, d))                          # sum_B sum_contexts q(context) m_B m_B^T
    for perm, phi_b in layout:
        C, J = phi_b.shape[:2]
        Eb = E[:, perm].reshape(R, C, J)                     # energies by (context, completion)
        ctx = q[:, perm].reshape(R, C, J).sum(-1)            # empirical mass of each context s_{-B}
        lse = _logsumexp(Eb)                                 # (R, C) log-partition of c_B
        value -= (ctx * lse).sum(1)
        if not derivatives:
            continue
        cond = np.exp(Eb - lse[..., None])                   # c_B(y_B | context)
        M = (cond[:, :, None, :] @ phi_b[None])[:, :, 0]     # (R, C, d) m_B(context)
        cM = ctx[..., None] * M
        grad -= cM.sum(1)
        ctx_outer += cM.transpose(0, 2, 1) @ M
        state_w[:, perm] += (cond * ctx[..., None]).reshape(R, S)
    nb = len(layout)
    if not derivatives:
        return value / nb
    grad += nb * (q @ P)
    hess = ctx_outer - (P.T[None] * state_w[:, None, :]) @ P   # -(E[phi phi^T] - E[m m^T])
    return value / nb, grad / nb, hess / nb


def fit_masked_pl(family: IsingFamily, q, k: int, l2: float = 0.0, theta0=None, tol: float = 1e-11,
                  max_iter: int = 100) -> np.ndarray:
    """argmax_theta L_k(theta) - (l2/2)|theta|^2 by damped Newton from theta0 (default 0), until
    every coordinate of the Newton step is below ``tol`` (Newton converges quadratically near the
    optimum). l2 > 0 guarantees a finite maximiser when the data are degenerate (e.g. two spins
    never seen disagreeing, where the unpenalised coupling estimate is +infinity).
    Returns (dim,) or (R, dim)."""
    q, theta, single = _as_batch(family, q, 0.0 if theta0 is None else theta0)
    theta = theta.copy()
    R, d = q.shape[0], family.dim
    eye = np.eye(d)

    def objective(th):
        return masked_pl(family, q, th, k, derivatives=False) - 0.5 * l2 * (th ** 2).sum(1)

    for _ in range(max_iter):
        val, g, H = masked_pl(family, q, theta, k)
        val = val - 0.5 * l2 * (theta ** 2).sum(1)
        g = g - l2 * theta
        H = H - l2 * eye
        step = np.linalg.solve(-H + 1e-12 * eye, g[..., None])[..., 0]
        active = np.abs(step).max(1) >= tol
        if not active.any():
            break
        decrement = (g * step).sum(1)                        # Newton decrement^2 >= 0
        # backtracking (Armijo) per replicate; once the predicted gain is below rounding, the full
        # Newton step is taken (quadratic convergence region)
        t = active.astype(np.float64)
        search = active & (decrement > 1e-10)
        for _ in range(60):
            if not search.any():
                break
            new_val = objective(theta + t[:, None] * step)
            bad = search & (new_val < val + 0.25 * t * decrement)
            if not bad.any():
                break
            t[bad] *= 0.5
            search = bad
        theta = theta + t[:, None] * step
    return theta[0] if single else theta


def asymptotic_mse(family: IsingFamily, theta, k: int) -> float:
    """lim n E|theta_hat - theta*|^2 = tr(H^-1 Sigma H^-1) for the k-masked estimator at theta*."""
    theta = np.asarray(theta, dtype=np.float64)
    pi = family.joint(theta).p
    _, _, hess = masked_pl(family, pi, theta, k)
    H = -hess[0]
    P = family.features().reshape(-1, family.dim)
    E = P @ theta
    layout = _block_layout(family, k)
    g = np.zeros_like(P)                                     # per-state gradient of l_k at theta*
    for perm, phi_b in layout:
        C, J = phi_b.shape[:2]
        Eb = E[perm].reshape(C, J)
        cond = np.exp(Eb - _logsumexp(Eb)[:, None])
        M = np.einsum("cj,cjd->cd", cond, phi_b)            # m_B(context)
        g[perm] += P[perm] - np.repeat(M, J, axis=0)
    g /= len(layout)
    Sigma = np.einsum("s,sd,se->de", pi.reshape(-1), g, g)
    Hinv = np.linalg.inv(H)
    return float(np.trace(Hinv @ Sigma @ Hinv))


def sample_empirical(joint: Joint, n: int, rng: np.random.Generator) -> np.ndarray:
    """Empirical distribution (tensor of frequencies) of n i.i.d. samples from ``joint``."""
    draws = rng.choice(joint.size, size=n, p=joint.flat())
    return (np.bincount(draws, minlength=joint.size) / n).reshape(joint.p.shape)
