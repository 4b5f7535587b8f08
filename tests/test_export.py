"""Export of ar models: CTranslate2 greedy output equals our reference greedy output."""
from pathlib import Path

import pytest

from gmlm_engine.tools.cli import main
from gmlm_engine.config import ModelError
from gmlm_engine.pytorch.reference import ReferenceTranslator
from conftest import TINY_AR, TINY_GMLM

SOURCES = ["A man rides a bike.", "Two dogs play in the snow.", "", "A woman is reading a book in the park.",
           "People are walking down a busy street at night while a street musician plays the guitar."]


def test_ctranslate2_greedy_equals_reference_greedy(tmp_path):
    pytest.importorskip("ctranslate2")
    from gmlm_engine.pytorch.export import CT2Translator

    assert main(["export", str(TINY_AR), "--ctranslate2", str(tmp_path / "ct2")]) == 0
    ct = CT2Translator(tmp_path / "ct2", threads=1)
    ours = [r.text for r in ReferenceTranslator(TINY_AR).translate_batch(SOURCES)]
    theirs = ct.translate_batch(SOURCES, max_decoding_length=48)
    assert theirs == ours
    assert ours[2] == "" and len(set(ours)) > 2


def test_export_rejects_gmlm(tmp_path):
    from gmlm_engine.pytorch.export import export_hf

    with pytest.raises(ModelError, match="only ar models"):
        export_hf(TINY_GMLM, tmp_path / "x")


@pytest.mark.parametrize("length_penalty", [1.0, 1.5])
def test_beam_search_score_is_the_models_length_normalised_logprob(length_penalty):
    import torch

    tr = ReferenceTranslator(TINY_AR)
    b = tr.translate_batch(SOURCES, beam_size=4, length_penalty=length_penalty)
    assert b[2].text == "" and b == tr.translate_batch(SOURCES, beam_size=4, length_penalty=length_penalty)
    cfg, m = tr.cfg, tr.model
    checked = 0
    for src, r in zip(SOURCES, b):
        ids = [tr.tokenizer.sp.PieceToId(p) for p in r.tokens]
        if not ids:
            continue
        ended = len(ids) < cfg.max_target_len               # else it stopped at the length limit
        s = torch.tensor([tr.tokenizer.encode([src])[0] + [cfg.eos_id]])
        labels = torch.tensor([ids + [cfg.eos_id]] if ended else [ids])
        dec = torch.tensor([[cfg.decoder_start_token_id] + (ids if ended else ids[:-1])])
        with torch.no_grad():
            logits, _ = m(s, s != 0, dec, torch.ones_like(dec, dtype=torch.bool))
        lp = torch.log_softmax(logits.float(), -1).gather(2, labels[..., None]).sum().item()
        assert r.score == pytest.approx(lp / (len(ids) + 1) ** length_penalty, abs=1e-4)
        checked += 1
    assert checked >= 1


def test_length_penalty_lengthens_beam_output_and_is_checked():
    tr = ReferenceTranslator(Path(__file__).resolve().parents[1] / "models" / "ar-en-de")
    # sentences long and short enough that some beam choice depends on the penalty (a confident model
    # gives the same output for most of them)
    src = ["A man in a blue shirt is standing on a ladder cleaning a window.", "Two men are cooking food.",
           "A girl is talking on her phone while walking down the street.", "A dog runs through the grass.",
           "Several people in colorful costumes dance in the street during a festival while a crowd watches.",
           "An older woman with a red umbrella waits at a bus stop next to a young boy holding a balloon.",
           "A climber hangs from a rock.", "Construction workers in orange vests repair the road at night."]
    pieces = {p: sum(len(r.tokens) for r in tr.translate_batch(src, beam_size=4, length_penalty=p))
              for p in (0.0, 1.0, 3.0)}
    assert pieces[0.0] <= pieces[1.0] <= pieces[3.0] and pieces[0.0] < pieces[3.0]
    for bad in (-0.5, float("nan"), 11.0, "1", True):
        with pytest.raises(ValueError, match="length_penalty"):
            tr.translate_batch(src, beam_size=4, length_penalty=bad)
    with pytest.raises(ValueError, match="length_penalty applies to ar"):
        ReferenceTranslator(TINY_GMLM).translate_batch(src, length_penalty=1.5)


def test_distill_writes_teacher_beam_translations(tmp_path):
    pytest.importorskip("ctranslate2")
    from gmlm_engine.pytorch.export import CT2Translator, export_ctranslate2

    src = tmp_path / "src.txt"
    src.write_text("\n".join(SOURCES) + "\n")
    out = tmp_path / "distilled.de"
    assert main(["distill", "--teacher", str(TINY_AR), "--source", str(src), "--out", str(out),
                 "--beam-size", "2", "--no-progress", "--chunk", "2"]) == 0
    lines = out.read_text().split("\n")[:-1]
    export_ctranslate2(TINY_AR, tmp_path / "ct2")
    assert lines == CT2Translator(tmp_path / "ct2").translate_batch(SOURCES, beam_size=2, max_decoding_length=48)
    assert len(lines) == len(SOURCES) and lines[2] == ""
    assert not (tmp_path / "distilled.de.json").exists()          # no references given: no score


def test_distill_reports_bleu_against_references(tmp_path):
    pytest.importorskip("ctranslate2")
    import json

    import sacrebleu

    src, ref = tmp_path / "src.txt", tmp_path / "ref.txt"
    src.write_text("\n".join(SOURCES) + "\n")
    refs = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "", "Eine Frau liest ein Buch."][:len(SOURCES)]
    refs += ["x"] * (len(SOURCES) - len(refs))
    ref.write_text("\n".join(refs) + "\n")
    out = tmp_path / "distilled.de"
    assert main(["distill", "--teacher", str(TINY_AR), "--source", str(src), "--reference", str(ref),
                 "--out", str(out), "--beam-size", "2", "--no-progress"]) == 0
    report = json.loads((tmp_path / "distilled.de.json").read_text())
    hyp = out.read_text().split("\n")[:-1]
    assert report["lines"] == len(SOURCES) and report["beam_size"] == 2
    assert report["bleu_vs_reference"] == round(sacrebleu.corpus_bleu(hyp, [refs]).score, 2)
    ref.write_text("only one line\n")
    assert main(["distill", "--teacher", str(TINY_AR), "--source", str(src), "--reference", str(ref),
                 "--out", str(out), "--no-progress"]) == 2                     # misaligned: a clear error


def test_distill_length_penalty_reaches_the_teacher_and_the_report(tmp_path):
    pytest.importorskip("ctranslate2")
    import json

    from gmlm_engine.pytorch.export import CT2Translator, export_ctranslate2

    src, ref = tmp_path / "src.txt", tmp_path / "ref.txt"
    src.write_text("\n".join(SOURCES) + "\n")
    ref.write_text("\n".join(["Ein Mann fährt Fahrrad."] * len(SOURCES)) + "\n")
    teacher = Path(__file__).resolve().parents[1] / "models" / "ar-en-de"   # the shipped AR (a random one never stops)
    export_ctranslate2(teacher, tmp_path / "ct2")
    ct = CT2Translator(tmp_path / "ct2")
    by_penalty = {p: ct.translate_batch(SOURCES, beam_size=3, max_decoding_length=96, length_penalty=p)
                  for p in (0.0, 3.0)}
    assert by_penalty[0.0] != by_penalty[3.0]             # the option changes what the teacher writes
    for p, expected in by_penalty.items():
        out = tmp_path / f"distilled.{p}"
        assert main(["distill", "--teacher", str(teacher), "--source", str(src), "--reference", str(ref),
                     "--out", str(out), "--beam-size", "3", "--length-penalty", str(p), "--no-progress"]) == 0
        assert out.read_text().split("\n")[:-1] == expected
        report = json.loads((tmp_path / f"distilled.{p}.json").read_text())
        assert report["length_penalty"] == p and report["length_ratio"] > 0


def test_pack_float16_decodes_like_the_rounded_float32_model(tmp_path):
    import numpy as np

    from gmlm_engine.tools.cli import main
    from gmlm_engine.config import load_weights_numpy, read_model_dir
    from gmlm_engine.pytorch.reference import ReferenceTranslator
    from conftest import TINY_GMLM

    out = tmp_path / "packed"
    assert main(["export", str(TINY_GMLM), "--pack", str(out)]) == 0
    w32 = load_weights_numpy(read_model_dir(TINY_GMLM))
    w16 = load_weights_numpy(read_model_dir(out))
    assert set(w16) == set(w32)
    for k in w32:  # stored as float16, read back as float32: exactly the rounded values
        np.testing.assert_array_equal(w16[k], w32[k].astype(np.float16).astype(np.float32))
    assert (out / "model.safetensors").stat().st_size < 0.6 * (TINY_GMLM / "model.safetensors").stat().st_size
    assert read_model_dir(out).training["storage_dtype"] == "float16"
    src = ["A man rides a bike.", "Two dogs play in the snow."]
    from gmlm_engine import Translator

    r = ReferenceTranslator(out).translate_batch(src, iterations=3)
    assert [x.tokens for x in Translator(out, compute_type="float32").translate_batch(src, iterations=3)] == [x.tokens for x in r]
    assert main(["export", str(TINY_GMLM), "--pack", str(out)]) == 2       # exists: refuses without --force
    assert main(["export", str(TINY_GMLM), "--pack", str(out), "--dtype", "int8", "--force"]) == 2
