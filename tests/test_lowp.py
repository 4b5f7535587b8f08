"""Low-precision compute on the CPU (oneDNN, cpu/lowp.h): compute_type validation, bfloat16 / int8
logits against float32 within stated tolerances on random and trained models, translations close
to float32, batch invariance, and the same with oneDNN limited to AVX2 (ONEDNN_MAX_CPU_ISA)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

core = pytest.importorskip("gmlm_engine._core")

from gmlm_engine.common import encode_sources  # noqa: E402
from gmlm_engine.engine import Translator  # noqa: E402

from conftest import TINY_GMLM  # noqa: E402
from test_engine_common import make_random_model, run_per_kernel_set, test_sentences  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "gmlm-en-de"
BUILT = core.build_info().get("onednn", "not built") != "not built"
needs_onednn = pytest.mark.skipif(not BUILT, reason="engine built without oneDNN (float32 only)")
NATIVE = core.build_info().get("native_compute_types", ["float32"])


def native(ct):
    if ct not in NATIVE:
        pytest.skip(f"this CPU has no native {ct} ({core.build_info().get('onednn')}): it would compute in float32")
# Stated tolerances over a decoder pass of random targets (half masked), all logits together:
# (max |low - f32| / max |f32|, mean |low - f32| / std f32). bfloat16 keeps 8 mantissa bits for the
# GEMM operands; int8 quantises activations per row, and random-token inputs give outlier rows.
TOLERANCE = {"bfloat16": (0.03, 0.01), "int8": (0.35, 0.08)}


def test_compute_type_validation():
    with pytest.raises(ValueError, match="compute_type"):
        Translator(TINY_GMLM, compute_type="float64")
    with pytest.raises(ValueError, match="compute_type"):
        Translator(TINY_GMLM, compute_type="float16")          # a cuda type
    assert Translator(TINY_GMLM, compute_type="default").compute_type == "float32"
    auto = Translator(TINY_GMLM, compute_type="auto")
    assert auto.compute_type in core.build_info()["native_compute_types"]
    assert auto._engine.compute_type == auto.compute_type


def test_without_onednn_low_precision_is_a_value_error():
    if BUILT:
        pytest.skip("this build has oneDNN")
    for ct in ("bfloat16", "int8"):
        with pytest.raises(ValueError, match="oneDNN"):
            Translator(TINY_GMLM, compute_type=ct)


def _logits(tr, srcs, tgts):
    return tr._engine.decode_logits(srcs, tgts)


@needs_onednn
@pytest.mark.parametrize("ct", ["bfloat16", "int8"])
@pytest.mark.parametrize("model", ["random", "shipped"])
def test_logits_within_tolerance_of_float32(tmp_path, ct, model):
    native(ct)
    d = make_random_model(tmp_path / "m", seed=4) if model == "random" else SHIPPED
    if not (Path(d) / "config.json").is_file():
        pytest.skip("no shipped model")
    f32, low = Translator(d, intra_threads=2, compute_type="float32"), Translator(d, intra_threads=2, compute_type=ct)
    assert low._engine.compute_type == ct
    srcs = encode_sources(f32.tokenizer, f32.cfg, test_sentences(12))
    rng = np.random.default_rng(0)
    tgts = []
    for _ in srcs:
        t = rng.integers(5, f32.cfg.vocab_size, size=int(rng.integers(3, 25)))
        t[rng.random(len(t)) < 0.5] = f32.cfg.mask_id
        tgts.append(t.tolist())
    a = np.concatenate([x.ravel() for x in _logits(f32, srcs, tgts)])
    b = np.concatenate([x.ravel() for x in _logits(low, srcs, tgts)])
    worst, mean = float(np.abs(a - b).max() / np.abs(a).max()), float(np.abs(a - b).mean() / a.std())
    assert worst <= TOLERANCE[ct][0] and mean <= TOLERANCE[ct][1], (ct, worst, mean)
    assert worst > 0                                                # it really computed in low precision
    for a, b in zip(f32._engine.encode(srcs), low._engine.encode(srcs)):
        assert float(np.abs(a - b).mean() / a.std()) <= TOLERANCE[ct][1]


@needs_onednn
@pytest.mark.parametrize("ct", ["bfloat16", "int8"])
def test_translators_created_one_after_another_give_the_same_translations(ct):
    """Each new Translator's packed weights may land where a dropped one's were; the per-thread oneDNN
    bindings once recognised their weights by that address and then computed with the dropped
    Translator's weights of another layer (about 2 % of fresh int8 Translators here gave other text,
    some of it garbage). Found by test_bad_input's CLI-vs-engine comparison."""
    native(ct)
    src = ["A man.\rTwo dogs.", "A woman.", "Two young children are playing in the sand."]
    expected = [r.tokens for r in Translator(TINY_GMLM, intra_threads=2, compute_type=ct).translate_batch(src)]
    differ = 0
    for _ in range(150):
        tr = Translator(TINY_GMLM, intra_threads=2, compute_type=ct)
        differ += [r.tokens for r in tr.translate_batch(src)] != expected
        del tr
    assert differ == 0


@needs_onednn
@pytest.mark.parametrize("ct", ["bfloat16", "int8"])
def test_translations_close_to_float32_and_batch_invariant(ct):
    native(ct)
    if not (SHIPPED / "config.json").is_file():
        pytest.skip("no shipped model")
    src = test_sentences(64)
    f32 = Translator(SHIPPED, intra_threads=2, compute_type="float32").translate_batch(src)
    tr = Translator(SHIPPED, intra_threads=2, compute_type=ct)
    low = tr.translate_batch(src)
    same = sum(a.text == b.text for a, b in zip(f32, low))
    assert same >= 0.6 * len(src), same                             # most sentences are identical
    alone = [tr.translate_batch([s])[0] for s in src[:16]]
    assert [r.tokens for r in alone] == [r.tokens for r in low[:16]]


@needs_onednn
def test_isa_limited_to_avx2_runs_int8_and_falls_back_for_bfloat16():
    """ONEDNN_MAX_CPU_ISA=AVX2 (a CPU without AVX-512 or VNNI): int8 stays native (the engine's AVX2
    kernel, cpu/gemm_s8_avx2.h) and auto picks it; bfloat16 warns and computes in float32, with
    float32's results. With the portable kernels too (GMLM_CPU_ISA=generic) int8 falls back as well."""
    code = (
        "import sys, warnings\n"
        "from gmlm_engine import _core\n"
        "from gmlm_engine.engine import Translator\n"
        f"d = {str(TINY_GMLM)!r}\n"
        "generic = sys.argv[1] == 'generic'\n"
        "info = _core.build_info()\n"
        "assert 'avx2' in info['onednn'] and info['native_compute_types'] == (['float32'] if generic else ['float32', 'int8']), info\n"
        "src = ['A man rides a bike.', 'Two dogs.']\n"
        "ref = [r.tokens for r in Translator(d, intra_threads=1, compute_type='float32').translate_batch(src)]\n"
        "assert Translator(d, compute_type='auto').compute_type == ('float32' if generic else 'int8')\n"
        "for ct in ('bfloat16', 'int8') if generic else ('bfloat16',):\n"
        "    with warnings.catch_warnings(record=True) as w:\n"
        "        warnings.simplefilter('always')\n"
        "        tr = Translator(d, intra_threads=1, compute_type=ct)\n"
        "    assert tr.compute_type == 'float32' and any('no native support' in str(x.message) for x in w)\n"
        "    assert [r.tokens for r in tr.translate_batch(src)] == ref\n"
        "print('ok')\n")
    for isa in ("avx2", "generic"):
        env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", GMLM_CPU_ISA=isa)
        r = subprocess.run([sys.executable, "-c", code, isa], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.startswith("ok"), (isa, r.stderr)


def test_avx2_int8_kernel_sums_exactly():
    """The AVX2 int8 kernel (forced with GMLM_CPU_ISA=avx2 and ONEDNN_MAX_CPU_ISA=AVX2, where oneDNN's
    own int8 saturates) gives the exact int32 sums at the extremes of both ranges: weights and
    activations of +-127 with equal signs (every pair sum at its maximum, 2 x 127 x 127) and with
    mixed signs, random values, odd K and N (padding), 1 to 67 rows. Integer-valued inputs with a
    row maximum of 127 quantise to themselves (scales 1), so the result is the integer product (K <= 1039:
    the float32 output holds every sum exactly)."""
    code = (
        "import json, numpy as np\nfrom gmlm_engine import _core\n"
        "assert _core.build_info()['cpu_isa'] == 'avx2' and 'int8' in _core.build_info()['native_compute_types']\n"
        "rng = np.random.default_rng(3)\nbad = []\n"
        "for n, k in ((64, 256), (40, 1024), (17, 33), (8000, 256), (33, 1023)):\n"
        "    for kind in ('max', 'min', 'mixed', 'random'):\n"
        "        if kind == 'random':\n"
        "            w = rng.integers(-127, 128, (n, k)); a = rng.integers(-127, 128, (67, k))\n"
        "        else:\n"
        "            w = np.full((n, k), 127); a = np.full((67, k), 127 if kind == 'max' else -127)\n"
        "            if kind == 'mixed': w[:, 1::2] = -127; a[:, 1::2] = 127\n"
        "        w[:, 0] = 127; a[:, 0] = 127\n"
        "        g = _core.ops.LowpGemm(w.astype(np.float32), 'int8')\n"
        "        ref = a @ w.T\n"
        "        for m in (1, 2, 3, 5, 16, 67):\n"
        "            y = g.run(a[:m].astype(np.float32), 2)\n"
        "            if not np.array_equal(y.astype(np.int64), ref[:m]): bad.append((n, k, kind, m))\n"
        "print(json.dumps(bad))\n")
    if core.build_info()["cpu_isa"] == "generic":
        pytest.skip("this CPU has no AVX2")
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", GMLM_CPU_ISA="avx2")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-800:]
    assert r.stdout.strip() == "[]"


def test_the_default_compute_type_is_the_fastest_native_one(tmp_path, capsys):
    from gmlm_engine import _core
    from gmlm_engine.tools.cli import main

    native = _core.build_info()["native_compute_types"]
    expected = next(t for t in ("int8", "bfloat16", "float32") if t in native)
    assert Translator(TINY_GMLM, intra_threads=1).compute_type == expected
    src = tmp_path / "src.txt"
    src.write_text("A man rides a bike.\nTwo dogs.\n")
    by_type = {}
    for ct in ("auto", expected, "float32"):
        out = tmp_path / f"out.{ct}"
        assert main(["translate", "--model", str(TINY_GMLM), "--compute-type", ct, "-i", str(src), "-o", str(out)]) == 0
        by_type[ct] = out.read_text()
    assert by_type["auto"] == by_type[expected]
    assert by_type["float32"] == "".join(r.text + "\n" for r in Translator(TINY_GMLM, compute_type="float32")
                                         .translate_batch(["A man rides a bike.", "Two dogs."]))
    capsys.readouterr()
    assert main(["translate", "--model", str(TINY_GMLM), "--engine", "torch", "--compute-type", "int8",
                 "-i", str(src)]) == 2                                      # the reference is float32 only
    assert "--compute-type int8" in capsys.readouterr().err


@needs_onednn
def test_generic_and_vectorised_conversion_kernels_agree():
    """The activations' int8 quantisation, bfloat16 rounding and int8 dequantisation (cpu/kernels.h)
    are bit-identical in the portable, the AVX2 and the AVX-512 kernels (the GEMM op alone: no
    attention or norms, whose fp32 sums legitimately differ between the sets). Rows of 200 run the
    vector loops and their scalar tails."""
    code = (
        "import json, numpy as np\n"
        "from gmlm_engine import _core\n"
        "rng = np.random.default_rng(0)\n"
        "a = (rng.standard_normal((37, 200)) * rng.uniform(0.01, 30, (37, 1))).astype(np.float32)\n"
        "a[3] = 0; a[5, 7] = 1e30; a[6, :9] = np.float32(2.5) * 31 / 127\n"
        "b = (rng.standard_normal((300, 200)) / 14).astype(np.float32)\n"
        "out = {'isa': _core.build_info()['cpu_isa']}\n"
        "for ct in _core.build_info()['native_compute_types']:\n"
        "    if ct != 'float32':\n"
        "        out[ct] = _core.ops.LowpGemm(b, ct).run(a, 1, 1).view(np.uint32).tolist()\n"
        "print(json.dumps(out))\n"
    )
    runs = run_per_kernel_set(code, isas=("generic", "avx2", "best"))
    assert runs["generic"].pop("isa") == "generic"
    runs["avx2"].pop("isa"), runs["best"].pop("isa")
    # the portable kernels have no int8 GEMM of their own: where oneDNN's int8 is not exact (no VNNI, or
    # ONEDNN_MAX_CPU_ISA=AVX2) int8 is native only with AVX2; the types they share must agree bit for bit
    assert runs["avx2"] and runs["avx2"] == runs["best"]
    assert all(runs["generic"][ct] == runs["avx2"][ct] for ct in runs["generic"])


def test_quantisation_kernel_rounds_half_away_from_zero():
    """Through the engine's GEMM op with identity weights (y = the dequantised activations): values
    on exact .5 quantisation steps round away from zero; an all-zero row stays zero."""
    if "int8" not in NATIVE:
        pytest.skip("no native int8")
    K = 64
    a = np.zeros((2, K), np.float32)
    s = np.float32(31.5) / np.float32(127)
    a[0, :] = (np.arange(K, dtype=np.float32) - np.float32(31.5)) * np.float32(0.25)
    a[0, 0] = np.float32(31.5)                                 # max |a|: the row's scale is 31.5 / 127
    a[0, 1], a[0, 2] = np.float32(2.5) * s, np.float32(-3.5) * s    # exactly on half steps (up to rounding)
    b = np.eye(K, dtype=np.float32)
    y = core.ops.LowpGemm(b, "int8").run(a, 1, 1)
    v = np.clip(a[0] * (np.float32(1) / s), -127, 127)
    q = np.trunc(v + np.copysign(np.float32(0.5), v))
    np.testing.assert_allclose(y[0], q * s, rtol=1e-6, atol=0)
    assert (y[1] == 0).all()


@needs_onednn
def test_int8_few_rows_kernel_gives_onednns_bits():
    """int8 GEMMs of 1 or 2 rows run the GEMV kernel (cpu/gemv_s8.h), the others oneDNN: both sum
    exactly in int32, so a row's result is the same bits whichever path computed it (batch invariance),
    for every shape the models use (K 256 and 1024, N 256 to 8000, sub-ranges of a weight)."""
    native("int8")
    rng = np.random.default_rng(7)
    for n, k in ((256, 256), (768, 256), (256, 1024), (1024, 256), (8000, 256), (192, 96)):
        b = rng.standard_normal((n, k)).astype(np.float32)
        g = core.ops.LowpGemm(b, "int8")
        a = rng.standard_normal((20, k)).astype(np.float32)
        whole = g.run(a, 2)                                    # 20 rows: oneDNN
        for m in (1, 2):
            for r0 in (0, 5, 18):
                np.testing.assert_array_equal(g.run(a[r0:r0 + m].copy(), 2), whole[r0:r0 + m])


@needs_onednn
def test_int8_translations_do_not_depend_on_the_few_rows_kernel():
    """The AR model at batch 1 (every step 1 row: the GEMV kernel) and the GMLM, with the kernel on and
    off (GMLM_NO_GEMV=1), and on the AVX2 path (GMLM_CPU_ISA=avx2, ONEDNN_MAX_CPU_ISA=AVX2: the AVX2
    kernel for every product): the same tokens and the same scores, bit for bit."""
    native("int8")
    code = ("import json, sys\nfrom gmlm_engine import Translator\nfrom test_engine_common import test_sentences\n"
            "src = test_sentences(24)\nout = []\n"
            f"for m, o in (({str(ROOT / 'models' / 'ar-en-de')!r}, dict(beam_size=1)), "
            f"({str(ROOT / 'models' / 'ar-en-de')!r}, dict(beam_size=2)), ({str(SHIPPED)!r}, dict())):\n"
            "    tr = Translator(m, compute_type='int8', intra_threads=2)\n"
            "    out += [(r.tokens, r.score) for r in tr.translate_batch(src, max_batch_size=1, **o)]\n"
            "print(json.dumps(out))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    paths = ({"GMLM_NO_GEMV": "0"}, {"GMLM_NO_GEMV": "1"}, {"GMLM_CPU_ISA": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"})
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                           env={**env, **path}) for path in paths]
    assert all(r.returncode == 0 for r in runs), [r.stderr[-500:] for r in runs]
    assert runs[0].stdout == runs[1].stdout == runs[2].stdout
