"""Bad input: clear exceptions naming the problem, nothing lost, nothing crashes."""
import json
import shutil
import warnings

import numpy as np
import pytest

from gmlm_engine.config import ModelError
from gmlm_engine.reference import ReferenceTranslator
from conftest import TINY_AR, TINY_GMLM


@pytest.fixture(scope="module")
def tr():
    return ReferenceTranslator(TINY_GMLM)


def test_empty_batch_and_empty_strings(tr):
    assert tr.translate_batch([]) == []
    out = tr.translate_batch(["", "A man.", "   "])
    assert out[0].text == "" and out[0].tokens == [] and out[2].text == ""
    assert out[1].tokens  # the real sentence still translates


def test_overlong_source_is_truncated_with_warning(tr):
    long = " ".join(["dog"] * 500)
    with pytest.warns(UserWarning, match="truncated"):
        r = tr.translate_batch([long])[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr.translate_batch(["dog"])
    assert isinstance(r.text, str)


@pytest.mark.parametrize("opts, name", [
    (dict(iterations=0), "iterations"), (dict(length_beam=0), "length_beam"),
    (dict(remask="cosine"), "remask"), (dict(remask="threshold", threshold=1.5), "threshold"),
    (dict(remask="threshold", threshold=0.0), "threshold"), (dict(remask="threshold"), "threshold"),
    (dict(iterations=2.5), "iterations"), (dict(batch_type="bytes"), "batch_type"),
    (dict(max_batch_size=-1), "max_batch_size"), (dict(init="zeros"), "init"), (dict(beam_size=4), "beam_size"),
    (dict(length_beam=10_000), "length_beam"), (dict(seed=-3), "seed"),
])
def test_invalid_options_name_the_option(tr, opts, name):
    with pytest.raises(ValueError, match=name):
        tr.translate_batch(["A man."], **opts)


def test_source_must_be_a_list_of_strings(tr):
    with pytest.raises(ValueError, match="list of strings"):
        tr.translate_batch("A man.")
    with pytest.raises(ValueError, match=r"source\[1\]"):
        tr.translate_batch(["A man.", 3])


def test_missing_model_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        ReferenceTranslator(tmp_path / "nope")


def _copy(tmp_path, src=TINY_GMLM):
    d = tmp_path / "m"
    shutil.copytree(src, d)
    return d


@pytest.mark.parametrize("breakage, message", [
    ("no_config", "missing config.json"), ("bad_json", "not valid JSON"), ("no_weights", "missing model.safetensors"),
    ("no_spm", "missing spm.model"), ("truncated", "cannot read safetensors"), ("wrong_shape", "has shape"),
    ("missing_tensor", "missing tensors"), ("nan", "NaN"), ("bad_objective", "objective"), ("bad_spm", "SentencePiece"),
    ("unknown_key", "unknown keys"),
])
def test_broken_model_directories(tmp_path, breakage, message):
    from safetensors.numpy import load_file, save_file

    d = _copy(tmp_path)
    w = d / "model.safetensors"
    if breakage == "no_config":
        (d / "config.json").unlink()
    elif breakage == "bad_json":
        (d / "config.json").write_text("{not json")
    elif breakage == "no_weights":
        w.unlink()
    elif breakage == "no_spm":
        (d / "spm.model").unlink()
    elif breakage == "truncated":
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    elif breakage == "bad_spm":
        (d / "spm.model").write_bytes(b"garbage")
    elif breakage in ("bad_objective", "unknown_key"):
        cfg = json.loads((d / "config.json").read_text())
        cfg.update({"objective": "diffusion"} if breakage == "bad_objective" else {"colour": "blue"})
        (d / "config.json").write_text(json.dumps(cfg))
    else:
        sd = load_file(str(w))
        if breakage == "wrong_shape":
            sd["shared.weight"] = sd["shared.weight"][:, :-1].copy()
        elif breakage == "missing_tensor":
            del sd["decoder.final_layer_norm.weight"]
        elif breakage == "nan":
            sd["encoder.final_layer_norm.weight"][3] = np.nan
        save_file(sd, str(w))
    with pytest.raises(ModelError, match=message):
        ReferenceTranslator(d)


def test_ar_model_rejects_wrong_objective_options():
    tr = ReferenceTranslator(TINY_AR)
    with pytest.raises(ValueError, match="beam_size"):
        tr.translate_batch(["A man."], beam_size=0)
    assert len(tr.translate_batch(["A man.", ""], beam_size=3)) == 2
