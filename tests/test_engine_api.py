"""The compiled engine's Python API: batching and batch invariance, bad input, broken model
files, threads, the iterable/file front-ends, and that the runtime does not need PyTorch."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from gmlm_engine.config import ModelError

core = pytest.importorskip("gmlm_engine._core")
from gmlm_engine.engine import Translator  # noqa: E402

from test_engine_common import SENTENCES, TINY, make_random_model, mismatches, run_per_kernel_set  # noqa: E402
from conftest import copy_without_weights_checksum  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny():
    return Translator(TINY, intra_threads=2, compute_type="float32")


@pytest.fixture(scope="module")
def rand_dir(tmp_path_factory):
    return make_random_model(tmp_path_factory.mktemp("rand") / "m", seed=11)


@pytest.fixture(scope="module")
def rand(rand_dir):
    return Translator(rand_dir, intra_threads=2, compute_type="float32")


def test_build_info():
    info = core.build_info()
    assert info["version"] and "OpenBLAS" in info["blas"] and info["cpu_isa"] in ("avx512", "avx2", "generic")


# --- batching ---------------------------------------------------------------------------------
OPTION_SETS = [dict(), dict(stutter_remask=False, length_beam=5), dict(remask="threshold", threshold=0.6),
               dict(init="random", seed=5), dict(sampling=True, seed=9, iterations=3),
               dict(length_beam=5, length_beam_keep=2)]


@pytest.mark.parametrize("opts", OPTION_SETS)
def test_batch_invariance(rand, opts):
    """Each sentence alone, in a mixed batch, and in max_batch_size / token-limited sub-batches."""
    src = SENTENCES
    alone = [rand.translate_batch([s], return_history=True, **opts)[0] for s in src]
    mixed = rand.translate_batch(src, return_history=True, **opts)
    split = rand.translate_batch(src, return_history=True, max_batch_size=3, **opts)
    tokens = rand.translate_batch(src, return_history=True, max_batch_size=40, batch_type="tokens", **opts)
    for other in (mixed, split, tokens):
        assert mismatches(alone, other, tol=1e-5) == []


def test_results_in_input_order_and_sorted_batches(rand):
    src = SENTENCES[::-1] + SENTENCES[:3]
    res = rand.translate_batch(src, max_batch_size=2)
    alone = [rand.translate_batch([s])[0] for s in src]
    assert [r.tokens for r in res] == [r.tokens for r in alone]


def test_thread_counts_give_identical_results(rand_dir):
    """The GEMM tiling depends on the shapes only: 1 and 2 intra_threads agree bit for bit."""
    a = Translator(rand_dir, intra_threads=1, compute_type="float32").translate_batch(SENTENCES, return_history=True)
    b = Translator(rand_dir, intra_threads=2, compute_type="float32").translate_batch(SENTENCES, return_history=True)
    assert [(r.tokens, r.score, r.history) for r in a] == [(r.tokens, r.score, r.history) for r in b]


def test_four_threads_at_once_equal_sequential(rand):
    src = SENTENCES * 2
    expected = rand.translate_batch(src, max_batch_size=5)
    out: dict[int, list] = {}
    errors: list[BaseException] = []

    def work(i):
        try:
            out[i] = rand.translate_batch(src, max_batch_size=5)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(4):
        assert mismatches(expected, out[i], tol=0) == []


# --- inputs -----------------------------------------------------------------------------------
def test_empty_batch_and_empty_strings(tiny):
    assert tiny.translate_batch([]) == []
    res = tiny.translate_batch(["", "A man rides a bike.", "   "], return_history=True)
    assert res[0].text == "" and res[0].tokens == [] and res[0].iterations == 0 and res[0].history == []
    assert res[2].text == "" and res[1].tokens


def test_overlong_input_is_truncated_with_a_warning(tiny):
    long = " ".join(["a man rides a bike"] * 200)
    with pytest.warns(UserWarning, match="truncated"):
        res = tiny.translate_batch([long])
    assert res[0].iterations >= 1


@pytest.mark.parametrize("opts,match", [
    (dict(iterations=0), "iterations"), (dict(iterations=1.5), "iterations"), (dict(length_beam=0), "length_beam"),
    (dict(length_beam=10_000), "length_beam"), (dict(remask="nope"), "remask"),
    (dict(remask="threshold"), "threshold"), (dict(remask="threshold", threshold=1.5), "threshold"),
    (dict(threshold=0.5), "threshold"), (dict(init="zeros"), "init"), (dict(batch_type="words"), "batch_type"),
    (dict(max_batch_size=-1), "max_batch_size"), (dict(seed=-3), "seed"), (dict(beam_size=4), "beam_size"),
    (dict(stutter_remask="yes"), "stutter_remask"), (dict(sampling=1), "sampling"),
    (dict(length_beam_keep=0), "length_beam_keep"), (dict(length_beam=3, length_beam_keep=4), "length_beam_keep"),
    (dict(length_beam_keep=True), "length_beam_keep"),
])
def test_invalid_options(tiny, opts, match):
    with pytest.raises(ValueError, match=match):
        tiny.translate_batch(["A dog."], **opts)


@pytest.mark.parametrize("source", ["A single string", None, 42, ["ok", 3], [b"bytes"]])
def test_invalid_sources(tiny, source):
    with pytest.raises(ValueError, match="source"):
        tiny.translate_batch(source)


@pytest.mark.parametrize("kwargs,match", [
    (dict(device="gpu"), "device"), (dict(device="cuda"), "cuda"), (dict(compute_type="int4"), "compute_type"),
    (dict(intra_threads=-1), "intra_threads"), (dict(intra_threads=1.5), "intra_threads"),
])
def test_invalid_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Translator(TINY, **kwargs)


# --- broken model directories -----------------------------------------------------------------
def _copy_model(tmp_path) -> Path:
    return copy_without_weights_checksum(TINY, tmp_path / "model")


def _rewrite_weights(d: Path, fn):
    from safetensors.numpy import load_file, save_file

    w = load_file(str(d / "model.safetensors"))
    fn(w)
    save_file(w, str(d / "model.safetensors"))


def test_missing_model_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        Translator(tmp_path / "nope")


def test_truncated_safetensors(tmp_path):
    d = _copy_model(tmp_path)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="safetensors"):
        Translator(d)


def test_garbage_safetensors(tmp_path):
    d = _copy_model(tmp_path)
    (d / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError):
        Translator(d)


def test_wrong_shape(tmp_path):
    d = _copy_model(tmp_path)
    _rewrite_weights(d, lambda w: w.__setitem__("encoder.block.0.layer.0.SelfAttention.q.weight",
                                                np.zeros((3, 3), np.float32)))
    with pytest.raises(ModelError, match="shape"):
        Translator(d)


def test_missing_tensor(tmp_path):
    d = _copy_model(tmp_path)
    _rewrite_weights(d, lambda w: w.pop("decoder.embed_positions.weight"))
    with pytest.raises(ModelError, match="missing"):
        Translator(d)


def test_nan_weights(tmp_path):
    d = _copy_model(tmp_path)

    def poison(w):
        a = w["decoder.block.1.layer.2.DenseReluDense.wo.weight"].copy()
        a[0, 0] = np.nan
        w["decoder.block.1.layer.2.DenseReluDense.wo.weight"] = a

    _rewrite_weights(d, poison)
    with pytest.raises(ModelError, match="NaN"):
        Translator(d)


def test_bad_config(tmp_path):
    d = _copy_model(tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["d_model"] = 48  # no longer matches the weights
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="shape"):
        Translator(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="JSON"):
        Translator(d)


def test_ar_model_loads_and_decodes_by_search():
    tr = Translator(TINY.parent / "tiny-ar", compute_type="float32")
    assert tr.cfg.objective == "ar"
    res = tr.translate_batch(["A man rides a bike.", ""], beam_size=2)
    assert res[0].tokens and res[0].iterations == len(res[0].tokens) + 1 and res[1].text == ""


def test_core_checks_weights_itself():
    """_core.Engine validates what it is handed even without the Python loader."""
    from gmlm_engine.config import load_weights_numpy, read_model_dir

    files = read_model_dir(TINY)
    cfg, w = files.config.to_dict(), load_weights_numpy(files)
    core.Engine(cfg, w, 1)  # fine as is
    cases = [
        ({k: v for k, v in w.items() if k != "shared.weight"}, "missing"),
        ({**w, "extra.weight": np.zeros(3, np.float32)}, "unexpected"),
        ({**w, "shared.weight": w["shared.weight"].astype(np.float64)}, "float32"),
        ({**w, "shared.weight": np.asfortranarray(w["shared.weight"])}, "contiguous"),
        ({**w, "shared.weight": w["shared.weight"][:, :-1].copy()}, "shape"),
        ({**w, "shared.weight": np.full_like(w["shared.weight"], np.inf)}, "NaN or Inf"),
        ({**w, "shared.weight": [1.0, 2.0]}, "numpy"),
    ]
    for weights, match in cases:
        with pytest.raises(ValueError, match=match):
            core.Engine(cfg, weights, 1)
    with pytest.raises(ValueError, match="missing key"):
        core.Engine({k: v for k, v in cfg.items() if k != "d_model"}, w, 1)
    with pytest.raises(ValueError, match="intra_threads"):
        core.Engine(cfg, w, -2)


def test_core_rejects_bad_ids(tiny):
    eng = tiny._engine
    with pytest.raises(ValueError, match="vocabulary"):
        eng.translate([[4, 10_000, 1]], iterations=2)
    with pytest.raises(ValueError, match="empty"):
        eng.translate([[]])
    with pytest.raises(ValueError, match="tokens"):
        eng.translate([[4] * 500])
    with pytest.raises(ValueError, match="remask"):
        eng.translate([[4, 9, 1]], remask="cubic")
    with pytest.raises(ValueError, match="unknown option first_random_id"):   # a model constant, not an option
        eng.translate([[4, 9, 1]], first_random_id=5)
    with pytest.raises(ValueError, match=r"length_beam_keep must be in \[1, length_beam = 2\]"):
        eng.translate([[4, 9, 1]], length_beam=2, length_beam_keep=3)


# --- front-ends -------------------------------------------------------------------------------
def test_translate_iterable_and_file(tiny, tmp_path):
    src = SENTENCES + ["", "A dog."]
    expected = [r.text for r in tiny.translate_batch(src)]
    assert [r.text for r in tiny.translate_iterable(iter(src), batch_size=4)] == expected
    inp, out = tmp_path / "in.txt", tmp_path / "out.txt"
    inp.write_text("\n".join(src) + "\n", encoding="utf-8")
    stats = tiny.translate_file(inp, out, batch_size=5)
    assert stats["sentences"] == len(src)
    assert out.read_text(encoding="utf-8").split("\n")[:-1] == expected


def test_profile_breakdown(rand):
    rand.set_profiling(True)
    rand.translate_batch(SENTENCES)
    p = rand.profile()
    rand.set_profiling(False)
    assert p["total"] > 0 and p["gemm"] > 0 and p["vocab"] > 0 and p["gemm_flops"] > 0
    parts = sum(p[k] for k in ("gemm", "attention", "vocab", "remask", "layers_other"))
    assert parts <= p["total"] * 1.01
    assert all(len(s) == 5 for s in p["gemm_shapes"])


def test_runtime_does_not_import_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from gmlm_engine.engine import Translator\n"
        "import gmlm_engine.options, gmlm_engine.data, gmlm_engine.serving, gmlm_engine.serving.http\n"
        "import gmlm_engine.serving.ray, gmlm_engine.tools.cli, gmlm_engine.tools.evaluate\n"
        f"tr = Translator({str(TINY)!r}, intra_threads=1, compute_type='float32')\n"
        "r = tr.translate_batch(['A man rides a bike.'])\n"
        "assert r[0].iterations >= 1\n"
        "assert 'torch' not in [m for m, v in sys.modules.items() if v is not None]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


def test_translate_command_does_not_import_torch(tmp_path):
    """`gmlm translate` (parser with every subcommand built, then the engine) runs where torch cannot be imported."""
    (tmp_path / "in.txt").write_text("A man rides a bike.\nTwo dogs play.\n")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from gmlm_engine.tools.cli import main\n"
        f"assert main(['translate', '--model', {str(TINY)!r}, '-i', {str(tmp_path / 'in.txt')!r}, "
        f"'-o', {str(tmp_path / 'out.txt')!r}, '--threads', '1']) == 0\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
    assert len((tmp_path / "out.txt").read_text().splitlines()) == 2


def test_generic_kernels_agree(tmp_path):
    """The portable kernels (forced by GMLM_CPU_ISA=generic) give the same translations."""
    code = (
        "import json, sys\n"
        "from gmlm_engine import _core\n"
        "from gmlm_engine.engine import Translator\n"
        "import gmlm_engine.options, gmlm_engine.data, gmlm_engine.serving, gmlm_engine.serving.http\n"
        "import gmlm_engine.serving.ray, gmlm_engine.tools.cli, gmlm_engine.tools.evaluate\n"
        f"tr = Translator({str(TINY)!r}, intra_threads=1, compute_type='float32')\n"
        f"r = tr.translate_batch({SENTENCES!r}, return_history=True)\n"
        "print(json.dumps([_core.build_info()['cpu_isa'], [x.tokens for x in r]]))\n"
    )
    runs = run_per_kernel_set(code, timeout=120)
    assert runs["generic"][0] == "generic"
    assert runs["generic"][1] == runs["best"][1]


def test_avx512_attention_is_bit_identical_to_avx2(tmp_path):
    """The AVX-512 kernel set differs from the AVX2 one only in attention, which keeps the same FMA
    chains: translations and scores are equal bit for bit (float32, head sizes 16, 32, 64)."""
    models = [str(make_random_model(tmp_path / f"dh{dh}", d_model=4 * dh, d_kv=dh, num_heads=4, seed=dh))
              for dh in (16, 32, 64)]
    code = (
        "import json\n"
        "from gmlm_engine import _core\n"
        "from gmlm_engine.engine import Translator\n"
        "out = [_core.build_info()['cpu_isa']]\n"
        f"for m in {[str(TINY)] + models!r}:\n"
        "    tr = Translator(m, intra_threads=2, compute_type='float32')\n"
        f"    out.append([(x.tokens, x.score) for x in tr.translate_batch({SENTENCES!r}, length_beam=3)])\n"
        "print(json.dumps(out))\n"
    )
    runs = run_per_kernel_set(code, timeout=120, isas=("avx2", "best"))
    if runs["best"][0] != "avx512":
        pytest.skip(f"this CPU's best kernels are {runs['best'][0]}, not avx512")
    assert runs["avx2"][0] == "avx2"
    assert runs["avx2"][1:] == runs["best"][1:]


def test_warning_free_normal_use(tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny.translate_batch(["A man rides a bike."])


def test_type_stub_matches_the_module():
    """_core.pyi names every public function, class and method of the compiled module (and no others),
    so it cannot go stale silently."""
    import ast

    from gmlm_engine import _core

    tree = ast.parse((Path(__file__).resolve().parents[1] / "python" / "gmlm_engine" / "_core.pyi").read_text())
    stub = {n.name: n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    for name in ("Engine", "Batch"):
        have = {m for m in dir(getattr(_core, name)) if not m.startswith("_")}
        declared = {n.name for n in stub[name].body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}
        assert have == declared, (name, have ^ declared)
    assert {"build_info", "cuda_status"} <= set(stub)
