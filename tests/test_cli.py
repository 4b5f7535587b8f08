import io
import json
import sys

from gmlm_engine.tools.cli import main
from gmlm_engine.pytorch.reference import ReferenceTranslator
from conftest import TINY_GMLM


def test_translate_stdin_to_stdout(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"A man rides a bike.\n\nTwo dogs.\n")))
    assert main(["translate", "--model", str(TINY_GMLM), "--engine", "torch", "--iterations", "3"]) == 0
    out = capsys.readouterr().out.split("\n")
    ref = ReferenceTranslator(TINY_GMLM).translate_batch(["A man rides a bike.", "", "Two dogs."], iterations=3)
    assert out[:3] == [r.text for r in ref]


def test_translate_bad_option_is_a_clean_error(capsys, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("A man.\n")
    assert main(["translate", "--model", str(TINY_GMLM), "--engine", "torch", "--iterations", "0",
                 "-i", str(src)]) == 2
    assert "iterations" in capsys.readouterr().err


def test_device_option_is_checked(capsys, tmp_path):
    """--device reaches the Translator: a bad one, or cuda where this build or machine has none, is a clean error
    naming it (exit 2), never a crash; the torch reference refuses any device but the cpu."""
    from gmlm_engine.engine import cuda_status

    src = tmp_path / "in.txt"
    src.write_text("A man.\n")
    assert main(["translate", "--model", str(TINY_GMLM), "--device", "gpu", "-i", str(src)]) == 2
    assert "device" in capsys.readouterr().err
    assert main(["translate", "--model", str(TINY_GMLM), "--engine", "torch", "--device", "cuda", "-i", str(src)]) == 2
    assert "--device cuda" in capsys.readouterr().err
    if cuda_status()["device_count"] == 0:
        assert main(["translate", "--model", str(TINY_GMLM), "--device", "cuda", "-i", str(src)]) == 2
        assert "cuda" in capsys.readouterr().err


def test_eval_json(tmp_path, multi30k, capsys):
    out = tmp_path / "r.json"
    assert main(["eval", "--model", str(TINY_GMLM), "--engine", "torch", "--data-dir", multi30k, "--split", "val",
                 "--limit", "20", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["sentences"] == 20 and 0 <= r["bleu"] <= 100 and r["chrf"] > 0 and "13a" in r["bleu_signature"]
    assert "bleu" in capsys.readouterr().out


def test_translate_file(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("A man.\nA dog runs.\n")
    tr = ReferenceTranslator(TINY_GMLM)
    info = tr.translate_file(src, tmp_path / "out.txt", batch_size=1)
    assert info["sentences"] == 2
    assert (tmp_path / "out.txt").read_text().split("\n")[:2] == [r.text for r in tr.translate_batch(["A man.", "A dog runs."])]


def test_ar_models_translate_in_the_compiled_engine(monkeypatch, capsys):
    from conftest import TINY_AR

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"A man rides a bike.\nTwo dogs.\n")))
    assert main(["translate", "--model", str(TINY_AR), "--engine", "cpu", "--compute-type", "float32",
                 "--beam-size", "3"]) == 0
    expected = ReferenceTranslator(TINY_AR).translate_batch(["A man rides a bike.", "Two dogs."], beam_size=3)
    assert capsys.readouterr().out == "".join(r.text + "\n" for r in expected)


def test_missing_model_directory_is_a_clean_error(capsys, tmp_path):
    assert main(["translate", "--model", str(tmp_path / "nope"), "-i", str(tmp_path / "x")]) == 2
    assert "not found" in capsys.readouterr().err


def test_repetition_measure():
    from gmlm_engine.tools.evaluate import repeats, repetition_rate, score

    assert repeats("Kinder spielen Fußball in einem Park Fußball.")          # a 5+-letter word twice
    assert repeats("Ein Mann auf einer Bank auf einer Bank.")               # a bigram twice
    assert not repeats("Ein Mann fährt mit einem Fahrrad die Straße entlang.")
    assert repeats("Ein Hund und ein Hund.")
    assert not repeats("Der Mann und die Frau.")                            # short words may recur
    assert repetition_rate(["a b a b", "x y", "", "Straße Straße"]) == 50.0
    assert score(["Ein Hund und ein Hund."], ["Ein Hund."])["repetition"] == 100.0


def test_visible_defect_measure():
    from gmlm_engine.tools.evaluate import defect_rate, defects, score

    assert defects("Zwei Männer reparieren das Dach eines Hauss Hauses.") == ["stem"]
    assert defects("Ein Mädchen in einem roten Kleid tanzt auf der.") == ["dangling"]
    assert defects("Ein Park Park auf dem.") == ["stem", "dangling"]
    assert defects("Ein Mann fährt mit einem Fahrrad die Straße entlang.") == []
    assert defects("Ein Hund und ein Hund.") == []             # not adjacent: a repetition, not a stutter
    assert defects("Der Mann sitzt auf der Bank.") == []        # an article inside the sentence is fine
    assert defects("A man sits on the.", "en") == ["dangling"]
    assert defects("Ein Mann sitzt auf der.", "xx") == []       # no word list for the language: not tested
    assert defect_rate(["Ein Hund auf der.", "Ein Hund.", "Eine Katze.", "Frau Frauen"]) == 50.0
    assert score(["Ein Hund auf der."], ["Ein Hund."])["defects"] == 100.0


def test_every_command_prints_its_help(capsys):
    """`gmlm --help` and every subcommand's --help print their usage (a bare % in an option's help once
    made argparse raise TypeError)."""
    import argparse

    import pytest

    from gmlm_engine.tools.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {"translate", "eval", "serve", "bench", "train"} <= set(sub.choices)
    for argv in [["--help"]] + [[name, "--help"] for name in sub.choices]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0, argv
        assert "usage:" in capsys.readouterr().out, argv


def test_sigterm_removes_the_unfinished_output(tmp_path):
    """`gmlm translate -o OUT` ended by SIGTERM (timeout, systemd, Kubernetes) while it works: exit status
    143, no OUT and no hidden .partial file left beside it (as with Ctrl-C)."""
    import os
    import signal
    import subprocess
    import time

    out = tmp_path / "out.txt"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "gmlm_engine.tools.cli", "translate", "--model", str(TINY_GMLM),
                             "--compute-type", "float32", "-o", str(out)], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        proc.stdin.write(b"A man rides a bike.\n")       # stdin stays open: the command waits for more lines
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".out.txt.*.partial")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(tmp_path.glob(".out.txt.*.partial")), "the command never opened its output"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM, proc.stderr.read().decode()[-500:]
    finally:
        proc.kill()
        proc.stdin.close()
    assert not out.exists() and list(tmp_path.iterdir()) == []
