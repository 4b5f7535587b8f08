"""Bad input: clear exceptions naming the problem, nothing lost, nothing crashes."""
import json
import shutil
import warnings

import numpy as np
import pytest

from gmlm_engine.config import ModelError
from gmlm_engine.pytorch.reference import ReferenceTranslator
from conftest import TINY_AR, TINY_CTC, TINY_GMLM, copy_without_weights_checksum


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
    return copy_without_weights_checksum(src, tmp_path / "m")


@pytest.mark.parametrize("breakage, message", [
    ("no_config", "missing config.json"), ("bad_json", "not valid JSON"), ("no_weights", "missing model.safetensors"),
    ("no_spm", "missing spm.model"), ("truncated", "cannot read safetensors"), ("wrong_shape", "has shape"),
    ("missing_tensor", "missing tensors"), ("nan", "NaN"), ("bad_objective", "objective"),
    ("bad_spm", "not the tokenizer these weights were written with"), ("bad_spm_unchecked", "SentencePiece"),
    ("unknown_key", "unknown keys"), ("duplicate_key", "duplicate key 'd_model'"),
    ("bad_checksum", "tokenizer_sha256 must be 64"),
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
    elif breakage in ("bad_spm", "bad_spm_unchecked"):
        (d / "spm.model").write_bytes(b"garbage")
        if breakage == "bad_spm_unchecked":   # a directory written before checksums: SentencePiece's own error
            cfg = json.loads((d / "config.json").read_text())
            del cfg["tokenizer_sha256"]
            (d / "config.json").write_text(json.dumps(cfg))
    elif breakage == "duplicate_key":      # json.loads would keep the last value silently
        text = (d / "config.json").read_text()
        (d / "config.json").write_text(text.replace('"d_model":', '"d_model": 512, "d_model":', 1))
    elif breakage == "bad_checksum":
        cfg = json.loads((d / "config.json").read_text())
        cfg["tokenizer_sha256"] = "abc"
        (d / "config.json").write_text(json.dumps(cfg))
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # bad_spm_unchecked also warns that nothing can be checked
        with pytest.raises(ModelError, match=message):
            ReferenceTranslator(d)


@pytest.mark.parametrize("damage", ["scaled_x100", "one_bit", "truncated"])
def test_weights_that_differ_from_their_checksum_are_model_errors(tmp_path, damage):
    """config.json records model.safetensors' sha256 (gmlm export and training write it): weights changed after
    they were written are found, also where no other check can tell (x100 still loads and translates, into
    "fährt fährt fährt ...")."""
    from safetensors.numpy import load_file, save_file

    d = tmp_path / "m"
    shutil.copytree(TINY_GMLM, d)
    w = d / "model.safetensors"
    if damage == "scaled_x100":
        sd = load_file(str(w))
        save_file({k: v * 100 for k, v in sd.items()}, str(w))
    elif damage == "one_bit":
        data = bytearray(w.read_bytes())
        data[-5] ^= 1
        w.write_bytes(bytes(data))
    else:
        w.write_bytes(w.read_bytes()[:-4096])
    with pytest.raises(ModelError, match="model.safetensors: its sha256 differs from config.json's weights_sha256"):
        ReferenceTranslator(d)
    # a pack records its own file's checksum (not the source's) and loads
    from gmlm_engine.config import file_sha256
    from gmlm_engine.pytorch.export import pack_model

    out = pack_model(TINY_GMLM, tmp_path / "packed")
    assert json.loads((out / "config.json").read_text())["weights_sha256"] == file_sha256(out / "model.safetensors")
    assert ReferenceTranslator(out).translate_batch(["A man."])[0].text


def test_ar_model_rejects_wrong_objective_options():
    tr = ReferenceTranslator(TINY_AR)
    with pytest.raises(ValueError, match="beam_size"):
        tr.translate_batch(["A man."], beam_size=0)
    assert len(tr.translate_batch(["A man.", ""], beam_size=3)) == 2


# --- the reproducers of "silently wrong" and "unclear", kept fixed ----------------------
@pytest.fixture(scope="module")
def engine():
    from gmlm_engine import Translator

    return Translator(TINY_GMLM, intra_threads=1)


@pytest.mark.parametrize("decoder", ["tr", "engine"])
def test_translate_iterable_checks_its_arguments_before_the_first_result(decoder, request):
    t = request.getfixturevalue(decoder)
    with pytest.raises(ValueError, match="not a single string"):
        t.translate_iterable("A man.")   # would otherwise translate character by character
    with pytest.raises(ValueError, match="batch_size must be an integer"):
        t.translate_iterable(["A man."], batch_size="x")
    with pytest.raises(ValueError, match="iterations"):
        t.translate_iterable(["A man."], iterations=0)
    with pytest.raises(ValueError, match="iterable of strings"):
        t.translate_iterable(5)


@pytest.mark.parametrize("batch_size", [-1, 0, "x", 2.5])
def test_translate_file_rejects_a_bad_batch_size_and_writes_nothing(engine, tmp_path, batch_size):
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("A man.\nTwo dogs.\n")
    with pytest.raises(ValueError, match="batch_size"):
        engine.translate_file(src, out, batch_size=batch_size)
    assert not out.exists() and not (tmp_path / "out.txt.partial").exists()


@pytest.mark.parametrize("decoder", ["tr", "engine"])
def test_inputs_without_content_translate_like_the_empty_string(decoder, request):
    t = request.getfixturevalue(decoder)
    texts = ["\u200b", "\ufeff", "\x01\x02", " \t ", "", "\u200b\u200b A man."]
    res = t.translate_batch(texts)
    assert [r.text for r in res[:5]] == [""] * 5
    assert all(r.tokens == [] and r.iterations == 0 for r in res[:5])
    assert res[5].text == t.translate_batch(["A man."])[0].text != ""


@pytest.mark.parametrize("decoder", ["tr", "engine"])
def test_a_lone_surrogate_names_the_input(decoder, request):
    t = request.getfixturevalue(decoder)
    with pytest.raises(ValueError, match=r"source\[1\] is not valid Unicode"):
        t.translate_batch(["A man.", "x \ud800"])


def test_lines_end_at_newline_only_in_files_and_stdin(engine, tmp_path, monkeypatch, capsys):
    import io
    import sys

    from gmlm_engine.tools.cli import main

    data = b"A man.\rTwo dogs.\nA woman.\r\n"
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_bytes(data)
    assert engine.translate_file(src, out)["sentences"] == 2
    by_file = out.read_text().split("\n")[:-1]
    assert by_file == [r.text for r in engine.translate_batch(["A man.\rTwo dogs.", "A woman."])]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["translate", "--model", str(TINY_GMLM), "--engine", "cpu"]) == 0
    assert capsys.readouterr().out.split("\n")[:-1] == by_file
    assert main(["translate", "--model", str(TINY_GMLM), "--engine", "cpu", "-i", str(src)]) == 0
    assert capsys.readouterr().out.split("\n")[:-1] == by_file


def test_invalid_utf8_names_the_line_and_keeps_the_output_file(tmp_path, capsys):
    from gmlm_engine.tools.cli import main

    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_bytes(b"A man.\nA \xff man.\n")
    out.write_text("keep me\n")
    assert main(["translate", "--model", str(TINY_GMLM), "-i", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "line 2 is not valid UTF-8" in err and "Traceback" not in err
    assert out.read_text() == "keep me\n" and not (tmp_path / "out.txt.partial").exists()


def test_eval_rejects_a_negative_limit_and_empty_files(tmp_path, capsys):
    from gmlm_engine.tools.cli import main

    one, empty = tmp_path / "one.txt", tmp_path / "empty.txt"
    one.write_text("A man.\nTwo dogs.\n")
    empty.write_text("")
    assert main(["eval", "--model", str(TINY_GMLM), "--src", str(one), "--ref", str(one), "--limit", "-998"]) == 2
    assert "--limit must be >= 0" in capsys.readouterr().err
    assert main(["eval", "--model", str(TINY_GMLM), "--src", str(empty), "--ref", str(empty)]) == 2
    assert "no sentences to evaluate" in capsys.readouterr().err


def test_engines_created_and_dropped_at_once_never_hang():
    """A pool destroyed before its workers first ran used to hide the stop from them (join forever)."""
    import subprocess
    import sys

    code = ("from gmlm_engine import Translator\n"
            f"for _ in range(100): Translator({str(TINY_GMLM)!r}, intra_threads=4)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _edit_config(d, **changes):
    cfg = json.loads((d / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            del cfg[k]
        else:
            cfg[k] = v
    (d / "config.json").write_text(json.dumps(cfg))


def _edit_weights(d, fn):
    from safetensors.numpy import load_file, save_file

    w = d / "model.safetensors"
    sd = load_file(str(w))
    fn(sd)
    save_file(sd, str(w))


def _set(name, value, dtype=None):
    def fn(sd):
        a = sd[name].astype(dtype or sd[name].dtype)
        a.flat[0] = value
        sd[name] = a
    return fn


CORRUPTIONS = {
    # name: (how the directory is broken, the file named, what the message says)
    "vocabulary_mismatch": (lambda d: shutil.copyfile(TINY_AR.parent.parent.parent / "models" / "gmlm-en-de" / "spm.model",
                                                      d / "spm.model"), "spm.model", "not the tokenizer these weights"),
    "mask_equals_len": (lambda d: _edit_config(d, mask_id=4), "config.json", "special ids must be distinct"),
    "eos_is_not_the_tokenizers": (lambda d: _edit_config(d, eos_id=255), "spm.model", "eos_id is 1 in the tokenizer"),
    "epsilon_infinite": (lambda d: _edit_config(d, layer_norm_epsilon=float("inf")), "config.json", "layer_norm_epsilon"),
    "epsilon_huge": (lambda d: _edit_config(d, layer_norm_epsilon=1e300), "config.json", "layer_norm_epsilon"),
    "missing_key": (lambda d: _edit_config(d, max_source_len=None), "config.json", r"missing keys \['max_source_len'\]"),
    "max_distance_1": (lambda d: _edit_config(d, relative_attention_max_distance=1), "config.json",
                       "relative_attention_max_distance"),
    "max_distance_8": (lambda d: _edit_config(d, relative_attention_max_distance=8), "config.json",
                       "relative_attention_max_distance"),
    "absurd_layers": (lambda d: _edit_config(d, num_encoder_layers=10**9), "config.json", "num_encoder_layers"),
    "float_size": (lambda d: _edit_config(d, d_model=64.0), "config.json", "d_model"),
    "nested_json": (lambda d: (d / "config.json").write_text("[" * 100000 + "]" * 100000), "config.json", "nested"),
    "config_not_object": (lambda d: (d / "config.json").write_text("[1, 2]"), "config.json", "JSON object"),
    "bad_training_json": (lambda d: (d / "training.json").write_text("{oops"), "training.json", "not valid JSON"),
    "weight_3e38": (lambda d: _edit_weights(d, _set("shared.weight", 3e38, np.float32)), "model.safetensors",
                    "values up to 3e"),
    "weight_fp16_max": (lambda d: _edit_weights(d, _set("encoder.block.0.layer.1.DenseReluDense.wi.weight", 65504,
                                                        np.float16)), "model.safetensors", "values up to"),
    "inf": (lambda d: _edit_weights(d, _set("shared.weight", np.inf)), "model.safetensors", "NaN or Inf"),
    "int_dtype": (lambda d: _edit_weights(d, lambda sd: sd.update({"shared.weight": sd["shared.weight"].astype(np.int32)})),
                  "model.safetensors", "dtype int32"),
    "extra_tensor": (lambda d: _edit_weights(d, lambda sd: sd.update({"extra.weight": np.zeros(3, np.float32)})),
                     "model.safetensors", "unexpected tensors"),
    "empty_weights": (lambda d: (d / "model.safetensors").write_bytes(b""), "model.safetensors", "cannot read"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
@pytest.mark.parametrize("decoder", ["reference", "engine"])
def test_corrupted_model_directories_raise_model_error_naming_file_and_problem(tmp_path, case, decoder):
    from gmlm_engine import Translator

    breaker, filename, message = CORRUPTIONS[case]
    d = _copy(tmp_path)
    breaker(d)
    cls = ReferenceTranslator if decoder == "reference" else Translator
    with pytest.raises(ModelError, match=message) as e:
        cls(d)
    assert filename in str(e.value)


@pytest.mark.parametrize("up, message", [(0.5, "ctc_upsample must be a number in \\[1, 8\\]"), (9, "must be a number"),
                                         ("2", "must be a number"), (True, "must be a number"), (None, "must be a number")])
@pytest.mark.parametrize("decoder", ["reference", "engine"])
def test_a_ctc_models_upsampling_is_a_number_in_1_to_8(tmp_path, up, message, decoder):
    from gmlm_engine import Translator

    d = _copy(tmp_path, TINY_CTC)
    _edit_config(d, ctc_upsample=up)
    with pytest.raises(ModelError, match=message) as e:
        (ReferenceTranslator if decoder == "reference" else Translator)(d)
    assert "config.json" in str(e.value)
    gmlm = _copy(tmp_path / "g", TINY_GMLM)
    _edit_config(gmlm, ctc_upsample=1.5)
    with pytest.raises(ModelError, match="ctc_upsample applies to ctc models only"):
        (ReferenceTranslator if decoder == "reference" else Translator)(gmlm)


def test_a_model_directory_that_is_a_symlink_loop_is_a_model_error(tmp_path):
    from gmlm_engine import ModelError, Translator

    loop = tmp_path / "model"
    loop.symlink_to(tmp_path / "other")
    (tmp_path / "other").symlink_to(loop)
    with pytest.raises(ModelError, match="loop"):
        Translator(loop)
    with pytest.raises(FileNotFoundError):
        Translator(tmp_path / "missing")


def test_a_huge_line_is_truncated_before_it_is_tokenized():
    """Only the start of a text far longer than the model reads is tokenized, with the same pieces as
    tokenizing all of it and truncating (SentencePiece segments each word on its own); a long run of
    whitespace before the words does not lose them."""
    from gmlm_engine.common import CHARS_PER_TOKEN_BOUND, encode_sources
    from gmlm_engine import Translator

    tr = Translator(TINY_GMLM, compute_type="float32")
    cfg, tok = tr.cfg, tr.tokenizer
    words = "A man rides a red bike down the busy street while two dogs play in the snow . "
    huge = words * 20000                                  # 1.6 MB, about 300k pieces
    room = cfg.max_source_len - 2
    assert len(huge) > room * CHARS_PER_TOKEN_BOUND
    with pytest.warns(UserWarning, match="truncated"):
        got = encode_sources(tok, cfg, [huge, " " * (room * CHARS_PER_TOKEN_BOUND + 10) + "A dog."])
    full = tok.encode([huge])[0]
    assert got[0] == [cfg.len_id] + full[:room] + [cfg.eos_id]
    assert got[1] == [cfg.len_id] + tok.encode(["A dog."])[0] + [cfg.eos_id]


def test_damaged_weights_and_a_foreign_start_token_are_model_errors(tmp_path):
    """Weights that load but cannot be a trained model: a model.safetensors whose second half is zeros (a
    download cut short into a pre-allocated file), all weights zero; and an AR config whose
    decoder_start_token_id is not its pad id. Each used to translate everything to "" without a word."""
    import shutil

    from safetensors.numpy import load_file, save_file

    from conftest import TINY_AR
    from gmlm_engine import ModelError, Translator

    def copy(src, name):
        return copy_without_weights_checksum(src, tmp_path / name)

    half = copy(TINY_GMLM, "half")
    sd = load_file(half / "model.safetensors")
    names = sorted(sd)
    for n in names[len(names) // 2:]:
        sd[n] = np.zeros_like(sd[n])
    save_file(sd, half / "model.safetensors")
    with pytest.raises(ModelError, match=r"model.safetensors: tensor .* is all zeros"):
        Translator(half)
    start = copy(TINY_AR, "start")
    cfg = json.loads((start / "config.json").read_text())
    for bad in (cfg["eos_id"], 5):
        cfg["decoder_start_token_id"] = bad
        (start / "config.json").write_text(json.dumps(cfg))
        with pytest.raises(ModelError, match="decoder_start_token_id"):
            Translator(start)
