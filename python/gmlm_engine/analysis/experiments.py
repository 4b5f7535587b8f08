"""Parts 1 and 2 of ``gmlm analyze``: exact sampler experiments and masking-ratio efficiency.

Each function returns plain dicts/lists (JSON-serialisable) that ``report.py`` turns into tables and
plots. ``Sizes`` holds every size knob; ``Sizes.quick()`` runs in seconds (tests), ``Sizes()`` in
about a minute or two on 2 cores.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import chains as ch
from .distributions import (all_equal, chain_edges, grid_edges, ising, ising_chain, random_mrf,
                            toy_translation_table)
from .estimation import IsingFamily, asymptotic_mse, fit_masked_pl, sample_empirical


@dataclass(frozen=True)
class Sizes:
    # part 1
    two_spin_J: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 3.0)
    all_equal_n: int = 8
    chain_n: int = 8
    chain_h: float = 0.1
    chain_J: tuple[float, ...] = (0.25, 0.5, 1.0, 1.5)
    tv_steps: int = 64
    tv_eps: float = 0.05
    floor_J: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
    grid_shape: tuple[int, int] = (3, 3)
    mrf_seeds: int = 20
    # part 2
    est_grid: tuple[int, int] = (3, 3)
    est_J: float = 0.8
    est_k: tuple[int, ...] = (1, 2, 3, 5, 9)
    est_n: tuple[int, ...] = (200, 500, 1000, 3000, 10000, 30000, 100000)
    est_seeds: int = 100
    est_l2: float = 0.01                # ridge l2 = est_l2 / n
    est_J_sweep: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)

    @classmethod
    def quick(cls) -> "Sizes":
        return cls(two_spin_J=(0.5, 2.0), all_equal_n=4, chain_n=4, chain_J=(0.5, 1.5), tv_steps=16,
                   floor_J=(0.0, 1.0, 2.0), grid_shape=(2, 2), mrf_seeds=3, est_grid=(2, 2),
                   est_k=(1, 2, 4), est_n=(300, 3000, 30000), est_seeds=6, est_J_sweep=(0.4, 1.0))


# --- part 1: exact samplers --------------------------------------------------------------------
def two_spin(Js) -> list[dict]:
    """pi(x) ~ exp(J x1 x2): P(x1 = x2) under the target, Glauber's and the product form's
    stationary laws, and TV after ONE 2-block step from the uniform law."""
    rows = []
    for J in Js:
        d = ising_chain(2, J)
        equal = d.states()[:, 0] == d.states()[:, 1]
        uniform = np.full(d.size, 1.0 / d.size)
        rows.append({
            "J": J,
            "target": float(d.flat()[equal].sum()),
            "formula": math.exp(J) / (2 * math.cosh(J)),
            "glauber": float(ch.stationary(ch.glauber(d))[equal].sum()),
            "product": float(ch.stationary(ch.product_form(d))[equal].sum()),
            "block2_tv_one_step": ch.tv(uniform @ ch.block_dynamics(d, 2), d.flat()),
        })
    return rows


def all_equal_coherence(n: int) -> list[dict]:
    """P(output coherent) of T-step mask-predict on "all tokens equal" (V = 2), T = 1..n,
    with the closed form 2^(1 - ceil(n / T)) (the first step keeps ceil(n/T) independent tokens)."""
    d = all_equal(n, 2)
    coherent = [0, d.size - 1]
    return [{"T": T,
             "random": float(ch.mask_predict(d, T, "random")[coherent].sum()),
             "confidence": float(ch.mask_predict(d, T, "confidence")[coherent].sum()),
             "formula": 2.0 ** (1 - math.ceil(n / T))} for T in range(1, n + 1)]


def _samplers(d, n: int) -> dict[str, np.ndarray]:
    out = {"glauber": ch.glauber(d)}
    for k in sorted({2, n // 2}):
        if 2 <= k < n:
            out[f"block-{k}"] = ch.block_dynamics(d, k)
    out["product"] = ch.product_form(d)
    return out


def ising_chain_study(sz: Sizes) -> list[dict]:
    """Per coupling J on an Ising chain: TV-vs-steps curves from the uniform law, mask-predict TV
    vs T, the product form's stationary TV to the target, mixing times, spectral gap vs block size."""
    n, out = sz.chain_n, []
    for J in sz.chain_J:
        d = ising_chain(n, J, sz.chain_h)
        pi, uniform = d.flat(), np.full(d.size, 1.0 / d.size)
        samplers = _samplers(d, n)
        curves = {name: ch.tv_curve(P, uniform, pi, sz.tv_steps).tolist() for name, P in samplers.items()}
        mp = {sel: [ch.tv(ch.mask_predict(d, T, sel), pi) for T in range(1, n + 1)]
              for sel in ("random", "confidence")}
        gaps = {"all k-subsets": [], "contiguous": []}
        tmix = []
        for k in range(1, n + 1):
            P = ch.block_dynamics(d, k)
            gaps["all k-subsets"].append(ch.spectral_gap(P, pi))
            gaps["contiguous"].append(ch.spectral_gap(ch.block_dynamics(d, k, ch.contiguous_blocks(n, k)), pi))
            t = ch.mixing_time(P, pi, 0.25)
            tmix.append(None if math.isinf(t) else int(t))
        prod_stat = ch.stationary(samplers["product"])
        steps_to_eps = {name: next((t for t, x in enumerate(c) if x <= sz.tv_eps), None) for name, c in curves.items()}
        out.append({
            "J": J, "h": sz.chain_h, "n": n, "curves": curves, "mask_predict": mp,
            "mask_predict_T_to_eps": next((T for T, x in enumerate(mp["random"], 1) if x <= sz.tv_eps), None),
            "steps_to_eps": steps_to_eps, "spectral_gap": gaps, "t_mix": tmix,
            "product_stationary_tv": ch.tv(prod_stat, pi),
            "product_one_step_tv_from_uniform": curves["product"][1],
            "glauber_t_mix": tmix[0],
        })
    return out


def product_floor(sz: Sizes) -> dict:
    """TV between the product-form chain's stationary law and the target, vs coupling J, on the
    Ising chain and grid (the error that no number of parallel steps removes)."""
    rows, cols = sz.grid_shape
    out = {"J": list(sz.floor_J), "chain": [], "grid": [], "glauber_chain": []}
    for J in sz.floor_J:
        dc = ising_chain(sz.chain_n, J, sz.chain_h)
        dg = ising(rows * cols, grid_edges(rows, cols), J, sz.chain_h)
        out["chain"].append(ch.tv(ch.stationary(ch.product_form(dc)), dc.flat()))
        out["grid"].append(ch.tv(ch.stationary(ch.product_form(dg)), dg.flat()))
        out["glauber_chain"].append(ch.tv(ch.stationary(ch.glauber(dc)), dc.flat()))
    return out


def mrf_checks(seeds: int) -> dict:
    """On random MRFs: row-stochasticity of every kernel, and max |pi P - pi| (pi should be
    stationary for Glauber and block dynamics, and is not for the product form)."""
    configs = [(4, 3, 2), (5, 2, 3)]                 # (n, V, order)
    res = {"configs": configs, "seeds": seeds, "max_row_error": 0.0,
           "max_stationarity_residual": {"glauber": 0.0, "block-2": 0.0, "block-3": 0.0},
           "product_tv_pi_vs_piP": []}
    for n, v, order in configs:
        for seed in range(seeds):
            d = random_mrf(n, v, order, 1.0, seed)
            pi = d.flat()
            kernels = {"glauber": ch.glauber(d), "block-2": ch.block_dynamics(d, 2),
                       "block-3": ch.block_dynamics(d, 3), "product": ch.product_form(d)}
            for name, P in kernels.items():
                res["max_row_error"] = max(res["max_row_error"], float(np.abs(P.sum(1) - 1).max()))
                if name == "product":
                    res["product_tv_pi_vs_piP"].append(ch.tv(pi @ P, pi))
                else:
                    r = float(np.abs(pi @ P - pi).max())
                    res["max_stationarity_residual"][name] = max(res["max_stationarity_residual"][name], r)
    return res


def translation_table_study() -> list[dict]:
    """P(output is a valid translation) of T-step mask-predict on the toy table, and the most
    probable invalid outputs of one parallel step."""
    out = []
    for e in toy_translation_table():
        d = e.joint
        valid = e.is_valid(d.states())
        row = {"source": e.source, "targets": [" ".join(t) for t in e.targets], "weights": list(e.weights),
               "n": d.n, "V": d.v}
        for sel in ("random", "confidence"):
            row[sel] = [float(ch.mask_predict(d, T, sel)[valid].sum()) for T in range(1, d.n + 1)]
        one = ch.mask_predict(d, 1, "random")
        bad = [i for i in np.argsort(-one, kind="stable") if not valid[i] and one[i] > 0][:3]
        row["one_step_invalid"] = [(e.words(d.states()[i]), float(one[i])) for i in bad]
        stutter = (d.states()[:, 1:] == d.states()[:, :-1]).any(axis=1)
        top = int(np.argmax(np.where(stutter, one, -1.0)))
        row["stutter_prob"] = {"target": float(d.flat()[stutter].sum()), "one_step": float(one[stutter].sum()),
                               "example": e.words(d.states()[top]) if stutter[top] and one[top] > 0 else None}
        out.append(row)
    return out


# --- part 2: masking ratio vs sample efficiency -------------------------------------------------
def truth_theta(family: IsingFamily, J: float, seed: int = 0) -> np.ndarray:
    """Couplings J * U(0.5, 1.5) per edge, fields U(-0.2, 0.2) per site (fixed seed)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([J * rng.uniform(0.5, 1.5, len(family.edges)), rng.uniform(-0.2, 0.2, family.n)])


def masking_efficiency(sz: Sizes, progress=None) -> dict:
    """Parameter error of the k-masked pseudo-likelihood estimator vs n for each k.

    For every n and seed the SAME samples are given to every k (paired comparison). The estimate
    maximises the k-masked pseudo-likelihood (a mean over samples) minus (l2/2)|theta|^2 with
    l2 = est_l2 / n, i.e. a N(0, 1/est_l2) prior on the summed objective; it only keeps the estimate
    finite on degenerate small samples and vanishes relative to the data term as n grows."""
    rows, cols = sz.est_grid
    family = IsingFamily(rows * cols, tuple(grid_edges(rows, cols)))
    theta = truth_theta(family, sz.est_J)
    target = family.joint(theta)
    ks = [k for k in sz.est_k if k <= family.n]
    err = np.zeros((len(ks), len(sz.est_n), sz.est_seeds))
    for j, n in enumerate(sz.est_n):
        q = np.stack([sample_empirical(target, n, np.random.default_rng([seed, n])) for seed in range(sz.est_seeds)])
        for i, k in enumerate(ks):
            est = fit_masked_pl(family, q, k, l2=sz.est_l2 / n)
            err[i, j] = np.sqrt(((est - theta) ** 2).sum(1))
            if progress:
                progress(f"masking efficiency: n={n} k={k}")
    asym = [asymptotic_mse(family, theta, k) for k in ks]
    slopes = [float(np.polyfit(np.log(sz.est_n), np.log(err[i].mean(1)), 1)[0]) for i in range(len(ks))]
    sweep = []
    for J in sz.est_J_sweep:
        th = truth_theta(family, J)
        a = [asymptotic_mse(family, th, k) for k in range(1, family.n + 1)]
        sweep.append({"J": J, "asymptotic_mse": a, "ratio_to_mle": [x / a[-1] for x in a]})
    return {
        "graph": f"{rows}x{cols} grid", "n_spins": family.n, "dim": family.dim, "J": sz.est_J, "l2": sz.est_l2,
        "theta": theta.tolist(), "k": ks, "n": list(sz.est_n), "seeds": sz.est_seeds,
        "mean_error": err.mean(2).tolist(), "sem_error": (err.std(2, ddof=1) / np.sqrt(sz.est_seeds)).tolist(),
        "n_mse": (np.array(sz.est_n)[None, :] * (err ** 2).mean(2)).tolist(),
        "asymptotic_n_mse": asym, "loglog_slope": slopes, "J_sweep": sweep,
        # paired comparison per n: fraction of seeds where k's error is below k=1's
        "wins_vs_k1": [(err[i] < err[0]).mean(1).tolist() for i in range(len(ks))],
    }


def exact_study(sz: Sizes, progress=None) -> dict:
    """All of part 1."""
    out = {"tv_eps": sz.tv_eps}
    steps = [("two_spin", lambda: two_spin(sz.two_spin_J)),
             ("all_equal", lambda: all_equal_coherence(sz.all_equal_n)),
             ("translation_table", translation_table_study),
             ("mrf", lambda: mrf_checks(sz.mrf_seeds)),
             ("floor", lambda: product_floor(sz)),
             ("chains", lambda: ising_chain_study(sz))]
    for name, fn in steps:
        out[name] = fn()
        if progress:
            progress(f"exact samplers: {name}")
    return out
