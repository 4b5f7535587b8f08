"""gmlm bench: the harness's outputs, and that every row's numbers come from that system's own output."""
import hashlib
import json

import pytest

from gmlm_engine.tools import benchmark
from gmlm_engine.tools.benchmark import System, run_benchmark, write_results
from gmlm_engine.tools.cli import build_parser, main
from gmlm_engine.tools.evaluate import score
from gmlm_engine.options import DEFAULT_ITERATIONS, DEFAULT_LENGTH_BEAM
from conftest import TINY_AR, TINY_CTC, TINY_GMLM

TK = f"T={DEFAULT_ITERATIONS} K={DEFAULT_LENGTH_BEAM}"   # the defaults: the bench's headline row

PAIRS = [
    ("A man rides a bike.", "Ein Mann fährt Fahrrad."),
    ("Two dogs play in the snow.", "Zwei Hunde spielen im Schnee."),
    ("A woman is reading a book in the park.", "Eine Frau liest ein Buch im Park."),
    ("A child is eating an apple.", "Ein Kind isst einen Apfel."),
    ("Three people are walking down the street.", "Drei Menschen gehen die Straße entlang."),
    ("A girl in a red dress is dancing.", "Ein Mädchen in einem roten Kleid tanzt."),
    ("The boy jumps into the water.", "Der Junge springt ins Wasser."),
    ("A group of men are playing soccer.", "Eine Gruppe von Männern spielt Fußball."),
    ("A dog runs on the beach.", "Ein Hund rennt am Strand."),
    ("Two women sit on a bench.", "Zwei Frauen sitzen auf einer Bank."),
    ("A man in a blue shirt is cooking.", "Ein Mann in einem blauen Hemd kocht."),
    ("People are standing in front of a building.", "Menschen stehen vor einem Gebäude."),
]
SRC = [s for s, _ in PAIRS]
REF = [r for _, r in PAIRS]
ORACLE = dict(PAIRS)
QUIET = dict(min_seconds=0.0, pause=0.0, log=lambda msg: None)


def words(outs):
    return sum(len(x.split()) for x in outs)


def sha(lines):
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def engine_system(name="engine T=2 K=1"):
    from gmlm_engine import Translator

    tr = Translator(TINY_GMLM, intra_threads=1)
    return System(name, "gmlm-engine", lambda xs: [r.text for r in tr.translate_batch(xs, iterations=2, length_beam=1)])


def test_each_row_is_scored_on_its_own_systems_output(tmp_path):
    oracle = System("oracle", "fake", lambda xs: [ORACLE[x] for x in xs])
    damaged = System("oracle damaged", "fake", lambda xs: [ORACLE[x].rsplit(" ", 1)[0] for x in xs])
    eng = engine_system()
    res = run_benchmark([oracle, damaged, eng], SRC, REF, [1, 4], repeats=2, count_tokens=words, **QUIET)
    rows = {(r["system"], r["batch_size"]): r for r in res["rows"]}
    assert set(rows) == {(s, b) for s in ("oracle", "oracle damaged", "engine T=2 K=1") for b in (1, 4)}
    expected = {"oracle": REF, "oracle damaged": [ORACLE[x].rsplit(" ", 1)[0] for x in SRC],
                "engine T=2 K=1": eng.translate(SRC)}
    for (name, b), r in rows.items():
        q = score(expected[name], REF)
        assert (r["bleu"], r["chrf"], r["output_sha256"]) == (q["bleu"], q["chrf"], sha(expected[name]))
        assert r["batch_invariant"] and r["timed_sentences"] == [0, len(SRC)] and r["loops"] == 1
        assert r["tok_per_s"] == pytest.approx(words(expected[name][:len(SRC)]) / len(SRC) * r["sent_per_s"], rel=0.02)
    assert rows[("oracle", 1)]["bleu"] == 100.0
    assert rows[("oracle damaged", 1)]["bleu"] < 100.0       # the damaged output moves its own row only

    # the saved outputs reproduce every row's scores
    write_results(res, tmp_path, {"data": "pairs", "sentences": len(SRC), "machine": benchmark.machine_info(1),
                                  "load_average_end": None, "command": "test", "date": "", "gmlm_model": "",
                                  "gmlm_raw_model": None, "ar_model": None, "bleu_signature": "", "method": "",
                                  "anchor": None}, plot=False)
    doc = json.loads((tmp_path / "bench.json").read_text())
    for r in doc["rows"]:
        hyp = (tmp_path / r["output_file"]).read_text(encoding="utf-8").split("\n")[:-1]
        assert sha(hyp) == r["output_sha256"] and score(hyp, REF)["bleu"] == r["bleu"]


def test_output_that_depends_on_the_batch_is_reported():
    by_size = System("batch-dependent", "fake", lambda xs: [f"{ORACLE[x]} {len(xs)}" for x in xs])
    calls = []

    def drifting(xs):                       # changes between calls (not reproducible)
        calls.append(1)
        return [ORACLE[x] + ("!" if len(calls) > 1 else "") for x in xs]

    res = run_benchmark([by_size, System("drifting", "fake", drifting)], SRC, REF, [1, 4], repeats=2,
                        count_tokens=words, **QUIET)
    for r in res["rows"]:
        assert not r["batch_invariant"] and r["differing_sentences"] == len(SRC)
    md = benchmark.markdown(res, {"data": "", "sentences": len(SRC), "machine": benchmark.machine_info(1),
                                  "load_average_end": None, "command": "", "date": "", "gmlm_model": "",
                                  "gmlm_raw_model": None, "ar_model": None, "bleu_signature": "", "method": "",
                                  "anchor": None})
    assert f"NO ({len(SRC)} differ)" in md and "`batch-dependent` batch 1" in md


def test_pareto_front_and_helpful_batch():
    pts = {"slow-good": (1.0, 30.0), "fast-bad": (10.0, 20.0), "dominated": (0.9, 29.0), "mid": (5.0, 25.0)}
    assert sorted(benchmark.pareto_front(pts)) == ["fast-bad", "mid", "slow-good"]
    assert benchmark.helpful_batch({1: 10.0, 8: 50.0, 64: 100.0, 128: 101.0, 256: 90.0}) == 64
    assert benchmark.helpful_batch({1: 10.0, 8: 50.0, 64: 100.0, 128: 120.0}) == 128


def test_quick_cli_end_to_end(tmp_path, capsys):
    pytest.importorskip("ctranslate2")
    pytest.importorskip("matplotlib")
    from gmlm_engine.pytorch.export import export_ctranslate2

    (tmp_path / "src.en").write_text("\n".join(SRC) + "\n")
    (tmp_path / "ref.de").write_text("\n".join(REF) + "\n")
    export_ctranslate2(TINY_AR, tmp_path / "ct2")
    out = tmp_path / "results"
    assert main(["bench", "--quick", "--gmlm-model", str(TINY_GMLM), "--gmlm-raw-model", str(TINY_GMLM),
                 "--ctc-model", str(TINY_CTC), "--ar-model", str(TINY_AR), "--ct2-model", str(tmp_path / "ct2"), "--src", str(tmp_path / "src.en"),
                 "--ref", str(tmp_path / "ref.de"), "--out", str(out), "--threads", "1"]) == 0
    assert (out / "speed_quality.png").read_bytes()[:4] == b"\x89PNG"
    doc = json.loads((out / "bench.json").read_text())
    rows, meta = doc["rows"], doc["meta"]
    assert meta["machine"]["cpu"] and meta["machine"]["logical_cpus"] >= 1 and meta["threads"] == 1
    from gmlm_engine import _core

    native = [ct for ct in ("bfloat16", "int8") if ct in _core.build_info()["native_compute_types"]]
    lowp = {f"{fam}-{ct}" for ct in native for fam in ("gmlm-engine", "engine-ar", "ctc-engine")}
    assert {r["family"] for r in rows} == {"gmlm-engine", "gmlm-engine-raw", "gmlm-torch", "ct2-ar", "ct2-ar-int8",
                                           "torch-ar", "engine-ar", "ctc-engine"} | lowp
    assert isinstance(meta["machine"]["cpu_isa"], list)
    assert set(doc["quality"]) == {r["system"] for r in rows}
    for name in ("ct2-ar greedy", "ct2-ar beam=4", "ct2-ar-int8 greedy", "ct2-ar-int8 beam=4", "torch-ar greedy", "torch-ar beam=4",
                 f"gmlm-torch {TK}", f"gmlm-engine {TK}", "ctc-engine T=1"):                 # the core systems: every batch size
        assert sorted(r["batch_size"] for r in rows if r["system"] == name) == [1, 8]
    for r in rows:
        assert r["stage"] == "core" or r["batch_size"] == doc["grid_batch"]
        assert r["timed_sentences"] == [0, len(SRC)] and r["loops"] >= 1
        assert r["sent_per_s"] > 0 and r["tok_per_s"] > 0 and 0 < r["latency_p50_ms"] <= r["latency_p90_ms"]
        assert len(r["seconds"]) == 2
        hyp = (out / r["output_file"]).read_text(encoding="utf-8").split("\n")[:-1]
        q = score(hyp, REF)
        assert (q["bleu"], q["chrf"], q["len_ratio"], sha(hyp)) == (r["bleu"], r["chrf"], r["len_ratio"],
                                                                    r["output_sha256"])
        if r["family"].startswith("gmlm-engine"):
            assert r["batch_invariant"], r
    agree = {a["system"]: a["differing_sentences"] for a in doc["agreement"]}
    assert agree[f"gmlm-torch {TK}"] == 0                   # the engine matches the reference decoder
    assert agree["engine-ar greedy"] == 0 and agree["engine-ar beam=4"] == 0   # AR too (float32)
    assert {r["what"] for r in doc["headline"]["rows"]} == {w for w, _ in benchmark.HEADLINE}
    md = (out / "bench.md").read_text()
    header = "| " + " | ".join(benchmark.COLUMNS)
    table = md.split("## All systems")[1].split("##")[0].strip().splitlines()
    assert table[0].replace(" ", "").startswith(header.replace(" ", "")) and len(table) == 2 + len(rows)
    assert "## Ablations" in md and "distilled vs raw" in md and "stutter re-masking" in md
    assert "tok:13a" in md and meta["machine"]["cpu"] in md
    assert "## All systems" in capsys.readouterr().out


@pytest.mark.parametrize("option,value", [("--batch-sizes", "0"), ("--batch-sizes", "1,x"), ("--batch-sizes", "8,8"),
                                          ("--repeats", "0"), ("--threads", "0"), ("--min-seconds", "-1"),
                                          ("--grid-batch", "7"), ("--limit", "-1")])
def test_bad_options_raise_value_error_naming_the_option(option, value, tmp_path, capsys):
    f = tmp_path / "x.txt"
    f.write_text("A man.\n")
    argv = ["bench", "--gmlm-model", str(TINY_GMLM), "--src", str(f), "--ref", str(f), "--out", str(tmp_path / "o"),
            option, value]
    with pytest.raises(ValueError, match=option):
        benchmark.run(build_parser().parse_args(argv))
    assert main(argv) == 2 and option in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_ctranslate2_is_loaded_before_torch(tmp_path):
    """torch loaded first slowed the CTranslate2 baseline 3.5-5x in the same process; `gmlm bench` must prevent it."""
    pytest.importorskip("ctranslate2")
    import subprocess
    import sys

    (tmp_path / "src.en").write_text("\n".join(SRC[:4]) + "\n")
    (tmp_path / "ref.de").write_text("\n".join(REF[:4]) + "\n")
    argv = ["bench", "--quick", "--no-plot", "--gmlm-model", str(TINY_GMLM), "--ar-model", str(TINY_AR), "--src",
            str(tmp_path / "src.en"), "--ref", str(tmp_path / "ref.de"), "--out", str(tmp_path / "out"), "--threads", "1"]
    code = ("import sys\nfrom gmlm_engine.tools.cli import main\n"
            f"assert main({argv!r}) == 0\n"
            "names = list(sys.modules)\n"
            "print('ORDER', names.index('ctranslate2') < names.index('torch'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "ORDER True" in out.stdout, out.stdout[-2000:]
    assert "torch was imported before ctranslate2" not in out.stderr


def test_score_reports_the_length_ratio_behind_the_brevity_penalty():
    ref = ["Ein Mann fährt Fahrrad .", "Zwei Hunde spielen im Schnee ."]
    assert score(ref, ref)["len_ratio"] == 1.0
    short = score(["Ein Mann", "Zwei Hunde spielen"], ref)
    assert short["len_ratio"] == round(5 / 11, 3)


def test_thread_settings_are_searched_and_the_winner_named(tmp_path):
    """With --threads 2 the headline systems also run at 1 thread and as two 1-thread workers; every
    setting gives the same output, and the report names each system's fastest setting."""
    pytest.importorskip("ctranslate2")
    (tmp_path / "src.en").write_text("\n".join(SRC) + "\n")
    (tmp_path / "ref.de").write_text("\n".join(REF) + "\n")
    out = tmp_path / "results"
    assert main(["bench", "--quick", "--headline", "--no-plot", "--no-torch", "--gmlm-model", str(TINY_GMLM),
                 "--ar-model", str(TINY_AR), "--src", str(tmp_path / "src.en"), "--ref", str(tmp_path / "ref.de"),
                 "--out", str(out), "--threads", "2"]) == 0
    doc = json.loads((out / "bench.json").read_text())
    settings = {(r["base"], r["setting"]) for r in doc["rows"]}
    for base in ("ct2-ar-int8 greedy", "engine-ar greedy", f"gmlm-engine {TK}"):
        assert {s for b, s in settings if b == base} == {"2x1", "1x1", "1x2"}
    assert all(r["batch_invariant"] for r in doc["rows"]), [r["system"] for r in doc["rows"] if not r["batch_invariant"]]
    ts = {(t["system"], t["batch_size"]): t for t in doc["thread_settings"]}
    t = ts[("engine-ar greedy", 8)]
    assert t["best_setting"] == max(("2x1", "1x1", "1x2"), key=lambda s: t[f"sent_per_s@{s}"])
    md = (out / "bench.md").read_text()
    assert "## Headline" in md and "## Thread settings" in md and "engine AR greedy / CTranslate2 greedy" in md
