"""The ``gmlm analyze`` report: plots (PNG), a markdown page, the raw numbers (results.json), and
the verdict on the paper's claims (a)-(c), written from the numbers.

``results`` is the dict assembled by ``cli.run``: keys "meta", "exact" (part 1), "masking"
(part 2), "translations" (part 3, or {"skipped": reason}).
"""
from __future__ import annotations

import json
import math
from pathlib import Path


# --- small formatting helpers ------------------------------------------------------------------
def _f(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    if isinstance(x, int):
        return str(x)
    if x != 0 and (abs(x) < 10 ** -digits or abs(x) >= 10 ** 5):
        return f"{x:.2e}"
    return f"{x:.{digits}f}"


def _table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(c if isinstance(c, str) else _f(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _non_increasing(xs, tol: float = 1e-9) -> bool:
    return all(b <= a + tol * abs(a) + 1e-15 for a, b in zip(xs, xs[1:]))


def _non_decreasing(xs, tol: float = 1e-9) -> bool:
    return _non_increasing([-x for x in xs], tol)


# --- plots ---------------------------------------------------------------------------------------
def _plots(results: dict, out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figs: dict[str, str] = {}

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        figs[name] = name

    ex = results.get("exact")
    if ex:
        chains = ex["chains"]
        fig, axes = plt.subplots(1, len(chains), figsize=(4.2 * len(chains), 3.6), sharey=True, squeeze=False)
        for ax, c in zip(axes[0], chains):
            for name, curve in c["curves"].items():
                ax.plot(range(len(curve)), curve, label=name)
            T = range(1, c["n"] + 1)
            ax.plot(T, c["mask_predict"]["random"], "ko--", ms=3, label="mask-predict, T steps")
            ax.plot(T, c["mask_predict"]["confidence"], "kx:", ms=4, label="mask-predict (confidence)")
            ax.set_xscale("symlog", linthresh=1)
            ax.set_title(f"Ising chain n={c['n']}, J={c['J']:g}, h={c['h']:g}")
            ax.set_xlabel("decoder steps")
            ax.set_ylim(0, 1)
        axes[0][0].set_ylabel("TV(law after t steps, target)")
        axes[0][-1].legend(fontsize=7)
        save(fig, "tv_vs_steps.png")

        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for i, c in enumerate(chains):
            ks = range(1, c["n"] + 1)
            ax.plot(ks, c["spectral_gap"]["all k-subsets"], "o-", color=f"C{i}", label=f"J={c['J']:g} (random k-subset)")
            ax.plot(ks, c["spectral_gap"]["contiguous"], "s--", color=f"C{i}", ms=3, label=f"J={c['J']:g} (contiguous)")
        ax.set_yscale("log")
        ax.set_xlabel("block size k")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("spectral gap of k-block dynamics")
        ax.legend(fontsize=7)
        save(fig, "spectral_gap_vs_block.png")

        fl = ex["floor"]
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        ax.plot(fl["J"], fl["chain"], "o-", label="product form, chain")
        ax.plot(fl["J"], fl["grid"], "s-", label="product form, grid")
        ax.plot(fl["J"], fl["glauber_chain"], "^:", label="Glauber, chain")
        ax.set_xlabel("coupling J")
        ax.set_ylabel("TV(stationary law, target)")
        ax.legend(fontsize=8)
        save(fig, "product_floor_vs_J.png")

        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
        ae = ex["all_equal"]
        T = [r["T"] for r in ae]
        a1.plot(T, [r["random"] for r in ae], "o-", label="random un-masking")
        a1.plot(T, [r["confidence"] for r in ae], "x--", label="confidence un-masking")
        a1.plot(T, [r["formula"] for r in ae], "k.", label="2^(1-ceil(N/T))")
        a1.set_xlabel("steps T")
        a1.xaxis.set_major_locator(MaxNLocator(integer=True))
        a1.set_ylabel("P(all tokens equal)")
        a1.set_title(f"'all equal', N={len(ae)}")
        a1.legend(fontsize=8)
        for i, r in enumerate(ex["translation_table"]):
            T = range(1, r["n"] + 1)
            a2.plot(T, r["random"], "o-", color=f"C{i}", label=f"{r['source']!r} (random)")
            a2.plot(T, r["confidence"], "x--", color=f"C{i}", label=f"{r['source']!r} (confidence)")
        a2.set_xlabel("steps T")
        a2.xaxis.set_major_locator(MaxNLocator(integer=True))
        a2.set_ylabel("P(output is a valid translation)")
        a2.set_title("toy translation table")
        a2.legend(fontsize=7)
        save(fig, "coherence_vs_steps.png")

    m = results.get("masking")
    if m:
        fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(14, 3.8))
        n = m["n"]
        for i, k in enumerate(m["k"]):
            rmse = [math.sqrt(v / nn) for v, nn in zip(m["n_mse"][i], n)]
            a1.loglog(n, rmse, "o-", color=f"C{i}", label=f"k={k}")
            a1.loglog(n, [math.sqrt(m["asymptotic_n_mse"][i] / nn) for nn in n], ":", color=f"C{i}")
            a2.semilogx(n, m["n_mse"][i], "o-", color=f"C{i}", label=f"k={k}")
            a2.axhline(m["asymptotic_n_mse"][i], color=f"C{i}", ls=":")
        a1.set_xlabel("samples n")
        a1.set_ylabel("RMSE of theta (dotted: asymptotic theory)")
        a1.legend(fontsize=8)
        a2.set_xlabel("samples n")
        a2.set_ylabel("n * E|theta_hat - theta|^2")
        a2.set_title(f"{m['graph']} Ising, J={m['J']:g}, {m['seeds']} seeds")
        for r in m["J_sweep"]:
            a3.plot(range(1, len(r["ratio_to_mle"]) + 1), r["ratio_to_mle"], "o-", label=f"J={r['J']:g}")
        a3.set_xlabel("masked tokens k")
        a3.xaxis.set_major_locator(MaxNLocator(integer=True))
        a3.set_ylabel("asymptotic MSE / MLE's (exact)")
        a3.legend(fontsize=8)
        save(fig, "estimator_error_vs_n.png")

    tr = results.get("translations") or {}
    rows = tr.get("rows") or []
    gm = [r for r in rows if r["system"] == "gmlm"]
    if gm:
        fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(14, 3.8))
        for j, (stutter, ls) in enumerate(((False, "-"), (True, "--"))):
            lin = sorted((r for r in gm if r["remask"] == "linear" and r["stutter_remask"] == stutter),
                         key=lambda r: r["iterations"])
            tag = " +stutter-remask" if stutter else ""
            its = [r["iterations"] for r in lin]
            a1.plot(its, [r["stutter_rate"] for r in lin], "o" + ls, color="C0", label="stutter" + tag)
            a1.plot(its, [r["repeat2_rate"] for r in lin], "s" + ls, color="C1", label="repeated bigram" + tag)
        for r in rows:
            if r["system"] == "ar":
                a1.axhline(r["stutter_rate"], color="C0", ls=":", label="AR stutter")
                a1.axhline(r["repeat2_rate"], color="C1", ls=":", label="AR repeated bigram")
        a1.set_xlabel("iterations T (linear re-masking)")
        a1.xaxis.set_major_locator(MaxNLocator(integer=True))
        a1.set_ylabel("rate")
        a1.legend(fontsize=7)
        tmax = max(r["iterations"] for r in gm)
        for r in gm:
            if r["iterations"] == tmax:
                passes = range(1, len(r["history"]["mean_changed"]) + 1)
                a2.plot(passes, r["history"]["mean_changed"], "o-", label=r["label"])
                a3.plot(passes, r["stutter_by_pass"], "o-", label=r["label"])
        a2.set_xlabel("decoder pass")
        a2.xaxis.set_major_locator(MaxNLocator(integer=True))
        a2.set_ylabel("mean tokens changed")
        a2.set_yscale("symlog", linthresh=0.1)
        a2.legend(fontsize=7)
        a3.set_xlabel("decoder pass")
        a3.xaxis.set_major_locator(MaxNLocator(integer=True))
        a3.set_ylabel("stutter rate of the hypothesis")
        a3.legend(fontsize=7)
        save(fig, "error_rates_vs_iterations.png")
    return figs


# --- verdict -------------------------------------------------------------------------------------
def verdicts(results: dict) -> dict[str, str]:
    """One paragraph per claim (a), (b), (c), with the numbers that support or contradict it."""
    out = {}
    m, ex = results.get("masking"), results.get("exact")
    tr = results.get("translations") or {}
    rows = tr.get("rows") or []

    if m:
        ks, asym = m["k"], m["asymptotic_n_mse"]
        mono = _non_increasing(asym)
        gain = asym[0] / asym[-1] - 1
        sweep = m["J_sweep"]
        last = [m["n_mse"][i][-1] for i in range(len(ks))]
        first = [m["n_mse"][i][0] for i in range(len(ks))]
        wins_last = m["wins_vs_k1"][-1][-1]
        slopes = ", ".join(f"{s:.2f}" for s in m["loglog_slope"])
        emp_ok = last[-1] < last[0]
        small_ok = first[-1] < first[0]
        if mono and emp_ok:
            strength = "supported" + (f", but the effect is modest ({100 * gain:.0f}% in sample size)" if gain < 0.25 else "")
        else:
            strength = "partly supported (exact asymptotics only)" if mono else "not supported"
        wins_first = m["wins_vs_k1"][-1][0]
        ordered = [_non_increasing([m["n_mse"][i][j] for i in range(len(ks))]) for j in range(len(m["n"]))]
        from_j = next((j for j in range(len(ordered)) if all(ordered[j:])), None)
        ordered_from = ("" if from_j is None else
                        f" From n={m['n'][from_j]} on, the simulated n*MSE decreases with k at every n.")
        listing = ", ".join(f"{_f(x, 1)} (k={k})" for k, x in zip(ks, first))
        small = (f"as predicted ({listing})" if small_ok else
                 f"reversed ({listing}; k={ks[-1]} still beats k={ks[0]} on {100 * wins_first:.0f}% of seeds, so "
                 "the mean is driven by a few hard samples): the advantage is an asymptotic one")
        out["a"] = (
            f"**(a) Masking more tokens is statistically more efficient: {strength}.** Exact asymptotics on the "
            f"{m['graph']} Ising model (J={m['J']:g}): n*E|theta_hat-theta|^2 -> "
            + ", ".join(f"{_f(a, 1)} (k={k})" for k, a in zip(ks, asym))
            + f", {'monotonically decreasing' if mono else 'NOT monotone'} in k; pseudo-likelihood (k={ks[0]}) needs "
            f"{100 * gain:.1f}% more samples than k={ks[-1]} for the same error. The gain grows with coupling: "
            + ", ".join(f"{100 * (r['ratio_to_mle'][0] - 1):.1f}% at J={r['J']:g}" for r in sweep)
            + f". Simulation ({m['seeds']} seeds, same samples for every k): at n={m['n'][-1]} n*MSE = "
            + ", ".join(f"{_f(x, 1)} (k={k})" for k, x in zip(ks, last))
            + f"; k={ks[-1]} beats k={ks[0]} on {100 * wins_last:.0f}% of seeds.{ordered_from} At the smallest "
            f"n={m['n'][0]} the order is {small}. log-log slopes of the RMSE vs n: {slopes} (consistency: -0.5 expected).")

    if ex:
        ts = ex["two_spin"]
        fl = ex["floor"]
        chains = ex["chains"]
        ae = ex["all_equal"]
        tt = ex["translation_table"]
        jmax = max(range(len(fl["J"])), key=lambda i: fl["chain"][i])
        text = (
            "**(b) Product-form parallel updates cannot represent correlated targets in few steps: supported "
            "(exact computations).** Two spins: the parallel chain's stationary P(x1=x2) is "
            + ", ".join(f"{_f(r['product'])} (J={r['J']:g}, target {_f(r['target'])})" for r in ts)
            + f". On the Ising chain (n={chains[0]['n']}) the parallel chain's stationary law is at TV "
            + ", ".join(f"{_f(x, 2)}" for x in fl["chain"]) + f" from the target for J = "
            + ", ".join(f"{j:g}" for j in fl["J"])
            + f" (maximum {_f(fl['chain'][jmax], 2)} at J={fl['J'][jmax]:g}; grid: up to {_f(max(fl['grid']), 2)}): "
            f"no number of parallel steps removes it (Glauber's: {_f(max(fl['glauber_chain']))}). One parallel step from all-mask "
            f"(mask-predict, T=1) is at TV " + ", ".join(f"{_f(c['mask_predict']['random'][0], 2)} (J={c['J']:g})" for c in chains)
            + f". 'All equal', N={len(ae)}: one parallel step is coherent with probability {_f(ae[0]['random'], 4)} "
            f"(= 2^(1-N)). Toy translation table, one parallel step: P(valid) = "
            + ", ".join(f"{_f(r['random'][0], 3)} ({r['source']!r})" for r in tt)
            + "".join(f"; mixing modes creates repeated tokens for {r['source']!r}: P(adjacent duplicate) = "
                      f"{_f(r['stutter_prob']['one_step'], 3)} after one parallel step vs "
                      f"{_f(r['stutter_prob']['target'], 3)} under the target (e.g. {r['stutter_prob']['example']!r})"
                      for r in tt if r["stutter_prob"]["one_step"] > r["stutter_prob"]["target"]) + ".")
        out["b"] = text

        gaps_mono = all(_non_decreasing(c["spectral_gap"]["all k-subsets"]) for c in chains)
        c_mid = chains[len(chains) // 2]
        mp_T = [c["mask_predict_T_to_eps"] for c in chains]
        mp_last = max(c["mask_predict"]["random"][-1] for c in chains)
        mrf = ex["mrf"]
        text = (
            "**(c) Block/sequential dynamics and re-masking schedules recover coherence at the price of steps: "
            f"supported (exact).** Glauber and block dynamics keep the target stationary (max |pi P - pi| = "
            f"{_f(max(mrf['max_stationarity_residual'].values()))} over {2 * mrf['seeds']} random MRFs, while the "
            f"product form moves pi by TV up to {_f(max(mrf['product_tv_pi_vs_piP']), 3)}). The spectral gap of "
            f"k-block dynamics {'increases' if gaps_mono else 'does NOT always increase'} with k; at J={c_mid['J']:g}: "
            + ", ".join(f"{_f(g, 4)} (k={k})" for k, g in enumerate(c_mid["spectral_gap"]["all k-subsets"], 1))
            + ", i.e. t_mix(1/4) = " + ", ".join(f"{_f(t)}" for t in c_mid["t_mix"]) + " steps for k = 1.."
            + f"{c_mid['n']}. Mask-predict with random un-masking is exact at T=N (TV <= {_f(mp_last)}) and needs "
            + ", ".join(f"T={t if t is not None else '>N'} (J={c['J']:g})" for t, c in zip(mp_T, chains))
            + f" steps to reach TV <= {ex['tv_eps']:g}; from the uniform law, Glauber needs "
            + ", ".join(f"{c['steps_to_eps']['glauber'] if c['steps_to_eps']['glauber'] is not None else '>' + str(len(c['curves']['glauber']) - 1)} (J={c['J']:g})" for c in chains)
            + " steps. 'All equal' is coherent with probability "
            + ", ".join(f"{_f(r['random'], 3)}" for r in ae) + f" for T = 1..{len(ae)}; the translation table reaches "
            "P(valid) = 1 at T = N. Caveat: confidence-ordered un-masking (Mask-Predict's) reaches coherence "
            "(P(valid) = 1 by T = N) but is mode-seeking: its TV to the target grows with T (up to "
            + ", ".join(f"{_f(c['mask_predict']['confidence'][-1], 2)}" for c in chains) + ").")
        out["c"] = text
    if rows:
        out["part3"] = _part3_verdict(rows)
    else:
        out["part3"] = ("Part 3 (real translations) was not run: "
                        + (tr.get("skipped") or "no model given") + ".")
    return out


def _part3_verdict(rows: list[dict]) -> str:
    """The real-translation numbers behind (b) and (c): error rates vs iterations and vs AR, and how
    many tokens still change per pass. Whether they are large depends on the models' quality."""
    gm = sorted((r for r in rows if r["system"] == "gmlm" and r["remask"] == "linear" and not r["stutter_remask"]),
                key=lambda r: r["iterations"])
    ar = [r for r in rows if r["system"] == "ar"]
    text = "**Real translations (part 3; read with the models' quality in mind).**"
    if gm:
        text += (" GMLM without stutter re-masking: stutter rate "
                 + ", ".join(f"{_f(r['stutter_rate'], 3)} (T={r['iterations']})" for r in gm)
                 + (f" vs AR {_f(ar[0]['stutter_rate'], 3)}" if ar else "") + "; repeated bigrams "
                 + ", ".join(f"{_f(r['repeat2_rate'], 3)} (T={r['iterations']})" for r in gm)
                 + (f" vs AR {_f(ar[0]['repeat2_rate'], 3)}" if ar else "")
                 + f". At T={gm[-1]['iterations']} the tokens changed per pass are "
                 + ", ".join(_f(x, 2) for x in gm[-1]["history"]["mean_changed"])
                 + " and the stutter rate of the hypothesis after each pass "
                 + ", ".join(_f(x, 3) for x in gm[-1]["stutter_by_pass"])
                 + ". Stutter re-masking makes the final stutter rate 0 by construction (adjacent repeats are "
                   "collapsed); its per-pass table shows whether re-predicting them removes the repeats.")
    elif ar:
        text += f" AR only: stutter rate {_f(ar[0]['stutter_rate'], 3)}, repeated bigrams {_f(ar[0]['repeat2_rate'], 3)}."
    return text


# --- markdown ------------------------------------------------------------------------------------
def _exact_section(ex: dict) -> list[str]:
    L = ["## 1. Exact samplers on enumerable distributions", "",
         "Every number below is computed by matrix algebra on the full state space (no sampling): laws "
         "after t steps mu_0 P^t, total variation, stationary laws, spectral gaps and mixing times. "
         "Samplers: Glauber (one random position), k-block dynamics (a random k-subset resampled from its "
         "exact joint conditional), the product form (all positions at once from their single-site "
         "conditionals given the current sequence) and mask-predict from the all-mask state with the linear "
         "schedule (masked positions predicted independently from exact conditionals given the unmasked "
         "tokens; 'random' keeps a uniform subset of the predictions, 'confidence' the most probable ones).", "",
         "### Two spins, pi(x) ~ exp(J x1 x2)", "",
         _table(["J", "target P(x1=x2)", "e^J/(2cosh J)", "Glauber stationary", "product-form stationary",
                 "TV after one 2-block step"],
                [[r["J"], r["target"], r["formula"], r["glauber"], r["product"], r["block2_tv_one_step"]]
                 for r in ex["two_spin"]]), ""]
    ae = ex["all_equal"]
    L += [f"### 'All tokens equal', N={len(ae)}, V=2: P(coherent output) of T-step mask-predict", "",
          _table(["T", "random un-masking", "confidence un-masking", "2^(1-ceil(N/T))"],
                 [[r["T"], r["random"], r["confidence"], r["formula"]] for r in ae]), ""]
    L += ["### Toy translation table: P(output is a valid translation) vs T", ""]
    for r in ex["translation_table"]:
        L += [f"- {r['source']!r} -> " + ", ".join(f"{t!r} ({w:.2f})" for t, w in zip(r["targets"], r["weights"]))
              + f" (N={r['n']}, V={r['V']}): random " + ", ".join(_f(x) for x in r["random"])
              + "; confidence " + ", ".join(_f(x) for x in r["confidence"])
              + ". Most probable invalid outputs of one parallel step: "
              + ", ".join(f"{w!r} ({p:.3f})" for w, p in r["one_step_invalid"])
              + f". P(adjacent duplicate): {_f(r['stutter_prob']['one_step'])} after one parallel step, "
              f"{_f(r['stutter_prob']['target'])} under the target."]
    L += ["", "![coherence](coherence_vs_steps.png)", ""]
    chains = ex["chains"]
    L += [f"### Ising chain n={chains[0]['n']}, h={chains[0]['h']:g}: TV to the target vs steps "
          "(from the uniform law; mask-predict: T-step schedule)", "", "![tv](tv_vs_steps.png)", ""]
    names = list(chains[0]["steps_to_eps"])
    L += [_table(["J"] + [f"{n}: steps to TV<={ex['tv_eps']:g}" for n in names]
                 + ["mask-predict: T to TV<=eps", "product-form stationary TV", "mask-predict T=1 TV"],
                 [[c["J"]] + [("-" if c["steps_to_eps"][n] is None else c["steps_to_eps"][n]) for n in names]
                  + [("-" if c["mask_predict_T_to_eps"] is None else c["mask_predict_T_to_eps"]),
                     c["product_stationary_tv"], c["mask_predict"]["random"][0]] for c in chains]),
          "", "'-': not reached within the steps computed. One step of k-block dynamics resamples k tokens "
          "jointly, which a product-form network can only do with k sequential passes.", ""]
    n = chains[0]["n"]
    L += ["### Spectral gap and mixing time of k-block dynamics", "", "![gap](spectral_gap_vs_block.png)", "",
          _table(["J"] + [f"gap k={k}" for k in range(1, n + 1)],
                 [[c["J"]] + c["spectral_gap"]["all k-subsets"] for c in chains]), "",
          _table(["J"] + [f"t_mix(1/4) k={k}" for k in range(1, n + 1)], [[c["J"]] + c["t_mix"] for c in chains]), ""]
    fl = ex["floor"]
    L += ["### The product form's stationary law is not the target", "", "![floor](product_floor_vs_J.png)", "",
          _table(["J", "chain: TV(stationary, target)", "grid: TV(stationary, target)", "Glauber chain"],
                 [[j, a, b, c] for j, a, b, c in zip(fl["J"], fl["chain"], fl["grid"], fl["glauber_chain"])]), ""]
    mrf = ex["mrf"]
    L += [f"Random MRFs ({mrf['seeds']} seeds each of (n, V, order) = {mrf['configs']}): max row-sum error "
          f"{_f(mrf['max_row_error'])}; max |pi P - pi|: "
          + ", ".join(f"{k} {_f(v)}" for k, v in mrf["max_stationarity_residual"].items())
          + f"; product form TV(pi P, pi): median {_f(sorted(mrf['product_tv_pi_vs_piP'])[len(mrf['product_tv_pi_vs_piP']) // 2])}, "
          f"max {_f(max(mrf['product_tv_pi_vs_piP']))}.", ""]
    return L


def _masking_section(m: dict) -> list[str]:
    L = ["## 2. Masking ratio vs sample efficiency", "",
         f"Truth: Ising model on a {m['graph']} ({m['n_spins']} spins, {m['dim']} parameters: couplings "
         f"J*U(0.5, 1.5) with J={m['J']:g}, fields U(-0.2, 0.2)). For each n, {m['seeds']} seeds draw n exact "
         "samples; the SAME samples are fitted by the k-masked pseudo-likelihood for every k (all C(N,k) masks "
         f"averaged exactly; Newton's method; ridge {m['l2']:g}/n). Dotted lines: the exact asymptotic "
         "tr(H^-1 Sigma H^-1)/n.", "", "![estimator](estimator_error_vs_n.png)", "",
         "n * mean squared error:", "",
         _table(["k"] + [f"n={n}" for n in m["n"]] + ["asymptotic", "log-log slope"],
                [[k] + row + [a, s] for k, row, a, s in zip(m["k"], m["n_mse"], m["asymptotic_n_mse"], m["loglog_slope"])]),
         "", "Fraction of seeds where k beats k=1 (paired):", "",
         _table(["k"] + [f"n={n}" for n in m["n"]], [[k] + w for k, w in zip(m["k"], m["wins_vs_k1"])]), "",
         "Exact asymptotic MSE relative to maximum likelihood (k=N), by coupling strength:", "",
         _table(["J"] + [f"k={k}" for k in range(1, len(m["J_sweep"][0]["ratio_to_mle"]) + 1)],
                [[r["J"]] + r["ratio_to_mle"] for r in m["J_sweep"]]), ""]
    return L


def _translation_section(tr: dict) -> list[str]:
    L = ["## 3. Error modes on real translations", ""]
    rows = tr.get("rows") or []
    if not rows:
        return L + [f"Not run: {tr.get('skipped') or 'no model given'}. Pass `--gmlm-model DIR` (and "
                    "`--ar-model DIR`, `--data-dir DIR` or GMLM_DATA_DIR) to run it.", ""]
    L += [f"{tr['sentences']} sentences of {tr.get('split', 'the test set')} ({tr.get('direction', '')}); GMLM "
          f"{tr.get('gmlm_model')}, length beam {tr['length_beam']}; AR {tr.get('ar_model')} (greedy). Tokens are "
          "SentencePiece pieces; length error = output pieces - reference pieces. With stutter re-masking the "
          "final outputs have adjacent repeats collapsed by construction, so their stutter rate is 0; the "
          "per-pass columns show the hypotheses before that.", ""]
    if any(r["system"] == "gmlm" for r in rows):
        L += ["![errors](error_rates_vs_iterations.png)", ""]
    L += [_table(["system", "mean passes", "stutter rate", "sentences w/ stutter", "rep. unigram", "rep. bigram",
                  "rep. trigram", "len err", "abs len err", "exact len", "seconds"],
                 [[r["label"], r.get("mean_passes", "-"), r["stutter_rate"], r["stutter_sentences"], r["repeat1_rate"],
                   r["repeat2_rate"], r["repeat3_rate"], r["length_error"]["mean"], r["length_error"]["mean_abs"],
                   r["length_error"]["exact"], r["seconds"]] for r in rows]), ""]
    gm = [r for r in rows if r["system"] == "gmlm"]
    if gm:
        P = max(len(r["history"]["mean_changed"]) for r in gm)
        L += ["Per decoder pass (history of the winning length candidate): mean tokens changed / fraction "
              "of sentences still changing / stutter rate of the hypothesis:", "",
              _table(["config"] + [f"pass {t}" for t in range(1, P + 1)],
                     [[r["label"]] + [f"{_f(c, 2)} / {_f(f, 2)} / {_f(s, 3)}" for c, f, s in
                                      zip(r["history"]["mean_changed"], r["history"]["frac_changing"], r["stutter_by_pass"])]
                      + [""] * (P - len(r["history"]["mean_changed"])) for r in gm]), ""]
    ex = tr.get("examples") or {}
    if ex:
        L += ["Examples:", ""]
        for i, src in enumerate(ex.get("source", [])):
            L += [f"- source: {src}", f"  - reference: {ex['reference'][i]}"]
            L += [f"  - {k}: {v[i]}" for k, v in ex.items() if k not in ("source", "reference") and i < len(v)]
        L += [""]
    return L


def write_report(results: dict, out_dir) -> Path:
    """Write report.md, the PNG plots and results.json into ``out_dir``; returns report.md's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        figs = _plots(results, out)
        no_plots = ""
    except ImportError:
        figs, no_plots = {}, "Plots skipped: matplotlib is not installed (pip install matplotlib)."
    results["verdict"] = verdicts(results)
    meta = results.get("meta", {})
    L = ["# GMLM theory and error modes: `gmlm analyze` report", "",
         "Reproduces the claims of \"Promises and Pitfalls of Generative Masked Language Modeling\" (Li et al., "
         "ICML 2024) on distributions where every conditional is exact. Reproduce with:", "",
         f"    {meta.get('command', 'gmlm analyze')}", "",
         f"Run time: {meta.get('seconds', {}).get('total', 0):.0f} s"
         + (" (--quick sizes)" if meta.get("quick") else "") + ". Raw numbers: results.json.", "",
         "## Verdict", ""]
    L += [results["verdict"][k] + "\n" for k in ("a", "b", "c", "part3") if k in results["verdict"]]
    if "exact" in results:
        L += _exact_section(results["exact"])
    if "masking" in results:
        L += _masking_section(results["masking"])
    if "translations" in results:
        L += _translation_section(results["translations"])
    if no_plots:
        L.insert(L.index("## Verdict"), no_plots + "\n")
    # image links only for the plots that were drawn
    L = [x for x in L if not (x.startswith("![") and x[x.index("(") + 1:-1] not in figs)]
    path = out / "report.md"
    path.write_text("\n".join(L) + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_json_default) + "\n", encoding="utf-8")
    return path


def _json_default(x):
    try:
        return x.item()                                      # numpy scalars
    except AttributeError:
        return str(x)
