"""gmlm_engine.analysis: exact samplers, the masked pseudo-likelihood estimator, the diagnostics and
`gmlm analyze` (quick sizes)."""
from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from gmlm_engine.analysis import chains as ch
from gmlm_engine.analysis import diagnostics as dg
from gmlm_engine.analysis._blas import blas_threads
from gmlm_engine.analysis.distributions import (Joint, all_equal, chain_edges, ising, ising_chain, random_mrf,
                                                toy_translation_table)
from gmlm_engine.analysis.estimation import (IsingFamily, asymptotic_mse, fit_masked_pl, masked_pl,
                                             sample_empirical)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    with blas_threads(1):
        yield


def _equal_mask(d: Joint) -> np.ndarray:
    s = d.states()
    return s[:, 0] == s[:, 1]


# --- two spins ---------------------------------------------------------------------------------
@pytest.mark.parametrize("J", [0.1, 0.7, 1.5, 3.0])
def test_two_spin_stationary_laws(J):
    d = ising_chain(2, J)
    eq = _equal_mask(d)
    expected = math.exp(J) / (2 * math.cosh(J))
    assert d.flat()[eq].sum() == pytest.approx(expected, abs=1e-14)
    assert ch.stationary(ch.glauber(d))[eq].sum() == pytest.approx(expected, abs=1e-12)
    prod = ch.stationary(ch.product_form(d))
    assert prod[eq].sum() == pytest.approx(0.5, abs=1e-12)          # for every J: not the target
    assert ch.tv(prod, d.flat()) == pytest.approx(expected - 0.5, abs=1e-12)


@pytest.mark.parametrize("J", [0.3, 2.0])
def test_two_spin_block_dynamics_exact_in_one_step(J):
    d = ising_chain(2, J)
    B = ch.block_dynamics(d, 2)
    # every row is pi: from ANY starting law, one step lands exactly on the target
    np.testing.assert_allclose(B, np.broadcast_to(d.flat(), B.shape), atol=1e-15)
    mu0 = np.random.default_rng(0).dirichlet(np.ones(4))
    assert ch.tv(ch.distribution_after(B, mu0, 1), d.flat()) < 1e-15


def test_two_spin_product_form_matrix_by_hand():
    J = 0.8
    d = ising_chain(2, J)
    a = math.exp(J) / (2 * math.cosh(J))                            # pi(y_i = x_j | x_j)
    P = ch.product_form(d)
    # states in order (-,-), (-,+), (+,-), (+,+); from (-,+): y1 copies x2=+ w.p. a, y2 copies x1=- w.p. a
    np.testing.assert_allclose(P[1], [(1 - a) * a, (1 - a) * (1 - a), a * a, a * (1 - a)], atol=1e-15)


def test_block_kernel_by_hand():
    d = ising_chain(2, 0.5, 0.0)
    K = ch.block_kernel(d, [0])
    c = math.exp(0.5) / (2 * math.cosh(0.5))
    # from (-,-): resample x1 given x2 = -: stays w.p. c, moves to (+,-) w.p. 1 - c
    np.testing.assert_allclose(K[0], [c, 0, 1 - c, 0], atol=1e-15)


# --- all tokens equal --------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("select", ["random", "confidence"])
def test_all_equal_parallel_vs_linear_schedule(n, select):
    d = all_equal(n, 2)
    coherent = [0, d.size - 1]
    assert ch.mask_predict(d, 1, select)[coherent].sum() == pytest.approx(2.0 ** (1 - n), abs=1e-15)
    assert ch.mask_predict(d, n, select)[coherent].sum() == pytest.approx(1.0, abs=1e-15)


def test_all_equal_closed_form_for_every_T():
    n = 6
    d = all_equal(n, 2)
    got = [ch.mask_predict(d, T)[[0, d.size - 1]].sum() for T in range(1, n + 1)]
    np.testing.assert_allclose(got, [2.0 ** (1 - math.ceil(n / T)) for T in range(1, n + 1)], atol=1e-15)
    np.testing.assert_allclose(got, [1 / 32, 1 / 4, 1 / 2, 1 / 2, 1 / 2, 1], atol=1e-15)


def test_unmask_schedule():
    assert ch.unmask_schedule(8, 3) == [3, 3, 2]
    assert ch.unmask_schedule(5, 5) == [1, 1, 1, 1, 1]
    assert ch.unmask_schedule(2, 4) == [1, 0, 1, 0]
    assert ch.unmask_schedule(7, 1) == [7]
    with pytest.raises(ValueError):
        ch.unmask_schedule(3, 0)


# --- random MRFs -------------------------------------------------------------------------------
def _mrfs():
    for seed in range(12):
        yield random_mrf(3, 3, 2, 1.0, seed)
        yield random_mrf(4, 2, 3, 1.0, 100 + seed)


def test_kernels_row_stochastic_and_target_stationary():
    moved = []
    for d in _mrfs():
        pi = d.flat()
        kernels = {"glauber": ch.glauber(d), "block-2": ch.block_dynamics(d, 2),
                   "contiguous-2": ch.block_dynamics(d, 2, ch.contiguous_blocks(d.n, 2)),
                   "block-n": ch.block_dynamics(d, d.n)}
        for name, P in kernels.items():
            assert ch.is_row_stochastic(P), name
            np.testing.assert_allclose(pi @ P, pi, atol=1e-14, err_msg=name)
            assert ch.is_reversible(P, pi), name
        prod = ch.product_form(d)
        assert ch.is_row_stochastic(prod)
        moved.append(ch.tv(pi @ prod, pi))
    assert min(moved) > 0 and np.median(moved) > 0.05                # the product form moves pi


def test_mask_predict_random_order_with_T_equal_n_is_exact():
    for d in itertools.islice(_mrfs(), 6):
        out = ch.mask_predict(d, d.n, "random")
        assert out.sum() == pytest.approx(1.0, abs=1e-12)
        assert ch.tv(out, d.flat()) < 1e-12
        # one step: the product of the single-site marginals
        marg = [d.p.sum(axis=tuple(j for j in range(d.n) if j != i)) for i in range(d.n)]
        prod = np.prod([m[d.states()[:, i]] for i, m in enumerate(marg)], axis=0)
        np.testing.assert_allclose(ch.mask_predict(d, 1), prod, atol=1e-15)


def test_spectral_gap_and_mixing_time():
    # independent uniform spins: Glauber eigenvalues 1, 1/2, 1/2, 0
    P = ch.glauber(ising_chain(2, 0.0))
    np.testing.assert_allclose(np.sort(ch.eigenvalues(P, np.full(4, 0.25)).real), [0, 0.5, 0.5, 1], atol=1e-14)
    assert ch.spectral_gap(P, np.full(4, 0.25)) == pytest.approx(0.5, abs=1e-14)
    assert ch.mixing_time(P, np.full(4, 0.25), 0.25) == 1            # d(1) = 1/4 exactly
    # against brute force on a correlated chain
    d = ising_chain(4, 1.0, 0.2)
    G, pi = ch.glauber(d), d.flat()
    for eps in (0.5, 0.25, 0.05):
        Pt, t = np.eye(d.size), 0
        while ch.worst_tv(Pt, pi) > eps:
            Pt, t = Pt @ G, t + 1
        assert ch.mixing_time(G, pi, eps) == t
    assert ch.mixing_time(ch.product_form(d), pi, 0.05, t_max=1024) == math.inf
    gaps = [ch.spectral_gap(ch.block_dynamics(d, k), pi) for k in range(1, 5)]
    assert all(b > a for a, b in zip(gaps, gaps[1:]))
    assert gaps[-1] == pytest.approx(1.0, abs=1e-12)


def test_tv_curve_and_distribution_after():
    d = ising_chain(3, 0.5)
    G = ch.glauber(d)
    mu0 = np.eye(d.size)[0]
    curve = ch.tv_curve(G, mu0, d.flat(), 5)
    assert curve[0] == pytest.approx(1 - d.flat()[0], abs=1e-15)
    assert curve[5] == pytest.approx(ch.tv(mu0 @ np.linalg.matrix_power(G, 5), d.flat()), abs=1e-14)
    assert ch.tv(ch.distribution_after(G, mu0, 3), mu0 @ np.linalg.matrix_power(G, 3)) < 1e-15


def test_translation_table_one_step_validity():
    thank, bike, morning = toy_translation_table()
    valid = thank.is_valid(thank.joint.states())
    # marginals: pos1 vielen .5 / danke .5; pos2 dank .5 / schön .3 / sehr .2; pos3 '.'
    assert ch.mask_predict(thank.joint, 1)[valid].sum() == pytest.approx(0.5 * 0.5 + 0.5 * 0.3 + 0.5 * 0.2, abs=1e-15)
    assert ch.mask_predict(thank.joint, 3)[valid].sum() == pytest.approx(1.0, abs=1e-14)
    # 'morgen morgen': P(first = morgen) * P(second = morgen) = 0.25 * 0.6
    idx = [morning.vocab.index("morgen")] * 2
    one = ch.mask_predict(morning.joint, 1).reshape(morning.joint.p.shape)
    assert one[tuple(idx)] == pytest.approx(0.15, abs=1e-15)
    assert bike.joint.n == 4 and bike.joint.v == 8


def test_joint_validation():
    with pytest.raises(ValueError):
        Joint(np.ones((2, 3)) / 6)
    with pytest.raises(ValueError):
        Joint(np.array([[0.5, 0.5], [0.5, 0.5]]))
    d = all_equal(3, 2)
    c = d.conditional([1])                                          # pi(x_2 | x_1, x_3)
    assert c[0, 0, 0] == 1.0 and c[0, 1, 0] == 0.0
    assert c[0, 0, 1] == 0.5 and c[0, 1, 1] == 0.5                  # zero-mass context (0, ., 1): uniform


# --- the k-masked pseudo-likelihood estimator -------------------------------------------------------
def test_estimator_two_spins_closed_form():
    fam = IsingFamily(2, ((0, 1),), fields=False)
    q = np.array([[0.375, 0.125], [0.125, 0.375]])                  # mean of s1 s2 = 0.5
    for k in (1, 2):
        assert fit_masked_pl(fam, q, k)[0] == pytest.approx(math.atanh(0.5), abs=1e-10)


def test_estimator_fisher_consistent_at_the_truth():
    fam = IsingFamily(4, tuple(chain_edges(4, periodic=True)))
    theta = np.array([0.9, -0.4, 0.6, 0.3, 0.1, -0.2, 0.15, 0.0])
    pi = fam.joint(theta).p
    for k in (1, 2, 3, 4):
        np.testing.assert_allclose(fit_masked_pl(fam, pi, k), theta, atol=1e-9)


def test_estimator_derivatives_match_finite_differences():
    fam = IsingFamily(3, ((0, 1), (1, 2), (0, 2)))
    q = np.random.default_rng(1).dirichlet(np.ones(8)).reshape(2, 2, 2)
    theta = np.array([0.3, -0.5, 0.2, 0.1, -0.1, 0.4])
    for k in (1, 2, 3):
        _, g, H = masked_pl(fam, q, theta, k)
        h = 1e-6
        fd_g = [(masked_pl(fam, q, theta + h * e, k, False)[0] - masked_pl(fam, q, theta - h * e, k, False)[0]) / (2 * h)
                for e in np.eye(6)]
        fd_H = [(masked_pl(fam, q, theta + h * e, k)[1][0] - masked_pl(fam, q, theta - h * e, k)[1][0]) / (2 * h)
                for e in np.eye(6)]
        np.testing.assert_allclose(g[0], fd_g, atol=1e-8)
        np.testing.assert_allclose(H[0], np.array(fd_H), atol=1e-7)


def test_estimator_consistent_on_a_fixed_seed_set():
    fam = IsingFamily(4, tuple(chain_edges(4, periodic=True)))
    theta = np.array([0.8, 0.5, 0.7, 0.6, 0.1, -0.1, 0.2, 0.0])
    target = fam.joint(theta)
    errors = {}
    for n in (200, 2000, 20000):
        q = np.stack([sample_empirical(target, n, np.random.default_rng(seed)) for seed in range(10)])
        for k in (1, 4):
            est = fit_masked_pl(fam, q, k, l2=0.01 / n)
            errors[k, n] = float(np.sqrt(((est - theta) ** 2).sum(1)).mean())
    for k in (1, 4):
        assert errors[k, 2000] < errors[k, 200] / 2
        assert errors[k, 20000] < errors[k, 2000] / 2


def test_asymptotic_mse_cramer_rao():
    fam = IsingFamily(4, tuple(chain_edges(4, periodic=True)))
    theta = np.array([1.0, 0.9, 1.1, 1.0, 0.1, -0.1, 0.2, 0.0])
    pi = fam.joint(theta).p.reshape(-1)
    phi = fam.features().reshape(-1, fam.dim)
    centred = phi - pi @ phi
    fisher = (centred.T * pi) @ centred
    mle = asymptotic_mse(fam, theta, 4)
    assert mle == pytest.approx(np.trace(np.linalg.inv(fisher)), rel=1e-10)
    asym = [asymptotic_mse(fam, theta, k) for k in (1, 2, 3, 4)]
    assert asym[0] > asym[1] > asym[2] * (1 + 1e-6)                 # more masking, smaller variance
    # with fields in the model, k = N-1 IS the MLE (the MLE matches every single-site marginal, which
    # solves the (N-1)-masked estimating equations)
    assert asym[2] == pytest.approx(asym[3], rel=1e-10)
    q = sample_empirical(fam.joint(theta), 500, np.random.default_rng(3))
    np.testing.assert_allclose(fit_masked_pl(fam, q, 3), fit_masked_pl(fam, q, 4), atol=1e-9)


# --- diagnostics ---------------------------------------------------------------------------------
def test_stutter():
    assert dg.stutter_count("a a b b b c".split()) == 3
    assert dg.stutter_count([]) == 0
    assert dg.stutter_rate([["a", "a", "b"], ["c"], [], ["d", "d"]]) == pytest.approx(2 / 3)
    assert dg.stutter_rate([[], ["x"]]) == 0.0


def test_repeated_ngrams():
    t = "a b a b a".split()
    assert [dg.repeated_ngram_count(t, n) for n in (1, 2, 3, 4, 6)] == [3, 2, 1, 0, 0]
    corpus = [t, "x y z".split(), ["q"]]
    assert dg.repeated_ngram_rate(corpus, 2) == pytest.approx(2 / (4 + 2))
    assert dg.repeated_ngram_rate(corpus, 1) == pytest.approx(3 / 9)


def test_length_errors():
    hyps, refs = [[1, 2, 3], [1], [1, 2]], [[1, 2], [1], [1, 2, 3, 4]]
    assert dg.length_errors(hyps, refs) == [1, 0, -2]
    s = dg.length_error_summary(hyps, refs)
    assert s == {"mean": pytest.approx(-1 / 3), "mean_abs": pytest.approx(1.0), "exact": pytest.approx(1 / 3)}
    with pytest.raises(ValueError):
        dg.length_errors(hyps, refs[:2])


def test_changes_per_pass_and_still_changing():
    h1 = [list("abc"), list("axc"), list("axc")]                    # stopped after 3 passes
    h2 = [list("aa"), list("ab"), list("cd"), list("cd")]
    assert dg.changed_per_pass(h1) == [3, 1, 0]
    assert dg.changed_per_pass(h2) == [2, 1, 2, 0]
    assert dg.changed_per_pass([list("ab"), list("abc")]) == [2, 1]  # a length change counts
    s = dg.still_changing([h1, h2], 4)
    assert s["mean_changed"] == [2.5, 1.0, 1.0, 0.0]
    assert s["frac_changing"] == [1.0, 1.0, 0.5, 0.0]
    assert s["frac_running"] == [1.0, 1.0, 1.0, 0.5]
    # stutter rate of the hypotheses after each pass (h1 keeps its last one at pass 4)
    rates = dg.per_pass_rate([h1, h2], dg.stutter_rate, 4)
    assert rates == pytest.approx([1 / 3, 0.0, 0.0, 0.0])


def test_summarize():
    s = dg.summarize([list("aab"), list("cd")], [list("aab"), list("c")])
    assert s["stutter_rate"] == pytest.approx(1 / 3)
    assert s["stutter_sentences"] == 0.5
    assert s["repeat1_rate"] == pytest.approx(1 / 5)
    assert s["length_error"]["mean"] == pytest.approx(0.5)


# --- part 3 driver on the tiny fixtures -------------------------------------------------------------
def test_translation_study_on_fixtures():
    pytest.importorskip("torch")
    pytest.importorskip("sentencepiece")
    from gmlm_engine.analysis.translations import GmlmConfig, run_translation_study

    src = ["A man rides a bike.", "Two dogs play in the snow."]
    ref = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]
    cfgs = [GmlmConfig(1), GmlmConfig(3, stutter_remask=True)]
    res = run_translation_study(src, ref, ROOT / "tests/data/tiny-gmlm", ROOT / "tests/data/tiny-ar", cfgs,
                                length_beam=2, threads=1)
    rows = res["rows"]
    assert [r["label"] for r in rows] == ["T=1 linear", "T=3 linear +stutter-remask", "AR greedy"]
    one = rows[0]
    assert len(one["history"]["mean_changed"]) == 1 and one["mean_passes"] == 1.0
    # T=1 without stutter re-masking: the history's only hypothesis IS the output
    assert one["stutter_by_pass"][0] == pytest.approx(one["stutter_rate"])
    assert one["history"]["mean_changed"][0] == pytest.approx(one["mean_length"])
    assert rows[1]["stutter_rate"] == 0.0                           # collapsed by stutter re-masking
    assert len(rows[1]["history"]["frac_running"]) == 3


# --- gmlm analyze --------------------------------------------------------------------------------
def _args(tmp_path, *extra):
    from gmlm_engine.analysis.cli import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(["--out", str(tmp_path / "report"), "--quick", *extra])


def test_analyze_quick_writes_report(tmp_path):
    pytest.importorskip("matplotlib")
    from gmlm_engine.analysis.cli import run

    assert run(_args(tmp_path, "--parts", "exact", "masking")) == 0
    out = tmp_path / "report"
    md = (out / "report.md").read_text()
    for png in ("tv_vs_steps.png", "spectral_gap_vs_block.png", "product_floor_vs_J.png", "coherence_vs_steps.png",
                "estimator_error_vs_n.png"):
        assert (out / png).stat().st_size > 1000
        assert f"({png})" in md
    assert "**(a)" in md and "**(b)" in md and "**(c)" in md
    assert "Part 3 (real translations) was not run" in md
    res = json.loads((out / "results.json").read_text())
    assert [r["product"] for r in res["exact"]["two_spin"]] == pytest.approx([0.5, 0.5], abs=1e-12)
    assert res["exact"]["all_equal"][0]["random"] == pytest.approx(2 ** -3)
    assert "translations" not in res


def _data_dir(tmp_path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "test_2016_flickr.en").write_text("A dog runs.\nTwo men talk.\n")
    (data / "test_2016_flickr.de").write_text("Ein Hund rennt.\nZwei Männer reden.\n")
    return data


def test_analyze_part3_defaults_to_the_shipped_models(tmp_path):
    pytest.importorskip("torch")
    from gmlm_engine import default_model_dir
    from gmlm_engine.analysis.cli import run

    args = _args(tmp_path, "--parts", "translations", "--data-dir", str(_data_dir(tmp_path)))
    assert run(args) == 0
    tr = json.loads((tmp_path / "report" / "results.json").read_text())["translations"]
    assert tr["gmlm_model"] == str(default_model_dir("gmlm")) and tr["ar_model"] == str(default_model_dir("ar"))
    assert tr["sentences"] == 2 and any(r["label"] == "AR greedy" for r in tr["rows"])


def test_analyze_translations_on_fixtures(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    from gmlm_engine.analysis.cli import run

    args = _args(tmp_path, "--parts", "translations", "--gmlm-model", str(ROOT / "tests/data/tiny-gmlm"),
                 "--ar-model", str(ROOT / "tests/data/tiny-ar"), "--data-dir", str(_data_dir(tmp_path)))
    assert run(args) == 0
    out = tmp_path / "report"
    res = json.loads((out / "results.json").read_text())
    tr = res["translations"]
    assert tr["sentences"] == 2 and tr["direction"] == "en->de"
    assert [r["label"] for r in tr["rows"]] == ["T=1 linear", "T=1 linear +stutter-remask", "T=4 linear",
                                                "T=4 linear +stutter-remask", "T=4 threshold 0.9",
                                                "T=4 threshold 0.9 +stutter-remask", "AR greedy"]
    md = (out / "report.md").read_text()
    assert "**Real translations (part 3" in md and "(error_rates_vs_iterations.png)" in md
    assert (out / "error_rates_vs_iterations.png").stat().st_size > 1000


def test_analyze_bad_model_dir(tmp_path, capsys):
    pytest.importorskip("torch")
    from gmlm_engine.analysis.cli import run

    args = _args(tmp_path, "--parts", "translations", "--gmlm-model", str(tmp_path / "missing"),
                 "--data-dir", str(_data_dir(tmp_path)))
    assert run(args) == 2
    assert "gmlm analyze: error:" in capsys.readouterr().err
    assert run(_args(tmp_path, "--num-sentences", "0")) == 2


def test_report_without_matplotlib(tmp_path, monkeypatch):
    import sys

    from gmlm_engine.analysis.experiments import Sizes, exact_study
    from gmlm_engine.analysis.report import write_report

    results = {"meta": {"command": "gmlm analyze --quick --parts exact", "quick": True, "seconds": {"total": 1.0}},
               "exact": exact_study(Sizes.quick())}
    monkeypatch.setitem(sys.modules, "matplotlib", None)            # import matplotlib -> ImportError
    md = write_report(results, tmp_path / "r").read_text()
    assert "Plots skipped: matplotlib is not installed" in md
    assert "![" not in md and not list((tmp_path / "r").glob("*.png"))
    assert "**(b)" in md and "**(c)" in md and "**(a)" not in md
